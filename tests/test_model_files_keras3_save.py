"""``save_keras_model(module, "model.keras")``: Keras 3 ``.keras`` files.

The family's real models (the builders of ``test_model_files_family.py``) are built with
Keras 3 and with tf-keras, loaded by sepconv, written back as ``.keras`` and loaded by
``keras.saving.load_model`` (Keras 3, torch backend): its ``predict`` must give the
original model's outputs (1e-5 of scale), its layers the original names and classes,
and the file Keras 3's own layout (the same weight paths and shapes as the file Keras 3
wrote).  sepconv reads its own file back to the same numbers.  Layers whose Keras 3
config cannot say what the sepconv layer computes are refused, with nothing written.
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")

import sepconv  # noqa: E402
from sepconv.layers.base import KERAS_CLASSES  # noqa: E402
from sepconv.interop import KerasFunctional, load_keras_model, save_keras_model  # noqa: E402
from keras_files import call_outputs, outputs  # noqa: E402
from test_model_files_family import MODELS, _inputs, _randomize  # noqa: E402


def _build(K, name, seed, keras3=True):
    """A family model at random weights, its inputs and its ``predict`` outputs."""
    K.utils.set_random_seed(seed)
    model = MODELS[name][0](K, keras3)
    _randomize(model, seed=seed)
    x = _inputs(model, seed=100 + seed)
    return model, x, call_outputs(model, x if len(x) > 1 else x[0])


def _run(module, x):
    with torch.no_grad():
        out = module(*[torch.from_numpy(a) for a in x])
    return [o.numpy() for o in (out if isinstance(out, list) else [out])]


def _close(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-5 * max(1.0, float(np.abs(b).max())))


def _keras3_predict(path, x):
    theirs = keras.saving.load_model(path)
    return theirs, call_outputs(theirs, x if len(x) > 1 else x[0])


def _both_read(module, path, x, y):
    """``save_keras_model(module, path)``; Keras 3's ``predict`` and sepconv's reading of
    the file must both give ``y``.  Returns Keras 3's model."""
    save_keras_model(module, path)
    theirs, got = _keras3_predict(path, x)
    _close(got, y)
    _close(_run(load_keras_model(path), x), y)
    return theirs


