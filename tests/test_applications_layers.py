"""The Keras Applications' own layers (``CustomScaleLayer`` of InceptionResNetV2,
``LayerScale`` and ``StochasticDepth`` of ConvNeXt) against tf-keras 2.21's and Keras
3.15's classes given the same weights: outputs and gradients (float32 and float64, drawn
shapes), training-time stochastic depth, the layer protocol, how the model-file loader
tells them from users' custom objects, and small models using them from both Kerases'
files and back (the whole applications: tests/test_applications.py)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

import sepconv  # noqa: E402
from sepconv.interop import KerasFileError, load_keras_model, save_keras_model  # noqa: E402
from sepconv.interop.models import build_layer  # noqa: E402
from keras_files import Cases, call_outputs, check  # noqa: E402
from tf_keras_compare import COMMON_ARGUMENTS  # noqa: E402

from tf_keras.src.applications import convnext as _tk_convnext  # noqa: E402
from tf_keras.src.applications import inception_resnet_v2 as _tk_irv2  # noqa: E402
from keras.src.applications import convnext as _k3_convnext  # noqa: E402
from keras.src.applications import inception_resnet_v2 as _k3_irv2  # noqa: E402

#: sepconv class -> (tf-keras class, Keras 3 class, constructor arguments)
CLASSES = {
    sepconv.CustomScaleLayer: (_tk_irv2.CustomScaleLayer, _k3_irv2.CustomScaleLayer,
                               dict(scale=0.17)),
    sepconv.LayerScale: (_tk_convnext.LayerScale, _k3_convnext.LayerScale,
                         dict(init_values=1e-6, projection_dim=4)),
    sepconv.StochasticDepth: (_tk_convnext.StochasticDepth, _k3_convnext.StochasticDepth,
                              dict(drop_path_rate=0.25)),
}
IDS = [c.__name__ for c in CLASSES]


@pytest.mark.parametrize("ours", list(CLASSES), ids=IDS)
def test_signature_config_and_protocol_are_tf_keras(ours):
    theirs, theirs3, kwargs = CLASSES[ours]
    their_params = [p for p in inspect.signature(theirs).parameters.values()
                    if p.kind is not p.VAR_KEYWORD]
    params = list(inspect.signature(ours).parameters.values())
    assert [(p.name, p.default) for p in params[:len(their_params)]] == \
        [(p.name, p.default) for p in their_params]
    assert [(p.name, p.default) for p in params[len(their_params):]] == \
        [(n, None) for n in COMMON_ARGUMENTS]
    layer = ours(**kwargs, name="l")
    config = layer.get_config()
    assert set(config) == set(theirs(**kwargs, name="l").get_config())
    assert set(config) == set(theirs3(**kwargs, name="l").get_config())
    again = type(layer).from_config(config)
    assert again.get_config() == config
    assert get_class(type(layer).__name__) is ours and ours.__name__ in sepconv.__all__
    assert type(layer).__name__ in repr(layer)


def get_class(name):
    from sepconv.layers.base import get_layer_class
    return get_layer_class(name)


@pytest.mark.parametrize("bad, error, match", [
    (lambda: sepconv.CustomScaleLayer("big"), TypeError, "`scale`"),
    (lambda: sepconv.CustomScaleLayer(None), TypeError, "`scale`"),
    (lambda: sepconv.LayerScale(0.1, 0), ValueError, "projection_dim"),
    (lambda: sepconv.LayerScale(0.1, 2.5), (TypeError, ValueError), "projection_dim"),
    (lambda: sepconv.LayerScale("x", 3), TypeError, "init_values"),
    (lambda: sepconv.StochasticDepth(1.0), ValueError, "drop_path_rate=1.0"),
    (lambda: sepconv.StochasticDepth(-0.1), ValueError, "drop_path_rate"),
    (lambda: sepconv.StochasticDepth("0.1"), TypeError, "drop_path_rate"),
    (lambda: sepconv.LayerScale(0.1, 3)(torch.ones(2, 4)), ValueError, "projection_dim=3"),
    (lambda: sepconv.CustomScaleLayer(0.5)(torch.ones(2, 4)), ValueError, "list of 2"),
    (lambda: sepconv.CustomScaleLayer(0.5).compute_output_shape([(None, 3), (None, 4)]),
     ValueError, "incompatible"),
])
def test_invalid_arguments_and_inputs_are_named(bad, error, match):
    with pytest.raises(error, match=match):
        bad()


def test_layer_scale_weights_protocol():
    layer = sepconv.LayerScale(0.5, 3, name="ls")
    assert layer.built and [w.shape for w in layer.get_weights()] == [(3,)]
    np.testing.assert_array_equal(layer.get_weights()[0], np.full(3, 0.5, np.float32))
    theirs = _tk_convnext.LayerScale(0.5, 3)
    theirs(np.ones((1, 3), np.float32))
    assert [w.shape for w in theirs.get_weights()] == [(3,)]
    with pytest.raises(ValueError, match="shape"):
        layer.set_weights([np.ones(4)])
    with pytest.raises(ValueError, match="1 weights"):
        layer.set_weights([])
    layer.set_weights([np.arange(3.0)])
    other = sepconv.LayerScale(0.5, 3)
    other.load_state_dict(layer.state_dict())
    np.testing.assert_array_equal(other.get_weights()[0], [0, 1, 2])
    assert sepconv.LayerScale(0.5, 3, weights=[np.arange(3.0)]).get_weights()[0][2] == 2
    frozen = sepconv.LayerScale(0.5, 3, trainable=False)
    assert not frozen.gamma.requires_grad and frozen.get_config()["trainable"] is False
    # numpy inputs are cast to the compute dtype; float64 layers compute in float64
    assert layer(np.ones((1, 3))).dtype == torch.float32
    assert sepconv.LayerScale(0.5, 3, dtype="float64")(np.ones((1, 3))).dtype == \
        torch.float64
    assert sepconv.CustomScaleLayer(0.5)([np.ones((1, 3)), np.ones((1, 3))]).dtype == \
        torch.float32
    assert sepconv.CustomScaleLayer(0.5).compute_output_shape(
        [(None, 1, 3), (2, 5, 1)]) == (2, 5, 3)


def _tf_grads(layer, xs, probe, extra=()):
    ts = [tf.constant(x) for x in xs]
    with tf.GradientTape() as tape:
        tape.watch(ts)
        y = layer(ts if len(ts) > 1 else ts[0])
        total = tf.reduce_sum(y * probe)
    grads = tape.gradient(total, ts + list(extra))
    return y.numpy(), [g.numpy() for g in grads]


def _torch_grads(layer, xs, probe, extra=()):
    ts = [torch.from_numpy(x).requires_grad_() for x in xs]
    y = layer(ts if len(ts) > 1 else ts[0])
    total = (y * torch.from_numpy(probe)).sum()
    grads = torch.autograd.grad(total, ts + list(extra))
    return y.detach().numpy(), [g.numpy() for g in grads]


@settings(max_examples=20, deadline=None, derandomize=True)
@given(rank=st.integers(2, 4), dim=st.integers(1, 5), scale=st.floats(-2, 2, width=32),
       broadcast=st.booleans(), dtype=st.sampled_from(["float32", "float64"]),
       seed=st.integers(0, 2 ** 16))
def test_forward_and_gradients_match_both_kerases(rank, dim, scale, broadcast, dtype, seed):
    """CustomScaleLayer (inputs of broadcast shapes) and LayerScale (input and gamma
    gradients) against tf-keras (GradientTape) and Keras 3 (torch autograd through its
    layer), the same weights."""
    rng = np.random.default_rng(seed)
    shape = (2,) + (3,) * (rank - 2) + (dim,)
    x = rng.standard_normal(shape).astype(dtype)
    r = rng.standard_normal((1,) * (rank - 1) + (dim,) if broadcast else shape).astype(dtype)
    out_shape = np.broadcast_shapes(shape, r.shape)
    probe = rng.standard_normal(out_shape).astype(dtype)
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)
    # CustomScaleLayer
    ours = sepconv.CustomScaleLayer(scale, dtype=dtype)
    want, want_g = _tf_grads(_tk_irv2.CustomScaleLayer(scale, dtype=dtype), [x, r], probe)
    got, got_g = _torch_grads(ours, [x, r], probe)
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, **tol)
    for a, b in zip(got_g, want_g):
        np.testing.assert_allclose(a, b, **tol)
    k3 = _k3_irv2.CustomScaleLayer(scale, dtype=dtype)
    got3, got3_g = _torch_grads(lambda v: k3(v), [x, r], probe)
    np.testing.assert_allclose(got, got3, **tol)
    for a, b in zip(got_g, got3_g):
        np.testing.assert_allclose(a, b, **tol)
    # LayerScale: random gamma
    gamma = rng.standard_normal(dim).astype(dtype)
    ours = sepconv.LayerScale(0.1, dim, dtype=dtype, weights=[gamma])
    theirs = _tk_convnext.LayerScale(0.1, dim, dtype=dtype)
    theirs(x)  # (its build does not set `built`: a build() call would be redone here)
    theirs.set_weights([gamma])
    want, want_g = _tf_grads(theirs, [x], probe[:shape[0]], theirs.trainable_weights)
    got, got_g = _torch_grads(ours, [x], probe[:shape[0]], [ours.gamma])
    np.testing.assert_allclose(got, want, **tol)
    for a, b in zip(got_g, want_g):
        np.testing.assert_allclose(a, b, **tol)
    k3 = _k3_convnext.LayerScale(0.1, dim, dtype=dtype)
    k3(x)
    k3.set_weights([gamma])
    got3, _ = _torch_grads(lambda v: k3(v), [x], probe[:shape[0]])
    np.testing.assert_allclose(got, got3, **tol)


def test_mixed_float16_matches_tf_keras():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    gamma = rng.standard_normal(4).astype(np.float32)
    ours = sepconv.LayerScale(0.1, 4, dtype="mixed_float16", weights=[gamma])
    theirs = _tk_convnext.LayerScale(0.1, 4, dtype="mixed_float16")
    theirs(x)
    theirs.set_weights([gamma])
    got, want = ours(torch.from_numpy(x)), theirs(tf.constant(x)).numpy()
    assert ours.gamma.dtype == torch.float32 and got.dtype == torch.float16
    assert want.dtype == np.float16
    np.testing.assert_array_equal(got.detach().numpy(), want)
    for scale in (0.17, 0.1, 1 / 3):  # scale rounded to float16 first, as TensorFlow does
        ours = sepconv.CustomScaleLayer(scale, dtype="mixed_float16")
        theirs = _tk_irv2.CustomScaleLayer(scale, dtype="mixed_float16")
        got = ours([torch.from_numpy(x), torch.from_numpy(x[::-1].copy())])
        want = theirs([tf.constant(x), tf.constant(x[::-1].copy())]).numpy()
        assert got.dtype == torch.float16
        np.testing.assert_array_equal(got.numpy(), want)


def test_stochastic_depth_keeps_or_drops_whole_samples_as_keras():
    """Inference: the identity (both Kerases too).  Training: each sample is either zero
    or ``x / keep`` exactly (tf-keras gives the same two values), kept at rate ``keep``;
    the gradient is ``1 / keep`` on kept samples, 0 on dropped ones."""
    rate, keep = 0.25, 0.75
    layer = sepconv.StochasticDepth(rate)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4000, 3, 2)).astype(np.float32)
    assert torch.equal(layer.eval()(torch.from_numpy(x)), torch.from_numpy(x))
    theirs = _tk_convnext.StochasticDepth(rate)
    np.testing.assert_array_equal(theirs(tf.constant(x), training=False).numpy(), x)
    np.testing.assert_array_equal(
        np.asarray(_k3_convnext.StochasticDepth(rate)(x, training=False).cpu()), x)
    torch.manual_seed(0)
    xt = torch.from_numpy(x).requires_grad_()
    y = layer.train()(xt)
    tf.random.set_seed(0)
    want = theirs(tf.constant(x), training=True).numpy()
    for out in (y.detach().numpy(), want):
        kept = np.all(out == np.float32(x / np.float32(keep)), axis=(1, 2))
        dropped = np.all(out == 0, axis=(1, 2))
        assert np.all(kept | dropped)
        assert abs(kept.mean() - keep) < 4 * np.sqrt(keep * (1 - keep) / len(x))
    y.sum().backward()
    kept = np.all(y.detach().numpy() != 0, axis=(1, 2))
    np.testing.assert_allclose(xt.grad.numpy()[kept], 1 / keep, rtol=1e-6)
    assert np.all(xt.grad.numpy()[~kept] == 0)
    assert torch.equal(sepconv.StochasticDepth(0.0).train()(xt), xt)


def test_loader_tells_applications_layers_from_custom_objects():
    """tf-keras' ``.h5`` names the class ``Custom>CustomScaleLayer`` (registered under the
    default package); its ``.keras`` says the applications module: both are sepconv's.  The
    same name from a user's module stays a custom object; ``custom_objects`` wins."""
    config = {"name": "c", "trainable": True, "dtype": "float32", "scale": 0.5}
    for entry in ({"class_name": "Custom>CustomScaleLayer", "config": config},
                  {"module": "tf_keras.src.applications.inception_resnet_v2",
                   "class_name": "CustomScaleLayer", "config": config,
                   "registered_name": "Custom>CustomScaleLayer"},
                  {"module": "keras.src.applications.inception_resnet_v2",
                   "class_name": "CustomScaleLayer", "config": config,
                   "registered_name": "CustomScaleLayer"}):
        layer = build_layer(entry)
        assert type(layer) is sepconv.CustomScaleLayer and layer.scale == 0.5
    user = {"module": "my_project.layers", "class_name": "CustomScaleLayer", "config": config,
            "registered_name": "Custom>CustomScaleLayer"}
    with pytest.raises(KerasFileError, match="a custom object"):
        build_layer(user)


