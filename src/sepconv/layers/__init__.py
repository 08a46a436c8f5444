"""Keras layers on torch modules: one base (``base.Layer``), one file per family."""

from .base import Layer
from .separable import SeparableConv1D

__all__ = ["Layer", "SeparableConv1D"]
from .reshaping import (Cropping1D, Cropping2D, Cropping3D, UpSampling1D, UpSampling2D,  # noqa: E402
                        UpSampling3D, ZeroPadding1D, ZeroPadding2D, ZeroPadding3D)
__all__ += ["Cropping1D", "Cropping2D", "Cropping3D", "ZeroPadding1D", "ZeroPadding2D",
            "ZeroPadding3D", "UpSampling1D", "UpSampling2D", "UpSampling3D"]
