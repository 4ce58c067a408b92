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
    # The grouping the report's table shows as columns and its values in order (none: the values found, sorted).
    columns: tuple[str | None, tuple[str, ...]]
    # Every grouping scored: the field and its values, always listed (fields with listed values must be in every
    # record, as the official scorer needs them; with none, the values found are scored and the field is optional).
    groupings: tuple[tuple[str, tuple[str, ...]], ...]
    prediction_key: str  # the key the official scorer reads the prediction from
    id_field: str = "id"
    question_field: str = "question"
    choices_field: str = "choices"
    answer_field: str = "answer"  # the correct option's text
    other_prediction_keys: tuple[str, ...] = ()  # also read (after prediction_key) and written beside it
    nested_groupings: dict[str, str] = field(default_factory=dict)  # a grouping without listed values -> its JSON key
    column_titles: tuple[str, ...] = ()  # the table's titles of the column values (default: the values, titled)
    # Whether the official scorer leaves records without a prediction out of its accuracy (MMAR's does, and its
    # leaderboard quotes that) rather than counting them wrong (this project's choice where no such number is quoted).
    skips_missing: bool = False
    versions: dict[str, str] = field(default_factory=dict)  # sha256 of a known question file -> its version
    references: dict[str, tuple[Reference, ...]] = field(default_factory=dict)  # version -> published rows
    audio_hint: str = "the folder the records' audio paths are relative to"  # what --audio-dir is
    scorer: str = ""  # the benchmark's own scoring script, named in messages ("": it has none, as a custom file)

    @property
    def prediction_keys(self) -> tuple[str, ...]:
        return (self.prediction_key, *self.other_prediction_keys)

    @property
    def listed_groupings(self) -> tuple[str, ...]:
        return tuple(name for name, values in self.groupings if values)

    @property
    def record_fields(self) -> tuple[str, ...]:
        """What every record of a question file must have."""
        fields = (self.id_field, self.audio_field, self.question_field, self.choices_field, self.answer_field)
        return fields + self.listed_groupings

    @property
    def scored_fields(self) -> tuple[str, ...]:
        """What scoring needs of a predictions file."""
        return (self.id_field, self.choices_field, self.answer_field, *self.listed_groupings)

    def nested_key(self, grouping: str) -> str:
        return self.nested_groupings.get(grouping, grouping)

    @property
    def rule(self) -> str:
        """The scoring rule, as messages and reports name it."""
        return f"{self.title}'s official rule" if self.scorer else "MMAU's word-set rule"

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
    column_titles=("Sound", "Music", "Speech"),
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
    scorer="MMAU's evaluation.py",
)

MMAR_README = "MMAR's README leaderboard (github.com/ddlBoJack/MMAR), not measured here"
MMAR_MODALITIES = (
    "sound",
    "music",
    "speech",
    "mix-sound-music",
    "mix-sound-speech",
    "mix-music-speech",
    "mix-sound-music-speech",
)
MMAR_ROWS = (
    Reference("R1-AQA", "(reported)", (55.8, 37.4, 49.0, 9.1, 50.0, 50.0, 50.0, 47.6), MMAR_README),
    Reference("Qwen2-Audio-Instruct", "(reported)", (33.3, 24.3, 32.3, 9.1, 31.2, 30.5, 25.0, 30.0), MMAR_README),
    # the leaderboard lists Qwen2.5-Omni-7B by its size in all, 10.7B
    Reference("Qwen2.5-Omni 7B", "(reported)", (58.8, 40.8, 59.9, 54.5, 61.9, 67.1, 58.3, 56.7), MMAR_README),
)

MMAR = Benchmark(
    name="mmar",
    title="MMAR",
    audio_field="audio_path",  # "./audio/<id>.wav", relative to the folder of MMAR-meta.jsonl and audio/
    columns=("modality", MMAR_MODALITIES),
    column_titles=("Sound", "Music", "Speech", "Sound-Music", "Sound-Speech", "Music-Speech", "Sound-Music-Speech"),
    groupings=(
        ("modality", MMAR_MODALITIES),
        ("category", ("Signal Layer", "Perception Layer", "Semantic Layer", "Cultural Layer")),
        ("sub-category", ()),
    ),
    prediction_key="answer_prediction",  # what MMAR's code/evaluation.py reads
    nested_groupings={"sub-category": "subcategories"},
    skips_missing=True,
    # The meta file as the MMAR repository holds it today (commit a355584 of 2026-02-16, which added the rubrics; the
    # leaderboard's numbers were published earlier, in 2025, and may come from an earlier file of the same questions).
    versions={"1c9a343e7bebf1037482b935c54eacd43cc63df7b2c668724b5560caf1f84fad": "2026-02-16"},
    references={"2026-02-16": MMAR_ROWS},
    audio_hint="the folder that holds audio/ (MMAR's clips, from the Hugging Face dataset BoJack/MMAR)",
    scorer="MMAR's code/evaluation.py",
)

BENCHMARKS = {benchmark.name: benchmark for benchmark in (MMAU, MMAR)}
CUSTOM = "custom"  # `--benchmark custom`: any JSON or JSON-lines file, its fields named by flags


def custom_benchmark(
    audio_field: str = "audio",
    question_field: str = "question",
    choices_field: str = "choices",
    answer_field: str = "answer",
    id_field: str = "id",
    group_by: tuple[str, ...] = (),
    title: str = "custom benchmark",
) -> Benchmark:
    """A team's own multiple-choice file: accuracy by MMAU's rule, grouped by any fields, the first as the columns."""
    return Benchmark(
        name=CUSTOM,
        title=title,
        audio_field=audio_field,
        id_field=id_field,
        question_field=question_field,
        choices_field=choices_field,
        answer_field=answer_field,
        columns=(group_by[0] if group_by else None, ()),
        groupings=tuple((name, ()) for name in group_by),
        prediction_key="model_output",
    )


def custom_fields(benchmark: Benchmark) -> dict:
    """What rebuilds a custom benchmark (kept in its runs' manifests): custom_benchmark(**fields)."""
    return {
        "audio_field": benchmark.audio_field,
        "question_field": benchmark.question_field,
        "choices_field": benchmark.choices_field,
        "answer_field": benchmark.answer_field,
        "id_field": benchmark.id_field,
        "group_by": [name for name, _ in benchmark.groupings],
        "title": benchmark.title,
    }
