"""Convolutions: ``Conv1D``, ``Conv2D``, ``Conv3D`` (R: ``layer_conv_1d`` ... ``_3d``).

One private base, ``_Conv``, owns the arguments, the weights, building, shapes, the
config and the repr; each public class only fixes the rank and tf-keras 2.21's signature.
The transposed convolutions (``conv_transpose.py``) share the base.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch

from .. import activations as _activations
from .. import constraints as _constraints
from .. import functional as _functional
from .. import initializers as _initializers
from .. import padding as _padding
from .. import regularizers as _regularizers
from .base import (Layer, check_bool, check_conv_geometry, check_count,
                   check_data_format, check_padding)


class _Conv(Layer):
    """Keras' N-d convolution layer (N = ``RANK``); see ``Conv1D`` for the contract.

    Subclasses set ``RANK`` and ``TRANSPOSE`` and spell out tf-keras' signature.
    """

    _INPUT_CHECK_BY_SHAPE = True  # (Layer._prepare_input)

    RANK: int = 1
    TRANSPOSE = False
    WEIGHT_NAMES = ("kernel", "bias")

    def __init__(self, filters, kernel_size, strides, padding, data_format, dilation_rate,
                 groups, activation, use_bias, kernel_initializer, bias_initializer,
                 kernel_regularizer, bias_regularizer, activity_regularizer,
                 kernel_constraint, bias_constraint, input_shape, batch_input_shape,
                 batch_size, dtype, name, trainable, weights, output_padding=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights, activity_regularizer=activity_regularizer)
        rank = self.RANK
        self.filters = check_count(filters, "filters")
        self.kernel_size, self.strides, self.dilation_rate = check_conv_geometry(
            kernel_size, strides, dilation_rate, rank)
        allowed = ("valid", "same", "causal") if rank == 1 and not self.TRANSPOSE \
            else ("valid", "same")
        why = "" if not isinstance(padding, str) or padding.lower() != "causal" else \
            " (a transposed convolution has no causal padding)" if self.TRANSPOSE else \
            " (tf-keras allows 'causal' on Conv1D and SeparableConv1D only)"
        self.padding = check_padding(padding, allowed, why)
        self.data_format = check_data_format(data_format)
        self.groups = check_count(groups, "groups")
        if self.filters % self.groups:
            raise ValueError(f"Invalid value for argument `groups`. The number of filters "
                             f"must be evenly divisible by the number of groups. Received: "
                             f"groups={self.groups}, filters={self.filters}")
        self.output_padding = self._check_output_padding(output_padding)
        self.activation = _activations.get(activation, "activation")
        self.use_bias = check_bool(use_bias, "use_bias")
        self.kernel_initializer = _initializers.get(kernel_initializer, "kernel_initializer")
        self.bias_initializer = _initializers.get(bias_initializer, "bias_initializer")
        for arg, value in (("kernel_initializer", self.kernel_initializer),
                           ("bias_initializer", self.bias_initializer)):
            if value is None:
                raise ValueError(f"Invalid value for argument `{arg}`. Expected an "
                                 f"initializer. Received {arg}=None")
        self.kernel_regularizer = _regularizers.get(kernel_regularizer, "kernel_regularizer")
        self.bias_regularizer = _regularizers.get(bias_regularizer, "bias_regularizer")
        self.kernel_constraint = _constraints.get(kernel_constraint, "kernel_constraint")
        self.bias_constraint = _constraints.get(bias_constraint, "bias_constraint")
        self.input_channels: Optional[int] = None
        if self.batch_input_shape is not None:
            self._check_shape_argument()
        self._finish_init()

    def _check_output_padding(self, output_padding) -> Optional[Tuple[int, ...]]:
        return None

    def _check_shape_argument(self) -> None:
        """``input_shape`` / ``batch_input_shape`` checked at construction, the message
        naming the argument the user passed."""
        self._check_shape_rank()
        arg, value = self._shape_argument
        channels = self.batch_input_shape[self._channels_axis]
        if channels is not None and (channels < 1 or channels % self.groups):
            raise ValueError(f"Invalid value for argument `{arg}`. Expected a number of input "
                             f"channels that is a positive multiple of groups={self.groups}. "
                             f"Received {arg}={value}")
        self._check_shape_output(self.compute_output_shape)

    # -- shapes ----------------------------------------------------------------------------
    @property
    def _channels_axis(self) -> int:
        return -1 if self.data_format == "channels_last" else 1

    def _spatial(self, shape) -> Tuple:
        return tuple(shape[1:-1] if self.data_format == "channels_last" else shape[2:])

    def _layout(self) -> str:
        return _functional._layout_nd(self.RANK, self.data_format == "channels_last")

    def _output_spatial(self, spatial, shape) -> Tuple[Optional[int], ...]:
        out = _padding.conv_output_shape(spatial, self.kernel_size, self.strides,
                                          self.dilation_rate, self.padding)
        if any(n is not None and n <= 0 for n in out):
            raise ValueError(f"Input of shape {tuple(shape)} is too small for layer "
                             f"{self.name!r} (kernel_size={self.kernel_size}, dilation_rate="
                             f"{self.dilation_rate}, padding={self.padding!r}): the output "
                             f"would have spatial shape {out}")
        return out

    def compute_output_shape(self, input_shape) -> Tuple[Optional[int], ...]:
        """``(batch, *spatial, channels)`` -> ``(batch, *new_spatial, filters)`` (or
        channels_first); unknown axes may be ``None``."""
        shape = tuple(input_shape)
        if len(shape) != self.RANK + 2:
            raise ValueError(f"Expected an input shape of rank {self.RANK + 2}, "
                             f"{self._layout()}. Received input_shape={shape}")
        out = self._output_spatial(self._spatial(shape), shape)
        if self.data_format == "channels_last":
            return (shape[0], *out, self.filters)
        return (shape[0], self.filters, *out)

    # -- building --------------------------------------------------------------------------
    def _kernel_shape(self, channels: int) -> Tuple[int, ...]:
        return (*self.kernel_size, channels // self.groups, self.filters)

    def build(self, input_shape, device=None) -> None:
        channels = self._input_channels(input_shape, self.RANK + 2)
        if channels % self.groups:
            raise ValueError(f"The number of input channels must be evenly divisible by the "
                             f"number of groups. Received groups={self.groups}, but the input "
                             f"has {channels} channels (input shape {tuple(input_shape)})")
        self.compute_output_shape(input_shape)
        self.input_channels = channels
        self.add_weight("kernel", self._kernel_shape(channels), self.kernel_initializer,
                        self.kernel_regularizer, self.kernel_constraint, device)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer,
                            self.bias_regularizer, self.bias_constraint, device)

    def _input_shape_from_weights(self, weights) -> Optional[Tuple]:
        if not weights or len(getattr(weights[0], "shape", ())) != self.RANK + 2:
            return None
        shape = weights[0].shape
        channels = int(shape[-1]) if self.TRANSPOSE else int(shape[-2]) * self.groups
        return ((None,) * (self.RANK + 1) + (channels,) if self.data_format == "channels_last"
                else (None, channels) + (None,) * self.RANK)

    def _check_input(self, shape) -> None:
        if len(shape) != self.RANK + 2 or shape[self._channels_axis] != self.input_channels:
            expected = [None] * (self.RANK + 2)
            expected[self._channels_axis] = self.input_channels
            raise ValueError(f"Layer {self.name!r} expects input of shape {tuple(expected)} "
                             f"{self._layout()}. Received input of shape {shape}")
        self._output_spatial(self._spatial(shape), shape)

    # -- computing -------------------------------------------------------------------------
    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        return _functional.conv(
            x, self._weight("kernel"), self._weight("bias") if self.use_bias else None,
            strides=self.strides, padding=self.padding, dilation_rate=self.dilation_rate,
            groups=self.groups, data_format=self.data_format)

    def forward(self, inputs) -> torch.Tensor:
        """``inputs``: ``(batch, *spatial, channels)`` (channels_last) or
        ``(batch, channels, *spatial)``; a tensor or numpy array."""
        x = self._prepare_input(inputs)
        y = self.activation(self._convolve(x))
        self._record_activity(y)
        return y

    # -- Keras protocol --------------------------------------------------------------------
    def get_config(self) -> Dict[str, Any]:
        config = self.base_config()
        config.update({
            "filters": self.filters, "kernel_size": self.kernel_size, "strides": self.strides,
            "padding": self.padding, "data_format": self.data_format,
            "dilation_rate": self.dilation_rate, "groups": self.groups,
            "activation": _activations.serialize(self.activation), "use_bias": self.use_bias,
            **self.objects_config(),
        })
        return config

    def extra_repr(self) -> str:
        parts = self._geometry_repr([f"{self.input_channels if self.built else '?'}",
                                     f"{self.filters}", f"kernel_size={self.kernel_size}"])
        if self.groups != 1:
            parts.append(f"groups={self.groups}")
        return self._repr_tail(parts)


_COMMON_DOC = """
    ``data_format`` ``"channels_last"`` (the default) takes ``(batch, {axes}, channels)``,
    ``"channels_first"`` ``(batch, channels, {axes})``.  Output spatial lengths and padding
    are TensorFlow's (:mod:`sepconv.padding`): ``"same"`` pads the odd element after, per
    axis.  ``strides > 1`` on any axis together with ``dilation_rate > 1`` on any axis is
    refused, as tf-keras refuses it; ``groups`` must divide ``filters`` (at construction)
    and the input channels (at build).  An output axis of length <= 0 is an error (tf-keras
    returns an empty or garbage tensor there).

    Weights, in Keras' shapes and ``get_weights()`` order: ``kernel``
    ``(*kernel_size, in_channels // groups, filters)`` and ``bias`` ``(filters,)`` (absent
    when ``use_bias=False``).  Arguments are tf-keras 2.21's (what R keras wraps), names,
    order and defaults, then the Keras 2 base-layer arguments ``input_shape,
    batch_input_shape, batch_size, dtype, name, trainable, weights``.  Weights are created
    from ``input_shape`` / ``batch_input_shape`` at construction, at ``build(shape)``, or at
    the first call.  The protocol (dtype policies incl. ``mixed_*``, losses with the
    activity penalty divided by the batch size, constraints after every optimizer step,
    get/set_weights, get_config/from_config) is ``SeparableConv1D``'s.
