"""The no-audio baseline: the same questions asked with the prompt alone (no audio entry, no features), or with
silence or seeded white noise of each clip's length; on every family, and through `aqa eval run --audio`, which
records it, resumes only as itself, and names it in every score and report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_families import OPTIONS, QUESTION, tone
from test_mmau import made_up_records, synthesise

import aqa
from aqa.cli.main import main
from aqa.families import FAMILIES
from aqa.inputs import NOISE_RMS, prepare_batch, stand_in
from aqa.options import DecodingOptions, Question
from aqa.prefill import audio_placeholders, prefill
from aqa.prompt import build_messages


@pytest.fixture(scope="module")
def family_models(family_dirs) -> dict[str, aqa.AQAModel]:
    return {name: aqa.load_model(str(path), precision="fp32", device="cpu") for name, path in family_dirs.items()}


def text_only_probabilities(model, options) -> dict[str, float]:
    """Scoring without any sharing: one plain forward pass per option over the prompt alone + the answer, built
    with the family's processor and chat template directly."""
    messages = build_messages(QUESTION, options, audio_url=None)
    text = model.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt = model.processor(text=[text], return_tensors="pt")
    scores = []
    for option in options:
        answer = model.tokenizer(f"<answer>{option}</answer>", add_special_tokens=False, return_tensors="pt")
        ids = torch.cat([prompt["input_ids"], answer.input_ids], dim=1)
        with torch.no_grad():
            logits = model.hf(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        n = answer.input_ids.shape[1]
        logprobs = torch.log_softmax(logits[0, -n - 1 : -1].double(), -1)
        scores.append(logprobs.gather(-1, answer.input_ids[0, :, None]).sum().item())
    return dict(zip(options, torch.softmax(torch.tensor(scores), 0).tolist()))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_answers_from_the_prompt_alone(name, family_models):
    """No audio entry in the message, no placeholder, no features: every family's processor and model take text
    alone, and the shared-prefill probabilities equal a plain forward per option (1e-4)."""
    model = family_models[name]
    question = Question(tone(2.0), QUESTION, tuple(OPTIONS))
    batch = prepare_batch(model, [question, question], think=False, audio="none")
    assert not set(model.family.audio_keys) & set(batch.inputs), "no features"
    assert not audio_placeholders(model, batch.inputs["input_ids"])
    result = aqa.answer(model, tone(2.0), QUESTION, OPTIONS, DecodingOptions(max_new_tokens=6, audio="none"))
    expected = text_only_probabilities(model, OPTIONS)
    assert result.duration == 0.0  # no audio was given
    for option in OPTIONS:
        assert result.probabilities[option] == pytest.approx(expected[option], abs=1e-4), option
    # silence of the clip's length is heard as audio: features and the placeholder are there
    heard = prepare_batch(model, [question], think=False, audio="silence")
    assert set(model.family.audio_keys) <= set(heard.inputs) and audio_placeholders(model, heard.inputs["input_ids"])


def test_silence_and_noise_have_the_clips_length_and_the_noise_is_seeded_by_the_clip():
    clip = tone(1.5)
    assert stand_in(clip, "clip", "a.wav") is clip and stand_in(clip, "none", "a.wav") is None
    silence = stand_in(clip, "silence", "a.wav")
    assert silence.shape == clip.shape and not silence.any()
    noise = stand_in(clip, "noise", "/data/one/a.wav")
    assert noise.shape == clip.shape and noise.dtype == np.float32
    assert np.sqrt(np.mean(noise**2)) == pytest.approx(NOISE_RMS, rel=0.05)
    assert np.array_equal(noise, stand_in(clip, "noise", "/elsewhere/a.wav")), "the folder does not change it"
    assert not np.array_equal(noise, stand_in(clip, "noise", "b.wav")), "another clip, other noise"
    with pytest.raises(ValueError, match="unknown audio mode"):
        stand_in(clip, "muted", "a.wav")


def test_a_prompt_with_a_placeholder_but_no_features_is_refused(tiny_model):
    """Without features a model embeds its audio placeholder as text with no error: prefill refuses it."""
    batch = prepare_batch(tiny_model, [Question(tone(1.0), QUESTION, tuple(OPTIONS))], think=False)
    text_only = {key: value for key, value in batch.inputs.items() if key not in tiny_model.family.audio_keys}
    with pytest.raises(ValueError, match="no audio features"):
        prefill(tiny_model, text_only)


def test_a_baseline_run_is_recorded_resumed_only_as_itself_and_named(tiny_model_dir, tmp_path, capsys):
    records = made_up_records(4)
    data = tmp_path / "mmau.json"
    data.write_text(json.dumps(records))
    synthesise(tmp_path / "MMAU", records)
    output = tmp_path / "silence" / "preds.json"
    args = ["mmau", "run", "--model", str(tiny_model_dir), "--data", str(data), "--audio-dir", str(tmp_path / "MMAU")]
    args += ["--output", str(output), "--device", "cpu", "--max-new-tokens", "4"]
    assert main([*args, "--audio", "silence"]) == 0
    captured = capsys.readouterr()
    assert "greedy protocol, without audio (silence)" in captured.err
    assert f"{output} (4 records), without audio (silence)" in captured.out
    manifest = json.loads(output.with_suffix(".manifest.json").read_text())
    assert manifest["settings"]["decoding"]["audio"] == "silence"
    predictions = json.loads(output.read_text())
    assert all(isinstance(p["model_output"], str) and p["duration"] > 0 for p in predictions)  # the clip's length

    # a resumed run hears what the run heard, or is refused
    assert main([*args, "--audio", "none"]) == 2
    assert "other settings (decoding" in capsys.readouterr().err
    assert main([*args, "--audio", "silence"]) == 0
    assert "4 of 4 already answered" in capsys.readouterr().err

    assert main(["mmau", "score", str(output), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["audio"] == "silence"
    assert main(["mmau", "report", str(output), "--label", "tiny", "--chart", str(tmp_path / "r.png")]) == 0
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny |")]
    assert "without audio (silence)" in row
    assert Path(tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
