"""train.data: R1-AQA's video -> audio rewrite, the first channel of a clip, rows from JSONL or a JSON list, and the
per-row audio check (each row's <|AUDIO|> tokens number its own clip's encoder outputs; every family's in
test_families.py)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from aqa.families import QWEN2_AUDIO
from aqa.prompt import build_messages
from train.data import (
    DataOptions,
    check_audio_rows,
    collate_audio,
    load_clips,
    load_examples,
    rewrite_video,
)


@pytest.mark.parametrize(
    ("question", "expected", "why"),
    [
        ("What is in the video?", "What is in the audio?", "the word"),
        ("Which videos show it?", "Which audios show it?", "inside a word: a substring replace"),
        ("Video: what is heard?", "Video: what is heard?", "case-sensitive: 'Video' stays"),
        ("VIDEO clip", "VIDEO clip", "upper case stays"),
        ("a videogame and a video", "a audiogame and a audio", "every occurrence, articles untouched"),
        ("What is heard?", "What is heard?", "nothing to rewrite"),
    ],
)
def test_video_to_audio_is_r1_aqas_substring_replace(question, expected, why):
    assert rewrite_video(question) == expected, why


@pytest.fixture(scope="module")
def stereo_clip(tmp_path_factory):
    """16 kHz stereo: a 440 Hz tone on the left channel, silence on the right."""
    path = tmp_path_factory.mktemp("stereo") / "left_only.wav"
    left = 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
    sf.write(path, np.stack([left, np.zeros_like(left)], axis=1), 16000, subtype="FLOAT")
    return path, left


def test_training_hears_the_first_channel_as_r1_aqa_did(stereo_clip):
    path, left = stereo_clip
    [first] = load_clips([str(path)])  # the default: R1-AQA's waveform[0]
    [mixed] = load_clips([str(path)], channel="mix")
    np.testing.assert_array_equal(first, left)
    np.testing.assert_allclose(mixed, left / 2, atol=1e-7)
    assert DataOptions().audio_channel == "first"
    with pytest.raises(ValueError, match="audio_channel must be one of mix, first"):
        DataOptions(audio_channel="left")


def test_rows_come_from_json_lines_or_a_json_list(tmp_path, stereo_clip):
    path, _ = stereo_clip
    row = {"id": "q1", "audio_id": str(path), "question": "In the video?", "choices": ["A", "B"], "answer": "B"}
    lines, listed = tmp_path / "rows.jsonl", tmp_path / "rows.json"
    lines.write_text(json.dumps(row) + "\n{not json\n")
    listed.write_text(json.dumps([row, "not a row"]))
    for file in (lines, listed):
        examples, skipped = load_examples(file, DataOptions(video_to_audio=True))
        assert [(e.id, e.question, e.answer) for e in examples] == [("q1", "In the audio?", "B")]
        assert skipped == {"invalid json": 1}


@pytest.fixture(scope="module")
def two_clips(tmp_path_factory):
    """Clips of 1 s and 2 s: their rows hold different numbers of <|AUDIO|> tokens."""
    folder = tmp_path_factory.mktemp("lengths")
    paths = [folder / "one.wav", folder / "two.wav"]
    for path, seconds in zip(paths, ("1", "2")):
        subprocess.run(["sox", "-n", "-r", "16000", str(path), "synth", seconds, "sine", "440"], check=True)
    return paths


def test_swapped_features_pass_the_model_but_not_the_per_row_check(tiny_model, two_clips):
    conversations = [build_messages("What is it?", ["A", "B"], audio_url=str(path)) for path in two_clips]
    clips = load_clips([str(path) for path in two_clips])
    batch = collate_audio(tiny_model.processor, QWEN2_AUDIO, conversations, clips)
    audio_token = tiny_model.hf.config.audio_token_id
    audio = {key: batch[key] for key in QWEN2_AUDIO.audio_keys}
    check_audio_rows(batch["input_ids"], audio, QWEN2_AUDIO, audio_token)  # aligned: no error

    swapped = {key: value.flip(0) for key, value in audio.items()}
    with torch.no_grad():  # Qwen2-Audio checks only the batch's totals: the misalignment goes unnoticed
        tiny_model.hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **swapped)
    with pytest.raises(RuntimeError, match=r"row 0 holds 25 audio tokens but its audio features make 50"):
        check_audio_rows(batch["input_ids"], swapped, QWEN2_AUDIO, audio_token)
