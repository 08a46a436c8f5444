"""How many threads a CPU kernel call runs on: :class:`ThreadPolicy`, measured, per call.

One policy (:data:`THREADS`) for the whole library, so a busy machine found by one kernel's
timings and an idle one found by another's are the same machine's.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Callable, Optional, Tuple

import torch

# Shapes per pass and size class whose first call :class:`ThreadPolicy` leaves untimed.
WARM_UP_SHAPES = 16
# One thread replaces torch's count only when its mean time is below this fraction of the
# other's: on busy cores it wins by 2-20x, on idle ones timing noise alone (another
# process's threads spinning for a moment) had it win by 10-40% in one process and lose in
# the next, whole runs long (issue 15).
ONE_THREAD_MARGIN = 0.75
# Each count's cost is the fastest of its last few timed calls: contention only ever slows
# a call down, so one slow sample (a neighbour's threads spinning for a moment, a page
# fault) no longer moves a whole run to one thread, while a lasting load fills the window
# within this many calls (issue 15: with running means, one process of the bench ran one
# thread on an idle machine for whole shapes, 1.2-1.5x slower than torch there).
COST_WINDOW = 4
# A call on torch's thread count whose calling thread got less than this fraction of its
# wall time on a core (CPU time / wall time, ``time.thread_time``) waited for one: the
# machine is busy.  Measured (2-core AMD EPYC, a 4x400x256 k33 training step, 40 calls
# each): idle 0.96-1.00; another process spinning at the same priority 0.38-1.00, median
# 0.55-0.59; a spinner at nice 10 or 19 median 1.00 (and two threads stay as fast as idle).
STARVED = 0.8
# One thread is tried only while one of the last this-many timed calls on torch's count
# was starved: on an idle machine each one-thread probe was a call at half speed (every
# 8th call at first), which is what the policy cost there (issue 15).
STARVED_WINDOW = 8


class ThreadPolicy:
    """How many threads one call of the kernel (a forward or a backward pass) runs on,
    learnt from its own timings.

    Measured on a 2-core machine (bench/README.md, issue 15): on idle cores torch's two
    OpenMP threads (which the C routine shares) run a call up to ~2x faster than one; on
    busy cores (other processes runnable) every parallel region of a two-thread call may
    wait a scheduler time slice for its second thread, and the call runs 2-20x *slower*
    than on one thread.  Neither count is right for every machine or every minute, and
    users cannot be asked to set ``OMP_WAIT_POLICY``, so the kernel times itself: per pass
    and size class (powers of 4 of multiply-adds) it keeps the time per
    multiply-add on one thread and on torch's thread count (``torch.get_num_threads()``,
    the user's setting, never raised): the fastest of its last :data:`COST_WINDOW` timed
    calls (two of torch's count are taken before one thread is first tried).  It runs
    the cheaper (one thread only when clearly so:
    :data:`ONE_THREAD_MARGIN`), and re-tries the other every 8th
    call (spaced out to every 256th while the re-tries keep losing).  One thread is
    tried only while the machine looks busy: a recent call on torch's count whose calling
    thread ran less than :data:`STARVED` of its wall time (its threads waited for cores);
    on an idle machine the policy never slows a call down to find that out.  The first call of
    each shape (the first :data:`WARM_UP_SHAPES` shapes of a size class) runs on torch's
    count untimed: it pays for fresh memory (page faults) and oneDNN's kernel creation,
    ran 2-4x slower than the next, and, recorded, made the policy pick one thread for
    hundreds of calls (issue 15); past that many shapes (variable lengths) every call is
    timed.  A winning re-try switches at once (its sample is the fastest of its window).
    A one-thread call
    lowers torch's thread count for its duration (``torch.set_num_threads``, 0.3 us; other
    Python threads running torch ops meanwhile see it too).  Calls made while another is
    under way (other threads, nested calls) run as they are, untimed.

    Every CPU kernel of the library shares the one policy, :data:`THREADS`: the separable
    convolution (``kernels/cpu.py``, forward and backward passes) and, through
    :func:`run` and :func:`hook_backward`, the convolution family's torch kernels
    (``sepconv.functional.conv``, ``conv_transpose``), whose backward pass torch's
    autograd engine runs: the policy's thread count is set by a hook on the convolution's
    autograd node before it runs and restored by another after.
    """

    def __init__(self, clock=time.perf_counter, min_work: Optional[int] = None,
                 cpu_clock: Optional[Callable[[], float]] = time.thread_time) -> None:
        self.clock = clock
        # the calling thread's CPU time (``None``: every machine counts as busy, one thread
        # is tried as the timings alone say)
        self.cpu_clock = cpu_clock
        self.starved: collections.deque = collections.deque(maxlen=STARVED_WINDOW)
        #     CPU time / wall time of the last timed calls on torch's count
        # calls of fewer multiply-adds run as they are (see MIN_WORK)
        self.min_work = MIN_WORK if min_work is None else min_work
        self.samples: dict = {}  # (pass, size class, threads) -> the last COST_WINDOW
        #                          timed calls' seconds per multiply-add
        self.calls: dict = {}  # (pass, size class) -> [calls, re-try interval]
        self.shapes: dict = {}  # (pass, size class) -> shapes seen (warm-ups run)
        self.lock = threading.Lock()

    @property
    def cost(self) -> dict:
        """(pass, size class, threads) -> seconds per multiply-add: the fastest sample."""
        return {key: min(window) for key, window in self.samples.items()}

    def busy(self) -> bool:
        """Whether one of the last timed calls on torch's count waited for cores."""
        return self.cpu_clock is None or any(r < STARVED for r in self.starved)

    def _cost(self, key):
        window = self.samples.get(key)
        return min(window) if window else None

    def begin(self, name: str, work: int, shape=()) -> Optional[tuple]:
        """Starts a call of ``work`` multiply-adds: sets the thread count this policy picks
        and returns a token for :meth:`end`, or ``None`` where the call runs as it is
        (compiling, nested or concurrent, one thread, warm-up)."""
        if torch.compiler.is_compiling():
            return None
        _drop_stale()
        if not self.lock.acquire(blocking=False):
            return None
        threads = torch.get_num_threads()
        if threads <= 1 or work <= 0:
            self.lock.release()
            return None
        key = (name, work.bit_length() // 2)
        state = self.calls.setdefault(key, [0, 8])
        state[0] += 1
        seen = self.shapes.setdefault(key, set())
        if shape not in seen and len(seen) < WARM_UP_SHAPES:  # warm-up, untimed
            seen.add(shape)
            self.lock.release()
            return None
        one, many = self._cost(key + (1,)), self._cost(key + (threads,))
        retry = one is not None and many is not None and state[0] % state[1] == 0
        if len(self.samples.get(key + (threads,), ())) < 2:
            # two samples of torch's count before one thread is tried: a single slow one
            # (the first timed call of a new tensor size) had one thread win its probe on
            # an idle machine and run until the next re-try
            pick = threads
        elif one is None:
            pick = 1 if self.busy() else threads
        else:
            best, other = (1, threads) if one < ONE_THREAD_MARGIN * many else (threads, 1)
            if retry and other == 1 and not self.busy():
                retry = False  # an idle machine: no call slowed down to one thread
            pick = other if retry else best
        if pick != threads:
            torch.set_num_threads(pick)
        cpu = self.cpu_clock() if self.cpu_clock is not None and pick == threads else None
        return (key, threads, pick, retry, work, self.clock(), cpu)

    def end(self, token: Optional[tuple], failed: bool = False) -> None:
        """Ends the call :meth:`begin` started: restores the thread count and records the
        time (not of a call that ``failed``)."""
        if token is None:
            return
        key, threads, pick, retry, work, start, cpu = token
        try:
            wall = self.clock() - start
            per = wall / work
            if pick != threads:
                torch.set_num_threads(threads)
            if failed:
                return
            if cpu is not None and wall > 0:
                self.starved.append((self.cpu_clock() - cpu) / wall)
            state = self.calls[key]
            window = self.samples.setdefault(key + (pick,),
                                             collections.deque(maxlen=COST_WINDOW))
            window.append(per)
            if retry:  # re-try often while re-tries win, less and less often while they lose
                one, many = self._cost(key + (1,)), self._cost(key + (threads,))
                won = (one < ONE_THREAD_MARGIN * many) == (pick == 1)
                state[1] = 8 if won else min(2 * state[1], 256)
        finally:
            self.lock.release()

    def run(self, name: str, work: int, call: Callable, shape=()):
        """``call()`` on the thread count this policy picks for ``work`` multiply-adds;
        ``shape``: what makes a call a first one (the operands' shapes and geometry)."""
        if work < self.min_work or torch.compiler.is_compiling() or (
                torch.get_num_threads() <= 1 and getattr(_running, "token", None) is None):
            return call()  # (compiling, one thread: nothing to pick; begin's answer, sooner)
        token = self.begin(name, work, shape)
        try:
            result = call()
        except BaseException:
            self.end(token, failed=True)
            raise
        self.end(token)
        return result

    def hook_backward(self, y: torch.Tensor, node_names: Tuple[str, ...], name: str,
                      work: int, shape=()) -> torch.Tensor:
        """Runs the first autograd node named one of ``node_names`` behind ``y`` (through views and
        pads, four nodes deep at most) on the thread count this policy picks for ``name``:
        a pre-hook calls :meth:`begin`, a hook :meth:`end`.  Returns ``y``.  If the node
        raises, its hook never runs: the next :meth:`begin` on this thread finds the stale
        call and ends it (the thread count restored).  Where torch runs one thread when
        the forward does, no hooks (their two Python calls in the backward would find
        nothing to pick): a user raising the count between forward and backward gets
        that backward node on torch's count."""
        if work < self.min_work or torch.get_num_threads() <= 1:
            return y
        node = _find_node(y.grad_fn, node_names)
        if node is None:
            return y
        box = []

        def pre(grad_outputs):
            token = self.begin(name, work, shape)
            if token is not None:
                box.append(token)
                _running.token = (self, token)

        def post(grad_inputs, grad_outputs):
            if box:
                _running.token = None
                self.end(box.pop())

        node.register_prehook(pre)
        node.register_hook(post)
        return y



# the hooked node whose end is pending, per thread
_running = threading.local()


def _drop_stale() -> None:
    """Ends the call of a hooked node that raised before its hook ran (on this thread:
    nothing of the library's runs inside a hooked torch node, so a pending one is stale)."""
    stale = getattr(_running, "token", None)
    if stale is not None:
        _running.token = None
        policy, token = stale
        policy.end(token, failed=True)


def _find_node(node, names: Tuple[str, ...], depth: int = 4):
    """The first autograd node named one of ``names`` from ``node`` back through the first
    inputs (view, pad and movedim nodes after the convolution's)."""
    for _ in range(depth + 1):
        if node is None:
            return None
        if node.name() in names:
            return node
        node = next((n for n, _ in node.next_functions if n is not None), None)
    return None


#: Calls of fewer multiply-adds skip the policy (``ThreadPolicy.min_work``): torch's and oneDNN's
#: kernels and the C routines run them on one thread anyway (one tile, below the
#: parallel grain), and the policy's ~3 us would be a tenth of a one-step streaming call.
MIN_WORK = 2 ** 16

#: The policy every CPU kernel of the library shares.
THREADS = ThreadPolicy()


def run(name: str, work: int, call: Callable, shape=()):
    """:meth:`ThreadPolicy.run` on :data:`THREADS`."""
    return THREADS.run(name, work, call, shape)


def hook_backward(y: torch.Tensor, node_names: Tuple[str, ...], name: str, work: int,
                  shape=()) -> torch.Tensor:
    """:meth:`ThreadPolicy.hook_backward` on :data:`THREADS`."""
    return THREADS.hook_backward(y, node_names, name, work, shape)
