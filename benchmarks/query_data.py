"""The Query API benchmarks' dataset: 7 days of 12 cameras at 1 frame/s
(7,257,600 frames) ending at the last full hour before it was built, with
rollups filled. Built once with SQL on the server and kept in a database named
for its version; later runs reuse it. On the community edition, the raw days
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
from psycopg.conninfo import make_conninfo

from framemeta import migrate
from framemeta.embedded import EmbeddedServer

DATASET = "framemeta_bench_week_v1"
"""The database's name; change the suffix when the data below changes."""
CAMERAS = 12
DAYS = 7

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
        " WHERE hypertable_name IS NOT NULL"  # framemeta's policies, as the tests pause them
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
        _as_kept(conn, end)
        conn.execute("VACUUM ANALYZE")
        conn.execute(
            "INSERT INTO framemeta_config (key, value) VALUES ('bench_dataset_end', %s)",
            (end.isoformat(),),
        )
    return dsn, end
