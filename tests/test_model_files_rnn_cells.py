"""Model files holding Keras' generic ``RNN`` over cells: ``RNN(LSTMCell)``,
``RNN(StackedRNNCells([GRUCell, LSTMCell]))`` (and a stack whose classes are not in
alphabetical order, which Keras v3 weight files keep by class name),
``Bidirectional(RNN(GRUCell))``, fed by ``Embedding(mask_zero=True)`` (masks), written by
tf-keras 2.21 (``.h5``, ``.keras``) and Keras 3 (``.keras``), loaded by sepconv in a
process without TensorFlow: the outputs equal ``model.predict``.  Then
``save_keras_model`` writes them back: tf-keras reads the ``.h5``, Keras 3 the ``.keras``,
both to the same outputs (sepconv reads its own files back too)."""

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


def _model(K, steps=7):
    """(``steps``: tests/test_export_models.py takes 4, its static export and
    torch.compile unroll every recurrence over them.)"""
    L = K.layers
    ids = K.Input((steps,), dtype="int32", name="ids")
    e = L.Embedding(10, 4, mask_zero=True, name="emb")(ids)
    a = L.RNN(L.LSTMCell(3, name="l"), name="rnn_lstm")(e)
    b = L.RNN(L.StackedRNNCells([L.GRUCell(3, name="g1"), L.LSTMCell(2, name="l1")],
                                name="stack"), return_sequences=True, name="rnn_stack")(e)
    b = L.Bidirectional(L.RNN(L.GRUCell(2, name="g2"), name="rnn_gru"), name="bi")(b)
    c = L.RNN([L.LSTMCell(2, name="l3"), L.SimpleRNNCell(3, name="s3"),
               L.GRUCell(2, reset_after=False, name="g3")], go_backwards=True,
              name="rnn_unsorted")(e)
    # return_state over a stack: tf-keras returns [output, h_gru, [h_lstm, c_lstm]]
    d, h_gru, lstm_states = L.RNN([L.GRUCell(2, name="g4"), L.LSTMCell(3, name="l4")],
                                  return_state=True, name="rnn_states")(e)
    c_lstm = lstm_states[1]
    return K.Model(ids, [a, b, c, L.Concatenate(name="cat")([d, h_gru, c_lstm])],
                   name="cells")


def _ids():
    ids = np.random.default_rng(0).integers(1, 10, (3, 7))
    ids[0, 4:] = 0
    ids[1, 2:] = 0
    return ids.astype(np.int32)


WRITERS = {"tk": (tf_keras, (".h5", ".keras")), "k3": (keras, (".keras",))}
FILES = [f"{w}{ext}" for w, (_, exts) in WRITERS.items() for ext in exts]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("rnn_cell_files"))
    files = {}
    for writer, (K, exts) in WRITERS.items():
        K.utils.set_random_seed(7)
        model = _model(K)
        # non-trivial biases (Keras initialises them to zeros / ones)
        rng = np.random.default_rng(1)
        model.set_weights([w + 0.3 * rng.standard_normal(w.shape).astype(w.dtype)
                           for w in model.get_weights()])
        y = call_outputs(model, _ids())
        for ext in exts:
            path = os.path.join(root, f"{writer}{ext}")
            model.save(path)
            files[f"{writer}{ext}"] = (path, y)
    return root, files


@pytest.fixture(scope="module")
def results(saved):
    root, files = saved
    cases = Cases(root)
    for name, (path, y) in files.items():
        cases.add(name, "model", path, [_ids()], y, finetune=True)
    return cases.run()


@pytest.mark.parametrize("case", FILES)
def test_rnn_cell_models_load_with_their_outputs(results, case):
    r = results[case]
    check(r)
    assert r["finetuned"]


# (Keras 3's own model records a NotEqual op node for the Embedding's mask, a Keras 3
# operation that save_keras_model writes to .keras only)
@pytest.mark.parametrize("case", ["tk.h5", "tk.keras", "k3.keras"])
def test_written_back_files_read_by_keras_give_the_same_outputs(saved, tmp_path, case):
    _, files = saved
    path, y = files[case]
    model = sepconv.load_keras_model(path)
    with torch.no_grad():
        ours = [o.numpy() for o in model(torch.from_numpy(_ids()))]
    for o, e in zip(ours, y):
        np.testing.assert_allclose(o, e, atol=1e-5)
    stack = model.rnn_stack.cell
    assert isinstance(stack, sepconv.StackedRNNCells)
    assert [type(c).__name__ for c in stack.cells] == ["GRUCell", "LSTMCell"]
    for ext, K in ((".h5", tf_keras), (".keras", keras))[case.startswith("k3"):]:
        out = str(tmp_path / f"back{ext}")
        sepconv.save_keras_model(model, out)
        back = K.models.load_model(out)
        got = call_outputs(back, _ids())
        assert len(got) == len(y)
        for o, e in zip(got, y):
            np.testing.assert_allclose(o, e, atol=1e-5)
        assert [c.name for c in back.get_layer("rnn_unsorted").cell.cells] == \
            ["l3", "s3", "g3"]
        again = sepconv.load_keras_model(out)  # and sepconv reads its own file
        with torch.no_grad():
            for o, e in zip(again(torch.from_numpy(_ids())), y):
                np.testing.assert_allclose(o.numpy(), e, atol=1e-5)
