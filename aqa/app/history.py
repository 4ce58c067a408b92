"""One page's answers, newest first: what a record keeps, the tester's judgement, the tables the page shows and the
CSV and JSON Lines files it downloads. Neither Gradio nor torch."""

from __future__ import annotations

import csv
import io
import json
import shutil
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from pathlib import Path

import aqa
from aqa.jsonl import write_atomic, write_jsonl

# How the answer was chosen (Result.answer_source), in words.
ANSWER_SOURCES = {
    "text": "the option the model wrote",
    "probabilities": "the most probable option, since the model's text named none of them",
    "windows": "the option with the highest mean probability over the clip's windows",
    "none": "no answer",
}
# What the history keeps of one model's answer.
MODEL_COLUMNS = [
    "model",
    "family",
    "precision",
    "answer",
    "answer source",
    "probabilities",
    "windows",
    "raw output",
    "thinking",
    "note",
    "seconds",
    "seconds audio",
    "seconds features",
    "seconds generation",
    "seconds scoring",
]
# The downloaded history (CSV and JSON Lines), one row per answer, newest first. The tester fills in `expected` and
# `comment` on the page; `correct` follows from `expected`.
HISTORY_COLUMNS = [
    "time",
    "model",
    "family",
    "precision",
    "decoding",
    "thinking mode",
    "clip",
    "clip seconds",
    "question",
    "options",
    *MODEL_COLUMNS[3:],
    "expected",
    "correct",
    "comment",
]
# With --compare, the second model's columns follow, named with this prefix, and whether the two answers agree.
COMPARE = "compare "
COMPARE_COLUMNS = [COMPARE + column for column in MODEL_COLUMNS] + ["agree", COMPARE + "correct"]
# The page's tables: every column on a wide screen, and a compact set that a phone shows without sideways scrolling.
TABLE_COLUMNS = ["#", "time", "clip", "question", "options", "answer", "top", "expected", "correct", "comment"]
COMPACT_COLUMNS = ["#", "question", "answer", "✓"]
# Characters of a question, of the options together and of a comment shown in a table cell (the files keep all).
CELL_CHARS = {"question": 100, "options": 60, "comment": 80, "answer": 32, "clip · question": 70}
RECORDING = "audio.wav"  # the name Gradio gives every microphone recording (and every edited clip)
MARKS = {True: "✓", False: "✗", None: ""}


class History:
    """One page's answers, newest first, and the files it downloads as. Handlers change it in place under its lock,
    so that a judgement saved while a question is being answered is not lost."""

    def __init__(self):
        self.records: list[dict] = []  # the history's columns, plus "#" and the clip's "path"
        self.saves = 0  # versions of the history files written
        self.saved: Path | None = None  # the folder of the latest version
        self.lock = threading.Lock()

    def find(self, number) -> dict | None:
        return next((record for record in self.records if record["#"] == number), None)

    def add(self, record: dict) -> dict:
        """Number the record and put it first."""
        record["#"] = len(self.records) + 1
        self.records.insert(0, record)
        return record

    def clip_name(self, path: str) -> str:
        """The clip's file name, made unique in this history: every recording is `audio.wav` to Gradio."""
        for record in self.records:
            if record["path"] == path:
                return record["clip"]
        taken = {record["clip"] for record in self.records}
        if Path(path).name == RECORDING:
            candidates = (f"recording-{number}.wav" for number in range(1, len(taken) + 2))
        else:
            stem, suffix = Path(path).stem, Path(path).suffix
            candidates = (
                f"{stem}-{number}{suffix}" if number > 1 else Path(path).name for number in range(1, len(taken) + 2)
            )
        return next(name for name in candidates if name not in taken)


def history_record(
    models: Sequence[aqa.AQAModel],
    decoding: aqa.DecodingOptions,
    clip: str,
    path: str,
    question: str,
    options: Sequence[str],
    results: Sequence[aqa.Result],
) -> dict:
    """What the history keeps of one answer (HISTORY_COLUMNS, and COMPARE_COLUMNS for a second model, plus the clip's
    path to tell clips apart)."""
    budget = f"{'sampling' if decoding.sample else 'greedy'}, up to {decoding.token_budget} new tokens"
    windows = "; a clip longer than the model hears, window by window" if decoding.long_audio == "windows" else ""
    record = {
        "time": datetime.now().isoformat(timespec="seconds"),
        "decoding": budget + windows,
        "thinking mode": decoding.think,
        "clip": clip,
        "clip seconds": round(results[0].duration, 2),
        "question": question,
        "options": list(options),
        **model_fields(models[0], results[0]),
    }
    if len(results) > 1:
        record |= {COMPARE + column: value for column, value in model_fields(models[1], results[1]).items()}
        record |= {"agree": results[0].answer == results[1].answer, COMPARE + "correct": None}
    return record | {"expected": None, "correct": None, "comment": "", "path": path}


