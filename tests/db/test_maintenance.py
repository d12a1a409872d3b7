"""Retention: old chunks go, young ones stay, rollups outlive raw; horizons
that would lose data are refused; maintain is idempotent."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from framemeta import ConfigurationError, MetadataWriter
from framemeta.maintenance import Retention, apply_retention, get_retention, set_retention
from tests.frames import refresh_rollups

_INSERT_DAYS_AGO = """
    INSERT INTO frame_metadata (camera_id, captured_at, frame_number, motion_score)
    SELECT 'cam-1', date_trunc('day', now()) - make_interval(days => d) + interval '1 hour', d, 0.7
    FROM unnest(%s::int[]) AS d
"""


def _count(conn: psycopg.Connection[Any], sql: str) -> int:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def test_defaults_are_stored_in_the_database(db_dsn: str) -> None:
    with psycopg.connect(db_dsn) as conn:
        retention = get_retention(conn)
    assert retention == Retention(timedelta(days=7), timedelta(days=30), timedelta(days=365), None)


def test_old_raw_chunks_go_young_ones_stay_and_rollups_outlive_them(db_dsn: str) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute(_INSERT_DAYS_AGO, ([1, 3, 6, 9, 12, 40],))
        refresh_rollups(db_dsn)

        dropped = apply_retention(conn)

        assert dropped is not None
        by_level = {result.level: len(result.chunks) for result in dropped}
        assert by_level["raw"] == 3  # days 9, 12 and 40 are past 7 days
        remaining = conn.execute("SELECT frame_number FROM frame_metadata ORDER BY 1").fetchall()
        assert remaining == [(1,), (3,), (6,)]
        # 1m keeps 30 days: the frames of days 9 and 12 are still counted there.
        assert _count(conn, "SELECT sum(frames) FROM frame_stats_1m") == 5
        assert _count(conn, "SELECT sum(frames) FROM frame_stats_1d") == 6


def test_maintain_twice_drops_nothing_the_second_time(db_dsn: str) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute(_INSERT_DAYS_AGO, ([1, 10],))
        first = apply_retention(conn)
        second = apply_retention(conn)
    assert first is not None
    assert second is not None
    assert sum(len(result.chunks) for result in first) == 1
    assert sum(len(result.chunks) for result in second) == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"raw": "3h"}, "retention of raw .* refresh window"),
        ({"1m": "2d"}, "retention of 1m .* must not be shorter than that of raw"),
        ({"1h": "20d"}, "retention of 1h .* must not be shorter than that of 1m"),
        ({"1d": "30d"}, "retention of 1d .* must not be shorter than that of 1h"),
        ({"raw": "soon"}, "retention 'soon'"),
        ({"5m": "1d"}, "unknown retention level"),
    ],
)
def test_horizons_that_would_lose_data_are_refused(
    db_dsn: str, changes: dict[str, str], message: str
) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        with pytest.raises(ConfigurationError, match=message):
            set_retention(conn, **changes)
        assert get_retention(conn).raw == timedelta(days=7)


def test_maintain_command_sets_retention_and_reports(db_dsn: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "framemeta", "maintain", "--dsn", db_dsn,
         "--set-retention", "raw=14d", "--set-retention", "1m=60d"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "retention: raw 14d, 1m 60d, 1h 365d, 1d never dropped" in result.stdout
    assert "raw: dropped 0 chunk(s) older than 14d" in result.stdout

    refused = subprocess.run(
        [sys.executable, "-m", "framemeta", "maintain", "--dsn", db_dsn,
         "--set-retention", "1d=1d"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "retention of 1d" in refused.stderr


def test_a_session_holding_the_lock_makes_others_skip(db_dsn: str) -> None:
    with psycopg.connect(db_dsn) as holder, psycopg.connect(db_dsn, autocommit=True) as other:
        holder.execute("SELECT framemeta_apply_retention()")  # its transaction stays open

        assert apply_retention(other) is None


def test_each_run_is_logged_with_its_runner(db_dsn: str) -> None:
    with psycopg.connect(db_dsn, autocommit=True, application_name="nightly-cron") as conn:
        conn.execute(_INSERT_DAYS_AGO, ([10],))
        apply_retention(conn)
        runs = conn.execute("SELECT runner, dropped FROM framemeta_maintenance_runs").fetchall()
    assert len(runs) == 1
    runner, dropped = runs[0]
    assert runner == "nightly-cron"
    assert [(item["level"], len(item["chunks"])) for item in dropped] == [
        ("raw", 1),
        ("1m", 0),
        ("1h", 0),
    ]


def test_a_writer_applies_retention_on_schedule_with_only_the_writer_role(db_dsn: str) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as admin:
        admin.execute(_INSERT_DAYS_AGO, ([1, 10],))
        admin.execute("DROP ROLE IF EXISTS retention_writer")
        admin.execute("CREATE ROLE retention_writer LOGIN IN ROLE framemeta_writer")
    try:
        writer_dsn = make_conninfo(db_dsn, user="retention_writer")
        with MetadataWriter(writer_dsn, maintenance_interval=0.2) as writer:
            deadline = time.monotonic() + 20
            while writer.stats().maintenance_runs == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            stats = writer.stats()
        assert stats.maintenance_runs >= 1
        assert stats.maintenance_errors == 0
        with psycopg.connect(db_dsn) as conn:
            remaining = conn.execute("SELECT frame_number FROM frame_metadata").fetchall()
            runner = conn.execute("SELECT runner FROM framemeta_maintenance_runs").fetchone()
        assert remaining == [(1,)]
        assert runner == ("framemeta-writer",)
    finally:
        with psycopg.connect(db_dsn, autocommit=True) as admin:
            admin.execute("DROP OWNED BY retention_writer")
            admin.execute("DROP ROLE retention_writer")


def test_the_reader_role_cannot_apply_retention(db_dsn: str) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute("SET ROLE framemeta_reader")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            apply_retention(conn)
