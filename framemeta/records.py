"""Frame records: the validated attrs types a processor builds for each frame.

Validation happens once, at construction, so that a bad value fails at the
caller's line and never later inside a batch. Conversion to and from plain
dicts and JSON goes through one private cattrs converter.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, ClassVar, Final

import attrs
import cattrs
import orjson
import psycopg
from cattrs.gen import make_dict_unstructure_fn, override
from psycopg.pq import Format

from framemeta.errors import ValidationError

__all__ = ["BoundingBox", "Detection", "FrameRecord"]

_CAMERA_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_BIGINT_MAX: Final = 2**63 - 1
_INT_MAX: Final = 2**31 - 1
MAX_LABEL_CHARS: Final = 64
MAX_DETECTIONS: Final = 1024
_JSONB_VERSION: Final = b"\x01"
_KNOWN_CAMERA_IDS: set[str] = set()
_KNOWN_CAMERA_IDS_MAX: Final = 65_536

# numpy scalars and arrays are what detectors hand out; datetimes and
# dataclasses would come back as strings or dicts, so they are refused rather
# than silently changed on the way to jsonb.
_ORJSON_OPTIONS: Final = (
    orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_camera_id(camera_id: object) -> None:
    if type(camera_id) is not str or _CAMERA_ID.fullmatch(camera_id) is None:
        raise ValidationError(
            "camera_id", camera_id, "must be 1-64 characters of A-Z a-z 0-9 . _ : -"
        )
    # A deployment has a handful of cameras: remembering the valid ids turns
    # the regular expression into a set lookup on the hot path.
    if len(_KNOWN_CAMERA_IDS) < _KNOWN_CAMERA_IDS_MAX:
        _KNOWN_CAMERA_IDS.add(camera_id)


def _utc(captured_at: object) -> datetime:
    if not isinstance(captured_at, datetime):
        raise ValidationError("captured_at", captured_at, "must be a datetime")
    tzinfo = captured_at.tzinfo
    if tzinfo is None or tzinfo.utcoffset(captured_at) is None:
        raise ValidationError(
            "captured_at", captured_at, "must be timezone-aware (naive datetimes are refused)"
        )
    if tzinfo is UTC and type(captured_at) is datetime:
        return captured_at
    # Subclasses (pandas.Timestamp, say) become plain datetimes in UTC.
    utc = captured_at.astimezone(UTC)
    return datetime(
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, UTC
    )


def _unit_interval(field: str, value: object) -> None:
    # The chained comparison is False for NaN, so it also refuses NaN and inf.
    if not _is_number(value) or not 0.0 <= value <= 1.0:  # type: ignore[operator]
        raise ValidationError(field, value, "must be a finite number in [0, 1]")


def _text(field: str, value: object, max_chars: int) -> None:
    if not isinstance(value, str) or not 1 <= len(value) <= max_chars:
        raise ValidationError(field, value, f"must be a string of 1 to {max_chars} characters")
    if "\x00" in value:
        raise ValidationError(field, value, "must not contain a NUL character")


@attrs.frozen(slots=True, init=False)
class BoundingBox:
    """An axis-aligned box around a detection, in pixels of the frame.

    ``x`` and ``y`` are the top-left corner (>= 0); ``width`` and ``height``
    are > 0. All four are finite numbers. Raises `ValidationError` otherwise.
    """

    x: float
    y: float
    width: float
    height: float

    def __init__(self, x: float, y: float, width: float, height: float) -> None:
        # NaN fails every comparison, infinities fail the upper bound.
        if not (
            _is_number(x)
            and _is_number(y)
            and _is_number(width)
            and _is_number(height)
            and 0 <= x < math.inf
            and 0 <= y < math.inf
            and 0 < width < math.inf
            and 0 < height < math.inf
        ):
            raise ValidationError(
                "box",
                (x, y, width, height),
                "x, y must be finite numbers >= 0; width, height finite and > 0",
            )
        setters = _BOX_SETTERS
        setters[0](self, x)
        setters[1](self, y)
        setters[2](self, width)
        setters[3](self, height)


@attrs.frozen(slots=True, init=False)
class Detection:
    """One detected object: a label, the detector's confidence and an optional box.

    ``label`` is 1-64 characters without NUL; ``confidence`` is a finite number
    in [0, 1]; ``box`` is a `BoundingBox` in pixels or None when the detector
    gives no location (a scene classifier, say). Raises `ValidationError`.
    """

    label: str
    confidence: float
    box: BoundingBox | None = None

    def __init__(self, label: str, confidence: float, box: BoundingBox | None = None) -> None:
        if type(label) is not str or not 0 < len(label) <= MAX_LABEL_CHARS or "\x00" in label:
            _text("detection.label", label, MAX_LABEL_CHARS)
        if not (type(confidence) is float and 0.0 <= confidence <= 1.0):
            _unit_interval("detection.confidence", confidence)
        if box is not None and type(box) is not BoundingBox and not isinstance(box, BoundingBox):
            raise ValidationError("detection.box", box, "must be a BoundingBox or None")
        setters = _DETECTION_SETTERS
        setters[0](self, label)
        setters[1](self, confidence)
        setters[2](self, box)


@attrs.frozen(slots=True, eq=False, hash=False, init=False)
class FrameRecord:
    """The metadata of one video frame.

    Required: ``camera_id`` (1-64 characters of ``[A-Za-z0-9._:-]``),
    ``captured_at`` (a timezone-aware datetime; stored and returned in UTC) and
    ``frame_number`` (an integer >= 0, at most 2**63-1). Everything else is
    optional, because each processor knows only its own measurements:

    - ``width``, ``height``: frame size in pixels, > 0.
    - ``motion_score``: fraction of the frame that changed, in [0, 1].
    - ``brightness``: mean luminance normalised to [0, 1].
    - ``detections``: a sequence of `Detection` (stored as a tuple, at most
      1,024); boxes must lie inside the frame when the size is known.
    - ``metadata``: free-form JSON object (str keys; str, int, float, bool,
      None, lists, nested objects, numpy scalars and arrays), finite numbers
      only, no NUL character, at most `max_metadata_bytes` when encoded.
      A shallow copy is kept; it is encoded once, here.

    A bad value raises `framemeta.ValidationError` naming the field. Equal
    records compare equal field by field; the hash is that of `key`.

    Records that `FrameQuery` returns decode their detections and metadata
    when first read, once; they compare equal to, print, pickle and copy as
    the record built with the same fields.
    """

    max_metadata_bytes: ClassVar[int] = 16_384
    """Upper bound of a record's metadata encoded as JSON, in bytes (default 16 KiB).
    Set it on the class (``FrameRecord.max_metadata_bytes = 65_536``) to change it."""

    camera_id: str
    captured_at: datetime
    frame_number: int
    width: int | None = None
    height: int | None = None
    motion_score: float | None = None
    brightness: float | None = None
    detections: Sequence[Detection] = ()
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    # The metadata in jsonb's binary wire format (a version byte, then the
    # JSON text), ready for COPY; None when empty.
    _metadata_jsonb: bytes | None = attrs.field(init=False, eq=False, repr=False, default=None)

    def __init__(
        self,
        camera_id: str,
        captured_at: datetime,
        frame_number: int,
        width: int | None = None,
        height: int | None = None,
        motion_score: float | None = None,
        brightness: float | None = None,
        detections: Sequence[Detection] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        # Every processor calls this per frame, so attrs' generated __init__
        # (which sets each field, then a post-init reads them back) is
        # replaced by checks on locals, common case first, and one store
        # per field: about 40 % less time for a typical record.
        if camera_id not in _KNOWN_CAMERA_IDS:
            _check_camera_id(camera_id)
        if type(captured_at) is not datetime or captured_at.tzinfo is not UTC:
            captured_at = _utc(captured_at)
        if type(frame_number) is not int or not 0 <= frame_number <= _BIGINT_MAX:
            raise ValidationError(
                "frame_number", frame_number, "must be an integer in [0, 2**63-1]"
            )
        if width is not None and (type(width) is not int or not 0 < width <= _INT_MAX):
            raise ValidationError("width", width, "must be a positive integer (pixels) or None")
        if height is not None and (type(height) is not int or not 0 < height <= _INT_MAX):
            raise ValidationError("height", height, "must be a positive integer (pixels) or None")
        if motion_score is not None and not (
            type(motion_score) is float and 0.0 <= motion_score <= 1.0
        ):
            _unit_interval("motion_score", motion_score)
        if brightness is not None and not (type(brightness) is float and 0.0 <= brightness <= 1.0):
            _unit_interval("brightness", brightness)
        if detections:
            detections = _checked_detections(detections, width, height)
        elif type(detections) is not tuple:
            detections = ()
        metadata_jsonb: bytes | None = None
        if metadata:
            if type(metadata) is not dict and not isinstance(metadata, Mapping):
                raise ValidationError("metadata", metadata, "must be a mapping with str keys")
            metadata = dict(metadata)
            metadata_jsonb = _encode_metadata(metadata, self.max_metadata_bytes)
        else:
            if metadata is not None and not isinstance(metadata, Mapping):
                raise ValidationError("metadata", metadata, "must be a mapping with str keys")
            metadata = {}
        setters = _SLOT_SETTERS
        setters[0](self, camera_id)
        setters[1](self, captured_at)
        setters[2](self, frame_number)
        setters[3](self, width)
        setters[4](self, height)
        setters[5](self, motion_score)
        setters[6](self, brightness)
        setters[7](self, detections)
        setters[8](self, metadata)
        setters[9](self, metadata_jsonb)

    def __eq__(self, other: object) -> bool:
        # By hand, not attrs': a record read from the database (a private
        # subclass) equals the one built with the same fields.
        if not isinstance(other, FrameRecord):
            return NotImplemented
        return _compared_values(self) == _compared_values(other)

    def __hash__(self) -> int:
        return hash((self.camera_id, self.captured_at, self.frame_number))

    @property
    def key(self) -> tuple[str, datetime, int]:
        """The natural key ``(camera_id, captured_at, frame_number)``; unique in the database."""
        return (self.camera_id, self.captured_at, self.frame_number)

    @property
    def metadata_json(self) -> bytes | None:
        """The metadata encoded as compact UTF-8 JSON, or None when it is empty."""
        jsonb = self._metadata_jsonb
        return None if jsonb is None else jsonb[1:]

    def to_dict(self) -> dict[str, Any]:
        """Return the record as plain, JSON-ready Python values.

        ``captured_at`` becomes an ISO 8601 string in UTC, detections become
        dicts; `from_dict` reverses it exactly.
        """
        result: dict[str, Any] = _converter.unstructure(self)
        return result

    def to_json(self) -> bytes:
        """Return `to_dict` encoded as compact UTF-8 JSON."""
        return orjson.dumps(self.to_dict(), option=_ORJSON_OPTIONS)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FrameRecord:
        """Build a record from plain values, as produced by `to_dict`.

        ``captured_at`` may be a datetime or an ISO 8601 string with an
        offset. Unknown keys are refused. Raises `ValidationError` naming the
        field on a missing, unknown or bad value.
        """
        if not isinstance(data, Mapping):
            raise ValidationError("record", data, "must be a mapping")
        try:
            return _converter.structure(data, cls)
        except ValidationError:
            raise
        except cattrs.ForbiddenExtraKeysError as exc:
            raise ValidationError(
                sorted(exc.extra_fields)[0], data, "is not a FrameRecord field"
            ) from None
        except KeyError as exc:
            raise ValidationError(str(exc.args[0]), data, "is required") from None
        except (TypeError, ValueError, cattrs.BaseValidationError) as exc:
            raise ValidationError("record", data, f"cannot be converted: {exc}") from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> FrameRecord:
        """Parse JSON produced by `to_json`; raises `ValidationError` on bad input."""
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ValidationError("record", text, f"is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def _slot_access(
    cls: type[Any], name: str
) -> tuple[Callable[[Any], Any], Callable[[Any, Any], None]]:
    """The get and set of slot ``name`` itself (the get raises
    AttributeError while it is unset), past any property shadowing it."""
    slot = cls.__dict__[name]
    return slot.__get__, slot.__set__


def _slot_setters(cls: type[Any]) -> tuple[Callable[[Any, Any], None], ...]:
    """Each field's slot ``__set__``, in field order.

    The records' own ``__init__`` stores through these: they skip the
    attribute lookup and frozen check of ``object.__setattr__``, which
    halves the cost of building a record.
    """
    return tuple(_slot_access(cls, field.name)[1] for field in attrs.fields(cls))


_BOX_SETTERS: Final = _slot_setters(BoundingBox)
_DETECTION_SETTERS: Final = _slot_setters(Detection)
_SLOT_SETTERS: Final = _slot_setters(FrameRecord)
assert [field.name for field in attrs.fields(FrameRecord)] == [
    "camera_id",
    "captured_at",
    "frame_number",
    "width",
    "height",
    "motion_score",
    "brightness",
    "detections",
    "metadata",
    "_metadata_jsonb",
], "FrameRecord.__init__ stores fields by position"


def _checked_detections(
    detections: Sequence[Detection], width: int | None, height: int | None
) -> tuple[Detection, ...]:
    if type(detections) is not tuple and (
        isinstance(detections, (str, bytes, Mapping)) or not isinstance(detections, Sequence)
    ):
        raise ValidationError("detections", detections, "must be a sequence of Detection")
    if len(detections) > MAX_DETECTIONS:
        raise ValidationError(
            "detections", len(detections), f"at most {MAX_DETECTIONS} detections per frame"
        )
    for index, detection in enumerate(detections):
        if type(detection) is not Detection and not isinstance(detection, Detection):
            raise ValidationError(f"detections[{index}]", detection, "must be a Detection")
        box = detection.box
        if box is not None and (
            (width is not None and box.x + box.width > width)
            or (height is not None and box.y + box.height > height)
        ):
            raise ValidationError(
                f"detections[{index}].box", box, f"lies outside the {width}x{height} frame"
            )
    return detections if type(detections) is tuple else tuple(detections)


def _encode_json(name: str, value: Any, limit: int | None = None) -> bytes:
    """``value`` as the JSON text framemeta stores, checked as metadata is:
    ValidationError naming ``name`` for a value JSON cannot hold (NaN,
    infinities, NUL characters, datetimes and other types orjson would
    write as something else) or, with ``limit``, longer than ``limit``
    bytes. The Query API checks `search`'s ``contains`` with it."""
    try:
        encoded = orjson.dumps(value, option=_ORJSON_OPTIONS)
    except TypeError as exc:
        raise ValidationError(name, value, f"is not JSON-serialisable: {exc}") from None
    if limit is not None and len(encoded) > limit:
        raise ValidationError(
            name, f"<{len(encoded)} bytes>", f"encodes to more than {limit} bytes"
        )
    # orjson writes NaN and infinities as null and NUL as \u0000: both markers
    # are rare in real metadata, so only then is the value walked to tell.
    # (bytes.find is about twice as fast as `in` for these short needles.)
    if encoded.find(b"null") >= 0 or encoded.find(b"\\u0000") >= 0:
        _check_json_values(name, value)
    return encoded


