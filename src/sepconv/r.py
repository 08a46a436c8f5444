"""R keras' ``layer_*`` functions: ``layer_separable_conv_1d(object, ...)``.

R hands numbers over as doubles (``filters = 32`` arrives as ``32.0``) and arrays as
float64.  As R keras' wrappers do, whole-number doubles are coerced to integers for the
integer arguments (and inside ``input_shape`` / ``batch_input_shape``); anything else,
``2.5`` say, is rejected with the layer's own error.

``object`` follows R's composition rules: ``None`` returns the layer; a
``torch.nn.Sequential`` gets the layer appended and is returned; a tensor or array is
passed through the layer and the output returned.
"""

from __future__ import annotations

import inspect
import numbers
import re
from typing import Any, Dict, Iterable, Optional, Tuple

import numpy as np
import torch

from . import layers as _layers

#: Arguments R hands over as doubles that the layers take as whole numbers (strings and
#: real-valued arguments such as ``rate`` pass through ``_as_int`` untouched or are not named).
INTEGER_ARGS = ("filters", "kernel_size", "strides", "dilation_rate", "depth_multiplier",
                "batch_size", "groups", "output_padding", "cropping", "padding", "size",
                "units", "pool_size", "axis", "input_dim", "output_dim", "n", "dims",
                "target_shape")
_SHAPE_ARGS = ("input_shape", "batch_input_shape")


def _as_int(value: Any) -> Any:
    """A whole-number double becomes an int; everything else is left for the layer to judge."""
    if isinstance(value, (bool, np.bool_)):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        if float(value).is_integer():
            return int(value)
    if isinstance(value, np.ndarray) and value.ndim <= 2:
        return _as_int(value.tolist())
    if isinstance(value, (list, tuple)):
        return type(value)(_as_int(v) for v in value)
    return value


def _compose(object: Any, layer: torch.nn.Module):
    if object is None:
        return layer
    if isinstance(object, torch.nn.Sequential):
        object.append(layer)
        return object
    if isinstance(object, (torch.Tensor, np.ndarray)):
        return layer(object)
    raise TypeError("`object` must be None, a torch.nn.Sequential model, or a tensor or "
                    f"array. Received object of type {type(object).__name__}")


def r_name(class_name: str) -> str:
    """R keras' function name for a Keras class: ``Conv2DTranspose`` -> ``layer_conv_2d_transpose``,
    ``UpSampling1D`` -> ``layer_upsampling_1d``."""
    snake = re.sub(r"_?(\d)d(?=_|$)", r"_\1d", _layers.base.snake_case(class_name))
    return "layer_" + snake.replace("up_sampling", "upsampling")


