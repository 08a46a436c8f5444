"""Keras' image preprocessing / augmentation layers against tf-keras 2.21 and Keras 3.15:
the deterministic parts exactly (CenterCrop, RandomCrop's inference, the projective
transform kernel and its matrices with the same drawn parameters), the random draws by
their distribution (ranges, frequencies) and by a seeded layer repeating itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings, strategies as st

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

import sepconv  # noqa: E402
from sepconv import functional as F  # noqa: E402
from sepconv.interop import from_keras  # noqa: E402
from tf_keras_compare import check_signature, strip_config  # noqa: E402


def _aspect_window_empty(rows, cols, height, width):
    """tf-keras' smart_resize fails there (no non-empty window of the target's ratio)."""
    return (min(rows, int(np.float32(cols * height) / np.float32(width))) == 0 or
            min(cols, int(np.float32(rows * width) / np.float32(height))) == 0)


def _keras3_layer(cls, ref):
    """sepconv's layer from a Keras 3 layer's config, as the Keras 3 file loader builds it."""
    with sepconv.activations.keras_flavour("keras3"):
        return cls.from_config(ref.get_config())


def _config(layer):
    config = strip_config(layer.get_config())
    config.pop("rng_type", None)  # tf-keras' BaseRandomLayer bookkeeping
    return config


# -- crops ------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None, derandomize=True)
@given(rows=st.integers(1, 12), cols=st.integers(1, 12), height=st.integers(1, 12),
       width=st.integers(1, 12), unbatched=st.booleans(), seed=st.integers(0, 2 ** 16))
@example(rows=1, cols=12, height=12, width=1, unbatched=False, seed=0)  # an empty window
def test_center_crop_and_random_crop_inference_match_both_kerases(rows, cols, height, width,
                                                                 unbatched, seed):
    """Larger images are cropped, smaller ones (on either axis) resized: tf-keras'
    CenterCrop and RandomCrop(training=False), Keras 3's CenterCrop (its window at least
    one pixel where tf-keras' is empty and fails); Keras 3's RandomCrop(training=False)
    returns its input."""
    smaller = rows < height or cols < width
    x = np.random.default_rng(seed).uniform(0, 255, (2, rows, cols, 3)).astype(np.float32)
    if unbatched:
        x = x[0]
    ref3 = keras.layers.CenterCrop(height, width)
    got3 = _keras3_layer(sepconv.CenterCrop, ref3)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got3, np.asarray(ref3(x)), rtol=1e-5, atol=1e-4)
    ref3 = keras.layers.RandomCrop(height, width, seed=1)
    ours3 = _keras3_layer(sepconv.RandomCrop, ref3).eval()
    assert ours3._keras3_file
    assert from_keras(ref3)._keras3_file  # a live Keras 3 layer too
    np.testing.assert_array_equal(ours3(torch.from_numpy(x)).numpy(),
                                  np.asarray(ref3(x, training=False)))
    ours = sepconv.CenterCrop(height, width)
    ours_random = sepconv.RandomCrop(height, width, seed=1).eval()
    if _aspect_window_empty(rows, cols, height, width):
        with pytest.raises(ValueError, match="no non-empty window"):
            ours_random(torch.from_numpy(x))
        return
    want = tf_keras.layers.CenterCrop(height, width)(x).numpy()
    got = ours(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape == x.shape[:-3] + (height, width, 3)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    if not smaller:
        assert np.array_equal(got, want)
    # RandomCrop at inference: tf-keras always resizes (the aspect-ratio window)
    want = tf_keras.layers.RandomCrop(height, width, seed=1)(x, training=False).numpy()
    np.testing.assert_allclose(ours_random(torch.from_numpy(x)).numpy(), want, rtol=1e-5,
                               atol=1e-4)
    assert not ours_random._keras3_file


def test_center_crop_dtypes():
    """uint8 images cast to the compute dtype first; float64 policies kept (tf-keras)."""
    x = np.random.default_rng(0).integers(0, 256, (2, 9, 7, 3)).astype(np.uint8)
    for h, w in ((4, 5), (11, 5)):
        y = sepconv.CenterCrop(h, w)(torch.from_numpy(x))
        assert y.dtype == torch.float32
        np.testing.assert_allclose(y.numpy(), tf_keras.layers.CenterCrop(h, w)(x).numpy(),
                                   rtol=1e-5, atol=1e-4)
        y = sepconv.CenterCrop(h, w, dtype="float64")(torch.from_numpy(x))
        ref = tf_keras.layers.CenterCrop(h, w, dtype="float64")(x)
        assert y.dtype == torch.float64 and ref.dtype == tf.float64
        np.testing.assert_allclose(y.numpy(), ref.numpy(), rtol=1e-5, atol=1e-4)


def _window_of(x, y):
    """Where ``y`` sits in ``x`` (the one top-left corner), else None."""
    h, w = y.shape[1:3]
    hits = [(i, j) for i in range(x.shape[1] - h + 1) for j in range(x.shape[2] - w + 1)
            if np.array_equal(x[:, i:i + h, j:j + w], y)]
    return hits[0] if len(hits) == 1 else None


def test_random_crop_training_draws_windows():
    x = np.arange(2 * 9 * 8 * 1, dtype=np.float32).reshape(2, 9, 8, 1)
    layer = sepconv.RandomCrop(4, 3, seed=5).train()
    corners = [_window_of(x, layer(torch.from_numpy(x)).numpy()) for _ in range(300)]
    assert None not in corners  # always one window of the right size, the same per batch
    rows, cols = zip(*corners)
    assert set(rows) == set(range(6)) and set(cols) == set(range(6))  # every start drawn
    again = sepconv.RandomCrop(4, 3, seed=5).train()
    assert [_window_of(x, again(torch.from_numpy(x)).numpy()) for _ in range(300)] == corners
    # smaller than the target: resized as at inference (tf-keras)
    small = np.random.default_rng(0).standard_normal((2, 3, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(layer(torch.from_numpy(small)).numpy(),
                               tf_keras.layers.RandomCrop(4, 3)(small, training=True).numpy(),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls,axis", [("RandomHeight", 1), ("RandomWidth", 2)])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "bicubic", "area"])
def test_random_height_and_width(cls, axis, interpolation):
    """Inference: the identity (tf-keras' too).  Training: the length drawn within
    ``[int((1 + lower) * n), int((1 + upper) * n)]``, the images resized to it exactly as
    ``tf.image.resize`` does; every length of the range appears; a seed repeats."""
    x = np.random.default_rng(1).standard_normal((2, 10, 12, 3)).astype(np.float32)
    ref = getattr(tf_keras.layers, cls)((-0.3, 0.5), interpolation=interpolation)
    layer = getattr(sepconv, cls)((-0.3, 0.5), interpolation=interpolation, seed=3)
    np.testing.assert_array_equal(layer.eval()(torch.from_numpy(x)).numpy(),
                                  ref(x, training=False).numpy())
    layer.train()
    n = x.shape[axis]
    lengths = []
    for _ in range(60):
        y = layer(torch.from_numpy(x)).numpy()
        lengths.append(y.shape[axis])
        size = [y.shape[1], y.shape[2]]
        want = tf.image.resize(x, size, method=interpolation).numpy()
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    assert set(lengths) <= set(range(int(0.7 * n), int(1.5 * n) + 1))
    assert set(range(int(0.7 * n) + 1, int(1.5 * n))) <= set(lengths)
    again = getattr(sepconv, cls)((-0.3, 0.5), interpolation=interpolation, seed=3).train()
    assert [again(torch.from_numpy(x)).shape[axis] for _ in range(60)] == lengths
    assert layer.compute_output_shape((2, 10, 12, 3))[axis] is None


@pytest.mark.parametrize("name,args,kwargs,required", [
    ("CenterCrop", (4, 5), {}, 2),
    ("RandomCrop", (4, 5), {"seed": 3}, 2),
    ("RandomHeight", ((0.1, 0.3),), {"interpolation": "bicubic", "seed": 1}, 1),
    ("RandomWidth", (0.2,), {"interpolation": "nearest"}, 1),
])
def test_signature_and_config(name, args, kwargs, required):
    r_name = "layer_" + sepconv.layers.base.snake_case(name)
    check_signature(getattr(sepconv, name), getattr(tf_keras.layers, name),
                    getattr(sepconv, r_name), required=required)
    ours = getattr(sepconv, name)(*args, name="a", **kwargs)
    ref = getattr(tf_keras.layers, name)(*args, name="a", **kwargs)
    assert strip_config(ours.get_config()) == _config(ref)
    assert type(ours).from_config(ours.get_config()).get_config() == ours.get_config()
    assert type(ours).from_config(ref.get_config()).get_config() == ours.get_config()
    assert ours.compute_output_shape((2, 9, 9, 3))[-1] == 3


def test_crop_errors_and_r():
    with pytest.raises(ValueError, match="height"):
        sepconv.CenterCrop(0, 3)
    with pytest.raises(ValueError, match="width"):
        sepconv.RandomCrop(3, 2.5)
    with pytest.raises(ValueError, match="seed"):
        sepconv.RandomCrop(3, 2, seed=-1)
    with pytest.raises(ValueError, match="rank 4"):
        sepconv.CenterCrop(2, 2)(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="data_format='NCHW'"):
        sepconv.CenterCrop.from_config({"height": 2, "width": 2, "data_format": "NCHW"})
    with pytest.raises(ValueError, match="factor"):
        sepconv.RandomHeight((0.5, 0.1))
    with pytest.raises(ValueError, match="factor"):
        sepconv.RandomWidth(-1.5)
    with pytest.raises(ValueError, match="interpolation='box'"):
        sepconv.RandomWidth(0.2, interpolation="box")
    layer = sepconv.layer_random_crop(height=4.0, width=5.0, seed=7.0)
    assert (layer.height, layer.width, layer.seed) == (4, 5, 7)
    model = sepconv.layer_center_crop(torch.nn.Sequential(), height=2, width=2)
    assert isinstance(model[0], sepconv.CenterCrop)


# -- the projective transform kernel and tf-keras' matrices --------------------------------

from tf_keras.src.layers.preprocessing import image_preprocessing as _tfk_image  # noqa: E402


@settings(max_examples=60, deadline=None, derandomize=True)
@given(rows=st.integers(1, 9), cols=st.integers(1, 9), batch=st.integers(1, 3),
       kind=st.sampled_from(["rotation", "translation", "zoom", "projective"]),
       fill_mode=st.sampled_from(F.FILL_MODES),
       interpolation=st.sampled_from(F.TRANSFORM_INTERPOLATIONS),
       fill_value=st.sampled_from([0.0, -1.5, 2.25]), float64=st.booleans(),
       one_matrix=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_image_transform_equals_tensorflow(rows, cols, batch, kind, fill_mode, interpolation,
                                           fill_value, float64, one_matrix, seed):
    """TensorFlow's ImageProjectiveTransformV3 (tf-keras' ``transform``) bit for bit, on
    tf-keras' own matrices of the same drawn parameters (which sepconv's equal: exactly
    for translations and zooms, to float32 rounding for rotations, whose sin and cos are
    not TensorFlow's), on far-away points too (large shifts, zooms, angles)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, rows, cols, 2)).astype(np.float64 if float64 else
                                                               np.float32)
    n = 1 if one_matrix else batch
    if kind == "rotation":
        angles = rng.uniform(-10, 10, n).astype(np.float32)
        m = _tfk_image.get_rotation_matrix(tf.constant(angles), tf.constant(float(rows)),
                                           tf.constant(float(cols))).numpy()
        ours = F.rotation_matrix(torch.from_numpy(angles), rows, cols).numpy()
        np.testing.assert_allclose(ours, m, rtol=1e-6, atol=1e-5 * max(rows, cols))
    elif kind == "translation":
        d = (rng.uniform(-3, 3, (n, 2)) * [cols, rows]).astype(np.float32)
        m = _tfk_image.get_translation_matrix(tf.constant(d)).numpy()
        np.testing.assert_array_equal(F.translation_matrix(torch.from_numpy(d)).numpy(), m)
    elif kind == "zoom":
        z = rng.uniform(0.05, 4, (n, 2)).astype(np.float32)
        m = _tfk_image.get_zoom_matrix(tf.constant(z), tf.constant(float(rows)),
                                       tf.constant(float(cols))).numpy()
        np.testing.assert_array_equal(
            F.zoom_matrix(torch.from_numpy(z), rows, cols).numpy(), m)
    else:
        m = np.concatenate([rng.uniform(-2, 2, (n, 6)), rng.uniform(-0.3, 0.3, (n, 2))],
                           axis=1).astype(np.float32)
        m[0, 6:] = [0.0, 1.0 / max(rows - 1, 1)] if rows > 1 else 0.0  # k = 0 on a row
        m[0, 7] = -m[0, 7]
    want = _tfk_image.transform(tf.constant(x), tf.constant(m), fill_mode=fill_mode,
                                fill_value=fill_value, interpolation=interpolation).numpy()
    got = F.image_transform(torch.from_numpy(x), torch.from_numpy(m), fill_mode,
                            interpolation, fill_value)
    assert got.dtype == torch.from_numpy(x).dtype
    np.testing.assert_array_equal(got.numpy(), want)


