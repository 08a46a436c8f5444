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


def _check(model, x, sizes, time_axis, dtype, tol32=1e-5):
    with torch.no_grad():
        want = model(x)
        got, stream = _streamed(model, x, sizes, time_axis)
    assert got.shape == want.shape and got.dtype == want.dtype
    tol = 1e-12 if dtype == torch.float64 else tol32
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


def test_torch_norms_over_the_channels_stream():
    """torch.nn.LayerNorm (and RMSNorm where torch has it) over the channel axis of a
    channels_last model: per step, so chunks give the whole sequence's numbers."""
    torch.manual_seed(5)
    norms = [torch.nn.LayerNorm(6)]
    if hasattr(torch.nn, "RMSNorm"):
        norms.append(torch.nn.RMSNorm(6))
    for norm in norms:
        with torch.no_grad():
            norm.weight.uniform_(0.5, 2)
            if getattr(norm, "bias", None) is not None:
                norm.bias.uniform_(-1, 1)
    model = torch.nn.Sequential(
        _separable("channels_last", 3, 6, 4, 2, 1, "relu", True, None), *norms,
        _separable("channels_last", 6, 4, 3, 1, 2, None, True, None)).eval()
    _check(model, torch.randn(2, 31, 3), [5, 1, 0, 12, 13], 1, torch.float32)


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
        sepconv.MaxPooling1D(2, padding="same")),
     r"layer '1' \(MaxPooling1D .*padding='same' with pool_size=\(2,\).*past the end.*"
     r"Only padding='valid'"),
    (lambda: torch.nn.Sequential(
        sepconv.SeparableConv1D(4, 2, padding="causal", input_shape=(None, 3)),
        sepconv.Cropping1D((1, 2))),
     r"layer '1' \(Cropping1D .*cropping=\(1, 2\).*last 2 steps.*Cropping1D\(\(begin, 0\)\)"),
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
    (lambda: torch.nn.Sequential(
        sepconv.SeparableConv1D(4, 3, padding="causal", input_shape=(None, 3)),
        torch.nn.LayerNorm((5, 4))),
     r"layer '1' \(LayerNorm\) normalises over its last 2 axes.*only the channel axis"),
    (lambda: torch.nn.Sequential(
        sepconv.SeparableConv1D(4, 3, padding="causal", data_format="channels_first",
                                input_shape=(3, None)), torch.nn.LayerNorm(4)),
     r"layer '1' \(LayerNorm\) needs channels_last input.*layer '0'.*channels_first"),
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


def test_more_keras_per_step_layers_stream():
    """An input Normalization (adapted), Rescaling by channel, ThresholdedReLU,
    UnitNormalization over the channels, Identity, ActivityRegularization and the dropout
    layers (eval) around causal convolutions stream exactly; statistics over the steps do
    not."""
    torch.manual_seed(7)
    norm = sepconv.Normalization()
    norm.adapt(torch.randn(64, 10, 3) * 3 + 1)
    model = torch.nn.Sequential(
        norm, sepconv.Rescaling([0.5, 2.0, -1.0], offset=0.1),
        _separable("channels_last", 3, 6, 3, 2, 1, None, True, None),
        sepconv.ThresholdedReLU(0.1), sepconv.UnitNormalization(), sepconv.Identity(),
        sepconv.ActivityRegularization(l2=0.01), sepconv.GaussianDropout(0.3),
        sepconv.AlphaDropout(0.2),
        _separable("channels_last", 6, 4, 2, 1, 3, None, True, None)).eval()
    x = torch.randn(2, 25, 3)
    _check(model, x, [4, 1, 0, 13, 7], 1, torch.float32)
    with pytest.raises(ValueError, match="only one channel axis"):
        sepconv.stream(torch.nn.Sequential(sepconv.Normalization(axis=(1, 2)),
                                           _separable("channels_last", 3, 2, 2, 1, 1, None,
                                                      True, None)))
    with pytest.raises(ValueError, match="GroupNormalization"):
        sepconv.stream(torch.nn.Sequential(
            _separable("channels_last", 3, 4, 2, 1, 1, None, True, None),
            sepconv.GroupNormalization(groups=2)))


def test_token_models_stream_from_an_embedding():
    """A token model (Embedding, causal convolution, LSTM, Dense): chunks of (batch,
    steps) ids stream; with mask_zero the convolution drops the mask (as in Keras)."""
    torch.manual_seed(8)
    model = torch.nn.Sequential(
        sepconv.Embedding(30, 6), _separable("channels_last", 6, 8, 3, 2, 1, "relu", True,
                                             None),
        sepconv.LSTM(5, return_sequences=True), sepconv.Dense(30)).eval()
    ids = torch.randint(0, 30, (2, 19))
    _check(model, ids, [1, 0, 4, 9, 5], 1, torch.float32)
    with pytest.raises(ValueError, match=r"\(batch, steps\) ids"):
        sepconv.stream(model)(torch.randn(2, 4, 6))
    masked = sepconv.Sequential(sepconv.Embedding(30, 6, mask_zero=True), *list(model)[1:])
    masked[0].load_state_dict(model[0].state_dict())
    _check(masked.eval(), ids, [1, 0, 4, 9, 5], 1, torch.float32)


