"""Keras' preprocessing layers at the front of tabular, sequence and text models:
``StringLookup``, ``IntegerLookup``, ``TextVectorization``, ``Discretization``,
``CategoryEncoding`` and ``Hashing`` (R: ``layer_string_lookup``, ``layer_integer_lookup``,
``layer_text_vectorization``, ``layer_discretization``, ``layer_category_encoding``,
``layer_hashing``; ``adapt()`` as for ``Normalization``).

Torch has no string tensors: the string layers take Python ``str`` / ``bytes``, (nested)
lists of them or numpy arrays of ``str`` / ``bytes`` / objects, do the lookup in Python and
numpy, and return torch ``int64`` tensors (``output_mode="int"``) or ``float32`` ones
(``one_hot`` / ``multi_hot`` / ``count`` / ``tf_idf``).  Numeric layers take tensors or
arrays.  ``StringLookup(invert=True)`` returns a numpy array of ``str``.

They follow tf-keras 2.21 (what R keras wraps), checked against it and Keras 3.15 in
``tests/test_preprocessing_lookup.py``; the facts that matter:

- Text is handled as UTF-8 bytes, as TensorFlow does: ``lower`` is TensorFlow's
  ``tf.strings.lower`` without an encoding, which lowercases ASCII letters only ("ÉÉ" stays
  "ÉÉ", in tf-keras and Keras 3 alike); ``whitespace`` splits on ASCII whitespace only
  (space, ``\\t\\n\\v\\f\\r``: a no-break space is part of a token); punctuation is TF's regex
  ``[!"#$%&()\\*\\+,-\\./:;<=>?@\\[\\\\\\]^_`{|}~\\']``.
- ``adapt`` orders the vocabulary by count, then ties by the token, both descending (the
  tokens' bytes for strings, the values for integers), as tf-keras' ``np.lexsort``.
- An out-of-vocabulary token with ``num_oov_indices > 1`` goes to OOV index
  ``FarmHash Fingerprint64(token) % num_oov_indices`` (strings; TensorFlow's
  ``to_hash_bucket_fast``) or ``token % num_oov_indices`` (integers); ``Hashing`` uses the
  same Fingerprint64 (pure Python here, :func:`fingerprint64`); a ``salt`` selects
  TensorFlow's keyed SipHash-2-4 (:func:`siphash64`).
- ``Discretization.adapt`` reproduces tf-keras' approximate quantiles (its summaries of
  batches of 32, merged and compressed); a layer loaded from a tf-keras ``.keras`` file gets
  its boundaries from the saved summary, as tf-keras does.  Boundaries are rounded to float32
  (TensorFlow's ``Bucketize`` takes a float list).
- ``sparse=True`` is accepted (files carry it) and the output is a dense tensor.
- Output dtypes: int64 for ``output_mode="int"`` (an integer ``dtype`` is honoured; a float
  one, which Keras 3 writes into its configs, gives int64), float32 (the compute dtype)
  otherwise.
- Where tf-keras forgets adapted state, sepconv keeps it: ``get_config()`` holds the learned
  vocabulary (special tokens first), idf weights and bin boundaries (tf-keras writes None and
  keeps them as ``.keras`` assets or weights), and ``state_dict()`` carries them as torch's
  extra state; ``save_keras_model`` writes them where tf-keras (.h5) and Keras 3 (.keras)
  read them.
"""

from __future__ import annotations

import collections
import itertools
import numbers
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .. import activations as _activations
from .base import Layer, check_bool, check_count

INT, ONE_HOT, MULTI_HOT, COUNT, TF_IDF = "int", "one_hot", "multi_hot", "count", "tf_idf"
_INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
#: tf-keras' ``DEFAULT_STRIP_REGEX`` (text_vectorization.py), on UTF-8 bytes.
STRIP_REGEX = re.compile(rb'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']')
_INT64_MAX = np.iinfo(np.int64).max


# -- FarmHash Fingerprint64 (TensorFlow's tf.strings.to_hash_bucket_fast) -----------------

_M64 = 0xFFFFFFFFFFFFFFFF
_K0, _K1, _K2 = 0xc3a5c85c97cb3127, 0xb492b66fbe98f273, 0x9ae16a3b2f90404f


def _rot(v: int, s: int) -> int:
    return v if s == 0 else ((v >> s) | (v << (64 - s))) & _M64


def _f64(b: bytes, i: int) -> int:
    return int.from_bytes(b[i:i + 8], "little")


def _f32(b: bytes, i: int) -> int:
    return int.from_bytes(b[i:i + 4], "little")


def _smix(v: int) -> int:
    return v ^ (v >> 47)


def _h16(u: int, v: int, mul: int) -> int:
    a = ((u ^ v) * mul) & _M64
    a ^= a >> 47
    b = ((v ^ a) * mul) & _M64
    b ^= b >> 47
    return (b * mul) & _M64


def _weak32(s: bytes, i: int, a: int, b: int):
    w, x, y, z = _f64(s, i), _f64(s, i + 8), _f64(s, i + 16), _f64(s, i + 24)
    a = (a + w) & _M64
    b = _rot((b + a + z) & _M64, 21)
    c = a
    a = (a + x + y) & _M64
    b = (b + _rot(a, 44)) & _M64
    return (a + z) & _M64, (b + c) & _M64


def fingerprint64(data: bytes) -> int:
    """FarmHash's ``Fingerprint64`` (farmhashna ``Hash64``) of ``data``, TensorFlow's
    string fingerprint: an unsigned 64-bit int (checked against
    ``tf.strings.to_hash_bucket_fast``)."""
    s, n = bytes(data), len(data)
    if n <= 16:
        if n >= 8:
            mul = _K2 + n * 2
            a = (_f64(s, 0) + _K2) & _M64
            b = _f64(s, n - 8)
            c = (_rot(b, 37) * mul + a) & _M64
            d = ((_rot(a, 25) + b) * mul) & _M64
            return _h16(c, d, mul)
        if n >= 4:
            mul = _K2 + n * 2
            a = _f32(s, 0)
            return _h16((n + (a << 3)) & _M64, _f32(s, n - 4), mul)
        if n > 0:
            y = s[0] + (s[n >> 1] << 8)
            z = n + (s[n - 1] << 2)
            return (_smix(((y * _K2) ^ (z * _K0)) & _M64) * _K2) & _M64
        return _K2
    if n <= 32:
        mul = _K2 + n * 2
        a = (_f64(s, 0) * _K1) & _M64
        b = _f64(s, 8)
        c = (_f64(s, n - 8) * mul) & _M64
        d = (_f64(s, n - 16) * _K2) & _M64
        return _h16((_rot((a + b) & _M64, 43) + _rot(c, 30) + d) & _M64,
                    (a + _rot((b + _K2) & _M64, 18) + c) & _M64, mul)
    if n <= 64:
        mul = _K2 + n * 2
        a = (_f64(s, 0) * _K2) & _M64
        b = _f64(s, 8)
        c = (_f64(s, n - 8) * mul) & _M64
        d = (_f64(s, n - 16) * _K2) & _M64
        y = (_rot((a + b) & _M64, 43) + _rot(c, 30) + d) & _M64
        z = _h16(y, (a + _rot((b + _K2) & _M64, 18) + c) & _M64, mul)
        e = (_f64(s, 16) * mul) & _M64
        f = _f64(s, 24)
        g = ((y + _f64(s, n - 32)) * mul) & _M64
        h = ((z + _f64(s, n - 24)) * mul) & _M64
        return _h16((_rot((e + f) & _M64, 43) + _rot(g, 30) + h) & _M64,
                    (e + _rot((f + a) & _M64, 18) + g) & _M64, mul)
    seed = 81
    x = seed
    y = (seed * _K1 + 113) & _M64
    z = (_smix((y * _K2 + 113) & _M64) * _K2) & _M64
    v0 = v1 = w0 = w1 = 0
    x = (x * _K2 + _f64(s, 0)) & _M64
    end = ((n - 1) // 64) * 64
    last64 = end + ((n - 1) & 63) - 63
    i = 0
    while True:
        x = (_rot((x + y + v0 + _f64(s, i + 8)) & _M64, 37) * _K1) & _M64
        y = (_rot((y + v1 + _f64(s, i + 48)) & _M64, 42) * _K1) & _M64
        x ^= w1
        y = (y + v0 + _f64(s, i + 40)) & _M64
        z = (_rot((z + w0) & _M64, 33) * _K1) & _M64
        v0, v1 = _weak32(s, i, (v1 * _K1) & _M64, (x + w0) & _M64)
        w0, w1 = _weak32(s, i + 32, (z + w1) & _M64, (y + _f64(s, i + 16)) & _M64)
        z, x = x, z
        i += 64
        if i == end:
            break
    mul = _K1 + ((z & 0xff) << 1)
    i = last64
    w0 = (w0 + ((n - 1) & 63)) & _M64
    v0 = (v0 + w0) & _M64
    w0 = (w0 + v0) & _M64
    x = (_rot((x + y + v0 + _f64(s, i + 8)) & _M64, 37) * mul) & _M64
    y = (_rot((y + v1 + _f64(s, i + 48)) & _M64, 42) * mul) & _M64
    x ^= (w1 * 9) & _M64
    y = (y + v0 * 9 + _f64(s, i + 40)) & _M64
    z = (_rot((z + w0) & _M64, 33) * mul) & _M64
    v0, v1 = _weak32(s, i, (v1 * mul) & _M64, (x + w0) & _M64)
    w0, w1 = _weak32(s, i + 32, (z + w1) & _M64, (y + _f64(s, i + 16)) & _M64)
    z, x = x, z
    return _h16((_h16(v0, w0, mul) + _smix(y) * _K0 + z) & _M64,
                (_h16(v1, w1, mul) + x) & _M64, mul)


def _rotl(v: int, s: int) -> int:
    return ((v << s) | (v >> (64 - s))) & _M64


def siphash64(data: bytes, k0: int, k1: int) -> int:
    """SipHash-2-4 of ``data`` with the 128-bit key ``(k0, k1)``: TensorFlow's
    ``to_hash_bucket_strong(key=[k0, k1])`` (``Hashing(salt=...)``)."""
    k0, k1 = int(k0) & _M64, int(k1) & _M64
    v0, v1 = k0 ^ 0x736f6d6570736575, k1 ^ 0x646f72616e646f6d
    v2, v3 = k0 ^ 0x6c7967656e657261, k1 ^ 0x7465646279746573

    def rounds(n, v0, v1, v2, v3):
        for _ in range(n):
            v0 = (v0 + v1) & _M64
            v1 = _rotl(v1, 13) ^ v0
            v0 = _rotl(v0, 32)
            v2 = (v2 + v3) & _M64
            v3 = _rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & _M64
            v3 = _rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & _M64
            v1 = _rotl(v1, 17) ^ v2
            v2 = _rotl(v2, 32)
        return v0, v1, v2, v3

    data = bytes(data)
    n = len(data)
    full = n - n % 8
    for i in range(0, full, 8):
        m = int.from_bytes(data[i:i + 8], "little")
        v3 ^= m
        v0, v1, v2, v3 = rounds(2, v0, v1, v2, v3)
        v0 ^= m
    last = int.from_bytes(data[full:], "little") | ((n & 0xff) << 56)
    v3 ^= last
    v0, v1, v2, v3 = rounds(2, v0, v1, v2, v3)
    v0 ^= last
    v2 ^= 0xff
    v0, v1, v2, v3 = rounds(4, v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


# -- inputs -------------------------------------------------------------------------------

def _to_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (str, np.str_)):
        return str(value).encode("utf-8")
    if isinstance(value, np.bytes_):
        return bytes(value)
    raise TypeError(f"Expected strings (str or bytes). Received {value!r} of type "
                    f"{type(value).__name__}")


def as_bytes_array(inputs: Any) -> np.ndarray:
    """``inputs`` (str, bytes, nested lists or numpy arrays of them) as a numpy object array
    of UTF-8 ``bytes`` of the same shape."""
    if isinstance(inputs, torch.Tensor):
        raise TypeError("This layer takes strings (str, bytes, lists or numpy arrays of "
                        "them); torch tensors cannot hold strings")
    if isinstance(inputs, (str, bytes, np.str_, np.bytes_)):
        out = np.empty((), dtype=object)
        out[()] = _to_bytes(inputs)
        return out
    arr = np.asarray(inputs, dtype=object) if not isinstance(inputs, np.ndarray) \
        else inputs.astype(object)
    flat = [_to_bytes(v) for v in arr.reshape(-1)]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(arr.shape)


def _as_int_array(inputs: Any, name: str) -> np.ndarray:
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.detach().cpu().numpy()
    arr = np.asarray(inputs)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise TypeError(f"Layer {name!r} expects integers. Received values of dtype "
                            f"{arr.dtype} that are not whole numbers")
    elif arr.dtype.kind not in "iub":
        raise TypeError(f"Layer {name!r} expects integers. Received input of dtype "
                        f"{arr.dtype}")
    return arr.astype(np.int64)


def _check_output_mode(value: Any, allowed: Sequence[str]) -> str:
    if value == "binary":
        value = MULTI_HOT
    if value == "tf-idf":
        value = TF_IDF
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"Invalid value for argument `output_mode`. Expected one of "
                         f"{tuple(allowed)}. Received output_mode={value!r}")
    return value


