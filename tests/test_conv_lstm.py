"""ConvLSTM1D/2D/3D without TensorFlow: dropout semantics (Keras' masks: one per gate,
drawn once per call, shared by every step), train()/eval(), gradcheck in float64, the
layer protocol (weights, configs, state_dict, dtypes, constraints, R functions) and errors
that name the argument.  Numbers against tf-keras and Keras 3 are in
test_parity_conv_lstm_tfkeras.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sepconv
from sepconv import functional

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _gate_layer(**kwargs):
    """ConvLSTM1D, 1 filter, 1 channel, 1x1 kernels, linear activations, no bias: each gate
    is its masked input times a chosen weight, so the masks can be read off the output."""
    return sepconv.ConvLSTM1D(1, 1, activation="linear", recurrent_activation="linear",
                              use_bias=False, return_sequences=True, dtype="float64",
                              input_shape=(None, None, 1), **kwargs)


def test_input_dropout_masks_are_per_gate_and_shared_over_steps():
    torch.manual_seed(0)
    layer = _gate_layer(dropout=0.5)
    # gates i, f, c, o: forget weight 0, so h_t = o * i * c = m_o m_i m_c (each 0 or 2)
    layer.set_weights([np.array([[[1.0, 0.0, 1.0, 1.0]]]), np.zeros((1, 1, 4))])
    x = torch.ones(64, 4, 32, 1, dtype=torch.float64)
    h = layer(x)
    assert set(torch.unique(h).tolist()) <= {0.0, 8.0}
    assert torch.equal(h, h[:, :1].expand_as(h))  # the same mask at every step
    kept = (h[:, 0] != 0).double().mean().item()
    assert abs(kept - 0.125) < 0.03  # three independent masks (one shared mask: 0.5)
    assert not torch.equal(layer(x), h)  # new masks at every call
    layer.eval()
    assert torch.equal(layer(x), torch.ones_like(h))  # no masks: i = c = o = 1, f = 0


def test_recurrent_dropout_masks_are_per_gate_and_shared_over_steps():
    torch.manual_seed(1)
    layer = _gate_layer(recurrent_dropout=0.5)
    layer.set_weights([np.zeros((1, 1, 4)), np.array([[[1.0, 0.0, 1.0, 1.0]]])])
    x = torch.zeros(64, 2, 32, 1, dtype=torch.float64)
    h0 = torch.ones(64, 32, 1, dtype=torch.float64)
    h = layer(x, initial_state=[h0, torch.zeros_like(h0)])
    h1, h2 = h[:, 0], h[:, 1]
    assert set(torch.unique(h1).tolist()) <= {0.0, 8.0}
    kept = (h1 != 0).double().mean().item()
    assert abs(kept - 0.125) < 0.03
    # step 2 reuses step 1's masks: h2 = 8 * M * h1**3 with M = h1 / 8
    torch.testing.assert_close(h2, h1 / 8 * 8 * h1 ** 3, rtol=0, atol=0)


def test_eval_mode_and_training_argument():
    torch.manual_seed(2)
    kwargs = dict(filters=3, kernel_size=3, padding="same", return_sequences=True,
                  input_shape=(None, 5, 5, 2))
    layer = sepconv.ConvLSTM2D(dropout=0.3, recurrent_dropout=0.4, **kwargs)
    plain = sepconv.ConvLSTM2D(weights=layer.get_weights(), **kwargs)
    x = torch.randn(2, 3, 5, 5, 2)
    want = plain(x)
    assert layer.training  # torch modules start in training mode
    assert not torch.allclose(layer(x), want)
    assert torch.equal(layer(x, training=False), want)
    layer.eval()
    assert torch.equal(layer(x), want)
    assert not torch.allclose(layer(x, training=True), want)


@pytest.mark.parametrize("case", [
    dict(rank=2, kernel=(2, 2), strides=1, padding="same", go_backwards=True, masks=True),
    dict(rank=1, kernel=(3,), strides=2, padding="valid", go_backwards=False, masks=False),
    dict(rank=3, kernel=(1, 2, 1), strides=1, padding="same", go_backwards=False, masks=True),
    # no dropout masks, stride 1: the fused path (one convolution of [x_t, h])
    dict(rank=2, kernel=(2, 3), strides=1, padding="same", go_backwards=True, masks=False),
    dict(rank=1, kernel=(3,), strides=1, padding="same", go_backwards=False, masks=False),
    dict(rank=3, kernel=(2, 1, 2), strides=1, padding="valid", go_backwards=True,
         masks=False),
])
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_gradcheck_float64(case, fmt):
    rank, filters, channels = case["rank"], 2, 2
    gen = torch.Generator().manual_seed(3)
    spatial = (4, 3, 2)[:rank]

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)

    first = fmt == "channels_first"
    x = rand(*((1, 2, channels) + spatial if first else (1, 2) + spatial + (channels,)))
    kernel = rand(*case["kernel"], channels, 4 * filters)
    rk = rand(*case["kernel"], filters, 4 * filters)
    bias = rand(4 * filters)
    out_spatial = sepconv.padding.conv_output_shape(spatial, case["kernel"],
                                                    (case["strides"],) * rank, (1,) * rank,
                                                    case["padding"])
    state_shape = (1, filters) + out_spatial if first else (1,) + out_spatial + (filters,)
    h0, c0 = rand(*state_shape), rand(*state_shape)
    masks = {}
    if case["masks"]:
        def mask(shape):
            return torch.bernoulli(torch.full((4,) + shape, 0.6, dtype=torch.float64),
                                   generator=gen) / 0.6
        masks = dict(dropout_mask=mask(tuple(x.shape[:1] + x.shape[2:])),
                     recurrent_dropout_mask=mask(state_shape))

    def fn(x, kernel, rk, bias, h0, c0):
        return functional.conv_lstm(x, kernel, rk, bias, strides=case["strides"],
                                    padding=case["padding"], data_format=fmt,
                                    activation=torch.tanh,
                                    recurrent_activation=sepconv.activations.hard_sigmoid,
                                    initial_state=[h0, c0], return_sequences=True,
                                    go_backwards=case["go_backwards"], **masks)

    assert torch.autograd.gradcheck(fn, (x, kernel, rk, bias, h0, c0))


# -- layer protocol -----------------------------------------------------------------------

def test_weights_shapes_order_and_mismatch():
    layer = sepconv.ConvLSTM3D(4, (1, 2, 3), input_shape=(None, 5, 6, 7, 2))
    assert [w.shape for w in layer.get_weights()] == [(1, 2, 3, 2, 16), (1, 2, 3, 4, 16),
                                                      (16,)]
    assert [n for n, _ in layer.named_parameters()] == ["kernel", "recurrent_kernel", "bias"]
    with pytest.raises(ValueError, match="recurrent_kernel"):
        layer.set_weights([np.zeros((1, 2, 3, 2, 16)), np.zeros((1, 2, 3, 2, 16)),
                           np.zeros(16)])
    with pytest.raises(ValueError, match="expects 3 weights"):
        layer.set_weights(layer.get_weights()[:2])
    no_bias = sepconv.ConvLSTM1D(2, 3, use_bias=False, input_shape=(None, 9, 1))
    assert [w.shape for w in no_bias.get_weights()] == [(3, 1, 8), (3, 2, 8)]


def test_state_dict_round_trip_builds_a_lazy_layer():
    a = sepconv.ConvLSTM2D(3, 2, data_format="channels_first")
    x = torch.randn(2, 3, 2, 5, 5)
    y = a(x)
    b = sepconv.ConvLSTM2D(3, 2, data_format="channels_first")
    b.load_state_dict(a.state_dict())
    assert torch.equal(b(x), y)
    assert set(a.state_dict()) == {"kernel", "recurrent_kernel", "bias"}


def test_config_round_trip_and_registration():
    layer = sepconv.ConvLSTM2D(3, (2, 3), strides=2, padding="same", go_backwards=True,
                               return_state=True, kernel_regularizer="l2", dropout=0.2,
                               recurrent_constraint="max_norm", name="round_trip_lstm")
    config = layer.get_config()
    again = sepconv.ConvLSTM2D.from_config(dict(config, name="round_trip_lstm_2"))
    assert {k: v for k, v in again.get_config().items() if k != "name"} == \
        {k: v for k, v in config.items() if k != "name"}
    from sepconv.layers.base import get_layer_class
    assert get_layer_class("ConvLSTM1D") is sepconv.ConvLSTM1D
    assert get_layer_class("ConvLSTM3D") is sepconv.ConvLSTM3D
    assert "_ConvLSTM" not in sepconv.layers.base.KERAS_CLASSES


@pytest.mark.parametrize("dtype,compute", [("float64", torch.float64),
                                           ("mixed_bfloat16", torch.bfloat16),
                                           ("float16", torch.float16)])
def test_dtype_policies_and_numpy_input(dtype, compute):
    layer = sepconv.ConvLSTM1D(2, 3, padding="same", dtype=dtype, return_state=True,
                               stateful=True, batch_input_shape=(2, None, 6, 3))
    x = np.random.default_rng(0).standard_normal((2, 4, 6, 3))  # float64 array
    outs = layer(x)
    assert all(o.dtype == compute for o in outs) and layer.states[0].dtype == compute
    reference = sepconv.ConvLSTM1D(2, 3, padding="same", dtype="float64",
                                   weights=layer.get_weights())
    tol = 1e-12 if dtype == "float64" else 5e-2
    torch.testing.assert_close(outs[0].double(), reference(x), atol=tol, rtol=tol)


def test_constraints_hold_after_an_optimizer_step():
    layer = sepconv.ConvLSTM1D(2, 2, kernel_constraint="non_neg",
                               recurrent_constraint="non_neg", input_shape=(None, 5, 2))
    opt = torch.optim.SGD(layer.parameters(), lr=1.0)
    layer(torch.randn(3, 2, 5, 2)).square().sum().backward()
    opt.step()
    assert (layer.kernel >= 0).all() and (layer.recurrent_kernel >= 0).all()


def test_stateful_batch_fixed_by_first_call_and_states_detached():
    layer = sepconv.ConvLSTM2D(2, 3, padding="same", stateful=True)
    layer(torch.randn(3, 2, 4, 4, 1))
    assert layer.states[0].shape == (3, 4, 4, 2) and not layer.states[0].requires_grad
    with pytest.raises(ValueError, match=r"\(3, None, 4, 4, 1\)"):
        layer(torch.randn(2, 2, 4, 4, 1))
    with pytest.raises(ValueError, match=r"\(3, None, 4, 4, 1\)"):
        layer(torch.randn(3, 2, 5, 4, 1))
    # backward through two calls works (the first call's graph is not kept)
    layer(torch.randn(3, 2, 4, 4, 1)).sum().backward()
    layer(torch.randn(3, 2, 4, 4, 1)).sum().backward()
    fresh = sepconv.ConvLSTM2D(2, 3, stateful=True)
    with pytest.raises(ValueError, match="batch size"):
        fresh.reset_states()


def test_r_functions():
    model = torch.nn.Sequential()
    out = sepconv.layer_conv_lstm_2d(model, filters=4.0, kernel_size=3.0, padding="same",
                                     input_shape=(None, 8.0, 8.0, 1.0))
    assert out is model and isinstance(model[0], sepconv.ConvLSTM2D)
    assert model[0].filters == 4 and model[0].kernel_size == (3, 3)
    y = sepconv.layer_conv_lstm_1d(np.zeros((2, 3, 7, 2)), filters=2, kernel_size=2,
                                   return_sequences=True)
    assert tuple(y.shape) == (2, 3, 6, 2)
    assert isinstance(sepconv.layer_conv_lstm_3d(None, 2, 1), sepconv.ConvLSTM3D)
    with pytest.raises(ValueError, match="`filters`"):
        sepconv.layer_conv_lstm_2d(None, filters=2.5, kernel_size=3)


def test_extra_repr():
    text = repr(sepconv.ConvLSTM2D(4, 3, padding="same", return_sequences=True,
                                   dropout=0.1, name="repr_lstm"))
    assert "kernel_size=(3, 3)" in text and "return_sequences=True" in text
    assert "dropout=0.1" in text and "name='repr_lstm'" in text


# -- errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,error,pattern", [
    (dict(filters=0, kernel_size=3), ValueError, r"`filters`.*filters=0"),
    (dict(filters=2.5, kernel_size=3), ValueError, r"`filters`.*2\.5"),
    (dict(filters=2, kernel_size=(3, 3, 3)), ValueError, r"`kernel_size`"),
    (dict(filters=2, kernel_size=3, padding="causal"), ValueError, r"`padding`.*causal"),
    (dict(filters=2, kernel_size=3, padding=1), TypeError, r"`padding`"),
    (dict(filters=2, kernel_size=3, strides=2, dilation_rate=2), ValueError, r"strides"),
    (dict(filters=2, kernel_size=3, data_format="nhwc"), ValueError, r"`data_format`"),
    (dict(filters=2, kernel_size=3, dropout=1.0), ValueError, r"`dropout`.*1\.0"),
    (dict(filters=2, kernel_size=3, recurrent_dropout=-0.1), ValueError,
     r"`recurrent_dropout`"),
    (dict(filters=2, kernel_size=3, dropout="0.5"), TypeError, r"`dropout`"),
    (dict(filters=2, kernel_size=3, recurrent_activation="nope"), ValueError,
     r"`recurrent_activation`.*nope"),
    (dict(filters=2, kernel_size=3, return_state=1), TypeError, r"`return_state`"),
    (dict(filters=2, kernel_size=3, unit_forget_bias="yes"), TypeError,
     r"`unit_forget_bias`"),
    (dict(filters=2, kernel_size=3, recurrent_initializer=None), ValueError,
     r"`recurrent_initializer`"),
    (dict(filters=2, kernel_size=3, input_shape=(4, 4, 1)), ValueError, r"`input_shape`"),
    (dict(filters=2, kernel_size=5, input_shape=(None, 4, 4, 1)), ValueError,
     r"`input_shape`.*too small"),
])
def test_errors_name_the_argument(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        sepconv.ConvLSTM2D(**kwargs)


def test_call_errors_name_the_shapes():
    layer = sepconv.ConvLSTM2D(2, 3, input_shape=(None, 5, 5, 1))
    with pytest.raises(ValueError, match=r"rank 5.*\(2, 5, 5, 1\)"):
        layer(torch.zeros(2, 5, 5, 1))
    with pytest.raises(ValueError, match=r"1 channels.*\(2, 3, 5, 5, 2\)"):
        layer(torch.zeros(2, 3, 5, 5, 2))
    with pytest.raises(ValueError, match=r"too small"):
        layer(torch.zeros(2, 3, 2, 5, 1))
    with pytest.raises(ValueError, match=r"`initial_state`.*\(2, 3, 3, 2\)"):
        layer(torch.zeros(2, 3, 5, 5, 1), initial_state=[torch.zeros(2, 5, 5, 2)] * 2)
    with pytest.raises(ValueError, match=r"`initial_state`"):
        layer(torch.zeros(2, 3, 5, 5, 1), initial_state=torch.zeros(2, 3, 3, 2))
    with pytest.raises(ValueError, match=r"`mask`.*\(2, 3\)"):
        layer(torch.zeros(2, 3, 5, 5, 1), mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"no time steps"):
        layer(torch.zeros(2, 0, 5, 5, 1))


def test_functional_validates_masks_and_states():
    x = torch.zeros(2, 3, 5, 4)  # ConvLSTM1D, channels_last
    kernel, rk = torch.zeros(3, 4, 8), torch.zeros(3, 2, 8)
    with pytest.raises(ValueError, match=r"`dropout_mask`.*\(4, 2, 5, 4\)"):
        functional.conv_lstm(x, kernel, rk, dropout_mask=torch.ones(4, 2, 5, 1))
    with pytest.raises(ValueError, match=r"`recurrent_dropout_mask`.*\(4, 2, 3, 2\)"):
        functional.conv_lstm(x, kernel, rk, recurrent_dropout_mask=torch.ones(4, 2, 5, 2))
    with pytest.raises(ValueError, match=r"`padding`"):
        functional.conv_lstm(x, kernel, rk, padding="causal")
    with pytest.raises(ValueError, match=r"recurrent_kernel"):
        functional.conv_lstm(x, kernel, torch.zeros(3, 3, 8))
    out, h, c = functional.conv_lstm(x, kernel, rk, return_sequences=True)
    assert out.shape == (2, 3, 3, 2) and h.shape == c.shape == (2, 3, 2)


@pytest.mark.parametrize("activation, recurrent_activation",
                         [("tanh", "hard_sigmoid"), ("sigmoid", "sigmoid"),
                          ("hard_sigmoid", "tanh"), ("relu", "hard_sigmoid")])
@pytest.mark.parametrize("flags", [dict(return_sequences=True, go_backwards=True),
                                   dict(return_sequences=False, go_backwards=False)])
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_inference_path_gives_the_training_numbers(activation, recurrent_activation, flags,
                                                   fmt):
    """Without autograd the recurrence runs its activations in place and writes h into the
    output sequence: bit for bit the numbers of the autograd path, states not aliased."""
    shape = (2, 3, 5, 4, 2) if fmt == "channels_last" else (2, 3, 2, 5, 4)
    layer = sepconv.ConvLSTM2D(3, 3, padding="same", activation=activation,
                               recurrent_activation=recurrent_activation, return_state=True,
                               data_format=fmt, dtype="float64", input_shape=shape[1:],
                               **flags)
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64)
    state = [torch.randn(layer._state_shape(shape), dtype=torch.float64) for _ in range(2)]
    kept = [s.clone() for s in state]
    with torch.no_grad():
        fast = layer(x, initial_state=state)
    slow = layer(x.requires_grad_(), initial_state=state)
    assert [torch.equal(a, b) for a, b in zip(fast, slow)] == [True] * 3
    assert all(torch.equal(a, b) for a, b in zip(state, kept))
    if flags["return_sequences"]:  # (else the output is h, as in Keras)
        fast[0].zero_()
        assert torch.equal(fast[1], slow[1])
