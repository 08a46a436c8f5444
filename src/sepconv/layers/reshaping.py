"""Cropping, zero padding and upsampling: Keras' ``Cropping1D/2D/3D``,
``ZeroPadding1D/2D/3D`` and ``UpSampling1D/2D/3D`` (R: ``layer_cropping_1d``, ...,
``layer_upsampling_3d``).

These layers have no weights (``get_weights() == []``).  Each one checks its arguments at
construction, the rank of its input at every call (naming the expected layout), and
computes through :mod:`sepconv.functional` (``crop``, ``zero_pad``, ``upsample``).

Where tf-keras 2.21 silently returns an empty tensor or truncates, these layers raise
``ValueError`` instead: cropping that leaves nothing of an axis (tf-keras' Cropping3D
returns an empty tensor), negative cropping or padding (tf-keras' Cropping2D/3D and
ZeroPadding2D/3D accept a negative int), and sizes that are not whole numbers
(tf-keras truncates ``UpSampling1D(size=2.7)`` to 2 and ``UpSampling2D(size=(2.7, 2))``
to ``(2, 2)``).  Whole-number floats (R's doubles, ``2.0``) are accepted everywhere.
"""

from __future__ import annotations

import numbers
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from .. import functional as _functional
from .base import Layer, check_count, check_data_format

_ORDINALS = ("1st", "2nd", "3rd")


def _is_sequence(value: Any) -> bool:
    return isinstance(value, (tuple, list)) or (isinstance(value, np.ndarray) and value.ndim)


