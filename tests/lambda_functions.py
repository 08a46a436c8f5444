"""Torch functions for the Lambda layers of tests/test_lambda.py's model files, as
``custom_objects`` (the TF-free child imports this module): by a function's name (Keras 3's
named functions, tf-keras' named ``def``) and by a Lambda layer's name."""

import torch


def rescale(x, factor=3.0):
    """Keras 3 file's named function ``rescale``."""
    return x * factor - 1.0


def lgamma_of_square(x):
    """tf-keras file's named ``def lgamma_of_square`` (its bytecode calls tf.math.lgamma,
    which sepconv does not run: only this function can compute the layer)."""
    return torch.lgamma(x * x + 1.0)


def by_layer_name(t):
    """The layer ``"lgamma_layer"`` (a lambda of tf.math.lgamma) given by its name."""
    return torch.lgamma(t * t + 1.0)


CUSTOM_OBJECTS = {"rescale": rescale, "lgamma_of_square": lgamma_of_square,
                  "lgamma_layer": by_layer_name}
