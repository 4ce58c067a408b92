"""Build R1-AQA's training file from AVQA: find each clip's media, extract 16 kHz mono WAV, write JSONL rows.

AVQA's audio cannot be redistributed, so everyone rebuilds it from their own copy of the VGGSound clips:

    python -m train.prepare_avqa --qa train_qa.json --media /data/vggsound --out data/avqa_train.jsonl --workers 8

Each row is AVQA's annotation (id, video_name, video_id, question_text, multi_choice, answer, question_relation,
question_type) plus `dataset_name: "AVQA"` and `audio_path`, written RELATIVE to the output file's folder (e.g.
`avqa_audio/-HG3Omg_89c_000030.wav`); `train.data` resolves it against that folder, so the folder can be moved whole.
Clips whose media is missing or unreadable are left out, counted, and listed in `<out stem>.missing.txt`
(`video_name<TAB>reason`); rerunning skips clips already extracted and valid, so a killed run loses nothing.

A stereo clip becomes its first channel (`--channel first`, the default): R1-AQA's data loader keeps `waveform[0]` of
whatever file it reads, so this is what it hears from a clip whose channels were kept. R1-AQA did not publish how
its own WAVs were made; `--channel mix` averages the channels instead (FFmpeg's down-mix).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
from tqdm.auto import tqdm

from aqa.audio import CHANNELS, SAMPLE_RATE
from aqa.errors import AQAError, InputError
from aqa.jsonl import write_jsonl
from aqa.probe import check_complete

DATASET_NAME = "AVQA"
# Audio first: when a folder holds both `x.wav` and `x.mp4`, decoding the audio file is cheaper and loses nothing.
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".wma")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv", ".3gp", ".mpg", ".mpeg", ".ts", ".wmv")
MEDIA_SUFFIXES = AUDIO_SUFFIXES + VIDEO_SUFFIXES
# VGGSound files are `<youtube id>_<start, 6 digits>`; R1-AQA's own wavs dropped the zeros (`-HG3Omg_89c_30.wav`).
START_SECONDS = re.compile(r"^(?P<video>.+)_(?P<start>\d+)$")
# FFmpeg options that make one channel of many: the first one (pan filter), or FFmpeg's down-mix.
CHANNEL_OPTIONS = {"first": ["-af", "pan=mono|c0=c0"], "mix": ["-ac", "1"]}
assert set(CHANNEL_OPTIONS) == set(CHANNELS)


@dataclass(frozen=True)
class Clip:
    name: str  # AVQA's video_name
    source: Path | None  # the media file found under --media, None when there is none
    target: Path  # the 16 kHz mono WAV to write


@dataclass(frozen=True)
class Outcome:
    clip: Clip
    status: str  # "extracted", "existing" (already there and valid), "missing" (no media) or "failed"
    reason: str = ""  # why a clip is missing or failed


def load_annotations(path: Path) -> list[dict]:
    """AVQA's annotation file: a JSON array (train_qa.json) or JSON lines; one-line InputError when unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InputError(f"{path}: cannot read the annotation file ({error.strerror or error})") from None
    try:
        rows = json.loads(text) if text.lstrip().startswith("[") else [json.loads(ln) for ln in text.splitlines() if ln]
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not a JSON array or JSON lines ({error.msg}, line {error.lineno})") from None
    if not all(isinstance(row, dict) for row in rows):
        raise InputError(f"{path}: every annotation must be a JSON object")
    return rows


def media_keys(stem: str) -> list[str]:
    """The names a clip may be found under: as given, and with the start time's leading zeros dropped."""
    match = START_SECONDS.match(stem)
    short = f"{match['video']}_{int(match['start'])}" if match else stem
    return [stem] if short == stem else [stem, short]


def index_media(root: Path) -> dict[str, Path]:
    """Every media file under `root` (searched once, recursively) by name without extension; audio files win."""
    found = sorted(
        (MEDIA_SUFFIXES.index(path.suffix.lower()), str(path))
        for path in root.rglob("*")
        if path.suffix.lower() in MEDIA_SUFFIXES and path.is_file()
    )
    index: dict[str, Path] = {}
    for _, path in found:
        for key in media_keys(Path(path).stem):
            index.setdefault(key, Path(path))
    return index


def find_media(name: str, index: dict[str, Path]) -> Path | None:
    return next((index[key] for key in media_keys(name) if key in index), None)


def is_valid_wav(path: Path) -> bool:
    """A finished extraction: a complete 16 kHz mono WAV with at least one sample."""
    try:
        info = sf.info(str(path))
        check_complete(path)
    except (sf.LibsndfileError, RuntimeError, AQAError, OSError):
        return False
    return info.format == "WAV" and info.samplerate == SAMPLE_RATE and info.channels == 1 and info.frames > 0


