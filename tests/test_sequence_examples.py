"""keras.io's sequence-model examples, as written there, load with one call and compute
Keras' numbers.

Each model below rebuilds one keras.io example's architecture (same layers, arguments and
call patterns; small sizes): timeseries classification from scratch (FCN) and with a
Transformer, DeepSpeech2-like speech recognition with CTC, speaker recognition, weather
forecasting (LSTM), a traffic-forecasting style causal Conv1D + LSTM stack, text
classification with a Transformer (custom layers), MelGAN's generator (reflect padding as
a TensorFlow / ``keras.ops`` function node and as a Lambda, no tfa) and discriminator,
and an EEGNet-like model (what R keras users port).  Random weights, batch
normalisation's moving statistics randomised.  Every model of one Keras is built in this
process and saved (tf-keras: ``.h5`` and ``.keras``; Keras 3: ``.keras``); one TF-free
child (tests/keras_files.py) loads every file with ``sepconv.load_keras_model`` and
compares with ``model.predict`` (float32, 1e-5 of the output's scale).  The two causal
models are also streamed chunk by chunk (``sepconv.stream``) against Keras' outputs.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

from keras_files import Cases, call_outputs, check  # noqa: E402



def _ops(K):
    """What the example calls on Keras tensors: TensorFlow's function (tf-keras) or
    ``keras.ops`` (Keras 3)."""
    return tf if K is tf_keras else keras.ops


def _reflect_pad(K, x, p):
    """MelGAN's reflect padding of ``p`` steps on each side, as a function node."""
    if K is tf_keras:
        return tf.pad(x, [[0, 0], [p, p], [0, 0]], mode="REFLECT")
    return keras.ops.pad(x, [[0, 0], [p, p], [0, 0]], mode="reflect")


