"""Rollups: every level equals a recomputation from raw, and each coarser
level equals the composition of the finer one, whatever the arrival order,
lateness or duplication of the frames."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framemeta import FrameRecord
from framemeta._copy import copy_batch, encode_batch, insert_idempotent
from tests.frames import empty_frames, refresh_rollups
from tests.rollup_checks import RANDOM_BASE, assert_rollups_consistent, random_frames

frames_strategy = random_frames(max_size=60)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(frames_strategy, min_size=1, max_size=4), replay=st.booleans())
def test_every_level_equals_raw_whatever_the_arrival_order(
    db_dsn: str, batches: list[list[FrameRecord]], replay: bool
) -> None:
    empty_frames(db_dsn)
    with psycopg.connect(db_dsn) as conn:
        for batch in batches:
            # One statement per batch; duplicates within and across batches
            # go through the idempotent path, as the writer's replays do.
            insert_idempotent(conn, encode_batch(batch))
            if replay:
                insert_idempotent(conn, encode_batch(batch))
        assert_rollups_consistent(conn)


def test_fast_path_copy_is_rolled_up_in_the_same_transaction(db_dsn: str) -> None:
    frames = [
        FrameRecord("cam-a", RANDOM_BASE + timedelta(seconds=10 * i), i, motion_score=0.9)
        for i in range(30)
    ]
    with psycopg.connect(db_dsn) as conn:
        copy_batch(conn, encode_batch(frames))
        refresh_rollups(db_dsn)
        row = conn.execute(
            "SELECT sum(frames), sum(motion_events) FROM frame_stats_1m WHERE camera_id = 'cam-a'"
        ).fetchone()
        assert row == (30, 30)
        assert_rollups_consistent(conn)


def test_a_failed_batch_leaves_no_rollup_behind(db_dsn: str) -> None:
    frame = FrameRecord("cam-a", RANDOM_BASE, 1)
    with psycopg.connect(db_dsn) as conn:
        copy_batch(conn, encode_batch([frame]))
        with pytest.raises(psycopg.errors.UniqueViolation):
            copy_batch(conn, encode_batch([frame]))  # rolled back, rollups too
        refresh_rollups(db_dsn)
        row = conn.execute("SELECT frames FROM frame_stats_1d").fetchall()
        assert row == [(1,)]