# -- recurrent layers -------------------------------------------------------------------------

_RNNS = {"LSTM": sepconv.LSTM, "GRU": sepconv.GRU, "SimpleRNN": sepconv.SimpleRNN}


def _rnn(kind, units, dtype, **kwargs):
    if kind == "GRU_before":
        return sepconv.GRU(units, reset_after=False, dtype=dtype,
                           bias_initializer="random_normal", **kwargs)
    return _RNNS[kind](units, dtype=dtype, bias_initializer="random_normal", **kwargs)


def _prefix_outputs(model, x):
    """The model on every prefix of ``x``: what a return_sequences=False stream gives after
    each step (``None`` for the empty prefix)."""
    return [model(x[:, :t]) for t in range(1, x.shape[1] + 1)]


@settings(max_examples=20, deadline=None, derandomize=True)
@given(kinds=st.lists(st.sampled_from(["LSTM", "GRU", "GRU_before", "SimpleRNN"]),
                      min_size=1, max_size=2),
       last_sequences=st.booleans(), length=st.integers(1, 25),
       cuts=st.lists(st.integers(0, 25), max_size=6),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_recurrent_stack_streams_exactly(kinds, last_sequences, length, cuts, dtype):
    """Causal Conv1D -> recurrent layers -> Dense, any chunking (one-step and empty chunks
    too): with return_sequences=True the chunks' outputs concatenate to the whole
    sequence's; with return_sequences=False each chunk gives the model's output on the
    sequence seen so far, and the last chunk the whole sequence's."""
    torch.manual_seed(7)
    modules = [sepconv.Conv1D(4, 3, padding="causal", dilation_rate=2, dtype=dtype,
                              input_shape=(None, 3))]
    for index, kind in enumerate(kinds):
        last = index == len(kinds) - 1
        modules.append(_rnn(kind, 5, dtype, return_sequences=not last or last_sequences))
    modules.append(sepconv.Dense(2, dtype=dtype))
    model = torch.nn.Sequential(*modules).eval()
    x = torch.randn(2, length, 3, dtype=dtype)
    sizes = _split(length, cuts)
    if last_sequences:
        _check(model, x, sizes, 1, dtype, tol32=1e-6)
        return
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    with torch.no_grad():
        stream = sepconv.stream(model)
        start = 0
        for n in sizes:
            got = stream(x[:, start:start + n])
            start += n
            want = model(x[:, :start]) if start else torch.zeros(2, 2, dtype=dtype) + \
                modules[-1].bias  # Dense on the zero state
            assert got.shape == want.shape == (2, 2) and got.dtype == dtype
            torch.testing.assert_close(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "SimpleRNN"])
def test_recurrent_one_step_at_a_time_reset_and_batch(kind):
    """One step per chunk equals the whole sequence at 1e-6 (float32) / 1e-12 (float64);
    reset() starts a new stream (another batch size included); a new batch size without
    reset is refused."""
    torch.manual_seed(8)
    for dtype in (torch.float32, torch.float64):
        model = torch.nn.Sequential(
            sepconv.Conv1D(6, 4, padding="causal", activation="relu", input_shape=(None, 3),
                           dtype=dtype),
            _rnn(kind, 8, dtype, return_sequences=True), sepconv.Dense(3, dtype=dtype)).eval()
        x = torch.randn(3, 30, 3, dtype=dtype)
        tol = 1e-12 if dtype == torch.float64 else 1e-6
        with torch.no_grad():
            want = model(x)
            stream = sepconv.stream(model)
            got = torch.cat([stream(x[:, t:t + 1]) for t in range(30)], dim=1)
            torch.testing.assert_close(got, want, rtol=tol, atol=tol)
            with pytest.raises(ValueError, match="batch of 3.*stream.reset"):
                stream(torch.randn(2, 1, 3, dtype=dtype))
            stream.reset()
            y = torch.randn(2, 11, 3, dtype=dtype)
            got = torch.cat([stream(y[:, :4]), stream(y[:, 4:])], dim=1)
            torch.testing.assert_close(got, model(y), rtol=tol, atol=tol)
            # without reset the state carries on: the next chunk is not a fresh stream
            assert not torch.allclose(stream(y[:, :4]), model(y[:, :4]))


def test_recurrent_alone_refuses_another_batch():
    """The recurrent step checks the batch itself (above, the convolution before it says
    so first): a new batch size without reset is refused, after reset it streams."""
    model = torch.nn.Sequential(_rnn("GRU", 4, torch.float32, return_sequences=True)).eval()
    with torch.no_grad():
        stream = sepconv.stream(model)
        stream(torch.randn(3, 2, 3))
        with pytest.raises(ValueError, match="batch of 3.*stream.reset"):
            stream(torch.randn(2, 1, 3))
        stream.reset()
        x = torch.randn(2, 5, 3)
        torch.testing.assert_close(stream(x), model(x))


