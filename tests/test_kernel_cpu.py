"""The CPU kernel against the reference kernel (the oracle), forward and backward.

Every comparison runs the reference in float64 on the same values, so the tolerances
measure the fast kernel's rounding only.  Sizes stay small except where the dispatcher's
choice itself is under test (a QuartzNet-sized block, kept affordable).
"""

from __future__ import annotations

import contextlib
import itertools
import random

import pytest
import torch

from sepconv import functional, padding
from sepconv.kernels import _cpu_native, cpu, reference, threads

@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny shapes: one thread keeps these tests fast on a loaded 2-core machine (OpenMP
    threads spinning against other processes cost more than they bring here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 3e-3}


def _case(n, length, c, m, f, k, stride, dilation, pad, channels_last, use_bias, seed=0):
    """Inputs (float64) and the kernel keyword arguments of one separable convolution."""
    g = torch.Generator().manual_seed(seed)
    pad_left, pad_right = padding.padding_amounts(length, k, stride, dilation, pad)
    shape = (n, length, c) if channels_last else (n, c, length)
    tensors = [torch.randn(shape, generator=g, dtype=torch.float64),
               torch.randn(k, c, m, generator=g, dtype=torch.float64),
               torch.randn(c * m, f, generator=g, dtype=torch.float64) / (c * m) ** 0.5,
               torch.randn(f, generator=g, dtype=torch.float64) if use_bias else None]
    kwargs = dict(stride=stride, dilation=dilation, pad_left=pad_left, pad_right=pad_right,
                  channels_last=channels_last)
    return tensors, kwargs


def _run(kernel, tensors, kwargs, dtype, seed=1):
    """Output and gradients (x, depthwise, pointwise, bias) of ``sum(y * w)``, in float64."""
    leaves = [None if t is None else t.detach().to(dtype).clone().requires_grad_()
              for t in tensors]
    y = kernel(*leaves, **kwargs)
    weight = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed),
                         dtype=torch.float64)
    (y.double() * weight).sum().backward()
    return [y.double()] + [None if t is None else t.grad.double() for t in leaves]


def _assert_close(expected, got, tol, what=""):
    for name, e, g in zip(("y", "grad_x", "grad_depthwise", "grad_pointwise", "grad_bias"),
                          expected, got):
        if e is None:
            assert g is None
            continue
        assert g.shape == e.shape, (what, name)
        err = ((g - e).abs().max() / e.abs().max().clamp_min(1e-12)).item()
        assert err <= tol, f"{what} {name}: relative error {err:.3g} > {tol:g}"


def _sampled_cases(count, seed):
    """Seeded sample of the geometry grid, every value of each axis represented."""
    rng = random.Random(seed)
    grid = list(itertools.product(
        [1, 2, 3, 4, 7],            # kernel_size
        [1, 2, 3],                  # strides
        [1, 2, 3],                  # dilation_rate
        padding.PADDINGS,
        [1, 2, 3],                  # depth_multiplier
        [True, False],              # channels_last
        [True, False]))             # use_bias
    grid = [g for g in grid if not (g[1] > 1 and g[2] > 1)]
    return rng.sample(grid, count)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16,
                                   torch.float16])
@pytest.mark.parametrize("case", _sampled_cases(40, seed=3))
def test_matches_reference(case, dtype):
    k, stride, dilation, pad, m, channels_last, use_bias = case
    length = 23
    if padding.conv_output_length(length, k, stride, dilation, pad) <= 0:
        pytest.skip("input too short for this geometry")
    tensors, kwargs = _case(2, length, 5, m, 6, k, stride, dilation, pad, channels_last,
                            use_bias)
    expected = _run(reference.separable_conv1d, tensors, kwargs, torch.float64)
    got = _run(cpu.separable_conv1d, tensors, kwargs, dtype)
    _assert_close(expected, got, TOL[dtype], f"{case} {dtype}")


@pytest.mark.parametrize("case", _sampled_cases(12, seed=5))
def test_fallback_without_native_matches_reference(case, monkeypatch):
    """The path taken where the C routine cannot be built (oneDNN's weight gradient)."""
    monkeypatch.setattr(_cpu_native, "load", lambda: None)
    k, stride, dilation, pad, m, channels_last, use_bias = case
    tensors, kwargs = _case(2, 19, 4, m, 3, k, stride, dilation, pad, channels_last, use_bias)
    expected = _run(reference.separable_conv1d, tensors, kwargs, torch.float64)
    got = _run(cpu.separable_conv1d, tensors, kwargs, torch.float32)
    _assert_close(expected, got, TOL[torch.float32], str(case))


# (n, length, c, m, k, stride, dilation, pad_left) for the C routines' tests
_NATIVE_CASES = [
    (1, 5, 1, 1, 1, 1, 1, 0), (2, 70, 3, 2, 9, 1, 2, 8), (3, 200, 20, 3, 13, 2, 1, 6),
    (2, 300, 16, 1, 33, 1, 1, 16), (1, 40, 9, 1, 4, 3, 1, 3), (2, 150, 8, 2, 87, 1, 1, 86),
    # a full 16-wide chunk and a tail (masked reads), the tail at the tensor's end
    (2, 50, 24, 1, 5, 1, 1, 2), (3, 64, 40, 1, 7, 2, 1, 3), (2, 33, 17, 1, 3, 1, 3, 0),
    (1, 20, 33, 2, 4, 1, 1, 3), (2, 41, 31, 1, 6, 3, 1, 5),
    # tiles (cpu_native.T steps x G chunks of VW channels): several channel groups (a tail
    # group, a tail chunk), steps past a tile, a multiplier across groups
    (2, 150, 300, 1, 5, 1, 1, 2), (1, 70, 130, 3, 4, 2, 1, 1), (3, 129, 272, 1, 3, 1, 4, 8),
    # stride 1, no dilation: the register windows (4 taps / 4 steps), with leftovers
    (2, 131, 20, 2, 9, 1, 1, 4), (1, 259, 48, 1, 11, 1, 1, 10), (2, 7, 16, 1, 6, 1, 1, 0),
    # strided, not dilated: the tile's rows kept phase by phase, each phase's taps in the
    # register windows: fewer taps than the stride (phases with no taps), as many, more
    # (windows with leftovers in each phase), several tiles of steps, tail chunks, a multiplier
    (2, 600, 272, 1, 11, 2, 1, 5), (1, 700, 40, 2, 3, 4, 1, 1), (2, 400, 33, 1, 5, 5, 1, 0),
    (3, 530, 20, 1, 21, 3, 1, 10), (2, 1030, 16, 1, 9, 2, 1, 8), (1, 90, 17, 3, 2, 2, 1, 0),
    (2, 333, 48, 1, 33, 2, 1, 16), (1, 260, 24, 1, 1, 2, 1, 0)]


