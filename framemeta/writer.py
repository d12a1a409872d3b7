"""MetadataWriter: the bounded queue and the lifecycle (start, flush, close, fork).

`write` puts a record in an in-memory queue and never does I/O; a
background thread takes batches off the queue and ships them with binary
COPY (`_copy`), retrying through outages (`_retry`), spooling to disk
(`_spool`) and isolating rejected rows. Helper threads, one per extra
connection, take full batches while it is busy; partial batches, the spool
and closing stay with the first thread.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, Self

import attrs
import orjson
import psycopg
from psycopg import conninfo as pg_conninfo

from framemeta import _copy, _dsn, _retry
from framemeta._copy import EncodedBatch
from framemeta._retry import Failure
from framemeta._spool import Spool
from framemeta.config import WriterOptions
from framemeta.errors import (
    ConfigurationError,
    DatabaseError,
    FramemetaError,
    ValidationError,
)
from framemeta.maintenance import RetentionThread
from framemeta.records import FrameRecord

__all__ = ["FlushTimeoutError", "MetadataWriter", "QueueFullError", "WriterStats"]

logger = logging.getLogger("framemeta.writer")

# Estimated memory of one queued record beyond its metadata: the object,
# its slots, datetime and the small ints and floats (measured with
# tracemalloc; see tests/db/test_writer_outage.py for the bound it keeps).
_RECORD_BYTES: Final = 400
_DETECTION_BYTES: Final = 300
_BOUNDS_REFRESH_S: Final = 1.0
_thread_numbers = iter(range(1, 1 << 62))


class QueueFullError(FramemetaError):
    """`write` found the queue full: at once with ``overflow="raise"``, or
    after `WriterOptions.block_timeout` with ``overflow="block"``."""


class FlushTimeoutError(FramemetaError, TimeoutError):
    """`flush` gave up before everything written before it was committed."""


@attrs.frozen
class WriterStats:
    """Counters of a `MetadataWriter`, in records unless named otherwise.

    ``written == committed + rejected + dropped + lost + pending`` holds at
    every snapshot. ``spooled`` (part of ``pending``) are on disk;
    ``recovered`` were left in the spool by an earlier writer and delivered
    by this one (not part of ``written``).
    """

    written: int
    committed: int
    rejected: int
    dropped: int
    lost: int
    pending: int
    spooled: int
    recovered: int
    retried: int
    """Batch attempts that failed and were retried."""
    queue_records: int
    queue_bytes: int
    """Estimated bytes of the queued records."""
    last_flush_latency: float | None
    """Seconds from taking the last batch off the queue to its commit."""
    last_error: str | None
    """The last failure, without any password."""
    maintenance_runs: int = 0
    """Retention runs done by this writer (``maintenance_interval``)."""
    maintenance_errors: int = 0
    """Retention runs that failed (logged; the writer goes on)."""


@attrs.define
class _Batch:
    """Records ``first``..``last`` (sequence numbers) on their way out;
    ``rows`` are those not yet committed or rejected. A fresh batch keeps its
    ``records`` until its first attempt has encoded them (while streaming)."""

    first: int
    last: int
    rows: EncodedBatch
    taken_at: float
    records: list[FrameRecord] | None = None
    idempotent: bool = False
    in_flight: bool = False
    """A thread is sending it: closing leaves it to that thread."""
    spool_key: tuple[int, int] | None = None
    """Where it sits in the spool (segment, offset), once spooled."""
    spooled_rows: int = 0
    """Rows on disk once spooled (the in-memory ``rows`` are then released,
    so a long outage with a spool costs no memory)."""

    @property
    def spooled(self) -> bool:
        return self.spool_key is not None


@attrs.define
class _Outcome:
    committed: int = 0
    rejected: int = 0
    remaining: EncodedBatch | None = None
    outage: bool = False

    def stop(self, work: collections.deque[tuple[EncodedBatch, bool]]) -> _Outcome:
        parts = [part for part, _ in work]
        self.remaining = parts[0] if len(parts) == 1 else _concat(parts)
        return self


class MetadataWriter:
    """Ships `FrameRecord`s to ``frame_metadata`` from background threads
    (``framemeta-writer-N``, and ``framemeta-writer-N.2``... for the extra
    ``connections``).

    ``dsn`` None reads ``FRAMEMETA_DSN``, then libpq's ``PG*`` variables.
    ``options`` are the fields of `WriterOptions` (queue and batch sizes,
    ``flush_interval``, ``overflow``, ``spool_dir``...); a wrong name or value
    raises `ConfigurationError` here, not later.

    Use it as a context manager; `close` flushes with a deadline. Everything
    written before a successful `flush` or `close` is committed exactly once,
    across server restarts and dropped connections. A fatal error of the
    background thread (say, missing privileges) is raised by the next
    `write`, `flush` or `close`.
    """

    def __init__(self, dsn: str | None = None, **options: Any) -> None:
        try:
            self.options = WriterOptions(**options)
        except TypeError as exc:
            known = ", ".join(field.name for field in attrs.fields(WriterOptions))
            raise ConfigurationError(f"{exc}; the options are: {known}") from None
        self._conninfo = _writer_conninfo(_dsn.resolve(dsn), self.options)
        self._spool: Spool | None = None
        if self.options.spool_dir is not None:
            self._spool = Spool(self.options.spool_dir)
        self._reset_state()
        _LIVE_WRITERS.add(self)
        self._start_thread()

    def _reset_state(self) -> None:
        options = self.options
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._progress = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._wake_helpers = threading.Event()
        self._closing = threading.Event()
        self._queue: collections.deque[FrameRecord] = collections.deque()
        self._queue_bytes = 0
        self._max_records = options.queue_records
        self._max_bytes = options.queue_bytes
        self._batch_records = options.batch_records
        self._written = 0
        self._taken = 0  # records removed from the queue head (batched or dropped)
        self._committed = 0
        self._rejected = 0
        self._dropped = 0
        self._lost = 0
        self._retried = 0
        self._recovered = 0
        self._unsettled: collections.deque[_Batch] = collections.deque()
        self._last_taken_at = time.monotonic()
        self._close_deadline = 0.0
        self._rejections_logged = 0
        self._foreign_entries = 0 if self._spool is None else self._spool.pending_batches
        self._spool_retry_at = 0.0
        self._spool_delays = self._new_delays()
        self._flush_requested = False
        self._error: BaseException | None = None
        self._last_error: str | None = None
        self._last_latency: float | None = None
        self._closed = False
        self._thread: threading.Thread | None = None
        self._helpers: list[threading.Thread] = []
        self._maintenance: RetentionThread | None = None
        self._local = threading.local()  # each thread's connection
        self._conns: set[psycopg.Connection[Any]] = set()
        self._spool_lock = threading.Lock()
        self._dead_letter_lock = threading.Lock()
        self._bounds_until = 0.0
        self._earliest: datetime | None = None
        self._latest = datetime.max.replace(tzinfo=UTC)
        self._drop_warned_at = 0.0
        self._refresh_bounds()

    def _start_thread(self) -> None:
        name = f"framemeta-writer-{next(_thread_numbers)}"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._helpers = [
            threading.Thread(target=self._help, name=f"{name}.{number}", daemon=True)
            for number in range(2, self.options.connections + 1)
        ]
        self._thread.start()
        for helper in self._helpers:
            helper.start()
        interval = self.options.maintenance_interval
        if interval is not None:
            self._maintenance = RetentionThread(
                self._conninfo,
                interval,
                name=f"{name}.maintenance",
                application_name=self.options.application_name,
                connect_timeout=self.options.connect_timeout,
            ).start()

    # -- the producer side ------------------------------------------------

    def write(self, record: FrameRecord) -> None:
        """Queue one record for the database; O(1), never does I/O.

        Raises `ValidationError` for a record stamped beyond the clock-skew
        allowance or older than ``max_age``; `QueueFullError` when the queue
        is full (per ``overflow``); the background thread's fatal error, if
        any; `FramemetaError` after `close`.
        """
        if type(record) is not FrameRecord and not isinstance(record, FrameRecord):
            raise ValidationError("record", record, "must be a FrameRecord")
        if time.monotonic() > self._bounds_until:
            self._refresh_bounds()
        captured_at = record.captured_at
        if captured_at > self._latest or (
            self._earliest is not None and captured_at < self._earliest
        ):
            self._refuse_time(record)
        metadata = record._metadata_jsonb
        size = _RECORD_BYTES + (len(metadata) if metadata else 0)
        if record.detections:
            size += _DETECTION_BYTES * len(record.detections)
        with self._lock:
            if self._error is not None or self._closed or self._thread is None:
                self._raise_state()
            if len(self._queue) >= self._max_records or self._queue_bytes + size > self._max_bytes:
                self._make_room(size)
            self._queue.append(record)
            self._queue_bytes += size
            self._written += 1
            if len(self._queue) >= self._batch_records and not self._wake.is_set():
                self._wake.set()
                self._wake_helpers.set()

    def write_many(self, records: Iterable[FrameRecord]) -> None:
        """`write` each record in turn; stops at the first error, having
        queued the records before it."""
        write = self.write
        for record in records:
            write(record)

    def _make_room(self, size: int) -> None:
        """The queue is full: apply the overflow policy (lock held)."""
        policy = self.options.overflow
        if policy == "drop_oldest":
            while self._queue and (
                len(self._queue) >= self._max_records or self._queue_bytes + size > self._max_bytes
            ):
                dropped = self._queue.popleft()
                self._queue_bytes -= _estimate(dropped)
                self._taken += 1
                self._dropped += 1
            self._progress.notify_all()
            now = time.monotonic()
            if now - self._drop_warned_at > 10.0:
                self._drop_warned_at = now
                logger.warning(
                    "queue full: dropping the oldest records (%d dropped so far)", self._dropped
                )
            return
        if policy == "raise":
            raise QueueFullError(
                f"the writer's queue is full ({len(self._queue)} records, "
                f"{self._queue_bytes} bytes) and overflow='raise'"
            )
        deadline = time.monotonic() + self.options.block_timeout
        self._wake.set()
        while len(self._queue) >= self._max_records or self._queue_bytes + size > self._max_bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QueueFullError(
                    f"the writer's queue stayed full for {self.options.block_timeout} s "
                    f"({len(self._queue)} records waiting; is the database reachable?)"
                )
            self._not_full.wait(remaining)
            if self._error is not None or self._closed:
                self._raise_state()

    def _refresh_bounds(self) -> None:
        now = datetime.now(UTC)
        self._latest = now + timedelta(seconds=self.options.max_clock_skew)
        max_age = self.options.max_age
        self._earliest = None if max_age is None else now - timedelta(seconds=max_age)
        self._bounds_until = time.monotonic() + _BOUNDS_REFRESH_S

    def _refuse_time(self, record: FrameRecord) -> None:
        if record.captured_at > self._latest:
            raise ValidationError(
                "captured_at",
                record.captured_at,
                f"is more than max_clock_skew ({self.options.max_clock_skew:g} s) in the future",
            )
        raise ValidationError(
            "captured_at",
            record.captured_at,
            f"is older than max_age ({self.options.max_age:g} s), beyond raw retention",
        )

    def _raise_state(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise FramemetaError("the writer is closed")
        # A forked child's first write: its fresh writer starts its own thread.
        self._start_thread()

    # -- flush, close, stats ----------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Return once every record written before this call is committed
        (or rejected, or dropped by the overflow policy).

        ``timeout`` is in seconds (None waits as long as it takes). Raises
        `FlushTimeoutError` when it runs out, and the background thread's
        fatal error if it has one.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._written
            self._flush_requested = True
            self._wake.set()
            while self._settled_through() < target:
                if self._error is not None:
                    raise self._error
                if self._thread is None or not self._thread.is_alive():
                    if self._closed:
                        break
                    raise FramemetaError("the writer's background thread is not running")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    waiting = target - self._settled_through()
                    raise FlushTimeoutError(
                        f"flush timed out after {timeout} s with {waiting} records not yet "
                        f"committed (last error: {self._last_error or 'none'})"
                    )
                self._progress.wait(0.5 if remaining is None else min(remaining, 0.5))
            if self._error is not None:
                raise self._error

    def _settled_through(self) -> int:
        """Highest sequence number up to which every record is settled (lock held)."""
        if self._unsettled:
            return self._unsettled[0].first - 1
        return self._taken

    def close(self, timeout: float | None = None) -> int:
        """Flush and stop; idempotent and safe from any thread.

        Waits at most ``timeout`` seconds (default ``close_timeout``). What
        could not be delivered by then is spooled when there is a spool, else
        counted as lost and logged. Returns the number of records not
        delivered (spooled or lost). Raises the background thread's fatal
        error, if any.
        """
        timeout = self.options.close_timeout if timeout is None else timeout
        with self._lock:
            already = self._closed
            self._closed = True
            self._close_deadline = time.monotonic() + timeout
            self._wake.set()
            self._wake_helpers.set()
            self._not_full.notify_all()
        self._closing.set()
        maintenance = self._maintenance
        if maintenance is not None:
            maintenance.stop(timeout=0.0)  # no new run; one in progress may finish
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            # A little grace past the deadline for the thread to spool.
            thread.join(timeout + 2.0)
        if maintenance is not None:
            maintenance.stop(timeout=max(0.0, self._close_deadline - time.monotonic()))
        if not already:
            self._finish_close()
        with self._lock:
            undelivered = self._lost + self._pending_spooled()
            error = self._error
        if error is not None:
            raise error
        return undelivered

    def _finish_close(self) -> None:
        with self._lock:
            threads = [self._thread, *self._helpers] if self._thread is not None else []
            thread_alive = any(thread.is_alive() for thread in threads)
            if thread_alive:
                # The thread is stuck past the deadline (a hung server): what
                # it has not delivered is lost to this process.
                self._lost += len(self._queue)
                self._taken += len(self._queue)
                self._queue.clear()
                self._queue_bytes = 0
                for batch in [b for b in self._unsettled if not b.spooled]:
                    # Being streamed: count the records, not the rows encoded so far.
                    records = batch.records
                    self._lost += len(batch.rows) if records is None else len(records)
                    self._unsettled.remove(batch)
            lost, spooled = self._lost, self._pending_spooled()
        if lost:
            logger.warning("writer closed with %d records not delivered (lost)", lost)
        if spooled:
            logger.warning(
                "writer closed with %d records in the spool %s; the next writer delivers them",
                spooled,
                self.options.spool_dir,
            )
        if self._spool is not None and not thread_alive:
            self._spool.close()
        _LIVE_WRITERS.discard(self)

    def _pending_spooled(self) -> int:
        return sum(batch.spooled_rows for batch in self._unsettled if batch.spooled)

    def stats(self) -> WriterStats:
        """A consistent snapshot of the counters."""
        maintenance = self._maintenance
        with self._lock:
            pending = self._written - self._committed - self._rejected - self._dropped - self._lost
            return WriterStats(
                written=self._written,
                committed=self._committed,
                rejected=self._rejected,
                dropped=self._dropped,
                lost=self._lost,
                pending=pending,
                spooled=self._pending_spooled(),
                recovered=self._recovered,
                retried=self._retried,
                queue_records=len(self._queue),
                queue_bytes=self._queue_bytes,
                last_flush_latency=self._last_latency,
                last_error=self._last_error,
                maintenance_runs=maintenance.runs if maintenance else 0,
                maintenance_errors=maintenance.errors if maintenance else 0,
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("failed" if self._error else "open")
        return (
            f"<MetadataWriter {state} to {_dsn.describe(self._conninfo)} "
            f"queued={len(self._queue)} written={self._written} committed={self._committed}>"
        )

    # -- the background thread --------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            self._store_failure(exc)
        finally:
            self._disconnect()

    def _loop(self) -> None:
        interval = self.options.flush_interval
        while True:
            self._wake.wait(interval)
            self._wake.clear()
            self._deliver_spool()
            while self._error is None:
                batch = self._take_batch()
                if batch is None:
                    break
                self._send(batch)
            if self._error is not None:
                return
            with self._lock:
                done = self._closed and not self._queue and not self._unsettled
            if done or self._deadline_passed():
                self._join_helpers()
                self._give_up_remaining()
                return

    def _help(self) -> None:
        """A helper thread: ships full batches on its own connection while the
        first thread is busy; partial batches, the spool and closing are the
        first thread's."""
        try:
            interval = self.options.flush_interval
            while self._error is None:
                self._wake_helpers.wait(interval)
                self._wake_helpers.clear()
                while self._error is None:
                    batch = self._take_batch(full_only=True)
                    if batch is None:
                        break
                    self._send(batch)
                if self._closed:
                    return
        except BaseException as exc:
            self._store_failure(exc)
        finally:
            self._disconnect()
            self._wake.set()  # the first thread may be waiting to close

    def _store_failure(self, exc: BaseException) -> None:
        """A thread died: keep the error for the caller's next call."""
        logger.exception("framemeta writer thread failed")
        with self._lock:
            if self._error is None:
                self._error = exc
            self._progress.notify_all()
            self._not_full.notify_all()

    def _join_helpers(self) -> None:
        grace = max(0.0, self._close_deadline - time.monotonic()) + 1.0 if self._closed else 1.0
        for helper in self._helpers:
            if helper is not threading.current_thread():
                helper.join(grace)

    def _take_batch(self, *, full_only: bool = False) -> _Batch | None:
        """The next batch off the queue head: a full one, or (unless
        ``full_only``) what is there once ``flush_interval`` has passed, a
        flush is waiting, or closing."""
        with self._lock:
            queue = self._queue
            now = time.monotonic()
            if not queue:
                if not full_only:
                    self._flush_requested = False
                return None
            if full_only and len(queue) < self._batch_records:
                return None
            if (
                len(queue) < self._batch_records
                and not self._flush_requested
                and not self._closed
                and now - self._last_taken_at < self.options.flush_interval
            ):
                return None
            limit_bytes = self.options.batch_bytes
            records: list[FrameRecord] = []
            size = 0
            while queue and len(records) < self._batch_records and size < limit_bytes:
                record = queue.popleft()
                records.append(record)
                size += _estimate(record)
            self._queue_bytes -= size
            first = self._taken + 1
            self._taken += len(records)
            self._last_taken_at = now
            self._not_full.notify_all()
            batch = _Batch(first, self._taken, EncodedBatch(bytearray(), []), now, records)
            batch.in_flight = True
            self._unsettled.append(batch)
        # Encoding happens later, outside the lock, while the rows stream to
        # the server; producers keep writing meanwhile.
        return batch

    def _send(self, batch: _Batch) -> None:
        """Commit one batch; or spool it (outage, with a spool); or leave it
        for closing to account (deadline passed, fatal error)."""
        try:
            self._ship(batch)
        finally:
            with self._lock:
                batch.in_flight = False
                if self._closed:
                    self._wake.set()

    def _ship(self, batch: _Batch) -> None:
        records = batch.records
        if self._spool_backlog():
            if records is not None:
                _copy.encode_into(batch.rows, records)
                batch.records = None
            self._spool_batch(batch, batch.rows)
            return
        outcome = self._deliver(batch.rows, idempotent=batch.idempotent, stream=records)
        with self._lock:
            batch.records = None
            self._committed += outcome.committed
            self._rejected += outcome.rejected
            if outcome.remaining is None:
                self._last_latency = time.monotonic() - batch.taken_at
                self._unsettled.remove(batch)
                self._progress.notify_all()
                return
            batch.rows = outcome.remaining
            batch.idempotent = True
            self._progress.notify_all()
        if outcome.outage:
            self._spool_batch(batch, outcome.remaining)

    def _deliver(
        self,
        rows: EncodedBatch,
        *,
        idempotent: bool,
        stream: list[FrameRecord] | None = None,
    ) -> _Outcome:
        """Ship ``rows``; bisect around rejected rows; retry through outages.

        With ``stream`` (a fresh batch), ``rows`` is empty and the first
        attempt encodes the records into it while COPYing them; every later
        attempt works on the encoded rows.

        Stops early, with the undelivered rows in ``remaining``, when the
        database is unreachable and there is a spool (``outage`` is then
        set: new batches are spooled, spooled ones are tried again later),
        when the close deadline passes, or on a fatal error (stored for the
        caller).
        """
        work: collections.deque[tuple[EncodedBatch, bool]] = collections.deque([(rows, idempotent)])
        outcome = _Outcome()
        delays = self._new_delays()
        outage_started: float | None = None
        while work:
            part, replay = work[0]
            try:
                if stream is not None:
                    records, stream = stream, None
                    self._stream(part, records)
                    work.popleft()
                    outcome.committed += len(part)
                    continue
                conn = self._connection()
                if replay:
                    _copy.insert_idempotent(conn, part)
                else:
                    _copy.copy_batch(conn, part)
            except psycopg.Error as exc:
                kind = _retry.classify(exc)
                self._note_error(exc)
                if kind is Failure.DUPLICATE:
                    work[0] = (part, True)
                    continue
                if kind is Failure.DATA:
                    work.popleft()
                    if len(part) == 1:
                        self._dead_letter(part, exc)
                        outcome.rejected += 1
                    else:
                        middle = len(part) // 2
                        work.appendleft((part.slice(middle, len(part)), replay))
                        work.appendleft((part.slice(0, middle), replay))
                    continue
                if kind is Failure.FATAL:
                    self._fail(exc, "the server refused the writer's rows")
                    return outcome.stop(work)
                self._disconnect()
                with self._lock:
                    self._retried += 1
                # The COMMIT may have happened or not: from now on this work
                # goes through the idempotent path.
                work = collections.deque((pending, True) for pending, _ in work)
                if self._spool is not None:
                    outcome.outage = True
                    return outcome.stop(work)
                now = time.monotonic()
                outage_started = outage_started or now
                budget = self.options.outage_budget
                if budget is not None and now - outage_started > budget:
                    self._fail(exc, f"the database stayed unreachable for over {budget:g} s")
                    return outcome.stop(work)
                if not self._pause(next(delays)):
                    return outcome.stop(work)
            else:
                work.popleft()
                outcome.committed += len(part)
        return outcome

    def _stream(self, rows: EncodedBatch, records: list[FrameRecord]) -> None:
        """The fast path's first attempt; ``rows`` holds every record encoded
        afterwards, whether it succeeded or raised."""
        try:
            conn = self._connection()
        except BaseException:
            _copy.encode_into(rows, records)
            raise
        _copy.copy_records(conn, records, rows)

    def _new_delays(self) -> Iterator[float]:
        return _retry.backoff_delays(self.options.retry_initial, self.options.retry_max)

    def _pause(self, seconds: float) -> bool:
        """Wait before a retry; False once closing has passed its deadline.

        close() cuts a pause short so that the last records go out at once.
        """
        if not self._closed:
            self._closing.wait(seconds)
            return True
        remaining = self._close_deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(seconds, remaining))
        return time.monotonic() < self._close_deadline

    def _deadline_passed(self) -> bool:
        return self._closed and time.monotonic() >= self._close_deadline

    def _connection(self) -> psycopg.Connection[Any]:
        """This thread's connection, opened if needed."""
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed:
            return conn
        timeout = self.options.connect_timeout
        if self._closed:
            timeout = min(timeout, self._close_deadline - time.monotonic())
        conn = psycopg.connect(
            self._conninfo,
            autocommit=True,
            prepare_threshold=None,
            # libpq waits at least 2 s; it takes whole seconds.
            connect_timeout=max(2, int(timeout)),
        )
        self._local.conn = conn
        with self._lock:
            self._conns.add(conn)
        return conn

    def _disconnect(self) -> None:
        """Close this thread's connection."""
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._lock:
                self._conns.discard(conn)
            with contextlib.suppress(Exception):
                conn.close()

    def _note_error(self, exc: psycopg.Error) -> None:
        text = str(exc).strip()
        message = text.splitlines()[0] if text else type(exc).__name__
        state = f" [{exc.sqlstate}]" if exc.sqlstate else ""
        with self._lock:
            self._last_error = f"{type(exc).__name__}{state}: {message}"

    def _fail(self, exc: psycopg.Error, why: str) -> None:
        error = DatabaseError(f"{why}: {self._last_error}", exc.sqlstate)
        error.__cause__ = exc
        logger.error("framemeta writer stopped: %s", error)
        with self._lock:
            self._error = error
            self._progress.notify_all()
            self._not_full.notify_all()

    # -- dead letters -----------------------------------------------------

    def _dead_letter(self, part: EncodedBatch, exc: psycopg.Error) -> None:
        row = _copy.decode_row(part.row(0))
        self._rejections_logged += 1
        if self._rejections_logged <= 10 or not self._rejections_logged % 1000:
            logger.warning(
                "server rejected frame %s of camera %s at %s (%d rejected): %s",
                row.get("frame_number"),
                row.get("camera_id"),
                row.get("captured_at"),
                self._rejections_logged,
                self._last_error,
            )
        path = self.options.effective_dead_letter_path
        if path is None:
            return
        line = orjson.dumps(
            {
                "rejected_at": datetime.now(UTC).isoformat(),
                "sqlstate": exc.sqlstate,
                "error": (exc.diag.message_primary or str(exc)).strip(),
                "detail": exc.diag.message_detail,
                "row": row,
            }
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._dead_letter_lock, path.open("ab") as handle:
            handle.write(line + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    # -- the spool --------------------------------------------------------

    def _spool_backlog(self) -> bool:
        return self._spool is not None and self._spool.pending_batches > 0

    def _spool_batch(self, batch: _Batch, rows: EncodedBatch) -> None:
        """Append a batch's undelivered rows to the spool (durable on return)."""
        assert self._spool is not None
        with self._spool_lock:
            key = self._spool.append(rows.to_bytes())
            batch.spool_key = key
        with self._lock:
            batch.rows = EncodedBatch(bytearray(), [])
            batch.spooled_rows = len(rows)
            self._progress.notify_all()

    def _deliver_spool(self) -> None:
        """Deliver spooled batches, oldest first, while the database answers.

        One failed attempt ends the round (the loop goes on spooling new
        batches) and the next round waits a backoff pause. An entry counts
        when all of it is delivered; a replay after a partial attempt
        inserts nothing twice (idempotent path).
        """
        spool = self._spool
        if spool is None or time.monotonic() < self._spool_retry_at:
            return
        while self._error is None:
            with self._spool_lock:  # its batch has its spool_key by now
                entry = spool.oldest()
            if entry is None:
                return
            rows = EncodedBatch.from_bytes(entry.payload)
            outcome = self._deliver(rows, idempotent=True)
            if outcome.remaining is not None:
                self._spool_retry_at = time.monotonic() + next(self._spool_delays)
                return
            self._spool_delays = self._new_delays()
            spool.mark_delivered(entry)
            with self._lock:
                if self._foreign_entries:
                    # Left by an earlier writer on this spool.
                    self._foreign_entries -= 1
                    self._recovered += outcome.committed
                else:
                    key = (entry.segment, entry.offset)
                    for batch in self._unsettled:
                        if batch.spool_key == key:
                            self._unsettled.remove(batch)
                            break
                    self._committed += outcome.committed
                    self._rejected += outcome.rejected
                self._progress.notify_all()

    def _give_up_remaining(self) -> None:
        """Closing at the deadline: spool what is undelivered, or count it lost."""
        with self._lock:
            records = list(self._queue)
            self._queue.clear()
            self._queue_bytes = 0
            first = self._taken + 1
            self._taken += len(records)
            self._not_full.notify_all()
            if records:
                empty = EncodedBatch(bytearray(), [])
                self._unsettled.append(_Batch(first, self._taken, empty, 0.0))
            unsent = [b for b in self._unsettled if not b.spooled and not b.in_flight]
        if records:
            unsent[-1].rows = _copy.encode_batch(records)
        if self._spool is not None and self._error is None:
            for batch in unsent:
                self._spool_batch(batch, batch.rows)
            return
        with self._lock:
            for batch in unsent:
                self._lost += len(batch.rows)
                self._unsettled.remove(batch)
            self._progress.notify_all()

    # -- fork -------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        """The child gets a fresh, empty writer: no inherited queue, thread,
        connection or spool (the parent keeps delivering its own)."""
        for conn in list(self._conns):
            _neutralise(conn)
        self._spool = None
        self._reset_state()
        self._thread = None


def _estimate(record: FrameRecord) -> int:
    metadata = record._metadata_jsonb
    size = _RECORD_BYTES + (len(metadata) if metadata else 0)
    if record.detections:
        size += _DETECTION_BYTES * len(record.detections)
    return size


def _concat(parts: list[EncodedBatch]) -> EncodedBatch:
    data = bytearray()
    ends: list[int] = []
    for part in parts:
        base = len(data)
        data += part.data
        ends.extend(base + end for end in part.ends)
    return EncodedBatch(data, ends)


def _writer_conninfo(conninfo: str, options: WriterOptions) -> str:
    """Add what a long-lived writer connection needs, unless the DSN says otherwise."""
    params = pg_conninfo.conninfo_to_dict(conninfo)
    extra: dict[str, Any] = {"application_name": options.application_name}
    host = str(params.get("host") or os.environ.get("PGHOST") or "")
    if "," in host and "target_session_attrs" not in params:
        # Several hosts: find the primary, also after a failover.
        extra["target_session_attrs"] = "read-write"
    # Notice a dead peer in about 30 s instead of the kernel's two hours.
    for key, value in (
        ("keepalives", 1),
        ("keepalives_idle", 10),
        ("keepalives_interval", 5),
        ("keepalives_count", 3),
    ):
        extra.setdefault(key, value)
    for key in list(extra):
        if key in params:
            del extra[key]
    return pg_conninfo.make_conninfo(conninfo, **extra)


def _neutralise(conn: psycopg.Connection[Any]) -> None:
    """Make an inherited connection's socket point at /dev/null, so that
    closing it in the child cannot end the parent's session."""
    with contextlib.suppress(Exception):
        fd = conn.pgconn.socket
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, fd)
        os.close(devnull)
    _INHERITED.append(conn)


_LIVE_WRITERS: weakref.WeakSet[MetadataWriter] = weakref.WeakSet()
_INHERITED: list[psycopg.Connection[Any]] = []


def _close_all_at_exit() -> None:
    for writer in list(_LIVE_WRITERS):
        with contextlib.suppress(Exception):
            writer.close()


def _reinit_in_child() -> None:
    for writer in list(_LIVE_WRITERS):
        writer._after_fork_in_child()


atexit.register(_close_all_at_exit)
os.register_at_fork(after_in_child=_reinit_in_child)
