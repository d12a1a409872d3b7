"""The migration runner: applies the numbered SQL files in ``migrations/``.

Each file runs once, in its own transaction with its bookkeeping row, under
a session advisory lock so that concurrent runners apply it once. The SQL
itself lives in the files, readable by a DBA without Python.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import attrs
import psycopg

from framemeta import _dsn
from framemeta._status import check_timescaledb
from framemeta.errors import MigrationError

__all__ = ["Migration", "MigrationState", "migrate", "migration_status"]

MIGRATIONS_TABLE: Final = "framemeta_schema_migrations"
# Any fixed 64-bit number will do; this one spells "framemeta" in its bytes.
_LOCK_KEY: Final = 0x6672616D656D6574
_FILE_NAME: Final = re.compile(r"(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql")
# A first-lines directive for statements PostgreSQL refuses inside a
# transaction block (CREATE INDEX CONCURRENTLY, continuous aggregates).
_NO_TRANSACTION: Final = re.compile(r"^--\s*framemeta:\s*no-transaction\s*$", re.MULTILINE)


@attrs.frozen
class Migration:
    """One migration file: ``version`` (from the ``NNNN_`` prefix), ``name``,
    its SQL text, the SHA-256 ``checksum`` of that text, and whether it runs
    inside a transaction (files marked ``-- framemeta: no-transaction`` do not)."""

    version: int
    name: str
    sql: str
    checksum: str
    transactional: bool

    @property
    def filename(self) -> str:
        """The file's name, ``NNNN_name.sql``."""
        return f"{self.version:04d}_{self.name}.sql"


@attrs.frozen
class MigrationState:
    """A migration and where it stands in one database: ``applied_at`` is None
    while it is pending; ``edited`` is True when the file no longer matches
    what was applied."""

    migration: Migration
    applied_at: datetime | None
    edited: bool = False

    @property
    def status(self) -> str:
        """``"applied"``, ``"pending"`` or ``"edited"``."""
        if self.applied_at is None:
            return "pending"
        return "edited" if self.edited else "applied"


def migrations_dir() -> Path:
    """Where the migration files are: inside the installed package, or the
    ``migrations/`` folder of a source checkout (an editable install)."""
    packaged = importlib.resources.files("framemeta") / "migrations"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "migrations"


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """Read and order the migration files; raises `MigrationError` on a badly
    named file or a version used twice."""
    directory = directory or migrations_dir()
    if not directory.is_dir():
        raise MigrationError(f"migrations directory not found: {directory}")
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lowercase_name.sql")
        version = int(match["version"])
        if version in migrations:
            raise MigrationError(
                f"{path.name}: version {version} is also used by {migrations[version].filename}"
            )
        data = path.read_bytes()
        sql = data.decode("utf-8")
        migrations[version] = Migration(
            version=version,
            name=match["name"],
            sql=sql,
            checksum=hashlib.sha256(data).hexdigest(),
            transactional=_NO_TRANSACTION.search(sql[:2000]) is None,
        )
    return [migrations[version] for version in sorted(migrations)]


def migrate(
    conninfo: str | None = None,
    *,
    directory: Path | None = None,
    progress: Callable[[str], None] | None = None,
    lock_timeout: float = 30.0,
) -> list[Migration]:
    """Apply the pending migrations to the database at ``conninfo``; idempotent.

    ``conninfo`` None reads ``FRAMEMETA_DSN``, then libpq's ``PG*`` variables.
    Runners that start together wait for each other (an advisory lock), so
    each file is applied once. A transactional file either applies whole,
    with its bookkeeping row, or not at all. ``lock_timeout`` (seconds) bounds
    how long one DDL statement waits for a table lock held by others.

    Returns the migrations this call applied (empty when up to date). Raises
    `MigrationError` when an applied file was edited, when the database has a
    migration this framemeta does not know, or when a file fails (the
    server's message and SQLSTATE included); `DatabaseError` when the server
    cannot be reached.
    """
    say = progress or (lambda _: None)
    migrations = load_migrations(directory)
    conn = _dsn.connect(conninfo, autocommit=True, application_name="framemeta-migrate")
    with conn, _MigrationLock(conn, say):
        check_timescaledb(conn)
        _ensure_migrations_table(conn)
        applied = _applied_checksums(conn)
        _check_history(migrations, applied)
        done: list[Migration] = []
        for migration in migrations:
            if migration.version in applied:
                continue
            say(f"applying {migration.filename}")
            started = time.perf_counter()
            _apply(conn, migration, lock_timeout)
            say(f"applied {migration.filename} in {time.perf_counter() - started:.2f} s")
            done.append(migration)
        _share_migrations_table(conn)
        return done


def _share_migrations_table(conn: psycopg.Connection[Any]) -> None:
    """The bookkeeping table belongs to the role that migrates; framemeta's
    owner and reader roles may read it (`framemeta status` and
    ``migrate --status`` as those roles). At every run, for databases
    migrated before it was granted; a runner that may not grant leaves it."""
    conn.execute(
        f"""
        DO $grant$
        BEGIN
            IF to_regrole('framemeta_owner') IS NOT NULL
               AND to_regrole('framemeta_reader') IS NOT NULL THEN
                GRANT SELECT ON {MIGRATIONS_TABLE} TO framemeta_owner, framemeta_reader;
            END IF;
        EXCEPTION WHEN insufficient_privilege THEN
            NULL;
        END
        $grant$
        """
    )


