"""train.evaluation: eval questions from AVQA rows or an MMAU-format file, and metrics that are `aqa mmau score`'s."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT

from train.data import DataOptions
from train.evaluation import eval_metrics, in_file_order, load_eval_set, write_predictions

CHOICES = ["A dog barking", "A cat", "Rain", "A dog growling"]


def record(number: int, task: str, prediction: str | None, raw: str | None = None) -> dict:
    row = {"id": f"q{number}", "audio_id": "x.wav", "question": "What?", "choices": CHOICES, "answer": "A dog barking"}
    row |= {"task": task, "difficulty": "easy", "sub-category": "Animals"}
    if prediction is not None:
        row |= {"model_output": prediction, "model_prediction": prediction, "raw_output": raw or prediction}
    return row


# (record, official rule, strict rule, why)
PREDICTIONS = [
    (record(1, "sound", "A dog barking", "<answer>A dog barking</answer>"), True, True, "the option itself"),
    (
        record(2, "sound", "barking dog a", "<answer>barking dog a</answer>"),
        True,
        False,
        "official: its words, any order",
    ),
    (record(3, "sound", "A", "<answer>A</answer>"), False, True, "strict: the first option's label"),
    (record(4, "music", "A dog", "<answer>A dog</answer>"), False, False, "a prefix of two options"),
    (record(5, "music", "Rain", "<answer>Rain</answer>"), False, False, "another option"),
    (record(6, "speech", None), False, False, "no prediction (its audio failed): counted wrong"),
]


def test_metrics_equal_aqa_mmau_score_on_the_same_predictions(tmp_path):
    predictions = [row for row, *_ in PREDICTIONS]
    metrics = eval_metrics(predictions)
    official = round(100 * sum(case[1] for case in PREDICTIONS) / len(PREDICTIONS), 2)
    strict = round(100 * sum(case[2] for case in PREDICTIONS) / len(PREDICTIONS), 2)
    assert (metrics["eval_accuracy"], metrics["eval_strict_accuracy"], metrics["eval_questions"]) == (
        official,
        strict,
        6,
    )
    assert [metrics[f"eval_accuracy_{task}"] for task in ("sound", "music", "speech")] == [66.67, 0.0, 0.0]
    path = write_predictions(str(tmp_path), 7, predictions)
    assert path == tmp_path / "eval" / "step-7.json"
    done = subprocess.run(
        [sys.executable, "-m", "aqa", "mmau", "score", str(path), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    scored = json.loads(done.stdout)
    assert (scored["total"], scored["strict"]["total"], scored["n"]) == (official, strict, 6)
    assert all(metrics[f"eval_accuracy_{task}"] == scored[task] for task in ("sound", "music", "speech"))


def test_gathered_shards_come_back_in_file_order():
    shards = [{"index": 2, "id": "c"}, {"index": 0, "id": "a"}, {"index": 1, "id": "b"}]
    assert in_file_order(shards) == [{"id": "a"}, {"id": "b"}, {"id": "c"}]


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "clips" / "tone.wav"
    path.parent.mkdir()
    subprocess.run(["sox", "-n", "-r", "16000", str(path), "synth", "1", "sine", "440"], check=True)
    return path


@pytest.mark.parametrize("layout", ["avqa", "mmau"])
def test_eval_questions_from_avqa_rows_or_an_mmau_file(layout, clip, tmp_path):
    if layout == "avqa":  # JSON lines, answer index, question_type as the sub-category
        good = {
            "id": 1,
            "question_text": "In the video?",
            "multi_choice": CHOICES,
            "answer": 2,
            "audio_path": "clips/tone.wav",
            "question_type": "Which",
        }
        bad = {**good, "id": 2, "audio_path": "clips/missing.wav"}
        path = tmp_path / "eval.jsonl"
        path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
        expected = ("1", "In the audio?", "Rain", None, "Which")
    else:  # a JSON list, audio relative to --eval_audio_dir
        good = {
            "id": "m1",
            "audio_id": "./clips/tone.wav",
            "question": "In the video?",
            "choices": CHOICES,
            "answer": "A cat",
            "task": "sound",
            "difficulty": "hard",
            "sub-category": "Animals",
        }
        path = tmp_path / "elsewhere" / "mmau.json"
        path.parent.mkdir()
        path.write_text(json.dumps([good, {**good, "id": "m2", "answer": "A horse"}]))
        expected = ("m1", "In the audio?", "A cat", "sound", "Animals")
    audio_dir = None if layout == "avqa" else str(tmp_path)
    eval_set = load_eval_set(str(path), audio_dir, DataOptions(video_to_audio=True))
    [row] = eval_set.records
    assert (row["id"], row["question"], row["answer"], row["task"], row["sub-category"]) == expected
    assert row["audio_id"] == str(clip) and row["choices"] == CHOICES
    [question] = eval_set.questions
    assert (question.audio, question.options, question.allow_duplicate_options) == (str(clip), tuple(CHOICES), True)
    assert question.channel == "first"  # heard as in training
