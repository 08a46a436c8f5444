"""Launching a compiled Triton kernel with less host time than ``kernel[grid](...)``.

``JITFunction.run`` (triton 3.6 and 3.9) does, on every launch, more than launch: it reads
two knobs, binds each argument into a dict and a specialization list, builds and hashes a
cache key (``str()`` of the options among it), checks the kernel's globals, makes launch
metadata and calls two (empty) launch-hook chains.  The small layers of issue 12's suite are
bound by host time on the H200's machine (one variant 2 forward, one Triton launch: ~75 us of
host time against 64 us for the two-kernel cuDNN composition), so this Python is what decides
them.

:func:`launch` remembers the ``CompiledKernel`` that ``kernel[grid](*args, **constexprs)``
returned, under a key at least as fine as what triton specializes the compiled code on
(each tensor's dtype and 16-byte alignment, every other argument's value, the constexprs,
``num_warps``, ``num_stages``, the current device), and on the next launch with the same key
calls the compiled kernel's launcher exactly as ``JITFunction.run`` calls it::

    compiled.run(grid_0, grid_1, grid_2, stream, compiled.function, compiled.packed_metadata,
                 launch_metadata, enter_hook, exit_hook, *every_parameter_in_order)

with no launch metadata and no hooks.  It takes the plain ``kernel[grid](...)`` path instead
under ``TRITON_INTERPRET=1``, while launch hooks are installed (profilers such as proton add
them), when the installed triton's ``JITFunction.run`` does not call its launcher as above
(checked once, from its source), for kernels with pre-run hooks, for a grid given as a
function, and for arguments that cannot be part of a key.  ``SEPCONV_TRITON_FAST_LAUNCH=0``
(read at import) switches it off.
"""

from __future__ import annotations

import functools
import inspect
import os
from typing import Optional

import torch

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
FAST = not INTERPRET and os.environ.get("SEPCONV_TRITON_FAST_LAUNCH", "1") != "0"

#: The launcher call of ``JITFunction.run`` that :func:`launch` repeats (whitespace aside).
RUN_CALL = ("kernel.run(grid_0, grid_1, grid_2, stream, kernel.function, "
            "kernel.packed_metadata, launch_metadata, knobs.runtime.launch_enter_hook, "
            "knobs.runtime.launch_exit_hook, *bound_args.values())")

#: Per kernel, by ``id``: ``(kernel, {key: (compiled kernel, the constexprs' values in
#: parameter order after the positional arguments)})``; ``None`` marks keys that cannot launch
#: fast.  (The kernel is held so that its ``id`` cannot be reused by another object.)
_ENTRIES: dict = {}
#: How many launches took each path (the GPU tests check that the fast one is taken).
COUNTS = {"fast": 0, "plain": 0}
_BOUND = 1024  # entries per kernel: a bound for programs of ever-new shapes


def _squash(text: str) -> str:
    return "".join(text.split())


@functools.lru_cache(maxsize=None)
def compatible() -> bool:
    """Whether the installed triton's ``JITFunction.run`` launches as :data:`RUN_CALL`
    (and binds every parameter of the kernel, in order, into ``bound_args``)."""
    try:
        from triton.runtime import jit
        run = _squash(inspect.getsource(jit.JITFunction.run))
        binder = _squash(inspect.getsource(jit.create_function_from_signature))
    except (ImportError, AttributeError, OSError, TypeError):
        return False
    return _squash(RUN_CALL) in run and "params={" in binder


def _hooks_installed() -> bool:
    knobs = _knobs()
    for hook in (knobs.runtime.launch_enter_hook, knobs.runtime.launch_exit_hook):
        if hook is not None and getattr(hook, "calls", True):
            return True  # a chain with hooks in it, or a plain callable (older triton)
    return False


@functools.lru_cache(maxsize=None)
def _knobs():
    from triton import knobs
    return knobs


@functools.lru_cache(maxsize=None)
def _driver():
    """The current device and stream, as triton's driver reads them (``torch.cuda``'s
    device getter without its initialisation check: a fast launch follows a plain one)."""
    from triton.runtime import driver
    current_device = getattr(torch._C, "_cuda_getDevice", driver.active.get_current_device)
    return current_device, driver.active.get_current_stream


