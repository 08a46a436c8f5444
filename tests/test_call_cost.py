"""The per-call shortcuts (bench/README.md "Per-call cost"): what a layer or a functional
call checks is remembered per shapes and arguments, and the thread policy stays out of
one-thread calls.  Each test here would fail if a shortcut answered for a call it does not
cover: a remembered plan applied to another shape, an error remembered as a pass, a check
skipped for a new shape, policy work done on one thread or not done on two."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import sepconv
from sepconv import functional
from sepconv.kernels import reference, threads
from sepconv import padding as _padding


def _reference_conv1d(x, kernel, bias, stride, dilation, padding):
    pads = _padding.padding_amounts_nd((x.shape[1],), (kernel.shape[0],), (stride,),
                                       (dilation,), padding)
    return reference.conv(x, kernel, bias, strides=(stride,), dilation=(dilation,),
                          pads=pads, groups=1, channels_last=True)


def test_conv_plans_are_per_shape_and_arguments(torch_single_thread):
    """Shapes and arguments interleaved, each seen several times (plans remembered and
    reused): every output is the reference kernel's for its own geometry."""
    g = torch.Generator().manual_seed(0)
    kernel = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    bias = torch.randn(5, generator=g, dtype=torch.float64)
    cases = [(n, s, d, p) for n in (7, 9, 16) for p in ("valid", "same", "causal")
             for s, d in ((1, 1), (2, 1), (1, 2))]
    for _ in range(2):
        for n, s, d, p in cases:
            x = torch.randn(2, n, 4, generator=g, dtype=torch.float64)
            got = functional.conv(x, kernel, bias, strides=s, padding=p, dilation_rate=d)
            want = _reference_conv1d(x, kernel, bias, s, d, p)
            assert got.shape == want.shape, (n, s, d, p)
            torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_conv_list_arguments_are_checked_each_call(torch_single_thread):
    """Lists (not a cache key) take the plain path: the same result as tuples."""
    x = torch.randn(1, 6, 6, 2)
    k = torch.randn(3, 3, 2, 4)
    torch.testing.assert_close(functional.conv(x, k, strides=[1, 2], padding="same"),
                               functional.conv(x, k, strides=(1, 2), padding="same"))


@pytest.mark.parametrize("call, message", [
    (lambda: functional.conv(torch.randn(1, 5, 3), torch.randn(2, 3, 4), torch.randn(3)),
     "bias must have shape"),
    (lambda: functional.conv(torch.randn(1, 5, 3), torch.randn(2, 3, 4), groups=2),
     "argument `groups`"),
    (lambda: functional.conv(torch.randn(1, 5, 3), torch.randn(2, 3, 4), strides=0),
     "argument `strides`"),
    (lambda: functional.conv(torch.randn(1, 1, 3), torch.randn(2, 3, 4)), "too small"),
    (lambda: functional.separable_conv1d(torch.randn(1, 5, 3), torch.randn(2, 3, 1),
                                         torch.randn(1, 3, 4), torch.randn(5)),
     "bias must have shape"),
    (lambda: functional.separable_conv1d(torch.randn(1, 5, 3), torch.randn(2, 3, 1),
                                         torch.randn(1, 3, 4), padding="full"),
     "argument `padding`"),
    (lambda: functional.separable_conv1d(torch.randn(1, 1, 3), torch.randn(3, 3, 1),
                                         torch.randn(1, 3, 4)), "too short"),
])
def test_errors_are_raised_on_every_call(call, message, torch_single_thread):
    """A failed check is not remembered as a pass: the second call raises too."""
    for _ in range(2):
        with pytest.raises(ValueError, match=message):
            call()


def test_separable_plans_are_per_shape(torch_single_thread):
    g = torch.Generator().manual_seed(1)
    dw = torch.randn(5, 3, 2, generator=g)
    pw = torch.randn(1, 6, 4, generator=g)
    for _ in range(2):
        for n, p in ((8, "same"), (11, "valid"), (8, "causal"), (20, "same")):
            x = torch.randn(2, n, 3, generator=g)
            got = functional.separable_conv1d(x, dw, pw, padding=p)
            want = reference.separable_conv1d(
                x, dw, pw[0], None, stride=1, dilation=1,
                pad_left=_padding.padding_amounts(n, 5, 1, 1, p)[0],
                pad_right=_padding.padding_amounts(n, 5, 1, 1, p)[1], channels_last=True)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)  # float32 sums
    with pytest.raises(ValueError, match="strides"):  # list strides: checked afresh
        functional.separable_conv1d(torch.randn(1, 8, 3), dw, pw, strides=[2, 2])


