"""ConvLSTM1D/2D/3D against tf-keras 2.21 (what R keras wraps) and Keras 3.

Every test builds the same layer in both libraries, copies sepconv's weights into the
other with ``set_weights(get_weights())`` (so Keras' weight shapes and order are checked
too), and compares outputs, states and the gradients of a random linear loss with respect
to the input, ``kernel``, ``recurrent_kernel`` and ``bias`` (tf.GradientTape against torch
autograd), in float64 so that a wrong term cannot hide in float32 rounding.

TensorFlow's CPU convolutions only take channels_last, so for ``data_format=
"channels_first"`` the reference is tf-keras' channels_last layer on the transposed input
(and initial states), with its outputs and input gradient transposed back: what tf-keras
computes on a device that supports NCHW.  The activations used there are elementwise.
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
from tf_keras_compare import (check_signature,  # noqa: E402
                              recurrent_outputs_and_gradients, strip_config)

pytestmark = pytest.mark.usefixtures("torch_single_thread")

CLASSES = {1: sepconv.ConvLSTM1D, 2: sepconv.ConvLSTM2D, 3: sepconv.ConvLSTM3D}
TF_CLASSES = {1: tf_keras.layers.ConvLSTM1D, 2: tf_keras.layers.ConvLSTM2D,
              3: tf_keras.layers.ConvLSTM3D}
SETTINGS = settings(max_examples=24, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def _to_last(a, rank):
    """channels_first ``(batch, [time,] channels, *spatial)`` -> channels_last."""
    return np.moveaxis(np.asarray(a), -rank - 1, -1)


def _to_first(a, rank):
    return np.moveaxis(np.asarray(a), -1, -rank - 1)


def _random_weights(layer, rng, scale=0.5):
    layer.set_weights([rng.standard_normal(w.shape).astype(layer.dtype) * scale
                       for w in layer.get_weights()])


def _tf_layer(layer, **overrides):
    """tf-keras' twin of sepconv ``layer`` (channels_last), with its weights."""
    args = dict(filters=layer.filters, kernel_size=layer.kernel_size, strides=layer.strides,
                padding=layer.padding, dilation_rate=layer.dilation_rate,
                activation=sepconv.activations.serialize(layer.activation),
                recurrent_activation=sepconv.activations.serialize(
                    layer.recurrent_activation),
                use_bias=layer.use_bias, return_sequences=layer.return_sequences,
                return_state=layer.return_state, go_backwards=layer.go_backwards,
                stateful=layer.stateful, dropout=layer.dropout,
                recurrent_dropout=layer.recurrent_dropout, dtype=layer.dtype)
    args.update(overrides)
    ref = TF_CLASSES[layer.RANK](**args)
    if args["stateful"]:  # tf-keras needs the whole shape of a stateful layer
        shape = layer._stateful_shape
        if layer.data_format == "channels_first":
            shape = shape[:2] + shape[3:] + shape[2:3]
        ref.build(shape)
    else:
        ref.build((None, None) + (None,) * layer.RANK + (layer.input_channels,))
    ref.set_weights(layer.get_weights())
    return ref


def _run_both(layer, x, initial_state=None, seed=0):
    """Outputs (list) and gradients (input, then weights) of both libraries, in the
    layer's data format."""
    rank, first = layer.RANK, layer.data_format == "channels_first"
    converters = dict(to_tf=lambda a: _to_last(a, rank),
                      from_tf=lambda a: _to_first(a, rank)) if first else {}
    return recurrent_outputs_and_gradients(layer, _tf_layer(layer), x, initial_state, seed,
                                           **converters)


def _assert_match(ours, grads, theirs, tf_grads, tol):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=tol, rtol=tol)
    assert len(grads) == len(tf_grads)
    for a, b in zip(grads, tf_grads):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=tol, rtol=tol)


