"""``Lambda`` layers of Keras model files, as torch callables.

How the Kerases store the function (tf-keras 2.21 and Keras 3.15, read from their code):

- tf-keras (``.h5``, ``.keras``, SavedModel): ``function`` is ``[code, defaults,
  closure]`` with ``function_type`` ``"lambda"`` for every Python function, named ``def``
  functions included (``code``: base64 of ``marshal.dumps(fn.__code__)``; ``defaults``
  and ``closure``: the values, as JSON), or a name with ``function_type`` ``"function"``
  for other callables; ``module`` is the function's module.  ``output_shape`` and ``mask``
  the same way (``output_shape_type`` ``"raw"``: a shape).  tf-keras runs the bytecode
  with the globals of its own Lambda module (``tf``, ``np``), of ``module`` where that is
  imported, and ``custom_objects``; its ``.keras`` loader refuses it unless
  ``safe_mode=False``, its ``.h5`` loader does not ask.
- Keras 3 (``.keras``, ``.h5``): a ``lambda`` as ``{"class_name": "__lambda__", "config":
  {"code", "defaults", "closure"}}`` (refused unless ``safe_mode=False``); a named
  function as ``{"class_name": "function", "config": "<name>", "module": ...}``, found
  among ``custom_objects`` by that name.

:func:`build_lambda` makes a :class:`sepconv.Lambda` from such an entry: the function
given by the layer's name in ``custom_objects`` if there, else by the function's name in
``custom_objects`` (Keras' rule), else, with ``safe_mode=False`` only, the bytecode run
with globals where the names Keras code uses (``tf``, ``K`` / ``backend``, ``keras``,
``ops``, ``np``, ``math``) compute on torch tensors with the tables that run tf-keras'
TensorFlow-function nodes (:data:`sepconv.interop.tf_ops.FUNCTIONS`) and Keras 3's
operation nodes (:mod:`sepconv.interop.keras_ops`).
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import contextvars
import dis
import inspect
import marshal
import math
import sys
import types
from typing import Any, Callable, Dict, Iterator, Optional

import numpy as np
import torch

from .. import _registry
from .. import activations as _activations
from .. import functional as _functional
from ..layers.lambda_layer import Lambda
from . import keras_ops as _keras_ops
from . import tf_ops as _tf_ops
from .files import KerasFileError

#: ``load_keras_model(..., safe_mode=...)``: whether bytecode from a file may run.
_SAFE_MODE: contextvars.ContextVar[bool] = contextvars.ContextVar("sepconv_safe_mode",
                                                                  default=True)


@contextlib.contextmanager
def safe_mode_scope(safe_mode: bool) -> Iterator[None]:
    if not isinstance(safe_mode, bool):
        raise TypeError(f"Invalid type for argument `safe_mode`. Expected True or False. "
                        f"Received safe_mode={safe_mode!r}")
    token = _SAFE_MODE.set(safe_mode)
    try:
        yield
    finally:
        _SAFE_MODE.reset(token)


class LambdaFunctionError(ValueError):
    """A Lambda's function uses a name sepconv does not run in torch."""


_PY = f"{sys.version_info.major}.{sys.version_info.minor}"


# -- the names Keras code uses, on torch tensors ---------------------------------------
#: tf-keras' ``backend`` (``K``) functions whose TensorFlow function has another name in
#: :data:`tf_ops.FUNCTIONS`, with K's defaults where they differ from TensorFlow's.
_BACKEND_NAMES = {
    "mean": "math.reduce_mean", "sum": "math.reduce_sum", "max": "math.reduce_max",
    "min": "math.reduce_min", "prod": "math.reduce_prod", "var": "math.reduce_variance",
    "std": "math.reduce_std", "logsumexp": "math.reduce_logsumexp",
    "any": "math.reduce_any", "all": "math.reduce_all", "concatenate": "concat",
    "permute_dimensions": "compat.v1.transpose", "squeeze": "compat.v1.squeeze",
    "shape": "compat.v1.shape", "dot": "linalg.matmul", "clip": "clip_by_value",
    "softmax": "nn.softmax", "elu": "nn.elu", "gelu": "nn.gelu",
}
_BACKEND_DEFAULTS = {"concatenate": {"axis": -1}, "expand_dims": {"axis": -1},
                     "softmax": {"axis": -1}, "cumsum": {"axis": 0}}
