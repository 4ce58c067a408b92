"""The Gradio app: its `/answer` API driven by gradio_client against the app launched on the tiny model."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import gradio as gr
import httpx
import pytest
import torch
import yaml
from conftest import ROOT
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

import app
import aqa
from aqa.prompt import check_question

# Small caps so that the fixtures' files cross them; few new tokens so that the random tiny model answers quickly.
SETTINGS = app.AppSettings(max_seconds=42, max_file_size="2mb", max_new_tokens=8, queue_size=16)
LONG_CLIP = app.ASSETS / "long_40s.ogg"  # 40 s: over the model's 30 s, under the 42 s cap


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_app(model: aqa.AQAModel, settings: app.AppSettings = SETTINGS) -> Iterator[str]:
    """The app launched in this process, as `main()` launches it; yields its URL."""
    demo = app.build_demo(model, settings)
    _, url, _ = app.launch(demo, settings, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True)
    try:
        yield url
    finally:
        demo.close()


@pytest.fixture(scope="module")
def url(tiny_model) -> Iterator[str]:
    with running_app(tiny_model) as address:
        yield address


@pytest.fixture(scope="module")
def client(url) -> Client:
    return Client(url, verbose=False)


def ask(client: Client, audio, question="What is the source of the sound?", options=("Dog", "Speech", "Tone")):
    return client.predict(handle_file(str(audio)) if audio else None, question, list(options), api_name="/answer")


def assert_answered(result: dict, options) -> None:
    assert result["answer"] in options
    assert list(result["probabilities"]) == list(options)
    assert sum(result["probabilities"].values()) == pytest.approx(1.0)
    assert isinstance(result["raw"], str)
    assert result["timings"]["total"] > 0


# --- the API ---------------------------------------------------------------------------------------------------


def test_only_answer_is_public(client):
    # The page's own click handler takes the options table and per-page state: it must not be the API.
    assert list(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == ["/answer"]


@pytest.mark.parametrize(
    "name",
    [
        "speech_16k_mono.wav",  # the model's own rate
        "stereo_44k.wav",  # mixed down and resampled
        "tone.flac",
        "speech.mp3",
        "tone.ogg",
        "speech.m4a",  # decoded by FFmpeg
    ],
)
def test_formats_are_answered(client, clips, name):
    result = ask(client, clips[name])
    assert_answered(result, ("Dog", "Speech", "Tone"))
    assert result["note"] is None


@pytest.mark.parametrize(
    "name, reason",
    [
        ("empty.wav", "empty file (0 bytes)"),
        ("text.wav", "not a readable audio file"),
        ("truncated.wav", "truncated WAV"),
    ],
)
def test_bad_files_are_rejected_with_their_name(client, clips, name, reason):
    with pytest.raises(AppError) as caught:
        ask(client, clips[name])
    message = str(caught.value)
    assert message.startswith(f"{name}: ") and reason in message
    assert "/" not in message.split(":")[0], "the message names the upload, not Gradio's cache path"


@pytest.mark.parametrize(
    "question, options, reason",
    [
        ("", ["Dog", "Cat"], "the question is empty"),
        ("What?", ["Dog"], "give at least 2 options (got 1)"),
        ("What?", [], "give at least 2 options (got 0)"),
        ("What?", ["Dog", "  "], "option 2 is blank"),
        ("What?", ["Dog", "dog "], "duplicate option: 'dog'"),
        ("What?", "Dog, Cat", "options must be a list of strings"),  # one string is not a list
    ],
)
def test_bad_questions_are_rejected(client, clips, question, options, reason):
    with pytest.raises(AppError) as caught:
        client.predict(handle_file(str(clips["tone.ogg"])), question, options, api_name="/answer")
    assert reason in str(caught.value)


def test_missing_audio_is_rejected(client):
    with pytest.raises(AppError) as caught:
        ask(client, None)
    assert str(caught.value) == "no audio: upload a file or record one with the microphone"


def test_long_clip_is_answered_with_a_note(client):
    result = ask(client, LONG_CLIP)
    assert_answered(result, ("Dog", "Speech", "Tone"))
    assert result["duration"] == pytest.approx(40.0, abs=0.01)
    assert "the model heard only its first 30 s" in result["note"]


def test_too_long_clip_is_rejected(client, tmp_path):
    clip = tmp_path / "tone_50s.ogg"
    subprocess.run(["sox", "-n", "-r", "8000", str(clip), "synth", "50", "sine", "440"], check=True)
    with pytest.raises(AppError) as caught:
        ask(client, clip)
    assert str(caught.value) == (
        "tone_50s.ogg: the clip is 50 s long; this app takes clips up to 42 s (the model hears the first 30 s)"
    )


def test_upload_size_cap(client, url, clips):
    big = clips["long_45s.wav"]  # 2.9 MB, over the 2 MB cap
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        ask(client, big)
    # The server refuses it too, for clients that do not read the cap from the app's config.
    with big.open("rb") as handle:
        response = httpx.post(f"{url}gradio_api/upload", files={"files": (big.name, handle)})
    assert response.status_code == 413


def test_eight_concurrent_callers_are_all_answered(client, clips, monkeypatch):
    in_flight, peak, lock = 0, 0, threading.Lock()
    answer = aqa.answer

    def counted(*args, **kwargs):  # the real answer, counting how many run at once
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        try:
            return answer(*args, **kwargs)
        finally:
            with lock:
                in_flight -= 1

    monkeypatch.setattr(aqa, "answer", counted)
    # Each caller asks with its own options, so that a mixed-up answer would show.
    jobs = {
        caller: client.submit(
            handle_file(str(clips["speech_16k_mono.wav"])),
            f"Question {caller}?",
            [f"yes {caller}", f"no {caller}"],
            api_name="/answer",
        )
        for caller in range(8)
    }
    for caller, job in jobs.items():
        assert_answered(job.result(timeout=240), (f"yes {caller}", f"no {caller}"))
    assert peak == 1, "the queue lets one question at a time reach the model"


def test_failures_become_one_line_and_the_app_keeps_serving(client, clips, monkeypatch):
    failures = [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), app.OUT_OF_MEMORY),
        (RuntimeError("boom\nsecond line"), "unexpected error: RuntimeError: boom"),
    ]
    for error, message in failures:

        def fail(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr(aqa, "answer", fail)
        with pytest.raises(AppError) as caught:
            ask(client, clips["tone.ogg"])
        assert str(caught.value) == message
    monkeypatch.undo()
    assert_answered(ask(client, clips["tone.ogg"]), ("Dog", "Speech", "Tone"))


# --- pure helpers -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rows, options",
    [
        ([["Dog"], ["Cat"], [""], [""]], ["Dog", "Cat"]),  # the empty starting rows are not options
        ([["  Dog "], [None], ["Cat"]], ["Dog", "Cat"]),  # cells are stripped; a cleared cell is None
        ([[3], ["Cat"]], ["3", "Cat"]),  # a cell the table typed as a number
        ([["Dog", "extra"], []], ["Dog"]),  # only the first column is read; an empty row is skipped
        (None, []),  # no table at all
    ],
)
def test_options_from_table(rows, options):
    assert app.options_from_table(rows) == options


@pytest.mark.parametrize(
    "error, message",
    [
        (aqa.AudioError("a.wav: empty file (0 bytes)"), "a.wav: empty file (0 bytes)"),  # the core's own line
        (torch.OutOfMemoryError("CUDA out of memory"), app.OUT_OF_MEMORY),  # advice instead of CUDA's text
        (KeyError("x"), "unexpected error: KeyError: 'x'"),  # the type and the first line only
        (gr.Error("kept"), "kept"),
    ],
)
def test_gradio_error(error, message):
    assert app.gradio_error(error).message == message


@pytest.mark.parametrize(
    "argv, environ, expected",
    [
        ([], {}, {"model": "mispeech/r1-aqa", "host": "127.0.0.1", "port": 7860, "share": False}),
        (  # a Space: Gradio's variables and ours
            [],
            {"AQA_MODEL": "m", "AQA_PRECISION": "4bit", "GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "7861"},
            {"model": "m", "precision": "4bit", "host": "0.0.0.0", "port": 7861},
        ),
        (["--port", "9000", "--model", "flag"], {"GRADIO_SERVER_PORT": "7861", "AQA_MODEL": "env"}, {"port": 9000}),
        ([], {"GRADIO_SHARE": "True"}, {"share": True}),
        ([], {"GRADIO_SHARE": "false", "AQA_QUEUE_SIZE": "3"}, {"share": False, "queue_size": 3}),
        ([], {"AQA_MAX_SECONDS": "60", "AQA_MAX_NEW_TOKENS": "16"}, {"max_seconds": 60.0, "max_new_tokens": 16}),
    ],
)
def test_flags_and_environment(argv, environ, expected):
    args = app.build_parser(environ).parse_args(argv)
    assert {key: getattr(args, key) for key in expected} == expected


@pytest.mark.parametrize("clip, question, options", app.EXAMPLES)
def test_examples_are_small_and_askable(clip, question, options):
    path = app.ASSETS / clip
    assert path.stat().st_size < 300_000, "committed binaries stay under 300 KB"
    check_question(question, options)
    assert len(app.load_clip(str(path), app.AppSettings().max_seconds)) > 0


def test_space_front_matter():
    """The README's front matter is the Hugging Face Space's configuration."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n"), "Spaces read the front matter only at the very top"
    meta = yaml.safe_load(text.split("---\n")[1])
    assert (meta["sdk"], meta["python_version"], meta["models"]) == ("gradio", "3.11", ["mispeech/r1-aqa"])
    assert meta["sdk_version"].split(".")[0] == gr.__version__.split(".")[0]  # the Gradio major the app is written for
    assert (ROOT / meta["app_file"]).is_file() and meta["suggested_hardware"]
    assert len(meta["short_description"]) <= 60  # the Hub's limit


def test_main_reports_a_bad_model_in_one_line(tmp_path, capsys):
    assert app.main(["--model", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {tmp_path / 'missing'}: no such model directory"


def test_main_serves_the_model_named_in_the_environment(tiny_model_dir, clips, tmp_path):
    """`python app.py` as a Space runs it: settings from the environment, the model loaded once, then served."""
    port = free_port()
    environ = os.environ | {
        "AQA_MODEL": str(tiny_model_dir),
        "AQA_DEVICE": "cpu",
        "AQA_MAX_NEW_TOKENS": "4",
        "GRADIO_SERVER_PORT": str(port),
    }
    log = tmp_path / "app.log"
    with log.open("w") as output:
        server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=environ, stdout=output, stderr=output)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/", server, log)
        result = ask(Client(f"http://127.0.0.1:{port}/", verbose=False), clips["tone.ogg"], options=("a", "b"))
        assert_answered(result, ("a", "b"))
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_until_up(url: str, server: subprocess.Popen, log, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"app.py exited early:\n{log.read_text()}"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"app.py did not serve {url} within {timeout} s:\n{log.read_text()}")
