"""The resumable evaluation run: answer a benchmark's question file in batches, append each answer as it comes, and
write the predictions file and its manifest.

`run_eval` writes `preds.json` (the records plus the prediction keys, so the official scorer reads it as is),
`preds.partial.jsonl` (appended per answer; a rerun skips finished ids) and `preds.manifest.json` (model, precision,
protocol, decoding, what the model heard, seed, batch size, the question file's sha256 and version, missing audio,
and each session: device, timings). `run_repeated` does N seeded runs of one setup, `preds.run1.json` ...
`preds.runN.json`.

The run's batches are planned once from its questions (aqa.answering.plan_batches), whatever the number of
processes: under torchrun each process answers every N-th batch (aqa.eval.shard) into its own partial file and
merges all of them when it finishes, and a batch cut short by a kill is asked again whole, writing only the answers
it lacked. So a batch's answers, and the seed a sampled one draws from, are the same in one process or many, before
a kill or after; a run started on 8 GPUs can finish on 1.

With `shuffle_choices` K, each item is also asked with K seeded permutations of its options; their answers are kept
in the item's `permutations` list, where scoring finds them (the official scorer ignores the field).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import torch
import transformers

from aqa.answering import answer_many, plan_batches
from aqa.errors import AQAError, InputError
from aqa.eval.benchmarks import CUSTOM, Benchmark, custom_fields
from aqa.eval.manifest import (
    Session,
    companion_paths,
    lock_path,
    partial_paths,
    rank_partial_path,
    read_manifest,
    run_outputs,
    write_json,
)
from aqa.eval.plan import (
    Ask,
    Plan,
    RunConfig,
    answered_keys,
    key_of,
    latest_rows,
    plan_asks,
    plan_run,
    question_of,
)
from aqa.eval.protocols import aqa_prediction
from aqa.eval.questions import QuestionFile
from aqa.eval.shard import Shard, locked
from aqa.jsonl import ResumableJsonl, read_results
from aqa.loading import load
from aqa.model import HostEmbedding
from aqa.options import AUDIO_LABELS, Question, Result

SHOWN = 10  # ids listed on the terminal before "and N more"


@dataclass(frozen=True)
class RunOutcome:
    questions: QuestionFile
    predictions: list[dict]  # the question file's records, in order, with their answers (those on disk so far)
    session: Session  # this invocation
    pending: int = 0  # questions with no answer (nor error) yet: another process's, or a failed rerun's
    final: bool = True  # this process wrote the predictions file complete (of several, the last to finish)


def run_repeated(config: RunConfig, runs: int) -> list[RunOutcome]:
    """`runs` runs of one setup, run i seeded with seed + i - 1, into preds.run1.json ... (one run: preds.json)."""
    if runs < 1:
        raise InputError("--runs must be at least 1")
    if runs > 1 and config.seed is None:
        raise InputError("--runs needs --seed: each run is seeded from it, so that every run can be repeated")
    outputs = run_outputs(config.output, runs)
    seeds = [config.seed] if runs == 1 else [config.seed + number for number in range(runs)]
    outcomes = []
    for number, (output, seed) in enumerate(zip(outputs, seeds), start=1):
        if runs > 1:
            print(f"== run {number} of {runs} (seed {seed}): {output}", file=sys.stderr)
        outcomes.append(run_eval(replace(config, output=output, seed=seed)))
    return outcomes


def run_eval(config: RunConfig) -> RunOutcome:
    """Answer the question file (resuming), write the predictions and the manifest; also on Ctrl-C. Under torchrun,
    this process's share of the batches, then the merge of every process's answers."""
    config.check()
    plan = plan_run(config)
    questions, shard = plan.questions, config.shard
    say(
        f"{questions.version_title} (sha256 {questions.sha256[:12]}...): {len(plan.records)} questions, "
        f"{config.rules.label()}{audio_label(config.decoding.audio)}",
        shard,
    )
    session = Session(started=now(), batch_size=config.batch, **shard_fields(shard))
    save(plan, session)  # the manifest names the settings before the first answer is appended
    if shard.rank == 0:
        report_missing(plan)
        report_dropped(plan)
    idle = False
    try:
        with ResumableJsonl(own_partial(config), key="id") as partial:
            every = plan_asks(plan)
            answered = answered_keys(config.output) | partial.done
            asks = [ask for ask in every if key_of(ask.record, plan) not in plan.missing]
            say(f"{sum(ask.key in answered for ask in every)} of {len(every)} already answered", shard)
            idle = all(ask.key in answered for ask in asks)
            asked = [question_of(ask, plan) for ask in asks]
            batches = plan_batches(plan.family, asked, config.batch, config.rules.keep_order)
            mine = [
                batch
                for number, batch in enumerate(batches)
                if shard.owns(number) and any(asks[index].key not in answered for index in batch)
            ]
            if shard.distributed:
                share = sum(len(batch) for batch in mine)
                say(f"this process asks {len(mine)} of the {len(batches)} batches ({share} questions)", shard)
            if mine:
                for update in answer_records(config, asks, asked, mine, answered, partial, session):
                    session = update  # each answer is on disk; the session keeps the counts for the manifest
    finally:  # also on Ctrl-C: the answers so far become a scorable predictions file
        session = replace(session, stopped=now())
        predictions, pending, completed = save(plan, session)
    final = not shard.distributed or completed or (idle and shard.rank == 0)
    return RunOutcome(questions, predictions, session, pending, final)


def say(text: str, shard: Shard) -> None:
    print(f"{shard.tag()}{text}", file=sys.stderr, flush=True)


def audio_label(audio: str) -> str:
    return "" if audio == "clip" else f", {AUDIO_LABELS[audio]}"


def shard_fields(shard: Shard) -> dict:
    """What a session records of its process: the launch's size, and in a launch of several, which one it was."""
    if not shard.distributed:
        return {"world_size": 1}
    return {"world_size": shard.world, "rank": shard.rank, "host": platform.node(), "pid": os.getpid()}


