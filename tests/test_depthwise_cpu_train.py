"""``kernels/depthwise_train.py``: DepthwiseConv1D and DepthwiseConv2D (SeparableConv2D's
depthwise step) training on CPU, oneDNN's (or the C) forward and the C routines'
backward, against the reference kernel (``SEPCONV_KERNEL=reference``: F.pad + torch's
F.conv2d and autograd, no sepconv kernel code) and tf-keras 2.21 over drawn geometries, dtypes and thread counts; float32 gradcheck (the convolution
is linear in each input: central differences are exact up to rounding); float64
gradgradcheck of its double backward; torch.library.opcheck of its ops; torch.compile
(fullgraph), torch.func.grad, torch.export and torch.jit.trace through the dispatcher.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sepconv
from sepconv import functional as F
from sepconv import padding as _padding
from sepconv.kernels import _cpu_native, depthwise_cpu, depthwise_train
from kernel_env import kernel_choice

pytestmark = [
    pytest.mark.skipif(_cpu_native.load() is None,
                       reason="no C compiler: the C routines (and this kernel) are absent"),
    pytest.mark.usefixtures("torch_single_thread")]

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture
def backward_calls(monkeypatch):
    """The shapes of x the new backward ran on (it counts the calls of its C pass)."""
    calls = []
    real = depthwise_train._backward_pass
    monkeypatch.setattr(depthwise_train, "_backward_pass",
                        lambda grad_y, x, *a: calls.append(tuple(x.shape))
                        or real(grad_y, x, *a))
    return calls


@st.composite
def cases(draw):
    k = draw(st.integers(1, 9))
    if draw(st.booleans()):
        stride, dilation = draw(st.integers(1, 4)), 1
    else:
        stride, dilation = 1, draw(st.integers(1, 4))
    padding = draw(st.sampled_from(["valid", "same", "causal"]))
    span = (k - 1) * dilation + 1
    short = draw(st.booleans())  # length 1 and short inputs, else up to a few tiles
    low = span if padding == "valid" else 1
    length = draw(st.integers(low, low + 4) if short else st.integers(low, 300))
    return dict(k=k, stride=stride, dilation=dilation, padding=padding, length=length,
                channels=draw(st.sampled_from([2, 3, 5, 16, 17, 40, 136])),
                m=draw(st.integers(1, 3)), batch=draw(st.integers(1, 3)),
                bias=draw(st.booleans()), strided_view=draw(st.booleans()),
                needs=draw(st.sampled_from(["all", "x", "kernel"])),
                seed=draw(st.integers(0, 2 ** 31 - 1)))


def _tensors(case, dtype):
    g = torch.Generator().manual_seed(case["seed"])
    c, m = case["channels"], case["m"]
    x = torch.randn(case["batch"], case["length"], c, generator=g)
    if case["strided_view"]:  # a non-contiguous view of the same values
        x = torch.stack([x, x], dim=-1)[..., 0]
    w = torch.randn(case["k"], c, m, generator=g)
    b = torch.randn(c * m, generator=g) if case["bias"] else None
    return [None if t is None else t.to(dtype) for t in (x, w, b)]


def _run(case, x, w, b, kernel, grad_seed=1):
    """Output and gradients (of the inputs the case asks for) of F.depthwise_conv."""
    need_x, need_w = case["needs"] in ("all", "x"), case["needs"] in ("all", "kernel")
    x, w = x.clone().requires_grad_(need_x), w.clone().requires_grad_(need_w)
    b = None if b is None else b.clone().requires_grad_(need_w)
    with kernel_choice(kernel):
        y = F.depthwise_conv(x, w, b, strides=case["stride"], padding=case["padding"],
                             dilation_rate=case["dilation"])
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(grad_seed)).to(y.dtype)
    wanted = [t for t in (x, w, b) if t is not None and t.requires_grad]
    return [y] + list(torch.autograd.grad(y, wanted, gy))


@SETTINGS
@given(cases(), st.sampled_from(["float32", "bfloat16"]), st.sampled_from([1, 2]))
def test_forward_and_gradients_match_the_reference(case, dtype, threads):
    """Every drawn stride, dilation, padding, multiplier, length (1 to a few C tiles),
    channel count (partial and several vector groups), batch, bias, non-contiguous input
    and asked-for gradients: the new kernel ran (its backward counted) and equals the
    reference kernel (float32: same dtype; bfloat16: the reference in float32 from the
    same bfloat16 values, within bfloat16's rounding)."""
    out_len = _padding.conv_output_length(case["length"], case["k"], case["stride"],
                                          case["dilation"], case["padding"])
    if out_len <= 0:
        return
    dtype = getattr(torch, dtype)
    x, w, b = _tensors(case, dtype)
    calls = []
    real = depthwise_train._backward_pass
    depthwise_train._backward_pass = lambda gy, xx, *a: calls.append(1) or real(gy, xx, *a)
    torch.set_num_threads(threads)
    try:
        got = _run(case, x, w, b, "")
    finally:
        depthwise_train._backward_pass = real
        torch.set_num_threads(1)
    assert calls == [1]
    if dtype == torch.float32:
        want = _run(case, x, w, b, "reference")
        tol = dict(rtol=1e-4, atol=1e-4)
    else:
        want = [t.to(dtype) for t in _run(case, x.float(), w.float(),
                                          None if b is None else b.float(), "reference")]
        tol = dict(rtol=2e-2, atol=0.1)
    assert len(got) == len(want)
    for g, r in zip(got, want):
        assert g.shape == r.shape and g.dtype == r.dtype == dtype
        scale = max(1.0, r.float().abs().max().item())
        torch.testing.assert_close(g.float() / scale, r.float() / scale, **tol)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("geometry", [
    dict(k=9, stride=1, dilation=1, padding="same", m=1),
    dict(k=3, stride=1, dilation=4, padding="causal", m=1),
    dict(k=5, stride=1, dilation=1, padding="same", m=2),
    dict(k=31, stride=1, dilation=1, padding="same", m=1),
    dict(k=9, stride=2, dilation=1, padding="same", m=1),
    dict(k=4, stride=3, dilation=1, padding="valid", m=3)])
def test_bench_geometries_at_size_against_float64(geometry, threads):
    """The bench's layer geometries on a few thousand steps and 136 channels: output and
    every gradient within float32 rounding of the reference kernel run in float64."""
    case = dict(geometry, length=1500, channels=136, batch=2, bias=True, strided_view=False,
                needs="all", seed=7)
    x, w, b = _tensors(case, torch.float32)
    torch.set_num_threads(threads)
    try:
        got = _run(case, x, w, b, "")
    finally:
        torch.set_num_threads(1)
    want = _run(case, x.double(), w.double(), b.double(), "reference")
    for g, r in zip(got, want):
        torch.testing.assert_close(g.double(), r, rtol=1e-4, atol=1e-4 * r.abs().max().item())


@pytest.mark.parametrize("kw,takes", [
    (dict(kernel_size=(1, 5), padding="same", depth_multiplier=2), "1d"),
    (dict(kernel_size=(1, 3), strides=(2, 1), padding="valid"), "1d"),
    (dict(kernel_size=(1, 3), strides=(3, 2), padding="same"), "1d"),
    (dict(kernel_size=(3, 3), padding="same"), "2d"),
    (dict(kernel_size=(3, 3), padding="same"), "")])
def test_depthwise_conv2d_one_row_high(kw, takes, backward_calls, monkeypatch):
    """DepthwiseConv2D with a one-row kernel: each (strided) row a 1D convolution on the
    new kernel; a taller kernel the 2D routines (``TAKES_2D`` on) or today's kernel
    (``TAKES_2D`` off); all equal the reference."""
    monkeypatch.setattr(depthwise_train, "TAKES_2D", takes == "2d")
    layer = sepconv.DepthwiseConv2D(bias_initializer="random_normal", **kw)
    x = torch.randn(2, 7, 11, 4, requires_grad=True)
    grads = []
    for kernel in ("", "reference"):
        with kernel_choice(kernel):
            y = layer(x)
        grads.append([y] + list(torch.autograd.grad(y.square().sum(), [x] + layer.weights)))
    assert backward_calls == {"1d": [(2 * grads[0][0].shape[1], 11, 4)],
                              "2d": [(2, 7, 11, 4)], "": []}[takes]
    for g, r in zip(*grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5)


def test_dispatch_picks_it_only_for_training_rank1_float32_bfloat16(monkeypatch):
    """The new kernel where autograd records a CPU channels_last depthwise call (rank 1,
    float32 / bfloat16, several channels); today's kernel without autograd, for float64,
    under CPU autocast, for a 2D kernel more than one row high with TAKES_2D off, with
    ENABLED off and without the C routines."""
    def pick(shape=(2, 9, 4), kernel=(3, 1, 4), dtype=torch.float32, grad=True,
             pads=((1, 1),)):
        x = torch.zeros(shape, dtype=dtype, requires_grad=grad)
        k = torch.zeros(kernel, dtype=dtype)
        return F._pick_conv_kernel(x, k, (1,) * (k.dim() - 2), pads, shape[-1], True)

    assert pick() is depthwise_train.conv
    assert pick(dtype=torch.bfloat16) is depthwise_train.conv
    assert pick(shape=(2, 3, 9, 4), kernel=(1, 3, 1, 4), pads=((0, 0), (1, 1))) \
        is depthwise_train.conv
    assert pick(grad=False) is depthwise_cpu.conv
    with torch.no_grad():
        assert pick() is depthwise_cpu.conv
    assert pick(dtype=torch.float64) is depthwise_cpu.conv
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert pick() is depthwise_cpu.conv
    monkeypatch.setattr(depthwise_train, "TAKES_2D", False)
    assert pick(shape=(2, 3, 9, 4), kernel=(3, 3, 1, 4), pads=((1, 1), (1, 1))) \
        is depthwise_cpu.conv
    monkeypatch.setattr(depthwise_train, "TAKES_2D", None)
    monkeypatch.setattr(depthwise_train, "ENABLED", False)
    assert pick() is depthwise_cpu.conv
    monkeypatch.setattr(depthwise_train, "ENABLED", True)
    monkeypatch.setattr(_cpu_native, "load", lambda: None)  # no compiler / SEPCONV_NATIVE=0
    assert pick() is depthwise_cpu.conv


@pytest.mark.parametrize("native_forward", [None, True, False])
def test_both_forwards_and_the_rule_between_them(native_forward, monkeypatch):
    """The C forward and oneDNN's give the reference's numbers; by default the C one runs
    with a multiplier or a dilation only."""
    monkeypatch.setattr(depthwise_train, "NATIVE_FORWARD", native_forward)
    ran = []
    real = depthwise_train._cpu._native_depthwise
    monkeypatch.setattr(depthwise_train._cpu, "_native_depthwise",
                        lambda *a: ran.append(1) or real(*a))
    for m, dilation in ((1, 1), (2, 1), (1, 3)):
        case = dict(k=4, stride=1, dilation=dilation, padding="same", m=m, length=40,
                    channels=5, batch=2, bias=True, strided_view=True, needs="x", seed=m)
        ran.clear()
        got = _run(case, *_tensors(case, torch.float32), "")[0]
        want = _run(case, *_tensors(case, torch.float32), "reference")[0]
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        # (the input gradient alone, stride 1, is a C forward pass of its own)
        fwd = native_forward if native_forward is not None else (m > 1 or dilation > 1)
        assert len(ran) == 1 + fwd


def _direct(x, w, b, stride, dilation, pads):
    k, c, m = w.shape
    return depthwise_train.conv(x, w.reshape(k, 1, c * m), b, strides=(stride,),
                                dilation=(dilation,), pads=(pads,), groups=c,
                                channels_last=True)


@pytest.mark.parametrize("stride,dilation,pads,m", [(1, 1, (1, 1), 1), (2, 1, (1, 2), 2),
                                                    (1, 2, (4, 0), 1), (3, 1, (0, 0), 2)])
def test_gradcheck_float32_and_gradgradcheck_float64(stride, dilation, pads, m):
    """gradcheck of the hand-written backward in float32 (linear in each input: central
    differences with eps 1e-2 are exact up to float32 rounding), and gradgradcheck in
    float64 of the double backward (the reference's differentiable gradients)."""
    g = torch.Generator().manual_seed(0)

    def param(*shape, dtype):
        return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(True)

    x, w, b = param(2, 9, 3, dtype=torch.float32), param(3, 3, m, dtype=torch.float32), \
        param(3 * m, dtype=torch.float32)
    assert torch.autograd.gradcheck(lambda *a: _direct(*a, stride, dilation, pads),
                                    (x, w, b), eps=1e-2, atol=2e-3, rtol=2e-3)
    x, w, b = (t.detach().double().requires_grad_(True) for t in (x, w, b))
    assert torch.autograd.gradgradcheck(lambda *a: _direct(*a, stride, dilation, pads),
                                        (x, w, b))


def test_double_backward_float32_through_the_dispatcher(backward_calls):
    """A gradient penalty (create_graph=True) on the default dispatch equals the
    reference's; the first-order backward passes ran the new kernel."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 30, 6, generator=g, requires_grad=True)
    w = torch.randn(5, 6, 2, generator=g, requires_grad=True)
    results = []
    for kernel in ("", "reference"):
        with kernel_choice(kernel):
            y = F.depthwise_conv(x, w, None, strides=2, padding="same")
        gx, = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        results.append(torch.autograd.grad(gx.square().sum(), (x, w)))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # the penalty's gradient reaches x through grad_y = 2y too: a first-order backward
    assert backward_calls == [(2, 30, 6)]
    F.depthwise_conv(x, w, None, padding="same").sum().backward()
    assert backward_calls == [(2, 30, 6)] * 2


def test_custom_ops_pass_opcheck():
    """torch.library.opcheck: schema, fake vs real, autograd registration and AOT dispatch
    (dynamic shapes) of the forward and backward ops."""
    op = torch.ops.sepconv.depthwise_conv1d_cpu.default
    for m, geometry in ((1, (1, 1, 1, 1)), (2, (2, 2, 2, 2))):
        x = torch.randn(2, 11, 3, requires_grad=True)
        w = torch.randn(3, 3 * m, requires_grad=True)
        b = torch.randn(3 * m, requires_grad=True)
        torch.library.opcheck(op, (x, w, b, *geometry))
        y = op(x.detach(), w.detach(), None, *geometry)
        torch.library.opcheck(torch.ops.sepconv.depthwise_conv1d_cpu_backward.default,
                              (torch.randn_like(y), x.detach(), w.detach(), torch.float32,
                               [True, True, True], *geometry))


def test_torch_compile_fullgraph_forward_and_gradients(backward_calls):
    """torch.compile(fullgraph=True) of a training step: the opaque ops run (the new
    backward counted) and give the reference's output and gradients."""
    layer = sepconv.DepthwiseConv1D(5, padding="same", depth_multiplier=2,
                                    bias_initializer="random_normal", input_shape=(None, 6))
    x = torch.randn(2, 40, 6, requires_grad=True)

    def step(x):
        return layer(x).square().sum()

    loss = torch.compile(step, fullgraph=True, backend="aot_eager")(x)
    got = [loss] + list(torch.autograd.grad(loss, [x] + layer.weights))
    assert backward_calls, "the compiled backward did not run the new kernel"
    with kernel_choice("reference"):
        loss = step(x)
    want = [loss] + list(torch.autograd.grad(loss, [x] + layer.weights))
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)


