"""The regression gate of ``nox -s bench``: this run's medians against the
saved baseline's, each divided by a reference measured beside it in the
same run.

This machine's speed swings up to 2x from one minute to the next (README,
"Measured"; docs/measurements.md), so an absolute median says more about
the minute than about the code. A benchmark is therefore judged by how
it moved relative to its reference, a workload that is not framemeta's
code and ran at the same time:

- each query benchmark: a bare psycopg query, called between its rounds
  (``extra_info["reference_median_s"]``);
- the streaming benchmarks: the bare ``fetchall()`` they alternate with;
- the record benchmarks: the unvalidated attrs floor, called before each
  of their calls;
- the writer's ingest: the server's own ``COPY FROM`` a file;
- the rollup cost: a bare COPY into a table without the trigger.

Other benchmarks (the copy paths, the write latency) have no such twin and
are compared as they are. References themselves are not judged.

``python -m benchmarks.gate RUN.json [--baseline-dir DIR] [--tolerance 0.35]
[--confirm]`` prints one line per benchmark, and exits 1 when one is slower
than its baseline by more than the tolerance, relative to its reference, or
when nothing could be judged. Benchmarks in only one of the two reports are
listed, not failed (``pytest -k`` runs a few).

With ``--confirm`` (as ``nox -s bench`` runs it), the benchmarks over the
tolerance are timed once more, in a pytest run of their own with the
benchmarks they are judged against, and fail the gate only if they are over
it again. A slow phase of this machine lasts minutes and strikes benchmarks
at random; a regression in framemeta's code is there in both runs. Full runs
with no code changed have flagged one to four benchmarks at 1.36-1.65x
(docs/measurements.md, "The machine, and the regression gate").
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

TOLERANCE: Final = 0.35
"""How much slower than the baseline, relative to its reference, fails:
medians over many rounds still move by 10-20 % between runs."""
REFERENCE_KEY: Final = "reference_median_s"
"""``extra_info`` key of a reference measured inside the benchmark itself."""

_FLOOR: Final = "test_bench_record_floor_unvalidated_attrs"
_SERVER_COPY: Final = "test_bench_ingest_a_server_side_copy_from_file"
_BARE_COPY: Final = (
    "test_bench_ingest_with_and_without_the_rollup_trigger[bare-copy-without-rollups]"
)
REFERENCES: Final[Mapping[str, str]] = {
    "test_bench_ingest_d_metadata_writer": _SERVER_COPY,
    "test_bench_ingest_with_and_without_the_rollup_trigger[writer-without-rollups]": _BARE_COPY,
    "test_bench_ingest_with_and_without_the_rollup_trigger[writer-with-rollups]": _BARE_COPY,
    "test_bench_ingest_with_and_without_the_rollup_trigger[bare-copy-with-rollups]": _BARE_COPY,
}
"""Benchmarks judged against another benchmark of the same run."""
NOT_JUDGED: Final = frozenset(
    {
        _FLOOR,
        _SERVER_COPY,
        _BARE_COPY,
        "test_bench_ingest_b_asyncpg_copy_records",
        "test_bench_ingest_c_psycopg_executemany",
    }
)
"""References and other code that is not framemeta's."""


class Reference:
    """A reference workload, timed call by call beside a benchmark's rounds
    (call it from the ``setup`` of ``benchmark.pedantic``)."""

    def __init__(self, call: Callable[[], object]) -> None:
        self._call = call
        self.times: list[float] = []
        """Each call's duration, in seconds."""

    def __call__(self) -> None:
        started = time.perf_counter()
        self._call()
        self.times.append(time.perf_counter() - started)

    def median(self, *, skip: int = 0) -> float:
        """The median duration, leaving out the first ``skip`` calls (the
        warm-up rounds, whose ``setup`` runs too)."""
        return statistics.median(self.times[skip:])

    def record(self, benchmark: Any, *, skip: int = 0) -> None:
        """Store the median where `judge` finds it: the benchmark's
        ``extra_info``."""
        benchmark.extra_info[REFERENCE_KEY] = self.median(skip=skip)


@attrs.frozen
class Verdict:
    """One benchmark of the run against the baseline."""

    name: str
    baseline_s: float
    run_s: float
    reference_change: float | None
    """How the reference moved (run / baseline); None: compared as it is."""
    change: float
    """The benchmark's own change, divided by the reference's."""
    failed: bool

    def __str__(self) -> str:
        moved = "as it is"
        if self.reference_change is not None:
            moved = f"reference {self.reference_change:5.2f}x"
        verdict = "REGRESSION" if self.failed else "ok"
        return (
            f"{self.name[:72]:<72} {self.baseline_s * 1e3:11.3f} -> {self.run_s * 1e3:11.3f} ms"
            f"  {moved:>16}  relative {self.change:5.2f}x  {verdict}"
        )


def _medians(report: Mapping[str, Any]) -> dict[str, tuple[float, float | None]]:
    """Each benchmark's median and its own reference's median, in seconds."""
    return {
        bench["name"]: (bench["stats"]["median"], bench.get("extra_info", {}).get(REFERENCE_KEY))
        for bench in report["benchmarks"]
    }


