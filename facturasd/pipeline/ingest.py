"""Taking a stable file of the inbox: ledger row, move to the archive, archived.

The ledger row is committed before the file leaves the inbox; then the file is moved; then one
commit marks it archived and queues its parse-and-check. A crash anywhere in between is
finished by `reconcile()` at the next start, so every file is in the ledger once, in exactly
one folder, whatever crashes (SPEC §2.1, §3).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, tzinfo
from functools import partial
from pathlib import Path, PurePosixPath

import anyio

from facturasd.clock import Clock, utcnow
from facturasd.config import Company
from facturasd.constants import InvoiceState
from facturasd.findings import finding
from facturasd.hashing import hash_file
from facturasd.inbox.archive import Folder, Folders, dated_name, same_file, taken
from facturasd.logs import about_invoice
from facturasd.pipeline import motivo
from facturasd.pipeline.lifecycle import PROCESS, Lifecycle
from facturasd.store import ledger
from facturasd.store.db import Database
from facturasd.store.ledger import Invoice
from facturasd.store.queue import Job, Reservation

log = logging.getLogger(__name__)

# A file whose bytes another file of the inbox is being taken with waits for that take to end
# (archived: this one is its duplicate; gone from the inbox: it is not), this long at most.
IN_FLIGHT_WAIT = 10.0


class Ingest:
    def __init__(
        self,
        db: Database,
        lifecycle: Lifecycle,
        folders: Folders,
        *,
        companies: Sequence[Company],
        zone: tzinfo,
        lease: float,
        clock: Clock = utcnow,
    ):
        self.db = db
        self.lifecycle = lifecycle
        self.folders = folders
        self.companies = tuple(companies)
        self.zone = zone  # the configured time zone: dates of receipt, folder names
        self.lease = lease  # of the parse-and-check job handed to this process's workers
        self._clock = clock
        # Dated names chosen and not yet moved into (taken from threads).
        self._naming = threading.Lock()
        self._reserved: set[PurePosixPath] = set()
        self._took = anyio.Event()  # set, and replaced, each time a take ends

    async def __call__(self, path: Path) -> None:
        """Take one stable file of the inbox: ledger row, then the move, then archived."""
        inbox_path = _text(path.relative_to(self.folders.inbox).as_posix())
        sha256 = await hash_file(path)
        now = self._clock()
        # Files are taken concurrently: each reserves a name free in every folder until it is
        # moved, and whether it repeats another's bytes is decided in its ledger transaction
        # (transactions are serial), so two copies taken at once are one and a duplicate.
        original_name = _text(path.name)
        name = await anyio.to_thread.run_sync(self._reserve_name, now, sha256, original_name)
        try:
            receive = partial(
                self._receive,
                original_name=original_name,
                inbox_path=inbox_path,
                sha256=sha256,
                now=now,
                name=name,
            )
            invoice = None
            with anyio.move_on_after(IN_FLIGHT_WAIT):
                while invoice is None:
                    took = self._took
                    if (invoice := await self._take(path, partial(receive, wait=True))) is None:
                        await took.wait()
            if invoice is None:  # (a take that could not end: its move failed)
                await self._take(path, partial(receive, wait=False))
        finally:
            with self._naming:
                self._reserved.discard(name)
            self._took.set()
            self._took = anyio.Event()

    async def _take(
        self, path: Path, receive: Callable[[sqlite3.Connection], Invoice | None]
    ) -> Invoice | None:
        """The row, then the move: shielded, so that a stop (SIGTERM, Ctrl-C) never parts a
        row from its file; the move is one rename and one write. None if it must wait."""
        with anyio.CancelScope(shield=True):
            if (invoice := await self.db.write(receive)) is None:
                return None
            with about_invoice(invoice.id):
                try:
                    await self._archive(invoice, path)
                    # Once, when it is out of the inbox (a folder that refuses it is retried).
                    log.info(
                        "invoice #%d %s: taken from the inbox, %s, as %s",
                        invoice.id,
                        invoice.inbox_path,
                        invoice.state,
                        invoice.path,
                    )
                except FileNotFoundError:
                    # Moved or deleted by someone while it was being taken: the row is closed
                    # now, and the file, wherever it went in the inbox, is taken anew.
                    if not await anyio.Path(invoice.path).exists():
                        await self.db.write(partial(self._vanished, invoice=invoice))
                    raise
        return invoice

    def _receive(
        self,
        conn: sqlite3.Connection,
        *,
        original_name: str,
        inbox_path: str,
        sha256: str,
        now: datetime,
        name: PurePosixPath,
        wait: bool,
    ) -> Invoice | None:
        """The file's ledger row; None (with `wait`) while a file of the same bytes elsewhere
        in the inbox is being taken: moved there by someone while it was taken, that one is
        closed as gone, and this is no duplicate of it."""
        earlier, pending = ledger.with_bytes(conn, sha256, inbox_path)
        if earlier is not None and pending:
            return earlier  # recorded before a crash, never moved: finish it
        if earlier is not None and not earlier.archived and wait:
            return None
        invoice = ledger.insert(
            conn,
            sha256=sha256,
            original_name=original_name,
            inbox_path=inbox_path,
            path=str(self.folders.placed(name, Folder.DUPLICATES if earlier else Folder.ARCHIVE)),
            state=InvoiceState.DUPLICATE if earlier else InvoiceState.RECEIVED,
            company=self._company_of_folder(inbox_path),
            related_to=earlier.id if earlier else None,
            now=now.timestamp(),
            reason=f"the same bytes as invoice #{earlier.id}"
            if earlier
            else f"received as {inbox_path}",
        )
        if earlier is not None:
            ledger.copy_document(conn, earlier.id, invoice.id)
        return invoice

    def _reserve_name(self, now: datetime, sha256: str, name: str) -> PurePosixPath:
        """The dated name, tagged when the same bytes and name arrived the same day; free in
        every folder and reserved until released."""
        local = now.astimezone(self.zone)
        with self._naming:
            candidate = dated_name(local, sha256, name)
            tag = 1
            while candidate in self._reserved or taken(self.folders, candidate):
                tag += 1
                candidate = dated_name(local, sha256, name, tag=str(tag))
            self._reserved.add(candidate)
        return candidate

    async def _archive(self, invoice: Invoice, source: Path) -> None:
        dest = Path(invoice.path)
        await anyio.to_thread.run_sync(self.folders.move, source, dest)
        if invoice.state is InvoiceState.DUPLICATE:
            earlier = await self.db.read(partial(ledger.get, invoice_id=invoice.related_to or 0))
            described = motivo.named(earlier, self.zone) if earlier else f"#{invoice.related_to}"
            await motivo.write(
                dest,
                InvoiceState.DUPLICATE,
                invoice.original_name,
                motivo.local_time(invoice.received_at, self.zone),
                [finding("DOC-DUPLICATE-FILE", "file", earlier=described)],
            )
        # A received file's parse-and-check is added claimed for this process's workers, if
        # there is room: one write less than a claim of their own.
        queue = self.lifecycle.queue
        claim = None
        if invoice.state is InvoiceState.RECEIVED:
            claim = queue.reserve(PROCESS.queue, self.lease)
        jobs: list[Job] = []
        try:
            jobs = await self.db.write(partial(self._mark_archived, invoice=invoice, claim=claim))
        finally:
            token = claim.token if claim else None
            queue.hand_over(claim, next((j for j in jobs if j.lease_token == token), None))

    def _mark_archived(
        self, conn: sqlite3.Connection, *, invoice: Invoice, claim: Reservation | None
    ) -> list[Job]:
        """Archived, and the jobs of the stages its state starts queued."""
        ledger.update(
            conn,
            invoice.id,
            self._clock().timestamp(),
            archived=1,
            reason=f"moved to {invoice.path}",
        )
        return self.lifecycle.start(conn, invoice.id, invoice.state, claim=claim)

    async def reconcile(self) -> int:
        """At start-up: finish every ingest a crash interrupted. Returns how many. One that
        cannot be finished (permissions) is logged and left for the next start."""
        pending = await ledger.unarchived(self.db)
        for invoice in pending:
            try:
                await self._resume(invoice)
            except OSError as exc:
                log.error("invoice #%d: its ingest cannot be finished: %s", invoice.id, exc)
        return len(pending)

    async def _resume(self, invoice: Invoice) -> None:
        source = self.folders.inbox / invoice.inbox_path
        dest = Path(invoice.path)
        in_inbox = await anyio.Path(source).is_file()
        if in_inbox and await anyio.Path(dest).exists():
            if await anyio.to_thread.run_sync(same_file, source, dest):
                await anyio.Path(source).unlink()  # placed before the crash, not yet unlinked
            in_inbox = False  # else: another file since dropped under that name: the
            # watcher takes it as new
        if in_inbox or await anyio.Path(dest).exists():
            await self._archive(invoice, source)
        else:
            await self.db.write(partial(self._vanished, invoice=invoice))

    def _vanished(self, conn: sqlite3.Connection, *, invoice: Invoice) -> None:
        self.lifecycle.advance(
            conn,
            invoice,
            to=InvoiceState.DISCARDED,
            archived=1,
            path=ledger.NO_FILE,
            reason="moved or removed from the inbox by someone before it could be archived",
        )

    def _company_of_folder(self, inbox_path: str) -> str | None:
        """With companies configured, `inbox/<slug>/…` belongs to that company."""
        top = PurePosixPath(inbox_path).parts[0] if "/" in inbox_path else None
        return next((c.slug for c in self.companies if c.slug == top), None)


def _text(name: str) -> str:
    """A file name as text the ledger and the archive can hold: bytes that are not UTF-8
    (names written by an old Windows or a Latin-1 mail client) become `\\xf1` escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
