"""Input encoding: questions become model inputs (audio loaded and checked, chat template, tokens, log-mel features).

`encode_conversations` is the one place where prompts become tensors, for inference and training alike; the rest
prepares whole batches on the CPU, in a background thread while the model works on the previous batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from aqa.audio import SAMPLE_RATE, duration_of, load_audio
from aqa.errors import AQAError
from aqa.model import AQAModel
from aqa.options import Question
from aqa.prompt import build_messages, check_question


@dataclass(frozen=True)
class Prepared:
    """A question whose audio is loaded and checked."""

    question: Question
    samples: np.ndarray
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


def length_key(model: AQAModel, question: Question) -> float:
    """Prompt length in tokens, roughly: the audio tokens of what the model hears of the clip, plus the text; from
    file headers only."""
    seconds = min(duration_of(question.audio), model.heard_seconds)
    text = len(question.text) + sum(len(option) for option in question.options)
    return seconds * model.family.audio_tokens_per_second + text / 4


def prepare(question: Question) -> Prepared | AQAError:
    """Check the question and load its audio; a problem comes back as its error, not raised."""
    start = time.perf_counter()
    try:
        check_question(question.text, question.options, question.allow_duplicate_options, question.limits)
        samples = load_audio(question.audio, question.channel)
    except AQAError as error:
        return error
    return Prepared(question, samples, time.perf_counter() - start)


def prepare_batch(model: AQAModel, questions: Sequence[Question], think: bool) -> Batch:
    """All the CPU work of a batch before the model: audio, checks, chat template, tokens, log-mel features."""
    items = [prepare(question) for question in questions]
    good = [item for item in items if isinstance(item, Prepared)]
    start = time.perf_counter()
    inputs = encode_prepared(model, good, think) if good else None
    return Batch(items, inputs, time.perf_counter() - start)


def encode_prepared(model: AQAModel, items: Sequence[Prepared], think: bool) -> dict[str, torch.Tensor]:
    """Chat template, tokens and log-mel features for a batch, left-padded, on the CPU (thread-safe)."""
    conversations = [
        build_messages(item.question.text, item.question.options, think, audio_url=item.question.name) for item in items
    ]
    clips = [item.samples for item in items]
    return encode_conversations(model.processor, conversations, clips, heard_seconds=model.heard_seconds)


def build_inputs(model: AQAModel, items: Sequence[Prepared], think: bool) -> dict[str, torch.Tensor]:
    """Chat template, tokens and log-mel features for a batch, left-padded, on the model's device."""
    return to_device(model, encode_prepared(model, items, think))


def to_device(model: AQAModel, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inputs on the model's device; the features in the model's dtype (the audio encoder does not cast them)."""
    moved = {name: tensor.to(model.device) for name, tensor in inputs.items()}
    moved["input_features"] = moved["input_features"].to(model.hf.dtype)
    return moved


def encode_conversations(
    processor,
    conversations: Sequence[Sequence[dict]],
    clips: Sequence[np.ndarray],
    add_generation_prompt: bool = True,
    heard_seconds: float | None = None,
) -> dict[str, torch.Tensor]:
    """Chat template, left-padded tokens and log-mel features for conversations holding one 16 kHz clip each.

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
    encoded = processor(
        text=texts, audio=audio, sampling_rate=SAMPLE_RATE, return_tensors="pt", text_kwargs={"padding": True}
    )
    return dict(encoded)
