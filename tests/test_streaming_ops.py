"""Streaming the models users write: operation nodes (tf-keras' TFOpLambda, Keras 3's
operations), Lambda layers, Reshape, causal DepthwiseConv1D (ZeroPadding1D + "valid"),
global pooling heads, and MultiHeadAttention's bounded cache.

Each model is built in tf-keras 2.21 or Keras 3 (torch backend), saved (.h5 and .keras),
loaded with ``sepconv.load_keras_model`` and streamed in random chunk sizes; the chunks'
outputs, concatenated, must equal Keras' ``predict`` on the whole sequence (1e-5 of the
output's scale, float32).  Nodes that mix steps are refused on the first chunk, by a
message naming the node."""

from __future__ import annotations

import numpy as np
import pytest
import torch

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")
ops = keras.ops

import sepconv  # noqa: E402
from sepconv import streaming  # noqa: E402

# Lambda functions as users write them: module-level names (``tf``, ``ops``) in the code.
GATE_TF = lambda t: tf.tanh(t[..., :4]) * tf.sigmoid(t[..., 4:])  # noqa: E731
GATE_K3 = lambda t: ops.tanh(t[..., :4]) * ops.sigmoid(t[..., 4:])  # noqa: E731
GATE2_TF = lambda ts: tf.tanh(ts[0]) * tf.sigmoid(ts[1])  # noqa: E731
GATE2_K3 = lambda ts: ops.tanh(ts[0]) * ops.sigmoid(ts[1])  # noqa: E731
HALF_TF = lambda t: tf.nn.relu(t) * 0.5  # noqa: E731
HALF_K3 = lambda t: ops.relu(t) * 0.5  # noqa: E731
CUMSUM_TF = lambda t: tf.cumsum(t, axis=1)  # noqa: E731
CUMSUM_K3 = lambda t: ops.cumsum(t, axis=1)  # noqa: E731
FLIP_K3 = lambda t: ops.flip(t, axis=1)  # noqa: E731
SLICE100 = lambda t: t[:, :100] * 2.0  # noqa: E731


def _tf_ops():
    class O:  # tf as the operations' namespace
        tanh, sigmoid, relu, cumsum = tf.tanh, tf.sigmoid, tf.nn.relu, tf.cumsum
        squeeze, expand_dims, reshape, shape = tf.squeeze, tf.expand_dims, tf.reshape, tf.shape
        matmul, split = tf.matmul, tf.split

        @staticmethod
        def mean(x, axis, keepdims):
            return tf.reduce_mean(x, axis=axis, keepdims=keepdims)

        @staticmethod
        def concatenate(xs, axis):
            return tf.concat(xs, axis=axis)

        @staticmethod
        def pad(x, widths):
            return tf.pad(x, widths)
    return O


