"""The answer parser: realistic, messy model outputs mapped to an option (or None), each case with its reason."""

import pytest

from aqa.parsing import extract_answer, extract_think, match_option, parse_answer

SPEAKER = ["Man", "Woman", "Child", "Robot"]
SOUNDS = ["Dog", "Dog barking", "Cat", "Car horn"]
NUMBERS = ["1", "2", "3", "4"]
LETTERS = ["A", "B", "C", "D"]
TEMPO = ["Slow (60 bpm)", "Medium (100 bpm)", "Fast (140 bpm)"]
YES_NO = ["Yes", "No"]
QUOTED = ["It's raining", "It is sunny"]

PARSE_CASES = [
    # (model output, options, expected option, reason)
    ("<answer>Woman</answer>", SPEAKER, "Woman", "the trained format, exact"),
    ("<answer> Woman </answer>", SPEAKER, "Woman", "whitespace inside the tag"),
    ("<answer>\nWoman\n</answer>", SPEAKER, "Woman", "newlines inside the tag"),
    ("<answer>woman</answer>", SPEAKER, "Woman", "case differs"),
    ("<answer>WOMAN</answer>", SPEAKER, "Woman", "upper case"),
    ("<answer>Woman.</answer>", SPEAKER, "Woman", "trailing full stop"),
    ("<answer>'Woman'</answer>", SPEAKER, "Woman", "single quotes"),
    ('<answer>"Woman"</answer>', SPEAKER, "Woman", "double quotes"),
    ("<answer>“Woman”</answer>", SPEAKER, "Woman", "curly quotes"),
    ("<answer>['Woman']</answer>", SPEAKER, "Woman", "a list repr, as the prompt shows the options"),
    ("<answer>B</answer>", SPEAKER, "Woman", "a bare letter: B is the second option"),
    ("<answer>(b)</answer>", SPEAKER, "Woman", "a lower-case letter in parentheses"),
    ("<answer>(2)</answer>", SPEAKER, "Woman", "a 1-based number in parentheses"),
    ("<answer>Option 3</answer>", SPEAKER, "Child", "'Option N'"),
    ("<answer>The answer is C</answer>", SPEAKER, "Child", "a lead-in before the letter"),
    ("<answer>B. Woman</answer>", SPEAKER, "Woman", "letter and text agree"),
    ("<answer>(A) Man</answer>", SPEAKER, "Man", "parenthesised letter and text agree"),
    ("<answer>C. Woman</answer>", SPEAKER, None, "letter and text disagree: ambiguous"),
    ("<answer>It is a woman speaking.</answer>", SPEAKER, "Woman", "one option inside a sentence"),
    ("<answer>A man and a woman</answer>", SPEAKER, None, "two options named: ambiguous"),
    ("<answer>Human</answer>", SPEAKER, None, "'man' inside another word does not count"),
    ("<answer>Dog barking</answer>", SOUNDS, "Dog barking", "exact beats the shorter option it contains"),
    ("<answer>a dog barking loudly</answer>", SOUNDS, "Dog barking", "longest contained option wins over its prefix"),
    ("<answer>dog</answer>", SOUNDS, "Dog", "case-insensitive exact"),
    ("<answer>Elephant</answer>", SOUNDS, None, "names no option"),
    ("<answer></answer>", SPEAKER, None, "empty answer"),
    ("<answer>2</answer>", NUMBERS, "2", "numeric options: the number is the option's text"),
    ("<answer>(2)</answer>", NUMBERS, "2", "numeric option in parentheses"),
    ("<answer>B</answer>", NUMBERS, None, "letters are ambiguous when the options are numbers"),
    ("<answer>B</answer>", LETTERS, "B", "letter options are taken literally"),
    ("<answer>Fast (140 bpm)</answer>", TEMPO, "Fast (140 bpm)", "option with parentheses, exact"),
    ("<answer>fast (140 BPM)</answer>", TEMPO, "Fast (140 bpm)", "option with parentheses, case differs"),
    ("<answer>No</answer>", YES_NO, "No", "short options"),
    ("<answer>It's raining</answer>", QUOTED, "It's raining", "an apostrophe inside the option"),
    ("<answer>Man</answer><answer>Woman</answer>", SPEAKER, "Man", "only the first block counts"),
    (
        "<think>It sounds like a man, or maybe a child.</think>\n<answer>Child</answer>",
        SPEAKER,
        "Child",
        "thinking mentions other options; the answer block decides",
    ),
    ("<think>Low pitch, adult.</think><answer>Man", SPEAKER, "Man", "unclosed answer tag, cut at max tokens"),
    ("Woman", SPEAKER, "Woman", "no tags at all, the bare option"),
    ("The speaker is a woman.", SPEAKER, "Woman", "no tags, one option in a sentence"),
    ("<think>Could be a man or a woman.</think>", SPEAKER, None, "only thinking, no answer: nothing decided"),
    ("", SPEAKER, None, "empty output"),
    ("<answer>E</answer>", SPEAKER, None, "a letter beyond the options"),
    ("<answer>0</answer>", SPEAKER, None, "numbers are 1-based"),
]


@pytest.mark.parametrize("text, options, expected, reason", PARSE_CASES, ids=[case[3] for case in PARSE_CASES])
def test_parse_answer(text, options, expected, reason):
    assert parse_answer(text, options) == expected, reason


def test_there_are_at_least_30_cases():
    assert len(PARSE_CASES) >= 30


EXTRACT_CASES = [
    ("<answer>Man</answer>", "Man", "the block's text"),
    ("<answer>  Man \n</answer>", "Man", "stripped"),
    ("x <answer>A</answer> y <answer>B</answer>", "A", "the first block"),
    ("<answer>Man", None, "an unclosed tag is not a complete block"),
    ("Man", None, "no tag"),
    ("<answer></answer>", "", "an empty block is empty text, not None"),
]


@pytest.mark.parametrize("text, expected, reason", EXTRACT_CASES, ids=[case[2] for case in EXTRACT_CASES])
def test_extract_answer(text, expected, reason):
    assert extract_answer(text) == expected, reason


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think> low voice </think><answer>Man</answer>", "low voice"),
        ("<think>cut off mid-thought", "cut off mid-thought"),
        ("<answer>Man</answer>", None),
    ],
)
def test_extract_think(text, expected):
    assert extract_think(text) == expected


def test_match_option_none_candidate():
    assert match_option(None, SPEAKER) is None