def test_torch_func_grad_and_vmap():
    """torch.func.grad and vmap run (today's kernel under the transforms) and give the
    reference's gradients."""
    g = torch.Generator().manual_seed(3)
    x, w = torch.randn(2, 20, 4, generator=g), torch.randn(3, 4, 1, generator=g)

    def loss(x, w):
        return F.depthwise_conv(x, w, None, padding="same", dilation_rate=2).square().sum()

    got = torch.func.grad(loss, argnums=(0, 1))(x, w)
    per_item = torch.func.vmap(torch.func.grad(loss, argnums=1), in_dims=(0, None))(
        x.unsqueeze(1), w)
    with kernel_choice("reference"):
        want = torch.func.grad(loss, argnums=(0, 1))(x, w)
    for a, r in zip(got, want):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(per_item.sum(0), want[1], rtol=1e-4, atol=1e-4)


def test_export_and_trace_record_standard_ops():
    """torch.export and torch.jit.trace of a layer whose weights require grad: standard
    aten ops only (no sepconv op), the eager model's numbers."""
    layer = sepconv.DepthwiseConv1D(3, padding="same", bias_initializer="random_normal",
                                    input_shape=(None, 4))
    x = torch.randn(2, 12, 4)
    program = torch.export.export(layer, (x,))
    ops = {str(n.target) for n in program.graph_module.graph.nodes if n.op == "call_function"}
    assert all(op.startswith("aten.") for op in ops) and any("conv" in op for op in ops), ops
    torch.testing.assert_close(program.module()(x), layer(x))
    traced = torch.jit.trace(layer, (x,), check_trace=False)
    assert "sepconv::" not in str(traced.inlined_graph)
    torch.testing.assert_close(traced(x), layer(x))


