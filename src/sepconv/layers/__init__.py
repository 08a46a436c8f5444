"""Keras layers on torch modules: one base (``base.Layer``), one file per family."""

from .base import Layer
from .separable import SeparableConv1D

__all__ = ["Layer", "SeparableConv1D"]
# The core layers a model file needs (core.py, normalization.py, pooling.py, merging.py).
from .core import (Activation, Dense, Dropout, ELU, Embedding, Flatten,  # noqa: E402,F401
                   GaussianNoise, InputLayer, LeakyReLU, Permute, PReLU, ReLU,
                   RepeatVector, Reshape, Softmax, SpatialDropout1D, SpatialDropout2D, SpatialDropout3D, TimeDistributed)
from .normalization import BatchNormalization, LayerNormalization  # noqa: E402,F401
from .pooling import (AveragePooling1D, AveragePooling2D, AveragePooling3D,  # noqa: E402,F401
                      GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAveragePooling3D,
                      GlobalMaxPooling1D, GlobalMaxPooling2D, GlobalMaxPooling3D, MaxPooling1D,
                      MaxPooling2D, MaxPooling3D)
from .merging import (Add, Average, Concatenate, Maximum, Minimum,  # noqa: E402,F401
                      Multiply, Subtract)

CORE_LAYERS = ["InputLayer", "Dense", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU",
               "Softmax", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
               "GaussianNoise", "Flatten", "Reshape", "Permute", "RepeatVector", "Embedding",
               "TimeDistributed", "BatchNormalization", "LayerNormalization", "MaxPooling1D",
               "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
               "AveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
               "GlobalMaxPooling3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
               "GlobalAveragePooling3D", "Add", "Subtract", "Multiply", "Average", "Maximum",
               "Minimum", "Concatenate"]
__all__ += CORE_LAYERS
from .depthwise import DepthwiseConv1D, DepthwiseConv2D  # noqa: E402
from .separable import SeparableConv2D  # noqa: E402

__all__ += ["DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv2D"]
from .reshaping import (Cropping1D, Cropping2D, Cropping3D, UpSampling1D, UpSampling2D,  # noqa: E402
                        UpSampling3D, ZeroPadding1D, ZeroPadding2D, ZeroPadding3D)
__all__ += ["Cropping1D", "Cropping2D", "Cropping3D", "ZeroPadding1D", "ZeroPadding2D",
            "ZeroPadding3D", "UpSampling1D", "UpSampling2D", "UpSampling3D"]
from .conv_lstm import ConvLSTM1D, ConvLSTM2D, ConvLSTM3D  # noqa: E402
__all__ += ["ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"]
from .conv import Conv1D, Conv2D, Conv3D  # noqa: E402
from .conv_transpose import Conv1DTranspose, Conv2DTranspose, Conv3DTranspose  # noqa: E402

__all__ += ["Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
            "Conv3DTranspose"]
