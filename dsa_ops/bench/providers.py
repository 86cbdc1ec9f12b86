"""What a run times: per provider a module with the case's weights, checked against the reference
before it is timed, and per mode the step that runs it on inputs that rotate through enough copies to
keep the L2 cache from flattering small shapes."""
import contextlib
import functools
import itertools
import math
import os

import torch

from .. import DSAConv, DSAReference

BACKENDS = ("cpu", "cuda", "triton")
# The backends with fused paths again, run with DSA_OPS_FUSED_GENERATOR=never (the generator in launches
# of its own): the "before" of those paths, timed in the training modes and in place (where the
# one-launch eval is not taken, the in-place forward fuses too).
UNFUSED = {"cuda-unfused": "cuda", "triton-unfused": "triton"}
PROVIDERS = ("clone", "reference", "compile", *BACKENDS, *UNFUSED)
MODES = ("fwd", "bwd", "full", "inference", "inplace")
TRAINING_MODES = ("fwd", "bwd", "full")
# inplace: DSAConv(inplace=True) in eval under no_grad, on the kernel backends (the eager and compiled
# rows it is compared with are their inference rows).
INPLACE_PROVIDERS = BACKENDS
# Tensor-sized reads + writes a mode cannot avoid: the floor behind the GB/s column.
FLOOR_PASSES = {"-": 2, "fwd": 2, "inference": 2, "bwd": 3, "full": 5}
TOLERANCE = {torch.float64: 1e-8, torch.float32: 1e-4, torch.float16: 3e-2, torch.bfloat16: 6e-2}


def random_state(case):
    """The generator's weights and running statistics for a case (random, so a wrong kernel shows)."""
    module = DSAReference(case.channels, U_segment=case.segments, kernel_size=case.kernel_size,
                          padding=case.kernel_size // 2, split_ratio=case.split)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, tensor in module.generate.state_dict().items():
            if tensor.is_floating_point():
                values = torch.randn(tensor.shape, generator=generator, dtype=torch.float64)
                tensor.copy_(values.abs() + 0.5 if name.endswith("running_var") else values)
    return module.state_dict()


def runs_mode(provider, mode):
    """Whether a provider has a row in a mode."""
    if provider in UNFUSED:
        return mode in TRAINING_MODES or mode == "inplace"
    return mode != "inplace" or provider in INPLACE_PROVIDERS


@contextlib.contextmanager
def provider_settings(provider):
    """The environment a provider runs in: DSA_OPS_FUSED_GENERATOR=never for the unfused ones."""
    if provider not in UNFUSED:
        yield
        return
    saved = os.environ.get("DSA_OPS_FUSED_GENERATOR")
    os.environ["DSA_OPS_FUSED_GENERATOR"] = "never"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["DSA_OPS_FUSED_GENERATOR"]
        else:
            os.environ["DSA_OPS_FUSED_GENERATOR"] = saved


def build_module(provider, case, state, device, dtype):
    kwargs = dict(U_segment=case.segments, kernel_size=case.kernel_size, padding=case.kernel_size // 2,
                  split_ratio=case.split)
    backend = UNFUSED.get(provider, provider)
    if backend in BACKENDS:
        module = DSAConv(case.channels, backend=backend, **kwargs)
    else:
        module = DSAReference(case.channels, **kwargs)
    module.load_state_dict(state)
    module = module.to(device=device, dtype=dtype)
    if provider == "compile":
        torch._dynamo.reset()  # each shape and mode compiles afresh, timed on its own
        module = torch.compile(module, fullgraph=True, dynamic=False)
    return module


def input_copies(case, dtype, device):
    """Distinct inputs to rotate through: on a GPU enough that together they fill twice its L2 cache."""
    if device.type != "cuda":
        return 1
    nbytes = math.prod(case.shape()) * torch.finfo(dtype).bits // 8
    l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 50 << 20)
    return max(1, min(8, math.ceil(2 * l2 / nbytes)))


def floor_bytes(mode, case, nbytes):
    """Bytes a mode must move on a tensor of nbytes: its passes, or one read and one write of the C'
    processed channels in place."""
    if mode == "inplace":
        return 2 * nbytes * int(case.channels * case.split) / case.channels
    return FLOOR_PASSES[mode] * nbytes


def set_mode(module, mode):
    """Training or eval as the mode runs, and DSAConv's inplace switch."""
    module.train(mode in TRAINING_MODES)
    if isinstance(module, DSAConv):
        module.inplace = mode == "inplace"


