"""``AdaptiveAveragePooling1D/2D/3D`` and ``AdaptiveMaxPooling1D/2D/3D`` against Keras 3.15
(torch backend; tf-keras 2.21 has none): signature, forward and gradients on every data
format with output sizes that do and do not divide the input (and exceed it), the bins
against the definition and against Keras' TensorFlow backend code, config, dtype
policies, and Keras 3 model files loaded without TensorFlow and written back.

Facts found here: Keras 3's bins are torch's adaptive pooling bins (output ``i`` of ``n``
pools ``floor(i L / n) .. ceil((i + 1) L / n) - 1``): its torch backend calls
``torch.nn.functional.adaptive_*_pool*d`` and its TensorFlow backend's "two-pool gather"
computes the same windows (checked below).  That TensorFlow path pools with a window of
``ceil(L / n) + 1``, which does not fit when ``L <= ceil(L / n)`` (``output_size=1``, or
``L = 1``): there it aborts the process (SIGFPE on these CPUs), so those cases are checked
against the torch backend and the definition only."""

from __future__ import annotations

import inspect
import itertools
import math
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

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])
COMMON = ["input_shape", "batch_input_shape", "batch_size", "dtype", "name", "trainable",
          "weights"]
NAMES = [f"Adaptive{op}Pooling{r}D" for op in ("Average", "Max") for r in (1, 2, 3)]


def _definition(x, output_size, op, channels_last):
    """The bins by their definition, one output at a time (float64 numpy)."""
    x = np.asarray(x, np.float64)
    if channels_last:
        x = np.moveaxis(x, -1, 1)
    spatial = x.shape[2:]
    out = np.empty(x.shape[:2] + tuple(output_size))
    for idx in itertools.product(*[range(n) for n in output_size]):
        window = tuple(slice(math.floor(i * L / n), math.ceil((i + 1) * L / n))
                       for i, L, n in zip(idx, spatial, output_size))
        block = x[(slice(None), slice(None)) + window].reshape(x.shape[:2] + (-1,))
        out[(slice(None), slice(None)) + idx] = block.max(-1) if op == "Max" \
            else block.mean(-1)
    return np.moveaxis(out, 1, -1) if channels_last else out