def _encode_metadata(metadata: dict[str, Any], limit: int) -> bytes:
    encoded = _encode_json("metadata", metadata, limit)
    # The concatenation also copies orjson's output out of its 4 KiB
    # working buffer, which it keeps otherwise: 60 bytes instead of 4,096
    # for a small object, for every queued record.
    return _JSONB_VERSION + encoded


def _check_json_values(path: str, value: Any) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationError(path, value, "must not contain a NUL character")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if "\x00" in key:
                raise ValidationError(path, key, "keys must not contain a NUL character")
            _check_json_values(f"{path}.{key}", item)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_json_values(f"{path}[{index}]", item)
    elif hasattr(value, "tolist"):  # numpy array or scalar
        _check_json_values(path, value.tolist())
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(path, value, "must be a finite number (JSON has no NaN or infinity)")


def _structure_datetime(value: Any, _: type) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    raise ValidationError("captured_at", value, "must be a datetime or an ISO 8601 string")


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=False)
    # Values pass through unchanged so that the records' own validation names
    # the field; cattrs would otherwise turn "5" into 5 and 5.7 into 5.
    for scalar in (int, float, str):
        converter.register_structure_hook(scalar, lambda value, _: value)
    converter.register_unstructure_hook(datetime, lambda value: value.isoformat())
    converter.register_structure_hook(datetime, _structure_datetime)
    converter.register_structure_hook_func(
        lambda type_: type_ == Sequence[Detection],
        lambda value, _: tuple(converter.structure(item, Detection) for item in value),
    )
    converter.register_structure_hook_func(
        lambda type_: type_ == Mapping[str, Any], lambda value, _: dict(value)
    )
    converter.register_unstructure_hook(
        FrameRecord,
        make_dict_unstructure_fn(FrameRecord, converter, _metadata_jsonb=override(omit=True)),
    )
    return converter