def _models(flavour):
    """name -> build(): causal sequence models as users write them, (None, 8) inputs."""
    tfk = flavour == "tfk"
    K = tf_keras if tfk else keras
    L, o = K.layers, (_tf_ops() if tfk else ops)

    def m(fn):
        def build():
            x = K.Input((None, 8), name="x")
            return K.Model(x, fn(x))
        return build

    def causal(f, k, d=1, **kw):
        return L.Conv1D(f, k, padding="causal", dilation_rate=d, **kw)

    def wavenet_block(x):  # gated activation as operations, residual and skip
        h = o.tanh(causal(8, 2)(x)) * o.sigmoid(causal(8, 2, 2)(x))
        return L.Add()([x, L.Conv1D(8, 1)(h)]), L.Conv1D(4, 1)(h)

    def wavenet(x):
        h, skip1 = wavenet_block(x)
        _, skip2 = wavenet_block(h)
        return o.relu(L.Add()([skip1, skip2]))

    def sep(x):  # Keras 3's SeparableConv1D has no causal padding: grouped Conv1D there
        conv = L.SeparableConv1D(8, 3, padding="causal") if tfk else \
            L.Conv1D(8, 3, padding="causal", groups=2)
        return L.Add()([x, conv(x)])

    return {
        "wavenet_ops": m(wavenet),
        "gate_lambda": m(lambda x: L.Lambda(GATE_TF if tfk else GATE_K3)(causal(8, 3)(x))),
        "gate_lambda_list": m(lambda x: L.Lambda(GATE2_TF if tfk else GATE2_K3)(
            [L.Dense(4)(x), L.Dense(4)(x)])),
        "split_gate": m(lambda x: (lambda ab: o.tanh(ab[0]) * o.sigmoid(ab[1]))(
            o.split(causal(8, 3)(x), 2, axis=-1))),
        "half_relu_ops": m(lambda x: o.relu(L.Dense(4)(x)) * 0.5),
        "half_relu_lambda": m(lambda x: L.Lambda(HALF_TF if tfk else HALF_K3)(x)),
        "separable_residual": m(sep),
        "depthwise_causal": m(lambda x: L.DepthwiseConv1D(3, dilation_rate=2)(
            L.ZeroPadding1D((4, 0))(x))),
        "expand_squeeze": m(lambda x: o.squeeze(o.expand_dims(x, -1), -1) + x),
        "reshape_layer": m(lambda x: L.Reshape((-1, 8))(L.Reshape((-1, 4, 2))(x) * 2.0)),
        "mean_channels": m(lambda x: x - o.mean(x, axis=-1, keepdims=True)),
        "concat_channels": m(lambda x: o.concatenate([x, x * 2.0], axis=-1)),
        "matmul_features": m(lambda x: o.matmul(x, np.eye(8, dtype="float32") * 3.0)),
        "time_distributed": m(lambda x: L.TimeDistributed(L.Dense(3))(
            L.Reshape((-1, 4, 2))(x))),
        "norm_dense_gru": m(lambda x: L.GRU(5, return_sequences=True)(
            L.Dense(6)(L.LayerNormalization()(x)))),
        "attention_block": m(lambda x: L.LayerNormalization()(L.Add()([
            x, L.MultiHeadAttention(2, 4)(x, x, use_causal_mask=True)]))),
        **({"reshape_shape_ops": m(lambda x: o.reshape(
            o.reshape(x, (-1, o.shape(x)[1], 4, 2)) * 2.0, (-1, o.shape(x)[1], 8)))}
           if tfk else {}),  # (Keras 3's symbolic shapes have None steps)
    }


def _stream_in_chunks(model, x, cuts):
    stream, outs = sepconv.stream(model), []
    with torch.no_grad():
        for a, b in zip(cuts, cuts[1:]):
            out = stream(torch.from_numpy(x[:, a:b]))
            outs.append(out if isinstance(out, list) else [out])
    return [torch.cat(parts, dim=1).numpy() for parts in zip(*outs)]


def _random_cuts(rng, steps):
    """Chunk bounds: one-step chunks, an empty one, random lengths."""
    inner = sorted(rng.integers(0, steps + 1, size=rng.integers(2, 7)).tolist())
    return [0, 1, 1] + [max(c, 1) for c in inner] + [steps]


def _assert_close(got, want):
    assert got.shape == want.shape
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("flavour,ext", [
    ("tfk", ".h5"), pytest.param("tfk", ".keras", marks=pytest.mark.slow), ("k3", ".keras"),
    pytest.param("k3", ".h5", marks=pytest.mark.slow)])
def test_user_models_stream_as_keras_computes_them(tmp_path, flavour, ext):
    (tf_keras if flavour == "tfk" else keras).utils.set_random_seed(4)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 29, 8)).astype(np.float32)
    for name, build in _models(flavour).items():
        model = build()
        want = model.predict(x, verbose=0)
        want = [np.asarray(w) for w in (want if isinstance(want, list) else [want])]
        path = tmp_path / f"{name}{ext}"
        model.save(path)
        loaded = sepconv.load_keras_model(path, safe_mode=False)
        for _ in range(2):
            got = _stream_in_chunks(loaded, x, _random_cuts(rng, x.shape[1]))
            assert len(got) == len(want), name
            for g, w in zip(got, want):
                _assert_close(g, w)


