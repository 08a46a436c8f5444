"""Helpers for the tests that compare a sepconv layer with its tf-keras 2.21 twin.

Import only from test modules that have already run ``pytest.importorskip("tensorflow")``
(TensorFlow is imported inside the functions that need it, never here).
"""

from __future__ import annotations

import numpy as np


def strip_config(config):
    """Keras' nested ``{'class_name', 'config'}`` without tf-keras' bookkeeping (``module``,
    ``registered_name``); lists as tuples; floats at float32 precision (tf-keras keeps
    regularizer factors as float32)."""
    if isinstance(config, dict):
        if "class_name" in config:
            return {"class_name": config["class_name"],
                    "config": strip_config(config["config"])}
        return {k: strip_config(v) for k, v in config.items()}
    if isinstance(config, list):
        return tuple(config)
    if isinstance(config, float):
        return float(np.float32(config))
    return config

