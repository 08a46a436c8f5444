"""Keras regularizers: ``l1``, ``l2``, ``l1_l2`` by name, instance, callable or config.

A regularizer maps a weight (in its Keras shape) to a scalar penalty.  Bare names use
Keras' defaults: ``"l1"`` and ``"l2"`` are 0.01, ``"l1_l2"`` is ``L1L2(l1=0.01, l2=0.01)``
as in tf-keras (Keras 3's bare ``"l1_l2"`` is zero for both).
"""

from __future__ import annotations

import torch

from ._registry import KerasObject, Registry, serialize

registry = Registry("regularizer")


def _check(name, value):
    value = float(value)
    if value < 0 or value != value:
        raise ValueError(f"Value for argument `{name}` must be a non-negative number. "
                         f"Received: {name}={value}")
    return value


class Regularizer(KerasObject):
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class L1L2(Regularizer):
    """``l1 * sum(|x|) + l2 * sum(x**2)``."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1, self.l2 = _check("l1", l1), _check("l2", l2)

    def __call__(self, x):
        penalty = x.new_zeros(())
        if self.l1:
            penalty = penalty + self.l1 * x.abs().sum()
        if self.l2:
            penalty = penalty + self.l2 * x.square().sum()
        return penalty

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    def __init__(self, l1=0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    def __init__(self, l2=0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


registry.add(L1, "l1")
registry.add(L2, "l2")
registry.add(L1L2)
registry.factories["l1_l2"] = lambda: L1L2(l1=0.01, l2=0.01)


def get(identifier, argument: str = "regularizer"):
    return registry.get(identifier, argument)


__all__ = ["get", "serialize", "Regularizer", "L1", "L2", "L1L2"]
