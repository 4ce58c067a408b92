"""Checkpoint sweeps: evaluate many checkpoints on one question file, one table; optionally pick the checkpoint on
one part of the questions and report its accuracy on the held-out rest, so that the pick is not made on the test.

Under torchrun each process evaluates every N-th checkpoint on its own device (aqa.eval.shard), and the process that
finds every checkpoint's run complete writes the table; none waits for another."""

from __future__ import annotations

import gc
import hashlib
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import torch

from aqa.errors import InputError
from aqa.eval.manifest import manifest_version, read_manifest, write_json
from aqa.eval.plan import RunConfig
from aqa.eval.questions import read_predictions
from aqa.eval.report import RunSummary, bar_chart, sweep_markdown
from aqa.eval.run import run_eval
from aqa.eval.score import Score, score_records, score_to_dict
from aqa.eval.shard import Shard, locked


class CheckpointScores(NamedTuple):  # a tuple, so that a report unpacks it as (name, all, selection, held_out)
    name: str  # the checkpoint's folder name
    all: Score
    selection: Score | None  # with a held-out split: the part the checkpoint is picked on
    held_out: Score | None  # and the part its accuracy is reported on


@dataclass(frozen=True)
class SweepOutcome:
    version: str | None  # the question file's version
    checkpoints: list[CheckpointScores]  # in step order
    table: str  # sweep.md's Markdown


def natural_key(name: str) -> list:
    """checkpoint-200 before checkpoint-1000 (a shell glob sorts them the other way)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def checkpoint_names(checkpoints: Sequence[str]) -> list[tuple[str, str]]:
    """(name, checkpoint) in step order; a pattern the shell left unexpanded matched nothing."""
    unmatched = [c for c in checkpoints if any(ch in c for ch in "*?[") and not Path(c).exists()]
    if unmatched:
        raise InputError(f"no checkpoint matches {unmatched[0]}")
    named = sorted(((Path(c.rstrip("/")).name, c) for c in checkpoints), key=lambda pair: natural_key(pair[0]))
    names = [name for name, _ in named]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"two checkpoints are both named {repeated[0]}; sweep them separately")
    return named


def holdout_ids(ids: Sequence[str], fraction: float, seed: int) -> frozenset[str]:
    """A deterministic held-out subset: the ids whose salted hashes rank lowest (same ids and seed, same split)."""
    if not 0 < fraction < 1:
        raise InputError("--holdout must be a fraction between 0 and 1, e.g. 0.5")
    ranked = sorted(ids, key=lambda key: hashlib.sha256(f"{seed}:{key}".encode()).hexdigest())
    return frozenset(ranked[: round(fraction * len(ids))])


def run_sweep(
    config: RunConfig,
    checkpoints: Sequence[str],
    output_dir: Path,
    holdout: float | None,
    seed: int,
    chart: Path | None = None,
) -> SweepOutcome | None:
    """Evaluate each checkpoint (`config` with its name as the model) into output_dir/NAME/preds.json, then write
    sweep.md, sweep.json (and the chart) from their predictions files. Under torchrun, this process's checkpoints;
    the table is written, and returned, by the process that finds every checkpoint's run complete (None elsewhere)."""
    named = checkpoint_names(checkpoints)
    if holdout is not None:
        holdout_ids(["check"], holdout, seed)  # a bad fraction fails before hours of inference
    shard = config.shard
    for number, (name, checkpoint) in enumerate(named):
        if not shard.owns(number):
            continue
        print(f"{shard.tag()}== {name}", file=sys.stderr)
        model = replace(config.model, name=checkpoint)
        run_eval(replace(config, model=model, output=output_dir / name / "preds.json", shard=Shard()))
        release_memory()
    with locked(output_dir / "sweep.lock", shard):
        outcome = collect(config, named, output_dir, holdout, seed)
        if outcome is None:
            return None
        summary = sweep_json(outcome, holdout, seed, config)
        if shard.distributed and read_json(output_dir / "sweep.json") == summary:
            return None  # another process completed the sweep and wrote the table
        write_json(output_dir / "sweep.json", summary)
        (output_dir / "sweep.md").write_text(outcome.table + "\n", encoding="utf-8")
        if chart:
            runs = [RunSummary(c.name, "checkpoint", outcome.version, c.all, None) for c in outcome.checkpoints]
            bar_chart(runs, chart, references=False, benchmark=config.benchmark)
    return outcome


def collect(
    config: RunConfig, named: Sequence[tuple[str, str]], output_dir: Path, holdout: float | None, seed: int
) -> SweepOutcome | None:
    """Every checkpoint's scores, read from its predictions file; None while one has questions left (another
    process is still on it)."""
    results, version = [], None
    for name, _ in named:
        output = output_dir / name / "preds.json"
        manifest = read_manifest(output)
        if manifest is None or manifest.get("pending", 0):
            return None
        version = manifest_version(manifest, config.benchmark.name)
        predictions = read_predictions(output, config.benchmark)
        results.append(split_scores(name, predictions, holdout, seed, config))
    table = sweep_markdown(results, version, holdout, seed, config.benchmark)
    return SweepOutcome(version, results, table)


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def split_scores(name: str, predictions: list[dict], holdout: float | None, seed: int, config: RunConfig):
    """Score on all records, and with --holdout on the selection part and the held-out part separately."""
    benchmark = config.benchmark
    if holdout is None:
        return CheckpointScores(name, score_records(predictions, benchmark), None, None)
    held = holdout_ids([str(r[benchmark.id_field]) for r in predictions], holdout, seed)
    selection = [r for r in predictions if str(r[benchmark.id_field]) not in held]
    kept = [r for r in predictions if str(r[benchmark.id_field]) in held]
    return CheckpointScores(
        name, score_records(predictions, benchmark), score_records(selection, benchmark), score_records(kept, benchmark)
    )


def sweep_json(outcome: SweepOutcome, holdout: float | None, seed: int, config: RunConfig) -> dict:
    benchmark = config.benchmark

    def scored(score: Score | None) -> dict | None:
        return score_to_dict(score, benchmark) if score else None

    return {
        "benchmark": benchmark.name,
        "version": outcome.version,
        "holdout": holdout,
        "split_seed": seed,
        "checkpoints": {
            c.name: {"all": scored(c.all), "selection": scored(c.selection), "held_out": scored(c.held_out)}
            for c in outcome.checkpoints
        },
    }


def release_memory() -> None:
    """One checkpoint at a time: free the last one's GPU memory before loading the next."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
