"""Summaries of the measured runs: medians per case, the printed table, the JSON results file."""

from __future__ import annotations

import json
import statistics
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
    by_case: dict[str, list[dict[str, Any]]] = {}
    for measurement in measurements:
        by_case.setdefault(measurement["case"], []).append(measurement)
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
        for case, runs in by_case.items()
    }


def ratio(summaries: dict[str, CaseSummary], case: str, baseline: str) -> float:
    return round(summaries[case].median_msgs_per_s / summaries[baseline].median_msgs_per_s, 3)


def table(summaries: dict[str, CaseSummary], baseline: str) -> str:
    """A Markdown table (it goes into the README as printed)."""
    lines = [
        "| case | msgs/s per run | median msgs/s | vs raw | CPU s / 1000 msgs | peak RSS MB |",
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


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    if isinstance(value, CaseSummary):
        return asdict(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
