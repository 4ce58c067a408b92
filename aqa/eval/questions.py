"""Question files and predictions files: read, checked record by record, and identified by sha256 as a known version.

A question file is a JSON list of records, or JSON lines (one record per line); a predictions file is the same
records with prediction fields added.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aqa.errors import InputError
from aqa.eval.benchmarks import MMAU, Benchmark
from aqa.eval.score import missing_from

QUESTION_FIELDS = ("question_field", "choices_field", "answer_field")  # what must agree with the question file


@dataclass(frozen=True)
class QuestionFile:
    benchmark: Benchmark
    path: Path
    records: tuple[dict, ...]  # in file order
    sha256: str  # of the file's bytes
    version: str | None  # a known release of the benchmark's file ("2025-03-25" ...), or None

    @property
    def version_title(self) -> str:
        return self.benchmark.version_title(self.version)


def load_questions(path: str | Path, benchmark: Benchmark = MMAU) -> QuestionFile:
    """Read a question file and identify its version by sha256; InputError names the first bad record."""
    path = Path(path)
    data, records = read_records(path, f"{benchmark.title} question file", benchmark.record_fields, benchmark)
    digest = hashlib.sha256(data).hexdigest()
    return QuestionFile(benchmark, path, tuple(records), digest, benchmark.versions.get(digest))


def read_predictions(path: str | Path, benchmark: Benchmark = MMAU) -> list[dict]:
    """A predictions file: the benchmark's records with a prediction (ours, R1-AQA's or anyone's)."""
    return read_records(Path(path), "predictions file", benchmark.scored_fields, benchmark)[1]


def read_records(path: Path, what: str, fields: Sequence[str], benchmark: Benchmark) -> tuple[bytes, list[dict]]:
    """The file's bytes and its records, each checked for `fields`; InputError names the first bad one."""
    if not path.is_file():
        raise InputError(f"{path}: no such {what}")
    data = path.read_bytes()
    try:
        records = parse_records(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not a JSON file, nor JSON lines ({error})") from None
    check_records(records, path, fields, benchmark)
    return data, records


def parse_records(data: bytes):
    """A JSON document (MMAU's list of records), or JSON lines (MMAR's meta file: one record per line)."""
    text = data.decode("utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            raise
        return [json.loads(line) for line in lines]


def check_records(records, path: Path, fields: Sequence[str], benchmark: Benchmark) -> None:
    if not isinstance(records, list) or not all(isinstance(record, dict) for record in records):
        raise InputError(f"{path}: expected a JSON list (or JSON lines) of {benchmark.title} records")
    for number, record in enumerate(records, start=1):
        absent = [name for name in fields if name not in record]
        if absent:
            raise InputError(f"{path}: record {number} has no {', '.join(absent)}")
        if not isinstance(record[benchmark.choices_field], list):
            raise InputError(f"{path}: record {number}: {benchmark.choices_field} must be a list")
    ids = [record[benchmark.id_field] for record in records]
    if len(set(map(str, ids))) != len(ids):
        raise InputError(f"{path}: ids repeat; {benchmark.title} ids must be unique")


def find_audio(audio_dir: Path, audio_id: str) -> Path:
    """The record's audio path is relative to the benchmark's folder ("./test-mini-audios/<id>.wav"); a folder
    holding the clips themselves works too."""
    path = audio_dir / audio_id
    flat = audio_dir / Path(audio_id).name
    return flat if not path.exists() and flat.exists() else path


def with_reference(records: list[dict], questions: QuestionFile) -> list[dict]:
    """Predictions checked against their question file; its records absent from them are added, as missing."""
    benchmark = questions.benchmark
    key = benchmark.id_field
    by_id = {record[key]: record for record in questions.records}
    fields = [getattr(benchmark, name) for name in QUESTION_FIELDS]
    alien = [r[key] for r in records if r[key] not in by_id]
    changed = [r[key] for r in records if r[key] in by_id and any(r[f] != by_id[r[key]][f] for f in fields)]
    if alien or changed:
        raise InputError(
            f"the predictions do not match {questions.path}: {len(alien)} unknown id(s), {len(changed)} question(s) "
            f"that differ (another version?), e.g. {(alien + changed)[0]}"
        )
    return records + missing_from(records, questions.records, benchmark)
