"""sepconv: Keras' SeparableConv1D (R: ``layer_separable_conv_1d``) for PyTorch.

``import sepconv`` loads torch and numpy only: no Keras, TensorFlow or Triton.
"""

from . import activations, constraints, functional, initializers, padding, regularizers
from .constraints import apply_constraints
from .layers import SeparableConv1D
from .losses import regularization_loss
from .r import layer_separable_conv_1d
from .streaming import Stream, stream

__version__ = "0.1.0"
__all__ = ["SeparableConv1D", "layer_separable_conv_1d", "regularization_loss",
           "apply_constraints", "functional", "padding", "activations", "initializers",
           "regularizers", "constraints"]
from .layers import (  # noqa: E402
    InputLayer, Dense, Activation, ReLU, LeakyReLU, PReLU, ELU, Softmax, Dropout,
    SpatialDropout1D, SpatialDropout2D, SpatialDropout3D, GaussianNoise, Flatten, Reshape,
    Permute, RepeatVector, Embedding, TimeDistributed, BatchNormalization,
    LayerNormalization, MaxPooling1D, MaxPooling2D, MaxPooling3D, AveragePooling1D,
    AveragePooling2D, AveragePooling3D, GlobalMaxPooling1D, GlobalMaxPooling2D,
    GlobalMaxPooling3D, GlobalAveragePooling1D, GlobalAveragePooling2D,
    GlobalAveragePooling3D, Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate)
from .r import (  # noqa: E402
    layer_input_layer, layer_dense, layer_activation, layer_re_lu, layer_activation_relu,
    layer_leaky_re_lu, layer_activation_leaky_relu, layer_p_re_lu,
    layer_activation_parametric_relu, layer_elu, layer_activation_elu, layer_softmax,
    layer_activation_softmax, layer_dropout, layer_spatial_dropout_1d,
    layer_spatial_dropout_2d, layer_spatial_dropout_3d, layer_gaussian_noise, layer_flatten,
    layer_reshape, layer_permute, layer_repeat_vector, layer_embedding,
    layer_time_distributed, time_distributed, layer_batch_normalization,
    layer_layer_normalization, layer_max_pooling_1d, layer_max_pooling_2d,
    layer_max_pooling_3d, layer_average_pooling_1d, layer_average_pooling_2d,
    layer_average_pooling_3d, layer_global_max_pooling_1d, layer_global_max_pooling_2d,
    layer_global_max_pooling_3d, layer_global_average_pooling_1d,
    layer_global_average_pooling_2d, layer_global_average_pooling_3d, layer_add,
    layer_subtract, layer_multiply, layer_average, layer_maximum, layer_minimum,
    layer_concatenate)
__all__ += [
    "InputLayer", "Dense", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "Flatten", "Reshape", "Permute", "RepeatVector", "Embedding", "TimeDistributed",
    "BatchNormalization", "LayerNormalization", "MaxPooling1D", "MaxPooling2D",
    "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D", "Add",
    "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
    "layer_input_layer", "layer_dense", "layer_activation", "layer_re_lu",
    "layer_activation_relu", "layer_leaky_re_lu", "layer_activation_leaky_relu",
    "layer_p_re_lu", "layer_activation_parametric_relu", "layer_elu",
    "layer_activation_elu", "layer_softmax", "layer_activation_softmax", "layer_dropout",
    "layer_spatial_dropout_1d", "layer_spatial_dropout_2d", "layer_spatial_dropout_3d",
    "layer_gaussian_noise", "layer_flatten", "layer_reshape", "layer_permute",
    "layer_repeat_vector", "layer_embedding", "layer_time_distributed", "time_distributed",
    "layer_batch_normalization", "layer_layer_normalization", "layer_max_pooling_1d",
    "layer_max_pooling_2d", "layer_max_pooling_3d", "layer_average_pooling_1d",
    "layer_average_pooling_2d", "layer_average_pooling_3d", "layer_global_max_pooling_1d",
    "layer_global_max_pooling_2d", "layer_global_max_pooling_3d",
    "layer_global_average_pooling_1d", "layer_global_average_pooling_2d",
    "layer_global_average_pooling_3d", "layer_add", "layer_subtract", "layer_multiply",
    "layer_average", "layer_maximum", "layer_minimum", "layer_concatenate"]

from .layers import DepthwiseConv1D, DepthwiseConv2D, SeparableConv2D  # noqa: E402
from .r import layer_depthwise_conv_1d, layer_depthwise_conv_2d, layer_separable_conv_2d  # noqa: E402,E501

__all__ += ["DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv2D", "layer_depthwise_conv_1d",
            "layer_depthwise_conv_2d", "layer_separable_conv_2d"]

# Model files (issue 11): imported on first use, so `import sepconv` loads no h5py.
_MODEL_FILE_NAMES = ("load_keras_model", "load_keras_weights", "save_keras_model")
__all__ += list(_MODEL_FILE_NAMES)


def __getattr__(name):
    if name in _MODEL_FILE_NAMES:
        from .interop import models
        return getattr(models, name)
    raise AttributeError(f"module 'sepconv' has no attribute {name!r}")
__all__ += ["stream", "Stream"]
from .layers import (Cropping1D, Cropping2D, Cropping3D, UpSampling1D, UpSampling2D,  # noqa: E402
                     UpSampling3D, ZeroPadding1D, ZeroPadding2D, ZeroPadding3D)
from .r import (layer_cropping_1d, layer_cropping_2d, layer_cropping_3d,  # noqa: E402
                layer_upsampling_1d, layer_upsampling_2d, layer_upsampling_3d,
                layer_zero_padding_1d, layer_zero_padding_2d, layer_zero_padding_3d)
__all__ += ["Cropping1D", "Cropping2D", "Cropping3D", "ZeroPadding1D", "ZeroPadding2D",
            "ZeroPadding3D", "UpSampling1D", "UpSampling2D", "UpSampling3D",
            "layer_cropping_1d", "layer_cropping_2d", "layer_cropping_3d",
            "layer_zero_padding_1d", "layer_zero_padding_2d", "layer_zero_padding_3d",
            "layer_upsampling_1d", "layer_upsampling_2d", "layer_upsampling_3d"]
from .layers import ConvLSTM1D, ConvLSTM2D, ConvLSTM3D  # noqa: E402
from .r import layer_conv_lstm_1d, layer_conv_lstm_2d, layer_conv_lstm_3d  # noqa: E402
__all__ += ["ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "layer_conv_lstm_1d",
            "layer_conv_lstm_2d", "layer_conv_lstm_3d"]
from .layers import (Conv1D, Conv2D, Conv3D, Conv1DTranspose,  # noqa: E402
                     Conv2DTranspose, Conv3DTranspose)
from .r import (layer_conv_1d, layer_conv_2d, layer_conv_3d,  # noqa: E402
                layer_conv_1d_transpose, layer_conv_2d_transpose, layer_conv_3d_transpose)

__all__ += ["Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
            "Conv3DTranspose", "layer_conv_1d", "layer_conv_2d", "layer_conv_3d",
            "layer_conv_1d_transpose", "layer_conv_2d_transpose", "layer_conv_3d_transpose"]