def _refused_models(flavour):
    tfk = flavour == "tfk"
    K = tf_keras if tfk else keras
    L, o = K.layers, (_tf_ops() if tfk else ops)

    def m(fn):
        x = K.Input((None, 8), name="x")
        return K.Model(x, fn(x))

    node = "TFOp 'tf." if tfk else "KerasOp '"
    return [
        (m(lambda x: o.cumsum(x, axis=1)),
         rf"\({node}(math.)?cumsum[^']*'\) mixes steps: run on a probe sequence in two chunks"),
        (m(lambda x: x - o.mean(x, axis=1, keepdims=True)),
         rf"\({node}(math.reduce_)?mean[^']*'\) gives a tensor without a steps axis .* to "
         rf"layer .*subtract"),
        (m(lambda x: L.Dense(2)(o.mean(x, axis=1, keepdims=False))),
         rf"\({node}(math.reduce_)?mean.*'\) gives a tensor without a steps axis .* to "
         rf"layer .*Dense"),
        (m(lambda x: o.mean(x, axis=1, keepdims=False)),
         r"gives the model an output without a steps axis"),
        (m(lambda x: x[:, 1:] * 2.0),
         r"indexes axis 1 of a tensor of shape \(2, 37, 8\) .* with \(slice\(None, None, "
         r"None\), slice\(1, None, None\)\)"),
        (m(lambda x: o.pad(x, [[0, 0], [1, 0], [0, 0]])[:, :-1]),
         r"mixes steps|indexes axis 1"),
        (m(lambda x: L.Lambda(CUMSUM_TF if tfk else CUMSUM_K3)(x)),
         r"layer 'lambda.*' \(Lambda 'lambda.*'\) mixes steps"),
        (m(lambda x: L.Lambda(SLICE100)(x)),
         r"\(Lambda 'lambda.*'\) indexes axis 1 .* slice\(None, 100, None\)"),
        (m(lambda x: L.Reshape((10, 8))(x)),
         r"\(Reshape 'reshape.*'\) does not run on a chunk of \[78\] steps"),
        (m(lambda x: L.Permute((2, 1))(x)),
         r"\(Permute 'permute.*'\) gives the model an output without a steps axis"),
        (m(lambda x: L.DepthwiseConv1D(3)(L.ZeroPadding1D((2, 1))(x))),
         r"\(ZeroPadding1D 'zero_padding1d.*'\) has padding=\(2, 1\): it pads 1 steps "
         r"after the end"),
    ] + ([(m(lambda x: L.Lambda(FLIP_K3)(x)), r"\(Lambda 'lambda.*'\) mixes steps")]
         if not tfk else [])


@pytest.mark.parametrize("flavour,ext", [("tfk", ".h5"), ("k3", ".keras")])
def test_what_mixes_steps_is_refused_naming_the_node(tmp_path, flavour, ext):
    for i, (model, message) in enumerate(_refused_models(flavour)):
        path = tmp_path / f"m{i}{ext}"
        model.save(path)
        loaded = sepconv.load_keras_model(path, safe_mode=False)
        with pytest.raises(ValueError, match=message):  # (at stream() or the first chunk)
            sepconv.stream(loaded)(torch.zeros(2, 3, 8))


