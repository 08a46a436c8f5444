"""``Lambda``: the layer (a torch callable) against tf-keras 2.21's, and the Lambda layers of
model files.

tf-keras and Keras 3 models full of the common lambdas (expand_dims, squeeze, mean / sum
over an axis, ``x[:, -1]``, concatenating a list input, arithmetic with constants,
``K.l2_normalize``, a closure over a constant, ``arguments=``, a named function) are saved
(tf-keras ``.h5`` and ``.keras``, Keras 3 ``.keras``), then loaded in the TF-free child
(tests/keras_files.py) with ``safe_mode=False`` and compared with Keras' ``predict``; named
functions and layers come from tests/lambda_functions.py as ``custom_objects``.  The
refusals (safe mode, unknown functions and names, bytecode of another Python, saving) are
checked for their messages.
"""

from __future__ import annotations

import base64
import json
import marshal
import os

import numpy as np
import pytest
import torch

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

import sepconv  # noqa: E402
from sepconv.interop import KerasFileError  # noqa: E402
from keras_files import Cases, check, outputs  # noqa: E402
from tf_keras_compare import check_signature  # noqa: E402

K = tf_keras.backend  # what tf-keras users write: from tensorflow.keras import backend as K
ops = keras.ops


# -- the layer -------------------------------------------------------------------------
def test_signature_is_tf_keras_then_r_keras_extras():
    """tf-keras' arguments, then the common ones; R's ``layer_lambda`` names the function
    ``f`` (R keras 2 and keras3 do) and takes R's doubles in ``output_shape``."""
    import inspect
    r_params = inspect.signature(sepconv.layer_lambda).parameters
    assert list(r_params)[:2] == ["object", "f"]

    def renamed(object=None, function=None, **kw):
        return sepconv.layer_lambda(object, function, **kw)
    renamed.__signature__ = inspect.Signature(
        [p.replace(name="function") if p.name == "f" else p for p in r_params.values()])
    check_signature(sepconv.Lambda, tf_keras.layers.Lambda, renamed, required=1)
    layer = sepconv.layer_lambda(f=lambda x: x[:, :2], output_shape=[2.0],
                                 input_shape=[3.0])
    assert layer.compute_output_shape((None, 3)) == (None, 2)
    model = sepconv.layer_lambda(torch.nn.Sequential(), lambda x: x * 2)
    assert isinstance(model[0], sepconv.Lambda)
    np.testing.assert_array_equal(sepconv.layer_lambda(np.ones((1, 2)), lambda x: x * 2),
                                  [[2.0, 2.0]])
    with pytest.raises(TypeError, match="output_shape"):
        sepconv.layer_lambda(f=lambda x: x, output_shape=[2.5])


def test_forward_and_gradients_equal_tf_keras(torch_single_thread):
    """The same function written for each library, ``arguments`` as keywords; a float64
    input to a float32 layer is cast first in both (Keras' autocast)."""
    x = np.random.default_rng(0).standard_normal((3, 5, 4))
    ours = sepconv.Lambda(lambda t, k, shift=0.0: torch.tanh(t).mean(dim=1) * k + shift,
                          arguments={"k": 2.5, "shift": -1.0})
    theirs = tf_keras.layers.Lambda(
        lambda t, k, shift=0.0: tf.reduce_mean(tf.tanh(t), axis=1) * k + shift,
        arguments={"k": 2.5, "shift": -1.0})
    xt = torch.tensor(x, requires_grad=True)
    y = ours(xt)
    xv = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xv)
        want = theirs(xv)
        loss = tf.reduce_sum(want * want)
    assert y.dtype == torch.float32 and want.dtype == tf.float32
    np.testing.assert_allclose(y.detach().numpy(), want.numpy(), rtol=0, atol=1e-6)
    (y * y).sum().backward()
    np.testing.assert_allclose(xt.grad.numpy(), tape.gradient(loss, xv).numpy(),
                               rtol=0, atol=1e-5)
    # float64 layers keep float64, as tf-keras' do
    y64 = sepconv.Lambda(lambda t: t * 2, dtype="float64")(torch.ones(2, dtype=torch.float32))
    assert y64.dtype == torch.float64
    assert sepconv.Lambda(lambda t: t + 1)(torch.ones(2, dtype=torch.int32)).dtype == \
        torch.int32  # integers are not cast


