"""Keras' ``SpectralNormalization`` wrapper (R ``layer_spectral_normalization``): the
Lipschitz control GAN and vocoder discriminators (MelGAN, HiFi-GAN) put around their
``Conv1D`` / ``Conv2D`` / ``Dense`` layers.

It wraps a layer the way :class:`~sepconv.layers.core.TimeDistributed` does (the layer
or its Keras config dict, resolved by :func:`~sepconv.layers.base.layer_from_config`;
the config nests the layer's) and adds one weight of its own, ``vector_u``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from .. import initializers as _initializers
from .base import DTypePolicy, Layer, check_count, wrapped_layer

#: The weight a wrapped layer must have, in tf-keras' order of preference.
_KERNEL_NAMES = ("kernel", "embeddings")
#: Layers whose weights sepconv keeps on the layer but Keras on its cell: Keras' layer has
#: no ``kernel`` attribute, so tf-keras and Keras 3 refuse to wrap it (their cells pass).
_KERNEL_ON_CELL = ("LSTM", "GRU", "SimpleRNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")


def _l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """``tf.math.l2_normalize(x)`` over all elements: ``x * rsqrt(max(sum(x**2), 1e-12))``."""
    return x * torch.rsqrt(torch.clamp((x * x).sum(), min=1e-12))


def spectral_normalize(kernel: torch.Tensor, vector_u: torch.Tensor,
                       power_iterations: int = 1):
    """tf-keras 2.21's ``SpectralNormalization.normalize_weights``: ``power_iterations``
    steps of the power method on ``kernel`` seen as a matrix ``(-1, kernel.shape[-1])``,
    started from ``vector_u`` ``(1, kernel.shape[-1])``; returns ``(kernel / sigma,
    new vector_u)`` with ``sigma = v W u^T`` the estimate of the largest singular value.
    An all-zero kernel is returned unchanged with ``vector_u`` (tf-keras' ``tf.cond``).
    Nothing here is differentiated (tf-keras stops the gradient at ``u`` and ``v``, and
    assigns the result to the kernel variable)."""
    with torch.no_grad():
        if not bool(torch.any(kernel != 0)):
            return kernel.clone(), vector_u.clone()
        w = kernel.reshape(-1, kernel.shape[-1])
        u = vector_u.to(w.dtype)
        v = u
        for _ in range(power_iterations):
            v = _l2_normalize(u @ w.T)
            u = _l2_normalize(v @ w)
        sigma = (v @ w) @ u.T
        return (w / sigma).reshape(kernel.shape), u.to(vector_u.dtype)


class SpectralNormalization(Layer):
    """Keras' ``SpectralNormalization(layer, power_iterations=1)``: keeps the spectral norm
    of ``layer``'s kernel near 1 (Miyato et al., 2018).

    ``layer``: a sepconv layer with a ``kernel`` (``Dense``, ``Conv1D`` / ``2D`` / ``3D``,
    the transposed convolutions, ...) or an ``embeddings`` weight (``Embedding``), or its
    Keras config dict; anything else is refused at construction (tf-keras refuses it at
    build).  ``power_iterations``: steps of the power method per training call.

    In training (the module's mode, as for ``Dropout``: a new torch module is in training
    mode; or ``training=True`` in the call, which overrides it) each call does what tf-keras
    2.21 does: ``power_iterations`` power-method steps from ``vector_u`` estimate the
    largest singular value ``sigma`` of the kernel seen as a ``(-1, kernel.shape[-1])``
    matrix, then the kernel **itself** is overwritten with ``kernel / sigma`` and
    ``vector_u`` with the new estimate (an all-zero kernel is left alone), and the wrapped
    layer runs on it.  The gradient reaches the kernel as if the layer had been called on
    the normalized kernel (tf-keras differentiates through the assigned value, not through
    ``sigma``), so an optimizer step updates the normalized kernel.  Two calls before one
    ``backward`` (a discriminator on real, then on fake data) work: each normalizes again,
    and each gradient is taken at the kernel it used.  In inference (``module.eval()``, a
    loaded model) the wrapped layer runs on the kernel as stored, unchanged.

    Weights, in ``get_weights()`` order: the wrapped layer's (``kernel``, ``bias``, ...),
    then ``vector_u`` ``(1, kernel.shape[-1])`` (a buffer: not trained; initialised from
    a normal of stddev 0.02 truncated at two deviations, in the kernel's dtype).  tf-keras
    2.21 and Keras 3's ``.h5`` files have that order; Keras 3's ``get_weights()`` puts
    ``vector_u`` second (its ``.keras`` files are read and written in their own layout).

    The wrapped layer's penalties and constraints are its own (``self.layer.losses``,
    :func:`sepconv.regularization_loss`); ``trainable`` freezes it too.  ``dtype``:
    ``None`` takes the wrapped layer's.  Under a ``mixed_*`` policy the power method runs
    in the compute dtype (float16 / bfloat16) on the float32 kernel and ``vector_u`` read
    in it, and its results are stored in float32, as tf-keras' autocast variables do
    (tested: half-precision values, a rounding of a sum from tf-keras').  tf-keras 2.21's
    own class builds only where ``tf.keras`` is tf-keras (``TF_USE_LEGACY_KERAS=1``):
    otherwise it fails at build on Keras 3's ``InputSpec``.
    """

    def __init__(self, layer, power_iterations=1, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        layer = wrapped_layer(layer)
        names = set(layer.WEIGHT_NAMES) | set(layer._weight_order)
        kernel = next((n for n in _KERNEL_NAMES if n in names), None)
        if kernel is None or type(layer).__name__ in _KERNEL_ON_CELL:
            raise ValueError(f"Invalid value for argument `layer`: {type(layer).__name__} "
                             f"object has no attribute 'kernel' nor 'embeddings'. Received "
                             f"layer={layer.name!r}")
        self.power_iterations = check_count(power_iterations, "power_iterations")
        self.layer = layer
        self._kernel_name = kernel
        if dtype is None:
            self.dtype_policy = DTypePolicy(layer.dtype_policy.name)
        if trainable is not None:
            self.layer.trainable = self.trainable
        if self.batch_input_shape is None and layer.batch_input_shape is not None:
            self.batch_input_shape = layer.batch_input_shape
        self._finish_init()
        if not self.built and layer.built:
            self.build(layer.batch_input_shape or (None,), device=None)

    # -- weights ---------------------------------------------------------------------------
    def build(self, input_shape, device=None) -> None:
        if not self.layer.built:
            self.layer._build_checked(tuple(input_shape), device=device)
        kernel = getattr(self.layer, self._kernel_name)
        if device is None:
            device = kernel.device
        init = _initializers.TruncatedNormal(stddev=0.02)
        value = init((1, kernel.shape[-1]), dtype=kernel.dtype, device=device)
        self.register_buffer("vector_u", torch.as_tensor(value).detach().clone())
        self._weight_order.append("vector_u")

    @property
    def kernel(self) -> torch.Tensor:
        """The wrapped layer's ``kernel`` (``embeddings`` for ``Embedding``)."""
        return getattr(self.layer, self._kernel_name)

    @property
    def weights(self):
        return self.layer.weights + ([self.vector_u] if self.built else [])

    def get_weights(self):
        own = [self.vector_u.detach().cpu().numpy()] if self.built else []
        return self.layer.get_weights() + own

    def _input_shape_from_weights(self, weights):
        return self.layer._input_shape_from_weights(list(weights)[:-1])

    def set_weights(self, weights) -> None:
        """The wrapped layer's weights, then ``vector_u`` (tf-keras' order)."""
        weights = list(weights)
        self._build_from_weights(weights)
        n = len(self.layer.weights)
        if len(weights) != n + 1:
            raise ValueError(f"Layer {self.name!r} expects {n + 1} weights (those of "
                             f"{self.layer.name!r}, then vector_u), but received "
                             f"{len(weights)} weights")
        self.layer.set_weights(weights[:n])
        value = torch.as_tensor(weights[n]) if not isinstance(weights[n], torch.Tensor) \
            else weights[n].detach().cpu()
        if tuple(value.shape) != tuple(self.vector_u.shape):
            raise ValueError(f"Weight `vector_u` of layer {self.name!r} has shape "
                             f"{tuple(self.vector_u.shape)}; received a value of shape "
                             f"{tuple(value.shape)}")
        with torch.no_grad():
            self.vector_u.copy_(value.to(self.vector_u.dtype))

    def keras3_arrays(self, tree: Dict[str, Any]):
        """The arrays of a ``.keras`` file's group for this layer in ``get_weights`` order
        (the model loader's hook).  Both Kerases write own ``vars`` ``[kernel, vector_u]``
        (the kernel twice) and the wrapped layer's variables under ``layer``."""
        from ..interop.files import collect_tree

        inner = tree["groups"].get("layer")
        if inner is None or len(tree["vars"]) != 2:
            raise ValueError("a SpectralNormalization group of a .keras file holds its "
                             "kernel and vector_u, and its layer's group 'layer'")
        return collect_tree(inner) + [tree["vars"][1]]

    def h5_weight_names(self):
        """tf-keras' ``.h5`` names: the wrapped layer's weights under the wrapper's name
        (``spectral_normalization/kernel:0``), then ``vector_u``."""
        names = getattr(self.layer, "h5_weight_names", None)
        inner = list(names()) if callable(names) else list(self.layer._weight_order)
        return inner + ["vector_u"]

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        if not self.built:
            inner = prefix + "layer."
            saved = [state_dict[inner + n] for n in self.layer.WEIGHT_NAMES
                     if inner + n in state_dict]
            shape = self.layer._input_shape_from_weights(saved) if saved else None
            if shape is not None:
                self._build_checked(shape, device=None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)

    def constrained_parameters(self):
        return []

    @property
    def losses(self):
        return []

    # -- computing -------------------------------------------------------------------------
    def normalize_weights(self):
        """``(kernel / sigma, new vector_u)`` from the current kernel and ``vector_u``, as
        tf-keras' ``normalize_weights`` (nothing is assigned).  Under a ``mixed_*`` policy
        it runs in the compute dtype, on the kernel and ``vector_u`` read in it, as
        tf-keras' autocast variables are read in the call; the results are stored back in
        the variables' dtype (where both the wrapper's and the layer's policies are
        ``mixed_*``: tf-keras' autocast kernel)."""
        kernel, u = self.kernel, self.vector_u
        compute = self.dtype_policy.compute
        mixed = self.dtype_policy.name.startswith("mixed_") and \
            self.layer.dtype_policy.name.startswith("mixed_")  # autocast variables
        if mixed and compute != kernel.dtype:
            k, new_u = spectral_normalize(kernel.detach().to(compute), u.to(compute),
                                          self.power_iterations)
            return k.to(kernel.dtype), new_u.to(u.dtype)
        return spectral_normalize(kernel, u, self.power_iterations)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def forward(self, inputs, training: Optional[bool] = None, **kwargs):
        """``inputs`` as the wrapped layer takes them (``(batch, steps, channels)`` for a
        ``Conv1D``); ``training`` (``None``: the module's mode) normalizes the kernel
        first (see the class docstring); other keyword arguments go to the layer."""
        x = inputs
        if not self.built:
            x = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(inputs)
            self._build_checked(tuple(x.shape), device=x.device)
        if training is None:
            training = self.training
        if not training:
            return self.layer(x, **kwargs)
        kernel = self.kernel
        new_kernel, new_u = self.normalize_weights()
        with torch.no_grad():
            kernel.copy_(new_kernel)
            self.vector_u.copy_(new_u)
        # The layer reads a copy of the (now normalized) kernel: the gradient reaches the
        # kernel unchanged, and a later call may overwrite the kernel again before this
        # call's backward (the copy, not the kernel, is what the layer saves for it).
        used = kernel.clone() if kernel.requires_grad and torch.is_grad_enabled() else kernel
        return torch.func.functional_call(self.layer, {self._kernel_name: used}, (x,),
                                          kwargs, strict=False)

    def get_config(self) -> Dict[str, Any]:
        return {**self.base_config(),
                "layer": {"class_name": type(self.layer).__name__,
                          "config": self.layer.get_config()},
                "power_iterations": self.power_iterations}

    def extra_repr(self) -> str:
        parts = [] if self.power_iterations == 1 else \
            [f"power_iterations={self.power_iterations}"]
        return ", ".join(parts + [f"name={self.name!r}"])
