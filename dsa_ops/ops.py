"""The op layer: loads the compiled extension (cpu, cuda) and the Triton backend, defines the Triton
ops, registers fake kernels for each op in the dsa_ops namespace and autograd for the Triton ops (the
compiled ops carry theirs in C++, csrc/autograd.cpp, which costs less host time per call), and holds the
single backend choice. The only module that knows which backends exist.

Ops (torch.ops.dsa_ops.*, and the same under dsa_ops::triton_<name> for the Triton backend; pooled
values, kernels and generator statistics are float32, float64 for double inputs):
  segment_pool(x, U, C')                         -> (N, C', U) means over T*H*W
  segment_pool_backward(grad_pooled, x, U)       -> x-shaped
  aggregate(x, weight, U, identity)              -> x-shaped, weight (N, C', K)
  aggregate_grad_input(grad_y, weight, grad_pooled?, U, identity) -> x-shaped
  aggregate_grad_weight(grad_y, x, U, C', K)     -> (N, C', K)
  dsa_forward(x, w1, bn_w, bn_b, running_mean, running_var, w2, U, C', training, eps, identity)
                                                 -> (y, pooled, mean, var)
  dsa_forward_(x, <dsa_forward's other arguments>) -> (mean, var), x's first C' channels overwritten
                                                 with the output (inference; x must not require grad)
  dsa_backward(grad_y, x, pooled, mean, var, w1, bn_w, bn_b, w2, U, training, eps, identity)
                                                 -> (grad_x, grad_w1, grad_bn_w, grad_bn_b, grad_w2)
"""
import functools
import os
import types
import warnings

import torch
import torch.nn.functional as F

from . import reference
from ._layout import accumulate_dtype, empty_output

REBUILD_HINT = "rebuild it against this torch: pip install --no-build-isolation ."


def _torch_mismatch(built, running):
    """Why an extension built against torch `built` must not run under torch `running` (their
    major.minor releases differ: torch keeps no C++ ABI across them), or None."""
    def release(version):
        return version.split("+")[0].split(".")[:2]

    if release(built) == release(running):
        return None
    return f"dsa_ops._C was built against torch {built} and this is torch {running}: {REBUILD_HINT}"


try:
    from . import _C  # noqa: F401  (registers the ops)

    EXTENSION_ERROR = _torch_mismatch(getattr(_C, "torch_version", torch.__version__), torch.__version__)
except ImportError as error:
    EXTENSION_ERROR = f"{type(error).__name__}: {error}"
    if "undefined symbol" in str(error):  # the mark of a build against another torch
        EXTENSION_ERROR += f" (built against another torch than {torch.__version__}? {REBUILD_HINT})"

# The oldest Triton whose interpreter gives the reference's values on every op here (3.0 and 3.1 return
# garbage even for pooling; their compiled kernels have not been checked on a GPU, so they are refused).
MIN_TRITON = (3, 2)


def _triton_too_old(version):
    """Why Triton `version` cannot be used (older than MIN_TRITON), or None."""
    if tuple(int(part) for part in version.split(".")[:2]) < MIN_TRITON:
        return f"triton {version} is older than {'.'.join(map(str, MIN_TRITON))}"
    return None


try:
    import triton

    _too_old = _triton_too_old(triton.__version__)
    if _too_old:
        raise ImportError(_too_old)
    from .triton import op_bodies as _triton_bodies

    TRITON_ERROR = None
except Exception as error:  # missing, too old or broken: the backend is reported unavailable
    TRITON_ERROR = f"{type(error).__name__}: {error}"

