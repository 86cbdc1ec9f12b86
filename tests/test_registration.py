"""Op registration: torch.library.opcheck on every op (schema, fake kernel, autograd registration,
AOT dispatch), and torch.compile(fullgraph=True) of a model holding DSAConv against eager."""
import pytest
import torch
from torch import nn

import dsa_ops
from helpers import make_input, randomize_generator

ops = torch.ops.dsa_ops


def op_samples(rng, layout):
    x = make_input((8, 6, 2, 3, 3), layout=layout, generator=rng, requires_grad=True)
    grad_y = make_input(x.shape, layout=layout, generator=rng)
    weight = torch.rand(2, 3, 3, generator=rng, requires_grad=True)
    pooled = torch.randn(2, 3, 4, generator=rng)
    hidden = 8
    params = [torch.randn(hidden, 4, generator=rng, requires_grad=True),
              torch.rand(hidden, generator=rng, requires_grad=True) + 0.5,
              torch.randn(hidden, generator=rng, requires_grad=True),
              torch.randn(hidden, generator=rng), torch.rand(hidden, generator=rng) + 0.5,
              torch.randn(3, hidden, generator=rng, requires_grad=True)]
    mean, var = torch.randn(hidden, generator=rng), torch.rand(hidden, generator=rng) + 0.5
    w1, bn_w, bn_b, _, _, w2 = params
    return [
        (ops.segment_pool, (x, 4, 3)),
        (ops.segment_pool_backward, (pooled, x.detach(), 4)),
        (ops.aggregate, (x, weight, 4, True)),
        (ops.aggregate_grad_input, (grad_y, weight, pooled, 4, False)),
        (ops.aggregate_grad_weight, (grad_y, x, 4, 3, 3)),
        (ops.dsa_forward, (x, *params, 4, 3, True, 1e-5, False)),
        (ops.dsa_forward, (x, *params, 4, 3, False, 1e-5, True)),
        (ops.dsa_backward, (grad_y, x.detach(), pooled, mean, var, w1.detach(), bn_w.detach(), bn_b.detach(),
                            w2.detach(), 4, True, 1e-5, False)),
    ]


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "spatial_slice"])
def test_opcheck_every_op(rng, layout):
    samples = op_samples(rng, layout)
    assert {op.default.name() for op, _ in samples} == {
        f"dsa_ops::{name}" for name in ("segment_pool", "segment_pool_backward", "aggregate", "aggregate_grad_input",
                                        "aggregate_grad_weight", "dsa_forward", "dsa_backward")}
    for op, args in samples:
        torch.library.opcheck(op, args)


class TinyVideoNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 16, (1, 3, 3), padding=(0, 1, 1))
        self.dsa = dsa_ops.DSAConv(16, U_segment=4, split_ratio=0.25, backend="cpu")
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        h = self.dsa(h)
        return self.head(h.mean(dim=(2, 3, 4)))


@pytest.mark.parametrize("training", [True, False])
def test_compile_fullgraph_matches_eager(rng, training):
    torch.manual_seed(0)
    eager = TinyVideoNet().train(training)
    randomize_generator(eager.dsa, rng)
    compiled_model = TinyVideoNet().train(training)
    compiled_model.load_state_dict(eager.state_dict())
    compiled = torch.compile(compiled_model, fullgraph=True, backend="aot_eager")
    for step in range(2):
        x = torch.randn(8, 3, 2, 6, 6, generator=rng)
        out_eager, out_compiled = eager(x), compiled(x)
        torch.testing.assert_close(out_compiled, out_eager, rtol=1e-5, atol=1e-5)
        out_eager.square().sum().backward()
        out_compiled.square().sum().backward()
    for (name, p), p_compiled in zip(eager.named_parameters(), compiled_model.parameters()):
        torch.testing.assert_close(p_compiled.grad, p.grad, rtol=1e-5, atol=1e-5, msg=name)
    for (name, b), b_compiled in zip(eager.named_buffers(), compiled_model.buffers()):
        torch.testing.assert_close(b_compiled, b, rtol=1e-6, atol=1e-6, msg=name)
    assert int(compiled_model.dsa.generate[1].num_batches_tracked) == (2 if training else 0)


def test_compile_inductor_fullgraph(rng):
    model = TinyVideoNet()
    x = torch.randn(8, 3, 2, 6, 6, generator=rng)
    expected = model(x)
    model.dsa.generate[1].reset_running_stats()
    fresh = TinyVideoNet()
    fresh.load_state_dict(model.state_dict())
    fresh.dsa.generate[1].reset_running_stats()
    out = torch.compile(fresh, fullgraph=True)(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
