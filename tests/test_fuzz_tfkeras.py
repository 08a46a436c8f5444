"""Every layer class that tf-keras 2.21 and sepconv share, over its whole argument space.

For each class, hypothesis draws a combination of the class' arguments (the everyday ones
and the ones nobody uses every day) from the lists in ``SPECS``.  tf-keras builds the layer
from them and sepconv builds its twin the way a model file is loaded (``build_layer`` on
tf-keras' own serialized config), with the same random weights.  Then:

- what tf-keras refuses (at construction or at the call), sepconv refuses too, and the other
  way round (a ``ValueError`` / ``TypeError`` naming the problem, never a wrong number);
- the outputs agree (inference) to 1e-4 of their scale, every output for multi-output layers;
- the gradients of a random probe of the outputs with respect to the input and to every
  trainable weight agree;
- sepconv's ``get_config()`` equals tf-keras' (names aside).

``data_format="channels_first"``: tf-keras' CPU kernels lack most of it, so where tf-keras
says so the reference is its channels_last twin on the transposed input (the weights are
the same arrays).
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import torch  # noqa: E402

from sepconv.interop.models import build_layer  # noqa: E402
from sepconv.layers.base import KERAS_CLASSES  # noqa: E402
from fuzz_specs import (CALLS, SHAPES, SPECS, apply, as_torch, draw_input,  # noqa: E402
                        draw_kwargs, draw_policy, eigen_3d_bug, flat, randomize)
from tf_keras_compare import config_without_names  # noqa: E402

pytestmark = pytest.mark.slow

# Keys one side writes and the other does not, each a known, harmless difference:
CONFIG_ONLY_SEPCONV = {
    # tf-keras' get_config drops data_format (a channels_first layer comes back
    # channels_last from its files; inference is the identity either way)
    "SpatialDropout2D": ("data_format",), "SpatialDropout3D": ("data_format",),
    # tf-keras' AlphaDropout.get_config leaves noise_shape out
    "AlphaDropout": ("noise_shape",),
    # tf-keras' Conv3DTranspose.get_config pops dilation_rate
    "Conv3DTranspose": ("dilation_rate",),
}
CONFIG_ONLY_TF_KERAS = {
    # which TensorFlow random generator the layer draws from (sepconv draws from torch's)
    "RandomCrop": ("rng_type",),
    # the unused kernel_* arguments of tf-keras' Conv base class
    "SeparableConv1D": ("kernel_initializer", "kernel_regularizer", "kernel_constraint"),
    "SeparableConv2D": ("kernel_initializer", "kernel_regularizer", "kernel_constraint"),
}


def _to_first(a: np.ndarray) -> np.ndarray:
    return np.moveaxis(a, -1, 1)


def _call_tf(layer, x, probe_seed, variables=()):
    """``layer`` (a tf-keras layer or a callable on tensors) at ``x``: the outputs, the
    gradients of the outputs times random probes with respect to ``x`` and to each of
    ``variables`` (None where TensorFlow has none), the probes."""
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        if x.dtype.kind == "f":
            tape.watch(xt)
        out = layer(xt, training=False) if hasattr(layer, "get_config") else layer(xt)
        outs = out if isinstance(out, (list, tuple)) else [out]
        rng = np.random.default_rng(probe_seed)
        probes = [rng.normal(size=o.shape).astype(np.float32) for o in outs]
        total = tf.add_n([tf.reduce_sum(tf.cast(o, tf.float32) * p)
                          for o, p in zip(outs, probes)])
    sources = ([xt] if x.dtype.kind == "f" else []) + list(variables)
    try:
        grads = tape.gradient(total, sources) if sources else []
    except LookupError:  # an op without a gradient in TensorFlow (ResizeArea): forward only
        grads = [None] * len(sources)
    grads = [None if g is None else tf.convert_to_tensor(g).numpy() for g in grads]
    if x.dtype.kind != "f":
        grads = [None] + grads
    return [o.numpy() for o in outs], grads, probes


def _nhwc_only(err: Exception) -> bool:
    text = str(err)
    return "NHWC" in text or "NDHWC" in text or "channels_first" in text and "CPU" in text \
        or "NWC" in text


def _channels_last_twin(name, kwargs):
    """tf-keras' channels_last layer for a channels_first one, and the function of a
    channels_first tensor it gives (transposes around it; the activation applied after them,
    on channels_first's last axis as tf-keras applies it)."""
    twin = getattr(tf_keras.layers, name)(**dict(kwargs, data_format="channels_last",
                                                 **({"activation": "linear"}
                                                    if "activation" in kwargs else {})))
    activation = tf_keras.activations.get(kwargs.get("activation", "linear"))
    perm_in = None

    def call(x):
        nonlocal perm_in
        rank = len(x.shape)
        perm_in = [0] + list(range(2, rank)) + [1]
        out = twin(tf.transpose(x, perm_in), training=False)
        outs = out if isinstance(out, (list, tuple)) else [out]
        back = [activation(tf.transpose(o, [0, rank - 1] + list(range(1, rank - 1))))
                if len(o.shape) == rank else o for o in outs]
        return back if isinstance(out, (list, tuple)) else back[0]
    return twin, call


def _policy_name(config):
    """``dtype`` as its policy's name: tf-keras writes ``{"class_name": "Policy", "config":
    {"name": ...}}``, sepconv the name, which tf-keras reads back as the same policy."""
    dtype = config.get("dtype")
    if isinstance(dtype, dict) and dtype.get("class_name") == "Policy":
        config = dict(config, dtype=dtype["config"]["name"])
    return config


def _refused(fn):
    try:
        fn()
    except (ValueError, TypeError, tf.errors.InvalidArgumentError) as err:
        return err
    return None


def check_class(name, data):
    kind, rank, spec = SPECS[name]
    kwargs = draw_kwargs(data, spec)
    if eigen_3d_bug(name, kwargs):
        return
    tol = draw_policy(data, name, kwargs)
    policy = kwargs.get("dtype")
    rng = np.random.default_rng(0)
    x = draw_input(data, kind, rank, rng)
    first = kwargs.get("data_format") == "channels_first"
    if first:
        x = _to_first(x)
    # tf-keras
    theirs = None
    tf_err = None
    try:
        theirs = getattr(tf_keras.layers, name)(**kwargs)
        _call_tf(theirs, x, 1)
        randomize(theirs, rng)
        variables = theirs.weights
        tf_out, tf_grads, probes = _call_tf(theirs, x, 1, variables)
        weights = theirs.get_weights()
    except Exception as err:  # noqa: BLE001 - what tf-keras refuses, sepconv must refuse
        tf_err = err
    if tf_err is not None and first and theirs is not None and _nhwc_only(tf_err):
        twin, call = _channels_last_twin(name, kwargs)
        try:
            _call_tf(call, x, 1)
            randomize(twin, rng)
            weights = twin.get_weights()
            variables = twin.weights
            tf_out, tf_grads, probes = _call_tf(call, x, 1, variables)
            tf_err = None
        except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError):
            if policy is None:
                raise
            return  # no TensorFlow CPU kernel for that dtype
    if tf_err is not None:
        if "do not yet support dilation rates larger than 1" in str(tf_err):
            return  # TensorFlow's CPU kernels lack dilated transposed convolutions (its GPU
            # ones have them); sepconv computes them (tests/test_parity_conv_keras3.py)
        cls = KERAS_CLASSES[name]
        err = _refused(lambda: cls(**kwargs)(as_torch(x)))
        if policy is not None and err is None:
            return  # a TensorFlow kernel missing for that dtype (bincount in half, ...)
        if isinstance(tf_err, (IndexError, KeyError, AttributeError)):  # tf-keras crashes
            assert err is None or isinstance(err, ValueError), (name, kwargs, err)
        assert err is not None, (
            f"{name}({kwargs}): tf-keras refuses ({type(tf_err).__name__}: "
            f"{str(tf_err).splitlines()[0][:200]}), sepconv accepts")
        return
    # sepconv, built as a model file builds it
    entry = tf_keras.layers.serialize(theirs)
    ours = build_layer(entry)
    ours.eval()
    xt = as_torch(x)
    if x.dtype.kind == "f":
        xt.requires_grad_(True)
    try:
        ours(xt.detach() if torch.is_tensor(xt) else xt)
        ours.set_weights(weights)
        out = ours(xt)
    except (ValueError, TypeError) as err:
        raise AssertionError(f"{name}({kwargs}): tf-keras accepts, sepconv refuses: "
                             f"{err}") from None
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    assert len(outs) == len(tf_out), (name, kwargs, len(outs), len(tf_out))
    for i, (o, want) in enumerate(zip(outs, tf_out)):
        got = o.detach().float().numpy() if o.is_floating_point() else o.numpy()
        assert got.shape == want.shape, (name, kwargs, i, got.shape, want.shape)
        scale = max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
        np.testing.assert_allclose(got, want, atol=tol * scale, rtol=tol,
                                   err_msg=f"{name}({kwargs}) output {i}")
    # gradients: the input's, then each trainable weight's (Keras' order on both sides)
    sources, wanted, what = [], [], []
    if tf_grads[0] is not None:
        sources.append(xt), wanted.append(tf_grads[0]), what.append("input")
    for i, (w, v) in enumerate(zip(ours.weights, variables)):
        if v.trainable and tf_grads[1 + i] is not None:
            assert w.requires_grad, (name, kwargs, v.name)
            sources.append(w), wanted.append(tf_grads[1 + i]), what.append(v.name)
    total = sum((o.float() * torch.from_numpy(p)).sum() for o, p in zip(outs, probes)
                if o.requires_grad)
    if sources and torch.is_tensor(total) and total.requires_grad:
        grads = torch.autograd.grad(total, sources, allow_unused=True)
        for g, want, label in zip(grads, wanted, what):
            got = np.zeros_like(want) if g is None else g.float().numpy()
            scale = max(1.0, float(np.max(np.abs(want))))
            np.testing.assert_allclose(got, want, atol=tol * scale, rtol=tol,
                                       err_msg=f"{name}({kwargs}) gradient of {label}")
    mine = config_without_names(_policy_name(ours.get_config()))
    want = config_without_names(_policy_name(theirs.get_config()))
    for key in CONFIG_ONLY_SEPCONV.get(name, ()):
        mine.pop(key, None)
    for key in CONFIG_ONLY_TF_KERAS.get(name, ()):
        want.pop(key, None)
    if name in ("IntegerLookup", "StringLookup"):
        # sepconv writes the vocabulary with its reserved tokens first (mask, OOV), which
        # both Kerases read back as the same lookup; tf-keras writes the one it was given
        token = int if name == "IntegerLookup" else str
        assert [token(v) for v in ours.get_vocabulary()] == \
            [token(v.decode() if isinstance(v, bytes) else v)
             for v in theirs.get_vocabulary()], (name, kwargs)
        mine.pop("vocabulary"), want.pop("vocabulary")
    assert mine == want, f"{name}({kwargs}) config"


