"""The files a run writes beside its predictions (`preds.json`): `preds.partial.jsonl`, appended answer by answer,
and `preds.manifest.json`, what the answers depend on and each session that wrote them. A run spread over several
processes appends to one partial file per process instead (`preds.rank0.partial.jsonl`, ...), and locks `preds.lock`
while it merges them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from aqa.jsonl import write_atomic


@dataclass(frozen=True)
class Session:
    """One invocation of a run: when, on what, and how far it got (written to the manifest as it goes)."""

    started: str  # ISO time, UTC
    batch_size: int
    device: str | None = None  # e.g. "cuda:0 (NVIDIA H100 80GB HBM3)"
    embeddings_on_cpu: bool | None = None  # whether the loaded model's input embedding table is in CPU memory
    load_seconds: float | None = None
    answered: int = 0
    failed: int = 0
    answer_seconds: float | None = None
    stopped: str | None = None  # absent when the process was killed
    world_size: int = 1  # processes of the launch that this session was one of (torchrun's WORLD_SIZE)
    rank: int | None = None  # in a launch of several processes, this one's rank, node and process id
    host: str | None = None
    pid: int | None = None

    def to_dict(self) -> dict:
        row = {key: value for key, value in asdict(self).items() if value is not None}
        done = self.answered + self.failed
        if done and self.answer_seconds is not None:
            row["seconds_per_question"] = round(self.answer_seconds / done, 4)
        return row


def companion_paths(output: Path) -> tuple[Path, Path]:
    """preds.json -> (preds.partial.jsonl, preds.manifest.json)."""
    return output.with_suffix(".partial.jsonl"), output.with_suffix(".manifest.json")


def rank_partial_path(output: Path, rank: int) -> Path:
    """preds.json -> preds.rank3.partial.jsonl: what process 3 of a distributed run appends to."""
    return output.with_name(f"{output.stem}.rank{rank}.partial.jsonl")


def partial_paths(output: Path) -> list[Path]:
    """Every partial file of a run that exists: one process's, then each rank's of any earlier distributed launch
    (of any size), in rank order."""
    ranks = [
        path
        for path in output.parent.glob(f"{output.stem}.rank*.partial.jsonl")
        if path.name[len(output.stem) + 5 : -len(".partial.jsonl")].isdigit()
    ]
    ranks.sort(key=lambda path: int(path.name[len(output.stem) + 5 : -len(".partial.jsonl")]))
    single = companion_paths(output)[0]
    return ([single] if single.exists() else []) + ranks


def lock_path(output: Path) -> Path:
    """preds.json -> preds.lock: held by a process of a distributed run while it merges (aqa.eval.shard.locked)."""
    return output.with_suffix(".lock")


def run_outputs(output: Path, runs: int) -> list[Path]:
    """Where each of `runs` repeated runs writes: preds.json alone, or preds.run1.json ... preds.runN.json."""
    if runs == 1:
        return [output]
    return [output.with_name(f"{output.stem}.run{number}{output.suffix}") for number in range(1, runs + 1)]


def run_files(path: Path) -> list[Path]:
    """The predictions files a path stands for: itself, or, where it does not exist, the runs written in its name
    (preds.json -> preds.run1.json, preds.run2.json, ... in run order)."""
    if path.exists():
        return [path]
    runs = [p for p in path.parent.glob(f"{path.stem}.run*{path.suffix}") if p.stem.rpartition(".run")[2].isdigit()]
    return sorted(runs, key=lambda p: int(p.stem.rpartition(".run")[2])) or [path]


def write_json(path: Path, data) -> None:
    write_atomic(path, json.dumps(data, ensure_ascii=False, indent=1) + "\n")


def read_manifest(output: Path) -> dict | None:
    manifest = companion_paths(output)[1]
    return json.loads(manifest.read_text(encoding="utf-8")) if manifest.is_file() else None


def manifest_version(manifest: dict | None, benchmark_name: str) -> str | None:
    """The question file's version as the manifest of a run on it records it."""
    return (manifest or {}).get(benchmark_name, {}).get("version")
