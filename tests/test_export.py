"""Export and tracing: torch.export, ONNX (run by onnxruntime), torch.jit.trace,
torch.compile(fullgraph=True), torch.func, and the CPU kernel's torch.library custom ops
(checked by torch.library.opcheck).

References: the eager model (the fast CPU kernel), the reference composition, onnxruntime's
own Conv implementation, torch.library.opcheck's schema / fake / autograd / AOT checks.
"""

from __future__ import annotations

import importlib.util
import itertools
import warnings

import numpy as np
import pytest
import torch

import sepconv
from sepconv.kernels import cpu, reference
from sepconv.layers.base import KERAS_CLASSES

GEOMETRIES = [(pad, s, d, m, fmt)
              for pad in ("valid", "same", "causal")
              for s, d in ((1, 1), (2, 1), (3, 1), (1, 2), (1, 3))
              for m in (1, 2)
              for fmt in ("channels_last", "channels_first")]


@pytest.fixture(autouse=True)
def _one_thread(torch_single_thread):
    yield


class Branches(torch.nn.Module):
    """Every layer applied to the same ``(batch, steps, channels)`` input (transposed for
    channels_first layers): one export covers every geometry."""

    def __init__(self, layers):
        super().__init__()
        self.layers = torch.nn.ModuleList(layers)

    def forward(self, x):
        return tuple(layer(x if layer.data_format == "channels_last" else x.transpose(1, 2))
                     for layer in self.layers)


def _separable_layers(channels=3):
    torch.manual_seed(0)
    layers = []
    for pad, s, d, m, fmt in GEOMETRIES:
        shape = (None, channels) if fmt == "channels_last" else (channels, None)
        layer = sepconv.SeparableConv1D(4, 3, strides=s, dilation_rate=d, padding=pad,
                                        depth_multiplier=m, data_format=fmt,
                                        activation="tanh", input_shape=shape,
                                        bias_initializer="random_normal")
        layers.append(layer)
    return layers


def _conv_layers(channels=4):
    conv1d = KERAS_CLASSES["Conv1D"]
    torch.manual_seed(0)
    layers = []
    for (pad, s, d, m, fmt), groups in zip(GEOMETRIES, itertools.cycle((1, 2))):
        shape = (None, channels) if fmt == "channels_last" else (channels, None)
        layers.append(conv1d(filters=2 * m, kernel_size=3, strides=s, dilation_rate=d,
                             padding=pad, groups=groups, data_format=fmt, input_shape=shape,
                             bias_initializer="random_normal"))
    return layers


def _ops(graph_module) -> set:
    return {str(node.target) for node in graph_module.graph.nodes
            if node.op == "call_function"}


def test_custom_ops_pass_opcheck():
    """torch.library.opcheck: schema, fake implementation vs real, autograd registration
    and AOT dispatch (dynamic shapes) of the forward and backward ops."""
    op = torch.ops.sepconv.separable_conv1d_cpu.default
    for channels_last, bias, geometry in [(False, True, (2, 1, 1, 1))]:
        x = torch.randn((2, 9, 3) if channels_last else (2, 3, 9), requires_grad=True)
        dw = torch.randn(3, 3, 2, requires_grad=True)
        pw = torch.randn(6, 4, requires_grad=True)
        b = torch.randn(4, requires_grad=True) if bias else None
        torch.library.opcheck(op, (x, dw, pw, b, *geometry, channels_last))
        y, z2 = op(x.detach(), dw.detach(), pw.detach(), None, *geometry, channels_last)
        torch.library.opcheck(torch.ops.sepconv.separable_conv1d_cpu_backward.default,
                              (torch.randn_like(y), x.detach(), dw.detach(), pw.detach(), z2,
                               torch.float32 if bias else None, [True, True, True, bias],
                               *geometry, channels_last))


def test_fake_tracing_sees_one_opaque_op():
    """make_fx on fake tensors records the kernel as one op (no data pointers read)."""
    from torch.fx.experimental.proxy_tensor import make_fx
    layer = sepconv.SeparableConv1D(4, 3, padding="causal", input_shape=(None, 3))
    params = {k: v.detach() for k, v in layer.named_parameters()}
    graph = make_fx(lambda p, x: torch.func.functional_call(layer, p, (x,)),
                    tracing_mode="fake")(params, torch.randn(2, 10, 3))
    ops = _ops(graph)
    assert "sepconv.separable_conv1d_cpu.default" in ops, ops
    assert not any("convolution" in op for op in ops), ops


