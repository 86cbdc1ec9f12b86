"""python -m dsa_ops.info: every backend with its status, and the settings in force."""
import dsa_ops
from dsa_ops import info


def test_report_lists_backends_and_settings(monkeypatch):
    monkeypatch.delenv("DSA_OPS_BACKEND", raising=False)
    monkeypatch.setenv("DSA_OPS_EVAL_ONE_LAUNCH", "never")
    lines = info.report().splitlines()
    for name, problem in dsa_ops.backend_status().items():
        status = "available" if problem is None else f"unavailable: {problem}"
        assert f"  {name:<10} {status}" in lines
    assert "  DSA_OPS_EVAL_ONE_LAUNCH=never" in lines
    assert any(line.startswith("  DSA_OPS_BACKEND unset (auto") for line in lines)