#: TensorFlow 2 names that dispatch to another function of the table.
_TF_ALIASES = {"divide": "math.truediv", "floordiv": "compat.v1.floor_div",
               "floor_div": "compat.v1.floor_div", "mod": "math.floormod"}
_TF_PREFIXES = ("", "math.", "nn.", "linalg.", "compat.v1.")
#: TensorFlow 2 functions whose table entry (the node tf-keras saves) is the TF1 function
#: with another argument order.
_TF_V2 = {"pad": _tf_ops._pad}
_DTYPES = ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64",
           "uint8", "bool")


def _k_sqrt(x):
    """tf-keras' ``backend.sqrt``: ``sqrt(max(x, 0))``."""
    x = _tf_ops._tensor(x)
    return torch.sqrt(torch.clamp(x, min=0))


def _k_relu(x, alpha=0.0, max_value=None, threshold=0.0):
    return _functional.keras_relu(_tf_ops._tensor(x), alpha, max_value, threshold)


def _constant(value, dtype=None, shape=None, name=None):
    t = _tf_ops._tensor(value) if dtype is None else \
        torch.as_tensor(value, dtype=_keras_ops.torch_dtype(dtype))
    return t.expand(_tf_ops._shape_list(shape)).clone() if shape is not None else t


#: tf-keras backend functions that are not a TensorFlow function of the table.
_BACKEND_OWN = {
    "sqrt": _k_sqrt, "relu": _k_relu, "epsilon": lambda: 1e-7, "floatx": lambda: "float32",
    "int_shape": lambda x: tuple(x.shape), "ndim": lambda x: x.dim(),
    "batch_flatten": lambda x: x.reshape(x.shape[0], -1),
    "flatten": lambda x: x.reshape(-1), "constant": _constant,
    "repeat_elements": lambda x, rep, axis: torch.repeat_interleave(x, int(rep), dim=axis),
}


def _bind_defaults(fn: Callable, defaults: Dict[str, Any]) -> Callable:
    """``fn`` with other defaults for some of its arguments (tf-keras backend's)."""
    sig = inspect.signature(fn)

    def call(*args, **kwargs):
        bound = sig.bind_partial(*args, **kwargs)
        for key, value in defaults.items():
            bound.arguments.setdefault(key, value)
        return fn(*bound.args, **bound.kwargs)
    return call


def _tf_function(path: str) -> Optional[Callable]:
    """The TensorFlow function ``tf.<path>`` (``"reduce_mean"``, ``"math.reduce_mean"``,
    ``"nn.relu"``) from :data:`tf_ops.FUNCTIONS`, or ``None``."""
    table = _tf_ops.FUNCTIONS
    if path in _TF_V2:
        return _TF_V2[path]
    if path in table:
        return table[path]
    head, _, name = path.rpartition(".")
    if head not in ("", "math", "nn", "linalg", "compat.v1"):  # tf.sparse, tf.image, ...
        return None
    if name in _TF_ALIASES:
        return table[_TF_ALIASES[name]]
    for prefix in _TF_PREFIXES:  # tf.reduce_mean is tf.math.reduce_mean, ...
        if prefix + name in table:
            return table[prefix + name]
    return None


def _backend_function(name: str) -> Optional[Callable]:
    if name in _BACKEND_OWN:
        return _BACKEND_OWN[name]
    fn = _tf_function(_BACKEND_NAMES.get(name, name))
    if fn is not None and name in _BACKEND_DEFAULTS:
        fn = _bind_defaults(fn, _BACKEND_DEFAULTS[name])
    return fn


def _camel(name: str) -> str:
    return {"abs": "Absolute"}.get(name, "".join(p.capitalize() for p in name.split("_")))


