"""The one audio loader: every shape of input becomes 16 kHz mono float32, or a one-line AudioError."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from aqa import audio
from aqa.audio import SAMPLE_RATE, duration_of, load_audio
from aqa.errors import AudioError
from aqa.probe import DURATION_MARGIN

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
    ((0, np.zeros(100, dtype=np.int16)), "sample rate 0 Hz is outside 4-384 kHz", "rate 0"),
    (
        (1, np.zeros(100, dtype=np.int16)),
        "sample rate 1 Hz is outside 4-384 kHz",
        "rate 1, which resampling multiplies",
    ),
    ((768_000, np.zeros(100, dtype=np.int16)), "sample rate 768000 Hz is outside", "a rate no recorder makes"),
    (("44100", np.zeros(100, dtype=np.int16)), "sample rate must be a whole number of Hz", "a rate as text"),
    ((16000.5, np.zeros(100, dtype=np.int16)), "sample rate must be a whole number of Hz", "a fractional rate"),
    ((16000, np.zeros((100, 9), dtype=np.int16)), "9 channels (at most 8)", "9 microphone channels"),
    (np.zeros((9, 1000), dtype=np.float32), "9 channels (at most 8)", "a (channels, samples) array of 9 channels"),
    ((16000, [[0.0, 1.0], [0.0]]), "not an array of samples", "a ragged list"),
    (np.array([0.0, np.nan], dtype=np.float32), "NaN", "NaN samples"),
    (np.zeros((2, 2, 2), dtype=np.float32), "1-D or 2-D", "a 3-D array"),
    (np.array(["a", "b"]), "not a sound", "strings"),
    (42, "unsupported audio input", "a number"),
]


@pytest.mark.parametrize("source, message, reason", ARRAY_ERRORS, ids=[case[2] for case in ARRAY_ERRORS])
def test_bad_arrays(source, message, reason):
    with pytest.raises(AudioError) as raised:
        load_audio(source)
    assert message in str(raised.value) and "\n" not in str(raised.value), reason


@pytest.mark.parametrize(
    "source, name",
    [((8000, np.zeros(8000 * 11, np.int16)), "microphone audio"), (np.zeros(SAMPLE_RATE * 11, np.float32), "array")],
)
def test_arrays_longer_than_the_cap_are_refused(source, name):
    """A recording or an array gets the duration cap a file gets."""
    with pytest.raises(AudioError, match=rf"{name}: the clip is 11 s long \(at most 10 s\)"):
        load_audio(source, max_seconds=10)
    assert len(load_audio(source, max_seconds=11)) == 11 * SAMPLE_RATE


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


# --- audio bombs: small files that declare, or decode to, huge clips -----------------------------------------------


@pytest.fixture
def no_decoding(monkeypatch):
    """Fails a test if any sample is decoded: the refusals below must come from the header alone."""

    def decode(*args):
        raise AssertionError("a sample was decoded")

    monkeypatch.setattr(audio, "soundfile_blocks", decode)
    monkeypatch.setattr(audio, "ffmpeg_blocks", decode)


def flac_declaring(path: Path, seconds: int, rate: int, channels: int) -> Path:
    """A FLAC of 0.05 s of silence whose STREAMINFO declares `seconds`. Refusing it reads only that header, as for
    the issue's real 954 KB file of 600 s (5 s to encode; bench/audio_bombs.py makes and measures it)."""
    sf.write(path, np.zeros((rate // 20, channels), np.int16), rate, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = 8 + 10  # "fLaC", the block header, then STREAMINFO: rate (20 bits), channels, bits, total samples (36 bits)
    packed = int.from_bytes(data[at : at + 8], "big")
    packed = packed & ~(2**36 - 1) | seconds * rate
    data[at : at + 8] = packed.to_bytes(8, "big")
    path.write_bytes(bytes(data))
    assert sf.info(path).duration == seconds
    return path


def wav_declaring_1_hz(path: Path) -> Path:
    """A 40 KB WAV whose header says 1 Hz: resampled to 16 kHz its 20,000 samples would become 1.3 GB."""
    sf.write(path, np.zeros(20_000, np.int16), SAMPLE_RATE, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[24:32] = (1).to_bytes(4, "little") + (2).to_bytes(4, "little")  # sample rate, bytes per second
    path.write_bytes(bytes(data))
    assert sf.info(path).samplerate == 1
    return path


def playlist(path: Path, segments: list[Path]) -> Path:
    """An HLS playlist (.m3u8): FFmpeg opens every file it names, wherever it is."""
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:40"]
    for segment in segments:
        lines += ["#EXTINF:40,", str(segment)]
    path.write_text("\n".join([*lines, "#EXT-X-ENDLIST", ""]))
    return path


def test_a_flac_declaring_600_s_of_8_channels_at_192_khz_is_refused_before_decoding(tmp_path, no_decoding):
    """3.7 GB as float32 behind a small file: the app's cap (300 s) refuses it from its header."""
    path = flac_declaring(tmp_path / "bomb.flac", 600, 192_000, 8)
    with pytest.raises(AudioError, match=r"bomb.flac: the clip is 600 s long \(at most 300 s\)$"):
        load_audio(path, max_seconds=300)


def test_a_wav_whose_header_says_1_hz_is_refused_before_decoding(tmp_path, no_decoding):
    path = wav_declaring_1_hz(tmp_path / "1hz.wav")
    with pytest.raises(AudioError, match=r"1hz.wav: sample rate 1 Hz is outside 4-384 kHz$"):
        load_audio(path)


def test_more_than_8_channels_are_refused_before_decoding(tmp_path, no_decoding):
    path = tmp_path / "many.wav"
    sf.write(path, np.zeros((160, 9), np.int16), SAMPLE_RATE, subtype="PCM_16")
    with pytest.raises(AudioError, match=r"many.wav: 9 channels \(at most 8\)$"):
        load_audio(path)


def test_a_playlist_repeating_an_asset_is_refused_before_anything_is_read(tmp_path, clips, no_decoding):
    """500 times one clip: FFmpeg left to itself would decode them all (the issue: 57 s and +4.9 GB)."""
    path = playlist(tmp_path / "repeat.m3u8", [clips["tone.ogg"]] * 500)
    unguarded = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-t", "3", "-f", "f32le", "-ac", "1", "-"], capture_output=True
    )
    assert len(unguarded.stdout) > 2.5 * 22050 * 4, "without the lock-down FFmpeg plays the 1 s clip again and again"
    with pytest.raises(AudioError) as raised:
        load_audio(path)
    assert str(raised.value).startswith(f"{path}: not an audio format read here (FFmpeg sees 'hls'; accepted: m4a")


@pytest.mark.parametrize("suffix", [".mp3", ".wav"])
def test_a_playlist_naming_a_file_elsewhere_is_refused(tmp_path, suffix, no_decoding):
    """The file a playlist names lies outside the upload folder: it is never opened. FFmpeg alone reads the mp3 one
    (its HLS reader refuses .wav segments itself, but only as a matter of file name)."""
    elsewhere, uploads = tmp_path / "server", tmp_path / "uploads"
    elsewhere.mkdir()
    uploads.mkdir()
    secret = elsewhere / f"secret{suffix}"
    sf.write(elsewhere / "secret.wav", np.zeros(SAMPLE_RATE, np.int16), SAMPLE_RATE, subtype="PCM_16")
    if suffix == ".mp3":
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(elsewhere / "secret.wav"), str(secret)], check=True)
        unguarded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(playlist(uploads / "x.m3u8", [secret]))]
                                   + ["-f", "f32le", "-"], capture_output=True)  # fmt: skip
        assert len(unguarded.stdout) > 4 * SAMPLE_RATE // 2, "without the lock-down FFmpeg reads the file"
    path = playlist(uploads / "x.m3u8", [secret])
    with pytest.raises(AudioError, match=r"x.m3u8: not an audio format read here \(FFmpeg sees 'hls'"):
        load_audio(path)


