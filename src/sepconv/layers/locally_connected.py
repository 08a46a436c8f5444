"""tf-keras 2.21's locally connected layers: ``LocallyConnected1D``, ``LocallyConnected2D``
(R keras: ``layer_locally_connected_1d`` / ``_2d``; Keras 3 has neither).

A locally connected layer is a convolution whose weights are not shared: each output
position has its own kernel.  tf-keras stores the weights in one of three layouts chosen
by ``implementation`` (the numbers are the same; a model file holds the layout it was
saved with, so sepconv keeps all three, as :func:`sepconv.functional.locally_connected`
describes):

- ``1``: ``kernel`` ``(prod(out), prod(kernel_size) * channels, filters)``, ``padding``
  ``"valid"`` only;
- ``2``: ``kernel`` dense over every (input, output) pair, ``(*spatial, channels, *out,
  filters)`` (channels_first: ``(channels, *spatial, filters, *out)``), the pairs that are
  not connected masked out (their entries never matter and get no gradient);
- ``3``: ``kernel`` ``(nnz,)``, the connected pairs' weights only.

``bias`` is ``(*out, filters)`` in every layout (channels_first: added reshaped, not
transposed, to ``(filters, *out)``, as tf-keras does).  ``padding="same"`` is tf-keras'
own for these layers: output ``o`` reads inputs ``o * s - k // 2 .. o * s + k - k // 2 -
1`` (clipped at the edges; TensorFlow's convolution puts the odd pad on the other side
for even ``k``), ``ceil(L / s)`` outputs.  The weights depend on the input's spatial
size, so the layer is built for one input shape (every axis but the batch defined).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from .. import activations as _activations
from .. import functional as _functional
from .base import Layer, check_bool, check_count, check_data_format, check_padding, \
    check_tuple
from .conv import _Conv
from .core import init_kernel_objects


class _LocallyConnected(Layer):
    """The shared part of ``LocallyConnected1D`` / ``2D`` (``RANK`` spatial axes)."""

    TF_KERAS_ONLY = True  # Keras 3 has no such classes: .h5 files only

    RANK = 1
    WEIGHT_NAMES = ("kernel", "bias")

    def __init__(self, filters, kernel_size, strides, padding, data_format, activation,
                 use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                 bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint,
                 implementation, input_shape, batch_input_shape, batch_size, dtype, name,
                 trainable, weights):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights, activity_regularizer=activity_regularizer)
        rank = self.RANK
        self.filters = check_count(filters, "filters")
        self.kernel_size = check_tuple(kernel_size, "kernel_size", rank)
        self.strides = check_tuple(strides, "strides", rank)
        self.padding = check_padding(padding, ("valid", "same"))
        self.data_format = check_data_format(data_format)
        self.implementation = check_count(implementation, "implementation")
        if self.implementation not in (1, 2, 3):
            raise ValueError(f"Invalid value for argument `implementation`. Expected 1, 2 or "
                             f"3. Received implementation={implementation!r}")
        if self.implementation == 1 and self.padding != "valid":
            raise ValueError(f"Invalid value for argument `padding`: {type(self).__name__} "
                             f"supports only 'valid' with implementation=1 (use 2 or 3 for "
                             f"'same'). Received padding={padding!r}")
        self.activation = _activations.get(activation, "activation")
        self.use_bias = check_bool(use_bias, "use_bias")
        init_kernel_objects(self, locals())
        self.input_spatial: Optional[Tuple[int, ...]] = None
        self.input_channels: Optional[int] = None
        if self.batch_input_shape is not None:
            self._check_shape_rank()
            self._check_shape_output(self.compute_output_shape)
        self._finish_init()

    # -- shapes: the convolutions' layout ---------------------------------------------------
    _channels_axis = _Conv._channels_axis
    _spatial = _Conv._spatial
    _layout = _Conv._layout

    def _output_spatial(self, spatial, shape) -> Tuple[Optional[int], ...]:
        out = tuple(None if L is None else _functional.locally_connected_output_shape(
            (L,), (k,), (s,), self.padding)[0]
            for L, k, s in zip(spatial, self.kernel_size, self.strides))
        if any(n is not None and n <= 0 for n in out):
            raise ValueError(f"Input of shape {tuple(shape)} is too small for layer "
                             f"{self.name!r} (kernel_size={self.kernel_size}, strides="
                             f"{self.strides}, padding={self.padding!r}): the output would "
                             f"have spatial shape {out}")
        return out

    def compute_output_shape(self, input_shape) -> Tuple[Optional[int], ...]:
        shape = tuple(input_shape)
        if len(shape) != self.RANK + 2:
            raise ValueError(f"Expected an input shape of rank {self.RANK + 2}, "
                             f"{self._layout()}. Received input_shape={shape}")
        out = self._output_spatial(self._spatial(shape), shape)
        if self.data_format == "channels_last":
            return (shape[0], *out, self.filters)
        return (shape[0], self.filters, *out)

    # -- building --------------------------------------------------------------------------
    def build(self, input_shape, device=None) -> None:
        channels = self._input_channels(input_shape, self.RANK + 2)
        spatial = self._spatial(input_shape)
        if any(L is None for L in spatial):
            raise ValueError(f"The spatial dimensions of the inputs to layer {self.name!r} "
                             f"should be fully defined (its weights depend on them). "
                             f"Received input_shape={tuple(input_shape)}")
        spatial = tuple(int(L) for L in spatial)
        out = self._output_spatial(spatial, input_shape)
        self.input_spatial, self.input_channels = spatial, channels
        k = int(np.prod(self.kernel_size))
        if self.implementation == 1:
            shape = (int(np.prod(out)), k * channels, self.filters)
        else:
            if self.implementation == 2:
                shape = ((*spatial, channels, *out, self.filters)
                         if self.data_format == "channels_last"
                         else (channels, *spatial, self.filters, *out))
            else:
                shape = (int(_functional.locally_connected_mask(
                    spatial, channels, self.filters, self.kernel_size, self.strides,
                    self.padding, self.data_format).sum()),)
            # where each window's weights sit in the kernel: derived from the geometry,
            # so not in the state_dict
            index = _functional.locally_connected_window_index(
                spatial, channels, self.filters, self.kernel_size, self.strides,
                self.padding, self.data_format, self.implementation)
            self.register_buffer("kernel_index", index.to(device), persistent=False)
        self.add_weight("kernel", shape, self.kernel_initializer, self.kernel_regularizer,
                        self.kernel_constraint, device)
        if self.use_bias:
            self.add_weight("bias", (*out, self.filters), self.bias_initializer,
                            self.bias_regularizer, self.bias_constraint, device)

    def _input_shape_from_weights(self, weights) -> Optional[Tuple]:
        """Only ``implementation=2``'s kernel tells the input's size (1 and 3 need
        ``input_shape``)."""
        if self.implementation != 2 or not weights or \
                len(getattr(weights[0], "shape", ())) != 2 * self.RANK + 2:
            return None
        # (*spatial, channels, ...) or (channels, *spatial, ...): the input's own order
        return (None,) + tuple(int(n) for n in weights[0].shape[:self.RANK + 1])

    def _check_input(self, shape) -> None:
        expected = [None] * (self.RANK + 2)
        expected[self._channels_axis] = self.input_channels
        first = 1 if self.data_format == "channels_last" else 2
        expected[first:first + self.RANK] = self.input_spatial
        if len(shape) != self.RANK + 2 or any(e is not None and e != s
                                              for e, s in zip(expected, shape)):
            raise ValueError(f"Layer {self.name!r} expects input of shape {tuple(expected)} "
                             f"{self._layout()} (its weights are per position). Received "
                             f"input of shape {shape}")

    # -- computing -------------------------------------------------------------------------
    def forward(self, inputs) -> torch.Tensor:
        """``inputs``: ``(batch, *spatial, channels)`` (channels_last) or ``(batch,
        channels, *spatial)``, of the spatial size the layer was built for."""
        x = self._prepare_input(inputs)
        y = _functional.locally_connected(
            x, self._weight("kernel"), self._weight("bias") if self.use_bias else None,
            self.kernel_size, self.strides, self.padding, self.data_format,
            self.implementation, filters=self.filters,
            index=getattr(self, "kernel_index", None))
        y = self.activation(y)
        self._record_activity(y)
        return y

    # -- Keras protocol --------------------------------------------------------------------
    def get_config(self) -> Dict[str, Any]:
        config = self.base_config()
        config.update({
            "filters": self.filters, "kernel_size": self.kernel_size, "strides": self.strides,
            "padding": self.padding, "data_format": self.data_format,
            "activation": _activations.serialize(self.activation), "use_bias": self.use_bias,
            **self.objects_config(), "implementation": self.implementation})
        return config

    def extra_repr(self) -> str:
        parts = [f"{self.input_channels if self.built else '?'}", f"{self.filters}",
                 f"kernel_size={self.kernel_size}"]
        if self.strides != (1,) * self.RANK:
            parts.append(f"strides={self.strides}")
        if self.padding != "valid":
            parts.append(f"padding={self.padding!r}")
        if self.implementation != 1:
            parts.append(f"implementation={self.implementation}")
        return self._repr_tail(parts)


_DOC = """
    Arguments are tf-keras 2.21's (what R keras wraps), names, order and defaults, then
    the Keras 2 base-layer arguments ``input_shape, batch_input_shape, batch_size, dtype,
    name, trainable, weights``.  ``implementation`` 1, 2 or 3 picks tf-keras' weight
    layout (see :mod:`sepconv.layers.locally_connected`); 1 takes ``padding="valid"``
    only.  Weights, in Keras' order: ``kernel`` (the layout's shape) and ``bias`` ``(*out,
    filters)`` (absent when ``use_bias=False``).  They are created from ``input_shape`` /
    ``batch_input_shape`` at construction, or at the first call, for that input size.
    The protocol (regularizers, activity penalty divided by the batch size, constraints
    after every optimizer step, dtype policies, get/set_weights, get_config/from_config)
    is the convolutions'.
