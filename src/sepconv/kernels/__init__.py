"""Kernels: each computes one separable 1D convolution on already-validated input.

Every kernel has the signature of :func:`sepconv.kernels.reference.separable_conv1d`.
Kernels never know about Keras; :mod:`sepconv.functional` picks one per call.
"""
