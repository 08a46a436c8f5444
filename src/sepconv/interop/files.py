"""Read Keras model and weight files with h5py, zipfile and json only (no Keras).

Formats, as their writers lay them out (checked by saving with tf-keras 2.21 and Keras 3):

- HDF5 ``.h5`` model (tf-keras 2 / R keras ``save_model_hdf5``, Keras 3's legacy ``.h5``):
  root attributes ``model_config`` (JSON), ``keras_version``, ``backend``; group
  ``model_weights`` with attribute ``layer_names`` and one group per layer whose
  attribute ``weight_names`` lists the datasets in ``get_weights()`` order.
- HDF5 weights-only (``save_weights("w.h5")``, R ``save_model_weights_hdf5``): the same
  per-layer groups at the root, no ``model_config``.
- Keras v3 weights (``model.weights.h5`` inside a ``.keras`` zip, ``*.weights.h5``):
  ``layers/<snake_case class name>[_<n>]/vars/0..k`` numbered per class in the order of
  the model's layers (a Sequential's input layer not counted), nested layers' variables
  in sub-groups (``cell``, ``layer``, ...); Keras 3 adds the layer name as attribute
  ``name`` of ``vars``.
- ``.keras`` zip (tf-keras 2.13+ and Keras 3): ``config.json``, ``metadata.json``
  (``keras_version``) and ``model.weights.h5``.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from typing import Any, Dict, List, Optional, Tuple

import numpy as np


class KerasFileError(ValueError):
    """A file sepconv cannot read as a Keras model or weights (the message says why)."""


def snake_case(name: str) -> str:
    """Keras' ``to_snake_case`` of a class name (both writers use this form)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
    return name if not name.startswith("_") else "private" + name


def flavour_of(keras_version: Optional[str]) -> str:
    """``"keras3"`` for files Keras 3 wrote, ``"tf_keras"`` for tf-keras 2 / R keras."""
    if keras_version:
        major = str(keras_version).split(".")[0]
        if major.isdigit() and int(major) >= 3:
            return "keras3"
    return "tf_keras"


def _text(value: Any) -> str:
    return value.decode("utf8") if isinstance(value, (bytes, np.bytes_)) else str(value)


def _names(values: Any) -> List[str]:
    return [_text(v) for v in np.atleast_1d(values)] if values is not None else []


