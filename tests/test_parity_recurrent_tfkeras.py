"""LSTM, GRU, SimpleRNN and Bidirectional against tf-keras 2.21 (what R keras wraps).

Every test builds the same layer in both libraries, copies sepconv's weights into tf-keras'
with ``set_weights(get_weights())`` (so Keras' weight shapes and order are checked too),
and compares outputs, states and the gradients of a random linear loss with respect to
the input and every weight (tf.GradientTape against torch autograd): float64 at 1e-9,
float32 at 1e-5 of scale.
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
from tf_keras_compare import (check_sgd_step, check_signature,  # noqa: E402
                              recurrent_outputs_and_gradients, strip_config)

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
CLASSES = ("LSTM", "GRU", "SimpleRNN")
R_FUNCTIONS = {"LSTM": "layer_lstm", "GRU": "layer_gru", "SimpleRNN": "layer_simple_rnn"}


def _random_weights(layer, rng, scale=0.5):
    layer.set_weights([rng.standard_normal(w.shape).astype(w.dtype) * scale
                       for w in layer.get_weights()])


def _tf_twin(layer, batch_shape=None):
    """tf-keras' layer built from sepconv's config, holding sepconv's weights."""
    config = layer.get_config()
    config.pop("batch_input_shape", None)
    if isinstance(layer, sepconv.Bidirectional):
        inner = {"class_name": config["layer"]["class_name"],
                 "config": dict(config["layer"]["config"])}
        inner["config"].pop("batch_input_shape", None)
        kwargs = {}
        if "backward_layer" in config:
            kwargs["backward_layer"] = tf_keras.layers.deserialize(config["backward_layer"])
        ref = tf_keras.layers.Bidirectional(tf_keras.layers.deserialize(inner),
                                            merge_mode=config["merge_mode"],
                                            dtype=config["dtype"], **kwargs)
    else:
        ref = getattr(tf_keras.layers, type(layer).__name__).from_config(config)
    ref.build(batch_shape or (None, None, layer.get_weights()[0].shape[0]))
    ref.set_weights(layer.get_weights())
    return ref


def _assert_match(ours, grads, theirs, tf_grads, tol):
    assert len(ours) == len(theirs) and len(grads) == len(tf_grads)
    for a, b in list(zip(ours, theirs)) + list(zip(grads, tf_grads)):
        assert a.shape == b.shape
        scale = max(1.0, float(np.abs(b).max()))
        np.testing.assert_allclose(a, b, atol=tol * scale, rtol=tol)


@st.composite
def cases(draw):
    cls = draw(st.sampled_from(CLASSES))
    kwargs = dict(units=draw(st.integers(1, 4)),
                  activation=draw(st.sampled_from(["tanh", "relu", "sigmoid", "linear"])),
                  use_bias=draw(st.booleans()),
                  return_sequences=draw(st.booleans()), return_state=draw(st.booleans()),
                  go_backwards=draw(st.booleans()), unroll=draw(st.booleans()))
    if cls != "SimpleRNN":
        kwargs["recurrent_activation"] = draw(st.sampled_from(
            ["sigmoid", "hard_sigmoid", "tanh"]))
    if cls == "GRU":
        kwargs["reset_after"] = draw(st.booleans())
    if cls == "LSTM":
        kwargs["unit_forget_bias"] = draw(st.booleans())
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 3)))
    wrap = draw(st.sampled_from([None, None, "concat", "sum", "mul", "ave", None]))
    dtype = draw(st.sampled_from(["float64", "float64", "float32"]))
    return cls, kwargs, shape, wrap, draw(st.booleans()), dtype


@SETTINGS
@given(cases())
def test_outputs_states_and_gradients_match_tf_keras(case):
    cls, kwargs, shape, wrap, with_state, dtype = case
    rng = np.random.default_rng(len(str(case)))
    layer = getattr(sepconv, cls)(**kwargs, dtype=dtype)
    if wrap is not None:
        layer = sepconv.Bidirectional(layer, merge_mode=wrap)
    layer.build((None, None, shape[2]))
    _random_weights(layer, rng)
    ref = _tf_twin(layer)
    x = rng.standard_normal(shape).astype(dtype)
    initial_state = None
    if with_state:
        n = (2 if cls == "LSTM" else 1) * (1 if wrap is None else 2)
        initial_state = [rng.standard_normal((shape[0], kwargs["units"])).astype(dtype)
                         for _ in range(n)]
    _assert_match(*recurrent_outputs_and_gradients(layer, ref, x, initial_state),
                  1e-9 if dtype == "float64" else 1e-5)


