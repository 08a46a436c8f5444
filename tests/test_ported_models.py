"""Published sequence architectures, written as their authors wrote them in Keras, ported
the way users port them: saved by tf-keras 2.21 (``.h5``, ``.keras``; EEGNet also as the SavedModel
directory R's ``save_model_tf`` writes), loaded with one
``sepconv.load_keras_model`` call, then

- forward: Keras' inference-mode call ``model(x, training=False)``, what ``predict``
  computes (float32, 1e-5 of the output's scale);
- gradients of the model's loss with respect to the inputs and to every trainable weight,
  against ``tf.GradientTape`` (inference mode: moving statistics, no dropout);
- training: 3 steps of the optimizer the author compiled with (SGD with momentum, or
  Adam) against tf-keras' ``fit`` on the same batch, dropout rates set to 0 on both sides
  (random masks cannot agree); losses per step and every weight after (moving statistics,
  max-norm constraints included), read through ``sepconv.save_keras_model`` back to
  ``.h5`` and tf-keras' ``load_model``, whose ``predict`` must then equal ours: the
  save-back check (a model holding custom torch modules is refused, naming the layer).

Architectures (few channels, short sequences): Fawaz et al.'s FCN, ResNet and
InceptionTime; keras.io's timeseries Transformer, CTC ASR (DeepSpeech2, CTC loss),
speaker recognition; MatchboxNet (SeparableConv1D blocks); MelGAN's generator;
Conv-TasNet (Conv1D encoder, dilated DepthwiseConv1D TCN blocks with PReLU, a shared
Conv1DTranspose decoder); a strided 1D ResNet for ECG; EEGNet and ShallowConvNet
(``square`` / ``log`` activations as custom functions); a TransformerEncoder with
TokenAndPositionEmbedding as custom layers; a bidirectional LSTM over
``Embedding(mask_zero=True)``.  Every reference model is built in this one process.
The seven architectures tests/test_sequence_examples.py does not hold are also written by
Keras 3 (``.keras``) and compared with its ``predict``.  tf-keras 2.21 and Keras 3 have no
weight normalisation layer (it was tfa's), so MelGAN's generator goes without it.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

import sepconv  # noqa: E402
from sepconv.functional import ctc_batch_cost  # noqa: E402
import sequence_custom_layers  # noqa: E402
from keras_files import call_outputs  # noqa: E402
import test_sequence_examples as examples  # noqa: E402

K = tf_keras
L = tf_keras.layers


# -- architectures not in test_sequence_examples ------------------------------------------
def fawaz_resnet(K):
    """Fawaz et al.'s ResNet: three blocks of Conv1D(8, 5, 3) + BN (+ ReLU), a Conv1D +
    BN shortcut where the channels grow (BN alone in the last block), GAP, softmax."""
    L = K.layers
    inp = L.Input((24, 2))
    x = inp
    for filters in (4, 8, 8):
        y = x
        for k in (8, 5, 3):
            y = L.BatchNormalization()(L.Conv1D(filters, k, padding="same")(y))
            if k != 3:
                y = L.Activation("relu")(y)
        short = x if x.shape[-1] == filters else L.Conv1D(filters, 1, padding="same")(x)
        short = L.BatchNormalization()(short)
        x = L.Activation("relu")(L.add([short, y]))
    x = L.GlobalAveragePooling1D()(x)
    return K.Model(inp, L.Dense(3, activation="softmax")(x)), [(4, 24, 2)]


def inception_time(K):
    """InceptionTime (Fawaz et al.): bottleneck Conv1D, three even-sized 'same' convs
    and a MaxPool1D(3, 1, same) branch concatenated, BN, ReLU; a residual shortcut every
    three modules; no biases."""
    L = K.layers
    def module(x, nb_filters=3, kernel_size=8):
        inp = L.Conv1D(4, 1, padding="same", use_bias=False)(x) if x.shape[-1] > 1 else x
        convs = [L.Conv1D(nb_filters, kernel_size // 2 ** i, padding="same",
                          use_bias=False)(inp) for i in range(3)]
        pool = L.MaxPool1D(pool_size=3, strides=1, padding="same")(x)
        convs.append(L.Conv1D(nb_filters, 1, padding="same", use_bias=False)(pool))
        x = L.Concatenate(axis=2)(convs)
        return L.Activation("relu")(L.BatchNormalization()(x))

    def shortcut(inp, out):
        s = L.Conv1D(out.shape[-1], 1, padding="same", use_bias=False)(inp)
        s = L.BatchNormalization()(s)
        return L.Activation("relu")(L.Add()([s, out]))

    inp = L.Input((20, 1))
    x, res = inp, inp
    for d in range(6):
        x = module(x)
        if d % 3 == 2:
            x = shortcut(res, x)
            res = x
    x = L.GlobalAveragePooling1D()(x)
    return K.Model(inp, L.Dense(3, activation="softmax")(x)), [(4, 20, 1)]


def matchboxnet(K):
    """MatchboxNet (keyword spotting): Conv1D prologue, residual blocks of
    SeparableConv1D + BN + ReLU + Dropout with a pointwise Conv1D + BN shortcut, a dilated
    epilogue, a 1x1 Conv1D to the classes, GAP, softmax."""
    L = K.layers
    inp = L.Input((24, 8))
    x = L.Conv1D(8, 11, strides=2, padding="same", use_bias=False)(inp)
    x = L.ReLU()(L.BatchNormalization()(x))
    for k in (13, 15):
        short = L.BatchNormalization()(L.Conv1D(8, 1, use_bias=False)(x))
        y = x
        for r in range(2):
            y = L.SeparableConv1D(8, k, padding="same", use_bias=False)(y)
            y = L.BatchNormalization()(y)
            if r == 1:
                y = L.Add()([y, short])
            y = L.Dropout(0.2)(L.ReLU()(y))
        x = y
    x = L.Conv1D(8, 17, dilation_rate=2, padding="same", use_bias=False)(x)
    x = L.ReLU()(L.BatchNormalization()(x))
    x = L.ReLU()(L.BatchNormalization()(L.Conv1D(8, 1, use_bias=False)(x)))
    x = L.Conv1D(4, 1)(x)
    x = L.GlobalAveragePooling1D()(x)
    return K.Model(inp, L.Softmax()(x)), [(4, 24, 8)]


def conv_tasnet(K):
    """Conv-TasNet: Conv1D encoder (stride L/2, ReLU), LayerNormalization, bottleneck,
    TCN blocks (1x1 Conv1D, PReLU(shared_axes=[1]), LN, dilated DepthwiseConv1D, PReLU,
    LN, 1x1 Conv1D residual), sigmoid masks for two sources multiplied with the encoding,
    one shared Conv1DTranspose decoder."""
    L = K.layers
    inp = L.Input((64, 1))
    w = L.Conv1D(8, 4, strides=2, use_bias=False, activation="relu", name="encoder")(inp)
    x = L.Conv1D(4, 1)(L.LayerNormalization()(w))
    for d in (1, 2, 4):
        y = L.Conv1D(6, 1)(x)
        y = L.LayerNormalization()(L.PReLU(shared_axes=[1])(y))
        y = L.DepthwiseConv1D(3, dilation_rate=d, padding="same")(y)
        y = L.LayerNormalization()(L.PReLU(shared_axes=[1])(y))
        x = L.Add()([x, L.Conv1D(4, 1)(y)])
    decoder = L.Conv1DTranspose(1, 4, strides=2, use_bias=False, name="decoder")
    sources = []
    for s in range(2):
        mask = L.Conv1D(8, 1, activation="sigmoid", name=f"mask_{s}")(L.PReLU()(x))
        sources.append(decoder(L.Multiply()([w, mask])))
    return K.Model(inp, L.Concatenate()(sources)), [(3, 64, 1)]


def ecg_resnet(K):
    """A 1D ResNet for ECG (Hannun et al. / Ribeiro et al. style): Conv1D(16) + BN +
    ReLU; blocks whose skip is MaxPooling1D (+ a 1x1 Conv1D where the channels grow) and
    whose path is BN, ReLU, Dropout, strided Conv1D; a Dense per record."""
    L = K.layers
    inp = L.Input((64, 2))
    x = L.Conv1D(4, 16, padding="same", use_bias=False)(inp)
    x = L.ReLU()(L.BatchNormalization()(x))
    for filters, sub in ((4, 2), (8, 2), (8, 1)):
        skip = L.MaxPooling1D(sub, padding="same")(x) if sub > 1 else x
        if filters != x.shape[-1]:
            skip = L.Conv1D(filters, 1, padding="same", use_bias=False)(skip)
        y = L.Conv1D(filters, 16, strides=sub, padding="same", use_bias=False)(x)
        y = L.Dropout(0.2)(L.ReLU()(L.BatchNormalization()(y)))
        y = L.Conv1D(filters, 16, padding="same", use_bias=False)(y)
        x = L.Add()([y, skip])
        x = L.Dropout(0.2)(L.ReLU()(L.BatchNormalization()(x)))
    x = L.Flatten()(x)
    return K.Model(inp, L.Dense(2, activation="sigmoid")(x)), [(4, 64, 2)]


def square(x):
    return tf_keras.backend.square(x)


def log(x):
    return tf_keras.backend.log(tf_keras.backend.clip(x, min_value=1e-7, max_value=10000))


def square3(x):  # the Keras 3 version of arl-eegmodels' functions
    return keras.ops.square(x)


def log3(x):
    return keras.ops.log(keras.ops.clip(x, 1e-7, 10000))


def torch_log(x):  # the user's torch version of ShallowConvNet's `log`
    return torch.log(torch.clamp(x, 1e-7, 10000))


def shallow_convnet(K):
    """ShallowConvNet (Schirrmeister et al., arl-eegmodels' Keras code): temporal Conv2D,
    spatial Conv2D (max_norm over axes 0, 1, 2), BN(epsilon=1e-5, momentum=0.9),
    ``Activation(square)``, AveragePooling2D with strides, ``Activation(log)``, Dropout,
    Flatten, a max_norm Dense, softmax."""
    L = K.layers
    max_norm = K.constraints.max_norm
    chans, samples = 3, 40
    inp = L.Input((chans, samples, 1))
    x = L.Conv2D(4, (1, 5), kernel_constraint=max_norm(2., axis=(0, 1, 2)))(inp)
    x = L.Conv2D(4, (chans, 1), use_bias=False,
                 kernel_constraint=max_norm(2., axis=(0, 1, 2)))(x)
    x = L.BatchNormalization(epsilon=1e-05, momentum=0.9)(x)
    x = L.Activation(square if K is tf_keras else square3)(x)
    x = L.AveragePooling2D(pool_size=(1, 10), strides=(1, 3))(x)
    x = L.Activation(log if K is tf_keras else log3)(x)
    x = L.Dropout(0.5)(x)
    x = L.Flatten()(x)
    x = L.Dense(2, kernel_constraint=max_norm(0.5))(x)
    return K.Model(inp, L.Activation("softmax")(x)), [(4, chans, samples, 1)]


def bilstm_mask_zero(K):
    """A bidirectional LSTM over ``Embedding(mask_zero=True)`` (padded token ids)."""
    L = K.layers
    inputs = K.Input(shape=(None,), dtype="int32")
    x = L.Embedding(30, 6, mask_zero=True)(inputs)
    x = L.Bidirectional(L.LSTM(5, return_sequences=True))(x)
    x = L.Bidirectional(L.LSTM(5))(x)
    return K.Model(inputs, L.Dense(1, activation="sigmoid")(x)), [(4, 9)]


def _example(name):
    return getattr(examples, name)


#: name -> (builder, loss, optimizer, formats).  Losses are the compiled ones.
MODELS = {
    "fcn": (_example("fcn"), "cce", "adam", (".h5", ".keras")),
    "fawaz_resnet": (fawaz_resnet, "cce", "sgd", (".h5", ".keras")),
    "inception_time": (inception_time, "cce", "sgd", (".h5", ".keras")),
    "ts_transformer": (_example("ts_transformer"), "cce", "adam", (".h5", ".keras")),
    "deepspeech2": (_example("deepspeech2"), "ctc", "sgd", (".h5", ".keras")),
    "speaker": (_example("speaker"), "cce", "adam", (".h5", ".keras")),
    "matchboxnet": (matchboxnet, "cce", "sgd", (".h5", ".keras")),
    "melgan_generator": (_example("melgan_generator"), "mae", "adam", (".h5", ".keras")),
    "conv_tasnet": (conv_tasnet, "mse", "sgd", (".h5", ".keras")),
    "ecg_resnet": (ecg_resnet, "bce", "sgd", (".h5", ".keras")),
    "eegnet": (_example("eegnet"), "cce", "sgd", (".h5", ".keras", "savedmodel")),
    "shallow_convnet": (shallow_convnet, "cce", "adam", (".h5", ".keras")),
    "text_transformer": (_example("text_transformer"), "cce", "adam", (".h5", ".keras")),
    "bilstm_mask_zero": (bilstm_mask_zero, "bce", "sgd", (".h5", ".keras")),
}
CUSTOM = {"shallow_convnet": {"square": torch.square, "log": torch_log},
          "text_transformer": sequence_custom_layers.CUSTOM_OBJECTS}
#: save_keras_model refuses custom torch modules (Keras could not rebuild them)
SAVE_REFUSED = {"text_transformer"}
TF_CUSTOM = {"shallow_convnet": {"square": square, "log": log, "torch_log": log}}
FORMATS = [(m, f) for m, (_, _, _, fmts) in MODELS.items() for f in fmts]
STEPS = 3
LR = {"adam": 1e-3, "sgd": 1e-2}


def _optimizer(kind):
    if kind == "adam":
        return K.optimizers.Adam(LR[kind])
    return K.optimizers.SGD(LR[kind], momentum=0.9)


def _torch_optimizer(kind, params):
    """tf-keras' optimizer, as sepconv.optimizers computes it."""
    return sepconv.optimizers.get(_optimizer(kind), params)


def _ctc_tf(y_true, y_pred):
    """keras.io's CTC ASR loss: ``backend.ctc_batch_cost`` over the whole lengths."""
    batch = tf.shape(y_true)[0]
    return K.backend.ctc_batch_cost(y_true, y_pred, tf.fill([batch, 1], tf.shape(y_pred)[1]),
                                    tf.fill([batch, 1], tf.shape(y_true)[1]))


TF_LOSSES = {"cce": "categorical_crossentropy", "bce": "binary_crossentropy",
             "mse": "mse", "mae": "mae", "ctc": _ctc_tf}


def torch_loss(kind, y_true, y_pred):
    """The compiled Keras loss, as sepconv.losses computes it (the mean over the batch;
    the logits of a softmax / sigmoid output, as tf-keras takes them)."""
    if kind != "ctc":
        return sepconv.losses.get(TF_LOSSES[kind])(y_true, y_pred)
    batch, steps = y_pred.shape[:2]
    return ctc_batch_cost(y_true, y_pred, torch.full((batch, 1), steps),
                          torch.full((batch, 1), y_true.shape[1])).mean()


def _data(name, model, shapes, loss, rng):
    if name == "text_transformer":
        x = [rng.integers(0, 100, s).astype(np.float32) for s in shapes]
    elif name == "bilstm_mask_zero":
        ids = rng.integers(1, 30, shapes[0]).astype(np.int32)
        for row, n in enumerate((9, 6, 3, 7)):  # padded on the right
            ids[row, n:] = 0
        x = [ids]
    else:
        x = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    out = tuple(model.outputs[0].shape)
    batch = shapes[0][0]
    if loss == "cce":
        y = np.eye(out[-1], dtype=np.float32)[rng.integers(0, out[-1], batch)]
    elif loss == "bce":
        y = rng.integers(0, 2, (batch, out[-1])).astype(np.float32)
    elif loss == "ctc":
        y = rng.integers(0, out[-1] - 1, (batch, 3)).astype(np.float32)
    else:
        steps = out[1] or call_outputs(model, x[0])[0].shape[1]
        y = rng.uniform(-0.5, 0.5, (batch, steps, out[-1])).astype(np.float32)
    return x, y


def _no_dropout_tf(model):
    for layer in model.submodules:
        if isinstance(layer, L.Dropout):
            layer.rate = 0.0
        if isinstance(layer, L.MultiHeadAttention):
            layer._dropout = 0.0


def _no_dropout_torch(model):
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        elif "Dropout" in type(m).__name__:
            m.rate = 0.0
        elif type(m).__name__ == "MultiHeadAttention":
            m.dropout = 0.0


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Every model built, randomised and saved by tf-keras, with its predictions,
    inference-mode gradients and 3 steps of compiled training."""
    root = str(tmp_path_factory.mktemp("ported"))
    refs = {}
    for name, (build, loss, opt, fmts) in MODELS.items():
        K.utils.set_random_seed(5)
        model, shapes = build(K)
        rng = np.random.default_rng(len(name))
        examples._randomize(K, model, rng)
        x, y = _data(name, model, shapes, loss, rng)
        files = {}
        for fmt in fmts:
            path = os.path.join(root, name + ("" if fmt == "savedmodel" else fmt))
            model.save(path, save_format="tf" if fmt == "savedmodel" else None)
            files[fmt] = path
        loss_fn = K.losses.get(TF_LOSSES[loss]) if isinstance(TF_LOSSES[loss], str) \
            else TF_LOSSES[loss]
        tx = [tf.constant(a) for a in x]
        with tf.GradientTape() as tape:
            tape.watch(tx)
            out = model(tx, training=False)
            value = tf.reduce_mean(loss_fn(tf.constant(y), out))
        # predict's numbers: the same inference-mode call, without predict's per-model
        # tf.function tracing
        pred = np.asarray(out)
        grads = tape.gradient(value, tx + model.trainable_weights)
        n_train = len(model.trainable_weights)
        _no_dropout_tf(model)
        # (eagerly: fit's own train_step, without tracing it, ~10x cheaper here)
        model.compile(optimizer=_optimizer(opt), loss=TF_LOSSES[loss], run_eagerly=True)
        hist = model.fit(x, y, batch_size=len(y), epochs=STEPS, shuffle=False, verbose=0)
        refs[name] = dict(
            files=files, x=x, y=y, pred=pred, loss_value=float(value),
            x_grads=[None if g is None else np.asarray(g) for g in grads[:len(x)]],
            w_grads=[np.zeros(w.shape, np.float32) if g is None else
                     np.asarray(tf.convert_to_tensor(g))  # (an Embedding's: IndexedSlices)
                     for g, w in zip(grads[len(x):], model.trainable_weights)],
            n_train=n_train, losses=hist.history["loss"], trained=model.get_weights(),
            model=model, root=root)
    return refs


def _load(name, fmt, refs):
    return sepconv.load_keras_model(refs[name]["files"][fmt], custom_objects=CUSTOM.get(name))


def _tf_arrays_of(ours, name, refs, tag, into=None):
    """``ours``' weights as tf-keras reads them: sepconv.save_keras_model to .h5, then
    tf-keras' load_model (the save-back path; ``into``: a model it loaded before, which
    takes the file's weights) -> the model and its get_weights() in Keras' order."""
    path = os.path.join(refs[name]["root"], f"{name}_{tag}_back.h5")
    sepconv.save_keras_model(ours, path)
    if into is not None:
        into.load_weights(path)
        return into, into.get_weights()
    back = K.models.load_model(path, custom_objects={
        **TF_CUSTOM.get(name, {}), **_tf_custom_classes(name)}, compile=False)
    return back, back.get_weights()


def _tf_custom_classes(name):
    if name != "text_transformer":
        return {}
    emb, block = examples._text_classes(K)
    return {"TokenAndPositionEmbedding": emb, "TransformerBlock": block}


def _err(a, b):
    """Largest difference, relative to ``b``'s scale (at least 1)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not b.size:
        return 0.0
    return float(np.abs(a - b).max()) / max(1.0, float(np.abs(b).max()))


def _close(a, b, tol, what):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{what}: shape {a.shape}, expected {b.shape}"
    err = _err(a, b)
    assert err <= tol, f"{what}: largest error {err:.3g} (of scale) > {tol}"


def _inputs(x):
    return [torch.from_numpy(a) for a in x]


def _forward(model, x):
    out = model(*_inputs(x))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name,fmt", FORMATS)
def test_forward_equals_predict(reference, name, fmt, torch_single_thread):
    r = reference[name]
    model = _load(name, fmt, reference)
    with torch.no_grad():
        got = _forward(model, r["x"])
    _close(got.numpy(), r["pred"], 1e-5, "predict")


def _grads(model, r, loss):
    """The loss, its gradients with respect to the float inputs and to the parameters."""
    dtype = next(model.parameters()).dtype
    x = [t.to(dtype) if t.is_floating_point() else t for t in _inputs(r["x"])]
    for t in x:
        if t.is_floating_point():
            t.requires_grad_(True)
    value = torch_loss(loss, torch.from_numpy(r["y"]).to(dtype), model(*x))
    value.backward()
    return (float(value), [t.grad for t in x],
            [torch.zeros_like(p) if p.grad is None else p.grad for p in model.parameters()])


def _close_grad(got, want, exact, what):
    """``got`` within 1e-5 of ``want``'s scale, or (an ill-conditioned gradient, a layer
    norm's over a small spread) no farther from it than float32 rounding explains: twice
    the distance of tf-keras' float32 gradient from ours in float64, ``exact``."""
    err = _err(got, want)
    if err > 1e-5:
        rounding = _err(want, exact)
        assert err <= 1e-5 + 2 * rounding, \
            f"{what}: largest error {err:.3g} (of scale); tf-keras' own is {rounding:.3g}"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_gradients_equal_gradient_tape(reference, name, torch_single_thread):
    r = reference[name]
    _, loss, _, _ = MODELS[name]
    model = _load(name, ".h5", reference)
    value, x_grads, w_grads = _grads(model, r, loss)
    model64 = copy.deepcopy(model).double()
    model64.zero_grad()
    value64, x_grads64, w_grads64 = _grads(model64, r, loss)
    _close_grad(value, r["loss_value"], value64, "loss")
    for g, want, g64 in zip(x_grads, r["x_grads"], x_grads64):
        if want is not None:
            _close_grad(g.numpy(), want, g64.numpy(), "input gradient")
    if name in SAVE_REFUSED:  # each Keras gradient is one of ours (no order to map by)
        ours = [g.numpy() for g in w_grads]
        for i, want in enumerate(r["w_grads"]):
            assert any(g.shape == want.shape and _err(g, want) <= 2e-5 for g in ours), \
                f"gradient of weight {i} {want.shape}: none of ours equals it"
        return
    # (read into the reference model: tf-keras' load_model of a recurrent model costs
    # ~10 s; the training test reads its file with load_model)
    got, back = {}, r["model"]
    for tag, grads in (("grads64", w_grads64), ("grads", w_grads)):
        with torch.no_grad():  # the gradients, in Keras' order through save-back
            for p, g in zip(model.parameters(), grads):
                p.copy_(g)
        back, _ = _tf_arrays_of(model, name, reference, tag, into=back)
        got[tag] = [w.numpy() for w in back.trainable_weights]
    assert len(got["grads"]) == len(r["w_grads"])
    for i, (a, b, c) in enumerate(zip(got["grads"], r["w_grads"], got["grads64"])):
        _close_grad(a, b, c, f"gradient of weight {i}")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_training_follows_fit_and_saves_back(reference, name, torch_single_thread):
    r = reference[name]
    _, loss, opt, _ = MODELS[name]
    model = _load(name, ".h5", reference).train()
    _no_dropout_torch(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = _torch_optimizer(opt, params)
    x, y = _inputs(r["x"]), torch.from_numpy(r["y"])
    losses = []
    for _ in range(STEPS):
        value = torch_loss(loss, y, model(*x))
        optim.zero_grad()
        value.backward()
        optim.step()
        losses.append(float(value))
    np.testing.assert_allclose(losses, r["losses"], rtol=2e-6)
    if name in SAVE_REFUSED:
        # (the Keras layer's name numbered by the models built before it in this process)
        refused = r"layer 'token_and_position_embedding(_\d+)?' \(Token"
        with pytest.raises(ValueError, match=refused):
            _tf_arrays_of(model, name, reference, "trained")
        return
    model.eval()
    back, arrays = _tf_arrays_of(model, name, reference, "trained")
    assert len(arrays) == len(r["trained"])
    # (Adam moves a weight whose gradient is zero up to rounding, a bias before batch
    # norm, attention's key bias, by about its learning rate either way: tf-keras' and
    # ours alike, from gradients equal to float32 rounding)
    tol = 2e-6 if opt == "sgd" else 2e-6 + 2 * STEPS * LR["adam"]
    for i, (a, b) in enumerate(zip(arrays, r["trained"])):
        _close(a, b, tol, f"weight {i} after training")
    with torch.no_grad():  # the written model computes what ours computes
        # (called eagerly: predict's tracing of a recurrent model costs seconds)
        theirs = back([tf.constant(a) for a in r["x"]], training=False)
        _close(np.asarray(theirs), _forward(model, r["x"]).numpy(), 1e-5, "save-back call")


#: the architectures test_sequence_examples does not save from Keras 3
KERAS3 = ["fawaz_resnet", "inception_time", "matchboxnet", "conv_tasnet", "ecg_resnet",
          "shallow_convnet", "bilstm_mask_zero"]


@pytest.fixture(scope="module")
def keras3_files(tmp_path_factory):
    """The same architectures written by Keras 3 (torch backend) as ``.keras``."""
    root = str(tmp_path_factory.mktemp("ported_k3"))
    files = {}
    for name in KERAS3:
        build, loss = MODELS[name][:2]
        keras.utils.set_random_seed(5)
        model, shapes = build(keras)
        rng = np.random.default_rng(len(name))
        examples._randomize(keras, model, rng)
        x, _ = _data(name, model, shapes, loss, rng)
        path = os.path.join(root, name + ".keras")
        model.save(path)
        files[name] = (path, x, call_outputs(model, x[0])[0])  # (single-input models)
    return files


@pytest.mark.slow
@pytest.mark.parametrize("name", KERAS3)
def test_keras3_file_equals_predict(keras3_files, name, torch_single_thread):
    path, x, want = keras3_files[name]
    custom = {"square3": torch.square, "log3": torch_log} if name == "shallow_convnet" \
        else None
    model = sepconv.load_keras_model(path, custom_objects=custom)
    with torch.no_grad():
        got = _forward(model, x)
    _close(got.numpy(), want, 1e-5, "predict")


def test_ctc_batch_cost_is_tf_keras(torch_single_thread):
    """keras.io's CTC ASR loss in torch: tf-keras' backend.ctc_batch_cost, values and
    gradients, rows of several input and label lengths (a repeated label included)."""
    rng = np.random.default_rng(0)
    y_pred = tf.nn.softmax(rng.standard_normal((4, 12, 6)).astype(np.float32)).numpy()
    y_true = np.array([[1, 1, 2, 0], [3, 4, 0, 0], [2, 0, 0, 0], [0, 1, 2, 3]], np.float32)
    input_length = np.array([[12], [9], [5], [12]], np.int32)
    label_length = np.array([[3], [2], [1], [4]], np.int32)
    p = tf.constant(y_pred)
    with tf.GradientTape() as tape:
        tape.watch(p)
        want = K.backend.ctc_batch_cost(y_true, p, input_length, label_length)
        total = tf.reduce_sum(want)
    want_grad = tape.gradient(total, p).numpy()
    tp = torch.from_numpy(y_pred).requires_grad_()
    got = ctc_batch_cost(torch.from_numpy(y_true), tp, torch.from_numpy(input_length),
                         torch.from_numpy(label_length))
    got.sum().backward()
    assert got.shape == (4, 1)
    np.testing.assert_allclose(got.detach().numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tp.grad.numpy(), want_grad, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="label_length"):
        ctc_batch_cost(torch.from_numpy(y_true), tp, torch.from_numpy(input_length),
                       torch.tensor([[3], [2], [1], [5]]))
