"""What a plan says is pending on the community edition: the stretches
TimescaleDB's invalidation logs hold for the rollups, kept where the level
below still has data, widened to each level's buckets, below each level's
watermark, and passed up to the levels computed from it
(`framemeta.query._pending`), and the parts of a plan that read them
(`framemeta.query._pending_parts`). The server's side is tested against a
community server in tests/db/test_community.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from framemeta.query import (
    PlanPart,
    StatsPlan,
    TimeRange,
    _Coverage,
    _pending,
    _pending_parts,
)

DAY = datetime(2026, 12, 4, tzinfo=UTC)
KEPT = {"raw": DAY, "1m": DAY - timedelta(days=1), "1h": DAY - timedelta(days=1), "1d": DAY}
MARKS = {
    "1m": DAY + timedelta(hours=18, minutes=16),
    "1h": DAY + timedelta(hours=17),
    "1d": DAY,
}
MINUTE = timedelta(minutes=1)
# `_PENDING` clamps the logs' extremes to these, in whole minutes.
BEGINNING = datetime(1, 1, 2, tzinfo=UTC)
END = datetime(9999, 12, 30, 23, 59, tzinfo=UTC)


def at(hours: float) -> datetime:
    return DAY + timedelta(hours=hours)


def test_a_late_frame_is_pending_in_its_minute_and_in_every_level_above() -> None:
    late = at(9.5)
    pending = _pending([("frame_stats_1m", late, late + MINUTE)], KEPT, MARKS)
    assert pending == {
        "1m": (TimeRange(at(9.5), at(9.5) + MINUTE),),
        "1h": (TimeRange(at(9), at(10)),),
        # Past the daily watermark: computed from the hourly level when
        # read, so it misses the frame as that level does.
        "1d": (TimeRange(DAY, DAY + timedelta(days=1)),),
    }


def test_what_the_level_below_no_longer_keeps_is_not_pending() -> None:
    # A never-refreshed past, and the range retention dropped from raw
    # (logged up to and including the start of the oldest chunk kept,
    # so its first minute stays pending until a refresh covers it).
    rows = [
        ("frame_stats_1m", BEGINNING, DAY - timedelta(days=3)),
        ("frame_stats_1m", DAY - timedelta(days=1), DAY + MINUTE),
        ("frame_stats_1h", BEGINNING, DAY - timedelta(days=1)),
    ]
    pending = _pending(rows, KEPT, MARKS)
    assert pending["1m"] == (TimeRange(DAY, DAY + MINUTE),)
    assert pending["1h"] == (TimeRange(DAY, at(1)),)


def test_stretches_are_merged_and_end_at_the_watermark() -> None:
    rows = [
        ("frame_stats_1h", at(2.2), at(2.4)),
        ("frame_stats_1h", at(3), at(4.5)),
        ("frame_stats_1h", at(16.5), END),  # not materialised yet
        ("frame_stats_1m", at(5), at(5) + MINUTE),
    ]
    pending = _pending(rows, KEPT, MARKS)
    assert pending["1h"] == (TimeRange(at(2), at(6)), TimeRange(at(16), at(17)))
    assert pending["1m"] == (TimeRange(at(5), at(5) + MINUTE),)


def test_frames_past_a_finer_watermark_are_pending_where_a_coarser_level_is_materialised() -> None:
    # After a silence the 1-minute level is materialised to the last frame
    # (12:30), the hourly one to the end of that hour: frames replayed into
    # 12:30-13:00 are logged for the 1-minute level only, which computes
    # them in real time, but the hourly bucket stored misses them.
    marks = {"1m": at(12.5), "1h": at(13), "1d": DAY}
    rows = [("frame_stats_1m", at(12.5), at(14))]
    pending = _pending(rows, KEPT, marks)
    assert pending["1m"] == ()
    assert pending["1h"] == (TimeRange(at(12), at(13)),)
    # Materialised to the day's start: computed from the hourly level when
    # read, so it misses them as that level does.
    assert pending["1d"] == (TimeRange(DAY, DAY + timedelta(days=1)),)


def test_a_level_never_refreshed_has_nothing_of_its_own_pending() -> None:
    pending = _pending([("frame_stats_1d", BEGINNING, END)], KEPT, {"1m": None})
    assert pending == {"1m": (), "1h": (), "1d": ()}


def test_the_last_day_a_datetime_holds_does_not_overflow() -> None:
    end = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)  # as if the clamp were not there
    marks = {"1m": end, "1h": end.replace(minute=0), "1d": DAY}
    pending = _pending([("frame_stats_1m", end - MINUTE, end)], KEPT, marks)
    last = datetime.max.replace(tzinfo=UTC)
    assert pending["1m"] == (TimeRange(end - MINUTE, end),)
    assert pending["1h"] == (TimeRange(end.replace(minute=0), last),)
    assert pending["1d"] == (TimeRange(end.replace(hour=0, minute=0), last),)


def _coverage(pending: dict[str, tuple[TimeRange, ...]]) -> _Coverage:
    kept = {"raw": DAY, "1m": DAY, "1h": DAY, "1d": DAY}
    return _Coverage(kept, {}, "timescale", 0.5, frozenset(), frozenset(), {}, 0.0, pending=pending)


def test_a_plan_lists_the_buckets_its_rollup_parts_read_where_they_are_pending() -> None:
    coverage = _coverage(
        {
            "1m": (TimeRange(at(1), at(1) + MINUTE),),
            "1h": (TimeRange(at(1), at(2)), TimeRange(at(3), at(4)), TimeRange(at(20), at(21))),
        }
    )
    parts = [PlanPart("raw", at(12), at(24)), PlanPart("1h", at(0), at(12))]
    # Buckets of two hours: 00-02 and 02-04, touching, in one stretch.
    assert _pending_parts(parts, timedelta(hours=2), coverage) == (PlanPart("1h", at(0), at(4)),)
    assert _pending_parts(parts, timedelta(hours=1), coverage) == (
        PlanPart("1h", at(3), at(4)),
        PlanPart("1h", at(1), at(2)),
    )
    assert _pending_parts(parts, timedelta(hours=12), coverage) == (PlanPart("1h", at(0), at(12)),)
    assert _pending_parts([PlanPart("raw", at(0), at(24))], timedelta(hours=1), coverage) == ()


def test_a_plan_with_many_pending_stretches_reads_in_a_few_lines() -> None:
    stretches = tuple(TimeRange(at(h / 10), at(h / 10) + MINUTE) for h in range(0, 200, 2))
    plan = StatsPlan(
        DAY,
        at(24),
        MINUTE,
        "1m",
        (PlanPart("1m", DAY, at(24)),),
        (),
        ("resolution 1m was asked for",),
        (),
        _pending_parts([PlanPart("1m", DAY, at(24))], MINUTE, _coverage({"1m": stretches})),
    )
    text = str(plan)
    assert len(plan.pending) == 100
    assert len(text.splitlines()) < 10, text
    assert "100 stretches" in text