"""


class Conv1D(_Conv):
    """Keras' 1D convolution (R: ``layer_conv_1d``): ``activation(conv(x, kernel) + bias)``.

    ``padding`` is ``"valid"``, ``"same"`` or ``"causal"`` (``(kernel_size - 1) *
    dilation_rate`` zeros on the left: ``output[t]`` sees ``input[:t + 1]`` only).
    """ + _COMMON_DOC.format(axes="steps")

    RANK = 1

    def __init__(self, filters, kernel_size, strides=1, padding="valid",
                 data_format="channels_last", dilation_rate=1, groups=1, activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate,
                         groups, activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, activity_regularizer,
                         kernel_constraint, bias_constraint, input_shape, batch_input_shape,
                         batch_size, dtype, name, trainable, weights)


class Conv2D(_Conv):
    """Keras' 2D convolution (R: ``layer_conv_2d``): ``activation(conv(x, kernel) + bias)``.

    ``padding`` is ``"valid"`` or ``"same"``.
    """ + _COMMON_DOC.format(axes="rows, cols")

    RANK = 2

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 data_format=None, dilation_rate=(1, 1), groups=1, activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate,
                         groups, activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, activity_regularizer,
                         kernel_constraint, bias_constraint, input_shape, batch_input_shape,
                         batch_size, dtype, name, trainable, weights)


class Conv3D(_Conv):
    """Keras' 3D convolution (R: ``layer_conv_3d``): ``activation(conv(x, kernel) + bias)``.

    ``padding`` is ``"valid"`` or ``"same"``.
    """ + _COMMON_DOC.format(axes="depth, rows, cols")

    RANK = 3

    def __init__(self, filters, kernel_size, strides=(1, 1, 1), padding="valid",
                 data_format=None, dilation_rate=(1, 1, 1), groups=1, activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate,
                         groups, activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, activity_regularizer,
                         kernel_constraint, bias_constraint, input_shape, batch_input_shape,
                         batch_size, dtype, name, trainable, weights)
