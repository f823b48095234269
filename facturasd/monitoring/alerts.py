"""Alerts about conditions: a backlog, a pool without workers, a failing upstream, a full disk.

Each source looks at what it is given and returns an `Observation` for every subject it looked
at, holding or not. The engine keeps one `conditions` row per key that holds and writes its
alerts (stored as data: code and parameters, worded where they are read, by `alert_words`):
`firing` when it starts to hold, `repeat` while it still holds once `cooldown` seconds passed
since it was last said (at once if its severity rose), `resolved` when it is observed not to
hold. A key not observed in a round is left as it is: its source could not look, or had too
little to judge by (a few look-ups, a few attempts), and an alert that comes and goes with
each quiet minute would say nothing true.

Events (an invoice FAILED, a damaged archive) are not conditions: the stage that sees one
raises its alert (`store.compliance.raise_alert`).
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from facturasd.clock import Clock, utcnow
from facturasd.monitoring.health import Pool
from facturasd.monitoring.tally import Tally
from facturasd.store import compliance
from facturasd.store.compliance import Outcome
from facturasd.store.db import Database, after_commit
from facturasd.store.queue import Queue

log = logging.getLogger(__name__)

# Fewer look-ups or attempts than these in a window say nothing about a rate.
CACHE_LOOKUPS_MIN = 20
ERROR_ATTEMPTS_MIN = 10
AUTHORITY_ATTEMPTS_MIN = 10
# `facturasd alerts --open` shows the events of this many seconds back.
EVENTS_OPEN_FOR = 86400.0
_SEVERITY_RANK = {"warning": 0, "critical": 1}
_MB = 1024 * 1024


@dataclass(frozen=True)
class Observation:
    """One look at a condition: its key ("CODE" or "CODE:subject"), the alert it would raise,
    and whether it holds now."""

    key: str
    code: str
    severity: str  # warning | critical
    params: dict[str, Any]
    holds: bool


Gather = Callable[[], Awaitable[list[Observation]]]


class AlertEngine:
    def __init__(self, db: Database, *, cooldown: float, clock: Clock = utcnow):
        self.db = db
        self.cooldown = cooldown
        self._clock = clock

    async def evaluate(self, observed: Sequence[Observation]) -> list[int]:
        """The observations of a round applied in one transaction; the ids of the alerts
        written."""
        keys = [o.key for o in observed]
        if len(set(keys)) != len(keys):
            raise ValueError(f"a key observed twice in one round: {sorted(keys)}")
        now = self._clock().timestamp()
        return await self.db.write(partial(self._apply, observed=list(observed), now=now))

    def _apply(
        self, conn: sqlite3.Connection, *, observed: list[Observation], now: float
    ) -> list[int]:
        written = []
        for seen in observed:
            row = conn.execute(
                "SELECT code, severity, params, said_at FROM conditions WHERE key = ?",
                (seen.key,),
            ).fetchone()
            params = json.dumps(seen.params, ensure_ascii=False, sort_keys=True)
            if seen.holds and row is None:
                conn.execute(
                    "INSERT INTO conditions (key, code, severity, params, since, said_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (seen.key, seen.code, seen.severity, params, now, now),
                )
                written.append(
                    _said(conn, seen.key, seen.code, seen.severity, params, "firing", now)
                )
            elif seen.holds:
                rose = _SEVERITY_RANK[seen.severity] > _SEVERITY_RANK[row["severity"]]
                say = rose or now - row["said_at"] >= self.cooldown
                # The row keeps the latest figures: a `resolved` alert repeats them.
                conn.execute(
                    "UPDATE conditions SET severity = ?, params = ?, said_at = ? WHERE key = ?",
                    (seen.severity, params, now if say else row["said_at"], seen.key),
                )
                if say:
                    written.append(
                        _said(conn, seen.key, seen.code, seen.severity, params, "repeat", now)
                    )
            elif row is not None:
                conn.execute("DELETE FROM conditions WHERE key = ?", (seen.key,))
                written.append(
                    _said(
                        conn, seen.key, row["code"], row["severity"], row["params"], "resolved", now
                    )
                )
        return written


def _said(
    conn: sqlite3.Connection,
    key: str,
    code: str,
    severity: str,
    params: str,
    status: str,
    at: float,
) -> int:
    """A condition's alert, logged once it commits."""
    cursor = conn.execute(
        "INSERT INTO alerts (at, severity, code, params, status, condition) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (at, severity, code, params, status, key),
    )
    level = logging.INFO if status == "resolved" else logging.WARNING
    after_commit(lambda: log.log(level, "alert %s %s (%s): %s", status, key, severity, params))
    assert cursor.lastrowid is not None  # (an INSERT's)
    return cursor.lastrowid


