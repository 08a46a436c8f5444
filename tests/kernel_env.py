"""Helpers of the kernel tests: pick sepconv's kernel for a block of a test
(``SEPCONV_KERNEL``, read at each call); run a kernel for its output and gradients; draw a
Conv1D geometry in a hypothesis strategy."""

from __future__ import annotations

import contextlib
import os

import torch
from hypothesis import strategies as st


@contextlib.contextmanager
def kernel_choice(name: str):
    """``SEPCONV_KERNEL=name`` for the block ("" is the default dispatch)."""
    old = os.environ.get("SEPCONV_KERNEL")
    os.environ["SEPCONV_KERNEL"] = name
    try:
        yield
    finally:
        if old is None:
            del os.environ["SEPCONV_KERNEL"]
        else:
            os.environ["SEPCONV_KERNEL"] = old


def fake_cuda(shape, dtype=torch.float32, grad=False, index=None):
    """A stand-in for a CUDA tensor (on device ``cuda:index``, or ``cuda``) where a rule
    reads only shape, dtype, device and ``requires_grad`` (the dispatch tests on machines
    without a GPU; no storage, so sizes of any size cost nothing)."""
    from types import SimpleNamespace
    return SimpleNamespace(is_cuda=True, is_cpu=False, device=torch.device("cuda", index),
                           dtype=dtype, requires_grad=grad, shape=torch.Size(shape))


def run_with_grads(fn, needs, x, w, b, **geometry):
    """``fn(x, w, b, **geometry)`` (a kernel) and the gradients ``needs`` asks for
    (``"all"``, ``"x"``, ``"kernel"`` or ``"bias"``; the kernel's where that leaves none),
    for a fixed float64-drawn output gradient: ``(y, [y, *gradients])``."""
    x = x.clone().requires_grad_(needs in ("all", "x"))
    w = w.clone().requires_grad_(needs in ("all", "kernel"))
    if b is not None:
        b = b.clone().requires_grad_(needs in ("all", "bias"))
    if not (x.requires_grad or w.requires_grad or (b is not None and b.requires_grad)):
        w.requires_grad_(True)
    y = fn(x, w, b, **geometry)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1),
                     dtype=torch.float64).to(y.dtype)
    wanted = [t for t in (x, w, b) if t is not None and t.requires_grad]
    return y, [y.detach()] + list(torch.autograd.grad(y, wanted, gy))


def conv1d_case(draw, kernel_sizes, dilations, extra_steps: int) -> dict:
    """A Conv1D case drawn inside a ``@st.composite`` strategy: a kernel size from
    ``kernel_sizes`` (a strategy), a stride of 2-4 or a dilation from ``dilations``, a
    padding, a length the padding accepts (up to ``extra_steps`` more), channels, filters,
    batch, bias, a non-contiguous view or not, and a seed for the tensors."""
    k = draw(kernel_sizes)
    if draw(st.booleans()):
        stride, dilation = draw(st.integers(2, 4)), 1
    else:
        stride, dilation = 1, draw(st.sampled_from(dilations))
    padding = draw(st.sampled_from(["valid", "same", "causal"]))
    low = (k - 1) * dilation + 1 if padding == "valid" else 1
    return dict(k=k, stride=stride, dilation=dilation, padding=padding,
                length=draw(st.integers(low, low + extra_steps)),
                channels=draw(st.sampled_from([1, 3, 16])),
                filters=draw(st.sampled_from([1, 4, 17])), batch=draw(st.integers(1, 3)),
                bias=draw(st.booleans()), strided_view=draw(st.booleans()),
                seed=draw(st.integers(0, 2 ** 31 - 1)))
