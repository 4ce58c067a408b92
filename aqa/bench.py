"""`aqa bench`: speed and memory of answering, stage by stage, against the model card's recipe in the same run.

    python -m aqa tiny tiny-model && python -m aqa bench --model tiny-model --max-new-tokens 10  # CPU
    python -m aqa bench --random-weights full --precision bf16 --json  # GPU, Qwen2-Audio-7B shapes

Every figure comes from synthetic clips (noise and tones written at 44.1 kHz, so resampling is real work) answered
on the loaded model; nothing is estimated. `--random-weights full` builds the full-size architecture with random
weights directly on the device, so speed and memory are those of R1-AQA without downloading it. Random weights
never emit the end token, so they decode exactly `--max-new-tokens` tokens (10 by default: R1-AQA's answers,
`<answer>Man</answer>` and the end token, take about that many). The measurements live in `aqa.bench_measure`,
imported only when the command runs, so the CLI starts without torch.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from aqa.defaults import DEFAULT_MODEL, PRECISIONS
from aqa.errors import InputError

RANDOM_ANSWER_TOKENS = 10  # tokens decoded per question with random weights, which never stop by themselves


@dataclass(frozen=True)
class BenchOptions:
    clips: int = 32  # synthetic questions answered at every batch size
    seconds: float = 10.0  # length of each synthetic clip
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    latency_runs: int = 5  # questions timed one at a time, stage by stage (median reported)
    baseline_runs: int = 8  # questions answered one at a time with the model card's recipe
    max_new_tokens: int | None = None  # None: the model's own stop (at most 256); 10 with random weights
    random_weights: str | None = None  # "tiny" or "full": build that architecture with random weights
    embeddings_on_cpu: bool | None = None  # None: the precision's default (aqa.load_model)


def add_commands(commands) -> None:
    from aqa.cli import add_embeddings_arg

    parser = commands.add_parser("bench", help="measure latency, throughput and peak memory against the model card")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="hub id or local directory")
    parser.add_argument("--precision", choices=PRECISIONS, help="default: bf16 on GPU, fp32 on CPU")
    parser.add_argument("--device", help="cuda, cpu, ... (default: the GPU if there is one)")
    parser.add_argument(
        "--random-weights",
        choices=("tiny", "full"),
        help="ignore --model and build this architecture with random weights on the device (full = Qwen2-Audio-7B)",
    )
    add_embeddings_arg(parser)
    parser.add_argument("--clips", type=int, default=32, help="questions answered at every batch size (default 32)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each synthetic clip (default 10)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32], help="default: 1 8 32")
    parser.add_argument("--latency-runs", type=int, default=5, help="questions timed stage by stage (default 5)")
    parser.add_argument("--baseline-runs", type=int, default=8, help="questions run through the model card's recipe")
    parser.add_argument("--max-new-tokens", type=int, help="default: the model's own stop; 10 with --random-weights")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a Markdown table")
    parser.add_argument("--output", help="also write the JSON report to this file")
    parser.set_defaults(run=run_bench)


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    positive = {"--clips": args.clips, "--batch-sizes": min(args.batch_sizes), "--seconds": args.seconds}
    counts = {"--latency-runs": args.latency_runs, "--baseline-runs": args.baseline_runs}  # 0 skips that part
    if min(positive.values()) <= 0 or min(counts.values()) < 0:
        raise InputError(f"{', '.join(positive)} must be positive and {', '.join(counts)} not negative")
    tokens = args.max_new_tokens or (RANDOM_ANSWER_TOKENS if args.random_weights else None)
    return BenchOptions(
        args.clips,
        args.seconds,
        tuple(args.batch_sizes),
        args.latency_runs,
        args.baseline_runs,
        tokens,
        args.random_weights,
        args.embeddings_on_cpu,
    )


def run_bench(args: argparse.Namespace) -> int:
    from aqa.bench_measure import measure

    options = options_from_args(args)
    report = measure(args.model, args.precision, args.device, options, threads=args.threads)
    text = json.dumps(report, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text if args.json else format_report(report))
    return 0


# --- the Markdown report ------------------------------------------------------------------------------------------


def format_report(report: dict) -> str:
    """A two-column Markdown table: one row per figure, sections in report order."""
    lines = ["| figure | value |", "| --- | --- |"]
    for section, values in report.items():
        if isinstance(values, dict):
            lines += [f"| {section}.{key} | {value} |" for key, value in values.items()]
        else:
            lines.append(f"| {section} | {values} |")
    return "\n".join(lines)
