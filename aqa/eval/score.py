"""Scoring with the official rule of MMAU's `evaluation.py` (which MMAR's adapts), exactly, and a strict metric
beside it.

The official rule: lowercase both texts and take their sets of words (`\\b\\w+\\b`); a prediction is correct iff it
holds every word of the answer and none of the words that occur only in wrong choices; a prediction with no words is
wrong. The official scripts read one key (MMAU's `model_output`, MMAR's `answer_prediction`) and silently skip records
without it, so a run that lost answers looks better than it is; here such a record counts as wrong and is reported,
except where a benchmark's published numbers are its script's (MMAR): there the accuracy is the script's, and the
count of missing predictions and the accuracy counting them wrong are given beside it.

The strict metric asks the aqa parser instead: the text of the `<answer>` tag (when the raw output is kept) must map
unambiguously to the correct option. The gap between the two shows how much the lenient rule moves the score.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from aqa.eval.benchmarks import MMAU, Benchmark
from aqa.parsing import extract_answer, match_option

WORD = re.compile(r"\b\w+\b")
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


def prediction_of(record: dict, benchmark: Benchmark = MMAU) -> str | None:
    """The record's prediction text, or None when it has none (a missing prediction, counted wrong)."""
    for key in benchmark.prediction_keys:
        if isinstance(record.get(key), str):
            return record[key]
    return None


def strict_match(record: dict, benchmark: Benchmark = MMAU) -> bool:
    """The aqa parser maps the answer to exactly the correct option; with the raw text kept, the tag is required."""
    raw = next((record[key] for key in RAW_KEYS if isinstance(record.get(key), str)), None)
    candidate = extract_answer(raw) if raw is not None else prediction_of(record, benchmark)
    return match_option(candidate, record[benchmark.choices_field]) == record[benchmark.answer_field]


def is_correct(record: dict, benchmark: Benchmark = MMAU) -> bool:
    prediction = prediction_of(record, benchmark)
    choices, answer = record[benchmark.choices_field], record[benchmark.answer_field]
    return prediction is not None and official_match(answer, prediction, choices)


def is_strictly_correct(record: dict, benchmark: Benchmark = MMAU) -> bool:
    return prediction_of(record, benchmark) is not None and strict_match(record, benchmark)


@dataclass(frozen=True)
class Tally:
    correct: int = 0
    total: int = 0

    @property
    def percent(self) -> float | None:
        """Accuracy in percent to two decimals, as the official scripts print it; None for an empty group."""
        return round(100 * self.correct / self.total, 2) if self.total else None

    def add(self, correct: bool) -> Tally:
        return Tally(self.correct + int(correct), self.total + 1)


@dataclass(frozen=True)
class Accuracy:
    """Accuracy overall and per value of each grouping (MMAU: task, difficulty, sub-category)."""

    total: Tally
    groups: dict[str, dict[str, Tally]]  # grouping field -> value -> tally


def tally(records: Sequence[dict], correct: Callable[[dict], bool], benchmark: Benchmark) -> Accuracy:
    groups = {name: {value: Tally() for value in values} for name, values in benchmark.groupings}
    total = Tally()
    for record in records:
        ok = correct(record)
        total = total.add(ok)
        for name, group in groups.items():
            value = record.get(name)
            if value is not None:
                group[value] = group.get(value, Tally()).add(ok)
    return Accuracy(total, groups)


@dataclass(frozen=True)
class Score:
    official: Accuracy  # every record, no prediction = wrong (or, where the benchmark skips missing, the answered)
    strict: Accuracy  # the aqa parser against the correct option, over the same records
    answered_only: Tally  # what the official script prints: records without a prediction skipped
    missing: tuple[str, ...] = field(default=())  # ids of records with no prediction
    missing_as_wrong: Tally = field(default_factory=Tally)  # over every record, no prediction = wrong

    @property
    def n(self) -> int:
        return self.official.total.total


