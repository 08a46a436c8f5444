"""Keras 3's audio front ends, ``STFTSpectrogram`` and ``MelSpectrogram`` (R keras3:
``layer_stft_spectrogram``, ``layer_mel_spectrogram``), against Keras 3.15 on the torch
backend (tf-keras 2 has neither): signatures, default DFT kernels, forward for every mode
and gradients w.r.t. the input by torch autograd through both implementations, over
hypothesis-drawn arguments; configs, dtypes, errors naming the argument, R functions,
the windows against SciPy, float64 gradcheck, streaming's refusal, and Keras 3 ``.keras``
models holding them (loaded by sepconv without TensorFlow, written back for Keras 3)."""

from __future__ import annotations

import inspect
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover - conftest sets it
    pytest.skip("Keras 3 must run on the torch backend", allow_module_level=True)

import sepconv  # noqa: E402
from sepconv import functional as F  # noqa: E402

pytestmark = [pytest.mark.usefixtures("torch_single_thread"),
              pytest.mark.filterwarnings("ignore:`fft_length` is recommended"),
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])
COMMON = ["input_shape", "batch_input_shape", "batch_size", "dtype", "name", "trainable",
          "weights"]
CLASSES = ["STFTSpectrogram", "MelSpectrogram"]


def _np(y):
    return keras.ops.convert_to_numpy(y)


def _close(ours, theirs, rtol=1e-5):
    theirs = np.asarray(theirs, dtype=np.float64)
    scale = max(1.0, float(np.abs(theirs).max()))
    np.testing.assert_allclose(np.asarray(ours, dtype=np.float64), theirs, rtol=rtol,
                               atol=rtol * scale)


def _forward_and_grad(layer, x, r):
    x = torch.from_numpy(x).requires_grad_(True)
    y = layer(x)
    (g,) = torch.autograd.grad((y * r).sum(), [x])
    return y.detach().numpy(), g.numpy()


@pytest.mark.parametrize("name", CLASSES)
def test_signature_is_keras3_then_the_common_arguments(name):
    theirs = inspect.signature(getattr(keras.layers, name).__init__).parameters
    theirs = [(p.name, p.default) for p in theirs.values() if p.name not in ("self", "kwargs")]
    ours = list(inspect.signature(getattr(sepconv, name).__init__).parameters.values())[1:]
    assert [(p.name, p.default) for p in ours[:len(theirs)]] == theirs
    assert [p.name for p in ours[len(theirs):]] == COMMON
    assert all(p.default is None for p in ours[len(theirs):])


def test_windows_are_scipys():
    signal = pytest.importorskip("scipy.signal")
    for name in ("hann", "hamming", "blackman", "boxcar", "bartlett", "cosine"):
        for length in (1, 2, 7, 64):
            for periodic in (False, True):
                np.testing.assert_allclose(F.window(name, length, periodic),
                                           signal.get_window(name, length, periodic),
                                           rtol=1e-13, atol=1e-15)


# -- STFTSpectrogram -------------------------------------------------------------------------

@st.composite
def stft_cases(draw):
    frame_length = draw(st.integers(2, 40))
    kw = dict(mode=draw(st.sampled_from(sepconv.STFTSpectrogram.MODES)),
              frame_length=frame_length,
              frame_step=draw(st.one_of(st.none(), st.integers(1, frame_length))),
              fft_length=draw(st.one_of(st.none(),
                                        st.integers(frame_length, frame_length + 20))),
              periodic=draw(st.booleans()),
              scaling=draw(st.sampled_from(["density", "spectrum", None])),
              padding=draw(st.sampled_from(["valid", "same"])),
              expand_dims=draw(st.booleans()),
              data_format=draw(st.sampled_from(["channels_last", "channels_first"])))
    window = draw(st.sampled_from(["hann", "hamming", None, "array", "blackman"]))
    if kw["frame_step"] is None and frame_length < 2:
        kw["frame_step"] = 1
    kw["window"] = (np.linspace(0.2, 1.0, frame_length) if window == "array" else window)
    steps = draw(st.integers(frame_length, frame_length + 40))
    channels = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    return kw, steps, channels, dtype, draw(st.integers(0, 2**31))


