"""Keras 3's ``ReversibleEmbedding`` (Keras 3.15; tf-keras 2 has no such class): an
``Embedding`` that can also project hidden states back onto the vocabulary, the tied
input / output embeddings of text models."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from .. import constraints as _constraints
from .. import regularizers as _regularizers
from .._registry import serialize
from .base import DTypePolicy, Layer, check_bool, check_count
from .core import Embedding, check_initializer, check_number

#: The dtypes ``reverse_dtype`` may name (Keras casts to any; a projection onto the
#: vocabulary in an integer dtype truncates the hidden states, which sepconv refuses).
_REVERSE_DTYPES = ("float16", "bfloat16", "float32", "float64")


def _check_reverse_dtype(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, dict):  # a serialised policy
        value = (value.get("config") or {}).get("name", value)
    if isinstance(value, torch.dtype):
        value = str(value).replace("torch.", "")
    if isinstance(value, np.dtype) or (isinstance(value, type) and
                                       issubclass(value, np.generic)):
        value = np.dtype(value).name
    if not isinstance(value, str):
        raise TypeError(f"Invalid type for argument `reverse_dtype`. Expected a dtype name "
                        f"or None. Received reverse_dtype={value!r}")
    if value not in _REVERSE_DTYPES:
        raise ValueError(f"Invalid value for argument `reverse_dtype`. Expected one of "
                         f"{', '.join(_REVERSE_DTYPES)} or None. Received "
                         f"reverse_dtype={value!r}")
    return value


class ReversibleEmbedding(Embedding):
    """Keras 3's ``ReversibleEmbedding`` (R keras3: ``layer_reversible_embedding``).

    ``layer(ids)``: Keras' ``Embedding``, integer ids ``(batch, ...)`` -> ``(batch, ...,
    output_dim)`` (with ``mask_zero``, the output's mask is ``ids != 0``).
    ``layer(hidden, reverse=True)``: the projection back onto the vocabulary, ``(batch,
    ..., output_dim)`` -> ``(batch, ..., input_dim)`` logits, ``hidden @ embeddings.T``
    (``tie_weights=True``, the default) or ``hidden @ reverse_embeddings``
    (``tie_weights=False``: a second weight ``(output_dim, input_dim)``, drawn from
    ``embeddings_initializer`` too, Keras' order: ``embeddings``, then
    ``reverse_embeddings``).  ``reverse_dtype`` (a float dtype name) casts the hidden
    states and the kernel before the product, as Keras does (the logits then have that
    dtype); without it the logits have the promotion of the hidden states' dtype and the
    compute dtype, as Keras 3's (float32 states of a ``mixed_float16`` layer give float32
    logits of the float16-rounded kernel: Keras does not cast this layer's float inputs);
    ``logit_soft_cap`` ``c`` gives ``tanh(logits / c) * c``.  No bias.  Gradients flow to the hidden states and to the (tied) kernel, as in
    Keras.  The reverse call gives no mask.

    Keras 3.15's numbers, forward and gradients (tested against it on the torch backend).
    Keras' quantized variants (``quantization_config``, int8 / int4 policies) and LoRA
    are not implemented: a file holding them is refused.  Keras accepts any
    ``reverse_dtype`` and any ``logit_soft_cap``; sepconv takes float dtypes and a
    nonzero number (0 divides by zero).  ``reverse_dtype="float64"`` gives float64 logits
    (Keras 3.15's matmul rounds a float64 product to float32, its ``result_type`` rule;
    the values agree to that rounding); a ``dtype="float64"`` layer likewise.
    ``activity_regularizer`` (Keras' ``**kwargs``) applies to the forward (embedding)
    output, as Keras' ``Embedding``'s.
    """

    #: tf-keras 2 has no such layer: ``save_keras_model`` writes it to ``.keras`` only.
    KERAS3_ONLY = True
    WEIGHT_NAMES = ("embeddings", "reverse_embeddings")

    def __init__(self, input_dim, output_dim, tie_weights=True,
                 embeddings_initializer="uniform", embeddings_regularizer=None,
                 embeddings_constraint=None, mask_zero=False, reverse_dtype=None,
                 logit_soft_cap=None, activity_regularizer=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        #: No shape given: the config holds none (Keras 3's holds none).
        self._shape_given = input_shape is not None or batch_input_shape is not None
        if not self._shape_given:
            input_shape = (None,)
        Layer.__init__(self, input_shape=input_shape, batch_input_shape=batch_input_shape,
                       batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                       weights=weights, activity_regularizer=activity_regularizer)
        self.input_dim = check_count(input_dim, "input_dim")
        self.output_dim = check_count(output_dim, "output_dim")
        self.tie_weights = check_bool(tie_weights, "tie_weights")
        self.embeddings_initializer = check_initializer(embeddings_initializer,
                                                        "embeddings_initializer")
        self.embeddings_regularizer = _regularizers.get(embeddings_regularizer,
                                                        "embeddings_regularizer")
        self.embeddings_constraint = _constraints.get(embeddings_constraint,
                                                      "embeddings_constraint")
        self.mask_zero = check_bool(mask_zero, "mask_zero")
        self.reverse_dtype = _check_reverse_dtype(reverse_dtype)
        cap = check_number(logit_soft_cap, "logit_soft_cap", allow_none=True)
        if cap == 0.0:
            raise ValueError("Invalid value for argument `logit_soft_cap`. Expected a "
                             "nonzero number or None. Received logit_soft_cap=0")
        self.logit_soft_cap = cap
        self.input_length = None
        self.sparse = False
        #: Whether the last call was ``reverse=True`` (its output has no mask).
        self._reversed = False
        self._finish_init()

    def build(self, input_shape, device=None) -> None:
        self.add_weight("embeddings", (self.input_dim, self.output_dim),
                        self.embeddings_initializer, self.embeddings_regularizer,
                        self.embeddings_constraint, device)
        if not self.tie_weights:
            self.add_weight("reverse_embeddings", (self.output_dim, self.input_dim),
                            self.embeddings_initializer, device=device)

    def compute_output_shape(self, input_shape, reverse=False) -> Tuple[Optional[int], ...]:
        shape = tuple(input_shape)
        if reverse:
            return shape[:-1] + (self.input_dim,)
        return shape + (self.output_dim,)

    def compute_mask(self, inputs, mask=None):
        """``ids != 0`` after a forward call with ``mask_zero``; ``None`` after a reverse
        call or without ``mask_zero`` (Keras 3's)."""
        if self._reversed:
            return None
        return super().compute_mask(inputs, mask)

    def forward(self, inputs, reverse: bool = False) -> torch.Tensor:
        """``inputs``: integer ids (``reverse=False``) or hidden states ``(..., output_dim)``
        (``reverse=True``)."""
        reverse = check_bool(reverse, "reverse")
        self._reversed = reverse
        if not reverse:
            return super().forward(inputs)
        x = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(np.asarray(inputs))
        if x.dim() < 1 or x.shape[-1] != self.output_dim:
            raise ValueError(f"Layer {self.name!r} (reverse=True) expects hidden states "
                             f"(..., {self.output_dim}). Received input of shape "
                             f"{tuple(x.shape)}")
        compute = self.dtype_policy.compute
        if not x.is_floating_point():
            x = x.to(compute)
        kernel = self._weight("embeddings").t() if self.tie_weights else \
            self._weight("reverse_embeddings")
        if self.reverse_dtype is not None:
            rdtype = DTypePolicy(self.reverse_dtype).compute
            x, kernel = x.to(rdtype), kernel.to(rdtype)
        else:
            # Keras' dtype: the hidden states' and the compute dtype's promotion (float32
            # states under mixed_float16 give float32 logits: Keras does not cast a
            # ReversibleEmbedding's float inputs); a float64 input to a narrower layer
            # gives the compute dtype (Keras' result_type demotes float64)
            target = torch.promote_types(x.dtype, compute)
            if target == torch.float64 and compute != torch.float64:
                target = compute
            x, kernel = x.to(target), kernel.to(target)
        x = x.to(kernel.device)
        if kernel.dtype == torch.float16 and kernel.device.type == "cpu":
            # Keras' torch matmul: float16 on CPU multiplies in float32, then rounds
            logits = torch.matmul(x.float(), kernel.float()).to(torch.float16)
        else:
            logits = torch.matmul(x, kernel)
        if self.logit_soft_cap is not None:
            cap = self.logit_soft_cap
            logits = torch.tanh(logits / cap) * cap
        return logits

    def get_config(self) -> Dict[str, Any]:
        config = self.base_config()
        if not self._shape_given:
            config.pop("batch_input_shape", None)
        config.update({
            "input_dim": self.input_dim, "output_dim": self.output_dim,
            "embeddings_initializer": serialize(self.embeddings_initializer),
            "embeddings_regularizer": serialize(self.embeddings_regularizer),
            "activity_regularizer": serialize(self.activity_regularizer),
            "embeddings_constraint": serialize(self.embeddings_constraint),
            "mask_zero": self.mask_zero, "tie_weights": self.tie_weights,
            "reverse_dtype": self.reverse_dtype, "logit_soft_cap": self.logit_soft_cap,
            "quantization_config": None})
        return config

    def extra_repr(self) -> str:
        parts = [f"{self.input_dim}, {self.output_dim}"]
        if not self.tie_weights:
            parts.append("tie_weights=False")
        if self.reverse_dtype is not None:
            parts.append(f"reverse_dtype={self.reverse_dtype!r}")
        if self.logit_soft_cap is not None:
            parts.append(f"logit_soft_cap={self.logit_soft_cap}")
        return ", ".join(parts + [f"name={self.name!r}"])
