"""Keras' core layers a model file needs: ``InputLayer``, ``Dense``, ``EinsumDense``, the
activation layers (``ThresholdedReLU`` among them), dropout and noise (``GaussianDropout``,
``AlphaDropout`` too), ``ActivityRegularization``, ``Identity``, ``Rescaling`` and the
reshaping layers (``Flatten``, ``Reshape``, ``Permute``, ``RepeatVector``).

Each follows tf-keras 2.21 (what R keras wraps) by class name, arguments and defaults, and
computes what tf-keras computes (see ``tests/test_parity_core_tfkeras.py``).  Layers that
behave differently in training (``Dropout``, ``SpatialDropout*``, ``GaussianNoise``) follow
the torch module's mode: active after ``module.train()`` (the default of a new torch module),
the identity after ``module.eval()`` (what a loaded model is in), as Keras' ``training``
argument would.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from .. import activations as _activations
from .. import constraints as _constraints
from .. import functional as _functional
from .. import initializers as _initializers
from .. import regularizers as _regularizers
from .._registry import serialize
from ..kernels import graphs as _graphs
from .base import Layer, _used_names, check_bool, check_count, check_data_format
from .base import wrapped_layer


def check_number(value: Any, name: str, minimum: Optional[float] = None,
                 maximum: Optional[float] = None, allow_none: bool = False) -> Optional[float]:
    """A real number (``None`` where allowed) within ``[minimum, maximum]``."""
    if value is None and allow_none:
        return None
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"Invalid type for argument `{name}`. Expected a number. "
                        f"Received {name}={value!r}")
    value = float(value)
    if math.isnan(value) or (minimum is not None and value < minimum) or \
            (maximum is not None and value > maximum):
        rule = (f"a value in [{minimum}, {maximum}]" if maximum is not None and
                minimum is not None else f"a value <= {maximum}" if maximum is not None
                else f"a value >= {minimum}" if minimum is not None else "a number, not NaN")
        raise ValueError(f"Invalid value for argument `{name}`. Expected {rule}. "
                         f"Received {name}={value}")
    return value


def _floatx(value: Optional[float]) -> Optional[float]:
    """``value`` rounded to float32, as tf-keras' ``backend.cast_to_floatx`` stores it."""
    return None if value is None else float(np.float32(value))


def check_initializer(value: Any, name: str):
    init = _initializers.get(value, name)
    if init is None:
        raise ValueError(f"Invalid value for argument `{name}`. Expected an initializer. "
                         f"Received {name}=None")
    return init


def init_kernel_objects(layer: Layer, args: Dict[str, Any]) -> None:
    """Resolve, check and set on ``layer`` a kernel-and-bias layer's initializers,
    regularizers and constraints (``Layer.KERNEL_OBJECTS`` but the activity regularizer),
    read from the constructor's ``locals()``."""
    for name in ("kernel_initializer", "bias_initializer"):
        setattr(layer, name, check_initializer(args[name], name))
    for name, module in (("kernel_regularizer", _regularizers),
                         ("bias_regularizer", _regularizers),
                         ("kernel_constraint", _constraints),
                         ("bias_constraint", _constraints)):
        setattr(layer, name, module.get(args[name], name))


