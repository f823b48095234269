"""The stage that gets the tax authority's word on each checked invoice (SPEC §2.4).

One job per invoice (`confirm`, on `dian_validation`; asked again on `compliance_retry`). What
comes back moves the compliance status, in the commit that completes the job:

- an answer: VALIDATED, FAILED (cancelled, rejected: a critical alert), or RETRY at the next
  step of its schedule (not found yet: `retry.not_found_schedule`; the request refused:
  `retry.schedule`, at most `retry.max_retries`), then FAILED; SAT's Vigente also drops the
  RFC check-digit notes from the stored inspection (its query names both RFCs: they are real);
- no answer (timeout, 5xx, 429, refused connection, the circuit open): FALLBACK, a backup of
  the document in `<state_dir>/fallback/<id>.json`, and the job back in its queue without
  counting an attempt, due when the circuit lets a call through again;
- nothing to ask with (a CFDI 3.2, no UUID, no DIAN certificate): PENDING, with the reason, for
  a person.

Every attempt is recorded (time, authority, endpoint, outcome, error, latency, source). The
sweep (`sweep`, every `retry.interval` and at start) asks again for the invoices in FALLBACK
whose circuit is closed, lets one probe through an open circuit whose cool-down is over, and
queues again any invoice waiting for an answer that has lost its job.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from facturasd.authorities import Answer, Authority, Verdict
from facturasd.authorities.circuit import Circuit, CircuitState
from facturasd.checks.identity import known_to_sat
from facturasd.clock import Clock, utcnow
from facturasd.constants import ComplianceStatus, QueueName
from facturasd.errors import AuthorityRefused, JobFailed, Unavailable
from facturasd.formats.model import Document, Inspection
from facturasd.logs import about_invoice
from facturasd.pipeline.lifecycle import ASKED, CONFIRM, Lifecycle
from facturasd.store import compliance, ledger
from facturasd.store.compliance import Outcome
from facturasd.store.db import Database, after_commit
from facturasd.store.ledger import Invoice
from facturasd.store.queue import Effect, Job
from facturasd.upstream import AGAIN_SOON

log = logging.getLogger(__name__)

C = ComplianceStatus
FALLBACK_DIR = "fallback"
RECHECK = "recheck"  # the job kind of the nightly re-check
JITTER = 0.1  # a retry is due up to this share later than its step, so a batch spreads out
_OUTCOMES = {
    Verdict.VALID: Outcome.VALID,
    Verdict.INVALID: Outcome.INVALID,
    Verdict.NOT_FOUND: Outcome.NOT_FOUND,
}
# Statuses that wait for an answer: their invoices must hold a live confirm job.
WAITING = (C.RETRY, C.FALLBACK)


def record_answer(
    conn: sqlite3.Connection,
    invoice_id: int,
    answer: Answer,
    *,
    at: float,
    latency: float | None,
    source: str | None = None,
) -> str:
    """The authority's answer recorded as an attempt about the invoice (`source`: where it
    came from, the answer's own unless told); returns what the authority said, in a line."""
    compliance.record_attempt(
        conn,
        invoice_id,
        at=at,
        authority=answer.authority,
        endpoint=answer.endpoint or answer.source,
        source=source or answer.source,
        outcome=_OUTCOMES[answer.verdict],
        status=answer.status,
        detail=answer.detail,
        latency=latency,
        fields=answer.fields,
    )
    return f"{answer.authority.upper()} says {answer.status}" + (
        f" ({answer.detail})" if answer.detail else ""
    )


@dataclass(frozen=True)
class Schedules:
    """`[retry]`: the delays of the RETRY steps, in seconds."""

    refused: tuple[float, ...]  # retry.schedule, at most `max_retries` of them
    max_retries: int
    not_found: tuple[float, ...]  # retry.not_found_schedule


@dataclass(frozen=True)
class Route:
    """How an invoice is asked: its authority and the question (a call to its client, and
    the URL it goes to), or the answer the container already carries, or why it cannot be."""

    authority: Authority
    ask: Callable[[], Awaitable[Answer]] | None = None
    endpoint: str = ""
    embedded: Answer | None = None  # DIAN's evidence in the container: no request
    waits: str | None = None  # why it is not asked (for a person)


