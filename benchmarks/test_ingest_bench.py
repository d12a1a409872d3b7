"""Ingest, side by side in one run on one server, same table and indexes:

(a) the server-side ceiling: ``COPY frame_metadata FROM '<file>' (FORMAT binary)``
    run by the server from a file holding the same rows;
(b) asyncpg ``copy_records_to_table`` in batches of 10,000;
(c) psycopg ``executemany`` in batches of 1,000 (the old baseline);
(d) `MetadataWriter` end to end, from the first ``write()`` to committed.

Each round starts from an empty table after a CHECKPOINT. The summary prints
rows/s and the ratios d/a, d/b, d/c; targets: d >= 0.8 x a, d >= 1.0 x b.
``FRAMEMETA_BENCH_ROWS`` (default 1,000,000) and ``FRAMEMETA_BENCH_ROUNDS``
(default 3) shrink a run for a quick look.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.conftest import INGEST_RESULTS
from benchmarks.frames import ROUNDS, ROWS, empty_table
from framemeta import FrameRecord, MetadataWriter
from framemeta._copy import (
    COLUMNS,
    EncodedBatch,
    copy_batch,
    insert_idempotent,
)

WARMUP_LOADS = 2
EXECUTEMANY_ROWS = min(ROWS, 50_000)
COPY_FILE = "framemeta-bench-ingest.copy"  # in the server's data directory

_COLUMN_LIST = ", ".join(COLUMNS)
_INSERT = f"INSERT INTO frame_metadata ({_COLUMN_LIST}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"


def _row(record: FrameRecord, metadata: Any) -> tuple[Any, ...]:
    detections = record.detections
    return (
        record.captured_at,
        record.frame_number,
        record.width,
        record.height,
        record.motion_score,
        record.brightness,
        len(detections),
        record.camera_id,
        [d.label for d in detections] if detections else None,
        [d.confidence for d in detections] if detections else None,
        [[b.x, b.y, b.width, b.height] for d in detections if (b := d.box)] if detections else None,
        metadata,
    )


@pytest.fixture(scope="module")
def copy_file(bench_db: str, records: list[FrameRecord]) -> Iterator[str]:
    """A binary COPY file of the same rows, written by the server.

    The table is loaded twice first: a young cluster creates its WAL files
    on the first loads (slow), later ones recycle them, so every measured
    round runs in the same, steady state.
    """
    for _ in range(WARMUP_LOADS):
        empty_table(bench_db)
        with MetadataWriter(bench_db) as writer:
            writer.write_many(records)
    with psycopg.connect(bench_db, autocommit=True) as conn:
        row = conn.execute("SELECT current_setting('data_directory')").fetchone()
        assert row is not None
        path = f"{row[0]}/{COPY_FILE}".replace("'", "''")
        conn.execute(
            f"COPY (SELECT {_COLUMN_LIST} FROM frame_metadata ORDER BY captured_at, camera_id)"
            f" TO '{path}' (FORMAT binary)"
        )
        conn.execute("TRUNCATE frame_metadata")
    yield path
    with psycopg.connect(bench_db, autocommit=True) as conn:
        # No SQL removes a server file: leave an empty one behind.
        conn.execute(f"COPY (SELECT 1 WHERE false) TO '{path}'")


def _measure(
    benchmark: BenchmarkFixture,
    name: str,
    dsn: str,
    run: Callable[[], None],
    rounds: int = ROUNDS,
    rows: int = ROWS,
) -> None:
    benchmark.pedantic(run, setup=lambda: empty_table(dsn), rounds=rounds, iterations=1)  # type: ignore[no-untyped-call]
    with psycopg.connect(dsn) as conn:
        stored = conn.execute("SELECT count(*) FROM frame_metadata").fetchone()
    assert stored == (rows,), f"{name} stored {stored} rows, expected {rows}"
    if benchmark.stats is not None:
        rate = rows / benchmark.stats.stats.median
        INGEST_RESULTS[name] = rate
        benchmark.extra_info["rows_per_s"] = round(rate)


@pytest.mark.benchmark(group="ingest")
def test_bench_ingest_a_server_side_copy_from_file(
    benchmark: BenchmarkFixture, bench_db: str, copy_file: str
) -> None:
    def run() -> None:
        with psycopg.connect(bench_db, autocommit=True) as conn:
            conn.execute(f"COPY frame_metadata ({_COLUMN_LIST}) FROM '{copy_file}' (FORMAT binary)")

    _measure(benchmark, "a_server_copy_from_file", bench_db, run)


@pytest.mark.benchmark(group="ingest")
def test_bench_ingest_b_asyncpg_copy_records(
    benchmark: BenchmarkFixture, bench_db: str, records: list[FrameRecord]
) -> None:
    asyncpg = pytest.importorskip("asyncpg")
    rows = [_row(record, (record.metadata_json or b"").decode() or None) for record in records]
    params = conninfo_to_dict(bench_db)
    connect = {
        "host": params.get("host"),
        "port": int(params.get("port") or 5432),
        "user": params.get("user"),
        "password": params.get("password"),
        "database": params.get("dbname"),
    }

    async def copy_all() -> None:
        conn = await asyncpg.connect(**connect)
        try:
            for start in range(0, len(rows), 10_000):
                await conn.copy_records_to_table(
                    "frame_metadata", records=rows[start : start + 10_000], columns=COLUMNS
                )
        finally:
            await conn.close()

    _measure(benchmark, "b_asyncpg_copy_records", bench_db, lambda: asyncio.run(copy_all()))


@pytest.mark.benchmark(group="ingest")
def test_bench_ingest_c_psycopg_executemany(
    benchmark: BenchmarkFixture, bench_db: str, records: list[FrameRecord]
) -> None:
    # Every INSERT statement fires the rollup trigger once (Apache edition),
    # about a millisecond each: a million rows would take half an hour, so
    # this path is measured on the first EXECUTEMANY_ROWS and reported in rows/s.
    rows = [
        _row(record, Jsonb(record.metadata) if record.metadata else None)
        for record in records[:EXECUTEMANY_ROWS]
    ]

    def run() -> None:
        with psycopg.connect(bench_db) as conn:
            for start in range(0, len(rows), 1_000):
                with conn.transaction(), conn.cursor() as cursor:
                    cursor.executemany(_INSERT, rows[start : start + 1_000])

    # The slowest path by far: one round is enough to place it.
    _measure(benchmark, "c_psycopg_executemany_1000", bench_db, run, rounds=1, rows=len(rows))


class _PeakRss:
    """Samples this process's resident memory every 10 ms in a thread."""

    def __init__(self) -> None:
        self.baseline = self._rss()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


