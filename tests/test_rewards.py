"""R1-AQA's rewards: table-driven cases, each with the reason it is there."""

from __future__ import annotations

import doctest

import pytest

import train.rewards
from train.rewards import REWARDS, accuracy_reward, format_reward, get_reward_funcs

# (completion, correct option, expected reward, why)
ACCURACY_CASES = [
    ("<answer>Dog</answer>", "Dog", 1.0, "exact option inside the tag"),
    ("<answer> Dog \n</answer>", "Dog", 1.0, "whitespace inside the tag is stripped"),
    ("<answer>Dog</answer>", " Dog ", 1.0, "the correct option is stripped too"),
    ("<answer>dog</answer>", "Dog", 0.0, "case-sensitive, as in the recipe"),
    ("<answer>B</answer>", "Dog", 0.0, "no forgiving label match: the reward is exact"),
    ("<answer>['Dog']</answer>", "Dog", 0.0, "no forgiving list-repr match"),
    ("Dog", "Dog", 0.0, "no answer tag at all"),
    ("<answer>Dog", "Dog", 0.0, "unclosed tag (cut at max tokens)"),
    ("<answer>Cat</answer><answer>Dog</answer>", "Dog", 0.0, "only the first block counts"),
    ("<think>maybe Cat</think><answer>Dog</answer>", "Dog", 1.0, "text before the block does not matter"),
    ("<answer>Dog barking</answer>", "Dog", 0.0, "a longer option is a different option"),
    ("<answer></answer>", "Dog", 0.0, "empty answer"),
]

# (completion, expected reward, why)
FORMAT_CASES = [
    ("<answer>Dog</answer>", 1.0, "exactly one block"),
    ("<answer>a\nmultiline answer</answer>", 1.0, "newlines inside the block are fine"),
    ("<answer></answer>", 1.0, "an empty block is still the format"),
    ("The answer is <answer>Dog</answer>", 0.0, "text before the block"),
    ("<answer>Dog</answer>.", 0.0, "text after the block"),
    ("<answer>Dog</answer>\n", 0.0, "even a trailing newline: the recipe's fullmatch allows nothing outside"),
    ("<answer>Cat</answer><answer>Dog</answer>", 0.0, "two blocks are not one block"),
    ("<answer>Dog<answer>Cat</answer>", 0.0, "a nested opening tag"),
    ("<answer>Dog", 0.0, "unclosed"),
    ("<think>x</think><answer>Dog</answer>", 0.0, "thinking is not the answer-only format"),
    ("", 0.0, "empty completion"),
]


@pytest.mark.parametrize(("completion", "correct", "expected", "why"), ACCURACY_CASES)
def test_accuracy_reward(completion, correct, expected, why):
    assert accuracy_reward([completion], answer=[correct]) == [expected], why


@pytest.mark.parametrize(("completion", "expected", "why"), FORMAT_CASES)
def test_format_reward(completion, expected, why):
    assert format_reward([completion]) == [expected], why


def test_rewards_accept_trl_conversational_completions_and_extra_columns():
    """TRL passes [{"role": "assistant", "content": ...}] per completion and every dataset column as a keyword."""
    completions = [[{"role": "assistant", "content": "<answer>Dog</answer>"}], [{"role": "assistant", "content": "x"}]]
    columns = {"prompts": [[], []], "options": [["Dog", "Cat"]] * 2, "id": ["1", "2"], "trainer_state": None}
    assert accuracy_reward(completions, answer=["Dog", "Dog"], **columns) == [1.0, 0.0]
    assert format_reward(completions, answer=["Dog", "Dog"], **columns) == [1.0, 0.0]


def test_rewards_are_registered_under_their_metric_names():
    assert REWARDS == {"accuracy_reward": accuracy_reward, "format_reward": format_reward}
    assert get_reward_funcs(["format_reward", "accuracy_reward"]) == [format_reward, accuracy_reward]
    with pytest.raises(ValueError, match="unknown reward 'accuracy'.*accuracy_reward, format_reward"):
        get_reward_funcs(["accuracy"])


def test_docstring_examples_run():
    result = doctest.testmod(train.rewards)
    assert result.attempted >= 2 and result.failed == 0
