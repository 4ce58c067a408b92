"""Resumable JSON-lines output: append row by row, flush per batch, and skip finished rows on a rerun.

A results file is read line by line and every line that cannot be used is named (`file:line: reason`) rather than
met as a crash: a line cut off by a kill, text that is not JSON or not an object, bytes that are not UTF-8, a row
without its id. Such a line is dropped and its item answered again; two answers to one id that disagree are an error
naming both lines, since choosing either would be a silent guess.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from aqa.errors import InputError, kind_of


def parse_lines(path: str | Path) -> Iterator[tuple[int, dict | str]]:
    """(line number, row) for each non-blank line of a JSON-lines file, or (line number, why it is not a row)."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                yield number, f"invalid UTF-8 (byte {raw[error.start]:#04x} at column {error.start + 1})"
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                cut = "" if raw.endswith(b"\n") else ", cut off (a run stopped while writing it)"
                yield number, f"not JSON ({error.msg}; column {error.colno}){cut}"
                continue
            yield number, row if isinstance(row, dict) else f"not a JSON object but {kind_of(row)}"


def read_jsonl(path: str | Path) -> list[dict]:
    """All usable rows of a JSON-lines file, skipping the lines parse_lines names (e.g. one cut off by a kill)."""
    return [row for _, row in parse_lines(path) if isinstance(row, dict)]


def read_results(path: str | Path, key: str) -> tuple[dict[str, dict], list[str]]:
    """A results file's rows by `key` (as a string), and one `file:line: reason` per line dropped.

    An answer wins over an error row for the same key, and a later error row over an earlier one; identical answers
    are one answer. InputError, naming both lines, when two answers to one key disagree.
    """
    rows: dict[str, dict] = {}
    lines: dict[str, int] = {}
    dropped = []
    for number, row in parse_lines(path):
        problem = row if isinstance(row, str) else key_problem(row, key)
        if problem:
            dropped.append(f"{path}:{number}: {problem}")
            continue
        name, earlier = str(row[key]), rows.get(str(row[key]))
        if earlier is not None and "error" not in earlier and "error" not in row and earlier != row:
            raise InputError(
                f"{path}: lines {lines[name]} and {number} answer {key} {name!r} differently; delete the wrong line, "
                "or write to a new output"
            )
        if earlier is None or "error" in earlier:
            rows[name], lines[name] = row, number
    return rows, dropped


def key_problem(row: dict, key: str) -> str | None:
    if key not in row:
        return f"no {key!r}"
    if isinstance(row[key], bool) or not isinstance(row[key], str | int | float):
        return f"its {key!r} is {kind_of(row[key])}, not a string"
    return None


class ResumableJsonl:
    """Rows keyed by `key`; opening keeps the finished rows (those without "error") and drops the rest.

    The file is rewritten once on open so that an unusable line (each one named in a warning) or a row that failed
    last time does not linger beside its retry; afterwards every `write` appends, flushes and fsyncs, so a kill loses
    only unwritten rows.
    """

    def __init__(self, path: str | Path, key: str):
        self.path, self.key = Path(path), key
        rows, dropped = read_results(self.path, key) if self.path.exists() else ({}, [])
        for line in dropped:
            print(f"warning: {line}: dropped; its item is answered again", file=sys.stderr)
        kept = [row for row in rows.values() if "error" not in row]
        self.done = {str(row[key]) for row in kept}
        write_jsonl(self.path, kept)
        self.handle = open(self.path, "a", encoding="utf-8")

    def write(self, rows: Iterable[dict]) -> None:
        for row in rows:
            self.handle.write(dump(row))
            if "error" not in row:
                self.done.add(str(row[self.key]))
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()

    def __enter__(self) -> ResumableJsonl:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Write a whole JSON-lines file atomically."""
    write_atomic(path, "".join(dump(row) for row in rows))


def write_atomic(path: str | Path, text: str) -> None:
    """Write to a temporary file, then rename: a kill mid-write never leaves a half-written file in place of a good
    one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def dump(row: dict) -> str:
    """One line of JSON, non-ASCII text as itself; a row holding a lone surrogate (which JSON's "\\ud800" can give,
    and which UTF-8 cannot encode) is written with escapes instead, so that it reads back as it was."""
    text = json.dumps(row, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(row)
    return text + "\n"
