"""Keras' losses (tf-keras 2.21's formulas, reductions and names) on torch tensors, and
the model-wide penalty sum :func:`regularization_loss`.

Functions take ``(y_true, y_pred)`` in Keras' order and return one loss per sample (the
last axis reduced), as ``keras.losses.categorical_crossentropy`` does; the classes
(``CategoricalCrossentropy(from_logits=False, label_smoothing=0.0, axis=-1,
reduction="auto", name=...)``) reduce them with ``sample_weight`` and masks as
``keras.losses.Loss.__call__`` does.  :func:`get` resolves a name (``"mse"``,
``"categorical_crossentropy"``, R's ``"loss_categorical_crossentropy"``), a class
config dict, a tf-keras / Keras 3 loss object or a callable, through the registry the
activations use.

The crossentropies on probabilities clip them to ``[1e-7, 1 - 1e-7]`` as tf-keras does,
but, also as tf-keras does, take the logits when the prediction is the output of a
softmax (``CategoricalCrossentropy``, ``SparseCategoricalCrossentropy``) or a sigmoid
(``BinaryCrossentropy``): tf-keras' ``softmax`` and ``sigmoid`` keep their input on the
output tensor (``output._keras_logits``), and sepconv's do the same
(``activation="softmax"`` on any layer, ``Activation("sigmoid")``, ``Softmax``), so a
loaded model's output gives Keras' loss and gradient without a user's ``from_logits``.
An operation after the activation (a slice, a cast, a reshape) makes a tensor without
logits: then the probabilities are clipped, as in tf-keras.  Keras' mask of the
prediction, ``y_pred._keras_mask`` (or the ``mask`` argument), weighs padded steps out
as tf-keras does.

Example::

    >>> import torch, sepconv
    >>> loss = sepconv.losses.get("categorical_crossentropy")
    >>> probs = sepconv.activations.softmax(torch.tensor([[2.0, 1.0, 0.1]]))
    >>> round(float(loss(torch.tensor([[1.0, 0.0, 0.0]]), probs)), 4)
    0.417
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from . import functional as _functional
from ._registry import KerasObject, Registry

registry = Registry("loss")

#: tf-keras' backend.epsilon()
EPSILON = 1e-7
REDUCTIONS = ("auto", "none", "sum", "sum_over_batch_size")


def regularization_loss(module: torch.nn.Module) -> torch.Tensor:
    """Sum of the weight and activity penalties of every sepconv layer in ``module``.

    Add it to the data loss before ``backward()``, as Keras adds ``model.losses``.
    Returns a zero scalar when there are none.
    """
    total = None
    for sub in module.modules():
        for loss in getattr(sub, "losses", None) or ():
            total = loss if total is None else total + loss.to(total.device)
    if total is None:
        p = next(module.parameters(), None)
        return torch.zeros((), device=None if p is None else p.device)
    return total


# ---------------------------------------------------------------------------------------
# The loss functions: (y_true, y_pred) -> one loss per sample, tf-keras 2.21's formulas.

def _as_tensor(x: Any, like: Optional[torch.Tensor] = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x
    else:
        import numpy as np
        t = torch.as_tensor(np.asarray(x))
    if like is not None:
        t = t.to(device=like.device, dtype=like.dtype)
    elif not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    return t


def _pair(y_true, y_pred):
    y_pred = _as_tensor(y_pred)
    return _as_tensor(y_true, y_pred), y_pred


def _logits(output: torch.Tensor, from_logits: bool):
    """tf-keras' ``_get_logits``: a softmax / sigmoid output's logits, if it kept them."""
    logits = getattr(output, "_keras_logits", None)
    if logits is not None:
        return logits, True
    return output, from_logits


def mean_squared_error(y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    return torch.mean(torch.square(y_pred - y_true), dim=-1)


def mean_absolute_error(y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    return torch.mean(torch.abs(y_pred - y_true), dim=-1)


def mean_absolute_percentage_error(y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    diff = torch.abs((y_true - y_pred) / torch.clamp(torch.abs(y_true), min=EPSILON))
    return 100.0 * torch.mean(diff, dim=-1)


def mean_squared_logarithmic_error(y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    first = torch.log(torch.clamp(y_pred, min=EPSILON) + 1.0)
    second = torch.log(torch.clamp(y_true, min=EPSILON) + 1.0)
    return torch.mean(torch.square(first - second), dim=-1)


def _maybe_convert_labels(y_true: torch.Tensor) -> torch.Tensor:
    """0/1 labels -> -1/1 (tf-keras' hinge losses), other labels as they are."""
    if bool(((y_true == 0) | (y_true == 1)).all()):
        return 2.0 * y_true - 1.0
    return y_true


def hinge(y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    y_true = _maybe_convert_labels(y_true)
    return torch.mean(torch.clamp(1.0 - y_true * y_pred, min=0.0), dim=-1)


def squared_hinge(y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    y_true = _maybe_convert_labels(y_true)
    return torch.mean(torch.square(torch.clamp(1.0 - y_true * y_pred, min=0.0)), dim=-1)


def categorical_hinge(y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    pos = torch.sum(y_true * y_pred, dim=-1)
    neg = torch.amax((1.0 - y_true) * y_pred, dim=-1)
    return torch.clamp(neg - pos + 1.0, min=0.0)


def huber(y_true, y_pred, delta: float = 1.0):
    """tf-keras computes it in ``floatx`` (float32), whatever the inputs' dtype."""
    y_true, y_pred = _pair(y_true, y_pred)
    y_pred, y_true = y_pred.to(torch.float32), y_true.to(torch.float32)
    delta_ = torch.tensor(delta, dtype=torch.float32, device=y_pred.device)
    error = y_pred - y_true
    abs_error = torch.abs(error)
    return torch.mean(torch.where(abs_error <= delta_, 0.5 * torch.square(error),
                                  delta_ * abs_error - 0.5 * torch.square(delta_)), dim=-1)


def log_cosh(y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    x = y_pred - y_true
    log2 = torch.log(torch.tensor(2.0)).to(x.dtype)  # (tf: log(2.0) in float32, cast)
    return torch.mean(x + F.softplus(-2.0 * x) - log2.to(x.device), dim=-1)


def kl_divergence(y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    y_true = torch.clamp(y_true, EPSILON, 1.0)
    y_pred = torch.clamp(y_pred, EPSILON, 1.0)
    return torch.sum(y_true * torch.log(y_true / y_pred), dim=-1)


def poisson(y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    return torch.mean(y_pred - y_true * torch.log(y_pred + EPSILON), dim=-1)


def cosine_similarity(y_true, y_pred, axis: int = -1):
    y_true, y_pred = _pair(y_true, y_pred)
    return -torch.sum(_functional.l2_normalize(y_true, axis) *
                      _functional.l2_normalize(y_pred, axis), dim=axis)


def _check_axis(axis: Any) -> int:
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise ValueError(f"Invalid value for argument `axis`. Expected an int. "
                         f"Received axis={axis!r}")
    return axis


def categorical_crossentropy(y_true, y_pred, from_logits: bool = False,
                             label_smoothing: float = 0.0, axis: int = -1):
    """``y_true``: one-hot (or probabilities), ``y_pred``: probabilities (or logits),
    same shape ``(..., classes)`` (``classes`` on ``axis``) -> ``(...)``."""
    axis = _check_axis(axis)
    y_true, y_pred = _pair(y_true, y_pred)
    if label_smoothing:
        ls = torch.tensor(label_smoothing, dtype=y_pred.dtype, device=y_pred.device)
        classes = torch.tensor(y_true.shape[axis], dtype=y_pred.dtype, device=y_pred.device)
        y_true = y_true * (1.0 - ls) + ls / classes
    if y_true.shape != y_pred.shape:
        raise ValueError(f"categorical_crossentropy: y_true and y_pred must have the same "
                         f"shape. Received y_true.shape={tuple(y_true.shape)}, "
                         f"y_pred.shape={tuple(y_pred.shape)}")
    output, from_logits = _logits(y_pred, from_logits)
    if from_logits:
        return -torch.sum(y_true * torch.log_softmax(output, dim=axis), dim=axis)
    output = output / torch.sum(output, dim=axis, keepdim=True)
    output = torch.clamp(output, EPSILON, 1.0 - EPSILON)
    return -torch.sum(y_true * torch.log(output), dim=axis)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits: bool = False,
                                    axis: int = -1, ignore_class: Optional[int] = None):
    """``y_true``: class indices ``(...)`` (or ``(..., 1)``), ``y_pred``: probabilities
    (or logits) ``(..., classes)`` -> ``(...)``.  ``ignore_class``: those entries lose 0
    and are masked out of the reduction (``result._keras_mask``), as in tf-keras."""
    axis = _check_axis(axis)
    y_pred = _as_tensor(y_pred)
    target = _as_tensor(y_true)
    target = target.to(device=y_pred.device, dtype=torch.int64)
    output, from_logits = _logits(y_pred, from_logits)
    if not from_logits:
        output = torch.log(torch.clamp(output, EPSILON, 1.0 - EPSILON))
    output = torch.movedim(output, axis, -1)
    shape = output.shape[:-1]
    target = target.reshape(-1)
    output = output.reshape(-1, output.shape[-1])
    if target.shape[0] != output.shape[0]:
        raise ValueError(f"sparse_categorical_crossentropy: y_true holds {target.shape[0]} "
                         f"class indices, y_pred {output.shape[0]} rows of classes. Received "
                         f"y_true.shape={tuple(_as_tensor(y_true).shape)}, "
                         f"y_pred.shape={tuple(y_pred.shape)}")
    valid = None
    if ignore_class is not None:
        valid = target != int(ignore_class)
        target = torch.where(valid, target, torch.zeros_like(target))
    classes = output.shape[-1]
    if target.device.type == "cpu" and bool(((target < 0) | (target >= classes)).any()):
        raise ValueError(f"sparse_categorical_crossentropy: class indices must lie in "
                         f"[0, {classes}). Received {target.min().item()}.."
                         f"{target.max().item()}")
    losses = F.cross_entropy(output, target, reduction="none")
    if valid is not None:
        losses = torch.where(valid, losses, torch.zeros_like(losses)).reshape(shape)
        losses._keras_mask = valid.reshape(shape)
        return losses
    return losses.reshape(shape)


def binary_crossentropy(y_true, y_pred, from_logits: bool = False,
                        label_smoothing: float = 0.0, axis: int = -1):
    """``y_true``: 0/1 (or probabilities), ``y_pred``: probabilities (or logits), same
    shape -> the mean over ``axis``."""
    axis = _check_axis(axis)
    y_true, y_pred = _pair(y_true, y_pred)
    if label_smoothing:
        ls = torch.tensor(label_smoothing, dtype=y_pred.dtype, device=y_pred.device)
        y_true = y_true * (1.0 - ls) + 0.5 * ls
    output, from_logits = _logits(y_pred, from_logits)
    if from_logits:  # TensorFlow's sigmoid_cross_entropy_with_logits
        bce = torch.relu(output) - output * y_true + torch.log1p(torch.exp(-torch.abs(output)))
    else:
        output = torch.clamp(output, EPSILON, 1.0 - EPSILON)
        bce = y_true * torch.log(output + EPSILON)
        bce = -(bce + (1 - y_true) * torch.log(1 - output + EPSILON))
    return torch.mean(bce, dim=axis)


# ---------------------------------------------------------------------------------------
# The classes: per-sample losses reduced as tf-keras' Loss.__call__ reduces them.

def _squeeze_pair(y_true: torch.Tensor, y_pred: torch.Tensor):
    """tf-keras' ``squeeze_or_expand_dimensions(y_pred, y_true)``: a trailing axis of
    size 1 goes where the ranks differ by one (a squeezed ``y_pred`` keeps no logits)."""
    rp, rt = y_pred.dim(), y_true.dim()
    if rp - rt != 1 or (rp and y_pred.shape[-1] == 1):
        if rp - rt == 1 and y_pred.shape[-1] == 1:
            y_pred = y_pred.squeeze(-1)
        elif rp - rt == -1 and y_true.shape[-1] == 1:
            y_true = y_true.squeeze(-1)
    return y_true, y_pred


def _match_weights(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    if weights.dim() == 0:
        return weights
    if weights.dim() - losses.dim() == 1:
        return weights.squeeze(-1)
    if losses.dim() - weights.dim() == 1:
        return weights.unsqueeze(-1)
    return weights


class Loss(KerasObject):
    """tf-keras' ``Loss``: ``loss(y_true, y_pred, sample_weight=None)`` -> the reduced
    loss (a scalar, or the per-sample losses for ``reduction="none"``).

    ``reduction``: ``"auto"`` / ``"sum_over_batch_size"`` (the sum of the weighted
    losses over their count), ``"sum"``, ``"none"``.  ``sample_weight``: a scalar, one
    weight per sample ``(batch,)`` or per loss element.  ``mask``: a boolean tensor of
    the per-sample losses' shape (``(batch, steps)`` for a sequence), by default
    ``y_pred._keras_mask``; masked entries weigh 0 and ``"sum_over_batch_size"``
    divides by the unmasked count.
    """

    def __init__(self, reduction: str = "auto", name: Optional[str] = None):
        if not isinstance(reduction, str) or reduction.lower() not in REDUCTIONS:
            raise ValueError(f"Invalid value for argument `reduction`. Expected one of "
                             f"{REDUCTIONS}. Received reduction={reduction!r}")
        self.reduction = reduction.lower()
        self.name = name

    def call(self, y_true, y_pred) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, y_true, y_pred, sample_weight=None, mask=None) -> torch.Tensor:
        y_pred = _as_tensor(y_pred)
        losses = self.call(y_true, y_pred)
        in_mask = mask if mask is not None else getattr(y_pred, "_keras_mask", None)
        out_mask = getattr(losses, "_keras_mask", None)
        if in_mask is not None and out_mask is not None:
            mask = in_mask.to(torch.bool) & out_mask
        else:
            mask = in_mask if in_mask is not None else out_mask
        if not losses.is_floating_point():
            losses = losses.to(torch.float32)
        if mask is not None:  # tf-keras' apply_valid_mask
            mask = _as_tensor(mask).to(device=losses.device, dtype=losses.dtype)
            if self.reduction in ("auto", "sum_over_batch_size"):
                mask = mask * (mask.numel() / mask.sum())
            if sample_weight is not None:
                sw = _as_tensor(sample_weight, mask)
                sample_weight = _match_weights(mask, sw) * mask
            else:
                sample_weight = mask
        return reduce_weighted_loss(losses, sample_weight, self.reduction)

    def get_config(self) -> dict:
        return {"reduction": self.reduction, "name": self.name}

    @classmethod
    def from_config(cls, config: dict) -> "Loss":
        return cls(**config)


def reduce_weighted_loss(losses: torch.Tensor, sample_weight=None,
                         reduction: str = "sum_over_batch_size") -> torch.Tensor:
    """tf-keras' ``compute_weighted_loss``: ``losses * sample_weight`` (its rank matched
    to the losses'), then summed (``"sum"``), summed over the count of losses
    (``"auto"``, ``"sum_over_batch_size"``; 0 when there are none) or kept (``"none"``)."""
    if sample_weight is None:
        weighted = losses
    else:
        sw = _as_tensor(sample_weight, losses)
        weighted = losses * _match_weights(losses, sw)
    if reduction == "none":
        return weighted
    total = torch.sum(weighted)
    if reduction in ("auto", "sum_over_batch_size"):
        n = weighted.numel()
        return total / n if n else torch.zeros_like(total)
    return total


class LossFunctionWrapper(Loss):
    """A loss function with its keyword arguments, as a :class:`Loss`."""

    def __init__(self, fn: Callable, reduction: str = "auto", name: Optional[str] = None,
                 **kwargs):
        super().__init__(reduction, name)
        self.fn = fn
        self._fn_kwargs = kwargs

    def call(self, y_true, y_pred) -> torch.Tensor:
        y_pred = _as_tensor(y_pred)
        if not isinstance(y_true, torch.Tensor):
            import numpy as np
            y_true = torch.as_tensor(np.asarray(y_true))
        y_true, y_pred = _squeeze_pair(y_true, y_pred)  # (class indices stay integers)
        return self.fn(y_true, y_pred, **self._fn_kwargs)

    def get_config(self) -> dict:
        return {**super().get_config(), **self._fn_kwargs}


def _wrapper(fn: Callable, default_name: str, doc: str, **defaults):
    """A :class:`LossFunctionWrapper` subclass with Keras' constructor arguments."""
    params = list(defaults)

    def __init__(self, *args, reduction: str = "auto", name: str = default_name, **kwargs):
        if len(args) > len(params):
            raise TypeError(f"{type(self).__name__} takes at most {len(params)} positional "
                            f"arguments ({', '.join(params)}); received {len(args)}")
        values = dict(defaults)
        values.update(zip(params, args))
        kwargs.pop("fn", None)  # (a .keras file's config names the function)
        if kwargs.get("dtype") is None:
            kwargs.pop("dtype", None)  # (Keras 3's key)
        for key, value in kwargs.items():
            if key not in defaults:
                raise TypeError(f"{type(self).__name__} got an unexpected argument {key!r}. "
                                f"Expected: {', '.join(params + ['reduction', 'name'])}")
            values[key] = value
        LossFunctionWrapper.__init__(self, fn, reduction=reduction, name=name, **values)

    def get_config(self) -> dict:
        return {"reduction": self.reduction, "name": self.name, **self._fn_kwargs}

    P = inspect.Parameter
    __init__.__signature__ = inspect.Signature(
        [P("self", P.POSITIONAL_OR_KEYWORD)]
        + [P(k, P.POSITIONAL_OR_KEYWORD, default=v) for k, v in defaults.items()]
        + [P("reduction", P.KEYWORD_ONLY, default="auto"),
           P("name", P.KEYWORD_ONLY, default=default_name)])
    return {"__init__": __init__, "get_config": get_config, "__doc__": doc}


_CLASSES = [
    ("MeanSquaredError", mean_squared_error, "mean_squared_error", {},
     ("mse", "mean_squared_error")),
    ("MeanAbsoluteError", mean_absolute_error, "mean_absolute_error", {},
     ("mae", "mean_absolute_error")),
    ("MeanAbsolutePercentageError", mean_absolute_percentage_error,
     "mean_absolute_percentage_error", {}, ("mape", "mean_absolute_percentage_error")),
    ("MeanSquaredLogarithmicError", mean_squared_logarithmic_error,
     "mean_squared_logarithmic_error", {}, ("msle", "mean_squared_logarithmic_error")),
    ("BinaryCrossentropy", binary_crossentropy, "binary_crossentropy",
     {"from_logits": False, "label_smoothing": 0.0, "axis": -1},
     ("bce", "binary_crossentropy")),
    ("CategoricalCrossentropy", categorical_crossentropy, "categorical_crossentropy",
     {"from_logits": False, "label_smoothing": 0.0, "axis": -1},
     ("categorical_crossentropy",)),
    ("SparseCategoricalCrossentropy", sparse_categorical_crossentropy,
     "sparse_categorical_crossentropy",
     {"from_logits": False, "ignore_class": None, "axis": -1},
     ("sparse_categorical_crossentropy",)),
    ("Hinge", hinge, "hinge", {}, ("hinge",)),
    ("SquaredHinge", squared_hinge, "squared_hinge", {}, ("squared_hinge",)),
    ("CategoricalHinge", categorical_hinge, "categorical_hinge", {}, ("categorical_hinge",)),
    ("Huber", huber, "huber_loss", {"delta": 1.0}, ("huber_loss", "huber")),
    ("LogCosh", log_cosh, "log_cosh", {}, ("log_cosh", "logcosh")),
    ("KLDivergence", kl_divergence, "kl_divergence", {},
     ("kld", "kl_divergence", "kullback_leibler_divergence")),
    ("Poisson", poisson, "poisson", {}, ("poisson",)),
    ("CosineSimilarity", cosine_similarity, "cosine_similarity", {"axis": -1},
     ("cosine_similarity",)),
]

__all__ = ["Loss", "LossFunctionWrapper", "get", "serialize", "regularization_loss",
           "reduce_weighted_loss"]

for _cls_name, _fn, _default, _defaults, _names in _CLASSES:
    _cls = type(_cls_name, (LossFunctionWrapper,), {
        "__module__": __name__,
        **_wrapper(_fn, _default, f"tf-keras' ``{_cls_name}``: :func:`{_fn.__name__}` "
                   f"reduced as :class:`Loss` does.  Arguments: "
                   f"{', '.join(f'{k}={v!r}' for k, v in _defaults.items()) or 'none'}, "
                   f"reduction='auto', name={_default!r}.", **_defaults)})
    globals()[_cls_name] = _cls
    # a bare name resolves to the class with its defaults (what compile(loss="mse")
    # wraps), also as R's ``loss_<name>``
    registry.add(_cls, *_names, *[f"loss_{n}" for n in _names])
    __all__ += [_cls_name, _fn.__name__]
    _fn_names = {_fn.__name__, *_names}
    for _n in _fn_names:
        globals().setdefault(_n, _fn)

# (aliases: keras.losses.mse is mean_squared_error)
mse, mae, mape, msle = (mean_squared_error, mean_absolute_error,
                        mean_absolute_percentage_error, mean_squared_logarithmic_error)
kld = kullback_leibler_divergence = kl_divergence
huber_loss, logcosh, bce = huber, log_cosh, binary_crossentropy


def get(identifier: Any, argument: str = "loss") -> Any:
    """A :class:`Loss` (or your callable) for a Keras name (``"mse"``,
    ``"categorical_crossentropy"``, ``"loss_categorical_crossentropy"``), a class config
    dict (``{"class_name": "CategoricalCrossentropy", "config": {...}}``, as model files
    hold it), a class, a tf-keras / Keras 3 loss object or function, or a callable."""
    return registry.get(identifier, argument)


def serialize(loss: Any) -> Any:
    """Keras' config form: ``{"class_name", "config"}`` for a :class:`Loss`, else a name."""
    from ._registry import serialize as _serialize
    return _serialize(loss)


def _r_function(cls: type, fn: Callable, default_name: str):
    def r_loss(y_true=None, y_pred=None, **kwargs):
        if y_true is None and y_pred is None:
            return cls(**kwargs)
        if y_true is None or y_pred is None:
            raise ValueError(f"loss_{default_name}: give both y_true and y_pred (the "
                             f"per-sample losses) or neither (the loss object)")
        kwargs.pop("reduction", None)
        kwargs.pop("name", None)
        return fn(y_true, y_pred, **kwargs)
    r_loss.__name__ = f"loss_{default_name}"
    r_loss.__doc__ = (f"R keras' ``loss_{default_name}(y_true, y_pred, ...)``: with both "
                      f"tensors the per-sample losses (:func:`{fn.__name__}`), without them "
                      f"a :class:`{cls.__name__}` built with the other arguments.")
    return r_loss


for _cls_name, _fn, _default, _defaults, _names in _CLASSES:
    _r = _r_function(globals()[_cls_name], _fn, _names[-1])
    globals()[_r.__name__] = _r
    __all__.append(_r.__name__)
R_NAMES = [n for n in __all__ if n.startswith("loss_")]
