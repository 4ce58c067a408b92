"""The Gradio app (aqa/app/): its `/answer` and `/answer_stream` API driven by gradio_client against the app launched on
the tiny model (and `python app.py --compare` on two tiny checkpoints), the functions that touch the model, the history
files, the flags, and the check that two models fit before either loads."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

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
from aqa.app import admission, checks, flags, launching, showing, slot
from aqa.app import history as app_history
from aqa.app.housekeeping import Cache
from aqa.app.page import build_demo
from aqa.app.settings import ASSETS, EXAMPLES, AppSettings, MiB
from aqa.limits import Limits
from aqa.prompt import check_question
from aqa.windows import window_spans
from bench import attack_requests
from bench.attack_requests import file_data
from bench.serving import free_port, wait_until_up

# Small caps so that the fixtures' files and texts cross them (the text caps below the library's own, to show that the
# app's are the ones used); few new tokens so that the random tiny model answers quickly.
LIMITS = Limits(question_chars=200, option_chars=50, options=6, prompt_tokens=2000)
SETTINGS = AppSettings(max_seconds=42, max_file_size=2 * MiB, max_new_tokens=8, queue_size=16, limits=LIMITS)
LONG_CLIP = ASSETS / "long_40s.ogg"  # 40 s: over the model's 30 s, under the 42 s cap


@contextmanager
def running_app(
    model: aqa.AQAModel, settings: AppSettings = SETTINGS, compare: aqa.AQAModel | None = None
) -> Iterator[gr.Blocks]:
    """The app launched in this process, as `main()` launches it; yields it (its URL: `demo.local_url`)."""
    demo = build_demo(model, settings, compare)
    launching.launch(
        demo, settings, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True
    )
    try:
        yield demo
    finally:
        demo.close()


@pytest.fixture(scope="module")
def url(tiny_model) -> Iterator[str]:
    with running_app(tiny_model) as demo:
        yield demo.local_url


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


def test_only_the_answer_endpoints_are_public(client):
    # The page's own handlers take the options text and per-page state: they must not be the API.
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert list(endpoints) == ["/answer", "/answer_stream"]


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
        ("Q" * 20_000, ["Dog", "Cat"], "the question is too long: 20000 characters (at most 200)"),
        ("What?", ["Dog", "x" * 20_000], "option 2 is too long: 20000 characters (at most 50)"),
        ("What?", [f"o{i}" for i in range(200)], "give at most 6 options (got 200)"),
        ("Is <|AUDIO|> here?", ["Dog", "Cat"], "the question contains '<|AUDIO|>', a control token of the model"),
        ("What?", ["Dog", "<|im_end|>"], "option 2 contains '<|im_end|>', a control token of the model"),
        ("", ["Dog"], "the question is empty; give at least 2 options (got 1)"),  # every problem, in one line
    ],
)
def test_bad_questions_are_rejected(client, clips, question, options, reason):
    with pytest.raises(AppError) as caught:
        client.predict(handle_file(str(clips["tone.ogg"])), question, options, api_name="/answer")
    assert reason in str(caught.value) and "\n" not in str(caught.value)


def test_missing_audio_is_rejected(client):
    with pytest.raises(AppError) as caught:
        ask(client, None)
    assert str(caught.value) == "no audio: upload a file or record one with the microphone"
    with pytest.raises(AppError) as caught:
        ask(client, None, question=" ")
    assert str(caught.value) == "no audio: upload a file or record one with the microphone; the question is empty"


def test_long_clip_is_answered_window_by_window(client):
    """The app's default: a 40 s clip is two 30 s windows (0-30 s and 10-40 s, the last ending with the clip); the
    answer has the highest mean probability over them."""
    options = ("Dog", "Speech", "Tone")
    result = ask(client, LONG_CLIP, options=options)
    assert_answered(result, options)
    assert result["duration"] == pytest.approx(40.0, abs=0.01)
    assert [(window["start"], window["end"]) for window in result["windows"]] == [(0.0, 30.0), (10.0, 40.0)]
    mean = {option: sum(window["probabilities"][option] for window in result["windows"]) / 2 for option in options}
    assert result["answer"] == max(mean, key=mean.get) and result["answer_source"] == "windows"
    assert result["probabilities"] == pytest.approx(mean)
    assert "answered in 2 windows of 30 s" in result["note"]


def test_too_long_clip_is_rejected(client, tmp_path):
    clip = tmp_path / "tone_50s.ogg"
    subprocess.run(["sox", "-n", "-r", "8000", str(clip), "synth", "50", "sine", "440"], check=True)
    with pytest.raises(AppError) as caught:
        ask(client, clip)
    assert str(caught.value) == "tone_50s.ogg: the clip is 50 s long (at most 42 s)"


def test_upload_size_cap(client, url, clips):
    big = clips["long_45s.wav"]  # 2.9 MB, over the 2 MB cap
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        ask(client, big)
    # The server refuses it too, for clients that do not read the cap from the app's config.
    with big.open("rb") as handle:
        response = httpx.post(f"{url}gradio_api/upload", files={"files": (big.name, handle)})
    assert response.status_code == 413


def test_eight_concurrent_callers_are_all_answered(url, clips, monkeypatch):
    """Eight clients at once (each holds one place in the queue): all answered, one at a time on the model."""
    in_flight, peak, lock = 0, 0, threading.Lock()
    answer = aqa.answer_stream

    def counted(*args, **kwargs):  # the real answer, counting how many run at once
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        try:
            yield from answer(*args, **kwargs)
        finally:
            with lock:
                in_flight -= 1

    monkeypatch.setattr(aqa, "answer_stream", counted)
    # Each caller asks with its own options, so that a mixed-up answer would show.
    jobs = {
        caller: Client(url, verbose=False).submit(
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


def test_old_uploads_and_history_files_are_removed_while_the_app_serves(tiny_model, clips):
    """With files kept 2 s, an upload and a history file are gone within a few seconds; the app answers meanwhile."""
    settings = replace(SETTINGS, keep_files=2, keep_uploads=2)  # checked every second
    with running_app(tiny_model, settings) as demo:
        url = demo.local_url
        with clips["tone.ogg"].open("rb") as handle:
            [upload] = httpx.post(f"{url}gradio_api/upload", files={"files": ("tone.ogg", handle)}).json()
        history = demo.cache.history_dir / "aqa-history-page-1" / "aqa-history-page.csv"
        history.parent.mkdir()
        history.write_text("time,model\n")
        assert Path(upload).is_file()
        client = Client(url, verbose=False)
        deadline = time.monotonic() + 30
        while (Path(upload).exists() or history.parent.exists()) and time.monotonic() < deadline:
            assert_answered(ask(client, clips["speech.mp3"]), ("Dog", "Speech", "Tone"))  # serving all along
            time.sleep(0.5)
        assert not Path(upload).exists() and not history.parent.exists(), "the file and then its empty folder"
        assert_answered(ask(client, clips["speech.mp3"]), ("Dog", "Speech", "Tone"))


def test_failures_become_one_line_and_the_app_keeps_serving(client, clips, monkeypatch):
    failures = [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), slot.OUT_OF_MEMORY),
        (RuntimeError("boom\nsecond line"), "unexpected error: RuntimeError: boom"),
    ]
    for error, message in failures:

        def fail(*args, error=error, **kwargs):
            raise error
            yield  # a generator, as answer_stream is

        monkeypatch.setattr(aqa, "answer_stream", fail)
        with pytest.raises(AppError) as caught:
            ask(client, clips["tone.ogg"])
        assert str(caught.value) == message
    monkeypatch.undo()
    assert_answered(ask(client, clips["tone.ogg"]), ("Dog", "Speech", "Tone"))


def test_answer_stream_sends_the_text_as_it_grows_then_the_result(client, clips):
    """`/answer_stream`: the text so far after each piece (each longer than the last), then what /answer returns."""
    options = ["Dog", "Speech", "Tone"]
    job = client.submit(handle_file(str(clips["tone.ogg"])), "What is it?", options, api_name="/answer_stream")
    final = job.result(timeout=120)
    updates = [update for update in job.outputs() if not update["done"]]
    assert final["done"] and final == job.outputs()[-1]
    assert_answered(final, options)
    texts = [update["text"] for update in updates]
    assert len(texts) >= 2 and all(len(a) < len(b) for a, b in zip(texts, texts[1:])), "it grows, piece by piece"
    assert texts[-1] == final["raw"] and {update["model"] for update in updates} == {final["model"]}
    with pytest.raises(AppError, match="give at least 2 options"):  # bad input: one line, before any text
        client.predict(handle_file(str(clips["tone.ogg"])), "What?", ["Dog"], api_name="/answer_stream")


def test_a_closed_stream_frees_the_model_at_once(tiny_model, clips):
    """Stop (or a cancelled stream) closes the stream: generation ends at the next token and the model is free, even
    with a budget the random model would take minutes to spend."""
    lock = threading.Lock()
    answer_on_device, stream_on_device = slot.device_functions(tiny_model, lock, SETTINGS)
    samples = aqa.load_audio(clips["tone.ogg"])
    endless = aqa.DecodingOptions(think=True, max_new_tokens=100_000)
    stop = threading.Event()
    shown = slot.streamed(stream_on_device(samples, "Q?", ["a", "b"], endless, 600.0), stop, str.upper)
    first = next(shown)
    assert lock.locked(), "the stream holds the model while it writes"
    assert first == first.upper() and len(first) > 0  # `show` is applied to the text so far
    stop.set()
    with pytest.raises(StopIteration) as ended:
        next(shown)
    assert ended.value.value is None, "stopped: no Result"
    assert not lock.locked(), "the model is free"
    decoding = aqa.DecodingOptions(max_new_tokens=4)
    assert_answered(answer_on_device(samples, "Q?", ["a", "b"], decoding, 600.0).to_dict(), "ab")


def test_spaces_gpu_decorates_the_functions_that_touch_the_model(client, clips, tiny_model):
    """With the `spaces` package installed, as on a Space, the two functions that touch the model are decorated with
    `spaces.GPU` (which attaches a GPU per call on ZeroGPU and hands the function back elsewhere); the app built
    with them answers, at once and streamed."""
    import spaces
    from spaces.config import Config

    assert slot.spaces is spaces and not Config.zero_gpu, "spaces is installed; this is not a ZeroGPU machine"
    gpu = slot.on_gpu(SETTINGS)  # as long as a request may hold the models, and a margin for the last window's work
    assert gpu.func is spaces.GPU(duration=1).func and gpu.keywords["duration"] == SETTINGS.time_limit + 30
    answer_on_device, stream_on_device = slot.device_functions(tiny_model, threading.Lock(), SETTINGS)
    assert (answer_on_device.__name__, stream_on_device.__name__) == ("answer_on_device", "stream_on_device")
    samples = aqa.load_audio(clips["tone.ogg"])
    decoding = aqa.DecodingOptions(max_new_tokens=4)
    *pieces, result = stream_on_device(samples, "Q?", ["a", "b"], decoding, 600.0)
    assert "".join(pieces) == result.raw == answer_on_device(samples, "Q?", ["a", "b"], decoding, 600.0).raw
    assert_answered(ask(client, clips["tone.ogg"], options=("a", "b")), ("a", "b"))
    job = client.submit(handle_file(str(clips["tone.ogg"])), "Q?", ["a", "b"], api_name="/answer_stream")
    assert_answered(job.result(timeout=120), ("a", "b"))


def test_compare_answers_with_both_models_in_one_call(compare_server, tiny_model_dir, tiny_model_2_dir, clips):
    """`python app.py --model TINY --compare TINY2`: one /answer call returns both models' results, and whether they
    agree; /answer_stream streams the first model's text, then the second's. (The browser test downloads the same
    server's history: both models are in each row.)"""
    client = Client(compare_server.url, verbose=False)
    options = ("Dog", "Speech", "Tone")
    result = ask(client, clips["speech.mp3"], options=options)
    assert_answered(result, options)
    assert_answered(result["compare"], options)
    assert (result["model"], result["compare"]["model"]) == (str(tiny_model_dir), str(tiny_model_2_dir))
    assert result["agree"] == (result["answer"] == result["compare"]["answer"])
    assert result["probabilities"] != result["compare"]["probabilities"], "two models, two sets of weights"
    job = client.submit(handle_file(str(clips["speech.mp3"])), "Q?", list(options), api_name="/answer_stream")
    final = job.result(timeout=120)
    models = [update["model"] for update in job.outputs() if not update["done"]]
    assert models[0] == str(tiny_model_dir) and models[-1] == str(tiny_model_2_dir)
    assert models == sorted(models, key=[str(tiny_model_dir), str(tiny_model_2_dir)].index), "one after the other"
    assert_answered(final["compare"], options)


# --- the bounds on one request, and on the disk ---------------------------------------------------------------


def upload(url: str, clip: Path) -> dict:
    return file_data(attack_requests.upload(url, clip))


@pytest.mark.parametrize(
    "audio, question, options, message",
    [
        (42, "Q?", ["a", "b"], "refused: audio must be an uploaded file's data (gradio_client's handle_file sends it)"),
        ("/etc/passwd", "Q?", ["a", "b"], "refused: audio must be an uploaded file's data"),  # a bare path
        ({"meta": {"_type": "gradio.FileData"}}, "Q?", ["a", "b"], "refused: audio must be an uploaded file's data"),
        (
            file_data("/etc/passwd"),  # a file of the server's, not an upload
            "Q?",
            ["a", "b"],
            "refused: Cannot move /etc/passwd to the gradio cache dir because it was not uploaded by a user.",
        ),
        ("upload", 42, ["a", "b"], "the question must be text, not a number"),
        ("upload", {"text": "Q?"}, ["a", "b"], "the question must be text, not an object"),
        ("upload", "Is it \ud800?", ["a", "b"], "the question contains a lone surrogate (U+D800), which is not text"),
        ("upload", "Q?", 42, "options must be a list of strings, not a number"),
        ("upload", "Q?", {"a": 1, "b": 2}, "options must be a list of strings, not an object"),
        ("upload", "Q?", ["a", "\x00"], "option 2 contains a control character (U+0000)"),
        ("upload", "Q?", ["a", 7], "option 2 must be text, not a number"),
    ],
)
def test_malformed_fields_are_refused_in_one_line(url, clips, capfd, audio, question, options, message):
    """`/answer` by hand, each field of the wrong kind: one line back, and no traceback in the server's log."""
    audio = upload(url, clips["tone.ogg"]) if audio == "upload" else audio
    body = json.dumps({"data": [audio, question, options]}).encode()  # a lone surrogate escaped, as JSON allows
    response = httpx.post(f"{url}gradio_api/call/answer", content=body, headers={"content-type": "application/json"})
    event = response.json()["event_id"]
    stream = httpx.get(f"{url}gradio_api/call/answer/{event}", timeout=120).text
    assert stream.startswith("event: error")
    error = json.loads(stream.split("data: ", 1)[1].splitlines()[0])["error"]
    assert error.startswith(message) and "\n" not in error
    assert "Traceback" not in "".join(capfd.readouterr())


@pytest.mark.parametrize(
    "fields, message",
    [
        ((42, "Q?", "a\nb", False), "refused: Audio must be an uploaded file's data"),
        (("upload", 42, "a\nb", False), "the question must be text, not a number"),
        (("upload", "Q?", {"a": 1}, False), "options must be a list of strings, not an object"),
        (("upload", "Q?", "a\nb", "yes"), "thinking mode must be true or false, not 'yes'"),
    ],
)
def test_the_pages_own_event_checks_its_fields_too(url, clips, capfd, fields, message):
    """The page's Answer event can be sent by a script too: its fields are checked as the API's are."""
    audio, question, options, think = fields
    audio = upload(url, clips["tone.ogg"]) if audio == "upload" else audio
    output, _ = attack_requests.page_event(url, [audio, question, options, think, None])
    shown = output.get("error") or attack_requests.status_text(output.get("data", []))
    assert message in shown
    assert "Traceback" not in "".join(capfd.readouterr())


def test_request_bodies_are_capped(url, clips):
    """A JSON body over --max-body (1 MB here) is refused with 413 from its declared length, or, sent in chunks
    with no length, as soon as its bytes pass the cap; an upload must say its length, and may not pass
    --max-file-size by it."""
    call = f"{url}gradio_api/call/answer"
    body = b'{"data": [null, "Q?", [' + b'"a",' * (2 * MiB // 4) + b'"a"]]}'
    status, detail = attack_requests.post_json(call, body)
    assert (status, detail) == (413, '{"detail": "request body too large (2 MB): this app takes at most 1 MB"}')
    status, detail = attack_requests.post_json(call, lambda: (b"x" * 65536 for _ in range(64)))  # 4 MB, chunked
    assert (status, detail) == (413, '{"detail": "request body too large: this app takes at most 1 MB"}')
    chunks = (b"x" * 65536 for _ in range(8))
    response = httpx.post(f"{url}gradio_api/upload", content=chunks, headers={"content-type": "multipart/form-data"})
    assert response.status_code == 411 and "must say its length" in response.json()["detail"]
    response = httpx.post(f"{url}gradio_api/upload", content=b"x" * (3 * MiB), headers={"content-type": "x/y"})
    assert response.status_code == 413 and response.json()["detail"] == (
        "upload too large (3 MB): this app takes at most 2 MB"
    )
    assert_answered(ask(Client(url, verbose=False), clips["tone.ogg"]), ("Dog", "Speech", "Tone"))  # and it serves


def test_a_request_is_bounded_in_time_and_a_client_holds_one_place(tiny_model, clips):
    """With a 2 s time limit and a budget the random model never ends on its own, /answer comes back with the text
    written by then and a note saying so; meanwhile the same client's second question is refused (429), while
    another client's waits its turn."""
    settings = replace(SETTINGS, time_limit=2.0, max_new_tokens=100_000, max_total_tokens=100_000)
    with running_app(tiny_model, settings) as demo:
        client, other = Client(demo.local_url, verbose=False), Client(demo.local_url, verbose=False)
        tone = handle_file(str(clips["tone.ogg"]))
        first = client.submit(tone, "Q?", ["a", "b"], api_name="/answer")
        deadline = time.monotonic() + 60
        while first.status().code.name != "PROCESSING" and time.monotonic() < deadline:
            time.sleep(0.05)
        second = client.submit(tone, "Q?", ["a", "b"], api_name="/answer")
        waiting = other.submit(tone, "Q?", ["a", "b"], api_name="/answer")
        with pytest.raises(httpx.HTTPStatusError) as refused:
            second.result(timeout=60)
        assert refused.value.response.status_code == 429
        assert refused.value.response.json()["detail"] == admission.ONE_PLACE
        result = first.result(timeout=60)
        assert_answered(result, "ab")
        assert "stopped at the time limit of 2 s per question" in result["note"] and result["raw"]
        assert_answered(waiting.result(timeout=60), "ab")


@pytest.mark.parametrize(
    "seconds, think, budget",
    [
        (20.0, False, 256),  # one window: the library's budget
        (40.0, True, 1024),  # two windows of thinking: 2 x 1024 fit in 2048
        (75.0, True, 682),  # three: 2048 // 3 each
        (300.0, False, 170),  # twelve: 2048 // 12 each, the clip's whole text within 2048 tokens
    ],
)
def test_a_long_clips_windows_share_one_token_budget(seconds, think, budget):
    decoding = slot.decoding_options(AppSettings(), think, seconds, heard_seconds=30.0)
    assert decoding.token_budget == budget
    assert len(window_spans(seconds)) * budget <= max(AppSettings().max_total_tokens, budget)


def test_the_disk_quota_removes_the_oldest_unused_upload_first(tmp_path):
    """Room for a new upload is made by removing uploads no history holds, oldest first; a clip a history holds and
    the history files stay, and when they alone fill the quota, the upload is refused."""
    cache = Cache(tmp_path, AppSettings(cache_quota=100))
    files = {name: tmp_path / name / f"{name}.wav" for name in ("oldest", "older", "held", "newer")}
    for age, path in enumerate(reversed(list(files.values()))):
        path.parent.mkdir()
        path.write_bytes(b"x" * 20)
        os.utime(path, (time.time() - 100 * (age + 1), time.time() - 100 * (age + 1)))
    page = cache.history_dir / "aqa-history-page-1" / "aqa-history-page.csv"
    page.parent.mkdir()
    page.write_bytes(b"x" * 10)
    cache.hold(str(files["held"]))
    with cache.room(45) as fits:  # 90 bytes there: the two oldest unused go
        assert fits and cache.usage() == 50
    assert [name for name, path in files.items() if path.exists()] == ["held", "newer"]
    with cache.room(95) as fits:  # the held clip and the history stay: no room
        assert not fits
    assert files["held"].exists() and page.exists()


def test_an_upload_past_the_disk_quota_is_refused_with_a_message(tiny_model, clips):
    settings = replace(SETTINGS, cache_quota=1000)  # bytes: less than any clip
    with running_app(tiny_model, settings) as demo:
        with clips["tone.ogg"].open("rb") as handle:
            response = httpx.post(f"{demo.local_url}gradio_api/upload", files={"files": ("tone.ogg", handle)})
        assert response.status_code == 507
        assert response.json()["detail"].startswith("no room for this upload under the app's disk quota (1000 bytes")


def test_answers_leave_no_empty_temporary_files(client, clips, gradio_cache):
    """The API's audio input takes the uploaded file's path as it is: nothing is left at the top of the cache."""
    for _ in range(3):
        ask(client, clips["tone.ogg"])
    assert [path.name for path in gradio_cache.glob("tmp*") if path.is_file()] == []


def test_two_families_side_by_side(tiny_model, tmp_path):
    """R1-AQA's family beside another (Audio Flamingo 3, which hears 600 s at a time): one /answer call gives both,
    the 40 s clip in two windows for the first and in one piece for the second; the page says what each hears."""
    from aqa.families import AUDIO_FLAMINGO_3
    from aqa.random_weights import build_tiny_checkpoint

    path = build_tiny_checkpoint(tmp_path / "audio-flamingo-3", family=AUDIO_FLAMINGO_3)
    other = aqa.load_model(str(path), precision="fp32", device="cpu")
    options = ("Dog", "Speech", "Tone")
    with running_app(tiny_model, SETTINGS, compare=other) as demo:
        result = ask(Client(demo.local_url, verbose=False), LONG_CLIP, options=options)
        header = demo.config["components"][0]["props"]["value"]
    assert_answered(result, options)
    assert_answered(result["compare"], options)
    assert (result["family"], result["compare"]["family"]) == ("qwen2-audio", "audio-flamingo-3")
    assert (len(result["windows"]), result["compare"]["windows"]) == (2, [])
    assert "A hears 30 s at a time, B 600 s" in header


def full_size_checkpoint(folder: Path) -> str:
    """A folder holding only the config of Qwen2-Audio-7B's shapes (8.4B parameters): enough for the memory check."""
    from aqa.families import QWEN2_AUDIO

    QWEN2_AUDIO.build_config(QWEN2_AUDIO.build_tokenizer(), "full").save_pretrained(folder)
    return str(folder)


GiB = 2**30


@pytest.mark.parametrize(
    "precisions, devices, free_gib, message",
    [
        (  # two bf16 7B models on a 24 GB GPU: 4-bit would fit
            ("bf16", "bf16"),
            ("cuda:0", "cuda:0"),
            24,
            "the models do not fit in GPU memory together: about 31.3 GiB of weights (15.6 + 15.6), 24.0 GiB "
            "available; try --precision 4bit --compare-precision 4bit (about 13.4 GiB)",
        ),
        (("bf16", "bf16"), ("cuda:0", "cuda:0"), 80, None),  # an 80 GB GPU holds both
        (("4bit", "4bit"), ("cuda:0", "cuda:0"), 24, None),  # so does a 24 GB one in 4-bit
        (("bf16", "bf16"), ("cuda:0", "cuda:1"), 24, None),  # one on each GPU
        (("bf16", "4bit"), ("cuda:0", "cuda:0"), 20, "try --precision 4bit --compare-precision 4bit (about 13.4 GiB)"),
        (  # even 4-bit is too much
            ("4bit", "4bit"),
            ("cuda:0", "cuda:0"),
            12,
            "about 13.4 GiB of weights (6.7 + 6.7), 12.0 GiB available; put them on two GPUs (--compare-device cuda:1)",
        ),
        (
            ("fp32", "fp32"),
            ("cpu", "cpu"),
            48,
            "the models do not fit in RAM together: about 62.6 GiB of weights (31.3 + 31.3)",
        ),
    ],
)
def test_both_models_must_fit_before_either_loads(tmp_path, precisions, devices, free_gib, message):
    name = full_size_checkpoint(tmp_path)
    specs = [aqa.ModelSpec(name, precision, device) for precision, device in zip(precisions, devices)]
    if message is None:
        launching.check_models_fit(specs, free=lambda device: free_gib * GiB)
        return
    with pytest.raises(aqa.ModelError) as caught:
        launching.check_models_fit(specs, free=lambda device: free_gib * GiB)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_main_checks_the_second_model_before_loading_the_first(tiny_model_dir, tmp_path, capsys):
    missing = tmp_path / "missing"
    assert launching.main(["--model", str(tiny_model_dir), "--compare", str(missing), "--device", "cpu"]) == 2
    captured = capsys.readouterr().err.strip().splitlines()
    assert captured == [f"error: {missing}: no such model directory"], "nothing was loaded first"


# --- pure helpers -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, options",
    [
        ("Dog\nCat\n\n", ["Dog", "Cat"]),  # empty lines are not options
        ("  Dog \r\n\tCat\n", ["Dog", "Cat"]),  # lines are stripped, whatever their ends
        ("It's a dog | not a cat\nRain", ["It's a dog | not a cat", "Rain"]),  # only a line break separates
        ("", []),
        (None, []),  # a cleared box
    ],
)
def test_options_from_text(text, options):
    assert checks.options_from_text(text) == options


def test_recordings_get_distinct_names():
    """Gradio names every recording audio.wav; the history tells them apart, and keeps one name per clip."""
    history = app_history.History()
    paths = ["/c/1/audio.wav", "/c/2/audio.wav", "/c/3/speech.wav", "/c/4/speech.wav"]
    names = []
    for number, path in enumerate([*paths, paths[0]], start=1):
        names.append(history.clip_name(path))
        history.records.insert(0, {"#": number, "path": path, "clip": names[-1]})
    assert names == ["recording-1.wav", "recording-2.wav", "speech.wav", "speech-2.wav", "recording-1.wav"]


def test_history_files_have_every_column(tiny_model, clips, tmp_path):
    history = app_history.History()
    decoding = aqa.DecodingOptions(think=True, max_new_tokens=4)
    result = aqa.answer(tiny_model, clips["tone.ogg"], "Q?", ["a", "b"], decoding)
    record = app_history.history_record(
        [tiny_model], decoding, "tone.ogg", str(clips["tone.ogg"]), "Q?", ["a", "b"], [result]
    )
    record["#"] = 1
    history.records.insert(0, record)
    app_history.judge(record, "b", " too quiet ")
    csv_path, jsonl_path = map(Path, app_history.write_history(history, tmp_path, "h"))
    with csv_path.open(newline="", encoding="utf-8") as handle:
        [row] = list(csv.DictReader(handle))
    [line] = [json.loads(text) for text in jsonl_path.read_text(encoding="utf-8").splitlines()]
    assert list(row) == list(line) == app_history.HISTORY_COLUMNS
    assert (row["thinking mode"], row["decoding"]) == ("yes", "greedy, up to 4 new tokens")
    assert (row["model"], row["family"], row["precision"], row["clip"]) == (
        tiny_model.name,
        "qwen2-audio",
        "fp32",
        "tone.ogg",
    )
    assert json.loads(row["probabilities"]) == line["probabilities"] and set(line["probabilities"]) == {"a", "b"}
    assert (line["expected"], line["correct"], line["comment"]) == ("b", record["answer"] == "b", "too quiet")
    assert row["correct"] == ("yes" if line["correct"] else "no")
    assert (
        line["raw output"] == result.raw and line["answer source"] == app_history.ANSWER_SOURCES[result.answer_source]
    )
    # A new version goes to a new place (a browser may keep the old one under its old link), the old one is removed.
    newer = app_history.write_history(history, tmp_path, "h")
    assert newer[0] != str(csv_path) and not csv_path.exists()


def test_compare_history_keeps_both_models_and_judges_both(tiny_model, tiny_model_2, tmp_path):
    """With --compare, a row holds both models' answers (the second's columns prefixed "compare "), each one's
    windows, whether they agree, and a correct mark for each."""
    history = app_history.History()
    models, options = [tiny_model, tiny_model_2], ["a", "b"]
    decoding = aqa.DecodingOptions(max_new_tokens=4, long_audio="windows")
    results = [aqa.answer(model, LONG_CLIP, "Q?", options, decoding) for model in models]
    record = app_history.history_record(models, decoding, LONG_CLIP.name, str(LONG_CLIP), "Q?", options, results)
    record["#"] = 1
    history.records.insert(0, record)
    app_history.judge(record, "a", "")
    columns = app_history.HISTORY_COLUMNS + app_history.COMPARE_COLUMNS
    csv_path, jsonl_path = map(Path, app_history.write_history(history, tmp_path, "h", columns))
    with csv_path.open(newline="", encoding="utf-8") as handle:
        [row] = list(csv.DictReader(handle))
    [line] = [json.loads(text) for text in jsonl_path.read_text(encoding="utf-8").splitlines()]
    assert list(row) == list(line) == columns
    assert (line["model"], line["compare model"]) == (tiny_model.name, tiny_model_2.name)
    assert (line["answer"], line["compare answer"]) == (results[0].answer, results[1].answer)
    assert line["agree"] == (results[0].answer == results[1].answer)
    assert (line["correct"], line["compare correct"]) == (results[0].answer == "a", results[1].answer == "a")
    for prefix in ("", app_history.COMPARE):
        assert [(window["start"], window["end"]) for window in line[prefix + "windows"]] == [(0.0, 30.0), (10.0, 40.0)]
    assert line["decoding"] == "greedy, up to 4 new tokens; a clip longer than the model hears, window by window"
    [cells] = app_history.table_rows(history)
    sign = "=" if line["agree"] else "≠"
    assert cells[5] == f"{results[0].answer} {sign} {results[1].answer}"
    assert cells[8] == " · ".join("✓" if answer == "a" else "✗" for answer in (results[0].answer, results[1].answer))


def test_window_table_and_plot(tiny_model):
    """A long clip's windows on the page: a row per window and one for the whole clip; a line per option through
    each window's middle."""
    options = ["a", "b", "c"]
    decoding = aqa.DecodingOptions(max_new_tokens=2, long_audio="windows")
    result = aqa.answer(tiny_model, LONG_CLIP, "Q?", options, decoding)
    table = showing.windows_table(result)
    assert table["headers"] == ["window", "answer", "probabilities"]  # every option in one cell: a phone shows all
    assert [row[:2] for row in table["data"]] == [
        ["0–30 s", result.windows[0].answer],
        ["10–40 s", result.windows[1].answer],
        ["whole clip (mean)", result.answer],
    ]
    assert table["data"][-1][2] == " · ".join(f"{option} {result.probabilities[option]:.0%}" for option in options)
    [axes] = showing.window_plot(result).axes
    lines = axes.get_lines()
    assert [line.get_label() for line in lines] == options
    for option, line in zip(options, lines):
        assert list(line.get_xdata()) == pytest.approx([15.0, 25.0], abs=1.0)  # each option a little to one side
        assert list(line.get_ydata()) == [window.probabilities[option] for window in result.windows]


def test_equal_probabilities_keep_their_own_lines():
    """Two options with the same probability in every window: their lines stay apart (side by side, each with its
    marker and dash) rather than one hiding the other."""
    windows = tuple(aqa.options.Window(start, start + 30, "a", "text", {"a": 0.5, "b": 0.5}, "") for start in (0, 25))
    result = aqa.Result("a", "windows", "", None, {"a": 0.5, "b": 0.5}, 55.0, None, windows=windows)
    first, second = showing.window_plot(result).axes[0].get_lines()
    assert list(first.get_ydata()) == list(second.get_ydata())
    assert all(x < y for x, y in zip(first.get_xdata(), second.get_xdata()))
    assert (first.get_marker(), first.get_linestyle()) != (second.get_marker(), second.get_linestyle())


def test_old_files_are_removed(tmp_path):
    """An upload in no history lives `keep_uploads`; a history file, and a clip a history holds, `keep_files`; a
    folder goes once it is empty and old."""
    cache = Cache(tmp_path, AppSettings(keep_uploads=50, keep_files=500))
    old, new, held = tmp_path / "a" / "old.wav", tmp_path / "b" / "new.wav", tmp_path / "c" / "held.wav"
    page = cache.history_dir / "aqa-history-page-1" / "aqa-history-page.csv"
    for path in (old, new, held, page):
        path.parent.mkdir()
        path.write_text("x")
    cache.hold(str(held))
    for path in (old, old.parent, held, held.parent, page, page.parent):
        os.utime(path, (time.time() - 100, time.time() - 100))
    cache.tidy()
    assert not old.parent.exists() and new.exists() and held.exists() and page.exists()
    for path in (held, page):
        os.utime(path, (time.time() - 1000, time.time() - 1000))
    cache.tidy()
    assert not held.exists() and not page.exists() and cache.history_dir.is_dir()


def test_a_removed_upload_is_named_in_the_message(tmp_path):
    with pytest.raises(aqa.AudioError) as caught:
        checks.load_clip(str(tmp_path / "gone" / "clip.wav"), AppSettings(keep_uploads=7200))
    assert str(caught.value) == "clip.wav: the upload is gone (uploads are kept 2 h); upload it again"


@pytest.mark.parametrize(
    "error, message",
    [
        (aqa.AudioError("a.wav: empty file (0 bytes)"), "a.wav: empty file (0 bytes)"),  # the core's own line
        (torch.OutOfMemoryError("CUDA out of memory"), slot.OUT_OF_MEMORY),  # advice instead of CUDA's text
        (KeyError("x"), "unexpected error: KeyError: 'x'"),  # the type and the first line only
        (gr.Error("kept"), "kept"),
    ],
)
def test_gradio_error(error, message):
    assert slot.gradio_error(error).message == message


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
        (  # the caps, from either
            ["--max-options", "4", "--max-prompt-tokens", "3000"],
            {"AQA_MAX_QUESTION_CHARS": "500", "AQA_MAX_OPTION_CHARS": "80", "AQA_KEEP_FILES": "3600"},
            {"max_question_chars": 500, "max_option_chars": 80, "max_options": 4, "max_prompt_tokens": 3000},
        ),
        ([], {}, {"max_options": Limits().options, "keep_files": 86400}),  # the library's caps by default
        (  # the bounds on one request and on the disk, from either
            ["--max-body", "2mb", "--time-limit", "30", "--cache-quota", "1gb"],
            {"AQA_MAX_TOTAL_TOKENS": "512", "AQA_KEEP_UPLOADS": "600", "AQA_MAX_FILE_SIZE": "10mb"},
            {
                "max_body": 2 * MiB,
                "time_limit": 30.0,
                "cache_quota": 1024 * MiB,
                "max_total_tokens": 512,
                "keep_uploads": 600,
                "max_file_size": 10 * MiB,
            },
        ),
        (  # the defaults keep a shared Space responsive
            [],
            {},
            {"max_body": MiB, "time_limit": 120.0, "max_total_tokens": 2048, "keep_uploads": 3600, "queue_size": 20},
        ),
        ([], {}, {"compare": None, "long_audio": "windows"}),  # one model; long clips window by window
        (
            ["--compare", "b", "--compare-precision", "4bit", "--long-audio", "first"],
            {},
            {"compare": "b", "compare_precision": "4bit", "compare_device": None, "long_audio": "first"},
        ),
        (
            [],
            {
                "AQA_COMPARE": "b",
                "AQA_COMPARE_PRECISION": "8bit",
                "AQA_COMPARE_DEVICE": "cuda:1",
                "AQA_LONG_AUDIO": "first",
            },
            {"compare": "b", "compare_precision": "8bit", "compare_device": "cuda:1", "long_audio": "first"},
        ),
    ],
)
def test_flags_and_environment(argv, environ, expected):
    args = flags.build_parser(environ).parse_args(argv)
    assert {key: getattr(args, key) for key in expected} == expected


