"""Typed reads: `FrameQuery` (threads, a psycopg ``ConnectionPool``) and
`AsyncFrameQuery` (asyncio, an ``AsyncConnectionPool``) run one set of SQL
definitions. `stats` answers from raw frames or a rollup, chosen by the
bucket and range asked and by what retention still keeps; `plan` says which
and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
import time
import weakref
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Mapping,
)
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any, Final, Generic, Literal, Protocol, TypeVar, cast

import attrs
import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import set_json_loads
from psycopg.types.numeric import Int8
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from framemeta import _dsn
from framemeta.errors import ConfigurationError, ValidationError
from framemeta.maintenance import LEVEL_STORAGE_SQL, WATERMARKS_SQL
from framemeta.records import (
    FrameRecord,
    _check_camera_id,
    _encode_json,
    _frame_from_row,
    _new,
    _repr_as,
    _slot_access,
)

__all__ = [
    "RESOLUTIONS",
    "AsyncFrameQuery",
    "CameraInfo",
    "FrameQuery",
    "LevelState",
    "PlanPart",
    "StatsPlan",
    "StatsRow",
    "TimeRange",
    "configure_async_connection",
    "configure_connection",
]

T = TypeVar("T")
Resolution = Literal["auto", "raw", "1m", "1h", "1d"]
RESOLUTIONS: Final = ("auto", "raw", "1m", "1h", "1d")
"""What `FrameQuery.stats` may be asked to read: ``auto`` picks."""

_WIDTHS: Final = {
    "raw": None,
    "1m": timedelta(minutes=1),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}
_RELATIONS: Final = {"1m": "frame_stats_1m", "1h": "frame_stats_1h", "1d": "frame_stats_1d"}
_FINER: Final = {"1m": "raw", "1h": "1m", "1d": "1h"}  # what each rollup is computed from
# time_bucket's default origin (a Monday, midnight UTC): buckets of any width
# line up with the ones the server computes.
_ORIGIN: Final = datetime(2000, 1, 3, tzinfo=UTC)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)  # where TimescaleDB aligns chunks
_MAX_BUCKETS: Final = 1_000_000
_BIGINT_MAX: Final = 2**63 - 1
_MAX_FRAMES_LIMIT: Final = 10_000_000
_MAX_SEARCH_LIMIT: Final = 10_000
_COVERAGE_TTL_S: Final = 30.0
_STREAM_ROWS: Final = 2000  # rows per page of frames() after the first
# frames()' first page: prepared and read whole (a short range costs one
# round trip); the pages after it are streamed in chunks.
_FIRST_PAGE_ROWS: Final = 1000
# Statistics, motion events and the pages of frames() after the first are
# read in chunks of this many rows (libpq 17's chunked rows mode), each
# made into results while the server sends the next: on 2 cores the
# server's output and the client's decoding overlap (a week of hourly
# stats for 12 cameras, 2,016 rows: 15.5 against 24.4 ms at p50 read
# whole; docs/measurements.md, "What the figures led to"). Lookups and
# searches are not read this way: they are prepared, and a stream is not.
_CHUNK_ROWS: Final = 64
_CHUNKED: Final = psycopg.capabilities.has_stream_chunked()
"""False with a libpq older than 17: results are then read whole."""
_SEARCH_WINDOW: Final = timedelta(minutes=5)  # searched along the key first
_SEARCH_FIRST_WINDOW: Final = timedelta(minutes=1)  # with metadata: its first step
_SEARCH_PROBE_ROWS: Final = 1000  # with metadata, its GIN step's matches read unsorted first
_DETECTION_FIRST_WINDOW: Final = timedelta(hours=1)  # by detection: its first step
# The motion threshold the partial index is built for (migration 0002).
_MOTION_INDEX_THRESHOLD: Final = 0.5


# -- results -------------------------------------------------------------------


# Fields in an instance dict, not slots, for rows built by callers: a frozen
# slotted attrs class sets each field through object.__setattr__, 1.3x as
# slow. Rows read from the database are `_ReadStatsRow`s.
@attrs.frozen(slots=False, eq=False)
class StatsRow:
    """One camera's statistics over one bucket ``[bucket, bucket + width)``.

    Averages are sums over counts of the frames that had the value (None
    when none had it); counts, minima and maxima are exact whichever source
    answered. Rows compare equal when every field is equal, and hash by
    ``(camera_id, bucket)``.
    """

    camera_id: str
    bucket: datetime
    frames: int
    first_captured_at: datetime
    last_captured_at: datetime
    first_frame_number: int
    last_frame_number: int
    motion_frames: int
    """Frames that had a motion_score."""
    motion_avg: float | None
    motion_min: float | None
    motion_max: float | None
    motion_events: int
    """Frames at or above the motion threshold (0.5)."""
    brightness_frames: int
    brightness_avg: float | None
    brightness_min: float | None
    brightness_max: float | None
    detections: int
    detections_by_label: dict[str, int]

    def __eq__(self, other: object) -> bool:
        # By hand, not attrs': a row read from the database (a private
        # subclass) equals the one built with the same fields.
        if not isinstance(other, StatsRow):
            return NotImplemented
        return _stats_values(self) == _stats_values(other)

    def __hash__(self) -> int:
        return hash((self.camera_id, self.bucket))


_STATS_FIELDS: Final = tuple(field.name for field in attrs.fields(StatsRow))
_stats_values: Final = attrgetter(*_STATS_FIELDS)


@attrs.frozen
class CameraInfo:
    """A camera that has frames: when it was first and last seen, and how
    many frames it has sent, as the daily rollup counts them (kept for ever
    by default). On the community edition, frames that arrive after their
    minute was materialised (a minute or two late) reach it at the next
    recount, every five minutes, or at `maintain` (migrations 0011, 0013)."""

    camera_id: str
    first_seen: datetime
    last_seen: datetime
    frames: int


@attrs.frozen
class PlanPart:
    """One stretch of a `stats` answer and the source that answers it."""

    source: str
    """``raw``, ``1m``, ``1h`` or ``1d``."""
    start: datetime
    end: datetime


@attrs.frozen
class TimeRange:
    """A stretch of time ``[start, end)``, both timezone-aware (UTC)."""

    start: datetime
    end: datetime


@attrs.frozen
class LevelState:
    """What one source kept and how fresh it was when a plan was made (the
    plan reads this from the database at most every 30 s)."""

    level: str
    """``raw``, ``1m``, ``1h`` or ``1d``."""
    kept_from: datetime | None
    """The start of its oldest chunk: retention drops whole chunks, oldest
    first (None: it keeps nothing)."""
    retention: timedelta | None
    """How long it is kept (None: for ever)."""
    current: bool
    """True when it holds every frame written so far: raw frames, and the
    Apache edition's rollups, updated in the transaction of every insert."""
    materialized_to: datetime | None
    """Community edition's rollups (continuous aggregates): the watermark,
    how far the last refresh materialised it; its buckets from there on
    are computed from the level below when read (real-time aggregation).
    None when ``current``, or when it was never refreshed."""
    pending: tuple[TimeRange, ...] = ()
    """Community edition's rollups: stretches, in the level's whole
    buckets, whose answers miss frames written late, changed or deleted
    since the last refresh there (TimescaleDB's invalidation logs): below
    its watermark, where its own log or a finer level's holds them, and
    wherever the level it is computed from has pending stretches, past
    its watermark too (read in real time). Until a refresh (the late-frames
    job, every ten minutes, a refresh policy, or ``framemeta maintain``)
    its buckets there do not reflect those changes. Only stretches the
    level below still keeps are listed: nothing can be refreshed where it
    keeps nothing. Empty when ``current``."""


@attrs.frozen
class StatsPlan:
    """Which sources `FrameQuery.stats` reads, and why.

    ``start`` and ``end`` are the asked range widened to whole buckets;
    ``parts`` cover it newest first; ``missing`` is what no usable source
    keeps any more (dropped by retention, or chunks dropped otherwise whose
    frames the daily rollup still counts); ``levels`` is what every source
    kept and how fresh it was (raw first); ``reasons`` say it in words:
    the range's length, the bucket's alignment with each level, what
    retention dropped, and how fresh the levels read are. ``pending``
    (community edition) is where a part's rollup has not materialised
    frames written late, changed or deleted since its last refresh
    (`LevelState.pending`), in whole buckets of the plan, newest first:
    there the answer does not reflect them yet, for up to ten minutes (the
    late-frames job); ``resolution="raw"`` reads them now, within raw
    retention. TimescaleDB logs changes by time, not by camera: a plan for
    one camera lists where any camera's frames changed.
    """

    start: datetime
    end: datetime
    bucket: timedelta
    resolution: str
    parts: tuple[PlanPart, ...]
    missing: tuple[TimeRange, ...]
    reasons: tuple[str, ...]
    levels: tuple[LevelState, ...]
    pending: tuple[PlanPart, ...] = ()

    @property
    def length(self) -> timedelta:
        """The planned range's length (whole buckets)."""
        return self.end - self.start

    @property
    def buckets(self) -> int:
        """Buckets per camera in the planned range."""
        return self.length // self.bucket

    @property
    def source(self) -> str | None:
        """The source of the newest part (None when nothing is kept)."""
        return self.parts[0].source if self.parts else None

    def __str__(self) -> str:
        lines = [
            f"stats {_show(self.start)} .. {_show(self.end)} in {_show_width(self.bucket)} "
            f"buckets, resolution={self.resolution}:"
        ]
        lines += [
            f"  {part.source:>3} {_show(part.start)} .. {_show(part.end)}" for part in self.parts
        ]
        lines += [
            f"  --- {_show(gap.start)} .. {_show(gap.end)}: no data kept" for gap in self.missing
        ]
        lines += [
            f"  !!! {source:>3} {_pending_span(parts)}: changes since its last refresh "
            "not materialised yet"
            for source, parts in _by_source(self.pending)
        ]
        lines += [f"  because {reason}" for reason in self.reasons]
        return "\n".join(lines)


# -- the SQL, defined once --------------------------------------------------


@attrs.frozen
class _Statement:
    """One query with its parameters. A streamed statement (``stream``) is
    never prepared: statistics, motion events and the pages of frames after
    the first take plain parameters (`_param`) and get plans made for their
    actual range. The others are prepared as psycopg sees fit: lookups
    pass their values to the hypertable at run time, through a one-row
    join (`_GET`, `_LATEST`) or one-value subqueries (`_value`); searches'
    generic plans measured as fast as custom ones (docs/measurements.md,
    "What the figures led to")."""

    query: sql.SQL | sql.Composed
    params: Mapping[str, Any]
    binary: bool = False
    """Results in binary format: a third less decoding for timestamps."""
    stream: bool = False
    """Read in chunks of `_CHUNK_ROWS`, each made into results while the
    server sends the next; such a statement is never prepared. For results
    of thousands of rows."""


_FRAME_COLUMNS: Final = sql.SQL(
    "camera_id, captured_at, frame_number, width, height, motion_score, brightness,"
    " detection_labels::text AS detection_labels, detection_scores::text AS detection_scores,"
    " detection_boxes::text AS detection_boxes, metadata::text AS metadata"
)
"""The columns of a FrameRecord. The detection arrays and the metadata come
as their text, kept as it is until the record's detections or metadata are
first read (`_frame_from_row`): decoding them was two thirds of the client's
work for a read of frames (docs/measurements.md, "What the figures led
to")."""


def _frame(row: tuple[Any, ...]) -> FrameRecord:
    return _frame_from_row(*row)


_VALUE_TYPES: Final = {
    "camera": "text",
    "start": "timestamptz",
    "end": "timestamptz",
    "after_at": "timestamptz",
    "after_number": "bigint",
    "min_score": "real",  # compared as stored: 0.7 as a real is below the float8 0.7
    "page": "bigint",
    "at": "timestamptz",
    "number": "bigint",
    "raw_from": "timestamptz",
}


def _value(name: str) -> sql.Composable:
    """Parameter ``name`` as a one-value subquery. A prepared plan evaluates
    it once, as an init plan; for TimescaleDB it is then a run-time value,
    not one of the statement's parameters, and it skips the startup
    exclusion it does for those (re-checking every chunk's constraints on
    each execution: about 0.25 ms on a week of 1-day chunks, more than a
    short range read). Its run-time exclusion still skips chunks outside a
    time range."""
    return sql.SQL("(SELECT %({})s::{})").format(sql.SQL(name), sql.SQL(_VALUE_TYPES[name]))


def _param(name: str) -> sql.Composable:
    """Parameter ``name`` as itself, for a statement that is not prepared
    (`_Statement.stream`): the planner then leaves out the chunks outside
    the range, and the plan is made for the values given. For motion events
    of a camera-hour the server's part went 1.9 -> 0.5 ms (against `_value`
    in the same unprepared statement), planning included."""
    return sql.SQL("%({})s::{}").format(sql.SQL(name), sql.SQL(_VALUE_TYPES[name]))


