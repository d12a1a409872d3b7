"""Frames for tests: deterministic, realistic, recent (inside raw retention)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg

from framemeta import BoundingBox, Detection, FrameRecord

START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)


def frames(
    count: int, *, cameras: int = 4, start: datetime = START, first_number: int = 0
) -> Iterator[FrameRecord]:
    """``count`` frames spread over ``cameras``, 10 per second per camera."""
    for index in range(count):
        camera = index % cameras
        number = first_number + index // cameras
        detections = (
            (Detection("person", 0.875, BoundingBox(10.0, 20.0, 30.0, 40.0)),)
            if number % 7 == 0
            else ()
        )
        yield FrameRecord(
            f"cam-{camera:02d}",
            start + timedelta(milliseconds=100 * number),
            number,
            width=1280,
            height=720,
            motion_score=(number % 100) / 100,
            brightness=0.5,
            detections=detections,
            metadata={"zone": "gate", "n": number} if number % 3 == 0 else {},
        )


def stored_keys(dsn: str) -> list[tuple[str, datetime, int]]:
    """Every key in frame_metadata, duplicates included (there must be none)."""
    with psycopg.connect(dsn) as conn:
        return [
            (camera, captured_at, number)
            for camera, captured_at, number in conn.execute(
                "SELECT camera_id, captured_at, frame_number FROM frame_metadata"
            )
        ]


def keys(records: list[FrameRecord]) -> list[tuple[str, datetime, int]]:
    return [record.key for record in records]


ROLLUPS = ("frame_stats_1m", "frame_stats_1h", "frame_stats_1d")


def refresh_rollups(dsn: str) -> None:
    """Community edition: materialise every rollup level, finest first (a
    refresh does not cascade). Apache edition: nothing to do, the trigger
    keeps them in the insert's transaction."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT framemeta_edition()").fetchone() != ("timescale",):
            return
        for relation in ROLLUPS:
            conn.execute(f"CALL refresh_continuous_aggregate('{relation}', NULL, NULL)")


def empty_frames(dsn: str) -> None:
    """Remove every frame and every rollup row. Community edition: DELETE,
    whose rows the continuous aggregates' invalidation log records, then a
    refresh. (Twice, a test that emptied the raw table with TRUNCATE found a
    stale rollup row afterwards; a loop of TRUNCATE and refresh did not
    reproduce it.) Apache edition: TRUNCATE all four tables. Both: recount
    the per-camera rows (the Apache edition's trigger sees inserts only)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT framemeta_edition()").fetchone() == ("timescale",):
            conn.execute("DELETE FROM frame_metadata")
        else:
            conn.execute("TRUNCATE frame_metadata, frame_stats_1m, frame_stats_1h, frame_stats_1d")
    refresh_rollups(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT framemeta_recount_cameras()")