@pytest.mark.parametrize("make", [
    lambda: sepconv.Conv1D(4, 3, padding="valid"),
    lambda: sepconv.SeparableConv1D(4, 3, padding="valid"),
    lambda: sepconv.DepthwiseConv1D(3, padding="valid"),
    lambda: sepconv.Conv2D(4, 3),
])
def test_layer_input_checks_after_a_passing_shape(make, torch_single_thread):
    """A layer that passed one shape still refuses a wrong one (channels, too short), on
    every call, and still takes the first shape afterwards."""
    layer = make()
    rank = 2 if isinstance(layer, sepconv.Conv2D) else 1
    good = (2,) + (6,) * rank + (3,)
    layer(torch.randn(*good))
    layer(torch.randn(*good))
    for bad in ((2,) + (6,) * rank + (5,), (2,) + (2,) * rank + (3,), (2, 3)):
        for _ in range(2):
            with pytest.raises(ValueError, match="expects input|too short|too small"):
                layer(torch.randn(*bad))
    assert layer(torch.randn(*good)).shape[0] == 2


def test_layer_input_check_follows_a_rebuild(torch_single_thread):
    """The remembered shape is tied to the built channel count: a layer rebuilt for
    other channels (set_weights on an unbuilt copy) checks again."""
    layer = sepconv.Conv1D(2, 3)
    layer(torch.randn(1, 5, 3))
    with pytest.raises(ValueError, match="expects input"):
        layer(torch.randn(1, 5, 4))
    other = sepconv.Conv1D(2, 3)
    other.set_weights([np.ones((3, 4, 2), "float32"), np.zeros(2, "float32")])
    other(torch.randn(1, 5, 4))
    with pytest.raises(ValueError, match="expects input"):
        other(torch.randn(1, 5, 3))


def test_one_thread_calls_skip_the_policy(monkeypatch):
    """On one thread neither the forward nor the backward node touches the policy; on two
    both do (the same calls)."""
    fresh = threads.ThreadPolicy(min_work=0, cpu_clock=None)
    monkeypatch.setattr(threads, "THREADS", fresh)
    begun = []
    real_begin = fresh.begin
    monkeypatch.setattr(fresh, "begin", lambda *a, **k: begun.append(a[0]) or real_begin(
        *a, **k))
    x = torch.randn(2, 40, 8, requires_grad=True)
    k = torch.randn(2, 8, 8, requires_grad=True)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        functional.conv(x, k, padding="causal", dilation_rate=4).sum().backward()
        assert begun == []
        torch.set_num_threads(2)
        functional.conv(x, k, padding="causal", dilation_rate=4).sum().backward()
        assert any(name.endswith("-backward") for name in begun)
        assert any(not name.endswith("-backward") for name in begun)
    finally:
        torch.set_num_threads(before)


