"""`python -m aqa` / `aqa`: ask, batch, tiny, mmau, eval, bench.

Errors a user can fix print one line on stderr and exit non-zero; `--debug` (anywhere on the command line) shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import sys

from aqa import __version__
from aqa.cli import ask, batch, bench, evaluate, mmau, models, tiny
from aqa.cli.args import quiet_libraries
from aqa.errors import AQAError, first_line


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


DEBUG_HELP = "show full tracebacks and library warnings (accepted before or after the command)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aqa", description="Audio question answering with R1-AQA.")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    parser.add_argument("--version", action="version", version=f"aqa {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for command in (ask, batch, tiny, models, mmau, evaluate, bench):
        command.add_command(commands)
    for command in subparsers(parser):
        # SUPPRESS: a command that was not given --debug leaves the value given before it (or False) alone.
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return parser


def subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every command and step under `parser` (aqa ask, aqa eval, aqa eval run, ...), depth first."""
    found = []
    for action in parser._actions:  # argparse keeps no public list of its subparsers
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found += [child, *subparsers(child)]
    return found
