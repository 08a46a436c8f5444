"""``MultiHeadAttention`` against tf-keras 2.21 (what R keras wraps) and Keras 3.15.

Layer cases copy tf-keras' (randomly initialised) weights into sepconv with
``set_weights(get_weights())`` and compare outputs, attention scores and gradients (inputs
and every weight, through ``tf.GradientTape``) over the argument space: head counts, key
and value sizes, ``output_shape``, ``attention_axes`` on rank-4 inputs, cross-attention with
a separate key, ``attention_mask``, ``use_causal_mask``, both masking formulas, no biases,
masks of fully masked query steps.  Model files (a Transformer encoder with an
``Embedding(mask_zero=True)``, a decoder with causal self-attention and cross-attention, a
model returning its attention scores) are saved by tf-keras and Keras 3 and loaded by
sepconv in a child process without TensorFlow (tests/keras_files.py).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

import sepconv  # noqa: E402
from keras_files import Cases, call_outputs, check, outputs  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")

rng = np.random.default_rng(7)

# (constructor kwargs, query shape, value shape, key shape or None, call kwargs)
CASES = [
    (dict(num_heads=2, key_dim=3), (2, 5, 6), (2, 7, 6), None, {}),
    (dict(num_heads=1, key_dim=4), (3, 4, 5), (3, 4, 5), None, {}),
    (dict(num_heads=3, key_dim=2, value_dim=5, output_shape=(2, 3)),
     (2, 5, 6), (2, 7, 4), (2, 7, 3), {}),
    (dict(num_heads=2, key_dim=3, output_shape=4, use_bias=False), (2, 5, 6), (2, 6, 6),
     None, {}),
    (dict(num_heads=2, key_dim=3), (2, 4, 5, 6), (2, 4, 3, 6), None, {}),
    (dict(num_heads=2, key_dim=3, attention_axes=(1, 2)), (2, 4, 5, 6), (2, 3, 2, 6), None,
     {}),
    (dict(num_heads=2, key_dim=3, attention_axes=1), (2, 4, 5, 6), (2, 3, 5, 6), None, {}),
    (dict(num_heads=2, key_dim=3, attention_axes=-3), (2, 4, 5, 6), (2, 4, 3, 6), None, {}),
    (dict(num_heads=2, key_dim=3), (2, 5, 6), (2, 7, 6), None, {"mask": (2, 5, 7)}),
    (dict(num_heads=2, key_dim=3), (2, 5, 6), (2, 5, 6), None, {"use_causal_mask": True}),
    (dict(num_heads=2, key_dim=3), (2, 5, 6), (2, 4, 6), None, {"use_causal_mask": True}),
    (dict(num_heads=4, key_dim=2, softmax_robust_masking=True), (2, 5, 6), (2, 5, 6), None,
     {"mask": (2, 5, 5), "use_causal_mask": True}),
    (dict(num_heads=2, key_dim=3, attention_axes=(1, 2)), (2, 3, 4, 6), (2, 2, 5, 6), None,
     {"mask": (2, 3, 4, 2, 5)}),
]


def _mask(shape):
    m = rng.random(shape) > 0.4
    m[0, 1] = False  # a query step that sees no key: tf-keras' -1e9 makes it uniform
    return m


def _tf_call(ref, q, v, k, call, mask):
    kw = {"use_causal_mask": call.get("use_causal_mask", False)}
    if mask is not None:
        kw["attention_mask"] = tf.constant(mask)
    return ref(q, v, k, return_attention_scores=True, **kw)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_forward_scores_and_gradients_match_tf_keras(case):
    kwargs, qs, vs, ks, call = CASES[case]
    ref = tf_keras.layers.MultiHeadAttention(**kwargs, bias_initializer="random_normal")
    q, v = (rng.standard_normal(s).astype(np.float32) for s in (qs, vs))
    k = None if ks is None else rng.standard_normal(ks).astype(np.float32)
    mask = _mask(call["mask"]) if "mask" in call else None
    tq, tv = tf.Variable(q), tf.Variable(v)
    tk = None if k is None else tf.Variable(k)
    with tf.GradientTape() as tape:
        out, scores = _tf_call(ref, tq, tv, tk, call, mask)
        loss = tf.reduce_sum(out * out) + tf.reduce_sum(scores * scores)
    sources = [tq, tv] + ([tk] if tk is not None else []) + ref.trainable_weights
    grads = tape.gradient(loss, sources)

    ours = sepconv.MultiHeadAttention(**kwargs)
    ours.build([qs, vs, ks or vs])
    ours.set_weights(ref.get_weights())
    pq, pv = (torch.tensor(a, requires_grad=True) for a in (q, v))
    pk = None if k is None else torch.tensor(k, requires_grad=True)
    o, s = ours(pq, pv, pk, attention_mask=None if mask is None else torch.from_numpy(mask),
                use_causal_mask=call.get("use_causal_mask", False),
                return_attention_scores=True)
    assert tuple(o.shape) == tuple(out.shape) == ours.compute_output_shape(qs)
    assert tuple(s.shape) == tuple(scores.shape)
    np.testing.assert_allclose(o.detach().numpy(), out.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s.detach().numpy(), scores.numpy(), rtol=1e-5, atol=1e-6)
    ((o * o).sum() + (s * s).sum()).backward()
    mine = [pq.grad, pv.grad] + ([pk.grad] if pk is not None else []) + \
        [w.grad for w in ours.weights]
    assert len(mine) == len(grads)
    for a, b in zip(mine, grads):
        np.testing.assert_allclose(a.numpy(), np.asarray(b), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dropout, scores", [(0.0, False), (0.0, True), (0.2, False)])
def test_keras3_masked_softmax_under_the_keras3_flavour(dropout, scores):
    """Keras 3 (torch backend) zeroes the probabilities of a fully masked query step in its
    Softmax, but its fused route (no dropout, no scores returned) gives them the mean of the
    values; tf-keras gives the mean everywhere.  A layer built under the Keras 3 flavour (as
    the loader builds a Keras 3 file's) follows Keras 3 on each route."""
    from sepconv.activations import keras_flavour
    ref = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3, dropout=dropout,
                                          bias_initializer="random_normal")
    q, v = (rng.standard_normal(s).astype(np.float32) for s in ((2, 5, 6), (2, 7, 6)))
    mask = _mask((2, 5, 7))
    want = ref(q, v, attention_mask=mask, return_attention_scores=scores, training=False)
    want = want[0] if scores else want
    with keras_flavour("keras3"):
        ours = sepconv.MultiHeadAttention(num_heads=2, key_dim=3, dropout=dropout)
    ours.build([(2, 5, 6), (2, 7, 6)])
    ours.set_weights([np.asarray(w) for w in ref.get_weights()])
    ours.eval()
    got = ours(torch.from_numpy(q), torch.from_numpy(v),
               attention_mask=torch.from_numpy(mask), return_attention_scores=scores)
    got = got[0] if scores else got
    np.testing.assert_allclose(got.detach().numpy(), np.asarray(want.detach()), atol=1e-5)
    plain = sepconv.MultiHeadAttention(num_heads=2, key_dim=3, dropout=dropout)
    plain.build([(2, 5, 6), (2, 7, 6)])
    plain.set_weights(ours.get_weights())
    plain.eval()
    differs = not np.allclose(plain(torch.from_numpy(q), torch.from_numpy(v),
                                    attention_mask=torch.from_numpy(mask)).detach().numpy(),
                              got.detach().numpy(), atol=1e-5)
    assert differs == (scores or dropout > 0)  # only the zeroed step differs


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shapes", [((2, 5, 6), (2, 7, 6)), ((3, 9, 4), (3, 9, 4)),
                                    ((1, 40, 8), (1, 33, 8))])
