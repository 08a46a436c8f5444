"""``kernels/gemm1d.py``: Conv1D's backward and Conv1DTranspose's backward as shifted GEMMs.

- the kernel itself, forced (called directly), against the reference kernel (oneDNN and
  autograd, no gemm1d code) over drawn geometries: strides, dilations, causal / same /
  valid, output_padding, bias or none, any subset of gradients, non-contiguous inputs,
  float64 (to rounding), float32 (1e-5 of scale) and bfloat16 (the reference in float32
  on the same values, within bfloat16's rounding);
- at the sizes the rule picks it, through the public layers: the new backward ran, and
  output and every gradient equal tf-keras 2.21's (float32 and float64) and today's path
  (``gemm1d.ENABLED = False``); channels_first and bfloat16 keep the reference kernel;
- float64 gradcheck and gradgradcheck (double backward) through the new path;
- the rule: where it is taken and where not (no autograd, export / tracing, autocast,
  dtypes, shapes, ``SEPCONV_KERNEL=reference``).
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
from sepconv.kernels import gemm1d, kstride, reference
from kernel_env import conv1d_case, kernel_choice, run_with_grads

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
CONV_NODE, TRANSPOSE_NODE = "_Conv1dGemmBackward", "_ConvTranspose1dGemmBackward"


@st.composite
def conv_cases(draw):
    return dict(conv1d_case(draw, st.integers(1, 5), [1, 2, 3, 7, 33], 70),
                needs=draw(st.sampled_from(["all", "x", "kernel", "bias"])))


@st.composite
def transpose_cases(draw):
    stride = draw(st.integers(1, 5))
    k = draw(st.integers(1, 12))
    padding = draw(st.sampled_from(["valid", "same"]))
    out_pad = draw(st.sampled_from([None] + list(range(stride))))
    length = draw(st.integers(1, 40))
    if _padding.deconv_mismatch((length,), (k,), (stride,), (1,), padding,
                                None if out_pad is None else (out_pad,)) is not None:
        out_pad = None
    return dict(k=k, stride=stride, padding=padding, out_pad=out_pad, length=length,
                channels=draw(st.sampled_from([1, 3, 16])),
                filters=draw(st.sampled_from([1, 4, 17])), batch=draw(st.integers(1, 3)),
                bias=draw(st.booleans()), strided_view=draw(st.booleans()),
                needs=draw(st.sampled_from(["all", "x", "kernel", "bias"])),
                seed=draw(st.integers(0, 2 ** 31 - 1)))


def _tensors(case, kernel_shape, dtype):
    g = torch.Generator().manual_seed(case["seed"])
    x = torch.randn(case["batch"], case["length"], case["channels"], generator=g,
                    dtype=torch.float64)
    if case["strided_view"]:  # a non-contiguous view of the same values
        x = torch.stack([x, x], dim=-1)[..., 0]
    w = torch.randn(kernel_shape, generator=g, dtype=torch.float64)
    b = torch.randn(case["filters"], generator=g, dtype=torch.float64) \
        if case["bias"] else None
    return [None if t is None else t.to(dtype) for t in (x, w, b)]


def _compare(case, new_fn, ref_fn, kernel_shape, dtype, node, **geometry):
    dtype = getattr(torch, dtype)
    x, w, b = _tensors(case, kernel_shape, dtype)
    y, got = run_with_grads(new_fn, case["needs"], x, w, b, **geometry)
    assert y.grad_fn.name() == node  # the new backward ran, not the reference's
    if dtype == torch.bfloat16:
        _, want = run_with_grads(ref_fn, case["needs"], x.float(), w.float(),
                       None if b is None else b.float(), **geometry)
        want = [t.to(dtype) for t in want]
        tol = dict(rtol=2e-2, atol=2e-2)
    else:
        _, want = run_with_grads(ref_fn, case["needs"], x, w, b, **geometry)
        tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else \
            dict(rtol=1e-12, atol=1e-12)
    assert len(got) == len(want)
    for g, r in zip(got, want):
        assert g.shape == r.shape and g.dtype == r.dtype == dtype
        scale = max(1.0, r.double().abs().max().item())
        torch.testing.assert_close(g.double() / scale, r.double() / scale, **tol)


@SETTINGS
@given(conv_cases(), st.sampled_from(["float64", "float32", "bfloat16"]), st.booleans())
def test_conv_kernel_matches_the_reference(case, dtype, gemm_forward):
    """gemm1d.conv (its backward the shifted GEMMs; its forward too where it can, at every
    dilation with ``gemm_forward``, else the reference's) against the reference kernel and
    autograd, on every drawn geometry, forced; the inference forward likewise."""
    (out,), pads = (_padding.conv_output_shape((case["length"],), (case["k"],),
                                               (case["stride"],), (case["dilation"],),
                                               case["padding"]),
                    _padding.padding_amounts_nd((case["length"],), (case["k"],),
                                                (case["stride"],), (case["dilation"],),
                                                case["padding"]))
    if out <= 0:
        return
    geometry = dict(strides=(case["stride"],), dilation=(case["dilation"],), pads=pads,
                    groups=1, channels_last=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gemm1d, "FORWARD_DILATION", 1 if gemm_forward else None)
        _compare(case, gemm1d.conv, reference.conv,
                 (case["k"], case["channels"], case["filters"]), dtype, CONV_NODE,
                 **geometry)
        x, w, b = _tensors(case, (case["k"], case["channels"], case["filters"]),
                           getattr(torch, dtype))
        with torch.no_grad():
            got, want = gemm1d.conv(x, w, b, **geometry), reference.conv(x, w, b, **geometry)
        tol = {"float64": 1e-12, "float32": 1e-5, "bfloat16": 0}[dtype]
        scale = max(1.0, want.double().abs().max().item())
        torch.testing.assert_close(got.double() / scale, want.double() / scale, rtol=tol,
                                   atol=tol)


@SETTINGS
@given(transpose_cases(), st.sampled_from(["float64", "float32", "bfloat16"]), st.booleans())
def test_transpose_kernel_matches_the_reference(case, dtype, gemm_forward):
    """gemm1d.conv_transpose (the phase-GEMM backward; the one-GEMM forward on every shape
    with ``gemm_forward``, else the reference's) against the reference kernel and autograd:
    any kernel / stride ratio (zero-padded phases), "valid" and "same", output_padding
    (outputs longer than the full one: zero-extended); the inference forward likewise."""
    out_pad = None if case["out_pad"] is None else (case["out_pad"],)
    out = _padding.deconv_output_shape((case["length"],), (case["k"],), (case["stride"],),
                                       (1,), case["padding"], out_pad)
    pads = _padding.padding_amounts_nd(out, (case["k"],), (case["stride"],), (1,),
                                       case["padding"])
    geometry = dict(strides=(case["stride"],), dilation=(1,), pads=pads, out_spatial=out,
                    channels_last=True)
    shape = (case["k"], case["filters"], case["channels"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gemm1d, "TRANSPOSE_FORWARD_CHANNELS", 1 if gemm_forward else None)
        mp.setattr(gemm1d, "TRANSPOSE_FORWARD_BYTES", 2 ** 40)
        _compare(case, gemm1d.conv_transpose, reference.conv_transpose, shape, dtype,
                 TRANSPOSE_NODE, **geometry)
        x, w, b = _tensors(case, shape, getattr(torch, dtype))
        with torch.no_grad():
            got = gemm1d.conv_transpose(x, w, b, **geometry)
            want = reference.conv_transpose(x, w, b, **geometry)
        tol = {"float64": 1e-12, "float32": 1e-5, "bfloat16": 0}[dtype]
        scale = max(1.0, want.double().abs().max().item())
        torch.testing.assert_close(got.double() / scale, want.double() / scale, rtol=tol,
                                   atol=tol)


def test_gradcheck_and_gradgradcheck_float64():
    """Central differences through the new backward (conv: stride 2 and a dilated causal
    case; transpose: k5 s2 "same" with output_padding), and the double backward."""
    g = torch.Generator().manual_seed(0)

    def t(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)

    for stride, dilation, pads in ((2, 1, ((1, 2),)), (1, 3, ((6, 0),))):
        def conv(x, w, b):
            return gemm1d.conv(x, w, b, strides=(stride,), dilation=(dilation,), pads=pads,
                               groups=1, channels_last=True)
        inputs = (t(2, 9, 3), t(3, 3, 4), t(4))
        assert conv(*inputs).grad_fn.name() == CONV_NODE
        assert torch.autograd.gradcheck(conv, inputs)
        assert torch.autograd.gradgradcheck(conv, inputs)

    out = _padding.deconv_output_shape((6,), (5,), (2,), (1,), "same", (0,))
    pads = _padding.padding_amounts_nd(out, (5,), (2,), (1,), "same")

    def transpose(x, w, b):
        return gemm1d.conv_transpose(x, w, b, strides=(2,), dilation=(1,), pads=pads,
                                     out_spatial=out, channels_last=True)
    inputs = (t(2, 6, 3), t(5, 4, 3), t(4))
    assert transpose(*inputs).grad_fn.name() == TRANSPOSE_NODE
    assert torch.autograd.gradcheck(transpose, inputs)
    assert torch.autograd.gradgradcheck(transpose, inputs)


# -- at the sizes the rule picks, through the layers, against tf-keras ------------------------

tf = pytest.importorskip("tensorflow")
pytest.importorskip("tf_keras")
from test_parity_conv_tfkeras import tf_reference  # noqa: E402

RULE_SETTINGS = settings(max_examples=8, deadline=None, derandomize=True,
                         suppress_health_check=[HealthCheck.too_slow])


def _layer_result(layer, x, g):
    """Output and gradients (input, kernel, bias) of a sepconv layer, and the backward node
    behind its output."""
    xt = torch.from_numpy(x).requires_grad_(True)
    y = layer(xt)
    node = y.grad_fn.name()
    (y * torch.from_numpy(g)).sum().backward()
    grads = [xt.grad.numpy()] + [w.grad.numpy() for w in layer.weights]
    for w in layer.weights:
        w.grad = None
    return y.detach().numpy(), grads, node


def _check_against_tf_keras_and_old_path(layer, x, node, monkeypatch):
    rng = np.random.default_rng(3)
    with torch.no_grad():
        shape = layer(torch.from_numpy(x)).shape  # builds it
    layer.set_weights([rng.standard_normal(w.shape).astype(x.dtype) * 0.1
                       for w in layer.get_weights()])
    g = rng.standard_normal(shape).astype(x.dtype)
    y, grads, ran = _layer_result(layer, x, g)
    assert ran == node
    y_tf, grads_tf = tf_reference(layer, x, g)
    monkeypatch.setattr(gemm1d, "ENABLED", False)
    y_ref, grads_ref, ran_ref = _layer_result(layer, x, g)
    monkeypatch.setattr(gemm1d, "ENABLED", True)
    assert ran_ref != node
    tol = 1e-5 if x.dtype == np.float32 else 1e-10
    for got, want_tf, want_ref in zip([y] + grads, [y_tf] + grads_tf, [y_ref] + grads_ref):
        assert got.shape == want_tf.shape == want_ref.shape
        scale = max(1.0, float(np.abs(want_tf).max()))
        np.testing.assert_allclose(got / scale, want_tf / scale, atol=tol, rtol=tol)
        np.testing.assert_allclose(got / scale, want_ref / scale, atol=tol, rtol=tol)


@pytest.mark.slow
@RULE_SETTINGS
@given(padding=st.sampled_from(["causal", "same", "valid"]),
       dilation=st.sampled_from([64, 257, 512]), use_bias=st.booleans(),
       dtype=st.sampled_from(["float32", "float64"]), extra=st.integers(0, 200))
def test_conv1d_at_the_rules_sizes_matches_tf_keras(padding, dilation, use_bias, dtype,
                                                    extra):
    """WaveNet-like layers (k2, 64 -> 64 channels, >= 1024 output steps, dilation 64-512):
    the rule picks the GEMM backward, and output and all gradients equal tf-keras' and
    today's path."""
    with pytest.MonkeyPatch.context() as mp:
        layer = sepconv.Conv1D(64, 2, padding=padding, dilation_rate=dilation,
                               use_bias=use_bias, dtype=dtype)
        steps = 1024 + extra + (dilation if padding == "valid" else 0)
        x = np.random.default_rng(extra).standard_normal((2, steps, 64)).astype(dtype)
        _check_against_tf_keras_and_old_path(layer, x, CONV_NODE, mp)


@pytest.mark.slow
@RULE_SETTINGS
@given(k=st.sampled_from([2, 3]), padding=st.sampled_from(["causal", "same", "valid"]),
       dilation=st.sampled_from([1, 2, 7, 64]), channels=st.sampled_from([16, 32]),
       use_bias=st.booleans(), dtype=st.sampled_from(["float32", "float64"]),
       extra=st.integers(0, 200))
def test_narrow_conv1d_on_avx2_matches_tf_keras(k, padding, dilation, channels, use_bias,
                                                dtype, extra):
    """WaveNet's and TCNs' narrow layers (k2 / k3, 16-32 channels, >= 1024 output steps,
    dilation 1-64) on an AVX2-only CPU (forced): the rule picks the GEMM backward, and
    output and all gradients equal tf-keras' and today's path."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gemm1d, "_avx2_only", lambda: True)
        layer = sepconv.Conv1D(channels, k, padding=padding, dilation_rate=dilation,
                               use_bias=use_bias, dtype=dtype)
        steps = 1024 + extra + ((k - 1) * dilation if padding == "valid" else 0)
        x = np.random.default_rng(extra).standard_normal((2, steps, channels)).astype(dtype)
        _check_against_tf_keras_and_old_path(layer, x, CONV_NODE, mp)


@pytest.mark.slow
@RULE_SETTINGS
@given(kernel_stride=st.sampled_from([(16, 8), (8, 4), (4, 2), (2, 2)]),
       padding=st.sampled_from(["same", "valid"]), use_bias=st.booleans(),
       dtype=st.sampled_from(["float32", "float64"]), out_pad=st.booleans(),
       wide=st.booleans(), extra=st.integers(0, 100))
def test_conv1d_transpose_at_the_rules_sizes_matches_tf_keras(kernel_stride, padding,
                                                              use_bias, dtype, out_pad, wide,
                                                              extra):
    """MelGAN-like upsamplers (kernel a multiple of the stride, 64+ channels, >= 2^26
    multiply-adds per sequence; ``wide``: 512 input channels, where the forward is the
    one-GEMM form too): the rule picks the phase-GEMM backward, and output and all
    gradients equal tf-keras' and today's path."""
    k, s = kernel_stride
    channels = 512 if wide else 64
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kstride, "ENABLED", False)  # kernel == stride: kernels/kstride.py's first
        layer = sepconv.Conv1DTranspose(64, k, strides=s, padding=padding,
                                        output_padding=s - 1 if out_pad else None,
                                        use_bias=use_bias, dtype=dtype)
        steps = max(128, 2 ** 26 // (channels * 64 * k)) + extra
        x = np.random.default_rng(extra).standard_normal((2, steps, channels)).astype(dtype)
        assert gemm1d._gemm_forward_fits(torch.from_numpy(x), torch.zeros(
            k, 64, channels, dtype=getattr(torch, dtype)), s) == wide
        _check_against_tf_keras_and_old_path(layer, x, TRANSPOSE_NODE, mp)


@pytest.mark.parametrize("cls,kw,steps", [
    ("Conv1D", dict(filters=64, kernel_size=2, padding="causal", dilation_rate=256), 1300),
    ("Conv1DTranspose", dict(filters=64, kernel_size=16, strides=8, padding="same"), 1100)])
def test_channels_first_and_bfloat16_keep_the_reference(cls, kw, steps):
    """At the rule's sizes, channels_first data and bfloat16 run the reference kernel (the
    rule is measured on channels_last float32); channels_first still equals channels_last
    on the transposed data."""
    last = getattr(sepconv, cls)(input_shape=(None, 64), **kw)
    first = getattr(sepconv, cls)(data_format="channels_first", input_shape=(64, None), **kw)
    first.set_weights(last.get_weights())
    x = torch.randn(2, steps, 64, requires_grad=True)
    y = last(x)
    assert y.grad_fn.name() in (CONV_NODE, TRANSPOSE_NODE)
    y_first = first(x.transpose(1, 2))
    assert "Gemm" not in y_first.grad_fn.name()
    torch.testing.assert_close(y_first.transpose(1, 2), y, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, [x] + list(last.weights), g)
    grads_first = torch.autograd.grad(y_first, [x] + list(first.weights), g.transpose(1, 2))
    for a, b in zip(grads, grads_first):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())
    half = getattr(sepconv, cls)(dtype="bfloat16", **kw)
    y_half = half(x.detach().bfloat16().requires_grad_(True))
    assert "Gemm" not in y_half.grad_fn.name()


# -- the rule -----------------------------------------------------------------------------

def _conv_kernel(shape=(2, 1100, 64), k=2, filters=64, stride=1, dilation=64,
                 pads=((64, 0),), dtype=torch.float32, grad=True):
    x = torch.zeros(shape, dtype=dtype, requires_grad=grad)
    w = torch.zeros(k, shape[-1], filters, dtype=dtype)
    return F._pick_conv_kernel(x, w, (stride,), pads, 1, True, dilation=(dilation,))


def test_conv_rule(monkeypatch):
    """Conv1D: the GEMM backward for k2, stride 1, dilation >= 64, 64+ channels in and out,
    1024+ output steps, float32 / float64, autograd recording; without autograd (the GEMM
    forward) from dilation 256 on; the reference elsewhere (an AVX-512 CPU: pinned)."""
    monkeypatch.setattr(gemm1d, "_avx2_only", lambda: False)
    assert _conv_kernel() is gemm1d.conv
    assert _conv_kernel(dtype=torch.float64) is gemm1d.conv
    assert _conv_kernel(dilation=512, pads=((256, 256),)) is gemm1d.conv
    assert _conv_kernel(dilation=256, pads=((256, 0),), grad=False) is gemm1d.conv
    with torch.no_grad():
        assert _conv_kernel(dilation=256, pads=((256, 0),)) is gemm1d.conv
    for kw in (dict(grad=False), dict(dtype=torch.bfloat16), dict(k=3, pads=((128, 0),)),
               dict(dilation=8, pads=((8, 0),)), dict(shape=(2, 1100, 32)),
               dict(filters=32), dict(shape=(2, 1000, 64)),
               dict(stride=2, dilation=1, pads=((0, 1),))):
        assert _conv_kernel(**kw) is reference.conv, kw
    with torch.no_grad():
        assert _conv_kernel() is reference.conv
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _conv_kernel() is reference.conv
    monkeypatch.setattr(gemm1d, "ENABLED", False)
    assert _conv_kernel() is reference.conv
    monkeypatch.setattr(gemm1d, "ENABLED", True)
    with kernel_choice("reference"):
        assert _conv_kernel() is reference.conv


def test_conv_rule_on_avx2(monkeypatch):
    """On AVX2-only CPUs (``gemm1d._avx2_only``, forced here both ways) the GEMM backward
    also takes narrow k2 / k3 stride-1 layers at any dilation: 16+ channels in and out,
    1024+ output steps, autograd recording; with AVX-512 they stay on oneDNN."""
    narrow = dict(shape=(2, 1100, 32), filters=32)
    taken = (dict(narrow, dilation=1, pads=((1, 0),)), dict(narrow, dilation=8, pads=((8, 0),)),
             dict(narrow, dilation=1, pads=((0, 1),)),
             dict(narrow, dilation=2, pads=((0, 0),), shape=(2, 1026, 32)),
             dict(shape=(2, 1100, 16), filters=16, dilation=4, pads=((4, 0),)),
             dict(narrow, dtype=torch.float64, dilation=1, pads=((1, 0),)),
             dict(narrow, k=3, dilation=4, pads=((8, 0),)),
             dict(narrow, k=3, dilation=1, pads=((0, 0),), shape=(2, 1026, 32)))
    kept = (dict(narrow, dilation=1, pads=((1, 0),), grad=False, shape=(8, 1100, 32)),
            dict(narrow, dilation=1, pads=((1, 0),), dtype=torch.bfloat16),
            dict(narrow, k=4, dilation=1, pads=((3, 0),)),
            dict(narrow, stride=2, dilation=1, pads=((0, 1),)),
            dict(shape=(2, 1100, 8), filters=32, dilation=1, pads=((1, 0),)),
            dict(narrow, filters=8, dilation=1, pads=((1, 0),)),
            dict(narrow, dilation=2, pads=((0, 0),), shape=(2, 1025, 32)),  # 1023 outputs
            dict(narrow, k=3, dilation=1, pads=((0, 0),), shape=(2, 1025, 32)))
    monkeypatch.setattr(gemm1d, "_avx2_only", lambda: True)
    for kw in taken:
        assert _conv_kernel(**kw) is gemm1d.conv, kw
    for kw in kept:
        assert _conv_kernel(**kw) is reference.conv, kw
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _conv_kernel(**taken[0]) is reference.conv
    monkeypatch.setattr(gemm1d, "NARROW_CHANNELS", None)
    assert _conv_kernel(**taken[0]) is reference.conv
    assert _conv_kernel() is gemm1d.conv  # the AVX-512 class still
    monkeypatch.setattr(gemm1d, "NARROW_CHANNELS", 16)
    monkeypatch.setattr(gemm1d, "_avx2_only", lambda: False)
    for kw in taken:
        assert _conv_kernel(**kw) is reference.conv, kw


def _transpose_node(shape=(2, 1100, 64), k=16, filters=64, stride=8, dtype=torch.float32,
                    grad=True, **kw):
    x = torch.randn(shape, dtype=dtype, requires_grad=grad)
    w = torch.randn(k, filters, shape[-1], dtype=dtype)
    y = F.conv_transpose(x, w, None, strides=stride, padding="same", **kw)
    return None if y.grad_fn is None else y.grad_fn.name()


def test_transpose_rule(monkeypatch):
    """Conv1DTranspose: the phase-GEMM backward for a kernel a multiple of the stride (>= 2),
    dilation 1, 64+ channels in and out, 2^26+ multiply-adds per sequence, float32 /
    float64, autograd recording; without autograd (the one-GEMM forward) for 512+ input
    channels and at most 32 MiB of columns; the reference elsewhere."""
    assert _transpose_node() == TRANSPOSE_NODE
    assert _transpose_node(dtype=torch.float64) == TRANSPOSE_NODE
    assert _transpose_node(k=2, stride=2, shape=(2, 8200, 64)) != TRANSPOSE_NODE  # kstride's
    with monkeypatch.context() as mp:  # kernel == stride is kernels/kstride.py's first
        mp.setattr(kstride, "ENABLED", False)
        assert _transpose_node(k=2, stride=2, shape=(2, 8200, 64)) == TRANSPOSE_NODE
    for kw in (dict(grad=False), dict(dtype=torch.bfloat16), dict(k=12),
               dict(k=3, stride=1), dict(shape=(2, 1100, 32)), dict(filters=32),
               dict(shape=(2, 1000, 64)), dict(k=2, stride=2, shape=(2, 8000, 64))):
        assert _transpose_node(**kw) != TRANSPOSE_NODE, kw
    x = torch.zeros(4, 250, 512)
    assert gemm1d.takes_transpose(x, torch.zeros(16, 256, 512), (8,), (1,))  # inference
    assert not gemm1d.takes_transpose(x[..., :256], torch.zeros(16, 256, 256), (8,), (1,))
    assert not gemm1d.takes_transpose(torch.zeros(16, 250, 512), torch.zeros(16, 256, 512),
                                      (8,), (1,))  # 64 MiB of columns
    x = torch.zeros(2, 1100, 64, requires_grad=True)
    assert gemm1d.takes_transpose(x, torch.zeros(16, 64, 64), (8,), (1,))
    assert not gemm1d.takes_transpose(x, torch.zeros(16, 64, 64), (8,), (2,))
    monkeypatch.setattr(gemm1d, "ENABLED", False)
    assert _transpose_node() != TRANSPOSE_NODE
    monkeypatch.setattr(gemm1d, "ENABLED", True)
    with kernel_choice("reference"):
        assert _transpose_node() != TRANSPOSE_NODE


def test_tracing_and_export_record_standard_ops():
    """torch.jit.trace and torch.export of layers the rule would pick record torch's
    convolutions, not the autograd.Functions (whose backward is Python)."""
    conv = sepconv.Conv1D(64, 2, padding="causal", dilation_rate=64)
    up = sepconv.Conv1DTranspose(64, 16, strides=8, padding="same")
    model = torch.nn.Sequential(conv, up)
    x = torch.randn(1, 1100, 64)
    assert model(x).grad_fn.name() == TRANSPOSE_NODE  # the parameters require grad
    traced = torch.jit.trace(model, x, check_trace=False)  # (names differ per call)
    assert "PythonOp" not in str(traced.graph)
    torch.testing.assert_close(traced(x), model(x))
    exported = torch.export.export(model, (x,))
    targets = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert not any("Gemm" in t or "higher_order" in t for t in targets), targets
    torch.testing.assert_close(exported.module()(x), model(x))


def test_torch_func_grad_runs_the_reference():
    """Under torch.func transforms (which an autograd.Function without a vmap rule cannot
    join) the rule steps aside: torch.func.grad equals autograd through the new kernel."""
    x = torch.randn(1, 1100, 64, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 64, 64, dtype=torch.float64, requires_grad=True)

    def loss(x, w):
        return F.conv(x, w, None, padding="causal", dilation_rate=64).square().sum()

    y = F.conv(x, w, None, padding="causal", dilation_rate=64)
    assert y.grad_fn.name() == CONV_NODE
    want = torch.autograd.grad(y.square().sum(), (x, w))
    got = torch.func.grad(loss, argnums=(0, 1))(x.detach(), w.detach())
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10)