STFT_GRID = [
    dict(),
    dict(padding="same", frame_length=100, frame_step=30, fft_length=200, window="hamming",
         periodic=True, scaling="spectrum"),
    dict(window=None, frame_length=64, fft_length=65, data_format="channels_first",
         expand_dims=True),
    dict(expand_dims=True, scaling=None, frame_length=50, window=np.hanning(50) + 0.1),
]


@pytest.mark.parametrize("mode", sepconv.STFTSpectrogram.MODES)
@pytest.mark.parametrize("grid", range(len(STFT_GRID)))
def test_stft_every_mode_matches_keras3(mode, grid):
    _check_stft((dict(STFT_GRID[grid], mode=mode), 700, 2, "float32", grid))


@SETTINGS
@given(stft_cases())
def test_stft_forward_and_input_gradients_match_keras3(case):
    _check_stft(case)


def _check_stft(case):
    kw, steps, channels, dtype, seed = case
    kw.setdefault("data_format", "channels_last")
    rng = np.random.default_rng(seed)
    shape = ((2, steps, channels) if kw["data_format"] == "channels_last"
             else (2, channels, steps))
    x = rng.standard_normal(shape).astype(dtype)
    ours = sepconv.STFTSpectrogram(dtype=dtype, **kw)
    ref = keras.layers.STFTSpectrogram(dtype=dtype, **kw)
    ref.build(shape)
    # Keras' initializer and ours: the same kernels, computed in the same dtype and order
    theirs_w = [_np(w) for w in ref.weights]
    assert [w.path.split("/")[-1] for w in ref.weights] == ours._weight_order
    assert [w.trainable for w in ref.weights] == [p.requires_grad for p in ours.weights]
    for a, b in zip(ours.get_weights(), theirs_w):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 if dtype == "float64" else 1e-6)
    ours.set_weights(theirs_w)
    y = ours(torch.from_numpy(x))
    assert tuple(y.shape) == ours.compute_output_shape(shape) == \
        tuple(ref.compute_output_shape(shape))
    r = torch.from_numpy(rng.standard_normal(tuple(y.shape)).astype(dtype))
    y, g = _forward_and_grad(ours, x, r)
    y_ref, g_ref = _forward_and_grad(ref, x, r)
    assert y.dtype == np.dtype(dtype)
    # Keras 3.15's float64 "log" / "magnitude" floor the power with ops.maximum(power,
    # 1e-7) and "angle" takes ops.arctan2, which return float32 (Keras' type promotion
    # with Python floats), so they agree to float32 rounding
    rtol = 1e-10 if dtype == "float64" and kw["mode"] not in ("log", "magnitude", "angle") \
        else 1e-5
    _close(y, y_ref, rtol)
    # the angle's gradient is 1 / |frame| along the circle: ill-conditioned where a frame's
    # magnitude is near 0, float32 rounding of the frames there moves it by ~1e-4 of the
    # largest (by 2.6e-4 at 4 of 2800 elements on an AVX2 CPU, whose sums round otherwise)
    _close(g, g_ref, 1e-4 if kw["mode"] == "angle" else rtol)


def test_stft_kernel_gradients_and_training_match_keras3():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 80, 2)).astype(np.float32)
    ours = sepconv.STFTSpectrogram(mode="log", frame_length=32, frame_step=8, padding="same")
    ref = keras.layers.STFTSpectrogram(mode="log", frame_length=32, frame_step=8,
                                       padding="same")
    ref.build(x.shape)
    r = torch.from_numpy(rng.standard_normal(ours.compute_output_shape(x.shape))
                         .astype(np.float32))
    grads = []
    for layer, weights in ((ours, list(ours.weights)), (ref, [w.value for w in ref.weights])):
        y = layer(torch.from_numpy(x))
        grads.append([g.numpy() for g in torch.autograd.grad((y * r).sum(), weights)])
    for a, b in zip(*grads):
        _close(a, b)
    frozen = sepconv.STFTSpectrogram(trainable=False, mode="real")
    assert frozen._weight_order == ["real_kernel"]
    assert not any(p.requires_grad for p in frozen.parameters())


