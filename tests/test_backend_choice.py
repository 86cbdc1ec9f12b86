"""The single backend choice: explicit backends, $DSA_OPS_BACKEND, auto with a one-time warning."""
import os
import warnings

import pytest
import torch

import dsa_ops
from dsa_ops import ops


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
    monkeypatch.setattr(ops, "backend_status", lambda: {"cpu": "pretend it did not build", "cuda": "no",
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


def test_python_schemas_match_the_compiled_ops():
    """ops.SCHEMAS (used to define the Triton ops) agrees with csrc/dsa_ops.cpp, op by op."""
    for name, schema in ops.SCHEMAS.items():
        if ops.EXTENSION_ERROR is None:
            assert str(getattr(torch.ops.dsa_ops, name).default._schema) == f"dsa_ops::{name}{schema}"
        if ops.TRITON_ERROR is None:
            assert str(getattr(torch.ops.dsa_ops, "triton_" + name).default._schema) == f"dsa_ops::triton_{name}{schema}"
