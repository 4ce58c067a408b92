"""GRPO rewards: table-driven cases, each with the reason it is there.

The expected values of `accuracy_reward` and `format_reward` are R1-AQA's (src/utils/rewards.py), worked out by hand
from its rule: (1) math_verify: `verify(parse(completion), parse("<answer>" + option + "</answer>"))`; math_verify
0.7.0 finds nothing in a bare tag like "<answer>3</answer>", but takes the last number of text such as "10 to 15" or
"about 3", so two such strings with the same last number verify; (2) otherwise the stripped text of the first
`<answer>(.*?)</answer>` match (no DOTALL: a block with a line break does not match), else the whole completion
stripped, must equal the stripped option. Format: `re.fullmatch(r"<answer>.*?</answer>", text, re.DOTALL)`.
"""

from __future__ import annotations

import doctest
import re
import threading

import pytest

import train.rewards
from train.rewards import (
    REWARDS,
    accuracy_reward,
    format_reward,
    get_reward_funcs,
    strict_accuracy_reward,
    strict_format_reward,
)

# (completion, correct option, R1-AQA's accuracy reward, the strict one, why)
ACCURACY_CASES = [
    # tagged
    ("<answer>Dog</answer>", "Dog", 1.0, 1.0, "the option inside the tag"),
    ("<answer> Dog </answer>", "Dog", 1.0, 1.0, "the tag's text is stripped"),
    ("<answer>Dog</answer>", " Dog ", 1.0, 1.0, "the option is stripped too"),
    ("<answer>dog</answer>", "Dog", 0.0, 0.0, "case-sensitive"),
    ("<answer>Dog</answer>", "dog", 0.0, 0.0, "case-sensitive, the other way"),
    ("<answer>Dog.</answer>", "Dog", 0.0, 0.0, "punctuation is part of the answer"),
    ("<answer>B</answer>", "Dog", 0.0, 0.0, "no label match"),
    ("<answer>['Dog']</answer>", "Dog", 0.0, 0.0, "no list-repr match"),
    ("<answer></answer>", "Dog", 0.0, 0.0, "empty answer"),
    ("<ANSWER>Dog</ANSWER>", "Dog", 0.0, 0.0, "the tags are case-sensitive; the whole text is not the option"),
    ("<answer>Sailboat  set sail</answer>", "Sailboat set sail", 0.0, 0.0, "inner spaces are not collapsed"),
    # an option that contains another
    ("<answer>Dog barking</answer>", "Dog", 0.0, 0.0, "a longer option is another option"),
    ("<answer>Dog</answer>", "Dog barking", 0.0, 0.0, "a shorter option is another option"),
    ("Dog barking", "Dog", 0.0, 0.0, "untagged: the whole text must be the option"),
    # untagged: R1-AQA compares the whole completion
    ("Dog", "Dog", 1.0, 0.0, "a bare option earns R1-AQA's reward; the strict one needs the tag"),
    ("  Dog\n", "Dog", 1.0, 0.0, "the whole completion is stripped"),
    ("dog", "Dog", 0.0, 0.0, "bare, wrong case"),
    ("The answer is Dog", "Dog", 0.0, 0.0, "bare sentence: not the option"),
    ("", "Dog", 0.0, 0.0, "empty completion"),
    ("<answer>Dog", "Dog", 0.0, 0.0, "unclosed tag (cut at max tokens): the whole text is compared"),
    ("Dog</answer>", "Dog", 0.0, 0.0, "closing tag only"),
    # multi-line
    ("<answer>\nDog\n</answer>", "Dog", 0.0, 1.0, "a line break inside the block: R1-AQA's regex does not match"),
    ("<answer>\nDog</answer>", "Dog", 0.0, 1.0, "a line break after the opening tag"),
    ("<answer>Dog\n</answer>", "Dog", 0.0, 1.0, "a line break before the closing tag"),
    ("<think>\nmaybe a cat\n</think>\n<answer>Dog</answer>", "Dog", 1.0, 1.0, "a one-line block after lines"),
    ("<answer>Dog</answer>\n", "Dog", 1.0, 1.0, "text after the block does not matter"),
    ("<answer>Cat\n</answer> <answer>Dog</answer>", "Dog", 1.0, 0.0, "the first one-line block is the second block"),
    # repeated blocks
    ("<answer>Cat</answer><answer>Dog</answer>", "Dog", 0.0, 0.0, "only the first block counts"),
    ("<answer>Dog</answer><answer>Cat</answer>", "Dog", 1.0, 1.0, "the first block is right"),
    ("<answer><answer>Dog</answer></answer>", "Dog", 0.0, 0.0, "nested: the first match's text is '<answer>Dog'"),
    ("Dog <answer>Cat</answer>", "Dog", 0.0, 0.0, "a tag present: its text is the answer"),
    ("<think>maybe Cat</think><answer>Dog</answer>", "Dog", 1.0, 1.0, "text before the block does not matter"),
    # numbers: math_verify's pass
    ("<answer>3</answer>", "3", 1.0, 1.0, "a number, equal as strings"),
    ("<answer>3.0</answer>", "3", 0.0, 0.0, "math_verify parses nothing in a bare tag: strings differ"),
    ("<answer>\n3\n</answer>", "3", 0.0, 1.0, "math_verify finds 3 in the completion but nothing in the solution"),
    ("The answer is 3", "3", 0.0, 0.0, "likewise: nothing parsed in '<answer>3</answer>'"),
    ("<answer>3 times</answer>", "3", 0.0, 0.0, "nothing parsed in either tag"),
    ("<answer>10 to 15</answer>", "10 TO 15", 1.0, 0.0, "both parse to 15: math_verify pays a case difference"),
    ("<answer>2.00 to 4.00</answer>", "1.50 to 4.00", 1.0, 0.0, "both end in 4.00: a WRONG range is paid"),
    ("<answer>0:05 - 0:08</answer>", "0:00 - 0:08", 1.0, 0.0, "both parse to 0: a wrong time span is paid"),
    ("<answer>\n0:00 - 0:08\n</answer>", "0:00 - 0:08", 1.0, 1.0, "math_verify pays what the regex misses"),
    ("The answer is 15", "10 to 15", 1.0, 0.0, "an untagged last number is paid"),
    ("<answer>between 10 and 15</answer>", "10 to 15", 0.0, 0.0, "the completion parses to 10, the option to 15"),
    ("<answer>about 3</answer>", "around 3", 1.0, 0.0, "both parse to 3: another option is paid"),
    ("<answer>1 to 3</answer>", "$3$", 1.0, 0.0, "a LaTeX-looking option parses to 3"),
    ("<answer>x^2</answer>", "$x^2$", 0.0, 0.0, "the option parses to x**2, the completion to nothing"),
    ("<answer>0.5</answer>", "50%", 0.0, 0.0, "nothing parsed in either tag"),
    ("<answer>2 cats</answer>", "2 dogs", 0.0, 0.0, "nothing parsed: the strings differ"),
]

