"""Transposed convolutions: ``Conv1DTranspose``, ``Conv2DTranspose``, ``Conv3DTranspose``
(R: ``layer_conv_1d_transpose`` ... ``_3d_transpose``), on the base of ``conv.py``."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch

from .. import functional as _functional
from .. import padding as _padding
from .base import check_count
from .conv import _Conv


class _ConvTranspose(_Conv):
    """Keras' N-d transposed convolution; see ``Conv2DTranspose`` for the contract."""

    TRANSPOSE = True

    def __init__(self, filters, kernel_size, strides, padding, output_padding, data_format,
                 dilation_rate, activation, use_bias, kernel_initializer, bias_initializer,
                 kernel_regularizer, bias_regularizer, activity_regularizer,
                 kernel_constraint, bias_constraint, input_shape, batch_input_shape,
                 batch_size, dtype, name, trainable, weights):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate,
                         1, activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, activity_regularizer,
                         kernel_constraint, bias_constraint, input_shape, batch_input_shape,
                         batch_size, dtype, name, trainable, weights,
                         output_padding=output_padding)

    def _check_output_padding(self, output_padding) -> Optional[Tuple[int, ...]]:
        if output_padding is None:
            values = None
        elif isinstance(output_padding, (tuple, list)):
            if len(output_padding) != self.RANK:
                raise ValueError(f"Invalid value for argument `output_padding`. Expected None, "
                                 f"an int or a tuple of {self.RANK} ints. "
                                 f"Received output_padding={output_padding!r}")
            values = tuple(check_count(v, "output_padding", minimum=0) for v in output_padding)
        else:
            values = (check_count(output_padding, "output_padding", minimum=0),) * self.RANK
        if values is not None and any(p >= s for p, s in zip(values, self.strides)):
            raise ValueError("Invalid value for argument `output_padding`. Strides must be "
                             f"greater than output padding. Received strides={self.strides}, "
                             f"output_padding={values}")
        # TensorFlow computes the layer as the gradient of the convolution from the output
        # back to the input; with "same", an even kernel span and output_padding 0 the
        # output is one step too short for that (on every input length): refuse it here.
        problem = _padding.deconv_mismatch((4,) * self.RANK, self.kernel_size, self.strides,
                                           self.dilation_rate, self.padding, values)
        if problem is not None:
            raise ValueError(f"Invalid value for argument `output_padding`: with padding="
                             f"{self.padding!r}, kernel_size={self.kernel_size}, strides="
                             f"{self.strides} and dilation_rate={self.dilation_rate}, "
                             f"output_padding={values} gives outputs that do not convolve "
                             f"back to the input length ({problem}); TensorFlow fails on "
                             f"them. Use output_padding=None, or 1 on those axes")
        return values

    def _output_spatial(self, spatial, shape) -> Tuple[Optional[int], ...]:
        problem = _padding.deconv_mismatch(spatial, self.kernel_size, self.strides,
                                           self.dilation_rate, self.padding,
                                           self.output_padding)
        if problem is not None:
            raise ValueError(f"Input of shape {tuple(shape)} does not fit layer "
                             f"{self.name!r}: {problem}")
        return _padding.deconv_output_shape(spatial, self.kernel_size, self.strides,
                                            self.dilation_rate, self.padding,
                                            self.output_padding)

    def _kernel_shape(self, channels: int) -> Tuple[int, ...]:
        return (*self.kernel_size, self.filters, channels)

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        return _functional.conv_transpose(
            x, self._weight("kernel"), self._weight("bias") if self.use_bias else None,
            strides=self.strides, padding=self.padding, output_padding=self.output_padding,
            dilation_rate=self.dilation_rate, data_format=self.data_format)

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config["output_padding"] = self.output_padding
        return config


