"""The R1-AQA browser demo and Hugging Face Space: ask a multiple-choice question about a clip, and watch the answer
being written; optionally two models side by side.

    python app.py                                   # mispeech/r1-aqa, bf16 on the GPU (fp32 on CPU), 127.0.0.1:7860
    python app.py --model tiny-model --port 7861    # any path or hub id `aqa` accepts (`aqa tiny tiny-model`)
    python app.py --compare Qwen/Qwen2-Audio-7B-Instruct   # R1-AQA and the model it was trained from, side by side
    AQA_MODEL=tiny-model GRADIO_SERVER_PORT=7861 python app.py   # the same, from the environment (Spaces)

Importing this module loads nothing: `build_demo(model, settings, compare=None)` builds the UI around loaded models
(tests pass the tiny ones) and `main()` parses the flags, checks that the models fit, loads them once and launches.
Handlers only call the `aqa` library.
"""

from __future__ import annotations

try:  # ZeroGPU Spaces attach a GPU only while a `spaces.GPU` function runs; `spaces` wants importing before torch.
    import spaces

    on_gpu = spaces.GPU(duration=120)  # thinking mode writes up to 1024 tokens
except ImportError:

    def on_gpu(fn):  # elsewhere the model stays on its device and this is a no-op
        return fn


import argparse
import asyncio
import csv
import html
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import asynccontextmanager, closing, contextmanager
from dataclasses import dataclass, fields, replace
from datetime import datetime
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from matplotlib.figure import Figure

import aqa
from aqa.audio import CHUNK_LENGTH, SAMPLE_RATE
from aqa.cli.args import add_model_args, model_spec, quiet_libraries
from aqa.defaults import PRECISIONS
from aqa.errors import AQAError, AudioError, InputError, ModelError, first_line
from aqa.jsonl import write_atomic, write_jsonl
from aqa.limits import Limits
from aqa.loading import load
from aqa.model import available_memory, default_device, default_precision, read_config, weight_bytes
from aqa.parsing import extract_think
from aqa.prompt import question_problems
from aqa.windows import LONG_AUDIO, WINDOW_OVERLAP

ASSETS = Path(__file__).resolve().parent / "assets"
log = logging.getLogger("aqa.app")
AnswerFn = Callable[[np.ndarray, str, list[str], aqa.DecodingOptions], aqa.Result]
StreamFn = Callable[[np.ndarray, str, list[str], aqa.DecodingOptions], Iterator["str | aqa.Result"]]

# Examples made by assets/make_assets.sh: (clip, question, options). The page opens with the first one loaded.
EXAMPLES = [
    (
        "speech_man.ogg",
        "Based on the given audio, identify the source of the speaking voice.",
        ["Man", "Woman", "Child", "Robot"],
    ),
    ("speech_woman.mp3", "What does the speaker ask the listener to bring?", ["A ticket", "An umbrella", "A coat"]),
    ("beeps.flac", "How many beeps are there in the audio?", ["Two", "Three", "Four", "Five"]),
    ("melody.ogg", "How does the pitch of the melody change?", ["It rises", "It falls", "It stays the same"]),
    ("rain_noise.ogg", "What is the most likely source of this sound?", ["Rain", "A crowd", "A piano", "A dog"]),
    ("long_40s.ogg", "What repeats in the background noise?", ["A short beep", "A drum hit", "A voice", "Nothing"]),
]
# How the answer was chosen (Result.answer_source), in words.
ANSWER_SOURCES = {
    "text": "the option the model wrote",
    "probabilities": "the most probable option, since the model's text named none of them",
    "windows": f"the option with the highest mean probability over the clip's {CHUNK_LENGTH} s windows",
    "none": "no answer",
}
# What the history keeps of one model's answer.
MODEL_COLUMNS = [
    "model",
    "precision",
    "answer",
    "answer source",
    "probabilities",
    "windows",
    "raw output",
    "thinking",
    "note",
    "seconds",
    "seconds audio",
    "seconds features",
    "seconds generation",
    "seconds scoring",
]
# The downloaded history (CSV and JSON Lines), one row per answer, newest first. The tester fills in `expected` and
# `comment` on the page; `correct` follows from `expected`.
HISTORY_COLUMNS = [
    "time",
    "model",
    "precision",
    "decoding",
    "thinking mode",
    "clip",
    "clip seconds",
    "question",
    "options",
    *MODEL_COLUMNS[2:],
    "expected",
    "correct",
    "comment",
]
# With --compare, the second model's columns follow, named with this prefix, and whether the two answers agree.
COMPARE = "compare "
COMPARE_COLUMNS = [COMPARE + column for column in MODEL_COLUMNS] + ["agree", COMPARE + "correct"]
TABLE_COLUMNS = ["#", "time", "clip", "question", "options", "answer", "top", "expected", "correct", "comment"]
RECORDING = "audio.wav"  # the name Gradio gives every microphone recording (and every edited clip)
OUT_OF_MEMORY = "out of memory on this question; try a shorter clip, thinking mode off, or --precision 4bit"
READY = "Press **Answer**, or Enter in the question, or Ctrl+Enter anywhere."
STOPPED = "**Stopped.** The model is free for the next question; the text so far stays above, not in the history."
CSS = """
.answer-box textarea {font-size: 1.6rem; font-weight: 600}
.answer-box.disagree textarea {color: var(--error-text-color, #b91c1c)}
#status.problem {border-left: 4px solid var(--error-border-color, #ef4444); padding-left: 0.6rem}
#agreement.disagree {border-left: 4px solid var(--error-border-color, #ef4444); padding-left: 0.6rem}
#agreement.agree {border-left: 4px solid var(--color-green-500, #22c55e); padding-left: 0.6rem}
#results {transition: opacity 0.2s}
#results.stale {opacity: 0.4}
#examples table {table-layout: fixed; width: 100%}
#examples th, #examples td, #examples td * {white-space: normal !important; overflow-wrap: anywhere; text-align: left}
"""
SHOW_INPUTS = "() => document.querySelector('#question')?.scrollIntoView({block: 'center'})"
# Ctrl+Enter (Cmd+Enter on a Mac) answers from anywhere on the page; Enter in the one-line question box answers too.
KEYS = """
() => document.addEventListener("keydown", (event) => {
  // The question box answers on its own Enter, Ctrl held or not: answer once, not twice.
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !event.target.closest?.("#question")) {
    event.preventDefault();
    document.activeElement?.blur?.();  // a comment being written is saved when its box is left
    document.querySelector("#answer-button")?.click();
  }
})
"""


