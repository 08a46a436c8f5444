"""``GroupQueryAttention`` against Keras 3.15 (torch backend: conftest sets
``KERAS_BACKEND=torch``; R keras3's ``layer_group_query_attention``).

Keras 3 computes on torch tensors, so both layers run under torch autograd: the same
(randomly initialised, copied) weights give the same outputs, attention scores and
gradients of the inputs and of every weight, over grouping (``num_key_value_heads`` 1:
multi-query, equal to ``num_query_heads``: multi-head), cross-attention with a separate
key, ``use_gate``, ``use_bias``, ``sliding_window`` with and without the causal mask, every
kind of mask (fully masked query steps included: Keras 3's fused route gives them the mean
of the values, its Softmax route zeros) and both routes (fused without scores or dropout;
the explicit one with scores or ``dropout > 0``).  Model files: Keras 3 ``.keras`` models
load in a child process without TensorFlow or Keras (tests/keras_files.py), are written
back by ``save_keras_model`` and read by Keras 3; a loaded causal sliding-window model
streams with a key/value cache bounded to the window.
"""

from __future__ import annotations

import inspect
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

keras = pytest.importorskip("keras")

import sepconv  # noqa: E402
from keras_files import Cases, check, outputs  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")

rng = np.random.default_rng(11)
GQA = sepconv.GroupQueryAttention

# (constructor kwargs, query shape, value shape, key shape or None (self-attention when
# the value shape is None), call: masks to draw and use_causal_mask)
CASES = [
    (dict(head_dim=3, num_query_heads=2, num_key_value_heads=2), (2, 5, 6), (2, 7, 6), None,
     {}),
    (dict(head_dim=3, num_query_heads=4, num_key_value_heads=2), (2, 5, 6), (2, 7, 4),
     (2, 7, 3), {"attention_mask": True}),
    (dict(head_dim=2, num_query_heads=3, num_key_value_heads=1), (2, 6, 5), None, None,
     {"use_causal_mask": True}),
    (dict(head_dim=2, num_query_heads=4, num_key_value_heads=2, use_gate=True,
          use_bias=False), (2, 5, 4), (2, 6, 4), None, {"attention_mask": True}),
    (dict(head_dim=2, num_query_heads=4, num_key_value_heads=1, sliding_window=2),
     (2, 7, 4), None, None, {"use_causal_mask": True}),
    (dict(head_dim=3, num_query_heads=2, num_key_value_heads=1, sliding_window=3,
          use_gate=True), (2, 5, 4), (2, 8, 4), None, {}),
    (dict(head_dim=2, num_query_heads=6, num_key_value_heads=3), (2, 5, 4), None, None,
     {"query_mask": True, "value_mask": True, "key_mask": True, "use_causal_mask": True}),
    (dict(head_dim=2, num_query_heads=4, num_key_value_heads=2, sliding_window=2,
          use_gate=True), (2, 6, 3), (2, 4, 3), (2, 4, 5),
     {"attention_mask": True, "use_causal_mask": True}),
]


def _draw_call(call, t, s, r):
    """Keyword arguments for both layers (torch tensors): masks drawn with a fully masked
    query step (attention_mask) and a padded sequence (input masks)."""
    kw = {"use_causal_mask": call.get("use_causal_mask", False)}
    if call.get("attention_mask"):
        m = r.random((2, t, s)) > 0.4
        m[0, 1] = False  # a query step that sees no key
        kw["attention_mask"] = torch.from_numpy(m)
    for name, steps in (("query_mask", t), ("value_mask", s), ("key_mask", s)):
        if call.get(name):
            m = np.ones((2, steps), bool)
            m[1, steps - 2:] = False
            kw[name] = torch.from_numpy(m)
    return kw


def _run(layer, weights, arrays, kw, scores):
    """Output (and scores), and the gradients of the inputs and ``weights``."""
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    q, v = tensors[0], tensors[1] if len(tensors) > 1 else tensors[0]
    k = tensors[2] if len(tensors) > 2 else None
    got = layer(q, v, k, return_attention_scores=scores, **kw)
    out, sc = got if scores else (got, None)
    loss = (out * out).sum() + (0 if sc is None else (sc * sc).sum())
    grads = torch.autograd.grad(loss, tensors + list(weights))
    return [out.detach().numpy(), None if sc is None else sc.detach().numpy()], \
        [g.numpy() for g in grads]


