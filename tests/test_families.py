"""Every model family on its tiny checkpoint: the published chat template, honest probabilities, batching, thinking,
streaming, long clips, precisions, evaluation, and one-line refusals of what a family cannot do."""

from __future__ import annotations

import json
import math
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import ROOT
from jinja2.sandbox import ImmutableSandboxedEnvironment
from test_mmau import made_up_records, synthesise

import aqa
from aqa.cli.main import main
from aqa.errors import ModelError
from aqa.eval.score import official_match
from aqa.families import FAMILIES, family_named
from aqa.options import DecodingOptions, Question
from aqa.prompt import build_messages
from aqa.random_weights import build_random_model, build_tiny_checkpoint
from aqa.windows import window_spans

FIXTURES = ROOT / "tests" / "fixtures" / "chat_templates"
QUESTION = "Based on the given audio, identify the source of the sound."
OPTIONS = ["Dog", "Dog barking", "A cat", "Rain on a roof"]
PROMPT = aqa.build_prompt(QUESTION, OPTIONS)
NAMES = list(FAMILIES)
# The published template of each family (tests/fixtures/chat_templates/README.md says where each was read), and
# R1-AQA's question as each renders it: the same user text in each family's own wrapping.
TEMPLATES = {
    "qwen2-audio": "qwen2-audio.jinja",
    "qwen2.5-omni": "qwen2.5-omni.jinja",
    "qwen3-omni": "qwen3-omni-thinking.jinja",
    "audio-flamingo-3": "audio-flamingo-3.jinja",
}
RENDERED = {
    "qwen2-audio": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n{prompt}<|im_end|>\n<|im_start|>assistant\n",
    "qwen2.5-omni": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<|audio_bos|><|AUDIO|><|audio_eos|>{prompt}<|im_end|>\n<|im_start|>assistant\n",
    "qwen3-omni": "<|im_start|>user\n<|audio_start|><|audio_pad|><|audio_end|>{prompt}<|im_end|>\n"
    "<|im_start|>assistant\n",
    "audio-flamingo-3": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<sound>{prompt}<|im_end|>\n<|im_start|>assistant\n",
}


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory) -> dict[str, Path]:
    """A tiny checkpoint of each family, written as `aqa tiny DIR --family NAME` writes it."""
    return {
        name: build_tiny_checkpoint(tmp_path_factory.mktemp(name), family=family) for name, family in FAMILIES.items()
    }


@pytest.fixture(scope="module")
def family_models(family_dirs) -> dict[str, aqa.AQAModel]:
    return {name: aqa.load_model(str(path), precision="fp32", device="cpu") for name, path in family_dirs.items()}


def render(template: str, messages: list[dict]) -> str:
    """A chat template rendered as transformers renders it (a sandboxed Jinja environment, trimmed blocks)."""
    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return environment.from_string(template).render(messages=messages, add_generation_prompt=True)


@pytest.mark.parametrize("name", NAMES)
def test_the_tiny_checkpoint_carries_the_published_template(name, family_models):
    """The saved and reloaded processor has the published template text, and it wraps R1-AQA's prompt as the
    published template does; only the ids of the byte-level tokenizer differ from the real model's."""
    model = family_models[name]
    published = (FIXTURES / TEMPLATES[name]).read_text()
    assert model.processor.chat_template == published
    messages = build_messages(QUESTION, OPTIONS, audio_url="clip.wav")
    rendered = model.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert rendered == render(published, messages) == RENDERED[name].format(prompt=PROMPT)


def test_qwen3_omni_instruct_and_thinking_templates_wrap_a_question_alike():
    """The tiny Qwen3-Omni carries the Thinking checkpoint's template; the Instruct one differs only where tools are
    given, so R1-AQA's question reads the same to both."""
    messages = build_messages(QUESTION, OPTIONS, think=True, audio_url="clip.wav")
    instruct, thinking = ((FIXTURES / f"qwen3-omni-{kind}.jinja").read_text() for kind in ("instruct", "thinking"))
    assert render(instruct, messages) == render(thinking, messages)