# Point lookups take their values from a one-row subquery (OFFSET 0 keeps
# the planner from folding it in): join parameters, which spare the startup
# exclusion as `_value`'s init plans do, and measured faster than those for
# these two (pgbench, prepared: get 0.27 against 0.46 ms).
_GET: Final = sql.SQL(
    "SELECT f.* FROM (SELECT %(camera)s::text AS camera, %(at)s::timestamptz AS at,"
    " %(number)s::bigint AS number OFFSET 0) AS k"
    " CROSS JOIN LATERAL (SELECT {} FROM frame_metadata WHERE camera_id = k.camera"
    " AND captured_at = k.at AND frame_number = k.number) AS f"
).format(_FRAME_COLUMNS)
# Where raw chunks may be compressed (the community edition's columnstore),
# join parameters cannot reach a compressed chunk: it decompresses every
# batch of the camera, in every compressed chunk, to test them (57 ms at
# p50 on the benchmark's week with six days compressed). Values from init
# plans (`_value`) exclude the other chunks at run time and pick the one
# batch whose time range and bloom filter hold the key: 0.74 ms. As
# statement parameters they did the same as fast (0.71), but the server
# planned every execution (0.25 ms of its time): a plan made for the values
# excludes chunks when planned and so looks cheaper than the generic one.
_GET_AT_RUN_TIME: Final = sql.SQL(
    "SELECT {} FROM frame_metadata WHERE camera_id = {} AND captured_at = {} AND frame_number = {}"
).format(_FRAME_COLUMNS, _value("camera"), _value("at"), _value("number"))
# Whether raw chunks may be compressed: compression enabled on the raw
# hypertable (the community edition's migration enables it). Read apart
# from `_COVERAGE`, which needs the rollups: `get` needs the raw table only.
_COLUMNSTORE: Final = _Statement(
    sql.SQL(
        "SELECT EXISTS (SELECT FROM timescaledb_information.hypertables"
        " WHERE hypertable_schema = current_schema() AND hypertable_name = 'frame_metadata'"
        " AND compression_enabled)"
    ),
    {},
)
_LATEST: Final = sql.SQL(
    "SELECT f.* FROM (SELECT %(camera)s::text AS camera OFFSET 0) AS k"
    " CROSS JOIN LATERAL (SELECT {} FROM frame_metadata WHERE camera_id = k.camera"
    " ORDER BY captured_at DESC, frame_number DESC LIMIT 1) AS f"
).format(_FRAME_COLUMNS)


def _get_statement(
    camera_id: str, captured_at: datetime, frame_number: int, *, columnstore: bool
) -> _Statement:
    """``columnstore``: raw chunks may be compressed (`_COLUMNSTORE`)."""
    # Int8: one prepared statement, whatever the number's size.
    return _Statement(
        _GET_AT_RUN_TIME if columnstore else _GET,
        {"camera": camera_id, "at": captured_at, "number": Int8(frame_number)},
    )


def _latest_statement(camera_id: str) -> _Statement:
    return _Statement(_LATEST, {"camera": camera_id})


def _latest_all_statement(raw_from: datetime | None) -> _Statement:
    # The cameras come from the daily rollup, over the days raw frames are
    # still kept (``raw_from``: where raw storage begins, from the chunk
    # catalog, cached in `_Coverage`): a few rows per camera. Then one probe
    # of each camera's newest frame, in its newest chunk. A skip scan over
    # the raw primary key probed every chunk for every camera: 2.95 against
    # 1.12 ms at p50 for 12 cameras and 8 chunks, prepared, alternating.
    # The day comes as a one-value subquery (`_value`): as a parameter, with
    # a year of daily rows the server judged the generic plan dearer than
    # one made for the value and planned every call (0.7 ms): 1.22 ms at
    # p50, against 0.48 ms with the generic plan.
    return _Statement(
        sql.SQL(
            """
            SELECT latest.* FROM (
                SELECT DISTINCT camera_id FROM frame_stats_1d WHERE bucket >= {raw_from}
            ) AS cameras CROSS JOIN LATERAL (
                SELECT {} FROM frame_metadata AS f WHERE f.camera_id = cameras.camera_id
                ORDER BY f.captured_at DESC, f.frame_number DESC LIMIT 1
            ) AS latest
            ORDER BY latest.camera_id
            """
        ).format(_FRAME_COLUMNS, raw_from=_value("raw_from")),
        # Nothing kept: any day will do, no frame is found.
        {"raw_from": _floor(raw_from or _ORIGIN, timedelta(days=1))},
    )


class _Pages(Protocol):
    """Reads made of one or more statements, each decided by the rows of
    the one before (both executors loop over them the same way)."""

    def first(self) -> _Statement: ...

    def next(
        self, page: _Statement, records: list[FrameRecord], fetched: int
    ) -> _Statement | None: ...


@attrs.frozen
class _FramesPages:
    """A camera's frames in ``[start, end)``, read page by page by key (the
    primary key's order): each page is one short statement, so streaming
    holds no transaction or server-side cursor open between pages (and
    works through pgbouncer in transaction mode), and a small range costs
    one round trip."""

    camera_id: str
    start: datetime
    end: datetime
    limit: int | None
    order: str

    def first(self) -> _Statement:
        return self._page(None)

    def next(self, page: _Statement, records: list[FrameRecord], fetched: int) -> _Statement | None:
        """The page after ``page`` (which gave ``records``), or None when it
        was the last: short, or the limit reached."""
        if len(records) < page.params["page"] or (self.limit is not None and fetched >= self.limit):
            return None
        last = records[-1]
        return self._page((last.captured_at, last.frame_number), fetched)

    def _page(self, after: tuple[datetime, int] | None, fetched: int = 0) -> _Statement:
        descending = self.order == "desc"
        direction = sql.SQL("DESC" if descending else "ASC")
        keyset: sql.Composable = sql.SQL("")
        # The first page is prepared: every value, the limit too, comes from
        # an init plan, so a plan made for the values costs what the generic
        # one does, and the server settles on the generic one. With the limit
        # a parameter, a community-edition server (compressed chunks) judged
        # the generic plan dearer and planned each call: a camera-minute took
        # 1.96 against 0.84 ms at p50.
        value = _value if after is None else _param
        if after is not None:
            keyset = sql.SQL(" AND (captured_at, frame_number) {} ({}, {})").format(
                sql.SQL("<" if descending else ">"), value("after_at"), value("after_number")
            )
        page = _FIRST_PAGE_ROWS if after is None else _STREAM_ROWS
        if self.limit is not None:
            page = min(page, self.limit - fetched)
        return _Statement(
            sql.SQL(
                "SELECT {} FROM frame_metadata WHERE camera_id = {} AND captured_at >= {}"
                " AND captured_at < {}{keyset}"
                " ORDER BY captured_at {dir}, frame_number {dir} LIMIT {page}"
            ).format(
                _FRAME_COLUMNS,
                value("camera"),
                value("start"),
                value("end"),
                keyset=keyset,
                dir=direction,
                page=value("page"),
            ),
            {
                "camera": self.camera_id,
                "start": self.start,
                "end": self.end,
                "after_at": after[0] if after else None,
                "after_number": after[1] if after else None,
                "page": page,
            },
            stream=after is not None,
        )


def _ahead(moment: datetime, width: timedelta, end: datetime) -> datetime:
    """``width`` after ``moment``, but not past ``end`` (nor past the
    largest datetime: no overflow near it)."""
    return end if end - moment <= width else moment + width


def _motion_statement(
    start: datetime, end: datetime, camera_id: str | None, min_score: float
) -> _Statement:
    # The literal matches the partial index's predicate, so the planner may
    # use it whatever the parameters; below the threshold it cannot.
    indexed = (
        sql.SQL(" AND motion_score >= 0.5") if min_score >= _MOTION_INDEX_THRESHOLD else sql.SQL("")
    )
    camera = (
        sql.SQL(" AND camera_id = {}").format(_param("camera"))
        if camera_id is not None
        else sql.SQL("")
    )
    return _Statement(
        sql.SQL(
            "SELECT {} FROM frame_metadata WHERE captured_at >= {} AND captured_at < {}"
            "{indexed} AND motion_score >= {}{camera}"
            " ORDER BY captured_at, camera_id, frame_number"
        ).format(
            _FRAME_COLUMNS,
            _param("start"),
            _param("end"),
            _param("min_score"),
            indexed=indexed,
            camera=camera,
        ),
        {"start": start, "end": end, "camera": camera_id, "min_score": min_score},
        stream=True,
    )


