"""One leaderboard across runs of any benchmark, model, family, protocol and seed: `aqa eval leaderboard RUN...`.

Each run's manifest says what it was: the benchmark and the question file's version, the model and its family, the
protocol and decoding, the seed, and what the model heard (the clip, or a no-audio baseline). Runs of one setup
(everything but the seed) are one row, their mean ± the half-width of a 95% interval where there are several. Each
benchmark version gets its own table, a baseline sits right under the run that heard the clips, and the published
rows are shown where their version is the table's: the benchmark's (with their per-category figures) and those the
families publish (`aqa models`: the overall figure only). Markdown, CSV (one line per figure) and a chart.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from aqa.errors import InputError
from aqa.eval.benchmarks import BENCHMARKS, MMAR, MMAU, Benchmark, custom_benchmark
from aqa.eval.manifest import companion_paths, manifest_version, read_manifest, run_files
from aqa.eval.questions import read_predictions
from aqa.eval.report import (
    Columns,
    Row,
    audio_of,
    cells,
    describe_method,
    draw_panels,
    figures,
    markdown_table,
    pooled,
    table_columns,
)
from aqa.eval.score import Score, Spread, score_records
from aqa.options import AUDIO_LABELS, AUDIO_MODES

if TYPE_CHECKING:
    from aqa.families import Published

# The versions the families' published figures name (aqa.families' `Published.mmau`): MMAU's "v1" is test-mini as
# published in early 2025 (the 2025-01-28 and 2025-03-25 files, one answer apart), "v05.15.25" the 2025-08-09 file.
MMAU_PUBLISHED_VERSIONS = {"v1": ("2025-01-28", "2025-03-25"), "v05.15.25": ("2025-08-09",)}
PUBLISHED_MMAU = re.compile(r"(\d+(?:\.\d+)?) \(test-mini (v1|v05\.15\.25)\b")
PUBLISHED_MMAR = re.compile(r"^(\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class Run:
    """One RUN argument: a predictions file (or the `--runs` files of one name), scored, and what made it."""

    path: Path
    benchmark: Benchmark
    version: str | None  # the question file's known version
    sha256: str | None  # the question file's, which tells unknown versions apart
    label: str  # the Model column
    family: str
    method: str  # precision, protocol, decoding (family and audio have their own columns)
    audio: str  # AUDIO_MODES
    seeds: tuple[int | None, ...]
    scores: tuple[Score, ...]  # one per file

    @property
    def table(self) -> tuple[str, str]:
        """The table the run belongs to: its benchmark and its question file's version (or sha256, if unknown)."""
        return self.benchmark.name, self.version or f"sha256 {self.sha256}"

    @property
    def setup(self) -> tuple:
        """What must match for runs to be one row (the seed may differ)."""
        return (*self.table, self.label, self.family, self.method, self.audio)


@dataclass(frozen=True)
class Line:
    """A row of a leaderboard table."""

    model: str
    family: str
    method: str
    audio: str  # AUDIO_MODES
    values: tuple[float | None, ...]  # percent per column, then the average (the means, over several runs)
    spreads: tuple[Spread | None, ...]  # per value, with several runs
    runs: int  # 0 for a published row
    seeds: tuple[int | None, ...]
    questions: int | None  # per run
    delta: float | None = None  # a baseline: its average minus that of its run with audio
    source: str = "measured here"


@dataclass(frozen=True)
class Table:
    benchmark: Benchmark
    version: str | None
    sha256: str | None
    columns: Columns
    lines: tuple[Line, ...]

    @property
    def title(self) -> str:
        if self.version is None:
            file = f"question file sha256 {self.sha256[:12]}..." if self.sha256 else "question file not recorded"
            return f"{self.benchmark.title}, unknown version ({file})"
        return self.benchmark.version_title(self.version)


def model_label(name: str) -> str:
    """A Hub id as it is ("mispeech/r1-aqa"); a local checkpoint by its folder's name ("checkpoint-200")."""
    if name.count("/") == 1 and not name.startswith(("/", ".", "~")):
        return name
    return Path(name).name or name


def benchmark_of_manifest(manifest: dict) -> Benchmark:
    name = manifest.get("benchmark", MMAU.name)
    if name in BENCHMARKS:
        return BENCHMARKS[name]
    fields = dict(manifest.get("benchmark_fields", {}))
    fields["group_by"] = tuple(fields.get("group_by") or ())
    return custom_benchmark(**fields)


