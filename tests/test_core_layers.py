"""The core layers' Keras protocol without TensorFlow: weights in and out, configs and
state_dict round trips, errors naming the argument, training-mode randomness (dropout,
noise), R functions, and gradchecks of the new functional ops.  Numbers against tf-keras
are in test_parity_core_tfkeras.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sepconv
from sepconv import functional as F
from sepconv.layers import CORE_LAYERS
from sepconv.layers.base import KERAS_CLASSES

pytestmark = pytest.mark.usefixtures("torch_single_thread")

# (class, kwargs, input shape, Keras weight shapes)
WEIGHTED = [
    ("Dense", dict(units=3), (2, 5), [(5, 3), (3,)]),
    ("Dense", dict(units=3, use_bias=False), (2, 4, 5), [(5, 3)]),
    ("PReLU", dict(shared_axes=[1]), (2, 3, 4), [(1, 4)]),
    ("BatchNormalization", dict(), (2, 3, 4), [(4,)] * 4),
    ("BatchNormalization", dict(center=False, axis=1), (2, 3, 4), [(3,)] * 3),
    ("BatchNormalization", dict(axis=[1, 2]), (2, 3, 4), [(1, 3, 4)] * 4),
    ("LayerNormalization", dict(axis=[1, 2]), (2, 3, 4), [(3, 4), (3, 4)]),
    ("LayerNormalization", dict(scale=False), (2, 4), [(4,)]),
    ("Embedding", dict(input_dim=6, output_dim=2), None, [(6, 2)]),
]


@pytest.mark.parametrize("name,kwargs,shape,shapes", WEIGHTED,
                         ids=[c[0] + str(i) for i, c in enumerate(WEIGHTED)])
def test_weights_shapes_set_and_state_dict(name, kwargs, shape, shapes):
    cls = getattr(sepconv, name)
    layer = cls(**kwargs) if shape is None else cls(input_shape=shape[1:], **kwargs)
    assert [w.shape for w in layer.get_weights()] == shapes
    rng = np.random.default_rng(0)
    new = [np.abs(rng.standard_normal(s)).astype(np.float32) + 0.1 for s in shapes]
    layer.set_weights(new)
    for got, want in zip(layer.get_weights(), new):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="expects"):
        layer.set_weights(new[:-1])
    with pytest.raises(ValueError, match="shape"):
        layer.set_weights([np.zeros(s + (1,), np.float32) for s in shapes])
    # set_weights on an unbuilt layer builds it from the Keras shapes
    fresh = cls(**kwargs)
    fresh.set_weights(new)
    again = cls(**kwargs)
    again.load_state_dict(layer.state_dict())
    x = (rng.integers(0, 6, (2, 3)) if name == "Embedding"
         else rng.standard_normal(shape).astype(np.float32))
    layer.eval(), fresh.eval(), again.eval()
    want = layer(x).detach()
    torch.testing.assert_close(fresh(x).detach(), want)
    torch.testing.assert_close(again(x).detach(), want)


def test_batch_normalization_from_weights_takes_any_rank():
    """A model file gives (C,) weights only: the rank is the first input's."""
    bn = sepconv.BatchNormalization()
    bn.set_weights([np.ones(3), np.zeros(3), np.zeros(3), np.ones(3)])
    y = bn.eval()(torch.ones(2, 4, 4, 3))
    torch.testing.assert_close(y, torch.full((2, 4, 4, 3), 1 / np.sqrt(1 + 1e-3)))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        bn(torch.ones(2, 4, 4, 5))
    bn1 = sepconv.BatchNormalization(axis=1)
    bn1.set_weights([np.ones(3)] * 4)
    assert bn1.eval()(torch.ones(2, 3, 5, 5)).shape == (2, 3, 5, 5)


def test_moving_statistics_are_buffers_not_parameters():
    bn = sepconv.BatchNormalization(input_shape=(4,))
    assert [n for n, _ in bn.named_parameters()] == ["gamma", "beta"]
    assert set(bn.state_dict()) == {"gamma", "beta", "moving_mean", "moving_variance"}
    bn.trainable = False
    assert not any(p.requires_grad for p in bn.parameters())


def test_batch_normalization_update_formula():
    """moving = moving * momentum + batch * (1 - momentum) with the biased variance (2D)."""
    x = torch.tensor([[1.0, 2.0], [3.0, 6.0], [5.0, 1.0]], dtype=torch.float64)
    bn = sepconv.BatchNormalization(momentum=0.75, dtype="float64").train()
    bn(x)
    mean, var = x.mean(0).numpy(), x.var(0, unbiased=False).numpy()
    np.testing.assert_allclose(bn.get_weights()[2], 0.25 * mean, rtol=1e-7)
    np.testing.assert_allclose(bn.get_weights()[3], 0.75 + 0.25 * var, rtol=1e-7)