@pytest.mark.parametrize("merge_mode", [None, "concat"])
def test_bidirectional_return_state_and_backward_layer_match_tf_keras(merge_mode):
    rng = np.random.default_rng(3)
    fwd = sepconv.LSTM(3, return_sequences=True, return_state=True, dtype="float64")
    bwd = sepconv.LSTM(3, activation="relu", return_sequences=True, return_state=True,
                       go_backwards=True, dtype="float64")
    layer = sepconv.Bidirectional(fwd, merge_mode=merge_mode, backward_layer=bwd)
    layer.build((None, None, 2))
    _random_weights(layer, rng)
    ref = _tf_twin(layer)
    x = rng.standard_normal((2, 4, 2))
    _assert_match(*recurrent_outputs_and_gradients(layer, ref, x), 1e-9)
    assert layer.compute_output_shape((2, 4, 2)) == \
        [tuple(s) for s in ref.compute_output_shape((2, 4, 2))]


def test_float32_defaults_and_sgd_step_match_tf_keras():
    rng = np.random.default_rng(4)
    for cls in CLASSES:
        kwargs = dict(units=4, kernel_regularizer="l2", recurrent_constraint="max_norm",
                      bias_regularizer="l1", activity_regularizer="l2")
        layer = getattr(sepconv, cls)(**kwargs, input_shape=(None, 3))
        _random_weights(layer, rng)
        ref = _tf_twin(layer)
        x = rng.standard_normal((5, 6, 3)).astype(np.float32)
        _assert_match(*recurrent_outputs_and_gradients(layer, ref, x), 1e-5)
        check_sgd_step(layer, ref, x, rng.standard_normal((5, 4)).astype(np.float32))


@pytest.mark.parametrize("cls", CLASSES)
def test_stateful_over_two_calls_and_reset_match_tf_keras(cls):
    rng = np.random.default_rng(5)
    layer = getattr(sepconv, cls)(3, stateful=True, return_sequences=True,
                                  batch_input_shape=(2, None, 2), dtype="float64")
    _random_weights(layer, rng)
    ref = _tf_twin(layer, batch_shape=(2, None, 2))
    for _ in range(2):
        x = rng.standard_normal((2, 3, 2))
        np.testing.assert_allclose(layer(torch.from_numpy(x)).detach().numpy(),
                                   ref(x).numpy(), atol=1e-9)
    states = [rng.standard_normal((2, 3)) for _ in range(2 if cls == "LSTM" else 1)]
    layer.reset_states(states)
    ref.reset_states(states)
    x = rng.standard_normal((2, 3, 2))
    np.testing.assert_allclose(layer(torch.from_numpy(x)).detach().numpy(), ref(x).numpy(),
                               atol=1e-9)
    layer.reset_states()
    ref.reset_states()
    np.testing.assert_allclose(layer(torch.from_numpy(x)).detach().numpy(), ref(x).numpy(),
                               atol=1e-9)
    with pytest.raises(ValueError, match="stateful"):
        layer(torch.zeros(3, 3, 2, dtype=torch.float64))


def test_stateful_bidirectional_matches_tf_keras():
    rng = np.random.default_rng(6)
    layer = sepconv.Bidirectional(sepconv.GRU(2, stateful=True, dtype="float64"),
                                  batch_input_shape=(2, None, 3))
    _random_weights(layer, rng)
    ref = _tf_twin(layer, batch_shape=(2, None, 3))
    for _ in range(2):
        x = rng.standard_normal((2, 4, 3))
        np.testing.assert_allclose(layer(torch.from_numpy(x)).detach().numpy(),
                                   ref(x).numpy(), atol=1e-9)


def _dropout_probe_weights(reset_after=True):
    """Weights (1 input, 1 unit) making the output at step t ``tanh(m_t)`` (GRU: update
    gate shut by its bias, no recurrence) so a row's steps show the input masks."""
    kernel = np.ones((1, 3), np.float32)
    rec = np.zeros((1, 3), np.float32)
    bias = np.array([[-60.0, 0, 0], [0, 0, 0]], np.float32) if reset_after else \
        np.array([-60.0, 0, 0], np.float32)
    return [kernel, rec, bias]


