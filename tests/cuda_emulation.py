"""The CUDA kernels of csrc/cuda, compiled for the host and run by the emulation in csrc/emulation/simt.h,
as ops on CPU tensors: torch.ops.dsa_ops_emulated_cuda.<op>, with dsa_ops.ops.SCHEMAS. They check the
kernels' arithmetic, indexing, launch sizes and barriers on a machine without a GPU (not their speed,
and not races the emulation's fixed interleaving cannot show). Built once per checkout with the
compiler the extension was built with (torch.utils.cpp_extension, into build/cuda_emulation).

DSA_OPS_EMULATION_ASAN=1 builds it with AddressSanitizer instead (into build/cuda_emulation_asan), so that
a kernel reading or writing outside a tensor's memory fails; the process must preload libasan (and
libstdc++, which ASan must see before torch throws): `make test-asan`."""
import functools
import os
import sys

import torch
from torch.utils import cpp_extension

from dsa_ops.ops import SCHEMAS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMESPACE = "dsa_ops_emulated_cuda"
SOURCES = ["csrc/emulation/simt.cpp", "csrc/emulation/cuda_kernels.cpp", "csrc/emulation/register.cpp",
           "csrc/emulation/self_test.cpp", "csrc/ops.cpp", "csrc/layout.cpp", "csrc/checks.cpp"]


@functools.cache
def emulated_ops():
    """torch.ops.dsa_ops_emulated_cuda, built and registered on first use."""
    library = torch.library.Library(NAMESPACE, "FRAGMENT")
    for name, schema in SCHEMAS.items():
        library.define(name + schema)
    bin_dir = os.path.dirname(sys.executable)  # where pip put ninja, in a virtual environment
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    asan = os.environ.get("DSA_OPS_EMULATION_ASAN") == "1"
    build_dir = os.path.join(ROOT, "build", "cuda_emulation_asan" if asan else "cuda_emulation")
    os.makedirs(build_dir, exist_ok=True)
    sanitize = ["-fsanitize=address", "-fno-omit-frame-pointer"] if asan else []
    cpp_extension.load(
        name=NAMESPACE,
        sources=[os.path.join(ROOT, source) for source in SOURCES],
        # hidden: its copies of the op layer and the kernel table, never those of dsa_ops._C (a function's
        # static, like the table, would otherwise be one object across the two libraries)
        extra_cflags=["-O2", "-DDSA_OPS_CUDA_EMULATION", "-fvisibility=hidden", *sanitize],
        extra_ldflags=sanitize,
        build_directory=build_dir,
        is_python_module=False,
    )
    ops = getattr(torch.ops, NAMESPACE)
    ops.library = library  # the schemas live as long as the ops
    return ops


def route_cpu_ops_to_emulation():
    """Makes the emulated CUDA ops the CPU kernels of torch.ops.dsa_ops.*, so that every test of the cpu
    backend (module, autograd, fuzzing) runs the CUDA kernels: tests/conftest.py does this when
    DSA_OPS_TEST_CUDA_EMULATION=1. Returns the library that holds the registrations."""
    ops = emulated_ops()
    library = torch.library.Library("dsa_ops", "IMPL")
    for name in SCHEMAS:
        library.impl(name, getattr(ops, name), "CPU")
    return library
