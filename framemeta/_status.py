"""What a framemeta database looks like now: edition, versions, chunks, sizes.

`check_timescaledb` is the pre-flight check the CLI and the migration runner
share; `collect` gathers what ``framemeta status`` prints.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any, Final

import attrs
import psycopg
from psycopg import sql

from framemeta import maintenance
from framemeta.errors import DatabaseError

__all__ = [
    "ChunkSummary",
    "DatabaseStatus",
    "JobStatus",
    "MaintenanceRun",
    "RollupStatus",
    "StatementReport",
    "StatementStats",
    "check_timescaledb",
    "collect",
    "format_statements",
    "format_table",
    "statement_report",
]

# Below this raw size `status` counts rows exactly when statistics are missing.
_EXACT_COUNT_MAX_BYTES = 64 * 1024 * 1024


# Before the statements of `collect` that name no framemeta relation but in
# a literal, which pg_stat_statements turns into $1: `statement_report`
# finds them by it (and shows them without it).
_MARK: Final = "/* framemeta_status */ "


def check_timescaledb(conn: psycopg.Connection[Any]) -> None:
    """Raise `DatabaseError` with the fix when the server cannot run TimescaleDB.

    Checks that the extension is installed on the server and preloaded
    (``shared_preload_libraries``); both are needed before ``CREATE EXTENSION``.
    """
    row = conn.execute(
        "SELECT (SELECT default_version FROM pg_available_extensions"
        "        WHERE name = 'timescaledb'),"
        "       EXISTS (SELECT FROM pg_extension WHERE extname = 'timescaledb'),"
        "       current_setting('server_version')"
    ).fetchone()
    assert row is not None
    available, created, server_version = row
    if available is None:
        raise DatabaseError(
            f"the server (PostgreSQL {server_version}) does not have TimescaleDB installed: "
            "install it there (`framemeta server install` on a Debian/Ubuntu host), "
            "or point --dsn at a server that has it"
        )
    preload = _preload_libraries(conn)
    if not created and preload is not None and "timescaledb" not in preload:
        raise DatabaseError(
            "TimescaleDB is installed but not preloaded: add timescaledb to "
            "shared_preload_libraries in postgresql.conf and restart the server"
        )


def _preload_libraries(conn: psycopg.Connection[Any]) -> str | None:
    """``shared_preload_libraries``, or None where this role may not read
    it (``pg_settings`` leaves it out for a role without
    pg_read_all_settings; ``current_setting`` would raise)."""
    row = conn.execute(
        "SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'"
    ).fetchone()
    return None if row is None else str(row[0])


@attrs.frozen
class ChunkSummary:
    """The raw hypertable's chunks: how many, the time they cover, bytes on disk."""

    count: int
    oldest: datetime | None
    newest: datetime | None
    total_bytes: int
    compressed: int


@attrs.frozen
class RollupStatus:
    """One rollup level: its rows (estimated from statistics, exact when
    small), its newest bucket, and how far its materialised data lags the
    newest raw frame (0 on the Apache edition, whose trigger keeps it in the
    insert's transaction; on the community edition readers still see the
    lagging part, computed in real time)."""

    level: str
    rows_estimate: int | None
    newest_bucket: datetime | None
    lag_seconds: float | None
    retention: str


@attrs.frozen
class JobStatus:
    """A community-edition job and its last run: a policy (refresh,
    compression, retention) on ``relation``, or framemeta's recount
    of the cameras (``relation`` None)."""

    job_id: int
    name: str
    relation: str | None
    schedule_interval_seconds: float
    scheduled: bool
    last_run_started_at: datetime | None
    last_run_status: str | None
    next_start: datetime | None
    total_failures: int
    last_error: str | None


