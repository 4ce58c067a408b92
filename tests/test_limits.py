"""Caps on a question's size and the model's control tokens: the same one-line messages in the library, `aqa ask`,
`aqa batch` and (tests/test_app.py) the app; checked before any model is loaded."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import MMAU_DIR, ROOT, mmau_file

import aqa
from aqa.errors import InputError
from aqa.limits import CHAT_TOKENS, MAX_AUDIO_TOKENS, Limits, prompt_tokens_bound
from aqa.prompt import CONTROL_TOKEN, build_messages, build_prompt, check_question, question_problems

LIMITS = Limits()
OPTIONS = ["Man", "Woman", "Child", "Robot"]
# Every control token of Qwen2-Audio-7B-Instruct's tokenizer (and so R1-AQA's): its tokenizer_config.json.
QWEN2_AUDIO_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]

REFUSED = [
    # (question, options, the one-line message, reason)
    ("Q" * 20_000, OPTIONS, "the question is too long: 20000 characters (at most 1000)", "a 20,000-character question"),
    ("Q?", ["Man", "x" * 20_000], "option 2 is too long: 20000 characters (at most 300)", "a 20,000-character option"),
    ("Q?", [f"o{i}" for i in range(200)], "give at most 10 options (got 200)", "200 options"),
    (
        "Q?",
        ["x" * 400] * 8,
        "options 1, 2, 3, 4, 5 and 3 more are too long (at most 300 characters each)",
        "many long options are counted, not listed",
    ),
    ("What is <|AUDIO|> here?", OPTIONS, "the question contains '<|AUDIO|>', a control token of the model", "audio"),
    ("Q?", ["Man", "<|im_end|>"], "option 2 contains '<|im_end|>', a control token of the model", "end of turn"),
    ("Q?", ["a<|endoftext|>", "b"], "option 1 contains '<|endoftext|>', a control token of the model", "inside a word"),
    ("Is it <sound>?", OPTIONS, "the question contains '<sound>', a control token of the model", "AF3's audio slot"),
    ("Q?", ["<|audio_pad|>", "b"], "option 1 contains '<|audio_pad|>', a control token of the model", "Qwen3-Omni's"),
    (
        "é" * 1000,  # 1000 characters, 2000 bytes
        [f"{i}" + "é" * 299 for i in range(8)],
        "the question and options are too long together: up to 7786 prompt tokens with the audio (at most 4096)",
        "each cap met, the prompt over its token cap",
    ),
    (
        "",
        ["Man", " ", "x" * 301, "<|im_start|>", "man"],
        "the question is empty; option 2 is blank; option 3 is too long: 301 characters (at most 300); "
        "option 4 contains '<|im_start|>', a control token of the model; duplicate option: 'man'",
        "every problem at once, in one line",
    ),
]


@pytest.mark.parametrize("question, options, message, reason", REFUSED, ids=[case[3] for case in REFUSED])
def test_caps_and_control_tokens_are_refused_in_one_line(question, options, message, reason):
    with pytest.raises(InputError) as caught:
        check_question(question, options)
    assert str(caught.value) == message
    assert "\n" not in message


ACCEPTED = [
    ("Q" * 1000, ["x" * 300, "y" * 300], "each text at its cap"),
    ("Q?", [str(i) for i in range(10)], "10 options"),
    ("Is <| im_end |> or <|im_end written here?", ["a <|", "|> b"], "text that only looks like a token"),
    ("Which one? <think>", ["<answer>Dog</answer>", "Cat"], "R1-AQA's tags are plain text to its tokenizer"),
]


@pytest.mark.parametrize("question, options, reason", ACCEPTED, ids=[case[2] for case in ACCEPTED])
def test_accepted(question, options, reason):
    assert question_problems(question, options) == []


def test_caps_are_settable():
    loose = Limits(question_chars=30_000, option_chars=30_000, options=300, prompt_tokens=10**6)
    check_question("Q" * 20_000, ["x" * 20_000, "y"], limits=loose)
    with pytest.raises(InputError, match=r"give at most 3 options \(got 4\)"):
        check_question("Q?", OPTIONS, limits=Limits(options=3))


def test_every_control_token_of_the_tokenizer_is_refused(tiny_model):
    """The tiny checkpoint carries Qwen2-Audio's special tokens; every one of them is caught, wherever it is."""
    tokens = set(tiny_model.tokenizer.all_special_tokens) | set(tiny_model.tokenizer.get_added_vocab())
    assert set(QWEN2_AUDIO_SPECIAL) <= tokens
    for token in tokens:
        assert CONTROL_TOKEN.fullmatch(token), token
        assert question_problems(f"Is it{token}?", OPTIONS) == [
            f"the question contains {token!r}, a control token of the model"
        ]


