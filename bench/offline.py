"""How long `aqa ask` takes to fail, and what it prints, when the model cannot be had: `python -m bench.offline`.

Four cases, each a fresh `python -m aqa ask` on a clip from assets/ (the seconds include importing torch):
- `typo`: `--model no-such-model-dir`, a folder that does not exist and is no Hub id;
- `hf_hub_offline`: the default Hub model with HF_HUB_OFFLINE=1 and an empty Hugging Face cache;
- `no_network`: the same without HF_HUB_OFFLINE, on a machine where the Hub's name does not resolve;
- `silent_hub`: HF_ENDPOINT pointing at a local socket that accepts connections and never answers (a firewall that
  drops packets looks like this to a client).

`--root DIR` runs another checkout's code (e.g. the one before the change), for a before/after pair.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASK = ["-m", "aqa", "ask", "--audio", "assets/speech_man.ogg", "--question", "Who?", "--options", "Man", "Woman"]


def silent_server() -> str:
    """A loopback address that accepts TCP connections and never sends a byte; its URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held = []

    def accept() -> None:
        while True:
            connection, _ = listener.accept()
            held.append(connection)  # kept open, never answered

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}"


def measure(root: Path, model: str, env: dict[str, str], limit: float) -> dict:
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, *ASK, "--model", model], cwd=root, env=env, capture_output=True, text=True, timeout=limit
        )
        code, stderr = done.returncode, done.stderr
    except subprocess.TimeoutExpired as expired:
        captured = expired.stderr or ""
        code, stderr = None, captured.decode() if isinstance(captured, bytes) else captured
    lines = [line for line in stderr.splitlines() if line.strip()]
    return {
        "seconds": round(time.perf_counter() - start, 2),
        "exit_code": code,
        "stderr_lines": len(lines),
        "retry_lines": sum("Retrying in" in line for line in lines),
        "last_line": lines[-1] if lines else "",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose code runs (default: this one)")
    parser.add_argument("--limit", type=float, default=300, help="seconds before a case is stopped (default 300)")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as cache:
        base = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "TRANSFORMERS_"))}
        base["HF_HOME"] = cache  # an empty cache: nothing downloaded before
        cases = {
            "typo": ("no-such-model-dir", base),
            "hf_hub_offline": ("mispeech/r1-aqa", base | {"HF_HUB_OFFLINE": "1"}),
            "no_network": ("mispeech/r1-aqa", base),
            "silent_hub": ("mispeech/r1-aqa", base | {"HF_ENDPOINT": silent_server()}),
        }
        report = {name: measure(args.root, model, env, args.limit) for name, (model, env) in cases.items()}
    report["machine"] = {"cpus": os.cpu_count(), "root": str(args.root.resolve())}
    text = json.dumps(report, indent=2)
    if args.output:
        args.output.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
