"""Reports: R1-AQA's Markdown table and a bar chart, both labelled with the benchmark's file version.

Reference rows are shown only beside runs on the file version they were measured on: MMAU test-mini changed on 364
of 1000 items between its 2025-03-25 and 2025-08-09 files, and numbers from different versions are not comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aqa.eval.benchmarks import MMAU, Benchmark
from aqa.eval.score import Score, score_records


@dataclass(frozen=True)
class RunSummary:
    label: str  # the Model column
    method: str  # the Method column: precision and decoding of the run
    version: str | None  # the question file's known version, or None
    score: Score
    records_in_file: int | None  # the question file's size, to say when a run covered only part of it


@dataclass(frozen=True)
class Row:
    model: str
    method: str
    values: tuple[float | None, ...]  # percent per column (MMAU: sound, music, speech), then the average


def summarize(
    label: str, records: Sequence[dict], version: str | None, manifest: dict | None, benchmark: Benchmark = MMAU
) -> RunSummary:
    """A run's row: its score, and its method (precision, decoding) as its manifest records them."""
    settings = (manifest or {}).get("settings", {})
    decoding = settings.get("decoding", {})
    method = ", ".join(
        part
        for part in (
            settings.get("precision"),
            ("sampled" if decoding.get("sample") else "greedy") if decoding else None,
            "think" if decoding.get("think") else None,
        )
        if part
    )
    in_file = (manifest or {}).get(benchmark.name, {}).get("records_in_file")
    return RunSummary(label, method or "-", version, score_records(records, benchmark), in_file)


def column_titles(benchmark: Benchmark) -> tuple[str, ...]:
    return (*(value.title() for value in benchmark.columns[1]), "Average")


def run_row(run: RunSummary, benchmark: Benchmark = MMAU) -> Row:
    """Average is the accuracy over all questions, as the official script totals it (R1-AQA's 64.50 is that too)."""
    name, values = benchmark.columns
    groups = run.score.official.groups[name]
    return Row(run.label, run.method, (*(groups[value].percent for value in values), run.score.official.total.percent))


def reference_rows(version: str | None, benchmark: Benchmark) -> list[Row]:
    return [Row(ref.model, ref.method, ref.values) for ref in benchmark.references.get(version, ())]


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


def report_markdown(runs: Sequence[RunSummary], benchmark: Benchmark = MMAU) -> str:
    """One table per file version among the runs, in R1-AQA's format, with notes on what each row covers."""
    sections = []
    for version, group in grouped(runs).items():
        rows = [run_row(run, benchmark) for run in group] + reference_rows(version, benchmark)
        table = markdown_table(
            ("Model", "Method", *column_titles(benchmark)),
            [(row.model, row.method, *map(cell, row.values)) for row in rows],
        )
        notes = "\n".join(f"- {note}" for note in run_notes(group, version, benchmark))
        sections.append(f"### Accuracy (%) on {benchmark.version_title(version)}\n\n{table}\n\n{notes}")
    return "\n\n".join(sections)


def run_notes(group: Sequence[RunSummary], version: str | None, benchmark: Benchmark) -> list[str]:
    notes = [f"Scored with {benchmark.title}'s official rule; Average is the accuracy over all questions."]
    for run in group:
        score = run.score
        note = f"{run.label}: {score.n} questions; strict (aqa parser) accuracy {cell(score.strict.total.percent)}"
        if run.records_in_file and score.n < run.records_in_file:
            note += f"; only {score.n} of the file's {run.records_in_file} questions (not comparable with full runs)"
        if score.missing:
            note += f"; {len(score.missing)} without a prediction, counted wrong"
        notes.append(note)
    if version is None:
        notes.append("The question file is not a known version: compare only with runs on the very same file.")
    for reference in benchmark.references.get(version, ()):
        notes.append(f"{reference.model}, {reference.method}: from {reference.source}.")
    return notes


def sweep_markdown(results, version: str | None, holdout: float | None, seed: int, benchmark: Benchmark = MMAU) -> str:
    """One row per checkpoint; with a held-out split, the pick on the selection part and its held-out accuracy."""
    header = ["Checkpoint", *column_titles(benchmark)]
    if holdout is not None:
        header += ["Selection", "Held-out"]
        best = max(results, key=lambda result: result[2].official.total.percent or 0.0)[0]
    rows = []
    for name, score, selection, held in results:
        row = [name, *map(cell, run_row(RunSummary(name, "", version, score, None), benchmark).values)]
        if holdout is not None:
            row += [cell(selection.official.total.percent), cell(held.official.total.percent)]
            row[0] = f"**{name}** (picked)" if name == best else name
        rows.append(row)
    lines = [f"### Checkpoints on {benchmark.version_title(version)}", "", markdown_table(header, rows), ""]
    if holdout is None:
        lines.append("- Picking a checkpoint by these numbers selects on the test set: its score is then optimistic.")
    else:
        sizes = f"{results[0][2].n} selection / {results[0][3].n} held-out questions" if results else ""
        lines.append(
            f"- Split with --holdout {holdout} --split-seed {seed} ({sizes}): the checkpoint is picked on Selection; "
            "report its Held-out accuracy, not the best of the other columns."
        )
    return "\n".join(lines)


def bar_chart(runs: Sequence[RunSummary], path: Path, references: bool = True, benchmark: Benchmark = MMAU) -> None:
    """Grouped bars per file version (MMAU: Sound, Music, Speech, Average), written as a PNG with the Agg backend."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    titles = column_titles(benchmark)
    groups = grouped(runs)
    figure = Figure(figsize=(12, 4.5 * len(groups)))
    FigureCanvasAgg(figure)  # non-interactive: no display, no global pyplot state
    for number, (version, group) in enumerate(groups.items(), start=1):
        axes = figure.add_subplot(len(groups), 1, number)
        rows = [run_row(run, benchmark) for run in group]
        rows += reference_rows(version, benchmark) if references else []
        width = 0.8 / len(rows)
        for index, row in enumerate(rows):
            values = [np.nan if value is None else value for value in row.values]
            label = f"{row.model}, {row.method}" if row.method else row.model
            bars = axes.bar(np.arange(len(titles)) + (index - (len(rows) - 1) / 2) * width, values, width, label=label)
            axes.bar_label(bars, labels=[cell(value) for value in row.values], fontsize="x-small")
        axes.set_xticks(np.arange(len(titles)), titles)
        axes.set_ylim(0, 100)
        axes.set_ylabel("accuracy (%)")
        axes.set_title(benchmark.version_title(version))
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
