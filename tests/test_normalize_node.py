"""``functional.normalize``'s one-node backward (batch and layer normalization in training)
against the composition it replaces (``moments`` + ``batch_normalization`` under autograd)
and float64 finite differences; the layers take it; the tools that need standard ops
(tracing, torch.func) get the composition."""

import pytest
import torch
from hypothesis import given, settings, strategies as st

import sepconv
from sepconv import functional as F
from sepconv.kernels import graphs


def _composition(x, axes, gamma, beta, epsilon):
    mean, variance = F.moments(x, axes)
    return F.batch_normalization(x, mean, variance, beta, gamma, epsilon)


def _draw_case(draw):
    rank = draw(st.integers(2, 4))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank)))
    axes = tuple(sorted(draw(st.sets(st.integers(0, rank - 1), min_size=1, max_size=rank))))
    if draw(st.booleans()):  # batch norm: parameters over the kept axes
        pshape = tuple(1 if a in axes else n for a, n in enumerate(shape))
    else:                    # layer norm: parameters over the normalised axes
        pshape = tuple(n if a in axes else 1 for a, n in enumerate(shape))
    return shape, axes, pshape, draw(st.booleans()), draw(st.booleans())


def _tensors(shape, pshape, scale, center, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=dtype) * 3 + 2).requires_grad_()
    gamma = (torch.rand(pshape, generator=g, dtype=dtype) + 0.5).requires_grad_() \
        if scale else None
    beta = torch.randn(pshape, generator=g, dtype=dtype).requires_grad_() if center else None
    return x, gamma, beta


def _grads(y, inputs, dy, **kw):
    return torch.autograd.grad(y, [t for t in inputs if t is not None], dy, allow_unused=True,
                               **kw)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.data())
