"""Keras layers on torch modules: one base (``base.Layer``), one file per family."""

from .base import Layer
from .separable import SeparableConv1D

__all__ = ["Layer", "SeparableConv1D"]
from .conv import Conv1D, Conv2D, Conv3D  # noqa: E402
from .conv_transpose import Conv1DTranspose, Conv2DTranspose, Conv3DTranspose  # noqa: E402

__all__ += ["Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
            "Conv3DTranspose"]
