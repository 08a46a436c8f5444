"""Read a tf-keras SavedModel directory (``model.save("dir")`` in TensorFlow 2.x before
Keras 3, ``save_format="tf"``; R keras' ``save_model_tf``) without TensorFlow.

What such a directory holds, as tf-keras 2.21 lays it out (checked by saving with it):

- ``keras_metadata.pb``: a ``SavedMetadata`` protocol buffer, one entry per Keras object
  with its path from the model (``root``, ``root.layer_with_weights-0``,
  ``root.layer-2``, ``root.layer_with_weights-1.cell``) and a JSON text; the root's JSON
  holds ``model_config`` (the model's config, as in an ``.h5`` file, tuples written as
  ``{"class_name": "__tuple__", "items": [...]}``) and ``keras_version``, each layer's its
  ``name``.
- ``variables/variables.index``: a LevelDB table (``SSTable``; blocks may be Snappy
  compressed) from checkpoint keys (``layer_with_weights-0/kernel/.ATTRIBUTES/
  VARIABLE_VALUE``) to ``BundleEntryProto`` (dtype, shape, shard, offset, size);
  ``variables/variables.data-0000k-of-0000n``: the tensors' bytes, little-endian.
- The checkpoint key ``_CHECKPOINTABLE_OBJECT_GRAPH``: a ``TrackableObjectGraph`` whose
  nodes list their children by local name, in the order they were tracked (a layer's
  weights in the order it made them, which is its ``get_weights`` order), and their
  variables' checkpoint keys.

``saved_model.pb`` (the TensorFlow graphs) is not read: sepconv rebuilds the model from
its config, as for ``.h5`` files.  The protocol buffers are decoded from their wire format
(field numbers from TensorFlow's ``.proto`` files), which needs no ``protobuf`` package.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .files import KerasFile, KerasFileError

#: Files of a Keras SavedModel directory sepconv reads.
METADATA = "keras_metadata.pb"
INDEX = os.path.join("variables", "variables.index")

# -- protocol buffers' wire format --------------------------------------------------------


def _varint(data: bytes, i: int) -> Tuple[int, int]:
    out = shift = 0
    while True:
        if i >= len(data):
            raise ValueError("a varint runs past the end of its buffer")
        byte = data[i]
        i += 1
        out |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return out, i


def _fields(data: bytes) -> List[Tuple[int, Any]]:
    """``(field number, value)`` of a message: ints for varints, bytes otherwise."""
    out, i = [], 0
    while i < len(data):
        key, i = _varint(data, i)
        number, kind = key >> 3, key & 7
        if kind == 0:
            value, i = _varint(data, i)
        elif kind == 2:
            size, i = _varint(data, i)
            value, i = data[i:i + size], i + size
        elif kind == 5:
            value, i = data[i:i + 4], i + 4
        elif kind == 1:
            value, i = data[i:i + 8], i + 8
        else:
            raise ValueError(f"unsupported protocol buffer wire type {kind}")
        out.append((number, value))
    return out


def _all(fields: List[Tuple[int, Any]], number: int) -> List[Any]:
    return [v for n, v in fields if n == number]


def _one(fields: List[Tuple[int, Any]], number: int, default: Any = None) -> Any:
    found = _all(fields, number)
    return found[-1] if found else default


# -- the LevelDB table of variables.index ------------------------------------------------
_TABLE_MAGIC = 0xDB4775248B80FB57


def _snappy(data: bytes) -> bytes:
    """Snappy's block format, decompressed (literals and back-references)."""
    size, i = _varint(data, 0)
    out = bytearray()
    while i < len(data):
        tag = data[i]
        i += 1
        kind = tag & 3
        if kind == 0:  # literal
            length = tag >> 2
            if length >= 60:
                extra = length - 59
                length = int.from_bytes(data[i:i + extra], "little")
                i += extra
            length += 1
            out += data[i:i + length]
            i += length
            continue
        if kind == 1:
            length = ((tag >> 2) & 7) + 4
            offset = ((tag >> 5) << 8) | data[i]
            i += 1
        else:
            length = (tag >> 2) + 1
            width = 2 if kind == 2 else 4
            offset = int.from_bytes(data[i:i + width], "little")
            i += width
        if offset == 0 or offset > len(out):
            raise ValueError("a Snappy back-reference points before the data")
        for _ in range(length):  # may overlap what it writes
            out.append(out[-offset])
    if len(out) != size:
        raise ValueError("Snappy data decompressed to the wrong size")
    return bytes(out)


