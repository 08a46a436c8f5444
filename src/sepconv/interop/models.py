"""Whole Keras models in and out: ``load_keras_model``, ``load_keras_weights``,
``save_keras_model`` and the ``summary`` table.

Every Keras class name is looked up in :data:`sepconv.layers.base.KERAS_CLASSES` (one
table, filled by the layer classes themselves), each layer built with
``cls.from_config(config)`` and loaded with ``layer.set_weights(arrays)``: a layer added
to the family is loadable with no change here.  Reading uses h5py, zipfile and json only.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from .. import activations as _activations
from ..layers import base as _base
from . import files as _files
from .files import KerasFileError

_MODEL_CLASSES = ("Sequential", "Functional", "Model")
_INPUT = "InputLayer"
#: Keras 3 argument names -> tf-keras' (used when the class takes only the latter).
_RENAMED_ARGS = {"negative_slope": "alpha", "batch_shape": "batch_input_shape"}
#: Config keys that change the numbers unless at these values: refused, if the sepconv
#: class does not take them, rather than silently dropped.
_MUST_BE_DEFAULT = {"groups": (1, None), "renorm": (False, None), "lora_rank": (None, 0),
                    "quantization_config": (None,), "time_major": (False, None),
                    "mask_zero": (False, None)}


# -- configs ---------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """A Keras 3 config value in tf-keras' form: dtype policies as their name, functions
    serialised as ``{"class_name": "function", "config": name}`` as the name."""
    if isinstance(value, dict):
        cls = value.get("class_name")
        if cls in ("DTypePolicy", "Policy", "FloatDTypePolicy") and \
                isinstance(value.get("config"), dict) and "name" in value["config"]:
            return value["config"]["name"]
        if cls == "function" and isinstance(value.get("config"), str):
            return value["config"]
        if cls == "__tuple__" and "items" in value.get("config", {}):
            return tuple(_plain(v) for v in value["config"]["items"])
        return {k: _plain(v) for k, v in value.items() if k != "shared_object_id"}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _is_custom(entry: dict) -> bool:
    registered = entry.get("registered_name") or ""
    module = entry.get("module") or ""
    return ">" in registered or ">" in str(entry.get("class_name", "")) or \
        (bool(module) and not module.split(".")[0] in ("keras", "tf_keras", "tensorflow"))


def _unsupported(entry: dict, name: str) -> KerasFileError:
    cls = entry.get("class_name")
    what = "a custom object " if _is_custom(entry) else ""
    if cls in _MODEL_CLASSES:
        return KerasFileError(f"Layer {name!r} is a nested {cls} model, which sepconv does "
                              f"not load: flatten it into one model before saving")
    return KerasFileError(
        f"Layer {name!r} has class {cls!r}, {what}which sepconv does not map. Supported "
        f"layers: {', '.join(sorted(_base.KERAS_CLASSES))}")


def build_layer(entry: dict, flavour: str = "tf_keras") -> torch.nn.Module:
    """A sepconv layer from one Keras layer entry ``{"class_name", "config"}``, computing
    with ``flavour``'s formulas; ``KerasFileError`` naming the layer on any failure."""
    config = _plain(dict(entry.get("config") or {}))
    name = config.get("name") or entry.get("name") or "?"
    cls = _base.KERAS_CLASSES.get(entry.get("class_name"))
    if cls is None or _is_custom(entry):  # a custom "Dense" is not Keras' Dense
        raise _unsupported(entry, name)
    known = cls._config_keys() if hasattr(cls, "_config_keys") else set(config)
    for new, old in _RENAMED_ARGS.items():
        if new in config and new not in known and old in known and old not in config:
            config[old] = config.pop(new)
    for key, defaults in _MUST_BE_DEFAULT.items():
        if key in config and key not in known and config[key] not in defaults:
            raise KerasFileError(f"Layer {name!r} ({entry.get('class_name')}) has "
                                 f"{key}={config[key]!r}, which sepconv's "
                                 f"{cls.__name__} does not support")
    try:
        with _activations.keras_flavour(flavour):
            layer = cls.from_config(config)
    except Exception as err:  # noqa: BLE001 - any failure is this layer's, said in one line
        raise KerasFileError(f"Layer {name!r} ({entry.get('class_name')}): "
                             f"{_one_line(err)}") from None
    return layer