def score_records(records: Sequence[dict], benchmark: Benchmark = MMAU) -> Score:
    """Score records carrying a prediction under one of the benchmark's prediction keys."""
    missing = tuple(str(r.get(benchmark.id_field)) for r in records if prediction_of(r, benchmark) is None)
    answered = [record for record in records if prediction_of(record, benchmark) is not None]
    correct = sum(is_correct(record, benchmark) for record in answered)
    scored = answered if benchmark.skips_missing else records
    return Score(
        tally(scored, lambda record: is_correct(record, benchmark), benchmark),
        tally(scored, lambda record: is_strictly_correct(record, benchmark), benchmark),
        Tally(correct, len(answered)),
        missing,
        Tally(correct, len(records)),
    )


def headline(accuracy: Accuracy, benchmark: Benchmark = MMAU) -> dict:
    """Percent per value of each grouping with fixed values (MMAU: tasks, difficulties), each other grouping as a
    nested table (MMAU: `subcategories`), and the total (the "Average" column of R1-AQA's table)."""
    row = {}
    for name, values in benchmark.groupings:
        if values:
            row.update({value: accuracy.groups[name][value].percent for value in values})
    for name, values in benchmark.groupings:
        if not values:
            groups = sorted(accuracy.groups[name].items())
            row[benchmark.nested_key(name)] = {value: tally.percent for value, tally in groups}
    row["total"] = accuracy.total.percent
    return row


def score_to_dict(score: Score, benchmark: Benchmark = MMAU) -> dict:
    """The `--json` output: official percentages at the top level, the strict metric and details beside."""
    fixed = [(name, values) for name, values in benchmark.groupings if values]
    return {
        **headline(score.official, benchmark),
        "n": score.n,
        "missing": len(score.missing),
        "missing_ids": list(score.missing),
        "answered_only_total": score.answered_only.percent,
        "missing_as_wrong_total": score.missing_as_wrong.percent,
        "strict": headline(score.strict, benchmark),
        "counts": {
            "total": [score.official.total.correct, score.n],
            **{
                value: [score.official.groups[name][value].correct, score.official.groups[name][value].total]
                for name, values in fixed
                for value in values
            },
        },
    }


def format_score(score: Score, title: str, benchmark: Benchmark = MMAU) -> str:
    """A plain-text report: official and strict accuracy side by side, then the missing predictions."""
    lines = [title, f"{'':34}{'official':>9}{'strict':>9}{'n':>7}"]
    for name, values in benchmark.groupings:
        official, strict = score.official.groups[name], score.strict.groups[name]
        lines.append(f"{name}:")
        lines += [line(f"  {value}", official[value], strict[value]) for value in values or sorted(official)]
    lines.append(line("total", score.official.total, score.strict.total))
    lines += missing_lines(score, benchmark)
    return "\n".join(lines)


def line(label: str, official: Tally, strict: Tally) -> str:
    return f"{label[:34]:34}{percent(official.percent):>9}{percent(strict.percent):>9}{official.total:>7}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def missing_lines(score: Score, benchmark: Benchmark = MMAU, shown: int = 10) -> list[str]:
    records = score.missing_as_wrong.total
    if not score.missing:
        return [f"every one of the {records} records has a prediction"]
    ids = ", ".join(score.missing[:shown]) + (
        f" and {len(score.missing) - shown} more" if len(score.missing) > shown else ""
    )
    if score.n < records:  # the benchmark's own scorer skips them, and so do the figures above
        return [
            f"missing predictions: {len(score.missing)} of {records}, left out above as {benchmark.scorer} "
            f"leaves them out: {ids}",
            f"(counted wrong, the total would be {percent(score.missing_as_wrong.percent)} over {records})",
        ]
    lines = [f"missing predictions: {len(score.missing)} of {score.n}, counted wrong above: {ids}"]
    if benchmark.scorer:
        lines.append(
            f"({benchmark.scorer} silently skips them and would print {percent(score.answered_only.percent)} "
            f"over {score.answered_only.total})"
        )
    return lines