@dataclass(frozen=True)
class AppSettings:
    max_seconds: float = 300.0  # longest clip accepted (decoding a long one is cheap; each 30 s window is a question)
    max_file_size: str = "50mb"  # upload cap, enforced by Gradio before the file reaches a handler
    max_new_tokens: int | None = None  # None: the core's default (256, or 1024 in thinking mode)
    queue_size: int = 20  # requests waiting for the model beyond this are turned away; the others see their place
    limits: Limits = Limits()  # caps on the question and options (aqa.limits), as in the library and the CLI
    keep_files: int = 86400  # seconds an upload or a history file is kept after it was last written
    long_audio: str = "windows"  # a clip over 30 s: every 30 s window answered ("windows"), or its first 30 s


# --- answering: the library does the work -----------------------------------------------------------------------


def check_inputs(
    settings: AppSettings, audio: str | None, question: str, options
) -> tuple[list[str], np.ndarray | None]:
    """Every problem with the inputs (one line each), and the decoded clip when it is good."""
    problems, samples = [], None
    try:
        samples = load_clip(audio, settings.max_seconds, settings.keep_files)
    except AQAError as error:
        problems.append(str(error))
    problems += question_problems(question, options if options is not None else [], limits=settings.limits)
    return problems, samples


def checked_clip(settings: AppSettings, audio: str | None, question: str, options) -> np.ndarray:
    """The decoded clip, or an InputError listing every problem with the inputs."""
    problems, samples = check_inputs(settings, audio, question, options)
    if problems:
        raise InputError("; ".join(problems))
    return samples


def decoding_options(settings: AppSettings, think: bool) -> aqa.DecodingOptions:
    return aqa.DecodingOptions(think=think, max_new_tokens=settings.max_new_tokens, long_audio=settings.long_audio)


def device_functions(model: aqa.AQAModel, lock: threading.Lock) -> tuple[AnswerFn, StreamFn]:
    """The two functions that touch the model, on the GPU under ZeroGPU: one answer at once, and one streamed.

    ZeroGPU calls a `spaces.GPU` function in a forked worker and pickles its arguments, results and (for a generator)
    each yielded value: the model reaches it through this closure, so only the samples, the question, the text and
    the Result cross over. `lock` keeps one question at a time on the models even when a cancelled stream is still
    finishing its token as the queue lets the next question in; closing a stream ends its generation at once.
    """

    @on_gpu
    def answer_on_device(samples: np.ndarray, question: str, options: list[str], decoding) -> aqa.Result:
        with lock:
            return aqa.answer(model, samples, question, options, decoding)

    @on_gpu
    def stream_on_device(samples: np.ndarray, question: str, options: list[str], decoding):
        with lock:
            yield from aqa.answer_stream(model, samples, question, options, decoding)

    return answer_on_device, stream_on_device


def streamed(
    pieces: Iterator[str | aqa.Result], stop: threading.Event, show: Callable[[str], object]
) -> Generator[object, None, aqa.Result | None]:
    """Yields `show(the text so far)` after each piece of a stream; returns its Result, or None when `stop` was set
    (the stream is closed then, which ends generation at the next token). Failures leave as one-line gr.Errors."""
    text = ""
    with closing(pieces), shown_as_gradio_error():
        for piece in pieces:
            if isinstance(piece, aqa.Result):
                return piece
            text += piece
            yield show(text)
            if stop.is_set():
                return None
    return None


def load_clip(path: str | None, max_seconds: float, keep_files: int = AppSettings.keep_files) -> np.ndarray:
    """The aqa loader, with messages that name the uploaded file rather than Gradio's cache path."""
    if not path:
        raise InputError("no audio: upload a file or record one with the microphone")
    name = Path(path).name
    if not Path(path).exists():  # the page still shows a clip whose upload the cleanup has removed
        raise AudioError(f"{name}: the upload is gone (uploads are kept {format_age(keep_files)}); upload it again")
    try:
        samples = aqa.load_audio(path)
    except AudioError as error:
        raise AudioError(str(error).replace(str(path), name)) from None
    seconds = len(samples) / SAMPLE_RATE
    if seconds > max_seconds:
        raise AudioError(f"{name}: the clip is {seconds:.0f} s long; this app takes clips up to {max_seconds:.0f} s")
    return samples


def gradio_error(error: Exception) -> gr.Error:
    """The one line a user sees for any failure; unexpected ones are logged with their traceback."""
    if isinstance(error, gr.Error):
        return error
    if isinstance(error, AQAError):
        message = str(error)
    elif isinstance(error, torch.OutOfMemoryError):
        message = OUT_OF_MEMORY
    else:
        log.error("unexpected error while answering", exc_info=error)
        message = f"unexpected error: {type(error).__name__}: {first_line(error)}"
    return gr.Error(message, print_exception=False)


@contextmanager
def shown_as_gradio_error() -> Iterator[None]:
    try:
        yield
    except Exception as error:
        if isinstance(error, torch.OutOfMemoryError) and torch.cuda.is_available():
            torch.cuda.empty_cache()  # give the memory back so that the next, smaller question can run
        raise gradio_error(error) from None


def options_from_text(text: str | None) -> list[str]:
    """One option per line, stripped; empty lines are not options."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def format_age(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds:g} s"


def model_labels(models: Sequence[aqa.AQAModel]) -> list[str]:
    """How the page names each model: its checkpoint's folder or hub name, "A ·" and "B ·" before it when two."""
    names = [Path(model.name).name or model.name for model in models]
    if len(set(names)) < len(names):  # the same checkpoint twice, in two precisions, or two folders named alike
        names = [f"{model.name} ({model.precision})" for model in models]
    return names if len(models) == 1 else [f"{letter} · {name}" for letter, name in zip("AB", names)]


