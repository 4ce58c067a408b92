"""What issue 21's audio bombs cost the loader: small files that declare, or decode to, huge clips.

Each file is built here, then loaded in a fresh process twice: with the app's default cap (300 s) and with none (the
library's one-hour ceiling, aqa.probe.MAX_SECONDS). Per load: refused or decoded, the one-line reason, seconds, the
process's peak RSS growth over what it held after its imports (FFmpeg, where it runs, streams into that process and
is not counted). A normal 40 s clip is loaded the same way, for comparison.

    python -m bench.audio_bombs                 # a Markdown table; --json for JSON
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
APP_CAP = 300.0  # app.py's default --max-seconds
BOMBS = {
    "flac": "FLAC: 8 channels, 192 kHz, 600 s of silence",
    "wav_1hz": "WAV whose header says 1 Hz",
    "m3u8_repeat": ".m3u8 repeating a 40 s clip 500 times",
    "m3u8_elsewhere": ".m3u8 naming an mp3 outside the upload folder",
    "aac_lying": "raw AAC whose header says ~150 s, holding 2 h",
    "flac_stream": "FLAC written to a pipe (no length in its header), 600 s",
    "normal": "a normal clip: assets/long_40s.ogg (40 s)",
}


def build(folder: Path) -> dict[str, Path]:
    """Every file of BOMBS under `folder` (the playlists in an `uploads` folder, their target outside it)."""
    uploads, elsewhere = folder / "uploads", folder / "server"
    uploads.mkdir(parents=True)
    elsewhere.mkdir()
    paths = {name: uploads / name for name in BOMBS}
    paths["flac"] = uploads / "bomb.flac"
    with sf.SoundFile(paths["flac"], "w", 192_000, 8, subtype="PCM_16") as output:
        silence = np.zeros((192_000 * 10, 8), np.int16)
        for _ in range(60):
            output.write(silence)
    paths["wav_1hz"] = uploads / "1hz.wav"
    sf.write(paths["wav_1hz"], np.zeros(20_000, np.int16), 16_000, subtype="PCM_16")
    data = bytearray(paths["wav_1hz"].read_bytes())
    data[24:32] = (1).to_bytes(4, "little") + (2).to_bytes(4, "little")  # sample rate, bytes per second
    paths["wav_1hz"].write_bytes(bytes(data))
    paths["m3u8_repeat"] = playlist(uploads / "repeat.m3u8", [ROOT / "assets" / "long_40s.ogg"] * 500)
    secret = elsewhere / "secret.mp3"
    ffmpeg("-f", "lavfi", "-i", "sine=f=440:r=16000", "-t", "10", str(secret))
    paths["m3u8_elsewhere"] = playlist(uploads / "elsewhere.m3u8", [secret])
    paths["aac_lying"] = uploads / "lie.aac"
    noise, quiet = folder / "noise.aac", folder / "quiet.aac"
    ffmpeg("-f", "lavfi", "-i", "anoisesrc=r=8000:a=0.5:seed=1", "-t", "5", "-c:a", "aac", "-b:a", "256k", str(noise))
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "7200", "-c:a", "aac", str(quiet))
    paths["aac_lying"].write_bytes(noise.read_bytes() + quiet.read_bytes())
    paths["flac_stream"] = uploads / "stream.flac"
    with paths["flac_stream"].open("wb") as output:
        command = ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo", "-t", "600"]
        subprocess.run([*command, "-f", "flac", "pipe:"], stdout=output, check=True)
    paths["normal"] = ROOT / "assets" / "long_40s.ogg"
    return paths


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def playlist(path: Path, segments: list[Path]) -> Path:
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:40"]
    for segment in segments:
        lines += ["#EXTINF:40,", str(segment)]
    path.write_text("\n".join([*lines, "#EXT-X-ENDLIST", ""]))
    return path


def measure(path: str, cap: float | None) -> dict:
    """One load in this process (the caller starts a fresh one per load), and its peak RSS growth over the process
    after its imports (the high-water mark is reset first)."""
    from aqa.audio import duration_of, load_audio
    from aqa.errors import AudioError

    header_seconds = duration_of(path)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak RSS, to the RSS now
    before = memory("VmRSS")
    start = time.perf_counter()
    try:
        seconds_decoded, reason = len(load_audio(path, max_seconds=cap)) / 16000, None
    except AudioError as error:
        seconds_decoded, reason = None, str(error).replace(str(Path(path).parent) + "/", "")
    elapsed = time.perf_counter() - start
    return {
        "header_seconds": round(header_seconds, 1),
        "refused": reason,
        "decoded_seconds": None if seconds_decoded is None else round(seconds_decoded, 1),
        "seconds": round(elapsed, 2),
        "peak_rss_growth_mib": round((memory("VmHWM") - before) / 1024, 1),
    }


def memory(field: str) -> int:
    """A /proc/self/status figure, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def run_all() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        paths = build(Path(folder))
        for name, path in paths.items():
            for cap in (APP_CAP, None):
                command = [sys.executable, "-m", "bench.audio_bombs", "--measure", str(path)]
                command += ["--cap", str(cap)] if cap else []
                done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
                size = path.stat().st_size
                rows.append({"file": name, "bytes": size, "cap": cap, **json.loads(done.stdout.splitlines()[-1])})
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| file | size | cap | result | seconds | peak RSS growth (MiB) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        result = f"refused: {row['refused']}" if row["refused"] else f"decoded {row['decoded_seconds']} s"
        cap = f"{row['cap']:g} s" if row["cap"] else "none (1 h)"
        size = f"{row['bytes']} bytes" if row["bytes"] < 1000 else f"{row['bytes'] / 1000:.0f} KB"
        lines.append(
            f"| {BOMBS[row['file']]} | {size} | {cap} | {result} | {row['seconds']} | {row['peak_rss_growth_mib']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # one load, in the fresh process run_all starts
    parser.add_argument("--cap", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.cap)))
        return
    rows = run_all()
    print(json.dumps(rows, indent=1) if args.json else table(rows))


if __name__ == "__main__":
    main()
