"""train.prepare_avqa on small videos made with FFmpeg: rows, 16 kHz mono WAVs, missing clips, reruns."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from train.data import DataOptions, load_examples
from train.prepare_avqa import index_media, main, media_keys

OPTIONS = ["Dog barking", "Car engine", "Piano", "Rain"]


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, capture_output=True)


def lavfi_video(seconds: float, frequency: int | None, rate: int = 44100) -> list[str]:
    """FFmpeg inputs for a small test-pattern video, with a stereo sine track unless frequency is None."""
    video = ["-f", "lavfi", "-i", f"testsrc=duration={seconds}:size=64x48:rate=10"]
    if frequency is None:
        return video
    return video + ["-f", "lavfi", "-i", f"sine=frequency={frequency}:duration={seconds}:sample_rate={rate}"]


def make_avqa(folder: Path) -> tuple[Path, Path]:
    """A tiny AVQA: annotation file + media folder. Shared with tests/test_sft.py.

    vid_a (mp4 in a subfolder, asked twice), vid_b (webm), vid_c (a flac named without the start's zeros, as
    R1-AQA's own files are), vid_d (no media at all) and vid_e (a video without an audio track).
    """
    media = folder / "media"
    (media / "part1").mkdir(parents=True)
    ffmpeg(*lavfi_video(1, 440), "-ac", "2", "-shortest", "-c:a", "aac", str(media / "part1" / "vid_a_000010.mp4"))
    ffmpeg(
        *lavfi_video(1.5, 880, 48000),
        "-shortest",
        "-c:v",
        "libvpx",
        "-c:a",
        "libopus",
        str(media / "vid_b_000020.webm"),
    )
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:duration=2:sample_rate=22050", str(media / "vid_c_30.flac"))
    ffmpeg(*lavfi_video(1, None), str(media / "vid_e_000050.mp4"))
    (media / "notes.txt").write_text("not media\n")
    names = ["vid_a_000010", "vid_a_000010", "vid_b_000020", "vid_c_000030", "vid_d_000040", "vid_e_000050"]
    rows = [
        {
            "id": 100 + i,
            "video_name": name,
            "video_id": i,
            "question_text": f"What is the source of the sound in the video? ({i})",
            "multi_choice": OPTIONS,
            "answer": i % 4,
            "question_relation": "Both" if i % 2 else "Sound",
            "question_type": "Which",
        }
        for i, name in enumerate(names)
    ]
    qa = folder / "train_qa.json"
    qa.write_text(json.dumps(rows))  # AVQA ships a JSON array
    return qa, media


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def avqa(tmp_path) -> tuple[Path, Path, Path]:
    qa, media = make_avqa(tmp_path)
    return qa, media, tmp_path / "data" / "avqa_train.jsonl"


def test_prepare_writes_rows_wavs_and_missing_list(avqa, capsys):
    qa, media, out = avqa
    assert main(["--qa", str(qa), "--media", str(media), "--out", str(out), "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "6 questions, 5 clips: 3 extracted, 0 already there, 1 missing, 1 failed; wrote 4 rows" in printed

    rows = read_rows(out)
    original = json.loads(qa.read_text())
    assert [row["id"] for row in rows] == [100, 101, 102, 103]  # vid_d and vid_e left out, order kept
    for row, source in zip(rows, original):
        assert {k: row[k] for k in source} == source  # every AVQA field kept as it was
        assert row["dataset_name"] == "AVQA"
        assert not Path(row["audio_path"]).is_absolute()  # relative to the JSONL's folder
        info = sf.info(str(out.parent / row["audio_path"]))
        assert (info.samplerate, info.channels, info.format) == (16000, 1, "WAV")
    durations = {Path(r["audio_path"]).stem: sf.info(str(out.parent / r["audio_path"])).duration for r in rows}
    assert durations == pytest.approx({"vid_a_000010": 1.0, "vid_b_000020": 1.5, "vid_c_000030": 2.0}, abs=0.05)

    missing = (out.parent / "avqa_train.missing.txt").read_text().splitlines()
    assert missing[0] == "vid_d_000040\tno media file found"
    assert missing[1].startswith("vid_e_000050\tffmpeg: ") and len(missing) == 2

    examples, skipped = load_examples(out, DataOptions(check_audio=True))
    assert [e.answer for e in examples] == ["Dog barking", "Car engine", "Piano", "Rain"] and not skipped


def test_rerun_skips_valid_wavs_and_redoes_broken_ones(avqa, capsys):
    qa, media, out = avqa
    args = ["--qa", str(qa), "--media", str(media), "--out", str(out)]
    main(args)
    wavs = out.parent / "avqa_audio"
    stamps = {path.name: path.stat().st_mtime_ns for path in wavs.glob("*.wav")}
    broken = wavs / "vid_b_000020.wav"
    broken.write_bytes(broken.read_bytes()[:1000])  # a run killed mid-copy, say
    capsys.readouterr()

    assert main(args) == 0
    assert "5 clips: 1 extracted, 2 already there, 1 missing, 1 failed" in capsys.readouterr().out
    assert sf.info(str(broken)).duration == pytest.approx(1.5, abs=0.05)  # extracted again
    unchanged = {p.name: p.stat().st_mtime_ns for p in wavs.glob("*.wav") if p.name != broken.name}
    assert unchanged == {name: stamp for name, stamp in stamps.items() if name != broken.name}
    assert len(read_rows(out)) == 4 and not list(wavs.glob("*.part"))


@pytest.mark.parametrize(
    "stem, keys, reason",
    [
        ("-HG3Omg_89c_000030", ["-HG3Omg_89c_000030", "-HG3Omg_89c_30"], "VGGSound name: also R1-AQA's short form"),
        ("abc_30", ["abc_30"], "already short: one key"),
        ("abc_000000", ["abc_000000", "abc_0"], "start 0 keeps one digit"),
        ("noclip", ["noclip"], "no start time: as given"),
    ],
)
def test_media_keys(stem, keys, reason):
    assert media_keys(stem) == keys, reason


def test_index_prefers_audio_and_ignores_other_files(tmp_path):
    for name in ("x_000001.mp4", "x_000001.wav", "sub/y_000002.MKV", "x_000001.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"0")
    index = index_media(tmp_path)
    assert index["x_000001"].name == "x_000001.wav" and index["x_1"].name == "x_000001.wav"
    assert index["y_000002"].name == "y_000002.MKV" and len(index) == 4


@pytest.mark.parametrize(
    "case, message",
    [
        ("no media dir", "no such media directory"),
        ("bad annotations", "not a JSON array or JSON lines"),
        ("no annotations", "cannot read the annotation file"),
    ],
)
def test_bad_input_is_one_line_error(tmp_path, capsys, case, message):
    qa, media = tmp_path / "qa.json", tmp_path / "media"
    media.mkdir()
    qa.write_text("[{]" if case == "bad annotations" else "[]")
    if case == "no media dir":
        media.rmdir()
    if case == "no annotations":
        qa.unlink()
    assert main(["--qa", str(qa), "--media", str(media), "--out", str(tmp_path / "o.jsonl")]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


@pytest.mark.parametrize(("channel", "gain"), [("first", 1.0), ("mix", 0.5)])
def test_a_stereo_clip_becomes_its_first_channel_unless_mixed(tmp_path, channel, gain):
    """R1-AQA's loader keeps waveform[0]; the extraction keeps that channel by default (`--channel mix` averages)."""
    media = tmp_path / "media"
    media.mkdir()
    # 16 kHz stereo: a tone on the left, silence on the right
    tone = "sine=frequency=440:duration=1:sample_rate=16000"
    ffmpeg("-f", "lavfi", "-i", tone, "-af", "pan=stereo|c0=c0|c1=0*c0", str(media / "vid_s_000001.wav"))
    qa, out = tmp_path / "qa.json", tmp_path / "data" / "avqa.jsonl"
    row = {"id": 1, "video_name": "vid_s_000001", "question_text": "Q?", "multi_choice": OPTIONS, "answer": 0}
    qa.write_text(json.dumps([row]))
    assert main(["--qa", str(qa), "--media", str(media), "--out", str(out), "--channel", channel]) == 0
    source, _ = sf.read(media / "vid_s_000001.wav", dtype="float32")
    extracted, rate = sf.read(out.parent / read_rows(out)[0]["audio_path"], dtype="float32")
    assert rate == 16000 and extracted.ndim == 1
    np.testing.assert_allclose(extracted, gain * source[:, 0], atol=2e-4)  # 16-bit WAV: within a quantization step
