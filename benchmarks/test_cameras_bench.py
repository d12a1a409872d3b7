"""`cameras()` with many cameras and a year of days: the per-camera rows of
migration 0011 against the sum of every daily row it replaced, timed in
the same run (``nox -s bench``).

The dataset is one frame per camera and day, 1,000 cameras over a year:
365,000 daily rows, what a deployment of 1,000 cameras keeps after a year
whatever its frame rate, and frames of the last 36 hours. The week's
dataset (12 cameras) is in test_query_bench.py.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from framemeta import FrameQuery
from tests.rollup_checks import CAMERAS_FROM_DAILY

CAMERAS: Final = 1000
DAYS: Final = 365
CALLS: Final = 200


@pytest.fixture(scope="module")
def many_cameras(bench_db: str) -> str:
    """``bench_db`` with one frame per camera and day for `DAYS` days up to
    yesterday and one every 10 minutes over the last 36 hours. On the
    community edition the aggregates are refreshed as far as their policies
    would have (1m to a minute ago, 1h to the last whole hour, 1d to
    yesterday) and the cameras recounted, so that `cameras()` also reads
    the 1-minute rows after its cut and the raw frames after the 1-minute
    watermark, as on a live database (migration 0013)."""
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with psycopg.connect(bench_db, autocommit=True) as conn:
        for first in range(0, DAYS, 30):  # a month a statement: a bounded transition table
            conn.execute(
                "INSERT INTO frame_metadata (camera_id, captured_at, frame_number)"
                " SELECT format('cam-%%s', c),"
                "        %s - d * interval '1 day' + c * interval '1 second', d"
                "   FROM generate_series(1, %s::int) AS c, generate_series(%s::int, %s::int) AS d",
                (today, CAMERAS, first + 1, min(first + 30, DAYS)),
            )
        conn.execute(
            "INSERT INTO frame_metadata (camera_id, captured_at, frame_number)"
            " SELECT format('cam-%%s', c), %s - m * interval '10 minutes', 1000 + m"
            "   FROM generate_series(1, %s::int) AS c, generate_series(1, 216) AS m",
            (now, CAMERAS),
        )
        if conn.execute("SELECT framemeta_edition()").fetchone() == ("timescale",):
            hour = now.replace(minute=0, second=0, microsecond=0)
            for relation, end in (
                ("frame_stats_1m", now - timedelta(minutes=1)),
                ("frame_stats_1h", hour - timedelta(hours=1)),
                ("frame_stats_1d", today - timedelta(days=1)),
            ):
                conn.execute(
                    "CALL refresh_continuous_aggregate(%s::regclass, NULL, %s)", (relation, end)
                )
        conn.execute("SELECT framemeta_recount_cameras()")
        conn.execute("VACUUM ANALYZE")
    return bench_db


def _timed(call: Callable[[], Any], calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return sorted(times)


@pytest.mark.benchmark(group="cameras")
def test_cameras_of_1000_cameras_over_a_year(
    benchmark: BenchmarkFixture, many_cameras: str
) -> None:
    """p50 / p99 of `FrameQuery.cameras` and of the sum it replaced,
    alternating in blocks of ten, from warm connections; the two answers
    must agree."""
    with FrameQuery(many_cameras) as query, psycopg.connect(many_cameras) as conn:
        old = [
            (camera, first, last, frames)
            for camera, first, last, frames in conn.execute(CAMERAS_FROM_DAILY).fetchall()
        ]
        new = [(c.camera_id, c.first_seen, c.last_seen, c.frames) for c in query.cameras()]
        assert new == old
        assert len(new) == CAMERAS

        def summed() -> None:
            conn.execute(CAMERAS_FROM_DAILY, prepare=True).fetchall()

        for _ in range(10):  # warm: psycopg prepares at the 6th execution
            query.cameras()
            summed()
        rng = random.Random(0)
        timings: dict[str, list[float]] = {"cameras": [], "sum of daily rows": []}
        for _ in range(CALLS // 10):
            pairs = [("cameras", query.cameras), ("sum of daily rows", summed)]
            rng.shuffle(pairs)
            for name, call in pairs:
                timings[name] += _timed(call, 10)
        benchmark.pedantic(query.cameras, rounds=CALLS, warmup_rounds=5)  # type: ignore[no-untyped-call]

    for name, times in timings.items():
        times.sort()
        p50, p99 = statistics.median(times), times[int(len(times) * 0.99) - 1]
        benchmark.extra_info[f"{name} p50 ms"] = round(p50, 3)
        benchmark.extra_info[f"{name} p99 ms"] = round(p99, 3)
    ratio = statistics.median(timings["cameras"]) / statistics.median(timings["sum of daily rows"])
    benchmark.extra_info["cameras / sum at p50"] = round(ratio, 3)
    print(
        f"\ncameras() of {CAMERAS} cameras x {DAYS} days: "
        + ", ".join(f"{k} {v}" for k, v in benchmark.extra_info.items())
    )