def test_image_transform_output_shape_gradients_and_errors(torch_single_thread):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
    m = _tfk_image.get_zoom_matrix(tf.constant([[0.7, 1.3], [1.5, 0.6]]), tf.constant(5.0),
                                   tf.constant(6.0)).numpy()
    want = _tfk_image.transform(tf.constant(x), tf.constant(m), output_shape=(4, 8),
                                fill_mode="constant").numpy()
    got = F.image_transform(torch.from_numpy(x), m, "constant", output_shape=(4, 8))
    np.testing.assert_array_equal(got.numpy(), want)
    # gradients: the exact adjoint of the sampling, J^T r with J's columns the transforms
    # of the unit images (the map is affine: fill_value); TF's registered gradient applies
    # the inverse transform instead, an approximation
    r = torch.from_numpy(rng.standard_normal((2, 5, 6, 3)).astype(np.float32))
    eye = torch.eye(x.size).reshape(x.size, *x.shape)
    for mode in F.FILL_MODES:
        for interp in F.TRANSFORM_INTERPOLATIONS:
            xs = torch.from_numpy(x).requires_grad_()
            (F.image_transform(xs, m, mode, interp, 0.5) * r).sum().backward()
            base = F.image_transform(torch.zeros_like(xs), m, mode, interp, 0.5)
            cols = [(F.image_transform(e, m, mode, interp, 0.5) - base).reshape(-1)
                    for e in eye]
            want = torch.stack(cols, 1).T @ r.reshape(-1)
            np.testing.assert_allclose(xs.grad.reshape(-1).numpy(), want.numpy(),
                                       rtol=1e-5, atol=1e-5)
    # TensorFlow's gradient (the inverse transform of the output gradient) agrees only
    # where the sampling is a permutation: a whole-pixel shift with a constant fill
    for m_, mode, same in ((m, "constant", False),
                           (np.array([1, 0, -1, 0, 1, 2, 0, 0], np.float32), "constant",
                            True)):
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            total = tf.reduce_sum(_tfk_image.transform(xt, tf.constant(m_[None]) if
                                                       m_.ndim == 1 else tf.constant(m_),
                                                       fill_mode=mode) * r.numpy())
        xs = torch.from_numpy(x).requires_grad_()
        (F.image_transform(xs, m_, mode) * r).sum().backward()
        assert np.allclose(tape.gradient(total, xt).numpy(), xs.grad.numpy(),
                           atol=1e-5) == same
    with pytest.raises(ValueError, match="fill_mode"):
        F.image_transform(torch.from_numpy(x), m, "mirror")
    with pytest.raises(ValueError, match="interpolation"):
        F.image_transform(torch.from_numpy(x), m, interpolation="bicubic")
    with pytest.raises(ValueError, match="transforms"):
        F.image_transform(torch.from_numpy(x), np.zeros((3, 8), np.float32))


