"""kernels/memory.py: glibc's malloc thresholds, set once, left alone where the user chose."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from sepconv.kernels import memory


class _FakeLibc:
    def __init__(self, result=1):
        self.calls, self.result = [], result

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return self.result


@pytest.fixture(autouse=True)
def _fresh():
    memory._reset_for_tests()
    yield
    memory._reset_for_tests()


def test_sets_both_thresholds_once():
    libc = _FakeLibc()
    if memory._reason_to_leave({}) == "not glibc":
        pytest.skip("not glibc")
    assert memory.keep_freed_memory({}, libc) == "set"
    assert libc.calls == [(memory.M_MMAP_THRESHOLD, 32 * 2 ** 20),
                          (memory.M_TRIM_THRESHOLD, 64 * 2 ** 20)]
    assert memory.keep_freed_memory({}, libc) == "set"
    assert len(libc.calls) == 2  # once per process


@pytest.mark.parametrize("environ,reason", [
    ({"SEPCONV_MALLOC": "0"}, "SEPCONV_MALLOC=0"),
    ({"MALLOC_TRIM_THRESHOLD_": "1000"}, "MALLOC_TRIM_THRESHOLD_ set"),
    ({"MALLOC_MMAP_THRESHOLD_": "1000"}, "MALLOC_MMAP_THRESHOLD_ set"),
    ({"MALLOC_TOP_PAD_": "0"}, "MALLOC_TOP_PAD_ set"),
    ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}, "glibc.malloc tunables set"),
    ({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, "another allocator preloaded")])
def test_leaves_a_process_that_chose_alone(environ, reason):
    libc = _FakeLibc()
    assert memory.keep_freed_memory(environ, libc) == reason
    assert libc.calls == []


def test_a_refused_mallopt_is_reported():
    if memory._reason_to_leave({}) == "not glibc":
        pytest.skip("not glibc")
    assert memory.keep_freed_memory({}, _FakeLibc(result=0)) == "mallopt refused"


_PROBE = r"""
import ctypes, resource, sys
from sepconv.kernels import memory
if sys.argv[1] == "tuned":
    assert memory.keep_freed_memory() == "set"
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
size = 8 * 2 ** 20
p = libc.malloc(size); libc.memset(p, 1, size); libc.free(p)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
p = libc.malloc(size); libc.memset(p, 1, size); libc.free(p)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="glibc only")
def test_a_freed_buffer_is_reused_without_page_faults():
    """An 8 MiB buffer freed and allocated again: with glibc's defaults it is unmapped and
    its 2048 pages fault in again; with the thresholds set it stays in the heap."""
    def faults(mode):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("MALLOC_") and k != "SEPCONV_MALLOC"}
        out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True,
                             text=True, check=True, env=env)
        return int(out.stdout.split()[-1])
    default = faults("default")
    if default < 1000:  # e.g. transparent huge pages always on: a few faults for 8 MiB
        pytest.skip(f"with glibc's defaults the buffer faulted {default} pages only here")
    assert faults("tuned") < 100