def test_settings_from_flags():
    args = flags.build_parser({"AQA_KEEP_FILES": "60"}).parse_args(["--max-options", "4", "--max-option-chars", "80"])
    settings = flags.settings_from(args)
    assert settings.limits == replace(Limits(), options=4, option_chars=80) and settings.keep_files == 60


@pytest.mark.parametrize(
    "argv, second",
    [
        ([], None),  # one model
        (["--compare", "b"], ("b", "4bit", "cuda:1")),  # the second model takes the first's precision and device
        (["--compare", "b", "--compare-precision", "bf16", "--compare-device", "cuda:0"], ("b", "bf16", "cuda:0")),
    ],
)
def test_model_specs(argv, second):
    args = flags.build_parser({}).parse_args(["--model", "a", "--precision", "4bit", "--device", "cuda:1", *argv])
    specs = flags.model_specs(args)
    assert (specs[0].name, specs[0].precision, specs[0].device) == ("a", "4bit", "cuda:1")
    assert (None if len(specs) == 1 else (specs[1].name, specs[1].precision, specs[1].device)) == second


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--max-options", "0"], "must be at least 1 (got 0)"),
        (["--time-limit", "0"], "must be above 0 (got 0)"),
        (["--max-body", "lots"], "not a size: 'lots' (write e.g. 50mb, 1gb, 512kb)"),
        (["--cache-quota", "0"], "must be at least 1 byte (got 0)"),
    ],
)
def test_a_limit_that_cannot_be_is_refused(capsys, argv, message):
    with pytest.raises(SystemExit):
        flags.build_parser({}).parse_args(argv)
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("clip, question, options", EXAMPLES)
def test_examples_are_small_and_askable(clip, question, options):
    path = ASSETS / clip
    assert path.stat().st_size < 300_000, "committed binaries stay under 300 KB"
    check_question(question, options)
    assert len(checks.load_clip(str(path), AppSettings())) > 0


