"""tf-keras SavedModel directories (``model.save("dir")`` before Keras 3, R keras'
``save_model_tf``), written by tf-keras 2.21 and loaded by sepconv in ONE child process
where TensorFlow and Keras cannot be imported (it reads the LevelDB table, the tensor
bundle and the protocol buffers itself): the outputs equal what ``model.predict`` computes."""

from __future__ import annotations

import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")

import sepconv  # noqa: E402
from keras_files import Cases, call_outputs, check  # noqa: E402
import test_model_files_nested as nested  # noqa: E402
import test_model_files_ops as ops  # noqa: E402

L = tf_keras.layers


def _sequence_stack():
    """The layers a sequence classifier holds, weights of every kind: a causal dilated
    separable convolution, a strided convolution, batch normalisation (moving statistics
    after a step of training), a frozen layer, a bidirectional LSTM and a GRU."""
    m = tf_keras.Sequential([
        L.Input((20, 3)),
        L.SeparableConv1D(6, 3, padding="causal", dilation_rate=2, depth_multiplier=2,
                          activation="relu"),
        L.Conv1D(8, 3, strides=2, padding="same"),
        L.BatchNormalization(),
        L.Dense(8, trainable=False),
        L.Bidirectional(L.LSTM(5, return_sequences=True)),
        L.GRU(4),
        L.Dense(3, activation="softmax")], name="stack")
    m.compile("adam", "mse")  # moving statistics that are not their initial values
    rng = np.random.default_rng(0)
    m.fit(rng.standard_normal((8, 20, 3)), rng.random((8, 3)), epochs=1, verbose=0)
    return m


def _family():
    """ConvLSTM, transposed and depthwise convolutions, an adapted Normalization, PReLU,
    LayerNormalization, in a functional model with two outputs."""
    x = L.Input((5, 8, 2), name="frames")
    h = L.ConvLSTM1D(3, 3, padding="same", return_sequences=False)(x)
    h = L.Conv1DTranspose(4, 3, strides=2)(h)
    h = L.DepthwiseConv1D(3, depth_multiplier=2)(h)
    norm = L.Normalization()
    norm.adapt(np.random.default_rng(1).standard_normal((16, 15, 8)).astype("float32"))
    h = L.PReLU()(norm(h))
    h = L.LayerNormalization()(h)
    return tf_keras.Model(x, [L.GlobalMaxPooling1D()(h), L.Dense(2)(h)], name="family")


MODELS = {"stack": _sequence_stack, "family": _family,
          "transformer": ops._tk_transformer, "wavenet": ops._tk_wavenet,
          **{f"nested_{n}": (lambda b=b: b(tf_keras)) for n, b in nested.MODELS.items()}}


