"""The benchmarks' data: realistic synthetic frames, and the knobs of a run.

``FRAMEMETA_BENCH_ROWS`` (default 1,000,000) and ``FRAMEMETA_BENCH_ROUNDS``
(default 3) shrink a run for a quick look.
"""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta

import psycopg

from framemeta import BoundingBox, Detection, FrameRecord

ROWS = int(os.environ.get("FRAMEMETA_BENCH_ROWS", "1000000"))
ROUNDS = int(os.environ.get("FRAMEMETA_BENCH_ROUNDS", "3"))
CAMERAS = 12
LABELS = ("person", "car", "bicycle", "dog", "truck")
ZONES = ("north-gate", "loading-bay", "lobby", "car-park")


def synthetic_frames(
    rows: int, *, end: datetime | None = None, seed: int = 20261125
) -> list[FrameRecord]:
    """``rows`` frames of 12 cameras at 1 frame/s ending at ``end`` (default
    now), in arrival order: motion mostly low with bursts, brightness
    following the day, detections in about one frame in six, a few metadata
    keys on every frame. The same ``seed`` gives the same frames."""
    rng = random.Random(seed)
    seconds = rows // CAMERAS + 1
    end = datetime.now(UTC) if end is None else end
    start = end.replace(microsecond=0) - timedelta(seconds=seconds)
    records = []
    burst = [0] * CAMERAS
    for index in range(rows):
        camera = index % CAMERAS
        second = index // CAMERAS
        captured_at = start + timedelta(seconds=second, milliseconds=7 * camera)
        if burst[camera] == 0 and rng.random() < 0.002:
            burst[camera] = rng.randint(5, 60)
        moving = burst[camera] > 0
        burst[camera] = max(0, burst[camera] - 1)
        motion = rng.uniform(0.5, 1.0) if moving else rng.random() * 0.2
        detections: tuple[Detection, ...] = ()
        if moving or rng.random() < 0.1:
            detections = tuple(
                Detection(
                    rng.choice(LABELS),
                    round(rng.uniform(0.3, 0.99), 3),
                    BoundingBox(
                        float(rng.randint(0, 1700)),
                        float(rng.randint(0, 700)),
                        float(rng.randint(20, 220)),
                        float(rng.randint(20, 380)),
                    ),
                )
                for _ in range(rng.randint(1, 3))
            )
        hour = (captured_at.hour + captured_at.minute / 60) / 24
        records.append(
            FrameRecord(
                f"cam-{camera:02d}",
                captured_at,
                second,
                width=1920,
                height=1080,
                motion_score=motion,
                brightness=0.3 + 0.4 * abs(0.5 - hour),
                detections=detections,
                metadata={
                    "codec": "h264",
                    "keyframe": second % 30 == 0,
                    "exposure_ms": round(rng.uniform(4.0, 16.0), 1),
                    "zone": ZONES[camera % len(ZONES)],
                },
            )
        )
    return records


def empty_table(dsn: str) -> None:
    """Truncate frame_metadata and CHECKPOINT: each round starts alike."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE frame_metadata")
        conn.execute("CHECKPOINT")
