"""The booking's own record of each invoice: the intent written before a bill is posted, how
the last try ended, and the files attached. Plain functions of a connection, run inside the
caller's transaction (the ledger's state and the bill id go through the lifecycle)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    POSTING = "posting"  # the intent: a bill is about to be posted (or was, if a crash came)
    MAYBE = "maybe"  # Alegra said a bill may exist (3051): look it up, never post again
    BOOKED = "booked"
    REFUSED = "refused"  # Alegra refused the bill for its content: nothing was created
    UNDECIDED = "undecided"  # looked up after a crash and not found with certainty
    NOT_BOOKED = "not_booked"  # no supplier bill (a payment, payroll, an own sale)


@dataclass(frozen=True)
class Record:
    invoice_id: int
    account: str  # the Alegra user
    intent_at: float | None
    booked_at: float | None
    attached: int  # how many of the invoice's files are attached, in order
    outcome: Outcome | None
    detail: str | None

    @property
    def open(self) -> bool:
        """A bill may have been posted and not recorded: look it up before posting."""
        return self.intent_at is not None and self.outcome in (
            Outcome.POSTING,
            Outcome.MAYBE,
            Outcome.UNDECIDED,
        )


def get(conn: sqlite3.Connection, invoice_id: int) -> Record | None:
    row = conn.execute(
        "SELECT invoice_id, account, intent_at, booked_at, attached, outcome, detail "
        "FROM bookings WHERE invoice_id = ?",
        (invoice_id,),
    ).fetchone()
    if row is None:
        return None
    return Record(
        row["invoice_id"],
        row["account"],
        row["intent_at"],
        row["booked_at"],
        row["attached"],
        Outcome(row["outcome"]) if row["outcome"] else None,
        row["detail"],
    )


def record(
    conn: sqlite3.Connection,
    invoice_id: int,
    *,
    account: str,
    outcome: Outcome,
    at: float,
    detail: str | None = None,
) -> None:
    """How the booking stands now. POSTING (re)writes the intent's time; REFUSED clears it
    (Alegra created nothing); BOOKED records when."""
    keep_intent = outcome not in (Outcome.POSTING, Outcome.REFUSED)
    conn.execute(
        "INSERT INTO bookings (invoice_id, account, intent_at, booked_at, outcome, detail) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (invoice_id) DO UPDATE SET "
        "account = excluded.account, "
        "intent_at = CASE WHEN ? THEN bookings.intent_at ELSE excluded.intent_at END, "
        "booked_at = excluded.booked_at, outcome = excluded.outcome, detail = excluded.detail",
        (
            invoice_id,
            account,
            at if outcome is Outcome.POSTING else None,
            at if outcome is Outcome.BOOKED else None,
            outcome,
            detail,
            keep_intent,
        ),
    )


def attached(conn: sqlite3.Connection, invoice_id: int, count: int) -> None:
    conn.execute("UPDATE bookings SET attached = ? WHERE invoice_id = ?", (count, invoice_id))


def known_bills(conn: sqlite3.Connection, account: str, before: float) -> set[str]:
    """The bills this Alegra user booked for us before `before` (the newest few hundred): a
    look-up that meets one of them is past the time of the intent it looks for."""
    rows = conn.execute(
        "SELECT invoices.alegra_bill_id FROM bookings JOIN invoices ON invoices.id = "
        "bookings.invoice_id WHERE bookings.account = ? AND bookings.booked_at < ? "
        "AND invoices.alegra_bill_id IS NOT NULL ORDER BY bookings.booked_at DESC LIMIT 500",
        (account, before),
    ).fetchall()
    return {row[0] for row in rows}
