"""python -m dsa_ops.info: versions, which backends are built and usable, the GPU, and the environment
variables that change what the package runs."""
import importlib.util
import os
import platform
import sys

import torch

from . import __version__
from .ops import EXTENSION_ERROR, backend_status

# The environment variables that change what runs, with what they mean when unset.
SETTINGS = {
    "DSA_OPS_BACKEND": "auto: the compiled kernel for the device, else the next usable backend",
    "DSA_OPS_EVAL_ONE_LAUNCH": "auto: the one-launch eval forward where its grid fills the GPU; on the CPU "
                               "its one pass over x wherever x's planes are unit-stride",
    "DSA_OPS_FUSED_GENERATOR": "auto: on CUDA and Triton, the generator (forward and backward) in the "
                               "aggregation kernel's prologue for up to 1024 (video, channel) rows",
}


def _triton_version():
    if importlib.util.find_spec("triton") is None:
        return "not installed"
    try:
        import triton

        return triton.__version__
    except Exception as error:  # a broken triton install must not break this report
        return f"import failed ({type(error).__name__}: {error})"


def _extension():
    if EXTENSION_ERROR is not None:
        return "not usable: " + EXTENSION_ERROR
    from . import _C

    if hasattr(_C, "cuda_not_built"):
        return "loaded, CPU kernels only"
    return f"loaded, CPU and CUDA kernels ({getattr(_C, 'cuda_architectures', '') or 'architectures not recorded'})"


def _cpu_conversions():
    """The instructions of the CPU kernels' float16/bfloat16 conversions (ATEN_CPU_CAPABILITY=default
    makes them scalar, as it does ATen's)."""
    if EXTENSION_ERROR is not None:
        return "no compiled extension"
    from . import _C

    return _C.cpu_conversions()


def report():
    lines = [
        f"dsa_ops:          {__version__}",
        f"python:           {platform.python_version()} ({sys.executable})",
        f"torch:            {torch.__version__} (CUDA {torch.version.cuda or 'none'})",
        f"triton:           {_triton_version()}",
        f"compiled ext:     {_extension()}",
        f"cpu conversions:  {_cpu_conversions()} (ATen's CPU capability: {torch.backends.cpu.get_cpu_capability()})",
    ]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(i)
            lines.append(f"GPU {i}:            {torch.cuda.get_device_name(i)} (sm_{major}{minor})")
    else:
        lines.append("GPU:              none visible")
    lines.append("backends:")
    for name, problem in backend_status().items():
        lines.append(f"  {name:<10} {'available' if problem is None else 'unavailable: ' + problem}")
    lines.append("settings:")
    for name, default in SETTINGS.items():
        value = os.environ.get(name)
        lines.append(f"  {name}={value}" if value else f"  {name} unset ({default})")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