def test_fused_route_matches_tf_keras_and_the_explicit_one(shapes, causal, masked):
    """Without scores or dropout the output comes from torch's fused attention (tf-keras'
    -1e9 offsets as its float mask, query steps that see no key included): tf-keras'
    numbers, and the explicit route's gradients."""
    qs, vs = shapes
    ref = tf_keras.layers.MultiHeadAttention(num_heads=2, key_dim=3, value_dim=4,
                                             bias_initializer="random_normal")
    q, v = (rng.standard_normal(s).astype(np.float32) for s in (qs, vs))
    mask = _mask((qs[0], qs[1], vs[1])) if masked else None
    want = ref(q, v, use_causal_mask=causal,
               attention_mask=None if mask is None else tf.constant(mask)).numpy()
    ours = sepconv.MultiHeadAttention(num_heads=2, key_dim=3, value_dim=4)
    ours.build([qs, vs])
    ours.set_weights(ref.get_weights())
    got = []
    for scores in (False, True):
        pq, pv = (torch.tensor(a, requires_grad=True) for a in (q, v))
        o = ours(pq, pv, use_causal_mask=causal, return_attention_scores=scores,
                 attention_mask=None if mask is None else torch.from_numpy(mask))
        o = o[0] if scores else o
        (o * o).sum().backward()
        got.append((o.detach(), pq.grad, pv.grad, [w.grad.clone() for w in ours.weights]))
        ours.zero_grad()
    np.testing.assert_allclose(got[0][0].numpy(), want, rtol=1e-5, atol=1e-5)
    for a, b in zip(got[0][:3], got[1][:3]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(got[0][3], got[1][3]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_fused_route_is_taken_only_where_it_gives_the_same_numbers(monkeypatch):
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(k) or real(*a, **k))
    layer = sepconv.MultiHeadAttention(2, 3, dropout=0.5)
    q = torch.randn(2, 5, 4)
    mask = torch.ones(2, 5, 5, dtype=torch.bool)
    layer.eval()
    layer(q, q, use_causal_mask=True)
    assert len(calls) == 1 and calls[0]["attn_mask"] is None and calls[0]["is_causal"]
    layer(q, q, attention_mask=mask, use_causal_mask=True)  # tf-keras' additive offsets
    assert calls[1]["attn_mask"].shape == (2, 1, 5, 5) and not calls[1]["is_causal"]
    layer(q, q, query_mask=torch.ones(2, 5, dtype=torch.bool))
    assert len(calls) == 3
    layer(q, q, return_attention_scores=True)
    layer(torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4))  # two attention axes
    robust = sepconv.MultiHeadAttention(2, 3, softmax_robust_masking=True).eval()
    robust(q, q, attention_mask=mask)  # replaced, not added: not SDPA's formula
    from sepconv.activations import keras_flavour
    with keras_flavour("keras3"):
        k3 = sepconv.MultiHeadAttention(2, 3, dropout=0.1).eval()
    k3(q, q, attention_mask=mask)  # Keras 3's Softmax zeroes masked probabilities
    layer.train()
    layer(q, q)  # dropout
    assert len(calls) == 3