def r_function(cls: type, name: Optional[str] = None,
               integer_args: Iterable[str] = INTEGER_ARGS):
    """R keras' ``layer_<snake>(object, ...)`` for a layer class, generated from its signature.

    The function takes ``object`` first, then the class' arguments by the same names, order
    and defaults (required ones default to ``None`` and are checked, as R keras' wrappers
    do); whole-number doubles among ``integer_args`` and the shape arguments become ints.
    """
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    required = [p.name for p in params if p.default is inspect.Parameter.empty]
    sig = inspect.Signature(
        [inspect.Parameter("object", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)]
        + [p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD,
                     default=None if p.default is inspect.Parameter.empty else p.default)
           for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)])
    coerce = set(integer_args) | set(_SHAPE_ARGS)

    def layer_function(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        object = arguments.pop("object")
        for key in required:
            if arguments[key] is None:
                raise ValueError(f"Argument `{key}` is required. Received {key}=None")
        for key in coerce & set(arguments):
            arguments[key] = _as_int(arguments[key])
        return _compose(object, cls(**arguments))

    name = name or r_name(cls.__name__)
    layer_function.__name__ = layer_function.__qualname__ = name
    layer_function.__signature__ = sig
    layer_function.__doc__ = (f"R keras' ``{name}(object, ...)``; see "
                              f":class:`sepconv.{cls.__name__}`.\n\n``object``: None returns "
                              "the layer, a ``torch.nn.Sequential`` gets it appended and is "
                              "returned, a tensor or array is passed through it.")
    return layer_function


layer_separable_conv_1d = r_function(_layers.SeparableConv1D)


# -- core layers (Dense, activations, dropout, reshaping, normalization, pooling, merging) --
_CORE_INTS = INTEGER_ARGS + ("seed", "input_length", "shared_axes", "axes", "output_shape")


def r_merge_function(cls: type, name: Optional[str] = None):
    """R keras' ``layer_add(inputs, ...)``: ``inputs`` a list of tensors (or arrays) returns
    the merged tensor; ``None`` returns the layer."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    required = [p.name for p in params if p.default is inspect.Parameter.empty]
    sig = inspect.Signature(
        [inspect.Parameter("inputs", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)]
        + [p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD,
                     default=None if p.default is inspect.Parameter.empty else p.default)
           for p in params])

    def merge_function(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        inputs = arguments.pop("inputs")
        for key in required:  # (Dot's axes) required, checked as R keras' wrappers do
            if arguments[key] is None:
                raise ValueError(f"Argument `{key}` is required. Received {key}=None")
        for key in set(_CORE_INTS + _SHAPE_ARGS) & set(arguments):
            arguments[key] = _as_int(arguments[key])
        layer = cls(**arguments)
        if inputs is None:
            return layer
        if not isinstance(inputs, (list, tuple)):
            raise TypeError(f"`inputs` must be a list of tensors or None. Received inputs of "
                            f"type {type(inputs).__name__}")
        return layer(list(inputs))

    name = name or r_name(cls.__name__)
    merge_function.__name__ = merge_function.__qualname__ = name
    merge_function.__signature__ = sig
    merge_function.__doc__ = (f"R keras' ``{name}(inputs, ...)``; see :class:`sepconv."
                              f"{cls.__name__}`.\n\n``inputs``: a list of tensors returns the "
                              "merged tensor; None returns the layer.")
    return merge_function


layer_input_layer = r_function(_layers.InputLayer, integer_args=_CORE_INTS)
layer_dense = r_function(_layers.Dense, integer_args=_CORE_INTS)
layer_activation = r_function(_layers.Activation, integer_args=_CORE_INTS)
layer_re_lu = r_function(_layers.ReLU, integer_args=_CORE_INTS)
layer_activation_relu = r_function(_layers.ReLU, "layer_activation_relu", _CORE_INTS)
layer_leaky_re_lu = r_function(_layers.LeakyReLU, integer_args=_CORE_INTS)
layer_activation_leaky_relu = r_function(_layers.LeakyReLU, "layer_activation_leaky_relu",
                                         _CORE_INTS)
layer_p_re_lu = r_function(_layers.PReLU, integer_args=_CORE_INTS)
layer_activation_parametric_relu = r_function(_layers.PReLU,
                                              "layer_activation_parametric_relu", _CORE_INTS)
layer_elu = r_function(_layers.ELU, integer_args=_CORE_INTS)
layer_activation_elu = r_function(_layers.ELU, "layer_activation_elu", _CORE_INTS)
layer_softmax = r_function(_layers.Softmax, integer_args=_CORE_INTS)
layer_activation_softmax = r_function(_layers.Softmax, "layer_activation_softmax", _CORE_INTS)
layer_dropout = r_function(_layers.Dropout, integer_args=_CORE_INTS)
layer_spatial_dropout_1d = r_function(_layers.SpatialDropout1D, integer_args=_CORE_INTS)
layer_spatial_dropout_2d = r_function(_layers.SpatialDropout2D, integer_args=_CORE_INTS)
layer_spatial_dropout_3d = r_function(_layers.SpatialDropout3D, integer_args=_CORE_INTS)
layer_gaussian_noise = r_function(_layers.GaussianNoise, integer_args=_CORE_INTS)
layer_flatten = r_function(_layers.Flatten, integer_args=_CORE_INTS)
layer_reshape = r_function(_layers.Reshape, integer_args=_CORE_INTS)
layer_permute = r_function(_layers.Permute, integer_args=_CORE_INTS)
layer_repeat_vector = r_function(_layers.RepeatVector, integer_args=_CORE_INTS)
layer_embedding = r_function(_layers.Embedding, integer_args=_CORE_INTS)
layer_time_distributed = r_function(_layers.TimeDistributed, integer_args=_CORE_INTS)
time_distributed = r_function(_layers.TimeDistributed, "time_distributed", _CORE_INTS)
layer_batch_normalization = r_function(_layers.BatchNormalization, integer_args=_CORE_INTS)
layer_layer_normalization = r_function(_layers.LayerNormalization, integer_args=_CORE_INTS)
layer_max_pooling_1d = r_function(_layers.MaxPooling1D, integer_args=_CORE_INTS)
layer_max_pooling_2d = r_function(_layers.MaxPooling2D, integer_args=_CORE_INTS)
layer_max_pooling_3d = r_function(_layers.MaxPooling3D, integer_args=_CORE_INTS)
layer_average_pooling_1d = r_function(_layers.AveragePooling1D, integer_args=_CORE_INTS)
layer_average_pooling_2d = r_function(_layers.AveragePooling2D, integer_args=_CORE_INTS)
layer_average_pooling_3d = r_function(_layers.AveragePooling3D, integer_args=_CORE_INTS)
layer_global_max_pooling_1d = r_function(_layers.GlobalMaxPooling1D, integer_args=_CORE_INTS)
layer_global_max_pooling_2d = r_function(_layers.GlobalMaxPooling2D, integer_args=_CORE_INTS)
layer_global_max_pooling_3d = r_function(_layers.GlobalMaxPooling3D, integer_args=_CORE_INTS)
layer_global_average_pooling_1d = r_function(_layers.GlobalAveragePooling1D,
                                             integer_args=_CORE_INTS)
layer_global_average_pooling_2d = r_function(_layers.GlobalAveragePooling2D,
                                             integer_args=_CORE_INTS)
layer_global_average_pooling_3d = r_function(_layers.GlobalAveragePooling3D,
                                             integer_args=_CORE_INTS)
layer_add = r_merge_function(_layers.Add)
layer_subtract = r_merge_function(_layers.Subtract)
layer_multiply = r_merge_function(_layers.Multiply)
layer_average = r_merge_function(_layers.Average)
layer_maximum = r_merge_function(_layers.Maximum)
layer_minimum = r_merge_function(_layers.Minimum)
layer_concatenate = r_merge_function(_layers.Concatenate)

CORE_R_FUNCTIONS = [
    "layer_input_layer", "layer_dense", "layer_activation", "layer_re_lu",
    "layer_activation_relu", "layer_leaky_re_lu", "layer_activation_leaky_relu",
    "layer_p_re_lu", "layer_activation_parametric_relu", "layer_elu", "layer_activation_elu",
    "layer_softmax", "layer_activation_softmax", "layer_dropout", "layer_spatial_dropout_1d",
    "layer_spatial_dropout_2d", "layer_spatial_dropout_3d", "layer_gaussian_noise",
    "layer_flatten", "layer_reshape", "layer_permute", "layer_repeat_vector",
    "layer_embedding", "layer_time_distributed", "time_distributed",
    "layer_batch_normalization", "layer_layer_normalization", "layer_max_pooling_1d",
    "layer_max_pooling_2d", "layer_max_pooling_3d", "layer_average_pooling_1d",
    "layer_average_pooling_2d", "layer_average_pooling_3d", "layer_global_max_pooling_1d",
    "layer_global_max_pooling_2d", "layer_global_max_pooling_3d",
    "layer_global_average_pooling_1d", "layer_global_average_pooling_2d",
    "layer_global_average_pooling_3d", "layer_add", "layer_subtract", "layer_multiply",
    "layer_average", "layer_maximum", "layer_minimum", "layer_concatenate"]
layer_depthwise_conv_1d = r_function(_layers.DepthwiseConv1D)
layer_depthwise_conv_2d = r_function(_layers.DepthwiseConv2D)
layer_separable_conv_2d = r_function(_layers.SeparableConv2D)
layer_cropping_1d = r_function(_layers.Cropping1D)
layer_cropping_2d = r_function(_layers.Cropping2D)
layer_cropping_3d = r_function(_layers.Cropping3D)
layer_zero_padding_1d = r_function(_layers.ZeroPadding1D)
layer_zero_padding_2d = r_function(_layers.ZeroPadding2D)
layer_zero_padding_3d = r_function(_layers.ZeroPadding3D)
layer_upsampling_1d = r_function(_layers.UpSampling1D)
layer_upsampling_2d = r_function(_layers.UpSampling2D)
layer_upsampling_3d = r_function(_layers.UpSampling3D)
layer_conv_lstm_1d = r_function(_layers.ConvLSTM1D)
layer_conv_lstm_2d = r_function(_layers.ConvLSTM2D)
layer_conv_lstm_3d = r_function(_layers.ConvLSTM3D)
layer_conv_1d = r_function(_layers.Conv1D)
layer_conv_2d = r_function(_layers.Conv2D)
layer_conv_3d = r_function(_layers.Conv3D)
layer_conv_1d_transpose = r_function(_layers.Conv1DTranspose)
layer_conv_2d_transpose = r_function(_layers.Conv2DTranspose)
layer_conv_3d_transpose = r_function(_layers.Conv3DTranspose)

layer_lstm = r_function(_layers.LSTM)
layer_gru = r_function(_layers.GRU)
layer_simple_rnn = r_function(_layers.SimpleRNN)
bidirectional = r_function(_layers.Bidirectional, "bidirectional")  # R keras 2's name
layer_bidirectional = r_function(_layers.Bidirectional)  # R keras3's (bidirectional: alias)
layer_masking = r_function(_layers.Masking)
layer_normalization = r_function(_layers.Normalization, integer_args=_CORE_INTS)
layer_attention = r_merge_function(_layers.Attention)
layer_additive_attention = r_merge_function(_layers.AdditiveAttention)

# the layers sequence models' files hold beyond the above (R keras 2's names)
layer_dot = r_merge_function(_layers.Dot)
layer_gaussian_dropout = r_function(_layers.GaussianDropout, integer_args=_CORE_INTS)
layer_alpha_dropout = r_function(_layers.AlphaDropout, integer_args=_CORE_INTS)
layer_activity_regularization = r_function(_layers.ActivityRegularization,
                                           integer_args=_CORE_INTS)
layer_identity = r_function(_layers.Identity, integer_args=_CORE_INTS)
layer_activation_thresholded_relu = r_function(_layers.ThresholdedReLU,
                                               "layer_activation_thresholded_relu", _CORE_INTS)
layer_thresholded_re_lu = r_function(_layers.ThresholdedReLU, integer_args=_CORE_INTS)
layer_unit_normalization = r_function(_layers.UnitNormalization, integer_args=_CORE_INTS)
layer_rescaling = r_function(_layers.Rescaling, integer_args=_CORE_INTS)
layer_group_normalization = r_function(_layers.GroupNormalization, integer_args=_CORE_INTS)
layer_einsum_dense = r_function(_layers.EinsumDense, integer_args=_CORE_INTS)


def adapt(object, data, batch_size=None, steps=None):
    """R keras' ``adapt(object, data, batch_size = NULL, steps = NULL)``: fit a
    preprocessing layer's state (``Normalization``: mean and variance) to ``data`` (an
    array, a tensor or an iterable of batches); returns the layer.  ``steps`` (how many
    batches to take from an iterable) as in R."""
    if not hasattr(object, "adapt"):
        raise TypeError(f"`object` must be a preprocessing layer with adapt() "
                        f"(Normalization). Received {type(object).__name__}")
    if steps is not None:
        import itertools
        data = list(itertools.islice(iter(data), int(steps)))
    return object.adapt(data, batch_size=None if batch_size is None else int(batch_size))


def _attention_layer(cls, inputs, arguments: Dict[str, Any], required: Tuple[str, ...],
                     integer: Tuple[str, ...]):
    """The R attention functions' tail: the ``required`` arguments present, whole-number
    doubles of ``required + integer`` (and the shape arguments) made ints, the layer, and
    called on ``inputs`` (``list(query, value)`` or ``list(query, value, key)``) unless
    ``inputs`` is None."""
    for key in required:
        if arguments[key] is None:
            raise ValueError(f"Argument `{key}` is required. Received {key}=None")
    for key in required + integer + _SHAPE_ARGS:
        if key in arguments:
            arguments[key] = _as_int(arguments[key])
    layer = cls(**arguments)
    if inputs is None:
        return layer
    if not isinstance(inputs, (list, tuple)) or not 2 <= len(inputs) <= 3:
        raise TypeError(f"`inputs` must be a list of 2 or 3 tensors (query, value, key) or "
                        f"None. Received inputs of type {type(inputs).__name__}")
    return layer(*inputs)


def layer_multi_head_attention(inputs=None, num_heads=None, key_dim=None, value_dim=None,
                               dropout=0.0, use_bias=True, output_shape=None,
                               attention_axes=None, kernel_initializer="glorot_uniform",
                               bias_initializer="zeros", kernel_regularizer=None,
                               bias_regularizer=None, activity_regularizer=None,
                               kernel_constraint=None, bias_constraint=None, **kwargs):
    """R keras' ``layer_multi_head_attention(inputs, num_heads, key_dim, ...)``; see
    :class:`sepconv.MultiHeadAttention`.

    ``inputs``: ``list(query, value)`` or ``list(query, value, key)`` returns the
    attention output; ``None`` returns the layer.  Whole-number doubles become ints, as
    R keras' wrapper does; other keywords (``name``, ``dtype``, ...) go to the layer."""
    arguments = dict(num_heads=num_heads, key_dim=key_dim, value_dim=value_dim,
                     dropout=dropout, use_bias=use_bias, output_shape=output_shape,
                     attention_axes=attention_axes, kernel_initializer=kernel_initializer,
                     bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
                     bias_regularizer=bias_regularizer,
                     activity_regularizer=activity_regularizer,
                     kernel_constraint=kernel_constraint, bias_constraint=bias_constraint,
                     **kwargs)
    return _attention_layer(_layers.MultiHeadAttention, inputs, arguments,
                            ("num_heads", "key_dim"),
                            ("value_dim", "output_shape", "attention_axes"))

