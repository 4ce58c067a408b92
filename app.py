"""The R1-AQA browser demo and Hugging Face Space: ask a multiple-choice question about a clip.

    python app.py                                   # mispeech/r1-aqa, bf16 on the GPU (fp32 on CPU), 127.0.0.1:7860
    python app.py --model tiny-model --port 7861    # any path or hub id `aqa` accepts (`aqa tiny tiny-model`)
    AQA_MODEL=tiny-model GRADIO_SERVER_PORT=7861 python app.py   # the same, from the environment (Spaces)

Importing this module loads nothing: `build_demo(model)` builds the UI around a loaded model (tests pass the tiny
one) and `main()` parses the flags, loads the model once and launches. Handlers only call the `aqa` library.
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
from collections.abc import Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import gradio as gr
import numpy as np
import torch

import aqa
from aqa.audio import CHUNK_LENGTH, SAMPLE_RATE
from aqa.cli.args import add_model_args, model_spec, quiet_libraries
from aqa.errors import AQAError, AudioError, InputError, first_line
from aqa.jsonl import write_atomic, write_jsonl
from aqa.limits import Limits
from aqa.loading import load
from aqa.prompt import question_problems

ASSETS = Path(__file__).resolve().parent / "assets"
log = logging.getLogger("aqa.app")
AnswerFn = Callable[[np.ndarray, str, list[str], aqa.DecodingOptions], aqa.Result]

# Examples made by assets/make_assets.sh: (clip, question, options).
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
    "none": "no answer",
}
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
    "answer",
    "answer source",
    "probabilities",
    "raw output",
    "thinking",
    "note",
    "seconds",
    "seconds audio",
    "seconds features",
    "seconds generation",
    "seconds scoring",
    "expected",
    "correct",
    "comment",
]
TABLE_COLUMNS = ["#", "time", "clip", "question", "options", "answer", "top", "expected", "correct", "comment"]
RECORDING = "audio.wav"  # the name Gradio gives every microphone recording (and every edited clip)
OUT_OF_MEMORY = "out of memory on this question; try a shorter clip, thinking mode off, or --precision 4bit"
READY = "Press **Answer**, or Enter in the question, or Ctrl+Enter anywhere."
CSS = """
#answer textarea {font-size: 1.6rem; font-weight: 600}
#status.problem {border-left: 4px solid var(--error-border-color, #ef4444); padding-left: 0.6rem}
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
    max_seconds: float = 300.0  # longest clip accepted; the model hears its first 30 s (decoding a long one is cheap)
    max_file_size: str = "50mb"  # upload cap, enforced by Gradio before the file reaches a handler
    max_new_tokens: int | None = None  # None: the core's default (256, or 1024 in thinking mode)
    queue_size: int = 20  # requests waiting for the model beyond this are turned away; the others see their place
    limits: Limits = Limits()  # caps on the question and options (aqa.limits), as in the library and the CLI
    keep_files: int = 86400  # seconds an upload or a history file is kept after it was last written


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


def ask(run: AnswerFn, settings: AppSettings, audio: str | None, question: str, options, think: bool) -> aqa.Result:
    """Check the inputs, decode the clip and answer; every failure leaves as a one-line gr.Error."""
    with shown_as_gradio_error():
        problems, samples = check_inputs(settings, audio, question, options)
        if problems:
            raise InputError("; ".join(problems))
        return run(samples, question, list(options), decoding_options(settings, think))


def decoding_options(settings: AppSettings, think: bool) -> aqa.DecodingOptions:
    return aqa.DecodingOptions(think=think, max_new_tokens=settings.max_new_tokens)


def model_runner(model: aqa.AQAModel) -> AnswerFn:
    """The one function that touches the model, on the GPU under ZeroGPU.

    ZeroGPU calls a `spaces.GPU` function in a forked worker and pickles its arguments and result: the model reaches
    it through this closure, so only the samples, the question and the Result cross over.
    """

    @on_gpu
    def answer_on_device(samples: np.ndarray, question: str, options: list[str], decoding) -> aqa.Result:
        return aqa.answer(model, samples, question, options, decoding)

    return answer_on_device


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
        raise AudioError(
            f"{name}: the clip is {seconds:.0f} s long; this app takes clips up to {max_seconds:.0f} s "
            f"(the model hears the first {CHUNK_LENGTH} s)"
        )
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


# --- the history of a page ----------------------------------------------------------------------------------------


