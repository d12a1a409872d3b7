"""The lifecycle of stored frames on both editions: retention horizons kept
in ``framemeta_config`` so that every tool agrees, applied by `maintain`
(``framemeta maintain``, a writer's maintenance thread or pg_cron), rollup
refresh and compression where the edition has them, and exact repair and
erasure of a range (`rebuild_rollups`, `erase_frames`).
"""

from __future__ import annotations

import itertools
import logging
import random
import re
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import attrs
import psycopg
from psycopg import sql

from framemeta import _dsn
from framemeta.errors import ConfigurationError, DatabaseError, ValidationError
from framemeta.records import _check_camera_id

__all__ = [
    "LEVELS",
    "LEVEL_STORAGE_SQL",
    "WATERMARKS_SQL",
    "ChunksDropped",
    "Erasure",
    "LevelRebuilt",
    "MaintenanceReport",
    "Retention",
    "RetentionThread",
    "apply_retention",
    "erase_frames",
    "get_retention",
    "maintain",
    "parse_horizon",
    "rebuild_rollups",
    "set_retention",
    "show_horizon",
]

LEVELS: Final = ("raw", "1m", "1h", "1d")
"""Storage levels, finest first: raw frames, then the three rollups."""

RELATIONS: Final = {
    "raw": "frame_metadata",
    "1m": "frame_stats_1m",
    "1h": "frame_stats_1h",
    "1d": "frame_stats_1d",
}
# How far back each rollup is refreshed from the level below it (the
# community edition's refresh policies, migration 0003). The level below must
# keep its data longer than this, or a refresh would forget dropped rows.
REFRESH_WINDOWS: Final = {
    "1m": timedelta(hours=6),
    "1h": timedelta(days=3),
    "1d": timedelta(days=10),
}
# Their policies stop this far short of now (the newest, still filling buckets
# are left to real-time aggregation).
_REFRESH_END_OFFSETS: Final = {
    "1m": timedelta(minutes=1),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}
BUCKET_WIDTHS: Final = {
    "1m": timedelta(minutes=1),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}
"""The bucket width of each rollup level."""
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# A process's first retention run waits a random part of this (or of the
# interval, if shorter), so that a fleet started together does not line up.
_FIRST_RUN_SPREAD_S: Final = 60.0

logger = logging.getLogger(__name__)
_UNITS: Final = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86_400,
    "day": 86_400,
    "days": 86_400,
    "w": 604_800,
    "week": 604_800,
    "weeks": 604_800,
}
_INTERVAL = re.compile(r"^\s*(\d+)\s*([a-z]+)\s*$")


@attrs.frozen
class Retention:
    """How long each level keeps its data; None keeps it for ever.

    Build it with `get_retention` or `set_retention`; constructing one
    checks it (see `check`).
    """

    raw: timedelta | None
    stats_1m: timedelta | None
    stats_1h: timedelta | None
    stats_1d: timedelta | None

    def __attrs_post_init__(self) -> None:
        self.check()

    def horizon(self, level: str) -> timedelta | None:
        """The retention of ``level`` (one of `LEVELS`)."""
        return {"raw": self.raw, "1m": self.stats_1m, "1h": self.stats_1h, "1d": self.stats_1d}[
            level
        ]

    def check(self) -> None:
        """Refuse horizons that would lose data the rollups still need.

        Raises `ConfigurationError` when a level would be dropped inside the
        refresh window of the rollup built on it (the rollup would forget
        the dropped rows at its next refresh), or a rollup would be dropped
        before the data it summarises.
        """
        for finer, coarser in itertools.pairwise(LEVELS):
            kept, summary = self.horizon(finer), self.horizon(coarser)
            window = REFRESH_WINDOWS[coarser]
            if kept is not None and kept <= window:
                raise ConfigurationError(
                    f"retention of {finer} ({show_horizon(kept)}) must be longer than the "
                    f"{coarser} rollup's refresh window ({show_horizon(window)})"
                )
            if summary is not None and (kept is None or summary < kept):
                raise ConfigurationError(
                    f"retention of {coarser} ({show_horizon(summary)}) must not be shorter than "
                    f"that of {finer} ({show_horizon(kept)}), the data it summarises"
                )


@attrs.frozen
class ChunksDropped:
    """What `apply_retention` dropped at one level."""

    level: str
    horizon: timedelta
    chunks: list[str]


