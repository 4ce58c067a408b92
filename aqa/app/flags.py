"""The app's command line, and the environment variables that set each flag (how a Space is configured)."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace

from aqa.app.settings import AppSettings, byte_count, size_text
from aqa.audio import CHUNK_LENGTH
from aqa.cli.args import add_model_args, model_spec
from aqa.defaults import PRECISIONS
from aqa.limits import Limits
from aqa.options import ModelSpec
from aqa.windows import LONG_AUDIO, WINDOW_OVERLAP

# Environment variables for each flag (a Space sets them in its settings); GRADIO_* are Gradio's own names.
ENVIRONMENT = {
    "model": "AQA_MODEL",
    "precision": "AQA_PRECISION",
    "device": "AQA_DEVICE",
    "compare": "AQA_COMPARE",
    "compare_precision": "AQA_COMPARE_PRECISION",
    "compare_device": "AQA_COMPARE_DEVICE",
    "long_audio": "AQA_LONG_AUDIO",
    "host": "GRADIO_SERVER_NAME",
    "port": "GRADIO_SERVER_PORT",
    "share": "GRADIO_SHARE",
    "max_seconds": "AQA_MAX_SECONDS",
    "max_file_size": "AQA_MAX_FILE_SIZE",
    "max_body": "AQA_MAX_BODY",
    "max_new_tokens": "AQA_MAX_NEW_TOKENS",
    "max_total_tokens": "AQA_MAX_TOTAL_TOKENS",
    "time_limit": "AQA_TIME_LIMIT",
    "queue_size": "AQA_QUEUE_SIZE",
    "max_question_chars": "AQA_MAX_QUESTION_CHARS",
    "max_option_chars": "AQA_MAX_OPTION_CHARS",
    "max_options": "AQA_MAX_OPTIONS",
    "max_prompt_tokens": "AQA_MAX_PROMPT_TOKENS",
    "keep_files": "AQA_KEEP_FILES",
    "keep_uploads": "AQA_KEEP_UPLOADS",
    "cache_quota": "AQA_CACHE_QUOTA",
}


def build_parser(environ: dict[str, str] = os.environ) -> argparse.ArgumentParser:
    defaults, limits = AppSettings(), Limits()
    parser = argparse.ArgumentParser(
        description="The R1-AQA Gradio app. Each flag can also come from the environment variable named in its help."
    )
    add_model_args(parser)
    parser.add_argument(
        "--compare", help="a second checkpoint (hub id or directory) that answers every question beside --model"
    )
    parser.add_argument("--compare-precision", choices=PRECISIONS, help="the second model's (default: --precision's)")
    parser.add_argument("--compare-device", help="the second model's device (default: --device's)")
    parser.add_argument(
        "--long-audio",
        choices=LONG_AUDIO,
        default=defaults.long_audio,
        help=f"a clip longer than the model hears ({CHUNK_LENGTH} s for R1-AQA): answer every window of that length "
        f"({WINDOW_OVERLAP:g} s overlap) and choose the option with the highest mean probability (default), or "
        "answer its start",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on; 0.0.0.0 for the whole network")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    parser.add_argument("--share", action="store_true", help="also serve on a public *.gradio.live link")
    parser.add_argument(
        "--max-seconds",
        type=positive_float,
        default=defaults.max_seconds,
        help=f"longest clip accepted, read from its header (default {defaults.max_seconds:g})",
    )
    sizes = [
        ("--max-file-size", defaults.max_file_size, "one upload"),
        ("--max-body", defaults.max_body, "any other request body (a question, its options)"),
        ("--cache-quota", defaults.cache_quota, "uploads and history files on disk together, oldest unused out first"),
    ]
    for flag, default, what in sizes:
        help = f"{what}, e.g. 50mb (default {size_text(default)})"
        parser.add_argument(flag, type=positive_size, default=default, help=help)
    parser.add_argument("--max-new-tokens", type=positive_int, help="per window, default 256 (1024 in thinking mode)")
    counts = [
        ("--max-total-tokens", defaults.max_total_tokens, "new tokens per model across all windows of a clip"),
        ("--queue-size", defaults.queue_size, "requests that may wait for the models (one per client)"),
        ("--max-question-chars", limits.question_chars, "characters in the question"),
        ("--max-option-chars", limits.option_chars, "characters in one option"),
        ("--max-options", limits.options, "options per question"),
        ("--max-prompt-tokens", limits.prompt_tokens, "prompt tokens, the audio counted at 30 s"),
        ("--keep-files", defaults.keep_files, "seconds history files and the clips they hold are kept"),
        ("--keep-uploads", defaults.keep_uploads, "seconds an upload in no history is kept"),
    ]
    for flag, default, what in counts:
        parser.add_argument(flag, type=positive_int, default=default, help=f"{what} (default {default})")
    parser.add_argument(
        "--time-limit",
        type=positive_float,
        default=defaults.time_limit,
        help=f"seconds one request may hold the models, then it is answered from the text so far "
        f"(default {defaults.time_limit:g})",
    )
    for action in parser._actions:
        if action.dest in ENVIRONMENT:
            action.help = f"{action.help or ''} [{ENVIRONMENT[action.dest]}]".strip()
    parser.set_defaults(**defaults_from(environ))
    return parser


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0 (got {text})")
    return value


def positive_size(text: str) -> int:
    try:
        value = byte_count(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte (got {text})")
    return value


def defaults_from(environ: dict[str, str]) -> dict:
    """Flag defaults from the environment; string defaults still pass through each flag's type."""
    values = {dest: environ[name] for dest, name in ENVIRONMENT.items() if environ.get(name)}
    if "share" in values:
        values["share"] = values["share"].strip().lower() in ("1", "true", "yes", "on")
    return values


def settings_from(args: argparse.Namespace) -> AppSettings:
    limits = Limits(args.max_question_chars, args.max_option_chars, args.max_options, args.max_prompt_tokens)
    return AppSettings(
        max_seconds=args.max_seconds,
        max_file_size=args.max_file_size,
        max_body=args.max_body,
        max_new_tokens=args.max_new_tokens,
        max_total_tokens=args.max_total_tokens,
        time_limit=args.time_limit,
        queue_size=args.queue_size,
        limits=limits,
        keep_files=args.keep_files,
        keep_uploads=args.keep_uploads,
        cache_quota=args.cache_quota,
        long_audio=args.long_audio,
    )


def model_specs(args: argparse.Namespace) -> list[ModelSpec]:
    """The model the flags name, and the one to compare it with (its precision and device default to the first's)."""
    first = model_spec(args)
    if not args.compare:
        return [first]
    second = replace(
        first,
        name=args.compare,
        precision=args.compare_precision or first.precision,
        device=args.compare_device or first.device,
    )
    return [first, second]
