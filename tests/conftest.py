import os

import pytest
import torch

if not torch.cuda.is_available():  # no GPU: Triton kernels run on CPU tensors in Triton's interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")
# The suite's small shapes would send a GPU's eval forward down the composed path (pool, generator,
# aggregate: the training path's kernels); "always" keeps the one-launch eval kernels under every test.
# test_eval_paths.py covers "never" and "auto".
os.environ.setdefault("DSA_OPS_EVAL_ONE_LAUNCH", "always")

from helpers import KERNEL_BACKENDS  # noqa: E402  (imports dsa_ops after TRITON_INTERPRET is settled)

EMULATED_CUDA = os.environ.get("DSA_OPS_TEST_CUDA_EMULATION") == "1"
if EMULATED_CUDA:  # the cpu backend's tests run the CUDA kernels, emulated (tests/cuda_emulation.py)
    from cuda_emulation import route_cpu_ops_to_emulation

    _routing = route_cpu_ops_to_emulation()


def pytest_report_header(config):
    if EMULATED_CUDA:
        return "DSA_OPS_TEST_CUDA_EMULATION=1: the cpu backend's ops run the CUDA kernels in emulation"


@pytest.fixture
def rng(request):
    """A generator seeded from the test id: fresh inputs per case, reproducible per case."""
    seed = sum(ord(c) * (i + 1) for i, c in enumerate(request.node.nodeid)) % (2**31)
    return torch.Generator().manual_seed(seed)


@pytest.fixture(params=KERNEL_BACKENDS)
def backend(request):
    """Each kernel backend that can run here (the others are reported as skipped, with the reason)."""
    return request.param


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run tests marked slow (also: DSA_OPS_RUN_SLOW=1)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow") or os.environ.get("DSA_OPS_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow or DSA_OPS_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