@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(heads=st.integers(1, 3), key_dim=st.integers(1, 5), value_dim=st.integers(1, 5),
       out=st.one_of(st.none(), st.integers(1, 4)), use_bias=st.booleans(),
       t=st.integers(1, 7), s=st.integers(1, 7), dq=st.integers(1, 5),
       dv=st.integers(1, 5), masked=st.booleans(), causal=st.booleans(),
       scores=st.booleans())
def test_drawn_attention_matches_tf_keras(heads, key_dim, value_dim, out, use_bias, t, s, dq,
                                          dv, masked, causal, scores):
    """Drawn arguments, shapes and masks (fully masked query steps included), both routes:
    sepconv's output equals tf-keras' (the scores too where asked for)."""
    r = np.random.default_rng(heads * 100 + t * 10 + s)
    kwargs = dict(num_heads=heads, key_dim=key_dim, value_dim=value_dim, output_shape=out,
                  use_bias=use_bias)
    ref = tf_keras.layers.MultiHeadAttention(**kwargs, bias_initializer="random_normal")
    q = r.standard_normal((2, t, dq)).astype(np.float32)
    v = r.standard_normal((2, s, dv)).astype(np.float32)
    mask = (r.random((2, t, s)) > 0.4) if masked else None
    call = dict(use_causal_mask=causal, return_attention_scores=scores)
    want = ref(q, v, attention_mask=None if mask is None else tf.constant(mask), **call)
    ours = sepconv.MultiHeadAttention(**kwargs)
    ours.build([q.shape, v.shape])
    ours.set_weights(ref.get_weights())
    got = ours(torch.from_numpy(q), torch.from_numpy(v),
               attention_mask=None if mask is None else torch.from_numpy(mask), **call)
    want = want if scores else [want]
    got = got if scores else [got]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.detach().numpy(), np.asarray(w), rtol=1e-5, atol=1e-5)


