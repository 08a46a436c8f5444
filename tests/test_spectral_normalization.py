"""``SpectralNormalization`` against tf-keras 2.21 and Keras 3.15 given the same weights:
training calls (outputs, gradients of input and weights, the normalized kernel and
``vector_u`` after several SGD steps, two calls before one gradient as a GAN
discriminator makes them), inference calls (nothing changes), the layer protocol, and a
MelGAN-style discriminator's model files from both Kerases and back."""

from __future__ import annotations

import inspect
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

import sepconv  # noqa: E402
from keras_files import Cases, check, outputs  # noqa: E402
from tf_keras_compare import check_signature, strip_config  # noqa: E402

from tf_keras.src.layers.normalization import spectral_normalization as _tk_sn  # noqa: E402


class _LegacyTF:
    """``tensorflow`` whose ``tf.keras`` is tf-keras, as under ``TF_USE_LEGACY_KERAS=1``:
    tf-keras 2.21's SpectralNormalization builds its ``InputSpec`` from ``tf.keras``, which
    is Keras 3 otherwise (its build then raises TypeError)."""

    def __getattr__(self, name):
        return tf_keras if name == "keras" else getattr(tf, name)


@pytest.fixture(autouse=True)
def legacy_tf_keras(monkeypatch):
    monkeypatch.setattr(_tk_sn, "tf", _LegacyTF())


TK_CUSTOM = {"SpectralNormalization": tf_keras.layers.SpectralNormalization}

#: (name, sepconv inner layer, tf-keras inner, Keras 3 inner, input shape), dtype given
KINDS = {
    "dense": (lambda K, d: K.layers.Dense(3, dtype=d), (2, 5)),
    "dense_3d": (lambda K, d: K.layers.Dense(4, use_bias=False, dtype=d), (2, 3, 5)),
    "conv1d_causal": (lambda K, d: K.layers.Conv1D(4, 3, padding="causal", dilation_rate=2,
                                                   dtype=d), (2, 9, 3)),
    "conv1d_strided": (lambda K, d: K.layers.Conv1D(2, 4, strides=2, activation="relu",
                                                    dtype=d), (2, 11, 3)),
    "conv2d": (lambda K, d: K.layers.Conv2D(3, (2, 3), strides=(1, 2), padding="same",
                                            dtype=d), (2, 5, 7, 2)),
    "conv1d_transpose": (lambda K, d: K.layers.Conv1DTranspose(3, 3, strides=2, dtype=d),
                         (2, 5, 2)),
    "embedding": (lambda K, d: K.layers.Embedding(10, 4, dtype=d), (2, 5)),
}


def _inputs(kind, rng, dtype):
    shape = KINDS[kind][1]
    if kind == "embedding":
        return rng.integers(0, 10, shape).astype(np.int64)
    return rng.standard_normal(shape).astype(dtype)


def _close(a, b, dtype, what):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
    atol = 1e-10 if dtype == "float64" else 2e-5
    assert a.shape == b.shape, (what, a.shape, b.shape)
    err = float(np.max(np.abs(a - b))) if a.size else 0.0
    assert err <= atol * scale, f"{what}: largest error {err:.3g} (scale {scale:.3g})"


def _torch_step(ours, xs, targets, lr):
    """One SGD step of ``sum_i sum(layer(x_i) * t_i)`` with every call in training mode,
    all before one backward; returns outputs, input gradients, weight gradients."""
    params = list(ours.layer.parameters())
    tx = [torch.tensor(x, requires_grad=x.dtype.kind == "f") for x in xs]
    ys = [ours(x, training=True) for x in tx]
    loss = sum((y * torch.as_tensor(t)).sum() for y, t in zip(ys, targets))
    loss.backward()
    grads = [p.grad.detach().clone().numpy() for p in params]
    with torch.no_grad():
        for p in params:
            p -= lr * p.grad
            p.grad = None
    return ([y.detach().numpy() for y in ys],
            [x.grad.numpy() if x.requires_grad else None for x in tx], grads)


def _tf_step(ref, xs, targets, lr):
    tx = [tf.constant(x) for x in xs]
    with tf.GradientTape(persistent=True) as tape:
        for x in tx:
            if x.dtype.is_floating:
                tape.watch(x)
        ys = [ref(x, training=True) for x in tx]
        loss = tf.add_n([tf.reduce_sum(y * t) for y, t in zip(ys, targets)])
    weights = ref.trainable_weights
    grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, weights)]
    xgrads = [tape.gradient(loss, x) if x.dtype.is_floating else None for x in tx]
    for w, g in zip(weights, grads):
        w.assign_sub(lr * g)
    return ([y.numpy() for y in ys], [None if g is None else g.numpy() for g in xgrads],
            [g.numpy() for g in grads])