@pytest.mark.parametrize("name", CORE_LAYERS)
def test_registered_and_config_round_trip(name, request):
    assert KERAS_CLASSES[name] is getattr(sepconv, name)
    cls = getattr(sepconv, name)
    required = dict(Dense=dict(units=2), Activation=dict(activation="relu"),
                    Dropout=dict(rate=0.1), SpatialDropout1D=dict(rate=0.1),
                    SpatialDropout2D=dict(rate=0.1), SpatialDropout3D=dict(rate=0.1),
                    GaussianNoise=dict(stddev=0.1), Reshape=dict(target_shape=(2, 2)),
                    Permute=dict(dims=(1,)), RepeatVector=dict(n=2),
                    Embedding=dict(input_dim=3, output_dim=2),
                    TimeDistributed=dict(layer=sepconv.Dense(2))).get(name, {})
    layer = cls(**required)
    config = layer.get_config()
    config["name"] = f"{config['name']}_{request.node.name}"
    twin = cls.from_config(config)
    assert twin.get_config() == config
    assert isinstance(repr(layer), str)


@pytest.mark.parametrize("make,match", [
    (lambda: sepconv.Dense(0), "units"),
    (lambda: sepconv.Dense(2.5), "units"),
    (lambda: sepconv.Dense("3"), "units"),
    (lambda: sepconv.Dense(2, activation="nope"), "activation"),
    (lambda: sepconv.ReLU(max_value=-1), "max_value"),
    (lambda: sepconv.ReLU(threshold=-0.5), "threshold"),
    (lambda: sepconv.LeakyReLU(alpha=None), "alpha"),
    (lambda: sepconv.Dropout(1.5), "rate"),
    (lambda: sepconv.GaussianNoise(-1), "stddev"),
    (lambda: sepconv.Reshape((-1, -1)), "target_shape"),
    (lambda: sepconv.Permute((1, 3)), "dims"),
    (lambda: sepconv.MaxPooling1D(padding="causal"), "padding"),
    (lambda: sepconv.MaxPooling2D(pool_size=(2, 0)), "pool_size"),
    (lambda: sepconv.AveragePooling3D(strides=(1, 2)), "strides"),
    (lambda: sepconv.GlobalMaxPooling2D(data_format="nhwc"), "data_format"),
    (lambda: sepconv.BatchNormalization(momentum=2), "momentum"),
    (lambda: sepconv.BatchNormalization(center="yes"), "center"),
    (lambda: sepconv.Flatten(data_format=3), "data_format"),
    (lambda: sepconv.Embedding(0, 3), "input_dim"),
    (lambda: sepconv.PReLU(shared_axes=[0]), "shared_axes"),
    (lambda: sepconv.Concatenate(axis=[1, 2]), "axis"),
    (lambda: sepconv.TimeDistributed(torch.nn.Linear(2, 2)), "layer"),
])
def test_errors_name_the_argument(make, match):
    with pytest.raises((ValueError, TypeError), match=f"`?{match}"):
        make()


def test_call_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3, 5\)"):
        sepconv.Dense(2, input_shape=(4,))(torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="total size"):
        sepconv.Reshape((5,))(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="too small"):
        sepconv.MaxPooling1D(3)(torch.zeros(1, 2, 1))
    with pytest.raises(ValueError, match="list"):
        sepconv.Add()(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="exactly 2"):
        sepconv.Subtract()([torch.zeros(2)] * 3)
    with pytest.raises(ValueError, match="incompatible"):
        sepconv.Add()([torch.zeros(2, 3), torch.zeros(2, 4)])
    with pytest.raises(ValueError, match="matching"):
        sepconv.Concatenate()([torch.zeros(2, 3), torch.zeros(3, 3)])
    with pytest.raises(ValueError, match="input_dim=4"):
        sepconv.Embedding(4, 2)(np.array([[0, 4]]))
    with pytest.raises(ValueError, match="rank 2"):
        sepconv.RepeatVector(2)(torch.zeros(2, 3, 4))


def test_dropout_in_train_only_with_keras_scaling():
    x = torch.ones(200, 100)
    layer = sepconv.Dropout(0.3, seed=1)
    assert layer.training  # a new torch module is in training mode
    y = layer(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.02
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.7))
    torch.testing.assert_close(sepconv.Dropout(0.3, seed=1)(x), y)  # the seed repeats
    assert torch.equal(layer.eval()(x), x)
    assert torch.equal(sepconv.Dropout(1.0)(x), torch.zeros_like(x))
    y = sepconv.Dropout(0.5, noise_shape=(None, 1))(torch.ones(50, 8))
    assert all(len(set(row.tolist())) == 1 for row in y)  # one draw per row


