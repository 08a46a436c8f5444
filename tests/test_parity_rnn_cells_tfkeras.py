"""RNN, SimpleRNNCell, LSTMCell, GRUCell and StackedRNNCells against tf-keras 2.21 (what R
keras wraps).

Each test builds the layer in sepconv, the same one in tf-keras from sepconv's config
(nested cell configs included), copies sepconv's weights with ``set_weights(get_weights())``
and compares outputs, states and the gradients of a random linear loss with respect to the
input and every weight (tf.GradientTape against torch autograd): float64 at 1e-9, float32
at 1e-5 of scale; with timestep masks, go_backwards, initial states, stacked cells.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")

import sepconv  # noqa: E402
from tf_keras_compare import COMMON_ARGUMENTS, strip_config  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
CELLS = ("SimpleRNNCell", "LSTMCell", "GRUCell")
R_CELLS = {"SimpleRNNCell": "layer_simple_rnn_cell", "LSTMCell": "layer_lstm_cell",
           "GRUCell": "layer_gru_cell"}


def _strip(config):
    """``strip_config`` through lists too (a stack's list of cell configs)."""
    if isinstance(config, (list, tuple)):
        return tuple(_strip(v) for v in config)
    if isinstance(config, dict):
        if "class_name" in config:
            return {"class_name": config["class_name"], "config": _strip(config["config"])}
        return {k: _strip(v) for k, v in config.items()}
    return strip_config(config)


def _random_weights(layer, rng, scale=0.5):
    layer.set_weights([rng.standard_normal(w.shape).astype(w.dtype) * scale
                       for w in layer.get_weights()])


def _tf_twin(layer, features, batch=None):
    """tf-keras' layer from sepconv's config, holding sepconv's weights."""
    config = layer.get_config()
    config.pop("batch_input_shape", None)
    ref = tf_keras.layers.deserialize({"class_name": type(layer).__name__, "config": config})
    ref.build((batch, None, features))
    ref.set_weights(layer.get_weights())
    return ref


def _nested(layer, flat):
    """A flat state list in tf-keras' structure for ``layer``'s cell: one list per cell of
    a stack (tf-keras takes and returns a stack's states nested; sepconv flat, both
    forms in)."""
    if flat is None or not isinstance(layer.cell, sepconv.StackedRNNCells):
        return flat
    out, start = [], 0
    for cell in layer.cell.cells:
        n = cell.STATE_COUNT
        out.append(list(flat[start:start + n]) if n > 1 else flat[start])
        start += n
    return out


def _compare(layer, ref, x, mask=None, initial_state=None, tol=1e-9, seed=0):
    """Outputs and gradients (input, every weight) of both layers on ``x``."""
    xt = torch.tensor(x, requires_grad=True)
    st_ = None if initial_state is None else [torch.tensor(s) for s in initial_state]
    mt = None if mask is None else torch.tensor(mask)
    ours = layer(xt, mask=mt, initial_state=st_)
    ours = list(ours) if isinstance(ours, (list, tuple)) else [ours]
    structure = [len(o) if isinstance(o, list) else None for o in ours]
    ours = [t for o in ours for t in (o if isinstance(o, list) else [o])]
    rng = np.random.default_rng(seed)
    probes = [rng.standard_normal(tuple(o.shape)) for o in ours]
    loss = sum((o * torch.tensor(p, dtype=o.dtype)).sum() for o, p in zip(ours, probes))
    grads = torch.autograd.grad(loss, [xt] + list(layer.weights))
    x_tf = tf.Variable(x)
    st_tf = None if initial_state is None else \
        _nested(layer, [tf.constant(s) for s in initial_state])
    m_tf = None if mask is None else tf.constant(mask)
    with tf.GradientTape() as tape:
        theirs = ref(x_tf, mask=m_tf, initial_state=st_tf)
        theirs = list(theirs) if isinstance(theirs, (list, tuple)) else [theirs]
        # the states nested as tf-keras returns them (a stack: per cell)
        assert structure == [len(t) if isinstance(t, (list, tuple)) else None
                             for t in theirs]
        theirs = tf.nest.flatten(theirs)
        tf_loss = tf.add_n([tf.reduce_sum(o * p.astype(x.dtype))
                            for o, p in zip(theirs, probes)])
    tf_grads = tape.gradient(tf_loss, [x_tf] + ref.trainable_weights)
    assert len(ours) == len(theirs) and len(grads) == len(tf_grads)
    pairs = list(zip([o.detach().numpy() for o in ours], [t.numpy() for t in theirs])) + \
        list(zip([g.numpy() for g in grads], [np.asarray(g) for g in tf_grads]))
    for a, b in pairs:
        assert a.shape == b.shape
        scale = max(1.0, float(np.abs(b).max()))
        np.testing.assert_allclose(a, b, atol=tol * scale, rtol=tol)


@st.composite
def cell_kwargs(draw, cls):
    kwargs = dict(units=draw(st.integers(1, 3)),
                  activation=draw(st.sampled_from(["tanh", "tanh", "relu", "sigmoid"])),
                  use_bias=draw(st.booleans()))
    if cls != "SimpleRNNCell":
        kwargs["recurrent_activation"] = draw(st.sampled_from(
            ["sigmoid", "sigmoid", "hard_sigmoid", "tanh"]))
    if cls == "GRUCell":
        kwargs["reset_after"] = draw(st.booleans())
    if cls == "LSTMCell":
        kwargs["unit_forget_bias"] = draw(st.booleans())
    return kwargs


@st.composite
def cases(draw):
    n = draw(st.sampled_from([1, 1, 2, 3]))
    classes = [draw(st.sampled_from(CELLS)) for _ in range(n)]
    cells = [(c, draw(cell_kwargs(c))) for c in classes]
    flags = dict(return_sequences=draw(st.booleans()), return_state=draw(st.booleans()),
                 go_backwards=draw(st.booleans()), unroll=draw(st.booleans()))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 3)))
    masked = draw(st.sampled_from([None, "right", "any"]))
    return (cells, flags, shape, masked, draw(st.booleans()), draw(st.booleans()),
            draw(st.sampled_from(["float64", "float64", "float32"])))


