"""The one R1-AQA prompt builder, shared by inference, evaluation and training."""

from __future__ import annotations

import re
from collections.abc import Sequence

from aqa.errors import InputError, kind_of
from aqa.limits import Limits, prompt_tokens_bound

# The exact instructions R1-AQA was trained and evaluated with (its model card, and src/test.py and src/dataset in
# github.com/xiaomi-research/r1-aqa). The released model uses ANSWER_ONLY; THINKING is the paper's prompt 3, offered
# as an option.
ANSWER_ONLY = "Output the final answer in <answer> </answer>."
THINKING = "Output the thinking process in <think> </think> and final answer in <answer> </answer>."
MIN_OPTIONS = 2
# Qwen's control tokens are all written <|name|> (<|im_start|>, <|im_end|>, <|endoftext|>, <|AUDIO|>, <|audio_bos|>...);
# Audio Flamingo 3's audio placeholder is <sound>.
CONTROL_TOKEN = re.compile(r"<\|[^\s<>|]+\|>|<sound>")
MAX_LISTED = 5  # problems of one kind named in a message; the rest are counted
# C0 controls but tab, newline and carriage return (pasted text keeps those), and DEL.
CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


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


def check_question(
    question: str, options: Sequence[str], allow_duplicates: bool = False, limits: Limits = Limits()
) -> None:
    """Raise InputError, naming every problem in one line, when the question cannot be asked as a multiple-choice
    question within `limits`."""
    problems = question_problems(question, options, allow_duplicates, limits)
    if problems:
        raise InputError("; ".join(problems))


def question_problems(
    question: str, options: Sequence[str], allow_duplicates: bool = False, limits: Limits = Limits()
) -> list[str]:
    """Every reason the question cannot be asked, one short line each (none: it can be asked).

    allow_duplicates: benchmark files repeat options (MMAU test-mini: 20 items of the 2025-03-25 file, 27 of the
    2025-08-09 one, e.g. ['four', 'nine', 'fourteen', 'fourteen']); evaluation asks them verbatim, as R1-AQA did.
    Questions and options come from JSON too (the app's API, `aqa batch` files): a number, an object, a lone
    surrogate or a NUL is refused here like any other problem, never met later as a crash.
    """
    problems = []
    if question is None or isinstance(question, str) and not question.strip():
        problems.append("the question is empty")
    elif not isinstance(question, str):
        problems.append(f"the question must be text, not {kind_of(question)}")
    elif len(question) > limits.question_chars:
        problems.append(f"the question is too long: {len(question)} characters (at most {limits.question_chars})")
    elif problem := content_problem(question):
        problems.append(f"the question {problem}")
    options = [] if options is None else options
    if isinstance(options, str):
        return [*problems, "options must be a list of strings, not one string"]
    if not isinstance(options, list | tuple):
        return [*problems, f"options must be a list of strings, not {kind_of(options)}"]
    if len(options) < MIN_OPTIONS:
        problems.append(f"give at least {MIN_OPTIONS} options (got {len(options)})")
    elif len(options) > limits.options:  # each option is not looked at: a request may send millions
        return [*problems, f"give at most {limits.options} options (got {len(options)})"]
    texts = {i + 1: option for i, option in enumerate(options) if isinstance(option, str) and option.strip()}
    others = {i + 1: option for i, option in enumerate(options) if option is not None and not isinstance(option, str)}
    blank = [number for number in range(1, len(options) + 1) if number not in texts and number not in others]
    if blank:
        problems.append(f"{numbered('option', blank)} {'is' if len(blank) == 1 else 'are'} blank")
    not_text = [f"option {number} must be text, not {kind_of(option)}" for number, option in others.items()]
    problems += not_text[:MAX_LISTED]
    long = [number for number, option in texts.items() if len(option) > limits.option_chars]
    if len(long) == 1:
        size = len(texts[long[0]])
        problems.append(f"option {long[0]} is too long: {size} characters (at most {limits.option_chars})")
    elif long:
        problems.append(f"{numbered('option', long)} are too long (at most {limits.option_chars} characters each)")
    short = {number: option for number, option in texts.items() if number not in long}
    flagged = [f"option {number} {problem}" for number, option in short.items() if (problem := content_problem(option))]
    problems += flagged[:MAX_LISTED]
    if not allow_duplicates:
        problems += duplicate_problems(list(short.values()))
    if not problems:
        bound = prompt_tokens_bound(build_prompt(question, options, think=True))
        if bound > limits.prompt_tokens:
            problems.append(
                f"the question and options are too long together: up to {bound} prompt tokens with the audio "
                f"(at most {limits.prompt_tokens})"
            )
    return problems


def is_text(question, options) -> bool:
    """Whether `question` is a string and `options` a list or tuple of strings: what a Question must hold before
    anything can measure, sort or check it (question_problems says what is wrong otherwise)."""
    return isinstance(question, str) and isinstance(options, list | tuple) and all(isinstance(o, str) for o in options)


def content_problem(text: str) -> str | None:
    """What in `text` cannot go into a prompt ("contains ..."), if anything: see text_problem and control_token."""
    if problem := text_problem(text):
        return problem
    if token := control_token(text):
        return f"contains {token!r}, a control token of the model"
    return None


def text_problem(text: str) -> str | None:
    """Why `text` cannot go into a prompt, if it cannot: a lone surrogate (Python strings may hold one, from JSON's
    "\\ud800" or undecodable bytes on a command line, but UTF-8 cannot encode it, so the tokenizer would fail), or a
    control character other than tab, newline and carriage return (a NUL, an escape...: invisible, never a question's
    wording)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"contains a lone surrogate (U+{ord(text[error.start]):04X}), which is not text"
    if found := CONTROL_CHARACTER.search(text):
        return f"contains a control character (U+{ord(found.group()):04X})"
    return None


def control_token(text: str) -> str | None:
    """The first of the model's control tokens (`<|im_end|>`, `<|AUDIO|>`...) written in `text`, if any.

    A tokenizer reads these strings as the tokens themselves wherever they occur, so user text holding one could end
    the user's turn or add an audio slot: such text is refused rather than asked.
    """
    found = CONTROL_TOKEN.search(text)
    return found.group() if found else None


def duplicate_problems(options: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    repeated: dict[str, str] = {}
    for option in options:
        key = option.strip().casefold()
        if key in seen:
            repeated.setdefault(key, option.strip())
        seen.add(key)
    return [f"duplicate option: {option!r}" for option in list(repeated.values())[:MAX_LISTED]]


def numbered(noun: str, numbers: Sequence[int]) -> str:
    """'option 3', 'options 3 and 5', 'options 1, 2, 3, 4, 5 and 195 more'."""
    if len(numbers) == 1:
        return f"{noun} {numbers[0]}"
    shown = [str(number) for number in numbers[:MAX_LISTED]]
    rest = len(numbers) - len(shown)
    if rest:
        return f"{noun}s {', '.join(shown)} and {rest} more"
    return f"{noun}s {', '.join(shown[:-1])} and {shown[-1]}"