def _leading_tensors(args: tuple) -> int:
    n = 0
    for a in args:
        if not isinstance(a, torch.Tensor):
            break
        n += 1
    return n


def _key(args: tuple, constexprs: dict, num_warps: int, num_stages: int, device) -> tuple:
    """What the compiled code depends on: the leading tensor arguments' dtypes and 16-byte
    alignment, the other arguments' values (a tensor among them is keyed by identity and
    never launches fast: see :func:`_entry`), the constexprs, the config and the device."""
    n = _leading_tensors(args)
    tensors = args[:n]
    return (device, num_warps, num_stages, args[n:], tuple(constexprs.items()),
            tuple([t.dtype for t in tensors]),
            tuple([t.data_ptr() & 15 == 0 for t in tensors]))


def _entry(kernel, compiled, args: tuple, constexprs: dict) -> Optional[tuple]:
    """``(compiled, constexpr values in order)`` when ``compiled`` can launch directly."""
    if hasattr(compiled, "result"):  # an asynchronous compilation's future
        compiled = compiled.result()
    names = getattr(kernel, "arg_names", None)
    if (names is None or getattr(kernel, "pre_run_hooks", None)
            or any(isinstance(a, torch.Tensor) for a in args[_leading_tensors(args):])
            or not all(hasattr(compiled, a) for a in ("run", "function", "packed_metadata"))
            or set(names[len(args):]) != set(constexprs)):
        return None
    return compiled, tuple(constexprs[name] for name in names[len(args):])


def launch(kernel, grid, args: tuple, constexprs: dict, num_warps: int, num_stages: int,
           plan: Optional[dict] = None):
    """``kernel[grid](*args, **constexprs, num_warps=..., num_stages=...)``, through the
    remembered compiled kernel where the module doc allows it.  ``grid`` a tuple of 1-3
    ints (a function of the arguments takes the plain path).

    ``plan``: a dict the caller keeps for one fixed config, constexprs and arguments after
    the leading tensors (a remembered launch plan's); the compiled kernels are then
    remembered in it by device and the tensors' dtypes and alignment alone, which
    is cheaper to look up than the full key (and the kernel's ``id``: a test may swap the
    kernel for a spy, which never launches fast; the real kernels live as long as their
    module, so their ids are never reused)."""
    if not FAST or type(grid) is not tuple or _hooks_installed() or not compatible():
        COUNTS["plain"] += 1
        return kernel[grid](*args, **constexprs, num_warps=num_warps, num_stages=num_stages)
    current_device, current_stream = _driver()
    device = current_device()
    if plan is not None:
        entries = plan
        tensors = args[:_leading_tensors(args)]
        key = (id(kernel), device, tuple([t.dtype for t in tensors]),
               tuple([t.data_ptr() & 15 == 0 for t in tensors]))
        entry = entries.get(key, False)
    else:
        slot = _ENTRIES.get(id(kernel))
        if slot is None or slot[0] is not kernel:  # (the slot holds the kernel: no id reuse)
            slot = _ENTRIES[id(kernel)] = (kernel, {})
        entries = slot[1]
        try:
            key = _key(args, constexprs, num_warps, num_stages, device)
            entry = entries.get(key, False)
        except (TypeError, RuntimeError):  # an unhashable argument (or a tensor compared)
            key, entry = None, None
    if entry:
        compiled, tail = entry
        g = grid + (1, 1)
        COUNTS["fast"] += 1
        compiled.run(g[0], g[1], g[2], current_stream(device), compiled.function,
                     compiled.packed_metadata, None, None, None, *args, *tail)
        return compiled
    COUNTS["plain"] += 1
    compiled = kernel[grid](*args, **constexprs, num_warps=num_warps, num_stages=num_stages)
    if key is not None and entry is False:
        if len(entries) >= _BOUND:
            entries.clear()
        entries[key] = _entry(kernel, compiled, args, constexprs)
    return compiled
