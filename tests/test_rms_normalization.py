"""``RMSNormalization`` against Keras 3.15 (torch backend; tf-keras 2.21 has no such
layer): signature, numbers and gradients (inputs and ``scale``), config, weights, mixed
precision, streaming over the channel axis, and Keras 3 model files (``.keras``, ``.h5``)
loaded without TensorFlow and written back.

Keras 3.15 facts found here: its torch backend computes float64 inputs in float32
(``backend.result_type(torch.float64, "float32")`` is float32; sepconv computes float64 in
float64, checked against the formula); its torch backend hands ``axis`` to
``torch.nn.functional.rms_norm``, which normalises the LAST axes, so a non-trailing axis
(``axis=1`` of a 3D input) raises there; sepconv normalises over the axes given (checked
against the formula in float64)."""

from __future__ import annotations

import inspect
import os

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

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])
COMMON = ["input_shape", "batch_input_shape", "batch_size", "dtype", "name", "trainable",
          "weights"]


def _formula(x, axes, scale, eps):
    """The definition in float64 numpy: ``x * rsqrt(mean(x**2, axes) + eps) * scale``."""
    x = np.asarray(x, np.float64)
    axes = sorted(a % x.ndim for a in axes)
    shape = [x.shape[a] if a in axes else 1 for a in range(x.ndim)]
    ms = np.mean(x ** 2, axis=tuple(axes), keepdims=True)
    return x / np.sqrt(ms + eps) * np.asarray(scale, np.float64).reshape(shape)


def test_signature_is_keras3_then_common_and_r_function():
    theirs = [p for p in inspect.signature(keras.layers.RMSNormalization).parameters.values()
              if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    ours = list(inspect.signature(sepconv.RMSNormalization).parameters.values())
    assert [(p.name, p.default) for p in ours[:len(theirs)]] == \
        [(p.name, p.default) for p in theirs] == [("axis", -1), ("epsilon", 1e-6)]
    assert [p.name for p in ours[len(theirs):]] == COMMON
    r = list(inspect.signature(sepconv.layer_rms_normalization).parameters)
    assert r == ["object"] + [p.name for p in ours]
    assert sepconv.r.r_name("RMSNormalization") == "layer_rms_normalization"


@st.composite
def _trailing_case(draw):
    rank = draw(st.integers(2, 4))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank)))
    count = draw(st.integers(1, rank - 1))
    axes = list(range(rank - count, rank))
    form = draw(st.sampled_from(["int_neg", "int_pos", "list_neg", "list_pos", "list_rev"]))
    if count == 1 and form.startswith("int"):
        axis = -1 if form == "int_neg" else rank - 1
    elif form == "list_neg":
        axis = [a - rank for a in axes]
    elif form == "list_rev":
        axis = list(reversed(axes))
    else:
        axis = axes
    eps = draw(st.sampled_from([1e-6, 1e-3, 0.5]))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    return shape, axis, eps, dtype, draw(st.integers(0, 2 ** 16))


@SETTINGS
@given(_trailing_case())
def test_forward_and_gradients_match_keras3(case):
    """Trailing axes (what Keras 3 computes right): outputs and gradients w.r.t. the input
    and ``scale`` equal Keras 3's, given the same random scale."""
    shape, axis, eps, dtype, seed = case
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * rng.uniform(0.1, 3)).astype(dtype)
    ours = sepconv.RMSNormalization(axis=axis, epsilon=eps, dtype=dtype)
    ours(x)
    ours.set_weights([rng.standard_normal(w.shape).astype(dtype)
                      for w in ours.get_weights()])
    ref = keras.layers.RMSNormalization(axis=axis, epsilon=eps, dtype=dtype)
    ref.build(shape)
    ref.set_weights(ours.get_weights())
    assert ref.get_config()["axis"] == ours.get_config()["axis"]
    xt, xr = torch.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, yr = ours(xt), ref(xr)
    # Keras 3.15's torch backend computes float64 inputs in float32 (its
    # result_type(torch.float64, "float32") is float32): float32's tolerance against it,
    # float64's against the formula below.
    tol = 1e-5
    scale = max(1.0, float(yr.detach().abs().max()))
    torch.testing.assert_close(y, yr.detach(), atol=tol * scale, rtol=tol)
    r = torch.from_numpy(rng.standard_normal(shape).astype(dtype))
    (y * r).sum().backward()
    (yr * r).sum().backward()
    torch.testing.assert_close(xt.grad, xr.grad, atol=tol * 10 * scale, rtol=tol * 10)
    torch.testing.assert_close(ours.scale.grad, ref.weights[0].value.grad,
                               atol=tol * 10 * scale, rtol=tol * 10)
    exact = 1e-12 if dtype == "float64" else 1e-6
    np.testing.assert_allclose(y.detach().numpy(),
                               _formula(x, ours.axis, ours.get_weights()[0], eps),
                               atol=exact * scale, rtol=exact * 10)