def _check_optional_count(value: Any, name: str, minimum: int = 1) -> Optional[int]:
    return None if value is None else check_count(value, name, minimum)


def _split_dtype(dtype: Any):
    """(non-float output dtype name or None, dtype for the base class)."""
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name", dtype)
    if isinstance(dtype, torch.dtype) and not dtype.is_floating_point:
        dtype = str(dtype).replace("torch.", "")
    if isinstance(dtype, str) and (dtype.lower() in _INT_DTYPES or
                                   dtype.lower() in ("string", "bool")):
        return dtype.lower(), None
    return None, dtype


def encode_categorical(indices: torch.Tensor, output_mode: str, depth: int,
                       dtype: torch.dtype = torch.float32,
                       count_weights: Optional[torch.Tensor] = None,
                       idf_weights: Optional[torch.Tensor] = None,
                       any_rank: bool = False) -> torch.Tensor:
    """tf-keras' ``encode_categorical_inputs``: ``indices`` (int64) to ``one_hot`` /
    ``multi_hot`` / ``count`` / ``tf_idf`` rows of ``depth`` (bincount over the last axis;
    indices outside ``[0, depth)`` are dropped, as ``tf.math.bincount(maxlength=depth)``
    drops them).  A scalar is one sample; ``one_hot`` adds an axis unless the last one has
    size 1; at most rank 2 after that (tf-keras' rule).  With ``any_rank``, Keras 3's
    ``encode_categorical_inputs`` (every backend): any rank; ``one_hot`` keeps the leading
    axes, ``(..., depth)`` (a scalar gives ``(1, depth)``); ``multi_hot`` / ``count`` /
    ``tf_idf`` of a rank >= 3 input bin along axis 1 (Keras 3's reduction axis), not the
    last: ``(batch, steps, features)`` gives ``(batch, features, depth)``; a scalar or a
    ``(1,)`` input's ``one_hot`` is ``(1, depth)``."""
    if output_mode == INT:
        return indices.to(dtype)
    x = indices
    if x.dim() == 0:
        x = x.reshape(1)
    if any_rank and output_mode != ONE_HOT and x.dim() > 2:
        x = torch.movedim(x, 1, -1)
        if count_weights is not None:
            count_weights = torch.movedim(count_weights, 1, -1)
    if output_mode == ONE_HOT and (x.shape[-1] != 1 or (any_rank and x.dim() == 1)):
        x = x.unsqueeze(-1)  # (Keras 3 squeezes a last axis of 1 from rank 2 on only)
    if x.dim() > 2 and any_rank:
        lead = x.shape[:-1]
        out = encode_categorical(x.reshape(-1, x.shape[-1]), output_mode, depth, dtype,
                                 None if count_weights is None else
                                 count_weights.reshape(-1, x.shape[-1]), idf_weights)
        return out.reshape(*lead, depth)
    if x.dim() > 2:
        raise ValueError(f"When output_mode is not `'int'`, maximum supported output rank "
                         f"is 2. Received output_mode {output_mode} and input shape "
                         f"{tuple(indices.shape)}, which would result in output rank "
                         f"{x.dim()}.")
    rows = x.reshape(1, -1) if x.dim() == 1 else x
    out = torch.zeros((rows.shape[0], depth), dtype=dtype, device=x.device)
    valid = (rows >= 0) & (rows < depth)
    idx = torch.where(valid, rows, torch.zeros_like(rows))
    if output_mode in (MULTI_HOT, ONE_HOT):
        out.scatter_add_(1, idx, valid.to(dtype))  # (dropped ids add 0 at index 0)
        out = (out > 0).to(dtype)
    else:
        w = valid.to(dtype) if count_weights is None else \
            torch.where(valid, count_weights.reshape(rows.shape).to(dtype),
                        torch.zeros((), dtype=dtype))
        out.scatter_add_(1, idx, w)
    if output_mode == TF_IDF:
        out = out * idf_weights.to(dtype)
    return out.reshape(depth) if x.dim() == 1 else out


def encoded_shape(input_shape, output_mode: str, depth: int, any_rank: bool = False) -> Tuple:
    """The shape :func:`encode_categorical` gives for indices of ``input_shape`` (``int``:
    that shape)."""
    input_shape = tuple(input_shape)
    if output_mode == INT:
        return input_shape
    if any_rank and output_mode == ONE_HOT and len(input_shape) <= 1:
        return (input_shape or (1,)) + (depth,)
    if any_rank and output_mode != ONE_HOT and len(input_shape) > 2:
        return input_shape[:1] + input_shape[2:] + (depth,)
    if output_mode == ONE_HOT and (not input_shape or input_shape[-1] != 1):
        return input_shape + (depth,)
    return input_shape[:-1] + (depth,)


class _OutputDtype:
    """The categorical layers' output dtype ``_out_dtype`` (None: the dtype policy's), which
    their config writes as ``dtype``, as tf-keras does; built from a Keras 3 file's config
    (``from_config`` under ``keras_flavour("keras3")``), their encodings take inputs of any
    rank as Keras 3's do (tf-keras: at most rank 2 out)."""

    _ANY_RANK_IN_KERAS3 = True
    _any_rank = False  # set by from_config for a Keras 3 file's layer

    @classmethod
    def from_config(cls, config):
        layer = super().from_config(config)
        layer._any_rank = cls._ANY_RANK_IN_KERAS3 and \
            _activations.current_flavour() == "keras3"
        return layer

    def base_config(self) -> Dict[str, Any]:
        config = super().base_config()
        if self._out_dtype is not None:
            config["dtype"] = self._out_dtype
        return config

    def _encoded(self, indices: torch.Tensor, depth: int) -> torch.Tensor:
        """``indices`` in ``_out_dtype`` (``int``), else :func:`encode_categorical`'s rows of
        ``depth`` in the compute dtype."""
        if self.output_mode == INT:
            return indices.to(getattr(torch, self._out_dtype))
        return encode_categorical(indices, self.output_mode, depth, self.dtype_policy.compute,
                                  any_rank=self._any_rank)


# -- lookups -------------------------------------------------------------------------------

