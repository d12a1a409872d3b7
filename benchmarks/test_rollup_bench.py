"""What the Apache edition's rollup trigger costs ingest: the same
pre-encoded batches COPYed with the trigger enabled and disabled, side by
side in one run. Target: with rollups >= 0.85x of without."""

from __future__ import annotations

import psycopg
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.test_ingest_bench import ROUNDS, _empty_table, encoded_batches, records  # noqa: F401
from framemeta._copy import EncodedBatch, copy_batch


def _load(dsn: str, batches: list[EncodedBatch]) -> None:
    with psycopg.connect(dsn) as conn:
        for batch in batches:
            copy_batch(conn, batch)


def _prepared(
    dsn: str, batches: list[EncodedBatch], *, trigger: bool
) -> tuple[tuple[object, ...], dict[str, object]]:
    _empty_table(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE frame_stats_1m, frame_stats_1h, frame_stats_1d")
        action = "ENABLE" if trigger else "DISABLE"
        conn.execute(f"ALTER TABLE frame_metadata {action} TRIGGER framemeta_rollup_inserted")
    return (dsn, batches), {}


@pytest.mark.parametrize("trigger", [False, True], ids=["without-rollups", "with-rollups"])
@pytest.mark.benchmark(group="rollup-cost")
def test_bench_copy_with_and_without_the_rollup_trigger(
    benchmark: BenchmarkFixture, bench_db: str, encoded_batches: list[EncodedBatch], trigger: bool
) -> None:
    benchmark.pedantic(  # type: ignore[no-untyped-call]
        _load,
        setup=lambda: _prepared(bench_db, encoded_batches, trigger=trigger),
        rounds=ROUNDS,
        iterations=1,
    )
    with psycopg.connect(bench_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE frame_metadata ENABLE TRIGGER framemeta_rollup_inserted")
