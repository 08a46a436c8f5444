"""``DepthwiseConv1D``, ``DepthwiseConv2D``, ``SeparableConv2D`` and the functional ops
``depthwise_conv`` / ``separable_conv2d``: against numpy loops (no sepconv code), finite
differences (gradcheck) and Keras 3 (torch backend); tf-keras parity is in
test_parity_depthwise_tfkeras.py.
"""

from __future__ import annotations

import inspect
import itertools
import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sepconv
from sepconv import functional as F
from kernel_env import kernel_choice
from numpy_reference import tf_pads

pytestmark = [pytest.mark.usefixtures("torch_single_thread"),
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
CLASSES = ["DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv2D"]
RANK = {"DepthwiseConv1D": 1, "DepthwiseConv2D": 2, "SeparableConv2D": 2}


# -- numpy reference: loops over output positions, TensorFlow's padding written out ------

def np_depthwise(x, dw, bias, strides, padding, dilation, channels_last=True):
    """float64 loops; x channels_last ``(batch, *spatial, C)``, dw ``(*k, C, M)``."""
    if not channels_last:
        x = np.moveaxis(x, 1, -1)
    rank = dw.ndim - 2
    *ks, c, m = dw.shape
    pads = [tf_pads(n, k, s, d, padding)
            for n, k, s, d in zip(x.shape[1:-1], ks, strides, dilation)]
    xp = np.pad(x.astype(np.float64), [(0, 0)] + pads + [(0, 0)])
    outs = [(xp.shape[1 + i] - ((ks[i] - 1) * dilation[i] + 1)) // strides[i] + 1
            for i in range(rank)]
    y = np.zeros((x.shape[0], *outs, c * m))
    for pos in itertools.product(*[range(o) for o in outs]):
        for tap in itertools.product(*[range(k) for k in ks]):
            idx = tuple(p * s + t * d for p, s, t, d in zip(pos, strides, tap, dilation))
            patch = xp[(slice(None),) + idx]  # (batch, C)
            w = dw[tap]  # (C, M)
            y[(slice(None),) + pos] += (patch[:, :, None] * w[None]).reshape(x.shape[0], -1)
    if bias is not None:
        y += bias
    return y if channels_last else np.moveaxis(y, -1, 1)


def np_separable(x, dw, pw, bias, strides, padding, dilation, channels_last=True):
    z = np_depthwise(x, dw, None, strides, padding, dilation, True if channels_last else False)
    if not channels_last:
        z = np.moveaxis(z, 1, -1)
    y = z @ pw.reshape(pw.shape[-2], pw.shape[-1])
    if bias is not None:
        y = y + bias
    return y if channels_last else np.moveaxis(y, -1, 1)


@st.composite
def op_cases(draw, ranks=(1, 2, 3)):
    rank = draw(st.sampled_from(ranks))
    ks = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    if draw(st.booleans()):
        strides, dilation = tuple(draw(st.integers(1, 3)) for _ in range(rank)), (1,) * rank
    else:
        strides, dilation = (1,) * rank, tuple(draw(st.integers(1, 3)) for _ in range(rank))
    pads = ["valid", "same"] + (["causal"] if rank == 1 else [])
    padding = draw(st.sampled_from(pads))
    spatial = tuple(draw(st.integers((k - 1) * d + 1 if padding == "valid" else 1,
                                     (k - 1) * d + 5)) for k, d in zip(ks, dilation))
    return dict(rank=rank, ks=ks, strides=strides, dilation=dilation, padding=padding,
                spatial=spatial, channels=draw(st.integers(1, 3)),
                m=draw(st.integers(1, 3)), filters=draw(st.integers(1, 3)),
                bias=draw(st.booleans()), channels_last=draw(st.booleans()),
                seed=draw(st.integers(0, 2**31 - 1)))


def _op_inputs(case):
    rng = np.random.default_rng(case["seed"])
    c, m = case["channels"], case["m"]
    shape = ((2,) + case["spatial"] + (c,) if case["channels_last"]
             else (2, c) + case["spatial"])
    x = rng.standard_normal(shape)
    dw = rng.standard_normal(case["ks"] + (c, m))
    pw = rng.standard_normal((1,) * case["rank"] + (c * m, case["filters"]))
    b_dw = rng.standard_normal(c * m) if case["bias"] else None
    b_pw = rng.standard_normal(case["filters"]) if case["bias"] else None
    return x, dw, pw, b_dw, b_pw


def _t(a):
    return None if a is None else torch.from_numpy(a)


@SETTINGS
@given(op_cases())
def test_depthwise_conv_matches_numpy_loops(case):
    x, dw, _, b, _ = _op_inputs(case)
    fmt = "channels_last" if case["channels_last"] else "channels_first"
    y = F.depthwise_conv(_t(x), _t(dw), _t(b), strides=case["strides"],
                         padding=case["padding"], dilation_rate=case["dilation"],
                         data_format=fmt)
    want = np_depthwise(x, dw, b, case["strides"], case["padding"], case["dilation"],
                        case["channels_last"])
    assert tuple(y.shape) == want.shape
    np.testing.assert_allclose(y.numpy(), want, atol=1e-12, rtol=1e-12)


@SETTINGS
@given(op_cases(ranks=(2,)))
def test_separable_conv2d_matches_numpy_loops(case):
    x, dw, pw, _, b = _op_inputs(case)
    fmt = "channels_last" if case["channels_last"] else "channels_first"
    y = F.separable_conv2d(_t(x), _t(dw), _t(pw), _t(b), strides=case["strides"],
                           padding=case["padding"], dilation_rate=case["dilation"],
                           data_format=fmt)
    want = np_separable(x, dw, pw, b, case["strides"], case["padding"], case["dilation"],
                        case["channels_last"])
    np.testing.assert_allclose(y.numpy(), want, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("geometry", [
    # (spatial, kernel, strides, dilation, padding): 1 channel, length-1 strided outputs
    ((9, 5), (4, 4), (1, 2), (1, 1), "valid"), ((4, 7), (4, 2), (2, 3), (1, 1), "valid"),
    ((1, 1), (3, 3), (2, 2), (1, 1), "same"), ((5, 6), (2, 3), (1, 1), (2, 2), "same"),
    ((7,), (3,), (2,), (1,), "causal"), ((1,), (2,), (3,), (1,), "same"),
])
def test_gradcheck_float64_one_channel_and_length_one_outputs(fmt, geometry):
    spatial, ks, strides, dilation, padding = geometry
    rank = len(spatial)
    rng = np.random.default_rng(0)
    for c, m in [(1, 1), (1, 2), (2, 3)]:
        shape = (2,) + spatial + (c,) if fmt == "channels_last" else (2, c) + spatial
        x = torch.from_numpy(rng.standard_normal(shape)).requires_grad_(True)
        dw = torch.from_numpy(rng.standard_normal(ks + (c, m))).requires_grad_(True)
        b = torch.from_numpy(rng.standard_normal(c * m)).requires_grad_(True)
        kw = dict(strides=strides, padding=padding, dilation_rate=dilation, data_format=fmt)
        assert torch.autograd.gradcheck(lambda *a: F.depthwise_conv(*a, **kw), (x, dw, b))
        # The trap of the issue: channels_last memory read as channels_first, 1 channel.
        if fmt == "channels_first":
            x_cl = x.detach().movedim(1, -1).contiguous().movedim(-1, 1)
            want = np_depthwise(x.detach().numpy(), dw.detach().numpy(), b.detach().numpy(),
                                strides, padding, dilation, channels_last=False)
            np.testing.assert_allclose(F.depthwise_conv(x_cl, dw, b, **kw).detach().numpy(),
                                       want, atol=1e-12)
        if rank == 2:
            pw = torch.from_numpy(rng.standard_normal((1, 1, c * m, 2))).requires_grad_(True)
            b2 = torch.from_numpy(rng.standard_normal(2)).requires_grad_(True)
            assert torch.autograd.gradcheck(lambda *a: F.separable_conv2d(*a, **kw),
                                            (x, dw, pw, b2))


def test_functional_errors_name_the_argument():
    x, dw = torch.zeros(1, 6, 6, 3), torch.zeros(3, 3, 3, 2)
    pw = torch.zeros(1, 1, 6, 4)
    cases = [
        (dict(padding="full"), "padding"), (dict(padding="causal"), "padding"),
        (dict(data_format="nhwc"), "data_format"), (dict(strides=0), "strides"),
        (dict(strides=(1, 2, 3)), "strides"), (dict(strides=2, dilation_rate=(1, 2)),
                                               "dilation_rate"),
    ]
    for kwargs, argument in cases:
        with pytest.raises(ValueError, match=argument):
            F.depthwise_conv(x, dw, **kwargs)
        with pytest.raises(ValueError, match=argument):
            F.separable_conv2d(x, dw, pw, **kwargs)
    with pytest.raises(ValueError, match=r"4 channels.*expects 3"):
        F.depthwise_conv(torch.zeros(1, 6, 6, 4), dw)
    with pytest.raises(ValueError, match="bias"):
        F.depthwise_conv(x, dw, torch.zeros(5))
    with pytest.raises(ValueError, match="too small"):
        F.depthwise_conv(torch.zeros(1, 2, 6, 3), dw)
    with pytest.raises(ValueError, match="channels \\* depth_multiplier = 6"):
        F.separable_conv2d(x, dw, torch.zeros(1, 1, 5, 4))
    with pytest.raises(ValueError, match="pointwise_kernel"):
        F.separable_conv2d(x, dw, torch.zeros(6, 4))
    with pytest.raises(ValueError, match="depthwise kernel"):
        F.depthwise_conv(x, torch.zeros(3, 3))
    # causal is rank 1 only, as for conv
    y = F.depthwise_conv(torch.ones(1, 4, 1), torch.ones(2, 1, 1), padding="causal")
    np.testing.assert_array_equal(y[0, :, 0].numpy(), [1, 2, 2, 2])


# -- layers -------------------------------------------------------------------------------

def _make(cls_name, **kwargs):
    if cls_name == "SeparableConv2D":
        kwargs.setdefault("filters", 4)
    return getattr(sepconv, cls_name)(**kwargs)


def _np_layer(layer, x):
    w = layer.get_weights()
    rank = layer.RANK
    fmt_last = layer.data_format == "channels_last"
    if layer._SEPARABLE:
        y = np_separable(x, w[0], w[1], w[2] if layer.use_bias else None, layer.strides,
                         layer.padding, layer.dilation_rate, fmt_last)
    else:
        y = np_depthwise(x, w[0], w[1] if layer.use_bias else None, layer.strides,
                         layer.padding, layer.dilation_rate, fmt_last)
    assert y.ndim == rank + 2
    return y


BAD = [
    (dict(kernel_size=(3, 3, 3)), ValueError, "kernel_size", "(3, 3, 3)"),
    (dict(kernel_size=0), ValueError, "kernel_size", "0"),
    (dict(kernel_size=2.5), ValueError, "kernel_size", "2.5"),
    (dict(strides=(1, 0)), ValueError, "strides", "0"),
    (dict(padding="causal"), ValueError, "padding", "'causal'"),
    (dict(padding="full"), ValueError, "padding", "'full'"),
    (dict(padding=1), TypeError, "padding", "1"),
    (dict(data_format="nhwc"), ValueError, "data_format", "'nhwc'"),
    (dict(depth_multiplier=0), ValueError, "depth_multiplier", "0"),
    (dict(depth_multiplier=1.5), ValueError, "depth_multiplier", "1.5"),
    (dict(strides=2, dilation_rate=(1, 2)), ValueError, "dilation_rate", "(1, 2)"),
    (dict(activation="nope"), ValueError, "activation", "'nope'"),
    (dict(use_bias="yes"), TypeError, "use_bias", "'yes'"),
    (dict(depthwise_initializer="nope"), ValueError, "depthwise_initializer", "'nope'"),
    (dict(depthwise_initializer=None), ValueError, "depthwise_initializer", "None"),
    (dict(bias_initializer=5), TypeError, "bias_initializer", "5"),
    (dict(depthwise_regularizer="l3"), ValueError, "depthwise_regularizer", "'l3'"),
    (dict(bias_constraint="nope"), ValueError, "bias_constraint", "'nope'"),
    (dict(input_shape=(5, 5)), ValueError, "input_shape", "(5, 5)"),
    (dict(input_shape=(None, None, 0)), ValueError, "input_shape", "0"),
    (dict(input_shape=(2, 9, 3)), ValueError, "input_shape", "(2, 9, 3)"),
    (dict(batch_input_shape=(4, 2, 9, 3)), ValueError, "batch_input_shape", "(4, 2, 9, 3)"),
    (dict(dtype="int32"), ValueError, "dtype", "'int32'"),
]


@pytest.mark.parametrize("cls_name", ["DepthwiseConv2D", "SeparableConv2D"])
@pytest.mark.parametrize("kwargs,error,argument,value", BAD,
                         ids=[f"{a}={v}" for _, _, a, v in BAD])
def test_invalid_arguments_raise_at_construction(cls_name, kwargs, error, argument, value):
    kwargs = dict(dict(kernel_size=3), **kwargs)
    with pytest.raises(error) as info:
        _make(cls_name, **kwargs)
    assert argument in str(info.value) and value in str(info.value), str(info.value)


def test_separable2d_specific_errors():
    for kwargs, argument, value in [(dict(filters=0), "filters", "0"),
                                    (dict(filters=2.5), "filters", "2.5"),
                                    (dict(pointwise_initializer="nope"),
                                     "pointwise_initializer", "'nope'"),
                                    (dict(pointwise_constraint="nope"),
                                     "pointwise_constraint", "'nope'")]:
        with pytest.raises((ValueError, TypeError)) as info:
            sepconv.SeparableConv2D(**dict(dict(filters=2, kernel_size=3), **kwargs))
        assert argument in str(info.value) and value in str(info.value)
    with pytest.raises(TypeError, match="filters"):
        sepconv.SeparableConv2D(None, 3)
    # DepthwiseConv has no filters argument, as in Keras.
    with pytest.raises(TypeError):
        sepconv.DepthwiseConv2D(3, filters=2)


@pytest.mark.parametrize("cls_name", CLASSES)
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_layer_forward_matches_numpy_and_shapes(cls_name, fmt):
    rank = RANK[cls_name]
    rng = np.random.default_rng(1)
    for ks, strides, dil, pad in [(3, 1, 1, "same"), (2, 2, 1, "valid"), (3, 1, 2, "valid"),
                                  ((2, 3)[:rank], (1, 2)[:rank], 1, "same")]:
        layer = _make(cls_name, kernel_size=ks, strides=strides, dilation_rate=dil,
                      padding=pad, data_format=fmt, depth_multiplier=2, dtype="float64")
        shape = (2,) + (7,) * rank + (3,) if fmt == "channels_last" else (2, 3) + (7,) * rank
        x = rng.standard_normal(shape)
        y = layer(x)  # lazy build from a numpy array
        layer.set_weights([rng.standard_normal(w.shape) for w in layer.get_weights()])
        y = layer(x)
        np.testing.assert_allclose(y.detach().numpy(), _np_layer(layer, x), atol=1e-12)
        assert layer.compute_output_shape(shape) == tuple(y.shape)
        none = tuple(None if i not in (0, layer._channels_axis % (rank + 2)) else n
                     for i, n in enumerate(shape))
        out = layer.compute_output_shape(none)
        assert [n is None for n in out] == [n is None for n in none]


@pytest.mark.parametrize("cls_name", CLASSES)
def test_lazy_build_wrong_input_and_state_dict(cls_name):
    rank = RANK[cls_name]
    layer = _make(cls_name, kernel_size=3, padding="same", depth_multiplier=2)
    assert not layer.built and "?" in repr(layer)
    x = torch.randn((2,) + (5,) * rank + (3,))
    y = layer(x)
    assert layer.built and layer.input_channels == 3
    with pytest.raises(ValueError, match=re.escape(str((2,) + (5,) * rank + (4,)))):
        layer(torch.randn((2,) + (5,) * rank + (4,)))
    with pytest.raises(ValueError, match="rank"):
        layer(torch.randn((2,) + (5,) * (rank + 1) + (3,)))
    fresh = _make(cls_name, kernel_size=3, padding="same", depth_multiplier=2)
    fresh.load_state_dict(layer.state_dict())  # builds from the saved shapes
    assert torch.equal(fresh(x), y)
    names = [n for n, _ in layer.named_parameters()]
    assert names == list(layer.WEIGHT_NAMES)


@pytest.mark.parametrize("cls_name", CLASSES)
def test_config_round_trip_and_registry(cls_name):
    rank = RANK[cls_name]
    layer = _make(cls_name, kernel_size=(3, 2)[:rank], strides=2, padding="SAME",
                  depth_multiplier=3, activation="relu", use_bias=False,
                  depthwise_regularizer="l2", depthwise_constraint="non_neg",
                  input_shape=(None,) * rank + (2,), dtype="float64", name=f"rt_{cls_name}")
    config = layer.get_config()
    assert config["padding"] == "same" and config["strides"] == (2,) * rank
    again = sepconv.layers.base.get_layer_class(cls_name).from_config(
        dict(config, name=f"rt2_{cls_name}"))
    assert again.get_config() == dict(config, name=f"rt2_{cls_name}")
    again.set_weights(layer.get_weights())
    x = torch.randn((2,) + (6,) * rank + (2,), dtype=torch.float64)
    assert torch.equal(layer(x), again(x))


@pytest.mark.parametrize("cls_name", CLASSES)
def test_trainable_false_and_constraints(cls_name):
    rank = RANK[cls_name]
    layer = _make(cls_name, kernel_size=3, trainable=False, input_shape=(None,) * rank + (2,))
    assert all(not p.requires_grad for p in layer.parameters())
    layer = _make(cls_name, kernel_size=3, depthwise_constraint="non_neg",
                  input_shape=(None,) * rank + (2,))
    opt = torch.optim.SGD(layer.parameters(), lr=10.0)
    layer(torch.randn((2,) + (5,) * rank + (2,))).square().sum().backward()
    opt.step()
    assert (layer.depthwise_kernel >= 0).all()


def test_extra_repr():
    layer = sepconv.DepthwiseConv2D((3, 5), strides=(1, 2), padding="same",
                                    depth_multiplier=2, data_format="channels_first",
                                    use_bias=False, input_shape=(3, None, None),
                                    name="dw_repr")
    text = repr(layer)
    for part in ["DepthwiseConv2D(3, kernel_size=(3, 5)", "strides=(1, 2)",
                 "padding='same'", "depth_multiplier=2", "data_format='channels_first'",
                 "use_bias=False", "name='dw_repr'"]:
        assert part in text, text
    assert repr(sepconv.SeparableConv2D(8, 3)).startswith("SeparableConv2D(?, 8, kernel")


@pytest.mark.parametrize("dtype,tol", [("mixed_float16", 3e-3), ("mixed_bfloat16", 3e-2),
                                       ("float16", 3e-3), ("bfloat16", 3e-2)])
def test_half_precision_policies(dtype, tol):
    for cls_name in CLASSES:
        rank = RANK[cls_name]
        layer = _make(cls_name, kernel_size=3, padding="same", dtype=dtype,
                      input_shape=(None,) * rank + (3,))
        ref = _make(cls_name, kernel_size=3, padding="same", dtype="float64",
                    input_shape=(None,) * rank + (3,))
        ref.set_weights(layer.get_weights())
        x = np.random.default_rng(0).standard_normal((2,) + (5,) * rank + (3,))
        y = layer(x)
        assert y.dtype == layer.compute_dtype
        np.testing.assert_allclose(y.detach().double().numpy(), ref(x).detach().numpy(),
                                   atol=tol, rtol=tol)


# -- R functions --------------------------------------------------------------------------

def test_r_functions_coerce_doubles_and_compose():
    model = torch.nn.Sequential()
    out = sepconv.layer_separable_conv_2d(model, filters=8.0, kernel_size=[3.0, 3.0],
                                          strides=[2.0, 1.0], depth_multiplier=2.0,
                                          padding="same", input_shape=[None, None, 3.0])
    assert out is model and isinstance(model[0], sepconv.SeparableConv2D)
    assert (model[0].filters, model[0].kernel_size, model[0].strides) == (8, (3, 3), (2, 1))
    sepconv.layer_depthwise_conv_2d(model, kernel_size=3.0, depth_multiplier=2.0)
    layer = sepconv.layer_depthwise_conv_1d(kernel_size=5.0, dilation_rate=2.0)
    assert isinstance(layer, sepconv.DepthwiseConv1D) and layer.dilation_rate == (2,)
    y = sepconv.layer_depthwise_conv_1d(np.zeros((2, 9, 3)), kernel_size=3.0)
    assert tuple(y.shape) == (2, 7, 3) and y.dtype == torch.float32
    assert tuple(model(torch.zeros(1, 8, 8, 3)).shape) == (1, 2, 6, 16)
    with pytest.raises(ValueError, match="kernel_size"):
        sepconv.layer_depthwise_conv_2d(kernel_size=2.5)
    with pytest.raises(ValueError, match="kernel_size"):
        sepconv.layer_depthwise_conv_2d()
    for name in ["layer_depthwise_conv_1d", "layer_depthwise_conv_2d",
                 "layer_separable_conv_2d"]:
        assert name in sepconv.__all__
        assert list(inspect.signature(getattr(sepconv, name)).parameters)[0] == "object"


# -- Keras 3 ------------------------------------------------------------------------------

@st.composite
def keras3_cases(draw, cls_name):
    rank = RANK[cls_name]
    ks = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    if draw(st.booleans()):
        strides, dil = tuple(draw(st.integers(1, 3)) for _ in range(rank)), (1,) * rank
    else:
        strides, dil = (1,) * rank, tuple(draw(st.integers(1, 2)) for _ in range(rank))
    padding = draw(st.sampled_from(["valid", "same"]))
    spatial = tuple(draw(st.integers((k - 1) * d + 1 if padding == "valid" else 1,
                                     (k - 1) * d + 4)) for k, d in zip(ks, dil))
    args = dict(kernel_size=ks, strides=strides, dilation_rate=dil, padding=padding,
                depth_multiplier=draw(st.integers(1, 3)), use_bias=draw(st.booleans()),
                activation=draw(st.sampled_from([None, "relu", "tanh", "softmax"])),
                data_format=draw(st.sampled_from(["channels_last", "channels_first"])))
    if cls_name == "SeparableConv2D":
        args["filters"] = draw(st.integers(1, 4))
    return args, spatial, draw(st.integers(1, 3)), draw(st.integers(0, 2**31 - 1))


@pytest.mark.parametrize("cls_name", CLASSES)
def test_forward_gradients_and_config_keys_match_keras3(cls_name):
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":  # pragma: no cover - conftest sets it
        pytest.skip("Keras 3 must run on the torch backend")

    @settings(max_examples=25, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(keras3_cases(cls_name))
    def check(case):
        args, spatial, c, seed = case
        rng = np.random.default_rng(seed)
        layer = getattr(sepconv, cls_name)(**args)
        shape = ((2,) + spatial + (c,) if args["data_format"] == "channels_last"
                 else (2, c) + spatial)
        x = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
        layer(x)
        layer.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.5
                           for w in layer.get_weights()])
        config = {k: v for k, v in layer.get_config().items()
                  if k not in ("groups", "name")}
        ref = getattr(keras.layers, cls_name).from_config(config)
        ref.build(shape)
        ref.set_weights(layer.get_weights())
        assert set(layer.get_config()) - {"groups"} == set(ref.get_config())
        r = torch.from_numpy(rng.standard_normal(layer.compute_output_shape(shape))
                             .astype(np.float32))

        def run(module, weights):
            xg = x.clone().requires_grad_(True)
            y = module(xg)
            return y.detach(), torch.autograd.grad((y * r).sum(), [xg] + weights)

        y, grads = run(layer, layer.weights)
        ref_y, ref_grads = run(ref, [v.value for v in ref.trainable_weights])
        assert tuple(y.shape) == tuple(ref_y.shape) == tuple(ref.compute_output_shape(shape))
        np.testing.assert_allclose(y.numpy(), ref_y.numpy(), atol=1e-5, rtol=1e-5)
        for got, want in zip(grads, ref_grads):
            np.testing.assert_allclose(got.numpy(), want.detach().numpy(), atol=3e-5,
                                       rtol=1e-4)

    check()


# -- the channels_last CPU depthwise kernel against the reference ---------------------------

@SETTINGS
@given(op_cases(ranks=(1, 2)), st.sampled_from(["float32", "float64", "bfloat16"]),
       st.booleans())
def test_channels_last_depthwise_kernel_matches_reference(case, dtype, strided_view):
    """Forward and gradients of ``kernels/depthwise_cpu.py`` (what dispatch picks for CPU
    channels_last depthwise input with several channels) against the reference kernel, at
    the sizes dispatch picks it: length-1 axes and strided length-1 outputs included."""
    from sepconv.kernels import depthwise_cpu, reference

    case = dict(case, channels=max(2, case["channels"]), channels_last=True)
    x, dw, _, b, _ = _op_inputs(case)
    dtype = getattr(torch, dtype)
    x, dw = torch.from_numpy(x).to(dtype), torch.from_numpy(dw).to(dtype)
    b = None if b is None else torch.from_numpy(b).to(dtype)
    if strided_view:  # a non-contiguous view of the same values
        x = torch.cat([x, x], dim=-1)[..., ::2]
    kw = dict(strides=case["strides"], padding=case["padding"],
              dilation_rate=case["dilation"])
    assert F._pick_conv_kernel(x, dw.reshape(*dw.shape[:-2], 1, -1), case["strides"],
                               ((1, 1),) * case["rank"], x.shape[-1], True) \
        is depthwise_cpu.conv

    def run(force):
        inputs = [t.clone().requires_grad_(True) for t in (x, dw, b) if t is not None]
        with kernel_choice(force):
            y = F.depthwise_conv(*inputs, **kw) if b is not None else \
                F.depthwise_conv(*inputs, None, **kw)
        g = torch.from_numpy(np.random.default_rng(0).standard_normal(tuple(y.shape))).to(dtype)
        return [y] + list(torch.autograd.grad((y * g).sum(), inputs))

    tol = dict(atol=1e-12, rtol=1e-12) if dtype == torch.float64 else \
        dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=0.1, rtol=0.05)
    for got, want in zip(run(""), run("reference")):
        assert got.shape == want.shape and got.dtype == want.dtype
        torch.testing.assert_close(got, want, **tol)
    assert reference.conv is not depthwise_cpu.conv


