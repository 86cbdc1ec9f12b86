"""The source distribution carries what a build from it needs; where the CUDA kernels cannot be built
(an nvcc of another CUDA major version than torch's, a failing CUDA compile), the build says why and
installs the CPU kernels alone, the reason reported by backend_status(); an extension built against
another torch release is not used; a setuptools too old for the pyproject metadata stops the build."""
import ast
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile

import pytest
import setuptools
import torch

import dsa_ops
from dsa_ops.ops import _torch_mismatch, _triton_too_old

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def source_files(folder, suffixes):
    return sorted(os.path.relpath(os.path.join(d, f), ROOT) for d, _, files in os.walk(os.path.join(ROOT, folder))
                  for f in files if f.endswith(suffixes))


def egg_info(folder):
    return ["setup.py", "-q", "egg_info", "--egg-base", str(folder)]


def setup_py_min_setuptools():
    """setup.py's MIN_SETUPTOOLS, read off its source (importing setup.py runs it)."""
    with open(os.path.join(ROOT, "setup.py")) as f:
        tree = ast.parse(f.read())
    (value,) = [node.value.value for node in tree.body if isinstance(node, ast.Assign)
                and [getattr(target, "id", None) for target in node.targets] == ["MIN_SETUPTOOLS"]]
    return value


MIN_SETUPTOOLS = setup_py_min_setuptools()
# this environment's setuptools writes the metadata only from MIN_SETUPTOOLS on (setup.py refuses an older one)
needs_new_setuptools = pytest.mark.skipif(int(setuptools.__version__.split(".")[0]) < MIN_SETUPTOOLS,
                                          reason=f"setuptools {setuptools.__version__} is older than {MIN_SETUPTOOLS}")


def test_setup_py_and_pyproject_ask_for_the_same_setuptools():
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        (requires,) = re.findall(r'"setuptools>=(\d+)"', f.read())
    assert int(requires) == MIN_SETUPTOOLS


@needs_new_setuptools
def test_sdist_holds_every_native_source_and_header(tmp_path):
    # packed where CUDA is skipped, the worst case: setuptools then lists no csrc/cuda file by itself
    env = {name: value for name, value in os.environ.items() if name != "DSA_OPS_FORCE_CUDA"}  # CI forces CUDA
    env["DSA_OPS_SKIP_CUDA"] = "1"
    done = subprocess.run([sys.executable, *egg_info(tmp_path), "sdist", "--dist-dir", str(tmp_path)], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (archive,) = tmp_path.glob("dsa_ops-*.tar.gz")
    with tarfile.open(archive) as tar:
        packed = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    native = source_files("csrc", (".cpp", ".cu", ".h", ".cuh"))
    assert any(name.endswith(".cuh") for name in native) and any(name.startswith("csrc/cuda/") for name in native)
    assert sorted(set(native) - packed) == []
    python = source_files("dsa_ops", (".py",))
    assert sorted(set(python) - packed) == []
    assert {"setup.py", "pyproject.toml", "README.md"} <= packed


def test_a_setuptools_too_old_for_the_pyproject_metadata_stops_an_install_but_not_an_in_place_build(tmp_path):
    """With --no-build-isolation the environment's setuptools builds; before 61 it ignores pyproject.toml's
    [project] table and would install the package as UNKNOWN 0.0.0. build_ext alone needs no metadata."""
    (tmp_path / "sitecustomize.py").write_text("import setuptools\nsetuptools.__version__ = '58.1.0'\n")
    old = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, *egg_info(tmp_path)], cwd=ROOT, env=old, capture_output=True, text=True)
    assert done.returncode == 1
    assert f"setuptools 58.1.0 is older than {MIN_SETUPTOOLS}" in done.stderr and "pip install --upgrade setuptools" in done.stderr
    done = subprocess.run([sys.executable, "setup.py", "build_ext", "--help"], cwd=ROOT, env=old, capture_output=True,
                          text=True)
    assert done.returncode == 0 and "--inplace" in done.stdout, done.stdout + done.stderr