_COMMON_DOC = """
    The output length per axis is tf-keras' (:func:`sepconv.padding.deconv_output_length`):
    with ``output_padding=None``, ``n * s + max(span - s, 0)`` for ``"valid"`` and ``n * s``
    for ``"same"``; with it, ``(n - 1) * s + span - 2 * pad + output_padding`` (``pad =
    span // 2`` for ``"same"``), ``span = (kernel_size - 1) * dilation_rate + 1``.  The
    values are TensorFlow's: the gradient of the convolution from that output back to the
    input (``"same"`` puts the odd padding element after).  ``padding`` is ``"valid"`` or
    ``"same"``; ``output_padding`` (None, an int or one per axis) must be smaller than the
    stride, and an ``output_padding`` with which the output would not convolve back to the
    input (``"same"``, even kernel span, ``output_padding=0``: TensorFlow fails at call) is
    refused at construction.  ``strides > 1`` with ``dilation_rate > 1`` is refused as in
    tf-keras.

    ``data_format`` ``"channels_last"`` (the default) takes ``(batch, {axes}, channels)``,
    ``"channels_first"`` ``(batch, channels, {axes})``.  Weights, in Keras' shapes and
    ``get_weights()`` order: ``kernel`` ``(*kernel_size, filters, in_channels)`` (Keras'
    initializer fans are those of this shape) and ``bias`` ``(filters,)``.  Arguments are
    tf-keras 2.21's, names, order and defaults, then ``input_shape, batch_input_shape,
    batch_size, dtype, name, trainable, weights``; the layer protocol is ``Conv1D``'s.
"""


class Conv1DTranspose(_ConvTranspose):
    """Keras' 1D transposed convolution (R: ``layer_conv_1d_transpose``).

    Beyond tf-keras: ``dilation_rate > 1`` works (TensorFlow's CPU kernels refuse it at
    call); ``padding="causal"``, which tf-keras accepts at construction and fails on at
    call, is refused at construction.
    """ + _COMMON_DOC.format(axes="steps")

    RANK = 1

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(filters, kernel_size, strides, padding, output_padding, data_format,
                         dilation_rate, activation, use_bias, kernel_initializer,
                         bias_initializer, kernel_regularizer, bias_regularizer,
                         activity_regularizer, kernel_constraint, bias_constraint,
                         input_shape, batch_input_shape, batch_size, dtype, name, trainable,
                         weights)


class Conv2DTranspose(_ConvTranspose):
    """Keras' 2D transposed convolution (R: ``layer_conv_2d_transpose``).

    Beyond tf-keras: unequal dilations (``dilation_rate=(1, 2)``) work; tf-keras refuses
    them at call.
    """ + _COMMON_DOC.format(axes="rows, cols")

    RANK = 2

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 output_padding=None, data_format=None, dilation_rate=(1, 1), activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(filters, kernel_size, strides, padding, output_padding, data_format,
                         dilation_rate, activation, use_bias, kernel_initializer,
                         bias_initializer, kernel_regularizer, bias_regularizer,
                         activity_regularizer, kernel_constraint, bias_constraint,
                         input_shape, batch_input_shape, batch_size, dtype, name, trainable,
                         weights)


class Conv3DTranspose(_ConvTranspose):
    """Keras' 3D transposed convolution (R: ``layer_conv_3d_transpose``).

    Beyond tf-keras: ``dilation_rate`` is honoured.  tf-keras 2.21 silently ignores it
    (computes undilated) and drops it from its config, so a tf-keras config or model file
    loads here as undilated, which is what tf-keras computed; this layer's config keeps
    ``dilation_rate`` (as Keras 3's does).
    """ + _COMMON_DOC.format(axes="depth, rows, cols")

    RANK = 3

    def __init__(self, filters, kernel_size, strides=(1, 1, 1), padding="valid",
                 output_padding=None, data_format=None, dilation_rate=(1, 1, 1),
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        super().__init__(filters, kernel_size, strides, padding, output_padding, data_format,
                         dilation_rate, activation, use_bias, kernel_initializer,
                         bias_initializer, kernel_regularizer, bias_regularizer,
                         activity_regularizer, kernel_constraint, bias_constraint,
                         input_shape, batch_input_shape, batch_size, dtype, name, trainable,
                         weights)