def test_weights_names_shapes_and_config_follow_tf_keras():
    kwargs = dict(num_heads=3, key_dim=2, value_dim=5, output_shape=(2, 3), dropout=0.1,
                  attention_axes=[1], kernel_regularizer="l2", bias_constraint="non_neg")
    ref = tf_keras.layers.MultiHeadAttention(**kwargs)
    ref(np.zeros((1, 4, 6), np.float32), np.zeros((1, 5, 4), np.float32),
        np.zeros((1, 5, 3), np.float32))
    ours = sepconv.MultiHeadAttention(**kwargs, query_shape=(None, 4, 6),
                                      value_shape=(None, 5, 4), key_shape=(None, 5, 3))
    assert ours.built  # tf-keras' config keys build the layer, as its from_config does
    assert [tuple(w.shape) for w in ours.weights] == \
        [tuple(w.shape) for w in ref.get_weights()]
    theirs, mine = ref.get_config(), ours.get_config()
    for key in theirs:
        if key in ("name", "dtype"):
            continue
        a, b = theirs[key], mine[key]
        if key.endswith("_shape") or key == "attention_axes":  # (batch sizes: 1 vs None)
            cut = 1 if key in ("query_shape", "value_shape", "key_shape") else 0
            a = None if a is None else list(a)[cut:]
            b = None if b is None else list(b)[cut:]
        if isinstance(a, dict):
            assert a["class_name"] == b["class_name"], key
        else:
            assert a == b, key
    again = sepconv.MultiHeadAttention.from_config(mine)
    assert again.built and [tuple(w.shape) for w in again.weights] == \
        [tuple(w.shape) for w in ours.weights]
    assert len(ours.losses) == 4  # the four kernels' L2 penalties
    ours.set_weights(ref.get_weights())
    np.testing.assert_allclose(float(sum(ours.losses)),
                               float(tf.add_n(ref.losses)), rtol=1e-6)


