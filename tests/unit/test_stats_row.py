"""StatsRow, built by a caller and read from the database: a row read keeps
the result row and reads its fields from it (`framemeta.query._stats_row`),
and must behave as the row built with the same fields."""

from __future__ import annotations

import copy
import pickle
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import cattrs
import orjson
import pytest

import framemeta.query
from framemeta import StatsRow
from framemeta.query import _stats_row

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


def test_a_read_row_has_every_field_of_the_row_it_was_read_from() -> None:
    read = _stats_row(ROW)

    assert attrs.astuple(read, recurse=False) == attrs.astuple(BUILT, recurse=False)
    assert attrs.asdict(read) == attrs.asdict(BUILT)
    assert cattrs.unstructure(read) == cattrs.unstructure(BUILT)
    assert isinstance(read, StatsRow)


def test_a_read_row_parses_its_label_counts_when_first_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed: list[str] = []

    class Counted:
        @staticmethod
        def loads(text: str) -> Any:
            parsed.append(text)
            return orjson.loads(text)

    monkeypatch.setattr(framemeta.query, "orjson", Counted)
    read = _stats_row(ROW)
    assert (read.camera_id, read.frames, read.detections) == ("cam-00", 3600, 323)
    assert parsed == []

    labels = read.detections_by_label
    assert read.detections_by_label is labels
    assert labels == {"car": 148, "dog": 174, 'a "b"': 1}
    assert parsed == [LABELS]


@pytest.mark.parametrize("field", [field.name for field in attrs.fields(StatsRow)])
def test_a_read_row_equals_only_a_row_with_every_field_the_same(field: str) -> None:
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
    assert _stats_row(ROW) == built
    assert built == _stats_row(ROW)  # both ways: each side's __eq__
    assert _stats_row(ROW) != other
    assert other != _stats_row(ROW)
    assert _stats_row(ROW).__eq__(object()) is NotImplemented


def test_a_read_row_hashes_prints_pickles_and_copies_as_the_built_row() -> None:
    read = _stats_row(ROW)

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


def test_a_read_row_is_frozen_and_evolves_into_a_row_with_the_change() -> None:
    read = _stats_row(ROW)

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        read.frames = 1  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        read.detections_by_label = {}  # type: ignore[misc]
    evolved = attrs.evolve(read, frames=1)
    assert evolved == attrs.evolve(BUILT, frames=1)
    assert evolved.detections_by_label == BUILT.detections_by_label
    assert read.frames == 3600


def test_a_read_row_from_a_session_not_in_utc_has_its_times_in_utc() -> None:
    east = timezone(timedelta(hours=5, minutes=30))
    row = list(ROW)
    for index in (1, 3, 4):
        row[index] = ROW[index].astimezone(east)

    read = _stats_row(tuple(row))

    assert read == BUILT
    for moment in (read.bucket, read.first_captured_at, read.last_captured_at):
        assert moment.tzinfo is UTC