@attrs.frozen
class MaintenanceRun:
    """The last retention run (``framemeta maintain``, a writer or pg_cron)."""

    finished_at: datetime
    runner: str
    dropped_chunks: int


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
    newest_frame: datetime | None = None
    compressed_bytes: tuple[int, int] | None = None
    """Bytes of the compressed raw chunks before and after compression."""
    rollups: list[RollupStatus] = attrs.Factory(list)
    jobs: list[JobStatus] = attrs.Factory(list)
    last_maintenance: MaintenanceRun | None = None
    raw_retention: str | None = None
    """How long raw frames are kept (``7d``, ``never dropped``)."""
    cameras_counted_before: datetime | None = None
    """Community edition (migration 0011 on): `FrameQuery.cameras` reads the
    per-camera rows counted before this moment and the 1-minute rollup
    after it; the recount job moves it every five minutes, so a moment far
    behind the newest frame means the job is not running. None on the
    Apache edition (counted as frames are written) and before any rollup
    was materialised."""

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
        _MARK + "SELECT current_database(), current_setting('server_version'),"
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
            _MARK + "SELECT count(*), min(range_start), max(range_end),"
            "       coalesce(sum(pg_total_relation_size("
            "           format('%I.%I', chunk_schema, chunk_name)::regclass)), 0)::bigint,"
            "       count(*) FILTER (WHERE is_compressed)"
            "  FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'frame_metadata'"
        ).fetchone()
        assert chunk_row is not None
        chunks = ChunkSummary(*chunk_row)
        estimate_row = conn.execute(
            _MARK + "SELECT approximate_row_count('frame_metadata')"
        ).fetchone()
        rows_estimate = int(estimate_row[0]) if estimate_row else 0
        # The estimate comes from statistics, which a young table may not have
        # yet; a small table is cheap to count exactly.
        if rows_estimate == 0 and chunks.total_bytes < _EXACT_COUNT_MAX_BYTES:
            count_row = conn.execute("SELECT count(*) FROM frame_metadata").fetchone()
            rows_estimate = int(count_row[0]) if count_row else 0
        elif rows_estimate == 0:
            rows_estimate = None  # large and not analysed yet: unknown, not zero
    status = DatabaseStatus(
        database=database,
        postgresql_version=pg_version,
        timescaledb_version=ts_version,
        edition=edition,
        schema_version=schema_version,
        raw_rows_estimate=rows_estimate,
        chunks=chunks,
        database_bytes=db_bytes,
    )
    if not has_raw:
        return status
    newest_frame = _newest(conn, "public", "frame_metadata", "captured_at")
    extras: dict[str, Any] = {"newest_frame": newest_frame}
    if _exists(conn, "framemeta_maintenance_runs"):
        retention = maintenance.get_retention(conn)
        extras["raw_retention"] = maintenance.show_horizon(retention.raw)
        extras["rollups"] = _rollups(conn, newest_frame)
        extras["last_maintenance"] = _last_maintenance(conn)
    if edition == "timescale":
        extras["compressed_bytes"] = _compressed_bytes(conn)
        extras["jobs"] = _jobs(conn)
        extras["cameras_counted_before"] = _cameras_counted_before(conn)
    return attrs.evolve(status, **extras)


def _cameras_counted_before(conn: psycopg.Connection[Any]) -> datetime | None:
    row = conn.execute(
        "SELECT CASE WHEN isfinite(value::timestamptz) THEN value::timestamptz END"
        "  FROM framemeta_config WHERE key = 'cameras_counted_before'"
    ).fetchone()
    return None if row is None else row[0]


def _exists(conn: psycopg.Connection[Any], relation: str) -> bool:
    row = conn.execute(_MARK + "SELECT to_regclass(%s) IS NOT NULL", (relation,)).fetchone()
    return row == (True,)