class KerasFile:
    """What a Keras file holds: ``config`` (the model's config dict, or ``None`` for a
    weights-only file), ``keras_version``, ``flavour`` and the weights (see
    :meth:`weights_by_name` / :meth:`weights_by_path`)."""

    def __init__(self, path: str, kind: str, config: Optional[dict], keras_version: Optional[str],
                 legacy_weights: Optional[Dict[str, List[np.ndarray]]] = None,
                 v3_weights: Optional[Dict[str, Tuple[List[np.ndarray], Optional[str]]]] = None,
                 legacy_names: Optional[Dict[str, List[str]]] = None,
                 v3_nested: Optional[Dict[str, Any]] = None):
        self.path = path
        self.kind = kind  # "h5", "keras", "weights_h5", "weights_v3"
        self.config = config
        self.keras_version = keras_version
        self.flavour = flavour_of(keras_version)
        #: the Keras backend that wrote an ``.h5`` file (its ``backend`` attribute:
        #: ``"tensorflow"``, ``"torch"``, ``"jax"``); ``None`` where the file does not say
        #: (a ``.keras`` file)
        self.backend: Optional[str] = None
        self.legacy_weights = legacy_weights
        self.v3_weights = v3_weights
        #: each layer's weight names (legacy HDF5): a nested model's start with its layers'
        self.legacy_names = legacy_names or {}
        #: a nested model's ``layers/<key>/layers`` tree (Keras v3 weights), by its key
        self.v3_nested = v3_nested or {}
        #: a ``.keras`` file's ``assets/`` entries (the lookup layers' vocabulary.txt), by
        #: their path under ``assets/``
        self.assets: Dict[str, bytes] = {}
        #: what ``compile`` was given: an ``.h5`` file's ``training_config`` (keys
        #: ``loss``, ``metrics``, ``loss_weights``, ``optimizer_config``, ...) or a
        #: ``.keras`` file's ``compile_config`` (``optimizer``, ``loss``, ...); ``None``
        #: for a model saved uncompiled
        self.training_config: Optional[dict] = None
        #: the compiled optimizer's variables, ``(name, array)`` in the optimizer's order
        #: (``.h5``: ``optimizer_weights``, named ``"Adam/m/dense/kernel:0"``; a
        #: ``.keras`` file's ``optimizer/vars``: names ``None``); ``None`` if not saved
        self.optimizer_weights: Optional[List[Tuple[Optional[str], np.ndarray]]] = None

    def assets_for(self, layer_names: List[str], class_names: List[str],
                   skip_inputs: bool) -> Dict[str, Dict[str, bytes]]:
        """Each top-level layer's asset files (``assets/layers/<key>/<file>``), by layer
        name, keyed by file name (a preprocessing layer's ``vocabulary.txt``)."""
        out: Dict[str, Dict[str, bytes]] = {}
        if not self.assets:
            return out
        for name, key in self._keys(layer_names, class_names, skip_inputs):
            prefix = f"layers/{key}/"
            files = {p[len(prefix):]: data for p, data in self.assets.items()
                     if p.startswith(prefix) and "/" not in p[len(prefix):]}
            if files:
                out[name] = files
        return out

    def _keys(self, layer_names: List[str], class_names: List[str],
              skip_inputs: bool) -> List[Tuple[str, str]]:
        keep = [(n, c) for n, c in zip(layer_names, class_names)
                if not (skip_inputs and c == "InputLayer")]
        return [(n, key) for (n, _), key in zip(keep, v3_keys([c for _, c in keep]))]

    def nested(self, name: str, layer_names: List[str], class_names: List[str],
               skip_inputs: bool) -> "KerasFile":
        """The weights of the nested model ``name`` (a layer of the model whose layers are
        ``layer_names`` / ``class_names``), as a file of their own."""
        if self.legacy_weights is not None:
            if name not in self.legacy_names:
                # tf-keras names a nested model's weights by their innermost layers
                # (``inner_dense/kernel:0``): a model nested deeper finds them here too
                return self
            # one group per layer of the nested model: tf-keras writes
            # ``<layer>/<weight>``, Keras 3 ``<model>/<layer>/<weight>``
            grouped: Dict[str, List[np.ndarray]] = {}
            names: Dict[str, List[str]] = {}
            for wname, array in zip(self.legacy_names[name],
                                    self.legacy_weights.get(name, [])):
                if wname.startswith(name + "/"):
                    wname = wname[len(name) + 1:]
                layer, _, rest = wname.partition("/")
                grouped.setdefault(layer, []).append(array)
                names.setdefault(layer, []).append(rest)
            return KerasFile(self.path, "nested", None, self.keras_version,
                             legacy_weights=grouped, legacy_names=names)
        key = dict(self._keys(layer_names, class_names, skip_inputs)).get(name)
        weights, nested = self.v3_nested.get(key, ({}, {}))
        return KerasFile(self.path, "nested", None, self.keras_version, v3_weights=weights,
                         v3_nested=nested)

    def weights_for(self, layer_names: List[str], class_names: List[str],
                    skip_inputs: bool) -> Dict[str, List[np.ndarray]]:
        """Weights of the given layers (in the model's layer order), by layer name."""
        if self.legacy_weights is not None:
            return {n: self.legacy_weights[n] for n in layer_names if n in self.legacy_weights}
        assert self.v3_weights is not None
        out: Dict[str, List[np.ndarray]] = {}
        for name, key in self._keys(layer_names, class_names, skip_inputs):
            arrays, saved_name = self.v3_weights.get(key, ([], None))
            if saved_name is not None and saved_name != name and arrays:
                raise KerasFileError(
                    f"{self.path}: the weights stored at layers/{key} belong to layer "
                    f"{saved_name!r}, but the model's layer at that place is {name!r}")
            out[name] = arrays
        return out


