"""Evaluation while training: the policy answers held-out questions with aqa's own answering code (`aqa.answer_many`:
greedy, batched, option probabilities), and the answers are scored with `aqa.eval.score`, MMAU's official rule and the
strict one: the numbers `aqa mmau run` and `aqa mmau score` would give for the same checkpoint and questions.

The questions are AVQA rows or any MMAU-format file (`--eval_file`, audio paths relative to `--eval_audio_dir`).
Each evaluation writes its predictions in MMAU's format to OUTPUT_DIR/eval/step-N.json, which `aqa mmau score` reads.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from aqa.answering import answer_many
from aqa.errors import InputError
from aqa.eval.benchmarks import MMAU
from aqa.eval.manifest import write_json
from aqa.eval.run import prediction_fields
from aqa.eval.score import Score, score_records
from aqa.model import AQAModel
from aqa.options import DecodingOptions, Question
from train.data import DataOptions, load_rows

logger = logging.getLogger(__name__)

# MMAU's grouping fields, kept from the eval file's rows; AVQA's question_type stands in for MMAU's sub-category.
GROUPINGS = tuple(name for name, _ in MMAU.groupings)
TASK, TASKS = MMAU.columns


@dataclass(frozen=True)
class EvalSet:
    """Questions answered during training, as MMAU-format records and as `aqa` questions (same order)."""

    path: str
    records: tuple[dict, ...]  # id, audio_id, question, choices, answer (text) and MMAU's groupings (None if absent)
    questions: tuple[Question, ...]

    def __len__(self) -> int:  # the Trainer checks that an eval dataset is given, and may ask its size
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        return self.records[index]


def load_eval_set(path: str, audio_dir: str | None, options: DataOptions) -> EvalSet:
    """The eval file's usable questions (bad rows skipped and counted in the log, as for training)."""
    if not Path(path).is_file():
        raise InputError(f"{path}: no such eval file")
    pairs, skipped = load_rows(path, options, audio_dir)
    if not pairs:
        raise InputError(f"{path}: no usable eval questions (skipped: {dict(skipped)})")
    records = tuple(
        {
            "id": example.id,
            MMAU.audio_field: example.audio_path,
            MMAU.question_field: example.question,
            MMAU.choices_field: list(example.options),
            MMAU.answer_field: example.answer,
            **{name: row.get(name, row.get("question_type") if name == "sub-category" else None) for name in GROUPINGS},
        }
        for row, example in pairs
    )
    # Heard as in training (options.audio_channel: the first channel by default, as R1-AQA's test script did too);
    # `aqa mmau run` mixes the channels by default, so on stereo clips its answers can differ.
    questions = tuple(
        Question(
            example.audio_path,
            example.question,
            example.options,
            allow_duplicate_options=True,
            channel=options.audio_channel,
        )
        for _, example in pairs
    )
    return EvalSet(str(path), records, questions)


def answer_shard(model: AQAModel, eval_set: EvalSet, rank: int, world: int, batch_size: int) -> list[dict]:
    """This process's share of the questions (every `world`-th from `rank`), answered as `aqa mmau run` answers:
    each record with the prediction fields of `aqa.eval.run.prediction_fields`, or its error."""
    indices = list(range(rank, len(eval_set.questions), world))
    questions = [eval_set.questions[i] for i in indices]
    rows = []
    for position, result in answer_many(model, questions, DecodingOptions(), batch_size):
        index = indices[position]
        record = eval_set.records[index]
        rows.append({"index": index, **record, **prediction_fields(result, MMAU)})
    return rows


def in_file_order(shards: Sequence[dict]) -> list[dict]:
    """Every process's rows, gathered, back in the eval file's order."""
    rows = sorted(shards, key=lambda row: row["index"])
    return [{key: value for key, value in row.items() if key != "index"} for row in rows]


def eval_metrics(predictions: Sequence[dict], prefix: str = "eval") -> dict[str, float]:
    """Accuracy in percent (two decimals, as `aqa mmau score` prints it): the official rule overall and per task
    present, and the strict rule overall."""
    score: Score = score_records(predictions, MMAU)
    metrics = {f"{prefix}_accuracy": score.official.total.percent}
    metrics[f"{prefix}_strict_accuracy"] = score.strict.total.percent
    for task in TASKS:
        tally = score.official.groups[TASK][task]
        if tally.total:
            metrics[f"{prefix}_accuracy_{task}"] = tally.percent
    metrics[f"{prefix}_questions"] = score.n
    return metrics


def write_predictions(output_dir: str, step: int, predictions: Sequence[dict]) -> Path:
    path = Path(output_dir) / "eval" / f"step-{step}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, list(predictions))
    return path


def precision_of(model: torch.nn.Module) -> str:
    """The `aqa` precision name of a loaded model (it only labels the AQAModel here)."""
    if getattr(model, "is_loaded_in_4bit", False):
        return "4bit"
    if getattr(model, "is_loaded_in_8bit", False):
        return "8bit"
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(model.dtype, "fp32")
