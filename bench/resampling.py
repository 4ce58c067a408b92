"""How far aqa's resampler (soxr, "HQ") is from the windowed-sinc resampler R1-AQA's scripts used (torchaudio's
`Resample` defaults: Hann window, 6 zero crossings, roll-off 0.99), on clips like the tests': speech, tones, noise.

    python -m bench.resampling            # a Markdown table
    python -m bench.resampling --json

torchaudio is not a dependency (its last release needs FFmpeg's torchcodec and its PyPI wheel is a CUDA build), so
its kernel is rebuilt here from its published algorithm (`torchaudio.functional.resample`, `sinc_interp_hann`) in
plain torch. For each clip: the difference between the two resampled signals relative to the signal (in dB: higher
is closer), the largest sample difference, and the largest difference of the log-mel features the model hears.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
from transformers import WhisperFeatureExtractor

from aqa.audio import SAMPLE_RATE


def sinc_hann_resample(samples: np.ndarray, rate: int, new_rate: int = SAMPLE_RATE) -> np.ndarray:
    """torchaudio's default resampling (sinc_interp_hann, lowpass_filter_width 6, rolloff 0.99), rebuilt in torch."""
    width_zero_crossings, rolloff = 6, 0.99
    gcd = math.gcd(rate, new_rate)
    orig, new = rate // gcd, new_rate // gcd
    base = min(orig, new) * rolloff
    width = math.ceil(width_zero_crossings * orig / base)
    index = torch.arange(-width, width + orig, dtype=torch.float64)[None, None] / orig
    t = (torch.arange(0, -new, -1, dtype=torch.float64)[:, None, None] / new + index) * base
    t = t.clamp(-width_zero_crossings, width_zero_crossings)
    window = torch.cos(t * math.pi / width_zero_crossings / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.tensor(1.0, dtype=torch.float64), t.sin() / t) * window * (base / orig)
    wave = torch.nn.functional.pad(torch.from_numpy(samples.astype(np.float64))[None, None], (width, width + orig))
    resampled = torch.nn.functional.conv1d(wave, kernel, stride=orig).transpose(1, 2).reshape(-1)
    return resampled[: math.ceil(new * len(samples) / orig)].numpy().astype(np.float32)


def make_clips(folder: Path) -> dict[str, Path]:
    """Clips at the rates the tests use: espeak-ng speech (22.05 kHz), sox tones and noise (8, 22.05, 44.1, 48 kHz)."""
    clips = {
        "tone 440 Hz, 8 kHz": ("-r", "8000", "synth", "2", "sine", "440"),
        "two tones, 44.1 kHz": ("-r", "44100", "synth", "3", "sine", "300", "sine", "500"),
        "tone sweep 100-7000 Hz, 48 kHz": ("-r", "48000", "synth", "3", "sine", "100-7000"),
        "pink noise, 44.1 kHz": ("-r", "44100", "synth", "3", "pinknoise", "vol", "0.3"),
        "square 220 Hz, 22.05 kHz": ("-r", "22050", "synth", "2", "square", "220"),
    }
    paths = {}
    for name, args in clips.items():
        path = folder / f"{len(paths)}.wav"
        subprocess.run(["sox", "-n", "-c", "1", *args[:2], str(path), *args[2:]], check=True)
        paths[name] = path
    if shutil.which("espeak-ng"):
        path = folder / "speech.wav"
        text = "The quick brown fox jumps over the lazy dog."
        subprocess.run(["espeak-ng", "-v", "en", "-w", str(path), text], check=True, capture_output=True)
        paths["speech (espeak-ng), 22.05 kHz"] = path
    return paths


def compare(path: Path, features: WhisperFeatureExtractor) -> dict:
    samples, rate = sf.read(path, dtype="float32")
    ours = soxr.resample(samples, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    theirs = sinc_hann_resample(samples, rate)
    length = min(len(ours), len(theirs))
    ours, theirs = ours[:length], theirs[:length]
    difference = ours - theirs
    snr = 10 * math.log10(float(np.sum(theirs**2)) / max(float(np.sum(difference**2)), 1e-30))
    mel = [features(clip, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features[0] for clip in (ours, theirs)]
    frames = math.ceil(length / features.hop_length)  # the clip's own frames, not the padding to 30 s
    gap = np.abs(mel[0] - mel[1])[:, :frames]
    # The two filters differ most in their roll-off just below 8 kHz (torchaudio's passes up to 0.99 of it): the
    # mel bins centred below 7 kHz show what the rest of the spectrum gets.
    centres = features.mel_filters.argmax(axis=0) * SAMPLE_RATE / features.n_fft
    return {
        "rate": rate,
        "agreement_db": round(snr, 1),
        "max_sample_difference": float(np.abs(difference).max()),
        "log_mel_range": float(mel[1][:, :frames].max() - mel[1][:, :frames].min()),
        "mean_log_mel_difference": float(gap.mean()),
        "max_log_mel_difference_below_7khz": float(gap[centres < 7000].max()),
        "max_log_mel_difference": float(gap.max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    features = WhisperFeatureExtractor(feature_size=128, sampling_rate=SAMPLE_RATE, chunk_length=30)
    with tempfile.TemporaryDirectory() as folder:
        report = {name: compare(path, features) for name, path in make_clips(Path(folder)).items()}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print("| clip | agreement (dB) | max sample difference | log-mel difference: mean / max below 7 kHz / max |")
    print("| --- | --- | --- | --- |")
    for name, row in report.items():
        mel = [row[key] for key in ("mean_log_mel_difference", "max_log_mel_difference_below_7khz")]
        mel.append(row["max_log_mel_difference"])
        print(
            f"| {name} | {row['agreement_db']} | {row['max_sample_difference']:.2g} | "
            f"{' / '.join(f'{value:.3f}' for value in mel)} (range {row['log_mel_range']:.2f}) |"
        )


if __name__ == "__main__":
    main()
