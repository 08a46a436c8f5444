"""The exactness gaps closed after tanh / sigmoid: ``swish`` / ``silu``, attention scores'
tanh, and Keras 3's ``MultiHeadAttention`` mask handling.

- ``swish`` / ``silu`` on CPU float32 are ``tf.nn.silu`` (tf-keras' ``swish``) bit for bit:
  ``x * sigmoid(x)`` with TensorFlow's sigmoid (its scalar tail included) and the
  ``custom_gradient`` TensorFlow defines (``dy * (s * (1 + x * (1 - s)))``), against
  ``tf.GradientTape`` over drawn floats and edge values, eager, in ``tf.function`` and in a
  tf-keras ``Activation`` layer's ``predict``.
- ``Attention(score_mode="concat")`` and ``AdditiveAttention`` scores use TensorFlow's tanh:
  bit for bit against tf-keras' ``_calculate_scores`` where the feature sum is one term.
- A ``MultiHeadAttention`` loaded from a Keras 3 file reads its query's mask from the
  tensor and removes the masks of its query, value and key tensors, as Keras 3.15 does:
  a second attention layer on the same tensor runs without them.  Loaded from tf-keras,
  masks stay.  Both against each Keras' ``predict``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

import sepconv  # noqa: E402
from sepconv import activations  # noqa: E402
from sepconv.kernels import _activation_native as native  # noqa: E402
from sepconv.kernels import activation as kernel  # noqa: E402
from test_activation_native import (_draw, _same_bits, check_against_tensorflow,  # noqa: E402
                                    check_compiled_runs_the_routine)

needs_routine = pytest.mark.skipif(native.load() is None,
                                   reason="the C routine cannot be built here")


# -- swish / silu -----------------------------------------------------------------------

@needs_routine
@pytest.mark.parametrize("name", ["swish", "silu"])
def test_swish_is_tf_nn_silu_forward_and_gradient(name):
    ours = activations.get(name)
    theirs = tf_keras.activations.get("swish")
    x_all = _draw(60_000, 11)
    check_against_tensorflow(ours, theirs, x_all, (1, 6, 8, 13, 1029, 70_001, x_all.size), 12,
                             name)


@needs_routine
def test_swish_in_graphs_and_layers():
    """tf.function and a tf-keras ``Activation("swish")`` / ``Dense(activation="swish")``
    in ``predict`` (oneDNN's rewrites off, as the tests run TensorFlow), multi-dimensional
    and non-contiguous inputs."""
    x = _draw(4_000, 13)[:3 * 5 * 7 * 11].reshape(3, 5, 7, 11)
    xt = torch.from_numpy(x.copy()).permute(0, 3, 1, 2)
    graph = tf.function(tf_keras.activations.swish)
    _same_bits(activations.swish(xt).numpy(), graph(tf.constant(xt.numpy())).numpy(),
               "tf.function")
    model = tf_keras.Sequential([tf_keras.layers.Activation("swish")])
    pred = model.predict(x, verbose=0, batch_size=3)
    _same_bits(sepconv.Activation("swish")(torch.from_numpy(x)).numpy(), pred, "Activation")
    # Dense on 3D inputs with 1 input feature: the product is exact, the activation decides
    w = np.float32([[1.0, -2.0, 0.5]])
    b = np.float32([0.25, 0.0, -1.0])
    xd = np.random.default_rng(14).normal(0, 3, (4, 9, 1)).astype(np.float32)
    theirs = tf_keras.Sequential([tf_keras.layers.Dense(3, activation="swish",
                                                        input_shape=(9, 1))])
    theirs.set_weights([w, b])
    ours = sepconv.Dense(3, activation="swish")
    ours(torch.from_numpy(xd))
    ours.set_weights([w, b])
    _same_bits(ours(torch.from_numpy(xd)).detach().numpy(),
               theirs.predict(xd, verbose=0), "Dense(activation='swish')")


@needs_routine
def test_swish_gradcheck_compile_and_torch_paths(torch_single_thread):
    x64 = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(activations.swish, (x64,))  # torch's silu (float64)
    assert torch.autograd.gradgradcheck(activations.swish, (x64,))
    # float32 through the routine: the gradient against central differences, the double
    # backward (create_graph: torch operations) against float64's
    x = torch.linspace(-8, 8, 97).requires_grad_(True)
    (g,) = torch.autograd.grad(activations.swish(x).sum(), x, create_graph=True)
    eps = 1e-2
    numeric = (activations.swish(x.detach() + eps) - activations.swish(x.detach() - eps)) / \
        (2 * eps)
    torch.testing.assert_close(g.detach(), numeric, atol=3e-4, rtol=1e-3)
    (gg,) = torch.autograd.grad(g.sum(), x)
    x64 = x.detach().double().requires_grad_(True)
    (g64,) = torch.autograd.grad(torch.nn.functional.silu(x64).sum(), x64, create_graph=True)
    (gg64,) = torch.autograd.grad(g64.sum(), x64)
    torch.testing.assert_close(gg, gg64.float(), atol=1e-5, rtol=1e-4)
    # torch.compile runs the custom ops, with the eager numbers
    check_compiled_runs_the_routine(activations.swish, torch.from_numpy(_draw(2_000, 15)))
    # export / other dtypes: torch's silu
    class Net(torch.nn.Module):
        def forward(self, t):
            return activations.swish(t)

    exported = torch.export.export(Net(), (torch.randn(3, 4),))
    targets = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert not any("sepconv" in t for t in targets), targets
    xb = torch.randn(50, dtype=torch.bfloat16)
    before = kernel.CALLS
    torch.testing.assert_close(activations.swish(xb), torch.nn.functional.silu(xb))
    assert kernel.CALLS == before


@needs_routine
def test_swish_differs_from_torchs_silu():
    """Not torch's numbers (the test above cannot pass by torch's silu alone)."""
    x = torch.from_numpy(np.random.default_rng(16).normal(0, 3, 100_000).astype(np.float32))
    ours, torchs = activations.swish(x).numpy(), torch.nn.functional.silu(x).numpy()
    assert (ours != torchs).mean() > 0.2
    np.testing.assert_allclose(ours, torchs, rtol=2e-6, atol=1e-30)


# -- exp-based: exponential, elu, selu, softplus, mish -----------------------------------

EXP_BASED = [("exponential", "exponential"), ("elu", "elu"), ("selu", "selu"),
             ("softplus", "softplus")]


@needs_routine
@pytest.mark.parametrize("name,tf_name", EXP_BASED)
def test_exp_based_are_tensorflows_forward_and_gradient(name, tf_name):
    """Eigen's ``pexp_float`` (both ldexp paths: |x| > 87 and the -104 cut; ``expf`` for
    the scalar tail), ``exp(x) - 1`` for Elu / Selu, Eigen's ``log1p`` and TensorFlow's
    thresholds for Softplus; gradients ``dy * y``, ``EluGrad``, ``SeluGrad``,
    ``dy * sigmoid(x)``."""
    ours = activations.get(name)
    theirs = tf_keras.activations.get(tf_name)
    edges = np.float32([88.0, 88.72, 88.723, 88.8, 100.0, -87.0, -87.2, -87.33, -87.5, -90.0,
                        -103.9, -104.0001, 87.0, 87.01, 13.942385, -13.942385, 13.9424,
                        -13.9424, 15.0, -15.0])
    x_all = np.concatenate([edges, _draw(50_000, 21)])
    check_against_tensorflow(ours, theirs, x_all, (1, 5, 8, 21, 1029, x_all.size), 22, name)
    # in a layer's predict (a graph) and multi-dimensional, non-contiguous
    x = _draw(4_000, 23)[:3 * 5 * 7 * 11].reshape(3, 5, 7, 11)
    model = tf_keras.Sequential([tf_keras.layers.Activation(tf_name)])
    xt = torch.from_numpy(x.copy()).permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    _same_bits(sepconv.Activation(name)(xt).numpy(), model.predict(x, verbose=0), name)


@needs_routine
def test_mish_is_tf_keras_but_for_flushed_denormals():
    """tf-keras' ``x * tanh(softplus(x))``: TensorFlow's ops composed, so bit for bit
    except where a product is below 2^-126 (TensorFlow flushes it to 0, torch's multiply
    keeps the denormal): differences of at most 1.2e-38."""
    x = _draw(50_000, 24)
    dy = np.random.default_rng(25).normal(0, 1, x.size).astype(np.float32)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    y = activations.mish(xt)
    (gx,) = torch.autograd.grad(y, xt, torch.from_numpy(dy))
    xv = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xv)
        yv = tf_keras.activations.mish(xv)
    gv = tape.gradient(yv, xv, output_gradients=tf.constant(dy)).numpy()
    for what, a, b in (("forward", y.detach().numpy(), yv.numpy()), ("gradient", gx.numpy(), gv)):
        nan = np.isnan(a) & np.isnan(b)
        bad = (a.view(np.uint32) != b.view(np.uint32)) & ~nan
        assert bad.mean() < 1e-2, what
        assert np.abs(a[bad] - b[bad]).max(initial=0) < 1.2e-38, what
    ours = y.detach().numpy()
    torchs = torch.nn.functional.mish(torch.from_numpy(x)).numpy()
    assert ((ours != torchs) & ~np.isnan(ours)).mean() > 0.2  # not torch's numbers


def test_softsign_gradient_is_softsigngrad(torch_single_thread):
    """``SoftsignGrad`` ``dy / (|x| + 1)^2`` bit for bit (torch's autograd of the quotient
    differs in most elements); the forward ``x / (|x| + 1)`` is the same operations
    (denormal inputs and results left out: TensorFlow flushes them)."""
    x = _draw(20_000, 29)
    x = x[~(np.abs(x) < np.finfo(np.float32).tiny) | (x == 0)]
    dy = np.random.default_rng(30).normal(0, 1, x.size).astype(np.float32)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    y = activations.softsign(xt)
    (gx,) = torch.autograd.grad(y, xt, torch.from_numpy(dy))
    xv = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xv)
        yv = tf_keras.activations.softsign(xv)
    gv = tape.gradient(yv, xv, output_gradients=tf.constant(dy))
    _same_bits(y.detach().numpy(), yv.numpy(), "softsign forward")
    # (results below 2^-126: TensorFlow flushes them to 0, torch's division does not)
    g = gx.numpy().copy()
    g[np.abs(g) < np.finfo(np.float32).tiny] = 0.0
    _same_bits(g, gv.numpy(), "softsign gradient", zero_sign=False)
    x64 = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(activations.softsign, (x64,))
    x32 = torch.linspace(-4, 4, 33).requires_grad_(True)
    (g,) = torch.autograd.grad(activations.softsign(x32).sum(), x32, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x32)
    x64 = x32.detach().double().requires_grad_(True)
    (g64,) = torch.autograd.grad(torch.nn.functional.softsign(x64).sum(), x64,
                                 create_graph=True)
    (gg64,) = torch.autograd.grad(g64.sum(), x64)
    keep = x32.detach() != 0
    torch.testing.assert_close(gg[keep], gg64.float()[keep], atol=1e-5, rtol=1e-4)


@needs_routine
@pytest.mark.parametrize("alpha", [1.0, 0.3])
def test_elu_layer_is_tf_keras(alpha):
    x = _draw(3_000, 26)[:2 * 1500].reshape(2, 1500)
    # (alpha != 1 selects with ``x > 0`` in TensorFlow, where denormals compare as 0: not
    # copied, denormal inputs are left out)
    x[np.abs(x) < np.finfo(np.float32).tiny] = 0.0
    theirs = tf_keras.layers.ELU(alpha=alpha)
    ours = sepconv.ELU(alpha=alpha)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    y = ours(xt)
    dy = np.random.default_rng(27).normal(0, 1, x.shape).astype(np.float32)
    (gx,) = torch.autograd.grad(y, xt, torch.from_numpy(dy))
    xv = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xv)
        yv = theirs(xv)
    gv = tape.gradient(yv, xv, output_gradients=tf.constant(dy))
    _same_bits(y.detach().numpy(), yv.numpy(), f"ELU({alpha})")
    _same_bits(gx.numpy(), gv.numpy(), f"ELU({alpha}) gradient")


@needs_routine
def test_exp_based_gradcheck_compile_and_fallbacks(torch_single_thread):
    fns = [activations.exponential, activations.elu, activations.selu, activations.softplus,
           activations.mish]
    x64 = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    for fn in fns:  # float64: torch's operations
        assert torch.autograd.gradcheck(fn, (x64,))
        assert torch.autograd.gradgradcheck(fn, (x64,))
    x = torch.linspace(-5, 3, 89).requires_grad_(True)
    for fn, exact in zip(fns, [torch.exp, torch.nn.functional.elu, torch.nn.functional.selu,
                               torch.nn.functional.softplus, torch.nn.functional.mish]):
        (g,) = torch.autograd.grad(fn(x).sum(), x, create_graph=True)
        x64 = x.detach().double().requires_grad_(True)
        (g64,) = torch.autograd.grad(exact(x64).sum(), x64, create_graph=True)
        torch.testing.assert_close(g.detach(), g64.detach().float(), atol=2e-5, rtol=1e-5)
        (gg,) = torch.autograd.grad(g.sum(), x)
        (gg64,) = torch.autograd.grad(g64.sum(), x64)
        keep = x.detach().abs() > 1e-3  # elu / selu: the second derivative jumps at 0
        torch.testing.assert_close(gg[keep], gg64.float()[keep], atol=2e-5, rtol=1e-4)
    xc = torch.from_numpy(_draw(2_000, 28))
    for fn in fns:
        check_compiled_runs_the_routine(fn, xc)
    xb = torch.randn(50, dtype=torch.bfloat16)
    before = kernel.CALLS
    for fn in fns:
        fn(xb)
    assert kernel.CALLS == before


# -- attention scores -------------------------------------------------------------------

@needs_routine
@pytest.mark.parametrize("name,kwargs", [
    ("AdditiveAttention", dict(use_scale=True)), ("AdditiveAttention", dict(use_scale=False)),
    ("Attention", dict(score_mode="concat")),
    ("Attention", dict(score_mode="concat", use_scale=True))])
def test_attention_scores_use_tensorflows_tanh(name, kwargs):
    """One feature: the score is ``scale * tanh(q + k)`` (one rounding after TensorFlow's
    tanh), so the scores are TensorFlow's bit for bit; scale weights drawn."""
    rng = np.random.default_rng(17)
    q = rng.normal(0, 2, (3, 40, 1)).astype(np.float32)
    k = rng.normal(0, 2, (3, 50, 1)).astype(np.float32)
    theirs = getattr(tf_keras.layers, name)(**kwargs)
    theirs([tf.constant(q), tf.constant(k)])
    weights = [rng.normal(0, 1, w.shape).astype(np.float32) for w in theirs.get_weights()]
    theirs.set_weights(weights)
    ours = getattr(sepconv, name)(**kwargs)
    ours([torch.from_numpy(q), torch.from_numpy(k)])
    ours.set_weights(weights)
    want = theirs._calculate_scores(tf.constant(q), tf.constant(k)).numpy()
    got = ours._scores(torch.from_numpy(q), torch.from_numpy(k)).detach().numpy()
    _same_bits(got, want, f"{name}{kwargs} scores", zero_sign=False)