@pytest.mark.parametrize("output_shape", [None, (3, 1), [(4,), (2, 2)], "callable"])
def test_compute_output_shape_as_tf_keras(output_shape):
    """Given (with the input's batch), a list of shapes, a callable, or found by running
    the function (an axis that follows the unknown batch stays unknown)."""
    multi = isinstance(output_shape, list)
    shape = lambda s: (s[0], s[2], 1)  # noqa: E731
    arg = shape if output_shape == "callable" else output_shape
    fns = (lambda t: [t[:, 0], t[:, :2, :2]], lambda t: [t[:, 0], t[:, :2, :2]]) if multi \
        else (lambda t: t.mean(dim=1).unsqueeze(-1),
              lambda t: tf.expand_dims(tf.reduce_mean(t, axis=1), -1))
    ours = sepconv.Lambda(fns[0], output_shape=arg)
    theirs = tf_keras.layers.Lambda(fns[1], output_shape=arg)
    for batch in (None, 7):
        got = ours.compute_output_shape((batch, 5, 3))
        want = theirs.compute_output_shape((batch, 5, 3))
        want = [tuple(w) for w in want] if multi else tuple(want)
        assert got == want


def test_mask_and_training_reach_the_function_as_in_keras():
    """``mask=`` and ``training=`` go to a function that names them; ``compute_mask``
    follows the ``mask`` argument (callable or fixed), as in tf-keras."""
    seen = {}

    def fn(x, mask=None, training=None):
        seen.update(mask=mask, training=training)
        return x

    layer = sepconv.Lambda(fn, mask=lambda inputs, mask: mask[:, :1])
    m = torch.tensor([[True, False]])
    layer(torch.ones(1, 2), mask=m)
    assert seen["mask"] is m and seen["training"] is True
    layer.eval()
    layer(torch.ones(1, 2))
    assert seen["training"] is False
    theirs = tf_keras.layers.Lambda(lambda x: x, mask=lambda inputs, mask: mask[:, :1])
    np.testing.assert_array_equal(layer.compute_mask(None, m).numpy(),
                                  theirs.compute_mask(None, tf.constant(m.numpy())).numpy())
    assert layer.supports_masking and theirs.supports_masking
    plain = sepconv.Lambda(lambda x: x)
    assert not plain.supports_masking and plain.compute_mask(None, m) is None


def test_model_masks_reach_a_lambda_in_a_sequential():
    """In a model, the mask of ``Masking`` reaches the Lambda's function only where the
    layer supports masking (it has ``mask``), as in tf-keras."""
    x = np.array([[[1.0, 2.0], [0.0, 0.0], [3.0, 1.0]]], dtype=np.float32)
    theirs = tf_keras.Sequential([
        tf_keras.layers.Masking(0.0, input_shape=(3, 2)),
        tf_keras.layers.Lambda(lambda t, mask=None: t * tf.cast(mask, t.dtype)[..., None]
                               + 1.0, mask=lambda i, m: m),
        tf_keras.layers.LSTM(3)])
    ours = sepconv.Sequential(
        sepconv.Masking(0.0, input_shape=(3, 2)),
        sepconv.Lambda(lambda t, mask=None: t * mask.to(t.dtype)[..., None] + 1.0,
                       mask=lambda i, m: m),
        sepconv.LSTM(3))
    ours[2].set_weights(theirs.layers[2].get_weights())
    with torch.no_grad():
        got = ours(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, theirs(x).numpy(), rtol=0, atol=1e-6)


def test_config_round_trip_and_refusals():
    fn = lambda t, k: t * k  # noqa: E731
    layer = sepconv.Lambda(fn, output_shape=[3, None], arguments={"k": 2.0}, name="twice")
    config = layer.get_config()
    assert {"name", "trainable", "dtype", "function", "output_shape", "arguments"} <= \
        set(config) <= set(tf_keras.layers.Lambda(fn).get_config()) | {"mask"}
    again = sepconv.Lambda.from_config(config)
    assert again.function is fn and again.arguments == {"k": 2.0}
    assert again.compute_output_shape((None, 4)) == (None, 3, None)
    with pytest.raises(TypeError, match="argument `function`.*Received function=3"):
        sepconv.Lambda(3)
    with pytest.raises(TypeError, match="argument `arguments`"):
        sepconv.Lambda(fn, arguments=[2.0])
    with pytest.raises(TypeError, match="argument `output_shape`"):
        sepconv.Lambda(fn, output_shape="3")
    with pytest.raises(TypeError, match="argument `output_shape`"):
        sepconv.Lambda(fn, output_shape=(2.5,))
    assert "function=<lambda>, arguments={'k': 2.0}, name='twice'" in repr(layer)
    model = torch.nn.Sequential(sepconv.Dense(2, input_shape=(3,)), layer)
    for ext in (".h5", ".keras"):
        with pytest.raises(ValueError, match="'twice' \\(Lambda\\) computes a torch "
                           "callable, which a Keras file cannot hold"):
            sepconv.save_keras_model(model, f"never{ext}")
        assert not os.path.exists(f"never{ext}")


