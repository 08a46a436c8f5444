"""The Keras layer protocol of ``sepconv.SeparableConv1D`` on a ``torch.nn.Module``.

Numbers are checked against ``numpy_reference`` (float64 numpy, no sepconv code) or
against numpy formulas; Keras itself is the reference in the parity test files.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch

import sepconv
from numpy_reference import separable_conv1d as np_sepconv

pytestmark = pytest.mark.usefixtures("torch_single_thread")

S = sepconv.SeparableConv1D


def _random_weights(layer, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(w.shape) * scale).astype(np.float32)
            for w in layer.get_weights()]


def _expected(layer, x, weights=None):
    w = weights if weights is not None else layer.get_weights()
    return np_sepconv(x, w[0], w[1], w[2] if layer.use_bias else None,
                      strides=layer.strides[0], padding=layer.padding,
                      dilation_rate=layer.dilation_rate[0], data_format=layer.data_format)


# -- invalid arguments ------------------------------------------------------------------

BAD_ARGUMENTS = [
    # (keyword arguments, error, argument named, value shown)
    (dict(filters=0), ValueError, "filters", "0"),
    (dict(filters=-3), ValueError, "filters", "-3"),
    (dict(filters=2.5), ValueError, "filters", "2.5"),
    (dict(filters="a"), TypeError, "filters", "'a'"),
    (dict(filters=True), TypeError, "filters", "True"),
    (dict(filters=None), TypeError, "filters", "None"),
    (dict(kernel_size=(3, 3)), ValueError, "kernel_size", "(3, 3)"),
    (dict(kernel_size=0), ValueError, "kernel_size", "0"),
    (dict(kernel_size=1.5), ValueError, "kernel_size", "1.5"),
    (dict(kernel_size=[]), ValueError, "kernel_size", "[]"),
    (dict(strides=0), ValueError, "strides", "0"),
    (dict(strides=2, dilation_rate=2), ValueError, "dilation_rate", "(2,)"),
    (dict(dilation_rate=(0,)), ValueError, "dilation_rate", "0"),
    (dict(padding="full"), ValueError, "padding", "'full'"),
    (dict(padding=1), TypeError, "padding", "1"),
    (dict(data_format="nchw"), ValueError, "data_format", "'nchw'"),
    (dict(data_format=1), TypeError, "data_format", "1"),
    (dict(depth_multiplier=0), ValueError, "depth_multiplier", "0"),
    (dict(depth_multiplier=1.5), ValueError, "depth_multiplier", "1.5"),
    (dict(activation="nope"), ValueError, "activation", "'nope'"),
    (dict(activation=3), TypeError, "activation", "3"),
    (dict(use_bias="yes"), TypeError, "use_bias", "'yes'"),
    (dict(depthwise_initializer="nope"), ValueError, "depthwise_initializer", "'nope'"),
    (dict(pointwise_initializer={"class_name": "Nope"}), ValueError,
     "pointwise_initializer", "Nope"),
    (dict(bias_initializer=5), TypeError, "bias_initializer", "5"),
    (dict(depthwise_initializer=None), ValueError, "depthwise_initializer", "None"),
    (dict(depthwise_regularizer="l3"), ValueError, "depthwise_regularizer", "'l3'"),
    (dict(pointwise_regularizer={"class_name": "L1L2", "config": {"l5": 1}}), ValueError,
     "pointwise_regularizer", "l5"),
    (dict(bias_regularizer=dict(class_name="L2", config=dict(l2=-1.0))), ValueError,
     "l2", "-1"),
    (dict(activity_regularizer="nope"), ValueError, "activity_regularizer", "'nope'"),
    (dict(depthwise_constraint="max"), ValueError, "depthwise_constraint", "'max'"),
    (dict(pointwise_constraint="nope"), ValueError, "pointwise_constraint", "'nope'"),
    (dict(bias_constraint=1.0), TypeError, "bias_constraint", "1.0"),
    (dict(dtype="int32"), ValueError, "dtype", "'int32'"),
    (dict(dtype=torch.int64), ValueError, "dtype", "torch.int64"),
    (dict(dtype="mixed_float64"), ValueError, "dtype", "'mixed_float64'"),
    (dict(dtype=3), TypeError, "dtype", "3"),
    (dict(trainable="yes"), TypeError, "trainable", "'yes'"),
    (dict(name=3), TypeError, "name", "3"),
    (dict(input_shape=16), TypeError, "input_shape", "16"),
    (dict(input_shape=(16,)), ValueError, "input_shape", "(16,)"),
    (dict(input_shape=(None, 2.5)), ValueError, "input_shape", "2.5"),
    (dict(input_shape=(None, 0)), ValueError, "input_shape", "0"),
    (dict(batch_input_shape=(None, 3)), ValueError, "batch_input_shape", "(None, 3)"),
    (dict(batch_input_shape=(None, 5, 0)), ValueError, "batch_input_shape", "(None, 5, 0)"),
    (dict(input_shape=(2, 3)), ValueError, "input_shape", "(2, 3)"),
    (dict(batch_input_shape=(4, 2, 3)), ValueError, "batch_input_shape", "(4, 2, 3)"),
    (dict(batch_size=0), ValueError, "batch_size", "0"),
    (dict(batch_size=1.5), ValueError, "batch_size", "1.5"),
    (dict(weights="abc"), TypeError, "weights", "str"),
    (dict(weights=[np.zeros((3, 2, 1))], input_shape=(None, 2)), ValueError,
     "weights", "1"),
]


@pytest.mark.parametrize("kwargs,error,argument,value", BAD_ARGUMENTS,
                         ids=[f"{a}={v}" for _, _, a, v in BAD_ARGUMENTS])
def test_invalid_argument_raises_at_construction(kwargs, error, argument, value):
    args = dict(filters=4, kernel_size=3)
    args.update(kwargs)
    with pytest.raises(error) as info:
        S(**args)
    message = str(info.value)
    assert argument in message, message
    assert value in message, message


def test_padding_and_data_format_are_case_insensitive():
    x = np.random.default_rng(0).standard_normal((2, 3, 7)).astype(np.float32)
    layer = S(2, 3, padding="CaUsAl", data_format="Channels_First")
    assert (layer.padding, layer.data_format) == ("causal", "channels_first")
    y = layer(x).detach().numpy()
    np.testing.assert_allclose(y, _expected(layer, x), atol=1e-5)


def test_int_or_tuple_arguments():
    a = S(2, [3], strides=(2,), dilation_rate=[1])
    assert (a.kernel_size, a.strides, a.dilation_rate) == ((3,), (2,), (1,))
    b = S(np.int64(2), np.int32(3), depth_multiplier=np.int16(2))
    assert (b.filters, b.kernel_size, b.depth_multiplier) == (2, (3,), 2)
    assert type(b.filters) is int


# -- wrong inputs ---------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_wrong_rank_channels_or_length_raise_value_error_naming_shapes(fmt):
    shape = (None, 3) if fmt == "channels_last" else (3, None)
    layer = S(4, 5, data_format=fmt, input_shape=shape)
    good = (2, 9, 3) if fmt == "channels_last" else (2, 3, 9)
    layer(torch.zeros(good))
    with pytest.raises(ValueError, match=re.escape("(9, 3)" if fmt == "channels_last"
                                                   else "(3, 9)")):
        layer(torch.zeros(good[1:]))
    with pytest.raises(ValueError, match=re.escape(str((1,) + good))):
        layer(torch.zeros((1,) + good))
    wrong = (2, 9, 4) if fmt == "channels_last" else (2, 4, 9)
    with pytest.raises(ValueError) as info:
        layer(torch.zeros(wrong))
    assert str(wrong) in str(info.value) and "3" in str(info.value)
    short = (2, 4, 3) if fmt == "channels_last" else (2, 3, 4)
    with pytest.raises(ValueError, match=re.escape(str(short))):
        layer(torch.zeros(short))


def test_lazy_layer_rejects_other_channels_after_first_call():
    layer = S(2, 3)
    layer(torch.zeros(1, 5, 3))
    with pytest.raises(ValueError, match=re.escape("(1, 5, 2)")):
        layer(torch.zeros(1, 5, 2))


def test_too_short_input_shape_at_construction():
    with pytest.raises(ValueError, match="too short"):
        S(2, 7, input_shape=(5, 3))
    S(2, 7, padding="same", input_shape=(1, 3))  # same/causal accept length 1


def test_complex_input_is_a_type_error():
    with pytest.raises(TypeError):
        S(2, 3)(torch.zeros(1, 5, 3, dtype=torch.complex64))


# -- building -------------------------------------------------------------------------

def test_input_shape_builds_at_construction():
    layer = S(4, 3, depth_multiplier=2, input_shape=(None, 5))
    assert layer.built and layer.input_channels == 5
    assert [w.shape for w in layer.get_weights()] == [(3, 5, 2), (1, 10, 4), (4,)]
    assert layer.batch_input_shape == (None, None, 5)
    assert [n for n, _ in layer.named_parameters()] == ["depthwise_kernel",
                                                        "pointwise_kernel", "bias"]
    cf = S(4, 3, data_format="channels_first", input_shape=(5, None))
    assert cf.input_channels == 5
    b = S(4, 3, batch_input_shape=(8, 20, 6))
    assert b.built and b.input_channels == 6 and b.batch_input_shape == (8, 20, 6)
    c = S(4, 3, input_shape=(20, 6), batch_size=8)
    assert c.batch_input_shape == (8, 20, 6)
    assert c.get_config()["batch_input_shape"] == (8, 20, 6)
    lazy = S(4, 3)
    assert not lazy.built and list(lazy.parameters()) == []
    lazy(torch.zeros(2, 7, 5))
    assert lazy.built and lazy.input_channels == 5


def test_use_bias_false_has_no_bias():
    layer = S(4, 3, use_bias=False, input_shape=(None, 2))
    assert [n for n, _ in layer.named_parameters()] == ["depthwise_kernel",
                                                        "pointwise_kernel"]
    assert len(layer.get_weights()) == 2
    x = np.random.default_rng(1).standard_normal((2, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(layer(x).detach().numpy(), _expected(layer, x), atol=1e-5)


def test_weights_argument_at_construction_and_after_lazy_build():
    template = S(3, 2, depth_multiplier=2, input_shape=(None, 4))
    weights = _random_weights(template, seed=5)
    now = S(3, 2, depth_multiplier=2, input_shape=(None, 4), weights=weights)
    for got, want in zip(now.get_weights(), weights):
        np.testing.assert_array_equal(got, want)
    lazy = S(3, 2, depth_multiplier=2, weights=weights)
    assert not lazy.built
    x = np.random.default_rng(2).standard_normal((2, 6, 4)).astype(np.float32)
    y = lazy(x).detach().numpy()
    np.testing.assert_allclose(y, _expected(lazy, x, weights), atol=1e-5)
    for got, want in zip(lazy.get_weights(), weights):
        np.testing.assert_array_equal(got, want)


def test_unique_automatic_names():
    names = [S(1, 1).name for _ in range(3)]
    assert len(set(names)) == 3
    assert all(re.fullmatch(r"separable_conv1d(_\d+)?", n) for n in names)
    taken = S(1, 1, name="my_layer")
    assert taken.name == "my_layer"


# -- trainable, dtypes ----------------------------------------------------------------

def test_trainable_false_gets_no_gradients():
    layer = S(2, 3, trainable=False, input_shape=(None, 2))
    x = torch.randn(2, 6, 2, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in layer.parameters())
    assert layer.get_config()["trainable"] is False
    layer.trainable = True
    layer(x).sum().backward()
    assert all(p.grad is not None for p in layer.parameters())
    lazy = S(2, 3, trainable=False)
    lazy(torch.randn(1, 5, 2))
    assert not any(p.requires_grad for p in lazy.parameters())


@pytest.mark.parametrize("dtype,variable,compute,tol", [
    ("float64", torch.float64, torch.float64, 1e-12),
    (torch.float64, torch.float64, torch.float64, 1e-12),
    ("float32", torch.float32, torch.float32, 1e-5),
    ("float16", torch.float16, torch.float16, 2e-2),
    ("bfloat16", torch.bfloat16, torch.bfloat16, 1e-1),
    ("mixed_float16", torch.float32, torch.float16, 2e-2),
    ("mixed_bfloat16", torch.float32, torch.bfloat16, 1e-1),
])
def test_dtypes(dtype, variable, compute, tol):
    layer = S(3, 3, padding="same", depth_multiplier=2, dtype=dtype, input_shape=(None, 2))
    assert layer.depthwise_kernel.dtype == variable and layer.compute_dtype == compute
    weights = _random_weights(layer, seed=3)
    layer.set_weights(weights)
    x = np.random.default_rng(4).standard_normal((2, 8, 2))  # float64, as from R
    y = layer(x)
    assert y.dtype == compute
    np.testing.assert_allclose(y.detach().double().numpy(), _expected(layer, x, weights),
                               atol=tol, rtol=tol)
    y.float().sum().backward()
    assert layer.depthwise_kernel.grad.dtype == variable
    assert all(w.dtype == (np.float64 if variable == torch.float64 else
                           np.float16 if variable == torch.float16 else np.float32)
               for w in layer.get_weights())


def test_float64_array_into_default_layer_gives_float32():
    layer = S(2, 3)
    y = layer(np.random.default_rng(0).standard_normal((1, 5, 2)))
    assert y.dtype == torch.float32
    assert layer(torch.ones(1, 5, 2, dtype=torch.int64)).dtype == torch.float32


# -- weights ----------------------------------------------------------------------------

def test_get_set_weights_shapes_and_errors():
    layer = S(5, 4, depth_multiplier=3, input_shape=(None, 2))
    shapes = [w.shape for w in layer.get_weights()]
    assert shapes == [(4, 2, 3), (1, 6, 5), (5,)]
    weights = _random_weights(layer, seed=9)
    layer.set_weights([torch.from_numpy(w) for w in weights])  # tensors work too
    for got, want in zip(layer.get_weights(), weights):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="3 weights"):
        layer.set_weights(weights[:2])
    with pytest.raises(ValueError, match=re.escape("(4, 2, 3)")):
        layer.set_weights([np.zeros((4, 3, 2))] + weights[1:])
    with pytest.raises(ValueError, match=re.escape("(1, 6, 5)")):
        layer.set_weights([weights[0], np.zeros((6, 5)), weights[2]])
    unbuilt = S(5, 4, depth_multiplier=3)
    unbuilt.set_weights(weights)
    assert unbuilt.built and unbuilt.input_channels == 2


def test_state_dict_round_trip_exact():
    a = S(4, 3, depth_multiplier=2, input_shape=(None, 3))
    a.set_weights(_random_weights(a, seed=11))
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf)
    assert list(state) == ["depthwise_kernel", "pointwise_kernel", "bias"]
    assert tuple(state["depthwise_kernel"].shape) == (3, 3, 2)
    built = S(4, 3, depth_multiplier=2, input_shape=(None, 3))
    unbuilt = S(4, 3, depth_multiplier=2)
    for b in (built, unbuilt):
        b.load_state_dict(state)
        assert b.built
        for p, q in zip(a.parameters(), b.parameters()):
            assert torch.equal(p, q)
    x = torch.randn(2, 7, 3)
    assert torch.equal(a(x), unbuilt(x))
    # inside a model, with prefixes
    model = torch.nn.Sequential(S(4, 3, input_shape=(None, 3)), S(2, 1))
    model(x)
    fresh = torch.nn.Sequential(S(4, 3), S(2, 1))
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh(x), model(x))


# -- shapes, configs, repr --------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_compute_output_shape_agrees_with_forward(fmt):
    for pad in ("valid", "same", "causal"):
        for k, s, d, steps in [(3, 1, 1, 10), (4, 3, 1, 11), (2, 1, 3, 9), (1, 2, 1, 1)]:
            layer = S(6, k, strides=s, dilation_rate=d, padding=pad, data_format=fmt)
            if pad == "valid" and steps < (k - 1) * d + 1:
                continue
            shape = (2, steps, 3) if fmt == "channels_last" else (2, 3, steps)
            out = tuple(layer(torch.zeros(shape)).shape)
            assert layer.compute_output_shape(shape) == out
            none_steps = (None, None, 3) if fmt == "channels_last" else (None, 3, None)
            expected = (None, None, 6) if fmt == "channels_last" else (None, 6, None)
            assert layer.compute_output_shape(none_steps) == expected


def test_get_config_from_config_round_trip():
    layer = S(4, 3, strides=2, padding="same", data_format="channels_last",
              depth_multiplier=2, activation="elu", use_bias=True,
              depthwise_initializer={"class_name": "RandomUniform",
                                     "config": {"minval": -1, "maxval": 1, "seed": 2}},
              pointwise_initializer="lecun_normal", bias_initializer="ones",
              depthwise_regularizer="l2", activity_regularizer="l1_l2",
              pointwise_constraint="unit_norm", bias_constraint="non_neg",
              input_shape=(None, 3), dtype="float64", name="round_trip_layer")
    config = layer.get_config()
    assert config["depthwise_regularizer"] == {"class_name": "L2", "config": {"l2": 0.01}}
    assert config["activity_regularizer"] == {"class_name": "L1L2",
                                              "config": {"l1": 0.01, "l2": 0.01}}
    again = S.from_config(config)
    assert again.get_config() == config
    again.set_weights(layer.get_weights())
    x = torch.randn(2, 9, 3, dtype=torch.float64)
    assert torch.equal(layer(x), again(x))
    np.testing.assert_allclose(layer(x).detach().numpy(),
                               np.where(_expected(layer, x.numpy()) > 0,
                                        _expected(layer, x.numpy()),
                                        np.expm1(_expected(layer, x.numpy()))), atol=1e-12)


def test_extra_repr():
    layer = S(8, 5, padding="causal", depth_multiplier=2, activation="relu", strides=1,
              dilation_rate=2, data_format="channels_first", use_bias=False,
              input_shape=(3, None), name="repr_me")
    text = repr(layer)
    for part in ["SeparableConv1D(3, 8", "kernel_size=(5,)", "padding='causal'",
                 "dilation_rate=(2,)", "depth_multiplier=2", "data_format='channels_first'",
                 "activation='relu'", "use_bias=False", "name='repr_me'"]:
        assert part in text, text
    assert "SeparableConv1D(?, 8" in repr(S(8, 5))


# -- torch integration ------------------------------------------------------------------

@pytest.mark.parametrize("kernel", ["", "reference"], ids=["default", "reference"])
def test_torch_compile_equals_eager(kernel, monkeypatch):
    """Dynamo + AOT autograd (the aot_eager backend: Inductor's C++ build takes ~30 s
    here); whole-graph capture for the reference kernel."""
    monkeypatch.setenv("SEPCONV_KERNEL", kernel)
    layer = S(4, 3, padding="causal", depth_multiplier=2, activation="gelu",
              input_shape=(None, 3))
    x = torch.randn(2, 11, 3, requires_grad=True)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=kernel == "reference")
    y = compiled(x)
    torch.testing.assert_close(y, layer(x))
    grads = torch.autograd.grad(y.square().sum(), [x] + layer.weights)
    eager = torch.autograd.grad(layer(x).square().sum(), [x] + layer.weights)
    for g, e in zip(grads, eager):
        torch.testing.assert_close(g, e)


def _np_max_norm(w, max_value=2.0, axis=0):
    norms = np.sqrt(np.sum(np.square(w), axis=axis, keepdims=True))
    return w * (np.clip(norms, 0, max_value) / (1e-7 + norms))


def test_constraints_hold_after_every_sgd_step_in_sequential():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        S(4, 3, padding="same", input_shape=(None, 2), depthwise_constraint="max_norm",
          pointwise_constraint="non_neg",
          depthwise_initializer=dict(class_name="RandomNormal", config=dict(stddev=3.0))),
        torch.nn.ReLU(), S(1, 1))
    layer = model[0]
    x, target = torch.randn(8, 10, 2), torch.randn(8, 10, 1)
    model(x)
    lr = 0.5
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(5):
        before = [p.detach().clone().numpy() for p in layer.weights]
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), target).backward()
        grads = [p.grad.detach().numpy() for p in layer.weights]
        opt.step()
        stepped = [b - lr * g for b, g in zip(before, grads)]
        got = layer.get_weights()
        np.testing.assert_allclose(got[0], _np_max_norm(stepped[0]), atol=1e-6)
        np.testing.assert_allclose(got[1], np.maximum(stepped[1], 0), atol=1e-7)
        np.testing.assert_allclose(got[2], stepped[2], atol=1e-7)  # bias unconstrained


def test_constraints_hold_after_adam_steps_and_would_not_without():
    def make(constrained):
        torch.manual_seed(1)
        return S(3, 3, input_shape=(None, 2), depth_multiplier=2,
                 depthwise_constraint=dict(class_name="MaxNorm",
                                           config=dict(max_value=0.3)) if constrained else None,
                 pointwise_constraint="non_neg" if constrained else None,
                 depthwise_initializer="ones")

    x, target = torch.randn(4, 9, 2), torch.randn(4, 7, 3) * 5
    violated = False
    for constrained in (True, False):
        layer = make(constrained)
        opt = torch.optim.Adam(layer.parameters(), lr=0.1)
        for _ in range(4):
            opt.zero_grad()
            torch.nn.functional.mse_loss(layer(x), target).backward()
            opt.step()
            dw, pw, _ = layer.get_weights()
            ok = (np.sqrt((dw ** 2).sum(axis=0)) <= 0.3 + 1e-6).all() and (pw >= 0).all()
            if constrained:
                assert ok
            else:
                violated |= not ok
    assert violated  # the check above can fail


def test_apply_constraints_by_hand():
    layer = S(3, 2, input_shape=(None, 4), depthwise_constraint="unit_norm",
              bias_constraint=dict(class_name="MinMaxNorm",
                                   config=dict(min_value=1.0, max_value=2.0)),
              bias_initializer=dict(class_name="Constant", config=dict(value=3.0)))
    dw = layer.get_weights()[0]
    sepconv.apply_constraints(torch.nn.Sequential(layer))
    got = layer.get_weights()
    np.testing.assert_allclose(got[0], dw / (1e-7 + np.sqrt((dw ** 2).sum(0, keepdims=True))),
                               atol=1e-6)
    # bias (3,) of 3.0: norm along axis 0 is 3*sqrt(3), clipped to 2
    np.testing.assert_allclose(np.linalg.norm(got[2]), 2.0, rtol=1e-5)


def test_regularization_loss_equals_manual_sum():
    model = torch.nn.Sequential(
        S(4, 3, input_shape=(None, 2), depthwise_regularizer="l2",
          pointwise_regularizer=dict(class_name="L1L2", config=dict(l1=0.1, l2=0.2)),
          bias_regularizer="l1", bias_initializer="ones"),
        torch.nn.Tanh(),
        S(2, 1, activity_regularizer="l1_l2"))
    assert sepconv.regularization_loss(torch.nn.Linear(2, 2)).item() == 0.0
    x = np.random.default_rng(0).standard_normal((5, 8, 2)).astype(np.float32)
    y = model(torch.from_numpy(x)).detach().numpy().astype(np.float64)
    dw, pw, b = [w.astype(np.float64) for w in model[0].get_weights()]
    manual = (0.01 * (dw ** 2).sum() + 0.1 * np.abs(pw).sum() + 0.2 * (pw ** 2).sum()
              + 0.01 * np.abs(b).sum()
              + (0.01 * np.abs(y).sum() + 0.01 * (y ** 2).sum()) / 5)
    total = sepconv.regularization_loss(model)
    np.testing.assert_allclose(total.item(), manual, rtol=1e-5)
    total.backward()  # differentiable
    assert model[0].depthwise_kernel.grad is not None
    assert len(model[0].losses) == 3 and len(model[2].losses) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():  # pragma: no cover - needs a GPU
    layer = S(4, 3, padding="causal", depth_multiplier=2, input_shape=(None, 3))
    x = torch.randn(2, 16, 3)
    cpu = layer(x)
    layer.cuda()
    gpu = layer(x.cuda())
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
    lazy = S(4, 3)
    assert lazy(x.cuda()).is_cuda and lazy.depthwise_kernel.is_cuda


@pytest.mark.parametrize("how", ["deepcopy", "torch.save"])
def test_copied_models_keep_their_constraints(how):
    import copy

    model = torch.nn.Sequential(S(3, 3, input_shape=(None, 2), depthwise_constraint="max_norm",
                                  pointwise_constraint="non_neg"))
    if how == "deepcopy":
        model = copy.deepcopy(model)
    else:
        buf = io.BytesIO()
        torch.save(model, buf)
        buf.seek(0)
        model = torch.load(buf, weights_only=False)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    x = torch.randn(4, 9, 2)
    for _ in range(3):
        opt.zero_grad()
        (-model(x).square().sum()).backward()  # pushes the weights to grow without bound
        opt.step()
        dw, pw, _ = model[0].get_weights()
        assert np.sqrt((dw ** 2).sum(axis=0)).max() <= 2 + 1e-5
        assert pw.min() >= 0


def test_module_dtype_casts_set_the_compute_dtype():
    """model.double() / .to(torch.bfloat16) make the layer compute in that dtype, like any
    torch module; moving devices keeps a mixed policy."""
    layer = S(3, 3, padding="same", input_shape=(None, 2), dtype="mixed_float16")
    layer.cpu()
    assert layer.dtype == "mixed_float16"
    model = torch.nn.Sequential(layer).double()
    x = np.random.default_rng(0).standard_normal((2, 7, 2))
    y = model(x)
    assert y.dtype == torch.float64 and layer.get_config()["dtype"] == "float64"
    np.testing.assert_allclose(y.detach().numpy(), _expected(layer, x), atol=1e-12)
    model.to(torch.bfloat16)
    assert model(x).dtype == torch.bfloat16


def test_deferred_initialization_draws_what_nothing_wrote():
    """The loader's deferred initialization: weights written inside the context keep their
    values; weights nothing wrote get their initializer's values on leaving it (never NaN);
    integer weights and nested contexts behave."""
    from sepconv.layers import base

    with base.deferred_initialization():
        written = sepconv.Dense(3, input_shape=(4,), bias_initializer="ones")
        left = sepconv.Dense(3, input_shape=(4,), kernel_initializer="ones",
                             bias_initializer=sepconv.initializers.Constant(0.5))
        assert torch.isnan(left.kernel).all()
        with base.deferred_initialization():  # nested: drawn by the outer one
            inner = sepconv.Dense(2, input_shape=(3,), kernel_initializer="ones")
        assert torch.isnan(inner.kernel).all()
        values = [np.full((4, 3), 2.0, np.float32), np.full((3,), -1.0, np.float32)]
        written.set_weights(values)
    for got, want in zip(written.get_weights(), values):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(left.get_weights()[0], np.ones((4, 3), np.float32))
    np.testing.assert_array_equal(left.get_weights()[1], np.full((3,), 0.5, np.float32))
    np.testing.assert_array_equal(inner.get_weights()[0], np.ones((3, 2), np.float32))
    fresh = sepconv.Dense(3, input_shape=(4,))  # outside: drawn at once
    assert not torch.isnan(fresh.kernel).any()
