"""Greedy answers read off the scoring pass: exactly what generation would write, on a tiny model that answers.

The random tiny model writes gibberish, so the shortcut never applies to it (tests/test_decoding.py covers that
path). Here the tiny checkpoint is first fine-tuned to answer the bench's question with its first option and stop,
as a trained R1-AQA does, so the shortcut applies to it, and its output is checked against plain greedy generation.
"""

import copy

import pytest
import torch
from answering_model import fit_tiny_answers

import aqa
from aqa import answering, inputs, prefill, scoring
from aqa.answering import scores_first
from aqa.bench import OPTIONS, QUESTION, write_clips
from aqa.generation import plain_greedy
from aqa.options import DecodingOptions, Question
from aqa.prompt import build_messages


@pytest.fixture(scope="module")
def answering_model(tiny_model_dir, tmp_path_factory):
    directory = fit_tiny_answers(tiny_model_dir, tmp_path_factory.mktemp("answering"))
    return aqa.load_model(str(directory), precision="fp32", device="cpu")


@pytest.fixture(scope="module")
def bench_clips(tmp_path_factory):
    return write_clips(tmp_path_factory.mktemp("bench-clips"), 2, 10.0)


@pytest.fixture
def generated_rows(monkeypatch):
    """The batch size of every `generate` call: [] means the text was read off the scoring pass."""
    calls, real = [], answering.generate_text

    def spy(model, inputs, cache, options, *streaming):
        calls.append(inputs["input_ids"].shape[0])
        return real(model, inputs, cache, options, *streaming)

    monkeypatch.setattr(answering, "generate_text", spy)
    return calls


def greedy_generation(model, path, question, options, max_new_tokens=256):
    """Plain greedy generation of the model card's recipe (no repetition penalty), the reference for the shortcut."""
    text = model.processor.apply_chat_template(
        build_messages(question, options, audio_url=str(path)), add_generation_prompt=True, tokenize=False
    )
    inputs = model.processor(text=text, audio=[aqa.load_audio(path)], sampling_rate=16000, return_tensors="pt")
    ids = model.hf.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, repetition_penalty=1.0)
    return model.processor.batch_decode(ids[:, inputs.input_ids.shape[1] :], skip_special_tokens=True)[0]


def test_answer_read_off_scoring_equals_greedy_generation(answering_model, bench_clips, generated_rows):
    result = aqa.answer(answering_model, bench_clips[0], QUESTION, OPTIONS)
    assert generated_rows == [], "the scoring pass showed the greedy answer: nothing was generated"
    assert (
        result.raw
        == f"<answer>{OPTIONS[0]}</answer>"
        == greedy_generation(answering_model, bench_clips[0], QUESTION, OPTIONS)
    )
    assert (result.answer, result.answer_source) == (OPTIONS[0], "text")
    assert result.probabilities[OPTIONS[0]] > 0.5


def test_only_the_items_without_a_greedy_option_are_generated(answering_model, bench_clips, generated_rows):
    """The fitted model still writes the bench's answer when it is not an option: that item alone is generated."""
    questions = [Question(bench_clips[0], QUESTION, OPTIONS), Question(bench_clips[1], "Which?", ("Cat", "Rain"))]
    batched = dict(aqa.answer_many(answering_model, questions, batch_size=2))
    assert generated_rows == [1]
    for index, question in enumerate(questions):
        alone = aqa.answer(answering_model, question.audio, question.text, question.options)
        expected = greedy_generation(answering_model, question.audio, question.text, question.options)
        assert batched[index].raw == alone.raw == expected
        for option, p in alone.probabilities.items():
            assert batched[index].probabilities[option] == pytest.approx(p, abs=1e-5)


def test_a_budget_too_small_for_the_answer_generates(answering_model, bench_clips, generated_rows):
    """Greedy output cut by max_new_tokens is not the whole option: generation writes the cut text."""
    result = aqa.answer(answering_model, bench_clips[0], QUESTION, OPTIONS, DecodingOptions(max_new_tokens=5))
    assert generated_rows == [1]
    assert result.raw == greedy_generation(answering_model, bench_clips[0], QUESTION, OPTIONS, max_new_tokens=5)


MODES = [
    (DecodingOptions(), True, "greedy answer mode"),
    (DecodingOptions(sample=True), False, "sampling: the text is drawn, not the argmax"),
    (DecodingOptions(think=True), False, "thinking mode: the text starts with reasoning"),
    (DecodingOptions(score=False), False, "no probabilities wanted: no scoring pass to read"),
    (DecodingOptions(generate=False), False, "no text wanted"),
]


@pytest.mark.parametrize("options, expected, reason", MODES, ids=[reason for *_, reason in MODES])
def test_scores_first_only_in_greedy_answer_mode(tiny_model, options, expected, reason):
    assert scores_first(tiny_model, options) is expected, reason


CHECKPOINT_SETTINGS = [
    ({}, True, "the tiny checkpoint's sampling settings do not touch greedy decoding"),
    ({"no_repeat_ngram_size": 3}, False, "a ban on repeats changes the argmax"),
    ({"min_new_tokens": 40}, False, "a minimum length forbids the end token"),
    ({"suppress_tokens": [5]}, False, "suppressed tokens"),
    ({"bad_words_ids": [[5]]}, False, "banned words"),
    ({"top_p": 0.1, "temperature": 0.2}, True, "sampling settings are ignored by greedy decoding"),
]


@pytest.mark.parametrize(
    "settings, expected, reason", CHECKPOINT_SETTINGS, ids=[reason for *_, reason in CHECKPOINT_SETTINGS]
)
def test_plain_greedy_reads_what_generate_merges_from_the_checkpoint(
    tiny_model, monkeypatch, settings, expected, reason
):
    config = copy.deepcopy(tiny_model.hf.generation_config)
    for name, value in settings.items():
        setattr(config, name, value)
    monkeypatch.setattr(tiny_model.hf, "generation_config", config)
    assert plain_greedy(tiny_model, DecodingOptions()) is expected, reason


def test_scoring_pass_flags_the_greedy_option(answering_model, bench_clips):
    """The flag is the argmax check itself: the fitted answer is flagged, the other options are not."""
    batch = inputs.prepare_batch(answering_model, [Question(bench_clips[0], QUESTION, OPTIONS)], think=False)
    encoded = inputs.to_device(answering_model, batch.inputs)
    with torch.inference_mode():
        cache = prefill.prefill(answering_model, encoded)
        scores = scoring.score_options(answering_model, encoded, cache, [OPTIONS], [""], think=False)
    [tokens] = scores.greedy
    assert answering_model.tokenizer.decode(tokens) == f"<answer>{OPTIONS[0]}</answer>"
