"""Keras' merging layers: ``Add``, ``Subtract``, ``Multiply``, ``Average``, ``Maximum``,
``Minimum``, ``Concatenate`` and ``Dot``.

``forward`` takes a list (or tuple) of tensors, as a Keras merge layer is called.  The
elementwise ones broadcast as tf-keras does: an input of lower rank gets size-1 axes
inserted after the batch axis until the ranks agree, then sizes must be equal or 1.
"""

from __future__ import annotations

import numbers
from typing import Any, Dict, List, Sequence

import torch

from .. import functional as _functional
from .base import check_bool
from .core import _Weightless, _check_axis


class _Merge(_Weightless):
    """Shared by the merging layers: checks the list of inputs, casts each to the compute
    dtype and aligns ranks."""

    _MIN_INPUTS = 1

    def __init__(self, input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self._finish_init()

    def _finish_init(self) -> None:
        self.built = True  # nothing to build; input_shape only documents the inputs

    def _inputs(self, inputs) -> List[torch.Tensor]:
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"A merge layer ({type(self).__name__} {self.name!r}) should be "
                             f"called on a list of inputs. Received inputs={inputs!r} "
                             f"(not a list of tensors)")
        if len(inputs) < self._MIN_INPUTS:
            raise ValueError(f"A merge layer ({type(self).__name__} {self.name!r}) should be "
                             f"called on a list of at least {self._MIN_INPUTS} input"
                             f"{'s' if self._MIN_INPUTS > 1 else ''}. Got {len(inputs)} "
                             f"inputs")
        return [self._prepare_input(x) for x in inputs]

    def _aligned(self, inputs) -> List[torch.Tensor]:
        xs = self._inputs(inputs)
        shape = xs[0].shape
        for x in xs[1:]:
            if x.shape != shape:
                break
        else:  # (one shape, the common case: nothing to align or check, ~5 us a call)
            return xs
        rank = max(x.dim() for x in xs)
        out = []
        for x in xs:
            while x.dim() < rank:
                x = x.unsqueeze(1)
            out.append(x)
        for axis in range(rank):
            # (a list, not a set: symbolic sizes under torch.export do not hash)
            sizes = [x.shape[axis] for x in out if x.shape[axis] != 1]
            if any(size != sizes[0] for size in sizes[1:]):
                raise ValueError(f"Inputs of {type(self).__name__} {self.name!r} have "
                                 f"incompatible shapes: "
                                 f"{[tuple(x.shape) for x in xs]}")
        return out

    def forward(self, inputs) -> torch.Tensor:
        """``inputs``: a list of tensors (or arrays) of broadcastable shapes."""
        return self._merge(self._aligned(inputs))

    def _merge(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        shapes = [tuple(s) for s in input_shape]
        rank = max(len(s) for s in shapes)
        shapes = [s[:1] + (1,) * (rank - len(s)) + s[1:] for s in shapes]
        out = []
        for dims in zip(*shapes):
            known = [d for d in dims if d is not None and d != 1]
            out.append(known[0] if known else (None if None in dims else 1))
        return tuple(out)

    def get_config(self) -> Dict[str, Any]:
        return self.base_config()

    supports_masking = True

    def _check_masks(self, inputs, mask):
        if not isinstance(mask, (tuple, list)):
            raise ValueError(f"`mask` should be a list. Received: mask={mask}")
        if not isinstance(inputs, (tuple, list)):
            raise ValueError(f"`inputs` should be a list. Received: inputs={inputs}")
        if len(mask) != len(inputs):
            raise ValueError(f"The lists `inputs` and `mask` should have the same length. "
                             f"Received: inputs of length {len(inputs)}, and mask of "
                             f"length {len(mask)}")

    def compute_mask(self, inputs, mask=None):
        """tf-keras 2.21's merge mask: the logical AND of the inputs' masks that are
        not ``None`` (``None`` when all are)."""
        if mask is None:
            return None
        self._check_masks(inputs, mask)
        masks = [torch.as_tensor(m).to(torch.bool) for m in mask if m is not None]
        if not masks:
            return None
        return torch.all(torch.stack(masks, 0), dim=0)


class Add(_Merge):
    """Keras' ``Add``: the elementwise sum of a list of tensors."""

    def _merge(self, xs):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Subtract(_Merge):
    """Keras' ``Subtract``: ``inputs[0] - inputs[1]`` (exactly two inputs)."""

    _MIN_INPUTS = 2

    def _merge(self, xs):
        if len(xs) != 2:
            raise ValueError(f"A `Subtract` layer should be called on exactly 2 inputs. "
                             f"Received: inputs with {len(xs)} tensors")
        return xs[0] - xs[1]


class Multiply(_Merge):
    """Keras' ``Multiply``: the elementwise product of a list of tensors."""

    def _merge(self, xs):
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out


class Average(_Merge):
    """Keras' ``Average``: the elementwise mean of a list of tensors (sum, then divided by
    their count, in tf-keras' order)."""

    def _merge(self, xs):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out / len(xs)


class Maximum(_Merge):
    """Keras' ``Maximum``: the elementwise maximum of a list of tensors."""

    def _merge(self, xs):
        out = xs[0]
        for x in xs[1:]:
            out = torch.maximum(out, x)
        return out


class Minimum(_Merge):
    """Keras' ``Minimum``: the elementwise minimum of a list of tensors."""

    def _merge(self, xs):
        out = xs[0]
        for x in xs[1:]:
            out = torch.minimum(out, x)
        return out


class Concatenate(_Merge):
    """Keras' ``Concatenate``: joins a list of tensors along ``axis`` (any axis; the
    others must agree)."""

    def __init__(self, axis=-1, input_shape=None, batch_input_shape=None, batch_size=None,
                 dtype=None, name=None, trainable=None, weights=None):
        self_axis = _check_axis(axis, "axis")
        if isinstance(self_axis, list):
            raise TypeError(f"Invalid type for argument `axis`. Expected an int. "
                            f"Received axis={axis!r}")
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self.axis = self_axis

    def forward(self, inputs) -> torch.Tensor:
        """``inputs``: a list of tensors of one rank, equal sizes except on ``axis``."""
        xs = self._inputs(inputs)
        rank = xs[0].dim()
        shapes = [tuple(x.shape) for x in xs]
        if any(x.dim() != rank for x in xs) or not -rank <= self.axis < rank:
            raise ValueError(f"A `Concatenate` layer should be called on a list of inputs "
                             f"of one rank with axis={self.axis} among its axes. Received: "
                             f"input_shape={shapes}")
        axis = self.axis % rank
        for s in shapes[1:]:
            if s[:axis] + s[axis + 1:] != shapes[0][:axis] + shapes[0][axis + 1:]:
                raise ValueError(f"A `Concatenate` layer requires inputs with matching "
                                 f"shapes except for the concatenation axis. Received: "
                                 f"input_shape={shapes}")
        return torch.cat(xs, dim=axis)

    def compute_output_shape(self, input_shape):
        shapes = [tuple(s) for s in input_shape]
        axis = self.axis % len(shapes[0])
        out = list(shapes[0])
        sizes = [s[axis] for s in shapes]
        out[axis] = None if None in sizes else sum(sizes)
        return tuple(out)

    def compute_mask(self, inputs, mask=None):
        """tf-keras 2.21's ``Concatenate.compute_mask``: an unmasked input counts as all
        True over its whole shape, a mask of lower rank gets a last axis of size 1; the
        masks are concatenated along ``axis``, then reduced with AND over the last axis."""
        if mask is None:
            return None
        self._check_masks(inputs, mask)
        if all(m is None for m in mask):
            return None
        masks = []
        for x, m in zip(inputs, mask):
            x = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
            if m is None:
                masks.append(torch.ones(x.shape, dtype=torch.bool, device=x.device))
            else:
                m = torch.as_tensor(m).to(torch.bool)
                masks.append(m.unsqueeze(-1) if m.dim() < x.dim() else m)
        return torch.all(torch.cat(masks, dim=self.axis), dim=-1)

    def get_config(self):
        return {**self.base_config(), "axis": self.axis}


class Dot(_Merge):
    """Keras' ``Dot``: for each sample, the dot product of two tensors along ``axes``
    (tf-keras' ``backend.batch_dot``; see :func:`sepconv.functional.batch_dot`).

    ``axes``: an int (the same axis of both inputs) or a list of two (one per input);
    negative axes count from each input's own rank; the batch axis 0 cannot be one.
    With ``normalize=True`` each input is first L2-normalised along its axis
    (``tf.math.l2_normalize``, epsilon 1e-12), so the output is the cosine similarity.
    Inputs ``(batch, *a)`` and ``(batch, *b)``; output ``(batch, *a_rest, *b_rest)``
    (``(batch, 1)`` for two rank-2 inputs).  ``compute_mask`` gives ``None``, as in
    tf-keras: the mask stops here.
    """

    _MIN_INPUTS = 2

    def __init__(self, axes, normalize=False, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        if isinstance(axes, (list, tuple)):
            if len(axes) != 2:
                raise ValueError(f"Invalid format for argument `axes`: it should contain two "
                                 f"elements. Received: axes={axes}")
            if any(isinstance(a, bool) or not isinstance(a, numbers.Integral) for a in axes):
                raise ValueError(f"Invalid format for argument `axes`: list elements should "
                                 f"be integers. Received: axes={axes}")
            checked = [int(a) for a in axes]
        elif isinstance(axes, numbers.Integral) and not isinstance(axes, bool):
            checked = int(axes)
        else:
            raise TypeError(f"Invalid type for argument `axes`: it should be a list or an "
                            f"int. Received: axes={axes!r}")
        if 0 in (checked if isinstance(checked, list) else [checked]):
            raise ValueError(f"Invalid value for argument `axes`. Cannot perform batch_dot "
                             f"over axis 0 (the batch axis). Received: axes={axes}")
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self.axes = checked
        self.normalize = check_bool(normalize, "normalize")

    def _axes(self, rank1: int, rank2: int) -> List[int]:
        axes = self.axes if isinstance(self.axes, list) else [self.axes] * 2
        return [a % r if a < 0 else a for a, r in zip(axes, (rank1, rank2))]

    def forward(self, inputs) -> torch.Tensor:
        """``inputs``: a list of two tensors (or arrays), ``(batch, *a)`` and
        ``(batch, *b)``."""
        xs = self._inputs(inputs)
        if len(xs) != 2:
            raise ValueError(f"A `Dot` layer should be called on exactly 2 inputs. "
                             f"Received: inputs with {len(xs)} tensors")
        x1, x2 = xs
        a1, a2 = self._axes(x1.dim(), x2.dim())
        for x, a in ((x1, a1), (x2, a2)):
            if not 0 < a < x.dim():
                raise ValueError(f"Layer {self.name!r} with axes={self.axes} cannot reduce "
                                 f"axis {a} of an input of shape {tuple(x.shape)}")
        if x1.shape[a1] != x2.shape[a2]:
            raise ValueError(f"Incompatible input shapes: axis values {x1.shape[a1]} (at "
                             f"axis {a1}) != {x2.shape[a2]} (at axis {a2}). Full input "
                             f"shapes: {tuple(x1.shape)}, {tuple(x2.shape)}")
        if self.normalize:
            x1 = _functional.l2_normalize(x1, a1)
            x2 = _functional.l2_normalize(x2, a2)
        return _functional.batch_dot(x1, x2, (a1, a2))

    def compute_output_shape(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError(f"A `Dot` layer should be called on a list of 2 inputs. "
                             f"Received: input_shape={input_shape}")
        shape1, shape2 = list(input_shape[0]), list(input_shape[1])
        a1, a2 = self._axes(len(shape1), len(shape2))
        shape1.pop(a1)
        shape2.pop(a2)
        out = shape1 + shape2[1:]
        return tuple(out + [1] if len(out) == 1 else out)

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self) -> Dict[str, Any]:
        return {**self.base_config(), "axes": self.axes, "normalize": self.normalize}
