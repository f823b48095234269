"""The tax authority's word in the ledger: each attempt to get it, the alerts that need a
person, and the seed's compliance figures.

An attempt is one question to an authority (or one reading of the evidence a container
carries): when, whom, where, what came back and how long it took. The attempt that decided an
invoice stays as long as the archive; the notifications issue delivers the alerts (`sent_at`).
Functions taking a `conn` run inside a caller's transaction; those taking the `Database` are
reads for the command line, /health and the reports.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from facturasd.constants import ComplianceStatus, InvoiceState
from facturasd.store.db import Database


class Outcome:
    """What an attempt came to (the `Verdict`s of an answer, and the ways of getting none)."""

    VALID = "valid"
    INVALID = "invalid"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"  # no answer: timeout, 5xx, 429, refused connection
    REFUSED = "refused"  # the authority refused the request itself (a SOAP fault)


@dataclass(frozen=True)
class Attempt:
    at: float
    authority: str
    endpoint: str
    source: str
    outcome: str
    status: str | None
    detail: str | None
    latency: float | None
    fields: dict[str, str]


_ALERT_COLUMNS = "id, at, invoice_id, severity, code, params, status, condition, sent_at"


@dataclass(frozen=True)
class Alert:
    id: int
    at: float
    invoice_id: int | None
    severity: str
    code: str
    params: dict[str, Any]
    status: str = "firing"  # firing | repeat | resolved (conditions: monitoring/alerts)
    condition: str | None = None  # the condition's key; None for an event's alert
    sent_at: float | None = None  # handed to the notification channels

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Alert:
        return cls(
            row["id"],
            row["at"],
            row["invoice_id"],
            row["severity"],
            row["code"],
            json.loads(row["params"]),
            row["status"],
            row["condition"],
            row["sent_at"],
        )


def record_attempt(
    conn: sqlite3.Connection,
    invoice_id: int,
    *,
    at: float,
    authority: str,
    endpoint: str,
    source: str,
    outcome: str,
    status: str | None = None,
    detail: str | None = None,
    latency: float | None = None,
    fields: Mapping[str, str] | None = None,
) -> None:
    conn.execute(
        "INSERT INTO authority_attempts (invoice_id, at, authority, endpoint, source, outcome, "
        "status, detail, latency, fields) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            invoice_id,
            at,
            authority,
            endpoint,
            source,
            outcome,
            status,
            detail,
            latency,
            json.dumps(dict(fields or {}), ensure_ascii=False, sort_keys=True),
        ),
    )


def count_attempts(conn: sqlite3.Connection, invoice_id: int, *outcomes: str) -> int:
    """How many attempts for the invoice came to one of `outcomes`, since a person last
    asked for it again (`facturasd retry` starts the count anew)."""
    marks = ", ".join("?" for _ in outcomes)
    row = conn.execute(
        f"SELECT COUNT(*) FROM authority_attempts WHERE invoice_id = ? AND outcome IN ({marks}) "
        "AND id > (SELECT attempts_from FROM invoices WHERE id = ?)",
        (invoice_id, *outcomes, invoice_id),
    ).fetchone()
    return int(row[0])


def restart_count(conn: sqlite3.Connection, invoice_id: int) -> None:
    """The attempts so far no longer count against the invoice's retries (a person asked)."""
    conn.execute(
        "UPDATE invoices SET attempts_from = "
        "(SELECT COALESCE(MAX(id), 0) FROM authority_attempts WHERE invoice_id = ?) WHERE id = ?",
        (invoice_id, invoice_id),
    )


async def attempts(db: Database, invoice_id: int) -> list[Attempt]:
    rows = await db.fetchall(
        "SELECT at, authority, endpoint, source, outcome, status, detail, latency, fields "
        "FROM authority_attempts WHERE invoice_id = ? ORDER BY id",
        (invoice_id,),
    )
    return [
        Attempt(
            row["at"],
            row["authority"],
            row["endpoint"],
            row["source"],
            row["outcome"],
            row["status"],
            row["detail"],
            row["latency"],
            json.loads(row["fields"] or "{}"),
        )
        for row in rows
    ]


def raise_alert(
    conn: sqlite3.Connection,
    *,
    at: float,
    severity: str,
    code: str,
    invoice_id: int | None = None,
    **params: Any,
) -> None:
    """An alert for a person, stored as data (code and parameters), worded where it is read."""
    conn.execute(
        "INSERT INTO alerts (at, invoice_id, severity, code, params) VALUES (?, ?, ?, ?, ?)",
        (at, invoice_id, severity, code, json.dumps(params, ensure_ascii=False, sort_keys=True)),
    )


async def alerts(db: Database, *, invoice_id: int | None = None) -> list[Alert]:
    rows = await db.fetchall(
        f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE ? IS NULL OR invoice_id = ? ORDER BY id",
        (invoice_id, invoice_id),
    )
    return [Alert.from_row(row) for row in rows]


async def alert(db: Database, alert_id: int) -> Alert | None:
    row = await db.fetchone(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = ?", (alert_id,))
    return Alert.from_row(row) if row else None


async def stats(db: Database) -> dict[str, Any]:
    """The seed's compliance figures for the invoices that go to an authority (checked ones):
    the total, and the count and percentage of each status."""
    rows = await db.fetchall(
        "SELECT compliance, COUNT(*) AS n FROM invoices WHERE state = ? GROUP BY compliance",
        (InvoiceState.CHECKED,),
    )
    counts = {status.value: 0 for status in ComplianceStatus}
    counts.update({row["compliance"]: row["n"] for row in rows})
    total = sum(counts.values())
    return {
        "total": total,
        "by_status": {
            status: {"count": n, "percent": round(100.0 * n / total, 1) if total else 0.0}
            for status, n in counts.items()
        },
    }
