"""Answering a JSON-lines file of questions into a JSON-lines file of answers, resumably (`aqa batch`).

Each input row is `{"audio": "clips/a.wav", "question": "...", "options": ["...", "..."], "id": "..."}`; audio paths
are relative to the input file, and `id` defaults to the line number. Answers are appended as batches finish, so a
killed run loses at most the batch in flight; a rerun skips the rows already answered and retries failed ones.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aqa.answering import answer_many
from aqa.errors import AQAError, InputError
from aqa.jsonl import ResumableJsonl, read_jsonl
from aqa.model import AQAModel
from aqa.options import DecodingOptions, Question


@dataclass(frozen=True)
class BatchOutcome:
    total: int  # questions in the input file
    skipped: int  # already answered by an earlier run
    answered: int
    failed: int  # rows written with an `error`, retried by the next run


def read_questions(path: Path) -> list[tuple[str, Question]]:
    """(key, question) per input row; the key is the row's id, else its line number."""
    if not path.is_file():
        raise InputError(f"{path}: no such input file")
    questions = []
    for number, row in enumerate(read_jsonl(path), start=1):
        missing = [field for field in ("audio", "question", "options") if field not in row]
        if missing:
            raise InputError(f"{path}: row {number} has no {', '.join(missing)}")
        audio = Path(row["audio"]) if Path(row["audio"]).is_absolute() else path.parent / row["audio"]
        questions.append(
            (str(row.get("id", number)), Question(audio, row["question"], tuple(row["options"]), name=row["audio"]))
        )
    return questions


def answer_file(
    load: Callable[[], AQAModel],
    input_path: Path,
    output_path: Path,
    decoding: DecodingOptions = DecodingOptions(),
    batch_size: int = 8,
) -> BatchOutcome:
    """Answer the questions of `input_path` not yet in `output_path`; `load` is called only if any are left."""
    questions = read_questions(input_path)
    answered = failed = 0
    with ResumableJsonl(output_path, key="id") as output:
        todo = [(key, question) for key, question in questions if key not in output.done]
        print(f"{len(questions) - len(todo)} of {len(questions)} already answered in {output_path}", file=sys.stderr)
        if todo:
            model = load()
            pending = answer_many(model, [q for _, q in todo], decoding, batch_size, progress=True)
            for index, result in pending:
                key, question = todo[index]
                row = {"id": key, "audio": question.name, "question": question.text, "options": list(question.options)}
                if isinstance(result, AQAError):
                    failed += 1
                    row["error"] = str(result)
                else:
                    answered += 1
                    row.update(result.to_dict())
                output.write([row])
    return BatchOutcome(len(questions), len(questions) - len(todo), answered, failed)
