"""Storage conversions of every kernel backend: float16 and bfloat16 values widen exactly (every bit
pattern), and float32 results narrow as torch rounds them (to nearest even, ties included, overflow to
infinity, subnormals kept, NaN staying NaN), along lines long enough for the CPU's vectorised
conversions (F16C, AVX2) and with scalar tails."""
import os
import subprocess
import sys

import pytest
import torch

import dsa_ops
from helpers import device_for

HALF_DTYPES = [torch.float16, torch.bfloat16]
VECTOR_CONVERSIONS, SCALAR_CONVERSIONS = "float16: F16C, bfloat16: AVX2", "float16: scalar, bfloat16: scalar"


def same_values(actual, expected):
    """Bitwise equal, both NaN (a NaN's payload is the hardware's choice) or both zero (a zero's sign is the
    arithmetic's: a sum that starts from 0 turns -0 into +0)."""
    actual, expected = actual.cpu(), expected.cpu()
    return ((actual.view(torch.int16) == expected.view(torch.int16)) | (actual.isnan() & expected.isnan())
            | ((actual == 0) & (expected == 0)))


def skip_interpreted_bfloat16(backend, dtype):
    if backend == "triton" and dtype == torch.bfloat16 and os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("Triton's interpreter converts between float32 and bfloat16 in numpy bit arithmetic that "
                    "truncates and flushes subnormals (_convert_float in triton/runtime/interpreter.py); "
                    "compiled Triton rounds to nearest even")


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_every_value_widens_exactly(backend, dtype):
    skip_interpreted_bfloat16(backend, dtype)
    every = torch.arange(-2**15, 2**15, dtype=torch.int32).to(torch.int16).view(dtype)
    values = torch.cat([every, every[:4 * 64 * 257 - every.numel()]])  # 257 per line: a scalar tail
    x = values.reshape(4, 1, 64, 257).to(device_for(backend))
    y = dsa_ops.dsa_aggregate(x, torch.ones(1, 1, 1, device=x.device), 4, backend=backend)
    assert y.dtype == dtype and bool(same_values(y, x).all())


def float32_values(count, generator):
    """Random float32 values over its whole range of magnitudes, a third of them exact ties of the
    float16 and bfloat16 rounding, with NaN and both infinities."""
    values = torch.randn(count, generator=generator) * torch.logspace(-44, 38, count)
    bits = values.view(torch.int32)
    bits[0::3] = (bits[0::3] & ~0xFFFF) | 0x8000  # bfloat16 ties
    bits[1::3] = (bits[1::3] & ~0x1FFF) | 0x1000  # float16 ties (where the value is a normal float16)
    values[::997], values[5], values[7] = float("nan"), float("inf"), -float("inf")
    return values


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_results_narrow_as_torch_rounds(backend, rng, dtype, layout):
    """segment_pool's input gradient is grad_pooled / S in float32, narrowed: with S = 16 the division is
    exact, so the result is torch's rounding of the same float32 values. 4100 channels: lines along the
    channels (channels-last) end in a 4-channel block."""
    skip_interpreted_bfloat16(backend, dtype)
    channels, device = 4100, device_for(backend)
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.zeros(4, channels, 4, 4, dtype=dtype, device=device).to(memory_format=memory_format)
    grad_pooled = float32_values(channels * 4, rng).reshape(1, channels, 4).to(device)
    x.requires_grad_(True)
    dsa_ops.segment_pool(x, 4, channels, backend=backend).backward(grad_pooled)
    expected = (grad_pooled / 16).permute(2, 1, 0).reshape(4, channels, 1, 1).expand(x.shape).to(dtype)
    assert bool(same_values(x.grad, expected).all())


def cpu_conversions():
    if dsa_ops.backend_status()["cpu"] is not None:
        pytest.skip(f"cpu backend: {dsa_ops.backend_status()['cpu']}")
    from dsa_ops import _C

    return _C.cpu_conversions()


def test_cpu_conversions_vectorise_with_aten():
    """On an x86-64 CPU where ATen runs its AVX2 or AVX-512 kernels, the CPU kernels convert with F16C
    and AVX2 (every such CPU has F16C); elsewhere with c10's scalar conversions."""
    vectorises = torch.backends.cpu.get_cpu_capability().startswith("AVX")
    assert cpu_conversions() == (VECTOR_CONVERSIONS if vectorises else SCALAR_CONVERSIONS)


@pytest.mark.skipif(os.environ.get("ATEN_CPU_CAPABILITY") == "default", reason="runs this file with it set")
def test_cpu_scalar_conversions_pass_the_same_tests():
    """ATEN_CPU_CAPABILITY=default turns ATen's vector kernels off and the CPU kernels' F16C and AVX2
    conversions with them: this file's cpu tests then check c10's scalar conversions."""
    if cpu_conversions() == SCALAR_CONVERSIONS:
        pytest.skip("the conversions are scalar already: the other tests of this file check them")
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default")
    script = "from dsa_ops import _C; print(_C.cpu_conversions())"
    shown = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == SCALAR_CONVERSIONS
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", "cpu"],
                          env=env, cwd=os.path.dirname(os.path.dirname(__file__)), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout.splitlines()[-1] and "failed" not in done.stdout.splitlines()[-1]
