"""``LocallyConnected1D`` / ``LocallyConnected2D`` against tf-keras 2.21 (what R keras
wraps; Keras 3 has no such layers): signature, every ``implementation`` (1, 2, 3) with its
own weight layout, padding valid / same, strides, data formats, activations, forward and
gradients (input and weights), configs, regularizers, constraints, the activity
regularizer, dtype policies, and tf-keras model files (``.h5``, ``.keras``) loaded in a
process without TensorFlow and written back.

tf-keras facts found here: ``padding="same"`` (implementations 2 and 3) reads inputs
``o * s - k // 2 .. o * s + k - k // 2 - 1`` (an even kernel's odd element goes before,
unlike TensorFlow's convolution); under channels_first the bias ``(*out, filters)`` is
added reshaped, not transposed, to ``(filters, *out)``; ``implementation=1`` refuses
``padding="same"`` at construction; the three layouts give the same numbers."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")

import sepconv  # noqa: E402
from keras_files import Cases, check, outputs  # noqa: E402
from tf_keras_compare import (check_sgd_step, check_signature,  # noqa: E402
                              config_without_names)

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])
NAMES = ["LocallyConnected1D", "LocallyConnected2D"]


@pytest.mark.parametrize("name", NAMES)
def test_signature_is_tf_keras_then_common_and_r_function(name):
    check_signature(getattr(sepconv, name), getattr(tf_keras.layers, name),
                    getattr(sepconv, sepconv.r.r_name(name)), required=2)
    assert sepconv.r.r_name(name) == f"layer_locally_connected_{name[-2]}d"


def _pair(name, kwargs, shape, rng, dtype="float32"):
    """sepconv's layer at random weights and tf-keras' with the same weights (shapes and
    order checked by set_weights both ways)."""
    ours = getattr(sepconv, name)(**kwargs, dtype=dtype)
    ours.build(shape)
    ref = getattr(tf_keras.layers, name)(**kwargs, dtype=dtype)
    ref.build(shape)
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in ref.weights]
    ours.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(dtype)
                      for w in ours.get_weights()])
    ref.set_weights(ours.get_weights())
    return ours, ref


def _outputs_and_gradients(ours, ref, x, rng):
    xt = torch.tensor(x, requires_grad=True)
    y = ours(xt)
    probe = rng.standard_normal(tuple(y.shape)).astype(x.dtype)
    (y * torch.from_numpy(probe)).sum().backward()
    xv = tf.Variable(x)
    with tf.GradientTape() as tape:
        yr = ref(xv)
        loss = tf.reduce_sum(yr * probe)
    grads = tape.gradient(loss, [xv] + ref.trainable_weights)
    ours_g = [xt.grad.numpy()] + [w.grad.numpy() for w in ours.weights]
    return y.detach().numpy(), yr.numpy(), ours_g, [np.asarray(g) for g in grads]


@st.composite
def _case(draw):
    rank = draw(st.integers(1, 2))
    impl = draw(st.integers(1, 3))
    padding = "valid" if impl == 1 else draw(st.sampled_from(["valid", "same"]))
    fmt = draw(st.sampled_from(["channels_last", "channels_first"]))
    kernel = tuple(draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)))
    strides = tuple(draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank)))
    spatial = tuple(k + draw(st.integers(0, 5)) for k in kernel)
    kwargs = dict(filters=draw(st.integers(1, 4)),
                  kernel_size=kernel if rank > 1 or draw(st.booleans()) else kernel[0],
                  strides=strides, padding=padding, data_format=fmt,
                  activation=draw(st.sampled_from([None, "relu", "tanh"])),
                  use_bias=draw(st.booleans()), implementation=impl)
    channels = draw(st.integers(1, 3))
    shape = (2,) + (spatial + (channels,) if fmt == "channels_last" else
                    (channels,) + spatial)
    dtype = draw(st.sampled_from(["float32", "float64"]))
    return f"LocallyConnected{rank}D", kwargs, shape, dtype, draw(st.integers(0, 2 ** 16))


@SETTINGS
@given(_case())
def test_forward_and_gradients_match_tf_keras(case):
    name, kwargs, shape, dtype, seed = case
    rng = np.random.default_rng(seed)
    ours, ref = _pair(name, kwargs, shape, rng, dtype)
    x = rng.standard_normal(shape).astype(dtype)
    y, yr, grads, tf_grads = _outputs_and_gradients(ours, ref, x, rng)
    tol = 1e-5 if dtype == "float32" else 1e-10
    assert y.shape == yr.shape == ours.compute_output_shape(shape) == \
        tuple(ref.compute_output_shape(shape))
    np.testing.assert_allclose(y, yr, atol=tol, rtol=tol)
    assert len(grads) == len(tf_grads)
    for g, want in zip(grads, tf_grads):
        np.testing.assert_allclose(g, want, atol=tol * 10, rtol=tol * 10)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_the_three_layouts_compute_the_same(name, fmt):
    """One set of numbers in the three layouts: implementation 1's kernel moved into
    implementation 2's dense layout and 3's connected entries gives the same outputs."""
    rank = int(name[-2])
    rng = np.random.default_rng(rank)
    spatial = (7, 6)[:rank]
    shape = (2,) + (spatial + (3,) if fmt == "channels_last" else (3,) + spatial)
    x = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    kw = dict(filters=2, kernel_size=3, strides=2, data_format=fmt, input_shape=shape[1:])
    one = getattr(sepconv, name)(**kw, implementation=1)
    two = getattr(sepconv, name)(**kw, implementation=2)
    three = getattr(sepconv, name)(**kw, implementation=3)
    one.set_weights([rng.standard_normal(w.shape).astype(np.float32)
                     for w in one.get_weights()])
    # implementation 2's kernel from tf-keras' own impl-2 layer's answer to unit inputs
    ref2 = getattr(tf_keras.layers, name)(**{k: v for k, v in kw.items()
                                             if k != "input_shape"}, implementation=2)
    ref2.build(shape)
    mask = sepconv.functional.locally_connected_mask(
        spatial, 3, 2, one.kernel_size, one.strides, "valid", fmt)
    k1 = one.get_weights()[0]
    # dense (in, out) from implementation 1 by probing it with one-hot inputs
    size_in = mask.shape[0]
    probe = torch.eye(size_in).reshape((size_in,) + shape[1:])
    no_bias = getattr(sepconv, name)(**kw, implementation=1, use_bias=False)
    no_bias.set_weights([k1])
    dense = no_bias(probe).detach().reshape(size_in, -1).numpy()
    assert not np.any(dense[~mask]), "implementation 1 reaches outside the mask"
    two.set_weights([dense.reshape(two.get_weights()[0].shape), one.get_weights()[1]])
    rows, cols = np.nonzero(mask.T)
    np.testing.assert_array_equal(sepconv.functional.locally_connected_pairs(
        spatial, 3, 2, one.kernel_size, one.strides, "valid", fmt).numpy(),
        np.stack([rows, cols]))
    three.set_weights([dense.T[rows, cols], one.get_weights()[1]])
    ref2.set_weights(two.get_weights())
    for layer in (two, three):
        torch.testing.assert_close(layer(x), one(x), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(ref2(x.numpy()).numpy(), one(x).detach().numpy(), atol=1e-5)


def test_gradcheck_every_implementation():
    for impl, padding in ((1, "valid"), (2, "same"), (3, "same"), (3, "valid")):
        for fmt in ("channels_last", "channels_first"):
            layer = sepconv.LocallyConnected2D(2, (2, 3), strides=(2, 1), padding=padding,
                                               data_format=fmt, implementation=impl,
                                               input_shape=(5, 4, 2) if fmt == "channels_last"
                                               else (2, 5, 4), dtype="float64")
            x = torch.randn((2,) + layer.batch_input_shape[1:], dtype=torch.float64,
                            requires_grad=True)
            params = [w.detach().clone().requires_grad_() for w in layer.weights]
            spatial = layer.input_spatial
            geometry = (spatial, 2, 2, layer.kernel_size, layer.strides, layer.padding, fmt)
            mask = torch.as_tensor(sepconv.functional.locally_connected_mask(*geometry))
            pairs = sepconv.functional.locally_connected_pairs(*geometry)
            index = getattr(layer, "kernel_index", None)

            def fn(a, k, b, layer=layer, mask=mask, pairs=pairs, index=None):
                return sepconv.functional.locally_connected(
                    a, k, b, layer.kernel_size, layer.strides, layer.padding,
                    layer.data_format, layer.implementation, mask, pairs, 2, index)

            # tf-keras' formulas (dense mask, pairs) and the windows' gather
            assert torch.autograd.gradcheck(fn, (x, *params))
            if index is not None:
                assert torch.autograd.gradcheck(
                    lambda a, k, b: fn(a, k, b, index=index), (x, *params))
                torch.testing.assert_close(fn(x, *params, index=index), fn(x, *params))


def test_masked_entries_of_implementation_2_get_no_gradient_as_in_tf_keras():
    rng = np.random.default_rng(0)
    ours, ref = _pair("LocallyConnected1D", dict(filters=2, kernel_size=3, padding="same",
                                                 implementation=2), (2, 6, 2), rng)
    x = rng.standard_normal((2, 6, 2)).astype(np.float32)
    _, _, grads, tf_grads = _outputs_and_gradients(ours, ref, x, rng)
    unmasked = sepconv.functional.locally_connected_mask(
        (6,), 2, 2, (3,), (1,), "same", "channels_last").reshape(grads[1].shape)
    assert np.all(grads[1][~unmasked] == 0) and np.all(tf_grads[1][~unmasked] == 0)
    assert np.any(grads[1][unmasked] != 0)


CONFIGS = [
    ("LocallyConnected1D", dict(filters=3, kernel_size=2, strides=2, padding="same",
                                data_format="channels_first", activation="relu",
                                use_bias=False, kernel_initializer="he_normal",
                                bias_initializer="ones", kernel_regularizer="l2",
                                bias_regularizer="l1", activity_regularizer="l1_l2",
                                kernel_constraint="max_norm", bias_constraint="non_neg",
                                implementation=3)),
    ("LocallyConnected2D", dict(filters=2, kernel_size=(2, 3), implementation=2)),
    ("LocallyConnected2D", dict(filters=2, kernel_size=3, strides=(1, 2))),
]


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=[f"{c[0]}-{i}" for i, c in
                                                      enumerate(CONFIGS)])
def test_config_equals_tf_keras_and_round_trips(name, kwargs):
    ours = getattr(sepconv, name)(**kwargs)
    ref = getattr(tf_keras.layers, name)(**kwargs)
    assert list(ours.get_config()) == [k for k in ref.get_config()
                                       if k in ours.get_config()]
    assert set(ref.get_config()) - set(ours.get_config()) <= {"batch_input_shape"}
    assert config_without_names(ours.get_config()) == \
        config_without_names({**ref.get_config(), "dtype": "float32"})
    again = getattr(sepconv, name).from_config(ref.get_config())
    assert config_without_names(again.get_config()) == config_without_names(ours.get_config())
    theirs = getattr(tf_keras.layers, name).from_config(ours.get_config())
    assert config_without_names(theirs.get_config()) == \
        config_without_names(ref.get_config())


@pytest.mark.parametrize("impl", [1, 2, 3])
def test_regularizers_constraints_and_activity_penalty_train_like_tf_keras(impl):
    """The losses (kernel, bias, activity / batch) and one SGD step with the constraints
    projected after it agree with tf-keras."""
    kwargs = dict(filters=3, kernel_size=2, padding="valid" if impl == 1 else "same",
                  kernel_regularizer=tf_keras.regularizers.L2(0.03),
                  bias_regularizer=tf_keras.regularizers.L1(0.02),
                  activity_regularizer=tf_keras.regularizers.L1L2(0.01, 0.02),
                  kernel_constraint=tf_keras.constraints.MaxNorm(0.4),
                  bias_constraint=tf_keras.constraints.NonNeg(), implementation=impl)
    rng = np.random.default_rng(impl)
    ours_kwargs = {k: (v if not hasattr(v, "get_config") else
                       {"class_name": type(v).__name__, "config": v.get_config()})
                   for k, v in kwargs.items()}
    ours = sepconv.LocallyConnected1D(**ours_kwargs)
    ours.build((4, 7, 2))
    ref = tf_keras.layers.LocallyConnected1D(**kwargs)
    ref.build((4, 7, 2))
    ours.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(np.float32)
                      for w in ours.get_weights()])
    ref.set_weights(ours.get_weights())
    x = rng.standard_normal((4, 7, 2)).astype(np.float32)
    target = rng.standard_normal(ours.compute_output_shape(x.shape)).astype(np.float32)
    with torch.no_grad():
        ours(x)
    ref(x)
    assert len(ours.losses) == len(ref.losses) == 3
    for got, want in zip(ours.losses, ref.losses):
        np.testing.assert_allclose(float(got.detach()), float(want), rtol=1e-5)
    check_sgd_step(ours, ref, x, target)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_policies_like_tf_keras(policy):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 6, 5, 2)).astype(np.float32)
    ours = sepconv.LocallyConnected2D(3, 2, implementation=2, padding="same", dtype=policy)
    ref = tf_keras.layers.LocallyConnected2D(3, 2, implementation=2, padding="same",
                                             dtype=policy)
    ours.build(x.shape)
    ref.build(x.shape)
    ref.set_weights(ours.get_weights())
    y, yr = ours(x), ref(x)
    assert ours.kernel.dtype == torch.float32 and str(y.dtype).endswith(yr.dtype.name)
    tol = 2e-2 if policy == "mixed_bfloat16" else 2e-3
    np.testing.assert_allclose(y.float().detach().numpy(), np.asarray(yr, np.float32),
                               atol=tol, rtol=tol)
    assert ours.get_config()["dtype"] == policy


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="`padding`.*implementation=1.*'same'"):
        sepconv.LocallyConnected1D(2, 3, padding="same")
    with pytest.raises(ValueError, match="`implementation`.*implementation=4"):
        sepconv.LocallyConnected1D(2, 3, implementation=4)
    with pytest.raises(ValueError, match="`filters`.*filters=0"):
        sepconv.LocallyConnected2D(0, 3)
    with pytest.raises(ValueError, match="`kernel_size`.*tuple of 2"):
        sepconv.LocallyConnected2D(2, (1, 2, 3))
    with pytest.raises(ValueError, match="`padding`.*'causal'"):
        sepconv.LocallyConnected1D(2, 3, padding="causal", implementation=2)
    with pytest.raises(ValueError, match="`strides`.*strides=0"):
        sepconv.LocallyConnected1D(2, 3, strides=0)
    with pytest.raises(TypeError, match="`use_bias`"):
        sepconv.LocallyConnected1D(2, 3, use_bias="yes")
    with pytest.raises(ValueError, match="`input_shape`.*too small"):
        sepconv.LocallyConnected1D(2, 5, input_shape=(3, 2))
    with pytest.raises(ValueError, match="fully defined"):
        sepconv.LocallyConnected1D(2, 3)(torch.randn(2, 0, 2)) if False else \
            sepconv.LocallyConnected1D(2, 3).build((None, None, 2))
    layer = sepconv.LocallyConnected1D(2, 3, input_shape=(6, 2))
    with pytest.raises(ValueError, match=r"expects input of shape \(None, 6, 2\)"):
        layer(torch.randn(2, 7, 2))
    with pytest.raises(ValueError, match=r"Weight `kernel`.*\(4, 6, 2\)"):
        layer.set_weights([np.zeros((4, 6, 3)), np.zeros((4, 2))])


def test_state_dict_numpy_inputs_and_r_function():
    x = np.random.default_rng(2).standard_normal((2, 8, 3))  # float64, as R hands over
    layer = sepconv.layer_locally_connected_1d(filters=2.0, kernel_size=3.0, strides=2.0,
                                               implementation=2.0, padding="same")
    y = layer(x)
    assert y.dtype == torch.float32 and tuple(y.shape) == (2, 4, 2)
    # implementation 2's kernel tells the input size: a fresh layer loads the state dict
    fresh = sepconv.LocallyConnected1D(2, 3, strides=2, padding="same", implementation=2)
    fresh.load_state_dict(layer.state_dict())
    torch.testing.assert_close(fresh(x), y)
    assert list(layer.state_dict()) == ["kernel", "bias"]
    one = sepconv.LocallyConnected1D(2, 3, input_shape=(8, 3))
    again = sepconv.LocallyConnected1D(2, 3, input_shape=(8, 3))
    again.load_state_dict(one.state_dict())
    torch.testing.assert_close(again(x), one(x))
    assert "implementation=2" in repr(layer)
    with pytest.raises(ValueError, match="implementation"):
        sepconv.layer_locally_connected_2d(filters=2, kernel_size=2, implementation=1.5)


def _models():
    """tf-keras models holding every implementation, both layers, both formats."""
    L = tf_keras.layers
    tf_keras.utils.set_random_seed(6)
    x1 = tf_keras.Input((12, 3))
    h = L.LocallyConnected1D(4, 3, activation="relu", name="lc1_1")(x1)
    h = L.LocallyConnected1D(3, 2, strides=2, padding="same", implementation=2,
                             name="lc1_2")(h)
    h = L.LocallyConnected1D(2, 2, padding="same", implementation=3,
                             kernel_regularizer="l2", name="lc1_3")(h)
    m1 = tf_keras.Model(x1, L.Flatten(name="f1")(h))
    m2 = tf_keras.Sequential([
        tf_keras.Input((3, 8, 7)),
        L.LocallyConnected2D(4, (3, 2), data_format="channels_first", name="lc2_1"),
        L.LocallyConnected2D(3, 2, strides=(2, 1), padding="same", implementation=2,
                             data_format="channels_first", name="lc2_2"),
        L.LocallyConnected2D(2, 3, padding="same", implementation=3,
                             data_format="channels_first", activation="tanh",
                             name="lc2_3"),
    ])
    m3 = tf_keras.Sequential([tf_keras.Input((6, 5, 2)),
                              L.LocallyConnected2D(3, 2, implementation=3, name="lc3")])
    return {"lc1d": m1, "lc2d": m2, "lc2d_last": m3}


def test_tf_keras_files_load_without_tensorflow_and_go_back(tmp_path):
    """.h5 and .keras files from tf-keras load in the TensorFlow-free child with
    ``predict``'s outputs; sepconv writes them back as .h5, which tf-keras loads with the
    same outputs and the same weights (shapes per implementation)."""
    cases = Cases(tmp_path)
    data = {}
    for name, model in _models().items():
        for layer in model.layers:  # random biases too
            layer.set_weights([np.random.default_rng(1).standard_normal(w.shape)
                               .astype(np.float32) * 0.3 for w in layer.get_weights()])
        rng = np.random.default_rng(len(name))
        x = rng.standard_normal((2,) + tuple(model.inputs[0].shape[1:])).astype(np.float32)
        y = outputs(model.predict(x, verbose=0))
        data[name] = (model, x, y)
        for ext in (".h5", ".keras"):
            path = os.path.join(tmp_path, f"{name}{ext}")
            model.save(path)
            cases.add(f"{name}{ext}", "model", path, [x], y)
    results = cases.run()
    for key, result in results.items():
        try:
            check(result)
        except AssertionError as err:
            raise AssertionError(f"{key}: {err}") from None
    for name, (model, x, y) in data.items():
        ours = sepconv.load_keras_model(os.path.join(tmp_path, f"{name}.h5"))
        sepconv.save_keras_model(ours, tmp_path / f"{name}_back.h5")
        theirs = tf_keras.models.load_model(tmp_path / f"{name}_back.h5")
        np.testing.assert_allclose(theirs.predict(x, verbose=0), y[0], atol=1e-5)
        for a, b in zip(theirs.get_weights(), model.get_weights()):
            assert a.shape == b.shape
            np.testing.assert_array_equal(a, b)
        assert [type(layer).__name__ for layer in theirs.layers
                if "Locally" in type(layer).__name__] == \
            [type(layer).__name__ for layer in model.layers
             if "Locally" in type(layer).__name__]


def test_sepconv_h5_file_round_trip(tmp_path):
    """sepconv's own .h5 reads back with the same outputs and layouts; .keras is refused
    (Keras 3 has no LocallyConnected layers: the file would load nowhere but here)."""
    model = torch.nn.Sequential(
        sepconv.LocallyConnected1D(3, 2, implementation=3, padding="same",
                                   input_shape=(6, 2), name="a"),
        sepconv.LocallyConnected1D(2, 2, implementation=2, data_format="channels_first",
                                   name="b"),
        sepconv.LocallyConnected1D(2, 1, name="c")).eval()
    x = torch.randn(2, 6, 2)
    want = model(x)
    sepconv.save_keras_model(model, tmp_path / "m.h5")
    again = sepconv.load_keras_model(tmp_path / "m.h5")
    torch.testing.assert_close(again(x), want, atol=0, rtol=0)
    assert [m.implementation for m in again.children()
            if isinstance(m, sepconv.LocallyConnected1D)] == [3, 2, 1]
    with pytest.raises(ValueError, match="Keras 3 has no LocallyConnected1D; save as .h5"):
        sepconv.save_keras_model(model, tmp_path / "m.keras")
    assert not (tmp_path / "m.keras").exists()