@attrs.frozen
class _Search:
    """A search, run as one statement or as a few: `first` gives the first,
    `next` the one after a statement that gave ``records`` (None when done),
    as for `_FramesPages`."""

    contains: bytes | None
    label: str | None
    min_confidence: float | None
    start: datetime
    end: datetime
    camera_id: str | None
    limit: int

    def first(self) -> _Statement:
        if self.camera_id is not None:
            return self._one_camera()
        if self._by_detections():
            return self._by_time()
        if self.contains is not None:
            middle = _ahead(self.start, _SEARCH_FIRST_WINDOW, self.end)
            return self._window(self.start, middle, self.limit, "first")
        return self._window(self.start, _ahead(self.start, _SEARCH_WINDOW, self.end), self.limit)

    def _by_detections(self) -> bool:
        """A search of every camera by detection alone: one statement that
        walks the frames with detections in time order (migration 0010),
        the first hour first, and ends where the limit is filled."""
        return self.contains is None and (self.label is not None or self.min_confidence is not None)

    def next(self, page: _Statement, records: list[FrameRecord], fetched: int) -> _Statement | None:
        """A search of one camera is one statement, and so is a search of
        every camera by detection alone (`_by_detections`). Across every
        camera, a search for metadata takes a second statement only when
        its first minute did not fill the limit (`_rest_then_index`); one
        with no condition at all reads windows that double until the limit
        is filled, where one statement over the whole range would read and
        sort all of it (every camera's frames are found only by camera)."""
        if self.camera_id is not None or self._by_detections() or fetched >= self.limit:
            return None
        if self.contains is not None:
            if "first_end" not in page.params or page.params["first_end"] >= self.end:
                return None
            return self._rest_then_index(page.params["first_end"], self.limit - fetched)
        window_end = page.params["window_end"]
        if window_end >= self.end:
            return None
        width = 2 * (window_end - page.params["window_start"])
        return self._window(window_end, _ahead(window_end, width, self.end), self.limit - fetched)

    def _filters(self, *, contains: bool = True) -> list[sql.Composable]:
        """The conditions on each frame; ``contains`` False leaves the
        metadata condition to the GIN index."""
        filters: list[sql.Composable] = []
        if self.label is not None or self.min_confidence is not None:
            # The literal matches the partial indexes of frames with
            # detections (migrations 0008 and 0010): walked by key, they
            # skip the frames without any. Labels and scores are written
            # together, both NULL when a frame has no detection.
            filters.append(sql.SQL("detection_labels IS NOT NULL"))
        if self.label is not None:
            filters.append(sql.SQL("%(label)s = ANY(detection_labels)"))
        if self.min_confidence is not None:
            # Compared as real, as stored. Alone, the whole condition; with a
            # label, a cheap sieve before the pairing of labels and scores
            # (a subplan per frame): most frames with the label have no
            # score that high (an hour of every camera by label at 0.9,
            # plain SQL: 3.48 against 2.96 ms at p50, alternating).
            filters.append(sql.SQL("%(min_confidence)s::real <= ANY(detection_scores)"))
        if self.label is not None and self.min_confidence is not None:
            filters.append(
                sql.SQL(
                    "EXISTS (SELECT FROM unnest(detection_labels, detection_scores)"
                    " AS d(l, s) WHERE d.l = %(label)s AND d.s >= %(min_confidence)s::real)"
                )
            )
        if self.contains is not None and contains:
            # Out of the GIN index's reach: matched row by row along the key.
            # Inside CASE, the planner guesses that half the rows match, not
            # 1 %, and walks the key in order to the limit. With the plain
            # condition its plans made for the values (the first executions,
            # or every one with prepare_threshold=None) sorted a bitmap scan
            # of the whole range: one camera-hour of a common value took
            # 8.95 against 1.91 ms at p50 (docs/measurements.md, "What the
            # figures led to").
            filters.append(
                sql.SQL(
                    "CASE WHEN coalesce(metadata, '{}') @> %(contains)s::jsonb"
                    " THEN true ELSE false END"
                )
            )
        return filters

    def _params(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "camera": self.camera_id,
            "contains": self.contains.decode() if self.contains is not None else None,
            "label": self.label,
            "min_confidence": self.min_confidence,
            "limit": self.limit,
        }

    def _where(self, start: str = "start", end: str = "end") -> sql.Composable:
        """The range from the parameters named ``start`` and ``end``, the
        camera if one, and `_filters`."""
        conditions: list[sql.Composable] = [
            sql.SQL("captured_at >= {} AND captured_at < {}").format(
                sql.Placeholder(start), sql.Placeholder(end)
            )
        ]
        if self.camera_id is not None:
            conditions.append(sql.SQL("camera_id = %(camera)s"))
        return sql.SQL(" AND ").join(conditions + self._filters())

    def _one_camera(self) -> _Statement:
        # The primary key (or 0008's index) narrows the range to a few
        # thousand rows; intersecting the GIN index over whole chunks costs
        # more.
        query = sql.SQL(
            "SELECT {} FROM frame_metadata WHERE {} ORDER BY captured_at, camera_id,"
            " frame_number LIMIT %(limit)s"
        ).format(_FRAME_COLUMNS, self._where())
        return _Statement(query, self._params())

    def _by_time(self) -> _Statement:
        # Every camera by detection: the first frames by time alone (0010's
        # index), one more than the limit, then in framemeta's order. Ordered
        # by time alone, a compressed chunk (community edition, ordered by
        # time within each camera) merges its cameras' batches and
        # decompresses only the first few; with the camera in the order, it
        # decompressed the whole day (a label at 0.9 in a day of 12 cameras:
        # 77 against 4.9 ms at p50; on the Apache edition 2.33 against
        # 1.80). Frames at the same time come in any order, so when the
        # limit falls among frames of one time (the last one fetched and the
        # one before it share it), all the frames of that time are fetched
        # (a one-time filter: the statement does not read them otherwise).
        # FETCH FIRST ... WITH TIES would say it in one clause, but
        # TimescaleDB's ordered ChunkAppend bounds its children's sorts by
        # the limit as if it were a plain one. The limit comes from a
        # one-value subquery: as a parameter, the community edition's server
        # planned every call for its value (0.68 ms), as for `frames`.
        #
        # The walk takes the first hour first (`_DETECTION_FIRST_WINDOW`),
        # and the rest of the range only when that hour held fewer frames
        # than the limit (a one-time filter). The limit is most often
        # filled within it, and a compressed chunk then sorts the batches
        # of that hour (60 here), not the whole day's (864): 0.22 against
        # 0.58 ms of the server's time.
        query = sql.SQL(
            """
            WITH head AS MATERIALIZED (
                SELECT {columns} FROM frame_metadata WHERE {head}
                ORDER BY captured_at LIMIT (SELECT %(limit)s + 1)
            ), first AS MATERIALIZED (
                SELECT * FROM head
                UNION ALL (
                SELECT {columns} FROM frame_metadata
                 WHERE {rest} AND (SELECT count(*) FROM head) < %(limit)s
                 ORDER BY captured_at LIMIT (SELECT %(limit)s + 1 - count(*) FROM head))
            ), tail AS MATERIALIZED (
                SELECT max(captured_at) AS at, count(*) > %(limit)s AS cut FROM first
            )
            SELECT * FROM first
             WHERE captured_at < (SELECT at FROM tail) OR NOT (SELECT cut FROM tail)
            UNION ALL
            SELECT {columns} FROM frame_metadata
             WHERE {where} AND captured_at = (SELECT at FROM tail) AND (SELECT cut FROM tail)
               AND (SELECT count(*) FROM first WHERE captured_at = (SELECT at FROM tail)) > 1
            ORDER BY captured_at, camera_id, frame_number LIMIT %(limit)s
            """
        ).format(
            columns=_FRAME_COLUMNS,
            head=self._where(end="split"),
            rest=self._where(start="split"),
            where=self._where(),
        )
        split = _ahead(self.start, _DETECTION_FIRST_WINDOW, self.end)
        return _Statement(query, self._params() | {"split": split})

    def _window(
        self, start: datetime, end: datetime, limit: int, name: str = "window"
    ) -> _Statement:
        """Each camera's frames in ``[start, end)`` walked by key, matched row
        by row; the cameras come from the daily rollup (a few rows each).
        Its parameters are named after ``name``, so that one statement can
        hold several windows."""
        query = sql.SQL(
            """
            SELECT found.* FROM (
                SELECT DISTINCT camera_id FROM frame_stats_1d
                WHERE bucket >= {floor} AND bucket < {end}
            ) AS c
            CROSS JOIN LATERAL (
                SELECT {columns} FROM frame_metadata AS m
                WHERE m.camera_id = c.camera_id AND m.captured_at >= {start}
                  AND m.captured_at < {end}{filters}
                ORDER BY m.captured_at, m.frame_number LIMIT {limit}
            ) AS found
            ORDER BY captured_at, camera_id, frame_number LIMIT {limit}
            """
        ).format(
            columns=_FRAME_COLUMNS,
            filters=sql.SQL("").join(sql.SQL(" AND {}").format(f) for f in self._filters()),
            start=sql.Placeholder(f"{name}_start"),
            end=sql.Placeholder(f"{name}_end"),
            floor=sql.Placeholder(f"{name}_floor"),
            limit=sql.Placeholder(f"{name}_limit"),
        )
        params = self._params() | {
            f"{name}_start": start,
            f"{name}_end": end,
            f"{name}_floor": _floor(start, timedelta(days=1)),
            f"{name}_limit": limit,
        }
        return _Statement(query, params)

    def _rest_then_index(self, middle: datetime, limit: int) -> _Statement:
        # A search of every camera for metadata. A common value fills the
        # limit within a minute, found by walking each camera's frames in
        # key order from the start (`first`, a statement of its own); the
        # GIN index would fetch every match of whole chunks first (a quarter
        # of a day's frames: 250 ms). Only when that minute fell short comes
        # this: the next four minutes walked the same way, then, only if the
        # limit is still not filled (a one-time filter), the GIN index for
        # the rest of the range, which finds a rare value in a few
        # milliseconds. With all three steps in one statement, the common
        # case paid for the start-up of the two it did not run: 3.86 against
        # 2.29 ms at p50 for a day of every camera (prepared, alternating).
        #
        # The GIN step has no order to stop at: a value absent from the
        # first minutes and frequent later (a daytime value searched from
        # midnight) had it fetch and sort every match in the rest of the
        # range (two days of 12 cameras: 967 ms). So it first takes up to
        # `_SEARCH_PROBE_ROWS` matches, or twice the limit, in the order the
        # heap holds them (`probe`, no sort; twice: a value with a little
        # more than the limit's matches would otherwise be read twice).
        # Fewer: those are all the matches, sorted.
        # As many: the limit's worth of matches are all at or before the
        # limit-th earliest of them, and a second pass reads the index only
        # up to that time, ANDed with the BRIN index on time (migration
        # 0012): 75 ms there. A value in one frame: 2.5 to 3.1 ms.
        #
        # With a label or a confidence too, the last step keeps its order:
        # the planner walks 0010's index of frames with detections by time
        # to the limit, where the probe's 1,000 matches cost 2-9x as much
        # (a review: a value in 1 % of frames with a label in a third, 9.7
        # against 53.7 ms at p50).
        late_start = max(middle, _ahead(self.start, _SEARCH_WINDOW, self.end))
        second = self._window(middle, late_start, limit, "second")
        matched = sql.SQL(" AND ").join(
            [
                sql.SQL("metadata @> %(contains)s::jsonb"),
                *self._filters(contains=False),
                sql.SQL("(SELECT count(*) FROM second) < %(second_limit)s"),
            ]
        )
        # The rest of the range: read in order (`ordered`), or probed first.
        ordered = self.label is not None or self.min_confidence is not None
        probe = sql.SQL(
            """,
            probe AS MATERIALIZED (
                SELECT * FROM (
                    SELECT {columns} FROM frame_metadata
                     WHERE captured_at >= %(second_end)s AND captured_at < %(end)s AND {matched}
                    OFFSET 0) AS found
                LIMIT %(probe_rows)s
            ), bound AS MATERIALIZED (
                SELECT count(*) >= %(probe_rows)s AS capped,
                       (SELECT p.captured_at FROM probe AS p ORDER BY p.captured_at
                        OFFSET %(second_limit)s - 1 LIMIT 1) + interval '1 microsecond' AS until
                  FROM probe
            )"""
        )
        rest = sql.SQL(
            """
            (SELECT * FROM probe WHERE NOT (SELECT capped FROM bound)
              ORDER BY captured_at, camera_id, frame_number LIMIT %(second_limit)s)
            UNION ALL
            (SELECT {columns} FROM frame_metadata
              WHERE captured_at >= %(second_end)s AND captured_at < (SELECT until FROM bound)
                AND {matched} AND (SELECT capped FROM bound)
              ORDER BY captured_at, camera_id, frame_number LIMIT %(second_limit)s)"""
        )
        if ordered:
            probe = sql.SQL("")
            rest = sql.SQL(
                """
                (SELECT {columns} FROM frame_metadata
                  WHERE captured_at >= %(second_end)s AND captured_at < %(end)s AND {matched}
                  ORDER BY captured_at, camera_id, frame_number LIMIT %(second_limit)s)"""
            )
        query = sql.SQL(
            """
            WITH second AS MATERIALIZED ({second}){probe}
            SELECT * FROM (
                SELECT * FROM second
                UNION ALL {rest}
            ) AS matches
            ORDER BY captured_at, camera_id, frame_number LIMIT %(second_limit)s
            """
        ).format(
            second=second.query,
            probe=probe.format(columns=_FRAME_COLUMNS, matched=matched),
            rest=rest.format(columns=_FRAME_COLUMNS, matched=matched),
        )
        return _Statement(
            query, {**second.params, "probe_rows": max(2 * limit, _SEARCH_PROBE_ROWS)}
        )


def _cameras_statement() -> _Statement:
    # One row per camera for the buckets before the cut, plus the 1-minute
    # rows from the cut on (migrations 0011 and 0013): the Apache edition's
    # trigger keeps the rows current and its cut is 'infinity'; the
    # community edition's job recounts them every five minutes up to where
    # the 1-minute aggregate is materialised. Summing every daily row
    # instead read cameras times days (50 ms for 1,200 cameras and a year);
    # cutting at the hourly watermark re-aggregated an hour or more of
    # 1-minute rows at every call (42 ms for 1,000 cameras).
    return _Statement(
        sql.SQL(
            """
            SELECT camera_id, min(first_at), max(last_at), sum(frames)::bigint
              FROM (SELECT camera_id, first_captured_at AS first_at,
                           last_captured_at AS last_at, frames
                      FROM frame_cameras
                    UNION ALL
                    SELECT camera_id, first_captured_at, last_captured_at, frames
                      FROM frame_stats_1m
                     WHERE bucket >= (SELECT value::timestamptz FROM framemeta_config
                                       WHERE key = 'cameras_counted_before')) AS parts
             GROUP BY camera_id ORDER BY camera_id
            """
        ),
        {},
    )


def _camera(row: tuple[Any, ...]) -> CameraInfo:
    camera_id, first_seen, last_seen, frames = row
    return CameraInfo(camera_id, _utc(first_seen), _utc(last_seen), int(frames))


# What a plan needs to know: where each level's kept data begins (its oldest
# chunk; a continuous aggregate's materialization hypertable), the edition,
# the motion threshold, whether the level stores its minima and maxima as
# real (continuous aggregates) or as read (migration 0005's tables), where
# the level's rows are stored (the daily level's: `_lost_statement`), and
# whether its rows keep their numbers packed (migration 0007's tables).
_COVERAGE: Final = _Statement(
    sql.SQL(
        "SELECT s.level, s.oldest, framemeta_retention(s.level), framemeta_edition(),"
        "       (SELECT value::real FROM framemeta_config WHERE key = 'motion_threshold'),"
        "       (SELECT a.atttypid = 'real'::regtype FROM pg_attribute AS a"
        "         WHERE a.attrelid = s.relation::regclass AND a.attname = 'motion_min'),"
        "       s.storage_schema, s.storage_table,"
        "       EXISTS (SELECT FROM pg_attribute AS a WHERE a.attrelid = s.relation::regclass"
        "                  AND a.attname = 'packed_numbers' AND NOT a.attisdropped),"
        "       (SELECT d.time_interval FROM timescaledb_information.dimensions AS d"
        "         WHERE d.hypertable_schema = s.storage_schema"
        "           AND d.hypertable_name = s.storage_table"
        "         ORDER BY d.dimension_number LIMIT 1)"
        "  FROM ({}) AS s ORDER BY s.position"
    ).format(sql.SQL(LEVEL_STORAGE_SQL)),
    {},
)


_WATERMARKS: Final = _Statement(sql.SQL(WATERMARKS_SQL), {})