layer_cudnn_lstm = r_function(_layers.CuDNNLSTM, "layer_cudnn_lstm")
layer_cudnn_gru = r_function(_layers.CuDNNGRU, "layer_cudnn_gru")

def layer_group_query_attention(inputs=None, head_dim=None, num_query_heads=None,
                                num_key_value_heads=None, dropout=0.0, use_bias=True,
                                sliding_window=None, flash_attention=None,
                                kernel_initializer="glorot_uniform", bias_initializer="zeros",
                                kernel_regularizer=None, bias_regularizer=None,
                                activity_regularizer=None, kernel_constraint=None,
                                bias_constraint=None, use_gate=False, seed=None, **kwargs):
    """R keras3's ``layer_group_query_attention(inputs, head_dim, num_query_heads,
    num_key_value_heads, ...)``; see :class:`sepconv.GroupQueryAttention`.

    ``inputs``: ``list(query, value)`` or ``list(query, value, key)`` returns the
    attention output; ``None`` returns the layer.  Whole-number doubles become ints."""
    arguments = dict(head_dim=head_dim, num_query_heads=num_query_heads,
                     num_key_value_heads=num_key_value_heads, dropout=dropout,
                     use_bias=use_bias, sliding_window=sliding_window,
                     flash_attention=flash_attention, kernel_initializer=kernel_initializer,
                     bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
                     bias_regularizer=bias_regularizer,
                     activity_regularizer=activity_regularizer,
                     kernel_constraint=kernel_constraint, bias_constraint=bias_constraint,
                     use_gate=use_gate, seed=seed, **kwargs)
    return _attention_layer(_layers.GroupQueryAttention, inputs, arguments,
                            ("head_dim", "num_query_heads", "num_key_value_heads"),
                            ("sliding_window", "seed"))


