"""The requests of bench/attacks.py: the files an attacker uploads (audio bombs, playlists, big uploads) and the raw
HTTP calls a client library would not make (malformed fields, a path outside the uploads, the page's own event)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

from aqa.app.settings import ASSETS, MiB

JSON = {"content-type": "application/json"}
ASSET = ASSETS / "long_40s.ogg"  # a 40 s clip a playlist can name on the server: the app's own example


def make_clips(folder: Path, quick: bool) -> dict:
    """Every file the attacks send, made in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    bomb = folder / "silence_8ch_192k_600s.flac"  # 954 KB: FLAC stores 600 s of 8-channel silence in next to nothing
    silence = ["sox", "-D", "-n", "-r", "192000", "-c", "8", "-b", "16", str(bomb), "trim", "0", "600"]  # no dither
    subprocess.run(silence, check=True)
    one_hz = folder / "one_hz.wav"  # 40 KB whose header says 1 Hz: 20,000 s to resample to 16 kHz
    sf.write(one_hz, np.zeros(20_000, dtype=np.int16), 1, subtype="PCM_16")
    repeats = folder / "repeats.m3u8"  # 24 KB naming one 40 s file on the server 500 times: 5.5 hours
    repeats.write_text("#EXTM3U\n" + f"#EXTINF:40,\n{ASSET}\n" * 500)
    elsewhere = folder / "elsewhere.m3u8"  # a few bytes naming a media file elsewhere on the server
    elsewhere.write_text(f"#EXTM3U\n#EXTINF:5,\n{ASSETS / 'speech_man.ogg'}\n")
    long_clip = folder / "tone_300s.ogg"
    subprocess.run(["sox", "-n", "-r", "16000", str(long_clip), "synth", "300", "sine", "200-2000"], check=True)
    count, size = (4, 10 * MiB) if quick else (10, 47 * MiB)
    uploads = []
    for number in range(count):  # different bytes each: Gradio keeps one copy of identical uploads
        path = folder / f"upload_{number}.wav"
        noise = np.random.default_rng(number).integers(-3000, 3000, size // 2, dtype=np.int16)
        sf.write(path, noise, 16000, subtype="PCM_16")
        uploads.append(path)
    return {
        "normal": (ASSETS / "speech_man.ogg", "Who is speaking?", ["Man", "Woman", "Child", "Robot"]),
        "files": [
            (f"a {size_of(bomb)} FLAC: 8 channels, 192 kHz, 600 s of silence", bomb),
            (f"a {size_of(one_hz)} WAV whose header says 1 Hz", one_hz),
            (f"a {size_of(repeats)} .m3u8 repeating one 40 s file 500 times", repeats),
            (f"a {size_of(elsewhere)} .m3u8 naming a media file elsewhere on the server", elsewhere),
        ],
        "long": long_clip,
        "long seconds": 300.0,
        "malformed": [
            ("a lone surrogate in the question", ("Is it \ud800?", ["Man", "Woman"])),
            ("options sent as a number", ("Who?", 42)),
            ("an option that is a null byte", ("Who?", ["Man", "\x00"])),
        ],
        "uploads": uploads,
    }


def size_of(path: Path) -> str:
    size = path.stat().st_size
    return f"{size / MiB:.1f} MB" if size >= MiB else f"{size / 1024:.0f} KB" if size >= 1024 else f"{size}-byte"


def post_json(url: str, body) -> tuple[int, str]:
    """POST a JSON body (bytes, or a function giving the chunks of a body sent without a Content-Length): the
    status and the reply's first 200 characters."""
    content = body() if callable(body) else body
    try:
        response = httpx.post(url, content=content, headers=JSON, timeout=120)
    except httpx.TransportError as error:
        return 0, f"{type(error).__name__}: {error}"
    return response.status_code, response.text[:200]


def upload(url: str, clip: Path) -> str:
    with clip.open("rb") as handle:
        response = httpx.post(url + "gradio_api/upload", files={"files": (clip.name, handle)}, timeout=120)
    response.raise_for_status()
    return response.json()[0]


def file_data(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def raw_call(url: str, clip: Path, question, options) -> tuple[str, str]:
    """`/answer` by hand, as a script sends it: ("error", its message) or ("complete", the answer). The clip is
    uploaded first if it is one of the attacker's; a path on the server (outside the uploads) is sent as it is."""
    path = upload(url, clip) if not str(clip).startswith("/etc/") else str(clip)
    body = json.dumps({"data": [file_data(path), question, options]}).encode()  # surrogates escaped, as JSON allows
    response = httpx.post(url + "gradio_api/call/answer", content=body, headers=JSON)
    if response.status_code != 200:
        return "error", f"HTTP {response.status_code}: {response.text[:200]}"
    event = response.json()["event_id"]
    stream = httpx.get(url + f"gradio_api/call/answer/{event}", timeout=300).text
    kind, _, data = stream.partition("\ndata: ")
    kind, data = kind.removeprefix("event: ").strip(), json.loads(data.splitlines()[0])
    if kind == "error":
        return "error", data.get("error") or "(no message)"
    return "complete", f"answered {data[0].get('answer')!r}"


def page_answer(url: str, clip: Path, question: str, options_text: str, think: bool) -> dict:
    """The page's own event (the one its Answer button fires, which the API's clients do not see), as a script can
    send it, a clip uploaded first: the result ("answered", "stopped" at the time limit, "refused"), the status
    line's text, and how long it held the models (from its start to its end)."""
    output, held = page_event(url, [file_data(upload(url, clip)), question, options_text, think, None])
    status = status_text(output.get("data", []))
    result = "stopped" if "time limit" in status else "refused" if "Not answered" in status else "answered"
    return {"result": result, "message": status, "held_s": held}


def page_event(url: str, data: list) -> tuple[dict, float]:
    """Send the page's own event with `data` (the clip's file data, the question, the options text, thinking mode,
    and the page's state, which the server keeps): joins the queue and reads the stream to the end. Its last
    output, and the seconds from its start to its end."""
    config = httpx.get(url + "config").json()
    [index] = [dependency["id"] for dependency in config["dependencies"] if dependency.get("api_name") == "answer_run"]
    session = uuid.uuid4().hex[:10]
    body = {"data": data, "fn_index": index, "session_hash": session, "event_data": None, "trigger_id": None}
    joined = httpx.post(url + "gradio_api/queue/join", content=json.dumps(body).encode(), headers=JSON)
    joined.raise_for_status()
    event, started = joined.json()["event_id"], None
    with httpx.stream("GET", url + f"gradio_api/queue/data?session_hash={session}", timeout=None) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("event_id") != event:
                continue
            if message.get("msg") == "process_starts":
                started = time.monotonic()
            if message.get("msg") == "process_completed":
                ended = time.monotonic()
                return message.get("output", {}), round(ended - (started or ended), 2)
    raise RuntimeError("the event's stream ended before it completed")


def status_text(outputs: list) -> str:
    """The status line's text among an event's outputs (a value, or an update holding one)."""
    for output in outputs:
        value = output.get("value") if isinstance(output, dict) else output
        if isinstance(value, str) and ("Answered" in value or "Not answered" in value or "Stopped" in value):
            return " ".join(value.split())
    return "(no status line)"
