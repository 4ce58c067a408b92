"""`python -m aqa` / `aqa`: ask, batch, tiny, mmau, bench.

Errors a user can fix print one line on stderr and exit non-zero; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aqa", description="Audio question answering with R1-AQA.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and library warnings")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for command in (ask, batch, tiny, models, mmau, evaluate, bench):
        command.add_command(commands)
    return parser
