"""The CUDA composition kernel (``sepconv.kernels.cuda``) against the reference kernel,
forward and every gradient, on the CPU (it is pure torch) and on CUDA when there is one."""

from __future__ import annotations

import itertools

import pytest
import torch

from sepconv import functional, padding as _padding
from sepconv.kernels import cuda, reference

pytestmark = pytest.mark.usefixtures("torch_single_thread")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
GEOMETRY = [  # kernel, stride, dilation, multiplier, padding, steps
    (3, 1, 1, 1, "same", 9), (4, 1, 1, 2, "same", 10), (5, 2, 1, 1, "same", 11),
    (4, 3, 1, 3, "same", 7), (4, 1, 2, 1, "causal", 12), (1, 1, 1, 2, "valid", 5),
    (3, 2, 1, 1, "valid", 9), (2, 1, 3, 1, "causal", 1), (7, 1, 1, 1, "same", 1),
]


def _case(k, s, d, m, pad, steps, channels_last, dtype, device, channels=3, filters=4,
          batch=2):
    gen = torch.Generator().manual_seed(k * 1000 + s * 100 + d * 10 + m)
    shape = (batch, steps, channels) if channels_last else (batch, channels, steps)
    tensors = [torch.randn(shape, generator=gen), torch.randn(k, channels, m, generator=gen),
               torch.randn(channels * m, filters, generator=gen),
               torch.randn(filters, generator=gen)]
    left, right = _padding.padding_amounts(steps, k, s, d, pad)
    kw = dict(stride=s, dilation=d, pad_left=left, pad_right=right,
              channels_last=channels_last)
    return [t.to(device=device, dtype=dtype).requires_grad_() for t in tensors], kw


def _forward_backward(kernel, tensors, kw):
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    y = kernel(*leaves, **kw)
    gen = torch.Generator().manual_seed(1)
    dy = torch.randn(y.shape, generator=gen).to(y)
    y.backward(dy)
    return [y] + [t.grad for t in leaves]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("geometry", GEOMETRY)
def test_matches_reference(geometry, channels_last, device):
    for dtype, tol in [(torch.float64, 1e-12), (torch.float32, 1e-5)]:
        tensors, kw = _case(*geometry, channels_last, dtype, device)
        got = _forward_backward(cuda.separable_conv1d, tensors, kw)
        want = _forward_backward(reference.separable_conv1d, tensors, kw)
        for name, g, w in zip(["y", "dx", "ddepthwise", "dpointwise", "dbias"], got, want):
            torch.testing.assert_close(g, w, rtol=tol, atol=tol, msg=name)


@pytest.mark.parametrize("device", DEVICES)
def test_no_bias_one_channel_and_gradcheck(device):
    tensors, kw = _case(3, 1, 1, 2, "same", 6, True, torch.float64, device, channels=1,
                        filters=2)
    x, w, p, _ = tensors
    torch.autograd.gradcheck(lambda *a: cuda.separable_conv1d(*a, None, **kw), (x, w, p))
    torch.testing.assert_close(cuda.separable_conv1d(x, w, p, None, **kw),
                               reference.separable_conv1d(x, w, p, None, **kw))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_functional_on_cuda_uses_the_composition(dtype, monkeypatch):
    monkeypatch.delenv("SEPCONV_KERNEL", raising=False)
    x = torch.randn(2, 50, 8, device="cuda", dtype=dtype)
    w = torch.randn(5, 8, 2, device="cuda", dtype=dtype)
    p = torch.randn(16, 4, device="cuda", dtype=dtype)
    assert functional._pick_kernel(x, w, p, 1, 1, 50) is cuda.separable_conv1d
    for pad, fmt in itertools.product(["same", "causal"], ["channels_last", "channels_first"]):
        xi = x if fmt == "channels_last" else x.transpose(1, 2)
        got = functional.separable_conv1d(xi, w, p, None, padding=pad, data_format=fmt)
        want = functional.separable_conv1d(xi.double().cpu(), w.double().cpu(),
                                           p.double().cpu(), None, padding=pad,
                                           data_format=fmt)
        tol = 1e-4 if dtype == torch.float32 else 5e-2
        torch.testing.assert_close(got.double().cpu(), want, rtol=tol, atol=tol * 10)
