"""Answering on the tiny model: equal to the model card's recipe, batched equal to one-at-a-time, honest scores."""

import math
import threading

import numpy as np
import pytest
import soundfile as sf
import torch

import aqa
from aqa import scoring
from aqa.answering import make_result
from aqa.audio import SAMPLE_RATE, load_audio
from aqa.errors import AudioError, InputError
from aqa.inputs import Prepared
from aqa.options import DecodingOptions, Question, Timings
from aqa.prompt import build_messages
from aqa.windows import window_spans

QUESTION = "Based on the given audio, identify the source of the speaking voice."
OPTIONS = ["Man", "Woman", "Child", "Robot"]


def model_card_inputs(model, path, question=QUESTION, options=OPTIONS, think=False):
    """The model card's recipe (processor + chat template), with transformers 5's `audio=` keyword."""
    texts = model.processor.apply_chat_template(
        build_messages(question, options, think, audio_url=str(path)), add_generation_prompt=True, tokenize=False
    )
    audio = [load_audio(path)]
    return model.processor(text=texts, audio=audio, sampling_rate=16000, return_tensors="pt", padding=True)


def model_card_generate(model, inputs, **kwargs):
    ids = model.hf.generate(**inputs, max_new_tokens=256, **kwargs)
    return model.processor.batch_decode(
        ids[:, inputs.input_ids.size(1) :], skip_special_tokens=True, clean_up_tokenization_spaces=False
    )[0]


def test_greedy_equals_model_card_recipe(tiny_model, clips):
    """Greedy means argmax with no repetition penalty, whatever the checkpoint's generation config says."""
    path = clips["speech_16k_mono.wav"]
    expected = model_card_generate(
        tiny_model, model_card_inputs(tiny_model, path), do_sample=False, repetition_penalty=1.0
    )
    result = aqa.answer(tiny_model, path, QUESTION, OPTIONS)
    assert result.raw == expected and len(expected) > 0


def test_sample_equals_model_card_default_generate(tiny_model, clips):
    """--sample uses the checkpoint's generation config, like the card's plain `generate(**inputs)`."""
    path = clips["speech_16k_mono.wav"]
    inputs = model_card_inputs(tiny_model, path)
    torch.manual_seed(123)
    expected = model_card_generate(tiny_model, inputs)
    torch.manual_seed(123)
    result = aqa.answer(tiny_model, path, QUESTION, OPTIONS, DecodingOptions(sample=True))
    assert result.raw == expected


def full_sequence_probabilities(model, path, options, reasoning=None):
    """Reference scoring without any sharing: one full forward (audio + prompt [+ reasoning] + answer) per option."""
    inputs = model_card_inputs(model, path, QUESTION, options, think=reasoning is not None)
    prefix = model.tokenizer(reasoning or "", add_special_tokens=False, return_tensors="pt").input_ids
    scores = []
    for option in options:
        answer_ids = model.tokenizer(f"<answer>{option}</answer>", add_special_tokens=False, return_tensors="pt")
        ids = torch.cat([inputs.input_ids, prefix.to(inputs.input_ids.dtype), answer_ids.input_ids], dim=1)
        mask = torch.ones_like(ids)
        with torch.no_grad():
            logits = model.hf(
                input_ids=ids,
                attention_mask=mask,
                input_features=inputs.input_features,
                feature_attention_mask=inputs.feature_attention_mask,
            ).logits
        n = answer_ids.input_ids.shape[1]
        logprobs = torch.log_softmax(logits[0, -n - 1 : -1].double(), -1)
        scores.append(logprobs.gather(-1, answer_ids.input_ids[0, :, None]).sum().item())
    return dict(zip(options, torch.softmax(torch.tensor(scores), 0).tolist()))


def test_probabilities_equal_unshared_scoring(tiny_model, clips):
    options = ["Dog", "Dog barking", "A cat", "Rain on a roof"]
    path = clips["tone_8k.wav"]
    result = aqa.answer(tiny_model, path, QUESTION, options)
    expected = full_sequence_probabilities(tiny_model, path, options)
    assert list(result.probabilities) == options
    for option in options:
        assert result.probabilities[option] == pytest.approx(expected[option], abs=1e-4)


def test_probabilities_cover_options_and_sum_to_one(tiny_model, clips):
    options = ["Yes", "No", "Maybe"]
    result = aqa.answer(tiny_model, clips["tone.flac"], "Is it a tone?", options)
    assert list(result.probabilities) == options
    assert math.isclose(sum(result.probabilities.values()), 1.0, abs_tol=1e-9)
    assert all(0.0 <= p <= 1.0 for p in result.probabilities.values())