# Keras 3's RMSNormalization (R keras3)
layer_rms_normalization = r_function(_layers.RMSNormalization)
# Keras 3's adaptive pooling (R keras3)
layer_adaptive_average_pooling_1d = r_function(_layers.AdaptiveAveragePooling1D,
                                               integer_args=("output_size",))
layer_adaptive_average_pooling_2d = r_function(_layers.AdaptiveAveragePooling2D,
                                               integer_args=("output_size",))
layer_adaptive_average_pooling_3d = r_function(_layers.AdaptiveAveragePooling3D,
                                               integer_args=("output_size",))
layer_adaptive_max_pooling_1d = r_function(_layers.AdaptiveMaxPooling1D,
                                           integer_args=("output_size",))
layer_adaptive_max_pooling_2d = r_function(_layers.AdaptiveMaxPooling2D,
                                           integer_args=("output_size",))
layer_adaptive_max_pooling_3d = r_function(_layers.AdaptiveMaxPooling3D,
                                           integer_args=("output_size",))
# tf-keras' locally connected layers (R keras)
layer_locally_connected_1d = r_function(_layers.LocallyConnected1D,
                                        integer_args=INTEGER_ARGS + ("implementation",))
layer_locally_connected_2d = r_function(_layers.LocallyConnected2D,
                                        integer_args=INTEGER_ARGS + ("implementation",))

