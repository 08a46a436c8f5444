"""sepconv.losses against tf-keras 2.21: every case's loss and its gradient computed once by
tf-keras (one batch, one process) and compared with ours, float32 and float64 (by Keras 3.15
on TensorFlow too, in test_keras3_tensorflow.py)."""

import numpy as np
import pytest
import torch

import sepconv
from sepconv import losses

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")

B, S, C = 4, 3, 5  # batch, steps, classes

#: (class, kwargs, y_true kind, y_pred kind, weights kind, mask): y_pred "softmax" /
#: "sigmoid" is that activation of the source tensor (the gradient's), "probs" a
#: normalised positive tensor, "logits" / "real" a normal one, "positive" > 0.
CASES = [
    ("CategoricalCrossentropy", {}, "onehot", "probs", None, False),
    ("CategoricalCrossentropy", {}, "onehot", "edge_probs", None, False),
    ("CategoricalCrossentropy", {}, "onehot", "softmax", None, False),
    ("CategoricalCrossentropy", {"from_logits": True}, "onehot", "logits", None, False),
    ("CategoricalCrossentropy", {"label_smoothing": 0.2}, "onehot", "probs", "batch", False),
    ("CategoricalCrossentropy", {"label_smoothing": 0.1}, "onehot", "softmax", None, False),
    ("CategoricalCrossentropy", {"axis": 1}, "onehot_axis1", "probs_axis1", None, False),
    ("CategoricalCrossentropy", {"reduction": "sum"}, "onehot", "probs", "batch", False),
    ("CategoricalCrossentropy", {"reduction": "none"}, "onehot", "probs", None, False),
    ("CategoricalCrossentropy", {}, "onehot_seq", "softmax_seq", "seq", True),
    ("SparseCategoricalCrossentropy", {}, "sparse", "probs", None, False),
    ("SparseCategoricalCrossentropy", {}, "sparse1", "softmax", "batch", False),
    ("SparseCategoricalCrossentropy", {"from_logits": True}, "sparse", "logits", None, False),
    ("SparseCategoricalCrossentropy", {"ignore_class": 1}, "sparse_seq", "softmax_seq",
     None, False),
    ("SparseCategoricalCrossentropy", {}, "sparse_seq", "softmax_seq", "seq", True),
    ("BinaryCrossentropy", {}, "binary", "unit", None, False),
    ("BinaryCrossentropy", {}, "binary", "edge_unit", None, False),
    ("BinaryCrossentropy", {}, "binary", "sigmoid", None, False),
    ("BinaryCrossentropy", {"from_logits": True, "label_smoothing": 0.1}, "binary",
     "logits", "batch", False),
    ("BinaryCrossentropy", {"label_smoothing": 0.3}, "binary", "unit", None, False),
    ("BinaryCrossentropy", {}, "binary_col", "sigmoid_col", None, False),
    ("BinaryCrossentropy", {}, "binary_flat", "sigmoid_col", None, False),
    ("MeanSquaredError", {}, "real", "real", "element", False),
    ("MeanSquaredError", {"reduction": "sum"}, "real_seq", "real_seq", "seq", True),
    ("MeanAbsoluteError", {}, "real", "real", "batch", False),
    ("MeanAbsolutePercentageError", {}, "real", "real", None, False),
    ("MeanSquaredLogarithmicError", {}, "positive", "real", None, False),
    ("Huber", {}, "real", "wide", None, False),
    ("Huber", {"delta": 0.5}, "real", "wide", "batch", False),
    ("LogCosh", {}, "real", "wide", None, False),
    ("KLDivergence", {}, "probs_true", "probs", None, False),
    ("Poisson", {}, "positive", "positive", None, False),
    ("CosineSimilarity", {}, "real", "real", None, False),
    ("CosineSimilarity", {"axis": 0}, "real", "real", None, False),
    ("Hinge", {}, "binary", "real", None, False),
    ("SquaredHinge", {}, "signs", "real", None, False),
    ("CategoricalHinge", {}, "onehot", "real", None, False),
]