@needs_new_setuptools
def test_the_metadata_comes_from_pyproject(tmp_path):
    """Not UNKNOWN 0.0.0: the name as pyproject.toml gives it, compared as pip compares names (setuptools
    65 writes it dsa-ops, 84 dsa_ops), and the version dsa_ops.__version__."""
    done = subprocess.run([sys.executable, *egg_info(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    pkg_info = (tmp_path / "dsa_ops.egg-info" / "PKG-INFO").read_text().splitlines()
    (name,) = [line.split(":", 1)[1].strip() for line in pkg_info if line.startswith("Name:")]
    assert re.sub(r"[-_.]+", "-", name).lower() == "dsa-ops", pkg_info
    assert f"Version: {dsa_ops.__version__}" in pkg_info


def fake_toolkit(folder, release):
    """A CUDA_HOME whose nvcc answers --version with `release` (fails there too where release is None)
    and fails at anything else."""
    nvcc = folder / "bin" / "nvcc"
    nvcc.parent.mkdir(parents=True)
    version = f'echo "Cuda compilation tools, release {release}, V{release}.0"; exit 0' if release else "exit 1"
    nvcc.write_text(f'#!/bin/sh\nif [ "$1" = --version ]; then {version}; fi\n'
                    'echo "nvcc: no such compiler" >&2\nexit 1\n')
    nvcc.chmod(nvcc.stat().st_mode | stat.S_IEXEC)
    return str(folder)


def build_env(cuda_home, **settings):
    env = {name: value for name, value in os.environ.items()
           if name not in ("DSA_OPS_FORCE_CUDA", "DSA_OPS_SKIP_CUDA")}  # CI forces CUDA
    env.update(CUDA_HOME=cuda_home, **settings)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")  # pip's ninja, in a venv
    return env


def other_major_release():
    major = int(torch.version.cuda.split(".")[0])
    return "12.4" if major != 12 else "11.8"


needs_cuda_torch = pytest.mark.skipif(torch.version.cuda is None, reason="torch is not a CUDA build")


@needs_cuda_torch
def test_an_nvcc_of_another_major_version_leaves_cuda_out_and_says_why(tmp_path):
    release = other_major_release()
    env = build_env(fake_toolkit(tmp_path / "cuda", release))
    done = subprocess.run([sys.executable, "setup.py", "--name"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (f"building the CPU kernels only (nvcc {release} ({tmp_path}/cuda/bin/nvcc) and torch's CUDA "
            f"{torch.version.cuda} differ in major version") in done.stdout
    env["DSA_OPS_FORCE_CUDA"] = "1"
    forced = subprocess.run([sys.executable, "setup.py", "--name"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert forced.returncode != 0
    assert "DSA_OPS_FORCE_CUDA=1 but the CUDA kernels cannot be built: nvcc " + release in forced.stderr


@needs_cuda_torch
def test_an_nvcc_that_does_not_run_leaves_cuda_out_and_says_why(tmp_path):
    env = build_env(fake_toolkit(tmp_path / "cuda", None))
    done = subprocess.run([sys.executable, "setup.py", "--name"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"building the CPU kernels only ({tmp_path}/cuda/bin/nvcc --version did not report" in done.stdout


@needs_cuda_torch
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the GPU check's minutes go to the GPU "
                    "tests (it builds with DSA_OPS_FORCE_CUDA=1); this build runs in CI")
def test_a_failing_cuda_build_still_installs_and_says_why(tmp_path):
    # a copy of the sources built in place with an nvcc of torch's release that fails at every compile
    tree = tmp_path / "tree"
    for name in ("csrc", "dsa_ops"):
        shutil.copytree(os.path.join(ROOT, name), tree / name,
                        ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), tree / name)
    env = build_env(fake_toolkit(tmp_path / "cuda", torch.version.cuda), TORCH_CUDA_ARCH_LIST="9.0",
                    MAX_JOBS=os.environ.get("MAX_JOBS", "2"))
    built = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tree, env=env,
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert "building the CPU kernels only (the CUDA build failed: " in built.stdout
    report = subprocess.run([sys.executable, "-c", "import json, dsa_ops; print(json.dumps(dsa_ops.backend_status()))"],
                            cwd=tree, env=env, capture_output=True, text=True)
    assert report.returncode == 0, report.stderr[-3000:]
    status = json.loads(report.stdout)
    assert status["cpu"] is None
    assert status["cuda"].startswith("the extension was built without CUDA kernels (the CUDA build failed: ")


@pytest.mark.skipif(dsa_ops.ops.EXTENSION_ERROR is not None, reason="the compiled extension is not usable")
def test_the_extension_records_the_torch_it_was_built_against():
    assert dsa_ops._C.torch_version == torch.__version__


def test_an_extension_built_against_another_torch_release_is_refused():
    assert _torch_mismatch("2.14.1+cu130", "2.14.0") is None  # the same release: no ABI break
    assert _torch_mismatch("2.11.0", "2.11.0+cu130") is None
    assert _torch_mismatch("2.13.0+cpu", "2.14.1+cu130") == (
        "dsa_ops._C was built against torch 2.13.0+cpu and this is torch 2.14.1+cu130: rebuild it against this "
        "torch: pip install --no-build-isolation .")


@pytest.mark.skipif(dsa_ops.ops.EXTENSION_ERROR is not None, reason="the compiled extension is not usable")
def test_under_another_torch_release_the_extension_is_not_used():
    script = ("import torch; torch.__version__ = '1.0.0'\n"
              "import dsa_ops; print(dsa_ops.backend_status()['cpu'])\n"
              "print(dsa_ops.DSAConv(8).eval()(torch.ones(4, 8, 2, 2)).shape)")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [
        f"the compiled extension is not usable (dsa_ops._C was built against torch {torch.__version__} and this is "
        f"torch 1.0.0: rebuild it against this torch: pip install --no-build-isolation .)",
        "torch.Size([4, 8, 2, 2])"]
    assert "using the 'reference' backend on cpu (cpu: the compiled extension is not usable" in done.stderr


def test_a_triton_older_than_the_minimum_is_refused():
    """Triton 3.0 and 3.1 (whose interpreters return garbage for these kernels) are refused with the reason,
    which backend_status then reports for the triton backend; 3.2 and later, two-digit minors included, are
    used."""
    assert _triton_too_old("3.0.0") == "triton 3.0.0 is older than 3.2"
    assert _triton_too_old("3.1.0") == "triton 3.1.0 is older than 3.2"
    assert _triton_too_old("2.3.1") == "triton 2.3.1 is older than 3.2"
    for version in ("3.2.0", "3.6.0", "3.10.1", "4.0.0"):
        assert _triton_too_old(version) is None