_converter: Final = _make_converter()


_new: Final = object.__new__
_set_label, _set_confidence, _set_box = _DETECTION_SETTERS
_set_x, _set_y, _set_width, _set_height = _BOX_SETTERS


def _detection_from_row(
    label: str, confidence: float, box_values: list[float | None] | None
) -> Detection:
    """A detection from element i of the three arrays, without validation
    (unrolled: a read's records build thousands)."""
    detection = _new(Detection)
    _set_label(detection, label)
    _set_confidence(detection, confidence)
    if box_values is None or box_values[0] is None:
        _set_box(detection, None)
        return detection
    box = _new(BoundingBox)
    _set_x(box, box_values[0])
    _set_y(box, box_values[1])
    _set_width(box, box_values[2])
    _set_height(box, box_values[3])
    _set_box(detection, box)
    return detection


def _frame_from_row(
    camera_id: str,
    captured_at: datetime,
    frame_number: int,
    width: int | None,
    height: int | None,
    motion_score: float | None,
    brightness: float | None,
    labels_text: str | None,
    scores_text: str | None,
    boxes_text: str | None,
    metadata_text: str | None,
) -> FrameRecord:
    """A record from a row of ``frame_metadata`` (detection arrays and
    metadata as their text), without validation: the table's constraints
    checked the scalar values when they were stored. Detections and
    metadata are decoded on first access (`_StoredFrameRecord`): reads
    stream thousands of rows, and a caller listing them often reads
    neither. Arrays of another shape than the writer's (another tool's
    rows) fail there, not here."""
    record = _new(_StoredFrameRecord)
    if captured_at.tzinfo is not UTC:
        captured_at = captured_at.astimezone(UTC)
    setters = _SLOT_SETTERS
    setters[0](record, camera_id)
    setters[1](record, captured_at)
    setters[2](record, frame_number)
    setters[3](record, width)
    setters[4](record, height)
    setters[5](record, motion_score)
    setters[6](record, brightness)
    if labels_text is None:
        setters[7](record, ())
        _set_stored_detections(record, None)
    else:
        _set_stored_detections(record, (labels_text, scores_text, boxes_text))
    if metadata_text is None:
        setters[8](record, {})
        setters[9](record, None)
    _set_stored_metadata(record, metadata_text)
    return record