class History:
    """One page's answers, newest first, and the files it downloads as; handlers change it in place, under its lock,
    so that a judgement saved while a question is being answered is not lost.

    A plain class, not a dataclass: Gradio would serialise a dataclass State value into the page's config."""

    def __init__(self):
        self.records: list[dict] = []  # HISTORY_COLUMNS, plus "#" and the clip's "path"
        self.edits = 0  # how many times the inputs were changed: results of earlier inputs are shown dimmed
        self.saves = 0  # versions of the history files written
        self.saved: Path | None = None  # the folder of the latest version
        self.lock = threading.Lock()

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
    model: aqa.AQAModel,
    decoding: aqa.DecodingOptions,
    clip: str,
    path: str,
    question: str,
    options: Sequence[str],
    result: aqa.Result,
) -> dict:
    """What the history keeps of one answer (HISTORY_COLUMNS, plus the clip's path to tell clips apart)."""
    timings = result.timings
    return {
        "time": datetime.now().isoformat(timespec="seconds"),
        "model": model.name,
        "precision": model.precision,
        "decoding": f"{'sampling' if decoding.sample else 'greedy'}, up to {decoding.token_budget} new tokens",
        "thinking mode": decoding.think,
        "clip": clip,
        "clip seconds": round(result.duration, 2),
        "question": question,
        "options": list(options),
        "answer": result.answer,
        "answer source": ANSWER_SOURCES[result.answer_source],
        "probabilities": {option: round(p, 4) for option, p in result.probabilities.items()},
        "raw output": result.raw,
        "thinking": result.think,
        "note": result.note,
        "seconds": round(timings.total, 3),
        "seconds audio": round(timings.audio, 3),
        "seconds features": round(timings.features, 3),
        "seconds generation": round(timings.generation, 3),
        "seconds scoring": round(timings.scoring, 3),
        "expected": None,
        "correct": None,
        "comment": "",
        "path": path,
    }


def judge(record: dict, expected: str | None, comment: str | None) -> None:
    record["expected"] = expected or None
    record["correct"] = None if record["expected"] is None else record["answer"] == record["expected"]
    record["comment"] = (comment or "").strip()


def table_rows(history: History) -> list[list]:
    marks = {True: "✓", False: "✗", None: ""}
    return [
        [
            record["#"],
            record["time"][11:],
            record["clip"],
            record["question"],
            " | ".join(record["options"]),
            record["answer"] or "",
            f"{max(record['probabilities'].values(), default=0.0):.0%}",
            record["expected"] or "",
            marks[record["correct"]],
            record["comment"],
        ]
        for record in history.records
    ]


def write_history(history: History, folder: Path, stem: str) -> list[str]:
    """The history as CSV and as JSON Lines (same columns; lists and mappings as JSON in the CSV).

    Each version goes to a folder of its own and the previous one is removed, so that a download link never gets a
    copy the browser kept of an earlier version."""
    rows = [{column: record[column] for column in HISTORY_COLUMNS} for record in history.records]
    text = io.StringIO()
    writer = csv.DictWriter(text, HISTORY_COLUMNS)
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


def format_timings(timings: aqa.Timings) -> str:
    return (
        f"{timings.total:.2f} s (audio {timings.audio:.2f}, features {timings.features:.2f}, "
        f"generation {timings.generation:.2f}, scoring {timings.scoring:.2f})"
    )


def result_outputs(result: aqa.Result) -> tuple:
    """Values for: answer, probabilities, note, details, raw output, thinking."""
    note = gr.Markdown(f"**Note:** {result.note}", visible=True) if result.note else gr.Markdown(visible=False)
    details = f"How it was chosen: {ANSWER_SOURCES[result.answer_source]} · {format_timings(result.timings)}"
    return result.answer or "(no answer)", result.probabilities, note, details, result.raw, result.think or ""


def status_for(problems: Sequence[str]) -> gr.Markdown:
    lines = "\n".join(f"- {problem}" for problem in problems)
    return gr.Markdown(f"**Not answered.** Fix and press Answer again:\n{lines}", elem_classes=["problem"])


def judge_panel(record: dict | None) -> tuple:
    """Values for: the judged row's number, the line naming it, its expected answer (one of its options), its
    comment."""
    if record is None:
        return None, "Answer a question, then judge it here.", gr.Radio(choices=[], value=None), ""
    line = f"Judging #{record['#']}: {record['clip']}, “{record['question']}” → **{record['answer'] or '(none)'}**"
    return record["#"], line, gr.Radio(choices=record["options"], value=record["expected"]), record["comment"]


# --- the page ----------------------------------------------------------------------------------------------------