@pytest.mark.parametrize("cls, fused", [("GRU", True), ("GRU", False), ("SimpleRNN", False)])
def test_dropout_masks_have_tf_keras_structure_and_rate(cls, fused):
    """tf-keras 2.21 fact: a GRU / LSTM on its fused path (tanh, sigmoid, use_bias, no
    recurrent_dropout, not unroll; GRU also reset_after) drops input elements afresh at
    every time step; otherwise one input mask per call is shared by all steps.  Both
    libraries agree on that structure and on the rate; at inference dropout does nothing."""
    kwargs = dict(dropout=0.5, return_sequences=True, unroll=not fused)
    layer = getattr(sepconv, cls)(1, **kwargs, input_shape=(None, 1))
    layer.set_weights(_dropout_probe_weights() if cls == "GRU" else
                      [np.ones((1, 1), np.float32), np.zeros((1, 1), np.float32),
                       np.zeros(1, np.float32)])
    ref = _tf_twin(layer)
    x = np.ones((400, 6, 1), np.float32)
    ours = layer(torch.from_numpy(x), training=True).detach().numpy()[..., 0]
    theirs = ref(x, training=True).numpy()[..., 0]
    for out in (ours, theirs):
        kept = out > 0.5
        assert 0.4 < kept.mean() < 0.6
        varies = (kept != kept[:, :1]).any(axis=1).mean()
        assert (varies > 0.5) if fused else (varies == 0)
    layer.eval()
    np.testing.assert_allclose(layer(torch.from_numpy(x)).detach().numpy(),
                               ref(x, training=False).numpy(), atol=1e-6)


def test_recurrent_dropout_draws_per_gate_masks_and_inference_matches():
    rng = np.random.default_rng(7)
    layer = sepconv.LSTM(3, dropout=0.3, recurrent_dropout=0.4, return_sequences=True,
                         input_shape=(None, 2))
    _random_weights(layer, rng)
    ref = _tf_twin(layer)
    x = rng.standard_normal((2, 5, 2)).astype(np.float32)
    torch.manual_seed(0)
    _, mask, rmask = layer._dropout_masks(torch.from_numpy(x), True)
    assert mask.shape == (4, 2, 2) and rmask.shape == (4, 2, 3)
    assert layer.get_config()["implementation"] == ref.get_config()["implementation"] == 1
    layer.eval()
    np.testing.assert_allclose(layer(torch.from_numpy(x)).detach().numpy(),
                               ref(x, training=False).numpy(), atol=1e-5)
    assert not np.allclose(layer(torch.from_numpy(x), training=True).detach().numpy(),
                           ref(x, training=False).numpy())


def test_activity_regularizer_per_output_matches_tf_keras():
    rng = np.random.default_rng(9)
    kwargs = dict(units=2, return_state=True, activity_regularizer="l2",
                  kernel_regularizer="l1", recurrent_regularizer="l2", bias_regularizer="l1_l2")
    layer = sepconv.LSTM(input_shape=(None, 3), **kwargs)
    _random_weights(layer, rng)
    ref = _tf_twin(layer)
    x = rng.standard_normal((3, 4, 3)).astype(np.float32)
    layer(torch.from_numpy(x))
    ref(x)
    got, want = [v.item() for v in layer.losses], [float(v) for v in ref.losses]
    assert len(got) == len(want) == 6
    np.testing.assert_allclose(got, want, rtol=1e-5)


# -- configs, signatures, shapes ----------------------------------------------------------

_FULL = dict(units=3, activation="relu", recurrent_activation="hard_sigmoid", use_bias=True,
             kernel_initializer="he_uniform",
             recurrent_initializer=dict(class_name="Orthogonal", config=dict(gain=0.5,
                                                                             seed=1)),
             bias_initializer="ones", unit_forget_bias=False, kernel_regularizer="l2",
             recurrent_regularizer="l1", bias_regularizer="l1_l2",
             activity_regularizer="l2", kernel_constraint="max_norm",
             recurrent_constraint="non_neg", bias_constraint="unit_norm",
             return_sequences=True, return_state=True, go_backwards=True, stateful=False,
             unroll=True, dropout=0.25, recurrent_dropout=0.5, trainable=False,
             reset_after=False)
_TAKES = {"LSTM": set(_FULL) - {"reset_after"},
          "GRU": set(_FULL) - {"unit_forget_bias"},
          "SimpleRNN": set(_FULL) - {"unit_forget_bias", "reset_after",
                                     "recurrent_activation"}}


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("recurrent_dropout", [0.0, 0.5])
def test_get_config_has_tf_keras_keys_and_values(cls, recurrent_dropout):
    kwargs = {k: v for k, v in _FULL.items() if k in _TAKES[cls]}
    kwargs["recurrent_dropout"] = recurrent_dropout
    ours = getattr(sepconv, cls)(**kwargs, name=f"cfg_{cls}{recurrent_dropout}").get_config()
    theirs = getattr(tf_keras.layers, cls)(**kwargs,
                                           name=f"cfg_{cls}{recurrent_dropout}").get_config()
    assert set(ours) == set(theirs)
    for key in theirs:
        assert strip_config(ours[key]) == strip_config(theirs[key]), key


