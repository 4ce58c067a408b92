"""Training data: R1-AQA's AVQA JSONL and MMAU-style rows, read into one typed example, bad rows skipped and counted;
and the audio collation that turns chat messages with a clip into model inputs.

Shared by GRPO (`train.grpo`) and SFT (`train.sft`); the prompt and the audio loader come from `aqa`, so training
sees exactly what inference sees.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from aqa.audio import CHANNELS, load_audio
from aqa.errors import AQAError
from aqa.families import Family
from aqa.inputs import encode_conversations

logger = logging.getLogger(__name__)

AUDIO_KEYS = ("audio_path", "audio", "audio_id")  # AVQA uses audio_path, MMAU audio_id


@dataclass(frozen=True)
class Example:
    id: str  # the row's id, else its line number
    audio_path: str  # absolute, or as given when already absolute
    question: str
    options: tuple[str, ...]
    answer: str  # the correct option's text


@dataclass(frozen=True)
class DataOptions:
    drop_view: bool = False  # drop AVQA rows whose question_relation is "View" (unanswerable from audio alone)
    video_to_audio: bool = False  # R1-AQA's rewrite of "video" to "audio" in questions (see `rewrite_video`)
    check_audio: bool = True  # decode every clip once up front so a bad file cannot crash a training step
    audio_channel: str = "first"  # how a multi-channel clip becomes mono (aqa.audio.CHANNELS); "first" is R1-AQA's

    def __post_init__(self):
        if self.audio_channel not in CHANNELS:
            raise ValueError(f"audio_channel must be one of {', '.join(CHANNELS)}, not {self.audio_channel!r}")


def load_examples(
    path: str | Path, options: DataOptions = DataOptions(), audio_dir: str | Path | None = None
) -> tuple[list[Example], Counter]:
    """Examples from a JSONL file (or a JSON list), and a Counter of skipped rows by reason; the counts are logged.

    Relative audio paths are read from `audio_dir`, by default the file's folder."""
    pairs, skipped = load_rows(path, options, audio_dir)
    return [example for _, example in pairs], skipped


def load_rows(
    path: str | Path, options: DataOptions = DataOptions(), audio_dir: str | Path | None = None
) -> tuple[list[tuple[dict, Example]], Counter]:
    """`load_examples`, keeping each example's row (its other fields: MMAU's task, difficulty ...)."""
    path = Path(path)
    base = Path(audio_dir) if audio_dir is not None else path.parent
    skipped: Counter = Counter()
    pairs = []
    for number, row in read_rows(path, skipped):
        example = parse_row(row, number, base, options, skipped)
        if example is not None:
            pairs.append((row, example))
    if options.check_audio:
        kept = {id(example) for example in drop_unreadable([e for _, e in pairs], skipped, options.audio_channel)}
        pairs = [(row, example) for row, example in pairs if id(example) in kept]
    logger.info("%s: %d examples kept, %d skipped %s", path, len(pairs), sum(skipped.values()), dict(skipped))
    return pairs, skipped


