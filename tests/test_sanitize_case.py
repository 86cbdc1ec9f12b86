"""scripts/sanitize_case.py, which the GPU check runs under compute-sanitizer, runs to its end: here on
the cpu backend (in the emulation pass, DSA_OPS_TEST_CUDA_EMULATION=1, on the CUDA kernels emulated),
and on cuda where a GPU is visible."""
import os
import runpy

import pytest

from helpers import backend_param

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "sanitize_case.py")


@pytest.mark.parametrize("backend", [backend_param("cpu"), backend_param("cuda")])
def test_sanitize_case_runs(backend, monkeypatch, capsys):
    for name in ("DSA_OPS_FUSED_GENERATOR", "DSA_OPS_EVAL_ONE_LAUNCH"):  # the script sets them: restored after
        monkeypatch.setenv(name, "auto")
    runpy.run_path(SCRIPT)["main"](backend)
    assert capsys.readouterr().out.endswith("sanitize case done\n")