@pytest.mark.skipif(_cpu_native.load() is None, reason="no C compiler: native routine absent")
@pytest.mark.parametrize("n,length,c,m,k,stride,dilation,pad_left", _NATIVE_CASES)
def test_native_weight_gradient(n, length, c, m, k, stride, dilation, pad_left):
    """The C routine against a float64 sum over shifted slices."""
    span = (k - 1) * dilation + 1
    pad_right = max(span - 1 - pad_left, 0)
    out_len = (length + pad_left + pad_right - span) // stride + 1
    x = torch.randn(n, length, c)
    g = torch.randn(n, out_len, c * m)
    out = torch.empty(k, c * m)
    _cpu_native.dw_grad_weight(x, g, out, n=n, length=length, out_len=out_len, c=c, m=m, k=k,
                               stride=stride, dilation=dilation, pad_left=pad_left, threads=2)
    xp = torch.nn.functional.pad(x.double(), (0, 0, pad_left, pad_right))
    xp = xp.repeat_interleave(m, dim=2)
    expected = torch.stack([
        (xp[:, i * dilation: i * dilation + (out_len - 1) * stride + 1: stride] * g.double())
        .sum((0, 1)) for i in range(k)])
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(_cpu_native.load() is None, reason="no C compiler: native routine absent")
@pytest.mark.parametrize("n,length,c,m,k,stride,dilation,pad_left", _NATIVE_CASES)
def test_native_depthwise_forward(n, length, c, m, k, stride, dilation, pad_left):
    """The C depthwise convolution against torch's, in float64."""
    span = (k - 1) * dilation + 1
    pad_right = max(span - 1 - pad_left, 0)
    out_len = (length + pad_left + pad_right - span) // stride + 1
    x = torch.randn(n, length, c)
    w = torch.randn(k, c, m)
    out = torch.empty(n, out_len, c * m)
    _cpu_native.dw_forward(x, w, out, n=n, length=length, out_len=out_len, c=c, m=m, k=k,
                           stride=stride, dilation=dilation, pad_left=pad_left, threads=2)
    xp = torch.nn.functional.pad(x.double().transpose(1, 2), (pad_left, pad_right))
    expected = torch.nn.functional.conv1d(
        xp, w.double().permute(1, 2, 0).reshape(c * m, 1, k), stride=stride,
        dilation=dilation, groups=c).transpose(1, 2)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(_cpu_native.load() is None, reason="no C compiler: native routine absent")
@pytest.mark.parametrize("n,length,c,m,k,stride,dilation,pad_left", _NATIVE_CASES + [
    # steps past the gradient's rows on either side (valid, causal, a pad wider than a
    # tile), a Mamba-wide layer; strided: phases without taps (k < stride), strided and
    # dilated (phases of taps gcd(stride, dilation) apart), a stride above the kernel
    (2, 300, 20, 1, 9, 1, 1, 0), (1, 700, 24, 2, 4, 1, 1, 3), (2, 260, 40, 1, 31, 1, 6, 180),
    (1, 64, 1536, 1, 4, 1, 1, 3), (2, 100, 18, 1, 7, 2, 3, 9), (2, 101, 17, 2, 5, 4, 2, 8),
    (1, 300, 20, 1, 9, 3, 3, 0), (2, 64, 16, 1, 2, 6, 1, 1)])
