"""aqa.hub: a model reference is checked before anything loads; a typo or an unreachable Hub is one line, at once,
with no retries (how long it takes is a benchmark figure: bench/offline.py, docs/benchmarks.md)."""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import ROOT
from huggingface_hub import constants

from aqa.errors import ModelError
from aqa.hub import check_model_reference, hub_reachable, is_hub_id

HUB_IDS = [
    # (name, is an owner/name Hub id, reason)
    ("mispeech/r1-aqa", True, "the default model"),
    ("Qwen/Qwen2-Audio-7B-Instruct", True, "dots and capitals"),
    ("no-such-model-dir", False, "one word: a folder name, not an owner/name id"),
    ("runs/grpo/checkpoint-200", False, "three parts: a path"),
    ("/abs/model", False, "an absolute path"),
    ("./model", False, "a relative path"),
    ("owner/na--me", False, "Hub ids forbid --"),
    ("owner/", False, "no name"),
]


@pytest.mark.parametrize("name, expected, reason", HUB_IDS, ids=[case[2] for case in HUB_IDS])
def test_is_hub_id(name, expected, reason):
    assert is_hub_id(name) is expected


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """huggingface_hub with an empty cache, online mode and an endpoint: set `.endpoint` to a URL."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    class Hub:
        cache = tmp_path / "hub-cache"

        @staticmethod
        def endpoint(url: str) -> None:
            monkeypatch.setattr(constants, "ENDPOINT", url)

    return Hub


def closed_port_url() -> str:
    """A loopback URL where nothing listens: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def cache_as_hub(checkpoint: Path, cache: Path, repo_id: str) -> None:
    """Lay a checkpoint folder out as huggingface_hub caches a downloaded model."""
    revision = "0" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(checkpoint, repo / "snapshots" / revision)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)


def test_an_existing_directory_passes(tiny_model_dir, hub):
    hub.endpoint(closed_port_url())
    check_model_reference(tiny_model_dir)  # no network needed, none tried


@pytest.mark.parametrize("name", ["no-such-model-dir", "./missing/model", "/no/such/model"])
def test_a_name_that_is_no_directory_and_no_hub_id_is_refused(name, hub):
    hub.endpoint(closed_port_url())
    with pytest.raises(ModelError, match="no such model directory"):
        check_model_reference(name)


def test_an_uncached_id_offline_names_the_way_out(hub, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError) as refused:
        check_model_reference("mispeech/r1-aqa")
    message = str(refused.value)
    assert "\n" not in message
    for named in ("aqa tiny DIR", "--model DIR", "HF_HUB_OFFLINE"):
        assert named in message


def test_an_uncached_id_with_the_hub_unreachable_names_the_way_out(hub):
    hub.endpoint(closed_port_url())
    with pytest.raises(ModelError) as refused:
        check_model_reference("mispeech/r1-aqa")
    message = str(refused.value)
    assert "cannot be reached" in message and "\n" not in message
    for named in ("aqa tiny DIR", "--model DIR", "HF_HUB_OFFLINE"):
        assert named in message


def test_a_cached_id_with_the_hub_unreachable_loads_from_the_cache(hub, tiny_model_dir):
    cache_as_hub(tiny_model_dir, hub.cache, "someone/tiny")
    hub.endpoint(closed_port_url())
    check_model_reference("someone/tiny")
    assert constants.is_offline_mode()  # later requests go straight to the cache instead of retrying


class Answering(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):
        self.send_response(404)  # any answer means the server is there
        self.end_headers()

    def log_message(self, *args):
        pass


def test_hub_reachable():
    server = http.server.HTTPServer(("127.0.0.1", 0), Answering)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts connections, never answers
    try:
        assert hub_reachable(f"http://127.0.0.1:{server.server_address[1]}", timeout=5)
        assert not hub_reachable(closed_port_url(), timeout=5)
        assert not hub_reachable(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.5)
        assert not hub_reachable("not a url", timeout=0.5)
    finally:
        server.shutdown()
        silent.close()


def ask_without_hub(model: str, cache: Path, clip: Path) -> subprocess.CompletedProcess:
    """`aqa ask` as on a machine with no network and no HF_HUB_OFFLINE: the endpoint refuses connections."""
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env |= {"HF_HUB_CACHE": str(cache), "HF_ENDPOINT": closed_port_url()}
    command = [sys.executable, "-m", "aqa", "ask", "--model", model, "--audio", str(clip)]
    command += ["--question", "Who?", "--options", "Man", "Woman", "--json"]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)


def test_cli_without_the_hub_fails_in_one_line_without_retries(tmp_path, clips):
    done = ask_without_hub("mispeech/r1-aqa", tmp_path / "empty-cache", clips["tone.flac"])
    assert done.returncode == 2
    assert "Retrying" not in done.stderr and "Traceback" not in done.stderr
    [error] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert "aqa tiny DIR" in error and "--model DIR" in error and "HF_HUB_OFFLINE" in error


def test_cli_without_the_hub_answers_from_the_cache(tmp_path, tiny_model_dir, clips):
    cache_as_hub(tiny_model_dir, tmp_path / "cache", "someone/tiny")
    done = ask_without_hub("someone/tiny", tmp_path / "cache", clips["tone.flac"])
    assert done.returncode == 0, done.stderr
    assert "Retrying" not in done.stderr
    assert "loading someone/tiny from the local cache" in done.stderr