def own_partial(config: RunConfig) -> Path:
    """The partial file this process appends to: the run's own, or with several processes, its rank's."""
    if config.shard.distributed:
        return rank_partial_path(config.output, config.shard.rank)
    return companion_paths(config.output)[0]


def answer_records(
    config: RunConfig,
    asks: Sequence[Ask],
    questions: Sequence[Question],
    batches: Sequence[Sequence[int]],
    answered: set[str],
    partial: ResumableJsonl,
    session: Session,
) -> Iterator[Session]:
    """Load the model and ask `batches` (indices into `asks` and their `questions`), appending each answer the
    partial JSONL lacks as its batch finishes; yields the session, updated, after the load and after each answer."""
    clock = time.perf_counter()
    model = load(config.model)
    session = replace(
        session,
        device=describe_device(model.device),
        embeddings_on_cpu=isinstance(model.hf.get_input_embeddings(), HostEmbedding),
        load_seconds=round(time.perf_counter() - clock, 2),
    )
    yield session
    clock = time.perf_counter()
    answers = answer_many(
        model, questions, config.answering, config.batch, progress=True, keep_order=config.rules.keep_order,
        batches=batches,
    )  # fmt: skip
    for index, result in answers:
        if asks[index].key in answered:  # asked again only because a kill cut its batch short: its answer stands
            continue
        partial.write([prediction_row(asks[index], result, config)])
        failed = isinstance(result, AQAError)
        session = replace(
            session,
            answered=session.answered + (not failed),
            failed=session.failed + failed,
            answer_seconds=round(time.perf_counter() - clock, 2),
        )
        yield session


def prediction_row(ask: Ask, result: Result | AQAError, config: RunConfig) -> dict:
    """One line of the partial JSONL: the ask's key (and, for a permutation, its order and options), then its
    prediction fields."""
    order = {"order": ask.order, config.benchmark.choices_field: list(ask.choices)} if ask.order else {}
    return {"id": ask.key, **order, **prediction_fields(result, config.benchmark, config.rules.extract)}


def prediction_fields(
    result: Result | AQAError, benchmark: Benchmark, extract: Callable[[str], str] = aqa_prediction
) -> dict:
    """What a record gains from its answer (or its `error`): the prediction, as `extract` reads it from the raw
    output, under every key the benchmark's scorers read, the raw output, aqa's own answer and the Result's fields;
    names chosen not to clash with the benchmark's own (its `answer` is the gold one). Training's evaluation writes
    the same."""
    if isinstance(result, AQAError):
        return {"error": str(result)}
    details = result.to_dict()
    prediction = extract(result.raw)
    return {
        **{key: prediction for key in reversed(benchmark.prediction_keys)},
        "raw_output": details.pop("raw"),
        "aqa_answer": details.pop("answer"),
        "aqa_answer_source": details.pop("answer_source"),
        **details,
    }