def test_native_fused_backward(n, length, c, m, k, stride, dilation, pad_left):
    """Both depthwise gradients in one pass, against float64: the weight gradient (sums
    over shifted strided slices) and the input gradient before the multiplier's sum
    (torch's transposed convolution), on 1-3 threads; every output row is written."""
    span = (k - 1) * dilation
    pad_right = max(span - pad_left, 0)
    total = length + pad_left + pad_right
    out_len = (total - span - 1) // stride + 1
    x = torch.randn(n, length, c)
    gz = torch.randn(n, out_len, c * m)
    w = torch.randn(k, c * m)
    xp = torch.nn.functional.pad(x.double(), (0, 0, pad_left, pad_right))
    xp = xp.repeat_interleave(m, dim=2)
    gw_expected = torch.stack([
        (xp[:, i * dilation: i * dilation + (out_len - 1) * stride + 1: stride]
         * gz.double()).sum((0, 1)) for i in range(k)])
    gx_padded = torch.zeros(n, total, c * m, dtype=torch.float64)
    spread = torch.nn.functional.conv_transpose1d(
        gz.double().transpose(1, 2), w.double().t().unsqueeze(1), stride=stride,
        dilation=dilation, groups=c * m).transpose(1, 2)  # the padded input's first steps
    gx_padded[:, :spread.shape[1]] = spread
    gx_expected = gx_padded[:, pad_left:pad_left + length]
    for count in (1, 2, 3):
        gw = torch.empty(k, c * m)
        gx = torch.full((n, length, c * m), float("nan"))
        _cpu_native.dw_backward(x, gz, w.flip(0).contiguous(), gw, gx, n=n, length=length,
                                out_len=out_len, c=c, m=m, k=k, stride=stride,
                                dilation=dilation, pad_left=pad_left, threads=count)
        torch.testing.assert_close(gw.double(), gw_expected, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(gx.double(), gx_expected, rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(_cpu_native.load() is None, reason="no C compiler: native routine absent")
@pytest.mark.parametrize("out_step,out_off,pad_left", [(1, 0, 2), (2, 1, 0), (3, 2, -2),
                                                        (4, 0, 5)])
def test_native_depthwise_forward_rows(out_step, out_off, pad_left):
    """The C convolution writing every ``out_step``-th row of a bigger output (the strided
    input gradient's phases): those rows hold torch's convolution, the others are left
    alone.  A negative ``pad_left`` starts inside the input."""
    n, length, c, m, k, dilation = 2, 150, 37, 2, 5, 2
    span = (k - 1) * dilation + 1
    out_len = length + pad_left - span + 1 + 3  # three steps into the right padding
    rows = (out_len - 1) * out_step + out_off + 2
    x = torch.randn(n, length, c)
    w = torch.randn(k, c, m)
    out = torch.full((n, rows, c * m), 7.0)
    _cpu_native.dw_forward_rows(x, w, out, n=n, length=length, out_len=out_len, c=c, m=m,
                                k=k, stride=1, dilation=dilation, pad_left=pad_left,
                                threads=2, out_step=out_step, out_off=out_off)
    xp = torch.nn.functional.pad(x.double().transpose(1, 2), (max(pad_left, 0), 3 + span))
    xp = xp[:, :, max(-pad_left, 0):]
    expected = torch.nn.functional.conv1d(
        xp, w.double().permute(1, 2, 0).reshape(c * m, 1, k), dilation=dilation,
        groups=c).transpose(1, 2)[:, :out_len]
    written = torch.zeros(rows, dtype=torch.bool)
    written[out_off:out_off + (out_len - 1) * out_step + 1:out_step] = True
    torch.testing.assert_close(out[:, written].double(), expected, rtol=1e-5, atol=1e-4)
    assert (out[:, ~written] == 7.0).all()
    with pytest.raises(ValueError, match="run past"):
        _cpu_native.dw_forward_rows(x, w, out[:, :rows - 3], n=n, length=length,
                                    out_len=out_len, c=c, m=m, k=k, stride=1,
                                    dilation=dilation, pad_left=pad_left, threads=1,
                                    out_step=out_step, out_off=out_off)


@pytest.mark.skipif(_cpu_native.load() is None, reason="no C compiler: native routine absent")
@pytest.mark.parametrize("threads", [1, 2])
def test_strided_gradients_in_one_pass(threads, monkeypatch):
    """Strides 2-4 with dilations 1-3 (the kernel takes both; Keras' layers do not),
    multipliers 1-2, odd and even lengths, every padding, both layouts: every gradient
    against the reference, and the fused backward (both depthwise gradients, the input's
    by phases, in one C pass) taken each time."""
    calls = []
    fused = _cpu_native.dw_backward
    monkeypatch.setattr(_cpu_native, "dw_backward",
                        lambda *a, **kw: calls.append(1) or fused(*a, **kw))
    torch.set_num_threads(threads)
    ran = 0
    try:
        for stride, dilation, m, length, pad, channels_last, k in itertools.product(
                [2, 3, 4], [1, 2, 3], [1, 2], [17, 24], padding.PADDINGS, [True, False],
                [1, 4, 5]):
            if padding.conv_output_length(length, k, stride, dilation, pad) <= 0:
                continue
            case = (stride, dilation, m, length, pad, channels_last, k)
            tensors, kwargs = _case(2, length, 5 if m == 1 else 9, m, 3, k, stride,
                                    dilation, pad, channels_last, True, seed=ran)
            expected = _run(reference.separable_conv1d, tensors, kwargs, torch.float64)
            got = _run(cpu.separable_conv1d, tensors, kwargs, torch.float32)
            _assert_close(expected, got, TOL[torch.float32], str(case))
            ran += 1
    finally:
        torch.set_num_threads(1)
    assert ran > 300 and len(calls) == ran


@pytest.mark.skipif(_cpu_native.load() is None, reason="no C compiler: native routine absent")
def test_strided_input_gradient_alone_runs_by_phase(monkeypatch):
    """A frozen depthwise kernel: the input gradient alone, one stride-1 pass per phase of
    the stride (no zero-spread copy), against the reference."""
    calls = []
    polyphase = cpu._native_input_grad_strided
    monkeypatch.setattr(cpu, "_native_input_grad_strided",
                        lambda *a, **kw: calls.append(1) or polyphase(*a, **kw))
    ran = 0
    for stride, dilation, m, pad, k in itertools.product(
            [2, 3], [1, 2], [1, 2], padding.PADDINGS, [1, 4, 5]):
        tensors, kwargs = _case(2, 23, 5, m, 3, k, stride, dilation, pad, True, True, seed=ran)
        grads = []
        for kernel, dtype in ((reference.separable_conv1d, torch.float64),
                              (cpu.separable_conv1d, torch.float32)):
            x, dw, pw, b = [t.detach().to(dtype).clone() for t in tensors]
            x.requires_grad_()
            kernel(x, dw, pw, b, **kwargs).square().sum().backward()
            grads.append(x.grad.double())
        torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-4)
        ran += 1
    assert len(calls) == ran


@pytest.mark.skipif(_cpu_native.load() is None, reason="no C compiler: native routine absent")
@pytest.mark.parametrize("stride,dilation,k,pad_left,length", [
    (2, 1, 11, 5, 800), (3, 2, 7, 6, 301), (4, 3, 9, 0, 97), (2, 2, 6, 10, 64)])
def test_polyphase_sums_equal_the_zero_spread_ones(stride, dilation, k, pad_left, length):
    """The same sums in the same order as the convolution of grad_z spread out with zero
    steps (the earlier route): bit for bit, the skipped taps only ever added zeros."""
    n, cm = 2, 40
    span = (k - 1) * dilation
    steps = (length + pad_left - 1) // stride + 1
    gz = torch.randn(n, steps, cm)
    wf = torch.randn(k, cm)
    spread = gz.new_zeros(n, (steps - 1) * stride + 1, cm)
    spread[:, ::stride] = gz
    torch.set_num_threads(2)
    try:
        old = cpu._native_depthwise(spread, wf, length, 1, 1, dilation, span - pad_left)
        new = cpu._native_input_grad_strided(gz, wf, length, stride, dilation,
                                             span - pad_left)
    finally:
        torch.set_num_threads(1)
    assert torch.equal(old, new)


@pytest.mark.skipif(_cpu_native.load() is None, reason="no C compiler: native routine absent")
@pytest.mark.parametrize("threads", [1, 3, 7, 200])
def test_native_routines_on_any_thread_count(threads):
    """Tiles shared out over 1, 3, 7 threads and more threads than tiles: the forward is
    the one-thread result bit for bit, the weight gradient (per-thread partial sums) the
    reference's."""
    n, length, c, m, k, stride, dilation, pad_left = 3, 200, 290, 1, 7, 1, 2, 6
    out_len = length
    g = torch.Generator().manual_seed(threads)
    x, w = torch.randn(n, length, c, generator=g), torch.randn(k, c * m, generator=g)
    gz = torch.randn(n, out_len, c * m, generator=g)
    outs = []
    for t in (1, threads):
        z, gw = torch.empty(n, out_len, c * m), torch.empty(k, c * m)
        kw = dict(n=n, length=length, out_len=out_len, c=c, m=m, k=k, stride=stride,
                  dilation=dilation, pad_left=pad_left, threads=t)
        _cpu_native.dw_forward(x, w, z, **kw)
        _cpu_native.dw_grad_weight(x, gz, gw, **kw)
        outs.append((z, gw))
    assert torch.equal(outs[0][0], outs[1][0])
    xp = torch.nn.functional.pad(x.double(), (0, 0, pad_left, 6))
    expected = torch.stack([(xp[:, i * dilation: i * dilation + out_len] * gz.double())
                            .sum((0, 1)) for i in range(k)])
    torch.testing.assert_close(outs[1][1].double(), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("needs", [(True, False, False, False), (False, True, False, False),
                                   (False, False, True, True), (True, True, False, False)])
def test_partial_gradients(needs):
    """Frozen weights or a frozen input: the other gradients are unchanged."""
    tensors, kwargs = _case(2, 30, 6, 2, 4, 5, 1, 1, "same", True, True)
    full = _run(reference.separable_conv1d, tensors, kwargs, torch.float64)
    leaves = [t.detach().float().requires_grad_(need) for t, need in zip(tensors, needs)]
    y = cpu.separable_conv1d(*leaves, **kwargs)
    weight = torch.randn(y.shape, generator=torch.Generator().manual_seed(1),
                         dtype=torch.float64)
    (y.double() * weight).sum().backward()
    for leaf, need, expected in zip(leaves, needs, full[1:]):
        if need:
            torch.testing.assert_close(leaf.grad.double(), expected, rtol=1e-5, atol=1e-5)
        else:
            assert leaf.grad is None


def test_non_contiguous_input():
    tensors, kwargs = _case(3, 40, 8, 1, 8, 3, 1, 1, "causal", True, True)
    expected = reference.separable_conv1d(*tensors, **kwargs)
    x = tensors[0].transpose(1, 2).contiguous().transpose(1, 2)  # channels_last values, NCL memory
    got = cpu.separable_conv1d(x, *tensors[1:], **kwargs)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    got = cpu.separable_conv1d(tensors[0][:, ::2], *tensors[1:], **kwargs)
    expected = reference.separable_conv1d(tensors[0][:, ::2], *tensors[1:], **kwargs)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", [
    (3, 1, 1, "same", 1, True, True), (4, 2, 1, "causal", 2, False, True),
    (3, 1, 2, "valid", 2, True, False), (2, 3, 1, "same", 1, False, False),
    (5, 1, 3, "causal", 1, True, True)])