@st.composite
def cases(draw):
    rank = draw(st.sampled_from([1, 2, 2, 3]))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    strided = draw(st.booleans())
    strides = tuple(draw(st.integers(1, 2)) for _ in range(rank)) if strided else (1,) * rank
    dilation = (1,) * rank if strided else tuple(draw(st.integers(1, 2)) for _ in range(rank))
    padding = draw(st.sampled_from(["valid", "same", "SAME"]))
    spatial = tuple((k - 1) * d + 1 + draw(st.integers(0, 3))
                    for k, d in zip(kernel, dilation))
    args = dict(filters=draw(st.integers(1, 3)), kernel_size=kernel, strides=strides,
                padding=padding, dilation_rate=dilation,
                data_format=draw(st.sampled_from(["channels_last", "channels_first"])),
                activation=draw(st.sampled_from(["tanh", "relu", "sigmoid"])),
                recurrent_activation=draw(st.sampled_from(["hard_sigmoid", "sigmoid"])),
                use_bias=draw(st.booleans()), return_sequences=draw(st.booleans()),
                return_state=draw(st.booleans()), go_backwards=draw(st.booleans()),
                dtype="float64")
    shape = dict(batch=draw(st.integers(1, 2)), time=draw(st.integers(1, 3)),
                 spatial=spatial, channels=draw(st.integers(1, 2)),
                 initial_state=draw(st.booleans()), seed=draw(st.integers(0, 2**31 - 1)))
    return rank, args, shape


def _input(layer, shape, rng):
    c = shape["channels"]
    if layer.data_format == "channels_last":
        dims = (shape["batch"], shape["time"]) + shape["spatial"] + (c,)
    else:
        dims = (shape["batch"], shape["time"], c) + shape["spatial"]
    return rng.standard_normal(dims).astype(layer.dtype)


@SETTINGS
@given(cases())
def test_outputs_states_and_gradients_match_tf_keras(case):
    rank, args, shape = case
    rng = np.random.default_rng(shape["seed"])
    layer = CLASSES[rank](**args)
    x = _input(layer, shape, rng)
    layer(torch.from_numpy(x[:1]))  # lazy build
    _random_weights(layer, rng)
    initial = None
    if shape["initial_state"]:
        state_shape = layer._state_shape(x.shape)
        initial = [rng.standard_normal(state_shape) for _ in range(2)]
    ours, grads, theirs, tf_grads = _run_both(layer, x, initial, shape["seed"])
    _assert_match(ours, grads, theirs, tf_grads, 1e-9)
    expected = layer.compute_output_shape(x.shape)
    expected = expected if layer.return_state else [expected]
    assert [tuple(o.shape) for o in ours] == [tuple(s) for s in expected]


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_float32_defaults_match_tf_keras(rank):
    """Default arguments (hard_sigmoid, valid padding), float32 at 1e-5 of scale."""
    rng = np.random.default_rng(rank)
    layer = CLASSES[rank](3, 2, return_sequences=True)
    x = rng.standard_normal((2, 4) + (4,) * rank + (2,)).astype(np.float32)
    layer(torch.from_numpy(x))
    ours, grads, theirs, tf_grads = _run_both(layer, x)
    for a, b in zip(ours + grads, theirs + tf_grads):
        np.testing.assert_allclose(a, b, atol=1e-5 * max(1.0, np.abs(b).max()), rtol=1e-4)


@pytest.mark.parametrize("flags", [dict(return_sequences=True, go_backwards=False),
                                   dict(return_sequences=True, go_backwards=True),
                                   dict(return_sequences=False, go_backwards=True)])
def test_timestep_mask_matches_tf_keras(flags):
    """Keras' mask: a masked step keeps the states and repeats the previous output (zeros
    before any unmasked step), with an initial state and the first steps masked."""
    rng = np.random.default_rng(12)
    layer = sepconv.ConvLSTM1D(2, 3, padding="same", return_state=True, dtype="float64",
                               input_shape=(None, 5, 2), **flags)
    _random_weights(layer, rng)
    ref = _tf_layer(layer)
    x = rng.standard_normal((3, 5, 5, 2))
    mask = np.array([[0, 0, 1, 0, 1], [1, 1, 1, 1, 0], [0, 1, 0, 0, 0]], dtype=bool)
    if flags["go_backwards"]:
        mask = mask[:, ::-1].copy()
    initial = [rng.standard_normal((3, 5, 2)) for _ in range(2)]
    xt = torch.tensor(x, requires_grad=True)
    ours = layer(xt, mask=torch.from_numpy(mask),
                 initial_state=[torch.tensor(s) for s in initial])
    x_tf = tf.Variable(x)
    with tf.GradientTape() as tape:
        theirs = ref(x_tf, mask=tf.constant(mask),
                     initial_state=[tf.constant(s) for s in initial])
        tf_loss = tf.add_n([tf.reduce_sum(t * (i + 1)) for i, t in enumerate(theirs)])
    loss = sum((o * (i + 1)).sum() for i, o in enumerate(ours))
    grads = torch.autograd.grad(loss, [xt] + layer.weights)
    tf_grads = tape.gradient(tf_loss, [x_tf] + ref.trainable_weights)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.detach().numpy(), b.numpy(), atol=1e-10)
    for a, b in zip(grads, tf_grads):
        np.testing.assert_allclose(a.numpy(), np.asarray(b), atol=1e-10)
    # the masked steps do matter: no mask gives another answer
    assert not np.allclose(layer(x)[0].detach().numpy(), ours[0].detach().numpy())


