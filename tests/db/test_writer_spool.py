"""The disk spool: nothing is lost through an outage, a close at the
deadline, or a SIGKILL of the processor; spooled batches arrive in order."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from framemeta import FlushTimeoutError, MetadataWriter, SpoolError
from framemeta.embedded import EmbeddedServer
from tests.frames import START, frames, keys, stored_keys


def _options(spool: Path) -> dict[str, Any]:
    return {
        "spool_dir": spool,
        "batch_records": 1_000,
        "flush_interval": 0.05,
        "retry_initial": 0.05,
        "retry_max": 0.5,
    }


def test_outage_goes_to_the_spool_and_is_delivered_after(
    server: EmbeddedServer, db_dsn: str, tmp_path: Path
) -> None:
    records = list(frames(12_000))
    with MetadataWriter(db_dsn, **_options(tmp_path / "spool")) as writer:
        writer.write_many(records[:2_000])
        writer.flush(timeout=30)
        server.stop(keep_data=True)
        try:
            writer.write_many(records[2_000:])
            with pytest.raises(FlushTimeoutError):
                writer.flush(timeout=2)
            during = writer.stats()
        finally:
            server.start()
        writer.flush(timeout=60)
        after = writer.stats()

    assert during.spooled > 0
    assert after.spooled == 0
    assert after.committed == len(records)
    stored = stored_keys(db_dsn)
    assert sorted(stored) == sorted(keys(records))


def test_close_at_the_deadline_spools_instead_of_losing(
    server: EmbeddedServer, db_dsn: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    records = list(frames(5_000))
    server.stop(keep_data=True)
    try:
        writer = MetadataWriter(db_dsn, close_timeout=2.0, **_options(spool))
        writer.write_many(records)
        started = time.monotonic()
        undelivered = writer.close()
        elapsed = time.monotonic() - started
        stats = writer.stats()
    finally:
        server.start()

    assert elapsed < 5.0
    assert undelivered == len(records)
    assert stats.lost == 0
    assert stats.spooled == len(records)

    with MetadataWriter(db_dsn, **_options(spool)) as successor:
        successor.flush(timeout=60)
        time.sleep(0.5)
        recovered = successor.stats().recovered
    assert recovered == len(records)
    assert sorted(stored_keys(db_dsn)) == sorted(keys(records))


def test_spool_survives_a_killed_processor(
    server: EmbeddedServer, db_dsn: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    count = 6_000
    script = textwrap.dedent(
        f"""
        import time
        from datetime import datetime
        from pathlib import Path
        from framemeta import MetadataWriter
        from tests.frames import frames
        writer = MetadataWriter({db_dsn!r}, spool_dir=Path({str(spool)!r}),
                                batch_records=1000, flush_interval=0.05,
                                retry_initial=0.05, retry_max=0.5)
        # This process's START, not the child's: an hour may turn between them.
        writer.write_many(frames({count}, start=datetime.fromisoformat({START.isoformat()!r})))
        while writer.stats().spooled < {count}:
            time.sleep(0.05)
        print("spooled", flush=True)
        time.sleep(600)
        """
    )
    server.stop(keep_data=True)
    try:
        processor = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
        )
        assert processor.stdout is not None
        line = processor.stdout.readline()
        assert line.strip() == "spooled", "the processor did not spool its records"
        processor.send_signal(signal.SIGKILL)
        processor.wait()
    finally:
        server.start()

    with MetadataWriter(db_dsn, **_options(spool)) as successor:
        deadline = time.monotonic() + 60
        while successor.stats().recovered < count and time.monotonic() < deadline:
            time.sleep(0.1)
        recovered = successor.stats().recovered

    assert recovered == count
    assert sorted(stored_keys(db_dsn)) == sorted(keys(list(frames(count))))


def test_two_writers_on_one_spool_are_refused_at_construction(db_dsn: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    with (
        MetadataWriter(db_dsn, spool_dir=spool),
        pytest.raises(SpoolError, match="in use by another writer"),
    ):
        MetadataWriter(db_dsn, spool_dir=spool)
    with MetadataWriter(db_dsn, spool_dir=spool) as successor:
        assert successor.stats().spooled == 0