def _mask(kind, shape, rng):
    batch, steps = shape[:2]
    if kind is None:
        return None
    if kind == "right":  # padding at the end (tf-keras' cuDNN-compatible masks)
        lengths = rng.integers(1, steps + 1, batch)
        return np.arange(steps)[None, :] < lengths[:, None]
    return rng.random((batch, steps)) < 0.7


@SETTINGS
@given(cases())
def test_rnn_over_cells_matches_tf_keras(case):
    cells, flags, shape, masked, listed, with_state, dtype = case
    rng = np.random.default_rng(len(str(case)))
    made = [getattr(sepconv, c)(**kw, dtype=dtype) for c, kw in cells]
    cell = made[0] if len(made) == 1 else (made if listed else
                                           sepconv.StackedRNNCells(made, dtype=dtype))
    layer = sepconv.RNN(cell, **flags, dtype=dtype)
    layer.build((None, None, shape[2]))
    _random_weights(layer, rng)
    ref = _tf_twin(layer, shape[2])
    x = rng.standard_normal(shape).astype(dtype)
    initial_state = None
    if with_state:
        initial_state = [rng.standard_normal((shape[0], kw["units"])).astype(dtype)
                         for c, kw in cells for _ in range(2 if c == "LSTMCell" else 1)]
    _compare(layer, ref, x, _mask(masked, shape, rng), initial_state,
             1e-9 if dtype == "float64" else 1e-5)