def parse_horizon(text: str) -> timedelta | None:
    """``"7d"``, ``"30 days"``, ``"12h"`` -> timedelta; ``"never"`` -> None.

    Raises `ConfigurationError` naming the text otherwise.
    """
    if text.strip().lower() in ("never", "none", "forever"):
        return None
    match = _INTERVAL.match(text.lower())
    if not match or match.group(2) not in _UNITS or int(match.group(1)) <= 0:
        raise ConfigurationError(
            f"retention {text!r}: expected a positive number and a unit (s, m, h, d, w) or 'never'"
        )
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def get_retention(conn: psycopg.Connection[Any]) -> Retention:
    """The horizons stored in the database."""
    rows = dict(
        conn.execute(
            "SELECT key, value FROM framemeta_config WHERE key LIKE 'retention\\_%'"
        ).fetchall()
    )
    values = [parse_horizon(rows.get(f"retention_{level}", "never")) for level in LEVELS]
    return Retention(*values)


def set_retention(conn: psycopg.Connection[Any], **horizons: str) -> Retention:
    """Change some horizons, e.g. ``set_retention(conn, raw="14d")``; keys
    are ``raw``, ``1m``, ``1h``, ``1d`` (pass them with ``**{"1m": ...}``).

    The result is checked as a whole before anything is stored; raises
    `ConfigurationError` naming the level. Needs the owner role.
    """
    unknown = set(horizons) - set(LEVELS)
    if unknown:
        raise ConfigurationError(
            f"unknown retention level(s) {sorted(unknown)}; the levels are {', '.join(LEVELS)}"
        )
    current = get_retention(conn)
    values = {level: current.horizon(level) for level in LEVELS}
    values.update({level: parse_horizon(text) for level, text in horizons.items()})
    retention = Retention(*(values[level] for level in LEVELS))
    with conn.transaction():
        for level in horizons:
            horizon = retention.horizon(level)
            conn.execute(
                "UPDATE framemeta_config SET value = %s, updated_at = now() WHERE key = %s",
                ("never" if horizon is None else f"{int(horizon.total_seconds())} seconds",
                 f"retention_{level}"),
            )  # fmt: skip
        # Community edition: the retention policies follow (Apache: no-op).
        conn.execute("SELECT framemeta_sync_retention_policies()")
    return retention


@attrs.frozen
class MaintenanceReport:
    """What one `maintain` run did."""

    dropped: list[ChunksDropped] | None
    """Chunks dropped per level; None when another session held the
    maintenance lock (it was doing the same work, so nothing was done)."""
    refreshed: list[str]
    """Rollup levels refreshed (community edition;
    empty on the Apache edition, whose trigger keeps them current)."""
    compressed: list[str]
    """Raw chunks compressed (community edition; empty on the Apache edition,
    which has no compression)."""


@attrs.frozen
class LevelRebuilt:
    """What `rebuild_rollups` or `erase_frames` did to one rollup level.

    Buckets from ``start`` to ``end`` (aligned to the level's width) were
    touched: those from ``recomputed_from`` on were recomputed from the level
    below; those before it lie beyond what the level below still keeps.
    """

    level: str
    start: datetime
    end: datetime
    recomputed_from: datetime | None
    """None: the level below keeps nothing of the range, nothing was recomputed."""
    rows: int | None
    """Rows written by the recomputation (Apache edition); None where a
    continuous aggregate was refreshed (community edition)."""
    forgotten: int = 0
    """Rows of the erased camera deleted because the level below no longer
    has the frames they summarise (`erase_frames` only)."""


@attrs.frozen
class Erasure:
    """What `erase_frames` did: ``frames`` raw frames deleted, and each
    rollup level made consistent with what is left."""

    camera_id: str
    start: datetime
    end: datetime
    frames: int
    levels: list[LevelRebuilt]


def apply_retention(conn: psycopg.Connection[Any]) -> list[ChunksDropped] | None:
    """Drop the chunks of every level whose whole range is older than its
    horizon; returns what was dropped, or None when another session holds
    the maintenance lock (then nothing is done). Idempotent.

    Runs ``framemeta_apply_retention()``, the function a writer's maintenance
    thread and pg_cron call too; each run is logged in
    ``framemeta_maintenance_runs``.
    """
    row = conn.execute("SELECT ran, dropped FROM framemeta_apply_retention()").fetchone()
    assert row is not None
    ran, dropped = row
    if not ran:
        return None
    return [
        ChunksDropped(item["level"], timedelta(seconds=item["horizon_seconds"]), item["chunks"])
        for item in dropped
    ]


