"""Cropping/ZeroPadding/UpSampling 1D-3D without TensorFlow: numpy references, gradcheck in
float64 for every interpolation, the layer protocol, the R functions, errors naming the
argument, and parity with Keras 3 (torch backend: forward, input gradients, config keys).
tf-keras parity is in test_parity_reshaping_tfkeras.py."""

from __future__ import annotations

import copy
import inspect
import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sepconv
from sepconv import functional as F
from sepconv.kernels import resize

pytestmark = [pytest.mark.usefixtures("torch_single_thread"),
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
FORMATS = ["channels_last", "channels_first"]
CLASSES = ["Cropping1D", "Cropping2D", "Cropping3D", "ZeroPadding1D", "ZeroPadding2D",
           "ZeroPadding3D", "UpSampling1D", "UpSampling2D", "UpSampling3D"]


def _spatial_axes(rank, fmt):
    return list(range(1, rank + 1)) if fmt == "channels_last" else list(range(2, rank + 2))


@st.composite
def numpy_cases(draw):
    rank = draw(st.integers(1, 3))
    fmt = "channels_last" if rank == 1 else draw(st.sampled_from(FORMATS))
    spatial = [draw(st.integers(2, 5)) for _ in range(rank)]
    shape = [draw(st.integers(1, 2))] + spatial + [draw(st.integers(1, 3))]
    if fmt == "channels_first":
        shape = [shape[0], shape[-1]] + spatial
    crop = []
    for n in spatial:
        b = draw(st.integers(0, n - 1))
        crop.append((b, draw(st.integers(0, n - 1 - b))))
    pad = [(draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(rank)]
    size = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    return rank, fmt, tuple(shape), tuple(crop), tuple(pad), size


@SETTINGS
@given(numpy_cases())
def test_layers_match_numpy(case):
    """Slicing, np.pad and np.repeat computed independently of the library."""
    rank, fmt, shape, crop, pad, size = case
    x = np.random.default_rng(len(shape)).standard_normal(shape)
    axes = _spatial_axes(rank, fmt)
    kw = {} if rank == 1 else dict(data_format=fmt)
    want = x
    for axis, (b, e) in zip(axes, crop):
        want = np.take(want, range(b, x.shape[axis] - e), axis=axis)
    ours = getattr(sepconv, f"Cropping{rank}D")(crop[0] if rank == 1 else crop,
                                                 dtype="float64", **kw)
    np.testing.assert_array_equal(ours(x).numpy(), want)
    widths = [(0, 0)] * x.ndim
    for axis, p in zip(axes, pad):
        widths[axis] = p
    ours = getattr(sepconv, f"ZeroPadding{rank}D")(pad[0] if rank == 1 else pad,
                                                    dtype="float64", **kw)
    np.testing.assert_array_equal(ours(x).numpy(), np.pad(x, widths))
    want = x
    for axis, f in zip(axes, size):
        want = np.repeat(want, f, axis=axis)
    ours = getattr(sepconv, f"UpSampling{rank}D")(size[0] if rank == 1 else size,
                                                   dtype="float64", **kw)
    np.testing.assert_array_equal(ours(x).numpy(), want)
    assert ours.compute_output_shape(shape) == want.shape


@pytest.mark.parametrize("method", resize.METHODS)
def test_gradcheck_every_interpolation_float64(method):
    x = torch.randn(1, 3, 4, 2, dtype=torch.float64, requires_grad=True)
    for size, fmt in (((2, 3), "channels_last"), ((1, 4), "channels_first")):
        assert torch.autograd.gradcheck(lambda t: F.upsample(t, size, method, fmt), (x,))
    assert torch.autograd.gradgradcheck(lambda t: F.upsample(t, (2, 2), method), (x,))


def test_gradcheck_crop_pad_repeat_float64():
    x = torch.randn(2, 4, 3, 5, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.crop(t, ((1, 0), (0, 1), (2, 1))), (x,))
    assert torch.autograd.gradcheck(
        lambda t: F.zero_pad(t, ((1, 2), (0, 1), (2, 0)), "channels_first"), (x,))
    assert torch.autograd.gradcheck(lambda t: F.upsample(t, (2, 1, 3)), (x,))


def test_resize_weights_rows_sum_to_one_and_interpolate():
    """Every method's weights are normalised; the interpolating ones reproduce the input
    at the output pixels whose centres coincide with input centres (odd factors)."""
    for method in resize.METHODS:
        for n in (1, 2, 5):
            for f in (1, 2, 3, 4):
                w = resize.weight_matrix(n, n * f, method)
                assert w.shape == (n * f, n)
                np.testing.assert_allclose(w.sum(1), 1, atol=1e-6)
                if method in ("nearest", "area", "bilinear", "bicubic", "lanczos3",
                              "lanczos5") and f % 2:
                    np.testing.assert_allclose(w[f // 2::f], np.eye(n), atol=1e-6)


def test_upsampling_on_the_weights_device_and_dtype():
    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        y = F.upsample(torch.ones(1, 2, 3, 1, dtype=dtype), (2, 3), "bicubic")
        assert y.dtype == dtype and y.shape == (1, 4, 9, 1)
        torch.testing.assert_close(y.float(), torch.ones(1, 4, 9, 1), atol=1e-2, rtol=0)


# -- layer protocol -----------------------------------------------------------------------

def _instances():
    return [sepconv.Cropping1D((1, 2)), sepconv.Cropping2D(((1, 0), 2)),
            sepconv.Cropping3D(1, data_format="channels_first"), sepconv.ZeroPadding1D(2),
            sepconv.ZeroPadding2D((1, 2)), sepconv.ZeroPadding3D(((1, 0), (0, 1), 2)),
            sepconv.UpSampling1D(3), sepconv.UpSampling2D((2, 3), interpolation="lanczos3"),
            sepconv.UpSampling3D((1, 2, 1), data_format="channels_first")]


def _input_for(layer):
    return torch.randn(*([2] + [6] * (layer.RANK + 1)))


def test_no_weights_and_keras_protocol():
    for layer in _instances():
        x = _input_for(layer)
        y = layer(x)
        assert layer.built and layer.get_weights() == [] and layer.weights == []
        assert list(layer.parameters()) == [] and layer.losses == []
        layer.set_weights([])
        with pytest.raises(ValueError, match="expects 0 weights"):
            layer.set_weights([np.zeros(3)])
        assert layer.compute_output_shape(tuple(x.shape)) == tuple(y.shape)
        # config round trip, state_dict, deepcopy, repr
        clone = type(layer).from_config(dict(layer.get_config(), name=layer.name + "_c"))
        assert {k: v for k, v in clone.get_config().items() if k != "name"} == \
            {k: v for k, v in layer.get_config().items() if k != "name"}
        torch.testing.assert_close(clone(x), y)
        clone.load_state_dict(layer.state_dict())
        torch.testing.assert_close(copy.deepcopy(layer)(x), y)
        assert layer.name in repr(layer)
        assert sepconv.layers.base.get_layer_class(type(layer).__name__) is type(layer)


def test_numpy_inputs_are_cast_to_the_compute_dtype():
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 2))  # float64
    for dtype, want in ((None, torch.float32), ("float64", torch.float64),
                        ("mixed_bfloat16", torch.bfloat16), ("float16", torch.float16)):
        for interp in ("nearest", "bilinear"):
            y = sepconv.UpSampling2D(interpolation=interp, dtype=dtype)(x)
            assert y.dtype == want
    assert sepconv.Cropping1D(dtype="float64")(np.zeros((1, 5, 1), np.float32)).dtype == \
        torch.float64


def test_built_from_input_shape_and_checked_at_every_call():
    layer = sepconv.ZeroPadding2D(input_shape=(None, 5, 3))
    assert layer.built and layer.get_config()["batch_input_shape"] == (None, None, 5, 3)
    layer = sepconv.UpSampling3D(batch_input_shape=(2, 3, 3, 3, 1))
    assert layer.built
    for layer, bad, layout in (
            (sepconv.Cropping1D(), (2, 5), "(batch, steps, channels)"),
            (sepconv.Cropping2D(), (2, 5, 5), "(batch, rows, cols, channels)"),
            (sepconv.UpSampling3D(), (1, 2, 2, 2), "(batch, depth, rows, cols, channels)"),
            (sepconv.ZeroPadding2D(data_format="channels_first"), (1, 2, 3),
             "(batch, channels, rows, cols)")):
        with pytest.raises(ValueError, match=rf"rank {len(bad) + 1}, {re.escape(layout)}"):
            layer(torch.zeros(bad))
    with pytest.raises(ValueError, match=r"`input_shape`.*\(batch, rows, cols, channels\)"):
        sepconv.Cropping2D(input_shape=(5, 3))


@pytest.mark.parametrize("cls,kwargs,exc,pattern", [
    (sepconv.Cropping1D, dict(cropping=(1, 2, 3)), ValueError, r"`cropping`.*\(1, 2, 3\)"),
    (sepconv.Cropping1D, dict(cropping=-1), ValueError, "`cropping`.*>= 0"),
    (sepconv.Cropping1D, dict(cropping=1.5), ValueError, "`cropping`.*1.5"),
    (sepconv.Cropping1D, dict(cropping="1"), TypeError, "`cropping`"),
    (sepconv.Cropping2D, dict(cropping=(1, 2, 3)), ValueError, "`cropping`"),
    (sepconv.Cropping2D, dict(cropping=((1, 2, 3), 1)), ValueError, "`cropping`.*1st"),
    (sepconv.Cropping3D, dict(cropping=(1, (2, -1), 0)), ValueError, "`cropping`.*>= 0"),
    (sepconv.ZeroPadding2D, dict(padding=-2), ValueError, "`padding`.*padding=-2"),
    (sepconv.ZeroPadding3D, dict(padding=(1, 1)), ValueError, "`padding`"),
    (sepconv.ZeroPadding1D, dict(padding=True), TypeError, "`padding`"),
    (sepconv.UpSampling1D, dict(size=0), ValueError, "`size`.*strictly positive"),
    (sepconv.UpSampling2D, dict(size=(2, 2.5)), ValueError, "`size`.*2.5"),
    (sepconv.UpSampling3D, dict(size=(2, 2)), ValueError, "`size`"),
    (sepconv.UpSampling2D, dict(interpolation="cubic"), ValueError, "`interpolation`.*cubic"),
    (sepconv.UpSampling2D, dict(interpolation=1), TypeError, "`interpolation`"),
    (sepconv.Cropping2D, dict(data_format="nhwc"), ValueError, "`data_format`.*nhwc"),
    (sepconv.UpSampling3D, dict(data_format=3), TypeError, "`data_format`"),
])
def test_bad_arguments_name_the_argument(cls, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        cls(**kwargs)


def test_functional_errors_name_the_argument():
    x = torch.zeros(1, 4, 4, 1)
    with pytest.raises(ValueError, match="`cropping`"):
        F.crop(x, ((2, 2), (0, 0)))
    with pytest.raises(ValueError, match="`padding`"):
        F.zero_pad(x, ((1, -1), (0, 0)))
    with pytest.raises(ValueError, match="`size`"):
        F.upsample(x, (2, 1.5))
    with pytest.raises(ValueError, match="`interpolation`"):
        F.upsample(x, (2, 2), "linear")
    with pytest.raises(ValueError, match=r"4D.*\(batch, steps, channels\)|3D"):
        F.upsample(x, (2,))


def test_whole_floats_are_accepted_as_r_sends_them():
    assert sepconv.Cropping2D(((1.0, 0.0), 2.0)).cropping == ((1, 0), (2, 2))
    assert sepconv.UpSampling2D(np.array([2.0, 3.0])).size == (2, 3)
    assert sepconv.ZeroPadding1D(np.int64(2)).padding == (2, 2)


# -- R functions --------------------------------------------------------------------------

def test_r_functions_compose_and_coerce_doubles():
    model = torch.nn.Sequential()
    out = sepconv.layer_zero_padding_2d(model, padding=[[1.0, 0.0], [2.0, 2.0]],
                                        input_shape=[4.0, 4.0, 1.0])
    assert out is model
    sepconv.layer_cropping_2d(model, cropping=1.0)
    sepconv.layer_upsampling_2d(model, size=c(2.0, 3.0), interpolation="bilinear")
    assert model(np.zeros((1, 4, 4, 1))).shape == (1, 6, 18, 1)
    assert isinstance(sepconv.layer_upsampling_1d(size=2.0), sepconv.UpSampling1D)
    y = sepconv.layer_cropping_1d(np.arange(10.0).reshape(1, 5, 2), cropping=c(1.0, 2.0))
    np.testing.assert_array_equal(y.numpy(), np.arange(2.0, 6.0).reshape(1, 2, 2))
    assert sepconv.layer_upsampling_3d(size=2.0).size == (2, 2, 2)
    assert sepconv.layer_cropping_3d(cropping=0.0).cropping == ((0, 0),) * 3
    assert sepconv.layer_zero_padding_1d(padding=3.0).padding == (3, 3)
    assert sepconv.layer_zero_padding_3d(padding=c(1.0, 2.0, 3.0)).padding == \
        ((1, 1), (2, 2), (3, 3))
    with pytest.raises(ValueError, match="`size`.*2.5"):
        sepconv.layer_upsampling_1d(size=2.5)
    for name in CLASSES:
        assert sepconv.r.r_name(name) in sepconv.__all__ and name in sepconv.__all__


def c(*values):
    """R's ``c(...)`` as reticulate hands it over: a list of doubles."""
    return list(values)


# -- Keras 3 ------------------------------------------------------------------------------

_K3_CASES = [
    ("Cropping1D", dict(cropping=(2, 1)), (2, 7, 3)),
    ("Cropping2D", dict(cropping=((1, 0), 2), data_format="channels_first"), (2, 3, 5, 6)),
    ("Cropping3D", dict(cropping=(1, 0, (0, 2))), (1, 4, 3, 5, 2)),
    ("ZeroPadding1D", dict(padding=(0, 3)), (2, 4, 3)),
    ("ZeroPadding2D", dict(padding=((1, 2), (0, 1))), (2, 3, 4, 2)),
    ("ZeroPadding3D", dict(padding=2, data_format="channels_first"), (1, 2, 3, 2, 2)),
    ("UpSampling1D", dict(size=3), (2, 4, 3)),
    ("UpSampling2D", dict(size=(2, 3), data_format="channels_first"), (2, 3, 4, 5)),
    ("UpSampling2D", dict(size=(3, 2), interpolation="bilinear"), (2, 4, 5, 3)),
    ("UpSampling3D", dict(size=(1, 2, 3)), (1, 2, 3, 2, 2)),
]


@pytest.mark.parametrize("name,kwargs,shape", _K3_CASES)
def test_keras3_forward_gradient_and_config_keys(name, kwargs, shape):
    """Keras 3 on the torch backend: same outputs and input gradients (both through torch
    autograd); same config keys (Keras 3's ZeroPadding1D adds ``data_format``)."""
    keras = pytest.importorskip("keras")
    ours = getattr(sepconv, name)(**kwargs)
    theirs = getattr(keras.layers, name)(**kwargs)
    x = torch.randn(*shape, dtype=torch.float32)
    r = torch.randn(ours.compute_output_shape(shape))
    grads = []
    for layer in (ours, theirs):
        xx = x.clone().requires_grad_(True)
        y = layer(xx)
        (y * r).sum().backward()
        grads.append((y.detach().cpu(), xx.grad.cpu()))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-5, rtol=1e-5)
    extra = {"data_format"} if name == "ZeroPadding1D" else set()
    assert set(ours.get_config()) == set(theirs.get_config()) - extra
    for key in ours.get_config():
        if key not in ("dtype", "name"):
            assert ours.get_config()[key] == theirs.get_config()[key], key
    again = getattr(sepconv, name).from_config(dict(theirs.get_config(), name=None))
    torch.testing.assert_close(again(x), grads[0][0])


def test_keras3_channels_first_zero_padding_1d_config_is_honoured():
    """Keras 3's ZeroPadding1D has data_format; tf-keras' (and sepconv's signature) does
    not: a channels_first Keras 3 config pads the steps of (batch, channels, steps) as
    Keras 3 does, and says so in get_config; a bad value is refused naming the argument."""
    keras = pytest.importorskip("keras")
    theirs = keras.layers.ZeroPadding1D((2, 1), data_format="channels_first")
    ours = sepconv.ZeroPadding1D.from_config(theirs.get_config())
    x = np.random.default_rng(0).standard_normal((2, 3, 5)).astype(np.float32)
    want = keras.ops.convert_to_numpy(theirs(x))
    assert want.shape == (2, 3, 8)
    np.testing.assert_array_equal(ours(torch.from_numpy(x)).numpy(), want)
    assert ours.get_config()["data_format"] == "channels_first"
    assert "data_format='channels_first'" in repr(ours)
    again = sepconv.ZeroPadding1D.from_config(ours.get_config())
    assert again.data_format == "channels_first"
    last = sepconv.ZeroPadding1D.from_config(keras.layers.ZeroPadding1D(2).get_config())
    assert last.padding == (2, 2) and "data_format" not in last.get_config()
    with pytest.raises(ValueError, match="`data_format`"):
        sepconv.ZeroPadding1D.from_config(dict(theirs.get_config(), data_format="nchw"))


def test_signatures_share_the_common_arguments():
    for name in CLASSES:
        params = list(inspect.signature(getattr(sepconv, name)).parameters)
        assert params[-7:] == ["input_shape", "batch_input_shape", "batch_size", "dtype",
                               "name", "trainable", "weights"]
