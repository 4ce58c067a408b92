"""The resumable evaluation run: answer a benchmark's question file in batches, append each answer as it comes, and
write the predictions file and its manifest.

`run_eval` writes `preds.json` (the records plus the prediction keys, so the official scorer reads it as is),
`preds.partial.jsonl` (appended per answer; a rerun skips finished ids) and `preds.manifest.json` (model, precision,
decoding, batch size, the question file's sha256 and version, missing audio, and each session: device, timings).
"""

from __future__ import annotations

import dataclasses
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import torch
import transformers

from aqa.answering import answer_many
from aqa.errors import AQAError, InputError
from aqa.eval.benchmarks import Benchmark
from aqa.eval.manifest import Session, companion_paths, read_manifest, write_json
from aqa.eval.questions import QuestionFile, find_audio, load_questions
from aqa.jsonl import ResumableJsonl, read_jsonl
from aqa.loading import load
from aqa.model import HostEmbedding, default_device, default_precision
from aqa.options import DecodingOptions, ModelSpec, Question, Result
from aqa.parsing import extract_answer

SHOWN = 10  # ids listed on the terminal before "and N more"


@dataclass(frozen=True)
class RunConfig:
    benchmark: Benchmark
    model: ModelSpec
    data: Path  # the question file
    audio_dir: Path  # the folder the records' audio paths are relative to
    output: Path  # preds.json; its .partial.jsonl and .manifest.json go beside it
    decoding: DecodingOptions = DecodingOptions()
    batch_size: int = 8
    limit: int | None = None  # only the first N records (a smoke test)
    restart: bool = False  # discard earlier answers in the output instead of resuming


@dataclass(frozen=True)
class Plan:
    """One run, fixed before any answer: the records, their audio, and the settings the answers depend on."""

    config: RunConfig
    questions: QuestionFile
    records: tuple[dict, ...]  # the records evaluated (the first --limit ones), in file order
    audio: dict[str, Path]  # id -> audio file
    missing: frozenset[str]  # ids whose audio file does not exist and that have no answer yet
    settings: dict
    earlier_runs: tuple[dict, ...]  # the sessions that wrote the answers being resumed


@dataclass(frozen=True)
class RunOutcome:
    questions: QuestionFile
    predictions: list[dict]  # the question file's records, in order, with their answers
    session: Session  # this invocation


def run_eval(config: RunConfig) -> RunOutcome:
    """Answer the question file (resuming), write the predictions and the manifest; also on Ctrl-C."""
    if config.batch_size < 1 or (config.limit is not None and config.limit < 1):
        raise InputError("--batch-size and --limit must be at least 1")
    plan = plan_run(config)
    questions = plan.questions
    print(
        f"{questions.version_title} (sha256 {questions.sha256[:12]}...): {len(plan.records)} questions", file=sys.stderr
    )
    session = Session(started=now(), batch_size=config.batch_size)
    save(plan, session)  # the manifest names the settings before the first answer is appended
    report_missing(plan)
    try:
        with ResumableJsonl(companion_paths(config.output)[0], key="id") as partial:
            key = config.benchmark.id_field
            todo = [r for r in plan.records if r[key] not in partial.done and str(r[key]) not in plan.missing]
            print(f"{len(plan.records) - len(todo) - len(plan.missing)} of {len(plan.records)} already answered",
                  file=sys.stderr)  # fmt: skip
            if todo:
                for update in answer_records(config, todo, plan.audio, partial, session):
                    session = update  # each answer is on disk; the session keeps the counts for the manifest
    finally:  # also on Ctrl-C: the answers so far become a scorable predictions file
        session = replace(session, stopped=now())
        predictions = save(plan, session)
    return RunOutcome(questions, predictions, session)


def plan_run(config: RunConfig) -> Plan:
    benchmark = config.benchmark
    questions = load_questions(config.data, benchmark)
    records = questions.records[: config.limit]
    settings = run_settings(config, questions)
    rows = {} if config.restart else latest_rows(companion_paths(config.output)[0])
    answered = {key for key, row in rows.items() if "error" not in row}
    key = benchmark.id_field
    audio = {str(r[key]): find_audio(config.audio_dir, r[benchmark.audio_field]) for r in records}
    missing = frozenset(rid for rid, path in audio.items() if rid not in answered and not path.is_file())
    if records and len(missing) == len(records):  # not one clip: surely the wrong folder, not a few lost files
        raise InputError(
            f"none of the {len(records)} audio files is under {config.audio_dir} (e.g. {next(iter(audio.values()))}); "
            f"--audio-dir is {benchmark.audio_hint}"
        )
    earlier = check_resumable(config, settings)  # after the checks above: --restart discards answers only here
    return Plan(config, questions, records, audio, missing, settings, tuple(earlier))


def run_settings(config: RunConfig, questions: QuestionFile) -> dict:
    """What the answers depend on: a resumed run must use the same, or its answers would mix two setups."""
    device = torch.device(config.model.device) if config.model.device else default_device()
    decoding = dataclasses.asdict(config.decoding) | {"max_new_tokens": config.decoding.token_budget}
    return {
        "model": config.model.name,
        "precision": config.model.precision or default_precision(device),
        "decoding": decoding,
        "prompt": "R1-AQA, thinking" if config.decoding.think else "R1-AQA, answer only",
        f"{questions.benchmark.name}_sha256": questions.sha256,
    }


