"""Keras layers on torch modules: one base (``base.Layer``), one file per family."""

from .base import Layer
from .separable import SeparableConv1D

__all__ = ["Layer", "SeparableConv1D"]
