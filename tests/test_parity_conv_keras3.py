"""Conv1D/2D/3D and the transposes against Keras 3.15 on its torch backend.

Both run on torch, so output and the gradients of the input, kernel and bias are taken
by torch autograd through the two implementations, given the same weights.  Keras 3 runs
what tf-keras cannot on this CPU (channels_first, every dilation of the transposes,
``dilation_rate`` of ``Conv3DTranspose``), so it is the direct reference there.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover - conftest sets it
    pytest.skip("Keras 3 must run on the torch backend", allow_module_level=True)

import sepconv  # noqa: E402

pytestmark = [pytest.mark.usefixtures("torch_single_thread"),
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

NAMES = ["Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
         "Conv3DTranspose"]
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def cases(draw):
    name = draw(st.sampled_from(NAMES))
    rank, transpose = int(name[4]), name.endswith("Transpose")
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    strides = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    dilation = (tuple(draw(st.integers(1, 2)) for _ in range(rank)) if max(strides) == 1
                else (1,) * rank)
    padding = draw(st.sampled_from(["valid", "same"]))
    kw = dict(kernel_size=kernel, strides=strides, dilation_rate=dilation, padding=padding,
              data_format=draw(st.sampled_from(["channels_last", "channels_first"])),
              use_bias=draw(st.booleans()),
              activation=draw(st.sampled_from([None, "tanh", "relu"])))
    groups = 1
    if transpose:
        if draw(st.booleans()):
            op = tuple(draw(st.integers(0, s - 1)) for s in strides)
            if not sepconv.padding.deconv_mismatch((4,) * rank, kernel, strides, dilation,
                                                   padding, op):
                kw["output_padding"] = op
    else:
        groups = draw(st.sampled_from([1, 2]))
        kw["groups"] = groups
    kw["filters"] = groups * draw(st.integers(1, 2))
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    spatial = [draw(st.integers(s if padding == "valid" and not transpose else 1,
                                (s if padding == "valid" else 1) + 3)) for s in spans]
    return name, kw, spatial, groups * draw(st.integers(1, 2)), draw(st.integers(0, 2**31))


def _grads(call, x, weights, r):
    x = x.clone().requires_grad_(True)
    y = call(x)
    grads = torch.autograd.grad((y * r).sum(), [x] + list(weights))
    return y.detach(), [g.detach().numpy() for g in grads]


@SETTINGS
@given(cases())
def test_forward_and_gradients_match_keras3(case):
    name, kw, spatial, channels, seed = case
    rng = np.random.default_rng(seed)
    layer = getattr(sepconv, name)(**kw)
    shape = ((2, *spatial, channels) if kw["data_format"] == "channels_last"
             else (2, channels, *spatial))
    layer.build(shape)
    layer.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.5
                       for w in layer.get_weights()])
    ref = getattr(keras.layers, name)(**kw)
    ref.build(shape)
    ref.set_weights(layer.get_weights())
    x = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    r = torch.from_numpy(rng.standard_normal(layer.compute_output_shape(shape))
                         .astype(np.float32))
    y, grads = _grads(layer, x, layer.weights, r)
    ref_y, ref_grads = _grads(ref, x, [v.value for v in ref.trainable_weights], r)
    assert tuple(y.shape) == tuple(ref_y.shape)
    np.testing.assert_allclose(y.numpy(), ref_y.numpy(), atol=1e-5, rtol=1e-5)
    for got, want in zip(grads, ref_grads):
        scale = max(1.0, float(np.abs(want).max(initial=0)))
        np.testing.assert_allclose(got, want, atol=1e-5 * scale, rtol=1e-5)