def read_run(path: Path, label: str | None = None) -> Run:
    """A RUN argument, read with its manifest; InputError, in one line, for one without a manifest, or for `--runs`
    files made on different versions of the question file (their figures cannot be pooled)."""
    files = run_files(path)
    manifests = []
    for file in files:
        manifest = read_manifest(file)
        if manifest is None:
            raise InputError(
                f"{file} has no manifest ({companion_paths(file)[1].name}): the leaderboard reads each run's "
                "benchmark, version and settings from it; score a bare predictions file with aqa eval report"
            )
        manifests.append(manifest)
    benchmark = benchmark_of_manifest(manifests[0])
    files_of = [(manifest_version(m, benchmark.name), m.get(benchmark.name, {}).get("sha256")) for m in manifests]
    if len(set(files_of)) > 1:
        versions = ", ".join(sorted({version or f"sha256 {(sha or '?')[:12]}" for version, sha in files_of}))
        raise InputError(
            f"{path}: its runs were made on different {benchmark.title} files ({versions}): figures of different "
            "versions cannot share a column; give each version's runs their own name"
        )
    first = manifests[0]
    settings = first.get("settings", {})
    return Run(
        path=path,
        benchmark=benchmark,
        version=files_of[0][0],
        sha256=files_of[0][1],
        label=label or model_label(first.get("model", path.stem)),
        family=settings.get("family", "-"),
        method=describe_method(first, leave_out=("family", "audio")),
        audio=audio_of(first),
        seeds=tuple(m.get("settings", {}).get("seed") for m in manifests),
        scores=tuple(score_records(read_predictions(file, benchmark), benchmark) for file in files),
    )


def build_tables(runs: Sequence[Run], published: bool = True) -> list[Table]:
    """One table per benchmark version, in the order the runs first name them; in each, one line per setup (runs
    of it pooled), each baseline under its run with audio, then the published lines of the version."""
    tables: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        tables.setdefault(run.table, []).append(run)
    built = []
    for group in tables.values():
        benchmark, version, sha256 = group[0].benchmark, group[0].version, group[0].sha256
        columns = table_columns(benchmark, [score for run in group for score in run.scores])
        setups: dict[tuple, list[Run]] = {}
        for run in sorted(group, key=lambda run: AUDIO_MODES.index(run.audio)):  # stable: first seen stays first
            setups.setdefault(run.setup, []).append(run)
        order = list(dict.fromkeys(run.setup[:-1] for run in group))  # the setups without their audio, first seen
        lines = []
        for base in order:
            heard = [measured_line(setups[key], columns) for key in setups if key[:-1] == base]
            with_audio = next((line.values[-1] for line in heard if line.audio == "clip"), None)
            lines += [with_delta(line, with_audio) for line in heard]
        if published:
            lines += published_lines(benchmark, version, columns)
        built.append(Table(benchmark, version, sha256, columns, tuple(lines)))
    return built


def measured_line(runs: Sequence[Run], columns: Columns) -> Line:
    first = runs[0]
    scores = [score for run in runs for score in run.scores]
    if len(scores) > 1:
        values, spreads = pooled(scores, columns)
    else:
        values, spreads = figures(scores[0], columns), ()
    seeds = tuple(seed for run in runs for seed in run.seeds)
    questions = {score.missing_as_wrong.total for score in scores}
    return Line(
        first.label, first.family, first.method, first.audio, values, spreads, len(scores), seeds, max(questions)
    )


def with_delta(line: Line, with_audio: float | None) -> Line:
    if line.audio == "clip" or with_audio is None or line.values[-1] is None:
        return line
    return replace(line, delta=round(line.values[-1] - with_audio, 2))


def published_lines(benchmark: Benchmark, version: str | None, columns: Columns) -> list[Line]:
    """The benchmark's reference rows for this version, then the families' published overall figures for it that
    the reference rows do not already hold."""
    lines = [
        Line(ref.model, "-", ref.method, "clip", ref.values, (), 0, (), None, source=ref.source)
        for ref in benchmark.references.get(version, ())
    ]
    known = {round(line.values[-1], 2) for line in lines if line.values[-1] is not None}
    blank = (None,) * len(columns.values)
    for family, checkpoint, figure in family_figures(benchmark, version):
        if round(figure, 2) not in known:
            source = f"{checkpoint.sources}, not measured here"
            lines.append(
                Line(checkpoint.hub_id, family, "(reported)", "clip", (*blank, figure), (), 0, (), None, source=source)
            )
    return lines


def family_figures(benchmark: Benchmark, version: str | None) -> list[tuple[str, Published, float]]:
    """(family, published checkpoint, overall figure) for each figure the families publish on this version."""
    if version is None or benchmark.name not in (MMAU.name, MMAR.name):
        return []
    from aqa.families import FAMILIES  # the families' modules import transformers: only when a table needs them

    found = []
    for family in FAMILIES.values():
        for checkpoint in family.published:
            for figure, versions in published_figures(benchmark, checkpoint.mmau, checkpoint.mmar):
                if version in versions:
                    found.append((family.name, checkpoint, figure))
    return found


