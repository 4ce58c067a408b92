"""The resumable evaluation run: answer a benchmark's question file in batches, append each answer as it comes, and
write the predictions file and its manifest.

`run_eval` writes `preds.json` (the records plus the prediction keys, so the official scorer reads it as is),
`preds.partial.jsonl` (appended per answer; a rerun skips finished ids) and `preds.manifest.json` (model, precision,
protocol, decoding, seed, batch size, the question file's sha256 and version, missing audio, and each session:
device, timings). `run_repeated` does N seeded runs of one setup, `preds.run1.json` ... `preds.runN.json`.

With `shuffle_choices` K, each item is also asked with K seeded permutations of its options; their answers are kept
in the item's `permutations` list, where scoring finds them (the official scorer ignores the field).
"""

from __future__ import annotations

import dataclasses
import platform
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import torch
import transformers

from aqa.answering import SEEDING, answer_many
from aqa.errors import AQAError, InputError
from aqa.eval.benchmarks import CUSTOM, Benchmark, custom_fields
from aqa.eval.manifest import Session, companion_paths, read_manifest, run_outputs, write_json
from aqa.eval.protocols import PROTOCOLS, Protocol, aqa_prediction
from aqa.eval.questions import QuestionFile, find_audio, load_questions
from aqa.jsonl import ResumableJsonl, read_results
from aqa.loading import load, spec_family
from aqa.model import HostEmbedding, default_device, default_precision
from aqa.options import DecodingOptions, ModelSpec, Question, Result

SHOWN = 10  # ids listed on the terminal before "and N more"
# Settings that manifests of earlier releases did not record, with the value those runs had.
UNRECORDED_SETTINGS = {"protocol": "greedy", "seed": None, "shuffle_choices": 0, "family": "qwen2-audio"}


@dataclass(frozen=True)
class RunConfig:
    benchmark: Benchmark
    model: ModelSpec
    data: Path  # the question file
    audio_dir: Path  # the folder the records' audio paths are relative to
    output: Path  # preds.json; its .partial.jsonl and .manifest.json go beside it
    decoding: DecodingOptions = DecodingOptions()  # under a protocol that fixes decoding: only max_new_tokens counts
    batch_size: int | None = None  # None: the protocol's (r1-aqa: 32), else 8
    limit: int | None = None  # only the first N records (a smoke test)
    restart: bool = False  # discard earlier answers in the output instead of resuming
    protocol: str = "greedy"  # a name in PROTOCOLS
    seed: int | None = None  # seeds sampling (per batch) and the choice permutations; None: unseeded sampling
    shuffle_choices: int = 0  # K: each item is also asked with K seeded permutations of its options

    @property
    def rules(self) -> Protocol:
        return PROTOCOLS[self.protocol]

    @property
    def batch(self) -> int:
        return self.batch_size or self.rules.batch_size or 8

    @property
    def answering(self) -> DecodingOptions:
        """The decoding the answers are made with: the protocol's own, or the command's; and the seed."""
        fixed = self.rules.decoding
        decoding = self.decoding
        if fixed is not None:
            decoding = dataclasses.replace(fixed, max_new_tokens=self.decoding.max_new_tokens or fixed.max_new_tokens)
        return dataclasses.replace(decoding, seed=self.seed)

    def check(self) -> None:
        """One-line errors for settings that cannot go together, before anything is loaded."""
        if self.protocol not in PROTOCOLS:
            raise InputError(f"unknown protocol {self.protocol!r}: choose one of {', '.join(PROTOCOLS)}")
        if self.batch < 1 or (self.limit is not None and self.limit < 1) or self.shuffle_choices < 0:
            raise InputError("--batch-size and --limit must be at least 1, --shuffle-choices not negative")
        if self.rules.decoding is not None and (self.decoding.think or self.decoding.sample):
            raise InputError(
                f"--protocol {self.protocol} fixes the decoding (the checkpoint's generation config): "
                "drop --think and --sample"
            )


@dataclass(frozen=True)
class Ask:
    """One question the run asks: an item in its own order (order 0) or with its options permuted (1..K)."""

    key: str  # the partial JSONL's id: the item's id, or "ID#k" for its k-th permutation
    record: dict
    order: int
    choices: tuple[str, ...]


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
    """Answer the question file (resuming), write the predictions and the manifest; also on Ctrl-C."""
    config.check()
    plan = plan_run(config)
    questions = plan.questions
    print(
        f"{questions.version_title} (sha256 {questions.sha256[:12]}...): {len(plan.records)} questions, "
        f"{config.rules.label()}",
        file=sys.stderr,
    )
    session = Session(started=now(), batch_size=config.batch)
    save(plan, session)  # the manifest names the settings before the first answer is appended
    report_missing(plan)
    try:
        with ResumableJsonl(companion_paths(config.output)[0], key="id") as partial:
            asks = plan_asks(plan)
            todo = [ask for ask in asks if ask.key not in partial.done and key_of(ask.record, plan) not in plan.missing]
            done = sum(ask.key in partial.done for ask in asks)
            print(f"{done} of {len(asks)} already answered", file=sys.stderr)
            if todo:
                for update in answer_records(config, todo, plan.audio, partial, session):
                    session = update  # each answer is on disk; the session keeps the counts for the manifest
    finally:  # also on Ctrl-C: the answers so far become a scorable predictions file
        session = replace(session, stopped=now())
        predictions = save(plan, session)
    return RunOutcome(questions, predictions, session)