def check_resumable(config: RunConfig, settings: dict) -> list[dict]:
    """The earlier sessions of this output (empty for a fresh one); InputError if they used other settings."""
    partial, manifest = companion_paths(config.output)
    if config.restart:
        partial.unlink(missing_ok=True)
        manifest.unlink(missing_ok=True)
        return []
    previous = read_manifest(config.output)
    if previous is None or not partial.exists():
        return []
    changed = [key for key in settings if previous["settings"].get(key) != settings[key]]
    if changed:
        was = ", ".join(f"{key} {previous['settings'].get(key)!r}" for key in changed)
        raise InputError(
            f"{partial} holds answers made with other settings ({was}); rerun with those, or use another "
            "--output, or --restart to discard them"
        )
    return previous.get("runs", [])


def answer_records(
    config: RunConfig, todo: Sequence[dict], audio: dict[str, Path], partial: ResumableJsonl, session: Session
) -> Iterator[Session]:
    """Load the model and answer `todo`, appending each answer to the partial JSONL as its batch finishes; yields
    the session, updated, after the load and after each answer."""
    benchmark = config.benchmark
    clock = time.perf_counter()
    model = load(config.model)
    session = replace(
        session,
        device=describe_device(model.device),
        embeddings_on_cpu=isinstance(model.hf.get_input_embeddings(), HostEmbedding),
        load_seconds=round(time.perf_counter() - clock, 2),
    )
    yield session
    questions = [
        Question(
            audio[str(r[benchmark.id_field])],
            r[benchmark.question_field],
            tuple(r[benchmark.choices_field]),
            allow_duplicate_options=True,
        )
        for r in todo
    ]
    clock = time.perf_counter()
    for index, result in answer_many(model, questions, config.decoding, config.batch_size, progress=True):
        partial.write([prediction_row(todo[index][benchmark.id_field], result, benchmark)])
        failed = isinstance(result, AQAError)
        session = replace(
            session,
            answered=session.answered + (not failed),
            failed=session.failed + failed,
            answer_seconds=round(time.perf_counter() - clock, 2),
        )
        yield session


def official_prediction(raw: str) -> str:
    """R1-AQA's test script: the text of the <answer> tag, or the whole output when there is none, stripped.

    One difference: R1-AQA's regex did not match across lines, so a tag holding a line break fell back to the whole
    output there; the shared extract_answer reads it (the released model answers on one line).
    """
    extracted = extract_answer(raw)
    return extracted if extracted is not None else raw.strip()


def prediction_row(record_id, result: Result | AQAError, benchmark: Benchmark) -> dict:
    """One line of the partial JSONL; keys chosen not to clash with the benchmark's own (its `answer` is the gold
    one). The prediction goes under every key the benchmark's scorers read."""
    if isinstance(result, AQAError):
        return {"id": record_id, "error": str(result)}
    details = result.to_dict()
    prediction = official_prediction(result.raw)
    return {
        "id": record_id,
        **{key: prediction for key in reversed(benchmark.prediction_keys)},
        "raw_output": details.pop("raw"),
        "aqa_answer": details.pop("answer"),
        "aqa_answer_source": details.pop("answer_source"),
        **details,
    }


def save(plan: Plan, session: Session) -> list[dict]:
    """(Re)write the predictions file from the partial JSONL, and the manifest."""
    partial, manifest_path = companion_paths(plan.config.output)
    predictions = merge(plan, latest_rows(partial))
    write_json(plan.config.output, predictions)
    write_json(manifest_path, manifest(plan, predictions, [*plan.earlier_runs, session.to_dict()]))
    return predictions


def latest_rows(path: Path) -> dict[str, dict]:
    """Answer rows by id; an answer wins over an error row for the same id."""
    rows: dict[str, dict] = {}
    for row in read_jsonl(path) if path.exists() else []:
        if "error" not in row or row["id"] not in rows:
            rows[str(row["id"])] = row
    return rows


def merge(plan: Plan, rows: dict[str, dict]) -> list[dict]:
    """The records in file order, each with its answer fields, or an `error` and no prediction."""
    merged = []
    for record in plan.records:
        rid = str(record[plan.config.benchmark.id_field])
        extra = {key: value for key, value in rows.get(rid, {}).items() if key != "id"}
        if rid in plan.missing:
            extra = {"error": f"audio file not found: {plan.audio[rid]}"}
        merged.append({**record, **extra})
    return merged


def manifest(plan: Plan, predictions: Sequence[dict], runs: list[dict]) -> dict:
    benchmark = plan.config.benchmark
    key = benchmark.id_field
    errors = {r[key]: r["error"] for r in predictions if "error" in r and str(r[key]) not in plan.missing}
    return {
        "benchmark": benchmark.name,
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


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({platform.processor() or platform.machine()})"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
