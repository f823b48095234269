"""A lost ledger: refused at start-up, and built again from the archive folders.

The archive is the legal copy: every file the daemon took is in `archive/`, `rejected/` or
`duplicates/` under a dated name (`YYYY/MM/DD/<sha256[:12]>-<name>`), so the ledger can be
built again from them. Each file gets a row: its sha256, the name it came with (read back from
its dated name), where it is, and the day it was received (its folder's date; the hour is not
kept anywhere); its history says it was rebuilt. Files of `archive/` and `rejected/` are
recorded `received` with their parse-and-check queued, so the daemon reads and checks each
again when it starts (a rejected one meets today's rules); a file of `duplicates/` with the
bytes of a file recorded before is a duplicate of it, as the ingest records it, and one
without (a duplicate by its UUID) is read again too. Human decisions (accepted, discarded,
assigned) are only in the ledger: a backup keeps them, a rebuild cannot.

The start-up refusal lives here too: no database where the configuration says, while the
archive holds files, is a lost ledger or a wrong `paths.state_dir`, never a first start.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from functools import partial
from pathlib import Path, PurePosixPath

import anyio

from facturasd.clock import Clock, utcnow
from facturasd.config import Config
from facturasd.constants import DATABASE_FILE, InvoiceState
from facturasd.errors import LedgerMissing, StoreError
from facturasd.hashing import sha256_file
from facturasd.inbox.archive import Folder, Folders, archived, original_name, taken
from facturasd.pipeline.lifecycle import Lifecycle
from facturasd.store import ledger
from facturasd.store.db import Database

# Rows written per commit: one fsync for a batch, not one per file of a large archive.
BATCH = 500
GUIDE = 'docs/install.md, "The ledger was lost"'


def refuse_new_ledger(config: Config) -> None:
    """LedgerMissing if there is no ledger (no database file, or an empty one: SQLite would
    start a new one in either) while the archive folders hold files. Blocking."""
    path = config.paths.state_dir / DATABASE_FILE
    try:
        if path.stat().st_size > 0:
            return
    except FileNotFoundError:
        pass
    folders = Folders.from_paths(config.paths)
    found = next(archived(folders), None)
    if found is not None:
        folder, name = found
        raise LedgerMissing(
            f"{path}: no ledger here, but {folders.root(folder) / name} and maybe more files "
            "are archived: the database was lost, or paths.state_dir is wrong. Restore a "
            "backup, or build the ledger again from the archive with `facturasd "
            "rebuild-ledger`, or start an empty one with `facturasd run --new-ledger` "
            f"({GUIDE})"
        )


@dataclass(frozen=True)
class Found:
    """A file of the archive folders, as the rebuild reads it."""

    folder: Folder
    name: PurePosixPath  # under its folder: YYYY/MM/DD/<sha256[:12]>-<name>
    sha256: str
    mtime: float


@dataclass(frozen=True)
class Rebuilt:
    queued: int  # rows whose parse-and-check is queued (archive/, rejected/, duplicates/)
    duplicates: int  # files of duplicates/ recorded as copies of a recorded file
    known: int  # files the ledger had already, left as they were


class Rebuild:
    def __init__(
        self,
        db: Database,
        lifecycle: Lifecycle,
        folders: Folders,
        *,
        zone: tzinfo,
        clock: Clock = utcnow,
    ):
        self.db = db
        self.lifecycle = lifecycle
        self.folders = folders
        self.zone = zone
        self._clock = clock

    async def __call__(self, *, add_missing: bool = False) -> Rebuilt:
        """Rows for the archived files the ledger lacks. Refused (StoreError) on a ledger
        that has invoices unless `add_missing`: then only files it does not know are added
        (after restoring a backup older than the last files, say)."""
        row = await self.db.fetchone("SELECT COUNT(*) FROM invoices")
        invoices = int(row[0]) if row else 0
        if invoices and not add_missing:
            raise StoreError(
                f"{self.db.path}: the ledger holds {invoices} invoice(s); rebuild-ledger builds "
                "a lost one. To add only the archived files it does not know (after restoring "
                "a backup), run it with --add-missing"
            )
        known = await self.db.read(self._known)
        found, skipped = await anyio.to_thread.run_sync(self._scan, known)
        # Originals first, each in the order it most likely arrived; a duplicate comes after
        # the file it repeats, whose row it points to.
        found.sort(key=lambda f: (f.folder is Folder.DUPLICATES, f.name.parent, f.mtime, f.name))
        queued = duplicates = 0
        for start in range(0, len(found), BATCH):
            batch = found[start : start + BATCH]
            states = await self.db.write(partial(self._record, batch=batch))
            duplicates += states.count(InvoiceState.DUPLICATE)
            queued += states.count(InvoiceState.RECEIVED)
        return Rebuilt(queued, duplicates, skipped)

    def _known(self, conn: sqlite3.Connection) -> set[PurePosixPath]:
        """The dated names of the files the ledger has rows for (a dated name is unique across
        the three folders, and a file moved between them keeps it)."""
        names = set()
        for (path,) in conn.execute(
            "SELECT DISTINCT path FROM invoices WHERE path != ?", (ledger.NO_FILE,)
        ):
            for folder in Folder:
                root = self.folders.root(folder)
                if Path(path).is_relative_to(root):
                    names.add(PurePosixPath(Path(path).relative_to(root).as_posix()))
        return names

    def _scan(self, known: set[PurePosixPath]) -> tuple[list[Found], int]:
        """The files not in `known`, hashed, and how many were. Blocking."""
        found, skipped = [], 0
        for folder, name in archived(self.folders):
            if name in known:
                skipped += 1
                continue
            path = self.folders.root(folder) / name
            found.append(Found(folder, name, sha256_file(path), path.stat().st_mtime))
        return found, skipped

    def _record(self, conn: sqlite3.Connection, *, batch: Sequence[Found]) -> list[InvoiceState]:
        now = self._clock().timestamp()
        states = []
        for file in batch:
            path = self.folders.root(file.folder) / file.name
            name = original_name(file.name, file.sha256, partial(taken, self.folders))
            day = _folder_day(file.name)
            received = (
                f"received on {day} (its folder's date; the hour is not kept)"
                if day
                else "not in a dated folder: the day it last changed taken as its date"
            )
            if day is None:
                day = datetime.fromtimestamp(file.mtime, self.zone).date()
            if name is None:
                name = file.name.name
                received += "; its name does not start with its bytes' hash (renamed or edited?)"
            earlier = None
            if file.folder is Folder.DUPLICATES:
                earlier, _ = ledger.with_bytes(conn, file.sha256, name)
            state = InvoiceState.DUPLICATE if earlier else InvoiceState.RECEIVED
            invoice = ledger.insert(
                conn,
                sha256=file.sha256,
                original_name=name,
                inbox_path=name,
                path=str(path),
                state=state,
                now=datetime.combine(day, datetime.min.time(), self.zone).timestamp(),
                archived=True,
                related_to=earlier.id if earlier else None,
                reason=received,
            )
            why = f"the same bytes as invoice #{earlier.id}" if earlier else "read again"
            rebuilt = f"{ledger.REBUILT}{file.folder}/{file.name} (the ledger was lost): {why}"
            ledger.event(conn, invoice.id, now, state, ledger.SYSTEM, rebuilt)
            if earlier is None:
                self.lifecycle.start(conn, invoice.id, state)
            states.append(state)
        return states


def _folder_day(name: PurePosixPath) -> date | None:
    """The date of a dated name's folders (YYYY/MM/DD), or None."""
    parts = name.parent.parts
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    try:
        return date(*(int(p) for p in parts))
    except ValueError:
        return None
