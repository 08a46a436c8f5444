"""Every layer class that Keras 3.15 and sepconv share, over its whole argument space.

The argument lists are tests/fuzz_specs.py's (tf-keras' names; renamed or dropped here where
Keras 3 differs).  Keras 3 (torch backend) builds the layer, sepconv its twin the way a
``.keras`` file is loaded (``build_layer(entry, "keras3")`` on Keras 3's own serialized
layer: Keras 3's formulas where they differ), with the same random weights.  Then the
outputs (inference) and the input gradient of a random probe agree to 1e-4 of their scale.

What Keras 3 accepts, sepconv accepts too.  Arguments Keras 3 refuses and tf-keras takes
(``causal`` separable convolutions, Gaussian upsampling, ...) are sepconv's, as R keras 2
users have them: not a failure here (tests/test_fuzz_tfkeras.py checks those).
"""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import torch  # noqa: E402

from fuzz_specs import (CALLS, KERAS3_SPECS, SPECS, apply, as_torch,  # noqa: E402
                        draw_input, draw_kwargs,
                        draw_policy, flat, randomize)
from sepconv.interop.models import build_layer  # noqa: E402

pytestmark = pytest.mark.slow

# tf-keras names -> Keras 3 names; None drops the argument (Keras 3 has no such argument)
RENAMED = {"LeakyReLU": {"alpha": "negative_slope"}, "LSTM": {"time_major": None},
           "GRU": {"time_major": None}, "SimpleRNN": {"time_major": None},
           "Embedding": {"input_length": None},
           "BatchNormalization": {"renorm": None}}
# Classes Keras 3 does not have
ABSENT = {"ThresholdedReLU", "LocallyConnected1D", "LocallyConnected2D"}
# Where Keras 3's torch backend (this test's reference) computes otherwise than TensorFlow
# (tf-keras, and Keras 3's TF backend, which R keras3 runs), sepconv computes TensorFlow's:
# - "bicubic" resizing: torch's kernel (a = -0.75), TensorFlow's a = -0.5;
# - selu's gradient at exactly 0: torch's scale * alpha, TensorFlow's scale;
# - "same" average pooling: tests/test_fuzz_tfkeras.py checks TensorFlow's divisor;
# - what TensorFlow refuses and torch computes: strides > 1 with dilation_rate > 1 (but
#   in the depthwise and separable layers, whose Keras 3 configs sepconv computes as Keras 3
#   does: drawn here), "same" transposed convolutions whose output does not convolve back
#   (output_padding=0 with an even kernel): sepconv refuses them as tf-keras does.
TORCH_BACKEND_ONLY = {"interpolation": ("bicubic",), "activation": ("selu",)}


def _torch_backend_only(name, kwargs):
    if any(kwargs.get(k) in v for k, v in TORCH_BACKEND_ONLY.items()):
        return True
    if name.startswith("AveragePooling") and kwargs.get("padding") == "same":
        return True
    strides, dilation = kwargs.get("strides") or 1, kwargs.get("dilation_rate", 1)
    if max(np.ravel(strides)) > 1 and max(np.ravel(dilation)) > 1 \
            and not name.startswith(("Depthwise", "Separable")):
        return True
    return "Transpose" in name and kwargs.get("padding") == "same" \
        and kwargs.get("output_padding") is not None


def keras3_kwargs(name, kwargs):
    out = {}
    for key, value in kwargs.items():
        new = RENAMED.get(name, {}).get(key, key)
        if new is not None:
            out[new] = value
    return out


