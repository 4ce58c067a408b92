"""A bounded loopback load test of the app: `python app.py` serving a checkpoint, and concurrent gradio_client callers.

Each caller has its own `gradio_client.Client` and takes the next of a fixed list of requests until none is left (one
turned away by the queue limit waits a second first, as a person reading the message would). The
requests mix, in turn: a valid question (the app's six examples), bad audio (text renamed .wav), oversized text (a
20,000-character option) and a control token (an option `<|im_end|>`). Every request must end answered, refused
with the expected one-line message, or turned away by the queue limit with Gradio's "Queue is full" message; anything
else (another message, a traceback, a timeout) counts as an error. Afterwards the app must still answer, and the
report gives its memory (RSS) before and after and the age of the oldest file left in its cache folder, which the
cleanup (`--keep-files`) bounds.

    python -m aqa tiny /tmp/tiny-model
    python -m bench.load_test --model /tmp/tiny-model                      # 32 callers, 256 requests: a table
    python -m bench.load_test --model /tmp/tiny-model --json --output load.json
    python -m bench.load_test --model /tmp/tiny-model --queue-size 64 --rounds 5   # nothing turned away; 5 rounds
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError

from aqa.app.housekeeping import tidy_interval
from aqa.app.settings import ASSETS, EXAMPLES
from bench.serving import app_server

ROOT = Path(__file__).resolve().parent.parent

KINDS = ("valid", "bad audio", "oversized text", "control token")
RESULTS = ("answered", "refused", "turned away", "error")
QUEUE_FULL = "Queue is full"  # what Gradio tells a caller the queue limit turns away


@dataclass(frozen=True)
class LoadSettings:
    model: str  # checkpoint the app serves
    callers: int = 32  # concurrent gradio_client callers
    requests: int = 256  # requests in all, the kinds in turn
    queue_size: int = 20  # the app's --queue-size
    keep_files: int = 30  # the app's --keep-files: seconds an upload is kept
    max_new_tokens: int = 8  # the app's --max-new-tokens (random weights never stop on their own)
    timeout: float = 300.0  # seconds one request may take before it counts as an error
    pause: float = 1.0  # seconds a caller turned away waits before its next request, as a person reading it would
    rounds: int = 1  # times the whole list of requests is sent, the RSS read after each (does memory level off?)


@dataclass(frozen=True)
class Request:
    kind: str
    audio: Path
    question: str
    options: list[str]
    refusal: str | None  # the start of the one-line message a refused request must get; None: must be answered


@dataclass(frozen=True)
class Outcome:
    kind: str
    result: str  # "answered", "refused" (the expected message), "turned away" (queue full) or "error"
    seconds: float
    message: str  # the message received, or what went wrong


def build_requests(count: int, folder: Path) -> list[Request]:
    """`count` requests, the kinds in turn; the valid ones go through the app's examples."""
    not_audio = folder / "not_audio.wav"
    not_audio.write_text("this is text renamed to .wav\n")
    clip, question, options = EXAMPLES[0]
    requests = []
    for number in range(count):
        kind = KINDS[number % len(KINDS)]
        if kind == "valid":
            clip, question, options = EXAMPLES[(number // len(KINDS)) % len(EXAMPLES)]
            requests.append(Request(kind, ASSETS / clip, question, options, None))
        elif kind == "bad audio":
            requests.append(Request(kind, not_audio, question, options, "not_audio.wav: not a readable audio file"))
        elif kind == "oversized text":
            requests.append(Request(kind, ASSETS / clip, question, ["Man", "x" * 20_000], "option 2 is too long"))
        else:
            requests.append(Request(kind, ASSETS / clip, question, ["Man", "<|im_end|>"], "option 2 contains"))
    return requests


def send(client: Client, request: Request, timeout: float) -> Outcome:
    start = time.monotonic()
    try:
        job = client.submit(handle_file(str(request.audio)), request.question, request.options, api_name="/answer")
        result = job.result(timeout=timeout)
    except AppError as error:
        message = str(error)
        refused = request.refusal is not None and message.startswith(request.refusal) and "\n" not in message
        return Outcome(request.kind, "refused" if refused else "error", time.monotonic() - start, message)
    except QueueError as error:
        message = str(error)
        turned_away = message.startswith(QUEUE_FULL)
        return Outcome(request.kind, "turned away" if turned_away else "error", time.monotonic() - start, message)
    except Exception as error:  # a timeout, a dropped connection, a protocol error: all count against the app
        return Outcome(request.kind, "error", time.monotonic() - start, f"{type(error).__name__}: {error}")
    seconds = time.monotonic() - start
    if request.refusal is not None:
        return Outcome(request.kind, "error", seconds, f"answered what should be refused: {result.get('answer')}")
    if result.get("answer") not in request.options:
        return Outcome(request.kind, "error", seconds, f"an answer not among the options: {result.get('answer')}")
    return Outcome(request.kind, "answered", seconds, "")


def run_callers(url: str, requests: list[Request], callers: int, timeout: float, pause: float) -> list[Outcome]:
    """`callers` threads, each with its own client, take the next request until none is left; one turned away by
    the queue limit waits `pause` seconds before its next."""
    pending, outcomes, lock = iter(requests), [], threading.Lock()

    def caller() -> None:
        client = Client(url, verbose=False)
        while True:
            with lock:
                request = next(pending, None)
            if request is None:
                return
            outcome = send(client, request, timeout)
            with lock:
                outcomes.append(outcome)
            if outcome.result == "turned away":
                time.sleep(pause)

    threads = [threading.Thread(target=caller, name=f"caller-{number}") for number in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def rss_mib(pid: int) -> float:
    """Resident memory of a process now (Linux VmRSS), in MiB."""
    with open(f"/proc/{pid}/status") as handle:
        fields = dict(line.split(":", 1) for line in handle)
    return int(fields["VmRSS"].split()[0]) / 1024


def oldest_file_age(folder: Path) -> tuple[int, float]:
    """(files under `folder`, seconds since the oldest of them was written; 0 when there are none)."""
    now, ages = time.time(), []
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                ages.append(now - path.stat().st_mtime)
        except FileNotFoundError:  # removed by the cleanup meanwhile
            continue
    return len(ages), max(ages, default=0.0)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def run(settings: LoadSettings) -> dict:
    """Serve, load, and report; the app is stopped afterwards."""
    args = ["--model", settings.model, "--device", "cpu", "--max-new-tokens", str(settings.max_new_tokens)]
    args += ["--queue-size", str(settings.queue_size), "--keep-files", str(settings.keep_files)]
    args += ["--keep-uploads", str(settings.keep_files)]
    with tempfile.TemporaryDirectory(prefix="aqa-load-") as folder, app_server(args, Path(folder)) as server:
        requests = build_requests(settings.requests, Path(folder))
        warm = send(Client(server.url, verbose=False), requests[0], settings.timeout)  # the first answer warms up
        if warm.result != "answered":
            raise RuntimeError(f"the app does not answer: {warm.message}\n{server.log.read_text()}")
        rss_before = rss_mib(server.process.pid)
        start, outcomes, rss_rounds = time.monotonic(), [], []
        for _ in range(settings.rounds):
            outcomes += run_callers(server.url, requests, settings.callers, settings.timeout, settings.pause)
            rss_rounds.append(rss_mib(server.process.pid))
        wall = time.monotonic() - start
        after = send(Client(server.url, verbose=False), requests[0], settings.timeout)
        files, oldest = oldest_file_age(server.cache)
    return report(settings, outcomes, wall, rss_before, rss_rounds, after, files, oldest)


def report(settings, outcomes, wall, rss_before, rss_rounds, after, files, oldest) -> dict:
    counts = {result: sum(o.result == result for o in outcomes) for result in ("answered", "refused", "turned away")}
    age, every = settings.keep_files, tidy_interval(settings.keep_files, settings.keep_files)
    seconds = sorted(o.seconds for o in outcomes)
    answered = sorted(o.seconds for o in outcomes if o.result == "answered")
    return {
        "settings": asdict(settings) | {"model": Path(settings.model).name},
        "requests": len(outcomes),
        "answered": counts["answered"],
        "refused_with_message": counts["refused"],
        "turned_away_queue_full": counts["turned away"],
        "errors": len(outcomes) - sum(counts.values()),
        "error_messages": sorted({o.message for o in outcomes if o.result == "error"})[:10],
        "by_kind": {kind: tally([o for o in outcomes if o.kind == kind]) for kind in KINDS},
        "wall_s": round(wall, 2),
        "latency_s": {
            "p50": round(percentile(seconds, 50), 3),
            "p95": round(percentile(seconds, 95), 3),
            "answered_p50": round(percentile(answered, 50), 3),
            "answered_p95": round(percentile(answered, 95), 3),
        },
        "rss_mib": {
            "before": round(rss_before, 1),
            "after": round(rss_rounds[-1], 1),
            "after_each_round": [round(rss, 1) for rss in rss_rounds],
        },
        "answers_afterwards": after.result == "answered",
        "cache": {"files": files, "oldest_s": round(oldest, 1), "bound_s": age + every},
    }


def tally(outcomes: list[Outcome]) -> dict[str, int]:
    return {result: sum(o.result == result for o in outcomes) for result in RESULTS}


def format_report(result: dict) -> str:
    settings, latency, rss, cache = result["settings"], result["latency_s"], result["rss_mib"], result["cache"]
    lines = [
        f"{settings['callers']} callers, {result['requests']} requests ({settings['rounds']} round(s)) in "
        f"{result['wall_s']} s "
        f"(queue size {settings['queue_size']}, files kept {settings['keep_files']} s, model {settings['model']})",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| answered | {result['answered']} |",
        f"| refused with a one-line message (bad audio, oversized text, control token) | "
        f"{result['refused_with_message']} |",
        f'| turned away by the queue limit ("Queue is full") | {result["turned_away_queue_full"]} |',
        f"| errors | {result['errors']} |",
        f"| latency p50 / p95, all requests (s) | {latency['p50']} / {latency['p95']} |",
        f"| latency p50 / p95, answered (s) | {latency['answered_p50']} / {latency['answered_p95']} |",
        f"| app RSS before / after (MiB) | {rss['before']} / {rss['after']} |",
        f"| app RSS after each round (MiB) | {' / '.join(map(str, rss['after_each_round']))} |",
        f"| answers afterwards | {'yes' if result['answers_afterwards'] else 'NO'} |",
        f"| cache: files / oldest (s) / cleanup bound (s) | {cache['files']} / {cache['oldest_s']} / "
        f"{cache['bound_s']} |",
    ]
    lines += [f"error: {message}" for message in result["error_messages"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    defaults = LoadSettings(model="")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint directory (python -m aqa tiny DIR makes one)")
    parser.add_argument("--callers", type=int, default=defaults.callers)
    parser.add_argument("--requests", type=int, default=defaults.requests)
    parser.add_argument("--queue-size", type=int, default=defaults.queue_size)
    parser.add_argument("--keep-files", type=int, default=defaults.keep_files)
    parser.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    parser.add_argument("--pause", type=float, default=defaults.pause, help="seconds a turned-away caller waits")
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="send the requests this many times")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--output", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)
    settings = LoadSettings(
        args.model,
        args.callers,
        args.requests,
        args.queue_size,
        args.keep_files,
        args.max_new_tokens,
        pause=args.pause,
        rounds=args.rounds,
    )
    result = run(settings)
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0 if result["errors"] == 0 and result["answers_afterwards"] else 1


if __name__ == "__main__":
    sys.exit(main())