# -- the examples ------------------------------------------------------------------------
def fcn(K):
    """"Timeseries classification from scratch": Conv1D + BN + ReLU three times, global
    average pooling, a softmax."""
    L = K.layers
    inputs = L.Input(shape=(32, 1))
    x = inputs
    for _ in range(3):
        x = L.Conv1D(filters=8, kernel_size=3, padding="same")(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
    x = L.GlobalAveragePooling1D()(x)
    return K.Model(inputs, L.Dense(2, activation="softmax")(x)), [(3, 32, 1)]


def ts_transformer(K):
    """"Timeseries classification with a Transformer": post-norm encoder blocks with
    ``x + inputs`` as tensor operations, Conv1D(kernel_size=1) feed-forward, pooling over
    the channels (``data_format="channels_first"``)."""
    L = K.layers

    def encoder(inputs, head_size, num_heads, ff_dim, dropout=0.0):
        x = L.MultiHeadAttention(key_dim=head_size, num_heads=num_heads,
                                 dropout=dropout)(inputs, inputs)
        x = L.Dropout(dropout)(x)
        x = L.LayerNormalization(epsilon=1e-6)(x)
        res = x + inputs
        x = L.Conv1D(filters=ff_dim, kernel_size=1, activation="relu")(res)
        x = L.Dropout(dropout)(x)
        x = L.Conv1D(filters=inputs.shape[-1], kernel_size=1)(x)
        x = L.LayerNormalization(epsilon=1e-6)(x)
        return x + res

    inputs = L.Input(shape=(20, 3))
    x = inputs
    for _ in range(2):
        x = encoder(x, head_size=8, num_heads=2, ff_dim=4, dropout=0.25)
    x = L.GlobalAveragePooling1D(data_format="channels_first")(x)
    x = L.Dense(16, activation="relu")(x)
    x = L.Dropout(0.4)(x)
    return K.Model(inputs, L.Dense(3, activation="softmax")(x)), [(2, 20, 3)]


def deepspeech2(K):
    """"Automatic Speech Recognition using CTC": spectrogram -> 2 Conv2D + BN + ReLU ->
    Reshape -> bidirectional GRUs (reset_after) -> Dense -> softmax over the characters
    plus the CTC blank (decoding and the CTC loss are outside the model)."""
    L = K.layers
    input_dim, rnn_units, output_dim = 33, 8, 10
    inp = L.Input((None, input_dim), name="input")
    x = L.Reshape((-1, input_dim, 1), name="expand_dim")(inp)
    x = L.Conv2D(filters=4, kernel_size=[11, 41], strides=[2, 2], padding="same",
                 use_bias=False, name="conv_1")(x)
    x = L.BatchNormalization(name="conv_1_bn")(x)
    x = L.ReLU(name="conv_1_relu")(x)
    x = L.Conv2D(filters=4, kernel_size=[11, 21], strides=[1, 2], padding="same",
                 use_bias=False, name="conv_2")(x)
    x = L.BatchNormalization(name="conv_2_bn")(x)
    x = L.ReLU(name="conv_2_relu")(x)
    x = L.Reshape((-1, x.shape[-2] * x.shape[-1]))(x)
    for i in range(1, 3):
        recurrent = L.GRU(units=rnn_units, activation="tanh", recurrent_activation="sigmoid",
                          use_bias=True, return_sequences=True, reset_after=True,
                          name=f"gru_{i}")
        x = L.Bidirectional(recurrent, name=f"bidirectional_{i}", merge_mode="concat")(x)
        if i < 2:
            x = L.Dropout(rate=0.5)(x)
    x = L.Dense(units=rnn_units * 2, name="dense_1")(x)
    x = L.ReLU(name="dense_1_relu")(x)
    x = L.Dropout(rate=0.5)(x)
    output = L.Dense(units=output_dim + 1, activation="softmax")(x)
    return K.Model(inp, output, name="DeepSpeech_2"), [(2, 14, input_dim)]


def speaker(K):
    """"Speaker Recognition": residual Conv1D blocks (a 1x1 shortcut, Add, MaxPool1D),
    AveragePooling1D, Flatten, a dense head."""
    L = K.layers

    def residual_block(x, filters, conv_num=3, activation="relu"):
        s = L.Conv1D(filters, 1, padding="same")(x)
        for _ in range(conv_num - 1):
            x = L.Conv1D(filters, 3, padding="same")(x)
            x = L.Activation(activation)(x)
        x = L.Conv1D(filters, 3, padding="same")(x)
        x = L.Add()([x, s])
        x = L.Activation(activation)(x)
        return L.MaxPool1D(pool_size=2, strides=2)(x)

    inputs = L.Input(shape=(96, 1), name="input")
    x = residual_block(inputs, 4, 2)
    x = residual_block(x, 8, 2)
    for _ in range(3):
        x = residual_block(x, 8, 3)
    x = L.AveragePooling1D(pool_size=3, strides=3)(x)
    x = L.Flatten()(x)
    x = L.Dense(16, activation="relu")(x)
    x = L.Dense(8, activation="relu")(x)
    return K.Model(inputs, L.Dense(5, activation="softmax", name="output")(x)), [(2, 96, 1)]


def weather_lstm(K):
    """"Timeseries forecasting for weather prediction": LSTM(32) -> Dense(1)."""
    L = K.layers
    inputs = L.Input(shape=(12, 7))
    lstm_out = L.LSTM(8)(inputs)
    return K.Model(inputs, L.Dense(1)(lstm_out)), [(3, 12, 7)]


def traffic_stack(K):
    """A traffic-forecasting style stack: causal Conv1D -> LSTM (sequences) -> Dense per
    step (the example's LSTM over each node's history, without its graph convolution)."""
    L = K.layers
    inputs = L.Input(shape=(None, 4))
    x = L.Conv1D(8, 3, padding="causal", dilation_rate=2, activation="relu")(inputs)
    x = L.LSTM(8, return_sequences=True)(x)
    x = L.Dropout(0.2)(x)
    return K.Model(inputs, L.Dense(3)(x)), [(2, 15, 4)]


def text_transformer(K):
    """"Text classification with Transformer": the example's two custom layers (with a
    get_config for tf-keras, which cannot save without one; Keras 3 records the
    constructor's arguments itself)."""
    L = K.layers
    embed_cls, block_cls = _text_classes(K)
    maxlen = 16
    inputs = L.Input(shape=(maxlen,))
    x = embed_cls(maxlen, 100, 8)(inputs)
    x = block_cls(8, 2, 8)(x)
    x = L.GlobalAveragePooling1D()(x)
    x = L.Dropout(0.1)(x)
    x = L.Dense(20, activation="relu")(x)
    x = L.Dropout(0.1)(x)
    return K.Model(inputs, L.Dense(2, activation="softmax")(x)), [(3, maxlen)]


def _text_classes(K):
    L = K.layers

    class TransformerBlock(L.Layer):
        def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1, **kwargs):
            super().__init__(**kwargs)
            self.config_ = dict(embed_dim=embed_dim, num_heads=num_heads, ff_dim=ff_dim,
                                rate=rate)
            self.att = L.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
            self.ffn = K.Sequential([L.Dense(ff_dim, activation="relu"),
                                     L.Dense(embed_dim)])
            self.layernorm1 = L.LayerNormalization(epsilon=1e-6)
            self.layernorm2 = L.LayerNormalization(epsilon=1e-6)
            self.dropout1 = L.Dropout(rate)
            self.dropout2 = L.Dropout(rate)

        def call(self, inputs):
            attn_output = self.att(inputs, inputs)
            attn_output = self.dropout1(attn_output)
            out1 = self.layernorm1(inputs + attn_output)
            ffn_output = self.ffn(out1)
            ffn_output = self.dropout2(ffn_output)
            return self.layernorm2(out1 + ffn_output)

        def get_config(self):
            return {**super().get_config(), **self.config_}

    class TokenAndPositionEmbedding(L.Layer):
        def __init__(self, maxlen, vocab_size, embed_dim, **kwargs):
            super().__init__(**kwargs)
            self.config_ = dict(maxlen=maxlen, vocab_size=vocab_size, embed_dim=embed_dim)
            self.token_emb = L.Embedding(input_dim=vocab_size, output_dim=embed_dim)
            self.pos_emb = L.Embedding(input_dim=maxlen, output_dim=embed_dim)

        def call(self, x):
            maxlen = _ops(K).shape(x)[-1]
            positions = (tf.range if K is tf_keras else keras.ops.arange)(0, maxlen, 1)
            positions = self.pos_emb(positions)
            x = self.token_emb(x)
            return x + positions

        def get_config(self):
            return {**super().get_config(), **self.config_}

    if K is keras:  # as the Keras 3 example: the config Keras records from the arguments
        del TransformerBlock.get_config, TokenAndPositionEmbedding.get_config
    return TokenAndPositionEmbedding, TransformerBlock