def unmatched(baseline: Mapping[str, Any], run: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The benchmarks `judge` leaves out: those of the baseline missing from
    the run, and those of the run that the baseline does not have."""
    before, now = _medians(baseline), _medians(run)
    return [name for name in before if name not in now], [
        name for name in now if name not in before
    ]


def judge(
    baseline: Mapping[str, Any], run: Mapping[str, Any], tolerance: float = TOLERANCE
) -> list[Verdict]:
    """A verdict for every benchmark in both reports (pytest-benchmark JSON)
    that is framemeta's code (see `unmatched` for the others)."""
    before, now = _medians(baseline), _medians(run)
    verdicts = []
    for name, (run_s, run_reference) in now.items():
        if name in NOT_JUDGED or name not in before:
            continue
        baseline_s, baseline_reference = before[name]
        reference_change: float | None = None
        if run_reference is not None and baseline_reference is not None:
            reference_change = run_reference / baseline_reference
        elif name in REFERENCES and REFERENCES[name] in now and REFERENCES[name] in before:
            reference_change = now[REFERENCES[name]][0] / before[REFERENCES[name]][0]
        change = run_s / baseline_s / (reference_change or 1.0)
        verdicts.append(
            Verdict(name, baseline_s, run_s, reference_change, change, change > 1 + tolerance)
        )
    return verdicts


def rerun_ids(run: Mapping[str, Any], failed: Sequence[str]) -> list[str]:
    """The pytest node ids that time the benchmarks named ``failed`` again,
    with the benchmarks they are judged against (`REFERENCES`), in the
    run's order."""
    wanted = set(failed) | {REFERENCES[name] for name in failed if name in REFERENCES}
    return [
        bench.get("fullname", bench["name"])
        for bench in run["benchmarks"]
        if bench["name"] in wanted
    ]


def _pytest_rerun(ids: Sequence[str], report: Path) -> Mapping[str, Any] | None:
    """Run the benchmarks ``ids`` in a pytest of their own; their
    pytest-benchmark report, or None when pytest wrote none."""
    report.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", *ids, "--benchmark-enable"]
    subprocess.run([*command, f"--benchmark-json={report}", "-q"], check=False)
    return json.loads(report.read_text()) if report.exists() else None


def confirm(
    baseline: Mapping[str, Any],
    second: Mapping[str, Any] | None,
    failed: Sequence[str],
    tolerance: float = TOLERANCE,
) -> list[Verdict | str]:
    """The second run's verdict on each benchmark of ``failed``, or its
    name alone where the second run has none (it still fails)."""
    again = (
        {verdict.name: verdict for verdict in judge(baseline, second, tolerance)} if second else {}
    )
    return [again.get(name, name) for name in failed]


def newest_baseline(directory: Path, run: Mapping[str, Any]) -> Path:
    """The newest saved file for this run's machine (pytest-benchmark's
    folder naming); raises FileNotFoundError when there is none."""
    info = run["machine_info"]
    bits = "64bit" if sys.maxsize > 2**32 else "32bit"
    version = ".".join(info["python_version"].split(".")[:2])
    folder = directory / f"{info['system']}-{info['python_implementation']}-{version}-{bits}"
    saved = sorted(folder.glob("[0-9][0-9][0-9][0-9]_*.json"))
    if not saved:
        raise FileNotFoundError(f"no saved baseline in {folder}")
    return saved[-1]


def main(
    argv: Sequence[str] | None = None,
    rerun: Callable[[Sequence[str], Path], Mapping[str, Any] | None] = _pytest_rerun,
) -> int:
    """The gate's command line; ``rerun`` times benchmarks again for
    ``--confirm`` (node ids, the report's path) and returns their report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gate", description=__doc__)
    parser.add_argument("run", type=Path, help="this run's --benchmark-json file")
    parser.add_argument("--baseline-dir", type=Path, default=Path("benchmarks/baseline"))
    parser.add_argument("--tolerance", type=float, default=TOLERANCE)
    parser.add_argument(
        "--confirm", action="store_true", help="time the failed benchmarks again before failing"
    )
    args = parser.parse_args(argv)
    run = json.loads(args.run.read_text())
    baseline_path = newest_baseline(args.baseline_dir, run)
    baseline = json.loads(baseline_path.read_text())
    verdicts = judge(baseline, run, args.tolerance)
    print(f"regression gate: against {baseline_path.name}, fails above {1 + args.tolerance:.2f}x")
    for verdict in verdicts:
        print(verdict)
        if verdict.reference_change is not None and verdict.reference_change > 1 + args.tolerance:
            # A reference shares the server and the schema: a slower index
            # or trigger slows both. Not a failure, but worth a look.
            print(f"  its reference ran {verdict.reference_change:.2f}x as long: check it")
    missing, new = unmatched(baseline, run)
    for name in missing:
        print(f"{name[:72]:<72} not in this run")
    for name in new:
        print(f"{name[:72]:<72} new: no baseline yet")
    failed = [verdict.name for verdict in verdicts if verdict.failed]
    if not verdicts:
        print("no benchmark of this run is in the baseline: nothing was judged")
        return 1
    if failed and args.confirm:
        print(f"{len(failed)} over the tolerance; timing them again: {', '.join(failed)}")
        second = rerun(rerun_ids(run, failed), args.run.with_name(args.run.stem + ".confirm.json"))
        print("regression gate, second run:")
        passed = []
        for outcome in confirm(baseline, second, failed, args.tolerance):
            if isinstance(outcome, str):
                print(f"{outcome[:72]:<72} not timed again")
                continue
            print(outcome)
            if not outcome.failed:
                passed.append(outcome.name)
        if passed:
            print(f"within the tolerance the second time, not failed: {', '.join(passed)}")
        failed = [name for name in failed if name not in passed]
    if failed:
        print(f"{len(failed)} regression(s): {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