def test_import_loads_no_compiler_keras_tensorflow_or_triton():
    """``import sepconv`` (and a first layer call) loads none of torch._dynamo (and with it
    Triton, where installed: ~1.5 s of CPU time an import), Keras, TensorFlow: STYLE.md's
    "no hidden costs in imports".  torch.compile still runs the routines (the activation
    tests compile a first call)."""
    import subprocess
    import sys
    code = ("import sys, torch\n"
            "import sepconv\n"
            "sepconv.SeparableConv1D(2, 3, activation='tanh')(torch.randn(1, 6, 2))\n"
            "sepconv.BatchNormalization().eval()(torch.randn(1, 6, 2))\n"
            "print(sorted(m for m in ('torch._dynamo', 'triton', 'keras', 'tensorflow',\n"
            "                         'tf_keras') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


def _remembered_slots(owner):
    from sepconv.kernels import graphs
    return dict(graphs._slots(owner, False) or {})


@pytest.mark.parametrize("make, shape, slot", [
    (lambda: sepconv.Conv1D(5, 3, padding="causal", dilation_rate=2), (2, 11, 4),
     "reference.conv"),
    (lambda: sepconv.Conv1D(8, 4, strides=2, padding="same"), (2, 13, 3), "reference.conv"),
    (lambda: sepconv.Conv1D(8, 4, strides=2, padding="same"), (1, 13, 3),
     "reference.conv"),  # batch 1: torch's THNN kernel
    (lambda: sepconv.Conv2D(4, (2, 3), padding="same", groups=2), (2, 5, 6, 4),
     "reference.conv"),
    (lambda: sepconv.Conv1D(3, 3, data_format="channels_first", padding="same"), (2, 4, 9),
     "reference.conv"),
    (lambda: sepconv.Conv3D(3, 2, strides=(1, 2, 1)), (2, 4, 5, 3, 2), "reference.conv"),
    (lambda: sepconv.Conv1D(64, 1), (1, 8192, 8), "pointwise.conv"),  # one 1x1 convolution
])
def test_conv_weight_layout_follows_every_change_of_the_weights(make, shape, slot,
                                                                torch_single_thread,
                                                                monkeypatch):
    """An eval convolution keeps its kernel in torch's layout between calls where no
    gradient of it is recorded: every way the kernel changes (in place, load_state_dict,
    set_weights, .data replaced or written through, an optimizer step, another dtype) shows
    in the next call, bit for bit the result of the same kernel without the memo (a plain tensor, not
    a Parameter: laid out on every call); nothing is kept where the kernel's gradient is
    recorded or while tracing."""
    from sepconv.kernels import gemm1d
    # (these small Conv1D calls would run gemm1d's inference forward, GEMMs on the kernel
    # as it lies: no layout, no memo; the reference kernel's memo is what this checks)
    monkeypatch.setattr(gemm1d, "SMALL_FORWARD", False)
    g = torch.Generator().manual_seed(5)
    layer = make()
    x = torch.randn(*shape, generator=g)
    layer(x)
    layer.eval()

    def fresh(inp):  # the same call with a plain-tensor kernel: no memo
        return functional.conv(inp, layer.kernel.detach().clone(), layer.bias.detach().clone(),
                               strides=layer.strides, padding=layer.padding,
                               dilation_rate=layer.dilation_rate, groups=layer.groups,
                               data_format=layer.data_format)

    def check(what, inp=x):
        with torch.inference_mode():
            got = layer(inp)
        want = fresh(inp)
        torch.testing.assert_close(got, want, rtol=0, atol=0, msg=what)
        assert slot in _remembered_slots(layer.kernel), what  # (the memo took the call)
        with torch.no_grad():
            torch.testing.assert_close(layer(inp), want, rtol=0, atol=0, msg=what)

    check("first call")
    check("second call (remembered)")
    with torch.no_grad():
        layer.kernel.mul_(-1.5)
    check("kernel changed in place")
    state = {k: v.clone() * 0.5 + 0.125 for k, v in layer.state_dict().items()}
    layer.load_state_dict(state)
    check("load_state_dict")
    layer.set_weights([w * 2.0 - 0.25 for w in layer.get_weights()])
    check("set_weights")
    layer.kernel.data = torch.randn(layer.kernel.shape, generator=g)
    check(".data replaced")
    layer.kernel.data = torch.randn(layer.kernel.shape, generator=g)
    layer.kernel.data = torch.randn(layer.kernel.shape, generator=g)
    check(".data replaced twice between calls")
    layer.kernel.data.mul_(0.75)  # (an alias of its own: the kernel's version stays)
    check("written through .data (EMA's and hand-written updates' way)")
    alias = torch.randn(layer.kernel.shape, generator=g)
    layer.kernel.data = alias
    check(".data replaced by a tensor")
    alias.add_(1.0)
    check("that tensor then changed in place")
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    layer.train()
    layer(x).square().sum().backward()
    opt.step()
    layer.eval()
    check("an optimizer step")
    # the kernel's gradient recorded: nothing remembered, the gradient torch's
    before = _remembered_slots(layer.kernel)[slot]
    kernel = layer.kernel
    layer(x).sum().backward()
    assert _remembered_slots(kernel)[slot] is before
    layer.double()
    check("float64", x.double())
    from sepconv.kernels import graphs
    graphs._REMEMBERED.pop(id(layer.kernel), None)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.jit.trace(layer, x.double(), check_trace=False)
    assert slot not in _remembered_slots(layer.kernel)  # (a trace records the layout op)
    with torch.inference_mode():
        layer(x.double())
    ident = id(layer.kernel)
    assert ident in graphs._REMEMBERED
    layer = kernel = opt = None  # (the closures above hold the name, not the layer)
    import gc
    gc.collect()
    assert ident not in graphs._REMEMBERED  # (the memo leaves with its weight)


def test_remembered_values_are_ordinary_tensors(torch_single_thread):
    """A value remembered under inference_mode is an ordinary tensor: a later call that
    records the input's gradient (weights frozen) may save it for its backward."""
    layer = sepconv.Conv1D(3, 2, padding="causal")
    x = torch.randn(2, 6, 4)
    layer(x)
    layer.eval()
    for p in layer.parameters():
        p.requires_grad_(False)
    with torch.inference_mode():
        layer(x)
    xr = x.clone().requires_grad_(True)
    layer(xr).sum().backward()
    want = torch.autograd.grad(_reference_conv1d(xr, layer.kernel, layer.bias, 1, 1,
                                                 "causal").sum(), xr)[0]
    torch.testing.assert_close(xr.grad, want, rtol=1e-6, atol=1e-6)


def test_unmasked_layer_calls_look_up_no_missing_attribute(monkeypatch, torch_single_thread):
    """A graph runner's call of a layer without a Keras mask (call_with_mask, as
    KerasFunctional and the streams make it) asks no module for an attribute it lacks
    (torch's Module.__getattr__ builds an AttributeError, message and all, for each: three
    a layer of every model call), and still gives each layer's output mask: None where the
    layer does not support masking or passes the (absent) mask on, the mask a source such
    as Masking makes from its input."""
    from sepconv.layers.masking import Masking, call_with_mask
    x = torch.randn(2, 5, 4)
    x[:, 3] = 0.0
    layers = [sepconv.Conv1D(3, 2), sepconv.BatchNormalization().eval(), Masking(),
              sepconv.Dense(2)]
    for layer in layers:
        layer(x)
    missing = []
    real = torch.nn.Module.__getattr__

    def counted(self, name):
        try:
            return real(self, name)
        except AttributeError:
            missing.append((type(self).__name__, name))
            raise

    monkeypatch.setattr(torch.nn.Module, "__getattr__", counted)
    with torch.inference_mode():
        outs = [call_with_mask(layer, [x], {}, None) for layer in layers]
    assert missing == []
    for layer, (y, mask) in zip(layers, outs):
        with torch.inference_mode():  # (where autograd records, Conv1D runs another kernel)
            torch.testing.assert_close(y, layer(x), rtol=0, atol=0)
    assert outs[0][1] is None and outs[1][1] is None and outs[3][1] is None
    torch.testing.assert_close(outs[2][1], torch.tensor([[True] * 3 + [False, True]] * 2))


@pytest.mark.parametrize("mode", ["--fake", "--real"])
def test_dispatch_overhead_bench_runs(mode, tmp_path):
    """bench/dispatch_overhead.py, tiny: no-op kernels on stand-in CUDA and CPU tensors, and
    the real CPU kernel against functional (the code path its GPU run takes), the old
    checkout beside this one; what it reports is there, each kernel named."""
    import json
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "d.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(root, "bench", "dispatch_overhead.py"), mode,
         "--baseline", os.path.join(root, "src"), "--only", "tiny_k3", "--rounds", "2",
         "--calls", "3", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    devices = ["cuda", "cpu"] if mode == "--fake" else \
        ["cuda"] if torch.cuda.is_available() else ["cpu"]
    assert [(r["device"], r["phase"]) for r in rows] == [
        (d, p) for d in devices for p in ("inference", "training")]
    for row in rows:
        assert row["kernel"] == ("no-op" if mode == "--fake" else
                                 f"{row['device']}:separable_conv1d" if row["device"] == "cpu"
                                 else row["kernel"])
        assert row["functional us"] > 0 and row["baseline us"] > 0