def _keras_op(name: str) -> Optional[Callable]:
    """``keras.ops.<name>`` as a function: the operation node of that class in
    :mod:`keras_ops`, its call's tensors positional, the rest (Keras 3's static
    arguments, :data:`keras_ops.STATIC_ARGS`) into the node's config."""
    if name == "shape":  # Keras 3's ops.shape: the sizes as a tuple of ints
        return lambda x: tuple(_keras_ops._t(x).shape)
    cls = _camel(name)
    if cls not in _keras_ops._OPS:
        return None
    run = _keras_ops._OPS[cls]
    if cls == "Einsum":  # ops.einsum(subscripts, *operands): the static argument first
        return lambda subscripts, *operands: run({"subscripts": subscripts})(*operands)
    tensors = [p for p in inspect.signature(run({})).parameters.values()
               if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    static = _keras_ops.STATIC_ARGS.get(cls, ())

    def op(*args, **kwargs):
        config = {"name": name}
        n = min(len(args), len(tensors))
        if len(args) - n > len(static):
            raise TypeError(f"ops.{name} takes at most {n + len(static)} positional "
                            f"arguments ({len(args)} given)")
        config.update(zip(static, args[n:]))
        call_kwargs = {}
        for key, value in kwargs.items():
            if key in static:
                config[key] = value
            else:
                call_kwargs[key] = value
        return run(config)(*args[:n], **call_kwargs)
    op.__name__ = name
    return op


def _unknown(layer: str, dotted: str) -> str:
    return (f"Layer {layer!r} (Lambda): its function calls {dotted}, which sepconv does "
            f"not run on torch tensors; pass custom_objects={{{layer!r}: torch_fn}} with a "
            f"torch function computing the layer")


#: ``tf.newaxis`` (``None``, which :func:`_resolve` uses for "unknown").
_NEWAXIS = object()


class Namespace:
    """A module seen by a Lambda's bytecode (``tf``, ``K``, ``keras.ops``, ...): each
    attribute resolves through ``resolve(dotted name)``; a name it cannot resolve raises
    :class:`LambdaFunctionError` naming the layer and the function."""

    def __init__(self, path: str, resolve: Callable[[str], Any], layer: str):
        self._path, self._resolve, self._layer = path, resolve, layer

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        dotted = f"{self._path}.{name}"
        value = self._resolve(dotted)
        if value is _NEWAXIS:
            return None
        if value is None:
            raise LambdaFunctionError(_unknown(self._layer, dotted))
        if isinstance(value, str) and value == "namespace":
            return Namespace(dotted, self._resolve, self._layer)
        return value

    def __repr__(self) -> str:
        return f"<sepconv torch stand-in for {self._path}>"


_TF_SUBMODULES = ("math", "nn", "linalg", "compat", "compat.v1", "__operators__", "keras",
                  "keras.backend", "keras.activations", "keras.ops")


def _resolve(dotted: str) -> Any:
    """What a dotted name of Keras code is on torch tensors: ``"namespace"`` for a module,
    a function, a constant, or ``None``."""
    root, _, rest = dotted.partition(".")
    if root in ("K", "backend"):
        root, rest = "keras", "backend." + rest
    if root == "ops":
        root, rest = "keras", "ops." + rest
    if root == "tf" and (rest == "keras" or rest.startswith("keras.")):
        root, rest = "keras", rest[6:]
    if root == "keras":
        if rest in ("", "backend", "ops", "activations", "ops.nn", "ops.numpy", "ops.math",
                    "ops.core"):
            return "namespace"
        area, _, name = rest.rpartition(".")
        if area == "backend":
            return _backend_function(name)
        if area.startswith("ops"):
            return _keras_op(name)
        if area == "activations":
            try:
                return _activations.get(name, "activation")
            except (ValueError, TypeError):
                return None
        return None
    if root == "tf":
        if rest in _TF_SUBMODULES:
            return "namespace"
        name = rest.rpartition(".")[2]
        if name in _DTYPES:
            return getattr(torch, name)
        if name == "newaxis":
            return _NEWAXIS
        if name == "constant":
            return _constant
        return _tf_function(rest)
    return None




class _NumPy:
    """``np`` for constants only (``np.pi``, ``np.float32(2.0)``, ``np.sqrt(2.0)``): a
    numpy function given a torch tensor raises, naming the layer."""

    def __init__(self, layer: str):
        self._layer = layer

    def __getattr__(self, name: str) -> Any:
        value = getattr(np, name)
        if not callable(value):
            return value
        layer = self._layer

        def constant(*args, **kwargs):
            if any(isinstance(a, torch.Tensor) for a in list(args) + list(kwargs.values())):
                raise LambdaFunctionError(
                    f"Layer {layer!r} (Lambda): its function calls np.{name} on a tensor; "
                    f"sepconv runs numpy on constants only; pass custom_objects="
                    f"{{{layer!r}: torch_fn}} with a torch function computing the layer")
            out = value(*args, **kwargs)
            if isinstance(out, np.generic):
                return out.item()
            return torch.as_tensor(out) if isinstance(out, np.ndarray) else out
        return constant


def namespace(layer: str) -> Dict[str, Any]:
    """The globals a Lambda's bytecode runs with (``layer``: its name, for messages)."""
    tf = Namespace("tf", _resolve, layer)
    keras = Namespace("keras", _resolve, layer)
    backend = Namespace("K", _resolve, layer)
    ops = Namespace("ops", _resolve, layer)
    numpy = _NumPy(layer)
    return {"__builtins__": builtins, "tf": tf, "keras": keras, "K": backend,
            "backend": backend, "ops": ops, "np": numpy, "numpy": numpy, "math": math}




# -- bytecode ----------------------------------------------------------------------------
def _check_bytecode(code: types.CodeType, layer: str) -> None:
    """``KerasFileError`` unless ``code`` (and the code objects it holds) is bytecode of
    this Python: every opcode one this interpreter defines, followed by its inline caches
    (zeros).  Another Python's code object can unmarshal here and then crash it."""
    # the bytes as unmarshalled (``co_code`` would map unknown opcodes to known ones)
    raw = getattr(code, "_co_code_adaptive", code.co_code)
    caches = getattr(dis, "_inline_cache_entries", None)
    cache_op = dis.opmap.get("CACHE", 0)
    i = 0
    while i < len(raw):
        op = raw[i]
        name = dis.opname[op]
        if name.startswith("<"):
            raise KerasFileError(f"Layer {layer!r} (Lambda): its function's bytecode is "
                                 f"not Python {_PY}'s (opcode {op}); {_WHERE}")
        n = 0
        if isinstance(caches, dict):
            n = caches.get(name, 0)
        elif caches is not None:
            n = caches[op]
        for j in range(1, n + 1):
            if i + 2 * j < len(raw) and raw[i + 2 * j] != cache_op:
                raise KerasFileError(f"Layer {layer!r} (Lambda): its function's bytecode "
                                     f"is not Python {_PY}'s; {_WHERE}")
        i += 2 * (n + 1)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _check_bytecode(const, layer)


_WHERE = ("it was saved by another Python version (Python bytecode changes with each "
          "minor version): load the file with the Python that saved it, or pass "
          "custom_objects={'<layer name>': torch_fn} with a torch function")


def _unmarshal(text: Any, layer: str) -> types.CodeType:
    if not isinstance(text, str):
        raise KerasFileError(f"Layer {layer!r} (Lambda): its function's code is "
                             f"{type(text).__name__}, not base64 text")
    try:
        raw = base64.b64decode(text.encode("ascii"))
    except (UnicodeEncodeError, ValueError):
        raw = text.encode("raw_unicode_escape")  # tf-keras' fallback for old files
    try:
        code = marshal.loads(raw)
    except (ValueError, EOFError, TypeError) as err:
        raise KerasFileError(f"Layer {layer!r} (Lambda): this Python ({_PY}) cannot read "
                             f"its function's bytecode ({err}); "
                             f"{_WHERE.replace('<layer name>', layer)}") from None
    if not isinstance(code, types.CodeType):
        raise KerasFileError(f"Layer {layer!r} (Lambda): its function's code holds "
                             f"{type(code).__name__}, not Python bytecode")
    _check_bytecode(code, layer)
    return code


def _without_inplace(code: types.CodeType) -> types.CodeType:
    """``code`` with its augmented assignments (``x -= m``) computing a new value, as they
    do on TensorFlow's immutable tensors: on a torch tensor they would write into the
    layer's input (another layer's output; a leaf that autograd refuses to change)."""
    raw = bytearray(code.co_code)
    nb_ops = getattr(dis, "_nb_ops", None)  # Python 3.11+: BINARY_OP's argument
    plain = {sym: i for i, (_, sym) in enumerate(nb_ops or ()) if not sym.endswith("=")}
    for ins in dis.get_instructions(code):
        if ins.opname == "BINARY_OP" and nb_ops and ins.arg is not None and \
                ins.arg < len(nb_ops) and nb_ops[ins.arg][1].endswith("="):
            raw[ins.offset + 1] = plain[nb_ops[ins.arg][1][:-1]]
        elif ins.opname.startswith("INPLACE_"):  # Python <= 3.10
            raw[ins.offset] = dis.opmap["BINARY_" + ins.opname[len("INPLACE_"):]]
    consts = tuple(_without_inplace(c) if isinstance(c, types.CodeType) else c
                   for c in code.co_consts)
    return code.replace(co_code=bytes(raw), co_consts=consts)


def _global_names(code: types.CodeType) -> Iterator[str]:
    """The dotted global names ``code`` reads (``"tf.math.reduce_mean"``, ``"K"``,
    ``"len"``): a global followed by its attribute loads, nested code objects too."""
    chain = None
    for ins in dis.get_instructions(code):
        if ins.opname == "LOAD_GLOBAL":
            if chain:
                yield chain
            chain = str(ins.argval)
        elif ins.opname in ("LOAD_ATTR", "LOAD_METHOD") and chain is not None:
            chain = f"{chain}.{ins.argval}"
        elif ins.opname not in ("CACHE", "PRECALL", "PUSH_NULL", "EXTENDED_ARG"):
            if chain:
                yield chain
            chain = None
    if chain:
        yield chain
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _global_names(const)


def _check_names(code: types.CodeType, globs: Dict[str, Any], layer: str) -> None:
    """At load, what the function would find missing when called: an unknown global, or
    an attribute of ``tf`` / ``K`` / ``keras`` / ``ops`` / ``np`` sepconv does not run."""
    for dotted in _global_names(code):
        root, *attrs = dotted.split(".")
        if root in globs:
            value = globs[root]
        elif hasattr(builtins, root):
            continue
        else:
            raise KerasFileError(
                f"Layer {layer!r} (Lambda): its function uses the name {root!r}, which "
                f"sepconv does not provide (it gives tf, K, backend, keras, ops, np, math "
                f"on torch tensors); pass custom_objects={{{root!r}: ...}}, or "
                f"custom_objects={{{layer!r}: torch_fn}} for the whole layer")
        for attr in attrs:
            if not isinstance(value, (Namespace, _NumPy)):
                break
            try:
                value = getattr(value, attr)
            except LambdaFunctionError:  # named in full: tf.image.resize, not tf.image
                raise KerasFileError(_unknown(layer, dotted)) from None
            except AttributeError:
                raise KerasFileError(
                    f"Layer {layer!r} (Lambda): its function uses {dotted}, which does "
                    f"not exist; pass custom_objects={{{layer!r}: torch_fn}}") from None


def _cells(values: Any, code: types.CodeType, layer: str) -> Optional[tuple]:
    values = list(values or [])
    if len(values) != len(code.co_freevars):
        raise KerasFileError(f"Layer {layer!r} (Lambda): its function closes over "
                             f"{len(code.co_freevars)} values, the file holds "
                             f"{len(values)}")
    return tuple(types.CellType(_value(v)) for v in values) or None


def _value(value: Any) -> Any:
    """A constant of a Lambda's config as Keras gives it to the function: tuples, numpy
    arrays (tf-keras' ``{"type": "ndarray"}``, Keras 3's ``__numpy__`` / ``__tensor__``)
    as torch tensors."""
    if isinstance(value, dict):
        cls = value.get("class_name")
        if cls == "__tuple__":
            return tuple(_value(v) for v in (value.get("config") or {}).get("items", []))
        if cls in ("__numpy__", "__tensor__"):
            return _keras_ops._t(value)
        if value.get("type") == "ndarray" and "value" in value:
            return torch.as_tensor(np.array(value["value"]))
        return {k: _value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_value(v) for v in value]
    return value


def _from_bytecode(dump: Any, layer: str, what: str, module: Any = None) -> Callable:
    """A function from ``[code, defaults, closure]`` (tf-keras) or ``{"code", "defaults",
    "closure"}`` (Keras 3), run with :func:`namespace` and the ``custom_objects``."""
    if _SAFE_MODE.get():
        raise KerasFileError(
            f"Layer {layer!r} (Lambda): its {what} is Python bytecode, and loading it runs "
            f"code from the file, so sepconv refuses it by default (Keras' safe_mode). If "
            f"you trust the file, pass safe_mode=False to load_keras_model (command line: "
            f"--unsafe); or give the layer as a torch function: "
            f"custom_objects={{{layer!r}: torch_fn}}")
    if isinstance(dump, dict) and "class_name" in dump:
        dump = _value(dump) if dump["class_name"] == "__tuple__" else dump.get("config")
    if isinstance(dump, dict):
        text, defaults, closure = dump.get("code"), dump.get("defaults"), dump.get("closure")
    elif isinstance(dump, (list, tuple)) and len(dump) == 3:
        text, defaults, closure = dump
    else:
        raise KerasFileError(f"Layer {layer!r} (Lambda): its {what} is neither a name nor "
                             f"Keras' [code, defaults, closure]")
    code = _unmarshal(text, layer)
    custom = _registry._CUSTOM.get()
    if code.co_name != "<lambda>" and code.co_name in custom:  # a named function: Keras' rule
        return custom[code.co_name]
    if isinstance(module, str) and module.split(".")[0] in ("tensorflow", "tf_keras") \
            and code.co_name != "<lambda>":
        # a TensorFlow / tf-keras backend function itself (Lambda(tf.nn.relu)): its
        # bytecode calls TensorFlow's internals; sepconv's function of that name
        path = f"{'K' if module.startswith('tf_keras') else 'tf'}.{code.co_name}"
        if _resolve(path) is not None:
            return NamedFunction(path)
        raise KerasFileError(
            f"Layer {layer!r} (Lambda): its {what} is {module}'s own {code.co_name!r} (the "
            f"bytecode of TensorFlow's internals, a dispatch wrapper for most functions), "
            f"which sepconv cannot tell by name; pass custom_objects={{{layer!r}: "
            f"torch_fn}} with a torch function computing the layer")
    used = {name.split(".")[0] for name in _global_names(code)}
    return FileFunction(text, _value(defaults), _value(closure), layer,
                        {k: v for k, v in custom.items() if k in used})


class FileFunction:
    """A function of a model file's ``Lambda``, its bytecode run with :func:`namespace`
    and the ``custom_objects`` it names (``extra``).  Pickles as its bytecode
    (``torch.save`` of a loaded model; ``torch.load`` runs it again)."""

    def __init__(self, text: str, defaults: Any, closure: Any, layer: str,
                 extra: Dict[str, Any]):
        code = _without_inplace(_unmarshal(text, layer))
        globs = {**namespace(layer), **extra}
        _check_names(code, globs, layer)
        self._state = (text, defaults, closure, layer, extra)
        self.__wrapped__ = types.FunctionType(code, globs, code.co_name,
                                              tuple(defaults) if defaults else None,
                                              _cells(closure, code, layer))
        self.__name__ = code.co_name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)

    def __reduce__(self):
        return (FileFunction, self._state)

    def __repr__(self) -> str:
        return f"<{self.__name__} from the file's bytecode, layer {self._state[3]!r}>"


