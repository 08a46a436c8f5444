"""Separable convolutions: ``SeparableConv1D`` (Keras' ``layer_separable_conv_1d``)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch

from .. import activations as _activations
from .. import constraints as _constraints
from .. import functional as _functional
from .. import initializers as _initializers
from .. import padding as _padding
from .. import regularizers as _regularizers
from .._registry import serialize
from .base import Layer, check_bool, check_count, check_tuple


class SeparableConv1D(Layer):
    """Keras' separable 1D convolution: a depthwise convolution, then a 1x1 convolution.

    Each input channel is convolved with ``depth_multiplier`` kernels of width
    ``kernel_size``; the ``channels * depth_multiplier`` results are mixed into ``filters``
    outputs by a pointwise kernel, then ``bias`` and ``activation`` are applied.

    Input: ``(batch, steps, channels)`` for ``data_format="channels_last"`` (the default),
    ``(batch, channels, steps)`` for ``"channels_first"``.  Output: ``(batch, new_steps,
    filters)`` or ``(batch, filters, new_steps)``, with ``new_steps`` from
    :mod:`sepconv.padding` (TensorFlow's arithmetic: ``"same"`` pads the odd element on the
    right, ``"causal"`` pads ``(kernel_size - 1) * dilation_rate`` on the left).

    Weights, in Keras' shapes and ``get_weights()`` order: ``depthwise_kernel``
    ``(kernel_size, channels, depth_multiplier)``, ``pointwise_kernel``
    ``(1, channels * depth_multiplier, filters)``, ``bias`` ``(filters,)`` (absent when
    ``use_bias=False``).

    Arguments follow Keras 2 / R keras by name and default.  Where tf-keras (what R keras
    wraps) and Keras 3 differ, sepconv follows tf-keras: ``padding="causal"``, the
    ``hard_sigmoid`` formula, ``"l1_l2"`` meaning 0.01 each, and the activity penalty
    (``layer.losses``) divided by the batch size.  ``dtype`` takes float16, bfloat16,
    float32, float64 (names or torch dtypes) and Keras' ``mixed_float16`` /
    ``mixed_bfloat16`` (float32 weights, half-precision compute).  Inputs of another dtype,
    numpy arrays included, are cast to the compute dtype.

    Weights are created from ``input_shape`` / ``batch_input_shape`` at construction, or
    at the first call (then ``weights`` is applied there).  Create the optimizer after the
    weights exist.  Constraints are applied after every ``optimizer.step()`` that updates
    these weights.
    """

    WEIGHT_NAMES = ("depthwise_kernel", "pointwise_kernel", "bias")

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None,
                 pointwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, pointwise_constraint=None, bias_constraint=None,
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights, activity_regularizer=activity_regularizer)
        self.filters = check_count(filters, "filters")
        self.kernel_size = check_tuple(kernel_size, "kernel_size")
        self.strides = check_tuple(strides, "strides")
        self.dilation_rate = check_tuple(dilation_rate, "dilation_rate")
        if self.strides[0] > 1 and self.dilation_rate[0] > 1:
            raise ValueError("`strides > 1` not supported in conjunction with "
                             f"`dilation_rate > 1`. Received: strides={self.strides} and "
                             f"dilation_rate={self.dilation_rate}")
        if not isinstance(padding, str):
            raise TypeError(f"Invalid type for argument `padding`. Expected a string. "
                            f"Received padding={padding!r}")
        self.padding = padding.lower()
        if self.padding not in _padding.PADDINGS:
            raise ValueError(f"Invalid value for argument `padding`. Expected one of "
                             f"{_padding.PADDINGS}. Received padding={padding!r}")
        if data_format is None:
            data_format = "channels_last"
        if not isinstance(data_format, str):
            raise TypeError(f"Invalid type for argument `data_format`. Expected a string. "
                            f"Received data_format={data_format!r}")
        self.data_format = data_format.lower()
        if self.data_format not in ("channels_last", "channels_first"):
            raise ValueError("Invalid value for argument `data_format`. Expected one of "
                             "'channels_last', 'channels_first'. "
                             f"Received data_format={data_format!r}")
        self.depth_multiplier = check_count(depth_multiplier, "depth_multiplier")
        self.activation = _activations.get(activation, "activation")
        self.use_bias = check_bool(use_bias, "use_bias")
        self.depthwise_initializer = _initializers.get(depthwise_initializer,
                                                       "depthwise_initializer")
        self.pointwise_initializer = _initializers.get(pointwise_initializer,
                                                       "pointwise_initializer")
        self.bias_initializer = _initializers.get(bias_initializer, "bias_initializer")
        for arg, value in (("depthwise_initializer", self.depthwise_initializer),
                           ("pointwise_initializer", self.pointwise_initializer),
                           ("bias_initializer", self.bias_initializer)):
            if value is None:
                raise ValueError(f"Invalid value for argument `{arg}`. Expected an "
                                 f"initializer. Received {arg}=None")
        self.depthwise_regularizer = _regularizers.get(depthwise_regularizer,
                                                       "depthwise_regularizer")
        self.pointwise_regularizer = _regularizers.get(pointwise_regularizer,
                                                       "pointwise_regularizer")
        self.bias_regularizer = _regularizers.get(bias_regularizer, "bias_regularizer")
        self.depthwise_constraint = _constraints.get(depthwise_constraint,
                                                     "depthwise_constraint")
        self.pointwise_constraint = _constraints.get(pointwise_constraint,
                                                     "pointwise_constraint")
        self.bias_constraint = _constraints.get(bias_constraint, "bias_constraint")
        self.input_channels: Optional[int] = None
        if self.batch_input_shape is not None:
            if len(self.batch_input_shape) != 3:
                arg, value = self._shape_argument
                expected = "(steps, channels)" if arg == "input_shape" else \
                    "(batch, steps, channels)"
                raise ValueError(f"Invalid value for argument `{arg}`. Expected "
                                 f"{expected} for a 1D layer. Received {arg}={value}")
            given = ("batch_input_shape", self.batch_input_shape) \
                if batch_input_shape is not None else ("input_shape", self.batch_input_shape[1:])
            channels = self.batch_input_shape[self._channels_axis]
            if channels is not None and channels < 1:
                raise ValueError(f"Invalid value for argument `{given[0]}`. Expected at least "
                                 f"one input channel. Received {given[0]}={given[1]}")
            steps = self.batch_input_shape[self._steps_axis]
            if steps is not None:
                try:
                    self._output_length(steps, self.batch_input_shape)
                except ValueError as err:
                    raise ValueError(f"Invalid value for argument `{given[0]}`: {err}. "
                                     f"Received {given[0]}={given[1]}") from None
        self._finish_init()

    # -- shapes ----------------------------------------------------------------------------
    @property
    def _channels_axis(self) -> int:
        return -1 if self.data_format == "channels_last" else 1

    @property
    def _steps_axis(self) -> int:
        return 1 if self.data_format == "channels_last" else 2

    def _output_length(self, steps, shape) -> Optional[int]:
        out = _padding.conv_output_length(steps, self.kernel_size[0], self.strides[0],
                                          self.dilation_rate[0], self.padding)
        if out is not None and out <= 0:
            raise ValueError(f"Input of shape {tuple(shape)} is too short for layer "
                             f"{self.name!r} (kernel_size={self.kernel_size}, dilation_rate="
                             f"{self.dilation_rate}, padding={self.padding!r}): the output "
                             f"would have {out} steps")
        return out

    def compute_output_shape(self, input_shape) -> Tuple[Optional[int], ...]:
        """``(batch, steps, channels)`` -> ``(batch, new_steps, filters)`` (or channels_first);
        ``steps`` may be ``None``."""
        shape = tuple(input_shape)
        if len(shape) != 3:
            raise ValueError(f"Expected an input shape of rank 3, "
                             f"{self._layout()}. Received input_shape={shape}")
        steps = self._output_length(shape[self._steps_axis], shape)
        if self.data_format == "channels_last":
            return (shape[0], steps, self.filters)
        return (shape[0], self.filters, steps)

    def _layout(self) -> str:
        return ("(batch, steps, channels)" if self.data_format == "channels_last"
                else "(batch, channels, steps)")

    # -- building --------------------------------------------------------------------------
    def build(self, input_shape, device=None) -> None:
        if len(input_shape) != 3:
            raise ValueError(f"Layer {self.name!r} expects input of rank 3, {self._layout()}. "
                             f"Received input of shape {tuple(input_shape)}")
        channels = input_shape[self._channels_axis]
        if channels is None:
            raise ValueError(f"The channel dimension of the inputs of layer {self.name!r} "
                             f"should be defined. Received input_shape={tuple(input_shape)}")
        channels = check_count(channels, "input channels")
        self.input_channels = channels
        k, m = self.kernel_size[0], self.depth_multiplier
        self.add_weight("depthwise_kernel", (k, channels, m), self.depthwise_initializer,
                        self.depthwise_regularizer, self.depthwise_constraint, device)
        self.add_weight("pointwise_kernel", (1, channels * m, self.filters),
                        self.pointwise_initializer, self.pointwise_regularizer,
                        self.pointwise_constraint, device)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer,
                            self.bias_regularizer, self.bias_constraint, device)

    def _input_shape_from_weights(self, weights) -> Optional[Tuple]:
        if not weights or len(getattr(weights[0], "shape", ())) != 3:
            return None
        channels = int(weights[0].shape[1])
        return (None, None, channels) if self.data_format == "channels_last" \
            else (None, channels, None)

    def _check_input(self, shape) -> None:
        if len(shape) != 3:
            raise ValueError(f"Layer {self.name!r} expects input of rank 3, {self._layout()}, "
                             f"with {self.input_channels} channels. Received input of shape "
                             f"{shape}")
        if shape[self._channels_axis] != self.input_channels:
            expected = [None, None, None]
            expected[self._channels_axis] = self.input_channels
            raise ValueError(f"Layer {self.name!r} expects input of shape "
                             f"{tuple(expected)} {self._layout()}. Received input of shape "
                             f"{shape}")
        self._output_length(shape[self._steps_axis], shape)

    # -- computing -------------------------------------------------------------------------
    def forward(self, inputs) -> torch.Tensor:
        """``inputs``: ``(batch, steps, channels)`` (channels_last) or
        ``(batch, channels, steps)``; a tensor or numpy array."""
        x = self._prepare_input(inputs)
        y = _functional.separable_conv1d(
            x, self._weight("depthwise_kernel"), self._weight("pointwise_kernel"),
            self._weight("bias") if self.use_bias else None, strides=self.strides,
            padding=self.padding, dilation_rate=self.dilation_rate,
            data_format=self.data_format)
        y = self.activation(y)
        self._record_activity(y)
        return y

    # -- Keras protocol --------------------------------------------------------------------
    def get_config(self) -> Dict[str, Any]:
        config = self.base_config()
        config.update({
            "filters": self.filters, "kernel_size": self.kernel_size, "strides": self.strides,
            "padding": self.padding, "data_format": self.data_format,
            "dilation_rate": self.dilation_rate, "groups": 1,
            "activation": _activations.serialize(self.activation), "use_bias": self.use_bias,
            "bias_initializer": serialize(self.bias_initializer),
            "bias_regularizer": serialize(self.bias_regularizer),
            "activity_regularizer": serialize(self.activity_regularizer),
            "bias_constraint": serialize(self.bias_constraint),
            "depth_multiplier": self.depth_multiplier,
            "depthwise_initializer": serialize(self.depthwise_initializer),
            "pointwise_initializer": serialize(self.pointwise_initializer),
            "depthwise_regularizer": serialize(self.depthwise_regularizer),
            "pointwise_regularizer": serialize(self.pointwise_regularizer),
            "depthwise_constraint": serialize(self.depthwise_constraint),
            "pointwise_constraint": serialize(self.pointwise_constraint),
        })
        return config

    def extra_repr(self) -> str:
        parts = [f"{self.input_channels if self.built else '?'}", f"{self.filters}",
                 f"kernel_size={self.kernel_size}"]
        if self.strides != (1,):
            parts.append(f"strides={self.strides}")
        if self.padding != "valid":
            parts.append(f"padding={self.padding!r}")
        if self.dilation_rate != (1,):
            parts.append(f"dilation_rate={self.dilation_rate}")
        if self.depth_multiplier != 1:
            parts.append(f"depth_multiplier={self.depth_multiplier}")
        if self.data_format != "channels_last":
            parts.append(f"data_format={self.data_format!r}")
        act = _activations.serialize(self.activation)
        if act != "linear":
            parts.append(f"activation={act!r}")
        if not self.use_bias:
            parts.append("use_bias=False")
        if self.dtype_policy.name != "float32":
            parts.append(f"dtype={self.dtype_policy.name!r}")
        parts.append(f"name={self.name!r}")
        return ", ".join(parts)
