"""The one audio loader: every shape of input becomes 16 kHz mono float32, or a one-line AudioError."""

import subprocess

import numpy as np
import pytest
import soundfile as sf

from aqa.audio import SAMPLE_RATE, load_audio
from aqa.errors import AudioError

GOOD_FILES = [
    # (clip, expected seconds, reason)
    ("speech_16k_mono.wav", None, "already 16 kHz mono"),
    ("speech_22k.wav", None, "espeak-ng's 22.05 kHz output is resampled"),
    ("tone_8k.wav", 2.0, "8 kHz is upsampled"),
    ("stereo_44k.wav", 3.0, "44.1 kHz stereo is mixed down and resampled"),
    ("tone.flac", 1.5, "flac through soundfile"),
    ("speech.mp3", None, "mp3 through soundfile"),
    ("tone.ogg", 1.0, "ogg vorbis through soundfile"),
    ("speech.m4a", None, "m4a (AAC) through the FFmpeg fallback"),
    ("long_45s.wav", 45.0, "long clips are loaded whole; the 30 s policy is applied when answering"),
    ("short_50ms.wav", 0.05, "a 50 ms clip"),
    ("silence.wav", 2.0, "digital silence is valid audio"),
]


@pytest.mark.parametrize("name, seconds, reason", GOOD_FILES, ids=[case[2] for case in GOOD_FILES])
def test_load_good_files(clips, name, seconds, reason):
    samples = load_audio(clips[name])
    assert samples.dtype == np.float32 and samples.ndim == 1, reason
    if seconds is not None:
        assert len(samples) == pytest.approx(seconds * SAMPLE_RATE, abs=SAMPLE_RATE * 0.01), reason
    assert np.abs(samples).max() <= 1.5, reason


def test_speech_formats_agree(clips):
    """The same speech through wav, mp3 and m4a gives about the same length at 16 kHz."""
    lengths = [len(load_audio(clips[name])) for name in ("speech_22k.wav", "speech.mp3", "speech.m4a")]
    assert max(lengths) - min(lengths) < 0.1 * SAMPLE_RATE


BAD_FILES = [
    ("empty.wav", "empty file", "a 0-byte file"),
    ("text.wav", "not a readable audio file", "text renamed to .wav"),
    ("truncated.wav", "truncated WAV", "a WAV cut to a third of its size"),
    ("missing.wav", "file not found", "a path that does not exist"),
]


@pytest.mark.parametrize("name, message, reason", BAD_FILES, ids=[case[2] for case in BAD_FILES])
def test_bad_files_raise_one_line(clips, name, message, reason):
    path = clips.get(name, clips["empty.wav"].parent / name)
    with pytest.raises(AudioError) as raised:
        load_audio(path)
    text = str(raised.value)
    assert message in text and str(path) in text and "\n" not in text, reason


def test_microphone_tuple_int16_stereo():
    """Gradio's microphone gives (rate, int16 array of shape (n, channels))."""
    rate = 48000
    t = np.arange(rate) / rate
    left = (np.sin(2 * np.pi * 440 * t) * 16000).astype(np.int16)
    samples = load_audio((rate, np.stack([left, left], axis=1)))
    assert samples.dtype == np.float32 and len(samples) == SAMPLE_RATE
    assert np.abs(samples).max() == pytest.approx(16000 / 32768, rel=0.05)


def test_float_array_is_taken_as_16k_mono():
    array = np.random.default_rng(0).uniform(-0.5, 0.5, SAMPLE_RATE).astype(np.float64)
    samples = load_audio(array)
    assert samples.dtype == np.float32 and np.allclose(samples, array, atol=1e-6)


def test_channels_first_array_is_mixed():
    """torch-style (channels, samples) arrays are recognised by their shape."""
    array = np.stack([np.ones(1000), -np.ones(1000)]).astype(np.float32)
    assert np.allclose(load_audio(array), 0.0)


ARRAY_ERRORS = [
    ((16000, np.zeros(0, dtype=np.int16)), "no audio samples", "an empty recording"),
    ((0, np.zeros(100, dtype=np.int16)), "invalid sample rate", "rate 0"),
    (np.array([0.0, np.nan], dtype=np.float32), "NaN", "NaN samples"),
    (np.zeros((2, 2, 2), dtype=np.float32), "1-D or 2-D", "a 3-D array"),
    (np.array(["a", "b"]), "not a sound", "strings"),
    (42, "unsupported audio input", "a number"),
]


@pytest.mark.parametrize("source, message, reason", ARRAY_ERRORS, ids=[case[2] for case in ARRAY_ERRORS])
def test_bad_arrays(source, message, reason):
    with pytest.raises(AudioError, match=message):
        load_audio(source)


def test_streamed_wav_with_unknown_size_is_accepted(tmp_path):
    """Writers that cannot seek leave the data size at 0xFFFFFFFF; that is not truncation."""
    path = tmp_path / "streamed.wav"
    sf.write(path, np.zeros(1600, dtype=np.float32), SAMPLE_RATE, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = data.find(b"data")
    data[at + 4 : at + 8] = (0xFFFFFFFF).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    assert len(load_audio(path)) == 1600


@pytest.mark.parametrize("suffix", [".wav", ".m4a"], ids=["soundfile", "ffmpeg fallback"])
def test_first_channel_or_mix(tmp_path, suffix):
    """R1-AQA's scripts keep the first channel (`waveform[0]`); the default mixes. A stereo clip whose channels
    differ (a tone on the left, silence on the right) tells them apart, through soundfile and through FFmpeg."""
    rate = SAMPLE_RATE
    left = (0.5 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)
    wav = tmp_path / "stereo.wav"
    sf.write(wav, np.stack([left, np.zeros_like(left)], axis=1), rate)
    path = wav
    if suffix == ".m4a":
        path = tmp_path / "stereo.m4a"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-c:a", "aac", str(path)], check=True)
    first, mixed = load_audio(path, channel="first"), load_audio(path)
    level = np.sqrt(np.mean(first**2))
    assert level == pytest.approx(0.5 / np.sqrt(2), rel=0.05), "the first channel holds the whole tone"
    assert np.sqrt(np.mean(mixed**2)) == pytest.approx(level / 2, rel=0.05), "the mix halves it"


@pytest.mark.parametrize(
    "source", [(8000, np.stack([np.ones(800), -np.ones(800)], 1)), np.stack([np.ones(1600), -np.ones(1600)])]
)
def test_first_channel_of_arrays(source):
    """Arrays as (samples, channels) (Gradio's microphone) and as (channels, samples) (torch's layout)."""
    assert load_audio(source, channel="first").mean() == pytest.approx(1.0, abs=0.01)
    assert load_audio(source).mean() == pytest.approx(0.0, abs=0.01)


def test_unknown_channel_choice():
    with pytest.raises(AudioError, match="unknown channel choice 'left'"):
        load_audio(np.zeros(160, np.float32), channel="left")