# Given the invoice and its document, how to ask (services.py builds it from the
# configuration: the SAT client, the DIAN client of the invoice's company).
Router = Callable[[Invoice, Document], Route]


class Confirm:
    def __init__(
        self,
        db: Database,
        lifecycle: Lifecycle,
        route: Router,
        circuits: Mapping[Authority, Circuit],
        schedules: Schedules,
        *,
        fallback_dir: Path,
        clock: Clock = utcnow,
        jitter: Callable[[], float] = random.random,
    ):
        self.db = db
        self.lifecycle = lifecycle
        self.route = route
        self.circuits = circuits
        self.schedules = schedules
        self.fallback_dir = fallback_dir
        self._clock = clock
        self._jitter = jitter

    def _now(self) -> float:
        return self._clock().timestamp()

    async def __call__(self, job: Job) -> Effect | None:
        invoice_id = int(job.payload["invoice"])
        with about_invoice(invoice_id):
            return await self._confirm(invoice_id)

    async def _confirm(self, invoice_id: int) -> Effect | None:
        invoice, found = await self.db.read(partial(_with_inspection, invoice_id=invoice_id))
        if invoice is None:
            raise JobFailed(f"invoice #{invoice_id} is not in the ledger")
        if invoice.compliance is C.VALIDATED and invoice.country == "MX":
            # Decided already; checked again since (reprocess): SAT's Vigente still vouches
            # for its RFCs.
            return partial(self._known_to_sat, invoice=invoice)
        if invoice.state not in ASKED or invoice.compliance in (C.VALIDATED, C.FAILED):
            return None  # decided already, or no longer an invoice to ask about
        if found is None or found.get("document") is None:
            raise JobFailed(f"invoice #{invoice.id} has no document to ask about")
        document = Document.model_validate(found["document"])
        route = self.route(invoice, document)
        if route.waits is not None:
            return partial(self._waits, invoice=invoice, reason=route.waits)
        if route.embedded is not None:
            return partial(self._answered, invoice=invoice, answer=route.embedded, latency=None)
        assert route.ask is not None
        circuit = self.circuits[route.authority]
        if not circuit.allow():
            raise await self._fallback(
                invoice,
                document,
                route,
                "none to the last calls: calls stopped for now (circuit open)",
                delay=circuit.retry_in(),
                attempt=False,
            )
        started = time.monotonic()
        try:
            answer = await route.ask()
        except Unavailable as exc:
            circuit.failed()
            raise await self._fallback(
                invoice,
                document,
                route,
                exc.reason,
                delay=max(exc.delay, circuit.retry_in() or AGAIN_SOON),
                latency=time.monotonic() - started,
            ) from exc
        except AuthorityRefused as exc:
            await self._resumed(route.authority, circuit.succeeded())
            return partial(
                self._refused,
                invoice=invoice,
                route=route,
                reason=str(exc),
                latency=time.monotonic() - started,
            )
        await self._resumed(route.authority, circuit.succeeded())
        return partial(
            self._answered, invoice=invoice, answer=answer, latency=time.monotonic() - started
        )

    # ── effects: run in the commit that completes the job ────────────────────────────────

    def _waits(self, conn: sqlite3.Connection, *, invoice: Invoice, reason: str) -> None:
        """Not asked: it stays PENDING, the reason in its history, for a person."""
        self.lifecycle.comply(conn, invoice, to=C.PENDING, reason=f"not asked: {reason}")

    def _answered(
        self,
        conn: sqlite3.Connection,
        *,
        invoice: Invoice,
        answer: Answer,
        latency: float | None,
    ) -> None:
        said = record_answer(conn, invoice.id, answer, at=self._now(), latency=latency)
        if answer.alarm is not None:
            self._alert(conn, invoice, "critical", "SUPPLIER-EFOS", said=said, alarm=answer.alarm)
        if answer.verdict is Verdict.VALID:
            validated = self.lifecycle.comply(conn, invoice, to=C.VALIDATED, reason=said)
            if validated and answer.authority is Authority.SAT:
                self._known_to_sat(conn, invoice=invoice)
        elif answer.verdict is Verdict.INVALID:
            self.lifecycle.comply(conn, invoice, to=C.FAILED, reason=said)
            self._alert(conn, invoice, "critical", f"{answer.authority.upper()}-INVALID", said=said)
        else:  # not known yet
            steps = self.schedules.not_found
            self._again_or_give_up(
                conn, invoice, Outcome.NOT_FOUND, steps, len(steps), said, "warning", "NOT-FOUND"
            )

    def _known_to_sat(self, conn: sqlite3.Connection, *, invoice: Invoice) -> None:
        """SAT answered Vigente to a query naming the CFDI's RFCs: the stored inspection loses
        its check-digit notes about them, in the commit that records the answer."""
        found = ledger.inspection(conn, invoice.id)
        if found is None:
            return
        stored = Inspection.model_validate(found)
        known = known_to_sat(stored)
        if known is not stored:
            ledger.update(
                conn,
                invoice.id,
                self._now(),
                reason="SAT says Vigente: its RFCs are real, check digit or not",
                **ledger.inspected_columns(known),
            )

    def _refused(
        self,
        conn: sqlite3.Connection,
        *,
        invoice: Invoice,
        route: Route,
        reason: str,
        latency: float,
    ) -> None:
        self._asked(conn, invoice, route, Outcome.REFUSED, reason, latency)
        said = f"{route.authority.upper()} refused the request: {reason}"
        schedules = self.schedules
        self._again_or_give_up(
            conn,
            invoice,
            Outcome.REFUSED,
            schedules.refused,
            schedules.max_retries,
            said,
            "critical",
            "REFUSED",
        )

    def _again_or_give_up(
        self,
        conn: sqlite3.Connection,
        invoice: Invoice,
        outcome: str,
        steps: tuple[float, ...],
        most: int,
        said: str,
        severity: str,
        code: str,
    ) -> None:
        """RETRY after the step the attempts with `outcome` have reached (the last step once
        past the end), at most `most` times; then FAILED, with an alert."""
        done = compliance.count_attempts(conn, invoice.id, outcome)
        if done <= most:
            self._again(conn, invoice, steps[min(done, len(steps)) - 1], said)
        else:
            reason = f"{said}; {done} times: given up"
            self.lifecycle.comply(conn, invoice, to=C.FAILED, reason=reason)
            self._alert(conn, invoice, severity, code, said=said, times=done)

    def _asked(
        self,
        conn: sqlite3.Connection,
        invoice: Invoice,
        route: Route,
        outcome: str,
        detail: str,
        latency: float | None,
    ) -> None:
        """An online attempt that brought no answer for the invoice (refused, or none)."""
        compliance.record_attempt(
            conn,
            invoice.id,
            at=self._now(),
            authority=route.authority,
            endpoint=route.endpoint,
            source="online",
            outcome=outcome,
            detail=detail,
            latency=latency,
        )

    def _again(self, conn: sqlite3.Connection, invoice: Invoice, step: float, reason: str) -> None:
        """RETRY, with the job due after `step` seconds (and a little jitter)."""
        due = self._clock() + timedelta(seconds=step * (1 + JITTER * self._jitter()))
        if self.lifecycle.comply(
            conn, invoice, to=C.RETRY, reason=f"{reason}; asked again {due:%Y-%m-%d %H:%M} UTC"
        ):
            self.lifecycle.later(
                conn, CONFIRM, invoice.id, at=due, queue=QueueName.COMPLIANCE_RETRY
            )

    def _alert(
        self, conn: sqlite3.Connection, invoice: Invoice, severity: str, code: str, **params: Any
    ) -> None:
        compliance.raise_alert(
            conn,
            at=self._now(),
            severity=severity,
            code=code,
            invoice_id=invoice.id,
            invoice=invoice.describe(),
            **params,
        )
        level = logging.CRITICAL if severity == "critical" else logging.WARNING
        text = " ".join(f"{k}={v}" for k, v in sorted(params.items()))
        after_commit(lambda: log.log(level, "invoice %s: %s %s", invoice.describe(), code, text))

    # ── no answer ─────────────────────────────────────────────────────────────────────────

    async def _fallback(
        self,
        invoice: Invoice,
        document: Document,
        route: Route,
        reason: str,
        *,
        delay: float,
        latency: float | None = None,
        attempt: bool = True,
    ) -> Unavailable:
        """FALLBACK: the backup written, the attempt recorded; the error to raise, which
        hands the job back uncounted, due after `delay` seconds. `reason`: why there was no
        answer ("HTTP 503", "timed out")."""
        error = Unavailable(route.authority, reason, delay)
        said = str(error)
        path = self.fallback_dir / f"{invoice.id}.json"
        if invoice.compliance is not C.FALLBACK or not await anyio.Path(path).exists():
            await anyio.to_thread.run_sync(self._backup, path, invoice, document, route, said)

        def record(conn: sqlite3.Connection) -> None:
            if attempt:
                self._asked(conn, invoice, route, Outcome.UNAVAILABLE, said, latency)
            if invoice.compliance is not C.FALLBACK:
                self.lifecycle.comply(conn, invoice, to=C.FALLBACK, reason=said)

        await self.db.write(record)
        return error

    def _backup(
        self, path: Path, invoice: Invoice, document: Document, route: Route, reason: str
    ) -> None:
        """The document and its compliance metadata, written whole or not at all."""
        body = {
            "invoice": {
                "id": invoice.id,
                "file": invoice.original_name,
                "path": invoice.path,
                "sha256": invoice.sha256,
                "company": invoice.company,
                "received_at": invoice.received_at,
            },
            "compliance": {
                "status": C.FALLBACK.value,
                "authority": route.authority.value,
                "since": self._now(),
                "reason": reason,
            },
            "document": document.model_dump(mode="json"),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".json.tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            json.dump(body, handle, ensure_ascii=False, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    # ── the sweep ─────────────────────────────────────────────────────────────────────────

    async def _resumed(self, authority: Authority, reopened: bool) -> None:
        """The authority answers again: its invoices in FALLBACK are asked now (at the
        queue's rate), not when their parked jobs come due."""
        if reopened:
            count = await self.db.write(partial(self._due_now, authority=authority, limit=None))
            log.info(
                "%s answers again: %d invoice(s) in FALLBACK asked again", authority.upper(), count
            )

    async def sweep(self) -> int:
        """Every `retry.interval`, and at start: invoices waiting for an answer without a job
        get one; FALLBACK invoices of an authority whose circuit is closed are asked now; one
        of an authority whose cool-down is over is asked now, as the probe. Returns how many
        jobs were queued or brought forward."""
        queued = await self.db.write(self._requeue_lost)
        for authority, circuit in self.circuits.items():
            wait = circuit.retry_in()
            if wait > 0:
                continue
            limit = None if circuit.state is CircuitState.CLOSED else 1
            queued += await self.db.write(partial(self._due_now, authority=authority, limit=limit))
        return queued

    def _requeue_lost(self, conn: sqlite3.Connection) -> int:
        states = ", ".join("?" for _ in ASKED)
        marks = ", ".join("?" for _ in WAITING)
        rows = conn.execute(
            f"SELECT id FROM invoices WHERE state IN ({states}) AND compliance IN ({marks}) "
            "AND NOT EXISTS (SELECT 1 FROM jobs WHERE dedupe_key = 'confirm:' || invoices.id "
            "AND state IN ('queued', 'running'))",
            (*ASKED, *WAITING),
        ).fetchall()
        for (invoice_id,) in rows:
            self.lifecycle.later(conn, CONFIRM, invoice_id, at=self._clock())
        return len(rows)

    def _due_now(self, conn: sqlite3.Connection, *, authority: Authority, limit: int | None) -> int:
        """The queued jobs of `authority`'s invoices in FALLBACK, due now (at most `limit`, the
        earliest due first)."""
        rows = conn.execute(
            "SELECT jobs.id FROM jobs JOIN invoices ON jobs.dedupe_key = 'confirm:' || invoices.id "
            "WHERE jobs.state = 'queued' AND jobs.run_at > ? AND invoices.compliance = ? "
            "AND invoices.country = ? ORDER BY jobs.run_at LIMIT ?",
            (self._now(), C.FALLBACK, authority.country, -1 if limit is None else limit),
        ).fetchall()
        return self.lifecycle.queue.due_now(conn, [job_id for (job_id,) in rows])

    # ── the nightly re-check ──────────────────────────────────────────────────────────────

    async def queue_rechecks(self, *, within: float) -> int:
        """CFDIs SAT validated within the last `within` seconds, each given a `recheck` job on
        the authorities' queue (paced like every call to SAT): a supplier may cancel a CFDI
        after we booked it. Once a day per invoice (the dedupe key names the date)."""
        now = self._clock()

        def queue(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                "SELECT id FROM invoices WHERE country = 'MX' AND compliance = ? AND EXISTS "
                "(SELECT 1 FROM authority_attempts a WHERE a.invoice_id = invoices.id "
                "AND a.authority = ? AND a.outcome = ? AND a.at >= ?)",
                (C.VALIDATED, Authority.SAT, Outcome.VALID, now.timestamp() - within),
            ).fetchall()
            for (invoice_id,) in rows:
                self.lifecycle.queue.add(
                    conn,
                    queue=QueueName.DIAN_VALIDATION,
                    kind=RECHECK,
                    payload={"invoice": invoice_id},
                    dedupe_key=f"recheck:{invoice_id}:{now:%Y-%m-%d}",
                )
            return len(rows)

        return await self.db.write(queue)

    async def recheck(self, job: Job) -> Effect | None:
        """A VALIDATED CFDI asked again. Still in force: the attempt recorded. Cancelled since:
        FAILED and a critical alert naming its Alegra bill, which a person must cancel too.
        No answer: the job waits, uncounted (nothing to back up: the invoice is decided)."""
        invoice_id = int(job.payload["invoice"])
        with about_invoice(invoice_id):
            invoice, found = await self.db.read(partial(_with_inspection, invoice_id=invoice_id))
            if invoice is None or invoice.compliance is not C.VALIDATED or found is None:
                return None  # asked again by a person meanwhile, or settled otherwise
            route = self.route(invoice, Document.model_validate(found["document"]))
            if route.ask is None:
                return None
            circuit = self.circuits[route.authority]
            if not circuit.allow():
                raise Unavailable(route.authority, "circuit open", circuit.retry_in())
            started = time.monotonic()
            try:
                answer = await route.ask()
            except Unavailable:
                circuit.failed()
                raise
            except AuthorityRefused as exc:
                await self._resumed(route.authority, circuit.succeeded())
                raise JobFailed(str(exc)) from exc
            await self._resumed(route.authority, circuit.succeeded())
            return partial(
                self._rechecked, invoice=invoice, answer=answer, latency=time.monotonic() - started
            )

    def _rechecked(
        self, conn: sqlite3.Connection, *, invoice: Invoice, answer: Answer, latency: float
    ) -> None:
        said = record_answer(
            conn, invoice.id, answer, at=self._now(), latency=latency, source="recheck"
        )
        if answer.verdict is not Verdict.INVALID:
            return  # (not found after being found: SAT's index, not the CFDI; asked tomorrow)
        if self.lifecycle.comply(conn, invoice, to=C.FAILED, reason=f"re-checked: {said}"):
            self._alert(
                conn,
                invoice,
                "critical",
                "SAT-CANCELLED-AFTER-BOOKING",
                said=said,
                bill=invoice.alegra_bill_id,
            )


def _with_inspection(
    conn: sqlite3.Connection, *, invoice_id: int
) -> tuple[Invoice | None, dict[str, Any] | None]:
    """The invoice and its stored inspection, in one trip to the database."""
    return ledger.get(conn, invoice_id), ledger.inspection(conn, invoice_id)