def batch_questions(clips):
    return [
        Question(clips["long_45s.wav"], "What do you hear?", ("Noise", "Music", "Speech")),
        Question(clips["short_50ms.wav"], "Is there a beep?", ("Yes", "No")),
        Question(clips["speech_22k.wav"], QUESTION, tuple(OPTIONS)),
        Question(clips["stereo_44k.wav"], "How many tones?", ("One", "Two", "Three", "Four", "Five")),
        Question(clips["silence.wav"], "Is it silent?", ("Yes", "No")),
    ]


def test_batched_greedy_equals_one_at_a_time(tiny_model, clips):
    questions = batch_questions(clips)
    decoding_options = DecodingOptions(max_new_tokens=24)
    batched = dict(aqa.answer_many(tiny_model, questions, decoding_options, batch_size=4))
    assert sorted(batched) == list(range(len(questions)))
    for index, question in enumerate(questions):
        alone = aqa.answer(tiny_model, question.audio, question.text, question.options, decoding_options)
        assert batched[index].raw == alone.raw, question.audio
        for option in question.options:
            assert batched[index].probabilities[option] == pytest.approx(alone.probabilities[option], abs=1e-4)


def test_scoring_in_small_chunks_gives_the_same_numbers(tiny_model, clips, monkeypatch):
    questions = batch_questions(clips)[:3]
    decoding_options = DecodingOptions(generate=False)
    whole = dict(aqa.answer_many(tiny_model, questions, decoding_options, batch_size=3))
    monkeypatch.setattr(scoring, "SCORING_LOGITS_BYTES", 1)  # one row per chunk of logits
    chunked = dict(aqa.answer_many(tiny_model, questions, decoding_options, batch_size=3))
    for index in whole:
        for option, p in whole[index].probabilities.items():
            assert chunked[index].probabilities[option] == pytest.approx(p, abs=1e-5)


def test_bad_items_come_back_as_errors_in_place(tiny_model, clips):
    questions = [
        Question(clips["tone.ogg"], "Tone?", ("Yes", "No")),
        Question(clips["empty.wav"], "Tone?", ("Yes", "No")),
        Question(clips["tone.ogg"], "Tone?", ("Yes", "yes")),
        Question(clips["tone_8k.wav"], "", ("Yes", "No")),
    ]
    results = dict(aqa.answer_many(tiny_model, questions, DecodingOptions(max_new_tokens=8), batch_size=4))
    assert isinstance(results[0], aqa.Result)
    assert isinstance(results[1], AudioError) and "empty file" in str(results[1])
    assert isinstance(results[2], InputError) and "duplicate" in str(results[2])
    assert isinstance(results[3], InputError) and "question is empty" in str(results[3])


def test_answer_raises_on_bad_input(tiny_model, clips):
    with pytest.raises(AudioError, match="truncated"):
        aqa.answer(tiny_model, clips["truncated.wav"], "Q?", ["a", "b"])


def test_long_clip_is_answered_on_its_first_30_seconds_and_says_so(tiny_model, clips):
    result = aqa.answer(tiny_model, clips["long_45s.wav"], "What is it?", ["Noise", "Music"])
    assert result.duration == pytest.approx(45.0, abs=0.01)
    assert result.note and "45.0 s" in result.note and "first 30 s" in result.note
    first_30 = load_audio(clips["long_45s.wav"])[: 30 * SAMPLE_RATE]
    same = aqa.answer(tiny_model, first_30, "What is it?", ["Noise", "Music"])
    assert same.raw == result.raw and same.note is None


@pytest.mark.parametrize("name", ["short_50ms.wav", "silence.wav", "stereo_44k.wav"])
def test_edge_clips_are_answered(tiny_model, clips, name):
    result = aqa.answer(tiny_model, clips[name], "What is it?", ["Tone", "Silence"], DecodingOptions(max_new_tokens=8))
    assert result.answer in ("Tone", "Silence") and result.note is None


def test_microphone_tuple(tiny_model):
    rate, seconds = 44100, 1.5
    wave = (np.sin(np.linspace(0, 2 * np.pi * 440 * seconds, int(rate * seconds))) * 20000).astype(np.int16)
    result = aqa.answer(tiny_model, (rate, np.stack([wave, wave], 1)), "Tone?", ["Yes", "No"])
    assert result.duration == pytest.approx(seconds, abs=0.01)


