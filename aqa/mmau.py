"""MMAU test-mini evaluation: batched, resumable, versioned runs scored with the official rule.

    aqa mmau run --data data/MMAU/mmau-test-mini.json --audio-dir data/MMAU --output runs/r1-aqa/preds.json
    aqa mmau score runs/r1-aqa/preds.json
    aqa mmau report runs/r1-aqa/preds.json --output runs/report.md --chart runs/report.png
    aqa mmau sweep --checkpoints out/checkpoint-* --data ... --audio-dir ... --output-dir runs/sweep --holdout 0.5

`run` writes `preds.json` (the MMAU records plus `model_output`/`model_prediction`, so MMAU's own evaluation.py runs
on it unedited), `preds.partial.jsonl` (appended per answer; a rerun skips finished ids) and `preds.manifest.json`
(model, precision, decoding, batch size, the MMAU file's sha256 and version, missing audio, timings).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import json
import platform
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from aqa.cli import add_decoding_args, add_model_args, decoding_from_args, result_to_dict
from aqa.defaults import PRECISIONS
from aqa.errors import AQAError, InputError
from aqa.jsonl import ResumableJsonl, read_jsonl, write_atomic
from aqa.mmau_report import RunSummary, bar_chart, report_markdown, sweep_markdown, version_title
from aqa.mmau_score import Score, format_score, missing_from, score_records, score_to_dict
from aqa.parsing import extract_answer

if TYPE_CHECKING:  # torch and transformers take seconds to import: only `run` and `sweep` need them
    import torch

    from aqa.decoding import DecodingOptions, Result

# sha256 of the two test-mini files in Sakshi113/MMAU (computed once from ../shared/data/mmau): scores from
# different versions are not comparable (364 of 1000 items changed), so every number names its version.
KNOWN_VERSIONS = {
    "e8cc09223b497191781756212cb616315690aaa6ea7ac359db1b65d97d1e2433": "2025-03-25",  # commit 1f675a9, R1-AQA's
    "9f18fda99f8dbc2bc5ecd6323fb5063309f54969810b5c6f1caeb3b8d904cf1c": "2025-08-09",  # commit f0a4a97, v05.15.25
}
REQUIRED_FIELDS = ("id", "audio_id", "question", "choices", "answer", "task", "difficulty")
SCORED_FIELDS = ("id", "choices", "answer", "task", "difficulty")  # what scoring needs of a predictions file
QUESTION_FIELDS = ("question", "choices", "answer")  # what must agree between predictions and their MMAU file
SHOWN = 10  # ids listed on the terminal before "and N more"


# --- the MMAU file --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Benchmark:
    path: Path
    records: tuple[dict, ...]  # the MMAU records, in file order
    sha256: str  # of the file's bytes
    version: str | None  # a known MMAU release ("2025-03-25", "2025-08-09"), or None


def load_benchmark(path: str | Path) -> Benchmark:
    """Read an MMAU question file and identify its version by sha256; InputError names the first bad record."""
    path = Path(path)
    data, records = read_records(path, "MMAU question file", REQUIRED_FIELDS)
    digest = hashlib.sha256(data).hexdigest()
    return Benchmark(path, tuple(records), digest, KNOWN_VERSIONS.get(digest))


def read_predictions(path: str | Path) -> list[dict]:
    """A predictions file: MMAU records with model_output or model_prediction (ours, R1-AQA's or anyone's)."""
    return read_records(Path(path), "predictions file", SCORED_FIELDS)[1]


def read_records(path: Path, what: str, fields: Sequence[str]) -> tuple[bytes, list[dict]]:
    """The file's bytes and its JSON list of records, each checked for `fields`; InputError names the first bad one."""
    if not path.is_file():
        raise InputError(f"{path}: no such {what}")
    data = path.read_bytes()
    try:
        records = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not a JSON file ({error})") from None
    check_records(records, path, fields)
    return data, records


def check_records(records, path: Path, fields: Sequence[str]) -> None:
    if not isinstance(records, list) or not all(isinstance(record, dict) for record in records):
        raise InputError(f"{path}: expected a JSON list of MMAU records")
    for number, record in enumerate(records, start=1):
        absent = [name for name in fields if name not in record]
        if absent:
            raise InputError(f"{path}: record {number} has no {', '.join(absent)}")
        if not isinstance(record["choices"], list):
            raise InputError(f"{path}: record {number}: choices must be a list")
    ids = [record["id"] for record in records]
    if len(set(ids)) != len(ids):
        raise InputError(f"{path}: ids repeat; MMAU ids must be unique")


