"""The durable job queue in SQLite.

Delivery is at-least-once: a job is claimed with a lease; if the worker dies, the lease
expires (or the daemon reclaims its orphans at start-up) and the job runs again. Handlers get
exactly-once *effect* by making their database effect part of the completion: `complete(job,
effect)` runs the effect and marks the job done in one transaction, guarded by the lease
token, so a job whose lease was lost cannot apply its effect a second time. Effects outside
the database (an Alegra bill) record their intent first and reconcile on the next attempt.

Rate limits are per queue and per process (the state directory's lock keeps one daemon per
database): a sliding window of the last claims, read against the injected clock.

A stage that queues the next one for this very process (the ingest, for parse-and-check) may
add it already claimed and hand it over in memory: the next `claim()` takes it without a
write of its own. At most `handoff` jobs wait so, a few seconds' work, well inside a lease; a
process that dies with some is a process whose running jobs the next start hands back.

Every operation given to the database changes nothing but the database (a failed batch runs
its operations again): what the queue keeps in memory changes on the event loop, before the
write (a place reserved for a job handed over; the reclaim of expired leases marked as done)
and after it (the job handed over; the place or the mark given back if it did not commit).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import anyio

from facturasd.clock import Clock, utcnow
from facturasd.config import QueueSettings, RateLimit
from facturasd.constants import JobState, QueueName
from facturasd.errors import LeaseLost, StoreError
from facturasd.store.db import Database, after_commit

# What a handler's success writes, in the commit that completes its job.
Effect = Callable[[sqlite3.Connection], None]

DEFAULT_MAX_ATTEMPTS = 5
RECLAIM_EVERY = 1.0
DATABASE_FIRST_EVERY = 4  # claims: one in this many looks at the database before the handed
_COLUMNS = (
    "id, queue, kind, payload, dedupe_key, priority, state, attempts, max_attempts, "
    "run_at, lease_token, last_error, created_at"
)


@dataclass(frozen=True)
class Job:
    id: int
    queue: str
    kind: str
    payload: dict[str, Any]
    dedupe_key: str | None
    priority: int
    state: JobState
    attempts: int
    max_attempts: int
    run_at: float
    lease_token: str | None
    last_error: str | None
    created_at: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        return cls(
            id=row["id"],
            queue=row["queue"],
            kind=row["kind"],
            payload=json.loads(row["payload"]),
            dedupe_key=row["dedupe_key"],
            priority=row["priority"],
            state=JobState(row["state"]),
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            run_at=row["run_at"],
            lease_token=row["lease_token"],
            last_error=row["last_error"],
            created_at=row["created_at"],
        )


# What runs beside a revived job, in its transaction (the audit trail's row).
Revived = Callable[[sqlite3.Connection, Job], None]


@dataclass(frozen=True)
class Reservation:
    """A place among the jobs handed over, reserved before the write that adds one claimed
    (`add(conn, …, claim=reservation)`) and given back by `hand_over` after it: its lease
    token, the end of its lease and the queue it is for."""

    token: str
    until: float
    queue: str


@dataclass(frozen=True)
class QueueStats:
    """One queue's figures for /health and metrics."""

    name: str
    counts: dict[str, int]
    ready: int
    oldest_ready_age: float

    @property
    def depth(self) -> int:
        return self.counts.get(JobState.QUEUED, 0)


class _Window:
    """At most `limit.count` claims in any `limit.period` seconds."""

    def __init__(self, limit: RateLimit):
        self.limit = limit
        self._claims: deque[float] = deque()

    def next_free(self, now: float) -> float:
        while self._claims and self._claims[0] <= now - self.limit.period:
            self._claims.popleft()
        if len(self._claims) < self.limit.count:
            return now
        return self._claims[0] + self.limit.period

    def take(self, now: float) -> None:
        self._claims.append(now)


