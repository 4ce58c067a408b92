"""`aqa bench`: latency, throughput and peak memory against the model card's recipe, in one run (aqa.bench)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aqa.cli.args import add_model_args, model_spec
from aqa.errors import InputError


def add_command(commands) -> None:
    parser = commands.add_parser("bench", help="measure latency, throughput and peak memory against the model card")
    add_model_args(parser, random_weights=True)
    parser.add_argument("--clips", type=int, default=32, help="questions answered at every batch size (default 32)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each synthetic clip (default 10)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32], help="default: 1 8 32")
    parser.add_argument("--latency-runs", type=int, default=5, help="questions timed stage by stage (default 5)")
    parser.add_argument("--baseline-runs", type=int, default=8, help="questions run through the model card's recipe")
    parser.add_argument("--max-new-tokens", type=int, help="default: the model's own stop; 10 with --random-weights")
    parser.add_argument(
        "--decode-tokens", type=int, default=64, help="tokens per decode timing, eager and fast path (0 skips it)"
    )
    parser.add_argument(
        "--think-tokens", type=int, default=300, help="the thinking answer timed on each path (0 skips it)"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a Markdown table")
    parser.add_argument("--output", help="also write the JSON report to this file")
    parser.set_defaults(run=run)


def check_counts(args: argparse.Namespace) -> None:
    positive = {"--clips": args.clips, "--batch-sizes": min(args.batch_sizes), "--seconds": args.seconds}
    counts = {"--latency-runs": args.latency_runs, "--baseline-runs": args.baseline_runs}  # 0 skips that part
    counts |= {"--decode-tokens": args.decode_tokens, "--think-tokens": args.think_tokens}
    if min(positive.values()) <= 0 or min(counts.values()) < 0:
        raise InputError(f"{', '.join(positive)} must be positive and {', '.join(counts)} not negative")
    if 0 < args.decode_tokens < 3:  # the per-token time is the difference between 2 tokens and this many
        raise InputError("--decode-tokens must be 0 (skip) or at least 3")


def run(args: argparse.Namespace) -> int:
    check_counts(args)  # before torch is imported and the model loaded
    from aqa.bench import RANDOM_ANSWER_TOKENS, BenchOptions, format_report, measure

    options = BenchOptions(
        clips=args.clips,
        seconds=args.seconds,
        batch_sizes=tuple(args.batch_sizes),
        latency_runs=args.latency_runs,
        baseline_runs=args.baseline_runs,
        max_new_tokens=args.max_new_tokens or (RANDOM_ANSWER_TOKENS if args.random_weights else None),
        decode_tokens=args.decode_tokens,
        think_tokens=args.think_tokens,
    )
    report = measure(model_spec(args), options, threads=args.threads)
    text = json.dumps(report, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text if args.json else format_report(report))
    return 0