def _newest(conn: psycopg.Connection[Any], schema: str, table: str, column: str) -> datetime | None:
    """The newest ``column`` of a hypertable keyed by (camera_id, column):
    one index probe per camera in its newest chunk (a skip scan), not a
    scan of the chunk."""
    row = conn.execute(
        _MARK + "SELECT max(range_start) FROM timescaledb_information.chunks"
        " WHERE hypertable_schema = %s AND hypertable_name = %s",
        (schema, table),
    ).fetchone()
    if row is None or row[0] is None:
        return None
    query = sql.SQL(
        """
        WITH RECURSIVE cameras AS (
            (SELECT camera_id FROM {table} WHERE {column} >= %(since)s
             ORDER BY camera_id LIMIT 1)
            UNION ALL
            SELECT (SELECT t.camera_id FROM {table} AS t
                    WHERE t.camera_id > cameras.camera_id AND t.{column} >= %(since)s
                    ORDER BY t.camera_id LIMIT 1)
            FROM cameras WHERE cameras.camera_id IS NOT NULL
        )
        SELECT max((SELECT max(t.{column}) FROM {table} AS t
                    WHERE t.camera_id = cameras.camera_id AND t.{column} >= %(since)s))
        FROM cameras WHERE cameras.camera_id IS NOT NULL
        """
    ).format(table=sql.Identifier(schema, table), column=sql.Identifier(column))
    newest = conn.execute(query, {"since": row[0]}).fetchone()
    return newest[0] if newest else None


def _rollups(conn: psycopg.Connection[Any], newest_frame: datetime | None) -> list[RollupStatus]:
    retention = maintenance.get_retention(conn)
    watermarks: dict[str, datetime | None] = {}
    if conn.execute("SELECT framemeta_edition()").fetchone() == ("timescale",):
        # How far each continuous aggregate is materialised (never refreshed:
        # the lowest time there is, shown as no bucket).
        watermarks = maintenance._watermarks(conn)
    storage = maintenance._level_storage(conn)
    levels = []
    for level in maintenance.LEVELS[1:]:
        relation = maintenance.RELATIONS[level]
        width = maintenance.BUCKET_WIDTHS[level]
        schema, table = storage[level].schema, storage[level].table
        if relation in watermarks:
            # Materialised up to the watermark; newer buckets are computed
            # from the level below when read.
            watermark = watermarks[relation]
            newest = watermark - width if watermark is not None else None
        else:
            newest = _newest(conn, schema, table, "bucket")
            watermark = newest + width if newest is not None else None
        lag = None
        if newest_frame is not None and watermark is not None:
            lag = max(0.0, (newest_frame - watermark).total_seconds())
        levels.append(
            RollupStatus(
                level=level,
                rows_estimate=_row_estimate(conn, schema, table),
                newest_bucket=newest,
                lag_seconds=lag,
                retention=maintenance.show_horizon(retention.horizon(level)),
            )
        )
    return levels


def _row_estimate(conn: psycopg.Connection[Any], schema: str, table: str) -> int | None:
    name = sql.Identifier(schema, table).as_string(conn)
    row = conn.execute(
        _MARK + "SELECT approximate_row_count(%s::regclass), hypertable_size(%s::regclass)",
        (name, name),
    ).fetchone()
    estimate, size = row if row else (0, 0)
    if estimate:
        return int(estimate)
    if (size or 0) < _EXACT_COUNT_MAX_BYTES:
        count = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
        ).fetchone()
        return int(count[0]) if count else 0
    return None


def _last_maintenance(conn: psycopg.Connection[Any]) -> MaintenanceRun | None:
    row = conn.execute(
        "SELECT finished_at, runner,"
        "       (SELECT coalesce(sum(jsonb_array_length(item -> 'chunks')), 0)"
        "          FROM jsonb_array_elements(dropped) AS item)::int"
        "  FROM framemeta_maintenance_runs ORDER BY finished_at DESC LIMIT 1"
    ).fetchone()
    return MaintenanceRun(*row) if row else None


def _compressed_bytes(conn: psycopg.Connection[Any]) -> tuple[int, int] | None:
    row = conn.execute(
        _MARK + "SELECT sum(before_compression_total_bytes)::bigint,"
        "       sum(after_compression_total_bytes)::bigint"
        "  FROM hypertable_compression_stats('frame_metadata')"
    ).fetchone()
    if row is None or not row[0]:
        return None
    return int(row[0]), int(row[1])


