"""The one audio loader: any file, microphone tuple or array in, 16 kHz mono float32 out.

A file's header is read and admitted first (`aqa.probe`: sample rate, channels, duration); it is then decoded block by
block, each block mixed to mono and resampled as it comes, and decoding stops as soon as it passes the cap, whatever
the header said. So what a clip costs in memory is bounded by the cap at 16 kHz mono, never by the file.
"""

from __future__ import annotations

import collections
import contextlib
import math
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from aqa.errors import AQAError, AudioError
from aqa.probe import (
    DURATION_MARGIN,
    FFMPEG_LOCKDOWN,
    MAX_SECONDS,
    Header,
    admit,
    ffmpeg_reason,
    ffmpeg_url,
    last_line,
    probe_with_ffmpeg,
    read_header,
)

SAMPLE_RATE = 16000  # Qwen2-Audio's Whisper feature extractor expects 16 kHz
CHUNK_LENGTH = 30  # seconds the audio encoder hears: features are padded or cut to this
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples in a 30-second window
# How several channels become one: "mix" averages them (what a listener hears; the default), "first" keeps the first
# channel only, as R1-AQA's training and test scripts do (`waveform[0]` after torchaudio.load).
CHANNELS = ("mix", "first")
DECODE_BLOCK = 65536  # frames decoded at once: 2 MB at 8 channels of float32
# Seconds FFmpeg may take to decode one clip: an hour of stereo AAC decodes, mixes and resamples in 11 s on a 2-core
# CPU, so only a stuck decoder meets this.
DECODE_TIMEOUT = 120

# What `load_audio` accepts: a path, Gradio's (sample_rate, array) microphone tuple, or a 16 kHz float array.
AudioInput = str | Path | tuple[int, np.ndarray] | np.ndarray


def load_audio(source: AudioInput, channel: str = "mix", max_seconds: float | None = None) -> np.ndarray:
    """Return `source` as 16 kHz mono float32 samples; raise AudioError with a one-line reason otherwise.

    channel: "mix" averages the channels of a multi-channel clip; "first" keeps its first channel (R1-AQA's scripts).
    max_seconds: the longest clip accepted (None: aqa.probe.MAX_SECONDS, an hour). A longer clip is refused from its
    header before anything is decoded, or, if the header does not say or lies, as soon as decoding passes the cap.
    Every input also needs a sample rate of 4-384 kHz and at most 8 channels (aqa.probe).
    """
    if channel not in CHANNELS:
        raise AudioError(f"unknown channel choice {channel!r}: choose one of {', '.join(CHANNELS)}")
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be positive, not {max_seconds!r}")
    cap = MAX_SECONDS if max_seconds is None else float(max_seconds)
    if isinstance(source, (str, Path)):
        return read_file(Path(source), channel, cap)
    rate, samples, name = array_input(source)
    frames = as_frames(samples, name)
    admit(name, rate, frames.shape[1], len(frames) / rate if rate > 0 else None, cap)
    return to_mono_16k(iter([frames]), rate, channel, name, cap)


def read_file(path: Path, channel: str, cap: float) -> np.ndarray:
    """Admit the file from its header, then decode it with libsndfile (wav/flac/ogg/mp3), or FFmpeg for the rest."""
    header = read_header(path)
    admit(str(path), header.rate, header.channels, header.seconds, cap)
    if header.reader == "soundfile":
        try:
            return to_mono_16k(soundfile_blocks(path, header, cap), header.rate, channel, str(path), cap, header)
        except (sf.LibsndfileError, RuntimeError) as error:  # a header libsndfile reads over data it cannot decode
            header = probe_with_ffmpeg(path, reason=last_line(str(error)))
            admit(str(path), header.rate, header.channels, header.seconds, cap)
    return to_mono_16k(ffmpeg_blocks(path, header, cap), header.rate, channel, str(path), cap, header)


def soundfile_blocks(path: Path, header: Header, cap: float) -> Iterator[np.ndarray]:
    """(frames, channels) float32 blocks from libsndfile, one frame past the cap at most (that frame shows a clip is
    longer)."""
    left = decode_limit(cap, header.rate) + 1
    with sf.SoundFile(str(path)) as audio:
        audio.seek(
            0
        )  # as sf.read does: it resets libsndfile's MP3 decoder, without which samples differ in the last bit
        while left > 0:
            block = audio.read(min(DECODE_BLOCK, left), dtype="float32", always_2d=True)
            if not len(block):
                return
            left -= len(block)
            yield block


