"""FrameRecord validation and conversion, with property tests."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framemeta import BoundingBox, Detection, FrameRecord, ValidationError

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

camera_ids = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-",
    min_size=1,
    max_size=64,
)
# Any character PostgreSQL text accepts: no NUL, no lone surrogates.
TEXT_CHARS = st.characters(exclude_characters="\x00", exclude_categories=["Cs"])
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
aware_datetimes = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
    ),
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=TEXT_CHARS)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(
                alphabet=TEXT_CHARS,
                max_size=8,
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)
metadata = st.dictionaries(
    st.text(
        alphabet=TEXT_CHARS,
        max_size=12,
    ),
    json_values,
    max_size=5,
)
boxes = st.builds(
    BoundingBox,
    x=st.floats(0, 1000),
    y=st.floats(0, 500),
    width=st.floats(1, 900),
    height=st.floats(1, 500),
)
detections = st.builds(
    Detection,
    label=st.text(
        alphabet=TEXT_CHARS,
        min_size=1,
        max_size=64,
    ),
    confidence=unit,
    box=st.none() | boxes,
)
records = st.builds(
    FrameRecord,
    camera_id=camera_ids,
    captured_at=aware_datetimes,
    frame_number=st.integers(min_value=0, max_value=2**63 - 1),
    width=st.none() | st.just(1920),
    height=st.none() | st.just(1080),
    motion_score=st.none() | unit,
    brightness=st.none() | unit,
    detections=st.lists(detections, max_size=4),
    metadata=metadata,
)


@given(records)
def test_every_valid_record_round_trips_through_dicts(record: FrameRecord) -> None:
    assert FrameRecord.from_dict(record.to_dict()) == record


@given(records)
def test_every_valid_record_round_trips_through_json(record: FrameRecord) -> None:
    again = FrameRecord.from_json(record.to_json())

    assert again == record
    assert again.metadata_json == record.metadata_json


@given(records)
def test_captured_at_is_stored_in_utc(record: FrameRecord) -> None:
    assert record.captured_at.tzinfo is UTC


BAD_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "camera_id": st.one_of(
        st.just(""),
        st.text(min_size=65, max_size=70, alphabet="abc"),
        st.tuples(camera_ids, st.sampled_from(" /\x00é'\";\n*")).map(lambda t: t[0][:60] + t[1]),
        st.integers(),
        st.none(),
    ),
    "captured_at": st.one_of(st.datetimes(timezones=st.none()), st.text(max_size=5), st.integers()),
    "frame_number": st.one_of(
        st.integers(max_value=-1),
        st.integers(min_value=2**63),
        st.floats(),
        st.booleans(),
        st.text(max_size=3),
    ),
    "width": st.one_of(
        st.integers(max_value=0), st.floats(min_value=1, max_value=100), st.text(max_size=2)
    ),
    "height": st.one_of(st.integers(max_value=0), st.integers(min_value=2**31)),
    "motion_score": st.one_of(
        st.floats(min_value=1.0, exclude_min=True),
        st.floats(max_value=0.0, exclude_max=True),
        st.just(math.nan),
        st.just(math.inf),
        st.booleans(),
        st.text(max_size=2),
    ),
    "brightness": st.one_of(st.floats(min_value=1.0, exclude_min=True), st.just(-math.inf)),
    "metadata": st.one_of(
        st.just({"x": math.nan}),
        st.just({"nested": {"deep": [1, math.inf]}}),
        st.just({"text": "nul\x00inside"}),
        st.just({"key\x00": 1}),
        st.just({1: "int key"}),
        st.just({"when": NOW}),
        st.just({"blob": "x" * 20_000}),
        st.just({"obj": object()}),
        st.just(["not", "a", "mapping"]),
        st.integers(),
    ),
    "detections": st.one_of(
        st.just(["person"]),
        st.just([Detection("person", 0.5, BoundingBox(1900.0, 0.0, 50.0, 10.0))]),
        st.just("person"),
    ),
}


# The 2-core CI machine is busy with the server too; generation is cheap here.
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(BAD_FIELDS)).flatmap(lambda f: st.tuples(st.just(f), BAD_FIELDS[f])))
def test_every_bad_field_is_rejected_with_its_name(field_and_value: tuple[str, Any]) -> None:
    field, value = field_and_value
    arguments: dict[str, Any] = {
        "camera_id": "cam-1",
        "captured_at": NOW,
        "frame_number": 1,
        "width": 1920,
        "height": 1080,
    }
    arguments[field] = value

    with pytest.raises(ValidationError) as info:
        FrameRecord(**arguments)

    assert info.value.field.split(".")[0].split("[")[0] == field
    assert str(info.value).startswith(info.value.field)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Detection("", 0.5), "detection.label"),
        (lambda: Detection("a\x00b", 0.5), "detection.label"),
        (lambda: Detection("x" * 65, 0.5), "detection.label"),
        (lambda: Detection("cat", 1.5), "detection.confidence"),
        (lambda: Detection("cat", math.nan), "detection.confidence"),
        (lambda: Detection("cat", 0.5, box=(1, 2, 3, 4)), "detection.box"),  # type: ignore[arg-type]
        (lambda: BoundingBox(-1, 0, 1, 1), "box"),
        (lambda: BoundingBox(0, 0, 0, 1), "box"),
        (lambda: BoundingBox(0, 0, math.inf, 1), "box"),
        (lambda: BoundingBox(0, math.nan, 1, 1), "box"),
    ],
)
def test_bad_detections_are_rejected(build: Any, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        build()
    assert info.value.field == field


def test_validation_error_is_a_value_error_and_a_framemeta_error() -> None:
    from framemeta import FramemetaError

    with pytest.raises(ValueError) as info:
        FrameRecord("bad id", NOW, 1)
    assert isinstance(info.value, FramemetaError)


def test_metadata_is_encoded_once_and_copied() -> None:
    shared = {"zone": "gate", "n": 1}
    record = FrameRecord("cam-1", NOW, 1, metadata=shared)
    shared["n"] = 2

    assert record.metadata == {"zone": "gate", "n": 1}
    assert record.metadata_json == b'{"zone":"gate","n":1}'


def test_empty_metadata_has_no_encoding() -> None:
    assert FrameRecord("cam-1", NOW, 1).metadata_json is None


def test_metadata_size_limit_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FrameRecord, "max_metadata_bytes", 32)

    FrameRecord("cam-1", NOW, 1, metadata={"a": "x" * 20})
    with pytest.raises(ValidationError, match="more than 32 bytes"):
        FrameRecord("cam-1", NOW, 1, metadata={"a": "x" * 40})


def test_records_are_frozen_and_hash_by_key() -> None:
    import attrs

    record = FrameRecord("cam-1", NOW, 1, metadata={"a": 1})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        record.frame_number = 2  # type: ignore[misc]
    assert hash(record) == hash(("cam-1", NOW, 1))
    assert {record, FrameRecord("cam-1", NOW, 1, metadata={"a": 1})} == {record}


def test_from_dict_names_unknown_and_missing_fields() -> None:
    base = {"camera_id": "cam-1", "captured_at": NOW.isoformat(), "frame_number": 1}
    with pytest.raises(ValidationError) as unknown:
        FrameRecord.from_dict({**base, "motion": 0.5})
    with pytest.raises(ValidationError) as missing:
        FrameRecord.from_dict({"camera_id": "cam-1", "frame_number": 1})
    with pytest.raises(ValidationError) as strict:
        FrameRecord.from_dict({**base, "frame_number": "1"})

    assert unknown.value.field == "motion"
    assert missing.value.field == "captured_at"
    assert strict.value.field == "frame_number"


def test_numpy_values_are_accepted_in_metadata() -> None:
    numpy = pytest.importorskip("numpy")

    record = FrameRecord(
        "cam-1", NOW, 1, metadata={"hist": numpy.array([1.5, 2.0]), "f": numpy.float32(0.25)}
    )

    assert record.metadata_json == b'{"hist":[1.5,2.0],"f":0.25}'


def test_a_queued_record_costs_what_the_writer_estimates() -> None:
    import tracemalloc

    from framemeta.writer import _estimate

    def build(count: int) -> list[FrameRecord]:
        return [
            FrameRecord(
                "cam-1",
                NOW,
                n,
                width=1920,
                height=1080,
                motion_score=0.5,
                metadata={"zone": "gate", "n": n},
            )
            for n in range(count)
        ]

    build(100)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        records = build(20_000)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    allocated = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    estimated = sum(_estimate(record) for record in records)

    # The writer bounds its queue by the estimate: it must not undercount.
    assert allocated / len(records) < 600
    assert allocated <= estimated * 1.25


# -- records read from the database ---------------------------------------------
# `_frame_from_row` gets a row as PostgreSQL sends it in text format: the
# detection arrays and the metadata as their text.

STORED_BOXES = "{{1.5,2,30,40},{NULL,NULL,NULL,NULL}}"


def _stored(
    labels: str | None = "{person,car}",
    scores: str | None = "{0.5,0.25}",
    boxes: str | None = STORED_BOXES,
    metadata: str | None = '{"n": 1, "zone": "gate"}',
) -> FrameRecord:
    from framemeta.records import _frame_from_row

    return _frame_from_row("cam-1", NOW, 7, 1920, 1080, 0.5, 0.25, labels, scores, boxes, metadata)


EAGER = FrameRecord(
    "cam-1",
    NOW,
    7,
    width=1920,
    height=1080,
    motion_score=0.5,
    brightness=0.25,
    detections=[
        Detection("person", 0.5, BoundingBox(1.5, 2.0, 30.0, 40.0)),
        Detection("car", 0.25),
    ],
    metadata={"n": 1, "zone": "gate"},
)


def test_a_stored_record_decodes_its_detections_and_metadata_when_first_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import framemeta.records

    calls: list[str] = []

    def counted(name: str) -> Any:
        decode = getattr(framemeta.records, name)

        def call(*args: Any) -> Any:
            calls.append(name)
            return decode(*args)

        return call

    for name in ("_decoded_detections", "_decoded_metadata"):
        monkeypatch.setattr(framemeta.records, name, counted(name))
    record = _stored()
    assert (record.key, hash(record), record.motion_score) == (EAGER.key, hash(EAGER), 0.5)
    assert calls == []

    first = record.detections
    assert record.detections is first
    assert record.metadata is record.metadata
    assert calls == ["_decoded_detections", "_decoded_metadata"]


@pytest.mark.parametrize(
    "change",
    [
        {"camera_id": "cam-2"},
        {"captured_at": NOW + timedelta(microseconds=1)},
        {"frame_number": 8},
        {"width": 1280},
        {"height": 720},
        {"motion_score": 0.75},
        {"brightness": None},
        {"detections": [Detection("person", 0.5, BoundingBox(1.5, 2.0, 30.0, 40.0))]},
        {"metadata": {"n": 2, "zone": "gate"}},
    ],
    ids=lambda change: next(iter(change)),
)
def test_a_stored_record_equals_only_a_record_with_every_field_the_same(
    change: dict[str, Any],
) -> None:
    import attrs

    other = attrs.evolve(EAGER, **change)

    eager = EAGER
    assert _stored() == eager
    assert eager == _stored()  # both ways: each side's __eq__
    assert _stored() != other
    assert other != _stored()
    assert _stored().__eq__(object()) is NotImplemented


@pytest.mark.parametrize(
    ("labels", "scores", "boxes", "expected"),
    [
        (None, None, None, ()),
        ("{}", "{}", "{}", ()),
        ("{car}", None, None, (Detection("car", 0.0),)),
        (
            "{car}",
            "{0.5,0.25}",
            "{{1,2,3,4},{5,6,7,8}}",
            (Detection("car", 0.5, BoundingBox(1, 2, 3, 4)),),
        ),
        (
            "{car,dog}",
            "{0.5}",
            "{{1,2,3,4}}",
            (Detection("car", 0.5, BoundingBox(1, 2, 3, 4)), Detection("dog", 0.0)),
        ),
        (
            '{"a \\"b\\"",NULL-ish,"{x}"}',
            "{1,1,1}",
            None,
            (
                Detection('a "b"', 1.0),
                Detection("NULL-ish", 1.0),
                Detection("{x}", 1.0),
            ),
        ),
    ],
)
def test_stored_detection_arrays_of_any_length_are_read_as_the_writer_would_store_them(
    labels: str | None, scores: str | None, boxes: str | None, expected: tuple[Detection, ...]
) -> None:
    """The writer stores the three arrays at the same length; another
    tool's row gets a confidence of 0.0 and no box where an array falls
    short, and elements past the labels are left out."""
    assert _stored(labels, scores, boxes).detections == expected


@pytest.mark.parametrize(("text", "expected"), [(None, {}), ("{}", {}), ("null", {})])
def test_stored_metadata_that_is_empty_reads_as_none(
    text: str | None, expected: dict[str, Any]
) -> None:
    record = _stored(metadata=text)

    assert record.metadata == expected
    assert record.metadata_json is None


def test_stored_metadata_beyond_orjson_is_read_copied_and_encoded_exactly() -> None:
    """jsonb keeps any number. Numbers orjson refuses (beyond a double's
    range) are read by the standard library, and the server's own text is
    kept as the encoding: a copy, or the record written again, keeps them
    exactly."""
    import copy
    import pickle

    huge, fraction = 10**400, "1" * 400 + ".5"
    text = f'{{"huge": {huge}, "fraction": {fraction}}}'
    record = _stored(metadata=text)

    assert record.metadata == {"huge": huge, "fraction": math.inf}
    assert record.metadata_json == text.encode()
    for copied in (pickle.loads(pickle.dumps(record)), copy.copy(record), copy.deepcopy(record)):
        assert type(copied) is FrameRecord
        assert copied.metadata_json == text.encode()
        assert copied.metadata == record.metadata
