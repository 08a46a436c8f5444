"""The CUDA composition kernel (``sepconv.kernels.cuda``) against the reference kernel,
forward and every gradient, on the CPU (it is pure torch) and on CUDA when there is one:
the three variants (``nhwc_mm``, ``nhwc``, ``ncl``), the measured choice between them and its
fallbacks, and functional's CUDA rule (compositions or Triton's variant 2)."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

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
    # inference: variant 2 but for IEEE float32 of >= 1024 channels below large
    for dtype, tf32 in [(torch.float32, False), (torch.float32, True), (torch.bfloat16, False)]:
        assert rule(dtype=dtype, tf32=tf32) == rule(k=75, c=1536, f=1536, dtype=dtype,
                                                    tf32=tf32, rows=large) == "triton_v2"
        assert rule(c=1024, f=1024, dtype=dtype, tf32=tf32) \
            == ("cuda" if dtype == torch.float32 and not tf32 else "triton_v2")
    assert rule(c=1024, rows=(1 << 15) - 1) == "cuda" and rule(c=1023) == "triton_v2"
    assert rule(c=1024, rows=1 << 15) == "triton_v2"  # 1024 x 2**15 = 2**25: large
    # float32 training: every layer (with TF32 from 128 channels); z kept for size > 2**23,
    # the dilated class and long kernels (k >= 25, with TF32 k > 40)
    assert rule(grad=True) == rule(grad=True, tf32=True) == rule(c=64, grad=True) \
        == rule(k=24, grad=True) == rule(k=40, grad=True, tf32=True) == "triton_v2"
    assert rule(c=127, grad=True, tf32=True) == "cuda"
    assert rule(k=25, grad=True) == rule(k=41, grad=True, tf32=True) == "triton_v2_savez"
    assert rule(rows=(1 << 16) + 1, grad=True) == rule(rows=(1 << 16) + 1, grad=True,
                                                        tf32=True) == "triton_v2_savez"
    assert rule(rows=1 << 16, grad=True) == "triton_v2"  # 128 x 2**16 = 2**23
    for dtype, tf32 in [(torch.float32, False), (torch.float32, True), (torch.bfloat16, False)]:
        assert rule(dilation=8, k=4, dtype=dtype, tf32=tf32, grad=True) == "triton_v2_savez"
    # bfloat16 training: dilated, long kernels from 2**22, k <= 4 with <= 128 channels,
    # >= 1024 channels from 2**26, k >= 31 when large
    bf16 = dict(dtype=torch.bfloat16, grad=True)
    mid = 1 << 15  # 128 channels x 2**15 rows = 2**22
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


# -- separable_conv1d's memo of eager calls (functional._SEPARABLE_CALLS) -------------------

def _recorder(name: str):
    """A stand-in kernel: returns its name and the geometry it was called with."""
    def kernel(x, depthwise, pointwise, bias, **geometry):
        return name, geometry
    return kernel


@pytest.fixture
def recorded(monkeypatch):
    """functional with an empty memo and every kernel replaced by a :func:`_recorder`
    (the compositions and ``_load``'s), Triton "installed" on an sm_90 device;
    ``recorded(x, ...)``: what ``separable_conv1d`` ran, ``(name, geometry)``."""
    monkeypatch.delenv("SEPCONV_KERNEL", raising=False)
    monkeypatch.setattr(functional, "_SEPARABLE_CALLS", {})
    monkeypatch.setattr(functional, "_triton_installed", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    kernels = {name: _recorder(name) for name in functional.KERNELS}
    monkeypatch.setattr(functional, "_load", kernels.__getitem__)
    for name in cuda.COMPOSITIONS:
        monkeypatch.setitem(cuda.COMPOSITIONS, name, _recorder("cuda:" + name))
    return functional.separable_conv1d


def _uncached(x, depthwise, pointwise, bias=None, strides=1, padding="valid",
              dilation_rate=1, data_format="channels_last", strided_dilation=False):
    """What separable_conv1d runs, asked without its memo: the checks (_separable_plan)
    and the rules (_pick_kernel), as before the memo."""
    pointwise = pointwise[0] if pointwise.dim() == 3 else pointwise
    stride, dilation, out_len, left, right, channels_last = functional._separable_plan(
        tuple(x.shape), tuple(depthwise.shape), tuple(pointwise.shape),
        None if bias is None else tuple(bias.shape), strides, padding, dilation_rate,
        data_format, strided_dilation)
    return functional._pick_kernel(x, depthwise, pointwise, stride, dilation, out_len,
                                   channels_last)(
        x, depthwise, pointwise, bias, stride=stride, dilation=dilation, pad_left=left,
        pad_right=right, channels_last=channels_last)


def _fake_autocast(monkeypatch, dtype):
    """CUDA autocast in ``dtype`` (``None``: off), as the rules see it."""
    monkeypatch.setattr(torch, "is_autocast_enabled",
                        lambda device="cuda": dtype is not None and device == "cuda")
    monkeypatch.setattr(torch, "get_autocast_dtype", lambda device: dtype or torch.float16)


@st.composite
def _calls(draw):
    """Calls of one layer shape (fake CUDA input), each with its own arguments and state
    as drawn: the rules' and checks' inputs, sizes across the rules' thresholds (channels
    x rows 2**22-2**26, k 30-87, 512-1024 channels)."""
    k = draw(st.sampled_from([1, 3, 4, 9, 31, 41, 75]))
    c = draw(st.sampled_from([8, 128, 384, 512, 1024]))
    layer = dict(k=k, c=c, m=draw(st.sampled_from([1, 1, 2])),
                 f=draw(st.sampled_from([16, 128, 256])),
                 rows=draw(st.sampled_from([1 << 10, 1 << 15, 1 << 16, 1 << 18, 1 << 20])),
                 batch=draw(st.sampled_from([1, 4])))
    dtypes = st.sampled_from([torch.float32, torch.float32, torch.bfloat16, torch.float16])
    arguments = st.fixed_dictionaries(dict(
        geometry=st.sampled_from([(1, 1), (1, 1), (2, 1), (1, 2), (1, 8)]),
        padding=st.sampled_from(["same", "causal", "valid"]),
        channels_last=st.booleans(), dtype=dtypes,
        weights_f64=st.sampled_from([False, False, True]), bias=st.booleans(),
        pointwise_3d=st.booleans(), index=st.sampled_from([None, 0, 1])))
    arguments = draw(st.lists(arguments, min_size=1, max_size=2))
    fields = dict(arguments=st.sampled_from(arguments), gx=st.booleans(), gw=st.booleans(),
                  gp=st.booleans(), grad_mode=st.booleans(), tf32=st.booleans(),
                  autocast=st.sampled_from([None, None, torch.bfloat16, torch.float16]),
                  forced=st.sampled_from(["", "", "", "cuda", "Triton_V2 ", "reference"]))
    # a first call, then calls that each change one thing (an argument set, a flag): a
    # memo that missed the change would run the previous call's kernel
    state = draw(st.fixed_dictionaries(fields))
    states = [state]
    for name in draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=6)):
        state = {**state, name: draw(fields[name])}
        states.append(state)
    return layer, [{**state["arguments"], **state} for state in states]


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_calls())
def test_memo_runs_what_the_uncached_path_runs(case, recorded, monkeypatch):
    """Random calls of a layer (each twice: the first may fill the memo, the second reads
    it; the memo carries over between calls and examples) run the kernel and geometry
    the checks and rules pick without the memo."""
    layer, calls = case
    # bfloat16 on a pre-Ampere second device: the rule reads the device (its capability)
    monkeypatch.setattr(torch.cuda, "get_device_capability",
                        lambda device=None: (7, 5) if device.index == 1 else (9, 0))
    k, c, m, f = layer["k"], layer["c"], layer["m"], layer["f"]
    for call in calls:
        stride, dilation = call["geometry"]
        steps = max(layer["rows"] // layer["batch"], (k - 1) * dilation + 1)
        shape = (layer["batch"], steps, c) if call["channels_last"] else \
            (layer["batch"], c, steps)
        gx, gw, gp = call["gx"], call["gw"], call["gp"]
        x = fake_cuda(shape, call["dtype"], gx, call["index"])
        wdtype = torch.float64 if call["weights_f64"] else call["dtype"]
        w = torch.empty(k, c, m, dtype=wdtype, requires_grad=gw)
        p = torch.empty(1, c * m, f, dtype=wdtype, requires_grad=gp)
        p = p if call["pointwise_3d"] else p[0]
        b = torch.empty(f, dtype=wdtype) if call["bias"] else None
        args = dict(strides=stride, dilation_rate=dilation, padding=call["padding"],
                    data_format="channels_last" if call["channels_last"]
                    else "channels_first")
        with pytest.MonkeyPatch.context() as mp, torch.set_grad_enabled(call["grad_mode"]):
            mp.setattr(torch.backends.cudnn, "allow_tf32", call["tf32"])
            _fake_autocast(mp, call["autocast"])
            mp.setenv("SEPCONV_KERNEL", call["forced"])
            want = _uncached(x, w, p, b, **args)
            for _ in range(2):
                assert recorded(x, w, p, b, **args) == want, call
    for key in functional._SEPARABLE_CALLS:  # shapes and flags only: no tensor kept alive
        assert not any(isinstance(part, torch.Tensor) for part in key)


def test_memo_follows_every_input_of_the_rules(recorded, monkeypatch):
    """Each thing the rules read, changed alone on the same call signature, changes the
    kernel as it does without the memo: grad mode, each tensor's requires_grad, cuDNN's
    TF32 flag, CUDA autocast, SEPCONV_KERNEL, the device (its capability), bias' shape."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    # 1024 channels: IEEE float32 inference goes to the compositions
    w, p = torch.empty(3, 1024, 1), torch.empty(1024, 64)

    def run(x=None, w=w, p=p, b=None, k=None, **args):
        x = x or fake_cuda((2, 100, w.shape[1]))
        got = [recorded(x, w, p, b, padding="same", **args) for _ in range(2)]
        assert got[0] == got[1] == _uncached(x, w, p, b, padding="same", **args)
        return got[0][0]

    # float32 inference: nhwc_mm; training (whichever tensor needs a gradient): variant 2
    wide_grad = fake_cuda((2, 100, 1024), grad=True)
    assert run() == "cuda:nhwc_mm" and run(wide_grad) == "triton_v2"
    with torch.no_grad():
        assert run(wide_grad) == "cuda:nhwc_mm"
    assert run(w=w.clone().requires_grad_()) == "triton_v2"
    assert run(p=p.clone().requires_grad_()) == "triton_v2"
    assert run(b=torch.empty(64, requires_grad=True)) == "cuda:nhwc_mm"  # (bias: no effect)
    # cuDNN's TF32 flag: variant 2 for that inference, ncl for training of < 128 channels
    narrow = dict(w=torch.empty(3, 64, 1), p=torch.empty(64, 64))
    train = dict(x=fake_cuda((2, 100, 64), grad=True), **narrow)
    assert run(**train) == "triton_v2"
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    assert run() == "triton_v2" and run(**train) == "cuda:ncl"
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    # the arguments and the weights' dtype
    assert run(strides=2, **train) == "triton_v2" and run(strides=2) == "cuda:nhwc_mm"
    f64 = dict(w=torch.empty(3, 64, 1, dtype=torch.float64), p=torch.empty(64, 64))
    assert run(**f64, dilation_rate=8) == "cuda:ncl"  # (mixed dtypes: no Triton)
    # CUDA autocast: float32 data, the rule of autocast's dtype (bfloat16: nhwc_mm, dilated
    # ncl), never variant 2
    assert run(**narrow) == run(**narrow, dilation_rate=8) == "triton_v2"
    with pytest.MonkeyPatch.context() as mp:
        _fake_autocast(mp, torch.bfloat16)
        assert run(**train) == run(**narrow) == "cuda:nhwc_mm"
        assert run(**narrow, dilation_rate=8) == "cuda:ncl"
    assert run(**train) == run(**narrow) == run(**narrow, dilation_rate=8) == "triton_v2"
    # SEPCONV_KERNEL, read at every call
    for forced, name in [("reference", "reference"), (" CUDA", "cuda"), ("", "cuda:nhwc_mm")]:
        monkeypatch.setenv("SEPCONV_KERNEL", forced)
        assert run() == name
    # the device: bfloat16's Triton rule needs sm_80, here on cuda:0 only
    monkeypatch.setattr(torch.cuda, "get_device_capability",
                        lambda device=None: (7, 5) if device.index == 1 else (9, 0))
    bf16 = dict(w=torch.empty(3, 64, 1, dtype=torch.bfloat16),
                p=torch.empty(64, 32, dtype=torch.bfloat16))
    big = (1, 1 << 19, 64)  # variant 2 for bfloat16 inference
    assert run(fake_cuda(big, torch.bfloat16, index=0), **bf16) == "triton_v2"
    assert run(fake_cuda(big, torch.bfloat16, index=1), **bf16) == "cuda:nhwc_mm"
    # bias' shape is checked on every call, after a good call with the same arguments
    for _ in range(2):
        with pytest.raises(ValueError, match="bias must have shape"):
            recorded(fake_cuda((2, 100, 1024)), w, p, torch.empty(33), padding="same")


