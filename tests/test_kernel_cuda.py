"""The CUDA composition kernel (``sepconv.kernels.cuda``) against the reference kernel,
forward and every gradient, on the CPU (it is pure torch) and on CUDA when there is one:
the three variants (``nhwc_mm``, ``nhwc``, ``ncl``), the measured choice between them and its
fallbacks, and functional's CUDA rule (compositions or Triton's variant 2)."""

from __future__ import annotations

import itertools

import pytest
import torch

from sepconv import functional, padding as _padding
from sepconv.kernels import cuda, reference

from kernel_env import fake_cuda

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
@pytest.mark.parametrize("variant", ["dispatched", "nhwc_mm", "nhwc", "ncl"])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("geometry", GEOMETRY)
def test_matches_reference(geometry, channels_last, variant, device, monkeypatch):
    if variant in ("nhwc_mm", "nhwc") and not channels_last:  # channels_last compositions
        tensors, kw = _case(*geometry, False, torch.float64, device)
        with pytest.raises(ValueError, match=f"{variant} takes channels_last data"):
            cuda.COMPOSITIONS[variant](*tensors, **kw)
        return
    # IEEE float32: under torch's default cuDNN rounds to TF32 (nhwc's 1x1 conv2d did on
    # the H200: errors of 1e-3, the tolerance here is 1e-5)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    kernel = cuda.COMPOSITIONS.get(variant, cuda.separable_conv1d)  # "dispatched": choice's
    for dtype, tol in [(torch.float64, 1e-12), (torch.float32, 1e-5)]:
        tensors, kw = _case(*geometry, channels_last, dtype, device)
        got = _forward_backward(kernel, tensors, kw)
        want = _forward_backward(reference.separable_conv1d, tensors, kw)
        for name, g, w in zip(["y", "dx", "ddepthwise", "dpointwise", "dbias"], got, want):
            torch.testing.assert_close(g, w, rtol=tol, atol=tol, msg=name)


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_channels_last_input(device):
    """The ``ncl`` variant returns a transposed view; the next layer gets it as input."""
    tensors, kw = _case(4, 1, 1, 2, "causal", 12, True, torch.float64, device)
    x = tensors[0].detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()
    assert not x.is_contiguous()
    for variant in ("nhwc_mm", "ncl"):
        got = _forward_backward(cuda.COMPOSITIONS[variant], [x] + tensors[1:], kw)
        want = _forward_backward(reference.separable_conv1d, [x] + tensors[1:], kw)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


def test_padded_nhwc_input_stays_channels_last():
    """Asymmetric padding is applied to (B, L, C), so cuDNN gets an NHWC tensor (padding
    the 4-D view gave NCHW, which cuDNN transposed on every call)."""
    seen = []
    real = torch.nn.functional.conv2d

    def spy(x, *args, **kwargs):
        seen.append(x.is_contiguous(memory_format=torch.channels_last))
        return real(x, *args, **kwargs)

    tensors, kw = _case(4, 1, 1, 1, "causal", 12, True, torch.float32, "cpu", channels=5)
    x, w, p, b = tensors
    geometry = {k: v for k, v in kw.items() if k != "channels_last"}
    import unittest.mock
    with unittest.mock.patch.object(cuda.F, "conv2d", spy):
        cuda.nhwc_mm(x, w, p, b, **geometry)
    assert seen == [True]


