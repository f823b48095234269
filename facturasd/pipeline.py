"""The stages that move one received file along: ingest (inbox → ledger → archive) and
parse-and-check (formats + checks → state, folder, findings), over the durable queue.

Ingest commits the ledger row before the file leaves the inbox, then moves it, then marks it
archived and queues the parse-and-check job in one commit: a crash anywhere in between is
finished by `reconcile()` at the next start. Parse-and-check moves the file to the folder its
state calls for, then commits the state with the job's completion; a crash in between runs the
job again, which finds the file already moved. So every file is in the ledger once, in exactly
one folder, whatever crashes (SPEC §2.1, §3).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

import anyio

from facturasd.checks import Context, check, duplicate
from facturasd.checks.identity import company_for
from facturasd.clock import Clock, utcnow
from facturasd.config import Checks, Company, Config
from facturasd.constants import InvoiceState, QueueName
from facturasd.errors import JobFailed, RetryLater
from facturasd.findings import Language, finding, motivo
from facturasd.formats.model import Finding, Inspection
from facturasd.formats.reader import read_file
from facturasd.formats.safexml import Limits
from facturasd.hashing import hash_file
from facturasd.inbox.archive import (
    Folder,
    Folders,
    dated_name,
    motivo_path,
    move,
    same_file,
    taken,
    write_atomically,
)
from facturasd.store import ledger
from facturasd.store.db import Database
from facturasd.store.ledger import Invoice
from facturasd.store.queue import Effect, Job, Queue, Reservation
from facturasd.workers import Handler

log = logging.getLogger(__name__)

PROCESS = "process"  # the job kind of the parse-and-check stage
# What a checked invoice is handed to, inside the commit that makes it `checked` (the authority
# stage, when there is one); None: checked invoices rest in `checked`.
NextStage = Callable[[sqlite3.Connection, int], None]

FOLDER_OF = {
    InvoiceState.UNREADABLE: Folder.REJECTED,
    InvoiceState.REJECTED: Folder.REJECTED,
    InvoiceState.DUPLICATE: Folder.DUPLICATES,
}
TITLES: dict[InvoiceState, dict[Language, str]] = {
    InvoiceState.UNREADABLE: {
        "es": "facturasd: el archivo no se pudo leer como factura",
        "en": "facturasd: the file could not be read as an invoice",
    },
    InvoiceState.REJECTED: {
        "es": "facturasd: factura rechazada por sus errores",
        "en": "facturasd: invoice rejected for its errors",
    },
    InvoiceState.DUPLICATE: {
        "es": "facturasd: documento repetido, no se contabiliza",
        "en": "facturasd: duplicate document, not booked",
    },
}


@dataclass(frozen=True)
class Checked:
    """What a worker process made of one document of a file, as the daemon needs it: the
    ledger's columns (the whole inspection among them, as JSON), the findings and the company
    its receiver is. Not the document's objects: reading those back would cost the event loop
    more than the parsing saved it."""

    columns: dict[str, Any]
    findings: list[Finding]
    readable: bool  # the formats layer found a document
    company: str | None

    @classmethod
    def of(cls, inspection: Inspection, companies: Sequence[Company]) -> Checked:
        doc = inspection.document
        company = company_for(doc.country, doc.receiver, companies) if doc else None
        return cls(
            ledger.inspected_columns(inspection),
            inspection.findings,
            doc is not None,
            company.slug if company else None,
        )

    @property
    def uuid(self) -> str | None:
        uuid: str | None = self.columns.get("uuid")
        return uuid

    @property
    def format(self) -> str:
        return str(self.columns["format"])

    @property
    def verdict(self) -> str:
        return str(self.columns["verdict"])

    def as_duplicate(self, earlier: str, lang: Language, companies: Sequence[Company]) -> Checked:
        """With the finding that it repeats `earlier` (the rare case: read back whole)."""
        inspection = Inspection.model_validate_json(self.columns["inspection"])
        return Checked.of(duplicate(inspection, earlier, lang), companies)


@dataclass(frozen=True)
class Outcome:
    """What parse-and-check made of one document of a file."""

    checked: Checked
    state: InvoiceState
    reason: str
    company: str | None
    related_to: int | None = None


class Pipeline:
    def __init__(
        self,
        config: Config,
        db: Database,
        queue: Queue,
        *,
        zone: tzinfo,
        clock: Clock = utcnow,
        next_stage: NextStage | None = None,
    ):
        self.config = config
        self.db = db
        self.queue = queue
        self.folders = Folders.from_paths(config.paths)
        self.zone = zone  # the configured time zone: dates of receipt, folder names
        self.lang: Language = config.reports.language
        self.limits = config.formats.limits()
        self._clock = clock
        self._next_stage = next_stage
        # Dated names chosen and not yet moved into (taken from threads).
        self._naming = threading.Lock()
        self._reserved: set[PurePosixPath] = set()

    @property
    def handlers(self) -> Mapping[str, Handler]:
        return {PROCESS: self.process}

    def _now(self) -> datetime:
        return self._clock()

    # ── ingest ────────────────────────────────────────────────────────────────────────────

    async def ingest(self, path: Path) -> None:
        """Take one stable file of the inbox: ledger row, then the move, then archived."""
        inbox_path = _text(path.relative_to(self.folders.inbox).as_posix())
        sha256 = await hash_file(path)
        now = self._now()
        # Files are taken concurrently: each reserves a name free in every folder until it is
        # moved, and whether it repeats another's bytes is decided in its ledger transaction
        # (transactions are serial), so two copies taken at once are one and a duplicate.
        original_name = _text(path.name)
        name = await anyio.to_thread.run_sync(self._reserve_name, now, sha256, original_name)
        try:
            invoice = await self.db.write(
                partial(
                    self._receive,
                    original_name=original_name,
                    inbox_path=inbox_path,
                    sha256=sha256,
                    now=now,
                    name=name,
                )
            )
            try:
                await self._archive(invoice, path)
            except FileNotFoundError:
                # Moved or deleted by someone while it was being taken: the row is closed
                # now, and the file, wherever it went in the inbox, is taken anew.
                if not await anyio.Path(invoice.path).exists():
                    await self.db.write(partial(self._vanished, invoice=invoice))
                raise
        finally:
            with self._naming:
                self._reserved.discard(name)

    def _receive(
        self,
        conn: sqlite3.Connection,
        *,
        original_name: str,
        inbox_path: str,
        sha256: str,
        now: datetime,
        name: PurePosixPath,
    ) -> Invoice:
        earlier, pending = ledger.with_bytes(conn, sha256, inbox_path)
        if earlier is not None and pending:
            return earlier  # recorded before a crash, never moved: finish it
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
        await anyio.to_thread.run_sync(move, source, dest)
        if invoice.state is InvoiceState.DUPLICATE:
            earlier = await self._invoice(invoice.related_to or 0)
            text = motivo(
                TITLES[InvoiceState.DUPLICATE],
                invoice.original_name,
                self._local(invoice.received_at),
                {
                    lang: [
                        finding("DOC-DUPLICATE-FILE", "file", lang, earlier=self._named(earlier))
                    ]
                    for lang in ("es", "en")
                },
            )
            await anyio.to_thread.run_sync(write_atomically, motivo_path(dest), text)
        claim = self.queue.reserve(QueueName.INVOICE_PROCESSING, self.config.workers.lease)
        job = None
        try:
            job = await self.db.write(partial(self._mark_archived, invoice=invoice, claim=claim))
        finally:
            self.queue.hand_over(claim, job)

    def _mark_archived(
        self, conn: sqlite3.Connection, *, invoice: Invoice, claim: Reservation | None
    ) -> Job | None:
        """Archived; a received file's parse-and-check queued, claimed for this process's
        workers (one write less than a claim of their own)."""
        ledger.update(
            conn,
            invoice.id,
            self._now().timestamp(),
            archived=1,
            reason=f"moved to {invoice.path}",
        )
        if invoice.state is not InvoiceState.RECEIVED:
            return None
        return self.queue.add(
            conn,
            queue=QueueName.INVOICE_PROCESSING,
            kind=PROCESS,
            payload={"invoice": invoice.id},
            dedupe_key=f"process:{invoice.id}",
            claim=claim,
        )

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
        ledger.update(
            conn,
            invoice.id,
            self._now().timestamp(),
            state=InvoiceState.DISCARDED,
            archived=1,
            path=ledger.NO_FILE,
            reason="moved or removed from the inbox by someone before it could be archived",
        )

    # ── parse and check ───────────────────────────────────────────────────────────────────

    async def process(self, job: Job) -> Effect | None:
        invoice = await self._invoice(int(job.payload["invoice"]))
        if invoice.state is not InvoiceState.RECEIVED:
            return None  # done already (a job run again after its completion committed)
        # Where the ledger says, or already moved by a run that crashed before it committed.
        path = Path(invoice.path)
        candidates = list(dict.fromkeys([path, *(self.folders.relocated(path, f) for f in Folder)]))
        here, checked = await self._inspect(candidates, invoice, self.lang)
        outcomes = [self._decide(invoice, found, first) for found, first in checked]
        # The documents that are not taken: each file's reason names them. The file goes to
        # the archive if any of its documents is taken (a ZIP of several), else to the folder
        # of their state; its reason's title is the worst of theirs.
        shown = [n for n, outcome in enumerate(outcomes) if outcome.state in FOLDER_OF]
        states = {outcomes[n].state for n in shown}
        if len(shown) < len(outcomes):
            folder = Folder.ARCHIVE
        elif states == {InvoiceState.DUPLICATE}:
            folder = Folder.DUPLICATES
        else:
            folder = Folder.REJECTED
        worst = next(
            (s for s in (InvoiceState.REJECTED, InvoiceState.UNREADABLE) if s in states),
            InvoiceState.DUPLICATE,
        )
        title = TITLES[worst] if shown else None
        dest = self.folders.relocated(Path(invoice.path), folder)
        if dest != here:  # (a checked file stays where it is: no trip to a thread)
            await anyio.to_thread.run_sync(move, here, dest)
        if title is not None:
            # The reason, in both languages (the file is read again in the other: rare).
            other: Language = "en" if self.lang == "es" else "es"
            _, again = await self._inspect([dest], invoice, other)
            by_lang = {self.lang: checked, other: again}
            findings = {
                lang: [f for n in shown for f in found[n][0].findings]
                for lang, found in by_lang.items()
            }
            label = invoice.original_name
            if folder is Folder.ARCHIVE:  # some of its documents only: which ones
                members = [str(outcomes[n].checked.columns.get("member")) for n in shown]
                label += f" ({', '.join(members)})"
            text = motivo(title, label, self._local(invoice.received_at), findings)
            await anyio.to_thread.run_sync(write_atomically, motivo_path(dest), text)

        def effect(conn: sqlite3.Connection) -> None:
            self._record(conn, invoice, outcomes, dest)

        return effect

    async def _inspect(
        self, candidates: list[Path], invoice: Invoice, lang: Language
    ) -> tuple[Path, list[tuple[Checked, Invoice | None]]]:
        """Read the file, the first of `candidates` there is, and run the checks on each
        document, in a worker process (parsing is CPU work: here it would starve the event
        loop and the database's threads). Each comes with the invoice that stands with its
        UUID, if any: the ledger's to say, asked afterwards (a document repeating it is a
        duplicate)."""
        read = await anyio.to_process.run_sync(
            inspect_file,
            [str(path) for path in candidates],
            invoice.original_name,
            invoice.sha256,
            self.limits,
            lang,
            self._now(),
            self.config.checks,
            list(self.config.companies),
        )
        if read is None:
            raise JobFailed(f"invoice #{invoice.id}: its file is in none of the folders")
        here, documents = read
        found = []
        for checked in documents:
            uuid = checked.uuid
            first = await self.db.read(partial(self._standing, uuid=uuid, invoice_id=invoice.id))
            if first is not None and checked.format != "pdf":
                checked = checked.as_duplicate(self._named(first), lang, self.config.companies)
            found.append((checked, first))
        return Path(here), found

    @staticmethod
    def _standing(conn: sqlite3.Connection, *, uuid: str | None, invoice_id: int) -> Invoice | None:
        """The invoice that stands with this UUID, other than this one: the first one
        recorded. Duplicates, printed copies, rejected and discarded ones do not stand."""
        if uuid is None:
            return None
        return ledger.standing_with_uuid(conn, uuid, other_than=invoice_id)

    def _decide(self, invoice: Invoice, checked: Checked, first: Invoice | None) -> Outcome:
        """The state of one document, given `first`, the invoice standing with its UUID."""
        codes = {f.code for f in checked.findings}
        company = invoice.company or checked.company
        if not checked.readable:
            return Outcome(checked, InvoiceState.UNREADABLE, _first_problem(checked), None)
        if "DOC-DUPLICATE" in codes and first is not None:
            reason = f"the same UUID as invoice #{first.id}"
            return Outcome(checked, InvoiceState.DUPLICATE, reason, company, first.id)
        if checked.verdict == "rejected":
            return Outcome(checked, InvoiceState.REJECTED, _first_problem(checked), company)
        if checked.format == "pdf":
            if first is not None:
                reason = f"the printed copy of invoice #{first.id}"
                return Outcome(checked, InvoiceState.LINKED, reason, company, first.id)
            return Outcome(checked, InvoiceState.NEEDS_REVIEW, "a PDF without its XML", company)
        if "DOC-OWN-SALE" in codes:
            return Outcome(
                checked, InvoiceState.NEEDS_REVIEW, "a sale of the company's own", company
            )
        if self.config.companies and company is None:
            reason = "no company: not in a company's inbox folder, receiver not a company"
            return Outcome(checked, InvoiceState.NEEDS_REVIEW, reason, None)
        return Outcome(checked, InvoiceState.CHECKED, _verdict_reason(checked), company)

    def _record(
        self, conn: sqlite3.Connection, invoice: Invoice, outcomes: Sequence[Outcome], dest: Path
    ) -> None:
        """The states, columns and events of every document of the file, in one commit."""
        now = self._now().timestamp()
        for outcome in outcomes:
            self._still_true(conn, invoice, outcome)
        for n, outcome in enumerate(outcomes):
            columns: dict[str, Any] = {
                **outcome.checked.columns,
                "company": outcome.company,
                "related_to": outcome.related_to,
                "path": str(dest),
            }
            if n == 0:
                invoice_id = invoice.id
                recorded = ledger.update(
                    conn,
                    invoice_id,
                    now,
                    state=outcome.state,
                    expect=InvoiceState.RECEIVED,
                    reason=outcome.reason,
                    **columns,
                )
                if not recorded:  # a person acted on it meanwhile: theirs stands
                    ledger.update(conn, invoice_id, now, path=str(dest), reason=f"file in {dest}")
                    return
            else:  # more documents in the same file (a ZIP of several): a row each
                added = ledger.insert(
                    conn,
                    sha256=invoice.sha256,
                    original_name=invoice.original_name,
                    inbox_path=invoice.inbox_path,
                    path=str(dest),
                    state=outcome.state,
                    archived=True,
                    now=now,
                    reason=outcome.reason,
                )
                invoice_id = added.id
                ledger.update(conn, invoice_id, now, reason="read", **columns)
            self._consequences(conn, invoice_id, outcome, now)

    def _still_true(self, conn: sqlite3.Connection, invoice: Invoice, outcome: Outcome) -> None:
        """Another document with the same UUID may have been recorded since this one was
        decided (two workers at once): then decide again."""
        if not outcome.checked.readable or outcome.state in FOLDER_OF:
            return
        first = self._standing(conn, uuid=outcome.checked.uuid, invoice_id=invoice.id)
        if first is not None and first.id != outcome.related_to:
            raise RetryLater(f"invoice #{first.id} has the same UUID, recorded meanwhile", 0)

    def _consequences(
        self, conn: sqlite3.Connection, invoice_id: int, outcome: Outcome, now: float
    ) -> None:
        uuid = outcome.checked.uuid
        if uuid is None or outcome.state in FOLDER_OF:
            return
        if outcome.checked.format != "pdf":
            # The corrected invoice supersedes the rejected ones with its UUID; its printed
            # copies that came alone are linked to it.
            for other in ledger.with_uuid(
                conn,
                uuid,
                other_than=invoice_id,
                states=(*ledger.SUPERSEDABLE, InvoiceState.NEEDS_REVIEW),
            ):
                if other.state in ledger.SUPERSEDABLE:
                    ledger.update(
                        conn,
                        other.id,
                        now,
                        state=InvoiceState.DISCARDED,
                        related_to=invoice_id,
                        reason=f"superseded by invoice #{invoice_id}",
                    )
                elif other.format == "pdf":
                    ledger.update(
                        conn,
                        other.id,
                        now,
                        state=InvoiceState.LINKED,
                        related_to=invoice_id,
                        reason=f"the printed copy of invoice #{invoice_id}",
                    )
        if outcome.state is InvoiceState.CHECKED and self._next_stage is not None:
            self._next_stage(conn, invoice_id)

    # ── helpers ───────────────────────────────────────────────────────────────────────────

    async def _invoice(self, invoice_id: int) -> Invoice:
        invoice = await self.db.read(partial(ledger.get, invoice_id=invoice_id))
        if invoice is None:
            raise JobFailed(f"invoice #{invoice_id} is not in the ledger")
        return invoice

    def _company_of_folder(self, inbox_path: str) -> str | None:
        """With companies configured, `inbox/<slug>/…` belongs to that company."""
        top = PurePosixPath(inbox_path).parts[0] if "/" in inbox_path else None
        return next((c.slug for c in self.config.companies if c.slug == top), None)

    def _local(self, timestamp: float) -> str:
        return datetime.fromtimestamp(timestamp, self.zone).strftime("%Y-%m-%d %H:%M")

    def _named(self, invoice: Invoice) -> str:
        return f"{invoice.describe()}, {self._local(invoice.received_at)}"


def _first_problem(checked: Checked) -> str:
    problems: list[Finding] = [f for f in checked.findings if f.severity == "error"]
    first = (problems or checked.findings)[0]
    return f"{first.code} at {first.path}"


def _verdict_reason(checked: Checked) -> str:
    warnings = [f.code for f in checked.findings if f.severity == "warning"]
    return f"checked with warnings: {', '.join(warnings)}" if warnings else "checked: no findings"


def inspect_file(
    candidates: list[str],
    name: str,
    sha256: str,
    limits: Limits,
    lang: Language,
    now: datetime,
    settings: Checks,
    companies: list[Company],
) -> tuple[str, list[Checked]] | None:
    """Read and check one received file, the first of `candidates` there is (None if none
    is): what a worker process runs for `Pipeline`. Returns where it was and what it holds."""
    path = next((Path(c) for c in candidates if Path(c).is_file()), None)
    if path is None:
        return None
    context = Context.configured(settings, companies, now, lang)
    found = read_file(path, name, limits, lang, sha256=sha256)
    return str(path), [Checked.of(check(i, context), companies) for i in found]


def _text(name: str) -> str:
    """A file name as text the ledger and the archive can hold: bytes that are not UTF-8
    (names written by an old Windows or a Latin-1 mail client) become `\\xf1` escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