class _Weightless(Layer):
    """A layer without weights: ``build`` only records the input shape."""

    def build(self, input_shape, device=None) -> None:
        pass

    def forward(self, inputs) -> torch.Tensor:
        return self.call(self._prepare_input(inputs))

    def call(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def compute_output_shape(self, input_shape) -> Tuple[Optional[int], ...]:
        return tuple(input_shape)

    def extra_repr(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self.get_config().items()
                 if k not in ("name", "trainable", "dtype", "batch_input_shape")]
        return ", ".join(parts + [f"name={self.name!r}"])


# -- InputLayer ---------------------------------------------------------------------------

class InputLayer(_Weightless):
    """Keras' ``InputLayer``: the identity, declaring the model's input shape and dtype.

    Floating inputs are cast to ``dtype`` (float32 by default); an integer ``dtype``
    (``"int32"``, ``"int64"``: the input of an ``Embedding``) casts to that integer type.
    ``input_tensor``, ``sparse``, ``ragged``, ``type_spec`` and ``optional`` are accepted
    for tf-keras' signature and configs; sparse and ragged tensors are not supported.
    """

    _INT_DTYPES = {"int8": torch.int8, "int16": torch.int16, "int32": torch.int32,
                   "int64": torch.int64, "uint8": torch.uint8, "bool": torch.bool}

    def __init__(self, input_shape=None, batch_size=None, dtype=None, input_tensor=None,
                 sparse=None, name=None, ragged=None, type_spec=None, optional=False,
                 batch_input_shape=None, trainable=None, weights=None):
        if name is None:
            n = 1
            while f"input_{n}" in _used_names:
                n += 1
            name = f"input_{n}"
        int_dtype = None
        if isinstance(dtype, dict):
            dtype = (dtype.get("config") or {}).get("name", dtype)
        if isinstance(dtype, str) and dtype.lower() in self._INT_DTYPES:
            int_dtype, dtype = dtype.lower(), None
        elif isinstance(dtype, str) and dtype.lower() == "string":
            # text in: Python str / numpy arrays of str, passed on as they are
            # (torch has no strings; the preprocessing layers take them)
            int_dtype, dtype = "string", None
        elif isinstance(dtype, torch.dtype) and not dtype.is_floating_point:
            int_dtype, dtype = str(dtype).replace("torch.", ""), None
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        if input_tensor is not None and self.batch_input_shape is None:
            self.batch_input_shape = tuple(input_tensor.shape)
        self._int_dtype = int_dtype
        self.sparse = bool(sparse)
        self.ragged = bool(ragged)
        self.optional = check_bool(optional, "optional")
        if self.sparse or self.ragged:
            raise ValueError(f"InputLayer {self.name!r}: sparse and ragged inputs are not "
                             f"supported. Received sparse={sparse}, ragged={ragged}")
        self._finish_init()

    @property
    def dtype(self) -> str:
        return self._int_dtype or self.dtype_policy.name

    def forward(self, inputs) -> torch.Tensor:
        if self._int_dtype is None:
            return self._prepare_input(inputs)
        if self._int_dtype == "string":
            return inputs
        x = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(np.asarray(inputs))
        return x.to(getattr(torch, self._int_dtype))

    def get_config(self) -> Dict[str, Any]:
        return {"batch_input_shape": self.batch_input_shape, "dtype": self.dtype,
                "sparse": self.sparse, "ragged": self.ragged, "name": self.name,
                "optional": self.optional}


# -- Dense --------------------------------------------------------------------------------

class Dense(Layer):
    """Keras' ``Dense``: ``activation(inputs @ kernel + bias)`` on the last axis.

    Input ``(batch, ..., in)`` of any rank >= 2; output ``(batch, ..., units)``.  Weights in
    Keras' order and shapes: ``kernel`` ``(in, units)``, ``bias`` ``(units,)`` (absent when
    ``use_bias=False``).  The activity penalty in ``losses`` is divided by the batch size,
    as tf-keras does.
    """

    WEIGHT_NAMES = ("kernel", "bias")

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights, activity_regularizer=activity_regularizer)
        self.units = check_count(units, "units")
        self.activation = _activations.get(activation, "activation")
        self.use_bias = check_bool(use_bias, "use_bias")
        init_kernel_objects(self, locals())
        self.input_dim: Optional[int] = None
        if self.batch_input_shape is not None and len(self.batch_input_shape) < 2:
            raise ValueError(f"Invalid value for argument `input_shape`. Dense expects at "
                             f"least one feature axis. Received batch_input_shape="
                             f"{self.batch_input_shape}")
        self._finish_init()

    def build(self, input_shape, device=None) -> None:
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(f"Layer {self.name!r} expects an input of rank >= 2 with a "
                             f"known last axis. Received input_shape={tuple(input_shape)}")
        self.input_dim = check_count(input_shape[-1], "input features")
        self.add_weight("kernel", (self.input_dim, self.units), self.kernel_initializer,
                        self.kernel_regularizer, self.kernel_constraint, device)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer,
                            self.bias_regularizer, self.bias_constraint, device)

    def _input_shape_from_weights(self, weights):
        if weights and len(getattr(weights[0], "shape", ())) == 2:
            return (None, int(weights[0].shape[0]))
        return None

    def _check_input(self, shape) -> None:
        if len(shape) < 2 or shape[-1] != self.input_dim:
            raise ValueError(f"Layer {self.name!r} expects input of shape (batch, ..., "
                             f"{self.input_dim}). Received input of shape {shape}")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.units,)

    def forward(self, inputs) -> torch.Tensor:
        """``inputs``: ``(batch, ..., in)``, a tensor or numpy array."""
        x = self._prepare_input(inputs)
        y = _functional.dense(x, self._weight("kernel"),
                              self._weight("bias") if self.use_bias else None)
        y = self.activation(y)
        self._record_activity(y)
        return y

    def get_config(self) -> Dict[str, Any]:
        config = self.base_config()
        config.update({
            "units": self.units, "activation": _activations.serialize(self.activation),
            "use_bias": self.use_bias,
            **self.objects_config(),
        })
        return config

    def extra_repr(self) -> str:
        act = _activations.serialize(self.activation)
        parts = [f"{self.input_dim if self.built else '?'}", f"{self.units}"]
        if act != "linear":
            parts.append(f"activation={act!r}")
        if not self.use_bias:
            parts.append("use_bias=False")
        return ", ".join(parts + [f"name={self.name!r}"])