def _array_loader(element: str) -> Callable[[bytes], Any]:
    """psycopg's own (C) loader of the text of an array of ``element``."""
    oid = psycopg.postgres.types[element].array_oid
    loader = psycopg.adapters.get_loader(oid, Format.TEXT)
    assert loader is not None
    return loader(oid).load


_load_labels: Final = _array_loader("text")
_load_reals: Final = _array_loader("float4")


def _decoded_detections(
    labels_text: str, scores_text: str | None, boxes_text: str | None
) -> tuple[Detection, ...]:
    labels: list[str] = _load_labels(labels_text.encode())
    count = len(labels)
    scores: list[float] = _load_reals(scores_text.encode()) if scores_text is not None else []
    boxes: list[list[float | None] | None] = (
        _load_reals(boxes_text.encode()) if boxes_text is not None else []
    )
    # The writer stores the three arrays at the same length; a row written
    # otherwise gets no box and a confidence of 0.0 where an array falls short.
    if len(scores) != count:
        scores = [*scores[:count], *[0.0] * (count - len(scores))]
    if len(boxes) != count:
        boxes = [*boxes[:count], *[None] * (count - len(boxes))]
    return tuple(map(_detection_from_row, labels, scores, boxes))


def _decoded_metadata(text: str) -> tuple[dict[str, Any], bytes | None]:
    """Stored metadata (JSON null: none, as for SQL NULL) and, where orjson
    could not write it again, its encoding."""
    try:
        return orjson.loads(text) or {}, None
    except orjson.JSONDecodeError:
        # jsonb that orjson refuses (a number beyond a double's range, such
        # as 1e400, written by another tool): the standard library reads
        # it, and the server's own text is kept as its encoding, exact.
        return json.loads(text) or {}, _JSONB_VERSION + text.encode()


