"""The one audio loader: any file, microphone tuple or array in, 16 kHz mono float32 out."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from aqa.errors import AudioError

SAMPLE_RATE = 16000  # Qwen2-Audio's Whisper feature extractor expects 16 kHz
CHUNK_LENGTH = 30  # seconds the audio encoder hears: features are padded or cut to this
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples in a 30-second window
MAX_CHANNELS = 32  # a (channels, samples) array with more rows than this is surely (samples, channels)
# How several channels become one: "mix" averages them (what a listener hears; the default), "first" keeps the first
# channel only, as R1-AQA's training and test scripts do (`waveform[0]` after torchaudio.load).
CHANNELS = ("mix", "first")

# What `load_audio` accepts: a path, Gradio's (sample_rate, array) microphone tuple, or a 16 kHz float array.
AudioInput = str | Path | tuple[int, np.ndarray] | np.ndarray


def load_audio(source: AudioInput, channel: str = "mix") -> np.ndarray:
    """Return `source` as 16 kHz mono float32 samples; raise AudioError with a one-line reason otherwise.

    channel: "mix" averages the channels of a multi-channel clip; "first" keeps its first channel (R1-AQA's scripts).
    """
    if channel not in CHANNELS:
        raise AudioError(f"unknown channel choice {channel!r}: choose one of {', '.join(CHANNELS)}")
    if isinstance(source, (str, Path)):
        samples, rate = read_file(Path(source))
        name = str(source)
    elif isinstance(source, tuple) and len(source) == 2:
        rate, samples = int(source[0]), to_float(np.asarray(source[1]))
        name = "microphone audio"
    elif isinstance(source, np.ndarray):
        rate, samples = SAMPLE_RATE, to_float(source)
        name = "audio array"
    else:
        raise AudioError(f"unsupported audio input of type {type(source).__name__}: give a path or a (rate, array)")
    return finish(samples, rate, name, channel)


def read_file(path: Path) -> tuple[np.ndarray, int]:
    """Decode a file with soundfile (wav/flac/ogg/mp3), falling back to FFmpeg for anything else."""
    check_file(path)
    try:
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        if shutil.which("ffmpeg") is None:
            reason = describe(error)
            raise AudioError(f"{path}: not a readable audio file ({reason}); install FFmpeg for m4a/aac/webm") from None
        return read_with_ffmpeg(path), SAMPLE_RATE
    check_complete(path)
    return samples, rate


def check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if not path.is_file():
        raise AudioError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")


def check_complete(path: Path) -> None:
    """Reject a WAV cut short: libsndfile quietly returns the frames that are there, so compare sizes ourselves."""
    with path.open("rb") as handle:
        header = handle.read(4096)
    if header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        return
    at = header.find(b"data", 12)
    if at < 0 or at + 8 > len(header):
        return
    declared = int.from_bytes(header[at + 4 : at + 8], "little")
    present = path.stat().st_size - (at + 8)
    # 0 and 0xFFFFFFFF mark a streamed WAV whose writer could not fill the size in: nothing to compare.
    if declared not in (0, 0xFFFFFFFF) and present < declared:
        raise AudioError(f"{path}: truncated WAV ({present} of {declared} data bytes present)")


def read_with_ffmpeg(path: Path) -> np.ndarray:
    """FFmpeg decodes and resamples to 16 kHz, keeping every channel (a float WAV on a pipe), so that channels become
    mono exactly as for the files soundfile reads (FFmpeg's own down-mix weighs them by 1/sqrt(2), not 1/2); its last
    error line names the problem."""
    command = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "wav", "-acodec", "pcm_f32le"]
    command += ["-ar", str(SAMPLE_RATE), "-"]
    done = subprocess.run(command, capture_output=True)
    if done.returncode != 0 or not done.stdout:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        reason = lines[-1] if lines else "no audio stream"
        raise AudioError(f"{path}: not a readable audio file ({reason.removeprefix(str(path) + ': ')})")
    samples, _ = sf.read(io.BytesIO(done.stdout), dtype="float32", always_2d=True)
    return samples


def to_float(samples: np.ndarray) -> np.ndarray:
    """Integer PCM (what Gradio's microphone gives) scaled to [-1, 1]; floats kept as they are."""
    if samples.dtype.kind == "i":
        return samples.astype(np.float32) / float(np.iinfo(samples.dtype).max + 1)
    if samples.dtype.kind == "u":
        half = float(np.iinfo(samples.dtype).max + 1) / 2
        return (samples.astype(np.float32) - half) / half
    if samples.dtype.kind == "f":
        return samples.astype(np.float32, copy=False)
    raise AudioError(f"audio array of dtype {samples.dtype} is not a sound: give integer PCM or floats")


def finish(samples: np.ndarray, rate: int, name: str, channel: str = "mix") -> np.ndarray:
    """Mix to mono (or keep the first channel), resample to 16 kHz and check that something audible-in-principle is
    left."""
    mono = to_mono(samples, name, channel)
    if mono.size == 0:
        raise AudioError(f"{name}: no audio samples")
    if rate <= 0:
        raise AudioError(f"{name}: invalid sample rate {rate}")
    if not np.isfinite(mono).all():
        raise AudioError(f"{name}: audio contains NaN or infinite values")
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def to_mono(samples: np.ndarray, name: str, channel: str = "mix") -> np.ndarray:
    if samples.ndim == 1:
        return samples
    if samples.ndim != 2:
        raise AudioError(f"{name}: expected a 1-D or 2-D audio array, got shape {samples.shape}")
    # soundfile and Gradio give (samples, channels); torch-style (channels, samples) arrays are short and wide.
    if samples.shape[0] < samples.shape[1] and samples.shape[0] <= MAX_CHANNELS:
        samples = samples.T
    return samples[:, 0] if channel == "first" else samples.mean(axis=1)


def describe(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__


def duration_of(source: AudioInput) -> float:
    """Seconds of audio, read from the file header where possible (cheap); 0.0 when it cannot be told."""
    try:
        if isinstance(source, (str, Path)):
            return float(sf.info(str(source)).duration)
        if isinstance(source, tuple):
            return len(source[1]) / float(source[0])
        return len(source) / SAMPLE_RATE
    except Exception:  # a bad file is reported properly when it is loaded; this is only a sort key
        return 0.0
