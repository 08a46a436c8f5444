"""Beam-search CTC decoding as TensorFlow's ``CTCBeamSearchDecoder`` (under tf-keras'
``backend.ctc_decode(greedy=False)``) and Keras 3.15's ``ops.ctc_decode(strategy=
"beam_search")`` compute it (see :func:`sepconv.functional.ctc_beam_decode`).

Both are prefix beam searches (a prefix's probability split into "ends in a blank" and
"ends in its last label"; a label repeated right after itself extends the prefix only
through the blank-ending part).  They differ where this module follows each:

- TensorFlow (``tf_row``, the Python fallback of ``kernels/_ctc_native.py``'s C++
  routine, used where nothing can be compiled): the inputs as given, each step's
  log-softmax offset ``max + log(sum(exp(x - max)))`` subtracted (TensorFlow 2.21); one
  beam list of ``beam_width`` prefixes filled in order (the old prefixes first, then
  their one-label extensions from the best prefix down, each taking the place of the
  worst when better); ``merge_repeated`` also merges equal consecutive labels of the
  output (``a, blank, a`` gives ``a``).  Written one row at a time on NumPy scalars: it
  orders equal scores by Python's stable sort, not as TensorFlow's ``gtl::TopN`` and
  libstdc++'s introsort do (the C++ routine does), and its ``exp`` / ``log1p`` are
  NumPy's, not the C library's.
- Keras 3 (``keras3_fast``; ``keras3_batch`` the direct port of its tensor operations):
  a log-softmax first; the first step keeps the
  ``min(classes, beam_width)`` best classes; every step extends every kept prefix, merges
  equal prefixes (sums of ``exp(score - largest score)``, in float32, as Keras does) and
  keeps the ``beam_width`` best; ``merge_repeated`` does not apply.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import numpy as np
import torch

_NEG = -np.inf


def _lse(a, b):
    """TensorFlow's ``LogSumExp`` of two log probabilities."""
    if a == _NEG:
        return b
    if b == _NEG:
        return a
    if a > b:
        return a + np.log1p(np.exp(b - a))
    return b + np.log1p(np.exp(a - b))


class _Entry:
    """One prefix of TensorFlow's beam trie: the old and new (total, blank, label) log
    probabilities; active while its new total is above zero probability."""

    __slots__ = ("parent", "label", "children", "old", "new")

    def __init__(self, parent: Optional["_Entry"], label: int, zero):
        self.parent, self.label, self.children = parent, label, {}
        self.old = [zero, zero, zero]
        self.new = [zero, zero, zero]

    def active(self) -> bool:
        return self.new[0] != _NEG

    def child(self, label: int, zero) -> "_Entry":
        c = self.children.get(label)
        if c is None:
            c = self.children[label] = _Entry(self, label, zero)
        return c

    def labels(self, merge_repeated: bool) -> List[int]:
        out, prev, e = [], -1, self
        while e.parent is not None:
            if not merge_repeated or e.label != prev:
                out.append(e.label)
            prev, e = e.label, e.parent
        return out[::-1]


def too_few_leaves(leaves: int, length: int, top_paths: int) -> None:
    """TensorFlow's error where a row's beam ends with fewer paths than asked for."""
    raise ValueError(f"Invalid value for argument `top_paths`. The beam holds "
                     f"{leaves} paths after {length} steps (TensorFlow: \"Less "
                     f"leaves in the beam search than requested\"). Received "
                     f"top_paths={top_paths}")


