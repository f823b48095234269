"""The compliance ledger: one row per document received, and the history of each.

Every change of state is an event (time, state, who, why) in the append-only `invoice_events`.
Functions taking a `conn` run on the database's thread: inside a caller's write transaction (a
job's completion, an ingest), so a state and its event, or a state and the next stage's job,
commit together; or, for a lookup, through `Database.read`. Functions taking the `Database`
are the reads of the command line and the status page.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from facturasd.constants import ComplianceStatus, InvoiceState
from facturasd.formats.model import Inspection
from facturasd.store.db import Database

SYSTEM = "facturasd"
# States whose UUID no longer counts: a corrected invoice with the same UUID supersedes them.
SUPERSEDABLE = (InvoiceState.REJECTED, InvoiceState.UNREADABLE)
# States whose UUID makes a later document with it a duplicate: an invoice that stands (not
# one waiting to be read, set aside, superseded, or itself a duplicate or a printed copy).
COUNTED = tuple(
    s
    for s in InvoiceState
    if s
    not in (
        *SUPERSEDABLE,
        InvoiceState.RECEIVED,
        InvoiceState.DISCARDED,
        InvoiceState.DUPLICATE,
        InvoiceState.LINKED,
    )
)
# The path of a row whose file left the inbox some other way before it could be archived.
NO_FILE = ""
# How the history of an invoice rebuilt from the archive begins (`rebuild-ledger`).
REBUILT = "rebuilt from "

_SUMMARY = (
    "id, sha256, original_name, inbox_path, member, path, archived, company, state, "
    "compliance, format, uuid, country, kind, number, issuer_tax_id, issuer_name, "
    "receiver_tax_id, issued_at, currency, total, verdict, score, related_to, alegra_bill_id, "
    "received_at, updated_at"
)


@dataclass(frozen=True)
class Invoice:
    id: int
    sha256: str
    original_name: str
    inbox_path: str
    member: str | None
    path: str
    archived: bool
    company: str | None
    state: InvoiceState
    compliance: ComplianceStatus
    format: str | None
    uuid: str | None
    country: str | None
    kind: str | None
    number: str | None
    issuer_tax_id: str | None
    issuer_name: str | None
    receiver_tax_id: str | None
    issued_at: str | None
    currency: str | None
    total: str | None
    verdict: str | None
    score: float | None
    related_to: int | None
    alegra_bill_id: str | None
    received_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Invoice:
        fields = {key: row[key] for key in row.keys() if key in cls.__dataclass_fields__}  # noqa: SIM118
        fields["state"] = InvoiceState(fields["state"])
        fields["compliance"] = ComplianceStatus(fields["compliance"])
        fields["archived"] = bool(fields["archived"])
        return cls(**fields)

    def describe(self) -> str:
        """How a message names this invoice: number, id, file and date of receipt."""
        label = self.number or self.uuid or self.original_name
        return f"#{self.id} {label} ({self.original_name})"


@dataclass(frozen=True)
class Event:
    at: float
    state: str | None
    actor: str
    reason: str
    compliance: str | None = None


def insert(
    conn: sqlite3.Connection,
    *,
    sha256: str,
    original_name: str,
    inbox_path: str,
    path: str,
    state: InvoiceState,
    now: float,
    company: str | None = None,
    member: str | None = None,
    related_to: int | None = None,
    archived: bool = False,
    reason: str,
) -> Invoice:
    rows = conn.execute(
        "INSERT INTO invoices (sha256, original_name, inbox_path, member, path, archived, "
        "company, state, compliance, related_to, received_at, updated_at) "
        f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_SUMMARY}",
        (
            sha256,
            original_name,
            inbox_path,
            member,
            path,
            int(archived),
            company,
            state,
            ComplianceStatus.PENDING,
            related_to,
            now,
            now,
        ),
    ).fetchall()
    invoice = Invoice.from_row(rows[0])
    event(conn, invoice.id, now, state, SYSTEM, reason)
    return invoice


def event(
    conn: sqlite3.Connection,
    invoice_id: int,
    now: float,
    state: InvoiceState | None,
    actor: str,
    reason: str,
    compliance: ComplianceStatus | None = None,
) -> None:
    conn.execute(
        "INSERT INTO invoice_events (invoice_id, at, state, actor, reason, compliance) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (invoice_id, now, state, actor, reason, compliance),
    )


def update(
    conn: sqlite3.Connection,
    invoice_id: int,
    now: float,
    *,
    actor: str = SYSTEM,
    reason: str,
    state: InvoiceState | None = None,
    expect: InvoiceState | None = None,
    compliance: ComplianceStatus | None = None,
    expect_compliance: ComplianceStatus | None = None,
    **columns: Any,
) -> bool:
    """Set `columns` (and `state`, `compliance`), and record why as an event. With `expect`
    (`expect_compliance`), only if the invoice is still in that state (compliance status):
    someone else may have acted on it meanwhile. Returns whether it was."""
    if state is not None:
        columns["state"] = state
    if compliance is not None:
        columns["compliance"] = compliance
    columns["updated_at"] = now
    assignments = ", ".join(f"{name} = ?" for name in columns)
    condition: str = "id = ?"
    params: list[object] = [invoice_id]
    if expect is not None:
        condition += " AND state = ?"
        params.append(str(expect))
    if expect_compliance is not None:
        condition += " AND compliance = ?"
        params.append(str(expect_compliance))
    cursor = conn.execute(
        f"UPDATE invoices SET {assignments} WHERE {condition}", (*columns.values(), *params)
    )
    if cursor.rowcount != 1:
        return False
    event(conn, invoice_id, now, state, actor, reason, compliance)
    return True


_DOCUMENT = (
    "format, uuid, country, kind, number, issuer_tax_id, issuer_name, receiver_tax_id, "
    "issued_at, currency, total"
)


def copy_document(conn: sqlite3.Connection, source: int, dest: int) -> None:
    """What `source` says of its document, onto `dest` (a copy of the same bytes)."""
    conn.execute(
        f"UPDATE invoices SET ({_DOCUMENT}) = (SELECT {_DOCUMENT} FROM invoices WHERE id = ?) "
        "WHERE id = ?",
        (source, dest),
    )


def inspected_columns(inspection: Inspection) -> dict[str, Any]:
    """The ledger's columns for what the formats layer and the checks made of a document."""
    doc = inspection.document
    columns: dict[str, Any] = {
        "format": inspection.format,
        "verdict": inspection.verdict,
        "score": inspection.score,
        "inspection": inspection.model_dump_json(),
        "member": inspection.member,
    }
    if doc is not None:
        columns.update(
            uuid=doc.uuid,
            country=doc.country,
            kind=doc.kind,
            number=doc.number,
            issuer_tax_id=doc.issuer.tax_id,
            issuer_name=doc.issuer.name,
            receiver_tax_id=doc.receiver.tax_id,
            issued_at=doc.issued_at,
            currency=doc.currency,
            total=doc.totals.total,
        )
    return columns


