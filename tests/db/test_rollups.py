"""Rollups: every level equals a recomputation from raw, and each coarser
level equals the composition of the finer one, whatever the arrival order,
lateness or duplication of the frames."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framemeta import FrameQuery, FrameRecord, migrate
from framemeta._copy import copy_batch, encode_batch, insert_idempotent
from framemeta.schema import migrations_dir
from tests.conftest import pause_policies
from tests.frames import ROLLUPS, empty_frames, refresh_rollups
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


_EXTREMES = ("motion_min", "motion_max", "brightness_min", "brightness_max")
_ROLLUP_EXTREMES = f"""
    SELECT bucket, {", ".join(_EXTREMES)} FROM {{}} WHERE camera_id = 'cam-a' ORDER BY bucket
"""


def test_minima_and_maxima_read_as_written_through_the_upgrade_to_0005(
    fresh_database: str, tmp_path: Path
) -> None:
    """Migration 0005 stores the Apache edition's rollup minima and maxima
    as the values they read as (the real 0.8 as 0.8) for the rows already
    there and every row written after, whatever the writing session's
    extra_float_digits; the continuous aggregates keep real. Read in
    binary (as the Query API reads them) and through the Query API, both
    give the values written, also where the database's default for
    extra_float_digits would round them."""
    before = tmp_path / "migrations"
    before.mkdir()
    for migration in sorted(migrations_dir().glob("000[1-4]_*.sql")):
        shutil.copy(migration, before)
    migrate(fresh_database, directory=before)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        pause_policies(conn)
    insert = (
        "INSERT INTO frame_metadata (camera_id, captured_at, frame_number, motion_score,"
        " brightness) VALUES ('cam-a', %s, %s, %s, %s)"
    )
    minute = RANDOM_BASE + timedelta(minutes=3)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute(insert, (minute, 1, 0.8, 0.1))
        conn.execute(insert, (minute + timedelta(seconds=1), 2, 0.3, 0.7))
    migrate(fresh_database)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        # The test's refreshes, not the policies' (a concurrent refresh fails).
        pause_policies(conn)
        # Six digits instead of the shortest exact ones, for float4 text.
        conn.execute("SET extra_float_digits = 0")
        conn.execute(insert, (minute + timedelta(minutes=1), 3, 0.123456789, 1 / 3))
        conn.execute(insert, (minute + timedelta(minutes=1, seconds=1), 4, None, 0.2))
        edition = conn.execute("SELECT framemeta_edition()").fetchone()
        if edition != ("timescale",):
            for level, width in (("1m", "1 minute"), ("1h", "1 hour"), ("1d", "1 day")):
                conn.execute(
                    "SELECT framemeta_rebuild_rollup(%(level)s, b, b + %(width)s::interval)"
                    " FROM time_bucket(%(width)s::interval, %(at)s::timestamptz) AS b",
                    {"level": level, "width": width, "at": minute},
                )
        # Sessions that do not set it themselves round now; the Query API does.
        conn.execute(f"ALTER DATABASE {conn.info.dbname} SET extra_float_digits = 0")
        types = conn.execute(
            "SELECT DISTINCT format_type(atttypid, NULL) FROM pg_attribute"
            " WHERE attrelid = ANY(%s::regclass[]) AND attname = ANY(%s)",
            (list(ROLLUPS), list(_EXTREMES)),
        ).fetchall()
    # 0.123456789 is 0.12345679 as a real, 1/3 is 0.33333334.
    expected_minutes = [(0.3, 0.8, 0.1, 0.7), (0.12345679, 0.12345679, 0.2, 0.33333334)]
    expected_whole = [(0.12345679, 0.8, 0.1, 0.7)]

    def assert_answers(when: str) -> None:
        with FrameQuery(fresh_database) as query:
            start, end = minute, minute + timedelta(minutes=2)
            for bucket, expected in (
                (timedelta(minutes=1), expected_minutes),
                (timedelta(days=1), expected_whole),
            ):
                for resolution in ("raw", "1m", "1h", "1d", "auto"):
                    if resolution in ("1h", "1d") and bucket < timedelta(days=1):
                        continue
                    rows = query.stats(start, end, bucket=bucket, resolution=resolution)
                    assert [
                        (row.motion_min, row.motion_max, row.brightness_min, row.brightness_max)
                        for row in rows
                    ] == expected, (when, bucket, resolution)

    # Community edition: computed from the finer level when read.
    assert_answers("before any refresh")
    refresh_rollups(fresh_database)
    assert_answers("after")
    assert types == [("real",) if edition == ("timescale",) else ("double precision",)]
    with psycopg.connect(fresh_database) as conn:
        if edition != ("timescale",):
            cursor = conn.cursor(binary=True)
            for relation in ROLLUPS:
                stored = [
                    row[1:] for row in cursor.execute(_ROLLUP_EXTREMES.format(relation)).fetchall()
                ]
                assert stored == (
                    expected_minutes if relation == "frame_stats_1m" else expected_whole
                ), relation