# preprocessing layers (preprocessing.py)
_PREP_INTS = _CORE_INTS + ("num_bins", "num_tokens", "max_tokens", "num_oov_indices",
                           "output_sequence_length", "ngrams")
layer_string_lookup = r_function(_layers.StringLookup, integer_args=_PREP_INTS)
layer_integer_lookup = r_function(_layers.IntegerLookup, integer_args=_PREP_INTS)
layer_text_vectorization = r_function(_layers.TextVectorization, integer_args=_PREP_INTS)
layer_discretization = r_function(_layers.Discretization, integer_args=_PREP_INTS)
layer_category_encoding = r_function(_layers.CategoryEncoding, integer_args=_PREP_INTS)
layer_hashing = r_function(_layers.Hashing, integer_args=_PREP_INTS)

layer_resizing = r_function(_layers.Resizing, integer_args=INTEGER_ARGS + ("height", "width"))

# every R-style function: the layer_* ones and R keras 2's wrapper names
__all__ = sorted(name for name in list(globals()) if name.startswith("layer_")
                 or name in ("time_distributed", "bidirectional", "adapt"))

# Keras 3's audio front ends (R keras3's layer_stft_spectrogram / layer_mel_spectrogram)
_AUDIO_INTS = INTEGER_ARGS + ("frame_length", "frame_step", "fft_length", "sequence_stride",
                              "sequence_length", "num_mel_bins")