def _pair(kwargs, shapes, **extra):
    """Keras 3's layer built on ``shapes`` and sepconv's with its weights."""
    ref = keras.layers.GroupQueryAttention(**kwargs, **extra,
                                           bias_initializer="random_normal")
    ref.build(*shapes)
    ours = GQA(**kwargs, **extra, bias_initializer="random_normal")
    ours.build(list(shapes))
    ours.set_weights([np.asarray(w) for w in ref.get_weights()])
    return ref, ours


@pytest.mark.parametrize("scores", [False, True])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_forward_scores_and_gradients_match_keras3(case, scores):
    kwargs, qs, vs, ks, call = CASES[case]
    r = np.random.default_rng(case)
    arrays = [r.standard_normal(s).astype(np.float32) for s in (qs, vs, ks) if s]
    shapes = [qs, vs or qs] + ([ks] if ks else [])
    ref, ours = _pair(kwargs, shapes)
    kw = _draw_call(call, qs[1], (vs or qs)[1], r)
    want, want_grads = _run(ref, [w.value for w in ref.trainable_weights], arrays, kw, scores)
    got, grads = _run(ours, ours.weights, arrays, kw, scores)
    assert got[0].shape == want[0].shape == ours.compute_output_shape(qs)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
    if scores:
        assert got[1].shape == (qs[0], kwargs["num_query_heads"], qs[1], (vs or qs)[1])
        np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-6)
    assert len(grads) == len(want_grads) == len(arrays) + len(ref.get_weights())
    for a, b in zip(grads, want_grads):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * max(1.0, abs(b).max()))


@pytest.mark.parametrize("route", ["fused", "scores", "dropout"])
def test_fully_masked_query_steps_as_keras3_gives_them_on_each_route(route):
    """Keras 3's fused route (no dropout, no scores) adds ``-0.7 * float32 max`` where
    masked: a step that sees no key gets the mean of the values; its Softmax (scores
    returned, or ``dropout > 0`` even outside training) gives it zeros.  sepconv gives
    Keras 3's numbers on each route."""
    dropout = 0.3 if route == "dropout" else 0.0
    kwargs = dict(head_dim=2, num_query_heads=4, num_key_value_heads=2, dropout=dropout,
                  use_bias=False)
    ref, ours = _pair(kwargs, [(2, 4, 5), (2, 6, 5)])
    ours.eval()
    q, v = (torch.from_numpy(rng.standard_normal(s).astype(np.float32))
            for s in ((2, 4, 5), (2, 6, 5)))
    mask = torch.ones(2, 4, 6, dtype=torch.bool)
    mask[0, 2] = False
    scores = route == "scores"
    want = ref(q, v, attention_mask=mask, return_attention_scores=scores, training=False)
    got = ours(q, v, attention_mask=mask, return_attention_scores=scores)
    want, got = (want[0], got[0]) if scores else (want, got)
    torch.testing.assert_close(got, want.detach(), rtol=1e-5, atol=1e-6)
    # the masked step: zero attention output (no biases: the output is zero) or the mean
    zero = bool(torch.all(got[0, 2] == 0))
    assert zero == (route != "fused")


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(kv=st.integers(1, 3), repeats=st.integers(1, 3), head_dim=st.integers(1, 4),
       t=st.integers(1, 7), s=st.integers(1, 7), features=st.integers(1, 5),
       window=st.one_of(st.none(), st.integers(1, 4)), causal=st.booleans(),
       masked=st.booleans(), gate=st.booleans(), use_bias=st.booleans(),
       scores=st.booleans(), cross=st.booleans())