def test_sequential_lambdas_are_probed(torch_single_thread):
    """A torch Sequential with sepconv.Lambda layers: per-step ones stream, ones that mix
    steps are refused on the first chunk; after a collapsing layer any Lambda applies."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        sepconv.Conv1D(6, 3, padding="causal", input_shape=(None, 4)),
        sepconv.Lambda(lambda t: torch.tanh(t[..., :3]) * torch.sigmoid(t[..., 3:])),
        sepconv.Reshape((-1, 3, 1)), sepconv.Reshape((-1, 3)),
        sepconv.LSTM(5), sepconv.Lambda(lambda t: t - t.mean(dim=1, keepdim=True))).eval()
    x = torch.randn(2, 17, 4)
    stream = sepconv.stream(model)
    with torch.no_grad():
        for a, b in ((0, 0), (0, 1), (1, 9), (9, 17)):
            got = stream(x[:, a:b])
            if b:
                torch.testing.assert_close(got, model(x[:, :b]), rtol=0, atol=1e-5)
    for fn, message in ((lambda t: t.cumsum(dim=1), r"layer '1' \(Lambda .*mixes steps"),
                        (lambda t: t[:, -1:], r"layer '1' \(Lambda .*indexes axis 1"),
                        (lambda t: t - t.mean(dim=1, keepdim=True), r"mixes steps"),
                        (lambda t: t.mean(dim=1), r"layer '1' \(Lambda .*gives the model an "
                                                  r"output without a steps axis")):
        model = torch.nn.Sequential(
            sepconv.Conv1D(6, 3, padding="causal", input_shape=(None, 4)),
            sepconv.Lambda(fn)).eval()
        with pytest.raises(ValueError, match=message):
            sepconv.stream(model)(x[:, :3])


def test_cut_axis_rule():
    lengths = {37}
    assert streaming._cut_axis((2, 37, 8), (slice(None), slice(None), slice(None, 4)),
                               lengths) is None
    assert streaming._cut_axis((2, 37, 8), (Ellipsis, slice(4, None)), lengths) is None
    assert streaming._cut_axis((2, 37, 8), (slice(None), slice(0, None)), lengths) is None
    assert streaming._cut_axis((2, 37, 8), (slice(None), slice(None, 100)), lengths) == 1
    assert streaming._cut_axis((2, 37, 8), (slice(None), -1), lengths) == 1
    assert streaming._cut_axis((2, 37, 8), (Ellipsis, 0, slice(None)), lengths) == 1
    assert streaming._cut_axis((2, 8, 37), (None, Ellipsis, slice(1, None)), lengths) == 2
    assert streaming._cut_axis((2, 37, 8), 1, lengths) is None  # (the batch axis)


# -- the six models of bench/model_train.py, causal where they can be -----------------------
def _bench_models():
    """bench/model_train.py's models at small sizes, with causal padding where they pad:
    each chunk's output is the model's on the whole sequence seen so far (global pooling
    heads stream as running means / maxima)."""
    L = tf_keras.layers

    def model(inp, x, classes):
        return tf_keras.Model(inp, L.Dense(classes, activation="softmax")(x))

    def main_job():
        inp = x = L.Input((None, 1))
        for filters, k in ((8, 8), (6, 5), (4, 3)):
            x = L.ReLU()(L.BatchNormalization()(L.SeparableConv1D(filters, k,
                                                                  padding="causal")(x)))
        return model(inp, L.GlobalAveragePooling1D()(x), 2), "float"

    def kws_matchbox():
        inp = L.Input((None, 6))
        x = L.ReLU()(L.BatchNormalization()(L.Conv1D(8, 11, strides=2,
                                                     padding="causal")(inp)))
        for k in (13, 15, 17):
            x = L.ReLU()(L.BatchNormalization()(L.SeparableConv1D(6, k,
                                                                  padding="causal")(x)))
        return model(inp, L.GlobalAveragePooling1D()(L.Conv1D(8, 1)(x)), 12), "float"

    def text_cnn():
        inp = L.Input((None,), dtype="int32")
        x = L.Conv1D(8, 5, padding="causal", activation="relu")(L.Embedding(50, 6)(inp))
        return model(inp, L.GlobalMaxPooling1D()(x), 2), "int"

    def wavenet_stack():
        inp = L.Input((None, 1))
        x = L.Conv1D(8, 1)(inp)
        for d in (1, 2, 4, 8):
            y = L.Conv1D(8, 2, padding="causal", dilation_rate=d, activation="tanh")(x)
            x = L.Add()([x, L.Conv1D(8, 1)(y)])
        return model(inp, L.GlobalAveragePooling1D()(x), 10), "float"

    def lstm_text():
        inp = L.Input((None,), dtype="int32")
        return model(inp, L.LSTM(6)(L.Embedding(50, 4)(inp)), 2), "int"

    return {"main_job": main_job, "kws_matchbox": kws_matchbox, "text_cnn": text_cnn,
            "wavenet_stack": wavenet_stack, "lstm_text": lstm_text}


@pytest.mark.parametrize("name", ["main_job", "kws_matchbox", "text_cnn", "wavenet_stack",
                                  "lstm_text"])
def test_bench_models_stream_a_running_prediction(tmp_path, name):
    tf_keras.utils.set_random_seed(6)
    model, kind = _bench_models()[name]()
    rng = np.random.default_rng(7)
    if kind == "int":
        x = rng.integers(1, 50, size=(2, 31)).astype(np.int32)
    else:
        x = rng.standard_normal((2, 31, model.input_shape[-1])).astype(np.float32)
    for layer in model.layers:  # non-trivial batch-norm statistics
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            w = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, v.shape).astype(np.float32)
                               if i in (0, 3) else rng.normal(0, 0.3, v.shape)
                               .astype(np.float32) for i, v in enumerate(w)])
    model.save(tmp_path / "m.h5")
    loaded = sepconv.load_keras_model(tmp_path / "m.h5")
    stream = sepconv.stream(loaded.eval())
    with torch.no_grad():
        for a, b in zip([0, 1, 2, 2, 9, 20], [1, 2, 2, 9, 20, 31]):
            got = stream(torch.from_numpy(x[:, a:b])).numpy()
            if b:
                _assert_close(got, model.predict(x[:, :b], verbose=0))


def test_bench_eegnet_is_refused(tmp_path):
    """EEGNet is 2D (Conv2D over electrodes x time): it does not stream."""
    L = tf_keras.layers
    inp = L.Input((4, None, 1))
    out = L.DepthwiseConv2D((4, 1))(L.Conv2D(2, (1, 4), padding="same")(inp))
    tf_keras.Model(inp, out).save(tmp_path / "m.h5")
    with pytest.raises(ValueError, match=r"\(Conv2D 'conv2d.*'\) does not stream"):
        sepconv.stream(sepconv.load_keras_model(tmp_path / "m.h5"))


# -- MultiHeadAttention's bounded cache ----------------------------------------------------
def _attention_model(K):
    L = K.layers
    x = K.Input((None, 6), name="x")
    h = L.Conv1D(6, 2, padding="causal", name="front")(x)
    a = L.MultiHeadAttention(2, 3, name="att")(h, h, use_causal_mask=True)
    return K.Model(x, L.Add(name="res")([h, a]))


def _banded(steps, window):
    """Each query's last ``window`` steps, itself included (a causal band)."""
    i = np.arange(steps)[:, None]
    j = np.arange(steps)[None, :]
    return ((j <= i) & (j > i - window)).astype(bool)