# -- the random layers -------------------------------------------------------------------

LAYERS = {  # name: (args, kwargs) shared by sepconv, tf-keras and Keras 3
    "RandomFlip": ((), {}),
    "RandomRotation": ((0.2,), {"fill_mode": "constant", "fill_value": 3.0}),
    "RandomTranslation": ((0.2, (-0.3, 0.1)), {"interpolation": "nearest",
                                               "fill_mode": "wrap"}),
    "RandomZoom": (((-0.3, 0.4),), {"fill_mode": "nearest"}),
    "RandomContrast": ((0.4,), {}),
    "RandomBrightness": ((0.3,), {}),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_random_layers_are_the_identity_in_inference(name):
    """``eval()``: what both Kerases' ``training=False`` (and ``predict``) give."""
    args, kwargs = LAYERS[name]
    x = np.random.default_rng(2).uniform(0, 255, (3, 6, 7, 2)).astype(np.float32)
    ours = getattr(sepconv, name)(*args, seed=1, **kwargs).eval()
    got = ours(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, getattr(tf_keras.layers, name)(*args, **kwargs)(
        x, training=False).numpy())
    np.testing.assert_array_equal(got, np.asarray(getattr(keras.layers, name)(
        *args, **kwargs)(x, training=False)))
    np.testing.assert_array_equal(ours(torch.from_numpy(x[0])).numpy(), x[0])
    assert not np.array_equal(ours(torch.from_numpy(x), training=True).numpy(), x)
    assert not ours.training  # Keras' argument, the module's mode unchanged
    np.testing.assert_array_equal(ours.train()(torch.from_numpy(x), training=False).numpy(),
                                  x)
    # in training: changed, the same shape, and a seed repeats the sequence
    a = getattr(sepconv, name)(*args, seed=4, **kwargs).train()
    b = getattr(sepconv, name)(*args, seed=4, **kwargs).train()
    outs = [a(torch.from_numpy(x)) for _ in range(3)]
    assert all(o.shape == x.shape for o in outs)
    assert not np.array_equal(outs[0].numpy(), x)
    for o in outs:
        assert torch.equal(o, b(torch.from_numpy(x)))
    c = getattr(sepconv, name)(*args, seed=5, **kwargs).train()
    assert not torch.equal(outs[0], c(torch.from_numpy(x)))


def test_random_flip_frequencies():
    x = np.arange(5 * 4 * 2, dtype=np.float32).reshape(1, 5, 4, 2).repeat(4000, axis=0)
    for mode in ("horizontal", "vertical", "horizontal_and_vertical"):
        y = sepconv.RandomFlip(mode, seed=0).train()(torch.from_numpy(x)).numpy()
        h = np.array([np.array_equal(v, x[0, :, ::-1]) or np.array_equal(v, x[0, ::-1, ::-1])
                      for v in y])
        v = np.array([np.array_equal(w, x[0, ::-1]) or np.array_equal(w, x[0, ::-1, ::-1])
                      for w in y])
        same = np.array([np.array_equal(w, x[0]) for w in y])
        assert np.all(h | v | same)
        if mode != "vertical":
            assert 0.46 < h.mean() < 0.54
        else:
            assert not h.any()
        if mode != "horizontal":
            assert 0.46 < v.mean() < 0.54
        else:
            assert not v.any()
        if mode == "horizontal_and_vertical":
            assert 0.21 < (h & v).mean() < 0.29  # independent


def _drawn_matrices(name, args, kwargs, x, seed):
    """The matrices a fresh layer of ``seed`` draws for ``x`` (the same stream as the
    layer's first call)."""
    twin = getattr(sepconv, name)(*args, seed=seed, **kwargs)
    return twin._matrices(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("name", ["RandomRotation", "RandomTranslation", "RandomZoom"])
def test_geometric_layers_transform_as_tensorflow_within_their_ranges(name):
    """Training output = TensorFlow's transform of the matrices drawn (same seed), and the
    drawn parameters fill their ranges and no more."""
    args, kwargs = LAYERS[name]
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 255, (2000, 5, 8, 1)).astype(np.float32)
    layer = getattr(sepconv, name)(*args, seed=9, **kwargs).train()
    y = layer(torch.from_numpy(x)).numpy()
    m = _drawn_matrices(name, args, kwargs, x, 9)
    want = _tfk_image.transform(tf.constant(x), tf.constant(m),
                                fill_mode=layer.fill_mode, fill_value=layer.fill_value,
                                interpolation=layer.interpolation).numpy()
    np.testing.assert_array_equal(y, want)
    if name == "RandomRotation":
        params = [np.arctan2(m[:, 3], m[:, 0]) / (2 * np.pi)]
        bounds = [(-0.2, 0.2)]
    elif name == "RandomTranslation":
        params = [-m[:, 5] / 5, -m[:, 2] / 8]
        bounds = [(-0.2, 0.2), (-0.3, 0.1)]
    else:
        params = [m[:, 4] - 1, m[:, 0] - 1]
        bounds = [(-0.3, 0.4), (-0.3, 0.4)]
        np.testing.assert_array_equal(m[:, 0], m[:, 4])  # width_factor None: one draw
        z = _drawn_matrices(name, ((0.1, 0.2),), {"width_factor": (-0.5, -0.4)}, x, 1)
        assert np.all((z[:, 4] >= 1.1 - 1e-6) & (z[:, 4] < 1.2 + 1e-6))
        assert np.all((z[:, 0] >= 0.5 - 1e-6) & (z[:, 0] < 0.6 + 1e-6))
    for p, (lo, hi) in zip(params, bounds):
        assert p.min() >= lo - 1e-5 and p.max() <= hi + 1e-5
        width = hi - lo
        assert p.min() < lo + 0.01 * width and p.max() > hi - 0.01 * width
        assert abs(np.mean(p) - (lo + hi) / 2) < 0.03 * width  # uniform's mean


def test_random_contrast_and_brightness_draws():
    rng = np.random.default_rng(4)
    x = rng.uniform(60, 200, (500, 4, 5, 3)).astype(np.float32)
    mean = x.mean(axis=(1, 2), keepdims=True)
    # contrast: (x - mean) * c + mean, c in [1 - 0.4, 1 + 0.25), one c per batch (tf-keras)
    layer = sepconv.RandomContrast((0.4, 0.25), seed=2).train()
    cs = []
    for _ in range(200):
        y = layer(torch.from_numpy(x[:2])).numpy()
        c = (y - mean[:2]) / (x[:2] - mean[:2])
        c = np.median(c)
        want = tf.clip_by_value(tf.image.adjust_contrast(x[:2], c), 0, 255).numpy()
        np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-3)
        cs.append(c)
    cs = np.array(cs)
    assert cs.min() >= 0.6 - 1e-4 and cs.max() <= 1.25 + 1e-4
    assert cs.min() < 0.65 and cs.max() > 1.2
    # from a Keras 3 file: one c per image, clipped to its value_range
    with sepconv.activations.keras_flavour("keras3"):
        k3 = sepconv.RandomContrast.from_config(
            keras.layers.RandomContrast(0.5, value_range=(0, 150), seed=1).get_config())
    y = k3.train()(torch.from_numpy(x)).numpy()
    assert y.max() <= 150 and k3.value_range == [0, 150]
    inside = (y > 0) & (y < 150)
    per_image = [np.unique(np.round(((y - mean) / (x - mean))[i][inside[i]], 3)).size
                 for i in range(20)]
    assert max(per_image) <= 2  # one factor per image (rounding aside) ...
    cs = np.array([np.median(((y - mean) / (x - mean))[i][inside[i]]) for i in range(500)])
    assert cs.min() >= 1.0 - 1e-4 and cs.max() <= 1.5 + 1e-4  # Keras 3's (0, 0.5): [1, 1.5)
    assert np.unique(np.round(cs, 4)).size > 400  # ... different across images
    # brightness: one delta per image in factor * 255, clipped to value_range
    b = sepconv.RandomBrightness((-0.1, 0.2), value_range=(0, 255), seed=3).train()
    y = b(torch.from_numpy(x)).numpy()
    d = (y - x).reshape(500, -1)
    assert np.all(np.ptp(d, axis=1) < 1e-3)
    d = d[:, 0] / 255
    assert d.min() >= -0.1 - 1e-5 and d.max() <= 0.2 + 1e-5
    assert d.min() < -0.09 and d.max() > 0.19
    y = sepconv.RandomBrightness(1.0, value_range=(0, 1), seed=3).train()(
        torch.from_numpy(x / 255)).numpy()
    assert y.min() >= 0 and y.max() <= 1 and np.any(y == 0) and np.any(y == 1)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_random_layer_signature_config_and_keras3_config(name):
    args, kwargs = LAYERS[name]
    r_name = "layer_" + sepconv.layers.base.snake_case(name)
    required = sum(1 for p in __import__("inspect").signature(
        getattr(tf_keras.layers, name)).parameters.values() if p.default is p.empty
        and p.kind is p.POSITIONAL_OR_KEYWORD)
    check_signature(getattr(sepconv, name), getattr(tf_keras.layers, name),
                    getattr(sepconv, r_name), required=required)
    ours = getattr(sepconv, name)(*args, seed=3, name="a", **kwargs)
    ref = getattr(tf_keras.layers, name)(*args, seed=3, name="a", **kwargs)
    assert strip_config(ours.get_config()) == _config(ref)
    assert type(ours).from_config(ours.get_config()).get_config() == ours.get_config()
    assert type(ours).from_config(ref.get_config()).get_config() == ours.get_config()
    k3 = getattr(keras.layers, name)(*args, seed=3, name="a", **kwargs)
    ours3 = _keras3_layer(type(ours), k3)
    assert ours3._keras3_file
    mine = strip_config(ours3.get_config())
    theirs = strip_config({k: v for k, v in k3.get_config().items()
                           if k in ours3.get_config()})
    theirs["dtype"] = "float32"
    if name == "RandomContrast":  # Keras 3 reads f as (0, f): contrast in [1, 1 + f)
        assert theirs["factor"] == (0, 0.4)
    assert mine == theirs
    # Keras 3 reads sepconv's config back
    again = getattr(keras.layers, name).from_config(ours.get_config())
    assert again.seed == 3