# (completion, R1-AQA's format reward, the strict one, why)
FORMAT_CASES = [
    ("<answer>Dog</answer>", 1.0, 1.0, "exactly one block"),
    ("<answer>a\nmultiline answer</answer>", 1.0, 1.0, "line breaks inside the block are fine (DOTALL)"),
    ("<answer></answer>", 1.0, 1.0, "an empty block is still the format"),
    ("The answer is <answer>Dog</answer>", 0.0, 0.0, "text before the block"),
    (" <answer>Dog</answer>", 0.0, 0.0, "even a leading space"),
    ("<answer>Dog</answer>.", 0.0, 0.0, "text after the block"),
    ("<answer>Dog</answer>\n", 0.0, 0.0, "even a trailing newline: fullmatch allows nothing outside"),
    ("<answer>Cat</answer><answer>Dog</answer>", 1.0, 0.0, "two blocks in a row match R1-AQA's pattern"),
    ("<answer>a</answer> <answer>b</answer>", 1.0, 0.0, "two blocks with a space between, likewise"),
    ("<answer>Dog<answer>Cat</answer>", 1.0, 0.0, "a nested opening tag is body text to R1-AQA"),
    ("<answer>Dog</answer></answer>", 1.0, 0.0, "a repeated closing tag likewise"),
    ("<answer>Dog", 0.0, 0.0, "unclosed"),
    ("<think>x</think><answer>Dog</answer>", 0.0, 0.0, "thinking is not the answer-only format"),
    ("<ANSWER>Dog</ANSWER>", 0.0, 0.0, "the tags are case-sensitive"),
    ("", 0.0, 0.0, "empty completion"),
]


# R1-AQA's think-mode format pattern, as its src/utils/rewards.py has it (the line its README says to uncomment for the
# thinking prompt), used with re.fullmatch and re.DOTALL like the answer-only one.
R1_AQA_THINK_PATTERN = r"<think>.*?</think>\s*<answer>.*?</answer>"