def test_layer_training_step_matches_the_reference_kernel(backward_calls):
    """A DepthwiseConv1D layer's training step (loss, SGD update) on the default dispatch
    equals the reference kernel's, and ran the new backward."""
    torch.manual_seed(4)
    layer = sepconv.DepthwiseConv1D(7, padding="same", bias_initializer="random_normal",
                                    input_shape=(None, 8))
    start = [p.detach().clone() for p in layer.weights]
    x = torch.randn(3, 50, 8)
    after = []
    for kernel in ("", "reference"):
        with torch.no_grad():
            for p, s in zip(layer.weights, start):
                p.copy_(s)
        opt = torch.optim.SGD(layer.parameters(), lr=0.1)
        with kernel_choice(kernel):
            layer(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
        after.append([p.detach().clone() for p in layer.weights])
    assert len(backward_calls) == 1
    for a, r in zip(*after):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)
    assert not np.allclose(after[0][0].numpy(), start[0].numpy())


# -- 2D: kernels more than one row high (the 2D C routines) --------------------------------

@st.composite
def cases_2d(draw):
    k = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    if draw(st.booleans()):
        strides, dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3))), (1, 1)
    else:
        strides, dilation = (1, 1), (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.sampled_from(["valid", "same"]))
    lows = [(kk - 1) * d + 1 if padding == "valid" else 1 for kk, d in zip(k, dilation)]
    wide = draw(st.booleans())  # several column tiles of the C routines (128 columns)
    size = (draw(st.integers(lows[0], lows[0] + 6)),
            draw(st.integers(lows[1], 300) if wide else st.integers(lows[1], lows[1] + 6)))
    return dict(k=k, stride=strides, dilation=dilation, padding=padding, size=size,
                channels=draw(st.sampled_from([2, 3, 5, 16, 17, 40])),
                m=draw(st.integers(1, 3)), batch=draw(st.integers(1, 2)),
                bias=draw(st.booleans()), strided_view=draw(st.booleans()),
                needs=draw(st.sampled_from(["all", "x", "kernel"])),
                seed=draw(st.integers(0, 2 ** 31 - 1)))