def test_random_layer_errors_and_r():
    with pytest.raises(ValueError, match="mode"):
        sepconv.RandomFlip("diagonal")
    with pytest.raises(ValueError, match="fill_mode"):
        sepconv.RandomRotation(0.1, fill_mode="mirror")
    with pytest.raises(ValueError, match="interpolation"):
        sepconv.RandomZoom(0.1, interpolation="bicubic")
    with pytest.raises(ValueError, match="factor"):
        sepconv.RandomRotation((0.3, 0.1))
    with pytest.raises(ValueError, match="height_factor"):
        sepconv.RandomTranslation(1.5, 0.1)
    with pytest.raises(ValueError, match="width_factor"):
        sepconv.RandomTranslation(0.1, (0.5, -0.5))
    with pytest.raises(ValueError, match="height_factor"):
        sepconv.RandomZoom((-1.5, 0.0))
    with pytest.raises(ValueError, match="width_factor"):
        sepconv.RandomZoom(0.1, width_factor=-1.5)
    with pytest.raises(ValueError, match="factor"):
        sepconv.RandomContrast(-0.1)
    with pytest.raises(ValueError, match="factor"):
        sepconv.RandomBrightness(1.5)
    with pytest.raises(ValueError, match="value_range"):
        sepconv.RandomBrightness(0.1, value_range=(0, 1, 2))
    with pytest.raises(TypeError, match="fill_value"):
        sepconv.RandomRotation(0.1, fill_value="zero")
    with pytest.raises(ValueError, match="rank 4"):
        sepconv.RandomFlip().train()(torch.zeros(2, 3))
    layer = sepconv.layer_random_rotation(factor=0.1, seed=2.0, fill_mode="Constant")
    assert (layer.seed, layer.fill_mode) == (2, "constant")
    assert isinstance(sepconv.layer_random_flip(torch.nn.Sequential(), "horizontal")[0],
                      sepconv.RandomFlip)