# -- MultiHeadAttention masks, Keras 3 against tf-keras -----------------------------------

STEPS, VOCAB, DIM = 6, 10, 4


def _mha_model(K, name):
    """Attention layers sharing masked tensors: ``mha1(e, e)`` runs first (in both
    Kerases' order) and, in Keras 3, removes ``e``'s mask; ``mha2(e, e)`` then has no
    query or value mask there; ``mha4`` (explicit ``query_mask=None``) reads its query's
    mask all the same and removes ``f``'s, which ``mha3`` then lacks; the pooling's mask
    is an explicit node argument in Keras 3 (kept)."""
    L = K.layers
    ids = K.Input((STEPS,), dtype="int32", name="ids")
    e = L.Embedding(VOCAB, DIM, mask_zero=True, name="emb")(ids)
    f = L.Embedding(VOCAB, DIM, mask_zero=True, name="emb_f")(ids)
    a1 = L.MultiHeadAttention(2, 3, name="mha1")(e, e)
    a2 = L.MultiHeadAttention(2, 3, name="mha2")(e, e)
    a3 = L.MultiHeadAttention(2, 3, name="mha3")(f, e, e)
    kw = dict(query_mask=None) if K is keras else {}
    a4 = L.MultiHeadAttention(2, 3, name="mha4")(a1, f, **kw)
    g = L.GlobalAveragePooling1D(name="gap")(e)
    return K.Model(ids, [a1, a2, a3, a4, g], name=name)


