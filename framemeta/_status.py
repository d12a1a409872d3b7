"""What a framemeta database looks like now: edition, versions, chunks, sizes.

`check_timescaledb` is the pre-flight check the CLI and the migration runner
share; `collect` gathers what ``framemeta status`` prints.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs
import psycopg

from framemeta.errors import DatabaseError

__all__ = ["ChunkSummary", "DatabaseStatus", "check_timescaledb", "collect", "format_table"]

# Below this raw size `status` counts rows exactly when statistics are missing.
_EXACT_COUNT_MAX_BYTES = 64 * 1024 * 1024


def check_timescaledb(conn: psycopg.Connection[Any]) -> None:
    """Raise `DatabaseError` with the fix when the server cannot run TimescaleDB.

    Checks that the extension is installed on the server and preloaded
    (``shared_preload_libraries``); both are needed before ``CREATE EXTENSION``.
    """
    row = conn.execute(
        "SELECT (SELECT default_version FROM pg_available_extensions"
        "        WHERE name = 'timescaledb'),"
        "       current_setting('shared_preload_libraries'),"
        "       current_setting('server_version')"
    ).fetchone()
    assert row is not None
    available, preload, server_version = row
    if available is None:
        raise DatabaseError(
            f"the server (PostgreSQL {server_version}) does not have TimescaleDB installed: "
            "install it there (`framemeta server install` on a Debian/Ubuntu host), "
            "or point --dsn at a server that has it"
        )
    if "timescaledb" not in preload:
        raise DatabaseError(
            "TimescaleDB is installed but not preloaded: add timescaledb to "
            "shared_preload_libraries in postgresql.conf and restart the server"
        )


@attrs.frozen
class ChunkSummary:
    """The raw hypertable's chunks: how many, the time they cover, bytes on disk."""

    count: int
    oldest: datetime | None
    newest: datetime | None
    total_bytes: int
    compressed: int


@attrs.frozen
class DatabaseStatus:
    """What ``framemeta status`` reports about one database."""

    database: str
    postgresql_version: str
    timescaledb_version: str | None
    edition: str | None
    schema_version: int | None
    raw_rows_estimate: int | None
    chunks: ChunkSummary | None
    database_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """Plain values for ``--json``."""
        return attrs.asdict(
            self,
            value_serializer=lambda _, __, value: (
                value.isoformat() if isinstance(value, datetime) else value
            ),
        )


def collect(conn: psycopg.Connection[Any]) -> DatabaseStatus:
    """Gather the status of the database ``conn`` is connected to.

    Works on a database that was never migrated (fields are None then).
    Raises `DatabaseError` when TimescaleDB is not created in it.
    """
    row = conn.execute(
        "SELECT current_database(), current_setting('server_version'),"
        "       (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'),"
        "       current_setting('timescaledb.license', true),"
        "       pg_database_size(current_database()),"
        "       to_regclass('framemeta_schema_migrations') IS NOT NULL,"
        "       to_regclass('frame_metadata') IS NOT NULL"
    ).fetchone()
    assert row is not None
    database, pg_version, ts_version, edition, db_bytes, has_migrations, has_raw = row
    if ts_version is None:
        raise DatabaseError(
            f"database {database!r} has no TimescaleDB extension: run `framemeta migrate` "
            "to create the schema"
        )
    schema_version = None
    if has_migrations:
        version_row = conn.execute(
            "SELECT max(version) FROM framemeta_schema_migrations"
        ).fetchone()
        schema_version = version_row[0] if version_row else None
    chunks = None
    rows_estimate = None
    if has_raw:
        chunk_row = conn.execute(
            "SELECT count(*), min(range_start), max(range_end),"
            "       coalesce(sum(pg_total_relation_size("
            "           format('%I.%I', chunk_schema, chunk_name)::regclass)), 0)::bigint,"
            "       count(*) FILTER (WHERE is_compressed)"
            "  FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'frame_metadata'"
        ).fetchone()
        assert chunk_row is not None
        chunks = ChunkSummary(*chunk_row)
        estimate_row = conn.execute("SELECT approximate_row_count('frame_metadata')").fetchone()
        rows_estimate = int(estimate_row[0]) if estimate_row else 0
        # The estimate comes from statistics, which a young table may not have
        # yet; a small table is cheap to count exactly.
        if rows_estimate == 0 and chunks.total_bytes < _EXACT_COUNT_MAX_BYTES:
            count_row = conn.execute("SELECT count(*) FROM frame_metadata").fetchone()
            rows_estimate = int(count_row[0]) if count_row else 0
        elif rows_estimate == 0:
            rows_estimate = None  # large and not analysed yet: unknown, not zero
    return DatabaseStatus(
        database=database,
        postgresql_version=pg_version,
        timescaledb_version=ts_version,
        edition=edition,
        schema_version=schema_version,
        raw_rows_estimate=rows_estimate,
        chunks=chunks,
        database_bytes=db_bytes,
    )


def format_table(status: DatabaseStatus) -> str:
    """The human table ``framemeta status`` prints."""
    rows: list[tuple[str, Any]] = [
        ("database", status.database),
        ("PostgreSQL", status.postgresql_version),
        ("TimescaleDB", status.timescaledb_version),
        ("edition", _edition_text(status.edition)),
        ("schema version", status.schema_version if status.schema_version else "not migrated"),
        ("database size", _bytes(status.database_bytes)),
    ]
    if status.chunks is not None:
        chunks = status.chunks
        covered = (
            f"{chunks.oldest:%Y-%m-%d %H:%M} .. {chunks.newest:%Y-%m-%d %H:%M} UTC"
            if chunks.oldest and chunks.newest
            else "-"
        )
        rows += [
            (
                "raw frames (about)",
                "unknown (not analysed yet)"
                if status.raw_rows_estimate is None
                else f"{status.raw_rows_estimate:,}",
            ),
            ("raw chunks", f"{chunks.count} ({chunks.compressed} compressed)"),
            ("raw time range", covered),
            ("raw size", _bytes(chunks.total_bytes)),
        ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _edition_text(edition: str | None) -> str:
    if edition == "timescale":
        return "timescale (community: continuous aggregates, policies, compression)"
    if edition == "apache":
        return "apache (no continuous aggregates, policies or compression)"
    return str(edition)


def _bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
