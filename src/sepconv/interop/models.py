"""Whole Keras models in and out: ``load_keras_model``, ``load_keras_weights``,
``save_keras_model`` and the ``summary`` table.

Every Keras class name is looked up in :data:`sepconv.layers.base.KERAS_CLASSES` (one
table, filled by the layer classes themselves), each layer built with
``cls.from_config(config)`` and loaded with ``layer.set_weights(arrays)``: a layer added
to the family is loadable with no change here.  Reading and writing use h5py, zipfile
and json only (``.keras`` files are written in Keras 3's own layout).
"""

from __future__ import annotations

import inspect
import json
import os
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from .. import _registry
from .. import activations as _activations
from ..layers import base as _base
from ..layers.masking import Sequential, call_with_mask, first_argument_mask
from . import files as _files
from . import keras_ops as _keras_ops
from . import tf_ops as _tf_ops
from .files import KerasFileError

_MODEL_CLASSES = ("Sequential", "Functional", "Model")
_INPUT = "InputLayer"
#: Keras 3 argument names -> tf-keras' (used when the class takes only the latter).
_RENAMED_ARGS = {"negative_slope": "alpha", "batch_shape": "batch_input_shape"}
#: Config keys that change the numbers unless at these values: refused, if the sepconv
#: class does not take them, rather than silently dropped.
_MUST_BE_DEFAULT = {"groups": (1, None), "renorm": (False, None), "lora_rank": (None, 0),
                    "quantization_config": (None,), "time_major": (False, None),
                    "use_gate": (False, None), "sliding_window": (None,),
                    # Keras 3's Resizing: sepconv's (tf-keras') has none of these
                    "pad_to_aspect_ratio": (False, None), "antialias": (False, None)}
#: Keras 3's legacy .h5 writer names a class by its Python name where its export name
#: differs (the name its .keras configs and sepconv use): files.py's table, inverted.
_CLASS_ALIASES = {python: cls for cls, python in _files._V3_PYTHON_NAMES.items()}
#: ``build_config`` keys (Keras 3) that a class also takes as arguments, merged into its
#: config so that the layer builds from them (``MultiHeadAttention``'s input shapes).
_BUILD_ARGS = ("query_shape", "value_shape", "key_shape")
#: Registered names tf-keras' applications give their own layers (InceptionResNetV2's
#: ``CustomScaleLayer`` under the default package ``Custom``; layers/applications.py):
#: Keras' own classes, not a user's custom objects, where the entry's module (if any) is
#: an applications module.
_APPLICATION_NAMES = {"Custom>CustomScaleLayer": "CustomScaleLayer"}


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


def _is_application_layer(entry: dict) -> bool:
    module = entry.get("module") or ""
    return (entry.get("class_name") in _APPLICATION_NAMES or
            entry.get("registered_name") in _APPLICATION_NAMES) and \
        (not module or ".applications." in module)


def _is_custom(entry: dict) -> bool:
    registered = entry.get("registered_name") or ""
    module = entry.get("module") or ""
    if _is_application_layer(entry):
        return False
    return ">" in registered or ">" in str(entry.get("class_name", "")) or \
        (bool(module) and not module.split(".")[0] in ("keras", "tf_keras", "tensorflow"))


def _unsupported(entry: dict, name: str) -> KerasFileError:
    cls = entry.get("class_name")
    what = "a custom object " if _is_custom(entry) else ""
    if cls in _MODEL_CLASSES:
        return KerasFileError(f"Layer {name!r} is a nested {cls} model, which sepconv does "
                              f"not load: flatten it into one model before saving")
    return KerasFileError(
        f"Layer {name!r} has class {cls!r}, {what}which sepconv does not map: pass "
        f"custom_objects={{{str(cls).split('>')[-1]!r}: YourModule}} to load_keras_model "
        f"with a torch module that computes it. Supported layers: "
        f"{', '.join(sorted(_base.KERAS_CLASSES))}")


def build_layer(entry: dict, flavour: str = "tf_keras") -> torch.nn.Module:
    """A sepconv layer from one Keras layer entry ``{"class_name", "config"}``, computing
    with ``flavour``'s formulas; ``KerasFileError`` naming the layer on any failure."""
    config = _plain(dict(entry.get("config") or {}))
    name = config.get("name") or entry.get("name") or "?"
    custom = _registry.custom_object(entry.get("registered_name"), entry.get("class_name"))
    if custom is not None:
        return _build_custom(custom, config, name, entry.get("class_name"))
    class_name = entry.get("class_name")
    if class_name == "Lambda" and not _is_custom(entry):
        from . import lambdas as _lambdas
        return _lambdas.build_lambda(entry, flavour)
    class_name = _APPLICATION_NAMES.get(class_name, class_name)
    cls = _base.KERAS_CLASSES.get(_CLASS_ALIASES.get(class_name, class_name))
    if cls is None or _is_custom(entry):  # a custom "Dense" is not Keras' Dense
        raise _unsupported(entry, name)
    known = cls._config_keys() if hasattr(cls, "_config_keys") else set(config)
    for new, old in _RENAMED_ARGS.items():
        if new in config and new not in known and old in known and old not in config:
            config[old] = config.pop(new)
    build_config = entry.get("build_config") or {}
    build_config = build_config.get("shapes_dict") or build_config  # Keras 3 nests them
    for key, value in build_config.items():
        if key in _BUILD_ARGS and key in known and config.get(key) is None:
            config[key] = value
    for key, defaults in _MUST_BE_DEFAULT.items():
        if key in config and key not in known and config[key] not in defaults \
                and key not in getattr(cls, "CONFIG_ONLY_ARGS", ()):
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


_KERAS_BASE_KEYS = ("name", "trainable", "dtype")


def _build_custom(obj: Any, config: dict, name: str, cls: Any) -> torch.nn.Module:
    """The user's module for a custom layer (``custom_objects``): ``obj.from_config(config)``
    if it has one, else ``obj(**config)`` with the keys its constructor takes (Keras'
    ``name``, ``trainable`` and ``dtype`` only if it names them)."""
    try:
        if hasattr(obj, "from_config"):
            module = obj.from_config(config)
        else:
            params = inspect.signature(obj).parameters.values()
            named = {p.name for p in params}
            rest = any(p.kind is p.VAR_KEYWORD for p in params)
            # Keras' own keys (name, trainable, dtype) only where the constructor names them
            config = {k: v for k, v in config.items()
                      if k in named or rest and k not in _KERAS_BASE_KEYS}
            module = obj(**config)
    except Exception as err:  # noqa: BLE001 - the user's code: said in one line
        raise KerasFileError(f"Layer {name!r} ({cls}): custom_objects[{cls!r}] could not be "
                             f"built from the file's config ({_one_line(err)})") from None
    if not isinstance(module, torch.nn.Module):
        raise KerasFileError(f"Layer {name!r} ({cls}): custom_objects[{cls!r}] gave "
                             f"{type(module).__name__}, not a torch.nn.Module")
    return module


def _keras_slots(module: torch.nn.Module, path: str) -> List[Tuple[Any, int, bool, str]]:
    """The Keras weights of a custom layer's module, ``(owner, index, trainable, path)``
    each, in Keras' order for a layer's own weights then its sublayers' (attribute order):
    own parameters, then each child's (a sepconv layer: its ``get_weights``)."""
    if isinstance(module, _base.Layer):
        if not getattr(module, "built", True) and getattr(module, "WEIGHT_NAMES", ()):
            raise KerasFileError(f"{path} ({type(module).__name__}) has no weights yet: "
                                 f"give it an input_shape (or build it) in the custom "
                                 f"module's constructor")
        names = list(getattr(module, "_weight_order", []))
        count = len(module.get_weights())
        tensors = [getattr(module, n, None) for n in names] if len(names) == count else []
        flags = [isinstance(t, torch.nn.Parameter) and t.requires_grad for t in tensors] \
            or [True] * count
        return [(module, i, f, path) for i, f in enumerate(flags)]
    slots = [(p, -1, p.requires_grad, f"{path}.{n}")
             for n, p in module.named_parameters(recurse=False)]
    for n, child in module.named_children():
        slots += _keras_slots(child, f"{path}.{n}")
    return slots


def _set_slots(slots: List[Tuple[Any, int, bool, str]], arrays: List[np.ndarray],
               where: str) -> None:
    """Copies ``arrays`` into ``slots`` (a sepconv layer's get their ``set_weights``)."""
    if len(slots) != len(arrays):
        raise KerasFileError(f"{where}: the file holds {len(arrays)} weights, the module "
                             f"{len(slots)} ({', '.join(s[3] for s in slots) or 'none'})")
    layers: Dict[int, Tuple[Any, Dict[int, np.ndarray]]] = {}
    for (owner, index, _, path), array in zip(slots, arrays):
        if index < 0:
            if tuple(owner.shape) != tuple(array.shape):
                raise KerasFileError(f"{where}: {path} has shape {tuple(owner.shape)}, the "
                                     f"file's weight {tuple(array.shape)}")
            with torch.no_grad():
                owner.copy_(torch.as_tensor(np.asarray(array), dtype=owner.dtype))
        else:
            layers.setdefault(id(owner), (owner, {}))[1][index] = array
    for owner, found in layers.values():
        try:
            owner.set_weights([found[i] for i in range(len(found))])
        except ValueError as err:
            raise KerasFileError(f"{where}: {_one_line(err)}") from None


def _load_tree(module: torch.nn.Module, tree: Dict[str, Any], path: str, label: str) -> None:
    """A Keras v3 weights group into a custom layer's module, by attribute name: the
    group's own ``vars`` into the module's own parameters, each sub-group into the child
    of that name (a Sequential's ``layers/<key>`` by class and position, as Keras keys
    them)."""
    _set_slots([(p, -1, True, f"{path}.{n}") for n, p in
                module.named_parameters(recurse=False)], tree["vars"], f"{label}: {path}")
    for key, sub in tree["groups"].items():
        if not _files.collect_tree(sub):
            continue  # a sublayer without weights (dropout, softmax)
        if key == "layers" and isinstance(module, torch.nn.Sequential):
            children = list(module.children())
            keys = _files.v3_keys([type(c).__name__ for c in children])
            for child_key, child in zip(keys, children):
                if child_key in sub["groups"]:
                    _load_child(child, sub["groups"][child_key], f"{path}[{child_key}]",
                                label)
            continue
        child = getattr(module, key, None)
        if not isinstance(child, torch.nn.Module):
            child = getattr(module, key.lstrip("_"), None)
        if not isinstance(child, torch.nn.Module):
            names = [n for n, _ in module.named_children()]
            raise KerasFileError(f"{label}: the file holds weights for {path}.{key}, which "
                                 f"{type(module).__name__} does not have (its submodules: "
                                 f"{', '.join(names) or 'none'}): name the submodules as the "
                                 f"Keras layer's attributes")
        _load_child(child, sub, f"{path}.{key}", label)


def _load_child(child: torch.nn.Module, tree: Dict[str, Any], path: str, label: str) -> None:
    if isinstance(child, _base.Layer):
        _set_slots(_keras_slots(child, path), _files.collect_tree(tree), f"{label}: {path}")
    else:
        _load_tree(child, tree, path, label)


def _build_by_a_call(module: torch.nn.Module, input_shape: Any, name: str,
                     label: str) -> None:
    """Builds the sepconv layers of a custom layer's module that were made without an
    input shape (as the Keras layer makes its sublayers): the module runs once, in eval
    mode and without gradients, on zeros of the node's input shape (unknown axes 1), as
    Keras builds a layer by calling it.  Nothing happens when every layer is built or the
    shape is unknown (then :func:`_keras_slots` says which layer to give a shape)."""
    if input_shape is None or not any(
            isinstance(m, _base.Layer) and not getattr(m, "built", True) and
            getattr(m, "WEIGHT_NAMES", ()) for m in module.modules()):
        return
    shape = _as_shape(input_shape)
    try:
        _call_on_zeros(module, shape, 1, 1)
    except Exception as err:  # noqa: BLE001 - the user's code: said in one line
        raise KerasFileError(f"{label}: layer {name!r} ({type(module).__name__}) has sepconv "
                             f"layers without weights yet, and a call on zeros of its "
                             f"input shape {shape} to build them failed "
                             f"({_one_line(err)}): give them an input_shape") from None


