"""The Keras Applications (R keras' ``application_*()`` = ``tf_keras.applications``; Keras 3's
``keras.applications``) load with one ``sepconv.load_keras_model`` call and give Keras'
numbers.

One model per family, ``weights=None`` (offline), at the family's smallest variant and
input.  Weights Keras initialises to a constant (biases, batch-norm statistics, gamma and
beta, the ``Normalization`` statistics of EfficientNet, ConvNeXt's layer scale) are drawn at
random: a batch norm at its initial statistics is a near-identity and would hide errors.
All models are built, run (``model(x, training=False)``: ``predict``'s numbers without its
per-model tracing, keras_files.call_outputs) and saved in ONE writer process (tf-keras:
``.h5`` and ``.keras``; Keras 3 on the torch backend: ``.keras``), then loaded in ONE child
process where TensorFlow and Keras cannot be imported.  Float32 outputs must match
``predict`` within 1e-4 of the largest output magnitude (``|ours - theirs| <= 1e-4 *
max|theirs|``, elementwise; no floor at 1, so small outputs are held to their own scale).
The per-model seconds (writer: build + call + save; child: load + forward) are printed
(``pytest -s``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

import sepconv  # noqa: E402
from keras_files import BLOCKER, SRC, TESTS, call_outputs  # noqa: E402

pytestmark = pytest.mark.slow

RTOL = 1e-4  # of the largest output magnitude
S = (32, 32, 3)  # the smallest input most families take


def _convnext_small(K, **kwargs):
    """ConvNeXt at depth 1 per stage with ``drop_path_rate`` > 0: the only way the
    applications write ``StochasticDepth`` (``ConvNeXtTiny`` takes no such argument)."""
    if K is tf_keras:
        module, name = tf_keras.src.applications.convnext, "model_name"
    else:
        module, name = keras.src.applications.convnext, "name"  # Keras 3's argument
    return module.ConvNeXt(depths=[1, 1, 1, 2], projection_dims=[8, 16, 24, 32],
                           drop_path_rate=0.5, weights=None, **{name: "convnext_depth1"},
                           **kwargs)


# id: (application name or builder, keyword arguments, pixel inputs in [0, 255] when the
# model has its own preprocessing (else [-1, 1], what ``preprocess_input`` gives)).
# Softmax heads that saturate at random weights get ``classifier_activation=None``.
CASES = {
    "VGG16": ("VGG16", dict(include_top=False, input_shape=S, pooling="max"), False),
    "ResNet50": ("ResNet50", dict(input_shape=S, classes=5, classifier_activation=None),
                 False),
    "ResNet50V2": ("ResNet50V2", dict(include_top=False, input_shape=S, pooling="avg"),
                   False),
    "InceptionV3": ("InceptionV3", dict(input_shape=(75, 75, 3), classes=5), False),
    "InceptionResNetV2": ("InceptionResNetV2",
                          dict(include_top=False, input_shape=(75, 75, 3)), False),
    "Xception": ("Xception", dict(input_shape=(71, 71, 3), classes=5), False),
    "MobileNet": ("MobileNet", dict(input_shape=S, alpha=0.5, classes=5), False),
    "MobileNetV2": ("MobileNetV2", dict(input_shape=S, alpha=0.35, classes=7), False),
    "MobileNetV3Small-minimalistic": (
        "MobileNetV3Small", dict(input_shape=S, classes=5, minimalistic=True), True),
    "MobileNetV3Small-no_preprocessing": (
        "MobileNetV3Small", dict(input_shape=S, include_top=False, pooling="max",
                                 include_preprocessing=False), False),
    "MobileNetV3Large": ("MobileNetV3Large", dict(input_shape=S, classes=4), True),
    "MobileNetV3Large-no_preprocessing": (
        "MobileNetV3Large", dict(input_shape=S, include_top=False, pooling="avg",
                                 include_preprocessing=False), False),
    "DenseNet121": ("DenseNet121", dict(input_shape=S, classes=5), False),
    "NASNetMobile": ("NASNetMobile", dict(input_shape=S, include_top=False, pooling="avg"),
                     False),
    "EfficientNetB0": ("EfficientNetB0", dict(input_shape=S, classes=5), True),
    "EfficientNetV2B0": ("EfficientNetV2B0", dict(input_shape=S, classes=5,
                                                  classifier_activation=None), True),
    "EfficientNetV2B0-no_preprocessing": (
        "EfficientNetV2B0", dict(input_shape=S, include_top=False, pooling="avg",
                                 include_preprocessing=False), False),
    "ConvNeXtTiny": ("ConvNeXtTiny", dict(input_shape=S, classes=5), True),
    "ConvNeXt-drop_path": (_convnext_small, dict(input_shape=S, classes=3), True),
    "RegNetX002": ("RegNetX002", dict(input_shape=S, classes=5), True),
    "RegNetY002": ("RegNetY002", dict(input_shape=S, include_top=False, pooling="max"),
                   True),
    "ResNetRS50": ("ResNetRS50", dict(input_shape=S, classes=5), True),
}
# Keras 3.15 has no RegNet or ResNetRS; its NASNetMobile refuses the torch backend
# ("not available with the torch backend at this time due to an outstanding bug").
KERAS3_CASES = [c for c in CASES if not c.startswith(("RegNet", "ResNetRS", "NASNet"))]
TF_KERAS_FILES = [f"{c}{ext}" for c in CASES for ext in (".h5", ".keras")]

# Cases sepconv cannot load yet: id prefix -> reason (xfail, strict).
KNOWN_FAILURES = {}


def _marked(ids):
    out = []
    for i in ids:
        reason = next((r for p, r in KNOWN_FAILURES.items() if i.startswith(p)), None)
        out.append(pytest.param(i, marks=pytest.mark.xfail(reason=reason, strict=True))
                   if reason else i)
    return out


def _randomize(model, rng):
    """Every float weight that is one constant (all its values equal) drawn at random:
    variances and scales (gamma) in [0.5, 1.5], the rest N(0, 0.2).  (One
    ``set_weights`` for the whole model: per layer, it cost seconds in tf-keras.)"""
    new = []
    for var, w in zip(model.weights, model.get_weights()):
        name = getattr(var, "path", None) or var.name
        if w.dtype.kind == "f" and w.size and np.all(w == w.flat[0]):
            if "variance" in name or "gamma" in name:
                w = rng.uniform(0.5, 1.5, w.shape).astype(w.dtype)
            else:
                w = rng.normal(0.0, 0.2, w.shape).astype(w.dtype)
        new.append(w)
    model.set_weights(new)


def build(K, case, seed):
    """Case ``case`` built with ``K`` (tf_keras or keras), randomized; its input batch."""
    what, kwargs, pixels = CASES[case]
    K.utils.set_random_seed(seed)
    fn = getattr(K.applications, what) if isinstance(what, str) else \
        (lambda **kw: what(K, **kw))
    model = fn(weights=None, **kwargs) if isinstance(what, str) else fn(**kwargs)
    rng = np.random.default_rng(seed)
    _randomize(model, rng)
    shape = (2,) + tuple(model.input_shape[1:])
    x = (rng.uniform(0, 255, shape) if pixels else rng.uniform(-1, 1, shape))
    return model, x.astype(np.float32)


CHILD = BLOCKER + textwrap.dedent("""
    import json, time
    import numpy as np
    import torch
    import sepconv
    torch.set_num_threads(1)
    cases = json.load(open(sys.argv[1]))
    results = {}
    for case in cases:
        r = {}
        try:
            t = time.perf_counter()
            model = sepconv.load_keras_model(case["file"])
            r["load_s"] = time.perf_counter() - t
            x = torch.from_numpy(np.load(case["x"]))
            t = time.perf_counter()
            with torch.no_grad():
                out = model(x)
            r["run_s"] = time.perf_counter() - t
            out = out if isinstance(out, list) else [out]
            errs = []
            for o, p in zip(out, case["y"]):
                y = np.load(p)
                if tuple(o.shape) != y.shape:
                    raise AssertionError(f"output shape {tuple(o.shape)}, expected {y.shape}")
                errs.append(float(np.max(np.abs(o.numpy() - y)) / np.max(np.abs(y))))
            r["outputs"] = len(out)
            r["err"] = max(errs)
            r["training"] = model.training
            r["names"] = [n for n, _ in model.named_children()]
        except Exception as e:
            r["error"] = f"{type(e).__name__}: {str(e)[:600]}"
        results[case["name"]] = r
    leaked = sorted(m for m, mod in sys.modules.items() if mod is not None and
                    m.split(".")[0] in BLOCKED)
    json.dump({"results": results, "leaked": leaked}, open(sys.argv[2], "w"))
