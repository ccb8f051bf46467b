"""What every suite's driver does: run cases interleaved in subprocesses, check them, report the medians.

A suite names its cases, its baseline and its target, and a function that measures one case on fresh
data and checks the result (``Suite.measure_case``). :func:`measure_all` runs every case ``runs``
times, interleaved (listeners, raw, listeners, raw, ...), printing a progress line per run;
:func:`finish` prints a table of medians and the target's verdict and writes every measurement to
``<results>/<date>-<suite>.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
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


@dataclass(frozen=True)
class Suite:
    name: str
    """Results file suffix (``<date>-<name>.json``)."""
    benchmark: str
    """What the results file calls the benchmark."""
    cases: tuple[str, ...]
    baseline: str
    target: Target
    runs: int
    parameters: dict[str, Any]
    measure_case: Callable[[str], Measurement]


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


def check(passed: bool, detail: str) -> dict[str, Any]:
    """A run's correctness check, as the measurement records it."""
    return {"passed": passed, "detail": detail}


def progress(run: int, runs: int, measurement: Measurement) -> str:
    return (
        f"run {run}/{runs} {measurement['case']:>19}: {measurement['msgs_per_s']:>9,.0f} msgs/s "
        f"({measurement['seconds']:.3f} s), CPU {measurement['cpu_s_per_1000']:.4f} s/1000, "
        f"peak RSS {measurement['peak_rss_mb']:.0f} MB, {measurement['check']['detail']}"
    )


def measure_all(suite: Suite) -> list[Measurement]:
    """Every run of every case, interleaved, each on fresh data."""
    measurements = []
    for run in range(1, suite.runs + 1):
        for case in suite.cases:
            measurement = suite.measure_case(case)
            measurement["run"] = run
            measurements.append(measurement)
            print(progress(run, suite.runs, measurement), flush=True)
            for line in measurement["warnings"]:
                print(f"    {line}")
    return measurements


def document(
    suite: Suite, started: datetime, info: dict[str, Any], measurements: list[Measurement]
) -> dict[str, Any]:
    """The results file: machine, parameters, target verdict, medians and every run."""
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
        "target": suite.target.verdict(summaries),
        "checks_passed": all(measurement["check"]["passed"] for measurement in measurements),
        "summary": summaries,
        "runs": measurements,
    }


def finish(
    suite: Suite, started: datetime, info: dict[str, Any], measurements: list[Measurement], results: Path
) -> bool:
    """Print the table, the settings and the verdict, write the results file; False if a check failed."""
    results_document = document(suite, started, info, measurements)
    summaries: dict[str, report.CaseSummary] = results_document["summary"]
    target = results_document["target"]
    print()
    print(report.table(summaries, suite.baseline))
    print()
    for summary in summaries.values():
        print(f"{summary.case} settings: {summary.config}")
    verdict = "met" if target["met"] else "MISSED"
    print(
        f"target {target['case']} >= {target['min_ratio']}x {target['baseline']}: "
        f"{verdict} ({target['ratio']:.2f}x)"
    )
    if not results_document["checks_passed"]:
        failed = [m for m in measurements if not m["check"]["passed"]]
        print(f"CHECKS FAILED in {len(failed)} runs: " + "; ".join(m["check"]["detail"] for m in failed))
    output = results / f"{started.date().isoformat()}-{suite.name}.json"
    report.write_json(output, results_document)
    print(f"results: {output}")
    passed: bool = results_document["checks_passed"]
    return passed