def test_bounded_attention_keeps_the_last_steps(tmp_path):
    """max_attention_steps=N: each query attends to its last N steps, whatever the
    chunking: tf-keras' attention given that banded mask over the whole sequence."""
    tf_keras.utils.set_random_seed(8)
    model = _attention_model(tf_keras)
    model.save(tmp_path / "m.h5")
    loaded = sepconv.load_keras_model(tmp_path / "m.h5")
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 27, 6)).astype(np.float32)
    front, att = model.get_layer("front"), model.get_layer("att")
    h = front(x)
    for window in (1, 4, 9):
        mask = np.broadcast_to(_banded(27, window), (2, 27, 27))
        want = (h + att(h, h, attention_mask=mask)).numpy()
        for _ in range(2):
            cuts = _random_cuts(rng, 27)
            stream, outs = sepconv.stream(loaded, max_attention_steps=window), []
            with torch.no_grad():
                for a, b in zip(cuts, cuts[1:]):
                    outs.append(stream(torch.from_numpy(x[:, a:b])))
            _assert_close(torch.cat(outs, 1).numpy(), want)
            steps = [s for s in stream.steps if isinstance(s, streaming._CausalAttention)]
            assert steps[0].keys.shape[1] == window - 1  # the cache holds N - 1 steps
    # unbounded (the default) and a bound above the stream's length: Keras' numbers
    want = model.predict(x, verbose=0)
    for bound in (None, 27):
        got = _stream_in_chunks(loaded, x, [0, 5, 6, 27]) if bound is None else None
        if bound is not None:
            stream, outs = sepconv.stream(loaded, max_attention_steps=bound,
                                          attention_overflow="error"), []
            with torch.no_grad():
                for a, b in ((0, 5), (5, 6), (6, 27)):
                    outs.append(stream(torch.from_numpy(x[:, a:b])))
            got = [torch.cat(outs, 1).numpy()]
        _assert_close(got[0], want)


