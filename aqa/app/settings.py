"""What the app may do: every limit a Space owner can set, with defaults that keep a shared Space responsive, and the
examples a fresh page offers. Neither Gradio nor torch: the flags and the checks read it before anything heavy."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from aqa.limits import Limits

ASSETS = Path(__file__).resolve().parents[2] / "assets"

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

KiB, MiB, GiB = 2**10, 2**20, 2**30
# Byte sizes as flags write them ("50mb", "1 GB", "512kb", "4096"): binary units, as Gradio reads its max_file_size.
UNITS = {"": 1, "b": 1, "kb": KiB, "mb": MiB, "gb": GiB, "tb": 2**40}


@dataclass(frozen=True)
class AppSettings:
    """The app's limits. The models answer one question at a time, so each limit also bounds how long the others
    wait: a request is bounded in size (body, clip, text), in work (tokens, seconds) and in disk."""

    max_seconds: float = 300.0  # longest clip accepted, read from its header before decoding (twelve windows)
    max_file_size: int = 50 * MiB  # one upload, enforced by Gradio and by the app's request guard
    max_body: int = 1 * MiB  # any other request body (JSON: a question, its options, a file reference)
    max_new_tokens: int | None = None  # per window and model; None: the library's (256, or 1024 in thinking mode)
    max_total_tokens: int = 2048  # per model, across all windows of a clip: a long clip's windows share it
    time_limit: float = 120.0  # seconds one request may hold the models; then the text so far is the answer's
    queue_size: int = 20  # requests that may wait for the models; each client holds one place at most
    limits: Limits = Limits()  # caps on the question and options (aqa.limits), as in the library and the CLI
    keep_files: int = 86400  # seconds a history file, and a clip answered in a history, is kept
    keep_uploads: int = 3600  # seconds an upload that no history holds is kept
    cache_quota: int = 2 * GiB  # uploads and history files on disk together; the oldest unused go first
    long_audio: str = "windows"  # a clip over 30 s: every 30 s window answered ("windows"), or its first 30 s


def byte_count(text: str | int) -> int:
    """'50mb' -> 52428800 (binary units: kb, mb, gb, tb; a bare number is bytes)."""
    if isinstance(text, int):
        return text
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?b?)\s*", str(text).lower())
    if found is None or found.group(2) not in UNITS:
        raise ValueError(f"not a size: {text!r} (write e.g. 50mb, 1gb, 512kb)")
    return int(float(found.group(1)) * UNITS[found.group(2)])


def size_text(count: int) -> str:
    """52428800 -> '50 MB': how a message names a size."""
    for unit in ("TB", "GB", "MB", "KB"):
        scale = UNITS[unit.lower()]
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} bytes"


def age_text(seconds: float) -> str:
    """86400 -> '24 h', 90 -> '90 s': how a message names a file's life."""
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds:g} s"