def _tensors_2d(case, dtype):
    g = torch.Generator().manual_seed(case["seed"])
    c, m = case["channels"], case["m"]
    x = torch.randn(case["batch"], *case["size"], c, generator=g)
    if case["strided_view"]:  # a non-contiguous view of the same values
        x = torch.stack([x, x], dim=-1)[..., 0]
    w = torch.randn(*case["k"], c, m, generator=g)
    b = torch.randn(c * m, generator=g) if case["bias"] else None
    return [None if t is None else t.to(dtype) for t in (x, w, b)]


def _compare(got, want, dtype):
    if dtype == torch.float32:
        tol = dict(rtol=1e-4, atol=1e-4)
    else:
        want = [t.to(dtype) for t in want]
        tol = dict(rtol=2e-2, atol=0.1)
    assert len(got) == len(want)
    for g, r in zip(got, want):
        assert g.shape == r.shape and g.dtype == r.dtype == dtype
        scale = max(1.0, r.float().abs().max().item())
        torch.testing.assert_close(g.float() / scale, r.float() / scale, **tol)


@settings(SETTINGS, max_examples=80)
@given(cases_2d(), st.sampled_from(["float32", "bfloat16"]), st.sampled_from([1, 2]))
def test_2d_forward_and_gradients_match_the_reference(case, dtype, threads):
    """DepthwiseConv2D's math on the 2D C routines (``TAKES_2D`` on: every geometry the
    kernel can be given): kernel heights and widths 1-7, strides 1-3 per axis, dilations
    1-3 per axis, valid/same (TensorFlow's odd element after), multiplier 1-3, 1 to a few
    rows and 1 to 300 columns (the C tiles' 128), channel counts across vector chunks, bias
    on/off, each set of asked-for gradients, non-contiguous input, float32 / bfloat16, 1-2
    threads: the new backward ran (a 2D input; one-row kernels the 1D routines) and equals
    the reference kernel (bfloat16: the reference in float32 from the same values)."""
    out = [_padding.conv_output_length(n, k, s, d, case["padding"]) for n, k, s, d
           in zip(case["size"], case["k"], case["stride"], case["dilation"])]
    if min(out) <= 0:
        return
    dtype = getattr(torch, dtype)
    x, w, b = _tensors_2d(case, dtype)
    calls = []
    real, takes = depthwise_train._backward_pass, depthwise_train.TAKES_2D
    depthwise_train._backward_pass = lambda gy, xx, *a: calls.append(xx.dim()) or real(gy, xx, *a)
    depthwise_train.TAKES_2D = True
    torch.set_num_threads(threads)
    try:
        got = _run(case, x, w, b, "")
    finally:
        depthwise_train._backward_pass, depthwise_train.TAKES_2D = real, takes
        torch.set_num_threads(1)
    assert calls == [3 if case["k"][0] == 1 else 4]
    want = _run(case, x.float(), w.float(), None if b is None else b.float(), "reference")
    _compare(got, want, dtype)


