"""The issue's real models over the whole family, from tf-keras 2.21 and Keras 3 files.

Each model is built with Keras inside the test run, given random weights (positive
moving variances), saved as ``.h5`` and ``.keras`` (tf-keras) and ``.keras`` (Keras 3),
and loaded by sepconv in a child process where TensorFlow and Keras cannot be imported;
outputs must match ``model.predict`` to 1e-5 of scale.  A model whose layer classes are
not yet in ``sepconv.layers.base.KERAS_CLASSES`` is skipped, naming what it lacks: the
loader needs no change when they arrive (it reads that table only).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

from sepconv.layers.base import KERAS_CLASSES  # noqa: E402
from keras_files import Cases, call_outputs, check  # noqa: E402

pytestmark = pytest.mark.slow


def causal_classifier(K, keras3):
    """1D classifier with causal separable convolutions (Keras 3 has no causal separable
    convolution: its variant pads "same")."""
    L = K.layers
    pad = "same" if keras3 else "causal"
    return K.Sequential([
        K.Input((32, 4)),
        L.SeparableConv1D(8, 3, padding=pad, activation="relu", name="sep1"),
        L.BatchNormalization(name="bn1"),
        L.SeparableConv1D(8, 3, padding=pad, dilation_rate=2, name="sep2"),
        L.LeakyReLU(name="leaky"),
        L.MaxPooling1D(2, name="pool"),
        L.Dropout(0.3, name="drop"),
        L.SeparableConv1D(16, 3, padding=pad, depth_multiplier=2, name="sep3"),
        L.GlobalAveragePooling1D(name="gap"),
        L.Dense(5, activation="softmax", name="probs"),
    ], name="causal_classifier")


def mobilenet_block(K, keras3):
    """Depthwise, separable, zero padding, batch norm and a residual add."""
    L = K.layers
    x = inp = K.Input((16, 16, 3), name="image")
    x = L.ZeroPadding2D(1, name="pad")(x)
    x = L.Conv2D(8, 3, strides=2, name="stem")(x)
    x = L.BatchNormalization(name="stem_bn")(x)
    stem = x = L.ReLU(6.0, name="stem_relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.BatchNormalization(name="dw_bn")(x)
    x = L.ReLU(name="dw_relu")(x)
    x = L.Conv2D(8, 1, name="project")(x)
    x = L.BatchNormalization(name="project_bn")(x)
    x = L.Add(name="residual")([stem, x])
    x = L.SeparableConv2D(16, 3, padding="same", activation="relu", name="sep")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(4, name="logits")(x)
    return K.Model(inp, out, name="mobilenet_block")


def unet(K, keras3):
    """Cropping, upsampling, transposed convolutions and concatenation."""
    L = K.layers
    inp = K.Input((20, 20, 2), name="image")
    c1 = L.Conv2D(4, 3, padding="same", activation="relu", name="down1")(inp)
    skip = L.Cropping2D(2, name="crop")(c1)
    p = L.MaxPooling2D(2, name="pool")(c1)
    c2 = L.Conv2D(8, 3, activation="relu", name="down2")(p)
    up1 = L.Conv2DTranspose(4, 2, strides=2, name="up_conv")(c2)
    up2 = L.UpSampling2D(2, name="up_sample")(c2)
    cat = L.Concatenate(name="cat")([up1, up2, skip])
    out = L.Conv2D(1, 1, activation="sigmoid", name="mask")(cat)
    return K.Model(inp, out, name="unet")


def video(K, keras3):
    """ConvLSTM2D over frames, with TimeDistributed and batch norm."""
    L = K.layers
    return K.Sequential([
        K.Input((4, 8, 8, 2)),
        L.TimeDistributed(L.Conv2D(3, 1), name="frames"),
        L.ConvLSTM2D(4, 3, padding="same", return_sequences=True,
                     recurrent_activation="hard_sigmoid", name="lstm1"),
        L.BatchNormalization(name="bn"),
        L.ConvLSTM2D(4, 3, padding="same", name="lstm2"),
        L.Conv2D(1, 3, padding="same", activation="sigmoid", name="next_frame"),
    ], name="video")


def multi_io(K, keras3):
    """Two inputs (a sequence and integer tokens), two outputs, merges."""
    L = K.layers
    seq = K.Input((20, 3), name="signal")
    tok = K.Input((6,), dtype="int32", name="tokens")
    a = L.Conv1D(6, 3, padding="same" if keras3 else "causal", activation="relu",
                 name="conv")(seq)
    a = L.GlobalMaxPooling1D(name="gmp")(a)
    a = L.Dense(8, name="dense_a")(a)
    b = L.Embedding(50, 4, name="embed")(tok)
    b = L.Flatten(name="flat")(b)
    b = L.Dense(8, name="dense_b")(b)
    diff = L.Subtract(name="diff")([a, b])
    both = L.Concatenate(name="cat")([a, b, diff])
    h = L.Dense(8, activation="elu", name="hidden")(both)
    cls = L.Dense(3, activation="softmax", name="cls")(h)
    reg = L.Dense(1, name="reg")(L.Multiply(name="gate")([h, a]))
    return K.Model([seq, tok], [cls, reg], name="multi_io")


MODELS = {
    "causal_classifier": (causal_classifier, ["SeparableConv1D", "BatchNormalization",
                                              "LeakyReLU", "MaxPooling1D", "Dropout",
                                              "GlobalAveragePooling1D", "Dense"]),
    "mobilenet_block": (mobilenet_block, ["ZeroPadding2D", "Conv2D", "BatchNormalization",
                                          "ReLU", "DepthwiseConv2D", "Add",
                                          "SeparableConv2D", "GlobalAveragePooling2D",
                                          "Dense"]),
    "unet": (unet, ["Conv2D", "Cropping2D", "MaxPooling2D", "Conv2DTranspose",
                    "UpSampling2D", "Concatenate"]),
    "video": (video, ["TimeDistributed", "Conv2D", "ConvLSTM2D", "BatchNormalization"]),
    "multi_io": (multi_io, ["Conv1D", "GlobalMaxPooling1D", "Dense", "Embedding", "Flatten",
                            "Subtract", "Concatenate", "Multiply"]),
}
# (writer, file extension) pairs each model is saved in
FORMATS = [("tf_keras", ".h5"), ("tf_keras", ".keras"), ("keras3", ".keras")]
CASES = [f"{name}-{writer}{ext}" for name in MODELS for writer, ext in FORMATS]


def _missing(name):
    return [c for c in MODELS[name][1] if c not in KERAS_CLASSES]


def _randomize(model, seed):
    """Random weights at unit-ish scale; moving variances positive."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        arrays = layer.get_weights()
        if not arrays:
            continue
        new = []
        for var, w in zip(layer.weights, arrays):
            if "variance" in var.name:
                new.append(rng.uniform(0.5, 1.5, w.shape).astype(w.dtype))
            else:
                new.append((rng.standard_normal(w.shape) * 0.4).astype(w.dtype))
        layer.set_weights(new)