def test_gradients_equal_the_composition_float64(data):
    shape, axes, pshape, scale, center = _draw_case(data.draw)
    x, gamma, beta = _tensors(shape, pshape, scale, center, torch.float64, 0)
    y, mean, variance = F.normalize(x, axes, gamma, beta, 1e-3)
    assert type(y.grad_fn).__name__ == "_NormalizeBackward"
    ref = _composition(x, axes, gamma, beta, 1e-3)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    ref_mean, ref_var = F.moments(x, axes)
    torch.testing.assert_close(mean, ref_mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(variance, ref_var, rtol=1e-12, atol=1e-12)
    assert not mean.requires_grad and not variance.requires_grad
    dy = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for got, want in zip(_grads(y, (x, gamma, beta), dy), _grads(ref, (x, gamma, beta), dy)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("axes,pshape", [((0, 1), (1, 1, 4)), ((2,), (1, 1, 4)),
                                         ((1, 2), (1, 3, 4)), ((0, 2), (1, 3, 1))])
def test_gradcheck_and_double_backward(axes, pshape):
    x, gamma, beta = _tensors((5, 3, 4), pshape, True, True, torch.float64, 2)

    def fn(x, gamma, beta):
        return F.normalize(x, axes, gamma, beta, 1e-3)[0]
    assert torch.autograd.gradcheck(fn, (x, gamma, beta))
    # create_graph=True gives the composition's differentiable gradients (TensorFlow's
    # stop_gradient on the mean inside the variance included), so double backward agrees
    dy = torch.randn(5, 3, 4, dtype=torch.float64)
    totals = []
    for f in (fn, lambda x, g, b: _composition(x, axes, g, b, 1e-3)):
        first = _grads(f(x, gamma, beta), (x, gamma, beta), dy, create_graph=True)
        totals.append(_grads(sum((t * t).sum() for t in first), (x, gamma, beta), None))
    for got, want in zip(*totals):
        if want is None:
            assert got is None or not got.any()
        else:
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_float32_is_as_close_to_float64_as_the_composition():
    x, gamma, beta = _tensors((8, 50, 50, 16), (1, 1, 1, 16), True, True, torch.float32, 3)
    x64, g64, b64 = (t.detach().double().requires_grad_() for t in (x, gamma, beta))
    dy = torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    axes = (0, 1, 2)
    exact = _grads(_composition(x64, axes, g64, b64, 1e-3), (x64, g64, b64), dy.double())
    errors = []
    for f in (lambda *a: F.normalize(*a)[0], _composition):
        got = _grads(f(x, axes, gamma, beta, 1e-3), (x, gamma, beta), dy)
        errors.append(max(float((a.double() - b).abs().max() / b.abs().max())
                          for a, b in zip(got, exact)))
    assert errors[0] <= 2 * errors[1] + 1e-7, errors


def test_only_what_is_asked_is_computed():
    x, gamma, beta = _tensors((4, 6, 3), (1, 1, 3), True, True, torch.float32, 5)
    y = F.normalize(x.detach(), (0, 1), gamma, beta, 1e-3)[0]
    dg, db = torch.autograd.grad(y.sum() * 0 + (y * y).sum(), (gamma, beta))
    ref = _composition(x.detach(), (0, 1), gamma, beta, 1e-3)
    rg, rb = torch.autograd.grad((ref * ref).sum(), (gamma, beta))
    torch.testing.assert_close(dg, rg, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(db, rb, rtol=1e-5, atol=1e-5)


def test_the_layers_train_through_the_node():
    torch.manual_seed(0)
    bn = sepconv.BatchNormalization(input_shape=(None, 6)).train()
    ln = sepconv.LayerNormalization(input_shape=(None, 6)).train()
    x = torch.randn(4, 9, 6, requires_grad=True)
    for layer, node in ((bn, "_NormalizeBackward"), (ln, "_LayerNormBackward")):
        assert type(layer(x).grad_fn).__name__ == node
        with torch.no_grad():  # no graph: the composition's forward, the same numbers
            torch.testing.assert_close(layer(x), layer(x.detach()), rtol=0, atol=0)
    before = bn.moving_mean.clone()
    bn(x)
    assert not torch.equal(before, bn.moving_mean)  # the moving statistics still move


def test_tools_that_need_standard_ops_get_the_composition():
    x, gamma, beta = _tensors((3, 4, 5), (1, 1, 5), True, True, torch.float64, 6)

    def loss(x):
        return F.normalize(x, (0, 1), gamma, beta, 1e-3)[0].square().sum()
    got = torch.func.grad(loss)(x.detach())  # an old-style Function would raise here
    want, = torch.autograd.grad(_composition(x, (0, 1), gamma, beta, 1e-3).square().sum(), x)
    torch.testing.assert_close(got, want)
    g, b = gamma.detach(), beta.detach()  # a traced graph's constants must not need grads
    traced = torch.jit.trace(lambda x: F.normalize(x, (0, 1), g, b, 1e-3)[0], x)
    assert "_Normalize" not in str(traced.graph)


def _float32_against_float64(shape, threads, seed):
    x, gamma, beta = _tensors(shape, (1,) * (len(shape) - 1) + (shape[-1],), True, True,
                              torch.float32, seed)
    axes = tuple(range(len(shape) - 1))
    x64, g64, b64 = (t.detach().double().requires_grad_() for t in (x, gamma, beta))
    dy = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1))
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y, mean, variance = F.normalize(x, axes, gamma, beta, 1e-3)
        got = _grads(y, (x, gamma, beta), dy)
    finally:
        torch.set_num_threads(old)
    ref = _composition(x64, axes, g64, b64, 1e-3)
    want = _grads(ref, (x64, g64, b64), dy.double())
    # the float32 formula's own rounding: y = x * (gamma * rstd) + offset and dx's three
    # terms are each as large as |x| or |dy| times gamma * rstd, whatever y's or dx's size
    mean64, var64 = F.moments(x64, axes)
    terms = float((g64 * torch.rsqrt(var64 + 1e-3)).abs().max())
    bounds = [float(ref.abs().max()) + terms * float(x64.abs().max()),
              float(mean64.abs().max()), float(var64.abs().max()),
              terms * float(dy.abs().max()), float(want[1].abs().max()),
              float(want[2].abs().max())]
    for a, b, bound in zip((y, mean, variance) + got, (ref, mean64, var64) + want, bounds):
        assert float((a.double() - b).abs().max()) <= 2e-6 * bound, (shape, a.shape)


def test_the_c_routine_against_float64(monkeypatch):
    from sepconv.kernels import _norm_native
    if _norm_native.load() is None:
        pytest.skip("no C compiler")
    calls = []
    monkeypatch.setattr(_norm_native, "MIN_PARALLEL", 1)  # threads even on small inputs
    real = _norm_native.stats
    monkeypatch.setattr(_norm_native, "stats", lambda x: calls.append(1) or real(x))

    @settings(max_examples=40, deadline=None, derandomize=True)
    @given(rows=st.integers(2, 300), lead=st.integers(1, 3), channels=st.integers(1, 70),
           threads=st.sampled_from([1, 2]))
    def check(rows, lead, channels, threads):
        calls.clear()
        # (two rows at least: one row has variance 0, where x * rstd and the offset cancel
        # to float32 rounding of x / sqrt(epsilon), in any float32 implementation)
        _float32_against_float64((lead, rows, channels), threads, rows + channels)
        assert calls  # the C routine ran
    check()


@pytest.mark.parametrize("shape", [(32, 64, 128, 8), (8, 56, 56, 128), (16, 150, 32)])
def test_the_c_routine_at_model_sizes(shape):
    _float32_against_float64(shape, 2, 11)


def test_a_strided_input_is_read_contiguous():
    # a convolution of one input channel returns NCHW memory seen channels_last
    x = torch.randn(4, 3, 5, 6).permute(0, 2, 3, 1).requires_grad_()
    gamma = torch.rand(1, 1, 1, 3, requires_grad=True)
    y, _, _ = F.normalize(x, (0, 1, 2), gamma, None, 1e-3)
    ref = _composition(x, (0, 1, 2), gamma, None, 1e-3)
    torch.testing.assert_close(y, ref)
    dy = torch.randn(y.shape).permute(0, 1, 2, 3)
    for got, want in zip(_grads(y, (x, gamma), dy), _grads(ref, (x, gamma), dy)):
        torch.testing.assert_close(got, want)


def test_the_c_routine_is_taken_only_where_it_applies():
    from sepconv.kernels import _norm_native
    if _norm_native.load() is None:
        pytest.skip("no C compiler")
    x = torch.randn(4, 5, 6)
    per_channel = torch.ones(1, 1, 6)
    assert _norm_native.takes(x, (0, 1), per_channel, None)
    assert _norm_native.takes(x, (1, 0), None, None)
    assert not _norm_native.takes(x, (0, 2), None, None)                # not the last axis kept
    assert not _norm_native.takes(x, (1,), None, None)                  # batch axis kept
    assert _norm_native.takes(x.transpose(0, 1), (0, 1), None, None)  # copied contiguous
    assert not _norm_native.takes(x.double(), (0, 1), None, None)
    assert not _norm_native.takes(x, (0, 1), torch.ones(1, 5, 6), None)  # not per channel
    assert not _norm_native.takes(x, (0, 1), torch.ones(1, 1, 1), None)  # broadcast (groups)
    g = sepconv.GroupNormalization(groups=1, axis=1, center=False, scale=False,
                                   input_shape=(2,))
    with torch.no_grad():  # group statistics broadcast over the channels: torch ops
        torch.testing.assert_close(g(torch.tensor([[1.0, 3.0]])),
                                   torch.tensor([[-1.0, 1.0]]) / (1 + 1e-3) ** 0.5)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.data())
