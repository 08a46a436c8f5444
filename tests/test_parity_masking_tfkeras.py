"""Keras masks against tf-keras 2.21 and Keras 3: ``Masking``, ``Embedding(mask_zero=True)``,
the masked recurrent layers and ``GlobalAveragePooling1D``, and how a model passes masks.

Direct calls: each recurrent layer called with a mask in both libraries (same weights),
outputs, states and the gradients of a random linear loss (input and weights), float64 at
1e-9.  Models: tf-keras builds float64 models, saves them (``.h5``), sepconv loads them;
outputs and weight gradients must agree at 1e-9, so the masks flow from layer to layer as
tf-keras passes them.  Files: models saved by tf-keras (``.h5``) and Keras 3 (``.keras``)
load in a child process where TensorFlow and Keras cannot be imported and predict
``model.predict``'s outputs at 1e-5.  Every batch has rows of different padded lengths,
an all-padding row and padding in the middle of a row.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

import sepconv  # noqa: E402
from keras_files import Cases, call_outputs, check  # noqa: E402
from tf_keras_compare import check_signature  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")

# (batch, time) masks: full, padded at the end, padded at the start, holes in the middle,
# all padding
MASK = np.array([[1, 1, 1, 1, 1, 1],
                 [1, 1, 1, 0, 0, 0],
                 [0, 0, 1, 1, 1, 1],
                 [1, 0, 1, 1, 0, 1],
                 [0, 0, 0, 0, 0, 0]], dtype=bool)


def _ids(mask, vocab=9, seed=0):
    rng = np.random.default_rng(seed)
    return np.where(mask, rng.integers(1, vocab, mask.shape), 0).astype(np.int64)


def _features(mask, features=3, seed=0, value=0.0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(mask.shape + (features,))
    x[~mask] = value
    return x


def _random_weights(layer, rng, scale=0.5):
    layer.set_weights([rng.standard_normal(w.shape) * scale for w in layer.get_weights()])


# -- direct calls ---------------------------------------------------------------------------
def _direct(layer, ref, x, mask, seed=0):
    xt = torch.tensor(x, requires_grad=True)
    ours = layer(xt, mask=torch.tensor(mask))
    ours = list(ours) if isinstance(ours, (list, tuple)) else [ours]
    rng = np.random.default_rng(seed)
    probes = [rng.standard_normal(tuple(o.shape)) for o in ours]
    loss = sum((o * torch.tensor(p)).sum() for o, p in zip(ours, probes))
    grads = torch.autograd.grad(loss, [xt] + list(layer.weights))
    x_tf = tf.Variable(x)
    with tf.GradientTape() as tape:
        theirs = ref(x_tf, mask=tf.constant(mask))
        theirs = list(theirs) if isinstance(theirs, (list, tuple)) else [theirs]
        tf_loss = tf.add_n([tf.reduce_sum(o * p) for o, p in zip(theirs, probes)])
    tf_grads = tape.gradient(tf_loss, [x_tf] + ref.trainable_weights)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.detach().numpy(), b.numpy(), rtol=0, atol=1e-9)
    for a, b in zip(grads, tf_grads):
        np.testing.assert_allclose(a.numpy(), np.asarray(b), rtol=0, atol=1e-9)
    return [o.detach().numpy() for o in ours]


RNN_CASES = [
    ("LSTM", dict(return_sequences=True)),
    ("LSTM", dict(return_state=True, go_backwards=True)),
    ("LSTM", dict(return_sequences=True, go_backwards=True, return_state=True)),
    ("GRU", dict(return_sequences=True, return_state=True)),
    ("GRU", dict(reset_after=False, go_backwards=True, return_sequences=True)),
    ("GRU", dict()),
    ("SimpleRNN", dict(return_sequences=True, go_backwards=True)),
    ("SimpleRNN", dict(return_state=True)),
]


@pytest.mark.parametrize("cls,kwargs", RNN_CASES)
def test_masked_recurrent_call_matches_tf_keras(cls, kwargs):
    layer = getattr(sepconv, cls)(3, dtype="float64", **kwargs)
    layer.build((None, None, 2))
    _random_weights(layer, np.random.default_rng(1))
    ref = getattr(tf_keras.layers, cls).from_config(layer.get_config())
    ref.build((None, None, 2))
    ref.set_weights(layer.get_weights())
    ours = _direct(layer, ref, _features(MASK, 2), MASK)
    if kwargs.get("return_sequences"):  # processing order: a masked step repeats the
        seq = ours[0]                   # previous output, zeros before the first real one
        order = MASK[:, ::-1] if kwargs.get("go_backwards") else MASK
        for b in range(len(MASK)):
            for t in range(MASK.shape[1]):
                if not order[b, t]:
                    np.testing.assert_array_equal(seq[b, t], seq[b, t - 1] if t else 0.0)
        assert np.all(seq[4] == 0)
    expected = MASK if kwargs.get("return_sequences") else None
    out_mask = layer.compute_mask(None, MASK)
    if kwargs.get("return_state"):
        assert out_mask[0] is expected and out_mask[1:] == [None] * (len(ours) - 1)
    else:
        assert out_mask is expected


@pytest.mark.parametrize("merge_mode", ["concat", "sum", None])
def test_masked_bidirectional_matches_tf_keras_zeros_at_masked_steps(merge_mode):
    layer = sepconv.Bidirectional(sepconv.LSTM(2, return_sequences=True, dtype="float64"),
                                  merge_mode=merge_mode, dtype="float64")
    layer.build((None, None, 3))
    _random_weights(layer, np.random.default_rng(2))
    inner = {"class_name": "LSTM", "config": dict(layer.get_config()["layer"]["config"])}
    ref = tf_keras.layers.Bidirectional(tf_keras.layers.deserialize(inner),
                                        merge_mode=merge_mode, dtype="float64")
    ref.build((None, None, 3))
    ref.set_weights(layer.get_weights())
    ours = _direct(layer, ref, _features(MASK), MASK)
    for out in ours:  # tf-keras' zero_output_for_mask inside Bidirectional
        assert np.all(out[~MASK] == 0)
    assert layer.forward_layer.zero_output_for_mask and layer.backward_layer.zero_output_for_mask


def test_masked_global_average_pooling_and_softmax_match_tf_keras():
    x = _features(MASK, 4, seed=3)
    gap = sepconv.GlobalAveragePooling1D(dtype="float64")
    theirs = tf_keras.layers.GlobalAveragePooling1D(dtype="float64")(x, mask=MASK).numpy()
    ours = gap(torch.tensor(x), mask=torch.tensor(MASK)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)  # all-padding row: NaN
    assert np.isnan(ours[4]).all() and np.isnan(theirs[4]).all()
    for robust in (False, True):
        sm = sepconv.Softmax(axis=1, robust_masking=robust, dtype="float64")
        ref = tf_keras.layers.Softmax(axis=1, robust_masking=robust, dtype="float64")
        m = MASK[:4, :, None]
        np.testing.assert_allclose(sm(torch.tensor(x[:4]), mask=torch.tensor(m)).numpy(),
                                   ref(x[:4], mask=tf.constant(m)).numpy(), rtol=0, atol=1e-12)


def test_masking_layer_and_embedding_mask_match_tf_keras():
    x = _features(MASK, 3, seed=4, value=0.5)
    x[0, 2, 1] = 0.5  # one value equal to mask_value does not mask a step
    ours, ref = sepconv.Masking(0.5, dtype="float64"), tf_keras.layers.Masking(0.5,
                                                                               dtype="float64")
    y = ref(x)
    np.testing.assert_array_equal(ours(torch.tensor(x)).numpy(), y.numpy())
    np.testing.assert_array_equal(ours.compute_mask(torch.tensor(x)).numpy(),
                                  y._keras_mask.numpy())
    np.testing.assert_array_equal(ours.compute_mask(torch.tensor(x)).numpy(), MASK)
    assert ours.get_config().keys() == ref.get_config().keys()
    ids = _ids(MASK)
    emb = sepconv.Embedding(9, 2, mask_zero=True)
    ref_emb = tf_keras.layers.Embedding(9, 2, mask_zero=True)
    np.testing.assert_array_equal(emb.compute_mask(torch.tensor(ids)).numpy(),
                                  ref_emb.compute_mask(ids).numpy())
    assert sepconv.Embedding(9, 2).compute_mask(torch.tensor(ids)) is None
    check_signature(sepconv.Masking, tf_keras.layers.Masking, sepconv.layer_masking, 0)


# -- models ---------------------------------------------------------------------------------
def _model_embedding_rnns(L, K):
    ids = K.Input((6,), dtype="int32", name="ids")
    e = L.Embedding(9, 3, mask_zero=True, name="embed")(ids)
    a = L.LSTM(4, return_sequences=True, name="lstm")(e)
    a = L.Dense(4, activation="tanh", name="dense_seq")(a)  # passes the mask on
    a = L.GlobalAveragePooling1D(name="gap")(a)
    b = L.GRU(3, name="gru")(e)
    c = L.Bidirectional(L.LSTM(2, return_sequences=True), name="bidi")(e)
    c = L.LayerNormalization(name="ln")(c)
    c = L.GlobalAveragePooling1D(name="gap_bidi")(c)
    return K.Model(ids, L.Dense(2, name="out")(L.Concatenate(name="cat")([a, b, c])),
                   name="embedding_rnns")


def _model_masking_gru(L, K):
    x = K.Input((6, 3), name="x")
    m = L.Masking(0.0, name="masking")(x)
    h = L.GRU(3, return_sequences=True, name="gru")(m)
    h2 = L.SimpleRNN(3, return_sequences=True, go_backwards=True, name="rnn")(m)
    s = L.Add(name="add")([h, h2])                    # masks: logical AND in tf-keras
    s = L.Concatenate(name="cat")([s, L.Activation("relu", name="act")(h)])
    s = L.LSTM(2, return_sequences=True, name="lstm")(s)
    return K.Model(x, L.Dense(2, name="out")(s), name="masking_gru")


def _model_dropped_mask(L, K):
    # Conv1D does not support masking: tf-keras drops the mask there, the LSTM sees none
    ids = K.Input((6,), dtype="int32", name="ids")
    e = L.Embedding(9, 3, mask_zero=True, name="embed")(ids)
    c = L.Conv1D(3, 2, padding="same", name="conv")(e)
    return K.Model(ids, L.LSTM(2, name="lstm")(c), name="dropped_mask")


def _model_two_masks(L, K):
    # merges of different masks: tf-keras ANDs them (Add) / concatenates then ANDs
    # (Concatenate); Keras 3 writes its own rule (OR) into the file as operations
    a, b = K.Input((6, 3), name="a"), K.Input((6, 3), name="b")
    ma, mb = L.Masking(0.0, name="mask_a")(a), L.Masking(0.0, name="mask_b")(b)
    s = L.LSTM(2, return_sequences=True, name="lstm")(L.Add(name="add")([ma, mb]))
    c = L.GRU(2, name="gru")(L.Concatenate(name="cat")([ma, mb]))
    t = L.SimpleRNN(2, name="rnn")(L.Concatenate(axis=1, name="cat_time")([ma, mb]))
    return K.Model([a, b], [L.Dense(1, name="out")(s), c, t], name="two_masks")


def _sequential(L, K):
    return K.Sequential([K.Input((6,), dtype="int32"),
                         L.Embedding(9, 3, mask_zero=True, name="embed"),
                         L.Dropout(0.2, name="drop"),
                         L.LSTM(3, return_sequences=True, name="lstm"),
                         L.TimeDistributed(L.Dense(2), name="td"),
                         L.GRU(2, name="gru"),
                         L.Dense(1, name="out")], name="seq")


MODELS = {"embedding_rnns": (_model_embedding_rnns, "ids"),
          "masking_gru": (_model_masking_gru, "x"),
          "dropped_mask": (_model_dropped_mask, "ids"),
          "two_masks": (_model_two_masks, "two"),
          "sequential": (_sequential, "ids")}


def _model_inputs(kind, mask, dtype=np.float64):
    if kind == "two":
        other = np.roll(mask, 2, axis=1)
        return [_features(mask, 3).astype(dtype), _features(other, 3, seed=1).astype(dtype)]
    return [_ids(mask) if kind == "ids" else _features(mask, 3).astype(dtype)]


def _randomize(model, seed):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.get_weights():
            layer.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(w.dtype)
                               for w in layer.get_weights()])


@pytest.mark.parametrize("name", list(MODELS))
def test_tf_keras_model_file_outputs_and_gradients_float64(name, tmp_path):
    build, kind = MODELS[name]
    tf_keras.backend.set_floatx("float64")
    try:
        tf_keras.utils.set_random_seed(0)
        model = build(tf_keras.layers, tf_keras)
    finally:
        tf_keras.backend.set_floatx("float32")
    _randomize(model, 1)
    path = tmp_path / f"{name}.h5"
    model.save(path)
    ours = sepconv.load_keras_model(path)
    mask = MASK[:4] if name == "embedding_rnns" else MASK  # 0/0 of an all-padding mean
    xs = _model_inputs(kind, mask)
    xts = [torch.tensor(x, requires_grad=kind != "ids") for x in xs]
    ys = ours(*xts)
    ys = ys if isinstance(ys, list) else [ys]
    rng = np.random.default_rng(2)
    probes = [rng.standard_normal(tuple(y.shape)) for y in ys]
    loss = sum((y * torch.tensor(p)).sum() for y, p in zip(ys, probes))
    params = [p for m in ours.children() for p in getattr(m, "weights", [])]
    grads = torch.autograd.grad(loss, params + (xts if kind != "ids" else []))
    xs_tf = [tf.Variable(x) if kind != "ids" else tf.constant(x) for x in xs]
    with tf.GradientTape() as tape:
        ys_tf = model(xs_tf if len(xs) > 1 else xs_tf[0], training=False)
        ys_tf = ys_tf if isinstance(ys_tf, list) else [ys_tf]
        tf_loss = tf.add_n([tf.reduce_sum(y * p) for y, p in zip(ys_tf, probes)])
    tf_params = [w for layer in model.layers for w in layer.trainable_weights]
    tf_grads = tape.gradient(tf_loss, tf_params + (xs_tf if kind != "ids" else []))
    for y, y_tf in zip(ys, ys_tf):
        np.testing.assert_allclose(y.detach().numpy(), y_tf.numpy(), rtol=0, atol=1e-9)
    assert len(grads) == len(tf_grads)
    for a, b in zip(grads, tf_grads):  # (Embedding's gradient comes as IndexedSlices)
        np.testing.assert_allclose(a.numpy(), tf.convert_to_tensor(b).numpy(), rtol=0,
                                   atol=1e-9)
    # the masks were used: the same model with masks dropped gives other numbers
    if name != "dropped_mask":
        for layer in ours.modules():
            if isinstance(layer, (sepconv.Embedding, sepconv.Masking)):
                layer.compute_mask = lambda inputs, mask=None: None
        again = ours(*[torch.tensor(x) for x in xs])
        again = again if isinstance(again, list) else [again]
        assert not np.allclose(again[0].detach().numpy(), ys[0].detach().numpy())


@pytest.fixture(scope="module")
def file_results(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("mask_files"))
    cases = Cases(root)
    for i, (name, (build, kind)) in enumerate(MODELS.items()):
        for writer, K in (("tf_keras", tf_keras), ("keras3", keras)):
            K.utils.set_random_seed(i)
            model = build(K.layers, K)
            _randomize(model, 10 + i)
            mask = MASK[:4] if name == "embedding_rnns" else MASK
            x = _model_inputs(kind, mask, np.float32)
            y = call_outputs(model, x if len(x) > 1 else x[0])
            ext = ".h5" if writer == "tf_keras" else ".keras"
            path = os.path.join(root, f"{name}-{writer}{ext}")
            model.save(path)
            cases.add(f"{name}-{writer}", "model", path, x, y)
    return cases.run(timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("case", [f"{n}-{w}" for n in MODELS for w in ("tf_keras", "keras3")])
def test_model_files_predict_with_tensorflow_blocked(file_results, case):
    check(file_results[case])


def test_layers_without_mask_support():
    """tf-keras 2.21 drops a mask at a layer that does not support masking (no error in a
    model); its ``compute_mask`` given a mask raises ``TypeError``, as tf-keras'."""
    inp = tf_keras.Input((6,))
    e = tf_keras.layers.Embedding(9, 3, mask_zero=True)(inp)
    assert getattr(tf_keras.layers.Conv1D(2, 1)(e), "_keras_mask", None) is None
    assert getattr(tf_keras.layers.Flatten()(e), "_keras_mask", None) is None
    with pytest.raises(TypeError, match="does not support masking"):
        tf_keras.layers.Conv1D(2, 1).compute_mask(e, tf.ones((1, 6), tf.bool))
    with pytest.raises(TypeError, match="does not support masking"):
        sepconv.Conv1D(2, 1).compute_mask(torch.zeros(1, 6, 3), torch.ones(1, 6).bool())
    with pytest.raises(TypeError, match="mask"):
        sepconv.Conv1D(2, 1)(torch.zeros(1, 6, 3), mask=torch.ones(1, 6).bool())
    assert not sepconv.Conv1D(2, 1).supports_masking
    assert not sepconv.GlobalMaxPooling1D().supports_masking
    for cls in ("Dense", "Activation", "Dropout", "BatchNormalization", "LayerNormalization",
                "TimeDistributed", "ReLU", "GaussianNoise", "SpatialDropout1D", "Add",
                "Concatenate", "LSTM", "GRU", "SimpleRNN", "Bidirectional", "Masking",
                "GlobalAveragePooling1D", "Softmax", "ConvLSTM1D"):
        assert getattr(sepconv, cls).supports_masking is True, cls
    for cls in ("Conv1D", "Flatten", "Reshape", "GlobalMaxPooling1D", "MaxPooling1D",
                "ZeroPadding1D", "Cropping1D", "UpSampling1D", "Permute", "RepeatVector",
                "SeparableConv1D", "GlobalAveragePooling2D"):
        assert getattr(sepconv, cls).supports_masking is False, cls
        assert getattr(tf_keras.layers, cls)(
            *{"Conv1D": (2, 1), "SeparableConv1D": (2, 1), "Reshape": ((6, 3),),
              "Permute": ((2, 1),), "RepeatVector": (2,)}.get(cls, ())).supports_masking \
            is False, cls


