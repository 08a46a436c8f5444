"""Helpers for the model-file tests: save Keras models with their inputs and outputs, then
load them with sepconv in ONE child process where TensorFlow and Keras cannot be imported.

The parent (a test module with TensorFlow) calls :func:`add_case` for every saved file,
then :func:`run_child` once; the child loads each file with sepconv, runs it on the saved
inputs and reports the largest error against the saved ``model.predict`` outputs, or the
one-line error message, per case.  A case with ``stream`` (chunk bounds along axis 1) also
runs its first input through ``sepconv.stream(model)`` chunk by chunk and compares each
chunk's output with ``stream_expected``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any, Dict, List, Sequence

import numpy as np

import sepconv

SRC = os.path.dirname(os.path.dirname(os.path.abspath(sepconv.__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))

# Blocks TensorFlow and both Kerases before sepconv is imported (an import raises).
BLOCKER = textwrap.dedent("""
    import sys
    BLOCKED = ("tensorflow", "keras", "tf_keras", "tensorboard")
    for _name in BLOCKED:
        sys.modules[_name] = None  # `import tensorflow` now raises ImportError
""")

# Test-local stand-ins for layers the family provides elsewhere: defined in the child only
# when KERAS_CLASSES lacks the class (they register themselves there, in that process).
LOCAL_LAYERS = textwrap.dedent("""
    from sepconv.layers.base import KERAS_CLASSES, Layer

    if "Add" not in KERAS_CLASSES:
        class Add(Layer):
            def __init__(self, name=None, trainable=None, dtype=None):
                super().__init__(name=name, trainable=trainable, dtype=dtype)
                self.built = True

            def forward(self, inputs):
                out = inputs[0]
                for x in inputs[1:]:
                    out = out + x
                return out

            def compute_output_shape(self, shapes):
                return tuple(shapes[0])

            def get_config(self):
                return self.base_config()
""")

CHILD = BLOCKER + textwrap.dedent("""
    import json, io, contextlib
    import numpy as np
    import torch
    import sepconv
    assert "h5py" not in sys.modules, "import sepconv imported h5py"
""") + LOCAL_LAYERS + textwrap.dedent("""
    from sepconv.interop import KerasFileError
    torch.set_num_threads(1)
    cases = json.load(open(sys.argv[1]))
    results = {}

    def as_input(x):  # text stays a numpy array of str (torch has no strings)
        return x if x.dtype.kind in "USO" else torch.from_numpy(x)

    def run(model, inputs):
        with torch.no_grad():
            out = model(*[as_input(x) for x in inputs])
        return [o.numpy() for o in (out if isinstance(out, list) else [out])]

    def compare(outs, expected):
        if len(outs) != len(expected):
            return f"{len(outs)} outputs, expected {len(expected)}"
        err = 0.0
        for o, e in zip(outs, expected):
            if o.shape != e.shape:
                return f"output shape {o.shape}, expected {e.shape}"
            err = max(err, float(np.max(np.abs(o - e)) / max(1.0, float(np.max(np.abs(e))))))
        return err

    for case in cases:
        r = {}
        try:
            inputs = [np.load(p) for p in case.get("inputs", [])]
            expected = [np.load(p) for p in case.get("expected", [])]
            custom = {}
            if case.get("custom"):  # a test module's CUSTOM_OBJECTS
                import importlib
                custom = {"custom_objects": importlib.import_module(
                    case["custom"]).CUSTOM_OBJECTS}
            if case.get("unsafe"):  # Lambda layers' bytecode runs
                custom["safe_mode"] = False
            if case["how"] == "model":
                model = sepconv.load_keras_model(case["file"], **custom)
                r["training"] = model.training
                r["names"] = [n for n, _ in model.named_children()]
                r["has_input_layer_class"] = "InputLayer" in KERAS_CLASSES
                r["type"] = type(model).__name__
                r["err"] = compare(run(model, inputs), expected)
                if case.get("stream"):  # chunks through sepconv.stream vs Keras' outputs
                    stream, got, bounds = sepconv.stream(model), [], case["stream"]
                    with torch.no_grad():
                        for a, b in zip(bounds, bounds[1:]):
                            got.append(stream(torch.from_numpy(inputs[0][:, a:b])).numpy())
                    r["stream_err"] = compare(got, [np.load(p) for p in
                                                    case["stream_expected"]])
                if r["type"] == "KerasFunctional" and len(inputs) > 1:
                    with torch.no_grad():  # one list instead of positional tensors
                        out = model([as_input(x) for x in inputs])
                    r["list_err"] = compare([o.numpy() for o in out], expected)
                    try:
                        model(as_input(inputs[0]))
                        r["count_error"] = None
                    except ValueError as e:
                        r["count_error"] = str(e)
                if case.get("finetune"):
                    model.train()
                    params = [p for p in model.parameters() if p.requires_grad]
                    opt = torch.optim.SGD(params, lr=0.01)
                    outs = model(*[torch.from_numpy(x) for x in inputs])
                    outs = outs if isinstance(outs, list) else [outs]
                    before = [p.detach().clone() for p in params]
                    sum((o ** 2).mean() for o in outs).backward()
                    opt.step()
                    # (a bias right before batch norm in train mode gets no gradient)
                    r["finetuned"] = any(not torch.equal(a, b) for a, b in
                                         zip(before, params)) and \
                        all(bool(torch.isfinite(p).all()) for p in params)
                if case.get("convert"):
                    from sepconv import cli
                    buf = io.StringIO()
                    with contextlib.redirect_stdout(buf):
                        rc = cli.main(["convert", case["file"], case["convert"]] +
                                      case.get("convert_args", []))
                    r["convert_rc"] = rc
                    r["convert_text"] = buf.getvalue()
                    again = torch.load(case["convert"], weights_only=False)
                    r["convert_err"] = compare(run(again.eval(), inputs), expected)
            elif case["how"] == "weights":
                model = sepconv.load_keras_model(case["model_file"])
                with torch.no_grad():
                    for p in model.parameters():
                        p.zero_()
                assert compare(run(model, inputs), expected) > 1e-3
                sepconv.load_keras_weights(model, case["file"])
                r["err"] = compare(run(model, inputs), expected)
            elif case["how"] == "error":
                try:
                    if case.get("into_model_file"):
                        model = sepconv.load_keras_model(case["into_model_file"])
                        sepconv.load_keras_weights(model, case["file"])
                    else:
                        sepconv.load_keras_model(case["file"], **custom)
                    r["error"] = None
                except (KerasFileError, ValueError, FileNotFoundError) as e:
                    r["error"] = str(e)
                    r["error_type"] = type(e).__name__
        except Exception as e:  # reported to the parent, which fails the case
            import traceback
            r["crash"] = traceback.format_exc()
        results[case["name"]] = r
    leaked = sorted(m for m, mod in sys.modules.items() if mod is not None and
                    m.split(".")[0] in BLOCKED)
    try:
        import tensorflow  # noqa: F401
        leaked.append("tensorflow importable")
    except ImportError:
        pass
    json.dump({"results": results, "leaked": leaked}, open(sys.argv[2], "w"))
