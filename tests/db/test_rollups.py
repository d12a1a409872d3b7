"""Rollups: every level equals a recomputation from raw, and each coarser
level equals the composition of the finer one, whatever the arrival order,
lateness or duplication of the frames."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framemeta import BoundingBox, Detection, FrameRecord
from framemeta._copy import copy_batch, encode_batch, insert_idempotent
from tests.frames import refresh_rollups

LEVELS = {"frame_stats_1m": "1 minute", "frame_stats_1h": "1 hour", "frame_stats_1d": "1 day"}
BASE = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)
LABELS = ("person", "car", "dog")

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

frames_strategy = st.lists(
    st.builds(
        lambda camera, minutes, number, motion, brightness, labels: FrameRecord(
            f"cam-{camera}",
            BASE + timedelta(minutes=minutes),
            number,
            motion_score=motion,
            brightness=brightness,
            detections=[Detection(label, 0.8, BoundingBox(1.0, 1.0, 2.0, 2.0)) for label in labels],
        ),
        camera=st.integers(0, 2),
        minutes=st.floats(0, 3 * 24 * 60 - 1, allow_nan=False),
        number=st.integers(0, 10**6),
        motion=st.none() | st.floats(0, 1, width=32),
        brightness=st.none() | st.floats(0, 1, width=32),
        labels=st.lists(st.sampled_from(LABELS), max_size=3),
    ),
    min_size=1,
    max_size=60,
)


def _rows(conn: psycopg.Connection[Any], sql: str, width: str | None = None) -> list[Any]:
    return conn.execute(sql, {"width": width} if width else None).fetchall()


def _empty(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE frame_metadata")
        if conn.execute("SELECT framemeta_edition()").fetchone() != ("timescale",):
            conn.execute("TRUNCATE frame_stats_1m, frame_stats_1h, frame_stats_1d")
    refresh_rollups(dsn)


def _assert_consistent(conn: psycopg.Connection[Any]) -> None:
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


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(frames_strategy, min_size=1, max_size=4), replay=st.booleans())
def test_every_level_equals_raw_whatever_the_arrival_order(
    db_dsn: str, batches: list[list[FrameRecord]], replay: bool
) -> None:
    _empty(db_dsn)
    with psycopg.connect(db_dsn) as conn:
        for batch in batches:
            # One statement per batch; duplicates within and across batches
            # go through the idempotent path, as the writer's replays do.
            insert_idempotent(conn, encode_batch(batch))
            if replay:
                insert_idempotent(conn, encode_batch(batch))
        _assert_consistent(conn)


def test_fast_path_copy_is_rolled_up_in_the_same_transaction(db_dsn: str) -> None:
    frames = [
        FrameRecord("cam-a", BASE + timedelta(seconds=10 * i), i, motion_score=0.9)
        for i in range(30)
    ]
    with psycopg.connect(db_dsn) as conn:
        copy_batch(conn, encode_batch(frames))
        refresh_rollups(db_dsn)
        row = conn.execute(
            "SELECT sum(frames), sum(motion_events) FROM frame_stats_1m WHERE camera_id = 'cam-a'"
        ).fetchone()
        assert row == (30, 30)
        _assert_consistent(conn)


def test_a_failed_batch_leaves_no_rollup_behind(db_dsn: str) -> None:
    frame = FrameRecord("cam-a", BASE, 1)
    with psycopg.connect(db_dsn) as conn:
        copy_batch(conn, encode_batch([frame]))
        with pytest.raises(psycopg.errors.UniqueViolation):
            copy_batch(conn, encode_batch([frame]))  # rolled back, rollups too
        refresh_rollups(db_dsn)
        row = conn.execute("SELECT frames FROM frame_stats_1d").fetchall()
        assert row == [(1,)]