def maintain(conn: psycopg.Connection[Any]) -> MaintenanceReport:
    """Everything the lifecycle needs now, idempotent: apply retention; on
    the community edition also refresh each rollup over everything the level
    below keeps (only changed buckets are recomputed, so frames backfilled
    past the policies' windows are caught too), compress the raw chunks
    older than ``compress_after``, and recount the cameras' rows (what
    `FrameQuery.cameras` reads; its job does it every five minutes).

    ``conn`` must be in autocommit mode (a refresh cannot run inside a
    transaction block) and have the owner role. The community edition's
    policies do the same work on their own schedule; running both is safe.
    """
    _require_autocommit(conn, "maintain")
    dropped = apply_retention(conn)
    refreshed: list[str] = []
    compressed: list[str] = []
    if _edition(conn) == "timescale":
        now = datetime.now(UTC)
        for source, level in itertools.pairwise(LEVELS):
            # Everything the level below still keeps, not only the policy's
            # window: a refresh materialises only what changed, so this is
            # cheap, and it catches frames backfilled days late. Read again
            # for each level: the refresh of the one below adds chunks.
            kept = _kept_from(_level_storage(conn), source)
            width = BUCKET_WIDTHS[level]
            end = _align(now - _REFRESH_END_OFFSETS[level], width)
            if kept is None or _align(kept, width, up=True) >= end:
                continue
            conn.execute(
                "CALL refresh_continuous_aggregate(%s::regclass, %s, %s)",
                (RELATIONS[level], _align(kept, width, up=True), end),
            )
            refreshed.append(level)
        compressed = _compress_old_chunks(conn)
        # What the refreshes materialised, late frames included, moves into
        # the per-camera rows (as the recount job does).
        _recount_cameras(conn, None)
    return MaintenanceReport(dropped, refreshed, compressed)


def rebuild_rollups(
    conn: psycopg.Connection[Any],
    start: datetime,
    end: datetime,
    *,
    camera_id: str | None = None,
) -> list[LevelRebuilt]:
    """Recompute the rollups of ``[start, end)`` from raw frames, 1m from raw,
    1h from 1m, 1d from 1h: a repair after manual edits. Every bucket that
    overlaps the range is recomputed, as far as the level below still keeps
    its data; buckets beyond that are left alone (retention dropped what
    they summarise).

    Apache edition: one transaction, for ``camera_id`` or every camera,
    which holds inserts into ``frame_metadata`` until it commits.
    Community edition: the continuous aggregates are refreshed over the
    range up to their watermarks (the buckets after are computed at every
    read), forced where the server supports it, for every camera. The
    cameras' rows (`FrameQuery.cameras`) are recounted after.
    ``conn`` must be in autocommit mode and have the owner role. Raises
    `ValidationError` for naive or reversed times or a bad camera id.
    """
    _check_range(start, end)
    if camera_id is not None:
        _check_camera_id(camera_id)
    _require_autocommit(conn, "rebuild_rollups")
    windows = _level_windows(conn, start, end)
    if _edition(conn) == "timescale":
        rebuilt = [_refresh_window(conn, window) for window in windows]
        _recount_cameras(conn, None)
        return rebuilt
    with conn.transaction():
        _hold_writers(conn)
        rebuilt = [_recompute_window(conn, window, camera_id) for window in windows]
        _recount_cameras(conn, camera_id)
        return rebuilt


def erase_frames(
    conn: psycopg.Connection[Any], camera_id: str, start: datetime, end: datetime
) -> Erasure:
    """Delete the frames of ``camera_id`` captured in ``[start, end)`` and
    leave every rollup level consistent with what is left: a privacy request.

    Buckets that overlap the range are recomputed from the level below;
    where the level below has already dropped its data (older than its
    retention), that camera's buckets overlapping the range are deleted,
    since they can no longer be recomputed without the erased frames. The
    camera's row for `FrameQuery.cameras` is recounted last.

    Apache edition: one transaction, which holds inserts into
    ``frame_metadata`` until it commits. Community edition: the deletion
    commits first, then the continuous aggregates are refreshed over the
    range up to their watermarks (a refresh cannot share a transaction;
    the buckets after are computed at every read); if that fails, run it
    again, erasing is idempotent. Compressed chunks are handled by the
    server. Needs the owner role (`DatabaseError` otherwise) and an
    autocommit connection; raises `ValidationError` for naive or reversed
    times or a bad camera id.
    """
    _check_range(start, end)
    _check_camera_id(camera_id)
    _require_autocommit(conn, "erase_frames")
    community = _edition(conn) == "timescale"
    windows = _level_windows(conn, start, end)
    try:
        with conn.transaction():
            if not community:
                _hold_writers(conn)
            cursor = conn.execute(
                "DELETE FROM frame_metadata"
                " WHERE camera_id = %s AND captured_at >= %s AND captured_at < %s",
                (camera_id, start, end),
            )
            frames = cursor.rowcount
            levels: list[LevelRebuilt] = []
            for window in windows:
                forgotten = _forget(conn, window, camera_id, community)
                result = (
                    window.result(None) if community else _recompute_window(conn, window, camera_id)
                )
                levels.append(attrs.evolve(result, forgotten=forgotten))
            if not community:
                _recount_cameras(conn, camera_id)
    except psycopg.errors.InsufficientPrivilege as exc:
        error = DatabaseError(f"erasing frames needs the framemeta_owner role: {exc}", exc.sqlstate)
        raise error from exc
    if community:
        levels = [
            attrs.evolve(_refresh_window(conn, window), forgotten=result.forgotten)
            for window, result in zip(windows, levels, strict=True)
        ]
        # After the refreshes: the recount reads the materialised
        # aggregates, which they change.
        _recount_cameras(conn, camera_id)
    return Erasure(camera_id, start, end, frames, levels)


