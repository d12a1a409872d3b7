"""The calls a dashboard makes, with what `plan()` says about the stats.

Run against the demo server (``framemeta demo --keep-running`` prints its DSN):

    FRAMEMETA_DSN='host=... port=... user=postgres dbname=framemeta_demo' \\
        python examples/dashboard_queries.py
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from framemeta import FrameQuery


def main() -> None:
    now = datetime.now(UTC)
    # One pool for the whole dashboard: a few connections, checked before use.
    # Behind pgbouncer in transaction mode (before 1.21), add prepare_threshold=None.
    with FrameQuery(max_size=4) as query:
        cameras = query.cameras()
        print(f"{len(cameras)} camera(s)")
        for camera in cameras:
            print(f"  {camera.camera_id}: {camera.frames:,} frames, last seen {camera.last_seen}")

        for frame in query.latest_all():
            labels = ", ".join(detection.label for detection in frame.detections) or "-"
            print(f"  latest {frame.camera_id} #{frame.frame_number} at {frame.captured_at}: "
                  f"motion {frame.motion_score}, detections {labels}")  # fmt: skip

        last_hour = (now - timedelta(hours=1), now)
        events = query.motion_events(*last_hour)
        print(f"{len(events)} motion frame(s) in the last hour")

        people = query.search(None, *last_hour, label="person", min_confidence=0.8, limit=5)
        print(f"first {len(people)} frame(s) with a person (confidence >= 0.8) in the last hour")

        # The last hour per minute, and the last week per hour: the plan says
        # which rollup answers and why.
        for start, bucket in ((now - timedelta(hours=1), timedelta(minutes=1)),
                              (now - timedelta(days=7), timedelta(hours=1))):  # fmt: skip
            plan = query.plan(start, now, bucket=bucket)
            rows = query.stats(start, now, bucket=bucket)
            busiest = max(rows, key=lambda row: row.motion_events, default=None)
            print(plan)
            print(f"  {len(rows)} row(s); busiest bucket: "
                  + (f"{busiest.camera_id} at {busiest.bucket}, {busiest.motion_events} motion "
                     f"frame(s), {busiest.detections_by_label}" if busiest else "-"))  # fmt: skip


if __name__ == "__main__":
    main()
