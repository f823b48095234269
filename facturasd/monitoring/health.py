"""GET /health: the daemon's state as application/health+json.

Each check is pass, warn or fail; the status is the worst of them (HTTP 503 on fail) and the
score is their weighted mean (pass 1, warn 0.5, fail 0). Weights and thresholds are below and
in docs/health.md. Nothing here carries a secret or a person's data: errors are reduced to
their type or to SQLite's own message.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import anyio

from facturasd import __version__
from facturasd.clock import Clock, utcnow
from facturasd.store.db import Database
from facturasd.store.queue import Queue

Status = Literal["pass", "warn", "fail"]
_RANK: dict[Status, int] = {"pass": 0, "warn": 1, "fail": 2}
_POINTS: dict[Status, float] = {"pass": 1.0, "warn": 0.5, "fail": 0.0}

WEIGHTS = {
    "database": 0.30,
    "workers": 0.20,
    "queues": 0.15,
    "supervisor": 0.15,
    "disk": 0.10,
    "inbox": 0.10,
}
DB_PROBE_TIMEOUT = 3.0
DB_SLOW_MS = 500.0
QUEUE_OLDEST_WARN = 900.0
DISK_WARN_BYTES = 1 << 30
DISK_FAIL_BYTES = 100 << 20


class Pool(Protocol):
    concurrency: int
    alive: int
    busy: int


class InboxView(Protocol):
    @property
    def blocked(self) -> Mapping[Path, str]:
        """Files that do not open for reading (path → why): they stay in the inbox."""

    @property
    def rescans(self) -> int:
        """Full scans of the inbox done."""

    @property
    def waiting(self) -> int:
        """Files seen and waiting to hold still."""

    @property
    def taking(self) -> int:
        """Files handed on and not yet taken."""


@dataclass(frozen=True)
class ComponentView:
    name: str
    state: str
    restarts: int
    last_error: str | None


class Components(Protocol):
    def views(self) -> Sequence[ComponentView]: ...


def worst(statuses: Sequence[Status]) -> Status:
    return max(statuses, key=_RANK.__getitem__, default="pass")


class HealthChecker:
    def __init__(
        self,
        db: Database,
        queue: Queue,
        pool: Pool,
        components: Components,
        *,
        queues: Sequence[str],
        state_dir: Path,
        backlog_warn: int,
        inbox: InboxView | None = None,
        clock: Clock = utcnow,
    ):
        self.db = db
        self.queue = queue
        self.pool = pool
        self.components = components
        self.queues = list(queues)
        self.state_dir = state_dir
        self.backlog_warn = backlog_warn
        self.inbox = inbox
        self._clock = clock

    async def report(self) -> dict[str, Any]:
        now = self._clock().isoformat()
        checks: dict[str, list[dict[str, Any]]] = {
            "database:write": [await self._database(now)],
            "workers:alive": [],
            "queues:depth": await self._queues(now),
            "supervisor:components": self._supervisor(now),
            "disk:free": [await self._disk(now)],
            "inbox:unreadable": [self._inbox(now)],
        }
        ready = sum(item["observedValue"] for item in checks["queues:depth"])
        checks["workers:alive"].append(self._workers(now, ready))
        by_group: dict[str, Status] = {
            group: worst(
                [
                    item["status"]
                    for key, items in checks.items()
                    if key.startswith(group)
                    for item in items
                ]
            )
            for group in WEIGHTS
        }
        score = sum(WEIGHTS[g] * _POINTS[s] for g, s in by_group.items())
        return {
            "status": worst(list(by_group.values())),
            "score": round(score, 3),
            "version": __version__,
            "serviceId": "facturasd",
            "description": "facturasd: received e-invoices checked, confirmed and booked",
            "checks": checks,
        }

    async def _database(self, now: str) -> dict[str, Any]:
        def probe(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO kv (key, value, updated_at) VALUES ('health.probe', ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (now, time.time()),
            )

        entry: dict[str, Any] = {"componentType": "datastore", "time": now}
        started = time.perf_counter()
        try:
            with anyio.fail_after(DB_PROBE_TIMEOUT):
                await self.db.write(probe)
        except TimeoutError:
            return {
                **entry,
                "status": "fail",
                "output": f"a write did not commit within {DB_PROBE_TIMEOUT:g}s",
            }
        except Exception as exc:  # any failure to write is the finding itself
            return {**entry, "status": "fail", "output": f"cannot write: {exc}"}
        millis = (time.perf_counter() - started) * 1000
        status: Status = "warn" if millis > DB_SLOW_MS else "pass"
        return {**entry, "status": status, "observedValue": round(millis, 2), "observedUnit": "ms"}

    async def _queues(self, now: str) -> list[dict[str, Any]]:
        items = []
        for stats in await self.queue.stats(self.queues):
            status: Status = "pass"
            if stats.ready > self.backlog_warn or stats.oldest_ready_age > QUEUE_OLDEST_WARN:
                status = "warn"
            if stats.counts.get("dead", 0):
                status = "warn"
            items.append(
                {
                    "componentId": stats.name,
                    "componentType": "component",
                    "status": status,
                    "observedValue": stats.ready,
                    "observedUnit": "jobs ready",
                    "oldestAgeSeconds": round(stats.oldest_ready_age, 1),
                    "counts": stats.counts,
                    "time": now,
                }
            )
        return items

    def _workers(self, now: str, ready: int) -> dict[str, Any]:
        alive, wanted = self.pool.alive, self.pool.concurrency
        status: Status = "pass"
        if alive < wanted:
            status = "fail" if alive == 0 and ready else "warn"
        return {
            "componentType": "component",
            "status": status,
            "observedValue": alive,
            "observedUnit": "workers",
            "configured": wanted,
            "busy": self.pool.busy,
            "time": now,
        }

    def _supervisor(self, now: str) -> list[dict[str, Any]]:
        return [
            {
                "componentId": view.name,
                "componentType": "component",
                "status": "warn" if view.state == "degraded" else "pass",
                "state": view.state,
                "restarts": view.restarts,
                "lastError": view.last_error,
                "time": now,
            }
            for view in self.components.views()
        ]

    def _inbox(self, now: str) -> dict[str, Any]:
        """Files left in the inbox because they do not open: someone must fix permissions.
        Only their names: the inbox is the office's, its paths are not secrets."""
        blocked = dict(self.inbox.blocked) if self.inbox is not None else {}
        return {
            "componentType": "component",
            "status": "warn" if blocked else "pass",
            "observedValue": len(blocked),
            "observedUnit": "files",
            "time": now,
            # What the watcher is doing: a file in the inbox when a rescan began is, once that
            # rescan is counted here, waiting, being taken or in the ledger.
            **(
                {
                    "rescans": self.inbox.rescans,
                    "waiting": self.inbox.waiting,
                    "taking": self.inbox.taking,
                }
                if self.inbox is not None
                else {}
            ),
            **(
                {"output": "; ".join(f"{p.name}: {why}" for p, why in sorted(blocked.items()))}
                if blocked
                else {}
            ),
        }

    async def _disk(self, now: str) -> dict[str, Any]:
        usage = await anyio.to_thread.run_sync(shutil.disk_usage, self.state_dir)
        status: Status = "pass"
        if usage.free < DISK_FAIL_BYTES:
            status = "fail"
        elif usage.free < DISK_WARN_BYTES:
            status = "warn"
        return {
            "componentType": "system",
            "status": status,
            "observedValue": usage.free,
            "observedUnit": "bytes",
            "time": now,
        }
