"""sepconv: Keras' convolution family (``SeparableConv1D``, R: ``layer_separable_conv_1d``,
and its relatives) for PyTorch, with tf-keras' numbers.

``import sepconv`` loads torch and numpy only: no Keras, TensorFlow, Triton or h5py.
"""

from . import (activations, constraints, functional, initializers, losses, optimizers,
               padding, regularizers)
from .constraints import apply_constraints
from .layers import *  # noqa: F401,F403  (every Keras class: layers.__all__)
from .layers import __all__ as _layer_names
from .losses import R_NAMES as _loss_r_names
from .losses import regularization_loss
from .optimizers import R_NAMES as _optimizer_r_names
from .r import *  # noqa: F401,F403  (every R-style layer_* function: r.__all__)
from .r import __all__ as _r_names
from .streaming import Stream, stream

__version__ = "0.1.0"

# Model files: imported on first use, so `import sepconv` loads no h5py.
_MODEL_FILE_NAMES = ("load_keras_model", "load_keras_weights", "save_keras_model")

# R's loss_* and optimizer_* functions
globals().update({_n: getattr(losses, _n) for _n in _loss_r_names})
globals().update({_n: getattr(optimizers, _n) for _n in _optimizer_r_names})

__all__ = (list(_layer_names) + list(_r_names) + list(_MODEL_FILE_NAMES) + list(_loss_r_names)
           + list(_optimizer_r_names)
           + ["load_keras_training", "losses", "optimizers", "regularization_loss",
              "apply_constraints", "stream", "Stream", "functional",
              "padding", "activations", "initializers", "regularizers", "constraints"])


def __getattr__(name):
    if name in ("load_keras_training", "KerasTraining"):
        from .interop import training
        return getattr(training, name)
    if name in _MODEL_FILE_NAMES:
        from .interop import models
        return getattr(models, name)
    raise AttributeError(f"module 'sepconv' has no attribute {name!r}")