@pytest.mark.benchmark(group="ingest")
def test_bench_ingest_d_metadata_writer(
    benchmark: BenchmarkFixture, bench_db: str, records: list[FrameRecord]
) -> None:
    growth: list[int] = []

    def run() -> None:
        with _PeakRss() as rss, MetadataWriter(bench_db) as writer:
            write = writer.write
            for record in records:
                write(record)
            writer.flush()
        growth.append(rss.growth)

    _measure(benchmark, "d_writer", bench_db, run)
    # The queue is bounded by queue_bytes (128 MiB): the writer's memory,
    # with the batch in flight and the connection's buffers, stays below it
    # plus a margin, whatever the number of records written.
    peak = max(growth)
    benchmark.extra_info["peak_rss_growth_mib"] = round(peak / 2**20, 1)
    assert peak < 192 * 2**20, f"the writer grew RSS by {peak / 2**20:.0f} MiB"
    # The ratios to (a) and (b) are targets, reported in the summary and
    # stored with the run; the gate is the comparison with the baseline
    # (the ceiling itself moves by 30 % between runs on a shared machine).
    ours = INGEST_RESULTS["d_writer"]
    for name, key in (
        ("a_server_copy_from_file", "d_over_a"),
        ("b_asyncpg_copy_records", "d_over_b"),
    ):
        if name in INGEST_RESULTS:
            benchmark.extra_info[key] = round(ours / INGEST_RESULTS[name], 3)


@pytest.mark.benchmark(group="write-latency")
def test_bench_write_latency_while_the_flusher_runs(
    benchmark: BenchmarkFixture, bench_db: str, records: list[FrameRecord]
) -> None:
    """Every write() timed while the flusher ships flat out; the queue holds
    the whole run so that no call waits for room (that would be overflow, not
    latency). Targets: p50 <= 2 us, p99.9 <= 1 ms."""
    latencies = np.zeros(len(records), dtype=np.int64)

    def run() -> None:
        clock = time.perf_counter_ns
        with MetadataWriter(bench_db, queue_records=len(records) + 1, queue_bytes=2**31) as writer:
            write = writer.write
            for index, record in enumerate(records):
                started = clock()
                write(record)
                latencies[index] = clock() - started
            writer.flush()

    benchmark.pedantic(run, setup=lambda: empty_table(bench_db), rounds=1, iterations=1)  # type: ignore[no-untyped-call]
    p50, p99, p999 = np.percentile(latencies, [50, 99, 99.9]) / 1000
    benchmark.extra_info.update(
        {
            "write_p50_us": round(p50, 2),
            "write_p99_us": round(p99, 2),
            "write_p999_us": round(p999, 1),
        }
    )
    print(f"\nwrite(): p50 {p50:.2f} us, p99 {p99:.2f} us, p99.9 {p999:.1f} us")
    assert p50 <= 2.0
    assert p999 <= 1000.0


def _prepared(
    dsn: str, batches: list[EncodedBatch], *, idempotent: bool
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    empty_table(dsn)
    return (dsn, batches, idempotent), {}


def _ship(dsn: str, batches: list[EncodedBatch], idempotent: bool) -> None:
    with psycopg.connect(dsn) as conn:
        for batch in batches:
            if idempotent:
                insert_idempotent(conn, batch)
            else:
                copy_batch(conn, batch)


@pytest.mark.benchmark(group="copy-paths")
def test_bench_path_fast_copy_into_the_hypertable(
    benchmark: BenchmarkFixture, bench_db: str, encoded_batches: list[EncodedBatch]
) -> None:
    """The path of every fresh batch: COPY straight into frame_metadata."""
    benchmark.pedantic(  # type: ignore[no-untyped-call]
        _ship,
        setup=lambda: _prepared(bench_db, encoded_batches, idempotent=False),
        rounds=ROUNDS,
        iterations=1,
    )


@pytest.mark.benchmark(group="copy-paths")
def test_bench_path_idempotent_staging_insert(
    benchmark: BenchmarkFixture, bench_db: str, encoded_batches: list[EncodedBatch]
) -> None:
    """The path of retried and spooled batches: COPY into a temporary
    staging table, then INSERT ... ON CONFLICT DO NOTHING."""
    benchmark.pedantic(  # type: ignore[no-untyped-call]
        _ship,
        setup=lambda: _prepared(bench_db, encoded_batches, idempotent=True),
        rounds=ROUNDS,
        iterations=1,
    )
