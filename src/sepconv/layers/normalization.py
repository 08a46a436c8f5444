"""Keras' normalization layers: ``BatchNormalization``, ``LayerNormalization``,
``GroupNormalization``, ``UnitNormalization`` and the preprocessing ``Normalization``.

The first two follow tf-keras 2.21 (what R keras wraps) to float rounding; the facts that matter
when moving a trained model (tested against tf-keras in
``tests/test_parity_core_tfkeras.py``):

- ``BatchNormalization`` normalises with ``gamma * (x - mean) / sqrt(var + epsilon) + beta``
  and updates ``moving = moving * momentum + batch * (1 - momentum)``.  The batch variance
  used for the update is the one TensorFlow uses in training: on 4D / 5D float16/32 inputs
  with the channel axis first or last tf-keras runs the *fused* kernel, whose moving
  variance is updated with the unbiased (Bessel-corrected, ``n / (n - 1)``) batch variance,
  and which raises ``epsilon`` to at least ``1.001e-5``; on every other input (2D, 3D,
  float64, other axes) it updates with the biased variance.  The batch itself is always
  normalised with the biased variance.  Keras 3 always uses the biased variance.
  A loader of Keras 3 files sets ``layer.keras_version = 3`` to get Keras 3's numbers.
- ``BatchNormalization`` with ``trainable=False`` runs in inference mode even under
  ``module.train()``, as in tf-keras 2 (the fine-tuning rule).
- Under ``mixed_float16`` / ``mixed_bfloat16`` both compute in float32 and return the
  compute dtype, as tf-keras does.
"""

from __future__ import annotations

import numbers
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from .. import constraints as _constraints
from .. import functional as _functional
from ..kernels import graphs as _graphs
from .. import regularizers as _regularizers
from .._registry import serialize
from .base import Layer, check_bool, check_count
from .core import _Weightless, _check_axis, check_initializer, check_number

_FUSED_MIN_EPSILON = 1.001e-5


