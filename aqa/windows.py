"""Clips longer than the model hears in one piece (30 s for Qwen2-Audio), answered window by window.

A long clip is cut into windows as long as the model hears that overlap by WINDOW_OVERLAP seconds (so that a sound
at a cut is heard whole in one window), the last one ending with the clip; each window is asked the question, and
the overall answer is the option with the highest probability averaged over the windows. Pure functions:
`aqa.answering` asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from aqa.audio import CHUNK_LENGTH, SAMPLE_RATE
from aqa.options import Question, Result, Timings, Window

WINDOW_OVERLAP = 5.0  # seconds two neighbouring windows share
LONG_AUDIO = ("first", "windows")  # what to do with a clip over 30 s: its first 30 s (with a note), or every window


def window_spans(
    seconds: float, length: float = CHUNK_LENGTH, overlap: float = WINDOW_OVERLAP
) -> list[tuple[float, float]]:
    """(start, end) of each window of a clip `seconds` long: every `length - overlap` seconds, the last ending with
    the clip (and so overlapping its neighbour more); one window for a clip no longer than `length`.

    >>> window_spans(75.0)
    [(0.0, 30.0), (25.0, 55.0), (45.0, 75.0)]
    """
    if seconds <= length:
        return [(0.0, seconds)]
    spans, start = [], 0.0
    while start + length < seconds:
        spans.append((start, start + length))
        start += length - overlap
    spans.append((seconds - length, seconds))
    return spans


def window_questions(question: Question, samples, spans: Sequence[tuple[float, float]]) -> list[Question]:
    """The question asked of each window: the window's 16 kHz samples, named by the clip and the span."""
    return [
        replace(
            question,
            audio=samples[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)],
            name=f"{question.name} [{start:.0f}-{end:.0f} s]",
        )
        for start, end in spans
    ]


def merge_windows(
    results: Sequence[Result], spans: Sequence[tuple[float, float]], seconds: float, length: float = CHUNK_LENGTH
) -> Result:
    """One Result for the clip: the option with the highest mean probability over the windows, those mean
    probabilities, each window's answer in `windows`, and the windows' text, each line starting with its span."""
    options = list(results[0].probabilities)
    mean = {option: sum(result.probabilities[option] for result in results) / len(results) for option in options}
    windows = tuple(window_of(result, span) for result, span in zip(results, spans))
    timings = Timings(
        *(sum(getattr(result.timings, name) for result in results) for name in Timings.__dataclass_fields__)
    )
    return Result(
        answer=max(mean, key=mean.get) if mean else None,
        answer_source="windows" if mean else "none",
        raw=window_text(windows),
        think=None,
        probabilities=mean,
        duration=seconds,
        note=f"the clip is {seconds:.1f} s long: answered in {len(windows)} windows of {length:g} s "
        f"({WINDOW_OVERLAP:g} s overlap); the answer has the highest mean probability over them",
        timings=timings,
        windows=windows,
    )


def window_of(result: Result, span: tuple[float, float]) -> Window:
    return Window(span[0], span[1], result.answer, result.answer_source, result.probabilities, result.raw)


def window_text(windows: Sequence[Window]) -> str:
    return "".join(window_line(window) for window in windows)


def window_line(window: Window) -> str:
    return f"[{window.start:.0f}-{window.end:.0f} s] {window.raw}\n"