@settings(max_examples=16, deadline=None, derandomize=True)
@given(kind=st.sampled_from(sorted(KINDS)), power=st.integers(1, 3),
       dtype=st.sampled_from(["float32", "float64"]), calls=st.integers(1, 2),
       seed=st.integers(0, 2 ** 16))
def test_training_and_inference_match_tf_keras(kind, power, dtype, calls, seed):
    rng = np.random.default_rng(seed)
    make = KINDS[kind][0]
    ours = sepconv.SpectralNormalization(make(sepconv, dtype), power_iterations=power)
    ref = tf_keras.layers.SpectralNormalization(make(tf_keras, dtype),
                                                power_iterations=power, dtype=dtype)
    x = _inputs(kind, rng, dtype)
    ours.eval()(x)
    ref(x)
    ours.train()
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in ref.get_weights()]
    ref.set_weights(ours.get_weights())
    for step in range(3):
        xs = [_inputs(kind, rng, dtype) for _ in range(calls)]
        y_shape = ref.compute_output_shape(xs[0].shape)
        targets = [rng.standard_normal(tuple(y_shape)).astype(dtype) for _ in xs]
        got, want = _torch_step(ours, xs, targets, 0.1), _tf_step(ref, xs, targets, 0.1)
        for what, a_list, b_list in zip(("output", "input gradient", "weight gradient"),
                                        got, want):
            for a, b in zip(a_list, b_list):
                if b is not None:
                    _close(a, b, dtype, f"step {step} {what}")
        for i, (a, b) in enumerate(zip(ours.get_weights(), ref.get_weights())):
            _close(a, b, dtype, f"step {step} weight {i}")
    # inference: the wrapped layer on the stored kernel; nothing is updated
    before = ours.get_weights()
    x = _inputs(kind, rng, dtype)
    with torch.no_grad():
        y = ours.eval()(x)
    _close(y.numpy(), ref(x, training=False).numpy(), dtype, "inference output")
    _close(y.numpy(), ours.layer(x).detach().numpy(), dtype, "inference = wrapped layer")
    for a, b in zip(before, ours.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(ours.get_weights(), ref.get_weights()):
        _close(a, b, dtype, "weights after inference")


@settings(max_examples=8, deadline=None, derandomize=True)
@given(kind=st.sampled_from(["dense", "conv1d_causal", "conv2d", "embedding"]),
       power=st.integers(1, 3), seed=st.integers(0, 2 ** 16))
def test_training_matches_keras3(kind, power, seed):
    """Keras 3 (torch backend): its ``get_weights`` puts ``vector_u`` second; the same
    kernels and ``vector_u`` after the same updates, the same outputs and input and kernel
    gradients (except around an ``Embedding``: Keras 3 casts the output to the ids'
    integer dtype)."""
    rng = np.random.default_rng(seed)
    make = KINDS[kind][0]
    ours = sepconv.SpectralNormalization(make(sepconv, "float32"), power_iterations=power)
    ref = keras.layers.SpectralNormalization(make(keras, "float32"), power_iterations=power)
    x = _inputs(kind, rng, "float32")
    ours.eval()(x)
    ref(x)
    ours.train()
    w = ours.get_weights()
    ref.set_weights([w[0], w[-1]] + w[1:-1])  # Keras 3's order: kernel, vector_u, bias
    for step in range(3):
        x = _inputs(kind, rng, "float32")
        if kind == "embedding":  # Keras 3 casts the output to the inputs' dtype: ids
            y = ours(x, training=True)
            want = keras.ops.convert_to_numpy(ref(x, training=True))
            assert want.dtype.kind == "i" and y.dtype == torch.float32
        else:  # outputs, and gradients (torch autograd through both) of a weighted sum
            t = torch.from_numpy(rng.standard_normal(tuple(
                ref.compute_output_shape(x.shape))).astype(np.float32))
            xo, xr = (torch.tensor(x, requires_grad=True) for _ in range(2))
            y, want = ours(xo, training=True), ref(xr, training=True)
            (y * t).sum().backward()
            (want * t).sum().backward()
            _close(y.detach().numpy(), want.detach().cpu().numpy(), "float32",
                   f"step {step} output")
            _close(xo.grad.numpy(), xr.grad.cpu().numpy(), "float32", "input gradient")
            kernel = ref.layer.kernel.value
            _close(ours.layer.kernel.grad.numpy(), kernel.grad.cpu().numpy(), "float32",
                   "kernel gradient")
            ours.layer.kernel.grad, kernel.grad = None, None
        theirs = ref.get_weights()
        for i, (a, b) in enumerate(zip(ours.get_weights(), [theirs[0]] + theirs[2:] +
                                       [theirs[1]])):
            _close(a, b, "float32", f"step {step} weight {i}")
    if kind != "embedding":
        x = _inputs(kind, rng, "float32")
        _close(ours.eval()(x).detach().numpy(),
               keras.ops.convert_to_numpy(ref(x, training=False)), "float32", "inference")


def test_gradients_reach_the_kernel_as_at_the_normalized_kernel(torch_single_thread):
    """The training call's gradient is the wrapped layer's at the normalized kernel (no
    term through sigma: tf-keras assigns, then differentiates the layer), checked against
    finite differences of the plain layer; in inference, gradcheck of the wrapped layer."""
    torch.manual_seed(0)
    inner = sepconv.Conv1D(3, 3, padding="causal", dtype="float64", input_shape=(None, 2))
    sn = sepconv.SpectralNormalization(inner, power_iterations=2)
    x = torch.randn(2, 6, 2, dtype=torch.float64)
    y = sn(x, training=True)
    y.square().sum().backward()
    kernel = inner.kernel.detach().clone()  # now normalized
    plain = sepconv.Conv1D(3, 3, padding="causal", dtype="float64", input_shape=(None, 2))
    plain.set_weights(inner.get_weights())
    k = kernel.clone().requires_grad_(True)
    torch.autograd.gradcheck(lambda k: torch.func.functional_call(
        plain, {"kernel": k}, (x,)).square().sum(), (k,))
    k.grad = None
    torch.func.functional_call(plain, {"kernel": k}, (x,)).square().sum().backward()
    torch.testing.assert_close(inner.kernel.grad, k.grad, rtol=1e-12, atol=1e-12)
    sn.eval()
    xg = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: sn(x), (xg,))


