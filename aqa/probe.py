"""Admission: what a clip's header says, read before a single sample is decoded, and the bounds it must keep.

A small file can declare a huge clip (a 954 KB FLAC of silence holds 600 s of 8 channels at 192 kHz, 3.7 GB as
float32), a rate that resampling multiplies (a 40 KB WAV saying 1 Hz becomes 1.3 GB at 16 kHz), or be no audio at
all but a playlist that makes FFmpeg open other files on the server. So the loader reads the header first (libsndfile
for what it reads, else ffprobe locked down to an allow-list of audio formats and to local files) and refuses such a
clip in one line; `aqa.audio` then decodes at most the admitted duration, whatever the header said.
"""

from __future__ import annotations

import functools
import json
import math
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from aqa.errors import AudioError

# Telephone speech (8 kHz) is the lowest rate in common use; 4 kHz leaves room below it. A header far lower is a lie
# that resampling to 16 kHz would multiply (a 40 KB WAV declaring 1 Hz would become 1.3 GB).
MIN_SAMPLE_RATE = 4_000
# The highest rate studio converters record (DXD is 352.8 kHz); a header above it claims samples no recorder made.
MAX_SAMPLE_RATE = 384_000
# 7.1 surround. Every channel is decoded before the mix, so the channel count multiplies what one block costs.
MAX_CHANNELS = 8
# The longest clip when the caller sets no cap: an hour, 230 MB as 16 kHz mono float32. Decoding keeps only that (each
# block is mixed and resampled as it comes; twice that while the blocks are joined), however the file was made.
MAX_SECONDS = 3600.0
# Seconds a clip may decode beyond its cap: compressed formats' headers estimate their length (MP3 and AAC encoders
# add up to a few frames of delay and padding), and a clip at the cap must not be refused for its last frames.
DURATION_MARGIN = 1.0

# Formats FFmpeg may read (its demuxer names), for what libsndfile does not (m4a/AAC, webm/Opus, wma, amr...). None of
# them opens another file: playlists (hls, m3u8), concat, image sequences and the like are refused before anything
# is read, since they make FFmpeg open any file their text names. mov's references to external files ("drefs") are
# off by default in FFmpeg.
FFMPEG_FORMATS = {
    "mov": "m4a/mp4/mov",
    "aac": "aac",
    "matroska": "webm/mkv",
    "ogg": "ogg/opus",
    "mp3": "mp3",
    "wav": "wav",
    "flac": "flac",
    "amr": "amr",
    "asf": "wma",
    "aiff": "aiff",
    "caf": "caf",
}
# Input options of every ffprobe and ffmpeg call: local files only (no http, no `concat:` or `subfile:` URLs), and
# only the formats above.
FFMPEG_LOCKDOWN = ["-protocol_whitelist", "file", "-format_whitelist", ",".join(FFMPEG_FORMATS)]
PROBE_TIMEOUT = 10  # seconds ffprobe may take to read a header (it reads at most a few MB)
UNKNOWN_FRAMES = 2**63 - 1  # what libsndfile reports as the length of a stream whose header does not say (FLAC)
REFUSED_FORMAT = re.compile(r"\[(\w+) @ 0x[0-9a-f]+\] Format not on whitelist")


@dataclass(frozen=True)
class Header:
    """What a file's header says about its audio."""

    rate: int  # samples per second per channel
    channels: int
    seconds: float | None  # None: the header does not say (a stream); decoding finds out, up to the cap
    reader: str  # "soundfile", or the FFmpeg demuxer (in FFMPEG_FORMATS) that decodes it


