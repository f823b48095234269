"""When a file in the inbox is complete: its size and mtime unchanged for `stable_seconds`.

A pure class fed with observations and a clock (no file system here): the watcher reports what
it sees, asks which files are ready, and hands those on. A file that changes starts its wait
again; one that disappears is forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Seen:
    size: int
    mtime_ns: int
    since: float  # clock time when this (size, mtime) was first observed


class StabilityTracker:
    def __init__(self, stable_seconds: float) -> None:
        self.stable_seconds = stable_seconds
        self._files: dict[Path, Seen] = {}

    def observe(self, path: Path, size: int, mtime_ns: int, now: float) -> None:
        """What the file looks like at `now`; a change restarts its wait."""
        seen = self._files.get(path)
        if seen is None or (seen.size, seen.mtime_ns) != (size, mtime_ns):
            self._files[path] = Seen(size, mtime_ns, now)

    def __len__(self) -> int:
        """How many files are waiting."""
        return len(self._files)

    def seen(self, path: Path) -> Seen | None:
        return self._files.get(path)

    def forget(self, path: Path) -> None:
        self._files.pop(path, None)

    def ready(self, now: float) -> list[Path]:
        """Files unchanged for `stable_seconds`, oldest first; the caller confirms each with
        a fresh look (`observe`) before taking it, and `forget`s what it took."""
        due = [(s.since, p) for p, s in self._files.items() if now - s.since >= self.stable_seconds]
        return [path for _, path in sorted(due)]

    def next_due(self, now: float) -> float | None:
        """Seconds until the next file may become ready, or None when none is tracked."""
        if not self._files:
            return None
        return max(0.0, min(s.since for s in self._files.values()) + self.stable_seconds - now)
