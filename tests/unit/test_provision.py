"""Unit tests for the pure parts of framemeta._provision: no root, no network, no apt."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import pytest

from framemeta import _provision as provision
from framemeta._provision import Installation, ProvisionError
from framemeta.errors import FramemetaError

# --------------------------------------------------------------------------
# Parsing


@pytest.mark.parametrize(
    ("text", "major"),
    [
        ("PostgreSQL 15.20 (Debian 15.20-0+deb12u1)", 15),
        ("PostgreSQL 17.4", 17),
        ("PostgreSQL 18beta1", 18),
        ("PostgreSQL 9.6.24", 9),
    ],
)
def test_parse_pg_major(text: str, major: int) -> None:
    assert provision._parse_pg_major(text) == major


def test_parse_pg_major_rejects_garbage() -> None:
    with pytest.raises(ProvisionError, match="PostgreSQL version"):
        provision._parse_pg_major("pg_config: command not found")


def test_parse_control_default_version() -> None:
    control = (
        "# timescaledb extension\n"
        "comment = 'Enables scalable inserts and complex queries for time-series data'\n"
        "default_version = '2.19.3'\n"
        "module_pathname = '$libdir/timescaledb-2.19.3'\n"
    )
    assert provision._parse_control_default_version(control) == "2.19.3"
    assert provision._parse_control_default_version("comment = 'x'\n") is None


POLICY_WITH_CANDIDATE = """\
postgresql-15-timescaledb:
  Installed: (none)
  Candidate: 2.19.3+dfsg-1
  Version table:
     2.19.3+dfsg-1 500
        500 http://mirror.example/debian trixie/main amd64 Packages
"""

POLICY_WITHOUT_CANDIDATE = """\
postgresql-15-timescaledb:
  Installed: (none)
  Candidate: (none)
  Version table:
"""


def test_parse_apt_candidate() -> None:
    assert provision._parse_apt_candidate(POLICY_WITH_CANDIDATE) == "2.19.3+dfsg-1"
    assert provision._parse_apt_candidate(POLICY_WITHOUT_CANDIDATE) is None
    # apt-cache prints nothing on stdout for a package it has never heard of.
    assert provision._parse_apt_candidate("") is None


def test_parse_default_pg_major() -> None:
    output = "postgresql\n  Depends: postgresql-15\n  Suggests: postgresql-doc\n"
    assert provision._parse_default_pg_major(output) == 15
    assert provision._parse_default_pg_major("postgresql\n  Suggests: postgresql-doc\n") is None


def test_parse_showsrc_versions_and_upstream_version() -> None:
    output = (
        "Package: timescaledb\nBinary: postgresql-17-timescaledb\nVersion: 2.19.3+dfsg-1\n\n"
        "Package: timescaledb\nVersion: 2.20.0+dfsg-2\n"
    )
    versions = provision._parse_showsrc_versions(output)
    assert versions == ["2.19.3+dfsg-1", "2.20.0+dfsg-2"]
    assert max(versions, key=provision._version_key) == "2.20.0+dfsg-2"
    assert provision._upstream_version("2.19.3+dfsg-1") == "2.19.3"
    assert provision._upstream_version("1:2.19.3-1") == "2.19.3"
    assert provision._upstream_version("2.20.0~rc1-1") == "2.20.0"
    with pytest.raises(ProvisionError):
        provision._upstream_version("+dfsg")


def test_version_key_orders_numerically() -> None:
    assert provision._version_key("2.10.0") > provision._version_key("2.9.3")


def test_parse_installed_packages() -> None:
    output = "cmake ii \ngcc ii \nmake rc \ndpkg-dev un \n"
    assert provision._parse_installed_packages(output) == {"cmake", "gcc"}


DEB822 = """\
Types: deb
# a comment
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: http://mirror.example/debian http://other.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def test_parse_deb822_takes_first_debian_archive() -> None:
    assert provision._parse_deb822_debian_uri(DEB822) == "http://mirror.example/debian"