def _load_layer_weights(layer: torch.nn.Module, arrays: List[np.ndarray], name: str,
                        input_shape: Any, label: str) -> None:
    if not hasattr(layer, "set_weights"):
        if arrays:
            raise KerasFileError(f"{label}: layer {name!r} cannot take weights")
        return
    built = getattr(layer, "built", True)
    if not arrays and not built:
        return  # a layer without weights (or built at its first call)
    try:
        if arrays and not built and input_shape is not None:
            # the graph's shape is exact; the weights alone may not tell every axis
            layer._build_checked(_as_shape(input_shape), device=None)
        layer.set_weights(arrays)
    except Exception as err:  # noqa: BLE001
        raise KerasFileError(f"{label}: weights of layer {name!r} "
                             f"({type(layer).__name__}) do not fit: {_one_line(err)}") from None


def _one_line(err: BaseException) -> str:
    msg = " ".join(str(err).split())
    return msg if isinstance(err, (ValueError, TypeError)) else f"{type(err).__name__}: {msg}"


def _as_shape(shape: Any) -> Any:
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        return [tuple(s) for s in shape]
    return tuple(shape) if isinstance(shape, (list, tuple)) else shape


def _output_shape(layer: Any, shape: Any) -> Any:
    if shape is None or not hasattr(layer, "compute_output_shape"):
        return None
    try:
        out = layer.compute_output_shape(_as_shape(shape))
    except Exception:  # noqa: BLE001 - a shape table entry is optional
        return None
    if isinstance(out, torch.Size):
        out = tuple(out)
    return out


# -- the functional graph --------------------------------------------------------------
Ref = Tuple[str, int, int]


def _parse_ref(value: Any) -> Optional[Ref]:
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        h = value["config"]["keras_history"]
        return (str(h[0]), int(h[1]), int(h[2]))
    return None


def _keras3_args(value: Any) -> Any:
    """Keras 3 node arguments with tensors as ``("ref", name, node, index)`` markers."""
    ref = _parse_ref(value)
    if ref is not None:
        return ("__ref__",) + ref
    if isinstance(value, list):
        return [_keras3_args(v) for v in value]
    if isinstance(value, dict):
        return {k: _keras3_args(v) for k, v in value.items()}
    return value


def _refs_in(value: Any) -> List[Ref]:
    if isinstance(value, tuple) and value and value[0] == "__ref__":
        return [tuple(value[1:])]
    if isinstance(value, (list, tuple)):
        return [r for v in value for r in _refs_in(v)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in _refs_in(v)]
    return []


def _endpoints(value: Any) -> List[Ref]:
    """``input_layers`` / ``output_layers``: ``[name, node, index]`` or a list of them
    (Keras 3 may write a dict for named inputs)."""
    if isinstance(value, dict):
        value = list(value.values())
    if value and isinstance(value[0], str):
        value = [value]
    return [(str(v[0]), int(v[1]), int(v[2])) for v in value]


