"""Model files with models used as layers (a feature extractor, an encoder shared by two
branches, a Sequential inside a Sequential, a model two levels deep), written by tf-keras
2.21 (``.h5``, ``.keras``) and Keras 3 (``.keras``, ``.h5``), loaded by sepconv in a process
without TensorFlow: the outputs equal ``model.predict``."""

from __future__ import annotations

import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

from keras_files import Cases, check, outputs  # noqa: E402


def _encoder(K, name):
    L = K.layers
    # (Keras 3's SeparableConv1D has no causal padding)
    x = K.Input((12, 3), name=f"{name}_in")
    h = L.SeparableConv1D(6, 3, padding="same", activation="relu", name=f"{name}_sep")(x)
    h = L.LSTM(5, return_sequences=True, name=f"{name}_lstm")(h)
    return K.Model(x, L.Dense(4, name=f"{name}_proj")(h), name=name)


def _shared_and_sequential(K):
    """An encoder model applied to two inputs (shared), then a Sequential head on both."""
    L = K.layers
    enc = _encoder(K, "enc")
    head = K.Sequential([K.Input((12, 4)), L.Conv1D(3, 2, name="head_conv"),
                         L.GlobalAveragePooling1D(name="head_gap")], name="head")
    a, b = K.Input((12, 3), name="a"), K.Input((12, 3), name="b")
    ya, yb = head(enc(a)), head(enc(b))
    return K.Model([a, b], [L.Subtract(name="diff")([ya, yb]), ya], name="siamese")


def _sequential_of_sequential(K):
    """Transfer-learning style: Sequential([base, Dense])."""
    L = K.layers
    base = K.Sequential([K.Input((10, 2)), L.Conv1D(4, 3, activation="relu", name="b_conv"),
                         L.Flatten(name="b_flat")], name="base")
    return K.Sequential([K.Input((10, 2)), base, L.Dense(3, name="top")], name="finetuned")


def _two_levels(K):
    """A model inside a model inside the model."""
    L = K.layers
    inner = _encoder(K, "inner")
    x = K.Input((12, 3), name="mid_in")
    middle = K.Model(x, L.Dense(2, name="mid_dense")(inner(x)), name="middle")
    y = K.Input((12, 3), name="y")
    return K.Model(y, L.Activation("tanh", name="act")(middle(y)), name="outer")


def _masked(K):
    """Padded ids through Embedding(mask_zero=True) into a nested encoder (masked LSTM)
    and a nested Sequential (masked GRU): the mask goes into the nested models, and out
    of them to the pooling, as tf-keras hands it over."""
    L = K.layers
    e_in = K.Input((None, 4), name="e_in")
    enc = K.Model(e_in, L.LSTM(3, return_sequences=True, name="e_lstm")(e_in), name="enc")
    seq = K.Sequential([K.Input((None, 3)), L.GRU(2, return_sequences=True, name="s_gru")],
                       name="seq")
    ids = K.Input((7,), dtype="int32", name="ids")
    h = seq(enc(L.Embedding(10, 4, mask_zero=True, name="emb")(ids)))
    return K.Model(ids, L.GlobalAveragePooling1D(name="gap")(h), name="masked")


MODELS = {"siamese": _shared_and_sequential, "seq_of_seq": _sequential_of_sequential,
          "two_levels": _two_levels, "masked": _masked}
WRITERS = {"tk": (tf_keras, (".h5", ".keras")), "k3": (keras, (".keras", ".h5"))}
FILES = [f"{w}_{m}{ext}" for m in MODELS for w, (_, exts) in WRITERS.items() for ext in exts]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("nested_files"))
    cases = Cases(root)
    for writer, (K, exts) in WRITERS.items():
        K.utils.set_random_seed(4)
        for name, build in MODELS.items():
            model = build(K)
            rng = np.random.default_rng(len(name))
            if name == "masked":  # padded ids
                ids = rng.integers(1, 10, (3, 7))
                ids[0, 4:] = 0
                ids[1, 2:] = 0
                x = [ids.astype(np.int32)]
            else:
                x = [rng.standard_normal((2,) + tuple(t.shape[1:])).astype(np.float32)
                     for t in model.inputs]
            y = outputs(model.predict(x if len(x) > 1 else x[0], verbose=0))
            for ext in exts:
                path = os.path.join(root, f"{writer}_{name}{ext}")
                model.save(path)
                cases.add(f"{writer}_{name}{ext}", "model", path, x, y,
                          finetune=ext == ".keras")
    return cases.run()


@pytest.mark.parametrize("case", FILES)
def test_nested_models_load_with_their_outputs(results, case):
    r = results[case]
    check(r)
    if "finetuned" in r:  # the nested models' weights are the model's parameters
        assert r["finetuned"]


def test_nested_model_is_not_written_back_and_says_so(tmp_path):
    import sepconv
    _sequential_of_sequential(tf_keras).save(tmp_path / "m.h5")
    model = sepconv.load_keras_model(tmp_path / "m.h5")
    for ext in (".h5", ".keras"):
        with pytest.raises(ValueError, match="'base' is a model nested in the model"):
            sepconv.save_keras_model(model, tmp_path / f"again{ext}")
