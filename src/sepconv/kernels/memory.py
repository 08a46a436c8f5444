"""glibc's malloc kept from handing a training step's buffers back to the system between
steps: :func:`keep_freed_memory`, called by the CPU kernels on their first call.

Measured on the project's 2-core AMD EPYC (a Firecracker VM; issue 15): a first touch of
fresh memory costs ~2.5 us per 4 KiB page, and with glibc's default, adaptive thresholds a
warm training-step loop of one separable layer still faulted in 300-1900 pages a step
(tensors of 2-7 MB, freed and allocated again every step: glibc unmaps or trims them),
2-4 ms of a 5-10 ms step (Conformer-sized block: 8.3-9.0 -> 6.3 ms a step with the
thresholds below, 0 faults).  PyTorch has no caching allocator on the CPU; its CPU launcher
(``torch.backends.xeon.run_cpu``) preloads jemalloc or tcmalloc for the same reason.

What it sets, with ``mallopt`` (glibc only): allocations below 32 MiB come from the heap
(``M_MMAP_THRESHOLD``: the largest value glibc's own adaptive rule ever picks) and the heap
keeps up to 64 MiB of free memory at its top (``M_TRIM_THRESHOLD``: twice that, glibc's own
ratio).  The cost: a process may keep up to that much freed memory resident.

Left alone: processes that chose for themselves (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_`` or ``glibc.malloc`` tunables set, or another
allocator in ``LD_PRELOAD``), other C libraries, and ``SEPCONV_MALLOC=0`` (set it to keep
glibc's defaults).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import threading
from typing import Optional

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD

_lock = threading.Lock()
_done = False
#: What :func:`keep_freed_memory` did: ``None`` before its first call, then ``"set"`` or
#: the reason it left malloc alone.
outcome: Optional[str] = None


def _reason_to_leave(environ) -> Optional[str]:
    """Why malloc's settings are not ours to change here, or ``None``."""
    if environ.get("SEPCONV_MALLOC", "1").strip().lower() in ("0", "false", "no", "off"):
        return "SEPCONV_MALLOC=0"
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"):
        if name in environ:
            return f"{name} set"
    if "glibc.malloc" in environ.get("GLIBC_TUNABLES", ""):
        return "glibc.malloc tunables set"
    preload = environ.get("LD_PRELOAD", "")
    if any(lib in preload for lib in ("jemalloc", "tcmalloc", "mimalloc")):
        return "another allocator preloaded"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "not glibc"
    return None


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def keep_freed_memory(environ=None, libc=None) -> str:
    """Sets glibc's thresholds once per process (see the module's docstring); returns
    :data:`outcome`.  ``environ`` and ``libc`` are for tests."""
    global _done, outcome
    if _done:
        return outcome
    with _lock:
        if _done:
            return outcome
        reason = _reason_to_leave(os.environ if environ is None else environ)
        if reason is None:
            try:
                lib = _libc() if libc is None else libc
                ok = lib.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 \
                    and lib.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
                reason = "set" if ok else "mallopt refused"
            except (OSError, AttributeError):
                reason = "no mallopt"
        outcome = reason
        _done = True
        return outcome


def _reset_for_tests() -> None:
    global _done, outcome
    _done, outcome = False, None
