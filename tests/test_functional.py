"""``sepconv.functional.separable_conv1d``, the pure op the layer calls, against the
float64 numpy reference, and its argument checks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from sepconv import functional
from numpy_reference import separable_conv1d as np_sepconv

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.mark.parametrize("pad,fmt", list(itertools.product(
    ["valid", "same", "causal"], ["channels_last", "channels_first"])))
@pytest.mark.parametrize("k,s,d,m,steps", [(3, 1, 1, 2, 9), (4, 2, 1, 1, 10), (2, 1, 3, 3, 7),
                                           (5, 3, 1, 1, 5)])
def test_matches_numpy(pad, fmt, k, s, d, m, steps):
    rng = np.random.default_rng(k * 100 + s * 10 + d)
    c, f = 3, 4
    x = rng.standard_normal((2, steps, c) if fmt == "channels_last" else (2, c, steps))
    dw, pw, b = (rng.standard_normal((k, c, m)), rng.standard_normal((1, c * m, f)),
                 rng.standard_normal(f))
    want = np_sepconv(x, dw, pw, b, strides=s, padding=pad, dilation_rate=d, data_format=fmt)
    for dtype, tol in [(torch.float64, 1e-12), (torch.float32, 1e-5)]:
        t = [torch.from_numpy(a).to(dtype) for a in (x, dw, pw, b)]
        got = functional.separable_conv1d(t[0], t[1], t[2], t[3], strides=(s,), padding=pad,
                                          dilation_rate=d, data_format=fmt)
        np.testing.assert_allclose(got.double().numpy(), want, atol=tol, rtol=tol)
    # a 2D pointwise kernel and no bias
    got = functional.separable_conv1d(torch.from_numpy(x), torch.from_numpy(dw),
                                      torch.from_numpy(pw[0]), None, strides=s, padding=pad,
                                      dilation_rate=d, data_format=fmt)
    np.testing.assert_allclose(got.numpy(), want - b.reshape((1, 1, f) if fmt ==
                                                             "channels_last" else (1, f, 1)),
                               atol=1e-12)


def test_argument_checks():
    x, dw, pw = torch.zeros(1, 8, 3), torch.zeros(3, 3, 2), torch.zeros(1, 6, 4)
    call = functional.separable_conv1d
    with pytest.raises(ValueError, match="padding"):
        call(x, dw, pw, padding="full")
    with pytest.raises(ValueError, match="data_format"):
        call(x, dw, pw, data_format="nchw")
    with pytest.raises(ValueError, match="dilation_rate"):
        call(x, dw, pw, strides=2, dilation_rate=2)
    with pytest.raises(ValueError, match=r"\(1, 8, 4\)"):
        call(torch.zeros(1, 8, 4), dw, pw)
    with pytest.raises(ValueError, match=r"\(1, 2, 3\)"):
        call(torch.zeros(1, 2, 3), dw, pw)
    with pytest.raises(ValueError, match="channels \\* depth_multiplier"):
        call(x, dw, torch.zeros(1, 5, 4))
    with pytest.raises(ValueError, match="bias"):
        call(x, dw, pw, torch.zeros(3))
    with pytest.raises(ValueError, match="3D"):
        call(torch.zeros(8, 3), dw, pw)


def test_keras_pointwise_layout():
    """Keras' (1, C*M, F) pointwise kernel: the same output and gradient as its 2-D matrix,
    its gradient through a view (no zero-filled copy per step, as indexing it made), and
    any other 3-D shape refused (indexing took its first slice without a word)."""
    gen = torch.Generator().manual_seed(0)
    x, dw = torch.randn(2, 9, 3, generator=gen), torch.randn(3, 3, 2, generator=gen)
    pw = torch.randn(1, 6, 4, generator=gen, dtype=torch.float32)
    grads = []
    for p in (pw.clone().requires_grad_(), pw[0].clone().requires_grad_()):
        y = functional.separable_conv1d(x, dw, p, padding="same")
        y.backward(torch.ones_like(y))
        grads.append((y.detach(), p.grad.reshape(6, 4)))
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)
    p = pw.clone().requires_grad_()
    node, seen = functional.separable_conv1d(x, dw, p, padding="same").grad_fn, []
    stack = [node]
    while stack:
        node = stack.pop()
        seen.append(type(node).__name__)
        stack += [n for n, _ in node.next_functions if n is not None]
    assert "SelectBackward0" not in seen and "SqueezeBackward1" in seen, seen
    with pytest.raises(ValueError, match="pointwise of shape"):
        functional.separable_conv1d(x, dw, torch.zeros(2, 6, 4), padding="same")
