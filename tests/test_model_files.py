"""Keras model files into sepconv and back (issue 11).

Models are built with tf-keras 2.21 and Keras 3 inside the test run, saved in every format
each writes (``.h5``, ``.keras``, weights ``.h5`` and ``.weights.h5``), and loaded by
sepconv in a child process where TensorFlow and Keras cannot be imported; its outputs are
compared with ``model.predict``.  These models use only ``SeparableConv1D`` (and ``Add``,
with a test-local stand-in in the child until the family's ``Add`` exists); the issue's
models over the whole family are in test_model_files_family.py.
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
from sepconv import activations  # noqa: E402
from sepconv.interop import KerasFileError, load_keras_model, save_keras_model  # noqa: E402
from keras_files import Cases, call_outputs, check  # noqa: E402

MODEL_CASES = [
    "tk_seq.h5", "tk_seq.keras", "k3_seq.keras", "k3_seq.h5",
    "tk_func.h5", "tk_func.keras", "k3_func.keras",
]
WEIGHT_CASES = [
    "tk_seq_w.h5", "tk_seq.weights.h5", "tk_func_w.h5", "tk_func.weights.h5",
    "k3_seq.weights.h5", "k3_func.weights.h5",
]
ERROR_CASES = {
    # name: (pieces the one-line message must contain)
    "not_keras": ("is not a Keras model file",),
    "truncated_h5": ("truncated or corrupted",),
    "truncated_keras": ("truncated or corrupted",),
    "zip_not_keras": ("not a .keras model", "config.json"),
    "unsupported": ("'TFSMLayer'", "'local_x'", "SeparableConv1D", "does not map"),
    "custom_layer": ("custom object", "Scale", "'scale_x'"),
    "custom_activation": ("'sc_custom'", "swishy"),
    "weights_only": ("weights only", "load_keras_weights"),
    "weights_other_names": ("'causal_1'", "lacks"),
    "weights_other_shapes": ("'causal_1'", "shapes"),
    "missing": ("No such Keras file",),
    # (nested models load now: tests/test_model_files_nested.py) a layer whose weights
    # the file lacks is an error, not a layer left at its initial weights
    "weights_missing": ("no weights for layer 'sc2'", "SeparableConv1D"),
    "lambda": ("'double_it' (Lambda)", "Python bytecode", "safe_mode=False"),
    "bad_json": ("model_config is not valid JSON",),
}


def _rng_inputs(model, seed, batch=3):
    rng = np.random.default_rng(seed)
    shapes = [tuple(t.shape) for t in model.inputs]
    return [rng.standard_normal((batch,) + s[1:]).astype(np.float32) for s in shapes]


def _tf_keras_models():
    L = tf_keras.layers
    seq = tf_keras.Sequential([
        L.SeparableConv1D(4, 3, padding="causal", activation="relu", depth_multiplier=2,
                          bias_initializer="random_normal", input_shape=(12, 3),
                          name="causal_1"),
        L.SeparableConv1D(5, 2, strides=2, activation="hard_sigmoid",
                          bias_initializer="random_normal", depthwise_regularizer="l2",
                          pointwise_constraint="max_norm", name="hs"),
        L.SeparableConv1D(2, 3, padding="same", dilation_rate=2, use_bias=False, name="out"),
    ], name="tk_seq")
    return seq, _two_input_model(tf_keras, "tk_func", head1_padding="causal")


def _two_input_model(K, name, head1_padding):
    """Two inputs through one shared layer, a branch, an Add and two heads, built with
    ``K`` (tf_keras or keras; Keras 3's SeparableConv1D has no "causal")."""
    L = K.layers
    a = K.Input((12, 3), name="a")
    b = K.Input((12, 3), name="b")
    shared = L.SeparableConv1D(4, 3, padding="same", activation="tanh",
                               bias_initializer="random_normal", name="shared")
    ya, yb = shared(a), shared(b)  # one layer used twice
    branch = L.SeparableConv1D(4, 1, name="branch")(ya)
    total = L.Add(name="sum")([branch, yb])
    out1 = L.SeparableConv1D(2, 3, padding=head1_padding, name="head1")(total)
    out2 = L.SeparableConv1D(3, 2, name="head2")(yb)
    return K.Model([a, b], [out1, out2], name=name)


def _keras3_models():
    L = keras.layers
    seq = keras.Sequential([
        keras.Input((12, 3)),
        L.SeparableConv1D(4, 3, padding="same", activation="hard_sigmoid", depth_multiplier=2,
                          bias_initializer="random_normal", name="hs3"),
        L.SeparableConv1D(2, 2, strides=2, name="out3"),
    ], name="k3_seq")
    return seq, _two_input_model(keras, "k3_func", head1_padding="same")


def _error_models(root):
    L = tf_keras.layers
    files = {}
    # a class sepconv does not map (Masking, ThresholdedReLU, LocallyConnected1D, then
    # RandomFlip, then RandomInvert are mapped now): the file's RandomFlip renamed
    # TFSMLayer (Keras 3's SavedModel wrapper)
    m = tf_keras.Sequential([L.SeparableConv2D(2, 3, input_shape=(8, 8, 3), name="sc"),
                             L.RandomFlip(name="local_x")])
    files["unsupported"] = os.path.join(root, "unsupported.h5")
    m.save(files["unsupported"])
    import h5py
    with h5py.File(files["unsupported"], "r+") as f:
        config = f.attrs["model_config"]
        config = config.decode() if isinstance(config, bytes) else config
        f.attrs["model_config"] = config.replace('"RandomFlip"', '"TFSMLayer"')

    @tf_keras.saving.register_keras_serializable(package="mypkg")
    class Scale(L.Layer):
        def call(self, x):
            return 2 * x

    m = tf_keras.Sequential([L.SeparableConv1D(2, 3, input_shape=(8, 3), name="sc"),
                             Scale(name="scale_x")])
    files["custom_layer"] = os.path.join(root, "custom_layer.h5")
    m.save(files["custom_layer"])

    @tf_keras.saving.register_keras_serializable(package="mypkg")
    def swishy(x):
        return x * tf.sigmoid(x)

    m = tf_keras.Sequential([L.SeparableConv1D(2, 3, input_shape=(8, 3), activation=swishy,
                                               name="sc_custom")])
    files["custom_activation"] = os.path.join(root, "custom_activation.keras")
    m.save(files["custom_activation"])

    inner = tf_keras.Sequential([L.SeparableConv1D(2, 3, input_shape=(8, 3))], name="inner")
    files["weights_missing"] = os.path.join(root, "weights_missing.h5")
    tf_keras.Sequential([inner, L.SeparableConv1D(2, 1, name="sc2")]).save(
        files["weights_missing"])
    import h5py
    with h5py.File(files["weights_missing"], "r+") as f:
        f["model_weights/sc2"].attrs["weight_names"] = np.array([], dtype="S1")

    m = tf_keras.Sequential([L.SeparableConv1D(2, 3, input_shape=(8, 3), name="sc"),
                             L.Lambda(lambda t: 2 * t, name="double_it")])
    files["lambda"] = os.path.join(root, "lambda.h5")
    m.save(files["lambda"])

    import h5py
    files["bad_json"] = os.path.join(root, "bad_json.h5")
    tf_keras.Sequential([L.SeparableConv1D(2, 3, input_shape=(8, 3))]).save(files["bad_json"])
    with h5py.File(files["bad_json"], "r+") as f:
        f.attrs["model_config"] = f.attrs["model_config"][:-5]
    return files


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Every model saved in every format, the error files, and the child's results."""
    root = str(tmp_path_factory.mktemp("keras_files"))
    cases = Cases(root)
    tf_keras.utils.set_random_seed(1)
    keras.utils.set_random_seed(1)
    tk_seq, tk_func = _tf_keras_models()
    k3_seq, k3_func = _keras3_models()
    p = lambda name: os.path.join(root, name)  # noqa: E731
    models = {}
    for model, writer, stem, formats in [
            (tk_seq, "tf", "tk_seq", (".h5", ".keras")),
            (tk_func, "tf", "tk_func", (".h5", ".keras")),
            (k3_seq, "k3", "k3_seq", (".keras", ".h5")),
            (k3_func, "k3", "k3_func", (".keras",))]:
        x = _rng_inputs(model, seed=len(stem))
        y = call_outputs(model, x if len(x) > 1 else x[0])
        models[stem] = (model, x, y)
        for ext in formats:
            model.save(p(stem + ext))
            cases.add(stem + ext, "model", p(stem + ext), x, y, finetune=ext == ".keras",
                      convert=p(stem + ext + ".pt") if ext == ".h5" else None)
        model.save_weights(p(stem + ".weights.h5"))
        cases.add(stem + ".weights.h5", "weights", p(stem + ".weights.h5"), x, y,
                  model_file=p(stem + formats[0]))
        if writer == "tf":
            model.save_weights(p(stem + "_w.h5"))
            cases.add(stem + "_w.h5", "weights", p(stem + "_w.h5"), x, y,
                      model_file=p(stem + ".h5"))
    # error files
    errors = _error_models(root)
    with open(p("not_keras.h5"), "w") as f:
        f.write("this is not a model\n")
    errors["not_keras"] = p("not_keras.h5")
    for stem, ext in (("truncated_h5", ".h5"), ("truncated_keras", ".keras")):
        data = open(p("tk_seq" + ext), "rb").read()
        with open(p(stem + ext), "wb") as f:
            f.write(data[: len(data) // 2])
        errors[stem] = p(stem + ext)
    import zipfile
    with zipfile.ZipFile(p("other.keras"), "w") as z:
        z.writestr("readme.txt", "hello")
    errors["zip_not_keras"] = p("other.keras")
    errors["weights_only"] = p("tk_seq_w.h5")
    errors["missing"] = p("nothing_here.h5")
    # same layer names and classes as tk_seq, other kernel sizes
    other = tf_keras.Sequential([
        tf_keras.layers.SeparableConv1D(4, 5, padding="causal", input_shape=(12, 3),
                                        name="causal_1"),
        tf_keras.layers.SeparableConv1D(5, 2, strides=2, name="hs"),
        tf_keras.layers.SeparableConv1D(2, 3, padding="same", use_bias=False, name="out")])
    other.save_weights(p("other_shapes.weights.h5"))
    errors["weights_other_shapes"] = p("other_shapes.weights.h5")
    errors["weights_other_names"] = p("tk_seq_w.h5")
    into = {"weights_other_names": p("tk_func.h5"), "weights_other_shapes": p("tk_seq.h5")}
    for name in ERROR_CASES:
        extra = {"into_model_file": into[name]} if name in into else {}
        cases.add(name, "error", errors[name], **extra)
    results = cases.run()
    return dict(root=root, results=results, models=models)


@pytest.mark.parametrize("case", MODEL_CASES)
def test_model_file_gives_keras_outputs_without_tensorflow(saved, case):
    r = saved["results"][case]
    check(r)
    stem = case.split(".")[0]
    assert r["type"] == ("Sequential" if "seq" in stem else "KerasFunctional")
    model = saved["models"][stem][0]
    keras_names = [layer.name for layer in model.layers]  # a functional's lists its inputs
    if r["has_input_layer_class"] and "seq" in stem:
        # the Sequential's InputLayer becomes a module (Keras' cast to the input dtype)
        keras_names = [model.get_config()["layers"][0]["config"]["name"]] + keras_names
    if not r["has_input_layer_class"]:
        keras_names = [n for n in keras_names if n not in ("a", "b")]
    assert r["names"] == keras_names
    if "list_err" in r:  # a functional model also takes its inputs as one list
        assert r["list_err"] <= 1e-5
        assert "takes 2 inputs" in r["count_error"]
    if "finetuned" in r:
        assert r["finetuned"], "an optimizer step changed no weight (or made one non-finite)"
    if "convert_rc" in r:
        assert r["convert_rc"] == 0
        assert r["convert_err"] <= 1e-5
        for name in keras_names:
            assert name in r["convert_text"]
        assert "Total params" in r["convert_text"]
        total = int(sum(np.prod(w.shape) for w in model.get_weights()))
        assert f"Total params: {total:,}" in r["convert_text"]


@pytest.mark.parametrize("case", WEIGHT_CASES)
def test_weights_file_loads_into_module(saved, case):
    check(saved["results"][case])


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_bad_input_is_one_clear_line(saved, case):
    r = saved["results"][case]
    assert "crash" not in r, r["crash"]
    assert r["error"] is not None, "no error raised"
    assert "\n" not in r["error"]
    for piece in ERROR_CASES[case]:
        assert piece in r["error"], f"{piece!r} not in {r['error']!r}"


def test_keras3_file_uses_keras3_hard_sigmoid(saved):
    """The Keras 3 file's hard_sigmoid is Keras 3's formula and tf-keras' is tf-keras':
    both files match their writer's predict above; here the two formulas differ, so each
    file would fail with the other's (the check above could not pass by accident)."""
    x = torch.linspace(-4, 4, 81)
    with activations.keras_flavour("keras3"):
        k3 = activations.get("hard_sigmoid")(x).numpy()
    tfk = activations.get("hard_sigmoid")(x).numpy()
    np.testing.assert_allclose(k3, keras.ops.convert_to_numpy(
        keras.activations.hard_sigmoid(x.numpy())), atol=1e-7)
    np.testing.assert_allclose(tfk, tf_keras.activations.hard_sigmoid(
        tf.constant(x.numpy())).numpy(), atol=1e-7)
    assert np.abs(k3 - tfk).max() > 0.05
    assert activations.serialize(activations.KERAS3_VARIANTS["hard_sigmoid"]) == "hard_sigmoid"


def test_save_keras_model_round_trip_into_tf_keras(tmp_path):
    """A hand-built sepconv Sequential -> .h5 -> tf_keras.models.load_model: same outputs,
    and sepconv reads its own file back."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        sepconv.SeparableConv1D(6, 3, padding="causal", depth_multiplier=2, activation="relu",
                                bias_initializer="random_normal", input_shape=(None, 4),
                                name="rt_a"),
        sepconv.SeparableConv1D(3, 2, strides=2, activation="tanh", depthwise_regularizer="l2",
                                bias_initializer="random_normal", name="rt_b"))
    x = np.random.default_rng(3).standard_normal((2, 15, 4)).astype(np.float32)
    ours = model(torch.from_numpy(x)).detach().numpy()
    path = tmp_path / "rt.h5"
    save_keras_model(model, path)
    theirs = tf_keras.models.load_model(path)
    assert [layer.name for layer in theirs.layers] == ["rt_a", "rt_b"]
    np.testing.assert_allclose(theirs.predict(x, verbose=0), ours, atol=1e-5)
    assert theirs.layers[0].padding == "causal"
    back = load_keras_model(path)
    np.testing.assert_allclose(back(torch.from_numpy(x)).detach().numpy(), ours, atol=1e-6)


def test_loaded_model_saved_again_reads_in_tf_keras(saved, tmp_path):
    """tf-keras file -> sepconv -> save_keras_model -> tf-keras: the original predictions."""
    model, x, y = saved["models"]["tk_seq"]
    ours = load_keras_model(os.path.join(saved["root"], "tk_seq.h5"))
    path = tmp_path / "again.h5"
    save_keras_model(ours, path)
    theirs = tf_keras.models.load_model(path)
    np.testing.assert_allclose(theirs.predict(x[0], verbose=0), y[0], atol=1e-5)
    # the Keras 3 Sequential (its input shape comes from its InputLayer entry)
    model, x, y = saved["models"]["k3_seq"]
    ours = load_keras_model(os.path.join(saved["root"], "k3_seq.keras"))
    with pytest.warns(UserWarning, match="hs3.activation use Keras 3's formula"):
        save_keras_model(ours, tmp_path / "k3_again.h5")
    theirs = tf_keras.models.load_model(tmp_path / "k3_again.h5")
    np.testing.assert_allclose(ours(torch.from_numpy(x[0])).detach().numpy(), y[0],
                               atol=1e-5)
    # tf-keras computes its own hard_sigmoid: the saved file cannot carry Keras 3's formula
    assert theirs.predict(x[0], verbose=0).shape == y[0].shape


def test_save_keras_model_refuses_what_keras_cannot_rebuild(tmp_path):
    with pytest.raises(TypeError, match="torch.nn.Sequential"):
        save_keras_model(sepconv.SeparableConv1D(2, 3, input_shape=(None, 2)),
                         tmp_path / "a.h5")
    with pytest.raises(ValueError, match="Linear"):
        save_keras_model(torch.nn.Sequential(torch.nn.Linear(2, 2)), tmp_path / "b.h5")
    with pytest.raises(ValueError, match="input shape is unknown"):
        layer = sepconv.SeparableConv1D(2, 3)
        layer(torch.zeros(1, 5, 2))
        save_keras_model(torch.nn.Sequential(layer), tmp_path / "c.h5")
    assert not any(tmp_path.iterdir()), "a failed save left a file behind"


def test_keras_file_error_is_a_value_error():
    assert issubclass(KerasFileError, ValueError)


def test_hand_built_model_takes_keras_weights_files(saved):
    """The same model built by hand with sepconv's classes takes tf-keras' weights files
    (.h5 by layer name, .weights.h5 by position) and gives tf-keras' predictions."""
    _, x, y = saved["models"]["tk_seq"]
    for stem in ("tk_seq_w.h5", "tk_seq.weights.h5"):
        model = torch.nn.Sequential(
            sepconv.SeparableConv1D(4, 3, padding="causal", activation="relu",
                                    depth_multiplier=2, input_shape=(12, 3), name="causal_1"),
            sepconv.SeparableConv1D(5, 2, strides=2, activation="hard_sigmoid", name="hs"),
            sepconv.SeparableConv1D(2, 3, padding="same", dilation_rate=2, use_bias=False,
                                    name="out"))
        model(torch.zeros(1, 12, 3))  # builds the later layers
        returned = sepconv.load_keras_weights(model, os.path.join(saved["root"], stem))
        assert returned is model
        np.testing.assert_allclose(model(torch.from_numpy(x[0])).detach().numpy(), y[0],
                                   atol=1e-5)
    # a mismatch changes nothing: every layer is checked before any weight is written
    model = torch.nn.Sequential(
        sepconv.SeparableConv1D(4, 3, padding="causal", depth_multiplier=2,
                                input_shape=(12, 3), name="causal_1"),
        sepconv.SeparableConv1D(5, 2, name="hs"),
        sepconv.SeparableConv1D(7, 3, name="out"))
    model(torch.zeros(1, 12, 3))
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(KerasFileError, match="'out'"):
        sepconv.load_keras_weights(model, os.path.join(saved["root"], "tk_seq_w.h5"))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_convert_command_reports_a_bad_file_in_one_line(tmp_path, capsys):
    from sepconv import cli

    bad = tmp_path / "bad.h5"
    bad.write_text("not a model")
    assert cli.main(["convert", str(bad), str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is not a Keras model file" in err
    assert not (tmp_path / "out.pt").exists()
    assert cli.main(["--help"]) == 0
    assert "convert" in capsys.readouterr().out


def test_unzipped_keras3_directory_loads(tmp_path):
    model = keras.Sequential([keras.Input((9, 2)),
                              keras.layers.SeparableConv1D(3, 2, activation="hard_sigmoid",
                                                           bias_initializer="random_normal")])
    keras.saving.save_model(model, tmp_path / "unzipped", zipped=False)
    x = np.random.default_rng(0).standard_normal((2, 9, 2)).astype(np.float32)
    ours = load_keras_model(tmp_path / "unzipped")
    np.testing.assert_allclose(ours(torch.from_numpy(x)).detach().numpy(),
                               model.predict(x, verbose=0), atol=1e-5)


from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_TF_ACTS = ["linear", "relu", "tanh", "sigmoid", "hard_sigmoid", "elu", "selu", "softplus",
            "swish", "gelu", "softsign"]


@st.composite
def _sequential_args(draw):
    layers = []
    for _ in range(draw(st.integers(1, 3))):
        strides = draw(st.integers(1, 2))
        layers.append(dict(
            filters=draw(st.integers(1, 4)), kernel_size=draw(st.integers(1, 4)),
            strides=strides, dilation_rate=1 if strides > 1 else draw(st.integers(1, 2)),
            padding=draw(st.sampled_from(["valid", "same", "causal"])),
            depth_multiplier=draw(st.integers(1, 2)), use_bias=draw(st.booleans()),
            activation=draw(st.sampled_from(_TF_ACTS)),
            depthwise_regularizer=draw(st.sampled_from([None, "l2", "l1_l2"])),
            pointwise_constraint=draw(st.sampled_from([None, "max_norm", "non_neg"])),
            bias_initializer="random_normal"))
    return layers, draw(st.sampled_from([".h5", ".keras"])), draw(st.integers(0, 2**31 - 1))


@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(_sequential_args())
def test_drawn_tf_keras_sequentials_load_with_their_outputs(tmp_path, case):
    layers, ext, seed = case
    steps = 24
    for args in layers:  # every layer must leave at least one step
        span = (args["kernel_size"] - 1) * args["dilation_rate"] + 1
        steps = (steps - span) // args["strides"] + 1 if args["padding"] == "valid" \
            else -(-steps // args["strides"])
        assume(steps >= 1)
    tf_keras.utils.set_random_seed(seed % 1000)
    model = tf_keras.Sequential(
        [tf_keras.layers.SeparableConv1D(**args, **({"input_shape": (24, 3)} if i == 0 else {}))
         for i, args in enumerate(layers)])
    path = tmp_path / f"drawn_{seed}{ext}"
    model.save(path)
    x = np.random.default_rng(seed).standard_normal((2, 24, 3)).astype(np.float32)
    ours = load_keras_model(path)
    got = ours(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=1e-5, rtol=1e-5)
    assert [m.padding for m in ours if hasattr(m, "padding")] == \
        [a["padding"] for a in layers]
    # the file's regularizers came along: the same penalties as tf-keras'
    theirs = float(sum(float(v) for v in model.losses))
    np.testing.assert_allclose(float(sepconv.regularization_loss(ours)), theirs,
                               rtol=1e-5, atol=1e-7)


def test_loaded_functional_gradients_match_tf_keras(tmp_path, torch_single_thread):
    """Fine-tuning sees tf-keras' gradients: a layer used twice gets both uses' gradient,
    for the inputs and every weight (float32, 1e-5 of scale)."""
    L = tf_keras.layers
    tf_keras.utils.set_random_seed(5)
    a, b = tf_keras.Input((10, 3), name="a"), tf_keras.Input((10, 3), name="b")
    shared = L.SeparableConv1D(4, 3, padding="causal", activation="tanh",
                               bias_initializer="random_normal", name="shared")
    out1 = L.SeparableConv1D(2, 2, strides=2, name="head")(shared(a))
    out2 = shared(b)
    model = tf_keras.Model([a, b], [out1, out2])
    model.save(tmp_path / "g.h5")
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((2, 10, 3)).astype(np.float32) for _ in range(2)]
    tx = [tf.Variable(x) for x in xs]
    with tf.GradientTape() as tape:
        y1, y2 = model(tx)
        loss = tf.reduce_sum(y1 ** 2) + tf.reduce_sum(tf.sin(y2))
    grads = tape.gradient(loss, tx + model.trainable_weights)
    ours = load_keras_model(tmp_path / "g.h5").train()
    px = [torch.from_numpy(x).requires_grad_() for x in xs]
    o1, o2 = ours(*px)
    ((o1 ** 2).sum() + torch.sin(o2).sum()).backward()
    mine = [p.grad for p in px] + [p.grad for layer in (ours.shared, ours.head)
                                   for p in layer.weights]
    assert len(mine) == len(grads)
    for g_ours, g_tf in zip(mine, grads):
        g_tf = g_tf.numpy()
        np.testing.assert_allclose(g_ours.numpy(), g_tf,
                                   atol=1e-5 * max(1.0, float(np.abs(g_tf).max())))


def test_functional_model_saved_back_reads_in_tf_keras(tmp_path):
    """A functional file (two inputs, a layer used twice, two outputs) -> sepconv ->
    save_keras_model -> tf-keras: the original predictions and layer names."""
    L = tf_keras.layers
    tf_keras.utils.set_random_seed(6)
    a, b = tf_keras.Input((10, 3), name="a"), tf_keras.Input((10, 3), name="b")
    shared = L.SeparableConv1D(4, 3, padding="causal", activation="relu",
                               bias_initializer="random_normal", name="shared")
    out1 = L.SeparableConv1D(2, 2, strides=2, name="head")(shared(a))
    model = tf_keras.Model([a, b], [out1, shared(b)], name="two_way")
    model.save(tmp_path / "f.h5")
    ours = load_keras_model(tmp_path / "f.h5")
    save_keras_model(ours, tmp_path / "back.h5")
    theirs = tf_keras.models.load_model(tmp_path / "back.h5")
    assert [layer.name for layer in theirs.layers] == [layer.name for layer in model.layers]
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((2, 10, 3)).astype(np.float32) for _ in range(2)]
    for got, want in zip(theirs.predict(xs, verbose=0), model.predict(xs, verbose=0)):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_config_keys_that_change_the_numbers_are_refused_not_dropped():
    from sepconv.interop.models import build_layer

    entry = {"class_name": "SeparableConv1D", "config": {
        "name": "sc_groups", "filters": 4, "kernel_size": 3, "groups": 2}}
    with pytest.raises(KerasFileError, match=r"'sc_groups' \(SeparableConv1D\) has groups=2"):
        build_layer(entry)
    entry["config"]["groups"] = 1
    assert build_layer(entry).filters == 4
    # a Keras 3 config: dtype policy dict, initializer dicts with module/registered_name
    layer = build_layer({"class_name": "SeparableConv1D", "config": {
        "name": "sc_k3", "filters": 2, "kernel_size": 2, "activation": "hard_sigmoid",
        "dtype": {"module": "keras", "class_name": "DTypePolicy",
                  "config": {"name": "float64"}, "registered_name": None},
        "depthwise_initializer": {"module": "keras.initializers", "class_name": "Constant",
                                  "config": {"value": 0.5}, "registered_name": None}}},
        flavour="keras3")
    assert layer.dtype == "float64"
    assert layer.activation is activations.KERAS3_VARIANTS["hard_sigmoid"]
    layer(torch.zeros(1, 4, 3))
    assert float(layer.depthwise_kernel.min()) == float(layer.depthwise_kernel.max()) == 0.5


def test_old_keras_sequential_config_as_a_bare_list(saved, tmp_path):
    """Keras <= 2.2 (old R installs) wrote a Sequential's config as the list of layers."""
    import json
    import shutil

    import h5py

    path = tmp_path / "old.h5"
    shutil.copy(os.path.join(saved["root"], "tk_seq.h5"), path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        config["config"] = config["config"]["layers"]
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "2.2.4"
    _, x, y = saved["models"]["tk_seq"]
    ours = load_keras_model(path)
    np.testing.assert_allclose(ours(torch.from_numpy(x[0])).detach().numpy(), y[0],
                               atol=1e-5)


def test_without_h5py_one_line_says_what_to_install(tmp_path):
    """h5py is the ``h5`` extra, not a dependency: without it the loader says so."""
    import subprocess
    import sys
    import textwrap

    path = tmp_path / "m.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    code = textwrap.dedent(f"""
        import sys
        sys.modules["h5py"] = None
        import sepconv
        try:
            sepconv.load_keras_model({str(path)!r})
        except ImportError as err:
            print("ERR", err)
    """)
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert 'pip install "sepconv[h5]"' in out.stdout, out.stdout + out.stderr
