"""R keras' ``layer_separable_conv_1d(object, ...)``: composition rules and R's doubles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sepconv
from numpy_reference import separable_conv1d as np_sepconv

pytestmark = pytest.mark.usefixtures("torch_single_thread")

f = sepconv.layer_separable_conv_1d


def _weights(k, c, m, filters, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((k, c, m)), rng.standard_normal((1, c * m, filters)),
            rng.standard_normal((filters,))]  # float64, as R hands arrays over


def test_none_returns_the_layer():
    layer = f(None, filters=4, kernel_size=3, padding="same", name="r_layer_none")
    assert isinstance(layer, sepconv.SeparableConv1D)
    assert (layer.filters, layer.kernel_size, layer.padding, layer.name) == \
        (4, (3,), "same", "r_layer_none")
    assert isinstance(f(filters=2, kernel_size=1), sepconv.SeparableConv1D)


def test_sequential_gets_the_layer_appended_and_is_returned():
    model = torch.nn.Sequential()
    out = f(model, filters=8, kernel_size=3, input_shape=(None, 4), activation="relu")
    assert out is model and len(model) == 1
    assert model[0].built and model[0].input_channels == 4
    out = f(model, filters=2, kernel_size=5, padding="causal")
    assert out is model and len(model) == 2
    assert tuple(model(torch.zeros(3, 12, 4)).shape) == (3, 10, 2)  # valid k=3, causal


@pytest.mark.parametrize("as_numpy", [True, False])
def test_tensor_or_array_returns_the_output(as_numpy):
    w = _weights(3, 2, 2, 5, seed=1)
    x = np.random.default_rng(2).standard_normal((2, 9, 2))
    obj = x if as_numpy else torch.from_numpy(x)
    y = f(obj, filters=5, kernel_size=3, depth_multiplier=2, padding="same", strides=2,
          weights=w)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    expected = np_sepconv(x.astype(np.float32), *[a.astype(np.float32) for a in w],
                          strides=2, padding="same")
    np.testing.assert_allclose(y.detach().numpy(), expected, atol=1e-5)
    # the same as the layer built the usual way
    layer = sepconv.SeparableConv1D(5, 3, depth_multiplier=2, padding="same", strides=2,
                                    weights=w)
    torch.testing.assert_close(y, layer(obj))


def test_whole_number_doubles_are_coerced():
    layer = f(None, filters=32.0, kernel_size=5.0, strides=1.0, dilation_rate=2.0,
              depth_multiplier=2.0, input_shape=(None, 16.0), batch_size=4.0)
    assert (layer.filters, layer.kernel_size, layer.strides, layer.dilation_rate,
            layer.depth_multiplier) == (32, (5,), (1,), (2,), 2)
    assert type(layer.filters) is int and type(layer.kernel_size[0]) is int
    assert layer.batch_input_shape == (4, None, 16) and layer.input_channels == 16
    arrays = f(None, filters=np.float64(3.0), kernel_size=np.array([2.0]),
               batch_input_shape=np.array([2.0, 10.0, 3.0]))
    assert (arrays.filters, arrays.kernel_size, arrays.batch_input_shape) == \
        (3, (2,), (2, 10, 3))
    assert tuple(layer(np.zeros((4, 20, 16))).shape) == (4, 12, 32)  # 20 - (5-1)*2


@pytest.mark.parametrize("kwargs,argument,value", [
    (dict(filters=2.5), "filters", "2.5"), (dict(kernel_size=2.5), "kernel_size", "2.5"),
    (dict(strides=1.5), "strides", "1.5"), (dict(dilation_rate=0.5), "dilation_rate", "0.5"),
    (dict(depth_multiplier=1.2), "depth_multiplier", "1.2"),
    (dict(input_shape=(None, 2.5)), "input_shape", "2.5"),
    (dict(batch_size=2.5), "batch_size", "2.5"),
])
def test_fractional_doubles_are_rejected(kwargs, argument, value):
    args = dict(filters=4.0, kernel_size=3.0)
    args.update(kwargs)
    with pytest.raises(ValueError) as info:
        f(None, **args)
    assert argument in str(info.value) and value in str(info.value)


def test_missing_or_wrong_arguments():
    with pytest.raises(ValueError, match="filters"):
        f(None, kernel_size=3)
    with pytest.raises(ValueError, match="kernel_size"):
        f(None, filters=3)
    with pytest.raises(TypeError, match="object"):
        f("model", filters=3, kernel_size=3)
    with pytest.raises(ValueError, match="padding"):
        f(None, filters=3, kernel_size=3, padding="full")


def test_float64_array_into_default_layer_gives_float32():
    y = f(np.random.default_rng(0).standard_normal((1, 6, 3)), filters=2, kernel_size=2)
    assert y.dtype == torch.float32 and tuple(y.shape) == (1, 5, 2)