@pytest.mark.parametrize("axis,shape", [(1, (2, 5, 3)), ([1], (2, 3, 4, 2)),
                                        ([1, 3], (2, 3, 4, 2)), (-3, (2, 3, 4, 2)),
                                        (0, (4, 3))])
def test_other_axes_follow_the_formula_where_keras3_fails(axis, shape):
    """Non-trailing axes: the formula with ``scale`` on those axes (float64) and
    gradcheck; Keras 3.15's torch backend raises (or would broadcast scale elsewhere)."""
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape)
    ours = sepconv.RMSNormalization(axis=axis, epsilon=1e-3, dtype="float64")
    ours(x)
    ours.set_weights([rng.standard_normal(w.shape) for w in ours.get_weights()])
    axes = axis if isinstance(axis, list) else [axis]
    assert ours.get_weights()[0].shape == tuple(shape[a] for a in sorted(
        a % len(shape) for a in axes))
    np.testing.assert_allclose(ours(x).detach().numpy(),
                               _formula(x, axes, ours.get_weights()[0], 1e-3),
                               rtol=1e-12, atol=1e-12)
    xt = torch.tensor(x, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, s: sepconv.functional.rms_normalization(
        a, axes, s, 1e-3), (xt, ours.scale.detach().clone().requires_grad_()))
    ref = keras.layers.RMSNormalization(axis=axis, epsilon=1e-3)
    with pytest.raises(Exception):
        ref(x.astype(np.float32))


def test_gradcheck_trailing_axes():
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    s = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b: sepconv.functional.rms_normalization(a, [1, 2], b, 1e-6), (x, s))
    assert torch.autograd.gradcheck(
        lambda a: sepconv.functional.rms_normalization(a, [-1]), (x,))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16", "float16"])
def test_dtype_policies_match_keras3(policy):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 6)).astype(np.float32) * 3
    ours = sepconv.RMSNormalization(dtype=policy)
    ref = keras.layers.RMSNormalization(dtype=policy)
    ours(x)
    ref.build(x.shape)
    ours.set_weights([rng.standard_normal(6).astype(np.float32) * 2])
    ref.set_weights(ours.get_weights())
    y, yr = ours(x), ref(x)
    assert y.dtype == yr.dtype == ours.compute_dtype
    assert ours.scale.dtype == (torch.float16 if policy == "float16" else torch.float32)
    torch.testing.assert_close(y.float(), yr.detach().float(), atol=0, rtol=0)
    assert ours.get_config()["dtype"] == policy


def test_config_weights_and_keras3_round_trip():
    ref = keras.layers.RMSNormalization(axis=[2, 1], epsilon=1e-4, name="rms")
    unbuilt = ref.get_config()
    ref.build((None, 3, 4))
    ours = sepconv.RMSNormalization.from_config(ref.get_config())
    ours.build((None, 3, 4))
    assert set(ours.get_config()) == set(ref.get_config())
    for key in ("axis", "epsilon", "name", "trainable"):
        assert ours.get_config()[key] == ref.get_config()[key]
    assert ours.get_config()["axis"] == [1, 2]  # sorted at build, as Keras
    again = sepconv.RMSNormalization.from_config(unbuilt)
    assert again.axis == [2, 1] and not again.built
    # weights: Keras' name, shape and order, both ways
    rng = np.random.default_rng(0)
    w = [rng.standard_normal((3, 4)).astype(np.float32)]
    ref.set_weights(w)
    ours.set_weights(ref.get_weights())
    np.testing.assert_array_equal(ours.get_weights()[0], w[0])
    assert [n for n, _ in ours.named_parameters()] == ["scale"]
    assert [v.path.split("/")[-1] for v in ref.weights] == ["scale"]
    with pytest.raises(ValueError, match=r"Weight `scale`.*\(3, 4\).*\(4, 3\)"):
        ours.set_weights([w[0].T])
    with pytest.raises(ValueError, match="expects 1 weights"):
        ours.set_weights(w + w)
    # state_dict into an unbuilt layer builds it
    fresh = sepconv.RMSNormalization(axis=[1, 2], epsilon=1e-4)
    fresh.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(fresh(x), ours(x))
    # weights= at construction, with input_shape
    built = sepconv.RMSNormalization(input_shape=(5,), weights=[np.full(5, 2.0, np.float32)])
    assert built.built and built.compute_output_shape((None, 5)) == (None, 5)
    torch.testing.assert_close(built(np.ones((1, 5))), torch.full((1, 5), 2 / np.sqrt(1 + 1e-6)))