# the bench's DepthwiseConv2D geometries (bench/depthwise_train.py), one batch item
BENCH_2D = [
    dict(size=(112, 112), channels=32, k=(3, 3), stride=(1, 1), dilation=(1, 1),
         padding="same", m=1),
    dict(size=(56, 56), channels=128, k=(3, 3), stride=(2, 2), dilation=(1, 1),
         padding="same", m=1),
    dict(size=(28, 28), channels=240, k=(5, 5), stride=(1, 1), dilation=(1, 1),
         padding="same", m=1),
    dict(size=(74, 74), channels=128, k=(3, 3), stride=(1, 1), dilation=(1, 1),
         padding="same", m=1),
    dict(size=(64, 128), channels=8, k=(64, 1), stride=(1, 1), dilation=(1, 1),
         padding="valid", m=2),
    dict(size=(64, 64), channels=128, k=(3, 3), stride=(1, 1), dilation=(2, 2),
         padding="same", m=1),
    dict(size=(56, 56), channels=96, k=(7, 7), stride=(1, 1), dilation=(1, 1),
         padding="same", m=1)]


@pytest.mark.parametrize("geometry", BENCH_2D, ids=lambda g: f"{g['k']}s{g['stride']}"
                         f"d{g['dilation']}c{g['channels']}")
