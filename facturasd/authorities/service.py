"""The authorities as the daemon runs them: one HTTP client per authority, the companies' DIAN
certificates, a circuit per authority, the confirm and printed stages, and their /health
checks."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import anyio

from facturasd.authorities import Authority, dian, sat
from facturasd.authorities.circuit import Circuit, CircuitState
from facturasd.authorities.confirm import FALLBACK_DIR, Confirm, Route, Schedules
from facturasd.authorities.printed import PrintedCopy
from facturasd.authorities.wssecurity import Credentials
from facturasd.clock import Clock
from facturasd.config import Config
from facturasd.constants import ComplianceStatus
from facturasd.errors import FacturasdError
from facturasd.formats.model import Document
from facturasd.monitoring.health import Item, ProbeFn, Status
from facturasd.monitoring.metrics import Metrics
from facturasd.pipeline.lifecycle import ASKED, Lifecycle
from facturasd.store.compliance import Outcome
from facturasd.store.db import Database
from facturasd.store.ledger import Invoice

log = logging.getLogger(__name__)

# A certificate this close to its end is a warning in /health.
EXPIRY_WARNING = timedelta(days=30)
# /health's window for an authority's failure rate, and the rate that warns.
FAILURE_WINDOW = 3600.0
FAILURE_WARN = 0.5


@dataclass(frozen=True)
class Signing:
    """A DIAN certificate as configured for one company (or for all: key None): loaded, or
    why it cannot be loaded."""

    credentials: Credentials | None
    problem: str | None


@dataclass(frozen=True)
class Authorities:
    confirm: Confirm
    printed: PrintedCopy
    circuits: dict[Authority, Circuit]
    signing: dict[str | None, Signing]


@asynccontextmanager
async def open_authorities(
    config: Config,
    db: Database,
    lifecycle: Lifecycle,
    *,
    ingest: Callable[[Path], Awaitable[None]],
    clock: Clock,
    metrics: Metrics,
) -> AsyncIterator[Authorities]:
    """The authorities' clients, circuits and stages; `ingest` takes a file of the inbox (the
    XML DIAN gives for a PDF alone)."""
    settings = config.authorities
    retry = config.retry
    async with AsyncExitStack() as stack:
        sat_http = await stack.enter_async_context(
            metrics.client(Authority.SAT, timeout=settings.sat.timeout)
        )
        dian_http = await stack.enter_async_context(
            metrics.client(Authority.DIAN, timeout=settings.dian.timeout)
        )
        signing = await anyio.to_thread.run_sync(load_certificates, config)
        for found in signing.values():
            if problem := found.problem or _expired(found.credentials, clock()):
                log.warning("%s", problem)
        sat_client = sat.SatClient(sat_http, settings.sat.url)
        dian_clients = {
            company: dian.DianClient(dian_http, settings.dian.url, found.credentials, clock=clock)
            for company, found in signing.items()
            if found.credentials is not None
        }

        def dian_client(invoice: Invoice) -> dian.DianClient | str:
            """The DIAN client of the invoice's company (or of all), or why there is none."""
            key = invoice.company if invoice.company in signing else None
            client = dian_clients.get(key)
            if client is not None:
                return _expired(client.credentials, clock()) or client
            problem = signing[key].problem if key in signing else None
            return (
                problem
                or "no DIAN evidence in the file, and no certificate configured to ask "
                "DIAN (authorities.dian.certificate_file)"
            )

        def route(invoice: Invoice, document: Document) -> Route:
            if document.country == "MX":
                if reason := sat.not_asked(document, invoice.format):
                    return Route(Authority.SAT, waits=reason)
                return Route(
                    Authority.SAT, ask=partial(sat_client.status, document), endpoint=sat_client.url
                )
            if not settings.dian.verify_online and (found := dian.evidence(document)):
                return Route(Authority.DIAN, embedded=found)
            client = dian_client(invoice)
            if isinstance(client, str):
                return Route(Authority.DIAN, waits=client)
            assert document.uuid is not None  # (a DIAN document without a CUFE is rejected)
            return Route(
                Authority.DIAN, ask=partial(client.status, document.uuid), endpoint=client.url
            )

        circuits = {
            authority: Circuit(cooldown=retry.interval, clock=clock) for authority in Authority
        }
        schedules = Schedules(
            refused=tuple(retry.schedule),
            max_retries=retry.max_retries,
            not_found=tuple(retry.not_found_schedule),
        )
        confirm = Confirm(
            db,
            lifecycle,
            route,
            circuits,
            schedules,
            fallback_dir=config.paths.state_dir / FALLBACK_DIR,
            clock=clock,
        )
        printed = PrintedCopy(
            db,
            lifecycle,
            confirm,
            sat=sat_client,
            dian_client=dian_client,
            circuits=circuits,
            ingest=ingest,
            inbox=config.paths.inbox,
            not_found=schedules.not_found,
            clock=clock,
        )
        yield Authorities(confirm, printed, circuits, signing)


