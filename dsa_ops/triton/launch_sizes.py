"""Integer arithmetic of launch grids and block sizes, on the host. Triton's cdiv and next_power_of_2
are constexpr functions, made for kernels: each call from Python costs microseconds, and a launch
takes several."""


def cdiv(a, b):
    """ceil(a / b) for positive b."""
    return -(-a // b)


def next_power_of_2(n):
    """The smallest power of two >= n, for n >= 1."""
    return 1 << (n - 1).bit_length()
