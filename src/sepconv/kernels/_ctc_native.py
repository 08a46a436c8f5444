"""TensorFlow 2.21's CTC beam search decoder (``CTCBeamSearchDecoder``, under tf-keras'
``backend.ctc_decode(greedy=False)``) as a C++ routine of the library's build
(``_cpu_native.Library``: same cache and loader), for ``functional.ctc_beam_decode(...,
like="tf_keras")``.

The routine is TensorFlow's algorithm step for step (``ctc_beam_search.h``, ``top_n.h``,
``ctc_loss_util.h`` of the installed wheel's headers), so that ties come out as TensorFlow
orders them:

- the beam is ``gtl::TopN``: an unordered vector until it overflows, its bottom found by a
  scan that swaps it to the front (``peek_bottom``), then a heap of libstdc++'s
  ``std::make_heap`` / ``pop_heap`` / ``push_heap``; each step reads it out with
  ``std::sort`` or ``std::sort_heap`` (TensorFlow's wheel links libstdc++: this module is
  compiled as C++ against the same algorithms);
- each step subtracts ``max + log(sum(exp(x - max)))`` (a log-softmax's offset, summed in
  class order in the input's dtype: TensorFlow 2.21 normalises the step, earlier
  versions only subtracted the maximum); ``LogSumExp(a, b)`` is ``a + log1pf(expf(b - a))``
  with the larger first, in ``float`` even for ``double`` inputs, as TensorFlow's template
  writes it;
- a prefix's children live in a trie (a prefix pushed out of the beam and reached again is
  the same entry, its children still attached).

One difference that changes nothing observable: TensorFlow creates a child entry for every
label of every expanded prefix and resets the ones that are not candidates; here a child
is looked up (a hash table keyed by parent and label) only when its probability makes it a
candidate, an inactive entry and an absent one behaving alike.
"""

from __future__ import annotations

import ctypes
from typing import Optional

import torch

from . import _cpu_native