def test_bounded_attention_error_mode_refuses_what_changes_the_numbers(tmp_path):
    keras.utils.set_random_seed(10)
    model = _attention_model(keras)
    model.save(tmp_path / "m.keras")
    loaded = sepconv.load_keras_model(tmp_path / "m.keras")
    x = torch.randn(1, 12, 6)
    stream = sepconv.stream(loaded, max_attention_steps=10, attention_overflow="error")
    with torch.no_grad():
        first = stream(x[:, :8])
        with pytest.raises(ValueError, match=r"layer 'att' \(MultiHeadAttention 'att'\) has "
                                             r"seen 8 steps and the chunk brings 3: over "
                                             r"max_attention_steps=10"):
            stream(x[:, 8:11])
        second = stream(x[:, 8:10])  # (the refused chunk changed nothing)
        want = loaded(x[:, :10])
        torch.testing.assert_close(torch.cat([first, second], 1), want, rtol=0, atol=1e-5)
        stream.reset()
        assert stream(x[:, :10]).shape == (1, 10, 6)
    for kwargs, message in (({"max_attention_steps": 0}, "max_attention_steps=0"),
                            ({"max_attention_steps": 2.5}, "max_attention_steps=2.5"),
                            ({"max_attention_steps": True}, "max_attention_steps=True"),
                            ({"attention_overflow": "drop"}, "attention_overflow='drop'")):
        with pytest.raises(ValueError, match=rf"Invalid value for argument .*{message}"):
            sepconv.stream(loaded, **kwargs)
    assert sepconv.stream(loaded, max_attention_steps=512.0).max_attention_steps == 512  # R


# -- the probe's rule on drawn compositions (torch Lambdas: no Keras needed) ---------------
_W = torch.linspace(-1, 1, 36).reshape(6, 6)
_LOCAL = {  # output at a step from that step only
    "tanh": lambda t: torch.tanh(t), "half": lambda t: t * 0.5,
    "gate": lambda t: torch.cat([torch.tanh(t[..., :3]) * torch.sigmoid(t[..., 3:])] * 2, -1),
    "center": lambda t: t - t.mean(dim=-1, keepdim=True),
    "softmax": lambda t: torch.softmax(t, dim=-1),
    "reshape": lambda t: (t.reshape(t.shape[0], t.shape[1], 3, 2) * 2).reshape(t.shape),
    "matmul": lambda t: t @ _W, "leaky": lambda t: torch.where(t > 0, t, 0.1 * t),
    "flip_channels": lambda t: t.flip(-1), "sign": lambda t: torch.sign(t) + t,
}
_MIXING = {  # output at a step reads other steps, and the message that says so
    "cumsum": (lambda t: t.cumsum(1), "mixes steps"),
    "reverse": (lambda t: t.flip(1), "mixes steps"),
    "roll": (lambda t: t.roll(1, dims=1), "mixes steps"),
    "demean_time": (lambda t: t - t.mean(1, keepdim=True), "mixes steps"),
    "shift": (lambda t: torch.cat([torch.zeros_like(t[:, :1]), t[:, :-1]], 1),
              "indexes axis 1"),
    "position": (lambda t: t * torch.arange(t.shape[1], dtype=t.dtype)[:, None],
                 "mixes steps"),
    "cummax": (lambda t: t.cummax(1).values, "mixes steps"),
    "last": (lambda t: t[:, -1], "indexes axis 1"),
}


