"""``python -m sepconv bench``'s yardsticks (issue 15): what the tf-keras peer's timed
training step computes, and the roofline's matmul rate (no timing assertions)."""

import importlib.util
import os

import numpy as np
import pytest
import torch

from sepconv import bench

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")


def _worker():
    path = os.path.join(os.path.dirname(bench.__file__), "_tf_worker.py")
    spec = importlib.util.spec_from_file_location("_tf_worker", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines functions only; main() is not run
    return module


def test_tf_keras_training_step_computes_the_output_and_every_gradient():
    """The timed ``fb`` returns y and the gradients of x and of every weight: a step that
    does not return y lets tf.function prune the pointwise GEMM (a third of the work)."""
    layer = tf_keras.layers.SeparableConv1D(6, 3, padding="causal")
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((2, 9, 4)).astype("float32"))
    dy = tf.constant(rng.standard_normal((2, 9, 6)).astype("float32"))
    out = _worker().steps(tf, layer, x, dy)["fb"]()
    assert len(out) == 2 + len(layer.trainable_variables)
    np.testing.assert_allclose(out[0].numpy(), layer(x).numpy(), rtol=1e-6, atol=1e-6)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    want = tape.gradient(y, [x] + layer.trainable_variables, output_gradients=dy)
    for got, expected in zip(out[1:], want):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
    fwd = _worker().steps(tf, layer, x, dy)["fwd"]()
    np.testing.assert_allclose(fwd.numpy(), layer(x).numpy(), rtol=1e-6, atol=1e-6)


def test_roofline_takes_the_faster_gemm():
    """Both GEMMs are sampled; the rate is the faster one's median."""
    roof = bench.Roofline()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        roof.sample(3)
    finally:
        torch.set_num_threads(threads)
    assert "torch.mm" in roof.matmuls
    if torch.backends.mkldnn.is_available():
        assert "onednn" in roof.matmuls
    assert all(len(v) == 3 and min(v) > 0 for v in roof.matmuls.values())
    medians = {n: float(np.median(v)) for n, v in roof.matmuls.items()}
    assert roof.gemm() == max(medians, key=medians.get)
    gflops, gbs = roof.rates()
    assert gflops == max(medians.values()) and gbs > 0
    # the oneDNN GEMM computes the product
    if "onednn" in roof.gemms:
        torch.testing.assert_close(roof.gemms["onednn"](), roof.a @ roof.b,
                                   rtol=1e-4, atol=1e-3)


def test_round_median_is_the_median_of_round_means():
    """Two calls a round, a cold first and a warm second: the figure is the median of the
    rounds' means (numpy's), so one stray call moves it by a fraction of a round, not across
    the gap between cold and warm calls as the median of all calls does."""

    cold_warm = [1.0, 0.5] * 8
    stray = list(cold_warm)
    stray[3] = 1.9  # one warm call of one round runs slow
    for samples in (cold_warm, stray):
        means = np.asarray(samples).reshape(-1, 2).mean(axis=1)
        assert bench._round_median(samples, 2) == pytest.approx(float(np.median(means)))
    assert bench._round_median(cold_warm, 2) == pytest.approx(0.75)
    assert bench._round_median(stray, 2) == pytest.approx(0.75)
    assert float(np.median(stray)) == pytest.approx(1.0)  # the median of calls jumps
    assert bench._round_median([3.0, 1.0, 2.0], 1) == 2.0


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_orders_put_each_implementation_after_each_other_equally_often(n):
    """Over a full cycle of rounds every order is a permutation and every ordered pair
    (one right after the other, within a round) occurs equally often."""
    rows = 2 * n if n % 2 else n
    pairs = {}
    for r in range(rows):
        order = bench._order(n, r)
        assert sorted(order) == list(range(n))
        for a, b in zip(order, order[1:]):
            pairs[(a, b)] = pairs.get((a, b), 0) + 1
    assert bench._order(n, rows) == bench._order(n, 0)
    if n > 1:
        assert len(pairs) == n * (n - 1) and len(set(pairs.values())) == 1
