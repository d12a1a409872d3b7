"""What a plan says is pending on the community edition: the stretches
TimescaleDB's invalidation logs hold below a rollup's watermark, kept where
the level below still has data, widened to the level's buckets, passed up
to the levels computed from it (`framemeta.query._pending`), and the parts
of a plan that read them (`framemeta.query._pending_parts`). The server's
side is tested against a community server in tests/db/test_community.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from framemeta.query import PlanPart, TimeRange, _Coverage, _pending, _pending_parts

DAY = datetime(2026, 12, 4, tzinfo=UTC)
KEPT = {"raw": DAY, "1m": DAY - timedelta(days=1), "1h": DAY - timedelta(days=1), "1d": DAY}
MARKS = {
    "1m": DAY + timedelta(hours=18, minutes=16),
    "1h": DAY + timedelta(hours=17),
    "1d": DAY,
}
BEGINNING, END = datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC)


def at(hours: float) -> datetime:
    return DAY + timedelta(hours=hours)


def test_a_late_frame_is_pending_in_its_minute_and_in_every_level_above() -> None:
    late = at(9.5) + timedelta(seconds=7, microseconds=3)
    pending = _pending([("frame_stats_1m", late, late)], KEPT, MARKS)
    assert pending == {
        "1m": (TimeRange(at(9.5), at(9.5) + timedelta(minutes=1)),),
        "1h": (TimeRange(at(9), at(10)),),
        # Past the daily watermark: computed from the hourly level when
        # read, so it misses the frame as that level does.
        "1d": (TimeRange(DAY, DAY + timedelta(days=1)),),
    }


def test_what_the_level_below_no_longer_keeps_is_not_pending() -> None:
    # A never-refreshed past, and the range retention dropped from raw
    # (logged up to and including the start of the oldest chunk kept).
    rows = [
        ("frame_stats_1m", BEGINNING, DAY - timedelta(days=3, microseconds=1)),
        ("frame_stats_1m", DAY - timedelta(days=1), DAY),
        ("frame_stats_1h", BEGINNING, DAY - timedelta(days=1, microseconds=1)),
    ]
    pending = _pending(rows, KEPT, MARKS)
    assert pending["1m"] == (TimeRange(DAY, DAY + timedelta(minutes=1)),)
    assert pending["1h"] == (TimeRange(DAY, at(1)),)


def test_stretches_are_merged_and_end_at_the_watermark() -> None:
    rows = [
        ("frame_stats_1h", at(2.2), at(2.4)),
        ("frame_stats_1h", at(3), at(4.5)),
        ("frame_stats_1h", at(16.5), at(17) - timedelta(microseconds=1)),
        ("frame_stats_1m", at(5), at(5)),
    ]
    pending = _pending(rows, KEPT, MARKS)
    assert pending["1h"] == (TimeRange(at(2), at(6)), TimeRange(at(16), at(17)))
    assert pending["1m"] == (TimeRange(at(5), at(5) + timedelta(minutes=1)),)


def test_a_level_never_refreshed_has_nothing_of_its_own_pending() -> None:
    pending = _pending([("frame_stats_1d", BEGINNING, END)], KEPT, {"1m": None})
    assert pending == {"1m": (), "1h": (), "1d": ()}


def test_a_plan_lists_the_buckets_its_rollup_parts_read_where_they_are_pending() -> None:
    coverage = _Coverage(
        {"raw": DAY, "1m": DAY, "1h": DAY, "1d": DAY},
        {},
        "timescale",
        0.5,
        frozenset(),
        frozenset(),
        {},
        0.0,
        pending={
            "1m": (TimeRange(at(1), at(1) + timedelta(minutes=1)),),
            "1h": (TimeRange(at(1), at(2)), TimeRange(at(3), at(4)), TimeRange(at(20), at(21))),
        },
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