class Queue:
    def __init__(
        self,
        db: Database,
        settings: Mapping[QueueName, QueueSettings] | None = None,
        *,
        clock: Clock = utcnow,
        handoff: int = 0,
    ):
        self.db = db
        self.handoff = handoff
        # Jobs added claimed, committed, waiting for a worker: (job, lease until).
        self._handed: deque[tuple[Job, float]] = deque()
        # Lease tokens of the reservations whose write has not returned yet.
        self._reserved: set[str] = set()
        self._claims = 0
        self._clock = clock
        self._settings = {str(name): s for name, s in (settings or {}).items()}
        self._windows = {
            name: _Window(s.rate_limit) for name, s in self._settings.items() if s.rate_limit
        }
        # Per set of queues a pool claims from: the event its idle workers wait on.
        self._work: dict[tuple[str, ...], anyio.Event] = {}
        self._reclaimed_at = float("-inf")

    def _now(self) -> float:
        return self._clock().timestamp()

    # ── producing ─────────────────────────────────────────────────────────────────────────

    async def enqueue(
        self,
        queue: str,
        kind: str,
        payload: Mapping[str, Any],
        *,
        dedupe_key: str | None = None,
        run_at: datetime | None = None,
        priority: int = 0,
    ) -> Job:
        """Adds a job; with a dedupe key, a live job holding that key is returned instead."""
        job = await self.db.write(
            partial(
                self.add,
                queue=queue,
                kind=kind,
                payload=payload,
                dedupe_key=dedupe_key,
                run_at=run_at,
                priority=priority,
            )
        )
        return job

    def add(
        self,
        conn: sqlite3.Connection,
        *,
        queue: str,
        kind: str,
        payload: Mapping[str, Any],
        dedupe_key: str | None = None,
        run_at: datetime | None = None,
        priority: int = 0,
        claim: Reservation | None = None,
    ) -> Job:
        """`enqueue` inside a transaction already open on `conn`: a handler's effect uses it
        to queue the next stage in the same commit that completes the current one. With a
        `claim` (see `reserve`) the job is added claimed by this process, to `hand_over` once
        committed, if it can run now (else it is added as usual)."""
        now = self._now()
        settings = self._settings.get(queue)
        max_attempts = settings.max_attempts if settings else DEFAULT_MAX_ATTEMPTS
        body = json.dumps(payload, ensure_ascii=False, sort_keys=True)
        when = run_at.timestamp() if run_at else now
        claimed: tuple[str, int, str | None, float | None] = ("queued", 0, None, None)
        if claim is not None and when <= now:
            claimed = ("running", 1, claim.token, claim.until)
        # Once committed, the workers of this queue look at once (a claimed one is handed).
        after_commit(partial(self.wake, queue))
        row = _one(
            conn,
            f"""INSERT INTO jobs (queue, kind, payload, dedupe_key, priority, max_attempts,
                                  run_at, created_at, updated_at,
                                  state, attempts, lease_token, lease_until)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (dedupe_key)
                    WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'running')
                    DO NOTHING
                RETURNING {_COLUMNS}""",
            (
                *(queue, kind, body, dedupe_key, priority, max_attempts, when, now, now),
                *claimed,
            ),
        )
        if row is None:
            row = _one(
                conn,
                f"SELECT {_COLUMNS} FROM jobs WHERE dedupe_key = ? "
                "AND state IN ('queued', 'running')",
                (dedupe_key,),
            )
        if row is None:
            raise StoreError(f"job with dedupe key {dedupe_key!r} vanished during enqueue")
        return Job.from_row(row)

    def due_now(self, conn: sqlite3.Connection, job_ids: Sequence[int]) -> int:
        """Queued jobs due later (a retry waiting for its step, a job parked until an authority
        answers again) due now instead, inside a transaction already open on `conn`: a person
        asked, or the authority answers again. Returns how many; their queues are woken once
        committed."""
        now = self._now()
        marks = ", ".join("?" for _ in job_ids)
        rows = conn.execute(
            f"UPDATE jobs SET run_at = ?, updated_at = ? "
            f"WHERE id IN ({marks}) AND state = 'queued' AND run_at > ? RETURNING queue",
            (now, now, *job_ids, now),
        ).fetchall()
        for queue in {row["queue"] for row in rows}:
            after_commit(partial(self.wake, queue))
        return len(rows)

    # ── consuming ─────────────────────────────────────────────────────────────────────────

    def rate_limited(self, queue: str) -> bool:
        """Whether `queue`'s claims are limited to a rate (its ready jobs may wait for it)."""
        return queue in self._windows

    def reserve(self, queue: str, lease: float) -> Reservation | None:
        """A place for one job of `queue` to be added claimed and handed over, if there is
        room: jobs waiting in memory and places reserved are fewer than `handoff`. None for a
        queue with a rate limit (its claims are counted one by one). Whatever the write that
        uses it does, give it back with `hand_over`."""
        if queue in self._windows or len(self._handed) + len(self._reserved) >= self.handoff:
            return None
        reservation = Reservation(secrets.token_hex(8), self._now() + lease, queue)
        self._reserved.add(reservation.token)
        return reservation

    def hand_over(self, reservation: Reservation | None, job: Job | None) -> None:
        """After the write that used `reservation`: the place is given back and, if that
        write committed `job` claimed with it, the next `claim()` takes the job. Pass None for
        `job` if the write failed (its transaction rolled back: nothing to hand over)."""
        if reservation is None:
            return
        self._reserved.discard(reservation.token)
        if job is not None and job.lease_token == reservation.token:
            self._handed.append((job, reservation.until))
            self.wake(job.queue)

    async def claim(self, queues: Sequence[str], lease: float) -> Job | None:
        """The next ready job of `queues` (highest priority, then oldest), leased to the caller;
        or one handed over. Those go first, but every few claims the database's next job
        does, so its jobs (other queues, retries, a burst's overflow) never wait behind them."""
        self._claims += 1
        if self._claims % DATABASE_FIRST_EVERY and (job := await self._handed_job(queues, lease)):
            return job
        return await self._stored_job(queues, lease) or await self._handed_job(queues, lease)

    async def _handed_job(self, queues: Sequence[str], lease: float) -> Job | None:
        for entry in list(self._handed):
            job, until = entry
            if job.queue not in queues:
                continue
            self._handed.remove(entry)
            if until - self._now() > lease / 2:
                return job
            await self.release(job, reason="waited too long for a worker")
        return None

    async def _stored_job(self, queues: Sequence[str], lease: float) -> Job | None:
        now = self._now()
        open_queues = [
            q for q in queues if q not in self._windows or self._windows[q].next_free(now) <= now
        ]
        if not open_queues:
            return None

        # Expired leases are looked for at most once a second, not on every claim: marked as
        # looked for now, before the write, so the claims in the same batch do not look too.
        reclaim, reclaimed_at = now - self._reclaimed_at >= RECLAIM_EVERY, self._reclaimed_at
        if reclaim:
            self._reclaimed_at = now

        def take(conn: sqlite3.Connection) -> Job | None:
            if reclaim:
                self._reclaim_expired(conn, now)
            marks = ", ".join("?" * len(open_queues))
            row = _one(
                conn,
                f"""UPDATE jobs
                    SET state = 'running', attempts = attempts + 1, lease_token = ?,
                        lease_until = ?, updated_at = ?
                    WHERE id = (SELECT id FROM jobs
                                WHERE state = 'queued' AND queue IN ({marks}) AND run_at <= ?
                                ORDER BY priority DESC, run_at, id LIMIT 1)
                    RETURNING {_COLUMNS}""",
                (secrets.token_hex(8), now + lease, now, *open_queues, now),
            )
            return Job.from_row(row) if row else None

        try:
            job = await self.db.write(take)
        except BaseException:
            if reclaim:  # rolled back with the claim: the next claim looks again
                self._reclaimed_at = reclaimed_at
            raise
        # The windows are the event loop's: counted here, not on the database's thread.
        if job is not None and (window := self._windows.get(job.queue)):
            window.take(now)
        return job

    async def release_handed(self) -> None:
        """At shutdown: the jobs handed over that no worker took go back to the queue, their
        attempt not counted; none is handed over any more."""
        self.handoff = 0
        while self._handed:
            job, _ = self._handed.popleft()
            await self.release(job, reason="handed back at shutdown")

    def _reclaim_expired(self, conn: sqlite3.Connection, now: float) -> None:
        conn.execute(
            """UPDATE jobs
               SET state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
                   finished_at = CASE WHEN attempts >= max_attempts THEN ? END,
                   last_error = 'lease expired: the worker stopped or was killed',
                   lease_token = NULL, lease_until = NULL, updated_at = ?
               WHERE state = 'running' AND lease_until <= ?""",
            (now, now, now),
        )

    async def recover_orphans(self) -> int:
        """At start-up, under the state directory's lock, every running job is an orphan."""

        def recover(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "UPDATE jobs SET lease_until = ? WHERE state = 'running'", (self._now(),)
            )
            self._reclaim_expired(conn, self._now())
            return cursor.rowcount

        return await self.db.write(recover)

    def wake(self, queue: str | None = None) -> None:
        """Wakes the workers waiting in `wait_for_work` for `queue` (None: all of them). A
        pool of other queues sleeps on: each of its workers would claim in vain, a write."""
        for queues in [q for q in self._work if queue is None or queue in q]:
            self._work.pop(queues).set()

    async def wait_for_work(self, queues: Sequence[str], at_most: float) -> None:
        """Returns when a job of `queues` is added in this process, or after `at_most`
        seconds."""
        event = self._work.setdefault(tuple(queues), anyio.Event())
        with anyio.move_on_after(at_most):
            await event.wait()

    async def next_ready_in(self, queues: Sequence[str]) -> float | None:
        """Seconds until a job of `queues` can be claimed (0 if now); None if none waits."""
        now = self._now()
        marks = ", ".join("?" * len(queues))
        rows = await self.db.fetchall(
            f"SELECT queue, MIN(run_at) AS due FROM jobs "
            f"WHERE state = 'queued' AND queue IN ({marks}) GROUP BY queue",
            queues,
        )
        times = [
            max(row["due"], self._windows[row["queue"]].next_free(now))
            if row["queue"] in self._windows
            else row["due"]
            for row in rows
        ]
        return max(0.0, min(times) - now) if times else None

    # ── finishing ─────────────────────────────────────────────────────────────────────────

    async def extend(self, job: Job, lease: float) -> None:
        """Keeps a long job's lease; LeaseLost if it was already taken from this worker."""

        def renew(conn: sqlite3.Connection) -> None:
            now = self._now()
            self._expect_one(
                conn,
                "UPDATE jobs SET lease_until = ?, updated_at = ? "
                "WHERE id = ? AND lease_token = ? AND state = 'running'",
                (now + lease, now, job.id, job.lease_token),
                job,
            )

        await self.db.write(renew)

    async def complete(self, job: Job, effect: Effect | None = None) -> None:
        """Marks the job done and applies `effect` in the same transaction, or neither."""

        def finish(conn: sqlite3.Connection) -> None:
            now = self._now()
            self._expect_one(
                conn,
                "UPDATE jobs SET state = 'done', finished_at = ?, updated_at = ?, "
                "lease_token = NULL, lease_until = NULL "
                "WHERE id = ? AND lease_token = ? AND state = 'running'",
                (now, now, job.id, job.lease_token),
                job,
            )
            if effect is not None:
                effect(conn)

        await self.db.write(finish)

    async def fail(
        self, job: Job, error: str, retry_at: datetime | None = None, *, permanent: bool = False
    ) -> JobState:
        """Records a failed attempt: queued again at `retry_at`, or dead when out of attempts."""

        def record(conn: sqlite3.Connection) -> JobState:
            now = self._now()
            when = retry_at.timestamp() if retry_at else now
            row = _one(
                conn,
                """UPDATE jobs
                   SET state = CASE WHEN ? OR attempts >= max_attempts
                                    THEN 'dead' ELSE 'queued' END,
                       finished_at = CASE WHEN ? OR attempts >= max_attempts THEN ? END,
                       run_at = ?, last_error = ?, lease_token = NULL, lease_until = NULL,
                       updated_at = ?
                   WHERE id = ? AND lease_token = ? AND state = 'running'
                   RETURNING state""",
                (permanent, permanent, now, when, error, now, job.id, job.lease_token),
            )
            if row is None:
                raise LeaseLost(f"job {job.id}: lease lost before its failure was recorded")
            return JobState(row["state"])

        return await self.db.write(record)

    async def release(
        self, job: Job, run_at: datetime | None = None, reason: str | None = None
    ) -> None:
        """Hands a job back without counting the attempt: at shutdown, or when its handler
        asks to be run again later (RetryLater) rather than failing."""

        def give_back(conn: sqlite3.Connection) -> None:
            now = self._now()
            conn.execute(
                "UPDATE jobs SET state = 'queued', attempts = attempts - 1, run_at = ?, "
                "last_error = COALESCE(?, last_error), lease_token = NULL, lease_until = NULL, "
                "updated_at = ? WHERE id = ? AND lease_token = ? AND state = 'running'",
                (run_at.timestamp() if run_at else now, reason, now, job.id, job.lease_token),
            )

        await self.db.write(give_back)

    async def requeue(self, job_id: int, *, also: Revived | None = None) -> Job:
        """Runs a dead job again, with its attempts reset; `also(conn, job)` in the same
        transaction (the audit trail's row)."""

        def revive(conn: sqlite3.Connection) -> Job:
            now = self._now()
            try:
                row = _one(
                    conn,
                    f"""UPDATE jobs SET state = 'queued', attempts = 0, run_at = ?,
                               finished_at = NULL, updated_at = ?
                        WHERE id = ? AND state = 'dead' RETURNING {_COLUMNS}""",
                    (now, now, job_id),
                )
            except sqlite3.IntegrityError:
                raise StoreError(
                    f"job {job_id}: another live job already holds its dedupe key"
                ) from None
            if row is None:
                raise StoreError(f"job {job_id}: no dead job with this id")
            job = Job.from_row(row)
            if also is not None:
                also(conn, job)
            return job

        job = await self.db.write(revive)
        self.wake(job.queue)
        return job

    async def requeue_dead(
        self, queue: str | None = None, *, also: Revived | None = None
    ) -> list[Job]:
        """Runs every dead job (of `queue`) again, with its attempts reset: of several dead
        jobs with one dedupe key the newest, and none whose key a live job holds (its work is
        under way already); `also(conn, job)` for each, in the same transaction."""

        def revive(conn: sqlite3.Connection) -> list[Job]:
            now = self._now()
            rows = conn.execute(
                f"""UPDATE jobs SET state = 'queued', attempts = 0, run_at = ?,
                           finished_at = NULL, updated_at = ?
                    WHERE id IN (SELECT MAX(id) FROM jobs
                                 WHERE state = 'dead' AND (? IS NULL OR queue = ?)
                                 GROUP BY COALESCE(dedupe_key, 'job:' || id))
                      AND (dedupe_key IS NULL OR NOT EXISTS (
                           SELECT 1 FROM jobs AS live WHERE live.dedupe_key = jobs.dedupe_key
                           AND live.state IN ('queued', 'running')))
                    RETURNING {_COLUMNS}""",
                (now, now, queue, queue),
            ).fetchall()
            jobs = [Job.from_row(row) for row in rows]
            if also is not None:
                for job in jobs:
                    also(conn, job)
            return jobs

        jobs = await self.db.write(revive)
        for name in {job.queue for job in jobs}:
            self.wake(name)
        return jobs

    @staticmethod
    def _expect_one(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...], job: Job) -> None:
        cursor = conn.execute(sql, params)
        if cursor.rowcount != 1:
            raise LeaseLost(f"job {job.id}: lease lost (it expired and was reclaimed)")

    # ── reading ───────────────────────────────────────────────────────────────────────────

    async def get(self, job_id: int) -> Job | None:
        row = await self.db.fetchone(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return Job.from_row(row) if row else None

    async def find(
        self, *, state: JobState | None = None, queue: str | None = None, limit: int | None = 100
    ) -> list[Job]:
        """The jobs in `state` and `queue` (any, if not given), newest first; all of them when
        `limit` is None."""
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM jobs WHERE (? IS NULL OR state = ?) "
            "AND (? IS NULL OR queue = ?) ORDER BY id DESC LIMIT ?",
            (state, state, queue, queue, -1 if limit is None else limit),
        )
        return [Job.from_row(row) for row in rows]

    async def count(self, *, state: JobState | None = None, queue: str | None = None) -> int:
        """How many jobs `find` would give without a limit."""
        row = await self.db.fetchone(
            "SELECT COUNT(*) AS n FROM jobs WHERE (? IS NULL OR state = ?) "
            "AND (? IS NULL OR queue = ?)",
            (state, state, queue, queue),
        )
        assert row is not None  # a COUNT always has its row
        return int(row["n"])

    async def stats(self, queues: Sequence[str]) -> list[QueueStats]:
        """Counts per state, ready depth and the age of the oldest ready job, per queue."""
        now = self._now()
        counts: dict[str, dict[str, int]] = {q: {s.value: 0 for s in JobState} for q in queues}
        for row in await self.db.fetchall(
            "SELECT queue, state, COUNT(*) AS n FROM jobs GROUP BY queue, state"
        ):
            counts.setdefault(row["queue"], {s.value: 0 for s in JobState})[row["state"]] = row["n"]
        ready: dict[str, tuple[int, float]] = {}
        for row in await self.db.fetchall(
            "SELECT queue, COUNT(*) AS n, MIN(run_at) AS oldest FROM jobs "
            "WHERE state = 'queued' AND run_at <= ? GROUP BY queue",
            (now,),
        ):
            ready[row["queue"]] = (row["n"], max(0.0, now - row["oldest"]))
        return [
            QueueStats(name, by_state, *ready.get(name, (0, 0.0)))
            for name, by_state in counts.items()
        ]


def _one(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> sqlite3.Row | None:
    """The first row of a statement, run to its end (an UPDATE … RETURNING left open would
    keep the transaction from committing)."""
    rows = conn.execute(sql, params).fetchall()
    return rows[0] if rows else None


def backoff(attempts: int, *, base: float = 5.0, cap: float = 900.0) -> timedelta:
    """Delay before retrying a job that raised: 5 s, 20 s, 80 s, … capped at 15 minutes."""
    return timedelta(seconds=min(cap, base * 4 ** max(0, attempts - 1)))