class NamedFunction:
    """The function sepconv runs for a Keras / TensorFlow function's dotted name
    (``"tf.relu"``, ``"keras.ops.relu"``); pickles as the name."""

    def __init__(self, path: str):
        self.path = path
        self.__name__ = path.rpartition(".")[2]
        self.__wrapped__ = _resolve(path)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)

    def __reduce__(self):
        return (NamedFunction, (self.path,))

    def __repr__(self) -> str:
        return f"<sepconv's {self.path}>"


def _from_name(name: Any, module: Any, layer: str, what: str) -> Callable:
    """A function a file names (Keras 3's named functions, tf-keras' ``"function"`` type):
    from ``custom_objects`` by its name, else a Keras function sepconv runs on torch."""
    fn = _registry.custom_object(name)
    if fn is None and isinstance(module, str) and module.split(".")[0] == "keras":
        area = "ops" if ".ops" in module else "activations" if "activations" in module \
            else None
        if area is not None and _resolve(f"keras.{area}.{name}") is not None:
            fn = NamedFunction(f"keras.{area}.{name}")
    if fn is None:
        raise KerasFileError(f"Layer {layer!r} (Lambda): its {what} is the Python function "
                             f"{name!r}{f' of module {module}' if module else ''}: pass "
                             f"custom_objects={{{name!r}: torch_fn}} with a torch function "
                             f"computing it (or {{{layer!r}: torch_fn}} for the layer)")
    if not callable(fn):
        raise KerasFileError(f"Layer {layer!r} (Lambda): custom_objects[{name!r}] is not "
                             f"callable")
    return fn