class KerasFunctional(torch.nn.Module):
    """A Keras functional model: runs its layer graph.

    Submodules are the layers, named by their Keras names.  ``forward(*inputs)`` takes the
    inputs in the model's input order (or one list of them) and returns one tensor, or a
    list for several outputs, in the model's output order.
    """

    def __init__(self, name: str, layers: "OrderedDict[str, torch.nn.Module]",
                 inputs: List[Ref], outputs: List[Ref], steps: List[Tuple[str, int, Any, Any]],
                 input_shapes: List[Any]):
        super().__init__()
        self.keras_name = name
        for lname, layer in layers.items():
            self.add_module(lname, layer)
        self.input_refs = list(inputs)
        self.output_refs = list(outputs)
        self.steps = list(steps)  # (layer name, node index, args, kwargs) in run order
        self.keras_input_shapes = list(input_shapes)

    def forward(self, *inputs):
        if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)) and \
                len(self.input_refs) > 1:
            inputs = tuple(inputs[0])
        if len(inputs) != len(self.input_refs):
            raise ValueError(f"Model {self.keras_name!r} takes {len(self.input_refs)} "
                             f"input{'s' if len(self.input_refs) != 1 else ''} "
                             f"({', '.join(r[0] for r in self.input_refs)}); received "
                             f"{len(inputs)}")
        values: Dict[Ref, Any] = {}
        modules = dict(self.named_children())
        for ref, x in zip(self.input_refs, inputs):
            if not isinstance(x, torch.Tensor):
                x = torch.as_tensor(np.asarray(x))
            if ref[0] in modules:  # an InputLayer: Keras' cast to the input's dtype
                x = modules[ref[0]](x)
            values[ref] = x

        def resolve(v):
            if isinstance(v, tuple) and v and v[0] == "__ref__":
                return values[tuple(v[1:])]
            if isinstance(v, list):
                return [resolve(u) for u in v]
            if isinstance(v, dict):
                return {k: resolve(u) for k, u in v.items()}
            return v

        for lname, node, args, kwargs in self.steps:
            out = modules[lname](*resolve(args), **resolve(kwargs))
            outs = out if isinstance(out, (list, tuple)) else [out]
            for i, t in enumerate(outs):
                values[(lname, node, i)] = t
        result = [values[r] for r in self.output_refs]
        return result[0] if len(result) == 1 else result

    def extra_repr(self) -> str:
        return (f"name={self.keras_name!r}, inputs={[r[0] for r in self.input_refs]}, "
                f"outputs={[r[0] for r in self.output_refs]}")


