"""``kernels/_norm_native.py``'s column sums (register strips of 64 columns over blocks of 64
chunks): every piece of the loop nest (whole strips, the columns after the last strip, the
last partial block, the rows after the last chunk) against float64 sums of the same
float32 data, on one and two threads; two-thread results are the same bits call after
call (partial sums added in thread order)."""

from __future__ import annotations

import pytest
import torch

from sepconv.kernels import _norm_native

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _reference(x, dy):
    xd, dyd = x.double(), dy.double()
    mean = xd.mean(0)
    var = (xd * xd).mean(0) - mean * mean
    return mean, var, dyd.sum(0), (dyd * (xd - mean.float().double())).sum(0)


# (rows, channels): 8 channels -> 8-row chunks of 64 floats (one strip); 3 -> 66-float
# chunks (a strip and 2 tail columns); 100 / 130 -> one-row chunks with 36 / 2 tail
# columns; 64 * 64 chunks is one whole block, +1 a partial one; rows not a whole number
# of chunks leave rows after the last chunk
CASES = [(8 * 64 * 64, 8), (8 * 64 * 64 + 8 + 5, 8), (22 * 130 + 7, 3), (64 * 64 + 1, 100),
         (300, 130), (5, 8), (1, 64), (4097, 1)]


@pytest.mark.parametrize("rows,channels", CASES)
@pytest.mark.parametrize("threads", [1, 2])
def test_sums_against_float64(rows, channels, threads, monkeypatch):
    if _norm_native.load() is None:
        pytest.skip("no C compiler")
    monkeypatch.setattr(_norm_native, "MIN_PARALLEL", 1)  # threads even on small inputs
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(rows + channels)
        x = (torch.randn(rows, channels, generator=g) * 3 + 1.5).contiguous()
        dy = torch.randn(rows, channels, generator=g)
        mean, var = _norm_native.stats(x)
        want_mean, want_var, want_dsum, want_dot = _reference(x, dy)
        torch.testing.assert_close(mean.double(), want_mean, rtol=2e-7, atol=1e-7)
        torch.testing.assert_close(var.double(), want_var, rtol=1e-6, atol=1e-6)
        dsum, dot = _norm_native.grad_sums(dy, x, mean)
        scale = rows ** 0.5
        torch.testing.assert_close(dsum.double() / scale, want_dsum / scale, rtol=1e-6,
                                   atol=1e-6)
        torch.testing.assert_close(dot.double() / scale, want_dot / scale, rtol=1e-6,
                                   atol=1e-6)
        for _ in range(3):  # the same bits every call
            again, again_var = _norm_native.stats(x)
            assert torch.equal(again, mean) and torch.equal(again_var, var)
            assert all(torch.equal(a, b) for a, b in zip(_norm_native.grad_sums(dy, x, mean),
                                                         (dsum, dot)))
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("rows,channels", [(150, 32), (51 * 32, 128), (22 * 130 + 7, 3),
                                           (5, 8), (4097, 1)])
def test_affine_rounds_twice_as_tensorflow(rows, channels):
    """The C affine pass is ``x * inv + offset`` with two roundings (TensorFlow's numbers,
    ``functional.scale_offset``'s promise), bit for bit torch's two ops: no fused
    multiply-add (GCC contracts ``a * b + c`` into one under ``-march=native`` unless told
    not to; with the FMA about one output in four differs in its last bit)."""
    if _norm_native.load() is None:
        pytest.skip("no C compiler")
    g = torch.Generator().manual_seed(rows + channels)
    x = torch.randn(rows, channels, generator=g) * 3
    inv = torch.rand(1, channels, generator=g) + 0.5
    offset = torch.randn(1, channels, generator=g)
    got = _norm_native.affine(x, inv, offset)
    assert torch.equal(got, x * inv + offset)
    from sepconv import functional
    assert torch.equal(functional.scale_offset(x, inv, offset), x * inv + offset)