class _UserCell(torch.nn.Module):
    """A cell as Keras documents custom cells (any module with ``state_size`` and
    forward(inputs, states)), here computing an LSTM step through sepconv's LSTMCell:
    RNN runs it step by step (not the whole-sequence recurrence)."""

    def __init__(self, cell):
        super().__init__()
        self.inner = cell
        self.state_size = cell.state_size

    def forward(self, inputs, states):
        return self.inner(inputs, states)


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("zero_output_for_mask", [False, True])
def test_user_cell_step_by_step_matches_tf_keras(go_backwards, zero_output_for_mask):
    rng = np.random.default_rng(11)
    cell = sepconv.LSTMCell(3, dtype="float64")
    cell.build((None, 2))
    _random_weights(cell, rng)
    layer = sepconv.RNN(_UserCell(cell), return_sequences=True, return_state=True,
                        go_backwards=go_backwards, zero_output_for_mask=zero_output_for_mask,
                        dtype="float64")
    ref = tf_keras.layers.RNN(tf_keras.layers.LSTMCell(3, dtype="float64"),
                              return_sequences=True, return_state=True,
                              go_backwards=go_backwards,
                              zero_output_for_mask=zero_output_for_mask, dtype="float64")
    ref.build((None, None, 2))
    ref.set_weights(cell.get_weights())
    x = rng.standard_normal((3, 5, 2))
    mask = np.array([[1, 1, 0, 1, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], bool)
    assert layer.weights == cell.weights
    _compare(layer, ref, x, mask)


@pytest.mark.parametrize("cls", CELLS)
def test_cell_called_alone_matches_tf_keras(cls):
    """``output, new_states = cell(x_t, states)``: values, structure (a list for a list of
    states; GRU / SimpleRNN given a tensor return a tensor) and gradients."""
    rng = np.random.default_rng(12)
    ours = getattr(sepconv, cls)(3, dtype="float64")
    ours.build((None, 4))
    _random_weights(ours, rng)
    ref = getattr(tf_keras.layers, cls)(3, dtype="float64")
    ref.build((None, 4))
    ref.set_weights(ours.get_weights())
    assert ours.state_size == ref.state_size and ours.output_size == ref.output_size
    x = rng.standard_normal((2, 4))
    count = 2 if cls == "LSTMCell" else 1
    states = [rng.standard_normal((2, 3)) for _ in range(count)]
    out, new = ours(torch.from_numpy(x), [torch.from_numpy(s) for s in states])
    t_out, t_new = ref(tf.constant(x), [tf.constant(s) for s in states])
    assert isinstance(new, list) and len(new) == len(t_new) == count
    for a, b in zip([out] + new, [t_out] + list(t_new)):
        np.testing.assert_allclose(a.detach().numpy(), b.numpy(), atol=1e-12)
    if count == 1:  # a bare tensor state
        out, new = ours(torch.from_numpy(x), torch.from_numpy(states[0]))
        t_out, t_new = ref(tf.constant(x), tf.constant(states[0]))
        assert isinstance(new, torch.Tensor) and not isinstance(t_new, (list, tuple))
        np.testing.assert_allclose(new.detach().numpy(), t_new.numpy(), atol=1e-12)
    zeros = ours.get_initial_state(batch_size=2)
    t_zeros = ref.get_initial_state(batch_size=2, dtype="float64")
    assert isinstance(zeros, list) == isinstance(t_zeros, (list, tuple))
    # gradients of a step with respect to input, states and weights
    xt = torch.tensor(x, requires_grad=True)
    sts = [torch.tensor(s, requires_grad=True) for s in states]
    out, new = ours(xt, sts)
    loss = (out * 1.5).sum() + sum((s * (i + 2)).sum() for i, s in enumerate(new))
    grads = torch.autograd.grad(loss, [xt] + sts + list(ours.weights))
    x_tf, st_tf = tf.Variable(x), [tf.Variable(s) for s in states]
    with tf.GradientTape() as tape:
        t_out, t_new = ref(x_tf, st_tf)
        t_loss = tf.reduce_sum(t_out * 1.5) + tf.add_n(
            [tf.reduce_sum(s * (i + 2)) for i, s in enumerate(t_new)])
    t_grads = tape.gradient(t_loss, [x_tf] + st_tf + ref.trainable_weights)
    for a, b in zip(grads, t_grads):
        np.testing.assert_allclose(a.numpy(), np.asarray(b), atol=1e-12)


def test_stacked_cells_called_alone_match_tf_keras():
    rng = np.random.default_rng(13)
    ours = sepconv.StackedRNNCells([sepconv.GRUCell(2, dtype="float64"),
                                    sepconv.LSTMCell(3, dtype="float64")], dtype="float64")
    ours.build((None, 4))
    _random_weights(ours, rng)
    ref = tf_keras.layers.StackedRNNCells([tf_keras.layers.GRUCell(2, dtype="float64"),
                                           tf_keras.layers.LSTMCell(3, dtype="float64")],
                                          dtype="float64")
    ref.build((None, 4))
    ref.set_weights(ours.get_weights())
    assert ours.state_size == [2, [3, 3]] and list(ref.state_size) == [2, [3, 3]]
    assert ours.output_size == ref.output_size == 3
    x = rng.standard_normal((2, 4))
    states = [rng.standard_normal((2, n)) for n in (2, 3, 3)]
    out, new = ours(torch.from_numpy(x), [torch.from_numpy(s) for s in states])
    t_out, t_new = ref(tf.constant(x), [tf.constant(states[0]),
                                        [tf.constant(states[1]), tf.constant(states[2])]])
    np.testing.assert_allclose(out.detach().numpy(), t_out.numpy(), atol=1e-12)
    flat = [t.detach() for group in new for t in group]
    t_flat = tf.nest.flatten(t_new)
    assert len(flat) == len(t_flat) == 3
    for a, b in zip(flat, t_flat):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-12)