# -- model files ------------------------------------------------------------------------
def _closure(k):
    return lambda t: t * k + k


def antirectifier(x):
    """tf-keras' documentation example of a Lambda function."""
    x -= K.mean(x, axis=1, keepdims=True)
    x = K.l2_normalize(x, axis=1)
    pos = K.relu(x)
    neg = K.relu(-x)
    return K.concatenate([pos, neg], axis=1)


def sub_mean(t):
    """Augmented assignment: on TensorFlow's immutable tensors a new tensor (on torch it
    would change the input, which another layer reads too)."""
    t -= K.mean(t, axis=1, keepdims=True)
    t *= 2.0
    return t


def lgamma_of_square(x):  # noqa: F811 - tf-keras' twin of lambda_functions.py's
    return tf.math.lgamma(x * x + 1.0)


def _tf_keras_model():
    L = tf_keras.layers
    x = L.Input((5, 3))
    h = L.Dense(4)(x)
    e = L.Lambda(lambda t: tf.expand_dims(t, -1), name="expand")(h)
    s = L.Lambda(lambda t: K.squeeze(t, axis=-1), name="squeeze")(e)
    mean = L.Lambda(lambda t: K.mean(t, axis=1), name="mean")(s)
    total = L.Lambda(lambda t: tf.reduce_sum(t, axis=1, keepdims=True), name="sum")(s)
    last = L.Lambda(lambda t: t[:, -1], name="last")(h)
    both = L.Lambda(lambda xs: K.concatenate(xs, axis=-1), name="concat")([mean, last])
    arith = L.Lambda(lambda t: 2.0 * t - 1.5 / (1.0 + t ** 2), name="arith")(both)
    l2 = L.Lambda(lambda t: K.l2_normalize(t, axis=-1), name="l2")(arith)
    closed = L.Lambda(_closure(0.5), name="closure")(l2)
    powered = L.Lambda(lambda t, power: tf.pow(tf.abs(t) + 1.0, power),
                       arguments={"power": 1.5}, name="arguments")(closed)
    anti = L.Lambda(antirectifier, name="antirectifier")(powered)
    soft = L.Lambda(lambda t: tf.nn.softmax(t, axis=-1) + tf.math.reduce_max(t),
                    name="softmax")(anti)
    named = L.Lambda(lgamma_of_square, name="named")(soft)
    flat = L.Lambda(lambda t: tf.reshape(t, (-1, 5 * 4)), name="reshape")(s)
    relu = L.Lambda(tf.nn.relu, name="tf_relu")(flat)  # TensorFlow's own function
    centred = L.Lambda(sub_mean, name="centred")(h)
    shared = L.Lambda(lambda ab: ab[0] + ab[1], name="shared")([centred, h])
    spread = L.Lambda(lambda t: tf.broadcast_to(K.mean(t, axis=1, keepdims=True),
                                                tf.shape(t)) - t, name="broadcast")(h)
    return tf_keras.Model(x, [named, relu, total, shared, spread])


def _tf_keras_sequential():
    """A Lambda first, with the model's input shape."""
    return tf_keras.Sequential([
        tf_keras.layers.Lambda(lambda t: K.expand_dims(t[:, :, 0] * 2.0), input_shape=(5, 3)),
        tf_keras.layers.Dense(2)])


def rescale(x, factor=3.0):
    return x * factor - 1.0


