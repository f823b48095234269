"""How far long CLI work is (SPEC §2.6 "long operations show progress"): `backup`,
`reprocess --all`, `report` over a range. On a terminal a bar; otherwise a plain line at the
start, at each tenth and at the end, so a log or a pipe stays readable. Always on stderr:
stdout stays what the command prints (scripts parse `--json`)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

# How far the work is: (done, total) in the work's own units; the total may grow as the work
# learns it. Called from one thread at a time, which may be a worker thread.
Step = Callable[[int, int], None]

# Plain lines: at most one per this fraction of the work (and the start).
TENTHS = 10


@contextmanager
def shown(
    label: str, *, counted: bool = True, long: bool = True, stream: TextIO | None = None
) -> Iterator[Step | None]:
    """A `Step` that shows the work as `label` on `stream` (stderr by default): with `counted`
    the units done and their total (invoices), else the percentage alone (units a person
    does not count, as a backup's bytes). None, and nothing shown, when the work is not
    `long` (a command whose short forms print nothing more than they did)."""
    stream = stream or sys.stderr
    if not long:
        yield None
        return
    if not stream.isatty():
        yield _Lines(label, counted, stream)
        return
    columns: list[ProgressColumn] = [TextColumn("{task.description}"), BarColumn()]
    columns.append(TaskProgressColumn())
    if counted:
        columns.append(MofNCompleteColumn())
    columns.append(TimeRemainingColumn())
    # Left drawn when done: the last state (100 %) stays above what the command prints.
    with Progress(*columns, console=Console(file=stream)) as bar:
        task = bar.add_task(label, total=None)  # a pulse until the total is known

        def step(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield step


class _Lines:
    """The plain form: a line when the work crosses a tenth, and none in between."""

    def __init__(self, label: str, counted: bool, stream: TextIO):
        self.label, self.counted, self.stream = label, counted, stream
        self.tenth = -1  # none said yet

    def __call__(self, done: int, total: int) -> None:
        tenth = TENTHS * done // total if total else TENTHS  # nothing to do is done
        if tenth <= self.tenth:
            return
        self.tenth = tenth
        said = f"{self.label}: {100 * done // total if total else 100} %"
        if self.counted:
            said += f" ({done}/{total})"
        print(said, file=self.stream, flush=True)