def test_gradcheck_float64_with_masks():
    layer = sepconv.MultiHeadAttention(2, 3, value_dim=2, dtype="float64",
                                       bias_initializer="random_normal")
    q = torch.randn(2, 4, 5, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    layer.build([tuple(q.shape), tuple(v.shape)])
    # every query step sees a key: at a fully masked step the -1e9 offset leaves float64
    # too few digits for finite differences (the last test compares those with tf-keras)
    mask = torch.tensor(_mask((2, 4, 3)))
    mask[:, :, 0] = True
    assert torch.autograd.gradcheck(
        lambda a, b: layer(a, b, attention_mask=mask, value_mask=torch.tensor(
            [[True, True, False], [True] * 3])), (q, v))


def test_input_masks_combine_as_tf_keras_computes_them():
    """tf-keras ANDs the query's mask (B, T, 1), the value's and key's (B, 1, S), the
    causal mask and ``attention_mask``: compare with the same layer given that product as
    ``attention_mask`` (computed here with numpy)."""
    layer = sepconv.MultiHeadAttention(2, 3)
    q, v = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    qm, vm = _mask((2, 5)), _mask((2, 5))
    am = _mask((2, 5, 5))
    want = qm[:, :, None] & vm[:, None, :] & np.tril(np.ones((5, 5), bool))[None] & am
    got = layer(q, v, attention_mask=torch.from_numpy(am), use_causal_mask=True,
                query_mask=torch.from_numpy(qm), value_mask=torch.from_numpy(vm))
    expected = layer(q, v, attention_mask=torch.from_numpy(want))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    other = layer(q, v, attention_mask=torch.from_numpy(am))
    assert not torch.allclose(got, other)


def test_dropout_only_in_training():
    layer = sepconv.MultiHeadAttention(2, 3, dropout=0.5)
    q = torch.randn(2, 5, 4)
    layer.eval()
    torch.testing.assert_close(layer(q, q), layer(q, q))
    layer.train()
    torch.manual_seed(0)
    a = layer(q, q)
    assert not torch.allclose(a, layer(q, q, training=False))


def test_r_function_takes_the_inputs_list():
    q, v = torch.randn(2, 5, 4), torch.randn(2, 6, 4)
    layer = sepconv.layer_multi_head_attention(num_heads=2.0, key_dim=3.0)
    assert isinstance(layer, sepconv.MultiHeadAttention) and layer.num_heads == 2
    out = sepconv.layer_multi_head_attention([q, v], num_heads=2, key_dim=3, name="r_mha")
    assert tuple(out.shape) == (2, 5, 4)
    with pytest.raises(ValueError, match="key_dim"):
        sepconv.layer_multi_head_attention([q, v], num_heads=2, key_dim=2.5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_heads=0, key_dim=2), "num_heads"),
    (dict(num_heads=2, key_dim=-1), "key_dim"),
    (dict(num_heads=2, key_dim=2, dropout=1.5), "dropout"),
    (dict(num_heads=2, key_dim=2, attention_axes="time"), "attention_axes"),
])
def test_bad_arguments_name_themselves(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        sepconv.MultiHeadAttention(**kwargs)


def test_bad_inputs_say_what_was_expected():
    layer = sepconv.MultiHeadAttention(2, 3)
    layer(torch.randn(2, 5, 4), torch.randn(2, 6, 4))
    with pytest.raises(ValueError, match=r"value of shape \(batch, \.\.\., 4\)"):
        layer(torch.randn(2, 5, 4), torch.randn(2, 6, 3))
    with pytest.raises(ValueError, match="`value` and `key`"):
        layer(torch.randn(2, 5, 4), torch.randn(2, 6, 4), torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match="attention_axes"):
        sepconv.MultiHeadAttention(2, 3, attention_axes=3)(torch.randn(2, 5, 4),
                                                            torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match="use_causal_mask needs inputs of rank 3"):
        x = torch.randn(2, 3, 5, 4)
        sepconv.MultiHeadAttention(2, 3)(x, x, use_causal_mask=True)


# -- Attention and AdditiveAttention -------------------------------------------------------
DENSE_CASES = [
    ("Attention", dict(), (2, 5, 4), (2, 6, 4), None),
    ("Attention", dict(use_scale=True), (2, 5, 4), (2, 6, 3), (2, 6, 4)),
    ("Attention", dict(score_mode="concat"), (2, 5, 4), (2, 6, 4), None),
    ("Attention", dict(score_mode="concat", use_scale=True), (2, 5, 4), (2, 6, 4), None),
    ("AdditiveAttention", dict(), (2, 5, 4), (2, 6, 4), None),
    ("AdditiveAttention", dict(use_scale=False), (2, 5, 4), (2, 6, 3), (2, 6, 4)),
]


@pytest.mark.parametrize("case", range(len(DENSE_CASES)))
@pytest.mark.parametrize("masks", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_dense_attention_matches_tf_keras(case, masks, causal):
    name, kwargs, qs, vs, ks = DENSE_CASES[case]
    ref = getattr(tf_keras.layers, name)(**kwargs)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in (qs, vs, ks) if s]
    mask = None
    if masks:
        mask = [rng.random(qs[:2]) > 0.3, rng.random(vs[:2]) > 0.3]
        mask[1][:, 0] = True  # tf-keras needs one value step per row
    ref.build([tf.TensorShape(a.shape) for a in arrays])
    if ref.weights:  # off the initial ones, so a missing scale would show
        ref.set_weights([w + rng.standard_normal(w.shape).astype(np.float32) * 0.5
                         for w in ref.get_weights()])
    tvars = [tf.Variable(a) for a in arrays]
    with tf.GradientTape() as tape:
        out, scores = ref(tvars, mask=None if mask is None else [tf.constant(m) for m in mask],
                          return_attention_scores=True, use_causal_mask=causal)
        loss = tf.reduce_sum(out * out) + tf.reduce_sum(scores * scores)
    grads = tape.gradient(loss, tvars + ref.trainable_weights)

    ours = getattr(sepconv, name)(**kwargs)
    ours.build([a.shape for a in arrays])
    ours.set_weights(ref.get_weights())
    pvars = [torch.tensor(a, requires_grad=True) for a in arrays]
    o, s = ours(pvars, mask=None if mask is None else [torch.from_numpy(m) for m in mask],
                return_attention_scores=True, use_causal_mask=causal)
    np.testing.assert_allclose(o.detach().numpy(), out.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s.detach().numpy(), scores.numpy(), rtol=1e-5, atol=1e-6)
    ((o * o).sum() + (s * s).sum()).backward()
    mine = [p.grad for p in pvars] + [w.grad for w in ours.weights]
    assert len(mine) == len(grads)
    for a, b in zip(mine, grads):
        np.testing.assert_allclose(a.numpy(), np.asarray(b), rtol=1e-4, atol=1e-4)
    theirs = ref.get_config()
    for key, value in ours.get_config().items():
        if key not in ("name", "dtype", "causal"):
            assert theirs[key] == value, key


@pytest.mark.parametrize("name", ["Attention", "AdditiveAttention"])
def test_dense_attention_old_causal_argument_matches_tf_keras(name):
    """tf-keras still takes the deprecated ``causal=True`` constructor argument (older
    files hold it): the same numbers as ``use_causal_mask=True``."""
    q, v = (rng.standard_normal(s).astype(np.float32) for s in ((2, 5, 4), (2, 5, 4)))
    ref = getattr(tf_keras.layers, name)(causal=True)
    want = ref([q, v]).numpy()
    ours = getattr(sepconv, name)(causal=True)
    ours.build([q.shape, v.shape])
    ours.set_weights(ref.get_weights())
    np.testing.assert_allclose(ours([torch.from_numpy(q), torch.from_numpy(v)]).detach().numpy(),
                               want, rtol=1e-5, atol=1e-6)


def test_dense_attention_r_functions_and_errors():
    q, v = torch.randn(2, 5, 4), torch.randn(2, 6, 4)
    out = sepconv.layer_attention([q, v], use_scale=True)
    assert tuple(out.shape) == (2, 5, 4)
    layer = sepconv.layer_additive_attention(use_scale=False)
    assert isinstance(layer, sepconv.AdditiveAttention)
    with pytest.raises(ValueError, match="list of inputs"):
        layer(q)
    with pytest.raises(ValueError, match="length 2 or 3"):
        layer([q])
    with pytest.raises(ValueError, match="score_mode"):
        sepconv.Attention(score_mode="cosine")
    with pytest.raises(ValueError, match="expects query"):
        sepconv.Attention()([q, torch.randn(2, 6, 3), torch.randn(2, 6, 5)])


# -- model files ---------------------------------------------------------------------------
def _encoder(K, name):
    """Keras' time-series Transformer example's encoder block over token ids."""
    L = K.layers
    ids = K.Input((9,), dtype="int32", name="ids")
    x = L.Embedding(20, 8, mask_zero=True, name="emb")(ids)
    a = L.MultiHeadAttention(num_heads=2, key_dim=4, dropout=0.1, name="mha")(x, x)
    x = L.LayerNormalization(epsilon=1e-6, name="ln1")(L.Add(name="res1")([x, a]))
    y = L.Dense(16, activation="relu", name="ff1")(x)
    y = L.Dense(8, name="ff2")(y)
    x = L.LayerNormalization(epsilon=1e-6, name="ln2")(L.Add(name="res2")([x, y]))
    x = L.GlobalAveragePooling1D(name="gap")(x)
    return K.Model(ids, L.Dense(3, activation="softmax", name="head")(x), name=name)


def _decoder(K, name):
    """Causal self-attention, then cross-attention to a memory under an explicit mask;
    the second output is the cross-attention's scores."""
    L = K.layers
    tgt = K.Input((6, 5), name="tgt")
    mem = K.Input((7, 4), name="mem")
    allowed = K.Input((6, 7), dtype="bool", name="allowed")
    s = L.MultiHeadAttention(num_heads=2, key_dim=3, name="self_att")(
        tgt, tgt, use_causal_mask=True)
    x = L.Add(name="res")([tgt, s])
    c, scores = L.MultiHeadAttention(num_heads=3, key_dim=2, value_dim=4, output_shape=6,
                                     name="cross_att")(
        x, mem, attention_mask=allowed, return_attention_scores=True)
    return K.Model([tgt, mem, allowed], [c, scores], name=name)


def _seq2seq(K, name):
    """An LSTM decoder started from the encoder's states (``initial_state=`` tensors)."""
    L = K.layers
    src = K.Input((5, 3), name="src")
    dst = K.Input((4, 2), name="dst")
    _, h, c = L.LSTM(6, return_state=True, name="enc")(src)
    y = L.LSTM(6, return_sequences=True, name="dec")(dst, initial_state=[h, c])
    return K.Model([src, dst], L.Dense(2, name="proj")(y), name=name)


def _inputs(model, seed):
    r = np.random.default_rng(seed)
    out = []
    for t in model.inputs:
        shape = (3,) + tuple(t.shape[1:])
        dtype = str(getattr(t.dtype, "name", t.dtype))
        if "int" in dtype:
            ids = r.integers(1, 20, shape)
            ids[0, 5:] = 0  # padding: masked steps
            ids[1, 2:] = 0
            out.append(ids.astype(np.int32))
        elif "bool" in dtype:
            m = r.random(shape) > 0.3
            m[0, 2] = False
            out.append(m)
        else:
            out.append(r.standard_normal(shape).astype(np.float32))
    return out


def _luong(K, name):
    """A text classifier: a BiLSTM over padded ids, dot-product attention of the states to
    themselves (the Embedding's mask hides the padding), additive attention to a second
    input, pooled."""
    L = K.layers
    ids = K.Input((8,), dtype="int32", name="ids")
    ctx = K.Input((5, 6), name="ctx")
    x = L.Embedding(20, 6, mask_zero=True, name="emb")(ids)
    h = L.Bidirectional(L.LSTM(3, return_sequences=True), name="bilstm")(x)
    a = L.Attention(use_scale=True, name="self_dot")([h, h])
    b = L.AdditiveAttention(name="to_ctx")([h, ctx])
    y = L.Concatenate(name="cat")([a, b])
    y = L.GlobalAveragePooling1D(name="gap")(y)
    return K.Model([ids, ctx], L.Dense(2, name="head")(y), name=name)


MODELS = {"encoder": _encoder, "decoder": _decoder, "seq2seq": _seq2seq, "luong": _luong}
#: Keras 3's legacy .h5 too (its writer drops every entry's module: the mask operations
#: of the Embedding models are told by their configs)
K3_H5 = ("encoder", "decoder", "seq2seq", "luong")
FILES = [(m, w, ext) for m in MODELS for w, exts in (
    ("tk", (".h5", ".keras")), ("k3", (".keras", ".h5") if m in K3_H5 else (".keras",)))
    for ext in exts]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("attention_files"))
    cases = Cases(root)
    tf_keras.utils.set_random_seed(3)
    keras.utils.set_random_seed(3)
    for model_name, build in MODELS.items():
        for writer, K in (("tk", tf_keras), ("k3", keras)):
            model = build(K, f"{writer}_{model_name}")
            x = _inputs(model, seed=len(model_name))
            y = call_outputs(model, x if len(x) > 1 else x[0])
            for ext in [e for m, w, e in FILES if m == model_name and w == writer]:
                path = os.path.join(root, f"{writer}_{model_name}{ext}")
                model.save(path)
                cases.add(f"{model_name}-{writer}{ext}", "model", path, x, y)
    return cases.run()