def _arrays(case, rng):
    """numpy inputs: y_true, the source (the gradient's variable), weights, mask."""
    _, _, true_kind, pred_kind, w_kind, mask = case
    seq = pred_kind.endswith("_seq") or true_kind.endswith("_seq")
    shape = (B, S, C) if seq else (B, C)
    if pred_kind.endswith("_col"):
        shape = (B, 1)
    if pred_kind == "probs_axis1":
        shape = (B, C, S)
    classes = rng.integers(0, C, shape[:-1])
    trues = {
        "onehot": lambda: np.eye(C)[classes], "onehot_seq": lambda: np.eye(C)[classes],
        "onehot_axis1": lambda: np.moveaxis(np.eye(C)[rng.integers(0, C, (B, S))], -1, 1),
        "sparse": lambda: classes, "sparse1": lambda: classes[..., None],
        "sparse_seq": lambda: classes,
        "binary": lambda: rng.integers(0, 2, shape), "binary_col": lambda: rng.integers(
            0, 2, shape), "binary_flat": lambda: rng.integers(0, 2, (B,)),
        "signs": lambda: rng.choice([-1.0, 1.0], shape),
        "real": lambda: rng.standard_normal(shape), "real_seq": lambda: rng.standard_normal(
            shape), "positive": lambda: rng.uniform(0.1, 3, shape),
        "probs_true": lambda: rng.dirichlet(np.ones(shape[-1]), shape[:-1]),
    }
    y_true = trues[true_kind]()
    if pred_kind in ("probs", "probs_axis1"):
        src = rng.uniform(0.05, 1.0, shape)
        src = src / src.sum(axis=1 if pred_kind == "probs_axis1" else -1, keepdims=True)
    elif pred_kind == "edge_probs":  # some probabilities past the clipping
        src = rng.dirichlet(np.ones(C), B)
        src[0] = [1.0, 0.0, 0.0, 0.0, 0.0]
        src[1, :2] = [1e-9, 0.5]
        src = src / src.sum(-1, keepdims=True)
    elif pred_kind == "unit":
        src = rng.uniform(0.01, 0.99, shape)
    elif pred_kind == "edge_unit":
        src = rng.uniform(0.01, 0.99, shape)
        src[0, :3] = [0.0, 1.0, 1e-9]
    elif pred_kind == "wide":
        src = 2 * rng.standard_normal(shape)
    elif pred_kind == "positive":
        src = rng.uniform(0.1, 3, shape)
    else:  # logits, real, softmax*, sigmoid*
        src = rng.standard_normal(shape) * 2
    wshape = {"batch": (B,), "element": shape[:-1], "seq": (B, S)}
    weights = None if w_kind is None else rng.uniform(0.2, 2.0, wshape[w_kind])
    m = None
    if mask:
        m = np.ones((B, S), bool)
        m[0, 2:] = m[2, 1:] = False
    return y_true, src, weights, m


def _activation(kind):
    return "softmax" if kind.startswith("softmax") else "sigmoid" if \
        kind.startswith("sigmoid") else None


def _tf_reference(K):
    """Every case in ``K`` (tf-keras, or Keras 3 on TensorFlow), float32 and float64: the
    inputs, the loss and its gradient."""
    rng = np.random.default_rng(0)
    out = []
    for case in CASES:
        arrays = _arrays(case, rng)
        y_true, src, weights, m = arrays
        name, kwargs, _, pred_kind, _, _ = case
        per_dtype = {}
        for dtype in ("float32", "float64"):
            x = tf.Variable(src.astype(dtype))
            # (a Keras 3 loss computes in its dtype, floatx unless given)
            loss = getattr(K.losses, name)(**kwargs, **({} if K is tf_keras else
                                                         {"dtype": dtype}))
            yt = tf.constant(y_true.astype("int64" if "sparse" in case[2] else dtype))
            sw = None if weights is None else tf.constant(weights.astype(dtype))

            mt = None if m is None else tf.constant(m)

            def run(x=x, loss=loss, yt=yt, sw=sw, act=_activation(pred_kind), mt=mt):
                with tf.GradientTape() as tape:
                    pred = getattr(K.activations, act)(x) if act else tf.identity(x)
                    if mt is not None:
                        pred._keras_mask = mt
                    value = loss(yt, pred, sample_weight=sw)
                    total = tf.reduce_sum(value)
                return value, tape.gradient(total, x)
            # (tf-keras' sparse crossentropy over a sequence builds a graph tensor eagerly)
            value, grad = tf.function(run, autograph=False)() if case[2] == "sparse_seq" else run()
            per_dtype[dtype] = (np.asarray(value), np.asarray(grad))
        out.append((arrays, per_dtype))
    return out


@pytest.fixture(scope="module")
def reference():
    return _tf_reference(tf_keras)