@pytest.mark.slow
def test_masked_models_saved_back_read_in_tf_keras_and_keras3(tmp_path):
    """tf-keras .h5 -> sepconv -> save_keras_model (.h5 for tf-keras, .keras for Keras 3):
    the original predictions; a merge of different masks (AND in tf-keras, OR in Keras 3)
    is refused for .keras, and Keras 3's mask operations go back to .keras only."""
    for i, (name, (build, kind)) in enumerate(MODELS.items()):
        tf_keras.utils.set_random_seed(i)
        model = build(tf_keras.layers, tf_keras)
        _randomize(model, 20 + i)
        x = _model_inputs(kind, MASK[:4], np.float32)
        x = x if len(x) > 1 else x[0]
        y = call_outputs(model, x)
        model.save(tmp_path / f"{name}.h5")
        ours = sepconv.load_keras_model(tmp_path / f"{name}.h5")
        sepconv.save_keras_model(ours, tmp_path / f"{name}-again.h5")
        again = tf_keras.models.load_model(tmp_path / f"{name}-again.h5")
        for a, b in zip(call_outputs(again, x), y):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
        if name == "two_masks":
            with pytest.raises(ValueError, match="'add' merges inputs with different"):
                sepconv.save_keras_model(ours, tmp_path / f"{name}.keras")
            continue
        sepconv.save_keras_model(ours, tmp_path / f"{name}.keras")
        k3 = keras.saving.load_model(tmp_path / f"{name}.keras")
        for a, b in zip(call_outputs(k3, x), y):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    k3_model = _model_embedding_rnns(keras.layers, keras)
    k3_model.save(tmp_path / "k3.keras")
    loaded = sepconv.load_keras_model(tmp_path / "k3.keras")
    with pytest.raises(ValueError, match=r"Keras 3 operations \('not_equal\w*' \(NotEqual\)"):
        sepconv.save_keras_model(loaded, tmp_path / "k3-again.h5")
    # its mask operations go back to Keras 3 (.keras), which computes the same
    x = _model_inputs("ids", MASK[:4], np.float32)
    x = x if len(x) > 1 else x[0]
    sepconv.save_keras_model(loaded, tmp_path / "k3-again.keras")
    again = keras.saving.load_model(tmp_path / "k3-again.keras")
    for a, b in zip(call_outputs(again, x),
                    call_outputs(k3_model, x)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


# -- TimeDistributed hands the mask to its inner layer ----------------------------------------
# (batch, sentences, words): padded words, a padded sentence, an all-padding row
WORDS = np.array([[[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]],
                  [[1, 0, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]],
                  [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
                  [[0, 0, 1, 1], [1, 0, 0, 0], [1, 1, 1, 1]]], dtype=bool)


@pytest.mark.parametrize("return_sequences", [False, True])
def test_time_distributed_passes_the_mask_to_its_inner_layer(return_sequences):
    """tf-keras 2.21: TimeDistributed folds a (batch, time, ...) mask to (batch * time,
    ...) and hands it to the inner layer's call when that takes ``mask``; its output mask
    is the inner layer's, unfolded, or the input mask reduced with ``any`` to (batch,
    time).  Outputs and gradients (input, weights) at 1e-9, output masks equal."""
    layer = sepconv.TimeDistributed(sepconv.LSTM(3, return_sequences=return_sequences,
                                                 dtype="float64"), dtype="float64")
    layer.build((None, None, 4, 2))
    _random_weights(layer, np.random.default_rng(5))
    ref = tf_keras.layers.TimeDistributed(tf_keras.layers.LSTM.from_config(
        layer.layer.get_config()), dtype="float64")
    ref.build((None, 3, 4, 2))
    ref.set_weights(layer.get_weights())
    x = _features(WORDS, 2, seed=5)
    ours = _direct(layer, ref, x, WORDS)[0]
    unmasked = layer(torch.tensor(x)).detach().numpy()
    assert not np.allclose(ours, unmasked)  # the mask was used
    inner = layer.layer(torch.tensor(x.reshape(12, 4, 2)), mask=torch.tensor(
        WORDS.reshape(12, 4))).detach().numpy()
    np.testing.assert_array_equal(ours.reshape(inner.shape), inner)
    theirs = ref.compute_mask(tf.constant(x), tf.constant(WORDS)).numpy()
    got = layer.compute_mask(torch.tensor(x), torch.tensor(WORDS)).numpy()
    np.testing.assert_array_equal(got, theirs)
    np.testing.assert_array_equal(got, WORDS if return_sequences else WORDS.any(-1))


def test_time_distributed_softmax_pooling_dense_and_refusals_match_tf_keras():
    x = _features(WORDS, 5, seed=6)[..., 0]  # (batch, time, words)
    for robust in (False, True):
        ours = sepconv.TimeDistributed(sepconv.Softmax(robust_masking=robust,
                                                       dtype="float64"), dtype="float64")
        ref = tf_keras.layers.TimeDistributed(tf_keras.layers.Softmax(
            robust_masking=robust, dtype="float64"), dtype="float64")
        np.testing.assert_allclose(
            ours(torch.tensor(x[:2]), mask=torch.tensor(WORDS[:2])).numpy(),
            ref(x[:2], mask=tf.constant(WORDS[:2])).numpy(), rtol=0, atol=1e-12)
    feats = _features(WORDS, 3, seed=7)
    gap = sepconv.TimeDistributed(sepconv.GlobalAveragePooling1D(dtype="float64"))
    ref = tf_keras.layers.TimeDistributed(tf_keras.layers.GlobalAveragePooling1D(
        dtype="float64"))
    rows = WORDS[[0, 1, 3]][:, :2]  # no all-padding sentence: 0/0 in both
    got = gap(torch.tensor(feats[[0, 1, 3]][:, :2]), mask=torch.tensor(rows)).numpy()
    np.testing.assert_allclose(got, ref(feats[[0, 1, 3]][:, :2], mask=tf.constant(rows)),
                               rtol=0, atol=1e-12)
    assert not np.allclose(got, feats[[0, 1, 3]][:, :2].mean(2))
    # Dense takes no mask: passed through, (batch, time) reduced with any
    steps = WORDS.any(-1)
    dense = sepconv.TimeDistributed(sepconv.Dense(2))
    ref = tf_keras.layers.TimeDistributed(tf_keras.layers.Dense(2))
    xs = _features(steps, 3).astype(np.float32)
    np.testing.assert_array_equal(dense.compute_mask(torch.tensor(xs), torch.tensor(steps)),
                                  ref.compute_mask(xs, tf.constant(steps)).numpy())
    assert dense.compute_mask(torch.tensor(xs)) is None
    # an inner layer without mask support: TypeError in both (tf-keras at model building)
    conv = sepconv.TimeDistributed(sepconv.Conv1D(2, 2))
    with pytest.raises(TypeError, match="does not support masking"):
        conv.compute_mask(torch.tensor(feats, dtype=torch.float32), torch.tensor(WORDS))
    with pytest.raises(TypeError, match="does not support masking"):
        inp = tf_keras.Input((3, 4, 3))
        tf_keras.layers.TimeDistributed(tf_keras.layers.Conv1D(2, 2))(
            tf_keras.layers.Masking()(inp))
    with pytest.raises(ValueError, match=r"`mask`.*\(4, 3\).*\(4, 2\)"):
        dense(torch.tensor(xs), mask=torch.ones(4, 2, dtype=torch.bool))


def test_time_distributed_lstm_model_file_matches_tf_keras(tmp_path):
    """Embedding(mask_zero) over (batch, sentences, words) ids -> TimeDistributed(LSTM)
    (words masked per sentence) -> LSTM (padded sentences masked) -> Dense, saved by
    tf-keras (float64) and loaded by sepconv: outputs and weight gradients at 1e-9."""
    L = tf_keras.layers
    tf_keras.backend.set_floatx("float64")
    try:
        tf_keras.utils.set_random_seed(0)
        ids = tf_keras.Input((3, 4), dtype="int32")
        h = L.Embedding(9, 3, mask_zero=True, name="embed")(ids)
        h = L.TimeDistributed(L.LSTM(3), name="words")(h)
        h = L.LSTM(2, name="sentences")(h)
        model = tf_keras.Model(ids, L.Dense(1, name="out")(h))
    finally:
        tf_keras.backend.set_floatx("float32")
    _randomize(model, 3)
    model.save(tmp_path / "td.h5")
    ours = sepconv.load_keras_model(tmp_path / "td.h5")
    x = np.where(WORDS, np.random.default_rng(8).integers(1, 9, WORDS.shape), 0)
    y = ours(torch.tensor(x))
    params = [p for m in ours.modules() if isinstance(m, sepconv.layers.base.Layer)
              for p in m.parameters(recurse=False)]
    grads = torch.autograd.grad(y.sum(), params)
    with tf.GradientTape() as tape:
        y_tf = model(tf.constant(x), training=False)
        loss = tf.reduce_sum(y_tf)
    tf_grads = tape.gradient(loss, model.trainable_weights)
    np.testing.assert_allclose(y.detach().numpy(), y_tf.numpy(), rtol=0, atol=1e-9)
    assert len(grads) == len(tf_grads)
    for a, b in zip(grads, tf_grads):  # Keras' weight order in both
        np.testing.assert_allclose(a.numpy(), tf.convert_to_tensor(b).numpy(), rtol=0,
                                   atol=1e-9)


# -- ConvLSTM after Masking: a (batch, time, *spatial) mask, per output position -----------
CONV_LSTM_CASES = [
    ("ConvLSTM1D", (5,), dict(kernel_size=3, padding="same", return_sequences=True)),
    ("ConvLSTM1D", (5,), dict(kernel_size=2, padding="same", go_backwards=True)),
    ("ConvLSTM1D", (5,), dict(kernel_size=1, padding="valid", return_sequences=True)),
    ("ConvLSTM2D", (3, 4), dict(kernel_size=(3, 2), padding="same", return_sequences=True)),
    ("ConvLSTM2D", (3, 4), dict(kernel_size=3, padding="same", dilation_rate=2,
                                return_sequences=True, go_backwards=True)),  # unfused path
]


def _spatial_mask(shape, seed):
    """(batch 3, time 4, *spatial): a whole masked frame, single masked positions, an
    all-padding position, a row starting with padding."""
    rng = np.random.default_rng(seed)
    mask = rng.random((3, 4) + shape) > 0.3
    mask[0, 1] = False
    mask[1, :, 0] = False
    mask[2, 0] = False
    return mask


@pytest.mark.parametrize("cls,spatial,kwargs", CONV_LSTM_CASES)
def test_conv_lstm_after_masking_matches_tf_keras_per_position(cls, spatial, kwargs):
    """tf-keras 2.21's backend.rnn tiles Masking's (batch, time, *spatial) mask over the
    filters: each output position keeps its own h, c and last output where masked.
    Direct calls (outputs, input and weight gradients, float64 at 1e-9), the mask read
    off the output, and a Masking -> ConvLSTM model file."""
    mask = _spatial_mask(spatial, 9)
    x = np.random.default_rng(10).standard_normal(mask.shape + (2,))
    layer = getattr(sepconv, cls)(3, dtype="float64", **kwargs)
    layer.build((None, None) + spatial + (2,))
    _random_weights(layer, np.random.default_rng(11))
    ref = getattr(tf_keras.layers, cls).from_config(layer.get_config())
    ref.build((None, None) + spatial + (2,))
    ref.set_weights(layer.get_weights())
    ours = _direct(layer, ref, x, mask)[0]
    assert not np.allclose(ours, layer(torch.tensor(x)).detach().numpy())
    if kwargs.get("return_sequences"):  # processing order: a masked position repeats
        order = mask[:, ::-1] if kwargs.get("go_backwards") else mask
        for b, t, *pos in zip(*np.nonzero(~order)):
            want = ours[(b, t - 1, *pos)] if t else 0.0
            np.testing.assert_array_equal(ours[(b, t, *pos)], want)
    # the whole model: Masking makes the mask from zeroed positions
    L = tf_keras.layers
    inp = tf_keras.Input((4,) + spatial + (2,), dtype="float64")
    out = getattr(L, cls).from_config(layer.get_config())(L.Masking(dtype="float64")(inp))
    model = tf_keras.Model(inp, out)
    model.layers[-1].set_weights(layer.get_weights())
    xm = np.where(mask[..., None], x, 0.0)
    ours_model = sepconv.Sequential(sepconv.Masking(dtype="float64"), layer)
    np.testing.assert_allclose(ours_model(torch.tensor(xm)).detach().numpy(),
                               model(xm).numpy(), rtol=0, atol=1e-9)


def test_conv_lstm_spatial_mask_shapes_and_channels_first():
    """A mask must lead a step's output shape: 'valid' padding shrinks the output, so
    Masking's mask is refused with a message naming `mask` (tf-keras fails there too, with
    a broadcast error); channels_first takes the mask on its (filters, *spatial) output
    layout, the same numbers as channels_last on the transposed mask."""
    x = np.random.default_rng(12).standard_normal((2, 3, 5, 2))
    mask = np.ones((2, 3, 5), bool)
    layer = sepconv.ConvLSTM1D(3, 3, padding="valid", dtype="float64")
    with pytest.raises(ValueError, match=r"`mask`.*\(2, 3\).*\(3, 3\).*padding='same'.*"
                                         r"\(2, 3, 5\)"):
        layer(torch.tensor(x), mask=torch.tensor(mask))
    with pytest.raises(Exception, match="broadcastable|Incompatible|must be equal"):
        ref = tf_keras.layers.ConvLSTM1D(3, 3, padding="valid", dtype="float64")
        ref(x, mask=tf.constant(mask))
    last = sepconv.ConvLSTM1D(3, 2, padding="same", return_sequences=True, dtype="float64")
    last.build((None, None, 5, 2))
    _random_weights(last, np.random.default_rng(13))
    first = sepconv.ConvLSTM1D(3, 2, padding="same", return_sequences=True,
                               data_format="channels_first", dtype="float64")
    first.build((None, None, 2, 5))
    first.set_weights(last.get_weights())
    full = np.random.default_rng(14).random((2, 3, 5, 3)) > 0.4  # (b, t, L, filters)
    xt = torch.tensor(x)
    want = last(xt, mask=torch.tensor(full))
    got = first(xt.transpose(2, 3), mask=torch.tensor(full).transpose(2, 3))
    torch.testing.assert_close(got.transpose(2, 3), want)
    steps = full[..., 0, 0]  # a (batch, time) mask is a mask constant over positions
    torch.testing.assert_close(last(xt, mask=torch.tensor(steps)), last(
        xt, mask=torch.tensor(np.broadcast_to(steps[..., None], (2, 3, 5)).copy())))
