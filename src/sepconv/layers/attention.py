"""Keras' ``MultiHeadAttention`` (R: ``layer_multi_head_attention``) and Keras 3's
``GroupQueryAttention`` (R keras3: ``layer_group_query_attention``).

The attention blocks of the sequence models our users port (Transformer encoders for time
series and text, Conformer blocks between convolutions) load with the same numbers as
tf-keras 2.21: the projections, the scaling of the query, the masked softmax (tf-keras adds
``-1e9`` where the mask is False, so a query step with every key masked attends to all of
them equally) and the combination, over any ``attention_axes``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from .. import activations as _activations
from .. import functional as _functional
from .. import initializers as _initializers
from .base import Layer, check_bool, check_count, unique_name
from .core import check_number, init_kernel_objects

def _shape_or_none(value: Any, name: str) -> Optional[Tuple[Optional[int], ...]]:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) < 3:
        raise ValueError(f"Invalid value for argument `{name}`. Expected a shape (batch, "
                         f"..., features) of rank >= 3. Received {name}={value!r}")
    return tuple(None if v is None else int(v) for v in value)


class _Heads:
    """What ``MultiHeadAttention`` and ``GroupQueryAttention`` share: the query, value and
    key shapes (from the arguments, ``build`` or the first call) and their checks, inputs
    as tensors, optional biases, and the Keras masks of the inputs combined with
    ``attention_mask``."""

    #: ``True``: inputs ``(batch, steps, features)`` only; else ``(batch, ..., features)``.
    RANK_3_ONLY = False

    def _layout(self, features: Any = "features") -> str:
        return (f"(batch, steps, {features})" if self.RANK_3_ONLY
                else f"(batch, ..., {features})")

    def _init_shapes(self, query_shape, value_shape, key_shape) -> None:
        """The ``query_shape`` / ``value_shape`` / ``key_shape`` arguments; built now where
        the first two are known (and no ``input_shape`` was given)."""
        self.query_shape = _shape_or_none(query_shape, "query_shape")
        self.value_shape = _shape_or_none(value_shape, "value_shape")
        self.key_shape = _shape_or_none(key_shape, "key_shape")
        self.input_dims: Optional[Tuple[int, int, int]] = None
        if self.query_shape is not None and self.value_shape is not None and \
                self.batch_input_shape is None:
            self._build_checked([self.query_shape, self.value_shape,
                                 self.key_shape or self.value_shape], device=None)

    def _build_shapes(self, input_shape) -> Tuple[int, int, int]:
        """``build``'s ``input_shape`` (the query's shape, self-attention: value and key
        alike, or a list ``[query_shape, value_shape(, key_shape)]``) checked and kept;
        returns the features ``(query, value, key)``."""
        shapes = list(input_shape) if input_shape and isinstance(
            input_shape[0], (list, tuple)) else [tuple(input_shape)]
        if not 1 <= len(shapes) <= 3:
            raise ValueError(f"Layer {self.name!r} is built from the query, value and key "
                             f"shapes. Received {len(shapes)} shapes")
        shapes += [shapes[-1]] * (3 - len(shapes))  # value = query, key = value
        q, v, k = (tuple(s) for s in shapes)
        for what, s in (("query", q), ("value", v), ("key", k)):
            if (len(s) != 3 if self.RANK_3_ONLY else len(s) < 3) or s[-1] is None:
                layout = "of shape " + self._layout() if self.RANK_3_ONLY else \
                    "of rank >= 3 " + self._layout()
                raise ValueError(f"Layer {self.name!r} expects a {what} {layout} with "
                                 f"known features. Received {what} shape {s}")
        self.query_shape, self.value_shape, self.key_shape = q, v, k
        self.input_dims = tuple(check_count(s[-1], f"{w} features") for w, s in
                                (("query", q), ("value", v), ("key", k)))
        return self.input_dims

    def _build_from_inputs(self, query, value, key) -> None:
        """Build at the first call from the inputs' shapes (``key`` default: ``value``)."""
        q0, v0 = self._as_tensor(query), self._as_tensor(value)
        k0 = v0 if key is None else self._as_tensor(key)
        self._build_checked([tuple(q0.shape), tuple(v0.shape), tuple(k0.shape)],
                            device=q0.device)

    def _check_inputs(self, q, v, k) -> None:
        dq, dv, dk = self.input_dims
        for what, t, d in (("query", q, dq), ("value", v, dv), ("key", k, dk)):
            if (t.dim() != 3 if self.RANK_3_ONLY else t.dim() < 3) or t.shape[-1] != d:
                raise ValueError(f"Layer {self.name!r} expects a {what} of shape "
                                 f"{self._layout(d)}. Received {what} of shape "
                                 f"{tuple(t.shape)}")
        if v.shape[:-1] != k.shape[:-1]:
            raise ValueError(f"All dimensions of `value` and `key`, except the last one, "
                             f"must be equal. Received {tuple(v.shape)} and "
                             f"{tuple(k.shape)}")
        if q.dim() != v.dim() or q.shape[0] != v.shape[0]:
            what = "batch size" if self.RANK_3_ONLY else "rank and batch size"
            raise ValueError(f"Layer {self.name!r}: query {tuple(q.shape)} and value "
                             f"{tuple(v.shape)} need the same {what}")

    @staticmethod
    def _query_shape(query_shape) -> Tuple[Optional[int], ...]:
        """``compute_output_shape``'s query shape (alone or first of a list of shapes)."""
        if isinstance(query_shape, list) and query_shape and \
                isinstance(query_shape[0], (list, tuple)):
            query_shape = query_shape[0]
        return tuple(query_shape)

    def _as_tensor(self, x) -> torch.Tensor:
        return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))

    def _bias(self, name: str) -> Optional[torch.Tensor]:
        return self._weight(name) if self.use_bias else None

    def _project(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(batch, ..., features)`` through the ``<name>_kernel`` / ``_bias``
        projection: ``(batch, ..., heads, size)``."""
        return _functional.einsum_dense(x, self._weight(f"{name}_kernel"),
                                        self._bias(f"{name}_bias"), 1)

    def _output(self, out: torch.Tensor,
                gate: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The attention output ``(batch, T..., heads, size)`` times ``gate`` (if any:
        ``GroupQueryAttention(use_gate=True)``), through the output projection."""
        if gate is not None:
            out = out * gate
        return _functional.einsum_dense(out, self._weight("output_kernel"),
                                        self._bias("output_bias"), 2)

    def _attention_mask(self, q, v, attention_mask, query_mask, value_mask,
                        key_mask) -> Optional[torch.Tensor]:
        """Keras' ``_compute_attention_mask`` but the causal mask (the attention op
        adds that): the input masks AND-ed with ``attention_mask``, shape ``(batch, T,
        S)`` for one attention axis."""
        auto = None

        def both(a, b):
            return b if a is None else a & b

        def as_bool(m):
            m = self._as_tensor(m).to(q.device)
            return m if m.dtype == torch.bool else m != 0

        if query_mask is not None:
            auto = as_bool(query_mask)[:, :, None]
        if value_mask is not None:
            auto = both(auto, as_bool(value_mask)[:, None, :])
        if key_mask is not None:
            auto = both(auto, as_bool(key_mask)[:, None, :])
        if auto is None:
            return None if attention_mask is None else as_bool(attention_mask)
        return auto if attention_mask is None else as_bool(attention_mask) & auto


class MultiHeadAttention(_Heads, Layer):
    """Keras' ``MultiHeadAttention``: scaled dot-product attention of ``num_heads`` heads.

    ``forward(query, value, key=None, attention_mask=None, return_attention_scores=False,
    training=None, use_causal_mask=False, query_mask=None, value_mask=None, key_mask=None)``:

    - ``query`` ``(batch, T..., query_features)``, ``value`` ``(batch, S..., value_features)``,
      ``key`` like ``value`` (default: ``value``); the axes between the batch and the
      features other than ``attention_axes`` (default: all of them) must agree.
    - ``attention_mask`` boolean ``(batch, T..., S...)``: False keeps a query step from
      attending to a key step; ``use_causal_mask`` adds the lower-triangular mask.
    - ``query_mask`` ``(batch, T)``, ``value_mask`` / ``key_mask`` ``(batch, S)``: the Keras
      masks of the inputs (a loaded model hands them over from ``Masking`` /
      ``Embedding(mask_zero=True)``), combined with ``attention_mask`` as tf-keras does.
    - Returns ``(batch, T..., output_shape or query_features)``, and with
      ``return_attention_scores`` also the scores ``(batch, heads, T..., S...)``.

    A layer built from a Keras 3 file computes Keras 3's masked softmax (where every key
    of a query step is masked, tf-keras and Keras 3 give different numbers).  Weights in
    Keras' order and shapes: ``query_kernel`` ``(query_features, heads,
    key_dim)``, ``query_bias`` ``(heads, key_dim)``, the same for ``key``, ``value``
    (``value_dim``), then ``output_kernel`` ``(heads, value_dim, *output_shape)`` and
    ``output_bias`` ``(*output_shape,)``; no biases with ``use_bias=False``.  Dropout
    (on the attention probabilities) runs in training mode only.  The layer is built at its
    first call, from ``query_shape`` / ``value_shape`` / ``key_shape`` (tf-keras' config
    keys), or from a list of shapes given to ``build``.
    """

    WEIGHT_NAMES = ("query_kernel", "query_bias", "key_kernel", "key_bias", "value_kernel",
                    "value_bias", "output_kernel", "output_bias")
    supports_masking = True
    #: The call arguments whose Keras masks a model hands over (as ``<name>_mask``).
    MASKED_ARGUMENTS = ("query", "value", "key")

    def __init__(self, num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True,
                 output_shape=None, attention_axes=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 softmax_robust_masking=False, query_shape=None, value_shape=None,
                 key_shape=None, input_shape=None, batch_input_shape=None, batch_size=None,
                 dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights, activity_regularizer=activity_regularizer)
        self.num_heads = check_count(num_heads, "num_heads")
        self.key_dim = check_count(key_dim, "key_dim")
        self.value_dim = self.key_dim if value_dim in (None, 0) else \
            check_count(value_dim, "value_dim")
        self.dropout = check_number(dropout, "dropout", 0.0, 1.0)
        self.use_bias = check_bool(use_bias, "use_bias")
        if output_shape is None or output_shape == []:
            self.output_shape = None
        else:
            dims = output_shape if isinstance(output_shape, (list, tuple)) else [output_shape]
            self.output_shape = tuple(check_count(d, "output_shape") for d in dims)
        if attention_axes is None:
            self.attention_axes = None
        else:
            axes = attention_axes if isinstance(attention_axes, (list, tuple)) \
                else [attention_axes]
            if not axes or any(isinstance(a, bool) or not isinstance(a, (int, np.integer))
                               for a in axes):
                raise ValueError(f"Invalid value for argument `attention_axes`. Expected "
                                 f"an int or a list of ints. Received "
                                 f"attention_axes={attention_axes!r}")
            self.attention_axes = tuple(int(a) for a in axes)
        init_kernel_objects(self, locals())
        self.softmax_robust_masking = check_bool(softmax_robust_masking,
                                                 "softmax_robust_masking")
        # Keras 3 files: Keras 3's masked softmax (see ``_masking``)
        self._keras3 = _activations.current_flavour() == "keras3"
        self._init_shapes(query_shape, value_shape, key_shape)
        self._finish_init()

    # -- building ----------------------------------------------------------------------
    def build(self, input_shape, device=None) -> None:
        """``input_shape``: the query's shape (self-attention: value and key alike) or a
        list ``[query_shape, value_shape]`` / ``[query_shape, value_shape, key_shape]``."""
        dq, dv, dk = self._build_shapes(input_shape)
        out = self.output_shape or (dq,)
        h = self.num_heads
        for prefix, features, size in (("query", dq, self.key_dim), ("key", dk, self.key_dim),
                                       ("value", dv, self.value_dim)):
            self.add_weight(f"{prefix}_kernel", (features, h, size), self.kernel_initializer,
                            self.kernel_regularizer, self.kernel_constraint, device)
            if self.use_bias:
                self.add_weight(f"{prefix}_bias", (h, size), self.bias_initializer,
                                self.bias_regularizer, self.bias_constraint, device)
        self.add_weight("output_kernel", (h, self.value_dim) + out, self.kernel_initializer,
                        self.kernel_regularizer, self.kernel_constraint, device)
        if self.use_bias:
            self.add_weight("output_bias", out, self.bias_initializer, self.bias_regularizer,
                            self.bias_constraint, device)

    def _input_shape_from_weights(self, weights):
        if len(weights) < 3:
            return None
        stride = 2 if self.use_bias else 1
        try:
            dq, dk, dv = (int(weights[i * stride].shape[0]) for i in range(3))
        except (AttributeError, IndexError, TypeError):
            return None
        return [(None, None, dq), (None, None, dv), (None, None, dk)]

    # -- the call ----------------------------------------------------------------------
    def forward(self, query, value, key=None, attention_mask=None,
                return_attention_scores=False, training=None, use_causal_mask=False,
                query_mask=None, value_mask=None, key_mask=None):
        if not self.built:
            self._build_from_inputs(query, value, key)
        if key is None:
            key, key_mask = value, value_mask if key_mask is None else key_mask
        q, v, k = (self._prepare_input(t) for t in (query, value, key))
        self._check_inputs(q, v, k)
        if use_causal_mask and q.dim() != 3:
            raise ValueError(f"Layer {self.name!r}: use_causal_mask needs inputs of rank 3 "
                             f"(batch, steps, features). Received query of shape "
                             f"{tuple(q.shape)}")
        mask = self._attention_mask(q, v, attention_mask, query_mask, value_mask, key_mask)
        qp, kp, vp = self._project("query", q), self._project("key", k), \
            self._project("value", v)
        out, scores = _functional.dot_product_attention(
            qp, kp, vp, self._axes(q.dim()), mask=mask,
            dropout_rate=self.dropout if (self.training if training is None else training)
            else 0.0, masking=self._masking(q.dim(), return_attention_scores),
            causal=bool(use_causal_mask), need_scores=bool(return_attention_scores))
        out = self._output(out)
        self._record_activity(out)
        return (out, scores) if return_attention_scores else out

    @property
    def keras3_strips_input_masks(self) -> bool:
        """Whether a model runs this layer as Keras 3.15 does (built from a Keras 3 file):
        the query's mask is its tensor's, and the call removes the masks of its query,
        value and key tensors (see ``sepconv.interop.models``)."""
        return self._keras3

    def _masking(self, rank: int, return_scores: bool) -> str:
        """The masked softmax of the Keras that wrote the model (see
        :func:`sepconv.functional.dot_product_attention`): tf-keras adds ``-1e9``
        (``softmax_robust_masking``: replaces by it); Keras 3 runs its fused
        ``dot_product_attention`` where it has no dropout, returns no scores and the inputs
        have rank 3, and elsewhere its ``Softmax``, which zeroes masked probabilities."""
        if not self._keras3:
            return "where" if self.softmax_robust_masking else "add"
        fused = self.dropout == 0 and not return_scores and rank == 3
        return "keras3_fused" if fused else "keras3"

    def _axes(self, rank: int) -> Tuple[int, ...]:
        """The attention axes of the projected tensors (rank + 1: the heads' axis is added
        before the features), as Keras normalises them."""
        if self.attention_axes is None:
            return tuple(range(1, rank - 1))
        axes = []
        for a in self.attention_axes:
            b = a % (rank + 1) if a < 0 else a
            if not 1 <= b <= rank - 2:
                raise ValueError(f"Layer {self.name!r}: attention_axes={self.attention_axes} "
                                 f"do not fit inputs of rank {rank} (allowed: axes 1 to "
                                 f"{rank - 2}, the axes between batch and features)")
            axes.append(b)
        return tuple(sorted(set(axes)))

    # -- Keras protocol ----------------------------------------------------------------
    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        q = self._query_shape(query_shape)
        return q[:-1] + (self.output_shape or (q[-1],))

    def get_config(self) -> Dict[str, Any]:
        config = self.base_config()
        config.update({
            "num_heads": self.num_heads, "key_dim": self.key_dim,
            "value_dim": self.value_dim, "dropout": self.dropout, "use_bias": self.use_bias,
            "output_shape": None if self.output_shape is None else list(self.output_shape),
            "attention_axes": None if self.attention_axes is None
            else list(self.attention_axes),
            **self.objects_config(),
            "query_shape": None if self.query_shape is None else list(self.query_shape),
            "key_shape": None if self.key_shape is None else list(self.key_shape),
            "value_shape": None if self.value_shape is None else list(self.value_shape),
            "softmax_robust_masking": self.softmax_robust_masking,
        })
        return config

    def extra_repr(self) -> str:
        parts = [f"num_heads={self.num_heads}", f"key_dim={self.key_dim}"]
        if self.value_dim != self.key_dim:
            parts.append(f"value_dim={self.value_dim}")
        if self.dropout:
            parts.append(f"dropout={self.dropout}")
        if self.output_shape is not None:
            parts.append(f"output_shape={self.output_shape}")
        if self.attention_axes is not None:
            parts.append(f"attention_axes={self.attention_axes}")
        return self._repr_tail(parts)


class GroupQueryAttention(_Heads, Layer):
    """Keras 3's ``GroupQueryAttention`` (grouped-query attention, Ainslie et al. 2023;
    R keras3: ``layer_group_query_attention``): ``num_query_heads`` query heads share
    ``num_key_value_heads`` key / value heads (1: multi-query attention; equal:
    multi-head attention), each key / value head serving ``num_query_heads /
    num_key_value_heads`` consecutive query heads.

    ``forward(query, value, key=None, query_mask=None, value_mask=None, key_mask=None,
    attention_mask=None, return_attention_scores=False, training=None,
    use_causal_mask=False)`` (Keras 3's order):

    - ``query`` ``(batch, T, features)``, ``value`` ``(batch, S, value_features)``, ``key``
      like ``value`` (default: ``value``).  Returns ``(batch, T, features)``, with
      ``return_attention_scores`` also the probabilities ``(batch, num_query_heads, T,
      S)``.
    - ``attention_mask`` boolean ``(batch, T, S)`` (False: no attention), AND-ed with the
      inputs' Keras masks (``query_mask`` ``(batch, T)``, ``value_mask`` / ``key_mask``
      ``(batch, S)``), the causal mask (``use_causal_mask``) and, with
      ``sliding_window=w``, Keras' band ``|t - s| < w`` (symmetric: with
      ``use_causal_mask`` it is the causal sliding window of Mistral and Phi-3, each step
      seeing itself and the ``w - 1`` steps before).
    - ``use_gate=True``: the attention output times ``sigmoid(query @ gate_kernel +
      gate_bias)`` before the output projection.

    The numbers are Keras 3's: without dropout and scores the output comes from torch's
    ``scaled_dot_product_attention`` (``enable_gqa``: sepconv hands it the shared key
    and value heads uncopied; torch's kernels do the grouping) with Keras 3's ``-0.7 *
    float32 max`` offsets, so a query step whose keys are all masked gets the mean of the
    values; returning scores or with ``dropout > 0`` (in
    training or not) Keras 3 runs its ``Softmax``, which gives such a step zeros.  (In
    float64 Keras 3's fused route computes in float32: its torch ``dot_product_attention``
    casts to ``backend.result_type("float64", "float64")``, which is float32; sepconv
    stays in float64.)
    ``flash_attention``, in torch terms: ``None`` lets torch pick the
    ``scaled_dot_product_attention`` kernel (flash, memory-efficient, cuDNN or math);
    ``True`` allows only ``SDPBackend.FLASH_ATTENTION`` (torch raises where it cannot run:
    float32 on CUDA, for example) and, as Keras, refuses ``dropout`` and scores; ``False``
    excludes the flash kernel (Keras 3.15 reads ``False`` as ``None``, as its ``False or
    is_flash_attention_enabled()`` does; the numbers agree within rounding either way).
    Keras 3 does not save it in the config, nor does this layer.  Dropout (on the
    probabilities, training only) draws from a generator seeded with ``seed`` (not
    Keras' random numbers).  ``activity_regularizer`` penalises, as Keras 3 passes it on
    to its projections, each projection's output, the output and the scores returned,
    each divided by the batch size.

    Weights in Keras 3's order: ``query_kernel`` ``(features, num_query_heads,
    head_dim)``, ``query_bias`` ``(num_query_heads, head_dim)``, ``key_kernel``
    ``(key_features, num_key_value_heads, head_dim)``, ``key_bias``, ``gate_kernel`` /
    ``gate_bias`` (query's shapes, with ``use_gate``), ``value_kernel`` / ``value_bias``
    (key's shapes), ``output_kernel`` ``(num_query_heads, head_dim, features)`` (Keras'
    ``attention_output``), ``output_bias`` ``(features,)``; no biases with
    ``use_bias=False``.  Built at the first call, from ``query_shape`` / ``value_shape``
    / ``key_shape`` (Keras 3 keeps them in the file's ``build_config``) or from a list of
    shapes given to ``build``.
    """

    KERAS3_ONLY = True  # tf-keras 2 has no such class: .keras files only

    WEIGHT_NAMES = ("query_kernel", "query_bias", "key_kernel", "key_bias", "gate_kernel",
                    "gate_bias", "value_kernel", "value_bias", "output_kernel", "output_bias")
    supports_masking = True
    MASKED_ARGUMENTS = ("query", "value", "key")
    RANK_3_ONLY = True

    def __init__(self, head_dim, num_query_heads, num_key_value_heads, dropout=0.0,
                 use_bias=True, sliding_window=None, flash_attention=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, use_gate=False, seed=None,
                 query_shape=None, value_shape=None, key_shape=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        if name is None:  # Keras 3's default (its class is GroupedQueryAttention)
            name = unique_name("grouped_query_attention")
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights, activity_regularizer=activity_regularizer)
        self.head_dim = check_count(head_dim, "head_dim")
        self.num_query_heads = check_count(num_query_heads, "num_query_heads")
        self.num_key_value_heads = check_count(num_key_value_heads, "num_key_value_heads")
        if self.num_query_heads % self.num_key_value_heads:
            raise ValueError(f"`num_query_heads` must be divisible by "
                             f"`num_key_value_heads`. Received "
                             f"num_query_heads={num_query_heads}, "
                             f"num_key_value_heads={num_key_value_heads}")
        self.num_repeats = self.num_query_heads // self.num_key_value_heads
        self.dropout = check_number(dropout, "dropout", 0.0, 1.0)
        self.use_bias = check_bool(use_bias, "use_bias")
        if sliding_window is not None and (
                isinstance(sliding_window, bool) or
                not isinstance(sliding_window, (int, np.integer)) or sliding_window <= 0):
            raise ValueError(f"`sliding_window` must be `None` or a positive integer. "
                             f"Received: sliding_window={sliding_window!r}")
        self.sliding_window = None if sliding_window is None else int(sliding_window)
        if flash_attention is not None and not isinstance(flash_attention, bool):
            raise TypeError(f"Invalid type for argument `flash_attention`. Expected None, "
                            f"True or False. Received flash_attention={flash_attention!r}")
        self.flash_attention = flash_attention
        if flash_attention and self.dropout > 0:
            raise ValueError("Dropout is not supported when flash attention is enabled. "
                             "Please set dropout to 0.0 to use flash attention.")
        init_kernel_objects(self, locals())
        self.use_gate = check_bool(use_gate, "use_gate")
        self.seed = None if seed is None else check_count(seed, "seed", minimum=0)
        self._init_shapes(query_shape, value_shape, key_shape)
        self._finish_init()

    # -- building ----------------------------------------------------------------------
    def build(self, input_shape, device=None) -> None:
        """``input_shape``: the query's shape (self-attention) or a list ``[query_shape,
        value_shape(, key_shape)]``."""
        dq, dv, dk = self._build_shapes(input_shape)
        u, kv, h = self.num_query_heads, self.num_key_value_heads, self.head_dim
        projections = [("query", dq, u), ("key", dk, kv)] + \
            ([("gate", dq, u)] if self.use_gate else []) + [("value", dv, kv)]
        for prefix, features, heads in projections:
            self.add_weight(f"{prefix}_kernel", (features, heads, h), self.kernel_initializer,
                            self.kernel_regularizer, self.kernel_constraint, device)
            if self.use_bias:
                self.add_weight(f"{prefix}_bias", (heads, h), self.bias_initializer,
                                self.bias_regularizer, self.bias_constraint, device)
        self.add_weight("output_kernel", (u, h, dq), self.kernel_initializer,
                        self.kernel_regularizer, self.kernel_constraint, device)
        if self.use_bias:
            self.add_weight("output_bias", (dq,), self.bias_initializer,
                            self.bias_regularizer, self.bias_constraint, device)

    def _input_shape_from_weights(self, weights):
        stride = 2 if self.use_bias else 1
        value_at = (3 if self.use_gate else 2) * stride
        try:
            dq, dk, dv = (int(weights[i].shape[0]) for i in (0, stride, value_at))
        except (AttributeError, IndexError, TypeError):
            return None
        return [(None, None, dq), (None, None, dv), (None, None, dk)]

    # -- the call ----------------------------------------------------------------------
    def forward(self, query, value, key=None, query_mask=None, value_mask=None,
                key_mask=None, attention_mask=None, return_attention_scores=False,
                training=None, use_causal_mask=False):
        if not self.built:
            self._build_from_inputs(query, value, key)
        if key is None:
            key = value
        q, v, k = (self._prepare_input(t) for t in (query, value, key))
        self._check_inputs(q, v, k)
        if self.flash_attention and return_attention_scores:
            raise ValueError("Returning attention scores is not supported when flash "
                             "attention is enabled. Please disable flash attention to "
                             "access attention scores.")
        mask = self._attention_mask(q, v, attention_mask, query_mask, value_mask, key_mask)
        if self.sliding_window is not None:
            band = self._band(q.shape[1], v.shape[1], q.device)
            mask = band.unsqueeze(0) if mask is None else mask & band
        projected = [self._project(name, t) for name, t in
                     (("query", q), ("key", k), ("value", v))]
        training = self.training if training is None else bool(training)
        out, scores = self._attend(*projected, mask, bool(use_causal_mask),
                                   bool(return_attention_scores), training)
        gate = torch.sigmoid(self._project("gate", q)) if self.use_gate else None
        out = self._output(out, gate)
        if self.activity_regularizer is not None:
            # Keras 3 hands the regularizer to every projection too
            tensors = projected + ([gate] if gate is not None else []) + [out, out] + \
                ([scores] if return_attention_scores else [])
            self._activity_loss = sum(self.activity_regularizer(t) / q.shape[0]
                                      for t in tensors)
        return (out, scores) if return_attention_scores else out

    def _band(self, t: int, s: int, device) -> torch.Tensor:
        """Keras' sliding-window mask ``(T, S)``: ``|t - s| < sliding_window``."""
        rows = torch.arange(t, device=device)[:, None]
        cols = torch.arange(s, device=device)[None, :]
        return (rows - cols).abs() < self.sliding_window

    def _attend(self, q, k, v, mask, causal: bool, need_scores: bool, training: bool):
        """Attention of the projected ``(batch, steps, heads, head_dim)`` tensors (``k``,
        ``v`` with the key / value heads), on Keras 3's route (see :meth:`_masking`);
        ``mask`` ``(batch or 1, T, S)``."""
        rate = self.dropout if training else 0.0
        generator = None
        if rate and self.seed is not None:  # one generator per device, seeded once
            gens = self.__dict__.setdefault("_generators", {})
            generator = gens.get(str(q.device))
            if generator is None:
                generator = gens[str(q.device)] = torch.Generator(device=q.device)
                generator.manual_seed(self.seed)
        kwargs = dict(mask=mask, dropout_rate=rate, causal=causal,
                      masking=self._masking(need_scores), need_scores=need_scores)
        if generator is not None:
            kwargs["generator"] = generator
        if self.flash_attention is None:
            return _functional.dot_product_attention(q, k, v, (1,), **kwargs)
        from torch.nn.attention import SDPBackend, sdpa_kernel
        backends = [SDPBackend.FLASH_ATTENTION] if self.flash_attention else \
            [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH]
        with sdpa_kernel(backends):
            return _functional.dot_product_attention(q, k, v, (1,), **kwargs)

    def _masking(self, need_scores: bool) -> str:
        """Keras 3's two routes: its fused ``dot_product_attention`` without dropout
        (whatever the training mode) and scores, its ``Softmax`` otherwise."""
        return "keras3_fused" if self.dropout == 0 and not need_scores else "keras3"

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_generators", None)
        return state

    # -- Keras protocol ----------------------------------------------------------------
    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        return self._query_shape(query_shape)

    def get_config(self) -> Dict[str, Any]:
        config = self.base_config()
        config.update({
            "head_dim": self.head_dim, "num_query_heads": self.num_query_heads,
            "num_key_value_heads": self.num_key_value_heads, "use_bias": self.use_bias,
            "use_gate": self.use_gate, "sliding_window": self.sliding_window,
            "dropout": self.dropout, **self.objects_config(), "seed": self.seed,
        })
        return config

    def extra_repr(self) -> str:
        parts = [f"head_dim={self.head_dim}", f"num_query_heads={self.num_query_heads}",
                 f"num_key_value_heads={self.num_key_value_heads}"]
        if self.dropout:
            parts.append(f"dropout={self.dropout}")
        if self.sliding_window is not None:
            parts.append(f"sliding_window={self.sliding_window}")
        if self.use_gate:
            parts.append("use_gate=True")
        if self.flash_attention is not None:
            parts.append(f"flash_attention={self.flash_attention}")
        return self._repr_tail(parts)


class _DenseAttention(Layer):
    """Keras' ``Attention`` and ``AdditiveAttention`` (tf-keras' ``BaseDenseAttention``):
    ``forward([query, value(, key)], mask=None, training=None,
    return_attention_scores=False, use_causal_mask=False)``.

    ``query`` ``(batch, Tq, dim)``, ``value`` ``(batch, Tv, dim)``, ``key`` (default:
    ``value``) ``(batch, Tv, dim)``; ``mask`` ``[query_mask (batch, Tq), value_mask
    (batch, Tv)]`` (a model hands the inputs' Keras masks over): masked value steps get
    ``1e9`` subtracted from their scores (float16: 65504), masked query steps output zeros;
    ``use_causal_mask`` (or the old ``causal=True`` argument) masks later value steps.
    Returns ``(batch, Tq, dim)`` (and the probabilities ``(batch, Tq, Tv)``).  Dropout on
    the probabilities in training only.
    """

    supports_masking = True

    def _init_dense_attention(self, dropout, causal) -> None:
        self.dropout = check_number(dropout, "dropout", 0.0, 1.0)
        self.causal = check_bool(causal, "causal")

    def _shapes(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or not input_shape or \
                not isinstance(input_shape[0], (list, tuple)) or \
                not 2 <= len(input_shape) <= 3:
            raise ValueError(f"{type(self).__name__} layer {self.name!r} is built from the "
                             f"shapes [query, value] or [query, value, key]. Received "
                             f"input_shape={input_shape!r}")
        return [tuple(s) for s in input_shape]

    def _inputs(self, inputs) -> list:
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"{type(self).__name__} layer must be called on a list of "
                             f"inputs, namely [query, value] or [query, value, key]. "
                             f"Received: {type(inputs).__name__}")
        if not 2 <= len(inputs) <= 3:
            raise ValueError(f"{type(self).__name__} layer accepts inputs list of length 2 "
                             f"or 3, namely [query, value] or [query, value, key]. "
                             f"Received length: {len(inputs)}")
        tensors = [x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
                   for x in inputs]
        if not self.built:
            self._build_checked([tuple(t.shape) for t in tensors], device=tensors[0].device)
        out = [self._prepare_input(t) for t in tensors]
        q, v = out[0], out[1]
        k = out[2] if len(out) > 2 else v
        if q.dim() < 3 or v.dim() != q.dim() or k.shape[:-1] != v.shape[:-1] or \
                q.shape[-1] != k.shape[-1] or q.shape[:-2] != v.shape[:-2]:
            raise ValueError(f"{type(self).__name__} layer {self.name!r} expects query "
                             f"(batch, Tq, dim), value (batch, Tv, dim_v) and key (batch, "
                             f"Tv, dim). Received shapes "
                             f"{[tuple(t.shape) for t in out]}")
        return [q, v, k]

    def forward(self, inputs, mask=None, training=None, return_attention_scores=False,
                use_causal_mask=False):
        q, v, k = self._inputs(inputs)
        if mask is not None and (not isinstance(mask, (list, tuple)) or
                                 not 2 <= len(mask) <= len(inputs)):
            raise ValueError(f"{type(self).__name__} layer mask must be a list, namely "
                             f"[query_mask, value_mask]. Received: {mask!r}")
        q_mask, v_mask = (mask[0], mask[1]) if mask else (None, None)
        scores = self._scores(q, k)
        scores_mask = None
        if v_mask is not None:
            scores_mask = torch.as_tensor(v_mask, device=q.device).to(torch.bool)
            scores_mask = scores_mask.unsqueeze(-2)
        if self.causal or use_causal_mask:
            causal = torch.ones(scores.shape[-2:], dtype=torch.bool, device=q.device).tril()
            scores_mask = causal if scores_mask is None else scores_mask & causal
        training = self.training if training is None else bool(training)
        out, probs = _functional.dense_attention(scores, v, scores_mask,
                                                 self.dropout if training else 0.0)
        if q_mask is not None:
            q_mask = torch.as_tensor(q_mask, device=q.device)
            out = out * q_mask.unsqueeze(-1).to(out.dtype)
        self._record_activity(out)
        return (out, probs) if return_attention_scores else out

    def compute_mask(self, inputs, mask=None):
        """tf-keras': the query's mask."""
        return mask[0] if mask else None

    def compute_output_shape(self, input_shape):
        shapes = self._shapes(input_shape)
        return shapes[0][:-1] + (shapes[1][-1],)

    def _dense_config(self) -> Dict[str, Any]:
        return {**self.base_config(), "dropout": self.dropout}


class Attention(_DenseAttention):
    """Keras' ``Attention`` (Luong-style dot-product attention; R: ``layer_attention``):
    scores ``query @ key^T`` (times the trainable scalar ``scale`` with ``use_scale``), or
    with ``score_mode="concat"`` ``concat_score_weight * sum(tanh(scale * (query +
    key)))`` over the features.  Weights: ``scale`` ``()``, ``concat_score_weight`` ``()``
    where used.  See the base for the call."""

    WEIGHT_NAMES = ("scale", "concat_score_weight")

    def __init__(self, use_scale=False, score_mode="dot", dropout=0.0, causal=False,
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self.use_scale = check_bool(use_scale, "use_scale")
        if not isinstance(score_mode, str) or score_mode.lower() not in ("dot", "concat"):
            raise ValueError(f"Invalid value for argument `score_mode`. Expected one of "
                             f"'dot', 'concat'. Received score_mode={score_mode!r}")
        self.score_mode = score_mode.lower()
        self._init_dense_attention(dropout, causal)
        self._finish_init()

    def build(self, input_shape, device=None) -> None:
        self._shapes(input_shape)
        ones = _initializers.get("ones", "scale")
        if self.use_scale:
            self.add_weight("scale", (), ones, device=device)
        if self.score_mode == "concat":
            self.add_weight("concat_score_weight", (), ones, device=device)

    def _input_shape_from_weights(self, weights):
        return [(None, None, None), (None, None, None)]

    def _scores(self, q, k):
        scale = self._weight("scale") if self.use_scale else None
        if self.score_mode == "dot":
            scores = torch.matmul(q, k.transpose(-1, -2))
            return scores if scale is None else scores * scale
        s = q.unsqueeze(-2) + k.unsqueeze(-3)
        if scale is not None:
            s = scale * s
        return self._weight("concat_score_weight") * _activations.tanh(s).sum(-1)

    def get_config(self) -> Dict[str, Any]:
        return {**self._dense_config(), "use_scale": self.use_scale,
                "score_mode": self.score_mode}


class AdditiveAttention(_DenseAttention):
    """Keras' ``AdditiveAttention`` (Bahdanau-style; R: ``layer_additive_attention``):
    scores ``sum(scale * tanh(query + key))`` over the features, ``scale`` ``(dim,)``
    (Glorot-uniform; absent with ``use_scale=False``).  See the base for the call."""

    WEIGHT_NAMES = ("scale",)

    def __init__(self, use_scale=True, dropout=0.0, causal=False, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self.use_scale = check_bool(use_scale, "use_scale")
        self._init_dense_attention(dropout, causal)
        self._finish_init()

    def build(self, input_shape, device=None) -> None:
        shapes = self._shapes(input_shape)
        if self.use_scale:
            dim = shapes[1][-1]
            if dim is None:
                raise ValueError(f"Layer {self.name!r}: the value's last axis must be "
                                 f"known. Received input_shape={input_shape!r}")
            self.add_weight("scale", (check_count(dim, "value features"),),
                            _initializers.get("glorot_uniform", "scale"), device=device)

    def _input_shape_from_weights(self, weights):
        if not weights:
            return [(None, None, None), (None, None, None)]
        dim = int(weights[0].shape[0])
        return [(None, None, dim), (None, None, dim)]

    def _scores(self, q, k):
        t = _activations.tanh(q.unsqueeze(-2) + k.unsqueeze(-3))
        return (self._weight("scale") * t if self.use_scale else t).sum(-1)

    def get_config(self) -> Dict[str, Any]:
        return {**self._dense_config(), "use_scale": self.use_scale}