def test_drawn_configurations_match_keras3(kv, repeats, head_dim, t, s, features, window,
                                           causal, masked, gate, use_bias, scores, cross):
    """Drawn groupings, sizes, windows, masks (fully masked steps happen), both routes."""
    r = np.random.default_rng(kv * 1000 + t * 100 + s * 10 + head_dim)
    s = s if cross else t
    kwargs = dict(head_dim=head_dim, num_query_heads=kv * repeats, num_key_value_heads=kv,
                  sliding_window=window, use_gate=gate, use_bias=use_bias)
    ref, ours = _pair(kwargs, [(2, t, features), (2, s, features)])
    q = torch.from_numpy(r.standard_normal((2, t, features)).astype(np.float32))
    v = torch.from_numpy(r.standard_normal((2, s, features)).astype(np.float32)) if cross \
        else q
    kw = dict(use_causal_mask=causal, return_attention_scores=scores)
    if masked:
        kw["attention_mask"] = torch.from_numpy(r.random((2, t, s)) > 0.4)
    want = ref(q, v, **kw)
    got = ours(q, v, **kw)
    for a, b in zip(got if scores else [got], want if scores else [want]):
        torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-5)


def test_sliding_window_is_keras3s_symmetric_band():
    """``sliding_window=w``: a step sees the keys within ``w - 1`` steps on either side;
    with the causal mask, itself and the ``w - 1`` before (read off the scores)."""
    layer = GQA(2, 2, 1, sliding_window=3)
    x = torch.randn(1, 8, 4)
    _, band = layer(x, x, return_attention_scores=True)
    _, causal = layer(x, x, return_attention_scores=True, use_causal_mask=True)
    i = torch.arange(8)
    d = i[:, None] - i[None, :]
    assert torch.equal(band[0, 0] > 0, d.abs() < 3)
    assert torch.equal(causal[0, 1] > 0, (d >= 0) & (d < 3))


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kv", [1, 2, 4])
def test_fused_route_equals_the_explicit_one(kv, causal, masked):
    """Without scores or dropout the output comes from torch's fused attention with
    ``enable_gqa`` (no copies of the key / value heads): the explicit route's outputs and
    gradients (masks where every query step sees a key: there the routes agree)."""
    layer = GQA(3, 4, kv, use_gate=True, sliding_window=4 if masked else None,
                bias_initializer="random_normal")
    q, v = torch.randn(2, 9, 5), torch.randn(2, 9, 5)
    mask = None
    if masked:
        mask = (torch.rand(2, 9, 9) > 0.5) | torch.eye(9, dtype=torch.bool)  # sees itself
    got = []
    for scores in (False, True):
        a, b = q.clone().requires_grad_(), v.clone().requires_grad_()
        o = layer(a, b, attention_mask=mask, use_causal_mask=causal,
                  return_attention_scores=scores)
        o = o[0] if scores else o
        grads = torch.autograd.grad((o * o).sum(), [a, b] + layer.weights)
        got.append([o.detach()] + list(grads))
    for x, y in zip(*got):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_fused_route_is_torchs_gqa_kernel_where_keras3_fuses(monkeypatch):
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append((a, k)) or real(*a, **k))
    x = torch.randn(2, 5, 4)
    layer = GQA(2, 4, 2).eval()
    layer(x, x, use_causal_mask=True)
    (q, k, _), kw = calls[0]
    assert kw["enable_gqa"] and kw["is_causal"] and kw["attn_mask"] is None
    assert q.shape[1] == 4 and k.shape[1] == 2  # the key heads are not copied
    GQA(2, 4, 4).eval()(x, x, use_causal_mask=True)
    assert "enable_gqa" not in calls[1][1]
    layer(x, x, attention_mask=torch.ones(2, 5, 5, dtype=torch.bool))
    assert calls[2][1]["attn_mask"].shape == (2, 1, 5, 5)
    layer(x, x, return_attention_scores=True)  # the explicit route
    # dropout, outside training: Keras 3's Softmax route, which zeroes masked steps
    GQA(2, 4, 2, dropout=0.1).eval()(x, x, attention_mask=torch.ones(2, 5, 5).bool())
    assert len(calls) == 3


