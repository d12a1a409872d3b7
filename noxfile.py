"""Developer tasks; each session installs what it needs into its own virtualenv.

nox -s tests    the test suite against a real TimescaleDB (installed if missing)
nox -s lint     ruff and mypy --strict
nox -s bench    benchmarks, compared with the saved baseline (fails on regression)
nox -s storage  bytes per raw and rollup row, and compression (community edition)
nox -s demo     a persistent embedded server with sample data, then its status
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

BASELINE_DIR = "benchmarks/baseline"


def _install_server(session: nox.Session, *extra: str) -> None:
    # Provisioning needs root for apt; it is a no-op in well under a second
    # when PostgreSQL and TimescaleDB are already installed.
    session.run("framemeta", "server", "install", *extra)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite against a real PostgreSQL + TimescaleDB."""
    session.install(".[test]")
    _install_server(session, "--pgbouncer")
    session.run("pytest", "tests", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format check) and mypy --strict."""
    session.install(".[test,lint]", "nox")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks side by side with their baselines; fails on a regression.

    ``nox -s bench -- --benchmark-save=baseline`` records a new baseline.
    """
    session.install(".[test,bench]")
    _install_server(session)
    args = list(session.posargs)
    saving = any(arg.startswith(("--benchmark-save", "--benchmark-autosave")) for arg in args)
    run_json = f"{session.create_tmp()}/run.json"
    if not saving:
        args += ["--benchmark-compare", f"--benchmark-json={run_json}"]
    session.run(
        "pytest",
        "benchmarks",
        "--benchmark-enable",
        f"--benchmark-storage=file://{BASELINE_DIR}",
        "--benchmark-columns=min,median,mean,stddev,rounds",
        *args,
    )
    if not saving:
        # Each benchmark against the baseline relative to a reference measured
        # beside it, not absolutely: this machine's speed swings (benchmarks/gate.py).
        session.run(
            "python",
            "-m",
            "benchmarks.gate",
            run_json,
            f"--baseline-dir={BASELINE_DIR}",
            "--confirm",
        )


@nox.session
def storage(session: nox.Session) -> None:
    """Measure storage per row (docs/capacity-planning.md); ``-- --days 7``
    for a longer run, ``-- --dsn ...`` for a community-edition server."""
    session.install(".[test,bench]")
    _install_server(session)
    session.run("python", "-m", "benchmarks.storage", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Start the persistent demo server, migrate, write frames, print status."""
    session.install(".")
    _install_server(session)
    session.run("framemeta", "demo", *session.posargs)