def test_rnn_of_cell_is_the_recurrent_layer_and_uses_its_fast_path(monkeypatch):
    """RNN(LSTMCell(u)) gives LSTM(u)'s numbers bit for bit, through the same fused call
    (functional._fused_rnn) where LSTM takes it; GRU(reset_after) and SimpleRNN too."""
    from sepconv import functional
    rng = np.random.default_rng(14)
    calls = []
    real = functional._fused_rnn
    monkeypatch.setattr(functional, "_fused_rnn",
                        lambda kind, *a, **k: calls.append(kind) or real(kind, *a, **k))
    x = torch.from_numpy(rng.standard_normal((3, 6, 4)).astype(np.float32))
    for cell, layer in ((sepconv.LSTMCell(5), sepconv.LSTM(5)),
                        (sepconv.GRUCell(5), sepconv.GRU(5)),
                        (sepconv.GRUCell(5, reset_after=False), sepconv.GRU(5, reset_after=False)),
                        (sepconv.SimpleRNNCell(5), sepconv.SimpleRNN(5))):
        for kwargs in (dict(return_sequences=True, return_state=True),
                       dict(go_backwards=True, return_state=True)):
            rnn = sepconv.RNN(cell, **kwargs, input_shape=(None, 4))
            twin = type(layer).from_config({**layer.get_config(), **kwargs})
            twin.build((None, None, 4))
            twin.set_weights(rnn.get_weights())
            calls.clear()
            a = rnn(x)
            fused = list(calls)
            calls.clear()
            b = twin(x)
            assert fused == calls
            for u, v in zip(a, b):
                assert torch.equal(u, v)
    assert calls == ["rnn"] * 1  # the last pair (SimpleRNN) fused once per call


def test_stateful_rnn_matches_tf_keras():
    rng = np.random.default_rng(15)
    layer = sepconv.RNN([sepconv.LSTMCell(2, dtype="float64"),
                         sepconv.SimpleRNNCell(3, dtype="float64")], stateful=True,
                        return_sequences=True, batch_input_shape=(2, None, 3), dtype="float64")
    _random_weights(layer, rng)
    ref = _tf_twin(layer, 3, batch=2)
    for _ in range(2):
        x = rng.standard_normal((2, 4, 3))
        np.testing.assert_allclose(layer(torch.from_numpy(x)).detach().numpy(),
                                   ref(x).numpy(), atol=1e-9)
    states = [rng.standard_normal((2, n)) for n in (2, 2, 3)]
    layer.reset_states(states)
    ref.reset_states(_nested(layer, states))
    x = rng.standard_normal((2, 4, 3))
    np.testing.assert_allclose(layer(torch.from_numpy(x)).detach().numpy(), ref(x).numpy(),
                               atol=1e-9)
    layer.reset_states()
    ref.reset_states()
    np.testing.assert_allclose(layer(torch.from_numpy(x)).detach().numpy(), ref(x).numpy(),
                               atol=1e-9)
    assert [tuple(s.shape) for s in layer.states] == [(2, 2), (2, 2), (2, 3)]
    with pytest.raises(ValueError, match="stateful"):
        layer(torch.zeros(3, 4, 3, dtype=torch.float64))


