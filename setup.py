"""Builds dsa_ops._C: the C++ op schemas and CPU kernels always, the CUDA kernels (csrc/cuda/*.cu) when
torch is a CUDA build and an nvcc of the same CUDA major version is found. Where the CUDA kernels are not
built, or their build fails, the extension holds the CPU kernels alone and carries the reason
(dsa_ops.backend_status() reports it): the package still installs, with its CPU and Triton backends.

Environment:
  DSA_OPS_SKIP_CUDA=1   build the CPU extension only.
  DSA_OPS_FORCE_CUDA=1  fail unless the CUDA kernels are built.
  TORCH_CUDA_ARCH_LIST  CUDA architectures; when unset and no GPU is visible: 8.0;8.6;8.9;9.0+PTX.
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import sysconfig

import setuptools

# The package's name, version (dsa_ops.__version__) and dependencies are in pyproject.toml, which setuptools
# reads from 61 on (64: editable installs). pip's build isolation installs one that new;
# --no-build-isolation uses the environment's, which may be older (a Python 3.9 venv has 58.1) and would
# install a package named UNKNOWN.
# Building the extension in place (build_ext, as scripts/gpu_check.sh does) needs no metadata: any version.
# pyproject.toml's build-system asks for the same (tests/test_packaging.py checks that they agree).
MIN_SETUPTOOLS = 64
METADATA_COMMANDS = {"egg_info", "dist_info", "bdist_wheel", "editable_wheel", "sdist", "develop", "install"}
if int(setuptools.__version__.split(".")[0]) < MIN_SETUPTOOLS and METADATA_COMMANDS & set(sys.argv[1:]):
    sys.exit(f"dsa_ops: setuptools {setuptools.__version__} is older than {MIN_SETUPTOOLS}, the first to read this "
             f"package's metadata from pyproject.toml as it needs (an older one installs it as UNKNOWN 0.0.0): "
             f"pip install --upgrade setuptools, then install again")

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


def nvcc_release(nvcc):
    """The CUDA release nvcc reports, as "major.minor", or None where it does not run or say."""
    try:
        report = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    found = re.search(r"release (\d+\.\d+)", report)
    return found.group(1) if found else None


def cuda_build_problem(cuda_sources):
    """Why the CUDA kernels cannot be built here, or None when they can."""
    if not cuda_sources:
        return "no CUDA sources in csrc/cuda"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is not a CUDA build"
    if cpp_extension.CUDA_HOME is None:
        return "nvcc not found (set CUDA_HOME)"
    nvcc = os.path.join(cpp_extension.CUDA_HOME, "bin", "nvcc")
    release = nvcc_release(nvcc)
    if release is None:
        return f"{nvcc} --version did not report a CUDA release"
    torch_major = torch.version.cuda.split(".")[0]
    if release.split(".")[0] != torch_major:  # torch's build refuses this pair
        return (f"nvcc {release} ({nvcc}) and torch's CUDA {torch.version.cuda} differ in major version: "
                f"set CUDA_HOME to a CUDA {torch_major}.x toolkit to build the CUDA kernels")
    return None


def wheel_cuda_include_dirs():
    """CUDA headers shipped in the nvidia pip wheels (cuBLAS, cuSPARSE, ...) that torch's headers include."""
    site = sysconfig.get_paths()["purelib"]
    return sorted(p for p in glob.glob(os.path.join(site, "nvidia", "cu*", "include")) if os.path.isdir(p))


CPP_SOURCES = sources("csrc/*.cpp") + sources("csrc/cpu/*.cpp")
CUDA_SOURCES = sources("csrc/cuda/*.cu") + sources("csrc/cuda/*.cpp")
# -g0 overrides the -g of Python's own build flags: debug information doubled the C++ compile time and
# made the library 29 MB
CXX_FLAGS = ["-O3", "-g0", "-fopenmp"]
CUDA_MACRO = ("DSA_OPS_WITH_CUDA", "1")