# The op schemas, as csrc/dsa_ops.cpp defines them; the Triton backend defines the same ops under
# the prefix "triton_" (tests check the two tables agree).
SCHEMAS = {
    "segment_pool": "(Tensor x, int num_segments, int channels) -> Tensor",
    "segment_pool_backward": "(Tensor grad_pooled, Tensor x, int num_segments) -> Tensor",
    "aggregate": "(Tensor x, Tensor weight, int num_segments, bool identity) -> Tensor",
    "aggregate_grad_input": "(Tensor grad_y, Tensor weight, Tensor? grad_pooled, int num_segments, bool identity) "
                            "-> Tensor",
    "aggregate_grad_weight": "(Tensor grad_y, Tensor x, int num_segments, int channels, int kernel_size) -> Tensor",
    "dsa_forward": "(Tensor x, Tensor first_weight, Tensor bn_weight, Tensor bn_bias, Tensor running_mean, "
                   "Tensor running_var, Tensor second_weight, int num_segments, int channels, bool training, "
                   "float eps, bool identity) -> (Tensor, Tensor, Tensor, Tensor)",
    "dsa_forward_": "(Tensor(a!) x, Tensor first_weight, Tensor bn_weight, Tensor bn_bias, Tensor running_mean, "
                    "Tensor running_var, Tensor second_weight, int num_segments, int channels, bool training, "
                    "float eps, bool identity) -> (Tensor, Tensor)",
    "dsa_backward": "(Tensor grad_y, Tensor x, Tensor pooled, Tensor mean, Tensor var, Tensor first_weight, "
                    "Tensor bn_weight, Tensor bn_bias, Tensor second_weight, int num_segments, bool training, "
                    "float eps, bool identity) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
}
TRITON_PREFIX = "triton_"

BACKENDS = ("auto", "cpu", "cuda", "triton", "reference")
ENV_BACKEND = "DSA_OPS_BACKEND"
_PREFERENCE = {"cpu": ("cpu", "reference"), "cuda": ("cuda", "triton", "reference")}
_warned_fallbacks = set()


def _device_of_backend(backend):
    """The device type a backend runs on; Triton's interpreter (TRITON_INTERPRET=1) runs on CPU tensors."""
    if backend == "triton":
        return "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"
    return {"cpu": "cpu", "cuda": "cuda"}.get(backend)


def _has_kernel(op, dispatch_key):
    return EXTENSION_ERROR is None and torch._C._dispatch_has_kernel_for_dispatch_key(f"dsa_ops::{op}", dispatch_key)


def backend_status():
    """{backend: None if usable here, else the reason it is not}."""
    return _status_for("cuda")


def _status_for(device_type):
    """backend_status() as a call on a device_type tensor needs it: the GPUs' architectures, whose reading
    initialises CUDA, are checked against the CUDA kernels' only for CUDA tensors (and backend_status())."""
    status = dict(_backend_status(os.environ.get("TRITON_INTERPRET") == "1"))
    if device_type == "cuda" and status["cuda"] is None:
        status["cuda"] = _cuda_architecture_problem()
    return status


def runs_on(codes, capability):
    """Whether a GPU of compute capability (major, minor) runs a build holding codes (sm_XY machine code:
    same major, minor <= the GPU's; compute_XY PTX: XY <= the GPU's, compiled by the driver); an
    architecture-specific code (sm_90a) runs on its own capability only, a family-specific one (sm_100f,
    compute_100f) on its major's later minors."""
    for code in codes:
        kind, _, number = code.partition("_")
        digits = number.rstrip("af")
        built = (int(digits[:-1]), int(digits[-1]))
        if number.endswith("a"):
            fits = built == capability
        elif kind == "sm" or number.endswith("f"):
            fits = built[0] == capability[0] and built[1] <= capability[1]
        else:
            fits = built <= capability
        if fits:
            return True
    return False


@functools.cache
def _cuda_architecture_problem():
    """Why the CUDA kernels cannot run on a visible GPU (built for other architectures), or None."""
    built = getattr(_C, "cuda_architectures", "")
    if not built:  # an older build: not recorded
        return None
    for index in range(torch.cuda.device_count()):
        capability = torch.cuda.get_device_capability(index)
        if not runs_on(built.split(), capability):
            major, minor = capability
            return (f"its CUDA kernels were built for {built}, which GPU {index} "
                    f"({torch.cuda.get_device_name(index)}, sm_{major}{minor}) cannot run: rebuild with "
                    f"TORCH_CUDA_ARCH_LIST={major}.{minor} pip install --no-build-isolation .")
    return None


