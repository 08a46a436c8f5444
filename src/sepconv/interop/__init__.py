"""Keras weights and configs in and out (never imports Keras itself)."""

from .keras import from_keras, to_keras

__all__ = ["from_keras", "to_keras"]