# TimescaleDB's internal times are microseconds since the Unix epoch; its
# invalidation logs use the type's extremes for "from the beginning" and "to
# the end", which no datetime holds. Clamped to the second day of year 1
# and the last minute but one of the day before the last of year 9999 (the
# stretches end a minute after their last): a day from either end, so that
# they stay datetimes in the session's time zone, whatever it is.
_FIRST_US: Final = -62135510400000000
_LAST_US: Final = 253402214339999999
_PENDING: Final = _Statement(
    sql.SQL(
        """
        SELECT c.user_view_name, lower(r), upper(r)
          FROM _timescaledb_catalog.continuous_agg AS c
         CROSS JOIN LATERAL (
               SELECT range_agg(tstzrange(
                          time_bucket('1 minute', _timescaledb_functions.to_timestamp(
                              greatest(i.lo, {first}))),
                          time_bucket('1 minute', _timescaledb_functions.to_timestamp(
                              least(i.hi, {last}))) + interval '1 minute')) AS stretches
                 FROM (SELECT lowest_modified_value, greatest_modified_value
                         FROM _timescaledb_catalog.continuous_aggs_materialization_invalidation_log
                        WHERE materialization_id = c.mat_hypertable_id
                       UNION ALL
                       SELECT lowest_modified_value, greatest_modified_value
                         FROM _timescaledb_catalog.continuous_aggs_hypertable_invalidation_log
                        WHERE hypertable_id = c.raw_hypertable_id) AS i (lo, hi)
                WHERE i.hi >= {first} AND i.lo <= {last}) AS p
         CROSS JOIN LATERAL unnest(p.stretches) AS r
         WHERE c.user_view_schema = current_schema()
        """
    ).format(first=sql.Literal(_FIRST_US), last=sql.Literal(_LAST_US)),
    {},
)
"""Community edition: per continuous aggregate (by its view's name), the
stretches TimescaleDB's invalidation logs hold for it, in whole minutes,
merged: the times of frames written, changed or deleted since a refresh
last covered them, and what was never materialised. They come from the
aggregate's own log and from the log of what it is computed from (the raw
hypertable, or the finer aggregate's materialization hypertable), which the
next refresh of any aggregate over it moves to the aggregate's own log.
`_pending` keeps those that matter. The catalog tables are readable by
every role."""


def _follow_ups(
    rows: list[tuple[Any, ...]],
) -> tuple[_Statement | None, _Statement | None, _Statement | None]:
    """What a plan asks after `_COVERAGE` (``rows``): `_lost_statement`,
    and `_WATERMARKS` and `_PENDING` on the community edition (None:
    nothing to ask)."""
    community = bool(rows) and rows[0][3] == "timescale"
    if not community:
        return _lost_statement(rows), None, None
    return _lost_statement(rows), _WATERMARKS, _PENDING


def _pending(
    stretch_rows: list[tuple[Any, ...]],
    kept_from: Mapping[str, datetime | None],
    watermarks: Mapping[str, datetime | None],
) -> dict[str, tuple[TimeRange, ...]]:
    """Each rollup level's `LevelState.pending`, in the level's whole
    buckets, from `_PENDING`'s rows (view, start, end). A level's buckets
    below its watermark (``watermarks``; None or missing: never refreshed,
    nothing is below it) are stale where its own logs or those of any
    finer level hold a stretch: a coarser level can be materialised past a
    finer one's watermark (after a silence, the hourly level to the end of
    the hour, the 1-minute one to the last frame), and frames that then
    arrive there are logged for the finer level only. Each log counts from
    where the level below it keeps data on (``kept_from``): before, nothing
    can be refreshed, and TimescaleDB logs the range of every chunk
    retention drops. A level is also stale wherever the level it is
    computed from is, below its watermark and past it (read in real time)
    alike."""
    levels = {relation: level for level, relation in _RELATIONS.items()}
    logged: dict[str, list[tuple[datetime, datetime]]] = {}
    for view, start, end in stretch_rows:
        level = levels.get(view)
        bound = kept_from.get(_FINER[level]) if level is not None else None
        if level is not None and bound is not None and end > bound:
            logged.setdefault(level, []).append((max(start, bound), end))
    pending: dict[str, tuple[TimeRange, ...]] = {}
    below: list[tuple[datetime, datetime]] = []  # the logs of this level and the finer ones
    for level in ("1m", "1h", "1d"):
        width = _WIDTHS[level]
        assert width is not None
        below += logged.get(level, [])
        mark = watermarks.get(level)
        stretches = [
            (_floor(start, width), min(_ceil_or_last(end, width), mark))
            for start, end in below
            if mark is not None and start < mark
        ]
        stretches += [
            (_floor(finer.start, width), _ceil_or_last(finer.end, width))
            for finer in pending.get(_FINER[level], ())
        ]
        pending[level] = _merged(stretches)
    return pending


def _ceil_or_last(moment: datetime, width: timedelta) -> datetime:
    """`_ceil`, or the last moment a datetime holds where that is past it."""
    try:
        return _ceil(moment, width)
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)


def _merged(stretches: Iterable[tuple[datetime, datetime]]) -> tuple[TimeRange, ...]:
    """``stretches`` (start, end) merged where they overlap or touch, oldest
    first."""
    merged: list[list[datetime]] = []
    for start, end in sorted(stretches):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple(TimeRange(start, end) for start, end in merged)


def _lost_statement(rows: list[tuple[Any, ...]]) -> _Statement | None:
    """For each level whose oldest chunk begins after the chunk that holds its
    retention horizon (``rows``: `_COVERAGE`'s; `_complete_from`), the
    newest frame the daily rollup counts between the two: a frame the level
    lost, though its retention would keep it (chunks dropped by hand, or by
    a shorter retention than the one configured now). None, nothing to ask,
    when every level's oldest chunk begins at or before its horizon
    (retention has run there). In a database younger than a horizon it is
    asked and finds nothing: the rollup has no day before the level's first
    chunk (every level's chunks begin at a midnight). It reads the newest
    such day from the rollup's own storage (a continuous aggregate's
    materialization hypertable, not its real-time view, which would
    aggregate raw frames past the watermark), by its bucket index (migration
    0006 on the Apache edition)."""
    now = datetime.now(UTC)
    asked = [
        (level, oldest, since)
        for level, oldest, horizon, *_, interval in rows
        if oldest is not None
        and horizon is not None
        and oldest > (since := _chunk_floor(now - horizon, interval))
    ]
    if not asked:
        return None
    daily = next(row for row in rows if row[0] == "1d")
    query = sql.SQL(
        """
        SELECT c.level,
               (SELECT max(d.last_captured_at) FROM {daily} AS d
                 WHERE d.bucket = (SELECT max(n.bucket) FROM {daily} AS n
                                    WHERE n.bucket < c.oldest
                                      AND n.bucket > c.since - interval '1 day')
                   AND d.last_captured_at >= c.since)
          FROM unnest(%(levels)s::text[], %(oldest)s::timestamptz[], %(since)s::timestamptz[])
               AS c (level, oldest, since)
        """
    ).format(daily=sql.Identifier(daily[6], daily[7]))
    levels, oldests, sinces = (list(column) for column in zip(*asked, strict=True))
    return _Statement(query, {"levels": levels, "oldest": oldests, "since": sinces})


_ROLLUP_COLUMNS: Final = sql.SQL(
    "camera_id, bucket, frames, first_captured_at, last_captured_at, first_frame_number,"
    " last_frame_number, motion_frames, motion_sum, {motion_min}, {motion_max}, motion_events,"
    " brightness_frames, brightness_sum, {brightness_min}, {brightness_max}, detections,"
    " detections_by_label"
)
_REGROUPED: Final = sql.SQL(
    "camera_id, time_bucket(%(bucket)s, bucket), sum(frames)::bigint, min(first_captured_at),"
    " max(last_captured_at), min(first_frame_number), max(last_frame_number),"
    " sum(motion_frames)::bigint, sum(motion_sum), {motion_min}, {motion_max},"
    " sum(motion_events)::bigint, sum(brightness_frames)::bigint, sum(brightness_sum),"
    " {brightness_min}, {brightness_max}, sum(detections)::bigint,"
    " framemeta_sum_counts(detections_by_label)"
)
_EXTREMES: Final = ("motion_min", "motion_max", "brightness_min", "brightness_max")


def _extremes(*, regroup: bool, real: bool) -> dict[str, sql.Composable]:
    """A rollup's minima and maxima as read (``regroup``: the minimum of
    the minima, the maximum of the maxima). A level that stores them as
    real (a continuous aggregate) has them converted through their text,
    so that 0.8 arrives as 0.8, not as 0.800000011920929; the Apache
    edition's tables store them so converted (migration 0005)."""
    values = {name: f"{name[-3:]}({name})" if regroup else name for name in _EXTREMES}
    return {
        name: sql.SQL(f"{value}::text::float8" if real else value) for name, value in values.items()
    }


# Label counts are grouped separately from the frames that have detections
# (unnest, then count): about six times faster than a per-row jsonb aggregate.
_FROM_RAW: Final = sql.SQL(
    """
    WITH totals AS (
        SELECT camera_id, time_bucket(%(bucket)s, captured_at) AS bucket, count(*) AS frames,
               min(captured_at) AS first_at, max(captured_at) AS last_at,
               min(frame_number) AS first_number, max(frame_number) AS last_number,
               count(motion_score) AS motion_frames,
               coalesce(sum(motion_score::double precision), 0) AS motion_sum,
               min(motion_score)::text::float8 AS motion_min,
               max(motion_score)::text::float8 AS motion_max,
               count(*) FILTER (WHERE motion_score >= %(threshold)s) AS motion_events,
               count(brightness) AS brightness_frames,
               coalesce(sum(brightness::double precision), 0) AS brightness_sum,
               min(brightness)::text::float8 AS brightness_min,
               max(brightness)::text::float8 AS brightness_max,
               coalesce(sum(detection_count), 0)::bigint AS detections
        FROM frame_metadata
        WHERE captured_at >= %(start)s AND captured_at < %(end)s{camera}
        GROUP BY 1, 2
    ), labels AS (
        SELECT camera_id, bucket, jsonb_object_agg(label, n) AS by_label
        FROM (
            SELECT camera_id, time_bucket(%(bucket)s, captured_at) AS bucket, label,
                   count(*) AS n
            FROM frame_metadata, unnest(detection_labels) AS label
            WHERE captured_at >= %(start)s AND captured_at < %(end)s{camera}
              AND detection_count > 0
            GROUP BY 1, 2, 3
        ) AS per_label
        GROUP BY 1, 2
    )
    SELECT totals.*, coalesce(labels.by_label, '{{}}')
    FROM totals LEFT JOIN labels USING (camera_id, bucket)
    ORDER BY 1, 2
    """
)


# Every source's rows go through one projection, in StatsRow's field order
# (but a level's own buckets where it keeps its numbers packed,
# `_PACKED_READ`): binary results decode a third faster; each source gives
# its minima and maxima as read (the real 0.8 as 0.8, `_extremes`);
# averages are divided here; label counts come as JSON text for orjson
# (psycopg's jsonb loader costs a Python call per row).
_STATS_OUTER: Final = sql.SQL(
    """
    SELECT camera_id, bucket, frames, first_at, last_at, first_number, last_number,
           motion_frames, motion_sum / nullif(motion_frames, 0), motion_min, motion_max,
           motion_events, brightness_frames, brightness_sum / nullif(brightness_frames, 0),
           brightness_min, brightness_max, detections, by_label::text
    FROM ({}) AS stats (camera_id, bucket, frames, first_at, last_at, first_number,
                        last_number, motion_frames, motion_sum, motion_min, motion_max,
                        motion_events, brightness_frames, brightness_sum, brightness_min,
                        brightness_max, detections, by_label)
    ORDER BY camera_id, bucket
    """
)


# A level's own buckets, from a table that keeps each row's numbers packed
# (migration 0007): 6 values a row instead of 18. The server sends each value
# through its type's send function; for a week of hourly stats of 12
# cameras, received by libpq alone, that took 9.18 ms at p50 as 18 columns
# and 3.76 ms packed (docs/measurements.md, "What the figures led to").
_PACKED_READ: Final = sql.SQL(
    "SELECT camera_id, bucket, first_captured_at, last_captured_at, packed_numbers,"
    " detections_by_label::text FROM {} WHERE bucket >= %(start)s AND bucket < %(end)s{}"
    " ORDER BY 1, 2"
)


_STORED_COLUMNS: Final = _ROLLUP_COLUMNS.format(**_extremes(regroup=False, real=False))
"""A rollup level's columns as stored."""


def _stats_call(
    part: PlanPart, bucket: timedelta, camera_id: str | None, coverage: _Coverage
) -> tuple[_Statement, Callable[[tuple[Any, ...]], StatsRow]]:
    """The statement that reads ``part`` of a plan, and what makes its rows
    into `StatsRow`s: `_packed_stats_row` where the part is a level's own
    buckets and the level keeps its numbers packed, else `_stats_row`
    (looked up when called: tests replace it)."""
    camera = sql.SQL(" AND camera_id = %(camera)s") if camera_id is not None else sql.SQL("")
    params = {
        "start": part.start,
        "end": part.end,
        "bucket": bucket,
        "camera": camera_id,
        "threshold": coverage.threshold,
    }
    real = part.source in coverage.real_levels
    if part.source in coverage.packed_levels and bucket == _WIDTHS[part.source]:
        query = _PACKED_READ.format(sql.Identifier(_RELATIONS[part.source]), camera)
        return _Statement(query, params, binary=True, stream=True), _packed_stats_row
    if part.source == "raw":
        query = _FROM_RAW.format(camera=camera)
    else:
        level, params["stored_to"] = _level_source(part, coverage)
        query = _rollup_read(level, camera, real=real, own=bucket == _WIDTHS[part.source])
    return _Statement(_STATS_OUTER.format(query), params, binary=True, stream=True), _stats_row


