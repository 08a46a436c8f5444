"""Keras 3's audio front ends: ``STFTSpectrogram`` and ``MelSpectrogram`` (R keras3:
``layer_stft_spectrogram``, ``layer_mel_spectrogram``).

Both exist in Keras 3 only (3.15 here), so they follow Keras 3.15's signatures, config keys,
weights and numbers (its torch backend); tf-keras 2 has neither.  The math is in
:mod:`sepconv.functional` (``stft_kernel``, ``stft_spectrogram``, ``mel_weight_matrix``,
``mel_spectrogram``).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from .. import functional as _functional
from .base import Layer, check_bool, check_count, check_data_format
from .core import check_number


def _check_real(value: Any, name: str, minimum: Optional[float] = None,
                strict: bool = False, allow_none: bool = False,
                allow_inf: bool = False) -> Optional[float]:
    """:func:`~sepconv.layers.core.check_number` (a real number ``>= minimum``, or ``None``
    where allowed), also finite (``inf`` too where ``allow_inf``) and ``> minimum`` if
    ``strict``; the value is returned as given (Keras' configs keep ``sampling_rate=16000``
    an int)."""
    if check_number(value, name, minimum, allow_none=allow_none) is None:
        return None
    value = value.item() if isinstance(value, np.ndarray) else value
    if not math.isfinite(value) and not (allow_inf and value == math.inf):
        raise ValueError(f"Invalid value for argument `{name}`. Expected a finite number. "
                         f"Received {name}={value!r}")
    if strict and value == minimum:
        raise ValueError(f"Invalid value for argument `{name}`. Expected a value > "
                         f"{minimum}. Received {name}={value!r}")
    return value


def _check_choice(value: Any, name: str, allowed: Tuple, none_ok: bool = False) -> Any:
    """One of ``allowed`` (Keras compares these strings as given: case matters)."""
    if value is None and none_ok:
        return None
    if not isinstance(value, str):
        raise TypeError(f"Invalid type for argument `{name}`. Expected one of {allowed}"
                        f"{' or None' if none_ok else ''}. Received {name}={value!r}")
    if value not in allowed:
        raise ValueError(f"Invalid value for argument `{name}`. Expected one of {allowed}"
                         f"{' or None' if none_ok else ''}. Received {name}={value!r}")
    return value


def _check_window_array(value: Any, length: int, length_name: str) -> np.ndarray:
    """A 1D window of ``length`` values (an array, a list or a tensor)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"Invalid type for argument `window`. Expected a window name, an "
                        f"array of {length} numbers or None. Received window={value!r}") \
            from None
    if array.shape != (length,):
        raise ValueError(f"Invalid value for argument `window`. Expected a window of shape "
                         f"({length},) ({length_name}={length}). Received a window of shape "
                         f"{array.shape}")
    return array


def _config_window(window: Any) -> Any:
    return window.tolist() if isinstance(window, np.ndarray) else window


