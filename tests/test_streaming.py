"""sepconv.stream: chunk-by-chunk outputs, concatenated, equal the whole-sequence forward.

The reference is the model itself run on the whole sequence (its layers are tested
against tf-keras elsewhere): streaming must reproduce it for every chunking, one-step
chunks included, in float64 to rounding and in float32 to 1e-5 of scale.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import sepconv
from sepconv.layers.base import KERAS_CLASSES


@pytest.fixture(autouse=True)
def _one_thread(torch_single_thread):
    yield


def _split(length, cuts):
    """Chunk lengths summing to ``length`` (zero-length chunks included) from ``cuts``."""
    bounds = sorted({min(c, length) for c in cuts} | {0, length})
    sizes = [b - a for a, b in zip(bounds, bounds[1:])]
    return sizes[:1] + [0] + sizes[1:] if sizes else [length]


def _streamed(model, x, sizes, time_axis):
    stream = sepconv.stream(model)
    outs, start = [], 0
    for n in sizes:
        outs.append(stream(x.narrow(time_axis, start, n)))
        start += n
    assert start == x.shape[time_axis]
    return torch.cat(outs, dim=time_axis), stream


def _check(model, x, sizes, time_axis, dtype):
    with torch.no_grad():
        want = model(x)
        got, stream = _streamed(model, x, sizes, time_axis)
    assert got.shape == want.shape and got.dtype == want.dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    scale = max(float(want.abs().max()), 1.0)
    torch.testing.assert_close(got, want, rtol=tol, atol=tol * scale)
    return stream


def _separable(fmt, channels, filters, k, d, m, activation, use_bias, dtype):
    shape = (None, channels) if fmt == "channels_last" else (channels, None)
    return sepconv.SeparableConv1D(filters, k, padding="causal", dilation_rate=d,
                                   depth_multiplier=m, activation=activation,
                                   use_bias=use_bias, data_format=fmt, input_shape=shape,
                                   bias_initializer="random_normal", dtype=dtype)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(fmt=st.sampled_from(["channels_last", "channels_first"]),
       layers=st.lists(st.tuples(st.integers(1, 5), st.integers(1, 3), st.integers(1, 2),
                                 st.integers(1, 5), st.sampled_from([None, "relu", "tanh"]),
                                 st.booleans()), min_size=1, max_size=3),
       length=st.integers(1, 40), cuts=st.lists(st.integers(0, 40), max_size=6),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_separable_stack_streams_exactly(fmt, layers, length, cuts, dtype):
    """Causal SeparableConv1D stacks, any kernel size, dilation, multiplier, activation,
    bias, data format, chunking (one-step and empty chunks too), float32 and float64."""
    torch.manual_seed(0)
    channels, modules = 3, []
    for k, d, m, filters, activation, use_bias in layers:
        modules.append(_separable(fmt, channels, filters, k, d, m, activation, use_bias,
                                  dtype))
        channels = filters
    model = torch.nn.Sequential(*modules).eval()
    shape = (2, length, 3) if fmt == "channels_last" else (2, 3, length)
    x = torch.randn(shape, dtype=dtype)
    time_axis = 1 if fmt == "channels_last" else 2
    stream = _check(model, x, _split(length, cuts), time_axis, dtype)
    assert stream.state_steps == [(k - 1) * d for k, d, *_ in layers]
    assert stream.data_format == fmt


def test_one_step_at_a_time_and_reset():
    """Every step on its own equals the whole sequence; reset() starts a new stream (and
    allows another batch size); a new batch size without reset is an error."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        _separable("channels_last", 4, 8, 3, 2, 2, "relu", True, None),
        _separable("channels_last", 8, 8, 5, 1, 1, None, True, None),
        torch.nn.Linear(8, 2)).eval()
    x = torch.randn(3, 30, 4)
    stream = _check(model, x, [1] * 30, 1, torch.float32)
    with pytest.raises(ValueError, match="batch of 3.*stream.reset"):
        stream(torch.randn(2, 1, 4))
    stream.reset()
    y = torch.randn(2, 12, 4)
    with torch.no_grad():
        got = torch.cat([stream(y[:, :5]), stream(y[:, 5:])], dim=1)
        torch.testing.assert_close(got, model(y), rtol=1e-5, atol=1e-5)