def _rollup_read(
    level: sql.Composable, camera: sql.Composable, *, real: bool, own: bool
) -> sql.Composed:
    """A rollup level's rows in ``[start, end)`` from ``level``
    (`_level_source`): ``own``, its own buckets, else regrouped into the
    asked ones."""
    if own:
        # The level's own buckets: read them as stored, nothing to regroup,
        # sorted before a continuous aggregate's minima and maxima are
        # converted (`_extremes`), so that the sort moves the stored values
        # and not their conversions: on the community edition, a week of
        # hourly stats through the API took 7.42 against 8.21 ms at p50 (300
        # alternating calls).
        return sql.SQL(
            "SELECT {} FROM (SELECT {} FROM {} WHERE bucket >= %(start)s AND bucket < %(end)s{}"
            " ORDER BY 1, 2) AS sorted"
        ).format(
            _ROLLUP_COLUMNS.format(**_extremes(regroup=False, real=real)),
            _STORED_COLUMNS,
            level,
            camera,
        )
    return sql.SQL(
        "SELECT {} FROM {} WHERE bucket >= %(start)s AND bucket < %(end)s{}"
        " GROUP BY 1, 2 ORDER BY 1, 2"
    ).format(_REGROUPED.format(**_extremes(regroup=True, real=real)), level, camera)


def _level_source(part: PlanPart, coverage: _Coverage) -> tuple[sql.Composable, datetime | None]:
    """The relation ``part`` of a rollup level is read from, and the
    watermark it splits at (None: no split). A continuous aggregate's view
    (community edition) gives its materialised buckets below the watermark
    and computes the rest from the level below, and the server plans that
    whole real-time hierarchy (1d over 1h over 1m over raw) at every read.
    The buckets below the watermark (as last read, at most
    `_COVERAGE_TTL_S` ago: a refresh only moves it on) come straight from
    the materialization hypertable instead, the same rows the view would
    give; only buckets from there on go through the view. Dropping an
    aggregate's newest chunks by hand, or recreating it, within those
    seconds would make the cached watermark or table wrong until the next
    read; framemeta does neither (retention drops the oldest chunks)."""
    view = sql.Identifier(_RELATIONS[part.source])
    stored = coverage.stored.get(part.source)
    mark = coverage.materialized_to.get(part.source)
    if stored is None or mark is None or mark <= part.start:
        return view, None
    table = sql.Identifier(*stored)
    if mark >= part.end:
        return table, None
    split = sql.SQL(
        "(SELECT {columns} FROM {table} WHERE bucket < %(stored_to)s"
        " UNION ALL SELECT {columns} FROM {view} WHERE bucket >= %(stored_to)s) AS level"
    ).format(columns=_STORED_COLUMNS, table=table, view=view)
    return split, mark


class _ReadStatsRow(StatsRow):
    """A `StatsRow` read from the database: it keeps the result row (the
    label counts as their JSON text) and reads each field from it; the
    label counts are parsed on first read and kept (two threads reading at
    once may both parse, and get equal dicts). Building one costs a fifth
    of building a `StatsRow`; a field read costs more (docs/measurements.md,
    "What the figures led to"). It compares equal to, and prints as, the `StatsRow`
    with the same fields; pickled or copied it becomes one."""

    __slots__ = ("_labels", "_row")
    _row: tuple[Any, ...]
    """The result row, in field order, the label counts last (as JSON text
    until parsed)."""
    _labels: dict[str, int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Built with values (attrs.evolve).
        row = _stats_values(StatsRow(*args, **kwargs))
        _set_row(self, row)
        _set_labels(self, row[-1])

    @property
    def detections_by_label(self) -> dict[str, int]:
        try:
            return self._labels
        except AttributeError:
            labels: dict[str, int] = orjson.loads(self._row[-1])
            _set_labels(self, labels)
            return labels

    def __reduce__(self) -> tuple[Any, ...]:
        return (StatsRow, _stats_values(self))

    def __repr__(self) -> str:
        return _repr_as(StatsRow, self, super().__repr__())


_set_row = _slot_access(_ReadStatsRow, "_row")[1]
_set_labels = _slot_access(_ReadStatsRow, "_labels")[1]


def _row_field(index: int) -> property:
    def get(row: _ReadStatsRow) -> Any:
        return row._row[index]

    return property(get)


for _index, _name in enumerate(_STATS_FIELDS[:-1]):
    setattr(_ReadStatsRow, _name, _row_field(_index))
del _index, _name


def _stats_row(row: tuple[Any, ...]) -> StatsRow:
    if row[1].tzinfo is not UTC:  # a session not in UTC (a pool of the caller's own)
        values = list(row)
        for index in (1, 3, 4):  # bucket, first_at, last_at
            values[index] = _utc(values[index])
        row = tuple(values)
    stats = _new(_ReadStatsRow)
    _set_row(stats, row)
    return stats


_PACKED: Final = struct.Struct(">4q3d2q3dq")
"""Migration 0007's ``packed_numbers``: frames, first and last frame
number, motion frames, motion average, minimum and maximum, motion events,
brightness frames, brightness average, minimum and maximum, detections
(big-endian; a float is NaN where the column is NULL)."""
_unpack_numbers: Final = _PACKED.unpack


# StatsRow's fields in `_PACKED`, and the two times beside it in a row of
# `_PACKED_READ` (camera, bucket, first and last frame's time, `_PACKED`,
# label counts); the camera, the bucket and the label counts sit where a
# `_ReadStatsRow`'s row has them.
_PACKED_FIELDS: Final = (
    "frames",
    "first_frame_number",
    "last_frame_number",
    "motion_frames",
    "motion_avg",
    "motion_min",
    "motion_max",
    "motion_events",
    "brightness_frames",
    "brightness_avg",
    "brightness_min",
    "brightness_max",
    "detections",
)
_PACKED_TIMES: Final = {"first_captured_at": 2, "last_captured_at": 3}
_packed_values: Final = attrgetter(*_PACKED_FIELDS)


class _PackedStatsRow(_ReadStatsRow):
    """A `_ReadStatsRow` read with its numbers packed: its row is
    `_PACKED_READ`'s, and the numbers are unpacked when one of them is first
    read (two threads reading at once may both unpack, and get equal
    values). Building one costs what building its parent does; unpacking
    each row as it arrived cost 1.3 us a row, 2.6 ms of a week of hourly
    stats (docs/measurements.md, "What the figures led to")."""

    __slots__ = ("_numbers",)
    _numbers: tuple[Any, ...] | None
    """The numbers in `_PACKED_FIELDS` order, NULLs as None; None until
    first read (a test on each read, no exception on the first)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Built with values (attrs.evolve).
        built = StatsRow(*args, **kwargs)
        row = _stats_values(built)
        _set_row(self, (row[0], row[1], row[3], row[4], None, row[-1]))
        _set_numbers(self, _packed_values(built))
        _set_labels(self, row[-1])

    def _unpack(self) -> tuple[Any, ...]:
        (
            frames,
            first_number,
            last_number,
            motion_frames,
            motion_avg,
            motion_min,
            motion_max,
            motion_events,
            brightness_frames,
            brightness_avg,
            brightness_min,
            brightness_max,
            detections,
        ) = _unpack_numbers(self._row[4])
        # NaN, the only float unequal to itself, is NULL (a stored value is
        # never NaN). Spelled out: a generator over the 13 took twice as long.
        numbers = (
            frames,
            first_number,
            last_number,
            motion_frames,
            motion_avg if motion_avg == motion_avg else None,
            motion_min if motion_min == motion_min else None,
            motion_max if motion_max == motion_max else None,
            motion_events,
            brightness_frames,
            brightness_avg if brightness_avg == brightness_avg else None,
            brightness_min if brightness_min == brightness_min else None,
            brightness_max if brightness_max == brightness_max else None,
            detections,
        )
        _set_numbers(self, numbers)
        return numbers


_set_numbers = _slot_access(_PackedStatsRow, "_numbers")[1]


def _packed_field(index: int) -> property:
    def get(row: _PackedStatsRow) -> Any:
        numbers = row._numbers
        if numbers is None:
            numbers = row._unpack()
        return numbers[index]

    return property(get)


for _index, _name in enumerate(_PACKED_FIELDS):
    setattr(_PackedStatsRow, _name, _packed_field(_index))
for _name, _index in _PACKED_TIMES.items():
    setattr(_PackedStatsRow, _name, _row_field(_index))
del _index, _name


def _packed_stats_row(row: tuple[Any, ...]) -> StatsRow:
    if row[1].tzinfo is not UTC:  # a session not in UTC (a pool of the caller's own)
        row = (row[0], _utc(row[1]), _utc(row[2]), _utc(row[3]), row[4], row[5])
    stats = _new(_PackedStatsRow)
    _set_row(stats, row)
    _set_numbers(stats, None)
    return stats


# -- planning ---------------------------------------------------------------


@attrs.frozen
class _Coverage:
    """Where each level's data begins (None: nothing kept), read from the
    database at most every `_COVERAGE_TTL_S` seconds."""

    kept_from: Mapping[str, datetime | None]
    retention: Mapping[str, timedelta | None]
    edition: str
    threshold: float
    real_levels: frozenset[str]
    """The rollup levels that store minima and maxima as real."""
    packed_levels: frozenset[str]
    """The rollup levels whose rows keep their numbers packed
    (`_packed_stats_row`)."""
    lost: Mapping[str, datetime | None]
    """Per level, the newest frame the daily rollup counts between the
    level's retention horizon and its oldest chunk: a frame the level no
    longer holds, though its retention would keep it (None: none;
    `_lost_statement`)."""
    read_at: float
    materialized_to: Mapping[str, datetime | None] = attrs.field(factory=dict)
    """Community edition: each rollup level's watermark (None: never
    refreshed; `_WATERMARKS`). Empty on the Apache edition, whose rollups
    are current."""
    stored: Mapping[str, tuple[str, str]] = attrs.field(factory=dict)
    """Community edition: each rollup level's materialization hypertable
    (schema, name), read below its watermark (`_level_source`). Empty on
    the Apache edition."""
    chunk_interval: Mapping[str, timedelta | None] = attrs.field(factory=dict)
    """Each level's chunk time interval (`_complete_from`)."""
    pending: Mapping[str, tuple[TimeRange, ...]] = attrs.field(factory=dict)
    """Community edition: each rollup level's `LevelState.pending`
    (`_pending`). Empty on the Apache edition."""

    def expired(self) -> bool:
        """Whether to read it again: after `_COVERAGE_TTL_S` seconds, or at
        once while no raw chunk exists (a database with no frames yet would
        otherwise answer that nothing is kept until the TTL is over, though
        its first frames have arrived)."""
        return self.kept_from["raw"] is None or time.monotonic() - self.read_at > _COVERAGE_TTL_S

    def raw_since(self, now: datetime) -> datetime | None:
        """Where raw frames may still be kept: the oldest raw chunk, or the
        chunk that holds raw retention's horizon where that is older (a late
        frame may have made an older chunk since the coverage was read);
        None: no raw chunk."""
        oldest = self.kept_from["raw"]
        if oldest is None:
            return None
        interval = self.chunk_interval.get("raw")
        # Where raw is whole, as a plan reads it; None there: for all time,
        # so from the oldest chunk.
        return _complete_from(oldest, self.retention.get("raw"), now, None, interval) or oldest

    @classmethod
    def from_rows(
        cls,
        rows: list[tuple[Any, ...]],
        lost_rows: list[tuple[Any, ...]],
        watermark_rows: list[tuple[Any, ...]],
        pending_rows: list[tuple[Any, ...]],
    ) -> _Coverage:
        """From `_COVERAGE`'s rows, `_lost_statement`'s, `_WATERMARKS`' and
        `_PENDING`'s (if asked: see `_follow_ups`)."""
        kept: dict[str, datetime | None] = {}
        retention: dict[str, timedelta | None] = {}
        intervals: dict[str, timedelta | None] = {}
        for level, oldest, horizon, *_, interval in rows:
            kept[level] = oldest
            retention[level] = horizon
            intervals[level] = interval
        real = frozenset(row[0] for row in rows if row[5])
        packed = frozenset(row[0] for row in rows if row[8])
        lost = dict(lost_rows)
        edition, threshold = rows[0][3], rows[0][4]
        if edition == "timescale":
            # A continuous aggregate not materialised yet is computed from
            # the level below in real time: it covers what that one covers.
            for finer, level in (("raw", "1m"), ("1m", "1h"), ("1h", "1d")):
                if kept[level] is None:
                    kept[level] = kept[finer]
        levels = {relation: level for level, relation in _RELATIONS.items()}
        watermarks = {levels[view]: mark for view, mark in watermark_rows if view in levels}
        stored = {
            row[0]: (row[6], row[7])
            for row in rows
            if row[0] in watermarks and row[7] != _RELATIONS[row[0]]
        }
        return cls(
            kept,
            retention,
            edition,
            float(threshold),
            real,
            packed,
            lost,
            time.monotonic(),
            watermarks,
            stored,
            intervals,
            _pending(pending_rows, kept, watermarks) if watermarks else {},
        )

    def states(self) -> tuple[LevelState, ...]:
        """Every level's `LevelState`, raw first."""
        return tuple(
            LevelState(
                level,
                self.kept_from[level],
                self.retention.get(level),
                current=level not in self.materialized_to,
                materialized_to=self.materialized_to.get(level),
                pending=self.pending.get(level, ()),
            )
            for level in _WIDTHS
        )