SOURCE = r"""
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace {

template <typename T>
inline T zero_prob() { return -std::numeric_limits<T>::infinity(); }

/* ctc_loss_util.h's LogSumExp: log1pf/expf (float) whatever T is. */
template <typename T>
inline T log_sum_exp(T a, T b) {
    if (a == zero_prob<T>()) return b;
    if (b == zero_prob<T>()) return a;
    return (a > b) ? a + log1pf(expf(b - a)) : b + log1pf(expf(a - b));
}

template <typename T>
struct Prob { T total, blank, label; };

template <typename T>
struct Entry {
    int32_t parent, label;
    int64_t kids_step;  /* the last step one of its children was a branch */
    Prob<T> oldp, newp;
};

template <typename T>
struct Search {
    std::vector<Entry<T>> e;
    /* children: open addressing, key parent * classes + label + 1 (0: empty slot) */
    std::vector<int64_t> keys;
    std::vector<int32_t> vals;
    int64_t used = 0, classes = 0;

    bool active(int32_t i) const { return e[i].newp.total != zero_prob<T>(); }
    /* BeamComparer: a better than b */
    bool cmp(int32_t a, int32_t b) const { return e[a].newp.total > e[b].newp.total; }

    void reset(int64_t c) {
        classes = c;
        e.clear();
        Entry<T> root;
        root.parent = -1; root.label = -1; root.kids_step = -1;
        root.oldp = {zero_prob<T>(), zero_prob<T>(), zero_prob<T>()};
        root.newp = {T(0.0), T(0.0), zero_prob<T>()};
        e.push_back(root);
        if (keys.size() != 1024) { keys.assign(1024, 0); vals.assign(1024, 0); }
        else std::fill(keys.begin(), keys.end(), 0);
        used = 0;
    }

    static uint64_t mix(uint64_t k) {
        k ^= k >> 33; k *= 0xff51afd7ed558ccdULL; k ^= k >> 33;
        return k;
    }

    void grow() {
        std::vector<int64_t> ok = std::move(keys);
        std::vector<int32_t> ov = std::move(vals);
        keys.assign(ok.size() * 2, 0);
        vals.assign(ok.size() * 2, 0);
        const uint64_t mask = keys.size() - 1;
        for (size_t i = 0; i < ok.size(); i++) {
            if (!ok[i]) continue;
            uint64_t h = mix((uint64_t)ok[i]) & mask;
            while (keys[h]) h = (h + 1) & mask;
            keys[h] = ok[i]; vals[h] = ov[i];
        }
    }

    /* the entry (parent, label), -1 if absent */
    int32_t find(int32_t parent, int32_t label) const {
        const int64_t key = (int64_t)parent * classes + label + 1;
        const uint64_t mask = keys.size() - 1;
        uint64_t h = mix((uint64_t)key) & mask;
        while (keys[h]) {
            if (keys[h] == key) return vals[h];
            h = (h + 1) & mask;
        }
        return -1;
    }

    /* BeamEntry::GetChild: the entry (parent, label), created inactive if absent. */
    int32_t child(int32_t parent, int32_t label) {
        if ((used + 1) * 2 > (int64_t)keys.size()) grow();
        const int64_t key = (int64_t)parent * classes + label + 1;
        const uint64_t mask = keys.size() - 1;
        uint64_t h = mix((uint64_t)key) & mask;
        while (keys[h]) {
            if (keys[h] == key) return vals[h];
            h = (h + 1) & mask;
        }
        Entry<T> c;
        c.parent = parent; c.label = label; c.kids_step = -1;
        c.oldp = {zero_prob<T>(), zero_prob<T>(), zero_prob<T>()};
        c.newp = c.oldp;
        e.push_back(c);
        keys[h] = key; vals[h] = (int32_t)(e.size() - 1);
        used++;
        return vals[h];
    }
};

/* gtl::TopN<BeamEntry*, BeamComparer> over entry indices. */
template <typename T>
struct TopN {
    enum State { UNORDERED, BOTTOM_KNOWN, HEAP_SORTED };
    const Search<T> *s;
    size_t limit;
    std::vector<int32_t> el;
    State state = UNORDERED;

    struct Cmp {
        const Search<T> *s;
        bool operator()(int32_t a, int32_t b) const { return s->cmp(a, b); }
    };

    TopN(const Search<T> *search, size_t lim) : s(search), limit(lim) {}
    size_t size() const { return el.size(); }
    void clear() { el.clear(); state = UNORDERED; }

    void push(int32_t v) {
        Cmp cmp{s};
        if (limit == 0) return;
        if (state != HEAP_SORTED) {
            el.push_back(v);
            if (el.size() == limit + 1) {
                std::make_heap(el.begin(), el.end(), cmp);
                std::pop_heap(el.begin(), el.end(), cmp);
                el.pop_back();
                state = HEAP_SORTED;
            } else if (state == UNORDERED || cmp(el.back(), el.front())) {
            } else {
                std::swap(el.front(), el.back());
            }
        } else if (cmp(v, el.front())) {
            std::pop_heap(el.begin(), el.end(), cmp);
            el.back() = v;
            std::push_heap(el.begin(), el.end(), cmp);
        }
    }

    int32_t peek_bottom() {
        Cmp cmp{s};
        if (state == UNORDERED) {
            size_t m = 0;
            for (size_t i = 1; i < el.size(); ++i)
                if (cmp(el[m], el[i])) m = i;
            if (m != 0) std::swap(el[0], el[m]);
            state = BOTTOM_KNOWN;
        }
        return el.front();
    }

    /* Extract: the elements best first; the TopN left empty. */
    void extract(std::vector<int32_t> &out) {
        Cmp cmp{s};
        out.swap(el);
        el.clear();
        if (state != HEAP_SORTED) std::sort(out.begin(), out.end(), cmp);
        else std::sort_heap(out.begin(), out.end(), cmp);
        state = UNORDERED;
    }
};

/* One row x (steps, classes) of length n; returns the number of leaves at the end and, when
   it is at least top, writes the top paths (out rows stride apart, -1 past each path's end)
   and their log probabilities. */
template <typename T>
int64_t decode_row(const T *x, int64_t n, int64_t classes, int64_t beam, int64_t top,
                   int64_t blank, int merge, int64_t *paths, int64_t path_stride,
                   T *scores, Search<T> &s, std::vector<int32_t> &branches) {
    s.reset(classes);
    TopN<T> leaves(&s, (size_t)beam);
    leaves.push(0);
    std::vector<T> xs((size_t)classes);
    for (int64_t t = 0; t < n; t++) {
        const T *raw = x + t * classes;
        T max_coeff = raw[0];
        for (int64_t j = 1; j < classes; j++) max_coeff = std::max(max_coeff, raw[j]);
        T lse = T(0.0);
        for (int64_t j = 0; j < classes; j++) lse += std::exp(raw[j] - max_coeff);
        lse = std::log(lse);
        const T norm = max_coeff + lse;
        for (int64_t j = 0; j < classes; j++) xs[j] = raw[j] - norm;

        leaves.extract(branches);
        for (int32_t b : branches) {
            s.e[b].oldp = s.e[b].newp;
            if (s.e[b].parent >= 0) s.e[s.e[b].parent].kids_step = t;
        }
        for (int32_t bi : branches) {
            Entry<T> &b = s.e[bi];
            if (b.parent >= 0) {
                const Entry<T> &p = s.e[b.parent];
                if (p.newp.total != zero_prob<T>()) {
                    const T previous = (b.label == p.label) ? p.oldp.blank : p.oldp.total;
                    b.newp.label = log_sum_exp(b.newp.label, previous);
                }
                b.newp.label += xs[b.label];
            }
            b.newp.blank = b.oldp.total + raw[blank] - norm;
            b.newp.total = log_sum_exp(b.newp.blank, b.newp.label);
            leaves.push(bi);
        }
        /* is_candidate: above zero probability and the beam not full or above its bottom */
        auto candidate = [&](T v) {
            return v > zero_prob<T>() && (leaves.size() < (size_t)beam ||
                                          v > s.e[leaves.peek_bottom()].newp.total);
        };
        for (int32_t bi : branches) {
            const Prob<T> old = s.e[bi].oldp;
            const int32_t blabel = s.e[bi].label;
            if (!candidate(old.total)) continue;
            const bool kids = s.e[bi].kids_step == t;
            for (int64_t label = 0; label < classes; label++) {
                if (label == blank) continue;
                const T previous = (label == blabel) ? old.blank : old.total;
                const T value = (raw[label] - norm) + previous;
                const bool exact = leaves.size() >= (size_t)beam &&
                                   leaves.state == TopN<T>::UNORDERED;
                /* Past the step's first peek_bottom, asking whether a value is a candidate
                   changes nothing, and a child that is none ends inactive as if never
                   looked up, unless it is one of this step's branches (pushed out of the
                   beam by now): TensorFlow's reset of its old probability stops its own
                   expansion below.  Before that peek_bottom, TensorFlow's order of calls
                   is kept. */
                if (!exact && !candidate(value)) {
                    if (kids) {
                        const int32_t ci = s.find(bi, (int32_t)label);
                        if (ci >= 0 && s.e[ci].newp.total == zero_prob<T>())
                            s.e[ci].oldp = s.e[ci].newp;  /* all zero probability */
                    }
                    continue;
                }
                const int32_t ci = s.child(bi, (int32_t)label);
                if (s.e[ci].newp.total != zero_prob<T>()) continue;  /* in the beam */
                s.e[ci].newp = {value, zero_prob<T>(), value};
                if (exact && !candidate(value)) {
                    s.e[ci].oldp = {zero_prob<T>(), zero_prob<T>(), zero_prob<T>()};
                    s.e[ci].newp = s.e[ci].oldp;
                    continue;
                }
                if (leaves.size() == (size_t)beam) {
                    Entry<T> &bottom = s.e[leaves.peek_bottom()];
                    bottom.newp = {zero_prob<T>(), zero_prob<T>(), zero_prob<T>()};
                }
                leaves.push(ci);
            }
        }
    }
    /* The op's kernel calls TopPaths on the last step's beam as it stands (not Decode, whose
       read-out and push back would reorder equal leaves). */
    const int64_t count = (int64_t)leaves.size();
    if (count < top) return count;
    TopN<T> best(&s, (size_t)top);
    for (int32_t b : leaves.el) best.push(b);
    best.extract(branches);
    std::vector<int32_t> seq;
    for (int64_t i = 0; i < top; i++) {
        int32_t c = branches[i];
        scores[i] = s.e[c].newp.total;
        seq.clear();
        int32_t prev = -1;
        while (s.e[c].parent >= 0) {
            if (!merge || s.e[c].label != prev) seq.push_back(s.e[c].label);
            prev = s.e[c].label;
            c = s.e[c].parent;
        }
        int64_t *out = paths + i * path_stride;
        for (size_t k = 0; k < seq.size(); k++) out[k] = seq[seq.size() - 1 - k];
    }
    return count;
}

template <typename T>
void decode(const T *x, const int64_t *lengths, int64_t batch, int64_t steps,
            int64_t classes, int64_t beam, int64_t top, int64_t blank, int merge,
            int64_t *paths, T *scores, int64_t *leaves) {
    Search<T> s;
    std::vector<int32_t> branches;
    for (int64_t b = 0; b < batch; b++)
        leaves[b] = decode_row<T>(x + b * steps * classes, lengths[b], classes, beam, top,
                                  blank, merge, paths + b * steps, batch * steps,
                                  scores + b * top, s, branches);
}

}  // namespace

/* x (batch, steps, classes) contiguous; paths (top, batch, steps) filled with -1 by the
   caller; scores (batch, top); leaves (batch,): each row's final beam size (rows with fewer
   than top leaves are left unwritten). */
extern "C" int sepconv_ctc_beam_tf_f32(const float *x, const int64_t *lengths,
                                       int64_t batch, int64_t steps, int64_t classes,
                                       int64_t beam, int64_t top, int64_t blank, int merge,
                                       int64_t *paths, float *scores, int64_t *leaves) {
    decode<float>(x, lengths, batch, steps, classes, beam, top, blank, merge, paths, scores,
                  leaves);
    return 0;
}

extern "C" int sepconv_ctc_beam_tf_f64(const double *x, const int64_t *lengths,
                                       int64_t batch, int64_t steps, int64_t classes,
                                       int64_t beam, int64_t top, int64_t blank, int merge,
                                       int64_t *paths, double *scores, int64_t *leaves) {
    decode<double>(x, lengths, batch, steps, classes, beam, top, blank, merge, paths,
                   scores, leaves);
    return 0;
}
"""