def extract(clip: Clip, channel: str = "first") -> Outcome:
    """FFmpeg to a temporary file, then an atomic rename, so a killed run never leaves a half-written WAV behind."""
    if clip.target.exists() and is_valid_wav(clip.target):
        return Outcome(clip, "existing")
    if clip.source is None:
        return Outcome(clip, "missing", "no media file found")
    partial = clip.target.with_name(clip.target.name + ".part")
    command = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(clip.source), "-vn"]
    command += [*CHANNEL_OPTIONS[channel], "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le", "-f", "wav", str(partial)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not is_valid_wav(partial):
        partial.unlink(missing_ok=True)
        lines = done.stderr.strip().splitlines()
        return Outcome(clip, "failed", f"ffmpeg: {lines[-1] if lines else 'no audio decoded'}")
    os.replace(partial, clip.target)
    return Outcome(clip, "extracted")


def extract_all(clips: Sequence[Clip], workers: int, channel: str = "first") -> list[Outcome]:
    """Extract in threads (FFmpeg runs in its own process, so threads are enough), with a progress bar."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(extract, clip, channel) for clip in clips]
        bar = tqdm(as_completed(futures), total=len(futures), desc="extracting audio", unit="clip")
        return [future.result() for future in bar]


def make_clips(rows: Iterable[dict], media: dict[str, Path], audio_dir: Path) -> list[Clip]:
    """One clip per distinct video_name (several questions share a video)."""
    names = dict.fromkeys(str(row["video_name"]) for row in rows if row.get("video_name"))
    return [Clip(name, find_media(name, media), audio_dir / f"{name}.wav") for name in names]


def output_rows(rows: Iterable[dict], ready: dict[str, Path], out: Path) -> list[dict]:
    """AVQA's rows, in their order, for the clips that are ready, with dataset_name and the relative audio_path."""
    return [
        {**row, "dataset_name": DATASET_NAME, "audio_path": os.path.relpath(ready[name], out.parent)}
        for row in rows
        if (name := str(row.get("video_name"))) in ready
    ]


def write_missing(outcomes: Sequence[Outcome], path: Path) -> None:
    """The clips left out, one `video_name<TAB>reason` per line; no file (and no stale one) when nothing is missing."""
    lost = [outcome for outcome in outcomes if outcome.status in ("missing", "failed")]
    if not lost:
        path.unlink(missing_ok=True)
        return
    path.write_text("".join(f"{o.clip.name}\t{o.reason}\n" for o in lost), encoding="utf-8")


def missing_list_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.missing.txt")


def prepare(
    qa: Path, media: Path, out: Path, audio_dir: Path | None = None, workers: int = 4, channel: str = "first"
) -> Counter:
    """Build `out` from the annotations `qa` and the media under `media`; returns counts by outcome and `rows`."""
    if not media.is_dir():
        raise InputError(f"{media}: no such media directory")
    if shutil.which("ffmpeg") is None:
        raise InputError("FFmpeg is needed to extract audio: install it (apt-get install ffmpeg)")
    rows = load_annotations(qa)
    audio_dir = audio_dir or out.parent / "avqa_audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    outcomes = extract_all(make_clips(rows, index_media(media), audio_dir), workers, channel)
    ready = {o.clip.name: o.clip.target for o in outcomes if o.status in ("extracted", "existing")}
    written = output_rows(rows, ready, out)
    write_jsonl(out, written)
    write_missing(sorted(outcomes, key=lambda o: o.clip.name), missing_list_path(out))
    counts = Counter(outcome.status for outcome in outcomes)
    counts.update(questions=len(rows), clips=len(outcomes), rows=len(written))
    return counts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m train.prepare_avqa", description=__doc__.split("\n\n")[0])
    parser.add_argument("--qa", type=Path, required=True, help="AVQA annotation file (train_qa.json)")
    parser.add_argument("--media", type=Path, required=True, help="folder searched recursively for the clips")
    parser.add_argument("--out", type=Path, required=True, help="output JSONL (e.g. data/avqa_train.jsonl)")
    parser.add_argument("--audio-dir", type=Path, help="where the WAVs go (default: avqa_audio/ beside --out)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="parallel FFmpeg jobs")
    parser.add_argument(
        "--channel",
        choices=CHANNELS,
        default="first",
        help="a stereo clip's first channel (R1-AQA's loader keeps waveform[0]; the default) or the mix of all",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        counts = prepare(args.qa, args.media, args.out, args.audio_dir, args.workers, args.channel)
    except AQAError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"{counts['questions']} questions, {counts['clips']} clips: {counts['extracted']} extracted, "
        f"{counts['existing']} already there, {counts['missing']} missing, {counts['failed']} failed; "
        f"wrote {counts['rows']} rows to {args.out}"
    )
    if counts["missing"] or counts["failed"]:
        print(f"clips left out are listed in {missing_list_path(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