@SETTINGS
@given(op_cases(ranks=(1, 2)), st.sampled_from(["float32", "float64", "bfloat16"]))
def test_inference_zero_taps_match_the_reference(case, dtype):
    """Without autograd the CPU depthwise kernel turns unequal padding into zero taps (no
    padded copy) where that is cheaper: its outputs equal the reference kernel's."""
    from sepconv.kernels import depthwise_cpu

    case = dict(case, channels=max(2, case["channels"]), channels_last=True)
    x, dw, _, b, _ = _op_inputs(case)
    dtype = getattr(torch, dtype)
    x, dw = torch.from_numpy(x).to(dtype), torch.from_numpy(dw).to(dtype)
    b = None if b is None else torch.from_numpy(b).to(dtype)
    kw = dict(strides=case["strides"], padding=case["padding"],
              dilation_rate=case["dilation"])
    with torch.no_grad():
        got = F.depthwise_conv(x, dw, b, **kw)
        with kernel_choice("reference"):
            want = F.depthwise_conv(x, dw, b, **kw)
    tol = dict(atol=1e-12, rtol=1e-12) if dtype == torch.float64 else \
        dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=0.1, rtol=0.05)
    torch.testing.assert_close(got, want, **tol)
    assert depthwise_cpu.ZERO_TAPS