def _block(data: bytes, handle: bytes) -> List[Tuple[bytes, bytes]]:
    """The entries of the block a ``BlockHandle`` (offset, size) points at."""
    offset, i = _varint(handle, 0)
    size, _ = _varint(handle, i)
    raw, kind = data[offset:offset + size], data[offset + size:offset + size + 1]
    if len(raw) != size or not kind:
        raise ValueError("a table block runs past the end of the file")
    if kind[0] == 1:
        raw = _snappy(raw)
    elif kind[0] != 0:
        raise ValueError(f"unsupported table block compression {kind[0]}")
    restarts = struct.unpack_from("<I", raw, len(raw) - 4)[0]
    end = len(raw) - 4 - 4 * restarts
    entries, key, i = [], b"", 0
    while i < end:
        shared, i = _varint(raw, i)
        fresh, i = _varint(raw, i)
        length, i = _varint(raw, i)
        key = key[:shared] + raw[i:i + fresh]
        i += fresh
        entries.append((key, raw[i:i + length]))
        i += length
    return entries


def _table(path: str) -> Dict[str, bytes]:
    """Every key and value of a LevelDB table file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 48 or struct.unpack_from("<Q", data, len(data) - 8)[0] != _TABLE_MAGIC:
        raise ValueError("not a LevelDB table (bad footer)")
    footer = data[len(data) - 48:]
    _, i = _varint(footer, 0)
    _, i = _varint(footer, i)  # the metaindex handle (unused)
    index = footer[i:]
    out = {}
    for _, handle in _block(data, index):
        for key, value in _block(data, handle):
            out[key.decode("utf8")] = value
    return out


# -- tensors of the bundle ------------------------------------------------------------------
#: TensorFlow's DataType numbers -> numpy dtypes (little-endian).
_DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?",
           17: "<u2", 19: "<f2", 22: "<u4", 23: "<u8"}
_STRING, _BFLOAT16 = 7, 14


class _Bundle:
    """The tensors of ``variables/``: :meth:`get` by checkpoint key."""

    def __init__(self, directory: str):
        self.directory = directory
        self.entries = _table(os.path.join(directory, INDEX))
        header = _fields(self.entries.get("", b""))
        self.shards = int(_one(header, 1, 1))
        self._data: Dict[int, bytes] = {}

    def _shard(self, shard: int) -> bytes:
        if shard not in self._data:
            name = f"variables.data-{shard:05d}-of-{self.shards:05d}"
            path = os.path.join(self.directory, "variables", name)
            if not os.path.isfile(path):
                raise KerasFileError(f"{self.directory}: variables/{name} is missing")
            with open(path, "rb") as f:
                self._data[shard] = f.read()
        return self._data[shard]

    def get(self, key: str) -> Any:
        entry = _fields(self.entries[key])
        dtype = int(_one(entry, 1, 0))
        shape = [int(_one(_fields(d), 1, 0)) for d in _all(_fields(_one(entry, 2, b"")), 2)]
        if _all(entry, 7):
            raise KerasFileError(f"{self.directory}: variable {key!r} is stored in slices "
                                 f"(a partitioned variable), which sepconv does not read")
        offset, size = int(_one(entry, 4, 0)), int(_one(entry, 5, 0))
        raw = self._shard(int(_one(entry, 3, 0)))[offset:offset + size]
        if len(raw) != size:
            raise KerasFileError(f"{self.directory}: the variables' data file is truncated")
        if dtype == _STRING:  # lengths (varints), a checksum, then the bytes
            count = int(np.prod(shape)) if shape else 1
            lengths, i = [], 0
            for _ in range(count):
                n, i = _varint(raw, i)
                lengths.append(n)
            i += 4
            out = []
            for n in lengths:
                out.append(raw[i:i + n])
                i += n
            return out
        if dtype == _BFLOAT16:  # the high halves of float32s
            bits = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
            return bits.view(np.float32).reshape(shape)
        if dtype not in _DTYPES:
            raise KerasFileError(f"{self.directory}: variable {key!r} has TensorFlow dtype "
                                 f"number {dtype}, which sepconv does not read")
        return np.frombuffer(raw, _DTYPES[dtype]).reshape(shape).astype(
            np.dtype(_DTYPES[dtype]).newbyteorder("="))


# -- the Keras objects -----------------------------------------------------------------------
def _untupled(value: Any) -> Any:
    """A SavedModel metadata value as the ``.h5`` config writes it: tuples as lists, no
    ``shared_object_id``."""
    if isinstance(value, dict):
        if value.get("class_name") == "__tuple__" and "items" in value:
            return [_untupled(v) for v in value["items"]]
        return {k: _untupled(v) for k, v in value.items() if k != "shared_object_id"}
    if isinstance(value, list):
        return [_untupled(v) for v in value]
    return value


def _object_graph(bundle: _Bundle) -> List[Tuple[List[Tuple[str, int]], List[str]]]:
    """The checkpoint's objects: each one's children ``(local name, node)`` in tracking
    order and its variables' checkpoint keys."""
    key = "_CHECKPOINTABLE_OBJECT_GRAPH"
    if key not in bundle.entries:
        raise KerasFileError(f"{bundle.directory}: the variables hold no object graph")
    graph = _fields(bundle.get(key)[0])
    nodes = []
    for node in _all(graph, 1):
        fields = _fields(node)
        children = [(_one(c, 2, b"").decode("utf8"), int(_one(c, 1, 0)))
                    for c in map(_fields, _all(fields, 1))]
        values = [_one(a, 3, b"").decode("utf8") for a in map(_fields, _all(fields, 2))
                  if _one(a, 1, b"") == b"VARIABLE_VALUE"]
        nodes.append((children, values))
    return nodes


