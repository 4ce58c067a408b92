"""Input encoding: questions become model inputs (audio loaded and checked, chat template, tokens, log-mel features).

`encode_conversations` is the one place where prompts become tensors, for inference and training alike; the rest
prepares whole batches on the CPU, in a background thread while the model works on the previous batch.

What the model hears of each clip is one of AUDIO_MODES: the clip itself, or, for a no-audio baseline, nothing (the
prompt alone: no audio entry in the chat message, no features), silence or seeded white noise of the clip's length.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np
import torch

from aqa.audio import SAMPLE_RATE, duration_of, load_audio
from aqa.errors import AQAError
from aqa.families import Family
from aqa.model import AQAModel
from aqa.options import AUDIO_MODES, Question
from aqa.prompt import build_messages, check_question

# White noise stands in for a clip at this RMS level (-20 dBFS: the loudness of ordinary speech recordings), so that
# the baseline is a clip-sized sound with nothing in it rather than a near-silent one.
NOISE_RMS = 0.1


@dataclass(frozen=True)
class Prepared:
    """A question whose audio is loaded and checked."""

    question: Question
    samples: np.ndarray | None  # what the model hears (the clip, or its stand-in); None: no audio at all
    load_seconds: float


@dataclass(frozen=True)
class Batch:
    """A batch ready for the model: its items (bad ones as their errors, in place) and the good ones' inputs."""

    items: list[Prepared | AQAError]
    inputs: dict[str, torch.Tensor] | None  # the good items' tokens and features, on the CPU; None if none is good
    features_seconds: float  # chat template, tokenizer and log-mel features of the whole batch

    @property
    def good(self) -> list[Prepared]:
        return [item for item in self.items if isinstance(item, Prepared)]


def length_key(family: Family, question: Question) -> float:
    """Prompt length in tokens, roughly: the audio tokens of what the family hears of the clip, plus the text; from
    file headers only, so that batches can be planned before any model is loaded."""
    seconds = min(duration_of(question.audio), family.heard_seconds)
    text = len(question.text) + sum(len(option) for option in question.options)
    return seconds * family.audio_tokens_per_second + text / 4


def prepare(question: Question, audio: str = "clip") -> Prepared | AQAError:
    """Check the question and load its audio, and put what the model hears (AUDIO_MODES) in its place; a problem
    comes back as its error, not raised. The clip is loaded whatever the mode, so that a baseline run asks exactly
    the questions its audio run could ask (a broken file fails in both)."""
    start = time.perf_counter()
    try:
        check_question(question.text, question.options, question.allow_duplicate_options, question.limits)
        samples = load_audio(question.audio, question.channel)
    except AQAError as error:
        return error
    return Prepared(question, stand_in(samples, audio, question.name), time.perf_counter() - start)


def stand_in(samples: np.ndarray, audio: str, name: str) -> np.ndarray | None:
    """What the model hears in place of a clip: the clip ("clip"), nothing ("none"), silence or white noise of its
    length. The noise is seeded from the clip's base name and length, never its folder: the same clip gets the same
    noise in any copy of the data, in any order of its options, and in every process of a distributed run."""
    if audio not in AUDIO_MODES:
        raise ValueError(f"unknown audio mode {audio!r}: one of {', '.join(AUDIO_MODES)}")
    if audio == "clip":
        return samples
    if audio == "none":
        return None
    if audio == "silence":
        return np.zeros_like(samples)
    seed = hashlib.sha256(f"{PurePath(name).name}\t{len(samples)}".encode()).digest()
    noise = np.random.default_rng(int.from_bytes(seed[:8], "little")).normal(0.0, NOISE_RMS, len(samples))
    return np.clip(noise, -1.0, 1.0).astype(np.float32)


def prepare_batch(model: AQAModel, questions: Sequence[Question], think: bool, audio: str = "clip") -> Batch:
    """All the CPU work of a batch before the model: audio, checks, chat template, tokens, log-mel features."""
    items = [prepare(question, audio) for question in questions]
    good = [item for item in items if isinstance(item, Prepared)]
    start = time.perf_counter()
    inputs = encode_prepared(model, good, think) if good else None
    return Batch(items, inputs, time.perf_counter() - start)


def encode_prepared(model: AQAModel, items: Sequence[Prepared], think: bool) -> dict[str, torch.Tensor]:
    """Chat template, tokens and log-mel features for a batch, left-padded, on the CPU (thread-safe). An item
    without samples is asked with the prompt alone: no audio entry in its message, no features."""
    conversations = [
        build_messages(
            item.question.text,
            item.question.options,
            think,
            audio_url=item.question.name if item.samples is not None else None,
        )
        for item in items
    ]
    clips = [item.samples for item in items if item.samples is not None]
    if 0 < len(clips) < len(items):
        raise ValueError("a batch mixes questions with audio and questions without: answer them in separate calls")
    return encode_conversations(model.processor, conversations, clips, heard_seconds=model.heard_seconds)


def build_inputs(model: AQAModel, items: Sequence[Prepared], think: bool) -> dict[str, torch.Tensor]:
    """Chat template, tokens and log-mel features for a batch, left-padded, on the model's device."""
    return to_device(model, encode_prepared(model, items, think))


def to_device(model: AQAModel, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inputs on the model's device; the features (if any) in the model's dtype (the audio encoder does not cast
    them)."""
    moved = {name: tensor.to(model.device) for name, tensor in inputs.items()}
    if "input_features" in moved:
        moved["input_features"] = moved["input_features"].to(model.hf.dtype)
    return moved


def encode_conversations(
    processor,
    conversations: Sequence[Sequence[dict]],
    clips: Sequence[np.ndarray],
    add_generation_prompt: bool = True,
    heard_seconds: float | None = None,
) -> dict[str, torch.Tensor]:
    """Chat template, left-padded tokens and log-mel features for conversations holding one 16 kHz clip each, or
    (no clips) for conversations of text alone, which get no features.

    The one place prompts become model inputs, for inference and training alike, for every family: its processor
    expands the audio placeholder to one token per encoder output of its own clip. With add_generation_prompt=False a
    conversation may end with the assistant's answer (SFT). A clip is cut to `heard_seconds` first when given.
    """
    texts = [
        processor.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)
        for messages in conversations
    ]
    # The processor would cut longer audio itself (to what the encoder hears), but cutting here saves the work.
    audio = [clip[: round(heard_seconds * SAMPLE_RATE)] for clip in clips] if heard_seconds else list(clips)
    # Padding is asked of the text only: each family's processor pads its audio features its own way (Whisper's
    # fixed windows, or the longest clip of the batch).
    if not audio:  # every family's processor takes text alone (and then returns no features)
        return dict(processor(text=texts, return_tensors="pt", text_kwargs={"padding": True}))
    encoded = processor(
        text=texts, audio=audio, sampling_rate=SAMPLE_RATE, return_tensors="pt", text_kwargs={"padding": True}
    )
    return dict(encoded)