def api_result(models: Sequence[aqa.AQAModel], results: Sequence[aqa.Result]) -> dict:
    """What `/answer` returns: the (first) model's Result as `aqa ask --json` gives it, with the model's name and
    precision; with --compare, the second model's under "compare" and whether the two answers agree."""
    first, *others = [
        {"model": model.name, "precision": model.precision, **result.to_dict()}
        for model, result in zip(models, results)
    ]
    if others:
        first |= {"compare": others[0], "agree": results[0].answer == results[1].answer}
    return first


def check_models_fit(
    specs: Sequence[aqa.ModelSpec], free: Callable[[torch.device], int | None] = available_memory
) -> None:
    """Before anything loads (minutes for a 7B model): the models' weights must fit on their devices together, else
    one line with the numbers and what would fit. Two 7B models take ~31 GiB in bf16, ~13 GiB in 4-bit."""
    on_device: dict[torch.device, list[tuple[object, str]]] = {}
    for spec in specs:
        device = torch.device(spec.device) if spec.device else default_device()
        if device.type == "cuda" and device.index is None and torch.cuda.is_available():
            device = torch.device("cuda", torch.cuda.current_device())  # "cuda" and "cuda:0" are one GPU
        precision = spec.precision or default_precision(device)
        on_device.setdefault(device, []).append((read_config(spec.name, precision), precision))
    for device, models in on_device.items():
        sizes = [weight_bytes(config, precision) for config, precision in models]
        available = free(device)
        if available is None or sum(sizes) <= available:
            continue
        where = "GPU memory" if device.type == "cuda" else "RAM"
        in_4bit = sum(weight_bytes(config, "4bit") for config, _ in models)
        if all(precision == "4bit" for _, precision in models) or in_4bit > available:
            hint = "put them on two GPUs (--compare-device cuda:1), or use a device with more memory"
        else:
            hint = f"try --precision 4bit --compare-precision 4bit (about {in_4bit / 2**30:.1f} GiB)"
        raise ModelError(
            f"the models do not fit in {where} together: about {sum(sizes) / 2**30:.1f} GiB of weights "
            f"({' + '.join(f'{size / 2**30:.1f}' for size in sizes)}), {available / 2**30:.1f} GiB available; {hint}"
        )


# --- the history of a page ----------------------------------------------------------------------------------------


class History:
    """One page's answers, newest first, and the files it downloads as; handlers change it in place, under its lock,
    so that a judgement saved while a question is being answered is not lost.

    A plain class, not a dataclass: Gradio would serialise a dataclass State value into the page's config."""

    def __init__(self):
        self.records: list[dict] = []  # the history's columns, plus "#" and the clip's "path"
        self.edits = 0  # how many times the inputs were changed: results of earlier inputs are shown dimmed
        self.saves = 0  # versions of the history files written
        self.saved: Path | None = None  # the folder of the latest version
        self.lock = threading.Lock()
        self.stop = threading.Event()  # the page's Stop button: a fresh one for each question

    def __deepcopy__(self, memo) -> History:  # Gradio copies a State's first value for each page; a lock cannot be
        return History()

    def find(self, number: float | None) -> dict | None:
        return next((record for record in self.records if record["#"] == number), None)

    def clip_name(self, path: str) -> str:
        """The clip's file name, made unique in this history: every recording is `audio.wav` to Gradio."""
        for record in self.records:
            if record["path"] == path:
                return record["clip"]
        taken = {record["clip"] for record in self.records}
        if Path(path).name == RECORDING:
            candidates = (f"recording-{number}.wav" for number in range(1, len(taken) + 2))
        else:
            stem, suffix = Path(path).stem, Path(path).suffix
            candidates = (
                f"{stem}-{number}{suffix}" if number > 1 else Path(path).name for number in range(1, len(taken) + 2)
            )
        return next(name for name in candidates if name not in taken)


def history_record(
    models: Sequence[aqa.AQAModel],
    decoding: aqa.DecodingOptions,
    clip: str,
    path: str,
    question: str,
    options: Sequence[str],
    results: Sequence[aqa.Result],
) -> dict:
    """What the history keeps of one answer (HISTORY_COLUMNS, and COMPARE_COLUMNS for a second model, plus the clip's
    path to tell clips apart)."""
    budget = f"{'sampling' if decoding.sample else 'greedy'}, up to {decoding.token_budget} new tokens"
    windows = f"; clips over {CHUNK_LENGTH} s in {CHUNK_LENGTH} s windows" if decoding.long_audio == "windows" else ""
    record = {
        "time": datetime.now().isoformat(timespec="seconds"),
        "decoding": budget + windows,
        "thinking mode": decoding.think,
        "clip": clip,
        "clip seconds": round(results[0].duration, 2),
        "question": question,
        "options": list(options),
        **model_fields(models[0], results[0]),
    }
    if len(results) > 1:
        record |= {COMPARE + column: value for column, value in model_fields(models[1], results[1]).items()}
        record |= {"agree": results[0].answer == results[1].answer, COMPARE + "correct": None}
    return record | {"expected": None, "correct": None, "comment": "", "path": path}


def model_fields(model: aqa.AQAModel, result: aqa.Result) -> dict:
    """MODEL_COLUMNS: what the history keeps of one model's answer."""
    timings = result.timings
    windows = [
        {
            "start": window.start,
            "end": window.end,
            "answer": window.answer,
            "probabilities": rounded(window.probabilities),
        }
        for window in result.windows
    ]
    return {
        "model": model.name,
        "precision": model.precision,
        "answer": result.answer,
        "answer source": ANSWER_SOURCES[result.answer_source],
        "probabilities": rounded(result.probabilities),
        "windows": windows or None,
        "raw output": result.raw,
        "thinking": result.think,
        "note": result.note,
        "seconds": round(timings.total, 3),
        "seconds audio": round(timings.audio, 3),
        "seconds features": round(timings.features, 3),
        "seconds generation": round(timings.generation, 3),
        "seconds scoring": round(timings.scoring, 3),
    }


def rounded(probabilities: dict[str, float]) -> dict[str, float]:
    return {option: round(p, 4) for option, p in probabilities.items()}


