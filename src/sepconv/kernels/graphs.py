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

The same question guards :func:`remembered`, the memo of what an eval model derives from
its weights (a kernel in the layout torch reads, batch norm's folded factors): only eager
calls that record no gradient of those weights keep anything.
"""

import weakref

import numpy as np

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
            or (torch._C._is_any_autocast_enabled() and torch.is_autocast_enabled("cpu")):
        return True  # (the first autocast question costs a third of the second's)
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


# id(owner) -> (a weak reference to the owner, {slot: (key, ((a live view of each tensor's
# bits, their copy), ...), value)});
# an entry leaves with its owner (a plain dict by id: a WeakIdKeyDictionary look-up builds
# a reference object per call)
_REMEMBERED: dict = {}


def _slots(owner, create: bool):
    entry = _REMEMBERED.get(id(owner))
    if entry is not None and entry[0]() is owner:
        return entry[1]
    if not create:
        return None
    ident = id(owner)
    slots: dict = {}
    _REMEMBERED[ident] = (weakref.ref(owner, lambda _, i=ident: _forget(i)), slots)
    return slots


def _forget(ident: int) -> None:
    entry = _REMEMBERED.get(ident)
    if entry is not None and entry[0]() is None:
        del _REMEMBERED[ident]


_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _bits(t: torch.Tensor):
    """``t``'s bit patterns as a numpy array (a view, no copy: an integer dtype of the
    same size views any strides), or ``None`` for complex and bool tensors."""
    bits = _BITS.get(t.element_size())
    if bits is None or t.is_complex() or t.dtype == torch.bool:
        return None
    return t.detach().view(bits).numpy()


def _kept(bits):
    """What :func:`_unchanged` compares with: the bytes of a small tensor (a bytes
    comparison is the cheapest check at that size), a numpy copy of a large one."""
    return bits.tobytes() if bits.nbytes <= 65536 else bits.copy()


def _unchanged(bits, kept) -> bool:
    """``bits`` (a live view of a tensor's storage) hold what they held when ``kept`` was
    made: a comparison at memory speed, which also sees writes no version counter records
    (``p.data.copy_(...)``, a write through another alias)."""
    if isinstance(kept, bytes):
        return bits.tobytes() == kept
    return np.array_equal(bits, kept)


def remembered(owner, slot: str, tensors: tuple, compute, extra=()):
    """``compute()``, a function of ``tensors`` (and of ``extra``) only, e.g. a weight in
    the layout a kernel reads: kept for ``owner`` under ``slot`` from one call to the next
    while each tensor keeps its storage, version counter, shape, strides, dtype and device,
    holds the same bits as when the value was made, and ``extra`` is equal, so an eval
    model's calls lay out (or fold) their weights once.

    Computed afresh, nothing kept, where ``owner`` is ``None``, off the CPU (a comparison
    there would wait for the device), where autograd records a gradient of one of
    ``tensors``, where standard ops are wanted (tracing, export, ``torch.compile``,
    ``torch.func``, CPU autocast: :func:`standard_ops_wanted`), for tensors that are not
    :func:`plain` or whose bits numpy cannot view, and for inference tensors (no version
    counter).  The version counter alone would miss a write through ``.data`` (``p.data.
    copy_(...)``, ``p.data.mul_(...)``: an alias with a counter of its own, common in EMA
    and hand-written updates): every call compares the tensors with a copy kept beside the
    value, at memory speed (a 360 KB kernel: ~20 us, where laying it out costs ~75-180 us).
    The value is made outside inference mode and without autograd: ordinary tensors a
    later call that records a gradient for its input may save.  ``None`` entries of
    ``tensors`` are allowed."""
    if owner is None or standard_ops_wanted() or not plain(*tensors):
        return compute()
    grad = torch.is_grad_enabled()
    key = []
    for t in tensors:  # (CPU tensors only: the key needs no device)
        if t is None:
            key.append(None)
        elif not t.is_cpu or (grad and t.requires_grad):
            return compute()
        else:
            try:
                key.append((t.data_ptr(), t._version, t.dtype, t.shape, t.stride()))
            except RuntimeError:  # an inference tensor keeps no version counter
                return compute()
    key.append(extra)
    slots = _slots(owner, True)
    entry = slots.get(slot)
    if entry is not None and entry[0] == key:
        for bits, kept in entry[1]:
            if bits is not None and not _unchanged(bits, kept):
                break
        else:
            return entry[2]  # (the same storages, strides and bits: the same value)
    with torch.inference_mode(False), torch.no_grad():
        views = [None if t is None else _bits(t) for t in tensors]
        if any(v is None and t is not None for v, t in zip(views, tensors)):
            return compute()
        value = compute()
    slots[slot] = (key, tuple((v, None if v is None else _kept(v)) for v in views), value)
    return value
