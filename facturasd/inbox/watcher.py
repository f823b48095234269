"""The inbox watcher: finds files, waits until each is complete, hands each on once.

One long-lived watchfiles watcher on the inbox (recursive) reports changes as they happen; a
scan at start-up and a full rescan every `inbox.rescan_interval` find what it cannot see
(inotify drops events when its queue overflows and never sees writes made over NFS or SMB).
A file is handed on when the stability tracker says its size and mtime have held still for
`inbox.stable_seconds` and it opens for reading. One that does not open (permissions) stays,
is reported in /health and in the log, and is tried again at each rescan.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
from watchfiles import Change, awatch

# Private to watchfiles, and what its watch raises (and stops on) for a file name that is not
# UTF-8; tests/test_watchfiles.py fails, saying what to do, if it moves or is no longer raised.
from watchfiles._rust_notify import WatchfilesRustInternalError

from facturasd.config import Inbox
from facturasd.inbox.archive import FolderNotWritable
from facturasd.inbox.stability import Seen, StabilityTracker

log = logging.getLogger(__name__)

TAKEN_SUFFIXES = (".xml", ".zip", ".pdf")
IGNORED_SUFFIXES = (".part", ".crdownload", ".tmp")
IGNORED_NAMES = ("thumbs.db", "desktop.ini")
IGNORED_FOLDERS = ("__MACOSX",)
# How often ready files are looked for, at most (a file is never taken before it is stable).
TICK = 0.25
RUST_TIMEOUT_MS = 500


def wanted(relative: Path) -> bool:
    """Whether a file at this inbox-relative path is a document to take."""
    name = relative.name
    if any(part.startswith(".") or part in IGNORED_FOLDERS for part in relative.parts):
        return False
    lowered = name.lower()
    if name.endswith("~") or lowered in IGNORED_NAMES or lowered.endswith(IGNORED_SUFFIXES):
        return False
    return lowered.endswith(TAKEN_SUFFIXES)


class Watcher:
    def __init__(
        self,
        inbox: Path,
        settings: Inbox,
        take: Callable[[Path], Awaitable[None]],
        *,
        takers: int,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        """`takers`: how many files are taken at once (the daemon passes the concurrency of
        the workers that parse what is taken: more would only queue there)."""
        self.inbox = inbox
        self.settings = settings
        self._take = take
        self._takers = takers
        self._monotonic = monotonic
        self.tracker = StabilityTracker(settings.stable_seconds)
        # Handed on and not finished: never handed on twice.
        self.queued: set[Path] = set()
        # Full scans of the inbox done: a file there when a scan began is, once that scan is
        # counted, waiting, being taken or taken (/health shows the count; tests wait on it).
        self.rescans = 0
        # Files that do not open (permissions): path → why; shown in /health.
        self.blocked: dict[Path, str] = {}
        self._outside: set[Path] = set()
        self._real_inbox = inbox  # resolved when it runs (a blocking call)
        self._wake = anyio.Event()
        self._scan_now = anyio.Event()

    @property
    def waiting(self) -> int:
        """Files seen and waiting to hold still."""
        return len(self.tracker)

    @property
    def taking(self) -> int:
        """Files handed on and not yet taken."""
        return len(self.queued)

    async def run(self) -> None:
        await anyio.Path(self.inbox).mkdir(parents=True, exist_ok=True)
        self._real_inbox = Path(await anyio.to_thread.run_sync(os.path.realpath, self.inbox))
        async with anyio.create_task_group() as tg:
            send, receive = anyio.create_memory_object_stream[Path](self._takers)
            for _ in range(self._takers):
                tg.start_soon(self._taker, receive.clone())
            receive.close()
            if self.settings.watch:
                tg.start_soon(self._events)
            tg.start_soon(self._rescans)
            async with send:
                await self._hand_on(send)

    async def _events(self) -> None:
        """The watch, started again whenever watchfiles gives up on a name that is not UTF-8
        (a Latin-1 mail client's): a scan at once finds what it could not name."""
        while True:
            gave_up = False
            try:
                await self._watch()
            except* WatchfilesRustInternalError as group:  # raised from awatch's task group
                log.warning(
                    "the inbox watch stopped (%s); scanning, and watching again",
                    group.exceptions[0],
                )
                self._scan_now.set()
                gave_up = True
            if not gave_up:
                return
            await anyio.sleep(TICK)

    async def _watch(self) -> None:
        async for changes in awatch(
            self.inbox,
            force_polling=self.settings.force_polling,
            recursive=True,
            debounce=50,
            step=50,
            # The watch runs in a thread that cancellation cannot interrupt: it returns this
            # often so that stopping the daemon never waits on it for long.
            rust_timeout=RUST_TIMEOUT_MS,
        ):
            seen = []
            for change, name in changes:
                path = Path(name)
                if change is Change.deleted:
                    self.tracker.forget(path)
                else:
                    seen.append(path)
            await self._observe(seen)
            self._wake.set()

    async def _rescans(self) -> None:
        while True:
            found, unreadable = await anyio.to_thread.run_sync(self._scan)
            for path, size, mtime in found:
                if path not in self.queued:
                    self.tracker.observe(path, size, mtime, self._monotonic())
            # Files that did not open are tried again now; folders that cannot be listed
            # are reported until they can.
            present = {path for path, _, _ in found}
            self.blocked = {
                **{p: why for p, why in self.blocked.items() if p in present},
                **unreadable,
            }
            self.rescans += 1
            self._wake.set()
            with anyio.move_on_after(self.settings.rescan_interval):
                await self._scan_now.wait()
            self._scan_now = anyio.Event()

    def _scan(self) -> tuple[list[tuple[Path, int, int]], dict[Path, str]]:
        """Every file to take, and the folders or files that cannot even be looked at."""
        found, unreadable = [], {}

        def refused(exc: OSError) -> None:
            unreadable[Path(exc.filename or self.inbox)] = exc.strerror or type(exc).__name__

        for folder, dirs, files in os.walk(self.inbox, onerror=refused, followlinks=False):
            base = Path(folder)
            dirs[:] = [d for d in dirs if not d.startswith(".") and d not in IGNORED_FOLDERS]
            for name in files:
                path = base / name
                try:
                    look = self._acceptable_stat(path)
                except FileNotFoundError:
                    continue  # gone meanwhile
                except OSError as exc:
                    unreadable[path] = exc.strerror or type(exc).__name__
                    continue
                if look is not None:
                    found.append((path, look.st_size, look.st_mtime_ns))
        return found, unreadable

    def _acceptable(self, path: Path) -> bool:
        """A name to take, really inside the inbox (not through a symbolic link, of the file
        or of a folder on its way)."""
        if not wanted(path.relative_to(self.inbox)):
            return False
        relative = path.relative_to(self.inbox)
        real = Path(os.path.realpath(path))
        if real == self._real_inbox / relative:
            return True
        if not real.is_relative_to(self._real_inbox) and path not in self._outside:
            self._outside.add(path)
            log.warning("%s leads outside the inbox (%s): not followed", path, real)
        return False  # a link inside the inbox: its target is taken on its own

    async def _observe(self, paths: list[Path]) -> None:
        """Look at the files events named, all in one trip to a thread."""
        wanted = [p for p in paths if p not in self.queued and p.is_relative_to(self.inbox)]
        if not wanted:
            return
        looks = await anyio.to_thread.run_sync(_each, self._acceptable_stat, wanted)
        for path, look in zip(wanted, looks, strict=True):
            if path in self.queued:  # handed on meanwhile
                continue
            if isinstance(look, OSError):
                self.tracker.forget(path)
                if not isinstance(look, FileNotFoundError):
                    self.blocked[path] = look.strerror or type(look).__name__
            elif look is not None:
                self.tracker.observe(path, look.st_size, look.st_mtime_ns, self._monotonic())

    def _acceptable_stat(self, path: Path) -> os.stat_result | None:
        """The file's size and times, if it is one to take. Only a regular file is: a folder
        named `x.xml` is walked into by the scans (an event names the folder itself), and a
        named pipe would block the read that checks the file opens."""
        if not self._acceptable(path):
            return None
        look = path.stat()
        return look if stat.S_ISREG(look.st_mode) else None

    async def _hand_on(self, send: anyio.abc.ObjectSendStream[Path]) -> None:
        """Hand on each file once its wait is over and it still looks the same and opens."""
        while True:
            ready = self.tracker.ready(self._monotonic())
            # As many at a time as there are takers: each is looked at again shortly before
            # it is handed on.
            batch = ready[: self._takers]
            for path in await self._unchanged_and_readable(batch):
                if path in self.queued:  # handed on while it was being looked at
                    continue
                self.tracker.forget(path)
                self.queued.add(path)
                await send.send(path)
            if len(ready) > len(batch):
                continue
            wait = self.tracker.next_due(self._monotonic())
            with anyio.move_on_after(max(TICK, wait) if wait is not None else None):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def _unchanged_and_readable(self, ready: list[Path]) -> list[Path]:
        """Of the files whose wait is over, those that still look as they did and open for
        reading (one trip to a thread for them all); the others wait again or are reported."""
        befores = {path: seen for path in ready if (seen := self.tracker.seen(path)) is not None}
        if not befores:
            return []
        paths = list(befores)
        looks = await anyio.to_thread.run_sync(
            _each, lambda path: _stat_and_open(path, befores[path]), paths
        )
        fine = []
        for path, look in zip(paths, looks, strict=True):
            if isinstance(look, FileNotFoundError):
                self.tracker.forget(path)
            elif isinstance(look, OSError):
                self.tracker.forget(path)  # the next rescan tries again
                if path not in self.blocked:
                    log.warning("%s cannot be read (%s): left in the inbox", path, look.strerror)
                self.blocked[path] = look.strerror or type(look).__name__
            elif look is not None:  # changed since it was last seen: its wait starts again
                self.tracker.observe(path, look.st_size, look.st_mtime_ns, self._monotonic())
            else:
                self.blocked.pop(path, None)
                fine.append(path)
        return fine

    async def _taker(self, receive: anyio.abc.ObjectReceiveStream[Path]) -> None:
        async with receive:
            async for path in receive:
                try:
                    await self._take(path)
                    self.blocked.pop(path, None)
                except FileNotFoundError:
                    # Moved or removed by someone while it was being taken: wherever it went
                    # in the inbox, it is taken from there.
                    log.info("%s went away while it was being taken", path)
                except FolderNotWritable as exc:
                    # The file is fine; the folder it goes to is not (/health names it): the
                    # next rescan tries again.
                    self.blocked.pop(path, None)
                    log.warning("%s stays in the inbox: %s", path, exc)
                except OSError as exc:
                    # It cannot be moved out of the inbox (permissions): reported until then.
                    log.warning("%s could not be taken (%s)", path, exc.strerror or exc)
                    self.blocked[path] = exc.strerror or type(exc).__name__
                except Exception:
                    # The database, say: the file stays in the inbox for the next rescan.
                    log.exception("%s could not be taken; it stays in the inbox", path)
                finally:
                    self.queued.discard(path)


def _each(
    look: Callable[[Path], os.stat_result | None], paths: list[Path]
) -> list[os.stat_result | OSError | None]:
    """`look` at each path; an OSError is its answer, not the end of the others'."""
    looks: list[os.stat_result | OSError | None] = []
    for path in paths:
        try:
            looks.append(look(path))
        except OSError as exc:
            looks.append(exc)
    return looks


def _stat_and_open(path: Path, before: Seen) -> os.stat_result | None:
    """None if the file still looks as `before` and opens for reading (an OSError if it does
    not open); else its new size and times."""
    stat = path.stat()
    if (stat.st_size, stat.st_mtime_ns) != (before.size, before.mtime_ns):
        return stat
    with path.open("rb") as handle:
        handle.read(1)
    return None
