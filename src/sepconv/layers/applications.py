"""The Keras Applications' own layers: classes that ``tf_keras.applications`` (R keras'
``application_*()``) and ``keras.applications`` define inside their model files, not in
``keras.layers``, and write into every saved model of those families.

- ``CustomScaleLayer`` (InceptionResNetV2): ``inputs[0] + inputs[1] * scale``.  tf-keras
  registers it as ``"Custom>CustomScaleLayer"``, the name its ``.h5`` files carry; the
  model-file loader maps that name here.
- ``LayerScale`` (ConvNeXt): ``x * gamma``, one learned ``gamma`` of ``projection_dim``
  values (initialised to ``init_values``) along the last axis.
- ``StochasticDepth`` (ConvNeXt with ``drop_path_rate`` > 0): in training, each sample is
  kept with probability ``1 - drop_path_rate`` and scaled by ``1 / (1 - drop_path_rate)``,
  else zeroed; the identity in ``eval()``.

Their signatures, configs and weights are tf-keras 2.21's (Keras 3.15's are the same).  R
keras has no ``layer_*`` function for them (they are not in ``keras.layers``).
"""

from __future__ import annotations

from typing import Any, Dict

import torch

from .. import functional as _functional
from .. import initializers as _initializers
from .base import Layer, check_count
from .core import _Weightless, check_number


class CustomScaleLayer(_Weightless):
    """InceptionResNetV2's residual sum ``inputs[0] + inputs[1] * scale`` (tf-keras'
    ``keras.applications.inception_resnet_v2.CustomScaleLayer``).  ``inputs``: a list of
    two tensors of broadcastable shapes (TensorFlow's broadcasting); ``scale`` a number
    (tf-keras takes anything; sepconv refuses what is not a number, naming ``scale``)."""

    #: tf-keras' registered name, written by its ``.h5`` files; Keras 3's module.
    TF_KERAS_REGISTERED_NAME = "Custom>CustomScaleLayer"
    KERAS3_MODULE = "keras.src.applications.inception_resnet_v2"

    def __init__(self, scale, input_shape=None, batch_input_shape=None, batch_size=None,
                 dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self.scale = check_number(scale, "scale")
        self.built = True  # nothing to build; input_shape only documents the inputs

    def forward(self, inputs) -> torch.Tensor:
        """``inputs``: ``[shortcut, residual]`` (tensors or arrays)."""
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(f"Layer {self.name!r} (CustomScaleLayer) should be called on a "
                             f"list of 2 inputs. Received inputs={inputs!r}")
        x, r = (self._prepare_input(v) for v in inputs)
        # scale in the compute dtype first, as TensorFlow converts the Python number
        return x + r * torch.tensor(self.scale, dtype=r.dtype, device=r.device)

    def compute_output_shape(self, input_shape):
        a, b = (tuple(s) for s in input_shape)
        rank = max(len(a), len(b))
        a, b = (1,) * (rank - len(a)) + a, (1,) * (rank - len(b)) + b
        out = []
        for x, y in zip(a, b):
            known = [d for d in (x, y) if d is not None and d != 1]
            if len(known) == 2 and known[0] != known[1]:
                raise ValueError(f"Inputs of CustomScaleLayer {self.name!r} have "
                                 f"incompatible shapes: {a} and {b}")
            out.append(known[0] if known else (None if None in (x, y) else 1))
        return tuple(out)

    def get_config(self) -> Dict[str, Any]:
        return {**self.base_config(), "scale": self.scale}


class LayerScale(Layer):
    """ConvNeXt's layer scale (tf-keras' ``keras.applications.convnext.LayerScale``):
    ``x * gamma``, ``gamma`` of shape ``(projection_dim,)`` initialised to
    ``init_values``, broadcast along the last axis of the input."""

    WEIGHT_NAMES = ("gamma",)
    KERAS3_MODULE = "keras.src.applications.convnext"  # where Keras 3 finds the class

    def __init__(self, init_values, projection_dim, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self.init_values = check_number(init_values, "init_values")
        self.projection_dim = check_count(projection_dim, "projection_dim")
        # gamma's shape is fixed by projection_dim: built now, as Keras builds it whatever
        # the input shape
        self._build_checked((None, self.projection_dim), device=None)

    def build(self, input_shape, device=None) -> None:
        init = _initializers.get({"class_name": "Constant",
                                  "config": {"value": self.init_values}})
        self.add_weight("gamma", (self.projection_dim,), init, device=device)

    def _check_input(self, shape) -> None:
        if len(shape) < 1 or shape[-1] != self.projection_dim:
            raise ValueError(f"Layer {self.name!r} expects inputs whose last axis has "
                             f"projection_dim={self.projection_dim} values. Received input "
                             f"of shape {shape}")

    def forward(self, inputs) -> torch.Tensor:
        return self._prepare_input(inputs) * self._weight("gamma")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> Dict[str, Any]:
        return {**self.base_config(), "init_values": self.init_values,
                "projection_dim": self.projection_dim}

    def extra_repr(self) -> str:
        return f"projection_dim={self.projection_dim}, name={self.name!r}"


class StochasticDepth(_Weightless):
    """ConvNeXt's stochastic depth (tf-keras' ``keras.applications.convnext.
    StochasticDepth``): in training, ``(x / keep) * floor(keep + u)`` with ``keep = 1 -
    drop_path_rate`` and one uniform ``u`` per sample (torch's global generator: the layer
    has no seed), so a whole sample's residual branch is kept or dropped; the identity in
    ``eval()``.  ``drop_path_rate`` must be in ``[0, 1)`` (at 1, tf-keras divides by
    zero)."""

    KERAS3_MODULE = "keras.src.applications.convnext"

    def __init__(self, drop_path_rate, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        rate = check_number(drop_path_rate, "drop_path_rate", 0.0, 1.0)
        if rate == 1.0:
            raise ValueError("Invalid value for argument `drop_path_rate`. Expected a value "
                             "in [0, 1) (1 drops every path and divides by zero). Received "
                             "drop_path_rate=1.0")
        self.drop_path_rate = rate
        self._finish_init()

    def call(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_path_rate == 0:
            return x
        return _functional.stochastic_depth(x, self.drop_path_rate)

    def get_config(self) -> Dict[str, Any]:
        return {**self.base_config(), "drop_path_rate": self.drop_path_rate}
