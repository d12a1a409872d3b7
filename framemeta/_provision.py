"""Make PostgreSQL (15 or newer) with TimescaleDB available on a Debian-like machine.

Uses the Debian archive's binary package when there is one, otherwise builds
Debian's TimescaleDB source package and keeps the build for a later reinstall.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final, TextIO

import attrs

from framemeta.errors import FramemetaError

__all__ = [
    "Installation",
    "ProvisionError",
    "ensure_pgbouncer",
    "ensure_timescaledb",
    "find_installation",
    "find_pgbouncer",
]

MIN_PG_MAJOR: Final = 15
# trixie (Debian 13) is the first Debian release that ships TimescaleDB; its
# 2.19.3 still supports PostgreSQL 15, so bookworm's PostgreSQL can use it.
SOURCE_SUITE: Final = "trixie"
SOURCE_PACKAGE: Final = "timescaledb"
DEBIAN_PG_ROOT: Final = Path("/usr/lib/postgresql")
ARCHIVE_KEYRING: Final = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
APT_ETC: Final = Path("/etc/apt")
PG_CONFIG_ENV: Final = "FRAMEMETA_PG_CONFIG"
CACHE_DIR_ENV: Final = "FRAMEMETA_CACHE_DIR"
INSTALL_COMMAND: Final = "sudo framemeta server install"
# Older lists may name .deb versions the mirror no longer has (404 on install).
APT_LISTS_MAX_AGE_S: Final = 24 * 3600
LOG_TAIL_LINES: Final = 20
BUILD_MARKER: Final = "framemeta-build.json"
PG_PACKAGES: Final = ("postgresql", "postgresql-contrib")
BUILD_TOOLS: Final = ("cmake", "gcc", "make", "dpkg-dev")
# A cached cmake tree only needs these to run `make install`.
INSTALL_TOOLS: Final = ("cmake", "make")
CMAKE_OPTIONS: Final = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DAPACHE_ONLY=1",
    "-DREGRESS_CHECKS=OFF",
    "-DTAP_CHECKS=OFF",
    "-DWARNINGS_AS_ERRORS=OFF",
    "-DLINTER=OFF",
    "-DSEND_TELEMETRY_DEFAULT=OFF",
    "-DUSE_TELEMETRY=OFF",
    "-DUSE_OPENSSL=OFF",
)
# apt-cache and apt-get print translated field names otherwise.
_C_LOCALE: Final = {"LC_ALL": "C", "LANG": "C", "LANGUAGE": ""}


class ProvisionError(FramemetaError):
    """PostgreSQL or TimescaleDB could not be made available.

    The message says what failed and what to do: the command and its exit
    code, the log file and its last lines, or the packages to install as root.
    """


@attrs.frozen
class Installation:
    """A PostgreSQL server installation that has TimescaleDB installed."""

    pg_bindir: Path
    pg_major: int
    timescaledb_version: str
    source: str  # "already-installed" | "debian-binary" | "built-from-debian-source"


@attrs.frozen
class _Postgres:
    pg_config: Path
    version: str
    major: int
    bindir: Path
    pkglibdir: Path
    sharedir: Path

    @property
    def debian_layout(self) -> bool:
        """True when Debian's packages (server-dev, timescaledb) fit this server."""
        return self.bindir == DEBIAN_PG_ROOT / str(self.major) / "bin"

    @property
    def extension_dir(self) -> Path:
        return self.sharedir / "extension"


@attrs.frozen
class _CachedBuild:
    directory: Path
    timescaledb_version: str

    @property
    def build_dir(self) -> Path:
        return self.directory / "src" / "build"


# --------------------------------------------------------------------------
# Pure helpers: parsing and command construction.


def _parse_pg_major(version: str) -> int:
    """Major version from `pg_config --version` output ("PostgreSQL 15.20 (Debian ...)")."""
    match = re.search(r"PostgreSQL\s+(\d+)", version)
    if match is None:
        raise ProvisionError(f"cannot read a PostgreSQL version from {version!r}")
    return int(match.group(1))


def _parse_control_default_version(text: str) -> str | None:
    """The `default_version` of an extension control file, or None."""
    match = re.search(r"^\s*default_version\s*=\s*'([^']+)'", text, re.MULTILINE)
    return match.group(1) if match else None