def test_time_major_matches_tf_keras():
    rng = np.random.default_rng(16)
    layer = sepconv.RNN(sepconv.GRUCell(3, dtype="float64"), time_major=True,
                        return_sequences=True, return_state=True, dtype="float64")
    layer.build((None, None, 2))
    _random_weights(layer, rng)
    ref = _tf_twin(layer, 2)
    x = rng.standard_normal((5, 2, 2))  # (time, batch, features)
    _compare(layer, ref, x)
    assert layer.compute_output_shape((5, 2, 2)) == \
        [tuple(s) for s in ref.compute_output_shape((5, 2, 2))]


def test_bidirectional_rnn_of_gru_cell_matches_tf_keras():
    rng = np.random.default_rng(17)
    layer = sepconv.Bidirectional(sepconv.RNN(sepconv.GRUCell(2, dtype="float64"),
                                              return_sequences=True, dtype="float64"))
    layer.build((None, None, 3))
    _random_weights(layer, rng)
    config = layer.get_config()
    ref = tf_keras.layers.Bidirectional.from_config(config)
    ref.build((None, None, 3))
    ref.set_weights(layer.get_weights())
    x = rng.standard_normal((2, 4, 3))
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
    _compare(layer, ref, x, mask)
    assert layer.h5_weight_names()[0].endswith("/gru_cell/kernel") or \
        "gru_cell" in layer.h5_weight_names()[0]


def test_dropout_in_eval_is_identity_and_training_masks_are_shared_across_steps():
    """A cell's dropout inside RNN: at inference nothing (the numbers of tf-keras'
    ``training=False``); in training one input mask per call for every step (tf-keras'
    cells draw it once per call), at the rate asked."""
    layer = sepconv.RNN(sepconv.SimpleRNNCell(1, dropout=0.5), return_sequences=True,
                        input_shape=(None, 1))
    layer.set_weights([np.ones((1, 1), np.float32), np.zeros((1, 1), np.float32),
                       np.zeros(1, np.float32)])
    ref = _tf_twin(layer, 1)
    x = np.ones((400, 6, 1), np.float32)
    ours = layer(torch.from_numpy(x), training=True).detach().numpy()[..., 0]
    theirs = ref(x, training=True).numpy()[..., 0]
    for out in (ours, theirs):
        kept = out > 0.5
        assert 0.4 < kept.mean() < 0.6
        assert (kept == kept[:, :1]).all()
    layer.eval()
    np.testing.assert_allclose(layer(torch.from_numpy(x)).detach().numpy(),
                               ref(x, training=False).numpy(), atol=1e-6)
    rng = np.random.default_rng(18)
    stacked = sepconv.RNN([sepconv.LSTMCell(2, dropout=0.3, recurrent_dropout=0.2),
                           sepconv.GRUCell(2, dropout=0.1)], input_shape=(None, 3))
    _random_weights(stacked, rng)
    ref = _tf_twin(stacked, 3)
    stacked.eval()
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(stacked(torch.from_numpy(x)).detach().numpy(),
                               ref(x, training=False).numpy(), atol=1e-5)


def test_constants_go_to_cells_that_take_them_and_keras_cells_refuse():
    class Shifted(torch.nn.Module):
        state_size = 2

        def forward(self, inputs, states, constants):
            h = torch.tanh(inputs[:, :2] + states[0] + constants[0])
            return h, [h]

    layer = sepconv.RNN(Shifted(), return_sequences=True)
    x = torch.randn(2, 3, 4)
    c = torch.randn(2, 2)
    y = layer(x, constants=[c])
    h = torch.zeros(2, 2)
    for t in range(3):
        h = torch.tanh(x[:, t, :2] + h + c)
        assert torch.allclose(y[:, t], h)
    with pytest.raises(ValueError, match="constants"):
        sepconv.RNN(sepconv.GRUCell(2))(x, constants=[c])
    ref = tf_keras.layers.RNN(tf_keras.layers.GRUCell(2))
    with pytest.raises(ValueError, match="does not support constants"):
        ref(tf.constant(x.numpy()), constants=[tf.constant(c.numpy())])