def test_drawn_compositions_stream_or_are_refused_at_the_first_mixer(torch_single_thread):
    from hypothesis import given, settings
    from hypothesis import strategies as st
    names = st.sampled_from(sorted(_LOCAL) + sorted(_MIXING))

    @settings(max_examples=40, deadline=None, derandomize=True, database=None)
    @given(st.lists(names, min_size=1, max_size=4), st.integers(1, 9), st.integers(0, 3))
    def check(chain, chunk, seed):
        torch.manual_seed(seed)
        layers = [sepconv.Conv1D(6, 3, padding="causal", input_shape=(None, 4))]
        layers += [sepconv.Lambda(_LOCAL[n] if n in _LOCAL else _MIXING[n][0])
                   for n in chain]
        model = torch.nn.Sequential(*layers).eval()
        x = torch.randn(2, 19, 4) * (seed + 1)
        stream = sepconv.stream(model)
        mixers = [i for i, n in enumerate(chain) if n in _MIXING]
        with torch.no_grad():
            if mixers:
                first = chain[mixers[0]]
                with pytest.raises(ValueError, match=rf"layer '{mixers[0] + 1}' \(Lambda .*"
                                                     rf"{_MIXING[first][1]}"):
                    stream(x[:, :chunk])
                return
            got = torch.cat([stream(x[:, a:a + chunk]) for a in range(0, 19, chunk)], 1)
            torch.testing.assert_close(got, model(x), rtol=0,
                                       atol=1e-5 * max(1.0, float(model(x).abs().max())))
    check()


# -- windows (strided 'valid' convolutions, pooling, upsampling, cropping) and masks --------
def _window_and_mask_models(flavour):
    """name -> (build(), kind, collapsed): models with strided 'valid' convolutions,
    'valid' pooling, UpSampling1D, Cropping1D((begin, 0)), and Keras masks (Masking,
    Embedding(mask_zero=True)) into recurrent layers and a masked mean.  ``kind``: the
    input ("float": (batch, steps, 8) with whole zero steps; "int": ids with zeros);
    ``collapsed``: the output has no steps (a running prediction)."""
    tfk = flavour == "tfk"
    K = tf_keras if tfk else keras
    L = K.layers

    def m(fn, kind="float", collapsed=False):
        def build():
            x = K.Input((None, 8) if kind == "float" else (None,), name="x",
                        dtype="float32" if kind == "float" else "int32")
            return K.Model(x, fn(x))
        return build, kind, collapsed

    def masked_residual(x):  # the mask flows through a merge (AND of the masks)
        h = L.Masking(0.0)(x)
        a = L.SimpleRNN(6, return_sequences=True)(h)
        return L.LSTM(3, return_sequences=True)(L.Add()([a, L.Dense(6)(h)]))

    return {
        "strided_valid_convs": m(lambda x: L.Conv1D(4, 2, strides=3)(
            L.Conv1D(6, 3, strides=2, activation="relu")(x))),
        "strided_valid_separable": m(lambda x: L.SeparableConv1D(5, 4, strides=2)(x)),
        "strided_valid_depthwise": m(lambda x: L.DepthwiseConv1D(3, strides=2)(x)),
        "valid_pooling": m(lambda x: L.Dense(3)(L.AveragePooling1D(2)(
            L.MaxPooling1D(3, strides=2)(L.Conv1D(6, 2, padding="causal")(x))))),
        "pool_after_causal_stride": m(lambda x: L.MaxPooling1D(4, strides=1)(
            L.Conv1D(5, 3, strides=2, padding="causal")(x))),
        "upsample_crop": m(lambda x: L.Conv1D(3, 1)(L.Cropping1D((3, 0))(
            L.UpSampling1D(3)(L.Conv1D(4, 2, padding="causal")(x))))),
        "masked_lstm_gru": m(lambda x: L.Dense(2)(L.GRU(4, return_sequences=True)(
            L.LSTM(5, return_sequences=True)(L.Masking(0.0)(x))))),
        "masked_residual": m(masked_residual),
        "masked_gru_last": m(lambda x: L.Dense(2)(L.GRU(4)(L.Dense(6)(L.Masking(0.0)(x)))),
                             collapsed=True),
        "embedding_mask_mean": m(lambda x: L.Dense(2)(L.GlobalAveragePooling1D()(
            L.LSTM(5, return_sequences=True)(L.Embedding(10, 4, mask_zero=True)(x)))),
            kind="int", collapsed=True),
        "embedding_mask_simple_rnn": m(lambda x: L.SimpleRNN(3, return_sequences=True)(
            L.Embedding(10, 4, mask_zero=True)(x)), kind="int"),
    }


