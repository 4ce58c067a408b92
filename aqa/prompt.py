"""The one R1-AQA prompt builder, shared by inference, evaluation and training."""

from __future__ import annotations

from collections.abc import Sequence

from aqa.errors import InputError

# The exact instructions R1-AQA was trained and evaluated with (its model card, and src/test.py and src/dataset in
# github.com/xiaomi-research/r1-aqa). The released model uses ANSWER_ONLY; THINKING is the paper's prompt 3, offered
# as an option.
ANSWER_ONLY = "Output the final answer in <answer> </answer>."
THINKING = "Output the thinking process in <think> </think> and final answer in <answer> </answer>."
MIN_OPTIONS = 2


def build_prompt(question: str, options: Sequence[str], think: bool = False) -> str:
    """The user text of an R1-AQA question; the options appear as a Python list repr, with no letters."""
    instruction = THINKING if think else ANSWER_ONLY
    return f"{question} Please choose the answer from the following options: {list(options)}. {instruction}"


def build_messages(question: str, options: Sequence[str], think: bool = False, audio_url: str = "audio") -> list[dict]:
    """One user turn holding the audio then the text, as in the model card.

    The audio entry carries an `audio_url` key because the chat template R1-AQA ships renders the audio placeholder
    only when that key (or `audio`) is present, as in the model card's example; the URL itself is never fetched.
    """
    content = [
        {"type": "audio", "audio_url": audio_url},
        {"type": "text", "text": build_prompt(question, options, think)},
    ]
    return [{"role": "user", "content": content}]


def check_question(question: str, options: Sequence[str], allow_duplicates: bool = False) -> None:
    """Raise InputError when the question cannot be asked as a multiple-choice question.

    allow_duplicates: benchmark files repeat options (MMAU test-mini: 20 items of the 2025-03-25 file, 27 of the
    2025-08-09 one, e.g. ['four', 'nine', 'fourteen', 'fourteen']); evaluation asks them verbatim, as R1-AQA did.
    """
    if not isinstance(question, str) or not question.strip():
        raise InputError("the question is empty")
    if isinstance(options, str):
        raise InputError("options must be a list of strings, not one string")
    if len(options) < MIN_OPTIONS:
        raise InputError(f"give at least {MIN_OPTIONS} options (got {len(options)})")
    blank = [i + 1 for i, option in enumerate(options) if not isinstance(option, str) or not option.strip()]
    if blank:
        raise InputError(f"option {blank[0]} is blank")
    if allow_duplicates:
        return
    seen: dict[str, str] = {}
    for option in options:
        key = option.strip().casefold()
        if key in seen:
            raise InputError(f"duplicate option: {option.strip()!r}")
        seen[key] = option
