"""Deployment: torch.export and TorchScript tracing of models holding DSAConv (dynamic number of videos,
save/load), the export form of the DSA module against its eval forward, and ONNX files checked with onnxruntime."""
import pytest
import torch
from torch import nn

import dsa_ops
from dsa_ops import export, models
from helpers import assert_close, randomize_generator

BUILDERS = {
    "i3d": (lambda: models.i3d_resnet50(6, width=8), (4, 3, 4, 32, 32)),
    "tsm": (lambda: models.tsm_resnet50(6, num_segments=4, width=8), (4, 3, 32, 32)),
}


def trained_looking(model, rng):
    """Random generator weights and running statistics in every DSA module, eval mode."""
    for module in model.modules():
        if isinstance(module, dsa_ops.DSAConv):
            randomize_generator(module, rng)
    return model.eval()


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_torch_export_with_dynamic_videos_round_trips(tmp_path, rng, name):
    build, clip = BUILDERS[name]
    model = trained_looking(build(), rng)
    program = torch.export.export(model, (torch.randn(2, *clip, generator=rng),),
                                  dynamic_shapes=({0: torch.export.Dim("videos")},))
    assert any("dsa_ops" in str(node.target) for node in program.graph.nodes)
    torch.export.save(program, tmp_path / "model.pt2")
    loaded = torch.export.load(tmp_path / "model.pt2").module()
    for videos in (2, 3):
        x = torch.randn(videos, *clip, generator=rng)
        with torch.no_grad():
            expected = model(x)
            assert_close(program.module()(x), expected)
            assert_close(loaded(x), expected)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch >= 2.14 deprecates TorchScript
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_torchscript_trace_with_other_videos_round_trips(tmp_path, rng, name):
    build, clip = BUILDERS[name]
    model = trained_looking(build(), rng)
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.randn(2, *clip, generator=rng))
    assert "dsa_ops::dsa_forward" in str(traced.inlined_graph)
    torch.jit.save(traced, tmp_path / "model.pt")
    loaded = torch.jit.load(tmp_path / "model.pt")
    for videos in (2, 3):
        x = torch.randn(videos, *clip, generator=rng)
        with torch.no_grad():
            expected = model(x)
            assert_close(traced(x), expected)
            assert_close(loaded(x), expected)


@pytest.mark.parametrize("shape", [(8, 16, 3, 5, 5), (12, 10, 7, 7)], ids=["5d", "4d"])
@pytest.mark.parametrize("kernel_size, split, identity", [(3, 1 / 8, False), (5, 1.0, True), (3, 0.5, True)])
def test_export_form_matches_the_eval_forward(rng, shape, kernel_size, split, identity):
    module = dsa_ops.DSAConv(shape[1], U_segment=4, kernel_size=kernel_size, padding=kernel_size // 2,
                             split_ratio=split, with_identity=identity).double()
    module = randomize_generator(module, rng).eval()
    x = torch.randn(shape, generator=rng, dtype=torch.float64)
    form = export.export_form(module)
    assert isinstance(form, export.DSAExportForm)
    with torch.no_grad():
        assert_close(form(x), module(x))


onnxruntime = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def run_onnx(path, x):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_onnx_of_the_paper_models_matches_eager(tmp_path, rng, name):
    build, clip = BUILDERS[name]
    model = trained_looking(build(), rng)
    path = export.to_onnx(model, torch.randn(2, *clip, generator=rng), tmp_path / f"{name}.onnx")
    graph = onnx.load(str(path)).graph
    assert {node.domain for node in graph.node} <= {"", "ai.onnx"}, "standard ONNX operators only"
    assert {"Softmax", "Pad", "ReduceMean"} <= {node.op_type for node in graph.node}
    for videos in (2, 5):  # one file, two batch sizes
        x = torch.randn(videos, *clip, generator=rng)
        with torch.no_grad():
            expected = model(x)
        got = run_onnx(path, x)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_onnx_of_a_bare_layer_keeps_rows_dynamic(tmp_path, rng):
    layer = trained_looking(nn.Sequential(dsa_ops.DSAConv(16, U_segment=4, split_ratio=0.25)), rng)
    path = export.to_onnx(layer, torch.randn(8, 16, 2, 6, 6, generator=rng), tmp_path / "layer.onnx")
    for rows in (8, 12):
        x = torch.randn(rows, 16, 2, 6, 6, generator=rng)
        with torch.no_grad():
            torch.testing.assert_close(run_onnx(path, x), layer(x), rtol=1e-5, atol=1e-5)