def test_gradcheck_float64(case):
    """Finite differences against the hand-written backward (float64 takes the same code)."""
    k, stride, dilation, pad, m, channels_last, use_bias = case
    tensors, kwargs = _case(2, 11, 3, m, 2, k, stride, dilation, pad, channels_last, use_bias)
    leaves = tuple(t.requires_grad_() for t in tensors if t is not None)

    def fn(*args):
        args = list(args) + ([] if use_bias else [None])
        return cpu.separable_conv1d(*args, **kwargs)

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-7, rtol=1e-6)


def _functional(x, depthwise, pointwise, bias, pad, channels_last):
    return functional.separable_conv1d(
        x, depthwise, pointwise, bias, padding=pad,
        data_format="channels_last" if channels_last else "channels_first")


@pytest.mark.parametrize("forced", ["", "cpu"])
@pytest.mark.parametrize("pad,channels_last", [("same", True), ("causal", False),
                                               ("valid", True)])
def test_functional_matches_reference(forced, pad, channels_last, monkeypatch):
    """Through the public function: the dispatcher's choice and the forced CPU kernel."""
    monkeypatch.setenv("SEPCONV_KERNEL", forced)
    tensors, kwargs = _case(2, 25, 4, 1, 5, 4, 1, 1, pad, channels_last, True)
    expected = _run(reference.separable_conv1d, tensors, kwargs, torch.float64)
    got = _run(lambda *a, **_: _functional(*a, pad, channels_last), tensors, kwargs,
               torch.float32)
    _assert_close(expected, got, TOL[torch.float32], f"{forced} {pad}")


def test_forced_kernel_reads_the_environment_at_each_call(monkeypatch):
    """SEPCONV_KERNEL (read from os.environ's own dict, without get's KeyError): set,
    changed, unset, spaced or capitalised, and an unknown name an error naming it."""
    monkeypatch.delenv("SEPCONV_KERNEL", raising=False)
    assert functional._forced_kernel() == ""
    monkeypatch.setenv("SEPCONV_KERNEL", " Reference ")
    assert functional._forced_kernel() == "reference"
    x, w, p = torch.zeros(1, 9, 2), torch.zeros(3, 2, 1), torch.zeros(2, 3)
    assert functional._pick_kernel(x, w, p, 1, 1, 9) is reference.separable_conv1d
    monkeypatch.setenv("SEPCONV_KERNEL", "cpu")
    assert functional._pick_kernel(x, w, p, 1, 1, 9) is cpu.separable_conv1d
    monkeypatch.setenv("SEPCONV_KERNEL", "fast")
    with pytest.raises(ValueError, match="SEPCONV_KERNEL.*'fast'"):
        functional._pick_kernel(x, w, p, 1, 1, 9)
    monkeypatch.delenv("SEPCONV_KERNEL")
    assert functional._forced_kernel() == ""


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_dispatcher_picks_cpu_kernel(dtype, monkeypatch):
    monkeypatch.delenv("SEPCONV_KERNEL", raising=False)
    x = torch.zeros(2, 100, 64, dtype=dtype)
    dw = torch.zeros(13, 64, 1, dtype=dtype)
    pw = torch.zeros(64, 64, dtype=dtype)
    assert functional._pick_kernel(x, dw, pw, 1, 1, 100) is cpu.separable_conv1d


@pytest.mark.parametrize("dtype,channels_last", [(torch.float32, True),
                                                 (torch.float32, False),
                                                 (torch.bfloat16, True)])
def test_quartznet_block_through_dispatcher(dtype, channels_last, monkeypatch):
    """A QuartzNet block (256 channels, kernel 33, 'same'), where the dispatcher picks cpu."""
    monkeypatch.delenv("SEPCONV_KERNEL", raising=False)
    tensors, kwargs = _case(2, 120, 256, 1, 256, 33, 1, 1, "same", channels_last, True)
    assert functional._pick_kernel(tensors[0].to(dtype), tensors[1].to(dtype),
                                   tensors[2].to(dtype), 1, 1, 120) is cpu.separable_conv1d
    expected = _run(reference.separable_conv1d, tensors, kwargs, torch.float64)
    got = _run(lambda *a, **_: _functional(*a, "same", channels_last), tensors, kwargs, dtype)
    _assert_close(expected, got, TOL[dtype], str(dtype))


@pytest.mark.parametrize("case", [(5, 1, 2, "same", 2, True, True),
                                  (4, 2, 1, "causal", 1, False, True),
                                  (3, 1, 1, "valid", 1, True, False)])
def test_native_bfloat16_path(case, monkeypatch):
    """The path a CPU with native bf16 (AVX512-BF16 / AMX) takes, forced on this one."""
    monkeypatch.setitem(cpu._NATIVE, torch.bfloat16, True)
    assert cpu.compute_dtype(torch.bfloat16) == torch.bfloat16
    k, stride, dilation, pad, m, channels_last, use_bias = case
    tensors, kwargs = _case(2, 30, 6, m, 4, k, stride, dilation, pad, channels_last, use_bias)
    expected = _run(reference.separable_conv1d, tensors, kwargs, torch.float64)
    got = _run(cpu.separable_conv1d, tensors, kwargs, torch.bfloat16)
    _assert_close(expected, got, TOL[torch.bfloat16], str(case))