def _floor(moment: datetime, width: timedelta) -> datetime:
    return _ORIGIN + (moment - _ORIGIN) // width * width


def _ceil(moment: datetime, width: timedelta) -> datetime:
    floor = _floor(moment, width)
    return floor if floor == moment else floor + width


def _chunk_floor(moment: datetime, interval: timedelta | None) -> datetime:
    """The start of the chunk of ``interval`` (the level's chunk time
    interval; None: unknown) that holds ``moment``: TimescaleDB aligns a
    time dimension's chunks on multiples of the interval since the Unix
    epoch."""
    if not interval:
        return moment
    try:
        return _EPOCH + (moment - _EPOCH) // interval * interval
    except OverflowError:
        return moment


def _complete_from(
    oldest_chunk: datetime,
    horizon: timedelta | None,
    now: datetime,
    lost: datetime | None,
    interval: timedelta | None = None,
) -> datetime | None:
    """Where a level's data is whole (None: for all time). Retention drops
    whole chunks that end before ``now - horizon``; the chunk that holds
    ``now - horizon`` (of ``interval``, the level's chunk time interval) and
    every later one were never dropped, so a level whose oldest chunk
    starts later simply had no data before it. Its oldest chunk's start
    alone would cut the bucket that straddles it (a 7-minute bucket across
    the midnight where a fresh database's first raw chunk begins), and
    ``now - horizon`` alone a bucket of several days that holds the start
    of that chunk (a 3-day bucket with frames 5 days back, where raw keeps
    7 days), from the answer, where every other level still counts their
    frames. Unless the daily rollup counts frames there that the level no
    longer holds (``lost``, the newest of them: chunks dropped by hand, or
    by a shorter retention than the one configured now): then the level is
    whole only after that frame."""
    if horizon is None:
        return None
    if lost is not None:
        return lost + timedelta(microseconds=1)
    return min(oldest_chunk, _chunk_floor(now - horizon, interval))


def _make_plan(
    start: datetime,
    end: datetime,
    bucket: timedelta,
    resolution: str,
    coverage: _Coverage,
) -> StatsPlan:
    first, last = _floor(start, bucket), _ceil(end, bucket)
    count = (last - first) // bucket
    reasons = [
        f"the range is {_show_length(last - first)} long in whole buckets: "
        f"{count:,} {_show_width(bucket)} bucket{'s' if count != 1 else ''} per camera"
    ]
    if resolution == "auto":
        candidates = [
            level
            for level in ("1d", "1h", "1m")
            if bucket % _WIDTHS[level] == timedelta(0)  # type: ignore[operator]
        ] + ["raw"]
        usable = [level for level in candidates if coverage.kept_from[level] is not None]
        if candidates[0] == "raw":
            reasons.append(
                f"{_show_width(bucket)} buckets are not whole minutes: only raw frames have them"
            )
        else:
            reasons.append(
                f"{candidates[0]} is the coarsest level whose buckets divide "
                f"{_show_width(bucket)} buckets"
            )
    else:
        usable = [resolution] if coverage.kept_from[resolution] is not None else []
        reasons.append(f"resolution {resolution} was asked for")
    parts: list[PlanPart] = []
    missing: list[TimeRange] = []
    remaining_end = last
    now = datetime.now(UTC)
    for level in usable:
        if remaining_end <= first:
            break
        kept = coverage.kept_from[level]
        assert kept is not None
        horizon = coverage.retention.get(level)
        lost = coverage.lost.get(level)
        complete = _complete_from(kept, horizon, now, lost, coverage.chunk_interval.get(level))
        kept_start = first if complete is None else max(first, _ceil(complete, bucket))
        if kept_start >= remaining_end:
            continue
        parts.append(PlanPart(level, kept_start, remaining_end))
        if kept_start > first:
            kept_text = f"kept {_show_width(horizon)}" if horizon else "its oldest chunk"
            if lost is not None:  # before its horizon: dropped otherwise
                kept_text = f"{kept_text}, but its frames up to {_show(lost)} were dropped"
            reasons.append(f"{level} keeps data from {_show(kept_start)} on ({kept_text})")
        remaining_end = kept_start
    if remaining_end > first:
        missing.append(TimeRange(first, remaining_end))
        reasons.append(
            f"nothing before {_show(remaining_end)} is kept at a resolution that fits "
            f"{_show_width(bucket)} buckets"
        )
    reasons += _freshness(parts, coverage, now)
    pending = _pending_parts(parts, bucket, coverage)
    reasons += [
        f"{source} has not materialised the frames written late, changed or deleted since its "
        f"last refresh in {_pending_span(source_parts)}: its buckets there do not reflect them "
        "until the late-frames job (every ten minutes) or framemeta maintain refreshes it; "
        "resolution raw reads them now"
        for source, source_parts in _by_source(pending)
    ]
    return StatsPlan(
        first,
        last,
        bucket,
        resolution,
        tuple(parts),
        tuple(missing),
        tuple(reasons),
        coverage.states(),
        pending,
    )


def _by_source(parts: Iterable[PlanPart]) -> list[tuple[str, list[PlanPart]]]:
    """``parts`` grouped by source, in the order each source first comes."""
    grouped: dict[str, list[PlanPart]] = {}
    for part in parts:
        grouped.setdefault(part.source, []).append(part)
    return list(grouped.items())


def _pending_span(parts: list[PlanPart]) -> str:
    """Where one source's pending ``parts`` (newest first) lie, in words:
    each of up to three, or how many and from where to where."""
    if len(parts) <= 3:
        return ", ".join(f"{_show(part.start)} .. {_show(part.end)}" for part in parts)
    return f"{len(parts)} stretches from {_show(parts[-1].start)} to {_show(parts[0].end)}"


def _pending_parts(
    parts: list[PlanPart], bucket: timedelta, coverage: _Coverage
) -> tuple[PlanPart, ...]:
    """Where the rollups ``parts`` read have pending stretches
    (`_Coverage.pending`), in whole buckets of ``bucket``, newest first."""
    pending: list[PlanPart] = []
    for part in parts:
        widened = (
            (
                max(part.start, _floor(stretch.start, bucket)),
                min(part.end, _ceil_or_last(stretch.end, bucket)),
            )
            for stretch in coverage.pending.get(part.source, ())
        )
        merged = _merged((start, end) for start, end in widened if start < end)
        pending += [
            PlanPart(part.source, stretch.start, stretch.end) for stretch in reversed(merged)
        ]
    return tuple(pending)


def _freshness(parts: list[PlanPart], coverage: _Coverage, now: datetime) -> list[str]:
    """How fresh the rollups a plan reads are, in words."""
    read = [part.source for part in parts if part.source != "raw"]
    if not read:
        return []
    if coverage.edition != "timescale":
        return [
            f"{', '.join(read)} {'is' if len(read) == 1 else 'are'} updated in the "
            "transaction of every insert: current to the last frame written"
        ]
    reasons = []
    for level in read:
        finer = _FINER[level]
        mark = coverage.materialized_to.get(level)
        if mark is None:
            reasons.append(
                f"{level} was never refreshed: all its buckets are computed from {finer} "
                "when read (real-time aggregation)"
            )
        else:
            ago = f"{_show_length(now - mark)} ago" if mark <= now else "ahead of now"
            reasons.append(
                f"{level} is materialised up to {_show(mark)} ({ago}); its buckets from then "
                f"on are computed from {finer} when read (real-time aggregation)"
            )
    return reasons


# -- argument checks --------------------------------------------------------


def _check_time(name: str, value: object) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(name, value, "must be a timezone-aware datetime")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # datetime.max in a zone west of UTC, and the like
        raise ValidationError(name, value, "lies outside the years 1 to 9999 in UTC") from None


def _check_range(start: object, end: object) -> tuple[datetime, datetime]:
    first, last = _check_time("start", start), _check_time("end", end)
    if first >= last:
        raise ValidationError("end", end, f"must be after start ({first.isoformat()})")
    return first, last


def _check_camera(camera_id: object, *, optional: bool = False) -> str | None:
    if camera_id is None and optional:
        return None
    _check_camera_id(camera_id)
    return camera_id  # type: ignore[return-value]


def _check_limit(limit: object, maximum: int, *, optional: bool = False) -> int | None:
    if limit is None and optional:
        return None
    if type(limit) is not int or not 0 < limit <= maximum:
        raise ValidationError("limit", limit, f"must be an integer from 1 to {maximum:,}")
    return limit