def _weight_layout(path):
    """``{dataset path: shape}`` of a ``.keras`` file's ``model.weights.h5``, plus the
    ``name`` attributes of its ``vars`` groups."""
    with zipfile.ZipFile(path) as z:
        data = z.read("model.weights.h5")
    out = {}
    with h5py.File(io.BytesIO(data), "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj.shape
            elif name.endswith("vars") and "name" in obj.attrs:
                out[name + "@name"] = obj.attrs["name"]
        f.visititems(visit)
    return out


@pytest.fixture(scope="module")
def keras3_files(tmp_path_factory):
    """Each family model built with Keras 3 and saved by Keras 3 as ``.keras``."""
    root = tmp_path_factory.mktemp("keras3_save")
    out = {}
    for i, name in enumerate(MODELS):
        model, x, y = _build(keras, name, seed=i)
        path = root / f"{name}.keras"
        model.save(path)
        out[name] = (model, x, y, path)
    return out


@pytest.mark.parametrize("name", list(MODELS))
def test_keras3_file_through_sepconv_back_to_keras3(keras3_files, name, tmp_path):
    """Keras 3 .keras -> sepconv -> save_keras_model(.keras) -> keras.saving.load_model:
    the original predictions, layer names and classes, Keras 3's own weight layout; and
    sepconv reads its file back to the same numbers."""
    model, x, y, path = keras3_files[name]
    ours = load_keras_model(path)
    out = tmp_path / "again.keras"
    save_keras_model(ours, out)
    with zipfile.ZipFile(out) as z:
        assert sorted(z.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        assert json.loads(z.read("metadata.json"))["keras_version"].startswith("3.")
        config = json.loads(z.read("config.json"))
    assert config["class_name"] == type(model).__name__
    for entry in config["config"]["layers"]:
        assert set(entry) >= {"module", "class_name", "config", "registered_name"}
    theirs, got = _keras3_predict(out, x)
    _close(got, y)
    assert [(a.name, type(a).__name__) for a in theirs.layers] == \
        [(a.name, type(a).__name__) for a in model.layers]
    assert _weight_layout(out) == _weight_layout(path)
    back = load_keras_model(out)
    assert back.keras_flavour == "keras3"
    _close(_run(back, x), y)


@pytest.mark.parametrize("name", ["causal_classifier", "mobilenet_block", "unet", "multi_io"])
def test_tf_keras_file_through_sepconv_into_keras3(name, tmp_path):
    """An R keras 2 / tf-keras .h5 -> sepconv -> .keras -> Keras 3: tf-keras' predictions
    (the moving of argument names, dtype policies, BatchNormalization's axis list, layer
    order).  The classifier is its "same"-padded variant (the causal one: see below)."""
    model, x, y = _build(tf_keras, name, seed=7, keras3=True)
    model.save(tmp_path / "tf.h5")
    theirs = _both_read(load_keras_model(tmp_path / "tf.h5"), tmp_path / "k3.keras", x, y)
    assert [layer.name for layer in theirs.layers] == [layer.name for layer in model.layers]


def _reversed_modules(model):
    """The same functional model with its layer submodules in reverse order."""
    children = list(model.named_children())
    inputs = [c for c in children if type(c[1]).__name__ == "InputLayer"]
    layers = OrderedDict(inputs + [c for c in children if c not in inputs][::-1])
    return KerasFunctional(model.keras_name, layers, model.input_refs, model.output_refs,
                           model.steps, model.keras_input_shapes)


def test_weights_follow_keras3_layer_order_not_the_modules(keras3_files, tmp_path):
    """Keras 3 numbers weights (layers/dense_1, ...) in the order its Functional lists the
    layers, which it recomputes from the graph: a model whose submodules come in another
    order must still put every weight where Keras 3 looks (dense_b and hidden have the same
    shapes, so a wrong order would load silently and predict wrongly)."""
    model, x, y, path = keras3_files["multi_io"]
    module = _reversed_modules(load_keras_model(path))
    _close(_run(module, x), y)
    _both_read(module, tmp_path / "shuffled.keras", x, y)


def test_shared_layer_at_two_depths(tmp_path):
    """A layer called at two depths (Keras 3 lists a layer at its deepest call: here that
    puts "shared" before "other", which the depth of its last-walked call alone would
    not), three inputs, three outputs; the submodules reversed (see above)."""
    L = keras.layers
    keras.utils.set_random_seed(3)
    a, b, c = (keras.Input((12, 3), name=n) for n in "abc")
    shared = L.Conv1D(3, 3, padding="causal", activation="tanh", name="shared")
    other = L.Conv1D(3, 2, padding="causal", name="other")
    outs = [other(c), shared(b),
            L.Conv1D(2, 1, name="post")(shared(L.Conv1D(3, 1, name="pre")(a)))]
    model = keras.Model([a, b, c], outs, name="shared_twice")
    _randomize(model, seed=3)
    x = _inputs(model, seed=4)
    y = call_outputs(model, x)
    model.save(tmp_path / "k3.keras")
    ours = _reversed_modules(load_keras_model(tmp_path / "k3.keras"))
    theirs = _both_read(ours, tmp_path / "again.keras", x, y)
    assert [layer.name for layer in theirs.layers] == [layer.name for layer in model.layers]


def test_hand_built_sequential_into_keras3(tmp_path):
    """A Sequential built with sepconv (no file behind it): Keras 3's predictions, its
    hard_sigmoid formula included, and sepconv's own reading of the file."""
    torch.manual_seed(0)
    hs3 = sepconv.activations.KERAS3_VARIANTS["hard_sigmoid"]
    model = torch.nn.Sequential(
        sepconv.Conv1D(4, 3, padding="causal", activation="relu",
                       bias_initializer="random_normal", name="conv"),
        sepconv.SeparableConv1D(6, 3, padding="same", depth_multiplier=2,
                                activation=hs3, bias_initializer="random_normal",
                                depthwise_regularizer="l2", name="sep"),
        sepconv.LeakyReLU(0.1, name="leaky"),
        sepconv.Dense(2, kernel_constraint="max_norm", name="head"))
    x = [np.random.default_rng(5).standard_normal((3, 10, 2)).astype(np.float32)]
    y = _run(model, x)  # builds the layers
    with pytest.raises(ValueError, match="input shape is unknown"):
        save_keras_model(model, tmp_path / "no_shape.keras")
    save_keras_model(model, tmp_path / "hand.keras", input_shape=(None, 2))
    theirs, got = _keras3_predict(tmp_path / "hand.keras", x)
    _close(got, y)
    assert theirs.get_layer("leaky").negative_slope == pytest.approx(0.1)
    assert theirs.get_layer("conv").padding == "causal"
    back = load_keras_model(tmp_path / "hand.keras")
    _close(_run(back, x), y)
    assert back.sep.activation is hs3


# One sepconv layer per case (class, arguments, input shape without the batch): every
# class sepconv maps, beyond the family models, goes through a .keras file into Keras 3
# (and, where tf-keras computes the same formula, through an .h5 file into tf-keras).
LAYER_CASES = [
    ("Activation", dict(activation="gelu"), (5,)),
    ("AveragePooling1D", dict(pool_size=3, padding="same"), (7, 2)),
    ("AveragePooling2D", dict(pool_size=2, strides=1), (5, 5, 2)),
    ("AveragePooling3D", dict(pool_size=2), (4, 4, 4, 2)),
    ("Conv1DTranspose", dict(filters=3, kernel_size=3, strides=2, padding="same"), (6, 2)),
    ("Conv2D", dict(filters=4, kernel_size=3, groups=2, padding="same"), (6, 6, 2)),
    ("Conv2DTranspose", dict(filters=3, kernel_size=3, strides=2, output_padding=1),
     (5, 5, 2)),
    ("Conv3D", dict(filters=2, kernel_size=2), (4, 4, 4, 2)),
    ("Conv3DTranspose", dict(filters=2, kernel_size=2, strides=2), (3, 3, 3, 2)),
    ("ConvLSTM1D", dict(filters=2, kernel_size=3, return_sequences=True,
                        recurrent_activation="keras3:hard_sigmoid"), (3, 6, 2)),
    ("ConvLSTM3D", dict(filters=2, kernel_size=2, recurrent_activation="sigmoid",
                        go_backwards=True), (3, 4, 4, 4, 1)),
    ("Cropping1D", dict(cropping=(1, 2)), (8, 2)),
    ("Cropping3D", dict(cropping=1), (4, 4, 4, 2)),
    ("DepthwiseConv1D", dict(kernel_size=3, depth_multiplier=2), (7, 2)),
    ("ELU", dict(alpha=0.5), (4,)),
    ("GaussianNoise", dict(stddev=0.1), (4,)),
    ("GlobalAveragePooling3D", dict(), (3, 3, 3, 2)),
    ("GlobalMaxPooling2D", dict(), (5, 5, 2)),
    ("GlobalMaxPooling3D", dict(), (3, 3, 3, 2)),
    ("LayerNormalization", dict(axis=[1, 2]), (3, 4)),
    ("MaxPooling2D", dict(pool_size=3, strides=2, padding="same"), (7, 7, 2)),
    ("MaxPooling3D", dict(pool_size=2), (4, 4, 4, 2)),
    ("PReLU", dict(shared_axes=[1]), (4, 3)),
    ("Permute", dict(dims=(2, 1)), (4, 3)),
    ("ReLU", dict(max_value=2.0, negative_slope=0.1, threshold=0.5), (4,)),
    ("RepeatVector", dict(n=3), (4,)),
    ("Reshape", dict(target_shape=(2, -1)), (4, 3)),
    ("SeparableConv2D", dict(filters=3, kernel_size=3, dilation_rate=2, padding="same"),
     (7, 7, 2)),
    ("Softmax", dict(axis=1), (4, 3)),
    ("SpatialDropout1D", dict(rate=0.3), (5, 2)),
    ("SpatialDropout2D", dict(rate=0.3), (5, 5, 2)),
    ("SpatialDropout3D", dict(rate=0.3), (3, 3, 3, 2)),
    ("UpSampling1D", dict(size=2), (4, 2)),
    ("UpSampling2D", dict(size=2, interpolation="bilinear"), (4, 4, 2)),
    ("UpSampling3D", dict(size=2), (2, 2, 2, 2)),
    ("ZeroPadding1D", dict(padding=(1, 2)), (4, 2)),
    ("ZeroPadding3D", dict(padding=1), (2, 2, 2, 2)),
    ("Masking", dict(mask_value=0.5), (5, 3)),
    ("Normalization", dict(mean=[0.5, 1.0, -2.0], variance=[1.0, 4.0, 0.25]), (5, 3)),
    ("Dense", dict(units=3, dtype="mixed_float16"), (4,)),
    ("Dense", dict(units=3, dtype="float64", trainable=False), (4,)),
    ("LSTM", dict(units=3, return_sequences=True, go_backwards=True), (5, 2)),
    ("GRU", dict(units=3, reset_after=False, recurrent_activation="tanh"), (5, 2)),
    ("GRU", dict(units=2, use_bias=False, reset_after=True), (5, 2)),
    ("SimpleRNN", dict(units=3, activation="relu", return_sequences=True), (5, 2)),
    ("Bidirectional", dict(layer={"class_name": "LSTM", "config": {
        "units": 2, "return_sequences": True}}, merge_mode="mul"), (5, 2)),
    ("Bidirectional", dict(layer={"class_name": "GRU", "config": {"units": 2}},
                           backward_layer={"class_name": "SimpleRNN", "config": {
                               "units": 2, "go_backwards": True}}), (5, 2)),
    ("ActivityRegularization", dict(l1=0.1), (4,)),
    ("AlphaDropout", dict(rate=0.2), (4,)),
    ("GaussianDropout", dict(rate=0.2), (4,)),
    ("Identity", dict(), (4,)),
    # Keras 3 has no ThresholdedReLU: written as its ReLU(threshold=theta), same numbers
    ("ThresholdedReLU", dict(theta=0.3), (4,)),
    ("Rescaling", dict(scale=0.5, offset=1.0), (4,)),
    ("UnitNormalization", dict(axis=[1, 2]), (3, 4)),
    ("GroupNormalization", dict(groups=2, epsilon=1e-5), (3, 4)),
    ("EinsumDense", dict(equation="abc,cd->abd", output_shape=(3, 5), bias_axes="d"),
     (3, 4)),
]
MERGES = ["Average", "Maximum", "Minimum"]  # a functional model below (with Dot)
#: Classes whose .keras round trip into Keras 3 is tested in another file (several inputs,
#: or adapted state): class -> the test.
ELSEWHERE = {
    "MultiHeadAttention": "test_attention.py::test_keras3_file_through_sepconv_back_to_keras3",
    "Attention": "test_attention.py::test_keras3_file_through_sepconv_back_to_keras3",
    "AdditiveAttention": "test_attention.py::test_keras3_file_through_sepconv_back_to_keras3",
    "Normalization": "test_preprocessing.py::test_adapted_layer_saved_for_both_kerases",
    # Keras 3 has neither: .keras refused there, .h5 round trip
    "CuDNNLSTM": "test_cudnn.py::test_written_back_to_h5_tf_keras_reads_the_same_layers",
    "CuDNNGRU": "test_cudnn.py::test_written_back_to_h5_tf_keras_reads_the_same_layers",
}
ELSEWHERE["STFTSpectrogram"] = ELSEWHERE["MelSpectrogram"] = \
    "test_audio.py::test_keras3_models_load_without_tensorflow_and_save_back"
ELSEWHERE["GroupQueryAttention"] = \
    "test_group_query_attention.py::test_keras3_file_through_sepconv_back_to_keras3"
ELSEWHERE["Resizing"] = \
    "test_resizing.py::test_speech_commands_tutorial_model_files_both_ways"
ELSEWHERE.update({cls: "test_model_files_rnn_cells.py::test_written_back_files_read_by_keras_"
                       "give_the_same_outputs"  # RNN over (stacked) cells, cells nested
                  for cls in ("RNN", "SimpleRNNCell", "LSTMCell", "GRUCell",
                              "StackedRNNCells")})
# Keras 3-only layers (no tf-keras .h5 to write for them):
ELSEWHERE["RMSNormalization"] = \
    "test_rms_normalization.py::test_keras3_files_load_without_tensorflow_and_go_back"
ELSEWHERE.update({f"Adaptive{op}Pooling{r}D":
                  "test_adaptive_pooling.py::test_keras3_files_load_without_tensorflow_and_go_back"
                  for op in ("Average", "Max") for r in (1, 2, 3)})
# tf-keras-only layers (Keras 3 has no LocallyConnected*: their files are tf-keras')
ELSEWHERE.update({f"LocallyConnected{r}D": "test_locally_connected.py::"
                  "test_tf_keras_files_load_without_tensorflow_and_go_back" for r in (1, 2)})
ELSEWHERE.update({cls: "test_preprocessing_lookup.py::test_saved_by_sepconv_for_both_kerases"
                  for cls in ("StringLookup", "IntegerLookup", "TextVectorization",
                              "Discretization", "CategoryEncoding", "Hashing")})
ELSEWHERE.update({cls: "test_augmentation.py::test_augmented_model_files_from_both_kerases_"
                       "load_and_go_back"  # RandomHeight / RandomWidth: tf-keras only
                  for cls in ("CenterCrop", "RandomCrop", "RandomFlip", "RandomRotation",
                              "RandomTranslation", "RandomZoom", "RandomContrast",
                              "RandomBrightness", "RandomHeight", "RandomWidth")})
ELSEWHERE["Lambda"] = "test_lambda.py::test_saved_back_with_the_file_config"
ELSEWHERE["SpectralNormalization"] = \
    "test_spectral_normalization.py::test_discriminator_model_files_both_ways"
ELSEWHERE["HashedCrossing"] = "test_hashed_crossing.py::test_crossing_model_files_both_ways"
ELSEWHERE.update({cls: "test_applications_layers.py::test_small_models_from_both_kerases_"
                       "load_and_go_back"  # the Keras Applications' own layers
                  for cls in ("CustomScaleLayer", "LayerScale", "StochasticDepth")})

# Keras 3's image preprocessing layers (layers/augmentation3.py), ReversibleEmbedding
ELSEWHERE.update({cls: "test_keras3_image_layers.py::test_keras3_models_load_without_"
                       "tensorflow, test_save_keras_model_writes_them_for_keras3"
                  for cls in __import__("sepconv.layers.augmentation3",
                                        fromlist=["__all__"]).__all__})
ELSEWHERE["ReversibleEmbedding"] = \
    "test_keras3_image_layers.py::test_keras3_models_load_without_tensorflow"


def test_every_class_is_covered_here_or_by_the_family():
    """A class added to sepconv must get a case above: its Keras 3 config may differ."""
    covered = {c for c, _, _ in LAYER_CASES} | {c for _, cs in MODELS.values() for c in cs}
    missing = sorted(set(KERAS_CLASSES) - covered - set(MERGES) - set(ELSEWHERE)
                     - {"InputLayer", "Dot"})  # Dot: the merges model
    assert not missing, f"add .keras cases for {missing}"


def _one_layer_model(rng, i, cls, kwargs, shape):
    """Case ``i`` as a one-layer Sequential at random weights, an input batch and its
    outputs."""
    layer = KERAS_CLASSES[cls](**kwargs, input_shape=shape, name=f"l{i}")
    if layer.get_weights():
        layer.set_weights([(rng.standard_normal(w.shape) * 0.4).astype(w.dtype)
                           for w in layer.get_weights()])
    model = torch.nn.Sequential(layer).eval()
    x = [rng.standard_normal((2,) + shape).astype(np.float32)]
    return model, x, [a.astype(np.float32) for a in _run(model, x)]


def test_each_layer_class_through_a_tf_keras_h5_file(tmp_path):
    """The same cases as one-layer Sequentials -> .h5 -> tf_keras.models.load_model: its
    outputs (an eager call: tf-keras' own graph-mode LayerNormalization over axes [1, 2]
    fails in predict) and sepconv's reading of the file.  Cases computing Keras 3's
    hard_sigmoid are left out (tf-keras has another formula under that name)."""
    rng = np.random.default_rng(0)
    for i, (cls, kwargs, shape) in enumerate(LAYER_CASES):
        if "keras3:hard_sigmoid" in kwargs.values():
            continue
        model, x, y = _one_layer_model(rng, i, cls, kwargs, shape)
        path = tmp_path / f"{i}.h5"
        save_keras_model(model, path)
        theirs = tf_keras.models.load_model(path)
        got = [np.asarray(a, dtype=np.float32)
               for a in outputs(theirs(tf.constant(x[0]), training=False))]
        try:
            _close(got, y)
            _close([a.astype(np.float32) for a in _run(load_keras_model(path), x)], y)
        except AssertionError as err:
            raise AssertionError(f"{cls} {kwargs}: {err}") from None


def test_each_layer_class_through_a_keras3_file(tmp_path):
    """Each case as a one-layer Sequential at random weights -> .keras -> Keras 3's
    predictions; sepconv's own reading of the file; and the merges Average / Maximum /
    Minimum in a Keras 3 functional model -> sepconv -> .keras -> Keras 3."""
    rng = np.random.default_rng(0)
    hs3 = sepconv.activations.KERAS3_VARIANTS["hard_sigmoid"]
    for i, (cls, kwargs, shape) in enumerate(LAYER_CASES):
        kwargs = {k: hs3 if v == "keras3:hard_sigmoid" else v for k, v in kwargs.items()}
        model, x, y = _one_layer_model(rng, i, cls, kwargs, shape)
        path = tmp_path / f"{i}.keras"
        save_keras_model(model, path)
        got = [a.astype(np.float32) for a in _keras3_predict(path, x)[1]]
        try:
            _close(got, y)
            _close([a.astype(np.float32) for a in _run(load_keras_model(path), x)], y)
        except AssertionError as err:
            raise AssertionError(f"{cls} {kwargs}: {err}") from None
    L = keras.layers
    keras.utils.set_random_seed(1)
    a, b = keras.Input((4, 3), name="a"), keras.Input((4, 3), name="b")
    outs = [getattr(L, m)(name=m.lower())([a, b]) for m in MERGES]
    outs.append(L.Dot(axes=[2, 2], normalize=True, name="dot")([a, b]))
    model = keras.Model([a, b], outs, name="merges")
    x = _inputs(model, seed=2)
    y = call_outputs(model, x)
    model.save(tmp_path / "merges.keras")
    save_keras_model(load_keras_model(tmp_path / "merges.keras"), tmp_path / "again.keras")
    _close(_keras3_predict(tmp_path / "again.keras", x)[1], y)


def test_what_keras3_cannot_express_is_refused(tmp_path):
    """tf-keras' hard_sigmoid (a ConvLSTM2D's default recurrent activation, an Activation
    layer), BatchNormalization over two axes: ValueError naming the layer and why; nothing
    written.  The .h5 writer still takes them.  (A causal SeparableConv1D is written as
    ZeroPadding1D + "valid": see the causal tests.)"""
    cases = [
        (sepconv.ConvLSTM2D(2, 3, input_shape=(3, 6, 6, 1), name="lstm"),
         r"'lstm' \(ConvLSTM2D\) computes tf-keras' hard_sigmoid in recurrent_activation"),
        (sepconv.Activation("hard_sigmoid", input_shape=(4,), name="act"),
         r"'act' \(Activation\) computes tf-keras' hard_sigmoid"),
        (sepconv.BatchNormalization(axis=[1, 2], input_shape=(4, 3), name="bn"),
         r"'bn' \(BatchNormalization\) normalises over axes \[1, 2\]"),
    ]
    for layer, message in cases:
        with pytest.raises(ValueError, match=message):
            save_keras_model(torch.nn.Sequential(layer), tmp_path / "refused.keras")
        assert not any(tmp_path.iterdir()), "a refused save left a file behind"
        save_keras_model(torch.nn.Sequential(layer), tmp_path / "ok.h5")
        (tmp_path / "ok.h5").unlink()


def test_other_endings_are_refused_naming_the_supported_ones(tmp_path):
    model = torch.nn.Sequential(sepconv.Dense(2, input_shape=(3,), name="d"))
    for name in ("model.pt", "model", "model.zip", "model.keras.bak"):
        with pytest.raises(ValueError, match=r"writes \.h5, \.hdf5, \.keras files.*"
                                             + name.replace(".", r"\.")):
            save_keras_model(model, tmp_path / name)
    assert not any(tmp_path.iterdir())
    with pytest.raises(TypeError, match="torch.nn.Sequential"):
        save_keras_model(sepconv.Dense(2, input_shape=(3,)), tmp_path / "m.keras")
    save_keras_model(model, tmp_path / "m.hdf5")  # HDF5 under Keras' other ending
    np.testing.assert_allclose(
        tf_keras.models.load_model(tmp_path / "m.hdf5").predict(np.ones((1, 3)), verbose=0),
        _run(model, [np.ones((1, 3), np.float32)])[0], atol=1e-6)


def test_without_h5py_the_one_line_error(tmp_path, monkeypatch):
    model = torch.nn.Sequential(sepconv.Dense(2, input_shape=(3,), name="d"))
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r'pip install "sepconv\[h5\]"'):
        save_keras_model(model, tmp_path / "m.keras")
    assert not any(tmp_path.iterdir())


# -- causal SeparableConv1D: ZeroPadding1D + padding="valid" in the .keras file ----------
def _causal_sequential(K):
    """Causal separable convolutions: strides 1 and 2, dilation 1 and 3, depth multiplier
    2, a ZeroPadding1D of the user's own (the file numbers zero_padding1d per class) and a
    layer already named like the first pad layer would be."""
    L = K.layers
    return K.Sequential([
        K.Input((17, 3)),
        L.SeparableConv1D(4, 3, padding="causal", depth_multiplier=2, name="sep_a"),
        L.Activation("tanh", name="sep_a_causal_pad"),
        L.SeparableConv1D(5, 3, padding="causal", dilation_rate=3, activation="relu",
                          name="sep_b"),
        L.ZeroPadding1D((1, 2), name="pad"),
        L.SeparableConv1D(4, 2, padding="causal", strides=2, depth_multiplier=2,
                          name="sep_c"),
        L.SeparableConv1D(3, 4, padding="causal", strides=2, name="sep_d"),
    ], name="causal_seq")


def _causal_functional(K):
    """A causal separable layer shared by two calls at different depths (strides 2, kernel
    4, depth multiplier 2), a dilated one before its second call, Keras 3's own causal
    Conv1D (kept as it is), two inputs, two outputs."""
    L = K.layers
    a, b = K.Input((16, 2), name="a"), K.Input((19, 2), name="b")
    shared = L.SeparableConv1D(3, 4, padding="causal", strides=2, depth_multiplier=2,
                               name="shared")
    s1 = shared(a)
    d = L.SeparableConv1D(2, 3, padding="causal", dilation_rate=3, name="sep_d")(b)
    s2 = shared(L.Conv1D(2, 2, padding="causal", name="conv")(d))
    return K.Model([a, b], [s1, L.Dense(2, name="head")(s2)], name="causal_fn")


def test_causal_separable_written_as_zero_padding_then_valid(tmp_path):
    """tf-keras' causal SeparableConv1D models (.h5) -> sepconv -> .keras -> Keras 3 and
    back into sepconv: tf-keras' own predictions (its causal padding is those left zeros
    then "valid", strides 2 included); each causal layer is preceded by its pad layer
    (shared with it when it is shared), the pad amounts (k - 1) * d, the names unique."""
    for build, pads in [(_causal_sequential, {"sep_a": ("sep_a_causal_pad_1", 2),
                                              "sep_b": ("sep_b_causal_pad", 6),
                                              "sep_c": ("sep_c_causal_pad", 1),
                                              "sep_d": ("sep_d_causal_pad", 3)}),
                        (_causal_functional, {"shared": ("shared_causal_pad", 3),
                                              "sep_d": ("sep_d_causal_pad", 6)})]:
        tf_keras.utils.set_random_seed(11)
        model = build(tf_keras)
        _randomize(model, seed=12)
        x = _inputs(model, seed=13)
        y = call_outputs(model, x if len(x) > 1 else x[0])
        h5 = tmp_path / f"{model.name}.h5"
        model.save(h5)
        ours = load_keras_model(h5)
        _close(_run(ours, x), y)
        path = tmp_path / f"{model.name}.keras"
        save_keras_model(ours, path)
        assert ours.get_submodule(next(iter(pads))).padding == "causal"  # left as it was
        theirs, got = _keras3_predict(path, x)
        _close(got, y)
        want = []
        for layer in model.layers:
            if layer.name in pads:
                want.append((pads[layer.name][0], "ZeroPadding1D"))
            want.append((layer.name, type(layer).__name__))
        assert [(a.name, type(a).__name__) for a in theirs.layers] == want
        own = tmp_path / f"{model.name}_by_keras3.keras"
        theirs.save(own)  # Keras 3's own layout: the pad layers numbered where it puts them
        assert _weight_layout(path) == _weight_layout(own)
        with zipfile.ZipFile(path) as z:
            entries = {e["config"]["name"]: e
                       for e in json.loads(z.read("config.json"))["config"]["layers"]}
        for lname, (pname, left) in pads.items():
            pad = theirs.get_layer(pname)
            assert tuple(pad.padding) == (left, 0) and pad.data_format == "channels_last"
            assert theirs.get_layer(lname).padding == "valid"
            if isinstance(model, tf_keras.Sequential):
                continue
            calls = len(model.get_config()["layers"][[
                e["name"] for e in model.get_config()["layers"]].index(lname)][
                "inbound_nodes"])
            pad_nodes = entries[pname]["inbound_nodes"]
            assert len(pad_nodes) == len(entries[lname]["inbound_nodes"]) == calls
            for i, node in enumerate(entries[lname]["inbound_nodes"]):  # node i reads pad i
                assert node["args"][0]["config"]["keras_history"] == [pname, i, 0]
        _close(_run(load_keras_model(path), x), y)


def test_causal_family_h5_through_sepconv_into_keras3(tmp_path):
    """The family's causal classifier as R keras 2 / tf-keras writes it (.h5) -> sepconv ->
    .keras -> Keras 3: tf-keras' predictions."""
    model, x, y = _build(tf_keras, "causal_classifier", seed=5, keras3=False)
    assert model.get_layer("sep2").padding == "causal"
    model.save(tmp_path / "tf.h5")
    theirs = _both_read(load_keras_model(tmp_path / "tf.h5"), tmp_path / "k3.keras", x, y)
    assert [a.name for a in theirs.layers][:4] == ["sep1_causal_pad", "sep1", "bn1",
                                                   "sep2_causal_pad"]


def test_channels_first_causal_separable_into_keras3(tmp_path):
    """A channels_first causal SeparableConv1D (sepconv-built: tf-keras runs channels_first
    separable convolutions on GPUs only): Keras 3's ZeroPadding1D takes data_format, so it
    is written too; Keras 3 predicts tf-keras' channels_last causal layer given the same
    weights on the transposed input; sepconv reads the file back (its ZeroPadding1D honours
    Keras 3's channels_first) and writes it as .keras again, and refuses it as .h5
    (tf-keras' ZeroPadding1D has no data_format)."""
    torch.manual_seed(0)
    args = dict(filters=4, kernel_size=3, strides=2, dilation_rate=1, depth_multiplier=2,
                padding="causal", bias_initializer="random_normal")
    model = torch.nn.Sequential(
        sepconv.SeparableConv1D(**args, data_format="channels_first", input_shape=(3, 13),
                                name="sc"),
        sepconv.SeparableConv1D(2, 2, padding="causal", dilation_rate=3,
                                data_format="channels_first", name="sc2"))
    x = [np.random.default_rng(1).standard_normal((2, 3, 13)).astype(np.float32)]
    y = _run(model, x)
    ref = tf_keras.Sequential([
        tf_keras.Input((13, 3)), tf_keras.layers.SeparableConv1D(**args),
        tf_keras.layers.SeparableConv1D(2, 2, padding="causal", dilation_rate=3)])
    for theirs_layer, ours_layer in zip(ref.layers, model):
        theirs_layer.set_weights(ours_layer.get_weights())
    want = ref.predict(x[0].transpose(0, 2, 1), verbose=0).transpose(0, 2, 1)
    _close(y, [want])
    save_keras_model(model, tmp_path / "cf.keras")
    theirs, got = _keras3_predict(tmp_path / "cf.keras", x)
    _close(got, [want])
    assert [a.name for a in theirs.layers] == ["sc_causal_pad", "sc", "sc2_causal_pad", "sc2"]
    assert theirs.get_layer("sc2_causal_pad").data_format == "channels_first"
    assert tuple(theirs.get_layer("sc2_causal_pad").padding) == (3, 0)
    back = load_keras_model(tmp_path / "cf.keras")
    _close(_run(back, x), [want])
    save_keras_model(back, tmp_path / "again.keras")
    _close(_keras3_predict(tmp_path / "again.keras", x)[1], [want])
    with pytest.raises(ValueError, match=r"'sc_causal_pad' \(ZeroPadding1D\) pads "
                                         r"data_format='channels_first'.*save as \.keras"):
        save_keras_model(back, tmp_path / "refused.h5")
    assert not (tmp_path / "refused.h5").exists()
    save_keras_model(model, tmp_path / "causal.h5")  # the original: causal, as tf-keras has
