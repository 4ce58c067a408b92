"""`aqa tiny DIR`: write a tiny random checkpoint of a supported family that every `--model` accepts (offline tests)."""

from __future__ import annotations

import argparse

from aqa.defaults import FAMILY_NAMES


def add_command(commands) -> None:
    parser = commands.add_parser(
        "tiny",
        help="write a tiny random checkpoint (Qwen2-Audio by default, or another family) for offline tests",
        description="Write a tiny random-weight checkpoint of a supported model family: the real architecture, "
        "processor and published chat template, only small, so that every command runs offline in seconds.",
    )
    parser.add_argument("directory", help="the folder to write the checkpoint to (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.add_argument(
        "--family",
        choices=FAMILY_NAMES,
        default=FAMILY_NAMES[0],
        help=f"the model family to build (default {FAMILY_NAMES[0]})",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from aqa.families import family_named  # torch: seconds to import
    from aqa.random_weights import build_tiny_checkpoint

    family = family_named(args.family)
    path = build_tiny_checkpoint(args.directory, seed=args.seed, family=family)
    print(f"wrote a tiny random {family.title} checkpoint to {path}; use it with --model {path}")
    return 0
