"""Every Triton kernel compiles through Triton's real compiler for Hopper (sm_90), with no GPU needed:
tests/triton_compile.py in its own process, where the kernels are compiled rather than interpreted. Where
a GPU is visible the Triton tests compile and run every kernel on it, so this one (minutes of compiling
on one core) is skipped."""
import os
import re
import subprocess
import sys

import pytest
import torch

import dsa_ops

HERE = os.path.dirname(os.path.abspath(__file__))

pytestmark = [
    pytest.mark.skipif(dsa_ops.ops.TRITON_ERROR is not None, reason=f"triton: {dsa_ops.ops.TRITON_ERROR}"),
    pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the Triton tests compile on it"),
]


def test_every_triton_kernel_compiles_for_sm90():
    env = {name: value for name, value in os.environ.items() if name != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, os.path.join(HERE, "triton_compile.py"), "--arch", "90"], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
    counts = re.search(r"kernels compiled: (\d+) of (\d+); failures: 0", done.stdout)
    assert counts and counts[1] == counts[2] and int(counts[1]) >= 9, done.stdout
    assert "kernels with a matrix product (tt.dot): none" in done.stdout, done.stdout