def test_2d_bench_geometries_at_size_against_float64(geometry, monkeypatch):
    """The bench's DepthwiseConv2D geometries at their sizes on the default dispatch: the
    2D C backward ran where the rule (:func:`depthwise_train.takes_2d`) takes the
    geometry, today's kernel elsewhere (and then the 2D C backward forced,
    ``TAKES_2D``); output and every gradient within float32 rounding of the reference
    kernel run in float64, on two threads."""
    case = dict(geometry, batch=1, bias=True, strided_view=False, needs="all", seed=11)
    x, w, b = _tensors_2d(case, torch.float32)
    kernel = w.reshape(*case["k"], 1, -1)
    takes = depthwise_train.takes_2d(x, kernel, case["stride"], case["dilation"])
    calls = []
    real = depthwise_train._backward_pass
    monkeypatch.setattr(depthwise_train, "_backward_pass",
                        lambda gy, xx, *a: calls.append(tuple(xx.shape)) or real(gy, xx, *a))
    torch.set_num_threads(2)
    try:
        got = _run(case, x, w, b, "")
    finally:
        torch.set_num_threads(1)
    assert calls == ([tuple(x.shape)] if takes else [])
    runs = [got]
    if not takes:
        monkeypatch.setattr(depthwise_train, "TAKES_2D", True)
        torch.set_num_threads(2)
        try:
            runs.append(_run(case, x, w, b, ""))
        finally:
            torch.set_num_threads(1)
        assert len(calls) == 1
    want = _run(case, x.double(), w.double(), b.double(), "reference")
    for got in runs:
        for g, r in zip(got, want):
            torch.testing.assert_close(g.double(), r, rtol=1e-4,
                                       atol=1e-4 * r.abs().max().item())


@pytest.mark.parametrize("k,stride,dilation,size", [
    ((3, 3), (1, 1), (1, 1), (9, 40)), ((2, 3), (2, 1), (1, 1), (8, 37)),
    ((3, 3), (1, 1), (2, 1), (11, 21)), ((3, 3), (3, 1), (1, 1), (10, 150))])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_2d_three_wide_unit_column_paths(k, stride, dilation, size, padding, monkeypatch):
    """The weight gradient's 3-wide path (3 columns, unit column stride and dilation, up
    to 3 rows: nine sums in registers) on several steps and column tiles, forced on
    (``TAKES_2D``), against the reference kernel."""
    monkeypatch.setattr(depthwise_train, "TAKES_2D", True)
    case = dict(k=k, stride=stride, dilation=dilation, padding=padding, size=size,
                channels=40, m=2, batch=2, bias=True, strided_view=False, needs="all",
                seed=sum(size))
    x, w, b = _tensors_2d(case, torch.float32)
    _compare(_run(case, x, w, b, ""), _run(case, x, w, b, "reference"), torch.float32)


def _direct_2d(x, w, b, strides, dilation, pads):
    kh, kw, c, m = w.shape
    return depthwise_train.conv(x, w.reshape(kh, kw, 1, c * m), b, strides=strides,
                                dilation=dilation, pads=pads, groups=c, channels_last=True)


@pytest.mark.parametrize("strides,dilation,pads,m", [
    ((1, 1), (1, 1), ((1, 1), (0, 1)), 1), ((2, 1), (1, 1), ((0, 1), (1, 1)), 2),
    ((1, 1), (2, 1), ((2, 2), (0, 0)), 1), ((2, 3), (1, 1), ((1, 1), (1, 2)), 2)])
