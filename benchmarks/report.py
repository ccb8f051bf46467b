"""Summaries of the measured runs: medians per case, the printed table, the JSON results file."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CaseSummary:
    """Medians of one case's runs (each run is one subprocess's measurement)."""

    case: str
    runs: int
    msgs_per_s: list[float]
    median_msgs_per_s: float
    median_seconds: float
    median_cpu_s_per_1000: float
    median_peak_rss_mb: float
    config: dict[str, Any]


def summarise(measurements: list[dict[str, Any]]) -> dict[str, CaseSummary]:
    """One summary per case, in the order the cases first appear."""
    return {
        case: CaseSummary(
            case=case,
            runs=len(runs),
            msgs_per_s=[run["msgs_per_s"] for run in runs],
            median_msgs_per_s=round(statistics.median(run["msgs_per_s"] for run in runs), 1),
            median_seconds=round(statistics.median(run["seconds"] for run in runs), 4),
            median_cpu_s_per_1000=round(statistics.median(run["cpu_s_per_1000"] for run in runs), 5),
            median_peak_rss_mb=round(statistics.median(run["peak_rss_mb"] for run in runs), 1),
            config=runs[0]["config"],
        )
        for case, runs in by_case(measurements).items()
    }


def by_case(measurements: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The runs of every case, in the order the cases first appear."""
    found: dict[str, list[dict[str, Any]]] = {}
    for measurement in measurements:
        found.setdefault(measurement["case"], []).append(measurement)
    return found


def ratio(summaries: dict[str, CaseSummary], case: str, baseline: str) -> float:
    return round(summaries[case].median_msgs_per_s / summaries[baseline].median_msgs_per_s, 3)


def table(summaries: dict[str, CaseSummary], baseline: str, versus: str = "raw") -> str:
    """A Markdown table (it goes into the README as printed); the ratio column is headed ``vs <versus>``."""
    lines = [
        f"| case | msgs/s per run | median msgs/s | vs {versus} | CPU s / 1000 msgs | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for summary in summaries.values():
        runs = ", ".join(f"{rate:,.0f}" for rate in summary.msgs_per_s)
        lines.append(
            f"| {summary.case} | {runs} | {summary.median_msgs_per_s:,.0f} "
            f"| {ratio(summaries, summary.case, baseline):.2f}x | {summary.median_cpu_s_per_1000:.4f} "
            f"| {summary.median_peak_rss_mb:.0f} |"
        )
    return "\n".join(lines)


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile of ``values`` (``share`` 0.5 is the median, 0.99 the p99)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(share * len(ordered))) - 1]


def distribution(values: Sequence[float]) -> dict[str, float]:
    """Count, minimum, p50, p99 and maximum of ``values`` (rounded to 0.1)."""
    return {
        "count": len(values),
        "min": round(min(values), 1),
        "p50": round(percentile(values, 0.5), 1),
        "p99": round(percentile(values, 0.99), 1),
        "max": round(max(values), 1),
    }


def latency_table(measurements: list[dict[str, Any]], key: str) -> str:
    """A Markdown table of every case's ``measurement[key]`` distributions (ms; see
    :func:`distribution`): p50 and p99 per run and their medians, the max and min over all runs."""
    lines = [
        "| case | p50 ms per run | median p50 ms | p99 ms per run | median p99 ms | max ms | min ms "
        "| CPU s / 1000 msgs | peak RSS MB |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for case, runs in by_case(measurements).items():
        stats = [run[key] for run in runs]
        p50s, p99s = [stat["p50"] for stat in stats], [stat["p99"] for stat in stats]
        lines.append(
            f"| {case} | {', '.join(f'{value:,.1f}' for value in p50s)} | {statistics.median(p50s):,.1f} "
            f"| {', '.join(f'{value:,.1f}' for value in p99s)} | {statistics.median(p99s):,.1f} "
            f"| {max(stat['max'] for stat in stats):,.1f} | {min(stat['min'] for stat in stats):,.1f} "
            f"| {statistics.median(run['cpu_s_per_1000'] for run in runs):.4f} "
            f"| {statistics.median(run['peak_rss_mb'] for run in runs):.0f} |"
        )
    return "\n".join(lines)


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    if isinstance(value, CaseSummary):
        return asdict(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
