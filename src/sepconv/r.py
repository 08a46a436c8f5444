"""R keras' ``layer_*`` functions: ``layer_separable_conv_1d(object, ...)``.

R hands numbers over as doubles (``filters = 32`` arrives as ``32.0``) and arrays as
float64.  As R keras' wrappers do, whole-number doubles are coerced to integers for the
integer arguments (and inside ``input_shape`` / ``batch_input_shape``); anything else,
``2.5`` say, is rejected with the layer's own error.

``object`` follows R's composition rules: ``None`` returns the layer; a
``torch.nn.Sequential`` gets the layer appended and is returned; a tensor or array is
passed through the layer and the output returned.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from .layers import SeparableConv1D

_INTEGER_ARGS = ("filters", "kernel_size", "strides", "dilation_rate", "depth_multiplier",
                 "batch_size")
_SHAPE_ARGS = ("input_shape", "batch_input_shape")


def _as_int(value: Any) -> Any:
    """A whole-number double becomes an int; everything else is left for the layer to judge."""
    if isinstance(value, (bool, np.bool_)):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        if float(value).is_integer():
            return int(value)
    if isinstance(value, np.ndarray) and value.ndim <= 1:
        return _as_int(value.tolist())
    if isinstance(value, (list, tuple)):
        return type(value)(_as_int(v) for v in value)
    return value


def _compose(object: Any, layer: torch.nn.Module):
    if object is None:
        return layer
    if isinstance(object, torch.nn.Sequential):
        object.append(layer)
        return object
    if isinstance(object, (torch.Tensor, np.ndarray)):
        return layer(object)
    raise TypeError("`object` must be None, a torch.nn.Sequential model, or a tensor or "
                    f"array. Received object of type {type(object).__name__}")


def layer_separable_conv_1d(object=None, filters=None, kernel_size=None, strides=1,
                            padding="valid", data_format=None, dilation_rate=1,
                            depth_multiplier=1, activation=None, use_bias=True,
                            depthwise_initializer="glorot_uniform",
                            pointwise_initializer="glorot_uniform", bias_initializer="zeros",
                            depthwise_regularizer=None, pointwise_regularizer=None,
                            bias_regularizer=None, activity_regularizer=None,
                            depthwise_constraint=None, pointwise_constraint=None,
                            bias_constraint=None, input_shape=None, batch_input_shape=None,
                            batch_size=None, dtype=None, name=None, trainable=None,
                            weights=None):
    """R keras' ``layer_separable_conv_1d``; see :class:`sepconv.SeparableConv1D`."""
    args = dict(locals())
    args.pop("object")
    if filters is None or kernel_size is None:
        missing = "filters" if filters is None else "kernel_size"
        raise ValueError(f"Argument `{missing}` is required. Received {missing}=None")
    for key in _INTEGER_ARGS + _SHAPE_ARGS:
        args[key] = _as_int(args[key])
    return _compose(object, SeparableConv1D(**args))
