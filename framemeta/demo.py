"""``framemeta demo``: a persistent embedded server with sample frames in it.

Starts (or reuses) the demo cluster, creates the ``framemeta_demo`` database,
migrates it, writes a simulated day of 12 cameras through the MetadataWriter
and prints throughput, the writer's stats, the database's status and a few
answers of the Query API.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from framemeta import _status, schema
from framemeta.embedded import EmbeddedServer
from framemeta.query import FrameQuery
from framemeta.records import BoundingBox, Detection, FrameRecord
from framemeta.writer import MetadataWriter

__all__ = ["DEMO_DATABASE", "run", "sample_frames"]

DEMO_DATABASE = "framemeta_demo"
_LABELS = ("person", "car", "bicycle", "dog")


def sample_frames(
    cameras: int, seconds: int, fps: float, *, start: datetime | None = None, seed: int = 1
) -> Iterator[FrameRecord]:
    """Synthetic but plausible frames, time-ordered across ``cameras``:
    ``cameras * seconds * fps`` records from ``start`` on."""
    rng = random.Random(seed)
    start = start or datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=seconds)
    step = timedelta(seconds=1 / fps)
    camera_ids = [f"cam-{camera:02d}" for camera in range(cameras)]
    for number in range(int(seconds * fps)):
        for camera_id in camera_ids:
            motion = min(1.0, rng.expovariate(8.0))
            detections = tuple(
                Detection(
                    rng.choice(_LABELS),
                    round(rng.uniform(0.3, 1.0), 3),
                    BoundingBox(rng.uniform(0, 1500), rng.uniform(0, 800), 120.0, 240.0),
                )
                for _ in range(rng.choice((0, 0, 0, 1, 2)) if motion > 0.2 else 0)
            )
            yield FrameRecord(
                camera_id,
                start + number * step,
                number,
                width=1920,
                height=1080,
                motion_score=round(motion, 4),
                brightness=round(rng.uniform(0.3, 0.7), 4),
                detections=detections,
                metadata={"codec": "h264", "keyframe": number % 30 == 0, "zone": "gate"},
            )


def run(
    data_dir: Path,
    *,
    keep_running: bool,
    say: Callable[[str], None],
    cameras: int = 12,
    fps: float = 1.0,
    hours: float = 24.0,
) -> int:
    """Run the demo against the cluster in ``data_dir``; returns an exit code.

    Simulates ``hours`` of ``cameras`` cameras at ``fps`` frames per second
    (default: the last day of 12 cameras at 1 frame/s, about 1M frames,
    compressed into the time the writer needs) and prints the writer's
    throughput and stats.
    """
    if (data_dir / "data" / "PG_VERSION").exists():
        server = EmbeddedServer.attach(data_dir)
        say(f"reusing the demo cluster in {data_dir}")
    else:
        server = EmbeddedServer(data_dir, stop_with_parent=False)
        say(f"creating the demo cluster in {data_dir}")
    already_running = server.is_running
    if not already_running:
        server.start()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as admin:
            exists = admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DEMO_DATABASE,)
            ).fetchone()
            if not exists:
                admin.execute(f"CREATE DATABASE {DEMO_DATABASE}")
        dsn = server.dsn_for(DEMO_DATABASE)
        schema.migrate(dsn, progress=say)
        seconds = int(hours * 3600)
        total = int(cameras * seconds * fps)
        say(f"writing {total:,} frames: {cameras} cameras, {fps:g} frame/s, the last {hours:g} h")
        started = time.monotonic()
        end = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
        with MetadataWriter(dsn) as writer:
            progress = _Progress(total)
            for count, record in enumerate(
                sample_frames(cameras, seconds, fps, start=end - timedelta(seconds=seconds)), 1
            ):
                writer.write(record)
                if not count % 20_000:
                    progress.show(count, writer.stats().committed)
            writer.flush()
            progress.show(total, writer.stats().committed, final=True)
            stats = writer.stats()
        elapsed = time.monotonic() - started
        say(f"{total:,} frames committed in {elapsed:.1f} s: {total / elapsed:,.0f} frames/s")
        say(
            f"writer stats: written={stats.written:,} committed={stats.committed:,} "
            f"rejected={stats.rejected} dropped={stats.dropped} retried={stats.retried} "
            f"last batch latency={1000 * (stats.last_flush_latency or 0):.0f} ms"
        )
        with psycopg.connect(dsn, autocommit=True) as conn:
            # Fresh statistics, so that the row estimate below is meaningful.
            conn.execute("ANALYZE frame_metadata")
            say(_status.format_table(_status.collect(conn)))
        _show_answers(dsn, say)
        say(f"look around: framemeta server start, then psql '{dsn}'")
    finally:
        if not keep_running and not already_running:
            server.stop()
            say("demo server stopped (data kept; `framemeta demo --keep-running` leaves it up)")
    return 0


def _show_answers(dsn: str, say: Callable[[str], None]) -> None:
    """A few answers of the Query API: the newest frame of each camera, and
    the last hour's statistics with the plan that produced them."""
    with FrameQuery(dsn, max_size=1) as query:
        say("latest frame of each camera:")
        for frame in query.latest_all():
            motion = "-" if frame.motion_score is None else f"{frame.motion_score:.2f}"
            say(f"  {frame.camera_id} #{frame.frame_number} at {frame.captured_at:%H:%M:%S}Z: "
                f"motion {motion}, {len(frame.detections)} detection(s)")  # fmt: skip
        now = datetime.now(UTC)
        start, bucket = now - timedelta(hours=1), timedelta(minutes=10)
        say(str(query.plan(start, now, bucket=bucket)))
        totals: dict[datetime, list[int]] = {}
        for row in query.stats(start, now, bucket=bucket):
            total = totals.setdefault(row.bucket, [0, 0, 0])
            total[0] += row.frames
            total[1] += row.motion_events
            total[2] += row.detections
        for moment, (frames, events, detections) in sorted(totals.items()):
            say(f"  {moment:%H:%M}Z all cameras: {frames:,} frames, {events:,} motion, "
                f"{detections:,} detections")  # fmt: skip


class _Progress:
    """A one-line progress bar on stderr: written and committed frames."""

    def __init__(self, total: int) -> None:
        self._total = total
        self._started = time.monotonic()

    def show(self, written: int, committed: int, *, final: bool = False) -> None:
        width = 30
        done = int(width * written / self._total)
        rate = written / max(time.monotonic() - self._started, 1e-9)
        line = (
            f"\r[{'#' * done}{'.' * (width - done)}] {written:,}/{self._total:,} written, "
            f"{committed:,} committed, {rate:,.0f}/s"
        )
        sys.stderr.write(line + ("\n" if final else ""))
        sys.stderr.flush()
