"""Keras 3's image preprocessing layers that tf-keras 2 lacks (Keras 3.15; R keras3's
``layer_*``): colour ops, histogram equalisation, mixing, the geometric ones, ``Pipeline``.

Images are ``(batch, rows, cols, channels)`` / ``(rows, cols, channels)``, or with
``data_format="channels_first"`` ``(batch, channels, rows, cols)`` / ``(channels, rows,
cols)``, as Keras 3's layers take them.  Every layer is ``KERAS3_ONLY`` (written to
``.keras`` files only).

Inference (``eval()``, or ``training=False``; a loaded model is in ``eval()``) computes what
Keras 3's ``predict`` computes: the images cast to the compute dtype, unchanged, for every
layer but ``AutoContrast`` and ``ContrastLimitedAdaptiveHistogramEqualization``, which
transform at inference too (Keras 3's ignore ``training``), and ``Pipeline``, which runs its
layers.

Training (``train()`` or ``training=True``): where sepconv implements the layer's transform
(``transform_images(images, transformation)``, given Keras' transformation dict, is Keras
3.15's numbers on its torch backend, tested) the layer draws a transformation from Keras'
distributions with torch's generator (``seed``: a ``torch.Generator`` of that seed; the
streams are not Keras', so equal random outputs are not a goal) and applies it.
``RandomElasticTransform``, whose displacement fields Keras draws inside its backend (from
torch's global stream there), is not implemented in training: it raises
``NotImplementedError`` rather than compute something else; its inference (the identity)
is Keras'.  Keras' dict inputs (labels,
bounding boxes, segmentation masks) are not taken: images only.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from .base import Layer, check_bool, check_count, check_data_format, layer_from_config
from .core import check_number
from .augmentation import _RandomImage, _common

__all__ = ["AugMix", "AutoContrast", "ContrastLimitedAdaptiveHistogramEqualization", "CutMix",
           "Equalization", "MaxNumBoundingBoxes", "MixUp", "Pipeline", "RandAugment",
           "RandomColorDegeneration", "RandomColorJitter", "RandomElasticTransform",
           "RandomErasing", "RandomGaussianBlur", "RandomGrayscale", "RandomHue",
           "RandomInvert", "RandomPerspective", "RandomPosterization", "RandomSaturation",
           "RandomSharpness", "RandomShear", "Solarization"]

_KERAS_EPSILON = 1e-7  # keras.backend.epsilon()


# -- argument helpers (Keras 3's checks and stored forms) ----------------------------------

def _number(value: Any, name: str) -> float:
    return check_number(value, name)


def _keras_factor(value: Any, name: str, bounds: Tuple[float, float]) -> Tuple[Any, Any]:
    """Keras 3's ``BaseImagePreprocessingLayer._set_factor``: a number ``f`` in ``bounds``
    -> ``(max(-|f|, low), |f|)``; a pair overlapping ``bounds`` -> sorted."""
    low, high = bounds
    msg = (f"Invalid value for argument `{name}`. Expected a number (or a list of two "
           f"numbers) in the range [{low}, {high}]. Received {name}={value!r}")
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(msg)
        for v in value:
            _number(v, name)
        if value[0] > high or value[1] < low:
            raise ValueError(msg)
        lower, upper = sorted(value)
        return lower, upper
    f = _number(value, name)
    if f < low or f > high:
        raise ValueError(msg)
    f = abs(value)
    return max(-f, low), f


def _value_range(value: Any, sort: bool = True) -> Any:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"Invalid value for argument `value_range`. Expected a list of two "
                         f"numbers. Received value_range={value!r}")
    for v in value:
        _number(v, "value_range")
    return sorted(value) if sort else value


def _config_value(value: Any) -> Any:
    """Tuples as lists (JSON's form; Keras' files hold lists)."""
    if isinstance(value, tuple):
        return [_config_value(v) for v in value]
    return value


def _to_range(x: torch.Tensor, source, target) -> torch.Tensor:
    """Keras 3's ``_transform_value_range`` (the identity where the ranges are equal)."""
    if source[0] == target[0] and source[1] == target[1]:
        return x
    smin, smax = float(source[0]), float(source[1])
    tmin, tmax = float(target[0]), float(target[1])
    dt = x.dtype
    x = (x - torch.tensor(smin, dtype=dt)) / (torch.tensor(smax, dtype=dt) -
                                              torch.tensor(smin, dtype=dt))
    return x * (torch.tensor(tmax, dtype=dt) - torch.tensor(tmin, dtype=dt)) + \
        torch.tensor(tmin, dtype=dt)


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    """Keras 3's ``rgb_to_grayscale`` (torch backend), channels last: ``(.., 1)``."""
    if x.shape[-1] == 3:
        r, g, b = x.unbind(dim=-1)
        return (0.2989 * r + 0.587 * g + 0.114 * b).to(x.dtype).unsqueeze(-1)
    if x.shape[-1] == 1:
        return x.clone()
    raise ValueError(f"Expected images of 3 (RGB) or 1 (grayscale) channels. Received "
                     f"images of shape {tuple(x.shape)}")


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """Keras 3's ``keras.ops.image.rgb_to_hsv`` (dm_pix's formulas), channels last."""
    eps = torch.finfo(x.dtype).eps
    x = torch.where(torch.abs(x) < eps, 0.0, x)
    r, g, b = x.unbind(dim=-1)
    value = torch.maximum(torch.maximum(r, g), b)
    minimum = torch.minimum(torch.minimum(r, g), b)
    range_ = value - minimum
    safe_value = torch.where(value > 0, value, 1.0)
    safe_range = torch.where(range_ > 0, range_, 1.0)
    saturation = torch.where(value > 0, range_ / safe_value, 0.0)
    norm = 1.0 / (6.0 * safe_range)
    hue = torch.where(value == g, norm * (b - r) + 2.0 / 6.0, norm * (r - g) + 4.0 / 6.0)
    hue = torch.where(value == r, norm * (g - b), hue)
    hue = torch.where(range_ > 0, hue, 0.0) + (hue < 0.0).to(hue.dtype)
    return torch.stack([hue, saturation, value], dim=-1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Keras 3's ``keras.ops.image.hsv_to_rgb``, channels last."""
    hue, saturation, value = x.unbind(dim=-1)
    dh = torch.remainder(hue, 1.0) * 6.0
    dr = torch.clip(torch.abs(dh - 3.0) - 1.0, 0.0, 1.0)
    dg = torch.clip(2.0 - torch.abs(dh - 2.0), 0.0, 1.0)
    db = torch.clip(2.0 - torch.abs(dh - 4.0), 0.0, 1.0)
    one_minus_s = 1.0 - saturation
    return torch.stack([value * (one_minus_s + saturation * dr),
                        value * (one_minus_s + saturation * dg),
                        value * (one_minus_s + saturation * db)], dim=-1)


def _check_rgb(x: torch.Tensor, name: str) -> None:
    if x.shape[-1] != 3:
        raise ValueError(f"Layer {name!r} expects RGB images (3 channels). Received images "
                         f"of shape {tuple(x.shape)}")


# -- the base class ----------------------------------------------------------------------

class _Keras3Image(_RandomImage):
    """A Keras 3 image preprocessing layer: ``data_format`` an argument (and in the config,
    as Keras 3 writes it), the identity at inference unless ``_AT_INFERENCE``, Keras'
    transform in training where ``_TRAINING`` (else ``NotImplementedError``)."""

    KERAS3_ONLY = True
    #: The layer transforms at inference too (Keras 3's ignores ``training``).
    _AT_INFERENCE = False
    #: sepconv implements the training transform.
    _TRAINING = True
    #: Transformation entries shaped like the images (in the layer's layout in Keras').
    _LAYOUT_KEYS: Tuple[str, ...] = ()

    def _start(self, data_format, seed=None) -> None:
        self.data_format = check_data_format(data_format)
        self._channels_first = self.data_format == "channels_first"
        self._seed(seed)

    @classmethod
    def from_config(cls, config: Dict[str, Any]):
        return Layer.from_config.__func__(cls, config)

    def base_config(self) -> Dict[str, Any]:
        config = Layer.base_config(self)
        config["data_format"] = self.data_format
        return config

    def _images(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        if training or self._AT_INFERENCE:
            if not self._TRAINING and training:
                raise NotImplementedError(
                    f"Layer {self.name!r} ({type(self).__name__}): sepconv computes Keras "
                    f"3's inference (the identity) only; its training-mode augmentation is "
                    f"not implemented (call it with training=False / in eval())")
            return self._transform(x, self._draw(x) if training else None)
        return x

    def get_random_transformation(self, images) -> Optional[Dict[str, torch.Tensor]]:
        """A random transformation for ``images`` (in the layer's layout), Keras 3's
        distributions drawn with torch's generator."""
        x = self._nhwc(images)
        return self._draw(x)

    def transform_images(self, images, transformation=None) -> torch.Tensor:
        """Keras 3's ``transform_images(images, transformation, training=True)``:
        ``images`` in the layer's layout (batched or not), ``transformation`` the dict
        Keras' ``get_random_transformation`` returns (tensors or arrays)."""
        x = self._prepare_input(images)
        unbatched = x.dim() == 3
        x = x.unsqueeze(0) if unbatched else x
        if self._channels_first:
            x = x.movedim(1, -1)
        if transformation is not None:
            transformation = {k: torch.as_tensor(np.asarray(v) if not torch.is_tensor(v)
                                                 else v)
                              for k, v in transformation.items()}
            for key in self._LAYOUT_KEYS:  # image-shaped entries: channels last, batched
                v = transformation.get(key)
                if v is not None and v.dim() in (3, 4):
                    v = v.unsqueeze(0) if v.dim() == 3 else v
                    transformation[key] = v.movedim(1, -1) if self._channels_first else v
        y = self._transform(x, transformation)
        y = y.movedim(-1, 1) if self._channels_first else y
        return y.squeeze(0) if unbatched else y

    def _nhwc(self, images) -> torch.Tensor:
        x = self._prepare_input(images)
        x = x.unsqueeze(0) if x.dim() == 3 else x
        return x.movedim(1, -1) if self._channels_first else x

    def _draw(self, x: torch.Tensor) -> Optional[Dict[str, torch.Tensor]]:
        if not self._TRAINING:
            raise NotImplementedError(f"{type(self).__name__}: training-mode augmentation "
                                      f"is not implemented in sepconv")
        return None

    def _transform(self, x: torch.Tensor, t) -> torch.Tensor:
        """``x``: ``(batch, rows, cols, channels)`` in the compute dtype."""
        return x

    def _uniform(self, shape, low, high, x) -> torch.Tensor:
        return self._rand(shape, float(low), float(high), x)

    def _beta(self, n: int, alpha: float, x) -> torch.Tensor:
        """``n`` draws of Beta(alpha, alpha) (NumPy's sampler, seeded from the layer's
        torch generator: torch's Beta takes no generator)."""
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=self._generator(torch.device(
            "cpu")) if self.seed is not None else None))
        draws = np.random.default_rng(seed).beta(alpha, alpha, size=n)
        return torch.as_tensor(draws, dtype=torch.float32, device=x.device)

    def _box_masks(self, x, width_ratio, height_ratio) -> torch.Tensor:
        """Keras 3's ``_compute_crop_bounds`` / ``_generate_batch_mask`` (CutMix,
        RandomErasing): per image a box of ``ratio * length`` on each axis at a uniform
        position; ``(batch, rows, cols, channels)`` booleans."""
        n, rows, cols, channels = x.shape
        dt = self.compute_dtype

        def bounds(length, ratio):
            crop = (ratio * length).to(dt)
            start = self._uniform((n,), 0, 1, x).to(dt) * (length - crop)
            return start, start + crop

        x0, x1 = bounds(cols, width_ratio)
        y0, y1 = bounds(rows, height_ratio)
        gy, gx = torch.meshgrid(torch.arange(rows, dtype=dt, device=x.device),
                                torch.arange(cols, dtype=dt, device=x.device), indexing="ij")
        gx, gy = gx[None, :, :, None], gy[None, :, :, None]
        v = [b.view(-1, 1, 1, 1) for b in (x0, x1, y0, y1)]
        masks = (gx >= v[0]) & (gx < v[1]) & (gy >= v[2]) & (gy < v[3])
        return masks.expand(n, rows, cols, channels), (x0, x1, y0, y1)


