"""Integer arithmetic of launch grids and block sizes, on the host. Triton's cdiv and next_power_of_2
are constexpr functions, made for kernels: each call from Python costs microseconds, and a launch
takes several."""


def cdiv(a, b):
    """ceil(a / b) for positive b."""
    return -(-a // b)


def next_power_of_2(n):
    """The smallest power of two >= n, for n >= 1."""
    return 1 << (n - 1).bit_length()


# CUDA's largest launch grid along its second and third axes (the first allows 2^31 - 1).
MAX_GRID_YZ = 65535


def grid_runs(tiles):
    """(programs, tiles_per_program): `tiles` tiles dealt out in runs of tiles_per_program to at most
    MAX_GRID_YZ programs along a grid's second or third axis (one tile each wherever they fit)."""
    per_program = cdiv(tiles, MAX_GRID_YZ)
    return cdiv(tiles, per_program), per_program
