"""`aqa eval run|score|report|sweep --benchmark NAME`: evaluation on a benchmark's question file, wired to `aqa.eval`;
`aqa eval leaderboard RUN...` puts runs of any benchmark side by side.

    aqa eval run --benchmark mmar --data MMAR/MMAR-meta.jsonl --audio-dir MMAR --output runs/mmar/preds.json
    aqa eval score runs/mmar/preds.json --benchmark mmar
    aqa eval run --benchmark custom --data dev.jsonl --audio-dir clips --audio-field wav --group-by speaker ...
    torchrun --nproc_per_node 8 -m aqa eval run ...    # one process per GPU, each answering its share

`aqa mmau ...` (aqa/cli/mmau.py) is the same with the benchmark fixed to MMAU test-mini.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import replace
from pathlib import Path

from aqa.cli.args import add_decoding_args, add_model_args, decoding_options, model_spec
from aqa.errors import InputError
from aqa.eval.benchmarks import BENCHMARKS, CUSTOM, Benchmark, custom_benchmark
from aqa.eval.manifest import companion_paths, manifest_version, read_manifest, run_files, run_outputs
from aqa.eval.protocols import PROTOCOLS
from aqa.eval.questions import load_questions, read_predictions, with_reference
from aqa.eval.report import (
    RunSummary,
    audio_note,
    audio_of,
    bar_chart,
    report_markdown,
    summarize,
    summarize_runs,
)
from aqa.eval.score import format_score, order_scores, orders_to_dict, repeated_to_dict, score_records, score_to_dict
from aqa.options import AUDIO_MODES

CUSTOM_FIELDS = ("audio_field", "question_field", "choices_field", "answer_field", "id_field", "group_by")


def add_command(commands) -> None:
    parser = commands.add_parser(
        "eval", help="evaluation on MMAU, MMAR or any multiple-choice file: run, score, report, sweep, leaderboard"
    )
    add_steps(parser, fixed=None)


def add_steps(parser: argparse.ArgumentParser, fixed: str | None) -> None:
    """The four steps; with `fixed` (aqa mmau) the benchmark is that one, else each step takes --benchmark."""
    steps = parser.add_subparsers(required=True, metavar="STEP")
    for add in (add_run, add_score, add_report, add_sweep):
        add_benchmark_args(add(steps, fixed), fixed)
    if fixed is None:  # runs of any benchmark: each one's manifest names its own
        add_leaderboard(steps)


# What the help says of each step, and of the question file, with the benchmark fixed (aqa mmau) or not (aqa eval).
STEP_HELP = {
    "mmau": {
        "score": "score predictions with MMAU's official rule (evaluation.py's), and a strict one",
        "report": "R1-AQA's table (Sound, Music, Speech, Average) beside its published rows, and a bar chart",
        "data": "MMAU test-mini's question file, mmau-test-mini.json (its version is recognised by sha256)",
    },
    None: {
        "score": "score predictions with the benchmark's official rule (custom: MMAU's word-set rule) and a strict one",
        "report": "a table per question file version, beside the benchmark's published rows, and a bar chart",
        "data": "the question file: MMAU's mmau-test-mini.json, MMAR's MMAR-meta.jsonl, or your own (custom)",
    },
}


def add_benchmark_args(parser: argparse.ArgumentParser, fixed: str | None) -> None:
    if fixed:
        parser.set_defaults(benchmark=fixed, command=f"aqa {fixed}", **dict.fromkeys(CUSTOM_FIELDS))
        return
    parser.set_defaults(command="aqa eval")
    group = parser.add_argument_group("benchmark")
    group.add_argument(
        "--benchmark",
        required=True,
        choices=(*BENCHMARKS, CUSTOM),
        help="mmau (test-mini), mmar, or custom: any JSON or JSON-lines file of questions, its fields named below",
    )
    for name, default in (("audio", "audio"), ("question", "question"), ("choices", "choices"), ("answer", "answer")):
        group.add_argument(f"--{name}-field", help=f"custom: the field holding the {name} (default {default})")
    group.add_argument("--id-field", help="custom: the field holding each question's unique id (default id)")
    group.add_argument(
        "--group-by", action="append", help="custom: a field to report accuracy by (repeat it; the first is the table)"
    )


def benchmark_of(args: argparse.Namespace, manifest: dict | None = None) -> Benchmark:
    """The benchmark the arguments name; a custom one from its field flags, else from a run's manifest."""
    given = {name: getattr(args, name) for name in CUSTOM_FIELDS if getattr(args, name) is not None}
    if args.benchmark != CUSTOM:
        if given:
            raise InputError(f"--{next(iter(given)).replace('_', '-')} names a field of --benchmark custom only")
        return BENCHMARKS[args.benchmark]
    fields = dict((manifest or {}).get("benchmark_fields", {}))
    fields.update(given)
    if "title" not in fields and getattr(args, "data", None):
        fields["title"] = f"custom ({args.data.name})"
    fields["group_by"] = tuple(fields.get("group_by") or ())
    return custom_benchmark(**fields)


