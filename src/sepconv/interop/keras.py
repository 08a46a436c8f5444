"""Carry a Keras layer over to sepconv (any class of the family), and a ``SeparableConv1D`` back.

Works with tf-keras 2 (what R keras wraps) and Keras 3 layer objects, duck-typed through
their ``get_config()`` and ``get_weights()``: sepconv never imports Keras.  A Keras model
saved by R (``save_model_weights_hdf5``) is read the same way after loading it in Keras.
"""

from __future__ import annotations

from typing import Any

from ..layers import SeparableConv1D


def from_keras(layer: Any):
    """A sepconv layer with ``layer``'s configuration and, if it is built, its weights.

    ``layer``: a tf-keras or Keras 3 layer of any class sepconv has (the family table:
    ``sepconv.layers.base.KERAS_CLASSES``); a Keras 3 layer computes with Keras 3's
    formulas where they differ from tf-keras' (as ``load_keras_model`` does for its
    files).  Raises ``TypeError`` for objects that are not Keras layers or have no sepconv
    class, ``ValueError`` for configurations sepconv cannot represent.
    """
    from . import files as _files
    from . import models as _models

    kind = type(layer).__name__
    if not hasattr(layer, "get_config") or not hasattr(layer, "get_weights"):
        raise TypeError(f"from_keras takes a Keras layer. Received an object of type {kind}")
    from ..layers import base as _base
    if kind not in _base.KERAS_CLASSES:
        raise TypeError(f"from_keras: sepconv has no {kind} layer. Supported: "
                        f"{', '.join(sorted(_base.KERAS_CLASSES))}")
    config = dict(layer.get_config())
    config.pop("name", None)  # a fresh unique name: Keras' may already be taken here
    weights = layer.get_weights() if getattr(layer, "built", False) else []
    flavour = "keras3" if type(layer).__module__.split(".")[0] == "keras" else "tf_keras"
    try:
        ours = _models.build_layer({"class_name": kind, "config": config}, flavour)
        if weights:
            ours.set_weights(weights)
    except _files.KerasFileError as err:
        raise ValueError(str(err)) from None
    return ours


def to_keras(layer: SeparableConv1D, keras_module: Any):
    """The same layer in Keras: ``to_keras(layer, tf_keras)`` or ``to_keras(layer, keras)``.

    ``keras_module`` is the Keras package to build with (passed in, so sepconv never
    imports one).  The Keras layer gets sepconv's weights if ``layer`` is built.  For other
    classes and whole models, ``sepconv.save_keras_model`` writes a file tf-keras loads.
    """
    if not isinstance(layer, SeparableConv1D):
        raise TypeError("to_keras carries a SeparableConv1D; for other layers and whole "
                        "models use sepconv.save_keras_model(module, 'model.h5'). Received "
                        f"{type(layer).__name__}")
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