@pytest.mark.parametrize("name", sorted(SPECS))
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_layer_matches_tf_keras_over_its_arguments(name, data, torch_single_thread):
    check_class(name, data)


def test_every_shared_class_has_a_spec():
    """A class added to sepconv that tf-keras also has gets fuzzed here (or is listed as
    tested elsewhere: cells and preprocessing take inputs these drivers do not make)."""
    elsewhere = set(CALLS) | {
                 # inside RNN (CALLS), and the input placeholder
                 "SimpleRNNCell", "LSTMCell", "GRUCell", "StackedRNNCells", "InputLayer",
                 # text inputs and pairs: tests/test_preprocessing*.py, test_hashed_crossing
                 "TextVectorization", "HashedCrossing",
                 # a function, not arguments: tests/test_lambda.py
                 "Lambda",
                 # tf-keras' own builds only with TF_USE_LEGACY_KERAS=1:
                 # tests/test_spectral_normalization.py patches it
                 "SpectralNormalization",
                 # random in training, the identity in inference: tests/test_augmentation.py
                 "RandomFlip", "RandomRotation", "RandomTranslation", "RandomZoom",
                 "RandomContrast", "RandomBrightness", "RandomHeight", "RandomWidth"}
    shared = {n for n in KERAS_CLASSES if hasattr(tf_keras.layers, n)}
    assert shared - set(SPECS) - elsewhere == set()


