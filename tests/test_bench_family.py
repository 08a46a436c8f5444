"""``python -m sepconv bench --family``: the mechanism on tiny shapes (no timing assertions).

Every peer's setup checks that the torch module it times computes the sepconv layer's
numbers (weights copied, TensorFlow's padding rebuilt with torch's arguments), so this run
fails if a counterpart does different work; the backward step fails if a shape's declared
output shape is not the layer's.
"""

import json
import math
import os

import pytest
import torch

from sepconv import bench
from sepconv.bench import family


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _run(tmp_path, *extra):
    out = tmp_path / "out"
    rc = bench.main("bench", ["--family", "--tiny", "--rounds", "1", "--reps", "1",
                              "--threads", "1", "--no-memory", "--out", str(out), *extra])
    assert rc == 0
    with open(out / "bench.json") as f:
        return json.load(f)


def test_family_bench_runs_every_shape_on_tiny_inputs(tmp_path, restore_threads):
    report = _run(tmp_path, "--skip", "tf-keras")
    names = [r["shape"]["name"] for r in report["rows"]]
    assert names == [s.name for s in family.SHAPES]
    layers = {r["shape"]["layer"] for r in report["rows"]}
    assert layers == {"DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv2D", "Conv1D",
                      "Conv2DTranspose", "Conv3D"}
    for row in report["rows"]:
        for mode in ("fwd", "fb"):
            for peer in ("sepconv", "torch", "torch-nc", "roofline"):
                assert row["ms"][mode][peer] > 0 and math.isfinite(row["ms"][mode][peer])
            assert "tf-keras" not in row["ms"][mode]
    assert "tf-keras: skipped (--skip)" in report["meta"]["notes"]
    assert report["meta"]["cpu"]["vector_extensions"] is not None
    assert os.path.exists(tmp_path / "out" / "bench.txt")
    # the text table says what ran where: command, CPU and its vector extensions, load
    head = (tmp_path / "out" / "bench.txt").read_text().splitlines()[:2]
    assert head[0].startswith("python -m sepconv bench --family")
    assert head[1].startswith("machine: ") and "load average" in head[1]
    assert len(report["meta"]["load_average"]) == 2
    assert report["meta"]["matmul_gemm"] in report["meta"]["matmul_gflops_by_gemm"]
    markdown = (tmp_path / "out" / "bench.md").read_text().splitlines()
    assert len(markdown) == 2 + 2 * (len(family.SHAPES) + 1)  # header, rule, rows, geomeans
    assert markdown[2].startswith("| mobilenet_dw3 | fwd | ")


@pytest.mark.parametrize("s", family.SHAPES, ids=lambda s: s.name)
def test_declared_shapes_are_the_layers(s):
    # output_shape feeds the roofline's FLOPs and bytes: the layer's own, full size
    import sepconv
    layer = getattr(sepconv, s.layer)(**s.kwargs, input_shape=s.input_shape[1:])
    assert tuple(layer.compute_output_shape(s.input_shape)) == s.output_shape
    n_weights = sum(p.numel() for p in layer.parameters())
    assert s.bytes(False) == 4.0 * (math.prod(s.input_shape) + math.prod(s.output_shape)
                                    + n_weights)


def test_tiny_without_family_is_refused(tmp_path, capsys):
    assert bench.main("bench", ["--tiny", "--out", str(tmp_path)]) == 2
    assert "--family" in capsys.readouterr().err


@pytest.mark.slow
def test_family_bench_tf_keras_worker_builds_any_layer(tmp_path, restore_threads):
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf_keras")
    report = _run(tmp_path, "--only", "conformer_dw1d,xception_middle,unet_up_3x3_same")
    assert [r["shape"]["name"] for r in report["rows"]] == [
        "conformer_dw1d", "xception_middle", "unet_up_3x3_same"]
    for row in report["rows"]:
        for mode in ("fwd", "fb"):
            assert row["ms"][mode]["tf-keras"] > 0


@pytest.mark.parametrize("geometry", [
    # (rank, spatial, kernel, strides, padding): the family's depthwise layers at small
    # sizes, where the convolution pads the equal part itself and copies only the rest
    (2, (9, 9), 3, 1, "same"),      # MobileNet 3x3: (1, 1) per axis, no copy
    (2, (8, 8), 3, 2, "same"),      # MobileNet 3x3 stride 2: (0, 1), the 1 copied
    (2, (9, 7), 3, 2, "same"),      # (1, 1) and (0, 1) on different axes
    (2, (7, 7), 5, 1, "same"),      # 5x5: (2, 2)
    (2, (2, 1), 4, 2, "same"),      # even kernel, length-1 axis, strided length-1 output
    (1, (12,), 31, 1, "same"),      # Conformer k31 over a short input: (15, 15)
    (1, (6,), 3, 1, "causal"),      # causal: (2, 0), all of it copied
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_depthwise_cpu_matches_reference_on_the_family_geometries(geometry, dtype):
    """``kernels/depthwise_cpu.py`` against the reference kernel, forward and gradients of
    input, kernel and bias, at the padding splits the family's shapes use."""
    from kernel_env import kernel_choice
    import sepconv.functional as F
    from sepconv.kernels import depthwise_cpu

    rank, spatial, k, s, padding = geometry
    g = torch.Generator().manual_seed(rank * 100 + sum(spatial) + k)
    x = torch.randn((2, *spatial, 3), generator=g, dtype=dtype)
    dw = torch.randn((k,) * rank + (3, 2), generator=g, dtype=dtype)
    b = torch.randn(6, generator=g, dtype=dtype)
    assert F._pick_conv_kernel(x, dw.reshape(*dw.shape[:-2], 1, 6), (s,) * rank,
                               ((1, 1),) * rank, 3, True) is depthwise_cpu.conv

    def run(force):
        inputs = [t.clone().requires_grad_(True) for t in (x, dw, b)]
        with kernel_choice(force):
            y = F.depthwise_conv(*inputs, strides=s, padding=padding)
        dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
        return [y] + list(torch.autograd.grad((y * dy).sum(), inputs))

    tol = dict(atol=1e-12, rtol=1e-12) if dtype == torch.float64 else dict(atol=1e-5,
                                                                           rtol=1e-5)
    got, want = run(""), run("reference")
    for a, e in zip(got, want):
        assert a.shape == e.shape
        torch.testing.assert_close(a, e, **tol)