def test_eager_training_call_skips_the_op_and_vmap_goes_through_it(monkeypatch):
    """Eager training calls run the autograd Function straight (no custom-op dispatch, no
    ``Function.apply`` argument binding: ~65 us a call); under vmap the Function's
    forward meets batched tensors and runs the op (its vmap rule).  All give the
    reference's numbers, torch.func.grad too."""
    calls = []
    op = cpu._separable_conv1d_op
    monkeypatch.setattr(cpu, "_separable_conv1d_op", lambda *a: calls.append(1) or op(*a))
    tensors, kwargs = _case(2, 17, 3, 2, 4, 5, 1, 1, "same", True, True)
    expected = _run(reference.separable_conv1d, tensors, kwargs, torch.float64)
    got = _run(cpu.separable_conv1d, tensors, kwargs, torch.float64)
    assert calls == []
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)

    x, dw, pw, b = tensors

    def loss(x, dw, pw, b, kernel):
        return (kernel(x, dw, pw, b, **kwargs) ** 2).sum()

    grads = torch.func.grad(loss, argnums=(0, 1, 2, 3))(x, dw, pw, b, cpu.separable_conv1d)
    want = torch.func.grad(loss, argnums=(0, 1, 2, 3))(x, dw, pw, b,
                                                        reference.separable_conv1d)
    for g, e in zip(grads, want):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)
    # a batch of inputs under vmap, weights to train (the backward op's vmap rule)
    xs = torch.stack([x, x.flip(1)]).requires_grad_()
    dw = dw.clone().requires_grad_()
    ys = torch.func.vmap(lambda xi: cpu.separable_conv1d(xi, dw, pw, b, **kwargs))(xs)
    assert calls  # the op, under the transform
    for xi, yi in zip(xs, ys):
        torch.testing.assert_close(
            yi, reference.separable_conv1d(xi, dw, pw, b, **kwargs), rtol=1e-10, atol=1e-10)
    ys.sum().backward()
    dw_ref = dw.detach().clone().requires_grad_()
    xs_ref = xs.detach().clone().requires_grad_()
    sum(reference.separable_conv1d(xi, dw_ref, pw, b, **kwargs).sum()
        for xi in xs_ref).backward()
    torch.testing.assert_close(dw.grad, dw_ref.grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(xs.grad, xs_ref.grad, rtol=1e-10, atol=1e-10)


def test_second_backward_with_retained_graph():
    """The intermediate is dropped after the first backward; a second one recomputes it."""
    tensors, kwargs = _case(2, 30, 6, 2, 4, 5, 1, 2, "causal", False, True)
    leaves = [t.detach().float().requires_grad_() for t in tensors]
    y = cpu.separable_conv1d(*leaves, **kwargs)
    weight = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    y.backward(weight, retain_graph=True)
    first = [t.grad.clone() for t in leaves]
    for t in leaves:
        t.grad = None
    y.backward(weight)
    for a, b in zip(first, leaves):
        torch.testing.assert_close(b.grad, a)


@pytest.mark.parametrize("channels_last,pad,m", [(True, "same", 2), (False, "causal", 1)])
def test_empty_batch(channels_last, pad, m):
    """A batch of zero items: empty output, zero weight gradients, as the reference."""
    tensors, kwargs = _case(2, 12, 3, m, 4, 3, 1, 1, pad, channels_last, True)
    tensors[0] = tensors[0][:0]
    expected = _run(reference.separable_conv1d, tensors, kwargs, torch.float64)
    got = _run(cpu.separable_conv1d, tensors, kwargs, torch.float32)
    for e, g in zip(expected, got):
        assert e.shape == g.shape
        torch.testing.assert_close(g, e, check_dtype=False)


@pytest.mark.parametrize("pad,stride,dilation,channels_last", [
    ("causal", 1, 2, True), ("same", 2, 1, False), ("valid", 1, 1, True)])
def test_double_backward_matches_reference(pad, stride, dilation, channels_last):
    """create_graph=True (gradient penalties): first-order gradients stay differentiable
    and give the reference's second-order gradients, also through torch.autograd.gradgradcheck."""
    tensors, kw = _case(2, 9, 3, 2, 4, 3, stride, dilation, pad, channels_last, True)
    results = []
    for kernel in (cpu.separable_conv1d, reference.separable_conv1d):
        leaves = [t.detach().float().clone().requires_grad_() for t in tensors]
        y = kernel(*leaves, **kw)
        gx, gdw = torch.autograd.grad((y * y).sum(), leaves[:2], create_graph=True)
        (gx.square().sum() + gdw.square().sum()).backward()
        results.append([gx, gdw] + [t.grad for t in leaves])
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    assert torch.autograd.gradgradcheck(lambda *a: cpu.separable_conv1d(*a, **kw), leaves)


# -- the native routine's build: vector width, OpenMP runtime, dispatcher-sized shapes ------

def _cpu_has(flag):
    with open("/proc/cpuinfo") as f:
        return any(line.startswith("flags") and flag in line.split() for line in f)


@pytest.mark.skipif(_cpu_native.load() is None, reason="no C compiler: native routine absent")
def test_native_vector_width_follows_the_machine():
    """-march=native: 16 floats per vector where the CPU has AVX-512, 8 otherwise."""
    expected = 16 if _cpu_has("avx512f") else 8
    assert _cpu_native.load().sepconv_vector_width() == expected


@pytest.mark.skipif(_cpu_native.load() is None or _cpu_native._openmp is None,
                    reason="native routine not built on an OpenMP runtime")
def test_native_runs_on_torchs_openmp_pool():
    """The C routine runs on torch's OpenMP runtime (the libgomp in torch's folder; other
    packages may map their own) and adds no threads of its own: the task count never
    exceeds what torch's pool already made."""
    import os
    import threading

    mapped = {line.split()[-1] for line in open("/proc/self/maps") if "libgomp" in line}
    assert _cpu_native._openmp in mapped
    assert os.path.dirname(_cpu_native._openmp) == os.path.join(os.path.dirname(torch.__file__),
                                                                "lib")
    torch.set_num_threads(2)
    try:
        torch.mm(torch.randn(256, 256), torch.randn(256, 256))  # torch's pool is up
        baseline = len(os.listdir("/proc/self/task")) + 1  # + the watcher below
        x, w = torch.randn(8, 4000, 64), torch.randn(9, 64)
        z = torch.empty(8, 4000, 64)
        peak, done = [0], threading.Event()

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], len(os.listdir("/proc/self/task")))

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            for _ in range(20):
                _cpu_native.dw_forward(x, w, z, n=8, length=4000, out_len=4000, c=64, m=1,
                                       k=9, stride=1, dilation=1, pad_left=4, threads=2)
        finally:
            done.set()
            watcher.join()
        assert 0 < peak[0] <= baseline
    finally:
        torch.set_num_threads(1)