def lying_aac(path: Path, said: int, holds: int) -> Path:
    """Raw AAC (ADTS) has no length in its header: FFmpeg estimates it from the bitrate of the first frames. One
    second of loud noise and then silence, which costs almost nothing, makes it say ~`said` s of a `holds` s clip."""
    noise, quiet = path.with_suffix(".noise.aac"), path.with_suffix(".quiet.aac")
    run = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i"]
    subprocess.run(
        [*run, "anoisesrc=r=8000:a=0.5:seed=1", "-t", "1", "-c:a", "aac", "-b:a", "64k", str(noise)], check=True
    )
    subprocess.run([*run, "anullsrc=r=8000:cl=mono", "-t", str(holds), "-c:a", "aac", str(quiet)], check=True)
    path.write_bytes(noise.read_bytes() + quiet.read_bytes())
    assert duration_of(path) == pytest.approx(said, abs=5)
    return path


def test_a_header_that_lies_about_its_length_decodes_no_further_than_the_cap(tmp_path, monkeypatch):
    """Its header says 30 s, it holds 300 s: decoding stops just past the cap, so memory follows the cap."""
    path = lying_aac(tmp_path / "lie.aac", said=30, holds=300)
    decoded = []
    blocks = audio.ffmpeg_blocks

    def counted(*args):
        for block in blocks(*args):
            decoded.append(len(block))
            yield block

    monkeypatch.setattr(audio, "ffmpeg_blocks", counted)
    with pytest.raises(AudioError, match=r"lie.aac: the clip is longer than 60 s, though its header says 3\d s"):
        load_audio(path, max_seconds=60)
    assert sum(decoded) <= (60 + DURATION_MARGIN) * 8000 + audio.DECODE_BLOCK
    assert len(load_audio(path)) == pytest.approx(301 * SAMPLE_RATE, rel=0.01), "without a cap: all of it"