@pytest.mark.parametrize("backward", [False, True])
def test_bidirectional_config_and_from_tf_keras_config(backward):
    kw = {"backward_layer": tf_keras.layers.GRU(2, go_backwards=True, name="bw")} \
        if backward else {}
    ref = tf_keras.layers.Bidirectional(tf_keras.layers.GRU(2, name="fw"), merge_mode="ave",
                                        name=f"bi{backward}", **kw)
    x = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32)
    want = ref(x).numpy()
    ours = sepconv.Bidirectional.from_config(ref.get_config())
    assert set(ours.get_config()) == set(ref.get_config())
    assert strip_config(ours.get_config()) == strip_config(ref.get_config())
    ours.set_weights(ref.get_weights())
    np.testing.assert_allclose(ours(torch.from_numpy(x)).detach().numpy(), want, atol=1e-5)
    assert ours.forward_layer.name == "forward_fw"


@pytest.mark.parametrize("cls", CLASSES)
def test_from_tf_keras_config_builds_the_same_layer(cls):
    kwargs = {k: v for k, v in _FULL.items() if k in _TAKES[cls]}
    kwargs.update(dropout=0.0, recurrent_dropout=0.0, trainable=True)
    ref = getattr(tf_keras.layers, cls)(**kwargs, name=f"from_tf_{cls}")
    x = np.random.default_rng(2).standard_normal((2, 3, 2)).astype(np.float32)
    theirs = ref(x)
    ours = getattr(sepconv, cls).from_config(ref.get_config())
    for key, value in ours.get_config().items():
        assert strip_config(value) == strip_config(ref.get_config()[key]), key
    ours.set_weights(ref.get_weights())
    for a, b in zip(ours(torch.from_numpy(x)), theirs):
        np.testing.assert_allclose(a.detach().numpy(), b.numpy(), atol=1e-5)


@pytest.mark.parametrize("cls", CLASSES)
def test_signature_is_tf_keras_then_r_keras_extras(cls):
    check_signature(getattr(sepconv, cls), getattr(tf_keras.layers, cls),
                    getattr(sepconv, R_FUNCTIONS[cls]), required=1)


def test_bidirectional_signature_is_tf_keras_then_r_keras_extras():
    import inspect
    theirs = [(p.name, p.default) for p in
              inspect.signature(tf_keras.layers.Bidirectional.__init__).parameters.values()
              if p.kind is not p.VAR_KEYWORD]
    ours = [(p.name, p.default) for p in
            inspect.signature(sepconv.Bidirectional.__init__).parameters.values()]
    assert ours[:len(theirs)] == theirs
    assert ours[len(theirs):] == [(n, None) for n in ("input_shape", "batch_input_shape",
                                                      "batch_size", "dtype", "name",
                                                      "trainable")]
    for r_function in (sepconv.bidirectional, sepconv.layer_bidirectional):
        r = [(p.name, p.default) for p in inspect.signature(r_function).parameters.values()]
        assert r == [("object", None), ("layer", None)] + ours[2:]


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("flags", [(False, False), (True, False), (False, True), (True, True)])
def test_compute_output_shape_matches_tf_keras(cls, flags):
    seq, state = flags
    ours = getattr(sepconv, cls)(3, return_sequences=seq, return_state=state)
    theirs = getattr(tf_keras.layers, cls)(3, return_sequences=seq, return_state=state)
    want = theirs.compute_output_shape((2, 5, 4))
    want = [tuple(s) for s in want] if state else tuple(want)
    assert ours.compute_output_shape((2, 5, 4)) == want


def test_default_initialisation_is_keras():
    """Glorot-uniform kernel (fans of the (features, gates * units) matrix), orthogonal
    recurrent kernel, unit_forget_bias ones in the forget block, GRU bias rows."""
    torch.manual_seed(0)
    lstm = sepconv.LSTM(64, input_shape=(None, 32))
    k, rk, b = lstm.get_weights()
    limit = np.sqrt(6 / (32 + 256))
    assert np.abs(k).max() <= limit and np.abs(k).max() > 0.9 * limit
    np.testing.assert_allclose(rk @ rk.T, np.eye(64), atol=1e-4)
    np.testing.assert_array_equal(b, np.r_[np.zeros(64), np.ones(64), np.zeros(128)])
    gru = sepconv.GRU(4, input_shape=(None, 2))
    assert gru.get_weights()[2].shape == (2, 12)
    assert sepconv.GRU(4, reset_after=False, input_shape=(None, 2)).get_weights()[2].shape \
        == (12,)