@pytest.mark.parametrize("args, message", [
    (dict(padding="full"), "argument `padding`"),
    (dict(data_format="channels_middle"), "argument `data_format`"),
    (dict(strides=2, dilation_rate=2), "incompatible"),
    (dict(strides=0), "must be >= 1"),
    (dict(strides=(1, 1)), "argument `strides`"),
    (dict(shape=(2, 100, 63)), "Input has 63 channels"),
    (dict(shape=(2, 2, 64), padding="valid"), "too short"),
    (dict(shape=(100, 64)), "Input must be 3D"),
    (dict(bias=torch.empty(31)), "bias must have shape"),
    (dict(pointwise=torch.empty(65, 32)), "pointwise has 65 input channels"),
    (dict(forced="fast"), "SEPCONV_KERNEL must be one of"),
])
def test_bad_calls_raise_every_time(args, message, recorded, monkeypatch):
    """A failing check or rule raises on the first call and on the second alike, and
    nothing is remembered for it (the same arguments once valid are, and still run)."""
    args = dict(args)
    x = fake_cuda(args.pop("shape", (2, 100, 64)))
    w, p = torch.empty(3, 64, 1), args.pop("pointwise", torch.empty(64, 32))
    b = args.pop("bias", None)
    monkeypatch.setenv("SEPCONV_KERNEL", args.pop("forced", ""))
    args.setdefault("padding", "same")
    for _ in range(2):
        with pytest.raises(ValueError, match=message):
            recorded(x, w, p, b, **args)
    assert functional._SEPARABLE_CALLS == {}