@pytest.mark.parametrize("name", NAMES)
def test_signature_is_keras3_then_common_and_r_function(name):
    theirs = [p for p in inspect.signature(getattr(keras.layers, name)).parameters.values()
              if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    ours = list(inspect.signature(getattr(sepconv, name)).parameters.values())
    assert [p.name for p in ours[:len(theirs)]] == [p.name for p in theirs] == \
        ["output_size", "data_format"]
    assert theirs[0].default is inspect.Parameter.empty and ours[0].default is None
    assert ours[1].default is theirs[1].default is None
    assert [p.name for p in ours[len(theirs):]] == COMMON
    rank = name[-2]
    r_name = f"layer_adaptive_{'average' if 'Average' in name else 'max'}_pooling_{rank}d"
    assert sepconv.r.r_name(name) == r_name
    assert list(inspect.signature(getattr(sepconv, r_name)).parameters) == \
        ["object"] + [p.name for p in ours]


@st.composite
def _case(draw):
    rank = draw(st.integers(1, 3))
    op = draw(st.sampled_from(["Average", "Max"]))
    fmt = draw(st.sampled_from(["channels_last", "channels_first"]))
    spatial = tuple(draw(st.lists(st.integers(1, 9), min_size=rank, max_size=rank)))
    out = tuple(draw(st.lists(st.integers(1, 7), min_size=rank, max_size=rank)))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    return rank, op, fmt, spatial, out, dtype, draw(st.integers(0, 2 ** 16))


@SETTINGS
@given(_case())
def test_forward_and_gradients_match_keras3_and_the_definition(case):
    rank, op, fmt, spatial, out, dtype, seed = case
    rng = np.random.default_rng(seed)
    channels = 3
    shape = (2,) + (spatial + (channels,) if fmt == "channels_last" else
                    (channels,) + spatial)
    x = rng.standard_normal(shape).astype(dtype)
    name = f"Adaptive{op}Pooling{rank}D"
    size = out[0] if rank == 1 and seed % 2 else out  # an int too
    ours = getattr(sepconv, name)(size, data_format=fmt, dtype=dtype)
    ref = getattr(keras.layers, name)(size, data_format=fmt, dtype=dtype)
    xt, xr = torch.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, yr = ours(xt), ref(xr)
    assert tuple(y.shape) == tuple(yr.shape) == ours.compute_output_shape(shape) == \
        tuple(ref.compute_output_shape(shape))
    assert y.dtype == yr.dtype
    # Keras 3 pools with torch too: equal up to the order of a sum (which threads change)
    tol = dict(atol=1e-6, rtol=1e-6) if dtype == "float32" else dict(atol=1e-15, rtol=1e-13)
    torch.testing.assert_close(y, yr.detach(), **tol)
    np.testing.assert_allclose(y.detach().numpy(), _definition(x, out, op,
                                                               fmt == "channels_last"),
                               rtol=1e-6, atol=1e-6 if dtype == "float32" else 1e-12)
    r = torch.from_numpy(rng.standard_normal(tuple(y.shape)).astype(dtype))
    (y * r).sum().backward()
    (yr * r).sum().backward()
    torch.testing.assert_close(xt.grad, xr.grad, **tol)


@pytest.mark.parametrize("op", ["Average", "Max"])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_bins_equal_keras_tensorflow_backend(op, rank):
    """Keras' own TensorFlow-backend code (two-pool gather) gives the same numbers for
    sizes that divide and do not, and outputs larger than the input, where its second
    window fits (see the module docstring)."""
    pytest.importorskip("tensorflow")
    import tensorflow as tf
    from keras.src.backend.tensorflow import nn as keras_tf
    fn = keras_tf.adaptive_average_pool if op == "Average" else keras_tf.adaptive_max_pool
    rng = np.random.default_rng(rank)
    pairs = [(L, n) for L in (2, 3, 5, 7, 8, 10) for n in (2, 3, 4, 6, 9)
             if L >= math.ceil(L / n) + 1]
    for k, (L, n) in enumerate(pairs[::2 if rank == 3 else 1]):
        spatial = (L, max(2, 9 - L), 4)[:rank]
        out = (n, 3, 2)[:rank]
        fmt = "channels_last" if k % 2 else "channels_first"
        shape = (2,) + (spatial + (2,) if fmt == "channels_last" else (2,) + spatial)
        x = rng.standard_normal(shape).astype(np.float32)
        want = np.asarray(fn(tf.constant(x), out, data_format=fmt))
        got = getattr(sepconv, f"Adaptive{op}Pooling{rank}D")(out, data_format=fmt)(x)
        np.testing.assert_allclose(got.numpy(), want, atol=1e-6, rtol=1e-6,
                                   err_msg=f"L={L} n={n} {fmt}")


def test_gradcheck_float64():
    for rank, op in itertools.product((1, 2, 3), ("average", "max")):
        shape = (2,) + (5, 4, 3)[:rank] + (2,)
        x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
        out = (3, 3, 2)[:rank]
        assert torch.autograd.gradcheck(
            lambda a: sepconv.functional.adaptive_pool(a, out, op, "channels_last"), (x,))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16", "float16"])
def test_dtype_policies_match_keras3(policy):
    x = np.random.default_rng(0).standard_normal((2, 7, 5, 3)).astype(np.float32)
    for op in ("Average", "Max"):
        ours = getattr(sepconv, f"Adaptive{op}Pooling2D")((3, 2), dtype=policy)
        ref = getattr(keras.layers, f"Adaptive{op}Pooling2D")((3, 2), dtype=policy)
        y, yr = ours(x), ref(x)
        assert y.dtype == yr.dtype == ours.compute_dtype
        torch.testing.assert_close(y, yr, atol=0, rtol=0)
        assert ours.get_config()["dtype"] == policy


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trips_with_keras3(name):
    rank = int(name[-2])
    size = (4, 3, 2)[:rank]
    ref = getattr(keras.layers, name)(size, data_format="channels_first", name="p")
    ours = getattr(sepconv, name).from_config(ref.get_config())
    assert set(ours.get_config()) == set(ref.get_config())
    for key in ("output_size", "data_format", "name", "trainable"):
        assert ours.get_config()[key] == ref.get_config()[key]
    again = getattr(keras.layers, name).from_config(
        {k: v for k, v in ours.get_config().items() if k != "dtype"})
    assert again.get_config()["output_size"] == ref.get_config()["output_size"]
    default = getattr(sepconv, name)(2)
    assert default.get_config()["data_format"] == getattr(keras.layers, name)(2) \
        .get_config()["data_format"] == "channels_last"
    assert default.get_config()["output_size"] == (2,) * rank
    assert default.get_weights() == [] and list(default.state_dict()) == []
    assert "output_size" in repr(default)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="`output_size`.*required"):
        sepconv.AdaptiveAveragePooling1D()
    with pytest.raises(ValueError, match="`output_size`.*output_size=0"):
        sepconv.AdaptiveMaxPooling1D(0)
    with pytest.raises(ValueError, match="`output_size`.*tuple of 2"):
        sepconv.AdaptiveMaxPooling2D((2, 2, 2))
    with pytest.raises(ValueError, match="`output_size`.*whole number"):
        sepconv.AdaptiveAveragePooling3D(2.5)
    with pytest.raises(TypeError, match="`output_size`"):
        sepconv.AdaptiveAveragePooling2D("2")
    with pytest.raises(ValueError, match="`data_format`.*channels_middle"):
        sepconv.AdaptiveAveragePooling2D(2, data_format="channels_middle")
    with pytest.raises(ValueError, match=r"rank 4.*\(batch, rows, cols, channels\)"):
        sepconv.AdaptiveAveragePooling2D(2)(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="non-empty"):
        sepconv.AdaptiveMaxPooling1D(2)(torch.randn(2, 0, 3))
    with pytest.raises(ValueError, match="`input_shape`|rank"):
        sepconv.AdaptiveMaxPooling1D(2, input_shape=(4, 4, 3))