@pytest.mark.parametrize("shape,kw,chosen", [
    ((2, 12, 12, 8), dict(kernel_size=3, strides=2, padding="same"), True),  # MobileNet's
    ((2, 11, 6), dict(kernel_size=4, padding="same", depth_multiplier=2), True),
    ((2, 10, 10, 8), dict(kernel_size=5, strides=2, padding="same"), True),  # EfficientNet
    ((2, 8, 8, 8), dict(kernel_size=4, padding="same"), False),  # 9 taps per input: copy
    ((2, 11, 6), dict(kernel_size=4, padding="same", dilation_rate=3), False),  # dilated: the copy
])
def test_zero_taps_where_they_are_cheaper(shape, kw, chosen, monkeypatch):
    """Which layers take the zero taps (inference, rest a multiple of the dilation, at most
    3 extra multiply-adds per input element), and that those give the padded path's
    numbers; with autograd the padded copy stays (its backward is faster)."""
    from sepconv.kernels import depthwise_cpu

    calls = []
    real = depthwise_cpu._rest_as_zero_taps
    monkeypatch.setattr(depthwise_cpu, "_rest_as_zero_taps",
                        lambda kernel, *a: calls.append(real(kernel, *a)[0] is not kernel)
                        or real(kernel, *a))
    cls = sepconv.DepthwiseConv2D if len(shape) == 4 else sepconv.DepthwiseConv1D
    layer = cls(bias_initializer="random_normal", **kw)
    x = torch.randn(shape)
    with torch.no_grad():
        y = layer(x)
    assert calls == [chosen] or (not chosen and calls in ([], [False]))
    monkeypatch.setattr(depthwise_cpu, "ZERO_TAPS", False)
    with torch.no_grad():
        torch.testing.assert_close(y, layer(x), rtol=1e-6, atol=1e-6)
    calls.clear()
    layer(x.requires_grad_(True)).sum().backward()
    assert calls == []