def _call_on_zeros(module: torch.nn.Module, shape: Any, batch: int, size: int) -> Any:
    """``module``'s output on zeros of ``shape`` (a shape, or a list of them; unknown sizes
    ``batch`` on the first axis, ``size`` on the others), in eval mode and without
    gradients; the submodules' training modes are restored."""
    def zeros(s):
        return torch.zeros([batch if i == 0 and v is None else size if v is None else int(v)
                            for i, v in enumerate(s)])
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        with torch.no_grad():
            return module([zeros(s) for s in shape] if isinstance(shape, list)
                          else zeros(shape))
    finally:
        for m, training in modes.items():
            m.training = training


def _load_custom_weights(module: torch.nn.Module, arrays: List[np.ndarray], name: str,
                         label: str, input_shape: Any = None) -> None:
    """A custom layer's weights into the user's module: by attribute name from a Keras v3
    weights file; else its ``set_weights`` if it has one; else in Keras' order (the
    trainable weights, then the others; see :func:`_keras_slots`).  Its sepconv layers
    made without an input shape are built first (:func:`_build_by_a_call`)."""
    _build_by_a_call(module, input_shape, name, label)
    tree = getattr(arrays, "tree", None)
    if tree is not None:
        _load_tree(module, tree, name, label)
    elif hasattr(module, "set_weights"):
        module.set_weights(list(arrays))
    else:
        slots = _keras_slots(module, name)
        _set_slots([s for s in slots if s[2]] + [s for s in slots if not s[2]], arrays,
                   f"{label}: layer {name!r}")


def _load_layer_weights(layer: torch.nn.Module, arrays: List[np.ndarray], name: str,
                        input_shape: Any, label: str) -> None:
    if not isinstance(layer, _base.Layer) and (arrays or getattr(arrays, "tree", None)):
        return _load_custom_weights(layer, arrays, name, label, input_shape)
    if not hasattr(layer, "set_weights"):
        if arrays:
            raise KerasFileError(f"{label}: layer {name!r} cannot take weights")
        return
    built = getattr(layer, "built", True)
    if not arrays and not built and input_shape is not None and \
            getattr(layer, "WEIGHT_NAMES", ()):
        try:  # the graph's shape tells whether the layer has weights
            layer._build_checked(_as_shape(input_shape), device=None)
            built = True
        except Exception:  # noqa: BLE001 - then it builds at its first call, as before
            pass
    if not arrays and built and getattr(layer, "weights", None):
        raise KerasFileError(f"{label}: the file holds no weights for layer {name!r} "
                             f"({type(layer).__name__}), which has "
                             f"{len(layer.weights)}: a model whose weights were not saved "
                             f"with it, or a layout sepconv does not read")
    if not arrays and not built:
        return  # a layer without weights (or built at its first call)
    try:
        if arrays and not built and input_shape is not None:
            # the graph's shape is exact; the weights alone may not tell every axis
            layer._build_checked(_as_shape(input_shape), device=None)
        if getattr(arrays, "keras3", False):  # a stack's cells: back in get_weights order
            from ..layers.rnn import keras3_saved_order
            own = getattr(layer, "keras3_arrays", None)  # a layer's own .keras layout
            arrays = own(arrays.tree) if own else keras3_saved_order(layer, arrays)
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


def _batch_shape(config: dict) -> Optional[tuple]:
    """A layer config's batch input shape (tf-keras' ``batch_input_shape``, Keras 3's
    ``batch_shape``) as a tuple, or ``None``."""
    shape = config.get("batch_input_shape", config.get("batch_shape"))
    return None if shape is None else tuple(shape)


def _node_input_shape(shapes: Dict[Ref, Any], args: Any) -> Any:
    """The input shape of a call with ``args`` (one shape, a list of them for several
    tensors), or ``None`` if any is unknown."""
    in_shapes = [shapes.get(r) for r in _refs_in(args)]
    if not in_shapes or any(s is None for s in in_shapes):
        return None
    return in_shapes[0] if len(in_shapes) == 1 else in_shapes


def _input_batch_shape(name: str, shape: Any) -> List[Any]:
    """A model input's batch shape as a list for the config; ``ValueError`` if unknown."""
    if shape is None:
        raise ValueError(f"save_keras_model: the shape of input {name!r} is unknown")
    return [None if v is None else int(v) for v in shape]


def _probed_output_shape(module: torch.nn.Module, shape: Any) -> Any:
    """A custom layer's module's output shape, found as :func:`_traced_shapes` finds an
    operation's: two runs on zeros (unknown sizes ``2`` / ``3`` for the batch, ``24`` /
    ``40`` for other axes), a size that differs between them unknown; ``None`` if a run
    fails.  The layers after it then know their input shape (and build from it)."""
    shape = _as_shape(shape)
    try:
        runs = [[tuple(t.shape) for t in _flat_outputs(_call_on_zeros(module, shape, *sizes))]
                for sizes in ((2, 24), (3, 40))]
    except Exception:  # noqa: BLE001 - a shape table entry is optional
        return None
    shapes = [tuple(a if a == b else None for a, b in zip(sa, sb))
              for sa, sb in zip(*runs)]
    return shapes[0] if len(shapes) == 1 else shapes


def _output_shape(layer: Any, shape: Any) -> Any:
    if shape is not None and not hasattr(layer, "compute_output_shape") and \
            isinstance(layer, torch.nn.Module) and \
            not type(layer).__module__.startswith("sepconv."):  # a custom layer's module
        return _probed_output_shape(layer, shape)
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


def ref_of(value: Any) -> Optional[Ref]:
    """The tensor a ``("__ref__", layer, node, index)`` marker names, else ``None``."""
    if isinstance(value, tuple) and value and value[0] == "__ref__":
        return tuple(value[1:])
    return None


def resolve(value: Any, values: Dict[Ref, Any]) -> Any:
    """A node's arguments with each marker replaced by its tensor in ``values``."""
    ref = ref_of(value)
    if ref is not None:
        return values[ref]
    if isinstance(value, list):
        return [resolve(v, values) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, values) for k, v in value.items()}
    return value


def _refs_in(value: Any) -> List[Ref]:
    if ref_of(value) is not None:
        return [ref_of(value)]
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
    list for several outputs, in the model's output order.  Keras masks (from ``Masking``,
    ``Embedding(mask_zero=True)``) flow through the graph as tf-keras 2.21 passes them
    (:func:`sepconv.layers.masking.call_with_mask`); a ``mask=`` a Keras 3 file gives a
    layer explicitly (computed by Keras 3 operation nodes, see
    :mod:`sepconv.interop.keras_ops`) takes precedence, as in Keras.
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

    #: A model used as a layer takes its inputs' Keras masks and gives its outputs' (as
    #: tf-keras' functional models do): ``forward(..., mask=...)``, ``compute_mask``.
    supports_masking = True
    #: (the graph runner's flags, declared: a look-up that misses costs torch's
    #: Module.__getattr__ an AttributeError, ~2-5 us, on every call of a model inside a model)
    keras3_strips_input_masks = False
    keeps_mask_of_returned_input = False

    def compute_mask(self, inputs, mask=None):
        """The masks of the outputs of the last call (``None`` where none)."""
        return self.__dict__.get("_output_mask")

    def forward(self, *inputs, mask=None):
        """``inputs`` in the model's input order (or one list of them); ``mask``: the
        inputs' Keras masks (one, or a list in the same order), as a model that uses this
        one as a layer hands them over."""
        if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)) and \
                len(self.input_refs) > 1:
            inputs = tuple(inputs[0])
        if len(inputs) != len(self.input_refs):
            raise ValueError(f"Model {self.keras_name!r} takes {len(self.input_refs)} "
                             f"input{'s' if len(self.input_refs) != 1 else ''} "
                             f"({', '.join(r[0] for r in self.input_refs)}); received "
                             f"{len(inputs)}")
        values: Dict[Ref, Any] = {}
        modules = self._modules  # (the children by name; no dict built per call)
        for ref, x in zip(self.input_refs, inputs):
            if not isinstance(x, torch.Tensor):
                x = np.asarray(x)
                if x.dtype.kind not in "USO":  # text stays an array (torch has no strings)
                    x = torch.as_tensor(x)
            if ref[0] in modules:  # an InputLayer: Keras' cast to the input's dtype
                x = modules[ref[0]](x)
            values[ref] = x

        masks: Dict[Ref, Any] = {}  # Keras masks of the values that have one
        given = mask if isinstance(mask, (list, tuple)) else [mask]
        for ref, m in zip(self.input_refs, given):
            if m is not None:
                masks[ref] = m

        def argument_masks(module, args, kwargs):
            # the masks of the arguments a layer takes as `<name>_mask` (attention's query,
            # value, key), from the values the call passes by position or by name
            out = {}
            for i, name in enumerate(getattr(module, "MASKED_ARGUMENTS", ())):
                v = args[i] if i < len(args) else kwargs.get(name)
                if isinstance(v, tuple) and v and v[0] == "__ref__" and \
                        tuple(v[1:]) in masks and f"{name}_mask" not in kwargs:
                    out[f"{name}_mask"] = masks[tuple(v[1:])]
            return out

        for lname, node, args, kwargs in self.steps:
            module = modules[lname]
            # (without any mask so far, both mask look-ups find nothing: skipped, as the
            # common one-tensor argument's resolve and one-tensor output's bookkeeping: a
            # few microseconds a layer, bench/README.md "Per-call cost")
            stripped = ()
            if masks or getattr(module, "keras3_strips_input_masks", False):
                call_kwargs = {**resolve(kwargs, values),
                               **argument_masks(module, args, kwargs)}
                stripped = _keras3_mask_stripping(module, args, kwargs, call_kwargs, masks)
                in_mask = first_argument_mask(args, masks)
            else:
                call_kwargs = resolve(kwargs, values) if kwargs else {}
                in_mask = None
            first = args[0] if type(args) is list and len(args) == 1 else None
            if type(first) is tuple and first and first[0] == "__ref__":
                call_args = [values[first[1:]]]
            else:
                call_args = resolve(args, values)
            out, out_mask = call_with_mask(module, call_args, call_kwargs, in_mask)
            for ref in stripped:  # (after the call: the output's mask is the query's)
                masks.pop(ref, None)
            if isinstance(out, torch.Tensor):
                values[(lname, node, 0)] = out
                if out_mask is not None:
                    masks[(lname, node, 0)] = out_mask
                continue
            outs = out if isinstance(out, (list, tuple)) else [out]
            if any(isinstance(o, (list, tuple)) for o in outs):  # a stack's states, nested
                outs = _flat_outputs(outs)  # per cell (RNN): Keras indexes them flat
            if isinstance(out, (list, tuple)) and isinstance(out_mask, (list, tuple)) and \
                    len(out_mask) == len(outs):
                out_masks = list(out_mask)
            else:
                out_masks = [out_mask] + [None] * (len(outs) - 1)
            for i, (t, m) in enumerate(zip(outs, out_masks)):
                values[(lname, node, i)] = t
                if m is not None:
                    masks[(lname, node, i)] = m
        result = [values[r] for r in self.output_refs]
        out_masks = [masks.get(r) for r in self.output_refs]
        self._output_mask = out_masks[0] if len(out_masks) == 1 else \
            (out_masks if any(m is not None for m in out_masks) else None)
        if len(result) == 1:
            return result[0]
        # torch.jit.trace refuses a list output (strict): a tuple while tracing
        return tuple(result) if torch.jit.is_tracing() else result

    def extra_repr(self) -> str:
        return (f"name={self.keras_name!r}, inputs={[r[0] for r in self.input_refs]}, "
                f"outputs={[r[0] for r in self.output_refs]}")