@pytest.mark.parametrize("flash", [None, False, True])
def test_flash_attention_choices_give_the_same_numbers(flash):
    """``None``: torch picks the kernel; ``True``: the flash kernel only (torch has one on
    CPU too); ``False``: any kernel but flash.  Keras 3.15 refuses dropout with
    ``flash_attention=True`` and scores from such a layer; so does sepconv."""
    x = torch.randn(2, 6, 4)
    base = GQA(2, 4, 2)
    base(x, x)
    layer = GQA(2, 4, 2, flash_attention=flash, weights=base.get_weights())
    mask = torch.rand(2, 6, 6) > 0.3
    mask[..., 0] = True
    torch.testing.assert_close(layer(x, x, attention_mask=mask),
                               base(x, x, attention_mask=mask), rtol=1e-5, atol=1e-6)
    assert "flash_attention" not in layer.get_config()  # nor in Keras 3's
    if flash:
        with pytest.raises(ValueError, match="Dropout is not supported"):
            GQA(2, 4, 2, dropout=0.1, flash_attention=True)
        with pytest.raises(ValueError, match="attention scores"):
            layer(x, x, return_attention_scores=True)


@pytest.mark.parametrize("scores", [False, True])
def test_float64_and_keras3s_float32_fused_route(scores):
    """float64: Keras 3's explicit route computes in float64 (sepconv's equals it to
    1e-12); its fused route goes through ``ops.dot_product_attention``, whose torch
    backend returns float32 there (~1e-7 off), where sepconv stays in float64 (equal to
    a float64 einsum reference written here)."""
    ref, ours = _pair(dict(head_dim=3, num_query_heads=4, num_key_value_heads=2),
                      [(2, 5, 6), (2, 5, 6)], dtype="float64")
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    want = ref(x, x, return_attention_scores=scores)
    got = ours(x, x, return_attention_scores=scores)
    want, got = (want[0], got[0]) if scores else (want, got)
    qk, qb, kk, kb, vk, vb, ok, ob = ours.weights
    q = torch.einsum("bqm,muh->bquh", x, qk) + qb
    k = (torch.einsum("bkm,mvh->bkvh", x, kk) + kb).repeat_interleave(2, 2)
    v = (torch.einsum("bkm,mvh->bkvh", x, vk) + vb).repeat_interleave(2, 2)
    p = torch.einsum("bquh,bkuh->buqk", q / 3 ** 0.5, k).softmax(-1)
    exact = torch.einsum("bquh,uhm->bqm", torch.einsum("buqk,bkuh->bquh", p, v), ok) + ob
    torch.testing.assert_close(got, exact, rtol=1e-12, atol=1e-12)
    close = torch.allclose(want.detach(), exact, rtol=1e-12, atol=1e-12)
    assert close == scores
    torch.testing.assert_close(want.detach(), exact, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scores", [False, True])
def test_gradcheck_float64(scores):
    layer = GQA(2, 4, 2, use_gate=True, sliding_window=3, dtype="float64",
                bias_initializer="random_normal")
    q = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 6, 2, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(2, 5, 6) > 0.4
    mask |= torch.eye(5, 6, dtype=torch.bool)  # every step sees a key

    def f(a, b, c):
        out = layer(a, b, c, attention_mask=mask, return_attention_scores=scores,
                    value_mask=torch.tensor([[True] * 6, [True] * 5 + [False]]))
        return out if not scores else (out[0], out[1])
    assert torch.autograd.gradcheck(f, (q, v, k))


def test_dropout_in_training_only_and_seeded():
    x = torch.randn(2, 6, 4)
    layer = GQA(2, 4, 2, dropout=0.5, seed=3).eval()
    layer(x, x)
    torch.testing.assert_close(layer(x, x), layer(x, x))
    layer.train()
    a = layer(x, x)
    assert not torch.allclose(a, layer(x, x, training=False))
    again = GQA(2, 4, 2, dropout=0.5, seed=3, weights=layer.get_weights())
    torch.testing.assert_close(again(x, x, training=True), a)


def test_weights_names_and_config_follow_keras3():
    kwargs = dict(head_dim=2, num_query_heads=4, num_key_value_heads=2, dropout=0.1,
                  use_gate=True, sliding_window=5, kernel_regularizer="l2",
                  bias_regularizer="l1", activity_regularizer="l2",
                  bias_constraint="non_neg", seed=7)
    ref, ours = _pair(kwargs, [(2, 4, 6), (2, 5, 3), (2, 5, 2)])
    # Keras 3's paths <layer>/query/kernel ..., attention_output/ -> output_
    want = [w.path.split("/", 1)[1].replace("attention_output", "output").replace("/", "_")
            for w in ref.weights]
    assert [n for n, _ in ours.named_parameters()] == want == list(ours.WEIGHT_NAMES)
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in ref.weights]
    theirs, mine = ref.get_config(), ours.get_config()
    assert list(mine) == [k for k in theirs if k != "dtype"] + ["dtype"] or \
        set(mine) == set(theirs)
    for key in theirs:
        if key in ("name", "dtype"):
            continue
        a, b = theirs[key], mine[key]
        if isinstance(a, dict):
            assert a["class_name"].lower() == b["class_name"].lower(), key
        else:
            assert a == b, key
    again = GQA.from_config(mine)
    again.build([(2, 4, 6), (2, 5, 3), (2, 5, 2)])
    assert [tuple(w.shape) for w in again.weights] == [tuple(w.shape) for w in ours.weights]
    keras.layers.GroupQueryAttention.from_config(mine)  # Keras 3 takes sepconv's config
    from_keras = GQA.from_config(theirs)
    assert from_keras.get_config()["sliding_window"] == 5 and from_keras.seed == 7
    # penalties: the kernels' L2, the biases' L1, and Keras 3's activity penalties (each
    # projection, the gate, the output, the scores), divided by the batch size
    q, v, k = (torch.from_numpy(rng.standard_normal(s).astype(np.float32))
               for s in ((2, 4, 6), (2, 5, 3), (2, 5, 2)))
    ours.eval()  # (Keras: no dropout outside training)
    for scores in (False, True):
        ref(q, v, k, return_attention_scores=scores)
        ours(q, v, k, return_attention_scores=scores)
        want = sum(float(x.detach()) for x in ref.losses)
        np.testing.assert_allclose(float(sum(ours.losses).detach()), want, rtol=1e-5)


