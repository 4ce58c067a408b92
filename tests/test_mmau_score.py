"""MMAU scoring, versions, held-out split and reports: pure functions, no model."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from conftest import MMAU_VERSIONS, mmau_file

from aqa.cli.main import main
from aqa.errors import InputError
from aqa.eval.benchmarks import MMAU
from aqa.eval.protocols import aqa_prediction
from aqa.eval.questions import load_questions, with_reference
from aqa.eval.report import RunSummary, bar_chart, report_markdown, sweep_markdown
from aqa.eval.score import official_match, score_records, score_to_dict, strict_match
from aqa.eval.sweep import checkpoint_names, holdout_ids

KNOWN_VERSIONS = MMAU.versions
PEOPLE = ["Man", "Woman", "Child", "Robot"]

# (answer, prediction, choices, expected, reason): the official rule's corner cases.
OFFICIAL_CASES = [
    ("Man", "Man", PEOPLE, True, "the exact option"),
    ("Man", "man.", PEOPLE, True, "lowercased words: case and punctuation do not matter"),
    ("Man", "", PEOPLE, False, "an empty prediction is wrong"),
    ("Man", " ... !", PEOPLE, False, "a prediction with no word is empty, so wrong"),
    ("Man", "It is a man speaking", PEOPLE, True, "extra words found in no choice are allowed"),
    ("Man", "Man or Woman", PEOPLE, False, "a word of a wrong choice makes it wrong"),
    ("Man", "<answer>Man</answer>", PEOPLE, True, "the tag's word 'answer' is in no choice: raw output scores"),
    ("Man", "B", PEOPLE, False, "no letter mapping: 'b' is not the word 'man'"),
    ("Woman", "(B) Woman", PEOPLE, True, "a letter prefix is just an extra word"),
    ("Man", "woman", PEOPLE, False, "whole words: 'woman' does not contain the word 'man'"),
    ("dog barking", "dog barking", ["dog barking", "dog howling"], True, "a shared word is not a wrong-choice word"),
    ("dog barking", "barking dog", ["dog barking", "dog howling"], True, "word sets: order is ignored"),
    ("dog barking", "dog", ["dog barking", "dog howling"], False, "every answer word must be present"),
    ("dog barking", "a barking dog, not howling", ["dog barking", "dog howling"], False, "'howling' is a wrong word"),
    ("fourteen", "fourteen", ["four", "nine", "fourteen", "fourteen"], True, "a repeated correct option is fine"),
    ("four", "fourteen", ["four", "nine", "fourteen"], False, "'fourteen' is a different word from 'four'"),
    ("twenty-two", "twenty two", ["twenty-two", "twelve"], True, "a hyphen splits words"),
    ("1.63 seconds", "1.63 seconds", ["1.63 seconds", "1.53 seconds"], True, "'1' and 'seconds' are shared"),
    ("1.63 seconds", "1.53 seconds", ["1.63 seconds", "1.53 seconds"], False, "'53' belongs to the wrong choice only"),
    ("Man", "MAN", ["Man", "man."], True, "a choice with the answer's very words is not a wrong choice"),
    ("Café", "café", ["Café", "Bar"], True, "unicode words are lowercased too"),
    ("neutral", "neutral and joy", ["neutral", "neutral and joy"], False, "words of a longer wrong choice"),
]


@pytest.mark.parametrize(
    "answer, prediction, choices, expected, reason", OFFICIAL_CASES, ids=[c[4] for c in OFFICIAL_CASES]
)
def test_official_rule(answer, prediction, choices, expected, reason):
    assert official_match(answer, prediction, choices) is expected, reason


# (record fields, expected, reason): the strict metric goes through the aqa parser.
STRICT_CASES = [
    ({"raw_output": "<answer>Man</answer>"}, True, "the tag names the correct option"),
    ({"raw_output": "Man"}, False, "raw text kept but no <answer> tag"),
    ({"raw_output": "<answer>Man or Woman</answer>"}, False, "ambiguous: names two options"),
    ({"raw_output": "<answer>A</answer>"}, True, "the parser maps a letter to the first option"),
    ({"raw_output": "<answer>Woman</answer>"}, False, "another option"),
    ({"model_output": "man"}, True, "no raw text: the prediction itself is parsed"),
    ({"model_output_ori": "<answer>Man</answer>"}, True, "R1-AQA's name for the raw output"),
]


@pytest.mark.parametrize("fields, expected, reason", STRICT_CASES, ids=[c[2] for c in STRICT_CASES])
def test_strict_rule(fields, expected, reason):
    record = {"answer": "Man", "choices": PEOPLE, **fields}
    assert strict_match(record) is expected, reason


@pytest.mark.parametrize(
    "raw, expected, reason",
    [
        ("<answer>Man</answer>", "Man", "the tag's text"),
        ("<answer> Man </answer> then more", "Man", "stripped, text after the tag ignored"),
        ("  Man\n", "Man", "no tag: the whole output, stripped (R1-AQA's behaviour)"),
        ("<answer>Man", "<answer>Man", "an unclosed tag is no tag"),
    ],
)
def test_aqa_prediction(raw, expected, reason):
    assert aqa_prediction(raw) == expected, reason


def record(task, difficulty, subcategory, prediction, answer="Man", rid=None):
    row = {"id": rid or f"{task}-{difficulty}-{prediction}", "task": task, "difficulty": difficulty}
    row |= {"sub-category": subcategory, "answer": answer, "choices": PEOPLE}
    if prediction is not None:
        row["model_prediction"] = prediction
    return row


def test_aggregation_counts_missing_as_wrong_and_rounds_to_two_decimals():
    records = [
        record("sound", "easy", "A", "Man", rid="1"),
        record("sound", "easy", "A", "Woman", rid="2"),
        record("sound", "hard", "B", "man", rid="3"),
        record("music", "medium", "C", None, rid="4"),  # no prediction
        record("speech", "medium", "C", "Man", rid="5"),
        record("speech", "medium", "C", "", rid="6"),  # empty: present but wrong
    ]
    score = score_records(records)
    result = score_to_dict(score)
    assert (result["sound"], result["music"], result["speech"]) == (66.67, 0.0, 50.0)
    assert (result["easy"], result["medium"], result["hard"]) == (50.0, 33.33, 100.0)
    assert result["total"] == 50.0 and result["n"] == 6
    assert result["missing"] == 1 and result["missing_ids"] == ["4"]
    assert result["answered_only_total"] == 60.0  # what MMAU's script would print: it skips record 4
    assert result["subcategories"] == {"A": 50.0, "B": 100.0, "C": 33.33}
    assert result["strict"]["total"] == 50.0
    assert result["counts"]["total"] == [3, 6]


def test_model_output_is_read_before_model_prediction():
    """The official script reads model_output; a file with both is scored on that one."""
    both = record("sound", "easy", "A", "Man") | {"model_output": "Woman"}
    assert score_records([both]).official.total.correct == 0


def test_empty_groups_are_none_not_zero():
    result = score_to_dict(score_records([record("sound", "easy", "A", "Man")]))
    assert result["music"] is None and result["hard"] is None and result["sound"] == 100.0


@pytest.mark.parametrize("version", MMAU_VERSIONS)
def test_known_versions_are_identified_by_sha256(version):
    benchmark = load_questions(mmau_file(version))
    assert benchmark.version == version and len(benchmark.records) == 1000
    assert KNOWN_VERSIONS[hashlib.sha256(mmau_file(version).read_bytes()).hexdigest()] == version


def test_an_edited_file_is_an_unknown_version(tmp_path):
    edited = tmp_path / "mmau.json"
    edited.write_text(json.dumps(json.loads(mmau_file("2025-03-25").read_text())[:10]))
    assert load_questions(edited).version is None


@pytest.mark.parametrize(
    "content, message",
    [("{", "not a JSON file"), ('{"a": 1}', "JSON list"), ('[{"id": "x"}]', "record 1 has no audio_id")],
)
def test_bad_mmau_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        load_questions(path)


def test_run_with_no_audio_at_all_is_a_path_mistake(tmp_path, capsys):
    """A few missing clips are reported and skipped; not one clip found means --audio-dir is wrong."""
    args = ["mmau", "run", "--model", "unused", "--data", str(mmau_file("2025-08-09")), "--audio-dir", str(tmp_path)]
    assert main([*args, "--output", str(tmp_path / "preds.json"), "--device", "cpu"]) == 2
    assert "none of the 1000 audio files is under" in capsys.readouterr().err
    assert not (tmp_path / "preds.json").exists()


def test_predictions_from_another_version_are_refused():
    """5 of the first 20 questions changed between the versions: scoring across them must fail loudly."""
    old = [r | {"model_output": r["answer"]} for r in json.loads(mmau_file("2025-03-25").read_text())[:20]]
    with pytest.raises(InputError, match="5 question"):
        with_reference(old, load_questions(mmau_file("2025-08-09")))
    completed = with_reference(old, load_questions(mmau_file("2025-03-25")))
    assert len(completed) == 1000 and score_records(completed).official.total.correct == 20


def test_score_cli_json_and_text(tmp_path, capsys):
    records = json.loads(mmau_file("2025-03-25").read_text())[:4]
    records[0]["model_output"] = records[0]["answer"]
    records[1]["model_prediction"] = "nothing useful"
    path = tmp_path / "preds.json"
    path.write_text(json.dumps(records))
    assert main(["mmau", "score", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"sound", "music", "speech", "easy", "medium", "hard", "total", "n", "missing", "subcategories"} <= set(
        result
    )
    assert (result["n"], result["missing"], result["total"]) == (4, 2, 25.0)
    assert main(["mmau", "score", str(path), "--data", str(mmau_file("2025-03-25"))]) == 0
    text = capsys.readouterr().out
    assert "MMAU test-mini, version 2025-03-25" in text and "missing predictions: 998 of 1000" in text
    assert "evaluation.py silently skips them and would print 50.00 over 2" in text


def test_holdout_split_is_deterministic_disjoint_and_sized():
    ids = [f"id-{n}" for n in range(1000)]
    held = holdout_ids(ids, 0.3, seed=0)
    assert len(held) == 300 and held == holdout_ids(list(reversed(ids)), 0.3, seed=0)
    assert held != holdout_ids(ids, 0.3, seed=1)
    with pytest.raises(InputError, match="between 0 and 1"):
        holdout_ids(ids, 1.0, seed=0)


def test_checkpoints_sort_by_step_and_unmatched_globs_fail():
    names = checkpoint_names(["out/checkpoint-1000", "out/checkpoint-200/", "mispeech/r1-aqa"])
    assert [name for name, _ in names] == ["checkpoint-200", "checkpoint-1000", "r1-aqa"]
    with pytest.raises(InputError, match="no checkpoint matches"):
        checkpoint_names(["out/checkpoint-*"])
    with pytest.raises(InputError, match="both named"):
        checkpoint_names(["a/checkpoint-1", "b/checkpoint-1"])


def summary(version, correct=1, n=3, label="run"):
    records = [record("sound", "easy", "A", "Man" if i < correct else "Robot", rid=str(i)) for i in range(n)]
    return RunSummary(label, "bf16, greedy", version, score_records(records), 1000)


def test_report_shows_reference_rows_only_on_their_version(tmp_path):
    text = report_markdown([summary("2025-03-25"), summary("2025-08-09", label="new")])
    reference, current = text.split("### Accuracy (%) on MMAU test-mini, version 2025-08-09")
    assert "version 2025-03-25" in reference
    assert "| Model | Method | Sound | Music | Speech | Average |" in reference
    assert "| run | bf16, greedy | 33.33 | - | - | 33.33 |" in reference
    assert "| 54.95 | 50.98 | 42.04 | 49.20 |" in reference and "| 69.37 | 66.77 | 57.36 | 64.50 |" in reference
    assert "64.50" not in current and "49.20" not in current
    assert "only 3 of the file's 1000 questions" in text
    assert "unknown version" in report_markdown([summary(None)])


def test_bar_chart_is_a_png_labelled_per_version(tmp_path):
    path = tmp_path / "chart.png"
    bar_chart([summary("2025-03-25"), summary(None)], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size < 300_000


def test_sweep_table_picks_on_selection_and_reports_held_out():
    def scored(correct):
        return score_records(
            [record("sound", "easy", "A", "Man" if i < correct else "Robot", rid=str(i)) for i in range(4)]
        )

    results = [("checkpoint-100", scored(4), scored(1), scored(4)), ("checkpoint-200", scored(2), scored(3), scored(0))]
    table = sweep_markdown(results, "2025-08-09", 0.5, 0)
    assert "| **checkpoint-200** (picked) | 50.00 | - | - | 50.00 | 75.00 | 0.00 |" in table
    assert "| checkpoint-100 |" in table and "version 2025-08-09" in table
    assert "selects on the test set" in sweep_markdown(results, "2025-08-09", None, 0)


def test_report_cli_reads_manifests(tmp_path, capsys):
    records = json.loads(mmau_file("2025-08-09").read_text())[:3]
    for r in records:
        r["model_output"] = r["answer"]
    (tmp_path / "preds.json").write_text(json.dumps(records))
    manifest = {"model": "my-model", "mmau": {"version": "2025-08-09", "records_in_file": 1000}, "settings": {}}
    (tmp_path / "preds.manifest.json").write_text(json.dumps(manifest))
    shutil.copy(tmp_path / "preds.json", tmp_path / "other.json")  # no manifest: unknown version
    code = main(
        [
            "mmau",
            "report",
            str(tmp_path / "preds.json"),
            str(tmp_path / "other.json"),
            "--chart",
            str(tmp_path / "c.png"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "| my-model | - | 100.00 | - | - | 100.00 |" in out and "unknown version" in out
    assert (tmp_path / "c.png").is_file()


def test_the_2025_01_28_file_has_its_own_version_and_the_reference_rows():
    """The file of R1-AQA's paper time (one answer apart from 2025-03-25's) is named as such, with the reported rows."""
    assert "ed2fd6b6c24ebec1a5a496de5d767e7ebfe79556044d8f0d8bd00ad0cf02d623" in KNOWN_VERSIONS
    text = report_markdown([summary("2025-01-28")])
    assert "MMAU test-mini, version 2025-01-28" in text and "| 69.37 | 66.77 | 57.36 | 64.50 |" in text