def test_strided_pointwise_layer_refuses_another_batch():
    """A kernel_size-1 strided layer keeps no inputs but a position in its stride: a new
    batch size without reset is refused (it would carry the old streams' position on),
    after reset the new streams start at step 0."""
    model = sepconv.SeparableConv1D(4, 1, strides=3, padding="causal", input_shape=(None, 3))
    model.eval()
    with torch.no_grad():
        stream = sepconv.stream(model)
        stream(torch.randn(3, 2, 3))
        with pytest.raises(ValueError, match=r"batch of 3.*stream.reset"):
            stream(torch.randn(2, 1, 3))
        stream.reset()
        x = torch.randn(2, 8, 3)
        torch.testing.assert_close(torch.cat([stream(x[:, :5]), stream(x[:, 5:])], dim=1),
                                   model(x))


def test_recurrent_gradients_flow_within_a_chunk_and_stateful_untouched():
    """States are detached between chunks (the past is a constant, as for convolutions);
    a stateful layer's own states are neither read nor changed by the stream."""
    torch.manual_seed(9)
    lstm = sepconv.LSTM(4, return_sequences=True, stateful=True, dtype=torch.float64)
    model = torch.nn.Sequential(lstm)
    x = torch.randn(1, 12, 3, dtype=torch.float64)
    stream = sepconv.stream(model)
    with torch.no_grad():
        head = stream(x[:, :7])
    state = [s.clone() for s in stream.steps[0].state]  # h, c after the first chunk
    assert not any(s.requires_grad for s in state)
    tail = x[:, 7:].clone().requires_grad_()
    out = stream(tail)
    out.sum().backward()
    tail2 = x[:, 7:].clone().requires_grad_()
    ref = sepconv.functional.lstm(tail2, lstm.kernel, lstm.recurrent_kernel, lstm.bias,
                                  initial_state=state, return_sequences=True)[0]
    ref.sum().backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(tail.grad, tail2.grad)
    assert head.shape == (1, 7, 4)
    assert lstm.states is None  # the stream did not write the layer's states...
    lstm.reset_states([torch.ones(1, 4), torch.ones(1, 4)])
    stream.reset()
    with torch.no_grad():  # ...nor reads them: a new stream starts from zeros
        got = stream(x)
        want = sepconv.functional.lstm(x, lstm.kernel, lstm.recurrent_kernel, lstm.bias,
                                       return_sequences=True)[0]
        torch.testing.assert_close(got, want)
        assert not torch.allclose(got, lstm(x))  # the layer itself starts from its ones


@pytest.mark.parametrize("build,message", [
    (lambda: torch.nn.Sequential(sepconv.LSTM(4, return_sequences=True, go_backwards=True,
                                              name="back")),
     r"layer '0' \(LSTM 'back'\) has go_backwards=True.*cannot stream causally"),
    (lambda: sepconv.Bidirectional(sepconv.GRU(4, return_sequences=True), name="bi"),
     r"layer 'Bidirectional' \(Bidirectional 'bi'\).*backwards.*cannot stream causally"),
    (lambda: torch.nn.Sequential(sepconv.SimpleRNN(4, return_state=True)),
     r"layer '0' \(SimpleRNN .*return_state=True"),
    (lambda: torch.nn.Sequential(sepconv.LSTM(4, name="head"), sepconv.Conv1D(
        2, 1, input_shape=(None, 4))),
     r"layer '1' .*follows layer '0' \(LSTM 'head'\).*return_sequences=False"),
    (lambda: torch.nn.Sequential(sepconv.GRU(4), sepconv.LSTM(2)),
     r"layer '1' .*follows .*return_sequences=False"),
    (lambda: torch.nn.Sequential(torch.nn.LSTM(3, 4)),
     r"layer '0' \(LSTM\) does not stream.*not torch.nn"),
    (lambda: torch.nn.Sequential(
        sepconv.Conv1D(4, 3, padding="causal", data_format="channels_first",
                       input_shape=(3, None)), sepconv.LSTM(4)),
     r"layer '1' \(LSTM .*needs channels_last.*layer '0'.*channels_first"),
])
def test_recurrent_refused_with_the_layer_named(build, message):
    with pytest.raises(ValueError, match=message):
        sepconv.stream(build())


def test_recurrent_dropout_refused_in_training_mode():
    model = torch.nn.Sequential(sepconv.GRU(3, dropout=0.2, return_sequences=True))
    stream = sepconv.stream(model)
    with pytest.raises(ValueError, match=r"layer '0' \(GRU .*training mode with dropout"):
        stream(torch.randn(1, 4, 2))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(stream(torch.ones(1, 4, 2)), model(torch.ones(1, 4, 2)))
    # no dropout: training mode streams (nothing random)
    plain = torch.nn.Sequential(sepconv.SimpleRNN(3, return_sequences=True))
    with torch.no_grad():
        x = torch.randn(2, 5, 2)
        torch.testing.assert_close(sepconv.stream(plain)(x), plain(x))