def read_header(path: Path) -> Header:
    """The header of an audio file, from libsndfile (wav/flac/ogg/mp3...) or else from ffprobe; AudioError in one
    line for a missing, empty, truncated or unreadable file and for a format FFmpeg may not read.

    Answering reads a clip's header up to three times (to sort, to plan windows, to load) and ffprobe takes tens of
    milliseconds, so headers are remembered for as long as the file keeps its size and modification time.
    """
    check_file(path)
    status = path.stat()
    return remembered_header(path, path.absolute(), status.st_size, status.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def remembered_header(path: Path, absolute: Path, size: int, modified: int) -> Header:
    """read_header's work on `path` (named as given in messages); the other arguments only complete the cache key,
    so that another file, or this one changed, is read again."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        return probe_with_ffmpeg(path, reason=last_line(str(error)))
    check_complete(path)
    if info.frames >= UNKNOWN_FRAMES:  # a FLAC written to a pipe: libsndfile cannot read it block by block
        return probe_with_ffmpeg(path, reason="no length in its header")
    rate = info.samplerate
    return Header(rate, info.channels, info.frames / rate if rate > 0 else None, "soundfile")


def check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if not path.is_file():  # a folder, a FIFO or a device (/dev/zero) would never end
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


def probe_with_ffmpeg(path: Path, reason: str) -> Header:
    """ffprobe's reading of the first audio stream, with local files only and the allowed formats only; `reason` is
    why libsndfile could not read the file (shown when FFmpeg is missing)."""
    if shutil.which("ffprobe") is None:
        raise AudioError(f"{path}: not a readable audio file ({reason}); install FFmpeg for m4a/aac/webm")
    entries = "format=format_name,duration:stream=sample_rate,channels,duration"
    command = ["ffprobe", "-v", "error", *FFMPEG_LOCKDOWN, "-select_streams", "a:0", "-show_entries", entries]
    command += ["-of", "json", ffmpeg_url(path)]
    try:
        done = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL, timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AudioError(f"{path}: its header took longer than {PROBE_TIMEOUT} s to read") from None
    errors = done.stderr.decode(errors="replace")
    if refused := REFUSED_FORMAT.search(errors):
        accepted = ", ".join(FFMPEG_FORMATS.values())
        raise AudioError(
            f"{path}: not an audio format read here (FFmpeg sees {refused.group(1)!r}; accepted: {accepted})"
        )
    if done.returncode != 0:
        raise AudioError(f"{path}: not a readable audio file ({ffmpeg_reason(errors, path)})")
    found = json.loads(done.stdout or b"{}")
    streams, container = found.get("streams") or [], found.get("format") or {}
    if not streams:
        raise AudioError(f"{path}: no audio stream")
    demuxer = next((name for name in container.get("format_name", "").split(",") if name in FFMPEG_FORMATS), None)
    if demuxer is None:  # cannot happen with the whitelist above; refused all the same if FFmpeg ever disagreed
        raise AudioError(f"{path}: not an audio format read here (FFmpeg sees {container.get('format_name')!r})")
    stream = streams[0]
    return Header(
        number(stream.get("sample_rate"), int) or 0,
        number(stream.get("channels"), int) or 0,
        number(stream.get("duration"), float) or number(container.get("duration"), float),
        demuxer,
    )


def ffmpeg_url(path: Path) -> str:
    """An explicit file URL: a name like `concat:a|b` or `-i` is then only ever a file name."""
    return f"file:{path.absolute()}"


def ffmpeg_reason(errors: str, path: Path) -> str:
    lines = errors.strip().splitlines()
    return lines[-1].removeprefix(ffmpeg_url(path) + ": ") if lines else "no audio stream"


def number(text, kind: type) -> int | float | None:
    try:
        value = kind(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "unreadable"


def admit(name: str, rate: int, channels: int, seconds: float | None, cap: float) -> None:
    """Refuse, in one line, a clip whose rate, channel count or duration (as declared: decoding checks the rest) is
    out of bounds."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"{name}: sample rate {rate} Hz is outside {MIN_SAMPLE_RATE // 1000}-{MAX_SAMPLE_RATE // 1000} kHz"
        )
    if channels < 1:
        raise AudioError(f"{name}: no audio channels")
    if channels > MAX_CHANNELS:
        raise AudioError(f"{name}: {channels} channels (at most {MAX_CHANNELS})")
    if seconds is not None and seconds > cap:
        raise AudioError(f"{name}: the clip is {seconds:.0f} s long (at most {cap:g} s)")
