"""``kernels/kstride.py``: transposed convolutions whose kernel equals their stride as one
GEMM and a pixel shuffle.

- the kernel itself, called directly, against the reference kernel (oneDNN and autograd,
  no kstride code) over drawn geometries: rank 1-3, both data formats, kernel == stride
  per axis (1-4), bias or none, any subset of gradients, non-contiguous inputs, float64
  (to rounding) and float32 (1e-5 of scale);
- float64 gradcheck and gradgradcheck (double backward);
- through the public layers where the rule picks it (channels_last while autograd
  records, channels_first in inference): the new path ran, and output and every
  gradient equal tf-keras 2.21's and today's path (``kstride.ENABLED = False``);
- the rule: where it is taken and where not.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sepconv
from sepconv import functional as F
from sepconv.kernels import kstride, reference
from kernel_env import kernel_choice, run_with_grads

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
NODE = "_KernelStrideBackward"


def _geometry(x_spatial, ksize, channels_last):
    rank = len(ksize)
    return dict(strides=tuple(ksize), dilation=(1,) * rank, pads=((0, 0),) * rank,
                out_spatial=tuple(n * k for n, k in zip(x_spatial, ksize)),
                channels_last=channels_last)


@st.composite
def cases(draw):
    rank = draw(st.integers(1, 3))
    return dict(rank=rank, ksize=tuple(draw(st.integers(1, 4)) for _ in range(rank)),
                spatial=tuple(draw(st.integers(1, 5)) for _ in range(rank)),
                channels_last=draw(st.booleans()),
                channels=draw(st.sampled_from([1, 3, 8])),
                filters=draw(st.sampled_from([1, 4, 5])), batch=draw(st.integers(1, 3)),
                bias=draw(st.booleans()), strided_view=draw(st.booleans()),
                needs=draw(st.sampled_from(["all", "x", "kernel", "bias"])),
                seed=draw(st.integers(0, 2 ** 31 - 1)))


def _tensors(case, dtype):
    g = torch.Generator().manual_seed(case["seed"])
    c, sp = case["channels"], case["spatial"]
    shape = (case["batch"], *sp, c) if case["channels_last"] else (case["batch"], c, *sp)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    if case["strided_view"]:  # a non-contiguous view of the same values
        x = torch.stack([x, x], dim=-1)[..., 0]
    w = torch.randn(*case["ksize"], case["filters"], c, generator=g, dtype=torch.float64)
    b = torch.randn(case["filters"], generator=g, dtype=torch.float64) \
        if case["bias"] else None
    return [None if t is None else t.to(dtype) for t in (x, w, b)]


@SETTINGS
@given(cases(), st.sampled_from(["float64", "float32"]))
def test_kernel_matches_the_reference(case, dtype):
    """Output and the asked gradients equal the reference kernel's on the same inputs."""
    dtype = getattr(torch, dtype)
    x, w, b = _tensors(case, dtype)
    geometry = _geometry(case["spatial"], case["ksize"], case["channels_last"])
    y, got = run_with_grads(kstride.conv_transpose, case["needs"], x, w, b, **geometry)
    assert y.grad_fn.name() == NODE  # the new backward ran, not the reference's
    _, want = run_with_grads(reference.conv_transpose, case["needs"], x, w, b, **geometry)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else \
        dict(rtol=1e-12, atol=1e-12)
    assert len(got) == len(want)
    for g, r in zip(got, want):
        assert g.shape == r.shape and g.dtype == r.dtype == dtype
        scale = max(1.0, r.double().abs().max().item())
        torch.testing.assert_close(g.double() / scale, r.double() / scale, **tol)
    with torch.no_grad():  # inference: the GEMM forward (no autograd.Function)
        torch.testing.assert_close(kstride.conv_transpose(x, w, b, **geometry), got[0],
                                   **tol)


def test_gradcheck_and_gradgradcheck_float64():
    """Central differences through the new backward, and the double backward, for 1D
    channels_last, 2D channels_first (unequal kernel sides) and 3D channels_last."""
    g = torch.Generator().manual_seed(0)

    def t(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)

    for x_shape, ksize, last in (((2, 5, 3), (2,), True), ((2, 3, 3, 4), (2, 3), False),
                                 ((1, 2, 3, 2, 3), (2, 1, 2), True)):
        spatial = x_shape[1:-1] if last else x_shape[2:]
        geometry = _geometry(spatial, ksize, last)

        def fn(x, w, b):
            return kstride.conv_transpose(x, w, b, **geometry)
        inputs = (t(*x_shape), t(*ksize, 4, 3), t(4))
        assert fn(*inputs).grad_fn.name() == NODE
        assert torch.autograd.gradcheck(fn, inputs)
        assert torch.autograd.gradgradcheck(fn, inputs)