def judge(record: dict, expected: str | None, comment: str | None) -> None:
    """The tester's expected answer and comment; each model's answer is then marked correct or not."""
    record["expected"] = expected or None
    for prefix in ("", COMPARE):
        if prefix + "answer" in record:
            correct = None if record["expected"] is None else record[prefix + "answer"] == record["expected"]
            record[prefix + "correct"] = correct
    record["comment"] = (comment or "").strip()


def table_rows(history: History) -> list[list]:
    """The page's history table; with two models, both answers ("Man ≠ Woman" where they disagree)."""
    marks = {True: "✓", False: "✗", None: ""}

    def top(probabilities: dict) -> str:
        return f"{max(probabilities.values(), default=0.0):.0%}"

    rows = []
    for record in history.records:
        answer, best, correct = record["answer"] or "", top(record["probabilities"]), marks[record["correct"]]
        if COMPARE + "answer" in record:
            answer = f"{answer or '(none)'} {'=' if record['agree'] else '≠'} {record[COMPARE + 'answer'] or '(none)'}"
            best = f"{best} · {top(record[COMPARE + 'probabilities'])}"
            if record["expected"] is not None:
                correct = f"{correct} · {marks[record[COMPARE + 'correct']]}"
        rows.append(
            [
                record["#"],
                record["time"][11:],
                record["clip"],
                record["question"],
                " | ".join(record["options"]),
                answer,
                best,
                record["expected"] or "",
                correct,
                record["comment"],
            ]
        )
    return rows


def write_history(history: History, folder: Path, stem: str, columns: Sequence[str] = HISTORY_COLUMNS) -> list[str]:
    """The history as CSV and as JSON Lines (same columns; lists and mappings as JSON in the CSV).

    Each version goes to a folder of its own and the previous one is removed, so that a download link never gets a
    copy the browser kept of an earlier version."""
    rows = [{column: record[column] for column in columns} for record in history.records]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns)
    writer.writeheader()
    writer.writerows({column: csv_cell(value) for column, value in row.items()} for row in rows)
    history.saves += 1
    target = folder / f"{stem}-{history.saves}"
    paths = [target / f"{stem}.csv", target / f"{stem}.jsonl"]
    write_atomic(paths[0], text.getvalue())
    write_jsonl(paths[1], rows)
    if history.saved is not None:
        shutil.rmtree(history.saved, ignore_errors=True)
    history.saved = target
    return [str(path) for path in paths]


def csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def remove_old_files(folder: Path, age: float) -> None:
    """Remove the files under `folder` last written more than `age` seconds ago, and the folders they leave empty
    (a folder's time, taken before its files go, tells whether anything new was written into it)."""
    cutoff = time.time() - age
    written = {}
    for path in folder.rglob("*"):
        try:
            written[path] = path.stat().st_mtime
        except OSError:  # removed meanwhile
            continue
    for path in sorted(written, reverse=True):  # a folder's files come before the folder
        if written[path] >= cutoff:
            continue
        try:
            if path.is_file():
                path.unlink()
            elif not any(path.iterdir()):
                path.rmdir()
        except OSError:  # removed meanwhile, or just written into
            continue


def remove_empty_leftovers(cache: Path, age: float) -> None:
    """Remove the empty `tmp*` files older than `age` at the top of Gradio's cache: gradio 6.31's
    `gr.File(type="filepath")` (the `/answer` API's audio input) leaves one there per call, and its own cleanup does
    not know them."""
    cutoff = time.time() - age
    for path in cache.glob("tmp*"):
        try:
            info = path.stat()
            if path.is_file() and info.st_size == 0 and info.st_mtime < cutoff:
                path.unlink()
        except OSError:  # removed meanwhile
            continue


