"""The `framemeta` command: real server, real process, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from framemeta import _status
from framemeta.schema import load_migrations


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framemeta", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """A directory the postgres OS user can enter (pytest's tmp_path is
    private to the user running the tests)."""
    base = Path(tempfile.mkdtemp(prefix="framemeta-cli-"))
    base.chmod(0o711)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("framemeta: error: ")
    return lines[0]


def test_migrate_then_status(fresh_database: str) -> None:
    migrated = run_cli("migrate", "--dsn", fresh_database)
    again = run_cli("migrate", "--dsn", fresh_database)
    status = run_cli("status", "--dsn", fresh_database, "--json")

    assert migrated.returncode == 0, migrated.stderr
    count = len(load_migrations())
    assert f"applied {count} migration(s)" in migrated.stdout
    assert "up to date" in again.stdout
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["schema_version"] == count
    assert report["edition"] in {"apache", "timescale"}
    assert report["chunks"]["count"] == 0


def test_migrate_status_lists_files(fresh_database: str) -> None:
    result = run_cli("migrate", "--status", "--dsn", fresh_database)

    assert result.returncode == 0
    # One line per file, its name then its state, in columns as wide as
    # the longest name.
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["0001_extension_roles_config.sql", "pending"]
    assert all(line.split()[1:] == ["pending"] for line in lines), lines
    assert len({line.index("pending") for line in lines}) == 1, lines


def test_dsn_comes_from_the_environment(fresh_database: str) -> None:
    result = run_cli("migrate", env={"FRAMEMETA_DSN": fresh_database})

    assert result.returncode == 0, result.stderr


def test_human_status_names_the_edition(db_dsn: str) -> None:
    result = run_cli("status", "--dsn", db_dsn)

    assert result.returncode == 0, result.stderr
    assert "edition" in result.stdout
    assert "raw chunks" in result.stdout


def test_unparseable_dsn_is_one_line_without_the_password() -> None:
    line = _one_line_error(run_cli("status", "--dsn", "host=x password=hunter2 nonsense"))

    assert "cannot parse" in line
    assert "hunter2" not in line


def test_unreachable_server_is_one_line_without_the_password() -> None:
    dsn = "host=127.0.0.1 port=1 user=someone password=hunter2 dbname=x connect_timeout=2"
    line = _one_line_error(run_cli("migrate", "--dsn", dsn))

    assert "cannot connect to someone@127.0.0.1:1/x" in line
    assert "hunter2" not in line


def test_uri_password_is_not_shown() -> None:
    line = _one_line_error(run_cli("status", "--dsn", "postgresql://u:hunter2@127.0.0.1:1/db"))

    assert "hunter2" not in line


def test_database_without_timescaledb_is_named(fresh_database: str) -> None:
    line = _one_line_error(run_cli("status", "--dsn", fresh_database))

    assert "has no TimescaleDB extension" in line


def test_status_says_unknown_rather_than_zero_for_a_large_unanalysed_table(
    db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO frame_metadata (camera_id, captured_at, frame_number)"
            " SELECT 'cam-1', '2026-01-01T00:00:00Z'::timestamptz + n * interval '1 s', n"
            " FROM generate_series(1, 3) AS n"
        )
        # Every table counts as "large" for this test.
        monkeypatch.setattr(_status, "_EXACT_COUNT_MAX_BYTES", 0)
        status = _status.collect(conn)

    assert status.raw_rows_estimate is None
    assert "unknown (not analysed yet)" in _status.format_table(status)


@pytest.mark.usefixtures("embedded_only")
def test_server_without_timescaledb_preloaded_is_refused() -> None:
    from framemeta.embedded import EmbeddedServer

    with EmbeddedServer(settings={"shared_preload_libraries": "pg_stat_statements"}) as server:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE DATABASE plain")
        line = _one_line_error(
            run_cli("migrate", "--dsn", make_conninfo(server.dsn, dbname="plain"))
        )

    assert "not preloaded" in line


def test_status_counts_frames_of_a_young_table(db_dsn: str) -> None:
    with psycopg.connect(db_dsn) as conn:
        conn.execute(
            "INSERT INTO frame_metadata (camera_id, captured_at, frame_number)"
            " SELECT 'cam-1', '2026-01-01T00:00:00Z'::timestamptz + n * interval '1 s', n"
            " FROM generate_series(1, 3) AS n"
        )

    report = json.loads(run_cli("status", "--dsn", db_dsn, "--json").stdout)

    assert report["raw_rows_estimate"] == 3
    assert report["chunks"]["count"] == 1


@pytest.mark.usefixtures("embedded_only")
def test_server_start_status_stop(server_dir: Path) -> None:
    directory = str(server_dir / "cluster")
    try:
        started = run_cli("server", "start", "--data-dir", directory)
        running = run_cli("server", "status", "--data-dir", directory)
        again = run_cli("server", "start", "--data-dir", directory)
        dsn = running.stdout.split("running: ", 1)[1].strip()
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        stopped = run_cli("server", "stop", "--data-dir", directory)
        after = run_cli("server", "status", "--data-dir", directory)
    finally:
        run_cli("server", "stop", "--data-dir", directory)

    assert started.returncode == 0, started.stderr
    assert "already running" in again.stdout
    assert stopped.stdout.strip() == "stopped"
    assert after.returncode == 3
    assert after.stdout.startswith("stopped")


def _insert_recent(dsn: str, count: int) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO frame_metadata (camera_id, captured_at, frame_number, motion_score)"
            " SELECT 'cam-' || n %% 2, now() - n * interval '1 s', n, 0.7"
            " FROM generate_series(1, %s) AS n",
            (count,),
        )


def test_status_reports_rollups_retention_and_the_last_maintain_run(db_dsn: str) -> None:
    _insert_recent(db_dsn, 600)
    # And a frame of two days ago: without it, whether the daily level has
    # a finished day to refresh depends on the date (the oldest chunk of
    # the levels below starts today on days that are a chunk boundary).
    with psycopg.connect(db_dsn) as conn:
        conn.execute(
            "INSERT INTO frame_metadata (camera_id, captured_at, frame_number, motion_score)"
            " VALUES ('cam-0', now() - interval '2 days', 0, 0.7)"
        )
    maintained = run_cli("maintain", "--dsn", db_dsn)
    assert maintained.returncode == 0, maintained.stderr

    report = json.loads(run_cli("status", "--dsn", db_dsn, "--json").stdout)
    table = run_cli("status", "--dsn", db_dsn).stdout

    assert [level["level"] for level in report["rollups"]] == ["1m", "1h", "1d"]
    assert [level["retention"] for level in report["rollups"]] == ["30d", "365d", "never dropped"]
    assert report["rollups"][0]["rows_estimate"] >= 10  # 600 s of 2 cameras
    assert report["rollups"][0]["lag_seconds"] is not None
    assert report["raw_retention"] == "7d"
    assert report["newest_frame"] is not None
    assert report["last_maintenance"]["runner"] == "framemeta-maintain"
    assert "by framemeta-maintain, dropped 0 chunk(s)" in table
    if report["edition"] == "timescale":
        assert {job["relation"] for job in report["jobs"]} >= {"frame_metadata", "frame_stats_1m"}
        assert "rollups: refreshed 1m, 1h, 1d" in maintained.stdout
    else:
        assert report["jobs"] == []
        assert report["rollups"][0]["lag_seconds"] == 0
        assert "rollups: current (kept by the insert trigger)" in maintained.stdout
        assert "compression: not available on the Apache edition" in maintained.stdout
        assert "compression         not available on the Apache edition" in table


def test_erase_command_dry_run_then_erase(db_dsn: str) -> None:
    _insert_recent(db_dsn, 600)
    with psycopg.connect(db_dsn) as conn:
        row = conn.execute(
            "SELECT min(captured_at), max(captured_at) FROM frame_metadata"
        ).fetchone()
    assert row is not None
    start, end = row[0].isoformat(), (row[1]).isoformat()  # end exclusive: the newest stays
    args = ("erase", "--dsn", db_dsn, "--camera", "cam-0", "--start", start, "--end", end)

    dry = run_cli(*args, "--dry-run")
    erased = run_cli(*args)
    again = run_cli(*args)

    assert dry.returncode == 0, dry.stderr
    assert "would erase 300 frame(s) of cam-0; nothing changed" in dry.stdout
    assert erased.returncode == 0, erased.stderr
    assert "erased 300 frame(s) of cam-0" in erased.stdout
    assert "rollup 1m " in erased.stdout
    assert "erased 0 frame(s)" in again.stdout


def test_times_without_a_zone_and_a_rebuild_without_a_range_are_refused(db_dsn: str) -> None:
    naive = run_cli(
        "erase", "--dsn", db_dsn, "--camera", "cam-0",
        "--start", "2026-11-20T00:00:00", "--end", "2026-11-21T00:00:00Z",
    )  # fmt: skip
    rebuild = run_cli(
        "maintain", "--dsn", db_dsn, "--rebuild-rollups", "--start", "2026-11-20T00:00:00Z"
    )

    assert naive.returncode == 2
    assert "'2026-11-20T00:00:00' has no time zone" in naive.stderr
    assert "--rebuild-rollups needs --start and --end" in _one_line_error(rebuild)


def test_maintain_rebuild_rollups_reports_each_level(db_dsn: str) -> None:
    _insert_recent(db_dsn, 120)

    result = run_cli(
        "maintain", "--dsn", db_dsn, "--rebuild-rollups",
        "--start", "2026-01-01T00:00:00Z", "--end", "2099-01-01T00:00:00+00:00",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("rebuild ")]
    assert [line.split()[1] for line in lines] == ["1m", "1h", "1d"]


@pytest.mark.usefixtures("embedded_only")
def test_demo_ends_with_answers_of_the_query_api(server_dir: Path) -> None:
    result = run_cli(
        "demo", "--data-dir", str(server_dir / "demo"), "--cameras", "2", "--hours", "0.2"
    )

    assert result.returncode == 0, result.stderr
    assert "latest frame of each camera:" in result.stdout
    assert "  cam-01 #" in result.stdout
    assert "resolution=auto" in result.stdout
    assert "all cameras:" in result.stdout


def test_queries_reports_framemeta_statements_and_flags_slow_ones(db_dsn: str) -> None:
    from datetime import UTC, datetime, timedelta

    from framemeta import FrameQuery

    _insert_recent(db_dsn, 120)
    now = datetime.now(UTC)
    with FrameQuery(db_dsn) as query:
        for _ in range(3):
            query.latest("cam-0")
            query.stats(now - timedelta(hours=1), now, bucket=timedelta(minutes=1))
            query.cameras()

    assert run_cli("status", "--dsn", db_dsn).returncode == 0
    report = run_cli("queries", "--dsn", db_dsn, "--json", "--limit", "500")
    table = run_cli("queries", "--dsn", db_dsn)
    strict = run_cli("queries", "--dsn", db_dsn, "--threshold-ms", "0", "--check")

    assert report.returncode == 0, report.stderr
    statements = json.loads(report.stdout)
    latest = [s for s in statements if "ORDER BY captured_at DESC" in s["query"]]
    assert latest
    assert latest[0]["calls"] == 3
    assert any("frame_stats_1m" in s["query"] for s in statements)
    assert [s["calls"] for s in statements if "FROM frame_cameras" in s["query"]] == [3]
    assert all(not s["query"].lstrip().upper().startswith("CREATE") for s in statements)
    # framemeta status's own reads, though their relations come as literals
    # (pg_stat_statements shows them as $1), shown without their marker.
    estimates = [s for s in statements if s["query"].startswith("SELECT approximate_row_count")]
    assert estimates
    assert estimates[0]["kind"] == "query"
    assert "queries with a mean of 10 ms or more" in table.stdout
    assert strict.returncode == 1
    assert "SLOW" in strict.stdout


def test_queries_flags_slow_reads_at_10_ms_and_never_writes_or_maintenance(
    db_dsn: str,
) -> None:
    from datetime import UTC, datetime, timedelta

    from framemeta import FrameQuery

    now = datetime.now(UTC)
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO frame_metadata (camera_id, captured_at, frame_number, motion_score)"
            " SELECT 'cam-' || n %% 4, %s - n * interval '10 ms', n, 0.25"
            " FROM generate_series(1, 400000) AS n",
            (now - timedelta(hours=1),),
        )
        conn.execute("SELECT framemeta_apply_retention()")
    with FrameQuery(db_dsn) as query:
        query.latest("cam-1")
        # Every frame's statistics, from raw frames: 400,000 rows aggregated.
        query.stats(now - timedelta(hours=3), now, bucket=timedelta(seconds=10), resolution="raw")

    report = run_cli("queries", "--dsn", db_dsn, "--json", "--limit", "500")
    checked = run_cli("queries", "--dsn", db_dsn, "--check")
    strict = run_cli("queries", "--dsn", db_dsn, "--json", "--threshold-ms", "0")

    assert report.returncode == 0, report.stderr
    statements = json.loads(report.stdout)
    kinds = {s["kind"] for s in statements}
    assert kinds == {"query", "write", "maintenance"}
    inserts = [s for s in statements if s["query"].startswith("INSERT INTO frame_metadata")]
    assert [s["kind"] for s in inserts] == ["write"]
    assert inserts[0]["mean_ms"] >= 10  # 400,000 frames, and not flagged
    assert not any(s["query"].upper().startswith(("ALTER", "CREATE")) for s in statements)
    assert [s["kind"] for s in statements if "framemeta_apply_retention" in s["query"]] == [
        "maintenance"
    ]
    slow = [s for s in statements if s["slow"]]
    assert slow  # the raw statistics, at 10 ms or more
    assert all(s["kind"] == "query" and s["mean_ms"] >= 10 for s in slow)
    assert all(not s["slow"] for s in statements if s["mean_ms"] < 10)
    assert checked.returncode == 1
    assert "SLOW" in checked.stdout
    assert all(s["slow"] == (s["kind"] == "query") for s in json.loads(strict.stdout))
    # The slowest statement is the insert: the check counts the slow reads
    # below the one shown all the same.
    assert statements[0]["kind"] == "write"
    limited = run_cli("queries", "--dsn", db_dsn, "--check", "--limit", "1")
    assert limited.returncode == 1
    assert "1 query with a mean of 10 ms or more" in limited.stdout


def test_queries_leave_out_migrations_and_add_up_a_statement_run_by_two_roles(
    fresh_database: str,
) -> None:
    """pg_stat_statements keeps a migration file's comments before its first
    statement: the migration's DDL is still left out (it failed the check
    of every freshly migrated database). One statement run by two roles is
    one row of the report."""
    migrated = run_cli("migrate", "--dsn", fresh_database)
    assert migrated.returncode == 0, migrated.stderr
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        for role in ("postgres", "postgres", "framemeta_reader", "framemeta_reader"):
            conn.execute(f"SET ROLE {role}")
            conn.execute("SELECT count(*) FROM frame_cameras WHERE frames > 0")
        conn.execute("RESET ROLE")

    checked = run_cli("queries", "--dsn", fresh_database, "--check", "--json", "--limit", "500")

    assert checked.returncode == 0, checked.stdout + checked.stderr
    statements = json.loads(checked.stdout)
    assert not any(s["query"].startswith("--") for s in statements)
    assert not any(s["query"].upper().startswith(("CREATE", "ALTER", "LOCK")) for s in statements)
    counted = [s for s in statements if "FROM frame_cameras WHERE frames >" in s["query"]]
    assert [s["calls"] for s in counted] == [4]


def test_queries_as_a_role_that_may_not_read_settings_or_other_roles_statements(
    db_dsn: str,
) -> None:
    """framemeta's owner role, not a superuser: without the extension it is
    told to ask a DBA (not that it may not read shared_preload_libraries);
    with it, it sees other roles' statements as '<insufficient
    privilege>', so its check cannot pass, and says why."""
    role = f"framemeta_test_owner_{os.getpid()}"
    as_role = make_conninfo(db_dsn, user=role)
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN IN ROLE framemeta_owner")
    try:
        without = run_cli("queries", "--dsn", as_role)
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            conn.execute("SELECT count(*) FROM frame_cameras")  # a statement of another role
        checked = run_cli("queries", "--dsn", as_role, "--check")
    finally:
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            conn.execute(f"DROP ROLE {role}")

    assert without.returncode == 1
    assert "ask a DBA" in without.stderr
    assert "CREATE EXTENSION pg_stat_statements" in without.stderr
    assert checked.returncode == 1
    assert "pg_read_all_stats" in checked.stderr


