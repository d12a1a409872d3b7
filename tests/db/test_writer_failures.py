"""Exactly once through server restarts, killed backends and ambiguous
COMMITs; bounded memory and overflow policies through outages; close and
exit never hang; fork."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from framemeta import MetadataWriter, QueueFullError
from framemeta.embedded import EmbeddedServer
from tests.frames import frames, keys, stored_keys
from tests.proxy import CommitCuttingProxy


def _stream(writer: MetadataWriter, count: int, stop: threading.Event) -> list[Any]:
    written = []
    for record in frames(count):
        if stop.is_set():
            break
        writer.write(record)
        written.append(record)
        if len(written) % 500 == 0:
            time.sleep(0.01)
    return written


class _Producer(threading.Thread):
    def __init__(self, writer: MetadataWriter, count: int) -> None:
        super().__init__(daemon=True)
        self.writer = writer
        self.count = count
        self.stop = threading.Event()
        self.written: list[Any] = []

    def run(self) -> None:
        self.written = _stream(self.writer, self.count, self.stop)


def _write_each(writer: MetadataWriter, count: int) -> None:
    for record in frames(count):
        writer.write(record)


def _fast_retries() -> dict[str, Any]:
    return {"retry_initial": 0.05, "retry_max": 0.5, "batch_records": 500, "flush_interval": 0.05}


def _assert_exactly_once(dsn: str, written: list[Any]) -> None:
    stored = stored_keys(dsn)
    assert len(stored) == len(set(stored)), "duplicates stored"
    assert sorted(stored) == sorted(keys(written)), "records lost or extra"


def test_immediate_restart_mid_stream_commits_each_record_once(
    server: EmbeddedServer, db_dsn: str
) -> None:
    with MetadataWriter(db_dsn, **_fast_retries()) as writer:
        producer = _Producer(writer, 30_000)
        producer.start()
        time.sleep(0.5)
        server.restart("immediate")
        time.sleep(0.3)
        server.restart("immediate")
        producer.join()
        writer.flush(timeout=120)
        stats = writer.stats()

    assert stats.retried >= 1
    _assert_exactly_once(db_dsn, producer.written)


def test_terminated_backend_mid_stream_commits_each_record_once(
    admin_dsn: str, db_dsn: str
) -> None:
    dbname = conninfo_to_dict(db_dsn)["dbname"]
    with MetadataWriter(db_dsn, **_fast_retries()) as writer:
        producer = _Producer(writer, 20_000)
        producer.start()
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            for _ in range(5):
                time.sleep(0.2)
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND application_name = 'framemeta-writer'",
                    (dbname,),
                )
        producer.join()
        writer.flush(timeout=120)
        stats = writer.stats()

    assert stats.retried >= 1
    _assert_exactly_once(db_dsn, producer.written)


def test_ambiguous_commit_is_not_duplicated(server: EmbeddedServer, db_dsn: str) -> None:
    proxy = CommitCuttingProxy(server.port, cuts=3)
    dsn = make_conninfo(
        server.tcp_dsn, port=str(proxy.port), dbname=conninfo_to_dict(db_dsn)["dbname"]
    )
    records = list(frames(3_000))
    try:
        with MetadataWriter(dsn, **_fast_retries()) as writer:
            for start in range(0, len(records), 500):
                writer.write_many(records[start : start + 500])
                writer.flush(timeout=60)
            stats = writer.stats()
    finally:
        proxy.close()

    assert proxy.cut == 3
    assert stats.retried >= 3
    assert stats.committed == len(records)
    _assert_exactly_once(db_dsn, records)


@pytest.fixture
def stopped_server(server: EmbeddedServer) -> Iterator[EmbeddedServer]:
    server.stop(keep_data=True)
    yield server
    if not server.is_running:
        server.start()


def test_close_with_the_server_down_returns_by_its_deadline(
    db_dsn: str, stopped_server: EmbeddedServer
) -> None:
    writer = MetadataWriter(db_dsn, close_timeout=2.0, **_fast_retries())
    writer.write_many(frames(1_000))

    started = time.monotonic()
    undelivered = writer.close()
    elapsed = time.monotonic() - started

    assert elapsed < 5.0
    assert undelivered == 1_000
    stats = writer.stats()
    assert stats.lost == 1_000
    assert stats.written == stats.committed + stats.lost


def test_raise_policy_raises_at_once_when_full(db_dsn: str, stopped_server: EmbeddedServer) -> None:
    writer = MetadataWriter(
        db_dsn, queue_records=1_000, batch_records=100, overflow="raise", close_timeout=1.0
    )
    with pytest.raises(QueueFullError, match="overflow='raise'"):
        _write_each(writer, 5_000)
    writer.close()


def test_block_policy_times_out_with_a_clear_error(
    db_dsn: str, stopped_server: EmbeddedServer
) -> None:
    writer = MetadataWriter(
        db_dsn,
        queue_records=1_000,
        batch_records=100,
        overflow="block",
        block_timeout=0.5,
        close_timeout=1.0,
    )
    started = time.monotonic()
    with pytest.raises(QueueFullError, match=r"stayed full for 0\.5 s"):
        _write_each(writer, 5_000)
    assert time.monotonic() - started < 10
    writer.close()


def test_drop_oldest_counts_every_drop_and_delivers_the_rest(
    server: EmbeddedServer, db_dsn: str
) -> None:
    server.stop(keep_data=True)
    try:
        writer = MetadataWriter(
            db_dsn,
            queue_records=2_000,
            batch_records=500,
            overflow="drop_oldest",
            retry_initial=0.05,
            retry_max=0.2,
        )
        records = list(frames(10_000))
        writer.write_many(records)
        stats = writer.stats()
        # Each connection's thread holds at most one batch out of the queue.
        assert stats.dropped >= 10_000 - 2_000 - 500 * writer.options.connections
        assert stats.queue_records <= 2_000
    finally:
        server.start()
    writer.flush(timeout=60)
    stats = writer.stats()
    writer.close()

    assert stats.written == stats.committed + stats.dropped
    stored = stored_keys(db_dsn)
    assert len(stored) == stats.committed
    # The newest records are the ones kept.
    assert records[-1].key in set(stored)


def test_exit_without_close_delivers_the_records(db_dsn: str) -> None:
    script = textwrap.dedent(
        f"""
        from framemeta import MetadataWriter
        from tests.frames import frames
        writer = MetadataWriter({db_dsn!r}, flush_interval=60)
        writer.write_many(frames(777))
        # no close(): the exit handler must deliver them
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 0, result.stderr
    assert len(stored_keys(db_dsn)) == 777


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_a_fresh_writer(db_dsn: str) -> None:
    writer = MetadataWriter(db_dsn, flush_interval=60)
    writer.write_many(frames(100, cameras=1))

    pid = os.fork()
    if pid == 0:  # the child: its inherited writer is empty and its own
        code = 1
        try:
            assert writer.stats().written == 0
            writer.write_many(frames(50, cameras=1, first_number=1_000))
            writer.flush(timeout=30)
            child = MetadataWriter(db_dsn)
            child.write_many(frames(25, cameras=1, first_number=2_000))
            child.close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0

    # The parent's connection and thread were untouched by the child.
    writer.write_many(frames(10, cameras=1, first_number=3_000))
    writer.close()
    assert len(stored_keys(db_dsn)) == 100 + 50 + 25 + 10
