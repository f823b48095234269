"""The seed's performance figures, computed from the ledger over a window of time: throughput
(invoices received per minute), the average time each stage took, and the error rate of each
component (a queue's jobs, an authority's online answers).

Everything is read from what the stages already record (invoices and their events, jobs,
authority attempts), so the figures survive a restart, and a past window can be asked again
(the queues' figures as long as the cleanup keeps its finished jobs: a week).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from facturasd.constants import ComplianceStatus, InvoiceState
from facturasd.store.compliance import Outcome
from facturasd.store.db import Database

# Per invoice received in the window: when each stage first finished. A reprocessed invoice
# is checked again later; its first pass is the one the office waited for.
_STAGES = """
    SELECT i.received_at AS received,
           MIN(CASE WHEN e.state = :checked THEN e.at END) AS checked,
           MIN(CASE WHEN e.compliance = :validated THEN e.at END) AS validated,
           MIN(CASE WHEN e.state = :booked THEN e.at END) AS booked
    FROM invoices i JOIN invoice_events e ON e.invoice_id = i.id
    WHERE i.received_at >= :since AND i.received_at < :until
    GROUP BY i.id
"""


def _figures(conn: sqlite3.Connection, since: float, until: float) -> dict[str, Any]:
    window = {"since": since, "until": until}
    (received,) = conn.execute(
        "SELECT COUNT(*) FROM invoices WHERE received_at >= :since AND received_at < :until",
        window,
    ).fetchone()
    latency = conn.execute(
        f"""
        WITH stages AS ({_STAGES})
        SELECT AVG(checked - received) AS checked, COUNT(checked) AS checked_n,
               AVG(CASE WHEN validated >= checked THEN validated - checked END) AS validated,
               COUNT(CASE WHEN validated >= checked THEN 1 END) AS validated_n,
               AVG(booked - COALESCE(validated, checked)) AS booked, COUNT(booked) AS booked_n
        FROM stages
        """,
        {
            **window,
            "checked": InvoiceState.CHECKED,
            "validated": ComplianceStatus.VALIDATED,
            "booked": InvoiceState.BOOKED,
        },
    ).fetchone()
    # A job's attempts that did not end it done failed (a job handed back because its
    # upstream gave no answer was not counted as an attempt).
    queues = conn.execute(
        "SELECT queue, COUNT(*) AS jobs, SUM(attempts) AS attempts, "
        "SUM(attempts) - SUM(state = 'done') AS failures, SUM(state = 'dead') AS dead "
        "FROM jobs WHERE finished_at >= :since AND finished_at < :until "
        "GROUP BY queue ORDER BY queue",
        window,
    ).fetchall()
    authorities = conn.execute(
        "SELECT authority, COUNT(*) AS attempts, SUM(outcome IN (?, ?)) AS failures "
        "FROM authority_attempts WHERE source = 'online' AND at >= ? AND at < ? "
        "GROUP BY authority ORDER BY authority",
        (Outcome.UNAVAILABLE, Outcome.REFUSED, since, until),
    ).fetchall()
    errors: dict[str, dict[str, Any]] = {}
    for row in queues:
        errors[f"queue:{row['queue']}"] = {
            "attempts": row["attempts"],
            "failures": row["failures"],
            "rate": _rate(row["failures"], row["attempts"]),
            "jobs": row["jobs"],
            "dead": row["dead"],
        }
    for row in authorities:
        errors[f"authority:{row['authority']}"] = {
            "attempts": row["attempts"],
            "failures": row["failures"],
            "rate": _rate(row["failures"], row["attempts"]),
        }
    minutes = max(until - since, 0.0) / 60
    return {
        "since": since,
        "until": until,
        "received": received,
        "throughput_per_minute": round(received / minutes, 3) if minutes else 0.0,
        "latency_seconds": {
            stage: {
                "average": None if latency[stage] is None else round(latency[stage], 3),
                "invoices": latency[f"{stage}_n"],
            }
            for stage in ("checked", "validated", "booked")
        },
        "error_rate": errors,
    }


def _rate(failures: int, attempts: int) -> float:
    return round(failures / attempts, 4) if attempts else 0.0


async def figures(db: Database, *, since: float, until: float) -> dict[str, Any]:
    """The figures of [since, until) (timestamps): `received` and `throughput_per_minute` of
    the invoices received; `latency_seconds` of each stage for those invoices (`checked`: from
    receipt; `validated`: from checked to the tax authority's confirmation; `booked`: from
    the confirmation, or from checked when it was booked unconfirmed, to the bill in Alegra),
    each {"average": seconds or None, "invoices": how many}; `error_rate` by component
    ("queue:<name>" for the jobs that finished in the window, "authority:sat|dian" for the
    online questions asked in it), each {"attempts", "failures", "rate" (0..1)}."""
    return await db.read(lambda conn: _figures(conn, since, until))