def _jobs(conn: psycopg.Connection[Any]) -> list[JobStatus]:
    """framemeta's policies: the jobs on its hypertables and continuous aggregates."""
    try:
        rows = conn.execute(
            _MARK
            + """
            SELECT j.job_id, j.application_name, j.hypertable_name,
                   extract(epoch FROM j.schedule_interval)::float8, j.scheduled,
                   -- A job about to run has -infinity here, which Python cannot hold.
                   CASE WHEN isfinite(s.last_run_started_at) THEN s.last_run_started_at END,
                   s.last_run_status,
                   CASE WHEN isfinite(s.next_start) THEN s.next_start END,
                   coalesce(s.total_failures, 0),
                   (SELECT e.err_message FROM timescaledb_information.job_errors AS e
                     WHERE e.job_id = j.job_id ORDER BY e.finish_time DESC LIMIT 1)
              FROM timescaledb_information.jobs AS j
              LEFT JOIN timescaledb_information.job_stats AS s USING (job_id)
             WHERE j.hypertable_name IS NOT NULL
                OR j.proc_name = 'framemeta_recount_cameras_job'
             ORDER BY j.job_id
            """
        ).fetchall()
    except psycopg.errors.InsufficientPrivilege:
        return []
    return [JobStatus(*row) for row in rows]


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
    if status.compressed_bytes is not None:
        before, after = status.compressed_bytes
        rows.append(
            ("compression", f"{_bytes(before)} -> {_bytes(after)} ({before / max(after, 1):.1f}x)")
        )
    elif status.edition == "apache" and status.chunks is not None:
        rows.append(("compression", "not available on the Apache edition"))
    if status.chunks is not None:
        rows.append(("newest frame", _moment(status.newest_frame)))
    for rollup in status.rollups:
        rows_text = "unknown" if rollup.rows_estimate is None else f"{rollup.rows_estimate:,}"
        lag = "-" if rollup.lag_seconds is None else _duration(rollup.lag_seconds)
        rows.append(
            (
                f"rollup {rollup.level}",
                f"{rows_text} rows, newest bucket {_moment(rollup.newest_bucket)}, "
                f"lag {lag}, kept {rollup.retention}",
            )
        )
    if status.rollups:
        rows.append(("raw retention", status.raw_retention or "-"))
    for job in status.jobs:
        state = job.last_run_status or "not run yet"
        when = _moment(job.last_run_started_at) if job.last_run_started_at else "-"
        text = (
            f"{job.name}{f' on {job.relation}' if job.relation else ''}, "
            f"every {_duration(job.schedule_interval_seconds)}: "
            f"last {state} at {when}, {job.total_failures} failure(s)"
        )
        if not job.scheduled:
            text += ", paused"
        if job.last_error and job.last_run_status == "Failed":
            text += f", error: {job.last_error}"
        rows.append((f"job {job.job_id}", text))
    if status.edition == "timescale" and status.rollups and (status.schema_version or 0) >= 11:
        rows.append(
            (
                "cameras counted",
                f"to {_moment(status.cameras_counted_before)}, the rest read from rollup 1m"
                if status.cameras_counted_before
                else "not yet (nothing materialised): read from rollup 1m",
            )
        )
    if status.rollups:
        run = status.last_maintenance
        if run is not None:
            text = (
                f"{_moment(run.finished_at)} by {run.runner}, dropped {run.dropped_chunks} chunk(s)"
            )
        elif status.edition == "timescale":
            text = "never (the retention policies above do it)"
        else:
            text = (
                "never: schedule `framemeta maintain` (cron, a timer), set a writer's "
                "maintenance_interval, or use pg_cron"
            )
        rows.append(("last maintain", text))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _moment(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g}{unit}"
    return f"{seconds:.3g}s"


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