def check_call(name, data):
    theirs, shapes, call = CALLS[name](tf_keras, data)
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=s).astype(np.float32) for s in shapes]
    tensors = [tf.constant(x) for x in xs]
    try:
        apply(theirs, tensors, call, True)
    except (ValueError, TypeError, tf.errors.InvalidArgumentError) as err:
        ours = build_layer(tf_keras.layers.serialize(theirs)) if theirs.built else None
        if ours is not None:
            assert _refused(lambda: apply(ours, [torch.from_numpy(x) for x in xs],
                                         call, False)) is not None, (name, err)
        return
    randomize(theirs, rng)
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        outs = flat(apply(theirs, tensors, call, True))
        probes = [rng.normal(size=o.shape).astype(np.float32) for o in outs]
        total = tf.add_n([tf.reduce_sum(o * p) for o, p in zip(outs, probes)])
    trainable = [v for v in theirs.weights if v.trainable]
    tf_grads = tape.gradient(total, tensors + trainable)
    ours = build_layer(tf_keras.layers.serialize(theirs)).eval()
    xts = [torch.from_numpy(x).requires_grad_(True) for x in xs]
    apply(ours, [x.detach() for x in xts], call, False)
    ours.set_weights(theirs.get_weights())
    got = flat(apply(ours, xts, call, False))
    assert len(got) == len(outs), (name, len(got), len(outs))
    for i, (o, want) in enumerate(zip(got, outs)):
        want = want.numpy()
        scale = max(1.0, float(np.max(np.abs(want))))
        np.testing.assert_allclose(o.detach().numpy(), want, atol=1e-4 * scale, rtol=1e-4,
                                   err_msg=f"{name} output {i}")
    weights = dict(zip([v.name for v in theirs.weights], ours.weights))
    sources = xts + [weights[v.name] for v in trainable]
    total = sum((o * torch.from_numpy(p)).sum() for o, p in zip(got, probes))
    grads = torch.autograd.grad(total, sources, allow_unused=True)
    labels = [f"input {i}" for i in range(len(xts))] + [v.name for v in trainable]
    for g, want, label in zip(grads, tf_grads, labels):
        if want is None:
            continue
        want = tf.convert_to_tensor(want).numpy()
        g = np.zeros_like(want) if g is None else g.numpy()
        scale = max(1.0, float(np.max(np.abs(want))))
        np.testing.assert_allclose(g, want, atol=1e-4 * scale, rtol=1e-4,
                                   err_msg=f"{name} gradient of {label}")