async def watch(engine: AlertEngine, gather: Gather, interval: float) -> None:
    """The supervised component: the conditions looked at every `interval`, the first time
    one interval after it starts (the worker pools are running by then, not starting)."""
    while True:
        await anyio.sleep(interval)
        await engine.evaluate(await gather())


def gathering(*sources: Gather) -> Gather:
    """One round of every source; a source that raises is logged and left out of the round,
    so its conditions stay as they were (and the others are still looked at)."""

    async def gather() -> list[Observation]:
        found: list[Observation] = []
        for source in sources:
            try:
                found += await source()
            except Exception as exc:  # any: one broken source must not blind the others
                log.warning("alerts: a source could not look (%s: %s)", type(exc).__name__, exc)
        return found

    return gather


# ── sources ───────────────────────────────────────────────────────────────────────────────


async def queue_backlog(queue: Queue, queues: Sequence[str], threshold: int) -> list[Observation]:
    """QUEUE-BACKLOG:<queue>: more than `threshold` jobs ready in one queue."""
    return [
        Observation(
            f"QUEUE-BACKLOG:{stats.name}",
            "QUEUE-BACKLOG",
            "warning",
            {"queue": stats.name, "ready": stats.ready, "threshold": threshold},
            stats.ready > threshold,
        )
        for stats in await queue.stats(queues)
        if stats.name in queues
    ]


async def no_worker(queue: Queue, pools: Sequence[Pool]) -> list[Observation]:
    """NO-WORKER:<pool>: none of a pool's workers alive while jobs of its queues are ready."""
    ready = {s.name: s.ready for s in await queue.stats([q for p in pools for q in p.queues])}
    found = []
    for pool in pools:
        waiting = sum(ready.get(q, 0) for q in pool.queues)
        found.append(
            Observation(
                f"NO-WORKER:{pool.name}",
                "NO-WORKER",
                "critical",
                {"pool": pool.name, "waiting": waiting},
                pool.alive == 0 and waiting > 0,
            )
        )
    return found


class CacheHitRate:
    """CACHE-HIT-RATE: the share of the cache's look-ups that hit, over the last `window`
    seconds, under `threshold`. The cache counts since it opened (made with it, this starts
    from nothing); the rate is taken between its figures now and those of `window` ago, so an
    hour of misses after a restart does not weigh on the rest of the day."""

    def __init__(self, threshold: float, *, window: float, clock: Clock = utcnow):
        self.threshold = threshold
        self.window = window
        self._clock = clock
        # (when, hits, misses)
        self._seen: deque[tuple[float, int, int]] = deque([(clock().timestamp(), 0, 0)])

    def __call__(self, metrics: Mapping[str, Any]) -> list[Observation]:
        """`metrics`: `AlegraCache.metrics()`."""
        now = self._clock().timestamp()
        hits, misses = int(metrics["hits"]), int(metrics["misses"])
        if hits < self._seen[-1][1] or misses < self._seen[-1][2]:
            # A new cache: its counts started again.
            self._seen = deque([(now, 0, 0)])
        self._seen.append((now, hits, misses))
        # The base: the last figures at least a window old (else the oldest there are).
        while len(self._seen) > 1 and self._seen[1][0] <= now - self.window:
            self._seen.popleft()
        _, base_hits, base_misses = self._seen[0]
        hit, looked = hits - base_hits, hits - base_hits + misses - base_misses
        if looked < CACHE_LOOKUPS_MIN:
            return []
        rate = hit / looked
        params = {"rate": round(rate, 4), "threshold": self.threshold}
        return [
            Observation(
                "CACHE-HIT-RATE", "CACHE-HIT-RATE", "warning", params, rate < self.threshold
            )
        ]


