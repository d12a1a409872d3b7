"""A private PostgreSQL with TimescaleDB, for tests, examples and the demo.

`EmbeddedServer` runs ``initdb`` and ``postgres`` from the installation that
``framemeta server install`` provides, on a unix socket in a private
directory and a free loopback port. PostgreSQL refuses to run as root, so a
root caller runs it as the ``postgres`` OS user.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self

import psycopg

from framemeta import _provision
from framemeta.errors import ConfigurationError, FramemetaError

__all__ = ["DEFAULT_SETTINGS", "EmbeddedServer", "ServerError", "default_demo_dir"]

ShutdownMode = Literal["smart", "fast", "immediate"]
_SIGNALS: Final[Mapping[str, signal.Signals]] = {
    "smart": signal.SIGTERM,
    "fast": signal.SIGINT,
    "immediate": signal.SIGQUIT,
}
SUPERUSER: Final = "postgres"
STATE_FILE: Final = "framemeta-server.json"
# Unix socket paths are limited to 107 bytes; ".s.PGSQL.65535" takes 15.
_MAX_SOCKET_DIR: Final = 90
_PR_SET_PDEATHSIG: Final = 1

DEFAULT_SETTINGS: Final[Mapping[str, str]] = {
    "shared_preload_libraries": "timescaledb,pg_stat_statements",
    "timescaledb.telemetry_level": "off",
    "timescaledb.max_background_workers": "8",
    "max_worker_processes": "16",
    "max_connections": "200",
    # Ingest: large WAL between checkpoints, WAL compressed, no JIT for the
    # short queries framemeta makes.
    "shared_buffers": "512MB",
    "wal_buffers": "16MB",
    "max_wal_size": "4GB",
    "min_wal_size": "512MB",
    "checkpoint_timeout": "15min",
    "checkpoint_completion_target": "0.9",
    "wal_compression": "lz4",
    "maintenance_work_mem": "256MB",
    "work_mem": "16MB",
    "effective_cache_size": "4GB",
    "random_page_cost": "1.1",
    "jit": "off",
    "pg_stat_statements.track": "all",
    "timezone": "UTC",
    "lc_messages": "C",
    "log_line_prefix": "%m [%p] %q%u@%d ",
    "log_min_messages": "warning",
}


class ServerError(FramemetaError):
    """The embedded server could not be initialised, started or stopped.

    The message ends with the last lines of the server's log.
    """


def default_demo_dir() -> Path:
    """Where the demo keeps its data between runs.

    ``$FRAMEMETA_DEMO_DIR`` when set; else ``$XDG_DATA_HOME/framemeta/demo``
    (``~/.local/share/...``) for a normal user, and ``/var/lib/framemeta/demo``
    for root, whose home the ``postgres`` OS user cannot enter.
    """
    configured = os.environ.get("FRAMEMETA_DEMO_DIR")
    if configured:
        return Path(configured)
    if os.geteuid() == 0:
        return Path("/var/lib/framemeta/demo")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "framemeta" / "demo"


class EmbeddedServer:
    """A private PostgreSQL + TimescaleDB server; a context manager.

    ``data_dir`` None makes a temporary cluster that is deleted on `stop`;
    a path keeps the cluster there (created on first use) across runs.
    ``port`` None picks a free loopback port. ``settings`` are extra
    ``postgresql.conf`` values on top of `DEFAULT_SETTINGS`.
    ``stop_with_parent`` (default True) makes the server exit when this
    process dies, even by SIGKILL; pass False for a server that must outlive
    it (``framemeta server start``). ``startup_timeout`` is in seconds
    (default 60), counted again each time crash recovery logs progress.

    `dsn` connects as the superuser over the private unix socket; `tcp_dsn`
    over loopback TCP with a generated password. Raises `ServerError` when
    the server cannot be initialised or started, and
    `framemeta.errors.ConfigurationError` when TimescaleDB is not installed
    (run ``framemeta server install``) or the data directory cannot be used.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        settings: Mapping[str, str] | None = None,
        stop_with_parent: bool = True,
        startup_timeout: float = 60.0,
    ) -> None:
        installation = _provision.find_installation()
        if installation is None:
            raise ConfigurationError(
                "PostgreSQL with TimescaleDB is not installed on this machine: "
                "run `framemeta server install` (as root) first"
            )
        self._bindir = installation.pg_bindir
        self.timescaledb_version = installation.timescaledb_version
        self._temporary = data_dir is None
        self._base = Path(data_dir).absolute() if data_dir is not None else None
        self._port = port
        self._settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self._stop_with_parent = stop_with_parent
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._socket_dir: Path | None = None
        self._password: str | None = None
        self._run_as = _server_user()
        self._finalizer: weakref.finalize[Any, Any] | None = None

    # -- public surface ---------------------------------------------------

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory (PGDATA)."""
        return self._root() / "data"

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1, also the unix socket's number."""
        if self._port is None:
            raise ServerError("the server has not been started")
        return self._port

    @property
    def dsn(self) -> str:
        """Superuser conninfo over the private unix socket (database ``postgres``)."""
        if self._socket_dir is None:
            raise ServerError("the server has not been started")
        return f"host={self._socket_dir} port={self.port} user={SUPERUSER} dbname=postgres"

    @property
    def tcp_dsn(self) -> str:
        """Superuser conninfo over loopback TCP, password included: do not log it."""
        return (
            f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres "
            f"password={self._password}"
        )

    @property
    def is_running(self) -> bool:
        """True while the postmaster process is alive."""
        return self._postmaster_pid() is not None

    @property
    def log_file(self) -> Path:
        """The server's log; read it when something went wrong."""
        return self._root() / "postgresql.log"

    def dsn_for(self, dbname: str, **params: str) -> str:
        """`dsn` pointed at another database, with extra conninfo ``params``."""
        extra = "".join(f" {key}={value}" for key, value in params.items())
        return f"host={self._socket_dir} port={self.port} user={SUPERUSER} dbname={dbname}{extra}"

    def start(self) -> Self:
        """Initialise the cluster if needed and start the server; returns self.

        Idempotent while running. Raises `ServerError` with the log's tail
        when the server does not become ready within ``startup_timeout``.
        """
        if self._process is not None and self._process.poll() is None:
            return self
        root = self._prepare_root()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._load_state()
        if self._postmaster_pid() is not None:
            raise ServerError(
                f"a server is already running on {self.data_dir}: stop it first "
                "(`framemeta server stop`)"
            )
        self._write_settings()
        self._socket_dir = self._socket_dir or self._make_socket_dir(root)
        for attempt in range(3):
            if self._port is None or attempt:
                self._port = _free_port()
            self._spawn()
            try:
                self._wait_ready()
                break
            except _PortTakenError:
                continue
        else:
            raise ServerError(f"could not find a free port to start on\n{self._log_tail()}")
        self._save_state()
        if self._stop_with_parent:
            # Runs when this object is collected or the interpreter exits.
            self._finalizer = weakref.finalize(
                self, _stop_at_exit, self._process, self._base if self._temporary else None
            )
        return self

    def stop(self, mode: ShutdownMode = "fast", *, keep_data: bool = False) -> None:
        """Stop the server (``smart``, ``fast`` or ``immediate``); idempotent.

        A temporary cluster is deleted afterwards unless ``keep_data`` (then
        `start` brings it back, as in an outage test). Waits up to 60 s for
        the postmaster to exit, then kills it.
        """
        self._stop_postmaster(mode)
        if self._temporary and self._base is not None and not keep_data:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None
            self._socket_dir = None

    def restart(self, mode: ShutdownMode = "fast") -> None:
        """Stop the server with ``mode`` and start it again on the same port.

        ``immediate`` is a crash as far as the database is concerned: it
        replays WAL on start, and clients see their connections cut.
        """
        self._stop_postmaster(mode)
        self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        where = f" port={self._port}" if self._port else ""
        kind = "temporary" if self._temporary else str(self._base)
        return f"<EmbeddedServer {state}{where} data={kind}>"

    # -- lifecycle details ------------------------------------------------

    def _root(self) -> Path:
        if self._base is None:
            raise ServerError("the server has no data directory yet: call start()")
        return self._base

    def _prepare_root(self) -> Path:
        if self._base is None:
            self._base = Path(tempfile.mkdtemp(prefix="framemeta-pg-"))
        self._base.mkdir(parents=True, exist_ok=True)
        if self._run_as is not None:
            _check_reachable(self._base, self._run_as)
            os.chown(self._base, self._run_as.pw_uid, self._run_as.pw_gid)
        self._base.chmod(0o700)
        return self._base

    def _make_socket_dir(self, root: Path) -> Path:
        candidate = root / "socket"
        if len(str(candidate)) > _MAX_SOCKET_DIR:
            candidate = Path(tempfile.mkdtemp(prefix="fm-sock-"))
        candidate.mkdir(mode=0o700, exist_ok=True)
        self._chown(candidate)
        return candidate

    def _initdb(self) -> None:
        self._password = secrets.token_urlsafe(24)
        with tempfile.NamedTemporaryFile("w", dir=self._root(), delete=False) as pwfile:
            pwfile.write(self._password + "\n")
        pw_path = Path(pwfile.name)
        self._chown(pw_path)
        try:
            self._run(
                [
                    str(self._bindir / "initdb"),
                    "--pgdata",
                    str(self.data_dir),
                    "--username",
                    SUPERUSER,
                    "--pwfile",
                    str(pw_path),
                    # Local connections need the private socket directory,
                    # which only this user (and root) can enter.
                    "--auth-local",
                    "trust",
                    "--auth-host",
                    "scram-sha-256",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C.UTF-8",
                    "--no-instructions",
                ],
                "initdb",
            )
        finally:
            pw_path.unlink(missing_ok=True)
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a") as handle:
            handle.write("\ninclude_if_exists = 'framemeta.conf'\n")
        self._save_state()

    def _write_settings(self) -> None:
        lines = [f"{key} = '{value}'" for key, value in self._settings.items()]
        path = self.data_dir / "framemeta.conf"
        path.write_text(
            "# written by framemeta.embedded at every start\n" + "\n".join(lines) + "\n"
        )
        self._chown(path)

    def _spawn(self) -> None:
        assert self._socket_dir is not None
        log = self.log_file.open("ab")
        self._chown(self.log_file)
        command = [
            str(self._bindir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self._port),
            "-c",
            f"unix_socket_directories={self._socket_dir}",
            "-c",
            "listen_addresses=127.0.0.1",
        ]
        try:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self._root(),
                **self._identity(),
                start_new_session=True,
                preexec_fn=_die_with_parent if self._stop_with_parent else None,
            )
        finally:
            log.close()

    def _wait_ready(self) -> None:
        """Wait for connections, up to ``startup_timeout``. Crash recovery
        that reports progress in the log (every 10 s by default:
        ``log_startup_progress_interval``) extends the wait, so that a
        server replaying a lot of WAL after being killed is not killed
        again halfway, over and over."""
        assert self._process is not None
        deadline = time.monotonic() + self._startup_timeout
        pid_file = self.data_dir / "postmaster.pid"
        progress = self._recovery_progress()
        while time.monotonic() < deadline:
            latest = self._recovery_progress()
            if latest is not None and latest != progress:
                progress = latest
                deadline = time.monotonic() + self._startup_timeout
            if self._process.poll() is not None:
                tail = self._log_tail()
                if "could not bind" in tail or "Address already in use" in tail:
                    raise _PortTakenError
                raise ServerError(f"postgres exited with code {self._process.returncode}\n{tail}")
            with contextlib.suppress(OSError, IndexError):
                # Line 8 of postmaster.pid is the postmaster's status.
                if pid_file.read_text().splitlines()[7].strip() == "ready":
                    with contextlib.suppress(psycopg.OperationalError):
                        psycopg.connect(self.dsn, connect_timeout=2).close()
                        return
            time.sleep(0.05)
        self._stop_postmaster("immediate")
        raise ServerError(
            f"postgres was not ready after {self._startup_timeout} s\n{self._log_tail()}"
        )

    def _postmaster_pid(self) -> int | None:
        if self._process is not None:
            return self._process.pid if self._process.poll() is None else None
        if self._base is None:
            return None
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def _stop_postmaster(self, mode: ShutdownMode) -> None:
        if mode not in _SIGNALS:
            raise ConfigurationError(f"mode: must be one of {sorted(_SIGNALS)}, not {mode!r}")
        pid = self._postmaster_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, _SIGNALS[mode])
            if not _wait_gone(self._process, pid, 60.0):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                _wait_gone(self._process, pid, 10.0)
        self._process = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None

    def _identity(self) -> dict[str, Any]:
        """subprocess arguments that run a command as the server's OS user."""
        user = self._run_as
        if user is None:
            return {}
        return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    def _run(self, command: list[str], what: str) -> None:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=self._root(),
            **self._identity(),
            check=False,
        )
        if result.returncode != 0:
            raise ServerError(f"{what} failed (exit {result.returncode}):\n{result.stderr.strip()}")

    def _chown(self, path: Path) -> None:
        if self._run_as is not None:
            os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)

    def _recovery_progress(self) -> str | None:
        """The newest line near the end of the log in which the startup
        process reports progress (syncing the data directory, replaying WAL:
        "..., elapsed time: 10.08 s, ...")."""
        try:
            with self.log_file.open("rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - 8192))
                tail = log.read().decode(errors="replace")
        except OSError:
            return None
        lines = [line for line in tail.splitlines() if "elapsed time:" in line]
        return lines[-1] if lines else None

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def _state_path(self) -> Path:
        return self._root() / STATE_FILE

    def _save_state(self) -> None:
        state = {
            "port": self._port,
            "socket_dir": str(self._socket_dir or ""),
            "password": self._password,
        }
        path = self._state_path()
        path.touch(mode=0o600, exist_ok=True)
        path.write_text(json.dumps(state))

    def _load_state(self) -> None:
        try:
            state = json.loads(self._state_path().read_text())
        except (OSError, ValueError):
            return
        self._password = self._password or state.get("password")
        if self._port is None and not self._temporary:
            self._port = state.get("port")
        socket_dir = state.get("socket_dir")
        if socket_dir and self._socket_dir is None and Path(socket_dir).is_dir():
            self._socket_dir = Path(socket_dir)

    @classmethod
    def attach(cls, data_dir: str | os.PathLike[str]) -> EmbeddedServer:
        """An `EmbeddedServer` for a persistent cluster that another process
        started (``framemeta server start``); `dsn` works while it runs.
        Raises `ServerError` when ``data_dir`` holds no cluster."""
        server = cls(data_dir, stop_with_parent=False)
        if not (server.data_dir / "PG_VERSION").exists():
            raise ServerError(f"no framemeta server data in {data_dir}")
        server._load_state()
        return server


class _PortTakenError(Exception):
    pass


def _server_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise ConfigurationError(
            "running as root, but there is no 'postgres' OS user to run PostgreSQL as "
            "(it refuses to run as root): run `framemeta server install`"
        ) from None


def _check_reachable(path: Path, user: pwd.struct_passwd) -> None:
    """Refuse a data directory the server's OS user cannot traverse to."""
    for parent in path.parents:
        info = parent.stat()
        if info.st_uid == user.pw_uid:
            continue
        if not info.st_mode & 0o001:
            raise ConfigurationError(
                f"data_dir: the '{user.pw_name}' OS user that runs PostgreSQL cannot enter "
                f"{parent}; choose a directory it can reach (e.g. under /var/lib or /tmp)"
            )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGQUIT (immediate shutdown) when we die."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGQUIT, 0, 0, 0)


def _wait_gone(process: subprocess.Popen[bytes] | None, pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.1)
                return True
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _stop_at_exit(process: subprocess.Popen[bytes] | None, temporary: Path | None) -> None:
    """Last resort at interpreter exit: stop a server nobody stopped."""
    if process is not None and process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGQUIT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    if temporary is not None:
        shutil.rmtree(temporary, ignore_errors=True)
