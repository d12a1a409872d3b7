"""Connection strings: where a DSN comes from, how it is shown, how we connect.

A DSN given by the caller wins, then ``FRAMEMETA_DSN``, then libpq's own
``PG*`` variables. Passwords never leave this module in a printable form.
"""

from __future__ import annotations

import os
import re
from typing import Any, Final

import psycopg
from psycopg import conninfo as pg_conninfo

from framemeta.errors import ConfigurationError, DatabaseError

__all__ = ["connect", "describe", "redact", "resolve"]

ENV_DSN: Final = "FRAMEMETA_DSN"
_SECRET_KEYS: Final = frozenset({"password", "sslpassword"})
# A password can sit in a URI's userinfo (postgresql://user:secret@host/db).
_URI_PASSWORD: Final = re.compile(r"(?P<head>^[a-z]+://[^:/?#@]*:)(?P<secret>[^@/?#]*)(?=@)")


def resolve(dsn: str | None) -> str:
    """Return the conninfo to use: ``dsn``, else ``$FRAMEMETA_DSN``, else ``""``.

    An empty string lets libpq read ``PGHOST``, ``PGDATABASE`` and the rest.
    Raises `ConfigurationError` (without the password) when it cannot be parsed.
    """
    if dsn is None:
        dsn = os.environ.get(ENV_DSN, "")
    if not isinstance(dsn, str):
        raise ConfigurationError(f"dsn: must be a string or None, not {type(dsn).__name__}")
    try:
        pg_conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        reason = _scrub(str(exc), dsn)
        raise ConfigurationError(f"dsn: cannot parse {redact(dsn)!r}: {reason}") from None
    return dsn


def redact(dsn: str) -> str:
    """Return ``dsn`` with any password replaced by ``****``; safe to log."""
    redacted = _URI_PASSWORD.sub(r"\g<head>****", dsn)
    try:
        params = pg_conninfo.conninfo_to_dict(redacted)
    except psycopg.ProgrammingError:
        # Unparseable: show nothing after a password keyword rather than risk it.
        return re.sub(r"(password\s*=\s*)\S.*", r"\1****", redacted, flags=re.IGNORECASE)
    if not any(key in params for key in _SECRET_KEYS):
        return redacted
    for key in _SECRET_KEYS & params.keys():
        params[key] = "****"
    return pg_conninfo.make_conninfo("", **params)


def describe(dsn: str) -> str:
    """A short human name for where ``dsn`` points: ``user@host:port/dbname``."""
    try:
        params: dict[str, Any] = pg_conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparseable dsn>"
    host = params.get("host") or os.environ.get("PGHOST") or "localhost"
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    user = params.get("user") or os.environ.get("PGUSER") or ""
    dbname = params.get("dbname") or os.environ.get("PGDATABASE") or user
    return f"{user + '@' if user else ''}{host}:{port}/{dbname}"


def connect(dsn: str | None, *, autocommit: bool = False, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open a psycopg connection to the resolved ``dsn``.

    Raises `ConfigurationError` for an unparseable DSN and `DatabaseError`
    with a one-line message (no password) when the server cannot be reached
    or refuses the login.
    """
    conninfo = resolve(dsn)
    kwargs.setdefault("connect_timeout", 10)
    kwargs.setdefault("application_name", "framemeta")
    try:
        return psycopg.connect(conninfo, autocommit=autocommit, **kwargs)
    except psycopg.OperationalError as exc:
        detail = _scrub(str(exc).strip().splitlines()[-1] if str(exc).strip() else "", conninfo)
        raise DatabaseError(
            f"cannot connect to {describe(conninfo)}: {detail}", _sqlstate(exc)
        ) from exc


def _sqlstate(exc: psycopg.Error) -> str | None:
    return exc.sqlstate


def _scrub(message: str, dsn: str) -> str:
    """Remove any password of ``dsn`` that a message might echo back."""
    try:
        params = pg_conninfo.conninfo_to_dict(_URI_PASSWORD.sub(r"\g<head>", dsn))
    except psycopg.ProgrammingError:
        params = {}
    secrets = [str(params[key]) for key in _SECRET_KEYS & params.keys()]
    match = _URI_PASSWORD.search(dsn)
    if match and match.group("secret"):
        secrets.append(match.group("secret"))
    for secret in secrets:
        if secret:
            message = message.replace(secret, "****")
    return message
