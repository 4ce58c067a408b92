"""Benchmarks as small declarative descriptions: where each field of a record is, how results are grouped, which key
the official scorer reads, the known versions of the question file, and published reference rows with their source.

Adding a benchmark is one `Benchmark(...)` here (and its tests); the run, scoring, report and sweep read only this.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Reference:
    """A published result, shown beside runs on the file version it was measured on; never measured here."""

    model: str
    method: str
    values: tuple[float, ...]  # percent: one per column of the benchmark's table, then the overall accuracy
    source: str  # where the number was published


@dataclass(frozen=True)
class Benchmark:
    name: str  # the command-line name: `aqa eval run --benchmark NAME`
    title: str  # how reports name it
    audio_field: str  # each record's audio path, relative to --audio-dir
    columns: tuple[str, tuple[str, ...]]  # the grouping the report's table shows as columns, and its values in order
    groupings: tuple[tuple[str, tuple[str, ...]], ...]  # every grouping scored: field, values always listed (or ())
    prediction_key: str  # the key the official scorer reads the prediction from
    id_field: str = "id"
    question_field: str = "question"
    choices_field: str = "choices"
    answer_field: str = "answer"  # the correct option's text
    other_prediction_keys: tuple[str, ...] = ()  # also read (after prediction_key) and written beside it
    nested_groupings: dict[str, str] = field(default_factory=dict)  # grouping field -> JSON key of its nested table
    versions: dict[str, str] = field(default_factory=dict)  # sha256 of a known question file -> its version
    references: dict[str, tuple[Reference, ...]] = field(default_factory=dict)  # version -> published rows
    audio_hint: str = "the folder the records' audio paths are relative to"  # what --audio-dir is

    @property
    def prediction_keys(self) -> tuple[str, ...]:
        return (self.prediction_key, *self.other_prediction_keys)

    @property
    def record_fields(self) -> tuple[str, ...]:
        """What every record of a question file must have."""
        fields = (self.id_field, self.audio_field, self.question_field, self.choices_field, self.answer_field)
        return fields + tuple(name for name, _ in self.groupings)

    @property
    def scored_fields(self) -> tuple[str, ...]:
        """What scoring needs of a predictions file."""
        return (self.id_field, self.choices_field, self.answer_field, *(name for name, _ in self.groupings))

    def version_title(self, version: str | None) -> str:
        return f"{self.title}, {'unknown version' if version is None else f'version {version}'}"


R1_AQA_README = "R1-AQA's README (github.com/xiaomi-research/r1-aqa), not measured here"
R1_AQA_ROWS = (
    # R1-AQA's README quotes the MMAU leaderboard's direct-inference number for its base model.
    Reference("Qwen2-Audio-7B-Instruct", "Direct Inference (reported)", (54.95, 50.98, 42.04, 49.20), R1_AQA_README),
    Reference("Qwen2-Audio-7B-Instruct", "GRPO, R1-AQA (reported)", (69.37, 66.77, 57.36, 64.50), R1_AQA_README),
)

MMAU = Benchmark(
    name="mmau",
    title="MMAU test-mini",
    audio_field="audio_id",  # "./test-mini-audios/<id>.wav", relative to the MMAU folder
    columns=("task", ("sound", "music", "speech")),
    groupings=(
        ("task", ("sound", "music", "speech")),
        ("difficulty", ("easy", "medium", "hard")),
        ("sub-category", ()),
    ),
    # MMAU's evaluation.py reads model_output; MMAU's README (and R1-AQA's test script) name model_prediction.
    prediction_key="model_output",
    other_prediction_keys=("model_prediction",),
    nested_groupings={"sub-category": "subcategories"},
    # sha256 of the test-mini files in the MMAU repository (github.com/Sakshi113/MMAU): scores from different
    # versions are not comparable (364 of 1000 items changed between the last two), so every number names its version.
    versions={
        # commit a5cd89a: the file when R1-AQA's paper appeared (2025-03-14); one answer differs from 2025-03-25's
        # (id 1a5dd76a-7905-4a83-bd88-7ae26730656d: "A bird chirping" here, "A cat meowing" there)
        "ed2fd6b6c24ebec1a5a496de5d767e7ebfe79556044d8f0d8bd00ad0cf02d623": "2025-01-28",
        "e8cc09223b497191781756212cb616315690aaa6ea7ac359db1b65d97d1e2433": "2025-03-25",  # commit 1f675a9
        "9f18fda99f8dbc2bc5ecd6323fb5063309f54969810b5c6f1caeb3b8d904cf1c": "2025-08-09",  # commit f0a4a97, v05.15.25
    },
    # R1-AQA's numbers were measured on a file of early 2025, 2025-01-28's or 2025-03-25's (one answer apart: at
    # most 0.1 point), so they are shown beside both; the 2025-08-09 file changed 364 items.
    references={version: R1_AQA_ROWS for version in ("2025-01-28", "2025-03-25")},
    audio_hint="the folder that holds test-mini-audios/",
)

BENCHMARKS = {benchmark.name: benchmark for benchmark in (MMAU,)}
