"""The `framemeta` command: real server, real process, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
    report = json.loads(status.stdout)
    assert report["schema_version"] == count
    assert report["edition"] in {"apache", "timescale"}
    assert report["chunks"]["count"] == 0


def test_migrate_status_lists_files(fresh_database: str) -> None:
    result = run_cli("migrate", "--status", "--dsn", fresh_database)

    assert result.returncode == 0
    assert "0001_extension_roles_config.sql  pending" in result.stdout


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
def test_server_start_status_stop() -> None:
    import shutil
    import tempfile
    from pathlib import Path

    base = Path(tempfile.mkdtemp(prefix="framemeta-cli-"))
    base.chmod(0o711)
    directory = str(base / "cluster")
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
        shutil.rmtree(base, ignore_errors=True)

    assert started.returncode == 0, started.stderr
    assert "already running" in again.stdout
    assert stopped.stdout.strip() == "stopped"
    assert after.returncode == 3
    assert after.stdout.startswith("stopped")