# -- model files -------------------------------------------------------------------------

import os  # noqa: E402

from keras_files import Cases, check, outputs  # noqa: E402


def _augmented_classifier(K, tf_keras_only, nested):
    """Keras' image-classification tutorial shape: a ``data_augmentation`` Sequential
    (``nested``; else its layers inline) in front of ``Rescaling`` and a Conv2D stack, with
    every layer of this file inside."""
    L = K.layers
    augment = [L.RandomFlip("horizontal", seed=1), L.RandomRotation(0.1, seed=2),
               L.RandomZoom(0.1, seed=3), L.RandomTranslation(0.1, 0.2, seed=4),
               L.RandomContrast(0.2, seed=5), L.RandomBrightness(0.1, seed=6)]
    if tf_keras_only:
        augment += [L.RandomHeight(0.2, seed=7), L.RandomWidth(0.2, seed=8)]
    x = K.Input((18, 20, 3))
    if nested:
        h = K.Sequential(augment, name="data_augmentation")(x)
    else:
        h = x
        for layer in augment:
            h = layer(h)
    h = L.CenterCrop(16, 18)(h)
    h = L.RandomCrop(14, 14, seed=9)(h)
    h = L.Rescaling(1.0 / 255)(h)
    h = L.Conv2D(6, 3, activation="relu")(h)
    h = L.MaxPooling2D()(h)
    h = L.Conv2D(8, 3, activation="relu", padding="same")(h)
    h = L.GlobalAveragePooling2D()(h)
    return K.Model(x, L.Dense(4)(h))


