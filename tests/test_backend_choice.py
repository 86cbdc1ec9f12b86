"""The single backend choice: explicit backends, $DSA_OPS_BACKEND, auto with a one-time warning."""
import os
import types
import warnings

import pytest
import torch

import dsa_ops
from dsa_ops import info, ops


def test_auto_picks_the_compiled_cpu_kernel():
    assert ops.resolve_backend("auto", "cpu") == "cpu"


def test_explicit_missing_backend_is_an_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # without the interpreter Triton needs CUDA tensors
    with pytest.raises(RuntimeError, match="backend='triton' runs on cuda tensors, got a cpu tensor"):
        dsa_ops.DSAConv(16, split_ratio=0.5, backend="triton")(torch.randn(8, 16, 3, 3))
    with pytest.raises(RuntimeError, match="backend='cuda' runs on cuda tensors"):
        dsa_ops.dsa_aggregate(torch.randn(8, 16, 3, 3), torch.rand(2, 4, 3), 4, backend="cuda")


def test_environment_overrides_auto(monkeypatch):
    monkeypatch.setenv(ops.ENV_BACKEND, "reference")
    assert ops.resolve_backend("auto", "cpu") == "reference"
    assert ops.resolve_backend("cpu", "cpu") == "cpu"
    monkeypatch.setenv(ops.ENV_BACKEND, "bogus")
    with pytest.raises(ValueError, match=r"\$DSA_OPS_BACKEND must be one of"):
        ops.resolve_backend("auto", "cpu")


def test_fallback_warns_once(monkeypatch):
    monkeypatch.setattr(ops, "_warned_fallbacks", set())
    monkeypatch.setattr(ops, "_status_for", lambda device_type: {"cpu": "pretend it did not build", "cuda": "no",
                                                                 "triton": "no", "reference": None})
    with pytest.warns(UserWarning, match="using the 'reference' backend on cpu .*pretend it did not build"):
        assert ops.resolve_backend("auto", "cpu") == "reference"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ops.resolve_backend("auto", "cpu") == "reference"


def test_unknown_device_uses_the_reference(monkeypatch):
    monkeypatch.setattr(ops, "_warned_fallbacks", {("meta", "reference")})
    assert ops.resolve_backend("auto", "meta") == "reference"


def test_backend_status_reports_every_backend():
    status = dsa_ops.backend_status()
    assert set(status) == {"cpu", "cuda", "triton", "reference"}
    assert status["cpu"] is None and status["reference"] is None
    if not torch.cuda.is_available():
        assert status["cuda"] is not None


@pytest.mark.skipif(os.environ.get("DSA_OPS_FORCE_CUDA") != "1", reason="only when the build was forced to CUDA")
def test_forced_cuda_build_registered_cuda_kernels():
    for op in ("segment_pool", "segment_pool_backward", "aggregate", "aggregate_grad_input", "aggregate_grad_weight",
               "dsa_forward", "dsa_backward"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"dsa_ops::{op}", "CUDA"), op
    arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if arch_list:  # the architectures the library records, as TORCH_CUDA_ARCH_LIST names them
        expected = set()
        for entry in arch_list.replace(";", " ").split():
            number = entry.removesuffix("+PTX").replace(".", "")
            expected |= {f"sm_{number}"} | ({f"compute_{number}"} if entry.endswith("+PTX") else set())
        assert set(dsa_ops._C.cuda_architectures.split()) == expected
        assert f"CPU and CUDA kernels ({dsa_ops._C.cuda_architectures})" in info.report()


def test_python_schemas_match_the_compiled_ops():
    """ops.SCHEMAS (used to define the Triton ops) agrees with csrc/dsa_ops.cpp, op by op."""
    for name, schema in ops.SCHEMAS.items():
        if ops.EXTENSION_ERROR is None:
            assert str(getattr(torch.ops.dsa_ops, name).default._schema) == f"dsa_ops::{name}{schema}"
        if ops.TRITON_ERROR is None:
            assert str(getattr(torch.ops.dsa_ops, "triton_" + name).default._schema) == f"dsa_ops::triton_{name}{schema}"


@pytest.mark.parametrize("codes, capability, runs", [
    (["sm_90"], (9, 0), True),
    (["sm_80"], (8, 6), True),  # machine code runs on the later minors of its major
    (["sm_86"], (8, 0), False),
    (["sm_90"], (10, 0), False),  # not across majors
    (["compute_90", "sm_90"], (12, 0), True),  # PTX: the driver compiles it for later GPUs
    (["compute_90"], (8, 9), False),
    (["sm_90a"], (9, 0), True),
    (["compute_90a", "sm_90a"], (10, 0), False),  # architecture-specific: its own GPU only
    (["sm_100f"], (10, 3), True),  # family-specific: its major's later minors
    (["compute_100f"], (12, 0), False),
    (["compute_90", "sm_80", "sm_86", "sm_89", "sm_90"], (7, 5), False),  # the default list on a Turing GPU
])
def test_which_gpus_run_a_build(codes, capability, runs):
    assert ops.runs_on(codes, capability) == runs


@pytest.fixture
def fresh_architecture_check():
    ops._cuda_architecture_problem.cache_clear()
    yield
    ops._cuda_architecture_problem.cache_clear()


def test_a_gpu_the_cuda_kernels_were_not_built_for_takes_the_next_backend(monkeypatch, fresh_architecture_check):
    """A build for sm_90 on a machine whose second GPU is sm_80: the cuda backend is unavailable, with the
    rebuild command; auto takes Triton, warning once. Calls on CPU tensors never read the GPUs."""
    monkeypatch.setattr(ops, "_warned_fallbacks", set())
    monkeypatch.setattr(ops, "_backend_status", lambda interpreted: tuple((name, None) for name in ops.BACKENDS[1:]))
    monkeypatch.setattr(ops, "_C", types.SimpleNamespace(cuda_architectures="sm_90"), raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: [(9, 0), (8, 0)][index])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "NVIDIA A100")
    assert ops._status_for("cpu")["cuda"] is None
    assert ops._cuda_architecture_problem.cache_info().misses == 0
    expected = ("its CUDA kernels were built for sm_90, which GPU 1 (NVIDIA A100, sm_80) cannot run: rebuild with "
                "TORCH_CUDA_ARCH_LIST=8.0 pip install --no-build-isolation .")
    assert dsa_ops.backend_status()["cuda"] == expected
    with pytest.warns(UserWarning, match=r"using the 'triton' backend on cuda \(cuda: its CUDA kernels were built"):
        assert ops.resolve_backend("auto", "cuda") == "triton"
    with pytest.raises(RuntimeError, match="backend='cuda' is not available: its CUDA kernels were built for sm_90"):
        ops.resolve_backend("cuda", "cuda")


def test_a_build_that_records_no_architectures_is_not_second_guessed(monkeypatch, fresh_architecture_check):
    monkeypatch.setattr(ops, "_C", types.SimpleNamespace(), raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: (7, 0))
    assert ops._cuda_architecture_problem() is None