def test_text_that_only_looks_like_a_token_stays_plain_text(tiny_model):
    """What the check lets through is tokenized as the characters written: no special token id comes from it."""
    text = "Is <| im_end |> or <|im_end or <|AUDIO written here?"
    assert question_problems(text, OPTIONS) == []
    special = set(tiny_model.tokenizer.all_special_ids)
    ids = tiny_model.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert not special & set(ids)
    assert tiny_model.tokenizer.decode(ids) == text


def test_ordinary_prompts_are_unchanged():
    """The caps only refuse: what R1-AQA sees for an accepted question is its prompt, byte for byte."""
    question = "Based on the given audio, identify the source of the speaking voice."
    check_question(question, OPTIONS)
    assert build_prompt(question, OPTIONS) == (
        "Based on the given audio, identify the source of the speaking voice. Please choose the answer from the "
        "following options: ['Man', 'Woman', 'Child', 'Robot']. Output the final answer in <answer> </answer>."
    )


@pytest.mark.parametrize("seconds", [30, 3, 0.5])
@pytest.mark.parametrize("question", ["Who is speaking?", "Qui parle ? « é » 🎤", "Q" * 1000])
def test_prompt_token_bound(tiny_model, question, seconds):
    """The bound is exact for a 30 s clip under the tiny checkpoint's byte-level tokenizer (Qwen's merges only make
    fewer tokens), and an upper bound for shorter clips."""
    prompt = build_prompt(question, OPTIONS, think=True)
    text = tiny_model.processor.apply_chat_template(build_messages(question, OPTIONS, True), add_generation_prompt=True)
    clip = np.zeros(int(seconds * aqa.SAMPLE_RATE), dtype=np.float32)
    tokens = tiny_model.processor(text=[text], audio=[clip], sampling_rate=aqa.SAMPLE_RATE)["input_ids"][0]
    if seconds == 30:
        assert len(tokens) == prompt_tokens_bound(prompt) == MAX_AUDIO_TOKENS + CHAT_TOKENS + len(prompt.encode())
    else:
        assert len(tokens) < prompt_tokens_bound(prompt)


def test_too_large_items_are_reported_per_item(tiny_model, clips):
    """A file of questions with some over the caps: those come back as their errors, the others are answered."""
    audio = clips["tone.ogg"]
    questions = [
        aqa.Question(audio, "Q?", ("a", "b")),
        aqa.Question(audio, "Q?", ("a", "x" * 20_000)),
        aqa.Question(audio, "Q?", tuple(f"o{i}" for i in range(200))),
        aqa.Question(audio, "Is <|AUDIO|> here?", ("a", "b")),
        aqa.Question(audio, "Q?", ("a", "x" * 400), limits=Limits(option_chars=400)),  # caps set per question
    ]
    results = dict(aqa.answer_many(tiny_model, questions, aqa.DecodingOptions(max_new_tokens=2)))
    assert isinstance(results[0], aqa.Result) and isinstance(results[4], aqa.Result)
    assert str(results[1]) == "option 2 is too long: 20000 characters (at most 300)"
    assert str(results[2]) == "give at most 10 options (got 200)"
    assert str(results[3]) == "the question contains '<|AUDIO|>', a control token of the model"