class _IndexLookup(_OutputDtype, Layer):
    """What ``StringLookup`` and ``IntegerLookup`` share (tf-keras' ``IndexLookup``)."""

    #: The dtype of the InputLayer a saved Sequential starting with this layer gets.
    KERAS_INPUT_DTYPE: Optional[str] = None

    _IS_STRING = True

    def _setup(self, max_tokens, num_oov_indices, mask_token, oov_token, vocabulary,
               idf_weights, invert, output_mode, sparse, pad_to_max_tokens, out_dtype):
        self.max_tokens = _check_optional_count(max_tokens, "max_tokens")
        if self.max_tokens is not None and self.max_tokens <= 1:
            raise ValueError(f"Invalid value for argument `max_tokens`. If set, it must be "
                             f"greater than 1. Received: max_tokens={max_tokens}")
        self.pad_to_max_tokens = check_bool(pad_to_max_tokens, "pad_to_max_tokens")
        if self.pad_to_max_tokens and self.max_tokens is None:
            raise ValueError(f"If pad_to_max_tokens is True, must set `max_tokens`. "
                             f"Received: max_tokens={max_tokens}")
        self.num_oov_indices = check_count(num_oov_indices, "num_oov_indices", 0)
        self.output_mode = _check_output_mode(output_mode, (INT, ONE_HOT, MULTI_HOT, COUNT,
                                                            TF_IDF))
        self.invert = check_bool(invert, "invert")
        self.sparse = check_bool(sparse, "sparse")
        if self.invert and self.output_mode != INT:
            raise ValueError(f"`output_mode` must be `'int'` when `invert` is true. "
                             f"Received: output_mode={self.output_mode}")
        if self.sparse and self.output_mode == INT:
            raise ValueError(f"`sparse` may only be true if `output_mode` is `'one_hot'`, "
                             f"`'multi_hot'`, `'count'` or `'tf_idf'`. Received: "
                             f"sparse={sparse} and output_mode={self.output_mode}")
        if idf_weights is not None and self.output_mode != TF_IDF:
            raise ValueError(f"`idf_weights` should only be set if `output_mode` is "
                             f"`'tf_idf'`. Received: idf_weights={idf_weights} and "
                             f"output_mode={self.output_mode}")
        if out_dtype is not None and self.output_mode == INT and \
                out_dtype not in _INT_DTYPES:
            raise ValueError(f"When `output_mode='int'`, `dtype` should be an integer "
                             f"type. Received: dtype={out_dtype}")
        if out_dtype is None and self.output_mode == INT:
            out_dtype = "int64"
        if self.output_mode != INT:
            out_dtype = None  # floats (tf-keras drops a legacy int64 dtype there)
        self._out_dtype = out_dtype
        self.mask_token = self._token(mask_token, "mask_token")
        self.oov_token = self._token(oov_token, "oov_token")
        self.input_vocabulary = vocabulary
        self.input_idf_weights = idf_weights
        self._frozen_vocab_size: Optional[int] = None
        self._tokens: List[Any] = []          # learned tokens (keys), in index order
        self._index: Dict[Any, int] = {}
        self.idf: Optional[torch.Tensor] = None
        #: Keras 3's IntegerLookup ``oov_method`` / the ``salt`` of a Keras 3 config (its
        #: OOV buckets by SipHash with that key).
        self.oov_method = "floormod"
        self.salt = None
        self.built = True
        if vocabulary is not None:
            self.set_vocabulary(vocabulary, idf_weights)
        elif idf_weights is not None:
            raise ValueError("`idf_weights` must be set together with `vocabulary`")

    # tokens as keys: bytes for strings, ints for integers
    def _token(self, value, name):
        if value is None:
            return None
        if self._IS_STRING:
            if not isinstance(value, (str, bytes, np.str_, np.bytes_)):
                raise TypeError(f"Invalid type for argument `{name}`. Expected a string. "
                                f"Received {name}={value!r}")
            return _to_bytes(value)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise TypeError(f"Invalid type for argument `{name}`. Expected an integer. "
                            f"Received {name}={value!r}")
        return int(value)

    def _shown(self, token):
        if token is None:
            return None
        return token.decode("utf-8", errors="replace") if self._IS_STRING else int(token)

    def _oov_start_index(self) -> int:
        return 1 if self.mask_token is not None and self.output_mode == INT else 0

    def _token_start_index(self) -> int:
        return self._oov_start_index() + self.num_oov_indices

    def vocabulary_size(self) -> int:
        """The vocabulary's size, the mask and OOV indices included."""
        return len(self._tokens) + self._token_start_index()

    def get_vocabulary(self, include_special_tokens: bool = True) -> List[Any]:
        """The vocabulary in index order (str for strings, int for integers); the mask and
        OOV tokens first where ``include_special_tokens``."""
        special = [self.mask_token] * self._oov_start_index() + \
            [self.oov_token] * self.num_oov_indices
        vocab = [self._shown(t) for t in special + self._tokens]
        return vocab if include_special_tokens else vocab[self._token_start_index():]

    def _read_vocabulary_file(self, path: str) -> List[Any]:
        if not os.path.exists(path):
            raise ValueError(f"Vocabulary file {path} does not exist.")
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
        if lines and lines[-1] == b"":
            lines = lines[:-1]  # TensorFlow's line reader: a last newline ends a line
        lines = [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]
        return lines if self._IS_STRING else [int(ln) for ln in lines]

    def set_vocabulary(self, vocabulary, idf_weights=None) -> None:
        """tf-keras' ``set_vocabulary``: a list / array of tokens (the mask and OOV tokens
        may lead it, in the layer's order) or a text file (one token a line, each a token:
        tf-keras reads a file without looking for the special tokens); ``idf_weights``
        with ``output_mode="tf_idf"`` (the special tokens get their mean when the
        vocabulary has none)."""
        if self.output_mode == TF_IDF:
            if idf_weights is None:
                raise ValueError("`idf_weights` must be set if output_mode is TF_IDF")
        elif idf_weights is not None and idf_weights is not False:
            raise ValueError(f"`idf_weights` should only be set if output_mode is "
                             f"`'tf_idf'`. Received: output_mode={self.output_mode} and "
                             f"idf_weights={idf_weights}")
        if isinstance(vocabulary, (str, os.PathLike)):
            if self.output_mode == TF_IDF and idf_weights is not False:
                raise ValueError("output_mode `'tf_idf'` does not support loading a "
                                 "vocabulary from file.")
            # tf-keras' TextFileInitializer: every line a token from the first token
            # index on (no special-token detection, no checks)
            self._set_tokens(self._read_vocabulary_file(os.fspath(vocabulary)))
            return
        if isinstance(vocabulary, torch.Tensor):
            vocabulary = vocabulary.tolist()
        vocabulary = [self._token(v, "vocabulary") for v in np.asarray(
            vocabulary, dtype=object).reshape(-1)]
        if not vocabulary:
            raise ValueError(f"Cannot set an empty vocabulary, you passed {vocabulary}.")
        special = [self.mask_token] * self._oov_start_index() + \
            [self.oov_token] * self.num_oov_indices
        start = self._token_start_index()
        found = vocabulary[:start] == special
        tokens = vocabulary[start:] if found else vocabulary
        repeated = [t for t, c in collections.Counter(tokens).items() if c > 1]
        if repeated:
            raise ValueError(f"The passed vocabulary has at least one repeated term. Please "
                             f"uniquify your dataset. The repeated terms are "
                             f"{[self._shown(t) for t in repeated]}")
        if self.mask_token is not None and self.mask_token in tokens:
            raise ValueError(f"Found reserved mask token at unexpected location in "
                             f"`vocabulary`. Either remove all mask and OOV tokens, or "
                             f"include them only at the start of the vocabulary in "
                             f"precisely this order: {[self._shown(t) for t in special]}. "
                             f"Received: mask_token={self._shown(self.mask_token)}")
        if self.oov_token is not None and self.invert and self.oov_token in tokens:
            raise ValueError(f"Found reserved OOV token at unexpected location in "
                             f"`vocabulary`. Either remove all mask and OOV tokens, or "
                             f"include them only at the start of the vocabulary in "
                             f"precisely this order: {[self._shown(t) for t in special]}. "
                             f"Received: oov_token={self._shown(self.oov_token)}")
        if self.max_tokens is not None and start + len(tokens) > self.max_tokens:
            raise ValueError(f"Attempted to set a vocabulary larger than the maximum vocab "
                             f"size. Passed vocab size is {start + len(tokens)}, max vocab "
                             f"size is {self.max_tokens}.")
        self._set_tokens(tokens)
        if self.output_mode == TF_IDF and idf_weights is not False:
            w = np.asarray(idf_weights.detach().cpu() if isinstance(idf_weights, torch.Tensor)
                           else idf_weights, dtype=np.float64)
            if w.ndim != 1:
                raise ValueError(f"TF-IDF data must be a 1-index array. Received "
                                 f"idf_weights of shape {w.shape}")
            if len(w) != len(vocabulary):
                raise ValueError(f"`idf_weights` must be the same length as vocabulary. "
                                 f"len(idf_weights) is {len(w)}, len(vocabulary) is "
                                 f"{len(vocabulary)}")
            front = 0 if found else start
            back = (self.max_tokens - front - len(w)) if self.pad_to_max_tokens else 0
            w = np.pad(w, (front, back), "constant",
                       constant_values=(0.0 if found else np.average(w), 0.0))
            self.idf = torch.as_tensor(w.astype(np.float32))

    def _set_tokens(self, tokens: List[Any]) -> None:
        self._tokens = list(tokens)
        start = self._token_start_index()
        self._index = {t: i + start for i, t in enumerate(self._tokens)}
        self._frozen_vocab_size = self.vocabulary_size()
        if not self._IS_STRING:
            keys = np.asarray(self._tokens, dtype=np.int64)
            order = np.argsort(keys, kind="stable")
            self._sorted_keys = keys[order]
            self._sorted_values = (order + start).astype(np.int64)

    def load_assets(self, files: Dict[str, bytes]) -> None:
        """The vocabulary from a ``.keras`` file's ``assets/.../vocabulary.txt`` (the file
        loader calls this); ignored where the config holds the vocabulary."""
        if self.input_vocabulary is not None or "vocabulary.txt" not in files:
            return
        lines = files["vocabulary.txt"].split(b"\n")
        values = lines if self._IS_STRING else [int(v) for v in lines if v.strip()]
        if self.output_mode == TF_IDF:
            idf = self.idf
            self.set_vocabulary(values, idf_weights=False)
            self.idf = idf
        else:
            self.set_vocabulary(values)

    # -- state_dict: the vocabulary and idf weights travel as torch's extra state ---------
    def get_extra_state(self):
        return {"vocabulary": self.get_vocabulary(include_special_tokens=False),
                "idf_weights": None if self.idf is None else self.idf.clone()}

    def set_extra_state(self, state) -> None:
        tokens = [self._token(t, "vocabulary") for t in state["vocabulary"]]
        self._set_tokens(tokens)
        self.idf = state.get("idf_weights")

    # -- weights: tf_idf's idf_weights (tf-keras' and Keras 3's one variable) -------------
    @property
    def KERAS3_VAR_NAMES(self):  # noqa: N802 (Keras 3 stores the variable by this name)
        return ("idf_weights",) if self.output_mode == TF_IDF else None

    @property
    def weights(self):
        return [self.idf] if self.output_mode == TF_IDF and self.idf is not None else []

    def set_weights(self, weights) -> None:
        weights = list(weights)
        if self.output_mode != TF_IDF:
            if weights:
                raise ValueError(f"Layer {self.name!r} expects 0 weights, but received "
                                 f"{len(weights)} weights")
            return
        if len(weights) != 1:
            raise ValueError(f"Layer {self.name!r} expects 1 weight (idf_weights), but "
                             f"received {len(weights)} weights")
        w = np.asarray(weights[0], dtype=np.float32).reshape(-1)
        self.idf = torch.as_tensor(w)

    # -- adapt ------------------------------------------------------------------------
    def _adapt_rows(self, data, batch_size):
        """Batches of ``data`` as tf-keras' adapt sees them (32 rows by default)."""
        if isinstance(data, (np.ndarray, torch.Tensor, list, tuple, str, bytes)):
            arr = self._prepare(data)
            if arr.ndim == 0:
                return [arr.reshape(1)]
            step = batch_size or 32
            return [arr[i:i + step] for i in range(0, arr.shape[0], step)]
        return [self._prepare(b) for b in data]

    def adapt(self, data, batch_size: Optional[int] = None, steps: Optional[int] = None):
        """Learn the vocabulary from ``data`` (an array / list, or an iterable of batches)
        as tf-keras' ``adapt``: tokens counted (mask and OOV tokens left out), ordered by
        count then token, both descending, cut to ``max_tokens``; ``tf_idf`` also learns
        ``log(1 + documents / (1 + documents with the token))``, each row of a batch a
        document (a 1-D batch is one document).  Returns the layer."""
        if self.input_vocabulary is not None:
            raise ValueError(f"Cannot adapt {type(self).__name__} layer after setting a "
                             f"static vocabulary via init argument or `set_vocabulary`.")
        batches = self._adapt_rows(data, batch_size)
        if steps is not None:
            batches = batches[:int(steps)]
        counts: Dict[Any, int] = collections.Counter()
        docs: Dict[Any, int] = collections.Counter()
        num_docs = 0
        for b in batches:
            b = np.asarray(b, dtype=object) if self._IS_STRING else np.asarray(b)
            if b.ndim == 0:
                b = b.reshape(1)
            if b.ndim == 1:
                b = b.reshape(1, -1)
            flat = b.reshape(-1).tolist()
            counts.update(flat)
            if self.output_mode == TF_IDF:
                for row in b.reshape(b.shape[0], -1).tolist():
                    docs.update(set(row))
                num_docs += b.shape[0]
        self._fit_counts(counts, docs, num_docs)
        return self

    def _fit_counts(self, counts, docs, num_docs) -> None:
        for special in (self.mask_token, self.oov_token):
            if special is not None:
                counts.pop(special, None)
        # counts descending, ties by token descending (np.lexsort(...)[::-1])
        tokens = sorted(counts, key=lambda t: (counts[t], t), reverse=True)
        if self.max_tokens:
            tokens = tokens[:self.max_tokens - self._token_start_index()]
        self._set_tokens(tokens)
        if self.output_mode == TF_IDF:
            idf = np.log(1 + num_docs / (1 + np.asarray([docs[t] for t in tokens],
                                                         dtype=np.float64)))
            idf = idf.astype(np.float32)
            mean = np.float32(np.mean(idf, dtype=np.float32)) if len(idf) else 0.0
            idf = np.concatenate([np.full(self._token_start_index(), mean, np.float32), idf])
            if self.pad_to_max_tokens and self.max_tokens is not None:
                idf = np.pad(idf, (0, self.max_tokens - len(idf)))
            self.idf = torch.as_tensor(idf.astype(np.float32))

    # -- lookup ---------------------------------------------------------------------------
    def _prepare(self, inputs) -> np.ndarray:
        return as_bytes_array(inputs) if self._IS_STRING else \
            _as_int_array(inputs, self.name)

    def _oov_hash(self, token) -> int:
        if self._IS_STRING or self.oov_method == "farmhash":
            data = token if self._IS_STRING else str(int(token)).encode()
            h = fingerprint64(data) if self.salt is None else siphash64(data, *self.salt)
            return h % self.num_oov_indices
        return int(token) % self.num_oov_indices  # floormod (Python's % is floored)

    def _lookup(self, x: np.ndarray) -> np.ndarray:
        """Token array -> int64 indices (mask -> 0 in int mode, dropped otherwise)."""
        default = -1 if self.num_oov_indices != 1 else self._oov_start_index()
        if self._IS_STRING:
            flat = x.reshape(-1).tolist()
            idx = np.fromiter(map(self._index.get, flat, itertools.repeat(default, len(flat))),
                              dtype=np.int64, count=len(flat)).reshape(x.shape)
        else:
            idx = np.full(x.shape, default, dtype=np.int64)
            if len(self._tokens):
                pos = np.searchsorted(self._sorted_keys, x)
                pos = np.minimum(pos, len(self._sorted_keys) - 1)
                hit = self._sorted_keys[pos] == x
                idx = np.where(hit, self._sorted_values[pos], idx)
        if self.mask_token is not None:
            idx = np.where(x == self.mask_token, 0 if self.output_mode == INT else _INT64_MAX,
                           idx)
        if self.num_oov_indices == 0:
            bad = idx == -1
            if bad.any():
                values = [self._shown(t) for t in np.asarray(x)[bad].reshape(-1)[:10]]
                raise ValueError(f"When `num_oov_indices=0` all inputs should be in "
                                 f"vocabulary, found OOV values {values}, consider setting "
                                 f"`num_oov_indices=1`.")
        elif self.num_oov_indices > 1:
            miss = idx == -1
            if miss.any():
                start = self._oov_start_index()
                idx[miss] = [self._oov_hash(t) + start for t in np.asarray(x)[miss].tolist()]
        return idx

    def _invert(self, x: np.ndarray):
        vocab = self.get_vocabulary()
        start = self._token_start_index()
        oov = self._shown(self.oov_token)
        flat = [vocab[i] if start <= i < len(vocab) else oov for i in x.reshape(-1).tolist()]
        if self.mask_token is not None:
            flat = [self._shown(self.mask_token) if i == 0 else v
                    for i, v in zip(x.reshape(-1).tolist(), flat)]
        if self._IS_STRING:
            return np.asarray(flat, dtype=object).astype(str).reshape(x.shape)
        out = np.asarray([-1 if v is None else v for v in flat], dtype=np.int64)
        return torch.as_tensor(out.reshape(x.shape))

    def _depth(self) -> int:
        if self.pad_to_max_tokens:
            return self.max_tokens
        if self._frozen_vocab_size is None:
            raise RuntimeError(f"When using `output_mode={self.output_mode}` and "
                               f"`pad_to_max_tokens=False`, you must set the layer's "
                               f"vocabulary before calling it. Either pass a `vocabulary` "
                               f"argument to the layer, or call `adapt` with some sample "
                               f"data.")
        return self._frozen_vocab_size

    def _encode(self, idx: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(idx)
        if self.output_mode == INT:
            return t.to(getattr(torch, self._out_dtype))
        dtype = self.dtype_policy.compute
        idf = None
        if self.output_mode == TF_IDF:
            if self.idf is None:
                raise RuntimeError(f"Layer {self.name!r}: tf_idf needs idf_weights (pass "
                                   f"them with the vocabulary, or adapt)")
            idf = self.idf
        out = encode_categorical(t, self.output_mode, self._depth(), dtype,
                                 idf_weights=idf, any_rank=self._any_rank)
        if self._any_rank and self.output_mode != TF_IDF:
            return out.to(torch.int64)  # Keras 3's lookups count in int64 (tf-keras: float)
        return out

    def forward(self, inputs):
        """Tokens (any shape) to indices of the same shape (``int``), or to encoded rows
        (the other modes: ``(batch, depth)``, a 1-D input being one sample)."""
        if self.invert:
            return self._invert(_as_int_array(inputs, self.name))
        return self._encode(self._lookup(self._prepare(inputs)))

    def compute_output_shape(self, input_shape):
        if self.output_mode == INT:
            return tuple(input_shape)
        depth = self.max_tokens if self.pad_to_max_tokens else self._frozen_vocab_size
        if self._any_rank:  # a Keras 3 file's: Keras 3's shapes
            return encoded_shape(input_shape, self.output_mode, depth, any_rank=True)
        return (input_shape[0] if len(input_shape) else None, depth)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        size = config.pop("vocabulary_size", None)
        oov_method, salt = config.pop("oov_method", "floormod"), config.pop("salt", None)
        if config.get("output_mode") != INT and config.get("dtype") == "int64":
            config.pop("dtype")  # tf-keras' legacy IntegerLookup dtype
        layer = super().from_config(config)
        if layer._frozen_vocab_size is None and size is not None:
            layer._frozen_vocab_size = int(size)
        layer.oov_method = oov_method or "floormod"
        if salt is not None:  # Keras 3: OOV buckets by keyed SipHash ([k, k] for an int)
            layer.salt = [int(salt), int(salt)] if isinstance(salt, numbers.Integral) \
                else [int(k) for k in salt]
        return layer

    def _lookup_config(self) -> Dict[str, Any]:
        # The vocabulary the layer holds (special tokens first) and its idf weights, also
        # after adapt or a file's assets, where tf-keras writes None (its model files keep
        # them as assets): from_config then rebuilds the same layer, and a model saved by
        # save_keras_model carries them to tf-keras (.h5) and Keras 3 (.keras).
        vocab, idf = self.input_vocabulary, self.input_idf_weights
        if self._tokens:
            vocab = self.get_vocabulary(include_special_tokens=True)
            if self.output_mode == TF_IDF and self.idf is not None:
                idf = self.idf[:len(vocab)]
        if isinstance(vocab, (np.ndarray, torch.Tensor)):
            vocab = vocab.tolist()
        if isinstance(vocab, (list, tuple)):
            vocab = [v.decode("utf-8") if isinstance(v, bytes) else v for v in vocab]
        if isinstance(idf, (np.ndarray, torch.Tensor)):
            idf = [float(v) for v in idf.tolist()]
        return {"invert": self.invert, "max_tokens": self.max_tokens,
                "num_oov_indices": self.num_oov_indices,
                "oov_token": self._shown(self.oov_token),
                "mask_token": self._shown(self.mask_token), "output_mode": self.output_mode,
                "sparse": self.sparse, "pad_to_max_tokens": self.pad_to_max_tokens,
                "idf_weights": idf, "vocabulary": vocab,
                "vocabulary_size": self._frozen_vocab_size,
                # Keras 3's OOV hashing, only where it is not tf-keras' (which has no keys
                # for it: a tf-keras file of such a layer is refused there, rightly)
                **({"oov_method": self.oov_method} if self.oov_method != "floormod" else {}),
                **({"salt": self.salt} if self.salt is not None else {})}

    def extra_repr(self) -> str:
        return (f"vocabulary_size={self.vocabulary_size()}, output_mode={self.output_mode!r}"
                f", name={self.name!r}")


class StringLookup(_IndexLookup):
    """Keras' ``StringLookup`` (R: ``layer_string_lookup``): strings to vocabulary indices
    (``output_mode="int"``: int64 of the input's shape; index 0 the mask where
    ``mask_token`` is set, then ``num_oov_indices`` OOV indices, then the vocabulary) or
    to ``one_hot`` / ``multi_hot`` / ``count`` / ``tf_idf`` float32 rows; ``invert=True``
    maps indices back to tokens (a numpy array of ``str``).  ``vocabulary``: a list /
    array or a text file; otherwise :meth:`adapt`.  See the module docstring for inputs
    and tf-keras' rules."""

    _IS_STRING = True

    @property
    def KERAS_INPUT_DTYPE(self) -> str:  # noqa: N802 (the attribute the saver reads)
        return "int64" if self.invert else "string"

    def __init__(self, max_tokens=None, num_oov_indices=1, mask_token=None, oov_token="[UNK]",
                 vocabulary=None, idf_weights=None, encoding="utf-8", invert=False,
                 output_mode="int", sparse=False, pad_to_max_tokens=False, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        out_dtype, dtype = _split_dtype(dtype)
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=None)
        if not isinstance(encoding, str) or encoding.lower().replace("-", "") != "utf8":
            raise ValueError(f"Invalid value for argument `encoding`. sepconv reads "
                             f"strings as UTF-8. Received encoding={encoding!r}")
        self.encoding = encoding
        self._setup(max_tokens, num_oov_indices, mask_token, oov_token, vocabulary,
                    idf_weights, invert, output_mode, sparse, pad_to_max_tokens, out_dtype)
        if weights is not None:
            self.set_weights(weights)

    def get_config(self) -> Dict[str, Any]:
        return {**self.base_config(), **self._lookup_config(), "encoding": self.encoding}


class IntegerLookup(_IndexLookup):
    """Keras' ``IntegerLookup`` (R: ``layer_integer_lookup``): integer ids (a tensor or an
    array, any shape) to vocabulary indices, as :class:`StringLookup` does for strings;
    OOV ids with ``num_oov_indices > 1`` go to ``id % num_oov_indices`` (floored), as in
    tf-keras (a Keras 3 file's ``oov_method="farmhash"`` hashes the id's decimal text).
    ``invert=True`` returns int64 ids."""

    _IS_STRING = False
    KERAS_INPUT_DTYPE = "int64"

    def __init__(self, max_tokens=None, num_oov_indices=1, mask_token=None, oov_token=-1,
                 vocabulary=None, vocabulary_dtype="int64", idf_weights=None, invert=False,
                 output_mode="int", sparse=False, pad_to_max_tokens=False, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        out_dtype, dtype = _split_dtype(dtype)
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=None)
        if vocabulary_dtype not in ("int64", "int32"):
            raise ValueError(f"Invalid value for argument `vocabulary_dtype`. Expected "
                             f"'int64' or 'int32'. Received vocabulary_dtype="
                             f"{vocabulary_dtype!r}")
        self.vocabulary_dtype = vocabulary_dtype
        self._setup(max_tokens, num_oov_indices, mask_token, oov_token, vocabulary,
                    idf_weights, invert, output_mode, sparse, pad_to_max_tokens, out_dtype)
        if weights is not None:
            self.set_weights(weights)

    def get_config(self) -> Dict[str, Any]:
        return {**self.base_config(), **self._lookup_config(),
                "vocabulary_dtype": self.vocabulary_dtype}


# -- TextVectorization ----------------------------------------------------------------------

LOWER_AND_STRIP_PUNCTUATION, LOWER, STRIP_PUNCTUATION = (
    "lower_and_strip_punctuation", "lower", "strip_punctuation")
WHITESPACE, CHARACTER = "whitespace", "character"


def _character_split(text: bytes) -> List[bytes]:
    # tf.strings.unicode_split(..., "UTF-8"): one token per code point (errors: U+FFFD)
    return [c.encode("utf-8") for c in text.decode("utf-8", errors="replace")]


def _ngrams(tokens: List[bytes], widths) -> List[bytes]:
    """tf.strings.ngrams(tokens, ngram_width=widths, separator=" "): for each width in
    order, every window of that many tokens joined by a space."""
    out: List[bytes] = []
    for n in widths:
        out += [b" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return out


class TextVectorization(Layer):
    """Keras' ``TextVectorization`` (R: ``layer_text_vectorization``): strings to token
    indices (``output_mode="int"``: int64 ``(batch, output_sequence_length)``, padded with 0
    and cut, or padded to the longest row where ``output_sequence_length`` is None) or to
    ``multi_hot`` / ``count`` / ``tf_idf`` float32 rows ``(batch, vocabulary size)``.

    Input: ``(batch,)`` or ``(batch, 1)`` strings (str / bytes / lists / numpy arrays).
    Steps, as tf-keras 2.21: ``standardize`` (``"lower_and_strip_punctuation"``,
    ``"lower"``, ``"strip_punctuation"``, None, or a Python callable ``str -> str``),
    ``split`` (``"whitespace"``, ``"character"``, None, or a callable ``str -> list of
    str``), ``ngrams`` (an int n: widths 1..n; a tuple: those widths), then a
    :class:`StringLookup` with mask token ``""`` (index 0) and ``[UNK]`` (index 1).
    ``ragged=True`` returns a list of int64 tensors, one per row.  See the module docstring
    for TensorFlow's ASCII-only lowercasing and whitespace.
    """

    KERAS_INPUT_DTYPE = "string"

    def __init__(self, max_tokens=None, standardize="lower_and_strip_punctuation",
                 split="whitespace", ngrams=None, output_mode="int",
                 output_sequence_length=None, pad_to_max_tokens=False, vocabulary=None,
                 idf_weights=None, sparse=False, ragged=False, encoding="utf-8",
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        out_dtype, dtype = _split_dtype(dtype)
        if out_dtype not in (None, "string"):
            raise ValueError(f"`TextVectorization` may only have a dtype of string. "
                             f"Received dtype: {out_dtype}.")
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=None)
        if not (standardize is None or callable(standardize) or standardize in
                (LOWER_AND_STRIP_PUNCTUATION, LOWER, STRIP_PUNCTUATION)):
            raise ValueError(f"Invalid value for argument `standardize`. Expected one of "
                             f"{(LOWER_AND_STRIP_PUNCTUATION, LOWER, STRIP_PUNCTUATION)}, "
                             f"None or a callable. Received standardize={standardize!r}")
        if not (split is None or callable(split) or split in (WHITESPACE, CHARACTER)):
            raise ValueError(f"Invalid value for argument `split`. Expected one of "
                             f"{(WHITESPACE, CHARACTER)}, None or a callable. Received "
                             f"split={split!r}")
        output_mode = INT if output_mode is None else output_mode
        output_mode = _check_output_mode(output_mode, (INT, COUNT, MULTI_HOT, TF_IDF))
        if isinstance(ngrams, list):
            ngrams = tuple(ngrams)  # a JSON config's tuple
        if not (ngrams is None or (isinstance(ngrams, numbers.Integral) and
                                   not isinstance(ngrams, bool)) or
                (isinstance(ngrams, tuple) and all(isinstance(n, numbers.Integral)
                                                   for n in ngrams))):
            raise ValueError(f"`ngrams` must be None, an integer, or a tuple of integers. "
                             f"Received: ngrams={ngrams}")
        if output_mode == INT and output_sequence_length is not None:
            output_sequence_length = check_count(output_sequence_length,
                                                 "output_sequence_length")
        if output_mode != INT and output_sequence_length is not None:
            raise ValueError(f"`output_sequence_length` must not be set if `output_mode` is "
                             f"not 'int'. Received output_sequence_length="
                             f"{output_sequence_length}.")
        self.ragged = check_bool(ragged, "ragged")
        if self.ragged and output_mode != INT:
            raise ValueError(f"`ragged` must not be true if `output_mode` is `'int'`. "
                             f"Received: ragged={ragged} and output_mode={output_mode}")
        if self.ragged and output_sequence_length is not None:
            raise ValueError(f"`output_sequence_length` must not be set if ragged is True. "
                             f"Received: ragged={ragged} and output_sequence_length="
                             f"{output_sequence_length}")
        self.standardize = standardize
        self.split = split
        self.ngrams = ngrams
        self._widths = tuple(range(1, int(ngrams) + 1)) if isinstance(
            ngrams, numbers.Integral) else (None if ngrams is None else
                                           tuple(int(n) for n in ngrams))
        self.output_mode = output_mode
        self.output_sequence_length = output_sequence_length
        self.encoding = encoding
        self.__dict__["_lookup_layer"] = StringLookup(
            max_tokens=max_tokens, vocabulary=vocabulary, idf_weights=idf_weights,
            pad_to_max_tokens=pad_to_max_tokens, mask_token="", output_mode=output_mode,
            sparse=sparse, encoding=encoding, name=f"{self.name}_lookup")
        self.built = True
        if weights is not None:
            self.set_weights(weights)

    # the vocabulary lives in the inner StringLookup, as in tf-keras
    @property
    def max_tokens(self):
        return self._lookup_layer.max_tokens

    @property
    def pad_to_max_tokens(self):
        return self._lookup_layer.pad_to_max_tokens

    @property
    def sparse(self):
        return self._lookup_layer.sparse

    def get_vocabulary(self, include_special_tokens: bool = True) -> List[str]:
        return self._lookup_layer.get_vocabulary(include_special_tokens)

    def vocabulary_size(self) -> int:
        return self._lookup_layer.vocabulary_size()

    def set_vocabulary(self, vocabulary, idf_weights=None) -> None:
        self._lookup_layer.set_vocabulary(vocabulary, idf_weights)

    def load_assets(self, files: Dict[str, bytes]) -> None:
        self._lookup_layer.load_assets(files)

    @property
    def weights(self):
        return self._lookup_layer.weights

    @property
    def KERAS3_VAR_NAMES(self):  # noqa: N802
        return self._lookup_layer.KERAS3_VAR_NAMES

    def get_extra_state(self):
        return self._lookup_layer.get_extra_state()

    def set_extra_state(self, state) -> None:
        self._lookup_layer.set_extra_state(state)

    @property
    def KERAS3_COPIES(self):  # noqa: N802 (Keras 3 stores idf_weights in both layers)
        return (("_lookup_layer", "string_lookup"),) if self.output_mode == TF_IDF else ()

    def set_weights(self, weights) -> None:
        weights = list(weights)
        if len(weights) == 2 and self.output_mode == TF_IDF and \
                np.array_equal(np.asarray(weights[0]), np.asarray(weights[1])):
            weights = weights[:1]  # a Keras 3 file: the layer's and its StringLookup's
        self._lookup_layer.set_weights(weights)

    def _standardized(self, text: bytes) -> bytes:
        if self.standardize in (LOWER, LOWER_AND_STRIP_PUNCTUATION):
            text = text.lower()  # ASCII only, as tf.strings.lower without an encoding
        if self.standardize in (STRIP_PUNCTUATION, LOWER_AND_STRIP_PUNCTUATION):
            text = STRIP_REGEX.sub(b"", text)
        if callable(self.standardize):
            text = _to_bytes(self.standardize(text.decode("utf-8", errors="replace")))
        return text

    def _tokens_of(self, text: bytes) -> List[bytes]:
        if self.split == WHITESPACE:
            return text.split()  # ASCII whitespace, as tf.strings.split
        if self.split == CHARACTER:
            return _character_split(text)
        return [_to_bytes(t) for t in self.split(text.decode("utf-8", errors="replace"))]

    def _preprocess(self, inputs):
        """Standardized, split, n-grammed tokens: a list of token lists (one per row) where
        ``split`` is set, else an object array of the input's shape."""
        x = as_bytes_array(inputs)
        flat = [self._standardized(t) for t in x.reshape(-1).tolist()]
        if self.split is None:
            arr = np.empty(len(flat), dtype=object)
            arr[:] = flat
            arr = arr.reshape(x.shape)
            if self._widths is not None:
                raise ValueError(f"Layer {self.name!r}: ngrams without split are not "
                                 f"supported by sepconv")
            return arr
        if x.ndim > 1:
            if x.shape[-1] != 1:
                raise ValueError(f"When using `TextVectorization` to tokenize strings, the "
                                 f"input rank must be 1 or the last shape dimension must be "
                                 f"1. Received: inputs.shape={x.shape} with rank={x.ndim}")
            if x.ndim > 2:
                raise ValueError(f"Layer {self.name!r} takes inputs of rank 1 or 2. "
                                 f"Received: inputs.shape={x.shape}")
        rows = [self._tokens_of(t) for t in flat]
        if self._widths is not None:
            rows = [_ngrams(r, self._widths) for r in rows]
        return rows if x.ndim > 0 else rows[0]

    def forward(self, inputs):
        """``inputs``: ``(batch,)`` / ``(batch, 1)`` strings; see the class docstring."""
        data = self._preprocess(inputs)
        lookup = self._lookup_layer
        if self.split is not None and data and isinstance(data[0], bytes):  # one string
            data = [data]
            single = True
        else:
            single = self.split is not None and len(data) == 0 and \
                as_bytes_array(inputs).ndim == 0
        if self.split is None:
            idx = lookup._lookup(data)
            if self.output_mode != INT:
                return lookup._encode(idx)
            out = torch.as_tensor(idx)
            if self.output_sequence_length is not None and out.dim() > 0:
                n = self.output_sequence_length
                out = out[..., :n]
                if out.shape[-1] < n:
                    out = torch.nn.functional.pad(out, (0, n - out.shape[-1]))
            return out
        flat = list(itertools.chain.from_iterable(data))
        arr = np.empty(len(flat), dtype=object)
        arr[:] = flat
        idx = lookup._lookup(arr)
        n = len(data)
        lengths = np.fromiter(map(len, data), dtype=np.int64, count=n)
        rows = np.repeat(np.arange(n), lengths)  # each token's row and place in it
        pos = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        if self.output_mode != INT:
            # tf.math.bincount per row (ids outside [0, depth), the mask, dropped) in float32
            depth = lookup._depth()
            keep = (idx >= 0) & (idx < depth)
            counts = np.zeros((n, depth), dtype=np.float32)
            np.add.at(counts, (rows[keep], idx[keep]), np.float32(1.0))
            if self.output_mode == MULTI_HOT:
                counts = (counts > 0).astype(np.float32)
            out = torch.from_numpy(counts).to(self.dtype_policy.compute)
            if self.output_mode == TF_IDF:
                out = out * lookup.idf.to(out.dtype)
            return out[0] if single else out
        if self.ragged:
            pieces = [torch.from_numpy(p.copy()) for p in
                      np.split(idx, np.cumsum(lengths)[:-1])] if n else []
            return pieces[0] if single else pieces
        width = self.output_sequence_length
        if width is None:
            width = int(lengths.max()) if n else 0
        out = np.zeros((n, width), dtype=np.int64)
        keep = pos < width
        out[rows[keep], pos[keep]] = idx[keep]
        out = torch.from_numpy(out)
        return out[0] if single else out

    def adapt(self, data, batch_size: Optional[int] = None, steps: Optional[int] = None):
        """Learn the vocabulary (and ``tf_idf`` weights) from ``data``: strings, or an
        iterable of batches of strings; each string a document.  Returns the layer."""
        lookup = self._lookup_layer
        if lookup.input_vocabulary is not None:
            raise ValueError("Cannot adapt TextVectorization layer after setting a static "
                             "vocabulary via init argument or `set_vocabulary`.")
        if isinstance(data, (np.ndarray, list, tuple, str, bytes)):
            x = as_bytes_array(data)
            x = x.reshape(1) if x.ndim == 0 else x
            step = batch_size or 32
            batches = [x[i:i + step] for i in range(0, x.shape[0], step)]
        else:
            batches = [as_bytes_array(b) for b in data]
        if steps is not None:
            batches = batches[:int(steps)]
        counts: Dict[bytes, int] = collections.Counter()
        docs: Dict[bytes, int] = collections.Counter()
        num_docs = 0
        for b in batches:
            rows = self._preprocess(b)
            if self.split is None:
                arr = np.asarray(rows, dtype=object)
                arr = arr.reshape(1, -1) if arr.ndim <= 1 else arr.reshape(arr.shape[0], -1)
                rows = arr.tolist()
            elif rows and isinstance(rows[0], bytes):
                rows = [rows]
            for r in rows:
                counts.update(r)
                if self.output_mode == TF_IDF:
                    docs.update(set(r))
            num_docs += len(rows)
        lookup._fit_counts(counts, docs, num_docs)
        return self

    def compute_output_shape(self, input_shape):
        batch = input_shape[0] if len(input_shape) else None
        if self.output_mode == INT:
            if self.split is None:
                return tuple(input_shape)[:-1] + (self.output_sequence_length,) \
                    if self.output_sequence_length is not None and len(input_shape) else \
                    tuple(input_shape)
            return (batch, self.output_sequence_length)
        return self._lookup_layer.compute_output_shape((batch, None))

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        size = config.pop("vocabulary_size", None)
        for key in ("standardize", "split"):
            if isinstance(config.get(key), dict):
                raise ValueError(f"TextVectorization {config.get('name')!r}: a custom "
                                 f"`{key}` function ({config[key].get('config', '?')}) "
                                 f"cannot be loaded: sepconv does not run Python from files")
        layer = super().from_config(config)
        if layer._lookup_layer._frozen_vocab_size is None and size is not None:
            layer._lookup_layer._frozen_vocab_size = int(size)
        return layer

    def get_config(self) -> Dict[str, Any]:
        config = self.base_config()
        config["dtype"] = "string"
        lookup = self._lookup_layer._lookup_config()
        config.update({
            "max_tokens": self.max_tokens, "standardize": self.standardize
            if not callable(self.standardize) else getattr(self.standardize, "__name__", None),
            "split": self.split if not callable(self.split)
            else getattr(self.split, "__name__", None),
            "ngrams": self.ngrams, "output_mode": self.output_mode,
            "output_sequence_length": self.output_sequence_length,
            "pad_to_max_tokens": self.pad_to_max_tokens, "sparse": self.sparse,
            "ragged": self.ragged, "vocabulary": lookup["vocabulary"],
            "idf_weights": lookup["idf_weights"], "encoding": self.encoding,
            "vocabulary_size": self.vocabulary_size()})
        return config

    def extra_repr(self) -> str:
        return (f"vocabulary_size={self.vocabulary_size()}, output_mode={self.output_mode!r}, "
                f"output_sequence_length={self.output_sequence_length}, name={self.name!r}")


# -- Discretization -------------------------------------------------------------------------

def _summarize(values: np.ndarray, epsilon: float, keras_version: int) -> np.ndarray:
    values = np.sort(np.asarray(values, dtype=np.float32).reshape(-1))
    if keras_version == 3:
        step = max(values.size / (1.0 / epsilon), 1)
        bounds = values[int(step - 1)::int(step)]
        return np.stack([bounds, np.ones_like(bounds) * step])
    # tf-keras: float32 arithmetic, start = increment
    increment = int(np.float32(values.size) / np.float32(1.0 / epsilon))
    step = max(increment, 1)
    bounds = values[increment::step]
    return np.stack([bounds, np.ones_like(bounds) * np.float32(step)]).astype(np.float32)


def _compress(summary: np.ndarray, epsilon: float) -> np.ndarray:
    if summary.shape[1] * epsilon < 1:
        return summary
    percents = epsilon + np.arange(0.0, 1.0, epsilon)
    cum_weights = summary[1].cumsum()
    cum_weight_percents = cum_weights / cum_weights[-1]
    new_bins = np.interp(percents, cum_weight_percents, summary[0])
    cum_weights = np.interp(percents, cum_weight_percents, cum_weights)
    new_weights = cum_weights - np.concatenate((np.array([0]), cum_weights[:-1]))
    return np.stack((new_bins, new_weights)).astype(np.float32)


def _merge(prev: np.ndarray, nxt: np.ndarray, epsilon: float) -> np.ndarray:
    merged = np.concatenate((prev, nxt), axis=1)
    merged = np.take(merged, np.argsort(merged[0], kind="stable"), axis=1)
    return _compress(merged, epsilon)


class Discretization(_OutputDtype, Layer):
    """Keras' ``Discretization`` (R: ``layer_discretization``): each value to the index of
    its bin, ``i`` where ``boundaries[i-1] <= x < boundaries[i]`` (int64, the input's
    shape), or ``one_hot`` / ``multi_hot`` / ``count`` float32 rows of
    ``len(bin_boundaries) + 1``.  ``bin_boundaries`` given, or ``num_bins`` and
    :meth:`adapt` (tf-keras' approximate quantiles with ``epsilon``; ``keras_version = 3``
    gives Keras 3's, which differ slightly).  tf-keras holds the adapt summary as its one
    weight (``(2, n)``); ``set_weights([summary])`` (a tf-keras file) recomputes the
    boundaries from it.  Unlike tf-keras, ``get_weights()`` is empty and ``get_config()``
    holds learned boundaries (``num_bins`` None), so that from_config and a file written by
    ``save_keras_model`` rebuild the same bins in tf-keras, Keras 3 and sepconv."""

    def __init__(self, bin_boundaries=None, num_bins=None, epsilon=0.01, output_mode="int",
                 sparse=False, input_shape=None, batch_input_shape=None, batch_size=None,
                 dtype=None, name=None, trainable=None, weights=None):
        out_dtype, dtype = _split_dtype(dtype)
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=None)
        self.output_mode = _check_output_mode(output_mode, (INT, ONE_HOT, MULTI_HOT, COUNT))
        self.sparse = check_bool(sparse, "sparse")
        if self.sparse and self.output_mode == INT:
            raise ValueError(f"`sparse` may only be true if `output_mode` is `'one_hot'`, "
                             f"`'multi_hot'`, or `'count'`. Received: sparse={sparse} and "
                             f"output_mode={self.output_mode}")
        if self.output_mode == INT and out_dtype is not None and out_dtype not in _INT_DTYPES:
            raise ValueError(f"When `output_mode='int'`, `dtype` should be an integer type. "
                             f"Received: dtype={out_dtype}")
        self._out_dtype = (out_dtype or "int64") if self.output_mode == INT else None
        self.num_bins = _check_optional_count(num_bins, "num_bins", 0)
        if self.num_bins is not None and bin_boundaries is not None:
            raise ValueError(f"Both `num_bins` and `bin_boundaries` should not be set. You "
                             f"passed `num_bins={num_bins}` and `bin_boundaries="
                             f"{bin_boundaries}`")
        from .core import check_number
        self.epsilon = check_number(epsilon, "epsilon", 0.0)
        if bin_boundaries is not None:
            b = np.asarray(bin_boundaries, dtype=np.float64).reshape(-1)
            if np.any(np.diff(b) < 0):
                raise ValueError(f"Invalid value for argument `bin_boundaries`. Expected "
                                 f"sorted values. Received bin_boundaries={bin_boundaries}")
            bin_boundaries = b.tolist()
        self.input_bin_boundaries = bin_boundaries
        self.bin_boundaries = [] if bin_boundaries is None else list(bin_boundaries)
        self.summary: Optional[np.ndarray] = None
        self._learned = False  # boundaries from adapt, a summary or a Keras 3 config
        #: 2: tf-keras' adapt (the default); 3: Keras 3's.
        self.keras_version = 2
        self.built = True
        if weights is not None:
            self.set_weights(weights)

    @property
    def weights(self):
        # none: get_config carries the boundaries (also learned ones), which a model file
        # written by save_keras_model must pair with no weights for tf-keras and Keras 3
        return []

    def set_weights(self, weights) -> None:
        weights = list(weights)
        if not weights:
            return
        if len(weights) != 1 or self.input_bin_boundaries is not None or \
                self.num_bins is None:
            raise ValueError(f"Layer {self.name!r} expects "
                             f"{0 if self.input_bin_boundaries is not None else 1} weights "
                             f"(summary), but received {len(weights)} weights")
        summary = np.asarray(weights[0], dtype=np.float32)
        if summary.ndim != 2 or summary.shape[0] != 2:
            raise ValueError(f"Weight `summary` of layer {self.name!r} has shape (2, n); "
                             f"received a value of shape {summary.shape}")
        self.summary = summary
        self._finalize()

    def get_extra_state(self):  # state_dict carries the bins
        return {"bin_boundaries": list(self.bin_boundaries), "learned": self._learned}

    def set_extra_state(self, state) -> None:
        self.bin_boundaries = [float(v) for v in state["bin_boundaries"]]
        self._learned = bool(state.get("learned", False))

    def _finalize(self) -> None:
        if self.num_bins is None or self.summary is None:
            return
        self.bin_boundaries = _compress(self.summary, 1.0 / self.num_bins)[0, :-1].tolist()
        self._learned = True

    def adapt(self, data, batch_size: Optional[int] = None, steps: Optional[int] = None):
        """Bin boundaries from ``data``'s approximate quantiles, as tf-keras' ``adapt``
        (batches of 32 rows by default summarised and merged); ``keras_version = 3``: Keras
        3's (one summary of the whole array).  Returns the layer."""
        if self.input_bin_boundaries is not None:
            raise ValueError(f"Cannot adapt a Discretization layer that has been initialized "
                             f"with `bin_boundaries`, use `num_bins` instead. You passed "
                             f"`bin_boundaries={self.input_bin_boundaries}`.")
        if self.num_bins is None:
            raise ValueError("You need to set either `num_bins` or `bin_boundaries`.")
        if isinstance(data, (np.ndarray, torch.Tensor, list, tuple)):
            arr = np.asarray(data.detach().cpu() if isinstance(data, torch.Tensor) else data,
                             dtype=np.float32)
            if self.keras_version == 3:
                batches = [arr]
            else:
                arr = arr.reshape(1) if arr.ndim == 0 else arr
                step = batch_size or 32
                batches = [arr[i:i + step] for i in range(0, arr.shape[0], step)]
        else:
            batches = [np.asarray(b, dtype=np.float32) for b in data]
        if steps is not None:
            batches = batches[:int(steps)]
        summary = np.zeros((2, 0), dtype=np.float32)
        for b in batches:
            summary = _merge(_summarize(b, self.epsilon, self.keras_version), summary,
                             self.epsilon)
        self.summary = summary
        self._finalize()
        return self

    def forward(self, inputs):
        """Values (a tensor or array of any shape) to bin indices / encoded rows."""
        x = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(np.asarray(inputs))
        if not x.is_floating_point():
            x = x.to(torch.float64)
        # TensorFlow's Bucketize takes the boundaries as a float32 list
        b = torch.tensor(np.asarray(self.bin_boundaries, dtype=np.float32),
                         dtype=torch.float64 if x.dtype == torch.float64 else torch.float32,
                         device=x.device)
        idx = torch.bucketize(x.to(b.dtype), b, right=True)
        return self._encoded(idx, len(self.bin_boundaries) + 1)

    def compute_output_shape(self, input_shape):
        return encoded_shape(input_shape, self.output_mode, len(self.bin_boundaries) + 1,
                             any_rank=self._any_rank)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("bin_boundaries") is not None and config.get("num_bins") is not None:
            boundaries = config.pop("bin_boundaries")  # Keras 3 after adapt: both set
            layer = super().from_config(config)
            layer.bin_boundaries = [float(v) for v in boundaries]
            layer._learned = True
            return layer
        return super().from_config(config)

    def get_config(self) -> Dict[str, Any]:
        config = self.base_config()
        # learned boundaries too (tf-keras writes None and keeps its adapt summary as a
        # weight; Keras 3 writes both): the layer from_config computes the same
        learned = self.input_bin_boundaries is None and self._learned
        config.update({"bin_boundaries": self.bin_boundaries if learned
                       else self.input_bin_boundaries,
                       "num_bins": None if learned else self.num_bins,
                       "epsilon": self.epsilon, "output_mode": self.output_mode,
                       "sparse": self.sparse})
        return config

    def extra_repr(self) -> str:
        return f"bins={len(self.bin_boundaries) + 1}, output_mode={self.output_mode!r}, " \
            f"name={self.name!r}"


# -- CategoryEncoding -------------------------------------------------------------------------

class CategoryEncoding(_OutputDtype, Layer):
    """Keras' ``CategoryEncoding`` (R: ``layer_category_encoding``): integer ids in
    ``[0, num_tokens)`` to ``one_hot`` / ``multi_hot`` / ``count`` float32 rows of
    ``num_tokens`` (inputs of rank <= 2, a 1-D input one sample for multi_hot / count, as
    in tf-keras); ``forward(inputs, count_weights=None)`` weights the counts.  Ids outside
    the range raise ``ValueError`` (tf-keras' assertion)."""

    def __init__(self, num_tokens=None, output_mode="multi_hot", sparse=False,
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        out_dtype, dtype = _split_dtype(dtype)
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self._out_dtype = out_dtype
        if num_tokens is None:
            raise ValueError("num_tokens must be set to use this layer. If the number of "
                             "tokens is not known beforehand, use the IntegerLookup layer "
                             "instead.")
        self.num_tokens = check_count(num_tokens, "num_tokens")
        self.output_mode = _check_output_mode(output_mode, (COUNT, ONE_HOT, MULTI_HOT))
        self.sparse = check_bool(sparse, "sparse")
        self.built = True

    def forward(self, inputs, count_weights=None):
        x = torch.as_tensor(_as_int_array(inputs, self.name)) \
            if not isinstance(inputs, torch.Tensor) or inputs.is_floating_point() \
            else inputs.to(torch.int64)
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.num_tokens):
            raise ValueError(f"Input values must be in the range 0 <= values < num_tokens "
                             f"with num_tokens={self.num_tokens}. Received values in "
                             f"[{int(x.min())}, {int(x.max())}]")
        if count_weights is not None:
            if self.output_mode != COUNT:
                raise ValueError(f"`count_weights` is not used when `output_mode` is not "
                                 f"`'count'`. Received `count_weights={count_weights}`.")
            count_weights = torch.as_tensor(np.asarray(count_weights)) if not isinstance(
                count_weights, torch.Tensor) else count_weights
        dtype = getattr(torch, self._out_dtype) if self._out_dtype else \
            self.dtype_policy.compute
        return encode_categorical(x, self.output_mode, self.num_tokens, dtype,
                                  count_weights=count_weights, any_rank=self._any_rank)

    def compute_output_shape(self, input_shape):
        return encoded_shape(input_shape, self.output_mode, self.num_tokens,
                             any_rank=self._any_rank)

    def extra_repr(self) -> str:
        return f"{self.num_tokens}, output_mode={self.output_mode!r}, name={self.name!r}"

    def get_config(self) -> Dict[str, Any]:
        config = self.base_config()
        config.update({"num_tokens": self.num_tokens, "output_mode": self.output_mode,
                       "sparse": self.sparse})
        return config


# -- Hashing ------------------------------------------------------------------------------------

class Hashing(_OutputDtype, Layer):
    """Keras' ``Hashing`` (R: ``layer_hashing``): strings or integers to
    ``Fingerprint64(value) % num_bins`` (TensorFlow's ``to_hash_bucket_fast``; integers
    hashed as their decimal text, as ``tf.strings.as_string``), int64 of the input's shape,
    or ``one_hot`` / ``multi_hot`` / ``count`` rows.  With ``mask_value`` that value maps
    to 0 and the others to ``1 + hash % (num_bins - 1)``.  ``salt`` (an int ``k``, the key
    ``[k, k]``, or two ints) selects TensorFlow's keyed SipHash-2-4
    (``to_hash_bucket_strong``, :func:`siphash64`) instead."""

    KERAS_INPUT_DTYPE = "string"

    def __init__(self, num_bins, mask_value=None, salt=None, output_mode="int", sparse=False,
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        out_dtype, dtype = _split_dtype(dtype)
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self.num_bins = check_count(num_bins, "num_bins")
        self.output_mode = _check_output_mode(output_mode, (INT, ONE_HOT, MULTI_HOT, COUNT))
        self.sparse = check_bool(sparse, "sparse")
        if self.sparse and self.output_mode == INT:
            raise ValueError(f"`sparse` may only be true if `output_mode` is `'one_hot'`, "
                             f"`'multi_hot'`, or `'count'`. Received: sparse={sparse} and "
                             f"output_mode={self.output_mode}")
        if salt is not None:  # tf-keras: an int k means the key [k, k]
            if isinstance(salt, (tuple, list)) and len(salt) == 2 and \
                    all(isinstance(k, numbers.Integral) for k in salt):
                salt = [int(k) for k in salt]
            elif isinstance(salt, numbers.Integral) and not isinstance(salt, bool):
                salt = [int(salt), int(salt)]
            else:
                raise ValueError(f"The `salt` argument for `Hashing` can only be a tuple of "
                                 f"size 2 integers, or a single integer. Received: "
                                 f"salt={salt}.")
        self.salt = salt
        self.mask_value = mask_value
        self._out_dtype = (out_dtype if out_dtype in _INT_DTYPES else "int64") \
            if self.output_mode == INT else None
        self.built = True

    def _keys(self, inputs) -> np.ndarray:
        if isinstance(inputs, torch.Tensor):
            if inputs.is_floating_point():
                raise TypeError(f"Layer {self.name!r} hashes strings and integers. "
                                f"Received a tensor of dtype {inputs.dtype}")
            inputs = inputs.detach().cpu().numpy()
        arr = np.asarray(inputs) if not isinstance(inputs, (str, bytes)) else None
        if arr is not None and arr.dtype.kind in "iu":
            out = np.empty(arr.shape, dtype=object)
            out.reshape(-1)[:] = [str(int(v)).encode() for v in arr.reshape(-1)]
            return out
        if arr is not None and arr.dtype.kind == "f":
            raise TypeError(f"Layer {self.name!r} hashes strings and integers. Received "
                            f"values of dtype {arr.dtype}")
        return as_bytes_array(inputs)

    def forward(self, inputs):
        keys = self._keys(inputs)
        flat = keys.reshape(-1).tolist()
        mask = None if self.mask_value is None else _to_bytes(
            str(self.mask_value) if isinstance(self.mask_value, numbers.Integral)
            else self.mask_value)
        if self.salt is None:
            hashed = map(fingerprint64, flat)
        else:
            hashed = (siphash64(k, *self.salt) for k in flat)
        if mask is None or self.num_bins == 1:  # (tf-keras: no mask bin with one bin)
            ids = [h % self.num_bins for h in hashed]
        else:
            ids = [0 if k == mask else 1 + h % (self.num_bins - 1)
                   for k, h in zip(flat, hashed)]
        idx = torch.as_tensor(np.asarray(ids, dtype=np.int64).reshape(keys.shape))
        return self._encoded(idx, self.num_bins)

    def compute_output_shape(self, input_shape):
        return encoded_shape(input_shape, self.output_mode, self.num_bins,
                             any_rank=self._any_rank)

    def extra_repr(self) -> str:
        return f"{self.num_bins}, output_mode={self.output_mode!r}, name={self.name!r}"

    def get_config(self) -> Dict[str, Any]:
        config = self.base_config()
        config.update({"num_bins": self.num_bins, "salt": self.salt,
                       "mask_value": self.mask_value, "output_mode": self.output_mode,
                       "sparse": self.sparse})
        return config
