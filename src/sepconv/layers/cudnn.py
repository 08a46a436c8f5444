"""tf-keras' ``CuDNNLSTM`` and ``CuDNNGRU`` (R: ``layer_cudnn_lstm``, ``layer_cudnn_gru``):
the recurrent layers many models of the Keras 2 years were trained with on NVIDIA GPUs.

tf-keras runs them on cuDNN only, so their model files do not even run on a CPU there.
Here they are the LSTM / GRU recurrences they compute, on any device, with tf-keras' own
weights and config:

- Kernels are kept as tf-keras stores them, which is cuDNN's layout: each gate's block of
  ``kernel`` ``(features, units)`` holds, read in row-major order, the ``(units,
  features)`` matrix cuDNN multiplies by (so Keras' kernel is ``block.reshape(units,
  features).T``), and each gate's block of ``recurrent_kernel`` is Keras' transposed
  (tf-keras' ``_convert_rnn_weights`` converts the same way).
- ``CuDNNLSTM``: an ``LSTM`` (tanh, sigmoid gates) whose ``bias`` ``(8 * units,)`` holds
  cuDNN's input biases then its recurrent biases (gates i, f, c, o each); the step uses
  their sum.  ``unit_forget_bias`` sets the forget gate of the recurrent half to ones, as
  tf-keras initialises it.
- ``CuDNNGRU``: a ``GRU`` with ``reset_after=True`` (the reset gate after the recurrent
  product, as cuDNN computes it) whose ``bias`` ``(6 * units,)`` is its input then its
  recurrent biases (gates z, r, h: tf-keras stores them in Keras' order).

Both take no activation, dropout or masks (tf-keras raises ``"Masking is not supported
for CuDNN RNNs."``; so does sepconv).  They stream like LSTM / GRU.  Keras 3 has neither:
models holding them are written back to ``.h5`` only.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import torch

from .._registry import serialize
from .conv_lstm import forget_bias_ones
from .recurrent import GRU, LSTM


class _CuDNN:
    """What the two layers share: the fixed arguments, no masks, tf-keras' config."""

    TF_KERAS_ONLY = True  # Keras 3 has no such classes: .h5 files only

    supports_masking = False

    def forward(self, inputs, mask=None, training=None, initial_state=None):
        """Keras' call arguments (``mask`` must be ``None``, as in tf-keras)."""
        if isinstance(mask, (list, tuple)):
            mask = mask[0] if mask else None
        if mask is not None:
            raise ValueError("Masking is not supported for CuDNN RNNs.")
        return super().forward(inputs, training=training, initial_state=initial_state)

    def compute_mask(self, inputs, mask=None):
        return None

    def _keras_kernels(self, kernel, recurrent):
        """``(kernel, recurrent_kernel)`` in Keras' layout from cuDNN's (see above)."""
        u = self.units
        return (torch.cat([k.reshape(u, -1).T for k in kernel.split(u, dim=1)], dim=1),
                torch.cat([r.T for r in recurrent.split(u, dim=1)], dim=1))

    def h5_weight_names(self):
        """``kernel``, ``recurrent_kernel``, ``bias``: tf-keras keeps them in the layer
        itself (no cell) in ``.h5`` files."""
        return list(self._weight_order)

    def _cudnn_config(self, extra: Dict[str, Any]) -> Dict[str, Any]:
        config = self.base_config()
        config.update({"return_sequences": self.return_sequences,
                       "return_state": self.return_state, "go_backwards": self.go_backwards,
                       "stateful": self.stateful, "time_major": self.time_major,
                       "units": self.units,
                       "kernel_initializer": serialize(self.kernel_initializer),
                       "recurrent_initializer": serialize(self.recurrent_initializer),
                       "bias_initializer": serialize(self.bias_initializer)})
        config.update(extra)
        for key in ("kernel_regularizer", "recurrent_regularizer", "bias_regularizer",
                    "activity_regularizer", "kernel_constraint", "recurrent_constraint",
                    "bias_constraint"):
            config[key] = serialize(getattr(self, key))
        return config


class CuDNNLSTM(_CuDNN, LSTM):
    """tf-keras' ``CuDNNLSTM`` (R: ``layer_cudnn_lstm``) on any device; see
    :mod:`sepconv.layers.cudnn`.  Weights ``kernel`` ``(features, 4 * units)``,
    ``recurrent_kernel`` ``(units, 4 * units)``, ``bias`` ``(8 * units,)``."""

    def __init__(self, units, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, return_sequences=False,
                 return_state=False, go_backwards=False, stateful=False, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(
            units, kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            unit_forget_bias=unit_forget_bias, kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint,
            return_sequences=return_sequences, return_state=return_state,
            go_backwards=go_backwards, stateful=stateful, input_shape=input_shape,
            batch_input_shape=batch_input_shape, batch_size=batch_size, dtype=dtype,
            name=name, trainable=trainable, weights=weights)

    def _bias_shape(self) -> Tuple[int, ...]:
        return (8 * self.units,)

    def _bias_initializer(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        return forget_bias_ones(self.bias_initializer, self.units, 5 * self.units)

    def _weights(self):
        kernel, recurrent, bias = super()._weights()
        n = 4 * self.units
        return (*self._keras_kernels(kernel, recurrent), bias[:n] + bias[n:])

    def get_config(self) -> Dict[str, Any]:
        return self._cudnn_config({"unit_forget_bias": self.unit_forget_bias})


class CuDNNGRU(_CuDNN, GRU):
    """tf-keras' ``CuDNNGRU`` (R: ``layer_cudnn_gru``) on any device; see
    :mod:`sepconv.layers.cudnn`.  Weights ``kernel`` ``(features, 3 * units)``,
    ``recurrent_kernel`` ``(units, 3 * units)``, ``bias`` ``(6 * units,)``."""

    def __init__(self, units, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(
            units, kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer, activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint, recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint, return_sequences=return_sequences,
            return_state=return_state, go_backwards=go_backwards, stateful=stateful,
            reset_after=True, input_shape=input_shape, batch_input_shape=batch_input_shape,
            batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
            weights=weights)

    def _bias_shape(self) -> Tuple[int, ...]:
        return (6 * self.units,)

    def _weights(self):
        kernel, recurrent, bias = super()._weights()
        return (*self._keras_kernels(kernel, recurrent), bias.reshape(2, 3 * self.units))

    def get_config(self) -> Dict[str, Any]:
        return self._cudnn_config({})
