"""The one way an invoice changes state, and what each state starts.

`Lifecycle.advance` is the only writer of an invoice's state after its row is created: it
checks the change against `TRANSITIONS`, writes the state and its event, and queues the job of
the stage that the new state starts, all inside the caller's transaction, so a state and its
next job commit together or not at all. Stages are registered, not wired: a `Stage` names the
job kind, its queue and the state that starts it; whoever runs workers maps kinds to handlers.
Each capability (authorities, booking) adds its stages and states here.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from facturasd.clock import Clock, utcnow
from facturasd.constants import ComplianceStatus, InvoiceState, QueueName
from facturasd.errors import IllegalTransition
from facturasd.store import ledger
from facturasd.store.db import after_commit
from facturasd.store.queue import Job, Queue, Reservation

log = logging.getLogger(__name__)

S = InvoiceState
# Every change of state allowed, from → to. A row is created `received` (a file taken) or
# `duplicate` (the same bytes as one taken before); staying in a state is not a change.
TRANSITIONS: Mapping[InvoiceState, frozenset[InvoiceState]] = {
    # Read and checked; or gone from the inbox before it could be archived (discarded).
    S.RECEIVED: frozenset(
        {S.UNREADABLE, S.REJECTED, S.DUPLICATE, S.NEEDS_REVIEW, S.CHECKED, S.LINKED, S.DISCARDED}
    ),
    # Superseded by a corrected invoice, discarded or reprocessed by a person.
    S.UNREADABLE: frozenset({S.RECEIVED, S.DISCARDED}),
    S.REJECTED: frozenset({S.RECEIVED, S.DISCARDED}),
    S.DUPLICATE: frozenset({S.RECEIVED, S.DISCARDED}),
    # Assigned or accepted by a person; a PDF alone linked to its XML when that arrives; one
    # that may already be booked, linked by a person to the bill found in Alegra.
    S.NEEDS_REVIEW: frozenset({S.CHECKED, S.LINKED, S.BOOKED, S.DISCARDED, S.RECEIVED}),
    # Booked in Alegra (the intent recorded before the bill is posted), or not bookable as it
    # is (a tax rate Alegra lacks, a credit note): a person decides.
    S.CHECKED: frozenset({S.BOOKING, S.NEEDS_REVIEW, S.DISCARDED, S.RECEIVED}),
    # The bill posted (or found, after a crash); or refused by Alegra for its content, or not
    # found with certainty after a crash (it may exist): a person decides.
    S.BOOKING: frozenset({S.BOOKED, S.NEEDS_REVIEW}),
    # A bill in Alegra is the end: undoing it is done in Alegra, by a person.
    S.BOOKED: frozenset(),
    S.LINKED: frozenset({S.DISCARDED, S.RECEIVED}),
    S.DISCARDED: frozenset({S.RECEIVED}),
}


C = ComplianceStatus
# The tax authority's word, beside the state (SPEC §2.4): asked (PENDING), confirmed, asked
# again later (RETRY: not found yet, or refused), given no answer (FALLBACK: an outage),
# denied (FAILED). A person may ask again from any of them (`facturasd retry`).
COMPLIANCE: Mapping[ComplianceStatus, frozenset[ComplianceStatus]] = {
    C.PENDING: frozenset({C.VALIDATED, C.RETRY, C.FAILED, C.FALLBACK}),
    C.RETRY: frozenset({C.PENDING, C.VALIDATED, C.RETRY, C.FAILED, C.FALLBACK}),
    C.FALLBACK: frozenset({C.PENDING, C.VALIDATED, C.RETRY, C.FAILED}),
    C.FAILED: frozenset({C.PENDING}),
    # (a CFDI its issuer cancelled after SAT validated it: the nightly re-check)
    C.VALIDATED: frozenset({C.PENDING, C.FAILED}),
}


@dataclass(frozen=True)
class Stage:
    """A step of the pipeline: entering `starts_at` (a state, or a compliance status) queues
    a job of `kind` on `queue`, with the invoice's id as its payload."""

    kind: str
    queue: QueueName
    starts_at: InvoiceState | ComplianceStatus


PROCESS = Stage("process", QueueName.INVOICE_PROCESSING, InvoiceState.RECEIVED)
# Asking the tax authority: every checked invoice, however it became checked (read, or
# accepted or assigned by a person).
CONFIRM = Stage("confirm", QueueName.DIAN_VALIDATION, InvoiceState.CHECKED)
# The document behind a PDF alone, asked of the tax authority (authorities/printed.py): every
# invoice in review gets the job; only a PDF that names its document is asked about.
PRINTED = Stage("printed", QueueName.DIAN_VALIDATION, InvoiceState.NEEDS_REVIEW)
STAGES: tuple[Stage, ...] = (PROCESS, CONFIRM, PRINTED)
BOOK, ATTACH = "book", "attach"  # booking's job kinds (registered by `booking`)
# The states of an invoice the tax authority is asked about: checked, and on into booking
# (with `book_when = "checked"` the bill may be posted before the authority answers).
ASKED = (InvoiceState.CHECKED, InvoiceState.BOOKING, InvoiceState.BOOKED)


