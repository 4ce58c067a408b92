"""The fast decoding path and streaming on the tiny model (CPU): a static cache (and the decode step compiled, where
the CPU allows it in test time) writes token for token what eager `generate` writes, greedy or sampled under a seed,
batched or one at a time; a stream adds up to the final text and can be stopped, leaving the model ready."""

from __future__ import annotations

import math
import threading
from dataclasses import replace

import pytest
import torch
from answering_model import fit_tiny_answers

import aqa
from aqa import generation
from aqa.bench import OPTIONS, QUESTION, write_clips
from aqa.options import DecodingOptions, Question

QUESTIONS = [
    ("long_45s.wav", "What do you hear?", ("Noise", "Music", "Speech")),
    ("short_50ms.wav", "Is there a beep?", ("Yes", "No")),
    ("speech_22k.wav", "Who is speaking?", ("Man", "Woman", "Child", "Robot")),
    ("stereo_44k.wav", "How many tones?", ("One", "Two", "Three", "Four", "Five")),
]


def questions_of(clips) -> list[Question]:
    return [Question(clips[name], text, options) for name, text, options in QUESTIONS]


def answers(model, questions, decoding, batch_size):
    results = dict(aqa.answer_many(model, questions, decoding, batch_size=batch_size))
    return [results[index] for index in range(len(questions))]


@pytest.fixture(scope="module")
def static_model(tiny_model):
    return replace(tiny_model, decoder="static")


@pytest.fixture(scope="module")
def double_model(tiny_model_dir):
    """The tiny model in float64: the two cache layouts sum attention in different orders, so their logits differ in
    the last bits of float32 (~1e-7), which can move a sampled token across a top-p boundary once in a long while;
    in float64 such a flip is out of reach, and what is compared is the decoding itself."""
    model = aqa.load_model(str(tiny_model_dir), precision="fp32", device="cpu")
    model.hf.to(torch.float64)
    return model


@pytest.mark.parametrize(
    "decoding",
    [DecodingOptions(max_new_tokens=24), DecodingOptions(sample=True, seed=7, max_new_tokens=24)],
    ids=["greedy", "sampled with a seed"],
)
def test_static_cache_writes_what_eager_generate_writes(double_model, clips, decoding):
    """In the same batches: token for token. Greedy text is also the same batched and one at a time (sampled text
    is not: a batch is seeded from its questions, and rows draw from one random stream)."""
    questions = questions_of(clips)
    static_model = replace(double_model, decoder="static")
    for batch_size in (4, 1):  # batched, and one at a time
        eager = answers(double_model, questions, decoding, batch_size)
        for fast, slow in zip(answers(static_model, questions, decoding, batch_size), eager):
            assert fast.raw == slow.raw and len(fast.raw) > 0
            assert fast.probabilities == pytest.approx(slow.probabilities, abs=1e-5)
    if not decoding.sample:
        batched, alone = answers(static_model, questions, decoding, 4), answers(static_model, questions, decoding, 1)
        assert [result.raw for result in batched] == [result.raw for result in alone]


def test_static_lengths_come_in_steps(static_model, clips, monkeypatch):
    """A static cache holds a multiple of STATIC_LENGTH_STEP positions: prompts of other lengths share its shape."""
    sizes, real = [], generation.static_copy

    def spy(model, cache, length):
        static = real(model, cache, length)
        sizes.append(static.layers[0].max_cache_len)
        return static

    monkeypatch.setattr(generation, "static_copy", spy)
    for name in ("short_50ms.wav", "tone.flac"):  # prompts of different lengths (50 ms and 1.5 s of audio)
        aqa.answer(static_model, clips[name], "What is it?", ["A", "B"], DecodingOptions(max_new_tokens=8))
    assert sizes == [generation.STATIC_LENGTH_STEP] * 2, "both fit the same static length"
    aqa.answer(static_model, clips["long_45s.wav"], "What is it?", ["A", "B"], DecodingOptions(max_new_tokens=8))
    assert sizes[-1] % generation.STATIC_LENGTH_STEP == 0 and sizes[-1] > sizes[0], "30 s of audio needs more"


def test_compiled_decoding_writes_what_eager_writes(tiny_model, clips, monkeypatch):
    """torch.compile (inductor's CPU code here; CUDA graphs on a GPU) around the decode step changes no token."""
    compiled = replace(tiny_model, decoder="compiled")
    configs, real = [], tiny_model.hf.get_compiled_call
    monkeypatch.setattr(tiny_model.hf, "get_compiled_call", lambda config: configs.append(config) or real(config))
    questions = questions_of(clips)[1:3]
    decoding = DecodingOptions(max_new_tokens=12)
    for fast, slow in zip(answers(compiled, questions, decoding, 2), answers(tiny_model, questions, decoding, 2)):
        assert fast.raw == slow.raw
    assert len(configs) == 1 and configs[0].mode == "default", "generate compiled the decode step (once)"


@pytest.fixture(scope="module")
def answering_model(tiny_model_dir, tmp_path_factory):
    directory = fit_tiny_answers(tiny_model_dir, tmp_path_factory.mktemp("answering"))
    return aqa.load_model(str(directory), precision="fp32", device="cpu")


