"""Parity of Cropping/ZeroPadding/UpSampling 1D-3D with tf-keras 2.21 (what R keras wraps).

Each test builds the same layer in tf-keras and sepconv from the same arguments and
compares outputs, input gradients (``tf.GradientTape`` vs torch autograd of
``sum(y * r)``), output shapes, configs and signatures.  UpSampling2D's interpolations are
compared with ``tf.image.resize`` as tf-keras calls it, for factors 1-4 on each axis, both
formats, float32 and float64 (TensorFlow computes those methods in float32 whatever the
input, so float64 is compared at float32 tolerance; sepconv's own float64 is checked by
gradcheck in test_reshaping.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")

import sepconv  # noqa: E402
from tf_keras_compare import check_signature  # noqa: E402
from sepconv.kernels import resize  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SETTINGS = settings(max_examples=80, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
CLASSES = ["Cropping1D", "Cropping2D", "Cropping3D", "ZeroPadding1D", "ZeroPadding2D",
           "ZeroPadding3D", "UpSampling1D", "UpSampling2D", "UpSampling3D"]
FORMATS = ["channels_last", "channels_first"]


def _tf_grad(layer, x: np.ndarray, r: np.ndarray):
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = layer(xt)
        loss = tf.reduce_sum(tf.cast(y, r.dtype) * r)
    return y.numpy(), tape.gradient(loss, xt).numpy()


def _torch_grad(layer, x: np.ndarray, r: np.ndarray):
    xt = torch.from_numpy(x).requires_grad_(True)
    y = layer(xt)
    (y * torch.from_numpy(r)).sum().backward()
    return y.detach().numpy(), xt.grad.numpy()


def _compare(name, kwargs, x, tol):
    """Outputs, input gradients and output shapes of tf-keras' and sepconv's ``name``."""
    ours = getattr(sepconv, name)(**kwargs)
    theirs = getattr(tf_keras.layers, name)(**kwargs)
    shape = ours.compute_output_shape(x.shape)
    r = np.random.default_rng(x.size).standard_normal(shape).astype(x.dtype)
    y, g = _torch_grad(ours, x, r)
    if kwargs.get("interpolation") == "area":
        # TensorFlow has no gradient for ResizeArea; at whole factors it is nearest.
        y_ref = theirs(x).numpy()
        near = getattr(tf_keras.layers, name)(**dict(kwargs, interpolation="nearest"))
        y_near, g_ref = _tf_grad(near, x, r)
        np.testing.assert_allclose(y_near, y_ref, atol=1e-5)
    elif kwargs.get("interpolation", "nearest") != "nearest" and x.dtype == np.float64:
        # TensorFlow computes these in float32 and has no float64 ScaleAndTranslateGrad:
        # the (linear) map's gradient is taken at float32.
        y_ref = theirs(x).numpy()
        theirs32 = getattr(tf_keras.layers, name)(**dict(kwargs, dtype="float32"))
        _, g_ref = _tf_grad(theirs32, x.astype(np.float32), r.astype(np.float32))
    else:
        y_ref, g_ref = _tf_grad(theirs, x, r)
    assert y.shape == y_ref.shape == shape
    assert y.dtype == x.dtype  # tf-keras returns float32 from most resize methods
    np.testing.assert_allclose(y, y_ref, atol=tol, rtol=tol)
    np.testing.assert_allclose(g, g_ref, atol=tol, rtol=tol)
    assert shape == tuple(theirs.compute_output_shape(tf.TensorShape(x.shape)).as_list())


def _amount_form(draw, rank, pairs):
    """``pairs`` written in one of tf-keras' argument forms that means the same."""
    forms = ["pairs"]
    if len({p for pair in pairs for p in pair}) == 1:
        forms.append("int")
    if rank > 1 and all(b == e for b, e in pairs):
        forms.append("ints")
    form = draw(st.sampled_from(forms))
    if form == "int":
        return pairs[0][0]
    if rank == 1:
        return tuple(pairs[0])
    if form == "ints":
        return tuple(b for b, _ in pairs)
    return tuple(tuple(p) for p in pairs)


