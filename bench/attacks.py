"""Attacks on the app as a public Space meets them: `python app.py` on loopback (the app's defaults, a tiny checkpoint)
sent each request of issue 21's table that reaches the app, and the disk and queue cases. Per attack: refused or
answered (and the one-line message), seconds, the server's peak RSS growth over its RSS before the attack, and
whether a normal question right after is answered (and in how many seconds).

    python -m aqa tiny /tmp/tiny-model
    python -m bench.attacks --model /tmp/tiny-model                    # every attack, a table
    python -m bench.attacks --model /tmp/tiny-model --json --output bench/results/cpu/attacks.json
    python -m bench.attacks --model /tmp/tiny-model --quick            # the suite's short form (tests/test_attacks.py)

The disk cases run on a second app with a small quota (--cache-quota), so that ten 47 MB uploads cross it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
from gradio_client import Client, handle_file

from aqa.app.settings import ASSETS, MiB
from bench.attack_requests import make_clips, page_answer, post_json, raw_call
from bench.serving import Server, app_server

NORMAL = (ASSETS / "speech_man.ogg", "Who is speaking?", ["Man", "Woman", "Child", "Robot"])


@dataclass(frozen=True)
class Outcome:
    attack: str
    result: str  # "refused", "answered" or "stopped" (cut at the time limit), or "error" (anything unexpected)
    message: str  # the refusal's one line, or what was answered
    seconds: float  # from sending to the answer or refusal
    rss_growth_mib: float  # the server's peak RSS during the attack, over its RSS before it
    normal_after: bool  # a normal question right after it was answered
    normal_seconds: float  # and how long that took
    extra: dict = field(default_factory=dict)  # what else the attack measures (held seconds, cache bytes...)


def rss_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as handle:
        fields = dict(line.split(":", 1) for line in handle)
    return int(fields[key].split()[0])


class PeakRss:
    """The peak of a process's RSS over a block, over its RSS at the start (Linux: writing 5 to clear_refs resets
    the peak, VmHWM)."""

    def __init__(self, pid: int):
        self.pid = pid

    def __enter__(self):
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        self.before = rss_kib(self.pid, "VmRSS")
        return self

    def __exit__(self, *_):
        self.growth_mib = max(0, rss_kib(self.pid, "VmHWM") - self.before) / 1024


def normal_question(server: Server) -> tuple[bool, float]:
    clip, question, options = NORMAL
    start = time.monotonic()
    try:
        client = Client(server.url, verbose=False)
        result = client.predict(handle_file(str(clip)), question, options, api_name="/answer")
    except Exception:
        return False, time.monotonic() - start
    return result.get("answer") in options, time.monotonic() - start


def attack(server: Server, name: str, send: Callable[[], tuple[str, str, dict]]) -> Outcome:
    """Run `send` (-> result, message, extra) under the RSS watch, then ask a normal question."""
    with PeakRss(server.process.pid) as peak:
        start = time.monotonic()
        try:
            result, message, extra = send()
        except Exception as error:  # a dropped connection, a timeout: whatever it is, it counts against the app
            result, message, extra = "error", f"{type(error).__name__}: {error}"[:300], {}
        seconds = time.monotonic() - start
    answered, normal_seconds = normal_question(server)
    return Outcome(name, result, message[:240], round(seconds, 3), round(peak.growth_mib, 1), answered,
                   round(normal_seconds, 3), extra)  # fmt: skip


def file_attack(server: Server, path: Path, question: str = "What is it?", options=("Rain", "Speech")):
    def send():
        try:
            result = Client(server.url, verbose=False).predict(
                handle_file(str(path)), question, list(options), api_name="/answer"
            )
        except Exception as error:
            return "refused", str(error), {}
        return "answered", f"answered {result.get('answer')!r}", {}

    return send


def body_attack(server: Server, body: bytes | Callable, parallel: int = 1):
    def send():
        results = [None] * parallel

        def one(number):
            results[number] = post_json(server.url + "gradio_api/call/answer", body)

        threads = [threading.Thread(target=one, args=(number,)) for number in range(parallel)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        statuses = sorted({status for status, _ in results})
        refused = all(status == 413 for status, _ in results)
        return ("refused" if refused else "answered"), f"HTTP {statuses}: {results[0][1]}", {}

    return send


def thinking_attack(server: Server, clip: Path, time_limit: float):
    """The page's own event, thinking mode, a 300 s clip; a normal /answer sent 1 s later waits behind it."""

    def send():
        waited = {}

        def normal_meanwhile():
            time.sleep(1.0)
            waited["answered"], waited["seconds"] = normal_question(server)

        other = threading.Thread(target=normal_meanwhile)
        other.start()
        done = page_answer(server.url, clip, "How does the pitch change?", "It rises\nIt falls", think=True)
        other.join()
        extra = {"held_s": done["held_s"], "limit_s": time_limit, "normal_meanwhile_s": round(waited["seconds"], 2)}
        extra["normal_meanwhile_answered"] = waited["answered"]
        return done["result"], done["message"], extra

    return send


