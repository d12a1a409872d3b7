"""``framemeta demo``: a persistent embedded server with sample frames in it.

Starts (or reuses) the demo cluster, creates the ``framemeta_demo`` database,
migrates it, writes a minute of frames from three cameras and prints status.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from framemeta import _status, schema
from framemeta.embedded import EmbeddedServer
from framemeta.records import BoundingBox, Detection, FrameRecord

__all__ = ["DEMO_DATABASE", "run", "sample_frames"]

DEMO_DATABASE = "framemeta_demo"
_LABELS = ("person", "car", "bicycle", "dog")


def sample_frames(
    cameras: int, seconds: int, fps: int, *, start: datetime | None = None, seed: int = 1
) -> Iterator[FrameRecord]:
    """Synthetic but plausible frames: ``cameras`` x ``seconds`` x ``fps`` records."""
    rng = random.Random(seed)
    start = start or datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=seconds)
    step = timedelta(seconds=1 / fps)
    for camera in range(cameras):
        camera_id = f"cam-{camera:02d}"
        for number in range(seconds * fps):
            motion = min(1.0, rng.expovariate(8.0))
            detections = tuple(
                Detection(
                    rng.choice(_LABELS),
                    round(rng.uniform(0.3, 1.0), 3),
                    BoundingBox(rng.uniform(0, 1500), rng.uniform(0, 800), 120.0, 240.0),
                )
                for _ in range(rng.choice((0, 0, 0, 1, 2)) if motion > 0.2 else 0)
            )
            yield FrameRecord(
                camera_id,
                start + number * step,
                number,
                width=1920,
                height=1080,
                motion_score=round(motion, 4),
                brightness=round(rng.uniform(0.3, 0.7), 4),
                detections=detections,
                metadata={"codec": "h264", "keyframe": number % 30 == 0, "zone": "gate"},
            )


def insert_frames(conn: psycopg.Connection[Any], frames: Iterator[FrameRecord]) -> int:
    """Insert frames with plain parameterised SQL (the writer comes later)."""
    rows = [
        (
            frame.captured_at,
            frame.frame_number,
            frame.width,
            frame.height,
            frame.motion_score,
            frame.brightness,
            len(frame.detections),
            frame.camera_id,
            [d.label for d in frame.detections] or None,
            [d.confidence for d in frame.detections] or None,
            [
                [d.box.x, d.box.y, d.box.width, d.box.height] if d.box else [None] * 4
                for d in frame.detections
            ]
            or None,
            Jsonb(frame.metadata) if frame.metadata else None,
        )
        for frame in frames
    ]
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO frame_metadata (captured_at, frame_number, width, height,"
            " motion_score, brightness, detection_count, camera_id, detection_labels,"
            " detection_scores, detection_boxes, metadata)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            rows,
        )
    return len(rows)


def run(data_dir: Path, *, keep_running: bool, say: Callable[[str], None]) -> int:
    """Run the demo against the cluster in ``data_dir``; returns an exit code."""
    if (data_dir / "data" / "PG_VERSION").exists():
        server = EmbeddedServer.attach(data_dir)
        say(f"reusing the demo cluster in {data_dir}")
    else:
        server = EmbeddedServer(data_dir, stop_with_parent=False)
        say(f"creating the demo cluster in {data_dir}")
    already_running = server.is_running
    if not already_running:
        server.start()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as admin:
            exists = admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DEMO_DATABASE,)
            ).fetchone()
            if not exists:
                admin.execute(f"CREATE DATABASE {DEMO_DATABASE}")
        dsn = server.dsn_for(DEMO_DATABASE)
        schema.migrate(dsn, progress=say)
        with psycopg.connect(dsn, autocommit=True) as conn:
            count = insert_frames(conn, sample_frames(cameras=3, seconds=60, fps=5))
            say(f"wrote {count} frames from 3 cameras")
            total = conn.execute("SELECT count(*) FROM frame_metadata").fetchone()
            say(f"frame_metadata holds {total[0] if total else 0} frames in all")
            say(_status.format_table(_status.collect(conn)))
        say(f"look around: framemeta server start, then psql '{dsn}'")
    finally:
        if not keep_running and not already_running:
            server.stop()
            say("demo server stopped (data kept; `framemeta demo --keep-running` leaves it up)")
    return 0
