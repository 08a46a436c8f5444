"""Keras masks crossing operation nodes and Lambda layers in model files.

Text models put ``x * 2``, ``tf.nn.relu(x)``, ``tf.cast(x, "float32")``,
``Lambda(...)`` between ``Embedding(mask_zero=True)`` / ``Masking`` and a masked consumer
(``LSTM``, ``GRU``, ``GlobalAveragePooling1D``, ``MultiHeadAttention``).  Both Kerases
keep a mask as an attribute of the tensor object (``_keras_mask``): an operation node or a
Lambda without ``mask=`` does not compute one, so the mask is dropped, unless the
operation hands back its input tensor itself (``tf.cast`` / ``ops.cast`` to the same
dtype, ``convert_to_tensor``, an identity Lambda), which still carries it.  Each model is
built with tf-keras 2.21 (saved ``.h5`` and ``.keras``) and Keras 3.15 on the torch
backend (``.keras``), loaded by sepconv in a child process without TensorFlow, and
compared with ``model.predict`` on ids with real padding (float32, 1e-5 of scale).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

from keras import ops  # noqa: E402

import sepconv  # noqa: E402
from keras_files import Cases, call_outputs, check  # noqa: E402

STEPS, VOCAB, DIM = 7, 9, 4

#: output index -> (how the mask crosses, whether it survives)
OUTPUTS = [
    ("cast to the same dtype -> GlobalAveragePooling1D", True),
    ("x * 1.0 -> GlobalAveragePooling1D", False),
    ("relu -> LSTM", False),
    ("convert_to_tensor -> GRU", True),
    ("identity Lambda -> GlobalAveragePooling1D", True),
    ("Lambda t * 2 -> GlobalAveragePooling1D", False),
    ("Lambda t * 2 with mask= -> GlobalAveragePooling1D", True),
    ("cast -> MultiHeadAttention -> GlobalAveragePooling1D", True),
    ("reduce_sum(keepdims) -> LSTM", False),
    ("LSTM(return_sequences) -> x * 2 -> GlobalAveragePooling1D", False),
    ("LSTM(return_sequences) -> cast -> GlobalAveragePooling1D", True),
    ("Masking -> x + x -> LSTM", False),
    ("Masking -> cast -> LSTM", True),
    ("cast -> Lambda identity -> Dense -> cast -> LSTM", True),
]


def _build(K, cast, relu, convert, reduce_sum, name):
    L = K.layers
    ids = K.Input((STEPS,), dtype="int32", name="ids")
    feats = K.Input((STEPS, 3), name="feats")
    e = L.Embedding(VOCAB, DIM, mask_zero=True, name="emb")(ids)
    # (attention has its own embedding: Keras 3.15's MultiHeadAttention removes the mask
    # from its query and value tensor objects, which `cast` hands it, so the other
    # consumers of the same tensor would see a mask or none by the order they run in)
    e2 = L.Embedding(VOCAB, DIM, mask_zero=True, name="emb2")(ids)
    gap = L.GlobalAveragePooling1D
    seq = L.LSTM(3, return_sequences=True, name="seq")(e)
    m = L.Masking(name="masking")(feats)
    outs = [
        gap()(cast(e)),
        gap()(e * 1.0),
        L.LSTM(3)(relu(e)),
        L.GRU(3)(convert(e)),
        gap()(L.Lambda(lambda t: t)(e)),
        gap()(L.Lambda(lambda t: t * 2.0)(e)),
        gap()(L.Lambda(lambda t: t * 2.0, mask=lambda t, mask: mask)(e)),
        gap()(L.MultiHeadAttention(2, 3, name="mha")(cast(e2), cast(e2))),
        L.LSTM(3)(reduce_sum(e)),
        gap()(seq * 2.0),
        gap()(cast(seq)),
        L.LSTM(3)(m + m),
        L.LSTM(3)(cast(m)),
        L.LSTM(3)(cast(L.Dense(5)(L.Lambda(lambda t: t)(cast(e))))),
    ]
    return K.Model([ids, feats], outs, name=name)


def _tf_keras_model():
    return _build(tf_keras, lambda t: tf.cast(t, "float32"), tf.nn.relu,
                  tf.convert_to_tensor, lambda t: tf.reduce_sum(t, -1, keepdims=True),
                  "tk_mask_ops")


def _keras3_model():
    return _build(keras, lambda t: ops.cast(t, "float32"), ops.relu,
                  ops.convert_to_tensor, lambda t: ops.sum(t, -1, keepdims=True),
                  "k3_mask_ops")


def _inputs(seed: int, batch: int = 4):
    """Ids padded with zeros at the end (every row keeps a real step) and features whose
    padded steps are all zero."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, STEPS, batch)
    lengths[0] = STEPS  # one row without padding
    ids = rng.integers(1, VOCAB, (batch, STEPS)).astype(np.int32)
    feats = rng.standard_normal((batch, STEPS, 3)).astype(np.float32)
    for i, n in enumerate(lengths):
        ids[i, n:] = 0
        feats[i, n:] = 0.0
    feats[1, 0] = 0.0  # a masked step inside the sequence
    return [ids, feats]


FILES = ["tk.h5", "tk.keras", "k3.keras"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("mask_ops"))
    cases = Cases(root)
    tf_keras.utils.set_random_seed(5)
    keras.utils.set_random_seed(5)
    x = _inputs(0)
    models = {"tk": _tf_keras_model(), "k3": _keras3_model()}
    expected = {w: call_outputs(m, x) for w, m in models.items()}
    for f in FILES:
        writer = f.split(".")[0]
        path = os.path.join(root, f)
        models[writer].save(path)
        cases.add(f, "model", path, x, expected[writer], unsafe=True)
    return dict(root=root, x=x, models=models, expected=expected, results=cases.run())


@pytest.mark.parametrize("case", FILES)
def test_masks_cross_operation_nodes_as_each_keras_passes_them(saved, case):
    r = saved["results"][case]
    check(r)


@pytest.mark.parametrize("writer", ["tk", "k3"])
def test_the_models_tell_a_kept_mask_from_a_dropped_one(saved, writer):
    """The case cannot pass by accident: with the same numbers in, the outputs whose mask
    survives differ from those whose mask is dropped (the padding is real), and
    ``x * 1.0`` gives the unmasked mean of the padded steps."""
    y = saved["expected"][writer]
    ids = saved["x"][0]
    assert not np.allclose(y[0], y[1], atol=1e-4)
    emb = saved["models"][writer].get_layer("emb").get_weights()[0][ids]
    real = (ids != 0)[..., None]
    np.testing.assert_allclose(y[1], emb.mean(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y[0], (emb * real).sum(1) / real.sum(1), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(y[4], y[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(y[6], 2 * y[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", FILES)
def test_each_output_follows_its_keras(saved, case):
    """Output by output (the message names the crossing): the masks sepconv passes on
    are those Keras passes on."""
    writer = case.split(".")[0]
    model = sepconv.load_keras_model(os.path.join(saved["root"], case), safe_mode=False)
    with torch.no_grad():
        got = model(*[torch.from_numpy(a) for a in saved["x"]])
    for (what, _), g, e in zip(OUTPUTS, got, saved["expected"][writer]):
        scale = max(1.0, float(np.abs(e).max()))
        assert np.abs(g.numpy() - e).max() <= 1e-5 * scale, what
