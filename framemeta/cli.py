"""The ``framemeta`` command: server, migrate, status, maintain, erase, queries, demo.

The only place that configures logging. Errors print as one line on stderr
(exit 1) without a traceback; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import attrs
import psycopg

from framemeta import _dsn, _status, maintenance, schema
from framemeta.errors import ConfigurationError, FramemetaError

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("framemeta: interrupted", file=sys.stderr)
        return 130
    except (FramemetaError, psycopg.Error, OSError) as exc:
        if args.debug:
            raise
        message = str(exc).strip() or type(exc).__name__
        print(f"framemeta: error: {message}", file=sys.stderr)
        return 1


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="framemeta", description="Per-frame video metadata in TimescaleDB."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    dsn_help = "libpq connection string or URI; default $FRAMEMETA_DSN, then the PG* variables"

    server = commands.add_parser("server", help="the local PostgreSQL + TimescaleDB")
    server_commands = server.add_subparsers(title="server commands", metavar="ACTION")
    install = server_commands.add_parser(
        "install", help="install PostgreSQL and TimescaleDB on this machine (needs root)"
    )
    install.add_argument(
        "--pgbouncer", action="store_true", help="also install pgbouncer (for its tests)"
    )
    install.set_defaults(handler=_server_install)
    for name, handler, text in (
        ("start", _server_start, "start the persistent embedded server"),
        ("stop", _server_stop, "stop it"),
        ("status", _server_status, "say whether it runs, and its DSN"),
    ):
        action = server_commands.add_parser(name, help=text)
        action.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help="cluster directory (default: $FRAMEMETA_DEMO_DIR or the demo directory)",
        )
        action.set_defaults(handler=handler)

    migrate = commands.add_parser("migrate", help="apply pending schema migrations")
    migrate.add_argument("--dsn", default=None, help=dsn_help)
    migrate.add_argument(
        "--status", action="store_true", help="list applied and pending migrations; change nothing"
    )
    migrate.set_defaults(handler=_migrate)

    status = commands.add_parser("status", help="edition, versions, chunks and sizes")
    status.add_argument("--dsn", default=None, help=dsn_help)
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(handler=_status_command)

    maintain = commands.add_parser(
        "maintain",
        help="apply retention, refresh rollups, compress (community); for cron or a timer",
        description="Apply retention (drop old chunks at every level); on the community "
        "edition also refresh the rollups (catching frames backfilled past the policies' "
        "windows) and compress raw chunks older than a day. Idempotent; exits non-zero on "
        "failure.",
    )
    maintain.add_argument("--dsn", default=None, help=dsn_help)
    maintain.add_argument(
        "--set-retention",
        metavar="LEVEL=AGE",
        action="append",
        default=[],
        help="change a level's retention first, e.g. raw=14d, 1m=60d, 1d=never (repeatable)",
    )
    maintain.add_argument(
        "--rebuild-rollups",
        action="store_true",
        help="also recompute the rollups of --start..--end from raw frames (repair)",
    )
    maintain.add_argument("--start", type=_moment, help="ISO 8601 time with a zone (rebuild)")
    maintain.add_argument("--end", type=_moment, help="ISO 8601 time with a zone (rebuild)")
    maintain.add_argument("--camera", default=None, help="rebuild one camera only (Apache edition)")
    maintain.set_defaults(handler=_maintain)

    queries = commands.add_parser(
        "queries",
        help="framemeta's statements from pg_stat_statements, slow ones flagged",
        description="Calls, mean, max and stddev time, rows and shared-buffer hit ratio of "
        "framemeta's statements in this database (pg_stat_statements), slowest first; "
        "statements with a mean at or above --threshold-ms are flagged SLOW.",
    )
    queries.add_argument("--dsn", default=None, help=dsn_help)
    queries.add_argument("--json", action="store_true", help="print JSON instead of a table")
    queries.add_argument(
        "--threshold-ms", type=float, default=10.0, help="flag means at or above this (10)"
    )
    queries.add_argument("--limit", type=int, default=50, help="statements shown (50)")
    queries.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when any query is flagged (among all, not only those shown), or when "
        "statements of other roles are hidden from this one",
    )
    queries.set_defaults(handler=_queries)

    erase = commands.add_parser(
        "erase",
        help="delete one camera's frames in a time range; rollups follow (owner role)",
        description="Delete the frames of CAMERA captured in [START, END) and make every "
        "rollup level consistent with what is left. Where raw frames are already past "
        "retention, that camera's rollup buckets overlapping the range are deleted.",
    )
    erase.add_argument("--dsn", default=None, help=dsn_help)
    erase.add_argument("--camera", required=True, help="the camera_id")
    erase.add_argument("--start", required=True, type=_moment, help="ISO 8601 time with a zone")
    erase.add_argument(
        "--end", required=True, type=_moment, help="ISO 8601 time with a zone (exclusive)"
    )
    erase.add_argument(
        "--dry-run", action="store_true", help="count the frames that would go; change nothing"
    )
    erase.set_defaults(handler=_erase)

    demo = commands.add_parser(
        "demo", help="start the embedded server, migrate, write sample frames, show status"
    )
    demo.add_argument("--data-dir", type=Path, default=None, help="cluster directory")
    demo.add_argument(
        "--keep-running", action="store_true", help="leave the server running afterwards"
    )
    demo.add_argument("--cameras", type=int, default=12, help="simulated cameras (12)")
    demo.add_argument("--fps", type=float, default=1.0, help="frames per second per camera (1)")
    demo.add_argument("--hours", type=float, default=24.0, help="hours of frames to write (24)")
    demo.set_defaults(handler=_demo)
    return parser


# -- server -------------------------------------------------------------------


def _server_install(args: argparse.Namespace) -> int:
    from framemeta import _provision

    installation = _provision.ensure_timescaledb(progress=_say)
    _say(
        f"PostgreSQL {installation.pg_major} with TimescaleDB {installation.timescaledb_version} "
        f"is ready ({installation.source})"
    )
    if args.pgbouncer:
        _say(f"pgbouncer is ready ({_provision.ensure_pgbouncer(progress=_say)})")
    return 0


def _data_dir(args: argparse.Namespace) -> Path:
    from framemeta.embedded import default_demo_dir

    directory: Path | None = args.data_dir
    return directory if directory is not None else default_demo_dir()


def _server_start(args: argparse.Namespace) -> int:
    from framemeta.embedded import EmbeddedServer

    directory = _data_dir(args)
    if (directory / "data" / "PG_VERSION").exists():
        server = EmbeddedServer.attach(directory)
        if server.is_running:
            _say(f"already running: {server.dsn}")
            return 0
    else:
        server = EmbeddedServer(directory, stop_with_parent=False)
    server.start()
    _say(f"started: {server.dsn}")
    _say(f"export FRAMEMETA_DSN='{server.dsn}'")
    return 0


def _server_stop(args: argparse.Namespace) -> int:
    from framemeta.embedded import EmbeddedServer

    directory = _data_dir(args)
    if not (directory / "data").exists():
        _say(f"no server data in {directory}")
        return 0
    server = EmbeddedServer.attach(directory)
    if not server.is_running:
        _say("not running")
        return 0
    server.stop()
    _say("stopped")
    return 0


def _server_status(args: argparse.Namespace) -> int:
    from framemeta.embedded import EmbeddedServer

    directory = _data_dir(args)
    if not (directory / "data").exists():
        _say(f"no server data in {directory}")
        return 3
    server = EmbeddedServer.attach(directory)
    if server.is_running:
        _say(f"running: {server.dsn}")
        return 0
    _say(f"stopped (data in {directory})")
    return 3


# -- database -----------------------------------------------------------------


def _migrate(args: argparse.Namespace) -> int:
    if args.status:
        states = schema.migration_status(args.dsn)
        width = max((len(state.migration.filename) for state in states), default=10)
        for state in states:
            when = state.applied_at.isoformat(timespec="seconds") if state.applied_at else ""
            print(f"{state.migration.filename:<{width}}  {state.status:<8} {when}")
        return 1 if any(state.edited for state in states) else 0
    applied = schema.migrate(args.dsn, progress=_say)
    where = _dsn.describe(_dsn.resolve(args.dsn))
    if applied:
        _say(f"{where}: applied {len(applied)} migration(s)")
    else:
        _say(f"{where}: up to date")
    return 0


def _status_command(args: argparse.Namespace) -> int:
    with _dsn.connect(args.dsn, autocommit=True) as conn:
        status = _status.collect(conn)
    if args.json:
        print(json.dumps(status.to_dict(), indent=2))
    else:
        print(_status.format_table(status))
    return 0


def _maintain(args: argparse.Namespace) -> int:
    changes: dict[str, str] = {}
    for item in args.set_retention:
        level, sep, age = item.partition("=")
        if not sep:
            raise ConfigurationError(f"--set-retention {item!r}: expected LEVEL=AGE, e.g. raw=14d")
        changes[level.strip()] = age
    if args.rebuild_rollups and (args.start is None or args.end is None):
        raise ConfigurationError("--rebuild-rollups needs --start and --end")
    if not args.rebuild_rollups and (args.start or args.end or args.camera):
        raise ConfigurationError("--start, --end and --camera go with --rebuild-rollups")
    with _dsn.connect(args.dsn, autocommit=True, application_name="framemeta-maintain") as conn:
        if changes:
            retention = maintenance.set_retention(conn, **changes)
            _say("retention: " + ", ".join(
                f"{level} {maintenance.show_horizon(retention.horizon(level))}"
                for level in maintenance.LEVELS
            ))  # fmt: skip
        report = maintenance.maintain(conn)
        rebuilt = (
            maintenance.rebuild_rollups(conn, args.start, args.end, camera_id=args.camera)
            if args.rebuild_rollups
            else []
        )
    if report.dropped is None:
        _say("retention: another session is applying it now; skipped")
    for result in report.dropped or []:
        _say(
            f"{result.level}: dropped {len(result.chunks)} chunk(s) older than "
            f"{maintenance.show_horizon(result.horizon)}"
        )
    if report.refreshed:
        _say(f"rollups: refreshed {', '.join(report.refreshed)}")
    else:
        _say("rollups: current (kept by the insert trigger)")
    if report.compressed or report.refreshed:
        _say(f"compression: compressed {len(report.compressed)} chunk(s)")
    else:
        _say("compression: not available on the Apache edition")
    for level in rebuilt:
        _say(f"rebuild {_level_text(level)}")
    return 0


def _queries(args: argparse.Namespace) -> int:
    with _dsn.connect(args.dsn, autocommit=True) as conn:
        report = _status.statement_report(conn, threshold_ms=args.threshold_ms, limit=args.limit)
    if args.json:
        print(json.dumps([attrs.asdict(stat) for stat in report.statements], indent=2))
    else:
        print(_status.format_statements(report, args.threshold_ms))
    if report.hidden:
        print(
            f"warning: pg_stat_statements hides {report.hidden} statement(s) of other roles "
            "from this one (grant it pg_read_all_stats); --check fails while it cannot see them",
            file=sys.stderr,
        )
    return 1 if args.check and (report.slow or report.hidden) else 0


def _erase(args: argparse.Namespace) -> int:
    with _dsn.connect(args.dsn, autocommit=True, application_name="framemeta-erase") as conn:
        if args.dry_run:
            row = conn.execute(
                "SELECT count(*) FROM frame_metadata"
                " WHERE camera_id = %s AND captured_at >= %s AND captured_at < %s",
                (args.camera, args.start, args.end),
            ).fetchone()
            _say(f"would erase {row[0] if row else 0:,} frame(s) of {args.camera}; nothing changed")
            return 0
        erasure = maintenance.erase_frames(conn, args.camera, args.start, args.end)
    _say(
        f"erased {erasure.frames:,} frame(s) of {erasure.camera_id} "
        f"from {erasure.start.isoformat()} to {erasure.end.isoformat()}"
    )
    for level in erasure.levels:
        _say(f"rollup {_level_text(level)}")
    return 0


def _level_text(level: maintenance.LevelRebuilt) -> str:
    span = f"{level.start:%Y-%m-%d %H:%M}..{level.end:%Y-%m-%d %H:%M} UTC"
    if level.recomputed_from is None:
        done = "nothing recomputed (the level below no longer keeps this range)"
    elif level.rows is None:
        done = f"refreshed from {level.recomputed_from:%Y-%m-%d %H:%M}"
    else:
        done = f"recomputed from {level.recomputed_from:%Y-%m-%d %H:%M}, {level.rows:,} row(s)"
    if level.forgotten:
        done += f"; {level.forgotten:,} bucket(s) past retention deleted"
    return f"{level.level} {span}: {done}"


def _moment(text: str) -> datetime:
    """An argparse type: ISO 8601 with a zone (``2026-11-25T10:00:00Z``)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time, e.g. 2026-11-25T10:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no time zone; add one, e.g. {text}Z or {text}+01:00"
        )
    return moment


# -- demo ---------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from framemeta import demo

    return demo.run(
        _data_dir(args),
        keep_running=args.keep_running,
        say=_say,
        cameras=args.cameras,
        fps=args.fps,
        hours=args.hours,
    )


def _say(message: str) -> None:
    print(message, flush=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