def test_families_are_chosen_from_the_config(family_models):
    classes = {name: type(model.hf).__name__ for name, model in family_models.items()}
    assert classes == {
        "qwen2-audio": "Qwen2AudioForConditionalGeneration",
        "qwen2.5-omni": "Qwen2_5OmniThinkerForConditionalGeneration",
        "qwen3-omni": "Qwen3OmniMoeThinkerForConditionalGeneration",
        "audio-flamingo-3": "AudioFlamingo3ForConditionalGeneration",
    }
    for name, model in family_models.items():
        assert model.family is FAMILIES[name]
        assert not any(key.startswith(("talker", "token2wav", "code2wav")) for key in model.hf.state_dict())
    assert family_models["qwen3-omni"].thinking == "native"  # shaped like the Thinking checkpoint (no talker)
    assert {model.thinking for name, model in family_models.items() if name != "qwen3-omni"} == {"none"}


def test_omni_checkpoints_hold_a_talker_that_is_not_loaded(family_dirs):
    """The tiny Qwen2.5-Omni checkpoint is a whole Omni model, as published: its talker and vocoder are in the file,
    and only the thinker reaches memory."""
    from safetensors import safe_open

    [weights] = family_dirs["qwen2.5-omni"].glob("*.safetensors")
    with safe_open(weights, "pt") as handle:
        parts = {key.split(".")[0] for key in handle.keys()}
    assert parts == {"thinker", "talker", "token2wav"}


def reference_probabilities(model, clip, options, reasoning="", think=False):
    """Scoring without any sharing: one plain forward pass per option over prompt [+ reasoning] + answer, built with
    the family's processor directly (its chat template, its audio keys)."""
    text = model.processor.apply_chat_template(
        build_messages(QUESTION, options, think, audio_url="clip"), add_generation_prompt=True, tokenize=False
    )
    inputs = model.processor(text=[text], audio=[clip], sampling_rate=16000, return_tensors="pt")
    prefix = model.tokenizer(reasoning, add_special_tokens=False, return_tensors="pt").input_ids
    audio = {key: inputs[key] for key in model.family.audio_keys}
    scores = []
    for option in options:
        answer = model.tokenizer(f"<answer>{option}</answer>", add_special_tokens=False, return_tensors="pt")
        ids = torch.cat([inputs["input_ids"], prefix, answer.input_ids], dim=1)
        with torch.no_grad():
            logits = model.hf(input_ids=ids, attention_mask=torch.ones_like(ids), **audio).logits
        n = answer.input_ids.shape[1]
        logprobs = torch.log_softmax(logits[0, -n - 1 : -1].double(), -1)
        scores.append(logprobs.gather(-1, answer.input_ids[0, :, None]).sum().item())
    return dict(zip(options, torch.softmax(torch.tensor(scores), 0).tolist()))


def tone(seconds: float, frequency: float = 440.0) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * frequency * np.arange(int(seconds * 16000)) / 16000)).astype(np.float32)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("think", [False, True], ids=["answer", "think"])
def test_probabilities_equal_a_plain_forward_per_option(name, think, family_models):
    """Shared-prefill scoring (one pass for all options, after the reasoning in thinking mode or for a native
    thinker) equals a plain full forward per option, to 1e-4."""
    model = family_models[name]
    clip = tone(3.0)
    result = aqa.answer(model, clip, QUESTION, OPTIONS, DecodingOptions(think=think, max_new_tokens=12))
    reasons = think or model.thinking == "native"
    reasoning = result.raw.split("<answer>")[0] if reasons else ""
    expected = reference_probabilities(model, clip, OPTIONS, reasoning, think)
    assert list(result.probabilities) == OPTIONS
    assert math.isclose(sum(result.probabilities.values()), 1.0, abs_tol=1e-9)
    for option in OPTIONS:
        assert result.probabilities[option] == pytest.approx(expected[option], abs=1e-4), option


