"""The reference (the spec) against the independent loop formulation in float64."""
import pytest
import torch

import dsa_ops
from dsa_ops import reference
from helpers import make_input, randomize_generator
from loops import aggregate_loops, dsa_loops, pool_loops


@pytest.mark.parametrize("num_segments,kernel_size", [(1, 1), (1, 3), (2, 3), (3, 5), (4, 3), (4, 7), (8, 3)])
@pytest.mark.parametrize("identity", [False, True])
@pytest.mark.parametrize("shape_tail", [(7, 7), (2, 3, 5), (1, 1)])
@pytest.mark.parametrize("training", [False, True])
def test_module_matches_loops(rng, num_segments, kernel_size, identity, shape_tail, training):
    videos, channels = 3, 16
    module = randomize_generator(dsa_ops.DSAReference(channels, U_segment=num_segments, kernel_size=kernel_size,
                                                      padding=(kernel_size - 1) // 2, split_ratio=0.25,
                                                      with_identity=identity), rng).double()
    module.train(training)
    x = make_input((videos * num_segments, channels, *shape_tail), torch.float64, generator=rng)
    expected, mean, unbiased = dsa_loops(x, module, training)
    bn = module.generate[1]
    before_mean, before_var = bn.running_mean.clone(), bn.running_var.clone()
    y = module(x)
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
    if kernel_size > 1 or identity:  # K = 1 without identity is the identity map (softmax of one logit)
        assert not torch.allclose(y, x)
    if training:
        torch.testing.assert_close(bn.running_mean, 0.9 * before_mean + 0.1 * mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(bn.running_var, 0.9 * before_var + 0.1 * unbiased, rtol=1e-12, atol=1e-12)


def test_pool_and_aggregate_match_loops(rng):
    x = make_input((8, 6, 3, 4, 5), torch.float64, generator=rng)
    torch.testing.assert_close(reference.segment_pool(x, 4, 5), pool_loops(x, 4, 5), rtol=1e-12, atol=1e-12)
    kernel = torch.rand(2, 5, 3, generator=rng, dtype=torch.float64)
    for identity in (False, True):
        torch.testing.assert_close(reference.aggregate(x, kernel, 4, identity), aggregate_loops(x, kernel, 4, identity),
                                   rtol=1e-12, atol=1e-12)


def test_known_values():
    """A hand-worked case: one video, U=3, one channel with S=1, kernel (0.2, 0.3, 0.5)."""
    x = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64).view(3, 1, 1, 1)
    kernel = torch.tensor([[[0.2, 0.3, 0.5]]], dtype=torch.float64)
    y = reference.aggregate(x, kernel, 3).flatten()
    torch.testing.assert_close(y, torch.tensor([0.3 + 1.0, 0.2 + 0.6 + 2.0, 0.4 + 1.2], dtype=torch.float64))
