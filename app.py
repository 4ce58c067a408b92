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
import csv
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import torch

import aqa
from aqa.audio import CHUNK_LENGTH, SAMPLE_RATE
from aqa.cli.args import add_model_args, model_spec, quiet_libraries
from aqa.errors import AQAError, AudioError, InputError, first_line
from aqa.loading import load
from aqa.prompt import check_question

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
ANSWER_SOURCES = {
    "text": "named in the model's output",
    "probabilities": "the most probable option (the output named none)",
    "none": "no answer",
}
HISTORY_COLUMNS = ["clip", "question", "options", "answer", "top probability"]
OPTION_ROWS = 4  # the options table starts with this many empty rows
OUT_OF_MEMORY = "out of memory on this question; try a shorter clip, thinking mode off, or --precision 4bit"
CSS = "#answer textarea {font-size: 1.6rem; font-weight: 600}"


@dataclass(frozen=True)
class AppSettings:
    max_seconds: float = 300.0  # longest clip accepted; the model hears its first 30 s (decoding a long one is cheap)
    max_file_size: str = "50mb"  # upload cap, enforced by Gradio before the file reaches a handler
    max_new_tokens: int | None = None  # None: the core's default (256, or 1024 in thinking mode)
    queue_size: int = 20  # requests waiting for the model beyond this are turned away; the others see their place


# --- answering: the library does the work -----------------------------------------------------------------------


def ask(run: AnswerFn, settings: AppSettings, audio: str | None, question: str, options, think: bool) -> aqa.Result:
    """Check the inputs, decode the clip and answer; every failure leaves as a one-line gr.Error."""
    with shown_as_gradio_error():
        check_question(question, options)
        samples = load_clip(audio, settings.max_seconds)
        decoding = aqa.DecodingOptions(think=think, max_new_tokens=settings.max_new_tokens)
        return run(samples, question, list(options), decoding)


def model_runner(model: aqa.AQAModel) -> AnswerFn:
    """The one function that touches the model, on the GPU under ZeroGPU.

    ZeroGPU calls a `spaces.GPU` function in a forked worker and pickles its arguments and result: the model reaches
    it through this closure, so only the samples, the question and the Result cross over.
    """

    @on_gpu
    def answer_on_device(samples: np.ndarray, question: str, options: list[str], decoding) -> aqa.Result:
        return aqa.answer(model, samples, question, options, decoding)

    return answer_on_device


def load_clip(path: str | None, max_seconds: float) -> np.ndarray:
    """The aqa loader, with messages that name the uploaded file rather than Gradio's cache path."""
    if not path:
        raise InputError("no audio: upload a file or record one with the microphone")
    name = Path(path).name
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


def options_from_table(rows: Sequence[Sequence] | None) -> list[str]:
    """The options table's cells, top to bottom; rows left empty are not options."""
    cells = [row[0] if len(row) else None for row in rows or []]
    return [str(cell).strip() for cell in cells if cell is not None and str(cell).strip()]


# --- showing results ---------------------------------------------------------------------------------------------


def format_timings(timings: aqa.Timings) -> str:
    return (
        f"{timings.total:.2f} s (audio {timings.audio:.2f}, features {timings.features:.2f}, "
        f"generation {timings.generation:.2f}, scoring {timings.scoring:.2f})"
    )


def result_outputs(result: aqa.Result) -> tuple:
    """Values for: answer, probabilities, note, details, raw output, thinking."""
    note = gr.Markdown(f"**Note:** {result.note}", visible=True) if result.note else gr.Markdown(visible=False)
    details = f"Answer: {ANSWER_SOURCES[result.answer_source]} · {format_timings(result.timings)}"
    return result.answer or "(no answer)", result.probabilities, note, details, result.raw, result.think or ""


def history_row(audio: str, question: str, options: Sequence[str], result: aqa.Result) -> list:
    top = max(result.probabilities.values(), default=0.0)
    return [Path(audio).name, question, " | ".join(options), result.answer or "", round(top, 3)]


def write_history(rows: Sequence[Sequence], path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HISTORY_COLUMNS)
        writer.writerows(rows)
    return path


# --- the page ----------------------------------------------------------------------------------------------------