def test_constraints_project_every_kernel_and_bias():
    """Keras 3 hands the constraints to every projection (the gate's too)."""
    layer = GQA(2, 4, 2, use_gate=True, bias_initializer="random_normal",
                kernel_constraint={"class_name": "MaxNorm",
                                   "config": {"max_value": 0.5, "axis": 0}},
                bias_constraint="non_neg")
    layer.build([(None, None, 4)] * 2)
    sepconv.apply_constraints(layer)
    for name in layer.WEIGHT_NAMES:
        w = getattr(layer, name)
        if name.endswith("_bias"):
            assert bool((w >= 0).all()), name
        else:
            assert float(w.detach().square().sum(0).sqrt().max()) <= 0.5 + 1e-6, name


def test_signature_is_keras3s_then_the_common_arguments():
    ref = inspect.signature(keras.layers.GroupQueryAttention.__init__).parameters
    mine = inspect.signature(GQA.__init__).parameters
    theirs = [(n, p.default) for n, p in ref.items() if n not in ("self", "kwargs")]
    assert [(n, p.default) for n, p in mine.items()][1:len(theirs) + 1] == theirs
    assert list(mine)[len(theirs) + 1:] == [
        "query_shape", "value_shape", "key_shape", "input_shape", "batch_input_shape",
        "batch_size", "dtype", "name", "trainable", "weights"]
    call = [n for n in inspect.signature(keras.layers.GroupQueryAttention.call).parameters
            if n != "self"]
    assert list(inspect.signature(GQA.forward).parameters)[1:] == call