def _build_functional(config: dict, flavour: str, weights: Any, label: str):
    entries = config.get("layers") or []
    by_name = {}
    for e in entries:
        lname = e.get("name") or (e.get("config") or {}).get("name")
        by_name[lname] = e
    inputs = _endpoints(config.get("input_layers") or [])
    outputs = _endpoints(config.get("output_layers") or [])
    layers: "OrderedDict[str, torch.nn.Module]" = OrderedDict()
    shapes: Dict[Ref, Any] = {}
    input_shapes = []
    pending = []  # (layer name, node index, args, kwargs, refs)
    for lname, e in by_name.items():
        cls = e.get("class_name")
        if cls == _INPUT:
            c = _plain(e.get("config") or {})
            shape = c.get("batch_input_shape", c.get("batch_shape"))
            shapes[(lname, 0, 0)] = None if shape is None else tuple(shape)
            if _INPUT in _base.KERAS_CLASSES:  # Keras' model.layers lists the inputs too
                layers[lname] = build_layer(e, flavour)
            continue
        if "." in lname or not lname:
            raise KerasFileError(f"{label}: layer name {lname!r} cannot name a torch module")
        layers[lname] = build_layer(e, flavour)
        for node_index, node in enumerate(e.get("inbound_nodes") or []):
            if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
                args = _keras3_args(node.get("args") or [])
                kwargs = _keras3_args(node.get("kwargs") or {})
            else:  # tf-keras: [[name, node, index, kwargs], ...]
                refs = [("__ref__", str(n[0]), int(n[1]), int(n[2])) for n in node]
                args = [refs[0] if len(refs) == 1 else refs]
                kwargs = {}
                if len(node) == 1 and len(node[0]) > 3 and isinstance(node[0][3], dict):
                    kwargs = {k: v for k, v in node[0][3].items() if not _refs_in(
                        _keras3_args(v))}
            if _refs_in(kwargs):
                raise KerasFileError(f"{label}: layer {lname!r} is called with tensors as "
                                     f"keyword arguments, which sepconv does not run")
            kwargs = {k: v for k, v in kwargs.items() if k not in ("training", "mask")}
            pending.append((lname, node_index, args, kwargs, _refs_in(args)))
    input_shapes = [shapes.get(r) for r in inputs]
    for r in inputs:
        if r not in shapes:
            raise KerasFileError(f"{label}: model input {r[0]!r} is not an InputLayer")
    # Run order: a node runs once every node it reads from has run.
    done = {(r[0], r[1]) for r in shapes}
    steps, loaded = [], set()
    while pending:
        ready = [p for p in pending if all((r[0], r[1]) in done for r in p[4])]
        if not ready:
            missing = sorted({r[0] for p in pending for r in p[4] if (r[0], r[1]) not in done})
            raise KerasFileError(f"{label}: the layer graph reads tensors no layer makes "
                                 f"(from {', '.join(missing)})")
        for p in ready:
            pending.remove(p)
            lname, node_index, args, kwargs, refs = p
            layer = layers[lname]
            in_shapes = [shapes.get(r) for r in refs]
            in_shape = None if not in_shapes or any(s is None for s in in_shapes) else (
                in_shapes[0] if len(in_shapes) == 1 else in_shapes)
            if lname not in loaded:  # a shared layer's first call in this model
                _load_layer_weights(layer, weights.get(lname, []), lname, in_shape, label)
                loaded.add(lname)
            out = _output_shape(layer, in_shape)
            for i, s in enumerate(out if isinstance(out, list) else [out]):
                shapes[(lname, node_index, i)] = s
            done.add((lname, node_index))
            steps.append((lname, node_index, args, kwargs))
    for r in outputs:
        if (r[0], r[1]) not in done:
            raise KerasFileError(f"{label}: model output {r[0]!r} is not made by the graph")
    model = KerasFunctional(config.get("name", "model"), layers, inputs, outputs, steps,
                            input_shapes)
    model.keras_output_shapes = {n: shapes.get((n, 0, 0)) for n in layers}
    for lname, layer in layers.items():  # layers no node reached still get weights
        if lname not in loaded and (lname, 0, 0) not in shapes:
            _load_layer_weights(layer, weights.get(lname, []), lname, None, label)
    return model


def _build_sequential(config: dict, flavour: str, weights: Any, label: str):
    entries = config["layers"] if isinstance(config, dict) else config
    layers: "OrderedDict[str, torch.nn.Module]" = OrderedDict()
    shape = config.get("build_input_shape") if isinstance(config, dict) else None
    shape = tuple(shape) if isinstance(shape, list) and shape and not isinstance(
        shape[0], list) else None
    input_shape = shape
    out_shapes = {}
    for e in entries:
        c = _plain(e.get("config") or {})
        lname = c.get("name") or e.get("name")
        if e.get("class_name") == _INPUT:
            shape = c.get("batch_input_shape", c.get("batch_shape"))
            shape = input_shape = None if shape is None else tuple(shape)
            if _INPUT not in _base.KERAS_CLASSES:
                continue
        if "." in (lname or "."):
            raise KerasFileError(f"{label}: layer name {lname!r} cannot name a torch module")
        layer = build_layer(e, flavour)
        if shape is None:
            shape = c.get("batch_input_shape", c.get("batch_shape"))
            shape = None if shape is None else tuple(shape)
            input_shape = input_shape or shape
        _load_layer_weights(layer, weights.get(lname, []), lname, shape, label)
        shape = _output_shape(layer, shape)
        out_shapes[lname] = shape
        layers[lname] = layer
    model = torch.nn.Sequential(layers)
    model.keras_name = config.get("name", "sequential") if isinstance(config, dict) \
        else "sequential"
    model.keras_input_shapes = [input_shape]
    model.keras_output_shapes = out_shapes
    return model