""")


class Cases:
    """Collects the child's cases under ``root`` (a temporary directory)."""

    def __init__(self, root: str):
        self.root = str(root)
        self.cases: List[Dict[str, Any]] = []

    def save_arrays(self, name: str, arrays: Sequence[np.ndarray]) -> List[str]:
        paths = []
        for i, a in enumerate(arrays):
            p = os.path.join(self.root, f"{name}_{i}.npy")
            np.save(p, np.asarray(a))
            paths.append(p)
        return paths

    def add(self, name: str, how: str, file: str, inputs=(), expected=(), **extra) -> None:
        self.cases.append(dict(name=name, how=how, file=str(file),
                               inputs=self.save_arrays(name + "_x", inputs),
                               expected=self.save_arrays(name + "_y", expected), **extra))

    def run(self, timeout: int = 300) -> Dict[str, Any]:
        spec = os.path.join(self.root, "cases.json")
        out = os.path.join(self.root, "results.json")
        with open(spec, "w") as f:
            json.dump(self.cases, f)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([SRC, TESTS, env.get("PYTHONPATH", "")])
        proc = subprocess.run([sys.executable, "-c", CHILD, spec, out], env=env,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(f"child process failed:\n{proc.stderr[-4000:]}")
        with open(out) as f:
            data = json.load(f)
        assert data["leaked"] == [], f"TensorFlow/Keras imported in the child: {data['leaked']}"
        return data["results"]


#: what runs first in a child process that holds Keras 3 on its TensorFlow backend (R
#: keras3's and Python Keras 3's default; this process has Keras 3 on torch, and the backend
#: is fixed when keras is first imported): triton before TensorFlow, as conftest says
KERAS3_TF_PRELUDE = textwrap.dedent("""
    import importlib.util, os
    os.environ["KERAS_BACKEND"] = "tensorflow"
    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401
    import keras
    assert keras.backend.backend() == "tensorflow"
""")


def run_keras3_tensorflow(code: str, *args: str, timeout: int = 300) -> None:
    """Runs ``code`` (``sys.argv[1:]`` = ``args``) in one child process with Keras 3 on its
    TensorFlow backend, ``os`` and ``keras`` imported; the test modules importable by name
    (a test's own helpers, so the child builds the same cases)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SRC, TESTS, env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", KERAS3_TF_PRELUDE + textwrap.dedent(code),
                           *args], env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"Keras 3 (TensorFlow backend) child failed:\n"
                             f"{proc.stderr[-4000:]}")


def _array(v) -> np.ndarray:
    return np.asarray(v.detach().cpu() if hasattr(v, "detach") else v)  # (Keras 3 on torch)


def outputs(y) -> List[np.ndarray]:
    """``model.predict`` output(s) (or a model call's) as a list of numpy arrays."""
    if isinstance(y, (list, tuple)):
        return [_array(v) for v in y]
    if isinstance(y, dict):
        return [_array(v) for v in y.values()]
    return [_array(y)]


def call_outputs(model, x) -> List[np.ndarray]:
    """What ``model.predict(x)`` gives, from Keras' inference-mode call ``model(x,
    training=False)``: predict traces a tf.function (tf-keras) or builds a data iterator
    per model, seconds each in a fixture that writes many models."""
    return outputs(model(x, training=False))


def check(result: Dict[str, Any], atol: float = 1e-5) -> None:
    """Assert one child result: no crash, outputs within ``atol`` of scale, eval mode."""
    assert "crash" not in result, result["crash"]
    err = result["err"]
    assert not isinstance(err, str), err
    assert err <= atol, f"largest error {err:.3g} (relative to scale) > {atol}"
    if "training" in result:
        assert result["training"] is False