@pytest.mark.parametrize("name,shape,fmt,axes", [
    ("SpatialDropout1D", (20, 6, 30), None, (1,)),
    ("SpatialDropout2D", (10, 4, 5, 30), "channels_last", (1, 2)),
    ("SpatialDropout2D", (10, 30, 4, 5), "channels_first", (2, 3)),
    ("SpatialDropout3D", (10, 2, 3, 4, 30), None, (1, 2, 3)),
])
def test_spatial_dropout_drops_whole_channels(name, shape, fmt, axes):
    kwargs = {} if fmt is None else dict(data_format=fmt)
    y = getattr(sepconv, name)(0.5, seed=3, **kwargs)(torch.ones(shape))
    spread = y.amax(dim=axes) - y.amin(dim=axes)
    assert torch.all(spread == 0)
    assert set(torch.unique(y).tolist()) == {0.0, 2.0}


def test_gaussian_noise_in_train_only():
    x = torch.zeros(400, 250)
    layer = sepconv.GaussianNoise(0.5, seed=0)
    y = layer(x)
    assert abs(y.std().item() - 0.5) < 0.01 and abs(y.mean().item()) < 0.01
    assert torch.equal(layer.eval()(x), x)


def test_flatten_channels_first_is_keras_order():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    got = sepconv.Flatten(data_format="channels_first")(x).numpy()
    np.testing.assert_array_equal(got, np.transpose(x, (0, 2, 3, 1)).reshape(2, -1))
    np.testing.assert_array_equal(sepconv.Flatten()(x).numpy(), x.reshape(2, -1))


@pytest.mark.parametrize("name,kwargs,shape", [
    ("Dense", dict(units=3), (None, 4, 5)), ("Flatten", {}, (None, 3, 4)),
    ("Reshape", dict(target_shape=(-1, 2)), (None, 3, 4)),
    ("Permute", dict(dims=(2, 1)), (None, 3, 4)), ("RepeatVector", dict(n=3), (None, 4)),
    ("MaxPooling2D", dict(pool_size=3, strides=2, padding="same"), (None, 7, 5, 2)),
    ("AveragePooling1D", dict(data_format="channels_first"), (None, 2, 9)),
    ("GlobalMaxPooling3D", dict(keepdims=True), (None, 2, 3, 4, 5)),
    ("GlobalAveragePooling2D", dict(data_format="channels_first"), (None, 2, 3, 4)),
    ("Embedding", dict(input_dim=5, output_dim=3), (None, 4)),
    ("TimeDistributed", dict(layer=sepconv.Dense(2)), (None, 3, 4)),
])
def test_compute_output_shape_is_the_output_shape(name, kwargs, shape):
    layer = getattr(sepconv, name)(**kwargs).eval()
    concrete = tuple(2 if s is None else s for s in shape)
    x = torch.zeros(concrete, dtype=torch.int64 if name == "Embedding" else torch.float32)
    assert layer.compute_output_shape(concrete) == tuple(layer(x).shape)
    out = layer.compute_output_shape(shape)
    assert out[0] is None and out[1:] == tuple(layer(x).shape)[1:]


def test_numpy_and_float64_inputs_are_cast_to_the_compute_dtype():
    x = np.random.default_rng(0).standard_normal((2, 4))
    for layer in (sepconv.Dense(3), sepconv.ReLU(), sepconv.LayerNormalization(),
                  sepconv.Softmax()):
        assert layer(x).dtype == torch.float32
    assert sepconv.Add()([x, x]).dtype == torch.float32
    assert sepconv.InputLayer(input_shape=(4,), dtype="int32")(x * 3).dtype == torch.int32
    assert sepconv.InputLayer(input_shape=(4,))(x).dtype == torch.float32


def test_time_distributed_delegates_weights():
    td = sepconv.TimeDistributed(sepconv.Dense(3))
    assert td.get_weights() == []
    td.set_weights([np.ones((4, 3), np.float32), np.zeros(3, np.float32)])
    y = td(torch.ones(2, 5, 4))
    torch.testing.assert_close(y, torch.full((2, 5, 3), 4.0))
    assert [n for n, _ in td.named_parameters()] == ["layer.kernel", "layer.bias"]
    td.trainable = False
    assert not td.layer.trainable and not any(p.requires_grad for p in td.parameters())
    assert not sepconv.TimeDistributed(sepconv.Dense(2), trainable=False).layer.trainable


