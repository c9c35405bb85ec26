"""Read a single-file ONNX model without reading its weights.

`onnx.load` reads the whole file and parses every weight into the ModelProto: a 1.6 GB
model costs 3.2 GB of memory before anything else happens. `read_lazily` instead maps
the file and walks protobuf's wire format (a key varint per field, a length varint per
embedded message or byte string) down to the graph's initializers. The ModelProto it
parses is the file with every large ``raw_data`` payload left out; each such initializer
becomes an external-data reference to its bytes *inside the .onnx file itself* (offset
and length of the payload), which onnx-ir then maps only when a tensor is used.

What this does not do: leave out weights stored as typed fields (``float_data``, ...)
or inside Constant nodes and subgraphs (they are parsed as usual), or write anything.
"""

from __future__ import annotations

import mmap
import os

import onnx
from google.protobuf.message import DecodeError

_MODEL_GRAPH = 7  # ModelProto.graph
_GRAPH_INITIALIZER = 5  # GraphProto.initializer
_TENSOR_RAW_DATA = 9  # TensorProto.raw_data
_LENGTH_DELIMITED = 2


def _varint(buf, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("malformed varint")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(buf, start: int, end: int):
    """(field number, wire type, field start, value start, value end) of each field."""
    pos = start
    while pos < end:
        field_start = pos
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, value_end = _varint(buf, pos)
        elif wire == 1:
            value_end = pos + 8
        elif wire == _LENGTH_DELIMITED:
            length, pos = _varint(buf, pos)
            value_end = pos + length
        elif wire == 5:
            value_end = pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if value_end > end:
            raise ValueError("field runs past its message")
        yield number, wire, field_start, pos, value_end
        pos = value_end


def _embedded(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | _LENGTH_DELIMITED) + _encode_varint(len(payload)) + payload


def _tensor_without_data(buf, start: int, end: int, min_bytes: int) -> tuple[bytes, tuple[int, int] | None]:
    """The TensorProto's bytes without a raw_data payload of at least `min_bytes`, and
    that payload's (offset, length) in the file (None when it was kept)."""
    kept, cut = bytearray(), None
    for number, wire, field_start, value_start, value_end in _fields(buf, start, end):
        if number == _TENSOR_RAW_DATA and wire == _LENGTH_DELIMITED and value_end - value_start >= min_bytes:
            cut = (value_start, value_end - value_start)
        else:
            kept += buf[field_start:value_end]
    return bytes(kept), cut


def _graph_without_data(buf, start: int, end: int, min_bytes: int) -> tuple[bytes, list[tuple[int, int] | None]]:
    kept, cuts = bytearray(), []
    for number, wire, field_start, value_start, value_end in _fields(buf, start, end):
        if number == _GRAPH_INITIALIZER and wire == _LENGTH_DELIMITED:
            tensor, cut = _tensor_without_data(buf, value_start, value_end, min_bytes)
            kept += _embedded(_GRAPH_INITIALIZER, tensor)
            cuts.append(cut)
        else:
            kept += buf[field_start:value_end]
    return bytes(kept), cuts


def read_lazily(path: str, min_bytes: int = 1 << 16) -> onnx.ModelProto:
    """The ModelProto of `path` whose initializers of at least `min_bytes` refer to
    their bytes in the file (external data); raises what protobuf raises on a file
    that is not a model."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        try:
            kept, cuts = bytearray(), []
            for number, wire, field_start, value_start, value_end in _fields(buf, 0, len(buf)):
                if number == _MODEL_GRAPH and wire == _LENGTH_DELIMITED:
                    graph, cuts = _graph_without_data(buf, value_start, value_end, min_bytes)
                    kept += _embedded(_MODEL_GRAPH, graph)
                else:
                    kept += buf[field_start:value_end]
        except (ValueError, IndexError) as err:
            raise DecodeError(f"not a protobuf message: {err}") from err
    proto = onnx.ModelProto()
    proto.ParseFromString(bytes(kept))
    location = os.path.basename(path)
    for tensor, cut in zip(proto.graph.initializer, cuts):
        if cut is not None:
            tensor.data_location = onnx.TensorProto.EXTERNAL
            for key, value in (("location", location), ("offset", str(cut[0])), ("length", str(cut[1]))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
    return proto