def test_torch_layers_channels_last():
    """torch.nn per-step layers on the channel axis of a channels_last model, numpy chunks
    and float64 chunks (cast to the layers' float32) included."""
    torch.manual_seed(2)
    model = torch.nn.Sequential(
        _separable("channels_last", 3, 6, 4, 1, 1, None, True, None),
        torch.nn.Linear(6, 6), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.GELU(),
        torch.nn.PReLU(), torch.nn.Sequential(torch.nn.Tanh(), torch.nn.Identity()),
        _separable("channels_last", 6, 5, 3, 3, 2, "relu", False, None),
        torch.nn.Softmax(dim=-1)).eval()
    x = torch.randn(2, 33, 3)
    _check(model, x, [4, 1, 1, 10, 17], 1, torch.float32)
    stream = sepconv.stream(model)
    with torch.no_grad():
        a = stream(x[:, :10].double().numpy())
        b = stream(x[:, 10:].double())
        assert a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(torch.cat([a, b], dim=1), model(x), rtol=1e-5, atol=1e-6)


def test_torch_layers_channels_first():
    """BatchNorm1d (eval, running statistics), PReLU per channel, Softmax over the
    channels, Dropout1d in a channels_first model."""
    torch.manual_seed(3)
    bn = torch.nn.BatchNorm1d(6)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    model = torch.nn.Sequential(
        _separable("channels_first", 3, 6, 4, 2, 1, None, True, None), bn,
        torch.nn.PReLU(6), torch.nn.Dropout1d(0.3),
        sepconv.SeparableConv1D(4, 1, padding="same", data_format="channels_first",
                                input_shape=(6, None)),
        torch.nn.Softmax(dim=1)).eval()
    _check(model, torch.randn(2, 3, 29), [3, 3, 1, 22], 2, torch.float32)


