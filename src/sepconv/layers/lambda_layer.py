"""Keras' ``Lambda`` layer: a torch callable as a layer (R: ``layer_lambda``).

A model file's ``Lambda`` holds Python bytecode (tf-keras, Keras 3) or a function's name
(Keras 3); :mod:`sepconv.interop.lambdas` turns either into a torch callable and builds
this class with it (see ``load_keras_model(..., safe_mode=False)``).
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, Optional

import numpy as np
import torch

from .base import Layer


def _is_shape(value: Any) -> bool:
    """A shape: a tuple / list / ``torch.Size`` of whole numbers or ``None``."""
    return isinstance(value, (tuple, list, torch.Size)) and all(
        v is None or (isinstance(v, (int, np.integer)) and not isinstance(v, bool))
        for v in value)


def _map_shapes(fn, value: Any) -> Any:
    """``fn`` applied to each shape of a shape or a (nested) list of shapes."""
    if _is_shape(value):
        return fn(tuple(value))
    if isinstance(value, dict):
        return {k: _map_shapes(fn, v) for k, v in value.items()}
    return [_map_shapes(fn, v) for v in value]


def _first_shape(value: Any) -> tuple:
    while not _is_shape(value):
        value = next(iter(value.values())) if isinstance(value, dict) else value[0]
    return tuple(value)


def _arg_names(function: Any) -> set:
    try:  # (follows __wrapped__: a file's function, functools.wraps)
        params = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return set()
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


class Lambda(Layer):
    """Keras' ``Lambda`` (R: ``layer_lambda``): ``function(inputs, **arguments)``.

    ``function``: a callable on torch tensors (``lambda x: x.unsqueeze(-1)``,
    ``lambda t: t.mean(dim=1)``), given the layer's input (a tensor, or the list of
    tensors of a list input: ``lambda xs: torch.cat(xs, -1)``), then ``arguments`` (a dict)
    as keywords; also ``mask=`` (the Keras mask of the input) and ``training=`` (the
    module's training flag) where the function names them, as Keras passes them.
    Floating input tensors are cast to the layer's compute dtype first (Keras' autocast).
    ``output_shape``: ``None`` (found by running the function on tensors of the input
    shape, as Keras finds it by tracing), a shape without the batch axis (the batch is the
    input's), a list of them (several outputs), or a callable from the input shape (batch
    included) to the output shape.  ``mask``: ``None``, a callable ``mask(inputs,
    input_mask)`` giving the output mask, or a mask returned whatever the input.  No
    weights.  ``get_config`` returns the callable itself under ``function``: a Lambda made
    from a torch callable cannot be written to a Keras file (a Lambda loaded from one is
    written back with the file's own config).
    """

    def __init__(self, function, output_shape=None, mask=None, arguments=None,
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        if not callable(function):
            raise TypeError(f"Invalid type for argument `function`. Expected a callable on "
                            f"torch tensors. Received function={function!r} of type "
                            f"{type(function).__name__}")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict) or \
                not all(isinstance(k, str) for k in arguments):
            raise TypeError(f"Invalid type for argument `arguments`. Expected a dict of "
                            f"keyword arguments. Received arguments={arguments!r}")
        if output_shape is not None and not callable(output_shape):
            try:
                if isinstance(output_shape, (str, bytes)):
                    raise TypeError
                output_shape = _map_shapes(lambda s: s, output_shape)
            except TypeError:
                raise TypeError(f"Invalid type for argument `output_shape`. Expected a "
                                f"shape tuple such as (None, 16), a list of them or a "
                                f"callable. Received output_shape={output_shape!r}") from None
        self.function = function
        self.arguments = dict(arguments)
        self.mask = mask
        self._output_shape = output_shape
        #: Keras' rule: a layer with a ``mask`` argument supports masking.  Without one,
        #: a function returning its input tensor itself (``lambda t: t``) still hands on
        #: that tensor's mask, as both Kerases do (they keep it on the tensor object).
        self.supports_masking = mask is not None
        self.keeps_mask_of_returned_input = mask is None
        names = _arg_names(function)
        self._fn_expects_mask_arg = "mask" in names
        self._fn_expects_training_arg = "training" in names
        #: The config a model file held (:mod:`sepconv.interop.lambdas`), written back as
        #: it was, and the Keras that wrote it ("tf_keras" or "keras3").
        self.file_config: Optional[Dict[str, Any]] = None
        self.file_flavour: Optional[str] = None
        self._finish_init()

    def build(self, input_shape, device=None) -> None:
        pass

    def _cast(self, value: Any) -> Any:
        """Floating tensors (numpy arrays too) in the compute dtype, in any list / dict
        structure (Keras' autocast of a layer's inputs); integers kept."""
        if isinstance(value, (list, tuple)):
            return type(value)(self._cast(v) for v in value)
        if isinstance(value, dict):
            return {k: self._cast(v) for k, v in value.items()}
        if isinstance(value, np.ndarray) and value.dtype.kind not in "USO":
            value = torch.as_tensor(value)
        if isinstance(value, torch.Tensor) and value.is_floating_point() and \
                value.dtype != self.dtype_policy.compute:
            value = value.to(self.dtype_policy.compute)
        return value

    def forward(self, inputs, mask=None, training=None):
        """``function(inputs, **arguments)`` (``inputs``: a tensor or a list of them)."""
        self.built = True
        kwargs = dict(self.arguments)
        if self._fn_expects_mask_arg:
            kwargs["mask"] = mask
        if self._fn_expects_training_arg:
            kwargs["training"] = self.training if training is None else training
        return self.function(self._cast(inputs), **kwargs)

    def compute_mask(self, inputs, mask=None):
        """``mask(inputs, mask)`` for a callable ``mask``, else the ``mask`` argument."""
        if callable(self.mask):
            return self.mask(inputs, mask)
        return self.mask

    def compute_output_shape(self, input_shape):
        """The output shape for ``input_shape`` (batch axis included; a list of shapes for
        a list input): from ``output_shape`` where given, else by running the function
        on zeros of that shape (twice, so an axis that follows an unknown one, ``None``,
        is ``None`` too)."""
        if callable(self._output_shape):
            out = self._output_shape(input_shape)
            return _map_shapes(lambda s: s, out)
        if self._output_shape is not None:
            batch = _first_shape(input_shape)[0] if input_shape else None
            return _map_shapes(lambda s: (batch,) + s, self._output_shape)
        runs = []
        for unknown in (2, 3):
            zeros = _map_shapes(lambda s: torch.zeros(
                [unknown if v is None else v for v in s], dtype=self.dtype_policy.compute),
                input_shape)
            with torch.no_grad():
                out = self.forward(zeros)
            runs.append(out)

        def shape_of(a, b):
            if isinstance(a, torch.Tensor):
                return tuple(x if x == y else None for x, y in zip(a.shape, b.shape))
            if isinstance(a, dict):
                return {k: shape_of(a[k], b[k]) for k in a}
            return [shape_of(x, y) for x, y in zip(a, b)]
        return shape_of(*runs)

    def get_config(self) -> Dict[str, Any]:
        if self.file_config is not None:
            return {**self.base_config(), **self.file_config}
        config = {**self.base_config(), "function": self.function,
                  "output_shape": self._output_shape}
        if self.mask is not None:
            config["mask"] = self.mask
        return {**config, "arguments": dict(self.arguments)}

    def extra_repr(self) -> str:
        fn = getattr(self.function, "__name__", type(self.function).__name__)
        parts = [f"function={fn}"]
        if self.arguments:
            parts.append(f"arguments={self.arguments!r}")
        if self.dtype_policy.name != "float32":
            parts.append(f"dtype={self.dtype_policy.name!r}")
        return ", ".join(parts + [f"name={self.name!r}"])
