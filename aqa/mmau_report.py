"""MMAU reports: the seed's Markdown table and a bar chart, both labelled with the MMAU version.

The seed's reference rows are shown only beside runs on the file version they were measured on (2025-03-25):
test-mini changed on 364 of 1000 items since, and numbers from different versions are not comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aqa.mmau_score import TASKS, Score

REFERENCE_VERSION = "2025-03-25"
# From the seed's README (github.com/xiaomi-research/r1-aqa): not measured here. Its Qwen2-Audio row is the MMAU
# leaderboard's direct-inference number that README quotes.
REFERENCE_ROWS = (
    ("Qwen2-Audio-7B-Instruct", "Direct Inference (reported)", (54.95, 50.98, 42.04, 49.20)),
    ("Qwen2-Audio-7B-Instruct", "GRPO, R1-AQA (reported)", (69.37, 66.77, 57.36, 64.50)),
)
COLUMNS = ("Sound", "Music", "Speech", "Average")


@dataclass(frozen=True)
class RunSummary:
    label: str  # the Model column
    method: str  # the Method column: precision and decoding of the run
    version: str | None  # the MMAU file's known version, or None
    score: Score
    records_in_file: int | None  # the MMAU file's size, to say when a run covered only part of it


@dataclass(frozen=True)
class Row:
    model: str
    method: str
    values: tuple[float | None, ...]  # sound, music, speech, average (percent)


def run_row(run: RunSummary) -> Row:
    """Average is the accuracy over all questions, as MMAU's script totals it (the seed's 64.50 is that too)."""
    tasks = tuple(run.score.official.tasks[name].percent for name in TASKS)
    return Row(run.label, run.method, (*tasks, run.score.official.total.percent))


def reference_rows() -> list[Row]:
    return [Row(model, method, values) for model, method, values in REFERENCE_ROWS]


def version_title(version: str | None) -> str:
    if version is None:
        return "MMAU test-mini, unknown version"
    return f"MMAU test-mini, version {version}"


def cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def grouped(runs: Sequence[RunSummary]) -> dict[str | None, list[RunSummary]]:
    groups: dict[str | None, list[RunSummary]] = {}
    for run in runs:
        groups.setdefault(run.version, []).append(run)
    return groups


def report_markdown(runs: Sequence[RunSummary]) -> str:
    """One table per MMAU version among the runs, in the seed's format, with notes on what each row covers."""
    sections = []
    for version, group in grouped(runs).items():
        rows = [run_row(run) for run in group] + (reference_rows() if version == REFERENCE_VERSION else [])
        table = markdown_table(
            ("Model", "Method", *COLUMNS), [(row.model, row.method, *map(cell, row.values)) for row in rows]
        )
        notes = "\n".join(f"- {note}" for note in run_notes(group, version))
        sections.append(f"### Accuracy (%) on {version_title(version)}\n\n{table}\n\n{notes}")
    return "\n\n".join(sections)


def run_notes(group: Sequence[RunSummary], version: str | None) -> list[str]:
    notes = ["Scored with MMAU's official rule; Average is the accuracy over all questions."]
    for run in group:
        score = run.score
        note = f"{run.label}: {score.n} questions; strict (aqa parser) accuracy {cell(score.strict.total.percent)}"
        if run.records_in_file and score.n < run.records_in_file:
            note += f"; only {score.n} of the file's {run.records_in_file} questions (not comparable with full runs)"
        if score.missing:
            note += f"; {len(score.missing)} without a prediction, counted wrong"
        notes.append(note)
    if version is None:
        notes.append("The MMAU file is not a known version: compare only with runs on the very same file.")
    if version == REFERENCE_VERSION:
        notes.append("Rows marked (reported) are the numbers in R1-AQA's README, not measured here.")
    return notes


def sweep_markdown(results, version: str | None, holdout: float | None, seed: int) -> str:
    """One row per checkpoint; with a held-out split, the pick on the selection part and its held-out accuracy."""
    header = ["Checkpoint", *COLUMNS]
    if holdout is not None:
        header += ["Selection", "Held-out"]
        best = max(results, key=lambda result: result[2].official.total.percent or 0.0)[0]
    rows = []
    for name, score, selection, held in results:
        row = [name, *map(cell, run_row(RunSummary(name, "", version, score, None)).values)]
        if holdout is not None:
            row += [cell(selection.official.total.percent), cell(held.official.total.percent)]
            row[0] = f"**{name}** (picked)" if name == best else name
        rows.append(row)
    lines = [f"### Checkpoints on {version_title(version)}", "", markdown_table(header, rows), ""]
    if holdout is None:
        lines.append("- Picking a checkpoint by these numbers selects on the test set: its score is then optimistic.")
    else:
        sizes = f"{results[0][2].n} selection / {results[0][3].n} held-out questions" if results else ""
        lines.append(
            f"- Split with --holdout {holdout} --split-seed {seed} ({sizes}): the checkpoint is picked on Selection; "
            "report its Held-out accuracy, not the best of the other columns."
        )
    return "\n".join(lines)


def bar_chart(runs: Sequence[RunSummary], path, references: bool = True) -> None:
    """Grouped bars per MMAU version (Sound, Music, Speech, Average), written as a PNG with the Agg backend."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = grouped(runs)
    figure = Figure(figsize=(12, 4.5 * len(groups)))
    FigureCanvasAgg(figure)  # non-interactive: no display, no global pyplot state
    for number, (version, group) in enumerate(groups.items(), start=1):
        axes = figure.add_subplot(len(groups), 1, number)
        rows = [run_row(run) for run in group]
        rows += reference_rows() if references and version == REFERENCE_VERSION else []
        width = 0.8 / len(rows)
        for index, row in enumerate(rows):
            values = [np.nan if value is None else value for value in row.values]
            label = f"{row.model}, {row.method}" if row.method else row.model
            bars = axes.bar(np.arange(len(COLUMNS)) + (index - (len(rows) - 1) / 2) * width, values, width, label=label)
            axes.bar_label(bars, labels=[cell(value) for value in row.values], fontsize="x-small")
        axes.set_xticks(np.arange(len(COLUMNS)), COLUMNS)
        axes.set_ylim(0, 100)
        axes.set_ylabel("accuracy (%)")
        axes.set_title(version_title(version))
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
