"""Kafka record batches of many templated messages, built with numpy instead of record by record.

A flip publishes one message per product, each ``head + product + tail`` for one of the
period's few templates (``AssignmentEncoder``). aiokafka's batch builder takes the records one
at a time through Python: with the loop around it, about 1 us a message, most of a warm
1M-product publish. Here the records that share a template, a key length and the width of their
offset varint have one layout, so such a run is a ``uint8`` matrix, filled a block of columns
at a time (the varints, the key twice, the template's bytes). A batch holds exactly the bytes
aiokafka's ``BatchBuilder`` writes for the same records in the same order with the same
timestamp and codec (``tests/unit/streams/worker/test_record_batch.py``): magic 2, no producer
id, the producer's compression (aiokafka's codecs), a CRC-32C over what follows the CRC field.

Records go in the order given; :func:`batch_order` orders a partition's records by template and
key length, so that runs are long. That reorders messages of *different* keys within a
partition, which no reader may rely on; one key's messages keep their order (a key is in one
call at most once).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import cramjam  # aiokafka's codecs (its [zstd] extra): zstd into a buffer given
import numpy as np
from aiokafka import codec
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBase as _Base
from aiokafka.record.util import calc_crc32c, encode_varint

from controller.clock import WallClock

_HEADER = _Base.HEADER_STRUCT
_CRC = struct.Struct(">I")
#: (attributes bits, encoder) of each producer compression type, as aiokafka compresses
CODECS: dict[str | None, tuple[int, Callable[[bytes], bytes] | None]] = {
    None: (_Base.CODEC_NONE, None),
    "gzip": (_Base.CODEC_GZIP, codec.gzip_encode),
    "snappy": (_Base.CODEC_SNAPPY, codec.snappy_encode),
    "lz4": (_Base.CODEC_LZ4, codec.lz4_encode),
    "zstd": (_Base.CODEC_ZSTD, codec.zstd_encode),
}
#: the zstd level aiokafka's ``zstd_encode`` compresses at when none is given (as its producer)
ZSTD_LEVEL = 3
#: the largest zigzag varint of a record's offset delta or length that ``build`` writes
_VARINT_STEPS = np.array([1 << (7 * i) for i in range(1, 9)], dtype=np.int64)


def varint(value: int) -> bytes:
    """Kafka's zigzag varint of ``value`` (aiokafka's own encoder)."""
    out = bytearray()
    encode_varint(value, out.append)
    return bytes(out)


def varint_width(values: np.ndarray) -> np.ndarray:
    """Bytes of the zigzag varint of each non-negative value."""
    return np.searchsorted(_VARINT_STEPS, values.astype(np.int64) << 1, side="right") + 1


class Keys:
    """Many ASCII keys as one byte string, with each key's start and length."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.blob = np.frombuffer("".join(keys).encode("ascii"), dtype=np.uint8)
        self.lengths = np.fromiter(map(len, keys), dtype=np.int64, count=len(keys))
        self.starts = np.zeros(len(keys), dtype=np.int64)
        np.cumsum(self.lengths[:-1], out=self.starts[1:])

    def __len__(self) -> int:
        return len(self.lengths)

    def put(self, rows: np.ndarray, cols: Sequence[int], idx: np.ndarray, length: int) -> None:
        """The keys ``idx`` (each ``length`` bytes long) into ``rows``, one a row, from each
        column of ``cols``: a byte column at a time, so that no temporary is larger than a
        column of indices (a matrix of every byte's index would be rows x length x 8 bytes,
        large enough for malloc to map it afresh at each call when its mmap threshold is
        fixed)."""
        at = self.starts[idx]
        for j in range(length):
            column = self.blob[at + j]
            for c in cols:
                rows[:, c + j] = column


def _body_sizes(
    key_len: np.ndarray, value_len: np.ndarray, offset_width: np.ndarray | int
) -> np.ndarray:
    """Bytes of each record after its length varint: attributes, a timestamp delta of 0, the
    offset delta, the key's length and the key, the value's length and the value, no headers."""
    return 3 + offset_width + varint_width(key_len) + key_len + varint_width(value_len) + value_len


def _value_lengths(templates: Sequence[tuple[bytes, bytes]]) -> np.ndarray:
    return np.array([len(h) + len(t) for h, t in templates], dtype=np.int64)