def test_layer_normalization_equals_the_composition_float64(data):
    rank = data.draw(st.integers(2, 4))
    shape = tuple(data.draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank)))
    trailing = data.draw(st.integers(1, rank - 1))
    axes = tuple(range(rank - trailing, rank)) if data.draw(st.booleans()) else \
        tuple(sorted(data.draw(st.sets(st.integers(1, rank - 1), min_size=1))))
    pshape = tuple(n if a in axes else 1 for a, n in enumerate(shape))
    x, gamma, beta = _tensors(shape, pshape, data.draw(st.booleans()),
                              data.draw(st.booleans()), torch.float64, 3)
    y = F.layer_normalization(x, axes, gamma, beta, 1e-3)
    fused = axes == tuple(range(rank - len(axes), rank))
    assert (type(y.grad_fn).__name__ == "_LayerNormBackward") == fused
    ref = _composition(x, axes, gamma, beta, 1e-3)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    dy = torch.randn(shape, dtype=torch.float64)
    for got, want in zip(_grads(y, (x, gamma, beta), dy), _grads(ref, (x, gamma, beta), dy)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    # double backward: the composition's
    totals = []
    for f in (lambda *a: F.layer_normalization(*a), _composition):
        first = _grads(f(x, axes, gamma, beta, 1e-3), (x, gamma, beta), dy, create_graph=True)
        totals.append(_grads(sum((t * t).sum() for t in first), (x, gamma, beta), None))
    for got, want in zip(*totals):
        if want is None:
            assert got is None or not got.any()
        else:
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_layer_normalization_float32_is_as_close_to_float64():
    x, gamma, beta = _tensors((8, 250, 64), (1, 1, 64), True, True, torch.float32, 9)
    x64, g64, b64 = (t.detach().double().requires_grad_() for t in (x, gamma, beta))
    dy = torch.randn(x.shape)
    want = _grads(_composition(x64, (2,), g64, b64, 1e-3), (x64, g64, b64), dy.double())
    got = _grads(F.layer_normalization(x, (2,), gamma, beta, 1e-3), (x, gamma, beta), dy)
    for a, b in zip(got, want):  # torch's fused backward alone: dgamma 1.5e-6 off
        assert float((a.double() - b).abs().max()) <= 5e-7 * float(b.abs().max())
    layer = sepconv.LayerNormalization(input_shape=(None, 64))
    assert type(layer(x).grad_fn).__name__ == "_LayerNormBackward"


def test_batch_norm_inference_runs_one_c_pass(monkeypatch):
    from sepconv.kernels import _norm_native
    if _norm_native.load() is None:
        pytest.skip("no C compiler")
    calls = []
    real = _norm_native.affine
    monkeypatch.setattr(_norm_native, "affine", lambda *a: calls.append(1) or real(*a))
    bn = sepconv.BatchNormalization(input_shape=(None, 5, 3))
    with torch.no_grad():
        for w in (bn.moving_mean, bn.moving_variance, bn.gamma, bn.beta):
            w.copy_(torch.rand(3) + 0.5)
    bn.eval()
    for x in (torch.randn(4, 7, 5, 3), torch.randn(4, 5, 7, 3).transpose(1, 2)):
        calls.clear()
        with torch.no_grad():
            got = bn(x)
        assert calls
        x64 = x.double()
        inv = torch.rsqrt(bn.moving_variance.double() + 1e-3) * bn.gamma.double()
        want = x64 * inv + (bn.beta.double() - bn.moving_mean.double() * inv)
        torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)
    calls.clear()
    bn(torch.randn(2, 3, 5, 3, requires_grad=True)).sum().backward()  # autograd: torch ops
    assert not calls


