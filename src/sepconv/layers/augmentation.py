"""Keras' image preprocessing and augmentation layers (tf-keras 2.21, Keras 3.15).

Images are ``(batch, rows, cols, channels)`` or one ``(rows, cols, channels)``
(channels_last, as tf-keras' layers take them; a layer built from a Keras 3 config with
``data_format="channels_first"`` takes ``(batch, channels, rows, cols)`` / ``(channels,
rows, cols)``, computing what the channels_last layer computes on the moved axes, as Keras
3 does).  ``CenterCrop`` computes the same in training
and inference.  The random layers draw only in ``train()`` mode (a torch module's
``training`` flag stands for Keras' ``training`` argument; a model file loads in
``eval()``): in ``eval()`` they are the identity (``RandomCrop`` excepted, see there), which
is what ``model.predict`` computes in both Kerases.  (Called directly, outside a model and
with no ``training`` argument, both Kerases' layers augment; sepconv's follow the module's
mode, or a ``training=True`` / ``False`` argument as Keras' do.)

The random draws are torch's (``seed``: a ``torch.Generator`` of that seed per device, so a
seeded layer repeats its sequence; unseeded: torch's global generator).  The distributions
and the transforms are Keras', but the streams are not TensorFlow's: equal random outputs
to tf-keras' are not a goal.  The geometric layers sample through
:func:`sepconv.functional.image_transform`, TensorFlow's ``ImageProjectiveTransformV3``
(tested equal, bit for bit, for every ``fill_mode`` and ``interpolation``).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from .. import activations as _activations
from .. import functional as _functional
from ..kernels import memory as _memory
from ..kernels import threads as _threads
from .base import check_count
from .core import _Random, _Weightless, check_number
from .reshaping import check_resize_method

_FILL_MODES = _functional.FILL_MODES
_INTERPOLATIONS = _functional.TRANSFORM_INTERPOLATIONS


def _check_choice(value: Any, name: str, allowed: Sequence[str]) -> str:
    """A string among ``allowed`` (any case), lower-cased."""
    if not isinstance(value, str):
        raise TypeError(f"Invalid type for argument `{name}`. Expected a string. "
                        f"Received {name}={value!r}")
    if value.lower() not in allowed:
        raise ValueError(f"Invalid value for argument `{name}`. Expected one of "
                         f"{', '.join(allowed)}. Received {name}={value!r}")
    return value.lower()


def _bounds(value: Any, name: str, symmetric: bool = True) -> Tuple[float, float]:
    """tf-keras' factor arguments: a number ``f`` -> ``(-f, f)`` (``(f, f)`` where not
    ``symmetric``), a pair -> ``(lower, upper)``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"Invalid value for argument `{name}`. Expected a number or a "
                             f"pair of numbers. Received {name}={value!r}")
        return check_number(value[0], name), check_number(value[1], name)
    f = check_number(value, name)
    return (-f, f) if symmetric else (f, f)


