"""Depthwise convolutions: ``DepthwiseConv1D``, ``DepthwiseConv2D`` (R keras'
``layer_depthwise_conv_1d`` / ``layer_depthwise_conv_2d``).

``_DepthwiseConv`` is the rank-generic base that owns the arguments, their validation, the
depthwise kernel and bias, shapes and the Keras protocol; the separable layers
(:mod:`.separable`) extend it with a pointwise kernel, as tf-keras' classes do.
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
from .._registry import serialize
from .base import (Layer, check_bool, check_conv_geometry, check_count,
                   check_data_format, check_padding)


class _DepthwiseConv(Layer):
    """The depthwise convolution of rank ``RANK`` (weights ``depthwise_kernel``
    ``(*kernel_size, channels, depth_multiplier)`` and ``bias``); ``_SEPARABLE`` subclasses
    add ``filters`` and a pointwise kernel, ``_CAUSAL`` ones accept ``padding="causal"``."""

    _INPUT_CHECK_BY_SHAPE = True  # (Layer._prepare_input)

    RANK: int = 1
    _CAUSAL = False
    _SEPARABLE = False
    WEIGHT_NAMES = ("depthwise_kernel", "bias")

    def __init__(self, kernel_size, strides, padding, data_format, dilation_rate,
                 depth_multiplier, activation, use_bias, depthwise_initializer,
                 bias_initializer, depthwise_regularizer, bias_regularizer,
                 activity_regularizer, depthwise_constraint, bias_constraint, input_shape,
                 batch_input_shape, batch_size, dtype, name, trainable, weights, *,
                 filters=None, pointwise_initializer=None, pointwise_regularizer=None,
                 pointwise_constraint=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights, activity_regularizer=activity_regularizer)
        rank = self.RANK
        if self._SEPARABLE:
            self.filters = check_count(filters, "filters")
        # built from a Keras 3 file's config (under keras_flavour("keras3")): strides > 1
        # with dilation_rate > 1 computed, as Keras 3's torch and JAX backends do
        self._strided_dilation = _activations.current_flavour() == "keras3"
        self.kernel_size, self.strides, self.dilation_rate = check_conv_geometry(
            kernel_size, strides, dilation_rate, rank, self._strided_dilation)
        self.padding = check_padding(padding, _padding.PADDINGS if self._CAUSAL
                                     else ("valid", "same"))
        self.data_format = check_data_format(data_format)
        self.depth_multiplier = check_count(depth_multiplier, "depth_multiplier")
        self.activation = _activations.get(activation, "activation")
        self.use_bias = check_bool(use_bias, "use_bias")
        kinds = ("depthwise", "pointwise", "bias") if self._SEPARABLE \
            else ("depthwise", "bias")
        given = dict(depthwise=(depthwise_initializer, depthwise_regularizer,
                                depthwise_constraint),
                     pointwise=(pointwise_initializer, pointwise_regularizer,
                                pointwise_constraint),
                     bias=(bias_initializer, bias_regularizer, bias_constraint))
        for kind in kinds:
            arg = f"{kind}_initializer"
            value = _initializers.get(given[kind][0], arg)
            setattr(self, arg, value)
        for kind in kinds:
            arg = f"{kind}_initializer"
            if getattr(self, arg) is None:
                raise ValueError(f"Invalid value for argument `{arg}`. Expected an "
                                 f"initializer. Received {arg}=None")
        for kind in kinds:
            arg = f"{kind}_regularizer"
            setattr(self, arg, _regularizers.get(given[kind][1], arg))
        for kind in kinds:
            arg = f"{kind}_constraint"
            setattr(self, arg, _constraints.get(given[kind][2], arg))
        self.input_channels: Optional[int] = None
        if self.batch_input_shape is not None:
            self._check_build_shape()
        self._finish_init()

    def _check_build_shape(self) -> None:
        """``input_shape`` / ``batch_input_shape`` checked at construction."""
        self._check_shape_rank()
        self._check_shape_channels(self._output_spatial)

    # -- shapes ----------------------------------------------------------------------------
    @property
    def _channels_axis(self) -> int:
        return -1 if self.data_format == "channels_last" else 1

    def _spatial(self, shape) -> Tuple[Optional[int], ...]:
        return tuple(shape[1:-1] if self.data_format == "channels_last" else shape[2:])

    def _output_spatial(self, shape) -> Tuple[Optional[int], ...]:
        """Output spatial shape for an input ``shape`` (``None`` axes stay ``None``);
        ``ValueError`` if an axis would be empty (TensorFlow's CPU kernels return garbage
        or fail there)."""
        out = _padding.conv_output_shape(self._spatial(shape), self.kernel_size, self.strides,
                                         self.dilation_rate, self.padding)
        if any(n is not None and n <= 0 for n in out):
            what = (f"{out[0]} steps" if self.RANK == 1 else f"shape {out}")
            raise ValueError(f"Input of shape {tuple(shape)} is too short for layer "
                             f"{self.name!r} (kernel_size={self.kernel_size}, dilation_rate="
                             f"{self.dilation_rate}, padding={self.padding!r}): the output "
                             f"would have {what}")
        return out

    def _output_channels(self) -> Optional[int]:
        if self.input_channels is None:
            return None
        return self.input_channels * self.depth_multiplier

    def compute_output_shape(self, input_shape) -> Tuple[Optional[int], ...]:
        """``(batch, *spatial, channels)`` -> ``(batch, *new_spatial, out_channels)`` (or
        channels_first); spatial axes may be ``None``.  ``out_channels`` is
        ``channels * depth_multiplier`` (``filters`` for the separable layers)."""
        shape = tuple(input_shape)
        if len(shape) != self.RANK + 2:
            raise ValueError(f"Expected an input shape of rank {self.RANK + 2}, "
                             f"{self._layout()}. Received input_shape={shape}")
        spatial = self._output_spatial(shape)
        if self._SEPARABLE:
            channels = self.filters
        else:
            c = shape[self._channels_axis]
            channels = None if c is None else c * self.depth_multiplier
        if self.data_format == "channels_last":
            return (shape[0],) + spatial + (channels,)
        return (shape[0], channels) + spatial

    def _layout(self) -> str:
        return _functional._layout_nd(self.RANK, self.data_format == "channels_last")

    # -- building --------------------------------------------------------------------------
    def build(self, input_shape, device=None) -> None:
        channels = self._input_channels(input_shape, self.RANK + 2)
        self.input_channels = channels
        m = self.depth_multiplier
        self.add_weight("depthwise_kernel", self.kernel_size + (channels, m),
                        self.depthwise_initializer, self.depthwise_regularizer,
                        self.depthwise_constraint, device)
        if self._SEPARABLE:
            self.add_weight("pointwise_kernel", (1,) * self.RANK + (channels * m, self.filters),
                            self.pointwise_initializer, self.pointwise_regularizer,
                            self.pointwise_constraint, device)
        if self.use_bias:
            self.add_weight("bias", (self.filters if self._SEPARABLE else channels * m,),
                            self.bias_initializer, self.bias_regularizer,
                            self.bias_constraint, device)

    def _input_shape_from_weights(self, weights) -> Optional[Tuple]:
        if not weights or len(getattr(weights[0], "shape", ())) != self.RANK + 2:
            return None
        channels = int(weights[0].shape[self.RANK])
        spatial = (None,) * self.RANK
        return ((None,) + spatial + (channels,) if self.data_format == "channels_last"
                else (None, channels) + spatial)

    def _check_input(self, shape) -> None:
        if len(shape) != self.RANK + 2:
            raise ValueError(f"Layer {self.name!r} expects input of rank {self.RANK + 2}, "
                             f"{self._layout()}, with {self.input_channels} channels. "
                             f"Received input of shape {shape}")
        if shape[self._channels_axis] != self.input_channels:
            expected = [None] * (self.RANK + 2)
            expected[self._channels_axis] = self.input_channels
            raise ValueError(f"Layer {self.name!r} expects input of shape "
                             f"{tuple(expected)} {self._layout()}. Received input of shape "
                             f"{shape}")
        self._output_spatial(shape)

    # -- computing -------------------------------------------------------------------------
    def forward(self, inputs) -> torch.Tensor:
        """``inputs``: ``(batch, *spatial, channels)`` (channels_last) or
        ``(batch, channels, *spatial)``; a tensor or numpy array."""
        x = self._prepare_input(inputs)
        y = self._convolve(x)
        y = self.activation(y)
        self._record_activity(y)
        return y

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        return _functional.depthwise_conv(
            x, self._weight("depthwise_kernel"), self._weight("bias") if self.use_bias else None,
            strides=self.strides, padding=self.padding, dilation_rate=self.dilation_rate,
            data_format=self.data_format, strided_dilation=self._strided_dilation)

    def check_tf_keras_file(self) -> None:
        """For ``save_keras_model``'s .h5 writer: tf-keras refuses ``strides > 1`` with
        ``dilation_rate > 1`` (a Keras 3 file's layer computes them)."""
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"save_keras_model: layer {self.name!r} ({type(self).__name__}) "
                             f"has strides={self.strides} with dilation_rate="
                             f"{self.dilation_rate} (from a Keras 3 file), which tf-keras "
                             f"refuses; save as .keras")

    # -- Keras protocol --------------------------------------------------------------------
    def get_config(self) -> Dict[str, Any]:
        config = self.base_config()
        if self._SEPARABLE:
            config["filters"] = self.filters
        config.update({
            "kernel_size": self.kernel_size, "strides": self.strides,
            "padding": self.padding, "data_format": self.data_format,
            "dilation_rate": self.dilation_rate, "groups": 1,
            "activation": _activations.serialize(self.activation), "use_bias": self.use_bias,
            "bias_initializer": serialize(self.bias_initializer),
            "bias_regularizer": serialize(self.bias_regularizer),
            "activity_regularizer": serialize(self.activity_regularizer),
            "bias_constraint": serialize(self.bias_constraint),
            "depth_multiplier": self.depth_multiplier,
            "depthwise_initializer": serialize(self.depthwise_initializer),
        })
        if self._SEPARABLE:
            config["pointwise_initializer"] = serialize(self.pointwise_initializer)
        config["depthwise_regularizer"] = serialize(self.depthwise_regularizer)
        if self._SEPARABLE:
            config["pointwise_regularizer"] = serialize(self.pointwise_regularizer)
        config["depthwise_constraint"] = serialize(self.depthwise_constraint)
        if self._SEPARABLE:
            config["pointwise_constraint"] = serialize(self.pointwise_constraint)
        return config

    def extra_repr(self) -> str:
        parts = [f"{self.input_channels if self.built else '?'}"]
        if self._SEPARABLE:
            parts.append(f"{self.filters}")
        parts.append(f"kernel_size={self.kernel_size}")
        self._geometry_repr(parts)
        if self.depth_multiplier != 1:
            parts.append(f"depth_multiplier={self.depth_multiplier}")
        return self._repr_tail(parts)