def batch_order(keys: Keys, codes: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``idx`` ordered by template, then key length (then as given): long runs of one layout."""
    return idx[np.lexsort((keys.lengths[idx], codes[idx]))]


def split(
    keys: Keys,
    codes: np.ndarray,
    templates: Sequence[tuple[bytes, bytes]],
    idx: np.ndarray,
    max_bytes: int,
) -> Iterator[np.ndarray]:
    """``idx`` cut into consecutive batches of at most ``max_bytes`` before compression (a
    record larger than that alone in its batch), as aiokafka's producer limits its batches."""
    key_len = keys.lengths[idx]
    # an upper bound of each record's size: its offset delta taken as 3 bytes (< 2**20)
    body = _body_sizes(key_len, _value_lengths(templates)[codes[idx]] + key_len, 3)
    ends = np.cumsum(varint_width(body) + body)
    room = max_bytes - _HEADER.size
    start = 0
    while start < len(idx):
        before = int(ends[start - 1]) if start else 0
        stop = max(int(np.searchsorted(ends, before + room, side="right")), start + 1)
        yield idx[start:stop]
        start = stop


class Scratch:
    """The buffers one publisher's :func:`build` reuses from batch to batch: the records before
    compression, and zstd's output. A compressed batch of up to 512 KiB then takes no large
    block of its own but the bytes it sends (its header and compressed records; its per-record
    index arrays are 8 bytes a record). Built into fresh buffers, each batch took ~1.5 MiB of
    large blocks (its records, a copy for the codec, the codec's output sized for the worst
    case), which malloc maps and faults in afresh at every batch once its mmap threshold is
    fixed, as a controller's is (``streams.worker.memory.CONTROLLER_MMAP_THRESHOLD``;
    docs/operations.md, "A controller's memory"). Not for
    concurrent use: :func:`build` never awaits, and copies what it returns out of these
    buffers."""

    def __init__(self) -> None:
        self._records = np.empty(0, dtype=np.uint8)
        self._packed = np.empty(0, dtype=np.uint8)

    def records(self, n: int) -> np.ndarray:
        """A buffer of ``n`` bytes for a batch's records (its contents undefined)."""
        self._records = _at_least(self._records, n)
        return self._records[:n]

    def compress(self, compression: str, data: np.ndarray) -> memoryview:
        """``data`` compressed as aiokafka's ``compression`` codec compresses a batch: zstd
        (the producers' default) into the reused output buffer, at the level aiokafka uses;
        another from a copy, into the buffer it makes itself (lz4's takes bytes alone)."""
        if compression != "zstd":
            encode = CODECS[compression][1]
            assert encode is not None
            return memoryview(encode(data.tobytes()))
        bound = len(data) + len(data) // 128 + 1024  # above ZSTD_COMPRESSBOUND
        self._packed = _at_least(self._packed, bound)
        n = cramjam.zstd.compress_into(data.data, self._packed[:bound].data, level=ZSTD_LEVEL)
        return self._packed[:n].data


def _at_least(buf: np.ndarray, n: int) -> np.ndarray:
    """``buf``, or a new byte buffer of at least ``n`` bytes (doubling) when it is smaller."""
    return buf if len(buf) >= n else np.empty(max(n, 2 * len(buf)), dtype=np.uint8)


def build(
    keys: Keys,
    codes: np.ndarray,
    templates: Sequence[tuple[bytes, bytes]],
    idx: np.ndarray,
    *,
    compression: str | None = None,
    timestamp_ms: int | None = None,
    scratch: Scratch | None = None,
) -> bytearray:
    """One record batch of the messages ``idx``, in that order: key ``keys[i]``, value
    ``head + keys[i] + tail`` of ``templates[codes[i]]``; every record stamped
    ``timestamp_ms`` (now by default); compressed with the producer's ``compression`` (an
    aiokafka ``compression_type``), as aiokafka's producer compresses its batches.
    ``scratch``: the buffers a compressed batch is made in (:class:`Scratch`; a new one by
    default)."""
    n = len(idx)
    if n == 0:
        raise ValueError("a record batch holds at least one record")
    if timestamp_ms is None:  # the write's wall time, as aiokafka stamps its records
        timestamp_ms = int(WallClock().now().timestamp() * 1000)
    codec_bits, encode = CODECS[compression]
    code, key_len = codes[idx], keys.lengths[idx]
    offsets = np.arange(n, dtype=np.int64)
    offset_width = varint_width(offsets)
    bodies = _body_sizes(key_len, _value_lengths(templates)[code] + key_len, offset_width)
    sizes = varint_width(bodies) + bodies
    total = int(sizes.sum())
    if encode is None:  # the records are the batch's own bytes, after its header
        buf = bytearray(_HEADER.size + total)
        out = np.frombuffer(buf, dtype=np.uint8)[_HEADER.size :]
    else:  # the records are made where they are compressed from
        if scratch is None:
            scratch = Scratch()
        out = scratch.records(total)
    # runs of one layout: one template, key length and offset varint width
    layout = (code * 1024 + key_len) * 16 + offset_width
    cuts = np.flatnonzero(layout[1:] != layout[:-1]) + 1
    pos = 0
    for s, e in zip([0, *cuts.tolist()], [*cuts.tolist(), n], strict=True):
        head, tail = templates[int(code[s])]
        length, width, size = int(key_len[s]), int(offset_width[s]), int(sizes[s])
        rows = out[pos : pos + size * (e - s)].reshape(e - s, size)
        lead = varint(int(bodies[s])) + b"\x00\x00"  # length, attributes, timestamp delta
        col = _put(rows, 0, lead)
        z = offsets[s:e] << 1  # the offset delta's zigzag varint
        for i in range(width):
            low = (z >> (7 * i)) & 0x7F
            rows[:, col + i] = low | 0x80 if i < width - 1 else low
        key_at = _put(rows, col + width, varint(length))
        col = _put(rows, key_at + length, varint(len(head) + length + len(tail)) + head)
        keys.put(rows, (key_at, col), idx[s:e], length)  # the key, and again in the value
        col = _put(rows, col + length, tail + b"\x00")  # the value's end, no headers
        assert col == size
        pos += size * (e - s)
    assert pos == total  # every byte written: a reused buffer keeps the last batch's bytes
    if encode is not None:  # as aiokafka's (compiled) builder: compressed, smaller or not
        assert scratch is not None and compression is not None
        packed = scratch.compress(compression, out)
        buf = bytearray(_HEADER.size + len(packed))
        buf[_HEADER.size :] = packed
    del out, rows
    _HEADER.pack_into(
        buf,
        0,
        0,  # base offset: the broker's
        len(buf) - _Base.AFTER_LEN_OFFSET,
        _Base.NO_PARTITION_LEADER_EPOCH,
        2,  # magic
        0,  # the CRC, below
        codec_bits,  # attributes: the codec; create time, not transactional
        n - 1,  # last offset delta
        timestamp_ms,
        timestamp_ms,
        -1,  # producer id, epoch and base sequence as aiokafka's BatchBuilder writes them
        -1,
        0,
        n,
    )
    _CRC.pack_into(buf, _Base.CRC_OFFSET, calc_crc32c(memoryview(buf)[_Base.ATTRIBUTES_OFFSET :]))
    return buf


def _put(rows: np.ndarray, col: int, data: bytes) -> int:
    """``data`` in every row from column ``col``; the column after it."""
    rows[:, col : col + len(data)] = np.frombuffer(data, dtype=np.uint8)
    return col + len(data)


class BuiltBatch(BatchBuilder):  # type: ignore[misc]
    """A record batch made by :func:`build`, handed to aiokafka's producer (``send_batch``)
    in place of the ``BatchBuilder`` it would have filled itself: closed, its bytes ready."""

    def __init__(self, buffer: bytearray, records: int) -> None:
        # not BatchBuilder.__init__: nothing is appended to a batch already built
        self._buffer = buffer
        self._records = records

    def append(self, *, timestamp: Any, key: Any, value: Any, headers: Any = ()) -> None:
        return None

    def close(self) -> None:
        return None

    def closed(self) -> bool:
        return True

    def _build(self) -> bytearray:
        return self._buffer

    def size(self) -> int:
        return len(self._buffer)

    def record_count(self) -> int:
        return self._records