def _inputs(model, seed):
    rng = np.random.default_rng(seed)
    out = []
    for t in model.inputs:
        shape = (3,) + tuple(7 if d is None else d for d in t.shape[1:])
        if t.dtype.is_integer:
            ids = rng.integers(1, 10, shape)
            ids[0, 4:] = 0  # padding for the masks
            out.append(ids.astype(t.dtype.as_numpy_dtype))
        else:
            out.append(rng.standard_normal(shape).astype(np.float32))
    return out


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("saved_models"))
    cases = Cases(root)
    tf_keras.utils.set_random_seed(5)
    for seed, (name, build) in enumerate(MODELS.items()):
        model = build()
        x = _inputs(model, seed)
        y = call_outputs(model, x if len(x) > 1 else x[0])
        path = os.path.join(root, name)
        model.save(path, save_format="tf")
        cases.add(name, "model", path, x, y)
    # what is not a Keras functional / Sequential SavedModel
    module = tf.Module()
    module.v = tf.Variable([1.0, 2.0])
    tf.saved_model.save(module, os.path.join(root, "not_keras"))

    class Sub(tf_keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(2)

        def call(self, x):
            return self.d(x)

    sub = Sub()
    sub(np.zeros((1, 3), np.float32))
    sub.save(os.path.join(root, "subclassed"), save_format="tf")
    for name in ERRORS:
        cases.add(name, "error", os.path.join(root, name))
    return dict(root=root, results=cases.run())


ERRORS = {"not_keras": ["without keras_metadata.pb"],
          "subclassed": ["subclassed", "Sequential and functional"]}


@pytest.mark.parametrize("name", list(MODELS))
def test_saved_model_directories_give_keras_outputs_without_tensorflow(saved, name):
    r = saved["results"][name]
    check(r)


@pytest.mark.parametrize("name", list(ERRORS))
def test_other_saved_models_are_refused_in_one_line(saved, name):
    r = saved["results"][name]
    assert "crash" not in r, r["crash"]
    assert r["error"] is not None and "\n" not in r["error"]
    for piece in ERRORS[name]:
        assert piece in r["error"], (piece, r["error"])


def test_damaged_directories_are_refused_in_one_line(saved, tmp_path):
    """A truncated index, a missing data shard: one ``KerasFileError`` line each."""
    import shutil
    from sepconv.interop.files import KerasFileError
    src = os.path.join(saved["root"], "stack")
    broken = tmp_path / "truncated"
    shutil.copytree(src, broken)
    index = broken / "variables" / "variables.index"
    index.write_bytes(index.read_bytes()[:-20])
    with pytest.raises(KerasFileError, match="truncated or corrupted"):
        sepconv.load_keras_model(broken)
    missing = tmp_path / "missing"
    shutil.copytree(src, missing)
    for f in (missing / "variables").glob("variables.data-*"):
        f.unlink()
    with pytest.raises(KerasFileError, match="variables.data-00000-of-00001 is missing"):
        sepconv.load_keras_model(missing)


def test_the_weights_are_tf_keras_weights_in_get_weights_order(saved):
    """Every layer's arrays, in order, equal tf-keras' own ``get_weights`` after it loads
    the same directory (the bundle's dtypes, shapes and byte order; the order of the
    ``variables`` lists)."""
    from sepconv.interop import files
    for name in ("stack", "family", "transformer"):
        path = os.path.join(saved["root"], name)
        ref = tf_keras.models.load_model(path)
        ours = files.read(path).legacy_weights
        for layer in ref.layers:
            got, want = ours.get(layer.name, []), layer.get_weights()
            assert len(got) == len(want), layer.name
            for g, w in zip(got, want):
                assert g.dtype == w.dtype and g.shape == w.shape
                np.testing.assert_array_equal(g, w)


def test_snappy_blocks_are_read():
    """Snappy's format (literals, the three copy kinds, overlapping copies), against
    blocks written by hand from its specification."""
    from sepconv.interop.saved_model import _snappy
    # "abcabcabcabcX": literal "abc", copy-1 (length 9, offset 3), literal "X"
    data = bytes([13, 2 << 2]) + b"abc" + bytes([((9 - 4) << 2) | 1, 3]) + \
        bytes([0]) + b"X"
    assert _snappy(data) == b"abcabcabcabcX"
    # copy-2 (length 5, offset 2) and copy-4 (length 3, offset 7)
    data = bytes([15, 6 << 2]) + b"0123456" + bytes([(4 << 2) | 2, 2, 0]) + \
        bytes([(2 << 2) | 3, 7, 0, 0, 0])
    assert _snappy(data) == b"0123456" + b"56565" + b"565"
    # a long literal (length in one extra byte)
    text = bytes(range(100))
    assert _snappy(bytes([100, 60 << 2, 99]) + text) == text
    with pytest.raises(ValueError):
        _snappy(bytes([5, 1, 9]))  # a copy before any data


def test_convert_takes_a_saved_model_directory(saved, tmp_path):
    """``python -m sepconv convert DIR OUT.pt``: the written module computes what tf-keras
    computes from the same directory."""
    import torch
    from sepconv import cli
    path = os.path.join(saved["root"], "stack")
    out = tmp_path / "stack.pt"
    assert cli.main(["convert", path, str(out)]) == 0
    module = torch.load(out, weights_only=False)
    ref = tf_keras.models.load_model(path)
    x = _inputs(ref, seed=3)[0]
    want = ref.predict(x, verbose=0)
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), want, rtol=0,
                                   atol=1e-5)