def test_dispatch_keeps_one_channel_channels_first_and_float16_on_the_reference():
    from sepconv.kernels import reference

    for shape, kernel, groups, last, dtype in [
            ((2, 9, 5, 1), (4, 4, 1, 2), 1, True, torch.float32),   # 1 channel: the trap
            ((2, 3, 9, 5), (3, 3, 1, 3), 3, False, torch.float32),  # channels_first
            ((2, 9, 5, 3), (3, 3, 1, 3), 3, True, torch.float16),
            ((2, 9, 5, 4), (3, 3, 2, 4), 2, True, torch.float32),   # grouped, not depthwise
            ((2, 5, 5, 5, 3), (3, 3, 3, 1, 3), 3, True, torch.float32)]:  # rank 3
        x, k = torch.zeros(shape, dtype=dtype), torch.zeros(kernel, dtype=dtype)
        assert F._pick_conv_kernel(x, k, (1,) * (k.dim() - 2), ((1, 1),) * (k.dim() - 2),
                                   groups, last) is reference.conv



@SETTINGS
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.booleans(),
       st.sampled_from(["float32", "float64", "bfloat16"]), st.integers(0, 2**31 - 1))
def test_pointwise_kernel_matches_reference(rank, channels, filters, use_bias, dtype, seed):
    """``kernels/pointwise.py`` (dispatch's pick for 1x1 stride-1 convolutions on CPU
    channels_last data: the separable layers' second step) against the reference kernel,
    forward and gradients, 1 channel and length-1 axes included."""
    from sepconv.kernels import pointwise

    rng = np.random.default_rng(seed)
    dtype = getattr(torch, dtype)
    spatial = tuple(int(n) for n in rng.integers(1, 4, rank))
    x = torch.from_numpy(rng.standard_normal((2,) + spatial + (channels,))).to(dtype)
    k = torch.from_numpy(rng.standard_normal((1,) * rank + (channels, filters))).to(dtype)
    b = torch.from_numpy(rng.standard_normal(filters)).to(dtype) if use_bias else None
    assert F._pick_conv_kernel(x, k, (1,) * rank, ((0, 0),) * rank, 1, True) \
        is pointwise.conv
    assert F._pick_conv_kernel(x, k, (2,) * rank, ((0, 0),) * rank, 1, True) \
        is not pointwise.conv

    def run(force):
        inputs = [t.clone().requires_grad_(True) for t in (x, k, b) if t is not None]
        with kernel_choice(force):
            y = F.conv(inputs[0], inputs[1], inputs[2] if use_bias else None)
        g = torch.from_numpy(rng.standard_normal(tuple(y.shape))).to(dtype)
        return [y] + list(torch.autograd.grad((y * g).sum(), inputs))

    tol = dict(atol=1e-12, rtol=1e-12) if dtype == torch.float64 else \
        dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=0.1, rtol=0.05)
    rng_state = rng.bit_generator.state
    got = run("")
    rng.bit_generator.state = rng_state
    for a, w in zip(got, run("reference")):
        assert a.shape == w.shape and a.dtype == w.dtype
        torch.testing.assert_close(a, w, **tol)