"""


class LocallyConnected1D(_LocallyConnected):
    """tf-keras' ``LocallyConnected1D`` (R: ``layer_locally_connected_1d``): a 1D
    convolution with a kernel per output step, ``(batch, steps, channels)`` ->
    ``(batch, new_steps, filters)`` (channels_first: channels before the steps).
    """ + _DOC

    RANK = 1

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 implementation=1, input_shape=None, batch_input_shape=None, batch_size=None,
                 dtype=None, name=None, trainable=None, weights=None):
        super().__init__(filters, kernel_size, strides, padding, data_format, activation,
                         use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                         bias_regularizer, activity_regularizer, kernel_constraint,
                         bias_constraint, implementation, input_shape, batch_input_shape,
                         batch_size, dtype, name, trainable, weights)


class LocallyConnected2D(_LocallyConnected):
    """tf-keras' ``LocallyConnected2D`` (R: ``layer_locally_connected_2d``): a 2D
    convolution with a kernel per output pixel, ``(batch, rows, cols, channels)`` ->
    ``(batch, new_rows, new_cols, filters)`` (or channels_first).
    """ + _DOC

    RANK = 2

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 data_format=None, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, implementation=1,
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        super().__init__(filters, kernel_size, strides, padding, data_format, activation,
                         use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                         bias_regularizer, activity_regularizer, kernel_constraint,
                         bias_constraint, implementation, input_shape, batch_input_shape,
                         batch_size, dtype, name, trainable, weights)