def test_2d_gradcheck_float32_and_gradgradcheck_float64(strides, dilation, pads, m):
    """gradcheck of the 2D hand-written backward in float32 (exact central differences up
    to rounding) and gradgradcheck in float64 of its double backward."""
    g = torch.Generator().manual_seed(5)

    def param(*shape, dtype):
        return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(True)

    x, w, b = (param(2, 6, 7, 3, dtype=torch.float32), param(3, 2, 3, m, dtype=torch.float32),
               param(3 * m, dtype=torch.float32))
    assert torch.autograd.gradcheck(lambda *a: _direct_2d(*a, strides, dilation, pads),
                                    (x, w, b), eps=1e-2, atol=2e-3, rtol=2e-3)
    x, w, b = (t.detach().double().requires_grad_(True) for t in (x, w, b))
    assert torch.autograd.gradgradcheck(lambda *a: _direct_2d(*a, strides, dilation, pads),
                                        (x, w, b))


# geometries the 2D rule leaves to today's kernel (kernel, strides, dilation)
RULE_REFUSES_2D = [((3, 3), (1, 1), (1, 1)), ((64, 1), (1, 1), (1, 1)),
                   ((3, 3), (1, 2), (1, 1)), ((2, 2), (2, 2), (1, 1))]


def test_2d_dispatch_rule(monkeypatch):
    """The 2D rule's picks (float32 training calls): the geometries it takes run the new
    kernel, the others today's; TAKES_2D forces either way."""
    def pick(kernel, strides=(1, 1), dilation=(1, 1), shape=(2, 9, 9, 32)):
        x = torch.zeros(shape, requires_grad=True)
        k = torch.zeros(*kernel, 1, shape[-1])
        return F._pick_conv_kernel(x, k, strides, ((1, 1), (1, 1)), shape[-1], True,
                                   dilation)

    for kernel, strides, dilation in [((5, 5), (1, 1), (1, 1)), ((7, 7), (1, 1), (1, 1)),
                                      ((3, 3), (1, 1), (2, 2)), ((3, 3), (2, 2), (1, 1)),
                                      ((7, 5), (1, 1), (1, 1))]:
        assert pick(kernel, strides, dilation) is depthwise_train.conv, (kernel, dilation)
    for kernel, strides, dilation in RULE_REFUSES_2D:
        assert pick(kernel, strides, dilation) is depthwise_cpu.conv, (kernel, strides)
    monkeypatch.setattr(depthwise_train, "TAKES_2D", True)
    for kernel, strides, dilation in RULE_REFUSES_2D:
        assert pick(kernel, strides, dilation) is depthwise_train.conv
    monkeypatch.setattr(depthwise_train, "TAKES_2D", False)
    assert pick((5, 5)) is depthwise_cpu.conv


def test_2d_custom_ops_pass_opcheck():
    """torch.library.opcheck of the 2D forward and backward ops."""
    op = torch.ops.sepconv.depthwise_conv2d_cpu.default
    for m, geometry in ((1, (1, 1, 1, 1, 1, 1, 1, 1)), (2, (2, 1, 1, 2, 0, 1, 2, 2))):
        x = torch.randn(2, 7, 6, 3, requires_grad=True)
        w = torch.randn(3, 2, 3 * m, requires_grad=True)
        b = torch.randn(3 * m, requires_grad=True)
        torch.library.opcheck(op, (x, w, b, *geometry))
        y = op(x.detach(), w.detach(), None, *geometry)
        torch.library.opcheck(torch.ops.sepconv.depthwise_conv2d_cpu_backward.default,
                              (torch.randn_like(y), x.detach(), w.detach(), torch.float32,
                               [True, True, True], *geometry))


@pytest.mark.parametrize("cls", ["DepthwiseConv2D", "SeparableConv2D"])
def test_2d_torch_compile_fullgraph(cls, backward_calls):
    """torch.compile(fullgraph=True) of a DepthwiseConv2D / SeparableConv2D training step:
    the opaque 2D ops run (the new backward counted) and give the reference's numbers."""
    args = dict(kernel_size=5, padding="same", depth_multiplier=2,
                bias_initializer="random_normal", input_shape=(None, None, 6))
    if cls == "SeparableConv2D":
        args["filters"] = 4
    layer = getattr(sepconv, cls)(**args)
    x = torch.randn(2, 9, 10, 6, requires_grad=True)

    def step(x):
        return layer(x).square().sum()

    loss = torch.compile(step, fullgraph=True, backend="aot_eager")(x)
    got = [loss] + list(torch.autograd.grad(loss, [x] + layer.weights))
    assert backward_calls == [(2, 9, 10, 6)], "the compiled backward did not run the 2D kernel"
    with kernel_choice("reference"):
        loss = step(x)
    want = [loss] + list(torch.autograd.grad(loss, [x] + layer.weights))
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)