def _layer_list(config: Any) -> Tuple[List[str], List[str]]:
    """Layer names and classes in model order (Keras <= 2.2 wrote a Sequential's config
    as the bare list of layers)."""
    names, classes = [], []
    for e in (config if isinstance(config, list) else config.get("layers") or []):
        c = e.get("config") or {}
        names.append(e.get("name") or c.get("name"))
        classes.append(e.get("class_name"))
    return names, classes


def load_keras_model(path: Any) -> torch.nn.Module:
    """A Keras model file as a torch module, in eval mode.

    ``path``: an HDF5 ``.h5`` file written by tf-keras 2 / R keras (``model.save("m.h5")``,
    ``save_model_hdf5(model, "m.h5")``) or Keras 3, or a ``.keras`` file written by
    tf-keras 2.13+ or Keras 3.  A Sequential model becomes a ``torch.nn.Sequential``, a
    functional one a :class:`KerasFunctional`; submodules carry the Keras layer names.
    Layers compute with the formulas of the Keras that wrote the file (Keras 3's
    ``hard_sigmoid`` for a Keras 3 file, tf-keras' for tf-keras and R files).  Raises
    ``KerasFileError`` (a ``ValueError``) with one line for files that are not Keras models,
    truncated or corrupted files, layers sepconv does not map and custom objects.
    """
    kf = _files.read(path)
    label = os.fspath(path)
    if kf.config is None:
        raise KerasFileError(f"{label} holds weights only: build the model with sepconv and "
                             f"call sepconv.load_keras_weights(model, {label!r})")
    top = kf.config
    cls = top.get("class_name")
    config = top.get("config") or {}
    if cls not in _MODEL_CLASSES:
        if cls in _base.KERAS_CLASSES or cls == _INPUT:
            raise KerasFileError(f"{label} holds a single {cls} layer, not a model")
        raise KerasFileError(f"{label}: the model has class {cls!r}, a custom model class "
                             f"sepconv cannot rebuild (supported: Sequential and functional "
                             f"models)")
    names, classes = _layer_list(config)
    weights = kf.weights_for(names, classes, skip_inputs=cls == "Sequential")
    if cls == "Sequential":
        model = _build_sequential(config, kf.flavour, weights, label)
    else:
        model = _build_functional(config, kf.flavour, weights, label)
    model.keras_version = kf.keras_version
    model.keras_flavour = kf.flavour
    return model.eval()


def _keras_layers(module: torch.nn.Module) -> "OrderedDict[str, torch.nn.Module]":
    """The module's Keras layers by Keras name, in model order."""
    out: "OrderedDict[str, torch.nn.Module]" = OrderedDict()
    for child_name, child in module.named_children():
        out[getattr(child, "name", child_name)] = child
    return out