# -- strided causal convolutions --------------------------------------------------------------

def _strided(kind, fmt, channels, filters, k, s, d, m, activation, dtype):
    """A causal SeparableConv1D (multiplier ``m``) or Conv1D (``m`` groups, which must
    divide ``channels`` and ``filters``); tf-keras refuses strides and dilation both > 1."""
    shape = (None, channels) if fmt == "channels_last" else (channels, None)
    common = dict(padding="causal", strides=s, dilation_rate=d, activation=activation,
                  data_format=fmt, input_shape=shape, bias_initializer="random_normal",
                  dtype=dtype)
    if kind == "separable":
        return sepconv.SeparableConv1D(filters, k, depth_multiplier=m, **common)
    return sepconv.Conv1D(filters, k, groups=m, **common)


@st.composite
def _strided_layers(draw):
    """(kind, k, s, d, m, filters, activation) per layer, channels 2 in, groups dividing."""
    layers, channels = [], 2
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["separable", "conv"]))
        k, s = draw(st.integers(1, 5)), draw(st.integers(1, 4))
        d = draw(st.integers(1, 3)) if s == 1 else 1
        if kind == "separable":
            m, filters = draw(st.integers(1, 3)), draw(st.integers(1, 4))
        else:
            m = draw(st.sampled_from([g for g in (1, 2) if channels % g == 0]))
            filters = m * draw(st.integers(1, 2))
        layers.append((kind, k, s, d, m, filters,
                       draw(st.sampled_from([None, "relu", "tanh"]))))
        channels = filters
    return layers


@settings(max_examples=40, deadline=None, derandomize=True)
@given(fmt=st.sampled_from(["channels_last", "channels_first"]), layers=_strided_layers(),
       length=st.integers(1, 40), cuts=st.lists(st.integers(0, 40), max_size=8),
       head=st.booleans(), dtype=st.sampled_from([torch.float64, torch.float64,
                                                  torch.float32]))
def test_strided_causal_stack_streams_exactly(fmt, layers, length, cuts, head, dtype):
    """Strided causal SeparableConv1D / Conv1D stacks (any kernel size, stride, dilation
    where tf-keras allows it, multiplier, groups, activation), then per-step layers: every
    chunking (chunks shorter than the stride, empty ones, one-step ones) gives the whole
    sequence's outputs, in order (float64 to 1e-12)."""
    torch.manual_seed(10)
    channels, modules = 2, []
    for kind, k, s, d, m, filters, activation in layers:
        modules.append(_strided(kind, fmt, channels, filters, k, s, d, m, activation, dtype))
        channels = filters
    if head:  # per-step layers after the strided ones, on the channel axis
        modules += [torch.nn.Linear(channels, 3, dtype=dtype), torch.nn.Tanh()] \
            if fmt == "channels_last" else [torch.nn.Softmax(dim=1)]
    model = torch.nn.Sequential(*modules).eval()
    x = torch.randn((2, length, 2) if fmt == "channels_last" else (2, 2, length),
                    dtype=dtype)
    time_axis = 1 if fmt == "channels_last" else 2
    _check(model, x, _split(length, cuts), time_axis, dtype)
    # one step at a time too: most chunks then give no output
    _check(model, x, [1] * length, time_axis, dtype)


def test_strided_output_steps_fall_on_multiples_of_the_stride():
    """From first principles, not from the layer's own call: a causal kernel_size 1 Conv1D
    of identity weights and strides s outputs the input steps 0, s, 2s, ...; with
    kernel_size 2 and weights (1, 10), output i is x[i*s - 1] + 10 x[i*s] (x[-1] = 0)."""
    x = torch.arange(1.0, 12.0, dtype=torch.float64).reshape(1, 11, 1)
    for s in (2, 3, 5):
        pick = sepconv.Conv1D(1, 1, strides=s, padding="causal", use_bias=False,
                              kernel_initializer="ones", dtype="float64",
                              input_shape=(None, 1))
        pair = sepconv.Conv1D(1, 2, strides=s, padding="causal", use_bias=False,
                              dtype="float64", input_shape=(None, 1))
        pair.set_weights([np.array([1.0, 10.0]).reshape(2, 1, 1)])
        padded = torch.cat([torch.zeros(1, 1, 1, dtype=torch.float64), x], dim=1)
        want_pick = x[:, ::s]
        want_pair = padded[:, 0:-1:s] + 10 * padded[:, 1::s]
        for layer, want in ((pick, want_pick), (pair, want_pair)):
            with torch.no_grad():
                assert torch.equal(layer(x), want)
                stream = sepconv.stream(layer)
                got = torch.cat([stream(x[:, a:b]) for a, b in
                                 ((0, 1), (1, 1), (1, 2), (2, 6), (6, 7), (7, 11))], dim=1)
            assert torch.equal(got, want)