@attrs.frozen
class StatementStats:
    """One of framemeta's statements as pg_stat_statements saw it (times in ms)."""

    query: str
    calls: int
    mean_ms: float
    max_ms: float
    stddev_ms: float
    rows: int
    hit_ratio: float | None
    """Shared buffers found in memory, of those the statement touched."""
    kind: str
    """``query`` (a read: the Query API, dashboards, `framemeta status`),
    ``write`` (inserts,
    the erase's deletes, the staging table's COPY of a retried batch;
    TimescaleDB runs COPY into the hypertable itself, unseen by
    pg_stat_statements) or
    ``maintenance`` (retention, refreshes, rebuilds, compression, migrations'
    calls): the 10 ms bar is for queries."""
    slow: bool
    """A query whose mean is at or above the threshold asked for. Writes
    and maintenance are shown, never flagged: a COPY of a 5,000-frame
    batch or a day's retention takes longer by design."""


# Statements that touch framemeta's relations or functions (the Query API's
# all do: `framemeta.query._GUARD` names its answer framemeta_answer);
# DDL and EXPLAIN are left out (migrations and people, not the application).
_FRAMEMETA_STATEMENTS: Final = re.compile(
    r"frame_metadata|frame_stats_1[mhd]|frame_cameras|framemeta_"
)
_NOT_APPLICATION: Final = re.compile(
    r"^(explain|create|alter|drop|grant|revoke|comment|do|analyze|vacuum|lock|set|reset"
    r"|begin|commit|rollback|savepoint|release|prepare|deallocate)\b",
    re.IGNORECASE,
)
# pg_stat_statements keeps the comments before a statement (a migration's
# file starts with its own): they are skipped before the statement is told.
_LEADING_COMMENTS: Final = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.DOTALL)
_HIDDEN: Final = "<insufficient privilege>"


_WRITE: Final = re.compile(
    r"^(copy|insert|update|delete|merge|with\b.*\b(insert|update|delete))\b",
    re.IGNORECASE | re.DOTALL,
)
_MAINTENANCE: Final = re.compile(
    r"^call\b|\b(framemeta_(apply_retention|rebuild_rollup|recount_cameras"
    r"|sync_retention_policies)"
    r"|refresh_continuous_aggregate|compress_chunk|"
    r"decompress_chunk|drop_chunks|add_\w+_policy|remove_\w+_policy|alter_job|run_job)\s*\(",
    re.IGNORECASE,
)


def _statement_text(query: str) -> str:
    """The statement without the comments before it, on one line."""
    return " ".join(_LEADING_COMMENTS.sub("", query, count=1).split())


def statement_kind(query: str) -> str:
    """``query``, ``write`` or ``maintenance`` (`StatementStats.kind`)."""
    text = _statement_text(query)
    if _MAINTENANCE.search(text):
        return "maintenance"
    if _WRITE.search(text):
        return "write"
    return "query"


@attrs.frozen
class StatementReport:
    """What ``framemeta queries`` prints: framemeta's statements, slowest
    mean first, and how many statements of other roles pg_stat_statements
    hid from this one."""

    statements: list[StatementStats]
    """At most the ``limit`` asked for."""
    slow: int
    """Queries at or above the threshold, among all of them (not only the
    ones shown)."""
    hidden: int
    """Statements of other roles this role may not read (it lacks
    pg_read_all_stats): a check that cannot see them cannot pass."""


def statement_report(
    conn: psycopg.Connection[Any], *, threshold_ms: float = 10.0, limit: int = 50
) -> StatementReport:
    """framemeta's statements in this database from pg_stat_statements,
    slowest mean first, each with its kind (`statement_kind`); queries
    (reads) are flagged when their mean is at least ``threshold_ms``. The
    rows of one statement (one per role, and per top-level or nested
    call) are added up into one. Creates the extension when the server
    preloads it and the role may; raises `DatabaseError` with the fix
    otherwise."""
    _ensure_pg_stat_statements(conn)
    try:
        rows = conn.execute(
            """
            SELECT query, calls, total_exec_time, max_exec_time, stddev_exec_time,
                   mean_exec_time, rows, shared_blks_hit, shared_blks_read
              FROM pg_stat_statements
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            """
        ).fetchall()
    except psycopg.errors.ObjectNotInPrerequisiteState as exc:
        raise DatabaseError(_NOT_LOADED, exc.sqlstate) from exc
    hidden = sum(1 for row in rows if row[0] == _HIDDEN)
    grouped: dict[str, list[tuple[Any, ...]]] = {}
    for query, *numbers in rows:
        text = _statement_text(str(query))
        # Told by the whole text: `_MARK` is a comment before the statement.
        mine = query != _HIDDEN and _FRAMEMETA_STATEMENTS.search(str(query))
        if mine and not _NOT_APPLICATION.match(text):
            grouped.setdefault(text, []).append(tuple(numbers))
    statements = [_added_up(text, parts, threshold_ms) for text, parts in grouped.items()]
    statements.sort(key=lambda stat: stat.mean_ms, reverse=True)
    return StatementReport(statements[:limit], sum(stat.slow for stat in statements), hidden)