def test_a_stream_whose_header_gives_no_length(tmp_path):
    """A FLAC written to a pipe has no length in its header (libsndfile says 2**63 frames): FFmpeg decodes it, up to
    the cap."""
    path = tmp_path / "stream.flac"
    with path.open("wb") as output:
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "40"]
                       + ["-f", "flac", "pipe:"], stdout=output, check=True)  # fmt: skip
    assert duration_of(path) == 0.0
    with pytest.raises(AudioError, match=r"stream.flac: the clip is longer than 30 s \(decoding stopped there\)$"):
        load_audio(path, max_seconds=30)
    assert len(load_audio(path)) == 40 * SAMPLE_RATE


def test_a_stuck_decoder_is_stopped(clips, monkeypatch):
    monkeypatch.setattr(audio, "DECODE_TIMEOUT", 0.001)
    with pytest.raises(AudioError, match=r"speech.m4a: decoding took longer than 0.001 s$"):
        load_audio(clips["speech.m4a"])


def test_a_name_ffmpeg_would_read_as_a_url_or_an_option_is_a_file_name(tmp_path, clips):
    """FFmpeg reads `concat:a|b` as a list of files to join; the loader hands it `file:` URLs only."""
    expected = load_audio(clips["speech.m4a"])
    for name in ("concat:speech.m4a|speech.m4a", "-i.m4a"):
        (tmp_path / name).write_bytes(clips["speech.m4a"].read_bytes())
        assert np.array_equal(load_audio(tmp_path / name), expected), name


@pytest.mark.parametrize(
    "name, tolerance",
    [("stereo_44k.wav", 0), ("tone.flac", 0), ("tone_8k.wav", 0), ("tone.ogg", 0), ("speech.mp3", 1e-6)],
)
def test_decoding_block_by_block_changes_no_sample(clips, name, tolerance, monkeypatch):
    """Mixing and resampling block by block gives, bit for bit, what the whole file read at once and resampled in
    one go gives (soxr's streaming resampler keeps its state across blocks). Only libsndfile's MP3 decoder rounds the
    last bit of some samples differently when read in parts (~1e-7 after resampling); with the default 65536-frame
    blocks a short MP3 is read whole."""
    samples, rate = sf.read(clips[name], dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    whole = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ") if rate != SAMPLE_RATE else mono
    monkeypatch.setattr(audio, "DECODE_BLOCK", 1000)
    blocked = load_audio(clips[name])
    assert len(blocked) == len(whole) and np.abs(blocked - whole).max() <= tolerance


def test_header_durations_through_ffprobe(clips):
    """Files libsndfile does not read get their duration from ffprobe (windows and sorting use it)."""
    assert duration_of(clips["speech.m4a"]) == pytest.approx(len(load_audio(clips["speech.m4a"])) / SAMPLE_RATE,
                                                             abs=0.01)  # fmt: skip
    assert duration_of(clips["text.wav"]) == 0.0


def test_without_ffmpeg_the_message_says_what_to_install(clips, tmp_path, monkeypatch):
    path = Path(shutil.copy(clips["speech.m4a"], tmp_path / "speech.m4a"))  # a header not read before
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(AudioError, match=r"speech.m4a: not a readable audio file \(.*\); install FFmpeg"):
        load_audio(path)


@pytest.mark.parametrize("cap", [0, -1.0, float("nan")])
def test_a_cap_that_is_not_positive_is_a_programming_error(cap):
    with pytest.raises(ValueError, match="max_seconds must be positive"):
        load_audio(np.zeros(160, np.float32), max_seconds=cap)


def test_a_header_is_read_again_when_its_file_changes(tmp_path):
    """Headers are remembered (ffprobe takes tens of milliseconds, and answering asks up to three times), but only
    while the file keeps its size and modification time."""
    path = tmp_path / "clip.wav"
    sf.write(path, np.zeros(SAMPLE_RATE), SAMPLE_RATE)
    assert duration_of(path) == 1.0
    sf.write(path, np.zeros(2 * SAMPLE_RATE), SAMPLE_RATE)
    assert duration_of(path) == 2.0 and len(load_audio(path)) == 2 * SAMPLE_RATE