def error_rates(tallies: Mapping[str, Tally], threshold: float) -> list[Observation]:
    """ERROR-RATE:<pool>: more than `threshold` of a kind of work's attempts in its tally's
    window failed (`tallies`: name → tally, e.g. each WorkerPool's `.tally`)."""
    found = []
    for name, tally in tallies.items():
        recent = tally.recent()
        if recent.attempts < ERROR_ATTEMPTS_MIN:
            continue
        rate = recent.failures / recent.attempts
        found.append(
            Observation(
                f"ERROR-RATE:{name}",
                "ERROR-RATE",
                "warning",
                {"pool": name, "rate": round(rate, 4), "threshold": threshold},
                rate > threshold,
            )
        )
    return found


async def authority_failures(
    db: Database, threshold: float, *, window: float, clock: Clock = utcnow
) -> list[Observation]:
    """AUTHORITY-FAILURES:<authority>: of the questions asked online in the last `window`
    seconds, more than `threshold` got no answer or were refused."""
    rows = await db.fetchall(
        "SELECT authority, COUNT(*) AS asked, SUM(outcome IN (?, ?)) AS failed "
        "FROM authority_attempts WHERE source = 'online' AND at >= ? GROUP BY authority "
        "ORDER BY authority",
        (Outcome.UNAVAILABLE, Outcome.REFUSED, clock().timestamp() - window),
    )
    found = []
    for row in rows:
        if row["asked"] < AUTHORITY_ATTEMPTS_MIN:
            continue
        rate = row["failed"] / row["asked"]
        found.append(
            Observation(
                f"AUTHORITY-FAILURES:{row['authority']}",
                "AUTHORITY-FAILURES",
                "warning",
                {"authority": row["authority"], "rate": round(rate, 4), "threshold": threshold},
                rate > threshold,
            )
        )
    return found


def certificates(
    found: Sequence[tuple[str | None, datetime]], days: int, now: datetime
) -> list[Observation]:
    """CERTIFICATE-EXPIRING:<company>: a DIAN certificate (company slug, None for the one of
    all companies; its end) ends within `days`: a warning, critical once it has ended."""
    return [
        Observation(
            f"CERTIFICATE-EXPIRING:{company or 'default'}",
            "CERTIFICATE-EXPIRING",
            "critical" if not_after <= now else "warning",
            {"company": company, "expires": not_after.date().isoformat()},
            not_after - now < timedelta(days=days),
        )
        for company, not_after in found
    ]


async def disk(state_dir: Path, min_free_mb: int) -> list[Observation]:
    """DISK-FULL: less than `min_free_mb` free where the ledger is."""
    usage = await anyio.to_thread.run_sync(shutil.disk_usage, state_dir)
    free_mb = usage.free // _MB
    params = {"free_mb": free_mb, "threshold_mb": min_free_mb}
    return [Observation("DISK-FULL", "DISK-FULL", "critical", params, free_mb < min_free_mb)]


def backup(
    newest: datetime | None, max_age: float, now: datetime, *, since: float | None
) -> list[Observation]:
    """BACKUP-STALE: the newest nightly copy (maintenance.newest_backup) is older than
    `max_age` seconds, or there is none while the ledger has held invoices (`since`: the first
    one's receipt) for longer: a new installation is not alarmed before its first night."""
    if newest is None:
        stale = since is not None and now.timestamp() - since > max_age
    else:
        stale = now.timestamp() - newest.timestamp() > max_age
    params = {
        "newest": None
        if newest is None
        else newest.astimezone(now.tzinfo).isoformat("T", "seconds"),
        "max_age_days": round(max_age / 86400, 2),
    }
    return [Observation("BACKUP-STALE", "BACKUP-STALE", "warning", params, stale)]


# ── reading ───────────────────────────────────────────────────────────────────────────────


async def listed(db: Database, *, open_only: bool, now: float) -> list[compliance.Alert]:
    """The alerts, newest first. `open_only`: the last alert of each condition that still
    holds, and the events of the last day."""
    found = await compliance.alerts(db)
    if open_only:
        holding = {row["key"] for row in await db.fetchall("SELECT key FROM conditions")}
        # (ordered by id: the last alert of each condition wins)
        last = {a.condition: a.id for a in found if a.condition in holding}
        shown = set(last.values())
        found = [
            a
            for a in found
            if a.id in shown or (a.condition is None and a.at >= now - EVENTS_OPEN_FOR)
        ]
    return found[::-1]