# --- run --------------------------------------------------------------------------------------------------------


def add_run_args(parser: argparse.ArgumentParser, fixed: str | None) -> None:
    parser.add_argument("--data", required=True, type=Path, help=STEP_HELP[fixed]["data"])
    parser.add_argument(
        "--audio-dir",
        required=True,
        type=Path,
        help=BENCHMARKS[fixed].audio_hint
        if fixed
        else "the folder the records' audio paths are relative to (MMAU: holding test-mini-audios/; MMAR: audio/)",
    )
    parser.add_argument("--batch-size", type=int, help="default 8 (32 under --protocol r1-aqa)")
    parser.add_argument("--limit", type=int, help="only the first N records (a smoke test)")
    parser.add_argument("--restart", action="store_true", help="discard earlier answers in the output, start over")
    parser.add_argument(
        "--protocol",
        choices=tuple(PROTOCOLS),
        default="greedy",
        help="greedy (default: deterministic, channels mixed) or r1-aqa (R1-AQA's test script exactly: first "
        "channel, the checkpoint's own sampling config, 256 new tokens, batches of 32 in file order)",
    )
    parser.add_argument("--seed", type=int, help="seed sampling (per batch) and --shuffle-choices: repeatable runs")
    parser.add_argument(
        "--shuffle-choices",
        type=int,
        default=0,
        metavar="K",
        help="also ask each item with K seeded permutations of its options; score reports each order's accuracy "
        "and how often the chosen option stays the same",
    )
    parser.add_argument(
        "--audio",
        dest="audio_mode",
        choices=AUDIO_MODES,
        default="clip",
        help="what the model hears: the clip (default), or a no-audio baseline: none (the prompt alone), silence or "
        "white noise (seeded) of the clip's length; recorded, and named in every score, report and chart",
    )
    add_decoding_args(parser)


def add_run(steps, fixed: str | None) -> argparse.ArgumentParser:
    parser = steps.add_parser("run", help="answer the questions; appends as it goes, reruns resume")
    add_model_args(parser)
    add_run_args(parser, fixed)
    parser.add_argument("--output", required=True, type=Path, help="preds.json (partial and manifest files beside)")
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="N seeded runs (seed, seed+1, ...) into preds.run1.json ... preds.runN.json; score and report give "
        "each run, the mean, the standard deviation and a 95%% interval",
    )
    parser.set_defaults(run=command_run)
    return parser


def run_config(args: argparse.Namespace, output: Path, name: str | None = None):
    """The run the flags describe; under torchrun (or accelerate launch), this process's part of it, on its own
    device."""
    import torch

    from aqa.eval.plan import RunConfig  # torch: seconds to import, only for the steps that answer
    from aqa.eval.shard import shard_from_environment

    shard = shard_from_environment()
    spec = model_spec(args, name)
    device = shard.device(spec.device, torch.cuda.device_count() if torch.cuda.is_available() else 0)
    if shard.distributed:
        stop_on_sigterm()
    return RunConfig(
        benchmark=benchmark_of(args),
        model=replace(spec, device=device),
        data=args.data,
        audio_dir=args.audio_dir,
        output=output,
        decoding=decoding_options(args),
        batch_size=args.batch_size,
        limit=args.limit,
        restart=args.restart,
        protocol=args.protocol,
        seed=args.seed,
        shuffle_choices=args.shuffle_choices,
        shard=shard,
    )