def find_audio(audio_dir: Path, audio_id: str) -> Path:
    """audio_id is relative to the MMAU folder ("./test-mini-audios/<id>.wav"); the clips' own folder works too."""
    path = audio_dir / audio_id
    flat = audio_dir / Path(audio_id).name
    return flat if not path.exists() and flat.exists() else path


def version_of(benchmark: Benchmark | None, manifest: dict | None) -> str | None:
    if benchmark is not None:
        return benchmark.version
    return (manifest or {}).get("mmau", {}).get("version")


# --- files beside the output ----------------------------------------------------------------------------------


def companion_paths(output: Path) -> tuple[Path, Path]:
    """preds.json -> (preds.partial.jsonl, preds.manifest.json)."""
    return output.with_suffix(".partial.jsonl"), output.with_suffix(".manifest.json")


def write_json(path: Path, data) -> None:
    write_atomic(path, json.dumps(data, ensure_ascii=False, indent=1) + "\n")


def read_manifest(output: Path) -> dict | None:
    manifest = companion_paths(output)[1]
    return json.loads(manifest.read_text(encoding="utf-8")) if manifest.is_file() else None


# --- run ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunConfig:
    model: str  # hub id or checkpoint directory
    data: Path  # the MMAU question file
    audio_dir: Path  # the folder holding test-mini-audios/ (or the clips themselves)
    output: Path  # preds.json; its .partial.jsonl and .manifest.json go beside it
    decoding: DecodingOptions
    precision: str | None = None  # None: bf16 on GPU, fp32 on CPU
    device: str | None = None
    batch_size: int = 8
    limit: int | None = None  # only the first N records (a smoke test)
    restart: bool = False  # discard earlier answers in the output instead of resuming


