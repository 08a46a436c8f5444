"""Keras activations by name or callable.

Where tf-keras 2 (what R keras wraps) and Keras 3 differ, sepconv follows tf-keras:
``hard_sigmoid`` is ``clip(0.2 * x + 0.5, 0, 1)`` (Keras 3: ``relu6(x + 3) / 6``),
``leaky_relu`` has slope 0.2, ``gelu`` is the exact (erf) form.  ``softmax`` and
``log_softmax`` (and ``glu``, ``sparsemax``) act on the last axis, as Keras does,
whatever the data format.  Keras 3's names that tf-keras lacks (``celu``, ``glu``,
``hard_shrink``, ``hard_tanh``, ``soft_shrink``, ``sparse_plus``, ``sparse_sigmoid``,
``squareplus``, ``sparsemax``, ...) use Keras 3's defaults.  ``threshold`` is not a
name: it has required arguments (pass a callable).

A Keras 3 model file is computed with Keras 3's formulas: inside
``keras_flavour("keras3")`` (the model-file loader enters it for files Keras 3 wrote)
the names in ``KERAS3_VARIANTS`` resolve to Keras 3's function instead (one registry,
one name: ``hard_sigmoid`` is ``relu6(x + 3) / 6`` there).
"""

from __future__ import annotations

import contextlib
import contextvars

import torch
import torch.nn.functional as F

from ._registry import Registry
from .kernels import activation as _activation_kernel

registry = Registry("activation")


def linear(x):
    return x


def relu(x):
    return F.relu(x)


def relu6(x):
    return F.relu6(x)


def elu(x):
    # tf.nn.elu: exp(x) - 1 with TensorFlow's exp (not expm1), EluGrad, on CPU float32
    # (kernels/activation.py); torch's elu elsewhere
    return _activation_kernel.elu(x)


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def selu(x):
    # tf.nn.selu's numbers and SeluGrad on CPU float32 (kernels/activation.py); elsewhere
    # _selu_torch
    return _activation_kernel.selu(x, _selu_torch)


def _selu_torch(x):
    # TensorFlow's: scale * elu(x, alpha), whose gradient at exactly 0 is scale (the linear
    # side; torch's F.selu takes scale * alpha there: zero-padded steps would differ)
    negative = _SELU_ALPHA * torch.expm1(torch.clamp(x, max=0))
    return _SELU_SCALE * torch.where(x >= 0, x, negative)


