"""Writer options: attrs, validated at construction, with defaults that suit
1M to 100M frames a day without tuning."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import attrs

from framemeta.errors import ConfigurationError

__all__ = ["OverflowPolicy", "WriterOptions"]

OverflowPolicy = Literal["block", "drop_oldest", "raise"]
_POLICIES = ("block", "drop_oldest", "raise")


def _positive_int(instance: Any, attribute: Any, value: Any) -> None:
    if type(value) is not int or value <= 0:
        raise ConfigurationError(f"{attribute.name}: must be a positive integer, not {value!r}")


def _positive_seconds(instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < math.inf:
        raise ConfigurationError(
            f"{attribute.name}: must be a positive, finite number of seconds, not {value!r}"
        )


def _optional_seconds(instance: Any, attribute: Any, value: Any) -> None:
    if value is not None:
        _positive_seconds(instance, attribute, value)


def _optional_path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


@attrs.frozen(kw_only=True)
class WriterOptions:
    """How a `MetadataWriter` buffers, batches, retries and shuts down.

    Every option fails at construction with `ConfigurationError` naming it.
    Sizes are in records or bytes, times in seconds.
    """

    queue_records: int = attrs.field(default=200_000, validator=_positive_int)
    """Most records waiting in memory (default 200,000: 16 s of 12,000 frames/s)."""
    queue_bytes: int = attrs.field(default=128 * 1024 * 1024, validator=_positive_int)
    """Most estimated bytes of records waiting in memory (default 128 MiB);
    each connection also holds at most one batch (`batch_bytes`) in flight."""
    batch_records: int = attrs.field(default=10_000, validator=_positive_int)
    """Most records in one COPY transaction (default 10,000)."""
    batch_bytes: int = attrs.field(default=16 * 1024 * 1024, validator=_positive_int)
    """Most estimated bytes in one COPY transaction (default 16 MiB)."""
    connections: int = attrs.field(default=2, validator=_positive_int)
    """COPY connections, each with its own background thread (default 2).
    The first ships every batch when the load is light; the others take full
    batches while it is busy, so one batch's commit overlaps the next one's
    transfer (on 2 cores, 2 connections ingest about a third more than 1)."""
    flush_interval: float = attrs.field(default=0.5, validator=_positive_seconds)
    """Longest a record waits before its batch is sent, when batches do not fill (0.5 s)."""
    overflow: OverflowPolicy = attrs.field(default="block")
    """What `write` does when the queue is full: ``"block"`` up to `block_timeout`
    then raise `QueueFullError`; ``"drop_oldest"`` drops the oldest queued
    record and counts it; ``"raise"`` raises `QueueFullError` at once."""
    block_timeout: float = attrs.field(default=5.0, validator=_positive_seconds)
    """How long a blocked `write` waits for room (5 s)."""
    close_timeout: float = attrs.field(default=10.0, validator=_positive_seconds)
    """Deadline of `close` and of the exit handler (10 s); what is not
    delivered by then is spooled (with `spool_dir`) or reported lost."""
    retry_initial: float = attrs.field(default=0.1, validator=_positive_seconds)
    """First pause before a retry (0.1 s); pauses double, with full jitter."""
    retry_max: float = attrs.field(default=30.0, validator=_positive_seconds)
    """Longest pause between retries (30 s)."""
    outage_budget: float | None = attrs.field(default=None, validator=_optional_seconds)
    """How long one batch is retried before the writer gives up and fails
    (its error re-raised to the caller); None retries for as long as it
    takes, with the queue bound and `overflow` protecting memory. With a
    spool, batches go to disk at the first failure and this does not apply."""
    spool_dir: Path | None = attrs.field(default=None, converter=_optional_path)
    """Directory of the on-disk spool: batches that cannot be delivered are
    written there (fsynced, checksummed) and delivered in order later, also
    by the next writer after a crash. None (default): no spool."""
    dead_letter_path: Path | None = attrs.field(default=None, converter=_optional_path)
    """JSON Lines file for rows the server rejects, one per line with the
    SQLSTATE and message. Default: ``dead-letter.jsonl`` in `spool_dir` when
    there is one, else rejected rows are only counted and logged."""
    max_clock_skew: float = attrs.field(default=300.0, validator=_positive_seconds)
    """A frame stamped more than this many seconds in the future is refused
    by `write` (default 300 s): a camera with a wrong clock must not create
    chunks years ahead."""
    max_age: float | None = attrs.field(default=7 * 86_400.0, validator=_optional_seconds)
    """A frame older than this many seconds is refused by `write` (default
    7 days, the raw retention): it would land in a chunk retention drops.
    None accepts any age."""
    maintenance_interval: float | None = attrs.field(default=None, validator=_optional_seconds)
    """Seconds between retention runs from this process (drop_chunks by the
    horizons stored in the database), on a thread and short-lived connection
    of its own. None (default): leave retention to ``framemeta maintain``
    (cron or a timer), pg_cron, or the community edition's policies. Safe in
    many processes at once: an advisory lock lets one run at a time. The
    writer role may run it; it applies the stored horizons and nothing else."""
    application_name: str = attrs.field(default="framemeta-writer")
    """``application_name`` of the writer's connections, as seen in pg_stat_activity."""
    connect_timeout: float = attrs.field(default=10.0, validator=_positive_seconds)
    """Seconds to wait for a connection to open (libpq's minimum is 2)."""

    @overflow.validator
    def _check_overflow(self, attribute: attrs.Attribute[str], value: str) -> None:
        if value not in _POLICIES:
            raise ConfigurationError(
                f"overflow: must be one of {', '.join(_POLICIES)}, not {value!r}"
            )

    @application_name.validator
    def _check_application_name(self, attribute: attrs.Attribute[str], value: str) -> None:
        if not isinstance(value, str) or not 0 < len(value) < 64 or "\x00" in value:
            raise ConfigurationError(
                f"application_name: must be 1-63 characters without NUL, not {value!r}"
            )

    def __attrs_post_init__(self) -> None:
        if self.batch_records > self.queue_records:
            raise ConfigurationError(
                f"batch_records: {self.batch_records} is larger than queue_records "
                f"({self.queue_records}); a batch could never fill"
            )
        if self.batch_bytes > self.queue_bytes:
            raise ConfigurationError(
                f"batch_bytes: {self.batch_bytes} is larger than queue_bytes ({self.queue_bytes})"
            )
        if self.connections > 8:
            raise ConfigurationError(
                f"connections: at most 8 (each is a server backend and a thread), "
                f"not {self.connections}"
            )
        if self.retry_initial > self.retry_max:
            raise ConfigurationError(
                f"retry_initial: {self.retry_initial} s is longer than "
                f"retry_max ({self.retry_max} s)"
            )

    @property
    def effective_dead_letter_path(self) -> Path | None:
        """Where rejected rows go: `dead_letter_path`, else inside `spool_dir`."""
        if self.dead_letter_path is not None:
            return self.dead_letter_path
        if self.spool_dir is not None:
            return self.spool_dir / "dead-letter.jsonl"
        return None
