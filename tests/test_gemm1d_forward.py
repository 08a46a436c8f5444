"""``kernels/gemm1d.py``'s inference forward of Conv1D as GEMMs (``gemm_forward``: one GEMM
per tap, or the windows unfolded into one GEMM), chosen by ``gemm1d.small_form``'s rule.

- the kernel itself, both forms forced, against the reference kernel (oneDNN, no gemm1d
  code) over drawn geometries: kernel sizes 1-11, strides, dilations, causal / same /
  valid, both data formats, bias or none, non-contiguous inputs; float64 to rounding,
  float32 to 1e-5 of scale, bfloat16 within its rounding; float64 gradcheck of the
  composition (standard ops: torch's autograd differentiates it, though the dispatch runs
  it only where no gradient is recorded);
- the dispatch: at the rule's sizes (batch-1 / small-batch inference) ``functional.conv``
  runs it and equals the old path; elsewhere, and under autograd, export, tracing,
  autocast, ``SEPCONV_KERNEL=reference``, other dtypes, it does not;
- Conv1D layers at batch 1 (the keyword-spotting stem, WaveNet's k2 layers, both data
  formats) equal tf-keras 2.21 within the parity tests' tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sepconv
from sepconv import functional as F
from sepconv.kernels import gemm1d, reference
from kernel_env import conv1d_case, kernel_choice

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def cases(draw):
    return dict(conv1d_case(draw, st.sampled_from([1, 2, 3, 5, 11]), [1, 2, 3, 8, 33], 60),
                channels_last=draw(st.booleans()))


def _tensors(case, dtype=torch.float64):
    g = torch.Generator().manual_seed(case["seed"])
    shape = (case["batch"], case["length"], case["channels"])
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    if not case["channels_last"]:
        x = x.transpose(1, 2).contiguous()
    if case["strided_view"]:  # a non-contiguous view of the same values
        x = torch.stack([x, x], dim=-1)[..., 0]
    w = torch.randn(case["k"], case["channels"], case["filters"], generator=g,
                    dtype=torch.float64)
    b = torch.randn(case["filters"], generator=g, dtype=torch.float64) \
        if case["bias"] else None
    return [None if t is None else t.to(dtype) for t in (x, w, b)]


def _geometry(case, x, w):
    fmt = "channels_last" if case["channels_last"] else "channels_first"
    strides, dilation, pads, *_ = F._conv_plan(x, w, None, case["stride"], case["padding"],
                                               case["dilation"], 1, fmt, False)
    return dict(strides=strides, dilation=dilation, pads=pads,
                channels_last=case["channels_last"])


@SETTINGS
@given(cases(), st.sampled_from(["taps", "unfold"]),
       st.sampled_from(["float64", "float32", "bfloat16"]))
def test_gemm_forward_matches_the_reference(case, form, dtype):
    """Both forms, forced, equal the reference kernel (oneDNN's convolution on the same
    values): float64 to rounding, float32 to 1e-5 of scale, bfloat16 against the reference
    in float32 within bfloat16's rounding."""
    dtype = getattr(torch, dtype)
    x, w, b = _tensors(case, dtype)
    geometry = _geometry(case, x, w)
    got = gemm1d.gemm_forward(x, w, b, form=form, **geometry)
    if dtype == torch.bfloat16:
        want = reference.conv(x.float(), w.float(), None if b is None else b.float(),
                              groups=1, **geometry)
        tol = dict(rtol=2e-2, atol=2e-2)
    else:
        want = reference.conv(x, w, b, groups=1, **geometry)
        tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else \
            dict(rtol=1e-12, atol=1e-12)
    assert got.shape == want.shape and got.dtype == dtype
    scale = max(1.0, want.double().abs().max().item())
    torch.testing.assert_close(got.double() / scale, want.double() / scale, **tol)


@pytest.mark.parametrize("form", ["taps", "unfold"])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("k,stride,dilation,padding", [(3, 2, 1, "same"), (2, 1, 3, "causal"),
                                                       (4, 1, 1, "valid")])