def test_answers_read_off_scoring_are_unchanged(answering_model, tmp_path):
    """With the static decoder too, the answer greedy decoding would write is read off the scoring pass; a batch
    mixing such an item and one that must be generated gives what eager decoding gives."""
    clips = write_clips(tmp_path, 2, 10.0)
    questions = [Question(clips[0], QUESTION, OPTIONS), Question(clips[1], "Which?", ("Cat", "Rain"))]
    fast = answers(replace(answering_model, decoder="static"), questions, DecodingOptions(), 2)
    slow = answers(answering_model, questions, DecodingOptions(), 2)
    assert [result.raw for result in fast] == [result.raw for result in slow]
    assert fast[0].raw == f"<answer>{OPTIONS[0]}</answer>"


# --- streaming ----------------------------------------------------------------------------------------------------

THINK = DecodingOptions(think=True, max_new_tokens=64)


@pytest.mark.parametrize("model_name", ["tiny_model", "static_model"])
def test_the_stream_adds_up_to_the_final_text(model_name, request, clips):
    model = request.getfixturevalue(model_name)
    stop = threading.Event()
    items = list(aqa.answer_stream(model, clips["tone.flac"], "What is it?", ["A tone", "Speech"], THINK, stop))
    assert not stop.is_set(), "a stream read to its end is not a stopped one (the options are scored after it)"
    *pieces, result = items
    assert isinstance(result, aqa.Result) and all(isinstance(piece, str) for piece in pieces)
    assert len(pieces) >= 2, "the text arrives in several pieces"
    assert "".join(pieces) == result.raw
    assert result.raw == aqa.answer(model, clips["tone.flac"], "What is it?", ["A tone", "Speech"], THINK).raw
    assert math.isclose(sum(result.probabilities.values()), 1.0, abs_tol=1e-9)


def test_an_answer_read_off_scoring_comes_as_one_piece(answering_model, tmp_path):
    [clip] = write_clips(tmp_path, 1, 10.0)
    *pieces, result = aqa.answer_stream(answering_model, clip, QUESTION, OPTIONS)
    assert pieces == [f"<answer>{OPTIONS[0]}</answer>"] and result.raw == pieces[0]


def test_a_stopped_stream_ends_early_and_the_model_answers_the_next_question(tiny_model, clips):
    stop = threading.Event()
    long_budget = DecodingOptions(think=True, max_new_tokens=400)
    pieces = []
    for item in aqa.answer_stream(tiny_model, clips["tone.flac"], "What?", ["A", "B"], long_budget, stop=stop):
        if isinstance(item, str):
            pieces.append(item)
            if len(pieces) == 2:
                stop.set()  # what the app's Stop button does
        else:
            result = item
    full = aqa.answer(tiny_model, clips["tone.flac"], "What?", ["A", "B"], long_budget)
    assert "".join(pieces) == result.raw and full.raw.startswith(result.raw)
    assert len(result.raw) < len(full.raw), "generation ended when asked"
    assert math.isclose(sum(result.probabilities.values()), 1.0, abs_tol=1e-9)

    closed = aqa.answer_stream(tiny_model, clips["tone.ogg"], "What?", ["A", "B"], long_budget)
    next(closed)
    closed.close()  # a reader that goes away (a cancelled request) ends generation too
    again = aqa.answer(tiny_model, clips["speech.mp3"], "Who?", ["Man", "Woman"], DecodingOptions(max_new_tokens=8))
    assert again.raw == aqa.answer(tiny_model, clips["speech.mp3"], "Who?", ["Man", "Woman"],
                                   DecodingOptions(max_new_tokens=8)).raw  # fmt: skip


def test_bad_input_raises_before_the_stream_starts(tiny_model, clips):
    with pytest.raises(aqa.AudioError, match="empty file"):
        next(aqa.answer_stream(tiny_model, clips["empty.wav"], "What?", ["A", "B"]))


# --- choosing the decoder -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "precision, on_cpu, message",
    [("4bit", None, "bitsandbytes layers cannot be compiled"), ("fp32", True, "a CPU lookup cannot run in a CUDA")],
)
def test_compile_refuses_what_cannot_be_compiled(tiny_model_dir, precision, on_cpu, message):
    with pytest.raises(aqa.ModelError, match=message):
        aqa.load_model(str(tiny_model_dir), precision=precision, device="cpu", embeddings_on_cpu=on_cpu, compile=True)


def test_the_default_decoder_is_eager_on_the_cpu_and_needs_no_warm_up(tiny_model):
    assert tiny_model.decoder == "eager" and generation.warm_up(tiny_model) == 0.0


def test_warm_up_compiles_the_decode_step(tiny_model, monkeypatch):
    """Warm-up runs `generate` with the compiled decoder at the static lengths of a 10 s and a 30 s question."""
    calls = []
    real = tiny_model.hf.generate

    def counted(*args, **kwargs):
        calls.append((kwargs["cache"].layers[0].max_cache_len, kwargs["generation_config"].compile_config))
        return real(*args, **kwargs)

    monkeypatch.setattr(tiny_model.hf, "generate", counted)
    monkeypatch.setattr(generation, "compile_config", lambda device: None)  # count, do not compile (slow on CPU)
    assert generation.warm_up(replace(tiny_model, decoder="compiled"), prompt_lengths=(340, 840), tokens=2) > 0
    assert [size for size, _ in calls] == [1024, 1536]