def save(plan: Plan, session: Session) -> tuple[list[dict], int, bool]:
    """(Re)write the predictions file from every partial file, and the manifest; with several processes, one at a
    time (under the run's lock), so that the last to save has merged every answer. Returns the predictions, how
    many questions have no answer (nor error) yet, and whether this save is the one that found none left."""
    config = plan.config
    with locked(lock_path(config.output), config.shard):
        previous = read_manifest(config.output) if config.shard.distributed else None
        rows = latest_rows(config.output)
        predictions = merge(plan, rows)
        keys = [ask.key for ask in plan_asks(plan) if key_of(ask.record, plan) not in plan.missing]
        pending = sum(key not in rows for key in keys)
        write_json(config.output, predictions)
        runs = session_runs(plan, session, previous)
        write_json(companion_paths(config.output)[1], manifest(plan, predictions, runs, pending))
    completed = pending == 0 and (previous or {}).get("pending") != 0
    return predictions, pending, completed


def session_runs(plan: Plan, session: Session, previous: dict | None) -> list[dict]:
    """The manifest's sessions: the earlier ones and this one; with several processes, also the other processes'
    of this launch, as the manifest holds them (each process replaces its own entry)."""
    own = session.to_dict()
    if not plan.config.shard.distributed:
        return [*plan.earlier_runs, own]
    same = ("started", "rank", "host", "pid")
    others = [run for run in (previous or {}).get("runs", []) if any(run.get(key) != own[key] for key in same)]
    return [*others, own]


def merge(plan: Plan, rows: dict[str, dict]) -> list[dict]:
    """The records in file order, each with its answer fields, or an `error` and no prediction; with permutations,
    the answers to them in order (a missing one as its `order` and `error`)."""
    merged = []
    for record in plan.records:
        rid = key_of(record, plan)
        extra = {key: value for key, value in rows.get(rid, {}).items() if key != "id"}
        if rid in plan.missing:
            extra = {"error": f"audio file not found: {plan.audio[rid]}"}
        if plan.config.shuffle_choices:
            extra["permutations"] = [
                permutation_row(rows, rid, order) for order in range(1, plan.config.shuffle_choices + 1)
            ]
        merged.append({**record, **extra})
    return merged


def permutation_row(rows: dict[str, dict], rid: str, order: int) -> dict:
    row = rows.get(f"{rid}#{order}", {"order": order, "error": "not answered yet"})
    return {key: value for key, value in row.items() if key != "id"}


def manifest(plan: Plan, predictions: Sequence[dict], runs: list[dict], pending: int) -> dict:
    benchmark = plan.config.benchmark
    key = benchmark.id_field
    errors = {r[key]: r["error"] for r in predictions if "error" in r and str(r[key]) not in plan.missing}
    permutations = [p for r in predictions for p in r.get("permutations", [])]
    fields = {"benchmark_fields": custom_fields(benchmark)} if benchmark.name == CUSTOM else {}
    return {
        "benchmark": benchmark.name,
        **fields,
        "model": plan.config.model.name,
        "settings": plan.settings,
        benchmark.name: {
            "file": str(plan.questions.path),
            "sha256": plan.questions.sha256,
            "version": plan.questions.version,
            "records_in_file": len(plan.questions.records),
            "records_evaluated": len(plan.records),
            "limit": plan.config.limit,
        },
        "audio_dir": str(plan.config.audio_dir),
        "answered": sum(benchmark.prediction_key in record for record in predictions),
        "answered_permutations": sum(benchmark.prediction_key in p for p in permutations),
        "pending": pending,  # questions not asked yet (their answers still to come: a run stopped, or other processes)
        "missing_audio": {"count": len(plan.missing), "ids": sorted(plan.missing)},
        "failed": {"count": len(errors), "errors": errors},
        "runs": runs,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }


def report_missing(plan: Plan) -> None:
    if not plan.missing:
        return
    paths = sorted(str(plan.audio[key]) for key in plan.missing)
    shown = ", ".join(paths[:SHOWN]) + (f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else "")
    print(
        f"warning: {len(paths)} audio file(s) not found, skipped and counted wrong (listed in the manifest): {shown}",
        file=sys.stderr,
    )


def report_dropped(plan: Plan) -> None:
    """Name the unusable lines (cut off by a kill...) of partial files that no process of this launch reopens: those
    an earlier launch of another size left. Their items are answered again."""
    config = plan.config
    own = {rank_partial_path(config.output, rank) for rank in range(config.shard.world)}
    own = own if config.shard.distributed else {companion_paths(config.output)[0]}
    for path in partial_paths(config.output):
        if path not in own:
            for line in read_results(path, "id")[1]:
                say(f"warning: {line}: dropped; its item is answered again", config.shard)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({platform.processor() or platform.machine()})"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
