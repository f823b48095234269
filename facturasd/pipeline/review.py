"""What a person does to an invoice, from the CLI or the HTTP API alike: reprocess, assign,
accept, discard, and ask the tax authority again.

Each is one write transaction through `Lifecycle.advance` (`Lifecycle.comply`), recorded as an
event with who did it and why, and as a row of the audit trail (who, by which way), so an
invoice a person moves on gets the same next job as one the daemon moved. They run beside the
daemon on the same SQLite file (WAL: the daemon keeps working; a write waits for the other's
commit). A job they queue is taken by the daemon now, or at its next start.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from facturasd import wording
from facturasd.clock import Clock, utcnow
from facturasd.config import Company
from facturasd.constants import ComplianceStatus, InvoiceState, JobState
from facturasd.errors import ReviewRefused
from facturasd.pipeline.lifecycle import ASKED, BOOK, CONFIRM, Lifecycle, Stage
from facturasd.store import audit, bookings, compliance, ledger
from facturasd.store.audit import Via
from facturasd.store.db import Database

# Findings that keep an invoice in review whoever it is assigned to.
STILL_IN_REVIEW = ("FMT-PDF-WITHOUT-XML", "DOC-OWN-SALE")
# The actions on one invoice that the CLI and the API both take (`Review.act`).
ACTIONS = ("retry", "reprocess", "accept", "assign", "discard")


@dataclass(frozen=True)
class Done:
    """What came of an action: `result`, a key of wording.REVIEW; the invoice's `state` after
    it, where the action decides it; `said`, the values its sentence names."""

    result: str
    state: InvoiceState | None
    said: dict[str, object]

    def words(self, lang: wording.Language) -> str:
        return wording.review(self.result, lang, **self.said)


class Review:
    def __init__(
        self,
        db: Database,
        lifecycle: Lifecycle,
        companies: Sequence[Company],
        actor: str,
        *,
        via: Via = "cli",
        clock: Clock = utcnow,
    ):
        """`actor`: who acts (the OS user on the CLI, the token's name on the API), `via`:
        by which way, both recorded in the audit trail."""
        self.db = db
        self.lifecycle = lifecycle
        self.companies = tuple(companies)
        self.actor = actor
        self._who = audit.Who(actor, via)
        self._clock = clock

    async def act(self, action: str, invoice_id: int, reason: str, *, company: str = "") -> Done:
        """One of ACTIONS on the invoice (`company`: assign's)."""
        if action == "reprocess":
            await self.reprocess(invoice_id, reason)
            return Done("queued_again", InvoiceState.RECEIVED, {"ids": f"#{invoice_id}"})
        if action == "assign":
            state = await self.assign(invoice_id, company, reason)
            return Done("assigned", state, {"id": invoice_id, "company": company, "state": state})
        if action == "accept":
            await self.accept(invoice_id, reason)
            checked = InvoiceState.CHECKED
            return Done("accepted", checked, {"id": invoice_id, "state": checked})
        if action == "discard":
            await self.discard(invoice_id, reason)
            return Done("discarded", InvoiceState.DISCARDED, {"id": invoice_id})
        if action == "retry":
            was, what = await self.ask_again(invoice_id, reason)
            before = was.state if what == "booking_again" else was.compliance
            return Done(what, None, {"invoice": f"#{invoice_id}", "state": before})
        raise ValueError(f"no such action: {action}")

    async def _get(self, invoice_id: int) -> ledger.Invoice:
        invoice = await self.db.read(partial(ledger.get, invoice_id=invoice_id))
        if invoice is None:
            raise ReviewRefused("no_invoice", id=invoice_id)
        return invoice

    async def reprocess(self, invoice_id: int, reason: str) -> None:
        """Parse and check again (after a rules change, a fixed configuration…)."""
        invoice = await self._get(invoice_id)
        if not invoice.archived or invoice.state is InvoiceState.RECEIVED:
            raise ReviewRefused("being_read", id=invoice_id)
        await self._set(invoice, "reprocess", reason, InvoiceState.RECEIVED)

    async def assign(self, invoice_id: int, company: str, reason: str) -> InvoiceState:
        """Give the invoice to a company; one in review only for want of a company is then
        checked."""
        if not self.companies:
            raise ReviewRefused("no_companies", company=company)
        if company not in {c.slug for c in self.companies}:
            known = ", ".join(c.slug for c in self.companies)
            raise ReviewRefused("no_company", company=company, known=known)
        invoice = await self._get(invoice_id)
        state = invoice.state
        if state is InvoiceState.NEEDS_REVIEW:
            found = await self.db.read(partial(ledger.inspection, invoice_id=invoice_id)) or {}
            codes = {f["code"] for f in found.get("findings", [])}
            if not codes & set(STILL_IN_REVIEW):
                state = InvoiceState.CHECKED
        await self._set(
            invoice, "assign", reason, state, said=f"assigned to {company}", company=company
        )
        return state

    async def accept(self, invoice_id: int, reason: str) -> None:
        """Accept an invoice in review, warnings and all."""
        invoice = await self._get(invoice_id)
        if invoice.state is not InvoiceState.NEEDS_REVIEW:
            raise ReviewRefused("not_in_review", id=invoice_id, state=invoice.state)
        if invoice.format == "pdf":
            raise ReviewRefused("pdf_alone", id=invoice_id)
        await self._set(invoice, "accept", reason, InvoiceState.CHECKED, said="accepted")

    async def discard(self, invoice_id: int, reason: str) -> None:
        invoice = await self._get(invoice_id)
        if invoice.state is InvoiceState.DISCARDED:
            raise ReviewRefused("discarded_already", id=invoice_id)
        await self._set(invoice, "discard", reason, InvoiceState.DISCARDED, said="discarded")

    async def checked_with(self, status: ComplianceStatus) -> list[int]:
        """The checked invoices whose compliance status is `status`, oldest first: those
        `retry --failed` (`--fallback`, `--pending`) asks about."""
        found = await ledger.search(
            self.db, ledger.Filter(states=(InvoiceState.CHECKED,), compliance=(status,))
        )
        return sorted(invoice.id for invoice in found)

    async def ask_again(self, invoice_id: int, reason: str) -> tuple[ledger.Invoice, str]:
        """`facturasd retry`: the stage the invoice is stuck at, again now. Returns the
        invoice as it was, and "booking_again" or "asked_again".

        Booking, when Alegra is configured and the invoice is past the authority (VALIDATED),
        or was sent to a person by the booking (Alegra refused its bill): back to checked,
        its book job due now. Otherwise the tax authority: the compliance status back to
        PENDING, the attempts so far no longer counted against its retries, and its confirm
        job due now (a job parked until a retry's step, or until the authority answers
        again, is brought forward)."""
        book = next((s for s in self.lifecycle.stages if s.kind == BOOK), None)

        def record(conn: sqlite3.Connection) -> tuple[ledger.Invoice, str]:
            invoice = ledger.get(conn, invoice_id)
            if invoice is None:
                raise ReviewRefused("no_invoice", id=invoice_id)
            if book is not None and (
                (invoice.state is InvoiceState.NEEDS_REVIEW and bookings.get(conn, invoice_id))
                or (
                    invoice.state is InvoiceState.CHECKED
                    and invoice.compliance is ComplianceStatus.VALIDATED
                )
            ):
                self._book_again(conn, invoice, book, reason)
                self._audit(conn, "retry", invoice_id, reason, outcome="booking_again")
                return invoice, "booking_again"
            if invoice.state not in ASKED:
                raise ReviewRefused("not_checked", id=invoice_id, state=invoice.state)
            self._now_due(conn, CONFIRM, invoice_id, "being_asked")
            self.lifecycle.comply(
                conn,
                invoice,
                to=ComplianceStatus.PENDING,
                reason=f"asked again: {reason}",
                actor=self.actor,
            )
            compliance.restart_count(conn, invoice_id)
            self._audit(conn, "retry", invoice_id, reason, outcome="asked_again")
            return invoice, "asked_again"

        return await self.db.write(record)

    async def settle_bill(self, invoice_id: int, bill_id: str | None, reason: str) -> None:
        """An invoice the booking could not tell whether Alegra already has (after a crash,
        11108 or 3051), once a person looked in Alegra: `bill_id`, the bill found there, is linked
        (booked; its files are attached next); None, there is none: its booking is queued
        again, to post without looking up."""
        book = next((s for s in self.lifecycle.stages if s.kind == BOOK), None)

        def record(conn: sqlite3.Connection) -> None:
            invoice = ledger.get(conn, invoice_id)
            if invoice is None:
                raise ReviewRefused("no_invoice", id=invoice_id)
            found = bookings.get(conn, invoice_id)
            if (
                book is None
                or invoice.state is not InvoiceState.NEEDS_REVIEW
                or found is None
                or found.outcome not in (bookings.Outcome.UNDECIDED, bookings.Outcome.MAYBE)
            ):
                raise ReviewRefused("not_undecided", id=invoice_id, state=invoice.state)
            now = self._clock().timestamp()
            if bill_id is None:
                bookings.record(
                    conn,
                    invoice_id,
                    account=found.account,
                    outcome=bookings.Outcome.REFUSED,  # (nothing in Alegra: no intent open)
                    at=now,
                    detail=f"no bill in Alegra, says {self.actor}: {reason}",
                )
                self._book_again(conn, invoice, book, f"no bill in Alegra: {reason}")
                self._audit(conn, "bill", invoice_id, reason, bill=None)
                return
            bookings.record(
                conn, invoice_id, account=found.account, outcome=bookings.Outcome.BOOKED, at=now
            )
            self.lifecycle.advance(
                conn,
                invoice,
                to=InvoiceState.BOOKED,
                reason=f"Alegra bill {bill_id}, found there by a person: {reason}",
                actor=self.actor,
                alegra_bill_id=bill_id,
            )
            self._audit(conn, "bill", invoice_id, reason, bill=bill_id)

        await self.db.write(record)

    def _book_again(
        self, conn: sqlite3.Connection, invoice: ledger.Invoice, book: Stage, reason: str
    ) -> None:
        if invoice.state is InvoiceState.NEEDS_REVIEW:
            self.lifecycle.advance(
                conn,
                invoice,
                to=InvoiceState.CHECKED,
                reason=f"to be booked again: {reason}",
                actor=self.actor,
            )
        else:
            ledger.event(
                conn,
                invoice.id,
                self._clock().timestamp(),
                None,
                self.actor,
                f"to be booked again: {reason}",
            )
        self._now_due(conn, book, invoice.id, "being_booked")

    def _now_due(self, conn: sqlite3.Connection, stage: Stage, invoice_id: int, busy: str) -> None:
        """`stage`'s job for the invoice, due now; refused while it runs (its outcome would
        find the invoice changed under it and be dropped, leaving it without a job)."""
        job = self.lifecycle.later(conn, stage, invoice_id, at=self._clock())
        if job.state is JobState.RUNNING:
            raise ReviewRefused(busy, id=invoice_id)
        self.lifecycle.queue.due_now(conn, [job.id])

    def _audit(
        self, conn: sqlite3.Connection, action: str, invoice_id: int, reason: str, **detail: Any
    ) -> None:
        audit.record(
            conn,
            self._who,
            at=self._clock().timestamp(),
            action=action,
            target=f"invoice/{invoice_id}",
            reason=reason,
            **detail,
        )

    async def _set(
        self,
        invoice: ledger.Invoice,
        action: str,
        reason: str,
        state: InvoiceState,
        *,
        said: str | None = None,
        **columns: Any,
    ) -> None:
        """The change, only if the invoice is still as it was read (the daemon may have moved
        it on meanwhile). The history says "`said`: `reason`" ("`action`: …" without it)."""

        def record(conn: sqlite3.Connection) -> bool:
            changed = self.lifecycle.advance(
                conn,
                invoice,
                to=state,
                reason=f"{said or action}: {reason}",
                actor=self.actor,
                **columns,
            )
            if changed:
                self._audit(conn, action, invoice.id, reason, state=str(state), **columns)
            return changed

        if not await self.db.write(record):
            raise ReviewRefused("changed", id=invoice.id)