def _parse_apt_candidate(policy_output: str) -> str | None:
    """The Candidate version in `apt-cache policy` output; None if absent or "(none)"."""
    match = re.search(r"^\s*Candidate:\s*(\S+)", policy_output, re.MULTILINE)
    if match is None or match.group(1) == "(none)":
        return None
    return match.group(1)


def _parse_default_pg_major(depends_output: str) -> int | None:
    """The major the `postgresql` metapackage pulls in, from `apt-cache depends postgresql`."""
    match = re.search(r"^\s*Depends:\s*postgresql-(\d+)\s*$", depends_output, re.MULTILINE)
    return int(match.group(1)) if match else None


def _parse_showsrc_versions(showsrc_output: str) -> list[str]:
    """Every `Version:` of `apt-cache showsrc` output, in order."""
    return re.findall(r"^Version:\s*(\S+)", showsrc_output, re.MULTILINE)


def _upstream_version(debian_version: str) -> str:
    """The upstream part of a Debian version: "1:2.19.3+dfsg-1" gives "2.19.3"."""
    match = re.match(r"(?:\d+:)?(\d+(?:\.\d+)*)", debian_version)
    if match is None:
        raise ProvisionError(f"cannot read an upstream version from {debian_version!r}")
    return match.group(1)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def _parse_installed_packages(dpkg_query_output: str) -> set[str]:
    """Names marked fully installed in `dpkg-query -W -f '${Package} ${db:Status-Abbrev}\\n'`."""
    installed: set[str] = set()
    for line in dpkg_query_output.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[1].startswith("ii"):
            installed.add(fields[0])
    return installed


def _is_debian_uri(uri: str) -> bool:
    # Only the main archive carries suites like trixie; -security and
    # snapshot URIs do not end in /debian.
    path = uri.split("://", 1)[-1].rstrip("/")
    return "/" in path and path.endswith("/debian")


def _parse_deb822_debian_uri(text: str) -> str | None:
    """First `URIs:` entry of a deb822 sources file that points at a Debian archive."""
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            if _is_debian_uri(uri):
                return uri
    return None


def _parse_sources_list_debian_uri(text: str) -> str | None:
    """First `deb <uri> ...` of a one-line-style sources.list that points at a Debian archive."""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        words = line.split()
        if not words or words[0] not in ("deb", "deb-src"):
            continue
        rest = line[len(words[0]) :].strip()
        if rest.startswith("["):
            rest = rest.partition("]")[2].strip()
        uri = rest.split()[0] if rest.split() else ""
        if _is_debian_uri(uri):
            return uri
    return None


def _find_debian_uri(apt_etc: Path = APT_ETC) -> str:
    """The Debian archive URI the system's own apt configuration uses.

    Raises:
        ProvisionError: no configured source points at a Debian archive.
    """
    parts = apt_etc / "sources.list.d"
    candidates = [parts / "debian.sources", apt_etc / "sources.list"]
    if parts.is_dir():
        candidates += sorted(p for p in parts.iterdir() if p.suffix in (".sources", ".list"))
    for path in candidates:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        uri = (
            _parse_deb822_debian_uri(text)
            if path.suffix == ".sources"
            else _parse_sources_list_debian_uri(text)
        )
        if uri is not None:
            return uri
    raise ProvisionError(
        f"no Debian archive URI (one whose path ends in /debian) found in {apt_etc}/sources.list "
        f"or {parts}; cannot fetch the {SOURCE_PACKAGE} source package"
    )


def _private_sources_line(uri: str, keyring: Path = ARCHIVE_KEYRING) -> str:
    return f"deb-src [signed-by={keyring}] {uri} {SOURCE_SUITE} main\n"


def _private_apt_options(apt_dir: Path) -> list[str]:
    """apt options that read and write only `apt_dir`, leaving the system's apt state alone."""
    return [
        "-o",
        f"Dir::Etc::SourceList={apt_dir / 'sources.list'}",
        "-o",
        "Dir::Etc::SourceParts=/dev/null",
        "-o",
        f"Dir::State::Lists={apt_dir / 'lists'}",
        "-o",
        f"Dir::Cache={apt_dir / 'cache'}",
    ]


def _cmake_configure_command(src: Path, build: Path, pg_config: Path) -> list[str]:
    return [
        "cmake",
        "-S",
        str(src),
        "-B",
        str(build),
        *CMAKE_OPTIONS[:1],
        f"-DPG_CONFIG={pg_config}",
        *CMAKE_OPTIONS[1:],
    ]