@pytest.mark.parametrize("model, writer, ext", FILES)
def test_model_file_with_attention_gives_keras_outputs(saved, model, writer, ext):
    check(saved[f"{model}-{writer}{ext}"])


@pytest.mark.parametrize("build", [_encoder, _decoder, _seq2seq, _luong])
def test_loaded_model_saved_back_reads_in_tf_keras(tmp_path, build):
    """Attention's value / key / mask and the LSTM's states as call keywords in tf-keras'
    node format: the file sepconv writes rebuilds in tf-keras with the same outputs."""
    model = build(tf_keras, "m")
    x = _inputs(model, seed=2)
    want = outputs(model.predict(x, verbose=0))
    model.save(tmp_path / "a.h5")
    loaded = sepconv.load_keras_model(tmp_path / "a.h5")
    sepconv.save_keras_model(loaded, tmp_path / "b.h5")
    back = tf_keras.models.load_model(tmp_path / "b.h5")
    for a, b in zip(outputs(back.predict(x, verbose=0)), want):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_keras3_attention_saved_for_tf_keras_warns(tmp_path):
    model = _decoder(keras, "m")
    model.save(tmp_path / "a.keras")
    loaded = sepconv.load_keras_model(tmp_path / "a.keras")
    with pytest.warns(UserWarning, match="self_att, cross_att|cross_att, self_att"):
        sepconv.save_keras_model(loaded, tmp_path / "b.h5")


