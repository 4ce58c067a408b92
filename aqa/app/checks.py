"""The inputs a request brings, checked before the models are reached: every problem as one line, and the clip
decoded only once its header is admitted. Neither Gradio nor torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import aqa
from aqa.app.settings import AppSettings, age_text
from aqa.errors import AQAError, AudioError, InputError, kind_of
from aqa.prompt import question_problems

NO_AUDIO = "no audio: upload a file or record one with the microphone"


def options_from_text(text: str | None) -> list[str]:
    """One option per line, stripped; empty lines are not options."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def clip_path(audio) -> str | None:
    """The clip a request names, as a path. The events take their inputs as sent (`preprocess=False`, so that no
    field is converted before it is checked): a clip arrives as Gradio's file data, a mapping with its "path" (Gradio
    has checked by then that the file is an upload of this app); a path is taken as it is."""
    if isinstance(audio, dict):
        audio = audio.get("path")
    if audio is None or isinstance(audio, str):
        return audio
    raise InputError(f"audio must be an uploaded file, not {kind_of(audio)}")


def load_clip(audio, settings: AppSettings) -> np.ndarray:
    """The aqa loader, refusing a clip over the app's cap from its header, with messages that name the uploaded file
    rather than Gradio's cache path."""
    path = clip_path(audio)
    if not path:
        raise InputError(NO_AUDIO)
    name = Path(path).name
    if not Path(path).exists():  # the page still shows a clip whose upload the housekeeping has removed
        raise AudioError(
            f"{name}: the upload is gone (uploads are kept {age_text(settings.keep_uploads)}); upload it again"
        )
    try:
        return aqa.load_audio(path, max_seconds=settings.max_seconds)
    except AudioError as error:
        raise AudioError(str(error).replace(str(path), name)) from None


def check_inputs(settings: AppSettings, audio, question, options) -> tuple[list[str], np.ndarray | None]:
    """Every problem with the inputs (one line each, the clip's first), and the decoded clip when they are good."""
    problems, samples = [], None
    try:
        samples = load_clip(audio, settings)
    except AQAError as error:
        problems.append(str(error))
    problems += question_problems(question, options if options is not None else [], limits=settings.limits)
    return problems, (None if problems else samples)


def checked_clip(settings: AppSettings, audio, question, options) -> np.ndarray:
    """The decoded clip, or an InputError listing every problem with the inputs."""
    problems, samples = check_inputs(settings, audio, question, options)
    if problems:
        raise InputError("; ".join(problems))
    return samples