def _eval_reference(layer, x):
    """An eval batch norm computed from the layer's tensors as they are now, in float64
    (numpy-free: the composition of ``tf.nn.batch_normalization``'s formula)."""
    p = {n: getattr(layer, n).detach().double() for n in
         ("moving_mean", "moving_variance", "gamma", "beta")}
    inv = p["gamma"] / torch.sqrt(p["moving_variance"] + layer.epsilon)
    return (x.double() * inv + (p["beta"] - p["moving_mean"] * inv)).float()


def test_eval_factors_follow_every_change_of_the_weights():
    """An eval ``BatchNormalization`` keeps its folded ``gamma / sqrt(variance + eps)`` and
    offset between calls: every way the statistics or weights change (in-place updates,
    ``load_state_dict``, ``set_weights``, ``.data`` replaced, a training step, ``epsilon``,
    another dtype) and a new input length show in the next call, bit for bit
    ``functional.batch_normalization`` of plain copies (computed afresh); a call that
    records the input's gradient gets the right one, inference_mode or not."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 7, 6, generator=g)
    layer = sepconv.BatchNormalization(epsilon=1e-3)
    layer(x)
    layer.eval()

    def fresh(inp):  # the factors computed afresh, from plain copies of the tensors
        w = [t.detach().clone().reshape(1, 1, -1) for t in
             (layer.moving_mean, layer.moving_variance, layer.beta, layer.gamma)]
        return F.batch_normalization(inp, *w, layer.epsilon)

    def check(what, inp=x):
        with torch.inference_mode():
            got = layer(inp)
        assert "inference factors" in (graphs._slots(layer, False) or {}), what
        torch.testing.assert_close(got, fresh(inp), atol=0, rtol=0, msg=what)
        torch.testing.assert_close(got, _eval_reference(layer, inp), atol=1e-5, rtol=1e-5,
                                   msg=what)
        with torch.no_grad():
            torch.testing.assert_close(layer(inp), got, atol=0, rtol=0, msg=what)

    check("first call")
    check("second call (remembered)")
    check("another length", torch.randn(1, 4, 6, generator=g))
    with torch.no_grad():
        layer.moving_mean.add_(0.5)
    check("moving_mean changed in place")
    layer.moving_variance.mul_(3.0)
    check("moving_variance changed in place")
    with torch.no_grad():
        layer.gamma.mul_(-2.0)
    check("gamma changed in place")
    state = {k: v.clone() * 1.5 for k, v in layer.state_dict().items()}
    state["moving_variance"] = state["moving_variance"].abs() + 0.1
    layer.load_state_dict(state)
    check("load_state_dict")
    layer.set_weights([w * 0.5 + 0.25 for w in layer.get_weights()])
    check("set_weights")
    layer.beta.data = torch.randn(6, generator=g)
    check(".data replaced")
    layer.gamma.data.mul_(3.0)  # (an alias of its own: gamma's version stays)
    check("written through .data")
    layer.moving_variance.data.add_(0.5)
    check("moving variance written through .data")
    layer.train()
    layer(x * 2 + 1)
    layer.eval()
    check("a training step moved the statistics")
    layer.epsilon = 0.5
    check("epsilon changed")
    # a gradient for the input through the frozen statistics, after an inference_mode call
    xr = x.clone().requires_grad_(True)
    with torch.inference_mode():
        layer(x)
    layer(xr).sum().backward()
    inv = layer.gamma.detach() / torch.sqrt(layer.moving_variance + layer.epsilon)
    torch.testing.assert_close(xr.grad, inv.expand_as(x), atol=1e-6, rtol=1e-6)
    # float64 input under a float64 layer
    layer64 = sepconv.BatchNormalization(dtype="float64")
    layer64(x.double())
    layer64.eval()
    with torch.no_grad():
        layer64.moving_mean.fill_(0.25)
        layer64.moving_variance.fill_(1.0)
        assert layer64(x.double()).dtype == torch.float64
        torch.testing.assert_close(layer64(x.double()), (x.double() - 0.25) /
                                   torch.sqrt(torch.tensor(1 + 1e-3, dtype=torch.float64)))