def make_step(module, mode, xs, grads):
    """(setup, step): setup runs before each timed step (the forward of a backward-only timing)."""
    turn = itertools.count()
    set_mode(module, mode)
    if mode == "inference":
        def step():
            with torch.no_grad():
                module(xs[next(turn) % len(xs)])
        return None, step
    if mode == "inplace":
        return _inplace_step(module, xs, turn)
    if mode == "fwd":
        return None, lambda: module(xs[next(turn) % len(xs)])
    inputs = [x.detach().requires_grad_(True) for x in xs]
    pending = {}

    def forward_for_backward():
        i = next(turn) % len(inputs)
        inputs[i].grad = None
        pending["y"], pending["i"] = module(inputs[i]), i

    def backward():
        pending["y"].backward(grads[pending["i"]])

    if mode == "bwd":
        return forward_for_backward, backward

    def full():
        forward_for_backward()
        backward()
        # a call's output and input gradient are freed within it, as the other modes' are: held into the
        # next call, that call would reuse their memory and its peak (timing.peak_memory) would miss them
        inputs[pending["i"]].grad = None
        pending.clear()
    return None, full


def _inplace_step(module, xs, turn):
    """(setup, step) for the in-place forward on copies of xs. setup puts the copy the previous step
    overwrote back (untimed), so that repeated calls never shrink it into subnormal values, and the copies
    still rotate through the cache as for the other modes."""
    work = [x.clone() for x in xs]
    last = []

    def restore_previous():
        if last:
            work[last[0]].copy_(xs[last[0]])

    def step():
        last[:] = [next(turn) % len(work)]
        with torch.no_grad():
            module(work[last[0]])
    return restore_previous, step


@functools.lru_cache(maxsize=2)
def _reference_result(case, training, device, dtype):
    """(x, grad, output, input gradient (None in eval)) of the reference in float64 on the run's device (on
    a GPU it takes milliseconds where the CPU takes seconds at the paper's shapes), for x, grad and the
    generator's state drawn in float64 and rounded to dtype: what a provider in dtype sees, so that the
    comparison measures its arithmetic alone. Rounding them moves the exact result itself: at I3D layer3,
    split 1, in training, bfloat16 inputs alone move the exact input gradient by 16-21% of its largest
    value, and bfloat16 weights that of I3D layer2 by 10-20% (a ReLU of the generator changing side, its
    effect scaled up by the BatchNorm's 1 / sigma), which no tolerance tells from a wrong kernel. The same
    for every provider and mode of a kind (training or eval), so computed once for them all."""
    reference = DSAReference(case.channels, U_segment=case.segments, kernel_size=case.kernel_size,
                             padding=case.kernel_size // 2, split_ratio=case.split).double()
    reference.load_state_dict({name: value.to(dtype) if value.is_floating_point() else value
                               for name, value in random_state(case).items()})
    reference.train(training).to(device)
    generator = torch.Generator().manual_seed(1)
    x, grad = (torch.randn(case.shape(), generator=generator, dtype=torch.float64).to(dtype).to(device, torch.float64)
               for _ in range(2))
    x_ref = x.clone().requires_grad_(training)
    with torch.set_grad_enabled(training):
        y = reference(x_ref)
    if training:
        y.backward(grad)
    return x, grad, y.detach(), x_ref.grad


def disagreement(module, provider, case, mode, device, dtype):
    """None where the provider's output (and input gradient) match the float64 reference, else what is off."""
    set_mode(module, mode)
    training, backward = mode in TRAINING_MODES, mode in ("bwd", "full")
    x, grad, expected_y, expected_grad = _reference_result(case, training, device, dtype)
    x_mine = x.to(dtype=dtype, copy=True).requires_grad_(backward)
    with torch.set_grad_enabled(training):
        y = module(x_mine)
    pairs = [(y, expected_y, "output")]
    if backward:
        y.backward(grad.to(dtype))
        pairs.append((x_mine.grad, expected_grad, "input gradient"))
    tolerance = TOLERANCE[dtype]
    for mine, expected, what in pairs:
        error = (mine.detach().double() - expected).abs().max().item()
        scale = expected.abs().max().item()
        if not error <= tolerance * max(1.0, scale):
            return (f"provider {provider!r} disagrees with the reference on {case.label()} "
                    f"{str(dtype).removeprefix('torch.')} {mode}: {what} off by {error:.3g}")
    return None
