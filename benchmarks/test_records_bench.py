"""Constructing one validated FrameRecord, beside an unvalidated attrs class
with the same fields (the floor: what attrs itself costs) in the same run;
each validated benchmark also times one call of the floor before each of
its own calls, for the regression gate.

Target: a typical record (size, scores, one detection, small metadata) in
<= 3 us on the 2-core reference machine; the report prints the ratio to the
floor so that machines of different speed can be compared.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.gate import Reference
from framemeta import BoundingBox, Detection, FrameRecord

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ROUNDS = 50_000
METADATA = {"codec": "h264", "keyframe": False, "zone": "north-gate", "exposure_ms": 8.3}
DETECTIONS = (Detection("person", 0.91, BoundingBox(100.0, 200.0, 80.0, 160.0)),)


@attrs.frozen(slots=True)
class UnvalidatedRecord:
    camera_id: str
    captured_at: datetime
    frame_number: int
    width: int | None = None
    height: int | None = None
    motion_score: float | None = None
    brightness: float | None = None
    detections: tuple[Any, ...] = ()
    metadata: dict[str, Any] = attrs.field(factory=dict)


TYPICAL: dict[str, Any] = {
    "width": 1920,
    "height": 1080,
    "motion_score": 0.31,
    "brightness": 0.52,
    "detections": DETECTIONS,
    "metadata": METADATA,
}


def _floor() -> UnvalidatedRecord:
    return UnvalidatedRecord("cam-01", NOW, 123_456, **TYPICAL)


def _beside_the_floor(benchmark: BenchmarkFixture, make: Callable[[], object]) -> object:
    """Time ``make`` call by call, each call after one timed call of the
    floor: this machine's speed swings within seconds, and the regression
    gate judges ``make`` by how it moved relative to the floor measured
    alongside (benchmarks/gate.py)."""
    floor = Reference(_floor)
    warmup = ROUNDS // 10
    result = benchmark.pedantic(  # type: ignore[no-untyped-call]
        make, setup=floor, rounds=ROUNDS, iterations=1, warmup_rounds=warmup
    )
    floor.record(benchmark, skip=warmup)
    return result


@pytest.mark.benchmark(group="record")
def test_bench_record_floor_unvalidated_attrs(benchmark: BenchmarkFixture) -> None:
    benchmark(_floor)


@pytest.mark.benchmark(group="record")
def test_bench_record_typical_validated(benchmark: BenchmarkFixture) -> None:
    record = _beside_the_floor(benchmark, lambda: FrameRecord("cam-01", NOW, 123_456, **TYPICAL))
    assert isinstance(record, FrameRecord)
    assert record.metadata_json is not None


@pytest.mark.benchmark(group="record")
def test_bench_record_minimal_validated(benchmark: BenchmarkFixture) -> None:
    _beside_the_floor(benchmark, lambda: FrameRecord("cam-01", NOW, 1))


@pytest.mark.benchmark(group="record")
def test_bench_detection_with_box(benchmark: BenchmarkFixture) -> None:
    _beside_the_floor(
        benchmark, lambda: Detection("person", 0.91, BoundingBox(100.0, 200.0, 80.0, 160.0))
    )
