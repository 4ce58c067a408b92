"""`aqa mmau run|score|report|sweep`: `aqa eval` with the benchmark fixed to MMAU test-mini.

aqa mmau run --data data/mmau-test-mini.2025-03-25.json --audio-dir data/MMAU --output runs/r1-aqa/preds.json
aqa mmau score runs/r1-aqa/preds.json
aqa mmau report runs/r1-aqa/preds.json --output runs/report.md --chart runs/report.png
aqa mmau sweep --checkpoints out/checkpoint-* --data ... --audio-dir ... --output-dir runs/sweep --holdout 0.5
"""

from __future__ import annotations

from aqa.cli.evaluate import add_steps


def add_command(commands) -> None:
    parser = commands.add_parser("mmau", help="MMAU test-mini evaluation: run, score, report, sweep")
    add_steps(parser, fixed="mmau")
