"""Erasing a camera's frames and rebuilding rollups over a range: the raw
frames go, other cameras stay, and every rollup level agrees with what is
left, on both editions; so do the per-camera rows (migration 0011), through
erasure, rebuilds, retention of the daily level, concurrent writers and the
upgrade that adds them."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from framemeta import DatabaseError, FrameQuery, ValidationError, migrate
from framemeta._copy import copy_batch, encode_batch
from framemeta.maintenance import apply_retention, erase_frames, rebuild_rollups, set_retention
from framemeta.schema import migrations_dir
from tests.conftest import pause_policies
from tests.frames import frames, refresh_rollups
from tests.rollup_checks import assert_cameras_follow_daily, assert_rollups_consistent

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


def _cameras(dsn: str) -> dict[str, tuple[datetime, datetime, int]]:
    with FrameQuery(dsn) as query:
        return {c.camera_id: (c.first_seen, c.last_seen, c.frames) for c in query.cameras()}


def test_erase_moves_a_first_sighting_and_forgets_a_camera_erased_whole(
    conn: psycopg.Connection[Any],
) -> None:
    _load(conn, 4000)  # 2 cameras, 10 frames/s: 200 s each
    last = START + timedelta(seconds=199.9)
    assert _cameras(conn.info.dsn) == {"cam-00": (START, last, 2000), "cam-01": (START, last, 2000)}

    erase_frames(conn, "cam-00", START, START + timedelta(seconds=30))
    erase_frames(conn, "cam-01", START, START + timedelta(hours=1))

    assert _cameras(conn.info.dsn) == {"cam-00": (START + timedelta(seconds=30), last, 1700)}
    assert_rollups_consistent(conn)


def test_erase_beyond_raw_retention_recounts_the_camera_from_the_daily_level(
    conn: psycopg.Connection[Any],
) -> None:
    old = TEN_DAYS_AGO
    _load(conn, 400)
    # Last: on the community edition, the retention policy may drop the old
    # raw chunk at once, and a refresh over it afterwards (each load's)
    # would empty its rollups.
    _load(conn, 1200, start=old)
    apply_retention(conn)  # the old day's raw chunk goes; its rollups stay

    erase_frames(conn, "cam-00", old, old + timedelta(minutes=1))

    cameras = _cameras(conn.info.dsn)
    assert cameras["cam-00"] == (START, START + timedelta(seconds=19.9), 200)
    assert cameras["cam-01"][0] == old
    assert cameras["cam-01"][2] == 600 + 200
    assert_cameras_follow_daily(conn)


def test_rebuild_recounts_the_cameras_after_frames_deleted_by_hand(
    conn: psycopg.Connection[Any],
) -> None:
    _load(conn, 2000)
    conn.execute(
        "DELETE FROM frame_metadata WHERE camera_id = 'cam-00' AND captured_at < %s",
        (START + timedelta(seconds=10),),
    )

    rebuild_rollups(conn, START, START + timedelta(minutes=1))

    assert _cameras(conn.info.dsn)["cam-00"][::2] == (START + timedelta(seconds=10), 900)
    assert_rollups_consistent(conn)


def test_a_retention_of_the_daily_level_drops_its_days_from_the_cameras(
    conn: psycopg.Connection[Any],
) -> None:
    _load(conn, 400)
    _load(conn, 400, start=START - timedelta(days=800))  # last: see above
    set_retention(conn, **{"1d": "400d"})

    dropped = apply_retention(conn)

    # The community edition's policies may have dropped some chunks first.
    assert dropped is not None
    last = START + timedelta(seconds=19.9)
    assert _cameras(conn.info.dsn) == {"cam-00": (START, last, 200), "cam-01": (START, last, 200)}
    assert_cameras_follow_daily(conn)


def test_cameras_stay_exact_under_concurrent_writers_erasure_and_rebuilds(db_dsn: str) -> None:
    """Two writers COPY frames of the same two cameras, at the time the
    erasures and rebuilds cover, while those and recounts run: none
    deadlocks, and every count agrees."""
    errors: list[BaseException] = []

    def write(first_number: int) -> None:
        try:
            with psycopg.connect(db_dsn) as conn:
                for batch in range(20):
                    records = list(
                        frames(200, cameras=2, start=START, first_number=first_number + 100 * batch)
                    )
                    copy_batch(conn, encode_batch(records))
        except BaseException as error:  # reported below
            errors.append(error)

    writers = [threading.Thread(target=write, args=(n,)) for n in (0, 10_000)]
    for writer in writers:
        writer.start()
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        for round_ in range(4):
            erase_frames(conn, "cam-00", START, START + timedelta(seconds=20 + 10 * round_))
            rebuild_rollups(conn, START, START + timedelta(minutes=30), camera_id="cam-01")
            conn.execute("SELECT framemeta_recount_cameras()")
        for writer in writers:
            writer.join()
        assert errors == []
        assert_rollups_consistent(conn)


def test_the_upgrade_to_0011_counts_the_frames_already_there(
    fresh_database: str, tmp_path: Path
) -> None:
    before = tmp_path / "migrations"
    before.mkdir()
    for migration in sorted(migrations_dir().glob("00*.sql")):
        if migration.name < "0011":
            shutil.copy(migration, before)
    migrate(fresh_database, directory=before)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        pause_policies(conn)  # the test's refreshes and retention, not the policies'
        _load(conn, 400)
        _load(conn, 1200, start=TEN_DAYS_AGO)  # last: see above
        apply_retention(conn)  # the old day is in the rollups only

    migrate(fresh_database)

    with psycopg.connect(fresh_database, autocommit=True) as conn:
        assert_cameras_follow_daily(conn)
    cameras = _cameras(fresh_database)
    assert cameras["cam-00"] == (TEN_DAYS_AGO, START + timedelta(seconds=19.9), 800)


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
