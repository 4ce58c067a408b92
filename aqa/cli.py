"""`python -m aqa` / `aqa`: ask, batch, tiny, mmau, bench.

Errors a user can fix print one line on stderr and exit non-zero; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from aqa.audio import load_audio
from aqa.defaults import DEFAULT_MODEL, PRECISIONS
from aqa.errors import AQAError, InputError, first_line
from aqa.jsonl import ResumableJsonl, read_jsonl
from aqa.prompt import check_question

if TYPE_CHECKING:  # torch and transformers load in seconds: only commands that run a model import them
    from aqa.decoding import DecodingOptions, Question, Result
    from aqa.model import AQAModel


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_libraries(args.debug)
    try:
        return args.run(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except AQAError as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # the last line of defence: one readable line, the traceback only on request
        if args.debug:
            raise
        print(
            f"error: {type(error).__name__}: {first_line(error)} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


def build_parser() -> argparse.ArgumentParser:
    from aqa import bench, mmau  # their commands live beside their code

    parser = argparse.ArgumentParser(prog="aqa", description="Audio question answering with R1-AQA.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and library warnings")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    add_ask(commands)
    add_batch(commands)
    add_tiny(commands)
    mmau.add_commands(commands)
    bench.add_commands(commands)
    return parser


def quiet_libraries(debug: bool) -> None:
    """Library warnings (generation flags, deprecations) are noise for a CLI user; --debug brings them back."""
    if debug:
        return
    import transformers

    transformers.logging.set_verbosity_error()
    logging.getLogger("accelerate").setLevel(logging.ERROR)


# --- shared arguments -------------------------------------------------------------------------------------------


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"hub id or local directory (default {DEFAULT_MODEL})")
    parser.add_argument("--precision", choices=PRECISIONS, help="default: bf16 on GPU, fp32 on CPU")
    parser.add_argument("--device", help="cuda, cuda:1, cpu, ... (default: the GPU if there is one)")
    add_embeddings_arg(parser)


def add_embeddings_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--embeddings-on-cpu",
        action=argparse.BooleanOptionalAction,
        help="keep the input embedding table (1.2 GiB) in CPU memory on a GPU (default: only in 4bit and 8bit)",
    )


def add_decoding_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--think", action="store_true", help="ask for <think> reasoning first (not the released setup)")
    parser.add_argument(
        "--sample", action="store_true", help="sample with the checkpoint's generation config (default greedy)"
    )
    parser.add_argument("--max-new-tokens", type=int, help="default 256, or 1024 with --think")


def model_from_args(args: argparse.Namespace) -> AQAModel:
    from aqa.model import load_model

    print(f"loading {args.model} ...", file=sys.stderr)
    return load_model(args.model, args.precision, args.device, args.embeddings_on_cpu)


def decoding_from_args(args: argparse.Namespace) -> DecodingOptions:
    from aqa.decoding import DecodingOptions

    return DecodingOptions(think=args.think, sample=args.sample, max_new_tokens=args.max_new_tokens)


def result_to_dict(result: Result) -> dict:
    row = dataclasses.asdict(result)
    row["timings"]["total"] = result.timings.total
    return row


# --- ask --------------------------------------------------------------------------------------------------------


def add_ask(commands) -> None:
    parser = commands.add_parser("ask", help="answer one question about one clip")
    add_model_args(parser)
    parser.add_argument("--audio", required=True, help="audio file (wav, flac, ogg, mp3; m4a/aac/webm with FFmpeg)")
    parser.add_argument("--question", required=True)
    parser.add_argument("--options", nargs="+", required=True, help="the answer options, each one argument")
    add_decoding_args(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run_ask)


def run_ask(args: argparse.Namespace) -> int:
    check_question(args.question, args.options)  # bad input fails before any heavy import or model loading
    samples = load_audio(args.audio)
    from aqa.decoding import answer

    model = model_from_args(args)
    result = answer(model, samples, args.question, args.options, decoding_from_args(args))
    if args.json:
        print(json.dumps(result_to_dict(result), ensure_ascii=False))
    else:
        print(format_result(result))
    return 0


def format_result(result: Result) -> str:
    source = {"text": "named in the output", "probabilities": "most probable; the output named no option"}
    lines = [f"answer: {result.answer}  ({source.get(result.answer_source, 'no answer')})", "probabilities:"]
    width = max(len(option) for option in result.probabilities) if result.probabilities else 0
    lines += [f"  {option:<{width}}  {p:6.1%}" for option, p in result.probabilities.items()]
    if result.think:
        lines.append(f"thinking: {result.think}")
    lines.append(f"raw output: {result.raw!r}")
    if result.note:
        lines.append(f"note: {result.note}")
    lines.append(f"time: {result.timings.total * 1000:.0f} ms")
    return "\n".join(lines)


# --- batch ------------------------------------------------------------------------------------------------------


def add_batch(commands) -> None:
    parser = commands.add_parser("batch", help="answer a JSON-lines file of questions; reruns resume")
    add_model_args(parser)
    parser.add_argument("--input", required=True, help="JSONL rows with audio, question, options (and optional id)")
    parser.add_argument("--output", required=True, help="JSONL answers, appended per batch")
    parser.add_argument("--batch-size", type=int, default=8)
    add_decoding_args(parser)
    parser.set_defaults(run=run_batch)


def read_questions(path: Path) -> list[tuple[str, Question]]:
    """(key, question) per input row; the key is the row's id, else its line number.

    Audio paths are relative to the input file.
    """
    from aqa.decoding import Question

    if not path.is_file():
        raise InputError(f"{path}: no such input file")
    questions = []
    for number, row in enumerate(read_jsonl(path), start=1):
        missing = [field for field in ("audio", "question", "options") if field not in row]
        if missing:
            raise InputError(f"{path}: row {number} has no {', '.join(missing)}")
        audio = Path(row["audio"]) if Path(row["audio"]).is_absolute() else path.parent / row["audio"]
        questions.append(
            (str(row.get("id", number)), Question(audio, row["question"], tuple(row["options"]), name=row["audio"]))
        )
    return questions


def run_batch(args: argparse.Namespace) -> int:
    from aqa.decoding import answer_many

    questions = read_questions(Path(args.input))
    with ResumableJsonl(args.output, key="id") as output:
        todo = [(key, question) for key, question in questions if key not in output.done]
        print(f"{len(questions) - len(todo)} of {len(questions)} already answered in {args.output}", file=sys.stderr)
        if not todo:
            return 0
        model = model_from_args(args)
        failed = 0
        pending = answer_many(model, [q for _, q in todo], decoding_from_args(args), args.batch_size, progress=True)
        for index, result in pending:
            key, question = todo[index]
            row = {"id": key, "audio": question.name, "question": question.question, "options": list(question.options)}
            if isinstance(result, AQAError):
                failed += 1
                row["error"] = str(result)
            else:
                row.update(result_to_dict(result))
            output.write([row])
    if failed:
        print(f"{failed} row(s) failed (see their 'error' field); rerun to retry them", file=sys.stderr)
    return 1 if failed else 0


# --- tiny -------------------------------------------------------------------------------------------------------


def add_tiny(commands) -> None:
    parser = commands.add_parser("tiny", help="write a tiny random Qwen2-Audio checkpoint for offline tests")
    parser.add_argument("directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run_tiny)


def run_tiny(args: argparse.Namespace) -> int:
    from aqa.tiny import build_tiny_checkpoint

    path = build_tiny_checkpoint(args.directory, seed=args.seed)
    print(f"wrote a tiny random Qwen2-Audio checkpoint to {path}; use it with --model {path}")
    return 0