#: The identifiers of Keras models (whose layers name their weights) in the metadata.
_MODELS = ("_tf_keras_model", "_tf_keras_sequential", "_tf_keras_network")


def read_saved_model(path: str) -> KerasFile:
    """A tf-keras SavedModel directory as a :class:`KerasFile` (config and, per layer,
    its weights in ``get_weights`` order, named ``<layer>/<variable>`` as an ``.h5`` file
    names them: a nested model's weights by its inner layers)."""
    meta_path = os.path.join(path, METADATA)
    if not os.path.isfile(meta_path):
        raise KerasFileError(f"{path} is a TensorFlow SavedModel without {METADATA} (not "
                             f"saved by Keras, or by TensorFlow before 2.5): in Keras, save "
                             f"with model.save('model.h5') or model.save('model.keras')")
    try:
        with open(meta_path, "rb") as f:
            entries = [_fields(n) for n in _all(_fields(f.read()), 1)]
        paths = {_one(e, 3, b"").decode("utf8"): json.loads(_one(e, 5, b"{}").decode("utf8"))
                 for e in entries}
        kinds = {_one(e, 3, b"").decode("utf8"): _one(e, 4, b"").decode("utf8")
                 for e in entries}
        bundle = _Bundle(path)
        graph = _object_graph(bundle)
    except KerasFileError:
        raise
    except (ValueError, KeyError, IndexError, OSError, struct.error) as err:
        raise KerasFileError(f"{path} is truncated or corrupted: {err}") from None
    root = paths.get("root") or {}
    config = root.get("model_config")
    if not isinstance(config, dict):
        raise KerasFileError(f"{path} holds a SavedModel of a subclassed Keras model (no "
                             f"model config): sepconv rebuilds Sequential and functional "
                             f"models only")
    # each Keras object's checkpoint node: follow its path's local names from the root
    node_of: Dict[str, int] = {}
    for p in paths:
        node: Optional[int] = 0
        for local in p.split(".")[1:]:
            node = dict(graph[node][0]).get(local) if node is not None else None
        if node is not None:
            node_of[p] = node
    names = {node_of[p]: str(m.get("name")) for p, m in paths.items()
             if p in node_of and p != "root" and m.get("name")}
    models = {node_of[p] for p, kind in kinds.items() if p in node_of and kind in _MODELS}

    def ordered(node: int) -> List[int]:
        # a layer's variables in its `variables` order (tf-keras tracks that list as a
        # child: trainable first, then the others, as get_weights gives them); else (an
        # adapted preprocessing layer) in the order it tracked them
        listed = dict(graph[node][0]).get("variables")
        if listed is not None:
            return [child for _, child in graph[listed][0]]
        out: List[int] = []
        stack, seen = [node], set()
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if graph[n][1]:
                out.append(n)
            stack.extend(child for _, child in reversed(graph[n][0]))
        return out

    def owners(node: int, owner: str, out: Dict[int, str]) -> None:
        # each variable's layer: a nested model's variables belong to its layers
        if node in models:
            for local, child in graph[node][0]:
                if local.startswith("layer") and child in names:
                    owners(child, names[child], out)
        for var in ordered(node):
            out.setdefault(var, owner)

    weights: Dict[str, List[np.ndarray]] = {}
    weight_names: Dict[str, List[str]] = {}
    for local, child in graph[0][0]:
        layer = names.get(child)
        if layer is None or layer in weights or not local.startswith("layer"):
            continue  # the optimizer, the model's own lists, a layer seen by its other name
        owner: Dict[int, str] = {}
        owners(child, layer, owner)
        found = [(owner[var], graph[var][1][0]) for var in ordered(child) if graph[var][1]]
        try:
            weights[layer] = [np.asarray(bundle.get(key)) for _, key in found]
        except (ValueError, KeyError, struct.error) as err:
            raise KerasFileError(f"{path} is truncated or corrupted: {err}") from None
        weight_names[layer] = [f"{o}/{key.split('/.ATTRIBUTES')[0].split('/')[-1]}:0"
                               for o, key in found]
    return KerasFile(path, "saved_model", _untupled(config), root.get("keras_version"),
                     legacy_weights=weights, legacy_names=weight_names)