def _check_score(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValidationError(name, value, "must be a number in [0, 1]")
    return float(value)


def _check_stats_args(
    start: object, end: object, camera_id: object, bucket: object, resolution: object
) -> tuple[datetime, datetime, str | None, timedelta, str]:
    first, last = _check_range(start, end)
    camera = _check_camera(camera_id, optional=True)
    if resolution not in RESOLUTIONS:
        raise ValidationError("resolution", resolution, f"must be one of {', '.join(RESOLUTIONS)}")
    if not isinstance(bucket, timedelta) or bucket <= timedelta(0):
        raise ValidationError("bucket", bucket, "must be a positive timedelta")
    width = _WIDTHS.get(str(resolution))
    if width is not None and bucket % width:
        raise ValidationError(
            "bucket",
            bucket,
            f"must be a whole multiple of {_show_width(width)} to be read from the "
            f"{resolution} rollup",
        )
    if (last - first) / bucket > _MAX_BUCKETS:
        raise ValidationError(
            "bucket", bucket, f"makes more than {_MAX_BUCKETS:,} buckets per camera for the range"
        )
    try:
        _floor(first, bucket), _ceil(last, bucket)
    except OverflowError:
        raise ValidationError(
            "bucket", bucket, "makes buckets past the dates Python holds (years 1 to 9999)"
        ) from None
    return first, last, camera, bucket, str(resolution)


def _check_contains(contains: object) -> bytes | None:
    if contains is None:
        return None
    if not isinstance(contains, Mapping) or not all(isinstance(key, str) for key in contains):
        raise ValidationError("contains", contains, "must be a mapping with str keys")
    if not contains:
        # Contains nothing: matches every frame, as None does. Frames
        # written without metadata hold NULL, which no index condition
        # (`metadata @> '{}'`) would match.
        return None
    # Checked as a frame's metadata is when written: NaN or a datetime
    # would otherwise be searched as the null or the string orjson writes.
    return _encode_json("contains", contains)


# -- calls: arguments checked, one statement, rows made into results ----------


@attrs.frozen
class _Call(Generic[T]):
    """One statement and what turns its rows into the method's result;
    both executors run the same calls."""

    statement: _Statement
    finish: Callable[[list[tuple[Any, ...]]], T]


def _first_frame(rows: list[tuple[Any, ...]]) -> FrameRecord | None:
    return _frame(rows[0]) if rows else None


def _all_frames(rows: list[tuple[Any, ...]]) -> list[FrameRecord]:
    return [_frame(row) for row in rows]


def _check_get_args(
    camera_id: object, captured_at: object, frame_number: object
) -> tuple[str, datetime, int]:
    camera = _check_camera(camera_id)
    assert camera is not None
    at = _check_time("captured_at", captured_at)
    if type(frame_number) is not int or not 0 <= frame_number <= _BIGINT_MAX:
        raise ValidationError(
            "frame_number", frame_number, "must be an integer from 0 to 2**63 - 1"
        )
    return camera, at, frame_number


def _get_call(key: tuple[str, datetime, int], columnstore: bool) -> _Call[FrameRecord | None]:
    return _Call(_get_statement(*key, columnstore=columnstore), _first_frame)


def _latest_call(camera_id: object) -> _Call[FrameRecord | None]:
    camera = _check_camera(camera_id)
    assert camera is not None
    return _Call(_latest_statement(camera), _first_frame)


def _latest_all_call(coverage: _Coverage) -> _Call[list[FrameRecord]]:
    return _Call(_latest_all_statement(coverage.raw_since(datetime.now(UTC))), _all_frames)


def _motion(start: object, end: object, camera_id: object, min_score: object) -> _Statement:
    first, last = _check_range(start, end)
    camera = _check_camera(camera_id, optional=True)
    score = _check_score("min_score", min_score)
    return _motion_statement(first, last, camera, score)


def _search(
    contains: object,
    label: object,
    min_confidence: object,
    start: object,
    end: object,
    camera_id: object,
    limit: object,
) -> _Search:
    return _Search(
        *_check_search_args(contains, label, min_confidence, start, end, camera_id, limit)
    )


def _cameras_call() -> _Call[list[CameraInfo]]:
    return _Call(_cameras_statement(), lambda rows: [_camera(row) for row in rows])


def _stats_calls(
    plan: StatsPlan, camera_id: str | None, coverage: _Coverage
) -> list[tuple[_Statement, Callable[[tuple[Any, ...]], StatsRow]]]:
    """One statement per part of the plan, oldest first, each with what
    makes its rows into `StatsRow`s."""
    return [_stats_call(part, plan.bucket, camera_id, coverage) for part in reversed(plan.parts)]


_CAMERA_ORDER: Final = sql.SQL("SELECT c FROM unnest(%(cameras)s::text[]) AS c ORDER BY c")


def _camera_order(parts: list[list[StatsRow]]) -> _Statement | None:
    """For an answer read from several sources (a plan with several
    parts), the statement that sorts its cameras as the database sorts
    camera_id, as each part's rows came; Python's order of strings is not
    every collation's (ICU en-US puts ``cam-a`` before ``cam-B``). None:
    one part, or one camera."""
    if len(parts) < 2:
        return None
    cameras = sorted({row.camera_id for part in parts for row in part})
    return _Statement(_CAMERA_ORDER, {"cameras": cameras}) if len(cameras) > 1 else None


def _stats_rows(parts: list[list[StatsRow]], ordered: list[tuple[Any, ...]]) -> list[StatsRow]:
    """The rows of every part of a plan in one answer, by camera in the
    database's order (``ordered``: `_camera_order`'s rows), then bucket."""
    if len(parts) == 1:
        return parts[0]
    rank = {camera: position for position, (camera,) in enumerate(ordered)}
    rows = [row for part in parts for row in part]
    rows.sort(key=lambda row: (rank.get(row.camera_id, 0), row.bucket))
    return rows


# -- the two executors --------------------------------------------------------


# A connection that answered a query less than this long ago is not checked
# again on checkout: the check is a round trip, as long as a point lookup.
_CHECK_AFTER_IDLE_S: Final = 1.0
_returned_at: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def _check_if_idle(conn: psycopg.Connection[Any]) -> None:
    """The pool's health check, for connections that have not answered a
    query in the last second."""
    if time.monotonic() - _returned_at.get(conn, 0.0) > _CHECK_AFTER_IDLE_S:
        ConnectionPool.check_connection(conn)


async def _check_async_if_idle(conn: psycopg.AsyncConnection[Any]) -> None:
    if time.monotonic() - _returned_at.get(conn, 0.0) > _CHECK_AFTER_IDLE_S:
        await AsyncConnectionPool.check_connection(conn)


_SESSION: Final = "SET TIME ZONE 'UTC'"


def configure_connection(conn: psycopg.Connection[Any]) -> None:
    """What the pools made here do to each new connection; pass it as
    ``configure=`` to a pool of your own for the same speed and answers:
    jsonb decoded by orjson (about 4x faster than the standard library),
    and the session's time zone set to UTC (timestamps arrive as UTC,
    nothing to convert; pgbouncer keeps the setting per client). Nothing
    else is set for the session: each statement sets what its answer needs
    for its own transaction (`_GUARD`), so it answers the same through
    pgbouncer in transaction mode."""
    set_json_loads(orjson.loads, conn)
    conn.execute(_SESSION)


async def configure_async_connection(conn: psycopg.AsyncConnection[Any]) -> None:
    """`configure_connection` for an `AsyncConnectionPool`."""
    set_json_loads(orjson.loads, conn)
    await conn.execute(_SESSION)


def _pool_settings(
    dsn: str | None,
    min_size: object,
    max_size: object,
    prepare_threshold: int | None,
    timeout: float,
) -> dict[str, Any]:
    """What both pools are made with; raises `ConfigurationError` naming
    the option for a bad size, threshold or timeout."""
    for name, value, least in (("min_size", min_size, 0), ("max_size", max_size, 1)):
        if type(value) is not int or value < least:
            raise ConfigurationError(f"{name}: must be an integer >= {least}, not {value!r}")
    assert isinstance(min_size, int)
    assert isinstance(max_size, int)
    if min_size > max_size:
        raise ConfigurationError(f"min_size ({min_size}) is larger than max_size ({max_size})")
    if prepare_threshold is not None and (
        type(prepare_threshold) is not int or prepare_threshold < 0
    ):
        raise ConfigurationError(
            f"prepare_threshold: must be None or an integer >= 0, not {prepare_threshold!r}"
        )
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 < timeout < math.inf
    ):
        raise ConfigurationError(f"timeout: must be a positive number of seconds, not {timeout!r}")
    return {
        "conninfo": _dsn.resolve(dsn),
        "min_size": min_size,
        "max_size": max_size,
        "kwargs": {
            "autocommit": True,
            "prepare_threshold": prepare_threshold,
            "application_name": "framemeta-query",
        },
        "timeout": timeout,
        "name": "framemeta-query",
    }


class FrameQuery:
    """Typed reads of stored frames and their statistics, from a pool of
    connections (the reader role is enough).

    ``dsn`` None reads ``FRAMEMETA_DSN``, then libpq's ``PG*`` variables;
    or pass ``pool``, a `psycopg_pool.ConnectionPool` you own (its
    connections must be in autocommit mode). The pool made here holds
    ``min_size`` (1) to ``max_size`` (4) connections; one that has been
    idle for over a second is checked (a round trip) before it is handed
    out. ``prepare_threshold`` (5, psycopg's default) is when lookups
    (`get`, `latest`, `latest_all`, `cameras`, the first page of `frames`)
    and searches become server-side prepared statements; None never
    prepares (pgbouncer in transaction mode before 1.21). Statistics,
    motion events and the pages of `frames` after the first are never
    prepared: their plans fit the actual range, and they are streamed in
    chunks. Use it as a context manager or call `close`.

    Every method checks its arguments before any SQL runs and raises
    `ValidationError` naming the argument; times must be timezone-aware and
    are returned in UTC.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: ConnectionPool[Any] | None = None,
        min_size: int = 1,
        max_size: int = 4,
        prepare_threshold: int | None = 5,
        timeout: float = 10.0,
    ) -> None:
        self._coverage: _Coverage | None = None
        self._columnstore: tuple[bool, float] | None = None  # and when it was read
        if pool is not None:
            self._pool = pool
            self._owns_pool = False
            return
        self._pool = ConnectionPool(
            **_pool_settings(dsn, min_size, max_size, prepare_threshold, timeout),
            check=_check_if_idle,
            configure=configure_connection,
            open=True,
        )
        self._owns_pool = True

    @property
    def pool(self) -> ConnectionPool[Any]:
        """The connection pool (for its ``get_stats()``)."""
        return self._pool

    def close(self) -> None:
        """Close the pool, if this object made it; idempotent."""
        if self._owns_pool:
            self._pool.close()

    def __enter__(self) -> FrameQuery:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _on_connection(self, read: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``read`` on a pooled connection. Where that connection turns out
        lost (the server restarted or ended the session, pgbouncer
        restarted: ``conn.broken``), the pool's idle connections are
        checked and ``read`` runs once more, on another connection. Every
        read is one read-only statement whose results are made whole
        before they are returned, so nothing reaches the caller twice."""
        for attempt in (1, 2):
            conn: psycopg.Connection[Any] | None = None
            try:
                with self._pool.connection() as conn:
                    result = read(conn)
                    _returned_at[conn] = time.monotonic()  # it answered just now
                    return result
            except psycopg.OperationalError:
                if attempt == 2 or conn is None or not conn.broken:
                    raise
                self._pool.check()
        raise AssertionError("unreachable")

    def _rows(self, statement: _Statement) -> list[tuple[Any, ...]]:
        return self._on_connection(lambda conn: _fetch(conn, statement))

    def _made(self, statement: _Statement, make: Callable[[tuple[Any, ...]], T]) -> list[T]:
        """The rows of ``statement`` made into results, as they arrive when
        it is to be streamed (`_Statement.stream`)."""
        if not (statement.stream and _CHUNKED):
            return [make(row) for row in self._rows(statement)]
        return self._on_connection(lambda conn: _made_streamed(conn, statement, make))

    def _call(self, call: _Call[T]) -> T:
        return call.finish(self._rows(call.statement))

    def get(self, camera_id: str, captured_at: datetime, frame_number: int) -> FrameRecord | None:
        """The frame with this natural key, or None."""
        key = _check_get_args(camera_id, captured_at, frame_number)
        return self._call(_get_call(key, self._current_columnstore()))

    def latest(self, camera_id: str) -> FrameRecord | None:
        """The newest frame of ``camera_id``, or None."""
        return self._call(_latest_call(camera_id))

    def latest_all(self) -> list[FrameRecord]:
        """The newest frame of every camera, ordered by camera_id (as the
        database sorts it: its collation)."""
        return self._call(_latest_all_call(self._current_coverage()))

    def frames(
        self,
        camera_id: str,
        start: datetime,
        end: datetime,
        *,
        limit: int | None = None,
        order: Literal["asc", "desc"] = "asc",
    ) -> Generator[FrameRecord, None, None]:
        """The frames of ``camera_id`` captured in ``[start, end)`` in time
        order (``order="desc"``: newest first), at most ``limit``. Read in
        pages by key, each page one short query: the first of 1,000 rows,
        the next of 2,000, streamed in chunks made into records while the
        server sends the rest (records decode their detections and metadata
        when first read). A day of frames never sits in memory, and no
        connection is held between pages, so stopping early needs no
        clean-up."""
        return self._stream(_FramesPages(*_check_frames_args(camera_id, start, end, limit, order)))

    def _stream(self, pages: _Pages) -> Generator[FrameRecord, None, None]:
        statement: _Statement | None = pages.first()
        fetched = 0
        while statement is not None:
            records = self._made(statement, _frame)
            yield from records
            fetched += len(records)
            statement = pages.next(statement, records, fetched)

    def motion_events(
        self,
        start: datetime,
        end: datetime,
        *,
        camera_id: str | None = None,
        min_score: float = 0.5,
    ) -> list[FrameRecord]:
        """Frames in ``[start, end)`` whose motion_score is at least
        ``min_score`` (default 0.5, the motion threshold, which the partial
        index serves; lower values scan), ordered by time. Scores are
        compared at the 32-bit precision they are stored in: 0.7 finds a
        frame written with 0.7. Streamed in
        chunks, each made into records while the server sends the next
        (records decode their detections and metadata when first read)."""
        return self._made(_motion(start, end, camera_id, min_score), _frame)

    def search(
        self,
        contains: Mapping[str, Any] | None,
        start: datetime,
        end: datetime,
        *,
        camera_id: str | None = None,
        label: str | None = None,
        min_confidence: float | None = None,
        limit: int = 100,
    ) -> list[FrameRecord]:
        """Frames in ``[start, end)`` whose metadata contains ``contains``
        (jsonb ``@>``; None or ``{}`` matches any frame), optionally with a detection of
        ``label`` at ``min_confidence`` or more (compared at the precision
        confidences are stored in, 32-bit: a detection written as 0.9
        matches ``min_confidence=0.9``); the first ``limit`` (at most
        10,000) in time order. Raises `ValidationError` naming the argument
        for a naive or reversed range, a limit out of range, or a
        ``contains`` that is not a JSON mapping."""
        return list(
            self._stream(_search(contains, label, min_confidence, start, end, camera_id, limit))
        )

    def cameras(self) -> list[CameraInfo]:
        """Every camera with frames, first and last seen, ordered by camera_id
        (as the database sorts it: its collation)."""
        return self._call(_cameras_call())

    def stats(
        self,
        start: datetime,
        end: datetime,
        *,
        camera_id: str | None = None,
        bucket: timedelta = timedelta(hours=1),
        resolution: Resolution = "auto",
    ) -> list[StatsRow]:
        """Statistics per camera and bucket of ``bucket`` width (1 hour by
        default) over ``[start, end)`` widened to whole buckets, ordered by
        camera_id (as the database sorts it, also when several sources
        answer) then bucket. ``resolution="auto"`` reads the coarsest source
        that fits (see `plan`); the answer is the same whichever answers."""
        first, last, camera, width, chosen = _check_stats_args(
            start, end, camera_id, bucket, resolution
        )
        coverage = self._current_coverage()
        plan = _make_plan(first, last, width, chosen, coverage)
        calls = _stats_calls(plan, camera, coverage)
        parts = [self._made(statement, make) for statement, make in calls]
        order = _camera_order(parts)
        return _stats_rows(parts, self._rows(order) if order is not None else [])

    def plan(
        self,
        start: datetime,
        end: datetime,
        *,
        camera_id: str | None = None,
        bucket: timedelta = timedelta(hours=1),
        resolution: Resolution = "auto",
    ) -> StatsPlan:
        """What `stats` with these arguments reads, and why; runs no statistics."""
        first, last, _, width, chosen = _check_stats_args(start, end, camera_id, bucket, resolution)
        return _make_plan(first, last, width, chosen, self._current_coverage())

    def _current_columnstore(self) -> bool:
        read = self._columnstore
        if read is None or time.monotonic() - read[1] > _COVERAGE_TTL_S:
            read = self._columnstore = (bool(self._rows(_COLUMNSTORE)[0][0]), time.monotonic())
        return read[0]

    def _current_coverage(self) -> _Coverage:
        coverage = self._coverage
        if coverage is None or coverage.expired():
            rows = self._rows(_COVERAGE)
            lost, watermarks, pending = _follow_ups(rows)
            coverage = self._coverage = _Coverage.from_rows(
                rows,
                self._rows(lost) if lost is not None else [],
                self._rows(watermarks) if watermarks is not None else [],
                self._rows(pending) if pending is not None else [],
            )
        return coverage