def test_strided_phase_resets_and_kernel_size_one_any_padding():
    """reset() zeroes the phase with the state; kernel_size 1 with 'valid' and 'same'
    padding and strides also outputs at the multiples of the stride (TensorFlow's 'same'
    pads nothing there), so it streams; state_steps counts the kept inputs."""
    torch.manual_seed(11)
    model = torch.nn.Sequential(
        sepconv.SeparableConv1D(4, 3, strides=2, padding="causal", input_shape=(None, 3),
                                dtype="float64"),
        sepconv.Conv1D(4, 1, strides=3, padding="same", dtype="float64",
                       input_shape=(None, 4)),
        sepconv.Conv1D(2, 1, strides=2, padding="valid", dtype="float64",
                       input_shape=(None, 4)),
        sepconv.Conv1D(2, 4, strides=2, padding="causal", dtype="float64",
                       input_shape=(None, 2))).eval()
    x = torch.randn(2, 50, 3, dtype=torch.float64)
    stream = _check(model, x, [3, 1, 0, 7, 2, 37], 1, torch.float64)
    assert stream.state_steps == [2, 0, 0, 3]
    with torch.no_grad():
        stream(x[:, :5])  # mid-stride everywhere
        stream.reset()
        torch.testing.assert_close(stream(x), model(x), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"layer '0' .*padding='same'.*only causal"):
        sepconv.stream(torch.nn.Sequential(sepconv.Conv1D(
            2, 3, strides=2, padding="same", input_shape=(None, 3))))


def test_strided_then_recurrent_and_keras_per_step():
    """A strided causal front end (the usual subsampling before an RNN) then LSTM and
    Keras per-step layers, return_sequences True."""
    torch.manual_seed(12)
    model = torch.nn.Sequential(
        sepconv.Conv1D(6, 4, strides=2, padding="causal", activation="relu",
                       dtype="float64", input_shape=(None, 3)),
        sepconv.SeparableConv1D(6, 3, strides=2, padding="causal", dtype="float64",
                                input_shape=(None, 6)),
        sepconv.LayerNormalization(dtype="float64"),
        sepconv.LSTM(5, return_sequences=True, dtype="float64"),
        sepconv.Dense(2, dtype="float64"), sepconv.Activation("softmax")).eval()
    x = torch.randn(2, 45, 3, dtype=torch.float64)
    _check(model, x, [1, 2, 3, 0, 1, 1, 5, 32], 1, torch.float64)


# -- ConvLSTM ---------------------------------------------------------------------------------

_CONV_LSTMS = {1: sepconv.ConvLSTM1D, 2: sepconv.ConvLSTM2D, 3: sepconv.ConvLSTM3D}


def _conv_lstm_input(rank, fmt, length, channels, size, dtype):
    spatial = (size,) * rank
    shape = (2, length) + (spatial + (channels,) if fmt == "channels_last"
                           else (channels,) + spatial)
    return torch.randn(shape, dtype=dtype)


def _check_collapsed(model, x, sizes, dtype, zero):
    """A return_sequences=False stream: after each chunk, the model on the sequence so far
    (``zero``: what it gives before any step)."""
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    with torch.no_grad():
        stream, start = sepconv.stream(model), 0
        for n in sizes:
            got = stream(x[:, start:start + n])
            start += n
            want = model(x[:, :start]) if start else zero
            assert got.shape == want.shape and got.dtype == want.dtype
            torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    return stream


@settings(max_examples=15, deadline=None, derandomize=True)
@given(fmt=st.sampled_from(["channels_last", "channels_first"]),
       geometry=st.sampled_from([(3, 1, "same"), (2, 1, "valid"), (3, 2, "valid"),
                                 (1, 1, "valid"), (3, 2, "same")]),
       last_sequences=st.booleans(), length=st.integers(1, 12),
       cuts=st.lists(st.integers(0, 12), max_size=5),
       dtype=st.sampled_from([torch.float64, torch.float64, torch.float32]))
def test_conv_lstm1d_stack_streams_exactly(fmt, geometry, last_sequences, length, cuts,
                                           dtype):
    """ConvLSTM1D -> ConvLSTM1D -> Dense, chunks along time (the steps axis whole): with
    return_sequences=True the chunks' outputs concatenate to the whole sequence's; with
    False each chunk gives the model on the sequence so far (float64 to 1e-12)."""
    torch.manual_seed(13)
    k, s, padding = geometry
    first = sepconv.ConvLSTM1D(3, k, strides=s, padding=padding, data_format=fmt,
                               return_sequences=True, bias_initializer="random_normal",
                               dtype=dtype)
    second = sepconv.ConvLSTM1D(2, 2, padding="same", data_format=fmt,
                                return_sequences=last_sequences, dtype=dtype,
                                bias_initializer="random_normal")
    dense = sepconv.Dense(2, dtype=dtype)
    model = torch.nn.Sequential(first, second, dense).eval()
    x = _conv_lstm_input(1, fmt, length, 2, 7, dtype)
    sizes = _split(length, cuts)
    if last_sequences:
        stream = _check(model, x, sizes, 1, dtype)
    else:
        with torch.no_grad():  # before any step: the Dense of zero states
            zero = dense(torch.zeros_like(model[:2](x)))
        stream = _check_collapsed(model, x, sizes, dtype, zero)
    assert stream.data_format == "channels_last"  # time is axis 1 in Keras' ConvLSTMs
    assert stream.state_steps == [0, 0, 0]


