"""Depthwise and separable convolutions with ``strides > 1`` AND ``dilation_rate > 1``.

TensorFlow refuses them (tf-keras at construction); Keras 3.15 has no such check in its
depthwise / separable layers (its ``Conv*D`` keep it) and its torch backend computes them
(``F.conv*d`` with both, TensorFlow's "same" padding arithmetic).  Layers built from a
Keras 3 config compute what Keras 3 computes: outputs and the gradients of input and
weights against Keras 3 (torch backend) in float64, and a ``.keras`` file Keras 3 wrote.
The default constructor and tf-keras configs keep tf-keras' refusal and message.
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
from sepconv.interop.models import KerasFileError, build_layer  # noqa: E402

pytestmark = [pytest.mark.usefixtures("torch_single_thread"),
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

NAMES = ["DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D"]


@st.composite
def cases(draw):
    name = draw(st.sampled_from(NAMES))
    rank = int(name[-2])
    kw = dict(kernel_size=tuple(draw(st.integers(1, 4)) for _ in range(rank)),
              strides=tuple(draw(st.integers(1, 3)) for _ in range(rank)),
              dilation_rate=tuple(draw(st.integers(1, 3)) for _ in range(rank)),
              padding=draw(st.sampled_from(["valid", "same"])),
              data_format=draw(st.sampled_from(["channels_last", "channels_first"])),
              depth_multiplier=draw(st.integers(1, 2)),
              use_bias=draw(st.booleans()))
    # at least one axis strided and one dilated (else tf-keras' rule does not apply)
    axis = draw(st.integers(0, rank - 1))
    kw["strides"] = tuple(max(s, 2) if i == axis else s for i, s in enumerate(kw["strides"]))
    other = draw(st.integers(0, rank - 1))
    kw["dilation_rate"] = tuple(max(d, 2) if i == other else d
                                for i, d in enumerate(kw["dilation_rate"]))
    if name.startswith("Separable"):
        kw["filters"] = draw(st.integers(1, 3))
    spatial = tuple(draw(st.integers(7, 12)) for _ in range(rank))
    return name, kw, spatial


def _pair(name, kw, spatial, seed=0):
    """Keras 3's layer at random float64 weights, sepconv's from its serialized config."""
    rng = np.random.default_rng(seed)
    shape = (2,) + spatial + (3,)
    x = rng.normal(size=shape)
    if kw["data_format"] == "channels_first":
        x = np.ascontiguousarray(np.moveaxis(x, -1, 1))
    theirs = getattr(keras.layers, name)(**kw, dtype="float64")
    theirs(x)
    theirs.set_weights([rng.normal(size=w.shape) for w in theirs.get_weights()])
    ours = build_layer(keras.saving.serialize_keras_object(theirs), "keras3")
    ours(torch.from_numpy(x))
    ours.set_weights(theirs.get_weights())
    return theirs, ours, x


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_keras3_config_computes_what_keras3_computes(case):
    name, kw, spatial = case
    theirs, ours, x = _pair(name, kw, spatial)
    xk = torch.from_numpy(x).requires_grad_(True)
    xo = torch.from_numpy(x).requires_grad_(True)
    want, got = theirs(xk), ours(xo)
    assert tuple(got.shape) == tuple(want.shape) == \
        tuple(theirs.compute_output_shape(x.shape))
    assert ours.compute_output_shape(x.shape) == tuple(want.shape)
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), atol=1e-12,
                               rtol=1e-10)
    probe = torch.from_numpy(np.random.default_rng(1).normal(size=tuple(got.shape)))
    want_g = torch.autograd.grad((want * probe).sum(),
                                 [xk] + [v.value for v in theirs.trainable_weights])
    got_g = torch.autograd.grad((got * probe).sum(), [xo] + list(ours.weights))
    assert len(want_g) == len(got_g)
    for g, w in zip(got_g, want_g):
        np.testing.assert_allclose(g.numpy(), w.numpy(), atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_float32_cpu_kernels_match_keras3(name):
    """float32 channels_last takes the fast CPU kernels (the C depthwise kernel for rank 1
    and 2): against Keras 3 at 1e-5 of scale, forward and input gradient."""
    rank = int(name[-2])
    kw = dict(kernel_size=3, strides=(3, 2)[:rank] if rank == 2 else 3, dilation_rate=2,
              padding="same", depth_multiplier=2)
    if name.startswith("Separable"):
        kw["filters"] = 5
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2,) + (23,) * rank + (8,)).astype(np.float32)
    theirs = getattr(keras.layers, name)(**kw)
    theirs(x)
    theirs.set_weights([rng.normal(size=w.shape).astype(np.float32)
                        for w in theirs.get_weights()])
    ours = build_layer(keras.saving.serialize_keras_object(theirs), "keras3")
    ours(torch.from_numpy(x))
    ours.set_weights(theirs.get_weights())
    xk = torch.from_numpy(x).requires_grad_(True)
    xo = torch.from_numpy(x).requires_grad_(True)
    want, got = theirs(xk), ours(xo)
    scale = float(want.detach().abs().max())
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), atol=1e-5 * scale)
    probe = torch.from_numpy(rng.normal(size=tuple(got.shape)).astype(np.float32))
    (want_g,) = torch.autograd.grad((want * probe).sum(), [xk])
    (got_g,) = torch.autograd.grad((got * probe).sum(), [xo])
    np.testing.assert_allclose(got_g.numpy(), want_g.numpy(),
                               atol=1e-5 * float(want_g.abs().max()))


def test_default_constructor_and_tf_keras_configs_keep_tf_keras_refusal():
    message = ("`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
               "Received: strides=(2, 2) and dilation_rate=(2, 2)")
    with pytest.raises(ValueError) as err:
        sepconv.DepthwiseConv2D(3, strides=2, dilation_rate=2)
    assert str(err.value) == message
    with pytest.raises(ValueError, match="dilation_rate > 1"):
        sepconv.SeparableConv1D(2, 3, strides=2, dilation_rate=2)
    entry = {"class_name": "SeparableConv2D",
             "config": sepconv.SeparableConv2D(2, 3).get_config()}
    entry["config"].update(strides=(2, 2), dilation_rate=(2, 2))
    with pytest.raises(KerasFileError, match="dilation_rate > 1"):
        build_layer(entry, "tf_keras")
    assert build_layer(entry, "keras3").strides == (2, 2)
    # Keras 3 refuses them in Conv*D as TensorFlow does: so does sepconv from its configs
    conv = {"class_name": "Conv2D", "config": sepconv.Conv2D(2, 3).get_config()}
    conv["config"].update(strides=(2, 2), dilation_rate=(2, 2))
    with pytest.raises(KerasFileError, match="dilation_rate > 1"):
        build_layer(conv, "keras3")
    with pytest.raises(ValueError, match="dilation_rate"):  # the functional op: TF's rule
        sepconv.functional.depthwise_conv(torch.zeros(1, 9, 2), torch.zeros(3, 2, 1),
                                          strides=2, dilation_rate=2)


def test_keras3_file_loads_and_saves(tmp_path):
    """A Keras 3 .keras file with all four: sepconv loads it to Keras 3's predict, writes it
    back as .keras (Keras 3 reads it to the same numbers) and refuses .h5 (tf-keras would
    refuse the layers)."""
    rng = np.random.default_rng(5)
    inp = keras.Input((15, 4))
    a = keras.layers.DepthwiseConv1D(3, strides=2, dilation_rate=3, padding="same")(inp)
    b = keras.layers.SeparableConv1D(3, 2, strides=3, dilation_rate=2)(inp)
    img = keras.layers.Reshape((5, 3, 4))(inp)
    c = keras.layers.DepthwiseConv2D((2, 2), strides=(2, 1), dilation_rate=(1, 2),
                                     padding="same", depth_multiplier=2)(img)
    d = keras.layers.SeparableConv2D(2, (2, 1), strides=(1, 2), dilation_rate=(2, 1),
                                     data_format="channels_first")(img)
    model = keras.Model(inp, [a, b, c, d])
    for layer in model.layers:
        layer.set_weights([rng.normal(size=w.shape).astype(np.float32)
                           for w in layer.get_weights()])
    x = rng.normal(size=(2, 15, 4)).astype(np.float32)
    want = [np.asarray(o) for o in model.predict(x, verbose=0)]
    path = str(tmp_path / "m.keras")
    model.save(path)
    ours = sepconv.load_keras_model(path)
    with torch.no_grad():
        got = [o.numpy() for o in ours(torch.from_numpy(x))]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5 * max(1.0, float(np.abs(w).max())))
    back = str(tmp_path / "back.keras")
    sepconv.save_keras_model(ours, back)
    again = [np.asarray(o) for o in keras.saving.load_model(back).predict(x, verbose=0)]
    for g, w in zip(again, want):
        np.testing.assert_allclose(g, w, atol=1e-5 * max(1.0, float(np.abs(w).max())))
    with pytest.raises(ValueError, match="tf-keras refuses"):
        sepconv.save_keras_model(ours, str(tmp_path / "m.h5"))
