"""The TensorFlow functions a tf-keras file's functional graph calls between its layers.

tf-keras wraps each TensorFlow function called on Keras tensors (``x + y``, ``-x``,
``tf.concat([a, b], -1)``, ``tf.reduce_mean(x, axis=1)``, ``x[:, -1]``) in a layer of class
``TFOpLambda`` (``SlicingOpLambda`` for ``x[...]``) whose config names the function by its
canonical TensorFlow name (``"__operators__.add"``, ``"math.multiply"``, ``"nn.relu"``,
``"concat"``, ``"__operators__.getitem"``).  Its node saves the call's first argument as
the input (a tensor, a list of them for ``tf.concat``, or a constant: ``2.0 - x`` calls
``tf.math.subtract(2.0, x)``) and every other argument by its name among the call's
keywords, tensors included (``{"y": <tensor>, "name": None}``).

:class:`TFOp` runs one such node with torch, with TensorFlow's semantics: a Python number
or list takes the dtype of the tensor it meets (TensorFlow never promotes), integer
``truediv`` gives float32 (8/16-bit) or float64 (32/64-bit), ``floordiv`` on floats is
``floor(x / y)``, reductions keep integer dtypes, ``axis=None`` means every axis and
``axis=[]`` none, ``softmax`` runs over the last axis by default, ``gelu`` is exact unless
``approximate=True``, slicing follows NumPy (negative indices and steps, ``...``,
``tf.newaxis``).  :data:`FUNCTIONS` is the table, keyed by the name in the file; each
entry is a function with TensorFlow's signature, so a node's keywords are checked at load
(:meth:`TFOp.check_call`).
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from .. import activations as _activations
from .keras_ops import _index_item
from .keras_ops import _max as _amax
from .keras_ops import _min as _amin
from .keras_ops import _prod
from .keras_ops import getitem as _numpy_getitem
from .keras_ops import pad as _keras_pad
from .keras_ops import squeeze as _numpy_squeeze
from .keras_ops import torch_dtype as _torch_dtype

#: tf-keras' layer classes for TensorFlow functions.
CLASSES = ("TFOpLambda", "SlicingOpLambda")

Value = Union[torch.Tensor, float, int, bool, list]


def is_tf_op(entry: dict) -> bool:
    """Whether a functional config entry is a tf-keras TensorFlow-function node."""
    return entry.get("class_name") in CLASSES


# -- TensorFlow's conversions ----------------------------------------------------------
def _operands(x: Value, y: Value):
    """``(x, y)`` as tensors; a constant takes the other operand's dtype, as TensorFlow's
    ``convert_to_tensor`` gives it (the file could not hold a mismatch: TensorFlow refuses
    one when the model is built)."""
    if isinstance(x, torch.Tensor) and not isinstance(y, torch.Tensor):
        y = torch.as_tensor(y, dtype=x.dtype, device=x.device)
    elif isinstance(y, torch.Tensor) and not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x, dtype=y.dtype, device=y.device)
    return x, y


def _tensor(x: Value) -> torch.Tensor:
    """A constant as TensorFlow converts it: Python floats to float32, ints to int32."""
    if isinstance(x, torch.Tensor):
        return x
    t = torch.as_tensor(x)
    if t.dtype == torch.float64:
        return t.to(torch.float32)
    return t.to(torch.int32) if t.dtype == torch.int64 else t


def _dims(x: torch.Tensor, axis: Any) -> Optional[tuple]:
    """TensorFlow's reduction ``axis`` as a sorted tuple of dims (``None``: every axis)."""
    if axis is None:
        return None
    axes = axis.tolist() if isinstance(axis, torch.Tensor) else axis
    axes = list(axes) if isinstance(axes, (list, tuple)) else [axes]
    return tuple(sorted({int(a) % x.dim() for a in axes})) if x.dim() else ()