def _keras3_model():
    L = keras.layers
    x = L.Input((5, 3))
    h = L.Dense(4)(x)
    e = L.Lambda(lambda t: ops.expand_dims(t, -1), name="expand")(h)
    s = L.Lambda(lambda t: keras.ops.squeeze(t, axis=-1), name="squeeze")(e)
    mean = L.Lambda(lambda t: ops.mean(t, axis=1), name="mean")(s)
    total = L.Lambda(lambda t: ops.sum(t, 1, keepdims=True), name="sum")(s)
    last = L.Lambda(lambda t: t[:, -1], name="last")(h)
    both = L.Lambda(lambda xs: ops.concatenate(xs, axis=-1), name="concat")([mean, last])
    arith = L.Lambda(lambda t: 2.0 * t - 1.5 / (1.0 + t ** 2), name="arith")(both)
    l2 = L.Lambda(lambda t: t / ops.sqrt(ops.sum(ops.square(t), axis=-1, keepdims=True)),
                  name="l2")(arith)
    closed = L.Lambda(_closure(0.5), name="closure")(l2)
    powered = L.Lambda(lambda t, power: ops.power(ops.abs(t) + 1.0, power),
                       arguments={"power": 1.5}, name="arguments")(closed)
    named = L.Lambda(rescale, name="named")(powered)
    soft = L.Lambda(lambda t: ops.softmax(t) * keras.ops.max(t, axis=-1, keepdims=True),
                    name="softmax")(named)
    # a sequence model's: causal padding, einsum (subscripts first), top-k, cumulative sums
    seq = L.Lambda(lambda t: ops.einsum("bij->bji", ops.pad(t, ((0, 0), (2, 0), (0, 0)),
                                                              constant_values=0.5)),
                   name="pad_einsum")(h)
    top = L.Lambda(lambda t: ops.top_k(ops.cumsum(t, axis=1), 2)[0] + ops.roll(t, 1, 1)[
        ..., :2], name="topk_cumsum")(h)
    # broadcasts and gathers (ops.shape is the run's concrete sizes)
    spread = L.Lambda(lambda t: ops.broadcast_to(
        ops.mean(t, axis=1, keepdims=True), ops.shape(t)) - ops.take(
            t, [3, -4], axis=2)[..., :1] + ops.stop_gradient(t), name="broadcast_take")(h)
    return keras.Model(x, [soft, total, seq, top, spread])


def _by_layer_name():
    """One Lambda sepconv cannot run (tf.math.lgamma): given by its layer's name."""
    x = tf_keras.layers.Input((3,))
    y = tf_keras.layers.Lambda(lambda t: tf.math.lgamma(t * t + 1.0), name="lgamma_layer")(
        tf_keras.layers.Dense(3)(x))
    return tf_keras.Model(x, y)


# ("tk": tf-keras' SavedModel directory, model.save(path, save_format="tf"))
FILES = ["tk.h5", "tk.keras", "tk", "k3.keras", "k3.h5", "tk_seq.h5", "tk_seq.keras"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("lambda_files"))
    cases = Cases(root)
    x = np.random.default_rng(3).standard_normal((4, 5, 3)).astype(np.float32)
    models = {}
    for writer, build, exts in (("tk", _tf_keras_model, (".h5", ".keras", "")),
                                ("k3", _keras3_model, (".keras", ".h5")),
                                ("tk_seq", _tf_keras_sequential, (".h5", ".keras"))):
        (keras if writer == "k3" else tf_keras).utils.set_random_seed(5)
        model = models[writer] = build()
        y = outputs(model.predict(x, verbose=0))
        for ext in exts:
            path = os.path.join(root, f"{writer}{ext}")
            model.save(path, **({} if ext else {"save_format": "tf"}))
            cases.add(f"{writer}{ext}", "model", path, [x], y, unsafe=True,
                      custom="lambda_functions")
            if writer != "tk_seq":
                cases.add(f"{writer}{ext}_safe", "error", path)
    cases.add("tk.h5_convert", "model", os.path.join(root, "tk.h5"), [x],
              outputs(models["tk"].predict(x, verbose=0)), unsafe=True,
              custom="lambda_functions", convert=os.path.join(root, "tk.pt"),
              convert_args=["--unsafe", "--custom", "lambda_functions"])
    cases.add("k3_named_missing", "error", os.path.join(root, "k3.keras"), unsafe=True)
    inp = keras.layers.Input((5, 3))  # a named function alone: no bytecode in the file
    only_named = keras.Model(inp, keras.layers.Lambda(rescale, name="named")(inp))
    path = os.path.join(root, "k3_named.keras")
    only_named.save(path)
    cases.add("k3_named_safe", "model", path, [x], outputs(only_named.predict(x, verbose=0)),
              custom="lambda_functions")
    by_name = _by_layer_name()
    x2 = np.random.default_rng(4).standard_normal((4, 3)).astype(np.float32)
    path = os.path.join(root, "by_name.h5")
    by_name.save(path)
    cases.add("by_name_safe", "model", path, [x2], outputs(by_name.predict(x2, verbose=0)),
              custom="lambda_functions")
    cases.add("by_name_unsupported", "error", path, unsafe=True)
    return root, models, x, cases.run()