def queue_attack(server: Server, count: int = 30):
    """One client submits `count` questions at once: it holds one place, the others are refused."""

    def send():
        client = Client(server.url, verbose=False)
        clip, question, options = NORMAL
        jobs = [client.submit(handle_file(str(clip)), question, options, api_name="/answer") for _ in range(count)]
        answered = refused = 0
        for job in jobs:
            try:
                job.result(timeout=300)
                answered += 1
            except Exception as error:
                refused += "429" in str(error) or "one question at a time" in str(error)
        message = f"{answered} answered, {refused} refused (one place per client), {count - answered - refused} other"
        return ("refused" if answered == 1 and refused == count - 1 else "error"), message, {}

    return send


def malformed_attack(server: Server, clip: Path, question, options):
    def send():
        result, message = raw_call(server.url, clip, question, options)
        return ("refused" if result == "error" else "answered"), message, {}

    return send


def disk_attack(server: Server, clips: list[Path], quota: int):
    """Upload every clip (and ask about none): the cache folder, sampled every 20 ms meanwhile, never holds more
    than the quota."""

    def send():
        largest, sampling = [0], threading.Event()

        def sample():
            while not sampling.is_set():
                largest[0] = max(largest[0], folder_bytes(server.cache))
                time.sleep(0.02)

        watcher = threading.Thread(target=sample)
        watcher.start()
        statuses = []
        for clip in clips:
            with clip.open("rb") as handle:
                files = {"files": (clip.name, handle)}
                response = httpx.post(server.url + "gradio_api/upload", files=files, timeout=120)
            statuses.append(response.status_code)
        sampling.set()
        watcher.join()
        total = sum(clip.stat().st_size for clip in clips) / MiB
        extra = {"largest_cache_mib": round(largest[0] / MiB, 1), "quota_mib": round(quota / MiB, 1)}
        extra["statuses"] = statuses
        kept = sum(status == 200 for status in statuses)
        return "answered", f"{kept} of {len(clips)} uploads taken ({total:.0f} MB in all)", extra

    return send