@pytest.mark.parametrize("rank", [2, 3])
@pytest.mark.parametrize("sequences", [True, False])
def test_conv_lstm2d_3d_stream(rank, sequences):
    """ConvLSTM2D / 3D (the other axes whole), one step at a time and uneven chunks,
    channels_first for 3D; a per-step layer after it."""
    torch.manual_seed(14)
    fmt = "channels_last" if rank == 2 else "channels_first"
    layer = _CONV_LSTMS[rank](2, 2, padding="same" if rank == 2 else "valid",
                              strides=2 if rank == 2 else 1, data_format=fmt,
                              return_sequences=sequences, dtype="float64",
                              bias_initializer="random_normal")
    model = torch.nn.Sequential(layer, torch.nn.Tanh()).eval()
    x = _conv_lstm_input(rank, fmt, 6, 3, 4, torch.float64)
    for sizes in ([1] * 6, [2, 0, 4]):
        if sequences:
            _check(model, x, sizes, 1, torch.float64)
        else:
            _check_collapsed(model, x, sizes, torch.float64, None)


def test_conv_lstm_reset_batch_spatial_and_chunk_rank():
    """reset() starts a new stream; another batch or another spatial size without reset is
    refused naming the layer; chunks of the wrong rank name the layout the model takes."""
    torch.manual_seed(15)
    layer = sepconv.ConvLSTM1D(3, 3, padding="same", return_sequences=True,
                               dtype="float64", name="clstm")
    model = torch.nn.Sequential(torch.nn.Identity(), layer).eval()
    x = _conv_lstm_input(1, "channels_last", 8, 2, 5, torch.float64)
    with torch.no_grad():
        stream = sepconv.stream(model)
        stream(x[:, :3])
        with pytest.raises(ValueError, match=r"layer '1' \(ConvLSTM1D 'clstm'\) holds the "
                                             r"state of a batch of 2.*reset"):
            stream(x[:1, 3:])
        with pytest.raises(ValueError, match=r"'clstm'\) holds states of shape \(2, 5, 3\)"
                                             r".*\(2, 6, 3\).*reset"):
            stream(torch.randn(2, 1, 6, 2, dtype=torch.float64))
        with pytest.raises(ValueError, match=r"A chunk must be 4D, \(batch, time, steps, "
                                             r"channels\) for layer '1' \(ConvLSTM1D"):
            stream(x[:, 0])
        stream.reset()
        torch.testing.assert_close(torch.cat([stream(x[:, :5]), stream(x[:, 5:])], 1),
                                   model(x), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"A chunk must be 5D, \(batch, time, channels, "
                                         r"rows, cols\)"):
        sepconv.stream(sepconv.ConvLSTM2D(2, 1, data_format="channels_first"))(x)


@pytest.mark.parametrize("build,message", [
    (lambda: torch.nn.Sequential(sepconv.ConvLSTM1D(2, 3, go_backwards=True, name="b")),
     r"layer '0' \(ConvLSTM1D 'b'\) has go_backwards=True.*cannot stream causally"),
    (lambda: sepconv.ConvLSTM2D(2, 3, return_state=True, name="s"),
     r"layer 'ConvLSTM2D' \(ConvLSTM2D 's'\) has return_state=True"),
    (lambda: torch.nn.Sequential(sepconv.ConvLSTM1D(2, 3, name="head"),
                                 sepconv.ConvLSTM1D(2, 1)),
     r"layer '1' .*follows layer '0' \(ConvLSTM1D 'head'\).*return_sequences=False"),
    (lambda: torch.nn.Sequential(sepconv.ConvLSTM1D(2, 3, return_sequences=True,
                                                    data_format="channels_first",
                                                    name="cf"), torch.nn.Softmax(dim=1)),
     r"layer '1' \(Softmax\) needs channels_first input, but layer '0' \(ConvLSTM1D 'cf'\)"
     r" makes this a channels_last model \(steps on axis 1\)"),
])
def test_conv_lstm_refused_with_the_layer_named(build, message):
    with pytest.raises(ValueError, match=message):
        sepconv.stream(build())


