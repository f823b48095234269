"""The document behind a PDF that came alone: the `printed` stage, on the authorities' queue.

Every invoice entering NEEDS_REVIEW gets the job; it asks only about a PDF alone that names
its document:

- Colombia, its CUFE read and a DIAN certificate configured for its company (or for all):
  GetXmlByDocumentKey. The XML DIAN gives is written into the inbox, in a hidden folder the
  watcher leaves alone (`.dian/`, under the PDF's company folder if it came in one), and taken
  from there as a file dropped in the inbox is: ledger row, archive, parse-and-check. Once it
  is checked, parse-and-check links the PDF to it (LINKED), as when an XML arrives after its
  PDF. DIAN without it: the attempt recorded, the reason in the PDF's history, asked again on
  the not-found schedule (`retry.not_found_schedule`), then left to a person.
- Mexico, its UUID, both RFCs and the total read: SAT's status (ConsultaCFDIService does not
  give the XML), recorded as an attempt beside the PDF, which stays in review: a person must
  still get the XML.
- Anything else, or no DIAN certificate: nothing is asked (as for GetStatus).

No answer (timeout, 5xx, 429, the circuit open) hands the job back uncounted, as confirm's
are; the circuits are the authorities' own. A request refused (the certificate, the clock) is
recorded as an attempt and not repeated: the setup needs a person, and confirm says so.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TypeVar

import anyio

from facturasd.authorities import Answer, Authority
from facturasd.authorities import sat as sat_service
from facturasd.authorities.circuit import Circuit
from facturasd.authorities.confirm import Confirm, record_answer
from facturasd.authorities.dian import DianClient
from facturasd.clock import Clock, utcnow
from facturasd.constants import InvoiceState, QueueName
from facturasd.errors import AuthorityRefused, Unavailable
from facturasd.formats.model import Document
from facturasd.inbox.archive import write_atomically
from facturasd.logs import about_invoice
from facturasd.pipeline.lifecycle import PRINTED, Lifecycle
from facturasd.store import compliance, ledger
from facturasd.store.compliance import Outcome
from facturasd.store.db import Database
from facturasd.store.ledger import Invoice
from facturasd.store.queue import Effect, Job
from facturasd.upstream import AGAIN_SOON

log = logging.getLogger(__name__)

# Where in the inbox the XML DIAN gives is written to be taken (hidden: the watcher skips it).
FETCHED_DIR = ".dian"
T = TypeVar("T")


class PrintedCopy:
    """The `printed` stage's handler. `dian_client(invoice)`: the DIAN client of the invoice's
    company, or why there is none; `ingest(path)`: takes a file of the inbox."""

    def __init__(
        self,
        db: Database,
        lifecycle: Lifecycle,
        confirm: Confirm,
        *,
        sat: sat_service.SatClient,
        dian_client: Callable[[Invoice], DianClient | str],
        circuits: Mapping[Authority, Circuit],
        ingest: Callable[[Path], Awaitable[None]],
        inbox: Path,
        not_found: tuple[float, ...],
        clock: Clock = utcnow,
    ):
        self.db = db
        self.lifecycle = lifecycle
        self.confirm = confirm
        self.sat = sat
        self.dian_client = dian_client
        self.circuits = circuits
        self.ingest = ingest
        self.inbox = inbox
        self.not_found = not_found
        self._clock = clock

    async def __call__(self, job: Job) -> Effect | None:
        invoice_id = int(job.payload["invoice"])
        with about_invoice(invoice_id):
            return await self._behind(invoice_id)

    async def _behind(self, invoice_id: int) -> Effect | None:
        invoice = await self.db.read(partial(ledger.get, invoice_id=invoice_id))
        if invoice is None or invoice.state is not InvoiceState.NEEDS_REVIEW:
            return None  # linked or settled by a person meanwhile
        if invoice.format != "pdf" or invoice.uuid is None:
            return None  # not a PDF alone that names its document
        found = await self.db.read(partial(ledger.inspection, invoice_id=invoice_id))
        if found is None or found.get("document") is None:
            return None
        document = Document.model_validate(found["document"])
        if document.country == "MX":
            if sat_service.not_asked(document, invoice.format) is not None:
                return None
            try:
                answer, latency = await self._ask(Authority.SAT, partial(self.sat.status, document))
            except AuthorityRefused as exc:
                return partial(self._refused, invoice=invoice, error=exc, endpoint=self.sat.url)
            return partial(self._sat_said, invoice=invoice, answer=answer, latency=latency)
        if document.country != "CO":
            return None
        return await self._from_dian(invoice, invoice.uuid)

    async def _from_dian(self, invoice: Invoice, cufe: str) -> Effect | None:
        client = self.dian_client(invoice)
        if isinstance(client, str):
            return None  # no certificate to ask with: the PDF waits for a person, as it was
        standing = await self.db.read(
            partial(ledger.standing_with_uuid, uuid=cufe, other_than=invoice.id)
        )
        if standing is not None:
            return None  # its XML came meanwhile: parse-and-check linked it
        try:
            fetched, latency = await self._ask(Authority.DIAN, partial(client.document, cufe))
        except AuthorityRefused as exc:
            return partial(self._refused, invoice=invoice, error=exc, endpoint=client.url)
        if fetched.xml is None:
            return partial(self._not_found, invoice=invoice, answer=fetched.answer, latency=latency)
        path = await anyio.to_thread.run_sync(self._write, invoice, cufe, fetched.xml)
        await self.ingest(path)
        taken_as = path.relative_to(self.inbox).as_posix()
        return partial(
            self._fetched,
            invoice=invoice,
            answer=fetched.answer,
            latency=latency,
            taken_as=taken_as,
        )

    async def _ask(self, authority: Authority, call: Callable[[], Awaitable[T]]) -> tuple[T, float]:
        """`call`'s answer through the authority's circuit, and how long it took. Unavailable
        (the job back, uncounted) when there is none; AuthorityRefused passes through."""
        circuit = self.circuits[authority]
        if not circuit.allow():
            raise Unavailable(authority, "calls stopped for now (circuit open)", circuit.retry_in())
        started = time.monotonic()
        try:
            answer = await call()
        except Unavailable as exc:
            circuit.failed()
            raise Unavailable(
                authority, exc.reason, max(exc.delay, circuit.retry_in() or AGAIN_SOON)
            ) from exc
        except AuthorityRefused:
            await self._answered(authority, circuit)
            raise
        await self._answered(authority, circuit)
        return answer, time.monotonic() - started

    async def _answered(self, authority: Authority, circuit: Circuit) -> None:
        """The authority answered: if that closes its circuit, confirm's invoices waiting in
        FALLBACK are asked now (its sweep), not when their parked jobs come due."""
        if circuit.succeeded():
            log.info("%s answers again", authority.upper())
            await self.confirm.sweep()

    def _write(self, invoice: Invoice, cufe: str, xml: bytes) -> Path:
        """The XML written into the inbox whole, under a name its CUFE gives: asked again
        after a crash, it is the same file."""
        folder = self.inbox / (invoice.company or "") / FETCHED_DIR
        # (A CUFE is hex; anything else it held could not make a path of its own.)
        path = (
            folder / f"dian-{''.join(c for c in cufe.lower() if c.isascii() and c.isalnum())}.xml"
        )
        write_atomically(path, xml)
        return path

    # ── effects: run in the commit that completes the job ────────────────────────────────

    def _note(self, conn: sqlite3.Connection, invoice: Invoice, reason: str) -> None:
        ledger.update(conn, invoice.id, self._clock().timestamp(), reason=reason)

    def _refused(
        self,
        conn: sqlite3.Connection,
        *,
        invoice: Invoice,
        error: AuthorityRefused,
        endpoint: str,
    ) -> None:
        compliance.record_attempt(
            conn,
            invoice.id,
            at=self._clock().timestamp(),
            authority=error.authority,
            endpoint=endpoint,
            source="online",
            outcome=Outcome.REFUSED,
            detail=str(error),
        )
        self._note(conn, invoice, f"{error.authority.upper()} refused the request: {error}")

    def _sat_said(
        self, conn: sqlite3.Connection, *, invoice: Invoice, answer: Answer, latency: float
    ) -> None:
        said = record_answer(
            conn, invoice.id, answer, at=self._clock().timestamp(), latency=latency
        )
        self._note(
            conn,
            invoice,
            f"{said} about the CFDI this PDF names; its XML is still needed (SAT does not give it)",
        )

    def _fetched(
        self,
        conn: sqlite3.Connection,
        *,
        invoice: Invoice,
        answer: Answer,
        latency: float,
        taken_as: str,
    ) -> None:
        record_answer(conn, invoice.id, answer, at=self._clock().timestamp(), latency=latency)
        self._note(conn, invoice, f"its XML fetched from DIAN by its CUFE, taken as {taken_as}")

    def _not_found(
        self, conn: sqlite3.Connection, *, invoice: Invoice, answer: Answer, latency: float
    ) -> None:
        said = record_answer(
            conn, invoice.id, answer, at=self._clock().timestamp(), latency=latency
        )
        reason = f"DIAN does not have the XML of its CUFE: {said}"
        done = compliance.count_attempts(conn, invoice.id, Outcome.NOT_FOUND)
        if done > len(self.not_found):
            self._note(conn, invoice, f"{reason}; {done} times: a person must get the XML")
            return
        step = self.not_found[done - 1]
        due = self._clock() + timedelta(seconds=step)
        self._note(conn, invoice, f"{reason}; asked again {due:%Y-%m-%d %H:%M} UTC")
        self.lifecycle.later(conn, PRINTED, invoice.id, at=due, queue=QueueName.COMPLIANCE_RETRY)