def _make_build_command(build: Path, jobs: int | None) -> list[str]:
    return ["make", "-C", str(build), f"-j{max(1, jobs or 1)}"]


def _make_install_command(build: Path) -> list[str]:
    return ["make", "-C", str(build), "install"]


def _apt_install_command(packages: Sequence[str]) -> list[str]:
    return ["apt-get", "install", "-y", *packages]


def _cache_dir(env: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """`$FRAMEMETA_CACHE_DIR`, else `$XDG_CACHE_HOME/framemeta`, else `~/.cache/framemeta`."""
    env = os.environ if env is None else env
    if env.get(CACHE_DIR_ENV):
        return Path(env[CACHE_DIR_ENV])
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]) / "framemeta"
    return (home or Path.home()) / ".cache" / "framemeta"


def _build_key(timescaledb_version: str, pg_major: int) -> str:
    return f"timescaledb-{timescaledb_version}-pg{pg_major}"


def _not_root_message(packages: Sequence[str], actions: Sequence[str]) -> str:
    """Why we stop when not root, what would be installed and how to do it."""
    lines = [
        f"PostgreSQL >= {MIN_PG_MAJOR} with TimescaleDB is not installed, "
        "and installing it needs root. Nothing was changed.",
        "It would:",
        *(f"  - {action}" for action in actions),
    ]
    if packages:
        lines.append(f"apt packages to install: {' '.join(packages)}")
    lines.append(f"Run: {INSTALL_COMMAND}")
    if packages:
        lines.append(
            f"(or install the packages yourself: sudo {shlex.join(_apt_install_command(packages))})"
        )
    return "\n".join(lines)


def _failure_message(command: str, returncode: int, log_path: Path, tail: Sequence[str]) -> str:
    shown = "\n".join(f"    {line}" for line in tail) or "    (log is empty)"
    return (
        f"command failed with exit code {returncode}: {command}\n"
        f"full log: {log_path}\n"
        f"last {len(tail)} lines of the log:\n{shown}"
    )


