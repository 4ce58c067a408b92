"""Arguments shared by the commands (and the app), and how they become options: torch-free, so `--help` and bad
arguments answer at once."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from aqa.defaults import DEFAULT_MODEL, FAMILY_NAMES, PRECISIONS
from aqa.options import DecodingOptions, ModelSpec


def add_model_args(parser: argparse.ArgumentParser, name: bool = True, random_weights: bool = False) -> None:
    """The model flags; `name=False` for commands that name their checkpoints otherwise (`mmau sweep`)."""
    if name:
        parser.add_argument(
            "--model",
            default=DEFAULT_MODEL,
            help=f"hub id or local directory of a checkpoint of any supported family (`aqa models`; default "
            f"{DEFAULT_MODEL})",
        )
    parser.add_argument("--precision", choices=PRECISIONS, help="default: bf16 on GPU, fp32 on CPU")
    parser.add_argument("--device", help="cuda, cuda:1, cpu, ... (default: the GPU if there is one)")
    parser.add_argument(
        "--embeddings-on-cpu",
        action=argparse.BooleanOptionalAction,
        help="keep the input embedding table (1.2 GiB) in CPU memory (default: only in 4bit and 8bit on a GPU)",
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="decode generated text with a static cache under torch.compile (CUDA graphs); default: on a GPU in "
        "bf16/fp16, where it is faster; compiling takes a while once, at load",
    )
    if random_weights:
        parser.add_argument(
            "--random-weights",
            choices=("tiny", "full"),
            help="ignore --model and build this architecture with random weights on the device (full: the published "
            "shapes, e.g. Qwen2-Audio-7B's)",
        )
        parser.add_argument(
            "--family",
            choices=FAMILY_NAMES,
            default=FAMILY_NAMES[0],
            help=f"the family --random-weights builds (default {FAMILY_NAMES[0]}; a checkpoint's own config says its)",
        )


def model_spec(args: argparse.Namespace, name: str | None = None) -> ModelSpec:
    """The model the flags name; `name` overrides --model (a sweep's checkpoint)."""
    return ModelSpec(
        name=name or args.model,
        precision=args.precision,
        device=args.device,
        embeddings_on_cpu=args.embeddings_on_cpu,
        random_weights=getattr(args, "random_weights", None),
        family=getattr(args, "family", FAMILY_NAMES[0]),
        compile=args.compile,
    )


def add_decoding_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--think", action="store_true", help="ask for <think> reasoning first (not the released setup)")
    parser.add_argument(
        "--sample", action="store_true", help="sample with the checkpoint's generation config (default greedy)"
    )
    parser.add_argument("--max-new-tokens", type=int, help="default 256, or 1024 with --think")


def add_long_audio_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--long-audio",
        choices=("first", "windows"),
        default="first",
        help="a clip over the 30 s the model hears: answer its first 30 s, with a note (default), or answer every "
        "30 s window (5 s overlap) and choose the option with the highest mean probability",
    )


def decoding_options(args: argparse.Namespace) -> DecodingOptions:
    return DecodingOptions(
        think=args.think,
        sample=args.sample,
        max_new_tokens=args.max_new_tokens,
        long_audio=getattr(args, "long_audio", "first"),  # evaluation keeps each benchmark's own protocol
    )


def quiet_libraries(debug: bool) -> None:
    """Library warnings (generation flags, deprecations) are noise for a CLI user; --debug brings them back.

    transformers reads TRANSFORMERS_VERBOSITY when it is imported, so a command that never imports it (score,
    report) does not pay the second that importing it takes; where it is already imported, it is told directly."""
    if debug:
        return
    if "transformers" in sys.modules:
        sys.modules["transformers"].logging.set_verbosity_error()
    else:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.getLogger("accelerate").setLevel(logging.ERROR)
