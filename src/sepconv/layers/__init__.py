"""Keras layers on torch modules: one base (``base.Layer``), one file per family."""

from .base import Layer
from .separable import SeparableConv1D

__all__ = ["Layer", "SeparableConv1D"]
from .depthwise import DepthwiseConv1D, DepthwiseConv2D  # noqa: E402
from .separable import SeparableConv2D  # noqa: E402

__all__ += ["DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv2D"]