def cleanup_schedule(keep_files: int) -> tuple[int, int]:
    """(every, age) in seconds for Gradio's delete_cache and the history folder: checked ten times per age, at most
    hourly, so a file lives at most 10% longer than the age."""
    return max(1, min(3600, keep_files // 10)), keep_files


# --- showing results ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Panel:
    """One model's results on the page."""

    answer: gr.Textbox
    probabilities: gr.Label
    note: gr.Markdown
    details: gr.Markdown
    raw: gr.Textbox  # the model's text, filled in as it is written
    thinking: gr.Textbox  # the text inside <think>, as it is written (thinking mode only)
    windows: gr.Dataframe  # a long clip's windows: each one's answer and probabilities
    plot: gr.Plot  # each option's probability over the clip, window by window

    def components(self) -> list:
        return [getattr(self, field.name) for field in fields(self)]


def format_timings(timings: aqa.Timings) -> str:
    return (
        f"{timings.total:.2f} s (audio {timings.audio:.2f}, features {timings.features:.2f}, "
        f"generation {timings.generation:.2f}, scoring {timings.scoring:.2f})"
    )


def panel_cleared(panel: Panel, think: bool) -> dict:
    """A panel about to show a new answer: empty, with the thinking box only in thinking mode."""
    return {
        panel.answer: gr.Textbox(value="", elem_classes=["answer-box"]),
        panel.probabilities: None,
        panel.note: gr.Markdown(visible=False),
        panel.details: "",
        panel.raw: "",
        panel.thinking: gr.Textbox(value="", visible=think),
        panel.windows: gr.Dataframe(visible=False),
        panel.plot: gr.Plot(visible=False),
    }


def panel_text(panel: Panel, text: str) -> dict:
    """The text written so far, and the thinking in it (an unclosed <think> block counts)."""
    return {panel.raw: text, panel.thinking: extract_think(text) or ""}


def panel_result(panel: Panel, result: aqa.Result) -> dict:
    """A finished answer: the option, how it was chosen, the probabilities, and a long clip's windows."""
    note = gr.Markdown(f"**Note:** {result.note}", visible=True) if result.note else gr.Markdown(visible=False)
    shown = {
        panel.answer: result.answer or "(no answer)",
        panel.probabilities: result.probabilities,
        panel.note: note,
        panel.details: f"How it was chosen: {ANSWER_SOURCES[result.answer_source]} · {format_timings(result.timings)}",
        **panel_text(panel, result.raw),
    }
    if result.windows:
        shown[panel.windows] = gr.Dataframe(windows_table(result), visible=True)
        shown[panel.plot] = gr.Plot(window_plot(result), visible=True)
    return shown


def windows_table(result: aqa.Result) -> dict:
    """A row per window (its span, its answer, each option's probability), then the whole clip's mean."""
    options = list(result.probabilities)

    def row(span: str, answer: str | None, probabilities: dict[str, float]) -> list[str]:
        return [span, answer or "", *(f"{probabilities.get(option, 0.0):.0%}" for option in options)]

    rows = [row(f"{w.start:.0f}–{w.end:.0f} s", w.answer, w.probabilities) for w in result.windows]
    rows.append(row("whole clip (mean)", result.answer, result.probabilities))
    return {"headers": ["window", "answer", *options], "data": rows}


def window_plot(result: aqa.Result) -> Figure:
    """Each option's probability in each window, drawn at the window's middle: how the answer moves over the clip.
    The object-oriented matplotlib API, no pyplot state: figures can be drawn from several threads."""
    figure = Figure(figsize=(6.4, 2.6), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    middles = [(window.start + window.end) / 2 for window in result.windows]
    for option in result.probabilities:
        probabilities = [window.probabilities.get(option, 0.0) for window in result.windows]
        axes.plot(middles, probabilities, marker="o", label=option if len(option) <= 30 else option[:29] + "…")
    axes.set_title("Each option's probability, window by window", fontsize=10, loc="left")
    axes.set_xlim(0, result.windows[-1].end)
    axes.set_ylim(-0.03, 1.03)
    axes.set_xlabel(f"seconds into the clip (each point: the middle of a {CHUNK_LENGTH} s window)")
    axes.set_ylabel("probability")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return figure


def agreement(labels: Sequence[str], results: Sequence[aqa.Result]) -> gr.Markdown:
    """The line over two models' answers: whether they agree, and if not, who answers what."""
    first, second = (result.answer or "(no answer)" for result in results)
    if results[0].answer == results[1].answer:
        return gr.Markdown(f"**Both models answer “{first}”.**", visible=True, elem_classes=["agree"])
    return gr.Markdown(
        f"**The models disagree:** {labels[0]} answers “{first}”, {labels[1]} answers “{second}”.",
        visible=True,
        elem_classes=["disagree"],
    )


def status_for(problems: Sequence[str]) -> gr.Markdown:
    lines = "\n".join(f"- {problem}" for problem in problems)
    return gr.Markdown(f"**Not answered.** Fix and press Answer again:\n{lines}", elem_classes=["problem"])


def status_line(text: str) -> gr.Markdown:
    return gr.Markdown(text, elem_classes=[])


def judge_panel(record: dict | None) -> tuple:
    """Values for: the judged row's number, the line naming it, its expected answer (one of its options), its
    comment."""
    if record is None:
        return None, "Answer a question, then judge it here.", gr.Radio(choices=[], value=None), ""
    answers = [record[prefix + "answer"] for prefix in ("", COMPARE) if prefix + "answer" in record]
    said = " / ".join(f"**{answer or '(none)'}**" for answer in answers)
    line = f"Judging #{record['#']}: {record['clip']}, “{record['question']}” → {said}"
    return record["#"], line, gr.Radio(choices=record["options"], value=record["expected"]), record["comment"]


# --- the page ----------------------------------------------------------------------------------------------------


def build_demo(
    model: aqa.AQAModel, settings: AppSettings = AppSettings(), compare: aqa.AQAModel | None = None
) -> gr.Blocks:
    """The app around an already loaded model (and a second one to compare it with); `launch(demo, settings)` serves
    it."""
    models = [model] if compare is None else [model, compare]
    labels = model_labels(models)
    lock = threading.Lock()
    answerers, streamers = zip(*(device_functions(each, lock) for each in models))
    columns = HISTORY_COLUMNS + (COMPARE_COLUMNS if compare is not None else [])
    cache = Path(gr.utils.get_upload_folder())  # Gradio's cache: uploads and the files the page hands out
    cache.mkdir(parents=True, exist_ok=True)
    history_dir = Path(tempfile.mkdtemp(prefix="aqa-history-", dir=cache))  # one CSV and one JSONL per page

    def history_files(history: History, request: gr.Request) -> list[str]:
        return write_history(history, history_dir, f"aqa-history-{(request.session_hash or 'page')[:8]}", columns)

    def answer_clicked(audio, question, options_text, think, history: History, request: gr.Request):
        """Stream each model's text into its panel, then its answer; the history gets the question once every model
        has answered. Stop ends the model's generation at its next token; problems go to the status line, and the
        page keeps what it shows."""
        history.stop = stop = threading.Event()
        edits = history.edits
        options = options_from_text(options_text)
        problems, samples = check_inputs(settings, audio, question, options)
        if problems:
            yield {status: status_for(problems), stop_button: gr.Button(interactive=False)}
            return
        decoding = decoding_options(settings, think)
        cleared = {key: value for panel in panels for key, value in panel_cleared(panel, think).items()}
        yield {results: results_look(stale=False), agreement_line: gr.Markdown(visible=False), **cleared}
        answered = []
        for label, panel, stream in zip(labels, panels, streamers):
            answering = "Answering ..." if compare is None else f"{label} is answering ..."
            yield {status: status_line(answering), stop_button: gr.Button(interactive=True)}
            try:
                pieces = stream(samples, question, options, decoding)
                result = yield from streamed(pieces, stop, lambda text, panel=panel: panel_text(panel, text))
            except gr.Error as error:
                yield {status: status_for([error.message]), stop_button: gr.Button(interactive=False)}
                return
            if result is None:
                yield {
                    status: status_line(STOPPED),
                    stop_button: gr.Button(interactive=False),
                    panel.answer: "(stopped)",
                }
                return
            answered.append(result)
            yield panel_result(panel, result)
        with history.lock:
            record = history_record(models, decoding, history.clip_name(audio), audio, question, options, answered)
            record["#"] = len(history.records) + 1
            history.records.insert(0, record)
            files = gr.File(history_files(history, request), visible=True)
        if compare is None:
            done = f"Answered in {answered[0].timings.total:.2f} s."
        else:
            done = "Answered: " + ", ".join(f"{x} in {r.timings.total:.2f} s" for x, r in zip(labels, answered)) + "."
        shown = {
            status: status_line(done),
            stop_button: gr.Button(interactive=False),
            results: results_look(stale=history.edits != edits),  # the inputs may have changed while it answered
            table: table_rows(history),
            history_file_list: files,
            **dict(zip(judge_fields, judge_panel(record))),
        }
        if compare is not None:
            shown[agreement_line] = agreement(labels, answered)
            disagree = ["answer-box", "disagree"] if answered[0].answer != answered[1].answer else ["answer-box"]
            shown |= {panel.answer: gr.Textbox(elem_classes=disagree) for panel in panels}
        yield shown

    def stop_clicked(history: History):
        history.stop.set()
        return gr.Button(interactive=False)

    def row_selected(history: History, event: gr.SelectData):
        row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
        with history.lock:
            return judge_panel(history.records[row] if 0 <= row < len(history.records) else None)

    def judgement_saved(number, expected, comment, history: History, request: gr.Request):
        """Save the judgement of the row the page shows (its number comes from the page: an answer arriving
        meanwhile moves the panel on, not this judgement)."""
        with history.lock:
            record = history.find(number)
            if record is None:
                return gr.skip(), gr.skip()
            judge(record, expected, comment)
            return table_rows(history), gr.File(history_files(history, request), visible=True)

    def answer_api(audio, question, options) -> dict:
        """Answer a question about a clip: (audio file, question, list of options) -> the answer, how it was chosen,
        the raw output, every option's probability, a long clip's windows, timings; with --compare, the second
        model's result under "compare" and "agree"."""
        options = options if options is not None else []
        with shown_as_gradio_error():
            samples = checked_clip(settings, audio, question, options)
            decoding = decoding_options(settings, think=False)
            results = [answer(samples, question, list(options), decoding) for answer in answerers]
        return api_result(models, results)

    def answer_stream_api(audio, question, options):
        """The same answer, streamed: {"done": false, "model": name, "text": the text so far} as each model writes,
        then {"done": true, ...} with what /answer returns. Cancelling the job ends generation at the next token."""
        options = options if options is not None else []
        with shown_as_gradio_error():
            samples = checked_clip(settings, audio, question, options)
        decoding, results = decoding_options(settings, think=False), []
        for each, stream in zip(models, streamers):
            pieces = stream(samples, question, list(options), decoding)
            result = yield from streamed(
                pieces, threading.Event(), lambda text, name=each.name: {"done": False, "model": name, "text": text}
            )
            results.append(result)
        yield {"done": True, **api_result(models, results)}

    every, age = cleanup_schedule(settings.keep_files)
    with gr.Blocks(title="R1-AQA: audio question answering", delete_cache=(every, age)) as demo:
        gr.Markdown(page_header(models, labels, settings))
        audio, examples, question, options, think, button, stop_button, status = layout_inputs()
        results, agreement_line, panels = layout_outputs(labels if compare is not None else [None])
        history, table, judge_fields, history_file_list = layout_history()
        judged, _, expected, comment = judge_fields

        def inputs_edited(history: History):
            history.edits += 1
            return results_look(stale=True)

        # Results of other inputs are dimmed, not hidden. A text box's `input` misses pasting with the mouse, so its
        # `change` counts; a clip's `change` also fires late, once the browser has decoded it (and could dim a fresh
        # result), so only the user's own actions on it count.
        for edited in (question.change, options.change, think.change, audio.upload, audio.stop_recording, audio.clear):
            edited(inputs_edited, history, results, queue=False, show_progress="hidden", api_visibility="private")
        examples.click(
            example_clicked,
            [examples, history],
            [question, options, audio, results],
            queue=False,
            api_visibility="private",
        ).then(None, js=SHOW_INPUTS, api_visibility="private")  # back to the question, however far down the list
        page_outputs = [status, stop_button, results, agreement_line, table, history_file_list, *judge_fields]
        page_outputs += [component for panel in panels for component in panel.components()]
        for trigger in (button.click, question.submit, options.submit):  # Shift+Enter in the options answers too
            trigger(
                answer_clicked,
                [audio, question, options, think, history],
                page_outputs,
                api_visibility="private",  # `/answer` is the API; this one takes the page's text and state
                show_progress="minimal",  # the place in the queue, on the status line; the text streams below
                show_progress_on=[status],
                concurrency_id="model",
                concurrency_limit=1,
            )
        stop_button.click(stop_clicked, history, stop_button, queue=False, api_visibility="private")
        table.select(row_selected, history, judge_fields, queue=False, api_visibility="private")
        for trigger in (expected.input, comment.blur, comment.submit):
            trigger(
                judgement_saved,
                [judged, expected, comment, history],
                [table, history_file_list],
                queue=False,
                show_progress="hidden",
                api_visibility="private",
            )
        add_api(answer_api, answer_stream_api)
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=1)
    demo.history_dir = history_dir  # for launch()'s cleanup
    return demo


def page_header(models: Sequence[aqa.AQAModel], labels: Sequence[str], settings: AppSettings) -> str:
    if len(models) == 1:
        which = f"Model `{models[0].name}` ({models[0].precision} on {models[0].device})."
    else:
        which = "Two models answer each question side by side: " + " and ".join(
            f"{label.split(' · ')[0]} `{model.name}` ({model.precision} on {model.device})"
            for label, model in zip(labels, models)
        )
        which += "."
    if settings.long_audio == "windows":
        hearing = (
            f"The model hears {CHUNK_LENGTH} s at a time: a longer clip is answered window by window "
            f"({CHUNK_LENGTH} s windows, {WINDOW_OVERLAP:g} s overlap), the answer the option with the highest mean "
            "probability."
        )
    else:
        hearing = f"The model hears the first {CHUNK_LENGTH} s of a clip."
    return f"# R1-AQA: audio question answering\nAsk a multiple-choice question about a clip. {which} {hearing}"


def example_html(clip: str, question: str, options: Sequence[str]) -> str:
    return f"<b>{html.escape(clip)}</b> · {html.escape(question)}<br>{html.escape(' | '.join(options))}"


def example_clicked(index: int, history: History) -> tuple:
    """Values for: question, options (one per line), audio, the results' look."""
    clip, question, options = EXAMPLES[index]
    history.edits += 1
    return question, "\n".join(options), str(ASSETS / clip), results_look(stale=True)


def results_look(stale: bool) -> gr.Column:
    """The results column, dimmed when it shows the answer to other inputs than those on the page."""
    return gr.Column(elem_classes=["stale" if stale else "fresh"])


def layout_inputs() -> tuple:
    """The clip, the examples beside it, the question and its options; the page opens with the first example
    loaded, so that Answer answers at once."""
    clip, question_text, option_list = EXAMPLES[0]
    with gr.Row(equal_height=False):
        with gr.Column(min_width=320):
            audio = gr.Audio(
                value=str(ASSETS / clip),
                sources=["upload", "microphone"],
                type="filepath",
                label="Audio",
                elem_id="audio",
            )
            examples = gr.Dataset(
                components=["html"],  # shown whole: a textbox preview cuts its text at 60 characters
                headers=["Examples: click one to load its clip, question and options"],
                samples=[[example_html(*example)] for example in EXAMPLES],
                type="index",
                layout="table",
                samples_per_page=len(EXAMPLES),
                show_label=False,
                elem_id="examples",
            )
        with gr.Column(min_width=320):
            question = gr.Textbox(
                value=question_text,
                label="Question",
                lines=1,
                max_lines=4,
                elem_id="question",
                placeholder="What is the sound?",
            )
            options = gr.Textbox(
                value="\n".join(option_list),
                label="Options, one per line",
                lines=4,
                max_lines=12,
                elem_id="options",
                placeholder="Dog\nCat\nCar\nRain",
            )
            think = gr.Checkbox(
                label="Thinking mode (<think> before <answer>; the released model answers directly)", elem_id="think"
            )
            with gr.Row():
                button = gr.Button("Answer", variant="primary", elem_id="answer-button", scale=3, min_width=120)
                stop_button = gr.Button(  # while a question is answered: ends it, and the model is free
                    "Stop", variant="stop", interactive=False, elem_id="stop-button", scale=1, min_width=80
                )
            status = gr.Markdown(READY, elem_id="status")
    return audio, examples, question, options, think, button, stop_button, status


def layout_outputs(titles: Sequence[str | None]) -> tuple[gr.Column, gr.Markdown, list[Panel]]:
    """The results: a panel per model, side by side, and over two of them the line that says whether they agree.
    The first panel's elements are named #answer, #raw, ...; the second's #answer-b, #raw-b, ..."""
    with gr.Column(elem_id="results") as results:
        agreement_line = gr.Markdown(visible=False, elem_id="agreement")
        with gr.Row(equal_height=False):
            panels = []
            for suffix, title in zip(("", "-b"), titles):
                with gr.Column(min_width=320):
                    panels.append(layout_panel(suffix, title))
    return results, agreement_line, panels


def layout_panel(suffix: str, title: str | None) -> Panel:
    if title:
        gr.Markdown(f"### {title}", elem_id=f"title{suffix}")
    with gr.Row(equal_height=False):
        with gr.Column(min_width=200):
            answer = gr.Textbox(
                label="Answer", interactive=False, elem_id=f"answer{suffix}", elem_classes=["answer-box"]
            )
            note = gr.Markdown(visible=False, elem_id=f"note{suffix}")
            details = gr.Markdown(elem_id=f"details{suffix}")
        probabilities = gr.Label(label="Option probabilities", show_heading=False, elem_id=f"probabilities{suffix}")
    raw = gr.Textbox(
        label="Model output, as it is written", interactive=False, lines=3, max_lines=8, elem_id=f"raw{suffix}"
    )
    thinking = gr.Textbox(
        label="Thinking, as it is written",
        interactive=False,
        lines=3,
        max_lines=8,
        visible=False,
        elem_id=f"thinking{suffix}",
    )
    windows = gr.Dataframe(
        label="Window by window", interactive=False, wrap=True, visible=False, elem_id=f"windows{suffix}"
    )
    plot = gr.Plot(show_label=False, visible=False, format="png", elem_id=f"plot{suffix}")  # titled in the figure
    return Panel(answer, probabilities, note, details, raw, thinking, windows, plot)


def layout_history() -> tuple:
    history = gr.State(History())  # each page gets its own (a copy of this empty one)
    with gr.Accordion("History of this page, newest first: click a row to judge it", open=True):
        table = gr.Dataframe(
            headers=TABLE_COLUMNS,
            interactive=False,
            wrap=True,
            column_widths=["40px", "86px", "150px", "21%", "14%", "100px", "56px", "100px", "76px", "12%"],
            max_height=420,
            elem_id="history",
        )
        judged = gr.Number(visible=False, precision=0)  # the "#" of the row being judged
        judging = gr.Markdown("Answer a question, then judge it here.", elem_id="judging")
        with gr.Row():
            expected = gr.Radio(choices=[], label="Expected answer", elem_id="expected")
            comment = gr.Textbox(
                label="Comment (saved when you press Enter or leave the box)", lines=1, elem_id="comment"
            )
        files = gr.File(
            label="Download the history (CSV and JSON Lines)",
            file_count="multiple",
            interactive=False,
            visible=False,  # until there is a history
            elem_id="files",
        )
    return history, table, (judged, judging, expected, comment), files


def add_api(answer_api, answer_stream_api) -> None:
    """`/answer` and `/answer_stream` for gradio_client: hidden components give them a file upload, a string and a
    JSON list."""
    with gr.Column(visible=False):
        audio = gr.File(label="audio", type="filepath")
        question = gr.Textbox(label="question")
        options = gr.JSON(label="options")
        result = gr.JSON(label="result")
        trigger, stream_trigger = gr.Button(), gr.Button()
    for fn, name, button in ((answer_api, "answer", trigger), (answer_stream_api, "answer_stream", stream_trigger)):
        button.click(fn, [audio, question, options], result, api_name=name, concurrency_id="model", concurrency_limit=1)


def launch(demo: gr.Blocks, settings: AppSettings, **kwargs):
    """Serve the demo; kwargs go to `Blocks.launch` (server_name, server_port, share, prevent_thread_lock...).

    While it runs, the history files older than `settings.keep_files` (and the empty files Gradio leaves in its cache)
    are removed on the same schedule as Gradio's own uploads (`delete_cache`)."""
    every, age = cleanup_schedule(settings.keep_files)

    @asynccontextmanager
    async def clean_history(_app):
        async def loop():
            while True:
                await asyncio.sleep(every)
                await asyncio.to_thread(remove_old_files, demo.history_dir, age)
                await asyncio.to_thread(remove_empty_leftovers, demo.history_dir.parent, age)

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()

    return demo.launch(
        max_file_size=settings.max_file_size,
        allowed_paths=[str(ASSETS)],
        css=CSS,
        js=KEYS,
        app_kwargs={"lifespan": clean_history},
        **kwargs,
    )


# --- command line and Spaces -------------------------------------------------------------------------------------

# Environment variables for each flag (a Space sets them in its settings); GRADIO_* are Gradio's own names.
ENVIRONMENT = {
    "model": "AQA_MODEL",
    "precision": "AQA_PRECISION",
    "device": "AQA_DEVICE",
    "compare": "AQA_COMPARE",
    "compare_precision": "AQA_COMPARE_PRECISION",
    "compare_device": "AQA_COMPARE_DEVICE",
    "long_audio": "AQA_LONG_AUDIO",
    "host": "GRADIO_SERVER_NAME",
    "port": "GRADIO_SERVER_PORT",
    "share": "GRADIO_SHARE",
    "max_seconds": "AQA_MAX_SECONDS",
    "max_file_size": "AQA_MAX_FILE_SIZE",
    "max_new_tokens": "AQA_MAX_NEW_TOKENS",
    "queue_size": "AQA_QUEUE_SIZE",
    "max_question_chars": "AQA_MAX_QUESTION_CHARS",
    "max_option_chars": "AQA_MAX_OPTION_CHARS",
    "max_options": "AQA_MAX_OPTIONS",
    "max_prompt_tokens": "AQA_MAX_PROMPT_TOKENS",
    "keep_files": "AQA_KEEP_FILES",
}


def build_parser(environ: dict[str, str] = os.environ) -> argparse.ArgumentParser:
    defaults, limits = AppSettings(), Limits()
    parser = argparse.ArgumentParser(
        description="The R1-AQA Gradio app. Each flag can also come from the environment variable named in its help."
    )
    add_model_args(parser)
    parser.add_argument(
        "--compare", help="a second checkpoint (hub id or directory) that answers every question beside --model"
    )
    parser.add_argument("--compare-precision", choices=PRECISIONS, help="the second model's (default: --precision's)")
    parser.add_argument("--compare-device", help="the second model's device (default: --device's)")
    parser.add_argument(
        "--long-audio",
        choices=LONG_AUDIO,
        default=defaults.long_audio,
        help=f"a clip over {CHUNK_LENGTH} s: answer every {CHUNK_LENGTH} s window ({WINDOW_OVERLAP:g} s overlap) and "
        f"choose the option with the highest mean probability (default), or answer its first {CHUNK_LENGTH} s",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on; 0.0.0.0 for the whole network")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    parser.add_argument("--share", action="store_true", help="also serve on a public *.gradio.live link")
    parser.add_argument("--max-seconds", type=float, default=defaults.max_seconds, help="longest clip accepted")
    parser.add_argument("--max-file-size", default=defaults.max_file_size, help="upload cap, e.g. 50mb")
    parser.add_argument("--max-new-tokens", type=int, help="default 256, or 1024 in thinking mode")
    parser.add_argument("--queue-size", type=int, default=defaults.queue_size, help="requests that may wait")
    caps = [
        ("--max-question-chars", limits.question_chars, "characters in the question"),
        ("--max-option-chars", limits.option_chars, "characters in one option"),
        ("--max-options", limits.options, "options per question"),
        ("--max-prompt-tokens", limits.prompt_tokens, "prompt tokens, the audio counted at 30 s"),
        ("--keep-files", defaults.keep_files, "seconds uploads and history files are kept"),
    ]
    for flag, default, what in caps:
        parser.add_argument(flag, type=positive_int, default=default, help=f"{what} (default {default})")
    for action in parser._actions:
        if action.dest in ENVIRONMENT:
            action.help = f"{action.help or ''} [{ENVIRONMENT[action.dest]}]".strip()
    parser.set_defaults(**defaults_from(environ))
    return parser


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def defaults_from(environ: dict[str, str]) -> dict:
    """Flag defaults from the environment; string defaults still pass through each flag's type."""
    values = {dest: environ[name] for dest, name in ENVIRONMENT.items() if environ.get(name)}
    if "share" in values:
        values["share"] = values["share"].strip().lower() in ("1", "true", "yes", "on")
    return values


def settings_from(args: argparse.Namespace) -> AppSettings:
    limits = Limits(args.max_question_chars, args.max_option_chars, args.max_options, args.max_prompt_tokens)
    return AppSettings(
        max_seconds=args.max_seconds,
        max_file_size=args.max_file_size,
        max_new_tokens=args.max_new_tokens,
        queue_size=args.queue_size,
        limits=limits,
        keep_files=args.keep_files,
        long_audio=args.long_audio,
    )


def model_specs(args: argparse.Namespace) -> list[aqa.ModelSpec]:
    """The model the flags name, and the one to compare it with (its precision and device default to the first's)."""
    first = model_spec(args)
    if not args.compare:
        return [first]
    second = replace(
        first,
        name=args.compare,
        precision=args.compare_precision or first.precision,
        device=args.compare_device or first.device,
    )
    return [first, second]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries(debug=False)
    specs = model_specs(args)
    try:
        if len(specs) > 1:
            check_models_fit(specs)  # both, before either loads
        models = [load(spec) for spec in specs]  # once, at start-up: requests never load anything
    except AQAError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    settings = settings_from(args)
    demo = build_demo(models[0], settings, compare=models[1] if len(models) > 1 else None)
    launch(demo, settings, server_name=args.host, server_port=args.port, share=args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
