"""When sepconv's own kernels step aside for torch's standard ops: one place for the
question every fast path asks.

A hand-written kernel (a C routine behind ``data_ptr``, an autograd node with a hand
backward, an in-place GEMM) is right only where PyTorch runs the ops eagerly on real
tensors.  Elsewhere a tool records or transforms the ops and must see standard ones:

- ``torch.jit.trace`` and ``torch.export`` (the ONNX exporters' paths) write the ops into a
  graph that other runtimes execute;
- ``torch.compile``'s tracer runs on fake tensors (no storage) and fuses standard ops itself;
- ``torch.func`` transforms (``vmap``, ``grad``, ``jacrev``) wrap tensors (no storage either)
  and differentiate / batch the ops they see;
- CPU autocast picks each op's dtype from its own lists.

Kernels registered as ``torch.library`` custom ops with fake implementations run under
``torch.compile`` too: they ask :func:`standard_ops_wanted` with ``compiled=True``.
"""

import torch


def recording() -> bool:
    """A graph is being recorded for another runtime: ``torch.jit.trace`` or
    ``torch.export`` (the ONNX exporters' paths)."""
    return torch.jit.is_tracing() or torch.compiler.is_exporting()


def standard_ops_wanted(compiled: bool = False) -> bool:
    """Whether a fast path must give way to torch's standard ops here (see the module):
    recording, a torch.func transform, CPU autocast, and ``torch.compile``'s tracer unless
    ``compiled`` (the kernel is a custom op that compiles)."""
    if torch.jit.is_tracing() or torch.compiler.is_exporting() \
            or torch.is_autocast_enabled("cpu"):
        return True
    if torch.compiler.is_compiling():
        return not compiled
    return torch._C._are_functorch_transforms_active()


def plain(*tensors) -> bool:
    """Whether ``tensors`` are real eager tensors whose storage a C routine may read: no
    compiler's tracer, no dispatch mode (fake tensors), no subclass, no torch.func wrapper
    (``None`` entries are skipped)."""
    if torch.compiler.is_compiling() or torch._C._len_torch_dispatch_stack():
        return False
    for t in tensors:
        if t is None:
            continue
        if type(t) is not torch.Tensor and type(t) is not torch.nn.Parameter:
            return False
        if torch._C._functorch.is_functorch_wrapped_tensor(t):
            return False
    return True
