"""The binary COPY encoding: every valid record decodes back to its values,
and batches survive the spool's serialisation and slicing."""

from __future__ import annotations

import struct
from datetime import UTC

from hypothesis import given, settings
from hypothesis import strategies as st

from framemeta import FrameRecord
from framemeta._copy import EncodedBatch, decode_row, encode_batch, encode_row
from tests.unit.test_records import records


def _f32(value: float | None) -> float | None:
    return None if value is None else struct.unpack("!f", struct.pack("!f", value))[0]


@settings(max_examples=300)
@given(records)
def test_every_valid_record_decodes_to_its_values(record: FrameRecord) -> None:
    row = decode_row(encode_row(record))

    assert row["camera_id"] == record.camera_id
    assert row["captured_at"] == record.captured_at.astimezone(UTC).isoformat()
    assert row["frame_number"] == record.frame_number
    assert (row["width"], row["height"]) == (record.width, record.height)
    assert row["motion_score"] == _f32(record.motion_score)
    assert row["brightness"] == _f32(record.brightness)
    assert row["detection_count"] == len(record.detections)
    if record.detections:
        assert row["detection_labels"] == [d.label for d in record.detections]
        assert row["detection_scores"] == [_f32(d.confidence) for d in record.detections]
    else:
        assert row["detection_labels"] is None
    assert row["metadata"] == (record.to_dict()["metadata"] or None)


@given(st.lists(records, min_size=1, max_size=20), st.data())
def test_batches_survive_serialisation_and_slicing(
    batch_records: list[FrameRecord], data: st.DataObject
) -> None:
    batch = encode_batch(batch_records)
    restored = EncodedBatch.from_bytes(batch.to_bytes())
    assert restored == batch

    start = data.draw(st.integers(0, len(batch_records) - 1))
    stop = data.draw(st.integers(start + 1, len(batch_records)))
    part = batch.slice(start, stop)
    assert [part.row(i) for i in range(len(part))] == [
        encode_row(record) for record in batch_records[start:stop]
    ]