def _masked_inputs(rng, kind, steps=29):
    """Inputs with masked steps at the start, inside and at the end of the rows."""
    if kind == "int":
        x = rng.integers(1, 10, size=(2, steps)).astype(np.int32)
        x[0, 4:7] = x[1, 0:2] = x[1, 20:] = 0
        return x
    x = rng.standard_normal((2, steps, 8)).astype(np.float32)
    x[0, 4:7] = x[1, 0:2] = x[1, 20:] = 0
    return x


def _keras_call(model, x):
    """The model's output on ``x`` as numpy, called eagerly (no retracing per length)."""
    out = model(x, training=False)
    return np.asarray(out) if hasattr(out, "numpy") and not hasattr(out, "detach") else \
        keras.ops.convert_to_numpy(out)


@pytest.mark.parametrize("flavour,ext", [("tfk", ".h5"), ("k3", ".keras")])
def test_windows_and_masks_stream_as_keras_computes_them(tmp_path, flavour, ext):
    """Strided 'valid' convolutions and 'valid' pooling (output i emitted once its last
    step has come), UpSampling1D, Cropping1D((begin, 0)), and Keras masks carried chunk by
    chunk into LSTM / GRU / SimpleRNN (a masked step keeps the states and outputs the
    previous output, across chunk bounds too) and GlobalAveragePooling1D's masked mean:
    the joined chunks equal Keras' predict on the whole sequence; a collapsed output
    equals predict on the steps seen so far."""
    (tf_keras if flavour == "tfk" else keras).utils.set_random_seed(8)
    rng = np.random.default_rng(9)
    for name, (build, kind, collapsed) in _window_and_mask_models(flavour).items():
        model = build()
        x = _masked_inputs(rng, kind)
        path = tmp_path / f"{name}{ext}"
        model.save(path)
        loaded = sepconv.load_keras_model(path, safe_mode=False)
        if collapsed:
            stream = sepconv.stream(loaded)
            with torch.no_grad():
                for a, b in zip([0, 1, 1, 5, 13], [1, 1, 5, 13, 29]):
                    got = stream(torch.from_numpy(x[:, a:b])).numpy()
                    if a < b:
                        _assert_close(got, _keras_call(model, x[:, :b]))
            continue
        want = _keras_call(model, x)
        for _ in range(2):
            got, = _stream_in_chunks(loaded, x, _random_cuts(rng, x.shape[1]))
            _assert_close(got, want)


def test_a_mask_into_attention_is_refused(tmp_path):
    """Masking -> causal self-attention: the model masks the padded steps' keys, which
    the stream's key cache does not: refused naming the layer, on the first chunk."""
    L = tf_keras.layers
    x = tf_keras.Input((None, 6), name="x")
    h = L.Masking(0.0)(x)
    out = L.MultiHeadAttention(2, 3, name="att")(h, h, use_causal_mask=True)
    tf_keras.Model(x, out).save(tmp_path / "m.h5")
    stream = sepconv.stream(sepconv.load_keras_model(tmp_path / "m.h5"))
    with pytest.raises(ValueError, match=r"layer 'att' .*reads the Keras mask .*masked "
                                         r"attention does not stream"):
        stream(torch.randn(1, 4, 6))
