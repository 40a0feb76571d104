"""Read TensorFlow checkpoints (the TensorBundle V2 format) without TensorFlow or protobuf.

A checkpoint ``<prefix>`` is ``<prefix>.index`` (an SSTable in the LevelDB table format whose values are
serialised ``BundleEntryProto`` messages, plus a ``BundleHeaderProto`` under the empty key) and one or more
``<prefix>.data-<shard>-of-<n>`` files holding the raw little-endian tensor bytes. This module parses both by
hand: the SSTable footer, index and data blocks (uncompressed, with masked CRC32C trailers), the few protobuf
fields that matter, and checks every tensor's CRC32C. Every failure raises :class:`CheckpointError` naming the
file at fault.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from research_job.errors import ModelError

#: LevelDB / TensorFlow table magic number (last 8 bytes of the .index file)
_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_LEN = 48
_BLOCK_TRAILER_LEN = 5  # 1 byte compression type + 4 bytes masked crc32c

#: tensorflow/core/framework/types.proto DataType -> numpy little-endian dtype (the numeric ones)
_DTYPES: dict[int, str] = {
    1: "<f4",  # DT_FLOAT
    2: "<f8",  # DT_DOUBLE
    3: "<i4",  # DT_INT32
    4: "u1",  # DT_UINT8
    5: "<i2",  # DT_INT16
    6: "i1",  # DT_INT8
    9: "<i8",  # DT_INT64
    10: "?",  # DT_BOOL
    17: "<u2",  # DT_UINT16
    19: "<f2",  # DT_HALF
    22: "<u4",  # DT_UINT32
    23: "<u8",  # DT_UINT64
}
_DTYPE_NAMES = {
    1: "float32",
    2: "float64",
    3: "int32",
    4: "uint8",
    5: "int16",
    6: "int8",
    7: "string",
    8: "complex64",
    9: "int64",
    10: "bool",
    14: "bfloat16",
    17: "uint16",
    19: "float16",
    22: "uint32",
    23: "uint64",
}


class CheckpointError(ModelError):
    """A checkpoint file is missing, truncated, corrupted or in an unsupported variant."""


# ---------------------------------------------------------------------------------------------------- CRC32C
def _crc_table() -> np.ndarray:
    poly = 0x82F63B78  # Castagnoli, reflected
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table[i] = c
    return table


_CRC_TABLE = _crc_table()


def _apply(cols: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Apply the GF(2) linear map with columns ``cols[i] = M(1 << i)`` to every register in ``x``."""
    out = np.zeros_like(x)
    for i in range(32):
        out ^= np.where((x >> np.uint32(i)) & np.uint32(1), cols[i], np.uint32(0))
    return out