def key_of(record: dict, plan: Plan) -> str:
    return str(record[plan.config.benchmark.id_field])


def plan_asks(plan: Plan) -> list[Ask]:
    """Every question of the run: each record in its own order, then its K permutations, in file order."""
    choices_field = plan.config.benchmark.choices_field
    asks = []
    for record in plan.records:
        rid = key_of(record, plan)
        asks.append(Ask(rid, record, 0, tuple(record[choices_field])))
        for order in range(1, plan.config.shuffle_choices + 1):
            asks.append(
                Ask(f"{rid}#{order}", record, order, permuted(record[choices_field], plan.config.seed, rid, order))
            )
    return asks


def permuted(choices, seed: int | None, rid: str, order: int) -> tuple[str, ...]:
    """The order-th permutation of an item's options, the same whenever asked with the same seed."""
    shuffled = list(choices)
    random.Random(f"{seed or 0}:{rid}:{order}").shuffle(shuffled)
    return tuple(shuffled)


def plan_run(config: RunConfig) -> Plan:
    benchmark = config.benchmark
    questions = load_questions(config.data, benchmark)
    records = questions.records[: config.limit]
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
    settings = run_settings(config, questions)  # reads the model's config (its family): after the data's checks
    earlier = check_resumable(config, settings)  # after the checks above: --restart discards answers only here
    return Plan(config, questions, records, audio, missing, settings, tuple(earlier))


def run_settings(config: RunConfig, questions: QuestionFile) -> dict:
    """What the answers depend on: a resumed run must use the same, or its answers would mix two setups."""
    device = torch.device(config.model.device) if config.model.device else default_device()
    decoding = dataclasses.asdict(config.answering) | {"max_new_tokens": config.answering.token_budget}
    return {
        "model": config.model.name,
        "family": spec_family(config.model).name,
        "precision": config.model.precision or default_precision(device),
        "protocol": config.protocol,
        "decoding": decoding,
        "seed": config.seed,
        # how a seeded sampled run's batches are seeded (aqa.answering.SEEDING); None where no seed reaches sampling
        "seeding": SEEDING if config.seed is not None and config.answering.sample else None,
        "shuffle_choices": config.shuffle_choices,
        "prompt": "R1-AQA, thinking" if decoding["think"] else "R1-AQA, answer only",
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
    earlier = UNRECORDED_SETTINGS | previous["settings"]  # a run from before a setting existed had its default
    if isinstance(earlier.get("decoding"), dict):
        earlier["decoding"] = dataclasses.asdict(DecodingOptions()) | earlier["decoding"]
    if "seeding" not in earlier:  # recorded since seeding 2; before it, a seeded sampled run used seeding 1
        decoding = earlier.get("decoding")
        sampled = isinstance(decoding, dict) and decoding.get("sample")
        earlier["seeding"] = 1 if earlier.get("seed") is not None and sampled else None
    if earlier["seeding"] != settings["seeding"] and earlier["seeding"] is not None and settings["seeding"]:
        raise InputError(
            f"{partial} holds answers sampled with an older seeding (from each clip's full path), which this version "
            "replaced by one that gives the same text wherever the data is; finish that run with the aqa release "
            "that started it, or start over here with --restart (or another --output)"
        )
    changed = [key for key in settings if earlier.get(key) != settings[key]]
    if changed:
        was = ", ".join(f"{key} {earlier.get(key)!r}" for key in changed)
        raise InputError(
            f"{partial} holds answers made with other settings ({was}); rerun with those, or use another "
            "--output, or --restart to discard them"
        )
    return previous.get("runs", [])


def answer_records(
    config: RunConfig, todo: Sequence[Ask], audio: dict[str, Path], partial: ResumableJsonl, session: Session
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
            audio[str(ask.record[benchmark.id_field])],
            ask.record[benchmark.question_field],
            ask.choices,
            allow_duplicate_options=True,
            channel=config.rules.channel,
            key=f"{ask.key}\t{ask.record[benchmark.audio_field]}",  # seeds sampling: the same in any --audio-dir
        )
        for ask in todo
    ]
    clock = time.perf_counter()
    answers = answer_many(
        model, questions, config.answering, config.batch, progress=True, keep_order=config.rules.keep_order
    )
    for index, result in answers:
        partial.write([prediction_row(todo[index], result, config)])
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


def save(plan: Plan, session: Session) -> list[dict]:
    """(Re)write the predictions file from the partial JSONL, and the manifest."""
    partial, manifest_path = companion_paths(plan.config.output)
    predictions = merge(plan, latest_rows(partial))
    write_json(plan.config.output, predictions)
    write_json(manifest_path, manifest(plan, predictions, [*plan.earlier_runs, session.to_dict()]))
    return predictions


def latest_rows(path: Path) -> dict[str, dict]:
    """Answer rows by id (an answer wins over an error row for the same id); InputError if two answers disagree.
    Lines that cannot be used are left out here and named once, when the run reopens the file (aqa.jsonl)."""
    return read_results(path, "id")[0] if path.exists() else {}


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


def manifest(plan: Plan, predictions: Sequence[dict], runs: list[dict]) -> dict:
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