def migration_status(
    conninfo: str | None = None, *, directory: Path | None = None
) -> list[MigrationState]:
    """List every known migration with its state in the database at ``conninfo``.

    Read-only; a database never migrated reports every file pending. Raises
    `DatabaseError` when the server cannot be reached.
    """
    migrations = load_migrations(directory)
    with _dsn.connect(conninfo, autocommit=True) as conn:
        rows: dict[int, tuple[str, datetime]] = {}
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (MIGRATIONS_TABLE,)).fetchone()
        if exists and exists[0]:
            for version, checksum, applied_at in conn.execute(
                f"SELECT version, checksum, applied_at FROM {MIGRATIONS_TABLE}"
            ):
                rows[version] = (checksum, applied_at)
    return [
        MigrationState(
            migration=m,
            applied_at=rows[m.version][1] if m.version in rows else None,
            edited=m.version in rows and rows[m.version][0] != m.checksum,
        )
        for m in migrations
    ]


class _MigrationLock:
    """Session advisory lock held while migrating; the second runner waits."""

    def __init__(self, conn: psycopg.Connection[Any], say: Callable[[str], None]) -> None:
        self._conn = conn
        self._say = say

    def __enter__(self) -> None:
        row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)).fetchone()
        if row and row[0]:
            return
        self._say("another process is migrating this database; waiting for it")
        self._conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))

    def __exit__(self, *exc: object) -> None:
        if not self._conn.closed:
            self._conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def _ensure_migrations_table(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        f"""
        CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
            version     integer     PRIMARY KEY,
            name        text        NOT NULL,
            checksum    text        NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now(),
            applied_by  text        NOT NULL DEFAULT current_user,
            duration_ms integer     NOT NULL
        )
        """
    )


def _applied_checksums(conn: psycopg.Connection[Any]) -> dict[int, tuple[str, str]]:
    return {
        version: (name, checksum)
        for version, name, checksum in conn.execute(
            f"SELECT version, name, checksum FROM {MIGRATIONS_TABLE} ORDER BY version"
        )
    }


def _check_history(migrations: list[Migration], applied: dict[int, tuple[str, str]]) -> None:
    known = {m.version: m for m in migrations}
    for version, (name, checksum) in applied.items():
        migration = known.get(version)
        if migration is None:
            raise MigrationError(
                f"the database has migration {version:04d}_{name}.sql, which this version of "
                "framemeta does not know: upgrade framemeta before migrating"
            )
        if migration.checksum != checksum:
            raise MigrationError(
                f"{migration.filename} was edited after it was applied "
                f"(applied sha256 {checksum[:12]}, file {migration.checksum[:12]}): "
                "restore the file and put the change in a new migration"
            )


def _apply(conn: psycopg.Connection[Any], migration: Migration, lock_timeout: float) -> None:
    started = time.perf_counter()
    try:
        if migration.transactional:
            with conn.transaction():
                conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout * 1000)}ms'")
                conn.execute(migration.sql.encode())
                _record(conn, migration, started)
        else:
            # Run statement by statement, outside any transaction; recorded
            # only when all succeed. Such files must be safe to run again.
            conn.execute(f"SET lock_timeout = '{int(lock_timeout * 1000)}ms'")
            for statement in split_statements(migration.sql):
                conn.execute(statement.encode())
            conn.execute("RESET lock_timeout")
            _record(conn, migration, started)
    except psycopg.Error as exc:
        diag = exc.diag
        where = f" ({diag.context.strip().splitlines()[0]})" if diag.context else ""
        raise MigrationError(
            f"{migration.filename} failed: {diag.message_primary or exc}{where}",
            exc.sqlstate,
        ) from exc


def _record(conn: psycopg.Connection[Any], migration: Migration, started: float) -> None:
    conn.execute(
        f"INSERT INTO {MIGRATIONS_TABLE} (version, name, checksum, duration_ms) "
        "VALUES (%s, %s, %s, %s)",
        (
            migration.version,
            migration.name,
            migration.checksum,
            int((time.perf_counter() - started) * 1000),
        ),
    )


_TOKEN: Final = re.compile(
    r"""
      (?P<dollar>\$(?P<tag>[A-Za-z_]\w*)?\$)   # start of a dollar-quoted string
    | (?P<quote>'(?:[^']|'')*')                # a string literal
    | (?P<ident>"(?:[^"]|"")*")                # a quoted identifier
    | (?P<line>--[^\n]*)                       # a line comment
    | (?P<block>/\*.*?\*/)                     # a block comment (not nested)
    | (?P<semi>;)
    """,
    re.VERBOSE | re.DOTALL,
)


def split_statements(sql: str) -> list[str]:
    """Split a script into statements at top-level semicolons.

    Semicolons inside quotes, dollar-quoted bodies and comments do not count.
    Empty statements (only comments or blanks) are dropped.
    """
    statements: list[str] = []
    start = position = 0
    while True:
        match = _TOKEN.search(sql, position)
        if match is None:
            break
        if match["dollar"]:
            end = sql.find(match["dollar"], match.end())
            if end < 0:
                raise MigrationError("unterminated dollar-quoted string in a migration")
            position = end + len(match["dollar"])
            continue
        position = match.end()
        if match["semi"]:
            statements.append(sql[start:position])
            start = position
    statements.append(sql[start:])
    return [s.strip() for s in statements if _has_code(s)]


def _has_code(statement: str) -> bool:
    stripped = re.sub(r"--[^\n]*|/\*.*?\*/", "", statement, flags=re.DOTALL)
    return bool(stripped.strip(" \t\r\n;"))