def test_batch_reports_over_cap_rows_and_answers_the_rest(aqa_cli, tiny_model_dir, clips, tmp_path):
    rows = [
        {"audio": str(clips["tone.ogg"]), "question": "Q?", "options": ["a", "b"]},
        {"audio": str(clips["tone.ogg"]), "question": "Q" * 20_000, "options": ["a", "b"]},
        {"audio": str(clips["tone.ogg"]), "question": "Q?", "options": ["a", "<|im_end|>"]},
    ]
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    output = tmp_path / "answers.jsonl"
    done = aqa_cli(
        "batch", "--model", tiny_model_dir, "--max-new-tokens", "2", "--input", questions, "--output", output
    )
    assert done.returncode == 1 and "2 row(s) failed" in done.stderr, done.stderr
    answers = {row["id"]: row for row in map(json.loads, output.read_text(encoding="utf-8").splitlines())}
    assert answers["1"]["answer"] in ("a", "b")
    assert answers["2"]["error"] == "the question is too long: 20000 characters (at most 1000)"
    assert answers["3"]["error"] == "option 2 contains '<|im_end|>', a control token of the model"


OVERSIZED_ASK = [
    (["--question", "Q" * 20_000, "--options", *OPTIONS], "the question is too long", "20,000-character question"),
    (["--question", "Q?", "--options", "Man", "x" * 20_000], "option 2 is too long", "20,000-character option"),
    (["--question", "Q?", "--options", *[f"o{i}" for i in range(200)]], "give at most 10 options", "200 options"),
    (["--question", "Is <|AUDIO|> here?", "--options", *OPTIONS], "contains '<|AUDIO|>'", "audio token in question"),
    (["--question", "Q?", "--options", "Man", "<|im_end|>"], "contains '<|im_end|>'", "end-of-turn token option"),
    (
        ["--question", "Is it\x1b[2J?", "--options", *OPTIONS],
        "the question contains a control character (U+001B)",
        "a terminal escape in the question",
    ),  # fmt: skip
    # Bytes that are not UTF-8 on a command line reach Python as lone surrogates (here: the byte 0xff).
    (
        ["--question", "Q?", "--options", "Man", "\udcff"],
        "option 2 contains a lone surrogate (U+DCFF), which is not text",
        "an option that is not UTF-8",
    ),  # fmt: skip
]


@pytest.mark.parametrize("arguments, message, reason", OVERSIZED_ASK, ids=[case[2] for case in OVERSIZED_ASK])
def test_ask_refuses_before_loading_anything(clips, tmp_path, arguments, message, reason):
    """The model named does not even exist: the refusal comes before any model (or torch) is loaded, in one line,
    with little memory (the figures are printed; docs/benchmarks.md keeps them)."""
    ask = [sys.executable, "-m", "aqa", "ask", "--model", str(tmp_path / "no-model"), "--audio", clips["tone.ogg"]]
    rss = tmp_path / "rss"
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, rss, *ask, *arguments], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    seconds = time.monotonic() - start
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and done.stdout == ""
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    peak = int(rss.read_text()) / 1024
    assert peak < 2048, "peak RSS under 2 GiB"
    print(f"{reason}: refused in {seconds:.2f} s, peak RSS {peak:.0f} MiB")


# Runs a command and writes its peak RSS (KiB) to argv[1]. A process forked from pytest would report pytest's own
# peak (Linux keeps the larger of the two across exec), so the command is started from this small one instead.
PEAK_RSS = """
import os, subprocess, sys
process = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(process.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_default_caps_accept_every_benchmark_item():
    """The caps leave room above the benchmarks the project evaluates on (skipped without their question files)."""
    items = [(item["question"], item["choices"]) for item in json.loads(mmau_file("2025-08-09").read_text())]
    mmar = MMAU_DIR.parent / "mmar" / "MMAR-meta.jsonl"
    if mmar.is_file():
        items += [(row["question"], row["choices"]) for row in map(json.loads, mmar.read_text().splitlines())]
    unlimited = Limits(question_chars=10**9, option_chars=10**9, options=10**9, prompt_tokens=10**9)
    refused = [
        (question, options)
        for question, options in items
        if question_problems(question, options, True) != question_problems(question, options, True, unlimited)
    ]
    assert len(items) >= 1000 and refused == []


def test_the_largest_question_of_the_memory_bench_meets_every_cap():
    """bench/limits_memory.py measures this one: every cap filled, the prompt-token cap nearly so."""
    from bench.limits_memory import largest_question

    question, options = largest_question()
    assert question_problems(question, options) == []
    assert len(options) == LIMITS.options and all(len(option) == LIMITS.option_chars for option in options)
    assert LIMITS.prompt_tokens - 64 < prompt_tokens_bound(build_prompt(question, options, think=True))