def test_gemm_forward_gradcheck_float64(form, channels_last, k, stride, dilation, padding):
    """The composition is standard ops: gradcheck (float64) of input, kernel and bias."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 9, 3, dtype=torch.float64, generator=g)
    if not channels_last:
        x = x.transpose(1, 2).contiguous()
    w = torch.randn(k, 3, 4, dtype=torch.float64, generator=g)
    b = torch.randn(4, dtype=torch.float64, generator=g)
    case = dict(stride=stride, padding=padding, dilation=dilation,
                channels_last=channels_last)
    geometry = _geometry(case, x, w)
    torch.autograd.gradcheck(
        lambda x, w, b: gemm1d.gemm_forward(x, w, b, form=form, **geometry),
        (x.requires_grad_(), w.requires_grad_(), b.requires_grad_()))


# -- the dispatch -----------------------------------------------------------------------------

def _pick(shape, k, filters, stride=1, dilation=1, padding="same", channels_last=True,
          dtype=torch.float32, grad=False):
    x = torch.zeros(shape, dtype=dtype, requires_grad=grad)
    channels = shape[-1] if channels_last else shape[1]
    w = torch.zeros(k, channels, filters, dtype=dtype)
    fmt = "channels_last" if channels_last else "channels_first"
    strides, dil, pads, *_ = F._conv_plan(x, w, None, stride, padding, dilation, 1, fmt,
                                          False)
    return F._pick_conv_kernel(x, w, strides, pads, 1, channels_last, dilation=dil)


#: shapes the rule takes (bench/conv1d_small.json): the keyword-spotting stem and WaveNet's
#: k2 layers at batch 1, as (shape, kernel_size, filters, stride, dilation, padding)
TAKEN = [((1, 101, 64), 11, 128, 2, 1, "same"), ((1, 4000, 32), 2, 32, 1, 1, "causal"),
         ((1, 4000, 32), 2, 32, 1, 64, "causal"), ((1, 50, 64), 5, 64, 1, 1, "same"),
         ((4, 1000, 16), 3, 16, 1, 8, "causal"), ((32, 50, 16), 2, 16, 1, 8, "causal")]
#: shapes it leaves to oneDNN: larger batches or windows (WaveNet at batch 4, the text CNN's
#: Conv1D(128, 5) at batch 1, k5 dilated taps, 128 channels of taps)
KEPT = [((32, 1000, 64), 3, 64, 1, 1, "same"), ((16, 4000, 64), 5, 64, 1, 1, "same"),
        ((4, 4000, 32), 2, 32, 1, 8, "causal"), ((1, 400, 128), 5, 128, 1, 1, "valid"),
        ((1, 1000, 16), 5, 16, 1, 8, "causal"), ((1, 1000, 128), 2, 128, 1, 8, "causal"),
        ((1, 1000, 64), 3, 64, 1, 1, "same")]


@pytest.mark.parametrize("shape,k,filters,stride,dilation,padding", TAKEN)
def test_rule_takes_small_inference_calls(shape, k, filters, stride, dilation, padding):
    """At the rule's sizes, without autograd, float32, either data format:
    ``functional.conv`` runs the GEMM form the rule names, equal to the old path (within
    float32 rounding: another summation order)."""
    geometry = dict(stride=stride, dilation=dilation, padding=padding)
    for channels_last in (True, False):
        sh = shape if channels_last else (shape[0], shape[2], shape[1])
        with torch.no_grad():
            picked = _pick(sh, k, filters, channels_last=channels_last, **geometry)
        x = torch.randn(sh)
        w = torch.randn(k, shape[2], filters) * 0.1
        b = torch.randn(filters)
        fmt = "channels_last" if channels_last else "channels_first"
        call = dict(strides=stride, padding=padding, dilation_rate=dilation, data_format=fmt)
        ran = []
        real = gemm1d.gemm_forward
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(gemm1d, "gemm_forward", lambda *a, **kw: ran.append(kw["form"])
                       or real(*a, **kw))
            with torch.inference_mode():
                got = F.conv(x, w, b, **call)
            assert ran == [gemm1d._small_rule(
                shape[0], got.shape[1 if channels_last else 2], shape[2], k, filters,
                stride, dilation)]
            assert picked is {"taps": gemm1d.conv_taps, "unfold": gemm1d.conv_unfold}[ran[0]]
            mp.setattr(gemm1d, "SMALL_FORWARD", False)
            with torch.inference_mode():
                want = F.conv(x, w, b, **call)
            assert len(ran) == 1
            mp.setattr(gemm1d, "SMALL_FORWARD", True)
            F.conv(x.requires_grad_(), w, b, **call)  # autograd records: not this forward
            assert len(ran) == 1
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@SETTINGS
@given(cases())
def test_dispatch_asks_the_rule_once_with_the_true_length(case):
    """``functional.conv`` on drawn float32 geometries in inference: gemm1d's rule
    (``small_form`` -> ``_small_rule``) is asked at most once a call, with the output length
    the reference kernel (torch's convolution) produces, the form it names runs (none where
    it names none), and the output is the reference's within float32 rounding."""
    x, w, b = _tensors(case, torch.float32)
    geometry = _geometry(case, x, w)
    want = reference.conv(x, w, b, groups=1, **geometry)
    asked, ran = [], []
    real_rule, real_forward = gemm1d._small_rule, gemm1d.gemm_forward
    fmt = "channels_last" if case["channels_last"] else "channels_first"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gemm1d, "_small_rule", lambda *a: asked.append(a) or real_rule(*a))
        mp.setattr(gemm1d, "gemm_forward", lambda *a, **kw: ran.append(kw["form"])
                   or real_forward(*a, **kw))
        with torch.inference_mode():
            got = F.conv(x, w, b, strides=case["stride"], padding=case["padding"],
                         dilation_rate=case["dilation"], data_format=fmt)
    assert len(asked) <= 1, asked
    if asked:
        assert asked[0][1] == want.shape[1 if case["channels_last"] else 2], asked
        assert ran == [form for form in [real_rule(*asked[0])] if form is not None]
    else:
        assert ran == []
    scale = max(1.0, want.abs().max().item())
    torch.testing.assert_close(got / scale, want / scale, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels_last", [True, False])
def test_a_bias_alone_requiring_grad(channels_last):
    """Only the bias requires grad (the rule, which sees input and kernel, takes the call):
    the GEMM form runs under torch's autograd; output and bias gradient equal the
    reference's."""
    x, w = torch.randn(1, 101, 64), torch.randn(11, 64, 128) * 0.1
    if not channels_last:
        x = x.transpose(1, 2).contiguous()
    b = torch.randn(128, requires_grad=True)
    fmt = "channels_last" if channels_last else "channels_first"
    call = dict(strides=2, padding="same", data_format=fmt)
    got = F.conv(x, w, b, **call)
    (g_got,) = torch.autograd.grad(got, [b], torch.ones_like(got))
    with kernel_choice("reference"):
        want = F.conv(x, w, b, **call)
    (g_want,) = torch.autograd.grad(want, [b], torch.ones_like(want))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_got, g_want, rtol=1e-5, atol=1e-4)


