"""`aqa bench` on the tiny checkpoint: the report's keys and that every figure was measured (no timing asserts)."""

import json
import os
import subprocess
import sys
from numbers import Number

import numpy as np
import pytest
import torch
from conftest import ROOT

from aqa.bench import count_weights, format_report
from aqa.cli.main import main
from aqa.random_weights import build_random_model

# Small enough for CI: 2 clips of 2 s, batch sizes 1 and 2, one question per latency and baseline measurement.
QUICK = ["--clips", "2", "--seconds", "2", "--batch-sizes", "1", "2", "--latency-runs", "1", "--baseline-runs", "1"]
QUICK += ["--max-new-tokens", "4", "--threads", "1", "--decode-tokens", "6", "--think-tokens", "8"]


def numbers_in(value, path=""):
    """(key path, number) for every number in a nested report."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from numbers_in(inner, f"{path}.{key}" if path else key)
    elif isinstance(value, Number) and not isinstance(value, bool):
        yield path, value


@pytest.fixture(scope="module")
def report(tiny_model_dir, tmp_path_factory):
    """One run of `python -m aqa bench --model TINY --json`, shared by the tests below."""
    output = tmp_path_factory.mktemp("bench") / "report.json"
    command = [sys.executable, "-m", "aqa", "bench", "--model", str(tiny_model_dir), *QUICK, "--json"]
    done = subprocess.run([*command, "--output", str(output)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert json.loads(output.read_text()) == printed, "--output writes what --json prints"
    return printed


SECTIONS = [
    ("latency_ms", {"audio_load_resample", "feature_extraction", "prefill", "decode", "option_scoring", "total"}),
    ("answer_latency_ms", {"answer_mode", "generate_only", "score_only"}),
    ("option_scoring_ms", {"shared_prefill", "unshared"}),
    ("throughput_questions_per_s", {"batch_1", "batch_2"}),
    ("baseline", {"recipe", "latency_ms", "questions_per_s", "decode_tokens_per_question"}),
    ("speedup_vs_baseline", {"answer_mode_latency", "throughput_batch_1", "throughput_batch_2"}),
    ("speedup_vs_alternatives", {"answer_mode_vs_generate_then_score", "pipelined_batch_1_vs_one_at_a_time"}),
    ("peak_memory_gib", {"kind", "load", "one_question_answer_mode", "baseline", "batch_1", "batch_2"}),
    ("audio_and_features_30s_ms", {"audio_load_resample", "feature_extraction", "total"}),
    ("decode_ms_per_token", {"eager_batch_1", "static_batch_1", "eager_batch_2", "static_batch_2", "fast_path"}),
    ("think_answer", {"max_new_tokens", "eager_seconds", "static_seconds", "eager_characters"}),
    ("model", {"name", "precision", "parameters", "load_seconds", "max_new_tokens"}),
    ("machine", {"device", "cpu", "torch_threads", "torch", "transformers"}),
]


@pytest.mark.parametrize("section, keys", SECTIONS, ids=[section for section, _ in SECTIONS])
def test_report_has_every_figure(report, section, keys):
    assert keys <= set(report[section]), f"{section} lacks {keys - set(report[section])}"


def test_every_figure_is_measured(report):
    """Each number is positive: a zero would mean a stage that was not timed or a memory reading that failed."""
    figures = dict(numbers_in(report))
    assert figures and all(value > 0 for value in figures.values()), {k: v for k, v in figures.items() if v <= 0}


def test_report_describes_the_run(report, tiny_model_dir):
    assert report["model"]["name"] == str(tiny_model_dir)
    assert (report["model"]["precision"], report["machine"]["device"]) == ("fp32", "cpu")
    assert report["peak_memory_gib"]["kind"] == "cpu_rss_high_water"
    assert report["baseline"]["decode_tokens_per_question"] <= 4  # --max-new-tokens reaches the baseline too
    assert report["speedup_vs_baseline"]["throughput_batch_1"] == pytest.approx(
        report["throughput_questions_per_s"]["batch_1"] / report["baseline"]["questions_per_s"], rel=0.02
    )


def test_markdown_table_names_every_figure():
    report = {"latency_ms": {"prefill": 1.5}, "baseline": {"latency_ms": 3.0}, "note": "x"}
    assert format_report(report).splitlines() == [
        "| figure | value |",
        "| --- | --- |",
        "| latency_ms.prefill | 1.5 |",
        "| baseline.latency_ms | 3.0 |",
        "| note | x |",
    ]


BAD_ARGUMENTS = [
    (["--clips", "0"], "no questions to answer"),
    (["--batch-sizes", "8", "0"], "a batch of nothing"),
    (["--latency-runs", "-1"], "a negative count"),
    (["--seconds", "0"], "empty clips"),
]


@pytest.mark.parametrize("arguments, reason", BAD_ARGUMENTS, ids=[reason for _, reason in BAD_ARGUMENTS])
def test_bad_arguments_fail_in_one_line_before_loading(capsys, arguments, reason):
    assert main(["bench", "--model", "/nonexistent", *arguments]) == 2, reason
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "must be positive" in error, reason


def test_random_tiny_model_in_4bit_quantizes_the_language_model_only():
    """`--random-weights` builds the architecture on the device; 4-bit swaps the same layers `load_model` does."""
    model = build_random_model("tiny", "4bit", torch.device("cpu"))
    kinds = {name: type(module).__name__ for name, module in model.hf.named_modules()}
    assert kinds["model.language_model.layers.0.self_attn.q_proj"] == "Linear4bit"
    assert kinds["model.audio_tower.layers.0.fc1"] == "Linear"
    assert kinds["model.multi_modal_projector.linear"] == "Linear"
    assert kinds["lm_head"] == "Linear"
    unquantized = build_random_model("tiny", "fp32", torch.device("cpu"))
    assert count_weights(model.hf) == count_weights(unquantized.hf), "4-bit counts the original shapes"


def test_model_flags_reach_the_measured_model(tiny_model_dir, capsys):
    """--embeddings-on-cpu reaches the benched model (the report reads it off the loaded model)."""
    quick = ["--clips", "1", "--seconds", "1", "--batch-sizes", "1", "--latency-runs", "0", "--baseline-runs", "0"]
    arguments = ["bench", "--model", str(tiny_model_dir), *quick, "--max-new-tokens", "2", "--embeddings-on-cpu"]
    assert main([*arguments, "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"]["embeddings_on_cpu"] is True and report["model"]["device"] == "cpu"


def test_the_windowed_sinc_reference_resamples_a_tone_as_soxr_does():
    """bench/resampling.py rebuilds torchaudio's resampler to measure ours against it: on a 1 kHz tone at 44.1 kHz
    both give the analytic 16 kHz tone (away from the edges), so the figures it reports compare two good filters."""
    import soxr

    from bench.resampling import sinc_hann_resample

    rate, seconds = 44100, 1.0
    tone = np.sin(2 * np.pi * 1000 * np.arange(int(rate * seconds)) / rate).astype(np.float32)
    expected = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    for resampled in (sinc_hann_resample(tone, rate), soxr.resample(tone, rate, 16000, quality="HQ")):
        assert len(resampled) == 16000
        assert np.abs(resampled[800:-800] - expected[800:-800]).max() < 2e-3


def test_the_eval_scaling_script_runs_one_process_and_two(tmp_path):
    """bench/eval_scaling.py, the GPU scaling measurement prepared for a machine with GPUs, runs here on the CPU:
    one report per process count, each process's answering time, and the same predictions from both (the figures
    of a 2-core CPU mean nothing else)."""
    output = tmp_path / "scaling.json"
    command = [sys.executable, "-m", "bench.eval_scaling", "--questions", "4", "--seconds", "1", "--batch-size", "2"]
    command += ["--max-new-tokens", "2", "--device", "cpu", "--output", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    runs = json.loads(output.read_text())["runs"]
    assert [run["processes"] for run in runs] == [1, 2]
    assert all(run["same_predictions_as_the_first"] and run["wall_seconds"] > 0 for run in runs)
    assert [len(run["answer_seconds_per_process"]) for run in runs] == [1, 2]
    assert all(seconds > 0 for seconds in runs[1]["answer_seconds_per_process"]), "each process asked a batch"