@pytest.mark.parametrize("spatial, channels, filters, use_bias, dtype", [
    ((3, 4), 3, 5, True, torch.float32), ((3, 4), 1, 4, False, torch.float64),
    ((5,), 2, 3, True, torch.float64), ((2, 3, 2), 4, 2, True, torch.float32),
    ((1, 1), 3, 2, True, torch.bfloat16)])
def test_pointwise_kernel_convolution_branch(monkeypatch, spatial, channels, filters,
                                             use_bias, dtype):
    """``kernels/pointwise.py``'s oneDNN branch (taken for outputs of ``LINEAR_BELOW``
    elements and more; forced here on small shapes) against the reference kernel,
    forward and gradients, ranks 1-3, 1 channel included."""
    from sepconv.kernels import pointwise

    monkeypatch.setattr(pointwise, "LINEAR_BELOW", 0)
    rng = np.random.default_rng(len(spatial) * 10 + channels)
    x = torch.from_numpy(rng.standard_normal((2,) + spatial + (channels,))).to(dtype)
    k = torch.from_numpy(rng.standard_normal((1,) * len(spatial) + (channels, filters)))
    k = k.to(dtype)
    b = torch.from_numpy(rng.standard_normal(filters)).to(dtype) if use_bias else None
    g = torch.from_numpy(rng.standard_normal((2,) + spatial + (filters,))).to(dtype)
    calls = []
    real = torch.nn.functional.linear
    monkeypatch.setattr(torch.nn.functional, "linear",
                        lambda *a, **kw: calls.append(1) or real(*a, **kw))

    def run(force):
        inputs = [t.clone().requires_grad_(True) for t in (x, k, b) if t is not None]
        with kernel_choice(force):
            y = F.conv(inputs[0], inputs[1], inputs[2] if use_bias else None)
        return [y] + list(torch.autograd.grad((y * g).sum(), inputs))

    got = run("")
    assert not calls  # the convolution branch ran, not the GEMM
    tol = dict(atol=1e-12, rtol=1e-12) if dtype == torch.float64 else \
        dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=0.1, rtol=0.05)
    for a, w in zip(got, run("reference")):
        assert a.shape == w.shape and a.dtype == w.dtype
        torch.testing.assert_close(a, w, **tol)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_pointwise_kernel_avoids_torchs_slow_single_thread_path(rank):
    """On one thread torch runs a 1x1 convolution of batch < 16 on its slow THNN kernel;
    the pointwise kernel re-splits the rows into a batch of 16 or more (oneDNN), forward
    and backward, and computes the same numbers."""
    from torch.profiler import ProfilerActivity, profile

    from sepconv.kernels import pointwise, reference
    spatial = {1: (4096,), 2: (64, 64), 3: (16, 16, 16)}[rank]
    torch.manual_seed(rank)
    x = torch.randn((2,) + spatial + (8,), requires_grad=True)
    k = torch.randn((1,) * rank + (8, 64), requires_grad=True)
    b = torch.randn(64, requires_grad=True)
    kw = dict(strides=(1,) * rank, dilation=(1,) * rank, pads=((0, 0),) * rank, groups=1,
              channels_last=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            y = pointwise.conv(x, k, b, **kw)
            grads = torch.autograd.grad(y.square().sum(), (x, k, b))
    finally:
        torch.set_num_threads(threads)
    names = {e.key for e in prof.key_averages()}
    assert not any("slow_conv" in n or "thnn" in n for n in names), names
    assert "aten::mkldnn_convolution" in names, names
    want = reference.conv(x, k, b, **kw)
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-4)
    for g, w in zip(grads, torch.autograd.grad(want.square().sum(), (x, k, b))):
        # sums of 8192 products in another order: float32 rounding of their scale
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-3 + 1e-5 * w.abs().max().item())


