"""Shared fixtures: one PostgreSQL + TimescaleDB server per test run, and a
fresh, migrated database per test cloned from a template (about 0.1 s).

``FRAMEMETA_TEST_DSN`` points the tests at an existing server instead of the
embedded one; its role must be able to create databases and roles.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import settings
from psycopg.conninfo import make_conninfo

from framemeta import migrate
from framemeta.embedded import EmbeddedServer

TEST_DSN_ENV = "FRAMEMETA_TEST_DSN"
# Test clusters need no durability across an OS crash; they do need it
# across a server crash (restart tests), which fsync=off keeps.
TEST_SETTINGS = {"fsync": "off", "full_page_writes": "off", "shared_buffers": "256MB"}

_counter = itertools.count()

# Property tests check behaviour, not speed: hypothesis's default 200 ms
# deadline failed a record check that took 289 ms once while a benchmark
# shared the machine's two cores.
settings.register_profile("framemeta", deadline=None)
settings.load_profile("framemeta")


@pytest.fixture(scope="session")
def session_server() -> Iterator[EmbeddedServer | None]:
    """The embedded server of this run, or None with ``FRAMEMETA_TEST_DSN``."""
    if os.environ.get(TEST_DSN_ENV):
        yield None
        return
    with EmbeddedServer(settings=TEST_SETTINGS) as server:
        yield server


@pytest.fixture(scope="session")
def admin_dsn(session_server: EmbeddedServer | None) -> str:
    """Superuser conninfo of the test server (the embedded one by default)."""
    if session_server is None:
        return os.environ[TEST_DSN_ENV]
    return session_server.dsn


@pytest.fixture
def server(session_server: EmbeddedServer | None) -> EmbeddedServer:
    """The embedded server itself, for tests that stop or restart it."""
    if session_server is None:
        pytest.skip(f"controls the embedded server; {TEST_DSN_ENV} points elsewhere")
    if not session_server.is_running:
        session_server.start()
    return session_server


@pytest.fixture(scope="session")
def template_db(admin_dsn: str) -> Iterator[str]:
    """Name of a migrated database that every test database is cloned from."""
    name = f"framemeta_template_{os.getpid()}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
        migrate(make_conninfo(admin_dsn, dbname=name))
        with psycopg.connect(make_conninfo(admin_dsn, dbname=name), autocommit=True) as db:
            pause_policies(db)
        # TimescaleDB's scheduler keeps a connection to every database with
        # the extension; a template must have none, so keep it out for good.
        conn.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false")
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (name,),
        )
    yield name
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def pause_policies(conn: psycopg.Connection[Any]) -> None:
    """Community edition: unschedule framemeta's policies, so that a test
    sees only what it does itself (tests of the policies schedule them
    again). Apache edition: there are none."""
    if conn.execute("SELECT framemeta_edition()").fetchone() == ("timescale",):
        conn.execute(
            "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs"
            " WHERE hypertable_name IS NOT NULL"
            "    OR proc_name IN ('framemeta_recount_cameras_job', 'framemeta_refresh_late_job')"
        )


@contextlib.contextmanager
def scratch_database(
    admin_dsn: str, kind: str, template: str | None = None, options: str = ""
) -> Iterator[str]:
    """A new database ``framemeta_<kind>_...`` (a clone of ``template`` if
    given; ``options``: more of ``CREATE DATABASE``, a collation say) for
    the duration of the block; yields its conninfo."""
    name = f"framemeta_{kind}_{os.getpid()}_{next(_counter)}"
    clone = f" TEMPLATE {template} STRATEGY file_copy" if template else ""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}{clone} {options}")
    try:
        yield make_conninfo(admin_dsn, dbname=name)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def fresh_database(admin_dsn: str) -> Iterator[str]:
    """Conninfo of a new, empty database (no extension, no schema)."""
    with scratch_database(admin_dsn, "empty") as dsn:
        yield dsn


@pytest.fixture
def db_dsn(admin_dsn: str, template_db: str) -> Iterator[str]:
    """Superuser conninfo of a fresh database with the schema migrated."""
    with scratch_database(admin_dsn, "test", template=template_db) as dsn:
        yield dsn


@pytest.fixture
def embedded_only() -> None:
    """Skip a test that controls the server process when using an external one."""
    if os.environ.get(TEST_DSN_ENV):
        pytest.skip(f"controls the embedded server; {TEST_DSN_ENV} points elsewhere")