_get_detections, _set_detections = _slot_access(FrameRecord, "detections")
_get_metadata, _set_metadata = _slot_access(FrameRecord, "metadata")
_get_metadata_jsonb, _set_metadata_jsonb = _slot_access(FrameRecord, "_metadata_jsonb")


class _StoredFrameRecord(FrameRecord):
    """A `FrameRecord` read from the database: its detections and metadata
    stay as the text the server sent until first read, then are decoded and
    kept (the same values an eagerly built record holds; two threads reading
    at once may both decode, and get equal values). It compares equal to,
    and prints as, the `FrameRecord` with the same fields; pickled or copied
    it becomes one. Its compact metadata encoding is made when first needed,
    from the metadata as it is then."""

    __slots__ = ("_stored_detections", "_stored_metadata")
    _stored_detections: tuple[str, str | None, str | None] | None
    """The text of the labels, scores and boxes arrays; None once decoded."""
    _stored_metadata: str | None
    """The metadata as JSON text; None once decoded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Built with values (attrs.evolve): nothing left to decode.
        super().__init__(*args, **kwargs)
        _set_stored_detections(self, None)
        _set_stored_metadata(self, None)

    @property
    def detections(self) -> Sequence[Detection]:
        stored = _get_stored_detections(self)
        if stored is None:
            return _get_detections(self)  # type: ignore[no-any-return]
        detections = _decoded_detections(*stored)
        _set_detections(self, detections)
        _set_stored_detections(self, None)  # each value held once
        return detections

    @property
    def metadata(self) -> Mapping[str, Any]:
        stored = _get_stored_metadata(self)
        if stored is None:
            return _get_metadata(self)  # type: ignore[no-any-return]
        metadata, jsonb = _decoded_metadata(stored)
        if jsonb is not None:
            _set_metadata_jsonb(self, jsonb)
        _set_metadata(self, metadata)
        _set_stored_metadata(self, None)
        return metadata

    @property
    def _metadata_jsonb(self) -> bytes | None:
        # The compact encoding an eager record makes at construction, made
        # here when first asked for (`metadata_json`, pickling and copying,
        # the writer), from the metadata as it is then. Reading the metadata
        # first sets it where orjson could not write it (`_decoded_metadata`).
        metadata = self.metadata
        try:
            return _get_metadata_jsonb(self)  # type: ignore[no-any-return]
        except AttributeError:
            jsonb = _JSONB_VERSION + orjson.dumps(metadata) if metadata else None
            _set_metadata_jsonb(self, jsonb)
            return jsonb

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuilt_frame, _field_values(self))

    def __repr__(self) -> str:
        return _repr_as(FrameRecord, self, super().__repr__())


_get_stored_detections, _set_stored_detections = _slot_access(
    _StoredFrameRecord, "_stored_detections"
)
_get_stored_metadata, _set_stored_metadata = _slot_access(_StoredFrameRecord, "_stored_metadata")
_field_values: Final = attrgetter(*(field.name for field in attrs.fields(FrameRecord)))
_compared_values: Final = attrgetter(
    *(field.name for field in attrs.fields(FrameRecord) if field.eq)
)


def _repr_as(base: type[Any], instance: object, text: str) -> str:
    """``text``, the attrs repr of ``instance`` (of a private subclass),
    named as the public class ``base``: it prints as a ``base`` with the
    same fields."""
    return base.__qualname__ + text[len(type(instance).__qualname__) :]


def _rebuilt_frame(*values: Any) -> FrameRecord:
    """A plain FrameRecord with the fields of a stored one (unpickling, copy)."""
    record = _new(FrameRecord)
    for setter, value in zip(_SLOT_SETTERS, values, strict=True):
        setter(record, value)
    return record
