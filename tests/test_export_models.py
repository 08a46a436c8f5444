"""Production export of whole ported models: ``sepconv.load_keras_model(file)`` then
``torch.export.export`` (static, and a dynamic steps ``Dim`` where the model takes any
length), ``torch.onnx.export(..., dynamo=True)`` run by onnxruntime, ``torch.compile(
fullgraph=True)`` and ``torch.jit.trace``.

One small saved model per family the loader supports, from the model-file tests' own
builders (tf-keras 2.21; Keras 3 for its own layers).  References: Keras' ``predict``
numbers at the saved length (from its inference-mode call, keras_files.call_outputs: no
tf.function traced per model; checked once per model, eager), and sepconv's eager outputs
for every exported program, at the saved length and (dynamic) at other lengths.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

import sepconv  # noqa: E402
import test_audio  # noqa: E402
import test_cudnn  # noqa: E402
import test_group_query_attention as test_gqa  # noqa: E402
import test_model_files_family as family  # noqa: E402
import test_model_files_nested as nested  # noqa: E402
import test_model_files_ops as ops_files  # noqa: E402
import test_model_files_rnn_cells as rnn_cells  # noqa: E402
import test_recurrent  # noqa: E402
import test_resizing  # noqa: E402
from keras_files import call_outputs  # noqa: E402


def _mha_encoder(K):
    """A Transformer encoder block: MultiHeadAttention, residual op nodes (``x + a``),
    LayerNormalization, a feed-forward, over any number of steps."""
    L = K.layers
    x = K.Input((None, 8), name="x")
    a = L.MultiHeadAttention(2, 4, name="att")(x, x)
    h = L.LayerNormalization(epsilon=1e-6, name="ln1")(x + a)
    f = L.Dense(8, name="ff2")(L.Dense(16, activation="gelu", name="ff1")(h))
    out = L.LayerNormalization(epsilon=1e-6, name="ln2")(h + f)
    return K.Model(x, [L.Dense(3, name="head")(tf.reduce_mean(out, axis=1)), out],
                   name="mha_encoder")


def _speech(K):
    rng = np.random.default_rng(3)
    return test_resizing._speech_commands(
        K, np.abs(rng.standard_normal((16, 40, 33, 1))).astype(np.float32))


# name: (builder, Keras, file ending, steps axis of the first input a dynamic Dim
# may take (None: fixed shapes), length the model also runs at)
MODELS = {
    "cnn": (lambda: family.causal_classifier(tf_keras, False), ".h5", 1, 37),
    "wavenet": (lambda: ops_files._tk_wavenet(tf_keras), ".h5", 1, 29),
    "k3_wavenet": (ops_files._k3_wavenet, ".keras", 1, 29),
    "bi_rnn": (lambda: test_recurrent._cnn_lstm(tf_keras, False, steps=8), ".h5", 1, 17),
    "masked_rnn": (lambda: nested._masked(tf_keras), ".h5", 1, 11),
    "rnn_cells": (lambda: rnn_cells._model(tf_keras, steps=4), ".h5", 1, 11),
    "transformer": (lambda: _mha_encoder(tf_keras), ".h5", 1, 13),
    "conv_lstm": (lambda: family.video(tf_keras, False), ".h5", None, None),
    "unet": (lambda: family.unet(tf_keras, False), ".h5", None, None),
    "cudnn": (lambda: test_cudnn._models(cudnn=True), ".h5", 1, 13),
    "speech": (lambda: _speech(tf_keras), ".h5", None, None),
    "k3_mel": (lambda: test_audio._mel_model(keras), ".keras", None, None),
    "k3_gqa": (lambda: test_gqa._causal_stack(keras, "gqa"), ".keras", 1, 15),
}


SLOW_TO_INDUCT = ("bi_rnn", "masked_rnn", "rnn_cells", "cudnn", "conv_lstm")


def _inputs(model, seed, steps=None):
    rng = np.random.default_rng(seed)
    xs = []
    for i, t in enumerate(model.inputs):
        shape = [2] + [s if s is not None else 12 for s in tuple(t.shape)[1:]]
        if steps is not None and i == 0:
            shape[1] = steps
        if "int" in str(getattr(t.dtype, "name", t.dtype)):
            ids = rng.integers(1, 10, shape)
            ids[0, shape[1] // 2:] = 0  # padding: masked steps
            xs.append(ids.astype(np.int32))
        else:
            xs.append(rng.standard_normal(shape).astype(np.float32))
    return xs


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """name -> (file, inputs, predict outputs, inputs at another length or None)."""
    root = tmp_path_factory.mktemp("export_models")
    made = {}
    for name, (build, ext, axis, other) in MODELS.items():
        K = keras if name.startswith("k3_") else tf_keras
        K.utils.set_random_seed(5)
        model = build()
        family._randomize(model, 7)
        x = _inputs(model, 1)
        path = os.path.join(root, name + ext)
        model.save(path)
        if name == "cudnn":  # TensorFlow runs CuDNN layers on GPUs only: the twin
            model = test_cudnn._models(cudnn=False)  # tf-keras converts the weights
            model.load_weights(path)
        y = call_outputs(model, x if len(x) > 1 else x[0])
        longer = _inputs(model, 2, other) if axis is not None else None
        made[name] = (path, x, y, longer)
    return made


def _load(saved, name):
    path, x, y, longer = saved[name]
    model = sepconv.load_keras_model(path)
    return model, [torch.from_numpy(v).long() if v.dtype.kind == "i" else
                   torch.from_numpy(v) for v in x], y, \
        longer and [torch.from_numpy(v).long() if v.dtype.kind == "i" else
                    torch.from_numpy(v) for v in longer]


def _flat(out):
    return [o for o in (out if isinstance(out, (list, tuple)) else [out])]


def _close(got, want, tol=1e-5, what=""):
    got, want = _flat(got), _flat(want)
    assert len(got) == len(want), what
    for g, w in zip(got, want):
        g = g.detach().numpy() if isinstance(g, torch.Tensor) else np.asarray(g)
        w = w.detach().numpy() if isinstance(w, torch.Tensor) else np.asarray(w)
        assert g.shape == w.shape, (what, g.shape, w.shape)
        scale = max(1.0, float(np.max(np.abs(w))) if w.size else 1.0)
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * scale, err_msg=what)


def _dims(model, x, axis):
    """A dynamic steps dimension on ``axis`` of the first input (``Dim.DYNAMIC``: export
    fails if the model specialises it, and infers the range the layers allow; a
    functional model's ``forward(*inputs)`` takes its inputs as one variadic tuple)."""
    steps = torch.export.Dim.DYNAMIC
    dims = tuple({axis: steps} if i == 0 else None for i in range(len(x)))
    return (dims,) if isinstance(model, sepconv.interop.models.KerasFunctional) else dims


def _eager(model, x):
    with torch.no_grad():
        return model(*x)


@pytest.mark.parametrize("name", list(MODELS))
def test_torch_export_matches_keras(saved, name, torch_single_thread):
    """torch.export, static shapes: the program's outputs equal sepconv eager's, which
    equal Keras' ``predict``; where the model takes any length, a dynamic steps Dim too,
    run at another length."""
    model, x, y, longer = _load(saved, name)
    want = _eager(model, x)
    _close(want, y, what="eager vs Keras")
    program = torch.export.export(model, tuple(x))
    _close(program.module()(*x), want, what="torch.export")
    if longer is None:
        return
    axis = MODELS[name][2]
    program = torch.export.export(model, tuple(x), dynamic_shapes=_dims(model, x, axis))
    _close(program.module()(*longer), _eager(model, longer), what="dynamic torch.export")
    _close(program.module()(*x), want, what="dynamic torch.export, saved length")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_runs_in_onnxruntime(saved, name, torch_single_thread):
    """torch.onnx.export(dynamo=True), run by onnxruntime: Keras' outputs (dynamic steps
    where the model takes any length, run at another length too)."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model, x, y, longer = _load(saved, name)
    axis = MODELS[name][2]
    dims = None
    if longer is not None:
        dims = _dims(model, x, axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, tuple(x), dynamo=True, verbose=False,
                                    dynamic_shapes=dims)
    session = ort.InferenceSession(program.model_proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    _close(session.run(None, dict(zip(names, [v.numpy() for v in x]))), y, tol=1e-4,
           what="onnxruntime vs Keras")
    if longer is not None:
        _close(session.run(None, dict(zip(names, [v.numpy() for v in longer]))),
               _eager(model, longer), tol=1e-4, what="onnxruntime, another length")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_compile_fullgraph_and_jit_trace(saved, name, torch_single_thread):
    """torch.compile(fullgraph=True) and torch.jit.trace give sepconv eager's outputs
    (Inductor for the convolutional models; the recurrent ones, whose step loops
    Inductor takes minutes over on two cores, through AOTAutograd's eager backend: the
    same one whole graph from Dynamo, the same decomposed ops)."""
    model, x, y, _ = _load(saved, name)
    want = _eager(model, x)
    torch._dynamo.reset()
    backend = "aot_eager" if name in SLOW_TO_INDUCT else "inductor"
    with torch.no_grad():
        _close(torch.compile(model, fullgraph=True, backend=backend)(*x), want,
               what="torch.compile")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, tuple(x))  # (several outputs: a tuple)
    with torch.no_grad():
        _close(traced(*x), want, what="torch.jit.trace")


@pytest.mark.slow
def test_operation_node_families_export_with_a_dynamic_batch(tmp_path, torch_single_thread):
    """Every family of TensorFlow functions / Keras 3 operations the loader runs
    (tests/test_model_files_ops.py, ``tf.reshape(x, [tf.shape(x)[0], -1])`` included):
    torch.export with a dynamic batch, Keras' outputs, and another batch size."""
    failures = []
    for stem, model in ops_files._models().items():
        path = str(tmp_path / (stem + (".keras" if stem.startswith("k3_") else ".h5")))
        model.save(path)
        x = ops_files._inputs(model, 1)
        y = call_outputs(model, x if len(x) > 1 else x[0])
        loaded = sepconv.load_keras_model(path).eval()
        xs = [torch.from_numpy(v) for v in x]
        try:
            program = torch.export.export(loaded, tuple(xs), dynamic_shapes=(
                tuple({0: torch.export.Dim.DYNAMIC} for _ in xs),))
            _close(program.module()(*xs), y, what=stem)
            x5 = [torch.cat([v, v[:2]]) for v in xs]
            _close(program.module()(*x5), _eager(loaded, x5), what=stem + " batch 5")
        except Exception as err:  # every family is reported, not only the first
            failures.append(f"{stem}: {type(err).__name__}: {str(err)[:300]}")
    assert not failures, "\n".join(failures)


# -- python -m sepconv convert MODEL OUT.pt2 / OUT.onnx --------------------------------------

def _convert(capsys, *argv):
    from sepconv import cli
    capsys.readouterr()  # (what came before: Keras' warnings)
    rc = cli.main(["convert", *[str(a) for a in argv]])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_convert_to_pt2_defaults_to_the_models_free_axes(saved, tmp_path, capsys):
    """Without --input-shape: the model's input shape, its free batch dynamic; the
    program runs at another batch size with Keras' outputs."""
    path, x, y, _ = saved["cnn"]
    out = tmp_path / "cnn.pt2"
    rc, text, err = _convert(capsys, path, out)
    assert rc == 0, err
    assert "(2, 32, 4)" in text and "dynamic axes [0]" in text, text
    program = torch.export.load(str(out))
    _close(program.module()(torch.from_numpy(x[0])), y, what=".pt2 vs Keras")
    x3 = torch.randn(3, 32, 4)
    model = sepconv.load_keras_model(path)
    _close(program.module()(x3), _eager(model, [x3]), what=".pt2 at batch 3")


@pytest.mark.slow
def test_convert_to_onnx_with_shape_and_dynamic_steps(saved, tmp_path, capsys):
    """--input-shape 1,8,3 --dynamic 1 on the bidirectional recurrent model: one ONNX
    Scan per recurrence, run by onnxruntime at other lengths with sepconv's outputs."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    path = saved["bi_rnn"][0]
    out = tmp_path / "bi.onnx"
    rc, text, err = _convert(capsys, path, out, "--input-shape", "1,8,3", "--dynamic", "1")
    assert rc == 0, err
    assert "(1, 8, 3)" in text and "dynamic axes [1]" in text, text
    kinds = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "Scan" in kinds or "Loop" in kinds, kinds
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    model = sepconv.load_keras_model(path)
    for steps in (5, 40):
        x = torch.randn(1, steps, 3)
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        _close(got, _eager(model, [x]), tol=1e-4, what=f"onnxruntime, {steps} steps")


def test_convert_refuses_what_cannot_export_in_one_line(saved, tmp_path, capsys):
    """Text inputs and stateful layers: exit status 2, one line naming the input or
    layer; a wrong --input-shape, --dynamic axis or ending likewise."""
    L = tf_keras.layers
    text = tf_keras.Sequential([tf_keras.Input((1,), dtype="string", name="words"),
                                L.StringLookup(vocabulary=["a", "b"], name="lookup"),
                                L.Embedding(4, 2, name="emb"), L.Flatten(name="flat")])
    text_path = tmp_path / "text.keras"
    text.save(text_path)
    stateful = tf_keras.Sequential([L.LSTM(3, stateful=True, batch_input_shape=(2, None, 4),
                                           name="memory")])
    stateful_path = tmp_path / "stateful.h5"
    stateful.save(stateful_path)
    cnn = saved["cnn"][0]
    cases = [((text_path, tmp_path / "t.onnx"), ("'words'", "text", "StringLookup")),
             ((stateful_path, tmp_path / "s.pt2"), ("'memory'", "stateful", "initial_state")),
             ((cnn, tmp_path / "c.pt2", "--input-shape", "2,30,4"),
              ("(2, 30, 4)", "(None, 32, 4)")),
             ((cnn, tmp_path / "c.pt2", "--input-shape", "2,x"), ("--input-shape", "'2,x'")),
             ((cnn, tmp_path / "c.pt2", "--dynamic", "5"), ("axis 5",)),
             ((cnn, tmp_path / "c.tflite"), (".pt2", ".onnx"))]
    for argv, pieces in cases:
        rc, _, err = _convert(capsys, *argv)
        assert rc == 2, (argv, err)
        assert err.count("\n") == 1 and all(p in err for p in pieces), (argv, err)
    # the user's own torch.export call names the stateful layer too
    with pytest.raises(ValueError, match="'memory'.*stateful"):
        torch.export.export(sepconv.load_keras_model(stateful_path).eval(),
                            (torch.randn(2, 5, 4),))


def test_custom_cell_exports_at_a_fixed_length_and_refuses_a_dynamic_one(torch_single_thread):
    """RNN over a user's cell runs it step by step in Python: torch.export unrolls it at
    a fixed length (eager's outputs); a dynamic one is refused naming the layer."""
    from test_rnn_cells import _UserCell
    torch.manual_seed(0)
    model = torch.nn.Sequential(sepconv.RNN(_UserCell(sepconv.GRUCell(3)), name="custom",
                                            return_sequences=True)).eval()
    x = torch.randn(2, 6, 4)
    want = _eager(model, [x])
    _close(torch.export.export(model, (x,)).module()(x), want, what="fixed length")
    with pytest.raises(ValueError, match="'custom' runs its cell .*_UserCell.*fixed"):
        torch.export.export(model, (x,), dynamic_shapes=({1: torch.export.Dim.DYNAMIC},))
