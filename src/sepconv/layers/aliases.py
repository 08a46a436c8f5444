"""Keras' other public names of its layer classes (``keras.layers.Convolution1D is
keras.layers.Conv1D``): the same classes under these names, exported by sepconv, and
resolved when a model file or config names them.

tf-keras 2.21 and Keras 3.15 export exactly these aliases; both write the canonical name
(``Conv1D``) in configs.  tf-keras resolves an alias found in a config (a file that names
``Convolution1D`` loads there); Keras 3 does not.  sepconv loads such files, as tf-keras
does, and writes the canonical name back.
"""

from .base import KERAS_CLASSES

#: alias -> the canonical Keras class name it stands for
ALIASES = {
    "Convolution1D": "Conv1D", "Convolution2D": "Conv2D", "Convolution3D": "Conv3D",
    "Convolution1DTranspose": "Conv1DTranspose",
    "Convolution2DTranspose": "Conv2DTranspose",
    "Convolution3DTranspose": "Conv3DTranspose",
    "SeparableConvolution1D": "SeparableConv1D",
    "SeparableConvolution2D": "SeparableConv2D",
    "AvgPool1D": "AveragePooling1D", "AvgPool2D": "AveragePooling2D",
    "AvgPool3D": "AveragePooling3D",
    "MaxPool1D": "MaxPooling1D", "MaxPool2D": "MaxPooling2D", "MaxPool3D": "MaxPooling3D",
    "GlobalAvgPool1D": "GlobalAveragePooling1D", "GlobalAvgPool2D": "GlobalAveragePooling2D",
    "GlobalAvgPool3D": "GlobalAveragePooling3D",
    "GlobalMaxPool1D": "GlobalMaxPooling1D", "GlobalMaxPool2D": "GlobalMaxPooling2D",
    "GlobalMaxPool3D": "GlobalMaxPooling3D",
}

KERAS_CLASSES.aliases.update(ALIASES)
globals().update({alias: KERAS_CLASSES[name] for alias, name in ALIASES.items()})

__all__ = sorted(ALIASES)
