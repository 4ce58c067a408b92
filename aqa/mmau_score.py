"""MMAU scoring: the official rule of MMAU's `evaluation.py`, exactly, and a strict metric beside it.

The official rule (FACTS.md): lowercase both texts and take their sets of words (`\\b\\w+\\b`); a prediction is correct
iff it holds every word of the answer and none of the words that occur only in wrong choices; a prediction with no
words is wrong. MMAU's script reads the key `model_output` and silently skips records without it, so a run that
lost answers looks better than it is; here such a record counts as wrong and is reported.

The strict metric asks the aqa parser instead: the text of the `<answer>` tag (when the raw output is kept) must map
unambiguously to the correct option. The gap between the two shows how much the lenient rule moves the score.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from aqa.parsing import extract_answer, match_option

WORD = re.compile(r"\b\w+\b")
TASKS = ("sound", "music", "speech")
DIFFICULTIES = ("easy", "medium", "hard")
# The official script reads model_output; MMAU's README (and some tools) name model_prediction. Either is read,
# model_output first because that is what the official numbers come from.
PREDICTION_KEYS = ("model_output", "model_prediction")
# The untouched generated text: ours, then R1-AQA's test script's name for it.
RAW_KEYS = ("raw_output", "model_output_ori")


def words(text: str) -> set[str]:
    """The official tokenizer: the set of lowercased word tokens."""
    return set(WORD.findall(text.lower()))


def official_match(answer: str, prediction: str, choices: Sequence[str]) -> bool:
    """MMAU's `string_match`: every answer word present, no word that belongs only to wrong choices."""
    predicted = words(prediction)
    if not predicted:
        return False
    correct = words(answer)
    wrong: set[str] = set()
    for choice in choices:
        tokens = words(choice)
        if tokens != correct:  # a choice with the answer's very words (a repeat of it) is not a wrong choice
            wrong |= tokens - correct
    return correct <= predicted and predicted.isdisjoint(wrong)


def prediction_of(record: dict) -> str | None:
    """The record's prediction text, or None when it has none (a missing prediction, counted wrong)."""
    for key in PREDICTION_KEYS:
        if isinstance(record.get(key), str):
            return record[key]
    return None


def strict_match(record: dict) -> bool:
    """The aqa parser maps the answer to exactly the correct option; with the raw text kept, the tag is required."""
    raw = next((record[key] for key in RAW_KEYS if isinstance(record.get(key), str)), None)
    candidate = extract_answer(raw) if raw is not None else prediction_of(record)
    return match_option(candidate, record["choices"]) == record["answer"]


def is_correct(record: dict) -> bool:
    prediction = prediction_of(record)
    return prediction is not None and official_match(record["answer"], prediction, record["choices"])


def is_strictly_correct(record: dict) -> bool:
    return prediction_of(record) is not None and strict_match(record)


@dataclass(frozen=True)
class Tally:
    correct: int = 0
    total: int = 0

    @property
    def percent(self) -> float | None:
        """Accuracy in percent to two decimals, as MMAU's script prints it; None for an empty group."""
        return round(100 * self.correct / self.total, 2) if self.total else None

    def add(self, correct: bool) -> Tally:
        return Tally(self.correct + int(correct), self.total + 1)


@dataclass(frozen=True)
class Accuracy:
    """Accuracy overall and per task, difficulty and sub-category."""

    total: Tally
    tasks: dict[str, Tally]
    difficulties: dict[str, Tally]
    subcategories: dict[str, Tally]


def tally(records: Sequence[dict], correct: Callable[[dict], bool]) -> Accuracy:
    groups: dict[str, dict[str, Tally]] = {
        "task": {name: Tally() for name in TASKS},
        "difficulty": {name: Tally() for name in DIFFICULTIES},
        "sub-category": {},
    }
    total = Tally()
    for record in records:
        ok = correct(record)
        total = total.add(ok)
        for key, group in groups.items():
            name = record.get(key)
            if name is not None:
                group[name] = group.get(name, Tally()).add(ok)
    return Accuracy(total, groups["task"], groups["difficulty"], groups["sub-category"])