def test_normalized_kernel_has_spectral_norm_one():
    """Many power iterations: the kernel (as a (-1, filters) matrix) ends with largest
    singular value 1 (numpy's SVD, not our power method)."""
    sn = sepconv.SpectralNormalization(sepconv.Dense(6, kernel_initializer="random_normal"),
                                       power_iterations=50, input_shape=(8,))
    sn(np.ones((1, 8), np.float32), training=True)
    s = np.linalg.svd(sn.get_weights()[0].astype(np.float64), compute_uv=False)
    assert abs(s[0] - 1.0) < 1e-4, s


def test_zero_kernel_is_left_alone():
    sn = sepconv.SpectralNormalization(sepconv.Dense(3, kernel_initializer="zeros"),
                                       input_shape=(4,))
    u = sn.vector_u.clone()
    sn(torch.ones(2, 4), training=True)
    assert torch.equal(sn.vector_u, u) and not sn.layer.kernel.any()


def test_signature_config_and_protocol():
    check_signature(sepconv.SpectralNormalization, tf_keras.layers.SpectralNormalization,
                    sepconv.layer_spectral_normalization, required=1)
    ours = sepconv.SpectralNormalization(sepconv.Conv1D(4, 3, padding="causal"),
                                         power_iterations=2, input_shape=(None, 3))
    ref = tf_keras.layers.SpectralNormalization(tf_keras.layers.Conv1D(4, 3, padding="causal"),
                                                power_iterations=2)
    ref.build((None, None, 3))
    keys = [k for k in ours.get_config() if k != "batch_input_shape"]  # ours: input_shape
    assert keys == list(ref.get_config())
    assert list(ours.get_config()["layer"]["config"]) == \
        list(strip_config(ref.get_config()["layer"])["config"])
    # from tf-keras' config dict (nested layer as Keras writes it), and our own round trip
    k3 = keras.layers.SpectralNormalization(keras.layers.Conv1D(4, 3, padding="causal"),
                                            power_iterations=2)
    k3.build((None, None, 3))
    for config in (ref.get_config(), ours.get_config(), k3.get_config()):
        again = sepconv.SpectralNormalization.from_config(config)
        assert isinstance(again.layer, sepconv.Conv1D) and again.power_iterations == 2
        assert again.layer.padding == "causal"
    # weights: the wrapped layer's then vector_u, names as tf-keras' .h5
    assert [w.shape for w in ours.get_weights()] == [(3, 3, 4), (4,), (1, 4)]
    assert ours.h5_weight_names() == ["kernel", "bias", "vector_u"]
    assert [w.name.split("/")[-1] for w in ref.weights] == \
        ["kernel:0", "bias:0", "vector_u:0"]
    assert not ours.vector_u.requires_grad
    assert [n for n, _ in ours.named_parameters()] == ["layer.kernel", "layer.bias"]
    with pytest.raises(ValueError, match="expects 3 weights"):
        ours.set_weights(ours.get_weights()[:2])
    with pytest.raises(ValueError, match="vector_u"):
        ours.set_weights(ours.get_weights()[:2] + [np.zeros((1, 5))])
    # state_dict into an unbuilt layer; weights= at construction
    fresh = sepconv.SpectralNormalization(sepconv.Conv1D(4, 3, padding="causal"),
                                          power_iterations=2)
    fresh.load_state_dict(ours.state_dict())
    for a, b in zip(fresh.get_weights(), ours.get_weights()):
        np.testing.assert_array_equal(a, b)
    given_w = sepconv.SpectralNormalization(sepconv.Conv1D(4, 3), weights=ours.get_weights())
    given_w(np.zeros((1, 5, 3), np.float32), training=False)
    np.testing.assert_array_equal(given_w.get_weights()[2], ours.get_weights()[2])
    # trainable freezes the wrapped layer; R function; repr; output shape
    frozen = sepconv.SpectralNormalization(sepconv.Dense(2), trainable=False,
                                           input_shape=(3,))
    assert not any(p.requires_grad for p in frozen.parameters())
    r = sepconv.layer_spectral_normalization(layer=sepconv.Dense(2), power_iterations=3.0)
    assert r.power_iterations == 3 and isinstance(r.power_iterations, int)
    assert "power_iterations=2" in repr(ours)
    assert ours.compute_output_shape((None, 7, 3)) == \
        tuple(ref.compute_output_shape((None, 7, 3)).as_list())
    assert sepconv.SpectralNormalization(sepconv.Dense(2, dtype="float64")).dtype == "float64"


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="power_iterations.*power_iterations=0"):
        sepconv.SpectralNormalization(sepconv.Dense(2), power_iterations=0)
    with pytest.raises(ValueError, match="power_iterations"):
        sepconv.SpectralNormalization(sepconv.Dense(2), power_iterations=1.5)
    with pytest.raises(TypeError, match="power_iterations"):
        sepconv.SpectralNormalization(sepconv.Dense(2), power_iterations="2")
    with pytest.raises(ValueError, match="no attribute 'kernel' nor 'embeddings'"):
        sepconv.SpectralNormalization(sepconv.DepthwiseConv1D(3))
    with pytest.raises(ValueError, match="`layer`"):
        sepconv.SpectralNormalization(torch.nn.Linear(2, 2))
    for lstm in (sepconv.LSTM(3), tf_keras.layers.LSTM(3)):  # Keras: the cell's kernel
        with pytest.raises(ValueError, match="no attribute 'kernel' nor 'embeddings'"):
            if isinstance(lstm, torch.nn.Module):
                sepconv.SpectralNormalization(lstm)
            else:
                tf_keras.layers.SpectralNormalization(lstm)(np.zeros((1, 4, 2), np.float32))
    # tf-keras refuses the same, at build
    ref = tf_keras.layers.SpectralNormalization(tf_keras.layers.DepthwiseConv1D(3))
    with pytest.raises(ValueError, match="no attribute 'kernel' nor 'embeddings'"):
        ref(np.zeros((1, 4, 2), np.float32))
    with pytest.raises(ValueError, match="power_iterations"):
        tf_keras.layers.SpectralNormalization(tf_keras.layers.Dense(2), power_iterations=0)


