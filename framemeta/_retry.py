"""Which failures are retried, and how long to wait between attempts.

A failure is one of four kinds: the connection or the server's state
(retry with backoff), a unique violation (replay through the idempotent
path), bad data (bisect the batch), or fatal (stop and tell the caller).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Final

import backoff
import psycopg

__all__ = ["Failure", "backoff_delays", "classify"]


class Failure(enum.Enum):
    """What a failed batch attempt means for the batch."""

    RETRY = "retry"
    """The connection or the server: try again after a pause, idempotently."""
    DUPLICATE = "duplicate"
    """Some rows are there already: replay through the idempotent path."""
    DATA = "data"
    """The server refused a row: bisect to isolate it."""
    FATAL = "fatal"
    """Retrying cannot help (privileges, a missing table): stop the writer."""


_RETRY_STATES: Final = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now
        "57014",  # query_canceled (statement timeout, pg_cancel_backend)
        "25006",  # read_only_sql_transaction: a replica after a failover
        "55P03",  # lock_not_available
    }
)
# 08: connection exceptions; 53: insufficient resources (disk full, out of
# memory, too many connections); 58: system errors (I/O).
_RETRY_CLASSES: Final = frozenset({"08", "53", "58"})
# 22: data exceptions (out of range, bad encoding, NUL in text); 23:
# integrity constraints (check, not null); 54: program limits (row too big).
_DATA_CLASSES: Final = frozenset({"22", "23", "54"})


def classify(error: BaseException) -> Failure:
    """Sort a failure of a batch attempt into a `Failure` kind."""
    if not isinstance(error, psycopg.Error):
        return Failure.FATAL
    state = error.sqlstate
    if state is None:
        # No SQLSTATE: the connection broke or could not be made.
        return Failure.RETRY if isinstance(error, psycopg.OperationalError) else Failure.FATAL
    if state == "23505":
        return Failure.DUPLICATE
    if state in _RETRY_STATES or state[:2] in _RETRY_CLASSES:
        return Failure.RETRY
    if state[:2] in _DATA_CLASSES:
        return Failure.DATA
    return Failure.FATAL


def backoff_delays(initial: float, maximum: float) -> Iterator[float]:
    """Seconds to wait before each retry: exponential from ``initial`` up to
    ``maximum``, with full jitter so many writers do not reconnect in step."""
    for ceiling in backoff.expo(base=2, factor=initial, max_value=maximum):
        if ceiling is None:  # backoff's generators start with a priming None
            continue
        yield backoff.full_jitter(ceiling)