@pytest.mark.parametrize("case", FILES + ["tk.h5_convert"])
def test_lambda_models_load_with_safe_mode_false_and_equal_predict(saved, case):
    r = saved[3][case]
    check(r)
    if case.endswith("_convert"):
        assert r["convert_rc"] == 0 and r["convert_err"] <= 1e-5


@pytest.mark.parametrize("case", FILES[:5])
def test_by_default_bytecode_is_refused_saying_why_and_how(saved, case):
    r = saved[3][f"{case}_safe"]
    assert "crash" not in r, r.get("crash")
    assert r["error_type"] == "KerasFileError"
    assert "Layer 'expand' (Lambda): its function is Python bytecode, and loading it runs " \
        "code from the file" in r["error"]
    assert "pass safe_mode=False to load_keras_model (command line: --unsafe)" in r["error"]
    assert "custom_objects={'expand': torch_fn}" in r["error"]


def test_a_lambda_layer_is_given_by_its_name_in_safe_mode(saved):
    check(saved[3]["by_name_safe"])


def test_a_keras3_named_function_is_given_by_its_name_in_safe_mode(saved):
    check(saved[3]["k3_named_safe"])


def test_unknown_functions_and_named_functions_are_named(saved):
    r = saved[3]["by_name_unsupported"]
    assert "crash" not in r, r.get("crash")
    assert r["error"] == ("Layer 'lgamma_layer' (Lambda): its function calls "
                          "tf.math.lgamma, which sepconv does not run on torch tensors; "
                          "pass custom_objects={'lgamma_layer': torch_fn} with a torch "
                          "function computing the layer")
    r = saved[3]["k3_named_missing"]
    assert "crash" not in r, r.get("crash")
    assert "Layer 'named' (Lambda): its function is the Python function 'rescale'" in \
        r["error"] and "custom_objects={'rescale': torch_fn}" in r["error"]


def _edit_h5_lambda(src, dst, layer, edit):
    """Copy of the .h5 file ``src`` whose Lambda ``layer``'s config went through
    ``edit``."""
    import h5py
    import shutil
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        for e in config["config"]["layers"]:
            if e["config"]["name"] == layer:
                edit(e["config"])
        f.attrs["model_config"] = json.dumps(config)


def test_names_and_bytecode_the_loader_cannot_run_are_refused_naming_them(saved, tmp_path):
    root = saved[0]
    src = os.path.join(root, "tk.h5")

    def code_of(fn):
        return base64.b64encode(marshal.dumps(fn.__code__)).decode("ascii")

    def use(fn):
        return lambda c: c.update(function=[code_of(fn), None, None])

    cases = {
        "unknown global": (use(lambda t: tf_keras.backend.mean(t)),
                           "Layer 'mean' (Lambda): its function uses the name 'tf_keras', "
                           "which sepconv does not provide"),
        "unknown K": (use(lambda t: K.foldl(t)),
                      "Layer 'mean' (Lambda): its function calls K.foldl, which sepconv "
                      "does not run"),
        "unknown ops": (use(lambda t: keras.ops.nonsense(t)),
                        "Layer 'mean' (Lambda): its function calls keras.ops.nonsense"),
        "unknown module": (use(lambda t: tf.image.resize(t, (2, 2))),
                           "Layer 'mean' (Lambda): its function calls tf.image.resize, "
                           "which sepconv does not run on torch tensors"),
        "garbage": (lambda c: c.update(function=[base64.b64encode(b"\xe3\x01\x02").decode(),
                                                 None, None]),
                    "Layer 'mean' (Lambda): this Python (3."),
        # a code object whose opcodes this Python does not define, as another Python's
        # bytecode unmarshalled here would be
        "other python": (lambda c: c.update(function=[base64.b64encode(marshal.dumps(
            (lambda t: t).__code__).replace(b"|\x00S\x00", b"\x03\x00S\x00")).decode(),
            None, None]), "Layer 'mean' (Lambda): its function's bytecode is not Python 3."),
    }
    for name, (edit, message) in cases.items():
        path = str(tmp_path / f"{name.replace(' ', '_')}.h5")
        _edit_h5_lambda(src, path, "mean", edit)
        with pytest.raises(KerasFileError) as err:
            sepconv.load_keras_model(path, safe_mode=False)
        assert message in str(err.value), (name, str(err.value))
        if name in ("garbage", "other python"):
            assert "saved by another Python version" in str(err.value)
    with pytest.raises(TypeError, match="safe_mode"):
        sepconv.load_keras_model(src, safe_mode="no")
    # Lambda(tf.nn.l2_normalize): tf-keras' .h5 holds TensorFlow's dispatch wrapper
    x = tf_keras.Input((3,))
    path = str(tmp_path / "tf_function.h5")
    tf_keras.Model(x, tf_keras.layers.Lambda(tf.nn.l2_normalize, name="l2n")(x)).save(path)
    with pytest.raises(KerasFileError, match="Layer 'l2n' \\(Lambda\\): its function is "
                       "tensorflow.python.ops.nn_impl's own 'error_handler'"):
        sepconv.load_keras_model(path, safe_mode=False)