""")


def run_child(root, cases):
    """Load ``cases`` ({name, file, x, y}) in one child without TensorFlow or Keras."""
    spec, out = os.path.join(root, "cases.json"), os.path.join(root, "results.json")
    with open(spec, "w") as f:
        json.dump(cases, f)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SRC, TESTS, env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", CHILD, spec, out], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"child process failed:\n{proc.stderr[-4000:]}"
    with open(out) as f:
        data = json.load(f)
    assert data["leaked"] == [], f"TensorFlow/Keras imported in the child: {data['leaked']}"
    return data["results"]


def write_and_load(K, case_ids, exts, root):
    """Every case built with ``K``, saved as ``exts``, loaded in the child: ``{file id:
    result}`` with the writer's numbers (expected outputs, seconds) merged in."""
    os.makedirs(root, exist_ok=True)
    cases, meta = [], {}
    for seed, case in enumerate(case_ids):
        t = time.perf_counter()
        model, x = build(K, case, seed)
        ys = call_outputs(model, x)
        xp = os.path.join(root, f"{case}_x.npy")
        np.save(xp, x)
        yp = []
        for i, y in enumerate(ys):
            yp.append(os.path.join(root, f"{case}_y{i}.npy"))
            np.save(yp[-1], y)
        for ext in exts:
            path = os.path.join(root, case + ext)
            model.save(path)
            cases.append(dict(name=case + ext, file=path, x=xp, y=yp))
        meta[case] = dict(write_s=time.perf_counter() - t, layers=len(model.layers),
                          keras_names=[layer.name for layer in model.layers], outputs=ys,
                          x=x)
    results = run_child(root, cases)
    for name, r in results.items():
        case = name.rsplit(".", 1)[0]
        r.update(case=case, file=os.path.join(root, name), **meta[case])
    print(f"\n{K.__name__} {K.__version__}: seconds per model (writer: build, call, "
          f"save {'+'.join(exts)}; sepconv child: load + forward, 1 thread)")
    for case in case_ids:
        child = [results[case + ext] for ext in exts]
        print(f"  {case:36s} {meta[case]['layers']:4d} layers  writer "
              f"{meta[case]['write_s']:5.1f}  sepconv " +
              " ".join(f"{r.get('load_s', 0) + r.get('run_s', 0):4.1f}" for r in child) +
              "  error/scale " + " ".join(f"{r.get('err', float('nan')):.1e}" for r in child))
    return results


