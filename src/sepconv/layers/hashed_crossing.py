"""Keras' ``HashedCrossing`` (R: ``layer_hashed_crossing``): crosses of categorical
features by the hashing trick, TensorFlow's ``tf.sparse.cross_hashed`` bit for bit.

A cross of the features ``f_1 .. f_n`` (one value each) is ``FingerprintCat64(...
FingerprintCat64(FingerprintCat64(0xDECAFCAFFE, h(f_1)), h(f_2)) ..., h(f_n)) %
num_bins``, where ``h`` of a string is FarmHash's ``Fingerprint64`` of its UTF-8 bytes
(:func:`sepconv.layers.preprocessing.fingerprint64`, the one ``Hashing`` and the lookups
use) and ``h`` of an integer is its own 64 bits (two's complement), as TensorFlow's
``SparseCrossHashed`` kernel computes it (``tensorflow/core/kernels/sparse_cross_op.cc``,
``FingerprintCat64`` from ``tensorflow/core/platform/fingerprint.h``).
"""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import torch

from .base import Layer, check_bool, check_count
from .preprocessing import (INT, ONE_HOT, _INT_DTYPES, _OutputDtype, _check_output_mode,
                            _split_dtype, as_bytes_array, encoded_shape, fingerprint64)

#: ``tf.sparse.cross_hashed``'s default ``hash_key``.
CROSS_HASH_KEY = 0xDECAFCAFFE
_MUL = np.uint64(0xC6A4A7935BD1E995)
_SHIFT = np.uint64(47)


def _shift_mix(v: np.ndarray) -> np.ndarray:
    return v ^ (v >> _SHIFT)


def fingerprint_cat64(fp1: np.ndarray, fp2: np.ndarray) -> np.ndarray:
    """TensorFlow's ``FingerprintCat64(fp1, fp2)`` on uint64 arrays (arithmetic modulo
    2**64, as the C++ ``uint64``)."""
    with np.errstate(over="ignore"):
        result = fp1 ^ _MUL
        result = result ^ (_shift_mix(fp2 * _MUL) * _MUL)
        result = result * _MUL
        result = _shift_mix(result) * _MUL
        return _shift_mix(result)


def cross_hashed(features: List[np.ndarray], num_bins: int) -> np.ndarray:
    """``tf.sparse.cross_hashed`` of features that hold one value per row: each of
    ``features`` a numpy array of the same shape, integers or UTF-8 ``bytes`` objects;
    returns the int64 bins, of that shape."""
    out = np.full(features[0].shape, CROSS_HASH_KEY, dtype=np.uint64)
    for f in features:
        if f.dtype == object:
            # FarmHash runs in Python: once per distinct string (a batch of categorical
            # features repeats few values), the rest a dict lookup
            flat = f.reshape(-1).tolist()
            distinct = set(flat)
            hash_of = {v: fingerprint64(v) for v in distinct}.__getitem__ \
                if 2 * len(distinct) <= len(flat) else fingerprint64
            h = np.fromiter(map(hash_of, flat), dtype=np.uint64,
                            count=f.size).reshape(f.shape)
        else:
            h = f.astype(np.int64).view(np.uint64)
        out = fingerprint_cat64(out, h)
    return np.asarray(out % np.uint64(num_bins)).astype(np.int64).reshape(features[0].shape)


