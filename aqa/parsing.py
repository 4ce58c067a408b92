"""The one answer parser: from the model's text to one of the options, shared by the app, evaluation and rewards."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
# R1-AQA's own reading (its test script and its accuracy reward): no DOTALL, so a block holding a line break is none.
R1_AQA_ANSWER = re.compile(r"<answer>(.*?)</answer>")
THINK_BLOCK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)
ANY_TAG = re.compile(r"</?(?:answer|think)>")
# Characters that wrap an answer without being part of it: quotes, brackets, list reprs, final punctuation.
WRAPPERS = " \t\n\r\"'`“”‘’[](){}<>.,;:!?*"
# A bare label: "B", "(B)", "b)", "[2]", "Option 2", "the answer is (C)".
LABEL = re.compile(
    r"^(?:(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)\s*(?:is\s*)?[:\-]?\s*)?"  # optional lead-in
    r"[(\[]?([a-z]|\d{1,2})[)\].:]?$"  # the label itself
)
# A label followed by option text: "B. Woman", "(2) Woman", "C: a dog".
LABELLED = re.compile(r"^[(\[]?([a-z]|\d{1,2})[)\].:]\s*(.+)$", re.DOTALL)


def extract_answer(text: str) -> str | None:
    """The stripped text inside the first complete `<answer>…</answer>` block, or None when there is none."""
    match = ANSWER_BLOCK.search(text)
    return match.group(1).strip() if match else None


def extract_r1_aqa_answer(text: str) -> str:
    """R1-AQA's reading of an answer: the stripped text of the first one-line `<answer>…</answer>`, else the whole
    text, stripped (its MMAU test script's prediction, and what its accuracy reward compares)."""
    match = R1_AQA_ANSWER.search(text)
    return match.group(1).strip() if match else text.strip()


def extract_think(text: str) -> str | None:
    """The stripped text inside the first `<think>` block (closed or cut off), or None."""
    match = THINK_BLOCK.search(text)
    return match.group(1).strip() if match else None


def parse_answer(text: str, options: Sequence[str]) -> str | None:
    """The option the model's text names, or None when it names none or is ambiguous.

    The first `<answer>` block is read; without one, an unclosed `<answer>` (output cut at max tokens) or else the
    text outside `<think>` is read instead, so a bare "Woman" still counts.
    """
    candidate = extract_answer(text)
    if candidate is None:
        opened = text.find("<answer>")
        candidate = text[opened + len("<answer>") :] if opened >= 0 else THINK_BLOCK.sub("", text)
    return match_option(candidate, options)


def match_option(candidate: str | None, options: Sequence[str]) -> str | None:
    """Map a candidate answer to exactly one option: exact first, then forgiving rules, each only if unambiguous.

    Rules are tried strictest first; the first rule that finds anything decides (one match wins, several mean
    ambiguous and give None), so a weak rule never overrides a strong one.
    """
    if candidate is None:
        return None
    candidate = ANY_TAG.sub(" ", candidate).strip()
    if not candidate:
        return None
    for rule in RULES:
        found = rule(candidate, options)
        if found:
            return found[0] if len(set(found)) == 1 else None
    return None


def normalize(text: str) -> str:
    """Casefolded, whitespace collapsed, wrapping quotes/brackets/punctuation removed: "['Woman']." -> "woman"."""
    return " ".join(text.casefold().split()).strip(WRAPPERS)


def exact(candidate: str, options: Sequence[str]) -> list[str]:
    return [option for option in options if option.strip() == candidate]


def normalized(candidate: str, options: Sequence[str]) -> list[str]:
    key = normalize(candidate)
    return [option for option in options if normalize(option) == key]


def by_label(candidate: str, options: Sequence[str]) -> list[str]:
    """A letter (A = first) or a 1-based number, unless the options themselves look like labels."""
    if labels_are_ambiguous(options):
        return []
    match = LABEL.match(normalize(candidate))
    index = label_index(match.group(1)) if match else None
    return [options[index]] if index is not None and index < len(options) else []


def labelled_text(candidate: str, options: Sequence[str]) -> list[str]:
    """ "B. Woman": the text must name an option, and the label, if it names one, the same option."""
    match = LABELLED.match(normalize(candidate))
    if not match:
        return []
    named = normalized(match.group(2), options)
    index = label_index(match.group(1))
    if len(named) == 1 and not labels_are_ambiguous(options) and index is not None and index < len(options):
        return named if options[index] == named[0] else named + [options[index]]
    return named


def contained(candidate: str, options: Sequence[str]) -> list[str]:
    """Options that appear as whole words in a longer answer ("It is a woman speaking" -> "Woman").

    An option found only inside a longer option that is also found ("dog" in "dog barking") does not count.
    """
    text = normalize(candidate)
    spans = {}
    for option in options:
        key = normalize(option)
        hit = re.search(rf"(?<!\w){re.escape(key)}(?!\w)", text) if key else None
        if hit:
            spans[option] = hit.span()
    return [
        option
        for option, (start, end) in spans.items()
        if not any(s <= start and end <= e and (e - s) > (end - start) for s, e in spans.values())
    ]


def label_index(label: str) -> int | None:
    if label.isdigit():
        return int(label) - 1 if int(label) >= 1 else None
    return ord(label) - ord("a")


def labels_are_ambiguous(options: Sequence[str]) -> bool:
    """True when an option is itself a single letter or a number, so "B" or "2" could be the option's text."""
    return any(re.fullmatch(r"[a-z]|\d+", normalize(option)) for option in options)


RULES: tuple[Callable[[str, Sequence[str]], list[str]], ...] = (exact, normalized, labelled_text, by_label, contained)