def ffmpeg_blocks(path: Path, header: Header, cap: float) -> Iterator[np.ndarray]:
    """(frames, channels) float32 blocks of the first audio stream at its own rate, read from FFmpeg's output as it
    comes (never the whole output at once); closing the generator stops FFmpeg.

    FFmpeg reads local files only, in the probed format only (`-f`), decodes one second past the cap at most (`-t`,
    so that a longer clip shows itself), and is killed after DECODE_TIMEOUT seconds.
    """
    if shutil.which("ffmpeg") is None:
        raise AudioError(f"{path}: decoding it needs FFmpeg, which is not installed")
    channels = header.channels
    command = ["ffmpeg", "-nostdin", "-v", "error", *FFMPEG_LOCKDOWN, "-f", header.reader, "-i", ffmpeg_url(path)]
    command += ["-map", "0:a:0", "-t", f"{cap + DURATION_MARGIN + 1:g}", "-ac", str(channels), "-ar", str(header.rate)]
    command += ["-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    errors: collections.deque[bytes] = collections.deque(maxlen=5)  # FFmpeg's last lines; the rest is dropped
    drain = threading.Thread(target=errors.extend, args=(process.stderr,), daemon=True)
    timed_out = threading.Event()
    timer = threading.Timer(DECODE_TIMEOUT, lambda: (timed_out.set(), process.kill()))
    drain.start()
    timer.start()
    try:
        frame_bytes = 4 * channels
        while data := process.stdout.read(frame_bytes * DECODE_BLOCK):
            usable = len(data) - len(data) % frame_bytes
            yield np.frombuffer(data[:usable], dtype=np.float32).reshape(-1, channels)
        process.wait()
        if timed_out.is_set():
            raise AudioError(f"{path}: decoding took longer than {DECODE_TIMEOUT} s")
        if process.returncode != 0:
            drain.join()
            text = b"".join(errors).decode(errors="replace")
            raise AudioError(f"{path}: not a readable audio file ({ffmpeg_reason(text, path)})")
    finally:  # also when the reader stopped early (the cap): FFmpeg is stopped, not left decoding
        timer.cancel()
        if process.poll() is None:
            process.kill()
        process.wait()
        drain.join()
        process.stdout.close()
        process.stderr.close()


def decode_limit(cap: float, rate: int) -> int:
    """The most frames a clip admitted under `cap` may decode to: the cap plus DURATION_MARGIN."""
    return math.floor((cap + DURATION_MARGIN) * rate)


def to_mono_16k(
    blocks: Iterator[np.ndarray], rate: int, channel: str, name: str, cap: float, header: Header | None = None
) -> np.ndarray:
    """Mix each (frames, channels) block to mono (or keep its first channel) and resample it to 16 kHz as it comes,
    so that only the 16 kHz result is kept; refuse the clip as soon as it passes the cap (closing `blocks`).

    soxr's streaming resampler gives, bit for bit, what resampling the whole clip at once gives.
    """
    limit = decode_limit(cap, rate)
    resampler = None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1, "float32", "HQ")
    pieces, frames = [], 0
    # A generator decoding a file is closed as soon as the clip is refused, which stops FFmpeg at once.
    with contextlib.closing(blocks) if hasattr(blocks, "close") else contextlib.nullcontext():
        for block in blocks:
            frames += len(block)
            if frames > limit:
                said = f", though its header says {header.seconds:.0f} s" if header and header.seconds else ""
                raise AudioError(f"{name}: the clip is longer than {cap:g} s{said} (decoding stopped there)")
            mono = np.ascontiguousarray(block[:, 0] if channel == "first" else block.mean(axis=1), dtype=np.float32)
            if not np.isfinite(mono).all():
                raise AudioError(f"{name}: audio contains NaN or infinite values")
            pieces.append(resampler.resample_chunk(mono) if resampler else mono)
    if frames == 0:
        raise AudioError(f"{name}: no audio samples")
    if resampler:
        pieces.append(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
    return np.concatenate(pieces)


def array_input(source) -> tuple[int, np.ndarray, str]:
    """(rate, float samples, the name errors give it) of a microphone tuple or a 16 kHz array."""
    if isinstance(source, tuple) and len(source) == 2:
        rate, samples = source
        if isinstance(rate, float | np.floating) and float(rate).is_integer():
            rate = int(rate)
        if isinstance(rate, bool) or not isinstance(rate, int | np.integer):
            raise AudioError(f"microphone audio: the sample rate must be a whole number of Hz, not {rate!r:.40}")
        return int(rate), to_float(as_array(samples, "microphone audio")), "microphone audio"
    if isinstance(source, np.ndarray):
        return SAMPLE_RATE, to_float(source), "audio array"
    raise AudioError(f"unsupported audio input of type {type(source).__name__}: give a path or a (rate, array)")


def as_array(samples, name: str) -> np.ndarray:
    try:
        return np.asarray(samples)
    except (TypeError, ValueError):  # a ragged list, or objects numpy cannot hold in one array
        raise AudioError(f"{name}: not an array of samples") from None


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


def as_frames(samples: np.ndarray, name: str) -> np.ndarray:
    """The array as (frames, channels). soundfile and Gradio give (samples, channels), torch (channels, samples):
    the shorter side is the channels."""
    if samples.ndim == 1:
        return samples[:, np.newaxis]
    if samples.ndim != 2:
        raise AudioError(f"{name}: expected a 1-D or 2-D audio array, got shape {samples.shape}")
    return samples.T if samples.shape[0] < samples.shape[1] else samples


def duration_of(source: AudioInput) -> float:
    """Seconds of audio, from the header the loader admits a file by (cheap); 0.0 when it cannot be told."""
    if isinstance(source, (str, Path)):
        try:
            return read_header(Path(source)).seconds or 0.0
        except AQAError:  # a bad file is reported properly when it is loaded; this is only a sort key
            return 0.0
    rate, samples = source if isinstance(source, tuple) else (SAMPLE_RATE, source)
    try:
        shape = np.shape(samples)
        return (max(shape) if len(shape) == 2 else len(samples)) / float(rate)
    except (TypeError, ValueError, ZeroDivisionError):
        return 0.0