class AsyncFrameQuery:
    """`FrameQuery` for asyncio: the same methods and SQL, awaited, on a
    `psycopg_pool.AsyncConnectionPool` (``pool``, or one made from ``dsn``
    and opened by `open` or ``async with``)."""

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: AsyncConnectionPool[Any] | None = None,
        min_size: int = 1,
        max_size: int = 4,
        prepare_threshold: int | None = 5,
        timeout: float = 10.0,
    ) -> None:
        self._coverage: _Coverage | None = None
        self._columnstore: tuple[bool, float] | None = None  # and when it was read
        self._checks: set[asyncio.Task[None]] = set()  # `_on_connection`'s, running
        if pool is not None:
            self._pool = pool
            self._owns_pool = False
            return
        self._pool = AsyncConnectionPool(
            **_pool_settings(dsn, min_size, max_size, prepare_threshold, timeout),
            check=_check_async_if_idle,
            configure=configure_async_connection,
            open=False,
        )
        self._owns_pool = True

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        """The connection pool (for its ``get_stats()``)."""
        return self._pool

    async def open(self) -> AsyncFrameQuery:
        """Open the pool made here (``async with`` does it); returns self."""
        if self._owns_pool:
            await self._pool.open()
        return self

    async def close(self) -> None:
        """Close the pool, if this object made it; idempotent."""
        if self._owns_pool:
            await self._pool.close()

    async def __aenter__(self) -> AsyncFrameQuery:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _on_connection(
        self, read: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]
    ) -> T:
        """`FrameQuery._on_connection`, awaited."""
        for attempt in (1, 2):
            conn: psycopg.AsyncConnection[Any] | None = None
            try:
                async with self._pool.connection() as conn:
                    result = await read(conn)
                    _returned_at[conn] = time.monotonic()  # it answered just now
                    return result
            except psycopg.OperationalError:
                if attempt == 2 or conn is None or not conn.broken:
                    raise
                # In a task of its own: psycopg_pool's check takes a
                # cancellation arriving while it checks for a broken
                # connection, drops that connection unclosed and returns as
                # if nothing happened, so a caller's timeout or cancel was
                # lost (the call answered late) and sessions were left open.
                # Shielded, the caller is cancelled at once and the check
                # finishes on its own.
                check = asyncio.ensure_future(self._pool.check())
                self._checks.add(check)
                check.add_done_callback(self._checks.discard)
                await asyncio.shield(check)
        raise AssertionError("unreachable")

    async def _rows(self, statement: _Statement) -> list[tuple[Any, ...]]:
        return await self._on_connection(lambda conn: _fetch_async(conn, statement))

    async def _made(self, statement: _Statement, make: Callable[[tuple[Any, ...]], T]) -> list[T]:
        if not (statement.stream and _CHUNKED):
            return [make(row) for row in await self._rows(statement)]
        return await self._on_connection(lambda conn: _made_streamed_async(conn, statement, make))

    async def _call(self, call: _Call[T]) -> T:
        return call.finish(await self._rows(call.statement))

    async def get(
        self, camera_id: str, captured_at: datetime, frame_number: int
    ) -> FrameRecord | None:
        """See `FrameQuery.get`."""
        key = _check_get_args(camera_id, captured_at, frame_number)
        return await self._call(_get_call(key, await self._current_columnstore()))

    async def latest(self, camera_id: str) -> FrameRecord | None:
        """See `FrameQuery.latest`."""
        return await self._call(_latest_call(camera_id))

    async def latest_all(self) -> list[FrameRecord]:
        """See `FrameQuery.latest_all`."""
        return await self._call(_latest_all_call(await self._current_coverage()))

    def frames(
        self,
        camera_id: str,
        start: datetime,
        end: datetime,
        *,
        limit: int | None = None,
        order: Literal["asc", "desc"] = "asc",
    ) -> AsyncGenerator[FrameRecord, None]:
        """See `FrameQuery.frames`; iterate with ``async for``."""
        return self._stream(_FramesPages(*_check_frames_args(camera_id, start, end, limit, order)))

    async def _stream(self, pages: _Pages) -> AsyncGenerator[FrameRecord, None]:
        statement: _Statement | None = pages.first()
        fetched = 0
        while statement is not None:
            records = await self._made(statement, _frame)
            for record in records:
                yield record
            fetched += len(records)
            statement = pages.next(statement, records, fetched)

    async def motion_events(
        self,
        start: datetime,
        end: datetime,
        *,
        camera_id: str | None = None,
        min_score: float = 0.5,
    ) -> list[FrameRecord]:
        """See `FrameQuery.motion_events`."""
        return await self._made(_motion(start, end, camera_id, min_score), _frame)

    async def search(
        self,
        contains: Mapping[str, Any] | None,
        start: datetime,
        end: datetime,
        *,
        camera_id: str | None = None,
        label: str | None = None,
        min_confidence: float | None = None,
        limit: int = 100,
    ) -> list[FrameRecord]:
        """See `FrameQuery.search`."""
        steps = _search(contains, label, min_confidence, start, end, camera_id, limit)
        return [record async for record in self._stream(steps)]

    async def cameras(self) -> list[CameraInfo]:
        """See `FrameQuery.cameras`."""
        return await self._call(_cameras_call())

    async def stats(
        self,
        start: datetime,
        end: datetime,
        *,
        camera_id: str | None = None,
        bucket: timedelta = timedelta(hours=1),
        resolution: Resolution = "auto",
    ) -> list[StatsRow]:
        """See `FrameQuery.stats`."""
        first, last, camera, width, chosen = _check_stats_args(
            start, end, camera_id, bucket, resolution
        )
        coverage = await self._current_coverage()
        plan = _make_plan(first, last, width, chosen, coverage)
        calls = _stats_calls(plan, camera, coverage)
        parts = [await self._made(statement, make) for statement, make in calls]
        order = _camera_order(parts)
        return _stats_rows(parts, await self._rows(order) if order is not None else [])

    async def plan(
        self,
        start: datetime,
        end: datetime,
        *,
        camera_id: str | None = None,
        bucket: timedelta = timedelta(hours=1),
        resolution: Resolution = "auto",
    ) -> StatsPlan:
        """See `FrameQuery.plan`."""
        first, last, _, width, chosen = _check_stats_args(start, end, camera_id, bucket, resolution)
        return _make_plan(first, last, width, chosen, await self._current_coverage())

    async def _current_columnstore(self) -> bool:
        read = self._columnstore
        if read is None or time.monotonic() - read[1] > _COVERAGE_TTL_S:
            rows = await self._rows(_COLUMNSTORE)
            read = self._columnstore = (bool(rows[0][0]), time.monotonic())
        return read[0]

    async def _current_coverage(self) -> _Coverage:
        coverage = self._coverage
        if coverage is None or coverage.expired():
            rows = await self._rows(_COVERAGE)
            lost, watermarks, pending = _follow_ups(rows)
            coverage = self._coverage = _Coverage.from_rows(
                rows,
                await self._rows(lost) if lost is not None else [],
                await self._rows(watermarks) if watermarks is not None else [],
                await self._rows(pending) if pending is not None else [],
            )
        return coverage


# -- helpers shared by both ---------------------------------------------------


# Scores, brightness and the minima and maxima of statistics are `real`s,
# sent as their shortest text, which takes ``extra_float_digits`` >= 1 (the
# server's default). A role or a database may have set 0, and through
# pgbouncer in transaction mode (before 1.20, which can track it) another
# client's SET lands on the server connection a statement runs on: 0.1234567
# came back as 0.123457. Every statement therefore sets it for its own
# transaction first, in a one-time filter that runs before any row is made;
# it ends with the statement, so no session state is needed or left.
_GUARD: Final = sql.SQL(
    "SELECT * FROM ({}) AS framemeta_answer"
    " WHERE (SELECT set_config('extra_float_digits', '1', true)) IS NOT NULL"
)


def _guarded(query: sql.Composable) -> sql.Composed:
    """``query`` run with reals sent in full (`_GUARD`)."""
    return _GUARD.format(query)


def _fetch(conn: psycopg.Connection[Any], statement: _Statement) -> list[tuple[Any, ...]]:
    cursor = conn.execute(
        _guarded(statement.query),
        statement.params,
        prepare=False if statement.stream else None,
        binary=statement.binary,
    )
    return cursor.fetchall()


async def _fetch_async(
    conn: psycopg.AsyncConnection[Any], statement: _Statement
) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(
        _guarded(statement.query),
        statement.params,
        prepare=False if statement.stream else None,
        binary=statement.binary,
    )
    return await cursor.fetchall()


def _made_streamed(
    conn: psycopg.Connection[Any], statement: _Statement, make: Callable[[tuple[Any, ...]], T]
) -> list[T]:
    with conn.cursor() as cursor:
        stream = cursor.stream(
            _guarded(statement.query),
            statement.params,
            binary=statement.binary,
            size=_CHUNK_ROWS,
        )
        # Closed before the connection goes back, also when ``make``
        # raises: the stream holds the connection's lock until psycopg
        # has cancelled the rest of the result.
        with contextlib.closing(cast(Generator[tuple[Any, ...], None, None], stream)) as rows:
            return [make(row) for row in rows]


async def _made_streamed_async(
    conn: psycopg.AsyncConnection[Any],
    statement: _Statement,
    make: Callable[[tuple[Any, ...]], T],
) -> list[T]:
    async with conn.cursor() as cursor:
        stream = cursor.stream(
            _guarded(statement.query),
            statement.params,
            binary=statement.binary,
            size=_CHUNK_ROWS,
        )
        async with contextlib.aclosing(cast(AsyncGenerator[tuple[Any, ...], None], stream)) as rows:
            return [make(row) async for row in rows]


def _check_frames_args(
    camera_id: object, start: object, end: object, limit: object, order: object
) -> tuple[str, datetime, datetime, int | None, str]:
    camera = _check_camera(camera_id)
    assert camera is not None
    first, last = _check_range(start, end)
    checked_limit = _check_limit(limit, _MAX_FRAMES_LIMIT, optional=True)
    if order not in ("asc", "desc"):
        raise ValidationError("order", order, "must be 'asc' or 'desc'")
    return camera, first, last, checked_limit, str(order)


def _check_search_args(
    contains: object,
    label: object,
    min_confidence: object,
    start: object,
    end: object,
    camera_id: object,
    limit: object,
) -> tuple[bytes | None, str | None, float | None, datetime, datetime, str | None, int]:
    encoded = _check_contains(contains)
    if label is not None and (
        not isinstance(label, str) or not 0 < len(label) <= 64 or "\x00" in label
    ):
        raise ValidationError("label", label, "must be a string of 1 to 64 characters")
    confidence = None if min_confidence is None else _check_score("min_confidence", min_confidence)
    first, last = _check_range(start, end)
    camera = _check_camera(camera_id, optional=True)
    checked_limit = _check_limit(limit, _MAX_SEARCH_LIMIT)
    assert checked_limit is not None
    return encoded, label, confidence, first, last, camera, checked_limit


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


def _show(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}Z"


def _show_length(length: timedelta) -> str:
    """A length for people: ``7d``, ``3d 4h``, ``12min``, ``40s``."""
    seconds = round(length.total_seconds())
    if seconds < 60:
        return f"{max(length.total_seconds(), 0.0):g}s"
    parts = []
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def _show_width(width: timedelta) -> str:
    seconds = width.total_seconds()
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size and math.isclose(seconds % size, 0.0, abs_tol=1e-9):
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
