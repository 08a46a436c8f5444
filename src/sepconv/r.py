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

import inspect
import numbers
import re
from typing import Any, Iterable, Optional

import numpy as np
import torch

from . import layers as _layers

#: Arguments R hands over as doubles that the layers take as whole numbers (strings and
#: real-valued arguments such as ``rate`` pass through ``_as_int`` untouched or are not named).
INTEGER_ARGS = ("filters", "kernel_size", "strides", "dilation_rate", "depth_multiplier",
                "batch_size", "groups", "output_padding", "cropping", "padding", "size",
                "units", "pool_size", "axis", "input_dim", "output_dim", "n", "dims",
                "target_shape")
_SHAPE_ARGS = ("input_shape", "batch_input_shape")


def _as_int(value: Any) -> Any:
    """A whole-number double becomes an int; everything else is left for the layer to judge."""
    if isinstance(value, (bool, np.bool_)):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        if float(value).is_integer():
            return int(value)
    if isinstance(value, np.ndarray) and value.ndim <= 2:
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


def r_name(class_name: str) -> str:
    """R keras' function name for a Keras class: ``Conv2DTranspose`` -> ``layer_conv_2d_transpose``,
    ``UpSampling1D`` -> ``layer_upsampling_1d``."""
    snake = re.sub(r"_?(\d)d(?=_|$)", r"_\1d", _layers.base.snake_case(class_name))
    return "layer_" + snake.replace("up_sampling", "upsampling")


def r_function(cls: type, name: Optional[str] = None,
               integer_args: Iterable[str] = INTEGER_ARGS):
    """R keras' ``layer_<snake>(object, ...)`` for a layer class, generated from its signature.

    The function takes ``object`` first, then the class' arguments by the same names, order
    and defaults (required ones default to ``None`` and are checked, as R keras' wrappers
    do); whole-number doubles among ``integer_args`` and the shape arguments become ints.
    """
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    required = [p.name for p in params if p.default is inspect.Parameter.empty]
    sig = inspect.Signature(
        [inspect.Parameter("object", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)]
        + [p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD,
                     default=None if p.default is inspect.Parameter.empty else p.default)
           for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)])
    coerce = set(integer_args) | set(_SHAPE_ARGS)

    def layer_function(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        object = arguments.pop("object")
        for key in required:
            if arguments[key] is None:
                raise ValueError(f"Argument `{key}` is required. Received {key}=None")
        for key in coerce & set(arguments):
            arguments[key] = _as_int(arguments[key])
        return _compose(object, cls(**arguments))

    name = name or r_name(cls.__name__)
    layer_function.__name__ = layer_function.__qualname__ = name
    layer_function.__signature__ = sig
    layer_function.__doc__ = (f"R keras' ``{name}(object, ...)``; see "
                              f":class:`sepconv.{cls.__name__}`.\n\n``object``: None returns "
                              "the layer, a ``torch.nn.Sequential`` gets it appended and is "
                              "returned, a tensor or array is passed through it.")
    return layer_function


layer_separable_conv_1d = r_function(_layers.SeparableConv1D)
layer_conv_1d = r_function(_layers.Conv1D)
layer_conv_2d = r_function(_layers.Conv2D)
layer_conv_3d = r_function(_layers.Conv3D)
layer_conv_1d_transpose = r_function(_layers.Conv1DTranspose)
layer_conv_2d_transpose = r_function(_layers.Conv2DTranspose)
layer_conv_3d_transpose = r_function(_layers.Conv3DTranspose)
