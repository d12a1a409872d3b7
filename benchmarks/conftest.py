"""Benchmark fixtures: a server with production-like settings (fsync on,
unlike the test server) and the ingest results collected for the ratios."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest

from benchmarks.frames import ROWS, synthetic_frames
from framemeta import FrameRecord, migrate
from framemeta._copy import EncodedBatch, encode_batch
from framemeta.embedded import EmbeddedServer
from tests.conftest import TEST_DSN_ENV, scratch_database

INGEST_RESULTS: dict[str, float] = {}
"""rows/s of each ingest path measured in this run, by path name."""
TARGETS = {"a_server_copy_from_file": 0.8, "b_asyncpg_copy_records": 1.0}
"""The writer's throughput targets, as ratios to the other paths."""


@pytest.fixture(scope="session")
def bench_admin_dsn() -> Iterator[str]:
    """Superuser conninfo: a durable embedded server, or ``FRAMEMETA_TEST_DSN``."""
    external = os.environ.get(TEST_DSN_ENV)
    if external:
        yield external
        return
    with EmbeddedServer() as server:
        yield server.dsn


@pytest.fixture(scope="module")
def bench_db(bench_admin_dsn: str) -> Iterator[str]:
    """A migrated database of its own for one benchmark module."""
    with scratch_database(bench_admin_dsn, "bench") as dsn:
        migrate(dsn)
        yield dsn


@pytest.fixture(scope="session")
def records() -> list[FrameRecord]:
    """`ROWS` synthetic frames of 12 cameras, built once per run."""
    dataset = synthetic_frames(ROWS)
    # A live processor's records are short-lived; a million kept for the
    # whole run would make the cyclic GC walk them again and again.
    gc.freeze()
    return dataset


PATH_ROWS = min(ROWS, 200_000)


@pytest.fixture(scope="session")
def encoded_batches(records: list[FrameRecord]) -> list[EncodedBatch]:
    """The first `PATH_ROWS` records, encoded in batches of 10,000."""
    return [
        encode_batch(records[start : start + 10_000], yield_gil=False)
        for start in range(0, PATH_ROWS, 10_000)
    ]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from benchmarks.test_query_bench import pytest_terminal_summary_lines

    query_lines = pytest_terminal_summary_lines()
    if query_lines:
        terminalreporter.section("queries: a week of 12 cameras, warm pool")
        for line in query_lines:
            terminalreporter.line(line)
    if not INGEST_RESULTS:
        return
    writer = terminalreporter
    writer.section("ingest: rows/s and ratios (same run, same server)")
    for name, rate in INGEST_RESULTS.items():
        writer.line(f"{name:<40} {rate:>10,.0f} rows/s")
    ours = INGEST_RESULTS.get("d_writer")
    if ours:
        for name, rate in INGEST_RESULTS.items():
            if name != "d_writer":
                target = TARGETS.get(name)
                verdict = (
                    ""
                    if target is None
                    else (
                        f"  target >= {target:.1f}x: {'met' if ours >= target * rate else 'MISSED'}"
                    )
                )
                writer.line(f"d_writer / {name:<29} {ours / rate:>10.2f}x{verdict}")
