"""StatsRow, built by a caller and read from the database: a row read keeps
the result row and reads its fields from it (`framemeta.query._stats_row`),
or keeps a row with its numbers packed and unpacks it when first read
(`framemeta.query._packed_stats_row`), and must behave as the row built with
the same fields."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import cattrs
import orjson
import pytest

import framemeta.query
from framemeta import StatsRow
from framemeta.query import _PACKED, _packed_stats_row, _stats_row

BUCKET = datetime(2026, 11, 26, 12, tzinfo=UTC)
LABELS = '{"car": 148, "dog": 174, "a \\"b\\"": 1}'
# A row as the stats statement sends it: fields in order, label counts last
# as JSON text.
ROW: tuple[Any, ...] = (
    "cam-00",
    BUCKET,
    3600,
    BUCKET,
    BUCKET + timedelta(minutes=59, seconds=59),
    18000,
    21599,
    3600,
    0.0991,
    0.0,
    0.1998,
    0,
    3598,
    0.308,
    0.3,
    0.3166,
    323,
    LABELS,
)
BUILT = StatsRow(*ROW[:-1], {"car": 148, "dog": 174, 'a "b"': 1})  # type: ignore[call-arg]


def _packed(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """``row`` as the packed read sends it (migration 0007): camera, bucket,
    the first and last frame's time, the numbers packed (NaN for NULL),
    label counts."""
    numbers = [value for index, value in enumerate(row[:-1]) if index not in (0, 1, 3, 4)]
    packed = _PACKED.pack(*(float("nan") if value is None else value for value in numbers))
    return (row[0], row[1], row[3], row[4], packed, row[-1])


READS: dict[str, Callable[[tuple[Any, ...]], StatsRow]] = {
    "columns": _stats_row,
    "packed": lambda row: _packed_stats_row(_packed(row)),
}
"""Each way a row is read, from a row in `ROW`'s layout."""
read_as = pytest.mark.parametrize("read_row", READS.values(), ids=READS.keys())


@read_as
def test_a_read_row_has_every_field_of_the_row_it_was_read_from(
    read_row: Callable[[tuple[Any, ...]], StatsRow],
) -> None:
    read = read_row(ROW)

    assert attrs.astuple(read, recurse=False) == attrs.astuple(BUILT, recurse=False)
    assert attrs.asdict(read) == attrs.asdict(BUILT)
    assert cattrs.unstructure(read) == cattrs.unstructure(BUILT)
    assert isinstance(read, StatsRow)


@read_as
def test_a_read_row_parses_its_label_counts_when_first_read(
    monkeypatch: pytest.MonkeyPatch, read_row: Callable[[tuple[Any, ...]], StatsRow]
) -> None:
    parsed: list[str] = []

    class Counted:
        @staticmethod
        def loads(text: str) -> Any:
            parsed.append(text)
            return orjson.loads(text)

    monkeypatch.setattr(framemeta.query, "orjson", Counted)
    read = read_row(ROW)
    assert (read.camera_id, read.frames, read.detections) == ("cam-00", 3600, 323)
    assert parsed == []

    labels = read.detections_by_label
    assert read.detections_by_label is labels
    assert labels == {"car": 148, "dog": 174, 'a "b"': 1}
    assert parsed == [LABELS]


@read_as
@pytest.mark.parametrize("field", [field.name for field in attrs.fields(StatsRow)])
def test_a_read_row_equals_only_a_row_with_every_field_the_same(
    field: str, read_row: Callable[[tuple[Any, ...]], StatsRow]
) -> None:
    value: Any = getattr(BUILT, field)
    if isinstance(value, str):
        changed: Any = value + "x"
    elif isinstance(value, datetime):
        changed = value + timedelta(microseconds=1)
    elif isinstance(value, dict):
        changed = {**value, "car": 1}
    else:
        changed = value + 1
    other = attrs.evolve(BUILT, **{field: changed})

    built = BUILT
    assert read_row(ROW) == built
    assert built == read_row(ROW)  # both ways: each side's __eq__
    assert read_row(ROW) != other
    assert other != read_row(ROW)
    assert read_row(ROW).__eq__(object()) is NotImplemented


@read_as
def test_a_read_row_hashes_prints_pickles_and_copies_as_the_built_row(
    read_row: Callable[[tuple[Any, ...]], StatsRow],
) -> None:
    read = read_row(ROW)

    assert hash(read) == hash(BUILT) == hash(("cam-00", BUCKET))
    assert repr(read) == repr(BUILT)
    assert repr(read).startswith("StatsRow(camera_id='cam-00', bucket=")
    for again in (
        pickle.loads(pickle.dumps(read)),
        copy.copy(read),
        copy.deepcopy(read),
    ):
        assert type(again) is StatsRow
        assert again == BUILT


@read_as
def test_a_read_row_is_frozen_and_evolves_into_a_row_with_the_change(
    read_row: Callable[[tuple[Any, ...]], StatsRow],
) -> None:
    read = read_row(ROW)

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        read.frames = 1  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        read.detections_by_label = {}  # type: ignore[misc]
    evolved = attrs.evolve(read, frames=1)
    assert evolved == attrs.evolve(BUILT, frames=1)
    assert evolved.detections_by_label == BUILT.detections_by_label
    assert read.frames == 3600


@read_as
def test_a_read_row_from_a_session_not_in_utc_has_its_times_in_utc(
    read_row: Callable[[tuple[Any, ...]], StatsRow],
) -> None:
    east = timezone(timedelta(hours=5, minutes=30))
    row = list(ROW)
    for index in (1, 3, 4):
        row[index] = ROW[index].astimezone(east)

    read = read_row(tuple(row))

    assert read == BUILT
    for moment in (read.bucket, read.first_captured_at, read.last_captured_at):
        assert moment.tzinfo is UTC


def test_a_packed_row_reads_nan_as_none_and_unpacks_once() -> None:
    row = list(ROW)
    row[7:11] = [0, None, None, None]  # no frame had a motion score
    row[12:16] = [0, None, None, None]  # nor a brightness
    read = _packed_stats_row(_packed(tuple(row)))

    assert read == StatsRow(*row[:-1], BUILT.detections_by_label)  # type: ignore[call-arg]
    assert (read.motion_avg, read.motion_min, read.brightness_max) == (None, None, None)
    numbers = read._numbers  # type: ignore[attr-defined]  # unpacked once, then kept
    assert read.frames == 3600
    assert read._numbers is numbers  # type: ignore[attr-defined]