def test_gradients_flow_within_a_chunk():
    """The state is detached: a chunk's input gradient equals the whole sequence's for
    the outputs of that chunk (the past is a constant)."""
    torch.manual_seed(4)
    model = torch.nn.Sequential(_separable("channels_last", 3, 4, 3, 2, 1, "tanh", True,
                                           torch.float64))
    x = torch.randn(1, 20, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(1, 8, 4, dtype=torch.float64)
    (model(x)[:, 12:] * weight).sum().backward()
    stream = sepconv.stream(model)
    with torch.no_grad():
        stream(x[:, :12])
    tail = x[:, 12:].detach().clone().requires_grad_()
    (stream(tail) * weight).sum().backward()
    torch.testing.assert_close(tail.grad, x.grad[:, 12:])


@pytest.mark.parametrize("build,message", [
    (lambda: sepconv.SeparableConv1D(4, 3, padding="same", input_shape=(None, 3)),
     r"layer 'SeparableConv1D' \(SeparableConv1D 'separable.*padding='same'.*causal"),
    (lambda: torch.nn.Sequential(
        sepconv.SeparableConv1D(4, 2, padding="causal", input_shape=(None, 3)),
        sepconv.SeparableConv1D(4, 3, padding="valid", input_shape=(None, 4))),
     r"layer '1' .*padding='valid'.*only causal layers stream"),
    (lambda: sepconv.SeparableConv1D(4, 3, padding="causal", strides=2,
                                     input_shape=(None, 3)),
     r"strides=\(2,\).*phase"),
    (lambda: torch.nn.Sequential(
        sepconv.SeparableConv1D(4, 3, padding="causal", data_format="channels_first",
                                input_shape=(3, None)), torch.nn.Linear(4, 4)),
     r"layer '1' \(Linear\) needs channels_last input.*layer '0'.*channels_first"),
    (lambda: torch.nn.Sequential(
        torch.nn.BatchNorm1d(3).eval(),
        sepconv.SeparableConv1D(4, 3, padding="causal", input_shape=(None, 3))),
     r"layer '1' .*needs channels_last input.*layer '0' \(BatchNorm1d\)"),
    (lambda: torch.nn.Sequential(
        sepconv.SeparableConv1D(4, 3, padding="causal", input_shape=(None, 3)),
        torch.nn.Softmax(dim=1)),
     r"layer '1' \(Softmax\) needs channels_first"),
    (lambda: sepconv.SeparableConv1D(4, 3, padding="causal", activation="softmax",
                                     data_format="channels_first", input_shape=(3, None)),
     r"softmax over the last axis, the steps"),
    (lambda: torch.nn.Sequential(torch.nn.Conv1d(3, 3, 3)),
     r"layer '0' \(Conv1d\) does not stream.*SeparableConv1D"),
    (lambda: torch.nn.BatchNorm1d(3, track_running_stats=False),
     r"no running statistics"),
])
def test_refused_with_the_layer_named(build, message):
    with pytest.raises(ValueError, match=message):
        sepconv.stream(build())


def test_training_mode_and_bad_chunks_refused_at_call():
    model = torch.nn.Sequential(
        sepconv.SeparableConv1D(4, 3, padding="causal", input_shape=(None, 3)),
        torch.nn.Dropout(0.5))
    stream = sepconv.stream(model)
    with pytest.raises(ValueError, match=r"layer '1' \(Dropout\) is in training mode.*eval"):
        stream(torch.randn(1, 4, 3))
    model.eval()
    with pytest.raises(ValueError, match=r"3D, \(batch, steps, channels\)"):
        stream(torch.randn(4, 3))
    with pytest.raises(ValueError, match="expects input of shape"):
        stream(torch.randn(1, 4, 5))
    with pytest.raises(TypeError, match="`model`"):
        sepconv.stream("model")


@pytest.mark.skipif("Conv1D" not in KERAS_CLASSES,
                    reason="sepconv has no Conv1D layer in this build (the test runs once "
                           "Conv1D is merged)")
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_conv1d_streams(fmt):
    """Causal Conv1D (dilation, groups, activation) beside SeparableConv1D, both formats;
    kernel_size 1 with 'valid' padding too; non-causal Conv1D refused."""
    conv1d = KERAS_CLASSES["Conv1D"]
    torch.manual_seed(5)

    def shape(c):
        return (None, c) if fmt == "channels_last" else (c, None)

    model = torch.nn.Sequential(
        conv1d(filters=6, kernel_size=3, padding="causal", dilation_rate=2, groups=3,
               activation="relu", data_format=fmt, input_shape=shape(3),
               bias_initializer="random_normal"),
        _separable(fmt, 6, 4, 2, 1, 2, "tanh", True, None),
        conv1d(filters=4, kernel_size=1, padding="valid", data_format=fmt,
               input_shape=shape(4)),
        conv1d(filters=5, kernel_size=4, padding="causal", data_format=fmt,
               input_shape=shape(4))).eval()
    x = torch.randn((2, 27, 3) if fmt == "channels_last" else (2, 3, 27))
    stream = _check(model, x, [1, 5, 1, 20], 1 if fmt == "channels_last" else 2,
                    torch.float32)
    assert stream.state_steps == [4, 1, 0, 3]
    with pytest.raises(ValueError, match="padding='same'.*only causal"):
        sepconv.stream(conv1d(filters=2, kernel_size=3, padding="same", data_format=fmt,
                              input_shape=shape(3)))


_KERAS_CORE = ("BatchNormalization", "Dense", "Activation", "Dropout")


@pytest.mark.skipif(any(name not in KERAS_CLASSES for name in _KERAS_CORE),
                    reason="sepconv has no Keras BatchNormalization / Dense / Activation / "
                           "Dropout layers in this build (the test runs once they are "
                           "merged)")
def test_keras_per_step_layers_stream():
    """The channels_last model a Keras user builds: causal SeparableConv1D, Keras
    BatchNormalization (eval, moving statistics), Activation, Dense, Dropout."""
    torch.manual_seed(6)
    bn = KERAS_CLASSES["BatchNormalization"]()
    model = torch.nn.Sequential(
        _separable("channels_last", 3, 6, 3, 2, 1, None, True, None), bn,
        KERAS_CLASSES["Activation"]("relu"), KERAS_CLASSES["Dense"](5),
        KERAS_CLASSES["Dropout"](0.5),
        _separable("channels_last", 5, 4, 4, 1, 1, None, True, None),
        KERAS_CLASSES["Activation"]("softmax")).eval()
    x = torch.randn(2, 25, 3)
    with torch.no_grad():
        model(x)  # builds the layers that learn their input shape at the first call
    rng = np.random.default_rng(0)
    bn.set_weights([rng.uniform(0.5, 2, w.shape).astype(w.dtype) for w in bn.get_weights()])
    _check(model, x, [2, 1, 1, 21], 1, torch.float32)
    with pytest.raises(ValueError, match="needs channels_last"):
        sepconv.stream(torch.nn.Sequential(
            _separable("channels_first", 3, 4, 3, 1, 1, None, True, None),
            KERAS_CLASSES["Dense"](4)))
