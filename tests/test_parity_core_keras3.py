"""The core layers against Keras 3.15 (torch backend): the same numbers where Keras 3 and
tf-keras agree, and the documented differences where they do not (BatchNormalization's
moving variance; a loader of Keras 3 files sets ``keras_version = 3``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover - conftest sets it
    pytest.skip("Keras 3 must run on the torch backend", allow_module_level=True)

import sepconv  # noqa: E402

pytestmark = [pytest.mark.usefixtures("torch_single_thread"),
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

CASES = [
    ("Dense", dict(units=3, activation="relu"), (2, 4, 5)),
    ("ReLU", dict(negative_slope=0.1, max_value=1.5, threshold=0.3), (4, 5)),
    ("LeakyReLU", dict(), (4, 5)),
    ("PReLU", dict(shared_axes=[1]), (2, 3, 4)),
    ("ELU", dict(alpha=0.5), (4, 5)),
    ("Softmax", dict(axis=1), (2, 3, 4)),
    ("Flatten", dict(data_format="channels_first"), (2, 3, 4, 5)),
    ("Reshape", dict(target_shape=(4, -1)), (2, 3, 4)),
    ("Permute", dict(dims=(2, 1)), (2, 3, 4)),
    ("RepeatVector", dict(n=3), (2, 4)),
    ("BatchNormalization", dict(), (4, 3, 5, 2)),
    # Keras 3's torch backend cannot normalise over non-trailing axes (torch layer_norm)
    ("LayerNormalization", dict(axis=[2, 3]), (2, 3, 4, 5)),
    ("MaxPooling2D", dict(pool_size=3, strides=2, padding="same"), (2, 7, 6, 3)),
    # Keras 3's torch backend averages uneven 'same' pads as copies of the edge (pool 3,
    # strides 2 on 8 steps: last window (7 + 8 + 8) / 3); tf-keras and sepconv count the
    # real elements only (test_parity_core_tfkeras.py).  Even pads agree:
    ("AveragePooling1D", dict(pool_size=3, strides=1, padding="same"), (2, 8, 3)),
    ("AveragePooling3D", dict(pool_size=2, padding="same"), (1, 3, 5, 4, 2)),
    ("GlobalAveragePooling2D", dict(keepdims=True), (2, 5, 4, 3)),
    ("GlobalMaxPooling1D", dict(), (2, 5, 3)),
]


def _keras3_kwargs(name, kwargs):
    if name == "LeakyReLU" and "alpha" in kwargs:
        kwargs = dict(kwargs, negative_slope=kwargs.pop("alpha"))
    return kwargs


@pytest.mark.parametrize("name,kwargs,shape", CASES, ids=[c[0] for c in CASES])
def test_inference_matches_keras3(name, kwargs, shape):
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    ours = getattr(sepconv, name)(**kwargs).eval()
    ours(torch.from_numpy(x))
    weights = [rng.standard_normal(w.shape).astype(np.float32) * 0.5 for w in
               ours.get_weights()]
    if name == "BatchNormalization":
        weights[3] = np.abs(weights[3]) + 0.5
    ours.set_weights(weights)
    ref = getattr(keras.layers, name)(**_keras3_kwargs(name, dict(kwargs)))
    ref.build(shape)
    ref.set_weights(ours.get_weights())
    xt = torch.tensor(x, requires_grad=True)
    xr = torch.tensor(x, requires_grad=True)
    y, yr = ours(xt), ref(xr, training=False)
    torch.testing.assert_close(y, yr, atol=1e-5, rtol=1e-5)
    r = torch.from_numpy(rng.standard_normal(tuple(y.shape)).astype(np.float32))
    (y * r).sum().backward()
    (yr * r).sum().backward()
    torch.testing.assert_close(xt.grad, xr.grad, atol=1e-5, rtol=1e-5)


def test_merging_matches_keras3():
    rng = np.random.default_rng(0)
    xs = [torch.from_numpy(rng.standard_normal((2, 3, 4)).astype(np.float32))
          for _ in range(3)]
    for name in ("Add", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"):
        torch.testing.assert_close(getattr(sepconv, name)()(xs),
                                   getattr(keras.layers, name)()(xs), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(sepconv.Subtract()(xs[:2]), keras.layers.Subtract()(xs[:2]))


@pytest.mark.parametrize("shape", [(4, 3, 3, 2), (6, 3)])
def test_batch_normalization_keras3_update(shape):
    """Keras 3 updates with the biased variance on every rank; tf-keras (sepconv's default)
    uses the unbiased one on 4D.  ``keras_version = 3`` gives Keras 3's numbers."""
    rng = np.random.default_rng(1)
    ours = sepconv.BatchNormalization(momentum=0.8).train()
    ours.keras_version = 3
    ref = keras.layers.BatchNormalization(momentum=0.8)
    ref.build(shape)
    ours(torch.zeros(shape))
    ours.set_weights(ref.get_weights())
    tf_keras_like = sepconv.BatchNormalization(momentum=0.8).train()
    tf_keras_like(torch.zeros(shape))
    tf_keras_like.set_weights(ref.get_weights())
    for _ in range(3):
        x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
        torch.testing.assert_close(ours(x), ref(x, training=True), atol=1e-5, rtol=1e-5)
        tf_keras_like(x)
    for got, want in zip(ours.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    differs = not np.allclose(tf_keras_like.get_weights()[3], ref.get_weights()[3],
                              atol=1e-4)
    assert differs == (len(shape) == 4)


@pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`:UserWarning")
def test_keras3_configs_build_the_same_layers():
    for ref in (keras.layers.LeakyReLU(negative_slope=0.2),
                keras.layers.InputLayer(shape=(3, 4)),
                keras.layers.Embedding(10, 3),
                keras.layers.SpatialDropout2D(0.2, data_format="channels_first"),
                keras.layers.BatchNormalization(axis=1, momentum=0.9),
                keras.layers.TimeDistributed(keras.layers.Dense(2))):
        name = type(ref).__name__
        ours = getattr(sepconv, name).from_config(ref.get_config())
        if name == "LeakyReLU":
            assert ours.alpha == pytest.approx(0.2)
        if name == "InputLayer":
            assert ours.batch_input_shape == (None, 3, 4)
        if name == "SpatialDropout2D":
            assert ours.data_format == "channels_first"
        if name == "BatchNormalization":
            assert (ours.axis, ours.momentum) == (1, 0.9)
        if name == "TimeDistributed":
            assert isinstance(ours.layer, sepconv.Dense)
    with pytest.raises(ValueError, match="rms_scaling"):
        sepconv.LayerNormalization.from_config(
            keras.layers.LayerNormalization(rms_scaling=True).get_config())
