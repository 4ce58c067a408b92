"""Starting `python app.py` as a server for a test or a benchmark: a free loopback port, its own cache folder and log,
and waiting until it answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"app.py exited early:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"app.py did not serve {url} within {timeout} s:\n{log.read_text()}")


@dataclass(frozen=True)
class Server:
    url: str
    process: subprocess.Popen
    log: Path  # its stdout and stderr together
    cache: Path  # its GRADIO_TEMP_DIR: the app writes its files into a folder of its own inside


@contextmanager
def app_server(args: list[str], folder: Path, environ: dict[str, str] | None = None) -> Iterator[Server]:
    """`python app.py ARGS --port FREE` on loopback, its cache and log in `folder`; stopped (SIGTERM) afterwards."""
    port, cache, log = free_port(), folder / "cache", folder / "app.log"
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "app.py", *args, "--port", str(port)]
    offline = {"GRADIO_TEMP_DIR": str(cache), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    with log.open("w") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=os.environ | offline | (environ or {}), stdout=output, stderr=output
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_up(url, process, log)
        yield Server(url, process, log, cache)
    finally:
        process.terminate()
        process.wait(timeout=60)
