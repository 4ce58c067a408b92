"""The R1-AQA prompt, exactly, and the checks on questions and options."""

import numpy as np
import pytest

import aqa
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


MALFORMED = [
    # (question, options, the whole one-line message, reason): what JSON (the app's API, `aqa batch`) can send
    (42, OPTIONS, "the question must be text, not a number", "a number for the question"),
    ({"text": "Q?"}, OPTIONS, "the question must be text, not an object", "an object for the question"),
    (None, OPTIONS, "the question is empty", "no question (JSON null)"),
    ("Q?", 42, "options must be a list of strings, not a number", "options as a number"),
    ("Q?", {"a": 1, "b": 2}, "options must be a list of strings, not an object", "options as an object, not its keys"),
    (
        "Q?",
        ["Dog", 7, True, None],
        "option 4 is blank; option 2 must be text, not a number; option 3 must be text, not true or false",
        "options of other types",
    ),  # fmt: skip
    ("Is it \ud800?", OPTIONS, "the question contains a lone surrogate (U+D800), which is not text", "lone surrogate"),
    ("Q?", ["Dog", "\udcff"], "option 2 contains a lone surrogate (U+DCFF), which is not text", "undecodable byte"),
    ("Q?", ["Dog", "\x00"], "option 2 contains a control character (U+0000)", "an option that is a NUL"),
    ("Is it\x1b[2J loud?", OPTIONS, "the question contains a control character (U+001B)", "a terminal escape"),
    (
        "Q?",
        ["a\x07", "b\x7f", "c"],
        "option 1 contains a control character (U+0007); option 2 contains a control character (U+007F)",
        "each option named",
    ),  # fmt: skip
    (7, {"x": 1}, "the question must be text, not a number; options must be a list of strings, not an object", "both"),
]


@pytest.mark.parametrize("question, options, message, reason", MALFORMED, ids=[c[3] for c in MALFORMED])
def test_malformed_text_is_refused_in_one_line(question, options, message, reason):
    with pytest.raises(InputError) as raised:
        check_question(question, options)
    assert str(raised.value) == message, reason
    str(raised.value).encode("utf-8")  # the message itself can be printed and logged anywhere


def test_tabs_and_line_breaks_are_text():
    check_question("Listen.\tWhich one?\r\nPick one.", ["a\tb", "c\nd"])


@pytest.mark.parametrize("question, options, message, reason", MALFORMED, ids=[c[3] for c in MALFORMED])
def test_the_library_refuses_malformed_text_before_touching_the_model(question, options, message, reason):
    """aqa.answer sorts and measures questions before answering: a question that is not text is refused when it is
    made, the rest when it is checked; either way an InputError, before the model is used (here: there is none)."""
    with pytest.raises(InputError) as raised:
        aqa.answer(None, np.zeros(16000, np.float32), question, options)
    assert str(raised.value) == message, reason