class _Normalization(Layer):
    """Shared arguments and weight helpers of the two normalization layers."""

    def _common(self, axis, epsilon, center, scale, beta_initializer, gamma_initializer,
                beta_regularizer, gamma_regularizer, beta_constraint, gamma_constraint):
        self.axis = _check_axis(axis, "axis")
        self.epsilon = check_number(epsilon, "epsilon", 0.0)
        self.center = check_bool(center, "center")
        self.scale = check_bool(scale, "scale")
        self.beta_initializer = check_initializer(beta_initializer, "beta_initializer")
        self.gamma_initializer = check_initializer(gamma_initializer, "gamma_initializer")
        self.beta_regularizer = _regularizers.get(beta_regularizer, "beta_regularizer")
        self.gamma_regularizer = _regularizers.get(gamma_regularizer, "gamma_regularizer")
        self.beta_constraint = _constraints.get(beta_constraint, "beta_constraint")
        self.gamma_constraint = _constraints.get(gamma_constraint, "gamma_constraint")
        self._input_dims: Optional[Tuple[int, ...]] = None

    def _normalize_axes(self, input_shape) -> List[int]:
        rank = len(input_shape)
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        out = []
        for a in axes:
            if not -rank <= a < rank:
                raise ValueError(f"Invalid value for argument `axis`. Expected axes of an "
                                 f"input of rank {rank}. Received axis={self.axis} and an "
                                 f"input of shape {tuple(input_shape)}")
            out.append(a % rank)
        if len(set(out)) != len(out):
            raise ValueError(f"Invalid value for argument `axis`: duplicate axes. "
                             f"Received axis={self.axis}")
        for a in out:
            if input_shape[a] is None:
                raise ValueError(f"Layer {self.name!r}: input axis {a} of input shape "
                                 f"{tuple(input_shape)} should have a defined dimension")
        return sorted(out)

    def _geometry(self, shape):
        """Axes and broadcast shape of the statistics for an input of ``shape`` (the layer
        takes any rank that has its axes, as Keras' weights do not fix the rank); the last
        shape's answer is kept (not while compiling: its shapes may be symbolic)."""
        symbolic = torch.compiler.is_compiling() or torch.compiler.is_exporting()
        key = (shape, self.axis if not isinstance(self.axis, list) else tuple(self.axis))
        last = None if symbolic else self.__dict__.get("_last_geometry")
        if last is not None and last[0] == key:
            return last[1]
        axes = self._normalize_axes(shape)
        geometry = axes, tuple(int(shape[a]) if a in axes else 1 for a in range(len(shape)))
        if not symbolic:
            self.__dict__["_last_geometry"] = (key, geometry)
        return geometry

    def _build_dims(self, input_shape):
        axes, broadcast = self._geometry(input_shape)
        self._input_dims = tuple(int(input_shape[a]) for a in axes)
        return axes, broadcast

    def _shape_for_weights(self, weights):
        """An input shape with the weights' sizes on ``axis`` (other sizes unknown)."""
        if not weights:
            return None
        shape = tuple(int(s) for s in weights[0].shape)
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        if len(shape) == len(axes):  # one size per axis
            rank = max([a + 1 for a in axes if a >= 0] + [-a + 1 for a in axes if a < 0]
                       + [2])
            out = [None] * rank
            for a, d in zip(sorted(a % rank for a in axes), shape):
                out[a] = d
            return tuple(out)
        return tuple(None if s == 1 and i not in [a % len(shape) for a in axes] else s
                     for i, s in enumerate(shape))

    def _add_buffer(self, name, shape, initializer, device):
        value = initializer(tuple(shape), dtype=self.dtype_policy.variable, device=device)
        self.register_buffer(name, torch.as_tensor(value).detach().clone())
        self._weight_order.append(name)

    def _check_input(self, shape) -> None:
        try:
            axes, _ = self._geometry(shape)
        except ValueError as err:
            raise ValueError(f"Layer {self.name!r} expects input with sizes "
                             f"{self._input_dims} on axis={self.axis}: {err}") from None
        if tuple(shape[a] for a in axes) != self._input_dims:
            raise ValueError(f"Layer {self.name!r} expects input with sizes "
                             f"{self._input_dims} on axis={self.axis}. Received input of "
                             f"shape {shape}")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def _compute(self, x: torch.Tensor):
        """Input cast to float32 under 16-bit compute (as tf-keras does), else as is."""
        if x.dtype in (torch.float16, torch.bfloat16):
            return x.float()
        return x

    @staticmethod
    def _param(w, dtype, broadcast):
        w = w if w.dtype == dtype else w.to(dtype)
        return w.reshape(broadcast)

    def _norm_config(self) -> Dict[str, Any]:
        return {"axis": self.axis, "epsilon": self.epsilon, "center": self.center,
                "scale": self.scale, "beta_initializer": serialize(self.beta_initializer),
                "gamma_initializer": serialize(self.gamma_initializer),
                "beta_regularizer": serialize(self.beta_regularizer),
                "gamma_regularizer": serialize(self.gamma_regularizer),
                "beta_constraint": serialize(self.beta_constraint),
                "gamma_constraint": serialize(self.gamma_constraint)}

    def extra_repr(self) -> str:
        return (f"{self._input_dims if self.built else '?'}, axis={self.axis}, "
                f"epsilon={self.epsilon}, name={self.name!r}")


