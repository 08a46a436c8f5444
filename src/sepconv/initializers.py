"""Keras initializers by name, instance, callable or config dict.

An initializer is called as ``init(shape, dtype=..., device=...)`` with the weight's
*Keras* shape, so fans are Keras' (``_compute_fans``): the depthwise kernel
``(kernel_size, in_channels, depth_multiplier)`` has ``fan_in = kernel_size * in_channels``
and ``fan_out = kernel_size * depth_multiplier``; the pointwise kernel
``(1, in_channels * depth_multiplier, filters)`` has ``fan_in = in_channels * depth_multiplier``
and ``fan_out = filters``.  A plain callable with the same signature works too.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch

from ._registry import KerasObject, Registry, serialize

registry = Registry("initializer")


def _compute_fans(shape: Sequence[int], input_axes=None,
                  output_axes=None) -> Tuple[float, float]:
    """Keras' fans: last axis is fan_out, the one before fan_in, the rest receptive field
    (or, as Keras 3 allows, the products over explicit ``input_axes`` / ``output_axes``)."""
    shape = tuple(shape)
    if input_axes is not None and output_axes is not None:
        return (float(math.prod(shape[a] for a in input_axes)),
                float(math.prod(shape[a] for a in output_axes)))
    if len(shape) == 0:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    if len(shape) == 2:
        return float(shape[0]), float(shape[1])
    receptive = math.prod(shape[:-2])
    return float(shape[-2] * receptive), float(shape[-1] * receptive)


class Initializer(KerasObject):
    """Base class: ``__call__(shape, dtype=None, device=None) -> torch.Tensor``."""

    def __call__(self, shape, dtype=None, device=None) -> torch.Tensor:
        raise NotImplementedError

    def _generator(self, device) -> Optional[torch.Generator]:
        seed = getattr(self, "seed", None)
        if seed is None:
            return None
        gen = torch.Generator(device=device or "cpu")
        gen.manual_seed(int(seed))
        return gen


def _float(dtype):
    return dtype if dtype is not None else torch.get_default_dtype()


def _sample(kind: str, shape, dtype, device, gen, a: float, b: float) -> torch.Tensor:
    """Draw in float32 (float64 for float64 weights) and cast: half types stay unbiased."""
    work = torch.float64 if dtype == torch.float64 else torch.float32
    out = torch.empty(tuple(shape), dtype=work, device=device)
    if kind == "normal":
        out.normal_(a, b, generator=gen)
    elif kind == "uniform":
        out.uniform_(a, b, generator=gen)
    else:  # truncated normal at two standard deviations, as Keras
        torch.nn.init.trunc_normal_(out, a, b, a - 2 * b, a + 2 * b, generator=gen)
    return out.to(dtype)


class Zeros(Initializer):
    def __call__(self, shape, dtype=None, device=None):
        return torch.zeros(tuple(shape), dtype=_float(dtype), device=device)


class Ones(Initializer):
    def __call__(self, shape, dtype=None, device=None):
        return torch.ones(tuple(shape), dtype=_float(dtype), device=device)


class Constant(Initializer):
    def __init__(self, value=0.0):
        self.value = value

    def __call__(self, shape, dtype=None, device=None):
        return torch.full(tuple(shape), float(self.value), dtype=_float(dtype), device=device)

    def get_config(self):
        return {"value": self.value}


class RandomNormal(Initializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean, self.stddev, self.seed = mean, stddev, seed

    def __call__(self, shape, dtype=None, device=None):
        return _sample("normal", shape, _float(dtype), device, self._generator(device),
                       self.mean, self.stddev)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class TruncatedNormal(RandomNormal):
    def __call__(self, shape, dtype=None, device=None):
        return _sample("truncated", shape, _float(dtype), device, self._generator(device),
                       self.mean, self.stddev)


class RandomUniform(Initializer):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        self.minval, self.maxval, self.seed = minval, maxval, seed

    def __call__(self, shape, dtype=None, device=None):
        return _sample("uniform", shape, _float(dtype), device, self._generator(device),
                       self.minval, self.maxval)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class VarianceScaling(Initializer):
    """Keras' VarianceScaling: ``scale / n`` variance with ``n`` from ``mode``'s fan."""

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform", "normal")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None,
                 input_axes=None, output_axes=None):
        if not scale > 0:
            raise ValueError(f"Argument `scale` must be positive float. Received: scale={scale}")
        mode = str(mode).lower()
        distribution = str(distribution).lower()
        if mode not in self._MODES:
            raise ValueError(f"Invalid `mode` argument: expected one of {self._MODES}. "
                             f"Received: mode={mode!r}")
        if distribution not in self._DISTRIBUTIONS:
            raise ValueError(f"Invalid `distribution` argument: expected one of "
                             f"{self._DISTRIBUTIONS}. Received: distribution={distribution!r}")
        self.scale, self.mode, self.distribution, self.seed = scale, mode, distribution, seed
        self.input_axes, self.output_axes = input_axes, output_axes

    def _axes_config(self) -> dict:
        """Keras 3's optional fan axes, only when set (tf-keras has no such keys)."""
        if self.input_axes is None and self.output_axes is None:
            return {}
        return {"input_axes": self.input_axes, "output_axes": self.output_axes}

    def __call__(self, shape, dtype=None, device=None):
        fan_in, fan_out = _compute_fans(shape, self.input_axes, self.output_axes)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, n)
        gen, dtype = self._generator(device), _float(dtype)
        if self.distribution == "truncated_normal":
            # 0.879... is the stddev of a unit normal truncated to [-2, 2].
            std = math.sqrt(variance) / 0.87962566103423978
            return _sample("truncated", shape, dtype, device, gen, 0.0, std)
        if self.distribution in ("untruncated_normal", "normal"):
            return _sample("normal", shape, dtype, device, gen, 0.0, math.sqrt(variance))
        limit = math.sqrt(3.0 * variance)
        return _sample("uniform", shape, dtype, device, gen, -limit, limit)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "seed": self.seed, **self._axes_config()}


