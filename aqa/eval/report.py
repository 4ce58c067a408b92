"""Reports: R1-AQA's Markdown table and a bar chart, both labelled with the benchmark's file version.

Reference rows are shown only beside runs on the file version they were measured on: MMAU test-mini changed on 364
of 1000 items between its 2025-03-25 and 2025-08-09 files, and numbers from different versions are not comparable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aqa.eval.benchmarks import MMAU, Benchmark
from aqa.eval.score import Score, Spread, score_records, spread


@dataclass(frozen=True)
class RunSummary:
    label: str  # the Model column
    method: str  # the Method column: precision, protocol and decoding of the run
    version: str | None  # the question file's known version, or None
    score: Score  # the (first) run's
    records_in_file: int | None  # the question file's size, to say when a run covered only part of it
    repeats: tuple[Score, ...] = ()  # every run's, when the setup was run several times with different seeds


@dataclass(frozen=True)
class Row:
    model: str
    method: str
    values: tuple[float | None, ...]  # percent per column (MMAU: sound, music, speech), then the average
    spreads: tuple[Spread | None, ...] = ()  # with repeated runs: each value's spread (the values are the means)


def describe_method(manifest: dict | None) -> str:
    """Family, precision, protocol and decoding as a run's manifest records them, e.g. "qwen2-audio, bf16, r1-aqa
    protocol"."""
    settings = (manifest or {}).get("settings", {})
    decoding = settings.get("decoding", {})
    protocol = settings.get("protocol", "greedy")
    parts = [
        settings.get("family"),
        settings.get("precision"),
        f"{protocol} protocol" if protocol != "greedy" else None,
        ("sampled" if decoding.get("sample") else "greedy") if decoding and protocol == "greedy" else None,
        "think" if decoding.get("think") else None,
        f"shuffled choices x{settings['shuffle_choices']}" if settings.get("shuffle_choices") else None,
    ]
    return ", ".join(part for part in parts if part) or "-"


def summarize(
    label: str, records: Sequence[dict], version: str | None, manifest: dict | None, benchmark: Benchmark = MMAU
) -> RunSummary:
    """A run's row: its score, and its method (precision, protocol, decoding) as its manifest records them."""
    in_file = (manifest or {}).get(benchmark.name, {}).get("records_in_file")
    return RunSummary(label, describe_method(manifest), version, score_records(records, benchmark), in_file)


def summarize_runs(
    label: str, runs: Sequence[tuple[Sequence[dict], dict | None]], version: str | None, benchmark: Benchmark = MMAU
) -> RunSummary:
    """One row for the repeated runs of one setup, (records, manifest) each: the means, with their spread."""
    first = summarize(label, runs[0][0], version, runs[0][1], benchmark)
    if len(runs) == 1:
        return first
    scores = tuple(score_records(records, benchmark) for records, _ in runs)
    seeds = [str((manifest or {}).get("settings", {}).get("seed")) for _, manifest in runs]
    method = f"{first.method}, {len(runs)} runs (seeds {', '.join(seeds)})"
    return RunSummary(label, method, version, first.score, first.records_in_file, scores)


@dataclass(frozen=True)
class Columns:
    """The table's columns: the values of one grouping (MMAU: the tasks), then the average."""

    grouping: str | None
    values: tuple[str, ...]
    titles: tuple[str, ...]  # one per value, then "Average"


def table_columns(benchmark: Benchmark, scores: Iterable[Score] = ()) -> Columns:
    """The benchmark's columns; for one that lists no values (a custom file), the values the scores hold, sorted."""
    grouping, values = benchmark.columns
    if grouping is not None and not values:
        values = tuple(sorted({value for score in scores for value in score.official.groups[grouping]}))
    titles = (
        benchmark.column_titles if benchmark.column_titles and len(benchmark.column_titles) == len(values) else values
    )
    return Columns(grouping, values, (*titles, "Average"))


def figures(score: Score, columns: Columns) -> tuple[float | None, ...]:
    """Average is the accuracy over all questions, as the official script totals it (R1-AQA's 64.50 is that too)."""
    groups = score.official.groups.get(columns.grouping, {})
    return (
        *(groups[value].percent if value in groups else None for value in columns.values),
        score.official.total.percent,
    )


def run_row(run: RunSummary, columns: Columns) -> Row:
    if len(run.repeats) < 2:
        return Row(run.label, run.method, figures(run.score, columns))
    values = zip(*(figures(score, columns) for score in run.repeats))
    spreads = tuple(None if None in column else spread(column) for column in values)
    return Row(run.label, run.method, tuple(s.mean if s else None for s in spreads), spreads)


def run_scores(runs: Sequence[RunSummary]) -> list[Score]:
    return [score for run in runs for score in (run.repeats or (run.score,))]


def reference_rows(version: str | None, benchmark: Benchmark) -> list[Row]:
    return [Row(ref.model, ref.method, ref.values) for ref in benchmark.references.get(version, ())]