@functools.cache
def _backend_status(triton_interpreted):
    """backend_status() for one setting of TRITON_INTERPRET; what it reads cannot change in a process
    (the extension, Triton, the visible devices), so it is worked out once: the backend choice runs on
    every call."""
    status = {"reference": None}
    status["cpu"] = (None if _has_kernel("aggregate", "CPU") else
                     f"the compiled extension is not usable ({EXTENSION_ERROR})")
    if not _has_kernel("aggregate", "CUDA"):
        status["cuda"] = ("the compiled extension is not usable" if EXTENSION_ERROR else
                          "the extension was built without CUDA kernels ("
                          f"{getattr(_C, 'cuda_not_built', 'an older build: its reason was not recorded')})")
    elif not torch.cuda.is_available():
        status["cuda"] = "no CUDA device is visible"
    else:
        status["cuda"] = None
    if TRITON_ERROR is not None:
        status["triton"] = f"triton is not usable ({TRITON_ERROR})"
    elif not triton_interpreted and not torch.cuda.is_available():
        status["triton"] = "no CUDA device is visible (TRITON_INTERPRET=1 runs it on CPU tensors)"
    else:
        status["triton"] = None
    return tuple((name, status[name]) for name in BACKENDS[1:])


@torch.compiler.assume_constant_result
def resolve_backend(requested, device_type):
    """The backend that runs a call on a tensor of device_type: requested when it is not "auto"
    (an error when it cannot run), else $DSA_OPS_BACKEND when set, else the first usable backend
    for the device, with a one-time warning when that is not the device's compiled kernel."""
    if requested not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {requested!r}")
    if requested == "auto":
        requested = os.environ.get(ENV_BACKEND, "auto") or "auto"
        if requested not in BACKENDS:
            raise ValueError(f"${ENV_BACKEND} must be one of {BACKENDS}, got {requested!r}")
    status = _status_for(device_type)
    if requested != "auto":
        wanted_device = _device_of_backend(requested) or device_type
        if wanted_device != device_type:
            raise RuntimeError(f"backend={requested!r} runs on {wanted_device} tensors, got a {device_type} tensor")
        if status[requested] is not None:
            raise RuntimeError(f"backend={requested!r} is not available: {status[requested]}")
        return requested
    chain = _PREFERENCE.get(device_type, ("reference",))
    chosen = next(name for name in chain if status[name] is None)
    if chosen != chain[0] and (device_type, chosen) not in _warned_fallbacks:
        _warned_fallbacks.add((device_type, chosen))
        reasons = "; ".join(f"{name}: {status[name]}" for name in chain[: chain.index(chosen)])
        warnings.warn(f"dsa_ops: using the {chosen!r} backend on {device_type} ({reasons})", stacklevel=3)
    return chosen


def _processed_only(t, channels):
    """t with the channels from C' on set to zero (the gradients of ops that ignore them)."""
    rest = t.shape[1] - channels
    if rest == 0:
        return t
    return torch.cat([t.narrow(1, 0, channels), torch.zeros_like(t.narrow(1, channels, rest))], dim=1)


