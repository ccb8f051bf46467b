"""What every suite's driver does: run cases interleaved in subprocesses, check them, report the medians.

A suite names its cases, its baseline and its target, and a function that measures one case on fresh
data and checks the result (``Suite.measure_case``). :func:`measure_all` runs every case ``runs``
times, interleaved (listeners, raw, listeners, raw, ...), printing a progress line per run;
:func:`finish` prints a table of medians and the target's verdict and writes every measurement to
``<results>/<date>-<suite>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks import report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"

Measurement = dict[str, Any]
"""One case run as its subprocess printed it, plus the driver's ``check`` (``passed``, ``detail``)."""


@dataclass(frozen=True)
class Target:
    """``case`` must reach ``min_ratio`` times ``baseline``'s median msgs/s."""

    case: str
    baseline: str
    min_ratio: float

    def verdict(self, summaries: dict[str, report.CaseSummary]) -> dict[str, Any]:
        ratio = report.ratio(summaries, self.case, self.baseline)
        return {
            "case": self.case,
            "baseline": self.baseline,
            "min_ratio": self.min_ratio,
            "ratio": ratio,
            "met": ratio >= self.min_ratio,
        }


def progress(run: int, runs: int, measurement: Measurement) -> str:
    """A throughput run's progress line."""
    return (
        f"run {run}/{runs} {measurement['case']:>19}: {measurement['msgs_per_s']:>9,.0f} msgs/s "
        f"({measurement['seconds']:.3f} s), CPU {measurement['cpu_s_per_1000']:.4f} s/1000, "
        f"peak RSS {measurement['peak_rss_mb']:.0f} MB, {measurement['check']['detail']}"
    )


@dataclass(frozen=True)
class Suite:
    name: str
    """Results file suffix (``<date>-<name>.json``)."""
    benchmark: str
    """What the results file calls the benchmark."""
    cases: tuple[str, ...]
    baseline: str
    target: Target | None
    """The throughput target :func:`finish` reports; None for a suite that reports its own verdicts."""
    runs: int
    parameters: dict[str, Any]
    measure_case: Callable[[str], Measurement]
    describe_run: Callable[[int, int, Measurement], str] = progress
    """The progress line printed after each run (``run``, ``runs``, its measurement)."""


def run_process(
    module: str, arguments: list[str], timeout: float, env: Mapping[str, str] | None = None
) -> Measurement:
    """Run ``python -m module arguments`` from the project root; its last stdout line is the measurement.

    ``env`` is added to this process's environment. The case's stderr's last lines (warnings it
    logged) go into the measurement as ``warnings``.
    """
    completed = subprocess.run(
        [sys.executable, "-m", module, *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if completed.returncode != 0:
        raise SystemExit(
            f"{module} {' '.join(arguments[:2])} failed (exit {completed.returncode}):\n"
            f"{completed.stderr[-3000:]}"
        )
    measurement: Measurement = json.loads(completed.stdout.strip().splitlines()[-1])
    measurement["warnings"] = completed.stderr.strip().splitlines()[-20:]
    return measurement


def run_case(
    measure: Callable[[argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]],
    args: argparse.Namespace,
    quiet: tuple[str, ...] = (),
) -> None:
    """A case module's ``main``: warnings logged to stderr (only errors from the ``quiet`` loggers), the
    measurement ``measure(args)`` printed as the one JSON line :func:`run_process` reads."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in quiet:
        logging.getLogger(name).setLevel(logging.ERROR)
    print(json.dumps(asyncio.run(measure(args))), flush=True)


def check(passed: bool, detail: str) -> dict[str, Any]:
    """A run's correctness check, as the measurement records it."""
    return {"passed": passed, "detail": detail}


def measure_all(suite: Suite) -> list[Measurement]:
    """Every run of every case, interleaved, each on fresh data."""
    measurements = []
    for run in range(1, suite.runs + 1):
        for case in suite.cases:
            measurement = suite.measure_case(case)
            measurement["run"] = run
            measurements.append(measurement)
            print(suite.describe_run(run, suite.runs, measurement), flush=True)
            for line in measurement["warnings"]:
                print(f"    {line}")
    return measurements


def document(
    suite: Suite,
    started: datetime,
    info: dict[str, Any],
    measurements: list[Measurement],
    verdicts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The results file: machine, parameters, target verdict (``verdicts``, else the suite's target's),
    medians and every run."""
    summaries = report.summarise(measurements)
    return {
        "benchmark": suite.benchmark,
        "date": started.date().isoformat(),
        "started_at": started.isoformat(timespec="seconds"),
        "machine": info,
        "parameters": {
            **suite.parameters,
            "order": f"interleaved ({', '.join(suite.cases)}, ...), each run in its own subprocess",
        },
        **(verdicts if verdicts is not None else {"target": _target(suite).verdict(summaries)}),
        "checks_passed": all(measurement["check"]["passed"] for measurement in measurements),
        "summary": summaries,
        "runs": measurements,
    }


def _target(suite: Suite) -> Target:
    if suite.target is None:
        raise ValueError(f"suite {suite.name} has no throughput target: give its verdicts")
    return suite.target


def target_line(target: dict[str, Any]) -> str:
    """The printed verdict of a :class:`Target`."""
    verdict = "met" if target["met"] else "MISSED"
    return (
        f"target {target['case']} >= {target['min_ratio']}x {target['baseline']}: "
        f"{verdict} ({target['ratio']:.2f}x)"
    )


def finish(
    suite: Suite,
    started: datetime,
    info: dict[str, Any],
    measurements: list[Measurement],
    results: Path,
    versus: str = "raw",
) -> bool:
    """Print the table (its ratio column headed ``vs <versus>``), the settings and the verdict, write
    the results file; False if a check failed."""
    results_document = document(suite, started, info, measurements)
    summaries: dict[str, report.CaseSummary] = results_document["summary"]
    table = report.table(summaries, suite.baseline, versus)
    return conclude(suite, results_document, table, [target_line(results_document["target"])], results)


def conclude(
    suite: Suite, results_document: dict[str, Any], table: str, verdicts: list[str], results: Path
) -> bool:
    """Print ``table``, every case's settings, the ``verdicts`` lines and the failed checks; write the
    results file to ``<results>/<date>-<suite>.json``. False if a check failed."""
    summaries: dict[str, report.CaseSummary] = results_document["summary"]
    print()
    print(table)
    print()
    for summary in summaries.values():
        print(f"{summary.case} settings: {summary.config}")
    for line in verdicts:
        print(line)
    if not results_document["checks_passed"]:
        failed = [m for m in results_document["runs"] if not m["check"]["passed"]]
        print(f"CHECKS FAILED in {len(failed)} runs: " + "; ".join(m["check"]["detail"] for m in failed))
    output = results / f"{results_document['date']}-{suite.name}.json"
    report.write_json(output, results_document)
    print(f"results: {output}")
    passed: bool = results_document["checks_passed"]
    return passed
