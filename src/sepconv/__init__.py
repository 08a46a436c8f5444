"""sepconv: Keras' SeparableConv1D (R: ``layer_separable_conv_1d``) for PyTorch."""

from . import functional

__version__ = "0.1.0"
__all__ = ["functional"]