def _keras3_run_order(steps: list, outputs: List[Ref]) -> list:
    """``steps`` in the order Keras 3.15's functional model runs its nodes
    (``keras.src.ops.function.map_graph``: a depth-first walk from the outputs through
    each node's tensors, args then kwargs by sorted key; nodes by decreasing depth, in the
    order the walk first gave each a depth).  Any topological order gives the same
    numbers, except where a layer changes the Keras masks of tensors others read
    (Keras 3's ``MultiHeadAttention``).  Nodes the outputs do not need run last."""
    by_key = {(s[0], s[1]): s for s in steps}

    def parents(key):
        if key not in by_key:
            return []
        _, _, args, kwargs = by_key[key]
        refs = _refs_in(args) + [r for k in sorted(kwargs) for r in _refs_in(kwargs[k])]
        return [(r[0], r[1]) for r in refs]

    post, finished, seen = [], set(), set()

    def walk(key):  # iterative post-order (deep graphs)
        stack = [(key, iter(parents(key)))]
        seen.add(key)
        while stack:
            node, it = stack[-1]
            nxt = next((p for p in it if p not in finished and p not in seen), None)
            if nxt is None:
                stack.pop()
                finished.add(node)
                post.append(node)
            else:
                seen.add(nxt)
                stack.append((nxt, iter(parents(nxt))))

    for r in outputs:
        if (r[0], r[1]) not in finished:
            walk((r[0], r[1]))
    in_graph = set(post)
    depths: Dict[Any, int] = {}
    layer_depths: Dict[str, int] = {}
    for node in reversed(post):
        depth = max(depths.setdefault(node, 0), layer_depths.get(node[0], 0))
        layer_depths[node[0]] = depth
        depths[node] = depth
        for dep in parents(node):
            if dep in in_graph:
                depths[dep] = max(depth + 1, depths.get(dep, 0))
    ranked = sorted(depths, key=lambda k: -depths[k])  # stable: walk order within a depth
    ordered = [by_key[k] for k in ranked if k in by_key]
    return ordered + [s for s in steps if (s[0], s[1]) not in in_graph]


def _keras3_mask_stripping(module, args, kwargs, call_kwargs, masks) -> List[Ref]:
    """Keras 3.15's ``MultiHeadAttention.call`` (for layers built from a Keras 3 file):
    its ``query_mask`` is the query tensor's own Keras mask (an explicit ``query_mask``
    is ignored), ``value_mask`` / ``key_mask`` are the tensors' masks unless given (not
    ``None``), and it then removes the masks from its query, value and key tensor objects,
    so layers that run later and read those tensors' masks (another attention layer on
    the same tensor) see none.  Sets ``call_kwargs``; returns the refs whose masks the
    call removes."""
    if not getattr(module, "keras3_strips_input_masks", False):
        return []
    refs = {}
    for i, name in enumerate(getattr(module, "MASKED_ARGUMENTS", ())):
        v = args[i] if i < len(args) else kwargs.get(name)
        if isinstance(v, tuple) and v and v[0] == "__ref__":
            refs[name] = tuple(v[1:])
    call_kwargs["query_mask"] = masks.get(refs.get("query"))
    for name in ("value", "key"):
        if call_kwargs.get(f"{name}_mask") is None and name in refs:
            call_kwargs[f"{name}_mask"] = masks.get(refs[name])
    return list(refs.values())


#: tf-keras layers called with their input's structure as saved (a one-element list stays
#: a list): the wrappers of TensorFlow functions.
_KEEPS_STRUCTURE = ("TFOpLambda", "SlicingOpLambda")


def _flat_outputs(value: Any) -> List[Any]:
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flat_outputs(v)]
    return [value]


def _is_node_data(value: Any) -> bool:
    """tf-keras' test for a saved tensor: ``[layer, node, index]`` (``+ [kwargs]``)."""
    return isinstance(value, list) and len(value) in (3, 4) and isinstance(value[0], str)


def _tf_keras_value(value: Any) -> Any:
    """A tf-keras call keyword's value with its tensors as ref markers."""
    if _is_node_data(value):
        return ("__ref__", str(value[0]), int(value[1]), int(value[2]))
    if isinstance(value, list):
        return [_tf_keras_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _tf_keras_value(v) for k, v in value.items()}
    return value


#: tf-keras' mark for a call's first argument that is a constant, not a tensor
#: (``2.0 - x`` calls ``tf.math.subtract(2.0, x)``): ``[mark, -1, value, kwargs]``.
_CONSTANT_VALUE = "_CONSTANT_VALUE"


def _tf_keras_node(node: list, keep_structure: bool) -> Tuple[list, dict]:
    """``(args, kwargs)`` of one tf-keras inbound node: a list of
    ``[layer, node, index, kwargs]`` (one per input tensor, each with the call's keywords,
    tensors among them saved the same way; a constant as ``[_CONSTANT_VALUE, -1, value,
    kwargs]``), or one such entry for a lone input."""
    single = _is_node_data(node)
    entries = [node] if single else list(node)
    refs = [n[2] if n[0] == _CONSTANT_VALUE else ("__ref__", str(n[0]), int(n[1]), int(n[2]))
            for n in entries]
    first = refs[0] if refs and (single or (len(refs) == 1 and not keep_structure)) \
        else refs
    kwargs = entries[0][3] if entries and len(entries[0]) > 3 and \
        isinstance(entries[0][3], dict) else {}
    return [first], _tf_keras_value(dict(kwargs))


def _module_names(entries: Dict[str, dict], label: str) -> Dict[str, str]:
    """Keras layer name -> submodule name: the same, but with ``.`` (which torch module
    names cannot hold: tf-keras names its TensorFlow-function nodes ``tf.math.add``) as
    ``_``, made unique."""
    taken = {n for n in entries if n and "." not in n}
    out = {}
    for name in entries:
        if not name:
            raise KerasFileError(f"{label}: a layer has no name")
        new = name
        if "." in name:
            base = new = name.replace(".", "_")
            i = 1
            while new in taken:
                new, i = f"{base}_{i}", i + 1
            taken.add(new)
        out[name] = new
    return out


def _renamed(value: Any, rename: Dict[str, str]) -> Any:
    if isinstance(value, tuple) and value and value[0] == "__ref__":
        return ("__ref__", rename.get(value[1], value[1])) + tuple(value[2:])
    if isinstance(value, list):
        return [_renamed(v, rename) for v in value]
    if isinstance(value, dict):
        return {k: _renamed(v, rename) for k, v in value.items()}
    return value


def _check_call_keywords(layer: torch.nn.Module, args: list, kwargs: dict, name: str,
                         label: str) -> None:
    """A node's call keywords must be arguments of the module's ``forward`` (of the
    TensorFlow function, for a module that checks its calls itself)."""
    if hasattr(layer, "check_call"):
        try:
            layer.check_call(args, kwargs)
        except ValueError as err:
            raise KerasFileError(f"{label}: node {name!r}: {_one_line(err)}") from None
        return
    if not kwargs:
        return
    try:
        params = inspect.signature(layer.forward).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(k for k in kwargs if k not in params)
    if unknown:
        raise KerasFileError(f"{label}: layer {name!r} ({type(layer).__name__}) is called "
                             f"with {', '.join(map(repr, unknown))}, which sepconv's "
                             f"{type(layer).__name__} does not take")


def _build_functional(config: dict, flavour: str, weights: Any, label: str, nested=None):
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
    rename = _module_names(by_name, label)
    built_nested = set()  # nested models: their weights came with them
    inputs = [(rename[r[0]],) + r[1:] if r[0] in rename else r for r in inputs]
    outputs = [(rename[r[0]],) + r[1:] if r[0] in rename else r for r in outputs]
    for lname, e in by_name.items():
        cls = e.get("class_name")
        mname = rename[lname]
        if cls == _INPUT:
            c = _plain(e.get("config") or {})
            shapes[(mname, 0, 0)] = _batch_shape(c)
            if _INPUT in _base.KERAS_CLASSES:  # Keras' model.layers lists the inputs too
                layers[mname] = build_layer(e, flavour)
            continue
        if _tf_ops.is_tf_op(e):  # a TensorFlow function tf-keras wrapped (x + y, tf.concat)
            op = _tf_ops.build_tf_op(e)
            if op is None:
                raise KerasFileError(f"{label}: node {lname!r} calls the TensorFlow function "
                                     f"tf.{_tf_ops.function_of(e)}, which sepconv does not "
                                     f"run (it runs {len(_tf_ops.FUNCTIONS)} of them)")
            layers[mname] = op
        elif _keras_ops.is_op(e):  # a Keras 3 operation (x + y, ops.concatenate, masks)
            op = _keras_ops.build_op(e)
            if op is None:
                raise KerasFileError(f"{label}: node {lname!r} is the Keras operation "
                                     f"{cls!r}, which sepconv does not run")
            layers[mname] = op
        elif cls in _MODEL_CLASSES and nested is not None and not _is_custom(e):
            layers[mname] = nested(e)  # a model used as a layer: built with its weights
            built_nested.add(mname)
        else:
            layers[mname] = build_layer(e, flavour)
        first = 1 if _skips_first_node(e, flavour) else 0
        for node_index, node in enumerate(e.get("inbound_nodes") or [], start=first):
            if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
                args = _keras3_args(node.get("args") or [])
                kwargs = _keras3_args(node.get("kwargs") or {})
            else:  # tf-keras: [[name, node, index, kwargs], ...] or one such entry
                args, kwargs = _tf_keras_node(node, cls in _KEEPS_STRUCTURE)
            args, kwargs = _renamed(args, rename), _renamed(kwargs, rename)
            if "mask" in kwargs and not _refs_in(kwargs["mask"]):
                del kwargs["mask"]  # no tensor: the implicit mask applies
            kwargs = {k: v for k, v in kwargs.items() if k != "training"}
            _check_call_keywords(layers[mname], args, kwargs, lname, label)
            pending.append((mname, node_index, args, kwargs,
                            _refs_in(args) + _refs_in(kwargs)))
    input_shapes = [shapes.get(r) for r in inputs]
    for r in inputs:
        if r not in shapes:
            raise KerasFileError(f"{label}: model input {r[0]!r} is not an InputLayer")
    keras_name = {m: k for k, m in rename.items()}
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
            in_shape = _node_input_shape(shapes, args)
            if lname not in loaded and lname not in built_nested:  # a shared layer's first
                _load_layer_weights(layer, weights.get(keras_name[lname], []),  # call
                                    keras_name[lname], in_shape, label)
                loaded.add(lname)
            out = _nested_output_shape(layer) if lname in built_nested else \
                _output_shape(layer, in_shape)
            for i, s in enumerate(out if isinstance(out, list) else [out]):
                shapes[(lname, node_index, i)] = s
            done.add((lname, node_index))
            steps.append((lname, node_index, args, kwargs))
    for r in outputs:
        if (r[0], r[1]) not in done:
            raise KerasFileError(f"{label}: model output {r[0]!r} is not made by the graph")
    if any(getattr(m, "keras3_strips_input_masks", False) for m in layers.values()):
        steps = _keras3_run_order(steps, outputs)  # the masks it removes: Keras' order
    model = KerasFunctional(config.get("name", "model"), layers, inputs, outputs, steps,
                            input_shapes)
    model.keras_output_shapes = {n: shapes.get((n, 0, 0)) for n in layers}
    for lname, layer in layers.items():  # layers no node reached still get weights
        if lname not in loaded and lname not in built_nested and (lname, 0, 0) not in shapes:
            _load_layer_weights(layer, weights.get(keras_name[lname], []),
                                keras_name[lname], None, label)
    return model