class EinsumDense(Layer):
    """Keras' ``EinsumDense``: ``activation(einsum(equation, inputs, kernel) + bias)``.

    ``equation`` is ``"<in>,<kernel>-><out>"`` with letters per axis (``"ab,bc->ac"`` is
    ``Dense``), optionally ``...`` at the start of ``<in>`` and ``<out>`` or at their end
    (tf-keras' three forms).  ``output_shape`` (an int or a list; batch and ``...`` axes
    excluded; ``None`` takes the size from the input) fixes the sizes of the output's
    letters.  The ``kernel`` has one axis per kernel letter, sized from the input or the
    output (tf-keras' ``_analyze_einsum_string``, see
    :func:`sepconv.functional.einsum_dense_shapes`); with ``bias_axes`` (output letters)
    a ``bias`` of the output's sizes from the first bias letter on, 1 on the others.
    Weights in Keras' order: ``kernel``, ``bias``.

    ``activity_regularizer`` is checked and then ignored, as tf-keras 2.21 does (its
    ``EinsumDense`` never hands it to the base layer: no penalty, ``None`` in the config);
    Keras 3 applies it.
    """

    WEIGHT_NAMES = ("kernel", "bias")

    def __init__(self, equation, output_shape, activation=None, bias_axes=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        _regularizers.get(activity_regularizer, "activity_regularizer")  # (see above)
        if not isinstance(equation, str) or not any(
                p.match(equation.replace("...", "0")) for p, _ in _functional._EINSUM_FORMS):
            raise ValueError(f"Invalid value for argument `equation`. Equations must be in "
                             f"the form [X],[Y]->[Z], ...[X],[Y]->...[Z], or "
                             f"[X]...,[Y]->[Z].... Received equation={equation!r}")
        self.equation = equation
        shape = [output_shape] if not isinstance(output_shape, (list, tuple)) else \
            list(output_shape)
        self.partial_output_shape = [None if v is None else check_count(v, "output_shape")
                                     for v in shape]
        if bias_axes is not None and not isinstance(bias_axes, str):
            raise TypeError(f"Invalid type for argument `bias_axes`. Expected a string of "
                            f"output letters. Received bias_axes={bias_axes!r}")
        self.bias_axes = bias_axes
        self.activation = _activations.get(activation, "activation")
        init_kernel_objects(self, locals())
        self.full_output_shape: Optional[list] = None
        self._input_rank: Optional[int] = None
        self._finish_init()

    def _shapes(self, input_shape):
        return _functional.einsum_dense_shapes(self.equation, self.bias_axes,
                                               tuple(input_shape), self.partial_output_shape)

    def build(self, input_shape, device=None) -> None:
        kernel_shape, bias_shape, self.full_output_shape = self._shapes(input_shape)
        if any(s is None for s in kernel_shape + (bias_shape or [])):
            raise ValueError(f"Layer {self.name!r} (equation={self.equation!r}) needs every "
                             f"input axis its kernel uses known. Received input_shape="
                             f"{tuple(input_shape)}")
        self._input_rank = len(input_shape)
        self.add_weight("kernel", tuple(kernel_shape), self.kernel_initializer,
                        self.kernel_regularizer, self.kernel_constraint, device)
        if bias_shape is not None:
            self.add_weight("bias", tuple(bias_shape), self.bias_initializer,
                            self.bias_regularizer, self.bias_constraint, device)

    def _check_input(self, shape) -> None:
        try:
            kernel_shape, _, _ = self._shapes(shape)
        except ValueError as err:
            raise ValueError(f"Layer {self.name!r}: {err} Received input of shape "
                             f"{shape}") from None
        if "..." not in self.equation and len(shape) != self._input_rank or \
                tuple(kernel_shape) != tuple(self.kernel.shape):
            raise ValueError(f"Layer {self.name!r} (equation={self.equation!r}) has a "
                             f"kernel of shape {tuple(self.kernel.shape)}; an input of "
                             f"shape {shape} needs one of shape {tuple(kernel_shape)}")

    def compute_output_shape(self, input_shape):
        return tuple(self._shapes(input_shape)[2])

    def forward(self, inputs) -> torch.Tensor:
        """``inputs``: the equation's first operand, a tensor or numpy array."""
        x = self._prepare_input(inputs)
        y = _functional.einsum_dense_equation(
            x, self.equation, self._weight("kernel"),
            self._weight("bias") if "bias" in self._weight_order else None)
        y = self.activation(y)
        self._record_activity(y)
        return y

    def get_config(self) -> Dict[str, Any]:
        config = self.base_config()
        config.update({
            "output_shape": list(self.partial_output_shape), "equation": self.equation,
            "activation": _activations.serialize(self.activation),
            "bias_axes": self.bias_axes,
            **self.objects_config(), "activity_regularizer": None,  # (tf-keras ignores it)
        })
        return config

    def extra_repr(self) -> str:
        return f"{self.equation!r}, output_shape={self.partial_output_shape}, " \
               f"name={self.name!r}"


# -- activation layers ---------------------------------------------------------------------

class Activation(_Weightless):
    """Keras' ``Activation``: applies ``activation`` (a name, callable or config)
    elementwise; the tf-keras formulas (``hard_sigmoid``, ``leaky_relu``'s 0.2 slope)."""

    def __init__(self, activation, input_shape=None, batch_input_shape=None, batch_size=None,
                 dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        if activation is None:
            raise ValueError("Invalid value for argument `activation`. Expected an "
                             "activation name or callable. Received activation=None")
        self.activation = _activations.get(activation, "activation")
        self._finish_init()

    def call(self, x):
        return self.activation(x)

    def get_config(self):
        return {**self.base_config(), "activation": _activations.serialize(self.activation)}


class ReLU(_Weightless):
    """Keras' ``ReLU``: ``x`` for ``x > threshold`` (else ``negative_slope * (x -
    threshold)``), clipped above at ``max_value``: tf-keras' ``backend.relu``."""

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        # tf-keras keeps these as float32 (backend.cast_to_floatx), also in float64 layers.
        self.max_value = _floatx(check_number(max_value, "max_value", 0.0, allow_none=True))
        self.negative_slope = _floatx(check_number(negative_slope, "negative_slope", 0.0))
        self.threshold = _floatx(check_number(threshold, "threshold", 0.0))
        self._finish_init()

    def call(self, x):
        return _functional.keras_relu(x, self.negative_slope, self.max_value, self.threshold)

    def get_config(self):
        return {**self.base_config(), "max_value": self.max_value,
                "negative_slope": self.negative_slope, "threshold": self.threshold}


class LeakyReLU(_Weightless):
    """Keras' ``LeakyReLU``: ``x`` if ``x >= 0`` else ``alpha * x``; tf-keras' argument
    ``alpha`` (default 0.3).  Keras 3 names it ``negative_slope`` (same default):
    ``from_config`` reads either."""

    def __init__(self, alpha=0.3, input_shape=None, batch_input_shape=None, batch_size=None,
                 dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        if alpha is None:
            raise ValueError("The alpha value of a Leaky ReLU layer cannot be None. "
                             "Received alpha=None")
        self.alpha = _floatx(check_number(alpha, "alpha"))  # float32, as tf-keras keeps it
        self._finish_init()

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "negative_slope" in config and "alpha" not in config:
            config["alpha"] = config.pop("negative_slope")
        return super().from_config(config)

    def call(self, x):
        return torch.nn.functional.leaky_relu(x, self.alpha)

    def get_config(self):
        return {**self.base_config(), "alpha": self.alpha}


class PReLU(Layer):
    """Keras' ``PReLU``: ``relu(x) - alpha * relu(-x)`` with a learned ``alpha`` of shape
    ``input_shape[1:]``, size 1 on the ``shared_axes`` (1-based, the batch axis excluded)."""

    WEIGHT_NAMES = ("alpha",)

    def __init__(self, alpha_initializer="zeros", alpha_regularizer=None,
                 alpha_constraint=None, shared_axes=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self.alpha_initializer = check_initializer(alpha_initializer, "alpha_initializer")
        self.alpha_regularizer = _regularizers.get(alpha_regularizer, "alpha_regularizer")
        self.alpha_constraint = _constraints.get(alpha_constraint, "alpha_constraint")
        if shared_axes is None:
            self.shared_axes = None
        else:
            axes = shared_axes if isinstance(shared_axes, (list, tuple)) else [shared_axes]
            self.shared_axes = [check_count(a, "shared_axes") for a in axes]
        self.param_shape: Optional[Tuple[int, ...]] = None
        self._finish_init()

    def build(self, input_shape, device=None) -> None:
        shape = list(input_shape[1:])
        for axis in self.shared_axes or ():
            if axis > len(shape):
                raise ValueError(f"Invalid value for argument `shared_axes`. Axis {axis} is "
                                 f"not an axis of the input of shape {tuple(input_shape)}. "
                                 f"Received shared_axes={self.shared_axes}")
            shape[axis - 1] = 1
        if any(s is None for s in shape):
            raise ValueError(f"Layer {self.name!r} needs every non-shared input axis known. "
                             f"Received input_shape={tuple(input_shape)}")
        self.param_shape = tuple(shape)
        self.add_weight("alpha", self.param_shape, self.alpha_initializer,
                        self.alpha_regularizer, self.alpha_constraint, device)

    def _input_shape_from_weights(self, weights):
        if weights:
            return (None,) + tuple(int(s) for s in weights[0].shape)
        return None

    def _check_input(self, shape) -> None:
        ok = len(shape) == len(self.param_shape) + 1 and all(
            p == 1 or p == s for p, s in zip(self.param_shape, shape[1:]))
        if not ok:
            raise ValueError(f"Layer {self.name!r} expects input of shape (batch, "
                             f"{', '.join(map(str, self.param_shape))}) up to its shared "
                             f"axes. Received input of shape {shape}")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, inputs):
        x = self._prepare_input(inputs)
        return _functional.prelu(x, self._weight("alpha"))

    def get_config(self):
        return {**self.base_config(),
                "alpha_initializer": serialize(self.alpha_initializer),
                "alpha_regularizer": serialize(self.alpha_regularizer),
                "alpha_constraint": serialize(self.alpha_constraint),
                "shared_axes": self.shared_axes}

    def extra_repr(self):
        return f"shared_axes={self.shared_axes}, name={self.name!r}"


class ELU(_Weightless):
    """Keras' ``ELU``: ``x`` if ``x > 0`` else ``alpha * (exp(x) - 1)``."""

    def __init__(self, alpha=1.0, input_shape=None, batch_input_shape=None, batch_size=None,
                 dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        if alpha is None:
            raise ValueError("Alpha of an ELU layer cannot be None, expecting a float. "
                             "Received alpha=None")
        self.alpha = _floatx(check_number(alpha, "alpha"))  # float32, as tf-keras keeps it
        self._finish_init()

    def call(self, x):
        y = _activations.elu(x)  # tf.nn.elu (TensorFlow's numbers on CPU float32)
        return y if self.alpha == 1 else torch.where(x > 0, y, self.alpha * y)

    def get_config(self):
        return {**self.base_config(), "alpha": self.alpha}


class Softmax(_Weightless):
    """Keras' ``Softmax`` over ``axis`` (an int or a list of axes).  ``robust_masking``
    as in tf-keras.  ``forward(inputs, mask=None)``: where ``mask`` (broadcast against the
    inputs from the right, as TensorFlow does) is False the inputs get tf-keras' large
    negative added (``-1e9``; float16: its lowest value) before the softmax, or with
    ``robust_masking`` are replaced by it."""

    def __init__(self, axis=-1, robust_masking=False, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self.axis = _check_axis(axis, "axis")
        self.robust_masking = check_bool(robust_masking, "robust_masking")
        self._finish_init()

    def forward(self, inputs, mask=None) -> torch.Tensor:
        x = self._prepare_input(inputs)
        if mask is not None:
            if not isinstance(mask, torch.Tensor):
                mask = torch.as_tensor(np.asarray(mask))
            mask = mask.to(x.device)
            negative = torch.finfo(torch.float16).min if x.dtype == torch.float16 else -1e9
            if self.robust_masking:
                keep = mask if mask.dtype == torch.bool else mask > 0.5
                x = torch.where(keep, x, torch.full((), negative, dtype=x.dtype,
                                                    device=x.device))
            else:
                x = x + (1.0 - mask.to(x.dtype)) * negative
        return self.call(x)

    def call(self, x):
        out = _functional.keras_softmax(x, self.axis)
        if isinstance(self.axis, int) or len(self.axis) == 1:
            # tf-keras' backend.softmax keeps the logits for the crossentropies
            out = _activations.keep_logits(out, x)
        return out

    def get_config(self):
        config = {**self.base_config(), "axis": self.axis}
        if self.robust_masking:
            config["robust_masking"] = True
        return config


def _check_axis(value, name):
    """An int axis or a list of int axes (Keras' ``axis`` arguments)."""
    if isinstance(value, (list, tuple)):
        return [_check_axis(v, name) for v in value]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError(f"Invalid type for argument `{name}`. Expected an int or a list of "
                        f"ints. Received {name}={value!r}")
    return int(value)


# -- dropout and noise ---------------------------------------------------------------------

class _Random(_Weightless):
    """Layers that draw random numbers in training: one ``torch.Generator`` per device,
    seeded once from ``seed`` (unseeded: torch's global generator)."""

    def _generator(self, device) -> Optional[torch.Generator]:
        if self.seed is None:
            return None
        gens = self.__dict__.setdefault("_generators", {})
        key = str(device)
        if key not in gens:
            gen = torch.Generator(device=device)
            gen.manual_seed(int(self.seed))
            gens[key] = gen
        return gens[key]

    def __getstate__(self):
        state = super().__getstate__()
        state = dict(state)
        state.pop("_generators", None)
        return state


class Dropout(_Random):
    """Keras' ``Dropout``: in training, each element (or each slice of ``noise_shape``,
    ``None`` entries taken from the input) is zeroed with probability ``rate`` and the kept
    ones scaled by ``1 / (1 - rate)``; the identity in ``eval()``."""

    def __init__(self, rate, noise_shape=None, seed=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self.rate = check_number(rate, "rate", 0.0, 1.0)
        if noise_shape is not None:
            if not isinstance(noise_shape, (list, tuple)):
                raise TypeError(f"Invalid type for argument `noise_shape`. Expected a tuple. "
                                f"Received noise_shape={noise_shape!r}")
            noise_shape = tuple(None if v is None else check_count(v, "noise_shape")
                                for v in noise_shape)
        self.noise_shape = noise_shape
        self.seed = None if seed is None else check_count(seed, "seed", minimum=0)
        self._finish_init()

    def _noise_shape(self, x) -> Optional[Tuple[int, ...]]:
        if self.noise_shape is None:
            return None
        if len(self.noise_shape) != x.dim():
            raise ValueError(f"Layer {self.name!r}: noise_shape={self.noise_shape} does not "
                             f"match the rank of the input of shape {tuple(x.shape)}")
        return tuple(s if n is None else n for n, s in zip(self.noise_shape, x.shape))

    def call(self, x):
        if not self.training or self.rate == 0:
            return x
        return _functional.dropout(x, self.rate, self._noise_shape(x),
                                   self._generator(x.device))

    def get_config(self):
        return {**self.base_config(), "rate": self.rate, "noise_shape": self.noise_shape,
                "seed": self.seed}


class _SpatialDropout(Dropout):
    _RANK = 1

    def __init__(self, rate, data_format=None, seed=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        self.data_format = check_data_format(data_format)
        super().__init__(rate, seed=seed, input_shape=input_shape,
                         batch_input_shape=batch_input_shape, batch_size=batch_size,
                         dtype=dtype, name=name, trainable=trainable, weights=weights)

    def _check_input(self, shape):
        if len(shape) != self._RANK + 2:
            raise ValueError(f"Layer {self.name!r} expects input of rank {self._RANK + 2}. "
                             f"Received input of shape {shape}")

    def _noise_shape(self, x):
        ones = (1,) * self._RANK
        if self.data_format == "channels_last":
            return (x.shape[0],) + ones + (x.shape[-1],)
        return (x.shape[0], x.shape[1]) + ones

    def get_config(self):
        config = super().get_config()
        if self._RANK > 1:
            # tf-keras drops data_format from this config (a channels_first layer comes back
            # channels_last); sepconv keeps it, as Keras 3 does.
            config["data_format"] = self.data_format
        return config


class SpatialDropout1D(_SpatialDropout):
    """Keras' ``SpatialDropout1D``: drops whole channels of ``(batch, steps, channels)``
    in training (noise shape ``(batch, 1, channels)``), scaling the rest by
    ``1 / (1 - rate)``."""

    _RANK = 1

    def __init__(self, rate, seed=None, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        super().__init__(rate, None, seed=seed, input_shape=input_shape,
                         batch_input_shape=batch_input_shape, batch_size=batch_size,
                         dtype=dtype, name=name, trainable=trainable, weights=weights)


class SpatialDropout2D(_SpatialDropout):
    """Keras' ``SpatialDropout2D``: drops whole feature maps in training."""

    _RANK = 2


class SpatialDropout3D(_SpatialDropout):
    """Keras' ``SpatialDropout3D``: drops whole feature volumes in training."""

    _RANK = 3


class GaussianNoise(_Random):
    """Keras' ``GaussianNoise``: adds ``N(0, stddev**2)`` noise in training only."""

    def __init__(self, stddev, seed=None, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self.stddev = check_number(stddev, "stddev", 0.0)
        self.seed = None if seed is None else check_count(seed, "seed", minimum=0)
        self._finish_init()

    def call(self, x):
        if not self.training:
            return x
        noise = torch.randn(x.shape, dtype=x.dtype, device=x.device,
                            generator=self._generator(x.device))
        return x + self.stddev * noise

    def get_config(self):
        return {**self.base_config(), "stddev": self.stddev, "seed": self.seed}


class GaussianDropout(_Random):
    """Keras' ``GaussianDropout``: in training (``0 < rate < 1``) multiplies ``x`` by
    ``N(1, rate / (1 - rate))`` noise, one draw per element (tf-keras' formula; the draws
    themselves are torch's, not TensorFlow's); the identity in ``eval()`` and for
    ``rate`` 0 or 1.  Input of any shape; the output has the same shape."""

    def __init__(self, rate, seed=None, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self.rate = check_number(rate, "rate", 0.0, 1.0)
        self.seed = None if seed is None else check_count(seed, "seed", minimum=0)
        self._finish_init()

    def call(self, x):
        if not self.training or not 0 < self.rate < 1:
            return x
        return _functional.gaussian_dropout(x, self.rate, self._generator(x.device))

    def get_config(self):
        return {**self.base_config(), "rate": self.rate, "seed": self.seed}


class AlphaDropout(Dropout):
    """Keras' ``AlphaDropout`` (for SELU networks): in training (``0 < rate < 1``) each
    element (or each slice of ``noise_shape``, ``None`` entries taken from the input) is
    set to SELU's negative saturation ``alpha_p = -1.6732632... * 1.0507009...`` with
    probability ``rate``, then ``a * x + b`` with tf-keras' ``a = ((1 - rate) * (1 + rate
    * alpha_p**2)) ** -0.5`` and ``b = -a * alpha_p * rate``, which keeps a standard
    normal input's mean and variance (see :func:`sepconv.functional.alpha_dropout`); the
    identity in ``eval()``.  tf-keras leaves ``noise_shape`` out of its config (a
    reloaded layer loses it); sepconv writes it, as Keras 3 does."""

    def call(self, x):
        if not self.training or not 0 < self.rate < 1:
            return x
        return _functional.alpha_dropout(x, self.rate, self._noise_shape(x),
                                         self._generator(x.device))


class ActivityRegularization(_Weightless):
    """Keras' ``ActivityRegularization``: the identity, which puts ``l1 * sum(|x|) + l2 *
    sum(x**2)`` of its input, divided by the batch size (``x.shape[0]``) as tf-keras
    divides every activity penalty, in ``losses`` at each call (in training and in
    ``eval()`` alike, as tf-keras does; Keras 3.15 divides too)."""

    def __init__(self, l1=0.0, l2=0.0, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        l1, l2 = check_number(l1, "l1", 0.0), check_number(l2, "l2", 0.0)
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights, activity_regularizer=_regularizers.L1L2(l1, l2))
        self.l1, self.l2 = l1, l2
        self._finish_init()

    def call(self, x):
        self._record_activity(x)
        return x

    def get_config(self):
        return {**self.base_config(), "l1": self.l1, "l2": self.l2}


class Identity(_Weightless):
    """Keras' ``Identity``: returns its input (a tensor, or a list / tuple of them)
    unchanged, floating ones cast to the compute dtype as every tf-keras layer casts its
    inputs (integer ones kept).  As in tf-keras 2.21, it does not
    support masking: a model drops an incoming mask here."""

    def __init__(self, input_shape=None, batch_input_shape=None, batch_size=None,
                 dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self._finish_init()

    def forward(self, inputs):
        """``inputs``: a tensor (array) or a nested list / tuple of them."""
        if isinstance(inputs, (list, tuple)):
            return type(inputs)(self.forward(x) for x in inputs)
        if isinstance(inputs, dict):
            return {k: self.forward(v) for k, v in inputs.items()}
        x = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(np.asarray(inputs))
        return self._prepare_input(x) if x.is_floating_point() else x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return self.base_config()


class ThresholdedReLU(_Weightless):
    """Keras' ``ThresholdedReLU`` (tf-keras only; Keras 3 dropped it, and a ``.keras`` file
    gets Keras 3's ``ReLU(threshold=theta)``, which computes the same): ``x * (x >
    theta)``, ``theta`` kept as float32 (``backend.cast_to_floatx``) as tf-keras does."""

    def __init__(self, theta=1.0, input_shape=None, batch_input_shape=None, batch_size=None,
                 dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        if theta is None:
            raise ValueError("Invalid value for argument `theta`. Theta of a Thresholded "
                             "ReLU layer cannot be None, expecting a float. Received "
                             "theta=None")
        self.theta = _floatx(check_number(theta, "theta", 0.0))
        self._finish_init()

    def call(self, x):
        return x * (x > self.theta).to(x.dtype)

    def get_config(self):
        return {**self.base_config(), "theta": self.theta}


def _check_scale(value: Any, name: str):
    """A number or a (nested) list of numbers: ``Rescaling``'s ``scale`` / ``offset``."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"Invalid value for argument `{name}`. Expected a number or a "
                             f"non-empty list of numbers. Received {name}={value!r}")
        return [_check_scale(v, name) for v in value]
    return check_number(value, name)


class Rescaling(_Weightless):
    """Keras' ``Rescaling``: ``inputs * scale + offset``, the inputs (integer images
    too) cast to the layer's compute dtype first.  ``scale`` and ``offset`` are numbers or
    lists of numbers (broadcast against the input from the right, per channel say); as
    tf-keras' ``tf.cast`` of a Python number, they are rounded to float32 first, then
    cast to the compute dtype.  Does not support masking, as in tf-keras."""

    def __init__(self, scale, offset=0.0, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self.scale = _check_scale(scale, "scale")
        self.offset = _check_scale(offset, "offset")
        self._finish_init()

    def _constant(self, value, x):
        return torch.as_tensor(np.asarray(value, dtype=np.float32)).to(x.device, x.dtype)

    def call(self, x):
        return x * self._constant(self.scale, x) + self._constant(self.offset, x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**self.base_config(), "scale": self.scale, "offset": self.offset}


# -- reshaping -----------------------------------------------------------------------------

class Flatten(_Weightless):
    """Keras' ``Flatten``: ``(batch, ...) -> (batch, prod(...))``.  Under
    ``data_format="channels_first"`` the channel axis is moved last before flattening, so
    a model gives the same order under either format (tf-keras' rule)."""

    def __init__(self, data_format=None, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self.data_format = check_data_format(data_format)
        self._finish_init()

    def call(self, x):
        return _functional.flatten(x, self.data_format)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        rest = shape[1:]
        size = None if any(s is None for s in rest) else int(np.prod(rest)) if rest else 1
        return (shape[0], size)

    def get_config(self):
        return {**self.base_config(), "data_format": self.data_format}


class Reshape(_Weightless):
    """Keras' ``Reshape``: ``(batch, ...) -> (batch, *target_shape)``; one entry of
    ``target_shape`` may be ``-1`` (inferred)."""

    def __init__(self, target_shape, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        if not isinstance(target_shape, (list, tuple)):
            raise TypeError(f"Invalid type for argument `target_shape`. Expected a tuple. "
                            f"Received target_shape={target_shape!r}")
        shape = []
        for v in target_shape:
            if v is None or v == -1:
                shape.append(-1)
            else:
                shape.append(check_count(v, "target_shape"))
        if shape.count(-1) > 1:
            raise ValueError(f"Invalid value for argument `target_shape`. There must be at "
                             f"most one unknown dimension (-1). Received target_shape="
                             f"{tuple(target_shape)}")
        self.target_shape = tuple(shape)
        self._finish_init()

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        rest = shape[1:]
        if -1 not in self.target_shape:
            out = self.target_shape
        elif any(s is None for s in rest):
            out = tuple(None if s == -1 else s for s in self.target_shape)
        else:
            out = self._resolve(int(np.prod(rest)) if rest else 1, shape)
        return (shape[0],) + tuple(out)

    def _resolve(self, size, shape):
        known = int(np.prod([s for s in self.target_shape if s != -1]))
        if -1 in self.target_shape:
            if known == 0 or size % known:
                raise ValueError(f"Layer {self.name!r}: total size of the new array must be "
                                 f"unchanged, input_shape = {list(shape[1:])}, output_shape "
                                 f"= {list(self.target_shape)}")
            return tuple(size // known if s == -1 else s for s in self.target_shape)
        if known != size:
            raise ValueError(f"Layer {self.name!r}: total size of the new array must be "
                             f"unchanged, input_shape = {list(shape[1:])}, output_shape = "
                             f"{list(self.target_shape)}")
        return self.target_shape

    def call(self, x):
        out = self._resolve(int(np.prod(x.shape[1:])), tuple(x.shape))
        return x.reshape((x.shape[0],) + tuple(out))

    def get_config(self):
        return {**self.base_config(), "target_shape": self.target_shape}


class Permute(_Weightless):
    """Keras' ``Permute``: reorders the non-batch axes; ``dims`` is 1-based
    (``(2, 1)`` swaps the two axes after the batch)."""

    def __init__(self, dims, input_shape=None, batch_input_shape=None, batch_size=None,
                 dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        if not isinstance(dims, (list, tuple)):
            raise TypeError(f"Invalid type for argument `dims`. Expected a tuple. "
                            f"Received dims={dims!r}")
        dims = tuple(check_count(d, "dims") for d in dims)
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(f"Invalid permutation argument `dims` for Permute Layer. The "
                             f"set of indices in `dims` must be consecutive and start from "
                             f"1. Received dims={dims}")
        self.dims = dims
        self._finish_init()

    def _check_input(self, shape):
        if len(shape) != len(self.dims) + 1:
            raise ValueError(f"Layer {self.name!r} with dims={self.dims} expects input of "
                             f"rank {len(self.dims) + 1}. Received input of shape {shape}")

    def call(self, x):
        return x.permute(0, *self.dims)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        return (shape[0],) + tuple(shape[d] for d in self.dims)

    def get_config(self):
        return {**self.base_config(), "dims": self.dims}


class RepeatVector(_Weightless):
    """Keras' ``RepeatVector``: ``(batch, features) -> (batch, n, features)``."""

    def __init__(self, n, input_shape=None, batch_input_shape=None, batch_size=None,
                 dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self.n = check_count(n, "n")
        self._finish_init()

    def _check_input(self, shape):
        if len(shape) != 2:
            raise ValueError(f"Layer {self.name!r} expects input of rank 2, (batch, "
                             f"features). Received input of shape {shape}")

    def call(self, x):
        return x.unsqueeze(1).expand(x.shape[0], self.n, x.shape[1])

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        return (shape[0], self.n, shape[1])

    def get_config(self):
        return {**self.base_config(), "n": self.n}


# -- Embedding and TimeDistributed ---------------------------------------------------------

class Embedding(Layer):
    """Keras' ``Embedding``: integer indices ``(batch, ...)`` -> rows of ``embeddings``
    ``(input_dim, output_dim)``: ``(batch, ..., output_dim)`` in the compute dtype.

    Float indices are truncated to integers, as tf-keras casts them; an index outside
    ``[0, input_dim)`` is a ``ValueError``.  With ``mask_zero=True``,
    ``compute_mask(inputs)`` is ``inputs != 0`` (Keras' padding mask, which models pass on
    to the layers after it; see :mod:`sepconv.layers.masking`); ``input_length`` fixes the
    input shape
    ``(batch, input_length)``; ``sparse=True`` (sparse gradients) is accepted and computes
    the same numbers.  The default initializer is Keras' ``RandomUniform(-0.05, 0.05)``.
    """

    WEIGHT_NAMES = ("embeddings",)

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform",
                 embeddings_regularizer=None, activity_regularizer=None,
                 embeddings_constraint=None, mask_zero=False, input_length=None, sparse=False,
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        if input_length is not None:
            input_length = check_count(input_length, "input_length")
        if input_shape is None and batch_input_shape is None:
            input_shape = (input_length,)
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights, activity_regularizer=activity_regularizer)
        self.input_dim = check_count(input_dim, "input_dim")
        self.output_dim = check_count(output_dim, "output_dim")
        self.embeddings_initializer = check_initializer(embeddings_initializer,
                                                        "embeddings_initializer")
        self.embeddings_regularizer = _regularizers.get(embeddings_regularizer,
                                                        "embeddings_regularizer")
        self.embeddings_constraint = _constraints.get(embeddings_constraint,
                                                      "embeddings_constraint")
        self.mask_zero = check_bool(mask_zero, "mask_zero")
        self.input_length = input_length
        self.sparse = check_bool(sparse, "sparse")
        self._finish_init()

    def build(self, input_shape, device=None) -> None:
        self.add_weight("embeddings", (self.input_dim, self.output_dim),
                        self.embeddings_initializer, self.embeddings_regularizer,
                        self.embeddings_constraint, device)

    def _input_shape_from_weights(self, weights):
        return (None, self.input_length)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    @property
    def supports_masking(self) -> bool:
        return self.mask_zero

    def compute_mask(self, inputs, mask=None):
        """tf-keras' ``Embedding.compute_mask``: ``inputs != 0`` with ``mask_zero``, else
        ``None``."""
        if not self.mask_zero:
            return None
        x = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(np.asarray(inputs))
        return x != 0

    def forward(self, inputs) -> torch.Tensor:
        """``inputs``: integer indices of any shape (a tensor or array)."""
        x = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(np.asarray(inputs))
        if x.is_floating_point():
            x = x.to(torch.int64)  # tf-keras casts float indices to int32 (truncation)
        elif x.dtype not in (torch.int64, torch.int32):
            x = x.to(torch.int64)
        # (a data-dependent check: on real eager tensors only, not in a graph being compiled
        # or exported nor under torch.func's vmap, where the lookup itself checks the range)
        if x.numel() and _graphs.plain(x) and \
                (int(x.min()) < 0 or int(x.max()) >= self.input_dim):
            raise ValueError(f"Layer {self.name!r}: indices must be in [0, {self.input_dim}) "
                             f"(input_dim={self.input_dim}). Received indices in "
                             f"[{int(x.min())}, {int(x.max())}]")
        y = torch.nn.functional.embedding(x.to(self.embeddings.device), self.embeddings,
                                          sparse=self.sparse)
        y = y.to(self.dtype_policy.compute)
        self._record_activity(y)
        return y

    def get_config(self):
        config = self.base_config()
        config.update({
            "input_dim": self.input_dim, "output_dim": self.output_dim,
            "embeddings_initializer": serialize(self.embeddings_initializer),
            "embeddings_regularizer": serialize(self.embeddings_regularizer),
            "activity_regularizer": serialize(self.activity_regularizer),
            "embeddings_constraint": serialize(self.embeddings_constraint),
            "mask_zero": self.mask_zero, "input_length": self.input_length})
        if self.sparse:
            config["sparse"] = True
        return config

    def extra_repr(self):
        return f"{self.input_dim}, {self.output_dim}, name={self.name!r}"


class TimeDistributed(Layer):
    """Keras' ``TimeDistributed``: applies ``layer`` (a sepconv layer, or its Keras config
    dict ``{"class_name", "config"}``) to every time step of ``(batch, time, ...)`` by
    running it once on ``(batch * time, ...)``.

    Its weights are the inner layer's (``get_weights`` / ``set_weights`` delegate), and its
    config nests the inner layer's as Keras does.  The inner layer's penalties are in
    ``self.layer.losses`` (and in :func:`sepconv.regularization_loss`), not repeated here.
    """

    def __init__(self, layer, input_shape=None, batch_input_shape=None, batch_size=None,
                 dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        layer = wrapped_layer(layer)
        self.layer = layer
        if trainable is not None:
            self.layer.trainable = self.trainable
        self._finish_init()

    def build(self, input_shape, device=None) -> None:
        if len(input_shape) < 3:
            raise ValueError(f"`TimeDistributed` Layer should be passed an `input_shape` "
                             f"with at least 3 dimensions, received: {tuple(input_shape)}")
        if not self.layer.built:
            self.layer._build_checked((None,) + tuple(input_shape[2:]), device=device)

    @property
    def weights(self):
        return self.layer.weights

    def get_weights(self):
        return self.layer.get_weights()

    def set_weights(self, weights):
        self.layer.set_weights(weights)
        self.built = self.built or self.layer.built

    def constrained_parameters(self):
        return []

    @property
    def losses(self):
        return []

    def _check_input(self, shape):
        if len(shape) < 3:
            raise ValueError(f"`TimeDistributed` Layer {self.name!r} expects input of rank "
                             f">= 3, (batch, time, ...). Received input of shape {shape}")

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        inner = self.layer.compute_output_shape((None,) + shape[2:])
        return shape[:2] + tuple(inner[1:])

    def _inner_mask(self, mask, x: torch.Tensor) -> Optional[torch.Tensor]:
        """The mask ``(batch, time, ...)`` folded as the inputs are: ``(batch * time,
        ...)`` (tf-keras' reshape)."""
        if isinstance(mask, (list, tuple)):
            mask = mask[0] if mask else None
        if mask is None:
            return None
        if not isinstance(mask, torch.Tensor):
            mask = torch.as_tensor(np.asarray(mask))
        b, t = x.shape[:2]
        if mask.dim() < 2 or tuple(mask.shape[:2]) != (b, t):
            raise ValueError(f"Invalid value for argument `mask`. Expected a mask (batch, "
                             f"time, ...) starting with {(b, t)}. Received a mask of shape "
                             f"{tuple(mask.shape)}")
        return mask.to(x.device).reshape((b * t,) + tuple(mask.shape[2:]))

    def _inputs(self, inputs) -> torch.Tensor:
        if isinstance(self.layer, Embedding):  # integer ids: no cast
            x = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(
                np.asarray(inputs))
            if not self.built:
                self._build_checked(tuple(x.shape), device=x.device)
        else:
            x = self._prepare_input(inputs)
        self._check_input(tuple(x.shape))
        return x

    def compute_mask(self, inputs, mask=None):
        """tf-keras 2.21's ``TimeDistributed.compute_mask``: the inner layer's
        ``compute_mask`` on the folded inputs and mask, unfolded to ``(batch, time,
        ...)``; where it gives ``None``, the input mask reduced to ``(batch, time)`` with
        ``any`` over its later axes (``None`` without an input mask).  An inner layer
        that does not support masking raises ``TypeError`` given a mask, as in tf-keras
        (which refuses ``Masking`` -> ``TimeDistributed(Conv1D)`` when building the
        model)."""
        x = self._inputs(inputs)
        b, t = x.shape[:2]
        inner = self._inner_mask(mask, x)
        out = self.layer.compute_mask(x.reshape((b * t,) + tuple(x.shape[2:])), inner)
        if out is None:
            if inner is None:
                return None
            mask = inner.reshape((b, t) + tuple(inner.shape[1:]))
            while mask.dim() > 2:
                mask = mask.any(dim=-1)
            return mask
        return out.reshape((b, t) + tuple(out.shape[1:]))

    def forward(self, inputs, mask=None) -> torch.Tensor:
        """``inputs``: ``(batch, time, ...)``; the output ``(batch, time, ...inner...)``.
        ``mask`` (Keras' ``(batch, time, ...)`` mask, optional) goes to the inner layer,
        folded to ``(batch * time, ...)``, where its ``forward`` takes ``mask``
        (recurrent layers, ``Softmax``, ``GlobalAveragePooling1D``, ...), as in tf-keras
        2.21: ``TimeDistributed(LSTM(...))`` over ``Embedding(mask_zero=True)`` ids
        ``(batch, sentences, words)`` masks the padded words of each sentence."""
        from .masking import _takes_mask

        x = self._inputs(inputs)
        b, t = x.shape[:2]
        inner = self._inner_mask(mask, x)
        kwargs = {"mask": inner} if inner is not None and _takes_mask(self.layer) else {}
        y = self.layer(x.reshape((b * t,) + tuple(x.shape[2:])), **kwargs)
        return y.reshape((b, t) + tuple(y.shape[1:]))

    def get_config(self):
        return {**self.base_config(),
                "layer": {"class_name": type(self.layer).__name__,
                          "config": self.layer.get_config()}}

    def extra_repr(self):
        return f"name={self.name!r}"


# Keras' masks (see masking.py): the layers tf-keras 2.21 marks ``supports_masking`` pass
# an incoming mask on to their output unchanged.
for _cls in (InputLayer, Dense, Activation, ReLU, LeakyReLU, PReLU, ELU, Softmax, _Random,
             TimeDistributed, ActivityRegularization, ThresholdedReLU):
    _cls.supports_masking = True