def published_figures(benchmark: Benchmark, mmau: str, mmar: str) -> list[tuple[float, tuple[str, ...]]]:
    """The figures a family's published text gives for `benchmark`, each with the file versions it was measured on
    (MMAR's leaderboard figures: its known file)."""
    if benchmark.name == MMAU.name:
        return [(float(value), MMAU_PUBLISHED_VERSIONS[name]) for value, name in PUBLISHED_MMAU.findall(mmau)]
    match = PUBLISHED_MMAR.match(mmar.strip())
    return [(float(match.group(1)), tuple(MMAR.versions.values()))] if match else []


# --- output --------------------------------------------------------------------------------------------------------


def markdown(tables: Sequence[Table]) -> str:
    sections = []
    for table in tables:
        header = ["Model", "Family", "Method", "Audio", *table.columns.titles, "Δ vs with audio", "Runs", "Questions"]
        rows = [
            [
                line.model,
                line.family,
                line.method,
                AUDIO_LABELS[line.audio] if line.runs else "with audio (reported)",
                *cells(as_row(line)),
                f"{line.delta:+.2f}" if line.delta is not None else "",
                str(line.runs) if line.runs else "-",
                str(line.questions) if line.questions is not None else "-",
            ]
            for line in table.lines
        ]
        notes = "\n".join(f"- {note}" for note in table_notes(table))
        sections.append(f"### Accuracy (%) on {table.title}\n\n{markdown_table(header, rows)}\n\n{notes}")
    return "\n\n".join(sections)


def table_notes(table: Table) -> list[str]:
    benchmark = table.benchmark
    over = "the questions with a prediction" if benchmark.skips_missing else "all questions"
    notes = [f"Scored with {benchmark.rule}; Average is the accuracy over {over}."]
    if any(line.runs > 1 for line in table.lines):
        notes.append(
            "Several runs of one setup (Runs > 1, seeds differing): the mean ± half-width of the 95% interval of the "
            "mean (Student's t over the runs)."
        )
    if any(line.audio != "clip" for line in table.lines):
        notes.append(
            "Without audio: the same questions asked with the prompt alone, or with silence or white noise of each "
            "clip's length; Δ is its Average minus that of its setup with audio (below zero: the clips helped)."
        )
    if table.version is None:
        notes.append("The question file is not a known version: compare only with runs on the very same file.")
    for line in table.lines:
        if not line.runs:
            notes.append(f"{line.model}, {line.method}: from {line.source}.")
    return notes


def as_row(line: Line) -> Row:
    return Row(line.model, line.method, line.values, line.spreads, baseline=line.audio != "clip")


CSV_FIELDS = ["benchmark", "version", "model", "family", "method", "audio", "column", "value", "ci95_low", "ci95_high"]
CSV_FIELDS += ["runs", "seeds", "questions", "delta_vs_with_audio", "source"]


def csv_text(tables: Sequence[Table]) -> str:
    """One line per figure (table, row, column): easy to filter, pivot or plot elsewhere."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for table in tables:
        for line in table.lines:
            for number, column in enumerate(table.columns.titles):
                spread = line.spreads[number] if line.spreads else None
                writer.writerow(
                    {
                        "benchmark": table.benchmark.name,
                        "version": table.version or f"unknown (sha256 {table.sha256})",
                        "model": line.model,
                        "family": line.family,
                        "method": line.method,
                        "audio": line.audio,
                        "column": column,
                        "value": "" if line.values[number] is None else line.values[number],
                        "ci95_low": "" if spread is None or spread.low is None else spread.low,
                        "ci95_high": "" if spread is None or spread.high is None else spread.high,
                        "runs": line.runs,
                        "seeds": " ".join(str(seed) for seed in line.seeds if seed is not None),
                        "questions": "" if line.questions is None else line.questions,
                        "delta_vs_with_audio": "" if line.delta is None else line.delta,
                        "source": line.source,
                    }
                )
    return out.getvalue()


def chart(tables: Sequence[Table], path: Path) -> None:
    """One panel per table: each line's bars, 95% intervals where it has several runs, baselines hatched."""
    panels = []
    for table in tables:
        rows = [
            Row(line.model, f"{line.family}, {line.method}, {AUDIO_LABELS[line.audio]}" if line.runs else line.method,
                line.values, line.spreads, baseline=line.audio != "clip")
            for line in table.lines
        ]  # fmt: skip
        panels.append((table.title, table.columns.titles, rows))
    draw_panels(panels, path)
