"""Checks that the rollups agree with raw frames: every level equals a
recomputation from raw, and each coarser level the composition of the finer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from hypothesis import strategies as st

from framemeta import BoundingBox, Detection, FrameQuery, FrameRecord
from tests.frames import refresh_rollups

LEVELS = {"frame_stats_1m": "1 minute", "frame_stats_1h": "1 hour", "frame_stats_1d": "1 day"}
RANDOM_BASE = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
    days=3
)
"""Midnight three days ago: `random_frames` fall in the three days after it."""
_LABELS = ("person", "car", "dog")


def random_frames(*, max_size: int, unique: bool = False) -> st.SearchStrategy[list[FrameRecord]]:
    """Lists of frames of three cameras at any moment of three days after
    `RANDOM_BASE`, with or without motion, brightness and labelled
    detections; ``unique``: no two share a natural key."""
    frame = st.builds(
        lambda camera, seconds, number, motion, brightness, labels: FrameRecord(
            f"cam-{camera}",
            RANDOM_BASE + timedelta(seconds=seconds),
            number,
            motion_score=motion,
            brightness=brightness,
            detections=[Detection(label, 0.8, BoundingBox(1.0, 1.0, 2.0, 2.0)) for label in labels],
        ),
        camera=st.integers(0, 2),
        seconds=st.floats(0, 3 * 86_400 - 60, allow_nan=False),
        number=st.integers(0, 10**6),
        motion=st.none() | st.floats(0, 1, width=32),
        brightness=st.none() | st.floats(0, 1, width=32),
        labels=st.lists(st.sampled_from(_LABELS), max_size=3),
    )
    if unique:
        return st.lists(frame, min_size=1, max_size=max_size, unique_by=lambda r: r.key)
    return st.lists(frame, min_size=1, max_size=max_size)


_FROM_RAW = """
    WITH labels AS (
        SELECT camera_id, bucket, jsonb_object_agg(label, n) AS by_label
        FROM (
            SELECT camera_id, time_bucket(%(width)s::interval, captured_at) AS bucket,
                   label, count(*) AS n
            FROM frame_metadata, unnest(detection_labels) AS label
            GROUP BY 1, 2, 3
        ) AS per_label
        GROUP BY 1, 2
    ), totals AS (
        SELECT camera_id, time_bucket(%(width)s::interval, captured_at) AS bucket,
               count(*), min(captured_at), max(captured_at), min(frame_number),
               max(frame_number), count(motion_score),
               round(coalesce(sum(motion_score::float8), 0)::numeric, 6),
               min(motion_score), max(motion_score),
               count(*) FILTER (WHERE motion_score >= 0.5), count(brightness),
               round(coalesce(sum(brightness::float8), 0)::numeric, 6),
               min(brightness), max(brightness), sum(detection_count)
        FROM frame_metadata
        GROUP BY 1, 2
    )
    SELECT totals.*, coalesce(labels.by_label, '{}')
    FROM totals LEFT JOIN labels USING (camera_id, bucket)
    ORDER BY 1, 2
"""

_STORED = """
    SELECT camera_id, bucket, frames, first_captured_at, last_captured_at,
           first_frame_number, last_frame_number, motion_frames, round(motion_sum::numeric, 6),
           motion_min, motion_max, motion_events, brightness_frames,
           round(brightness_sum::numeric, 6), brightness_min, brightness_max, detections,
           detections_by_label
    FROM {relation} ORDER BY 1, 2
"""

_COMPOSED = """
    SELECT camera_id, time_bucket(%(width)s::interval, bucket), sum(frames)::bigint,
           min(first_captured_at), max(last_captured_at), min(first_frame_number),
           max(last_frame_number), sum(motion_frames)::bigint, round(sum(motion_sum)::numeric, 6),
           min(motion_min), max(motion_max), sum(motion_events)::bigint,
           sum(brightness_frames)::bigint, round(sum(brightness_sum)::numeric, 6),
           min(brightness_min), max(brightness_max), sum(detections)::bigint,
           framemeta_sum_counts(detections_by_label)
    FROM {relation} GROUP BY 1, 2 ORDER BY 1, 2
"""


CAMERAS_FROM_DAILY = """
    SELECT camera_id, min(first_captured_at), max(last_captured_at), sum(frames)::bigint
    FROM frame_stats_1d GROUP BY 1 ORDER BY 1
"""
"""What `FrameQuery.cameras` answers, summed from every daily row: its
statement before migration 0011 (the benchmark times it beside the new one)."""


def _rows(conn: psycopg.Connection[Any], sql: str, width: str | None = None) -> list[Any]:
    return conn.execute(sql, {"width": width} if width else None).fetchall()


def assert_rollups_consistent(conn: psycopg.Connection[Any]) -> None:
    conn.commit()
    refresh_rollups(conn.info.dsn)
    for relation, width in LEVELS.items():
        stored = _rows(conn, _STORED.format(relation=relation))
        assert stored == _rows(conn, _FROM_RAW, width), f"{relation} differs from raw"
    for finer, coarser in (
        ("frame_stats_1m", "frame_stats_1h"),
        ("frame_stats_1h", "frame_stats_1d"),
    ):
        composed = _rows(conn, _COMPOSED.format(relation=finer), LEVELS[coarser])
        assert _rows(conn, _STORED.format(relation=coarser)) == composed, (
            f"{coarser} differs from the composition of {finer}"
        )
    if conn.execute("SELECT framemeta_edition()").fetchone() == ("timescale",):
        # The recount job's work (paused in tests), as after frames that
        # came after their minute was materialised: the counted rows then
        # answer up to what the refresh above materialised.
        conn.execute("SELECT framemeta_recount_cameras()")
        conn.commit()
    assert_cameras_follow_daily(conn)


def assert_cameras_follow_daily(conn: psycopg.Connection[Any]) -> None:
    """`FrameQuery.cameras` (``frame_cameras`` and the 1-minute rows after
    its cut) says what the daily rollup counts, camera by camera (call after
    the rollups are refreshed)."""
    with FrameQuery(conn.info.dsn) as query:
        answer = [(c.camera_id, c.first_seen, c.last_seen, c.frames) for c in query.cameras()]
    assert answer == _rows(conn, CAMERAS_FROM_DAILY), "cameras() differs from the daily rollup"
