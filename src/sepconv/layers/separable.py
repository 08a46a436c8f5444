"""Separable convolutions: ``SeparableConv1D``, ``SeparableConv2D`` (R keras'
``layer_separable_conv_1d`` / ``layer_separable_conv_2d``).

``_SeparableConv`` extends the depthwise base (:class:`.depthwise._DepthwiseConv`, which owns
the arguments, validation, the depthwise kernel, shapes and the Keras protocol) with
``filters`` and the pointwise kernel.
"""

from __future__ import annotations

import torch

from .. import functional as _functional
from .depthwise import _DepthwiseConv


class _SeparableConv(_DepthwiseConv):
    """A depthwise convolution of rank ``RANK`` then a pointwise (1x1) one: weights
    ``depthwise_kernel``, ``pointwise_kernel`` ``(*[1] * RANK, channels * M, filters)``,
    ``bias`` ``(filters,)``."""

    _SEPARABLE = True
    WEIGHT_NAMES = ("depthwise_kernel", "pointwise_kernel", "bias")

    def __init__(self, filters, kernel_size, strides, padding, data_format, dilation_rate,
                 depth_multiplier, activation, use_bias, depthwise_initializer,
                 pointwise_initializer, bias_initializer, depthwise_regularizer,
                 pointwise_regularizer, bias_regularizer, activity_regularizer,
                 depthwise_constraint, pointwise_constraint, bias_constraint, input_shape,
                 batch_input_shape, batch_size, dtype, name, trainable, weights):
        super().__init__(kernel_size, strides, padding, data_format, dilation_rate,
                         depth_multiplier, activation, use_bias, depthwise_initializer,
                         bias_initializer, depthwise_regularizer, bias_regularizer,
                         activity_regularizer, depthwise_constraint, bias_constraint,
                         input_shape, batch_input_shape, batch_size, dtype, name, trainable,
                         weights, filters=filters, pointwise_initializer=pointwise_initializer,
                         pointwise_regularizer=pointwise_regularizer,
                         pointwise_constraint=pointwise_constraint)


class SeparableConv1D(_SeparableConv):
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
    (``layer.losses``) divided by the batch size; ``strides > 1`` with ``dilation_rate > 1``
    is refused (a layer built from a Keras 3 file's config computes it, as Keras 3 does on
    torch and JAX).  ``dtype`` takes float16, bfloat16,
    float32, float64 (names or torch dtypes) and Keras' ``mixed_float16`` /
    ``mixed_bfloat16`` (float32 weights, half-precision compute).  Inputs of another dtype,
    numpy arrays included, are cast to the compute dtype.

    Weights are created from ``input_shape`` / ``batch_input_shape`` at construction, or
    at the first call (then ``weights`` is applied there).  Create the optimizer after the
    weights exist.  Constraints are applied after every ``optimizer.step()`` that updates
    these weights.
    """

    RANK = 1
    _CAUSAL = True

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None,
                 pointwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, pointwise_constraint=None, bias_constraint=None,
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate,
                         depth_multiplier, activation, use_bias, depthwise_initializer,
                         pointwise_initializer, bias_initializer, depthwise_regularizer,
                         pointwise_regularizer, bias_regularizer, activity_regularizer,
                         depthwise_constraint, pointwise_constraint, bias_constraint,
                         input_shape, batch_input_shape, batch_size, dtype, name, trainable,
                         weights)

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        return _functional.separable_conv1d(
            x, self._weight("depthwise_kernel"), self._weight("pointwise_kernel"),
            self._weight("bias") if self.use_bias else None, strides=self.strides,
            padding=self.padding, dilation_rate=self.dilation_rate,
            data_format=self.data_format, strided_dilation=self._strided_dilation)


class SeparableConv2D(_SeparableConv):
    """Keras' separable 2D convolution: a depthwise 2D convolution, then a 1x1 convolution.

    Each input channel is convolved with ``depth_multiplier`` kernels of shape
    ``kernel_size``; the ``channels * depth_multiplier`` results (channel ``c * M + m`` from
    input channel ``c``, TensorFlow's order) are mixed into ``filters`` outputs by a
    pointwise kernel, then ``bias`` and ``activation`` are applied.

    Input: ``(batch, rows, cols, channels)`` for ``data_format="channels_last"`` (the
    default), ``(batch, channels, rows, cols)`` for ``"channels_first"``.  Output:
    ``(batch, new_rows, new_cols, filters)`` or ``(batch, filters, new_rows, new_cols)``,
    lengths from :mod:`sepconv.padding` (TensorFlow's arithmetic: ``"same"`` pads the odd
    element after, per axis).

    Weights, in Keras' shapes and ``get_weights()`` order: ``depthwise_kernel``
    ``(kernel_rows, kernel_cols, channels, depth_multiplier)``, ``pointwise_kernel``
    ``(1, 1, channels * depth_multiplier, filters)``, ``bias`` ``(filters,)`` (absent when
    ``use_bias=False``).  Initializer fans are Keras' for those shapes.

    Arguments follow tf-keras 2.21 (what R keras 2 wraps) by name, order and default, then
    the common ``input_shape, batch_input_shape, batch_size, dtype, name, trainable,
    weights``.  As in tf-keras, ``padding`` is ``"valid"`` or ``"same"`` (``"causal"`` is
    refused) and ``strides > 1`` on any axis with ``dilation_rate > 1`` on any axis is
    refused (a layer built from a Keras 3 file's config computes them, as Keras 3 does on
    torch and JAX).  Where tf-keras is narrower, sepconv does what it should: unequal strides
    such as ``strides=(1, 2)`` work and ``channels_first`` runs on CPU (TensorFlow's CPU
    depthwise kernel refuses both at call); an input too short for the kernel raises
    ``ValueError``.  The layer protocol is :class:`SeparableConv1D`'s.
    """

    RANK = 2

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 data_format=None, dilation_rate=(1, 1), depth_multiplier=1, activation=None,
                 use_bias=True, depthwise_initializer="glorot_uniform",
                 pointwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, pointwise_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, depthwise_constraint=None,
                 pointwise_constraint=None, bias_constraint=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate,
                         depth_multiplier, activation, use_bias, depthwise_initializer,
                         pointwise_initializer, bias_initializer, depthwise_regularizer,
                         pointwise_regularizer, bias_regularizer, activity_regularizer,
                         depthwise_constraint, pointwise_constraint, bias_constraint,
                         input_shape, batch_input_shape, batch_size, dtype, name, trainable,
                         weights)

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        return _functional.separable_conv2d(
            x, self._weight("depthwise_kernel"), self._weight("pointwise_kernel"),
            self._weight("bias") if self.use_bias else None, strides=self.strides,
            padding=self.padding, dilation_rate=self.dilation_rate,
            data_format=self.data_format, strided_dilation=self._strided_dilation)
