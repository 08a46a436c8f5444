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

from keras_files import Cases, call_outputs, check  # noqa: E402


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
    data = {}  # file -> (path, inputs, Keras' outputs)
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
            y = call_outputs(model, x if len(x) > 1 else x[0])
            for ext in exts:
                path = os.path.join(root, f"{writer}_{name}{ext}")
                model.save(path)
                cases.add(f"{writer}_{name}{ext}", "model", path, x, y,
                          finetune=ext == ".keras")
                data[f"{writer}_{name}{ext}"] = (path, x, y)
    results = cases.run()
    results["data"] = data
    return results


@pytest.mark.parametrize("case", FILES)
def test_nested_models_load_with_their_outputs(results, case):
    r = results[case]
    check(r)
    if "finetuned" in r:  # the nested models' weights are the model's parameters
        assert r["finetuned"]


WRITE_BACK = [(f, out) for f in FILES for out in (".h5", ".keras")]


@pytest.mark.parametrize("case,out", WRITE_BACK, ids=[f"{f}->{o}" for f, o in WRITE_BACK])
def test_nested_models_are_written_back_and_read_by_each_keras(results, case, out,
                                                               tmp_path):
    """Loaded, then saved by sepconv as tf-keras (``.h5``) and Keras 3 (``.keras``) nest
    models (a nested model's config inside the layer list, its weights in its group:
    tf-keras' trainable ones first, Keras 3's under ``layers/<key>/layers``; tf-keras
    numbers a nested model's calls from 1): each Keras reads the file back with the
    original outputs, and so does sepconv.  (Keras 3's masked model carries its masks as
    Keras 3 operations, which only a .keras file holds.)"""
    import torch

    import sepconv
    path, x, y = results["data"][case]
    model = sepconv.load_keras_model(path)
    again = str(tmp_path / f"again{out}")
    if case.startswith("k3_masked") and out == ".h5":  # Keras 3's mask operations
        with pytest.raises(ValueError,  # (the node's name counts Keras' earlier ones)
                           match=r"Keras 3 operations \('not_equal(_\d+)?' \(NotEqual\)"):
            sepconv.save_keras_model(model, again)
        return
    sepconv.save_keras_model(model, again)
    theirs = tf_keras.models.load_model(again) if out == ".h5" else \
        keras.saving.load_model(again)
    got = call_outputs(theirs, x if len(x) > 1 else x[0])
    assert len(got) == len(y)
    for g, e in zip(got, y):
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-5 * max(1.0, np.abs(e).max()))
    ours = sepconv.load_keras_model(again)
    with torch.no_grad():
        mine = ours(*[torch.from_numpy(a) for a in x])
    for g, e in zip(mine if isinstance(mine, list) else [mine], y):
        np.testing.assert_allclose(g.numpy(), e, rtol=0,
                                   atol=1e-5 * max(1.0, np.abs(e).max()))


def test_a_nested_sequential_without_a_name_is_refused_naming_it(tmp_path):
    import sepconv
    inner = sepconv.Sequential(sepconv.Dense(3, input_shape=(4,)))
    model = sepconv.Sequential(inner, sepconv.Dense(2))
    model(__import__("torch").zeros(1, 4))
    with pytest.raises(ValueError, match="module 0 is a Sequential used as a layer "
                                         "without a Keras name"):
        sepconv.save_keras_model(model, tmp_path / "m.h5", input_shape=(4,))
