"""GET /health: the daemon's state as application/health+json.

The components register their probes (`Health.register`: a check's key, its group's weight, a
coroutine that returns the check's items); the authorities, Alegra and the cache add theirs
the same way. Each item is pass, warn or fail; the status is the worst of them (HTTP 503 on
fail) and the score is the groups' weighted mean (pass 1, warn 0.5, fail 0). A report is reused
for `REUSE_FOR` seconds, so a burst of requests does not fsync a probe row for each. Weights
and thresholds are below and in docs/health.md. Nothing here carries a secret or a person's
data: errors are reduced to their type or to SQLite's own message.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import anyio

from facturasd import __version__
from facturasd.clock import Clock, utcnow
from facturasd.inbox.archive import Folders
from facturasd.monitoring.recommend import Checks, Recommendation
from facturasd.monitoring.tally import Tally
from facturasd.store.db import Database
from facturasd.store.queue import Queue

Status = Literal["pass", "warn", "fail"]
_RANK: dict[Status, int] = {"pass": 0, "warn": 1, "fail": 2}
_POINTS: dict[Status, float] = {"pass": 1.0, "warn": 0.5, "fail": 0.0}

# The weight of each group of checks in the score.
WEIGHTS = {
    "database": 0.30,
    "workers": 0.20,
    "queues": 0.15,
    "supervisor": 0.15,
    "disk": 0.10,
    "inbox": 0.10,
    "folders": 0.10,
    "authorities": 0.10,
    "alegra": 0.10,
    "cache": 0.05,
    "scheduler": 0.05,
    "notify": 0.05,
}
REUSE_FOR = 1.0
# Work is failing when, of its attempts in the tally's window, at least this many failed and
# more than this share; jobs ready this long that idle workers do not claim mean a stuck pool.
FAILING_MIN = 3
FAILING_SHARE = 0.5
UNCLAIMED_FAIL = 60.0
DB_PROBE_TIMEOUT = 3.0
DB_SLOW_MS = 500.0
QUEUE_OLDEST_WARN = 900.0
DISK_WARN_BYTES = 1 << 30
DISK_FAIL_BYTES = 100 << 20


Item = dict[str, Any]
# A probe: given the report's time (ISO 8601), the items of its check.
ProbeFn = Callable[[str], Awaitable[list[Item]]]


class Pool(Protocol):
    name: str
    queues: list[str]
    concurrency: int
    alive: int
    busy: int
    last_claim: float  # when it last claimed a job (a timestamp of the clock)


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


@dataclass(frozen=True)
class Probe:
    key: str  # "group:name", as the report's `checks` names it
    weight: float  # of its group in the score (the group's weights are added up)
    run: ProbeFn

    @property
    def group(self) -> str:
        return self.key.partition(":")[0]


# What a person could do about a report's checks (monitoring/recommend.py).
Advise = Callable[[Checks], list[Recommendation]]


class Health:
    def __init__(
        self, *, clock: Clock = utcnow, reuse_for: float = REUSE_FOR, advise: Advise | None = None
    ):
        self.probes: list[Probe] = []
        self._clock = clock
        self._reuse_for = reuse_for
        self._advise = advise
        self._last: tuple[float, dict[str, Any]] | None = None
        self._lock = anyio.Lock()
        # `run --sandbox`: every report says, at its top, that the upstreams are local ones.
        self.sandbox = False

    def register(self, key: str, weight: float, run: ProbeFn) -> None:
        if any(probe.key == key for probe in self.probes):
            raise ValueError(f"health check {key!r} is registered twice")
        self.probes.append(Probe(key, weight, run))

    async def report(self) -> dict[str, Any]:
        """The last report if it is fresh, else a new one (one at a time)."""
        async with self._lock:
            now = self._clock()
            if self._last is None or now.timestamp() - self._last[0] >= self._reuse_for:
                self._last = (now.timestamp(), await self._report(now.isoformat()))
            return self._last[1]

    async def _report(self, now: str) -> dict[str, Any]:
        checks = {probe.key: await probe.run(now) for probe in self.probes}
        weights: dict[str, float] = {}
        for probe in self.probes:
            weights[probe.group] = weights.get(probe.group, 0.0) + probe.weight
        by_group: dict[str, Status] = {
            group: worst(
                [
                    item["status"]
                    for probe in self.probes
                    if probe.group == group
                    for item in checks[probe.key]
                ]
            )
            for group in weights
        }
        total = sum(weights.values()) or 1.0
        score = sum(weights[g] * _POINTS[s] for g, s in by_group.items()) / total
        return {
            "status": worst(list(by_group.values())),
            "score": round(score, 3),
            "version": __version__,
            "serviceId": "facturasd",
            "description": "facturasd: received e-invoices checked, confirmed and booked",
            **({"sandbox": True} if self.sandbox else {}),
            "checks": checks,
            "recommendations": [
                {"code": r.code, "message": r.message}
                for r in (self._advise(checks) if self._advise else [])
            ],
        }


def database_probe(db: Database) -> ProbeFn:
    """One row written through the same group-commit path as every other write."""

    async def run(now: str) -> list[Item]:
        def probe(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO kv (key, value, updated_at) VALUES ('health.probe', ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (now, time.time()),
            )

        entry: Item = {"componentType": "datastore", "time": now}
        started = time.perf_counter()
        try:
            with anyio.fail_after(DB_PROBE_TIMEOUT):
                await db.write(probe)
        except TimeoutError:
            output = f"a write did not commit within {DB_PROBE_TIMEOUT:g}s"
            return [{**entry, "status": "fail", "output": output}]
        except Exception as exc:  # any failure to write is the finding itself
            return [{**entry, "status": "fail", "output": f"cannot write: {exc}"}]
        millis = (time.perf_counter() - started) * 1000
        status: Status = "warn" if millis > DB_SLOW_MS else "pass"
        return [
            {**entry, "status": status, "observedValue": round(millis, 2), "observedUnit": "ms"}
        ]

    return run


def ledger_file_probe(db: Database) -> ProbeFn:
    """The database file is still the one the daemon opened: deleted or replaced under it,
    every write since goes to a file no one will open again (the write probe above passes)."""

    async def run(now: str) -> list[Item]:
        lost = await anyio.to_thread.run_sync(db.file_lost)
        item: Item = {"componentType": "datastore", "status": "fail" if lost else "pass"}
        if lost:
            item["output"] = (
                f"{db.path.name} {lost} while the daemon runs: stop it, then restore a backup "
                "or run facturasd rebuild-ledger"
            )
        return [{**item, "time": now}]

    return run


def queues_probe(queue: Queue, queues: Sequence[str], backlog_warn: int) -> ProbeFn:
    async def run(now: str) -> list[Item]:
        items = []
        for stats in await queue.stats(queues):
            status: Status = "pass"
            if stats.ready > backlog_warn or stats.oldest_ready_age > QUEUE_OLDEST_WARN:
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

    return run


def workers_probe(queue: Queue, pools: Sequence[Pool]) -> ProbeFn:
    """Each pool: all its workers alive, fewer (warn); none while its jobs are ready, or jobs
    ready a minute and more while the pool claimed nothing for as long (fail)."""

    async def run(now: str) -> list[Item]:
        at = datetime.fromisoformat(now).timestamp()
        stats = {s.name: s for s in await queue.stats([q for p in pools for q in p.queues])}
        items = []
        for pool in pools:
            alive, wanted = pool.alive, pool.concurrency
            item: Item = {
                "componentId": pool.name,
                "componentType": "component",
                "status": "pass",
                "observedValue": alive,
                "observedUnit": "workers",
                "configured": wanted,
                "busy": pool.busy,
                "time": now,
            }
            if alive < wanted:
                waiting = sum(stats[q].ready for q in pool.queues if q in stats)
                item["status"] = "fail" if alive == 0 and waiting else "warn"
            # (a rate-limited queue's jobs may wait for its window: not a stuck pool)
            stuck = [
                stats[q]
                for q in pool.queues
                if q in stats
                and not queue.rate_limited(q)
                and stats[q].ready
                and stats[q].oldest_ready_age >= UNCLAIMED_FAIL
            ]
            if stuck and at - pool.last_claim >= UNCLAIMED_FAIL:
                item["status"] = "fail"
                item["output"] = "; ".join(
                    f"{s.ready} job(s) of {s.name} ready for {s.oldest_ready_age:.0f}s, "
                    "none claimed"
                    for s in stuck
                )
            items.append(item)
        return items

    return run


def failures_probe(tallies: Mapping[str, tuple[Tally, bool]]) -> ProbeFn:
    """Each kind of work (name → its tally, and whether it is local): most of its attempts of
    the last minutes failing is `fail` for local work (it cannot fix itself: a person must),
    `warn` for work that waits on an upstream, with the last failure's first line."""

    async def run(now: str) -> list[Item]:
        items = []
        for name, (tally, local) in tallies.items():
            recent = tally.recent()
            status: Status = "pass"
            if recent.failures >= FAILING_MIN and recent.failures > recent.attempts * FAILING_SHARE:
                status = "fail" if local else "warn"
            item: Item = {
                "componentId": name,
                "componentType": "component",
                "status": status,
                "observedValue": recent.failures,
                "observedUnit": f"failed of {recent.attempts} in {tally.window:.0f}s",
                "time": now,
            }
            if recent.last_error is not None:
                item["output"] = recent.last_error
            items.append(item)
        return items

    return run