def tf_row(x: np.ndarray, length: int, beam_width: int, top_paths: int, blank: int,
           merge_repeated: bool) -> Tuple[List[List[int]], List[float]]:
    """TensorFlow's beam search of one row ``x`` ``(steps, classes)``: the ``top_paths``
    best label sequences and their log probabilities."""
    zero = x.dtype.type(_NEG)
    root = _Entry(None, -1, zero)
    root.new = [x.dtype.type(0), x.dtype.type(0), zero]
    leaves = [root]
    labels = [c for c in range(x.shape[1]) if c != blank]

    bottom = [None]  # the worst leaf while the beam is full (TopN's peek_bottom)

    def rebottom() -> None:
        bottom[0] = min(leaves, key=lambda e: e.new[0]) if len(leaves) >= beam_width \
            else None

    def candidate(total) -> bool:
        return total > _NEG and (bottom[0] is None or total > bottom[0].new[0])

    for t in range(length):
        row = x[t]
        # TensorFlow 2.21 subtracts a log-softmax's offset: max + log(sum(exp(x - max)))
        top = row.max() + np.log(np.cumsum(np.exp(row - row.max()))[-1])
        branches = sorted(leaves, key=lambda e: -e.new[0])  # TopN's Extract: best first
        leaves = []
        for b in branches:
            b.old = list(b.new)
        for b in branches:
            if b.parent is not None:
                if b.parent.active():
                    p = b.parent
                    prev = p.old[1] if b.label == p.label else p.old[0]
                    b.new[2] = _lse(b.new[2], prev)
                b.new[2] = b.new[2] + row[b.label] - top
            b.new[1] = b.old[0] + row[blank] - top
            b.new[0] = _lse(b.new[1], b.new[2])
            leaves.append(b)
        rebottom()
        for b in branches:
            if not candidate(b.old[0]):
                continue
            for label in labels:
                c = b.child(label, zero)
                if c.active():
                    continue
                prev = b.old[1] if label == b.label else b.old[0]
                c.new = [row[label] - top + prev, zero, row[label] - top + prev]
                if candidate(c.new[0]):
                    if len(leaves) == beam_width:  # the worst leaves the beam
                        out = bottom[0]
                        out.new = [zero, zero, zero]
                        leaves.remove(out)
                    leaves.append(c)
                    rebottom()
                else:
                    c.old = [zero, zero, zero]
                    c.new = [zero, zero, zero]
    if top_paths > len(leaves):
        too_few_leaves(len(leaves), length, top_paths)
    best = sorted(leaves, key=lambda e: -e.new[0])[:top_paths]
    return [e.labels(merge_repeated) for e in best], [float(e.new[0]) for e in best]


# Keras 3's row hash (keras/src/backend/torch/nn.py ``_unique_padded``): a path of classes
# (flipped, see keras3_batch) l_0..l_{n-1} hashes to sum((l_i + 1) * K**i) in wrapping int64
_KNUTH = 2654435769


