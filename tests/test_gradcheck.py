"""``torch.autograd.gradcheck`` (finite differences, float64) through the layer.

Every padding and both data formats, with strides, dilations, multipliers, bias on and
off, length-1 inputs and a smooth activation; the input and all three weights are checked.
"""

from __future__ import annotations

import itertools

import pytest
import torch

import sepconv

pytestmark = pytest.mark.usefixtures("torch_single_thread")

CASES = [
    # kernel_size, strides, dilation_rate, depth_multiplier, use_bias, steps
    (3, 1, 1, 1, True, 7),
    (4, 2, 1, 2, True, 8),
    (3, 1, 2, 3, False, 9),
    (2, 3, 1, 1, True, 5),
    (1, 1, 1, 2, True, 1),
]


@pytest.mark.parametrize("pad,fmt", list(itertools.product(
    ["valid", "same", "causal"], ["channels_last", "channels_first"])))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "k{}s{}d{}m{}b{}L{}".format(*c))
def test_gradcheck_through_the_layer(pad, fmt, case):
    k, s, d, m, bias, steps = case
    if pad == "valid" and steps < (k - 1) * d + 1:
        pytest.skip("too short for valid")  # pragma: no cover
    torch.manual_seed(0)
    channels, filters = 2, 3
    layer = sepconv.SeparableConv1D(filters, k, strides=s, dilation_rate=d, padding=pad,
                                    data_format=fmt, depth_multiplier=m, use_bias=bias,
                                    activation="tanh", bias_initializer="random_normal",
                                    dtype="float64")
    shape = (2, steps, channels) if fmt == "channels_last" else (2, channels, steps)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    layer(x)  # build
    params = [p for p in layer.weights]
    assert all(p.dtype == torch.float64 for p in params)

    def fn(x, *weights):
        state = dict(zip(layer._weight_order, weights))
        return torch.func.functional_call(layer, state, (x,))

    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-7, rtol=1e-5)