def test_2d_export_and_trace_record_standard_ops():
    """torch.export and torch.jit.trace of a DepthwiseConv2D whose weights require grad:
    standard aten ops only, the eager model's numbers."""
    layer = sepconv.DepthwiseConv2D(5, padding="same", bias_initializer="random_normal",
                                    input_shape=(None, None, 4))
    x = torch.randn(2, 8, 9, 4)
    program = torch.export.export(layer, (x,))
    ops = {str(n.target) for n in program.graph_module.graph.nodes if n.op == "call_function"}
    assert all(op.startswith("aten.") for op in ops) and any("conv" in op for op in ops), ops
    torch.testing.assert_close(program.module()(x), layer(x))
    traced = torch.jit.trace(layer, (x,), check_trace=False)
    assert "sepconv::" not in str(traced.inlined_graph)
    torch.testing.assert_close(traced(x), layer(x))


@pytest.mark.parametrize("cls,args", [
    ("DepthwiseConv2D", dict(kernel_size=5, padding="same", depth_multiplier=2)),
    ("DepthwiseConv2D", dict(kernel_size=(3, 3), padding="same", dilation_rate=2)),
    ("SeparableConv2D", dict(filters=5, kernel_size=(5, 7), padding="valid"))])
def test_2d_gradients_match_tf_keras(cls, args, backward_calls):
    """tf-keras 2.21 (what R keras wraps) given the same weights: output and the
    gradients of the input and every weight, float32 at 1e-5 of scale; the 2D C backward
    ran (default dispatch)."""
    tf = pytest.importorskip("tensorflow")
    tf_keras = pytest.importorskip("tf_keras")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 13, 11, 6)).astype("float32")
    layer = getattr(sepconv, cls)(bias_initializer="random_normal", **args)
    layer(torch.from_numpy(x[:1]))
    ref = getattr(tf_keras.layers, cls).from_config(dict(layer.get_config(), name=None))
    ref.build(x.shape)
    ref.set_weights(layer.get_weights())
    backward_calls.clear()
    xt = torch.from_numpy(x).requires_grad_(True)
    y = layer(xt)
    cotangent = rng.standard_normal(tuple(y.shape)).astype("float32")
    got = [y.detach().numpy()] + [g.numpy() for g in torch.autograd.grad(
        (y * torch.from_numpy(cotangent)).sum(), [xt] + layer.weights)]
    assert backward_calls == [(2, 13, 11, 6)]
    x_tf = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_tf)
        y_tf = ref(x_tf)
        loss = tf.reduce_sum(y_tf * cotangent)
    want = [y_tf.numpy()] + [g.numpy() for g in tape.gradient(loss, [x_tf]
                                                              + ref.trainable_weights)]
    for g, r in zip(got, want):
        scale = max(1.0, float(np.abs(r).max()))
        np.testing.assert_allclose(g, r, atol=1e-5 * scale, rtol=1e-5)


@pytest.mark.parametrize("native_forward", [None, True, False])
def test_2d_both_forwards_and_the_rule_between_them(native_forward, monkeypatch):
    """The 2D C forward and oneDNN's give the reference's numbers (float32; bfloat16 with
    a multiplier); by default the C one runs for bfloat16 with a multiplier only."""
    monkeypatch.setattr(depthwise_train, "NATIVE_FORWARD", native_forward)
    monkeypatch.setattr(depthwise_train, "TAKES_2D", True)
    ran = []
    real = depthwise_train._cpu_native.dw2d_forward
    monkeypatch.setattr(depthwise_train._cpu_native, "dw2d_forward",
                        lambda *a, **k: ran.append(1) or real(*a, **k))
    for dtype, m, dilation in ((torch.float32, 1, (1, 1)), (torch.float32, 2, (1, 1)),
                               (torch.float32, 1, (2, 3)), (torch.bfloat16, 2, (1, 1))):
        case = dict(k=(3, 4), stride=(1, 1), dilation=dilation, padding="same", m=m,
                    size=(9, 20), channels=5, batch=2, bias=True, strided_view=True,
                    needs="x", seed=m)
        ran.clear()
        x, w, b = _tensors_2d(case, dtype)
        got = _run(case, x, w, b, "")[:1]
        want = _run(case, x.float(), w.float(), b.float(), "reference")[:1]
        _compare(got, want, dtype)
        c_forward = (native_forward if native_forward is not None else False) \
            if dtype == torch.float32 else True
        assert len(ran) == c_forward
