"""The scheduler's housekeeping (SPEC §2.6): what is no longer needed goes, what must last is
copied and checked.

- `clean_files`: finished jobs older than a week, the FALLBACK copies of invoices the authority
  has since answered for, temporary files a crash left behind in the daemon's own folders.
  Never the archive, rejected or duplicates folders: those are the office's legal copies.
- `clean_attempts`: the failed intermediate attempts of settled invoices, once older than
  `schedule.compliance_cleanup_after`; the attempt that decided stays as long as the archive.
- `back_up`: the nightly online copy of the ledger, rotated.
- `check_archive`: every archived file hashed against the ledger's SHA-256.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import anyio

from facturasd.constants import BACKUP_DIR, ComplianceStatus, InvoiceState
from facturasd.hashing import sha256_file
from facturasd.store.db import Database, backup_file

log = logging.getLogger(__name__)

JOBS_KEPT = 7 * 86400.0
TEMPORARY_KEPT = 86400.0  # a temporary file this old belongs to no write in progress
NIGHTLY = "facturasd-nightly-"
ARCHIVE_SHOWN = 20  # damaged files named in the alert; the log names them all
ARCHIVE_BATCH = 64  # files hashed per trip to a thread

# Settled: the authority's word is final for the ledger (a person may still ask again).
_SETTLED = (ComplianceStatus.VALIDATED, ComplianceStatus.FAILED)


# ── file cleanup ──────────────────────────────────────────────────────────────────────────


def _delete_finished_jobs(conn: sqlite3.Connection, *, before: float) -> int:
    # Dead jobs stay: they are kept for a person to see and run again.
    return conn.execute(
        "DELETE FROM jobs WHERE state = 'done' AND finished_at < ?", (before,)
    ).rowcount


def _settled(conn: sqlite3.Connection, ids: list[int]) -> set[int]:
    marks = ", ".join("?" for _ in ids)
    rows = conn.execute(
        f"SELECT id FROM invoices WHERE id IN ({marks}) AND (compliance IN (?, ?) OR state = ?)",
        (*ids, *_SETTLED, InvoiceState.DISCARDED),
    ).fetchall()
    return {int(row[0]) for row in rows}


def _temporary(folder: Path, before: float) -> Iterator[Path]:
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.is_file() and path.name.endswith(".tmp") and path.stat().st_mtime < before:
            yield path


async def clean_files(
    db: Database, *, fallback_dir: Path, reports: Path, state_dir: Path, now: float
) -> str:
    """Finished jobs older than a week, FALLBACK copies of settled invoices, and temporary
    files older than a day in the state, fallback, backups and reports folders. Returns what
    it did, in a line."""
    jobs = await db.write(partial(_delete_finished_jobs, before=now - JOBS_KEPT))
    copies = {
        int(path.stem): path
        for path in await anyio.to_thread.run_sync(_listed, fallback_dir, "*.json")
        if path.stem.isdigit()
    }
    settled = await db.read(partial(_settled, ids=list(copies))) if copies else set()
    for invoice_id in settled:
        await anyio.Path(copies[invoice_id]).unlink(missing_ok=True)

    def temporaries() -> list[Path]:
        folders = (state_dir, fallback_dir, state_dir / BACKUP_DIR, reports)
        return [p for f in folders for p in _temporary(f, now - TEMPORARY_KEPT)]

    leftovers = await anyio.to_thread.run_sync(temporaries)
    for path in leftovers:
        await anyio.Path(path).unlink(missing_ok=True)
    return (
        f"{jobs} finished job(s), {len(settled)} fallback copy(ies), "
        f"{len(leftovers)} temporary file(s) removed"
    )


def _listed(folder: Path, pattern: str) -> list[Path]:
    return sorted(folder.glob(pattern)) if folder.is_dir() else []


# ── compliance-record cleanup ─────────────────────────────────────────────────────────────


def _delete_attempts(conn: sqlite3.Connection, *, before: float) -> int:
    """Attempts without a final answer (no answer, refused, not found yet) and re-checks, of
    settled invoices, older than `before`; never an invoice's deciding attempt (its last
    answer before the re-checks) nor its last attempt."""
    return conn.execute(
        "DELETE FROM authority_attempts WHERE at < ? "
        "AND (outcome IN ('unavailable', 'refused', 'not_found') OR source = 'recheck') "
        "AND invoice_id IN (SELECT id FROM invoices WHERE compliance IN (?, ?)) "
        "AND id NOT IN (SELECT MAX(id) FROM authority_attempts GROUP BY invoice_id) "
        "AND id NOT IN (SELECT MAX(id) FROM authority_attempts "
        "WHERE source != 'recheck' AND outcome != 'unavailable' GROUP BY invoice_id)",
        (before, *_SETTLED),
    ).rowcount


async def clean_attempts(db: Database, *, older_than: float, now: float) -> str:
    deleted = await db.write(partial(_delete_attempts, before=now - older_than))
    return f"{deleted} intermediate attempt(s) of settled invoices removed"


# ── the nightly backup ────────────────────────────────────────────────────────────────────


def nightly_backups(folder: Path) -> list[Path]:
    """The nightly copies in `folder`, oldest first (their names sort by time)."""
    return _listed(folder, f"{NIGHTLY}*.db")


async def back_up(db: Database, *, folder: Path, keep: int, now: datetime) -> str:
    """An online copy of the ledger in `folder`, checked; then only the newest `keep`."""
    await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
    made = await backup_file(db.path, folder / f"{NIGHTLY}{now.astimezone(UTC):%Y%m%dT%H%M%SZ}.db")
    old = (await anyio.to_thread.run_sync(nightly_backups, folder))[:-keep]
    for path in old:
        await anyio.Path(path).unlink(missing_ok=True)
    return f"{made.path.name} ({made.size} bytes); {len(old)} older copy(ies) removed"


def newest_backup(folder: Path) -> datetime | None:
    """When the newest nightly copy was written, or None. Blocking."""
    found = nightly_backups(folder)
    return datetime.fromtimestamp(found[-1].stat().st_mtime, UTC) if found else None


# ── the archive check ─────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class ArchiveCheck:
    checked: int
    missing: list[str]
    changed: list[str]


def _archived(conn: sqlite3.Connection, *, root: str) -> list[tuple[str, str]]:
    # A ZIP's documents share its file and hash: each file once.
    rows = conn.execute(
        "SELECT DISTINCT path, sha256 FROM invoices "
        "WHERE archived = 1 AND substr(path, 1, length(?1)) = ?1 ORDER BY path",
        (root,),
    ).fetchall()
    return [(str(row[0]), str(row[1])) for row in rows]


async def check_archive(db: Database, archive: Path) -> ArchiveCheck:
    """Each file the ledger has in the archive, hashed: missing or changed ones named."""
    files = await db.read(partial(_archived, root=f"{archive}/"))
    missing, changed = [], []
    # A batch of files per trip to a thread: a trip per file would cost more than most
    # invoices' hashing (the files are at most formats.max_file_bytes each).
    for start in range(0, len(files), ARCHIVE_BATCH):
        batch = files[start : start + ARCHIVE_BATCH]
        for (path, sha256), found in zip(
            batch, await anyio.to_thread.run_sync(_hashes, [p for p, _ in batch]), strict=True
        ):
            if found is None:
                missing.append(path)
            elif found != sha256:
                changed.append(path)
    return ArchiveCheck(len(files), missing, changed)


def _hashes(paths: list[str]) -> list[str | None]:
    """Each file's SHA-256, None for one that is not there. Blocking."""
    found: list[str | None] = []
    for path in paths:
        try:
            found.append(sha256_file(Path(path)))
        except FileNotFoundError:
            found.append(None)
    return found