def _log_tail(log_path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        data = log_path.read_bytes()
    except OSError:
        return []
    return data.decode("utf-8", errors="replace").splitlines()[-lines:]


def _lists_are_stale(lists_dir: Path, now: float, max_age_s: float = APT_LISTS_MAX_AGE_S) -> bool:
    """True when apt has no package lists or has not refreshed them for `max_age_s`."""
    try:
        if not any("_Packages" in entry.name for entry in lists_dir.iterdir()):
            return True
        # apt-get update writes through partial/ and renames into lists/, so
        # the directories' mtimes say when it last ran; file mtimes are the
        # server's Last-Modified and say nothing about that.
        updated = max(p.stat().st_mtime for p in (lists_dir, lists_dir / "partial") if p.exists())
    except OSError:
        return True
    return now - updated > max_age_s


# --------------------------------------------------------------------------
# Finding PostgreSQL and TimescaleDB (no side effects).


def _probe(pg_config: Path) -> _Postgres | None:
    """The server behind `pg_config`, or None when it is missing or client-only."""
    try:
        result = subprocess.run(
            [str(pg_config), "--version", "--bindir", "--pkglibdir", "--sharedir"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = result.stdout.splitlines()
    if len(lines) != 4:
        return None
    version, bindir, pkglibdir, sharedir = (line.strip() for line in lines)
    try:
        major = _parse_pg_major(version)
    except ProvisionError:
        return None
    # pg_config also comes with client-only packages; a server needs these.
    if not all((Path(bindir) / tool).is_file() for tool in ("postgres", "initdb", "pg_ctl")):
        return None
    return _Postgres(
        pg_config=pg_config,
        version=version,
        major=major,
        bindir=Path(bindir),
        pkglibdir=Path(pkglibdir),
        sharedir=Path(sharedir),
    )


def _debian_majors() -> list[int]:
    try:
        names = [entry.name for entry in DEBIAN_PG_ROOT.iterdir()]
    except OSError:
        return []
    return sorted((int(name) for name in names if name.isdigit()), reverse=True)


def _servers() -> list[_Postgres]:
    """PostgreSQL servers >= MIN_PG_MAJOR, newest first (only the override if set)."""
    override = os.environ.get(PG_CONFIG_ENV)
    if override:
        found = _probe(Path(override))
        return [found] if found is not None and found.major >= MIN_PG_MAJOR else []
    servers: list[_Postgres] = []
    for major in _debian_majors():
        if major < MIN_PG_MAJOR:
            continue
        found = _probe(DEBIAN_PG_ROOT / str(major) / "bin" / "pg_config")
        if found is not None:
            servers.append(found)
    return servers


def _timescaledb_version(pg: _Postgres) -> str | None:
    """TimescaleDB version installed in `pg`; None unless loader, library and SQL all exist."""
    try:
        control = (pg.extension_dir / "timescaledb.control").read_text(encoding="utf-8")
    except OSError:
        return None
    version = _parse_control_default_version(control)
    if version is None:
        return None
    # The loader (timescaledb.so) loads timescaledb-<version>.so; a tree with
    # only one of them, or without the install script, cannot CREATE EXTENSION.
    required = (
        pg.pkglibdir / "timescaledb.so",
        pg.pkglibdir / f"timescaledb-{version}.so",
        pg.extension_dir / f"timescaledb--{version}.sql",
    )
    return version if all(path.is_file() for path in required) else None


def _installation(pg: _Postgres, source: str) -> Installation | None:
    version = _timescaledb_version(pg)
    if version is None:
        return None
    return Installation(
        pg_bindir=pg.bindir, pg_major=pg.major, timescaledb_version=version, source=source
    )


def find_installation() -> Installation | None:
    """Return the newest PostgreSQL >= 15 that already has TimescaleDB installed, or None.

    Looks at `$FRAMEMETA_PG_CONFIG` if set, else at Debian's
    /usr/lib/postgresql/<major>/bin. No side effects, fast; raises nothing.
    """
    for pg in _servers():
        found = _installation(pg, "already-installed")
        if found is not None:
            return found
    return None


def _target_server() -> _Postgres | None:
    """The server to install into: the override, else the newest Debian one >= 15.

    Raises:
        ProvisionError: `$FRAMEMETA_PG_CONFIG` is set but unusable or too old.
    """
    override = os.environ.get(PG_CONFIG_ENV)
    if override:
        pg = _probe(Path(override))
        if pg is None:
            raise ProvisionError(
                f"{PG_CONFIG_ENV}={override} is not a working pg_config of a PostgreSQL server "
                "(its --bindir must hold postgres, initdb and pg_ctl)"
            )
        if pg.major < MIN_PG_MAJOR:
            raise ProvisionError(
                f"{PG_CONFIG_ENV}={override} is PostgreSQL {pg.major}; "
                f"framemeta needs {MIN_PG_MAJOR} or newer"
            )
        return pg
    servers = _servers()
    return servers[0] if servers else None


# --------------------------------------------------------------------------
# Read-only queries of apt and dpkg.


def _query(args: Sequence[str]) -> str:
    """stdout of a read-only query; empty when the tool is missing or fails."""
    try:
        result = subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            env={**os.environ, **_C_LOCALE},
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout


def _apt_candidate(package: str) -> str | None:
    return _parse_apt_candidate(_query(["apt-cache", "policy", package]))


def _default_pg_major() -> int | None:
    return _parse_default_pg_major(_query(["apt-cache", "depends", "postgresql"]))


def _missing_packages(packages: Sequence[str]) -> list[str]:
    output = _query(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\n", *packages])
    installed = _parse_installed_packages(output)
    return [package for package in packages if package not in installed]


def _apt_lists_dir() -> Path:
    output = _query(["apt-config", "shell", "LISTS", "Dir::State::lists/d"])
    match = re.match(r"LISTS=(.*)", output.strip())
    if match:
        words = shlex.split(match.group(1))
        if words:
            return Path(words[0])
    return Path("/var/lib/apt/lists")


def _build_packages(pg: _Postgres | None, major: int | None) -> list[str]:
    # Headers of a non-Debian server come with that server, not with apt.
    if pg is not None and not pg.debian_layout:
        return list(BUILD_TOOLS)
    return [f"postgresql-server-dev-{major if major is not None else '<major>'}", *BUILD_TOOLS]


# --------------------------------------------------------------------------
# The build cache.


def _cached_build(cache: Path, pg: _Postgres) -> _CachedBuild | None:
    """Newest complete build in the cache made against this very pg_config."""
    builds = cache / "builds"
    best: _CachedBuild | None = None
    try:
        entries = list(builds.glob(f"timescaledb-*-pg{pg.major}"))
    except OSError:
        return None
    for directory in entries:
        marker = _read_marker(directory)
        if marker is None or marker.get("pg_config") != str(pg.pg_config):
            continue
        version = str(marker.get("timescaledb_version", ""))
        candidate = _CachedBuild(directory=directory, timescaledb_version=version)
        if not candidate.build_dir.is_dir():
            continue
        if best is None or _version_key(version) > _version_key(best.timescaledb_version):
            best = candidate
    return best


def _read_marker(directory: Path) -> dict[str, object] | None:
    try:
        data = json.loads((directory / BUILD_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# --------------------------------------------------------------------------
# Running commands.


@attrs.define
class _Runner:
    log: TextIO
    log_path: Path
    progress: Callable[[str], None]

    def run(
        self,
        args: Sequence[str | Path],
        *,
        cwd: Path | None = None,
        shown: str | None = None,
        capture: bool = False,
    ) -> str:
        """Run `args`, output to the log (stdout returned instead when `capture`).

        Raises:
            ProvisionError: the command is missing or exits non-zero.
        """
        argv = [str(arg) for arg in args]
        command = shlex.join(argv)
        self.progress(f"    $ {shown or command}")
        self.log.write(f"\n$ {command}" + (f"  (in {cwd})" if cwd else "") + "\n")
        self.log.flush()
        env = {**os.environ, **_C_LOCALE, "DEBIAN_FRONTEND": "noninteractive"}
        started = time.monotonic()
        try:
            result = subprocess.run(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if capture else self.log,
                stderr=self.log,
                text=True,
                check=False,
            )
        except OSError as exc:
            raise ProvisionError(
                f"cannot run {command}: {exc}; framemeta installs TimescaleDB only on "
                f"Debian-like systems (apt, dpkg). Elsewhere install it yourself and set "
                f"{PG_CONFIG_ENV}."
            ) from exc
        elapsed = time.monotonic() - started
        self.log.write(f"# exit code {result.returncode} after {elapsed:.1f}s\n")
        self.log.flush()
        if result.returncode != 0:
            raise ProvisionError(
                _failure_message(
                    command, result.returncode, self.log_path, _log_tail(self.log_path)
                )
            )
        if elapsed >= 2:
            self.progress(f"      ({elapsed:.0f}s)")
        return result.stdout if capture else ""


@attrs.define
class _Apt:
    runner: _Runner
    updated: bool = False

    def update_if_stale(self) -> None:
        if self.updated or not _lists_are_stale(_apt_lists_dir(), time.time()):
            return
        self.runner.run(["apt-get", "update"])
        self.updated = True

    def install(self, packages: Sequence[str]) -> None:
        if packages:
            self.update_if_stale()
            self.runner.run(_apt_install_command(packages))


# --------------------------------------------------------------------------
# Provisioning.


@contextlib.contextmanager
def _locked(lock_path: Path, progress: Callable[[str], None]) -> Iterator[None]:
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"==> Waiting for another framemeta install to finish (lock {lock_path})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _plan_for_message(cache: Path) -> tuple[list[str], list[str]]:
    """apt packages and steps an install would take, worked out without changing anything."""
    pg = _target_server()
    packages: list[str] = []
    actions: list[str] = []
    major: int | None = pg.major if pg is not None else None
    debian = pg is None or pg.debian_layout
    if pg is None:
        major = _default_pg_major()
        packages += PG_PACKAGES
        actions.append(
            "install PostgreSQL"
            + (f" {major}" if major is not None else "")
            + " from the Debian archive"
        )
    binary = f"postgresql-{major}-timescaledb" if major is not None else None
    target = (
        f"{pg.pkglibdir} and {pg.extension_dir}" if pg is not None else "PostgreSQL's directories"
    )
    if debian and binary is not None and _apt_candidate(binary) is not None:
        packages.append(binary)
        actions.append(f"install TimescaleDB from the Debian package {binary}")
    elif pg is not None and (cached := _cached_build(cache, pg)) is not None:
        packages += _missing_packages(INSTALL_TOOLS)
        actions.append(
            f"install TimescaleDB from the build cached in {cached.directory} into {target}"
        )
    else:
        packages += _missing_packages(_build_packages(pg, major))
        actions.append(
            f"download Debian's {SOURCE_PACKAGE} source package ({SOURCE_SUITE}), "
            f"build it and install it into {target}"
        )
    return packages, actions


def ensure_timescaledb(progress: Callable[[str], None] = print) -> Installation:
    """Make PostgreSQL (>= 15) and TimescaleDB available; idempotent.

    Returns at once when `find_installation` finds them. Otherwise installs
    PostgreSQL with apt if needed, then TimescaleDB from Debian's binary
    package, from a cached earlier build, or by building Debian's source
    package. Concurrent calls wait for each other on a lock in the cache dir.

    Raises:
        ProvisionError: when not root and something must be installed (the
            message names the packages and the command to run; nothing is
            changed), when `$FRAMEMETA_PG_CONFIG` is unusable, or when a step
            fails (the message names the command, its exit code, the log file
            and the log's last lines).
    """
    found = find_installation()
    if found is not None:
        return found
    cache = _cache_dir()
    if os.geteuid() != 0:
        packages, actions = _plan_for_message(cache)
        raise ProvisionError(_not_root_message(packages, actions))
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / "lock", progress):
        # Whoever held the lock before us may have installed it meanwhile.
        found = find_installation()
        if found is not None:
            return found
        with _logged_runner(
            cache / "provision.log",
            f"PostgreSQL >= {MIN_PG_MAJOR} with TimescaleDB",
            progress,
        ) as runner:
            return _provision(cache, runner)


def find_pgbouncer() -> Path | None:
    """The pgbouncer program, if installed (Debian puts it in /usr/sbin)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    found = shutil.which("pgbouncer", path=search)
    return Path(found) if found else None


def ensure_pgbouncer(progress: Callable[[str], None] = print) -> Path:
    """Make pgbouncer available (Debian's package, for the tests that run
    through it); idempotent. Returns the program's path.

    Raises:
        ProvisionError: when not root and it is missing (the message gives
            the command), or when apt fails (the message names the log).
    """
    found = find_pgbouncer()
    if found is not None:
        return found
    if os.geteuid() != 0:
        raise ProvisionError(
            "pgbouncer is not installed; as root run: apt-get install -y pgbouncer"
        )
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / "lock", progress):
        found = find_pgbouncer()
        if found is not None:
            return found
        log_path = cache / "provision-pgbouncer.log"
        with _logged_runner(log_path, "pgbouncer from the Debian archive", progress) as runner:
            _Apt(runner).install(["pgbouncer"])
    found = find_pgbouncer()
    if found is None:
        raise ProvisionError(f"apt-get installed pgbouncer, but it is not on PATH; see {log_path}")
    return found


@contextlib.contextmanager
def _logged_runner(log_path: Path, what: str, progress: Callable[[str], None]) -> Iterator[_Runner]:
    """A runner whose commands' output goes to a fresh log file."""
    progress(f"==> Installing {what} (log: {log_path})")
    with log_path.open("w", encoding="utf-8") as log:
        log.write(f"# framemeta provisioning started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        yield _Runner(log=log, log_path=log_path, progress=progress)


def _provision(cache: Path, runner: _Runner) -> Installation:
    apt = _Apt(runner)
    pg = _target_server()
    if pg is None:
        runner.progress("==> Installing PostgreSQL from the Debian archive")
        apt.install(PG_PACKAGES)
        pg = _target_server()
        if pg is None:
            raise ProvisionError(
                f"installed {' '.join(PG_PACKAGES)}, but no PostgreSQL >= {MIN_PG_MAJOR} server is "
                f"in {DEBIAN_PG_ROOT}; this system's archive offers "
                f"PostgreSQL {_default_pg_major() or 'unknown'}"
            )
    runner.progress(f"==> PostgreSQL {pg.major} ({pg.bindir})")

    if pg.debian_layout:
        binary = f"postgresql-{pg.major}-timescaledb"
        apt.update_if_stale()
        if _apt_candidate(binary) is not None:
            runner.progress(f"==> Installing TimescaleDB from the Debian package {binary}")
            apt.install([binary])
            return _installed(pg, "debian-binary", f"apt-get install {binary}")
        runner.progress(f"==> The Debian archive has no {binary}; using Debian's source package")

    cached = _cached_build(cache, pg)
    if cached is not None:
        runner.progress(
            f"==> Installing TimescaleDB {cached.timescaledb_version} from the cached build "
            f"{cached.directory}"
        )
        apt.install(_missing_packages(INSTALL_TOOLS))
        runner.run(_make_install_command(cached.build_dir))
        return _installed(pg, "built-from-debian-source", "make install")
    return _build_from_source(cache, pg, apt, runner)


def _installed(pg: _Postgres, source: str, step: str) -> Installation:
    found = _installation(pg, source)
    if found is None:
        raise ProvisionError(
            f"{step} finished, but TimescaleDB is still not complete in {pg.pkglibdir} "
            f"and {pg.extension_dir} (need timescaledb.control, timescaledb.so and the "
            "versioned library and SQL script)"
        )
    return found


def _prepare_private_apt(cache: Path) -> Path:
    apt_dir = cache / "apt"
    for sub in ("lists/partial", "cache/archives/partial"):
        (apt_dir / sub).mkdir(parents=True, exist_ok=True)
    if not ARCHIVE_KEYRING.is_file():
        raise ProvisionError(
            f"{ARCHIVE_KEYRING} is missing; install the debian-archive-keyring package"
        )
    (apt_dir / "sources.list").write_text(
        _private_sources_line(_find_debian_uri()), encoding="utf-8"
    )
    return apt_dir


def _build_from_source(cache: Path, pg: _Postgres, apt: _Apt, runner: _Runner) -> Installation:
    missing = _missing_packages(_build_packages(pg, pg.major))
    if missing:
        runner.progress(f"==> Installing build tools: {' '.join(missing)}")
        apt.install(missing)

    runner.progress(f"==> Fetching the {SOURCE_PACKAGE} source index of Debian {SOURCE_SUITE}")
    apt_dir = _prepare_private_apt(cache)
    private = _private_apt_options(apt_dir)
    shown_prefix = f"apt-get [private config in {apt_dir}]"
    runner.run(["apt-get", *private, "update"], shown=f"{shown_prefix} update")
    showsrc = runner.run(
        ["apt-cache", *private, "showsrc", SOURCE_PACKAGE],
        shown=f"apt-cache [private config in {apt_dir}] showsrc {SOURCE_PACKAGE}",
        capture=True,
    )
    versions = _parse_showsrc_versions(showsrc)
    if not versions:
        raise ProvisionError(
            f"Debian {SOURCE_SUITE} offers no {SOURCE_PACKAGE} source package "
            f"(see {runner.log_path})"
        )
    debian_version = max(versions, key=_version_key)
    version = _upstream_version(debian_version)

    work = cache / "builds" / _build_key(version, pg.major)
    # A directory without a marker is an interrupted or foreign build.
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)

    runner.progress(f"==> Downloading {SOURCE_PACKAGE} {debian_version} source into {work}")
    runner.run(
        ["apt-get", *private, "source", "--download-only", f"{SOURCE_PACKAGE}={debian_version}"],
        cwd=work,
        shown=f"{shown_prefix} source --download-only {SOURCE_PACKAGE}={debian_version}",
    )
    dscs = sorted(work.glob(f"{SOURCE_PACKAGE}_*.dsc"))
    if len(dscs) != 1:
        raise ProvisionError(f"expected one {SOURCE_PACKAGE} .dsc in {work}, found {len(dscs)}")
    # The .dsc came through apt, which checked it against the signed index.
    runner.run(["dpkg-source", "-x", "--no-check", dscs[0].name, "src"], cwd=work)

    src = work / "src"
    build = src / "build"
    runner.progress(f"==> Building TimescaleDB {version} for PostgreSQL {pg.major}")
    runner.run(_cmake_configure_command(src, build, pg.pg_config))
    runner.run(_make_build_command(build, os.cpu_count()))
    marker = {
        "timescaledb_version": version,
        "debian_version": debian_version,
        "pg_major": pg.major,
        "pg_config": str(pg.pg_config),
        "pg_version": pg.version,
    }
    (work / BUILD_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")

    runner.progress(f"==> Installing TimescaleDB {version} into {pg.pkglibdir}")
    runner.run(_make_install_command(build))
    return _installed(pg, "built-from-debian-source", "make install")