def keep_logits(output: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``output`` carrying ``logits`` as ``output._keras_logits``, as tf-keras' softmax and
    sigmoid keep theirs: :mod:`sepconv.losses`' crossentropies then compute from the
    logits (no clipping of the probabilities), as tf-keras' do.  Not while torch traces
    or compiles (a graph has no attributes on its tensors)."""
    if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
        try:
            output._keras_logits = logits
        except (AttributeError, RuntimeError):  # (a tensor subclass without a __dict__)
            pass
    return output


def sigmoid(x):
    # TensorFlow's numbers on CPU float32 (a C routine, kernels/activation.py); torch's
    # sigmoid elsewhere
    return keep_logits(_activation_kernel.sigmoid(x), x)


def hard_sigmoid(x):
    return torch.clamp(0.2 * x + 0.5, 0.0, 1.0)


def tanh(x):
    # TensorFlow's numbers on CPU float32 (a C routine, kernels/activation.py, 6x faster
    # than torch's float32 tanh on one thread); torch's tanh elsewhere
    return _activation_kernel.tanh(x)


def softplus(x):
    # TensorFlow's Softplus (Eigen's exp and log1p) and its gradient on CPU float32
    # (kernels/activation.py); torch's softplus elsewhere
    return _activation_kernel.softplus(x)


def softsign(x):
    # TensorFlow's gradient (SoftsignGrad) on CPU float32 (kernels/activation.py)
    return _activation_kernel.softsign(x)


def swish(x):
    # tf.nn.silu: x * sigmoid(x) with TensorFlow's sigmoid, and its custom gradient, on CPU
    # float32 (kernels/activation.py); torch's silu elsewhere
    return _activation_kernel.swish(x)


def gelu(x):
    return F.gelu(x)


def exponential(x):
    # TensorFlow's Exp on CPU float32 (kernels/activation.py); torch's exp elsewhere
    return _activation_kernel.exp(x)


def leaky_relu(x):
    return F.leaky_relu(x, 0.2)


def mish(x):
    # tf-keras': x * tanh(softplus(x)) of TensorFlow's ops on CPU float32; torch's elsewhere
    return _activation_kernel.mish(x)


def softmax(x):
    return keep_logits(torch.softmax(x, dim=-1), x)


def log_softmax(x):
    return torch.log_softmax(x, dim=-1)


def hard_silu(x):
    return F.hardswish(x)


def log_sigmoid(x):
    return F.logsigmoid(x)


def tanh_shrink(x):
    return F.tanhshrink(x)


def celu(x):
    return F.celu(x, alpha=1.0)


def glu(x):
    return F.glu(x, dim=-1)


def hard_shrink(x):
    return F.hardshrink(x, lambd=0.5)


def hard_tanh(x):
    return F.hardtanh(x, -1.0, 1.0)


def soft_shrink(x):
    return F.softshrink(x, lambd=0.5)


def sparse_plus(x):
    return torch.where(x <= -1, torch.zeros_like(x),
                       torch.where(x < 1, 0.25 * (x + 1) ** 2, x))


def sparse_sigmoid(x):
    return torch.clamp(0.5 * (x + 1), 0.0, 1.0)


def squareplus(x):
    return (x + torch.sqrt(x * x + 4.0)) / 2


def sparsemax(x):
    """Sparsemax over the last axis (Martins & Astudillo, 2016), as Keras 3."""
    z, _ = torch.sort(x, dim=-1, descending=True)
    cumsum = z.cumsum(dim=-1)
    r = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=x.dtype)
    support = (1 + r * z) > cumsum
    k = support.sum(dim=-1, keepdim=True)
    tau = (torch.where(support, z, torch.zeros_like(z)).sum(dim=-1, keepdim=True) - 1) / k
    return torch.clamp(x - tau, min=0.0)


for _fn, _names in [
    (linear, ("linear",)), (relu, ("relu",)), (relu6, ("relu6",)), (elu, ("elu",)),
    (selu, ("selu",)), (sigmoid, ("sigmoid",)), (hard_sigmoid, ("hard_sigmoid",)),
    (tanh, ("tanh",)), (softplus, ("softplus",)), (softsign, ("softsign",)),
    (swish, ("swish", "silu")), (gelu, ("gelu",)), (exponential, ("exponential",)),
    (leaky_relu, ("leaky_relu",)), (mish, ("mish",)), (softmax, ("softmax",)),
    (log_softmax, ("log_softmax",)), (hard_silu, ("hard_silu", "hard_swish")),
    (log_sigmoid, ("log_sigmoid",)), (tanh_shrink, ("tanh_shrink",)), (celu, ("celu",)),
    (glu, ("glu",)), (hard_shrink, ("hard_shrink",)), (hard_tanh, ("hard_tanh",)),
    (soft_shrink, ("soft_shrink",)), (sparse_plus, ("sparse_plus",)),
    (sparse_sigmoid, ("sparse_sigmoid",)), (squareplus, ("squareplus",)),
    (sparsemax, ("sparsemax",)),
]:
    registry.add(_fn, *_names)


def hard_sigmoid_keras3(x):
    return F.relu6(x + 3.0) / 6.0


hard_sigmoid_keras3.__name__ = "hard_sigmoid"  # its Keras name, for get_config
#: Names whose Keras 3 formula differs from tf-keras' (checked against both for every name
#: in the registry): used under ``keras_flavour("keras3")``.
KERAS3_VARIANTS = {"hard_sigmoid": hard_sigmoid_keras3}
FLAVOURS = ("tf_keras", "keras3")
_flavour = contextvars.ContextVar("sepconv_keras_flavour", default="tf_keras")


@contextlib.contextmanager
def keras_flavour(flavour: str):
    """Resolve names with ``flavour``'s formulas (``"tf_keras"``, the default, or
    ``"keras3"``) inside the ``with`` block."""
    if flavour not in FLAVOURS:
        raise ValueError(f"Invalid value for argument `flavour`. Expected one of {FLAVOURS}. "
                         f"Received flavour={flavour!r}")
    token = _flavour.set(flavour)
    try:
        yield
    finally:
        _flavour.reset(token)


def current_flavour() -> str:
    """``"tf_keras"`` or ``"keras3"``: whose formulas names resolve to here."""
    return _flavour.get()


def get(identifier, argument: str = "activation"):
    """A callable for ``identifier``; ``None`` means linear, as in Keras."""
    if identifier is None:
        return linear
    if isinstance(identifier, str) and _flavour.get() == "keras3":
        variant = KERAS3_VARIANTS.get(identifier.lower())
        if variant is not None:
            return variant
    return registry.get(identifier, argument)


def serialize(fn) -> str:
    """Keras' config form of an activation: its name."""
    return getattr(fn, "__name__", repr(fn))