_DOC = """Keras' depthwise {rank}D convolution: each input channel convolved with its own
    ``depth_multiplier`` kernels, then ``bias`` and ``activation``.

    Input: ``{last}`` for ``data_format="channels_last"`` (the default), ``{first}`` for
    ``"channels_first"``.  Output: the same layout with ``channels * depth_multiplier``
    channels, channel ``c * depth_multiplier + m`` from input channel ``c`` (TensorFlow's
    order); spatial lengths from :mod:`sepconv.padding` (TensorFlow's arithmetic:
    ``"same"`` pads the odd element after, per axis).

    Weights, in Keras' shapes and ``get_weights()`` order: ``depthwise_kernel``
    ``{kshape}``, ``bias`` ``(channels * depth_multiplier,)`` (absent when
    ``use_bias=False``).  Initializer fans are Keras' for that kernel shape.

    Arguments follow tf-keras 2.21 (what R keras 2 wraps) by name, order and default, then
    the common ``input_shape, batch_input_shape, batch_size, dtype, name, trainable,
    weights``.  As in tf-keras: ``padding`` is ``"valid"`` or ``"same"`` (``"causal"`` is
    refused), and ``strides > 1`` on any axis with ``dilation_rate > 1`` on any axis is
    refused (a layer built from a Keras 3 file's config computes them, as Keras 3 does on
    torch and JAX).  Where tf-keras is narrower, sepconv does what it should: {better}an input too
    short for the kernel raises ``ValueError`` (TensorFlow fails deep inside its kernel);
    ``depth_multiplier=0`` is refused (tf-keras builds an empty layer).  The layer protocol
    (dtype policies incl. ``mixed_*``, lazy build, regularizer ``losses`` with the activity
    penalty divided by the batch size, constraints after every optimizer step) is
    :class:`sepconv.SeparableConv1D`'s.
    """


