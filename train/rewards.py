"""GRPO rewards: pure functions, registered by name; the name is the metric TRL logs (`rewards/<name>/mean`).

Each follows TRL's reward contract: `f(completions, **columns) -> list[float | None]`, one value per completion.
A completion is the generated text, or TRL's conversational form `[{"role": "assistant", "content": text}]`.

`accuracy_reward` and `format_reward` are R1-AQA's own, rule for rule (xiaomi-research/r1-aqa, src/utils/rewards.py,
with math-verify 0.7.0 as its requirements.txt pins it), so that a run on this code optimises what the paper's run
optimised. They are lenient in ways that matter: a bare `Dog` with no tag earns accuracy, a math_verify pass can pay a
wrong option whose last number matches the right one's ("2.00 to 4.00" for "1.50 to 4.00"), and two answer blocks in
a row count as the format. A row asked with the thinking prompt (`--think true`, its `think` column) is held to the
original's think-mode format, `<think>…</think>` then `<answer>…</answer>`, as R1-AQA's authors switch it on for that
prompt. `strict_accuracy_reward` and `strict_format_reward` are the stricter rules (tag required, the parser
inference uses; exactly one block), selectable with `--reward_funcs`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence

from math_verify import parse, verify

from aqa.parsing import extract_answer, extract_r1_aqa_answer

RewardFunc = Callable[..., list[float | None]]
REWARDS: dict[str, RewardFunc] = {}

# R1-AQA's format pattern (its answer reading is aqa.parsing.extract_r1_aqa_answer): DOTALL and a lazy body inside a
# full match, so "<answer>a</answer><answer>b</answer>" matches as one block whose body is "a</answer><answer>b".
R1_AQA_FORMAT = re.compile(r"<answer>.*?</answer>", re.DOTALL)
# R1-AQA's think-mode pattern: the line its rewards.py has commented out under the answer-only one, which its README
# ("If you want to see how to think", commit 2850ffb) says to uncomment with the thinking prompt.
R1_AQA_THINK_FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
# Exactly one <answer>…</answer> block and nothing around it: the strict format; in thinking mode, exactly one
# <think>…</think> block before it, white space between them.
ONE_ANSWER_BLOCK = re.compile(r"<answer>(?:(?!</?answer>).)*</answer>", re.DOTALL)
ONE_THINK_THEN_ANSWER = re.compile(
    r"<think>(?:(?!</?think>|</?answer>).)*</think>\s*" + ONE_ANSWER_BLOCK.pattern, re.DOTALL
)


def register(func: RewardFunc) -> RewardFunc:
    REWARDS[func.__name__] = func
    return func


def thinking(think: Sequence[bool] | None, count: int) -> list[bool]:
    """Per completion, whether its row was asked with the thinking prompt (the `think` column; absent: none was)."""
    return [bool(value) for value in think] if think is not None else [False] * count


def completion_text(completion: str | Sequence[dict]) -> str:
    """The text of one completion, plain or conversational (the first message's content, as R1-AQA reads it)."""
    return completion if isinstance(completion, str) else str(completion[0]["content"])


def math_verified(text: str, solution: str) -> bool:
    """R1-AQA's first pass: math_verify finds the same value in the completion and in the solution.

    math_verify bounds its parsing time with SIGALRM, which only the main thread may set; elsewhere it logs an error
    and parses nothing, which would silently drop this pass, so it is refused instead. (TRL calls synchronous reward
    functions in the main thread.)
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("accuracy_reward must run in the main thread (math_verify times its parsing with SIGALRM)")
    try:
        return float(verify(parse(text), parse(solution))) > 0
    except Exception:  # as in R1-AQA: anything math_verify cannot handle leaves the reward to the string match
        return False


@register
def accuracy_reward(completions: Sequence, answer: Sequence[str], **kwargs) -> list[float | None]:
    """R1-AQA's accuracy reward, exactly: 1.0 or 0.0 per completion.

    The solution is `<answer>{correct option}</answer>`, as R1-AQA's data loader writes it. 1.0 when math_verify
    finds the same value in the completion and the solution; otherwise 1.0 when `extract_r1_aqa_answer` of both is
    the same string (case-sensitive). So `Dog` without a tag earns 1.0, and `<answer>\\nDog\\n</answer>` earns 0.0.

    >>> accuracy_reward(["<answer> Dog </answer>", "Dog", "<answer>dog</answer>"], answer=["Dog", "Dog", "Dog"])
    [1.0, 1.0, 0.0]
    """
    rewards = []
    for completion, correct in zip(completions, answer, strict=True):
        text, solution = completion_text(completion), f"<answer>{correct}</answer>"
        right = math_verified(text, solution) or extract_r1_aqa_answer(text) == extract_r1_aqa_answer(solution)
        rewards.append(1.0 if right else 0.0)
    return rewards


@register
def format_reward(completions: Sequence, think: Sequence[bool] | None = None, **kwargs) -> list[float | None]:
    """R1-AQA's format reward, exactly: 1.0 when the whole completion matches `<answer>.*?</answer>` (DOTALL), or,
    for a row asked with the thinking prompt (`think` True), `<think>.*?</think>\\s*<answer>.*?</answer>`.

    >>> format_reward(["<answer>Dog</answer>", "<answer>a</answer><answer>b</answer>", "It is <answer>Dog</answer>"])
    [1.0, 1.0, 0.0]
    >>> format_reward(["<think>a dog barks</think>\\n<answer>Dog</answer>", "<answer>Dog</answer>"], think=[True, True])
    [1.0, 0.0]
    """
    patterns = [R1_AQA_THINK_FORMAT if row else R1_AQA_FORMAT for row in thinking(think, len(completions))]
    return [1.0 if pattern.fullmatch(completion_text(c)) else 0.0 for c, pattern in zip(completions, patterns)]


@register
def strict_accuracy_reward(completions: Sequence, answer: Sequence[str], **kwargs) -> list[float | None]:
    """1.0 when the text inside the first `<answer>…</answer>` (line breaks allowed) equals the correct option.

    Both sides are stripped; case-sensitive; the tag is required and there is no numeric match. The answer is read
    with `aqa.extract_answer`, the parser inference uses.

    >>> strict_accuracy_reward(["<answer>\\nDog\\n</answer>", "Dog"], answer=["Dog", "Dog"])
    [1.0, 0.0]
    """
    return [
        1.0 if extract_answer(completion_text(completion)) == correct.strip() else 0.0
        for completion, correct in zip(completions, answer, strict=True)
    ]


@register
def strict_format_reward(completions: Sequence, think: Sequence[bool] | None = None, **kwargs) -> list[float | None]:
    """1.0 when the whole completion is exactly one `<answer>…</answer>` block (for a row asked with the thinking
    prompt: exactly one `<think>…</think>` block, then that), else 0.0.

    >>> strict_format_reward(["<answer>Dog</answer>", "<answer>a</answer><answer>b</answer>"])
    [1.0, 0.0]
    """
    patterns = [ONE_THINK_THEN_ANSWER if row else ONE_ANSWER_BLOCK for row in thinking(think, len(completions))]
    return [1.0 if pattern.fullmatch(completion_text(c)) else 0.0 for c, pattern in zip(completions, patterns)]


def get_reward_funcs(names: Sequence[str]) -> list[RewardFunc]:
    """The registered reward functions with these names, in order; a clear error for an unknown name."""
    unknown = [name for name in names if name not in REWARDS]
    if unknown:
        raise ValueError(f"unknown reward {unknown[0]!r}: choose from {', '.join(sorted(REWARDS))}")
    return [REWARDS[name] for name in names]