def check_result(r):
    assert "error" not in r, r["error"]
    assert r["training"] is False
    # Keras' layer names name the modules (a TensorFlow-op node's dots as "_")
    missing = {n.replace(".", "_") for n in r["keras_names"]} - set(r["names"])
    assert not missing, f"layers missing or renamed: {sorted(missing)[:5]}"
    for y in r["outputs"]:
        # the comparison means something: outputs vary, no saturated probability
        assert np.std(y) > 1e-3 * np.max(np.abs(y)), "degenerate outputs"
        assert not np.any(np.isclose(y, 1.0, atol=1e-4) & (np.abs(y) <= 1)), \
            "a saturated softmax output"
    assert r["err"] <= RTOL, f"largest error {r['err']:.3g} of the output scale > {RTOL}"


@pytest.fixture(scope="module")
def tf_keras_results(tmp_path_factory):
    return write_and_load(tf_keras, list(CASES), (".h5", ".keras"),
                          str(tmp_path_factory.mktemp("apps_tf_keras")))


@pytest.mark.parametrize("name", _marked(TF_KERAS_FILES))
def test_tf_keras_application_loads_with_keras_numbers(tf_keras_results, name):
    check_result(tf_keras_results[name])


@pytest.fixture(scope="module")
def keras3_results(tmp_path_factory):
    return write_and_load(keras, KERAS3_CASES, (".keras",),
                          str(tmp_path_factory.mktemp("apps_keras3")))


@pytest.mark.parametrize("name", _marked([f"{c}.keras" for c in KERAS3_CASES]))
def test_keras3_application_loads_with_keras_numbers(keras3_results, name):
    """The same cases from Keras 3.15 (torch backend): its ``.keras`` files."""
    check_result(keras3_results[name])


def _close_to(got, want):
    for a, b in zip(got, want):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=RTOL * float(np.max(np.abs(b))))


@pytest.mark.parametrize("case", ["EfficientNetB0", "MobileNetV3Large",
                                  "ConvNeXt-drop_path"])  # (ConvNeXt's stem: a Sequential)
def test_tf_keras_application_written_back_reads_in_tf_keras(tf_keras_results, case,
                                                             tmp_path):
    """tf-keras .h5 -> sepconv -> ``save_keras_model`` (.h5) -> ``tf_keras.models.
    load_model``: its ``predict`` gives the original model's outputs.  (tf-keras needs
    ConvNeXt's ``LayerScale`` and ``StochasticDepth`` in ``custom_objects``, for its own
    files too.)"""
    r = tf_keras_results[f"{case}.h5"]
    out = str(tmp_path / "again.h5")
    sepconv.save_keras_model(sepconv.load_keras_model(r["file"]), out)
    from tf_keras.src.applications import convnext
    theirs = tf_keras.models.load_model(out, custom_objects={
        "LayerScale": convnext.LayerScale, "StochasticDepth": convnext.StochasticDepth})
    assert len(theirs.layers) == r["layers"]
    _close_to(call_outputs(theirs, r["x"]), r["outputs"])


@pytest.mark.parametrize("case", ["EfficientNetB0", "MobileNetV3Small-minimalistic",
                                  "ConvNeXt-drop_path"])  # (ConvNeXt's stem: a Sequential)
def test_keras3_application_written_back_reads_in_keras3(keras3_results, case, tmp_path):
    """Keras 3 .keras -> sepconv -> ``save_keras_model`` (.keras) -> ``keras.saving.
    load_model``: the original outputs.  (ConvNeXt's own layers go back to Keras 3 in
    tests/test_applications_layers.py's small models.)"""
    r = keras3_results[f"{case}.keras"]
    out = str(tmp_path / "again.keras")
    sepconv.save_keras_model(sepconv.load_keras_model(r["file"]), out)
    theirs = keras.saving.load_model(out)
    assert len(theirs.layers) == r["layers"]
    _close_to(call_outputs(theirs, r["x"]), r["outputs"])