def cell(value: float | None, spread: Spread | None = None) -> str:
    if value is None:
        return "-"
    if spread is None or spread.low is None:
        return f"{value:.2f}"
    return f"{value:.2f} ± {(spread.high - spread.low) / 2:.2f}"


def cells(row: Row) -> list[str]:
    return [cell(value, row.spreads[i] if row.spreads else None) for i, value in enumerate(row.values)]


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
        columns = table_columns(benchmark, run_scores(group))
        rows = [run_row(run, columns) for run in group] + reference_rows(version, benchmark)
        table = markdown_table(
            ("Model", "Method", *columns.titles),
            [(row.model, row.method, *cells(row)) for row in rows],
        )
        notes = "\n".join(f"- {note}" for note in run_notes(group, version, benchmark))
        sections.append(f"### Accuracy (%) on {benchmark.version_title(version)}\n\n{table}\n\n{notes}")
    return "\n\n".join(sections)


def run_notes(group: Sequence[RunSummary], version: str | None, benchmark: Benchmark) -> list[str]:
    over = "the questions with a prediction" if benchmark.skips_missing else "all questions"
    notes = [f"Scored with {benchmark.rule}; Average is the accuracy over {over}."]
    for run in group:
        score = run.score
        asked = score.missing_as_wrong.total  # every record of the run, with or without a prediction
        note = f"{run.label}: {asked} questions; strict (aqa parser) accuracy {cell(score.strict.total.percent)}"
        if run.records_in_file and asked < run.records_in_file:
            note += f"; only {asked} of the file's {run.records_in_file} questions (not comparable with full runs)"
        if score.missing and benchmark.skips_missing:
            note += (
                f"; {len(score.missing)} without a prediction, left out as {benchmark.scorer} leaves them out "
                f"(counted wrong, the total would be {cell(score.missing_as_wrong.percent)})"
            )
        elif score.missing:
            note += f"; {len(score.missing)} without a prediction, counted wrong"
        if len(run.repeats) > 1:
            note += (
                f"; {len(run.repeats)} seeded runs: mean ± half-width of the 95% interval of the mean "
                "(Student's t over the runs)"
            )
        notes.append(note)
    if version is None:
        notes.append("The question file is not a known version: compare only with runs on the very same file.")
    for reference in benchmark.references.get(version, ()):
        notes.append(f"{reference.model}, {reference.method}: from {reference.source}.")
    return notes


def sweep_markdown(results, version: str | None, holdout: float | None, seed: int, benchmark: Benchmark = MMAU) -> str:
    """One row per checkpoint; with a held-out split, the pick on the selection part and its held-out accuracy."""
    columns = table_columns(benchmark, [result[1] for result in results])
    header = ["Checkpoint", *columns.titles]
    if holdout is not None:
        header += ["Selection", "Held-out"]
        best = max(results, key=lambda result: result[2].official.total.percent or 0.0)[0]
    rows = []
    for name, score, selection, held in results:
        row = [name, *map(cell, figures(score, columns))]
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


def interval_bars(values: Sequence[float], spreads: Sequence[Spread | None]) -> list[list[float]]:
    """Matplotlib's yerr for the 95% intervals of the means: distances below and above each bar."""
    known = [(v, s) if s is not None and s.low is not None else (v, None) for v, s in zip(values, spreads)]
    below = [0.0 if s is None else v - s.low for v, s in known]
    above = [0.0 if s is None else s.high - v for v, s in known]
    return [below, above]


def bar_chart(runs: Sequence[RunSummary], path: Path, references: bool = True, benchmark: Benchmark = MMAU) -> None:
    """Grouped bars per file version (MMAU: Sound, Music, Speech, Average), written as a PNG with the Agg backend."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = grouped(runs)
    figure = Figure(figsize=(12, 4.5 * len(groups)))
    FigureCanvasAgg(figure)  # non-interactive: no display, no global pyplot state
    for number, (version, group) in enumerate(groups.items(), start=1):
        axes = figure.add_subplot(len(groups), 1, number)
        columns = table_columns(benchmark, run_scores(group))
        titles = columns.titles
        rows = [run_row(run, columns) for run in group]
        rows += reference_rows(version, benchmark) if references else []
        width = 0.8 / len(rows)
        for index, row in enumerate(rows):
            values = [np.nan if value is None else value for value in row.values]
            label = f"{row.model}, {row.method}" if row.method else row.model
            errors = interval_bars(values, row.spreads) if row.spreads else None
            offsets = np.arange(len(titles)) + (index - (len(rows) - 1) / 2) * width
            bars = axes.bar(offsets, values, width, label=label, yerr=errors, capsize=3 if errors else 0)
            axes.bar_label(bars, labels=cells(row), fontsize="x-small")
        axes.set_xticks(np.arange(len(titles)), titles)
        axes.set_ylim(0, 100)
        axes.set_ylabel("accuracy (%)")
        axes.set_title(benchmark.version_title(version))
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
