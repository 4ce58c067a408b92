"""The models' slot: the functions that touch a model (on the GPU under ZeroGPU), one question at a time, the text
streamed as it is written, Stop, and the bounds on one request's work (a token budget shared by a clip's windows, a
time limit). Failures leave as one-line Gradio errors."""

from __future__ import annotations

try:  # ZeroGPU Spaces attach a GPU only while a `spaces.GPU` function runs; `spaces` wants importing before torch.
    import spaces
except ImportError:
    spaces = None

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import closing, contextmanager
from dataclasses import replace

import gradio as gr
import numpy as np
import torch

import aqa
from aqa.app.settings import AppSettings
from aqa.audio import SAMPLE_RATE
from aqa.errors import AQAError, first_line
from aqa.windows import window_spans

log = logging.getLogger("aqa.app")
AnswerFn = Callable[[np.ndarray, str, list[str], aqa.DecodingOptions, float], aqa.Result]
StreamFn = Callable[[np.ndarray, str, list[str], aqa.DecodingOptions, float], Iterator["str | aqa.Result"]]
OUT_OF_MEMORY = "out of memory on this question; try a shorter clip, thinking mode off, or --precision 4bit"
# The time limit stops generation at the next token; the prefill and the option scoring of the window being answered
# still follow, so ZeroGPU is asked for the GPU a little longer than the limit.
GPU_MARGIN = 30
# Generation stops at this share of the time left, keeping the rest for what follows the stop (the option scoring of
# the window being answered, the answer's table, plot and history files): the request ends within its time limit.
GENERATION_SHARE = 0.8


def on_gpu(settings: AppSettings) -> Callable:
    """`spaces.GPU` for the length of a request (ZeroGPU attaches a GPU per call); elsewhere the model stays on its
    device and the function is handed back."""
    if spaces is None:
        return lambda fn: fn
    return spaces.GPU(duration=int(settings.time_limit) + GPU_MARGIN)


def device_functions(model: aqa.AQAModel, lock: threading.Lock, settings: AppSettings) -> tuple[AnswerFn, StreamFn]:
    """The two functions that touch the model: one answer at once, and one streamed. Each takes the seconds left of
    the request's time limit; near their end, generation stops and the text so far is answered, with a note saying
    so.

    ZeroGPU calls a `spaces.GPU` function in a forked worker and pickles its arguments, results and (for a generator)
    each yielded value: the model reaches it through this closure, and the time limit is a number, so only samples,
    text and Results cross over. `lock` keeps one question at a time on the models even when a cancelled stream is
    still finishing its token as the queue lets the next question in; closing a stream ends its generation at once.
    """

    def stream(samples: np.ndarray, question: str, options: list[str], decoding, seconds: float):
        with lock, stop_after(seconds * GENERATION_SHARE) as stop:
            for piece in aqa.answer_stream(model, samples, question, options, decoding, stop=stop):
                if isinstance(piece, aqa.Result) and stop.is_set():
                    seconds_of_audio = len(samples) / SAMPLE_RATE
                    piece = cut_short(piece, settings.time_limit, seconds_of_audio, decoding, model.heard_seconds)
                yield piece

    def answer_on_device(samples: np.ndarray, question: str, options: list[str], decoding, seconds: float):
        *_, result = stream(samples, question, options, decoding, seconds)
        return result

    def stream_on_device(samples: np.ndarray, question: str, options: list[str], decoding, seconds: float):
        yield from stream(samples, question, options, decoding, seconds)

    gpu = on_gpu(settings)
    return gpu(answer_on_device), gpu(stream_on_device)


@contextmanager
def stop_after(seconds: float) -> Iterator[threading.Event]:
    """An event set once `seconds` have passed."""
    stop = threading.Event()
    timer = threading.Timer(max(seconds, 0.0), stop.set)
    timer.daemon = True
    timer.start()
    try:
        yield stop
    finally:
        timer.cancel()


def cut_short(
    result: aqa.Result, limit: float, seconds: float, decoding: aqa.DecodingOptions, heard_seconds: float
) -> aqa.Result:
    """A Result whose generation the time limit stopped, its note saying so."""
    note = f"stopped at the time limit of {limit:g} s per question: the answer is read from the text written by then"
    if result.windows:
        total = len(window_spans(seconds, heard_seconds)) if decoding.long_audio == "windows" else 1
        note += f" ({len(result.windows)} of {total} windows answered)"
    return replace(result, note="; ".join(filter(None, [result.note, note])))


def was_cut_short(result: aqa.Result) -> bool:
    return "stopped at the time limit" in (result.note or "")


def decoding_options(settings: AppSettings, think: bool, seconds: float, heard_seconds: float) -> aqa.DecodingOptions:
    """How a model that hears `heard_seconds` at a time answers a clip of `seconds`: each window's budget is the
    library's (or --max-new-tokens), cut so that all the clip's windows together stay within --max-total-tokens."""
    decoding = aqa.DecodingOptions(think=think, max_new_tokens=settings.max_new_tokens, long_audio=settings.long_audio)
    windows = len(window_spans(seconds, heard_seconds)) if settings.long_audio == "windows" else 1
    share = max(1, settings.max_total_tokens // windows)
    return replace(decoding, max_new_tokens=share) if share < decoding.token_budget else decoding


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


class RequestClock:
    """The seconds left of a request's time limit, counted from its start (its wait in the queue is not counted)."""

    def __init__(self, limit: float):
        self.limit = limit
        self.start = time.monotonic()

    def left(self) -> float:
        return self.limit - self.elapsed()

    def elapsed(self) -> float:
        return time.monotonic() - self.start


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
