"""The stage that books each confirmed invoice as one supplier bill in Alegra, exactly once.

`book` (on `alegra_sync`, started as `authorities.book_when` says):

1. The bill is drawn from the stored document (`bill.bill`): the provider looked up or created,
   lines on expense accounts (or items), taxes and the withholdings due mapped to Alegra's ids.
   What cannot be drawn faithfully (a rate Alegra lacks, a credit note) goes to `needs_review`
   with the reason; nothing is guessed.
2. The intent is committed (`booking`, with its time) before the bill is posted.
3. `POST /bills`. Its answer is committed with the bill's id (`booked`), which queues `attach`.

A crash (or a timeout) between 2 and 3's commit leaves the intent open. Before posting again,
the bill is looked up: Alegra's bills newest first, a page at a time, for one whose
observations carry the invoice's UUID; the look-up stops at the first bill our ledger shows
was booked before the intent (past the intent's time: ours cannot be further down), or at the
end of the list. Found: it is linked. Not there: posted. Not decided within `LOOKUP_PAGES`
pages: `needs_review` ("may already be booked") rather than risk a second bill. Alegra's 11108
(the UUID is already on a bill) and 3051 (a bill may exist) lead to the same look-up, never to
a second POST; so do invoices whose ledger was rebuilt (their old intents are gone).

No answer from Alegra: the job goes back uncounted (a circuit per Alegra user paces the tries
during an outage). An answer about the account (credentials, 900 plan limit, 907 read-only):
booking pauses for that user, one alert, and the first booking let through after
`retry.interval` is the probe that resumes it. `attach` uploads the invoice's files (its XML,
the PDFs that came with it) one by one, each recorded, so a retry does not attach twice.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import zipfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import anyio

from facturasd.alegra import bill
from facturasd.alegra.client import PAGE, AccountBlocked, AlegraClient, AlegraError
from facturasd.alegra.directory import Directory
from facturasd.authorities.circuit import Circuit
from facturasd.clock import Clock, utcnow
from facturasd.constants import ComplianceStatus, InvoiceState
from facturasd.errors import JobFailed, Unavailable
from facturasd.formats.model import Document, WithholdingDue
from facturasd.logs import about_invoice
from facturasd.pipeline.lifecycle import Lifecycle, Stage
from facturasd.store import bookings, compliance, ledger
from facturasd.store.bookings import Outcome, Record
from facturasd.store.db import Database, after_commit
from facturasd.store.ledger import Invoice
from facturasd.store.queue import Effect, Job
from facturasd.upstream import AGAIN_SOON

log = logging.getLogger(__name__)

S = InvoiceState
LOOKUP_PAGES = 3  # a look-up after a crash reads at most this many pages of 30 bills
# Documents that are no supplier bill: recorded as not booked, left as they are.
NOT_BOOKED = {
    "payroll": "a payroll document is not a supplier bill",
    "payment": "a payment complement is not a supplier bill",
    "transfer": "a transfer (traslado) CFDI is not a supplier bill",
    # (by its finding: a person may have accepted it)
    "DOC-OWN-SALE": "a sale of the company's own is not a supplier bill",
}
ALREADY = (11108,)  # the UUID is already on a bill
MAYBE_CODES = (3051,)  # stamping failed: a bill may exist
XML, PDF = "application/xml", "application/pdf"


@dataclass
class User:
    """One Alegra user's calls, shared by the companies it books for: a circuit for no
    answers, and a pause for an account that cannot book (it opens on the first refusal; the
    first booking after its cool-down is the probe)."""

    email: str
    circuit: Circuit
    paused: Circuit
    pause_reason: str | None = None


@dataclass(frozen=True)
class Books:
    """One company as booking sees it: the Alegra user's client, its look-ups (the cache
    scope is the company), its account rules, and how bills are made."""

    client: AlegraClient
    directory: Directory
    accounts: bill.Accounts
    lines: Literal["categories", "items"]
    mode: Literal["bills", "import"]
    user: User


class Booking:
    def __init__(
        self,
        db: Database,
        lifecycle: Lifecycle,
        books: Callable[[str | None], Books],
        stages: tuple[Stage, Stage],
        *,
        clock: Clock = utcnow,
    ):
        self.db = db
        self.lifecycle = lifecycle
        self.books = books
        self.book_stage, self.attach_stage = stages
        self._clock = clock

    def _now(self) -> float:
        return self._clock().timestamp()

    @property
    def waits_for_authority(self) -> bool:
        return self.book_stage.starts_at is ComplianceStatus.VALIDATED

    # ── book ──────────────────────────────────────────────────────────────────────────────

    async def __call__(self, job: Job) -> Effect | None:
        invoice_id = int(job.payload["invoice"])
        with about_invoice(invoice_id):
            return await self._book(invoice_id)

    async def _book(self, invoice_id: int) -> Effect | None:
        invoice, found, record, rebuilt = await self.db.read(partial(_read, invoice_id=invoice_id))
        if invoice.state not in (S.CHECKED, S.BOOKING):
            return None
        if (
            invoice.state is S.CHECKED
            and self.waits_for_authority
            and invoice.compliance is not ComplianceStatus.VALIDATED
        ):
            return None  # booking starts when the authority confirms it
        if found is None or found.get("document") is None:
            raise JobFailed(f"invoice #{invoice.id} has no document to book")
        document = Document.model_validate(found["document"])
        codes = [document.kind, *(f.get("code") for f in found.get("findings", []))]
        if invoice.state is S.CHECKED and (
            why := next((c for c in codes if c in NOT_BOOKED), None)
        ):
            return partial(self._not_booked, invoice=invoice, reason=NOT_BOOKED[why])
        due = [WithholdingDue.model_validate(w) for w in found.get("withholdings_due", [])]
        books = self.books(invoice.company)
        return await self._calling(
            books, partial(self._book_with, books, invoice, document, due, record, rebuilt)
        )

    async def _book_with(
        self,
        books: Books,
        invoice: Invoice,
        document: Document,
        due: list[WithholdingDue],
        record: Record | None,
        rebuilt: bool,
    ) -> Effect | None:
        user = books.user.email
        try:
            if books.mode == "import" and document.country == "CO":
                bill.check(document)
                path, body = "/bills/import-by-cufe", {"cufe": document.uuid}
            else:
                path, body = "/bills", await self._draw(books, document, due)
        except bill.Unbookable as exc:
            # What a person fixes in Alegra (a tax, an account) is read afresh next time.
            await books.directory.forget_chart()
            # (an open intent stays open: a bill may exist from before)
            kept = None if record is not None and record.open else Outcome.REFUSED
            return partial(self._review, invoice=invoice, why=str(exc), outcome=kept, user=user)
        if (record is not None and record.open) or (record is None and rebuilt):
            looked = await self._look_up(books, invoice, document, record)
            if looked is not None:
                return looked
        intended = await self._intend(books, invoice)
        if intended is None:
            return None  # discarded or reprocessed meanwhile: not booked
        invoice = intended
        try:
            posted = await books.client.post(path, body)
        except AccountBlocked:
            raise
        except AlegraError as exc:
            if exc.code not in ALREADY and exc.code not in MAYBE_CODES:
                why = f"Alegra refused the bill: {exc.message}" + (
                    f" (code {exc.code})" if exc.code is not None else ""
                )
                await books.directory.forget_chart()
                return partial(
                    self._review, invoice=invoice, why=why, outcome=Outcome.REFUSED, user=user
                )
            if exc.code in MAYBE_CODES:
                await self.db.write(
                    partial(
                        bookings.record,
                        invoice_id=invoice.id,
                        account=user,
                        outcome=Outcome.MAYBE,
                        at=self._now(),
                        detail=str(exc),
                    )
                )
            looked = await self._look_up(books, invoice, document, None, said=str(exc))
            if looked is not None:
                return looked
            # A person looks in Alegra; after a 3051 its record stays: never posted blind.
            return partial(
                self._review,
                invoice=invoice,
                why=f"{exc}, and no such bill was found: check it in Alegra",
                outcome=None if exc.code in MAYBE_CODES else Outcome.UNDECIDED,
                user=user,
            )
        return partial(self._booked, invoice=invoice, bill_id=str(posted["id"]), how="booked")

    async def _draw(
        self, books: Books, document: Document, due: list[WithholdingDue]
    ) -> dict[str, Any]:
        """The POST /bills body; Unbookable when it cannot be faithful to the document."""
        bill.check(document)  # before any look-up
        provider = await books.directory.provider(document)
        chart = await books.directory.chart()
        items: Mapping[str, str] = {}
        if books.lines == "items":
            items = await books.directory.items(bill.item_names(document))
        return bill.bill(
            document, due, chart, books.accounts, provider=provider, lines=books.lines, items=items
        )

    async def _intend(self, books: Books, invoice: Invoice) -> Invoice | None:
        """The intent, committed before the POST; the invoice as it is after it, or None if
        a person moved it meanwhile (nothing is posted)."""

        def write(conn: sqlite3.Connection) -> bool:
            if invoice.state is S.CHECKED and not self.lifecycle.advance(
                conn,
                invoice,
                to=S.BOOKING,
                reason=f"posting its bill to Alegra ({books.user.email})",
            ):
                return False
            bookings.record(
                conn, invoice.id, account=books.user.email, outcome=Outcome.POSTING, at=self._now()
            )
            return True

        if not await self.db.write(write):
            return None
        return dataclasses.replace(invoice, state=S.BOOKING)

    async def _look_up(
        self,
        books: Books,
        invoice: Invoice,
        document: Document,
        record: Record | None,
        *,
        said: str | None = None,
    ) -> Effect | None:
        """After a crash, a timeout, 11108 or 3051: an effect linking the bill if Alegra has
        it; None if it surely has not (post it); an effect sending the invoice to a person
        when the look-up cannot tell, or when Alegra said a bill may exist (3051) and none
        is found: that one is never posted again."""
        marker = bill.marker(document)
        intent_at = record.intent_at if record is not None else None
        known = (
            await self.db.read(
                partial(bookings.known_bills, account=books.user.email, before=intent_at)
            )
            if intent_at is not None
            else set()
        )
        for page in range(LOOKUP_PAGES):
            found = await books.client.get(
                "/bills", order_field="id", order_direction="DESC", start=page * PAGE, limit=PAGE
            )
            for candidate in found if isinstance(found, list) else []:
                if _carries(candidate, marker):
                    how = (
                        "found in Alegra after an interrupted booking"
                        if said is None
                        else (f"found in Alegra ({said})")
                    )
                    return partial(
                        self._booked, invoice=invoice, bill_id=str(candidate["id"]), how=how
                    )
                if str(candidate.get("id")) in known:
                    return self._not_there(invoice, record)
            if not isinstance(found, list) or len(found) < PAGE:
                return self._not_there(invoice, record)
        why = (
            "may already be booked in Alegra: an earlier try may have posted its bill, and the "
            f"newest {LOOKUP_PAGES * PAGE} bills do not tell. Look in Alegra for a bill whose "
            f"observations carry {marker}; if there is none, `facturasd retry` looks again"
        )
        return partial(
            self._review, invoice=invoice, why=why, outcome=Outcome.UNDECIDED, user=books.user.email
        )

    def _not_there(self, invoice: Invoice, record: Record | None) -> Effect | None:
        """Not in Alegra: post it, unless Alegra said a bill may exist (3051)."""
        if record is None or record.outcome is not Outcome.MAYBE:
            return None
        why = f"{record.detail}, and no such bill was found: check it in Alegra"
        return partial(self._review, invoice=invoice, why=why, outcome=None, user=record.account)

    # ── attach ────────────────────────────────────────────────────────────────────────────

    async def attach(self, job: Job) -> Effect | None:
        """The invoice's files on its bill, one by one, each recorded once uploaded."""
        invoice_id = int(job.payload["invoice"])
        with about_invoice(invoice_id):
            return await self._attach(invoice_id)

    async def _attach(self, invoice_id: int) -> Effect | None:
        invoice, found, record, _ = await self.db.read(partial(_read, invoice_id=invoice_id))
        if invoice.state is not S.BOOKED or invoice.alegra_bill_id is None:
            return None
        copies = await self.db.read(partial(ledger.printed_copies, invoice_id=invoice_id))
        files = await anyio.to_thread.run_sync(_files, invoice, found or {}, copies)
        done = record.attached if record is not None else 0
        if done >= len(files):
            return None
        books = self.books(invoice.company)
        return await self._calling(books, partial(self._upload, books, invoice, files, done))

    async def _upload(
        self, books: Books, invoice: Invoice, files: list[Upload], done: int
    ) -> Effect:
        path = f"/bills/{invoice.alegra_bill_id}/attachment"
        for index, upload in enumerate(files[done:], start=done):
            try:
                await books.client.upload(path, upload.name, upload.content, upload.media_type)
            except AccountBlocked:
                raise
            except AlegraError as exc:
                return partial(self._not_attached, invoice=invoice, name=upload.name, said=str(exc))
            await self.db.write(partial(bookings.attached, invoice_id=invoice.id, count=index + 1))
        names = ", ".join(upload.name for upload in files[done:])
        return partial(self._attached, invoice=invoice, names=names)

    # ── calls to Alegra ───────────────────────────────────────────────────────────────────

    async def _calling(
        self, books: Books, work: Callable[[], Awaitable[Effect | None]]
    ) -> Effect | None:
        """`work`'s effect, once Alegra answered. While the user's booking is paused or its
        circuit open, the job waits uncounted (after the cool-down one goes through as the
        probe); no answer waits likewise; an answer about the account pauses it."""
        user = books.user
        if not user.paused.allow():
            raise Unavailable(
                "alegra",
                f"booking paused for {user.email}: {user.pause_reason}",
                user.paused.retry_in(),
            )
        if not user.circuit.allow():
            raise Unavailable(
                "alegra",
                "none to the last calls: calls stopped for now (circuit open)",
                user.circuit.retry_in(),
            )
        try:
            effect = await work()
        except Unavailable as exc:
            user.circuit.failed()
            raise Unavailable(
                exc.upstream, exc.reason, max(exc.delay, user.circuit.retry_in() or AGAIN_SOON)
            ) from exc
        except AccountBlocked as exc:
            raise await self._pause(user, exc.message) from exc
        reopened = user.circuit.succeeded()
        if user.paused.succeeded():
            log.info("alegra: booking resumed for %s", user.email)
            user.pause_reason = None
            reopened = True
        if reopened:
            await self.db.write(self._due_now)
        return effect

    async def _pause(self, user: User, reason: str) -> Unavailable:
        """The account cannot book: paused for its user, with one alert (not one per
        invoice)."""
        first = user.pause_reason is None
        user.paused.failed()
        user.pause_reason = reason
        if first:
            log.critical("alegra: booking paused for %s: %s", user.email, reason)
            await self.db.write(
                partial(
                    compliance.raise_alert,
                    at=self._now(),
                    severity="critical",
                    code="ALEGRA-ACCOUNT",
                    user=user.email,
                    said=reason,
                )
            )
        return Unavailable(
            "alegra", f"booking paused for {user.email}: {reason}", user.paused.retry_in()
        )

    def _due_now(self, conn: sqlite3.Connection) -> int:
        """Alegra answers again: the bookings parked during the outage (or the pause) are due
        now, at the pace of the client's limiter, not when their parked times come."""
        rows = conn.execute(
            "SELECT id FROM jobs WHERE state = 'queued' AND queue = ? AND kind IN (?, ?) "
            "AND run_at > ?",
            (self.book_stage.queue, self.book_stage.kind, self.attach_stage.kind, self._now()),
        ).fetchall()
        return self.lifecycle.queue.due_now(conn, [job_id for (job_id,) in rows])

    # ── the sweep ─────────────────────────────────────────────────────────────────────────

    async def sweep(self) -> int:
        """At start and every `retry.interval`: every invoice that should be booking and has
        no job (Alegra configured after it was confirmed, `book_when` changed) gets one; an
        invoice whose last job died is left to a person (`facturasd jobs`)."""
        return await self.db.write(self._requeue_lost)

    def _requeue_lost(self, conn: sqlite3.Connection) -> int:
        gate = "AND compliance = ?" if self.waits_for_authority else ""
        rows = conn.execute(
            f"SELECT id FROM invoices WHERE ((state = ? {gate}) OR state = ?) "
            "AND NOT EXISTS (SELECT 1 FROM bookings WHERE invoice_id = invoices.id "
            "AND outcome = ?) "
            "AND NOT EXISTS (SELECT 1 FROM jobs WHERE dedupe_key = ? || ':' || invoices.id "
            "AND state IN ('queued', 'running', 'dead'))",
            (
                S.CHECKED,
                *((ComplianceStatus.VALIDATED,) if self.waits_for_authority else ()),
                S.BOOKING,
                Outcome.NOT_BOOKED,
                self.book_stage.kind,
            ),
        ).fetchall()
        for (invoice_id,) in rows:
            self.lifecycle.later(conn, self.book_stage, invoice_id, at=self._clock())
        return len(rows)

    # ── effects: run in the commit that completes the job ────────────────────────────────

    def _booked(
        self, conn: sqlite3.Connection, *, invoice: Invoice, bill_id: str, how: str
    ) -> None:
        found = bookings.get(conn, invoice.id)
        bookings.record(
            conn,
            invoice.id,
            account=found.account if found else "",
            outcome=Outcome.BOOKED,
            at=self._now(),
        )
        if invoice.state is S.CHECKED:  # a rebuilt ledger's invoice, found before any intent
            self.lifecycle.advance(conn, invoice, to=S.BOOKING, reason=how)
            invoice = dataclasses.replace(invoice, state=S.BOOKING)
        self.lifecycle.advance(
            conn,
            invoice,
            to=S.BOOKED,
            reason=f"{how}: Alegra bill {bill_id}",
            alegra_bill_id=bill_id,
        )

    def _review(
        self,
        conn: sqlite3.Connection,
        *,
        invoice: Invoice,
        why: str,
        outcome: Outcome | None,
        user: str,
    ) -> None:
        """To a person, with why; `outcome` recorded in the booking (None: its record, an
        open intent, stays as it is)."""
        if outcome is not None:
            bookings.record(
                conn, invoice.id, account=user, outcome=outcome, at=self._now(), detail=why
            )
        self.lifecycle.advance(conn, invoice, to=S.NEEDS_REVIEW, reason=f"not booked: {why}")

    def _not_booked(self, conn: sqlite3.Connection, *, invoice: Invoice, reason: str) -> None:
        """Left as it is, the reason in its history (and the sweep leaves it be)."""
        user = self.books(invoice.company).user.email
        bookings.record(
            conn,
            invoice.id,
            account=user,
            outcome=Outcome.NOT_BOOKED,
            at=self._now(),
            detail=reason,
        )
        self.lifecycle.advance(conn, invoice, to=invoice.state, reason=f"not booked: {reason}")

    def _attached(self, conn: sqlite3.Connection, *, invoice: Invoice, names: str) -> None:
        self._note(conn, invoice, f"attached to its Alegra bill: {names}")

    def _note(self, conn: sqlite3.Connection, invoice: Invoice, text: str) -> None:
        """A line in the invoice's history that changes neither its state nor its status."""
        ledger.event(conn, invoice.id, self._now(), None, ledger.SYSTEM, text)

    def _not_attached(
        self, conn: sqlite3.Connection, *, invoice: Invoice, name: str, said: str
    ) -> None:
        self._note(conn, invoice, f"{name} not attached to its Alegra bill: {said}")
        compliance.raise_alert(
            conn,
            at=self._now(),
            severity="warning",
            code="ALEGRA-ATTACHMENT",
            invoice_id=invoice.id,
            invoice=invoice.describe(),
            file=name,
            said=said,
        )
        after_commit(
            lambda: log.warning("invoice %s: %s not attached: %s", invoice.describe(), name, said)
        )