def _small_models(K):
    """A tiny InceptionResNet-style residual and a ConvNeXt-style block (layer scale,
    stochastic depth) with K's own application layers."""
    irv2 = _tk_irv2 if K is tf_keras else _k3_irv2
    cnx = _tk_convnext if K is tf_keras else _k3_convnext
    L = K.layers
    inp = K.Input((6, 6, 3), name="image")
    x = L.Conv2D(4, 1, name="stem")(inp)
    r = L.Conv2D(4, 3, padding="same", name="branch")(x)
    x = irv2.CustomScaleLayer(0.17, name="scaled")([x, r])
    out = L.GlobalAveragePooling2D(name="gap")(x)
    residual = K.Model(inp, out, name="residual")
    inp = K.Input((5, 5, 4), name="image")
    x = L.Dense(4, name="pointwise")(inp)
    x = cnx.LayerScale(1e-6, 4, name="layer_scale")(x)
    x = cnx.StochasticDepth(0.3, name="stochastic_depth")(x)
    out = L.Add(name="add")([inp, x])
    block = K.Model(inp, out, name="block")
    return {"residual": residual, "block": block}


def _randomize(model, rng):
    model.set_weights([rng.standard_normal(w.shape).astype(w.dtype)
                       for w in model.get_weights()])


def test_small_models_from_both_kerases_load_and_go_back(tmp_path):
    """tf-keras .h5 / .keras and Keras 3 .keras of both small models load without
    TensorFlow to Keras' outputs; sepconv's own files are read back by tf-keras (.h5; its
    ``LayerScale`` is not registered, so it needs ``custom_objects`` there, as for its own
    file) and by Keras 3 (.keras) to the same outputs."""
    cases = Cases(str(tmp_path))
    rng = np.random.default_rng(1)
    saved = {}
    for writer, K, exts in (("tf_keras", tf_keras, (".h5", ".keras")),
                            ("keras3", keras, (".keras",))):
        for name, model in _small_models(K).items():
            _randomize(model, rng)
            x = rng.standard_normal((2,) + tuple(model.input_shape[1:])).astype(np.float32)
            y = call_outputs(model, x)
            for ext in exts:
                path = str(tmp_path / f"{name}-{writer}{ext}")
                model.save(path)
                cases.add(f"{name}-{writer}{ext}", "model", path, [x], y)
                saved[f"{name}-{writer}{ext}"] = (path, x, y)
    results = cases.run()
    for case, r in results.items():
        check(r, atol=1e-6)
    custom = {"LayerScale": _tk_convnext.LayerScale,
              "StochasticDepth": _tk_convnext.StochasticDepth}
    for name in ("residual", "block"):
        path, x, y = saved[f"{name}-tf_keras.h5"]
        ours = load_keras_model(path)
        out = str(tmp_path / f"{name}-again.h5")
        save_keras_model(ours, out)
        theirs = tf_keras.models.load_model(out, custom_objects=custom if name == "block"
                                            else None)
        np.testing.assert_allclose(theirs.predict(x, verbose=0), y[0], rtol=1e-6, atol=1e-6)
        path, x, y = saved[f"{name}-keras3.keras"]
        out = str(tmp_path / f"{name}-again.keras")
        save_keras_model(load_keras_model(path), out)
        theirs = keras.saving.load_model(out)
        assert [type(a).__name__ for a in theirs.layers] == \
            [type(a).__name__ for a in keras.saving.load_model(path).layers]
        np.testing.assert_allclose(theirs.predict(x, verbose=0), y[0], rtol=1e-6, atol=1e-6)
        with torch.no_grad():  # and sepconv reads its own file back
            again = load_keras_model(out)(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(again, y[0], rtol=1e-6, atol=1e-6)


def test_h5_with_layer_names_that_are_paths_goes_back_to_tf_keras(tmp_path):
    """MobileNetV3 names layers like paths ("expanded_conv_1/depthwise/pad" before
    "expanded_conv_1/depthwise"): the .h5 writer creates the layers' groups in name order,
    as tf-keras does (it failed with "name already exists" in model order)."""
    L = tf_keras.layers
    inp = tf_keras.Input((5, 5, 2), name="image")
    x = L.ZeroPadding2D(1, name="block/conv/pad")(inp)
    x = L.Conv2D(3, 3, name="block/conv")(x)
    x = L.BatchNormalization(name="block/conv/BatchNorm")(x)
    out = L.Conv2D(2, 1, name="block")(x)
    model = tf_keras.Model(inp, out)
    rng = np.random.default_rng(0)
    _randomize(model, rng)
    model.layers[3].set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
                                 for w in model.layers[3].get_weights()])
    x = rng.standard_normal((2, 5, 5, 2)).astype(np.float32)
    y = model.predict(x, verbose=0)
    path = str(tmp_path / "paths.h5")
    model.save(path)
    out = str(tmp_path / "again.h5")
    save_keras_model(load_keras_model(path), out)
    theirs = tf_keras.models.load_model(out)
    assert [a.name for a in theirs.layers] == [a.name for a in model.layers]
    np.testing.assert_allclose(theirs.predict(x, verbose=0), y, rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(load_keras_model(out)(torch.from_numpy(x)).numpy(), y,
                                   rtol=1e-6, atol=1e-6)