def test_rule_leaves_the_rest_to_onednn(monkeypatch):
    """Larger calls, other dtypes, groups, autograd on a narrow shape, export / tracing /
    autocast, ``SEPCONV_KERNEL=reference`` and ``SMALL_FORWARD = False``: not the GEMM
    forward."""
    with torch.no_grad():
        for shape, k, filters, stride, dilation, padding in KEPT:
            assert _pick(shape, k, filters, stride, dilation, padding) is reference.conv
        small = ((1, 101, 64), 11, 128, 2, 1, "same")
        assert _pick(*small) is gemm1d.conv_unfold
        for dtype in (torch.float64, torch.bfloat16, torch.float16):
            assert _pick(*small, dtype=dtype) is reference.conv
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert _pick(*small) is reference.conv
        with kernel_choice("reference"):
            assert _pick(*small) is reference.conv
        monkeypatch.setattr(gemm1d, "SMALL_FORWARD", False)
        assert _pick(*small) is reference.conv
        monkeypatch.setattr(gemm1d, "SMALL_FORWARD", True)
        monkeypatch.setattr(gemm1d, "ENABLED", False)
        assert _pick(*small) is reference.conv
        monkeypatch.setattr(gemm1d, "ENABLED", True)
        x = torch.zeros(1, 101, 64)
        w = torch.zeros(11, 32, 128)
        assert F._pick_conv_kernel(x, w, (2,), ((5, 5),), 2, True, (1,)) is reference.conv
    assert _pick(*small, grad=True) is reference.conv  # autograd: the reference's backward


def test_tracing_and_export_record_standard_ops():
    """torch.jit.trace and torch.export of a batch-1 Conv1D record torch's convolution."""
    layer = sepconv.Conv1D(128, 11, strides=2, padding="same", input_shape=(None, 64))
    x = torch.randn(1, 101, 64)
    with torch.no_grad():
        want = layer(x)
        traced = torch.jit.trace(layer, x, check_trace=False)
    assert "aten::_convolution" in str(traced.graph)
    exported = torch.export.export(layer, (x,))
    targets = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert any("conv" in t for t in targets) and not any("mm" in t for t in targets), targets
    with torch.no_grad():
        torch.testing.assert_close(traced(x), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(exported.module()(x), want, rtol=1e-5, atol=1e-5)


# -- against tf-keras -------------------------------------------------------------------------

pytest.importorskip("tf_keras")
from test_parity_conv_tfkeras import tf_reference  # noqa: E402


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("kw,shape", [
    (dict(filters=128, kernel_size=11, strides=2, padding="same"), (1, 101, 64)),
    (dict(filters=32, kernel_size=2, padding="causal", dilation_rate=8), (1, 4000, 32)),
    (dict(filters=32, kernel_size=2, padding="causal", dilation_rate=64), (1, 4000, 32)),
    (dict(filters=64, kernel_size=5, padding="same", activation="relu"), (1, 50, 64))])
def test_batch1_conv1d_matches_tf_keras(kw, shape, channels_last):
    """A Conv1D layer at batch 1 in inference (the GEMM forward ran) equals tf-keras 2.21's
    output within the parity tests' float32 tolerance (1e-5 of scale)."""
    fmt = "channels_last" if channels_last else "channels_first"
    layer = sepconv.Conv1D(data_format=fmt, **kw)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype("float32")
    if not channels_last:
        x = np.ascontiguousarray(x.transpose(0, 2, 1))
    with torch.no_grad():
        layer(torch.from_numpy(x))  # builds it
    layer.set_weights([rng.standard_normal(w.shape).astype("float32") * 0.1
                       for w in layer.get_weights()])
    ran = []
    real = gemm1d.gemm_forward
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gemm1d, "gemm_forward", lambda *a, **k: ran.append(1) or real(*a, **k))
        with torch.inference_mode():
            y = layer(torch.from_numpy(x)).numpy()
    assert ran
    y_tf, _ = tf_reference(layer, x, np.ones(y.shape, "float32"))
    scale = max(1.0, float(np.abs(y_tf).max()))
    np.testing.assert_allclose(y / scale, y_tf / scale, atol=1e-5, rtol=1e-5)
