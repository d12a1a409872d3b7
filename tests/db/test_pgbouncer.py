"""Through a real pgbouncer (Debian's package, started here) in transaction
mode: the writer delivers, and the Query API answers exactly as it does on a
direct connection, with no session state and no prepared statements."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import framemeta.query
from framemeta import Detection, FrameQuery, FrameRecord, MetadataWriter
from framemeta._provision import find_pgbouncer
from tests.frames import START, frames, refresh_rollups

_INI = """
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = trust
auth_file = {directory}/users.txt
pool_mode = transaction
default_pool_size = 4
max_client_conn = 50
ignore_startup_parameters = extra_float_digits
logfile = {directory}/pgbouncer.log
pidfile = {directory}/pgbouncer.pid
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def pgbouncer_port(admin_dsn: str) -> Iterator[int]:
    program = find_pgbouncer()
    if program is None:
        pytest.fail("pgbouncer is not installed: run `framemeta server install --pgbouncer`")
    server = conninfo_to_dict(admin_dsn)
    directory = Path(tempfile.mkdtemp(prefix="framemeta-pgbouncer-"))
    port = _free_port()
    (directory / "pgbouncer.ini").write_text(
        _INI.format(
            host=server.get("host", "127.0.0.1"),
            port=server.get("port", 5432),
            listen_port=port,
            directory=directory,
        )
    )
    (directory / "users.txt").write_text(f'"{server.get("user", "postgres")}" ""\n')
    command = [str(program), str(directory / "pgbouncer.ini")]
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        user = pwd.getpwnam("postgres")
        for path in (directory, *directory.iterdir()):
            os.chown(path, user.pw_uid, user.pw_gid)
        command[1:1] = ["-u", "postgres"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (directory / "pgbouncer.log").read_text(errors="replace")
                    pytest.fail(f"pgbouncer did not start: {log[-2000:]}")
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def bouncer_dsn(db_dsn: str, pgbouncer_port: int) -> str:
    params = conninfo_to_dict(db_dsn)
    return make_conninfo(
        "", host="127.0.0.1", port=pgbouncer_port, user=params["user"], dbname=params["dbname"]
    )


def _answers(query: FrameQuery) -> tuple[Any, ...]:
    start, end = START, START + timedelta(minutes=5)
    return (
        query.latest("cam-01"),
        query.latest_all(),
        query.get("cam-02", START + timedelta(seconds=1), 10),
        list(query.frames("cam-03", start, end)),
        query.motion_events(start, end),
        query.search({"zone": "gate"}, start, end, limit=50),
        query.cameras(),
        query.stats(start, end, bucket=timedelta(minutes=1)),
        str(query.plan(start, end, bucket=timedelta(minutes=1))),
    )


def test_writer_and_queries_work_through_pgbouncer_in_transaction_mode(
    db_dsn: str, bouncer_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = list(frames(4000))
    with MetadataWriter(bouncer_dsn) as writer:
        writer.write_many(records[:2000])
        writer.flush()
        writer.write_many(records[:2000])  # a replay: the idempotent path, staging table and all
        writer.write_many(records[2000:])
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM frame_metadata").fetchone() == (4000,)
    monkeypatch.setattr(framemeta.query, "_FIRST_PAGE_ROWS", 50)  # many pages,
    monkeypatch.setattr(framemeta.query, "_STREAM_ROWS", 100)  # streamed in chunks
    monkeypatch.setattr(framemeta.query, "_CHUNK_ROWS", 16)

    with FrameQuery(db_dsn) as direct:
        expected = _answers(direct)
    with FrameQuery(bouncer_dsn, prepare_threshold=None, max_size=3) as bounced:
        answers = [_answers(bounced) for _ in range(8)]  # past any prepare threshold

    assert all(answer == expected for answer in answers)
    assert expected[3]  # frames were streamed, over several pages


def test_reals_come_back_in_full_whatever_another_client_set(db_dsn: str, bouncer_dsn: str) -> None:
    """Reals are sent as their shortest text, which extra_float_digits 0
    rounds to 6 digits. Set by the database's default, and by another
    client whose SET lands on a server connection pgbouncer shares (1.18
    does not track it), it changes no answer: each statement sets it for
    its own transaction."""
    start = START
    written = [
        FrameRecord(
            "cam-x",
            start + timedelta(seconds=i),
            i,
            motion_score=0.1234567,
            brightness=0.7654321,
            detections=(Detection("dog", 0.9876543),),
        )
        for i in range(120)
    ]
    with MetadataWriter(db_dsn) as writer:
        writer.write_many(written)
    refresh_rollups(db_dsn)
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {conn.info.dbname} SET extra_float_digits = 0")
    end = start + timedelta(minutes=2)

    with (
        FrameQuery(bouncer_dsn, prepare_threshold=None, max_size=1) as query,
        psycopg.connect(bouncer_dsn, autocommit=True) as other,
        psycopg.connect(bouncer_dsn, autocommit=True) as holder,
    ):
        other.execute("SET extra_float_digits = 0")  # another application's session
        query.cameras()  # the pool's connection is made (and was configured)
        # The server connection it last ran on, idle now, is taken by a
        # transaction of another client: the next statements run on
        # another server connection, which has the database's default.
        holder.execute("BEGIN")
        holder.execute("SELECT 1")
        stats = query.stats(start, end, bucket=timedelta(minutes=1), resolution="raw")
        records = list(query.frames("cam-x", start, end))
        found = query.search(None, start, end, label="dog", min_confidence=0.98, limit=1000)
        holder.execute("COMMIT")

    assert {(row.motion_min, row.motion_max, row.brightness_max) for row in stats} == {
        (0.1234567, 0.1234567, 0.7654321)
    }
    assert records == written
    assert found == written