def _scaling(name, scale, mode, distribution):
    def __init__(self, seed=None, input_axes=None, output_axes=None):
        VarianceScaling.__init__(self, scale, mode, distribution, seed, input_axes,
                                 output_axes)

    def get_config(self):
        return {"seed": self.seed, **self._axes_config()}

    return type(name, (VarianceScaling,), {"__init__": __init__, "get_config": get_config,
                                           "__doc__": f"VarianceScaling({scale}, {mode!r}, "
                                                      f"{distribution!r})."})


GlorotUniform = _scaling("GlorotUniform", 1.0, "fan_avg", "uniform")
GlorotNormal = _scaling("GlorotNormal", 1.0, "fan_avg", "truncated_normal")
HeUniform = _scaling("HeUniform", 2.0, "fan_in", "uniform")
HeNormal = _scaling("HeNormal", 2.0, "fan_in", "truncated_normal")
LecunUniform = _scaling("LecunUniform", 1.0, "fan_in", "uniform")
LecunNormal = _scaling("LecunNormal", 1.0, "fan_in", "truncated_normal")


class Orthogonal(Initializer):
    """Keras' Orthogonal: QR of a normal matrix over ``(prod(shape[:-1]), shape[-1])``."""

    def __init__(self, gain=1.0, seed=None):
        self.gain, self.seed = gain, seed

    def __call__(self, shape, dtype=None, device=None):
        shape = tuple(shape)
        if len(shape) < 2:
            raise ValueError("The tensor to initialize must be at least two-dimensional. "
                             f"Received: shape={shape} of rank {len(shape)}.")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        flat = (max(rows, cols), min(rows, cols))
        a = _sample("normal", flat, torch.float64, device, self._generator(device), 0.0, 1.0)
        q, r = torch.linalg.qr(a)
        q = q * torch.sign(torch.diagonal(r))
        if rows < cols:
            q = q.t()
        return (self.gain * q).reshape(shape).to(_float(dtype))

    def get_config(self):
        return {"gain": self.gain, "seed": self.seed}


class Identity(Initializer):
    """Keras' Identity: 2D shapes only (``gain * eye``)."""

    def __init__(self, gain=1.0):
        self.gain = gain

    def __call__(self, shape, dtype=None, device=None):
        shape = tuple(shape)
        if len(shape) != 2:
            raise ValueError("Identity matrix initializer can only be used for 2D matrices. "
                             f"Received: shape={shape} of rank {len(shape)}.")
        return self.gain * torch.eye(*shape, dtype=_float(dtype), device=device)

    def get_config(self):
        return {"gain": self.gain}


for _cls, _names in [
    (Zeros, ("zeros", "zero")), (Ones, ("ones", "one")), (Constant, ("constant",)),
    (RandomNormal, ("random_normal", "normal")), (RandomUniform, ("random_uniform", "uniform")),
    (TruncatedNormal, ("truncated_normal",)), (VarianceScaling, ("variance_scaling",)),
    (GlorotUniform, ("glorot_uniform",)), (GlorotNormal, ("glorot_normal",)),
    (HeUniform, ("he_uniform",)), (HeNormal, ("he_normal",)),
    (LecunUniform, ("lecun_uniform",)), (LecunNormal, ("lecun_normal",)),
    (Orthogonal, ("orthogonal",)), (Identity, ("identity",)),
]:
    registry.add(_cls, *_names)


def get(identifier, argument: str = "initializer"):
    """Resolve a Keras initializer identifier (``None`` stays ``None``)."""
    return registry.get(identifier, argument)


__all__ = ["get", "serialize", "Initializer", "Zeros", "Ones", "Constant", "RandomNormal",
           "RandomUniform", "TruncatedNormal", "VarianceScaling", "GlorotUniform",
           "GlorotNormal", "HeUniform", "HeNormal", "LecunUniform", "LecunNormal",
           "Orthogonal", "Identity"]
