"""Keras' ``Resizing`` against tf-keras 2.21 (``tf.image.resize`` v2) and Keras 3.15: every
interpolation sepconv computes, up and down, with and without ``crop_to_aspect_ratio``,
forward and gradients; and TensorFlow's speech-commands tutorial model (spectrogram ->
``Resizing`` -> ``Normalization`` -> Conv2D ...) from both Kerases' files."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

import sepconv  # noqa: E402
from keras_files import Cases, check, outputs, run_keras3_tensorflow  # noqa: E402
from tf_keras_compare import check_signature, strip_config  # noqa: E402

METHODS = sepconv.functional.RESIZE_METHODS


@settings(max_examples=40, deadline=None, derandomize=True)
@given(method=st.sampled_from(METHODS), rows=st.integers(1, 12), cols=st.integers(1, 12),
       height=st.integers(1, 12), width=st.integers(1, 12), crop=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_forward_and_gradients_match_tf_keras(method, rows, cols, height, width, crop, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, rows, cols, 3)).astype(np.float32)
    ref = tf_keras.layers.Resizing(height, width, interpolation=method,
                                   crop_to_aspect_ratio=crop)
    ours = sepconv.Resizing(height, width, interpolation=method, crop_to_aspect_ratio=crop)
    if crop and (min(rows, int(np.float32(cols * height) / np.float32(width))) == 0 or
                 min(cols, int(np.float32(rows * width) / np.float32(height))) == 0):
        with pytest.raises(tf.errors.InvalidArgumentError):
            ref(x)
        with pytest.raises(ValueError, match="no non-empty window"):
            ours(x)
        return
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        yr = ref(xt)
        r = tf.constant(rng.standard_normal(yr.shape).astype(np.float32))
        total = tf.reduce_sum(yr * r)
    gr = tape.gradient(total, xt) if method != "area" else _adjoint_by_basis(ref, x, r)
    xs = torch.from_numpy(x).requires_grad_()
    y = ours(xs)
    assert tuple(y.shape) == tuple(yr.shape) == ours.compute_output_shape(x.shape)
    np.testing.assert_allclose(y.detach().numpy(), yr.numpy(), rtol=1e-5, atol=1e-5)
    (y * torch.from_numpy(r.numpy())).sum().backward()
    np.testing.assert_allclose(xs.grad.numpy(), gr.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows,cols,height,width", [
    (13, 10, 5, 7), (5, 4, 13, 11), (100, 3, 33, 7), (7, 9, 7, 9), (1, 1000, 3, 1),
    (37, 64, 99, 301), (8, 8, 3, 3)])
def test_area_is_tensorflow_resize_area(rows, cols, height, width):
    """``area`` against ``tf.image.resize`` itself, down and up by non-integer ratios (and
    long axes, where TensorFlow's float32 window ends pass the last pixel); ``antialias``
    changes nothing in TensorFlow for it."""
    x = np.random.default_rng(rows * cols).standard_normal((2, rows, cols, 3))
    want = tf.image.resize(x.astype(np.float32), (height, width), method="area").numpy()
    assert np.array_equal(want, tf.image.resize(x.astype(np.float32), (height, width),
                                                method="area", antialias=True).numpy())
    got = sepconv.functional.resize(torch.from_numpy(x), (height, width), "area")
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


def _adjoint_by_basis(ref, x, r):
    """TensorFlow has no gradient for ResizeArea: the adjoint of its forward (a linear map
    of each image channel), from tf-keras' layer on every one-pixel image, applied to
    ``r``."""
    _, rows, cols, _ = x.shape
    basis = np.eye(rows * cols, dtype=np.float32).reshape(rows * cols, rows, cols, 1)
    columns = ref(basis).numpy().reshape(rows * cols, -1)  # (pixel in, pixel out)
    r = r.numpy()
    flat = r.reshape(r.shape[0], -1, r.shape[-1])  # (batch, pixel out, channel)
    return np.einsum("io,boc->bic", columns, flat).reshape(x.shape)


@pytest.mark.parametrize("method", ["bilinear", "nearest", "bicubic", "area"])
def test_images_of_other_dtypes_and_ranks(method):
    """uint8 images and one unbatched image, as tf-keras takes them."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (2, 9, 7, 3)).astype(np.uint8)
    ref = tf_keras.layers.Resizing(5, 11, interpolation=method)
    ours = sepconv.Resizing(5, 11, interpolation=method)
    y = ours(torch.from_numpy(x))
    assert y.dtype == torch.float32
    np.testing.assert_allclose(y.numpy(), ref(x).numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ours(x[0]).numpy(), ref(x[0]).numpy(), rtol=1e-5, atol=1e-4)


# (Keras 3's torch backend resizes bicubic with torch's kernel, a = -0.75 with edge
# repetition; its TensorFlow backend, which R keras3 uses, with TensorFlow's, as sepconv)
@pytest.mark.parametrize("method", ["bilinear", "nearest"])
def test_keras3_computes_the_same(method):
    x = np.random.default_rng(2).standard_normal((2, 13, 6, 2)).astype(np.float32)
    ref = keras.layers.Resizing(7, 9, interpolation=method)
    y = sepconv.Resizing(7, 9, interpolation=method)(torch.from_numpy(x))
    np.testing.assert_allclose(y.numpy(), np.asarray(ref(x)), rtol=1e-5, atol=1e-5)


KERAS3_TF_AREA = """
import sys
import numpy as np
L = keras.layers
x = np.random.default_rng(6).standard_normal((2, 13, 10, 2)).astype(np.float32)
inp = keras.Input((13, 10, 2))
outs = [L.Resizing(5, 7, interpolation="area", antialias=True)(inp),
        L.Resizing(20, 23, interpolation="area")(inp),
        L.Resizing(6, 6, interpolation="area", crop_to_aspect_ratio=True)(inp),
        L.Resizing(9, 4, interpolation="nearest", antialias=True)(inp)]
model = keras.Model(inp, outs)
model.save(os.path.join(sys.argv[1], "area.keras"))
np.savez(os.path.join(sys.argv[1], "area.npz"), x, *model.predict(x, verbose=0))
"""


def test_keras3_tensorflow_backend_area_file(tmp_path):
    """Keras 3's torch backend refuses ``area``; its TensorFlow backend (R keras3's)
    resizes with ``tf.image.resize``, passing ``antialias`` (ignored for area and nearest):
    a .keras file it wrote loads in sepconv to its ``predict``."""
    run_keras3_tensorflow(KERAS3_TF_AREA, str(tmp_path))
    saved = np.load(tmp_path / "area.npz")
    x, want = saved["arr_0"], [saved[f"arr_{i}"] for i in range(1, len(saved.files))]
    ours = sepconv.load_keras_model(str(tmp_path / "area.keras"))
    with torch.no_grad():
        got = ours(torch.from_numpy(x))
    assert len(got) == len(want) == 4
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-5, atol=1e-5)