@dataclass(frozen=True)
class Upload:
    name: str
    content: bytes
    media_type: str


def _read(
    conn: sqlite3.Connection, *, invoice_id: int
) -> tuple[Invoice, dict[str, Any] | None, Record | None, bool]:
    """The invoice, its inspection, its booking record, and whether its ledger was rebuilt,
    in one trip to the database."""
    invoice = ledger.get(conn, invoice_id)
    if invoice is None:
        raise JobFailed(f"invoice #{invoice_id} is not in the ledger")
    return (
        invoice,
        ledger.inspection(conn, invoice_id),
        bookings.get(conn, invoice_id),
        ledger.rebuilt(conn, invoice_id),
    )


def _carries(candidate: Mapping[str, Any], marker: str) -> bool:
    """Whether a bill of Alegra's is the one of the invoice `marker` names (its UUID in our
    observations, or the CUFE Alegra imported it by)."""
    if not marker:
        return False
    observations = str(candidate.get("observations") or "").lower()
    return marker in observations or marker == str(candidate.get("cufe") or "").lower()


def _files(invoice: Invoice, found: Mapping[str, Any], copies: list[Invoice]) -> list[Upload]:
    """What goes on the bill: the invoice's XML (its member, for one that came in a ZIP), the
    PDFs that came with it, and the printed copies linked to it. Blocking: run in a thread."""
    path = Path(invoice.path)
    files: list[Upload] = []
    if invoice.member is not None:
        with zipfile.ZipFile(path) as package:
            files.append(Upload(Path(invoice.member).name, package.read(invoice.member), XML))
            for member in found.get("attachments", []):
                files.append(Upload(Path(member).name, package.read(member), PDF))
    else:
        files.append(Upload(invoice.original_name, path.read_bytes(), XML))
    for copy in copies:
        if copy.path:
            files.append(Upload(copy.original_name, Path(copy.path).read_bytes(), PDF))
    return files
