"""The source distribution carries what a build from it needs."""
import os
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def source_files(folder, suffixes):
    return sorted(os.path.relpath(os.path.join(d, f), ROOT) for d, _, files in os.walk(os.path.join(ROOT, folder))
                  for f in files if f.endswith(suffixes))


def test_sdist_holds_every_native_source_and_header(tmp_path):
    # packed where CUDA is skipped, the worst case: setuptools then lists no csrc/cuda file by itself
    env = {name: value for name, value in os.environ.items() if name != "DSA_OPS_FORCE_CUDA"}  # CI forces CUDA
    env["DSA_OPS_SKIP_CUDA"] = "1"
    done = subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path), "sdist",
                           "--dist-dir", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True)
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
