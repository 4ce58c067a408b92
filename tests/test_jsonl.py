"""Resumable JSON-lines files: a corrupt line is named (`file:line: reason`), dropped and answered again; two answers
to one id that disagree stop the run with both lines named. The module's own cases, then `aqa eval run` and
`aqa batch` resuming from a corrupted file, end to end on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_eval import mmar_record, write_jsonl
from test_mmau import synthesise

from aqa.cli.main import main
from aqa.errors import InputError
from aqa.jsonl import ResumableJsonl, parse_lines, read_jsonl, read_results

BAD_LINES = [
    # (the line's bytes, the reason named, why)
    (b"42\n", "not a JSON object but a number", "a number"),
    (b"[1, 2]\n", "not a JSON object but a list", "a list"),
    (b"null\n", "not a JSON object but null", "null"),
    (b'{"id": "a", "answer"\n', "not JSON (Expecting ':' delimiter; column 21)", "broken JSON"),
    (b'{"id": "a"}{"id": "b"}\n', "not JSON (Extra data; column 12)", "two rows on one line"),
    (
        b'{"id": "a", "ans',
        "not JSON (Unterminated string starting at; column 13), cut off (a run stopped while writing it)",
        "the last line, cut off by a kill",
    ),  # fmt: skip
    (b'{"id": "\xff\xfe"}\n', "invalid UTF-8 (byte 0xff at column 9)", "bytes that are not UTF-8"),
]


@pytest.mark.parametrize("line, reason, why", BAD_LINES, ids=[case[2] for case in BAD_LINES])
def test_each_bad_line_is_named_with_its_reason(tmp_path, line, reason, why):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"id": "x"}\n\n' + line)
    assert list(parse_lines(path)) == [(1, {"id": "x"}), (3, reason)], why
    assert read_jsonl(path) == [{"id": "x"}]


KEY_PROBLEMS = [
    ({}, "no 'id'", "an empty object"),
    ({"answer": "Dog"}, "no 'id'", "an answer without its id"),
    ({"id": ["a"]}, "its 'id' is a list, not a string", "a list for an id"),
    ({"id": None}, "its 'id' is null, not a string", "a null id"),
]


@pytest.mark.parametrize("row, reason, why", KEY_PROBLEMS, ids=[case[2] for case in KEY_PROBLEMS])
def test_rows_without_a_usable_id_are_dropped_by_name(tmp_path, row, reason, why):
    path = write_jsonl(tmp_path / "rows.jsonl", [{"id": "x", "answer": "Dog"}, row])
    assert read_results(path, "id") == ({"x": {"id": "x", "answer": "Dog"}}, [f"{path}:2: {reason}"]), why


def test_duplicates(tmp_path):
    """Identical answers are one answer; an answer wins over an error row; answers that disagree are an error that
    names both lines."""
    answer, error = {"id": "a", "answer": "Dog"}, {"id": "a", "error": "audio file not found"}
    path = write_jsonl(tmp_path / "rows.jsonl", [error, answer, {"id": 7, "answer": "Cat"}, answer, error])
    assert read_results(path, "id") == ({"a": answer, "7": {"id": 7, "answer": "Cat"}}, [])
    write_jsonl(path, [answer, {"id": "b", "answer": "Cat"}, {"id": "a", "answer": "Cat"}])
    with pytest.raises(InputError) as raised:
        read_results(path, "id")
    assert str(raised.value) == (
        f"{path}: lines 1 and 3 answer id 'a' differently; delete the wrong line, or write to a new output"
    )


def test_several_files_read_as_one(tmp_path):
    """Each process of a distributed run writes its own file: read together, the same rules hold across them, and
    answers that disagree name the line of each file."""
    answer, error = {"id": "a", "answer": "Dog"}, {"id": "a", "error": "audio file not found"}
    first = write_jsonl(tmp_path / "rank0.jsonl", [error, {"id": "b", "answer": "Cat"}])
    second = write_jsonl(tmp_path / "rank1.jsonl", [{"id": "c", "answer": "Rain"}, answer])
    rows, dropped = read_results([first, second], "id")
    assert rows == {"a": answer, "b": {"id": "b", "answer": "Cat"}, "c": {"id": "c", "answer": "Rain"}} and not dropped
    write_jsonl(first, [{"id": "a", "answer": "Cat"}])
    with pytest.raises(InputError, match=f"^{first}:1 and {second}:2 answer id 'a' differently"):
        read_results([first, second], "id")


def test_reopening_drops_bad_lines_with_a_warning_and_keeps_the_rest(tmp_path, capsys):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"id": "a", "answer": "Dog"}\n42\n{}\n{"id": "b", "error": "x"}\n{"id": "c", "ans')
    with ResumableJsonl(path, "id") as rows:
        assert rows.done == {"a"}
    assert capsys.readouterr().err.splitlines() == [
        f"warning: {path}:2: not a JSON object but a number: dropped; its item is answered again",
        f"warning: {path}:3: no 'id': dropped; its item is answered again",
        f"warning: {path}:5: not JSON (Unterminated string starting at; column 13), cut off (a run stopped while "
        "writing it): dropped; its item is answered again",
    ]
    assert path.read_text() == '{"id": "a", "answer": "Dog"}\n', "rewritten clean: no warning next time"


def test_a_lone_surrogate_is_written_escaped_and_reads_back(tmp_path):
    """JSON's "\\ud800" gives Python a string UTF-8 cannot encode; the row is still written (escaped), so a question
    that was refused for it can be reported in the output file."""
    row = {"id": "a", "question": "Is it \ud800?", "error": "the question contains a lone surrogate (U+D800)"}
    with ResumableJsonl(tmp_path / "rows.jsonl", "id") as rows:
        rows.write([row, {"id": "b", "answer": "é"}])
    assert read_jsonl(tmp_path / "rows.jsonl") == [row, {"id": "b", "answer": "é"}]
    assert "é" in (tmp_path / "rows.jsonl").read_text(encoding="utf-8"), "other rows keep their text as it is"


# --- end to end: a run resumed from a corrupted file ---------------------------------------------------------------


def corrupt(path: Path, lines: dict[int, bytes]) -> list[dict]:
    """Replace the given lines (1-based) of a JSON-lines file; returns the rows those lines held."""
    raw = path.read_bytes().splitlines(keepends=True)
    replaced = [json.loads(raw[number - 1]) for number in lines]
    for number, text in lines.items():
        raw[number - 1] = text + b"\n"
    path.write_bytes(b"".join(raw))
    return replaced


CORRUPTION = {2: b"42", 3: b"{}", 4: b'{"id": "\xff"}'}


def test_eval_run_resumes_from_a_corrupt_partial_file(tiny_model_dir, tmp_path, capsys):
    records = [mmar_record(number, "sound", "Signal Layer", "Counting") for number in range(6)]
    meta = write_jsonl(tmp_path / "MMAR-meta.jsonl", records)
    synthesise(tmp_path / "MMAR", [{"audio_id": r["audio_path"]} for r in records])
    output = tmp_path / "run" / "preds.json"
    args = ["eval", "run", "--benchmark", "mmar", "--model", str(tiny_model_dir), "--data", str(meta)]
    args += ["--audio-dir", str(tmp_path / "MMAR"), "--output", str(output), "--device", "cpu"]
    args += ["--max-new-tokens", "4"]
    assert main(args) == 0
    partial = output.with_suffix(".partial.jsonl")
    lost = corrupt(partial, CORRUPTION)
    capsys.readouterr()

    assert main(args) == 0
    err = capsys.readouterr().err
    for number, reason in [(2, "not a JSON object but a number"), (3, "no 'id'"), (4, "invalid UTF-8 (byte 0xff")]:
        assert f"warning: {partial}:{number}: {reason}" in err
    assert "3 of 6 already answered" in err
    rows = read_jsonl(partial)
    assert sorted(row["id"] for row in rows) == sorted(r["id"] for r in records), "each item once, none lost"
    manifest = json.loads(output.with_suffix(".manifest.json").read_text())
    assert manifest["runs"][-1]["answered"] == len(lost) and manifest["answered"] == len(records)

    # A second answer to one id, disagreeing with the first: an error naming both lines, before the model loads.
    first = rows[0]
    with partial.open("a") as handle:
        handle.write(json.dumps(first | {"answer_prediction": "Robot"}) + "\n")
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {partial}: lines 1 and {len(rows) + 1} answer id {first['id']!r} differently; delete the wrong line, "
        "or write to a new output"
    )
    # The same answer twice is harmless: one is kept.
    corrupt(partial, {len(rows) + 1: json.dumps(first).encode()})
    assert main(args) == 0
    assert "6 of 6 already answered" in capsys.readouterr().err and len(read_jsonl(partial)) == len(records)


def test_batch_resumes_from_a_corrupt_output_file(tiny_model_dir, clips, tmp_path, capsys):
    rows = [{"audio": str(clips["tone.ogg"]), "question": "Q?", "options": ["a", "b"], "id": f"q{n}"} for n in range(5)]
    questions = write_jsonl(tmp_path / "questions.jsonl", rows)
    output = tmp_path / "answers.jsonl"
    args = ["batch", "--model", str(tiny_model_dir), "--device", "cpu", "--max-new-tokens", "2"]
    args += ["--input", str(questions), "--output", str(output)]
    assert main(args) == 0
    corrupt(output, CORRUPTION)
    capsys.readouterr()

    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"warning: {output}:2: not a JSON object but a number" in err and "2 of 5 already answered" in err
    assert f"warning: {output}:4: invalid UTF-8 (byte 0xff at column 9)" in err
    assert sorted(row["id"] for row in read_jsonl(output)) == [f"q{n}" for n in range(5)]

    first = read_jsonl(output)[0]
    with output.open("a") as handle:
        handle.write(json.dumps(first | {"answer": "b" if first["answer"] == "a" else "a"}) + "\n")
    assert main(args) == 2
    assert "lines 1 and 6 answer id 'q0' differently" in capsys.readouterr().err


BAD_QUESTION_ROWS = [
    (
        {"audio": "a.wav", "question": "Q?", "options": {"a": 1, "b": 2}},
        "options must be a list of strings, not an object",
    ),
    ({"audio": "a.wav", "question": 42, "options": ["a", "b"]}, "the question must be text, not a number"),
    ({"audio": 42, "question": "Q?", "options": ["a", "b"]}, "audio must be a file path, not a number"),
    ({"audio": "a.wav", "options": ["a", "b"]}, "no question"),
]


@pytest.mark.parametrize("row, message", BAD_QUESTION_ROWS, ids=[case[1] for case in BAD_QUESTION_ROWS])
def test_batch_input_that_is_not_a_question_is_named_by_line(tmp_path, capsys, row, message):
    questions = tmp_path / "questions.jsonl"
    questions.write_text('{"audio": "a.wav", "question": "Q?", "options": ["a", "b"]}\n' + json.dumps(row) + "\n")
    args = ["batch", "--model", str(tmp_path / "no-model"), "--input", str(questions), "--output", str(tmp_path / "o")]
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == f"error: {questions}:2: {message}"