def keras3_batch(x: torch.Tensor, lengths: List[int], beam_width: int, top_paths: int,
                 blank: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Keras 3.15's beam search (torch backend) of log-softmax scores ``x`` ``(batch,
    steps, classes)``, all rows at once: ``(paths (top, batch, steps) int64, scores
    (batch, top))``, equal to Keras' to the bit, its order of equal scores included.
    The reference of :func:`keras3_fast` (what ``ctc_beam_decode`` runs) in the tests,
    at sizes where Keras itself takes minutes.

    Keras extends each of its ``2 * beam_width`` rows (a prefix's label-ending and
    blank-ending halves) by every class, finds the equal paths among the
    ``2 * beam_width * classes`` by sorting their integer hashes, merges each path's two
    halves' probabilities (``log(sum(exp(s - max))) + max``, summed in row order) and keeps
    the ``beam_width`` best by a stable ascending sort, the later (larger hash) of equal
    totals first.  Here the same tensor operations run on the hashes (updated by the one
    label a row appends) rather than on the padded paths themselves, for every row of the
    batch together; the paths are read back through each step's parent rows at the end.
    A hash collision between two different paths (Keras then compares the rows) is
    taken as equality."""
    batch, steps, classes = x.shape
    dtype, dev = x.dtype, x.device
    x = torch.flip(x, dims=[2])  # Keras flips the classes for its argsort's ties
    blank = classes - blank - 1
    rows, n = 2 * beam_width, 2 * beam_width * classes
    ninf = float("-inf")
    powers = _KNUTH ** torch.arange(max(steps, 1) + 1, dtype=torch.int64, device=dev)
    cls = torch.arange(classes, device=dev)
    is_blank = cls == blank  # the rows a step's blank extends ("masked")
    arange_b = torch.arange(batch, device=dev)[:, None]

    # first step: the min(classes, beam_width) best classes, ascending, then padding rows
    init = min(classes, beam_width)
    first = torch.argsort(x[:, 0], dim=1, stable=True)[:, -init:]
    pad_rows = torch.full((batch, rows - init), -1, dtype=torch.int64, device=dev)
    label = torch.cat([torch.where(first == blank, -1, first), pad_rows], 1)  # (b, rows)
    scores = torch.cat([torch.gather(x[:, 0], 1, first),
                        torch.full((batch, rows - init), ninf, dtype=dtype, device=dev)], 1)
    masked = label < 0
    nonempty = label >= 0
    hashes = torch.where(nonempty, label + 1, 0)
    length = nonempty.long()
    tail = label.clone()
    history = [(None, label)]  # per step: (parent row of each row, label it appended or -1)
    lengths_t = torch.as_tensor(lengths, device=dev)
    for t in range(1, max(lengths, default=0)):
        # extend: row r = slot * classes + c
        repeat = (~masked)[:, :, None] & (tail[:, :, None] == cls)
        append = ~is_blank & ~repeat  # (b, rows, classes)
        ext_hash = hashes[:, :, None] + torch.where(
            append, (cls + 1) * powers[length][:, :, None], 0)
        ext_scores = (scores[:, :, None] + x[:, t, None, :]).reshape(batch, n)
        ext_hash = ext_hash.reshape(batch, n)
        ext_masked = is_blank.repeat(rows)  # (n,)
        # Keras' _unique_padded: sort by hash (stable), first of equal ones, inverse
        order = torch.argsort(ext_hash, dim=1, stable=True)
        sorted_hash = torch.gather(ext_hash, 1, order)
        is_first = torch.ones_like(sorted_hash, dtype=torch.bool)
        is_first[:, 1:] = sorted_hash[:, 1:] != sorted_hash[:, :-1]
        uid = torch.cumsum(is_first.long(), dim=1) - 1
        inverse = torch.empty_like(uid).scatter_(1, order, uid)
        n_unique = uid[:, -1:] + 1
        rep = torch.zeros_like(uid).scatter_(1, uid, order)  # a row of each unique path
        # Keras' _merge_scores of the label-ending and blank-ending parts
        emit = _merge_rows(inverse, torch.where(ext_masked, ninf, ext_scores), n)
        blanks = _merge_rows(inverse, torch.where(ext_masked, ext_scores, ninf), n)
        total = torch.logaddexp(emit, blanks)
        top = torch.argsort(total, dim=1, stable=True)[:, -beam_width:]
        real = top < n_unique  # past the unique paths: Keras' padding rows (empty paths)
        r = torch.gather(rep, 1, top)
        parent = torch.where(real, r // classes, -1)
        c = r % classes
        app = real & torch.gather(append.reshape(batch, n), 1, r)
        new_label = torch.where(app, c, -1)
        new_hash = torch.where(real, torch.gather(ext_hash, 1, r), 0)
        new_length = torch.where(real, torch.gather(length, 1, parent.clamp(min=0))
                                 + app.long(), 0)
        new_tail = torch.where(app, c, torch.where(real, torch.gather(
            tail, 1, parent.clamp(min=0)), -1))
        new_scores = torch.cat([torch.gather(emit, 1, top), torch.gather(blanks, 1, top)], 1)
        live = (t < lengths_t)[:, None]  # rows past their length keep their beam
        keep = torch.arange(rows, device=dev).expand(batch, rows)
        history.append((torch.where(live, parent.repeat(1, 2), keep),
                        torch.where(live, new_label.repeat(1, 2), -1)))
        scores = torch.where(live, new_scores, scores)
        masked = torch.where(live, torch.arange(rows, device=dev) >= beam_width, masked)
        hashes = torch.where(live, new_hash.repeat(1, 2), hashes)
        length = torch.where(live, new_length.repeat(1, 2), length)
        tail = torch.where(live, new_tail.repeat(1, 2), tail)
    # final: merge equal paths of the 2 * beam_width rows, the top_paths best
    order = torch.argsort(hashes, dim=1, stable=True)
    sorted_hash = torch.gather(hashes, 1, order)
    is_first = torch.ones_like(sorted_hash, dtype=torch.bool)
    is_first[:, 1:] = sorted_hash[:, 1:] != sorted_hash[:, :-1]
    uid = torch.cumsum(is_first.long(), dim=1) - 1
    inverse = torch.empty_like(uid).scatter_(1, order, uid)
    rep = torch.zeros((batch, n), dtype=torch.int64, device=dev).scatter_(1, uid, order)
    total = _merge_rows(inverse, scores, n)
    top = torch.argsort(total, dim=1, stable=True)[:, -top_paths:].flip(1)
    best = torch.gather(total, 1, top)
    slot = torch.where(top < uid[:, -1:] + 1, torch.gather(rep, 1, top), -1)  # (b, top)
    paths = torch.full((batch, top_paths, steps + 1), -1, dtype=torch.int64, device=dev)
    pos = torch.gather(length, 1, slot.clamp(min=0))
    pos = torch.where(slot >= 0, pos, 0) - 1  # where each row's next label (backwards) goes
    for parent, appended in reversed(history):
        live = slot >= 0
        lab = torch.gather(appended, 1, slot.clamp(min=0))
        put = live & (lab >= 0)
        paths[arange_b, torch.arange(top_paths, device=dev)[None, :],
              torch.where(put, pos, steps)] = torch.where(put, lab, -1)
        pos = pos - put.long()
        if parent is not None:
            slot = torch.where(live, torch.gather(parent, 1, slot.clamp(min=0)), -1)
    paths = paths[:, :, :steps]
    paths = torch.where(paths >= 0, classes - paths - 1, -1)
    return paths.permute(1, 0, 2).contiguous(), best


def _merge_rows(inverse: torch.Tensor, scores: torch.Tensor, n: int) -> torch.Tensor:
    """Keras 3's ``_merge_scores`` of each row: ``log(out) + max``, ``out`` the sums (in
    row order) of ``exp(scores - max)`` by ``inverse``'s groups, ``n`` groups."""
    m = scores.max(dim=1, keepdim=True).values
    out = torch.zeros((scores.shape[0], n), dtype=scores.dtype, device=scores.device)
    out.scatter_add_(1, inverse, torch.exp(scores - m))
    return torch.log(out) + m


