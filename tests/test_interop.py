"""Keras layers carried over to sepconv and back give Keras' own outputs."""

import numpy as np
import pytest
import torch

import sepconv
from sepconv.interop import from_keras, to_keras

CASES = [
    dict(filters=5, kernel_size=3, padding="same", depth_multiplier=2, activation="relu"),
    dict(filters=4, kernel_size=4, strides=2, use_bias=False, depthwise_regularizer="l2",
         pointwise_constraint="max_norm"),
    dict(filters=3, kernel_size=2, dilation_rate=2, activation="tanh",
         bias_initializer="ones"),
]


def _numpy(y):
    return y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)


def _keras_modules():
    import keras
    mods = [keras]
    try:
        import tf_keras
        mods.append(tf_keras)
    except ImportError:
        pass
    return mods


@pytest.mark.parametrize("case", range(len(CASES)))
def test_from_keras_matches_keras_outputs(case):
    x = np.random.default_rng(case).standard_normal((2, 11, 6)).astype("float32")
    for kmod in _keras_modules():
        theirs = kmod.layers.SeparableConv1D(**CASES[case])
        expected = _numpy(theirs(x))
        ours = from_keras(theirs)
        np.testing.assert_allclose(ours(x).detach().numpy(), expected, atol=1e-5)
        assert ours.get_config()["filters"] == CASES[case]["filters"]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_to_keras_matches_sepconv_outputs(case):
    x = np.random.default_rng(10 + case).standard_normal((3, 9, 4)).astype("float32")
    ours = sepconv.SeparableConv1D(**CASES[case], input_shape=(None, 4))
    for kmod in _keras_modules():
        theirs = to_keras(ours, kmod)
        np.testing.assert_allclose(_numpy(theirs(x)), ours(x).detach().numpy(),
                                   atol=1e-5)


def test_unbuilt_keras_layer_gives_unbuilt_sepconv_layer():
    import keras
    ours = from_keras(keras.layers.SeparableConv1D(2, 3))
    assert not ours.built
    assert ours(torch.zeros(1, 5, 3)).shape == (1, 3, 2)


def test_from_keras_rejects_layers_sepconv_does_not_have():
    import keras
    # (AlphaDropout, RandomFlip, RandomInvert are mapped now: of Keras 3.15's layer
    # classes only the framework wrappers are not)
    with pytest.raises(TypeError, match="TorchModuleWrapper"):
        from_keras(keras.layers.TorchModuleWrapper(torch.nn.Linear(2, 2)))
    with pytest.raises(TypeError, match="Keras layer"):
        from_keras(object())
    with pytest.raises(TypeError, match="save_keras_model"):
        to_keras(sepconv.Dense(3), keras)


FAMILY = [  # (class name, arguments, input shape)
    ("Conv2D", dict(filters=4, kernel_size=3, strides=2, padding="same"), (2, 9, 8, 3)),
    ("Conv1D", dict(filters=3, kernel_size=4, padding="causal", dilation_rate=2), (2, 11, 3)),
    ("Conv2DTranspose", dict(filters=2, kernel_size=3, strides=2), (2, 5, 4, 3)),
    ("DepthwiseConv2D", dict(kernel_size=3, depth_multiplier=2), (2, 7, 6, 3)),
    ("SeparableConv2D", dict(filters=3, kernel_size=2, activation="hard_sigmoid"), (2, 6, 6, 3)),
    ("Dense", dict(units=5, activation="relu"), (2, 7, 3)),
    ("BatchNormalization", dict(), (2, 7, 3)),
    ("UpSampling2D", dict(size=2, interpolation="bilinear"), (2, 4, 5, 3)),
]


@pytest.mark.parametrize("case", [c[0] for c in FAMILY])
def test_from_keras_carries_any_family_layer(case):
    """Config and weights of a built tf-keras / Keras 3 layer: the same outputs (a Keras 3
    layer with Keras 3's hard_sigmoid, a tf-keras one with tf-keras')."""
    name, kwargs, shape = next(c for c in FAMILY if c[0] == case)
    x = np.random.default_rng(len(name)).standard_normal(shape).astype("float32")
    for kmod in _keras_modules():
        theirs = getattr(kmod.layers, name)(**kwargs)
        expected = _numpy(theirs(x))
        ours = from_keras(theirs).eval()
        assert type(ours).__name__ == name
        np.testing.assert_allclose(ours(x).detach().numpy(), expected, atol=1e-5)


def test_saving_builds_a_sequential_from_its_input_shape(tmp_path):
    """Keras builds a Sequential whose first layer has an ``input_shape`` at once; sepconv
    builds the layers not called yet when it saves such a model (the file then holds
    their weights, and the model computes with them)."""
    pytest.importorskip("h5py")
    model = torch.nn.Sequential(
        sepconv.SeparableConv1D(4, 3, padding="causal", input_shape=(None, 12)),
        sepconv.Bidirectional(sepconv.LSTM(3, return_sequences=True)),
        sepconv.GRU(2), sepconv.Dense(5, activation="softmax")).eval()
    assert not model[1].built
    for ext in (".h5", ".keras"):
        sepconv.save_keras_model(model, tmp_path / f"m{ext}")
        assert all(layer.built for layer in model)
        x = torch.randn(2, 9, 12)
        with torch.no_grad():
            torch.testing.assert_close(sepconv.load_keras_model(tmp_path / f"m{ext}")(x),
                                       model(x))
    unknown = torch.nn.Sequential(sepconv.Dense(3), sepconv.Dense(2))
    with pytest.raises(ValueError, match="has no weights yet"):
        sepconv.save_keras_model(unknown, tmp_path / "u.h5")


@pytest.mark.parametrize("layer,shape", [
    (lambda: sepconv.RMSNormalization(), (5, 4)),
    (lambda: sepconv.AdaptiveAveragePooling1D(2), (6, 3)),
    (lambda: sepconv.GroupQueryAttention(4, 2, 1, query_shape=(None, 5, 4),
                                         value_shape=(None, 5, 4)), None)])
def test_keras3_only_layers_are_not_written_to_h5(layer, shape, tmp_path):
    """tf-keras 2 (and R keras 2) has no such class: an .h5 file would load nowhere."""
    pytest.importorskip("h5py")
    layer = layer()
    if shape is not None:
        layer(torch.zeros((1,) + shape))
    model = torch.nn.Sequential(layer)
    with pytest.raises(ValueError, match="exists in Keras 3 only.*save as .keras"):
        sepconv.save_keras_model(model, tmp_path / "m.h5", input_shape=shape or (5, 4))
    assert not (tmp_path / "m.h5").exists()