def _one(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> Invoice | None:
    row = conn.execute(sql, params).fetchone()
    return Invoice.from_row(row) if row else None


def get(conn: sqlite3.Connection, invoice_id: int) -> Invoice | None:
    return _one(conn, f"SELECT {_SUMMARY} FROM invoices WHERE id = ?", (invoice_id,))


async def unarchived(db: Database) -> list[Invoice]:
    """Files whose move out of the inbox did not finish (a crash in between)."""
    rows = await db.fetchall(f"SELECT {_SUMMARY} FROM invoices WHERE archived = 0")
    return [Invoice.from_row(row) for row in rows]


def with_bytes(
    conn: sqlite3.Connection, sha256: str, inbox_path: str
) -> tuple[Invoice | None, bool]:
    """(invoice, pending): this very file, recorded but not yet moved out of the inbox
    (pending); else the earliest file received with these bytes (the first row of a file: a
    ZIP of several documents has more) whose file is in the archive folders; else None."""
    row = conn.execute(
        f"SELECT {_SUMMARY}, (archived = 0 AND inbox_path = ?) AS pending FROM invoices "
        "WHERE sha256 = ? AND path != ? ORDER BY pending DESC, id LIMIT 1",
        (inbox_path, sha256, NO_FILE),
    ).fetchone()
    return (Invoice.from_row(row), bool(row["pending"])) if row else (None, False)


def standing_with_uuid(conn: sqlite3.Connection, uuid: str, *, other_than: int) -> Invoice | None:
    """The earliest standing invoice (an XML, not a PDF alone; a state in COUNTED) with this
    UUID, other than `other_than`."""
    placeholders = ", ".join("?" for _ in COUNTED)
    return _one(
        conn,
        f"SELECT {_SUMMARY} FROM invoices WHERE uuid = ? AND id != ? AND format != 'pdf' "
        f"AND state IN ({placeholders}) ORDER BY id LIMIT 1",
        (uuid, other_than, *COUNTED),
    )


def with_uuid(
    conn: sqlite3.Connection, uuid: str, *, other_than: int, states: Sequence[InvoiceState]
) -> list[Invoice]:
    placeholders = ", ".join("?" for _ in states)
    rows = conn.execute(
        f"SELECT {_SUMMARY} FROM invoices WHERE uuid = ? AND id != ? "
        f"AND state IN ({placeholders}) ORDER BY id",
        (uuid, other_than, *states),
    ).fetchall()
    return [Invoice.from_row(row) for row in rows]


async def events(db: Database, invoice_id: int) -> list[Event]:
    rows = await db.fetchall(
        "SELECT at, state, actor, reason, compliance FROM invoice_events "
        "WHERE invoice_id = ? ORDER BY id",
        (invoice_id,),
    )
    return [
        Event(row["at"], row["state"], row["actor"], row["reason"], row["compliance"])
        for row in rows
    ]


def rebuilt(conn: sqlite3.Connection, invoice_id: int) -> bool:
    """Whether the invoice's history says the ledger was rebuilt (what it did before is
    unknown: a bill may exist)."""
    row = conn.execute(
        "SELECT 1 FROM invoice_events WHERE invoice_id = ? AND substr(reason, 1, ?) = ? LIMIT 1",
        (invoice_id, len(REBUILT), REBUILT),
    ).fetchone()
    return row is not None


def printed_copies(conn: sqlite3.Connection, invoice_id: int) -> list[Invoice]:
    """The PDFs alone linked to the invoice as its printed copy."""
    rows = conn.execute(
        f"SELECT {_SUMMARY} FROM invoices WHERE related_to = ? AND state = ? ORDER BY id",
        (invoice_id, InvoiceState.LINKED),
    ).fetchall()
    return [Invoice.from_row(row) for row in rows]


def inspection(conn: sqlite3.Connection, invoice_id: int) -> dict[str, Any] | None:
    """What the formats layer and the checks made of the invoice's document, as stored."""
    row = conn.execute("SELECT inspection FROM invoices WHERE id = ?", (invoice_id,)).fetchone()
    if row is None or row["inspection"] is None:
        return None
    found: dict[str, Any] = json.loads(row["inspection"])
    return found


@dataclass(frozen=True)
class Filter:
    """Which invoices a listing shows: each condition given narrows it."""

    states: Sequence[str] = ()
    compliance: Sequence[str] = ()
    since: float | None = None  # received at or after
    issued_since: str | None = None  # an ISO date: issued on or after
    company: str | None = None

    def sql(self) -> tuple[str, list[object]]:
        """The WHERE condition and its parameters."""
        conditions: list[str] = ["1 = 1"]
        params: list[object] = []
        if self.states:
            conditions.append(f"state IN ({', '.join('?' for _ in self.states)})")
            params += list(self.states)
        if self.compliance:
            conditions.append(f"compliance IN ({', '.join('?' for _ in self.compliance)})")
            params += list(self.compliance)
        if self.since is not None:
            conditions.append("received_at >= ?")
            params.append(self.since)
        if self.issued_since is not None:
            conditions.append("issued_at >= ?")
            params.append(self.issued_since)
        if self.company is not None:
            conditions.append("company = ?")
            params.append(self.company)
        return " AND ".join(conditions), params


async def search(db: Database, matching: Filter, *, limit: int | None = None) -> list[Invoice]:
    """The invoices that match, newest first (the order of the queue's `find`)."""
    condition, params = matching.sql()
    rows = await db.fetchall(
        f"SELECT {_SUMMARY} FROM invoices WHERE {condition} ORDER BY id DESC LIMIT ?",
        [*params, -1 if limit is None else limit],
    )
    return [Invoice.from_row(row) for row in rows]


async def count(db: Database, matching: Filter) -> int:
    """How many invoices `search` would give without a limit."""
    condition, params = matching.sql()
    row = await db.fetchone(f"SELECT COUNT(*) AS n FROM invoices WHERE {condition}", params)
    assert row is not None  # a COUNT always has its row
    return int(row["n"])