def _select(total: torch.Tensor, hash_of: Callable[[torch.Tensor], torch.Tensor],
            k: int) -> torch.Tensor:
    """Keras 3's choice of the ``k`` best of each row: ``argsort(total, stable)[-k:]``
    over its unique paths in hash order followed by padding rows of total ``-inf``, i.e.
    the ``k`` largest (total, hash) pairs in ascending order, padding (``-1``) first where
    fewer than ``k`` totals are finite.  ``hash_of(indices)``: the hashes of those entries.
    ``topk`` finds the candidates; only where the ``k``-th total ties with the next (or
    is ``-inf``) are all entries at or above it gathered."""
    batch, n = total.shape
    ninf = float("-inf")
    if n > k:
        vals, idx = torch.topk(total, min(n, k + 16), dim=1)
        kth = vals[:, k - 1:k]
        clean = bool(((vals[:, -1:] < kth) & (kth > ninf)).all())
    else:
        clean = False
    if clean:  # every entry at or above the k-th total is among the topk's
        cand = torch.where(vals >= kth, idx, -1)
    else:
        finite = total > ninf
        if n > k:
            finite = finite & (total >= kth)
        count = finite.sum(dim=1, keepdim=True)
        width = max(int(count.max()), k)
        pos = torch.where(finite, torch.cumsum(finite.long(), dim=1) - 1, width)
        cand = torch.full((batch, width + 1), -1, dtype=torch.int64, device=total.device)
        cand.scatter_(1, pos, torch.arange(n, device=total.device).expand(batch, n))
        cand = cand[:, :width]
    real = cand >= 0
    t = torch.where(real, torch.gather(total, 1, cand.clamp(min=0)), ninf)
    h = torch.where(real, hash_of(cand.clamp(min=0)), torch.iinfo(torch.int64).min)
    order = torch.argsort(h, dim=1, stable=True)  # (total, hash) ascending: hash first,
    order = torch.gather(order, 1, torch.argsort(torch.gather(t, 1, order), dim=1,
                                                 stable=True))  # then total, stable
    return torch.gather(cand, 1, order[:, -k:])


