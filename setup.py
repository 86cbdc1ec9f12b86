"""Builds dsa_ops._C: the C++ op schemas and CPU kernels always, the CUDA kernels (csrc/cuda/*.cu) when
torch is a CUDA build and nvcc is found.

Environment:
  DSA_OPS_SKIP_CUDA=1   build the CPU extension only.
  DSA_OPS_FORCE_CUDA=1  fail unless the CUDA kernels can be built.
  TORCH_CUDA_ARCH_LIST  CUDA architectures; when unset and no GPU is visible: 8.0;8.6;8.9;9.0+PTX.
"""
import glob
import os
import shutil
import sys
import sysconfig

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CUDA_ARCHS = "8.0;8.6;8.9;9.0+PTX"


def is_cuda_toolkit(path):
    return os.path.isfile(os.path.join(path, "include", "cuda_runtime.h"))


def locate_cuda_home():
    """torch takes CUDA_HOME from the directory above the nvcc on PATH; where that nvcc is a wrapper
    outside the toolkit (e.g. /usr/local/bin/nvcc), point CUDA_HOME at the toolkit instead."""
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    nvcc = shutil.which("nvcc")
    if nvcc is None or is_cuda_toolkit(os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))):
        return
    for candidate in ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True):
        if is_cuda_toolkit(candidate):
            os.environ["CUDA_HOME"] = candidate
            return


locate_cuda_home()

import torch  # noqa: E402  (after CUDA_HOME is settled: cpp_extension reads it on import)
from setuptools import setup  # noqa: E402
from torch.utils import cpp_extension  # noqa: E402


def sources(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern), recursive=True))


def env_flag(name):
    return os.environ.get(name, "0") not in ("", "0", "false", "False")


def cuda_build_problem(cuda_sources):
    """Why the CUDA kernels cannot be built here, or None when they can."""
    if not cuda_sources:
        return "no CUDA sources in csrc/cuda"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is not a CUDA build"
    if cpp_extension.CUDA_HOME is None:
        return "nvcc not found (set CUDA_HOME)"
    return None


def wheel_cuda_include_dirs():
    """CUDA headers shipped in the nvidia pip wheels (cuBLAS, cuSPARSE, ...) that torch's headers include."""
    site = sysconfig.get_paths()["purelib"]
    return sorted(p for p in glob.glob(os.path.join(site, "nvidia", "cu*", "include")) if os.path.isdir(p))


def extension():
    cpp_sources = sources("csrc/*.cpp") + sources("csrc/cpu/*.cpp")
    cuda_sources = sources("csrc/cuda/*.cu") + sources("csrc/cuda/*.cpp")
    cxx_flags = ["-O3", "-fopenmp"]
    problem = "DSA_OPS_SKIP_CUDA=1" if env_flag("DSA_OPS_SKIP_CUDA") else cuda_build_problem(cuda_sources)
    if problem is None:
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCHS
        print(f"dsa_ops: building CPU + CUDA kernels for TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}")
        return cpp_extension.CUDAExtension(
            "dsa_ops._C",
            cpp_sources + cuda_sources,
            include_dirs=wheel_cuda_include_dirs(),
            define_macros=[("DSA_OPS_WITH_CUDA", "1")],
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-lineinfo"]},
            extra_link_args=["-fopenmp"],
        )
    if env_flag("DSA_OPS_FORCE_CUDA"):
        sys.exit(f"dsa_ops: DSA_OPS_FORCE_CUDA=1 but the CUDA kernels cannot be built: {problem}")
    print(f"dsa_ops: building the CPU kernels only ({problem})")
    return cpp_extension.CppExtension(
        "dsa_ops._C", cpp_sources, extra_compile_args={"cxx": cxx_flags}, extra_link_args=["-fopenmp"]
    )


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension},
)