def test_dtype_policies_numpy_inputs_state_dict_and_repr():
    x = rng.standard_normal((2, 5, 4))
    layer = GQA(2, 4, 2, dtype="mixed_bfloat16")
    out = layer(x, x, use_causal_mask=True)
    assert out.dtype == torch.bfloat16 and layer.query_kernel.dtype == torch.float32
    other = GQA(2, 4, 2)
    other.build([(None, None, 4)] * 2)
    other.load_state_dict(layer.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(layer.weights, other.weights))
    assert "num_key_value_heads=2" in repr(GQA(2, 4, 2, sliding_window=3))
    half = GQA(2, 4, 2, dtype="float16")
    assert half(x, x).dtype == torch.float16


def test_exports_and_compiles():
    """torch.export and torch.compile(fullgraph=True) of a gated sliding-window layer
    (the fused route with enable_gqa) give the eager numbers."""
    att = GQA(4, 4, 2, use_gate=True, sliding_window=3)
    q = torch.randn(2, 6, 8)
    want = att(q, q, use_causal_mask=True)
    program = torch.export.export(att, (q, q), {"use_causal_mask": True})
    torch.testing.assert_close(program.module()(q, q, use_causal_mask=True), want,
                               rtol=0, atol=1e-6)
    compiled = torch.compile(att, fullgraph=True)
    torch.testing.assert_close(compiled(q, q, use_causal_mask=True), want, rtol=1e-5,
                               atol=1e-6)


def test_r_function_and_default_name():
    q, v = torch.randn(2, 5, 4), torch.randn(2, 6, 4)
    layer = sepconv.layer_group_query_attention(head_dim=2.0, num_query_heads=4.0,
                                                num_key_value_heads=2.0, sliding_window=3.0)
    assert isinstance(layer, GQA) and layer.sliding_window == 3
    assert layer.name.startswith("grouped_query_attention")  # Keras 3's
    out = sepconv.layer_group_query_attention([q, v], head_dim=2, num_query_heads=2,
                                              num_key_value_heads=1)
    assert tuple(out.shape) == (2, 5, 4)
    with pytest.raises(ValueError, match="head_dim"):
        sepconv.layer_group_query_attention([q, v], head_dim=2.5, num_query_heads=2,
                                            num_key_value_heads=1)


# (kwargs, error, message, whether Keras 3.15 raises a ValueError too)
@pytest.mark.parametrize("kwargs, error, match, keras_too", [
    (dict(head_dim=0, num_query_heads=2, num_key_value_heads=1), ValueError, "head_dim",
     False),
    (dict(head_dim=2, num_query_heads=4, num_key_value_heads=3), ValueError,
     "divisible by `num_key_value_heads`.*num_query_heads=4, num_key_value_heads=3", True),
    (dict(head_dim=2, num_query_heads=4, num_key_value_heads=0), ValueError,
     "num_key_value_heads", False),  # Keras 3: ZeroDivisionError
    (dict(head_dim=2, num_query_heads=2, num_key_value_heads=1, sliding_window=0),
     ValueError, "sliding_window=0", True),
    (dict(head_dim=2, num_query_heads=2, num_key_value_heads=1, sliding_window=True),
     ValueError, "sliding_window", False),  # Keras 3 takes True for 1
    (dict(head_dim=2, num_query_heads=2, num_key_value_heads=1, sliding_window=2.5),
     ValueError, "sliding_window", True),
    (dict(head_dim=2, num_query_heads=2, num_key_value_heads=1, flash_attention="yes"),
     TypeError, "flash_attention", False),
    (dict(head_dim=2, num_query_heads=2, num_key_value_heads=1, dropout=2.0), ValueError,
     "dropout", False),
    (dict(head_dim=2, num_query_heads=2, num_key_value_heads=1, dropout=0.1,
          flash_attention=True), ValueError, "Dropout is not supported", True),
])
def test_bad_arguments_name_themselves(kwargs, error, match, keras_too):
    with pytest.raises(error, match=match):
        GQA(**kwargs)
    if keras_too:
        with pytest.raises(ValueError, match=match.split(".*")[0]):
            keras.layers.GroupQueryAttention(**kwargs)