def test_torch_export_holds_standard_ops_and_matches():
    """torch.export: the reference composition's aten ops only, same outputs as eager
    (fast kernel), also at another length with a dynamic steps dimension."""
    model = Branches(_separable_layers()).eval()
    x = torch.randn(2, 16, 3)
    program = torch.export.export(model, (x,))
    ops = _ops(program.graph_module)
    assert all(op.startswith("aten.") for op in ops), ops
    assert any("conv" in op for op in ops), ops
    for got, want in zip(program.module()(x), model(x)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_torch_export_dynamic_steps():
    """A dynamic steps dimension (strides 1 and 2; stride 3 adds a shape guard that
    torch.export refuses over a whole range), run at other lengths."""
    layers = [layer for layer, (_, s, d, m, _) in zip(_separable_layers(), GEOMETRIES)
              if s <= 2 and d == 1 and m == 2]
    model = Branches(layers).eval()
    steps = torch.export.Dim("steps", min=8, max=4096)
    program = torch.export.export(model, (torch.randn(2, 16, 3),),
                                  dynamic_shapes=({1: steps},))
    for length in (9, 37):
        x = torch.randn(2, length, 3)
        for got, want in zip(program.module()(x), model(x)):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def _onnx_check(model, x, rtol=1e-5):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    program = torch.onnx.export(model, (x,), dynamo=True, verbose=False)
    kinds = {node.op_type for node in program.model_proto.graph.node}
    assert "Conv" in kinds and all(node.domain in ("", "ai.onnx")
                                   for node in program.model_proto.graph.node), kinds
    session = ort.InferenceSession(program.model_proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = model(x)
    assert len(got) == len(want)
    for g, w, layer in zip(got, want, model.layers):
        scale = max(float(w.abs().max()), 1.0)
        np.testing.assert_allclose(g, w.numpy(), rtol=rtol, atol=rtol * scale,
                                   err_msg=repr(layer))


@pytest.mark.slow
def test_onnx_separable_every_geometry_matches_onnxruntime():
    """ONNX (torch.onnx.export, dynamo): onnxruntime's outputs equal sepconv's for every
    padding, stride, dilation, multiplier and both data formats."""
    _onnx_check(Branches(_separable_layers()).eval(), torch.randn(2, 17, 3))


@pytest.mark.slow
@pytest.mark.skipif("Conv1D" not in KERAS_CLASSES,
                    reason="sepconv has no Conv1D layer in this build (it runs once Conv1D "
                           "is merged)")
def test_onnx_conv1d_every_geometry_matches_onnxruntime():
    """The same for Conv1D (functional.conv), groups 1 and 2."""
    _onnx_check(Branches(_conv_layers()).eval(), torch.randn(2, 17, 4))


class _AttentionBlock(torch.nn.Module):
    """Causal self-attention (the fused route), masked cross-attention (fused, tf-keras'
    additive offsets as the float mask) and attention returning its scores (explicit)."""

    def __init__(self):
        super().__init__()
        self.causal = sepconv.MultiHeadAttention(2, 4, name="causal_att")
        self.cross = sepconv.MultiHeadAttention(2, 3, value_dim=5, name="cross_att")
        self.scored = sepconv.MultiHeadAttention(1, 4, name="scored_att")

    def forward(self, x, memory, mask):
        h = x + self.causal(x, x, use_causal_mask=True)
        c = self.cross(h, memory, attention_mask=mask)
        s, scores = self.scored(c, memory, return_attention_scores=True)
        return s, scores


def test_onnx_attention_matches_onnxruntime():
    """MultiHeadAttention through torch.onnx.export (dynamo) on all three routes, a query
    step that sees no key included: onnxruntime's outputs equal sepconv's."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = _AttentionBlock().eval()
    x, memory = torch.randn(2, 6, 8), torch.randn(2, 7, 8)
    mask = torch.rand(2, 6, 7) > 0.3
    mask[0, 2] = False
    with torch.no_grad():
        want = model(x, memory, mask)
    program = torch.onnx.export(model, (x, memory, mask), dynamo=True, verbose=False)
    session = ort.InferenceSession(program.model_proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    feeds = {i.name: v.numpy() for i, v in zip(session.get_inputs(), (x, memory, mask))}
    got = session.run(None, feeds)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-5, atol=1e-5)


def test_jit_trace_matches_and_records_standard_ops():
    """torch.jit.trace (what the legacy ONNX exporter runs): standard aten ops, no Python
    callbacks, same outputs at the traced length."""
    model = torch.nn.Sequential(
        sepconv.SeparableConv1D(8, 5, padding="causal", dilation_rate=2, depth_multiplier=2,
                                input_shape=(None, 3)),
        torch.nn.ReLU(),
        sepconv.SeparableConv1D(4, 3, padding="same", strides=2, data_format="channels_last",
                                input_shape=(None, 8))).eval()
    x = torch.randn(2, 20, 3)
    with pytest.warns(torch.jit.TracerWarning):
        traced = torch.jit.trace(model, (x,))
    kinds = {node.kind() for node in traced.inlined_graph.nodes()}
    assert "aten::_convolution" in kinds or "aten::conv1d" in kinds, kinds
    assert not any(k.startswith("prim::PythonOp") or k.startswith("sepconv::")
                   for k in kinds), kinds
    torch.testing.assert_close(traced(x), model(x), rtol=1e-5, atol=1e-5)

    # the legacy ONNX exporter runs torch.jit.trace: the same graph, checked by onnxruntime
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import io
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buffer, dynamo=False)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, model(x).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_dispatcher_gives_way_only_while_exporting(monkeypatch):
    """The CPU kernel in eager mode and under torch.compile; the reference under export and
    jit tracing (even when SEPCONV_KERNEL forces the CPU kernel)."""
    from sepconv import functional
    monkeypatch.setenv("SEPCONV_KERNEL", "cpu")
    x, dw, pw = torch.randn(1, 5, 2), torch.randn(2, 2, 1), torch.randn(2, 3)
    assert functional._pick_kernel(x, dw, pw, 1, 1, 5) is cpu.separable_conv1d
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    assert functional._pick_kernel(x, dw, pw, 1, 1, 5) is reference.separable_conv1d


def test_dispatcher_gives_cuda_the_traceable_composition(monkeypatch):
    """On CUDA the composition (kernels/cuda.py: plain torch ops, which every tracer and
    torch.func transform sees through) under compile and under torch.func, even for the
    layers that eager inference sends to Triton (dilated, short, narrow)."""
    from kernel_env import fake_cuda
    from sepconv import functional
    from sepconv.kernels import cuda as compositions
    monkeypatch.delenv("SEPCONV_KERNEL", raising=False)
    monkeypatch.setattr(functional, "_load", lambda name: name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    cuda = fake_cuda((1, 1, 8))
    w, p = torch.randn(3, 8, 1), torch.randn(8, 8)
    triton_available = importlib.util.find_spec("triton") is not None
    # eager: the composition cuda.choice picks (a function of kernels/cuda.py) for a depth
    # multiplier, variant 2 for the others
    w2, p2 = torch.randn(3, 8, 2), torch.randn(16, 8)
    assert functional._pick_kernel(cuda, w2, p2, 1, 1, 1) in compositions.COMPOSITIONS.values()
    for dilation in (1, 8):
        assert functional._pick_kernel(cuda, w, p, 1, dilation, 1) == (
            "triton_v2" if triton_available else "cuda")
    monkeypatch.setattr(torch._C, "_are_functorch_transforms_active", lambda: True)
    assert functional._pick_kernel(cuda, w, p, 1, 8, 1) == "cuda"
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert functional._pick_kernel(cuda, w, p, 1, 8, 1) == "cuda"


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        sepconv.SeparableConv1D(6, 3, padding="causal", dilation_rate=2, depth_multiplier=2,
                                activation="relu", input_shape=(None, 3)),
        sepconv.SeparableConv1D(5, 3, padding="same", strides=2, input_shape=(None, 6),
                                bias_initializer="random_normal"),
        sepconv.SeparableConv1D(4, 2, padding="valid", data_format="channels_first",
                                input_shape=(5, None)))


def _loss(out):
    """A weighted sum, the same weights for every batch item (per-sample sums add up)."""
    return (out * torch.linspace(-1, 1, out[0].numel()).view(out.shape[1:])).sum()


def _eager_grads(model, x):
    x = x.clone().requires_grad_()
    model.zero_grad()
    _loss(model(x)).backward()
    return [x.grad] + [p.grad for p in model.parameters()]


def _chain(model):
    """Channels_first third layer: the Sequential transposes between layers 2 and 3."""
    class Chain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, x):
            return self.m[2](self.m[1](self.m[0](x)).transpose(1, 2))
    return Chain()


@pytest.mark.slow
def test_torch_compile_fullgraph_forward_and_gradients():
    """torch.compile(fullgraph=True) compiles a model of sepconv layers (the kernel as an
    opaque op with a compiled backward op) and gives eager's outputs and gradients."""
    torch._dynamo.reset()
    chain = _chain(_model())
    x = torch.randn(2, 23, 3)
    want = _eager_grads(chain, x)
    want_y = chain(x)
    compiled = torch.compile(chain, fullgraph=True)
    xc = x.clone().requires_grad_()
    chain.zero_grad()
    y = compiled(xc)
    _loss(y).backward()
    torch.testing.assert_close(y, want_y, rtol=1e-5, atol=1e-5)
    for got, exp in zip([xc.grad] + [p.grad for p in chain.parameters()], want):
        torch.testing.assert_close(got, exp, rtol=1e-4, atol=1e-5)


def test_torch_func_grad_functional_call_and_vmap():
    """torch.func.grad over functional_call equals autograd's gradients; vmap over a batch
    of inputs equals a loop; vmap over stacked weights (an ensemble) equals each member."""
    chain = _chain(_model())
    x = torch.randn(2, 23, 3)
    want = _eager_grads(chain, x)
    params = dict(chain.named_parameters())

    def loss(p, x):
        return _loss(torch.func.functional_call(chain, p, (x,)))

    grads = torch.func.grad(loss, argnums=(0, 1))(params, x)
    torch.testing.assert_close(grads[1], want[0], rtol=1e-4, atol=1e-5)
    for got, exp in zip(grads[0].values(), want[1:]):
        torch.testing.assert_close(got, exp, rtol=1e-4, atol=1e-5)

    xs = torch.randn(3, 2, 23, 3)
    with torch.no_grad():
        batched = torch.func.vmap(chain)(xs)
        torch.testing.assert_close(batched, torch.stack([chain(x) for x in xs]))

    members = [_chain(_model(seed)) for seed in (1, 2)]
    stacked = {name: torch.stack([dict(m.named_parameters())[name].detach()
                                  for m in members]) for name in params}
    with torch.no_grad():
        out = torch.func.vmap(lambda p: torch.func.functional_call(chain, p, (x,)))(stacked)
        for i, member in enumerate(members):
            torch.testing.assert_close(out[i], member(x), rtol=1e-5, atol=1e-6)

    # per-sample gradients: vmap(grad), the reference composition under the hood
    per_sample = torch.func.vmap(torch.func.grad(lambda p, x: loss(p, x[None])),
                                 in_dims=(None, 0))(params, x)
    for name, g in per_sample.items():
        torch.testing.assert_close(g.sum(0), grads[0][name], rtol=1e-4, atol=1e-5)


def test_eager_backward_still_frees_the_intermediate_early():
    """Wrapping the kernel in custom ops kept its eager memory behaviour: the intermediate
    is released by the backward pass itself (not when the graph dies) and the graph leaves
    no reference cycle (the node dies with the output, garbage collector off)."""
    import gc
    import weakref
    leaves = [torch.randn(2, 9, 3, requires_grad=True), torch.randn(3, 3, 2, requires_grad=True),
              torch.randn(6, 4, requires_grad=True)]
    kw = dict(stride=1, dilation=1, pad_left=2, pad_right=0, channels_last=True)

    def once():
        y = cpu.separable_conv1d(*leaves, None, **kw)
        node, z2 = weakref.ref(y.grad_fn), weakref.ref(y.grad_fn.z2)
        y.sum().backward()
        freed_by_backward = z2() is None
        del y
        return freed_by_backward, node() is None

    once()  # first call: one-time lazy initialisation
    gc.collect()
    gc.disable()
    try:
        assert once() == (True, True)
    finally:
        gc.enable()