def test_conv_lstm_dropout_refused_in_training_mode():
    model = torch.nn.Sequential(sepconv.ConvLSTM1D(2, 1, recurrent_dropout=0.3,
                                                   return_sequences=True))
    stream = sepconv.stream(model)
    with pytest.raises(ValueError, match=r"layer '0' \(ConvLSTM1D .*training mode with "
                                         r"dropout"):
        stream(torch.randn(1, 2, 3, 2))
    model.eval()
    x = torch.randn(1, 4, 3, 2)
    with torch.no_grad():
        torch.testing.assert_close(torch.cat([stream(x[:, :1]), stream(x[:, 1:])], 1),
                                   model(x))


def test_module_docstring_example_runs():
    """The example in sepconv.streaming's docstring (strides, empty chunks) runs and
    prints what it shows."""
    import doctest
    import sepconv.streaming
    result = doctest.testmod(sepconv.streaming, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 5 and result.failed == 0


def test_a_loaded_sequential_streams_through_its_input_layer(tmp_path):
    """``load_keras_model`` gives a Sequential whose first module is the file's
    ``InputLayer`` (its dtype cast): it streams as a per-step layer, and the stream
    equals the whole sequence (float64 chunks cast as the model's input would be)."""
    pytest.importorskip("h5py")
    model = torch.nn.Sequential(
        sepconv.SeparableConv1D(6, 3, padding="causal", activation="relu",
                                input_shape=(None, 3)),
        sepconv.Conv1D(2, 2, padding="causal", dilation_rate=2))
    model(torch.zeros(1, 4, 3))
    sepconv.save_keras_model(model, tmp_path / "m.h5")
    loaded = sepconv.load_keras_model(tmp_path / "m.h5")
    assert type(next(iter(loaded.children()))).__name__ == "InputLayer"
    x = torch.randn(2, 13, 3, dtype=torch.float64)
    stream = sepconv.stream(loaded)
    with torch.no_grad():
        got = torch.cat([stream(x[:, a:b]) for a, b in ((0, 1), (1, 6), (6, 6), (6, 13))], 1)
        want = loaded(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


# -- windows: strided 'valid' convolutions and pooling, upsampling, cropping ----------------
def _window(kind, fmt, channels, k, s, d):
    shape = (None, channels) if fmt == "channels_last" else (channels, None)
    if kind in ("MaxPooling1D", "AveragePooling1D"):
        return getattr(sepconv, kind)(k, strides=s, data_format=fmt), channels
    common = dict(strides=s, dilation_rate=d, padding="valid", data_format=fmt,
                  input_shape=shape, bias_initializer="random_normal")
    if kind == "DepthwiseConv1D":
        return sepconv.DepthwiseConv1D(k, depth_multiplier=2, **common), channels * 2
    return getattr(sepconv, kind)(4, k, **common), 4


@st.composite
def _window_layers(draw):
    out = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["Conv1D", "SeparableConv1D", "DepthwiseConv1D",
                                     "MaxPooling1D", "AveragePooling1D"]))
        k, s = draw(st.integers(1, 5)), draw(st.integers(1, 4))
        d = draw(st.integers(1, 3)) if s == 1 and "Pooling" not in kind else 1
        out.append((kind, k, s, d))
    return out