def test_bad_inputs_say_what_was_expected():
    layer = GQA(2, 4, 2)
    layer(torch.randn(2, 5, 4), torch.randn(2, 6, 4))
    with pytest.raises(ValueError, match=r"value of shape \(batch, steps, 4\)"):
        layer(torch.randn(2, 5, 4), torch.randn(2, 6, 3))
    with pytest.raises(ValueError, match="`value` and `key`"):
        layer(torch.randn(2, 5, 4), torch.randn(2, 6, 4), torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match="query of shape"):
        GQA(2, 4, 2)(torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4))


# -- model files and streaming -------------------------------------------------------------
def _text(K, name):
    """Padded token ids (Embedding mask_zero: the input masks reach the attention), a
    gated GQA block, pooled."""
    L = K.layers
    ids = K.Input((9,), dtype="int32", name="ids")
    x = L.Embedding(20, 8, mask_zero=True, name="emb")(ids)
    a = L.GroupQueryAttention(head_dim=4, num_query_heads=4, num_key_value_heads=2,
                              use_gate=True, name="gqa")(x, x)
    x = L.LayerNormalization(epsilon=1e-6, name="ln")(L.Add(name="res")([x, a]))
    x = L.GlobalAveragePooling1D(name="gap")(x)
    return K.Model(ids, L.Dense(3, activation="softmax", name="head")(x), name=name)


def _decoder(K, name):
    """Causal sliding-window multi-query self-attention, then cross-attention with a
    separate key under an explicit mask, returning its scores."""
    L = K.layers
    tgt = K.Input((6, 8), name="tgt")
    mem = K.Input((7, 8), name="mem")
    key = K.Input((7, 5), name="key")
    allowed = K.Input((6, 7), dtype="bool", name="allowed")
    s = L.GroupQueryAttention(head_dim=3, num_query_heads=2, num_key_value_heads=1,
                              sliding_window=3, name="self_att")(tgt, tgt,
                                                                 use_causal_mask=True)
    x = L.Add(name="res")([tgt, s])
    c, scores = L.GroupQueryAttention(head_dim=2, num_query_heads=4, num_key_value_heads=2,
                                      use_bias=False, name="cross_att")(
        x, mem, key, attention_mask=allowed, return_attention_scores=True)
    return K.Model([tgt, mem, key, allowed], [c, scores], name=name)


def _causal_stack(K, name):
    """What streams: causal Conv1D, causal sliding-window GQA with a gate, feed-forward."""
    L = K.layers
    x = K.Input((None, 3), name="x")
    h = L.Conv1D(8, 3, padding="causal", activation="relu", name="front")(x)
    a = L.GroupQueryAttention(head_dim=4, num_query_heads=4, num_key_value_heads=2,
                              sliding_window=4, use_gate=True, name="att")(
        h, h, use_causal_mask=True)
    h = L.LayerNormalization(name="ln")(L.Add(name="res")([h, a]))
    return K.Model(x, L.Dense(5, name="ff")(h), name=name)


def _inputs(model, seed, batch=3):
    r = np.random.default_rng(seed)
    out = []
    for t in model.inputs:
        shape = (batch,) + tuple(t.shape[1:])
        dtype = str(getattr(t.dtype, "name", t.dtype))
        if "int" in dtype:
            ids = r.integers(1, 20, shape)
            ids[0, 5:] = 0  # padding: masked steps
            ids[1, 2:] = 0
            out.append(ids.astype(np.int32))
        elif "bool" in dtype:
            m = r.random(shape) > 0.3
            m[0, 2] = False  # a query step that sees no key
            out.append(m)
        else:
            out.append(r.standard_normal(shape).astype(np.float32))
    return out


MODELS = {"text": _text, "decoder": _decoder}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("gqa_files"))
    cases = Cases(root)
    keras.utils.set_random_seed(5)
    for model_name, build in MODELS.items():
        model = build(keras, model_name)
        for layer in model.layers:  # random biases too
            layer.set_weights([w + rng.standard_normal(w.shape).astype(np.float32) * 0.3
                               for w in layer.get_weights()])
        x = _inputs(model, seed=len(model_name))
        y = outputs(model.predict(x if len(x) > 1 else x[0], verbose=0))
        for ext in (".keras", ".h5"):
            path = os.path.join(root, f"{model_name}{ext}")
            model.save(path)
            cases.add(model_name + ext, "model", path, x, y)
    return cases.run()


