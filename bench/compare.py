"""Medians of `aqa bench` reports, before against after: `python bench/compare.py DIR` reads DIR/before_*.json and
DIR/after_*.json (as bench/before_after.sh writes them) and prints a Markdown table with the ratio per figure.

The ratio is a speed-up for times (before / after) and for rates (after / before): above 1 is faster. For memory it
is after / before: below 1 is less.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

SECTIONS = ("latency_ms", "answer_latency_ms", "throughput_questions_per_s", "peak_memory_gib")


def figures(report: dict) -> dict[str, float]:
    return {
        f"{section}.{key}": value
        for section in SECTIONS
        for key, value in report.get(section, {}).items()
        if isinstance(value, (int, float))
    }


def medians(paths: list[Path]) -> dict[str, float]:
    runs = [figures(json.loads(path.read_text())) for path in paths]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def ratio(key: str, before: float, after: float) -> float:
    if key.startswith("throughput") or key.startswith("peak"):
        return after / before
    return before / after


def main(folder: Path) -> None:
    before, after = medians(sorted(folder.glob("before_*.json"))), medians(sorted(folder.glob("after_*.json")))
    print(f"| figure (median of {len(list(folder.glob('after_*.json')))} runs) | before | after | ratio |")
    print("| --- | --- | --- | --- |")
    for key in before:
        if key in after and before[key] and after[key]:
            print(f"| {key} | {before[key]:.4g} | {after[key]:.4g} | {ratio(key, before[key], after[key]):.2f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