def keras3_fast(x: torch.Tensor, lengths: List[int], beam_width: int, top_paths: int,
                blank: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`keras3_batch`'s results from the structure of Keras' candidate rows rather
    than by sorting all ``2 * beam_width * classes`` of them at every step.

    Keras' rows at a step are the two halves (label-ending, blank-ending) of each kept
    path ``q`` extended by every class.  The rows that give one path are known: ``q``
    itself gets its label-ending half's repeat of its last label and the two halves of
    its parent ``p`` (when ``p`` is kept) extended by that label (label-ending part), and
    its own halves extended by the blank (blank-ending part); every other path ``q + c``
    gets ``q``'s two halves extended by ``c`` (the label-ending half only when ``c`` is
    not ``q``'s last label).  Keras sums the ``exp(score - max)`` of a path's rows in row
    order, the blank-ending halves after all label-ending ones: at most ``(a + b) + c``,
    which is what is computed here, with the same torch operations on the same values.
    Paths of total ``-inf`` never enter the beam (Keras' padding rows, empty paths of
    total ``-inf``, come after them in its stable sort and outnumber the beam), and the
    maxima subtracted are the rows' (``max(scores) + max(x)``: rounding is monotone)."""
    batch, steps, classes = x.shape
    dtype, dev = x.dtype, x.device
    x = torch.flip(x, dims=[2])
    blank = classes - blank - 1
    beam, ninf = beam_width, float("-inf")
    powers = _KNUTH ** torch.arange(max(steps, 1) + 1, dtype=torch.int64, device=dev)
    cls = torch.arange(classes, device=dev)
    bidx = torch.arange(batch, device=dev)[:, None]

    # the first step's kept paths (padded to beam entries): a class, or the empty path for
    # the blank (its score blank-ending); padding entries empty with -inf
    init = min(classes, beam)
    first = torch.argsort(x[:, 0], dim=1, stable=True)[:, -init:]
    fill = torch.full((batch, beam - init), -1, dtype=torch.int64, device=dev)
    tail = torch.cat([torch.where(first == blank, -1, first), fill], 1)
    score = torch.cat([torch.gather(x[:, 0], 1, first),
                       torch.full((batch, beam - init), ninf, dtype=dtype, device=dev)], 1)
    nonempty = tail >= 0
    e = torch.where(nonempty, score, ninf)
    m = torch.where(nonempty, ninf, score)
    h = torch.where(nonempty, tail + 1, 0)
    length = nonempty.long()
    history = [(None, tail)]
    lengths_t = torch.as_tensor(lengths, device=dev)
    not_blank = cls != blank
    keep = torch.arange(beam, device=dev).expand(batch, beam)
    for t in range(1, max(lengths, default=0)):
        xs = x[:, t]  # (b, classes)
        top = torch.maximum(e.max(dim=1, keepdim=True).values,
                            m.max(dim=1, keepdim=True).values)
        me = top + torch.where(not_blank, xs, ninf).max(dim=1, keepdim=True).values
        mm = top + xs[:, blank:blank + 1]
        ea = torch.exp((e[:, :, None] + xs[:, None, :]) - me[:, :, None])  # (b, k, c)
        ma = torch.exp((m[:, :, None] + xs[:, None, :]) - me[:, :, None])
        # q + c for every kept q and class c: label-ending only, so its total is this
        # (Keras' logaddexp with the -inf blank-ending part returns it unchanged)
        ext_emit = torch.log(torch.where(cls == tail[:, :, None], 0.0, ea) + ma) \
            + me[:, :, None]
        # each kept q's parent among the kept paths (by hash), -1 where none
        live_q = (e > ninf) | (m > ninf)
        last = tail.clamp(min=0)
        parent_hash = h - (tail + 1) * powers[(length - 1).clamp(min=0)]
        match = (parent_hash[:, :, None] == h[:, None, :]) & live_q[:, None, :] \
            & (live_q & (length > 0))[:, :, None]
        has_parent = match.any(dim=2)
        p = torch.where(has_parent, match.long().argmax(dim=2), 0)
        flat_ea, flat_ma = ea.reshape(batch, -1), ma.reshape(batch, -1)
        a = torch.where(tail >= 0, torch.gather(flat_ea, 1, keep * classes + last), 0.0)
        b_ = torch.where(has_parent & (torch.gather(tail, 1, p) != tail),
                         torch.gather(flat_ea, 1, p * classes + last), 0.0)
        c_ = torch.where(has_parent, torch.gather(flat_ma, 1, p * classes + last), 0.0)
        emit = torch.log((a + b_) + c_) + me
        blanks = torch.log(torch.exp((e + xs[:, blank:blank + 1]) - mm)
                           + torch.exp((m + xs[:, blank:blank + 1]) - mm)) + mm
        total = torch.logaddexp(emit, blanks)
        # q + c that is a kept path is merged there; the blank extends nothing
        ext_total = ext_emit.clone()
        ext_total[:, :, blank] = ninf
        ext_total = ext_total.reshape(batch, -1)
        ext_total[bidx.expand(batch, beam)[has_parent],
                  (p * classes + last)[has_parent]] = ninf

        def hash_of(i: torch.Tensor, h=h, length=length) -> torch.Tensor:
            q = torch.where(i < beam, i, (i - beam) // classes)
            hq = torch.gather(h, 1, q)
            step = (((i - beam) % classes) + 1) * powers[torch.gather(length, 1, q)]
            return torch.where(i < beam, hq, hq + step)

        pick = _select(torch.cat([total, ext_total], 1), hash_of, beam)
        pad = pick < 0
        kept = (pick >= 0) & (pick < beam)
        j = (pick - beam).clamp(min=0)
        src = torch.where(kept, pick, j // classes).clamp(min=0)  # the parent entry
        c = j % classes
        new_e = torch.where(kept, torch.gather(emit, 1, src),
                            torch.gather(ext_emit.reshape(batch, -1), 1, j))
        new_m = torch.where(kept, torch.gather(blanks, 1, src), ninf)
        new_h = hash_of(pick.clamp(min=0))
        new_len = torch.gather(length, 1, src) + (~kept).long()
        new_tail = torch.where(kept, torch.gather(tail, 1, src), c)
        live = (t < lengths_t)[:, None]
        history.append((torch.where(live, torch.where(pad, -1, src), keep),
                        torch.where(live & ~kept & ~pad, c, -1)))
        e = torch.where(live, torch.where(pad, ninf, new_e), e)
        m = torch.where(live, torch.where(pad, ninf, new_m), m)
        h = torch.where(live, torch.where(pad, 0, new_h), h)
        length = torch.where(live, torch.where(pad, 0, new_len), length)
        tail = torch.where(live, torch.where(pad, -1, new_tail), tail)
    # the end: each path's two halves merged, the top_paths best
    top = torch.maximum(e.max(dim=1, keepdim=True).values, m.max(dim=1, keepdim=True).values)
    total = torch.log(torch.exp(e - top) + torch.exp(m - top)) + top
    slot = _select(total, lambda i: torch.gather(h, 1, i), top_paths).flip(1)
    best = torch.where(slot >= 0, torch.gather(total, 1, slot.clamp(min=0)), ninf)
    paths = torch.full((batch, top_paths, steps + 1), -1, dtype=torch.int64, device=dev)
    pos = torch.where(slot >= 0, torch.gather(length, 1, slot.clamp(min=0)), 0) - 1
    tops = torch.arange(top_paths, device=dev)[None, :]
    for parent, appended in reversed(history):
        alive = slot >= 0
        lab = torch.gather(appended, 1, slot.clamp(min=0))
        put = alive & (lab >= 0)
        paths[bidx, tops, torch.where(put, pos, steps)] = torch.where(put, lab, -1)
        pos = pos - put.long()
        if parent is not None:
            slot = torch.where(alive, torch.gather(parent, 1, slot.clamp(min=0)), -1)
    paths = paths[:, :, :steps]
    paths = torch.where(paths >= 0, classes - paths - 1, -1)
    return paths.permute(1, 0, 2).contiguous(), best
