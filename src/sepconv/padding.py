"""Keras' padding and output-length arithmetic: the one source of truth.

Every layer, every kernel, ``compute_output_shape`` and the tests take their
padding amounts and output lengths from here.  The rules are TensorFlow's:

- ``"valid"``: no padding; output length ``ceil((L - (K-1)*d) / s)``.
- ``"same"``: total padding ``max((ceil(L/s) - 1)*s + (K-1)*d + 1 - L, 0)``, the
  smaller half on the left (the odd element goes right); output ``ceil(L / s)``.
- ``"causal"``: ``(K-1)*d`` zeros on the left only; output as ``"valid"`` on the
  padded input, i.e. ``ceil(L / s)``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

PADDINGS = ("valid", "same", "causal")


def effective_kernel_size(kernel_size: int, dilation: int) -> int:
    """Span of a dilated kernel: ``(K - 1) * d + 1``."""
    return (kernel_size - 1) * dilation + 1


def padding_amounts(length: int, kernel_size: int, stride: int, dilation: int,
                    padding: str) -> Tuple[int, int]:
    """Zeros to add ``(left, right)`` of a sequence of ``length`` steps."""
    span = effective_kernel_size(kernel_size, dilation)
    if padding == "valid":
        return 0, 0
    if padding == "causal":
        return span - 1, 0
    if padding == "same":
        out = -(-length // stride)
        total = max((out - 1) * stride + span - length, 0)
        return total // 2, total - total // 2
    raise ValueError(f"Invalid value for argument `padding`. Expected one of "
                     f"{PADDINGS}. Received padding={padding!r}")


def conv_output_length(length: Optional[int], kernel_size: int, stride: int,
                       dilation: int, padding: str) -> Optional[int]:
    """Output steps for an input of ``length`` steps (``None`` stays ``None``).

    May be zero or negative for a too-short ``"valid"`` input; callers that run
    the convolution reject that with a message naming the shapes.
    """
    if length is None:
        return None
    left, right = padding_amounts(length, kernel_size, stride, dilation, padding)
    span = effective_kernel_size(kernel_size, dilation)
    padded = length + left + right
    if padded < span:
        return padded - span + 1  # <= 0: invalid, reported by the caller
    return (padded - span) // stride + 1


def padded_output_length(length, kernel_size: int, stride: int, dilation: int,
                         pad_left: int, pad_right: int):
    """Output steps of a convolution over ``length`` steps with explicit padding (the
    kernels' arithmetic once the padding is known; ``length`` may be a symbolic size)."""
    return (length + pad_left + pad_right - effective_kernel_size(kernel_size, dilation)) \
        // stride + 1


def tap_output_range(length: int, tap: int, stride: int, dilation: int, pad_left: int,
                     out_length: int) -> Optional[Tuple[int, int, int]]:
    """Where tap ``tap`` of a convolution over ``length`` steps, padded ``pad_left`` on the
    left, reads the input rather than the padding: ``(t0, t1, row)``, the output steps
    ``t0 <= t < t1`` (of ``out_length``) whose input row ``t * stride + tap * dilation -
    pad_left`` lies in ``[0, length)``, and that row for ``t0``; ``None`` where the tap reads
    only padding (the kernels that sum per tap skip those rows)."""
    offset = tap * dilation - pad_left
    t0 = max(0, -(offset // stride))  # ceil(-offset / stride)
    t1 = min(out_length, (length - 1 - offset) // stride + 1)
    if t1 <= t0:
        return None
    return t0, t1, t0 * stride + offset


def padding_amounts_nd(spatial: Sequence[int], kernel_size: Sequence[int],
                       strides: Sequence[int], dilation: Sequence[int],
                       padding: str) -> Tuple[Tuple[int, int], ...]:
    """``padding_amounts`` per spatial axis: ``((left, right), ...)`` in axis order."""
    return tuple(padding_amounts(n, k, s, d, padding)
                 for n, k, s, d in zip(spatial, kernel_size, strides, dilation))


def conv_output_shape(spatial: Sequence[Optional[int]], kernel_size: Sequence[int],
                      strides: Sequence[int], dilation: Sequence[int],
                      padding: str) -> Tuple[Optional[int], ...]:
    """``conv_output_length`` per spatial axis (``None`` stays ``None``)."""
    return tuple(conv_output_length(n, k, s, d, padding)
                 for n, k, s, d in zip(spatial, kernel_size, strides, dilation))


def deconv_output_length(length: Optional[int], kernel_size: int, stride: int,
                         dilation: int, padding: str,
                         output_padding: Optional[int] = None) -> Optional[int]:
    """Output steps of a transposed convolution (tf-keras' ``deconv_output_length``).

    Without ``output_padding``: ``L * s + max(span - s, 0)`` for ``"valid"``, ``L * s`` for
    ``"same"``; with it: ``(L - 1) * s + span - 2 * pad + output_padding``, ``pad`` being
    ``span // 2`` for ``"same"`` and 0 for ``"valid"`` (``span = (K - 1) * d + 1``).
    ``None`` stays ``None``.
    """
    if length is None:
        return None
    span = effective_kernel_size(kernel_size, dilation)
    if padding not in ("valid", "same"):
        raise ValueError(f"Invalid value for argument `padding`. Expected one of "
                         f"('valid', 'same'). Received padding={padding!r}")
    if output_padding is None:
        return length * stride + max(span - stride, 0) if padding == "valid" \
            else length * stride
    pad = span // 2 if padding == "same" else 0
    return (length - 1) * stride + span - 2 * pad + output_padding


def deconv_output_shape(spatial: Sequence[Optional[int]], kernel_size: Sequence[int],
                        strides: Sequence[int], dilation: Sequence[int], padding: str,
                        output_padding: Optional[Sequence[int]] = None
                        ) -> Tuple[Optional[int], ...]:
    """``deconv_output_length`` per spatial axis (``output_padding`` None or one per axis)."""
    if output_padding is None:
        output_padding = (None,) * len(spatial)
    return tuple(deconv_output_length(n, k, s, d, padding, p) for n, k, s, d, p
                 in zip(spatial, kernel_size, strides, dilation, output_padding))


def deconv_mismatch(spatial: Sequence[Optional[int]], kernel_size: Sequence[int],
                    strides: Sequence[int], dilation: Sequence[int], padding: str,
                    output_padding: Optional[Sequence[int]] = None) -> Optional[str]:
    """Why TensorFlow would refuse this transposed convolution, or ``None``.

    TensorFlow computes it as the gradient of the convolution from the output shape back
    to the input shape: every output length must be > 0 and convolve back (same kernel,
    strides, dilation, padding) to the input length.
    """
    out = deconv_output_shape(spatial, kernel_size, strides, dilation, padding,
                              output_padding)
    for axis, (n, o, k, s, d) in enumerate(zip(spatial, out, kernel_size, strides,
                                               dilation)):
        if n is None:
            continue
        if o <= 0:
            return f"spatial axis {axis} of the output would have length {o}"
        back = conv_output_length(o, k, s, d, padding)
        if back != n:
            return (f"spatial axis {axis}: an input of length {n} gives an output of length "
                    f"{o}, which a convolution with the same arguments takes to length "
                    f"{back}, not {n}")
    return None