def test_fallback_to_probabilities_when_text_names_no_option(tiny_model, clips):
    """The random tiny model writes gibberish, so the answer is the most probable option, and it says so."""
    result = aqa.answer(tiny_model, clips["tone.flac"], "What?", ["Alpha", "Beta", "Gamma"])
    assert result.answer_source == "probabilities"
    assert result.answer == max(result.probabilities, key=result.probabilities.get)


def test_skipping_generation_answers_from_probabilities(tiny_model, clips):
    result = aqa.answer(tiny_model, clips["tone.flac"], "What?", ["Alpha", "Beta"], DecodingOptions(generate=False))
    assert result.raw == "" and result.answer_source == "probabilities" and result.timings.generation >= 0


def test_thinking_mode(tiny_model, clips):
    result = aqa.answer(
        tiny_model, clips["tone.flac"], "What?", ["Alpha", "Beta"], DecodingOptions(think=True, max_new_tokens=16)
    )
    assert math.isclose(sum(result.probabilities.values()), 1.0, abs_tol=1e-9)


def prepared(options, seconds=1.0):
    return Prepared(Question("x.wav", "Q?", options), np.zeros(int(seconds * SAMPLE_RATE), np.float32), 0.0)


RESULT_CASES = [
    ("<answer>Woman</answer>", {"Man": 0.9, "Woman": 0.1}, "Woman", "text", "the text wins over the probabilities"),
    ("gibberish", {"Man": 0.9, "Woman": 0.1}, "Man", "probabilities", "no option named: the most probable"),
    ("<think>hmm</think><answer>Man", {"Man": 0.2, "Woman": 0.8}, "Man", "text", "an unclosed tag still names one"),
    ("gibberish", {}, None, "none", "neither text nor probabilities"),
]


@pytest.mark.parametrize(
    "text, probabilities, expected, source, reason", RESULT_CASES, ids=[c[4] for c in RESULT_CASES]
)
def test_make_result_chooses_the_answer(text, probabilities, expected, source, reason):
    result = make_result(prepared(("Man", "Woman")), text, probabilities, Timings(), 30.0)
    assert (result.answer, result.answer_source) == (expected, source), reason


def test_result_is_frozen(tiny_model, clips):
    result = aqa.answer(tiny_model, clips["tone.flac"], "What?", ["Alpha", "Beta"], DecodingOptions(max_new_tokens=4))
    with pytest.raises(AttributeError):
        result.answer = "Beta"
    assert set(vars(result.timings)) == {"audio", "features", "generation", "scoring"}
    assert result.timings.total > 0


def test_4bit_on_cpu(tiny_model_dir, clips):
    """NF4 on the language model only; encoder, projector and head stay unquantized (bitsandbytes skip list)."""
    model = aqa.load_model(str(tiny_model_dir), precision="4bit", device="cpu")
    kinds = {name: type(module).__name__ for name, module in model.hf.named_modules()}
    assert kinds["model.language_model.layers.0.mlp.up_proj"] == "Linear4bit"
    assert kinds["model.audio_tower.layers.0.fc1"] == "Linear"
    assert kinds["model.multi_modal_projector.linear"] == "Linear"
    assert kinds["lm_head"] == "Linear"
    result = aqa.answer(model, clips["speech.mp3"], QUESTION, OPTIONS, DecodingOptions(max_new_tokens=8))
    assert result.answer in OPTIONS and math.isclose(sum(result.probabilities.values()), 1.0, abs_tol=1e-6)


def test_embeddings_in_host_memory_answer_the_same(tiny_model_dir, tiny_model, clips):
    """The 4/8-bit GPU default, HostEmbedding, here with the CPU as its target: every path (prefill, option
    scoring, generation) goes through it and gives the same numbers."""
    from aqa.model import HostEmbedding

    hosted = aqa.load_model(str(tiny_model_dir), precision="fp32", device="cpu")
    language_model = hosted.hf.model.language_model
    language_model.embed_tokens = HostEmbedding(language_model.embed_tokens, torch.device("cpu"))
    assert hosted.hf.get_input_embeddings() is language_model.embed_tokens
    expected, result = (
        aqa.answer(model, clips["speech.mp3"], QUESTION, OPTIONS, DecodingOptions(max_new_tokens=12))
        for model in (tiny_model, hosted)
    )
    assert result.raw == expected.raw
    for option, probability in expected.probabilities.items():
        assert result.probabilities[option] == pytest.approx(probability, abs=1e-6)


