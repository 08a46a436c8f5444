"""Keras' masks: the ``Masking`` layer (R: ``layer_masking``), how a mask flows from
layer to layer (:func:`call_with_mask`, tf-keras 2.21's rules) and :class:`Sequential`,
a ``torch.nn.Sequential`` that carries masks.

A Keras mask is a ``(batch, time)`` boolean tensor (``False``: a padded step) made by
``Masking`` or ``Embedding(mask_zero=True)``.  In a model, tf-keras hands it to the next
layer: a layer whose ``supports_masking`` is True and whose call takes ``mask`` gets it
(recurrent layers, ``Bidirectional``, ``GlobalAveragePooling1D``, ``Softmax``), and its
``compute_mask(inputs, mask)`` gives the mask of its output (pass-through layers such as
``Dense``, ``Activation``, ``Dropout``, the normalizations forward it, merges combine
it, recurrent layers keep it only with ``return_sequences``; ``TimeDistributed`` folds it
to ``(batch * time, ...)`` for its inner layer, as tf-keras does).  A layer
that does not support masking (convolutions, pooling, ``Flatten``, ``Reshape``, ...) drops
it: tf-keras 2.21 raises nothing there either, the layers after it see no mask.

Calling layers directly, pass the mask yourself: ``lstm(x, mask=embedding.compute_mask(ids))``.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, Optional, Sequence, Tuple

import torch

from . import base as _base
from .core import _Weightless, check_number


def _flat(mask: Any) -> list:
    return list(mask) if isinstance(mask, (list, tuple)) else [mask]


def _takes_mask(module: torch.nn.Module) -> bool:
    """Whether the module's ``forward`` has a ``mask`` argument (cached per class)."""
    cls = type(module)
    cached = cls.__dict__.get("_sepconv_takes_mask")
    if cached is None:
        try:
            cached = "mask" in inspect.signature(cls.forward).parameters
        except (TypeError, ValueError):
            cached = False
        setattr(cls, "_sepconv_takes_mask", cached)
    return cached


def first_argument_mask(args, masks):
    """The Keras mask of a graph call's first argument (a ``("__ref__", *ref)`` tuple, or a
    list of them: their masks, ``None`` where none) from ``masks`` (ref -> mask), as a
    model's run finds it (``KerasFunctional`` and its stream)."""
    first = args[0] if args else None
    if isinstance(first, tuple) and first and first[0] == "__ref__":
        return masks.get(tuple(first[1:]))
    if isinstance(first, list):
        found = [masks.get(tuple(v[1:])) if isinstance(v, tuple) and v and
                 v[0] == "__ref__" else None for v in first]
        return found if any(m is not None for m in found) else None
    return None


def call_with_mask(module: torch.nn.Module, args: Sequence[Any], kwargs: Dict[str, Any],
                   mask: Any) -> Tuple[Any, Any]:
    """Run ``module(*args, **kwargs)`` as a tf-keras 2.21 model runs a layer, given the
    input ``mask`` (``None``, a tensor, or a list matching a list input): the layer gets
    the mask where it ``supports_masking`` and its ``forward`` takes ``mask`` (unless
    ``kwargs`` already names one, which then wins, as an explicit mask does in Keras).
    Returns ``(outputs, output_mask)``; the output mask is ``compute_mask(inputs, mask)``
    for layers that support masking, else ``None``."""
    supports = bool(getattr(module, "supports_masking", False))
    if mask is None and "mask" not in kwargs:
        # (no mask: nothing to hand over, and a layer whose compute_mask is the base one
        # passes None on; sources such as Masking and Embedding still make theirs)
        out = module(*args, **kwargs)
        if not supports or type(module).compute_mask is _base.Layer.compute_mask:
            return out, None
        return out, module.compute_mask(args[0] if args else None, None)
    if "mask" in kwargs:
        mask = kwargs["mask"]
    elif supports and any(m is not None for m in _flat(mask)) and _takes_mask(module):
        kwargs = {**kwargs, "mask": mask}
    out = module(*args, **kwargs)
    if not supports:
        return out, _mask_of_returned_input(module, args, out, mask)
    inputs = args[0] if args else None
    return out, module.compute_mask(inputs, mask)


def _mask_of_returned_input(module: torch.nn.Module, args: Sequence[Any], out: Any,
                            mask: Any) -> Any:
    """Both Kerases keep a mask on the tensor object (``_keras_mask``), so an operation
    node or a ``Lambda`` without ``mask=`` drops it, unless it returns its input tensor
    itself (``tf.cast`` / ``ops.cast`` to the same dtype, ``convert_to_tensor``,
    ``lambda t: t``), which still carries it (tf-keras 2.21 and Keras 3.15 alike).  For
    modules marked ``keeps_mask_of_returned_input``: the mask of each output that *is* an
    input tensor of the first argument, else ``None``."""
    if not getattr(module, "keeps_mask_of_returned_input", False) or not args or \
            all(m is None for m in _flat(mask)):
        return None
    firsts = args[0] if isinstance(args[0], (list, tuple)) else [args[0]]
    masks = _flat(mask) if isinstance(args[0], (list, tuple)) else [mask]
    outs = out if isinstance(out, (list, tuple)) else [out]
    found = [next((m for x, m in zip(firsts, masks) if o is x), None) for o in outs]
    if all(m is None for m in found):
        return None
    return found if isinstance(out, (list, tuple)) else found[0]


class Masking(_Weightless):
    """Keras' ``Masking`` (R: ``layer_masking``): a step of ``(batch, time, ...)`` is
    masked where every value on the last axis equals ``mask_value``; the output is the
    input with masked steps multiplied by zero, and its mask (``compute_mask``) is
    ``any(inputs != mask_value, axis=-1)``, as tf-keras 2.21 computes both."""

    supports_masking = True

    def __init__(self, mask_value=0.0, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self.mask_value = check_number(mask_value, "mask_value")
        self._finish_init()

    def _check_input(self, shape) -> None:
        if len(shape) < 2:
            raise ValueError(f"Layer {self.name!r} expects input of rank >= 2, (batch, "
                             f"time, ...). Received input of shape {shape}")

    def compute_mask(self, inputs, mask=None):
        return torch.any(self._prepare_input(inputs) != self.mask_value, dim=-1)

    def call(self, x: torch.Tensor) -> torch.Tensor:
        keep = torch.any(x != self.mask_value, dim=-1, keepdim=True)
        return x * keep.to(x.dtype)

    def get_config(self) -> Dict[str, Any]:
        return {**self.base_config(), "mask_value": self.mask_value}


class Sequential(torch.nn.Sequential):
    """A ``torch.nn.Sequential`` that carries Keras masks from layer to layer as a
    tf-keras ``Sequential`` model does (see :func:`call_with_mask`): build
    ``Embedding(mask_zero=True)`` / ``Masking`` -> ``LSTM`` models with it.
    :func:`sepconv.load_keras_model` returns one for Keras Sequential models.
    ``forward(inputs, mask=None)``: ``mask`` is an optional mask of the inputs; the
    outputs' mask of the last call is ``compute_mask`` (a model using this one as a layer
    carries it on, as tf-keras does)."""

    supports_masking = True

    def forward(self, inputs, mask: Optional[Any] = None):
        x = inputs
        for module in self:
            x, mask = call_with_mask(module, (x,), {}, mask)
        self._output_mask = mask
        return x

    def compute_mask(self, inputs, mask=None):
        """The mask of the outputs of the last call (``None`` where none)."""
        return self.__dict__.get("_output_mask")