def test_augmented_model_files_from_both_kerases_load_and_go_back(tmp_path):
    """tf-keras' .h5 and .keras and Keras 3's .keras (the tutorial's nested
    ``data_augmentation`` model, and the same layers inline) load in a child without
    TensorFlow and give ``predict``'s numbers (Keras 3's RandomCrop passes the 16 x 18
    images through there, tf-keras' resizes them); sepconv writes the inline ones back
    and each Keras reads the same numbers and the same layers; in ``train()`` the loaded
    layers augment."""
    rng = np.random.default_rng(6)
    x = rng.uniform(0, 255, (3, 18, 20, 3)).astype(np.float32)
    cases = Cases(tmp_path)
    names = []
    for tag, K, exts in (("tk", tf_keras, (".h5", ".keras")), ("k3", keras, (".keras",))):
        for nested in (True, False):
            K.utils.set_random_seed(4)
            model = _augmented_classifier(K, tag == "tk", nested)
            y = outputs(model.predict(x, verbose=0))
            for ext in exts:
                name = f"{tag}_{'nested' if nested else 'flat'}{ext}"
                model.save(os.path.join(tmp_path, name))
                cases.add(name, "model", os.path.join(tmp_path, name), [x], y)
                names.append(name)
    results = cases.run()
    for name in names:
        check(results[name])
    # (sepconv writes .keras files as Keras 3's, which has no RandomHeight / RandomWidth)
    for name, load in (("tk_flat.h5", tf_keras.models.load_model),
                       ("k3_flat.keras", keras.saving.load_model)):
        ours = sepconv.load_keras_model(os.path.join(tmp_path, name))
        with torch.no_grad():
            want = ours(torch.from_numpy(x)).numpy()
        kinds = sorted(type(m).__name__ for m in ours.modules()
                       if type(m).__module__.endswith("augmentation"))
        assert len(kinds) == (10 if name.startswith("tk") else 8)
        back = os.path.join(tmp_path, "back_" + name)
        sepconv.save_keras_model(ours, back)
        again = load(back)
        np.testing.assert_allclose(again.predict(x, verbose=0), want, rtol=1e-5, atol=1e-5)
        assert sorted(type(m).__name__ for m in again.layers if type(m).__name__ in kinds) \
            == kinds
        ours.train()
        with torch.no_grad():
            assert not np.allclose(ours(torch.from_numpy(x)).numpy(), want)


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def test_writers_refuse_what_the_other_keras_computes_otherwise(tmp_path):
    """RandomHeight / RandomWidth: no Keras 3 class; RandomCrop: inference differs (a
    tf-keras one to .keras, a Keras 3 one to .h5 refused); RandomContrast: Keras 3 gets
    its factor as the pair (it reads a number f as (0, f)), tf-keras no value_range."""
    def model(*layers):
        return torch.nn.Sequential(*layers, sepconv.Conv2D(2, 3)).eval()

    shape = {"input_shape": (8, 8, 1)}
    with pytest.raises(ValueError, match="RandomHeight"):
        sepconv.save_keras_model(model(sepconv.RandomHeight(0.2, **shape)),
                                 os.path.join(tmp_path, "a.keras"))
    with pytest.raises(ValueError, match="RandomCrop.*save as .h5"):
        sepconv.save_keras_model(model(sepconv.RandomCrop(6, 6, **shape)),
                                 os.path.join(tmp_path, "b.keras"))
    k3 = _keras3_layer(sepconv.RandomCrop, keras.layers.RandomCrop(6, 6))
    k3.build((None, 8, 8, 1))
    with pytest.raises(ValueError, match="RandomCrop.*save as .keras"):
        sepconv.save_keras_model(model(sepconv.InputLayer((8, 8, 1)), k3),
                                 os.path.join(tmp_path, "c.h5"))
    path = os.path.join(tmp_path, "d.keras")
    sepconv.save_keras_model(model(sepconv.RandomContrast(0.3, **shape)), path)
    back = [m for m in keras.saving.load_model(path).layers
            if type(m).__name__ == "RandomContrast"][0]
    assert tuple(back.factor) == (0.3, 0.3)  # Keras 3 then draws in [0.7, 1.3), as tf-keras
    k3 = _keras3_layer(sepconv.RandomContrast,
                       keras.layers.RandomContrast(0.3, value_range=(0, 1)))
    k3.build((None, 8, 8, 1))
    with pytest.raises(ValueError, match="value_range"):
        sepconv.save_keras_model(model(sepconv.InputLayer((8, 8, 1)), k3),
                                 os.path.join(tmp_path, "e.h5"))


