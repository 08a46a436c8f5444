"""Keras layers, weights and model files in and out (never imports Keras itself).

``from_keras`` / ``to_keras`` carry one layer object; ``load_keras_model``,
``load_keras_weights``, ``save_keras_model`` and ``summary`` read and write model files
with h5py (imported here, not by ``import sepconv``).
"""

from .files import KerasFileError
from .keras import from_keras, to_keras
from .models import (KerasFunctional, load_keras_model, load_keras_weights, save_keras_model,
                     summary)

__all__ = ["from_keras", "to_keras", "load_keras_model", "load_keras_weights",
           "save_keras_model", "summary", "KerasFunctional", "KerasFileError"]