def read_rows(path: Path, skipped: Counter) -> Iterator[tuple[int, dict]]:
    """(number, row) for each JSON object: one per line, or the items of a JSON list (MMAU's question files)."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError:
            skipped["invalid json"] += 1
            return
        yield from enumerate(rows, start=1)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError:
            skipped["invalid json"] += 1


def parse_row(row, number: int, base: Path, options: DataOptions, skipped: Counter) -> Example | None:
    if not isinstance(row, dict):
        skipped["invalid json"] += 1
        return None
    if options.drop_view and row.get("question_relation") == "View":
        skipped["view question"] += 1
        return None
    audio = next((row[key] for key in AUDIO_KEYS if row.get(key)), None)
    question = row.get("question_text", row.get("question"))
    choices = row.get("multi_choice", row.get("choices"))
    if audio is None or not question or not isinstance(choices, list) or len(choices) < 2:
        skipped["missing field"] += 1
        return None
    answer = correct_option(row, choices)
    if answer is None:
        skipped["answer not among choices"] += 1
        return None
    if options.video_to_audio:
        question = rewrite_video(question)
    audio_path = Path(audio) if Path(audio).is_absolute() else (base / audio).resolve()
    choices = tuple(str(choice) for choice in choices)
    return Example(str(row.get("id", number)), str(audio_path), question, choices, answer)


def rewrite_video(question: str) -> str:
    """R1-AQA's data loader's `question_text.replace('video', 'audio')`: case-sensitive and within words, so
    "videos" becomes "audios" and "Video" stays."""
    return question.replace("video", "audio")


def correct_option(row: dict, choices: Sequence) -> str | None:
    """AVQA gives the answer as an index into multi_choice; MMAU-style rows give its text."""
    answer = row.get("answer")
    if isinstance(answer, int) and not isinstance(answer, bool):
        return str(choices[answer]) if 0 <= answer < len(choices) else None
    if isinstance(answer, str) and answer in [str(choice) for choice in choices]:
        return answer
    return None


def drop_unreadable(examples: list[Example], skipped: Counter, channel: str = "first") -> list[Example]:
    """Decode every clip once (in threads: decoding releases the GIL) and drop those that fail."""

    def readable(example: Example) -> str | None:
        try:
            load_audio(example.audio_path, channel)
        except AQAError as error:
            return str(error)
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        problems = list(tqdm(pool.map(readable, examples), total=len(examples), desc="checking audio", unit="clip"))
    kept = []
    for example, problem in zip(examples, problems):
        if problem is None:
            kept.append(example)
        else:
            reason = "missing audio" if "file not found" in problem else "unreadable audio"
            skipped[reason] += 1
            logger.debug("skipped %s: %s", example.id, problem)
    return kept


# --- audio collation: chat messages holding one clip -> model inputs (shared by GRPO and SFT) -----------------------


def clean_messages(messages: Sequence[dict]) -> list[dict]:
    """Messages as `aqa.build_messages` made them, without the None fields a `datasets.Dataset` adds.

    Arrow stores all content entries as one struct type, so the text entry comes back with `audio_url: None`; the
    chat template tests `'audio_url' in content` and would render a second audio placeholder for it.
    """
    cleaned = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = [{key: value for key, value in part.items() if value is not None} for part in content]
        cleaned.append({**message, "content": content})
    return cleaned


def audio_path(messages: Sequence[dict]) -> str:
    """The clip a conversation refers to: its audio entry's `audio_url` (or `audio`); exactly one is expected."""
    paths = [
        part.get("audio_url") or part.get("audio")
        for message in messages
        if isinstance(message["content"], list)
        for part in message["content"]
        if part.get("type") == "audio"
    ]
    if len(paths) != 1 or not paths[0]:
        raise ValueError(f"expected one audio entry with an audio_url in the prompt, found {len(paths)}")
    return str(paths[0])


def load_clips(paths: Sequence[str], channel: str = "first") -> list[np.ndarray]:
    """16 kHz mono samples for each path; a clip repeated in the batch (GRPO's generations) is decoded once.

    channel "first" keeps a multi-channel clip's first channel, as R1-AQA's data loader did (`waveform[0]`)."""
    decoded = {path: load_audio(path, channel) for path in dict.fromkeys(paths)}
    return [decoded[path] for path in paths]


def collate_audio(
    processor,
    family: Family,
    conversations: Sequence[Sequence[dict]],
    clips: Sequence[np.ndarray],
    add_generation_prompt: bool = True,
) -> dict[str, torch.Tensor]:
    """Model inputs for training conversations: aqa's own encoding (so training sees what inference sees), after
    dropping the None fields a `datasets.Dataset` adds. Returns input_ids, attention_mask and the family's audio
    features (`family.audio_keys`), kept by row (`Family.audio_by_row`): the first dimension of every tensor is the
    batch's rows, so any selection of rows takes its own audio along.

    Without the features the model embeds the audio placeholders as plain text, with no error (transformers 5 does
    not check), so every forward pass must receive them: `family.model_audio(...)` of the rows it scores."""
    cleaned = [clean_messages(messages) for messages in conversations]
    encoded = encode_conversations(processor, cleaned, clips, add_generation_prompt)
    audio = family.audio_by_row(encoded, [len(clip) for clip in clips])
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], **audio}


def check_audio_rows(input_ids: torch.Tensor, audio: dict[str, torch.Tensor], family: Family, audio_token_id: int):
    """Each row's number of audio placeholder tokens must equal what its own clip's features become through the
    family's encoder (`Family.audio_token_counts`).

    The models check at most the totals over a batch before scattering the encoder outputs into the placeholder
    positions row after row, so features that reach the wrong rows (two clips of a batch swapped) would train on
    mismatched audio without an error. A RuntimeError here is a bug in how features travel with their rows.
    """
    rows = len(next(iter(audio.values())))
    if len(input_ids) != rows:
        raise RuntimeError(f"{len(input_ids)} rows of tokens but {rows} of audio features")
    expected = family.audio_token_counts(audio).to(input_ids.device)
    found = (input_ids == audio_token_id).sum(-1)
    wrong = (found != expected).nonzero().flatten().tolist()
    if wrong:
        row = wrong[0]
        raise RuntimeError(
            f"row {row} holds {int(found[row])} audio tokens but its audio features make {int(expected[row])} "
            f"encoder outputs ({len(wrong)} row(s) misaligned): features and rows do not belong together"
        )