# -- Keras 3 configs with data_format="channels_first" -------------------------------------
def _channels_first_layers(L):
    return {"resize": L.Resizing(11, 8, data_format="channels_first"),  # bilinear (bicubic:
            # Keras 3 on torch runs torch's kernel, not TensorFlow's)
            "center": L.CenterCrop(9, 6, data_format="channels_first"),
            "crop": L.RandomCrop(5, 4, data_format="channels_first"),
            "flip": L.RandomFlip("horizontal", data_format="channels_first"),
            # fixed draws (equal bounds): the transform itself is compared
            "rotation": L.RandomRotation((0.1, 0.1), fill_mode="reflect",
                                         data_format="channels_first"),
            "translation": L.RandomTranslation((0.2, 0.2), (-0.3, -0.3), fill_mode="constant",
                                               data_format="channels_first"),
            "zoom": L.RandomZoom((0.3, 0.3), (-0.2, -0.2), fill_mode="nearest",
                                 data_format="channels_first"),
            "contrast": L.RandomContrast((0.0, 0.0), data_format="channels_first"),
            "brightness": L.RandomBrightness((0.0, 0.0), data_format="channels_first")}


def test_keras3_channels_first_layers_compute_what_keras3_computes():
    """Built from Keras 3 configs with ``data_format="channels_first"``: inference equals
    Keras 3's, and so does training where the draw is fixed (equal factor bounds); a random
    flip gives each image flipped along its columns or not, a random crop a window."""
    from sepconv.interop.models import build_layer
    x = np.random.default_rng(4).uniform(0, 255, (2, 3, 10, 7)).astype(np.float32)
    for name, theirs in _channels_first_layers(keras.layers).items():
        ours = build_layer(keras.saving.serialize_keras_object(theirs), "keras3").eval()
        want = keras.ops.convert_to_numpy(theirs(x, training=False))
        got = ours(torch.from_numpy(x)).numpy()
        assert got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3, err_msg=name)
        if name in ("resize", "center"):
            assert ours.compute_output_shape(x.shape) == want.shape
            continue
        got = ours(torch.from_numpy(x), training=True).numpy()
        if name == "flip":
            for g, image in zip(got, x):
                assert np.array_equal(g, image) or np.array_equal(g, image[:, :, ::-1])
        elif name == "crop":
            assert got.shape == (2, 3, 5, 4)
            assert any(np.array_equal(got, x[:, :, i:i + 5, j:j + 4])
                       for i in range(6) for j in range(4))
        else:
            want = keras.ops.convert_to_numpy(theirs(x, training=True))
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3, err_msg=name)


def test_keras3_channels_first_file_loads_and_goes_back(tmp_path):
    L = keras.layers
    layers = _channels_first_layers(L)
    inp = keras.Input((3, 10, 7))
    h = layers["resize"](inp)
    for name in ("center", "flip", "rotation", "translation", "zoom", "contrast",
                 "brightness", "crop"):
        h = layers[name](h)
    out = L.Conv2D(2, 3, data_format="channels_first")(h)
    model = keras.Model(inp, out)
    x = np.random.default_rng(5).uniform(0, 255, (2, 3, 10, 7)).astype(np.float32)
    want = keras.ops.convert_to_numpy(model.predict(x, verbose=0))
    path = str(tmp_path / "cf.keras")
    model.save(path)
    ours = sepconv.load_keras_model(path)
    with torch.no_grad():
        got = ours(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3 * np.abs(want).max())
    back = str(tmp_path / "back.keras")
    sepconv.save_keras_model(ours, back)
    again = keras.saving.load_model(back).predict(x, verbose=0)
    np.testing.assert_allclose(again, want, rtol=1e-5, atol=1e-3 * np.abs(want).max())
    with pytest.raises(ValueError, match="channels_first"):
        sepconv.save_keras_model(ours, str(tmp_path / "cf.h5"))