def _ours(case, arrays, dtype):
    name, kwargs, true_kind, pred_kind, _, _ = case
    y_true, src, weights, m = arrays
    x = torch.tensor(src, dtype=dtype, requires_grad=True)
    act = _activation(pred_kind)
    pred = getattr(sepconv.activations, act)(x) if act else x * 1
    if m is not None:
        pred._keras_mask = torch.from_numpy(m)
    yt = torch.from_numpy(y_true).to(torch.int64 if "sparse" in true_kind else dtype)
    value = getattr(losses, name)(**kwargs)(
        yt, pred, sample_weight=None if weights is None else torch.from_numpy(weights).to(dtype))
    value.sum().backward()
    return value.detach().numpy(), x.grad.numpy()


def _failures(reference, dtype, skip=lambda case: False):
    """Each case (but ``skip``'s) by ours against ``reference`` (what :func:`_tf_reference`
    gives)."""
    failures = []
    for case, (arrays, per_dtype) in zip(CASES, reference):
        if skip(case):
            continue
        # (tf-keras' huber computes in floatx, float32, whatever the inputs)
        tol = 2e-6 if dtype == torch.float32 or case[0] == "Huber" else 1e-12
        want_value, want_grad = per_dtype["float64" if dtype == torch.float64 else "float32"]
        value, grad = _ours(case, arrays, dtype)
        for what, got, want in (("loss", value, want_value), ("gradient", grad, want_grad)):
            scale = max(1.0, float(np.abs(want).max()))
            err = float(np.abs(np.asarray(got, np.float64) - want).max()) / scale
            if got.shape != want.shape or not err <= tol:
                failures.append(f"{case[:2]} {case[3]}: {what} off by {err:.3g} "
                                f"(shape {got.shape} vs {want.shape})")
    return failures


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_losses_equal_tf_keras(reference, dtype):
    failures = _failures(reference, dtype)
    assert not failures, "\n".join(failures)


def test_logits_travel_with_softmax_and_sigmoid_outputs():
    """A model's softmax output gives the logits' loss (tf-keras' shortcut): not clipped."""
    x = torch.tensor([[30.0, 0.0, -30.0]])
    for probs in (sepconv.activations.softmax(x), sepconv.Softmax()(x),
                  sepconv.Activation("softmax")(x)):
        got = losses.categorical_crossentropy(torch.tensor([[0.0, 0.0, 1.0]]), probs)
        assert float(got) == pytest.approx(60.0, rel=1e-6)  # clipped: -log(1e-7) = 16.1
    clipped = losses.categorical_crossentropy(torch.tensor([[0.0, 0.0, 1.0]]),
                                              torch.softmax(x, -1))
    assert float(clipped) == pytest.approx(-np.log(1e-7), rel=1e-5)
    got = losses.binary_crossentropy(torch.tensor([[0.0]]), sepconv.activations.sigmoid(
        torch.tensor([[40.0]])))
    assert float(got) == pytest.approx(40.0, rel=1e-6)


def test_registry_names_configs_and_r_functions():
    assert isinstance(losses.get("mse"), losses.MeanSquaredError)
    assert isinstance(losses.get("loss_categorical_crossentropy"),
                      losses.CategoricalCrossentropy)
    assert isinstance(losses.get("Kullback_Leibler_Divergence"), losses.KLDivergence)
    got = losses.get({"class_name": "CategoricalCrossentropy", "config": {
        "reduction": "sum", "name": "cce", "from_logits": True, "label_smoothing": 0.1,
        "axis": -1, "fn": "categorical_crossentropy"}})
    assert got.get_config() == {"reduction": "sum", "name": "categorical_crossentropy",
                                "from_logits": True, "label_smoothing": 0.1, "axis": -1}
    theirs = tf_keras.losses.Huber(delta=0.3, reduction="sum")
    assert losses.get(theirs).get_config()["delta"] == 0.3
    assert isinstance(losses.get(tf_keras.losses.poisson), losses.Poisson)
    y, p = torch.rand(3, 4), torch.rand(3, 4)
    assert torch.equal(sepconv.loss_mean_squared_error(y, p), losses.mean_squared_error(y, p))
    assert sepconv.loss_huber(delta=2.0).get_config()["delta"] == 2.0
    with pytest.raises(ValueError, match="loss.*'msee'"):
        losses.get("msee")
    with pytest.raises(ValueError, match="reduction"):
        losses.MeanSquaredError(reduction="mean_please")
    with pytest.raises(ValueError, match=r"class indices must lie in \[0, 3\)"):
        losses.sparse_categorical_crossentropy(torch.tensor([3]), torch.rand(1, 3))