def test_stft_float16_matches_keras3_and_bfloat16_is_refused():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 300, 1)).astype(np.float16)
    ours = sepconv.STFTSpectrogram(mode="magnitude", frame_length=64, dtype="float16")
    ref = keras.layers.STFTSpectrogram(mode="magnitude", frame_length=64, dtype="float16")
    theirs = _np(ref(x))
    for a, b in zip(ours.get_weights(), ref.get_weights()):
        np.testing.assert_array_equal(a, b)
    got = ours(torch.from_numpy(x)).detach().numpy()
    assert got.dtype == np.float16
    _close(got, theirs, rtol=2e-2)
    with pytest.raises(ValueError, match="`dtype`"):
        sepconv.STFTSpectrogram(dtype="bfloat16")
    with pytest.raises(ValueError, match="`dtype`"):
        sepconv.STFTSpectrogram(dtype="mixed_bfloat16")
    mixed = sepconv.STFTSpectrogram(frame_length=16, dtype="mixed_float16")
    assert mixed.real_kernel.dtype == torch.float32
    assert mixed(torch.randn(1, 40, 1)).dtype == torch.float16


# -- MelSpectrogram --------------------------------------------------------------------------

@st.composite
def mel_cases(draw):
    fft_length = draw(st.integers(16, 300))
    sampling_rate = draw(st.sampled_from([8000, 16000, 22050.0]))
    min_freq = draw(st.sampled_from([0.0, 20.0, 300.0]))
    kw = dict(fft_length=fft_length,
              sequence_stride=draw(st.integers(1, fft_length)),
              sequence_length=draw(st.one_of(st.none(), st.integers(1, fft_length))),
              sampling_rate=sampling_rate,
              num_mel_bins=draw(st.integers(1, 40)), min_freq=min_freq,
              max_freq=draw(st.sampled_from([None, 3000.0, 4000])),
              power_to_db=draw(st.booleans()),
              top_db=draw(st.sampled_from([80.0, 20.0, None])),
              mag_exp=draw(st.sampled_from([2.0, 1.0, 1.5])),
              min_power=draw(st.sampled_from([1e-10, 1e-4])),
              ref_power=draw(st.sampled_from([1.0, 2.5])))
    window = draw(st.sampled_from(["hann", "hamming", None, "array"]))
    length = kw["sequence_length"] or fft_length
    kw["window"] = np.linspace(0.3, 1.0, length) if window == "array" else window
    shape = draw(st.sampled_from([(1,), (2,), (2, 2)]))
    samples = draw(st.integers(fft_length // 2 + 1, fft_length + 200))
    return kw, shape[:-1] + (samples,) if len(shape) > 1 else (samples,), \
        draw(st.sampled_from(["float32", "float64"])), draw(st.integers(0, 2**31))


def _keras_mel(kw, dtype):
    kw = dict(kw)
    if kw["top_db"] is None:  # Keras 3.15 raises here; no floor is a floor at -inf
        kw["top_db"] = math.inf
    if isinstance(kw["window"], np.ndarray):  # Keras' torch stft takes a tensor window
        kw["window"] = torch.from_numpy(kw["window"])
    return keras.layers.MelSpectrogram(dtype=dtype, **kw)


MEL_DEFAULTS = inspect.signature(sepconv.MelSpectrogram.__init__).parameters
MEL_GRID = [
    dict(),
    dict(fft_length=512, sequence_stride=160, sequence_length=400, window="hamming",
         num_mel_bins=40, min_freq=50.0, max_freq=6000.0),
    dict(fft_length=256, sequence_stride=100, power_to_db=False, mag_exp=1.0, window=None),
    dict(fft_length=256, sequence_stride=100, top_db=20.0, ref_power=3.0, min_power=1e-6),
    dict(fft_length=255, sequence_stride=64, sampling_rate=8000, num_mel_bins=20),
    dict(fft_length=256, sequence_stride=64, top_db=None),
]


@pytest.mark.parametrize("grid", range(len(MEL_GRID)))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mel_grid_matches_keras3(grid, dtype):
    kw = {k: p.default for k, p in MEL_DEFAULTS.items() if k not in ["self"] + COMMON}
    kw.update(MEL_GRID[grid])
    _check_mel((kw, (2, 3001) if grid % 2 == 0 else (2, 2, 999), dtype, grid))


@SETTINGS
@given(mel_cases())
def test_mel_forward_and_input_gradients_match_keras3(case):
    _check_mel(case)


def _check_mel(case):
    kw, shape, dtype, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    ours = sepconv.MelSpectrogram(dtype=dtype, **kw)
    ref = _keras_mel(kw, dtype)
    y = ours(torch.from_numpy(x))
    assert tuple(y.shape) == ours.compute_output_shape(x.shape)
    r = torch.from_numpy(rng.standard_normal(tuple(y.shape)).astype(dtype))
    y, g = _forward_and_grad(ours, x, r)
    y_ref, g_ref = _forward_and_grad(ref, x, r)
    assert y.shape == y_ref.shape and y.dtype == np.dtype(dtype)
    # Keras 3.15 projects onto its float32 mel filters in float32 even for float64 input
    # (sepconv keeps float64): the two agree to float32 rounding in both dtypes
    _close(y, y_ref, 2e-5)
    _close(g, g_ref, 1e-4)


def test_mel_filter_bank_is_keras3s():
    ref = keras.layers.MelSpectrogram()
    for args in [(128, 1025, 16000, 20.0, 8000), (40, 257, 16000, 0.0, 6000.0),
                 (13, 100, 22050.0, 300.0, 11025)]:
        theirs = _np(ref.linear_to_mel_weight_matrix(*args))
        ours = F.mel_weight_matrix(*args).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-7)
        assert ours.shape == (args[1], args[0])


def test_mel_half_dtypes_compute_in_float32_like_keras3():
    x = np.random.default_rng(5).standard_normal((2, 3000)).astype(np.float32)
    for dtype in ("float16", "bfloat16", "mixed_float16"):
        ours = sepconv.MelSpectrogram(fft_length=256, sequence_stride=128, dtype=dtype)
        ref = keras.layers.MelSpectrogram(fft_length=256, sequence_stride=128, dtype=dtype)
        got = ours(torch.from_numpy(x))
        theirs = ref(torch.from_numpy(x))
        assert got.dtype == theirs.dtype
        _close(got.float().numpy(), theirs.float().numpy(), 0)


def test_gradcheck_float64():
    x = torch.randn(1, 60, 2, dtype=torch.float64, requires_grad=True)
    for mode in ("log", "psd", "angle", "stft"):
        layer = sepconv.STFTSpectrogram(mode=mode, frame_length=16, frame_step=5,
                                        padding="same", dtype="float64")
        assert torch.autograd.gradcheck(layer, (x,))
    y = torch.randn(2, 100, dtype=torch.float64, requires_grad=True)
    mel = sepconv.MelSpectrogram(fft_length=32, sequence_stride=10, num_mel_bins=8,
                                 sampling_rate=8000, dtype="float64", top_db=None)
    assert torch.autograd.gradcheck(mel, (y,))


# -- protocol -------------------------------------------------------------------------------

@pytest.mark.parametrize("name,kwargs", [
    ("STFTSpectrogram", dict(mode="psd", frame_length=100, frame_step=30, fft_length=129,
                             window="hamming", periodic=True, scaling="spectrum",
                             padding="same", expand_dims=True,
                             data_format="channels_first")),
    ("STFTSpectrogram", dict()),
    ("MelSpectrogram", dict(fft_length=512, sequence_stride=160, sequence_length=400,
                            window="hamming", sampling_rate=8000, num_mel_bins=40,
                            min_freq=60.0, max_freq=3800.0, power_to_db=False,
                            top_db=60.0, mag_exp=1.0, min_power=1e-8, ref_power=2.0)),
    ("MelSpectrogram", dict()),
])
def test_config_is_keras3s_and_round_trips(name, kwargs):
    ref = getattr(keras.layers, name)(**kwargs)
    ours = getattr(sepconv, name)(**kwargs)
    theirs = ref.get_config()
    config = ours.get_config()
    assert set(config) == set(theirs)
    assert {k: v for k, v in config.items() if k not in ("name", "dtype")} == \
        {k: v for k, v in theirs.items() if k not in ("name", "dtype")}
    again = getattr(sepconv, name).from_config(theirs)  # Keras 3's own config
    assert again.get_config() == {**config, "name": theirs["name"]}
    mine = getattr(sepconv, name).from_config(config)
    assert mine.get_config() == config and repr(mine)
    assert [w.shape for w in mine.get_weights()] == [tuple(w.shape) for w in ref.weights] \
        if ref.built else True


def test_state_dict_numpy_input_and_weights_argument():
    a = sepconv.STFTSpectrogram(frame_length=32, mode="stft")
    with torch.no_grad():
        a.real_kernel.mul_(2.0)
    b = sepconv.STFTSpectrogram(frame_length=32, mode="stft")
    b.load_state_dict(a.state_dict())
    x = np.random.default_rng(6).standard_normal((1, 100, 1))  # float64 -> float32
    ya = a(x)
    assert ya.dtype == torch.float32
    torch.testing.assert_close(b(x), ya)
    c = sepconv.STFTSpectrogram(frame_length=32, mode="stft", weights=a.get_weights())
    torch.testing.assert_close(c(x), ya)
    with pytest.raises(ValueError, match="expects 2 weights"):
        c.set_weights(a.get_weights()[:1])
    with pytest.raises(ValueError, match="has shape"):
        c.set_weights([w[:5] for w in a.get_weights()])


@pytest.mark.parametrize("name,kwargs,arg", [
    ("STFTSpectrogram", dict(mode="LOG"), "mode"),
    ("STFTSpectrogram", dict(mode=3), "mode"),
    ("STFTSpectrogram", dict(frame_length=0), "frame_length"),
    ("STFTSpectrogram", dict(frame_length=2.5), "frame_length"),
    ("STFTSpectrogram", dict(frame_step=300), "frame_step"),
    ("STFTSpectrogram", dict(frame_step=0), "frame_step"),
    ("STFTSpectrogram", dict(frame_length=1), "frame_step"),
    ("STFTSpectrogram", dict(fft_length=100), "fft_length"),
    ("STFTSpectrogram", dict(window="nosuchwindow"), "window"),
    ("STFTSpectrogram", dict(window="HANN"), "window"),
    ("STFTSpectrogram", dict(window=np.ones(5)), "window"),
    ("STFTSpectrogram", dict(window=[[1.0]]), "window"),
    ("STFTSpectrogram", dict(periodic="yes"), "periodic"),
    ("STFTSpectrogram", dict(scaling="l2"), "scaling"),
    ("STFTSpectrogram", dict(padding="causal"), "padding"),
    ("STFTSpectrogram", dict(padding=1), "padding"),
    ("STFTSpectrogram", dict(expand_dims=1), "expand_dims"),
    ("STFTSpectrogram", dict(data_format="nhwc"), "data_format"),
    ("STFTSpectrogram", dict(input_shape=(100,)), "input_shape"),
    ("STFTSpectrogram", dict(input_shape=(100, 1)), "input_shape"),
    ("MelSpectrogram", dict(fft_length=1), "fft_length"),
    ("MelSpectrogram", dict(sequence_stride=0), "sequence_stride"),
    ("MelSpectrogram", dict(fft_length=256, sequence_length=300), "sequence_length"),
    ("MelSpectrogram", dict(window="blackman"), "window"),
    ("MelSpectrogram", dict(window=np.ones(3)), "window"),
    ("MelSpectrogram", dict(sampling_rate=0), "sampling_rate"),
    ("MelSpectrogram", dict(sampling_rate="16k"), "sampling_rate"),
    ("MelSpectrogram", dict(num_mel_bins=0), "num_mel_bins"),
    ("MelSpectrogram", dict(min_freq=-1.0), "min_freq"),
    ("MelSpectrogram", dict(min_freq=5000.0, max_freq=4000.0), "max_freq"),
    ("MelSpectrogram", dict(power_to_db=1), "power_to_db"),
    ("MelSpectrogram", dict(top_db=-5.0), "top_db"),
    ("MelSpectrogram", dict(mag_exp=0.0), "mag_exp"),
    ("MelSpectrogram", dict(min_power=0.0), "min_power"),
    ("MelSpectrogram", dict(ref_power=float("nan")), "ref_power"),
    ("MelSpectrogram", dict(input_shape=(100,)), "input_shape"),
])
def test_bad_arguments_are_refused_naming_the_argument(name, kwargs, arg):
    with pytest.raises((ValueError, TypeError), match=f"`{arg}`"):
        getattr(sepconv, name)(**kwargs)


def test_bad_inputs_are_refused_with_the_shape():
    layer = sepconv.STFTSpectrogram(frame_length=64)
    with pytest.raises(ValueError, match="rank 3"):
        layer(torch.randn(2, 100))
    with pytest.raises(ValueError, match="shorter than frame_length=64"):
        layer(torch.randn(2, 50, 1))
    with pytest.raises(ValueError, match="too short for fft_length=256"):
        sepconv.MelSpectrogram(fft_length=256)(torch.randn(2, 100))


def test_r_functions():
    layer = sepconv.layer_stft_spectrogram(frame_length=64.0, frame_step=16.0,
                                           fft_length=128.0, mode="psd")
    assert isinstance(layer, sepconv.STFTSpectrogram) and layer.fft_length == 128
    model = torch.nn.Sequential()
    assert sepconv.layer_mel_spectrogram(model, fft_length=256.0, sequence_stride=128.0,
                                         num_mel_bins=20.0) is model
    assert model[0].num_mel_bins == 20 and isinstance(model[0].num_mel_bins, int)
    x = np.random.default_rng(7).standard_normal((1, 1000))
    out = sepconv.layer_mel_spectrogram(x, fft_length=256.0, sequence_stride=128.0)
    assert tuple(out.shape) == (1, 128, 8)
    with pytest.raises(ValueError, match="`frame_length`"):
        sepconv.layer_stft_spectrogram(frame_length=64.5)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("frame_length,frame_step", [(16, 5), (16, 16), (7, 1), (32, None)])
def test_valid_stft_streams_chunk_by_chunk_like_the_whole_signal(data_format, frame_length,
                                                                 frame_step):
    """Chunks of random lengths (empty ones and ones that complete no frame included)
    give, concatenated, the model's output on the whole signal."""
    first = data_format == "channels_last"
    model = sepconv.Sequential(
        sepconv.STFTSpectrogram(mode="log", frame_length=frame_length,
                                frame_step=frame_step, data_format=data_format),
        sepconv.Conv1D(4, 3, padding="causal", data_format=data_format),
        sepconv.Activation("relu")).eval()
    rng = np.random.default_rng(frame_length)
    x = torch.from_numpy(rng.standard_normal((2, 300, 3) if first else (2, 3, 300))
                         .astype(np.float32))
    axis = 1 if first else 2
    stream = sepconv.stream(model)
    assert stream.state_steps[0] == frame_length - 1
    with torch.no_grad():
        whole = model(x)
        outs, start = [], 0
        while start < 300:
            n = int(rng.integers(0, 40))
            outs.append(stream(x.narrow(axis, start, min(n, 300 - start))))
            start += n
    torch.testing.assert_close(torch.cat(outs, dim=axis), whole, rtol=1e-6, atol=1e-6)


def test_stream_refuses_what_reads_ahead_naming_the_layer():
    cases = [(sepconv.STFTSpectrogram(frame_length=32, padding="same", name="stft_same"),
              "padding='same'"),
             (sepconv.STFTSpectrogram(frame_length=32, expand_dims=True, name="stft_img"),
              "expand_dims=True"),
             (sepconv.MelSpectrogram(fft_length=64, name="mel_front"), "centred")]
    for layer, why in cases:
        model = sepconv.Sequential(layer, sepconv.Dense(4))
        with pytest.raises(ValueError, match=layer.name) as err:
            sepconv.stream(model)
        assert why in str(err.value)


# -- model files ----------------------------------------------------------------------------

def _mel_model(K):
    return K.Sequential([
        K.Input((4000,)),
        K.layers.MelSpectrogram(fft_length=256, sequence_stride=128, num_mel_bins=24,
                                sampling_rate=8000, name="mel"),
        K.layers.Conv1D(8, 3, activation="relu", name="conv"),
        K.layers.SeparableConv1D(6, 3, name="sep"),
        K.layers.MaxPooling1D(2, name="pool"),
        K.layers.GlobalAveragePooling1D(name="gap"),
        K.layers.Dense(3, name="dense")])


def _stft_model(K):
    return K.Sequential([
        K.Input((2000, 1)),
        K.layers.STFTSpectrogram(mode="log", frame_length=128, frame_step=64,
                                 padding="same", window="hamming", name="stft"),
        K.layers.Conv1D(8, 3, name="conv"),
        K.layers.GlobalMaxPooling1D(name="gmp"),
        K.layers.Dense(2, name="dense")])


@pytest.mark.slow
def test_keras3_models_load_without_tensorflow_and_save_back(tmp_path):
    from keras_files import Cases, check, outputs
    cases = Cases(tmp_path)
    rng = np.random.default_rng(8)
    built = {}
    for name, build in (("mel", _mel_model), ("stft", _stft_model)):
        keras.utils.set_random_seed(1)
        model = build(keras)
        # kernels moved off their initial values, so a loader that re-initialises fails
        model.set_weights([w + 0.01 * rng.standard_normal(w.shape).astype(w.dtype)
                           for w in model.get_weights()])
        x = rng.standard_normal((3,) + tuple(model.input_shape[1:])).astype(np.float32)
        y = outputs(model.predict(x, verbose=0))
        path = tmp_path / f"{name}.keras"
        model.save(path)
        cases.add(name, "model", path, inputs=[x], expected=y)
        built[name] = (path, x, y)
    results = cases.run()
    for name in built:
        check(results[name])
    for name, (path, x, y) in built.items():
        ours = sepconv.load_keras_model(str(path))
        with torch.no_grad():
            _close(ours(torch.from_numpy(x)).numpy(), y[0])
        again = tmp_path / f"{name}_again.keras"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sepconv.save_keras_model(ours, str(again))
        theirs = keras.saving.load_model(str(again))
        _close(_np(theirs.predict(x, verbose=0)), y[0])
        assert [type(layer).__name__ for layer in theirs.layers] == \
            [type(layer).__name__ for layer in keras.saving.load_model(str(path)).layers]
        with pytest.raises(ValueError, match=f"layer '{name}' .* Keras 3 only"):
            sepconv.save_keras_model(ours, str(tmp_path / f"{name}.h5"))
        assert not (tmp_path / f"{name}.h5").exists()


def test_keras3_functional_model_streams_from_its_stft_front_end(tmp_path):
    """A Keras 3 file (STFT front end, then a causal Conv1D branch and a Dense branch
    added): sepconv's stream of it, chunk by chunk, gives Keras' predict."""
    inp = keras.Input((None, 1))
    spec = keras.layers.STFTSpectrogram(mode="log", frame_length=64, frame_step=32,
                                        name="stft")(inp)
    out = keras.layers.Add(name="add")([
        keras.layers.Conv1D(8, 3, padding="causal", name="conv")(spec),
        keras.layers.Dense(8, name="dense")(spec)])
    model = keras.Model(inp, out)
    path = tmp_path / "stream.keras"
    model.save(path)
    x = np.random.default_rng(9).standard_normal((2, 1000, 1)).astype(np.float32)
    expected = _np(model.predict(x, verbose=0))
    stream = sepconv.stream(sepconv.load_keras_model(str(path)))
    with torch.no_grad():
        got = torch.cat([stream(torch.from_numpy(x[:, i:i + 37]))
                         for i in range(0, 1000, 37)], dim=1)
    assert got.shape == expected.shape
    _close(got.numpy(), expected)