def melgan_generator(K, lambda_pad=False):
    """MelGAN's generator without tfa's weight normalisation: reflect-padded convolutions
    (padding as a function node, or inside a Lambda), Conv1DTranspose upsampling, residual
    stacks with dilations 1, 3, 9, LeakyReLU, tanh."""
    L = K.layers

    def pad(x, p):
        if lambda_pad:
            if K is tf_keras:
                return L.Lambda(lambda t: tf.pad(t, [[0, 0], [p, p], [0, 0]],
                                                 mode="REFLECT"))(x)
            return L.Lambda(lambda t: keras.ops.pad(t, [[0, 0], [p, p], [0, 0]],
                                                    mode="reflect"))(x)
        return _reflect_pad(K, x, p)

    def conv(x, filters, k, dilation=1, **kw):
        x = pad(x, dilation * (k - 1) // 2)
        return L.Conv1D(filters, k, dilation_rate=dilation, padding="valid", **kw)(x)

    def residual_stack(inp, filters):
        x = inp
        for dilation in (1, 3, 9):
            c = conv(x, filters, 3, dilation)
            c = L.LeakyReLU()(c)
            c = conv(c, filters, 3)
            x = L.Add()([c, x])
            if dilation != 9:
                x = L.LeakyReLU()(x)
        return x

    def conv_block(x, conv_dim, upsampling_factor):
        x = L.Conv1DTranspose(conv_dim, 16, upsampling_factor, padding="same")(x)
        x = L.LeakyReLU()(x)
        x = residual_stack(x, conv_dim)
        return L.LeakyReLU()(x)

    inp = L.Input((None, 8))
    x = conv(inp, 16, 7)
    x = L.LeakyReLU()(x)
    x = conv_block(x, 8, 4)
    x = conv_block(x, 4, 2)
    out = conv(x, 1, 7, activation="tanh")
    return K.Model(inp, out), [(2, 6, 8)]


def melgan_generator_lambda(K):
    return melgan_generator(K, lambda_pad=True)


def melgan_discriminator(K):
    """MelGAN's multi-scale discriminator: three blocks of strided grouped Conv1Ds on the
    waveform and its AveragePooling1D-downsampled copies; feature maps as outputs."""
    L = K.layers

    def block(x):
        c1 = L.LeakyReLU()(L.Conv1D(4, 15, 1, "same")(x))
        c2 = L.LeakyReLU()(L.Conv1D(8, 41, 4, "same", groups=4)(c1))
        c3 = L.LeakyReLU()(L.Conv1D(16, 41, 4, "same", groups=8)(c2))
        c4 = L.LeakyReLU()(L.Conv1D(16, 5, 1, "same")(c3))
        return [c2, c4, L.Conv1D(1, 3, 1, "same")(c4)]

    pool = {} if K is tf_keras else {"pool_size": 2}  # Keras 3 has no default
    inp = L.Input((None, 1))
    pool1 = L.AveragePooling1D(**pool)(inp)
    pool2 = L.AveragePooling1D(**pool)(pool1)
    return K.Model(inp, block(inp) + block(pool1) + block(pool2)), [(2, 64, 1)]


def eegnet(K):
    """EEGNet (Lawhern et al., the model R and Python users port): temporal Conv2D, BN,
    DepthwiseConv2D over the electrodes (depth_multiplier, max_norm), BN, ELU, average
    pooling, SpatialDropout2D, SeparableConv2D, BN, ELU, pooling, a max_norm Dense."""
    L = K.layers
    chans, samples = 4, 32
    max_norm = K.constraints.max_norm
    inp = L.Input(shape=(chans, samples, 1))
    x = L.Conv2D(4, (1, 8), padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.DepthwiseConv2D((chans, 1), use_bias=False, depth_multiplier=2,
                          depthwise_constraint=max_norm(1.0))(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("elu")(x)
    x = L.AveragePooling2D((1, 4))(x)
    x = L.SpatialDropout2D(0.25)(x)
    x = L.SeparableConv2D(8, (1, 16), use_bias=False, padding="same")(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("elu")(x)
    x = L.AveragePooling2D((1, 8))(x)
    x = L.Dropout(0.25)(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(3, name="dense", kernel_constraint=max_norm(0.25))(x)
    return K.Model(inp, L.Activation("softmax", name="softmax")(x)), [(2, chans, samples, 1)]


def anomaly_autoencoder(K):
    """"Timeseries anomaly detection using an Autoencoder": strided Conv1Ds down,
    Conv1DTransposes up (padding "same"), Dropout."""
    L = K.layers
    return K.Sequential([
        L.Input(shape=(24, 1)),
        L.Conv1D(filters=8, kernel_size=7, padding="same", strides=2, activation="relu"),
        L.Dropout(rate=0.2),
        L.Conv1D(filters=4, kernel_size=7, padding="same", strides=2, activation="relu"),
        L.Conv1DTranspose(filters=4, kernel_size=7, padding="same", strides=2,
                          activation="relu"),
        L.Dropout(rate=0.2),
        L.Conv1DTranspose(filters=8, kernel_size=7, padding="same", strides=2,
                          activation="relu"),
        L.Conv1DTranspose(filters=1, kernel_size=7, padding="same"),
    ]), [(2, 24, 1)]


def imdb_bilstm(K):
    """"Bidirectional LSTM on IMDB": Embedding -> two bidirectional LSTMs -> sigmoid."""
    L = K.layers
    inputs = K.Input(shape=(None,), dtype="int32")
    x = L.Embedding(50, 8)(inputs)
    x = L.Bidirectional(L.LSTM(8, return_sequences=True))(x)
    x = L.Bidirectional(L.LSTM(8))(x)
    return K.Model(inputs, L.Dense(1, activation="sigmoid")(x)), [(3, 11)]


def char_seq2seq(K):
    """"Character-level recurrent sequence-to-sequence model": an encoder LSTM's
    return_state as the decoder LSTM's initial_state (two inputs)."""
    L = K.layers
    encoder_inputs = K.Input(shape=(None, 6))
    _, state_h, state_c = L.LSTM(8, return_state=True)(encoder_inputs)
    decoder_inputs = K.Input(shape=(None, 7))
    decoder_outputs, _, _ = L.LSTM(8, return_sequences=True, return_state=True)(
        decoder_inputs, initial_state=[state_h, state_c])
    decoder_outputs = L.Dense(7, activation="softmax")(decoder_outputs)
    return K.Model([encoder_inputs, decoder_inputs], decoder_outputs), [(2, 9, 6),
                                                                         (2, 5, 7)]


def addition_rnn(K):
    """"Sequence to sequence learning for performing number addition": LSTM encoder,
    RepeatVector, LSTM decoder, a softmax per step."""
    L = K.layers
    return K.Sequential([
        L.Input((7, 12)), L.LSTM(16), L.RepeatVector(4),
        L.LSTM(16, return_sequences=True), L.Dense(12, activation="softmax"),
    ]), [(3, 7, 12)]


MODELS = {f.__name__: f for f in (fcn, ts_transformer, deepspeech2, speaker, weather_lstm,
                                   traffic_stack, text_transformer, melgan_generator,
                                   melgan_generator_lambda, melgan_discriminator, eegnet,
                                   anomaly_autoencoder, imdb_bilstm, char_seq2seq,
                                   addition_rnn)}
#: Streamed against Keras: chunk bounds (a last-output model compares each chunk with
#: Keras' output on the prefix so far, a sequence model with the chunk's steps).
STREAMED = {"weather_lstm": [0, 1, 5, 6, 12], "traffic_stack": [0, 4, 5, 11, 15]}
WRITERS = {"tk": (tf_keras, (".h5", ".keras")), "k3": (keras, (".keras",))}
CASES = [f"{w}_{m}{ext}" for m in MODELS for w, (_, exts) in WRITERS.items()
         for ext in exts]


def _randomize(K, model, rng):
    """Random batch-norm statistics and scales (not their initial 0 / 1), random
    LayerNormalization scales."""
    for layer in model.submodules if K is tf_keras else model._flatten_layers():
        if isinstance(layer, (K.layers.BatchNormalization, K.layers.LayerNormalization)):
            layer.set_weights([rng.uniform(0.5, 2.0, w.shape) if i in (0, 3) else
                               rng.normal(0, 0.5, w.shape)
                               for i, w in enumerate(layer.get_weights())])


def _inputs(name, shapes, rng):
    if name == "text_transformer":
        return [rng.integers(0, 100, s).astype(np.float32) for s in shapes]
    if name == "imdb_bilstm":
        return [rng.integers(0, 50, s).astype(np.int32) for s in shapes]
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("sequence_examples"))
    cases = Cases(root)
    for writer, (K, exts) in WRITERS.items():
        K.utils.set_random_seed(3)
        for name, build in MODELS.items():
            model, shapes = build(K)
            rng = np.random.default_rng(len(name))
            _randomize(K, model, rng)
            x = _inputs(name, shapes, rng)
            y = call_outputs(model, x[0] if len(x) == 1 else x)
            extra = {}
            if name in STREAMED:
                bounds = STREAMED[name]
                if len(y[0].shape) == 2:  # the last output so far (the layers called on
                    # the prefix: the example's Input has a fixed number of steps)
                    numpy = np.asarray if K is tf_keras else keras.ops.convert_to_numpy
                    want = [numpy(model.layers[2](model.layers[1](x[0][:, :b])))
                            for b in bounds[1:]]
                else:
                    want = [y[0][:, a:b] for a, b in zip(bounds, bounds[1:])]
                extra = dict(stream=bounds, stream_expected=cases.save_arrays(
                    f"{writer}_{name}_stream", want))
            if name == "text_transformer":
                extra["custom"] = "sequence_custom_layers"
            if name == "melgan_generator_lambda":
                extra["unsafe"] = True
            for ext in exts:
                case = f"{writer}_{name}{ext}"
                path = os.path.join(root, case)
                model.save(path)
                cases.add(case, "model", path, x, y, **extra)
    return cases.run()


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_example_loads_and_equals_predict(results, case):
    check(results[case])


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in CASES if c.split("_", 1)[1].rsplit(".", 1)[0]
                                  in STREAMED])
def test_causal_example_streams_as_keras_computes(results, case):
    r = results[case]
    assert "crash" not in r, r["crash"]
    err = r["stream_err"]
    assert not isinstance(err, str), err
    assert err <= 1e-5, f"largest streamed error {err:.3g} > 1e-5"


# -- the fixes these examples needed -------------------------------------------------------
def test_pad_is_numpys_and_tensorflows_on_any_axis(torch_single_thread):
    """MelGAN's reflect padding: ``tf.pad`` (the node tf-keras saves, and a Lambda's call
    with TensorFlow 2's argument order) and ``keras.ops.pad`` as TensorFlow computes them,
    on every axis of a rank-4 tensor (torch's reflect pads at most the last three);
    reflections longer than the axis and unknown modes are refused naming the function."""
    import torch
    from sepconv.interop import keras_ops, lambdas, tf_ops
    x = np.random.default_rng(0).standard_normal((2, 5, 4, 3)).astype(np.float32)
    widths = [[1, 0], [4, 2], [0, 3], [2, 2]]
    for mode in ("CONSTANT", "REFLECT", "SYMMETRIC", "reflect"):
        want = tf.pad(x, widths, mode=mode, constant_values=0.0 if mode != "CONSTANT"
                      else 2.5).numpy()
        v2 = lambdas._tf_function("pad")  # tf.pad(tensor, paddings, mode, constant_values)
        got = v2(torch.from_numpy(x), widths, mode, 0.0 if mode != "CONSTANT" else 2.5)
        np.testing.assert_array_equal(got.numpy(), want)
        v1 = tf_ops.FUNCTIONS["compat.v1.pad"]
        np.testing.assert_array_equal(v1(torch.from_numpy(x), widths, mode=mode,
                                         constant_values=2.5 if mode == "CONSTANT"
                                         else 0).numpy(), want)
    for mode in ("constant", "reflect", "edge", "symmetric"):
        got = keras_ops.pad(torch.from_numpy(x), widths, mode)
        np.testing.assert_array_equal(got.numpy(), np.pad(x, widths, mode=mode))
    # keras.ops.pad as Keras 3 runs it (torch backend), the last two axes
    tail = [[0, 0], [0, 0], [2, 1], [1, 2]]
    np.testing.assert_array_equal(
        keras_ops.pad(torch.from_numpy(x), tail, "reflect").numpy(),
        keras.ops.convert_to_numpy(keras.ops.pad(x, tail, mode="reflect")))
    with pytest.raises(ValueError, match=r"tf\.pad: reflect padding of \(4, 2\) on axis 1 "
                       r"of size 4"):
        tf_ops.FUNCTIONS["compat.v1.pad"](torch.from_numpy(x[:, :4]), widths, "REFLECT")
    with pytest.raises(ValueError, match="tf.pad: mode 'WRAP'"):
        tf_ops.FUNCTIONS["compat.v1.pad"](torch.from_numpy(x), widths, "WRAP")
    with pytest.raises(ValueError, match="ops.pad: mode 'wrap'"):
        keras_ops.KerasOp("Pad", {"pad_width": widths, "mode": "wrap"})(torch.from_numpy(x))


def test_custom_modules_need_no_input_shapes(tmp_path, torch_single_thread):
    """A user's module for a custom layer, written as the Keras layer is (sepconv layers
    without input shapes), is built by one call on zeros of the layer's input shape from
    the graph, and a custom layer's output shape is probed for the layers after it: the
    text classifier equals tf-keras' predict.  A module that cannot run on zeros is
    refused in one line naming the layer and what to do."""
    import torch
    import sepconv
    import sequence_custom_layers
    from sepconv.interop import KerasFileError
    tf_keras.utils.set_random_seed(1)
    model, shapes = text_transformer(tf_keras)
    x = _inputs("text_transformer", shapes, np.random.default_rng(0))[0]
    model.save(tmp_path / "m.h5")
    ours = sepconv.load_keras_model(tmp_path / "m.h5",
                                    custom_objects=sequence_custom_layers.CUSTOM_OBJECTS)
    block, = [m for m in ours.children()
              if isinstance(m, sequence_custom_layers.TransformerBlock)]
    assert block.att.built and block.ffn[1].built
    with torch.no_grad():
        got = ours(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=0, atol=1e-5)

    class Fussy(sequence_custom_layers.TransformerBlock):
        def forward(self, inputs):
            if not inputs.any():
                raise ValueError("all zeros")
            return super().forward(inputs)

    objects = dict(sequence_custom_layers.CUSTOM_OBJECTS, TransformerBlock=Fussy)
    with pytest.raises(KerasFileError, match=r"layer 'transformer_block\w*' \(Fussy\) has "
                       r"sepconv layers without weights yet, and a call on zeros of its "
                       r"input shape \(None, 16, 8\) to build them failed \(all zeros\): "
                       r"give them an input_shape$"):
        sepconv.load_keras_model(tmp_path / "m.h5", custom_objects=objects)


def test_ctc_greedy_decode_is_both_kerases(torch_single_thread):
    """The speech-recognition example's decoding (outside its model), in torch:
    ``functional.ctc_greedy_decode`` equals tf-keras' ``backend.ctc_decode(greedy=True)``
    (on ``log(y + 1e-7)``, TensorFlow's blank the last class) and Keras 3's
    ``ops.ctc_decode`` (blank 0 by default, and another ``mask_index``, without merging),
    on softmax outputs with few classes (many repeats and blanks) and varied lengths."""
    import torch
    from sepconv.functional import ctc_greedy_decode
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((6, 13, 4)).astype(np.float32) * 2
    y = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    lengths = np.array([13, 1, 7, 0, 12, 13])
    (want,), want_scores = tf_keras.backend.ctc_decode(y, lengths, greedy=True)
    got, scores = ctc_greedy_decode(torch.log(torch.from_numpy(y) + 1e-7),
                                    torch.from_numpy(lengths))
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    np.testing.assert_allclose(scores.numpy(), want_scores.numpy(), rtol=1e-6)
    assert (got.numpy() >= 0).sum() > 10 and (got.numpy() == 3).sum() == 0  # not trivial
    for kw in ({}, {"mask_index": 2, "merge_repeated": False}):
        want, want_scores = (keras.ops.convert_to_numpy(v) for v in
                             keras.ops.ctc_decode(y, lengths, **kw))
        got, scores = ctc_greedy_decode(torch.from_numpy(y), torch.from_numpy(lengths),
                                        **{"mask_index": 0, **kw})
        np.testing.assert_array_equal(got.numpy(), want[0])
        np.testing.assert_allclose(scores.numpy(), want_scores, rtol=1e-6)
    with pytest.raises(ValueError, match="mask_index=4"):
        ctc_greedy_decode(torch.from_numpy(y), torch.from_numpy(lengths), mask_index=4)
    with pytest.raises(ValueError, match="sequence_lengths"):
        ctc_greedy_decode(torch.from_numpy(y), torch.tensor([3, 4]))