def _function(config: dict, key: str, layer: str, what: str) -> Any:
    """The callable (or shape, for ``output_shape``) under ``key`` of a Lambda config of
    either Keras; ``None`` where absent."""
    value = config.get(key)
    kind = config.get(f"{key}_type")  # tf-keras
    module = config.get("module" if key == "function" else f"{key}_module")
    if value is None:
        return None
    if kind == "raw":
        return _value(value)
    if kind == "lambda":
        return _from_bytecode(value, layer, what, module)
    if kind == "function":
        return _from_name(value, module, layer, what)
    if isinstance(value, dict) and value.get("class_name") == "__lambda__":  # Keras 3
        return _from_bytecode(value, layer, what)
    if isinstance(value, dict) and value.get("class_name") == "function":
        return _from_name(value.get("config"), value.get("module"), layer, what)
    if isinstance(value, str):
        return _from_name(value, module, layer, what)
    return _value(value)


def _shape(value: Any) -> Any:
    """An ``output_shape`` read from JSON: lists of whole numbers as tuples."""
    if callable(value) or value is None:
        return value
    if isinstance(value, (list, tuple)) and all(v is None or isinstance(v, int)
                                                for v in value):
        return tuple(value)
    return [_shape(v) for v in value]


def build_lambda(entry: dict, flavour: str) -> Lambda:
    """A :class:`sepconv.Lambda` for a model file's ``Lambda`` entry (see the module
    docstring for where its function comes from)."""
    from .models import _plain
    config = dict(entry.get("config") or {})
    layer = str(config.get("name") or entry.get("name") or "?")
    custom = _registry._CUSTOM.get()
    if layer in custom:  # the whole layer by its name
        function = custom[layer]
        if not callable(function):
            raise KerasFileError(f"Layer {layer!r} (Lambda): custom_objects[{layer!r}] is "
                                 f"not callable")
        try:
            output_shape = _function(config, "output_shape", layer, "output_shape")
        except KerasFileError:  # only for shape inference: found by running it instead
            output_shape = None
    else:
        function = _function(config, "function", layer, "function")
        output_shape = _function(config, "output_shape", layer, "output_shape")
    mask = _function(config, "mask", layer, "mask")
    arguments = _value(config.get("arguments") or {})
    try:
        shape = config.get("batch_input_shape", config.get("batch_shape"))
        module = Lambda(function, output_shape=_shape(output_shape), mask=mask,
                        arguments=arguments, name=layer,
                        batch_input_shape=None if shape is None else tuple(shape),
                        trainable=config.get("trainable", True),
                        dtype=_plain(config.get("dtype")))
    except (TypeError, ValueError) as err:
        raise KerasFileError(f"Layer {layer!r} (Lambda): {err}") from None
    module.file_config = {k: v for k, v in config.items()
                          if k not in ("name", "trainable", "dtype", "batch_input_shape",
                                       "batch_shape")}
    module.file_flavour = flavour
    return module
