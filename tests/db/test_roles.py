"""Least-privilege roles: the writer only inserts, the reader only reads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

ROW = (
    "INSERT INTO frame_metadata (camera_id, captured_at, frame_number, motion_score)"
    " VALUES ('cam-1', %s, 1, 0.7)"
)


@pytest.fixture
def as_writer(db_dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute("SET ROLE framemeta_writer")
        yield conn


@pytest.fixture
def as_reader(db_dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute("SET ROLE framemeta_reader")
        yield conn


def test_writer_inserts_into_a_new_chunk(as_writer: psycopg.Connection[tuple[object, ...]]) -> None:
    as_writer.execute(ROW, (datetime(2026, 3, 1, tzinfo=UTC),))


def test_writer_copies_rows_in(as_writer: psycopg.Connection[tuple[object, ...]]) -> None:
    with as_writer.cursor().copy(
        "COPY frame_metadata (camera_id, captured_at, frame_number) FROM STDIN"
    ) as copy:
        copy.write_row(("cam-2", datetime(2026, 3, 2, tzinfo=UTC), 1))


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM frame_metadata",
        "UPDATE frame_metadata SET motion_score = 0",
        "TRUNCATE frame_metadata",
        "DROP TABLE frame_metadata",
        "SELECT count(*) FROM frame_metadata",
        "ALTER TABLE frame_metadata ADD COLUMN sneaky int",
        "UPDATE framemeta_config SET value = 'x'",
        "CREATE TABLE public.sneaky (id int)",
    ],
)
def test_writer_cannot_change_or_read_data(
    as_writer: psycopg.Connection[tuple[object, ...]], statement: str
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_writer.execute(statement)


def test_reader_reads(db_dsn: str, as_reader: psycopg.Connection[tuple[object, ...]]) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute(ROW, (datetime(2026, 3, 1, tzinfo=UTC),))

    row = as_reader.execute("SELECT count(*) FROM frame_metadata").fetchone()

    assert row == (1,)


@pytest.mark.parametrize(
    "statement",
    [
        ROW.replace("%s", "now()"),
        "DELETE FROM frame_metadata",
        "TRUNCATE frame_metadata",
        "DROP TABLE frame_metadata",
    ],
)
def test_reader_cannot_write(
    as_reader: psycopg.Connection[tuple[object, ...]], statement: str
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_reader.execute(statement)


def test_owner_owns_every_framemeta_object(db_dsn: str) -> None:
    with psycopg.connect(db_dsn) as conn:
        owners: dict[str, str] = dict(
            conn.execute(
                "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public'"
                "   AND c.relname IN ('frame_metadata', 'framemeta_config')"
            )
        )
    assert owners == {"frame_metadata": "framemeta_owner", "framemeta_config": "framemeta_owner"}


@pytest.mark.parametrize("role", ["framemeta_owner", "framemeta_reader"])
def test_status_and_migration_state_read_as_the_owner_and_the_reader(
    db_dsn: str, role: str
) -> None:
    """The migrations' bookkeeping table belongs to whoever migrated (a
    superuser here); the owner and the reader may read it all the same."""
    from framemeta import _status

    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute(f"SET ROLE {role}")
        status = _status.collect(conn)
        applied = conn.execute("SELECT count(*) FROM framemeta_schema_migrations").fetchone()

    assert status is not None
    assert applied is not None
    assert applied[0] > 0