def test_not_enough_memory_is_a_clear_error(tiny_model_dir, monkeypatch):
    from aqa import model as model_module

    monkeypatch.setattr(model_module, "available_memory", lambda device: 1024)
    with pytest.raises(aqa.ModelError, match=r"not enough RAM for this model in fp32: about 0\.0 GiB of weights"):
        aqa.load_model(str(tiny_model_dir), precision="fp32", device="cpu")


def test_unknown_precision(tiny_model_dir):
    with pytest.raises(aqa.ModelError, match="unknown precision 'int3'"):
        aqa.load_model(str(tiny_model_dir), precision="int3", device="cpu")


WINDOW_CASES = [
    # (seconds, spans, reason)
    (75.0, [(0.0, 30.0), (25.0, 55.0), (45.0, 75.0)], "every 25 s, the last ending with the clip"),
    (30.0, [(0.0, 30.0)], "a 30 s clip is one window"),
    (12.5, [(0.0, 12.5)], "a short clip too"),
    (54.0, [(0.0, 30.0), (24.0, 54.0)], "two windows overlapping by more than 5 s"),
    (55.0, [(0.0, 30.0), (25.0, 55.0)], "exactly two"),
]


@pytest.mark.parametrize("seconds, spans, reason", WINDOW_CASES, ids=[case[2] for case in WINDOW_CASES])
def test_window_spans(seconds, spans, reason):
    assert window_spans(seconds) == spans, reason


def test_a_long_clip_answered_window_by_window(tiny_model, tmp_path):
    """75 s: three windows covering 0-75 s, each answered as that part of the clip alone would be, and the answer
    the option with the highest mean probability."""
    rate = 16000
    samples = np.concatenate([np.sin(2 * np.pi * f * np.arange(25 * rate) / rate) for f in (220, 440, 880)])
    path = tmp_path / "long_75s.wav"
    sf.write(path, (0.3 * samples).astype(np.float32), rate)
    options = ["Low", "Middle", "High"]
    decoding = DecodingOptions(max_new_tokens=6, long_audio="windows")
    result = aqa.answer(tiny_model, path, "Which pitch?", options, decoding)
    assert [(w.start, w.end) for w in result.windows] == [(0.0, 30.0), (25.0, 55.0), (45.0, 75.0)]
    loaded = load_audio(path)
    for window in result.windows:
        alone = aqa.answer(tiny_model, loaded[int(window.start * rate) : int(window.end * rate)], "Which pitch?",
                           options, DecodingOptions(max_new_tokens=6))  # fmt: skip
        assert window.raw == alone.raw
        assert window.probabilities == pytest.approx(alone.probabilities, abs=1e-5)
    mean = {o: sum(w.probabilities[o] for w in result.windows) / 3 for o in options}
    assert result.probabilities == pytest.approx(mean) and result.answer == max(mean, key=mean.get)
    assert (result.answer_source, result.duration) == ("windows", pytest.approx(75.0))
    assert "3 windows" in result.note and result.to_dict()["windows"][2]["start"] == 45.0
    # In a batch beside an ordinary question, and streamed: the same
    pair = [Question(path, "Which pitch?", tuple(options)), Question(loaded[:rate], "Which pitch?", tuple(options))]
    batched = dict(aqa.answer_many(tiny_model, pair, decoding))
    assert batched[0].raw == result.raw and not batched[1].windows
    *pieces, streamed = aqa.answer_stream(tiny_model, path, "Which pitch?", options, decoding)
    assert "".join(pieces) == streamed.raw == result.raw and pieces[0] == "[0-30 s] "
    stop = threading.Event()
    items = []
    for item in aqa.answer_stream(tiny_model, path, "Which pitch?", options, decoding, stop=stop):
        items.append(item)
        stop.set()  # at the first piece: the first window ends at once, the others are not begun
    stopped = items[-1]
    assert [(w.start, w.end) for w in stopped.windows] == [(0.0, 30.0)] and stopped.answer in options


def test_thinking_mode_scores_options_after_the_shared_reasoning(tiny_model, clips):
    """In thinking mode each option is scored after the model's reasoning, which is run once and shared by the
    options: the probabilities equal a full forward pass per option over prompt + reasoning + answer."""
    options = ["Dog", "Dog barking", "Rain"]
    path = clips["tone_8k.wav"]
    decoding = DecodingOptions(think=True, max_new_tokens=24)
    result = aqa.answer(tiny_model, path, QUESTION, options, decoding)
    reasoning = result.raw.split("<answer>")[0]
    assert reasoning, "the random model writes something before any <answer>"
    expected = full_sequence_probabilities(tiny_model, path, options, reasoning)
    for option in options:
        assert result.probabilities[option] == pytest.approx(expected[option], abs=1e-4)
