import pytest
import torch


@pytest.fixture
def rng(request):
    """A generator seeded from the test id: fresh inputs per case, reproducible per case."""
    seed = sum(ord(c) * (i + 1) for i, c in enumerate(request.node.nodeid)) % (2**31)
    return torch.Generator().manual_seed(seed)
