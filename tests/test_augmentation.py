"""Keras' image preprocessing / augmentation layers against tf-keras 2.21 and Keras 3.15:
the deterministic parts exactly (CenterCrop, RandomCrop's inference, the projective
transform kernel and its matrices with the same drawn parameters), the random draws by
their distribution (ranges, frequencies) and by a seeded layer repeating itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings, strategies as st

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

import sepconv  # noqa: E402
from sepconv import functional as F  # noqa: E402
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
def test_center_crop_and_random_crop_inference_match_both_kerases(rows, cols, height, width,
                                                                 unbatched, seed):
    """Larger images are cropped, smaller ones (on either axis) resized: tf-keras'
    CenterCrop and RandomCrop(training=False), Keras 3's CenterCrop; Keras 3's
    RandomCrop(training=False) returns its input."""
    smaller = rows < height or cols < width
    assume(not _aspect_window_empty(rows, cols, height, width))
    x = np.random.default_rng(seed).uniform(0, 255, (2, rows, cols, 3)).astype(np.float32)
    if unbatched:
        x = x[0]
    want = tf_keras.layers.CenterCrop(height, width)(x).numpy()
    got = sepconv.CenterCrop(height, width)(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape == x.shape[:-3] + (height, width, 3)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    if not smaller:
        assert np.array_equal(got, want)
    k3 = np.asarray(keras.layers.CenterCrop(height, width)(x))
    np.testing.assert_allclose(got, k3, rtol=1e-5, atol=1e-4)
    # RandomCrop at inference: tf-keras always resizes (the aspect-ratio window)
    ours = sepconv.RandomCrop(height, width, seed=1).eval()
    want = tf_keras.layers.RandomCrop(height, width, seed=1)(x, training=False).numpy()
    np.testing.assert_allclose(ours(torch.from_numpy(x)).numpy(), want, rtol=1e-5, atol=1e-4)
    ref3 = keras.layers.RandomCrop(height, width, seed=1)
    ours3 = _keras3_layer(sepconv.RandomCrop, ref3).eval()
    assert ours3._keras3 and not ours._keras3
    np.testing.assert_array_equal(ours3(torch.from_numpy(x)).numpy(),
                                  np.asarray(ref3(x, training=False)))


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
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "bicubic"])
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
    with pytest.raises(ValueError, match="channels_first"):
        sepconv.CenterCrop.from_config({"height": 2, "width": 2,
                                        "data_format": "channels_first"})
    with pytest.raises(ValueError, match="factor"):
        sepconv.RandomHeight((0.5, 0.1))
    with pytest.raises(ValueError, match="factor"):
        sepconv.RandomWidth(-1.5)
    with pytest.raises(ValueError, match="area"):
        sepconv.RandomWidth(0.2, interpolation="area")
    layer = sepconv.layer_random_crop(height=4.0, width=5.0, seed=7.0)
    assert (layer.height, layer.width, layer.seed) == (4, 5, 7)
    model = sepconv.layer_center_crop(torch.nn.Sequential(), height=2, width=2)
    assert isinstance(model[0], sepconv.CenterCrop)
