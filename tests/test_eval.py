"""`aqa eval` beyond MMAU: MMAR scored exactly as its official script scores it, runs on MMAR-format files that are
killed and resumed, and a team's own JSONL with renamed fields. The files are made here; MMAR's real meta file is
read only where it is available ($AQA_MMAR_DIR or ../shared/data/mmar)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from conftest import ROOT, mmar_meta
from test_mmau import synthesise, wait_for_rows

from aqa.cli.main import main
from aqa.eval.benchmarks import MMAR
from aqa.eval.questions import load_questions
from aqa.eval.score import official_match
from aqa.jsonl import read_jsonl

ANIMALS = ["Dog", "Cat", "Bird", "Horse"]
# (modality, category, sub-category, prediction or None for no `answer_prediction`): the answer is always "Dog".
MMAR_CASES = [
    ("sound", "Signal Layer", "Counting", "Dog"),  # right
    ("sound", "Perception Layer", "Counting", "Cat"),  # a wrong choice
    ("music", "Semantic Layer", "Emotion", "dog."),  # right: lowercased words
    ("music", "Cultural Layer", "Emotion", None),  # missing: the official script skips it
    ("speech", "Signal Layer", "Emotion", "It is a dog"),  # right: extra words no choice has
    ("speech", "Perception Layer", "Counting", "Dog or Cat"),  # wrong: a wrong choice's word
    ("mix-sound-music", "Semantic Layer", "Counting", ""),  # wrong: empty
    ("mix-sound-music", "Cultural Layer", "Emotion", "Dog"),  # right
    ("mix-sound-speech", "Signal Layer", "Counting", None),  # missing
    ("mix-sound-speech", "Perception Layer", "Emotion", "<answer>Dog</answer>"),  # right: "answer" is in no choice
    ("mix-music-speech", "Semantic Layer", "Counting", "Horse"),  # wrong
    ("mix-music-speech", "Cultural Layer", "Emotion", "DOG"),  # right
    ("mix-sound-music-speech", "Signal Layer", "Counting", "Bird"),  # wrong
    ("mix-sound-music-speech", "Perception Layer", "Emotion", "dog"),  # right
]
# Worked out by hand with MMAR's code/evaluation.py rule: MMAU's word sets, records without the key left out.
MMAR_EXPECTED = {
    "sound": 50.0,  # 1 of 2
    "music": 100.0,  # 1 of 1 answered
    "speech": 50.0,
    "mix-sound-music": 50.0,
    "mix-sound-speech": 100.0,  # 1 of 1 answered
    "mix-music-speech": 50.0,
    "mix-sound-music-speech": 50.0,
    "Signal Layer": 66.67,  # 2 of 3 answered
    "Perception Layer": 50.0,  # 2 of 4
    "Semantic Layer": 33.33,  # 1 of 3
    "Cultural Layer": 100.0,  # 2 of 2 answered
    "total": 58.33,  # 7 of 12
    "n": 12,
    "missing": 2,
}


def mmar_record(number: int, modality: str, category: str, subcategory: str) -> dict:
    key = f"clip{number:02d}_00-00-00_00-00-10"
    return {
        "id": key,
        "audio_path": f"./audio/{key}.wav",
        "question": "Which animal is heard?",
        "choices": list(ANIMALS),
        "answer": "Dog",
        "modality": modality,
        "category": category,
        "sub-category": subcategory,
        "language": "en",
        "url": "https://example.org/video",
        "timestamp": "00:00:00,00:00:10",
    }


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_mmar_score_equals_the_official_script(tmp_path, capsys):
    records = []
    for number, (modality, category, subcategory, prediction) in enumerate(MMAR_CASES):
        record = mmar_record(number, modality, category, subcategory)
        if prediction is not None:
            record["answer_prediction"] = prediction
        records.append(record)
    predictions = tmp_path / "preds.json"
    predictions.write_text(json.dumps(records))
    assert main(["eval", "score", str(predictions), "--benchmark", "mmar", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {key: result[key] for key in MMAR_EXPECTED} == MMAR_EXPECTED
    assert result["missing_as_wrong_total"] == 50.0  # 7 of 14, beside the official figure
    assert result["subcategories"] == {"Counting": 16.67, "Emotion": 100.0}  # 1 of 6 answered, 6 of 6
    assert main(["eval", "score", str(predictions), "--benchmark", "mmar"]) == 0
    text = capsys.readouterr().out
    assert "MMAR, unknown version" in text and "left out above as MMAR's code/evaluation.py leaves them out" in text


def test_the_mmar_report_footnote_agrees_with_its_numbers(tmp_path, capsys):
    """Records without a prediction are left out of MMAR's accuracy (as its script does): the table's Average is the
    58.33 over the 12 answered, and the footnote says so rather than "counted wrong"."""
    records = [mmar_record(number, *case[:3]) for number, case in enumerate(MMAR_CASES)]
    for record, case in zip(records, MMAR_CASES):
        if case[3] is not None:
            record["answer_prediction"] = case[3]
    (tmp_path / "preds.json").write_text(json.dumps(records))
    manifest = {"model": "tiny", "benchmark": "mmar", "mmar": {"records_in_file": 14}, "settings": {}}
    (tmp_path / "preds.manifest.json").write_text(json.dumps(manifest))
    assert main(["eval", "report", str(tmp_path / "preds.json"), "--benchmark", "mmar", "--label", "tiny"]) == 0
    report = capsys.readouterr().out
    [row] = [line for line in report.splitlines() if line.startswith("| tiny |")]
    assert row.endswith("| 58.33 |")  # MMAR_EXPECTED["total"]: 7 of the 12 answered
    assert "Average is the accuracy over the questions with a prediction" in report
    assert "tiny: 14 questions" in report and "of the file's" not in report  # the whole file was run
    assert "2 without a prediction, left out as MMAR's code/evaluation.py leaves them out" in report
    assert "(counted wrong, the total would be 50.00)" in report  # 7 of 14


def test_mmar_run_killed_part_way_resumes_and_writes_what_mmars_script_reads(tiny_model_dir, tmp_path, capsys):
    records = [mmar_record(number, *case[:3]) for number, case in enumerate(MMAR_CASES[:10])]
    meta = write_jsonl(tmp_path / "MMAR-meta.jsonl", records)
    audio_dir = tmp_path / "MMAR"
    synthesise(audio_dir, [{"audio_id": r["audio_path"]} for r in records])
    output = tmp_path / "run" / "preds.json"
    args = ["eval", "run", "--benchmark", "mmar", "--model", str(tiny_model_dir), "--data", str(meta)]
    args += ["--audio-dir", str(audio_dir), "--output", str(output), "--device", "cpu", "--batch-size", "2"]
    args += ["--max-new-tokens", "4"]
    process = subprocess.Popen(
        [sys.executable, "-m", "aqa", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    before_kill = wait_for_rows(output.with_suffix(".partial.jsonl"), process)
    assert 0 < len(before_kill) < len(records)
    assert main(args) == 0
    assert f"{len(before_kill)} of {len(records)} already answered" in capsys.readouterr().err
    ids = [row["id"] for row in read_jsonl(output.with_suffix(".partial.jsonl"))]
    assert sorted(ids) == sorted(r["id"] for r in records), "nothing lost, nothing twice"

    # What MMAR's code/evaluation.py reads: a JSON list of the records, each with `answer_prediction` (a string),
    # `answer`, `choices`, `modality`, `category` and `sub-category`.
    predictions = json.loads(output.read_text())
    assert [p["id"] for p in predictions] == [r["id"] for r in records]
    for prediction, record in zip(predictions, records):
        assert {key: prediction[key] for key in record} == record
        assert isinstance(prediction["answer_prediction"], str)
    manifest = json.loads(output.with_suffix(".manifest.json").read_text())
    assert manifest["benchmark"] == "mmar" and manifest["mmar"]["records_evaluated"] == len(records)
    capsys.readouterr()
    assert main(["eval", "score", str(output), "--benchmark", "mmar", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == len(records)


def test_a_custom_jsonl_with_renamed_fields_runs_resumes_and_scores_by_group(tiny_model_dir, tmp_path, capsys):
    rows = [
        {
            "uid": f"q{number}",
            "wav": f"clips/q{number}.wav",
            "prompt": "Who speaks?",
            "options": ["A man", "A woman", "A child"],
            "gold": "A man" if number % 2 else "A woman",
            "speaker_group": "adults" if number < 4 else "children",
        }
        for number in range(6)
    ]
    data = write_jsonl(tmp_path / "dev.jsonl", rows)
    synthesise(tmp_path, [{"audio_id": row["wav"]} for row in rows[:4]])  # two clips absent at first
    fields = ["--benchmark", "custom", "--id-field", "uid", "--audio-field", "wav", "--question-field", "prompt"]
    fields += ["--choices-field", "options", "--answer-field", "gold", "--group-by", "speaker_group"]
    output = tmp_path / "dev-run" / "preds.json"
    args = ["eval", "run", *fields, "--model", str(tiny_model_dir), "--data", str(data), "--audio-dir", str(tmp_path)]
    args += ["--output", str(output), "--device", "cpu", "--max-new-tokens", "4"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "warning: 2 audio file(s) not found" in captured.err
    # No official script reads a custom file: the run names the command that scores it, and no evaluation.py.
    assert "evaluation.py" not in captured.out
    assert f"score it: aqa eval score {output} --benchmark custom" in captured.out
    synthesise(tmp_path, [{"audio_id": row["wav"]} for row in rows])
    assert main(args) == 0
    assert "4 of 6 already answered" in capsys.readouterr().err
    predictions = json.loads(output.read_text())
    assert all(isinstance(p["model_output"], str) for p in predictions)
    assert len(read_jsonl(output.with_suffix(".partial.jsonl"))) == 6

    # The fields come back from the run's manifest: score needs only --benchmark custom.
    assert main(["eval", "score", str(output), "--benchmark", "custom", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    right = Counter(
        p["speaker_group"] for p in predictions if official_match(p["gold"], p["model_output"], p["options"])
    )
    assert result["n"] == 6 and result["speaker_group"] == {
        "adults": round(100 * right["adults"] / 4, 2),
        "children": round(100 * right["children"] / 2, 2),
    }
    assert main(["eval", "report", str(output), "--benchmark", "custom", "--label", "tiny"]) == 0
    table = capsys.readouterr().out
    assert "| Model | Method | adults | children | Average |" in table and "custom (dev.jsonl)" in table


def test_field_flags_are_for_custom_benchmarks_only(tmp_path, capsys):
    (tmp_path / "p.json").write_text("[]")
    assert main(["eval", "score", str(tmp_path / "p.json"), "--benchmark", "mmar", "--group-by", "x"]) == 2
    assert "--group-by names a field of --benchmark custom only" in capsys.readouterr().err


def test_the_real_mmar_meta_file_is_a_known_version():
    questions = load_questions(mmar_meta(), MMAR)
    assert questions.version == "2026-02-16" and len(questions.records) == 1000
    modalities = Counter(record["modality"] for record in questions.records)
    assert modalities == {
        "sound": 165, "music": 206, "speech": 294, "mix-sound-music": 11, "mix-sound-speech": 218,
        "mix-music-speech": 82, "mix-sound-music-speech": 24,
    }  # fmt: skip
    assert {len(record["choices"]) for record in questions.records} <= {2, 3, 4, 5, 6}


def test_reference_rows_beside_a_run_on_the_known_mmar_file(tmp_path, capsys):
    """A predictions file carrying the real file's version in its manifest gets MMAR's leaderboard rows."""
    records = [mmar_record(n, *case[:3]) | {"answer_prediction": "Dog"} for n, case in enumerate(MMAR_CASES)]
    (tmp_path / "preds.json").write_text(json.dumps(records))
    manifest = {"model": "tiny", "benchmark": "mmar", "mmar": {"version": "2026-02-16"}, "settings": {}}
    (tmp_path / "preds.manifest.json").write_text(json.dumps(manifest))
    assert main(["eval", "report", str(tmp_path / "preds.json"), "--benchmark", "mmar"]) == 0
    table = capsys.readouterr().out
    assert "| Model | Method | Sound | Music | Speech | Sound-Music | Sound-Speech | Music-Speech |" in table
    assert "| R1-AQA | (reported) | 55.80 | 37.40 | 49.00 | 9.10 | 50.00 | 50.00 | 50.00 | 47.60 |" in table
    assert "Qwen2.5-Omni 7B" in table and "100.00" in table