def _binary(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable:
    def op(x, y, name=None):
        return fn(*_operands(x, y))
    op.__doc__ = f"TensorFlow's elementwise ``{fn.__name__}`` (constants take the " \
        f"tensor's dtype; shapes broadcast)."
    return op


def _unary(fn: Callable[[torch.Tensor], torch.Tensor], arg: str = "x") -> Callable:
    if arg == "features":
        def op(features, name=None):
            return fn(_tensor(features))
    else:
        def op(x, name=None):
            return fn(_tensor(x))
    return op


def _truediv(x, y, name=None):
    """``x / y``; integers are divided as float32 (8/16-bit) or float64 (32/64-bit)."""
    x, y = _operands(x, y)
    if not x.is_floating_point():
        small = x.dtype in (torch.int8, torch.int16, torch.uint8, torch.uint16)
        dtype = torch.float32 if small else torch.float64
        x, y = x.to(dtype), y.to(dtype)
    return x / y


def _floordiv(x, y, name=None):
    """``floor(x / y)`` for floats (TensorFlow's ``FloorDiv``), floor rounding for ints."""
    x, y = _operands(x, y)
    if x.is_floating_point():
        return torch.floor(x / y)
    return torch.div(x, y, rounding_mode="floor")


def _reduce(fn: Callable, keep_int: bool = False, integer_mean: bool = False) -> Callable:
    def op(input_tensor, axis=None, keepdims=False, name=None):
        x = _tensor(input_tensor)
        dims = _dims(x, axis)
        if dims == ():  # axis=[]: reduce over no axis (a new tensor, as TensorFlow's)
            return x.view_as(x)
        if dims is None:
            dims = tuple(range(x.dim()))
        if integer_mean and not x.is_floating_point():
            n = math.prod(x.shape[d] for d in dims)
            total = torch.sum(x, dim=dims, keepdim=bool(keepdims))
            return torch.div(total, n, rounding_mode="trunc").to(x.dtype)
        out = fn(x, dims, bool(keepdims))
        return out.to(x.dtype) if keep_int and not x.is_floating_point() else out
    return op


def _variance(x, dim, keepdim):
    return torch.var(x, dim=dim, keepdim=keepdim, correction=0)


def _std(x, dim, keepdim):
    return torch.std(x, dim=dim, keepdim=keepdim, correction=0)


def _any(x, dim, keepdim):
    return torch.any(x, dim=dim, keepdim=keepdim)


def _all(x, dim, keepdim):
    return torch.all(x, dim=dim, keepdim=keepdim)


# -- the functions, with TensorFlow's signatures ---------------------------------------
def _pow(x, y, name=None):
    return torch.pow(*_operands(x, y))


def _softmax(logits, axis=None, name=None):
    """``softmax`` over ``axis`` (``None``: the last)."""
    return torch.softmax(_tensor(logits), dim=-1 if axis is None else int(axis))


def _log_softmax(logits, axis=None, name=None):
    return torch.log_softmax(_tensor(logits), dim=-1 if axis is None else int(axis))


def _gelu(features, approximate=False, name=None):
    """Exact ``x * Phi(x)`` by default; the tanh formula with ``approximate=True``."""
    return F.gelu(_tensor(features), approximate="tanh" if approximate else "none")


def _silu(features, beta=1.0):
    x = _tensor(features)
    return x * torch.sigmoid(beta * x)


def _leaky_relu(features, alpha=0.2, name=None):
    """``x`` where ``x > 0``, else ``alpha * x`` (integers computed as float32)."""
    x = _tensor(features)
    x = x if x.is_floating_point() else x.to(torch.float32)
    return torch.where(x > 0, x, x * alpha)


def _l2_normalize(x, axis=None, epsilon=1e-12, name=None, dim=None):
    """``x / sqrt(max(sum(x ** 2, axis), epsilon))``."""
    x = _tensor(x)
    dims = _dims(x, dim if axis is None else axis)
    dims = tuple(range(x.dim())) if dims is None else dims
    square_sum = torch.sum(x * x, dim=dims, keepdim=True)
    return x * torch.rsqrt(torch.clamp(square_sum, min=epsilon))


def _concat(values, axis, name="concat"):
    """``values`` (a list of tensors) joined along ``axis``."""
    return torch.cat([_tensor(v) for v in values], dim=int(axis))


def _stack(values, axis=0, name="stack"):
    return torch.stack([_tensor(v) for v in values], dim=int(axis))


def _unstack(value, num=None, axis=0, name="unstack"):
    return list(torch.unbind(_tensor(value), dim=int(axis)))


def _split(value, num_or_size_splits, axis=0, num=None, name="split"):
    """``num_or_size_splits`` equal parts (an int) or parts of these sizes (one may be
    -1: the rest)."""
    x = _tensor(value)
    axis = int(axis)
    if isinstance(num_or_size_splits, (list, tuple)):
        sizes = [int(s) for s in num_or_size_splits]
        if -1 in sizes:
            sizes[sizes.index(-1)] = x.shape[axis] - (sum(sizes) + 1)
        return list(torch.split(x, sizes, dim=axis))
    n = int(num_or_size_splits)
    if x.shape[axis] % n:
        raise ValueError(f"tf.split: dimension {axis} of size {x.shape[axis]} does not "
                         f"split into {n} equal parts")
    return list(torch.chunk(x, n, dim=axis))


#: the Python sizes a ``tf.shape`` result (or an index of one) holds, kept on the tensor:
#: under torch.export they are the symbolic sizes themselves, where reading the tensor's
#: values back (``.tolist()``) would be data-dependent
_SIZES = "_sepconv_sizes"


def _size(v: Any) -> Any:
    sizes = getattr(v, _SIZES, None)
    if sizes is not None and not isinstance(sizes, list):
        return sizes
    return int(v)


def _shape_list(shape: Any) -> List[int]:
    if isinstance(shape, torch.Tensor):
        sizes = getattr(shape, _SIZES, None)
        if sizes is not None:
            return list(sizes) if isinstance(sizes, list) else [sizes]
        return [int(v) for v in shape.reshape(-1).tolist()]
    if isinstance(shape, (list, tuple)):
        return [_size(v) for v in shape]
    return [_size(shape)]


def _reshape(tensor, shape, name=None):
    """``tensor`` with ``shape`` (one entry may be -1)."""
    return _tensor(tensor).reshape(_shape_list(shape))


def _transpose(a, perm=None, conjugate=False, name="transpose"):
    """Axes permuted by ``perm`` (``None``: reversed)."""
    x = _tensor(a)
    perm = list(range(x.dim()))[::-1] if perm is None else _shape_list(perm)
    return x.permute(perm)


def _transpose_v1(a, perm=None, name="transpose", conjugate=False):
    return _transpose(a, perm)


def _expand_dims(input, axis, name=None):  # noqa: A002 - TensorFlow's argument name
    """A new axis of size 1 at ``axis`` (in ``[-rank - 1, rank]``)."""
    return _tensor(input).unsqueeze(int(axis))


def _squeeze(input, axis=None, name=None):  # noqa: A002
    """The axes of size 1 removed (``axis``: only those, each of which must be 1)."""
    x = _tensor(input)
    return _numpy_squeeze(x, _dims(x, axis), "tf.squeeze")


def _squeeze_v1(input, axis=None, name=None, squeeze_dims=None):  # noqa: A002
    return _squeeze(input, squeeze_dims if axis is None else axis)


def _broadcast_to(input, shape, name=None):  # noqa: A002
    """``tf.broadcast_to``: NumPy's broadcast of ``input`` to ``shape`` (a list, or a
    tensor such as ``tf.shape(x)``)."""
    return torch.broadcast_to(_tensor(input), _shape_list(shape))


def _tile(input, multiples, name=None):  # noqa: A002
    return _tensor(input).repeat(_shape_list(multiples))


def _matmul(a, b, transpose_a=False, transpose_b=False, adjoint_a=False, adjoint_b=False,
            a_is_sparse=False, b_is_sparse=False, output_type=None, grad_a=False,
            grad_b=False, name=None):
    """``a @ b`` over the last two axes (batch axes broadcast); ``transpose_*`` /
    ``adjoint_*`` (the same for real numbers) swap an operand's last two axes."""
    a, b = _operands(a, b)
    if transpose_a or adjoint_a:
        a = a.transpose(-1, -2)
    if transpose_b or adjoint_b:
        b = b.transpose(-1, -2)
    out = torch.matmul(a, b)
    return out if output_type is None else out.to(_torch_dtype(output_type))


def _cast(x, dtype, name=None):
    """``x`` as ``dtype`` (floats to integers truncate towards zero)."""
    return _tensor(x).to(_torch_dtype(dtype))


def _pad(tensor, paddings, mode="CONSTANT", constant_values=0, name=None):
    """``tf.pad``: ``paddings`` a ``[before, after]`` pair per axis; ``mode``
    ``"CONSTANT"``, ``"REFLECT"`` (at most ``size - 1`` per side) or ``"SYMMETRIC"`` (at
    most ``size``), in any case; a constant takes the tensor's dtype."""
    modes = {"CONSTANT": "constant", "REFLECT": "reflect", "SYMMETRIC": "symmetric"}
    if str(mode).upper() not in modes:
        raise ValueError(f"tf.pad: mode {mode!r} is not CONSTANT, REFLECT or SYMMETRIC")
    x = _tensor(tensor)
    if isinstance(paddings, torch.Tensor):
        paddings = paddings.tolist()
    pairs = [[_size(v) for v in p] for p in paddings]
    if len(pairs) != x.dim() or any(len(p) != 2 for p in pairs):
        raise ValueError(f"tf.pad: paddings {pairs} for a tensor of rank {x.dim()} (one "
                         f"[before, after] pair per axis)")
    return _keras_pad(x, pairs,
                      modes[str(mode).upper()], constant_values, "tf.pad")


def _pad_v1(tensor, paddings, mode="CONSTANT", name=None, constant_values=0):
    return _pad(tensor, paddings, mode, constant_values)


def _clip_by_value(t, clip_value_min, clip_value_max, name=None):
    x = _tensor(t)
    lo, hi = (torch.as_tensor(v, dtype=x.dtype, device=x.device)
              for v in (clip_value_min, clip_value_max))
    return torch.minimum(torch.maximum(x, lo), hi)


def _where(condition, x=None, y=None, name=None):
    if x is None or y is None:
        raise ValueError("tf.where with only a condition (the indices of true values) "
                         "has a data-dependent shape; sepconv runs tf.where(c, x, y) only")
    x, y = _operands(x, y)
    return torch.where(_tensor(condition).to(torch.bool), x, y)


def _like(value: int) -> Callable:
    def op(input, dtype=None, name=None, layout=None):  # noqa: A002
        x = _tensor(input)
        return torch.full_like(x, value, dtype=x.dtype if dtype is None
                               else _torch_dtype(dtype))
    return op


def _shape(input, out_type=None, name=None):  # noqa: A002
    """The shape as a 1-D int32 tensor (``out_type``: another integer dtype)."""
    x = _tensor(input)
    dtype = torch.int32 if out_type is None else _torch_dtype(out_type)
    out = torch.tensor(list(x.shape), dtype=dtype, device=x.device)
    setattr(out, _SIZES, list(x.shape))
    return out


def _shape_v1(input, name=None, out_type=None):  # noqa: A002
    return _shape(input, out_type)


def _identity(input, name=None):  # noqa: A002
    """A new tensor with the same values (as TensorFlow's: a Keras mask the input carries
    stays behind, unlike :func:`_convert_to_tensor`'s)."""
    x = _tensor(input)
    return x.view_as(x)


def _convert_to_tensor(value, dtype=None, dtype_hint=None, name=None):
    """``value`` itself when it is a tensor (so a Keras mask it carries passes on, as in
    TensorFlow); a constant as TensorFlow converts it (``dtype``, else ``dtype_hint``).
    A tensor of another ``dtype`` is refused, as TensorFlow refuses it."""
    if isinstance(value, torch.Tensor):
        if dtype is not None and _torch_dtype(dtype) != value.dtype:
            raise ValueError(f"tf.convert_to_tensor: a {value.dtype} tensor is not "
                             f"converted to dtype={dtype!r} (TensorFlow refuses it too)")
        return value
    want = dtype if dtype is not None else dtype_hint
    return _tensor(value) if want is None else torch.as_tensor(value,
                                                                dtype=_torch_dtype(want))


def _getitem_op(tensor, slice_spec, var=None):
    """``tensor[slice_spec]`` with NumPy's rules (see :func:`keras_ops.getitem`)."""
    out = _numpy_getitem(_tensor(tensor), slice_spec)
    sizes = getattr(tensor, _SIZES, None)
    if sizes is not None and out.dim() <= 1:  # tf.shape(x)[i], tf.shape(x)[i:j]
        spec = slice_spec if isinstance(slice_spec, (list, tuple)) else [slice_spec]
        try:  # the same index on the Python list (one integer or one slice)
            item = _index_item(spec[0]) if len(spec) == 1 else None
        except ValueError:
            item = None
        if isinstance(item, (int, slice)):
            setattr(out, _SIZES, sizes[item] if isinstance(item, int) else
                    list(sizes[item]))
    return out


def _cumsum(x, axis=0, exclusive=False, reverse=False, name=None):
    x = _tensor(x)
    axis = int(axis)
    if reverse:
        x = x.flip(axis)
    out = torch.cumsum(x, dim=axis).to(x.dtype)
    if exclusive:
        out = out - x
    return out.flip(axis) if reverse else out


def _relu6(features, name=None):
    return torch.clamp(_tensor(features), 0, 6)


def _logical(fn: Callable) -> Callable:
    def op(x, y, name=None):
        return fn(_tensor(x).to(torch.bool), _tensor(y).to(torch.bool))
    return op


def _compare(fn: Callable) -> Callable:
    def op(x, y, name=None):
        return fn(*_operands(x, y))
    return op


_ADD, _SUB, _MUL = _binary(torch.add), _binary(torch.sub), _binary(torch.mul)
_MAXIMUM, _MINIMUM = _binary(torch.maximum), _binary(torch.minimum)
_FLOORMOD = _binary(torch.remainder)
_SIGMOID, _TANH = _unary(torch.sigmoid), _unary(torch.tanh)
_SOFTPLUS = _unary(F.softplus, "features")

#: TensorFlow function (its name in a tf-keras file) -> the same function on torch tensors.
#: The names are those tf-keras 2.21 writes: some TensorFlow 2 functions dispatch through
#: another (``tf.transpose``, ``tf.squeeze`` and ``tf.shape`` are written as their
#: ``compat.v1`` versions, ``tf.divide`` as ``math.truediv``, ``x // y`` and
#: ``tf.math.floordiv`` as ``compat.v1.floor_div``).
FUNCTIONS: Dict[str, Callable] = {
    # arithmetic: the operators on Keras tensors, and their tf.math names
    "__operators__.add": _ADD, "math.add": _ADD,
    "math.subtract": _SUB, "math.multiply": _MUL,
    "math.truediv": _truediv, "compat.v1.floor_div": _floordiv, "math.floormod": _FLOORMOD,
    "math.pow": _pow, "math.negative": _unary(torch.neg), "math.abs": _unary(torch.abs),
    "math.square": _unary(lambda x: x * x), "math.sqrt": _unary(torch.sqrt),
    "math.rsqrt": _unary(torch.rsqrt), "math.exp": _unary(torch.exp),
    "math.log": _unary(torch.log), "math.log1p": _unary(torch.log1p),
    "math.reciprocal": _unary(torch.reciprocal), "math.sign": _unary(torch.sign),
    "math.floor": _unary(torch.floor), "math.ceil": _unary(torch.ceil),
    "math.round": _unary(torch.round), "math.erf": _unary(torch.erf),
    "math.maximum": _MAXIMUM, "math.minimum": _MINIMUM,
    "clip_by_value": _clip_by_value, "math.cumsum": _cumsum,
    # activations
    "math.sigmoid": _SIGMOID, "math.tanh": _TANH, "nn.relu": _unary(torch.relu, "features"),
    "nn.relu6": _relu6, "nn.elu": _unary(F.elu, "features"),
    "nn.selu": _unary(_activations.selu, "features"), "nn.leaky_relu": _leaky_relu,
    "nn.gelu": _gelu, "nn.silu": _silu, "math.softplus": _SOFTPLUS,
    "nn.softsign": _unary(F.softsign, "features"),
    "nn.softmax": _softmax, "nn.log_softmax": _log_softmax,
    "math.l2_normalize": _l2_normalize,
    # reductions
    "math.reduce_mean": _reduce(torch.mean, integer_mean=True),
    "math.reduce_sum": _reduce(torch.sum, keep_int=True),
    "math.reduce_max": _reduce(_amax), "math.reduce_min": _reduce(_amin),
    "math.reduce_prod": _reduce(_prod, keep_int=True),
    "math.reduce_variance": _reduce(_variance), "math.reduce_std": _reduce(_std),
    "math.reduce_logsumexp": _reduce(torch.logsumexp),
    "math.reduce_any": _reduce(_any), "math.reduce_all": _reduce(_all),
    # shapes and structure
    "concat": _concat, "stack": _stack, "unstack": _unstack, "split": _split,
    "reshape": _reshape, "compat.v1.transpose": _transpose_v1, "expand_dims": _expand_dims,
    "compat.v1.squeeze": _squeeze_v1, "tile": _tile, "compat.v1.shape": _shape_v1,
    "identity": _identity, "convert_to_tensor": _convert_to_tensor,
    "broadcast_to": _broadcast_to,
    "stop_gradient": lambda input, name=None: _tensor(input).detach(),  # noqa: A002
    "zeros_like": _like(0), "ones_like": _like(1),
    "compat.v1.pad": _pad_v1,  # tf.pad's node (a Lambda's tf.pad: lambdas._TF_V2)
    "__operators__.getitem": _getitem_op,
    # linear algebra, dtypes, selection
    "linalg.matmul": _matmul, "cast": _cast, "where": _where,
    # comparisons and logic
    "math.equal": _compare(torch.eq), "math.not_equal": _compare(torch.ne),
    "math.greater": _compare(torch.gt), "math.greater_equal": _compare(torch.ge),
    "math.less": _compare(torch.lt), "math.less_equal": _compare(torch.le),
    "math.logical_and": _logical(torch.logical_and),
    "math.logical_or": _logical(torch.logical_or),
    "math.logical_not": lambda x, name=None: torch.logical_not(_tensor(x).to(torch.bool)),
}


class TFOp(torch.nn.Module):
    """One tf-keras ``TFOpLambda`` / ``SlicingOpLambda`` node: the TensorFlow function
    ``function`` (its name in the file, e.g. ``"math.multiply"``) run with torch.

    ``forward(first, **keywords)`` takes the call's first argument (a tensor, a list of
    tensors, or a constant) and its other arguments by TensorFlow's names, as the node
    saved them.  No weights; not a Keras layer.  :meth:`get_config` is the node's config
    as tf-keras writes it (``save_keras_model`` writes it back to ``.h5``)."""

    #: A Keras mask passes on only where the function returns its input tensor itself
    #: (``tf.cast`` to the same dtype, ``tf.convert_to_tensor``), as in tf-keras
    #: (:func:`sepconv.layers.masking.call_with_mask`).
    keeps_mask_of_returned_input = True

    def __init__(self, function: str, name: str, dtype: str = "float32"):
        super().__init__()
        if function not in FUNCTIONS:
            raise ValueError(f"unsupported TensorFlow function {function!r}")
        self.function = function
        self.name = name
        self.dtype = dtype

    @property
    def class_name(self) -> str:
        """tf-keras' wrapper class: ``SlicingOpLambda`` for indexing, else ``TFOpLambda``."""
        return CLASSES[1] if self.function == "__operators__.getitem" else CLASSES[0]

    def get_config(self) -> Dict[str, Any]:
        return {"name": self.name, "trainable": True, "dtype": self.dtype,
                "function": self.function}

    @property
    def _fn(self) -> Callable:
        # looked up on each call, not kept: the table's closures do not pickle
        # (torch.save of a whole loaded model)
        return FUNCTIONS[self.function]

    def check_call(self, args: Sequence[Any], kwargs: Dict[str, Any]) -> None:
        """``ValueError`` unless ``args`` and ``kwargs`` (tensors as any placeholder) fit
        the function's TensorFlow signature."""
        try:
            inspect.signature(self._fn).bind(*args, **kwargs)
        except TypeError as err:
            raise ValueError(f"tf.{self.function} called with arguments sepconv does "
                             f"not know ({err})") from None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"tf.{self.function}, name={self.name!r}"


def build_tf_op(entry: dict) -> Optional[TFOp]:
    """The module for a ``TFOpLambda`` / ``SlicingOpLambda`` entry, or ``None`` when
    sepconv does not run its function."""
    config = entry.get("config") or {}
    function = config.get("function")
    if not isinstance(function, str) or function not in FUNCTIONS:
        return None
    dtype = config.get("dtype")
    return TFOp(function, str(config.get("name") or entry.get("name") or function),
                dtype if isinstance(dtype, str) else "float32")


def function_of(entry: dict) -> str:
    """The TensorFlow function an entry names (for messages)."""
    return str((entry.get("config") or {}).get("function"))
