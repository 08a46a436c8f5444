"""sepconv.stream against tf-keras 2.21 (what R keras wraps): the chunks' outputs of a
streamed sepconv model, concatenated, equal tf-keras' whole-sequence call of the same
model (weights copied with ``set_weights(get_weights())``), in float64 to 1e-12 of scale.

test_streaming.py proves the stream equals sepconv's own whole-sequence call for many
configurations; this file closes the loop to the reference for the two things the stream
adds beyond the unit-stride convolutions: where a strided causal layer's outputs fall
(tf-keras left-pads ``(kernel_size - 1) * dilation_rate`` zeros, then convolves with
``"valid"`` padding and the stride, so output ``i`` sits at input step ``i * strides``),
and ConvLSTM's recurrence carried over the chunks.
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

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SETTINGS = settings(max_examples=6, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def _copy_into(ours, ref, rng):
    """Random float64 weights into sepconv's layers, then the same into tf-keras'."""
    for layer, twin in zip(ours, ref.layers):
        layer.set_weights([rng.standard_normal(w.shape) * 0.5 for w in layer.get_weights()])
        twin.set_weights(layer.get_weights())


def _stream_chunks(model, x, cuts):
    """Chunks of ``x`` (numpy, time on axis 1) cut at ``cuts`` (an empty one included)
    through a fresh stream, the outputs concatenated."""
    bounds = sorted({min(c, x.shape[1]) for c in cuts} | {0, x.shape[1]})
    stream, outs = sepconv.stream(model), []
    with torch.no_grad():
        for a, b in zip(bounds, bounds[1:]):
            outs.append(stream(x[:, a:b]))
            if a == 0:
                outs.append(stream(x[:, b:b]))
    return torch.cat(outs, dim=1).numpy()


def _assert_close(got, want):
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * max(1.0, abs(want).max()))


@SETTINGS
@given(k1=st.integers(1, 5), s1=st.integers(2, 4), m=st.integers(1, 2),
       k2=st.integers(1, 4), s2=st.integers(1, 3), length=st.integers(1, 30),
       cuts=st.lists(st.integers(0, 30), max_size=6))
def test_strided_causal_stream_matches_tf_keras(k1, s1, m, k2, s2, length, cuts):
    """Causal SeparableConv1D (strides, multiplier) -> causal Conv1D (strides, or a
    dilation when unstrided) -> Dense, streamed in uneven chunks (shorter than the
    strides, empty), against tf-keras' whole-sequence call."""
    d2 = 2 if s2 == 1 else 1
    ours = [sepconv.SeparableConv1D(4, k1, strides=s1, padding="causal", depth_multiplier=m,
                                    activation="relu", dtype="float64",
                                    input_shape=(None, 3)),
            sepconv.Conv1D(3, k2, strides=s2, dilation_rate=d2, padding="causal",
                           activation="tanh", dtype="float64", input_shape=(None, 4)),
            sepconv.Dense(2, dtype="float64")]
    ours[2](torch.zeros(1, 1, 3, dtype=torch.float64))  # build
    ref = tf_keras.Sequential([
        tf_keras.layers.SeparableConv1D(4, k1, strides=s1, padding="causal",
                                        depth_multiplier=m, activation="relu",
                                        dtype="float64", input_shape=(None, 3)),
        tf_keras.layers.Conv1D(3, k2, strides=s2, dilation_rate=d2, padding="causal",
                               activation="tanh", dtype="float64"),
        tf_keras.layers.Dense(2, dtype="float64")])
    rng = np.random.default_rng(k1 * 100 + s1 * 10 + k2)
    _copy_into(ours, ref, rng)
    x = rng.standard_normal((2, length, 3))
    want = ref(x).numpy()
    assert want.shape[1] == -(-(-(-length // s1)) // s2)  # ceil(ceil(length / s1) / s2)
    _assert_close(_stream_chunks(torch.nn.Sequential(*ours).eval(), x, cuts), want)


@pytest.mark.parametrize("padding,strides", [("same", 1), ("valid", 2)])
def test_conv_lstm1d_stream_matches_tf_keras(padding, strides):
    """ConvLSTM1D (return_sequences=True) -> ConvLSTM1D (False) -> Dense streamed one
    step at a time and in uneven chunks: after each chunk, tf-keras' model on the
    sequence so far; the first layer's streamed sequence equals tf-keras' whole one."""
    rng = np.random.default_rng(3)
    ours = [sepconv.ConvLSTM1D(3, 3, strides=strides, padding=padding,
                               return_sequences=True, dtype="float64",
                               input_shape=(None, 7, 2)),
            sepconv.ConvLSTM1D(2, 2, padding="same", dtype="float64"),
            sepconv.Dense(2, dtype="float64")]
    model = torch.nn.Sequential(*ours).eval()
    model(torch.zeros(1, 1, 7, 2, dtype=torch.float64))  # build
    ref = tf_keras.Sequential([
        tf_keras.layers.ConvLSTM1D(3, 3, strides=strides, padding=padding,
                                   return_sequences=True, dtype="float64",
                                   input_shape=(None, 7, 2)),
        tf_keras.layers.ConvLSTM1D(2, 2, padding="same", dtype="float64"),
        tf_keras.layers.Dense(2, dtype="float64")])
    _copy_into(ours, ref, rng)
    x = rng.standard_normal((2, 6, 7, 2))
    for bounds in ([0, 1, 2, 3, 4, 5, 6], [0, 2, 2, 6]):
        stream = sepconv.stream(model)
        with torch.no_grad():
            for a, b in zip(bounds, bounds[1:]):
                got = stream(x[:, a:b]).numpy()
                if b:
                    _assert_close(got, ref(x[:, :b]).numpy())
    first = torch.nn.Sequential(ours[0]).eval()
    _assert_close(_stream_chunks(first, x, [1, 4]), ref.layers[0](x).numpy())


# -- functional models: residual / gated / attention blocks --------------------------------
def _wavenet(K, ops=None):
    """A WaveNet / TCN: causal dilated convolutions, gated units (tanh * sigmoid, through
    layers, or tensor operations when ``ops`` is given), residual and skip sums."""
    L = K.layers
    x = K.Input((None, 3), name="x")
    h = L.Conv1D(8, 1, name="inp")(x)
    skips = []
    for i, d in enumerate((1, 2, 4)):
        a = L.Conv1D(8, 2, dilation_rate=d, padding="causal", name=f"filt{i}")(h)
        # (Keras 3's SeparableConv1D has no causal padding)
        gate = L.SeparableConv1D if K is tf_keras else L.Conv1D
        b = gate(8, 2, dilation_rate=d, padding="causal", name=f"gate{i}")(h)
        if ops is None:
            g = L.Multiply(name=f"mul{i}")([L.Activation("tanh", name=f"tanh{i}")(a),
                                            L.Activation("sigmoid", name=f"sig{i}")(b)])
        else:
            g = ops.tanh(a) * ops.sigmoid(b)
        skips.append(L.Conv1D(6, 1, name=f"skip{i}")(g))
        r = L.Conv1D(8, 1, name=f"res{i}")(g)
        h = L.Add(name=f"resadd{i}")([h, r]) if ops is None else h + r
    s = L.Add(name="skips")(skips)
    y = L.Dense(4, name="head")(L.Activation("relu", name="relu")(s))
    both = L.Concatenate(axis=-1, name="cat")([y, s])
    return K.Model(x, both, name="wavenet")


def _causal_transformer(K):
    """A causal Conv1D front end, then a decoder block (causal self-attention, residual,
    LayerNormalization, feed-forward), and an LSTM."""
    L = K.layers
    x = K.Input((None, 3), name="x")
    h = L.Conv1D(8, 3, padding="causal", activation="relu", name="front")(x)
    a = L.MultiHeadAttention(num_heads=2, key_dim=4, name="att")(h, h, use_causal_mask=True)
    h = L.LayerNormalization(name="ln1")(L.Add(name="res1")([h, a]))
    f = L.Dense(8, name="ff2")(L.Dense(16, activation="gelu", name="ff1")(h))
    h = L.LayerNormalization(name="ln2")(L.Add(name="res2")([h, f]))
    y = L.LSTM(5, return_sequences=True, name="lstm")(h)
    return K.Model(x, [y, h], name="decoder")


def _streamed_graph(model, x, cuts):
    bounds = sorted({min(c, x.shape[1]) for c in cuts} | {0, x.shape[1]})
    stream, outs = sepconv.stream(model), []
    with torch.no_grad():
        for a, b in zip(bounds, bounds[1:]):
            out = stream(torch.from_numpy(x[:, a:b]))
            outs.append(out if isinstance(out, list) else [out])
    return [torch.cat(parts, dim=1).numpy() for parts in zip(*outs)]


@pytest.mark.parametrize("build", ["wavenet", "wavenet_ops", "transformer", "k3_wavenet_ops",
                                   "k3_transformer"])
def test_functional_models_stream_as_tf_keras_computes_them(tmp_path, build):
    """Loaded functional models (residual and skip connections, gated units as layers or
    as tensor operations, causal self-attention with a key/value cache) from tf-keras and
    Keras 3 stream: the chunks' outputs, concatenated, equal Keras' whole-sequence
    outputs."""
    import keras
    tf_keras.utils.set_random_seed(2)
    keras.utils.set_random_seed(2)
    model = {"wavenet": lambda: _wavenet(tf_keras),
             "wavenet_ops": lambda: _wavenet(tf_keras, ops=tf.math),
             "transformer": lambda: _causal_transformer(tf_keras),
             "k3_wavenet_ops": lambda: _wavenet(keras, ops=keras.ops),
             "k3_transformer": lambda: _causal_transformer(keras)}[build]()
    x = np.random.default_rng(3).standard_normal((2, 23, 3)).astype(np.float32)
    want = model.predict(x, verbose=0)
    want = [np.asarray(w) for w in (want if isinstance(want, list) else [want])]
    path = tmp_path / ("m.keras" if build.startswith("k3") else "m.h5")
    model.save(path)
    loaded = sepconv.load_keras_model(path)
    for cuts in ([1, 1, 4, 9, 17], [23], [0, 5, 6, 7, 8, 20]):
        got = _streamed_graph(loaded, x, cuts)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_functional_streams_refuse_what_reads_later_steps(tmp_path):
    L = tf_keras.layers
    x = tf_keras.Input((None, 4), name="x")
    cases = {
        "not causal": L.MultiHeadAttention(2, 2, name="att")(x, x),
        "cross": L.MultiHeadAttention(2, 2, name="att")(x, L.Dense(4, name="d")(x),
                                                        use_causal_mask=True),
        "mean over steps": tf.reduce_mean(x, axis=1, keepdims=True) + x,
        "concat steps": L.Concatenate(axis=1, name="cat")([L.Dense(4, name="d")(x), x]),
        "rates": L.Add(name="add")([L.Conv1D(4, 2, strides=2, padding="causal",
                                             name="down")(x),
                                    L.Conv1D(4, 1, name="same")(x)]),
        "slicing": x[:, ::2] + x[:, 1::2],
    }
    messages = {"not causal": "causal self-attention only", "cross": "self-attention only",
                "mean over steps": r"'tf.math.reduce_mean[^']*'\) gives a tensor without a steps "
                                   r"axis .* to layer .*\(TFOp 'tf.__operators__.add.*'\)",
                "concat steps": "needs channels_first input",
                "rates": "different step rates",
                "slicing": r"TFOp 'tf.__operators__.getitem[^']*'\) indexes axis 1"}
    for name, out in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.h5"
        tf_keras.Model(x, out).save(path)
        with pytest.raises(ValueError, match=messages[name]):  # (time-locality: 1st chunk)
            sepconv.stream(sepconv.load_keras_model(path))(torch.zeros(1, 3, 4))
