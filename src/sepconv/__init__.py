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
from .layers import (Conv1D, Conv2D, Conv3D, Conv1DTranspose,  # noqa: E402
                     Conv2DTranspose, Conv3DTranspose)
from .r import (layer_conv_1d, layer_conv_2d, layer_conv_3d,  # noqa: E402
                layer_conv_1d_transpose, layer_conv_2d_transpose, layer_conv_3d_transpose)

__all__ += ["Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
            "Conv3DTranspose", "layer_conv_1d", "layer_conv_2d", "layer_conv_3d",
            "layer_conv_1d_transpose", "layer_conv_2d_transpose", "layer_conv_3d_transpose"]