def test_parse_deb822_skips_disabled_stanzas() -> None:
    text = "Enabled: no\nURIs: http://off.example/debian\n\nURIs: https://on.example/debian/\n"
    assert provision._parse_deb822_debian_uri(text) == "https://on.example/debian/"
    assert provision._parse_deb822_debian_uri("URIs: http://x.example/ubuntu\n") is None


def test_parse_sources_list() -> None:
    text = (
        "# deb http://commented.example/debian bookworm main\n"
        "deb http://mirror.example/debian-security bookworm-security main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n"
        "deb http://later.example/debian bookworm main\n"
    )
    assert provision._parse_sources_list_debian_uri(text) == "http://mirror.example/debian"
    assert (
        provision._parse_sources_list_debian_uri("deb http://x.example/ubuntu jammy main") is None
    )


def test_find_debian_uri_prefers_debian_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb http://list.example/debian bookworm main\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    assert provision._find_debian_uri(tmp_path) == "http://mirror.example/debian"


def test_find_debian_uri_falls_back_to_sources_list(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://list.example/debian bookworm main\n")
    assert provision._find_debian_uri(tmp_path) == "http://list.example/debian"


def test_find_debian_uri_without_any(tmp_path: Path) -> None:
    with pytest.raises(ProvisionError, match="no Debian archive URI"):
        provision._find_debian_uri(tmp_path)


# --------------------------------------------------------------------------
# Command construction


def test_private_sources_line() -> None:
    keyring = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
    line = provision._private_sources_line("http://mirror.example/debian", keyring)
    assert line == f"deb-src [signed-by={keyring}] http://mirror.example/debian trixie main\n"
    assert provision.SOURCE_SUITE == "trixie"


def test_private_apt_options_stay_inside_the_private_dir(tmp_path: Path) -> None:
    options = provision._private_apt_options(tmp_path)
    assert options == [
        "-o",
        f"Dir::Etc::SourceList={tmp_path}/sources.list",
        "-o",
        "Dir::Etc::SourceParts=/dev/null",
        "-o",
        f"Dir::State::Lists={tmp_path}/lists",
        "-o",
        f"Dir::Cache={tmp_path}/cache",
    ]


def test_cmake_configure_command() -> None:
    command = provision._cmake_configure_command(
        Path("/w/src"), Path("/w/src/build"), Path("/opt/pg/bin/pg_config")
    )
    assert command == [
        "cmake",
        "-S",
        "/w/src",
        "-B",
        "/w/src/build",
        "-DCMAKE_BUILD_TYPE=Release",
        "-DPG_CONFIG=/opt/pg/bin/pg_config",
        "-DAPACHE_ONLY=1",
        "-DREGRESS_CHECKS=OFF",
        "-DTAP_CHECKS=OFF",
        "-DWARNINGS_AS_ERRORS=OFF",
        "-DLINTER=OFF",
        "-DSEND_TELEMETRY_DEFAULT=OFF",
        "-DUSE_TELEMETRY=OFF",
        "-DUSE_OPENSSL=OFF",
    ]


def test_make_commands() -> None:
    build = Path("/w/src/build")
    assert provision._make_build_command(build, 8) == ["make", "-C", "/w/src/build", "-j8"]
    assert provision._make_build_command(build, None) == ["make", "-C", "/w/src/build", "-j1"]
    assert provision._make_install_command(build) == ["make", "-C", "/w/src/build", "install"]


def test_apt_install_command() -> None:
    assert provision._apt_install_command(["postgresql", "postgresql-contrib"]) == [
        "apt-get",
        "install",
        "-y",
        "postgresql",
        "postgresql-contrib",
    ]


def test_build_packages() -> None:
    assert provision._build_packages(None, 15) == [
        "postgresql-server-dev-15",
        "cmake",
        "gcc",
        "make",
        "dpkg-dev",
    ]


def test_build_key() -> None:
    assert provision._build_key("2.19.3", 15) == "timescaledb-2.19.3-pg15"


def test_cache_dir_precedence(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert provision._cache_dir({}, home) == home / ".cache" / "framemeta"
    assert provision._cache_dir({"XDG_CACHE_HOME": "/x"}, home) == Path("/x/framemeta")
    env = {"XDG_CACHE_HOME": "/x", "FRAMEMETA_CACHE_DIR": "/y"}
    assert provision._cache_dir(env, home) == Path("/y")


def test_lists_are_stale(tmp_path: Path) -> None:
    (tmp_path / "partial").mkdir()
    now = time.time()
    assert provision._lists_are_stale(tmp_path, now)  # no package lists at all
    (tmp_path / "mirror_dists_bookworm_main_binary-amd64_Packages.lz4").write_text("x")
    assert not provision._lists_are_stale(tmp_path, time.time())
    assert provision._lists_are_stale(tmp_path, time.time() + 2 * 24 * 3600)
    assert provision._lists_are_stale(tmp_path / "missing", now)


# --------------------------------------------------------------------------
# Messages and errors


def test_provision_error_is_a_framemeta_error() -> None:
    assert issubclass(ProvisionError, FramemetaError)


def test_not_root_message_names_packages_and_command() -> None:
    message = provision._not_root_message(
        ["postgresql", "postgresql-contrib", "postgresql-15-timescaledb"],
        ["install PostgreSQL 15 from the Debian archive"],
    )
    assert "needs root" in message
    assert "Nothing was changed" in message
    assert "sudo framemeta server install" in message
    assert "postgresql postgresql-contrib postgresql-15-timescaledb" in message
    assert (
        "sudo apt-get install -y postgresql postgresql-contrib postgresql-15-timescaledb" in message
    )


def test_not_root_message_without_packages() -> None:
    message = provision._not_root_message([], ["install TimescaleDB from the cached build"])
    assert "sudo framemeta server install" in message
    assert "apt-get" not in message


def test_failed_command_names_command_exit_code_and_log(tmp_path: Path) -> None:
    log_path = tmp_path / "provision.log"
    lines: list[str] = []
    script = "import sys\nfor i in range(30): print('line', i)\nsys.exit(3)"
    with log_path.open("w") as log:
        runner = provision._Runner(log=log, log_path=log_path, progress=lines.append)
        with pytest.raises(ProvisionError) as caught:
            runner.run([sys.executable, "-c", script])
    message = str(caught.value)
    assert "exit code 3" in message
    assert str(log_path) in message
    assert "line 29" in message
    assert "line 5\n" not in message  # only the tail, not the whole log
    assert lines[0].startswith("    $ ")


def test_missing_tool_is_a_provision_error(tmp_path: Path) -> None:
    log_path = tmp_path / "provision.log"
    with log_path.open("w") as log:
        runner = provision._Runner(log=log, log_path=log_path, progress=lambda _: None)
        with pytest.raises(ProvisionError, match="cannot run"):
            runner.run([str(tmp_path / "no-such-tool")])


def test_runner_captures_stdout(tmp_path: Path) -> None:
    log_path = tmp_path / "provision.log"
    with log_path.open("w") as log:
        runner = provision._Runner(log=log, log_path=log_path, progress=lambda _: None)
        out = runner.run([sys.executable, "-c", "print('hello')"], capture=True)
    assert out == "hello\n"


# --------------------------------------------------------------------------
# Finding an installation through a fake pg_config


def _fake_server(root: Path, major: int = 15, timescaledb: str | None = None) -> Path:
    """A fake PostgreSQL tree whose pg_config is a tiny script."""
    bindir = root / "bin"
    libdir = root / "lib"
    sharedir = root / "share"
    for directory in (bindir, libdir, sharedir / "extension"):
        directory.mkdir(parents=True)
    for tool in ("postgres", "initdb", "pg_ctl"):
        (bindir / tool).write_text("")
    answers = {
        "--version": f"PostgreSQL {major}.1",
        "--bindir": str(bindir),
        "--pkglibdir": str(libdir),
        "--sharedir": str(sharedir),
    }
    pg_config = bindir / "pg_config"
    pg_config.write_text(
        f"#!{sys.executable}\nimport sys\nanswers = {answers!r}\n"
        "print('\\n'.join(answers[arg] for arg in sys.argv[1:]))\n"
    )
    pg_config.chmod(pg_config.stat().st_mode | stat.S_IXUSR)
    if timescaledb is not None:
        (libdir / "timescaledb.so").write_text("")
        (libdir / f"timescaledb-{timescaledb}.so").write_text("")
        ext = sharedir / "extension"
        (ext / "timescaledb.control").write_text(f"default_version = '{timescaledb}'\n")
        (ext / f"timescaledb--{timescaledb}.sql").write_text("")
    return pg_config


def test_find_installation_with_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pg_config = _fake_server(tmp_path, timescaledb="2.19.3")
    monkeypatch.setenv("FRAMEMETA_PG_CONFIG", str(pg_config))
    assert provision.find_installation() == Installation(
        pg_bindir=tmp_path / "bin",
        pg_major=15,
        timescaledb_version="2.19.3",
        source="already-installed",
    )
    # ensure_timescaledb takes the same fast path and needs no root for it.
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert provision.ensure_timescaledb(progress=lambda _: None).source == "already-installed"


def test_find_installation_needs_the_versioned_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_config = _fake_server(tmp_path, timescaledb="2.19.3")
    (tmp_path / "lib" / "timescaledb-2.19.3.so").unlink()
    monkeypatch.setenv("FRAMEMETA_PG_CONFIG", str(pg_config))
    assert provision.find_installation() is None


def test_find_installation_ignores_old_postgres(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_config = _fake_server(tmp_path, major=14, timescaledb="2.19.3")
    monkeypatch.setenv("FRAMEMETA_PG_CONFIG", str(pg_config))
    assert provision.find_installation() is None


def test_find_installation_with_broken_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAMEMETA_PG_CONFIG", str(tmp_path / "nope"))
    assert provision.find_installation() is None


def test_not_root_raises_before_changing_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_config = _fake_server(tmp_path / "pg")
    cache = tmp_path / "cache"
    monkeypatch.setenv("FRAMEMETA_PG_CONFIG", str(pg_config))
    monkeypatch.setenv("FRAMEMETA_CACHE_DIR", str(cache))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(provision, "_missing_packages", lambda packages: list(packages))
    with pytest.raises(ProvisionError) as caught:
        provision.ensure_timescaledb(progress=lambda _: None)
    message = str(caught.value)
    assert "needs root" in message
    assert "sudo framemeta server install" in message
    # A non-Debian server brings its own headers: only the build tools are named.
    assert "sudo apt-get install -y cmake gcc make dpkg-dev" in message
    assert "server-dev" not in message
    assert str(tmp_path / "pg" / "lib") in message
    assert not cache.exists()


def test_override_too_old_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pg_config = _fake_server(tmp_path, major=14)
    monkeypatch.setenv("FRAMEMETA_PG_CONFIG", str(pg_config))
    monkeypatch.setenv("FRAMEMETA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ProvisionError, match="PostgreSQL 14"):
        provision.ensure_timescaledb(progress=lambda _: None)


def test_cached_build_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pg_config = _fake_server(tmp_path / "pg")
    pg = provision._probe(pg_config)
    assert pg is not None
    cache = tmp_path / "cache"
    assert provision._cached_build(cache, pg) is None
    for version in ("2.9.0", "2.19.3"):
        work = cache / "builds" / provision._build_key(version, 15)
        (work / "src" / "build").mkdir(parents=True)
        marker = f'{{"timescaledb_version": "{version}", "pg_config": "{pg_config}"}}'
        (work / provision.BUILD_MARKER).write_text(marker)
    # Interrupted build: no marker, so it must not count.
    (cache / "builds" / "timescaledb-2.99.0-pg15" / "src" / "build").mkdir(parents=True)
    found = provision._cached_build(cache, pg)
    assert found is not None
    assert found.timescaledb_version == "2.19.3"
    assert found.build_dir == cache / "builds" / "timescaledb-2.19.3-pg15" / "src" / "build"
