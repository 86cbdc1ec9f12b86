"""DSAConv as a drop-in for the paper's module: keywords, attributes, state_dict, checkpoints."""
import pytest
import torch

import dsa_ops
from helpers import KERNEL_BACKENDS, assert_close, device_for, make_input, randomize_generator, run_module

PAPER_KEYS = {"generate.0.weight", "generate.1.weight", "generate.1.bias", "generate.1.running_mean",
              "generate.1.running_var", "generate.1.num_batches_tracked", "generate.3.weight"}


def test_keywords_attributes_and_state_dict_keys():
    module = dsa_ops.DSAConv(in_channels=256, insert_place="res_2", U_segment=4, kernel_size=3, stride=1, padding=1,
                             alpha=2, split_ratio=1 / 8, with_identity=False)
    assert module.U_segment == 4
    assert module.num_shift_channel == 32
    assert module.split_sizes == [32, 224]
    assert set(module.state_dict()) == PAPER_KEYS
    assert module.generate[0].weight.shape == (8, 4)
    assert module.generate[3].weight.shape == (3, 8)


def test_prints_nothing(capsys):
    module = dsa_ops.DSAConv(64)
    module(torch.randn(8, 64, 2, 3, 3))
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("identity", [False, True])
def test_reference_checkpoint_loads_and_matches(tmp_path, rng, training, identity):
    ref = randomize_generator(dsa_ops.DSAReference(32, U_segment=4, with_identity=identity, split_ratio=0.25), rng)
    path = tmp_path / "dsa.pt"
    torch.save(ref.state_dict(), path)
    fused = dsa_ops.DSAConv(32, U_segment=4, with_identity=identity, split_ratio=0.25, backend="cpu")
    fused.load_state_dict(torch.load(path))
    ref.train(training)
    fused.train(training)
    x = make_input((8, 32, 2, 5, 5), generator=rng)
    grad = make_input(x.shape, generator=rng)
    outs = []
    for module in (ref, fused):
        xi = x.clone().requires_grad_(True)
        y = module(xi)
        y.backward(grad)
        outs.append([y.detach(), xi.grad] + [p.grad for p in module.parameters()] + list(module.buffers()))
    for actual, expected in zip(outs[1], outs[0]):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_backends_agree_through_the_module(rng):
    modules = {b: dsa_ops.DSAConv(16, split_ratio=0.5, backend=b) for b in ("cpu", "reference")}
    state = randomize_generator(modules["cpu"], rng).state_dict()
    modules["reference"].load_state_dict(state)
    x = make_input((8, 16, 3, 3), generator=rng)
    torch.testing.assert_close(modules["cpu"](x), modules["reference"](x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(modules["cpu"].generate[1].running_var, modules["reference"].generate[1].running_var)


@pytest.mark.parametrize("backend", ["reference", *KERNEL_BACKENDS])
def test_autocast_regions_change_nothing(rng, backend):
    """Inside torch.autocast (bfloat16 activations, float32 parameters, as in a mixed-precision model)
    DSAConv computes exactly what it computes outside it."""
    device = device_for(backend)
    module = randomize_generator(dsa_ops.DSAConv(16, split_ratio=0.5, backend=backend), rng).to(device)
    x = make_input((8, 16, 2, 5, 5), torch.bfloat16, generator=rng, device=device)
    grad = make_input(x.shape, torch.bfloat16, generator=rng, device=device)
    y, gx, gparams = run_module(module, x, grad)
    x_auto = x.clone().requires_grad_(True)
    module.zero_grad(set_to_none=True)
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        y_auto = module(x_auto)
    y_auto.backward(grad)  # outside the region, as PyTorch recommends
    assert y_auto.dtype == torch.bfloat16 and torch.equal(y_auto, y) and torch.equal(x_auto.grad, gx)
    for g, parameter in zip(gparams, module.parameters()):
        assert parameter.grad.dtype == torch.float32 and torch.equal(parameter.grad, g)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("training", [True, False])
def test_linears_in_bfloat16_with_a_float32_batchnorm(rng, backend, training):
    """A bfloat16 model whose BatchNorm stays in float32, as mixed-precision recipes keep it: the op casts
    only the bfloat16 parameters (together) and matches the float64 reference on the same values."""
    device = device_for(backend)
    module = randomize_generator(dsa_ops.DSAConv(16, split_ratio=0.5, backend=backend), rng).to(device)
    module.generate[0].to(torch.bfloat16)
    module.generate[3].to(torch.bfloat16)
    reference = dsa_ops.DSAReference(16, split_ratio=0.5).double()
    reference.load_state_dict(module.state_dict())
    module.train(training)
    reference.train(training)
    x = make_input((8, 16, 2, 5, 5), torch.bfloat16, generator=rng, device=device)
    grad = make_input(x.shape, torch.bfloat16, generator=rng, device=device)
    y, gx, gparams = run_module(module, x, grad)
    y_ref, gx_ref, gparams_ref = run_module(reference, x.double().cpu(), grad.double().cpu())
    assert_close(y, y_ref)
    assert_close(gx, gx_ref)
    for g, g_ref, parameter in zip(gparams, gparams_ref, module.parameters()):
        assert g.dtype == parameter.dtype
        assert_close(g, g_ref, torch.bfloat16, scale=2.0)
    for buffer, buffer_ref in zip(module.generate[1].buffers(), reference.generate[1].buffers()):
        assert_close(buffer, buffer_ref, torch.bfloat16)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_a_bfloat16_module_keeps_bfloat16_running_stats(rng, backend):
    """DSAConv cast to bfloat16 whole: the batch statistics (float32 out of the op) are cast to the
    buffers' dtype, and the updated running statistics match the float64 reference's."""
    device = device_for(backend)
    module = randomize_generator(dsa_ops.DSAConv(16, split_ratio=0.5, backend=backend), rng).to(device,
                                                                                                torch.bfloat16)
    reference = dsa_ops.DSAReference(16, split_ratio=0.5).double()
    reference.load_state_dict(module.state_dict())
    x = make_input((8, 16, 2, 5, 5), torch.bfloat16, generator=rng, device=device)
    assert_close(module(x), reference(x.double().cpu()))
    bn = module.generate[1]
    assert bn.running_mean.dtype == bn.running_var.dtype == torch.bfloat16
    for name, buffer_ref in reference.generate[1].named_buffers():
        assert_close(bn.get_buffer(name), buffer_ref, torch.bfloat16)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last_3d])
def test_meta_tensors_give_shapes_without_data(memory_format):
    """Shape inference and deferred initialisation on the meta device: "auto" takes the reference there,
    in training (backward included), eval and in place, and the running statistics stay on meta."""
    module = dsa_ops.DSAConv(16, split_ratio=1 / 4).to("meta")
    x = torch.empty(8, 16, 2, 3, 5, device="meta").to(memory_format=memory_format).requires_grad_()
    y = module(x)
    y.sum().backward()
    assert (y.shape, y.device, x.grad.shape) == (x.shape, x.device, x.shape)
    assert module.generate[0].weight.grad.device.type == "meta"
    assert module.generate[1].running_mean.device.type == "meta"
    assert module.eval()(x.detach()).shape == x.shape
    with torch.no_grad():
        assert dsa_ops.DSAConv(16, inplace=True).to("meta").eval()(x.detach()).shape == x.shape
