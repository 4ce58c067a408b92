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
from aqa.errors import AQAError, InputError, kind_of
from aqa.jsonl import ResumableJsonl, parse_lines
from aqa.model import AQAModel
from aqa.options import DecodingOptions, Question


@dataclass(frozen=True)
class BatchOutcome:
    total: int  # questions in the input file
    skipped: int  # already answered by an earlier run
    answered: int
    failed: int  # rows written with an `error`, retried by the next run


def read_questions(path: Path) -> list[tuple[str, Question]]:
    """(key, question) per input row; the key is the row's id, else its number among the rows. InputError naming
    `file:line` for a line that is not a question (not JSON, a field missing or of the wrong type)."""
    if not path.is_file():
        raise InputError(f"{path}: no such input file")
    questions = []
    for index, (line, row) in enumerate(parse_lines(path), start=1):
        if isinstance(row, str):
            raise InputError(f"{path}:{line}: {row}")
        missing = [field for field in ("audio", "question", "options") if field not in row]
        if missing:
            raise InputError(f"{path}:{line}: no {', '.join(missing)}")
        if not isinstance(row["audio"], str):
            raise InputError(f"{path}:{line}: audio must be a file path, not {kind_of(row['audio'])}")
        if not row["audio"].strip():
            raise InputError(f"{path}:{line}: audio is empty")
        try:  # the text is checked per row later (a bad one is that row's error); a wrong type cannot even be asked
            question = Question(path.parent / row["audio"], row["question"], row["options"], name=row["audio"])
        except InputError as error:
            raise InputError(f"{path}:{line}: {error}") from None
        questions.append((str(row.get("id", index)), question))
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