def load_certificates(config: Config) -> dict[str | None, Signing]:
    """The DIAN certificates configured: the global one (key None) and the companies'."""
    dian_settings = config.authorities.dian
    found: dict[str | None, Signing] = {}
    for company, configured in [(None, dian_settings), *dian_settings.companies.items()]:
        if configured.certificate_file is None:
            continue
        where = f"authorities.dian{f'.companies.{company}' if company else ''}"
        if configured.certificate_password_file is None:
            found[company] = Signing(None, f"{where}.certificate_password_file is not set")
            continue
        try:
            credentials = Credentials.load(
                configured.certificate_file, configured.certificate_password_file
            )
        except (OSError, FacturasdError, ValueError) as exc:
            found[company] = Signing(None, f"{where}: the DIAN certificate cannot be used: {exc}")
            continue
        found[company] = Signing(credentials, None)
    return found


def _expired(credentials: Credentials | None, now: datetime) -> str | None:
    """Why DIAN is not asked with `credentials` now, if it has expired."""
    if credentials is None or credentials.not_after > now:
        return None
    return (
        f"the DIAN certificate expired on {credentials.not_after:%Y-%m-%d}: DIAN is not asked "
        "until it is renewed"
    )


def probe(authority: Authority, authorities: Authorities, db: Database, *, clock: Clock) -> ProbeFn:
    """`authorities:<name>`: its circuit, its last answer, its failure rate over the last
    hour, the invoices waiting for a person, and (DIAN) the certificates' expiry. An authority
    that does not answer is a warning, never a failure: the daemon's own work goes on."""
    circuit = authorities.circuits[authority]

    def figures(conn: sqlite3.Connection, since: float) -> tuple[int, int, float | None, int]:
        failed, total, last = conn.execute(
            "SELECT SUM(outcome IN (?, ?)), COUNT(*), (SELECT MAX(at) FROM authority_attempts "
            "WHERE authority = ? AND outcome NOT IN (?, ?)) "
            "FROM authority_attempts WHERE authority = ? AND at >= ? AND source = 'online'",
            (
                Outcome.UNAVAILABLE,
                Outcome.REFUSED,
                authority,
                Outcome.UNAVAILABLE,
                Outcome.REFUSED,
                authority,
                since,
            ),
        ).fetchone()
        states = ", ".join("?" for _ in ASKED)
        (waiting,) = conn.execute(
            f"SELECT COUNT(*) FROM invoices WHERE state IN ({states}) AND compliance = ? "
            "AND country = ? AND NOT EXISTS (SELECT 1 FROM jobs "
            "WHERE dedupe_key = 'confirm:' || invoices.id AND state IN ('queued', 'running'))",
            (*ASKED, ComplianceStatus.PENDING, authority.country),
        ).fetchone()
        return int(failed or 0), int(total), last, int(waiting)

    async def check(now_iso: str) -> list[Item]:
        now = clock()
        failed, total, last, waiting = await db.read(
            partial(figures, since=now.timestamp() - FAILURE_WINDOW)
        )
        rate = failed / total if total else 0.0
        status: Status = "pass"
        notes: list[str] = []
        if circuit.state is not CircuitState.CLOSED:
            status = "warn"
            notes.append(f"circuit {circuit.state.value}: no answer to the last calls")
        if total >= 3 and rate >= FAILURE_WARN:
            status = "warn"
            notes.append(f"{rate:.0%} of the calls of the last hour got no answer")
        if waiting:
            status = "warn"
            notes.append(f"{waiting} invoice(s) not asked: they wait for a person")
        if authority is Authority.DIAN:
            for company, signing in authorities.signing.items():
                if problem := signing.problem or _expired(signing.credentials, now):
                    status = "warn"
                    notes.append(problem)
                elif signing.credentials and signing.credentials.not_after - now < EXPIRY_WARNING:
                    status = "warn"
                    who = f" ({company})" if company else ""
                    notes.append(
                        f"the DIAN certificate{who} expires on "
                        f"{signing.credentials.not_after:%Y-%m-%d}"
                    )
        item: Item = {
            "status": status,
            "time": now_iso,
            "observedValue": round(rate, 3),
            "observedUnit": "failure rate, last hour",
            "circuit": circuit.state.value,
            "lastSuccess": datetime.fromtimestamp(last, now.tzinfo).isoformat() if last else None,
            "waitingForAPerson": waiting,
        }
        if notes:
            item["output"] = "; ".join(notes)
        return [item]

    return check