def _factor_config(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _uniform(shape, low: float, high: float, generator, device) -> torch.Tensor:
    """float32 draws in ``[low, high)`` (TensorFlow's ``random_uniform``)."""
    u = torch.rand(shape, dtype=torch.float32, generator=generator, device=device)
    return u * float(np.float32(high) - np.float32(low)) + float(np.float32(low))


#: Augmentations of fewer elements run on one thread, without the thread policy's
#: measurements: their few elementwise passes gain tens of microseconds from a second
#: thread on idle cores, and on busy ones each two-thread pass can wait a scheduler slice
#: (8x64x64x3 RandomContrast on the loaded 2-core machine: 90-125 ms a call on two
#: threads, 0.1 ms on one; the policy, which learns per call, had half a bench run slow).
_ONE_THREAD_BELOW = 2 ** 18


class _Image(_Weightless):
    """Images of rank 4 or 3, channels_last; Keras 3 configs' ``data_format`` read."""

    #: A Keras 3 config's ``data_format="channels_first"``: the channels axis is moved
    #: last for the computation and back (tf-keras' layers have no such argument).
    _channels_first = False

    def __init__(self, **common):
        super().__init__(**common)
        #: Built from a Keras 3 config (a Keras 3 file): inference follows Keras 3 where
        #: the two Kerases differ.
        self._keras3_file = _activations.current_flavour() == "keras3"

    @classmethod
    def from_config(cls, config: Dict[str, Any]):
        """tf-keras' and Keras 3's configs (Keras 3's ``data_format`` too)."""
        config = dict(config)
        fmt = config.pop("data_format", None)
        if fmt not in (None, "channels_last", "channels_first"):
            raise ValueError(f"Invalid value for argument `data_format`. Expected "
                             f"'channels_last' or 'channels_first'. Received "
                             f"data_format={fmt!r}")
        layer = super().from_config(config)
        layer._channels_first = fmt == "channels_first"
        return layer

    def base_config(self) -> Dict[str, Any]:
        config = super().base_config()
        if self._channels_first:
            config["data_format"] = "channels_first"
        return config

    def check_tf_keras_file(self) -> None:
        """For ``save_keras_model``'s .h5 writer: tf-keras' layer takes channels_last
        images only."""
        if self._channels_first:
            raise ValueError(f"save_keras_model: layer {self.name!r} "
                             f"({type(self).__name__}) takes channels_first images (a Keras "
                             f"3 config's data_format); tf-keras' layer has no data_format; "
                             f"save as .keras")

    def _check_input(self, shape) -> None:
        if len(shape) not in (3, 4):
            raise ValueError(f"Layer {self.name!r} expects images of rank 4, (batch, rows, "
                             f"cols, channels), or 3. Received input of shape {shape}")

    def compute_output_shape(self, input_shape) -> Tuple[Optional[int], ...]:
        self._check_input(tuple(input_shape))
        return tuple(input_shape)

    def forward(self, inputs, training: Optional[bool] = None) -> torch.Tensor:
        """``inputs``: images, any real dtype (cast to the compute dtype first).
        ``training``: Keras' argument, ``None`` for the module's mode (``train()`` /
        ``eval()``)."""
        x = self._prepare_input(inputs)
        training = self.training if training is None else bool(training)
        if self._channels_first and x.dim() in (3, 4):
            x = x.movedim(-3, -1)
        unbatched = x.dim() == 3
        y = self._images(x.unsqueeze(0) if unbatched else x, training)
        y = y.squeeze(0) if unbatched else y
        return y.movedim(-1, -3) if self._channels_first else y

    def call(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def _images(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        """``x``: ``(batch, rows, cols, channels)`` in the compute dtype."""
        return self._augment_on_policy(x) if training else x

    def _augment_on_policy(self, x: torch.Tensor) -> torch.Tensor:
        """``_augment`` on CPU on the thread count the library's thread policy picks
        (``kernels/threads.py``: one thread while the cores are busy, measured per call;
        on the loaded 2-core machine two-thread calls waited up to 125 ms for their
        second thread), with freed memory kept for the next call (``kernels/memory.py``: no page
        faults on each call's fresh image-sized tensors); below
        :data:`_ONE_THREAD_BELOW` elements on one thread."""
        if x.device.type != "cpu":
            return self._augment(x)
        _memory.keep_freed_memory()
        threads = torch.get_num_threads()
        if x.numel() < _ONE_THREAD_BELOW and threads > 1 \
                and not torch.compiler.is_compiling():
            torch.set_num_threads(1)
            try:
                return self._augment(x)
            finally:
                torch.set_num_threads(threads)
        return _threads.run("augment-" + type(self).__name__, x.numel(),
                            lambda: self._augment(x), tuple(x.shape))

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class _RandomImage(_Image, _Random):
    """A random augmentation: ``seed`` checked, draws from ``_generator``."""

    def _seed(self, seed) -> None:
        self.seed = None if seed is None else check_count(seed, "seed", minimum=0)

    def _rand(self, shape, low: float, high: float, x: torch.Tensor) -> torch.Tensor:
        return _uniform(shape, low, high, self._generator(x.device), x.device)


# -- crops -------------------------------------------------------------------------------

class _Crop(_Image):
    def _sizes(self, height, width) -> None:
        self.height = check_count(height, "height")
        self.width = check_count(width, "width")

    def compute_output_shape(self, input_shape) -> Tuple[Optional[int], ...]:
        shape = list(input_shape)
        self._check_input(tuple(shape))
        if self._channels_first:
            shape[-2:] = [self.height, self.width]
        else:
            shape[-3:-1] = [self.height, self.width]
        return tuple(shape)

    def _center_or_resize(self, x: torch.Tensor) -> torch.Tensor:
        """tf-keras' ``CenterCrop``: the centred ``height x width`` window (start
        ``(rows - height) // 2``) where the image is at least that large on both axes,
        else ``smart_resize`` (the centred window of the target's aspect ratio, resized
        bilinearly)."""
        rows, cols = int(x.shape[1]), int(x.shape[2])
        if rows >= self.height and cols >= self.width:
            return x[:, (rows - self.height) // 2:(rows - self.height) // 2 + self.height,
                     (cols - self.width) // 2:(cols - self.width) // 2 + self.width]
        return self._smart_resize(x)

    def _smart_resize(self, x: torch.Tensor) -> torch.Tensor:
        """tf-keras' ``smart_resize`` (window sizes in float32; none for an empty window,
        where TensorFlow fails too), or Keras 3's for a layer from a Keras 3 file (in
        float64, at least one pixel)."""
        if not self._keras3_file:
            y = _functional.resize(x, (self.height, self.width), "bilinear", True)
            return y.to(self.compute_dtype)
        rows, cols = int(x.shape[1]), int(x.shape[2])
        crop_h = max(min(rows, int(float(cols * self.height) / self.width)), 1)
        crop_w = max(min(cols, int(float(rows * self.width) / self.height)), 1)
        top, left = int(float(rows - crop_h) / 2), int(float(cols - crop_w) / 2)
        x = x[:, top:top + crop_h, left:left + crop_w]
        return _functional.resize(x, (self.height, self.width), "bilinear").to(
            self.compute_dtype)


class CenterCrop(_Crop):
    """Keras' ``CenterCrop`` (R: ``layer_center_crop``): the central ``(height, width)``
    window of each image, ``(batch, rows, cols, channels)`` -> ``(batch, height, width,
    channels)`` (or unbatched), in training and inference alike.  The window starts at
    ``(rows - height) // 2``, ``(cols - width) // 2``.  An image smaller than the target
    on either axis is instead resized as both Kerases do (``smart_resize``: the largest
    centred window of the target's aspect ratio, resized bilinearly to ``(height,
    width)``; see :func:`sepconv.functional.resize`): where that window is empty
    tf-keras fails (sepconv raises), Keras 3 keeps one pixel (a layer from a Keras 3 file
    does the same).  Integer images are cast to the compute dtype first."""

    def __init__(self, height, width, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self._sizes(height, width)
        self._finish_init()

    def _images(self, x, training):
        return self._center_or_resize(x)

    def get_config(self) -> Dict[str, Any]:
        return {**self.base_config(), "height": self.height, "width": self.width}


class RandomCrop(_Crop, _RandomImage):
    """Keras' ``RandomCrop`` (R: ``layer_random_crop``): in training, one random
    ``(height, width)`` window (the same for the whole batch, as tf-keras draws it) of
    images at least that large; smaller images are resized as ``CenterCrop`` resizes them.

    In inference the two Kerases differ, and each file gets its own: tf-keras (and R keras)
    always ``smart_resize`` to ``(height, width)`` (the centred window of the target's
    aspect ratio, resized bilinearly, even for larger images); Keras 3 returns the images
    unchanged (its ``predict`` output keeps the input size, whatever its
    ``compute_output_shape`` says).  A layer built from a Keras 3 config (a Keras 3 file)
    does the latter, any other the former.  In training, a layer from a Keras 3 file crops
    as tf-keras does (Keras 3 resizes a partial window of images not larger than the
    target)."""

    def __init__(self, height, width, seed=None, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self._sizes(height, width)
        self._seed(seed)
        self._finish_init()

    def _images(self, x, training):
        if training:
            return self._augment_on_policy(x)
        return x if self._keras3_file else self._smart_resize(x)

    def _augment(self, x):
        rows, cols = int(x.shape[1]), int(x.shape[2])
        if rows < self.height or cols < self.width:
            return self._smart_resize(x)
        gen = self._generator(x.device)
        top = int(torch.randint(0, rows - self.height + 1, (), generator=gen,
                                device=x.device))
        left = int(torch.randint(0, cols - self.width + 1, (), generator=gen,
                                 device=x.device))
        return x[:, top:top + self.height, left:left + self.width]

    def get_config(self) -> Dict[str, Any]:
        return {**self.base_config(), "height": self.height, "width": self.width,
                "seed": self.seed}

    def keras3_config(self, config: Dict[str, Any]) -> Dict[str, Any]:
        """For ``save_keras_model``'s Keras 3 writer: refused unless the layer came from
        a Keras 3 file (Keras 3 would pass images through where this one resizes)."""
        if not self._keras3_file:
            raise ValueError(f"save_keras_model: layer {self.name!r} (RandomCrop) resizes "
                             f"images at inference as tf-keras does; Keras 3's passes them "
                             f"through, so a .keras file would predict other numbers; save "
                             f"as .h5")
        return config

    def check_tf_keras_file(self) -> None:
        """For ``save_keras_model``'s .h5 writer: refused for a layer from a Keras 3
        file (tf-keras would resize images this one passes through)."""
        super().check_tf_keras_file()
        if self._keras3_file:
            raise ValueError(f"save_keras_model: layer {self.name!r} (RandomCrop) came from "
                             f"a Keras 3 file and passes images through at inference; "
                             f"tf-keras' resizes them, so an .h5 file would predict other "
                             f"numbers; save as .keras")


class _RandomSize(_RandomImage):
    """tf-keras' ``RandomHeight`` / ``RandomWidth``: in training, one factor for the batch
    drawn uniformly in ``[1 + lower, 1 + upper)``, the axis' new length
    ``int(factor * length)`` (float32, at least 1: TensorFlow fails on 0), the images
    resized with ``interpolation`` (:func:`sepconv.functional.resize`, TensorFlow's
    weights, ``area`` included); the identity in inference."""

    TF_KERAS_ONLY = True  # Keras 3 has no RandomHeight / RandomWidth
    AXIS = 1

    def __init__(self, factor, interpolation, seed, common):
        super().__init__(**common)
        self.factor = _factor_config(factor)
        self.lower, self.upper = _bounds(factor, "factor")
        if self.upper < self.lower:
            raise ValueError(f"Invalid value for argument `factor`. Expected an upper "
                             f"bound no less than the lower bound. Received factor={factor}")
        if self.lower < -1.0 or self.upper < -1.0:
            raise ValueError(f"Invalid value for argument `factor`. Expected values larger "
                             f"than -1. Received factor={factor}")
        self.interpolation = check_resize_method(interpolation)
        self._seed(seed)
        self._finish_init()

    def _augment(self, x):
        factor = self._rand((), 1.0 + self.lower, 1.0 + self.upper, x)
        size = [int(x.shape[1]), int(x.shape[2])]
        length = size[self.AXIS - 1]
        size[self.AXIS - 1] = max(int(np.float32(factor.item()) * np.float32(length)), 1)
        return _functional.resize(x, size, self.interpolation).to(self.compute_dtype)

    def compute_output_shape(self, input_shape) -> Tuple[Optional[int], ...]:
        shape = list(super().compute_output_shape(input_shape))
        shape[-4 + self.AXIS] = None  # tf-keras' (the length is drawn in training)
        return tuple(shape)

    def get_config(self) -> Dict[str, Any]:
        return {**self.base_config(), "factor": self.factor,
                "interpolation": self.interpolation, "seed": self.seed}


def _common(values: Dict[str, Any]) -> Dict[str, Any]:
    return {k: values[k] for k in ("input_shape", "batch_input_shape", "batch_size", "dtype",
                                   "name", "trainable", "weights")}


class RandomHeight(_RandomSize):
    """tf-keras' ``RandomHeight`` (R: ``layer_random_height``): in training the images'
    height scaled by a random factor (see the base class); inference: the identity.
    ``factor``: ``f`` for ``[-f, f]`` or ``(lower, upper)``, each > -1."""

    AXIS = 1

    def __init__(self, factor, interpolation="bilinear", seed=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(factor, interpolation, seed, _common(locals()))


class RandomWidth(_RandomSize):
    """tf-keras' ``RandomWidth`` (R: ``layer_random_width``): in training the images'
    width scaled by a random factor (see ``RandomHeight``); inference: the identity."""

    AXIS = 2

    def __init__(self, factor, interpolation="bilinear", seed=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(factor, interpolation, seed, _common(locals()))


# -- flips, geometric transforms, colour ----------------------------------------------------

_FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")


class RandomFlip(_RandomImage):
    """Keras' ``RandomFlip`` (R: ``layer_random_flip``): in training each image is
    flipped left-right (``mode`` ``"horizontal"``), top-bottom (``"vertical"``) or each
    independently (``"horizontal_and_vertical"``, the default), each flip with
    probability 1/2, drawn per image; the identity in inference."""

    def __init__(self, mode="horizontal_and_vertical", seed=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.mode = _check_choice(mode, "mode", _FLIP_MODES)
        self._seed(seed)
        self._finish_init()

    def _augment(self, x):
        # one draw per image and axis, horizontal first (as the flips were once applied
        # one axis at a time); then the images of each combination of flips copied once
        # into one new tensor (a torch.where per axis made four image-sized tensors)
        code = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
        for bit, on in ((1, self.mode != "vertical"), (2, self.mode != "horizontal")):
            if on:
                code += bit * (self._rand((x.shape[0], 1, 1, 1), 0.0, 1.0, x) < 0.5).view(-1)
        out = None
        for k, dims in enumerate(((), (2,), (1,), (1, 2))):
            index = (code == k).nonzero().view(-1)
            if index.numel() == x.shape[0]:  # one combination for the whole batch
                return x.flip(dims) if dims else x.clone()
            if index.numel():
                out = torch.empty_like(x) if out is None else out
                part = x.index_select(0, index)
                out.index_copy_(0, index, part.flip(dims) if dims else part)
        return out

    def get_config(self) -> Dict[str, Any]:
        return {**self.base_config(), "mode": self.mode, "seed": self.seed}


class _Transform(_RandomImage):
    """The layers that resample through :func:`sepconv.functional.image_transform`, one
    random transform per image: ``fill_mode`` (``reflect``, ``wrap``, ``constant``,
    ``nearest``), ``interpolation`` (``bilinear``, ``nearest``), ``fill_value`` (for
    ``constant``)."""

    def _sampling(self, fill_mode, interpolation, seed, fill_value) -> None:
        self.fill_mode = _check_choice(fill_mode, "fill_mode", _FILL_MODES)
        self.interpolation = _check_choice(interpolation, "interpolation", _INTERPOLATIONS)
        self.fill_value = check_number(fill_value, "fill_value")
        self._seed(seed)

    def _augment(self, x):
        matrices = self._matrices(x).to(x.device)
        return _functional.image_transform(x, matrices, self.fill_mode, self.interpolation,
                                           self.fill_value)

    def _matrices(self, x) -> torch.Tensor:
        raise NotImplementedError

    def _sampling_config(self) -> Dict[str, Any]:
        return {"fill_mode": self.fill_mode, "fill_value": self.fill_value,
                "interpolation": self.interpolation, "seed": self.seed}


class RandomRotation(_Transform):
    """Keras' ``RandomRotation`` (R: ``layer_random_rotation``): in training each image is
    rotated about its centre by an angle drawn uniformly in ``[lower * 2 pi, upper * 2
    pi)`` (``factor``: ``f`` for ``[-f, f]`` or ``(lower, upper)``; positive:
    counter-clockwise), tf-keras' ``get_rotation_matrix``; the identity in inference."""

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, input_shape=None, batch_input_shape=None, batch_size=None,
                 dtype=None, name=None, trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.factor = _factor_config(factor)
        self.lower, self.upper = _bounds(factor, "factor")
        if self.upper < self.lower:
            raise ValueError(f"Invalid value for argument `factor`. Expected an upper "
                             f"bound no less than the lower bound. Received factor={factor}")
        self._sampling(fill_mode, interpolation, seed, fill_value)
        self._finish_init()

    def _matrices(self, x):
        angles = self._rand((x.shape[0],), self.lower * 2.0 * math.pi,
                            self.upper * 2.0 * math.pi, x)
        return _functional.rotation_matrix(angles, int(x.shape[1]), int(x.shape[2]))

    def get_config(self) -> Dict[str, Any]:
        return {**self.base_config(), "factor": self.factor, **self._sampling_config()}


def _check_unit(lower: float, upper: float, value: Any, name: str) -> None:
    if upper < lower:
        raise ValueError(f"Invalid value for argument `{name}`. Expected an upper bound no "
                         f"less than the lower bound. Received {name}={value}")
    if abs(lower) > 1.0 or abs(upper) > 1.0:
        raise ValueError(f"Invalid value for argument `{name}`. Expected values between "
                         f"[-1, 1]. Received {name}={value}")


class RandomTranslation(_Transform):
    """Keras' ``RandomTranslation`` (R: ``layer_random_translation``): in training each
    image is shifted by fractions drawn uniformly in ``height_factor``'s and
    ``width_factor``'s ranges (``f`` for ``[-f, f]`` or ``(lower, upper)``, within [-1, 1];
    positive: down / right) of its height and width; the identity in inference."""

    def __init__(self, height_factor, width_factor, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.height_factor = _factor_config(height_factor)
        self.height_lower, self.height_upper = _bounds(height_factor, "height_factor")
        _check_unit(self.height_lower, self.height_upper, height_factor, "height_factor")
        self.width_factor = _factor_config(width_factor)
        self.width_lower, self.width_upper = _bounds(width_factor, "width_factor")
        _check_unit(self.width_lower, self.width_upper, width_factor, "width_factor")
        self._sampling(fill_mode, interpolation, seed, fill_value)
        self._finish_init()

    def _matrices(self, x):
        n = x.shape[0]
        dy = self._rand((n,), self.height_lower, self.height_upper, x) * float(x.shape[1])
        dx = self._rand((n,), self.width_lower, self.width_upper, x) * float(x.shape[2])
        return _functional.translation_matrix(torch.stack([dx, dy], dim=1))

    def get_config(self) -> Dict[str, Any]:
        return {**self.base_config(), "height_factor": self.height_factor,
                "width_factor": self.width_factor, **self._sampling_config()}


class RandomZoom(_Transform):
    """Keras' ``RandomZoom`` (R: ``layer_random_zoom``): in training each image is zoomed
    about its centre by ``1 + z``, ``z`` drawn uniformly in ``height_factor``'s range
    vertically (``f`` for ``[-f, f]`` or ``(lower, upper)``, within [-1, 1]; positive:
    zoom out) and in ``width_factor``'s horizontally (``None``: the vertical draw, keeping
    the aspect ratio), tf-keras' ``get_zoom_matrix``; the identity in inference."""

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.height_factor = _factor_config(height_factor)
        self.height_lower, self.height_upper = _bounds(height_factor, "height_factor")
        if abs(self.height_lower) > 1.0 or abs(self.height_upper) > 1.0:
            raise ValueError(f"Invalid value for argument `height_factor`. Expected values "
                             f"between [-1, 1]. Received height_factor={height_factor}")
        self.width_factor = _factor_config(width_factor)
        if width_factor is not None:
            self.width_lower, self.width_upper = _bounds(width_factor, "width_factor")
            if self.width_lower < -1.0 or self.width_upper < -1.0:
                raise ValueError(f"Invalid value for argument `width_factor`. Expected "
                                 f"values larger than -1. Received width_factor="
                                 f"{width_factor}")
        self._sampling(fill_mode, interpolation, seed, fill_value)
        self._finish_init()

    def _matrices(self, x):
        n = x.shape[0]
        zy = self._rand((n,), 1.0 + self.height_lower, 1.0 + self.height_upper, x)
        zx = zy if self.width_factor is None else \
            self._rand((n,), 1.0 + self.width_lower, 1.0 + self.width_upper, x)
        return _functional.zoom_matrix(torch.stack([zx, zy], dim=1), int(x.shape[1]),
                                       int(x.shape[2]))

    def get_config(self) -> Dict[str, Any]:
        return {**self.base_config(), "height_factor": self.height_factor,
                "width_factor": self.width_factor, **self._sampling_config()}


def _value_range(value: Any) -> list:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"Invalid value for argument `value_range`. Expected a list of two "
                         f"numbers. Received value_range={value!r}")
    for v in value:
        check_number(v, "value_range")
    return sorted(value)


class RandomContrast(_RandomImage):
    """Keras' ``RandomContrast`` (R: ``layer_random_contrast``): in training each
    channel's pixels move away from (or towards) the channel's mean over the image,
    ``(x - mean) * c + mean``, ``c`` drawn uniformly in ``[1 - lower, 1 + upper)``
    (``factor``: ``f`` for ``lower = upper = f`` or ``(lower, upper)``, ``lower`` in
    [0, 1]), then clipped to [0, 255]; the identity in inference.  tf-keras draws one
    ``c`` for the batch, Keras 3 one per image and clips to its ``value_range`` (read from
    its configs): a layer from a Keras 3 file does the same.  (Keras 3 stores a number
    ``f`` as ``factor = (0, f)``, contrast in ``[1, 1 + f)`` only; its files say so and
    load with that range.)"""

    def __init__(self, factor, seed=None, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        super().__init__(**_common(locals()))
        self.factor = _factor_config(factor)
        self.lower, self.upper = _bounds(factor, "factor", symmetric=False)
        if self.lower < 0.0 or self.upper < 0.0 or self.lower > 1.0:
            raise ValueError(f"Invalid value for argument `factor`. Expected values in "
                             f"[0, 1] (the upper bound may exceed 1). Received "
                             f"factor={factor}")
        self.value_range = [0, 255]
        self._seed(seed)
        self._finish_init()

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "RandomContrast":
        """Also Keras 3's ``value_range``."""
        config = dict(config)
        value_range = _value_range(config.pop("value_range", [0, 255]))
        layer = super().from_config(config)
        layer.value_range = value_range
        return layer

    def _augment(self, x):
        shape = (x.shape[0], 1, 1, 1) if self._keras3_file else (1, 1, 1, 1)
        c = self._rand(shape, 1.0 - self.lower, 1.0 + self.upper, x).to(x.dtype)
        batch, rows, cols, channels = x.shape
        # ((x - mean) * c + mean).clamp(...), the same numbers (the gradient through the
        # mean sums in another order: equal to rounding): in place on the one new tensor,
        # over (batch, rows, cols * channels) rows against the mean repeated along a row
        # (broadcast over (batch, 1, 1, channels), the loops ran `channels` elements
        # long: twice the time)
        mean = x.mean(dim=(1, 2), keepdim=True).expand(batch, 1, cols, channels)
        mean = mean.reshape(batch, 1, cols * channels)
        y = x.reshape(batch, rows, cols * channels) - mean
        y = y.mul_(c.view(-1, 1, 1)).add_(mean).clamp_(*self.value_range)
        return y.view(batch, rows, cols, channels)

    def get_config(self) -> Dict[str, Any]:
        config = {**self.base_config(), "factor": self.factor, "seed": self.seed}
        if self.value_range != [0, 255]:  # Keras 3's (tf-keras has none)
            config["value_range"] = list(self.value_range)
        return config

    def keras3_config(self, config: Dict[str, Any]) -> Dict[str, Any]:
        """For ``save_keras_model``'s Keras 3 writer: ``factor`` as ``[lower, upper]``
        (Keras 3 reads a number ``f`` as ``(0, f)``); Keras 3 sorts the pair, so a lower
        bound above the upper one changes the training range (a warning says so)."""
        if self.lower > self.upper:
            import warnings
            warnings.warn(f"save_keras_model: layer {self.name!r} (RandomContrast) has "
                          f"factor={self.factor}; Keras 3 sorts the pair and will draw "
                          f"contrast in [{1 - self.upper}, {1 + self.lower}) in training",
                          stacklevel=3)
        return {**config, "factor": [self.lower, self.upper],
                "value_range": list(self.value_range)}

    def check_tf_keras_file(self) -> None:
        """For the .h5 writer: tf-keras' layer clips to [0, 255] and has no
        ``value_range``."""
        super().check_tf_keras_file()
        if self.value_range != [0, 255]:
            raise ValueError(f"save_keras_model: layer {self.name!r} (RandomContrast) clips "
                             f"to value_range={self.value_range} (Keras 3's); tf-keras' "
                             f"layer clips to [0, 255]; save as .keras")


class RandomBrightness(_RandomImage):
    """Keras' ``RandomBrightness`` (R: ``layer_random_brightness``): in training each
    image gets ``delta * (high - low)`` added, ``delta`` drawn uniformly in ``factor``'s
    range (``f`` for ``[-f, f]`` or a pair, within [-1, 1]), then clipped to
    ``value_range = (low, high)`` (default ``(0, 255)``); the identity in inference.
    The config holds the sorted ``[lower, upper]`` factor and range, as tf-keras'."""

    def __init__(self, factor, value_range=(0, 255), seed=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(**_common(locals()))
        if isinstance(factor, (tuple, list)):
            if len(factor) != 2:
                raise ValueError(f"Invalid value for argument `factor`. Expected a number "
                                 f"or a list of two numbers in [-1, 1]. Received "
                                 f"factor={factor!r}")
            bounds = sorted(check_number(f, "factor", -1.0, 1.0) for f in factor)
        else:
            f = abs(check_number(factor, "factor", -1.0, 1.0))
            bounds = [-f, f]
        self.factor = bounds
        self.value_range = _value_range(value_range)
        self._seed(seed)
        self._finish_init()

    def _augment(self, x):
        low, high = self.value_range
        delta = self._rand((x.shape[0], 1, 1, 1), *self.factor, x) * float(high - low)
        return (x + delta.to(x.dtype)).clamp_(low, high)  # in place: one allocation

    def get_config(self) -> Dict[str, Any]:
        return {**self.base_config(), "factor": list(self.factor),
                "value_range": list(self.value_range), "seed": self.seed}
