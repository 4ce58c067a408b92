"""R1-AQA's rewards: pure functions, registered by name; the name is the metric TRL logs (`rewards/<name>/mean`).

Each follows TRL's reward contract: `f(completions, **columns) -> list[float | None]`, one value per completion.
A completion is the generated text, or TRL's conversational form `[{"role": "assistant", "content": text}]`.
The answer is read with `aqa.extract_answer`, the parser evaluation uses, so reward and metric cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from aqa.parsing import extract_answer

RewardFunc = Callable[..., list[float | None]]
REWARDS: dict[str, RewardFunc] = {}

# Exactly one <answer>…</answer> block and nothing around it: the recipe's `re.fullmatch(r"<answer>.*?</answer>")`,
# made strict so that two blocks in a row ("<answer>a</answer><answer>b</answer>") do not count as one.
ONE_ANSWER_BLOCK = re.compile(r"<answer>(?:(?!</?answer>).)*</answer>", re.DOTALL)


def register(func: RewardFunc) -> RewardFunc:
    REWARDS[func.__name__] = func
    return func


def completion_text(completion: str | Sequence[dict]) -> str:
    """The text of one completion, plain or conversational (the last message's content)."""
    return completion if isinstance(completion, str) else str(completion[-1]["content"])


@register
def accuracy_reward(completions: Sequence, answer: Sequence[str], **kwargs) -> list[float | None]:
    """1.0 when the text inside the first `<answer>…</answer>` equals the correct option, else 0.0 (R1-AQA's reward).

    Both sides are stripped; the comparison is case-sensitive and there is no forgiving match, as in the recipe.

    >>> accuracy_reward(["<answer> Dog </answer>", "<answer>dog</answer>", "Dog"], answer=["Dog", "Dog", "Dog"])
    [1.0, 0.0, 0.0]
    """
    return [
        1.0 if extract_answer(completion_text(completion)) == correct.strip() else 0.0
        for completion, correct in zip(completions, answer, strict=True)
    ]


@register
def format_reward(completions: Sequence, **kwargs) -> list[float | None]:
    """1.0 when the whole completion is exactly one `<answer>…</answer>` block, else 0.0 (R1-AQA's reward).

    >>> format_reward(["<answer>Dog</answer>", "It is <answer>Dog</answer>", "<answer>Dog"])
    [1.0, 0.0, 0.0]
    """
    return [1.0 if ONE_ANSWER_BLOCK.fullmatch(completion_text(c)) else 0.0 for c in completions]


def get_reward_funcs(names: Sequence[str]) -> list[RewardFunc]:
    """The registered reward functions with these names, in order; a clear error for an unknown name."""
    unknown = [name for name in names if name not in REWARDS]
    if unknown:
        raise ValueError(f"unknown reward {unknown[0]!r}: choose from {', '.join(sorted(REWARDS))}")
    return [REWARDS[name] for name in names]
