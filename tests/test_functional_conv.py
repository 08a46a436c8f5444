"""``sepconv.functional.conv`` (Keras' Conv1D/2D/3D math) against the float64 numpy loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sepconv import functional
from numpy_reference import conv as np_conv

pytestmark = pytest.mark.usefixtures("torch_single_thread")

CASES = [  # spatial, kernel, strides, dilation, padding, groups
    ((9,), (3,), (1,), (1,), "causal", 1),
    ((10,), (4,), (3,), (1,), "same", 2),
    ((7,), (2,), (1,), (3,), "valid", 1),
    ((7, 6), (3, 2), (2, 1), (1, 1), "same", 1),
    ((8, 5), (2, 3), (1, 1), (2, 1), "same", 3),
    ((6, 7), (3, 3), (3, 2), (1, 1), "valid", 1),
    ((4, 5, 6), (2, 3, 2), (1, 2, 2), (1, 1, 1), "same", 1),
    ((5, 4, 4), (3, 2, 2), (1, 1, 1), (1, 2, 1), "valid", 3),
]


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("spatial,ks,s,d,pad,groups", CASES)
def test_matches_numpy(spatial, ks, s, d, pad, groups, data_format):
    rng = np.random.default_rng(len(spatial) * 100 + sum(ks))
    c, f = 3 * groups, 2 * groups
    shape = (2, *spatial, c) if data_format == "channels_last" else (2, c, *spatial)
    x, k, b = (rng.standard_normal(shape), rng.standard_normal((*ks, c // groups, f)),
               rng.standard_normal(f))
    want = np_conv(x, k, b, s, pad, d, groups, data_format)
    for dtype, tol in [(torch.float64, 1e-12), (torch.float32, 1e-5)]:
        got = functional.conv(*[torch.from_numpy(a).to(dtype) for a in (x, k, b)], strides=s,
                              padding=pad, dilation_rate=d, groups=groups,
                              data_format=data_format)
        np.testing.assert_allclose(got.double().numpy(), want, atol=tol, rtol=tol)


def test_one_channel_and_length_one_output_axis():
    """oneDNN's trap (torch 2.13): 1 channel, strides that read as channels_last, a strided
    output axis of length 1."""
    x = torch.randn(2, 9, 5, 1, dtype=torch.float64)
    k = torch.randn(4, 4, 1, 1, dtype=torch.float64)
    want = np_conv(x.numpy(), k.numpy(), None, (1, 2))
    got = functional.conv(x.float(), k.float(), strides=(1, 2))
    np.testing.assert_allclose(got.double().numpy(), want, atol=1e-5)
    got = functional.conv(x.permute(0, 3, 1, 2).float(), k.float(), strides=(1, 2),
                          data_format="channels_first")
    np.testing.assert_allclose(got.double().numpy(), np.moveaxis(want, -1, 1), atol=1e-5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(strides=(2, 1), dilation_rate=(1, 2)), "dilation_rate"),
    (dict(groups=2), "groups"),
    (dict(padding="causal"), "padding"),
    (dict(padding="full"), "padding"),
    (dict(strides=(1, 0)), "strides"),
])
def test_bad_arguments(kwargs, match):
    x, k = torch.zeros(1, 6, 6, 3), torch.zeros(2, 2, 3, 4)
    with pytest.raises(ValueError, match=match):
        functional.conv(x, k, **kwargs)


def test_too_small_input():
    with pytest.raises(ValueError, match="too small"):
        functional.conv(torch.zeros(1, 2, 3), torch.zeros(3, 3, 1))