def load_keras_weights(module: torch.nn.Module, path: Any) -> torch.nn.Module:
    """Load a Keras weights file (or a whole model file's weights) into ``module``.

    ``module``: a ``torch.nn.Sequential`` of sepconv layers, a model from
    :func:`load_keras_model`, or any module whose direct children are sepconv layers.
    Layers are matched by their Keras names (``.h5`` files) or by class and position as
    Keras does (``.weights.h5`` / ``.keras``).  Every layer is checked before any weight is
    written; ``KerasFileError`` names the first mismatch.  Returns ``module``.
    """
    kf = _files.read(path)
    label = os.fspath(path)
    layers = _keras_layers(module)
    names = list(layers)
    classes = [type(layer).__name__ for layer in layers.values()]
    if isinstance(module, KerasFunctional) and kf.v3_weights is not None:
        # the file counts the model's input layers, which have no module here
        top = kf.config["config"] if kf.config else None
        if top:
            names, classes = _layer_list(top)
        else:
            extra = [r[0] for r in module.input_refs if r[0] not in layers]
            names = extra + names
            classes = [_INPUT] * len(extra) + classes
    weights = kf.weights_for(names, classes, skip_inputs=not isinstance(module, KerasFunctional))
    if kf.legacy_weights is not None:
        extra = [n for n, arrays in kf.legacy_weights.items() if arrays and n not in layers]
        if extra:
            raise KerasFileError(f"{label} has weights for layer{'s' if len(extra) > 1 else ''} "
                                 f"{', '.join(map(repr, extra))}, which the module lacks "
                                 f"(its layers: {', '.join(layers)})")
    elif kf.v3_weights is not None:
        n_file = sum(1 for arrays, _ in kf.v3_weights.values() if arrays)
        n_used = sum(1 for n in names if weights.get(n))
        if n_file != n_used:
            raise KerasFileError(f"{label} holds weights for {n_file} layers; the module's "
                                 f"layers take {n_used} of them: the models differ")
    # check everything, then write
    plan = []
    for lname, layer in layers.items():
        arrays = weights.get(lname, [])
        have = layer.get_weights() if hasattr(layer, "get_weights") and getattr(
            layer, "built", True) else None
        if have is not None:
            if len(have) != len(arrays) or any(tuple(a.shape) != tuple(b.shape)
                                               for a, b in zip(have, arrays)):
                raise KerasFileError(
                    f"{label}: layer {lname!r} ({type(layer).__name__}) has weights of "
                    f"shapes {[tuple(a.shape) for a in have]}; the file has "
                    f"{[tuple(np.shape(b)) for b in arrays]}")
        elif arrays and not hasattr(layer, "set_weights"):
            raise KerasFileError(f"{label}: module {lname!r} cannot take weights")
        plan.append((lname, layer, arrays))
    for lname, layer, arrays in plan:
        if arrays or hasattr(layer, "set_weights"):
            _load_layer_weights(layer, arrays, lname, None, label)
    return module


# -- saving ----------------------------------------------------------------------------
def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.ndarray, torch.Size)):
        return list(value)
    if isinstance(value, torch.dtype):
        return str(value).replace("torch.", "")
    raise TypeError(f"cannot write {value!r} of type {type(value).__name__} into a Keras "
                    f"config")


def save_keras_model(module: torch.nn.Module, path: Any, input_shape: Any = None) -> None:
    """Write a model of sepconv Keras layers as a tf-keras 2 ``.h5`` model file that
    ``tf_keras.models.load_model`` (and R keras' ``load_model_hdf5``) reads and that
    computes the same outputs.

    ``module``: a ``torch.nn.Sequential`` of sepconv layers, or a functional model from
    :func:`load_keras_model` (its graph is written back).  ``input_shape``: a Sequential's
    input shape without the batch, e.g. ``(None, 16)``; needed only when neither the first
    layer's ``batch_input_shape`` nor the loader tells it.  Raises ``ValueError`` for
    modules it cannot write; nothing is written then.
    """
    if isinstance(module, KerasFunctional):
        layers = [m for n, m in module.named_children()]
        _check_savable(layers)
        model_config = _functional_config(module)
    elif isinstance(module, torch.nn.Sequential):
        layers = list(module.children())
        if not layers:
            raise ValueError("save_keras_model: the Sequential has no layers")
        _check_savable(layers)
        model_config = _sequential_config(module, layers, input_shape)
    else:
        raise TypeError(f"save_keras_model takes a torch.nn.Sequential of sepconv layers or a "
                        f"model from load_keras_model. Received {type(module).__name__}")
    keras3_only = sorted({f"{getattr(m, 'name', '?')}.{attr}" for m in module.modules()
                          for attr, v in vars(m).items()
                          if any(v is f for f in _activations.KERAS3_VARIANTS.values())})
    if keras3_only:
        import warnings
        warnings.warn(f"save_keras_model: {', '.join(keras3_only)} use Keras 3's formula "
                      f"({', '.join(_activations.KERAS3_VARIANTS)}); tf-keras will compute "
                      f"its own formula under the same name", stacklevel=2)
    _write_h5(os.fspath(path), json.dumps(model_config, default=_json_default),
              [m for m in layers if type(m).__name__ != _INPUT])