def show_horizon(horizon: timedelta | None) -> str:
    """A horizon for people: ``7d``, ``12h``, ``never dropped``."""
    if horizon is None:
        return "never dropped"
    seconds = int(horizon.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class RetentionThread:
    """Applies retention every ``interval`` seconds from a daemon thread, on
    a short-lived connection of its own: the opt-in maintenance of a
    `MetadataWriter` (``maintenance_interval``).

    Many processes may run one: the advisory lock in
    ``framemeta_apply_retention()`` lets one work while the others skip.
    Failures are logged and counted, never raised: retention can wait for
    the next run, frames cannot.
    """

    def __init__(
        self,
        conninfo: str,
        interval: float,
        *,
        name: str,
        application_name: str = "framemeta-retention",
        connect_timeout: float = 10.0,
    ) -> None:
        self._conninfo = conninfo
        self._application_name = application_name
        self._interval = interval
        self._connect_timeout = connect_timeout
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.runs = 0
        """Runs that completed (including those that found the lock taken)."""
        self.errors = 0
        """Runs that failed."""
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> RetentionThread:
        """Start the thread; returns self."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to stop and wait at most ``timeout`` seconds (a run
        in progress is not interrupted; the thread is a daemon)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _loop(self) -> None:
        # Jitter, not secrecy.
        delay = random.uniform(0, min(self._interval, _FIRST_RUN_SPREAD_S))  # noqa: S311
        while not self._stop.wait(delay):
            self.run_once()
            delay = self._interval

    def run_once(self) -> list[ChunksDropped] | None:
        """One run now; returns what was dropped (None: skipped or failed)."""
        try:
            with _dsn.connect(
                self._conninfo,
                autocommit=True,
                application_name=self._application_name,
                connect_timeout=max(2, int(self._connect_timeout)),
            ) as conn:
                dropped = apply_retention(conn)
        except (psycopg.Error, DatabaseError) as exc:
            message = _dsn._scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else "",
                                  self._conninfo)  # fmt: skip
            with self._lock:
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {message}"
            logger.warning("framemeta retention run failed: %s", message)
            return None
        with self._lock:
            self.runs += 1
        if dropped:
            total = sum(len(result.chunks) for result in dropped)
            if total:
                logger.info(
                    "framemeta retention dropped %d chunk(s): %s",
                    total,
                    ", ".join(f"{result.level} {len(result.chunks)}" for result in dropped),
                )
        return dropped


# -- ranges of buckets --------------------------------------------------------


@attrs.frozen
class _Window:
    """The buckets of one level that overlap a range: ``[start, end)``, of
    which ``[kept_from, end)`` can be recomputed from the level below."""

    level: str
    start: datetime
    end: datetime
    kept_from: datetime

    def result(self, rows: int | None) -> LevelRebuilt:
        recomputed = self.kept_from if self.kept_from < self.end else None
        return LevelRebuilt(self.level, self.start, self.end, recomputed, rows)


def _align(moment: datetime, width: timedelta, *, up: bool = False) -> datetime:
    """The start of the bucket holding ``moment`` (or the next bucket
    boundary at or after it, with ``up``); buckets are aligned to the epoch
    in UTC, as time_bucket aligns widths that divide a day."""
    floor = _EPOCH + (moment - _EPOCH) // width * width
    return floor + width if up and floor < moment else floor


def _level_windows(conn: psycopg.Connection[Any], start: datetime, end: datetime) -> list[_Window]:
    storage = _level_storage(conn)
    windows = []
    for finer, level in itertools.pairwise(LEVELS):
        width = BUCKET_WIDTHS[level]
        first, last = _align(start, width), _align(end, width, up=True)
        kept = _kept_from(storage, finer)
        kept_from = last if kept is None else min(max(first, _align(kept, width, up=True)), last)
        windows.append(_Window(level, first, last, kept_from))
    return windows


LEVEL_STORAGE_SQL: Final = """
    SELECT l.position, l.level, l.relation,
           coalesce(a.materialization_hypertable_schema, current_schema()) AS storage_schema,
           coalesce(a.materialization_hypertable_name, l.relation) AS storage_table,
           (SELECT min(c.range_start) FROM timescaledb_information.chunks AS c
             WHERE c.hypertable_schema = coalesce(a.materialization_hypertable_schema,
                                                  current_schema())
               AND c.hypertable_name = coalesce(a.materialization_hypertable_name,
                                                l.relation)) AS oldest
      FROM (VALUES (0, 'raw', 'frame_metadata'), (1, '1m', 'frame_stats_1m'),
                   (2, '1h', 'frame_stats_1h'), (3, '1d', 'frame_stats_1d'))
           AS l (position, level, relation)
      LEFT JOIN timescaledb_information.continuous_aggregates AS a
        ON a.view_schema = current_schema() AND a.view_name = l.relation
"""
"""Each level's storage: the hypertable holding its rows (the relation, or
a continuous aggregate's materialization hypertable) and the start of its
oldest chunk (retention drops whole chunks, oldest first). The Query API
plans from the same query."""


WATERMARKS_SQL: Final = """
    SELECT user_view_name, nullif(greatest(watermark, '1970-01-01'), '1970-01-01')
      FROM (SELECT c.user_view_name,
                   _timescaledb_functions.to_timestamp(
                       _timescaledb_functions.cagg_watermark(c.mat_hypertable_id)) AS watermark
              FROM _timescaledb_catalog.continuous_agg AS c
             WHERE c.user_view_schema = current_schema()) AS w
"""
"""Community edition only: how far each continuous aggregate (by its view's
name) is materialised, its watermark; NULL for one never refreshed.
Buckets from the watermark on are computed from the level below when read
(real-time aggregation). `framemeta status` and the Query API's plans read it."""


def _watermarks(conn: psycopg.Connection[Any]) -> dict[str, datetime | None]:
    """Community edition: each continuous aggregate's watermark by its
    view's name (None: nothing materialised yet)."""
    return dict(conn.execute(WATERMARKS_SQL).fetchall())


@attrs.frozen
class _Storage:
    schema: str
    table: str
    oldest: datetime | None


def _level_storage(conn: psycopg.Connection[Any]) -> dict[str, _Storage]:
    """`LEVEL_STORAGE_SQL` for every level, in one round trip."""
    rows = conn.execute(f"SELECT * FROM ({LEVEL_STORAGE_SQL}) AS s ORDER BY s.position")
    return {level: _Storage(schema, table, oldest) for _, level, _, schema, table, oldest in rows}


def _kept_from(storage: Mapping[str, _Storage], level: str) -> datetime | None:
    """Where the data a level can be computed from begins: the oldest chunk
    of this level or any finer one (a rollup is computed from the level
    below where it has not been materialised yet); None when nothing is kept."""
    oldest = [storage[candidate].oldest for candidate in LEVELS[: LEVELS.index(level) + 1]]
    return min((moment for moment in oldest if moment is not None), default=None)


def _recompute_window(
    conn: psycopg.Connection[Any], window: _Window, camera_id: str | None
) -> LevelRebuilt:
    """Apache edition: recompute the window's kept part in the caller's transaction."""
    if window.kept_from >= window.end:
        return window.result(0)
    row = conn.execute(
        "SELECT framemeta_rebuild_rollup(%s, %s, %s, %s)",
        (window.level, window.kept_from, window.end, camera_id),
    ).fetchone()
    assert row is not None
    return window.result(int(row[0]))


def _hold_writers(conn: psycopg.Connection[Any]) -> None:
    """Apache edition: hold inserts into ``frame_metadata`` for the
    caller's transaction, taken before anything else, as migration 0007
    does: an insert locks frame_metadata, then the rollups, then
    frame_cameras. Recomputing buckets level by level while writers upsert
    the same rows deadlocked (a test of two writers beside erasures and
    rebuilds, every run; locking the three rollup tables instead deadlocked
    too, as an insert's statement locks them in its own order). Now a
    writer waits at its insert for the erasure or rebuild to commit, and
    the erasure waits only for inserts already running, which wait for
    nothing it holds."""
    conn.execute("LOCK TABLE frame_metadata IN SHARE ROW EXCLUSIVE MODE")


def _recount_cameras(conn: psycopg.Connection[Any], camera_id: str | None) -> None:
    """Recount ``frame_cameras`` for one camera or (None) all, in the
    caller's transaction (migration 0011)."""
    conn.execute("SELECT framemeta_recount_cameras(%s)", (camera_id,))


def _refresh_window(conn: psycopg.Connection[Any], window: _Window) -> LevelRebuilt:
    """Community edition: refresh the window's kept part (all cameras) up
    to the level's watermark. Buckets from the watermark on are computed
    from the level below at every read, so they already follow the change;
    materialising them would move the watermark over buckets before them
    that the policy has not materialised yet (yesterday, for the daily
    level), which every read would then take as empty."""
    end = min(window.end, _watermarks(conn).get(RELATIONS[window.level]) or window.kept_from)
    if window.kept_from < end:
        force = ", force => true" if _refresh_can_force(conn) else ""
        conn.execute(
            f"CALL refresh_continuous_aggregate(%s::regclass, %s, %s{force})",
            (RELATIONS[window.level], window.kept_from, end),
        )
    return window.result(None)


def _forget(conn: psycopg.Connection[Any], window: _Window, camera_id: str, community: bool) -> int:
    """Delete the camera's rows of the window's part that cannot be
    recomputed any more; returns how many."""
    if window.start >= window.kept_from:
        return 0
    if community:
        storage = _level_storage(conn)[window.level]
        target = sql.Identifier(storage.schema, storage.table)
    else:
        target = sql.Identifier(RELATIONS[window.level])
    cursor = conn.execute(
        sql.SQL("DELETE FROM {} WHERE camera_id = %s AND bucket >= %s AND bucket < %s").format(
            target
        ),
        (camera_id, window.start, window.kept_from),
    )
    return cursor.rowcount


def _compress_old_chunks(conn: psycopg.Connection[Any]) -> list[str]:
    """Community edition: compress the raw chunks older than
    ``compress_after``, each in its own transaction; chunks that late
    frames reached after compression are compressed again."""
    chunks = conn.execute(
        "SELECT format('%I.%I', c.chunk_schema, c.chunk_name)"
        "  FROM timescaledb_information.chunks AS c"
        " WHERE c.hypertable_schema = current_schema() AND c.hypertable_name = 'frame_metadata'"
        "   AND c.range_end < now() - (SELECT value::interval FROM framemeta_config"
        "                               WHERE key = 'compress_after')"
        "   AND (NOT c.is_compressed OR _timescaledb_functions.chunk_status(format("
        "        '%I.%I', c.chunk_schema, c.chunk_name)::regclass) & 8 <> 0)"
        " ORDER BY c.range_start"
    ).fetchall()
    compressed = []
    for (chunk,) in chunks:
        conn.execute("SELECT compress_chunk(%s::regclass, if_not_compressed => true)", (chunk,))
        compressed.append(str(chunk))
    return compressed


def _refresh_can_force(conn: psycopg.Connection[Any]) -> bool:
    """refresh_continuous_aggregate takes ``force`` from TimescaleDB 2.17 on."""
    row = conn.execute(
        "SELECT EXISTS (SELECT FROM pg_proc WHERE proname = 'refresh_continuous_aggregate'"
        "               AND 'force' = ANY(proargnames))"
    ).fetchone()
    return row == (True,)


def _edition(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT framemeta_edition()").fetchone()
    return str(row[0]) if row else "apache"


def _check_range(start: datetime, end: datetime) -> None:
    for name, moment in (("start", start), ("end", end)):
        if not isinstance(moment, datetime) or moment.tzinfo is None:
            raise ValidationError(name, moment, "must be a timezone-aware datetime")
    if start >= end:
        raise ValidationError("end", end, f"must be after start ({start.isoformat()})")


def _require_autocommit(conn: psycopg.Connection[Any], what: str) -> None:
    if not conn.autocommit:
        raise ConfigurationError(
            f"{what} needs a connection in autocommit mode "
            "(psycopg.connect(..., autocommit=True)): it manages its own transactions"
        )