layer_stft_spectrogram = r_function(_layers.STFTSpectrogram, integer_args=_AUDIO_INTS)
layer_mel_spectrogram = r_function(_layers.MelSpectrogram, integer_args=_AUDIO_INTS)
__all__ += ["layer_stft_spectrogram", "layer_mel_spectrogram"]

# -- Keras' generic recurrent layer and its cells (layers/rnn.py) --
def r_cell_function(cls: type, name: Optional[str] = None):
    """R keras' ``layer_<cell>(...)`` for a recurrent cell: no ``object`` (R keras' cell
    functions return the cell, to give to ``layer_rnn``); the class' arguments by the same
    names and defaults, whole-number doubles coerced as :func:`r_function` does."""
    full = r_function(cls, name)
    params = list(inspect.signature(full).parameters.values())[1:]
    sig = inspect.Signature(params)

    def cell_function(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        return full(None, **bound.arguments)

    cell_function.__name__ = cell_function.__qualname__ = full.__name__
    cell_function.__signature__ = sig
    cell_function.__doc__ = (f"R keras' ``{full.__name__}(...)``: returns a "
                             f":class:`sepconv.{cls.__name__}` for ``layer_rnn``.")
    return cell_function


layer_rnn = r_function(_layers.RNN)
layer_simple_rnn_cell = r_cell_function(_layers.SimpleRNNCell)
layer_lstm_cell = r_cell_function(_layers.LSTMCell)
layer_gru_cell = r_cell_function(_layers.GRUCell)
layer_stacked_rnn_cells = r_cell_function(_layers.StackedRNNCells)
__all__ += ["layer_rnn", "layer_simple_rnn_cell", "layer_lstm_cell", "layer_gru_cell",
            "layer_stacked_rnn_cells"]

# -- image preprocessing and augmentation (layers/augmentation.py) --
_AUGMENT_INTS = INTEGER_ARGS + ("height", "width", "seed")
layer_center_crop = r_function(_layers.CenterCrop, integer_args=_AUGMENT_INTS)
layer_random_crop = r_function(_layers.RandomCrop, integer_args=_AUGMENT_INTS)
layer_random_height = r_function(_layers.RandomHeight, integer_args=_AUGMENT_INTS)
layer_random_width = r_function(_layers.RandomWidth, integer_args=_AUGMENT_INTS)
__all__ += ["layer_center_crop", "layer_random_crop", "layer_random_height",
            "layer_random_width"]
layer_random_flip = r_function(_layers.RandomFlip, integer_args=_AUGMENT_INTS)
layer_random_rotation = r_function(_layers.RandomRotation, integer_args=_AUGMENT_INTS)
layer_random_translation = r_function(_layers.RandomTranslation, integer_args=_AUGMENT_INTS)
layer_random_zoom = r_function(_layers.RandomZoom, integer_args=_AUGMENT_INTS)
layer_random_contrast = r_function(_layers.RandomContrast, integer_args=_AUGMENT_INTS)
layer_random_brightness = r_function(_layers.RandomBrightness, integer_args=_AUGMENT_INTS)
__all__ += ["layer_random_flip", "layer_random_rotation", "layer_random_translation",
            "layer_random_zoom", "layer_random_contrast", "layer_random_brightness"]
# -- Lambda (layers/lambda_layer.py) --
def _r_lambda():
    """R keras' ``layer_lambda(object, f, output_shape = NULL, ...)``: the function is
    ``f`` in R (``function`` in Python); whole-number doubles in ``output_shape`` become
    ints (R's ``normalize_shape``)."""
    full = r_function(_layers.Lambda, integer_args=INTEGER_ARGS + ("output_shape",))
    params = list(inspect.signature(full).parameters.values())
    sig = inspect.Signature([p.replace(name="f") if p.name == "function" else p
                             for p in params])

    def layer_lambda(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        arguments = dict(bound.arguments)
        if "f" in arguments:
            arguments["function"] = arguments.pop("f")
        return full(**arguments)

    layer_lambda.__signature__ = sig
    layer_lambda.__doc__ = full.__doc__.replace("``layer_lambda(object, ...)``",
                                                "``layer_lambda(object, f, ...)``")
    return layer_lambda


layer_lambda = _r_lambda()
__all__ += ["layer_lambda"]
# SpectralNormalization (layers/spectral.py)
layer_spectral_normalization = r_function(_layers.SpectralNormalization,
                                          integer_args=INTEGER_ARGS + ("power_iterations",))
__all__ += ["layer_spectral_normalization"]

# HashedCrossing (layers/hashed_crossing.py)
layer_hashed_crossing = r_function(_layers.HashedCrossing, integer_args=_PREP_INTS)
__all__ += ["layer_hashed_crossing"]

# Keras 3's image preprocessing layers (layers/augmentation3.py) and ReversibleEmbedding
# (layers/reversible_embedding.py), R keras3's layer_* names
_K3_IMAGE_INTS = INTEGER_ARGS + ("bins", "max_number", "num_chains", "chain_depth",
                                 "num_ops", "tile_grid_size", "seed")
for _cls in (_layers.AugMix, _layers.AutoContrast,
             _layers.ContrastLimitedAdaptiveHistogramEqualization, _layers.CutMix,
             _layers.Equalization, _layers.MaxNumBoundingBoxes, _layers.MixUp,
             _layers.Pipeline, _layers.RandAugment, _layers.RandomColorDegeneration,
             _layers.RandomColorJitter, _layers.RandomElasticTransform,
             _layers.RandomErasing, _layers.RandomGaussianBlur, _layers.RandomGrayscale,
             _layers.RandomHue, _layers.RandomInvert, _layers.RandomPerspective,
             _layers.RandomPosterization, _layers.RandomSaturation, _layers.RandomSharpness,
             _layers.RandomShear, _layers.Solarization, _layers.ReversibleEmbedding):
    _fn = r_function(_cls, integer_args=_K3_IMAGE_INTS)
    globals()[_fn.__name__] = _fn
    __all__ += [_fn.__name__]
del _cls, _fn