def missing_from(records: Iterable[dict], reference: Sequence[dict], benchmark: Benchmark = MMAU) -> list[dict]:
    """Records of the question file absent from a predictions file, as prediction-less records (counted wrong)."""
    present = {record.get(benchmark.id_field) for record in records}
    return [dict(record) for record in reference if record[benchmark.id_field] not in present]


# --- choices in other orders ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderScores:
    """With --shuffle-choices: accuracy with the options in each order, and how often the chosen option holds."""

    orders: tuple[Tally, ...]  # the file's order, then each permutation (a missing answer counts wrong)
    consistent: Tally  # items whose chosen option is the same in every order


def order_scores(records: Sequence[dict], benchmark: Benchmark = MMAU) -> OrderScores | None:
    """None when the records hold no permutations (a run without --shuffle-choices)."""
    count = max((len(record.get("permutations", [])) for record in records), default=0)
    if not count:
        return None
    orders = [Tally() for _ in range(count + 1)]
    consistent = Tally()
    for record in records:
        asked = [record, *({**record, **permutation} for permutation in record.get("permutations", []))]
        for number, variant in enumerate(asked):
            orders[number] = orders[number].add(is_correct(variant, benchmark))
        chosen = [
            variant.get("aqa_answer") if prediction_of(variant, benchmark) is not None else None for variant in asked
        ]
        consistent = consistent.add(len(chosen) == count + 1 and chosen[0] is not None and len(set(chosen)) == 1)
    return OrderScores(tuple(orders), consistent)


def orders_to_dict(scores: OrderScores) -> dict:
    return {
        "accuracy_by_order": {
            ("original" if number == 0 else f"permutation {number}"): tally.percent
            for number, tally in enumerate(scores.orders)
        },
        "consistency": scores.consistent.percent,
        "consistent_items": [scores.consistent.correct, scores.consistent.total],
    }


# --- repeated runs ------------------------------------------------------------------------------------------------

# Two-sided 95% quantiles of Student's t by degrees of freedom (N - 1 runs), then its large-sample limit.
T_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}  # fmt: skip


def t_95(degrees: int) -> float:
    """The t quantile for `degrees`, from the table (the next smaller tabled degree: a slightly wider interval)."""
    return T_95[max(d for d in T_95 if d <= degrees)] if degrees <= 120 else 1.960


@dataclass(frozen=True)
class Spread:
    """One figure over repeated runs: mean, sample standard deviation, and a 95% interval of the mean (Student's t;
    it says how far the mean of this many seeded runs moves, not how far a different question set would)."""

    values: tuple[float, ...]
    mean: float
    std: float | None  # None for a single run
    low: float | None
    high: float | None


def spread(values: Sequence[float]) -> Spread:
    values = tuple(values)
    mean = sum(values) / len(values)
    if len(values) < 2:
        return Spread(values, round(mean, 2), None, None, None)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    half = t_95(len(values) - 1) * std / len(values) ** 0.5
    return Spread(values, round(mean, 2), round(std, 2), round(mean - half, 2), round(mean + half, 2))


def repeated_to_dict(scores: Sequence[Score], benchmark: Benchmark = MMAU) -> dict:
    """Each run's figures, and per column and overall their mean, standard deviation and 95% interval."""
    heads = [headline(score.official, benchmark) for score in scores]
    columns = [*benchmark.columns[1], "total"]
    spreads = {
        name: spread([head[name] for head in heads]) for name in columns if all(h[name] is not None for h in heads)
    }
    return {
        "runs": [score_to_dict(score, benchmark) for score in scores],
        "n_runs": len(scores),
        "mean": {name: s.mean for name, s in spreads.items()},
        "std": {name: s.std for name, s in spreads.items()},
        "ci95": {name: [s.low, s.high] for name, s in spreads.items()},
    }