def test_numpy_is_for_constants_only():
    from sepconv.interop.lambdas import LambdaFunctionError, namespace
    np_ = namespace("layer_x")["np"]
    assert np_.pi == np.pi and np_.float32(2.0) == 2.0 and np_.sqrt(4.0) == 2.0
    with pytest.raises(LambdaFunctionError, match="Layer 'layer_x' \\(Lambda\\): its "
                       "function calls np.tanh on a tensor"):
        np_.tanh(torch.ones(2))


def test_saved_back_with_the_file_config(saved, tmp_path):
    """A Lambda loaded from a file goes back to the same format with the file's config:
    tf-keras (its own lambdas, run with the globals of the module that wrote them, ours
    here) and Keras 3 read it and compute the same; the other format is refused."""
    root, models, x, _ = saved
    import lambda_functions
    model = sepconv.load_keras_model(os.path.join(root, "tk.h5"), safe_mode=False,
                                     custom_objects=lambda_functions.CUSTOM_OBJECTS)
    sepconv.save_keras_model(model, tmp_path / "back.h5")
    again = tf_keras.models.load_model(tmp_path / "back.h5",
                                       custom_objects={"K": K, "_closure": _closure})
    for got, want in zip(outputs(again.predict(x, verbose=0)),
                         outputs(models["tk"].predict(x, verbose=0))):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="'expand' \\(Lambda\\) came from a tf-keras file"):
        sepconv.save_keras_model(model, tmp_path / "back.keras")
    # Keras 3 runs a reloaded lambda with its own utility module's globals (no `ops`):
    # a model of operators and slicing only goes back and forth
    L = keras.layers
    inp = L.Input((5, 3))
    out = L.Lambda(lambda t: t[:, -1] * 2.0 + 1.0, name="plain")(L.Dense(4)(inp))
    k3 = keras.Model(inp, out)
    k3.save(tmp_path / "k3.keras")
    ours = sepconv.load_keras_model(tmp_path / "k3.keras", safe_mode=False)
    sepconv.save_keras_model(ours, tmp_path / "k3_back.keras")
    back = keras.saving.load_model(tmp_path / "k3_back.keras", safe_mode=False)
    np.testing.assert_allclose(np.asarray(back.predict(x, verbose=0)),
                               np.asarray(k3.predict(x, verbose=0)), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="'plain' \\(Lambda\\) came from a Keras 3 file"):
        sepconv.save_keras_model(ours, tmp_path / "k3_back.h5")
    with torch.no_grad():
        np.testing.assert_allclose(ours(torch.from_numpy(x)).numpy(),
                                   np.asarray(k3.predict(x, verbose=0)), rtol=0, atol=1e-5)


def test_convert_without_unsafe_refuses(saved, tmp_path, capsys):
    from sepconv import cli
    assert cli.main(["convert", os.path.join(saved[0], "tk.h5"),
                     str(tmp_path / "m.pt")]) == 2
    assert "--unsafe" in capsys.readouterr().err


# -- the names Keras code uses, against the real ones -----------------------------------
from hypothesis import given, settings, strategies as st  # noqa: E402

_REDUCTIONS = ("mean", "sum", "max", "min", "prod", "std", "var", "logsumexp")
# Keras 3 ops the backend table does not run (tf-keras' K has some of them)
_OPS_ONLY = ("amax", "argmax", "cumprod", "flip", "normalize", "sort", "argsort")


