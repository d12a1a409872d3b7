"""The Query API benchmarks' dataset: 7 days of 12 cameras at 1 frame/s
(7,257,600 frames) ending at the last full hour before it was built, with
rollups filled, after a year of history kept as retention keeps it: the
hourly and daily rollups for the 358 days before the week, the 1-minute
rollup for the last 30 days, no raw frames (the history was written at one
frame per camera every 10 minutes, rolled up, then its raw and older
1-minute chunks dropped). Built once with SQL on the server and kept in a
database named for its version; later runs reuse it. On the community edition, the raw days
older than a day are compressed, as a production server keeps them, and the
database's policies are paused during measurements (`_as_kept`).

The server: ``FRAMEMETA_TEST_DSN``, else a persistent embedded server in
``FRAMEMETA_BENCH_DIR`` (default: ``framemeta-bench`` in the system's temp
directory), which survives between runs so the dataset does too.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from framemeta import migrate
from framemeta.embedded import EmbeddedServer

DATASET = "framemeta_bench_week_v2"
"""The database's name; change the suffix when the data below changes."""
CAMERAS = 12
DAYS = 7
HISTORY_DAYS = 358
"""Days of history before the week: with it, a year of the daily rollup."""

# One hour of all cameras: motion bursts in about 5 % of the minutes of each
# camera, detections in moving frames and one still frame in ten, four
# metadata keys on every frame. Deterministic per (camera, second).
_HOUR = """
INSERT INTO frame_metadata (camera_id, captured_at, frame_number, width, height,
                            motion_score, brightness, detection_count, detection_labels,
                            detection_scores, detection_boxes, metadata)
SELECT 'cam-' || lpad(c::text, 2, '0'),
       t.at,
       t.number,
       1920, 1080,
       m.motion,
       (0.3 + 0.4 * abs(0.5 - extract(epoch FROM t.at - date_trunc('day', t.at)) / 86400))::real,
       coalesce(cardinality(d.labels), 0),
       d.labels, d.scores, d.boxes,
       jsonb_build_object('codec', 'h264', 'keyframe', t.number %% 30 = 0,
                          'exposure_ms', 4 + (hashint4(t.number::int # c) & 255) / 21.0,
                          'zone', (ARRAY['north-gate', 'loading-bay', 'lobby',
                                         'car-park'])[c %% 4 + 1])
FROM generate_series(0, %(cameras)s - 1) AS c
CROSS JOIN generate_series(0, 3599) AS s
CROSS JOIN LATERAL (
    SELECT %(hour)s::timestamptz + make_interval(secs => s + c * 0.007) AS at,
           (extract(epoch FROM %(hour)s::timestamptz)::bigint - %(origin)s) + s AS number
) AS t
CROSS JOIN LATERAL (
    SELECT CASE WHEN (hashint8(c * 1000003 + t.number / 60) & 2147483647) %% 20 = 0
                THEN (0.5 + ((hashint8(t.number * 31 + c) & 2147483647) %% 1000) / 2000.0)::real
                ELSE (((hashint8(t.number * 17 + c) & 2147483647) %% 1000) / 5000.0)::real
           END AS motion
) AS m
CROSS JOIN LATERAL (
    SELECT array_agg((ARRAY['person', 'car', 'bicycle', 'dog', 'truck'])
                         [1 + (hashint8(t.number * 7 + k + c) & 2147483647) %% 5]) AS labels,
           array_agg((0.3 + ((hashint8(t.number * 13 + k) & 2147483647) %% 690) / 1000.0)::real)
               AS scores,
           array_agg(ARRAY[((hashint8(t.number + k) & 2147483647) %% 1700)::real,
                           ((hashint8(t.number - k) & 2147483647) %% 700)::real,
                           (20 + (hashint8(t.number * 3 + k) & 2147483647) %% 200)::real,
                           (20 + (hashint8(t.number * 5 + k) & 2147483647) %% 360)::real]) AS boxes
    FROM generate_series(1, 1 + (hashint8(t.number + c) & 2147483647) %% 3) AS k
    WHERE m.motion >= 0.5 OR (hashint8(t.number * 11 + c) & 2147483647) %% 10 = 0
) AS d
"""