def build_demo(model: aqa.AQAModel, settings: AppSettings = AppSettings()) -> gr.Blocks:
    """The app around an already loaded model; `launch(demo, settings)` serves it."""
    run = model_runner(model)
    history_dir = Path(tempfile.mkdtemp(prefix="aqa-app-"))  # one CSV per browser session, rewritten per answer

    def answer_clicked(audio, question, table, think, history, request: gr.Request):
        options = options_from_table(table)
        result = ask(run, settings, audio, question, options, think)
        history = [*history, history_row(audio, question, options, result)]
        csv_path = write_history(history, history_dir / f"aqa-history-{(request.session_hash or 'page')[:8]}.csv")
        return (*result_outputs(result), history, history, gr.DownloadButton(value=str(csv_path), interactive=True))

    def answer_api(audio, question, options) -> dict:
        """Answer a question about a clip: (audio file, question, list of options) -> answer, raw, probabilities..."""
        return ask(run, settings, audio, question, options if options is not None else [], False).to_dict()

    with gr.Blocks(title="R1-AQA: audio question answering") as demo:
        gr.Markdown(
            f"# R1-AQA: audio question answering\nAsk a multiple-choice question about a clip. Model `{model.name}` "
            f"({model.precision} on {model.device}); it hears the first {CHUNK_LENGTH} s of a clip."
        )
        audio, question, table, think, button = layout_inputs()
        outputs = layout_outputs()
        gr.Examples(
            [[str(ASSETS / clip), q, [[o] for o in opts]] for clip, q, opts in EXAMPLES], [audio, question, table]
        )
        history, history_table, download = layout_history()
        button.click(
            answer_clicked,
            [audio, question, table, think, history],
            [*outputs, history, history_table, download],
            api_name="answer_ui",
            api_visibility="private",  # `/answer` is the API; this one takes the page's table and state
            concurrency_id="model",
            concurrency_limit=1,
        )
        add_api(answer_api)
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=1)
    return demo


def layout_inputs() -> tuple:
    with gr.Row():
        audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio", elem_id="audio")
        with gr.Column():
            question = gr.Textbox(label="Question", lines=2, elem_id="question", placeholder="What is the sound?")
            table = gr.Dataframe(
                value=[[""] for _ in range(OPTION_ROWS)],
                headers=["option"],
                datatype="str",
                type="array",
                interactive=True,
                label="Options: double-click a cell to edit; its ⋮ menu adds or deletes rows; empty rows are ignored",
                elem_id="options",
            )
            think = gr.Checkbox(label="Thinking mode (<think> before <answer>; the released model answers directly)")
            button = gr.Button("Answer", variant="primary", elem_id="answer-button")
    return audio, question, table, think, button


def layout_outputs() -> tuple:
    with gr.Row():
        with gr.Column():
            answer = gr.Textbox(label="Answer", interactive=False, elem_id="answer")
            note = gr.Markdown(visible=False, elem_id="note")
            details = gr.Markdown(elem_id="details")
        probabilities = gr.Label(label="Option probabilities", show_heading=False, elem_id="probabilities")
    with gr.Accordion("Model output", open=False):
        raw = gr.Textbox(label="Raw output", interactive=False, lines=3, elem_id="raw")
        thinking = gr.Textbox(label="Thinking", interactive=False, lines=3, elem_id="thinking")
    return answer, probabilities, note, details, raw, thinking


def layout_history() -> tuple:
    history = gr.State([])  # per page: the rows of the table below
    with gr.Accordion("History of this page", open=True):
        table = gr.Dataframe(headers=HISTORY_COLUMNS, interactive=False, elem_id="history")
        download = gr.DownloadButton("Download CSV", interactive=False, elem_id="download")
    return history, table, download


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
    """Serve the demo; kwargs go to `Blocks.launch` (server_name, server_port, share, prevent_thread_lock...)."""
    return demo.launch(max_file_size=settings.max_file_size, allowed_paths=[str(ASSETS)], css=CSS, **kwargs)


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
}


def build_parser(environ: dict[str, str] = os.environ) -> argparse.ArgumentParser:
    defaults = AppSettings()
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
    for action in parser._actions:
        if action.dest in ENVIRONMENT:
            action.help = f"{action.help or ''} [{ENVIRONMENT[action.dest]}]".strip()
    parser.set_defaults(**defaults_from(environ))
    return parser


def defaults_from(environ: dict[str, str]) -> dict:
    """Flag defaults from the environment; string defaults still pass through each flag's type."""
    values = {dest: environ[name] for dest, name in ENVIRONMENT.items() if environ.get(name)}
    if "share" in values:
        values["share"] = values["share"].strip().lower() in ("1", "true", "yes", "on")
    return values


def settings_from(args: argparse.Namespace) -> AppSettings:
    return AppSettings(args.max_seconds, args.max_file_size, args.max_new_tokens, args.queue_size)


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
