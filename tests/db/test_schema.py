"""The migration runner and the schema it creates, on a real server."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from framemeta import MigrationError, migrate
from framemeta.maintenance import LEVEL_STORAGE_SQL
from framemeta.schema import load_migrations, migration_status, migrations_dir


def _copy_migrations(target: Path) -> Path:
    directory = target / "migrations"
    shutil.copytree(migrations_dir(), directory)
    return directory


def _applied_versions(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [
            row[0]
            for row in conn.execute(
                "SELECT version FROM framemeta_schema_migrations ORDER BY version"
            )
        ]


def test_migrate_applies_every_file_then_is_a_no_op(fresh_database: str) -> None:
    first = migrate(fresh_database)
    second = migrate(fresh_database)

    assert [m.version for m in first] == [m.version for m in load_migrations()]
    assert second == []
    assert _applied_versions(fresh_database) == [m.version for m in load_migrations()]


def test_concurrent_migrations_apply_each_file_once(fresh_database: str) -> None:
    results: list[list[int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        try:
            results.append([m.version for m in migrate(fresh_database)])
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    applied = sorted(version for result in results for version in result)
    assert applied == [m.version for m in load_migrations()]
    assert _applied_versions(fresh_database) == applied


def test_edited_applied_migration_is_refused(fresh_database: str, tmp_path: Path) -> None:
    directory = _copy_migrations(tmp_path)
    migrate(fresh_database, directory=directory)
    edited = directory / "0002_frame_metadata.sql"
    edited.write_text(edited.read_text() + "\n-- an innocent-looking edit\n")

    with pytest.raises(MigrationError, match=r"0002_frame_metadata\.sql was edited"):
        migrate(fresh_database, directory=directory)
    states = {
        s.migration.version: s.status for s in migration_status(fresh_database, directory=directory)
    }
    assert states[2] == "edited"


def test_failed_migration_leaves_no_trace(fresh_database: str, tmp_path: Path) -> None:
    directory = _copy_migrations(tmp_path)
    (directory / "0900_broken.sql").write_text(
        "CREATE TABLE half_done (id int);\nINSERT INTO half_done VALUES (1);\nSELECT 1/0;\n"
    )

    with pytest.raises(MigrationError, match=r"0900_broken\.sql failed: division by zero") as info:
        migrate(fresh_database, directory=directory)

    assert info.value.sqlstate == "22012"
    with psycopg.connect(fresh_database) as conn:
        row = conn.execute("SELECT to_regclass('half_done')").fetchone()
    assert row == (None,)
    assert 900 not in _applied_versions(fresh_database)
    # Everything before the broken file stays applied.
    assert _applied_versions(fresh_database) == [m.version for m in load_migrations()]


def test_no_transaction_migration_runs_statement_by_statement(
    fresh_database: str, tmp_path: Path
) -> None:
    directory = _copy_migrations(tmp_path)
    (directory / "0900_concurrent_index.sql").write_text(
        "-- framemeta: no-transaction\n"
        "CREATE TABLE IF NOT EXISTS plain (id int, note text);\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS plain_note_idx ON plain (note);\n"
        "DO $$ BEGIN PERFORM 1; END; $$;\n"
    )

    applied = migrate(fresh_database, directory=directory)

    assert applied[-1].filename == "0900_concurrent_index.sql"
    assert not applied[-1].transactional
    with psycopg.connect(fresh_database) as conn:
        row = conn.execute("SELECT to_regclass('plain_note_idx')").fetchone()
    assert row is not None
    assert row[0] is not None


def test_database_ahead_of_the_code_is_refused(fresh_database: str, tmp_path: Path) -> None:
    directory = _copy_migrations(tmp_path)
    (directory / "0900_later.sql").write_text("SELECT 1;\n")
    migrate(fresh_database, directory=directory)
    (directory / "0900_later.sql").unlink()

    with pytest.raises(MigrationError, match="does not know: upgrade framemeta"):
        migrate(fresh_database, directory=directory)


def test_status_lists_applied_and_pending(fresh_database: str, tmp_path: Path) -> None:
    directory = _copy_migrations(tmp_path)
    assert {s.status for s in migration_status(fresh_database, directory=directory)} == {"pending"}
    migrate(fresh_database, directory=directory)
    (directory / "0900_next.sql").write_text("SELECT 1;\n")

    states = migration_status(fresh_database, directory=directory)

    assert [s.status for s in states] == ["applied"] * (len(states) - 1) + ["pending"]


def test_raw_table_is_a_hypertable_with_one_day_chunks(db_dsn: str) -> None:
    with psycopg.connect(db_dsn) as conn:
        row = conn.execute(
            "SELECT d.column_name, d.time_interval FROM timescaledb_information.dimensions d"
            " WHERE d.hypertable_name = 'frame_metadata'"
        ).fetchone()
    assert row is not None
    column, interval = row
    assert column == "captured_at"
    assert interval.total_seconds() == 86_400


def test_raw_table_has_exactly_the_chosen_indexes(db_dsn: str) -> None:
    with psycopg.connect(db_dsn) as conn:
        indexes: dict[str, str] = dict(
            conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'frame_metadata'"
            )
        )
    assert set(indexes) == {
        "frame_metadata_pkey",
        "frame_metadata_metadata_idx",
        "frame_metadata_motion_idx",
        "frame_metadata_detections_idx",
        "frame_metadata_detections_time_idx",
        "frame_metadata_captured_at_brin",
    }
    assert "(camera_id, captured_at, frame_number)" in indexes["frame_metadata_pkey"]
    assert "gin (metadata jsonb_path_ops)" in indexes["frame_metadata_metadata_idx"]
    assert "WHERE (motion_score >= (0.5)" in indexes["frame_metadata_motion_idx"]
    detections = indexes["frame_metadata_detections_idx"]
    assert "(camera_id, captured_at) WHERE (detection_labels IS NOT NULL)" in detections
    by_time = indexes["frame_metadata_detections_time_idx"]
    assert "(captured_at) WHERE (detection_labels IS NOT NULL)" in by_time
    assert "USING brin (captured_at)" in indexes["frame_metadata_captured_at_brin"]


def test_edition_is_recorded_for_later_migrations(db_dsn: str) -> None:
    with psycopg.connect(db_dsn) as conn:
        row = conn.execute(
            "SELECT framemeta_edition(), current_setting('timescaledb.license', true)"
        ).fetchone()
    assert row is not None
    recorded, license_ = row
    assert recorded == license_
    assert recorded in {"apache", "timescale"}


def test_natural_key_refuses_duplicates(db_dsn: str) -> None:
    insert = (
        "INSERT INTO frame_metadata (camera_id, captured_at, frame_number)"
        " VALUES ('cam-1', '2026-01-01T00:00:00Z', 7)"
    )
    with psycopg.connect(db_dsn) as conn:
        conn.execute(insert)
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(insert)


def test_new_chunks_toast_large_values_with_lz4(db_dsn: str) -> None:
    with psycopg.connect(db_dsn) as conn:
        conn.execute(
            "INSERT INTO frame_metadata (camera_id, captured_at, frame_number, metadata)"
            " VALUES ('cam-1', now(), 1, jsonb_build_object('notes', repeat('frame ', 2000)))"
        )
        methods = conn.execute(
            "SELECT DISTINCT pg_column_compression(metadata) FROM frame_metadata"
        ).fetchall()
    assert methods == [("lz4",)]


def test_every_rollup_is_indexed_by_bucket(db_dsn: str) -> None:
    """Stats of every camera read a range of buckets: on the Apache edition
    each rollup table has an index on its bucket alone (0006, 0009); the
    community edition's materialization hypertables come with one."""
    with psycopg.connect(db_dsn) as conn:
        rows = conn.execute(
            f"SELECT s.level, s.storage_schema, s.storage_table FROM ({LEVEL_STORAGE_SQL}) AS s"
            " WHERE s.level <> 'raw'"
        ).fetchall()
        for level, schema, table in rows:
            [(leading,)] = conn.execute(
                "SELECT array_agg(a.attname::text) FROM pg_index AS i"
                " JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
                " WHERE i.indrelid = format('%%I.%%I', %s::text, %s::text)::regclass",
                (schema, table),
            ).fetchall()
            assert "bucket" in leading, (level, leading)
