"""Retention on both editions: horizons stored in ``framemeta_config`` so
that every tool agrees, checked against the rollups' refresh windows, and
applied with ``drop_chunks`` by `apply_retention` (``framemeta maintain``).
"""

from __future__ import annotations

import itertools
import re
from datetime import timedelta
from typing import Any, Final

import attrs
import psycopg

from framemeta.errors import ConfigurationError

__all__ = [
    "LEVELS",
    "ChunksDropped",
    "Retention",
    "apply_retention",
    "get_retention",
    "parse_horizon",
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
# A transaction-level advisory lock: many processes may call maintain, one
# applies retention at a time (the others skip).
_LOCK_KEY: Final = 0x6D61696E74  # "maint"
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
    return retention


def apply_retention(conn: psycopg.Connection[Any]) -> list[ChunksDropped] | None:
    """Drop the chunks of every level whose whole range is older than its
    horizon; returns what was dropped, or None when another process holds
    the maintenance lock (then nothing is done). Idempotent."""
    retention = get_retention(conn)
    dropped: list[ChunksDropped] = []
    with conn.transaction():
        locked = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (_LOCK_KEY,)).fetchone()
        if locked != (True,):
            return None
        for level in LEVELS:
            horizon = retention.horizon(level)
            if horizon is None:
                continue
            names = conn.execute(
                "SELECT drop_chunks(%s::regclass, older_than => now() - %s::interval)",
                (RELATIONS[level], horizon),
            ).fetchall()
            dropped.append(ChunksDropped(level, horizon, [str(name) for (name,) in names]))
    return dropped


def show_horizon(horizon: timedelta | None) -> str:
    """A horizon for people: ``7d``, ``12h``, ``never dropped``."""
    if horizon is None:
        return "never dropped"
    seconds = int(horizon.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