def test_axis_activation_sees_the_channels_last_layout():
    """softmax (over the last axis) as activation: the recurrence runs channels-first
    inside, but the activation must see Keras' channels_last tensor."""
    rng = np.random.default_rng(11)
    layer = sepconv.ConvLSTM2D(3, 2, padding="same", activation="softmax",
                               recurrent_activation="sigmoid", return_state=True,
                               dtype="float64", input_shape=(None, 4, 5, 2))
    _random_weights(layer, rng)
    x = rng.standard_normal((2, 3, 4, 5, 2))
    ours, grads, theirs, tf_grads = _run_both(layer, x)
    _assert_match(ours, grads, theirs, tf_grads, 1e-9)


def test_default_initialisation_is_keras():
    """unit_forget_bias: the forget quarter of the bias is ones; the recurrent kernel is
    orthogonal over (prod(kernel_size) * filters, 4 * filters), as tf-keras builds it."""
    layer = sepconv.ConvLSTM2D(3, 2, input_shape=(None, 5, 5, 2))
    ref = tf_keras.layers.ConvLSTM2D(3, 2)
    ref.build((None, None, 5, 5, 2))
    ours = layer.get_weights()
    theirs = ref.get_weights()
    assert [w.shape for w in ours] == [w.shape for w in theirs]
    np.testing.assert_array_equal(ours[2], theirs[2])
    assert (ours[2][3:6] == 1).all() and (ours[2][:3] == 0).all()
    rk = ours[1].reshape(-1, 12)
    np.testing.assert_allclose(rk.T @ rk, np.eye(12), atol=1e-5)
    no_forget = sepconv.ConvLSTM2D(3, 2, unit_forget_bias=False, input_shape=(None, 5, 5, 2))
    assert (no_forget.get_weights()[2] == 0).all()


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_stateful_across_calls_and_reset_match_tf_keras(fmt):
    """float32: tf-keras 2.21 creates a stateful layer's state variables in floatx, so its
    float64 stateful layers fail at the second call."""
    rng = np.random.default_rng(5)
    layer = sepconv.ConvLSTM2D(2, 3, padding="same", stateful=True, return_sequences=True,
                               data_format=fmt, dtype="float32",
                               batch_input_shape=(2, None, 4, 4, 1) if fmt == "channels_last"
                               else (2, None, 1, 4, 4))
    _random_weights(layer, rng)
    ref = _tf_layer(layer, stateful=True)
    xs = [rng.standard_normal(layer.batch_input_shape[:1] + (3,) + layer.batch_input_shape[2:])
          .astype(np.float32) for _ in range(3)]
    tf_in = [_to_last(x, 2) if fmt == "channels_first" else x for x in xs]
    back = (lambda a: _to_first(a, 2)) if fmt == "channels_first" else np.asarray
    ours = [layer(torch.from_numpy(xs[0])), layer(torch.from_numpy(xs[1]))]
    theirs = [ref(tf_in[0]), ref(tf_in[1])]
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.detach().numpy(), back(b.numpy()), atol=1e-5)
    for a, b in zip(layer.states, ref.states):
        np.testing.assert_allclose(a.numpy(), back(b.numpy()), atol=1e-5)
    # The second call really started from the first call's states.
    fresh = sepconv.ConvLSTM2D(2, 3, padding="same", return_sequences=True, data_format=fmt,
                               dtype="float32", weights=layer.get_weights())
    assert not np.allclose(fresh(torch.from_numpy(xs[1])).detach().numpy(),
                           ours[1].detach().numpy())
    layer.reset_states()
    ref.reset_states()
    np.testing.assert_allclose(layer(torch.from_numpy(xs[2])).detach().numpy(),
                               back(ref(tf_in[2]).numpy()), atol=1e-5)
    with pytest.raises(ValueError, match=r"\(2, None, "):
        layer(torch.zeros((3,) + xs[0].shape[1:], dtype=torch.float32))


