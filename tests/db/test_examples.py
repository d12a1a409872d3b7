"""The examples run as a user would run them, against a real server."""

from __future__ import annotations

import runpy
from pathlib import Path

import psycopg
import pytest

from tests.frames import refresh_rollups

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_build_records_example_runs() -> None:
    runpy.run_path(str(EXAMPLES / "build_records.py"), run_name="__main__")


def test_ingest_camera_example_stores_every_frame(
    db_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAMEMETA_DSN", db_dsn)
    monkeypatch.chdir(tmp_path)
    example = runpy.run_path(str(EXAMPLES / "ingest_camera.py"))

    example["main"](frames=300, fps=10_000.0)

    with psycopg.connect(db_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM frame_metadata WHERE camera_id = 'gate-1'")
        assert row.fetchone() == (300,)


def test_dashboard_example_prints_answers_and_plans(
    db_dsn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FRAMEMETA_DSN", db_dsn)
    monkeypatch.chdir(tmp_path)
    ingest = runpy.run_path(str(EXAMPLES / "ingest_camera.py"))
    ingest["main"](frames=300, fps=10_000.0)
    refresh_rollups(db_dsn)

    runpy.run_path(str(EXAMPLES / "dashboard_queries.py"), run_name="__main__")

    printed = capsys.readouterr().out
    assert "1 camera(s)" in printed
    assert "latest gate-1 #299" in printed
    assert "resolution=auto" in printed
    assert "1m " in printed