@pytest.mark.skipif(_cpu_native.load() is None, reason="no C compiler: native routine absent")
def test_pthreads_build_matches_openmp_build(tmp_path):
    """The fallback build (pthreads, used where torch's libgomp is not found) computes the
    same numbers as the loaded one."""
    other = _cpu_native._open(str(tmp_path / "pthreads.so"), None)
    x, w, g = torch.randn(3, 70, 24), torch.randn(5, 24), torch.randn(3, 70, 24)
    outs = []
    for lib in (_cpu_native.load(), other):
        z, gw = torch.empty(3, 70, 24), torch.empty(5, 24)
        lib.sepconv_dw_forward(x.data_ptr(), w.data_ptr(), z.data_ptr(), 3, 70, 70, 24, 1, 5,
                               1, 1, 2, 2)
        lib.sepconv_dw_grad_weight(x.data_ptr(), g.data_ptr(), gw.data_ptr(), 3, 70, 70, 24,
                                   1, 5, 1, 1, 2, 2)
        outs.append((z, gw))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=0, atol=0)
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("c,m,k,stride,dilation,pad,channels_last", [
    (64, 1, 13, 1, 1, "same", True), (24, 1, 9, 1, 1, "same", False),
    (17, 2, 4, 1, 1, "causal", True), (33, 1, 7, 2, 1, "valid", True),
    (40, 3, 5, 1, 2, "same", False), (31, 1, 4, 1, 3, "causal", False),
    (48, 1, 3, 3, 1, "same", True)])
def test_two_threads_matches_reference(c, m, k, stride, dilation, pad, channels_last):
    """Dispatcher-sized float32 shapes on two threads (the pool the C routine shares),
    channel counts around the vector width, forward and every gradient."""
    tensors, kwargs = _case(4, 96, c, m, 32, k, stride, dilation, pad, channels_last, True)
    expected = _run(reference.separable_conv1d, tensors, kwargs, torch.float64)
    torch.set_num_threads(2)
    try:
        got = _run(lambda *a, **kw: functional.separable_conv1d(
            *a, strides=stride, padding=pad, dilation_rate=dilation,
            data_format="channels_last" if channels_last else "channels_first"),
            tensors, {}, torch.float32)
    finally:
        torch.set_num_threads(1)
    _assert_close(expected, got, TOL[torch.float32], f"c={c} m={m}")


# -- the pointwise GEMMs on oneDNN (cpu._matmul) -----------------------------------------

_onednn = pytest.mark.skipif(cpu._onednn_linear() is None,
                             reason="torch without oneDNN's inner product")


@_onednn
@pytest.mark.parametrize("rows,inner,cols,b_layout,bias", [
    (1, 1, 1, "plain", True), (7, 5, 3, "transposed", False), (300, 37, 19, "plain", True),
    (2048, 64, 32, "transposed", False), (4096, 48, 16, "plain", True)])
def test_matmul_matches_float64(rows, inner, cols, b_layout, bias, monkeypatch):
    """Both routes of cpu._matmul (oneDNN forced on from one element, and torch.mm/addmm
    below a threshold it never reaches) give the float64 product, for a weight read in
    place or transposed (the forward and the input-gradient products)."""
    g = torch.Generator().manual_seed(rows)
    a = torch.randn(rows, inner, generator=g)
    b = torch.randn(inner, cols, generator=g) if b_layout == "plain" \
        else torch.randn(cols, inner, generator=g).t()
    bvec = torch.randn(cols, generator=g) if bias else None
    want = a.double() @ b.double() + (0 if bvec is None else bvec.double())
    for start in (0, 10**12):
        monkeypatch.setattr(cpu, "ONEDNN_GEMM_FROM", start)
        got = cpu._matmul(a, b, bvec)
        assert got.shape == (rows, cols) and got.is_contiguous()
        err = ((got.double() - want).abs().max() / want.abs().max()).item()
        assert err <= 1e-5, (start, err)


@_onednn
@pytest.mark.parametrize("case", _sampled_cases(16, seed=11))
def test_onednn_gemm_route_matches_reference(case, monkeypatch):
    """Every float32 product on oneDNN (thresholds forced): forward and gradients."""
    monkeypatch.setattr(cpu, "ONEDNN_GEMM_FROM", 0)
    monkeypatch.setattr(cpu, "WEIGHT_GRAD_ONEDNN_ROWS", 0)
    monkeypatch.setattr(cpu, "WEIGHT_GRAD_ONEDNN_MAX", 10**12)
    k, stride, dilation, pad, m, channels_last, use_bias = case
    length = 23
    if padding.conv_output_length(length, k, stride, dilation, pad) <= 0:
        pytest.skip("input too short for this geometry")
    tensors, kwargs = _case(2, length, 5, m, 6, k, stride, dilation, pad, channels_last,
                            use_bias)
    expected = _run(reference.separable_conv1d, tensors, kwargs, torch.float64)
    got = _run(cpu.separable_conv1d, tensors, kwargs, torch.float32)
    _assert_close(expected, got, TOL[torch.float32], str(case))


@pytest.mark.parametrize("rows,cm,f", [(1, 1, 1), (37, 5, 3), (4096, 64, 48), (5000, 300, 7),
                                       (4099, 16, 16)])
def test_weight_grad_matches_float64(rows, cm, f, monkeypatch):
    """cpu._weight_grad on both routes (oneDNN's 1x1 backward-weights forced on, and
    torch.mm): z2.t() @ g2, contiguous; rows split into a batch of 16-63 where they
    divide (4096, 5000), else one (37, 4099 prime)."""
    g = torch.Generator().manual_seed(rows)
    z2, g2 = torch.randn(rows, cm, generator=g), torch.randn(rows, f, generator=g)
    want = z2.double().t() @ g2.double()
    for lo, hi in ((0, 10**12), (10**12, 0)):
        monkeypatch.setattr(cpu, "WEIGHT_GRAD_ONEDNN_ROWS", lo)
        monkeypatch.setattr(cpu, "WEIGHT_GRAD_ONEDNN_MAX", hi)
        got = cpu._weight_grad(z2, g2)
        assert got.shape == (cm, f) and got.is_contiguous()
        err = ((got.double() - want).abs().max() / want.abs().max()).item()
        assert err <= 1e-5, (lo, err)