def test_memo_is_bounded(recorded, monkeypatch):
    """Programs of ever-new shapes: the memo is emptied at its bound, and calls after
    that still run what the uncached path runs."""
    monkeypatch.setattr(functional, "_SEPARABLE_CALLS_MAX", 5)
    w, p = torch.empty(3, 8, 1), torch.empty(8, 4)
    for steps in list(range(10, 22)) * 2:
        x = fake_cuda((1, steps, 8))
        assert recorded(x, w, p, padding="valid") == _uncached(x, w, p, padding="valid")
        assert 1 <= len(functional._SEPARABLE_CALLS) <= 5


def test_memo_steps_aside_for_tracers_and_unhashable_arguments(monkeypatch):
    """Real CPU tensors: list arguments (no key) and torch.jit.trace (the reference
    kernel, recorded as standard ops) take the long way, and eager calls before and
    after them still run the CPU kernel, remembered."""
    from sepconv.kernels import cpu
    monkeypatch.delenv("SEPCONV_KERNEL", raising=False)
    monkeypatch.setattr(functional, "_SEPARABLE_CALLS", {})
    g = torch.Generator().manual_seed(0)
    x, w, p = torch.randn(2, 9, 3, generator=g), torch.randn(3, 3, 2, generator=g), \
        torch.randn(1, 6, 4, generator=g)
    want = reference.separable_conv1d(x, w, p[0], None, stride=2, dilation=1, pad_left=1,
                                      pad_right=1, channels_last=True)
    for strides in (2, [2], (2,), 2):
        got = functional.separable_conv1d(x, w, p, strides=strides, padding="same")
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert [c.kernel for c in functional._SEPARABLE_CALLS.values()] == \
        [cpu.separable_conv1d] * 2  # 2 and (2,): two keys; the list none
    traced = torch.jit.trace(
        lambda x: functional.separable_conv1d(x, w, p, strides=2, padding="same"), x)
    assert "aten::conv1d" in str(traced.graph) or "aten::_convolution" in str(traced.graph)
    torch.testing.assert_close(traced(x), want, rtol=1e-5, atol=1e-5)
    assert len(functional._SEPARABLE_CALLS) == 2


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
    monkeypatch.setattr(functional, "_SEPARABLE_CALLS", {})
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