@pytest.mark.parametrize("name", sorted(CALLS))
@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_layer_of_several_inputs_matches_tf_keras(name, data, torch_single_thread):
    check_call(name, data)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_batch_normalization_training_matches_tf_keras(data, torch_single_thread):
    """A training call: batch statistics in the output and in its gradients, the moving
    statistics after it (two calls), for every axis / momentum / epsilon / center / scale."""
    kwargs = draw_kwargs(data, SPECS["BatchNormalization"][2])
    kwargs.pop("synchronized")
    rng = np.random.default_rng(1)
    x = (rng.normal(size=SHAPES[2]) * 3 + 1).astype(np.float32)
    theirs = tf_keras.layers.BatchNormalization(**kwargs)
    theirs(x)
    randomize(theirs, rng)
    ours = build_layer(tf_keras.layers.serialize(theirs))
    ours(torch.from_numpy(x))
    ours.set_weights(theirs.get_weights())
    ours.train()
    probe = rng.normal(size=x.shape).astype(np.float32)
    for step in range(2):
        xt = tf.constant(x * (step + 1))
        with tf.GradientTape() as tape:
            tape.watch(xt)
            total = tf.reduce_sum(theirs(xt, training=True) * probe)
        want = tape.gradient(total, [xt] + theirs.trainable_weights)
        xo = torch.from_numpy(x * (step + 1)).requires_grad_(True)
        y = ours(xo)
        params = [w for w in ours.weights if w.requires_grad]
        got = torch.autograd.grad((y * torch.from_numpy(probe)).sum(), [xo] + params)
        for g, w in zip(got, want):
            scale = max(1.0, float(np.max(np.abs(w.numpy()))))
            np.testing.assert_allclose(g.numpy(), w.numpy(), atol=1e-4 * scale, rtol=1e-4,
                                       err_msg=f"BatchNormalization({kwargs}) gradient")
        for g, w in zip(ours.get_weights(), theirs.get_weights()):
            np.testing.assert_allclose(g, w, atol=1e-4, rtol=1e-4,
                                       err_msg=f"BatchNormalization({kwargs}) weights")
