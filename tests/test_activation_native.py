"""``tanh`` / ``sigmoid`` on CPU float32 (``kernels/activation.py``, the C routine of
``kernels/_activation_native.py``) against TensorFlow 2.21's kernels, bit for bit.

TensorFlow's ``Tanh`` / ``Sigmoid`` / ``TanhGrad`` / ``SigmoidGrad`` (Eigen's float32
approximations, built without FMA, denormals flushed) are the reference: forward over
drawn floats (normal draws, random bit patterns: denormals, huge values, inf, NaN) and
the edges (clamp boundaries, sigmoid's -104 cut and 16.6355324 cap), at lengths that
leave sigmoid's scalar tail (``n % 8``) different sizes; gradients through
``tf.GradientTape``; a ``Dense`` layer with the activation against tf-keras where the
matrix product is exact.  Then: within a few ulp of torch's own functions, gradchecks,
torch.compile running the C routine, export / trace / vmap / other dtypes taking torch's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")

import sepconv  # noqa: E402
from sepconv import activations  # noqa: E402
from sepconv.kernels import _activation_native as native  # noqa: E402
from sepconv.kernels import activation as kernel  # noqa: E402

pytestmark = pytest.mark.skipif(native.load() is None,
                                reason="the C routine cannot be built here")

EDGES = np.float32([
    0.0, -0.0, 1e-40, -1e-40, 1.4e-45, 1.1754942e-38, 1.1754944e-38, 0.0004, -0.0004,
    7.90738964080810547, np.nextafter(np.float32(7.9073896), np.float32(0)),
    np.nextafter(np.float32(7.9073896), np.float32(9)), -7.90738964080810547,
    8.01773357391357422, 9.0, -9.0, 20.0, -20.0, 1e30, -1e30, 3.4028235e38, -3.4028235e38,
    np.inf, -np.inf, np.nan, -np.nan, -104.0, np.nextafter(np.float32(-104), np.float32(0)),
    np.nextafter(np.float32(-104), np.float32(-200)), 16.6355324, 16.635531, 16.63554,
    -87.0, -88.7, -89.5, -103.0, -150.0, 0.5, -0.5, 1.0, -1.0, 44.0, 1e-8, -1e-8])


def _draw(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts = [EDGES, rng.normal(0, 3, n).astype(np.float32),
             rng.normal(0, 40, n // 4).astype(np.float32),
             rng.integers(0, 2 ** 32, n // 2, dtype=np.uint64).astype(np.uint32)
             .view(np.float32),
             np.linspace(-110, 20, n // 4, dtype=np.float32)]
    return np.concatenate(parts)


def _same_bits(ours, theirs, what, zero_sign=True):
    """Bit for bit, NaNs as NaNs (any payload); ``zero_sign=False``: -0 == +0."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype == np.float32
    nan = np.isnan(ours) & np.isnan(theirs)
    bad = (ours.view(np.uint32) != theirs.view(np.uint32)) & ~nan
    if not zero_sign:
        bad &= ours != theirs
    assert not bad.any(), (f"{what}: {int(bad.sum())} of {bad.size} differ, e.g. at "
                           f"{np.nonzero(bad)[0][:5]}: {ours[bad][:5]} vs {theirs[bad][:5]}")


FUNCTIONS = [("tanh", activations.tanh, tf.math.tanh), ("sigmoid", activations.sigmoid,
                                                        tf.math.sigmoid)]


def check_against_tensorflow(ours, theirs, x_all, sizes, seed, name, tiny_dy=False):
    """``ours`` (the C routine, forward and backward) against TensorFlow's ``theirs`` under
    ``tf.GradientTape``, bit for bit, on the first ``n`` of ``x_all`` for each ``n`` in
    ``sizes``; ``tiny_dy``: the first output gradients denormal and huge."""
    rng = np.random.default_rng(seed)
    for n in sizes:
        x = x_all[:n]
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        before = kernel.CALLS
        y = ours(xt)
        dy = rng.normal(0, 1, n).astype(np.float32)
        if tiny_dy:
            dy[:3] = np.float32([1e-39, -3e-39, 1e30])[:min(3, n)]
        (gx,) = torch.autograd.grad(y, xt, torch.from_numpy(dy))
        assert kernel.CALLS == before + 2  # forward and backward ran the C routine
        xv = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xv)
            yv = theirs(xv)
        gv = tape.gradient(yv, xv, output_gradients=tf.constant(dy))
        _same_bits(y.detach().numpy(), yv.numpy(), f"{name} forward, n={n}")
        _same_bits(gx.numpy(), gv.numpy(), f"{name} gradient, n={n}")