def test_refuses_other_geometries():
    x, w = torch.zeros(1, 4, 3), torch.zeros(2, 5, 3)
    with pytest.raises(ValueError, match="kernel equals their stride"):
        kstride.conv_transpose(x, w, None, strides=(2,), dilation=(1,), pads=((0, 0),),
                               out_spatial=(9,), channels_last=True)


# -- at the sizes the rule picks, through the layers, against tf-keras ------------------------

tf = pytest.importorskip("tensorflow")
pytest.importorskip("tf_keras")
from test_parity_conv_tfkeras import tf_reference  # noqa: E402

RULE_SETTINGS = settings(max_examples=10, deadline=None, derandomize=True,
                         suppress_health_check=[HealthCheck.too_slow])


def _layer_result(layer, x, g, train):
    """Output and gradients (input, kernel, bias) of a sepconv layer (the gradients of the
    reference path where ``train`` is False: the output is computed without autograd),
    and the backward node behind its output (``None`` in inference)."""
    xt = torch.from_numpy(x).requires_grad_(True)
    y = layer(xt)
    node = y.grad_fn.name()
    (y * torch.from_numpy(g)).sum().backward()
    grads = [xt.grad.numpy()] + [w.grad.numpy() for w in layer.weights]
    for w in layer.weights:
        w.grad = None
    if not train:
        with torch.no_grad():
            y, node = layer(torch.from_numpy(x)), None
    return y.detach().numpy(), grads, node


@RULE_SETTINGS
@given(rank=st.sampled_from([1, 2]), k=st.sampled_from([2, 4]),
       padding=st.sampled_from(["same", "valid"]), use_bias=st.booleans(),
       dtype=st.sampled_from(["float32", "float64"]), out_pad=st.booleans(),
       channels_first=st.booleans(), seed=st.integers(0, 100))
def test_layers_at_the_rules_sizes_match_tf_keras(rank, k, padding, use_bias, dtype,
                                                  out_pad, channels_first, seed):
    """Conv1DTranspose / Conv2DTranspose with kernel_size == strides (U-Net's 2x2, audio
    k = s upsamplers; "valid" with ``output_padding=0`` or None): the rule picks the GEMM path
    (channels_last: the backward; channels_first: the inference forward), and output and
    all gradients equal tf-keras' and today's path."""
    cls = sepconv.Conv1DTranspose if rank == 1 else sepconv.Conv2DTranspose
    fmt = "channels_first" if channels_first else "channels_last"
    out_pad = 0 if out_pad and padding == "valid" else None  # "same": 0 shortens it
    layer = cls(8, k, strides=k, padding=padding, output_padding=out_pad,
                use_bias=use_bias, data_format=fmt, dtype=dtype)
    rng = np.random.default_rng(seed)
    spatial = (7, 5)[:rank] if rank == 2 else (11,)
    shape = (2, 6, *spatial) if channels_first else (2, *spatial, 6)
    x = rng.standard_normal(shape).astype(dtype)
    with torch.no_grad():
        out_shape = layer(torch.from_numpy(x)).shape  # builds it
    layer.set_weights([rng.standard_normal(w.shape).astype(dtype) * 0.5
                       for w in layer.get_weights()])
    g = rng.standard_normal(out_shape).astype(dtype)
    train = not channels_first
    y, grads, ran = _layer_result(layer, x, g, train)
    if train:
        assert ran == NODE
    else:  # the inference forward is kstride's GEMM; see it was picked
        with torch.no_grad():
            assert kstride.takes(torch.from_numpy(x), layer.kernel, layer.strides,
                                 (1,) * rank, ((0, 0),) * rank,
                                 tuple(n * k for n in spatial), False)
    y_tf, grads_tf = tf_reference(layer, x, g)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kstride, "ENABLED", False)
        y_ref, grads_ref, ran_ref = _layer_result(layer, x, g, train)
    assert ran_ref != NODE
    tol = 1e-5 if x.dtype == np.float32 else 1e-10
    for got, want_tf, want_ref in zip([y] + grads, [y_tf] + grads_tf, [y_ref] + grads_ref):
        assert got.shape == want_tf.shape == want_ref.shape
        scale = max(1.0, float(np.abs(want_tf).max()))
        np.testing.assert_allclose(got / scale, want_tf / scale, atol=tol, rtol=tol)
        np.testing.assert_allclose(got / scale, want_ref / scale, atol=tol, rtol=tol)