def _check_savable(layers: List[torch.nn.Module]) -> None:
    for i, layer in enumerate(layers):
        if not isinstance(layer, _base.Layer) or not hasattr(layer, "get_config"):
            raise ValueError(f"save_keras_model: module {i} ({type(layer).__name__}) is not "
                             f"a sepconv Keras layer; Keras can only rebuild those "
                             f"({', '.join(sorted(_base.KERAS_CLASSES))})")
        if not getattr(layer, "built", True) and getattr(layer, "WEIGHT_NAMES", ()):
            raise ValueError(f"save_keras_model: layer {layer.name!r} has no weights yet "
                             f"(call the model once, or give the layer an input_shape)")


def _input_entry(name: str, batch_shape: Any, layer: Any = None) -> dict:
    if layer is not None:
        config = dict(layer.get_config())
        config["batch_input_shape"] = batch_shape
        config.pop("batch_shape", None)
    else:
        config = {"batch_input_shape": batch_shape, "dtype": "float32", "sparse": False,
                  "ragged": False, "name": name}
    return {"class_name": _INPUT, "config": config}


def _sequential_config(module, layers, input_shape) -> dict:
    if input_shape is not None:
        batch_shape = (None,) + tuple(input_shape)
    else:
        batch_shape = getattr(layers[0], "batch_input_shape", None)
        if batch_shape is None:
            known = getattr(module, "keras_input_shapes", None)
            batch_shape = known[0] if known else None
    if batch_shape is None:
        raise ValueError("save_keras_model: the model's input shape is unknown; pass "
                         "input_shape=(steps, channels) (without the batch)")
    batch_shape = [None if v is None else int(v) for v in batch_shape]
    first = layers[0]
    entries = []
    if type(first).__name__ != _INPUT:
        entries.append(_input_entry(f"{first.name}_input", batch_shape))
    for layer in layers:
        if layer is first and type(layer).__name__ == _INPUT:
            entries.append(_input_entry(layer.name, batch_shape, layer))
            continue
        config = dict(layer.get_config())
        if layer is first:
            config["batch_input_shape"] = batch_shape
            config.pop("batch_shape", None)
        entries.append({"class_name": type(layer).__name__, "config": config})
    return {"class_name": "Sequential", "config": {
        "name": getattr(module, "keras_name", None) or "sequential", "layers": entries}}


def _functional_config(module: KerasFunctional) -> dict:
    """tf-keras' functional config: layers with ``inbound_nodes`` in its list format."""
    children = dict(module.named_children())
    entries = []
    for ref, shape in zip(module.input_refs, module.keras_input_shapes):
        if shape is None:
            raise ValueError(f"save_keras_model: the shape of input {ref[0]!r} is unknown")
        batch_shape = [None if v is None else int(v) for v in shape]
        entry = _input_entry(ref[0], batch_shape, children.get(ref[0]))
        entries.append(dict(entry, name=ref[0], inbound_nodes=[]))
    nodes: Dict[str, List[Tuple[int, Any]]] = {}
    for lname, node, args, kwargs in module.steps:
        if kwargs:
            raise ValueError(f"save_keras_model: layer {lname!r} is called with keyword "
                             f"arguments {sorted(kwargs)}, which this writer does not write")
        nodes.setdefault(lname, []).append((node, args))
    inputs = {r[0] for r in module.input_refs}
    for lname, layer in children.items():
        if lname in inputs:
            continue
        inbound = [[[r[0], r[1], r[2], {}] for r in _refs_in(args)]
                   for _, args in sorted(nodes.get(lname, []), key=lambda n: n[0])]
        entries.append({"class_name": type(layer).__name__, "config": layer.get_config(),
                        "name": lname, "inbound_nodes": inbound})
    return {"class_name": "Functional", "config": {
        "name": module.keras_name, "layers": entries,
        "input_layers": [list(r) for r in module.input_refs],
        "output_layers": [list(r) for r in module.output_refs]}}