def check_compiled_runs_the_routine(fn, x):
    """``torch.compile(fn)`` (fullgraph) runs the custom ops, with the eager numbers."""
    x = x.detach().requires_grad_(True)
    compiled = torch.compile(lambda t: fn(t) * 2, fullgraph=True)
    before = kernel.CALLS
    y = compiled(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert kernel.CALLS >= before + 2
    ye = fn(x) * 2
    (ge,) = torch.autograd.grad(ye.sum(), x)
    _same_bits(y.detach().numpy(), ye.detach().numpy(), "compiled forward")
    _same_bits(g.numpy(), ge.numpy(), "compiled gradient")


@pytest.mark.parametrize("name,ours,theirs", FUNCTIONS)
def test_forward_and_gradient_are_tensorflows_bit_for_bit(name, ours, theirs):
    # lengths: sigmoid's scalar tail (n % 8 elements) 0-7 long; one past the policy's and
    # the routine's thread blocks
    x_all = _draw(120_000, 1)
    check_against_tensorflow(ours, theirs, x_all, (1, 7, 8, 13, 45, 1029, 70_001, x_all.size),
                             2, name, tiny_dy=True)


def test_thread_blocks_do_not_change_the_numbers():
    """The routine's split between threads (blocks of 1024 elements) leaves every element's
    result as one thread computes it, sigmoid's scalar tail included."""
    a = torch.from_numpy(_draw(60_000, 8)[:100_003].copy())
    b = torch.from_numpy(np.random.default_rng(9).normal(0, 1, a.numel()).astype(np.float32))
    y = torch.tanh(a)
    for op, args in ((native.TANH, (a, None)), (native.SIGMOID, (a, None)),
                     (native.TANH_GRAD, (y, b)), (native.SIGMOID_GRAD, (y, b))):
        outs = []
        for threads in (1, 2, 3):
            out = torch.empty_like(a)
            native.compute(op, *args, out, threads)
            outs.append(out.numpy())
        _same_bits(outs[1], outs[0], f"op {op}, 2 threads")
        _same_bits(outs[2], outs[0], f"op {op}, 3 threads")


@pytest.mark.parametrize("name,ours,theirs", FUNCTIONS)
def test_graph_mode_and_shapes(name, ours, theirs):
    """tf.function (TF_ENABLE_ONEDNN_OPTS off in the tests: no oneDNN rewrite) and
    multi-dimensional, non-contiguous inputs: the flattened C-order tensor is what
    TensorFlow's executor walks (sigmoid's scalar tail is its last n % 8 elements)."""
    x = _draw(4_000, 3)[:3 * 5 * 7 * 11].reshape(3, 5, 7, 11)
    xt = torch.from_numpy(x.copy()).permute(0, 3, 1, 2)  # non-contiguous
    graph = tf.function(theirs)
    _same_bits(ours(xt).numpy(), graph(tf.constant(xt.numpy())).numpy(), name)
    assert ours(xt).shape == xt.shape


@pytest.mark.parametrize("name,ours,torch_fn,max_ulp", [
    ("tanh", activations.tanh, torch.tanh, 5), ("sigmoid", activations.sigmoid,
                                                torch.sigmoid, 8)])
def test_within_a_few_ulp_of_torch(name, ours, torch_fn, max_ulp):
    x = torch.from_numpy(np.random.default_rng(4).normal(0, 3, 200_000).astype(np.float32))
    a, b = ours(x).numpy().view(np.int32), torch_fn(x).numpy().view(np.int32)
    ulp = np.abs(a.astype(np.int64) - b)
    assert ulp.max() <= max_ulp, name
    assert (ulp > 0).mean() > 0.2  # not torch's numbers: the C routine ran


def test_gradcheck(torch_single_thread):
    x64 = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    for fn in (activations.tanh, activations.sigmoid):
        assert torch.autograd.gradcheck(fn, (x64,))  # torch's ops (float64)
        assert torch.autograd.gradgradcheck(fn, (x64,))
    # float32 through the C routine: the analytical gradient against central differences
    # of the routine itself, and the double backward (create_graph) against float64's
    x = torch.linspace(-6, 6, 97).requires_grad_(True)
    for fn, exact in ((activations.tanh, torch.tanh), (activations.sigmoid, torch.sigmoid)):
        (g,) = torch.autograd.grad(fn(x).sum(), x, create_graph=True)
        eps = 1e-2
        numeric = (fn(x.detach() + eps) - fn(x.detach() - eps)) / (2 * eps)
        torch.testing.assert_close(g.detach(), numeric, atol=2e-4, rtol=1e-3)
        (gg,) = torch.autograd.grad(g.sum(), x)
        x64 = x.detach().double().requires_grad_(True)
        (g64,) = torch.autograd.grad(exact(x64).sum(), x64, create_graph=True)
        (gg64,) = torch.autograd.grad(g64.sum(), x64)
        torch.testing.assert_close(gg, gg64.float(), atol=1e-5, rtol=1e-4)


def test_torch_compile_runs_the_routine():
    x = torch.from_numpy(_draw(2_000, 5))
    for fn in (activations.tanh, activations.sigmoid):
        check_compiled_runs_the_routine(fn, x)


@pytest.mark.slow
def test_torch_compile_as_the_first_call_builds_the_routine():
    """A fresh process whose first call is compiled (fullgraph): the library is loaded
    outside the trace (its build lock cannot be traced), and the routine runs."""
    import os
    import subprocess
    import sys
    code = ("import torch\n"
            "from sepconv import activations\n"
            "from sepconv.kernels import activation\n"
            "f = torch.compile(lambda t: activations.tanh(t) + activations.sigmoid(t), "
            "fullgraph=True)\n"
            "x = torch.randn(100, requires_grad=True)\n"
            "f(x).sum().backward()\n"
            "assert activation.CALLS == 4, activation.CALLS\n")
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_export_trace_vmap_and_other_dtypes_take_torchs_ops(torch_single_thread):
    class Net(torch.nn.Module):
        def forward(self, t):
            return activations.sigmoid(activations.tanh(t))

    x = torch.randn(3, 4)
    exported = torch.export.export(Net(), (x,))
    targets = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert "aten.tanh.default" in targets and "aten.sigmoid.default" in targets
    assert not any("sepconv" in t for t in targets)
    traced = torch.jit.trace(Net(), (x,))
    assert "aten::tanh" in str(traced.graph) and "sepconv::" not in str(traced.graph)
    before = kernel.CALLS
    out = torch.func.vmap(activations.tanh)(x)
    assert kernel.CALLS == before and torch.equal(out, torch.tanh(x))
    for dtype in (torch.float64, torch.bfloat16, torch.float16):
        t = x.to(dtype)
        assert torch.equal(activations.tanh(t), torch.tanh(t))
        assert torch.equal(activations.sigmoid(t), torch.sigmoid(t))
    assert kernel.CALLS == before
    kernel.ENABLED = False
    try:
        assert torch.equal(activations.tanh(x), torch.tanh(x))
    finally:
        kernel.ENABLED = True
    assert activations.get("tanh") is activations.tanh


def test_dense_with_tanh_and_sigmoid_match_tf_keras_bit_for_bit(torch_single_thread):
    """Integer inputs and quarter weights make the matrix products exact, so the whole
    layer is bit for bit: forward, and for one batch item the kernel and bias gradients
    (products, no sums) through TanhGrad / SigmoidGrad."""
    rng = np.random.default_rng(6)
    for act in ("tanh", "sigmoid"):
        ours = sepconv.Dense(9, activation=act, input_shape=(13,))
        ref = tf_keras.layers.Dense(9, activation=act)
        ref.build((None, 13))
        w = [rng.integers(-4, 5, (13, 9)).astype(np.float32) / 4,
             rng.integers(-4, 5, (9,)).astype(np.float32) / 4]
        ours.set_weights(w)
        ref.set_weights(ours.get_weights())
        x = rng.integers(-3, 4, (41, 13)).astype(np.float32)
        _same_bits(ours(torch.from_numpy(x)).detach().numpy(), ref(x).numpy(), act)
        x1 = x[:1]
        dy = rng.normal(0, 1, (1, 9)).astype(np.float32)
        y = ours(torch.from_numpy(x1))
        grads = torch.autograd.grad(y, [ours.kernel, ours.bias], torch.from_numpy(dy))
        with tf.GradientTape() as tape:
            yv = ref(x1)
        gv = tape.gradient(yv, ref.trainable_weights, output_gradients=tf.constant(dy))
        for a, b, what in zip(grads, gv, ("kernel", "bias")):
            # the kernel's: x^T @ dz, where TensorFlow's sum starts from +0 (0 * -dz)
            _same_bits(a.numpy(), b.numpy(), f"{act} {what} gradient", zero_sign=False)


def test_conv1d_with_tanh_within_tolerance(torch_single_thread):
    rng = np.random.default_rng(7)
    ours = sepconv.Conv1D(8, 2, padding="causal", dilation_rate=2, activation="tanh",
                          input_shape=(30, 5))
    ref = tf_keras.layers.Conv1D(8, 2, padding="causal", dilation_rate=2, activation="tanh")
    ref.build((None, 30, 5))
    ref.set_weights(ours.get_weights())
    x = rng.normal(0, 1, (4, 30, 5)).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_(True)
    y = ours(xt)
    (gx,) = torch.autograd.grad(y.sum(), xt)
    xv = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xv)
        yv = ref(xv)
        total = tf.reduce_sum(yv)
    gv = tape.gradient(total, xv)
    np.testing.assert_allclose(y.detach().numpy(), yv.numpy(), atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(gx.numpy(), gv.numpy(), atol=1e-5, rtol=1e-5)