# (completion, R1-AQA's think-mode format reward, the strict one, why): rows asked with the thinking prompt
THINK_FORMAT_CASES = [
    ("<think>a dog barks</think><answer>Dog</answer>", 1.0, 1.0, "thinking, then the answer"),
    ("<think>a dog barks</think>\n<answer>Dog</answer>", 1.0, 1.0, "a line break between the blocks (\\s*)"),
    ("<think>\nfirst\nsecond\n</think>\n\n<answer>\nDog\n</answer>", 1.0, 1.0, "lines inside both (DOTALL)"),
    ("<think></think><answer>Dog</answer>", 1.0, 1.0, "empty thinking is still the format"),
    ("<answer>Dog</answer>", 0.0, 0.0, "no thinking: the answer-only format earns nothing in think mode"),
    ("<think>a dog barks</think>", 0.0, 0.0, "no answer"),
    ("<think>a dog</think> so <answer>Dog</answer>", 0.0, 0.0, "words between the blocks"),
    ("<answer>Dog</answer><think>why</think>", 0.0, 0.0, "the wrong order"),
    ("I think <think>x</think><answer>Dog</answer>", 0.0, 0.0, "text before the thinking"),
    ("<think>x</think><answer>Dog</answer>\n", 0.0, 0.0, "a trailing newline: fullmatch allows nothing outside"),
    ("<think>a</think><think>b</think><answer>Dog</answer>", 1.0, 0.0, "two think blocks match the lazy pattern"),
    ("<think>x</think><answer>a</answer><answer>b</answer>", 1.0, 0.0, "two answer blocks, likewise"),
    ("<think>x <answer>Cat</answer></think><answer>Dog</answer>", 1.0, 0.0, "an answer tag inside the thinking"),
    ("<THINK>x</THINK><answer>Dog</answer>", 0.0, 0.0, "the tags are case-sensitive"),
]


@pytest.mark.parametrize(("completion", "original", "strict", "why"), THINK_FORMAT_CASES)
def test_format_rewards_in_thinking_mode_are_r1_aqas_think_pattern(completion, original, strict, why):
    assert (re.fullmatch(R1_AQA_THINK_PATTERN, completion, re.DOTALL) is not None) == bool(original), why
    assert format_reward([completion], think=[True]) == [original], why
    assert strict_format_reward([completion], think=[True]) == [strict], why


def test_each_completion_is_held_to_its_own_rows_format():
    completions = ["<think>x</think><answer>Dog</answer>", "<answer>Dog</answer>"] * 2
    think = [True, True, False, False]
    assert format_reward(completions, think=think) == [1.0, 0.0, 0.0, 1.0]
    assert strict_format_reward(completions, think=think) == [1.0, 0.0, 0.0, 1.0]


def test_the_tables_have_at_least_40_completions():
    assert len(ACCURACY_CASES) + len(FORMAT_CASES) >= 40 and len(ACCURACY_CASES) >= 40


@pytest.mark.parametrize(("completion", "correct", "original", "strict", "why"), ACCURACY_CASES)
def test_accuracy_rewards(completion, correct, original, strict, why):
    assert accuracy_reward([completion], answer=[correct]) == [original], why
    assert strict_accuracy_reward([completion], answer=[correct]) == [strict], why


@pytest.mark.parametrize(("completion", "original", "strict", "why"), FORMAT_CASES)
def test_format_rewards(completion, original, strict, why):
    assert format_reward([completion]) == [original], why
    assert strict_format_reward([completion]) == [strict], why


def test_rewards_accept_trl_conversational_completions_and_extra_columns():
    """TRL passes [{"role": "assistant", "content": ...}] per completion and every dataset column as a keyword."""
    completions = [[{"role": "assistant", "content": "<answer>Dog</answer>"}], [{"role": "assistant", "content": "x"}]]
    columns = {"prompts": [[], []], "options": [["Dog", "Cat"]] * 2, "id": ["1", "2"], "trainer_state": None}
    for reward in REWARDS.values():
        assert reward(completions, answer=["Dog", "Dog"], **columns) == [1.0, 0.0], reward.__name__


def test_accuracy_reward_refuses_to_run_outside_the_main_thread():
    """math_verify's timeout needs the main thread; elsewhere it would silently parse nothing."""
    errors = []

    def call():
        try:
            accuracy_reward(["about 3"], answer=["around 3"])
        except RuntimeError as error:
            errors.append(str(error))

    worker = threading.Thread(target=call)
    worker.start()
    worker.join()
    assert errors and "main thread" in errors[0]


def test_rewards_are_registered_under_their_metric_names():
    assert set(REWARDS) == {"accuracy_reward", "format_reward", "strict_accuracy_reward", "strict_format_reward"}
    assert all(name == func.__name__ for name, func in REWARDS.items())
    assert get_reward_funcs(["format_reward", "accuracy_reward"]) == [format_reward, accuracy_reward]
    with pytest.raises(ValueError, match="unknown reward 'accuracy'.*accuracy_reward, format_reward"):
        get_reward_funcs(["accuracy"])


def test_docstring_examples_run():
    result = doctest.testmod(train.rewards)
    assert result.attempted >= 4 and result.failed == 0
