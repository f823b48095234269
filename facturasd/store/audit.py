"""The audit trail: each action a person or a system took on the ledger or the queue through
the CLI or the HTTP API. `record` runs inside the action's own write transaction, so an action
is never done without its row, nor recorded without being done."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any, Literal

from facturasd.store.db import Database

Via = Literal["api", "cli"]


@dataclass(frozen=True)
class Who:
    """Who acts, and by which way: the OS user on the CLI, a token's name on the API."""

    actor: str
    via: Via


@dataclass(frozen=True)
class Entry:
    id: int
    at: float
    actor: str
    via: Via
    action: str  # reprocess, assign, accept, discard, retry, bill, requeue
    target: str  # "invoice/12", "job/7"
    reason: str
    detail: dict[str, Any]


def record(
    conn: sqlite3.Connection,
    who: Who,
    *,
    at: float,
    action: str,
    target: str,
    reason: str,
    **detail: Any,
) -> None:
    conn.execute(
        "INSERT INTO audit (at, actor, via, action, target, reason, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            at,
            who.actor,
            who.via,
            action,
            target,
            reason,
            json.dumps(detail, ensure_ascii=False, sort_keys=True),
        ),
    )


async def entries(db: Database, *, since: float | None = None) -> list[Entry]:
    """The rows at or after `since` (all without it), newest first."""
    rows = await db.fetchall(
        "SELECT id, at, actor, via, action, target, reason, detail FROM audit "
        "WHERE ? IS NULL OR at >= ? ORDER BY id DESC",
        (since, since),
    )
    return [
        Entry(
            row["id"],
            row["at"],
            row["actor"],
            row["via"],
            row["action"],
            row["target"],
            row["reason"],
            json.loads(row["detail"]),
        )
        for row in rows
    ]
