"""Build frame records the way a processor would, and see validation at work.

Run: python examples/build_records.py
"""

from __future__ import annotations

from datetime import UTC, datetime

from framemeta import BoundingBox, Detection, FrameRecord, ValidationError


def main() -> None:
    # A motion detector knows only its score; everything else stays empty.
    motion_only = FrameRecord("gate-cam", datetime.now(UTC), 1, motion_score=0.42)

    # An object detector adds detections with boxes in pixels of the frame.
    detected = FrameRecord(
        "gate-cam",
        datetime.now(UTC),
        2,
        width=1920,
        height=1080,
        detections=[Detection("person", 0.93, BoundingBox(410.0, 220.0, 90.0, 260.0))],
        metadata={"model": "yolo-n", "zone": "north"},
    )
    print(motion_only)
    print(detected.to_json().decode())

    # Bad values fail here, at the line that built the record, naming the field.
    for bad in (
        {"captured_at": datetime(2026, 1, 1)},  # naive: which timezone?
        {"motion_score": float("nan")},
        {"metadata": {"note": "a NUL \x00 byte"}},
    ):
        arguments = {"camera_id": "gate-cam", "captured_at": datetime.now(UTC), "frame_number": 3}
        try:
            FrameRecord(**{**arguments, **bad})  # type: ignore[arg-type]
        except ValidationError as error:
            print(f"refused {error.field}: {error.reason}")


if __name__ == "__main__":
    main()