@pytest.mark.parametrize("name", NAMES)
def test_batched_greedy_equals_one_at_a_time(name, family_models):
    model = family_models[name]
    questions = [
        Question(tone(2.0), QUESTION, tuple(OPTIONS)),
        Question(tone(0.5, 880), "Is there a beep?", ("Yes", "No")),
        Question(tone(4.0, 220), "How many tones?", ("One", "Two", "Three")),
    ]
    decoding = DecodingOptions(max_new_tokens=10)
    batched = dict(aqa.answer_many(model, questions, decoding, batch_size=3))
    for index, question in enumerate(questions):
        alone = aqa.answer(model, question.audio, question.text, question.options, decoding)
        assert batched[index].raw == alone.raw
        assert batched[index].probabilities == pytest.approx(alone.probabilities, abs=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_streaming_adds_up_and_stops(name, family_models):
    model = family_models[name]
    decoding = DecodingOptions(think=True, max_new_tokens=16)
    *pieces, result = aqa.answer_stream(model, tone(2.0), QUESTION, OPTIONS, decoding)
    assert "".join(pieces) == result.raw and result.answer in OPTIONS
    stop = threading.Event()
    items = []
    for item in aqa.answer_stream(model, tone(2.0), QUESTION, OPTIONS, decoding, stop=stop):
        items.append(item)
        stop.set()
    assert isinstance(items[-1], aqa.Result) and len(items[-1].raw) <= len(result.raw)


@pytest.mark.parametrize("name", NAMES)
def test_a_75_second_clip_in_windows(name, family_models, tmp_path):
    """A 75 s clip with long_audio="windows": Qwen2-Audio hears 30 s, so three windows; the others hear it whole
    (one answer, no windows). Then every family answered window by window, each window as that part alone."""
    model = family_models[name]
    path = tmp_path / "long_75s.wav"
    sf.write(path, np.concatenate([tone(25.0, f) for f in (220, 440, 880)]), 16000)
    decoding = DecodingOptions(max_new_tokens=4, long_audio="windows")
    result = aqa.answer(model, path, "Which pitch?", ["Low", "Middle", "High"], decoding)
    spans = window_spans(75.0, model.heard_seconds)
    assert [(w.start, w.end) for w in result.windows] == (spans if len(spans) > 1 else [])
    assert result.duration == pytest.approx(75.0) and result.answer in ("Low", "Middle", "High")
    thirty = replace(model, family=replace(model.family, heard_seconds=30.0))  # as if it heard 30 s at a time
    windowed = aqa.answer(thirty, path, "Which pitch?", ["Low", "Middle", "High"], decoding)
    assert [(w.start, w.end) for w in windowed.windows] == [(0.0, 30.0), (25.0, 55.0), (45.0, 75.0)]
    last = aqa.answer(thirty, aqa.load_audio(path)[45 * 16000 :], "Which pitch?", ["Low", "Middle", "High"],
                      DecodingOptions(max_new_tokens=4))  # fmt: skip
    assert windowed.windows[2].probabilities == pytest.approx(last.probabilities, abs=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_precisions(name, family_dirs, family_models):
    """bf16 answers for every family; 4-bit (bitsandbytes NF4 on the CPU) where it quantizes most weights, and
    refused in one line for Qwen3-Omni, whose experts bitsandbytes cannot quantize."""
    path = str(family_dirs[name])
    clip = tone(1.0)
    bf16 = aqa.load_model(path, precision="bf16", device="cpu")
    assert bf16.hf.dtype == torch.bfloat16
    assert aqa.answer(bf16, clip, QUESTION, OPTIONS, DecodingOptions(max_new_tokens=4)).answer in OPTIONS
    if name == "qwen3-omni":
        with pytest.raises(ModelError, match=r"cannot be loaded in 4bit: .* fused expert weights.*--precision bf16"):
            aqa.load_model(path, precision="4bit", device="cpu")
        return
    four = aqa.load_model(path, precision="4bit", device="cpu")
    kinds = {type(module).__name__ for module in four.hf.model.language_model.modules()}
    assert "Linear4bit" in kinds
    assert not any(type(m).__name__ == "Linear4bit" for m in four.hf.model.audio_tower.modules())
    assert aqa.answer(four, clip, QUESTION, OPTIONS, DecodingOptions(max_new_tokens=4)).answer in OPTIONS


@pytest.mark.parametrize("name", NAMES)
def test_static_cache_decoding_equals_eager(name, family_models):
    """The fast path's static cache writes the same tokens as the eager one (compiled on a GPU, see test_gpu)."""
    model = family_models[name]
    decoding = DecodingOptions(think=True, max_new_tokens=12)
    eager = aqa.answer(model, tone(2.0), QUESTION, OPTIONS, decoding)
    static = aqa.answer(replace(model, decoder="static"), tone(2.0), QUESTION, OPTIONS, decoding)
    assert static.raw == eager.raw


@pytest.mark.parametrize("name", NAMES)
def test_embeddings_in_host_memory_answer_the_same(name, family_dirs, family_models):
    hosted = aqa.load_model(str(family_dirs[name]), precision="fp32", device="cpu", embeddings_on_cpu=True)
    decoding = DecodingOptions(max_new_tokens=6)
    expected = aqa.answer(family_models[name], tone(1.0), QUESTION, OPTIONS, decoding)
    assert aqa.answer(hosted, tone(1.0), QUESTION, OPTIONS, decoding).raw == expected.raw


@pytest.mark.parametrize("name", NAMES)
def test_eval_run_and_official_scoring(name, family_dirs, tmp_path, capsys):
    """`aqa eval run` on an MMAU-format file, scored: every record answered, the manifest names the family, and the
    score is MMAU's official rule over the predictions file as written."""
    records = made_up_records(3)
    data = tmp_path / "mmau.json"
    data.write_text(json.dumps(records))
    synthesise(tmp_path / "MMAU", records)
    output = tmp_path / "preds.json"
    command = ["eval", "run", "--benchmark", "mmau", "--model", str(family_dirs[name]), "--data", str(data)]
    command += ["--audio-dir", str(tmp_path / "MMAU"), "--output", str(output), "--device", "cpu"]
    assert main([*command, "--batch-size", "2", "--max-new-tokens", "4", "--precision", "fp32"]) == 0
    predictions = json.loads(output.read_text())
    assert len(predictions) == 3 and all("model_output" in record for record in predictions)
    manifest = json.loads(output.with_suffix(".manifest.json").read_text())
    assert manifest["settings"]["family"] == name
    capsys.readouterr()
    assert main(["eval", "score", "--benchmark", "mmau", str(output), "--json"]) == 0
    score = json.loads(capsys.readouterr().out)
    correct = sum(official_match(r["answer"], r["model_output"], r["choices"]) for r in predictions)
    assert score["total"] == pytest.approx(100 * correct / 3, abs=0.01)


def test_a_model_of_no_supported_family_is_one_line(tmp_path):
    from transformers import WhisperConfig

    WhisperConfig(d_model=64, encoder_layers=1, decoder_layers=1).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match=r"is a 'whisper' model, not one of the supported families \(Qwen2-Audio"):
        aqa.load_model(str(tmp_path), device="cpu")


def test_unknown_family_name():
    with pytest.raises(ModelError, match="unknown model family 'gemma': choose one of qwen2-audio, qwen2.5-omni"):
        family_named("gemma")


def test_random_weights_of_every_family_are_built_from_the_family(family_models):
    for name, family in FAMILIES.items():
        model = build_random_model("tiny", family=family)
        assert type(model.hf) is type(family_models[name].hf) and model.family is family


def test_cli_tiny_and_models(aqa_cli, tmp_path):
    done = aqa_cli("tiny", tmp_path / "af3", "--family", "audio-flamingo-3", check=True)
    assert "tiny random Audio Flamingo 3 checkpoint" in done.stdout
    clip = ROOT / "assets" / "rain_noise.ogg"
    flags = ["--device", "cpu", "--json", "--max-new-tokens", "4", "--question", QUESTION, "--options", *OPTIONS]
    asked = aqa_cli("ask", "--model", tmp_path / "af3", "--audio", clip, *flags)
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)["answer"] in OPTIONS
    listed = aqa_cli("models", check=True).stdout
    for name, family in FAMILIES.items():
        assert f"| {name} |" in listed and all(f"`{p.hub_id}`" in listed for p in family.published)
    assert "| 8.40B | 15.6 | 6.7 |" in listed and "refused (fused experts)" in listed


def test_docs_table_is_what_aqa_models_prints():
    from aqa.families.catalogue import catalogue, markdown

    text = (ROOT / "docs" / "models.md").read_text()
    table = text.split("<!-- aqa models -->\n")[1].split("<!-- /aqa models -->")[0]
    assert table.strip() == markdown(catalogue(list(FAMILIES.values()))).strip()