def stop_on_sigterm() -> None:
    """torchrun stops the other processes with SIGTERM when one fails: stop as on Ctrl-C, so that each writes what
    it has answered into the predictions file before it exits (its answers are on disk already)."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def command_run(args: argparse.Namespace) -> int:
    from aqa.eval.run import run_repeated

    config = run_config(args, args.output)
    outcomes = run_repeated(config, args.runs)
    benchmark = benchmark_of(args)
    for outcome, output in zip(outcomes, run_outputs(args.output, args.runs)):
        if not outcome.final:  # another process of the launch merges last and prints the score
            left = f"{outcome.pending} question(s) still with other processes"
            print(f"{config.shard.tag()}answered {outcome.session.answered} question(s); {output}: {left}")
            continue
        summary = summarize(
            args.model, outcome.predictions, outcome.questions.version, read_manifest(output), benchmark
        )
        print(format_score(summary.score, title(summary, output, benchmark), benchmark))
        scored = f"score it: {score_command(args, output)}"
        scored = f"{benchmark.scorer} reads it as is" if benchmark.scorer else scored
        print(f"wrote {output} ({scored}) and {companion_paths(output)[1]}")
    if args.runs > 1 and outcomes[-1].final:
        print(f"all {args.runs} runs together: {score_command(args, args.output)}")
    return 0


def score_command(args: argparse.Namespace, output: Path) -> str:
    """The command that scores `output`, as this command is spelled (aqa mmau, or aqa eval --benchmark NAME)."""
    benchmark = "" if args.command == f"aqa {args.benchmark}" else f" --benchmark {args.benchmark}"
    return f"{args.command} score {output}{benchmark}"


def title(summary: RunSummary, path: Path, benchmark: Benchmark) -> str:
    """The score's first line: the file version, the predictions file and, for a baseline, what the model heard."""
    heard = audio_note(summary.audio)
    return f"{benchmark.version_title(summary.version)}: {path} ({summary.score.n} records){heard}"


# --- score and report -------------------------------------------------------------------------------------------


def add_score(steps, fixed: str | None) -> argparse.ArgumentParser:
    parser = steps.add_parser("score", help=STEP_HELP[fixed]["score"])
    parser.add_argument(
        "predictions", type=Path, help="preds.json: the records with their predictions (or the name --runs wrote to)"
    )
    parser.add_argument("--data", type=Path, help="the question file: checks the version, counts absent records wrong")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=command_score)
    return parser


def command_score(args: argparse.Namespace) -> int:
    """One predictions file: its score (and each order's, with shuffled choices). The runs of `--runs`: each run's
    score, then the mean, standard deviation and 95% interval."""
    files = run_files(args.predictions)
    benchmark = benchmark_of(args, read_manifest(files[0]))
    questions = load_questions(args.data, benchmark) if args.data else None
    runs = []
    for path in files:
        records = read_predictions(path, benchmark)
        runs.append((path, with_reference(records, questions) if questions else records, read_manifest(path)))
    version = questions.version if questions else manifest_version(runs[0][2], benchmark.name)
    if len(runs) > 1:
        result = repeated_to_dict([score_records(records, benchmark) for _, records, _ in runs], benchmark)
        result["files"] = [str(path) for path, _, _ in runs]
        result["seeds"] = [(manifest or {}).get("settings", {}).get("seed") for _, _, manifest in runs]
        result["audio"] = audio_of(runs[0][2])
        print(json.dumps(result | {"version": version}, ensure_ascii=False) if args.json else format_runs(result))
        return 0
    path, records, manifest = runs[0]
    summary = summarize(str(path), records, version, manifest, benchmark)
    orders = order_scores(records, benchmark)
    if args.json:
        result = score_to_dict(summary.score, benchmark) | {"version": version, "method": summary.method}
        result["audio"] = summary.audio
        print(json.dumps(result | (orders_to_dict(orders) if orders else {}), ensure_ascii=False))
    else:
        print(format_score(summary.score, title(summary, path, benchmark), benchmark))
        if orders:
            print(format_orders(orders_to_dict(orders)))
    return 0


def format_runs(result: dict) -> str:
    lines = [f"{result['n_runs']} runs (seeds {', '.join(map(str, result['seeds']))}){audio_note(result['audio'])}:"]
    for number, (path, run) in enumerate(zip(result["files"], result["runs"]), start=1):
        lines.append(f"  run {number}: total {run['total']}  ({path})")
    for name, mean in result["mean"].items():
        low, high = result["ci95"][name]
        lines.append(f"{name:>8}: mean {mean:.2f}, std {result['std'][name]:.2f}, 95% interval {low:.2f} to {high:.2f}")
    return "\n".join(lines)


def format_orders(orders: dict) -> str:
    lines = ["accuracy by order of the options (official rule):"]
    lines += [f"  {name}: {value}" for name, value in orders["accuracy_by_order"].items()]
    correct, total = orders["consistent_items"]
    lines.append(f"same chosen option in every order: {orders['consistency']}% ({correct} of {total} items)")
    return "\n".join(lines)


def add_report(steps, fixed: str | None) -> argparse.ArgumentParser:
    parser = steps.add_parser("report", help=STEP_HELP[fixed]["report"])
    parser.add_argument("predictions", nargs="+", type=Path, help="one preds.json per run")
    parser.add_argument("--label", action="append", default=[], help="a row's model name, once per run, in order")
    parser.add_argument("--output", type=Path, help="write the Markdown here (default: print it)")
    parser.add_argument("--chart", type=Path, help="write a bar chart PNG here")
    parser.set_defaults(run=command_report)
    return parser