# -- configs, signatures, shapes ----------------------------------------------------------------
_FULL = dict(units=3, activation="relu", recurrent_activation="hard_sigmoid", use_bias=True,
             kernel_initializer="he_uniform",
             recurrent_initializer=dict(class_name="Orthogonal", config=dict(gain=0.5, seed=1)),
             bias_initializer="ones", unit_forget_bias=False, kernel_regularizer="l2",
             recurrent_regularizer="l1", bias_regularizer="l1_l2",
             kernel_constraint="max_norm", recurrent_constraint="non_neg",
             bias_constraint="unit_norm", dropout=0.25, recurrent_dropout=0.5,
             trainable=False, reset_after=False)
_TAKES = {"LSTMCell": set(_FULL) - {"reset_after"},
          "GRUCell": set(_FULL) - {"unit_forget_bias"},
          "SimpleRNNCell": set(_FULL) - {"unit_forget_bias", "reset_after",
                                         "recurrent_activation"}}


@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("recurrent_dropout", [0.0, 0.5])
def test_cell_config_has_tf_keras_keys_and_values(cls, recurrent_dropout):
    kwargs = {k: v for k, v in _FULL.items() if k in _TAKES[cls]}
    kwargs["recurrent_dropout"] = recurrent_dropout
    name = f"cfg_{cls}{recurrent_dropout}"
    ours = getattr(sepconv, cls)(**kwargs, name=name).get_config()
    theirs = getattr(tf_keras.layers, cls)(**kwargs, name=name).get_config()
    assert list(ours) == list(theirs)
    for key in theirs:
        assert strip_config(ours[key]) == strip_config(theirs[key]), key


def test_rnn_config_nests_cells_as_tf_keras_and_round_trips():
    cells = [tf_keras.layers.GRUCell(2, reset_after=False, name="g"),
             tf_keras.layers.LSTMCell(3, activation="relu", name="l")]
    ref = tf_keras.layers.RNN(tf_keras.layers.StackedRNNCells(cells, name="s"),
                              return_sequences=True, go_backwards=True, name="r_cfg")
    x = np.random.default_rng(19).standard_normal((2, 4, 3)).astype(np.float32)
    want = ref(x).numpy()
    ours = sepconv.RNN.from_config(ref.get_config())
    assert list(ours.get_config()) == list(ref.get_config())
    assert _strip(ours.get_config()) == _strip(ref.get_config())
    assert ours.get_config()["cell"]["module"] == "keras.layers"
    ours.set_weights(ref.get_weights())
    np.testing.assert_allclose(ours(torch.from_numpy(x)).detach().numpy(), want, atol=1e-5)
    again = sepconv.RNN.from_config(ours.get_config())
    assert again.get_config() == ours.get_config()
    assert [c.name for c in again.cell.cells] == ["g", "l"]
    # a plain list of cells is a StackedRNNCells, as in tf-keras
    listed = sepconv.RNN([sepconv.GRUCell(2), sepconv.LSTMCell(3)])
    assert listed.get_config()["cell"]["class_name"] == "StackedRNNCells"
    # weights: tf-keras' order and h5 names
    assert [tuple(w.shape) for w in ours.get_weights()] == \
        [tuple(w.shape) for w in ref.get_weights()]
    assert ours.h5_weight_names() == [w.name.split("/", 1)[1][:-2] for w in ref.weights]


@pytest.mark.parametrize("cls", CELLS)
def test_cell_signature_is_tf_keras_then_r_keras_extras(cls):
    ours = getattr(sepconv, cls)
    theirs = [(p.name, p.default) for p in
              inspect.signature(getattr(tf_keras.layers, cls).__init__).parameters.values()
              if p.kind is not p.VAR_KEYWORD]
    params = [(p.name, p.default) for p in inspect.signature(ours.__init__).parameters.values()]
    assert params[:len(theirs)] == theirs
    assert params[len(theirs):] == [(n, None) for n in COMMON_ARGUMENTS]
    # R keras' cell functions take no `object`: the same arguments, units required
    r = [(p.name, p.default) for p in
         inspect.signature(getattr(sepconv, R_CELLS[cls])).parameters.values()]
    assert r == [("units", None)] + params[2:]
    cell = getattr(sepconv, R_CELLS[cls])(4.0, input_shape=[3.0])
    assert isinstance(cell, ours) and cell.units == 4 and cell.built
    with pytest.raises(ValueError, match="units"):
        getattr(sepconv, R_CELLS[cls])()


