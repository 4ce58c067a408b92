"""Answering one question as the text is written: `aqa.answer_stream` yields the text piece by piece, then the Result.

Generation runs in a worker thread and hands its tokens to a streamer that the caller's thread reads; a threading
Event (the app's Stop button, or the reader going away) ends it at the next token.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace

import torch
from transformers import TextIteratorStreamer

from aqa.answering import answer_batch, plan_windows
from aqa.audio import AudioInput, duration_of
from aqa.errors import AQAError
from aqa.inputs import prepare_batch
from aqa.model import AQAModel
from aqa.options import DecodingOptions, Question, Result
from aqa.windows import merge_windows


def answer_stream(
    model: AQAModel,
    audio: AudioInput,
    question: str,
    options: Sequence[str],
    decoding: DecodingOptions = DecodingOptions(),
    stop: threading.Event | None = None,
) -> Iterator[str | Result]:
    """Answer one question, yielding the generated text piece by piece as it comes, then the Result.

    The pieces put together are the Result's `raw`. Setting `stop` (or closing the iterator) ends generation at the
    next token; the Result then holds the text so far, and the model is free for the next question at once. Raises
    AQAError on bad input, before anything is yielded. With `long_audio="windows"` a long clip's windows come one
    after the other, each line starting with its span (a stop also skips the windows not yet begun).
    """
    asked = Question(audio, question, options)
    stop = stop or threading.Event()
    if decoding.long_audio == "windows" and duration_of(audio) > model.heard_seconds:
        yield from stream_windows(model, asked, decoding, stop)
    else:
        yield from stream_question(model, asked, decoding, stop)


def stream_question(
    model: AQAModel, question: Question, decoding: DecodingOptions, stop: threading.Event
) -> Iterator[str | Result]:
    """One question's text as generation writes it (in a worker thread), then its Result."""
    batch = prepare_batch(model, [question], decoding.think)
    if isinstance(batch.items[0], AQAError):
        raise batch.items[0]
    streamer = TokenStreamer(
        model.tokenizer, skip_prompt=True, skip_special_tokens=True, clean_up_tokenization_spaces=False
    )
    outcome: dict = {}

    def work() -> None:  # generation runs here; the caller's thread reads the streamer
        try:
            outcome["result"] = answer_batch(model, batch, decoding, streamer, stop)[0]
        except BaseException as error:  # handed to the caller's thread, which raises it
            outcome["error"] = error
        finally:
            streamer.end()  # also when nothing was generated (an answer read off scoring), so reading ends

    worker = threading.Thread(target=work, name="aqa-answer-stream", daemon=True)
    worker.start()
    sent, read_to_the_end = "", False
    try:
        for piece in streamer:
            if piece:
                sent += piece
                yield piece
        read_to_the_end = True  # generation is over; the worker may still be scoring the options
    finally:
        if not read_to_the_end:
            stop.set()  # the reader went away (closed iterator, cancelled request): end generation now
        worker.join()
    if "error" in outcome:
        raise outcome["error"]
    result = outcome["result"]
    if result.raw.startswith(sent) and len(result.raw) > len(sent):
        yield result.raw[len(sent) :]  # text the streamer never saw: an answer read off the scoring pass
    yield result


def stream_windows(
    model: AQAModel, question: Question, decoding: DecodingOptions, stop: threading.Event
) -> Iterator[str | Result]:
    """A long clip answered window by window, each window streamed as a line that starts with its span, then the
    Result of the windows answered (all of them, unless stopped)."""
    asked, spans, seconds = plan_windows(question, model.heard_seconds)
    if not spans:  # the header said it was longer than the model hears, the samples did not: an ordinary answer
        yield from stream_question(model, asked[0], decoding, stop)
        return
    plain = replace(decoding, long_audio="first")
    results = []
    for window, (start, end) in zip(asked, spans):
        if results and stop.is_set():
            break  # the first window is always answered, so that there is a Result
        yield f"[{start:.0f}-{end:.0f} s] "
        for piece in stream_question(model, window, plain, stop):
            if isinstance(piece, str):
                yield piece
            else:
                results.append(piece)
        yield "\n"
    yield merge_windows(results, spans[: len(results)], seconds, model.heard_seconds)


class TokenStreamer(TextIteratorStreamer):
    """transformers' iterator streamer, putting out the text after every token rather than at the next space (it
    shows whole words; a reader of an answer or of reasoning wants it as it grows). Only a trailing character whose
    bytes are not all there yet is held back, so the pieces add up to the decoded text."""

    def put(self, value: torch.Tensor) -> None:
        if self.skip_prompt and self.next_tokens_are_prompt:  # the first call carries the prompt
            self.next_tokens_are_prompt = False
            return
        self.token_cache.extend(value.reshape(-1).tolist())  # batch 1
        text = self.tokenizer.decode(self.token_cache, **self.decode_kwargs).rstrip("\ufffd")
        if len(text) > self.print_len:
            self.on_finalized_text(text[self.print_len :])
            self.print_len = len(text)