def model_fields(model: aqa.AQAModel, result: aqa.Result) -> dict:
    """MODEL_COLUMNS: what the history keeps of one model's answer."""
    timings = result.timings
    windows = [
        {
            "start": window.start,
            "end": window.end,
            "answer": window.answer,
            "probabilities": rounded(window.probabilities),
        }
        for window in result.windows
    ]
    return {
        "model": model.name,
        "family": model.family.name,
        "precision": model.precision,
        "answer": result.answer,
        "answer source": ANSWER_SOURCES[result.answer_source],
        "probabilities": rounded(result.probabilities),
        "windows": windows or None,
        "raw output": result.raw,
        "thinking": result.think,
        "note": result.note,
        "seconds": round(timings.total, 3),
        "seconds audio": round(timings.audio, 3),
        "seconds features": round(timings.features, 3),
        "seconds generation": round(timings.generation, 3),
        "seconds scoring": round(timings.scoring, 3),
    }


def rounded(probabilities: dict[str, float]) -> dict[str, float]:
    return {option: round(p, 4) for option, p in probabilities.items()}


def judge(record: dict, expected: str | None, comment: str | None) -> None:
    """The tester's expected answer (one of the record's options, or none) and comment; each model's answer is then
    marked correct or not."""
    record["expected"] = expected if expected in record["options"] else None
    for prefix in ("", COMPARE):
        if prefix + "answer" in record:
            correct = None if record["expected"] is None else record[prefix + "answer"] == record["expected"]
            record[prefix + "correct"] = correct
    record["comment"] = (comment or "").strip()


def table_rows(history: History) -> list[list]:
    """The page's history table; with two models, both answers ("Man ≠ Woman" where they disagree)."""

    def top(probabilities: dict) -> str:
        return f"{max(probabilities.values(), default=0.0):.0%}"

    rows = []
    for record in history.records:
        best = top(record["probabilities"])
        if COMPARE + "answer" in record:
            best = f"{best} · {top(record[COMPARE + 'probabilities'])}"
        rows.append(
            [
                record["#"],
                record["time"][11:],
                record["clip"],
                shortened(record["question"], CELL_CHARS["question"]),
                shortened(" | ".join(record["options"]), CELL_CHARS["options"]),
                answer_cell(record),
                best,
                record["expected"] or "",
                correct_cell(record),
                shortened(record["comment"], CELL_CHARS["comment"]),
            ]
        )
    return rows


def compact_rows(history: History) -> list[list]:
    """The history at phone width (COMPACT_COLUMNS): the number, the clip and question in one cell, the answer, the
    mark."""
    return [
        [
            record["#"],
            shortened(f"{record['clip']} · {record['question']}", CELL_CHARS["clip · question"]),
            answer_cell(record),
            correct_cell(record),
        ]
        for record in history.records
    ]


def answer_cell(record: dict) -> str:
    answer = shortened(record["answer"] or "", CELL_CHARS["answer"])
    if COMPARE + "answer" in record:
        sign = "=" if record["agree"] else "≠"
        other = shortened(record[COMPARE + "answer"] or "(none)", CELL_CHARS["answer"])
        answer = f"{answer or '(none)'} {sign} {other}"
    return answer


def correct_cell(record: dict) -> str:
    correct = MARKS[record["correct"]]
    if COMPARE + "answer" in record and record["expected"] is not None:
        correct = f"{correct} · {MARKS[record[COMPARE + 'correct']]}"
    return correct


def shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def write_history(
    history: History,
    folder: Path,
    stem: str,
    columns: Sequence[str] = HISTORY_COLUMNS,
    room: Callable[[int], AbstractContextManager[bool]] = lambda size: nullcontext(True),
) -> list[str] | None:
    """The history as CSV and as JSON Lines (same columns; lists and mappings as JSON in the CSV); None when `room`
    (the disk quota) has no room for them.

    Each version goes to a folder of its own and the previous one is removed, so that a download link never gets a
    copy the browser kept of an earlier version."""
    rows = [{column: record[column] for column in columns} for record in history.records]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns)
    writer.writeheader()
    writer.writerows({column: csv_cell(value) for column, value in row.items()} for row in rows)
    table = text.getvalue()
    with room(3 * len(table.encode())) as fits:  # the CSV, and JSON Lines of about its size, with room to spare
        if not fits:
            return None
        history.saves += 1
        target = folder / f"{stem}-{history.saves}"
        paths = [target / f"{stem}.csv", target / f"{stem}.jsonl"]
        write_atomic(paths[0], table)
        write_jsonl(paths[1], rows)
    if history.saved is not None:
        shutil.rmtree(history.saved, ignore_errors=True)
    history.saved = target
    return [str(path) for path in paths]


def csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
