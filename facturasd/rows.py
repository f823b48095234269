"""The ledger's records as JSON rows, as the CLI's --json and the HTTP API give them: times in
the daemon's zone, findings worded in the reader's language."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, tzinfo
from functools import partial
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from facturasd.findings import Finding, Language, shown

if TYPE_CHECKING:  # (the CLI imports this at start, the store only when a command needs it)
    from facturasd.store.compliance import Alert, Attempt
    from facturasd.store.db import Database
    from facturasd.store.ledger import Invoice


def local(timestamp: float, zone: tzinfo) -> str:
    return datetime.fromtimestamp(timestamp, zone).isoformat(timespec="seconds")


def invoice_row(invoice: Invoice, zone: ZoneInfo) -> dict[str, Any]:
    row = asdict(invoice)
    row["state"] = str(invoice.state)
    row["received_at"] = local(invoice.received_at, zone)
    row["updated_at"] = local(invoice.updated_at, zone)
    return row


def attempt_row(attempt: Attempt, zone: ZoneInfo) -> dict[str, Any]:
    row = asdict(attempt)
    row["at"] = local(attempt.at, zone)
    del row["latency"]
    row["latency_ms"] = None if attempt.latency is None else round(attempt.latency * 1000)
    return row


def inspection(
    stored: dict[str, Any] | None, lang: Language, country: str | None
) -> dict[str, Any] | None:
    """The ledger's inspection of an invoice, its findings' messages rendered in `lang`, amounts
    as `country` writes them. Kept as the stored JSON, not read into today's Inspection: a row
    an earlier version wrote need not fit it."""
    if stored is None:
        return None
    findings = [shown(Finding.model_validate(f), lang, country) for f in stored.get("findings", [])]
    return {**stored, "findings": findings}


def alert_row(alert: Alert, zone: ZoneInfo, lang: Language) -> dict[str, Any]:
    """An alert with its subject and message worded in `lang`."""
    from facturasd.monitoring.alert_words import describe

    said = describe(alert, lang)
    return {
        "id": alert.id,
        "at": local(alert.at, zone),
        "severity": alert.severity,
        "code": alert.code,
        "status": alert.status,
        "condition": alert.condition,
        "invoice_id": alert.invoice_id,
        "params": alert.params,
        "subject": said.subject,
        "message": said.text,
        "sent_at": None if alert.sent_at is None else local(alert.sent_at, zone),
    }


async def invoice_detail(
    db: Database, invoice_id: int, zone: ZoneInfo, lang: Language
) -> dict[str, Any] | None:
    """One invoice whole, as `invoices show --json` and GET /api/v1/invoices/{id} give it: its
    row, `history`, `attempts` (the tax authority), `alerts`, `inspection` (the document and
    its findings in `lang`) and `booking` (the Alegra bill's record, or None). None if there
    is no such invoice."""
    from facturasd.store import bookings, compliance, ledger

    found = await db.read(partial(ledger.get, invoice_id=invoice_id))
    if found is None:
        return None
    booking = await db.read(partial(bookings.get, invoice_id=invoice_id))
    return {
        **invoice_row(found, zone),
        "history": [
            {**asdict(e), "at": local(e.at, zone)} for e in await ledger.events(db, invoice_id)
        ],
        "attempts": [attempt_row(a, zone) for a in await compliance.attempts(db, invoice_id)],
        "alerts": [
            alert_row(a, zone, lang) for a in await compliance.alerts(db, invoice_id=invoice_id)
        ],
        "inspection": inspection(
            await db.read(partial(ledger.inspection, invoice_id=invoice_id)), lang, found.country
        ),
        "booking": None
        if booking is None
        else {
            **asdict(booking),
            "intent_at": booking.intent_at and local(booking.intent_at, zone),
            "booked_at": booking.booked_at and local(booking.booked_at, zone),
        },
    }
