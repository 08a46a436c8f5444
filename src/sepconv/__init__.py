"""sepconv: Keras' SeparableConv1D (R: ``layer_separable_conv_1d``) for PyTorch.

``import sepconv`` loads torch and numpy only: no Keras, TensorFlow or Triton.
"""

from . import activations, constraints, functional, initializers, padding, regularizers
from .constraints import apply_constraints
from .layers import SeparableConv1D
from .losses import regularization_loss
from .r import layer_separable_conv_1d

__version__ = "0.1.0"
__all__ = ["SeparableConv1D", "layer_separable_conv_1d", "regularization_loss",
           "apply_constraints", "functional", "padding", "activations", "initializers",
           "regularizers", "constraints"]
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
