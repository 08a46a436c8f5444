"""Keras' ``Normalization`` preprocessing layer (R: ``layer_normalization`` and ``adapt``)
against tf-keras 2.21 and Keras 3.15: ``adapt`` statistics, forward (``invert`` too), the
constant ``mean`` / ``variance`` form, configs, and model files whose input is normalised
by an adapted layer (the usual head of a time-series model)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

import sepconv  # noqa: E402
from keras_files import Cases, check, outputs  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")

rng = np.random.default_rng(11)
# features on very different scales and offsets, as sensor channels are
DATA = (rng.standard_normal((70, 6, 3)) * [1.0, 5.0, 0.1] + [0.0, 3.0, -2.0]).astype(np.float32)


@pytest.mark.parametrize("axis", [-1, None, (1, 2), 1, [-2]])
@pytest.mark.parametrize("invert", [False, True])
def test_adapt_and_forward_match_tf_keras(axis, invert):
    ref = tf_keras.layers.Normalization(axis=axis, invert=invert)
    ref.adapt(DATA)
    ours = sepconv.Normalization(axis=axis, invert=invert)
    assert sepconv.adapt(ours, DATA) is ours
    theirs = ref.get_weights()
    mine = ours.get_weights()
    assert [w.shape for w in mine] == [w.shape for w in theirs]
    kept = {a % 3 for a in ([] if axis is None else np.atleast_1d(axis))}
    assert int(mine[2]) == int(theirs[2]) == int(
        np.prod([DATA.shape[a] for a in range(3) if a not in kept]))
    np.testing.assert_allclose(mine[0], theirs[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mine[1], theirs[1], rtol=1e-5, atol=1e-6)
    x = rng.standard_normal((4, 6, 3)).astype(np.float32)
    ours.set_weights(theirs)  # the same statistics: float32 rounding of the formula only
    np.testing.assert_allclose(ours(torch.from_numpy(x)).numpy(), ref(x).numpy(),
                               rtol=1e-6, atol=1e-6)


def test_constant_mean_and_variance_and_config():
    kwargs = dict(axis=-1, mean=[1.0, 2.0, 3.0], variance=[4.0, 0.0, 6.0])
    ref = tf_keras.layers.Normalization(**kwargs)
    ours = sepconv.Normalization(**kwargs)
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    # a zero variance divides by tf-keras' epsilon, 1e-7
    np.testing.assert_allclose(ours(torch.from_numpy(x)).numpy(), ref(x).numpy(), rtol=1e-6)
    assert ours.get_weights() == []
    config = ours.get_config()
    assert config["mean"] == kwargs["mean"] and config["variance"] == kwargs["variance"]
    again = sepconv.Normalization.from_config(config)
    torch.testing.assert_close(again(torch.from_numpy(x)), ours(torch.from_numpy(x)))


def test_adapt_on_batches_and_r_steps():
    """An iterable of batches folds in batch by batch (tf-keras' running formula); R's
    ``steps`` takes the first batches only."""
    batches = [DATA[i:i + 16] for i in range(0, 70, 16)]
    ref = tf_keras.layers.Normalization()
    ref.adapt(tf.data.Dataset.from_tensor_slices(DATA).batch(16))
    ours = sepconv.adapt(sepconv.layer_normalization(), iter(batches))
    for a, b in zip(ours.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    two = sepconv.adapt(sepconv.layer_normalization(), iter(batches), steps=2.0)
    assert int(two.count) == 32 * 6


def test_keras3_normalization_gives_the_same_numbers():
    ref = keras.layers.Normalization(axis=-1)
    ref.adapt(DATA)
    ours = sepconv.Normalization()
    ours.build((None, 6, 3))
    ours.set_weights([np.asarray(w) for w in ref.get_weights()])
    x = rng.standard_normal((4, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(ours(torch.from_numpy(x)).numpy(),
                               np.asarray(ref(x).detach()), rtol=1e-6, atol=1e-6)


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="both `mean` and `variance`"):
        sepconv.Normalization(mean=1.0)
    with pytest.raises(ValueError, match="static `mean` and `variance`"):
        sepconv.Normalization(mean=0.0, variance=1.0).adapt(DATA)
    layer = sepconv.Normalization()
    layer.adapt(DATA)
    with pytest.raises(ValueError, match=r"sizes \[3\] on axis"):
        layer(torch.randn(2, 6, 4))
    with pytest.raises(ValueError, match="does not broadcast"):
        sepconv.Normalization(mean=[0.0, 1.0], variance=[1.0, 1.0])(torch.randn(2, 6, 3))
    with pytest.raises(ValueError, match="range"):
        sepconv.Normalization(axis=3)(torch.randn(2, 6, 3))


def _normalised_model(K, name):
    L = K.layers
    norm = L.Normalization(name="norm")
    norm.adapt(DATA)
    inp = K.Input((6, 3), name="x")
    y = L.Conv1D(4, 3, padding="causal" if K is tf_keras else "valid", name="conv")(norm(inp))
    y = L.GlobalAveragePooling1D(name="gap")(y)
    return K.Model(inp, L.Dense(2, name="out")(y), name=name)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("normalization_files"))
    cases = Cases(root)
    for writer, K, exts in (("tk", tf_keras, (".h5", ".keras")), ("k3", keras, (".keras",))):
        model = _normalised_model(K, f"{writer}_norm")
        x = [rng.standard_normal((3, 6, 3)).astype(np.float32)]
        y = outputs(model.predict(x[0], verbose=0))
        for ext in exts:
            path = os.path.join(root, f"{writer}_norm{ext}")
            model.save(path)
            cases.add(f"{writer}{ext}", "model", path, x, y)
    return cases.run()


@pytest.mark.parametrize("case", ["tk.h5", "tk.keras", "k3.keras"])
def test_model_file_with_adapted_normalization(saved, case):
    check(saved[case])


def test_adapted_layer_saved_for_both_kerases(tmp_path):
    """An adapted Normalization (its mean, variance and int64 count) in a hand-built
    Sequential -> .keras -> Keras 3, and -> .h5 -> tf-keras: the same outputs."""
    norm = sepconv.Normalization(input_shape=(6, 3), name="norm")
    norm.adapt(DATA)
    model = torch.nn.Sequential(norm, sepconv.Dense(2, name="out")).eval()
    x = rng.standard_normal((4, 6, 3)).astype(np.float32)
    want = model(torch.from_numpy(x)).detach().numpy()
    sepconv.save_keras_model(model, tmp_path / "m.keras")
    theirs = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(theirs(x).detach()), want, rtol=1e-5, atol=1e-5)
    assert int(np.asarray(theirs.layers[0].count.value.detach())) == int(norm.count)
    sepconv.save_keras_model(model, tmp_path / "m.h5")
    back = tf_keras.models.load_model(tmp_path / "m.h5")
    np.testing.assert_allclose(back(x).numpy(), want, rtol=1e-5, atol=1e-5)