# The history: one frame per camera every 10 minutes, some moving, some
# with a detection, the same metadata keys as the week's.
_HISTORY = """
INSERT INTO frame_metadata (camera_id, captured_at, frame_number, width, height,
                            motion_score, brightness, detection_count, detection_labels,
                            detection_scores, detection_boxes, metadata)
SELECT 'cam-' || lpad(c::text, 2, '0'),
       t.at,
       extract(epoch FROM t.at)::bigint,
       1920, 1080,
       CASE WHEN h %% 7 = 0 THEN 0.5 + (h %% 500) / 1000.0 ELSE (h %% 400) / 1000.0 END::real,
       (0.3 + (h %% 400) / 1000.0)::real,
       CASE WHEN h %% 5 = 0 THEN 1 ELSE 0 END,
       CASE WHEN h %% 5 = 0
            THEN ARRAY[(ARRAY['person', 'car', 'bicycle', 'dog', 'truck'])[1 + h %% 5]] END,
       CASE WHEN h %% 5 = 0 THEN ARRAY[(0.3 + (h %% 690) / 1000.0)::real] END,
       CASE WHEN h %% 5 = 0 THEN ARRAY[ARRAY[10, 20, 100, 200]::real[]] END,
       jsonb_build_object('codec', 'h264', 'keyframe', h %% 3 = 0,
                          'exposure_ms', 4 + (h & 255) / 21.0,
                          'zone', (ARRAY['north-gate', 'loading-bay', 'lobby',
                                         'car-park'])[c %% 4 + 1])
FROM generate_series(0, %(cameras)s - 1) AS c
CROSS JOIN generate_series(%(from)s::timestamptz, %(to)s::timestamptz - interval '1 second',
                           interval '10 minutes') AS t (at)
CROSS JOIN LATERAL (SELECT hashint8(extract(epoch FROM t.at)::bigint * 31 + c) & 2147483647)
    AS x (h)
"""


def _write_history(conn: psycopg.Connection[Any], start: datetime) -> None:
    """The frames of the year before the week (`_HISTORY`)."""
    first = start - timedelta(days=HISTORY_DAYS)
    for month in range(0, HISTORY_DAYS, 30):
        since = first + timedelta(days=month)
        until = min(start, since + timedelta(days=30))
        conn.execute(_HISTORY, {"cameras": CAMERAS, "from": since, "to": until})


def _keep_as_retention(conn: psycopg.Connection[Any], start: datetime, end: datetime) -> None:
    """Once every level is rolled up, the history as retention keeps it:
    the raw chunks before the week dropped, and the 1-minute rollup's
    chunks that ended 30 days before the end."""
    conn.execute("SELECT drop_chunks('frame_metadata', older_than => %s::timestamptz)", (start,))
    conn.execute(
        "SELECT drop_chunks('frame_stats_1m', older_than => %s::timestamptz)",
        (end - timedelta(days=30),),
    )


def _default_dir() -> Path:
    configured = os.environ.get("FRAMEMETA_BENCH_DIR")
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "framemeta-bench"


@contextmanager
def bench_server() -> Iterator[str]:
    """Superuser conninfo of the server that keeps the dataset."""
    external = os.environ.get("FRAMEMETA_TEST_DSN")
    if external:
        yield external
        return
    directory = _default_dir()
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o711)
    # Room for the whole dataset (about 2 GB) in shared buffers, as a
    # production server sized for a week of raw frames would have.
    with EmbeddedServer(directory, settings={"shared_buffers": "3GB"}) as server:
        yield server.dsn


