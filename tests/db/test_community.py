"""Community edition only: the policies run, retention policies follow the
stored horizons, old raw chunks compress at least tenfold, late frames
still land in compressed chunks exactly once, and reads reach frames in
compressed chunks. Skipped, with the reason, on
the Apache edition (the embedded default); point FRAMEMETA_TEST_DSN at a
community-edition server to run them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from benchmarks.frames import synthetic_frames
from framemeta import FrameQuery, FrameRecord, MetadataWriter, _status, migrate
from framemeta.maintenance import _watermarks, erase_frames, maintain, set_retention
from framemeta.query import _WIDTHS, PlanPart, _get_statement, _search
from tests.frames import frames, refresh_rollups
from tests.rollup_checks import assert_cameras_follow_daily, assert_rollups_consistent

# A whole raw chunk, ended more than compress_after (1 day) ago.
DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)


@pytest.fixture
def conn(db_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_dsn, autocommit=True) as connection:
        edition = connection.execute("SELECT framemeta_edition()").fetchone()
        if edition != ("timescale",):
            pytest.skip(
                "community edition only (continuous aggregates, policies, compression); "
                "this server is the Apache edition"
            )
        yield connection


def _framemeta_jobs(conn: psycopg.Connection[Any]) -> dict[int, str]:
    return dict(
        conn.execute(
            "SELECT job_id, proc_name FROM timescaledb_information.jobs"
            " WHERE hypertable_name IS NOT NULL"
            "    OR proc_name IN ('framemeta_recount_cameras_job', 'framemeta_refresh_late_job')"
        ).fetchall()
    )


def _write(dsn: str, rows: int, end: datetime) -> None:
    records = synthetic_frames(rows, end=end)
    with MetadataWriter(dsn, max_age=None) as writer:
        writer.write_many(records)


def test_policies_run_as_the_owner_role_and_succeed(
    conn: psycopg.Connection[Any], fresh_database: str
) -> None:
    # A database migrated here, not cloned: creating the extension is what
    # starts the server's job scheduler for it.
    migrate(fresh_database)
    conn = psycopg.connect(fresh_database, autocommit=True)
    jobs = _framemeta_jobs(conn)
    assert sorted(jobs.values()) == sorted(
        ["policy_refresh_continuous_aggregate"] * 3
        + ["policy_compression"]
        + ["policy_retention"] * 3
        + ["framemeta_recount_cameras_job", "framemeta_refresh_late_job"]
    )
    deadline = time.monotonic() + 60
    statuses: dict[int, tuple[str | None, int | None]] = {}
    while time.monotonic() < deadline:
        statuses = {
            job_id: (status, runs)
            for job_id, status, runs in conn.execute(
                "SELECT job_id, last_run_status, total_runs FROM timescaledb_information.job_stats"
                " WHERE job_id = ANY(%s)",
                (list(jobs),),
            )
        }
        # A job counts its run when it starts, and has its status when it
        # ends: wait for both.
        if len(statuses) == len(jobs) and all(s and runs for s, runs in statuses.values()):
            break
        time.sleep(0.5)
    conn.close()
    assert statuses == dict.fromkeys(jobs, ("Success", 1))


def test_retention_policies_follow_the_stored_horizons(conn: psycopg.Connection[Any]) -> None:
    set_retention(conn, raw="14d", **{"1d": "5000d"})

    policies = dict(
        conn.execute(
            "SELECT hypertable_name, (config ->> 'drop_after')::interval"
            "  FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention'"
        ).fetchall()
    )
    assert policies == {
        "frame_metadata": timedelta(days=14),
        "frame_stats_1m": timedelta(days=30),
        "frame_stats_1h": timedelta(days=365),
        "frame_stats_1d": timedelta(days=5000),
    }


def test_old_raw_chunks_compress_at_least_tenfold(conn: psycopg.Connection[Any]) -> None:
    # Six hours of 12 cameras at 1 frame/s inside one day's chunk.
    _write(conn.info.dsn, 12 * 6 * 3600, end=DAY + timedelta(hours=12))
    conn.execute("ANALYZE frame_metadata")

    report = maintain(conn)

    assert len(report.compressed) == 1
    row = conn.execute(
        "SELECT before_compression_total_bytes, after_compression_total_bytes"
        "  FROM hypertable_compression_stats('frame_metadata')"
    ).fetchone()
    assert row is not None
    before, after = row
    assert before / after >= 10, f"compressed {before / after:.1f}x"
    assert maintain(conn).compressed == []  # idempotent


def test_late_frames_land_in_a_compressed_chunk_exactly_once(
    conn: psycopg.Connection[Any],
) -> None:
    dsn = conn.info.dsn
    _write(dsn, 12 * 600, end=DAY + timedelta(hours=12))
    maintain(conn)
    late = synthetic_frames(12 * 60, end=DAY + timedelta(hours=11, minutes=30))

    # The fast path (COPY) first, then a replay of the same frames, which
    # the writer resolves with its idempotent path.
    with MetadataWriter(dsn, max_age=None) as writer:
        writer.write_many(late)
    with MetadataWriter(dsn, max_age=None) as writer:
        writer.write_many(late)
        writer.flush()
        assert writer.stats().committed == len(late)

    count = conn.execute(
        "SELECT count(*), count(DISTINCT (camera_id, captured_at, frame_number))"
        "  FROM frame_metadata"
    ).fetchone()
    assert count == (12 * 660, 12 * 660)
    assert maintain(conn).compressed  # the chunk is compressed again
    refresh_rollups(dsn)
    assert_rollups_consistent(conn)


def test_erase_reaches_into_compressed_chunks(conn: psycopg.Connection[Any]) -> None:
    _write(conn.info.dsn, 12 * 600, end=DAY + timedelta(hours=12))
    maintain(conn)
    start = DAY + timedelta(hours=11, minutes=52)

    erasure = erase_frames(conn, "cam-03", start, start + timedelta(minutes=5))

    assert erasure.frames == 300
    assert_rollups_consistent(conn)


def test_cameras_read_the_counted_rows_before_the_cut_and_the_aggregate_after(
    conn: psycopg.Connection[Any],
) -> None:
    dsn = conn.info.dsn
    _write(dsn, 12 * 600, end=DAY + timedelta(hours=12))
    maintain(conn)  # materialises the day, then counts it into frame_cameras
    cut = conn.execute(
        "SELECT value::timestamptz FROM framemeta_config WHERE key = 'cameras_counted_before'"
    ).fetchone()
    assert cut is not None
    assert cut[0] >= DAY + timedelta(days=1)
    assert conn.execute("SELECT sum(frames) FROM frame_cameras").fetchone() == (12 * 600,)
    # After the cut, read from the aggregate as it is: at once.
    _write(dsn, 12 * 60, end=datetime.now(UTC) - timedelta(minutes=5))
    with FrameQuery(dsn) as query:
        assert {camera.frames for camera in query.cameras()} == {660}
    # Before it, frames a day late come with the next recount.
    late = synthetic_frames(12 * 60, end=DAY + timedelta(hours=11, minutes=30), seed=7)
    with MetadataWriter(dsn, max_age=None) as writer:
        writer.write_many(late)
    with FrameQuery(dsn) as query:
        assert {camera.frames for camera in query.cameras()} == {660}  # not yet

    maintain(conn)

    with FrameQuery(dsn) as query:
        assert {camera.frames for camera in query.cameras()} == {720}
    assert_rollups_consistent(conn)


def _cut(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute(
        "SELECT value::timestamptz FROM framemeta_config WHERE key = 'cameras_counted_before'"
    ).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def test_recounts_cut_at_the_1_minute_watermark(conn: psycopg.Connection[Any]) -> None:
    """Migration 0013: the cut follows the 1-minute aggregate, not the
    hourly one, so `cameras()` reads minutes, not hours, of 1-minute rows."""
    dsn = conn.info.dsn
    _write(dsn, 12 * 600, end=datetime.now(UTC) - timedelta(minutes=5))

    maintain(conn)  # refreshes 1m to a minute ago, then recounts

    marks = _watermarks(conn)  # None: nothing materialised
    assert _cut(conn) == marks["frame_stats_1m"]
    assert _cut(conn) > datetime.now(UTC) - timedelta(minutes=6)
    # 0011 cut at the hourly level's watermark, which the frames of the
    # last hour do not reach.
    assert marks["frame_stats_1h"] is None or marks["frame_stats_1h"] < _cut(conn)
    assert conn.execute("SELECT sum(frames) FROM frame_cameras").fetchone() == (12 * 600,)
    with FrameQuery(dsn) as query:
        assert {camera.frames for camera in query.cameras()} == {600}
    assert_cameras_follow_daily(conn)
    status = _status.collect(conn)  # `framemeta status` shows how far the job counted
    assert status.cameras_counted_before == _cut(conn)
    assert f"to {_cut(conn):%Y-%m-%d %H:%M:%S} UTC" in _status.format_table(status)


def test_one_camera_recounts_whole_days_only_below_the_cut(
    conn: psycopg.Connection[Any],
) -> None:
    """A recount of one camera keeps the last full recount's cut, and the
    daily watermark may have passed it since: the day of the cut is then
    counted from its hours, not from its daily row, which also holds the
    frames after the cut that `cameras()` reads from the 1-minute level."""
    dsn = conn.info.dsn
    _write(dsn, 12 * 600, end=DAY + timedelta(hours=12))
    for relation in ("frame_stats_1m", "frame_stats_1h"):
        conn.execute(f"CALL refresh_continuous_aggregate('{relation}', NULL, NULL)")
    conn.execute("SELECT framemeta_recount_cameras()")
    assert _cut(conn) == DAY + timedelta(hours=12)  # the daily level never refreshed
    _write(dsn, 12 * 60, end=DAY + timedelta(hours=13))
    refresh_rollups(dsn)  # the daily watermark moves past the cut, to the next day

    conn.execute("SELECT framemeta_recount_cameras('cam-01')")

    assert _cut(conn) == DAY + timedelta(hours=12)
    with FrameQuery(dsn) as query:
        assert {camera.frames for camera in query.cameras()} == {660}
    assert_cameras_follow_daily(conn)


def test_erasure_of_recent_frames_leaves_unmaterialised_days_to_the_policies(
    conn: psycopg.Connection[Any],
) -> None:
    """An erasure (or a rebuild) refreshes each level only up to its
    watermark. Refreshing the daily level over today moved its watermark
    past yesterday, which its policy materialises only once the day is
    over: every read then took yesterday as empty (review of migration
    0013; the daily view, `stats` from it and `cameras()` lost a day)."""
    now = datetime.now(UTC)
    conn.execute(
        "INSERT INTO frame_metadata (camera_id, captured_at, frame_number)"
        " SELECT format('cam-%%s', c), %s - m * interval '1 minute', m"
        "   FROM generate_series(1, 3) AS c, generate_series(1, 50 * 60) AS m",
        (now,),
    )
    maintain(conn)  # every level refreshed as far as its policy would: 1d to yesterday
    marks = _watermarks(conn)
    daily_mark = marks["frame_stats_1d"]
    assert daily_mark is not None
    assert daily_mark <= now.replace(hour=0, minute=0, second=0, microsecond=0)

    erase_frames(conn, "cam-2", now - timedelta(minutes=30), now)

    raw = conn.execute(
        "SELECT camera_id, count(*) FROM frame_metadata GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert dict(raw)["cam-2"] == 50 * 60 - 30
    daily = conn.execute(
        "SELECT camera_id, sum(frames)::bigint FROM frame_stats_1d GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert daily == raw
    with FrameQuery(conn.info.dsn) as query:
        assert [(c.camera_id, c.frames) for c in query.cameras()] == raw
    assert _watermarks(conn)["frame_stats_1d"] == marks["frame_stats_1d"]


def test_daily_retention_and_a_recount_take_their_locks_in_one_order(
    conn: psycopg.Connection[Any],
) -> None:
    """With a horizon on the daily level, retention drops daily chunks and
    then recounts the cameras; the recount job locks ``frame_cameras`` and
    then reads the daily chunks. Retention now takes ``frame_cameras``
    first (migration 0014): before, the interleaving below was a deadlock
    that PostgreSQL broke by cancelling one of them."""
    dsn = conn.info.dsn
    conn.execute(
        "INSERT INTO frame_metadata (camera_id, captured_at, frame_number)"
        " SELECT format('cam-%%s', c), %s - d * interval '1 day', d"
        "   FROM generate_series(1, 3) AS c, generate_series(1, 40) AS d",
        (DAY,),
    )
    refresh_rollups(dsn)
    conn.execute("SELECT framemeta_recount_cameras()")
    set_retention(conn, **{"1m": "10d", "1h": "15d", "1d": "20d"})
    with psycopg.connect(dsn) as recount, psycopg.connect(dsn) as retention:
        recount.execute("SET lock_timeout = '20s'")  # a wait, never an endless one
        recount.execute("LOCK TABLE frame_cameras IN EXCLUSIVE MODE")  # the job's first step
        errors: list[Exception] = []

        def apply() -> None:
            try:
                retention.execute("SELECT framemeta_apply_retention()")
            except psycopg.Error as exc:  # asserted below, in the test's thread
                errors.append(exc)

        dropping = threading.Thread(target=apply)
        dropping.start()
        deadline = time.monotonic() + 10  # until retention waits on a lock
        waiting = (
            "SELECT EXISTS (SELECT FROM pg_stat_activity"
            "                WHERE wait_event_type = 'Lock' AND pid = %s)"
        )
        while time.monotonic() < deadline and conn.execute(
            waiting, (retention.info.backend_pid,)
        ).fetchone() != (True,):
            time.sleep(0.05)
        # The job's second step: every daily chunk, as its recount reads them.
        recount.execute("SELECT count(*) FROM frame_stats_1d").fetchone()
        recount.execute("SELECT framemeta_recount_cameras()")
        recount.commit()
        dropping.join(timeout=30)
        retention.commit()
    assert not dropping.is_alive()
    assert errors == []
    assert_cameras_follow_daily(conn)
    with FrameQuery(dsn) as query:
        assert all(camera.frames < 40 for camera in query.cameras())  # days dropped


def test_maintain_catches_frames_backfilled_past_the_policy_windows(
    conn: psycopg.Connection[Any],
) -> None:
    dsn = conn.info.dsn
    _write(dsn, 12 * 60, end=datetime.now(UTC) - timedelta(minutes=5))
    maintain(conn)  # materialised up to now
    # Three days late: outside every refresh policy's window.
    _write(dsn, 12 * 60, end=DAY + timedelta(hours=12))
    before = conn.execute("SELECT coalesce(sum(frames), 0) FROM frame_stats_1m").fetchone()

    report = maintain(conn)

    after = conn.execute("SELECT coalesce(sum(frames), 0) FROM frame_stats_1m").fetchone()
    assert before == (12 * 60,)  # the backfill was invisible until now
    assert after == (2 * 12 * 60,)
    assert report.refreshed == ["1m", "1h", "1d"]
    assert_rollups_consistent(conn)


def _decompressed_rows(plan: Any) -> int:
    """Rows the compressed-chunk scans of an EXPLAIN (ANALYZE, FORMAT JSON)
    plan decompressed: those they returned plus those their filter removed."""
    total = sum(_decompressed_rows(child) for child in plan.get("Plans", []))
    # The node's name: ColumnarScan in TimescaleDB 2.2x, DecompressChunk before.
    if plan.get("Custom Plan Provider") in ("ColumnarScan", "DecompressChunk"):
        total += plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)
    return total


def test_reads_reach_frames_in_compressed_chunks_by_their_batch(
    conn: psycopg.Connection[Any],
) -> None:
    """Every read finds frames of a compressed chunk as they were written,
    and `get`'s plan decompresses only the batch (1,000 rows) that holds
    the key: with join parameters it decompressed every batch of the camera
    in every compressed chunk (57 ms on the benchmark's week). Its values
    come from init plans, so the plan is the same whether made for them or
    generic."""
    dsn = conn.info.dsn
    # 20 minutes of 4 cameras at 10 frames/s: 12 batches of 1,000 frames a camera.
    written = list(frames(4 * 12_000, start=DAY + timedelta(hours=11)))
    with MetadataWriter(dsn, max_age=None) as writer:
        writer.write_many(written)
    assert maintain(conn).compressed
    camera_frames = [record for record in written if record.camera_id == "cam-02"]
    start, end = camera_frames[0].captured_at, camera_frames[-1].captured_at + timedelta(seconds=1)

    with FrameQuery(dsn, max_size=1) as query:
        assert query._current_columnstore()
        for record in camera_frames[::997]:
            assert query.get(*record.key) == record
        assert (
            query.get("cam-02", camera_frames[0].captured_at, camera_frames[0].frame_number + 1)
            is None
        )
        assert list(query.frames("cam-02", start, end)) == camera_frames
        assert query.latest("cam-02") == camera_frames[-1]
        assert query.motion_events(start, end, camera_id="cam-02") == [
            record for record in camera_frames if (record.motion_score or 0) >= 0.5
        ]
        tagged = [record for record in camera_frames if record.metadata]
        assert query.search({"zone": "gate"}, start, end, camera_id="cam-02") == tagged[:100]
        # Every camera by label: the cameras' frames share their times, so
        # the tenth match ties with two more, and framemeta's order picks.
        first, last = written[0].captured_at, written[-1].captured_at + timedelta(seconds=1)
        people = [record for record in written if record.detections]
        assert query.search(None, first, last, label="person", limit=10) == people[:10]
        assert query.search(None, first, last, label="person", limit=1000) == people[:1000]

        statement = _get_statement(*camera_frames[5678].key, columnstore=True)
        with conn.cursor() as cursor:
            explain = sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) {}").format(statement.query)
            [(plan,)] = cursor.execute(explain, statement.params).fetchall()
        assert 1 <= _decompressed_rows(plan[0]["Plan"]) <= 1000

        # The search merges the cameras' first batches, by time: it
        # decompresses a batch of each camera, not the 48,000 frames.
        search = _search(None, "person", None, first, last, None, 100).first()
        with conn.cursor() as cursor:
            explain = sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) {}").format(search.query)
            [(plan,)] = cursor.execute(explain, search.params).fetchall()
        assert 1 <= _decompressed_rows(plan[0]["Plan"]) <= 4 * 1000


def test_the_late_frames_job_brings_frames_hours_late_into_every_answer(
    conn: psycopg.Connection[Any], db_dsn: str
) -> None:
    """Frames 8 hours late lie before every refresh policy's window but
    the daily one's. After a run of the late-frames job (migration 0015,
    every ten minutes) they are in `stats` from every level, in
    `latest_all()`, in a search across cameras and in `cameras()`; a run
    of every refresh policy alone left them out."""
    now = datetime.now(UTC).replace(microsecond=0)
    with MetadataWriter(db_dsn, max_age=None) as writer:
        writer.write_many(
            FrameRecord(camera, now - timedelta(hours=10) + timedelta(seconds=30 * i), i)
            for i in range(1150)
            for camera in ("cam-a", "cam-b")
        )
    maintain(conn)  # every level materialised past the frames below
    late_at = now - timedelta(hours=8)
    with MetadataWriter(db_dsn, max_age=None) as writer:
        writer.write(FrameRecord("late-cam", late_at, 7, metadata={"zone": "gate"}))
    jobs = dict(
        conn.execute(
            "SELECT proc_name, job_id FROM timescaledb_information.jobs"
            " WHERE proc_name IN ('policy_refresh_continuous_aggregate',"
            "                     'framemeta_refresh_late_job')"
            " ORDER BY job_id"
        ).fetchall()
    )
    for (job_id,) in conn.execute(
        "SELECT job_id FROM timescaledb_information.jobs"
        " WHERE proc_name = 'policy_refresh_continuous_aggregate' ORDER BY job_id"
    ).fetchall():
        conn.execute("CALL run_job(%s)", (job_id,))
    start, end = late_at - timedelta(hours=1), late_at + timedelta(hours=1)

    def answers(query: FrameQuery) -> tuple[Any, ...]:
        return (
            {
                source: sum(
                    row.frames
                    for row in query.stats(start, end, bucket=timedelta(hours=1), resolution=source)
                    if row.camera_id == "late-cam"
                )
                for source in ("raw", "1m", "1h", "auto")
            },
            "late-cam" in [record.camera_id for record in query.latest_all()],
            [record.camera_id for record in query.search(None, start, end, limit=10_000)].count(
                "late-cam"
            ),
            "late-cam" in [info.camera_id for info in query.cameras()],
            {
                source: query.plan(start, end, bucket=timedelta(hours=1), resolution=source).pending
                for source in ("raw", "1m", "1h")
            },
        )

    with FrameQuery(db_dsn) as query:
        before = answers(query)
    conn.execute("CALL run_job(%s)", (jobs["framemeta_refresh_late_job"],))
    with FrameQuery(db_dsn) as query:
        after = answers(query)

    # The plans said which buckets missed the frame, until the job ran.
    hour = late_at.replace(minute=0, second=0)
    missed = {
        "raw": (),
        "1m": (PlanPart("1m", hour, hour + timedelta(hours=1)),),
        "1h": (PlanPart("1h", hour, hour + timedelta(hours=1)),),
    }
    assert before == ({"raw": 1, "1m": 0, "1h": 0, "auto": 0}, False, 0, False, missed)
    nothing: dict[str, tuple[PlanPart, ...]] = {"raw": (), "1m": (), "1h": ()}
    assert after == ({"raw": 1, "1m": 1, "1h": 1, "auto": 1}, True, 1, True, nothing)


def test_plans_list_every_bucket_a_rollup_misses_after_a_replayed_outage(
    conn: psycopg.Connection[Any], db_dsn: str
) -> None:
    """A camera's frames up to an outage, every rollup refreshed, then its
    spool replayed to now: the 1-minute level computes the replayed frames
    in real time (past its watermark), while the hourly and daily levels,
    materialised to the end of the outage's hour and day, miss them there.
    Every bucket whose count differs from raw frames' is in the plan's
    `pending`; after a run of the late-frames job nothing differs and
    nothing is pending."""
    now = datetime.now(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    first, outage = day - timedelta(hours=6), day + timedelta(hours=12, minutes=30)

    def write(start: datetime, end: datetime) -> None:
        count = int((end - start) / timedelta(minutes=1))
        with MetadataWriter(db_dsn, max_age=None) as writer:
            writer.write_many(
                FrameRecord("cam-a", start + timedelta(minutes=i), i) for i in range(count)
            )

    write(first, outage)
    maintain(conn)
    write(outage, now - timedelta(minutes=5))
    start, end = first, now

    def missed(query: FrameQuery) -> tuple[int, list[Any]]:
        """How many buckets differ from raw, and those not listed as pending."""
        differing, unlisted = 0, []
        for bucket in (timedelta(hours=1), timedelta(days=1)):
            raw = {
                row.bucket: row.frames
                for row in query.stats(start, end, bucket=bucket, resolution="raw")
            }
            for resolution in ("1m", "1h", "1d", "auto"):
                # A level answers buckets its own divide; auto any whole minutes.
                if bucket % (_WIDTHS.get(resolution) or timedelta(minutes=1)) != timedelta(0):
                    continue
                plan = query.plan(start, end, bucket=bucket, resolution=resolution)
                for row in query.stats(start, end, bucket=bucket, resolution=resolution):
                    if row.frames == raw.get(row.bucket):
                        continue
                    differing += 1
                    if not any(p.start <= row.bucket < p.end for p in plan.pending):
                        unlisted.append((resolution, bucket, row.bucket, row.frames))
        return differing, unlisted

    with FrameQuery(db_dsn) as query:
        differing, unlisted = missed(query)
    assert differing > 0  # the rollups do miss the replayed frames
    assert unlisted == []
    [(job,)] = conn.execute(
        "SELECT job_id FROM timescaledb_information.jobs"
        " WHERE proc_name = 'framemeta_refresh_late_job'"
    ).fetchall()
    conn.execute("CALL run_job(%s)", (job,))
    with FrameQuery(db_dsn) as query:
        assert missed(query) == (0, [])
        assert query.plan(start, end, resolution="1h").pending == ()
