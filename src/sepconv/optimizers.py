"""Keras' optimizers as ``torch.optim.Optimizer`` subclasses, with tf-keras 2.21's update
rules step for step, and its learning-rate schedules ``ExponentialDecay`` and
``PiecewiseConstantDecay``.

torch's optimizers differ from Keras' where it matters to a ported model: torch's Adam
adds epsilon to ``sqrt(v_hat)``, tf-keras to ``sqrt(v)`` with the bias correction in the
step size; torch's SGD momentum accumulates gradients, Keras' accumulates steps; torch's
RMSprop puts epsilon outside the square root.  These classes take Keras' argument names
and defaults (``Adam(params, learning_rate=0.001, beta_1=0.9, beta_2=0.999,
epsilon=1e-07, amsgrad=False, weight_decay=None, clipnorm=None, clipvalue=None,
global_clipnorm=None, ...)``) and compute what tf-keras' ``apply_gradients`` computes, in
its order: the gradients clipped (``clipnorm`` each, ``global_clipnorm`` together,
``clipvalue`` each element), the weights decayed (``w -= w * weight_decay *
learning_rate``), the update, then the step count (``iterations``) incremented.  The
learning rate is a float32 number, as Keras keeps it (a float64 model steps with the
float32-rounded rate, as in tf-keras).  Parameters whose ``grad`` is ``None`` are left
alone, as Keras skips variables without a gradient.  Constraints of sepconv layers hold
after every step, as in Keras (``sepconv.constraints``).

:func:`get` resolves a name (``"adam"``), a Keras config dict (what model files hold),
a tf-keras / Keras 3 optimizer object or a factory, with the parameters to optimize::

    >>> import torch, sepconv
    >>> model = torch.nn.Linear(3, 1)
    >>> opt = sepconv.optimizers.get({"class_name": "Adam",
    ...                               "config": {"learning_rate": 0.01}}, model.parameters())
    >>> type(opt).__name__, opt.param_groups[0]["learning_rate"]
    ('Adam', 0.01)

Keras 3.15's update rules differ from tf-keras' in roundings a ported model sees
(float64: Keras 3 casts ``beta_1``, ``momentum``, Nadam's ``0.96`` straight to the
weight's dtype, tf-keras through float32; weight decay is ``w *= 1 - wd * lr`` with the
factor in float32; RMSprop divides by the root): ``flavour="keras3"`` (an argument of
every class, or ``keras_flavour("keras3")`` around ``get``) follows Keras 3 on its torch
backend, ``flavour="keras3_tf"`` Keras 3 on its TensorFlow backend (R keras3's and
Python Keras 3's default), ``flavour="tf_keras"`` (the default) tf-keras.  Keras 3's
TensorFlow backend runs the generic update rules with TensorFlow's casts, which round
as tf-keras' do where Keras 3 on torch does not (``beta_1``, ``momentum``, ``0.96`` and
Adagrad's ``initial_accumulator_value`` through float32, weight decay ``w -= w * wd *
lr``, TensorFlow's clipping), and otherwise as Keras 3's rules: RMSprop divides by the
root, and Nadam's momentum product is ``u * beta_1 * (1 - 0.5 * 0.96^t)`` in the Python
numbers.

R's ``optimizer_adam(learning_rate = 1e-3)`` (no parameters: a factory, what R passes to
``compile``) and ``optimizer_adam(model$parameters(), ...)`` are here too.
"""

from __future__ import annotations

import contextvars
import functools
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

import numpy as np
import torch

from ._registry import KerasObject, Registry
from .activations import FLAVOURS, current_flavour, keras_flavour

registry = Registry("optimizer")
schedules = Registry("learning rate schedule")

#: whose update rules: tf-keras 2.21, Keras 3.15 on torch, Keras 3.15 on TensorFlow
OPTIMIZER_FLAVOURS = FLAVOURS + ("keras3_tf",)
#: the flavour :func:`get` was given, for the optimizer it builds (it overrides
#: ``keras_flavour``, which knows no backends)
_get_flavour: contextvars.ContextVar = contextvars.ContextVar("sepconv_optimizer_flavour",
                                                              default=None)


# ---------------------------------------------------------------------------------------
# Learning-rate schedules (float32 arithmetic, as tf-keras computes them)