def test_space_front_matter():
    """The README's front matter is the Hugging Face Space's configuration."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n"), "Spaces read the front matter only at the very top"
    meta = yaml.safe_load(text.split("---\n")[1])
    assert (meta["sdk"], meta["python_version"], meta["models"]) == ("gradio", "3.11", ["mispeech/r1-aqa"])
    assert meta["sdk_version"].split(".")[0] == gr.__version__.split(".")[0]  # the Gradio major the app is written for
    assert (ROOT / meta["app_file"]).is_file() and meta["suggested_hardware"]
    assert len(meta["short_description"]) <= 60  # the Hub's limit


def test_app_py_is_a_thin_entry_point(tiny_model_dir, monkeypatch):
    """The Space runs `python app.py`: a few lines that hand over to aqa.app; importing it loads nothing, and
    `app.demo` (what Gradio's reload mode looks for) is the app as the environment configures it."""
    assert len((ROOT / "app.py").read_text(encoding="utf-8").splitlines()) <= 30
    assert app.main is launching.main
    monkeypatch.setenv("AQA_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("AQA_DEVICE", "cpu")
    launching.demo_from_environment.cache_clear()
    try:
        demo = app.demo
        assert isinstance(demo, gr.Blocks) and app.demo is demo, "built once"
        assert "tiny-model" in demo.config["components"][0]["props"]["value"]  # the header names the model
    finally:
        launching.demo_from_environment.cache_clear()


def test_main_reports_a_bad_model_in_one_line(tmp_path, capsys):
    assert launching.main(["--model", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {tmp_path / 'missing'}: no such model directory"


def test_main_serves_the_model_named_in_the_environment_and_leaves_no_file(tiny_model_dir, clips, tmp_path):
    """`python app.py` as a Space runs it: settings from the environment, the model loaded once, then served; its
    start-up output names the app's own --share flag (not Gradio's `share=True`); and once stopped with SIGTERM, as a
    Space stops it, nothing it wrote is left in the cache folder (uploads, history, its folders)."""
    port, cache = free_port(), tmp_path / "cache"
    environ = os.environ | {
        "AQA_MODEL": str(tiny_model_dir),
        "AQA_DEVICE": "cpu",
        "AQA_MAX_NEW_TOKENS": "4",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_TEMP_DIR": str(cache),
    }
    log = tmp_path / "app.log"
    with log.open("w") as output:
        server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=environ, stdout=output, stderr=output)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/", server, log)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        for clip in ("tone.ogg", "speech.mp3"):
            assert_answered(ask(client, clips[clip], options=("a", "b")), ("a", "b"))
        assert any(path.is_file() for path in cache.rglob("*")), "the uploads are in the cache folder meanwhile"
    finally:
        server.terminate()
        server.wait(timeout=60)
    text = log.read_text()
    assert "--share" in text and "share=True" not in text
    assert server.returncode == 0 and "Traceback" not in text
    assert not cache.exists() or not any(cache.iterdir()), f"left behind: {sorted(cache.rglob('*'))}"
