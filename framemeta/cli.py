"""The ``framemeta`` command: server, migrate, status, demo.

The only place that configures logging. Errors print as one line on stderr
(exit 1) without a traceback; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg

from framemeta import _dsn, _status, schema
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
        "maintain", help="apply retention (drop old chunks); run it from cron or a timer"
    )
    maintain.add_argument("--dsn", default=None, help=dsn_help)
    maintain.add_argument(
        "--set-retention",
        metavar="LEVEL=AGE",
        action="append",
        default=[],
        help="change a level's retention first, e.g. raw=14d, 1m=60d, 1d=never (repeatable)",
    )
    maintain.set_defaults(handler=_maintain)

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
    from framemeta import maintenance

    changes: dict[str, str] = {}
    for item in args.set_retention:
        level, sep, age = item.partition("=")
        if not sep:
            raise ConfigurationError(f"--set-retention {item!r}: expected LEVEL=AGE, e.g. raw=14d")
        changes[level.strip()] = age
    with _dsn.connect(args.dsn, autocommit=True) as conn:
        if changes:
            retention = maintenance.set_retention(conn, **changes)
            _say("retention: " + ", ".join(
                f"{level} {maintenance.show_horizon(retention.horizon(level))}"
                for level in maintenance.LEVELS
            ))  # fmt: skip
        dropped = maintenance.apply_retention(conn)
    if dropped is None:
        _say("another process is running maintenance; nothing done")
        return 0
    for result in dropped:
        _say(
            f"{result.level}: dropped {len(result.chunks)} chunk(s) older than "
            f"{maintenance.show_horizon(result.horizon)}"
        )
    return 0


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