def build_demo(model: aqa.AQAModel, settings: AppSettings = AppSettings()) -> gr.Blocks:
    """The app around an already loaded model; `launch(demo, settings)` serves it."""
    run = model_runner(model)
    cache = Path(gr.utils.get_upload_folder())  # Gradio's cache: uploads and the files the page hands out
    cache.mkdir(parents=True, exist_ok=True)
    history_dir = Path(tempfile.mkdtemp(prefix="aqa-history-", dir=cache))  # one CSV and one JSONL per page

    def history_files(history: History, request: gr.Request) -> list[str]:
        return write_history(history, history_dir, f"aqa-history-{(request.session_hash or 'page')[:8]}")

    def answer_clicked(audio, question, options_text, think, history: History, request: gr.Request):
        edits = history.edits
        options = options_from_text(options_text)
        unchanged = [gr.skip()] * (len(page_outputs) - 1)  # results, history and judging stay as they are
        problems, samples = check_inputs(settings, audio, question, options)
        if problems:
            return status_for(problems), *unchanged
        decoding = decoding_options(settings, think)
        try:
            with shown_as_gradio_error():
                result = run(samples, question, options, decoding)
        except gr.Error as error:  # the message goes to the status line; the page keeps what it shows
            return status_for([error.message]), *unchanged
        with history.lock:
            record = history_record(model, decoding, history.clip_name(audio), audio, question, options, result)
            record["#"] = len(history.records) + 1
            history.records.insert(0, record)
            files = gr.File(history_files(history, request), visible=True)
        status = gr.Markdown(f"Answered in {result.timings.total:.2f} s.", elem_classes=[])
        fresh = results_look(stale=history.edits != edits)  # the inputs may have changed while it answered
        return status, fresh, *result_outputs(result), table_rows(history), files, *judge_panel(record)

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
        """Answer a question about a clip: (audio file, question, list of options) -> answer, raw, probabilities..."""
        return ask(run, settings, audio, question, options if options is not None else [], False).to_dict()

    every, age = cleanup_schedule(settings.keep_files)
    with gr.Blocks(title="R1-AQA: audio question answering", delete_cache=(every, age)) as demo:
        gr.Markdown(
            f"# R1-AQA: audio question answering\nAsk a multiple-choice question about a clip. Model `{model.name}` "
            f"({model.precision} on {model.device}); it hears the first {CHUNK_LENGTH} s of a clip."
        )
        audio, examples, question, options, think, button, status = layout_inputs()
        results, outputs = layout_outputs()
        history, table, judge_fields, files = layout_history()
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
        page_outputs = [status, results, *outputs, table, files, *judge_fields]
        for trigger in (button.click, question.submit, options.submit):  # Shift+Enter in the options answers too
            trigger(
                answer_clicked,
                [audio, question, options, think, history],
                page_outputs,
                api_visibility="private",  # `/answer` is the API; this one takes the page's text and state
                concurrency_id="model",
                concurrency_limit=1,
            )
        table.select(row_selected, history, judge_fields, queue=False, api_visibility="private")
        for trigger in (expected.input, comment.blur, comment.submit):
            trigger(
                judgement_saved,
                [judged, expected, comment, history],
                [table, files],
                queue=False,
                show_progress="hidden",
                api_visibility="private",
            )
        add_api(answer_api)
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=1)
    demo.history_dir = history_dir  # for launch()'s cleanup
    return demo


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
    with gr.Row(equal_height=False):
        with gr.Column(min_width=320):
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio", elem_id="audio")
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
                label="Question", lines=1, max_lines=4, elem_id="question", placeholder="What is the sound?"
            )
            options = gr.Textbox(
                label="Options, one per line",
                lines=4,
                max_lines=12,
                elem_id="options",
                placeholder="Dog\nCat\nCar\nRain",
            )
            think = gr.Checkbox(
                label="Thinking mode (<think> before <answer>; the released model answers directly)", elem_id="think"
            )
            button = gr.Button("Answer", variant="primary", elem_id="answer-button")
            status = gr.Markdown(READY, elem_id="status")
    return audio, examples, question, options, think, button, status


def layout_outputs() -> tuple:
    with gr.Column(elem_id="results") as results:
        with gr.Row():
            with gr.Column():
                answer = gr.Textbox(label="Answer", interactive=False, elem_id="answer")
                note = gr.Markdown(visible=False, elem_id="note")
                details = gr.Markdown(elem_id="details")
            probabilities = gr.Label(label="Option probabilities", show_heading=False, elem_id="probabilities")
        with gr.Accordion("Model output", open=False):
            raw = gr.Textbox(label="Raw output", interactive=False, lines=3, elem_id="raw")
            thinking = gr.Textbox(label="Thinking", interactive=False, lines=3, elem_id="thinking")
    return results, (answer, probabilities, note, details, raw, thinking)


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


def add_api(answer_api) -> None:
    """`/answer` for gradio_client: hidden components give it a file upload, a string and a JSON list."""
    with gr.Column(visible=False):
        audio = gr.File(label="audio", type="filepath")
        question = gr.Textbox(label="question")
        options = gr.JSON(label="options")
        result = gr.JSON(label="result")
        trigger = gr.Button()
    trigger.click(
        answer_api, [audio, question, options], result, api_name="answer", concurrency_id="model", concurrency_limit=1
    )


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
        args.max_seconds, args.max_file_size, args.max_new_tokens, args.queue_size, limits, args.keep_files
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries(debug=False)
    try:
        model = load(model_spec(args))  # once, at start-up: requests never load anything
    except AQAError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    settings = settings_from(args)
    launch(build_demo(model, settings), settings, server_name=args.host, server_port=args.port, share=args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