def _outputs(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _run(layer, x, probes_seed, keras_layer):
    xt = as_torch(x)
    if x.dtype.kind == "f":
        xt.requires_grad_(True)
    out = layer(xt, training=False) if keras_layer else layer(xt)
    outs = _outputs(out)
    rng = np.random.default_rng(probes_seed)
    probes = [torch.from_numpy(rng.normal(size=tuple(o.shape)).astype(np.float32))
              for o in outs]
    grad = None
    if x.dtype.kind == "f":
        total = sum((o.float() * p).sum() for o, p in zip(outs, probes) if o.requires_grad)
        if torch.is_tensor(total) and total.requires_grad:
            (grad,) = torch.autograd.grad(total, [xt])
    return [o.detach().cpu().numpy() for o in outs], grad


def check_class(name, data):
    kind, rank, spec = {**SPECS, **KERAS3_SPECS}[name]
    kwargs = draw_kwargs(data, spec)
    if _torch_backend_only(name, kwargs):
        return
    tol = draw_policy(data, name, kwargs)
    rng = np.random.default_rng(0)
    x = draw_input(data, kind, rank, rng)
    if kwargs.get("data_format") == "channels_first":
        x = np.ascontiguousarray(np.moveaxis(x, -1, 1))
    try:
        theirs = getattr(keras.layers, name)(**keras3_kwargs(name, kwargs))
        _run(theirs, x, 1, True)
        randomize(theirs, rng)
        want, want_grad = _run(theirs, x, 1, True)
    except Exception:  # noqa: BLE001 - Keras 3 refuses: tf-keras' argument space rules
        return
    entry = keras.saving.serialize_keras_object(theirs)
    try:
        ours = build_layer(entry, "keras3").eval()
        ours(as_torch(x))
        ours.set_weights(theirs.get_weights())
        got, grad = _run(ours, x, 1, False)
    except (ValueError, TypeError) as err:
        raise AssertionError(f"{name}({kwargs}): Keras 3 accepts, sepconv refuses: "
                             f"{err}") from None
    assert len(got) == len(want), (name, kwargs, len(got), len(want))
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape, (name, kwargs, i, g.shape, w.shape)
        scale = max(1.0, float(np.max(np.abs(w))) if w.size else 1.0)
        np.testing.assert_allclose(g.astype(np.float32), w.astype(np.float32),
                                   atol=tol * scale, rtol=tol,
                                   err_msg=f"{name}({kwargs}) output {i}")
    if want_grad is not None:
        assert grad is not None, (name, kwargs)
        scale = max(1.0, float(want_grad.abs().max()))
        np.testing.assert_allclose(grad.float().numpy(), want_grad.float().numpy(),
                                   atol=tol * scale, rtol=tol,
                                   err_msg=f"{name}({kwargs}) input gradient")


@pytest.mark.parametrize("name", sorted((set(SPECS) | set(KERAS3_SPECS)) - ABSENT))
@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_layer_matches_keras3_over_its_arguments(name, data, torch_single_thread):
    check_class(name, data)


def check_call(name, data):
    """tests/fuzz_specs.py's CALLS makers with Keras 3: merges, attention, wrappers."""
    theirs, shapes, call = CALLS[name](keras, data)
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=s).astype(np.float32) for s in shapes]
    try:
        apply(theirs, [torch.from_numpy(x) for x in xs], call, True)
    except Exception:  # noqa: BLE001 - Keras 3 refuses: tf-keras' argument space rules
        return
    randomize(theirs, rng)
    keras_in = [torch.from_numpy(x).requires_grad_(True) for x in xs]
    want = flat(apply(theirs, keras_in, call, True))
    probes = [torch.from_numpy(rng.normal(size=tuple(o.shape)).astype(np.float32))
              for o in want]
    trainable = [v for v in theirs.weights if v.trainable]
    want_grads = torch.autograd.grad(sum((o * p).sum() for o, p in zip(want, probes)),
                                     keras_in + [v.value for v in trainable],
                                     allow_unused=True)
    ours = build_layer(keras.saving.serialize_keras_object(theirs), "keras3").eval()
    apply(ours, [torch.from_numpy(x) for x in xs], call, False)
    ours.set_weights(theirs.get_weights())
    ours_in = [torch.from_numpy(x).requires_grad_(True) for x in xs]
    got = flat(apply(ours, ours_in, call, False))
    assert len(got) == len(want), (name, len(got), len(want))
    for i, (g, w) in enumerate(zip(got, want)):
        w = w.detach().numpy()
        scale = max(1.0, float(np.max(np.abs(w))))
        np.testing.assert_allclose(g.detach().numpy(), w, atol=1e-4 * scale, rtol=1e-4,
                                   err_msg=f"{name} output {i}")
    by_path = {v.path: i for i, v in enumerate(theirs.weights)}
    sources = ours_in + [ours.weights[by_path[v.path]] for v in trainable]
    grads = torch.autograd.grad(sum((o * p).sum() for o, p in zip(got, probes)), sources,
                                allow_unused=True)
    labels = [f"input {i}" for i in range(len(xs))] + [v.path for v in trainable]
    for g, w, label in zip(grads, want_grads, labels):
        if w is None:
            continue
        g = torch.zeros_like(w) if g is None else g
        scale = max(1.0, float(w.abs().max()))
        np.testing.assert_allclose(g.numpy(), w.numpy(), atol=1e-4 * scale, rtol=1e-4,
                                   err_msg=f"{name} gradient of {label}")


@pytest.mark.parametrize("name", sorted(CALLS))
@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_layer_of_several_inputs_matches_keras3(name, data, torch_single_thread):
    check_call(name, data)