def test_errors_name_the_argument():
    with pytest.raises(TypeError, match="`axis`.*axis='x'"):
        sepconv.RMSNormalization(axis="x")
    with pytest.raises(ValueError, match="`epsilon`.*-1"):
        sepconv.RMSNormalization(epsilon=-1)
    with pytest.raises(TypeError, match="`epsilon`"):
        sepconv.RMSNormalization(epsilon="small")
    with pytest.raises(ValueError, match="`axis`.*axis=\\[\\]"):
        sepconv.RMSNormalization(axis=[])
    with pytest.raises(ValueError, match="`axis`.*rank 3.*axis=3"):
        sepconv.RMSNormalization(axis=3)(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="duplicate"):
        sepconv.RMSNormalization(axis=[1, -2])(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="`input_shape`|axis"):
        sepconv.RMSNormalization(axis=2, input_shape=(4,))
    layer = sepconv.RMSNormalization()
    layer(torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"sizes \(4,\)"):
        layer(torch.randn(2, 5))
    with pytest.raises(ValueError, match="axis"):
        sepconv.functional.rms_normalization(torch.randn(2, 3), [2])


def test_numpy_float64_into_float32_layer_and_r_function():
    x = np.random.default_rng(1).standard_normal((3, 4))
    y = sepconv.layer_rms_normalization(x, epsilon=0.0)
    assert y.dtype == torch.float32
    np.testing.assert_allclose(y.detach().numpy(), _formula(x, [-1], np.ones(4), 0.0),
                               rtol=1e-6)
    model = sepconv.layer_rms_normalization(torch.nn.Sequential(), axis=-1.0)
    assert isinstance(model[0], sepconv.RMSNormalization) and model[0].axis == -1
    assert "axis=" in repr(model[0])


def test_streams_over_the_channel_axis_only():
    """A causal convolution, RMSNormalization over the channels (last axis, or axis 1 of a
    channels_first model), a Dense: chunks give the whole sequence's outputs; over the
    steps it is refused."""
    torch.manual_seed(2)
    for fmt, axis, time_axis in (("channels_last", -1, 1), ("channels_first", 1, 2)):
        model = torch.nn.Sequential(
            sepconv.Conv1D(5, 3, padding="causal", data_format=fmt),
            sepconv.RMSNormalization(axis=axis),
            sepconv.Conv1D(3, 2, padding="causal", data_format=fmt)).eval()
        x = torch.randn(2, 17, 4) if fmt == "channels_last" else torch.randn(2, 4, 17)
        with torch.no_grad():
            want = model(x)
            stream = sepconv.stream(model)
            got = torch.cat([stream(x.narrow(time_axis, a, n))
                             for a, n in ((0, 5), (5, 1), (6, 0), (6, 11))], dim=time_axis)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="RMSNormalization|axis"):
        sepconv.stream(torch.nn.Sequential(
            sepconv.Conv1D(5, 3, padding="causal"), sepconv.RMSNormalization(axis=[1, 2])))


def test_keras3_files_load_without_tensorflow_and_go_back(tmp_path):
    """A Keras 3 model with RMSNormalization (last axis, two trailing axes) saved as
    .keras and .h5: sepconv's load in the TensorFlow-free child equals predict; sepconv's
    own .keras of it loads in Keras 3 with the same outputs."""
    from keras_files import Cases, check, outputs
    keras.utils.set_random_seed(5)
    L = keras.layers
    x_in = keras.Input((7, 4))
    h = L.Conv1D(6, 3, padding="causal", name="conv")(x_in)
    h = L.RMSNormalization(epsilon=1e-3, name="rms")(h)
    h = L.RMSNormalization(axis=[1, 2], name="rms2")(h)
    model = keras.Model(x_in, L.Dense(2, name="head")(h))
    for layer in (model.get_layer("rms"), model.get_layer("rms2")):
        layer.set_weights([np.random.default_rng(1).uniform(0.5, 2, w.shape).astype("f")
                           for w in layer.get_weights()])
    x = np.random.default_rng(0).standard_normal((3, 7, 4)).astype(np.float32)
    y = outputs(model.predict(x, verbose=0))
    cases = Cases(tmp_path)
    for ext in (".keras", ".h5"):
        path = os.path.join(tmp_path, f"rms{ext}")
        model.save(path)
        cases.add(ext, "model", path, [x], y)
    results = cases.run()
    for ext in (".keras", ".h5"):
        check(results[ext])
    ours = sepconv.load_keras_model(tmp_path / "rms.keras")
    assert isinstance(ours.rms, sepconv.RMSNormalization) and ours.rms2.axis == [1, 2]
    sepconv.save_keras_model(ours, tmp_path / "back.keras")
    again = keras.saving.load_model(tmp_path / "back.keras")
    np.testing.assert_allclose(outputs(again.predict(x, verbose=0))[0], y[0], atol=1e-5)
