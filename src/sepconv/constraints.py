"""Keras weight constraints: projections applied after each optimizer step.

``max_norm`` (max_value=2, axis=0), ``non_neg``, ``unit_norm`` (axis=0) and
``min_max_norm`` (min_value=0, max_value=1, rate=1, axis=0), with Keras' formulas and
axes on the weight's Keras shape (norms guarded by Keras' epsilon 1e-7).

Layers register their constrained parameters here; a global optimizer step post-hook
projects every constrained parameter that the stepping optimizer holds, so constraints
hold after ``optimizer.step()`` with no call by the user.  :func:`apply_constraints`
does the same by hand for a module.
"""

from __future__ import annotations

import weakref
from typing import Sequence, Union

import torch

from ._registry import KerasObject, Registry, serialize

registry = Registry("constraint")
EPSILON = 1e-7
Axis = Union[int, Sequence[int]]


def _axes(axis: Axis):
    return tuple(axis) if isinstance(axis, (tuple, list)) else (int(axis),)


class Constraint(KerasObject):
    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return w


class MaxNorm(Constraint):
    def __init__(self, max_value=2, axis: Axis = 0):
        self.max_value, self.axis = max_value, axis

    def __call__(self, w):
        norms = w.square().sum(dim=_axes(self.axis), keepdim=True).sqrt()
        desired = norms.clamp(0, self.max_value)
        return w * (desired / (EPSILON + norms))

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


class NonNeg(Constraint):
    def __call__(self, w):
        return w * (w >= 0).to(w.dtype)


class UnitNorm(Constraint):
    def __init__(self, axis: Axis = 0):
        self.axis = axis

    def __call__(self, w):
        return w / (EPSILON + w.square().sum(dim=_axes(self.axis), keepdim=True).sqrt())

    def get_config(self):
        return {"axis": self.axis}


class MinMaxNorm(Constraint):
    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis: Axis = 0):
        self.min_value, self.max_value, self.rate, self.axis = min_value, max_value, rate, axis

    def __call__(self, w):
        norms = w.square().sum(dim=_axes(self.axis), keepdim=True).sqrt()
        desired = self.rate * norms.clamp(self.min_value, self.max_value) \
            + (1 - self.rate) * norms
        return w * (desired / (EPSILON + norms))

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": self.axis}


for _cls, _names in [(MaxNorm, ("max_norm", "maxnorm")), (NonNeg, ("non_neg", "nonneg")),
                     (UnitNorm, ("unit_norm", "unitnorm")),
                     (MinMaxNorm, ("min_max_norm", "minmaxnorm"))]:
    registry.add(_cls, *_names)


def get(identifier, argument: str = "constraint"):
    return registry.get(identifier, argument)


# --- automatic application after optimizer steps -------------------------------------

_constrained_modules: "weakref.WeakSet" = weakref.WeakSet()
_hook_handle = None


def _constrained_parameters(module: torch.nn.Module):
    """(parameter, constraint) pairs of a module that declares ``constrained_parameters``."""
    fn = getattr(module, "constrained_parameters", None)
    return fn() if fn is not None else ()


def track(module: torch.nn.Module) -> None:
    """Have ``module``'s constraints applied after every optimizer step that holds its
    parameters.  Called by layers that have constraints."""
    global _hook_handle
    _constrained_modules.add(module)
    if _hook_handle is None:
        from torch.optim.optimizer import register_optimizer_step_post_hook
        _hook_handle = register_optimizer_step_post_hook(_after_step)


def _after_step(optimizer, args, kwargs) -> None:
    stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    with torch.no_grad():
        for module in list(_constrained_modules):
            for param, constraint in _constrained_parameters(module):
                if id(param) in stepped:
                    param.copy_(constraint(param))


def apply_constraints(module: torch.nn.Module) -> None:
    """Project every constrained weight of ``module`` (and its submodules) now."""
    with torch.no_grad():
        for sub in module.modules():
            for param, constraint in _constrained_parameters(sub):
                param.copy_(constraint(param))


__all__ = ["get", "serialize", "apply_constraints", "Constraint", "MaxNorm", "NonNeg",
           "UnitNorm", "MinMaxNorm"]
