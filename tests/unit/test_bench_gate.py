"""The benchmark regression gate judges each benchmark relative to the
reference measured beside it, so a machine that is slower for a while does
not fail it and a slower benchmark does."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from benchmarks.gate import (
    REFERENCE_KEY,
    judge,
    main,
    newest_baseline,
    rerun_ids,
    unmatched,
)

MACHINE = {"system": "Linux", "python_implementation": "CPython", "python_version": "3.11.7"}


def _report(
    medians: dict[str, float], references: dict[str, float] | None = None
) -> dict[str, Any]:
    references = references or {}
    return {
        "machine_info": MACHINE,
        "benchmarks": [
            {
                "name": name,
                "stats": {"median": median},
                "extra_info": {REFERENCE_KEY: references[name]} if name in references else {},
            }
            for name, median in medians.items()
        ],
    }


COPY = "test_bench_ingest_a_server_side_copy_from_file"
WRITER = "test_bench_ingest_d_metadata_writer"
QUERY = "test_stats_of_a_week_of_every_camera_by_hour"
COPY_PATH = "test_bench_path_fast_copy_into_the_hypertable"
BASELINE = _report({COPY: 1.0, WRITER: 3.0, QUERY: 10.0, COPY_PATH: 5.0}, {QUERY: 0.5})


def _verdicts(run: dict[str, Any]) -> dict[str, tuple[float, bool]]:
    return {v.name: (round(v.change, 3), v.failed) for v in judge(BASELINE, run)}


def test_a_machine_twice_as_slow_for_a_while_is_not_a_regression() -> None:
    run = _report({COPY: 2.0, WRITER: 6.2, QUERY: 21.0, COPY_PATH: 5.5}, {QUERY: 1.0})

    assert _verdicts(run) == {
        WRITER: (1.033, False),
        QUERY: (1.05, False),
        COPY_PATH: (1.1, False),  # no reference: as it is
    }


def test_a_benchmark_slower_than_its_reference_fails() -> None:
    run = _report({COPY: 1.0, WRITER: 4.5, QUERY: 10.0, COPY_PATH: 7.0}, {QUERY: 0.35})

    assert _verdicts(run) == {
        WRITER: (1.5, True),
        QUERY: (1.429, True),  # as fast as before while its reference got faster
        COPY_PATH: (1.4, True),
    }


def test_benchmarks_missing_from_either_report_are_listed_not_judged() -> None:
    run = _report({WRITER: 3.0, "test_new": 1.0})

    assert _verdicts(run) == {WRITER: (1.0, False)}  # its reference is missing: as it is
    assert unmatched(BASELINE, run) == ([COPY, QUERY, COPY_PATH], ["test_new"])


def test_main_reads_the_newest_baseline_and_exits_1_on_a_regression(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "Linux-CPython-3.11-64bit"
    folder.mkdir()
    (folder / "0001_baseline.json").write_text(json.dumps(_report({WRITER: 1.0})))
    (folder / "0002_baseline.json").write_text(json.dumps(BASELINE))
    run_path = tmp_path / "run.json"
    run_path.write_text(json.dumps(_report({COPY: 1.0, WRITER: 4.5})))

    assert newest_baseline(tmp_path, _report({})).name == "0002_baseline.json"
    assert main([str(run_path), f"--baseline-dir={tmp_path}"]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    assert main([str(run_path), f"--baseline-dir={tmp_path}", "--tolerance=0.6"]) == 0


def test_main_fails_when_nothing_could_be_judged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "Linux-CPython-3.11-64bit"
    folder.mkdir()
    (folder / "0001_baseline.json").write_text(json.dumps(BASELINE))
    run_path = tmp_path / "run.json"
    run_path.write_text(json.dumps(_report({"test_renamed": 1.0})))

    assert main([str(run_path), f"--baseline-dir={tmp_path}"]) == 1
    out = capsys.readouterr().out
    assert "nothing was judged" in out
    assert "test_renamed" in out
    assert "not in this run" in out


def test_the_failed_are_timed_again_with_what_they_are_judged_against() -> None:
    run = _report({COPY: 1.0, WRITER: 4.5, QUERY: 10.0, COPY_PATH: 7.0}, {QUERY: 0.35})
    for bench in run["benchmarks"]:
        bench["fullname"] = f"benchmarks/test_x.py::{bench['name']}"

    assert rerun_ids(run, [WRITER, QUERY]) == [
        f"benchmarks/test_x.py::{COPY}",  # the writer's reference
        f"benchmarks/test_x.py::{WRITER}",
        f"benchmarks/test_x.py::{QUERY}",  # carries its own
    ]


@pytest.mark.parametrize(
    ("second", "code"),
    [
        ({COPY: 1.0, WRITER: 3.3, QUERY: 10.0}, 0),  # a slow phase: within the tolerance
        ({COPY: 1.0, WRITER: 4.4, QUERY: 10.0}, 1),  # the writer again: a regression
        ({COPY: 1.0, QUERY: 10.0}, 1),  # the writer did not run again: still failed
        (None, 1),  # no report at all
    ],
)
def test_confirm_fails_only_what_fails_twice(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    second: dict[str, float] | None,
    code: int,
) -> None:
    folder = tmp_path / "Linux-CPython-3.11-64bit"
    folder.mkdir()
    (folder / "0001_baseline.json").write_text(json.dumps(BASELINE))
    run_path = tmp_path / "run.json"
    run_path.write_text(json.dumps(_report({COPY: 1.0, WRITER: 4.5, QUERY: 11.0}, {QUERY: 0.5})))
    asked: list[tuple[list[str], Path]] = []

    def rerun(ids: Sequence[str], report: Path) -> Mapping[str, Any] | None:
        asked.append((list(ids), report))
        return None if second is None else _report(second, {QUERY: 0.5})

    assert main([str(run_path), f"--baseline-dir={tmp_path}", "--confirm"], rerun) == code
    assert asked == [([COPY, WRITER], tmp_path / "run.confirm.json")]  # the query passed
    out = capsys.readouterr().out
    assert ("1 regression(s)" in out) == (code == 1)
    # Without --confirm, the first run's verdict stands.
    assert main([str(run_path), f"--baseline-dir={tmp_path}"], rerun) == 1
    assert len(asked) == 1