@pytest.mark.parametrize("ext", [".keras", ".h5"])
@pytest.mark.parametrize("model", list(MODELS))
def test_keras3_file_loads_without_tensorflow_and_gives_keras_outputs(saved, model, ext):
    """Keras 3's .keras and legacy .h5 (which names the class by its Python name,
    ``GroupedQueryAttention``)."""
    check(saved[model + ext])


def test_keras3_file_through_sepconv_back_to_keras3(tmp_path):
    """Keras 3 .keras -> sepconv -> .keras -> Keras 3: the same outputs (config, build
    shapes and the nested weights ``grouped_query_attention/_<sub>_dense/vars``)."""
    model = _decoder(keras, "m")
    x = _inputs(model, seed=8)
    want = outputs(model.predict(x, verbose=0))
    model.save(tmp_path / "a.keras")
    loaded = sepconv.load_keras_model(tmp_path / "a.keras")
    sepconv.save_keras_model(loaded, tmp_path / "b.keras")
    back = keras.saving.load_model(tmp_path / "b.keras")
    for a, b in zip(outputs(back.predict(x, verbose=0)), want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert [w.path for w in back.get_layer("self_att").weights] == \
        [w.path for w in model.get_layer("self_att").weights]


def test_causal_sliding_window_streams_with_a_bounded_cache(tmp_path):
    """A loaded Keras 3 model with causal sliding-window GQA streams: the chunks' outputs,
    concatenated, equal Keras' whole-sequence outputs over several chunkings, and the
    key/value cache never holds more than ``sliding_window - 1`` steps."""
    keras.utils.set_random_seed(6)
    model = _causal_stack(keras, "m")
    x = np.random.default_rng(9).standard_normal((2, 23, 3)).astype(np.float32)
    want = model.predict(x, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = sepconv.load_keras_model(tmp_path / "m.keras")
    for cuts in ([1, 1, 4, 9, 17], [23], [0, 5, 6, 7, 8, 20], list(range(23))):
        bounds = sorted(set(cuts) | {0, 23})
        stream, outs, longest = sepconv.stream(loaded), [], 0
        with torch.no_grad():
            for a, b in zip(bounds, bounds[1:]):
                outs.append(stream(torch.from_numpy(x[:, a:b])))
                caches = [s.keys.shape[1] for s in stream.steps
                          if type(s).__name__ == "_CausalAttention"]
                assert len(caches) == 1
                longest = max(longest, caches[0])
        np.testing.assert_allclose(torch.cat(outs, 1).numpy(), want, rtol=1e-5, atol=1e-5)
        assert longest == 3  # sliding_window - 1


def test_gqa_without_window_streams_with_the_growing_cache():
    """Causal multi-query self-attention without a window (from a Keras 3 file) streams
    like MultiHeadAttention, its cache holding every step seen; the stream equals the
    loaded model's whole-sequence output."""
    keras.utils.set_random_seed(7)
    L = keras.layers
    x = keras.Input((None, 4), name="x")
    y = L.GroupQueryAttention(head_dim=3, num_query_heads=3, num_key_value_heads=1,
                              name="att")(x, x, use_causal_mask=True)
    model = keras.Model(x, y)
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        model.save(os.path.join(d, "m.keras"))
        loaded = sepconv.load_keras_model(os.path.join(d, "m.keras"))
    seq = torch.randn(2, 11, 4)
    with torch.no_grad():
        whole = loaded(seq)
        stream = sepconv.stream(loaded)
        parts = [stream(seq[:, a:b]) for a, b in ((0, 3), (3, 4), (4, 11))]
    torch.testing.assert_close(torch.cat(parts, 1), whole, rtol=1e-5, atol=1e-6)
    assert [s.keys.shape[1] for s in stream.steps
            if type(s).__name__ == "_CausalAttention"] == [11]