def folder_bytes(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            total += path.stat().st_size if path.is_file() else 0
        except OSError:
            continue
    return total


def request_attacks(server: Server, clips: dict, quick: bool, time_limit: float) -> list[Outcome]:
    """Every request of issue 21's table that reaches the app, and the queue case, one after the other."""
    outcomes = [attack(server, "warm-up: a normal question", file_attack(server, *clips["normal"]))]
    for name, clip in clips["files"]:
        outcomes.append(attack(server, name, file_attack(server, clip)))
    body = 20 * MiB if quick else 99 * MiB
    big = b'{"data": [null, "Q?", [' + b'"a",' * ((body - 40) // 4) + b'"a"]]}'
    outcomes.append(attack(server, f"a {len(big) / MiB:.0f} MB JSON body", body_attack(server, big)))
    del big
    parts = 4
    each = b'{"data": [null, "Q?", [' + b'"a",' * ((body // parts - 40) // 4) + b'"a"]]}'
    outcomes.append(
        attack(server, f"{parts} x {len(each) / MiB:.0f} MB JSON bodies at once", body_attack(server, each, parts))
    )
    del each
    chunked = lambda: (b"x" * 65536 for _ in range(body // 65536))  # noqa: E731  no Content-Length
    outcomes.append(attack(server, f"a {body // MiB} MB chunked JSON body", body_attack(server, chunked)))
    name = f"a {clips['long seconds']:.0f} s clip in thinking mode through the page's own event"
    outcomes.append(attack(server, name, thinking_attack(server, clips["long"], time_limit)))
    for name, (question, options) in clips["malformed"]:
        outcomes.append(attack(server, name, malformed_attack(server, clips["normal"][0], question, options)))
    outside = malformed_attack(server, Path("/etc/passwd"), "Q?", ["a", "b"])
    outcomes.append(attack(server, "a file path on the server, not an upload", outside))
    count = 10 if quick else 30
    outcomes.append(attack(server, f"one client, {count} questions at once", queue_attack(server, count)))
    return outcomes


def disk_attacks(server: Server, clips: dict, quota: int) -> list[Outcome]:
    uploads = clips["uploads"]
    name = f"{len(uploads)} different {uploads[0].stat().st_size / MiB:.0f} MB uploads (quota {quota // MiB} MB)"
    return [attack(server, name, disk_attack(server, uploads, quota))]


def run(model: str, quick: bool = False) -> dict:
    """Every attack, on the app's defaults but the time limit (10 s in the short form) and, for the disk case, the
    quota: the full run starts a second app for that case, with --cache-quota 200mb; the short form sets its 25 MB
    quota on its one app. Each app is stopped with SIGTERM afterwards and what it left in its cache folder counted."""
    time_limit, quota = (10.0, 25 * MiB) if quick else (120.0, 200 * MiB)
    with tempfile.TemporaryDirectory(prefix="aqa-attacks-") as folder:
        folder = Path(folder)
        clips = make_clips(folder, quick)
        args = ["--model", model, "--device", "cpu", "--time-limit", str(time_limit)]
        servers = []
        with app_server(args + (["--cache-quota", str(quota)] if quick else []), folder / "app") as server:
            outcomes = request_attacks(server, clips, quick, time_limit)
            if quick:
                outcomes += disk_attacks(server, clips, quota)
        servers.append(server)
        if not quick:
            with app_server(
                ["--model", model, "--device", "cpu", "--cache-quota", str(quota)], folder / "disk"
            ) as disk:
                outcomes += disk_attacks(disk, clips, quota)
            servers.append(disk)
        log = "".join(each.log.read_text(encoding="utf-8", errors="replace") for each in servers)
        left = sum(folder_bytes(each.cache) for each in servers)
    return {
        "model": Path(model).name,
        "quick": quick,
        "time_limit_s": time_limit,
        "outcomes": [asdict(outcome) for outcome in outcomes],
        "traceback_in_log": "Traceback" in log,
        "bytes_left_after_sigterm": left,
    }


def format_report(report: dict) -> str:
    lines = [
        "| attack | result | seconds | peak RSS growth (MiB) | a normal question after | message |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for o in report["outcomes"]:
        after = f"answered in {o['normal_seconds']:.2f} s" if o["normal_after"] else "NOT answered"
        extra = "".join(f"; {key} {value}" for key, value in o["extra"].items())
        message = o["message"].replace("|", "/") + extra
        cells = [o["attack"], o["result"], f"{o['seconds']:.2f}", f"{o['rss_growth_mib']:.0f}", after, message]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"\ntraceback in the server logs: {'YES' if report['traceback_in_log'] else 'no'}; ")
    lines[-1] += f"bytes left in the cache folders after SIGTERM: {report['bytes_left_after_sigterm']}"
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint directory (python -m aqa tiny DIR makes one)")
    parser.add_argument("--quick", action="store_true", help="the short form the test suite runs")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--output", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)
    report = run(args.model, args.quick)
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