class HashedCrossing(_OutputDtype, Layer):
    """Keras' ``HashedCrossing(num_bins, output_mode="int", sparse=False)``: crosses two
    or more categorical features into one of ``num_bins`` bins (``hash(concatenate(
    features)) % num_bins``, the module docstring's hash: tf-keras 2.21's and Keras 3.15's
    bins exactly, for string and integer features and mixes of them).

    Call it on a list (or tuple) of at least two features of equal shape ``()``,
    ``(batch,)`` or ``(batch, 1)``: integer tensors or arrays (any integer dtype; floats
    are refused, as in Keras), or strings (``str`` / ``bytes``, lists or numpy arrays of
    them: torch has no string tensors).  Output: int64 bins of that shape
    (``output_mode="int"``; an integer ``dtype`` is honoured), or ``"one_hot"`` rows
    ``(..., num_bins)`` in float32 (the compute dtype; a ``(batch, 1)`` input gives
    ``(batch, num_bins)``; a scalar or a ``(1,)`` input gives ``(num_bins,)`` as in
    tf-keras, where Keras 3, and a layer built from a Keras 3 file, gives ``(1,
    num_bins)``).  ``sparse=True`` is accepted (files carry it) and the output is dense.
    The layer has no weights.  Strings are hashed once per distinct value in a call.
    """

    def __init__(self, num_bins, output_mode="int", sparse=False, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        out_dtype, dtype = _split_dtype(dtype)
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self.num_bins = check_count(num_bins, "num_bins")
        self.output_mode = _check_output_mode(output_mode, (INT, ONE_HOT))
        self.sparse = check_bool(sparse, "sparse")
        self._out_dtype = (out_dtype if out_dtype in _INT_DTYPES else "int64") \
            if self.output_mode == INT else None
        self.built = True

    def _feature(self, value: Any) -> np.ndarray:
        """One feature as a numpy array of int64 or of ``bytes`` objects."""
        if isinstance(value, torch.Tensor):
            if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
                raise ValueError(f"All `HashedCrossing` inputs should have an integer or "
                                 f"string dtype. Received a tensor of dtype {value.dtype}")
            return value.detach().cpu().numpy().astype(np.int64)
        arr = np.asarray(value) if not isinstance(value, (str, bytes)) else None
        if arr is not None and arr.dtype.kind in "iu":
            return arr.astype(np.int64) if arr.dtype != np.uint64 else \
                arr.view(np.int64)
        if arr is not None and arr.dtype.kind not in "USO":
            raise ValueError(f"All `HashedCrossing` inputs should have an integer or string "
                             f"dtype. Received values of dtype {arr.dtype}")
        try:
            return as_bytes_array(value)
        except TypeError as err:
            raise ValueError(f"All `HashedCrossing` inputs should have an integer or string "
                             f"dtype: {err}") from None

    def _features(self, inputs) -> List[np.ndarray]:
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"`HashedCrossing` should be called on a list or tuple of "
                             f"inputs. Received: inputs of type {type(inputs).__name__}")
        if len(inputs) < 2:
            raise ValueError(f"`HashedCrossing` should be called on at least two inputs. "
                             f"Received: {len(inputs)} input")
        features = [self._feature(x) for x in inputs]
        first = features[0].shape
        if len(first) > 2 or (len(first) == 2 and first[-1] != 1):
            raise ValueError(f"All `HashedCrossing` inputs should have shape `[]`, "
                             f"`[batch_size]` or `[batch_size, 1]`. Received: inputs of "
                             f"shape {first}")
        shapes = [f.shape for f in features]
        if any(s != first for s in shapes[1:]):
            raise ValueError(f"All `HashedCrossing` inputs should have equal shape. "
                             f"Received: inputs of shapes {shapes}")
        return features

    def forward(self, inputs) -> torch.Tensor:
        """``inputs``: a list of two or more features (see the class docstring)."""
        features = self._features(inputs)
        bins = torch.from_numpy(cross_hashed(features, self.num_bins))
        return self._encoded(bins, self.num_bins)

    def compute_output_shape(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) < 2 or \
                not all(isinstance(s, (list, tuple)) for s in input_shape):
            raise ValueError(f"`HashedCrossing` should be called on at least two inputs: "
                             f"expected a list of their shapes. Received: "
                             f"input_shape={input_shape}")
        return encoded_shape(tuple(input_shape[0]), self.output_mode, self.num_bins,
                             any_rank=self._any_rank)

    def extra_repr(self) -> str:
        return f"{self.num_bins}, output_mode={self.output_mode!r}, name={self.name!r}"

    def get_config(self) -> Dict[str, Any]:
        config = self.base_config()
        config.update({"num_bins": self.num_bins, "output_mode": self.output_mode,
                       "sparse": self.sparse})
        return config