def booking(book_when: str) -> tuple[Stage, Stage]:
    """Booking in Alegra, registered when Alegra is configured: the bill, started once the
    authority confirmed the invoice ("validated") or as soon as it is checked ("checked",
    `authorities.book_when`); then its files attached to it."""
    starts = ComplianceStatus.VALIDATED if book_when == "validated" else InvoiceState.CHECKED
    return (
        Stage(BOOK, QueueName.ALEGRA_SYNC, starts),
        Stage(ATTACH, QueueName.ALEGRA_SYNC, InvoiceState.BOOKED),
    )


class Lifecycle:
    def __init__(self, queue: Queue, stages: Iterable[Stage] = STAGES, *, clock: Clock = utcnow):
        self.queue = queue
        self.stages = tuple(stages)
        kinds = [stage.kind for stage in self.stages]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"a job kind is registered twice: {kinds}")
        self._clock = clock

    def advance(
        self,
        conn: sqlite3.Connection,
        invoice: ledger.Invoice,
        *,
        to: InvoiceState,
        reason: str,
        actor: str = ledger.SYSTEM,
        **columns: Any,
    ) -> bool:
        """Move `invoice` (as the caller read it) to `to`, with `columns`, and queue what `to`
        starts. Only if the invoice is still in the state it was read in: returns whether it
        was (someone else may have moved it meanwhile). IllegalTransition if the table does not
        allow it."""
        if to is not invoice.state and to not in TRANSITIONS[invoice.state]:
            raise IllegalTransition(
                f"invoice #{invoice.id}: {invoice.state} → {to} is not an allowed change"
            )
        changed = ledger.update(
            conn,
            invoice.id,
            self._clock().timestamp(),
            actor=actor,
            reason=reason,
            state=to,
            expect=invoice.state,
            **columns,
        )
        if changed and to is not invoice.state:
            self._entered(conn, invoice, invoice.state, to, actor, reason)
        return changed

    def comply(
        self,
        conn: sqlite3.Connection,
        invoice: ledger.Invoice,
        *,
        to: ComplianceStatus,
        reason: str,
        actor: str = ledger.SYSTEM,
    ) -> bool:
        """Move `invoice`'s compliance status (as the caller read it) to `to` and queue what
        `to` starts, like `advance`; only if it still has the status it was read with. Its
        state may have moved on meanwhile (booked, with `book_when = "checked"`): the
        authority's word is recorded all the same. Staying in a status records the event
        (another attempt, another reason)."""
        if to not in COMPLIANCE[invoice.compliance] and to is not invoice.compliance:
            raise IllegalTransition(
                f"invoice #{invoice.id}: compliance {invoice.compliance} → {to} "
                "is not an allowed change"
            )
        changed = ledger.update(
            conn,
            invoice.id,
            self._clock().timestamp(),
            actor=actor,
            reason=reason,
            compliance=to,
            expect_compliance=invoice.compliance,
        )
        if changed and to is not invoice.compliance:
            self._entered(conn, invoice, f"compliance {invoice.compliance}", to, actor, reason)
        return changed

    def _entered(
        self,
        conn: sqlite3.Connection,
        invoice: ledger.Invoice,
        was: str,
        to: InvoiceState | ComplianceStatus,
        actor: str,
        reason: str,
    ) -> None:
        """What entering `to` starts, queued; one INFO line once it is committed."""
        self.start(conn, invoice.id, to)
        after_commit(
            lambda: log.info(
                "invoice #%d %s: %s → %s by %s: %s",
                invoice.id,
                invoice.original_name,
                was,
                to,
                actor,
                reason,
                extra={"invoice_id": invoice.id},
            )
        )

    def later(
        self,
        conn: sqlite3.Connection,
        stage: Stage,
        invoice_id: int,
        *,
        at: datetime,
        queue: QueueName | None = None,
    ) -> Job:
        """`stage`'s job for the invoice again, due `at` (on `queue`, else the stage's own): a
        stage that must run again later (asking an authority after a "not found yet")."""
        return self.queue.add(
            conn,
            queue=queue or stage.queue,
            kind=stage.kind,
            payload={"invoice": invoice_id},
            dedupe_key=_dedupe_key(stage, invoice_id),
            run_at=at,
        )

    def start(
        self,
        conn: sqlite3.Connection,
        invoice_id: int,
        state: InvoiceState | ComplianceStatus,
        *,
        claim: Reservation | None = None,
    ) -> list[Job]:
        """Queue the jobs of the stages `state` starts (the ingest calls this itself once a
        received file is archived: its parse-and-check cannot start before). The stage on
        `claim`'s queue is added claimed with it, to be handed over once committed."""
        return [
            self.queue.add(
                conn,
                queue=stage.queue,
                kind=stage.kind,
                payload={"invoice": invoice_id},
                dedupe_key=_dedupe_key(stage, invoice_id),
                claim=claim if claim is not None and claim.queue == stage.queue else None,
            )
            for stage in self.stages
            if stage.starts_at is state
        ]


def _dedupe_key(stage: Stage, invoice_id: int) -> str:
    """One live job per stage and invoice."""
    return f"{stage.kind}:{invoice_id}"