class LearningRateSchedule(KerasObject):
    """A learning rate as a function of the optimizer's step count ``iterations``."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict) -> "LearningRateSchedule":
        return cls(**config)


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (the exponent
    floored with ``staircase=True``), in float32."""

    def __init__(self, initial_learning_rate: float, decay_steps: float, decay_rate: float,
                 staircase: bool = False, name: Optional[str] = None):
        if not decay_steps or decay_steps <= 0:
            raise ValueError(f"Invalid value for argument `decay_steps`. Expected a "
                             f"positive number. Received decay_steps={decay_steps!r}")
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = bool(staircase)
        self.name = name

    def __call__(self, step: int) -> float:
        f32 = np.float32
        p = f32(step) / f32(self.decay_steps)
        if self.staircase:
            p = np.floor(p)
        return float(f32(self.initial_learning_rate) * np.power(f32(self.decay_rate), p))

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` up to step ``boundaries[0]`` (included), ``values[i + 1]`` after
    ``boundaries[i]``: ``len(values) == len(boundaries) + 1``."""

    def __init__(self, boundaries: List[float], values: List[float], name: Optional[str] = None):
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"Invalid value for argument `values`. Expected one more value "
                             f"than boundaries ({len(boundaries)} + 1). Received "
                             f"{len(values)} values")
        self.boundaries = list(boundaries)
        self.values = list(values)
        self.name = name

    def __call__(self, step: int) -> float:
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return float(np.float32(value))
        return float(np.float32(self.values[-1]))

    def get_config(self) -> dict:
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


schedules.add(ExponentialDecay)
schedules.add(PiecewiseConstantDecay)


def _schedule_or_rate(value: Any) -> Union[float, LearningRateSchedule, Callable]:
    if isinstance(value, LearningRateSchedule):
        return value
    if isinstance(value, dict) or hasattr(value, "get_config"):  # a Keras schedule
        return schedules.get(value, "learning_rate")
    if callable(value):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"Invalid type for argument `learning_rate`. Expected a number or a "
                        f"schedule. Received learning_rate={value!r}")
    if not value >= 0:
        raise ValueError(f"Invalid value for argument `learning_rate`. Expected a "
                         f"non-negative number. Received learning_rate={value!r}")
    return float(value)


# ---------------------------------------------------------------------------------------
# The optimizers

_COMMON = ("learning_rate", "weight_decay", "clipnorm", "clipvalue", "global_clipnorm",
           "use_ema", "ema_momentum", "ema_overwrite_frequency", "jit_compile", "name")
#: keys of Keras' optimizer configs that change nothing here when they hold these values
_INERT = {"is_legacy_optimizer": (False, None), "loss_scale_factor": (None,),
          "gradient_accumulation_steps": (None, 1), "decay": (0.0, None)}


class Optimizer(torch.optim.Optimizer):
    """Base of Keras' optimizers: the common arguments, clipping, weight decay, the step
    count and the learning rate (a float or a schedule of ``iterations``)."""

    #: Keras' own arguments of the subclass, with their defaults
    _hyper: Dict[str, Any] = {}

    def __init__(self, params: Iterable, learning_rate: Any = 0.001, *args,
                 weight_decay: Optional[float] = None, clipnorm: Optional[float] = None,
                 clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None,
                 use_ema: bool = False, ema_momentum: float = 0.99,
                 ema_overwrite_frequency: Optional[int] = None, jit_compile: bool = True,
                 name: Optional[str] = None, flavour: Optional[str] = None, **kwargs):
        cls = type(self).__name__
        if flavour is None:
            flavour = _get_flavour.get() or current_flavour()
        if flavour not in OPTIMIZER_FLAVOURS:
            raise ValueError(f"Invalid value for argument `flavour`. Expected one of "
                             f"{OPTIMIZER_FLAVOURS}. Received flavour={flavour!r}")
        #: whose update rules: ``"tf_keras"`` (tf-keras 2.21), ``"keras3"`` (Keras 3.15 on
        #: torch) or ``"keras3_tf"`` (Keras 3.15 on TensorFlow)
        self.flavour = flavour
        names = list(self._hyper)
        if len(args) > len(names):
            raise TypeError(f"{cls} takes at most {len(names) + 2} positional arguments "
                            f"(params, learning_rate, {', '.join(names)})")
        hyper = dict(self._hyper)
        hyper.update(zip(names, args))
        for key, value in kwargs.items():
            if key in hyper:
                hyper[key] = value
            elif key in _INERT and value in _INERT[key]:
                continue
            else:
                raise TypeError(f"{cls} got an unexpected argument {key}={value!r}. Expected "
                                f"{', '.join(['learning_rate'] + names + list(_COMMON[1:]))}")
        if use_ema:
            raise ValueError(f"Invalid value for argument `use_ema`: sepconv's {cls} keeps no "
                             f"moving average of the weights. Received use_ema=True")
        if clipnorm is not None and global_clipnorm is not None:
            raise ValueError(f"Only one of `clipnorm` and `global_clipnorm` can be set. "
                             f"Received clipnorm={clipnorm}, global_clipnorm={global_clipnorm}")
        for arg, value in (("clipnorm", clipnorm), ("clipvalue", clipvalue),
                           ("global_clipnorm", global_clipnorm),
                           ("weight_decay", weight_decay)):
            if value is not None and not (isinstance(value, (int, float)) and value >= 0):
                raise ValueError(f"Invalid value for argument `{arg}`. Expected a non-negative "
                                 f"number or None. Received {arg}={value!r}")
        self._check(hyper)
        self.name = name or cls
        defaults = dict(hyper, learning_rate=_schedule_or_rate(learning_rate),
                        weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                        global_clipnorm=global_clipnorm, iterations=0)
        super().__init__(params, defaults)

    def _check(self, hyper: dict) -> None:
        """Validate the subclass' arguments (Keras' messages)."""

    @property
    def iterations(self) -> int:
        """Keras' step count: the number of ``step()`` calls that updated something."""
        return self.param_groups[0]["iterations"] if self.param_groups else 0

    @property
    def learning_rate(self) -> float:
        """The learning rate of the next step (float32-rounded, as Keras keeps it)."""
        group = self.param_groups[0]
        return _current_rate(group)

    def get_config(self) -> dict:
        """Keras' config (``from_config`` / ``get({"class_name": ..., "config": ...})``)."""
        group = self.param_groups[0]
        lr = group["learning_rate"]
        if hasattr(lr, "get_config"):
            lr = {"class_name": type(lr).__name__, "config": lr.get_config()}
        return {"name": self.name, "learning_rate": lr, "weight_decay": group["weight_decay"],
                "clipnorm": group["clipnorm"], "global_clipnorm": group["global_clipnorm"],
                "clipvalue": group["clipvalue"], "use_ema": False,
                **{k: group[k] for k in self._hyper}}

    @classmethod
    def from_config(cls, config: dict, params: Iterable) -> "Optimizer":
        return cls(params, **config)

    # -- the step --------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Any]] = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        pairs = [(group, p) for group in self.param_groups for p in group["params"]
                 if p.grad is not None]
        if not pairs:  # Keras' apply_gradients of no gradients: nothing, no step counted
            return loss
        grads = [p.grad for _, p in pairs]
        if any(g.is_sparse for g in grads):
            raise RuntimeError(f"{type(self).__name__} does not take sparse gradients")
        grads = self._clipped(grads)
        for group in self.param_groups:
            group["_lr"] = _current_rate(group)
        for (group, p), g in zip(pairs, grads):  # Keras: decay all, then update all
            wd = group["weight_decay"]
            if wd is None:
                continue
            if self.flavour == "keras3":  # w *= 1 - wd * lr, the factor in float32
                p.mul_((1 - wd * torch.tensor(group["_lr"], dtype=torch.float32)).to(p.dtype))
            else:
                p.sub_(p * _cast(wd, p) * _scalar(group["_lr"], p))
        cache: Dict[Any, Any] = {}  # this step's scalars, per group, dtype and device
        for (group, p), g in zip(pairs, grads):
            state = self.state[p]
            if not state:
                self._init_state(state, p, group)
            key = (id(group), p.dtype, p.device)
            if key not in cache:
                cache[key] = self._scalars(group, p, _scalar(group["_lr"], p),
                                           group["iterations"])
            self._update(p, g, state, group, cache[key])
        for group in self.param_groups:
            group["iterations"] += 1
            del group["_lr"]
        return loss

    def _clipped(self, grads: List[torch.Tensor]) -> List[torch.Tensor]:
        """tf-keras' ``_clip_gradients`` (the first group's settings: Keras' are the
        optimizer's)."""
        group = self.param_groups[0]
        clipnorm, global_clipnorm = group["clipnorm"], group["global_clipnorm"]
        clipvalue = group["clipvalue"]
        if clipnorm and clipnorm > 0:
            return [_clip_by_norm(g, clipnorm, self.flavour) for g in grads]
        if global_clipnorm and global_clipnorm > 0:
            return _clip_by_global_norm(grads, global_clipnorm, self.flavour)
        if clipvalue and clipvalue > 0:
            if self.flavour == "keras3":  # (its bounds float32 tensors)
                clipvalue = float(np.float32(clipvalue))
            return [torch.clamp(g, -clipvalue, clipvalue) for g in grads]
        return grads

    def _const(self, value: float, like: torch.Tensor) -> torch.Tensor:
        """A Python number as ``like``'s dtype the way the flavour casts it: TensorFlow
        (tf-keras, Keras 3 on it) through float32 (:func:`_cast`), Keras 3 on torch
        directly."""
        return _scalar(value, like) if self.flavour == "keras3" else _cast(value, like)

    def _init_state(self, state: dict, p: torch.Tensor, group: dict) -> None:
        raise NotImplementedError

    def _scalars(self, group: dict, p: torch.Tensor, lr: torch.Tensor, iterations: int) -> Any:
        """What a step's update needs beyond the tensors (computed once per step and
        dtype): by default the learning rate."""
        return lr

    def _update(self, p, g, state, group, scalars) -> None:
        raise NotImplementedError

    def __repr__(self):
        config = self.get_config()
        config.pop("name")
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in config.items())})"


def _current_rate(group: dict) -> float:
    lr = group["learning_rate"]
    value = lr(group["iterations"]) if callable(lr) else lr
    return float(np.float32(value))  # (Keras' learning rate is a float32 variable)


def _scalar(value: float, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(value, dtype=like.dtype, device=like.device)


def _cast(value: float, like: torch.Tensor) -> torch.Tensor:
    """tf-keras' ``tf.cast(python_float, variable.dtype)``: through a float32 constant
    (a float64 model's momentum is float32(0.9)), where ``python_float * tensor`` is not."""
    return _scalar(float(np.float32(value)), like)


def _clip_by_norm(g: torch.Tensor, clip_norm: float, flavour: str = "tf_keras") -> torch.Tensor:
    """TensorFlow's ``clip_by_norm``: ``g * clip / max(norm, clip)`` (Keras 3 on torch:
    its ``ops`` take a Python number as a float32 tensor, and ``ops.maximum`` gives
    float32)."""
    l2sum = torch.sum(g * g)
    l2norm = torch.where(l2sum > 0, torch.sqrt(torch.where(l2sum > 0, l2sum,
                                                           torch.ones_like(l2sum))), l2sum)
    if flavour == "keras3":
        clip32 = torch.tensor(clip_norm, dtype=torch.float32)
        return g * clip32.to(g.dtype) / torch.maximum(l2norm.to(torch.float32), clip32)
    clip = _scalar(clip_norm, g)
    return g * clip / torch.maximum(l2norm, clip)


def _clip_by_global_norm(grads: List[torch.Tensor], clip_norm: float,
                         flavour: str = "tf_keras") -> List[torch.Tensor]:
    """TensorFlow's ``clip_by_global_norm``: each ``g * clip * min(1 / norm, 1 / clip)``,
    ``norm`` over all the gradients (``sqrt(2 * sum(l2_loss(g)))``; Keras 3 on torch:
    ``sqrt(sum(g^2))``, the minimum in float32 as :func:`_clip_by_norm` says; Keras 3 on
    TensorFlow as tf-keras, to the last bit a float32 step shows)."""
    if flavour == "keras3":
        norm = torch.sqrt(torch.sum(torch.stack([torch.sum(torch.square(g)) for g in grads])))
    else:
        half = torch.stack([torch.sum(g * g) / 2 for g in grads])
        norm = torch.sqrt(torch.sum(half) * 2)
    out = []
    for g in grads:
        n = norm.to(g.dtype)
        clip = _scalar(clip_norm, g)
        if flavour == "keras3":
            scale = (clip_norm * torch.minimum(1.0 / n, 1.0 / clip).to(torch.float32))
            out.append(g * scale.to(g.dtype))
        else:
            out.append(g * (clip * torch.minimum(1.0 / n, 1.0 / clip)))
    return out


class SGD(Optimizer):
    """tf-keras' ``SGD(learning_rate=0.01, momentum=0.0, nesterov=False)``:
    ``m = momentum * m - lr * g``; ``w += m`` (nesterov: ``w += momentum * m - lr * g``)."""

    _hyper = {"momentum": 0.0, "nesterov": False}

    def __init__(self, params, learning_rate=0.01, *args, **kwargs):
        super().__init__(params, learning_rate, *args, **kwargs)

    def _check(self, hyper):
        m = hyper["momentum"]
        if not isinstance(m, (int, float)) or isinstance(m, bool) or not 0 <= m <= 1:
            raise ValueError(f"Invalid value for argument `momentum`. Expected a float in "
                             f"[0, 1]. Received momentum={m!r}")

    def _init_state(self, state, p, group):
        state["momentum"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _scalars(self, group, p, lr, iterations):
        return lr, self._const(group["momentum"], p)

    def _update(self, p, g, state, group, scalars):
        lr, momentum = scalars
        m = state["momentum"]
        m.copy_(-g * lr + m * momentum)
        if group["nesterov"]:
            p.add_(-g * lr + m * momentum)
        else:
            p.add_(m)


class Adam(Optimizer):
    """tf-keras' ``Adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-07,
    amsgrad=False)``: ``m += (g - m) * (1 - beta_1)``, ``v += (g^2 - v) * (1 - beta_2)``,
    ``w -= m * lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) / (sqrt(v) + epsilon)`` (amsgrad:
    the largest ``v`` so far under the root)."""

    _hyper = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False}

    def _init_state(self, state, p, group):
        state["m"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["v"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["amsgrad"]:
            state["vhat"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _scalars(self, group, p, lr, iterations):
        step = _scalar(iterations + 1, p)
        beta_1_power = torch.pow(self._const(group["beta_1"], p), step)
        beta_2_power = torch.pow(self._const(group["beta_2"], p), step)
        return lr * torch.sqrt(1 - beta_2_power) / (1 - beta_1_power)

    def _update(self, p, g, state, group, alpha):
        # (in place, in tf-keras' order of operations: the same roundings)
        m, v = state["m"], state["v"]
        m.add_(torch.sub(g, m).mul_(1 - group["beta_1"]))
        v.add_(torch.square(g).sub_(v).mul_(1 - group["beta_2"]))
        if group["amsgrad"]:
            vhat = state["vhat"]
            torch.maximum(vhat, v, out=vhat)
            v = vhat
        p.sub_(torch.mul(m, alpha).div_(torch.sqrt(v).add_(group["epsilon"])))


class AdamW(Adam):
    """tf-keras' ``AdamW``: :class:`Adam` with ``weight_decay=0.004`` by default (the
    decay ``w -= w * weight_decay * lr`` before each update)."""

    def __init__(self, params, learning_rate=0.001, *args, weight_decay=0.004, **kwargs):
        super().__init__(params, learning_rate, *args, weight_decay=weight_decay, **kwargs)


class RMSprop(Optimizer):
    """tf-keras' ``RMSprop(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-07,
    centered=False)``: ``v = rho * v + (1 - rho) * g^2``, ``step = lr * g /
    sqrt(v + epsilon)`` (centered: ``v - mean(g)^2 + epsilon``), with momentum ``mom =
    momentum * mom + step``, ``w -= mom``."""

    _hyper = {"rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False}

    def _init_state(self, state, p, group):
        state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["momentum"] > 0:
            state["momentum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["centered"]:
            state["average_gradient"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _update(self, p, g, state, group, lr):
        rho, eps = group["rho"], group["epsilon"]
        velocity = state["velocity"]
        velocity.copy_(rho * velocity + (1 - rho) * torch.square(g))
        if group["centered"]:
            avg = state["average_gradient"]
            avg.copy_(rho * avg + (1 - rho) * g)
            denominator = velocity - torch.square(avg) + eps
        else:
            denominator = velocity + eps
        if self.flavour != "tf_keras":
            increment = g * lr / torch.sqrt(denominator)
        else:
            increment = lr * g * torch.rsqrt(denominator)
        if group["momentum"] > 0:
            mom = state["momentum"]
            mom.copy_(group["momentum"] * mom + increment)
            p.add_(-mom)
        else:
            p.add_(-increment)


class Adagrad(Optimizer):
    """tf-keras' ``Adagrad(learning_rate=0.001, initial_accumulator_value=0.1,
    epsilon=1e-07)``: ``acc += g^2``, ``w -= lr * g / sqrt(acc + epsilon)``."""

    _hyper = {"initial_accumulator_value": 0.1, "epsilon": 1e-7}

    def _init_state(self, state, p, group):
        value = group["initial_accumulator_value"]
        if self.flavour == "keras3_tf":  # (its Constant initializer: a tf.cast)
            value = float(np.float32(value))
        state["accumulator"] = torch.full_like(p, value, memory_format=torch.preserve_format)

    def _update(self, p, g, state, group, lr):
        acc = state["accumulator"]
        acc.add_(g * g)
        p.sub_(lr * g / torch.sqrt(acc + group["epsilon"]))


class Adamax(Optimizer):
    """tf-keras' ``Adamax(learning_rate=0.001, beta_1=0.9, beta_2=0.999,
    epsilon=1e-07)``: ``m += (g - m) * (1 - beta_1)``, ``u = max(beta_2 * u, |g|)``,
    ``w -= lr * m / ((1 - beta_1^t) * (u + epsilon))``."""

    _hyper = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}

    def _init_state(self, state, p, group):
        state["m"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["u"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _scalars(self, group, p, lr, iterations):
        return lr, torch.pow(self._const(group["beta_1"], p), _scalar(iterations + 1, p))

    def _update(self, p, g, state, group, scalars):
        lr, beta_1_power = scalars
        m, u = state["m"], state["u"]
        m.add_((g - m) * (1 - group["beta_1"]))
        u.copy_(torch.maximum(group["beta_2"] * u, torch.abs(g)))
        p.sub_((lr * m) / ((1 - beta_1_power) * (u + group["epsilon"])))


class Nadam(Optimizer):
    """tf-keras' ``Nadam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-07)``
    (Dozat's momentum schedule ``beta_1 * (1 - 0.5 * 0.96^t)``, its running product kept
    in the first parameter's dtype, as tf-keras keeps it)."""

    _hyper = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}

    def _init_state(self, state, p, group):
        state["m"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["v"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def step(self, closure=None):
        # the running product of the momentum schedule, once per step (tf-keras: a
        # variable of the first trainable variable's dtype)
        first = next((p for g in self.param_groups for p in g["params"]
                      if p.grad is not None), None)
        if first is not None:
            for group in self.param_groups:
                if "u_product" not in group:  # (a state from a file: the product of the
                    group["u_product"] = 1.0  # steps taken, as fit kept it)
                    for t in range(1, group["iterations"] + 1):
                        self._advance(group, first, t)
                self._advance(group, first, group["iterations"] + 1)
        return super().step(closure)

    def _advance(self, group: dict, first: torch.Tensor, t: int) -> None:
        if self.flavour == "keras3_tf":  # (Keras 3's generic rule: the Python numbers)
            decay = 1.0 - 0.5 * torch.pow(_scalar(0.96, first), _scalar(t, first))
            group["u_product"] = float(_scalar(group["u_product"], first)
                                       * group["beta_1"] * decay)
            return
        beta_1 = self._const(group["beta_1"], first)
        u_t = beta_1 * (1.0 - 0.5 * torch.pow(self._const(0.96, first), _scalar(t, first)))
        group["u_product"] = float(_scalar(group["u_product"], first) * u_t)

    def _scalars(self, group, p, lr, iterations):
        beta_1, beta_2 = self._const(group["beta_1"], p), self._const(group["beta_2"], p)
        decay = self._const(0.96, p)
        u_t = beta_1 * (1.0 - 0.5 * torch.pow(decay, _scalar(iterations + 1, p)))
        u_t_1 = beta_1 * (1.0 - 0.5 * torch.pow(decay, _scalar(iterations + 2, p)))
        u_product_t = _scalar(group["u_product"], p)
        u_product_t_1 = u_product_t * u_t_1
        beta_2_power = torch.pow(beta_2, _scalar(iterations + 1, p))
        return lr, beta_1, beta_2, u_t, u_t_1, u_product_t, u_product_t_1, beta_2_power

    def _update(self, p, g, state, group, scalars):
        lr, beta_1, beta_2, u_t, u_t_1, u_product_t, u_product_t_1, beta_2_power = scalars
        m, v = state["m"], state["v"]
        if self.flavour == "keras3":  # (the moments decay by the Python numbers)
            beta_1, beta_2 = group["beta_1"], group["beta_2"]
        m.add_((g - m) * (1 - beta_1))
        v.add_((torch.square(g) - v) * (1 - beta_2))
        m_hat = u_t_1 * m / (1 - u_product_t_1) + (1 - u_t) * g / (1 - u_product_t)
        v_hat = v / (1 - beta_2_power)
        p.sub_((m_hat * lr) / (torch.sqrt(v_hat) + group["epsilon"]))


_OPTIMIZERS = {SGD: ("sgd",), Adam: ("adam",), AdamW: ("adamw",), RMSprop: ("rmsprop",),
               Adagrad: ("adagrad",), Adamax: ("adamax",), Nadam: ("nadam",)}
for _cls, _names in _OPTIMIZERS.items():
    registry.add(_cls, *_names, *[f"optimizer_{n}" for n in _names])


def get(identifier: Any, params: Iterable, argument: str = "optimizer",
        flavour: Optional[str] = None) -> torch.optim.Optimizer:
    """An optimizer over ``params`` for a Keras name (``"adam"``, R's
    ``"optimizer_adam"``), a Keras config dict (``{"class_name": "Adam", "config":
    {...}}``; tf-keras' ``"Custom>Adam"`` too), a tf-keras / Keras 3 optimizer, an
    optimizer class, or a factory taking ``params`` (``optimizer_adam(learning_rate=0.01)``).
    A ``torch.optim.Optimizer`` is returned as it is.  ``flavour``: whose update rules
    the optimizer built here follows (``"tf_keras"``, ``"keras3"`` (Keras 3 on torch) or
    ``"keras3_tf"`` (on TensorFlow); ``None``: the current
    :func:`sepconv.activations.keras_flavour`, tf-keras' unless set), where the
    identifier does not name one itself."""
    if isinstance(identifier, torch.optim.Optimizer):
        return identifier
    if isinstance(identifier, dict) and str(identifier.get("class_name", "")).startswith(
            "Custom>"):
        identifier = {**identifier, "class_name": identifier["class_name"][len("Custom>"):]}
    if flavour is not None and flavour not in OPTIMIZER_FLAVOURS:
        raise ValueError(f"Invalid value for argument `flavour`. Expected one of "
                         f"{OPTIMIZER_FLAVOURS}. Received flavour={flavour!r}")
    layers = "keras3" if flavour == "keras3_tf" else flavour or current_flavour()
    token = _get_flavour.set(flavour)
    try:
        with keras_flavour(layers):
            return registry.get(identifier, argument, build={"params": params})
    finally:
        _get_flavour.reset(token)


def serialize(optimizer: Optimizer) -> dict:
    """Keras' config form ``{"class_name", "config"}``."""
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}


def _r_function(cls: type, name: str):
    def r_optimizer(params=None, **kwargs):
        if params is None:
            factory = functools.partial(cls, **kwargs)
            factory.__name__ = name
            return factory
        return cls(params, **kwargs)
    r_optimizer.__name__ = f"optimizer_{name}"
    r_optimizer.__doc__ = (f"R keras' ``optimizer_{name}(...)``: without ``params``, a "
                           f"factory (``factory(model.parameters())``, or pass it to "
                           f":func:`get`); with them, a :class:`{cls.__name__}`.")
    return r_optimizer


__all__ = ["Optimizer", "get", "serialize", "LearningRateSchedule", "ExponentialDecay",
           "PiecewiseConstantDecay"] + [c.__name__ for c in _OPTIMIZERS]
for _cls, _names in _OPTIMIZERS.items():
    _r = _r_function(_cls, _names[0])
    globals()[_r.__name__] = _r
    __all__.append(_r.__name__)
R_NAMES = [n for n in __all__ if n.startswith("optimizer_")]