def test_unet_sized_layer_matches_tf_keras_float32():
    """A U-Net decoder's 2x2 upsampler at a real size (4x32x32x128 -> 64, channels_last,
    float32): the GEMM backward ran, and output and gradients equal tf-keras' at 1e-5 of
    scale."""
    layer = sepconv.Conv2DTranspose(64, 2, strides=2, padding="same")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 32, 32, 128)).astype("float32")
    layer(torch.from_numpy(x[:1]))
    layer.set_weights([rng.standard_normal(w.shape).astype("float32") * 0.1
                       for w in layer.get_weights()])
    g = rng.standard_normal((4, 64, 64, 64)).astype("float32")
    y, grads, ran = _layer_result(layer, x, g, True)
    assert ran == NODE
    y_tf, grads_tf = tf_reference(layer, x, g)
    for got, want in zip([y] + grads, [y_tf] + grads_tf):
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got / scale, want / scale, atol=1e-5, rtol=1e-5)


# -- the rule -----------------------------------------------------------------------------

def _node(shape=(2, 8, 8, 16), k=2, stride=2, filters=4, channels_last=True, grad=True,
          dtype=torch.float32, padding="valid", output_padding=None, dilation=1):
    x = torch.zeros(shape, dtype=dtype, requires_grad=grad)
    rank = len(shape) - 2
    c = shape[-1] if channels_last else shape[1]
    w = torch.zeros(*(k,) * rank, filters, c, dtype=dtype, requires_grad=grad)
    y = F.conv_transpose(x, w, None, strides=stride, padding=padding,
                         output_padding=output_padding, dilation_rate=dilation,
                         data_format="channels_last" if channels_last
                         else "channels_first")
    return y.grad_fn.name() if y.grad_fn is not None else None


def _inference_taken(shape=(2, 16, 8, 8), k=2, channels_last=False):
    rank = len(shape) - 2
    c = shape[-1] if channels_last else shape[1]
    spatial = shape[1:-1] if channels_last else shape[2:]
    return kstride.takes(torch.zeros(shape), torch.zeros(*(k,) * rank, 4, c), (k,) * rank,
                         (1,) * rank, ((0, 0),) * rank, tuple(n * k for n in spatial),
                         channels_last)


def test_rule(monkeypatch):
    """The GEMM backward for kernel == stride (>= 2), dilation 1, no cropping, float32 /
    float64, channels_last 1D / 2D while autograd records; the GEMM forward for
    channels_first 1D / 2D in inference; the reference (or gemm1d) elsewhere."""
    assert _node() == NODE
    assert _node(dtype=torch.float64, padding="same") == NODE
    assert _node(output_padding=0) == NODE
    assert _node(shape=(2, 50, 16), k=4, stride=4) == NODE
    for kw in (dict(dtype=torch.bfloat16), dict(k=3), dict(k=1, stride=1),
               dict(output_padding=1), dict(channels_last=False, shape=(2, 16, 8, 8)),
               dict(shape=(2, 4, 4, 4, 16))):
        assert _node(**kw) != NODE, kw
    assert _node(grad=False) is None
    assert _inference_taken() and _inference_taken(shape=(2, 16, 9), k=4)
    assert not _inference_taken(shape=(2, 8, 8, 16), channels_last=True)
    with torch.no_grad():  # no autograd: channels_last keeps oneDNN's forward
        assert not kstride.takes(torch.zeros(2, 8, 8, 16), torch.zeros(2, 2, 4, 16),
                                 (2, 2), (1, 1), ((0, 0), (0, 0)), (16, 16), True)
    monkeypatch.setattr(kstride, "ENABLED", False)
    assert _node() != NODE and not _inference_taken()
    monkeypatch.setattr(kstride, "ENABLED", True)
    with kernel_choice("reference"):
        assert _node() != NODE


def test_tracing_and_export_record_standard_ops():
    """torch.jit.trace and torch.export of a layer the rule would pick record torch's
    transposed convolution, not the autograd.Function (whose backward is Python)."""
    up = sepconv.Conv2DTranspose(8, 2, strides=2)
    x = torch.randn(1, 6, 6, 4)
    assert up(x).grad_fn.name() == NODE  # the parameters require grad
    traced = torch.jit.trace(up, x, check_trace=False)
    assert "PythonOp" not in str(traced.graph)
    torch.testing.assert_close(traced(x), up(x))
    exported = torch.export.export(up, (x,))
    targets = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert not any("KernelStride" in t or "higher_order" in t for t in targets), targets
    torch.testing.assert_close(exported.module()(x), up(x))
