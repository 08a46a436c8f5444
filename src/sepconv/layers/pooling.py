"""Keras' pooling layers: ``MaxPooling1D/2D/3D``, ``AveragePooling1D/2D/3D`` and the global
ones (``GlobalMaxPooling1D/2D/3D``, ``GlobalAveragePooling1D/2D/3D``).

``padding="same"`` is TensorFlow's: the pads go where :mod:`sepconv.padding` puts them
(the odd one on the right), a max never takes a pad, and an average divides by the number
of real elements in its window (not the pool size).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from .. import functional as _functional
from .. import padding as _padding
from .base import check_bool, check_tuple, snake_case
from .core import _Weightless, check_data_format


class _Pooling(_Weightless):
    _RANK = 1
    _OP = "max"

    def __init__(self, pool_size, strides, padding, data_format, input_shape,
                 batch_input_shape, batch_size, dtype, name, trainable, weights):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        rank = self._RANK
        self.pool_size = check_tuple(pool_size, "pool_size", rank)
        self.strides = self.pool_size if strides is None else \
            check_tuple(strides, "strides", rank)
        if not isinstance(padding, str):
            raise TypeError(f"Invalid type for argument `padding`. Expected a string. "
                            f"Received padding={padding!r}")
        self.padding = padding.lower()
        if self.padding not in ("valid", "same"):
            raise ValueError(f"Invalid value for argument `padding`. Expected one of "
                             f"('valid', 'same'). Received padding={padding!r}")
        self.data_format = check_data_format(data_format)
        self._finish_init()

    def _spatial(self, shape):
        return shape[1:-1] if self.data_format == "channels_last" else shape[2:]

    def _check_input(self, shape) -> None:
        if len(shape) != self._RANK + 2:
            layout = _functional._layout_nd(self._RANK, self.data_format == "channels_last")
            raise ValueError(f"Layer {self.name!r} expects input of rank {self._RANK + 2}, "
                             f"{layout}. Received input of shape {shape}")

    def compute_output_shape(self, input_shape) -> Tuple[Optional[int], ...]:
        shape = tuple(input_shape)
        out = _padding.conv_output_shape(self._spatial(shape), self.pool_size, self.strides,
                                         (1,) * self._RANK, self.padding)
        if self.data_format == "channels_last":
            return (shape[0],) + tuple(out) + (shape[-1],)
        return (shape[0], shape[1]) + tuple(out)

    def call(self, x):
        op = _functional.max_pool if self._OP == "max" else _functional.average_pool
        return op(x, self.pool_size, self.strides, self.padding, self.data_format,
                  rank=self._RANK)

    def get_config(self) -> Dict[str, Any]:
        return {**self.base_config(), "pool_size": self.pool_size, "padding": self.padding,
                "strides": self.strides, "data_format": self.data_format}


def _pool_class(name: str, rank: int, op: str, default_pool, default_format):
    def __init__(self, pool_size=default_pool, strides=None, padding="valid",
                 data_format=default_format, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        _Pooling.__init__(self, pool_size, strides, padding, data_format, input_shape,
                          batch_input_shape, batch_size, dtype, name, trainable, weights)

    kind = "maximum" if op == "max" else "average (of the real elements, under 'same')"
    doc = (f"Keras' ``{name}``: the {kind} over windows of ``pool_size`` moved by "
           f"``strides`` (default ``pool_size``) on the {rank} spatial "
           f"ax{'is' if rank == 1 else 'es'} of ``(batch, *spatial, channels)`` (or "
           f"channels_first); ``padding`` 'valid' or 'same' (TensorFlow's).")
    return type(name, (_Pooling,), {"__init__": __init__, "__doc__": doc, "_RANK": rank,
                                    "_OP": op, "__module__": __name__})


MaxPooling1D = _pool_class("MaxPooling1D", 1, "max", 2, "channels_last")
MaxPooling2D = _pool_class("MaxPooling2D", 2, "max", (2, 2), None)
MaxPooling3D = _pool_class("MaxPooling3D", 3, "max", (2, 2, 2), None)
AveragePooling1D = _pool_class("AveragePooling1D", 1, "average", 2, "channels_last")
AveragePooling2D = _pool_class("AveragePooling2D", 2, "average", (2, 2), None)
AveragePooling3D = _pool_class("AveragePooling3D", 3, "average", (2, 2, 2), None)


class _GlobalPooling(_Weightless):
    _RANK = 1
    _OP = "max"

    def __init__(self, data_format, keepdims, input_shape, batch_input_shape, batch_size,
                 dtype, name, trainable, weights):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self.data_format = check_data_format(data_format)
        self.keepdims = check_bool(keepdims, "keepdims")
        self._finish_init()

    def _check_input(self, shape) -> None:
        if len(shape) != self._RANK + 2:
            layout = _functional._layout_nd(self._RANK, self.data_format == "channels_last")
            raise ValueError(f"Layer {self.name!r} expects input of rank {self._RANK + 2}, "
                             f"{layout}. Received input of shape {shape}")

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        channels = shape[-1] if self.data_format == "channels_last" else shape[1]
        if not self.keepdims:
            return (shape[0], channels)
        ones = (1,) * self._RANK
        return ((shape[0],) + ones + (channels,) if self.data_format == "channels_last"
                else (shape[0], channels) + ones)

    def call(self, x):
        return _functional.global_pool(x, self._OP, self.data_format, self.keepdims)

    def get_config(self):
        return {**self.base_config(), "data_format": self.data_format,
                "keepdims": self.keepdims}


def _global_class(name: str, rank: int, op: str, default_format):
    def __init__(self, data_format=default_format, keepdims=False, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        _GlobalPooling.__init__(self, data_format, keepdims, input_shape, batch_input_shape,
                                batch_size, dtype, name, trainable, weights)

    doc = (f"Keras' ``{name}``: the {'maximum' if op == 'max' else 'mean'} over the {rank} "
           f"spatial ax{'is' if rank == 1 else 'es'}: ``(batch, channels)``, or with "
           f"``keepdims=True`` size-1 spatial axes kept.")
    return type(name, (_GlobalPooling,), {"__init__": __init__, "__doc__": doc,
                                          "_RANK": rank, "_OP": op, "__module__": __name__})


GlobalMaxPooling1D = _global_class("GlobalMaxPooling1D", 1, "max", "channels_last")
GlobalMaxPooling2D = _global_class("GlobalMaxPooling2D", 2, "max", None)
GlobalMaxPooling3D = _global_class("GlobalMaxPooling3D", 3, "max", None)
# tf-keras' GlobalAveragePooling1D takes keepdims through **kwargs (it is in its config);
# here it is a named argument after data_format.
GlobalAveragePooling1D = _global_class("GlobalAveragePooling1D", 1, "average",
                                       "channels_last")


def _masked_mean_forward(self, inputs, mask=None) -> torch.Tensor:
    """``inputs`` ``(batch, steps, features)`` (channels_first: ``(batch, features,
    steps)``); ``mask`` ``(batch, steps)``: the mean over the unmasked steps, tf-keras'
    ``sum(x * mask) / sum(mask)`` (an all-masked row gives NaN, as there)."""
    x = self._prepare_input(inputs)
    if mask is None:
        return self.call(x)
    if not isinstance(mask, torch.Tensor):
        mask = torch.as_tensor(np.asarray(mask))
    m = mask.to(device=x.device, dtype=x.dtype)
    m = m.unsqueeze(2 if self.data_format == "channels_last" else 1)
    axis = 1 if self.data_format == "channels_last" else 2
    return torch.sum(x * m, dim=axis, keepdim=self.keepdims) / \
        torch.sum(m, dim=axis, keepdim=self.keepdims)


def _no_output_mask(self, inputs, mask=None):
    return None


# tf-keras' GlobalAveragePooling1D alone among the pooling layers takes a mask (a masked
# mean); its output has none.  The others drop a mask, as tf-keras does.
GlobalAveragePooling1D.supports_masking = True
GlobalAveragePooling1D.forward = _masked_mean_forward
GlobalAveragePooling1D.compute_mask = _no_output_mask
GlobalAveragePooling2D = _global_class("GlobalAveragePooling2D", 2, "average", None)
GlobalAveragePooling3D = _global_class("GlobalAveragePooling3D", 3, "average", None)


class _AdaptivePooling(_Weightless):
    """Keras 3's adaptive pooling: ``output_size`` fixed, windows from the input's size."""

    KERAS3_ONLY = True  # tf-keras 2 has no such classes: .keras files only

    _RANK = 1
    _OP = "average"
    _check_input = _Pooling._check_input

    def __init__(self, output_size, data_format, input_shape, batch_input_shape,
                 batch_size, dtype, name, trainable, weights):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        if output_size is None:
            raise ValueError("Argument `output_size` is required. Received output_size=None")
        self.output_size = check_tuple(output_size, "output_size", self._RANK)
        self.data_format = check_data_format(data_format)
        if self.batch_input_shape is not None and \
                len(self.batch_input_shape) != self._RANK + 2:
            arg, value = self._shape_argument
            layout = _functional._layout_nd(self._RANK, self.data_format == "channels_last")
            raise ValueError(f"Invalid value for argument `{arg}`. Expected {layout} "
                             f"(without the batch for input_shape). Received {arg}={value}")
        self._finish_init()

    def compute_output_shape(self, input_shape) -> Tuple[Optional[int], ...]:
        shape = tuple(input_shape)
        if self.data_format == "channels_last":
            return (shape[0],) + self.output_size + (shape[-1],)
        return (shape[0], shape[1]) + self.output_size

    def call(self, x):
        return _functional.adaptive_pool(x, self.output_size, self._OP, self.data_format)

    def get_config(self) -> Dict[str, Any]:
        return {**self.base_config(), "output_size": self.output_size,
                "data_format": self.data_format}


def _adaptive_class(name: str, rank: int, op: str):
    def __init__(self, output_size=None, data_format=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        _AdaptivePooling.__init__(self, output_size, data_format, input_shape,
                                  batch_input_shape, batch_size, dtype, name, trainable,
                                  weights)

    axes = "steps" if rank == 1 else "rows, cols" if rank == 2 else "depth, rows, cols"
    doc = (f"Keras 3's ``{name}`` (R keras3: ``layer_{snake_case(name[:-2])}_{rank}d``; "
           f"tf-keras 2.21 has none): the {'maximum' if op == 'max' else 'mean'} over "
           f"windows chosen so that ``(batch, {axes}, channels)`` (or channels_first) "
           f"becomes ``(batch, *output_size, channels)`` whatever its size.  Output ``i`` "
           f"of an axis of length ``L`` pools inputs ``floor(i * L / n)`` to "
           f"``ceil((i + 1) * L / n) - 1`` (``n`` its output size): torch's adaptive "
           f"pooling bins, which Keras 3 computes on every backend (its torch backend "
           f"calls torch's).  ``output_size``: an int or a tuple of {rank} ints (required; "
           f"Keras 3 has no default); ``data_format`` None means 'channels_last'.")
    return type(name, (_AdaptivePooling,), {"__init__": __init__, "__doc__": doc,
                                            "_RANK": rank, "_OP": op,
                                            "__module__": __name__})


AdaptiveAveragePooling1D = _adaptive_class("AdaptiveAveragePooling1D", 1, "average")
AdaptiveAveragePooling2D = _adaptive_class("AdaptiveAveragePooling2D", 2, "average")
AdaptiveAveragePooling3D = _adaptive_class("AdaptiveAveragePooling3D", 3, "average")
AdaptiveMaxPooling1D = _adaptive_class("AdaptiveMaxPooling1D", 1, "max")
AdaptiveMaxPooling2D = _adaptive_class("AdaptiveMaxPooling2D", 2, "max")
AdaptiveMaxPooling3D = _adaptive_class("AdaptiveMaxPooling3D", 3, "max")
