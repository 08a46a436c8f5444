"""The Keras 3 operations a ``.keras`` file's functional graph holds to compute masks.

Keras 3 writes the mask of ``Embedding(mask_zero=True)`` / ``Masking`` and of the merges as
graph nodes of ``keras.ops`` (``NotEqual``, ``Any``, ``LogicalOr``, ``ExpandDims``,
``ZerosLike``, ``Concatenate``, ...) and hands the result to the layers that use it as an
explicit ``mask=`` argument.  These small modules run those nodes; they are not Keras
layers (no weights, not in ``KERAS_CLASSES``).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import torch


def is_op(entry: dict) -> bool:
    """Whether a functional config entry is a Keras 3 operation (not a layer)."""
    return str(entry.get("module") or "").startswith("keras.src.ops")


def _t(x: Any) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(x)


def _reduce(fn: Callable) -> Callable:
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


_OPS: Dict[str, Callable[[Dict[str, Any]], Callable]] = {
    "NotEqual": lambda c: lambda a, b: torch.ne(_t(a), b if not isinstance(b, list) else
                                                _t(b)),
    "Equal": lambda c: lambda a, b: torch.eq(_t(a), b if not isinstance(b, list) else _t(b)),
    "LogicalOr": lambda c: lambda a, b: torch.logical_or(_t(a), _t(b)),
    "LogicalAnd": lambda c: lambda a, b: torch.logical_and(_t(a), _t(b)),
    "LogicalNot": lambda c: lambda a: torch.logical_not(_t(a)),
    "Any": _reduce(torch.any),
    "All": _reduce(torch.all),
    "ExpandDims": lambda c: lambda x: _t(x).unsqueeze(c.get("axis", -1)),
    "ZerosLike": _like(0),
    "OnesLike": _like(1),
    "Concatenate": lambda c: lambda xs: torch.cat([_t(x) for x in xs], dim=c.get("axis", 0)),
}


class KerasOp(torch.nn.Module):
    """One Keras 3 operation node (``class_name`` and its config), run on tensors."""

    def __init__(self, class_name: str, config: Dict[str, Any]):
        super().__init__()
        self.class_name = class_name
        self.name = config.get("name", class_name)
        self.config = dict(config)

    def forward(self, *args):
        return _OPS[self.class_name](self.config)(*args)

    def extra_repr(self) -> str:
        return f"{self.class_name}, name={self.name!r}"


def build_op(entry: dict) -> Optional[KerasOp]:
    """The module for an operation entry, or ``None`` when sepconv does not run it."""
    cls = entry.get("class_name")
    if cls not in _OPS:
        return None
    return KerasOp(cls, entry.get("config") or {})