def test_weight_grad_of_a_non_contiguous_operand(monkeypatch):
    """A strided z2 (no channels_last view of it exists) takes torch.mm."""
    monkeypatch.setattr(cpu, "WEIGHT_GRAD_ONEDNN_ROWS", 0)
    z2, g2 = torch.randn(64, 40)[:, :32], torch.randn(64, 16)
    torch.testing.assert_close(cpu._weight_grad(z2, g2), z2.t() @ g2, rtol=1e-5, atol=1e-5)


def test_weight_grad_avoids_torchs_slow_single_thread_path():
    """On one thread torch sends a 1x1 convolution of batch < 16 to its slow THNN kernel;
    the weight gradient's views have a batch of 16 or more and stay on oneDNN."""
    from torch.profiler import ProfilerActivity, profile
    z2, g2 = torch.randn(4096, 64), torch.randn(4096, 32)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        got = cpu._weight_grad(z2, g2)
    names = {e.key for e in prof.key_averages()}
    assert "aten::convolution_backward" in names
    assert not any("slow_conv" in name or "thnn" in name for name in names), names
    torch.testing.assert_close(got, z2.t() @ g2, rtol=1e-4, atol=1e-3)


@_onednn
@pytest.mark.parametrize("threads", [1, 2])
def test_onednn_gemm_route_at_its_natural_size(threads, monkeypatch):
    """A block above the oneDNN thresholds (8 x 512 steps x 64 -> 64: 2^18 outputs, 4096
    rows into a 64 x 64 weight) through the dispatcher: the products do go to oneDNN
    (counted), and match the reference."""
    monkeypatch.delenv("SEPCONV_KERNEL", raising=False)
    calls = []
    op = cpu._onednn_linear()
    monkeypatch.setattr(cpu, "_ONEDNN_LINEAR", [lambda *a: calls.append(a[0].shape) or op(*a)])
    backward_weights = []
    conv_backward = cpu._conv_backward

    def spy(*args):
        backward_weights.append(args[-1])
        return conv_backward(*args)
    monkeypatch.setattr(cpu, "_conv_backward", spy)
    tensors, kwargs = _case(8, 512, 64, 1, 64, 9, 1, 1, "same", True, True)
    assert 8 * 512 * 64 >= cpu.ONEDNN_GEMM_FROM and 8 * 512 >= cpu.WEIGHT_GRAD_ONEDNN_ROWS
    assert 64 * 64 <= cpu.WEIGHT_GRAD_ONEDNN_MAX
    expected = _run(reference.separable_conv1d, tensors, kwargs, torch.float64)
    torch.set_num_threads(threads)
    try:
        got = _run(lambda *a, **_: _functional(*a, "same", True), tensors, kwargs,
                   torch.float32)
    finally:
        torch.set_num_threads(1)
    _assert_close(expected, got, TOL[torch.float32], f"threads={threads}")
    assert calls == [(8 * 512, 64), (8 * 512, 64)]  # the forward and the input gradient
    assert backward_weights == [(False, True, False)]  # the pointwise weight's gradient
    calls.clear()
    backward_weights.clear()
    with torch.backends.mkldnn.flags(enabled=False):  # the user's switch is obeyed
        got = _run(lambda *a, **_: _functional(*a, "same", True), tensors, kwargs,
                   torch.float32)
    _assert_close(expected, got, TOL[torch.float32], "oneDNN off")
    assert calls == [] and backward_weights == []


class _FakeClock:
    """A clock that a fake call advances by a cost depending on torch's thread count."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@contextlib.contextmanager
def _two_threads():
    """A fresh policy on a fake clock, with torch on two threads for the block (one after)."""
    clock = _FakeClock()
    torch.set_num_threads(2)
    try:
        yield cpu._ThreadPolicy(clock=clock, min_work=0, cpu_clock=None), clock
    finally:
        torch.set_num_threads(1)


def _policy_calls(policy, clock, cost_of_threads, calls, work=1000):
    """Runs ``calls`` fake kernel calls; returns the thread count each one ran on."""
    seen = []

    def call():
        threads = torch.get_num_threads()
        seen.append(threads)
        clock.now += cost_of_threads(threads)
        return threads

    for _ in range(calls):
        assert policy.run("forward", work, call) == seen[-1]
    return seen


@pytest.mark.parametrize("busy", [False, True])
def test_thread_policy_learns_the_cheaper_count(busy):
    """Idle cores (two threads cheaper): stays on two, re-trying one now and then; busy
    cores (one thread cheaper): moves to one, re-trying two less and less often.  The
    user's thread count is restored after every call."""
    with _two_threads() as (policy, clock):
        seen = _policy_calls(policy, clock, lambda t: (5.0 if t == 1 else 3.0) if not busy
                             else (5.0 if t == 1 else 40.0), 300)
        assert torch.get_num_threads() == 2
    # an untimed warm-up, two samples of two threads, then one thread's probe
    assert seen[:4] == [2, 2, 2, 1]
    cheap, other = (2, 1) if not busy else (1, 2)
    retries = [i for i, t in enumerate(seen[4:], start=4) if t == other]
    assert seen.count(cheap) > 0.9 * len(seen)
    if busy:  # losing re-tries are spaced out: 8, 16, 32, ... calls apart, at most 256
        gaps = [b - a for a, b in zip(retries, retries[1:])]
        assert gaps == sorted(gaps) and gaps[-1] > 8 and len(retries) <= 6
    else:  # re-tries keep losing here too, but the cheap count stays the one picked
        assert 1 <= len(retries) <= 6


def test_thread_policy_ignores_the_cold_first_call():
    """The first call of a size class (fresh memory, oneDNN's kernel creation) runs 2-4x
    slower than the next; timed, it made two threads look dearer than one for hundreds of
    calls.  It is not timed: two threads (cheaper once warm) win from the probes on."""
    costs = iter([30.0])
    with _two_threads() as (policy, clock):
        seen = _policy_calls(policy, clock,
                             lambda t: next(costs, 3.0) if t == 2 else 5.0, 40)
    assert seen[:4] == [2, 2, 2, 1]
    assert seen[4:].count(2) >= 0.8 * len(seen[4:])  # one thread only in spaced re-tries


def test_thread_policy_one_slow_sample_does_not_move_an_idle_machine_to_one_thread():
    """The first timed call of a new size can be slow (fresh memory): with two samples of
    torch's count before the one-thread probe, one slow sample no longer hands the probe
    the win on an idle machine."""
    costs = iter([30.0])  # the first timed two-thread call: cold
    with _two_threads() as (policy, clock):
        seen = _policy_calls(policy, clock,
                             lambda t: next(costs, 3.0) if t == 2 else 5.0, 40, work=7)
    assert seen[:4] == [2, 2, 2, 1] and seen[4:7] == [2, 2, 2]
    assert seen[4:].count(1) <= 3  # re-tries only, spaced out