def test_loaded_encoder_exports_and_compiles(tmp_path):
    """torch.export of a loaded Transformer encoder (Embedding with mask_zero, masks
    through attention and pooling) and torch.compile(fullgraph=True) of the layer give the
    eager numbers."""
    model = _encoder(tf_keras, "m")
    model.save(tmp_path / "e.h5")
    loaded = sepconv.load_keras_model(tmp_path / "e.h5")
    ids = torch.from_numpy(_inputs(model, seed=4)[0]).long()
    program = torch.export.export(loaded, (ids,))
    torch.testing.assert_close(program.module()(ids), loaded(ids), rtol=0, atol=1e-6)
    att = sepconv.MultiHeadAttention(2, 4)
    q = torch.randn(2, 6, 8)
    att(q, q)
    compiled = torch.compile(att, fullgraph=True)
    torch.testing.assert_close(compiled(q, q, use_causal_mask=True),
                               att(q, q, use_causal_mask=True), rtol=1e-5, atol=1e-6)


def _dense_pair(K, name):
    """Attention and AdditiveAttention between two sequences, no masks."""
    L = K.layers
    q = K.Input((5, 4), name="q")
    v = K.Input((6, 4), name="v")
    a = L.Attention(use_scale=True, score_mode="concat", name="luong")([q, v])
    b = L.AdditiveAttention(name="bahdanau")([q, v, v])
    return K.Model([q, v], L.Add(name="sum")([a, b]), name=name)