def _build_sequential(config: dict, flavour: str, weights: Any, label: str, nested=None):
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
            shape = input_shape = _batch_shape(c)
            if _INPUT not in _base.KERAS_CLASSES:
                continue
        if "." in (lname or "."):
            raise KerasFileError(f"{label}: layer name {lname!r} cannot name a torch module")
        if e.get("class_name") in _MODEL_CLASSES and nested is not None and \
                not _is_custom(e):
            layer = nested(e)  # a model used as a layer: built with its weights
            shape = _nested_output_shape(layer)
            out_shapes[lname] = shape
            layers[lname] = layer
            continue
        else:
            layer = build_layer(e, flavour)
            if shape is None:
                shape = _batch_shape(c)
                input_shape = input_shape or shape
            _load_layer_weights(layer, weights.get(lname, []), lname, shape, label)
        shape = _output_shape(layer, shape)
        out_shapes[lname] = shape
        layers[lname] = layer
    model = Sequential(layers)
    model.keras_name = config.get("name", "sequential") if isinstance(config, dict) \
        else "sequential"
    model.keras_input_shapes = [input_shape]
    model.keras_output_shapes = out_shapes
    return model


def _build_model(cls: str, config: Any, kf: Any, label: str) -> torch.nn.Module:
    """A Sequential or functional model from its config and the file's weights (``kf``,
    or a nested model's part of them)."""
    names, classes = _layer_list(config)
    skip = cls == "Sequential"
    weights = kf.weights_for(names, classes, skip_inputs=skip)

    def nested(entry: dict) -> torch.nn.Module:
        name = entry.get("name") or (entry.get("config") or {}).get("name")
        return _build_model(entry.get("class_name"), entry.get("config") or {},
                            kf.nested(name, names, classes, skip), label)

    if cls == "Sequential":
        model = _build_sequential(config, kf.flavour, weights, label, nested)
    else:
        model = _build_functional(config, kf.flavour, weights, label, nested)
    assets = kf.assets_for(names, classes, skip) if hasattr(kf, "assets_for") else {}
    for lname, layer in _keras_layers(model).items():  # lookup layers' vocabularies
        if lname in assets and hasattr(layer, "load_assets"):
            try:
                layer.load_assets(assets[lname])
            except Exception as err:  # noqa: BLE001
                raise KerasFileError(f"{label}: the assets of layer {lname!r} "
                                     f"({type(layer).__name__}) do not fit: "
                                     f"{_one_line(err)}") from None
    return model


def _nested_output_shape(model: torch.nn.Module) -> Any:
    """A loaded model's output shape as its config tells it (one output), else ``None``."""
    shapes = getattr(model, "keras_output_shapes", None) or {}
    refs = getattr(model, "output_refs", None)
    if refs is not None:  # functional: the layer making its only output
        return shapes.get(refs[0][0]) if len(refs) == 1 and refs[0][1] == 0 else None
    return list(shapes.values())[-1] if shapes else None


def _skips_first_node(entry: dict, flavour: str) -> bool:
    """tf-keras numbers a nested model's calls from 1 where its first node is its own
    (built from its Input layers: a functional model, a Sequential whose layers start with
    an InputLayer); Keras 3 from 0."""
    if flavour != "tf_keras" or entry.get("class_name") not in _MODEL_CLASSES:
        return False
    if entry.get("class_name") != "Sequential":
        return True
    layers = (entry.get("config") or {}).get("layers") or []
    return bool(layers) and layers[0].get("class_name") == _INPUT


def _layer_list(config: Any) -> Tuple[List[str], List[str]]:
    """Layer names and classes in model order (Keras <= 2.2 wrote a Sequential's config
    as the bare list of layers)."""
    names, classes = [], []
    for e in (config if isinstance(config, list) else config.get("layers") or []):
        if _keras_ops.is_op(e):  # Keras 3 mask arithmetic: not a layer, no weights
            continue
        c = e.get("config") or {}
        names.append(e.get("name") or c.get("name"))
        classes.append(e.get("class_name"))
    return names, classes


def load_keras_model(path: Any, custom_objects: Optional[Dict[str, Any]] = None,
                     safe_mode: bool = True) -> torch.nn.Module:
    """A Keras model file as a torch module, in eval mode.

    ``path``: an HDF5 ``.h5`` file written by tf-keras 2 / R keras (``model.save("m.h5")``,
    ``save_model_hdf5(model, "m.h5")``) or Keras 3, or a ``.keras`` file written by
    tf-keras 2.13+ or Keras 3, or a SavedModel directory written by tf-keras
    (``model.save("dir")`` in TensorFlow 2.5-2.15, R keras' ``save_model_tf``; read
    without TensorFlow, see :mod:`sepconv.interop.saved_model`).  A Sequential model
    becomes a :class:`sepconv.Sequential` (a ``torch.nn.Sequential`` that carries Keras
    masks), a functional one a
    :class:`KerasFunctional`; submodules carry the Keras layer names.  Masks from
    ``Masking`` / ``Embedding(mask_zero=True)`` reach the layers after them as in Keras.
    Layers compute with the formulas of the Keras that wrote the file (Keras 3's
    ``hard_sigmoid`` for a Keras 3 file, tf-keras' for tf-keras and R files).  Raises
    ``KerasFileError`` (a ``ValueError``) with one line for files that are not Keras models,
    truncated or corrupted files, layers sepconv does not map and custom objects.

    ``custom_objects``: as Keras' argument, names the file uses for your own code ->
    objects computing them in torch.  A custom layer (by its class name, or Keras 3's
    ``"package>Name"``) -> a ``torch.nn.Module`` class (or factory), built with
    ``from_config(config)`` if it has one, else with the config's keys its constructor
    takes.  Its weights go in by attribute name from a Keras v3 weights file (``.keras``:
    name the submodules as the Keras layer's attributes, ``self.att``, ``self.ffn``, ...;
    a Keras ``Sequential`` attribute is a ``torch.nn.Sequential``); from an ``.h5`` file
    through its ``set_weights(arrays)`` if it has one, else in Keras' order: the module's
    own parameters, then its submodules' in registration order (a sepconv layer's as its
    ``get_weights``), the trainable ones first.  Sepconv layers inside must have their
    weights at construction (give them ``input_shape``).  A custom activation,
    initializer, regularizer or constraint name -> a function or class.  A ``Lambda``
    layer's name -> a torch function computing the layer (its ``function(inputs,
    **arguments)``); a Lambda's function name (a named ``def`` in the file) -> the same.

    ``safe_mode``: Keras 3's argument.  A ``Lambda`` layer whose function is Python
    bytecode (every ``lambda``; tf-keras' named functions too) is refused unless
    ``safe_mode=False``, since running it runs code from the file; then the bytecode runs
    (on the Python version that wrote it only) with ``tf``, ``K`` / ``backend``,
    ``keras``, ``ops`` / ``keras.ops`` and ``np`` (constants only) computing on torch
    tensors, as the tensor-operation nodes of the graph do (``KerasFileError`` naming the
    layer and the function sepconv does not run).
    """
    from . import lambdas as _lambdas
    with _registry.custom_object_scope(custom_objects), _lambdas.safe_mode_scope(safe_mode), \
            _base.deferred_initialization():  # the file overwrites the initial draws
        return _load_keras_model(path)


def _load_keras_model(path: Any) -> torch.nn.Module:
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
    model = _build_model(cls, config, kf, label)
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
        if getattr(arrays, "keras3", False) and hasattr(layer, "keras3_arrays"):
            arrays = layer.keras3_arrays(arrays.tree)  # the layer's own .keras layout
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


#: File name endings ``save_keras_model`` writes: tf-keras 2's HDF5 model file, Keras 3's zip.
SAVE_SUFFIXES = (".h5", ".hdf5", ".keras")


def save_keras_model(module: torch.nn.Module, path: Any, input_shape: Any = None) -> None:
    """Write a model of sepconv Keras layers as a Keras model file that computes the same
    outputs; the ending of ``path`` picks the format:

    - ``.h5`` / ``.hdf5``: a tf-keras 2 HDF5 file for ``tf_keras.models.load_model`` and R
      keras' ``load_model_hdf5``.  Layers computing Keras 3's ``hard_sigmoid`` are written
      with a warning (tf-keras computes its own formula under that name).
    - ``.keras``: a Keras 3 zip (``config.json``, ``metadata.json``, ``model.weights.h5``)
      for ``keras.saving.load_model`` and R keras3's ``load_model``; sepconv reads it back
      with Keras 3's formulas.  Layers whose Keras 3 config cannot say what they compute
      are refused (``ValueError`` naming the layer): tf-keras' ``hard_sigmoid`` (Keras 3
      computes ``relu6(x + 3) / 6`` under that name; R keras 2's ``ConvLSTM2D`` uses it by
      default) and ``BatchNormalization`` over several axes.  A causal ``SeparableConv1D``
      (Keras 3 has ``"causal"`` on ``Conv1D`` only) becomes a ``ZeroPadding1D`` layer
      ``<name>_causal_pad`` padding ``(k - 1) * dilation`` steps on the left, then the layer
      with ``padding="valid"`` (tf-keras' causal arithmetic; a shared layer shares its pad
      layer; Keras 3 and sepconv see one more layer).  One tf-keras habit that changes
      training, not outputs, does not travel: Keras 3's ``BatchNormalization`` updates the
      moving variance with the biased batch variance (tf-keras' fused kernel, the unbiased).

    ``module``: a ``torch.nn.Sequential`` of sepconv layers, or a functional model from
    :func:`load_keras_model` (its graph is written back: several inputs and outputs, shared
    layers, and the tensor operations between layers in the format of the Keras that wrote
    them: tf-keras' TensorFlow-function nodes to ``.h5``, Keras 3 operations to ``.keras``;
    the other format is refused, naming them).  ``input_shape``: a Sequential's input shape without the batch, e.g.
    ``(None, 16)``; needed only when neither the first layer's ``batch_input_shape`` nor the
    loader tells it.  Raises ``ValueError`` for other endings and for modules it cannot
    write; nothing is written then.
    """
    path = os.fspath(path)
    suffix = next((s for s in SAVE_SUFFIXES if str(path).endswith(s)), None)
    if suffix is None:
        raise ValueError(f"save_keras_model writes {', '.join(SAVE_SUFFIXES)} files (the "
                         f"ending picks tf-keras 2's HDF5 or Keras 3's zip). Received "
                         f"path={path!r}")
    _check_lambdas(module, suffix)
    if isinstance(module, KerasFunctional):
        layers = [m for n, m in module.named_children()]
        # operation nodes go back to the format of the Keras that wrote them
        if suffix == ".keras":  # (nested models' too)
            foreign = [f"{m.name!r} (tf.{m.function})" for m in module.modules()
                       if isinstance(m, _tf_ops.TFOp)]
            what, other = "TensorFlow functions tf-keras wrapped", "save as .h5"
        else:
            foreign = [f"{m.name!r} ({m.class_name})" for m in module.modules()
                       if isinstance(m, _keras_ops.KerasOp)]
            what, other = "Keras 3 operations", "save as .keras"
        if foreign:
            raise ValueError(f"save_keras_model: the model holds {what} "
                             f"({', '.join(foreign)}), which the other Keras does not "
                             f"read; {other}")
        _check_savable([m for m in layers if not _is_op(m)],
                       {id(m): n for n, m in module.named_children()})
        if suffix == ".keras":
            merged = _merges_of_different_masks(module)
            if merged:
                raise ValueError(f"save_keras_model: layer {merged!r} merges inputs with "
                                 f"different Keras masks, which tf-keras 2.21 combines with "
                                 f"AND and Keras 3 with OR: a .keras file would compute "
                                 f"other numbers in Keras 3; save as .h5")
            _warn_tf_keras_attention(module)
            _write_keras3(path, module, _keras3_functional(module))
            return
        model_config = _functional_config(module)
    elif isinstance(module, torch.nn.Sequential):
        layers = list(module.children())
        if not layers:
            raise ValueError("save_keras_model: the Sequential has no layers")
        _build_in_order(module, layers, input_shape)
        _check_savable(layers)
        if suffix == ".keras":
            _write_keras3(path, module, _keras3_sequential(module, layers, input_shape))
            return
        model_config = _sequential_config(module, layers, input_shape)
    else:
        raise TypeError(f"save_keras_model takes a torch.nn.Sequential of sepconv layers or a "
                        f"model from load_keras_model. Received {type(module).__name__}")
    for m in layers:
        if type(m).__name__ == "ZeroPadding1D" and m.data_format != "channels_last":
            raise ValueError(f"save_keras_model: layer {m.name!r} (ZeroPadding1D) pads "
                             f"data_format={m.data_format!r}, which tf-keras' ZeroPadding1D "
                             f"does not take (Keras 3's does); save as .keras")
    for m in module.modules():  # layers tf-keras 2 does not have (a class attribute says)
        if hasattr(m, "check_tf_keras_file"):  # a layer tf-keras would compute otherwise
            m.check_tf_keras_file()
        if getattr(m, "KERAS3_ONLY", False):
            raise ValueError(f"save_keras_model: layer {m.name!r} ({type(m).__name__}) "
                             f"exists in Keras 3 only; tf-keras 2 (and R keras 2) cannot "
                             f"load it from .h5; save as .keras")
    keras3_only = sorted({f"{getattr(m, 'name', '?')}.{attr}" for m in module.modules()
                          for attr, v in vars(m).items()
                          if any(v is f for f in _activations.KERAS3_VARIANTS.values())})
    if keras3_only:
        import warnings
        warnings.warn(f"save_keras_model: {', '.join(keras3_only)} use Keras 3's formula "
                      f"({', '.join(_activations.KERAS3_VARIANTS)}); tf-keras will compute "
                      f"its own formula under the same name", stacklevel=2)
    keras3_softmax = sorted(m.name for m in module.modules() if getattr(m, "_keras3", False))
    if keras3_softmax:
        import warnings
        warnings.warn(f"save_keras_model: {', '.join(keras3_softmax)} came from a Keras 3 "
                      f"file and mask their attention as Keras 3 does; tf-keras gives a "
                      f"query step whose keys are all masked the mean of the values instead "
                      f"of zeros", stacklevel=2)
    _write_h5(path, json.dumps(model_config, default=_json_default),
              [m for m in layers if type(m).__name__ != _INPUT])