def string_macro(name, text):
    """A C++ compiler flag defining a macro that holds text as its UTF-8 bytes' codes, which no shell or
    ninja quoting alters: in C++, {NAME, 0} is the string (csrc/dsa_ops.cpp makes them attributes of
    dsa_ops._C). For the C++ compiler only: nvcc splits a flag's value at commas."""
    return f"-D{name}=" + ",".join(str(byte) for byte in text.encode())


# the torch the extension is built against: dsa_ops refuses to use it under another torch
TORCH_MACRO = string_macro("DSA_OPS_TORCH_VERSION", torch.__version__)


def cuda_codes():
    """What the CUDA build puts in the library, as torch's build derives it from TORCH_CUDA_ARCH_LIST (or
    the visible GPUs): sm_XY (machine code) and compute_XY (PTX) names. dsa_ops checks them against the
    GPUs at run time (dsa_ops/ops.py)."""
    return sorted({re.search(r",code=(\w+)", flag).group(1) for flag in cpp_extension._get_cuda_arch_flags()})


def cpu_extension(reason):
    """The CPU kernels alone; the reason the CUDA kernels are not built becomes dsa_ops._C.cuda_not_built."""
    print(f"dsa_ops: building the CPU kernels only ({reason})")
    flags = [*CXX_FLAGS, TORCH_MACRO, string_macro("DSA_OPS_CUDA_NOT_BUILT", reason)]
    return cpp_extension.CppExtension("dsa_ops._C", CPP_SOURCES, extra_compile_args={"cxx": flags},
                                      extra_link_args=["-fopenmp"])


def extension():
    problem = "DSA_OPS_SKIP_CUDA=1" if env_flag("DSA_OPS_SKIP_CUDA") else cuda_build_problem(CUDA_SOURCES)
    if problem is None:
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCHS
        print(f"dsa_ops: building CPU + CUDA kernels for TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}")
        codes = cuda_codes()
        architectures = [string_macro("DSA_OPS_CUDA_ARCHITECTURES", " ".join(codes))] if codes else []
        return cpp_extension.CUDAExtension(
            "dsa_ops._C",
            CPP_SOURCES + CUDA_SOURCES,
            include_dirs=wheel_cuda_include_dirs(),
            define_macros=[CUDA_MACRO],
            extra_compile_args={"cxx": [*CXX_FLAGS, TORCH_MACRO, *architectures], "nvcc": ["-O3", "-lineinfo"]},
            extra_link_args=["-fopenmp"],
        )
    if env_flag("DSA_OPS_FORCE_CUDA"):
        sys.exit(f"dsa_ops: DSA_OPS_FORCE_CUDA=1 but the CUDA kernels cannot be built: {problem}")
    return cpu_extension(problem)


class BuildExtension(cpp_extension.BuildExtension):
    """torch's build_ext, except that where the CUDA kernels fail to build (and DSA_OPS_FORCE_CUDA is not
    set) it builds the CPU kernels alone, the failure's first line kept as the reason."""

    def build_extensions(self):
        # torch's build_extensions wraps the compiler's methods: the CPU build starts from the originals
        compiler_state = (self.compiler.compile, self.compiler._compile, list(self.compiler.src_extensions))
        try:
            super().build_extensions()
        except Exception as error:  # a compiler's or torch's error: the build, not this code
            if not any(CUDA_MACRO in ext.define_macros for ext in self.extensions) or env_flag("DSA_OPS_FORCE_CUDA"):
                raise
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            self.compiler.compile, self.compiler._compile, self.compiler.src_extensions = compiler_state
            (ext,) = self.extensions  # updated in place: setuptools has annotated it (finalize_options)
            vars(ext).update(vars(cpu_extension(f"the CUDA build failed: {first_line}; the build's output, "
                                                "shown by pip install -v, has the compiler's messages")))
            super().build_extensions()


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension},
)
