"""Model files over the argument space: for every single-input layer class of
tests/fuzz_specs.py, a functional model with six branches, each the class with arguments
drawn from its lists (those the writing Keras accepts), random weights, saved by tf-keras
2.21 (.h5 and .keras, one model in both) and Keras 3.15 (.keras), loaded by sepconv in the
TF-free child (tests/keras_files.py): every branch's output equals what Keras' ``predict``
computes (its inference-mode call: keras_files.call_outputs).  The tf-keras .h5
models then go back through ``save_keras_model`` and tf-keras reads them to the same
outputs, and to .keras for Keras 3.  This is the loader's and the writer's path (weight
names and order per format, configs of the rare arguments), which the in-process fuzz
tests do not take.
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

from fuzz_specs import SPECS, eigen_3d_bug, make_input, randomize  # noqa: E402
from keras_files import Cases, call_outputs, check  # noqa: E402
from test_fuzz_keras3 import ABSENT, _torch_backend_only, keras3_kwargs  # noqa: E402

pytestmark = pytest.mark.slow

BRANCHES = 6
# Not in a model: a channels_first layer tf-keras cannot run on this CPU is dropped by the
# acceptance call below; TensorFlow's Eigen 3D bug is left out (fuzz_specs.eigen_3d_bug).
WRITERS = (("tf_keras", ".h5"), ("tf_keras", ".keras"), ("keras3", ".keras"))


def _branches(K, name, inp, x, seed):
    """Up to BRANCHES outputs of class ``name`` with drawn arguments, called on the
    symbolic ``inp``: those ``K`` accepts (on ``inp`` and on the data ``x``)."""
    kind, rank, spec = SPECS[name]
    rnd = random.Random(seed)
    outs, count = [], 0
    for attempt in range(BRANCHES * 4):
        kwargs = {key: rnd.choice(choices) for key, choices in spec.items()}
        if kwargs.get("data_format") == "channels_first" or eigen_3d_bug(name, kwargs):
            continue  # (channels_first: tf-keras' CPU kernels; the fuzz tests cover it)
        if K is keras:
            if _torch_backend_only(name, kwargs):
                continue
            kwargs = keras3_kwargs(name, kwargs)
        try:
            getattr(K.layers, name)(**kwargs)(x)  # eagerly too: some fail only there
            out = getattr(K.layers, name)(**kwargs, name=f"{name.lower()}_{attempt}")(inp)
        except Exception:  # noqa: BLE001 - arguments this Keras refuses
            continue
        outs += list(out) if isinstance(out, (list, tuple)) else [out]
        count += 1
        if count == BRANCHES:
            break
    return outs


def _model(K, name, seed):
    kind, rank, _ = SPECS[name]
    rng = np.random.default_rng(seed)
    x = make_input(kind, rank, rng)
    inp = K.Input(x.shape[1:], dtype="int64" if x.dtype.kind == "i" else "float32")
    outs = _branches(K, name, inp, x, seed)
    if not outs:
        return None
    model = K.Model(inp, outs)
    for layer in model.layers:
        randomize(layer, rng)
    return model, x


# (string inputs: tests/test_preprocessing_lookup.py's model files)
NAMES = sorted(n for n in SPECS if SPECS[n][0] != "str")


@pytest.fixture(scope="module")
def fuzz_results(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("fuzz_files"))
    cases = Cases(root)
    models = {}
    for i, name in enumerate(NAMES):
        built = {}  # writer -> (model, x, y): tf-keras' one model is saved in both formats
        for writer, ext in WRITERS:
            K = tf_keras if writer == "tf_keras" else keras
            if K is keras and name in ABSENT:
                continue
            if writer not in built:
                made = _model(K, name, seed=i)
                built[writer] = None if made is None else (*made, call_outputs(*made))
            if built[writer] is None:
                continue
            model, x, y = built[writer]
            path = os.path.join(root, f"{name}-{writer}{ext}")
            model.save(path)
            cases.add(f"{name}-{writer}{ext}", "model", path, [x], y)
            models[f"{name}-{writer}{ext}"] = (model, x, y, path)
    return dict(results=cases.run(timeout=900), models=models)


@pytest.mark.parametrize("name", NAMES)
def test_fuzzed_model_files_give_keras_outputs(fuzz_results, name):
    cases = [c for c in fuzz_results["models"] if c.split("-")[0] == name]
    assert cases, f"no {name} configuration was accepted by either Keras"
    for case in cases:
        r = fuzz_results["results"][case]
        try:
            check(r, atol=1e-4)
        except AssertionError as err:
            model = fuzz_results["models"][case][0]
            configs = [layer.get_config() for layer in model.layers[1:]]
            raise AssertionError(f"{case}: {err}\nlayers: {configs}") from None


# Classes whose tf-keras configurations this test's Keras 3 (torch backend) reads but
# computes otherwise or cannot run: "same" average pooling's divisor, LayerNormalization
# over several axes, bicubic / Lanczos resizing (see tests/test_fuzz_keras3.py).
KERAS3_TORCH_DIFFERS = {"AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
                        "LayerNormalization", "Resizing", "UpSampling2D"}


@pytest.mark.parametrize("name", NAMES)
def test_fuzzed_models_saved_back_read_in_keras(fuzz_results, name, tmp_path):
    """The tf-keras .h5 model, loaded, goes back to .h5 (tf-keras reads it to the same
    outputs) and to .keras, Keras 3's format (Keras 3 reads it to the same outputs, or
    sepconv refuses in one line where Keras 3 computes otherwise: tf-keras' hard_sigmoid,
    batch normalization over several axes, tf-keras-only classes)."""
    import sepconv

    case = f"{name}-tf_keras.h5"
    if case not in fuzz_results["models"]:
        pytest.skip(f"tf-keras accepted no drawn {name} configuration")
    model, x, y, path = fuzz_results["models"][case]
    ours = sepconv.load_keras_model(path)
    for ext, reader in ((".h5", tf_keras), (".keras", keras)):
        if ext == ".keras" and name in KERAS3_TORCH_DIFFERS:
            continue
        out = tmp_path / f"again{ext}"
        try:
            sepconv.save_keras_model(ours, out)
        except ValueError as err:
            assert ext == ".keras" and "Keras 3" in str(err), err
            continue
        theirs = reader.models.load_model(out)
        got = call_outputs(theirs, x)
        assert len(got) == len(y)
        for a, b in zip(got, y):
            np.testing.assert_allclose(a, b, atol=1e-4 * max(1.0, float(np.abs(b).max())),
                                       err_msg=f"{name} {ext}")