def _with(config: Dict[str, Any], **values) -> Dict[str, Any]:
    config.update({k: _config_value(v) for k, v in values.items()})
    return config


# -- colour and value ops ----------------------------------------------------------------

class AutoContrast(_Keras3Image):
    """Keras 3's ``AutoContrast`` (R keras3: ``layer_auto_contrast``): each image's
    channels stretched to the whole ``value_range``, ``(x - min) * 255 / (max - min)`` in
    ``(0, 255)`` terms (min and max per image and channel), then clipped; where that is NaN
    (a flat channel) the input stays.  In training and inference alike, as Keras 3.
    With ``data_format="channels_first"`` Keras 3.15 takes the min and max over the
    channel and row axes (its ``axis=(1, 2)``), and so does sepconv."""

    def __init__(self, value_range=(0, 255), data_format=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.value_range = _value_range(value_range)
        self._start(data_format)
        self._finish_init()

    _AT_INFERENCE = True

    def _transform(self, x, t):
        original = x
        y = _to_range(x, self.value_range, (0, 255))
        axes = (1, 3) if self._channels_first else (1, 2)
        low = torch.amin(y, dim=axes, keepdim=True)
        high = torch.amax(y, dim=axes, keepdim=True)
        scale = 255.0 / (high - low)
        offset = -low * scale
        y = torch.clip(y * scale + offset, 0.0, 255.0)
        y = _to_range(y, (0, 255), self.value_range)
        return torch.where(torch.isnan(y), original, y)

    def get_config(self):
        return _with(self.base_config(), value_range=self.value_range)


class Equalization(_Keras3Image):
    """Keras 3's ``Equalization`` (R keras3: ``layer_equalization``): in training, each
    channel's histogram (``bins`` bins over ``value_range``, taken over the whole batch,
    as Keras 3.15 does) equalised; the identity in inference (Keras 3's)."""

    def __init__(self, value_range=(0, 255), bins=256, data_format=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.bins = check_count(bins, "bins")
        self.value_range = _value_range(value_range)
        self._start(data_format)
        self._finish_init()

    def _equalize(self, channel: torch.Tensor) -> torch.Tensor:
        vr = self.value_range
        # Keras 3.15 tests `value_range != (0, 255)` on its (list) value_range: always
        # true, so it always rescales (by 1.0 and 0.0 for the default range)
        scaled_range = True
        if scaled_range:
            scale = (255 - 0) / (vr[1] - vr[0])
            channel = channel * scale + (0 - vr[0] * scale)
        values = channel.to(torch.float32)
        zero, top = torch.tensor(0.0), torch.tensor(255.0)
        idx = ((values - zero) * (self.bins - 1) / (top - zero)).to(torch.int32)
        idx = torch.clip(idx, 0, self.bins - 1).reshape(-1)
        hist = torch.bincount(idx, minlength=self.bins)
        if int(torch.count_nonzero(hist)) <= 1:
            out = channel
        else:
            cdf = torch.cumsum(hist, dim=0)
            cdf_min = cdf[torch.nonzero(cdf)[0][0]]
            den = cdf[-1] - cdf_min
            den = torch.where(den == 0, torch.ones_like(den), den)
            lut = ((cdf - cdf_min) * 255) / den
            lut = torch.clip(torch.round(lut), 0, 255)
            s = (channel / 255.0) * (self.bins - 1)
            out = torch.take(lut, torch.clip(s, 0, self.bins - 1).to(torch.int32).long())
        if scaled_range:
            scale = (vr[1] - vr[0]) / (255 - 0)
            out = out * scale + (vr[0] - 0 * scale)
        return out

    def _transform(self, x, t):
        if t is None:
            return x
        out = torch.stack([self._equalize(x[..., i]) for i in range(x.shape[-1])], dim=-1)
        return out.to(self.compute_dtype)

    def _draw(self, x):
        return {}

    def get_config(self):
        return _with(self.base_config(), bins=self.bins, value_range=self.value_range)


class Solarization(_Keras3Image):
    """Keras 3's ``Solarization`` (R keras3: ``layer_solarization``): in training, per
    image, ``a`` drawn in ``[addition_factor[0], addition_factor[1] * 255)`` and ``t`` in
    ``[threshold_factor[0], threshold_factor[1] * 255)`` (Keras' bounds, the lower one
    unscaled); in ``(0, 255)`` terms ``y = clip(x + a, 0, 255)``, kept below ``t`` and
    ``255 - y`` from it; the identity in inference.  A number ``f`` means ``(0, f)``."""

    def __init__(self, addition_factor=0.0, threshold_factor=0.0, value_range=(0, 255),
                 seed=None, data_format=None, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.addition_factor = self._factor(addition_factor, "addition_factor")
        self.threshold_factor = self._factor(threshold_factor, "threshold_factor")
        self.value_range = _value_range(value_range)
        self._start(data_format, seed)
        self._finish_init()

    @staticmethod
    def _factor(value, name):
        if isinstance(value, (tuple, list)):
            if len(value) != 2:
                raise ValueError(f"Invalid value for argument `{name}`. Expected a number "
                                 f"or a list of two numbers in [0, 1]. Received "
                                 f"{name}={value!r}")
            for v in value:
                check_number(v, name, 0.0, 1.0)
            lower, upper = sorted(value)
            return lower, upper
        check_number(value, name, 0.0, 1.0)
        return 0, value

    def _draw(self, x):
        shape = (x.shape[0], 1, 1, 1)
        return {"additions": self._uniform(shape, self.addition_factor[0],
                                           self.addition_factor[1] * 255, x).to(x.dtype),
                "thresholds": self._uniform(shape, self.threshold_factor[0],
                                            self.threshold_factor[1] * 255, x).to(x.dtype)}

    def _transform(self, x, t):
        if t is None:
            return x
        y = _to_range(x, self.value_range, (0, 255))
        y = torch.clip(y + t["additions"].to(x.dtype), 0, 255)
        y = torch.where(y < t["thresholds"].to(x.dtype), y, 255 - y)
        return _to_range(y, (0, 255), self.value_range)

    def get_config(self):
        return _with(self.base_config(), value_range=self.value_range,
                     addition_factor=self.addition_factor,
                     threshold_factor=self.threshold_factor, seed=self.seed)


class RandomGrayscale(_Keras3Image):
    """Keras 3's ``RandomGrayscale`` (R keras3: ``layer_random_grayscale``): in training
    each image becomes grayscale (``0.2989 r + 0.587 g + 0.114 b`` on every channel) with
    probability ``factor``; 1- or 3-channel images; the identity in inference."""

    def __init__(self, factor=0.5, data_format=None, seed=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.factor = check_number(factor, "factor", 0.0, 1.0)
        self._factor_arg = factor
        self._start(data_format, seed)
        self._finish_init()

    def _draw(self, x):
        return {"should_apply": self._uniform((x.shape[0],), 0, 1, x) < self.factor}

    def _transform(self, x, t):
        if t is None:
            return x
        apply = t["should_apply"] if isinstance(t, dict) else t
        apply = apply.reshape(-1, 1, 1, 1).to(x.device)
        return torch.where(apply, _grayscale(x), x)

    def get_config(self):
        return _with(self.base_config(), factor=self._factor_arg)


class RandomInvert(_Keras3Image):
    """Keras 3's ``RandomInvert`` (R keras3: ``layer_random_invert``): in training each
    image becomes ``value_range[1] - x`` with probability ``p`` drawn uniformly in
    ``factor``'s range per image; the identity in inference."""

    def __init__(self, factor=1.0, value_range=(0, 255), seed=None, data_format=None,
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.factor = _keras_factor(factor, "factor", (0, 1))
        self.value_range = _value_range(value_range, sort=False)
        self._start(data_format, seed)
        self._finish_init()

    def _draw(self, x):
        n = x.shape[0]
        p = self._uniform((n,), *self.factor, x)
        return {"apply_inversion": self._uniform((n,), 0, 1, x) < p}

    def _transform(self, x, t):
        if t is None:
            return x
        apply = t["apply_inversion"].reshape(-1, 1, 1, 1).to(x.device)
        return torch.where(apply, self.value_range[1] - x, x)

    def get_config(self):
        return _with(self.base_config(), factor=self.factor, value_range=self.value_range,
                     seed=self.seed)


class RandomColorDegeneration(_Keras3Image):
    """Keras 3's ``RandomColorDegeneration`` (R keras3:
    ``layer_random_color_degeneration``): in training each RGB image moves towards its
    grayscale by ``f`` drawn per image in ``factor``'s range, ``x + f (gray - x)``,
    clipped to ``value_range``; the identity in inference."""

    def __init__(self, factor, value_range=(0, 255), data_format=None, seed=None,
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.factor = _keras_factor(factor, "factor", (-1, 1))
        self.value_range = _value_range(value_range)
        self._start(data_format, seed)
        self._finish_init()

    def _draw(self, x):
        return {"factor": self._uniform((x.shape[0], 1, 1, 1), *self.factor, x)}

    def _transform(self, x, t):
        if t is None:
            return x
        f = t["factor"].to(x.dtype).reshape(-1, 1, 1, 1)
        y = x + f * (_grayscale(x) - x)
        return torch.clip(y, self.value_range[0], self.value_range[1]).to(self.compute_dtype)

    def get_config(self):
        return _with(self.base_config(), factor=self.factor, value_range=self.value_range,
                     seed=self.seed)


class RandomPosterization(_Keras3Image):
    """Keras 3's ``RandomPosterization`` (R keras3: ``layer_random_posterization``): in
    training each image keeps ``b`` bits per channel (``b`` drawn per image among
    ``factor[0] .. factor[1] - 1``, Keras' ``randint``, or ``factor[0]`` where the two are
    equal; ``factor`` in [1, 8]), in ``(0, 255)`` terms cast to ``uint8``; the identity in
    inference."""

    def __init__(self, factor, value_range=(0, 255), data_format=None, seed=None,
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.factor = _keras_factor(factor, "factor", (1, 8))
        self.value_range = _value_range(value_range)
        self._start(data_format, seed)
        self._finish_init()

    def _draw(self, x):
        n = x.shape[0]
        lo, hi = int(self.factor[0]), int(self.factor[1])
        if lo != hi:
            bits = torch.randint(lo, hi, (n,), generator=self._generator(x.device),
                                 device=x.device)
        else:
            bits = torch.full((n,), lo, device=x.device)
        return {"shift_factor": (8 - bits).to(torch.uint8)}

    def _transform(self, x, t):
        if t is None:
            return x
        shift = t["shift_factor"].to(torch.uint8).reshape(-1, 1, 1, 1).to(x.device)
        y = _to_range(x, self.value_range, (0, 255)).to(torch.uint8)
        y = torch.bitwise_left_shift(torch.bitwise_right_shift(y, shift), shift)
        return _to_range(y.to(self.compute_dtype), (0, 255), self.value_range)

    def get_config(self):
        return _with(self.base_config(), factor=self.factor, value_range=self.value_range,
                     seed=self.seed)


class RandomSaturation(_Keras3Image):
    """Keras 3's ``RandomSaturation`` (R keras3: ``layer_random_saturation``): in training
    each RGB image's HSV saturation is multiplied by ``f / (1 - f + 1e-7)``, ``f`` drawn per
    image in ``factor``'s range, clipped to ``value_range`` (Keras' formula: the HSV of the
    raw values); the identity in inference."""

    def __init__(self, factor, value_range=(0, 255), data_format=None, seed=None,
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.factor = _keras_factor(factor, "factor", (-1, 1))
        self.value_range = _value_range(value_range)
        self._start(data_format, seed)
        self._finish_init()

    def _draw(self, x):
        f = self._uniform((x.shape[0],), *self.factor, x)
        return {"factor": f / (1 - f + _KERAS_EPSILON)}

    def _transform(self, x, t):
        if t is None:
            return x
        _check_rgb(x, self.name)
        f = t["factor"].to(x.dtype).reshape(-1, 1, 1).to(x.device)
        hsv = rgb_to_hsv(x)
        s = torch.clip(hsv[..., 1] * f, self.value_range[0], self.value_range[1])
        return hsv_to_rgb(torch.stack([hsv[..., 0], s, hsv[..., 2]], dim=-1))

    def get_config(self):
        return _with(self.base_config(), factor=self.factor, value_range=self.value_range,
                     seed=self.seed)


class RandomHue(_Keras3Image):
    """Keras 3's ``RandomHue`` (R keras3: ``layer_random_hue``): in training each RGB
    image's hue is shifted by ``±f / 2`` (``f`` drawn per image in ``factor``'s range, the
    sign with probability 1/2), in ``(0, 1)`` terms, wrapped, then clipped; the identity in
    inference."""

    def __init__(self, factor, value_range=(0, 255), data_format=None, seed=None,
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.factor = _keras_factor(factor, "factor", (0, 1))
        self.value_range = _value_range(value_range, sort=False)
        self._start(data_format, seed)
        self._finish_init()

    def _draw(self, x):
        n = x.shape[0]
        sign = torch.where(self._uniform((n,), 0, 1, x) > 0.5, -1.0, 1.0)
        return {"factor": sign * self._uniform((n,), *self.factor, x) * 0.5}

    def _transform(self, x, t):
        if t is None:
            return x
        _check_rgb(x, self.name)
        y = _to_range(x.to(torch.float32) if x.dtype != torch.float32 and
                      tuple(self.value_range) != (0, 1) else x, self.value_range, (0, 1))
        f = t["factor"].to(y.dtype).reshape(-1, 1, 1).to(x.device)
        hsv = rgb_to_hsv(y)
        h = hsv[..., 0] + f
        h = torch.where(h > 1.0, h - 1.0, h)
        h = torch.where(h < 0.0, h + 1.0, h)
        y = torch.clip(hsv_to_rgb(torch.stack([h, hsv[..., 1], hsv[..., 2]], dim=-1)), 0, 1)
        return _to_range(y, (0, 1), self.value_range).to(self.compute_dtype)

    def get_config(self):
        return _with(self.base_config(), factor=self.factor, value_range=self.value_range,
                     seed=self.seed)


class RandomSharpness(_Keras3Image):
    """Keras 3's ``RandomSharpness`` (R keras3: ``layer_random_sharpness``): in training
    each image moves away from its 3x3 smoothing (``[[1, 1, 1], [1, 5, 1], [1, 1, 1]] /
    13``, zero-padded "same") by ``1 - 2 f``, ``f`` drawn per image in ``factor``'s range,
    clipped to ``value_range``; the identity in inference."""

    def __init__(self, factor, value_range=(0, 255), data_format=None, seed=None,
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.factor = _keras_factor(factor, "factor", (0, 1))
        self.value_range = _value_range(value_range)
        self._start(data_format, seed)
        self._finish_init()

    def _draw(self, x):
        return {"factor": self._uniform((x.shape[0],), *self.factor, x)}

    def _transform(self, x, t):
        if t is None:
            return x
        s = (t["factor"].to(x.device) * 2).to(x.dtype).reshape(-1, 1, 1, 1)
        a, b = 1.0 / 13.0, 5.0 / 13.0
        k = torch.tensor([[a, a, a], [a, b, a], [a, a, a]], dtype=x.dtype, device=x.device)
        c = x.shape[-1]
        nchw = x.permute(0, 3, 1, 2)
        smooth = torch.nn.functional.conv2d(nchw, k.expand(c, 1, 3, 3), padding=1, groups=c)
        smooth = smooth.permute(0, 2, 3, 1)
        y = x + (1.0 - s) * (smooth - x)
        return torch.clip(y, self.value_range[0], self.value_range[1])

    def get_config(self):
        return _with(self.base_config(), factor=self.factor, value_range=self.value_range,
                     seed=self.seed)


def _symmetric_index(n: int, total: int) -> torch.Tensor:
    """Indices of numpy's ``pad(mode="symmetric")`` of a length-``n`` axis to ``total``
    (the padding after the end)."""
    i = torch.arange(total) % (2 * n)
    return torch.where(i < n, i, 2 * n - 1 - i)


class ContrastLimitedAdaptiveHistogramEqualization(_Keras3Image):
    """Keras 3's ``ContrastLimitedAdaptiveHistogramEqualization`` (CLAHE; R keras3:
    ``layer_contrast_limited_adaptive_histogram_equalization``), in training and inference
    alike, as Keras 3: the images (in ``(0, 255)`` terms) are cut into a
    ``tile_grid_size`` grid of tiles (padded at the bottom and right to whole tiles), each
    tile's 256-bin histogram of the truncated values clipped at ``clip_limit * tile pixels
    / 256`` with the excess spread evenly, its CDF mapped to [0, 255], and each pixel
    interpolated bilinearly between the four nearest tiles' mappings; the result is cast to
    the compute dtype.  sepconv computes what Keras' TensorFlow and JAX backends compute
    (R keras3's): float histograms, and numpy's ``"symmetric"`` padding.  Keras 3.15's
    torch backend departs twice: its ``one_hot`` histograms are int64, so the clip limit
    is truncated to an integer (below 1 every count is clipped to 0 and the mapping
    becomes the identity on the truncated values), and it pads by replicating the edge
    (images whose size is not a multiple of the grid).  Where neither applies (an integer
    clip limit, or 0; sizes multiples of the grid) the tests compare with that backend
    directly, and elsewhere with it patched to float histograms and symmetric padding."""

    _AT_INFERENCE = True

    def __init__(self, value_range=(0, 255), clip_limit=4.0, tile_grid_size=(8, 8),
                 data_format=None, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.value_range = _value_range(value_range, sort=False)
        self.clip_limit = check_number(clip_limit, "clip_limit")
        if not isinstance(tile_grid_size, (tuple, list)) or len(tile_grid_size) != 2:
            raise ValueError(f"Invalid value for argument `tile_grid_size`. Expected a tuple "
                             f"of 2 integers. Received tile_grid_size={tile_grid_size!r}")
        self.tile_grid_size = tuple(check_count(v, "tile_grid_size") for v in tile_grid_size)
        self._start(data_format)
        self._finish_init()

    def _transform(self, x, t):
        out_dtype = x.dtype
        images = _to_range(x.to(torch.float32), self.value_range, (0, 255))
        batch, height, width, channels = images.shape
        gh, gw = self.tile_grid_size
        th, tw = -(-height // gh), -(-width // gw)
        hp, wp = th * gh, tw * gw
        padded = images
        if hp != height or wp != width:
            padded = images.index_select(1, _symmetric_index(height, hp).to(x.device))
            padded = padded.index_select(2, _symmetric_index(width, wp).to(x.device))
        tiled = padded.reshape(batch, gh, th, gw, tw, channels).permute(0, 1, 3, 5, 2, 4)
        tiled = tiled.reshape(batch, gh, gw, channels, th * tw)
        ints = torch.clip(tiled.to(torch.int32), 0, 255).long()
        hists = torch.zeros(batch, gh, gw, channels, 256, dtype=torch.float32,
                            device=x.device)
        hists.scatter_add_(-1, ints, torch.ones_like(ints, dtype=torch.float32))
        if self.clip_limit > 0:
            limit = torch.tensor(self.clip_limit * (th * tw) / 256.0, dtype=torch.float32)
            clipped = torch.clip(hists, 0, limit)
            excess = torch.sum(hists - clipped, dim=-1, keepdim=True)
            hists = clipped + excess / 256.0
        cdf = torch.cumsum(hists, dim=-1)
        cdf_min = torch.amin(cdf, dim=-1, keepdim=True)
        num = (cdf - cdf_min) * 255.0
        den = torch.tensor(th * tw, dtype=cdf.dtype) - cdf_min
        den = torch.where(den == 0, torch.ones_like(den), den)
        cdf_norm = torch.clip(num / den, 0, 255)
        cdf_pad = torch.cat([cdf_norm[:, :1], cdf_norm, cdf_norm[:, -1:]], dim=1)
        cdf_pad = torch.cat([cdf_pad[:, :, :1], cdf_pad, cdf_pad[:, :, -1:]], dim=2)
        yg = (torch.arange(hp, dtype=torch.float32) - (th / 2.0)) / th + 1.0
        xg = (torch.arange(wp, dtype=torch.float32) - (tw / 2.0)) / tw + 1.0
        y0, x0 = torch.floor(yg), torch.floor(xg)
        wy, wx = yg - y0, xg - x0
        y1 = torch.clip(y0 + 1.0, 0, gh + 1).long()
        x1 = torch.clip(x0 + 1.0, 0, gw + 1).long()
        y0 = torch.clip(y0, 0, gh + 1).long()
        x0 = torch.clip(x0, 0, gw + 1).long()
        pixels = torch.clip(padded, 0, 255).to(torch.int32).long()  # (b, hp, wp, c)
        b_idx = torch.arange(batch).view(-1, 1, 1, 1)
        c_idx = torch.arange(channels).view(1, 1, 1, -1)

        def look(yi, xi):
            return cdf_pad[b_idx, yi.view(1, -1, 1, 1), xi.view(1, 1, -1, 1), c_idx, pixels]

        wy_e, wx_e = wy.view(1, -1, 1, 1).to(x.device), wx.view(1, 1, -1, 1).to(x.device)
        top = look(y0, x0) * (1.0 - wx_e) + look(y0, x1) * wx_e
        bottom = look(y1, x0) * (1.0 - wx_e) + look(y1, x1) * wx_e
        result = (top * (1.0 - wy_e) + bottom * wy_e)[:, :height, :width, :]
        result = _to_range(result, (0, 255), self.value_range)
        return result.to(out_dtype)

    def get_config(self):
        return _with(self.base_config(), value_range=self.value_range,
                     clip_limit=self.clip_limit, tile_grid_size=self.tile_grid_size)


class MaxNumBoundingBoxes(_Keras3Image):
    """Keras 3's ``MaxNumBoundingBoxes`` (R keras3: ``layer_max_num_bounding_boxes``):
    it pads or truncates bounding boxes, which sepconv's image layers do not carry; images
    pass through unchanged (cast to the compute dtype), in training and inference, as in
    Keras 3.  ``fill_value`` is not in Keras 3.15's config (nor in sepconv's)."""

    def __init__(self, max_number, fill_value=-1, data_format=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.max_number = check_count(max_number, "max_number")
        self.fill_value = int(check_number(fill_value, "fill_value"))
        self._start(data_format)
        self._finish_init()

    def _images(self, x, training):
        return x

    def get_config(self):
        return _with(self.base_config(), max_number=self.max_number)


# -- mixing, erasing, blurring ------------------------------------------------------------

class CutMix(_Keras3Image):
    """Keras 3's ``CutMix`` (R keras3: ``layer_cut_mix``): in training each image gets a
    box pasted from another image of the batch (a random permutation): ``alpha`` drawn in
    ``factor``'s range (plus 1e-6), a mixing weight ``w ~ Beta(alpha, alpha)`` per image,
    a box of ``sqrt(1 - w)`` of each side at a uniform position; the identity in
    inference and for an unbatched image, as Keras 3.  Images only (Keras' dict inputs,
    which also mix labels by the box's area, are not taken)."""

    _LAYOUT_KEYS = ("batch_masks",)

    def __init__(self, factor=1.0, seed=None, data_format=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.factor = _keras_factor(factor, "factor", (0, 1))
        self._start(data_format, seed)
        self._finish_init()

    def forward(self, inputs, training: Optional[bool] = None) -> torch.Tensor:
        if np.ndim(inputs) == 3:  # one image: nothing to mix with (Keras' None transform)
            return super().forward(inputs, training=False)
        return super().forward(inputs, training)

    def _draw(self, x):
        n = x.shape[0]
        alpha = float(self._uniform((), *self.factor, x)) + 1e-6
        w = self._beta(n, alpha, x).to(self.compute_dtype)
        ratio = torch.sqrt(1.0 - w)
        masks, (x0, x1, y0, y1) = self._box_masks(x, ratio, ratio)
        perm = torch.randperm(n, generator=self._generator(torch.device("cpu"))
                              if self.seed is not None else None).to(x.device)
        area = (x1 - x0) * (y1 - y0) / (x.shape[2] * x.shape[1])
        return {"permutation_order": perm, "batch_masks": masks, "mix_weight": 1.0 - area}

    def _transform(self, x, t):
        if t is None:
            return x
        perm = t["permutation_order"].long().to(x.device)
        return torch.where(t["batch_masks"].to(x.device), x.index_select(0, perm), x)

    def get_config(self):
        return _with(self.base_config(), factor=self.factor, seed=self.seed)


class MixUp(_Keras3Image):
    """Keras 3's ``MixUp`` (R keras3: ``layer_mix_up``): in training each image becomes
    ``w x + (1 - w) x[perm]``, ``w ~ Beta(alpha, alpha)`` per image, ``perm`` a random
    permutation of the batch; the identity in inference.  Images only (Keras' dict inputs,
    which also mix labels, are not taken)."""

    def __init__(self, alpha=0.2, data_format=None, seed=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.alpha = check_number(alpha, "alpha")
        if self.alpha <= 0:
            raise ValueError(f"Invalid value for argument `alpha`. Expected a positive "
                             f"number (the Beta distribution's). Received alpha={alpha}")
        self._start(data_format, seed)
        self._finish_init()

    def _draw(self, x):
        n = x.shape[0]
        perm = torch.randperm(n, generator=self._generator(torch.device("cpu"))
                              if self.seed is not None else None).to(x.device)
        return {"mix_weight": self._beta(n, self.alpha, x), "permutation_order": perm}

    def _transform(self, x, t):
        if t is None:
            return x
        w = t["mix_weight"].reshape(-1, 1, 1, 1).to(x.device, self.compute_dtype)
        other = x.index_select(0, t["permutation_order"].long().to(x.device))
        return w * x + (1.0 - w) * other

    def get_config(self):
        return _with(self.base_config(), alpha=self.alpha, seed=self.seed)


class RandomErasing(_Keras3Image):
    """Keras 3's ``RandomErasing`` (R keras3: ``layer_random_erasing``): in training each
    image, with probability ``p`` drawn in ``factor``'s range, gets a box (sides
    ``sqrt(s)`` of the image's, ``s`` drawn per side in ``scale``'s range, at a uniform
    position) filled with ``fill_value`` (a number or 3 numbers; ``None``: Gaussian noise
    times ``value_range[1]``), clipped to ``value_range``; the identity in inference."""

    _LAYOUT_KEYS = ("batch_masks", "fill_value")

    def __init__(self, factor=1.0, scale=(0.02, 0.33), fill_value=None,
                 value_range=(0, 255), seed=None, data_format=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.factor = _keras_factor(factor, "factor", (0, 1))
        self.scale = _keras_factor(scale, "scale", (0, 1))
        if isinstance(fill_value, (tuple, list)):
            if len(fill_value) != 3:
                raise ValueError(f"Invalid value for argument `fill_value`. Expected a "
                                 f"number or a list of three numbers. Received "
                                 f"fill_value={fill_value!r}")
            for v in fill_value:
                check_number(v, "fill_value")
        else:
            check_number(fill_value, "fill_value", allow_none=True)
        self.fill_value = fill_value
        self.value_range = _value_range(value_range, sort=False)
        self._start(data_format, seed)
        self._finish_init()

    def _draw(self, x):
        n = x.shape[0]
        w = torch.sqrt(self._uniform((n, 2), *self.scale, x).to(self.compute_dtype))
        masks, _ = self._box_masks(x, w[:, 0], w[:, 1])
        p = self._uniform((n,), *self.factor, x)
        apply = self._uniform((n,), 0, 1, x) < p
        if self.fill_value is None:
            fill = torch.randn(x.shape, generator=self._generator(x.device),
                               dtype=self.compute_dtype, device=x.device) * \
                self.value_range[1]
        else:
            fill = torch.ones(x.shape, dtype=self.compute_dtype, device=x.device) * \
                torch.as_tensor(self.fill_value, dtype=self.compute_dtype, device=x.device)
        fill = torch.clip(fill, self.value_range[0], self.value_range[1])
        return {"apply_erasing": apply, "batch_masks": masks, "fill_value": fill}

    def _transform(self, x, t):
        if t is None:
            return x
        erased = torch.where(t["batch_masks"].to(x.device),
                             t["fill_value"].to(x.device, x.dtype), x)
        return torch.where(t["apply_erasing"].reshape(-1, 1, 1, 1).to(x.device), erased, x)

    def get_config(self):
        return _with(self.base_config(), factor=self.factor, scale=self.scale,
                     fill_value=self.fill_value, value_range=self.value_range,
                     seed=self.seed)


class RandomGaussianBlur(_Keras3Image):
    """Keras 3's ``RandomGaussianBlur`` (R keras3: ``layer_random_gaussian_blur``): in
    training each image, with probability ``p`` drawn in ``factor``'s range, is blurred by
    a ``kernel_size`` Gaussian (one pair of sigmas per batch drawn in ``sigma``'s range,
    plus 1e-6: horizontal, vertical; zero-padded "same"), clipped to ``value_range``; the
    identity in inference.  Training takes square kernels only (Keras 3.15's torch backend
    reshapes a non-square kernel wrongly): others raise ``NotImplementedError``."""

    def __init__(self, factor=1.0, kernel_size=3, sigma=1.0, value_range=(0, 255),
                 data_format=None, seed=None, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.factor = _keras_factor(factor, "factor", (0, 1))
        sizes = kernel_size if isinstance(kernel_size, (tuple, list)) else \
            (kernel_size, kernel_size)
        if len(sizes) != 2 or any(check_count(k, "kernel_size") % 2 == 0 for k in sizes):
            raise ValueError(f"Invalid value for argument `kernel_size`. Expected an odd "
                             f"number or a pair of odd numbers. Received "
                             f"kernel_size={kernel_size!r}")
        self.kernel_size = tuple(int(k) for k in sizes)
        self.sigma = _keras_factor(sigma, "sigma", (0, 1))
        self.value_range = _value_range(value_range, sort=False)
        self._start(data_format, seed)
        self._finish_init()

    def _draw(self, x):
        n = x.shape[0]
        p = self._uniform((n,), *self.factor, x)
        apply = self._uniform((n,), 0, 1, x) < p
        sig = self._uniform((2,), *self.sigma, x).to(self.compute_dtype) + 1e-6
        return {"should_apply_blur": apply, "blur_factor": sig}

    def _transform(self, x, t):
        if t is None:
            return x
        k0, k1 = self.kernel_size
        if k0 != k1:
            raise NotImplementedError(f"Layer {self.name!r}: sepconv's RandomGaussianBlur "
                                      f"trains with square kernels only. Received "
                                      f"kernel_size={self.kernel_size}")
        sigma = t["blur_factor"].to(x.device, x.dtype)

        def kernel1d(size, s):
            r = torch.arange(size, dtype=x.dtype, device=x.device) - (size - 1) / 2
            k = torch.exp(-0.5 * (r / s) ** 2)
            return k / torch.sum(k)

        k = torch.outer(kernel1d(k1, sigma[1]), kernel1d(k0, sigma[0])).view(1, 1, k0, k1)
        c = x.shape[-1]
        blurred = torch.nn.functional.conv2d(x.permute(0, 3, 1, 2), k.expand(c, 1, k0, k1),
                                             padding=k0 // 2, groups=c).permute(0, 2, 3, 1)
        y = torch.where(t["should_apply_blur"].reshape(-1, 1, 1, 1).to(x.device), blurred, x)
        return torch.clip(y, self.value_range[0], self.value_range[1])

    def get_config(self):
        return _with(self.base_config(), factor=self.factor, kernel_size=self.kernel_size,
                     sigma=self.sigma, value_range=self.value_range, seed=self.seed)


class RandomColorJitter(_Keras3Image):
    """Keras 3's ``RandomColorJitter`` (R keras3: ``layer_random_color_jitter``): in
    training, in this order and each only where its factor is given, Keras 3's
    ``RandomBrightness(brightness_factor)``, ``RandomContrast(contrast_factor)`` (a number
    ``f`` means contrast in ``[1, 1 + f)``, Keras 3's; one draw per image, clipped to
    ``value_range``), ``RandomSaturation(saturation_factor)`` and
    ``RandomHue(hue_factor)``, all on ``value_range``, each drawing its own parameters (as
    Keras draws them inside its transform: a transformation dict does not fix them); the
    identity in inference.  Tested equal to Keras 3 with every factor collapsed to one
    value.  sepconv applies the four to channels_first images on their channel axis;
    Keras 3.15 builds its four sublayers channels_last whatever ``data_format`` says."""

    def __init__(self, value_range=(0, 255), brightness_factor=None, contrast_factor=None,
                 saturation_factor=None, hue_factor=None, seed=None, data_format=None,
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.value_range = _value_range(value_range, sort=False)
        self.brightness_factor = brightness_factor
        self.contrast_factor = contrast_factor
        self.saturation_factor = saturation_factor
        self.hue_factor = hue_factor
        self._start(data_format, seed)
        from .augmentation import RandomBrightness, RandomContrast
        from .. import activations as _activations
        policy = self.dtype_policy.name
        parts = []
        if brightness_factor is not None:
            parts.append(RandomBrightness(brightness_factor, value_range=value_range,
                                          seed=seed, dtype=policy))
        if contrast_factor is not None:
            contrast = _keras_factor(contrast_factor, "contrast_factor", (0, 1))
            with _activations.keras_flavour("keras3"):
                parts.append(RandomContrast.from_config(dict(
                    factor=list(contrast), value_range=list(value_range), seed=seed,
                    dtype=policy)))
        if saturation_factor is not None:
            parts.append(RandomSaturation(saturation_factor, value_range=value_range,
                                          seed=seed, dtype=policy))
        if hue_factor is not None:
            parts.append(RandomHue(hue_factor, value_range=value_range, seed=seed,
                                   dtype=policy))
        self.jitters = torch.nn.ModuleList(parts)
        self._finish_init()

    def _draw(self, x):
        return {}

    def _transform(self, x, t):
        if t is None:
            return x
        for layer in self.jitters:
            x = layer._images(x, True) if hasattr(layer, "_draw") else layer._augment(x)
        return x.to(self.compute_dtype)

    def get_config(self):
        return _with(self.base_config(), value_range=self.value_range,
                     brightness_factor=self.brightness_factor,
                     contrast_factor=self.contrast_factor,
                     saturation_factor=self.saturation_factor,
                     hue_factor=self.hue_factor, seed=self.seed)


# -- the layers whose training transform sepconv does not implement -------------------------

class _InferenceOnly(_Keras3Image):
    _TRAINING = False


_INTERPOLATIONS = ("nearest", "bilinear")
_FILL_MODES = ("reflect", "wrap", "constant", "nearest")


def _choice(value, name, allowed):
    if not isinstance(value, str):
        raise TypeError(f"Invalid type for argument `{name}`. Expected a string. Received "
                        f"{name}={value!r}")
    if value not in allowed:
        raise ValueError(f"Invalid value for argument `{name}`. Expected one of "
                         f"{', '.join(sorted(allowed))}. Received {name}={value!r}")
    return value


class RandomElasticTransform(_InferenceOnly):
    """Keras 3's ``RandomElasticTransform`` (R keras3:
    ``layer_random_elastic_transform``): the identity in inference, as Keras 3; training
    raises ``NotImplementedError`` (not implemented in sepconv)."""

    def __init__(self, factor=1.0, scale=1.0, interpolation="bilinear",
                 fill_mode="reflect", fill_value=0.0, value_range=(0, 255), seed=None,
                 data_format=None, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.factor = _keras_factor(factor, "factor", (0, 1))
        self.scale = _keras_factor(scale, "scale", (0, 1))
        self.interpolation = _choice(interpolation, "interpolation", _INTERPOLATIONS)
        self.fill_mode = _choice(fill_mode, "fill_mode", _FILL_MODES + ("mirror",))
        self.fill_value = check_number(fill_value, "fill_value")
        self.value_range = _value_range(value_range, sort=False)
        self._start(data_format, seed)
        self._finish_init()

    def get_config(self):
        return _with(self.base_config(), factor=self.factor, scale=self.scale,
                     interpolation=self.interpolation, fill_mode=self.fill_mode,
                     fill_value=self.fill_value, value_range=self.value_range,
                     seed=self.seed)


def homography(start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """Keras 3's ``compute_homography_matrix``: the ``(batch, 8)`` projective transforms
    mapping each of ``end``'s four points ``(batch, 4, 2)`` onto ``start``'s (solved in
    float32 or wider, as Keras solves)."""
    dtype = start.dtype
    solve_dtype = torch.promote_types(dtype, torch.float32)
    rows = []
    for k in range(4):
        sx, sy = start[:, k, 0], start[:, k, 1]
        ex, ey = end[:, k, 0], end[:, k, 1]
        one, zero = torch.ones_like(ex), torch.zeros_like(ex)
        rows.append(torch.stack([ex, ey, one, zero, zero, zero, -sx * ex, -sx * ey], -1))
        rows.append(torch.stack([zero, zero, zero, ex, ey, one, -sy * ex, -sy * ey], -1))
    a = torch.stack(rows, dim=1).to(solve_dtype)
    b = start.reshape(start.shape[0], 8, 1).to(solve_dtype)
    return torch.linalg.solve(a, b).reshape(-1, 8).to(dtype)


class RandomPerspective(_Keras3Image):
    """Keras 3's ``RandomPerspective`` (R keras3: ``layer_random_perspective``): in
    training each image, with probability ``p`` drawn in ``factor``'s range, is warped by
    the homography moving its corners by ``corner * u``, ``u`` drawn per corner and axis in
    ``[-scale / 2, scale / 2)``, sampled with ``interpolation`` and ``fill_value`` outside
    (:func:`sepconv.functional.image_transform`, ``"constant"``); the identity in
    inference."""

    def __init__(self, factor=1.0, scale=1.0, interpolation="bilinear", fill_value=0.0,
                 seed=None, data_format=None, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.factor = _keras_factor(factor, "factor", (0, 1))
        self.scale = check_number(scale, "scale", 0.0, 1.0)
        self._scale_arg = scale
        self.interpolation = _choice(interpolation, "interpolation", _INTERPOLATIONS)
        self.fill_value = check_number(fill_value, "fill_value")
        self._start(data_format, seed)
        self._finish_init()

    def _draw(self, x):
        n, rows, cols = x.shape[0], x.shape[1], x.shape[2]
        p = self._uniform((n,), *self.factor, x)
        apply = self._uniform((n,), 0, 1, x) < p
        f = self._uniform((n, 4, 2), -0.5 * self.scale, 0.5 * self.scale, x).to(
            self.compute_dtype)
        start = torch.tensor([[[0.0, 0.0], [cols - 1, 0.0], [0.0, rows - 1],
                               [cols - 1, rows - 1]]], dtype=self.compute_dtype,
                             device=x.device).repeat(n, 1, 1)
        return {"apply_perspective": apply, "start_points": start,
                "end_points": start + start * f}

    def _transform(self, x, t):
        if t is None:
            return x
        from .. import functional as _functional
        dt = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        matrices = homography(t["start_points"].to(x.device, dt),
                              t["end_points"].to(x.device, dt))
        warped = _functional.image_transform(x, matrices.to(torch.float32), "constant",
                                             self.interpolation, self.fill_value)
        return torch.where(t["apply_perspective"].reshape(-1, 1, 1, 1).to(x.device),
                           warped, x)

    def get_config(self):
        return _with(self.base_config(), factor=self.factor, scale=self._scale_arg,
                     interpolation=self.interpolation, fill_value=self.fill_value,
                     seed=self.seed)


class RandomShear(_Keras3Image):
    """Keras 3's ``RandomShear`` (R keras3: ``layer_random_shear``): in training each
    image is sheared, ``x_in = x + s_x y``, ``y_in = s_y x + y`` (``s_x``, ``s_y`` drawn
    per image in ``x_factor``'s / ``y_factor``'s range, both negated with probability
    1/2), sampled with ``interpolation`` and ``fill_mode`` / ``fill_value`` through
    :func:`sepconv.functional.image_transform` (TensorFlow's ``ImageProjectiveTransformV3``,
    what Keras 3's TensorFlow backend runs); the identity in inference.  Equal to Keras
    3.15's torch backend for every ``fill_mode`` but ``"wrap"``, where that backend wraps
    otherwise than TensorFlow.  A number ``f`` means ``(-|f|, |f|)`` (Keras 3.15 then
    cannot read back its own config: it refuses the negative bound; sepconv reads it)."""

    def __init__(self, x_factor=0.0, y_factor=0.0, interpolation="bilinear",
                 fill_mode="reflect", fill_value=0.0, data_format=None, seed=None,
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.x_factor = _keras_factor(x_factor, "x_factor", (-1, 1))
        self.y_factor = _keras_factor(y_factor, "y_factor", (-1, 1))
        self.interpolation = _choice(interpolation, "interpolation", _INTERPOLATIONS)
        self.fill_mode = _choice(fill_mode, "fill_mode", _FILL_MODES)
        self.fill_value = check_number(fill_value, "fill_value")
        self._start(data_format, seed)
        self._finish_init()

    def _draw(self, x):
        n = x.shape[0]
        invert = torch.where(self._uniform((n, 1), 0, 1, x) > 0.5, -1.0, 1.0)
        sy = self._uniform((n, 1), *self.y_factor, x)
        sx = self._uniform((n, 1), *self.x_factor, x)
        return {"shear_factor": torch.cat([sx, sy], dim=1) * invert}

    def _transform(self, x, t):
        if t is None:
            return x
        from .. import functional as _functional
        sf = t["shear_factor"].to(torch.float32).reshape(-1, 2)
        one, zero = torch.ones(sf.shape[0]), torch.zeros(sf.shape[0])
        matrices = torch.stack([one, sf[:, 0], zero, sf[:, 1], one, zero, zero, zero], 1)
        return _functional.image_transform(x, matrices.to(x.device), self.fill_mode,
                                           self.interpolation, self.fill_value)

    def get_config(self):
        return _with(self.base_config(), x_factor=self.x_factor, y_factor=self.y_factor,
                     fill_mode=self.fill_mode, interpolation=self.interpolation,
                     seed=self.seed, fill_value=self.fill_value)


def affine_matrix(angle, translate_x, translate_y, scale, shear_x, shear_y, height: int,
                  width: int, center_x: float = 0.5, center_y: float = 0.5) -> torch.Tensor:
    """Keras 3's ``BaseImagePreprocessingLayer._compute_affine_matrix`` (angles and
    shears in degrees, about the point ``(center_x, center_y)`` of the image): ``(batch,
    8)`` transforms for :func:`sepconv.functional.image_transform`."""
    rad = torch.tensor(np.pi / 180.0, dtype=torch.float32)
    angle, shear_x, shear_y = angle * rad, shear_x * rad, shear_y * rad
    dt = angle.dtype
    cx = center_x * (torch.tensor(width, dtype=dt) - 1)
    cy = center_y * (torch.tensor(height, dtype=dt) - 1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    shear_x, shear_y = torch.tan(shear_x), torch.tan(shear_y)
    a0 = scale * (cos + shear_x * sin)
    a1 = scale * (-sin + shear_x * cos)
    a2 = translate_x + cx - cx * a0 - cy * a1
    b0 = scale * (shear_y * cos + sin)
    b1 = scale * (shear_y * -sin + cos)
    b2 = translate_y + cy - cx * b0 - cy * b1
    zeros = torch.zeros(angle.shape[0], 2, dtype=dt, device=angle.device)
    return torch.cat([a0[:, None], a1[:, None], a2[:, None], b0[:, None], b1[:, None],
                      b2[:, None], zeros], dim=1)


def _as_tensors(value):
    """A Keras transformation (nested dicts of tensors / arrays) as torch tensors."""
    if isinstance(value, dict):
        return {k: _as_tensors(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_as_tensors(v) for v in value]
    if value is None or isinstance(value, (int, float, str, torch.Size)):
        return value
    return value if torch.is_tensor(value) else torch.as_tensor(np.asarray(value))


class _AugmentOps(_Keras3Image):
    """RandAugment's and AugMix's augmentations at Keras 3's strength ``factor``: shear
    (``x_factor = y_factor = factor``), translation (``factor`` of the height and width),
    rotation (``factor`` turns), posterization (``max(1, int(8 * factor[1]))`` bits),
    solarization, auto-contrast, equalization, brightness, colour degeneration, contrast,
    sharpness, all on ``value_range``; the geometric ones sample with
    ``fill_mode="reflect"``, as Keras'."""

    def _build_ops(self, value_range, seed) -> None:
        f, vr, policy = self.factor, list(value_range), self.dtype_policy.name
        fmt = self.data_format  # (AutoContrast's channels_first axes, as Keras')
        sub = dict(seed=seed, dtype=policy, data_format=fmt)
        self.ops = torch.nn.ModuleDict({
            "random_shear": RandomShear(x_factor=f, y_factor=f,
                                        interpolation=self.interpolation, **sub),
            "random_color_degeneration": RandomColorDegeneration(f, value_range=vr, **sub),
            "random_sharpness": RandomSharpness(f, value_range=vr, **sub),
            "random_posterization": RandomPosterization(max(1, int(8 * f[1])),
                                                        value_range=vr, **sub),
            "solarization": Solarization(f, f, value_range=vr, **sub),
            "auto_contrast": AutoContrast(value_range=vr, dtype=policy, data_format=fmt),
            "equalization": Equalization(value_range=vr, dtype=policy, data_format=fmt)})

    def _draw_op(self, name: str, x) -> Optional[Dict[str, Any]]:
        """One augmentation's transformation, Keras 3's distributions."""
        if name in self.ops:
            return self.ops[name]._draw(x)
        n, rows, cols = x.shape[0], x.shape[1], x.shape[2]
        lo, hi = self.factor
        if name == "random_translation":
            th = self._uniform((n, 1), lo, hi, x) * rows
            tw = self._uniform((n, 1), lo, hi, x) * cols
            return {"translations": torch.cat([tw, th], 1)}
        if name == "random_rotation":
            angle = self._uniform((n,), lo * 360.0, hi * 360.0, x)
            zeros, ones = torch.zeros(n), torch.ones(n)
            return {"rotation_matrix": affine_matrix(angle, zeros, zeros, ones, zeros,
                                                     zeros, rows, cols)}
        if name == "random_brightness":
            low, high = self.value_range
            return {"rgb_delta": self._uniform((n, 1, 1, 1), lo, hi, x) * (high - low)}
        return {"contrast_factor": self._uniform(  # random_contrast
            (n, 1, 1, 1), 1.0 - lo, 1.0 + hi, x).to(self.compute_dtype)}

    def transform_images(self, images, transformation=None) -> torch.Tensor:
        """Keras 3's ``transform_images(images, transformation, training=True)`` given
        its nested transformation dict."""
        x = self._nhwc(images)
        y = self._transform(x, None if transformation is None else
                            _as_tensors(transformation))
        y = y.movedim(-1, 1) if self._channels_first else y
        return y.squeeze(0) if np.ndim(images) == 3 else y

    def _op(self, name, x, t):
        from .. import functional as _functional
        if name in self.ops:
            return self.ops[name]._transform(x, {} if t is None else t)
        if name == "random_translation":
            tr = t["translations"].to(torch.float32).reshape(-1, 2)
            one, zero = torch.ones(tr.shape[0]), torch.zeros(tr.shape[0])
            m = torch.stack([one, zero, -tr[:, 0], zero, one, -tr[:, 1], zero, zero], 1)
            return _functional.image_transform(x, m.to(x.device), "reflect",
                                               self.interpolation, 0.0)
        if name == "random_rotation":
            m = t["rotation_matrix"].to(torch.float32).reshape(-1, 8)
            return _functional.image_transform(x, m.to(x.device), "reflect",
                                               self.interpolation, 0.0)
        low, high = self.value_range
        if name == "random_brightness":
            return torch.clip(x + t["rgb_delta"].to(x.device, x.dtype), low, high)
        c = t["contrast_factor"].to(x.device, x.dtype)  # random_contrast
        mean = x.mean(dim=1, keepdim=True).mean(dim=2, keepdim=True)
        return torch.clip((x - mean) * c + mean, low, high)


class RandAugment(_AugmentOps):
    """Keras 3's ``RandAugment`` (R keras3: ``layer_rand_augment``): in training,
    ``num_ops`` times, one of eleven augmentations drawn uniformly (the same for the whole
    batch), each at Keras 3's strength ``factor`` (see ``_AugmentOps``: shear,
    translation, rotation, brightness, colour degeneration, contrast, sharpness,
    posterization, solarization, auto-contrast, equalization); the identity in inference.
    ``transform_images(images, transformation)`` given Keras' nested transformation dict is
    Keras 3.15's numbers on its torch backend patched where that backend mutates its
    inputs (its ``RandomBrightness`` adds in place and its ``affine_transform`` swaps
    entries of the given matrix in place, so Keras' torch RandAugment brightens images
    whatever op was chosen and rotates by a swapped matrix every other op; TensorFlow's
    tensors are immutable)."""

    _OPS = ("random_shear", "random_translation", "random_rotation", "random_brightness",
            "random_color_degeneration", "random_contrast", "random_sharpness",
            "random_posterization", "solarization", "auto_contrast", "equalization")

    def __init__(self, value_range=(0, 255), num_ops=2, factor=0.5,
                 interpolation="bilinear", seed=None, data_format=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.value_range = _value_range(value_range, sort=False)
        self.num_ops = check_count(num_ops, "num_ops", minimum=0)
        self.factor = _keras_factor(factor, "factor", (0, 1))
        self.interpolation = _choice(interpolation, "interpolation", _INTERPOLATIONS)
        self._start(data_format, seed)
        self._build_ops(value_range, seed)
        self._finish_init()

    def _draw(self, x):
        gen = self._generator(torch.device("cpu")) if self.seed is not None else None
        idx = torch.randint(0, len(self._OPS), (self.num_ops,), generator=gen)
        return {"transforms": {name: self._draw_op(name, x) for name in self._OPS},
                "layer_idxes": idx}

    def _transform(self, x, t):
        if t is None:
            return x
        idx = [int(i) for i in torch.as_tensor(t["layer_idxes"]).reshape(-1)]
        for i in idx[:self.num_ops]:
            name = self._OPS[i]
            x = self._op(name, x, t["transforms"].get(name))
        return x.to(self.compute_dtype)

    def get_config(self):
        return _with(self.base_config(), value_range=self.value_range,
                     num_ops=self.num_ops, factor=self.factor,
                     interpolation=self.interpolation, seed=self.seed)


class AugMix(_AugmentOps):
    """Keras 3's ``AugMix`` (R keras3: ``layer_aug_mix``): in training, ``num_chains``
    chains of up to ``chain_depth`` augmentations (each step one of seven, or of eleven
    with ``all_ops``, or none, drawn uniformly; the same for the whole batch; Keras 3's
    strengths, see ``_AugmentOps``) are applied to copies of the images, mixed with
    Dirichlet(``alpha``) weights, and mixed with the images by ``w ~ Beta(alpha, alpha)``:
    ``w x + (1 - w) sum_k m_k chain_k(x)``, clipped to ``value_range``; the identity in
    inference.  ``transform_images(images, transformation)`` given Keras' transformation
    dict (its ``chain_transforms`` list of ``{"layer_name", "transformation"}``) is Keras
    3.15's numbers."""

    _OPS_FEW = ("random_shear", "random_translation", "random_rotation",
                "random_posterization", "solarization", "auto_contrast", "equalization")
    _OPS_ALL = _OPS_FEW + ("random_brightness", "random_color_degeneration",
                           "random_contrast", "random_sharpness")

    def __init__(self, value_range=(0, 255), num_chains=3, chain_depth=3, factor=0.3,
                 alpha=1.0, all_ops=True, interpolation="bilinear", seed=None,
                 data_format=None, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.value_range = _value_range(value_range, sort=False)
        self.num_chains = check_count(num_chains, "num_chains")
        self.chain_depth = check_count(chain_depth, "chain_depth")
        self.factor = _keras_factor(factor, "factor", (0, 1))
        self.alpha = check_number(alpha, "alpha", 0.0)
        if self.alpha <= 0:
            raise ValueError(f"Invalid value for argument `alpha`. Expected a positive "
                             f"number. Received alpha={alpha}")
        self.all_ops = check_bool(all_ops, "all_ops")
        self.interpolation = _choice(interpolation, "interpolation", _INTERPOLATIONS)
        self._start(data_format, seed)
        self._build_ops(value_range, seed)
        self._finish_init()

    def _draw(self, x):
        names = self._OPS_ALL if self.all_ops else self._OPS_FEW
        gen = self._generator(torch.device("cpu")) if self.seed is not None else None
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=gen))
        rng = np.random.default_rng(seed)
        gamma = rng.gamma(self.alpha, size=self.num_chains)
        chains = []
        for _ in range(self.num_chains):
            steps = []
            for _ in range(self.chain_depth):
                k = int(torch.randint(0, len(names) + 1, (1,), generator=gen))
                if k < len(names):
                    steps.append({"layer_name": names[k],
                                  "transformation": self._draw_op(names[k], x)})
            chains.append(steps)
        return {"chain_mixing_weights": torch.as_tensor(gamma / gamma.sum(),
                                                        dtype=torch.float32),
                "weight_sample": torch.tensor(rng.beta(self.alpha, self.alpha),
                                              dtype=torch.float32),
                "chain_transforms": chains}

    def _transform(self, x, t):
        if t is None:
            return x
        weights = torch.as_tensor(t["chain_mixing_weights"]).to(x.device, x.dtype)
        w = torch.as_tensor(t["weight_sample"]).to(x.device, x.dtype)
        mixed = torch.zeros_like(x)
        for k, chain in enumerate(t["chain_transforms"]):
            y = x.clone()
            for step in chain:
                y = self._op(step["layer_name"], y, step["transformation"])
            mixed += y * weights[k]
        out = w * x + (1 - w) * mixed
        return torch.clip(out, self.value_range[0], self.value_range[1])

    def get_config(self):
        return _with(self.base_config(), value_range=self.value_range,
                     num_chains=self.num_chains, chain_depth=self.chain_depth,
                     factor=self.factor, alpha=self.alpha, all_ops=self.all_ops,
                     interpolation=self.interpolation, seed=self.seed)


# -- Pipeline ------------------------------------------------------------------------------

class Pipeline(Layer):
    """Keras 3's ``Pipeline`` (R keras3: ``layer_pipeline``): its ``layers`` (sepconv
    layers, or Keras config dicts) applied in order, each with the same ``training``
    (``None``: each layer's module mode; ``eval()`` / ``train()`` reach them all).  Its
    weights are its layers', in order.  Keras 3's signature is ``(layers, name=None)``;
    sepconv's adds the common arguments."""

    KERAS3_ONLY = True

    def __init__(self, layers, input_shape=None, batch_input_shape=None, batch_size=None,
                 dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=None)
        if not isinstance(layers, (list, tuple)):
            raise ValueError(f"Invalid value for argument `layers`. Expected a list of "
                             f"layers. Received layers={layers!r}")
        built = [self._layer(v) for v in layers]
        self.pipeline_layers = torch.nn.ModuleList(built)
        self.built = True
        if weights is not None:
            self.set_weights(weights)

    @staticmethod
    def _layer(value):
        if isinstance(value, dict):
            from ..interop.models import build_layer
            from .. import activations as _activations
            flavour = _activations.current_flavour() or "keras3"
            return build_layer(value, flavour)
        layer = layer_from_config(value, "layers")
        if not isinstance(layer, torch.nn.Module):
            raise ValueError(f"Invalid value for argument `layers`. Expected layers (or "
                             f"their config dicts). Received {value!r}")
        return layer

    @property
    def layers(self) -> List[torch.nn.Module]:
        return list(self.pipeline_layers)

    def build(self, input_shape, device=None) -> None:
        pass

    @property
    def weights(self):
        return [w for layer in self.pipeline_layers for w in getattr(layer, "weights", [])]

    def get_weights(self):
        return [w for layer in self.pipeline_layers
                for w in (layer.get_weights() if hasattr(layer, "get_weights") else [])]

    def set_weights(self, weights) -> None:
        weights = list(weights)
        for layer in self.pipeline_layers:
            n = len(layer.get_weights()) if hasattr(layer, "get_weights") else 0
            if n:
                layer.set_weights(weights[:n])
                weights = weights[n:]
        if weights:
            raise ValueError(f"Layer {self.name!r} received {len(weights)} weights too many")

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.pipeline_layers:
            shape = tuple(layer.compute_output_shape(shape))
        return shape

    def forward(self, inputs, training: Optional[bool] = None):
        x = inputs
        import inspect
        for layer in self.pipeline_layers:
            takes = "training" in inspect.signature(layer.forward).parameters
            x = layer(x, training=training) if (training is not None and takes) else layer(x)
        return x

    def get_config(self) -> Dict[str, Any]:
        return {"layers": [{"class_name": type(layer).__name__, "config": layer.get_config()}
                           for layer in self.pipeline_layers], "name": self.name}

    def keras3_config(self, config: Dict[str, Any]) -> Dict[str, Any]:
        """For ``save_keras_model``'s Keras 3 writer: each layer's full Keras 3 entry, as
        Keras 3's ``Pipeline`` serializes them."""
        from ..interop.models import _keras3_entry
        return {**config, "layers": [_keras3_entry(layer) for layer in self.pipeline_layers]}

    def extra_repr(self) -> str:
        return f"name={self.name!r}"