# C++ (libstdc++'s heap and sort algorithms, as TensorFlow's wheel); no -march=native and
# no FMA contraction: TensorFlow's scalar float arithmetic, each operation rounded
_FLAGS = ["-O2", "-fPIC", "-x", "c++", "-std=gnu++17", "-ffp-contract=off"]
_P, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_lib: Optional[ctypes.CDLL] = None


def _declare(lib: ctypes.CDLL) -> None:
    for fn in (lib.sepconv_ctc_beam_tf_f32, lib.sepconv_ctc_beam_tf_f64):
        fn.restype = ctypes.c_int
        fn.argtypes = [_P, _P] + [_I64] * 6 + [_INT, _P, _P, _P]


_LIBRARY = _cpu_native.Library("ctc_beam", SOURCE, _FLAGS, _declare,
                               openmp_args=(), libs=("-lstdc++", "-lm"))


def load() -> Optional[ctypes.CDLL]:
    """The compiled library, built on first use; ``None`` where it cannot be built."""
    global _lib
    _lib = _LIBRARY.load()
    return _lib


def tf_decode(x: torch.Tensor, lengths: torch.Tensor, beam_width: int, top_paths: int,
              blank: int, merge_repeated: bool):
    """TensorFlow's beam search of ``x`` ``(batch, steps, classes)`` (contiguous CPU
    float32 or float64) with int64 ``lengths``: ``(paths (top, batch, steps) int64 with
    -1 past each path, scores (batch, top) in x's dtype, leaves (batch,))``; a row whose
    final beam holds fewer than ``top_paths`` leaves is left unwritten.  ``load()`` must
    have succeeded."""
    batch, steps, classes = x.shape
    paths = torch.full((top_paths, batch, steps), -1, dtype=torch.int64)
    scores = torch.zeros((batch, top_paths), dtype=x.dtype)
    leaves = torch.zeros(batch, dtype=torch.int64)
    fn = _lib.sepconv_ctc_beam_tf_f64 if x.dtype == torch.float64 else \
        _lib.sepconv_ctc_beam_tf_f32
    fn(x.data_ptr(), lengths.data_ptr(), batch, steps, classes, beam_width, top_paths, blank,
       int(bool(merge_repeated)), paths.data_ptr(), scores.data_ptr(), leaves.data_ptr())
    return paths, scores, leaves