def _discriminator(K):
    """A MelGAN-style waveform discriminator: spectrally normalized strided convolutions
    with leaky ReLUs, and a HiFi-GAN-style period branch (Conv2D) beside it."""
    L, SN = K.layers, K.layers.SpectralNormalization
    x = L.Input((64, 1))
    h = L.LeakyReLU(0.2)(SN(L.Conv1D(8, 15, padding="same"))(x))
    h = L.LeakyReLU(0.2)(SN(L.Conv1D(16, 41, strides=4, padding="same"))(h))
    h = L.LeakyReLU(0.2)(SN(L.Conv1D(16, 5, padding="causal"), power_iterations=2)(h))
    wave = SN(L.Conv1D(1, 3, padding="same"))(h)
    p = L.Reshape((16, 4, 1))(x)
    p = L.LeakyReLU(0.2)(SN(L.Conv2D(4, (5, 1), strides=(3, 1), padding="same"))(p))
    period = SN(L.Dense(1))(L.Flatten()(p))
    return K.Model(x, [wave, period])


def test_discriminator_model_files_both_ways(tmp_path):
    """A discriminator trained a few steps (so the kernels are normalized and vector_u
    moved) in each Keras, saved (tf-keras: .h5, .keras, SavedModel directory; Keras 3:
    .keras, .h5), loaded without TensorFlow; and sepconv's files back."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 64, 1)).astype(np.float32)
    targets = [rng.standard_normal((4, 16, 1)).astype(np.float32),
               rng.standard_normal((4, 1)).astype(np.float32)]
    cases, names = Cases(tmp_path), []
    for tag, K, exts in (("tk", tf_keras, (".h5", ".keras", "_savedmodel")),
                         ("k3", keras, (".keras", ".h5"))):
        K.utils.set_random_seed(6)
        model = _discriminator(K)
        model.compile(optimizer=K.optimizers.SGD(0.05), loss="mse")
        model.fit(x, targets, epochs=3, batch_size=2, verbose=0)
        y = outputs(model.predict(x, verbose=0))
        for ext in exts:
            path = os.path.join(tmp_path, f"{tag}{ext}")
            model.save(path)
            cases.add(tag + ext, "model", path, [x], y)
            names.append(tag + ext)
        weights = os.path.join(tmp_path, f"{tag}.weights.h5")  # into the loaded .keras model
        model.save_weights(weights)
        cases.add(tag + ".weights.h5", "weights", weights, [x], y,
                  model_file=os.path.join(tmp_path, f"{tag}.keras"))
        names.append(tag + ".weights.h5")
    results = cases.run()
    for name in names:
        check(results[name])
    for tag, ext, load in (
            ("tk", ".h5", lambda p: tf_keras.models.load_model(p, custom_objects=TK_CUSTOM)),
            ("k3", ".keras", keras.saving.load_model)):
        ours = sepconv.load_keras_model(os.path.join(tmp_path, f"{tag}{ext}"))
        with torch.no_grad():
            want = [o.numpy() for o in ours(torch.from_numpy(x))]
        back = os.path.join(tmp_path, f"back_{tag}{ext}")
        sepconv.save_keras_model(ours, back)
        again = load(back)
        for a, b in zip(outputs(again.predict(x, verbose=0)), want):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        # vector_u travels too (training in the other Keras goes on from it)
        mine = [m for m in ours.modules() if isinstance(m, sepconv.SpectralNormalization)]
        theirs = [layer for layer in again.layers if "spectral" in layer.name]
        assert len(mine) == len(theirs) == 6
        for m, t in zip(mine, theirs):
            u = t.vector_u if hasattr(t, "vector_u") else None
            np.testing.assert_allclose(np.asarray(u.numpy() if hasattr(u, "numpy") else
                                                  keras.ops.convert_to_numpy(u)),
                                       m.get_weights()[-1], rtol=1e-6, atol=1e-7)


def test_tf_keras_facts(tmp_path, monkeypatch):
    """What the docstring says of tf-keras 2.21: its own ``load_model`` needs the class in
    ``custom_objects`` (its deserializer table lacks SpectralNormalization), and where
    ``tf.keras`` is Keras 3 (no ``TF_USE_LEGACY_KERAS``) its build fails on Keras 3's
    ``InputSpec``."""
    wrapped = tf_keras.layers.SpectralNormalization(tf_keras.layers.Dense(2))
    model = tf_keras.Sequential([tf_keras.Input((3,)), wrapped])
    model.save(tmp_path / "m.h5")
    with pytest.raises(ValueError, match="Unknown layer: 'SpectralNormalization'"):
        tf_keras.models.load_model(tmp_path / "m.h5")
    assert len(tf_keras.models.load_model(tmp_path / "m.h5", custom_objects=TK_CUSTOM)
               .layers[0].get_weights()) == 3
    if os.environ.get("TF_USE_LEGACY_KERAS") not in ("1", "true", "True"):
        monkeypatch.setattr(_tk_sn, "tf", tf)
        layer = tf_keras.layers.SpectralNormalization(tf_keras.layers.Dense(2))
        with pytest.raises(TypeError, match="InputSpec"):
            layer(np.zeros((1, 3), np.float32))


def test_streams_as_the_wrapped_causal_conv():
    """A causal discriminator trunk streams chunk by chunk in eval mode: the chunks'
    outputs are tf-keras' whole-sequence inference outputs (same weights); training
    mode, and a wrapped layer that does not stream, are refused naming the layer."""
    torch.manual_seed(3)
    layers = [sepconv.SpectralNormalization(sepconv.Conv1D(8, 4, strides=2, padding="causal"),
                                            input_shape=(None, 3)),
              sepconv.LeakyReLU(0.2),
              sepconv.SpectralNormalization(sepconv.Conv1D(4, 3, dilation_rate=2,
                                                           padding="causal"),
                                            power_iterations=2),
              sepconv.SpectralNormalization(sepconv.Dense(2))]
    model = torch.nn.Sequential(*layers)
    x = np.random.default_rng(4).standard_normal((2, 23, 3)).astype(np.float32)
    for _ in range(2):
        model(torch.from_numpy(x))  # training calls: normalized kernels, vector_u moved
    model.eval()
    L, SN = tf_keras.layers, tf_keras.layers.SpectralNormalization
    ref = tf_keras.Sequential([
        tf_keras.Input((None, 3)), SN(L.Conv1D(8, 4, strides=2, padding="causal")),
        L.LeakyReLU(0.2), SN(L.Conv1D(4, 3, dilation_rate=2, padding="causal"),
                             power_iterations=2), SN(L.Dense(2))])
    for ours, theirs in zip(layers, ref.layers):
        theirs.set_weights(ours.get_weights())
    want = ref(x, training=False).numpy()
    stream = sepconv.stream(model)
    with torch.no_grad():
        parts = [stream(torch.from_numpy(x[:, a:b]))
                 for a, b in ((0, 1), (1, 2), (2, 2), (2, 9), (9, 23))]
    np.testing.assert_allclose(torch.cat(parts, 1).numpy(), want, rtol=1e-5, atol=1e-5)
    model.train()
    with pytest.raises(ValueError, match="spectral_normalization.*training mode"):
        stream(torch.from_numpy(x[:, :2]))
    valid = torch.nn.Sequential(sepconv.SpectralNormalization(
        sepconv.Conv1D(2, 3, padding="same", input_shape=(None, 3)))).eval()
    with pytest.raises(ValueError, match="layer 'conv1d.*padding='same'"):  # ('valid': streams)
        sepconv.stream(valid)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("kind", ["dense", "conv1d_causal"])
def test_mixed_precision_matches_tf_keras(policy, kind):
    """Under a mixed policy tf-keras runs the power method on the float32 variables read
    in float16 / bfloat16 (autocast) and assigns the results back in float32: the same
    kernels and vector_u here (half-precision values, to the half type's rounding of a
    sum), and the outputs to that rounding."""
    rng = np.random.default_rng(11)
    make = KINDS[kind][0]
    ours = sepconv.SpectralNormalization(make(sepconv, policy), power_iterations=2)
    ref = tf_keras.layers.SpectralNormalization(make(tf_keras, policy), power_iterations=2,
                                                dtype=policy)
    x = _inputs(kind, rng, "float32")
    ours.eval()(x)
    ref(x)
    ours.train()
    ref.set_weights(ours.get_weights())
    for step in range(3):
        x = _inputs(kind, rng, "float32")
        y, want = ours(x, training=True), ref(x, training=True)
        assert str(y.dtype).endswith(want.dtype.name)
        # the layer's own half-precision matmul may round differently: two units in the
        # last place of the output's scale
        a, b = y.detach().float().numpy(), tf.cast(want, tf.float32).numpy()
        ulp = 2.0 ** (-10 if policy == "mixed_float16" else -7)
        assert np.max(np.abs(a - b)) <= 2 * ulp * max(1.0, np.max(np.abs(b))), step
        half = getattr(torch, policy[len("mixed_"):])
        for i, (a, b) in enumerate(zip(ours.get_weights(), ref.get_weights())):
            # float32 variables holding half-precision results (float32 arithmetic would
            # leave the half type's grid), a rounding of a sum apart at most
            assert a.dtype == b.dtype == np.float32
            for w in (a, b):
                assert np.array_equal(torch.from_numpy(w).to(half).float().numpy(), w)
            # (each step starts from the kernel the last one overwrote: differences add up)
            assert np.max(np.abs(a - b)) <= 2 * (step + 1) * ulp * max(1.0, np.max(np.abs(b)))