class BatchNormalization(_Normalization):
    """Keras' ``BatchNormalization`` (tf-keras 2.21 numbers; see the module docstring).

    Weights in Keras' ``get_weights()`` order: ``gamma`` (if ``scale``), ``beta`` (if
    ``center``), ``moving_mean``, ``moving_variance``, each of shape ``(channels,)`` for one
    ``axis`` (the input's size on every listed axis, 1 elsewhere, for several axes).
    ``gamma`` and ``beta`` are parameters; the moving statistics are buffers (in
    ``state_dict`` and ``get_weights``, not trained by an optimizer).

    In ``module.eval()`` the layer uses the moving statistics.  In ``module.train()`` (and
    ``trainable=True``) it normalises with the batch statistics and updates the moving ones
    (``moving = moving * momentum + batch * (1 - momentum)``).  ``synchronized`` is accepted
    for tf-keras' signature (one process: no cross-replica reduction).
    """

    WEIGHT_NAMES = ("gamma", "beta", "moving_mean", "moving_variance")

    def __init__(self, axis=-1, momentum=0.99, epsilon=0.001, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, synchronized=False, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self._common(axis, epsilon, center, scale, beta_initializer, gamma_initializer,
                     beta_regularizer, gamma_regularizer, beta_constraint, gamma_constraint)
        self.momentum = check_number(momentum, "momentum", 0.0, 1.0)
        self.moving_mean_initializer = check_initializer(moving_mean_initializer,
                                                         "moving_mean_initializer")
        self.moving_variance_initializer = check_initializer(moving_variance_initializer,
                                                             "moving_variance_initializer")
        self.synchronized = check_bool(synchronized, "synchronized")
        #: 2: tf-keras' training numbers (the default); 3: Keras 3's (set by a loader for a
        #: Keras 3 file): always the biased variance, no epsilon floor,
        #: ``moving * momentum + batch * (1 - momentum)`` in the weights' dtype.
        self.keras_version = 2
        if self.dtype_policy.variable in (torch.float16, torch.bfloat16):
            # tf-keras keeps a 16-bit batch norm's weights in float32 (its _param_dtype).
            self.dtype_policy.variable = torch.float32
        self._finish_init()

    @classmethod
    def from_config(cls, config):
        for key in ("renorm", "virtual_batch_size"):
            if config.get(key):
                raise ValueError(f"BatchNormalization {config.get('name')!r}: {key}="
                                 f"{config[key]!r} is not supported by sepconv")
        return super().from_config(config)

    def build(self, input_shape, device=None) -> None:
        axes, broadcast = self._build_dims(input_shape)
        shape = self._input_dims if len(axes) == 1 else tuple(broadcast)
        if self.scale:
            self.add_weight("gamma", shape, self.gamma_initializer, self.gamma_regularizer,
                            self.gamma_constraint, device)
        if self.center:
            self.add_weight("beta", shape, self.beta_initializer, self.beta_regularizer,
                            self.beta_constraint, device)
        self._add_buffer("moving_mean", shape, self.moving_mean_initializer, device)
        self._add_buffer("moving_variance", shape, self.moving_variance_initializer, device)

    def _input_shape_from_weights(self, weights):
        return self._shape_for_weights(weights)

    def _fused(self, axes, rank, dtype) -> bool:
        """Whether tf-keras runs its fused kernel here: a 4D/5D input, one axis first or
        last, a float16/bfloat16/float32 compute dtype."""
        return (rank in (4, 5) and len(axes) == 1 and axes[0] in (1, rank - 1)
                and dtype != torch.float64)

    def forward(self, inputs) -> torch.Tensor:
        """``inputs``: any shape with the channel size(s) at ``axis``."""
        x = self._prepare_input(inputs)
        axes, broadcast = self._geometry(tuple(x.shape))
        fused = self.keras_version == 2 and self._fused(axes, x.dim(), x.dtype)
        epsilon = max(self.epsilon, _FUSED_MIN_EPSILON) if fused else self.epsilon
        xc = self._compute(x)
        dtype = xc.dtype
        if self.training and self.trainable:
            gamma = self._param(self.gamma, dtype, broadcast) if self.scale else None
            beta = self._param(self.beta, dtype, broadcast) if self.center else None
            reduce = [a for a in range(x.dim()) if a not in axes]
            y, mean, variance = _functional.normalize(xc, reduce, gamma, beta, epsilon)
            count = 1
            for a in reduce:
                count *= x.shape[a]
            self._update_moving(mean.detach(), variance.detach(), count, fused)
        else:
            y = _functional.scale_offset(xc, *self._inference_factors(dtype, broadcast,
                                                                       epsilon))
        return y if y.dtype == x.dtype else y.to(x.dtype)

    def _inference_factors(self, dtype, broadcast, epsilon) -> tuple:
        """``functional.batch_norm_factors`` of the moving statistics, ``gamma`` and
        ``beta``; kept from one call to the next (:func:`graphs.remembered`) while those
        four tensors (their storage, version counters and bits), the dtype, the broadcast
        shape and ``epsilon`` stay the same, and no gradient, trace or transform needs the
        computation itself.  (An eval model recomputed them on every call: 8 small ops and as many reshapes, 3-4x the
        time of the normalization itself at batch 1 of the main job's blocks.)"""
        weights, buffers = self._parameters, self._buffers  # (no Module.__getattr__ each)
        params = (buffers["moving_mean"], buffers["moving_variance"],
                  weights["gamma"] if self.scale else None,
                  weights["beta"] if self.center else None)

        def compute():
            mean, variance, gamma, beta = (None if p is None else
                                           self._param(p, dtype, broadcast) for p in params)
            return _functional.batch_norm_factors(mean, variance, beta, gamma, epsilon)

        return _graphs.remembered(self, "inference factors", params, compute,
                                  (dtype, tuple(broadcast), epsilon))

    @torch.no_grad()
    def _update_moving(self, mean, variance, count, fused) -> None:
        if self.keras_version == 3:
            for name, value in (("moving_mean", mean), ("moving_variance", variance)):
                buf = getattr(self, name)
                value = value.reshape(buf.shape).to(buf.dtype)
                buf.copy_(buf * self.momentum + value * (1.0 - self.momentum))
            return
        # tf-keras' decay is the float32 constant 1 - momentum, whatever the dtype.
        decay = float(np.float32(1.0 - self.momentum))
        if fused and count > 1:
            variance = variance * (count / (count - 1))
        shape = self.moving_mean.shape
        for name, value in (("moving_mean", mean), ("moving_variance", variance)):
            buf = getattr(self, name)
            value = value.reshape(shape).to(buf.dtype)
            if fused:  # TF's fused kernel: (1 - f) * moving + f * batch
                buf.mul_(1.0 - decay).add_(value * decay)
            else:      # tf-keras' assign_moving_average: moving -= (moving - batch) * decay
                buf.sub_((buf - value) * decay)

    def get_config(self) -> Dict[str, Any]:
        config = self.base_config()
        config.update(self._norm_config())
        config.update({
            "momentum": self.momentum,
            "moving_mean_initializer": serialize(self.moving_mean_initializer),
            "moving_variance_initializer": serialize(self.moving_variance_initializer),
        })
        if self.synchronized:
            config["synchronized"] = True
        return config


class LayerNormalization(_Normalization):
    """Keras' ``LayerNormalization``: each sample normalised over ``axis`` (int or list),
    ``gamma * (x - mean) / sqrt(var + epsilon) + beta`` with the biased variance; ``gamma``
    and ``beta`` have the input's sizes on ``axis`` (Keras' order: gamma, beta)."""

    WEIGHT_NAMES = ("gamma", "beta")

    def __init__(self, axis=-1, epsilon=0.001, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self._common(axis, epsilon, center, scale, beta_initializer, gamma_initializer,
                     beta_regularizer, gamma_regularizer, beta_constraint, gamma_constraint)
        self._finish_init()

    @classmethod
    def from_config(cls, config):
        if config.get("rms_scaling"):
            raise ValueError(f"LayerNormalization {config.get('name')!r}: Keras 3's "
                             f"rms_scaling=True is not supported by sepconv")
        return super().from_config(config)

    def build(self, input_shape, device=None) -> None:
        self._build_dims(input_shape)
        if self.scale:
            self.add_weight("gamma", self._input_dims, self.gamma_initializer,
                            self.gamma_regularizer, self.gamma_constraint, device)
        if self.center:
            self.add_weight("beta", self._input_dims, self.beta_initializer,
                            self.beta_regularizer, self.beta_constraint, device)

    def _input_shape_from_weights(self, weights):
        return self._shape_for_weights(weights)

    def forward(self, inputs) -> torch.Tensor:
        x = self._prepare_input(inputs)
        axes, broadcast = self._geometry(tuple(x.shape))
        xc = self._compute(x)
        gamma = self._param(self.gamma, xc.dtype, broadcast) if self.scale else None
        beta = self._param(self.beta, xc.dtype, broadcast) if self.center else None
        y = _functional.layer_normalization(xc, axes, gamma, beta, self.epsilon)
        return y.to(x.dtype)

    def get_config(self) -> Dict[str, Any]:
        config = self.base_config()
        config.update(self._norm_config())
        return config


class GroupNormalization(_Normalization):
    """Keras' ``GroupNormalization``: the ``channels`` of ``axis`` (an int, default the
    last) split into ``groups`` consecutive groups (``-1``: one per channel, set at build
    as tf-keras does); each sample's group is normalised over its channels and every other
    non-batch axis, ``gamma * (x - mean) / sqrt(var + epsilon) + beta`` with the biased
    variance, in tf-keras 2.21's order of operations (``tf.nn.weighted_moments`` with
    weights one, or the mask, then ``tf.nn.batch_normalization``; see
    :func:`sepconv.functional.group_normalization`).  Input ``(batch, ...)`` of the rank
    it was built for, ``channels % groups == 0``; the output has the input's shape.
    Weights in Keras' order: ``gamma``, ``beta``, each ``(channels,)``.

    ``forward(inputs, mask=None)``: a mask (broadcast to the input from the right, as
    ``tf.broadcast_to``) weights the moments, as tf-keras' ``call(inputs, mask)``.
    """

    WEIGHT_NAMES = ("gamma", "beta")

    def __init__(self, groups=32, axis=-1, epsilon=0.001, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        if isinstance(groups, numbers.Integral) and not isinstance(groups, bool) and \
                int(groups) == -1:
            self.groups = -1
        else:
            self.groups = check_count(groups, "groups")
        if isinstance(axis, (list, tuple)):
            raise TypeError(f"Invalid type for argument `axis`. GroupNormalization takes one "
                            f"axis (an int). Received axis={axis!r}")
        self._common(axis, epsilon, center, scale, beta_initializer, gamma_initializer,
                     beta_regularizer, gamma_regularizer, beta_constraint, gamma_constraint)
        self._rank: Optional[int] = None
        self._finish_init()

    def build(self, input_shape, device=None) -> None:
        rank = len(input_shape)
        if not -rank <= self.axis < rank or self.axis % rank == 0:
            raise ValueError(f"Invalid value for argument `axis`. Expected a non-batch axis "
                             f"of the input of shape {tuple(input_shape)}. Received "
                             f"axis={self.axis}")
        dim = input_shape[self.axis]
        if dim is None:
            raise ValueError(f"Axis {self.axis} of input tensor should have a defined "
                             f"dimension but the layer received an input with shape "
                             f"{tuple(input_shape)}.")
        if self.groups == -1:
            self.groups = int(dim)
        if dim < self.groups:
            raise ValueError(f"Number of groups ({self.groups}) cannot be more than the "
                             f"number of channels ({dim}).")
        if dim % self.groups:
            raise ValueError(f"Number of groups ({self.groups}) must be a multiple of the "
                             f"number of channels ({dim}).")
        self._rank = rank
        self._input_dims = (int(dim),)
        if self.scale:
            self.add_weight("gamma", (dim,), self.gamma_initializer, self.gamma_regularizer,
                            self.gamma_constraint, device)
        if self.center:
            self.add_weight("beta", (dim,), self.beta_initializer, self.beta_regularizer,
                            self.beta_constraint, device)

    def _check_input(self, shape) -> None:
        if len(shape) != self._rank or shape[self.axis] != self._input_dims[0]:
            raise ValueError(f"Layer {self.name!r} expects input of rank {self._rank} with "
                             f"{self._input_dims[0]} channels on axis {self.axis}. Received "
                             f"input of shape {shape}")

    def forward(self, inputs, mask=None) -> torch.Tensor:
        """``inputs``: ``(batch, ...)``; ``mask``: optional, broadcastable to it."""
        x = self._prepare_input(inputs)
        if mask is not None and not isinstance(mask, torch.Tensor):
            mask = torch.as_tensor(np.asarray(mask))
        xc = self._compute(x)
        y = _functional.group_normalization(
            xc, self.groups, self.axis % x.dim(),
            self._param(self.gamma, xc.dtype, (-1,)) if self.scale else None,
            self._param(self.beta, xc.dtype, (-1,)) if self.center else None,
            self.epsilon, None if mask is None else mask.to(x.device))
        return y.to(x.dtype)

    def get_config(self) -> Dict[str, Any]:
        config = self.base_config()
        config["groups"] = self.groups
        config.update(self._norm_config())
        return config


class UnitNormalization(_Weightless):
    """Keras' ``UnitNormalization``: each sample scaled to unit L2 norm over ``axis`` (an
    int or a list), tf-keras' ``tf.math.l2_normalize``: ``x * rsqrt(max(sum(x**2, axis),
    1e-12))``.  Input of any rank that has ``axis``; the output has its shape."""

    supports_masking = True

    def __init__(self, axis=-1, input_shape=None, batch_input_shape=None, batch_size=None,
                 dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        if not isinstance(axis, (list, tuple, numbers.Integral)) or isinstance(axis, bool):
            raise TypeError(f"Invalid value for `axis` argument: expected an int or a "
                            f"list/tuple of ints. Received: axis={axis!r}")
        self.axis = _check_axis(list(axis) if isinstance(axis, tuple) else axis, "axis")
        self._finish_init()

    def _check_input(self, shape) -> None:
        rank = len(shape)
        for a in self.axis if isinstance(self.axis, list) else [self.axis]:
            if not -rank <= a < rank:
                raise ValueError(f"Invalid value for argument `axis`. Expected axes of an "
                                 f"input of rank {rank}. Received axis={self.axis} and an "
                                 f"input of shape {shape}")

    def call(self, x):
        return _functional.l2_normalize(x, self.axis, 1e-12)

    def get_config(self) -> Dict[str, Any]:
        return {**self.base_config(), "axis": self.axis}


# Keras' masks pass through the normalizations unchanged (tf-keras' supports_masking).
_Normalization.supports_masking = True


class Normalization(Layer):
    """Keras' preprocessing ``Normalization`` (R: ``layer_normalization``): ``(x - mean) /
    max(sqrt(variance), 1e-7)`` (``invert=True``: ``mean + x * max(sqrt(variance),
    1e-7)``), with one mean and variance per index of the kept ``axis`` (default -1, the
    features; ``None``: one scalar for everything) broadcast over the other axes.

    ``mean`` / ``variance`` given: constants (no weights), as in Keras.  Otherwise the
    layer holds Keras' non-trainable weights ``mean``, ``variance`` (shape: the input's
    sizes on the kept axes) and ``count`` (int64 scalar), set from a model file or by
    :meth:`adapt` on data, which computes them as tf-keras' ``adapt`` does (batches
    folded in with its running formula).  Input ``(batch, ...)`` of any rank that has the
    kept axes; the output has the input's shape.
    """

    WEIGHT_NAMES = ("mean", "variance", "count")

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        if axis is None:
            axis = []
        self.axis = _check_axis(axis, "axis")
        if (mean is None) != (variance is None):
            raise ValueError(f"When setting values directly, both `mean` and `variance` "
                             f"must be set. Received mean={mean!r} and variance={variance!r}")
        self.input_mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.input_variance = None if variance is None else np.asarray(variance,
                                                                       dtype=np.float64)
        self.invert = check_bool(invert, "invert")
        self._keep: Optional[List[int]] = None
        self._broadcast: Optional[List[int]] = None
        shape = self.batch_input_shape
        if shape is not None and all(shape[a % len(shape)] is not None for a in self._axes()
                                     if -len(shape) <= a < len(shape)):
            self._finish_init()  # (tf-keras writes unknown sizes after adapt on a dataset)

    def _axes(self) -> List[int]:
        return self.axis if isinstance(self.axis, list) else [self.axis]

    def build(self, input_shape, device=None) -> None:
        rank = len(input_shape)
        keep = []
        for a in self._axes():
            if not -rank <= a < rank:
                raise ValueError(f"All `axis` values must be in the range [-ndim, ndim). "
                                 f"Received axis={self.axis} and an input of shape "
                                 f"{tuple(input_shape)}")
            keep.append(a % rank)
        keep = sorted(set(keep))
        for a in keep:
            if input_shape[a] is None:
                raise ValueError(f"All `axis` values to be kept must have a known size. "
                                 f"Received axis={self.axis} and input shape "
                                 f"{tuple(input_shape)}")
        self._keep = keep
        self._broadcast = [int(input_shape[a]) if a in keep else 1 for a in range(rank)]
        shape = tuple(int(input_shape[a]) for a in keep)
        if self.input_mean is None:
            for wname, init in (("mean", torch.zeros), ("variance", torch.ones)):
                self.register_buffer(wname, init(shape, dtype=self.dtype_policy.variable,
                                                 device=device))
                self._weight_order.append(wname)
            self.register_buffer("count", torch.zeros((), dtype=torch.int64, device=device))
            self._weight_order.append("count")
        else:
            try:
                for value, what in ((self.input_mean, "mean"),
                                    (self.input_variance, "variance")):
                    np.broadcast_to(value, shape)
            except ValueError:
                raise ValueError(f"Layer {self.name!r}: `{what}` of shape "
                                 f"{np.shape(value)} does not broadcast to {shape}, the "
                                 f"input's sizes on axis={self.axis}") from None

    def _check_input(self, shape) -> None:
        if len(shape) != len(self._broadcast) or \
                any(shape[a] != self._broadcast[a] for a in self._keep):
            raise ValueError(f"Layer {self.name!r} expects input of rank "
                             f"{len(self._broadcast)} with sizes "
                             f"{[self._broadcast[a] for a in self._keep]} on axis="
                             f"{self.axis}. Received input of shape {shape}")

    def _statistics(self, dtype, device) -> Tuple[torch.Tensor, torch.Tensor]:
        shape = tuple(self._broadcast[a] for a in self._keep)
        if self.input_mean is None:
            mean, variance = self.mean, self.variance
        else:
            mean = torch.as_tensor(np.broadcast_to(self.input_mean, shape).copy())
            variance = torch.as_tensor(np.broadcast_to(self.input_variance, shape).copy())
        return (mean.to(dtype=dtype, device=device).reshape(self._broadcast),
                variance.to(dtype=dtype, device=device).reshape(self._broadcast))

    def forward(self, inputs) -> torch.Tensor:
        """``inputs``: ``(batch, ...)``, floats or integers (cast to the compute dtype)."""
        x = self._prepare_input(inputs)
        mean, variance = self._statistics(x.dtype, x.device)
        scale = torch.clamp(torch.sqrt(variance), min=1e-7)
        return mean + x * scale if self.invert else (x - mean) / scale

    @torch.no_grad()
    def adapt(self, data, batch_size: Optional[int] = None) -> "Normalization":
        """Set ``mean``, ``variance`` and ``count`` from ``data`` (a tensor, an array, or an
        iterable of batches), as tf-keras' ``adapt``: per batch ``tf.nn.moments`` over the
        reduced axes, folded into the running values by counts.  ``batch_size`` splits one
        array into batches (tf-keras' default: 32).  Returns the layer."""
        if self.input_mean is not None:
            raise ValueError(f"Cannot adapt a Normalization layer that is initialized with "
                             f"static `mean` and `variance`. Received mean="
                             f"{self.input_mean.tolist()}")
        if isinstance(data, (torch.Tensor, np.ndarray)):
            data = torch.as_tensor(np.asarray(data) if isinstance(data, np.ndarray) else data)
            step = batch_size or 32
            batches = [data[i:i + step] for i in range(0, data.shape[0], step)]
        else:
            batches = [torch.as_tensor(np.asarray(b)) for b in data]
        if not batches:
            raise ValueError(f"Layer {self.name!r}: adapt() received no data")
        if not self.built:
            self._build_checked(tuple(batches[0].shape), device=None)
        self.count.zero_()
        self.mean.zero_()
        self.variance.fill_(1.0)
        dtype = self.mean.dtype
        for b in batches:
            b = b.to(dtype)
            self._check_input(tuple(b.shape))
            reduce = [a for a in range(b.dim()) if a not in self._keep]
            if reduce:
                bmean, bvar = (m.reshape(self.mean.shape) for m in
                               _functional.moments(b, reduce))
                bcount = int(np.prod([b.shape[a] for a in reduce]))
            else:
                bmean, bvar, bcount = b, torch.zeros_like(b), 1
            total = bcount + int(self.count)
            w = torch.tensor(bcount, dtype=dtype) / torch.tensor(total, dtype=dtype)
            keep = 1.0 - w
            mean = self.mean * keep + bmean * w
            var = (self.variance + (self.mean - mean) ** 2) * keep + \
                (bvar + (bmean - mean) ** 2) * w
            self.mean.copy_(mean)
            self.variance.copy_(var)
            self.count.fill_(total)
        return self

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> Dict[str, Any]:
        return {**self.base_config(), "axis": self.axis, "invert": self.invert,
                "mean": None if self.input_mean is None else self.input_mean.tolist(),
                "variance": None if self.input_variance is None
                else self.input_variance.tolist()}


class RMSNormalization(_Normalization):
    """Keras 3's ``RMSNormalization`` (R keras3: ``layer_rms_normalization``; tf-keras 2.21
    has none): each sample scaled by the root mean square of its values over ``axis``,
    ``x * rsqrt(mean(x ** 2 over axis) + epsilon) * scale``, no centring.  ``axis`` an int
    or a list of ints; ``scale`` (initialised to ones) has the input's sizes on the sorted
    axes.  Input of any rank holding ``axis``; the output has the input's shape.

    As in Keras 3, building turns ``axis`` into a sorted list (``get_config`` then writes
    ``[-1]``), and 16-bit inputs compute in float32 (under ``mixed_float16`` the scale is
    rounded to float16 first, as Keras' autocast does).  Keras 3.15 computes only trailing
    axes right: its torch backend hands ``axis`` to ``torch.nn.functional.rms_norm``, which
    normalises the last axes (an error for ``axis=1`` of a 3D input), and its other
    backends broadcast ``scale`` against the last axes.  sepconv normalises over the axes
    given with ``scale`` on those axes, as ``LayerNormalization`` does.  Keras 3.15's torch
    backend also computes float64 inputs in float32 (its ``result_type`` of a torch
    float64 and float32 is float32); sepconv computes float64 in float64.

    In a stream (``sepconv.stream``) it is a per-step layer when ``axis`` is the channel
    axis alone (``-1`` / ``2`` channels_last, ``1`` channels_first).
    """

    KERAS3_ONLY = True  # tf-keras 2 has no such class: .keras files only

    WEIGHT_NAMES = ("scale",)

    def __init__(self, axis=-1, epsilon=1e-6, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self.axis = _check_axis(axis, "axis")
        if isinstance(self.axis, list) and not self.axis:
            raise ValueError("Invalid value for argument `axis`. Expected an int or a "
                             "non-empty list of ints. Received axis=[]")
        self.epsilon = check_number(epsilon, "epsilon", 0.0)
        self._input_dims = None
        self._finish_init()

    def build(self, input_shape, device=None) -> None:
        self._build_dims(input_shape)
        self.add_weight("scale", self._input_dims, check_initializer("ones", "scale"),
                        device=device)
        # Keras 3: build sorts a list axis and wraps an int one
        self.axis = sorted(self.axis) if isinstance(self.axis, list) else [self.axis]

    def _input_shape_from_weights(self, weights):
        return self._shape_for_weights(weights)

    def forward(self, inputs) -> torch.Tensor:
        x = self._prepare_input(inputs)
        axes, _ = self._geometry(tuple(x.shape))
        return _functional.rms_normalization(x, axes, self._weight("scale"), self.epsilon)

    def get_config(self) -> Dict[str, Any]:
        return {**self.base_config(), "axis": self.axis, "epsilon": self.epsilon}
