"""`aqa ask`: answer one question about one clip."""

from __future__ import annotations

import argparse
import json

from aqa.audio import load_audio
from aqa.cli.args import add_decoding_args, add_long_audio_arg, add_model_args, decoding_options, model_spec
from aqa.options import Result
from aqa.prompt import check_question


def add_command(commands) -> None:
    parser = commands.add_parser("ask", help="answer one question about one clip")
    add_model_args(parser)
    parser.add_argument("--audio", required=True, help="audio file (wav, flac, ogg, mp3; m4a/aac/webm with FFmpeg)")
    parser.add_argument("--question", required=True, help="the question about the clip, one argument")
    parser.add_argument("--options", nargs="+", required=True, help="the answer options, each one argument")
    add_decoding_args(parser)
    add_long_audio_arg(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object (no streaming)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_question(args.question, args.options)  # bad input fails before any heavy import or model loading
    samples = load_audio(args.audio)
    from aqa.answering import answer  # torch: seconds to import, so only once the input is good
    from aqa.loading import load
    from aqa.streaming import answer_stream

    model = load(model_spec(args))
    if args.json:
        result = answer(model, samples, args.question, args.options, decoding_options(args))
        print(json.dumps(result.to_dict(), ensure_ascii=False))
        return 0
    print("output: ", end="", flush=True)
    for piece in answer_stream(model, samples, args.question, args.options, decoding_options(args)):
        if isinstance(piece, str):
            print(piece, end="", flush=True)  # the text as the model writes it
        else:
            print("\n" + format_result(piece))
    return 0


def format_result(result: Result) -> str:
    source = {
        "text": "named in the output",
        "probabilities": "most probable; the output named no option",
        "windows": "highest mean probability over the clip's windows",
    }
    lines = [f"answer: {result.answer}  ({source.get(result.answer_source, 'no answer')})", "probabilities:"]
    width = max(len(option) for option in result.probabilities) if result.probabilities else 0
    lines += [f"  {option:<{width}}  {p:6.1%}" for option, p in result.probabilities.items()]
    for window in result.windows:
        top = max(window.probabilities, key=window.probabilities.get)
        lines.append(
            f"  window {window.start:.0f}-{window.end:.0f} s: {window.answer} ({top} {window.probabilities[top]:.1%})"
        )
    if result.think:
        lines.append(f"thinking: {result.think}")
    lines.append(f"raw output: {result.raw!r}")
    if result.note:
        lines.append(f"note: {result.note}")
    lines.append(f"time: {result.timings.total * 1000:.0f} ms")
    return "\n".join(lines)