@pytest.mark.parametrize("build", [_decoder, _dense_pair])
def test_keras3_file_through_sepconv_back_to_keras3(tmp_path, build):
    """A Keras 3 model with attention -> sepconv -> .keras -> Keras 3: the same outputs
    (the attention layers' configs, build shapes and nested weights in Keras 3's layout).
    (Models with Embedding masks hold Keras 3 mask operations, which sepconv does not
    write back.)"""
    model = build(keras, "m")
    x = _inputs(model, seed=5)
    want = outputs(model.predict(x, verbose=0))
    model.save(tmp_path / "a.keras")
    sepconv.save_keras_model(sepconv.load_keras_model(tmp_path / "a.keras"),
                             tmp_path / "b.keras")
    back = keras.saving.load_model(tmp_path / "b.keras")
    for a, b in zip(outputs(back.predict(x, verbose=0)), want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_tf_keras_attention_saved_for_keras3_warns(tmp_path):
    model = _decoder(tf_keras, "m")
    model.save(tmp_path / "a.h5")
    loaded = sepconv.load_keras_model(tmp_path / "a.h5")
    with pytest.warns(UserWarning, match="cross_att, self_att"):
        sepconv.save_keras_model(loaded, tmp_path / "b.keras")
    back = keras.saving.load_model(tmp_path / "b.keras")
    x = _inputs(model, seed=6)
    x[2][:] = True  # no fully masked step: the two Kerases agree
    for a, b in zip(outputs(back.predict(x, verbose=0)), outputs(model.predict(x, verbose=0))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