def test_reset_states_with_values_matches_tf_keras():
    rng = np.random.default_rng(6)
    layer = sepconv.ConvLSTM1D(2, 2, stateful=True, batch_input_shape=(1, None, 5, 3),
                               dtype="float32")
    _random_weights(layer, rng)
    ref = _tf_layer(layer, stateful=True)
    ref(np.zeros((1, 1, 5, 3)))  # tf-keras creates its state variables at the first call
    values = [rng.standard_normal((1, 4, 2)).astype(np.float32) for _ in range(2)]
    layer.reset_states(values)
    ref.reset_states(values)
    x = rng.standard_normal((1, 2, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(layer(torch.from_numpy(x)).detach().numpy(), ref(x).numpy(),
                               atol=1e-5)
    with pytest.raises(ValueError, match="expected shape=\\(1, 4, 2\\)"):
        layer.reset_states([np.zeros((1, 5, 2))] * 2)
    with pytest.raises(AttributeError, match="stateful"):
        sepconv.ConvLSTM1D(2, 2).reset_states()


def test_inference_with_dropout_matches_tf_keras():
    """In eval mode (tf-keras: training=False) dropout does nothing; in training mode
    both libraries drop (their draws differ, so only that is compared).

    tf-keras 2.21 fact: ConvRNN.call never resets the cell's dropout-mask cache, so in
    eager mode the masks of a layer's first call are reused by every later call, inference
    included (a layer first called with training=False never drops; one first called with
    training=True keeps dropping at inference).  Inside tf.function (model.fit) each run
    draws new masks: that is the Keras semantics sepconv follows (new masks per call)."""
    rng = np.random.default_rng(8)
    layer = sepconv.ConvLSTM2D(3, 2, padding="same", dropout=0.4, recurrent_dropout=0.3,
                               return_sequences=True, input_shape=(None, 4, 4, 2))
    _random_weights(layer, rng)
    ref = _tf_layer(layer)
    x = rng.standard_normal((2, 3, 4, 4, 2)).astype(np.float32)
    layer.eval()
    want = ref(x, training=False).numpy()
    np.testing.assert_allclose(layer(torch.from_numpy(x)).detach().numpy(), want, atol=1e-5)
    assert not np.allclose(layer(torch.from_numpy(x), training=True).detach().numpy(), want)
    graph = tf.function(lambda v: ref(v, training=True))
    first, second = graph(x).numpy(), graph(x).numpy()
    assert not np.allclose(first, want) and not np.allclose(first, second)
    assert np.array_equal(ref(x, training=True).numpy(), want)  # the eager cache, above


def test_activity_regularizer_per_output_matches_tf_keras():
    rng = np.random.default_rng(9)
    kwargs = dict(filters=2, kernel_size=2, return_state=True, activity_regularizer="l2",
                  kernel_regularizer="l1", recurrent_regularizer="l2",
                  bias_regularizer="l1_l2")
    layer = sepconv.ConvLSTM1D(input_shape=(None, 5, 3), **kwargs)
    _random_weights(layer, rng)
    ref = tf_keras.layers.ConvLSTM1D(**kwargs)
    ref.build((None, None, 5, 3))
    ref.set_weights(layer.get_weights())
    x = rng.standard_normal((3, 2, 5, 3)).astype(np.float32)
    layer(torch.from_numpy(x))
    ref(x)
    got = [v.item() for v in layer.losses]
    want = [float(v) for v in ref.losses]
    assert len(got) == len(want) == 6
    np.testing.assert_allclose(got, want, rtol=1e-5)


# -- configs, signatures, shapes ----------------------------------------------------------

_FULL = dict(filters=3, kernel_size=2, strides=2, padding="same",
             data_format="channels_last", activation="relu", recurrent_activation="sigmoid",
             use_bias=True, kernel_initializer="he_uniform",
             recurrent_initializer=dict(class_name="Orthogonal", config=dict(gain=0.5,
                                                                             seed=1)),
             bias_initializer="ones", unit_forget_bias=False, kernel_regularizer="l2",
             recurrent_regularizer="l1", bias_regularizer="l1_l2",
             activity_regularizer="l2", kernel_constraint="max_norm",
             recurrent_constraint="non_neg", bias_constraint="unit_norm",
             return_sequences=True, return_state=True, go_backwards=True, stateful=False,
             dropout=0.25, recurrent_dropout=0.5, trainable=False, name="full_lstm_cfg")


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_get_config_has_tf_keras_keys_and_values(rank):
    ours = CLASSES[rank](**dict(_FULL, name=f"cfg{rank}")).get_config()
    theirs = TF_CLASSES[rank](**dict(_FULL, name=f"cfg{rank}")).get_config()
    assert set(ours) == set(theirs)
    for key in theirs:
        assert strip_config(ours[key]) == strip_config(theirs[key]), key


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_from_tf_keras_config_builds_the_same_layer(rank):
    ref = TF_CLASSES[rank](**dict(_FULL, name=f"from_tf{rank}", dropout=0.0,
                                  recurrent_dropout=0.0, trainable=True))
    x = np.random.default_rng(rank).standard_normal((2, 3) + (5,) * rank + (2,))
    x = x.astype(np.float32)
    theirs = ref(x)
    ours = CLASSES[rank].from_config(ref.get_config())
    for key, value in ours.get_config().items():
        assert strip_config(value) == strip_config(ref.get_config()[key]), key
    ours.set_weights(ref.get_weights())
    for a, b in zip(ours(torch.from_numpy(x)), theirs):
        np.testing.assert_allclose(a.detach().numpy(), b.numpy(), atol=1e-5)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_signature_is_tf_keras_then_r_keras_extras(rank):
    check_signature(CLASSES[rank], TF_CLASSES[rank],
                    getattr(sepconv, f"layer_conv_lstm_{rank}d"), required=2)


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("flags", [(False, False), (True, False), (False, True), (True, True)])
def test_compute_output_shape_matches_tf_keras(fmt, flags):
    seq, state = flags
    for rank in (1, 2, 3):
        for k, s, d, pad in [(3, 1, 1, "valid"), (2, 2, 1, "same"), (3, 2, 1, "valid"),
                             (2, 1, 2, "same")]:
            kwargs = dict(filters=4, kernel_size=k, strides=s, dilation_rate=d, padding=pad,
                          data_format=fmt, return_sequences=seq, return_state=state)
            ours = CLASSES[rank](**kwargs)
            ref = TF_CLASSES[rank](**kwargs)
            spatial = tuple(range(7, 7 + rank))
            shape = (2, 3, 5) + spatial if fmt == "channels_first" else (2, 3) + spatial + (5,)
            want = ref.compute_output_shape(tf.TensorShape(shape))
            want = [tuple(w.as_list()) for w in want] if state else tuple(want.as_list())
            assert ours.compute_output_shape(shape) == want, (rank, k, s, d, pad)


# -- Keras 3 ------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("backwards", [False, True])
def test_conv_lstm_2d_forward_matches_keras3(fmt, backwards):
    """Keras 3 (torch backend) given the same weights; Keras 3's hard_sigmoid is another
    formula (relu6(x + 3) / 6), so both use sigmoid here."""
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(10)
    kwargs = dict(filters=3, kernel_size=(3, 2), strides=(2, 1), padding="same",
                  data_format=fmt, recurrent_activation="sigmoid", return_sequences=True,
                  return_state=True, go_backwards=backwards)
    ours = sepconv.ConvLSTM2D(**kwargs)
    x = rng.standard_normal((2, 3, 2, 7, 6) if fmt == "channels_first"
                            else (2, 3, 7, 6, 2)).astype(np.float32)
    ours(torch.from_numpy(x))
    _random_weights(ours, rng)
    ref = keras.layers.ConvLSTM2D(**kwargs)
    ref.build(x.shape)
    ref.set_weights(ours.get_weights())
    theirs = ref(x)
    for a, b in zip(ours(torch.from_numpy(x)), theirs):
        np.testing.assert_allclose(a.detach().numpy(), keras.ops.convert_to_numpy(b),
                                   atol=1e-5)
