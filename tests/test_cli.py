"""The CLI end to end on the tiny checkpoint and real audio files, as a user runs it."""

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

from aqa.jsonl import read_jsonl

OPTIONS = ["Man", "Woman", "Child", "Robot"]


def ask(aqa_cli, model, audio, *extra):
    return aqa_cli(
        "ask", "--model", model, "--audio", audio, "--question", "Who is speaking?", "--options", *OPTIONS, *extra
    )


def test_ask_json(aqa_cli, tiny_model_dir, clips):
    done = ask(aqa_cli, tiny_model_dir, clips["speech_16k_mono.wav"], "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert {"answer", "answer_source", "raw", "probabilities", "think", "note", "duration", "timings"} <= set(result)
    assert list(result["probabilities"]) == OPTIONS
    assert math.isclose(sum(result["probabilities"].values()), 1.0, abs_tol=1e-9)
    assert result["answer"] in OPTIONS
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("flags", [(), ("--embeddings-on-cpu",)], ids=["default", "embeddings-on-cpu"])
def test_ask_matches_the_python_api(aqa_cli, tiny_model, tiny_model_dir, clips, flags):
    import aqa

    done = ask(aqa_cli, tiny_model_dir, clips["speech_16k_mono.wav"], "--json", *flags)
    expected = aqa.answer(tiny_model, clips["speech_16k_mono.wav"], "Who is speaking?", OPTIONS)
    assert json.loads(done.stdout)["raw"] == expected.raw


def test_ask_text_output_and_long_clip_note(aqa_cli, tiny_model_dir, clips):
    done = ask(aqa_cli, tiny_model_dir, clips["long_45s.wav"], "--max-new-tokens", "8")
    assert done.returncode == 0, done.stderr
    # the text streams first, as the model writes it, then the answer and the rest
    streamed, summary = done.stdout.split("\nanswer: ", 1)
    assert streamed.startswith("output: ") and "probabilities:" in summary
    assert f"raw output: {streamed.removeprefix('output: ')!r}" in summary
    assert "note: the clip is 45.0 s long; the model heard only its first 30 s" in done.stdout


def test_ask_4bit_on_cpu(aqa_cli, tiny_model_dir, clips):
    done = ask(aqa_cli, tiny_model_dir, clips["stereo_44k.wav"], "--precision", "4bit", "--device", "cpu", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["answer"] in OPTIONS


def test_ask_thinking_mode(aqa_cli, tiny_model_dir, clips):
    done = ask(aqa_cli, tiny_model_dir, clips["tone.ogg"], "--think", "--max-new-tokens", "16", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["answer"] in OPTIONS


BAD_INPUT = [
    # (audio clip or None, extra arguments, expected message, reason)
    ("empty.wav", [], "empty file", "a 0-byte file"),
    ("text.wav", [], "not a readable audio file", "text renamed to .wav"),
    ("truncated.wav", [], "truncated WAV", "a cut-off WAV"),
    ("missing.wav", [], "file not found", "a missing file"),
    ("tone.flac", ["--model", "/no/such/model"], "no such model directory", "an unknown model path"),
    ("tone.flac", ["--model", "{clips}"], "not a model checkpoint", "a folder that is not a checkpoint"),
]


@pytest.mark.parametrize("clip, extra, message, reason", BAD_INPUT, ids=[case[3] for case in BAD_INPUT])
def test_bad_input_is_one_line_and_non_zero(aqa_cli, tiny_model_dir, clips, clip, extra, message, reason):
    audio = clips.get(clip, clips["empty.wav"].parent / clip)
    extra = [arg.replace("{clips}", str(clips["empty.wav"].parent)) for arg in extra]
    arguments = ["--model", str(tiny_model_dir)] + extra  # a later --model wins in argparse
    done = aqa_cli("ask", *arguments, "--audio", audio, "--question", "Q?", "--options", "a", "b")
    assert done.returncode != 0, reason
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1], done.stderr
    assert "Traceback" not in done.stderr, reason


@pytest.mark.parametrize(
    "options, message",
    [(["only"], "at least 2 options"), (["Dog", "dog"], "duplicate option"), (["a", " "], "option 2 is blank")],
)
def test_bad_options(aqa_cli, tiny_model_dir, clips, options, message):
    done = aqa_cli(
        "ask", "--model", tiny_model_dir, "--audio", clips["tone.flac"], "--question", "Q?", "--options", *options
    )
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback_before_or_after_the_command(aqa_cli, clips, where):
    command = ["ask", "--audio", clips["empty.wav"], "--question", "Q?", "--options", "a", "b"]
    done = aqa_cli(*(["--debug", *command] if where == "before" else [*command, "--debug"]))
    assert done.returncode != 0 and "Traceback" in done.stderr


def test_debug_after_a_step_of_eval(aqa_cli, tmp_path):
    done = aqa_cli("eval", "score", tmp_path / "missing.json", "--benchmark", "mmar", "--debug")
    assert done.returncode != 0 and "Traceback" in done.stderr


def test_version(aqa_cli):
    import aqa

    done = aqa_cli("--version", check=True)
    assert done.stdout.strip() == f"aqa {aqa.__version__}"


def every_parser():
    from aqa.cli.main import build_parser, subparsers

    parser = build_parser()
    return [parser, *subparsers(parser)]


def test_every_option_of_every_command_has_help():
    import argparse

    lacking = [
        f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
        for parser in every_parser()
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and action.help in (None, "", argparse.SUPPRESS)
    ]
    assert not lacking, f"options without help text: {lacking}"


def test_eval_help_does_not_speak_of_mmau_alone():
    """`aqa eval` serves every benchmark, `aqa mmau` MMAU: each step's help, and the question file's, says which."""
    data = {
        parser.prog: next(action.help for action in parser._actions if action.dest == "data")
        for parser in every_parser()
        if parser.prog in ("aqa eval run", "aqa mmau run")
    }
    assert "MMAR" in data["aqa eval run"] and "MMAR" not in data["aqa mmau run"]
    eval_steps, mmau_steps = every_step_help("aqa eval"), every_step_help("aqa mmau")
    assert "R1-AQA's table" in mmau_steps["report"] and "R1-AQA" not in eval_steps["report"]
    assert "MMAU's official rule" in mmau_steps["score"] and "benchmark's official rule" in eval_steps["score"]


def every_step_help(prog: str) -> dict[str, str]:
    import argparse

    [parser] = [parser for parser in every_parser() if parser.prog == prog]
    [steps] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return {choice.dest: choice.help for choice in steps._choices_actions}


def write_questions(path, clips, names):
    rows = [
        {"id": f"q{i}", "audio": str(clips[name]), "question": "What is it?", "options": ["Speech", "Tone", "Noise"]}
        for i, name in enumerate(names)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return rows


FORMATS = [
    "tone_8k.wav",
    "stereo_44k.wav",
    "tone.flac",
    "speech.mp3",
    "tone.ogg",
    "speech.m4a",
    "long_45s.wav",
    "short_50ms.wav",
    "silence.wav",
    "speech_22k.wav",
]


def test_batch_answers_every_format_and_reports_bad_rows(aqa_cli, tiny_model_dir, clips, tmp_path):
    questions, answers = tmp_path / "questions.jsonl", tmp_path / "answers.jsonl"
    write_questions(questions, clips, FORMATS + ["empty.wav"])
    done = aqa_cli(
        "batch",
        "--model",
        tiny_model_dir,
        "--input",
        questions,
        "--output",
        answers,
        "--batch-size",
        "4",
        "--max-new-tokens",
        "8",
    )
    assert done.returncode == 1 and "1 row(s) failed" in done.stderr  # the empty file
    rows = {row["id"]: row for row in read_jsonl(answers)}
    assert len(rows) == len(FORMATS) + 1
    assert "empty file" in rows[f"q{len(FORMATS)}"]["error"]
    for i in range(len(FORMATS)):
        assert rows[f"q{i}"]["answer"] in ("Speech", "Tone", "Noise")
        assert math.isclose(sum(rows[f"q{i}"]["probabilities"].values()), 1.0, abs_tol=1e-9)
    assert rows["q6"]["note"] and "first 30 s" in rows["q6"]["note"]


def test_batch_killed_part_way_resumes_without_loss_or_duplicates(tiny_model_dir, clips, tmp_path):
    questions, answers = tmp_path / "questions.jsonl", tmp_path / "answers.jsonl"
    rows = write_questions(questions, clips, FORMATS[:6] * 2)
    command = [
        sys.executable,
        "-m",
        "aqa",
        "batch",
        "--model",
        str(tiny_model_dir),
        "--input",
        str(questions),
        "--output",
        str(answers),
        "--batch-size",
        "2",
        "--max-new-tokens",
        "64",
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not answers.exists() or len(read_jsonl(answers)) < 2):
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    first = read_jsonl(answers)
    assert 2 <= len(first) < len(rows), "the kill should land part-way"
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"{len(first)} of {len(rows)} already answered" in done.stderr
    ids = [row["id"] for row in read_jsonl(answers)]
    assert sorted(ids) == sorted(row["id"] for row in rows)  # nothing lost, nothing twice


def test_tiny_writes_a_checkpoint_every_command_accepts(aqa_cli, tmp_path, clips):
    done = aqa_cli("tiny", tmp_path / "tiny")
    assert done.returncode == 0, done.stderr
    assert {"config.json", "model.safetensors", "processor_config.json", "tokenizer.json"} <= {
        path.name for path in (tmp_path / "tiny").iterdir()
    }
    done = aqa_cli(
        "ask",
        "--model",
        tmp_path / "tiny",
        "--audio",
        clips["tone.flac"],
        "--question",
        "Q?",
        "--options",
        "a",
        "b",
        "--json",
        "--max-new-tokens",
        "4",
    )
    assert done.returncode == 0, done.stderr


def test_console_script_is_installed():
    """`pip install -e .` puts an `aqa` script beside the interpreter."""
    done = subprocess.run([str(Path(sys.executable).parent / "aqa"), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "ask" in done.stdout and "batch" in done.stdout and "tiny" in done.stdout


def test_ask_long_audio_windows_json(aqa_cli, tiny_model_dir, tmp_path):
    """A 75 s clip with --long-audio windows: three windows covering 0-75 s, each with its probabilities, and the
    overall answer, all in --json."""
    clip = tmp_path / "long_75s.wav"
    subprocess.run(["sox", "-n", "-r", "16000", str(clip), "synth", "75", "sine", "300-3000", "vol", "0.3"], check=True)
    done = ask(aqa_cli, tiny_model_dir, clip, "--long-audio", "windows", "--max-new-tokens", "4", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [(w["start"], w["end"]) for w in result["windows"]] == [(0.0, 30.0), (25.0, 55.0), (45.0, 75.0)]
    for window in result["windows"]:
        assert list(window["probabilities"]) == OPTIONS and math.isclose(sum(window["probabilities"].values()), 1.0)
    mean = {o: sum(w["probabilities"][o] for w in result["windows"]) / 3 for o in OPTIONS}
    assert result["answer"] == max(mean, key=mean.get) and result["answer_source"] == "windows"
    default = ask(aqa_cli, tiny_model_dir, clip, "--max-new-tokens", "4", "--json")
    assert json.loads(default.stdout)["windows"] == [] and "first 30 s" in json.loads(default.stdout)["note"]


def test_steps_that_load_no_model_do_not_import_the_model_libraries(tmp_path):
    """`aqa mmau score` loads no model, so it imports neither torch nor transformers (each takes seconds)."""
    (tmp_path / "preds.json").write_text("[]")
    code = (
        "import sys; from aqa.cli.main import main; "
        f"main(['mmau', 'score', {str(tmp_path / 'preds.json')!r}]); "
        "print(sorted(name for name in ('torch', 'transformers') if name in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stderr