def run_settings(config: RunConfig, benchmark: Benchmark) -> dict:
    """What the answers depend on: a resumed run must use the same, or its answers would mix two setups."""
    import torch

    from aqa.model import default_device, default_precision

    device = torch.device(config.device) if config.device else default_device()
    decoding = dataclasses.asdict(config.decoding) | {"max_new_tokens": config.decoding.token_budget}
    return {
        "model": config.model,
        "precision": config.precision or default_precision(device),
        "decoding": decoding,
        "prompt": "R1-AQA, thinking" if config.decoding.think else "R1-AQA, answer only",
        "mmau_sha256": benchmark.sha256,
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


def official_prediction(raw: str) -> str:
    """R1-AQA's test script: the text of the <answer> tag, or the whole output when there is none, stripped.

    One difference: R1-AQA's regex did not match across lines, so a tag holding a line break fell back to the whole
    output there; the shared extract_answer reads it (the released model answers on one line).
    """
    extracted = extract_answer(raw)
    return extracted if extracted is not None else raw.strip()


def prediction_row(record_id: str, result: Result | AQAError) -> dict:
    """One line of the partial JSONL; keys chosen not to clash with MMAU's own (its `answer` is the gold one)."""
    if isinstance(result, AQAError):
        return {"id": record_id, "error": str(result)}
    details = result_to_dict(result)
    prediction = official_prediction(result.raw)
    return {
        "id": record_id,
        "model_prediction": prediction,
        "model_output": prediction,
        "raw_output": details.pop("raw"),
        "aqa_answer": details.pop("answer"),
        "aqa_answer_source": details.pop("answer_source"),
        **details,
    }


def answer_records(config: RunConfig, todo: Sequence[dict], audio: dict[str, Path], partial, session: dict) -> None:
    """Load the model and answer `todo`, appending each answer to the partial JSONL as its batch finishes."""
    from aqa.decoding import Question, answer_many
    from aqa.model import load_model

    clock = time.perf_counter()
    print(f"loading {config.model} ...", file=sys.stderr)
    model = load_model(config.model, precision=config.precision, device=config.device)
    session.update(device=describe_device(model.device), load_seconds=round(time.perf_counter() - clock, 2))
    questions = [
        Question(audio[r["id"]], r["question"], tuple(r["choices"]), allow_duplicate_options=True) for r in todo
    ]
    clock = time.perf_counter()
    for index, result in answer_many(model, questions, config.decoding, config.batch_size, progress=True):
        partial.write([prediction_row(todo[index]["id"], result)])
        session["failed" if isinstance(result, AQAError) else "answered"] += 1
        session["answer_seconds"] = round(time.perf_counter() - clock, 2)
    done = session["answered"] + session["failed"]
    session["seconds_per_question"] = round(session["answer_seconds"] / done, 4) if done else None


def describe_device(device: torch.device) -> str:
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({platform.processor() or platform.machine()})"


@dataclass(frozen=True)
class Plan:
    """One `run`, fixed before any answer: the records, their audio, and the settings the answers depend on."""

    config: RunConfig
    benchmark: Benchmark
    records: tuple[dict, ...]  # the records evaluated (the first --limit ones), in file order
    audio: dict[str, Path]  # id -> audio file
    missing: frozenset[str]  # ids whose audio file does not exist and that have no answer yet
    settings: dict
    earlier_runs: tuple[dict, ...]  # the sessions that wrote the answers being resumed


def plan_run(config: RunConfig) -> Plan:
    benchmark = load_benchmark(config.data)
    records = benchmark.records[: config.limit]
    settings = run_settings(config, benchmark)
    rows = {} if config.restart else latest_rows(companion_paths(config.output)[0])
    answered = {key for key, row in rows.items() if "error" not in row}
    audio = {r["id"]: find_audio(config.audio_dir, r["audio_id"]) for r in records}
    missing = frozenset(key for key, path in audio.items() if key not in answered and not path.is_file())
    if records and len(missing) == len(records):  # not one clip: surely the wrong folder, not a few lost files
        raise InputError(
            f"none of the {len(records)} audio files is under {config.audio_dir} (e.g. {audio[records[0]['id']]}); "
            "--audio-dir is the folder that holds test-mini-audios/"
        )
    earlier = check_resumable(config, settings)  # after the checks above: --restart discards answers only here
    return Plan(config, benchmark, records, audio, missing, settings, tuple(earlier))


def run_mmau(config: RunConfig) -> tuple[Benchmark, list[dict]]:
    """Answer the MMAU file (resuming), write preds.json and the manifest; return the benchmark and predictions."""
    plan = plan_run(config)
    version = version_title(plan.benchmark.version)
    print(f"{version} (sha256 {plan.benchmark.sha256[:12]}...): {len(plan.records)} questions", file=sys.stderr)
    session = {"started": now(), "batch_size": config.batch_size, "answered": 0, "failed": 0}
    save(plan, session)  # the manifest names the settings before the first answer is appended
    report_missing(plan)
    try:
        with ResumableJsonl(companion_paths(config.output)[0], key="id") as partial:
            todo = [r for r in plan.records if r["id"] not in partial.done and r["id"] not in plan.missing]
            done = len(plan.records) - len(todo) - len(plan.missing)
            print(f"{done} of {len(plan.records)} already answered", file=sys.stderr)
            if todo:
                answer_records(config, todo, plan.audio, partial, session)
    finally:  # also on Ctrl-C: the answers so far become a scorable preds.json
        session["stopped"] = now()
        predictions = save(plan, session)
    return plan.benchmark, predictions


def save(plan: Plan, session: dict) -> list[dict]:
    """(Re)write preds.json from the partial JSONL, and the manifest."""
    partial, manifest_path = companion_paths(plan.config.output)
    predictions = merge(plan, latest_rows(partial))
    write_json(plan.config.output, predictions)
    write_json(manifest_path, manifest(plan, predictions, [*plan.earlier_runs, session]))
    return predictions


def latest_rows(path: Path) -> dict[str, dict]:
    """Answer rows by id; an answer wins over an error row for the same id."""
    rows: dict[str, dict] = {}
    for row in read_jsonl(path) if path.exists() else []:
        if "error" not in row or row["id"] not in rows:
            rows[row["id"]] = row
    return rows


def merge(plan: Plan, rows: dict[str, dict]) -> list[dict]:
    """The MMAU records in file order, each with its answer fields, or an `error` and no prediction."""
    merged = []
    for record in plan.records:
        extra = {key: value for key, value in rows.get(record["id"], {}).items() if key != "id"}
        if record["id"] in plan.missing:
            extra = {"error": f"audio file not found: {plan.audio[record['id']]}"}
        merged.append({**record, **extra})
    return merged


def manifest(plan: Plan, predictions: Sequence[dict], runs: list[dict]) -> dict:
    import torch
    import transformers

    errors = {r["id"]: r["error"] for r in predictions if "error" in r and r["id"] not in plan.missing}
    return {
        "model": plan.config.model,
        "settings": plan.settings,
        "mmau": {
            "file": str(plan.benchmark.path),
            "sha256": plan.benchmark.sha256,
            "version": plan.benchmark.version,
            "records_in_file": len(plan.benchmark.records),
            "records_evaluated": len(plan.records),
            "limit": plan.config.limit,
        },
        "audio_dir": str(plan.config.audio_dir),
        "answered": sum("model_output" in record for record in predictions),
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


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- summaries for score, report and sweep ---------------------------------------------------------------------


def summarize(label: str, records: Sequence[dict], version: str | None, manifest_data: dict | None) -> RunSummary:
    settings = (manifest_data or {}).get("settings", {})
    decoding = settings.get("decoding", {})
    method = ", ".join(
        part
        for part in (
            settings.get("precision"),
            ("sampled" if decoding.get("sample") else "greedy") if decoding else None,
            "think" if decoding.get("think") else None,
        )
        if part
    )
    in_file = (manifest_data or {}).get("mmau", {}).get("records_in_file")
    return RunSummary(label, method or "-", version, score_records(records), in_file)


def with_reference(records: list[dict], benchmark: Benchmark) -> list[dict]:
    """Predictions checked against their MMAU file; its records absent from them are added, as missing."""
    by_id = {record["id"]: record for record in benchmark.records}
    alien = [r["id"] for r in records if r["id"] not in by_id]
    changed = [r["id"] for r in records if r["id"] in by_id and any(r[f] != by_id[r["id"]][f] for f in QUESTION_FIELDS)]
    if alien or changed:
        raise InputError(
            f"the predictions do not match {benchmark.path}: {len(alien)} unknown id(s), {len(changed)} question(s) "
            f"that differ (another MMAU version?), e.g. {(alien + changed)[0]}"
        )
    return records + missing_from(records, benchmark.records)


# --- the commands ---------------------------------------------------------------------------------------------


def add_commands(commands) -> None:
    parser = commands.add_parser("mmau", help="MMAU test-mini evaluation: run, score, report, sweep")
    steps = parser.add_subparsers(required=True, metavar="STEP")
    add_run(steps)
    add_score(steps)
    add_report(steps)
    add_sweep(steps)


def add_run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="MMAU question file, e.g. mmau-test-mini.json")
    parser.add_argument(
        "--audio-dir", required=True, type=Path, help="folder holding test-mini-audios/ (or the clips themselves)"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--limit", type=int, help="only the first N records (a smoke test)")
    parser.add_argument("--restart", action="store_true", help="discard earlier answers in the output, start over")
    add_decoding_args(parser)


def add_run(steps) -> None:
    parser = steps.add_parser("run", help="answer the MMAU questions; appends as it goes, reruns resume")
    add_model_args(parser)
    add_run_args(parser)
    parser.add_argument("--output", required=True, type=Path, help="preds.json (partial and manifest files beside)")
    parser.set_defaults(run=command_run)


def config_from_args(args: argparse.Namespace, model: str, output: Path) -> RunConfig:
    if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        raise InputError("--batch-size and --limit must be at least 1")
    return RunConfig(
        model=model,
        data=args.data,
        audio_dir=args.audio_dir,
        output=output,
        precision=args.precision,
        device=args.device,
        batch_size=args.batch_size,
        limit=args.limit,
        decoding=decoding_from_args(args),
        restart=args.restart,
    )


def command_run(args: argparse.Namespace) -> int:
    benchmark, predictions = run_mmau(config_from_args(args, args.model, args.output))
    summary = summarize(args.model, predictions, benchmark.version, read_manifest(args.output))
    print(format_score(summary.score, title(summary, args.output)))
    print(f"wrote {args.output} (MMAU's evaluation.py reads it as is) and {companion_paths(args.output)[1]}")
    return 0


def title(summary: RunSummary, path: Path) -> str:
    return f"{version_title(summary.version)}: {path} ({summary.score.n} records)"


def add_score(steps) -> None:
    parser = steps.add_parser("score", help="score predictions with MMAU's official rule (and a strict one)")
    parser.add_argument("predictions", type=Path, help="preds.json: MMAU records with model_output/model_prediction")
    parser.add_argument("--data", type=Path, help="the MMAU file: checks the version, counts absent records wrong")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=command_score)


def command_score(args: argparse.Namespace) -> int:
    records = read_predictions(args.predictions)
    benchmark = load_benchmark(args.data) if args.data else None
    if benchmark is not None:
        records = with_reference(records, benchmark)
    manifest_data = read_manifest(args.predictions)
    summary = summarize(str(args.predictions), records, version_of(benchmark, manifest_data), manifest_data)
    if args.json:
        print(json.dumps(score_to_dict(summary.score) | {"version": summary.version}, ensure_ascii=False))
    else:
        print(format_score(summary.score, title(summary, args.predictions)))
    return 0


def add_report(steps) -> None:
    parser = steps.add_parser("report", help="the seed's Markdown table and a bar chart, labelled with the version")
    parser.add_argument("predictions", nargs="+", type=Path, help="one preds.json per run")
    parser.add_argument("--label", action="append", default=[], help="a row's model name, once per run, in order")
    parser.add_argument("--output", type=Path, help="write the Markdown here (default: print it)")
    parser.add_argument("--chart", type=Path, help="write a bar chart PNG here")
    parser.set_defaults(run=command_report)


def command_report(args: argparse.Namespace) -> int:
    if args.label and len(args.label) != len(args.predictions):
        raise InputError(f"give one --label per predictions file ({len(args.predictions)}), or none")
    runs = []
    for number, path in enumerate(args.predictions):
        manifest_data = read_manifest(path)
        label = args.label[number] if args.label else (manifest_data or {}).get("model", path.stem)
        runs.append(summarize(label, read_predictions(path), version_of(None, manifest_data), manifest_data))
    emit(report_markdown(runs), args.output)
    if args.chart:
        bar_chart(runs, args.chart)
        print(f"wrote {args.chart}", file=sys.stderr)
    return 0


def emit(text: str, path: Path | None) -> None:
    if path is None:
        print(text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)


# --- sweep ----------------------------------------------------------------------------------------------------


def add_sweep(steps) -> None:
    parser = steps.add_parser("sweep", help="evaluate many checkpoints, one table (see the README on selection)")
    parser.add_argument("--checkpoints", nargs="+", required=True, help="checkpoint directories (or hub ids)")
    parser.add_argument("--precision", choices=PRECISIONS, help="default: bf16 on GPU, fp32 on CPU")
    parser.add_argument("--device")
    add_run_args(parser)
    parser.add_argument("--output-dir", required=True, type=Path, help="one folder per checkpoint, sweep.md/json")
    parser.add_argument(
        "--holdout",
        type=float,
        help="fraction of the questions held out: pick the checkpoint on the rest, report the held-out accuracy",
    )
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the held-out split (default 0)")
    parser.add_argument("--chart", type=Path, help="write a bar chart PNG of the checkpoints here")
    parser.set_defaults(run=command_sweep)


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


def command_sweep(args: argparse.Namespace) -> int:
    checkpoints = checkpoint_names(args.checkpoints)
    if args.holdout is not None:
        holdout_ids(["check"], args.holdout, args.split_seed)  # a bad fraction fails before hours of inference
    results: list[tuple[str, Score, Score | None, Score | None]] = []
    version = None
    for name, checkpoint in checkpoints:
        print(f"== {name}", file=sys.stderr)
        benchmark, predictions = run_mmau(config_from_args(args, checkpoint, args.output_dir / name / "preds.json"))
        version = benchmark.version
        results.append((name, *split_scores(predictions, args.holdout, args.split_seed)))
        release_memory()
    table = sweep_markdown(results, version, args.holdout, args.split_seed)
    emit(table, args.output_dir / "sweep.md")
    write_json(args.output_dir / "sweep.json", sweep_json(results, version, args))
    print(table)
    if args.chart:
        runs = [RunSummary(name, "checkpoint", version, score, None) for name, score, _, _ in results]
        bar_chart(runs, args.chart, references=False)
    return 0


def split_scores(predictions: list[dict], holdout: float | None, seed: int) -> tuple[Score, Score | None, Score | None]:
    """Score on all records, and with --holdout on the selection part and the held-out part separately."""
    if holdout is None:
        return score_records(predictions), None, None
    held = holdout_ids([r["id"] for r in predictions], holdout, seed)
    selection = [r for r in predictions if r["id"] not in held]
    return (
        score_records(predictions),
        score_records(selection),
        score_records([r for r in predictions if r["id"] in held]),
    )


def sweep_json(results, version: str | None, args: argparse.Namespace) -> dict:
    return {
        "version": version,
        "holdout": args.holdout,
        "split_seed": args.split_seed,
        "checkpoints": {
            name: {
                "all": score_to_dict(score),
                "selection": score_to_dict(selection) if selection else None,
                "held_out": score_to_dict(held) if held else None,
            }
            for name, score, selection, held in results
        },
    }


def release_memory() -> None:
    """One checkpoint at a time: free the last one's GPU memory before loading the next."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