def test_signature_config_and_errors():
    check_signature(sepconv.Resizing, tf_keras.layers.Resizing, sepconv.layer_resizing,
                    required=2)
    ours = sepconv.Resizing(4, 5, interpolation="Bicubic", crop_to_aspect_ratio=True,
                            name="r")
    ref = tf_keras.layers.Resizing(4, 5, interpolation="bicubic", crop_to_aspect_ratio=True,
                                   name="r")
    assert strip_config(ours.get_config()) == strip_config(ref.get_config())
    assert sepconv.Resizing.from_config(ours.get_config()).get_config() == ours.get_config()
    with pytest.raises(ValueError, match="interpolation='box'"):
        sepconv.Resizing(4, 5, interpolation="box")
    # Keras 3's antialias: read where TensorFlow ignores it (nearest, area), else refused
    k3 = keras.layers.Resizing(4, 5, interpolation="area", antialias=True).get_config()
    assert sepconv.Resizing.from_config(k3).interpolation == "area"
    with pytest.raises(ValueError, match="antialias=True with interpolation='bilinear'"):
        sepconv.Resizing.from_config(dict(k3, interpolation="bilinear"))
    with pytest.raises(ValueError, match="height"):
        sepconv.Resizing(0, 5)
    with pytest.raises(ValueError, match="data_format='NCHW'"):
        sepconv.Resizing.from_config({"height": 2, "width": 2, "data_format": "NCHW"})
    with pytest.raises(ValueError, match="rank 4"):
        sepconv.Resizing(2, 2)(torch.zeros(3, 4))
    assert sepconv.layer_resizing(height=4.0, width=5.0).height == 4


def _speech_commands(K, spectrograms):
    """TensorFlow's "simple audio recognition" tutorial model."""
    L = K.layers
    norm = L.Normalization()
    norm.adapt(spectrograms)
    x = L.Input((40, 33, 1))
    h = norm(L.Resizing(32, 32)(x))
    h = L.Conv2D(8, 3, activation="relu")(h)
    h = L.Conv2D(16, 3, activation="relu")(h)
    h = L.Dropout(0.25)(L.MaxPooling2D()(h))
    h = L.Dense(32, activation="relu")(L.Flatten()(h))
    return K.Model(x, L.Dense(8)(L.Dropout(0.5)(h)))


def test_speech_commands_tutorial_model_files_both_ways(tmp_path):
    rng = np.random.default_rng(3)
    spectrograms = np.abs(rng.standard_normal((16, 40, 33, 1))).astype(np.float32)
    x = spectrograms[:3]
    cases = Cases(tmp_path)
    names = []
    for tag, K, exts in (("tk", tf_keras, (".h5", ".keras")), ("k3", keras, (".keras",))):
        K.utils.set_random_seed(4)
        model = _speech_commands(K, spectrograms)
        y = outputs(model.predict(x, verbose=0))
        for ext in exts:
            path = os.path.join(tmp_path, f"{tag}{ext}")
            model.save(path)
            cases.add(tag + ext, "model", path, [x], y)
            names.append(tag + ext)
    results = cases.run()
    for name in names:
        check(results[name])
    # and back: tf-keras reads sepconv's .h5, Keras 3 its .keras, with the same outputs
    for tag, ext, load in (("tk", ".h5", tf_keras.models.load_model),
                           ("k3", ".keras", keras.saving.load_model)):
        ours = sepconv.load_keras_model(os.path.join(tmp_path, f"{tag}{ext}"))
        with torch.no_grad():
            want = ours(torch.from_numpy(x)).numpy()
        sepconv.save_keras_model(ours, os.path.join(tmp_path, f"back_{tag}{ext}"))
        again = load(os.path.join(tmp_path, f"back_{tag}{ext}"))
        np.testing.assert_allclose(again.predict(x, verbose=0), want, rtol=1e-5, atol=1e-5)
