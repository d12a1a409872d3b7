"""What the Apache edition's rollup trigger costs the writer: the same
200,000 records through `MetadataWriter` (batches of 10,000) with the
trigger in place and without it, side by side in one run; and the same for
pre-encoded batches COPYed bare, the server's share alone.
Target: the writer with rollups >= 0.85x the rows/s of without."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.frames import ROUNDS, empty_table
from framemeta import FrameRecord, MetadataWriter
from framemeta._copy import EncodedBatch, copy_batch

_TRIGGER = "framemeta_rollup_inserted"
_CREATE_TRIGGER = (
    f"CREATE TRIGGER {_TRIGGER} AFTER INSERT ON frame_metadata"
    " REFERENCING NEW TABLE AS framemeta_new_rows"
    f" FOR EACH STATEMENT EXECUTE FUNCTION {_TRIGGER}()"
)


def _copy_bare(dsn: str, batches: list[EncodedBatch]) -> None:
    with psycopg.connect(dsn) as conn:
        for batch in batches:
            copy_batch(conn, batch)


def _write(dsn: str, records: list[FrameRecord]) -> None:
    with MetadataWriter(dsn) as writer:
        write = writer.write
        for record in records:
            write(record)
        writer.flush()


def _prepared(dsn: str, load: Any, *, rollups: bool) -> tuple[tuple[Any, ...], dict[str, Any]]:
    empty_table(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE frame_stats_1m, frame_stats_1h, frame_stats_1d")
        # Hypertables cannot disable a trigger: drop it and put it back.
        conn.execute(f"DROP TRIGGER IF EXISTS {_TRIGGER} ON frame_metadata")
        if rollups:
            conn.execute(_CREATE_TRIGGER)
    return (dsn, load), {}


@pytest.mark.parametrize("rollups", [False, True], ids=["without-rollups", "with-rollups"])
@pytest.mark.parametrize("path", ["writer", "bare-copy"])
@pytest.mark.benchmark(group="rollup-cost")
def test_bench_ingest_with_and_without_the_rollup_trigger(
    benchmark: BenchmarkFixture,
    bench_db: str,
    records: list[FrameRecord],
    encoded_batches: list[EncodedBatch],
    rollups: bool,
    path: str,
) -> None:
    with psycopg.connect(bench_db) as conn:
        if conn.execute("SELECT framemeta_edition()").fetchone() == ("timescale",):
            pytest.skip("the community edition keeps rollups with continuous aggregates")
    run: Callable[[str, Any], None]
    load: list[Any]
    if path == "writer":
        run, load = _write, records[: len(encoded_batches) * 10_000]
    else:
        run, load = _copy_bare, encoded_batches
    try:
        benchmark.pedantic(  # type: ignore[no-untyped-call]
            run,
            setup=lambda: _prepared(bench_db, load, rollups=rollups),
            rounds=ROUNDS,
            iterations=1,
        )
    finally:
        with psycopg.connect(bench_db, autocommit=True) as conn:
            conn.execute(f"DROP TRIGGER IF EXISTS {_TRIGGER} ON frame_metadata")
            conn.execute(_CREATE_TRIGGER)
