"""`aqa batch`: answer a JSON-lines file of questions; reruns resume."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from aqa.cli.args import add_decoding_args, add_long_audio_arg, add_model_args, decoding_options, model_spec


def add_command(commands) -> None:
    parser = commands.add_parser("batch", help="answer a JSON-lines file of questions; reruns resume")
    add_model_args(parser)
    parser.add_argument("--input", required=True, help="JSONL rows with audio, question, options (and optional id)")
    parser.add_argument("--output", required=True, help="JSONL answers, appended per batch")
    parser.add_argument(
        "--batch-size", type=int, default=8, help="questions answered together (default 8; lower it if memory runs out)"
    )
    add_decoding_args(parser)
    add_long_audio_arg(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from aqa.batch import answer_file  # torch: seconds to import
    from aqa.loading import load

    outcome = answer_file(
        partial(load, model_spec(args)), Path(args.input), Path(args.output), decoding_options(args), args.batch_size
    )
    if outcome.failed:
        print(f"{outcome.failed} row(s) failed (see their 'error' field); rerun to retry them", file=sys.stderr)
    return 1 if outcome.failed else 0