@pytest.mark.parametrize(
    ("statement", "kind"),
    [
        ("COPY frame_metadata (camera_id) FROM STDIN (FORMAT BINARY)", "write"),
        ("INSERT INTO frame_metadata VALUES ($1)", "write"),
        (
            "WITH gone AS (DELETE FROM frame_metadata RETURNING 1) SELECT count(*) FROM gone",
            "write",
        ),
        ("SELECT framemeta_apply_retention()", "maintenance"),
        ("CALL refresh_continuous_aggregate($1::regclass, $2, $3)", "maintenance"),
        ("SELECT framemeta_rebuild_rollup($1, $2, $3, $4)", "maintenance"),
        ("SELECT framemeta_recount_cameras($1)", "maintenance"),
        ("SELECT compress_chunk(c) FROM show_chunks($1) AS c", "maintenance"),
        ("SELECT camera_id, max(captured_at) FROM frame_metadata GROUP BY 1", "query"),
        ("WITH s AS MATERIALIZED (SELECT 1) SELECT * FROM frame_stats_1h, s", "query"),
        ("SELECT last_updated FROM frame_stats_1d", "query"),
        ("SELECT camera_id, frames FROM frame_cameras ORDER BY camera_id", "query"),
    ],
)
def test_statement_kinds(statement: str, kind: str) -> None:
    assert _status.statement_kind(statement) == kind
