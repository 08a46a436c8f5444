"""Carry a Keras ``SeparableConv1D`` over to sepconv, and back.

Works with tf-keras 2 (what R keras wraps) and Keras 3 layer objects, duck-typed through
their ``get_config()`` and ``get_weights()``: sepconv never imports Keras.  A Keras model
saved by R (``save_model_weights_hdf5``) is read the same way after loading it in Keras.
"""

from __future__ import annotations

from typing import Any

from ..layers import SeparableConv1D


def from_keras(layer: Any) -> SeparableConv1D:
    """A sepconv layer with ``layer``'s configuration and, if it is built, its weights.

    ``layer``: a tf-keras or Keras 3 ``SeparableConv1D``.  Raises ``TypeError`` for other
    layer types and ``ValueError`` for configurations sepconv cannot represent
    (``groups != 1``).
    """
    kind = type(layer).__name__
    if kind != "SeparableConv1D" or not hasattr(layer, "get_config"):
        raise TypeError(f"from_keras takes a Keras SeparableConv1D layer. Received an "
                        f"object of type {kind}")
    config = dict(layer.get_config())
    if int(config.get("groups", 1) or 1) != 1:
        raise ValueError(f"sepconv's SeparableConv1D has no `groups`. Received "
                         f"groups={config['groups']}")
    config.pop("name", None)  # a fresh unique name: Keras' may already be taken here
    weights = layer.get_weights() if getattr(layer, "built", False) else None
    if weights:
        config.pop("batch_input_shape", None)
        config.pop("batch_shape", None)
    ours = SeparableConv1D.from_config(config)
    if weights:
        ours.set_weights(weights)
    return ours


def to_keras(layer: SeparableConv1D, keras_module: Any):
    """The same layer in Keras: ``to_keras(layer, tf_keras)`` or ``to_keras(layer, keras)``.

    ``keras_module`` is the Keras package to build with (passed in, so sepconv never
    imports one).  The Keras layer gets sepconv's weights if ``layer`` is built.
    """
    config = layer.get_config()
    config.pop("name")
    config.pop("batch_input_shape", None)
    config.pop("groups")  # always 1; Keras 3 rejects the key
    theirs = keras_module.layers.SeparableConv1D.from_config(config)
    if layer.built:
        channels = layer.input_channels
        theirs.build((None, None, channels) if layer.data_format == "channels_last"
                     else (None, channels, None))
        theirs.set_weights(layer.get_weights())
    return theirs
