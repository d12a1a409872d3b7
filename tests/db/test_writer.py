"""MetadataWriter against a real server: delivery, flush, stats, bad rows,
time checks, options, roles, threads."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from framemeta import (
    ConfigurationError,
    DatabaseError,
    FrameRecord,
    MetadataWriter,
    ValidationError,
)
from framemeta._copy import COLUMNS
from tests.frames import frames, keys, stored_keys


def _assert_stats_add_up(writer: MetadataWriter) -> None:
    stats = writer.stats()
    assert stats.written == (
        stats.committed + stats.rejected + stats.dropped + stats.lost + stats.pending
    ), stats


def test_flush_commits_everything_written_before_it(db_dsn: str) -> None:
    records = list(frames(25_000))
    with MetadataWriter(db_dsn) as writer:
        writer.write_many(records)
        writer.flush(timeout=60)

        assert sorted(stored_keys(db_dsn)) == sorted(keys(records))
        stats = writer.stats()
        assert stats.committed == len(records)
        assert stats.pending == 0
        _assert_stats_add_up(writer)


def test_stored_values_match_the_records(db_dsn: str) -> None:
    records = list(frames(50))
    with MetadataWriter(db_dsn) as writer:
        writer.write_many(records)

    with psycopg.connect(db_dsn) as conn:
        rows = {
            (row[7], row[0], row[1]): row
            for row in conn.execute(f"SELECT {', '.join(COLUMNS)} FROM frame_metadata")
        }
    for record in records:
        row = rows[record.key]
        assert row[2:4] == (record.width, record.height)
        assert row[4] == pytest.approx(record.motion_score)
        assert row[6] == len(record.detections)
        if record.detections:
            assert row[8] == [d.label for d in record.detections]
            assert row[9] == [pytest.approx(d.confidence) for d in record.detections]
            box = record.detections[0].box
            assert box is not None
            assert row[10] == [[box.x, box.y, box.width, box.height]]
        else:
            assert row[8] is None
        assert row[11] == (record.metadata or None)


def test_close_flushes_and_is_idempotent(db_dsn: str) -> None:
    writer = MetadataWriter(db_dsn, flush_interval=30.0)
    writer.write_many(frames(10))

    assert writer.close() == 0
    assert writer.close() == 0
    assert len(stored_keys(db_dsn)) == 10


def test_write_after_close_is_refused(db_dsn: str) -> None:
    writer = MetadataWriter(db_dsn)
    writer.close()

    with pytest.raises(Exception, match="closed"):
        writer.write(next(frames(1)))


def test_many_producer_threads(db_dsn: str) -> None:
    per_thread = 5_000
    barrier = threading.Barrier(8)

    with MetadataWriter(db_dsn, batch_records=2_000) as writer:

        def produce(camera_offset: int) -> None:
            barrier.wait()
            for record in frames(per_thread, cameras=1, first_number=camera_offset * per_thread):
                writer.write(record)

        threads = [threading.Thread(target=produce, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        writer.flush(timeout=60)
        _assert_stats_add_up(writer)
        assert writer.stats().committed == 8 * per_thread

    assert len(stored_keys(db_dsn)) == 8 * per_thread


def test_a_record_written_twice_is_stored_once(db_dsn: str) -> None:
    record = next(frames(1))
    with MetadataWriter(db_dsn) as writer:
        writer.write(record)
        writer.flush(timeout=30)
        writer.write(record)
        writer.write_many(frames(5, first_number=100))
        writer.flush(timeout=30)

    assert sorted(stored_keys(db_dsn)) == sorted(
        [record.key, *keys(list(frames(5, first_number=100)))]
    )


def test_rejected_rows_go_to_the_dead_letter_file_and_the_rest_commit(
    db_dsn: str, tmp_path: Path
) -> None:
    with psycopg.connect(db_dsn) as conn:
        conn.execute(
            "ALTER TABLE frame_metadata ADD CONSTRAINT no_bad_camera CHECK (camera_id <> 'cam-03')"
        )
    records = list(frames(4_000))
    dead_letters = tmp_path / "dead.jsonl"

    with MetadataWriter(db_dsn, dead_letter_path=dead_letters) as writer:
        writer.write_many(records)
        writer.flush(timeout=60)
        stats = writer.stats()

    good = [r for r in records if r.camera_id != "cam-03"]
    assert sorted(stored_keys(db_dsn)) == sorted(keys(good))
    assert stats.rejected == len(records) - len(good)
    lines = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    assert len(lines) == stats.rejected
    assert {line["sqlstate"] for line in lines} == {"23514"}
    assert all(line["row"]["camera_id"] == "cam-03" for line in lines)
    assert "no_bad_camera" in lines[0]["error"]


def test_frames_from_the_future_or_past_retention_are_refused(db_dsn: str) -> None:
    now = datetime.now(UTC)
    with MetadataWriter(db_dsn, max_clock_skew=60, max_age=3_600) as writer:
        with pytest.raises(ValidationError, match="max_clock_skew") as future:
            writer.write(FrameRecord("cam-1", now + timedelta(minutes=5), 1))
        with pytest.raises(ValidationError, match="max_age") as past:
            writer.write(FrameRecord("cam-1", now - timedelta(hours=2), 2))
        writer.write(FrameRecord("cam-1", now - timedelta(minutes=30), 3))

    assert future.value.field == past.value.field == "captured_at"
    assert len(stored_keys(db_dsn)) == 1


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"queue_records": 0}, "queue_records"),
        ({"batch_records": -1}, "batch_records"),
        ({"flush_interval": float("nan")}, "flush_interval"),
        ({"overflow": "drop_newest"}, "overflow"),
        ({"close_timeout": 0}, "close_timeout"),
        ({"queue_records": 10, "batch_records": 100}, "batch_records"),
        ({"application_name": "x" * 100}, "application_name"),
        ({"flush_intervall": 1.0}, "flush_intervall"),
        ({"connections": 0}, "connections"),
        ({"connections": 9}, "connections"),
    ],
)
def test_bad_options_fail_at_construction(
    db_dsn: str, options: dict[str, object], name: str
) -> None:
    with pytest.raises(ConfigurationError, match=name):
        MetadataWriter(db_dsn, **options)


def test_writer_role_is_enough(db_dsn: str) -> None:
    dsn = make_conninfo(db_dsn, options="-c role=framemeta_writer")
    record = next(frames(1))
    with MetadataWriter(dsn) as writer:
        writer.write_many(frames(100))
        writer.flush(timeout=30)
        writer.write(record)  # a duplicate: the idempotent path, as the writer role
        writer.flush(timeout=30)

    assert len(stored_keys(db_dsn)) == 100


def test_fatal_error_is_raised_to_the_caller(db_dsn: str) -> None:
    dsn = make_conninfo(db_dsn, options="-c role=framemeta_reader")
    writer = MetadataWriter(dsn)
    writer.write_many(frames(10))

    with pytest.raises(DatabaseError, match="permission denied") as info:
        writer.flush(timeout=30)
    assert info.value.sqlstate == "42501"
    with pytest.raises(DatabaseError):
        writer.write(next(frames(1)))
    with pytest.raises(DatabaseError):
        writer.close()


def test_repr_and_stats_never_show_the_password(db_dsn: str) -> None:
    dsn = make_conninfo(db_dsn, password="hunter2-secret")
    with MetadataWriter(dsn) as writer:
        shown = repr(writer) + repr(writer.stats())
    assert "hunter2" not in shown


def test_full_batches_go_out_on_every_connection(db_dsn: str) -> None:
    records = list(frames(60_000))
    before = set(threading.enumerate())
    with MetadataWriter(
        db_dsn, connections=2, batch_records=1_000, application_name="fm-two"
    ) as writer:
        mine = sorted(thread.name for thread in set(threading.enumerate()) - before)
        writer.write_many(records)
        seen = 0
        with psycopg.connect(db_dsn) as conn:
            while writer.stats().pending and seen < 2:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fm-two'"
                ).fetchone()
                seen = max(seen, row[0] if row else 0)
        writer.flush(timeout=60)

    assert seen == 2
    assert len(mine) == 2
    assert mine[1] == mine[0] + ".2"
    assert sorted(stored_keys(db_dsn)) == sorted(keys(records))