class STFTSpectrogram(Layer):
    """Keras 3's ``STFTSpectrogram`` (R keras3: ``layer_stft_spectrogram``): the short-time
    Fourier transform of every channel of a signal, computed as Keras does, by a strided
    convolution with DFT kernels that are (trainable) weights.

    Input: ``(batch, steps, channels)`` (``data_format="channels_last"``, the default) or
    ``(batch, channels, steps)``.  Each channel is framed by windows of ``frame_length``
    samples every ``frame_step`` (default ``frame_length // 2``), ``padding`` ``"valid"``
    or ``"same"`` (TensorFlow's arithmetic), and transformed into ``freq = fft_length // 2
    + 1`` bins (``fft_length`` defaults to the smallest power of two >= ``frame_length``;
    the frame is zero-padded to it).  Output: ``(batch, frames, channels * freq)``
    (channel-major: the bins of channel 0 first) or ``(batch, channels * freq, frames)``;
    ``expand_dims=True``: ``(batch, frames, freq, channels)`` or ``(batch, channels,
    frames, freq)``.  ``mode``: ``"log"`` (``log(max(sqrt(max(power, 1e-7)), 1e-7))``),
    ``"magnitude"``, ``"psd"`` (power, the bins between the first and the last doubled),
    ``"real"``, ``"imag"``, ``"angle"``, ``"stft"`` (the real bins, then the imaginary
    ones: ``2 * freq``).

    Weights (Keras' names, shapes and order): ``real_kernel`` (absent for
    ``mode="imag"``), ``imag_kernel`` (absent for ``mode="real"``), each
    ``(frame_length, 1, freq)``: Keras' ``initializers.STFT``, ``cos`` / ``sin`` of
    ``-2 pi t k / n`` with ``n = 2 * (freq - 1)`` (so an odd ``fft_length`` uses
    ``fft_length - 1``, as Keras), times ``window`` (a SciPy window name: ``"hann"``,
    ``"hamming"``, ``"blackman"``, ``"boxcar"``, ``"bartlett"``, other names through SciPy
    where installed; a ``(frame_length,)`` array; or ``None``), symmetric unless
    ``periodic``, divided by the window's L2 norm (``scaling="density"``) or L1 norm
    (``"spectrum"``) or not (``None``).  They are trainable unless ``trainable=False``.

    Keras 3 builds the weights at the first call; they do not depend on the input, so
    sepconv creates them at construction (an optimizer can be made at once).  ``dtype``:
    float16, float32, float64 (Keras refuses bfloat16 inputs; so does sepconv, at
    construction); float64 stays float64 throughout (Keras 3.15's ``"log"``,
    ``"magnitude"`` and ``"angle"`` return float32 for float64 input: its
    ``ops.maximum(power, 1e-7)`` and ``ops.arctan2`` promote to float32).  Arguments are
    checked at construction, each error naming the argument; strings are case-sensitive,
    as in Keras.
    """

    #: tf-keras 2 has no such layer: ``save_keras_model`` writes it to ``.keras`` only.
    KERAS3_ONLY = True
    WEIGHT_NAMES = ("real_kernel", "imag_kernel")
    MODES = _functional._STFT_MODES

    def __init__(self, mode="log", frame_length=256, frame_step=None, fft_length=None,
                 window="hann", periodic=False, scaling="density", padding="valid",
                 expand_dims=False, data_format=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        if self.dtype_policy.compute == torch.bfloat16:
            raise ValueError(f"Invalid value for argument `dtype`. STFTSpectrogram computes "
                             f"in float16, float32 or float64 (Keras 3 refuses bfloat16 "
                             f"inputs). Received dtype={self.dtype_policy.name!r}")
        self.mode = _check_choice(mode, "mode", self.MODES)
        self.frame_length = check_count(frame_length, "frame_length")
        if frame_step is not None:
            frame_step = check_count(frame_step, "frame_step")
            if frame_step > self.frame_length:
                raise ValueError(f"Invalid value for argument `frame_step`. Expected a "
                                 f"positive integer not greater than `frame_length`. Received "
                                 f"frame_step={frame_step}, frame_length={self.frame_length}")
        self.frame_step = frame_step
        self._frame_step = frame_step or max(self.frame_length // 2, 1)
        if frame_step is None and self.frame_length // 2 < 1:
            raise ValueError(f"Invalid value for argument `frame_step`. The default, "
                             f"frame_length // 2, is 0 for frame_length={self.frame_length}; "
                             f"give frame_step. Received frame_step=None")
        if fft_length is not None:
            fft_length = check_count(fft_length, "fft_length")
            if fft_length < self.frame_length:
                raise ValueError(f"Invalid value for argument `fft_length`. Expected a value "
                                 f"not less than `frame_length`. Received "
                                 f"fft_length={fft_length}, frame_length={self.frame_length}")
            if fft_length & (fft_length - 1):
                warnings.warn(f"`fft_length` is recommended to be a power of two. "
                              f"Received fft_length={fft_length}", stacklevel=2)
        self.fft_length = fft_length
        self._fft_length = fft_length or 2 ** int(math.ceil(math.log2(self.frame_length)))
        if self._fft_length < 2:
            raise ValueError(f"Invalid value for argument `fft_length`. Expected at least 2 "
                             f"(one frequency bin besides DC). Received "
                             f"fft_length={fft_length} with frame_length={self.frame_length}")
        if isinstance(window, str):
            _functional.window(window, 1)  # an unknown name raises, naming `window`
        elif window is not None:
            window = _check_window_array(window, self.frame_length, "frame_length")
        self.window = window
        self.periodic = check_bool(periodic, "periodic")
        self.scaling = _check_choice(scaling, "scaling", ("density", "spectrum"), none_ok=True)
        self.padding = _check_choice(padding, "padding", ("valid", "same"))
        self.expand_dims = check_bool(expand_dims, "expand_dims")
        self.data_format = check_data_format(data_format)
        if self.batch_input_shape is not None:
            self._check_shape_output(lambda shape: self.compute_output_shape(shape))
        # the kernels do not depend on the input: made now (Keras: at the first call)
        self._build_checked((None, None, None), device=None)

    @property
    def _channels_axis(self) -> int:
        return -1 if self.data_format == "channels_last" else 1

    def _layout(self) -> str:
        return ("(batch, steps, channels)" if self.data_format == "channels_last"
                else "(batch, channels, steps)")

    def _kernel_initializer(self, side: str):
        def initializer(shape, dtype=None, device=None):
            return _functional.stft_kernel(side, shape[0], shape[2], self.window,
                                           self.scaling, self.periodic, dtype=dtype,
                                           device=device)
        return initializer

    def build(self, input_shape, device=None) -> None:
        shape = (self.frame_length, 1, self._fft_length // 2 + 1)
        if self.mode != "imag":
            self.add_weight("real_kernel", shape, self._kernel_initializer("real"),
                            device=device)
        if self.mode != "real":
            self.add_weight("imag_kernel", shape, self._kernel_initializer("imag"),
                            device=device)

    def _input_shape_from_weights(self, weights):
        return (None, None, None)

    def _check_input(self, shape) -> None:
        if len(shape) != 3:
            raise ValueError(f"Layer {self.name!r} expects input of rank 3, {self._layout()}. "
                             f"Received input of shape {shape}")
        steps = shape[1 if self.data_format == "channels_last" else 2]
        if self.padding == "valid" and steps < self.frame_length:
            raise ValueError(f"Layer {self.name!r}: an input of {steps} steps is shorter than "
                             f"frame_length={self.frame_length} (padding='valid' makes no "
                             f"frame). Received input of shape {shape}")

    def forward(self, inputs) -> torch.Tensor:
        x = self._prepare_input(inputs)
        return _functional.stft_spectrogram(
            x, self._weight("real_kernel") if self.mode != "imag" else None,
            self._weight("imag_kernel") if self.mode != "real" else None, mode=self.mode,
            frame_step=self._frame_step, padding=self.padding, expand_dims=self.expand_dims,
            data_format=self.data_format)

    def compute_output_shape(self, input_shape) -> Tuple[Optional[int], ...]:
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise ValueError(f"Expected an input shape of rank 3, {self._layout()}. Received "
                             f"input_shape={input_shape}")
        first = self.data_format == "channels_last"
        batch, steps, channels = ((input_shape[0], input_shape[1], input_shape[2]) if first
                                  else (input_shape[0], input_shape[2], input_shape[1]))
        freq = (self._fft_length // 2 + 1) * (2 if self.mode == "stft" else 1)
        if steps is None:
            frames = None
        elif self.padding == "valid":
            frames = (steps - self.frame_length) // self._frame_step + 1
            if frames <= 0:
                raise ValueError(f"an input of {steps} steps is shorter than "
                                 f"frame_length={self.frame_length} (padding='valid')")
        else:
            frames = -(-steps // self._frame_step)
        if self.expand_dims:
            return ((batch, frames, freq, channels) if first
                    else (batch, channels, frames, freq))
        features = None if channels is None else channels * freq
        return (batch, frames, features) if first else (batch, features, frames)

    def get_config(self) -> Dict[str, Any]:
        return {**self.base_config(), "mode": self.mode, "frame_length": self.frame_length,
                "frame_step": self.frame_step, "fft_length": self.fft_length,
                "window": _config_window(self.window), "periodic": self.periodic,
                "scaling": self.scaling, "padding": self.padding,
                "data_format": self.data_format, "expand_dims": self.expand_dims}

    def extra_repr(self) -> str:
        parts = [f"mode={self.mode!r}", f"frame_length={self.frame_length}",
                 f"frame_step={self._frame_step}", f"fft_length={self._fft_length}"]
        if not isinstance(self.window, np.ndarray) and self.window != "hann":
            parts.append(f"window={self.window!r}")
        elif isinstance(self.window, np.ndarray):
            parts.append("window=<array>")
        if self.periodic:
            parts.append("periodic=True")
        if self.scaling != "density":
            parts.append(f"scaling={self.scaling!r}")
        if self.padding != "valid":
            parts.append(f"padding={self.padding!r}")
        if self.expand_dims:
            parts.append("expand_dims=True")
        return self._repr_tail(parts)


class MelSpectrogram(Layer):
    """Keras 3's ``MelSpectrogram`` (R keras3: ``layer_mel_spectrogram``): the mel
    spectrogram of a signal, Keras' numbers (its torch backend).

    Input: ``(samples,)`` or ``(batch, samples)`` (any leading axes).  Output:
    ``(..., num_mel_bins, frames)`` with ``frames = 1 + samples // sequence_stride`` (even
    ``fft_length``).  The signal is centred (``fft_length // 2`` reflected samples at each
    end; it must be longer than that), framed every ``sequence_stride`` samples, windowed
    by a periodic ``"hann"`` or ``"hamming"`` window of ``sequence_length`` (default
    ``fft_length``) samples centred in ``fft_length`` (or an array of that length, or
    ``None``: no window), transformed (``torch.stft``), raised to ``mag_exp`` (2: power),
    mapped onto ``num_mel_bins`` triangular HTK mel filters between ``min_freq`` and
    ``max_freq`` (default ``sampling_rate / 2``; Keras' filter bank, computed in float32
    whatever the dtype), and, with ``power_to_db``, turned into decibels ``10 log10(max(S,
    min_power) / max(|ref_power|, min_power))`` floored at ``top_db`` below the largest
    value.  As in Keras that largest value is taken over the whole input, the batch
    included (one loud clip lifts the floor of the others).  ``top_db=None`` means no floor
    (Keras 3.15 raises a TypeError there; librosa's meaning).

    No weights.  ``dtype`` float16 / bfloat16 compute in float32 and cast the result, as
    Keras does.  float64 stays float64 throughout (Keras 3.15 rounds the spectrogram to
    float32 for the mel projection, its float32 filter bank winning the type promotion, so
    the two agree to float32 rounding there).  ``compute_output_shape`` gives the real
    frame count (Keras 3.15's says
    ``(samples + sequence_stride + 1) // sequence_stride``, one too many when
    ``samples + 1`` is a multiple of ``sequence_stride``).  Arguments are checked at
    construction (Keras 3.15 checks only ``fft_length >= sequence_length``), each error
    naming the argument.  ``max_freq=None`` (or 0, as Keras' ``or``) is ``int(sampling_rate
    / 2)``, and the config holds the resolved ``sequence_length`` and ``max_freq``, as
    Keras' does.
    """

    #: tf-keras 2 has no such layer: ``save_keras_model`` writes it to ``.keras`` only.
    KERAS3_ONLY = True

    def __init__(self, fft_length=2048, sequence_stride=512, sequence_length=None,
                 window="hann", sampling_rate=16000, num_mel_bins=128, min_freq=20.0,
                 max_freq=None, power_to_db=True, top_db=80.0, mag_exp=2.0, min_power=1e-10,
                 ref_power=1.0, input_shape=None, batch_input_shape=None, batch_size=None,
                 dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self.fft_length = check_count(fft_length, "fft_length", minimum=2)
        self.sequence_stride = check_count(sequence_stride, "sequence_stride")
        sequence_length = sequence_length or self.fft_length
        self.sequence_length = check_count(sequence_length, "sequence_length")
        if self.fft_length < self.sequence_length:
            raise ValueError(f"Invalid value for argument `sequence_length`. `fft_length` "
                             f"must be greater than or equal to `sequence_length`. Received "
                             f"sequence_length={self.sequence_length}, "
                             f"fft_length={self.fft_length}")
        if isinstance(window, str):
            _check_choice(window, "window", ("hann", "hamming"), none_ok=True)
        elif window is not None:
            window = _check_window_array(window, self.sequence_length, "sequence_length")
        self.window = window
        self.sampling_rate = _check_real(sampling_rate, "sampling_rate", 0, strict=True)
        self.num_mel_bins = check_count(num_mel_bins, "num_mel_bins")
        self.min_freq = _check_real(min_freq, "min_freq", 0)
        max_freq = _check_real(max_freq, "max_freq", allow_none=True)
        self.max_freq = max_freq or int(self.sampling_rate / 2)
        if self.max_freq <= self.min_freq:
            raise ValueError(f"Invalid value for argument `max_freq`. Expected a value "
                             f"greater than `min_freq`. Received max_freq={self.max_freq}, "
                             f"min_freq={self.min_freq}")
        self.power_to_db = check_bool(power_to_db, "power_to_db")
        self.top_db = _check_real(top_db, "top_db", 0, allow_none=True, allow_inf=True)
        self.mag_exp = _check_real(mag_exp, "mag_exp", 0, strict=True)
        self.min_power = _check_real(min_power, "min_power", 0, strict=True)
        self.ref_power = _check_real(ref_power, "ref_power")
        if self.batch_input_shape is not None:
            self._check_shape_output(lambda shape: self.compute_output_shape(shape))
        self._finish_init()

    def build(self, input_shape, device=None) -> None:
        pass

    def _check_input(self, shape) -> None:
        if len(shape) < 1:
            raise ValueError(f"Layer {self.name!r} expects (samples,) or (batch, samples). "
                             f"Received input of shape {shape}")

    def forward(self, inputs) -> torch.Tensor:
        x = self._prepare_input(inputs)
        compute = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        y = _functional.mel_spectrogram(
            x.to(compute), self.fft_length, self.sequence_stride, self.sequence_length,
            self.window, self.sampling_rate, self.num_mel_bins, self.min_freq, self.max_freq,
            self.power_to_db, self.top_db, self.mag_exp, self.min_power, self.ref_power)
        return y.to(x.dtype)

    def compute_output_shape(self, input_shape) -> Tuple[Optional[int], ...]:
        input_shape = tuple(input_shape)
        if len(input_shape) < 1:
            raise ValueError("Expected an input shape (samples,) or (batch, samples). "
                             f"Received input_shape={input_shape}")
        samples = input_shape[-1]
        if samples is None:
            frames = None
        else:
            if samples <= self.fft_length // 2:
                raise ValueError(f"an input of {samples} samples is too short for "
                                 f"fft_length={self.fft_length} (the centred STFT reflects "
                                 f"{self.fft_length // 2} samples at each end)")
            frames = 1 + (samples + 2 * (self.fft_length // 2) - self.fft_length) \
                // self.sequence_stride
        return tuple(input_shape[:-1]) + (self.num_mel_bins, frames)

    def get_config(self) -> Dict[str, Any]:
        return {**self.base_config(), "fft_length": self.fft_length,
                "sequence_stride": self.sequence_stride,
                "sequence_length": self.sequence_length,
                "window": _config_window(self.window), "sampling_rate": self.sampling_rate,
                "num_mel_bins": self.num_mel_bins, "min_freq": self.min_freq,
                "max_freq": self.max_freq, "power_to_db": self.power_to_db,
                "top_db": self.top_db, "mag_exp": self.mag_exp, "min_power": self.min_power,
                "ref_power": self.ref_power}

    def extra_repr(self) -> str:
        parts = [f"fft_length={self.fft_length}", f"sequence_stride={self.sequence_stride}",
                 f"num_mel_bins={self.num_mel_bins}", f"sampling_rate={self.sampling_rate}"]
        if self.sequence_length != self.fft_length:
            parts.append(f"sequence_length={self.sequence_length}")
        if isinstance(self.window, np.ndarray):
            parts.append("window=<array>")
        elif self.window != "hann":
            parts.append(f"window={self.window!r}")
        parts.append(f"min_freq={self.min_freq}, max_freq={self.max_freq}")
        if not self.power_to_db:
            parts.append("power_to_db=False")
        return self._repr_tail(parts)