#: Keras 3 classes whose Python name (which names their weights' group) is not the name
#: their config is saved under.
_V3_PYTHON_NAMES = {"GroupQueryAttention": "GroupedQueryAttention"}


def v3_keys(class_names: List[str]) -> List[str]:
    """The ``layers/<key>`` group of each layer in a Keras v3 weights file, given the
    model's layer classes in its layer order: ``snake_case(class)`` (of the Python class:
    :data:`_V3_PYTHON_NAMES`), then ``_1``, ``_2``, ... for the next layers of the same
    class.  An alias (``Convolution1D``) counts as its class (``Conv1D``): the writer
    named the weights after the object's class."""
    from ..layers.base import KERAS_CLASSES
    used: Dict[str, int] = {}
    keys = []
    for cls in class_names:
        cls = KERAS_CLASSES.aliases.get(cls, cls)
        key = snake_case(_V3_PYTHON_NAMES.get(cls, cls))
        used[key] = used.get(key, -1) + 1
        keys.append(f"{key}_{used[key]}" if used[key] else key)
    return keys


def read(path: Any) -> KerasFile:
    """Open a Keras file of any supported kind; ``KerasFileError`` (one line) otherwise."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such Keras file: {path!r}")
    if os.path.isdir(path) and all(os.path.isfile(os.path.join(path, n))
                                   for n in ("config.json", "model.weights.h5")):
        return _read_keras_dir(path)  # Keras 3's save_model(..., zipped=False)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb")):
        from .saved_model import read_saved_model  # tf-keras' model.save("dir")
        return read_saved_model(path)
    if os.path.isdir(path):
        raise KerasFileError(f"{path} is a directory but not a Keras model (no "
                             f"saved_model.pb, or config.json and model.weights.h5); "
                             f"sepconv reads Keras .h5 and .keras files and tf-keras "
                             f"SavedModel directories")
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"PK"):
        return _read_keras_zip(path)
    if head == b"\x89HDF\r\n\x1a\n":
        return _read_h5(path, _open_h5(path, path))
    raise KerasFileError(f"{path} is not a Keras model file: expected an HDF5 .h5 file "
                         f"or a .keras zip archive")


def h5py_module():
    """h5py, or one line saying how to get it (it is the ``h5`` extra, not a dependency)."""
    try:
        import h5py
    except ImportError:
        raise ImportError('Keras model and weight files need h5py: pip install "sepconv[h5]" '
                          "(or pip install h5py)") from None
    return h5py


def _open_h5(source: Any, label: str):
    h5py = h5py_module()
    try:
        return h5py.File(source, "r")
    except (OSError, ValueError) as err:
        msg = str(err).split("\n")[0]
        raise KerasFileError(f"{label} is truncated or corrupted: HDF5 cannot open it "
                             f"({msg})") from None


def _read_h5(path: str, f, label: Optional[str] = None) -> KerasFile:
    label = label or path
    try:
        with f:
            attrs = f.attrs
            version = _text(attrs["keras_version"]) if "keras_version" in attrs else None
            if "model_config" in attrs:
                config = _json(attrs["model_config"], label, "model_config")
                if "model_weights" not in f:
                    raise KerasFileError(f"{label} has a model config but no weights "
                                         f"(group 'model_weights' is missing)")
                group = f["model_weights"]
                version = version or (_text(group.attrs["keras_version"])
                                      if "keras_version" in group.attrs else None)
                kf = KerasFile(path, "h5", config, version,
                               legacy_weights=_legacy_weights(group, label),
                               legacy_names=_legacy_names(group))
                if "backend" in attrs or "backend" in group.attrs:
                    kf.backend = _text(attrs["backend"] if "backend" in attrs
                                       else group.attrs["backend"])
                if "training_config" in attrs:
                    kf.training_config = _json(attrs["training_config"], label,
                                               "training_config")
                if "optimizer_weights" in f:
                    opt = f["optimizer_weights"]
                    kf.optimizer_weights = [(n, np.asarray(opt[n])) for n in
                                            _names(opt.attrs.get("weight_names")) if n]
                return kf
            if "layer_names" in attrs:
                return KerasFile(path, "weights_h5", None, version,
                                 legacy_weights=_legacy_weights(f, label))
            if "layers" in f or "vars" in f:
                weights, nested = _v3_tree(f)
                kf = KerasFile(path, "weights_v3", None, version, v3_weights=weights,
                               v3_nested=nested)
                if "optimizer" in f and "vars" in f["optimizer"]:
                    kf.optimizer_weights = [(None, a) for a in
                                            group_tree(f["optimizer"])["vars"]]
                return kf
            raise KerasFileError(f"{label} is an HDF5 file but not a Keras model or weights "
                                 f"file (no 'model_config', 'layer_names' or 'layers')")
    except KerasFileError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as err:
        msg = str(err).split("\n")[0]
        raise KerasFileError(f"{label} is truncated or corrupted: {msg}") from None


def _json(value: Any, label: str, what: str) -> dict:
    try:
        out = json.loads(_text(value))
    except ValueError as err:
        raise KerasFileError(f"{label}: {what} is not valid JSON ({err})") from None
    if not isinstance(out, dict):
        raise KerasFileError(f"{label}: {what} is not a Keras config (a JSON object)")
    return out


def _legacy_weights(group, label: str) -> Dict[str, List[np.ndarray]]:
    out = {}
    for name in _names(group.attrs.get("layer_names")):
        g = group[name]
        out[name] = [np.asarray(g[w]) for w in _names(g.attrs.get("weight_names"))
                     if w]
    return out


def _legacy_names(group) -> Dict[str, List[str]]:
    return {name: [w for w in _names(group[name].attrs.get("weight_names")) if w]
            for name in _names(group.attrs.get("layer_names"))}


class Arrays(list):
    """A layer's weight arrays (a list, in ``get_weights`` order) that also keep ``tree``,
    the layer's group of a Keras v3 weights file as :func:`group_tree` reads it (``None``
    for other files): a custom layer's weights are found there by attribute name, and
    nested layers come in the order of their group names (a ``StackedRNNCells``' cells
    by class name), which the loader puts back in ``get_weights`` order
    (:func:`sepconv.layers.rnn.keras3_saved_order`)."""

    def __init__(self, arrays=(), tree: Optional[Dict[str, Any]] = None):
        super().__init__(arrays)
        self.tree = tree

    @property
    def keras3(self) -> bool:
        """Whether the arrays come from a Keras v3 weights file."""
        return self.tree is not None


def group_tree(group) -> Dict[str, Any]:
    """A v3 weights group as ``{"vars": [arrays in order], "groups": {name: tree}}``."""
    arrays = []
    if "vars" in group:
        v = group["vars"]
        # 0..k, then named ones (Keras 3's lookup layers store "idf_weights")
        arrays = [np.asarray(v[k]) for k in sorted(
            v, key=lambda k: (0, int(k), "") if k.isdigit() else (1, 0, k))]
    return {"vars": arrays,
            "groups": {k: group_tree(group[k]) for k in group
                       if k != "vars" and hasattr(group[k], "keys")}}


def _v3_tree(f) -> Tuple[Dict[str, Tuple[List[np.ndarray], Optional[str]]], Dict[str, Any]]:
    """``layers/<key>`` -> (arrays in get_weights order, the saved layer name or None), and
    for a nested model's key (its own ``layers`` group) the same pair for its layers."""
    out, nested = {}, {}
    layers = f["layers"] if "layers" in f else {}
    for key in layers:
        group = layers[key]
        saved = None
        if "vars" in group and "name" in group["vars"].attrs:
            saved = _text(group["vars"].attrs["name"])
        tree = group_tree(group)
        out[key] = (Arrays(collect_tree(tree), tree), saved)
        if "layers" in group and hasattr(group["layers"], "keys"):
            nested[key] = _v3_tree(group)
    return out, nested


