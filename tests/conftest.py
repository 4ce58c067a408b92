"""Shared fixtures: the tiny random checkpoint and real audio files made with espeak-ng, sox and FFmpeg."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from bench.serving import Server, app_server  # the load test starts app.py the same way

# Tests never touch the network: every model is the tiny checkpoint built locally.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

ROOT = Path(__file__).resolve().parent.parent
# The real MMAU question files are not in the repository (they are the MMAU authors'): tests that need them look in
# $AQA_MMAU_DIR, else in ../shared/data/mmau beside the clone, and skip when neither has them.
MMAU_DIR = Path(os.environ.get("AQA_MMAU_DIR") or ROOT.parent / "shared" / "data" / "mmau")
MMAU_VERSIONS = ("2025-01-28", "2025-03-25", "2025-08-09")


MMAR_DIR = Path(os.environ.get("AQA_MMAR_DIR") or ROOT.parent / "shared" / "data" / "mmar")


def mmar_meta() -> Path:
    """MMAR's question file (MMAR-meta.jsonl), or a skip that says how to get it."""
    path = MMAR_DIR / "MMAR-meta.jsonl"
    if not path.is_file():
        pytest.skip(
            "needs MMAR's question file MMAR-meta.jsonl: put it in a folder and set AQA_MMAR_DIR to it "
            "(docs/evaluation.md, 'MMAR': github.com/ddlBoJack/MMAR)"
        )
    return path


def mmau_file(version: str) -> Path:
    """The MMAU test-mini question file of `version`, or a skip that says how to get it."""
    path = MMAU_DIR / f"mmau-test-mini.{version}.json"
    if not path.is_file():
        pytest.skip(
            f"needs the MMAU test-mini question file {path.name}: put it in a folder and set AQA_MMAU_DIR to it "
            "(docs/evaluation.md, 'Getting MMAU': github.com/Sakshi113/MMAU, the file at the version's commit)"
        )
    return path


