"""The Keras 3 operations a ``.keras`` file's functional graph holds between its layers.

Keras 3 writes every ``keras.ops`` call on Keras tensors as a graph node (module
``keras.src.ops.numpy`` / ``.nn`` / ``.core`` / ``.math``, class ``Add``, ``Multiply``,
``GetItem``, ``Reshape``, ``Mean``, ...): the operators (``x + y``, ``2.0 * x``, ``-x``,
``x[:, -1]``, ``a @ b``), the functions users call (``ops.concatenate``, ``ops.tanh``,
``ops.softmax``, ...), and the mask arithmetic of ``Embedding(mask_zero=True)`` /
``Masking`` and the merges (``NotEqual``, ``Any``, ``LogicalOr``, ...), whose result reaches
the layers as an explicit ``mask=`` argument.  A node's static arguments (``axis``,
``newshape``, ``approximate``) are in its config; its tensors and constants are its call's
positional arguments.  :class:`KerasOp` runs one node with Keras 3's semantics (those of
its torch backend, which the tests compare with): Python floats are float32 and ints int32
(weak: ``x_float16 * 2.0`` stays float16, ``x_int32 * 2.0`` is float32), ``true_divide`` of
integers is float32, ``mean`` of integers float32, ``sum`` of integers keeps int32/int64,
``gelu`` is the tanh approximation unless ``approximate=False``, ``axis=None`` reduces
every axis, indexing follows NumPy.  These modules are not Keras layers (no weights, not
in ``KERAS_CLASSES``).

:func:`getitem` (NumPy indexing from a saved key) and :func:`torch_dtype` (dtype names)
serve tf-keras' TensorFlow-function nodes too (:mod:`sepconv.interop.tf_ops`).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

_DTYPE_NAMES = ("bool", "float16", "bfloat16", "float32", "float64", "int8", "int16",
                "int32", "int64", "uint8", "uint16", "uint32", "uint64", "complex64",
                "complex128")


def torch_dtype(name: Any) -> torch.dtype:
    """The torch dtype of a Keras / TensorFlow dtype name (``"float32"``, ``"int32"``,
    ``"bool"``, ...); ``ValueError`` for others."""
    if isinstance(name, torch.dtype):
        return name
    key = str(name).lower()
    if key not in _DTYPE_NAMES:
        raise ValueError(f"unsupported dtype {name!r} (sepconv knows "
                         f"{', '.join(_DTYPE_NAMES)})")
    return getattr(torch, key)


def _index_bound(value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return int(value.reshape(()).item())
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"a slice bound must be an integer; received {value!r}")
    return value


def _index_item(item: Any) -> Any:
    """One saved index: a slice (tf-keras' ``{"start", "stop", "step"}``, Keras 3's
    ``{"class_name": "__slice__", "config": {...}}``), the ellipsis
    (``{"class_name": "__ellipsis__"}``), ``None`` (a new axis) or an integer."""
    if isinstance(item, dict):
        cls = item.get("class_name")
        if cls == "__ellipsis__":
            return Ellipsis
        bounds = item.get("config") if cls == "__slice__" else item
        if isinstance(bounds, dict) and set(bounds) == {"start", "stop", "step"}:
            return slice(*(_index_bound(bounds[k]) for k in ("start", "stop", "step")))
        raise ValueError(f"unsupported index {item!r}")
    if item is None or item is Ellipsis or isinstance(item, slice):
        return item
    if isinstance(item, torch.Tensor) and item.dim() == 0 and not item.is_floating_point() \
            and item.dtype != torch.bool:
        return int(item.item())
    if isinstance(item, int) and not isinstance(item, bool):
        return item
    raise ValueError(f"unsupported index {item!r} (sepconv slices with integers, slices, "
                     f"... and None)")


def getitem(x: torch.Tensor, key: Any) -> torch.Tensor:
    """``x[key]`` with NumPy's (and TensorFlow's strided-slice) rules: ``key`` is one saved
    index or a list of them (a tuple in Python); negative indices count from the end,
    slices clamp to the axis and may step backwards, ``...`` stands for the axes not
    named, ``None`` inserts an axis of size 1, an integer removes its axis."""
    items = [_index_item(k) for k in (key if isinstance(key, (list, tuple)) else [key])]
    ellipses = [i for i, k in enumerate(items) if k is Ellipsis]
    if len(ellipses) > 1:
        raise ValueError("an index can hold only one ellipsis (...)")
    named = sum(1 for k in items if k is not None and k is not Ellipsis)
    if named > x.dim():
        raise ValueError(f"too many indices ({named}) for a tensor of shape "
                         f"{tuple(x.shape)}")
    if ellipses:
        at = ellipses[0]
        items[at:at + 1] = [slice(None)] * (x.dim() - named)
    out: List[Any] = []
    dim = 0
    for k in items:  # torch slices step forwards only: reversed steps as a selection
        if isinstance(k, slice) and k.step is not None and k.step <= 0:
            if k.step == 0:
                raise ValueError("a slice step cannot be zero")
            picked = list(range(x.shape[dim]))[k]
            x = x.index_select(dim, torch.tensor(picked, dtype=torch.long, device=x.device))
            k = slice(None)
        dim += k is not None
        out.append(k)
    return x[tuple(out)]


def is_op(entry: dict) -> bool:
    """Whether a functional config entry is a Keras 3 operation (not a layer): its module
    says so; Keras 3's legacy ``.h5`` writer drops every entry's module, and there an
    operation is told by its config, which has no ``trainable`` (every layer's has)."""
    module = entry.get("module")
    if module is not None:
        return str(module).startswith("keras.src.ops")
    config = entry.get("config")
    return entry.get("class_name") in _OPS and isinstance(config, dict) and \
        "trainable" not in config and "name" in config


def _t(x: Any) -> torch.Tensor:
    """A tensor, or a constant as Keras 3 converts it: Python floats float32, ints int32
    (torch's promotion then treats a 0-d constant as Keras treats a weak Python number)."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, dict) and x.get("class_name") in ("__numpy__", "__tensor__"):
        # an array constant (ops.matmul(x, np.ones(...))): its own dtype, not weak
        c = x.get("config") or {}
        return torch.as_tensor(c.get("value"), dtype=torch_dtype(c.get("dtype", "float32")))
    t = torch.as_tensor(x)
    return t.to(torch.int32) if t.dtype == torch.int64 else t


def _float(x: torch.Tensor) -> torch.Tensor:
    """Integers and booleans as float32 (Keras' ``result_type(dtype, float)``)."""
    return x if x.is_floating_point() else x.to(torch.float32)


def _axes(x: torch.Tensor, axis: Any) -> Optional[tuple]:
    """``axis`` (an int, a list of them, or ``None``: every axis) as sorted dims."""
    if axis is None:
        return None
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return tuple(sorted({int(a) % max(x.dim(), 1) for a in axes}))


def _reduce(fn: Callable) -> Callable:
    """Boolean reductions of the mask arithmetic (``Any``, ``All``)."""
    def run(config: Dict[str, Any]) -> Callable:
        axis, keepdims = config.get("axis"), bool(config.get("keepdims", False))

        def op(x):
            x = _t(x).to(torch.bool)
            if axis is None:
                out = fn(x)
                return out.reshape((1,) * x.dim()) if keepdims else out
            dims = axis if isinstance(axis, (list, tuple)) else [axis]
            dims = sorted({d % x.dim() for d in dims})
            for d in dims:
                x = fn(x, dim=d, keepdim=True)
            return x if keepdims else x.squeeze(tuple(dims))
        return op
    return run


def _numeric_reduce(fn: Callable, result: str = "same") -> Callable:
    """``Mean`` / ``Sum`` / ``Max`` / ... over ``axis`` (``None``: all, ``[]``: none) with
    ``keepdims``; ``result``: ``"float"`` (integers reduce as float32), ``"sum"`` (bool and
    8/16-bit integers give int32, other integers keep their dtype) or ``"same"``."""
    def run(config: Dict[str, Any]) -> Callable:
        axis, keepdims = config.get("axis"), bool(config.get("keepdims", False))
        initial = config.get("initial")

        def op(x):
            x = _t(x)
            dims = _axes(x, axis)
            if dims == ():
                return x
            dims = tuple(range(x.dim())) if dims is None else dims
            if result == "float":
                x = _float(x)
            out = fn(x, dims, keepdims)
            if result == "sum" and not x.is_floating_point():
                small = x.dtype in (torch.bool, torch.uint8, torch.int8, torch.int16)
                out = out.to(torch.int32 if small else x.dtype)
            if initial is not None:
                limit = torch.as_tensor(initial, dtype=out.dtype, device=out.device)
                out = torch.maximum(out, limit) if fn is _max else torch.minimum(out, limit)
            return out
        return op
    return run


def _max(x, dims, keepdim):
    return torch.amax(x, dim=dims, keepdim=keepdim)


def _min(x, dims, keepdim):
    return torch.amin(x, dim=dims, keepdim=keepdim)


def _prod(x, dims, keepdim):
    for d in sorted(dims, reverse=True):
        x = torch.prod(x, dim=d, keepdim=keepdim)
    return x


_DTYPES = {"bool": torch.bool, "float32": torch.float32, "float64": torch.float64,
           "int32": torch.int32, "int64": torch.int64}


def _like(value: int) -> Callable:
    def run(config: Dict[str, Any]) -> Callable:
        dtype = config.get("dtype")

        def op(x):
            x = _t(x)
            return torch.full_like(x, value, dtype=_DTYPES.get(dtype, x.dtype))
        return op
    return run


def _binary(fn: Callable) -> Callable:
    return lambda c: lambda a, b: fn(_t(a), _t(b))


def _unary(fn: Callable, to_float: bool = False) -> Callable:
    if to_float:
        return lambda c: lambda x: fn(_float(_t(x)))
    return lambda c: lambda x: fn(_t(x))


def _softmax(log: bool) -> Callable:
    """Keras 3's ``softmax`` / ``log_softmax``: over ``axis`` (an int, a tuple, or
    ``None``: every axis at once)."""
    def run(config: Dict[str, Any]) -> Callable:
        axis = config.get("axis", -1)

        def op(x):
            x = _float(_t(x))
            dims = _axes(x, axis)
            dims = tuple(range(x.dim())) if dims is None else dims
            if len(dims) == 1:
                return (torch.log_softmax if log else torch.softmax)(x, dim=dims[0])
            out = x - torch.logsumexp(x, dim=dims, keepdim=True)
            return out if log else torch.exp(out)
        return op
    return run


def _expand_dims(config: Dict[str, Any]) -> Callable:
    """``ExpandDims``: new axes of size 1 at ``axis`` (an int or several, positions in
    the output)."""
    axis = config.get("axis", -1)

    def op(x):
        x = _t(x)
        axes = axis if isinstance(axis, (list, tuple)) else [axis]
        rank = x.dim() + len(axes)
        for a in sorted(int(a) % rank for a in axes):
            x = x.unsqueeze(a)
        return x
    return op


def _transpose(config: Dict[str, Any]) -> Callable:
    axes = config.get("axes")
    return lambda x: _t(x).permute(list(range(_t(x).dim()))[::-1] if axes is None
                                   else [int(a) for a in axes])


def _squeeze(config: Dict[str, Any]) -> Callable:
    """``Squeeze``: the axes of size 1 (``axis``: only those named, each of size 1)."""
    axis = config.get("axis")

    def op(x):
        x = _t(x)
        return squeeze(x, _axes(x, axis), "squeeze")
    return op


def squeeze(x: torch.Tensor, dims: Optional[tuple], what: str) -> torch.Tensor:
    """``x`` without its axes of size 1 (``dims``: only those, each of which must be 1;
    ``ValueError`` naming ``what`` otherwise).  Keras 3's ``Squeeze`` and TensorFlow's
    ``squeeze``."""
    if dims is None:
        return x.squeeze()
    bad = [d for d in dims if x.shape[d] != 1]
    if bad:
        raise ValueError(f"{what}: axis {bad[0]} of shape {tuple(x.shape)} is not 1")
    return x.squeeze(dims)


def _split(config: Dict[str, Any]) -> Callable:
    """``Split``: ``indices_or_sections`` equal sections (an int) or cuts at these
    indices (a list), as NumPy's ``split``."""
    parts, axis = config.get("indices_or_sections"), int(config.get("axis", 0))

    def op(x):
        x = _t(x)
        if isinstance(parts, (list, tuple)):
            return list(torch.tensor_split(x, [int(i) for i in parts], dim=axis))
        if x.shape[axis] % int(parts):
            raise ValueError(f"split: axis {axis} of size {x.shape[axis]} does not split "
                             f"into {parts} equal sections")
        return list(torch.chunk(x, int(parts), dim=axis))
    return op


def _where(c: Dict[str, Any]) -> Callable:
    def op(condition, x1=None, x2=None):
        if x1 is None or x2 is None:
            raise ValueError("where with only a condition has a data-dependent shape; "
                             "sepconv runs where(condition, x1, x2) only")
        return torch.where(_t(condition).to(torch.bool), _t(x1), _t(x2))
    return op


def _floor_divide(a, b):
    a, b = _t(a), _t(b)
    return torch.floor_divide(a, b).to(torch.result_type(a, b))


def _clip(c: Dict[str, Any]) -> Callable:
    return lambda x: torch.clip(_t(x), min=c.get("x_min"), max=c.get("x_max"))


def _matmul(a, b):
    return torch.matmul(_t(a), _t(b))


def pad(x: torch.Tensor, pad_width: Any, mode: str = "constant", constant_values: Any = 0,
        where: str = "pad") -> torch.Tensor:
    """NumPy's ``pad`` of any axes: ``pad_width`` a ``(before, after)`` pair per axis (one
    pair, or one number, for every axis); ``mode`` ``"constant"``, ``"reflect"`` (the edge
    not repeated), ``"symmetric"`` (repeated) or ``"edge"``.  Any rank (torch's reflect
    pads at most the last three axes); ``ValueError`` naming ``where`` for a reflection
    longer than the axis allows or an unknown mode."""
    x = _t(x)
    if isinstance(pad_width, torch.Tensor):
        pad_width = pad_width.tolist()
    if isinstance(pad_width, int) or (isinstance(pad_width, (list, tuple)) and pad_width
                                      and isinstance(pad_width[0], int)):
        pad_width = [pad_width]
    pairs = [(int(p[0]), int(p[-1])) if isinstance(p, (list, tuple)) else (int(p), int(p))
             for p in pad_width]
    if len(pairs) == 1:
        pairs = pairs * x.dim()
    if len(pairs) != x.dim() or any(a < 0 or b < 0 for a, b in pairs):
        raise ValueError(f"{where}: padding {pairs} for a tensor of rank {x.dim()} (one "
                         f"non-negative (before, after) pair per axis)")
    if mode == "constant":
        value = 0 if constant_values is None else constant_values
        if isinstance(value, torch.Tensor):
            value = value.item()
        flat = [v for a, b in reversed(pairs) for v in (a, b)]
        return F.pad(x, flat, mode="constant", value=value)
    if mode not in ("reflect", "symmetric", "edge"):
        raise ValueError(f"{where}: mode {mode!r} is not one sepconv runs (constant, "
                         f"reflect, symmetric, edge)")
    for axis, (a, b) in enumerate(pairs):
        if not a and not b:
            continue
        n = x.shape[axis]
        limit = n - 1 if mode == "reflect" else n
        if n == 0 or max(a, b) > limit:
            raise ValueError(f"{where}: {mode} padding of ({a}, {b}) on axis {axis} of size "
                             f"{n} (at most {limit})")
        i = torch.arange(-a, n + b, device=x.device)
        if mode == "reflect":
            i = torch.where(i < 0, -i, torch.where(i >= n, 2 * (n - 1) - i, i))
        elif mode == "symmetric":
            i = torch.where(i < 0, -i - 1, torch.where(i >= n, 2 * n - 1 - i, i))
        else:
            i = i.clamp(0, n - 1)
        x = torch.index_select(x, axis, i)
    return x


_OPS: Dict[str, Callable[[Dict[str, Any]], Callable]] = {
    "Pad": lambda c: lambda x, *, constant_values=None: pad(
        x, c["pad_width"], c.get("mode", "constant"), constant_values, "ops.pad"),
    # mask arithmetic and comparisons
    "NotEqual": lambda c: lambda a, b: torch.ne(_t(a), b if not isinstance(b, list) else
                                                _t(b)),
    "Equal": lambda c: lambda a, b: torch.eq(_t(a), b if not isinstance(b, list) else _t(b)),
    "Greater": _binary(torch.gt), "GreaterEqual": _binary(torch.ge),
    "Less": _binary(torch.lt), "LessEqual": _binary(torch.le),
    "LogicalOr": lambda c: lambda a, b: torch.logical_or(_t(a), _t(b)),
    "LogicalAnd": lambda c: lambda a, b: torch.logical_and(_t(a), _t(b)),
    "LogicalNot": lambda c: lambda a: torch.logical_not(_t(a)),
    "Any": _reduce(torch.any),
    "All": _reduce(torch.all),
    "ZerosLike": _like(0),
    "OnesLike": _like(1),
    # arithmetic (the operators on Keras tensors) and elementwise functions
    "Add": _binary(torch.add), "Subtract": _binary(torch.sub),
    "Multiply": _binary(torch.mul), "Divide": _binary(torch.true_divide),
    "TrueDivide": _binary(torch.true_divide), "FloorDivide": lambda c: _floor_divide,
    "Mod": _binary(torch.remainder), "Power": _binary(torch.pow),
    "Maximum": _binary(torch.maximum), "Minimum": _binary(torch.minimum),
    "Negative": _unary(torch.neg), "Absolute": _unary(torch.abs),
    "Square": _unary(torch.square), "Sqrt": _unary(torch.sqrt, True),
    "Rsqrt": _unary(torch.rsqrt, True), "Exp": _unary(torch.exp, True),
    "Log": _unary(torch.log, True), "Log1p": _unary(torch.log1p, True),
    "Reciprocal": _unary(torch.reciprocal, True), "Sign": _unary(torch.sign),
    "Floor": _unary(torch.floor), "Ceil": _unary(torch.ceil),
    "Round": lambda c: lambda x: torch.round(_t(x), decimals=int(c.get("decimals", 0))),
    "Erf": _unary(torch.erf, True), "Tanh": _unary(torch.tanh, True),
    "Clip": _clip, "Where": _where,
    # activations (keras.ops.nn)
    "Relu": _unary(torch.relu), "Relu6": _unary(F.relu6), "Sigmoid": _unary(torch.sigmoid, True),
    "Silu": _unary(F.silu, True), "Selu": _unary(F.selu, True),
    "Softplus": _unary(F.softplus, True), "Softsign": _unary(F.softsign, True),
    "HardSigmoid": _unary(F.hardsigmoid, True), "HardSilu": _unary(F.hardswish, True),
    "Elu": lambda c: lambda x: F.elu(_float(_t(x)), alpha=float(c.get("alpha", 1.0))),
    "LeakyRelu": lambda c: lambda x: F.leaky_relu(
        _float(_t(x)), negative_slope=float(c.get("negative_slope", 0.2))),
    "Gelu": lambda c: lambda x: F.gelu(
        _float(_t(x)), approximate="tanh" if c.get("approximate", True) else "none"),
    "Softmax": _softmax(log=False), "LogSoftmax": _softmax(log=True),
    # reductions
    "Mean": _numeric_reduce(lambda x, d, k: torch.mean(x, dim=d, keepdim=k), "float"),
    "Sum": _numeric_reduce(lambda x, d, k: torch.sum(x, dim=d, keepdim=k), "sum"),
    "Max": _numeric_reduce(_max), "Min": _numeric_reduce(_min),
    "Prod": _numeric_reduce(_prod, "sum"),
    "Std": _numeric_reduce(lambda x, d, k: torch.std(x, dim=d, keepdim=k, correction=0),
                           "float"),
    "Var": _numeric_reduce(lambda x, d, k: torch.var(x, dim=d, keepdim=k, correction=0),
                           "float"),
    "Logsumexp": _numeric_reduce(lambda x, d, k: torch.logsumexp(x, dim=d, keepdim=k),
                                 "float"),
    # shapes and structure
    "Concatenate": lambda c: lambda xs: torch.cat([_t(x) for x in xs], dim=c.get("axis", 0)),
    "Stack": lambda c: lambda xs: torch.stack([_t(x) for x in xs], dim=c.get("axis", 0)),
    "Split": _split,
    "Reshape": lambda c: lambda x: _t(x).reshape([int(v) for v in c["newshape"]]),
    "Transpose": _transpose,
    "Swapaxes": lambda c: lambda x: _t(x).transpose(int(c["axis1"]), int(c["axis2"])),
    "ExpandDims": _expand_dims, "Squeeze": _squeeze,
    "Tile": lambda c: lambda x: torch.tile(_t(x), tuple(
        c["repeats"] if isinstance(c["repeats"], (list, tuple)) else [c["repeats"]])),
    "GetItem": lambda c: lambda x, key: getitem(_t(x), key),
    # linear algebra and dtypes
    "Matmul": lambda c: _matmul,
    "Cast": lambda c: lambda x: _t(x).to(torch_dtype(c["dtype"])),
    # (Keras 3's Attention hands its query mask on through this)
    "ConvertToTensor": lambda c: lambda x: _t(x) if not c.get("dtype") else
    _t(x).to(torch_dtype(c["dtype"])),
}


# -- what sequence models add (cumulative sums, flips, shifts, differences, top-k, one-hot,
# padding, triangles, einsum, ...), as Keras 3.15's torch backend computes them ------------

def _cumulative(fn: Callable) -> Callable:
    """``Cumsum`` / ``Cumprod``: ``axis=None`` runs over the flattened tensor; ``dtype``
    (else the input's; booleans count as int32); float16 computed in float32 on CPU."""
    def run(config: Dict[str, Any]) -> Callable:
        axis, dtype = config.get("axis"), config.get("dtype")

        def op(x):
            x = _t(x)
            dim = 0 if axis is None else int(axis)
            x = x.reshape(-1) if axis is None else x
            out = torch_dtype(dtype) if dtype else x.dtype
            out = torch.int32 if out == torch.bool else out
            if out == torch.float16 and x.device.type == "cpu":
                return fn(x, dim=dim, dtype=torch.float32).to(torch.float16)
            return fn(x, dim=dim, dtype=out)
        return op
    return run


def _dims(axis: Any) -> Optional[tuple]:
    return None if axis is None else tuple(axis) if isinstance(axis, (list, tuple)) \
        else (int(axis),)


def _flip(c: Dict[str, Any]) -> Callable:
    axis = _dims(c.get("axis"))
    return lambda x: torch.flip(_t(x), dims=axis if axis is not None
                                else tuple(range(_t(x).dim())))


def _roll(c: Dict[str, Any]) -> Callable:
    shift, axis = c.get("shift", 0), c.get("axis")
    shift = tuple(shift) if isinstance(shift, (list, tuple)) else int(shift)
    return lambda x: torch.roll(_t(x), shift, dims=_dims(axis))


def _normalize(c: Dict[str, Any]) -> Callable:
    """``ops.normalize``: ``x / ||x||_order`` along ``axis``; order 2 as Keras computes it,
    ``x * min(rsqrt(sum(x^2)), 1 / epsilon)`` (``epsilon`` None: 1e-7)."""
    axis, order = c.get("axis", -1), c.get("order", 2)
    epsilon = 1e-7 if c.get("epsilon") is None else float(c["epsilon"])
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"normalize: order must be an int >= 1. Received order={order!r}")

    def op(x):
        x = _float(_t(x))
        x = x.reshape(1) if x.dim() == 0 else x
        dims = _dims(axis) if axis is not None else tuple(range(x.dim()))
        if order == 2:
            inv = torch.rsqrt(torch.sum(torch.square(x), dim=dims, keepdim=True))
            return x * torch.minimum(inv, torch.as_tensor(1.0 / epsilon, dtype=x.dtype))
        if len(dims) > 1:  # Keras' linalg.norm of two axes is a matrix norm
            raise ValueError(f"normalize: order={order} over axes {axis} (a matrix norm) "
                             f"is not supported")
        norm = torch.linalg.vector_norm(x, ord=order, dim=dims, keepdim=True)
        return x / torch.maximum(norm, torch.as_tensor(epsilon, dtype=x.dtype))
    return op


def _top_k(c: Dict[str, Any]) -> Callable:
    """``TopK``: ``[values, indices]`` of the ``k`` largest along the last axis (torch's
    int64 indices, as Keras 3's torch backend returns them)."""
    k, ordered = int(c.get("k", 1)), bool(c.get("sorted", True))

    def op(x):
        values, indices = torch.topk(_t(x), k, sorted=ordered)
        return [values, indices]
    return op


def _arg(fn: Callable) -> Callable:
    """``Argmax`` / ``Argmin`` (int32; ``axis=None``: of the flattened tensor)."""
    def run(c: Dict[str, Any]) -> Callable:
        axis, keepdims = c.get("axis"), bool(c.get("keepdims", False))

        def op(x):
            x = _t(x)
            x = x.to(torch.uint8) if x.dtype == torch.bool else x
            return fn(x, dim=axis, keepdim=keepdims).to(torch.int32)
        return op
    return run


def _sort(indices: bool) -> Callable:
    """``Sort`` / ``Argsort`` (stable, int32 indices; ``axis=None``: flattened)."""
    def run(c: Dict[str, Any]) -> Callable:
        axis = c.get("axis", -1)

        def op(x):
            x = _t(x)
            dim = -1 if axis is None else int(axis)
            x = x.reshape(-1) if axis is None else x
            if indices:
                x = x.to(torch.uint8) if x.dtype == torch.bool else x
                return torch.argsort(x, dim=dim, stable=True).to(torch.int32)
            return torch.sort(x, dim=dim).values
        return op
    return run


def _one_hot(c: Dict[str, Any]) -> Callable:
    """``OneHot``: a new axis ``axis`` of ``num_classes``; negative ids give zeros."""
    classes, axis = int(c.get("num_classes", 1)), int(c.get("axis", -1))
    dtype = torch_dtype(c.get("dtype") or "float32")
    if c.get("sparse"):
        raise ValueError("one_hot: sparse=True has no dense torch form")

    def op(x):
        x = _t(x).long()
        out = F.one_hot(torch.clamp(x, min=0), classes)
        out = torch.where(x.unsqueeze(-1) >= 0, out, 0).to(dtype)
        return out if axis in (-1, out.dim() - 1) else torch.movedim(out, -1, axis)
    return op


def _repeat(c: Dict[str, Any]) -> Callable:
    repeats, axis = c.get("repeats", 1), c.get("axis")

    def op(x):
        x = _t(x)
        r = torch.as_tensor(repeats) if isinstance(repeats, (list, tuple)) else int(repeats)
        if axis is None:
            return torch.repeat_interleave(x.reshape(-1), r)
        return torch.repeat_interleave(x, r, dim=int(axis))
    return op


def _take_along_axis(c: Dict[str, Any]) -> Callable:
    axis = c.get("axis")

    def op(x, indices):
        x, indices = _t(x), _t(indices).long()
        n = x.shape[axis] if axis is not None else x.shape[0]
        indices = torch.where(indices < 0, indices + n, indices)
        if axis is None or indices.dim() != x.dim():
            return torch.take_along_dim(x, indices, dim=axis)
        # gather on the broadcast shapes (take_along_dim fixed the batch under torch.export)
        ax = int(axis) % x.dim()
        rest = torch.broadcast_shapes(x.shape[:ax] + (1,) + x.shape[ax + 1:],
                                      indices.shape[:ax] + (1,) + indices.shape[ax + 1:])
        x = x.expand(rest[:ax] + (x.shape[ax],) + rest[ax + 1:])
        indices = indices.expand(rest[:ax] + (indices.shape[ax],) + rest[ax + 1:])
        return torch.gather(x, ax, indices)
    return op


_OPS.update({
    "Cumsum": _cumulative(torch.cumsum), "Cumprod": _cumulative(torch.cumprod),
    "Flip": _flip, "Roll": _roll,
    "Diff": lambda c: lambda x: torch.diff(_t(x), n=int(c.get("n", 1)),
                                           dim=int(c.get("axis", -1))),
    "Normalize": _normalize, "TopK": _top_k,
    "Argmax": _arg(torch.argmax), "Argmin": _arg(torch.argmin),
    "Sort": _sort(False), "Argsort": _sort(True),
    "Amax": _numeric_reduce(_max), "Amin": _numeric_reduce(_min),
    "OneHot": _one_hot, "Repeat": _repeat,
    "Moveaxis": lambda c: lambda x: torch.movedim(_t(x), c["source"], c["destination"]),
    "Einsum": lambda c: lambda *xs: torch.einsum(c["subscripts"], *[_t(x) for x in xs]),
    "Triu": lambda c: lambda x: torch.triu(_t(x), diagonal=int(c.get("k", 0))),
    "Tril": lambda c: lambda x: torch.tril(_t(x), diagonal=int(c.get("k", 0))),
    "TakeAlongAxis": _take_along_axis,
    "Sin": _unary(torch.sin, True), "Cos": _unary(torch.cos, True),
    "Expm1": _unary(torch.expm1, True), "Log2": _unary(torch.log2, True),
    "Log10": _unary(torch.log10, True),
    "Glu": lambda c: lambda x: F.glu(_float(_t(x)), dim=int(c.get("axis", -1))),
    "LogSigmoid": _unary(F.logsigmoid, True),
    "HardTanh": lambda c: lambda x: F.hardtanh(_float(_t(x)), -1.0, 1.0),
})


# -- more of what sequence models use (broadcasts, gathers, products, frames), as Keras
# 3.15's torch backend computes them ------------------------------------------------------

def _broadcast_to(c: Dict[str, Any]) -> Callable:
    """``BroadcastTo``: NumPy's broadcast to ``shape``.  A ``None`` in the saved shape
    (``ops.broadcast_to(t, ops.shape(x))`` in a functional model stores the unknown batch
    as ``None``; Keras 3.15 itself then fails at run time) takes the input's size on that
    axis (axes aligned from the right); on an axis the input lacks it is refused."""
    shape = list(c.get("shape") or [])

    def op(x):
        x = _t(x)
        lead = len(shape) - x.dim()
        want = []
        for i, n in enumerate(shape):
            if n is None:
                if i < lead:
                    raise ValueError(f"broadcast_to: shape {shape} has None on axis {i}, "
                                     f"which the input of shape {tuple(x.shape)} lacks")
                n = x.shape[i - lead]
            want.append(int(n))
        return torch.broadcast_to(x, want)
    return op


def _take(c: Dict[str, Any]) -> Callable:
    """``Take``: ``x`` gathered at ``indices`` along ``axis`` (``None``: the flattened
    ``x``); negative indices count from the end; the indices' shape replaces the axis."""
    axis = c.get("axis")

    def op(x, indices):
        x, indices = _t(x), _t(indices).long()
        if axis is None:
            x, ax = x.reshape(-1), 0
        else:
            ax = int(axis) % x.dim()
        n = x.shape[ax]
        indices = torch.where(indices < 0, indices + n, indices)
        out = torch.index_select(x, ax, indices.reshape(-1))
        return out.reshape(x.shape[:ax] + indices.shape + x.shape[ax + 1:])
    return op


def _products(fn: Callable) -> Callable:
    """``Dot`` / ``Tensordot``: computed in floating point, the result in the operands'
    result dtype (Keras' ``result_type``)."""
    def op(a, b, **kw):
        a, b = _t(a), _t(b)
        dtype = torch.result_type(a, b)
        work = dtype if dtype.is_floating_point else torch.float32
        work = torch.float32 if work == torch.float16 and a.device.type == "cpu" else work
        return fn(a.to(work), b.to(work), **kw).to(dtype)
    return op


def _dot(a, b):
    return a * b if a.dim() == 0 or b.dim() == 0 else torch.matmul(a, b)


def _tensordot(c: Dict[str, Any]) -> Callable:
    axes = c.get("axes", 2)
    if isinstance(axes, (list, tuple)):
        axes = tuple(tuple(a) if isinstance(a, (list, tuple)) else (a,) for a in axes)
    return lambda a, b: _products(lambda x, y: torch.tensordot(x, y, dims=axes))(a, b)


def _full_like(c: Dict[str, Any]) -> Callable:
    """``FullLike``: ``x``'s shape filled with ``fill_value`` (a number, or an array
    broadcast over the leading axes) in ``dtype`` (else ``x``'s)."""
    dtype = c.get("dtype")

    def op(x, fill_value):
        x = _t(x)
        out = torch_dtype(dtype) if dtype else x.dtype
        value = torch.as_tensor(fill_value, dtype=out, device=x.device)
        return torch.broadcast_to(value, x.shape).clone()
    return op


def _slice(c: Dict[str, Any]) -> Callable:
    """``Slice`` (``ops.slice(x, start_indices, shape)``): ``shape`` items from each
    start."""
    shape = c.get("shape")

    def op(x, start_indices):
        x = _t(x)
        starts = start_indices.tolist() if isinstance(start_indices, torch.Tensor) \
            else list(start_indices)
        return x[tuple(slice(int(a), int(a) + int(n)) for a, n in zip(starts, shape))]
    return op


def _divide_no_nan(a, b):
    """``a / b``, and 0 where ``b == 0`` (computed in floating point)."""
    a, b = _t(a), _t(b)
    dtype = torch.result_type(a, b)
    dtype = dtype if dtype.is_floating_point else torch.float32
    a, b = a.to(dtype), b.to(dtype)
    return torch.where(b == 0, torch.zeros((), dtype=dtype),
                       a / torch.where(b == 0, torch.ones_like(b), b))


def _logaddexp(a, b):
    a, b = _float(_t(a)), _float(_t(b))
    dtype = torch.result_type(a, b)
    return torch.logaddexp(a.to(dtype), b.to(dtype))


def _average(c: Dict[str, Any]) -> Callable:
    """``Average`` over ``axis`` (``weights``: along the last axis, as Keras 3.15's torch
    backend divides by their sum)."""
    axis = c.get("axis")

    def op(x, *, weights=None):
        x = _float(_t(x))
        if axis == () or axis == []:
            return x
        dims = tuple(range(x.dim())) if axis is None else _dims(axis)
        if weights is None:
            return torch.mean(x, dim=dims)
        w = _t(weights).to(x.dtype)
        return torch.sum(x * w, dim=dims) / torch.sum(w, dim=-1)
    return op


def _extract_sequences(c: Dict[str, Any]) -> Callable:
    """``ExtractSequences``: frames of ``sequence_length`` every ``sequence_stride`` along
    the last axis (a new axis of frames before it)."""
    length, stride = int(c["sequence_length"]), int(c["sequence_stride"])
    return lambda x: _t(x).unfold(-1, length, stride).contiguous()


_OPS.update({
    "BroadcastTo": _broadcast_to, "Take": _take,
    "StopGradient": lambda c: lambda x: _t(x).detach(),
    "Copy": lambda c: lambda x: torch.clone(_t(x)),
    "Dot": lambda c: _products(_dot), "Tensordot": _tensordot,
    "Unstack": lambda c: lambda x: list(_t(x).unbind(int(c.get("axis", 0)))),
    "FullLike": _full_like, "Slice": _slice,
    "LogicalXor": lambda c: lambda a, b: torch.logical_xor(_t(a), _t(b)),
    "Tan": _unary(torch.tan, True), "DivideNoNan": lambda c: _divide_no_nan,
    "NanToNum": lambda c: lambda x: torch.nan_to_num(
        _t(x), nan=c.get("nan", 0.0), posinf=c.get("posinf"), neginf=c.get("neginf")),
    "Logaddexp": lambda c: _logaddexp, "Average": _average,
    "ExtractSequences": _extract_sequences,
})

#: The Keras 3 module of each operation outside ``keras.src.ops.numpy`` (Keras 3 finds an
#: operation of a ``.keras`` file by its module; its legacy ``.h5`` writer drops it).
_MODULES = {"Cast": "core", "ConvertToTensor": "core", "Erf": "math", "Logsumexp": "math",
            "Rsqrt": "math", "Elu": "nn", "Gelu": "nn", "HardSigmoid": "nn", "HardSilu": "nn",
            "LeakyRelu": "nn", "LogSoftmax": "nn", "Relu": "nn", "Relu6": "nn", "Selu": "nn",
            "Sigmoid": "nn", "Silu": "nn", "Softmax": "nn", "Softplus": "nn", "Softsign": "nn"}
_MODULES.update({"Normalize": "nn", "OneHot": "nn", "Glu": "nn", "LogSigmoid": "nn",
                 "HardTanh": "nn", "TopK": "math"})
_MODULES.update({"StopGradient": "core", "Unstack": "core", "Slice": "core",
                 "ExtractSequences": "math"})


class KerasOp(torch.nn.Module):
    """One Keras 3 operation node (``class_name`` and its config), run on tensors;
    :meth:`keras3_entry` is its entry as Keras 3 writes it (``save_keras_model``)."""

    #: A Keras mask passes on only where the operation returns its input tensor itself
    #: (``ops.cast`` to the same dtype, ``ops.convert_to_tensor``), as in Keras 3
    #: (:func:`sepconv.layers.masking.call_with_mask`).
    keeps_mask_of_returned_input = True

    def __init__(self, class_name: str, config: Dict[str, Any]):
        super().__init__()
        self.class_name = class_name
        self.name = config.get("name", class_name)
        self.config = dict(config)

    def keras3_entry(self) -> Dict[str, Any]:
        module = f"keras.src.ops.{_MODULES.get(self.class_name, 'numpy')}"
        return {"module": module, "class_name": self.class_name, "config": dict(self.config),
                "registered_name": self.class_name}

    def check_call(self, args: List[Any], kwargs: Dict[str, Any]) -> None:
        """``ValueError`` unless a node's arguments (tensors as any placeholder) fit the
        operation's call."""
        try:
            inspect.signature(_OPS[self.class_name](self.config)).bind(*args, **kwargs)
        except TypeError as err:
            raise ValueError(f"the Keras operation {self.class_name} is called with "
                             f"arguments sepconv does not know ({err})") from None
        except (KeyError, ValueError) as err:
            raise ValueError(f"the Keras operation {self.class_name} has a config sepconv "
                             f"cannot read ({type(err).__name__}: {err})") from None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return _OPS[self.class_name](self.config)(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"{self.class_name}, name={self.name!r}"


def build_op(entry: dict) -> Optional[KerasOp]:
    """The module for an operation entry, or ``None`` when sepconv does not run it."""
    cls = entry.get("class_name")
    if cls not in _OPS:
        return None
    return KerasOp(cls, entry.get("config") or {})


#: The arguments of a ``keras.ops`` function after its tensors, in Keras 3.15's order:
#: the node's config (a ``Lambda``'s bytecode calls the functions, see
#: :mod:`sepconv.interop.lambdas`).
STATIC_ARGS: Dict[str, tuple] = {
    **{cls: ("axis", "keepdims") for cls in ("Mean", "Sum", "Std", "Var", "Logsumexp",
                                             "Any", "All")},
    "Max": ("axis", "keepdims", "initial"), "Min": ("axis", "keepdims", "initial"),
    "Prod": ("axis", "keepdims", "dtype"), "ExpandDims": ("axis",), "Squeeze": ("axis",),
    "Concatenate": ("axis",), "Stack": ("axis",), "Reshape": ("newshape",),
    "Transpose": ("axes",), "Split": ("indices_or_sections", "axis"), "Tile": ("repeats",),
    "Clip": ("x_min", "x_max"), "Round": ("decimals",), "Swapaxes": ("axis1", "axis2"),
    "Cast": ("dtype",), "Softmax": ("axis",), "LogSoftmax": ("axis",),
    "Gelu": ("approximate",), "Elu": ("alpha",), "LeakyRelu": ("negative_slope",),
    "ZerosLike": ("dtype",), "OnesLike": ("dtype",), "ConvertToTensor": ("dtype",),
    "Pad": ("pad_width", "mode"),
}
STATIC_ARGS.update({
    "Cumsum": ("axis", "dtype"), "Cumprod": ("axis", "dtype"), "Flip": ("axis",),
    "Roll": ("shift", "axis"), "Diff": ("n", "axis"), "Normalize": ("axis", "order", "epsilon"),
    "TopK": ("k", "sorted"), "Argmax": ("axis", "keepdims"), "Argmin": ("axis", "keepdims"),
    "Sort": ("axis",), "Argsort": ("axis",), "Amax": ("axis", "keepdims"),
    "Amin": ("axis", "keepdims"), "OneHot": ("num_classes", "axis", "dtype", "sparse"),
    "Repeat": ("repeats", "axis"),
    "Moveaxis": ("source", "destination"), "Triu": ("k",),
    "Tril": ("k",), "TakeAlongAxis": ("axis",), "Glu": ("axis",),
})
STATIC_ARGS.update({
    "BroadcastTo": ("shape",), "Take": ("axis",), "Tensordot": ("axes",),
    "Unstack": ("num", "axis"), "FullLike": ("dtype",), "Slice": ("shape",),
    "NanToNum": ("nan", "posinf", "neginf"), "Average": ("axis",),
    "ExtractSequences": ("sequence_length", "sequence_stride"),
})
