"""Erasing a camera's frames and rebuilding rollups over a range: the raw
frames go, other cameras stay, and every rollup level agrees with what is
left, on both editions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from framemeta import DatabaseError, ValidationError
from framemeta.maintenance import apply_retention, erase_frames, rebuild_rollups
from tests.frames import frames, refresh_rollups
from tests.rollup_checks import assert_rollups_consistent

START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=30)
# Midnight ten days ago: past raw retention (7 days), inside 1m's (30 days).
TEN_DAYS_AGO = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
    days=10
)


@pytest.fixture
def conn(db_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_dsn, autocommit=True) as connection:
        yield connection


def _load(conn: psycopg.Connection[Any], count: int, start: datetime = START) -> None:
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO frame_metadata (camera_id, captured_at, frame_number, motion_score,"
            " brightness, detection_count, detection_labels) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    record.camera_id,
                    record.captured_at,
                    record.frame_number,
                    record.motion_score,
                    record.brightness,
                    len(record.detections),
                    [detection.label for detection in record.detections] or None,
                )
                for record in frames(count, cameras=2, start=start)
            ],
        )
    refresh_rollups(conn.info.dsn)


def _frames_of(conn: psycopg.Connection[Any], camera: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM frame_metadata WHERE camera_id = %s", (camera,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def _rollup_frames(conn: psycopg.Connection[Any], relation: str, camera: str) -> int:
    row = conn.execute(
        f"SELECT coalesce(sum(frames), 0) FROM {relation} WHERE camera_id = %s", (camera,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_erase_deletes_one_cameras_range_and_rollups_follow(
    conn: psycopg.Connection[Any],
) -> None:
    _load(conn, 4000)  # 2 cameras, 10 frames/s: 200 s each
    # Mid-minute on both sides, so partly erased buckets are recomputed.
    start, end = START + timedelta(seconds=30), START + timedelta(seconds=150)

    erasure = erase_frames(conn, "cam-00", start, end)

    assert erasure.frames == 1200  # 120 s at 10 frames/s
    assert _frames_of(conn, "cam-00") == 800
    assert _frames_of(conn, "cam-01") == 2000
    assert [level.level for level in erasure.levels] == ["1m", "1h", "1d"]
    assert erasure.levels[0].start == START
    assert erasure.levels[0].end == START + timedelta(minutes=3)
    assert all(level.forgotten == 0 for level in erasure.levels)
    assert_rollups_consistent(conn)


def test_erase_is_idempotent(conn: psycopg.Connection[Any]) -> None:
    _load(conn, 1000)
    end = START + timedelta(seconds=20)
    erase_frames(conn, "cam-01", START, end)

    again = erase_frames(conn, "cam-01", START, end)

    assert again.frames == 0
    assert_rollups_consistent(conn)


def test_erase_beyond_raw_retention_forgets_that_cameras_rollups_only(
    conn: psycopg.Connection[Any],
) -> None:
    old = TEN_DAYS_AGO
    _load(conn, 1200, start=old)
    dropped = apply_retention(conn)  # raw keeps 7 days: the day's chunk goes
    assert dropped is not None
    assert _frames_of(conn, "cam-00") == 0

    erasure = erase_frames(conn, "cam-00", old, old + timedelta(minutes=1))

    assert erasure.frames == 0
    minute = erasure.levels[0]
    assert minute.recomputed_from is None  # raw keeps nothing of that day
    assert minute.forgotten == 1  # cam-00's one minute bucket
    # The hour and the day are recomputed from the 1m level, which still
    # has the other camera and cam-00's other minute.
    assert erasure.levels[1].recomputed_from == erasure.levels[1].start
    assert _rollup_frames(conn, "frame_stats_1m", "cam-00") == 0
    assert _rollup_frames(conn, "frame_stats_1m", "cam-01") == 600
    assert _rollup_frames(conn, "frame_stats_1h", "cam-00") == 0
    assert _rollup_frames(conn, "frame_stats_1d", "cam-01") == 600


def test_rebuild_repairs_rollups_after_manual_edits(conn: psycopg.Connection[Any]) -> None:
    _load(conn, 2000)
    # A manual edit the rollups do not follow on their own (Apache: the
    # trigger sees inserts only; community: until the next refresh).
    conn.execute(
        "UPDATE frame_metadata SET motion_score = 0.99 WHERE captured_at < %s",
        (START + timedelta(seconds=90),),
    )

    rebuilt = rebuild_rollups(conn, START, START + timedelta(seconds=90))

    assert [level.recomputed_from for level in rebuilt] == [
        START,
        START,
        START.replace(hour=0),
    ]
    assert_rollups_consistent(conn)


def test_rebuild_leaves_buckets_beyond_raw_retention_alone(
    conn: psycopg.Connection[Any],
) -> None:
    old = TEN_DAYS_AGO
    _load(conn, 1200, start=old)
    apply_retention(conn)

    rebuilt = rebuild_rollups(conn, old, old + timedelta(hours=1))

    assert rebuilt[0].recomputed_from is None
    assert _rollup_frames(conn, "frame_stats_1m", "cam-00") == 600
    assert _rollup_frames(conn, "frame_stats_1h", "cam-00") == 600
    assert _rollup_frames(conn, "frame_stats_1d", "cam-00") == 600


def test_erase_needs_the_owner_role(db_dsn: str) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS erase_writer")
        admin.execute("CREATE ROLE erase_writer LOGIN IN ROLE framemeta_writer")
    try:
        writer_dsn = make_conninfo(db_dsn, user="erase_writer")
        with (
            psycopg.connect(writer_dsn, autocommit=True) as conn,
            pytest.raises(DatabaseError, match="needs the framemeta_owner role"),
        ):
            erase_frames(conn, "cam-00", START, START + timedelta(minutes=1))
    finally:
        with psycopg.connect(db_dsn, autocommit=True) as admin:
            admin.execute("DROP OWNED BY erase_writer")
            admin.execute("DROP ROLE erase_writer")


@pytest.mark.parametrize(
    ("camera", "start", "end", "field"),
    [
        ("cam 1", START, START + timedelta(hours=1), "camera_id"),
        ("cam-1", START.replace(tzinfo=None), START + timedelta(hours=1), "start"),
        ("cam-1", START, START, "end"),
        ("cam-1", START + timedelta(hours=1), START, "end"),
    ],
)
def test_bad_arguments_are_refused_before_any_sql(
    camera: str, start: datetime, end: datetime, field: str
) -> None:
    class NoConnection:
        autocommit = True

        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the connection was used ({name})")

    with pytest.raises(ValidationError) as error:
        erase_frames(NoConnection(), camera, start, end)  # type: ignore[arg-type]
    assert error.value.field == field