@pytest.mark.parametrize("geometry", [((6, 5), (3, 2), (2, 1), "same"),
                                      ((7,), (3,), (1,), "same"),
                                      ((4, 4), (2, 2), (1, 1), "valid")])
def test_double_backward_through_the_cpu_kernels(geometry):
    """gradgradcheck (float64) of separable_conv2d / depthwise_conv on the default dispatch
    (the channels_last depthwise and pointwise kernels)."""
    spatial, ks, strides, padding = geometry
    rng = np.random.default_rng(3)

    def param(*shape):
        return torch.from_numpy(rng.standard_normal(shape)).requires_grad_(True)

    x, dw, b = param(2, *spatial, 2), param(*ks, 2, 2), param(4)
    kw = dict(strides=strides, padding=padding)
    assert torch.autograd.gradgradcheck(lambda *a: F.depthwise_conv(*a, **kw), (x, dw, b))
    if len(spatial) == 2:
        pw = param(1, 1, 4, 3)
        assert torch.autograd.gradgradcheck(lambda *a: F.separable_conv2d(*a, **kw),
                                            (x, dw, pw, param(3)))


@pytest.mark.parametrize("width,kw,multiplier", [(3, 2, 2), (4, 3, 2), (4, 3, 3), (7, 3, 2)])
def test_bfloat16_strided_multiplier_on_narrow_inputs(width, kw, multiplier):
    # torch 2.13's CPU channels_last bfloat16 grouped convolution read garbage here (6e27);
    # the layer's bfloat16 output must be the float32 result rounded, as for other shapes
    torch.manual_seed(0)
    layer = sepconv.DepthwiseConv2D((3, kw), strides=(1, 2), depth_multiplier=multiplier,
                                    input_shape=(4, width, 16))
    x = torch.randn(2, 4, width, 16).bfloat16()
    low = sepconv.DepthwiseConv2D((3, kw), strides=(1, 2), depth_multiplier=multiplier,
                                  input_shape=(4, width, 16), dtype="bfloat16")
    low.set_weights([w.astype("float32") for w in layer.get_weights()])
    with torch.no_grad():
        want = layer(x.float())
        got = low(x).float()
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=1e-2, atol=2e-2)