# Two cores on CI: keep torch from oversubscribing them when tests spawn subprocesses.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_collection_modifyitems(config, items):
    """GPU-only tests skip on machines without CUDA; nothing else is skipped."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def run(command: list[str]) -> None:
    subprocess.run(command, check=True, capture_output=True)


@pytest.fixture(scope="session", autouse=True)
def gradio_cache(tmp_path_factory) -> Path:
    """Gradio's cache folder for the session's apps, in this process and served: an app tidies its cache and caps it,
    and must never touch other programs' files in the system's /tmp/gradio."""
    folder = tmp_path_factory.mktemp("gradio-cache")
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Qwen2-Audio checkpoint, written once per test session (`aqa tiny`)."""
    from aqa.random_weights import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def family_dirs(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """A tiny checkpoint of each model family, written once per session as `aqa tiny DIR --family NAME` writes it
    (Qwen2-Audio's is `tiny_model_dir`); an Omni family's is a whole Omni checkpoint whose thinker answers."""
    from aqa.families import FAMILIES, QWEN2_AUDIO
    from aqa.random_weights import build_tiny_checkpoint

    return {
        name: tiny_model_dir
        if family is QWEN2_AUDIO
        else build_tiny_checkpoint(tmp_path_factory.mktemp(name), family=family)
        for name, family in FAMILIES.items()
    }


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from aqa import load_model

    return load_model(str(tiny_model_dir), precision="fp32", device="cpu")


@pytest.fixture(scope="session")
def tiny_model_2_dir(tmp_path_factory) -> Path:
    """A second tiny checkpoint, with other random weights (seed 1): a model to compare the first with."""
    from aqa.random_weights import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-model-2"), seed=1)


@pytest.fixture(scope="session")
def tiny_model_2(tiny_model_2_dir):
    from aqa import load_model

    return load_model(str(tiny_model_2_dir), precision="fp32", device="cpu")


@pytest.fixture(scope="session")
def compare_server(tiny_model_dir, tiny_model_2_dir, tmp_path_factory) -> Iterator[Server]:
    """`python app.py --model TINY --compare TINY2` on the CPU, otherwise as served by default (the core's token
    budgets: 256, 1024 in thinking mode). Shared by the API and the browser tests."""
    args = ["--model", str(tiny_model_dir), "--compare", str(tiny_model_2_dir), "--device", "cpu"]
    with app_server(args, tmp_path_factory.mktemp("compare-app")) as server:
        yield server


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Real audio files in many shapes; keys name what each one is."""
    for tool in ("sox", "espeak-ng", "ffmpeg"):
        assert shutil.which(tool), f"{tool} is needed by the tests (.ci/run installs it)"
    folder = tmp_path_factory.mktemp("clips")
    path = {
        name: folder / name
        for name in (
            "speech_16k_mono.wav",
            "speech_22k.wav",
            "tone_8k.wav",
            "stereo_44k.wav",
            "tone.flac",
            "speech.mp3",
            "tone.ogg",
            "speech.m4a",
            "long_45s.wav",
            "short_50ms.wav",
            "silence.wav",
            "empty.wav",
            "text.wav",
            "truncated.wav",
        )
    }
    run(["espeak-ng", "-v", "en", "-w", str(path["speech_22k.wav"]), "The quick brown fox jumps over the lazy dog."])
    run(["sox", str(path["speech_22k.wav"]), "-r", "16000", "-c", "1", str(path["speech_16k_mono.wav"])])
    run(["sox", "-n", "-r", "8000", "-c", "1", str(path["tone_8k.wav"]), "synth", "2", "sine", "440"])
    run(
        ["sox", "-n", "-r", "44100", "-c", "2", str(path["stereo_44k.wav"]), "synth", "3", "sine", "300", "sine", "500"]
    )
    run(["sox", "-n", "-r", "16000", str(path["tone.flac"]), "synth", "1.5", "square", "220"])
    run(["ffmpeg", "-v", "error", "-y", "-i", str(path["speech_22k.wav"]), str(path["speech.mp3"])])
    run(["sox", "-n", "-r", "22050", str(path["tone.ogg"]), "synth", "1", "sine", "880"])
    run(["ffmpeg", "-v", "error", "-y", "-i", str(path["speech_22k.wav"]), "-c:a", "aac", str(path["speech.m4a"])])
    run(["sox", "-n", "-r", "16000", str(path["long_45s.wav"]), "synth", "45", "pinknoise", "vol", "0.3"])
    run(["sox", "-n", "-r", "16000", str(path["short_50ms.wav"]), "synth", "0.05", "sine", "1000"])
    run(["sox", "-n", "-r", "16000", str(path["silence.wav"]), "trim", "0", "2"])
    path["empty.wav"].write_bytes(b"")
    path["text.wav"].write_text("this is not audio, only text renamed to .wav\n")
    data = path["stereo_44k.wav"].read_bytes()
    path["truncated.wav"].write_bytes(data[: len(data) // 3])
    return path


@pytest.fixture
def aqa_cli():
    """Run `python -m aqa ...` in a subprocess, as a user would; returns the CompletedProcess."""

    def call(*args: str, check: bool = False) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "aqa", *map(str, args)], capture_output=True, text=True, cwd=ROOT)
        if check and done.returncode != 0:
            raise AssertionError(f"aqa {' '.join(map(str, args))} failed:\n{done.stderr}")
        return done

    return call


@pytest.fixture
def resume_spy():
    """A Trainer callback that records the model's trained weights when training begins, which is after a resume
    has loaded the checkpoint (for a LoRA model, its adapter under the names PEFT saves), and every warning
    transformers logs meanwhile."""
    import logging

    from peft import PeftModel, get_peft_model_state_dict
    from transformers import TrainerCallback

    class ResumeSpy(TrainerCallback):
        loaded: dict[str, torch.Tensor] | None = None
        warnings: list[str] = []

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            weights = get_peft_model_state_dict(model) if isinstance(model, PeftModel) else model.state_dict()
            self.loaded = {name: tensor.detach().clone() for name, tensor in weights.items()}

    spy = ResumeSpy()
    spy.warnings = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: spy.warnings.append(record.getMessage())
    library = logging.getLogger("transformers")  # it does not propagate to the root logger pytest watches
    library.addHandler(handler)
    yield spy
    library.removeHandler(handler)