def supervisor_probe(components: Components) -> ProbeFn:
    async def run(now: str) -> list[Item]:
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
            for view in components.views()
        ]

    return run


def inbox_probe(inbox: InboxView) -> ProbeFn:
    """Files left in the inbox because they do not open: someone must fix permissions. Only
    their names: the inbox is the office's, its paths are not secrets."""

    async def run(now: str) -> list[Item]:
        blocked = dict(inbox.blocked)
        item: Item = {
            "componentType": "component",
            "status": "warn" if blocked else "pass",
            "observedValue": len(blocked),
            "observedUnit": "files",
            # What the watcher is doing: a file in the inbox when a rescan began is, once that
            # rescan is counted here, waiting, being taken or in the ledger.
            "rescans": inbox.rescans,
            "waiting": inbox.waiting,
            "taking": inbox.taking,
            "time": now,
        }
        if blocked:
            item["output"] = "; ".join(f"{p.name}: {why}" for p, why in sorted(blocked.items()))
        return [item]

    return run


def folders_probe(folders: Folders) -> ProbeFn:
    """The folders files are moved out of and into (inbox, archive, rejected, duplicates):
    fail while the service's user cannot write in one, or in a folder inside it that refused
    a file; the output names that folder and the fix. Files wait meanwhile where they are,
    and are moved once it is fixed."""

    async def run(now: str) -> list[Item]:
        unwritable = await anyio.to_thread.run_sync(folders.unwritable)
        items = []
        for name, problems in unwritable.items():
            item: Item = {
                "componentId": name,
                "componentType": "component",
                "status": "fail" if problems else "pass",
                "time": now,
            }
            if problems:
                item["output"] = "; ".join(str(problem) for problem in problems)
            items.append(item)
        return items

    return run


def disk_probe(state_dir: Path) -> ProbeFn:
    async def run(now: str) -> list[Item]:
        usage = await anyio.to_thread.run_sync(shutil.disk_usage, state_dir)
        status: Status = "pass"
        if usage.free < DISK_FAIL_BYTES:
            status = "fail"
        elif usage.free < DISK_WARN_BYTES:
            status = "warn"
        return [
            {
                "componentType": "system",
                "status": status,
                "observedValue": usage.free,
                "observedUnit": "bytes",
                "time": now,
            }
        ]

    return run
