"""The R1-AQA prompt, exactly, and the checks on questions and options."""

import pytest

from aqa.errors import InputError
from aqa.prompt import build_messages, build_prompt, check_question

QUESTION = "Based on the given audio, identify the source of the speaking voice."
OPTIONS = ["Man", "Woman", "Child", "Robot"]


def test_answer_only_prompt_is_r1_aqa_verbatim():
    expected = (
        "Based on the given audio, identify the source of the speaking voice. Please choose the answer from the "
        "following options: ['Man', 'Woman', 'Child', 'Robot']. Output the final answer in <answer> </answer>."
    )
    assert build_prompt(QUESTION, OPTIONS) == expected


def test_thinking_prompt():
    assert build_prompt(QUESTION, OPTIONS, think=True).endswith(
        "['Man', 'Woman', 'Child', 'Robot']. Output the thinking process in <think> </think> and final answer in "
        "<answer> </answer>."
    )


def test_options_use_python_repr():
    """An apostrophe switches Python's repr to double quotes, exactly as R1-AQA's f-string did."""
    assert "[\"It's a dog\", 'A cat']" in build_prompt("Q?", ("It's a dog", "A cat"))


def test_question_is_not_rewritten():
    assert build_prompt("What is in the video?", ["a", "b"]).startswith("What is in the video? Please")


def test_chat_template_renders_audio_then_text(tiny_model):
    text = tiny_model.processor.apply_chat_template(
        build_messages(QUESTION, OPTIONS), add_generation_prompt=True, tokenize=False
    )
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n" + build_prompt(QUESTION, OPTIONS) + "<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


BAD_QUESTIONS = [
    ("", OPTIONS, "question is empty", "empty question"),
    ("   ", OPTIONS, "question is empty", "blank question"),
    ("Q?", [], "at least 2 options", "no options"),
    ("Q?", ["only"], "at least 2 options", "one option"),
    ("Q?", ["a", " "], "option 2 is blank", "a blank option"),
    ("Q?", ["Dog", "Cat", "dog"], "duplicate option", "duplicates differing only in case"),
    ("Q?", "Dog Cat", "not one string", "a string instead of a list"),
]


@pytest.mark.parametrize("question, options, message, reason", BAD_QUESTIONS, ids=[c[3] for c in BAD_QUESTIONS])
def test_check_question_rejects(question, options, message, reason):
    with pytest.raises(InputError, match=message):
        check_question(question, options)


def test_check_question_accepts_two_options():
    check_question("Is it loud?", ["Yes", "No"])