@st.composite
def _calls(draw):
    """A tensor, a function name and its arguments (positional or by keyword)."""
    rank = draw(st.integers(2, 4))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)))
    axis = draw(st.integers(-rank, rank - 1))
    keepdims = draw(st.booleans())
    name = draw(st.sampled_from(_REDUCTIONS + ("expand_dims", "concatenate", "softmax",
                                               "l2_normalize", "sqrt", "relu", "clip",
                                               "transpose", "square", "cumsum") + _OPS_ONLY))
    seed = draw(st.integers(0, 2 ** 16))
    return shape, axis, keepdims, name, seed, draw(st.booleans())


def _args(name, axis, keepdims, positional, backend):
    """``(args, kwargs)`` of a call after the tensor, as Keras code writes it."""
    if name in _REDUCTIONS + ("amax", "argmax"):
        return ((axis, keepdims), {}) if positional else ((), {"axis": axis,
                                                               "keepdims": keepdims})
    if name in ("expand_dims", "softmax", "l2_normalize", "cumsum") + _OPS_ONLY:
        return ((axis,), {}) if positional else ((), {"axis": axis})
    if name == "relu" and backend:
        return (0.1, 0.8), {}
    if name == "clip":
        return (-0.5, 0.4), {}
    return (), {}


@settings(max_examples=90, deadline=None, derandomize=True)
@given(_calls())
def test_backend_and_ops_functions_equal_tf_keras_and_keras3(call):
    """``K.<f>`` (tf-keras' backend) and ``ops.<f>`` (Keras 3) as a Lambda's bytecode
    finds them: the same numbers as the real functions, K's own defaults (axis -1 for
    ``concatenate`` / ``expand_dims``) and argument order, and Keras 3's static arguments
    given by position or by name."""
    from sepconv.interop.lambdas import namespace
    shape, axis, keepdims, name, seed, positional = call
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    ns = namespace("probe")
    for backend in (True, False):
        fname = "permute_dimensions" if backend and name == "transpose" else name
        if not hasattr(K if backend else keras.ops, fname) or \
                (backend and name in _OPS_ONLY):
            continue  # (Keras 3 has no l2_normalize)
        ours_fn = getattr(ns["K"] if backend else ns["ops"], fname)
        theirs_fn = getattr(K if backend else keras.ops, fname)
        args, kwargs = _args(name, axis, keepdims, positional, backend)
        if name == "concatenate":
            got = ours_fn([torch.from_numpy(x), torch.from_numpy(x * 2)], *args, **kwargs)
            want = theirs_fn([x, x * 2] if not backend else [tf.constant(x),
                                                             tf.constant(x * 2)],
                             *args, **kwargs)
        elif name == "transpose" and backend:
            perm = list(range(len(shape)))[::-1]
            got, want = ours_fn(torch.from_numpy(x), perm), theirs_fn(tf.constant(x), perm)
        else:
            got = ours_fn(torch.from_numpy(x), *args, **kwargs)
            want = theirs_fn(tf.constant(x) if backend else torch.from_numpy(x),
                             *args, **kwargs)
        want = np.asarray(want.cpu() if isinstance(want, torch.Tensor) else want)
        assert tuple(got.shape) == want.shape, (backend, name)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5,
                                   err_msg=f"{'K' if backend else 'ops'}.{name}")


def test_a_file_function_has_tf_keras_gradients(torch_single_thread):
    """tf-keras' documented ``antirectifier`` (K.mean, K.l2_normalize, K.relu,
    K.concatenate) from its bytecode, in float64: gradcheck, and the input gradient equals
    TensorFlow's."""
    from sepconv.interop.lambdas import FileFunction
    text = base64.b64encode(marshal.dumps(antirectifier.__code__)).decode("ascii")
    fn = FileFunction(text, None, None, "anti", {})
    x = np.random.default_rng(9).standard_normal((3, 5))
    xt = torch.tensor(x, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (xt,))
    weights = np.random.default_rng(10).standard_normal((3, 10))
    (fn(xt) * torch.from_numpy(weights)).sum().backward()
    xv = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xv)
        loss = tf.reduce_sum(antirectifier(xv) * weights)
    np.testing.assert_allclose(xt.grad.numpy(), tape.gradient(loss, xv).numpy(),
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(fn(xt).detach().numpy(), antirectifier(xv).numpy(),
                               rtol=1e-12, atol=1e-12)