def _check_lambdas(module: torch.nn.Module, suffix: str) -> None:
    """``Lambda`` layers go to a file only with the config the same Keras' file gave
    them: a torch callable has no Keras form (Keras stores Python bytecode of Keras code),
    and tf-keras' bytecode config is not Keras 3's."""
    from ..layers.lambda_layer import Lambda
    flavour = "keras3" if suffix == ".keras" else "tf_keras"
    for m in module.modules():
        if not isinstance(m, Lambda):
            continue
        if m.file_config is None:
            raise ValueError(f"save_keras_model: layer {m.name!r} (Lambda) computes a torch "
                             f"callable, which a Keras file cannot hold (Keras stores the "
                             f"Python bytecode of a function on Keras tensors); write a "
                             f"Keras layer or operation nodes instead, or keep the model "
                             f"with torch.save")
        if m.file_flavour != flavour:
            other = ".keras" if suffix != ".keras" else ".h5"
            raise ValueError(f"save_keras_model: layer {m.name!r} (Lambda) came from a "
                             f"{'Keras 3' if m.file_flavour == 'keras3' else 'tf-keras'} "
                             f"file, whose Lambda config the other Keras does not read; "
                             f"save as {other}")


def _warn_tf_keras_attention(module: torch.nn.Module) -> None:
    """Attention layers masking as tf-keras does, written for Keras 3 (whose masked softmax
    differs where every key of a query step is masked): a warning naming them."""
    names = sorted(m.name for m in module.modules()
                   if type(m).__name__ == "MultiHeadAttention" and not m._keras3)
    if names:
        import warnings
        warnings.warn(f"save_keras_model: {', '.join(names)} mask their attention as "
                      f"tf-keras does; Keras 3 gives a query step whose keys are all masked "
                      f"zeros instead of the mean of the values", stacklevel=3)


def _merges_of_different_masks(module: "KerasFunctional") -> Optional[str]:
    """The first merge layer whose inputs carry different masks (by the mask sources they
    come from), where tf-keras and Keras 3 compute different masks; ``None`` if none."""
    from ..layers.masking import Masking
    from ..layers.merging import _Merge
    children = dict(module.named_children())
    origins: Dict[Ref, Any] = {}
    for lname, node, args, kwargs in module.steps:
        layer = children[lname]
        ins = [origins.get(r) for r in _refs_in(args)]
        first = ins[0] if ins else None
        if isinstance(layer, Masking) or getattr(layer, "mask_zero", False):
            out = (lname, node)
        elif not getattr(layer, "supports_masking", False):
            out = None
        elif isinstance(layer, _Merge):
            if any(i is not None for i in ins) and len(set(ins)) > 1:
                return lname
            out = first
        elif hasattr(layer, "return_sequences"):
            out = first if layer.return_sequences else None
        else:
            out = None if type(layer).__name__ == "GlobalAveragePooling1D" else first
        origins[(lname, node, 0)] = out
    return None


def _build_in_order(module, layers: List[Any], input_shape: Any) -> None:
    """Builds the layers of a Sequential that have no weights yet from the model's input
    shape, layer after layer, as Keras builds a Sequential whose first layer has an
    ``input_shape`` (their weights initialised then, as there).  Nothing happens when the
    input shape is unknown or a layer cannot tell its output shape."""
    if all(getattr(layer, "built", True) for layer in layers):
        return
    try:
        shape: Any = tuple(_sequential_batch_shape(module, layers, input_shape))
    except ValueError:
        return
    device = next((p.device for p in module.parameters()), None)
    for layer in layers:
        if not getattr(layer, "built", True) and hasattr(layer, "_build_checked"):
            try:
                layer._build_checked(shape, device=device)
            except Exception:  # noqa: BLE001 - _check_savable then says what is missing
                return
        shape = _written_output_shape(layer, shape)
        if shape is None:
            return


def _written_output_shape(layer: Any, shape: Any) -> Any:
    """The output shape the writers give a layer's tensors: a nested model's from its
    config (loaded models remember theirs), else :func:`_output_shape`."""
    if _is_model(layer):
        return _nested_output_shape(layer)
    return _output_shape(layer, shape)


def _is_op(module: Any) -> bool:
    """An operation node between layers (a TensorFlow function, a Keras 3 operation)."""
    return isinstance(module, (_tf_ops.TFOp, _keras_ops.KerasOp))


def _is_model(module: Any) -> bool:
    """A model used as a layer: a loaded functional model or a :class:`Sequential`."""
    return isinstance(module, (KerasFunctional, Sequential))


def _model_layers(model: torch.nn.Module) -> List[torch.nn.Module]:
    """A nested model's layers (a functional model's without its operation nodes)."""
    return [m for m in model.children() if not _is_op(m)]


def _check_savable(layers: List[torch.nn.Module],
                   names: Optional[Dict[int, str]] = None) -> None:
    """Refuses, naming the module (its Keras name where the model has one), what Keras
    could not rebuild from a file."""
    for i, layer in enumerate(layers):
        if _is_model(layer):  # a model used as a layer: written as Keras nests it
            if not getattr(layer, "keras_name", None):
                raise ValueError(f"save_keras_model: module {i} is a Sequential used as a "
                                 f"layer without a Keras name; set its keras_name "
                                 f"(e.g. model[{i}].keras_name = 'stem')")
            if not list(layer.children()):
                raise ValueError(f"save_keras_model: model {layer.keras_name!r} nested in "
                                 f"the model has no layers")
            _check_savable(_model_layers(layer))
            continue
        if not isinstance(layer, _base.Layer) or not hasattr(layer, "get_config"):
            which = f"layer {names[id(layer)]!r}" if names and id(layer) in names else \
                f"module {i}"
            raise ValueError(f"save_keras_model: {which} ({type(layer).__name__}) is not "
                             f"a sepconv Keras layer (a custom layer's torch module or a "
                             f"plain torch module), which Keras could not rebuild from the "
                             f"file; sorted(sepconv.layers.base.KERAS_CLASSES) lists the "
                             f"layers it can")
        if not getattr(layer, "built", True) and getattr(layer, "WEIGHT_NAMES", ()):
            raise ValueError(f"save_keras_model: layer {layer.name!r} has no weights yet "
                             f"(call the model once, or give the layer an input_shape)")


def _input_dtype(first: Any) -> str:
    """The dtype of the InputLayer written before a Sequential's first layer: "string"
    before the text preprocessing layers (their ``KERAS_INPUT_DTYPE``), else float32."""
    return getattr(first, "KERAS_INPUT_DTYPE", None) or "float32"


def _input_entry(name: str, batch_shape: Any, layer: Any = None,
                 dtype: str = "float32") -> dict:
    if layer is not None:
        config = dict(layer.get_config())
        config["batch_input_shape"] = batch_shape
        config.pop("batch_shape", None)
    else:
        config = {"batch_input_shape": batch_shape, "dtype": dtype, "sparse": False,
                  "ragged": False, "name": name}
    return {"class_name": _INPUT, "config": config}


def _sequential_batch_shape(module, layers, input_shape) -> List[Any]:
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
    return [None if v is None else int(v) for v in batch_shape]


def _tf_keras_class(layer: torch.nn.Module) -> str:
    """The class name tf-keras writes for ``layer`` (its registered name where a class says
    one: the applications' ``Custom>CustomScaleLayer``)."""
    return getattr(layer, "TF_KERAS_REGISTERED_NAME", None) or type(layer).__name__


def _sequential_config(module, layers, input_shape) -> dict:
    batch_shape = _sequential_batch_shape(module, layers, input_shape)
    first = layers[0]
    entries = []
    if type(first).__name__ != _INPUT:
        entries.append(_input_entry(f"{_layer_name(first)}_input", batch_shape,
                                    dtype=_input_dtype(first)))
    for layer in layers:
        if layer is first and type(layer).__name__ == _INPUT:
            entries.append(_input_entry(layer.name, batch_shape, layer))
            continue
        if _is_model(layer):  # a model used as a layer: its own config, nested
            entries.append(_h5_model_config(layer))
            continue
        config = dict(layer.get_config())
        if layer is first:
            config["batch_input_shape"] = batch_shape
            config.pop("batch_shape", None)
        entries.append({"class_name": _tf_keras_class(layer), "config": config})
    return {"class_name": "Sequential", "config": {
        "name": getattr(module, "keras_name", None) or "sequential", "layers": entries}}


def _h5_model_config(model: torch.nn.Module) -> dict:
    """A model's tf-keras config entry (``class_name`` ``Sequential`` or
    ``Functional``, its ``config``), as tf-keras nests a model used as a layer."""
    if isinstance(model, KerasFunctional):
        return _functional_config(model)
    return _sequential_config(model, list(model.children()), None)


def _nested_node_numbers(module: KerasFunctional, first: int) -> Dict[Tuple[str, int], int]:
    """The nodes of the models used as layers of ``module``, numbered from ``first`` in
    call order: tf-keras counts a nested model's own construction as its node 0 (so its
    calls from 1), Keras 3 does not (0); a loaded model keeps its file's numbers."""
    children = dict(module.named_children())
    out: Dict[Tuple[str, int], int] = {}
    for lname in children:
        if _is_model(children[lname]):
            nodes = sorted({node for n, node, _, _ in module.steps if n == lname})
            out.update({(lname, node): first + i for i, node in enumerate(nodes)})
    return out


