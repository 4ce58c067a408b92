"""Resumable JSON-lines output: append row by row, flush per batch, and skip finished rows on a rerun."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path


def read_jsonl(path: str | Path) -> list[dict]:
    """All complete rows of a JSON-lines file; a last line cut off by a kill is ignored."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a partial line written when the process was killed
    return rows


class ResumableJsonl:
    """Rows keyed by `key`; opening keeps the finished rows (those without "error") and drops the rest.

    The file is rewritten once on open so that a cut-off last line or a row that failed last time does not linger
    beside its retry; afterwards every `write` appends, flushes and fsyncs, so a kill loses only unwritten rows.
    """

    def __init__(self, path: str | Path, key: str):
        self.path, self.key = Path(path), key
        kept = [row for row in read_jsonl(self.path) if "error" not in row] if self.path.exists() else []
        self.done = {row[key] for row in kept if key in row}
        write_jsonl(self.path, kept)
        self.handle = open(self.path, "a", encoding="utf-8")

    def write(self, rows: Iterable[dict]) -> None:
        for row in rows:
            self.handle.write(dump(row))
            if "error" not in row:
                self.done.add(row[self.key])
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
    return json.dumps(row, ensure_ascii=False) + "\n"