def _write_h5(path: str, model_config: str, layers: List[Any]) -> None:
    """tf-keras 2's HDF5 layout (see :mod:`sepconv.interop.files`), written atomically."""
    h5py = _files.h5py_module()

    tmp = path + ".tmp"
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["keras_version"] = "2.21.0"
            f.attrs["backend"] = "tensorflow"
            f.attrs["model_config"] = model_config
            g = f.create_group("model_weights")
            g.attrs["keras_version"] = "2.21.0"
            g.attrs["backend"] = "tensorflow"
            g.attrs["layer_names"] = np.array([m.name.encode("utf8") for m in layers])
            for layer in layers:
                lg = g.create_group(layer.name)
                arrays = layer.get_weights()
                order = list(getattr(layer, "_weight_order", []))
                if len(order) != len(arrays):
                    order = [f"weight_{i}" for i in range(len(arrays))]
                wnames = [f"{layer.name}/{w}:0" for w in order]
                lg.attrs["weight_names"] = np.array([w.encode("utf8") for w in wnames],
                                                    dtype="S" if wnames else "S1")
                for w, a in zip(wnames, arrays):
                    lg.create_dataset(w, data=a)
            g.create_group("top_level_model_weights").attrs["weight_names"] = \
                np.array([], dtype="S1")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# -- summary ---------------------------------------------------------------------------
def summary(module: torch.nn.Module, print_fn=print) -> str:
    """Keras ``summary()``-style table of a loaded model: name (class), output shape,
    parameter count; returns the text and passes it to ``print_fn`` (``None``: don't)."""
    shapes = getattr(module, "keras_output_shapes", {}) or {}
    rows = []
    for lname, layer in _keras_layers(module).items():
        shape = shapes.get(lname)
        count = _weight_count(layer)
        rows.append((f"{lname} ({type(layer).__name__})",
                     "?" if shape is None else str(_shape_text(shape)), f"{count:,}"))
    width = [max([len("Layer (type)")] + [len(r[0]) for r in rows]) + 2,
             max([len("Output Shape")] + [len(r[1]) for r in rows]) + 2, 12]
    line = "_" * sum(width)
    out = [f'Model: "{getattr(module, "keras_name", type(module).__name__)}"', line,
           "Layer (type)".ljust(width[0]) + "Output Shape".ljust(width[1]) + "Param #",
           "=" * sum(width)]
    for r in rows:
        out.append(r[0].ljust(width[0]) + r[1].ljust(width[1]) + r[2])
    total = sum(_weight_count(layer) for layer in _keras_layers(module).values())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    out += ["=" * sum(width), f"Total params: {total:,}", f"Trainable params: {trainable:,}",
            f"Non-trainable params: {total - trainable:,}", line]
    text = "\n".join(out)
    if print_fn is not None:
        print_fn(text)
    return text


def _weight_count(layer: torch.nn.Module) -> int:
    """What Keras counts: every weight, moving statistics included."""
    if hasattr(layer, "get_weights") and getattr(layer, "built", True):
        return int(sum(np.size(w) for w in layer.get_weights()))
    return sum(p.numel() for p in layer.parameters())


def _shape_text(shape: Any) -> str:
    if any(isinstance(v, (list, tuple)) for v in shape):  # several tensors
        return ", ".join(_shape_text(s) for s in shape)
    return "(" + ", ".join("None" if v is None else str(v) for v in shape) + \
        ("," if len(shape) == 1 else "") + ")"