def _inputs(model, seed):
    rng = np.random.default_rng(seed)
    xs = []
    for t in model.inputs:
        shape = (2,) + tuple(t.shape)[1:]
        if "int" in str(t.dtype):
            xs.append(rng.integers(0, 50, shape).astype(np.int64))
        else:
            xs.append(rng.standard_normal(shape).astype(np.float32))
    return xs


@pytest.fixture(scope="module")
def family_results(tmp_path_factory):
    ready = [name for name in MODELS if not _missing(name)]
    if not ready:
        return {}
    root = str(tmp_path_factory.mktemp("family_files"))
    cases = Cases(root)
    models = {}
    for i, name in enumerate(ready):
        for writer, ext in FORMATS:
            K = tf_keras if writer == "tf_keras" else keras
            K.utils.set_random_seed(i)
            model = MODELS[name][0](K, writer == "keras3")
            _randomize(model, seed=i)
            x = _inputs(model, seed=100 + i)
            y = call_outputs(model, x if len(x) > 1 else x[0])
            path = os.path.join(root, f"{name}-{writer}{ext}")
            model.save(path)
            # fine-tune once in train mode (batch norm, dropout) on the tf-keras .keras file
            cases.add(f"{name}-{writer}{ext}", "model", path, x, y,
                      finetune=(writer, ext) == ("tf_keras", ".keras"),
                      convert=path + ".pt" if ext == ".h5" else None)
            models[f"{name}-{writer}{ext}"] = (model, x, y, path)
    results = cases.run(timeout=600)
    return dict(results=results, models=models)


@pytest.mark.parametrize("case", CASES)
def test_family_model_file_gives_keras_outputs(family_results, case):
    missing = _missing(case.split("-")[0])
    if missing:
        pytest.skip(f"needs {', '.join(missing)}, not yet in sepconv's KERAS_CLASSES")
    r = family_results["results"][case]
    check(r)
    if "finetuned" in r:
        assert r["finetuned"], "an optimizer step changed no weight (or made one non-finite)"
    if "convert_rc" in r:  # the convert command's table counts what Keras' summary counts
        model = family_results["models"][case][0]
        assert r["convert_rc"] == 0 and r["convert_err"] <= 1e-5
        text = r["convert_text"]
        non_trainable = int(sum(np.prod(w.shape) for w in model.non_trainable_weights))
        assert f"Total params: {model.count_params():,}" in text
        assert f"Non-trainable params: {non_trainable:,}" in text
        for layer in model.layers:
            assert f"{layer.name} ({type(layer).__name__})" in text


@pytest.mark.parametrize("name", list(MODELS))
def test_family_model_saved_back_reads_in_tf_keras(family_results, name, tmp_path):
    """tf-keras .h5 -> sepconv -> save_keras_model -> tf_keras.models.load_model: the
    original predictions (every layer's get_config and weights go through tf-keras)."""
    import sepconv

    missing = _missing(name)
    if missing:
        pytest.skip(f"needs {', '.join(missing)}, not yet in sepconv's KERAS_CLASSES")
    model, x, y, path = family_results["models"][f"{name}-tf_keras.h5"]
    ours = sepconv.load_keras_model(path)
    out = tmp_path / "again.h5"
    sepconv.save_keras_model(ours, out)
    theirs = tf_keras.models.load_model(out)
    assert [type(a).__name__ for a in theirs.layers] == \
        [type(a).__name__ for a in model.layers]
    got = call_outputs(theirs, x if len(x) > 1 else x[0])
    for a, b in zip(got, y):
        np.testing.assert_allclose(a, b, atol=1e-5 * max(1.0, float(np.abs(b).max())))