def test_rnn_and_stack_signatures_are_tf_keras_then_extras():
    theirs = [(p.name, p.default) for p in
              inspect.signature(tf_keras.layers.RNN.__init__).parameters.values()
              if p.kind is not p.VAR_KEYWORD]
    ours = [(p.name, p.default) for p in
            inspect.signature(sepconv.RNN.__init__).parameters.values()]
    assert ours[:len(theirs)] == theirs
    # tf-keras takes zero_output_for_mask as a keyword (Keras 3 and R keras name it)
    assert ours[len(theirs):] == [("zero_output_for_mask", False)] + \
        [(n, None) for n in COMMON_ARGUMENTS]
    r = [(p.name, p.default) for p in inspect.signature(sepconv.layer_rnn).parameters.values()]
    assert r == [("object", None), ("cell", None)] + ours[2:]
    stack = [(p.name, p.default) for p in
             inspect.signature(sepconv.StackedRNNCells.__init__).parameters.values()]
    assert stack == [("self", inspect.Parameter.empty), ("cells", inspect.Parameter.empty)] + \
        [(n, None) for n in COMMON_ARGUMENTS]
    r = [p.name for p in inspect.signature(sepconv.layer_stacked_rnn_cells).parameters.values()]
    assert r == ["cells"] + list(COMMON_ARGUMENTS)
    model = torch.nn.Sequential()
    assert sepconv.layer_rnn(model, sepconv.layer_lstm_cell(2), input_shape=[None, 3.0]) \
        is model and model[0].built


@pytest.mark.parametrize("flags", [(False, False), (True, False), (False, True), (True, True)])
def test_compute_output_shape_and_mask_match_tf_keras(flags):
    seq, state = flags
    ours = sepconv.RNN([sepconv.GRUCell(2), sepconv.LSTMCell(3)], return_sequences=seq,
                       return_state=state)
    theirs = tf_keras.layers.RNN([tf_keras.layers.GRUCell(2), tf_keras.layers.LSTMCell(3)],
                                 return_sequences=seq, return_state=state)
    want = theirs.compute_output_shape((2, 5, 4))
    want = [tuple(s) for s in want] if state else tuple(want)
    assert ours.compute_output_shape((2, 5, 4)) == want
    mask = tf.constant([[True] * 5] * 2)
    t_mask = theirs.compute_mask(tf.zeros((2, 5, 4)), mask)
    o_mask = ours.compute_mask(torch.zeros(2, 5, 4), torch.ones(2, 5, dtype=torch.bool))
    if state:  # one None per returned state: sepconv returns a stack's states flat (4
        # tensors here), tf-keras nested per cell (its mask list: one None per cell)
        assert len(o_mask) == 4 and len(t_mask) == 3
        assert all(m is None for m in o_mask[1:]) and all(m is None for m in t_mask[1:])
        o_mask, t_mask = o_mask[0], t_mask[0]
    assert (o_mask is None) == (t_mask is None)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="state_size"):
        sepconv.RNN(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="`cells`"):
        sepconv.StackedRNNCells([])
    with pytest.raises(ValueError, match="units"):
        sepconv.LSTMCell(0)
    with pytest.raises(TypeError, match="reset_after"):
        sepconv.GRUCell(2, reset_after="yes")
    with pytest.raises(ValueError, match="dropout"):
        sepconv.SimpleRNNCell(2, dropout=1.5)
    with pytest.raises(ValueError, match="input_shape"):
        sepconv.RNN(sepconv.GRUCell(2), input_shape=(3,))
    cell = sepconv.LSTMCell(2, input_shape=(3,))
    with pytest.raises(ValueError, match="states"):
        cell(torch.zeros(1, 3), [torch.zeros(1, 2)])
    with pytest.raises(ValueError, match="initial_state"):
        sepconv.RNN(cell)(torch.zeros(1, 4, 3), initial_state=[torch.zeros(1, 2)])
    with pytest.raises(ValueError, match="weights"):
        cell.set_weights(cell.get_weights()[:2])
