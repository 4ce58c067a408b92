"""The figures of every report in a folder as one Markdown table: `python -m bench.summary DIR`.

Reads DIR/*.json as bench/run_gpu.sh writes them (`aqa bench` reports, and grpo.json from bench/grpo_step.py); for
a run over many clips it adds the seconds the whole run would take at the measured rate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SKIPPED = ("machine", "model")  # described once per file, in the header line


def rows(name: str, report: dict):
    for section, values in report.items():
        if section in SKIPPED or not isinstance(values, dict):
            continue
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                yield f"| {name} | {section}.{key} | {value:.4g} |"
    clips = report.get("model", {}).get("clips")
    for batch, rate in report.get("throughput_questions_per_s", {}).items():
        if clips and rate:
            yield f"| {name} | seconds_for_{clips}_questions_at_{batch} | {clips / rate:.4g} |"


def header(name: str, report: dict) -> str:
    machine, model = report.get("machine", {}), report.get("model", {})
    described = ", ".join(f"{key} {value}" for key, value in {**machine, **model}.items() if value is not None)
    return f"- {name}: {described}"


def main(folder: Path) -> None:
    reports = {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}
    print("\n".join(header(name, report) for name, report in reports.items()))
    print("\n| run | figure | value |\n| --- | --- | --- |")
    for name, report in reports.items():
        print("\n".join(rows(name, report)))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