@lru_cache(maxsize=64)
def _zeros_operator(n: int) -> np.ndarray:
    """Columns of the linear map 'feed n zero bytes to the raw CRC register'."""
    if n == 0:
        return np.array([1 << i for i in range(32)], dtype=np.uint32)
    if n == 1:
        e = np.array([1 << i for i in range(32)], dtype=np.uint32)
        return _CRC_TABLE[e & np.uint32(0xFF)] ^ (e >> np.uint32(8))
    half = _zeros_operator(n // 2)
    m = _apply(half, half)
    return _apply(_zeros_operator(1), m) if n % 2 else m


def crc32c(data: bytes | memoryview | np.ndarray) -> int:
    """CRC32C (Castagnoli) of ``data``, vectorised: many lanes in numpy, combined by GF(2) linear algebra."""
    buf = (
        np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
        if not isinstance(data, np.ndarray)
        else data
    )
    buf = buf.reshape(-1).view(np.uint8)
    n = buf.size
    lane_len = 64
    lanes = 1
    while lanes * lane_len < n:
        lanes *= 2
    # leading zero bytes leave a zero-initialised register at zero, so front padding is free
    padded = np.zeros(lanes * lane_len, dtype=np.uint8)
    padded[lanes * lane_len - n :] = buf
    block = padded.reshape(lanes, lane_len)
    reg = np.zeros(lanes, dtype=np.uint32)
    for j in range(lane_len):
        reg = _CRC_TABLE[(reg ^ block[:, j]) & np.uint32(0xFF)] ^ (reg >> np.uint32(8))
    span = lane_len
    while reg.size > 1:
        reg = _apply(_zeros_operator(span), reg[0::2]) ^ reg[1::2]
        span *= 2
    init = _apply(_zeros_operator(n), np.array([0xFFFFFFFF], dtype=np.uint32))[0]
    return int(init ^ reg[0] ^ np.uint32(0xFFFFFFFF))


def unmask_crc(masked: int) -> int:
    """Undo LevelDB/TensorFlow's CRC masking."""
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    """LevelDB/TensorFlow's CRC masking (stored CRCs are masked)."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------------- protobuf
def _varint(buf: bytes, pos: int, path: str) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointError(f"{path}: truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CheckpointError(f"{path}: varint too long")


def _fields(buf: bytes, path: str) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield ``(field number, wire type, value)`` of a serialised protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos, path)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos, path)
        elif wire == 1:
            value = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos, path)
            value = bytes(buf[pos : pos + length])
            if len(value) != length:
                raise CheckpointError(f"{path}: truncated protobuf field {number}")
            pos += length
        elif wire == 5:
            value = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise CheckpointError(f"{path}: unsupported protobuf wire type {wire} in field {number}")
        if pos > len(buf):
            raise CheckpointError(f"{path}: truncated protobuf field {number}")
        yield number, wire, value


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


@dataclass(frozen=True)
class TensorEntry:
    """One tensor's ``BundleEntryProto``: where its bytes are and what they are."""

    name: str
    dtype: int  #: TensorFlow DataType enum value
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int  #: masked CRC32C of the tensor bytes, as stored
    sliced: bool

    @property
    def dtype_name(self) -> str:
        """Human-readable dtype, e.g. ``float32``."""
        return _DTYPE_NAMES.get(self.dtype, f"DataType({self.dtype})")

    @property
    def numpy_dtype(self) -> np.dtype | None:
        """The numpy dtype, or None for dtypes this reader does not decode (strings, complex, bfloat16)."""
        code = _DTYPES.get(self.dtype)
        return np.dtype(code) if code else None


def _parse_shape(buf: bytes, path: str) -> tuple[int, ...]:
    dims: list[int] = []
    for number, _, value in _fields(buf, path):
        if number == 2 and isinstance(value, bytes):
            size = 0
            for n2, _, v2 in _fields(value, path):
                if n2 == 1 and isinstance(v2, int):
                    size = _signed64(v2)
            dims.append(size)
        elif number == 3 and value:
            raise CheckpointError(f"{path}: tensor of unknown rank")
    return tuple(dims)


def _parse_entry(name: str, buf: bytes, path: str) -> TensorEntry:
    dtype = shard = offset = size = crc = 0
    shape: tuple[int, ...] = ()
    sliced = False
    for number, _, value in _fields(buf, path):
        if number == 1 and isinstance(value, int):
            dtype = value
        elif number == 2 and isinstance(value, bytes):
            shape = _parse_shape(value, path)
        elif number == 3 and isinstance(value, int):
            shard = value
        elif number == 4 and isinstance(value, int):
            offset = _signed64(value)
        elif number == 5 and isinstance(value, int):
            size = _signed64(value)
        elif number == 6 and isinstance(value, int):
            crc = value
        elif number == 7:
            sliced = True
    return TensorEntry(name, dtype, shape, shard, offset, size, crc, sliced)


# ---------------------------------------------------------------------------------------------------- SSTable
def _read_block(data: bytes, offset: int, size: int, path: str) -> bytes:
    end = offset + size + _BLOCK_TRAILER_LEN
    if offset < 0 or end > len(data):
        raise CheckpointError(
            f"{path}: block at {offset}+{size} runs past the end of the file ({len(data)} bytes)"
        )
    contents = data[offset : offset + size]
    ctype = data[offset + size]
    (stored,) = struct.unpack_from("<I", data, offset + size + 1)
    if crc32c(data[offset : offset + size + 1]) != unmask_crc(stored):
        raise CheckpointError(f"{path}: block at offset {offset} fails its CRC32C check (file corrupted)")
    if ctype != 0:
        raise CheckpointError(
            f"{path}: block at offset {offset} uses compression type {ctype}; only 0 (none)"
        )
    return contents


def _block_entries(block: bytes, path: str) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise CheckpointError(f"{path}: block too short")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise CheckpointError(f"{path}: bad restart count {num_restarts}")
    pos = 0
    key = b""
    while pos < limit:
        shared, pos = _varint(block, pos, path)
        non_shared, pos = _varint(block, pos, path)
        value_len, pos = _varint(block, pos, path)
        if shared > len(key) or pos + non_shared + value_len > limit:
            raise CheckpointError(f"{path}: corrupted block entry")
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        yield key, block[pos : pos + value_len]
        pos += value_len


def _block_handle(buf: bytes, pos: int, path: str) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos, path)
    size, pos = _varint(buf, pos, path)
    return offset, size, pos