def _renumbered(value: Any, numbers: Dict[Tuple[str, int], int]) -> Any:
    if isinstance(value, tuple) and value and value[0] == "__ref__":
        return ("__ref__", value[1], numbers.get((value[1], value[2]), value[2]), value[3])
    if isinstance(value, list):
        return [_renumbered(v, numbers) for v in value]
    if isinstance(value, dict):
        return {k: _renumbered(v, numbers) for k, v in value.items()}
    return value


def _first_and_keywords(layer: torch.nn.Module, name: str, args: list,
                        kwargs: dict) -> Tuple[Any, dict]:
    """A call as tf-keras saves it: the first argument (the node's inputs), every other
    one as a keyword named after the call's parameters (a Keras 3 file's
    ``MultiHeadAttention(query, value)``)."""
    kwargs = dict(kwargs)
    if len(args) > 1:
        params = [p for p in inspect.signature(layer.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(params) < len(args):
            raise ValueError(f"save_keras_model: layer {name!r} is called with "
                             f"{len(args)} arguments, more than its call takes")
        kwargs.update({p.name: a for p, a in zip(params[1:], args[1:])})
    return (args[0] if args else []), kwargs


def _tf_keras_keywords(value: Any) -> Any:
    """Call keywords in tf-keras' node format: tensors as ``[layer, node, index]``."""
    if isinstance(value, tuple) and value and value[0] == "__ref__":
        return [value[1], value[2], value[3]]
    if isinstance(value, (list, tuple)):
        return [_tf_keras_keywords(v) for v in value]
    if isinstance(value, dict):
        return {k: _tf_keras_keywords(v) for k, v in value.items()}
    return value


def _functional_config(module: KerasFunctional) -> dict:
    """tf-keras' functional config: layers with ``inbound_nodes`` in its list format."""
    children = dict(module.named_children())
    entries = []
    for ref, shape in zip(module.input_refs, module.keras_input_shapes):
        batch_shape = _input_batch_shape(ref[0], shape)
        entry = _input_entry(ref[0], batch_shape, children.get(ref[0]))
        entries.append(dict(entry, name=ref[0], inbound_nodes=[]))
    # TensorFlow-function nodes get their file names back (``tf.math.add``: the module
    # name has ``_`` for the dots)
    names = {n: m.name for n, m in children.items() if isinstance(m, _tf_ops.TFOp)}
    numbers = _nested_node_numbers(module, 1)  # models used as layers: calls from 1
    nodes: Dict[str, List[Tuple[int, Any, dict]]] = {}
    for lname, node, args, kwargs in module.steps:
        node = numbers.get((lname, node), node)
        args, kwargs = _renumbered(args, numbers), _renumbered(kwargs, numbers)
        args, kwargs = _renamed(args, names), _renamed(kwargs, names)
        if isinstance(children[lname], _tf_ops.TFOp):
            first, kwargs = args[0], dict(kwargs)
        else:
            first, kwargs = _first_and_keywords(children[lname], lname, args, kwargs)
        nodes.setdefault(lname, []).append((node, first, kwargs))
    inputs = {r[0] for r in module.input_refs}
    for lname, layer in children.items():
        if lname in inputs:
            continue
        calls = sorted(nodes.get(lname, []), key=lambda n: n[0])
        if isinstance(layer, _tf_ops.TFOp):
            inbound = [_tf_op_node(first, _tf_keras_keywords(kwargs))
                       for _, first, kwargs in calls]
        else:
            inbound = [[[r[0], r[1], r[2], _tf_keras_keywords(kwargs)]
                        for r in _refs_in(first)] for _, first, kwargs in calls]
        if _is_model(layer):
            entries.append({**_h5_model_config(layer), "name": lname,
                            "inbound_nodes": inbound})
            continue
        entries.append({"class_name": layer.class_name if _is_op(layer) else
                        _tf_keras_class(layer), "config": layer.get_config(),
                        "name": names.get(lname, lname), "inbound_nodes": inbound})
    outputs = [_renumbered(("__ref__",) + tuple(r), numbers)[1:]
               for r in module.output_refs]
    return {"class_name": "Functional", "config": {
        "name": module.keras_name, "layers": entries,
        "input_layers": [[names.get(r[0], r[0])] + list(r[1:]) for r in module.input_refs],
        "output_layers": [[names.get(r[0], r[0])] + list(r[1:]) for r in outputs]}}


def _tf_op_node(first: Any, kwargs: dict) -> list:
    """A TensorFlow-function node as tf-keras writes it: its first argument's structure
    with each tensor as ``[layer, node, index, kwargs]`` and a constant as
    ``[_CONSTANT_VALUE, -1, value, kwargs]`` (what :func:`_tf_keras_node` reads)."""
    if isinstance(first, list):
        return [_tf_op_node(v, kwargs) for v in first]
    ref = ref_of(first)
    return [_CONSTANT_VALUE, -1, first, kwargs] if ref is None else [*ref, kwargs]


def _layer_name(layer: Any) -> str:
    return layer.keras_name if _is_model(layer) else layer.name


def _h5_layer_weights(layer: Any) -> Tuple[List[str], List[np.ndarray]]:
    """A layer's weight names (``<layer>/<weight>:0``) and arrays, in Keras' order."""
    arrays = layer.get_weights() if hasattr(layer, "get_weights") else []
    h5_names = getattr(layer, "h5_weight_names", None)  # nested weights' paths
    order = list(h5_names() if callable(h5_names) else getattr(layer, "_weight_order", []))
    if len(order) != len(arrays):
        order = [f"weight_{i}" for i in range(len(arrays))]
    return [f"{layer.name}/{w}:0" for w in order], arrays


def _h5_model_weights(model: Any) -> Tuple[List[str], List[np.ndarray]]:
    """A nested model's weights as tf-keras writes them in its group (its
    ``model.weights``): every trainable weight of its layers (models nested deeper
    included) in layer order, then every non-trainable one (moving statistics, frozen
    layers), each named by its innermost layer (``<layer>/<weight>:0``)."""
    parts: List[Tuple[bool, str, np.ndarray]] = []

    def collect(m):
        for layer in _model_layers(m):
            if _is_model(layer):
                collect(layer)
                continue
            if type(layer).__name__ == _INPUT:
                continue
            names, arrays = _h5_layer_weights(layer)
            tensors = list(getattr(layer, "weights", []) or [])
            if len(tensors) != len(arrays):
                tensors = [None] * len(arrays)
            for n, a, t in zip(names, arrays, tensors):
                trainable = t is None or (isinstance(t, torch.nn.Parameter) and
                                          t.requires_grad)
                parts.append((trainable, n, a))

    collect(model)
    ordered = [p for p in parts if p[0]] + [p for p in parts if not p[0]]
    return [n for _, n, _ in ordered], [a for _, _, a in ordered]


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
            g.attrs["layer_names"] = np.array([_layer_name(m).encode("utf8")
                                               for m in layers])
            # (by name, as tf-keras writes them: "conv/pad" would otherwise create
            # "conv" as its parent group before the layer "conv" (MobileNetV3's names))
            for layer in sorted(layers, key=_layer_name):
                lg = g.create_group(_layer_name(layer))
                if _is_model(layer):  # a nested model: its layers' weights, trainable first
                    wnames, arrays = _h5_model_weights(layer)
                else:
                    wnames, arrays = _h5_layer_weights(layer)
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


# -- saving Keras 3 .keras files -------------------------------------------------------
#: The Keras whose ``.keras`` layout this writer follows (checked against its own files).
_KERAS3_VERSION = "3.15.1"
_ANY = object()
#: tf-keras config keys Keras 3's class does not take -> the values that compute the same
#: there (dropped); any other value is refused.
_TF_KERAS_ONLY = {
    "Embedding": {"input_length": _ANY},  # a shape check only
    "Softmax": {"robust_masking": _ANY},  # masks only (sepconv takes none)
    "InputLayer": {"type_spec": _ANY, "input_tensor": (None,)},
    "ConvLSTM1D": {"time_major": (False, None)}, "ConvLSTM2D": {"time_major": (False, None)},
    "ConvLSTM3D": {"time_major": (False, None)},
    # recurrent layers: Keras 3 has no time_major; implementation only picks tf-keras'
    # kernel (and dropout masks: Keras 3 draws its own anyway)
    "LSTM": {"time_major": (False, None), "implementation": _ANY},
    "GRU": {"time_major": (False, None), "implementation": _ANY},
    "SimpleRNN": {"time_major": (False, None)},
    "RNN": {"time_major": (False, None)},  # layers/rnn.py: its cells are entries of their own
    # Keras 3's Discretization takes no `trainable` (it has no weights to train)
    "Discretization": {"trainable": _ANY},
}
for _cls in ("SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D"):
    _TF_KERAS_ONLY[_cls] = {"trainable": _ANY, "noise_shape": (None,)}  # no weights
for _cls in ("SeparableConv1D", "SeparableConv2D", "DepthwiseConv1D", "DepthwiseConv2D",
             "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"):
    _TF_KERAS_ONLY[_cls] = {"groups": (1, None)}  # tf-keras writes groups=1 for every Conv
# attention: Keras 3 keeps the input shapes in build_config (see _keras3_entry) and has no
# robust masking
_TF_KERAS_ONLY["MultiHeadAttention"] = {"query_shape": _ANY, "value_shape": _ANY,
                                        "key_shape": _ANY,
                                        "softmax_robust_masking": (False, None)}
#: Classes whose Keras 3 argument is the new name of a tf-keras one (:data:`_RENAMED_ARGS`).
_KERAS3_NAMES = {"LeakyReLU": ("negative_slope",), "InputLayer": ("batch_shape",)}
#: Classes whose Keras 3 form keeps the weights in a nested layer: the attribute it is
#: saved under and that layer's name (``layers/<key>/<attribute>/vars``).
_KERAS3_NESTED = {"ConvLSTM1D": ("cell", "conv_lstm_cell"),
                  "ConvLSTM2D": ("cell", "conv_lstm_cell"),
                  "ConvLSTM3D": ("cell", "conv_lstm_cell"),
                  "LSTM": ("cell", "lstm_cell"), "GRU": ("cell", "gru_cell"),
                  "SimpleRNN": ("cell", "simple_rnn_cell")}
#: Keras 3 wrappers of two layers: config key and weights group of each, in that order.
_KERAS3_PAIRS = {"Bidirectional": (("layer", "forward_layer"),
                                   ("backward_layer", "backward_layer"))}
#: Keras 3 pads only ``"valid"`` / ``"same"`` here (tf-keras also ``"causal"``): a causal
#: layer is written as ``ZeroPadding1D(((k - 1) * d, 0))`` then itself with ``"valid"``,
#: which is what tf-keras computes for ``"causal"`` (those zeros on the left, then valid).
_KERAS3_NO_CAUSAL = ("SeparableConv1D",)
_CAUSAL_PAD_SUFFIX = "_causal_pad"
_OBJECT_MODULES = (("_initializer", "keras.initializers"),
                   ("_regularizer", "keras.regularizers"),
                   ("_constraint", "keras.constraints"))


def _dtype_policy(name: str) -> dict:
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": name},
            "registered_name": None}


def _keras3_value(key: str, value: Any) -> Any:
    """A tf-keras config value in Keras 3's form: initializers, regularizers and
    constraints with their ``module``; tuples as lists."""
    if isinstance(value, dict) and "class_name" in value and "module" not in value:
        module = next((m for end, m in _OBJECT_MODULES if key.endswith(end)), None)
        if module is not None:
            return {"module": module, "class_name": value["class_name"],
                    "config": _keras3_value("", value.get("config") or {}),
                    "registered_name": None}
    if isinstance(value, dict):
        return {k: _keras3_value(k, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_keras3_value("", v) for v in value]
    return value


def _check_keras3_formulas(layer: torch.nn.Module) -> None:
    """Refuse functions that compute another formula in Keras 3 under the same name."""
    with _activations.keras_flavour("tf_keras"):
        tf_only = {name: _activations.get(name) for name in _activations.KERAS3_VARIANTS}
    for sub in layer.modules():
        for attr, value in vars(sub).items():
            for name, fn in tf_only.items():
                if value is fn:
                    raise ValueError(
                        f"save_keras_model: layer {layer.name!r} ({type(layer).__name__}) "
                        f"computes tf-keras' {name} in {attr}; Keras 3 computes another "
                        f"formula under that name, so a .keras file cannot carry it. Save "
                        f"as .h5, or set {attr} = sepconv.activations.KERAS3_VARIANTS"
                        f"[{name!r}] (Keras 3's formula: different outputs) first")


def _keras3_entry(layer: torch.nn.Module, input_shape: Any = None) -> dict:
    """One layer's Keras 3 config entry (``module``, ``class_name``, ``config``,
    ``registered_name``, ``build_config``); ``ValueError`` where Keras 3's config cannot
    express what the layer computes."""
    cls = type(layer).__name__
    _check_keras3_formulas(layer)
    config = dict(layer.get_config())
    if hasattr(layer, "keras3_config"):  # a layer whose Keras 3 config differs (or cannot be)
        config = layer.keras3_config(config)
    label = f"save_keras_model: layer {config.get('name', '?')!r} ({cls})"
    if cls == "ThresholdedReLU":  # Keras 3 dropped it: its ReLU(threshold) computes the same
        cls = "ReLU"
        config = {**{k: config[k] for k in ("name", "trainable", "dtype") if k in config},
                  "max_value": None, "negative_slope": 0.0, "threshold": config["theta"]}
    if getattr(layer, "TF_KERAS_ONLY", False):  # a class attribute says
        raise ValueError(f"{label}: Keras 3 has no {cls}; save as .h5 (tf-keras, R keras)")
    if cls in _KERAS3_NO_CAUSAL and config.get("padding") == "causal":
        raise ValueError(f"{label} has padding='causal', which Keras 3's {cls} does not "
                         f"have (it pads 'valid' or 'same' only); save as .h5")
    for key, values in _TF_KERAS_ONLY.get(cls, {}).items():
        if key in config:
            value = config.pop(key)
            if values is not _ANY and value not in values:
                raise ValueError(f"{label} has {key}={value!r}, which Keras 3's {cls} does "
                                 f"not take; save as .h5")
    for new in _KERAS3_NAMES.get(cls, ()):
        old = _RENAMED_ARGS[new]
        if old in config:
            config[new] = config.pop(old)
    if cls == "BatchNormalization" and isinstance(config.get("axis"), (list, tuple)):
        if len(config["axis"]) != 1:  # tf-keras writes [3]; Keras 3 takes one int
            raise ValueError(f"{label} normalises over axes {list(config['axis'])}; Keras "
                             f"3's BatchNormalization takes one axis; save as .h5")
        config["axis"] = int(config["axis"][0])
    if cls == "ZeroPadding1D":  # Keras 3's also has data_format (default: the user's)
        config["data_format"] = getattr(layer, "data_format", None) or "channels_last"
    config.pop("batch_input_shape", None)  # only Keras 3's InputLayer says the shape
    if "dtype" in config and cls != _INPUT:
        config["dtype"] = _dtype_policy(config["dtype"])
    nested = getattr(layer, "layer", None)
    pairs = {key: getattr(layer, attr) for key, attr in _KERAS3_PAIRS.get(cls, ())}
    if pairs:  # Keras 3 writes both sublayers' configs, always
        config = {**config, **{key: None for key in pairs if key not in config}}
    out = {}
    for key, value in config.items():
        if key in pairs:
            out[key] = _keras3_entry(pairs[key], input_shape)
        elif key == "cell" and cls == "RNN":  # Keras 3 nests the cell's full entry
            out[key] = _keras3_entry(layer.cell)
        elif key == "cells" and cls == "StackedRNNCells":
            out[key] = [_keras3_entry(cell) for cell in layer.cells]
        elif key == "layer" and isinstance(nested, torch.nn.Module):
            inner = None if input_shape is None else (input_shape[0],) + tuple(input_shape[2:])
            if cls == "SpectralNormalization":  # the wrapped layer takes the same inputs
                inner = input_shape
            out[key] = _keras3_entry(nested, inner)
        else:
            out[key] = _keras3_value(key, value)
    entry = {"module": "keras.layers", "class_name": cls, "config": out,
             "registered_name": None}
    if getattr(layer, "KERAS3_MODULE", None):  # a class outside keras.layers (applications)
        entry.update(module=layer.KERAS3_MODULE, registered_name=cls)
    if cls in ("MultiHeadAttention", "GroupQueryAttention") and \
            getattr(layer, "built", False):
        entry["build_config"] = {"shapes_dict": {
            f"{k}_shape": _keras3_value("", list(getattr(layer, f"{k}_shape")))
            for k in ("query", "value", "key")}}
    elif input_shape is not None and cls != _INPUT:
        entry["build_config"] = {"input_shape": _keras3_value("", input_shape)}
    return entry


def _is_causal_for_keras3(layer: Any) -> bool:
    return type(layer).__name__ in _KERAS3_NO_CAUSAL and \
        getattr(layer, "padding", None) == "causal"


def _causal_as_pad_and_valid(layer: Any, taken: set) -> Tuple[Any, Any]:
    """A causal ``layer`` as Keras 3 can write it: a ``ZeroPadding1D`` named
    ``<name>_causal_pad`` (``_1``, ``_2``, ... if taken; the name is added to ``taken``)
    padding ``(kernel_size - 1) * dilation_rate`` steps on the left, and a shallow copy of
    ``layer`` (the same parameters and functions) with ``padding="valid"``."""
    import copy

    from ..layers.reshaping import ZeroPadding1D

    name = base = f"{layer.name}{_CAUSAL_PAD_SUFFIX}"
    i = 0
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    left = (int(layer.kernel_size[0]) - 1) * int(layer.dilation_rate[0])
    pad = ZeroPadding1D(padding=(left, 0), name=name,
                        dtype=layer.get_config().get("dtype"))
    pad.data_format = layer.data_format  # Keras 3's ZeroPadding1D takes channels_first too
    valid = copy.copy(layer)
    valid.padding = "valid"
    return pad, valid


def _causal_expanded(layers: List[Any], taken: set) -> List[Any]:
    """``layers`` with each causal layer Keras 3 lacks as its pad and valid pair."""
    out = []
    for layer in layers:
        out.extend(_causal_as_pad_and_valid(layer, taken) if _is_causal_for_keras3(layer)
                   else [layer])
    return out


def _causal_expanded_functional(module: KerasFunctional) -> KerasFunctional:
    """The functional model with each causal layer Keras 3 lacks as a pad layer and the
    layer with ``padding="valid"`` reading it; a shared causal layer gets one shared pad
    layer, called at each of its calls (its node ``i`` feeds the layer's node ``i``)."""
    children = OrderedDict(module.named_children())
    if not any(_is_causal_for_keras3(layer) for layer in children.values()):
        return module
    taken = set(children) | {r[0] for r in module.input_refs}
    layers: "OrderedDict[str, torch.nn.Module]" = OrderedDict()
    pads: Dict[str, str] = {}
    for lname, layer in children.items():
        if _is_causal_for_keras3(layer):
            pad, valid = _causal_as_pad_and_valid(layer, taken)
            layers[pad.name], layers[lname], pads[lname] = pad, valid, pad.name
        else:
            layers[lname] = layer
    steps = []
    for lname, node, args, kwargs in module.steps:
        if lname in pads:
            steps.append((pads[lname], node, args, {}))
            args = [("__ref__", pads[lname], node, 0)]
        steps.append((lname, node, args, kwargs))
    return KerasFunctional(module.keras_name, layers, module.input_refs, module.output_refs,
                           steps, module.keras_input_shapes)


def _keras3_input_entry(name: str, batch_shape: Any, layer: Any = None,
                        dtype: str = "float32") -> dict:
    if layer is not None:
        entry = _keras3_entry(layer)
        entry["config"]["batch_shape"] = list(batch_shape)
        return entry
    return {"module": "keras.layers", "class_name": _INPUT, "config": {
        "batch_shape": list(batch_shape), "dtype": dtype, "sparse": False, "ragged": False,
        "name": name, "optional": False}, "registered_name": None}


def _keras3_sequential(module, layers, input_shape) -> Tuple[dict, list]:
    """Keras 3's Sequential config and its layers in weight-numbering order (the input
    layer is not counted)."""
    batch_shape = _sequential_batch_shape(module, layers, input_shape)
    first = layers[0]
    has_input = type(first).__name__ == _INPUT
    name = getattr(module, "keras_name", None) or "sequential"
    entries = [_keras3_input_entry(first.name if has_input else f"{name}_input", batch_shape,
                                   first if has_input else None, _input_dtype(first))]
    shape: Any = tuple(batch_shape)
    body = _causal_expanded(layers[1:] if has_input else layers,
                            {_layer_name(layer) for layer in layers})
    for layer in body:
        entries.append(_keras3_model_config(layer)[0] if _is_model(layer) else
                       _keras3_entry(layer, shape))
        shape = _written_output_shape(layer, shape)
    config = {"name": name, "trainable": True, "dtype": _dtype_policy("float32"),
              "layers": entries, "build_input_shape": list(batch_shape)}
    top = {"module": "keras", "class_name": "Sequential", "config": config,
           "registered_name": None, "build_config": {"input_shape": list(batch_shape)},
           "compile_config": None}
    return top, [(_layer_name(layer), layer) for layer in body]


def _keras3_order(module: KerasFunctional) -> Tuple[List[str], Dict[Tuple[str, int], int]]:
    """The layers in the order Keras 3's ``Functional`` lists them (``map_graph``: depth
    from the outputs, deepest first, ties in the order a depth-first walk from the outputs
    first meets them), which numbers their weights in the file; and each node's index
    among its layer's nodes there."""
    parents: Dict[Tuple[str, int], List[Tuple[str, int]]] = {}
    for r in module.input_refs:
        parents[(r[0], r[1])] = []
    for lname, node, args, kwargs in module.steps:
        parents[(lname, node)] = [(r[0], r[1]) for r in _refs_in([args, kwargs])]
    finished, in_progress, ordered, index = set(), set(), [], {}

    def walk(node):
        if node in finished:
            return
        if node in in_progress:
            raise ValueError(f"save_keras_model: the graph has a cycle at {node[0]!r}")
        index.setdefault(node[0], len(index))
        in_progress.add(node)
        for parent in parents[node]:
            walk(parent)
        finished.add(node)
        in_progress.discard(node)
        ordered.append(node)

    for r in module.output_refs:
        walk((r[0], r[1]))
    node_depth: Dict[Tuple[str, int], int] = {}
    layer_depth: Dict[str, int] = {}
    for node in reversed(ordered):
        depth = max(node_depth.setdefault(node, 0), layer_depth.get(node[0], 0))
        layer_depth[node[0]] = node_depth[node] = depth
        for parent in parents[node]:
            node_depth[parent] = max(depth + 1, node_depth.get(parent, 0))
    for r in module.input_refs:  # inputs no output reads: kept, at depth 0
        if r[0] not in layer_depth:
            layer_depth[r[0]], index[r[0]] = 0, -1
    names = sorted(layer_depth, key=lambda n: (-layer_depth[n], index[n]))
    renumber: Dict[Tuple[str, int], int] = {}
    for lname in names:
        nodes = sorted(n for n in finished if n[0] == lname) or [(lname, 0)]
        for i, n in enumerate(nodes):
            renumber[n] = i
    return names, renumber


def _keras3_functional(module: KerasFunctional) -> Tuple[dict, list]:
    """Keras 3's functional config (layers in its own order, nodes as
    ``{"args", "kwargs"}`` with ``__keras_tensor__`` entries) and the layers in order."""
    module = _causal_expanded_functional(module)
    children = dict(module.named_children())
    names, renumber = _keras3_order(module)
    unused = [n for n in children if n not in names]
    if unused:
        raise ValueError(f"save_keras_model: layer{'s' if len(unused) > 1 else ''} "
                         f"{', '.join(map(repr, unused))} of model {module.keras_name!r} "
                         f"feed no output; Keras 3 would drop them")
    shapes: Dict[Ref, Any] = {}
    dtypes: Dict[Ref, str] = {}
    inputs = {r[0]: (r, s) for r, s in zip(module.input_refs, module.keras_input_shapes)}
    entries: Dict[str, dict] = {}
    for lname, (ref, shape) in inputs.items():
        batch_shape = _input_batch_shape(lname, shape)
        entry = _keras3_input_entry(lname, batch_shape, children.get(lname))
        entry["config"]["name"] = lname
        entries[lname] = dict(entry, name=lname, inbound_nodes=[])
        shapes[ref] = tuple(batch_shape)
        dtypes[ref] = entry["config"].get("dtype") or "float32"

    def tensor(ref):
        shape = shapes.get(ref)
        return {"class_name": "__keras_tensor__", "config": {
            "shape": None if shape is None else list(shape),
            "dtype": dtypes.get(ref, "float32"),
            "keras_history": [ref[0], renumber.get((ref[0], ref[1]), ref[1]), ref[2]]}}

    def encode(value):
        if isinstance(value, tuple) and value and value[0] == "__ref__":
            return tensor(tuple(value[1:]))
        if isinstance(value, (list, tuple)):
            return [encode(v) for v in value]
        if isinstance(value, dict):
            return {k: encode(v) for k, v in value.items()}
        return value

    traced = _traced_shapes(module, dtypes) if any(map(_is_op, children.values())) else {}
    for lname, node, args, kwargs in module.steps:
        layer = children[lname]
        in_shape = _node_input_shape(shapes, args)
        if lname not in entries:
            entry = layer.keras3_entry() if isinstance(layer, _keras_ops.KerasOp) else \
                _keras3_model_config(layer)[0] if _is_model(layer) else \
                _keras3_entry(layer, in_shape)
            entries[lname] = dict(entry, name=lname, inbound_nodes=[])
        entries[lname]["inbound_nodes"].append(
            (renumber[(lname, node)], {"args": encode(args), "kwargs": encode(kwargs)}))
        out = _written_output_shape(layer, in_shape)
        compute = str(getattr(layer, "compute_dtype", torch.float32)).replace("torch.", "")
        if out is None and (lname, node, 0) in traced:  # an operation, or after one
            found = [traced[r] for r in traced if r[:2] == (lname, node)]
            out, compute = [s for s, _ in found], [d for _, d in found]
        for i, s in enumerate(out if isinstance(out, list) else [out]):
            shapes[(lname, node, i)] = s
            dtypes[(lname, node, i)] = compute[i] if isinstance(compute, list) else compute
    for lname in names:
        if lname not in inputs:
            entries[lname]["inbound_nodes"] = [n for _, n in sorted(
                entries[lname]["inbound_nodes"], key=lambda n: n[0])]

    def endpoints(refs):
        out = [[r[0], renumber.get((r[0], r[1]), r[1]), r[2]] for r in refs]
        return out[0] if len(out) == 1 else out

    config = {"name": module.keras_name, "trainable": True,
              "layers": [entries[n] for n in names],
              "input_layers": endpoints(module.input_refs),
              "output_layers": endpoints(module.output_refs)}
    top = {"module": "keras.src.models.functional", "class_name": "Functional",
           "config": config, "registered_name": "Functional",
           "build_config": {"input_shape": None}, "compile_config": None}
    return top, [(n, children.get(n)) for n in names]


def _keras3_model_config(model: torch.nn.Module) -> Tuple[dict, list]:
    """A model's Keras 3 config and its layers in weight-numbering order (a model used as
    a layer is nested with both, as Keras 3 nests it)."""
    if isinstance(model, KerasFunctional):
        return _keras3_functional(model)
    return _keras3_sequential(model, list(model.children()), None)


def _traced_shapes(module: KerasFunctional, dtypes: Dict[Ref, str]) -> Dict[Ref, tuple]:
    """Each node output's ``(shape, dtype)``, found by running the model, for the nodes no
    ``compute_output_shape`` answers (operations, and the layers after them): the model
    runs twice on zeros, the unknown sizes of its inputs ``2`` / ``3`` (batch) and ``24`` /
    ``40`` (other axes); a size that differs between the runs is unknown (``None``)."""
    children = dict(module.named_children())
    runs: List[Dict[Ref, tuple]] = []
    for batch, size in ((2, 24), (3, 40)):
        seen: Dict[str, List[Any]] = {}
        hooks = [m.register_forward_hook(lambda m, a, out, n=n: seen.setdefault(n, []).append(
                 [(tuple(t.shape), str(t.dtype).replace("torch.", ""))
                  for t in _flat_outputs(out)]))
                 for n, m in children.items()]
        try:
            xs = [torch.zeros([batch if i == 0 and v is None else size if v is None else v
                               for i, v in enumerate(shape)],
                              dtype=_keras_ops.torch_dtype(dtypes.get(ref, "float32")))
                  for ref, shape in zip(module.input_refs, module.keras_input_shapes)]
            with torch.no_grad():
                module(*xs)
        except Exception as err:  # noqa: BLE001 - said in one line
            raise ValueError(f"save_keras_model: the model's tensor shapes are needed for "
                             f"Keras 3's config of its operation nodes, and running it on "
                             f"zeros failed ({_one_line(err)})") from None
        finally:
            for h in hooks:
                h.remove()
        calls = {n: iter(v) for n, v in seen.items()}
        runs.append({(n, node, i): out for n, node, _, _ in module.steps
                     for i, out in enumerate(next(calls[n]))})
    return {ref: (tuple(a if a == b else None for a, b in zip(sa, sb)), da)
            for ref, (sa, da) in runs[0].items() for sb, _ in [runs[1][ref]]}


def _write_keras3_vars(group, layer: Any, name: str) -> None:
    """``<group>/vars/0..k`` (attribute ``name``), or the nested layer's group Keras 3
    keeps the weights in."""
    cls = type(layer).__name__
    own = group.create_group("vars")
    own.attrs["name"] = name
    if _is_model(layer):  # layers/<key>/layers/<its layers' keys>/vars
        _write_keras3_layers(group.create_group("layers"), _keras3_model_config(layer)[1])
        return
    if layer is None or not hasattr(layer, "get_weights") or not getattr(layer, "built", True):
        return
    if cls in _KERAS3_NESTED:
        attr, inner_name = _KERAS3_NESTED[cls]
        inner = group.create_group(attr).create_group("vars")
        inner.attrs["name"] = inner_name
        for i, a in enumerate(layer.get_weights()):
            inner.create_dataset(str(i), data=a)
        return
    if cls == "RNN":  # layers/<key>/cell/vars (a stack: cell/cells/<class key>/vars)
        _write_keras3_vars(group.create_group("cell"), layer.cell, layer.cell.name)
        return
    if cls == "StackedRNNCells":
        from ..layers.rnn import keras3_cell_keys
        cells = group.create_group("cells")
        for key, cell in zip(keras3_cell_keys(layer.cells), layer.cells):
            _write_keras3_vars(cells.create_group(key), cell, cell.name)
        return
    if cls == "MultiHeadAttention":  # four nested dense layers: kernel (and bias) each
        per = 2 if layer.use_bias else 1
        weights = layer.get_weights()
        for i, sub in enumerate(("query_dense", "key_dense", "value_dense", "output_dense")):
            inner = group.create_group(sub).create_group("vars")
            inner.attrs["name"] = sub
            for j, a in enumerate(weights[i * per:(i + 1) * per]):
                inner.create_dataset(str(j), data=a)
        return
    if cls == "GroupQueryAttention":  # Keras 3's attribute names, underscored
        per = 2 if layer.use_bias else 1
        weights = layer.get_weights()
        subs = ("query", "key") + (("gate",) if layer.use_gate else ()) + ("value", "output")
        for i, sub in enumerate(subs):
            inner = group.create_group(f"_{sub}_dense").create_group("vars")
            inner.attrs["name"] = "attention_output" if sub == "output" else sub
            for j, a in enumerate(weights[i * per:(i + 1) * per]):
                inner.create_dataset(str(j), data=a)
        return
    if cls in _KERAS3_PAIRS:
        for _, attr in _KERAS3_PAIRS[cls]:
            sub = getattr(layer, attr)
            _write_keras3_vars(group.create_group(attr), sub, sub.name)
        return
    nested = getattr(layer, "layer", None)
    if isinstance(nested, torch.nn.Module) and cls == "TimeDistributed":
        _write_keras3_vars(group.create_group("layer"), nested, nested.name)
        return
    if cls == "SpectralNormalization":  # own vars [kernel, vector_u], then the layer's
        own.create_dataset("0", data=layer.kernel.detach().cpu().numpy())
        own.create_dataset("1", data=layer.vector_u.detach().cpu().numpy())
        _write_keras3_vars(group.create_group("layer"), nested, nested.name)
        return
    names = getattr(layer, "KERAS3_VAR_NAMES", None)  # named variables (tf_idf lookups)
    for i, a in enumerate(layer.get_weights()):
        own.create_dataset(names[i] if names else str(i), data=a)
    for attr, inner_name in getattr(layer, "KERAS3_COPIES", ()):  # the same variables
        inner = group.create_group(attr).create_group("vars")    # in a sublayer too
        inner.attrs["name"] = inner_name                          # (TextVectorization)
        for i, a in enumerate(layer.get_weights()):
            inner.create_dataset(names[i] if names else str(i), data=a)


def _write_keras3_layers(group, layers: List[Tuple[str, Any]]) -> None:
    """Each layer's group ``<snake_case class>[_<n>]`` under ``group`` (operations have no
    weights; a nested model's key is ``functional`` / ``sequential``)."""
    layers = [(n, layer) for n, layer in layers if not _is_op(layer)]
    classes = [_INPUT if layer is None else
               ("Functional" if isinstance(layer, KerasFunctional) else "Sequential")
               if _is_model(layer) else type(layer).__name__ for _, layer in layers]
    for (name, layer), key in zip(layers, _files.v3_keys(classes)):
        _write_keras3_vars(group.create_group(key), layer, name)


def _write_keras3(path: str, module: torch.nn.Module, config_and_layers) -> None:
    """Keras 3's ``.keras`` zip, written atomically: ``metadata.json``, ``config.json`` and
    ``model.weights.h5`` (``layers/<snake_case class>[_<n>]/vars/<i>``, numbered per class
    in the model's layer order, as :mod:`sepconv.interop.files` reads them)."""
    import datetime
    import io
    import zipfile

    h5py = _files.h5py_module()
    top, layers = config_and_layers
    config_json = json.dumps(top, default=_json_default)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        _write_keras3_layers(f.create_group("layers"), layers)
        f.create_group("vars").attrs["name"] = top["config"]["name"]
    metadata = {"keras_version": _KERAS3_VERSION,
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    tmp = path + ".tmp"
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("metadata.json", json.dumps(metadata))
            z.writestr("config.json", config_json)
            z.writestr("model.weights.h5", buffer.getvalue())
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