def _register_fakes(prefix):
    @torch.library.register_fake(f"dsa_ops::{prefix}segment_pool")
    def _(x, num_segments, channels):
        return x.new_empty((x.shape[0] // num_segments, channels, num_segments), dtype=accumulate_dtype(x.dtype))

    @torch.library.register_fake(f"dsa_ops::{prefix}segment_pool_backward")
    def _(grad_pooled, x, num_segments):
        return empty_output(x)

    @torch.library.register_fake(f"dsa_ops::{prefix}aggregate")
    def _(x, weight, num_segments, identity):
        return empty_output(x)

    @torch.library.register_fake(f"dsa_ops::{prefix}aggregate_grad_input")
    def _(grad_y, weight, grad_pooled, num_segments, identity):
        return empty_output(grad_y)

    @torch.library.register_fake(f"dsa_ops::{prefix}aggregate_grad_weight")
    def _(grad_y, x, num_segments, channels, kernel_size):
        return x.new_empty((x.shape[0] // num_segments, channels, kernel_size), dtype=accumulate_dtype(x.dtype))

    @torch.library.register_fake(f"dsa_ops::{prefix}dsa_forward")
    def _(x, first_weight, bn_weight, bn_bias, running_mean, running_var, second_weight, num_segments, channels,
          training, eps, identity):
        acc = accumulate_dtype(x.dtype)
        hidden = first_weight.shape[0]
        pooled = x.new_empty((x.shape[0] // num_segments, channels, num_segments), dtype=acc)
        return empty_output(x), pooled, x.new_empty((hidden,), dtype=acc), x.new_empty((hidden,), dtype=acc)

    @torch.library.register_fake(f"dsa_ops::{prefix}dsa_forward_")
    def _(x, first_weight, bn_weight, bn_bias, running_mean, running_var, second_weight, num_segments, channels,
          training, eps, identity):
        acc = accumulate_dtype(x.dtype)
        hidden = first_weight.shape[0]
        return x.new_empty((hidden,), dtype=acc), x.new_empty((hidden,), dtype=acc)

    @torch.library.register_fake(f"dsa_ops::{prefix}dsa_backward")
    def _(grad_y, x, pooled, mean, var, first_weight, bn_weight, bn_bias, second_weight, num_segments, training,
          eps, identity):
        return (empty_output(grad_y), torch.empty_like(first_weight), torch.empty_like(bn_weight),
                torch.empty_like(bn_bias), torch.empty_like(second_weight))


def _any_tensor_requires_grad(*args):
    return any(isinstance(arg, torch.Tensor) and arg.requires_grad for arg in args)


# torch's C++ version of the test where it has one (torch 2.4 has not), else the same in Python
_any_requires_grad = getattr(torch._C, "_any_requires_grad", _any_tensor_requires_grad)


def _autograd_kernel(op, backward, setup_context):
    """The Autograd-key kernel of op as torch.library.register_autograd makes it (an autograd.Function
    around a redispatch below autograd; the keyset travels as its last input), less that one's per-call
    argument normalisation for default values, which rebuilds the schema's argument list once per
    argument: tens of microseconds of host time per call of a 12-argument op. These schemas have no
    defaults."""
    if any(argument.has_default_value() for argument in op._schema.arguments):
        raise RuntimeError(f"{op} has default arguments: register its autograd with torch.library.register_autograd")

    class Node(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *args_and_keyset):
            *args, keyset = args_and_keyset
            output = _below_autograd(op, keyset, args)
            setup_context(ctx, args, output)
            return output

        @staticmethod
        def backward(ctx, *grads):
            ctx.needs_input_grad = ctx.needs_input_grad[:-1]
            return (*backward(ctx, *grads), None)

    def kernel(keyset, *args):
        if torch.is_grad_enabled() and _any_requires_grad(*args):
            return Node.apply(*args, keyset)
        return _below_autograd(op, keyset, args)
    return kernel


def _below_autograd(op, keyset, args):
    with torch._C._AutoDispatchBelowAutograd():
        return op.redispatch(keyset & torch._C._after_autograd_keyset, *args)


def _register_autograd(prefix, library):
    """The autograd of csrc/autograd.cpp for the ops dsa_ops::<prefix><name> defined from Python in
    library."""
    ops = _ops_with_prefix(prefix)

    def save_segment_pool(ctx, inputs, output):
        x, ctx.num_segments, _ = inputs
        ctx.save_for_backward(x)

    def segment_pool_backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return ops.segment_pool_backward(grad, x, ctx.num_segments), None, None

    def save_segment_pool_backward(ctx, inputs, output):
        _, _, ctx.num_segments = inputs
        ctx.channels = inputs[0].shape[1]

    def segment_pool_double_backward(ctx, grad):
        return ops.segment_pool(grad, ctx.num_segments, ctx.channels), None, None

    def save_aggregate(ctx, inputs, output):
        x, weight, ctx.num_segments, ctx.identity = inputs
        ctx.weight_dtype = weight.dtype
        ctx.save_for_backward(x, weight)

    def aggregate_backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = ops.aggregate_grad_input(grad, weight, None, ctx.num_segments, ctx.identity)
        if ctx.needs_input_grad[1]:
            grad_weight = ops.aggregate_grad_weight(grad, x, ctx.num_segments, weight.shape[1], weight.shape[2])
            grad_weight = grad_weight.to(ctx.weight_dtype)
        return grad_x, grad_weight, None, None

    def save_grad_input(ctx, inputs, output):
        grad_y, weight, grad_pooled, ctx.num_segments, ctx.identity = inputs
        ctx.weight_dtype = weight.dtype
        ctx.pooled_dtype = None if grad_pooled is None else grad_pooled.dtype
        ctx.save_for_backward(grad_y, weight)

    def grad_input_backward(ctx, grad):
        grad_y, weight = ctx.saved_tensors
        channels, kernel_size = weight.shape[1], weight.shape[2]
        outs = [None] * 5
        if ctx.needs_input_grad[0]:
            outs[0] = ops.aggregate(grad, weight, ctx.num_segments, ctx.identity)
        if ctx.needs_input_grad[1]:
            outs[1] = ops.aggregate_grad_weight(grad_y, grad, ctx.num_segments, channels, kernel_size)
            outs[1] = outs[1].to(ctx.weight_dtype)
        if ctx.pooled_dtype is not None and ctx.needs_input_grad[2]:
            outs[2] = ops.segment_pool(grad, ctx.num_segments, channels).to(ctx.pooled_dtype)
        return tuple(outs)

    def save_grad_weight(ctx, inputs, output):
        grad_y, x, ctx.num_segments, ctx.channels, _ = inputs
        ctx.save_for_backward(grad_y, x)

    def grad_weight_backward(ctx, grad):
        grad_y, x = ctx.saved_tensors
        outs = [None] * 5
        if ctx.needs_input_grad[0]:
            outs[0] = _processed_only(ops.aggregate(x, grad, ctx.num_segments, False), ctx.channels)
        if ctx.needs_input_grad[1]:
            outs[1] = _processed_only(ops.aggregate_grad_input(grad_y, grad, None, ctx.num_segments, False),
                                      ctx.channels)
        return tuple(outs)

    def save_dsa_forward(ctx, inputs, output):
        (x, first_weight, bn_weight, bn_bias, _, _, second_weight, ctx.num_segments, _, ctx.training, ctx.eps,
         ctx.identity) = inputs
        _, pooled, mean, var = output
        ctx.save_for_backward(x, pooled, mean, var, first_weight, bn_weight, bn_bias, second_weight)

    def dsa_forward_backward(ctx, grad_y, *unused_grads):
        x, pooled, mean, var, first_weight, bn_weight, bn_bias, second_weight = ctx.saved_tensors
        grads = ops.dsa_backward(grad_y, x, pooled, mean, var, first_weight, bn_weight, bn_bias, second_weight,
                                 ctx.num_segments, ctx.training, ctx.eps, ctx.identity)
        grad_x, grad_first, grad_bn_weight, grad_bn_bias, grad_second = grads
        return (grad_x, grad_first, grad_bn_weight, grad_bn_bias, None, None, grad_second) + (None,) * 5

    def save_nothing(ctx, inputs, output):
        pass

    def dsa_double_backward(ctx, *grads):
        raise RuntimeError("dsa_ops: double backward through the fused DSA op is not supported; "
                           "use backend='reference' for higher-order gradients")

    def register(name, backward, setup_context):
        op = getattr(torch.ops.dsa_ops, prefix + name).default
        library.impl(prefix + name, _autograd_kernel(op, backward, setup_context), "Autograd", with_keyset=True)

    register("segment_pool", segment_pool_backward, save_segment_pool)
    register("segment_pool_backward", segment_pool_double_backward, save_segment_pool_backward)
    register("aggregate", aggregate_backward, save_aggregate)
    register("aggregate_grad_input", grad_input_backward, save_grad_input)
    register("aggregate_grad_weight", grad_weight_backward, save_grad_weight)
    register("dsa_forward", dsa_forward_backward, save_dsa_forward)
    register("dsa_backward", dsa_double_backward, save_nothing)


def _ops_with_prefix(prefix):
    """torch.ops.dsa_ops.<prefix><name> as .<name>: the op set of one backend family."""
    return types.SimpleNamespace(**{name: getattr(torch.ops.dsa_ops, prefix + name) for name in SCHEMAS})


def _without_autocast(body):
    """body run with autocast off on its input's device, as the compiled ops run: an op keeps its own
    dtypes (accumulation in float32, float64 for double) whatever autocast region calls it. Devices
    without autocast (meta) run body as it is."""
    @functools.wraps(body)
    def run(*args):
        device_type = args[0].device.type
        # entering the context costs microseconds; asking a device without autocast whether it is on raises
        if not torch.amp.is_autocast_available(device_type) or not torch.is_autocast_enabled(device_type):
            return body(*args)
        with torch.autocast(device_type, enabled=False):
            return body(*args)
    return run


def _define_triton_ops():
    """The dsa_ops ops again under the prefix "triton_", implemented by dsa_ops.triton (for CPU tensors
    too, which only Triton's interpreter runs)."""
    library = torch.library.Library("dsa_ops", "FRAGMENT")
    for name, schema in SCHEMAS.items():
        library.define(TRITON_PREFIX + name + schema)
        library.impl(TRITON_PREFIX + name, _without_autocast(getattr(_triton_bodies, name)),
                     "CompositeExplicitAutograd")
    return library


_OP_SETS = {}
if EXTENSION_ERROR is None:
    _register_fakes("")
    _OP_SETS["compiled"] = _ops_with_prefix("")
if TRITON_ERROR is None:
    _triton_library = _define_triton_ops()
    _register_fakes(TRITON_PREFIX)
    _register_autograd(TRITON_PREFIX, _triton_library)
    _OP_SETS["triton"] = _ops_with_prefix(TRITON_PREFIX)


def _op_set(backend):
    return _OP_SETS["triton" if backend == "triton" else "compiled"]


def segment_pool(x, num_segments, channels, backend):
    chosen = resolve_backend(backend, x.device.type)
    if chosen == "reference":
        return reference.segment_pool(x, num_segments, channels).to(accumulate_dtype(x.dtype))
    return _op_set(chosen).segment_pool(x, num_segments, channels)


def aggregate(x, weight, num_segments, identity, backend):
    chosen = resolve_backend(backend, x.device.type)
    if chosen == "reference":
        if x.shape[0] == 0:  # no videos: the paper's grouped conv cannot have zero groups
            return x.clone()
        return reference.aggregate(x, weight, num_segments, identity)
    return _op_set(chosen).aggregate(x, weight, num_segments, identity)


def _reference_module(x, first_weight, bn_weight, bn_bias, running_mean, running_var, second_weight, num_segments,
                      channels, training, eps, identity):
    """The module in eager PyTorch, returning the BatchNorm statistics like the compiled op."""
    acc = accumulate_dtype(x.dtype)
    pooled = reference.segment_pool(x, num_segments, channels).to(acc)
    videos = pooled.shape[0]
    hidden = F.linear(pooled.reshape(videos * channels, num_segments), first_weight.to(acc))
    bn_weight, bn_bias = bn_weight.to(acc), bn_bias.to(acc)
    if training:
        mean, var = hidden.detach().mean(0), hidden.detach().var(0, unbiased=False)
        normalized = F.batch_norm(hidden, None, None, bn_weight, bn_bias, True, 0.0, eps)
    else:
        mean, var = running_mean.to(acc), running_var.to(acc)
        normalized = F.batch_norm(hidden, mean, var, bn_weight, bn_bias, False, 0.0, eps)
    kernel = F.softmax(F.linear(F.relu(normalized), second_weight.to(acc)), dim=-1)
    y = reference.aggregate(x, kernel.view(videos, channels, -1), num_segments, identity)
    return y, mean, var


_reference_module_without_autocast = _without_autocast(_reference_module)


def dsa_module(x, first_weight, bn_weight, bn_bias, running_mean, running_var, second_weight, num_segments,
               channels, training, eps, identity, backend):
    """The module's forward on the chosen backend: (y, mean, var), mean/var being the BatchNorm
    statistics used (biased batch variance in training), for the caller's running-stat update."""
    args = (x, first_weight, bn_weight, bn_bias, running_mean, running_var, second_weight, num_segments, channels,
            training, eps, identity)
    chosen = resolve_backend(backend, x.device.type)
    if chosen == "reference":
        if x.shape[0] == 0 and not training:  # no videos (training on none is refused by the BatchNorm)
            acc = accumulate_dtype(x.dtype)
            return x.clone(), running_mean.to(acc), running_var.to(acc)
        return _reference_module_without_autocast(*args)
    y, _, mean, var = _op_set(chosen).dsa_forward(*args)
    return y, mean, var


def dsa_module_(x, first_weight, bn_weight, bn_bias, running_mean, running_var, second_weight, num_segments,
                channels, training, eps, identity, backend):
    """The module's forward in place on x's first C' channels (inference): returns (mean, var) as
    dsa_module; the other channels are not touched."""
    chosen = resolve_backend(backend, x.device.type)
    args = (x, first_weight, bn_weight, bn_bias, running_mean, running_var, second_weight, num_segments, channels,
            training, eps, identity)
    if chosen == "reference":
        y, mean, var = dsa_module(*args, backend="reference")
        x.narrow(1, 0, channels).copy_(y.narrow(1, 0, channels))
        return mean, var
    return _op_set(chosen).dsa_forward_(*args)