#: Nested layers whose weights come in ``get_weights`` order other than by name:
#: Bidirectional's forward layer first; MultiHeadAttention's query, key, value, output
#: (tf-keras names its sublayers with a leading underscore, Keras 3 without);
#: GroupQueryAttention's query, key, gate, value, output (underscored).
_NESTED_ORDER = ("forward_layer", "backward_layer", "query_dense", "key_dense",
                 "gate_dense", "value_dense", "output_dense")


def collect_tree(tree: Dict[str, Any]) -> List[np.ndarray]:
    """A layer's own variables (``vars/0..k``), then its nested layers' in name order
    (Keras walks attributes sorted by name; h5py lists groups sorted by name), except the
    pairs and quartets of :data:`_NESTED_ORDER`, which come in their ``get_weights``
    order."""
    arrays = list(tree["vars"])
    rank = {n: i for i, n in enumerate(_NESTED_ORDER)}
    for key in sorted(tree["groups"], key=lambda k: (rank.get(k.lstrip("_"), len(rank)), k)):
        arrays += collect_tree(tree["groups"][key])
    return arrays


def _read_keras_zip(path: str) -> KerasFile:
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            missing = {"config.json", "model.weights.h5"} - names
            if missing:
                raise KerasFileError(f"{path} is a zip archive but not a .keras model "
                                     f"(missing {', '.join(sorted(missing))})")
            config = _json(z.read("config.json"), path, "config.json")
            version = None
            if "metadata.json" in names:
                version = _json(z.read("metadata.json"), path,
                                "metadata.json").get("keras_version")
            data = z.read("model.weights.h5")
            assets = {n[len("assets/"):]: z.read(n) for n in names
                      if n.startswith("assets/") and not n.endswith("/")}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as err:
        raise KerasFileError(f"{path} is truncated or corrupted: {err}") from None
    label = f"{path} (model.weights.h5)"
    inner = _read_h5(path, _open_h5(io.BytesIO(data), label), label)
    if inner.v3_weights is None and inner.legacy_weights is None:
        raise KerasFileError(f"{label} holds no weights")
    kf = KerasFile(path, "keras", config, version, legacy_weights=inner.legacy_weights,
                   v3_weights=inner.v3_weights, legacy_names=inner.legacy_names,
                   v3_nested=inner.v3_nested)
    kf.assets = assets
    kf.training_config = config.get("compile_config")
    kf.optimizer_weights = inner.optimizer_weights
    return kf


def _read_keras_dir(path: str) -> KerasFile:
    def text(name):
        with open(os.path.join(path, name), "rb") as f:
            return f.read()

    config = _json(text("config.json"), path, "config.json")
    version = None
    if os.path.isfile(os.path.join(path, "metadata.json")):
        version = _json(text("metadata.json"), path, "metadata.json").get("keras_version")
    weights = os.path.join(path, "model.weights.h5")
    inner = _read_h5(weights, _open_h5(weights, weights))
    kf = KerasFile(path, "keras", config, version, legacy_weights=inner.legacy_weights,
                   v3_weights=inner.v3_weights, legacy_names=inner.legacy_names,
                   v3_nested=inner.v3_nested)
    kf.training_config = config.get("compile_config")
    kf.optimizer_weights = inner.optimizer_weights
    return kf
