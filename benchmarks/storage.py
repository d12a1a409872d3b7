"""Storage per frame, measured: ``python -m benchmarks.storage`` (or ``nox -s
storage``) writes DAYS days of synthetic frames (12 cameras at 1 frame/s, the
benchmarks' realistic data) into a scratch database, then reports bytes per
raw row and per rollup row (heap, TOAST and indexes), and on the community
edition compresses the raw chunks and reports the ratio from
``hypertable_compression_stats``. The figures of docs/capacity-planning.md
come from it.

The server: ``--dsn`` (a role that may create databases), else
``FRAMEMETA_TEST_DSN``, else a temporary embedded server (Apache edition,
fsync on).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from benchmarks.frames import CAMERAS, synthetic_frames
from framemeta import MetadataWriter, migrate
from framemeta.embedded import EmbeddedServer
from framemeta.maintenance import LEVELS, maintain
from tests.conftest import TEST_DSN_ENV, pause_policies, scratch_database
from tests.frames import refresh_rollups

_STORAGE = {
    "raw": "frame_metadata",
    "1m": "frame_stats_1m",
    "1h": "frame_stats_1h",
    "1d": "frame_stats_1d",
}


@contextmanager
def _server(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    with EmbeddedServer() as server:
        yield server.dsn


def _write_days(dsn: str, days: int, end: datetime) -> tuple[int, float]:
    """``days`` days of frames ending at ``end``, an hour of frames at a time
    (a day of records at once would need gigabytes); returns rows, seconds."""
    hours = days * 24
    rows = 0
    started = time.perf_counter()
    with MetadataWriter(dsn, max_age=None) as writer:
        for hour in range(hours):
            batch = synthetic_frames(
                CAMERAS * 3600, end=end - timedelta(hours=hours - hour - 1), seed=hour
            )
            writer.write_many(batch)
            rows += len(batch)
    return rows, time.perf_counter() - started


def _level_storage(conn: psycopg.Connection[Any], level: str) -> dict[str, int]:
    """Rows and bytes (heap, TOAST, indexes) of one level's hypertable."""
    relation = _STORAGE[level]
    row = conn.execute(
        "SELECT format('%%I.%%I', materialization_hypertable_schema,"
        "              materialization_hypertable_name)"
        "  FROM timescaledb_information.continuous_aggregates WHERE view_name = %s",
        (relation,),
    ).fetchone()
    storage = row[0] if row else relation
    rows_row = conn.execute(f"SELECT count(*) FROM {storage}").fetchone()
    size = conn.execute(
        "SELECT coalesce(sum(table_bytes), 0), coalesce(sum(toast_bytes), 0),"
        "       coalesce(sum(index_bytes), 0), coalesce(sum(total_bytes), 0)"
        "  FROM hypertable_detailed_size(%s::regclass)",
        (storage,),
    ).fetchone()
    assert rows_row is not None
    assert size is not None
    heap, toast, index, total = (int(value) for value in size)
    return {"rows": int(rows_row[0]), "heap": heap, "toast": toast, "index": index, "total": total}


def measure(dsn: str, days: int) -> dict[str, Any]:
    """Write, analyse, measure, compress where the edition can; the report."""
    # Whole chunks that ended more than compress_after (1 day) ago.
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=1, microseconds=1
    )
    with scratch_database(dsn, "storage") as db:
        migrate(db)
        with psycopg.connect(db, autocommit=True) as conn:
            pause_policies(conn)
            edition_row = conn.execute("SELECT framemeta_edition()").fetchone()
            versions = conn.execute(
                "SELECT current_setting('server_version'),"
                "       (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb')"
            ).fetchone()
        assert edition_row is not None
        assert versions is not None
        edition = str(edition_row[0])
        rows, write_seconds = _write_days(db, days, end)
        refresh_rollups(db)
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            report: dict[str, Any] = {
                "edition": edition,
                "postgresql": versions[0],
                "timescaledb": versions[1],
                "days": days,
                "cameras": CAMERAS,
                "rows": rows,
                "write_seconds": round(write_seconds, 1),
                "levels": {level: _level_storage(conn, level) for level in LEVELS},
            }
            if edition == "timescale":
                started = time.perf_counter()
                compressed = maintain(conn).compressed
                seconds = time.perf_counter() - started
                stats = conn.execute(
                    "SELECT sum(before_compression_table_bytes + before_compression_toast_bytes),"
                    "       sum(before_compression_index_bytes),"
                    "       sum(before_compression_total_bytes),"
                    "       sum(after_compression_table_bytes + after_compression_toast_bytes),"
                    "       sum(after_compression_index_bytes),"
                    "       sum(after_compression_total_bytes)"
                    "  FROM hypertable_compression_stats('frame_metadata')"
                ).fetchone()
                assert stats is not None
                before_data, before_index, before, after_data, after_index, after = (
                    int(value or 0) for value in stats
                )
                report["compression"] = {
                    "chunks": len(compressed),
                    "seconds": round(seconds, 1),
                    "before_total": before,
                    "after_total": after,
                    "ratio_total": round(before / after, 1) if after else None,
                    "before_heap_toast": before_data,
                    "after_heap_toast": after_data,
                    "ratio_heap_toast": round(before_data / after_data, 1) if after_data else None,
                    "before_index": before_index,
                    "after_index": after_index,
                }
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as the Markdown tables of docs/capacity-planning.md."""
    lines = [
        f"{report['edition']} edition, PostgreSQL {report['postgresql']}, "
        f"TimescaleDB {report['timescaledb']}: {report['days']} day(s), "
        f"{report['cameras']} cameras at 1 frame/s, {report['rows']:,} rows "
        f"written in {report['write_seconds']} s",
        "",
        "| level | rows | heap B/row | TOAST B/row | index B/row | total B/row |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for level, size in report["levels"].items():
        count = max(size["rows"], 1)
        lines.append(
            f"| {level} | {size['rows']:,} | {size['heap'] / count:.0f} | "
            f"{size['toast'] / count:.0f} | {size['index'] / count:.0f} | "
            f"{size['total'] / count:.0f} |"
        )
    compression = report.get("compression")
    if compression:
        rows = report["rows"]
        lines += [
            "",
            f"compression of {compression['chunks']} raw chunk(s) in {compression['seconds']} s:",
            f"total {compression['before_total'] / rows:.0f} -> "
            f"{compression['after_total'] / rows:.1f} B/row ({compression['ratio_total']}x); "
            f"heap+TOAST {compression['before_heap_toast'] / rows:.0f} -> "
            f"{compression['after_heap_toast'] / rows:.1f} B/row "
            f"({compression['ratio_heap_toast']}x); indexes "
            f"{compression['before_index'] / rows:.0f} -> "
            f"{compression['after_index'] / rows:.1f} B/row",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the measurement; prints Markdown (or ``--json``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.storage", description=__doc__)
    parser.add_argument("--dsn", default=os.environ.get(TEST_DSN_ENV))
    parser.add_argument("--days", type=int, default=2, help="days of frames to write (2)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    with _server(args.dsn) as dsn:
        report = measure(dsn, args.days)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