def prewarm(dsn: str) -> int:
    """Read every table and index of the dataset into shared buffers
    (pg_prewarm), so that measurements see a warm cache and not the order
    in which earlier runs happened to touch pages; returns the blocks read."""
    with psycopg.connect(dsn, autocommit=True) as conn:  # the dataset's owner, a superuser
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        row = conn.execute(
            "SELECT coalesce(sum(pg_prewarm(c.oid)), 0)::bigint FROM pg_class AS c"
            " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'i', 't', 'm')"
            " AND n.nspname IN ('public', '_timescaledb_internal')"
        ).fetchone()
    return int(row[0]) if row else 0


def _as_kept(conn: psycopg.Connection[Any], end: datetime) -> None:
    """Community edition: the raw chunks that ended ``compress_after`` (1
    day) before the dataset's end compressed, as the compression policy
    keeps a production server's, and this database's policies paused, so
    that no refresh or compression runs beside a measurement. Idempotent;
    nothing on the Apache edition."""
    if conn.execute("SELECT framemeta_edition()").fetchone() != ("timescale",):
        return
    conn.execute(
        "SELECT compress_chunk(c, if_not_compressed => true)"
        "  FROM show_chunks('frame_metadata', older_than => %s::timestamptz - (SELECT"
        "       value::interval FROM framemeta_config WHERE key = 'compress_after')) AS c",
        (end,),
    )
    conn.execute(
        "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs"
        " WHERE hypertable_name IS NOT NULL"  # framemeta's policies and jobs, as the tests
        "    OR proc_name IN ('framemeta_recount_cameras_job', 'framemeta_refresh_late_job')"
    )


def dataset_end() -> datetime:
    """Where the dataset ends: the last full hour when it was built."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def ensure_dataset(admin_dsn: str, say: object = print) -> tuple[str, datetime]:
    """The dataset's conninfo and its end (exclusive), built if missing."""
    dsn = make_conninfo(admin_dsn, dbname=DATASET)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT EXISTS (SELECT FROM pg_database WHERE datname = %s)", (DATASET,)
        ).fetchone()
    if exists == (True,):
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT value::timestamptz FROM framemeta_config WHERE key = 'bench_dataset_end'"
            ).fetchone()
        if row is not None:
            migrate(dsn)  # a dataset built before a later migration gets it
            with psycopg.connect(dsn, autocommit=True) as conn:
                _as_kept(conn, row[0])
            return dsn, row[0]
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {DATASET} WITH (FORCE)")
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        # Earlier versions of the dataset (about 2 GB each) make way.
        for (older,) in conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'framemeta\\_bench\\_week\\_v%'"
        ).fetchall():
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(older)))
        conn.execute(f"CREATE DATABASE {DATASET}")
    migrate(dsn)
    end = dataset_end()
    start = end - timedelta(days=DAYS)
    origin = int(start.timestamp())
    started = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        # The dataset's days lie in the past; retention must not drop them
        # while it is in use.
        conn.execute("UPDATE framemeta_config SET value = 'never' WHERE key LIKE 'retention%'")
        conn.execute("SELECT framemeta_sync_retention_policies()")
        _write_history(conn, start)
        if callable(say):
            say(f"dataset: {HISTORY_DAYS} days of history ({time.monotonic() - started:.0f} s)")
        for hour in range(DAYS * 24):
            conn.execute(
                _HOUR,
                {"hour": start + timedelta(hours=hour), "cameras": CAMERAS, "origin": origin},
            )
            if hour % 24 == 23 and callable(say):
                say(f"dataset: day {hour // 24 + 1} of {DAYS} ({time.monotonic() - started:.0f} s)")
        if conn.execute("SELECT framemeta_edition()").fetchone() == ("timescale",):
            for relation in ("frame_stats_1m", "frame_stats_1h", "frame_stats_1d"):
                conn.execute(f"CALL refresh_continuous_aggregate('{relation}', NULL, NULL)")
        _keep_as_retention(conn, start, end)
        _as_kept(conn, end)
        conn.execute("VACUUM ANALYZE")
        conn.execute(
            "INSERT INTO framemeta_config (key, value) VALUES ('bench_dataset_end', %s)",
            (end.isoformat(),),
        )
    return dsn, end
