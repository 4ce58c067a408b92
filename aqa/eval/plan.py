"""A run fixed before any answer: its settings (RunConfig), the records and their audio, what earlier sessions of
the same output already answered, the questions to ask (each item, and its option permutations), and the check that
a resumed run uses the settings its answers were made with."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from aqa.answering import SEEDING
from aqa.errors import InputError
from aqa.eval.benchmarks import Benchmark
from aqa.eval.manifest import companion_paths, partial_paths, read_manifest
from aqa.eval.protocols import PROTOCOLS, Protocol
from aqa.eval.questions import QuestionFile, find_audio, load_questions
from aqa.eval.shard import Shard
from aqa.families import Family
from aqa.jsonl import read_results
from aqa.loading import spec_family
from aqa.model import default_device, default_precision
from aqa.options import AUDIO_MODES, DecodingOptions, ModelSpec, Question

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
    shard: Shard = Shard()  # which process of a distributed launch this is (one process by default)

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
        if fixed is not None:  # a baseline keeps its audio mode under any protocol
            tokens = self.decoding.max_new_tokens or fixed.max_new_tokens
            decoding = dataclasses.replace(fixed, max_new_tokens=tokens, audio=self.decoding.audio)
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
        if self.decoding.audio not in AUDIO_MODES:
            raise InputError(f"unknown --audio {self.decoding.audio!r}: choose one of {', '.join(AUDIO_MODES)}")
        if self.restart and self.shard.distributed:
            raise InputError(
                "--restart cannot be used with several processes (one would delete answers another has just "
                "written): restart with one process and --limit 1, or use another --output"
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
    family: Family  # the model's, read from its config: batches are planned before it is loaded


def question_of(ask: Ask, plan: Plan) -> Question:
    benchmark, rules = plan.config.benchmark, plan.config.rules
    return Question(
        plan.audio[key_of(ask.record, plan)],
        ask.record[benchmark.question_field],
        ask.choices,
        allow_duplicate_options=True,
        channel=rules.channel,
        key=f"{ask.key}\t{ask.record[benchmark.audio_field]}",  # seeds sampling: the same in any --audio-dir
    )


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
    rows = {} if config.restart else latest_rows(config.output)
    answered = {key for key, row in rows.items() if "error" not in row}
    key = benchmark.id_field
    audio = {str(r[key]): find_audio(config.audio_dir, r[benchmark.audio_field]) for r in records}
    missing = frozenset(rid for rid, path in audio.items() if rid not in answered and not path.is_file())
    if records and len(missing) == len(records):  # not one clip: surely the wrong folder, not a few lost files
        raise InputError(
            f"none of the {len(records)} audio files is under {config.audio_dir} (e.g. {next(iter(audio.values()))}); "
            f"--audio-dir is {benchmark.audio_hint}"
        )
    family = spec_family(config.model)  # reads the model's config: after the data's checks
    settings = run_settings(config, questions, family)
    earlier = check_resumable(config, settings)  # after the checks above: --restart discards answers only here
    return Plan(config, questions, records, audio, missing, settings, tuple(earlier), family)


def run_settings(config: RunConfig, questions: QuestionFile, family: Family) -> dict:
    """What the answers depend on: a resumed run must use the same, or its answers would mix two setups (among
    them what the model heard: decoding's `audio`)."""
    device = torch.device(config.model.device) if config.model.device else default_device()
    decoding = dataclasses.asdict(config.answering) | {"max_new_tokens": config.answering.token_budget}
    return {
        "model": config.model.name,
        "family": family.name,
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
    if config.restart:  # one process only (RunConfig.check): no other can be writing
        for path in partial_paths(config.output):
            path.unlink()
        manifest.unlink(missing_ok=True)
        return []
    previous = read_manifest(config.output)
    partials = partial_paths(config.output)
    if previous is None or not partials:
        return []
    partial = partials[0]
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


def latest_rows(output: Path) -> dict[str, dict]:
    """Answer rows by id, from every partial file of the run (each process's); an answer wins over an error row for
    the same id; InputError if two answers disagree. Lines that cannot be used are left out here and named once,
    when a run reopens the file (aqa.jsonl), or names what earlier processes left (report_dropped)."""
    return read_results(partial_paths(output), "id")[0]


def answered_keys(output: Path) -> set[str]:
    """The ids with an answer (not an error) in any partial file of the run."""
    return {key for key, row in latest_rows(output).items() if "error" not in row}
