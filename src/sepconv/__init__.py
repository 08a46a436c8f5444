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
from .layers import ConvLSTM1D, ConvLSTM2D, ConvLSTM3D  # noqa: E402
from .r import layer_conv_lstm_1d, layer_conv_lstm_2d, layer_conv_lstm_3d  # noqa: E402
__all__ += ["ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "layer_conv_lstm_1d",
            "layer_conv_lstm_2d", "layer_conv_lstm_3d"]