class DepthwiseConv1D(_DepthwiseConv):
    RANK = 1

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, bias_constraint=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(kernel_size, strides, padding, data_format, dilation_rate,
                         depth_multiplier, activation, use_bias, depthwise_initializer,
                         bias_initializer, depthwise_regularizer, bias_regularizer,
                         activity_regularizer, depthwise_constraint, bias_constraint,
                         input_shape, batch_input_shape, batch_size, dtype, name, trainable,
                         weights)


DepthwiseConv1D.__doc__ = _DOC.format(
    rank=1, last="(batch, steps, channels)", first="(batch, channels, steps)",
    kshape="(kernel_size, channels, depth_multiplier)",
    better="``channels_first`` runs on CPU (TensorFlow's CPU depthwise kernel is NHWC only); ")


class DepthwiseConv2D(_DepthwiseConv):
    RANK = 2

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1,
                 data_format=None, dilation_rate=(1, 1), activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, bias_constraint=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(kernel_size, strides, padding, data_format, dilation_rate,
                         depth_multiplier, activation, use_bias, depthwise_initializer,
                         bias_initializer, depthwise_regularizer, bias_regularizer,
                         activity_regularizer, depthwise_constraint, bias_constraint,
                         input_shape, batch_input_shape, batch_size, dtype, name, trainable,
                         weights)


DepthwiseConv2D.__doc__ = _DOC.format(
    rank=2, last="(batch, rows, cols, channels)", first="(batch, channels, rows, cols)",
    kshape="(kernel_rows, kernel_cols, channels, depth_multiplier)",
    better="unequal strides such as ``strides=(1, 2)`` work (TensorFlow's CPU depthwise "
           "kernel refuses them at call); ")
