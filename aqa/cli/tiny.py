"""`aqa tiny DIR`: write the tiny random Qwen2-Audio checkpoint that every `--model` accepts (offline tests)."""

from __future__ import annotations

import argparse


def add_command(commands) -> None:
    parser = commands.add_parser("tiny", help="write a tiny random Qwen2-Audio checkpoint for offline tests")
    parser.add_argument("directory", help="where to write it (created if needed); then pass it as --model DIRECTORY")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from aqa.random_weights import build_tiny_checkpoint  # torch: seconds to import

    path = build_tiny_checkpoint(args.directory, seed=args.seed)
    print(f"wrote a tiny random Qwen2-Audio checkpoint to {path}; use it with --model {path}")
    return 0