@pytest.fixture(scope="module")
def mha_files(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("mha_masks"))
    ids = np.array([[1, 2, 3, 0, 0, 0], [4, 5, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6],
                    [7, 0, 0, 0, 0, 0]], dtype=np.int32)
    out = {}
    tf_keras.utils.set_random_seed(3)
    keras.utils.set_random_seed(3)
    for writer, K, suffix in (("k3", keras, ".keras"), ("tk", tf_keras, ".keras"),
                              ("tk_h5", tf_keras, ".h5")):
        model = _mha_model(K, f"{writer}_mha")
        path = os.path.join(root, writer + suffix)
        model.save(path)
        out[writer] = (path, [np.asarray(y) for y in model.predict(ids, verbose=0)], model)
    return ids, out


@pytest.mark.parametrize("writer", ["k3", "tk", "tk_h5"])
def test_mha_masks_as_each_keras_handles_them(mha_files, writer):
    ids, files = mha_files
    path, expected, _ = files[writer]
    model = sepconv.load_keras_model(path)
    with torch.no_grad():
        got = model(torch.from_numpy(ids))
    for i, (g, e) in enumerate(zip(got, expected)):
        scale = max(1.0, float(np.abs(e).max()))
        assert np.abs(g.numpy() - e).max() <= 1e-5 * scale, f"{writer}: output {i}"


def test_keras3_mha_runs_without_the_stripped_masks(mha_files):
    """The Keras 3 case cannot pass by accident: its ``mha2`` (no query / value mask)
    differs from what the same weights give with the masks (tf-keras' behaviour)."""
    ids, files = mha_files
    k3 = files["k3"][2]
    emb = k3.get_layer("emb")(ids)
    mha2 = sepconv.MultiHeadAttention(2, 3)
    e = torch.as_tensor(np.asarray(emb.detach().cpu()))
    mha2(e, e)
    mha2.set_weights([np.asarray(w) for w in k3.get_layer("mha2").get_weights()])
    mask = torch.from_numpy(ids != 0)
    with torch.no_grad():
        unmasked = mha2(e, e).numpy()
        masked = mha2(e, e, query_mask=mask, value_mask=mask).numpy()
    expected = files["k3"][1][1]
    np.testing.assert_allclose(unmasked, expected, rtol=1e-5, atol=1e-6)
    assert np.abs(masked - expected).max() > 1e-3
