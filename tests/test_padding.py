"""``sepconv.padding``'s 1D arithmetic against its definition, counted by brute force: the
output steps are the windows that fit in the padded input, TensorFlow's padding amounts are
``numpy_reference.tf_pads`` (which shares no code with sepconv), and a tap reads the input
at the output steps whose input row lies inside it.  Every kernel that takes its lengths
from here (``kernels/gemm1d.py``, ``kernels/depthwise_train.py``) relies on these."""

from __future__ import annotations

import itertools

from sepconv import padding
from numpy_reference import tf_pads

#: lengths, kernel sizes, strides, dilations: every combination (small enough to run all)
GRID = list(itertools.product(range(1, 14), range(1, 6), range(1, 5), range(1, 4)))


def _windows(padded: int, span: int, stride: int) -> int:
    """How many windows of ``span`` rows, ``stride`` apart from row 0, fit in ``padded``."""
    return sum(1 for t in range(padded + 1) if t * stride + span <= padded)


def test_output_lengths_count_the_windows():
    """``padded_output_length`` (explicit padding) and ``conv_output_length`` (Keras'
    padding names) equal the number of windows of the dilated kernel that fit in the padded
    input, for every padding of up to 4 rows a side and every Keras padding."""
    for length, k, s, d in GRID:
        span = (k - 1) * d + 1
        for left, right in itertools.product(range(5), range(5)):
            want = _windows(length + left + right, span, s)
            if want:
                assert padding.padded_output_length(length, k, s, d, left, right) == want, \
                    (length, k, s, d, left, right)
        for name in ("valid", "same", "causal"):
            left, right = tf_pads(length, k, s, d, name)
            assert padding.padding_amounts(length, k, s, d, name) == (left, right)
            want = _windows(length + left + right, span, s)
            got = padding.conv_output_length(length, k, s, d, name)
            assert got == want or (want == 0 and got <= 0), (length, k, s, d, name, got)


def test_tap_output_range_is_where_the_tap_reads_the_input():
    """``tap_output_range``: the output steps at which each tap's input row lies inside the
    input (a contiguous run), and that run's first row; ``None`` where every row it reads
    is padding."""
    for length, k, s, d in GRID:
        for left, right in itertools.product(range(0, (k - 1) * d + 3), range(3)):
            out = padding.padded_output_length(length, k, s, d, left, right)
            if out <= 0:
                continue
            for tap in range(k):
                inside = [t for t in range(out) if 0 <= t * s + tap * d - left < length]
                got = padding.tap_output_range(length, tap, s, d, left, out)
                if not inside:
                    assert got is None, (length, k, s, d, left, tap, got)
                    continue
                want = (inside[0], inside[-1] + 1, inside[0] * s + tap * d - left)
                assert inside == list(range(want[0], want[1]))
                assert got == want, (length, k, s, d, left, tap, got)
