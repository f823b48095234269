"""The parse-and-check stage: formats + checks → state, folder, findings.

The file is read and checked in a worker process; the stage moves it to the folder its state
calls for, writes the `.motivo.txt`, then commits the states with the job's completion. A crash
in between runs the job again, which finds the file already moved. A folder that refuses the
move (FolderNotWritable) is no fault of the invoice: it stays where it is, in `received`, and
its job runs again later without using up an attempt.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from facturasd.checks import check
from facturasd.clock import Clock, utcnow
from facturasd.config import Checks, Company
from facturasd.constants import InvoiceState
from facturasd.errors import JobFailed, RetryLater
from facturasd.formats.model import Inspection
from facturasd.formats.reader import read, too_large
from facturasd.formats.safexml import Limits
from facturasd.hashing import sha256_file
from facturasd.inbox.archive import Folder, FolderNotWritable, Folders
from facturasd.logs import about_invoice
from facturasd.pipeline import motivo
from facturasd.pipeline.decide import FOLDER_OF, Checked, Outcome, decide, placement
from facturasd.pipeline.lifecycle import Lifecycle
from facturasd.processpool import ProcessPool
from facturasd.store import ledger
from facturasd.store.db import Database
from facturasd.store.ledger import Invoice
from facturasd.store.queue import Effect, Job

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """What the stage reads of the configuration."""

    limits: Limits
    checks: Checks
    companies: tuple[Company, ...]


class Process:
    def __init__(
        self,
        db: Database,
        lifecycle: Lifecycle,
        folders: Folders,
        settings: Settings,
        *,
        zone: tzinfo,
        processes: ProcessPool,
        retry_after: float,
        clock: Clock = utcnow,
    ):
        self.db = db
        self.lifecycle = lifecycle
        self.folders = folders
        self.settings = settings
        self.zone = zone
        self.processes = processes  # the worker processes that parse
        # How long an invoice whose file cannot be moved waits to be tried again.
        self.retry_after = retry_after
        self._clock = clock

    async def __call__(self, job: Job) -> Effect | None:
        invoice_id = int(job.payload["invoice"])
        with about_invoice(invoice_id):
            return await self._process(invoice_id)

    async def _process(self, invoice_id: int) -> Effect | None:
        invoice = await self.db.read(partial(ledger.get, invoice_id=invoice_id))
        if invoice is None:
            raise JobFailed(f"invoice #{invoice_id} is not in the ledger")
        if invoice.state is not InvoiceState.RECEIVED:
            return None  # done already (a job run again after its completion committed)
        # Where the ledger says, or already moved by a run that crashed before it committed.
        path = Path(invoice.path)
        candidates = list(dict.fromkeys([path, *(self.folders.relocated(path, f) for f in Folder)]))
        here, checked = await self._inspect(candidates, invoice)
        companies_configured = bool(self.settings.companies)
        outcomes = [
            decide(found, first, company=invoice.company, companies_configured=companies_configured)
            for found, first in checked
        ]
        folder, shown, title = placement(outcomes)
        dest = self.folders.relocated(path, folder)
        if dest != here:  # (a checked file stays where it is: no trip to a thread)
            try:
                await anyio.to_thread.run_sync(self.folders.move, here, dest)
            except FolderNotWritable as exc:
                # The folder's fault, not the invoice's: it waits there, its attempts intact.
                log.warning(
                    "%s stays in %s, not moved to %s/: %s; trying again in %.0fs",
                    invoice.original_name,
                    here.parent,
                    folder,
                    exc,
                    self.retry_after,
                )
                raise RetryLater(str(exc), self.retry_after) from exc
        if title is not None:
            # The reason, in both languages, from the findings of the documents not taken.
            findings = [f for n in shown for f in outcomes[n].checked.findings]
            label = invoice.original_name
            if folder is Folder.ARCHIVE:  # some of its documents only: which ones
                label += f" ({', '.join(str(outcomes[n].checked.member) for n in shown)})"
            received = motivo.local_time(invoice.received_at, self.zone)
            # The amounts are written as the documents' country writes them.
            countries = (outcomes[n].checked.columns.get("country") for n in shown)
            country = next(filter(None, countries), None)
            await motivo.write(dest, title, label, received, findings, country)

        def effect(conn: sqlite3.Connection) -> None:
            self._record(conn, invoice, outcomes, dest)

        return effect

    async def _inspect(
        self, candidates: list[Path], invoice: Invoice
    ) -> tuple[Path, list[tuple[Checked, Invoice | None]]]:
        """Read the file, the first of `candidates` there is, and run the checks on each
        document, in a worker process (parsing is CPU work: here it would starve the event
        loop and the database's threads). Each comes with the invoice that stands with its
        UUID, if any: the ledger's to say, asked afterwards (a document repeating it is a
        duplicate)."""
        read = await self.processes.run(
            inspect_file,
            [str(path) for path in candidates],
            invoice.original_name,
            invoice.sha256,
            self.settings,
            self._clock(),
        )
        if read is None:
            raise JobFailed(f"invoice #{invoice.id}: its file is in none of the folders")
        here, documents = read
        found = []
        for checked in documents:
            uuid = checked.uuid
            first = await self.db.read(partial(_standing, uuid=uuid, invoice_id=invoice.id))
            if first is not None and checked.format != "pdf":
                earlier = motivo.named(first, self.zone)
                checked = checked.as_duplicate(earlier, self.settings.companies)
            found.append((checked, first))
        return Path(here), found

    def _record(
        self, conn: sqlite3.Connection, invoice: Invoice, outcomes: Sequence[Outcome], dest: Path
    ) -> None:
        """The states, columns and events of every document of the file, in one commit."""
        now = self._clock().timestamp()
        for outcome in outcomes:
            _still_true(conn, invoice, outcome)
        for n, outcome in enumerate(outcomes):
            columns: dict[str, Any] = {
                **outcome.checked.columns,
                "company": outcome.company,
                "related_to": outcome.related_to,
                "path": str(dest),
            }
            if n > 0:  # more documents in the same file (a ZIP of several): a row each
                invoice = ledger.insert(
                    conn,
                    sha256=invoice.sha256,
                    original_name=invoice.original_name,
                    inbox_path=invoice.inbox_path,
                    path=str(dest),
                    state=InvoiceState.RECEIVED,
                    archived=True,
                    now=now,
                    reason=f"received in {invoice.original_name}",
                )
            recorded = self.lifecycle.advance(
                conn, invoice, to=outcome.state, reason=outcome.reason, **columns
            )
            if not recorded:  # a person acted on it meanwhile: theirs stands
                ledger.update(conn, invoice.id, now, path=str(dest), reason=f"file in {dest}")
                return
            self._consequences(conn, invoice.id, outcome)

    def _consequences(self, conn: sqlite3.Connection, invoice_id: int, outcome: Outcome) -> None:
        """A corrected invoice supersedes the rejected ones with its UUID; its printed copies
        that came alone are linked to it."""
        uuid = outcome.checked.uuid
        if uuid is None or outcome.state in FOLDER_OF or outcome.checked.format == "pdf":
            return
        for other in ledger.with_uuid(
            conn,
            uuid,
            other_than=invoice_id,
            states=(*ledger.SUPERSEDABLE, InvoiceState.NEEDS_REVIEW),
        ):
            if other.state in ledger.SUPERSEDABLE:
                self.lifecycle.advance(
                    conn,
                    other,
                    to=InvoiceState.DISCARDED,
                    related_to=invoice_id,
                    reason=f"superseded by invoice #{invoice_id}",
                )
            elif other.format == "pdf":
                self.lifecycle.advance(
                    conn,
                    other,
                    to=InvoiceState.LINKED,
                    related_to=invoice_id,
                    reason=f"the printed copy of invoice #{invoice_id}",
                )


def _standing(conn: sqlite3.Connection, *, uuid: str | None, invoice_id: int) -> Invoice | None:
    """The invoice that stands with this UUID, other than this one: the first one recorded.
    Duplicates, printed copies, rejected and discarded ones do not stand."""
    if uuid is None:
        return None
    return ledger.standing_with_uuid(conn, uuid, other_than=invoice_id)


def _still_true(conn: sqlite3.Connection, invoice: Invoice, outcome: Outcome) -> None:
    """Another document with the same UUID may have been recorded since this one was decided
    (two workers at once): then decide again."""
    if not outcome.checked.readable or outcome.state in FOLDER_OF:
        return
    first = _standing(conn, uuid=outcome.checked.uuid, invoice_id=invoice.id)
    if first is not None and first.id != outcome.related_to:
        raise RetryLater(f"invoice #{first.id} has the same UUID, recorded meanwhile", 0)


def inspect_file(
    candidates: list[str], name: str, sha256: str, settings: Settings, now: datetime
) -> tuple[str, list[Checked]] | None:
    """Read and check one received file, the first of `candidates` there is (None if none
    is): what a worker process runs for `Process`. Returns where it was and what it holds."""
    path = next((Path(c) for c in candidates if Path(c).is_file()), None)
    if path is None:
        return None
    context = settings.checks.context(settings.companies, now)
    found = read_file(path, name, settings.limits, sha256=sha256)
    return str(path), [Checked.of(check(i, context), settings.companies) for i in found]


def read_file(
    path: Path, name: str, limits: Limits, *, sha256: str | None = None
) -> list[Inspection]:
    """The formats layer's `read` on a file's bytes, for the daemon and `facturasd inspect`. A
    file over `limits.max_file_bytes` is refused from its size (hashed as a stream unless
    `sha256` is given), never read into memory; one that grows meanwhile is cut at the limit.
    OSError if it cannot be opened."""
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        return [too_large(name, size, sha256 or sha256_file(path), limits)]
    with path.open("rb") as handle:
        data = handle.read(limits.max_file_bytes + 1)
    return read(data, name, limits)