def command_report(args: argparse.Namespace) -> int:
    if args.label and len(args.label) != len(args.predictions):
        raise InputError(f"give one --label per predictions file ({len(args.predictions)}), or none")
    benchmark = benchmark_of(args, read_manifest(run_files(args.predictions[0])[0]))
    runs = []
    for number, path in enumerate(args.predictions):
        repeats = [(read_predictions(file, benchmark), read_manifest(file)) for file in run_files(path)]
        manifest = repeats[0][1]
        label = args.label[number] if args.label else (manifest or {}).get("model", path.stem)
        runs.append(summarize_runs(label, repeats, manifest_version(manifest, benchmark.name), benchmark))
    emit(report_markdown(runs, benchmark), args.output)
    if args.chart:
        bar_chart(runs, args.chart, benchmark=benchmark)
        print(f"wrote {args.chart}", file=sys.stderr)
    return 0


def emit(text: str, path: Path | None) -> None:
    if path is None:
        print(text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)


# --- leaderboard -------------------------------------------------------------------------------------------------


def add_leaderboard(steps) -> None:
    parser = steps.add_parser(
        "leaderboard",
        help="one table per benchmark version across runs of any model, family, protocol and seed, the no-audio "
        "baselines beside their runs and the published rows; Markdown, CSV and a chart",
    )
    parser.add_argument(
        "runs", nargs="+", type=Path, metavar="RUN", help="preds.json of each run (or the name --runs wrote to)"
    )
    parser.add_argument("--label", action="append", default=[], help="a run's Model name, once per RUN, in order")
    parser.add_argument("--output", type=Path, help="write the Markdown here (default: print it)")
    parser.add_argument("--csv", type=Path, help="write the figures here, one line per figure")
    parser.add_argument("--chart", type=Path, help="write a bar chart PNG here")
    parser.add_argument("--no-published", action="store_true", help="leave out the published rows")
    parser.set_defaults(run=command_leaderboard, command="aqa eval")


def command_leaderboard(args: argparse.Namespace) -> int:
    from aqa.eval.leaderboard import build_tables, chart, csv_text, markdown, read_run

    if args.label and len(args.label) != len(args.runs):
        raise InputError(f"give one --label per RUN ({len(args.runs)}), or none")
    labels = args.label or [None] * len(args.runs)
    tables = build_tables([read_run(path, label) for path, label in zip(args.runs, labels)], not args.no_published)
    emit(markdown(tables), args.output)
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        args.csv.write_text(csv_text(tables), encoding="utf-8")
        print(f"wrote {args.csv}", file=sys.stderr)
    if args.chart:
        chart(tables, args.chart)
        print(f"wrote {args.chart}", file=sys.stderr)
    return 0


# --- sweep ------------------------------------------------------------------------------------------------------


def add_sweep(steps, fixed: str | None) -> argparse.ArgumentParser:
    parser = steps.add_parser(
        "sweep", help="evaluate many checkpoints, one table (docs/evaluation.md: picking one without overfitting)"
    )
    parser.add_argument("--checkpoints", nargs="+", required=True, help="checkpoint directories (or hub ids)")
    add_model_args(parser, name=False)
    add_run_args(parser, fixed)
    parser.add_argument("--output-dir", required=True, type=Path, help="one folder per checkpoint, sweep.md/json")
    parser.add_argument(
        "--holdout",
        type=float,
        help="fraction of the questions held out: pick the checkpoint on the rest, report the held-out accuracy",
    )
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the held-out split (default 0)")
    parser.add_argument("--chart", type=Path, help="write a bar chart PNG of the checkpoints here")
    parser.set_defaults(run=command_sweep)
    return parser


def command_sweep(args: argparse.Namespace) -> int:
    from aqa.eval.sweep import run_sweep  # torch: seconds to import

    config = run_config(args, args.output_dir / "preds.json", name=args.checkpoints[0])
    outcome = run_sweep(config, args.checkpoints, args.output_dir, args.holdout, args.split_seed, args.chart)
    if outcome is None:  # under torchrun: another process writes the table
        print(f"{config.shard.tag()}evaluated its checkpoints; the process that completes the sweep writes the table")
        return 0
    print(f"wrote {args.output_dir / 'sweep.md'} and sweep.json", file=sys.stderr)
    if args.chart:
        print(f"wrote {args.chart}", file=sys.stderr)
    print(outcome.table)
    return 0
