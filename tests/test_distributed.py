"""Evaluation spread over processes (aqa.eval.shard), on the CPU with the tiny model: two processes under torchrun
give exactly the single process's predictions; a process killed with SIGKILL mid-run loses and repeats nothing when
the run is resumed on one process or two, and the sampled text is the uninterrupted single process's; the merged
file is what MMAU's and MMAR's scorers read; a sweep under accelerate launch spreads its checkpoints."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT
from test_eval import mmar_record, write_jsonl
from test_mmau import made_up_records, synthesise

from aqa.cli.main import main
from aqa.errors import InputError
from aqa.eval.manifest import partial_paths
from aqa.eval.shard import Shard, shard_from_environment
from aqa.jsonl import read_jsonl

FAST = ["--device", "cpu", "--max-new-tokens", "4"]
LAUNCH_SECONDS = 300


def environment() -> dict[str, str]:
    # One thread per process: two processes share the machine's cores (torchrun's own default).
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def torchrun(args: list[str], processes: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] + [
        "-m",
        "aqa",
        *map(str, args),
    ]


def launch(command: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=LAUNCH_SECONDS)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


def comparable(path: Path) -> list[dict]:
    """A predictions file without its timings (seconds differ from run to run), sorted by id."""
    rows = json.loads(path.read_text())
    for row in rows:
        row.pop("timings", None)
    return sorted(rows, key=lambda row: str(row["id"]))


def ids_in_partials(output: Path) -> list[str]:
    return [row["id"] for path in partial_paths(output) for row in read_jsonl(path)]


def test_two_processes_give_exactly_the_single_process_greedy_predictions(tiny_model_dir, tmp_path, capsys):
    records = made_up_records(40)
    for number, record in enumerate(records):  # questions of several lengths: batches grouped by length
        record["question"] = f"What is heard in clip {number}?" + " Listen closely." * (number % 5)
    data = tmp_path / "mmau.json"
    data.write_text(json.dumps(records))
    synthesise(tmp_path / "MMAU", records)
    common = ["mmau", "run", "--model", tiny_model_dir, "--data", data, "--audio-dir", tmp_path / "MMAU", *FAST]
    common += ["--batch-size", "4"]
    one, two = tmp_path / "one" / "preds.json", tmp_path / "two" / "preds.json"
    assert main([*map(str, common), "--output", str(one)]) == 0
    done = launch(torchrun([*common, "--output", two]))
    assert comparable(two) == comparable(one), "the same answers, options' probabilities and all"
    assert "[rank 0 of 2] this process asks 5 of the 10 batches (20 questions)" in done.stderr
    assert done.stdout.count("every one of the 40 records has a prediction") == 1, "one process prints the score"

    # each process wrote its own batches; together every item, once
    files = partial_paths(two)
    assert [path.name for path in files] == ["preds.rank0.partial.jsonl", "preds.rank1.partial.jsonl"]
    shares = [{row["id"] for row in read_jsonl(path)} for path in files]
    assert all(shares) and not shares[0] & shares[1] and shares[0] | shares[1] == {r["id"] for r in records}
    manifest = json.loads(two.with_suffix(".manifest.json").read_text())
    assert manifest["pending"] == 0 and manifest["answered"] == 40
    sessions = sorted(manifest["runs"], key=lambda run: run["rank"])
    assert [(run["rank"], run["world_size"], run["answered"]) for run in sessions] == [(0, 2, 20), (1, 2, 20)]
    assert all("stopped" in run and run["pid"] > 0 for run in sessions)

    # MMAU's evaluation.py reads the merged file as is: the records untouched, in file order, each with
    # `model_output`; and its rule, as `aqa mmau score` applies it, gives the single process's figures
    merged = json.loads(two.read_text())
    assert [p["id"] for p in merged] == [r["id"] for r in records]
    assert all({key: p[key] for key in r} == r and isinstance(p["model_output"], str) for p, r in zip(merged, records))
    capsys.readouterr()
    scores = []
    for output in (one, two):
        assert main(["mmau", "score", str(output), "--json"]) == 0
        scores.append(json.loads(capsys.readouterr().out))
    assert scores[1]["n"] == 40 and scores[1]["missing"] == 0
    assert scores[0] == scores[1]


def wait_for_a_row(path: Path, process: subprocess.Popen, timeout: float = LAUNCH_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists() and read_jsonl(path):
            return
        time.sleep(0.02)
    _, stderr = process.communicate()
    raise AssertionError(f"no answer appeared in {path.name} before the launch ended:\n{stderr[-4000:]}")


def test_a_rank_killed_mid_run_loses_and_repeats_nothing_on_one_or_two_processes(tiny_model_dir, tmp_path, capsys):
    """SIGKILL one process of a sampled, seeded MMAR run as soon as it has an answer on disk (torchrun then stops
    the other); resume on one process, and, from the same state, on two: every item answered once, the answers
    from before the kill kept, the text the one uninterrupted process samples, and MMAR's scorer reads the file."""
    records = [mmar_record(number, "sound", "Signal Layer", "Counting") for number in range(24)]
    meta = write_jsonl(tmp_path / "MMAR-meta.jsonl", records)
    synthesise(tmp_path / "MMAR", [{"audio_id": r["audio_path"]} for r in records])
    common = ["eval", "run", "--benchmark", "mmar", "--model", tiny_model_dir, "--data", meta]
    common += ["--audio-dir", tmp_path / "MMAR", *FAST, "--batch-size", "2", "--sample", "--seed", "7"]
    reference = tmp_path / "one" / "preds.json"
    assert main([*map(str, common), "--output", str(reference)]) == 0

    killed = tmp_path / "killed" / "preds.json"
    process = subprocess.Popen(
        torchrun([*common, "--output", killed]), cwd=ROOT, env=environment(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for_a_row(killed.with_name("preds.rank1.partial.jsonl"), process)
    runs = json.loads(killed.with_suffix(".manifest.json").read_text())["runs"]
    os.kill(next(run["pid"] for run in runs if run["rank"] == 1), signal.SIGKILL)
    _, stderr = process.communicate(timeout=LAUNCH_SECONDS)
    assert process.returncode != 0 and "SIGKILL" in stderr
    before = {row["id"]: row for row in (r for path in partial_paths(killed) for r in read_jsonl(path))}
    assert 0 < len(before) < len(records), "killed part-way"
    assert len(read_jsonl(killed.with_name("preds.rank1.partial.jsonl"))) < len(records) // 2

    for processes in (1, 2):
        resumed = tmp_path / f"resumed-on-{processes}" / "preds.json"
        shutil.copytree(killed.parent, resumed.parent)
        if processes == 1:
            assert main([*map(str, common), "--output", str(resumed)]) == 0
            assert f"{len(before)} of {len(records)} already answered" in capsys.readouterr().err
        else:
            launch(torchrun([*common, "--output", resumed]))
        ids = ids_in_partials(resumed)
        assert len(ids) == len(set(ids)), f"on {processes}: an answer was written twice"
        assert set(ids) == {r["id"] for r in records}, f"on {processes}: an answer was lost"
        after = {row["id"]: row for path in partial_paths(resumed) for row in read_jsonl(path)}
        assert all(after[key] == row for key, row in before.items()), "answers from before the kill were redone"
        assert comparable(resumed) == comparable(reference), f"on {processes}: other text than one process samples"

        # MMAR's code/evaluation.py reads it as is: the records, each with `answer_prediction`
        merged = json.loads(resumed.read_text())
        assert [p["id"] for p in merged] == [r["id"] for r in records]
        for prediction, record in zip(merged, records):
            assert {key: prediction[key] for key in record} == record
            assert isinstance(prediction["answer_prediction"], str)
        capsys.readouterr()
        assert main(["eval", "score", str(resumed), "--benchmark", "mmar", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["n"] == len(records)


def test_a_sweep_under_accelerate_launch_spreads_its_checkpoints(tiny_model_dir, tmp_path):
    """`accelerate launch` (here on the CPU) starts the processes as torchrun does: each evaluates every other
    checkpoint, and the one that completes the sweep writes and prints the table, once."""
    steps = (1, 2, 3)
    for step in steps:
        (tmp_path / "grpo").mkdir(exist_ok=True)
        (tmp_path / "grpo" / f"checkpoint-{step}").symlink_to(tiny_model_dir, target_is_directory=True)
    records = made_up_records(4)
    data = tmp_path / "mmau.json"
    data.write_text(json.dumps(records))
    synthesise(tmp_path / "MMAU", records)
    sweep = tmp_path / "sweep"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "aqa", "mmau"]
    command += ["sweep", "--checkpoints", *(str(tmp_path / "grpo" / f"checkpoint-{step}") for step in steps)]
    command += ["--data", str(data), "--audio-dir", str(tmp_path / "MMAU"), "--output-dir", str(sweep), *FAST]
    done = launch(command)
    for rank, step in ((0, 1), (1, 2), (0, 3)):
        assert f"[rank {rank} of 2] == checkpoint-{step}" in done.stderr
    assert done.stdout.count("| Checkpoint |") == 1, "the table is printed once"
    table = (sweep / "sweep.md").read_text()
    assert all(f"| checkpoint-{step} |" in table for step in steps)
    assert set(json.loads((sweep / "sweep.json").read_text())["checkpoints"]) == {f"checkpoint-{s}" for s in steps}
    for step in steps:
        assert len(json.loads((sweep / f"checkpoint-{step}" / "preds.json").read_text())) == 4


@pytest.mark.parametrize(
    "environment, expected",
    [
        ({}, Shard()),  # no launcher: one process
        ({"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}, Shard()),
        ({"WORLD_SIZE": "8", "RANK": "5", "LOCAL_RANK": "5"}, Shard(5, 8, 5)),
        ({"WORLD_SIZE": "16", "RANK": "13", "LOCAL_RANK": "5"}, Shard(13, 16, 5)),  # node 2 of 2, its 6th GPU
    ],
)
def test_the_shard_is_read_from_the_launchers_environment(environment, expected):
    assert shard_from_environment(environment) == expected


@pytest.mark.parametrize(
    "environment, message",
    [
        ({"WORLD_SIZE": "two"}, "must be whole numbers"),
        ({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"}, "do not fit WORLD_SIZE 2"),
    ],
)
def test_a_broken_launcher_environment_is_one_line(environment, message):
    with pytest.raises(InputError, match=message):
        shard_from_environment(environment)


# (shard, --device, GPUs on the node, device, why)
DEVICES = [
    (Shard(), None, 8, None, "one process: the default device"),
    (Shard(3, 8, 3), None, 8, "cuda:3", "one GPU per process, by LOCAL_RANK"),
    (Shard(3, 8, 3), "cuda", 8, "cuda:3", "cuda without an index: the process's own GPU"),
    (Shard(1, 2, 1), "cuda:0", 1, "cuda:0", "an explicit index: two processes share one GPU"),
    (Shard(1, 2, 1), None, 0, "cpu", "no GPU: every process on the CPU"),
    (Shard(1, 2, 1), "cpu", 8, "cpu", "asked for the CPU"),
]


@pytest.mark.parametrize("shard, requested, gpus, device, why", DEVICES, ids=[case[-1] for case in DEVICES])
def test_each_process_gets_its_own_device(shard, requested, gpus, device, why):
    assert shard.device(requested, gpus) == device, why


def test_more_processes_than_gpus_and_a_distributed_restart_are_refused(tiny_model_dir, tmp_path, monkeypatch, capsys):
    with pytest.raises(InputError, match="LOCAL_RANK 1 but this node has 1 GPU"):
        Shard(1, 2, 1).device(None, 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # the SIGTERM handler is for a launched process
    data = tmp_path / "mmau.json"
    data.write_text(json.dumps(made_up_records(2)))
    args = ["mmau", "run", "--model", str(tiny_model_dir), "--data", str(data), "--audio-dir", str(tmp_path)]
    assert main([*args, "--output", str(tmp_path / "preds.json"), "--device", "cpu", "--restart"]) == 2
    assert "--restart cannot be used with several processes" in capsys.readouterr().err