def test_r_functions():
    model = torch.nn.Sequential()
    sepconv.layer_dense(model, units=3.0, input_shape=[4.0])
    sepconv.layer_batch_normalization(model, axis=-1.0)
    sepconv.layer_activation_leaky_relu(model, alpha=0.1)
    sepconv.layer_repeat_vector(model, n=2.0)
    sepconv.layer_max_pooling_1d(model, pool_size=2.0, padding="same")
    sepconv.layer_global_average_pooling_1d(model)
    assert [type(m).__name__ for m in model] == [
        "Dense", "BatchNormalization", "LeakyReLU", "RepeatVector", "MaxPooling1D",
        "GlobalAveragePooling1D"]
    assert model.eval()(torch.zeros(2, 4)).shape == (2, 3)
    assert model[2].alpha == pytest.approx(0.1)  # float32, as tf-keras stores it
    with pytest.raises(ValueError, match="units"):
        sepconv.layer_dense(units=2.5)
    assert isinstance(sepconv.layer_concatenate(axis=1.0), sepconv.Concatenate)
    out = sepconv.layer_concatenate([np.ones((2, 1)), np.zeros((2, 2))], axis=-1.0)
    assert out.shape == (2, 3)
    assert isinstance(sepconv.layer_activation_parametric_relu(), sepconv.PReLU)
    assert isinstance(sepconv.time_distributed(layer=sepconv.Dense(2)),
                      sepconv.TimeDistributed)


def test_gradcheck_of_the_functional_ops():
    rng = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 4, 3, dtype=torch.float64, generator=rng, requires_grad=True)
    for fn in (lambda t: F.average_pool(t, 3, 2, "same"),
               lambda t: F.max_pool(t, (2, 3), 1, "same"),
               lambda t: F.average_pool(t, 2, 1, "same", "channels_first")):
        assert torch.autograd.gradcheck(fn, (x,))
    gamma = torch.randn(3, dtype=torch.float64, requires_grad=True)
    beta = torch.randn(3, dtype=torch.float64, requires_grad=True)

    def bn_train(t, g, b):
        mean, var = F.moments(t, (0, 1, 2))
        return F.batch_normalization(t, mean, var, b, g, 1e-3)

    assert torch.autograd.gradcheck(bn_train, (x, gamma, beta))
    alpha = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(F.prelu, (x, alpha))


def test_average_pool_same_counts_real_elements_only():
    x = torch.arange(1.0, 6.0).reshape(1, 5, 1)  # [1, 2, 3, 4, 5]
    y = F.average_pool(x, 2, 2, "same")  # windows [1,2], [3,4], [5]
    torch.testing.assert_close(y.flatten(), torch.tensor([1.5, 3.5, 5.0]))
    y = F.max_pool(-x, 3, 2, "same")  # pads never win, even over negatives
    torch.testing.assert_close(y.flatten(), torch.tensor([-1.0, -2.0, -4.0]))


def test_models_deepcopy_and_pickle():
    """copy.deepcopy and torch.save of a whole model (the generated pooling classes and the
    seeded dropout generators included) give the same module."""
    import copy
    import io

    model = torch.nn.Sequential(
        sepconv.Dense(4, input_shape=(3,)), sepconv.Dropout(0.5, seed=1),
        sepconv.RepeatVector(5), sepconv.MaxPooling1D(2), sepconv.BatchNormalization(),
        sepconv.TimeDistributed(sepconv.Dense(2)))
    x = torch.randn(2, 3)
    model(x)
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    for twin in (copy.deepcopy(model), torch.load(buf, weights_only=False)):
        torch.testing.assert_close(twin.eval()(x), model.eval()(x), rtol=0, atol=0)
        assert [type(m).__name__ for m in twin] == [type(m).__name__ for m in model]


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_average_pooling_3d_in_half_precision(policy, padding):
    """torch 2.13 has no CPU avg_pool3d for float16 / bfloat16 (found by
    tests/test_fuzz_tfkeras.py): the layer computes in float32 and rounds."""
    x = torch.randn(2, 5, 4, 6, 3, requires_grad=True)
    half = sepconv.AveragePooling3D(2, padding=padding, dtype=policy)
    full = sepconv.AveragePooling3D(2, padding=padding)
    y = half(x)
    assert y.dtype == getattr(torch, policy.split("_")[1])
    # the policy casts the input to the half type first
    torch.testing.assert_close(y, full(x.to(y.dtype).float()).to(y.dtype))
    y.float().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