@pytest.mark.parametrize("tf32", [False, True])
def test_choice(tf32, monkeypatch):
    """The H200 rule (kernels/cuda.py): every branch, and what it depends on, with cuDNN's
    TF32 off (Keras' float32) and on (torch's default)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", tf32)

    def pick(dtype=torch.float32, k=3, c=8, m=1, stride=1, dilation=1, grad=False,
             channels_last=True, rows=20, filters=4):
        x = torch.empty(1, rows, c, dtype=dtype, requires_grad=grad)
        w = torch.empty(k, c, m, dtype=dtype)
        return cuda.choice(x, w, torch.empty(c * m, filters, dtype=dtype), None,
                           stride=stride, dilation=dilation, channels_last=channels_last)

    assert pick(channels_last=False) == "ncl"
    assert pick(dilation=2) == pick(m=2) == pick(dtype=torch.bfloat16, m=2) == "ncl"
    assert pick(dtype=torch.bfloat16, k=75, grad=True) == "nhwc_mm"
    assert pick(dtype=torch.float16, k=75) == "nhwc_mm"
    assert pick(dtype=torch.float64, grad=True, c=1024) == "nhwc_mm"  # TF32 is float32's
    assert pick(k=33) == "nhwc_mm" and pick(k=75) == "ncl"  # float32 inference
    assert pick(grad=True) == "ncl"  # float32 training
    wide = "ncl" if tf32 else "nhwc_mm"  # TF32: ncl's cuDNN 1x1 beats the IEEE GEMM
    assert pick(grad=True, c=1024) == pick(grad=True, stride=2) == wide
    with torch.no_grad():  # gradients only count where autograd records them
        assert pick(grad=True) == "nhwc_mm"
    # inference of wide or large layers: the 1x1 conv2d (TF32) where cuDNN may use TF32
    assert pick(c=512) == pick(c=64, rows=1 << 20) == ("nhwc" if tf32 else "nhwc_mm")
    assert pick(c=511) == pick(c=64, rows=(1 << 20) - 1) == "nhwc_mm"
    # ... and of layers whose GEMM is large (channels x filters x rows > 2**30)
    big_gemm = dict(c=256, filters=256, rows=(1 << 14) + 1)
    assert pick(**big_gemm) == ("nhwc" if tf32 else "nhwc_mm")
    assert pick(**{**big_gemm, "rows": 1 << 14}) == "nhwc_mm"


def test_cuda_rule(monkeypatch):
    """functional's CUDA rule: variant 2 exactly in the measured classes, the compositions
    elsewhere (with fake CUDA inputs: the rule reads shapes, dtypes and flags only)."""
    monkeypatch.setattr(functional, "_triton_installed", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))

    def rule(k=3, c=128, f=128, m=1, dilation=1, rows=1000, dtype=torch.float32,
             grad=False, tf32=False, channels_last=True, weights_dtype=None):
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", tf32)
        x = fake_cuda((1, rows, c), dtype, grad)
        w = torch.empty(k, c, m, dtype=weights_dtype or dtype)
        p = torch.empty(c * m, f, dtype=weights_dtype or dtype)
        return functional._cuda_kernel(x, w, p, dilation, channels_last)

    large = 1 << 18  # 128 channels x 2**18 rows = 2**25
    mid = 1 << 15  # 128 channels x 2**15 rows = 2**22
    # inference: the fused forward (<= 128 filters), large layers, k > 40, with TF32 >= 512
    # channels from 2**22, bfloat16 >= 1024 channels
    for dtype, tf32 in [(torch.float32, False), (torch.float32, True), (torch.bfloat16, False)]:
        assert rule(dtype=dtype, tf32=tf32) == rule(f=256, rows=large, dtype=dtype, tf32=tf32) \
            == rule(f=256, k=41, dtype=dtype, tf32=tf32) == "triton_v2"
        for other in (dict(f=129), dict(f=256, rows=large - 1), dict(f=256, k=40)):
            assert rule(**other, dtype=dtype, tf32=tf32) == "cuda", (other, dtype, tf32)
    wide = dict(c=512, f=512, rows=1 << 13, tf32=True)  # 512 x 2**13 = 2**22
    assert rule(**wide) == "triton_v2" and rule(**{**wide, "tf32": False}) == "cuda"
    assert rule(**{**wide, "c": 511, "rows": (1 << 22) // 511 + 1}) == "cuda"
    assert rule(**{**wide, "rows": (1 << 13) - 1}) == "cuda"
    assert rule(c=1024, f=1024, dtype=torch.bfloat16) == "triton_v2"
    assert rule(c=1023, f=1024, dtype=torch.bfloat16) == rule(c=1024, f=1024) == "cuda"
    # IEEE float32 training: every layer; z kept for size > 2**23, the dilated class and
    # k >= 25
    assert rule(grad=True) == rule(c=64, f=256, grad=True) == rule(k=24, grad=True) \
        == rule(rows=1 << 16, grad=True) == "triton_v2"  # 128 x 2**16 = 2**23
    assert rule(k=25, grad=True) == rule(rows=(1 << 16) + 1, grad=True) == "triton_v2_savez"
    # TF32 training: from 2**23 with >= 128 channels, or k > 40 from 2**22
    tf = dict(grad=True, tf32=True)
    assert rule(rows=1 << 16, **tf) == rule(k=40, rows=1 << 16, **tf) == "triton_v2"
    assert rule(rows=(1 << 16) + 1, **tf) == rule(k=41, rows=mid, **tf) == "triton_v2_savez"
    assert rule(rows=(1 << 16) - 1, **tf) == rule(k=41, rows=mid - 1, **tf) \
        == rule(c=127, rows=1 << 17, **tf) == "cuda"
    for dtype, tf32 in [(torch.float32, False), (torch.float32, True), (torch.bfloat16, False)]:
        assert rule(dilation=8, k=4, dtype=dtype, tf32=tf32, grad=True, rows=1 << 16) \
            == "triton_v2_savez"
    # bfloat16 training: dilated, long kernels from 2**22, k <= 4 with <= 128 channels,
    # >= 1024 channels from 2**26, k >= 31 when large
    bf16 = dict(dtype=torch.bfloat16, grad=True)
    assert rule(k=41, rows=mid, **bf16) == rule(k=4, **bf16) == rule(k=31, rows=large, **bf16) \
        == rule(c=1024, rows=1 << 16, **bf16) == "triton_v2_savez"
    for other in (dict(k=41, rows=mid - 1), dict(k=40, rows=mid), dict(k=5), dict(k=4, c=129),
                  dict(k=30, rows=large), dict(c=1023, rows=1 << 16),
                  dict(c=1024, rows=(1 << 16) - 1), dict(dilation=8, k=5)):
        assert rule(**{**bf16, **other}) == "cuda", other
    assert rule(dilation=8, k=4, c=96, f=96, **bf16) == "triton_v2_savez"
    assert rule(dilation=8, k=3, c=129, f=129, **bf16) == "cuda"  # (<= 128 channels)
    # never variant 2: depth multipliers, channels_first, other or mixed dtypes
    for other in (dict(m=2), dict(channels_last=False), dict(dtype=torch.float16),
                  dict(weights_dtype=torch.float64)):
        assert rule(**other) == rule(**other, grad=True) == "cuda", other
    # Triton missing, or bfloat16 before Ampere: the compositions
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert rule(dtype=torch.bfloat16) == "cuda" and rule(dilation=8) == "triton_v2"
    monkeypatch.setattr(functional, "_triton_installed", lambda: False)
    assert rule(dilation=8) == "cuda"
    # CUDA autocast: the compositions, whose convolutions and GEMMs autocast casts
    monkeypatch.setattr(functional, "_triton_installed", lambda: True)
    monkeypatch.setattr(torch, "is_autocast_enabled", lambda device="cuda": device == "cuda")
    assert rule(dilation=8) == rule(dilation=8, grad=True) == "cuda"


def test_cuda_pick_remembers_both_rules(monkeypatch):
    """functional._cuda_pick: the same kernel as asking _cuda_kernel and cuda.choice at
    every call, each rule asked once per call signature, and asked again when anything
    they read changes (shape, dtype, grad mode, TF32, autocast)."""
    monkeypatch.setattr(functional, "_CUDA_PICKS", {})
    monkeypatch.setattr(functional, "_triton_installed", lambda: False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    asked = []
    rule = functional._cuda_kernel
    monkeypatch.setattr(functional, "_cuda_kernel",
                        lambda *a: asked.append(a[0].shape) or rule(*a))
    w, p = torch.randn(75, 64, 1), torch.randn(64, 32)

    def pick(rows=10, grad=False, dtype=torch.float32, stride=1):
        return functional._cuda_pick(fake_cuda((2, rows, 64), dtype, grad), w.to(dtype),
                                     p.to(dtype), stride, 1, True)

    assert pick() is pick() is cuda.ncl  # k75 float32 inference
    assert len(asked) == 1
    assert pick(grad=True) is cuda.ncl and pick(grad=True, stride=2) is cuda.nhwc_mm
    with torch.no_grad():
        assert pick(grad=True) is cuda.ncl
    assert pick(dtype=torch.bfloat16) is cuda.nhwc_mm
    assert len(asked) == 4  # no grad, training, strided training, bfloat16
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    assert pick(grad=True, stride=2) is cuda.ncl  # TF32: ncl's cuDNN 1x1 for training
    monkeypatch.setattr(torch, "is_autocast_enabled", lambda device="cuda": device == "cuda")
    monkeypatch.setattr(torch, "get_autocast_dtype", lambda device: torch.bfloat16)
    assert pick() is cuda.nhwc_mm  # float32 data, bfloat16 convolutions: bf16's choice
    assert len(asked) == 6
    for key in functional._CUDA_PICKS:  # shapes and flags only: no tensor is kept alive
        assert not any(isinstance(part, torch.Tensor) for part in key)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_functional_on_cuda_uses_the_composition(dtype, monkeypatch):
    monkeypatch.delenv("SEPCONV_KERNEL", raising=False)
    x = torch.randn(2, 50, 8, device="cuda", dtype=dtype)
    w = torch.randn(5, 8, 2, device="cuda", dtype=dtype)
    p = torch.randn(16, 4, device="cuda", dtype=dtype)
    assert functional._pick_kernel(x, w, p, 1, 1, 50) in cuda.COMPOSITIONS.values()
    for pad, fmt in itertools.product(["same", "causal"], ["channels_last", "channels_first"]):
        xi = x if fmt == "channels_last" else x.transpose(1, 2)
        got = functional.separable_conv1d(xi, w, p, None, padding=pad, data_format=fmt)
        want = functional.separable_conv1d(xi.double().cpu(), w.double().cpu(),
                                           p.double().cpu(), None, padding=pad,
                                           data_format=fmt)
        tol = 1e-4 if dtype == torch.float32 else 5e-2
        torch.testing.assert_close(got.double().cpu(), want, rtol=tol, atol=tol * 10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("multiplier", [1, 2])  # Triton's variant 2, the compositions
def test_layer_in_a_cuda_graph(multiplier):
    """A CUDA graph captures the layer, forward and backward, and replays it exactly."""
    import sepconv
    layer = sepconv.SeparableConv1D(16, 5, padding="causal", depth_multiplier=multiplier,
                                    input_shape=(64, 8)).cuda()
    x = torch.randn(4, 64, 8, device="cuda", requires_grad=True)
    graphed = torch.cuda.make_graphed_callables(layer, (x,))
    y = graphed(x)
    y.sum().backward()
    want = layer(x)
    torch.testing.assert_close(y, want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_autocast_runs_the_compositions(monkeypatch):
    """Under CUDA autocast a float32 layer of Triton's class (dilated, k <= 4) runs the
    compositions, whose convolutions autocast casts: a bfloat16 result near float64's."""
    monkeypatch.delenv("SEPCONV_KERNEL", raising=False)
    monkeypatch.setattr(functional, "_CUDA_PICKS", {})
    x = torch.randn(4, 300, 32, device="cuda")
    w = torch.randn(3, 32, 1, device="cuda") / 3 ** 0.5
    p = torch.randn(32, 16, device="cuda") / 32 ** 0.5
    with torch.autocast("cuda", dtype=torch.bfloat16):
        kernel = functional._pick_kernel(x, w, p, 1, 8, 300)
        y = functional.separable_conv1d(x, w, p, None, padding="causal", dilation_rate=8)
    assert kernel in cuda.COMPOSITIONS.values() and y.dtype == torch.bfloat16
    want = functional.separable_conv1d(x.double().cpu(), w.double().cpu(), p.double().cpu(),
                                       None, padding="causal", dilation_rate=8)
    torch.testing.assert_close(y.double().cpu(), want, rtol=5e-2, atol=5e-2)
