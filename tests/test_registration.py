"""Op registration: torch.library.opcheck on every op (schema, fake kernel, autograd registration,
AOT dispatch), and torch.compile(fullgraph=True) of a model holding DSAConv against eager."""
import pytest
import torch
from torch import nn

import dsa_ops
from helpers import DEVICE_OF, make_input, randomize_generator


def op_samples(rng, layout, device, ops):
    x = make_input((8, 6, 2, 3, 3), layout=layout, generator=rng, requires_grad=True, device=device)
    grad_y = make_input(x.shape, layout=layout, generator=rng, device=device)

    def rand(*shape, offset=0.0, requires_grad=False):
        return (torch.rand(*shape, generator=rng) + offset).to(device).requires_grad_(requires_grad)

    def randn(*shape, requires_grad=False):
        return torch.randn(*shape, generator=rng).to(device).requires_grad_(requires_grad)

    weight = rand(2, 3, 3, requires_grad=True)
    pooled = randn(2, 3, 4)
    hidden = 8
    params = [randn(hidden, 4, requires_grad=True), rand(hidden, offset=0.5, requires_grad=True),
              randn(hidden, requires_grad=True), randn(hidden), rand(hidden, offset=0.5),
              randn(3, hidden, requires_grad=True)]
    mean, var = randn(hidden), rand(hidden, offset=0.5)
    w1, bn_w, bn_b, _, _, w2 = params
    return [
        (ops.segment_pool, (x, 4, 3)),
        (ops.segment_pool_backward, (pooled, x.detach(), 4)),
        (ops.aggregate, (x, weight, 4, True)),
        (ops.aggregate_grad_input, (grad_y, weight, pooled, 4, False)),
        (ops.aggregate_grad_weight, (grad_y, x, 4, 3, 3)),
        (ops.dsa_forward, (x, *params, 4, 3, True, 1e-5, False)),
        (ops.dsa_forward, (x, *params, 4, 3, False, 1e-5, True)),
        (ops.dsa_forward_, (x.detach().clone(), *(p.detach() for p in params), 4, 3, False, 1e-5, True)),
        (ops.dsa_backward, (grad_y, x.detach(), pooled, mean, var, w1.detach(), bn_w.detach(), bn_b.detach(),
                            w2.detach(), 4, True, 1e-5, False)),
    ]


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "spatial_slice"])
def test_opcheck_every_op(rng, backend, layout):
    prefix = dsa_ops.ops.TRITON_PREFIX if backend == "triton" else ""
    samples = op_samples(rng, layout, DEVICE_OF[backend], dsa_ops.ops._ops_with_prefix(prefix))
    assert {op.default.name() for op, _ in samples} == {f"dsa_ops::{prefix}{name}" for name in dsa_ops.ops.SCHEMAS}
    for op, args in samples:
        torch.library.opcheck(op, args)


class TinyVideoNet(nn.Module):
    def __init__(self, backend):
        super().__init__()
        self.conv = nn.Conv3d(3, 16, (1, 3, 3), padding=(0, 1, 1))
        self.dsa = dsa_ops.DSAConv(16, U_segment=4, split_ratio=0.25, backend=backend)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        h = self.dsa(h)
        return self.head(h.mean(dim=(2, 3, 4)))


@pytest.mark.parametrize("training", [True, False])
def test_compile_fullgraph_matches_eager(rng, backend, training):
    device = DEVICE_OF[backend]
    torch.manual_seed(0)
    eager = TinyVideoNet(backend).train(training)
    randomize_generator(eager.dsa, rng)
    eager.to(device)
    compiled_model = TinyVideoNet(backend).train(training).to(device)
    compiled_model.load_state_dict(eager.state_dict())
    compiled = torch.compile(compiled_model, fullgraph=True, backend="aot_eager")
    for step in range(2):
        x = torch.randn(8, 3, 2, 6, 6, generator=rng).to(device)
        out_eager, out_compiled = eager(x), compiled(x)
        torch.testing.assert_close(out_compiled, out_eager, rtol=1e-5, atol=1e-5)
        out_eager.square().sum().backward()
        out_compiled.square().sum().backward()
    for (name, p), p_compiled in zip(eager.named_parameters(), compiled_model.parameters()):
        torch.testing.assert_close(p_compiled.grad, p.grad, rtol=1e-5, atol=1e-5, msg=name)
    for (name, b), b_compiled in zip(eager.named_buffers(), compiled_model.buffers()):
        torch.testing.assert_close(b_compiled, b, rtol=1e-6, atol=1e-6, msg=name)
    assert int(compiled_model.dsa.generate[1].num_batches_tracked) == (2 if training else 0)


def test_compile_inductor_fullgraph(rng, backend):
    device = DEVICE_OF[backend]
    model = TinyVideoNet(backend).to(device)
    fresh = TinyVideoNet(backend).to(device)
    fresh.load_state_dict(model.state_dict())
    x = torch.randn(8, 3, 2, 6, 6, generator=rng).to(device)
    expected = model(x)
    out = torch.compile(fresh, fullgraph=True)(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_compile_fullgraph_with_auto_backend(rng):
    """backend="auto" is resolved at trace time ($DSA_OPS_BACKEND included) without breaking the graph."""
    module = dsa_ops.DSAConv(16, split_ratio=0.25)
    x = torch.randn(8, 16, 4, 4, generator=rng)
    expected = module.eval()(x)
    torch.testing.assert_close(torch.compile(module, fullgraph=True, backend="aot_eager")(x), expected)
