"""One batch of records -> one COPY transaction; nothing about threads.

Rows are encoded straight into PostgreSQL's binary COPY format (one bytearray
per batch, with row boundaries kept for bisection and the spool). The fast
path COPYs into ``frame_metadata``; the idempotent path COPYs into a
transaction-scoped staging table and inserts with ``ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import attrs
import orjson
import psycopg

from framemeta.records import FrameRecord

__all__ = [
    "COLUMNS",
    "EncodedBatch",
    "copy_batch",
    "copy_records",
    "decode_row",
    "encode_batch",
    "encode_into",
    "insert_idempotent",
]

COLUMNS: Final = (
    "captured_at",
    "frame_number",
    "width",
    "height",
    "motion_score",
    "brightness",
    "detection_count",
    "camera_id",
    "detection_labels",
    "detection_scores",
    "detection_boxes",
    "metadata",
)
_COLUMN_LIST: Final = ", ".join(COLUMNS)
_COPY_RAW: Final = f"COPY frame_metadata ({_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)"
_COPY_STAGING: Final = f"COPY framemeta_staging ({_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)"
# Column types spelled out (not LIKE frame_metadata): the writer role may
# not read the raw table's definition, and pgbouncer in transaction mode
# allows only transaction-scoped state, hence ON COMMIT DROP.
_CREATE_STAGING: Final = (
    "CREATE TEMPORARY TABLE framemeta_staging ("
    " captured_at timestamptz, frame_number bigint, width integer, height integer,"
    " motion_score real, brightness real, detection_count integer, camera_id text,"
    " detection_labels text[], detection_scores real[], detection_boxes real[],"
    " metadata jsonb) ON COMMIT DROP"
)
_INSERT_STAGED: Final = (
    f"INSERT INTO frame_metadata ({_COLUMN_LIST})"
    f" SELECT {_COLUMN_LIST} FROM framemeta_staging"
    # No conflict target: naming one would need SELECT on those columns,
    # which the insert-only writer role does not have; the primary key is
    # the table's only unique index.
    " ON CONFLICT DO NOTHING"
)

_SIGNATURE: Final = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_TRAILER: Final = b"\xff\xff"
_NULL: Final = b"\xff\xff\xff\xff"
_PG_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)
_TEXT_OID: Final = 25
_FLOAT4_OID: Final = 700

_HEAD = struct.Struct("!hiqiq")  # field count, captured_at, frame_number
# ... then width, height, motion_score, brightness, detection_count
_FIXED = struct.Struct("!hiqiqiiiiififii")
_NO_ARRAYS: Final = b"\xff\xff\xff\xff" * 3  # NULL labels, scores, boxes
_INT4 = struct.Struct("!ii")
_FLOAT4 = struct.Struct("!if")
_I32 = struct.Struct("!i")
_ARRAY_1D = struct.Struct("!iiiiii")  # length, ndim, has_null, oid, size, lower bound
_ARRAY_2D = struct.Struct("!iiiiiiii")
_CAMERA_CACHE: dict[str, bytes] = {}
_CAMERA_CACHE_MAX: Final = 65_536
# A batch is encoded in slices this long, with the GIL released between
# them, so producer threads calling write() are not starved (see writer.py).
ENCODE_SLICE_ROWS: Final = 256
STREAM_ROWS: Final = 512
"""`copy_records` sends rows to the server in pieces of this many (~200 KB)."""


@attrs.define
class EncodedBatch:
    """Rows in binary COPY format: ``data`` holds them back to back and
    ``ends[i]`` is the offset just past row ``i``."""

    data: bytearray
    ends: list[int]

    def __len__(self) -> int:
        return len(self.ends)

    @property
    def nbytes(self) -> int:
        """Bytes of row data."""
        return len(self.data)

    def row(self, index: int) -> bytes:
        """The encoded bytes of row ``index``."""
        start = self.ends[index - 1] if index else 0
        return bytes(self.data[start : self.ends[index]])

    def slice(self, start: int, stop: int) -> EncodedBatch:
        """Rows ``start`` to ``stop`` (exclusive) as a batch of their own."""
        base = self.ends[start - 1] if start else 0
        end = self.ends[stop - 1] if stop else 0
        return EncodedBatch(self.data[base:end], [e - base for e in self.ends[start:stop]])

    def to_bytes(self) -> bytes:
        """A self-describing serialisation (row count, row ends, data) for the spool."""
        header = struct.pack(f"!I{len(self.ends)}I", len(self.ends), *self.ends)
        return header + bytes(self.data)

    @classmethod
    def from_bytes(cls, payload: bytes) -> EncodedBatch:
        """Inverse of `to_bytes`."""
        (count,) = struct.unpack_from("!I", payload)
        ends = list(struct.unpack_from(f"!{count}I", payload, 4))
        return cls(bytearray(payload[4 + 4 * count :]), ends)


def encode_batch(records: Iterable[FrameRecord], *, yield_gil: bool = True) -> EncodedBatch:
    """Encode records into one `EncodedBatch`, in order."""
    batch = EncodedBatch(bytearray(), [])
    encode_into(batch, records, yield_gil=yield_gil)
    return batch


def encode_into(
    batch: EncodedBatch, records: Iterable[FrameRecord], *, yield_gil: bool = True
) -> None:
    """Append the encoded records to ``batch``, in order.

    With ``yield_gil`` the encoding thread lets others run every
    `ENCODE_SLICE_ROWS` rows, so producers calling ``write()`` meanwhile are
    not held up for the whole batch.
    """
    data = batch.data
    encode = encode_row
    append = batch.ends.append
    for count, record in enumerate(records, 1):
        data += encode(record)
        append(len(data))
        if yield_gil and not count % ENCODE_SLICE_ROWS:
            _release_gil()


def _release_gil() -> None:
    time.sleep(0)


def encode_row(record: FrameRecord) -> bytes:
    """One record as a binary COPY row of `COLUMNS`."""
    delta = record.captured_at - _PG_EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    width = record.width
    height = record.height
    motion = record.motion_score
    brightness = record.brightness
    count = len(record.detections)
    if width is not None and height is not None and motion is not None and brightness is not None:
        # The common row: every fixed-size field in one pack.
        head = _FIXED.pack(
            12, 8, micros, 8, record.frame_number, 4, width, 4, height,
            4, motion, 4, brightness, 4, count,
        )  # fmt: skip
    else:
        head = b"".join(
            (
                _HEAD.pack(12, 8, micros, 8, record.frame_number),
                _NULL if width is None else _INT4.pack(4, width),
                _NULL if height is None else _INT4.pack(4, height),
                _NULL if motion is None else _FLOAT4.pack(4, motion),
                _NULL if brightness is None else _FLOAT4.pack(4, brightness),
                _INT4.pack(4, count),
            )
        )
    camera = _CAMERA_CACHE.get(record.camera_id)
    if camera is None:
        camera = _camera_bytes(record.camera_id)
    arrays = _detection_arrays(record) if count else _NO_ARRAYS
    metadata = record._metadata_jsonb
    if metadata is None:
        return b"".join((head, camera, arrays, _NULL))
    return b"".join((head, camera, arrays, _I32.pack(len(metadata)), metadata))


def _camera_bytes(camera_id: str) -> bytes:
    encoded = camera_id.encode()
    value = _I32.pack(len(encoded)) + encoded
    if len(_CAMERA_CACHE) < _CAMERA_CACHE_MAX:
        _CAMERA_CACHE[camera_id] = value
    return value


def _detection_arrays(record: FrameRecord) -> bytes:
    detections = record.detections
    count = len(detections)
    labels = [d.label.encode() for d in detections]
    label_body = b"".join(_I32.pack(len(label)) + label for label in labels)
    label_array = _ARRAY_1D.pack(20 + len(label_body), 1, 0, _TEXT_OID, count, 1) + label_body
    scores = b"".join(_FLOAT4.pack(4, d.confidence) for d in detections)
    score_array = _ARRAY_1D.pack(20 + len(scores), 1, 0, _FLOAT4_OID, count, 1) + scores
    has_null = 0
    box_parts: list[bytes] = []
    for detection in detections:
        box = detection.box
        if box is None:
            has_null = 1
            box_parts.append(_NULL * 4)
        else:
            box_parts.append(
                _FLOAT4.pack(4, box.x)
                + _FLOAT4.pack(4, box.y)
                + _FLOAT4.pack(4, box.width)
                + _FLOAT4.pack(4, box.height)
            )
    boxes = b"".join(box_parts)
    box_array = _ARRAY_2D.pack(28 + len(boxes), 2, has_null, _FLOAT4_OID, count, 1, 4, 1) + boxes
    return label_array + score_array + box_array


def decode_row(row: bytes) -> dict[str, Any]:
    """Decode one row of `encode_row` back into plain values (for the
    dead-letter file and the tests); ``captured_at`` as an ISO string."""
    (fields,) = struct.unpack_from("!h", row)
    if fields != len(COLUMNS):
        raise ValueError(f"expected {len(COLUMNS)} fields, found {fields}")
    offset = 2
    values: dict[str, Any] = {}
    for column in COLUMNS:
        (length,) = _I32.unpack_from(row, offset)
        offset += 4
        if length < 0:
            values[column] = None
            continue
        raw = row[offset : offset + length]
        offset += length
        values[column] = _decode_value(column, raw)
    return values


def _decode_value(column: str, raw: bytes) -> Any:
    if column == "captured_at":
        (micros,) = struct.unpack("!q", raw)
        return (_PG_EPOCH + timedelta(microseconds=micros)).isoformat()
    if column == "frame_number":
        return struct.unpack("!q", raw)[0]
    if column in ("width", "height", "detection_count"):
        return struct.unpack("!i", raw)[0]
    if column in ("motion_score", "brightness"):
        return struct.unpack("!f", raw)[0]
    if column == "camera_id":
        return raw.decode()
    if column == "metadata":
        return orjson.loads(raw[1:])
    return _decode_array(raw)


def _decode_array(raw: bytes) -> list[Any]:
    ndim, _, oid = struct.unpack_from("!iii", raw)
    dims = [struct.unpack_from("!ii", raw, 12 + 8 * i)[0] for i in range(ndim)]
    offset = 12 + 8 * ndim
    items: list[Any] = []
    total = 1
    for size in dims:
        total *= size
    for _ in range(total):
        (length,) = _I32.unpack_from(raw, offset)
        offset += 4
        if length < 0:
            items.append(None)
            continue
        chunk = raw[offset : offset + length]
        offset += length
        items.append(chunk.decode() if oid == _TEXT_OID else struct.unpack("!f", chunk)[0])
    if ndim == 2:
        width = dims[1]
        return [items[i : i + width] for i in range(0, len(items), width)]
    return items


def copy_batch(conn: psycopg.Connection[Any], batch: EncodedBatch) -> None:
    """COPY the rows into ``frame_metadata`` in one transaction (the fast path).

    Raises the psycopg error as is; a unique violation means some rows are
    there already and the batch must go through `insert_idempotent`.
    """
    with conn.transaction(), conn.cursor() as cursor, cursor.copy(_COPY_RAW) as copy:
        _write_rows(copy, batch)


def copy_records(
    conn: psycopg.Connection[Any], records: Sequence[FrameRecord], batch: EncodedBatch
) -> None:
    """Encode ``records`` into the empty ``batch`` while COPYing them into
    ``frame_metadata`` in one transaction (the fast path of a fresh batch).

    Rows go out every `STREAM_ROWS` as they are encoded, so the server
    ingests the first while the client encodes the next: encoding costs no
    wall time on top of the server's. Whatever happens, ``batch`` holds all
    of ``records`` encoded when this returns or raises (a retry, the spool
    or bisection need them). Raises the psycopg error as is.
    """
    try:
        with conn.transaction(), conn.cursor() as cursor, cursor.copy(_COPY_RAW) as copy:
            copy.write(_SIGNATURE)
            data = batch.data
            for start in range(0, len(records), STREAM_ROWS):
                offset = len(data)
                encode_into(batch, records[start : start + STREAM_ROWS])
                copy.write(data[offset:])
            copy.write(_TRAILER)
    finally:
        if len(batch) < len(records):
            encode_into(batch, records[len(batch) :])


def insert_idempotent(conn: psycopg.Connection[Any], batch: EncodedBatch) -> int:
    """Insert the rows that are not there yet, in one transaction; returns
    how many were inserted. Safe to repeat: replays insert nothing twice."""
    with conn.transaction(), conn.cursor() as cursor:
        cursor.execute(_CREATE_STAGING)
        with cursor.copy(_COPY_STAGING) as copy:
            _write_rows(copy, batch)
        cursor.execute(_INSERT_STAGED)
        return cursor.rowcount


def _write_rows(copy: psycopg.Copy, batch: EncodedBatch) -> None:
    copy.write(_SIGNATURE)
    data = memoryview(batch.data)
    # Large writes in pieces, so libpq's buffer stays small.
    step = 1 << 20
    for start in range(0, len(data), step):
        copy.write(data[start : start + step])
    copy.write(_TRAILER)
