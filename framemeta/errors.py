"""Every error framemeta raises: one root, `FramemetaError`, and its children.

Validation errors name the field and the bad value; database errors keep the
SQLSTATE and carry the original exception as ``__cause__``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConfigurationError",
    "DatabaseError",
    "FramemetaError",
    "MigrationError",
    "SpoolError",
    "ValidationError",
]


class FramemetaError(Exception):
    """Root of every exception raised by framemeta."""


class ValidationError(FramemetaError, ValueError):
    """A value was refused before it reached the database.

    ``field`` names the field or argument, ``value`` holds the refused value
    (its ``repr`` is shortened in the message).
    """

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{field}: {reason} (got {shown})")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.field, self.value, self.reason))


class ConfigurationError(FramemetaError, ValueError):
    """An option or a connection string is wrong; raised at construction."""


class DatabaseError(FramemetaError):
    """The server refused or failed an operation.

    ``sqlstate`` is the five-character SQLSTATE when the server sent one, else
    None (e.g. the connection could not be made). The psycopg exception is
    the ``__cause__``.
    """

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        self.sqlstate = sqlstate
        super().__init__(message)


class MigrationError(DatabaseError):
    """A migration could not be applied, or applied files were edited."""


class SpoolError(FramemetaError):
    """The writer's disk spool (``spool_dir``) cannot be used: another live
    process holds it (raised when the writer is constructed), a segment is
    damaged (the message names the file and byte offset; move the file aside
    to go on), or the disk refused a write (full, read-only: the writer
    thread stops and the error is re-raised on the next call)."""