def test_r_function_and_numpy_inputs():
    x = np.random.default_rng(1).standard_normal((2, 9, 3))  # float64, as R hands over
    y = sepconv.layer_adaptive_max_pooling_1d(x, output_size=4.0)
    assert y.dtype == torch.float32 and tuple(y.shape) == (2, 4, 3)
    np.testing.assert_allclose(y.numpy(), _definition(x, (4,), "Max", True), rtol=1e-6)
    model = sepconv.layer_adaptive_average_pooling_2d(torch.nn.Sequential(), c(3.0, 2.0))
    assert model[0].output_size == (3, 2)
    with pytest.raises(ValueError, match="output_size"):
        sepconv.layer_adaptive_average_pooling_1d(output_size=2.5)


def c(*values):
    """R's ``c(...)``: a list of doubles."""
    return [float(v) for v in values]


def test_keras3_files_load_without_tensorflow_and_go_back(tmp_path):
    """All six layers in a Keras 3 model saved as .keras and .h5: sepconv's load in the
    TensorFlow-free child equals predict; sepconv's .keras of it loads in Keras 3."""
    from keras_files import Cases, check, outputs
    L = keras.layers
    keras.utils.set_random_seed(2)
    a = keras.Input((11, 3), name="a")
    b = keras.Input((9, 7, 2), name="b")
    c3 = keras.Input((2, 7, 5, 6), name="c")
    h1 = L.Conv1D(4, 2, name="conv1")(a)
    y1 = L.Concatenate(name="cat1")([
        L.AdaptiveAveragePooling1D(4, name="aap1")(h1),
        L.AdaptiveMaxPooling1D(4, name="amp1")(h1)])
    y2 = L.Concatenate(name="cat2")([
        L.AdaptiveAveragePooling2D((3, 5), name="aap2")(b),
        L.AdaptiveMaxPooling2D((3, 5), name="amp2")(b)])
    y3 = L.Concatenate(axis=1, name="cat3")([
        L.AdaptiveAveragePooling3D((3, 2, 4), data_format="channels_first", name="aap3")(c3),
        L.AdaptiveMaxPooling3D((3, 2, 4), data_format="channels_first", name="amp3")(c3)])
    model = keras.Model([a, b, c3], [y1, y2, y3])
    rng = np.random.default_rng(3)
    x = [rng.standard_normal((2,) + tuple(t.shape[1:])).astype(np.float32)
         for t in model.inputs]
    y = outputs(model.predict(x, verbose=0))
    cases = Cases(tmp_path)
    for ext in (".keras", ".h5"):
        path = os.path.join(tmp_path, f"adaptive{ext}")
        model.save(path)
        cases.add(ext, "model", path, x, y)
    results = cases.run()
    for ext in (".keras", ".h5"):
        check(results[ext])
    ours = sepconv.load_keras_model(tmp_path / "adaptive.keras")
    assert isinstance(ours.amp3, sepconv.AdaptiveMaxPooling3D)
    assert ours.amp3.data_format == "channels_first"
    sepconv.save_keras_model(ours, tmp_path / "back.keras")
    again = keras.saving.load_model(tmp_path / "back.keras")
    for got, want in zip(outputs(again.predict(x, verbose=0)), y):
        np.testing.assert_allclose(got, want, atol=1e-6)