class TensorBundle:
    """A TensorFlow V2 checkpoint opened for reading.

    Args:
        prefix: the checkpoint prefix (``dir/model.ckpt`` for ``dir/model.ckpt.index``; the musicnn wheel's
            checkpoints use the empty basename, i.e. ``dir/`` for ``dir/.index``).

    Raises:
        CheckpointError: a file is missing, truncated or corrupted.
    """

    def __init__(self, prefix: str | os.PathLike[str]):
        self.prefix = os.fspath(prefix)
        self.index_path = self.prefix + ".index"
        try:
            with open(self.index_path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise CheckpointError(
                f"Cannot read checkpoint index {self.index_path!r}: {exc.strerror}"
            ) from exc
        path = self.index_path
        if len(data) < _FOOTER_LEN:
            raise CheckpointError(f"{path}: {len(data)} bytes, too short for an SSTable footer (truncated?)")
        footer = data[-_FOOTER_LEN:]
        (magic,) = struct.unpack_from("<Q", footer, _FOOTER_LEN - 8)
        if magic != _TABLE_MAGIC:
            raise CheckpointError(
                f"{path}: bad table magic {magic:#x} (not a TensorFlow checkpoint index, or truncated)"
            )
        _, _, pos = _block_handle(footer, 0, path)  # metaindex block: unused
        index_off, index_size, _ = _block_handle(footer, pos, path)
        index_block = _read_block(data, index_off, index_size, path)

        self.num_shards = 1
        self.big_endian = False
        self.entries: dict[str, TensorEntry] = {}
        for _, handle in _block_entries(index_block, path):
            off, size, _ = _block_handle(handle, 0, path)
            for key, value in _block_entries(_read_block(data, off, size, path), path):
                if key == b"":
                    for number, _, v in _fields(value, path):
                        if number == 1 and isinstance(v, int):
                            self.num_shards = v
                        elif number == 2 and isinstance(v, int):
                            self.big_endian = v == 1
                    continue
                name = key.decode("utf-8")
                self.entries[name] = _parse_entry(name, value, path)
        if self.big_endian:
            raise CheckpointError(f"{path}: big-endian checkpoints are not supported")
        self.data_paths = [
            f"{self.prefix}.data-{i:05d}-of-{self.num_shards:05d}" for i in range(self.num_shards)
        ]
        self._shards: dict[int, bytes] = {}

    def names(self) -> list[str]:
        """Tensor names, sorted."""
        return sorted(self.entries)

    def _shard(self, shard_id: int) -> bytes:
        if shard_id not in self._shards:
            if not 0 <= shard_id < self.num_shards:
                raise CheckpointError(
                    f"{self.index_path}: shard {shard_id} out of range (num_shards={self.num_shards})"
                )
            p = self.data_paths[shard_id]
            try:
                with open(p, "rb") as f:
                    self._shards[shard_id] = f.read()
            except OSError as exc:
                raise CheckpointError(f"Cannot read checkpoint data {p!r}: {exc.strerror}") from exc
        return self._shards[shard_id]

    def read(self, name: str, verify: bool = True) -> np.ndarray:
        """Return tensor ``name`` as a numpy array of its stored shape and dtype.

        Raises:
            CheckpointError: unknown name (the message lists a few known ones), truncated data file, CRC
                mismatch, or a dtype this reader does not decode.
        """
        if name not in self.entries:
            known = ", ".join(self.names()[:10])
            raise CheckpointError(f"Unknown tensor {name!r} in {self.index_path}. Known: {known}, ...")
        e = self.entries[name]
        dtype = e.numpy_dtype
        if dtype is None or e.sliced:
            what = "sliced tensor" if e.sliced else f"dtype {e.dtype_name}"
            raise CheckpointError(f"{self.index_path}: tensor {name!r} has unsupported {what}")
        data = self._shard(e.shard_id)
        path = self.data_paths[e.shard_id]
        if e.offset < 0 or e.offset + e.size > len(data):
            raise CheckpointError(
                f"{path}: tensor {name!r} needs bytes {e.offset}..{e.offset + e.size} but the file has "
                f"{len(data)} bytes (truncated?)"
            )
        count = int(np.prod(e.shape, dtype=np.int64)) if e.shape else 1
        if count * dtype.itemsize != e.size:
            raise CheckpointError(
                f"{self.index_path}: tensor {name!r} of shape {e.shape} {e.dtype_name} should take "
                f"{count * dtype.itemsize} bytes, the index says {e.size}"
            )
        raw = memoryview(data)[e.offset : e.offset + e.size]
        if verify and crc32c(raw) != unmask_crc(e.crc32c):
            raise CheckpointError(f"{path}: tensor {name!r} fails its CRC32C check (file corrupted)")
        return np.frombuffer(raw, dtype=dtype).reshape(e.shape).copy()

    def read_all(self, verify: bool = True) -> dict[str, np.ndarray]:
        """Every decodable tensor, by name (string tensors are skipped)."""
        return {n: self.read(n, verify) for n, e in sorted(self.entries.items()) if e.numpy_dtype is not None}
