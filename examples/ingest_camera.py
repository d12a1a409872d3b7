"""A camera processor loop that writes one record per frame.

Run against the demo server (``framemeta server start`` prints its DSN):

    FRAMEMETA_DSN='host=... port=... user=postgres dbname=framemeta_demo' \\
        python examples/ingest_camera.py
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from pathlib import Path

from framemeta import BoundingBox, Detection, FrameRecord, MetadataWriter


def detect(frame_number: int) -> tuple[float, list[Detection]]:
    """Stand-in for real motion and object detection."""
    motion = random.random() ** 3  # noqa: S311 - a simulation
    people = [Detection("person", 0.9, BoundingBox(600.0, 300.0, 120.0, 260.0))]
    return motion, people if motion > 0.6 else []


def main(frames: int = 3_000, fps: float = 30.0) -> None:
    # Choosing options:
    # - The defaults suit 1M-100M frames a day: batches of up to 10,000 rows
    #   or every 0.5 s, a 200,000-record / 128 MiB queue (16 s of a busy node).
    # - overflow: "block" (default) slows the camera loop down when the
    #   database cannot keep up; "drop_oldest" keeps the loop real-time and
    #   counts what it drops (stats().dropped); "raise" lets you decide.
    # - connections=2 (default) lets a second COPY connection take full
    #   batches under load; 1 is enough for a few cameras.
    # - spool_dir keeps undeliverable batches on disk through an outage and a
    #   crash of this process; the next writer on the same directory sends them.
    with MetadataWriter(
        overflow="drop_oldest",
        spool_dir=Path("framemeta-spool"),
        application_name="camera-gate-1",
    ) as writer:
        for number in range(frames):
            motion, detections = detect(number)
            writer.write(
                FrameRecord(
                    "gate-1",
                    datetime.now(UTC),
                    number,
                    width=1920,
                    height=1080,
                    motion_score=motion,
                    detections=detections,
                    metadata={"exposure_ms": 8.3} if number % 30 == 0 else {},
                )
            )
            time.sleep(1 / fps)
        writer.flush(timeout=30)
        print(writer.stats())


if __name__ == "__main__":
    main()
