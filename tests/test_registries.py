"""The shared "name, callable, instance or config dict -> object" registries.

Values are checked against numpy formulas and, for Keras objects handed over as such,
against the Keras object itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sepconv
from sepconv import activations, constraints, initializers, regularizers
from numpy_reference import separable_conv1d as np_sepconv

pytestmark = pytest.mark.usefixtures("torch_single_thread")

keras = pytest.importorskip("keras")
tf_keras = pytest.importorskip("tf_keras")

REGISTRIES = {"activation": activations, "initializer": initializers,
              "regularizer": regularizers, "constraint": constraints}


@pytest.mark.parametrize("name", initializers.registry.known())
def test_initializer_serialize_round_trip(name):
    init = initializers.get(name)
    again = initializers.get(initializers.serialize(init))
    assert type(again) is type(init) and again.get_config() == init.get_config()
    if name not in ("identity", "orthogonal"):
        shape = (3, 4, 2)
        seeded = initializers.get({"class_name": type(init).__name__,
                                   "config": dict(init.get_config(), **(
                                       {"seed": 7} if "seed" in init.get_config() else {}))})
        a = seeded(shape)
        b = initializers.get(initializers.serialize(seeded))(shape)
        assert torch.equal(a, b)  # a seed makes draws reproducible, through the config


@pytest.mark.parametrize("module", [regularizers, constraints], ids=["reg", "con"])
def test_serialize_round_trip(module):
    for name in module.registry.known():
        obj = module.get(name)
        again = module.get(module.serialize(obj))
        assert type(again) is type(obj) and again.get_config() == obj.get_config()


@pytest.mark.parametrize("name", activations.registry.known())
def test_activation_serialize_round_trip(name):
    fn = activations.get(name)
    assert activations.get(activations.serialize(fn)) is fn
    assert activations.get(name.upper()) is fn  # case-insensitive


def test_none_means_linear_or_nothing():
    assert activations.get(None) is activations.linear
    assert initializers.get(None) is None
    assert regularizers.get(None) is None and constraints.get(None) is None


def test_bare_names_use_keras_defaults():
    assert regularizers.get("l1").l1 == pytest.approx(0.01)
    assert regularizers.get("l2").l2 == pytest.approx(0.01)
    assert constraints.get("max_norm").get_config() == {"max_value": 2, "axis": 0}
    assert constraints.get("min_max_norm").get_config() == \
        {"min_value": 0.0, "max_value": 1.0, "rate": 1.0, "axis": 0}
    assert constraints.get("unit_norm").get_config() == {"axis": 0}
    for mod, name in [(tf_keras.constraints, "max_norm"), (tf_keras.constraints,
                                                            "min_max_norm")]:
        theirs = mod.get(name).get_config()
        ours = constraints.get(name).get_config()
        assert {k: theirs[k] for k in ours} == ours


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_errors_name_the_argument(kind):
    module = REGISTRIES[kind]
    with pytest.raises(ValueError, match=r"`my_arg`.*'nope'"):
        module.get("nope", "my_arg")
    with pytest.raises(ValueError, match="my_arg"):
        module.get({"class_name": "Nope", "config": {}}, "my_arg")
    with pytest.raises(ValueError, match="class_name"):
        module.get({"config": {}}, "my_arg")
    with pytest.raises(TypeError, match="my_arg"):
        module.get(3.5, "my_arg")


def test_callables_and_instances_work_in_the_layer():
    calls = []

    def my_init(shape, dtype=None, device=None):
        calls.append(tuple(shape))
        return torch.full(shape, 0.5, dtype=dtype, device=device)

    layer = sepconv.SeparableConv1D(
        3, 2, input_shape=(None, 2), depthwise_initializer=my_init,
        pointwise_initializer=initializers.Constant(0.25), bias_initializer=initializers.Ones,
        activation=lambda t: t * 2, depthwise_regularizer=lambda w: w.sum() * 0 + 1.5,
        pointwise_constraint=lambda w: w.clamp(max=0.1), pointwise_regularizer=regularizers.L2)
    assert calls == [(2, 2, 1)]
    x = np.random.default_rng(0).standard_normal((2, 5, 2)).astype(np.float32)
    w = layer.get_weights()
    np.testing.assert_allclose(layer(x).detach().numpy(),
                               2 * np_sepconv(x, w[0], w[1], w[2]), atol=1e-5)
    np.testing.assert_allclose([v.item() for v in layer.losses],
                               [1.5, 0.01 * (2 * 3) * 0.25 ** 2], rtol=1e-6)
    sepconv.apply_constraints(layer)
    assert (layer.get_weights()[1] == 0.1).all()


@pytest.mark.parametrize("lib", ["keras", "tf_keras"])
def test_keras_objects_are_taken_over(lib):
    mod = keras if lib == "keras" else tf_keras
    layer = sepconv.SeparableConv1D(
        4, 3, input_shape=(None, 2),
        depthwise_initializer=mod.initializers.Constant(0.3),
        pointwise_initializer=mod.initializers.RandomUniform(-0.2, 0.2, seed=1),
        bias_initializer=mod.initializers.Ones(),
        activation=mod.activations.relu,
        pointwise_regularizer=mod.regularizers.L1L2(0.1, 0.2),
        depthwise_constraint=mod.constraints.MaxNorm(0.4))
    dw, pw, b = layer.get_weights()
    np.testing.assert_allclose(dw, 0.3)
    assert np.abs(pw).max() <= 0.2 and pw.std() > 0.05
    np.testing.assert_array_equal(b, 1.0)
    assert layer.activation is activations.relu
    reg = mod.regularizers.L1L2(0.1, 0.2)
    want = float(np.asarray(reg(pw if lib == "tf_keras" else torch.from_numpy(pw))))
    np.testing.assert_allclose(layer.losses[0].item(), want, rtol=1e-5)
    w = np.random.default_rng(1).standard_normal((3, 2, 1)).astype(np.float32)
    theirs = mod.constraints.MaxNorm(0.4)(w if lib == "tf_keras" else torch.from_numpy(w))
    np.testing.assert_allclose(layer.depthwise_constraint(torch.from_numpy(w)).numpy(),
                               np.asarray(theirs), atol=1e-6)