def _amount(value: Any, name: str, received: Any) -> int:
    """A whole number >= 0 (``2.0`` passes, ``2.5`` and ``-1`` do not)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"Invalid type for argument `{name}`. Expected whole numbers. "
                        f"Received {name}={received!r}")
    if not float(value).is_integer() or value < 0:
        raise ValueError(f"Invalid value for argument `{name}`. Expected whole numbers >= 0. "
                         f"Received {name}={received!r}")
    return int(value)


def _pairs(value: Any, rank: int, name: str) -> Tuple[Tuple[int, int], ...]:
    """tf-keras' forms: an int (every end of every axis); for rank 1 a (begin, end) pair;
    for rank 2/3 ``rank`` entries, each an int (both ends) or a (begin, end) pair."""
    if not _is_sequence(value):
        n = _amount(value, name, value)
        return ((n, n),) * rank
    received, value = value, list(value)
    if rank == 1:
        if len(value) != 2:
            raise ValueError(f"Invalid value for argument `{name}`. Expected an int or a "
                             f"tuple of 2 ints (begin, end). Received {name}={received!r}")
        return ((_amount(value[0], name, received), _amount(value[1], name, received)),)
    if len(value) != rank:
        raise ValueError(f"Invalid value for argument `{name}`. Expected an int, a tuple of "
                         f"{rank} ints (one per axis, both ends) or a tuple of {rank} tuples "
                         f"of 2 ints ((begin, end) per axis). Received {name}={received!r}")
    pairs = []
    for i, entry in enumerate(value):
        if _is_sequence(entry):
            entry = list(entry)
            if len(entry) != 2:
                raise ValueError(f"Invalid value for argument `{name}`. Its {_ORDINALS[i]} "
                                 f"entry must be an int or a tuple of 2 ints (begin, end). "
                                 f"Received {name}={received!r}")
            pairs.append((_amount(entry[0], name, received),
                          _amount(entry[1], name, received)))
        else:
            n = _amount(entry, name, received)
            pairs.append((n, n))
    return tuple(pairs)


def _factors(value: Any, rank: int) -> Tuple[int, ...]:
    """``size``: an int or ``rank`` whole numbers >= 1; never truncated."""
    if _is_sequence(value):
        if len(value) != rank:
            raise ValueError(f"Invalid value for argument `size`. Expected an int or a tuple "
                             f"of {rank} ints. Received size={value!r}")
        return tuple(check_count(v, "size") for v in list(value))
    return (check_count(value, "size"),) * rank



def check_resize_method(interpolation) -> str:
    """``tf.image.resize``'s method name, lower-cased; Keras' errors otherwise."""
    if not isinstance(interpolation, str):
        raise TypeError(f"Invalid type for argument `interpolation`. Expected a string. "
                        f"Received interpolation={interpolation!r}")
    method = interpolation.lower()
    if method not in _functional.RESIZE_METHODS:
        raise ValueError(f"Invalid value for argument `interpolation`. Expected one of "
                         f"{', '.join(_functional.RESIZE_METHODS)}. Received "
                         f"interpolation={interpolation!r}")
    return method


class _Reshaping(Layer):
    """Shared protocol of the weightless reshaping layers of spatial rank ``RANK``."""

    RANK = 1

    def _setup(self, data_format: Any) -> None:
        self.data_format = check_data_format(data_format)
        if self.batch_input_shape is not None:
            given = "batch_input_shape" if self._given_batch_shape else "input_shape"
            shape = self.batch_input_shape
            if len(shape) != self.RANK + 2:
                raise ValueError(f"Invalid value for argument `{given}`. Expected "
                                 f"{self._layout()} for layer {self.name!r}. Received "
                                 f"{given}={shape if self._given_batch_shape else shape[1:]}")
            self._spatial_output(shape, given)
        self._finish_init()

    def _layout(self) -> str:
        return _functional._layout_nd(self.RANK, self.data_format == "channels_last")

    @property
    def _first_spatial(self) -> int:
        return 1 if self.data_format == "channels_last" else 2

    def _spatial_output(self, shape, argument: Optional[str] = None) -> list:
        """The output's spatial sizes (``None`` stays ``None``); ``ValueError`` when an axis
        would end up empty."""
        first = self._first_spatial
        out = []
        for i in range(self.RANK):
            n = shape[first + i]
            out.append(None if n is None else self._output_length(n, i, shape, argument))
        return out

    def _output_length(self, n: int, axis: int, shape, argument) -> int:
        raise NotImplementedError

    def _check_rank(self, shape) -> None:
        if len(shape) != self.RANK + 2:
            raise ValueError(f"Layer {self.name!r} expects input of rank {self.RANK + 2}, "
                             f"{self._layout()}. Received input of shape {tuple(shape)}")

    def compute_output_shape(self, input_shape) -> Tuple[Optional[int], ...]:
        """``(batch, *spatial, channels)`` -> the same with each spatial size changed
        (channels_first alike); unknown sizes (``None``) stay unknown."""
        shape = tuple(input_shape)
        self._check_rank(shape)
        out = list(shape)
        out[self._first_spatial:self._first_spatial + self.RANK] = self._spatial_output(shape)
        return tuple(out)

    def build(self, input_shape, device=None) -> None:
        self._check_rank(input_shape)

    def _check_input(self, shape) -> None:
        self._check_rank(shape)
        self._spatial_output(shape)

    def set_weights(self, weights) -> None:
        """These layers have no weights: only ``[]`` is accepted."""
        weights = list(weights)
        if weights:
            raise ValueError(f"Layer {self.name!r} expects 0 weights, but received "
                             f"{len(weights)} weights")

    def _config(self, **entries) -> Dict[str, Any]:
        config = self.base_config()
        config.update(entries)
        if self.RANK > 1:
            config["data_format"] = self.data_format
        return config

    def _repr_tail(self) -> str:
        parts = []
        if self.RANK > 1 and self.data_format != "channels_last":
            parts.append(f"data_format={self.data_format!r}")
        if self.dtype_policy.name != "float32":
            parts.append(f"dtype={self.dtype_policy.name!r}")
        parts.append(f"name={self.name!r}")
        return ", ".join(parts)


def _common(kwargs_holder: Dict[str, Any]) -> Dict[str, Any]:
    return {k: kwargs_holder[k] for k in ("input_shape", "batch_input_shape", "batch_size",
                                          "dtype", "name", "trainable", "weights")}


# -- cropping ---------------------------------------------------------------------------

class _Cropping(_Reshaping):
    def __init__(self, cropping, data_format, common):
        super().__init__(**common)
        self._given_batch_shape = common["batch_input_shape"] is not None
        self._pairs = _pairs(cropping, self.RANK, "cropping")
        self.cropping = self._pairs[0] if self.RANK == 1 else self._pairs
        self._setup(data_format)

    def _output_length(self, n, axis, shape, argument):
        out = n - sum(self._pairs[axis])
        if out <= 0:
            where = f"`{argument}`" if argument else "input"
            raise ValueError(f"Invalid value for argument `cropping`: cropping="
                             f"{self.cropping} leaves nothing of {where} of shape "
                             f"{tuple(shape)} {self._layout()} (layer {self.name!r})")
        return out

    def forward(self, inputs) -> torch.Tensor:
        """``inputs``: ``(batch, *spatial, channels)`` or ``(batch, channels, *spatial)``."""
        x = self._prepare_input(inputs)
        return _functional.crop(x, self._pairs, self.data_format)

    def get_config(self) -> Dict[str, Any]:
        return self._config(cropping=self.cropping)

    def extra_repr(self) -> str:
        return f"cropping={self.cropping}, " + self._repr_tail()


class Cropping1D(_Cropping):
    """Keras' ``Cropping1D``: removes ``cropping = (begin, end)`` steps.

    Input ``(batch, steps, channels)`` -> ``(batch, steps - begin - end, channels)``.
    ``cropping``: an int (both ends) or a pair; whole numbers >= 0.  Cropping that leaves
    no step is a ``ValueError`` (tf-keras too, when the length is known).
    """

    RANK = 1

    def __init__(self, cropping=(1, 1), input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        super().__init__(cropping, None, _common(locals()))


class Cropping2D(_Cropping):
    """Keras' ``Cropping2D``: removes rows and columns at the edges of images.

    Input ``(batch, rows, cols, channels)`` (``data_format="channels_last"``, the default)
    or ``(batch, channels, rows, cols)``; output the same with ``rows - top - bottom`` and
    ``cols - left - right``.  ``cropping``: an int (all four edges), a pair of ints
    ``(rows, cols)`` (both ends each) or ``((top, bottom), (left, right))``; whole numbers
    >= 0 (tf-keras accepts a negative int; sepconv raises).  Cropping that leaves nothing is
    a ``ValueError``.
    """

    RANK = 2

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(cropping, data_format, _common(locals()))


class Cropping3D(_Cropping):
    """Keras' ``Cropping3D``: removes elements at the edges of volumes.

    Input ``(batch, dim1, dim2, dim3, channels)`` (channels_last) or
    ``(batch, channels, dim1, dim2, dim3)``.  ``cropping``: an int, 3 ints (both ends of
    each axis) or 3 ``(begin, end)`` pairs; whole numbers >= 0.  Cropping that leaves
    nothing is a ``ValueError`` (tf-keras' Cropping3D silently returns an empty tensor).
    """

    RANK = 3

    def __init__(self, cropping=((1, 1), (1, 1), (1, 1)), data_format=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(cropping, data_format, _common(locals()))


# -- zero padding -----------------------------------------------------------------------

class _ZeroPadding(_Reshaping):
    def __init__(self, padding, data_format, common):
        super().__init__(**common)
        self._given_batch_shape = common["batch_input_shape"] is not None
        self._pairs = _pairs(padding, self.RANK, "padding")
        self.padding = self._pairs[0] if self.RANK == 1 else self._pairs
        self._setup(data_format)

    def _output_length(self, n, axis, shape, argument):
        return n + sum(self._pairs[axis])

    def forward(self, inputs) -> torch.Tensor:
        """``inputs``: ``(batch, *spatial, channels)`` or ``(batch, channels, *spatial)``."""
        x = self._prepare_input(inputs)
        return _functional.zero_pad(x, self._pairs, self.data_format)

    def get_config(self) -> Dict[str, Any]:
        return self._config(padding=self.padding)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, " + self._repr_tail()


class ZeroPadding1D(_ZeroPadding):
    """Keras' ``ZeroPadding1D``: adds ``padding = (begin, end)`` zero steps.

    Input ``(batch, steps, channels)`` -> ``(batch, steps + begin + end, channels)``.
    ``padding``: an int (both ends) or a pair; whole numbers >= 0.
    """

    RANK = 1

    def __init__(self, padding=1, input_shape=None, batch_input_shape=None, batch_size=None,
                 dtype=None, name=None, trainable=None, weights=None):
        super().__init__(padding, None, _common(locals()))

    @classmethod
    def from_config(cls, config: Dict[str, Any]):
        """tf-keras' configs, and Keras 3's, whose ZeroPadding1D also has ``data_format``:
        a ``"channels_first"`` one pads the last axis of ``(batch, channels, steps)``, as
        Keras 3 does (``save_keras_model`` writes such a layer before a channels_first
        causal ``SeparableConv1D`` in ``.keras`` files); ``get_config`` then says so."""
        fmt = check_data_format(config.get("data_format"))
        layer = super().from_config(config)
        layer.data_format = fmt
        return layer

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        if self.data_format != "channels_last":  # Keras 3's argument (tf-keras has none)
            config["data_format"] = self.data_format
        return config

    def extra_repr(self) -> str:
        tail = "" if self.data_format == "channels_last" else \
            f", data_format={self.data_format!r}"
        return super().extra_repr().rstrip(", ") + tail


class ZeroPadding2D(_ZeroPadding):
    """Keras' ``ZeroPadding2D``: adds rows and columns of zeros at the edges of images.

    Input ``(batch, rows, cols, channels)`` (channels_last, the default) or
    ``(batch, channels, rows, cols)``.  ``padding``: an int (all four edges), a pair of ints
    ``(rows, cols)`` (both ends each) or ``((top, bottom), (left, right))``; whole numbers
    >= 0 (tf-keras accepts a negative int and fails at the call; sepconv raises at
    construction).
    """

    RANK = 2

    def __init__(self, padding=(1, 1), data_format=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(padding, data_format, _common(locals()))


class ZeroPadding3D(_ZeroPadding):
    """Keras' ``ZeroPadding3D``: adds zeros at the edges of volumes.

    Input ``(batch, dim1, dim2, dim3, channels)`` (channels_last) or
    ``(batch, channels, dim1, dim2, dim3)``.  ``padding``: an int, 3 ints (both ends of each
    axis) or 3 ``(begin, end)`` pairs; whole numbers >= 0.
    """

    RANK = 3

    def __init__(self, padding=(1, 1, 1), data_format=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(padding, data_format, _common(locals()))


# -- upsampling -------------------------------------------------------------------------

class _UpSampling(_Reshaping):
    def __init__(self, size, data_format, interpolation, common):
        super().__init__(**common)
        self._given_batch_shape = common["batch_input_shape"] is not None
        self._factors = _factors(size, self.RANK)
        self.size = self._factors[0] if self.RANK == 1 else self._factors
        if not isinstance(interpolation, str):
            raise TypeError(f"Invalid type for argument `interpolation`. Expected a string. "
                            f"Received interpolation={interpolation!r}")
        from ..kernels.resize import METHODS
        self.interpolation = interpolation.lower()
        if self.interpolation not in METHODS:
            raise ValueError(f"Invalid value for argument `interpolation`. Expected one of "
                             f"{', '.join(METHODS)}. Received interpolation={interpolation!r}")
        self._setup(data_format)

    def _output_length(self, n, axis, shape, argument):
        return n * self._factors[axis]

    def forward(self, inputs) -> torch.Tensor:
        """``inputs``: ``(batch, *spatial, channels)`` or ``(batch, channels, *spatial)``."""
        x = self._prepare_input(inputs)
        return _functional.upsample(x, self._factors, self.interpolation, self.data_format)

    def get_config(self) -> Dict[str, Any]:
        return self._config(size=self.size)

    def extra_repr(self) -> str:
        return f"size={self.size}, " + self._repr_tail()


class UpSampling1D(_UpSampling):
    """Keras' ``UpSampling1D``: repeats each step ``size`` times.

    Input ``(batch, steps, channels)`` -> ``(batch, steps * size, channels)``.  ``size``: a
    whole number >= 1 (tf-keras truncates ``size=2.7`` to 2; sepconv raises).
    """

    RANK = 1

    def __init__(self, size=2, input_shape=None, batch_input_shape=None, batch_size=None,
                 dtype=None, name=None, trainable=None, weights=None):
        super().__init__(size, None, "nearest", _common(locals()))


class UpSampling2D(_UpSampling):
    """Keras' ``UpSampling2D``: enlarges images by whole factors ``size = (rows, cols)``.

    Input ``(batch, rows, cols, channels)`` (channels_last, the default) or
    ``(batch, channels, rows, cols)`` -> ``rows * size[0]``, ``cols * size[1]``.  ``size``:
    an int or 2 whole numbers >= 1 (tf-keras truncates ``(2.7, 2)`` to ``(2, 2)``; sepconv
    raises).

    ``interpolation`` (any case): ``"nearest"`` repeats rows and columns; ``"bilinear"``,
    ``"bicubic"``, ``"area"``, ``"gaussian"``, ``"lanczos3"``, ``"lanczos5"``,
    ``"mitchellcubic"`` compute what tf-keras' ``tf.image.resize`` computes (half-pixel
    centres, no antialiasing; TensorFlow's bicubic table with ``a = -0.5``; gaussian and
    mitchellcubic blur even at factor 1), values and gradients, see
    :mod:`sepconv.kernels.resize`.  ``"area"`` equals ``"nearest"`` at whole factors and
    has nearest's gradient (TensorFlow has none).  The output has the layer's compute dtype
    (tf-keras returns float32 from every method but nearest, even under a float64 policy).
    """

    RANK = 2

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest",
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        super().__init__(size, data_format, interpolation, _common(locals()))

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config["interpolation"] = self.interpolation
        return config

    def extra_repr(self) -> str:
        if self.interpolation == "nearest":
            return super().extra_repr()
        return f"size={self.size}, interpolation={self.interpolation!r}, " + \
            self._repr_tail()


class UpSampling3D(_UpSampling):
    """Keras' ``UpSampling3D``: repeats elements of volumes by whole factors
    ``size = (dim1, dim2, dim3)``.

    Input ``(batch, dim1, dim2, dim3, channels)`` (channels_last) or
    ``(batch, channels, dim1, dim2, dim3)``.  ``size``: an int or 3 whole numbers >= 1.
    """

    RANK = 3

    def __init__(self, size=(2, 2, 2), data_format=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(size, data_format, "nearest", _common(locals()))


class Resizing(Layer):
    """Keras' ``Resizing`` (R: ``layer_resizing``): images ``(batch, rows, cols,
    channels)`` (or one ``(rows, cols, channels)``) resized to ``(height, width)`` as
    tf-keras' layer calls ``tf.image.resize`` (half-pixel centres, no antialiasing; see
    :func:`sepconv.functional.resize`), ``crop_to_aspect_ratio`` cropping the centred
    window of the target's aspect ratio first.  Interpolations: ``bilinear``, ``nearest``,
    ``bicubic``, ``lanczos3``, ``lanczos5``, ``gaussian``, ``mitchellcubic``, ``area``
    (TensorFlow's ``ResizeArea``: each output pixel the overlap-weighted mean of the input
    pixels its box covers, up or down, any ratio).  Gradients are TensorFlow's (the
    adjoint of the same weights; TensorFlow has none for ``area``: the adjoint there too).
    Keras 3 files load where Keras 3's extra arguments keep their defaults (no
    ``pad_to_aspect_ratio``), ``antialias`` where TensorFlow ignores it (``nearest``,
    ``area``), and ``data_format="channels_first"``: such a layer takes ``(batch, channels,
    rows, cols)`` images, resized as the channels_last ones (tf-keras has no such
    argument: saved to .keras only)."""

    CONFIG_ONLY_ARGS = ("antialias",)  # Keras 3's, read by from_config
    _channels_first = False  # a Keras 3 config's data_format="channels_first"

    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False,
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self.height = check_count(height, "height")
        self.width = check_count(width, "width")
        self.interpolation = check_resize_method(interpolation)
        if not isinstance(crop_to_aspect_ratio, (bool, np.bool_)):
            raise TypeError(f"Invalid type for argument `crop_to_aspect_ratio`. Expected a "
                            f"bool. Received crop_to_aspect_ratio={crop_to_aspect_ratio!r}")
        self.crop_to_aspect_ratio = bool(crop_to_aspect_ratio)
        self._finish_init()

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "Resizing":
        """Also Keras 3's config (its ``data_format`` and, where it changes nothing,
        ``antialias``)."""
        config = dict(config)
        fmt = config.pop("data_format", None)
        if fmt not in (None, "channels_last", "channels_first"):
            raise ValueError(f"Invalid value for argument `data_format`. Expected "
                             f"'channels_last' or 'channels_first'. Received "
                             f"data_format={fmt!r}")
        method = str(config.get("interpolation", "bilinear")).lower()
        if config.pop("antialias", False) and method not in ("nearest", "area"):
            raise ValueError(f"Resizing: antialias=True with interpolation={method!r} "
                             f"(TensorFlow's antialiased resampling) is not supported; "
                             f"tf.image.resize ignores antialias for 'nearest' and 'area' "
                             f"only")
        layer = super().from_config(config)
        layer._channels_first = fmt == "channels_first"
        return layer

    def check_tf_keras_file(self) -> None:
        """For ``save_keras_model``'s .h5 writer: tf-keras' Resizing has no
        ``data_format``."""
        if self._channels_first:
            raise ValueError(f"save_keras_model: layer {self.name!r} (Resizing) takes "
                             f"channels_first images (a Keras 3 config's data_format), "
                             f"which tf-keras' layer cannot; save as .keras")

    def build(self, input_shape, device=None) -> None:
        self._check_input(tuple(input_shape))

    def _check_input(self, shape) -> None:
        if len(shape) not in (3, 4):
            raise ValueError(f"Layer {self.name!r} expects images of rank 4, (batch, rows, "
                             f"cols, channels), or 3. Received input of shape {shape}")

    def compute_output_shape(self, input_shape) -> Tuple[Optional[int], ...]:
        shape = list(input_shape)
        self._check_input(tuple(shape))
        if self._channels_first:
            shape[-2:] = [self.height, self.width]
        else:
            shape[-3:-1] = [self.height, self.width]
        return tuple(shape)

    def forward(self, inputs) -> torch.Tensor:
        """``inputs``: images, any real dtype (``uint8`` too): cast to the compute dtype
        first, the result to it last, as tf-keras does."""
        x = self._prepare_input(inputs)
        if self._channels_first and x.dim() in (3, 4):
            x = x.movedim(-3, -1)
        y = _functional.resize(x, (self.height, self.width), self.interpolation,
                               self.crop_to_aspect_ratio)
        y = y.movedim(-1, -3) if self._channels_first else y
        return y.to(self.compute_dtype)

    def set_weights(self, weights) -> None:
        """No weights: only ``[]`` is accepted."""
        if list(weights):
            raise ValueError(f"Layer {self.name!r} expects 0 weights, but received "
                             f"{len(list(weights))} weights")

    def get_config(self) -> Dict[str, Any]:
        config = self.base_config()
        config.update(height=self.height, width=self.width,
                      interpolation=self.interpolation,
                      crop_to_aspect_ratio=self.crop_to_aspect_ratio)
        if self._channels_first:
            config["data_format"] = "channels_first"
        return config

    def extra_repr(self) -> str:
        return f"height={self.height}, width={self.width}, " \
            f"interpolation={self.interpolation!r}"
