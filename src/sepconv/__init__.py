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

# Model files (issue 11): imported on first use, so `import sepconv` loads no h5py.
_MODEL_FILE_NAMES = ("load_keras_model", "load_keras_weights", "save_keras_model")
__all__ += list(_MODEL_FILE_NAMES)


def __getattr__(name):
    if name in _MODEL_FILE_NAMES:
        from .interop import models
        return getattr(models, name)
    raise AttributeError(f"module 'sepconv' has no attribute {name!r}")