@st.composite
def cases(draw):
    kind = draw(st.sampled_from(["Cropping", "ZeroPadding", "UpSampling"]))
    rank = draw(st.integers(1, 3))
    spatial = [draw(st.integers(1, 6)) for _ in range(rank)]
    kwargs = {}
    if rank > 1:
        kwargs["data_format"] = draw(st.sampled_from(FORMATS))
    if kind == "Cropping":
        spatial = [max(n, 2) for n in spatial]
        pairs = []
        for n in spatial:
            b = draw(st.integers(0, n - 1))
            pairs.append((b, draw(st.integers(0, n - 1 - b))))
        kwargs["cropping"] = _amount_form(draw, rank, pairs)
    elif kind == "ZeroPadding":
        pairs = [(draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(rank)]
        kwargs["padding"] = _amount_form(draw, rank, pairs)
    else:
        size = tuple(draw(st.integers(1, 4)) for _ in range(rank))
        kwargs["size"] = size[0] if rank == 1 or (len(set(size)) == 1 and draw(
            st.booleans())) else size
        if rank == 2:
            kwargs["interpolation"] = draw(st.sampled_from(resize.METHODS))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    channels = draw(st.integers(1, 3))
    batch = draw(st.integers(1, 2))
    channels_last = kwargs.get("data_format", "channels_last") == "channels_last"
    shape = (batch, *spatial, channels) if channels_last else (batch, channels, *spatial)
    x = np.random.default_rng(draw(st.integers(0, 2**31 - 1))).standard_normal(shape)
    return f"{kind}{rank}D", kwargs, x.astype(dtype)


@SETTINGS
@given(cases())
def test_forward_and_input_gradient_match_tf_keras(case):
    name, kwargs, x = case
    _compare(name, dict(kwargs, dtype=x.dtype.name), x, 1e-5)


@pytest.mark.parametrize("method", resize.METHODS)
def test_every_interpolation_matches_tf_resize_for_factors_1_to_4(method):
    """Values and input gradients for every pair of factors 1-4, both formats, float32 and
    float64; odd and even sizes, a single-pixel axis too."""
    rng = np.random.default_rng(3)
    for fmt in FORMATS:
        for dtype in ("float32", "float64"):
            for rows, cols in ((5, 4), (1, 3)):
                shape = (2, rows, cols, 2) if fmt == "channels_last" else (2, 2, rows, cols)
                x = rng.standard_normal(shape).astype(dtype)
                for fh in range(1, 5):
                    for fw in range(1, 5):
                        _compare("UpSampling2D", dict(size=(fh, fw), interpolation=method,
                                                      data_format=fmt, dtype=dtype), x, 1e-5)


def test_bicubic_is_tensorflows_table_not_the_exact_cubic():
    """TensorFlow looks Keys' cubic (a = -0.5) up in a 1024-step table; the exact formula
    differs from it by up to ~8e-4, so this comparison can tell the two apart."""
    x = np.zeros((1, 7, 1, 1), np.float32)
    x[0, 3] = 1.0  # the output is the weights themselves
    ref = tf.image.resize(x, (21, 1), method="bicubic").numpy()[0, :, 0, 0]
    ours = sepconv.UpSampling2D((3, 1), interpolation="bicubic")(x).numpy()[0, :, 0, 0]
    np.testing.assert_allclose(ours, ref, atol=1e-7)

    def keys(t, a=-0.5):
        t = abs(t)
        return ((a + 2) * t - (a + 3)) * t * t + 1 if t <= 1 else \
            (((t - 5) * t + 8) * t - 4) * a if t < 2 else 0.0
    exact = [keys((i + 0.5) / 3 - 0.5 - 3) for i in range(21)]
    assert np.abs(np.array(exact) - ref).max() > 1e-4


@pytest.mark.parametrize("method", ["gaussian", "mitchellcubic"])
def test_blurring_kernels_are_not_the_identity_at_factor_1(method):
    x = np.random.default_rng(0).standard_normal((1, 5, 6, 2)).astype(np.float32)
    ours = sepconv.UpSampling2D(1, interpolation=method)(x).numpy()
    np.testing.assert_allclose(ours, tf.image.resize(x, (5, 6), method=method).numpy(),
                               atol=1e-6)
    assert np.abs(ours - x).max() > 0.05


# -- shapes, configs, signatures ----------------------------------------------------------

_ARGS = {
    "Cropping1D": [dict(), dict(cropping=2), dict(cropping=(0, 3))],
    "Cropping2D": [dict(), dict(cropping=1), dict(cropping=(1, 2)),
                   dict(cropping=((0, 1), (2, 0)), data_format="channels_first")],
    "Cropping3D": [dict(), dict(cropping=0), dict(cropping=(1, 0, 2)),
                   dict(cropping=((0, 1), (2, 0), (1, 1)), data_format="channels_first")],
    "ZeroPadding1D": [dict(), dict(padding=0), dict(padding=(2, 0))],
    "ZeroPadding2D": [dict(), dict(padding=2), dict(padding=((0, 1), (3, 0)),
                                                    data_format="channels_first")],
    "ZeroPadding3D": [dict(), dict(padding=(1, 0, 2)), dict(padding=((0, 1), (2, 0), (1, 1)),
                                                            data_format="channels_first")],
    "UpSampling1D": [dict(), dict(size=3)],
    "UpSampling2D": [dict(), dict(size=3, interpolation="Bilinear"),
                     dict(size=(1, 4), data_format="channels_first",
                          interpolation="lanczos5")],
    "UpSampling3D": [dict(), dict(size=(1, 2, 3), data_format="channels_first")],
}


@pytest.mark.parametrize("name", CLASSES)
def test_config_and_output_shape_match_tf_keras(name):
    rank = int(name[-2])
    for i, kwargs in enumerate(_ARGS[name]):
        kwargs = dict(kwargs, name=f"{name.lower()}_cfg_{i}")
        ours = getattr(sepconv, name)(**kwargs)
        theirs = getattr(tf_keras.layers, name)(**kwargs)
        assert ours.get_config() == theirs.get_config()
        again = getattr(sepconv, name).from_config(dict(theirs.get_config(),
                                                        name=f"{name.lower()}_again_{i}"))
        assert {k: v for k, v in again.get_config().items() if k != "name"} == \
            {k: v for k, v in ours.get_config().items() if k != "name"}
        first = 1 if ours.data_format == "channels_last" else 2
        for spatial in ([7] * rank, [None] * rank, [9, None, 8][:rank]):
            shape = [4] + [None] * (rank + 1)
            shape[first:first + rank] = spatial
            shape[-1 if first == 1 else 1] = 3
            want = tuple(theirs.compute_output_shape(tf.TensorShape(shape)).as_list())
            assert ours.compute_output_shape(tuple(shape)) == want, (kwargs, shape)


def test_config_with_input_shape_matches_tf_keras():
    ours = sepconv.ZeroPadding2D(2, input_shape=(5, 6, 3), name="zp_shape")
    theirs = tf_keras.layers.ZeroPadding2D(2, input_shape=(5, 6, 3), name="zp_shape")
    assert ours.get_config() == theirs.get_config()


@pytest.mark.parametrize("name", CLASSES)
def test_signature_is_tf_keras_then_r_keras_extras(name):
    check_signature(getattr(sepconv, name), getattr(tf_keras.layers, name),
                    getattr(sepconv, sepconv.r.r_name(name)), required=0)


# -- where tf-keras is silent, sepconv raises ---------------------------------------------

def test_cropping_that_leaves_nothing_is_an_error():
    x = np.zeros((1, 3, 5, 5, 1), np.float32)
    assert tf_keras.layers.Cropping3D(2)(x).shape == (1, 0, 1, 1, 1)  # tf-keras: empty
    with pytest.raises(ValueError, match=r"`cropping`.*\(1, 3, 5, 5, 1\)"):
        sepconv.Cropping3D(2)(x)
    with pytest.raises(ValueError, match="`cropping`"):
        sepconv.Cropping3D(2).compute_output_shape((None, 4, 5, 5, 1))
    with pytest.raises(ValueError, match="`cropping`.*`input_shape`"):
        sepconv.Cropping2D(((1, 1), (2, 1)), input_shape=(5, 3, 2))


def test_negative_amounts_and_fractional_sizes_are_errors():
    assert tf_keras.layers.Cropping2D(-1).cropping == ((-1, -1), (-1, -1))  # accepted there
    with pytest.raises(ValueError, match="`cropping`.*>= 0.*cropping=-1"):
        sepconv.Cropping2D(-1)
    with pytest.raises(ValueError, match="`padding`.*>= 0"):
        sepconv.ZeroPadding3D(((0, 1), (-2, 0), (1, 1)))
    x = np.zeros((1, 3, 1), np.float32)
    assert tf_keras.layers.UpSampling1D(2.7)(x).shape == (1, 6, 1)  # truncated there
    with pytest.raises(ValueError, match="`size`.*size=2.7"):
        sepconv.UpSampling1D(2.7)
    x2 = np.zeros((1, 3, 3, 1), np.float32)
    assert tf_keras.layers.UpSampling2D((2.7, 2))(x2).shape == (1, 6, 6, 1)
    with pytest.raises(ValueError, match="`size`"):
        sepconv.UpSampling2D((2.7, 2))


@pytest.mark.parametrize("dtype,tol", [("mixed_float16", 2e-3), ("mixed_bfloat16", 2e-2),
                                       ("float16", 2e-3)])
def test_dtype_policies_match_tf_keras(dtype, tol):
    x = np.random.default_rng(0).standard_normal((2, 4, 5, 3))  # float64 input
    for name, kwargs in (("ZeroPadding2D", dict(padding=(1, 2))),
                         ("Cropping2D", dict(cropping=1)),
                         ("UpSampling2D", dict(size=(2, 3))),
                         ("UpSampling2D", dict(size=2, interpolation="bilinear"))):
        ours = getattr(sepconv, name)(dtype=dtype, **kwargs)
        theirs = getattr(tf_keras.layers, name)(dtype=dtype, **kwargs)
        y, y_ref = ours(x), theirs(x)
        assert y.dtype == ours.compute_dtype
        np.testing.assert_allclose(y.double().numpy(), tf.cast(y_ref, tf.float64).numpy(),
                                   atol=tol, rtol=tol)


@pytest.mark.parametrize("method", [m for m in resize.METHODS if m not in ("nearest", "area")])
def test_long_axes_keep_tensorflows_float32_weights(method):
    """TensorFlow computes the source positions in float32 (``(i + 0.5) * scale - 0.5``
    with ``scale = in / out`` rounded): on long axes with factor 3 those roundings move the
    weights (and bicubic's table index), which sepconv's weights reproduce."""
    rng = np.random.default_rng(5)
    for shape, size in (((1, 200, 3, 2), (3, 1)), ((1, 2, 150, 2), (2, 3))):
        x = rng.standard_normal(shape).astype(np.float32)
        _compare("UpSampling2D", dict(size=size, interpolation=method), x, 1e-5)