@settings(max_examples=40, deadline=None, derandomize=True)
@given(fmt=st.sampled_from(["channels_last", "channels_first"]), layers=_window_layers(),
       length=st.integers(0, 45), cuts=st.lists(st.integers(0, 45), max_size=6),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_valid_windows_stream_exactly(fmt, layers, length, cuts, dtype):
    """Stacks of 'valid' convolutions (strided, dilated, depthwise, separable) and 'valid'
    MaxPooling1D / AveragePooling1D: output i reads the steps i*s .. i*s + span and is
    emitted once its last step has come; joined, the chunks give the whole sequence's
    outputs (none while the sequence is shorter than a window)."""
    torch.manual_seed(3)
    channels, modules = 3, []
    for kind, k, s, d in layers:
        layer, channels = _window(kind, fmt, channels, k, s, d)
        modules.append(layer)
    model = torch.nn.Sequential(*modules).to(dtype).eval()
    axis = 1 if fmt == "channels_last" else 2
    x = torch.randn((2, length, 3) if axis == 1 else (2, 3, length), dtype=dtype)
    try:
        with torch.no_grad():
            model(x)
    except ValueError:  # the sequence is shorter than a window: Keras has no output
        return
    _check(model, x, _split(length, cuts), axis, dtype)


def test_upsampling_and_begin_cropping_stream():
    """UpSampling1D repeats each step of a chunk; Cropping1D((begin, 0)) drops the
    stream's first steps (over several chunks too); after a strided layer, upsampling by
    the stride gives back the input's step rate."""
    torch.manual_seed(4)
    model = torch.nn.Sequential(
        sepconv.Conv1D(4, 3, padding="causal", input_shape=(None, 3)),
        sepconv.UpSampling1D(3), sepconv.Cropping1D((7, 0)),
        sepconv.Conv1D(5, 2, strides=2, padding="causal"), sepconv.UpSampling1D(2),
        sepconv.Dense(2)).eval()
    x = torch.randn(2, 24, 3)
    for sizes in ([1] * 24, [0, 2, 0, 1, 21], [24], [5, 5, 14]):
        _check(model, x, sizes, 1, torch.float32)


def _masked_steps(x, rows):
    """Zero whole steps of ``x`` (batch, steps, features) per row: ``rows[i]`` a list of
    (start, stop): a Masking(0.0) layer masks them."""
    x = x.clone()
    for i, spans in enumerate(rows):
        for a, b in spans:
            x[i, a:b] = 0
    return x


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "SimpleRNN", "RNN"])
@pytest.mark.parametrize("zero_output", [False, True])
def test_masked_recurrent_layers_stream_across_chunk_bounds(kind, zero_output):
    """Masking -> recurrent layers (return_sequences True, then False): a masked step keeps
    the states and outputs the previous output, which at a chunk's first steps is the
    last chunk's (or zeros with zero_output_for_mask); the model's own forward carries
    the mask over the whole sequence (sepconv.Sequential, tested against tf-keras)."""
    torch.manual_seed(5)

    def rnn(units, sequences):
        if kind == "RNN":
            layer = sepconv.RNN(sepconv.GRUCell(units), return_sequences=sequences)
        else:
            layer = getattr(sepconv, kind)(units, return_sequences=sequences)
        layer.zero_output_for_mask = zero_output
        return layer

    x = _masked_steps(torch.randn(3, 20, 4), [[(0, 3), (9, 12)], [(5, 9)], [(12, 20)]])
    sequences = sepconv.Sequential(sepconv.Masking(0.0, input_shape=(None, 4)),
                                   rnn(5, True), sepconv.Dense(3), rnn(3, True)).eval()
    for sizes in ([1] * 20, [0, 4, 0, 5, 11], [9, 1, 10], [20]):
        _check(sequences, x, sizes, 1, torch.float32)
    last = sepconv.Sequential(sepconv.Masking(0.0, input_shape=(None, 4)), rnn(5, True),
                              rnn(3, False), sepconv.Dense(2)).eval()
    stream = sepconv.stream(last)
    with torch.no_grad():
        for a, b in ((0, 2), (2, 2), (2, 10), (10, 11), (11, 20)):
            torch.testing.assert_close(stream(x[:, a:b]), last(x[:, :b]), rtol=1e-5,
                                       atol=1e-6)


def test_masked_mean_streams_and_global_max_drops_the_mask():
    """GlobalAveragePooling1D reads the mask: a running mean of the unmasked steps (per
    stream); GlobalMaxPooling1D does not support masking (Keras drops the mask there)."""
    torch.manual_seed(6)
    ids = torch.randint(1, 9, (3, 17))
    ids[0, :4] = ids[1, 6:10] = ids[2, 9:] = 0
    for pool in (sepconv.GlobalAveragePooling1D(), sepconv.GlobalMaxPooling1D()):
        model = sepconv.Sequential(sepconv.Embedding(9, 4, mask_zero=True),
                                   sepconv.GRU(5, return_sequences=True), pool,
                                   sepconv.Dense(2)).eval()
        stream = sepconv.stream(model)
        with torch.no_grad():
            for a, b in ((0, 5), (5, 5), (5, 8), (8, 9), (9, 17)):
                torch.testing.assert_close(stream(ids[:, a:b]), model(ids[:, :b]),
                                           rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("build,message", [
    (lambda: sepconv.Sequential(sepconv.Masking(0.0, input_shape=(None, 4)),
                                sepconv.MaxPooling1D(2, strides=1, padding="same")),
     r"padding='same' with pool_size=\(2,\)"),
    (lambda: sepconv.Sequential(sepconv.Masking(0.0, input_shape=(None, 4, 3)),
                                sepconv.ConvLSTM1D(2, 2, return_sequences=True)),
     r"ConvLSTM1D .*reads a Keras mask .*masked ConvLSTM layers do not stream"),
])
def test_mask_and_window_refusals(build, message):
    chunk = torch.randn(1, 5, 4) if "pool_size" in message else torch.randn(1, 5, 4, 3)
    with pytest.raises(ValueError, match=message):  # (at stream() or the first chunk)
        sepconv.stream(build().eval())(chunk)


def test_a_wrapper_that_drops_the_mask_drops_it_in_the_stream():
    """SpectralNormalization does not support masking (its wrapped Dense does): the model
    drops the mask there, so the GRU after it sees none, in the stream as well."""
    torch.manual_seed(7)
    model = sepconv.Sequential(sepconv.Masking(0.0, input_shape=(None, 4)),
                               sepconv.SpectralNormalization(sepconv.Dense(4)),
                               sepconv.GRU(3, return_sequences=True)).eval()
    x = _masked_steps(torch.randn(2, 12, 4), [[(2, 5)], [(7, 12)]])
    with torch.no_grad():
        model(x)  # (builds the wrapper)
    _check(model, x, [3, 0, 9], 1, torch.float32)