def _added_up(text: str, parts: list[tuple[Any, ...]], threshold_ms: float) -> StatementStats:
    """One statement's rows in pg_stat_statements as one: calls and rows
    added, the mean over every call, the largest maximum, the standard
    deviation of all the calls together."""
    calls = sum(int(part[0]) for part in parts)
    total = sum(float(part[1]) for part in parts)
    mean = total / calls if calls else 0.0
    # Pooled: each part's variance and how far its mean lies from the whole's.
    spread = sum(
        int(part[0]) * (float(part[3]) ** 2 + (float(part[4]) - mean) ** 2) for part in parts
    )
    hits = sum(int(part[6]) for part in parts)
    touched = hits + sum(int(part[7]) for part in parts)
    kind = statement_kind(text)
    return StatementStats(
        query=text,
        calls=calls,
        mean_ms=mean,
        max_ms=max(float(part[2]) for part in parts),
        stddev_ms=math.sqrt(spread / calls) if calls else 0.0,
        rows=sum(int(part[5]) for part in parts),
        hit_ratio=hits / touched if touched else None,
        kind=kind,
        slow=kind == "query" and mean >= threshold_ms,
    )


_NOT_LOADED: Final = (
    "pg_stat_statements is not loaded: add it to shared_preload_libraries in "
    "postgresql.conf, restart the server, then run this again"
)


def _ensure_pg_stat_statements(conn: psycopg.Connection[Any]) -> None:
    installed = conn.execute(
        "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_stat_statements')"
    ).fetchone()
    if installed == (True,):
        return
    preload = _preload_libraries(conn)  # None: this role may not tell
    if preload is not None and "pg_stat_statements" not in preload:
        raise DatabaseError(_NOT_LOADED)
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    except psycopg.errors.InsufficientPrivilege as exc:
        raise DatabaseError(
            "pg_stat_statements is not created in this database: ask a DBA to load it "
            "(shared_preload_libraries) if it is not, and to run CREATE EXTENSION "
            "pg_stat_statements",
            exc.sqlstate,
        ) from exc


def format_statements(report: StatementReport, threshold_ms: float) -> str:
    """The table ``framemeta queries`` prints."""
    statements = report.statements
    if not statements:
        return "no framemeta statements recorded in this database yet"
    lines = [
        f"{'mean ms':>9} {'max ms':>9} {'stddev':>8} {'calls':>8} {'rows':>9} {'hit %':>6}"
        f"  {'kind':<11}  statement"
    ]
    for stat in statements:
        hit = "-" if stat.hit_ratio is None else f"{100 * stat.hit_ratio:.1f}"
        flag = "SLOW " if stat.slow else ""
        text = stat.query if len(stat.query) <= 100 else stat.query[:97] + "..."
        lines.append(
            f"{stat.mean_ms:>9.2f} {stat.max_ms:>9.2f} {stat.stddev_ms:>8.2f} {stat.calls:>8,} "
            f"{stat.rows:>9,} {hit:>6}  {stat.kind:<11}  {flag}{text}"
        )
    slow = report.slow
    lines.append(
        f"{slow} quer{'y' if slow == 1 else 'ies'} with a mean of {threshold_ms:g} ms or more"
        " (writes and maintenance are not flagged)"
    )
    return "\n".join(lines)