@dataclass(frozen=True)
class Score:
    official: Accuracy  # every record; no prediction = wrong
    strict: Accuracy  # the aqa parser against the correct option
    answered_only: Tally  # what MMAU's evaluation.py prints: records without a prediction skipped
    missing: tuple[str, ...] = field(default=())  # ids of records with no prediction

    @property
    def n(self) -> int:
        return self.official.total.total


def score_records(records: Sequence[dict]) -> Score:
    """Score MMAU records carrying a prediction under `model_output` or `model_prediction`."""
    missing = tuple(str(record.get("id")) for record in records if prediction_of(record) is None)
    answered = [record for record in records if prediction_of(record) is not None]
    answered_only = Tally(sum(map(is_correct, answered)), len(answered))
    return Score(tally(records, is_correct), tally(records, is_strictly_correct), answered_only, missing)


def headline(accuracy: Accuracy) -> dict[str, float | None]:
    """The seed table's numbers: per task, per difficulty and total (the "Average" column), in percent."""
    row = {name: accuracy.tasks[name].percent for name in TASKS}
    row.update({name: accuracy.difficulties[name].percent for name in DIFFICULTIES})
    row["total"] = accuracy.total.percent
    return row


def score_to_dict(score: Score) -> dict:
    """The `--json` output: official percentages at the top level, the strict metric and details beside."""
    return {
        **headline(score.official),
        "n": score.n,
        "missing": len(score.missing),
        "missing_ids": list(score.missing),
        "subcategories": {name: t.percent for name, t in sorted(score.official.subcategories.items())},
        "answered_only_total": score.answered_only.percent,
        "strict": {
            **headline(score.strict),
            "subcategories": {name: t.percent for name, t in sorted(score.strict.subcategories.items())},
        },
        "counts": {
            "total": [score.official.total.correct, score.n],
            **{name: [t.correct, t.total] for name, t in score.official.tasks.items()},
            **{name: [t.correct, t.total] for name, t in score.official.difficulties.items()},
        },
    }


def format_score(score: Score, title: str) -> str:
    """A plain-text report: official and strict accuracy side by side, then the missing predictions."""
    lines = [title, f"{'':34}{'official':>9}{'strict':>9}{'n':>7}"]
    sections = (
        ("task", TASKS, score.official.tasks, score.strict.tasks),
        ("difficulty", DIFFICULTIES, score.official.difficulties, score.strict.difficulties),
        (
            "sub-category",
            sorted(score.official.subcategories),
            score.official.subcategories,
            score.strict.subcategories,
        ),
    )
    for heading, names, official, strict in sections:
        lines.append(f"{heading}:")
        lines += [line(f"  {name}", official[name], strict[name]) for name in names]
    lines.append(line("total", score.official.total, score.strict.total))
    lines += missing_lines(score)
    return "\n".join(lines)


def line(label: str, official: Tally, strict: Tally) -> str:
    return f"{label[:34]:34}{percent(official.percent):>9}{percent(strict.percent):>9}{official.total:>7}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def missing_lines(score: Score, shown: int = 10) -> list[str]:
    if not score.missing:
        return [f"every one of the {score.n} records has a prediction"]
    ids = ", ".join(score.missing[:shown]) + (
        f" and {len(score.missing) - shown} more" if len(score.missing) > shown else ""
    )
    return [
        f"missing predictions: {len(score.missing)} of {score.n}, counted wrong above: {ids}",
        f"(MMAU's evaluation.py silently skips them and would print {percent(score.answered_only.percent)} "
        f"over {score.answered_only.total})",
    ]


def missing_from(records: Iterable[dict], reference: Sequence[dict]) -> list[dict]:
    """Records of the reference file absent from a predictions file, as prediction-less records (counted wrong)."""
    present = {record.get("id") for record in records}
    return [dict(record) for record in reference if record["id"] not in present]