def test_thread_policy_warms_up_each_shape_of_a_size_class():
    """Each new shape's first call (cold: 100 here) is left untimed, up to WARM_UP_SHAPES
    shapes per size class; past that (variable lengths) every call is timed."""
    key = ("forward", (1000).bit_length() // 2, 2)
    with _two_threads() as (policy, clock):
        def calls(shape, count, first_cost):
            costs = iter([first_cost])

            def call():
                clock.now += next(costs, 3.0) if torch.get_num_threads() == 2 else 5.0
            for _ in range(count):
                policy.run("forward", 1000, call, shape)

        calls("A", 20, 100.0)
        warm = policy.cost[key]
        assert warm == pytest.approx(3.0 / 1000)
        for i in range(threads.WARM_UP_SHAPES - 1):  # shapes B, C, ...: first calls untimed
            calls(("shape", i), 1, 100.0)
        assert policy.cost[key] == warm
        calls("one too many", 1, 100.0)  # timed now
        assert policy.samples[key][-1] == pytest.approx(100.0 / 1000)


@pytest.mark.parametrize("one_cost,expected", [(2.7, 2), (2.0, 1)])
def test_thread_policy_needs_a_clear_win_for_one_thread(one_cost, expected):
    """Torch's count (2) against one thread costing 0.9x (noise-sized: stay on two) and
    0.67x (below ONE_THREAD_MARGIN: move to one)."""
    with _two_threads() as (policy, clock):
        seen = _policy_calls(policy, clock, lambda t: one_cost if t == 1 else 3.0, 60)
    assert seen[3:].count(expected) >= 0.8 * len(seen[3:])


def test_thread_policy_retry_replaces_a_stale_mean():
    """A winning re-try switches at once (its time replaces the other count's old mean):
    one thread was cheaper while the machine was busy; once idle, the first re-try of two
    threads moves the policy back."""
    with _two_threads() as (policy, clock):
        _policy_calls(policy, clock, lambda t: 5.0 if t == 1 else 400.0, 20)
        seen = _policy_calls(policy, clock, lambda t: 5.0 if t == 1 else 2.0, 40)
    first = seen.index(2)
    assert first < 16 and seen[first:].count(2) >= 0.8 * (len(seen) - first)


def test_thread_policy_shrugs_off_one_slow_sample():
    """Contention only slows calls down: a single slow two-thread call (a neighbour's
    threads spinning, a page fault) leaves the policy on two threads; a lasting load
    moves it to one within COST_WINDOW calls."""
    with _two_threads() as (policy, clock):
        _policy_calls(policy, clock, lambda t: 5.0 if t == 1 else 3.0, 20)
        spike = iter([60.0])
        seen = _policy_calls(policy, clock,
                             lambda t: 5.0 if t == 1 else next(spike, 3.0), 30)
        assert seen.count(1) <= 2  # at most a scheduled re-try
        busy = _policy_calls(policy, clock, lambda t: 5.0 if t == 1 else 60.0, 30)
    first = busy.index(1)
    assert first <= threads.COST_WINDOW and busy[first:].count(1) >= 0.8 * len(busy[first:])


def test_thread_policy_follows_a_change_of_load():
    """Busy, then idle: the policy moves back to two threads once a re-try wins."""
    with _two_threads() as (policy, clock):
        _policy_calls(policy, clock, lambda t: 5.0 if t == 1 else 40.0, 100)
        seen = _policy_calls(policy, clock, lambda t: 5.0 if t == 1 else 2.0, 600)
    assert seen[-50:] == [2] * 50


def _starving_calls(policy, clock, cpu_clock, phases):
    """Fake calls in ``phases`` of ``(calls, cost_of_threads, cpu_share)``: each call
    advances the wall clock by its cost and the calling thread's CPU clock by
    ``cpu_share(threads)`` of it (1.0: it had a core all along)."""
    seen = []
    for calls, cost, share in phases:
        def call():
            threads = torch.get_num_threads()
            seen.append(threads)
            clock.now += cost(threads)
            cpu_clock.now += cost(threads) * share(threads)
        for _ in range(calls):
            policy.run("forward", 1000, call)
    return seen


def test_thread_policy_tries_one_thread_only_on_a_busy_machine():
    """Idle (the calling thread on a core for its whole wall time): two threads all along,
    no call slowed down by a one-thread probe.  Busy (two-thread calls starved: half their
    wall time off a core): one thread is tried, and kept while cheaper.  Idle again: the
    re-try of two threads wins, and one thread is no longer tried once the starved calls
    have left the window."""
    cpu_clock = _FakeClock()
    with _two_threads() as (policy, clock):
        policy = cpu._ThreadPolicy(clock=clock, min_work=0, cpu_clock=cpu_clock)
        idle_cost = lambda t: 5.0 if t == 1 else 3.0  # noqa: E731
        busy_cost = lambda t: 5.0 if t == 1 else 40.0  # noqa: E731
        idle = _starving_calls(policy, clock, cpu_clock, [(200, idle_cost, lambda t: 1.0)])
        assert idle == [2] * 200
        busy = _starving_calls(policy, clock, cpu_clock,
                               [(100, busy_cost, lambda t: 1.0 if t == 1 else 0.5)])
        assert busy[:2] == [2, 1]  # the first starved call has one thread tried next
        assert busy[2:].count(1) > 0.9 * len(busy[2:])
        again = _starving_calls(policy, clock, cpu_clock, [(300, idle_cost, lambda t: 1.0)])
        back = again.index(2)
        assert back <= 256 and again[back:back + 20] == [2] * 20
        assert again[back + threads.STARVED_WINDOW:].count(1) == 0
        assert torch.get_num_threads() == 2


def test_thread_policy_restores_threads_on_error_and_leaves_one_thread_alone():
    clock = _FakeClock()
    policy = cpu._ThreadPolicy(clock=clock, min_work=0, cpu_clock=None)
    torch.set_num_threads(2)
    try:
        _policy_calls(policy, clock, lambda t: 1.0 if t == 1 else 9.0, 3)  # picks one now

        def fail():
            assert torch.get_num_threads() == 1
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            policy.run("forward", 1000, fail)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    # on one thread (the user's choice) nothing is changed or timed
    assert _policy_calls(policy, clock, lambda t: 1.0, 5, work=10**6) == [1] * 5
    assert not any(key[1] == (10**6).bit_length() // 2 for key in policy.cost)
