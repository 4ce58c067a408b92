"""The app's files in Gradio's cache folder: uploads (Gradio's hashed subfolders), each page's history files (under
`aqa-history-*/`), how long each lives, and the quota on all of them together. Neither Gradio nor torch."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aqa.app.settings import AppSettings

HISTORY_PREFIX = "aqa-history-"


class Cache:
    """Gradio's cache folder as the app keeps it: an upload that no history holds lives `keep_uploads` seconds, a
    history file and a clip some history holds `keep_files`; together they stay under `quota` bytes, the oldest
    unused upload removed first to make room, and a new upload refused when nothing more can go."""

    def __init__(self, folder: Path, settings: AppSettings):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.history_dir = Path(tempfile.mkdtemp(prefix=HISTORY_PREFIX, dir=folder))  # one folder per page inside
        self.quota = settings.cache_quota
        self.keep_files = settings.keep_files
        self.keep_uploads = settings.keep_uploads
        self.held: set[str] = set()  # clips some page's history holds
        self.reserved = 0  # bytes promised to uploads under way
        self.lock = threading.Lock()

    def hold(self, path: str) -> None:
        """A clip now in a history: it lives as long as history files do."""
        with self.lock:
            self.held.add(str(Path(path)))

    def in_use(self, path: Path) -> bool:
        return path.is_relative_to(self.history_dir) or str(path) in self.held

    def reserve(self, size: int) -> bool:
        """Room for `size` more bytes (an upload under way), removing the oldest unused uploads if need be; False when
        the quota cannot hold them. A reservation ends with `release` once the file is on disk (or refused)."""
        with self.lock:
            files = self.files()
            used = sum(size for _, size, _ in files) + self.reserved
            for path, file_size, _ in sorted(files, key=lambda file: file[2]):  # oldest written first
                if used + size <= self.quota:
                    break
                if not self.in_use(path) and remove(path):
                    used -= file_size
            if used + size > self.quota:
                return False
            self.reserved += size
            return True

    def release(self, size: int) -> None:
        with self.lock:
            self.reserved -= size

    @contextmanager
    def room(self, size: int) -> Iterator[bool]:
        """Whether `size` more bytes fit under the quota, held for them while the block writes them."""
        fits = self.reserve(size)
        try:
            yield fits
        finally:
            if fits:
                self.release(size)

    def usage(self) -> int:
        """Bytes of every file under the folder."""
        return sum(size for _, size, _ in self.files())

    def files(self) -> list[tuple[Path, int, float]]:
        """(path, bytes, last written) of every file under the folder."""
        found = []
        for path in self.folder.rglob("*"):
            try:
                info = path.stat()
            except OSError:  # removed meanwhile
                continue
            if path.is_file():
                found.append((path, info.st_size, info.st_mtime))
        return found

    def tidy(self) -> None:
        """Remove the files past their life, then the folders they leave empty (a folder's time, taken before its
        files go, tells whether anything new was written into it)."""
        now = time.time()
        written = {}
        for path in self.folder.rglob("*"):
            try:
                written[path] = path.stat().st_mtime
            except OSError:  # removed meanwhile
                continue
        with self.lock:
            for path in sorted(written, reverse=True):  # a folder's files come before the folder
                life = self.keep_files if self.in_use(path) else self.keep_uploads
                if now - written[path] <= life or path == self.history_dir:
                    continue
                if path.is_dir():
                    if not any(path.iterdir()):
                        remove(path)
                elif remove(path):
                    self.held.discard(str(path))

    def schedule(self) -> int:
        return tidy_interval(self.keep_uploads, self.keep_files)

    def remove_history(self) -> None:
        shutil.rmtree(self.history_dir, ignore_errors=True)


def tidy_interval(keep_uploads: int, keep_files: int) -> int:
    """Seconds between two tidy-ups: a tenth of the shorter life, at most an hour, so that a file lives at most 10%
    longer than its life."""
    return max(1, min(3600, min(keep_uploads, keep_files) // 10))


def remove(path: Path) -> bool:
    """Remove a file or an empty folder; False when it went meanwhile or was just written into."""
    try:
        if path.is_dir():
            path.rmdir()
        else:
            path.unlink()
    except OSError:
        return False
    return True
