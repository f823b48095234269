"""The scheduler (SPEC §2.6): tasks on cron expressions in `daemon.timezone`, each due time
one durable job.

At each tick (at start, then whenever a task comes due) every task's latest due time since
its recorded `last_run` becomes a job on `report_generation` (run by the `reports` pool), and
`last_run` moves to that time in the same commit. Only the latest: a run missed while the
daemon was down is caught up once, not once per missed time. The job's dedupe key names the
task and its due time as the zone's wall clock, and a key once used is never queued again, in
whatever state its job is: a scheduler restarted while the job runs, or an hour repeated when
a zone's clocks go back, runs the task once. A task never recorded starts from now: a new
installation does not catch up on the past. The job runs the task and records how it went in
`scheduler_runs` (`last_ok`, `detail`).
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from zoneinfo import ZoneInfo

import anyio
from croniter import croniter

from facturasd.clock import Clock, utcnow
from facturasd.constants import QueueName
from facturasd.errors import JobFailed
from facturasd.monitoring.health import Item, ProbeFn
from facturasd.store import compliance
from facturasd.store.db import Database
from facturasd.store.queue import Effect, Job, Queue

log = logging.getLogger(__name__)

KIND = "scheduled"
QUEUE = QueueName.REPORT_GENERATION
LONGEST_SLEEP = 60.0  # the loop looks again at least this often (a clock that jumps)


@dataclass(frozen=True)
class Task:
    """`run` does the work and says what it did, in a line for `scheduler_runs.detail`. It is
    due on a cron expression in the scheduler's zone, or every `every` seconds (the retry
    loop: due times are whole multiples of `every` since the epoch)."""

    name: str
    run: Callable[[], Awaitable[str]]
    cron: str = ""
    every: float = 0.0

    def key(self, due: datetime, zone: ZoneInfo) -> str:
        """The dedupe key of a due time: the zone's wall clock for a cron task (an hour the
        clocks repeat runs once), UTC for a periodic one (it runs in the repeated hour too)."""
        if self.every:
            return f"schedule:{self.name}:{due.astimezone(UTC):%Y-%m-%dT%H:%M:%S}Z"
        return f"schedule:{self.name}:{due.astimezone(zone).replace(tzinfo=None):%Y-%m-%dT%H:%M}"


class Scheduler:
    def __init__(
        self,
        db: Database,
        queue: Queue,
        tasks: Sequence[Task],
        zone: ZoneInfo,
        *,
        clock: Clock = utcnow,
    ):
        self.db = db
        self.queue = queue
        self.tasks = {task.name: task for task in tasks}
        self.zone = zone
        self._clock = clock
        for task in tasks:
            if task.every:
                if task.cron or task.every < 1:
                    raise ValueError(f"task {task.name}: a cron expression or every >= 1s")
            elif not croniter.is_valid(task.cron):
                raise ValueError(f"task {task.name}: {task.cron!r} is not a cron expression")

    def latest_due(self, task: Task, after: datetime, now: datetime) -> datetime | None:
        """The latest time `task` was due after `after`, up to `now` (None: not yet)."""
        if task.every:
            last = math.floor(now.timestamp() / task.every) * task.every
            return datetime.fromtimestamp(last, UTC) if last > after.timestamp() else None
        times = croniter(task.cron, after.astimezone(self.zone))
        found = None
        while (due := times.get_next(datetime)) <= now:
            found = due
        return found

    def next_run(self, task: Task, now: datetime) -> datetime:
        """When `task` comes due after `now`."""
        if task.every:
            following = (math.floor(now.timestamp() / task.every) + 1) * task.every
            return datetime.fromtimestamp(following, UTC)
        next_time: datetime = croniter(task.cron, now.astimezone(self.zone)).get_next(datetime)
        return next_time

    def next_due(self, now: datetime) -> datetime:
        """When the first task comes due after `now`."""
        return min(self.next_run(task, now) for task in self.tasks.values())

    async def tick(self) -> list[Job]:
        """Each task's latest due time not queued yet, queued; returns the jobs."""
        return await self.db.write(partial(self._queue_due, now=self._clock()))

    def _queue_due(self, conn: sqlite3.Connection, *, now: datetime) -> list[Job]:
        queued = []
        for task in self.tasks.values():
            row = conn.execute(
                "SELECT last_run FROM scheduler_runs WHERE task = ?", (task.name,)
            ).fetchone()
            if row is None:  # new: from now on
                _record(conn, task.name, last_run=now.timestamp(), ok=True, detail="scheduled")
                continue
            after = datetime.fromtimestamp(row["last_run"], UTC)
            due = self.latest_due(task, after, now)
            if due is None:
                continue
            key = task.key(due, self.zone)
            conn.execute(
                "UPDATE scheduler_runs SET last_run = ? WHERE task = ?",
                (due.timestamp(), task.name),
            )
            if conn.execute("SELECT 1 FROM jobs WHERE dedupe_key = ?", (key,)).fetchone():
                continue  # that wall-clock time ran (or runs) already
            queued.append(
                self.queue.add(
                    conn,
                    queue=QUEUE,
                    kind=KIND,
                    payload={"task": task.name, "due": due.isoformat()},
                    dedupe_key=key,
                )
            )
        return queued

    async def run(self) -> None:
        """The supervised component: a tick, then sleep until the next due time."""
        while True:
            for job in await self.tick():
                log.info("scheduled: %s (due %s)", job.payload["task"], job.payload["due"])
            now = self._clock()
            wait = (self.next_due(now) - now).total_seconds()
            await anyio.sleep(min(max(wait, 0.0), LONGEST_SLEEP))

    async def __call__(self, job: Job) -> Effect | None:
        """The job of a due time: the task run, its outcome recorded."""
        task = self.tasks.get(str(job.payload["task"]))
        if task is None:
            raise JobFailed(f"no scheduled task {job.payload['task']!r} (removed since?)")
        try:
            detail = await task.run()
        except Exception as exc:
            said = str(exc) or type(exc).__name__

            def failed(conn: sqlite3.Connection) -> None:
                _outcome(conn, task=task.name, ok=False, detail=said)
                if job.attempts == 1:  # said once per due time, not at each retry
                    compliance.raise_alert(
                        conn,
                        at=self._clock().timestamp(),
                        severity="warning",
                        code="SCHEDULE-FAILED",
                        task=task.name,
                        said=said,
                    )

            await self.db.write(failed)
            raise
        return partial(_outcome, task=task.name, ok=True, detail=detail)


def _record(conn: sqlite3.Connection, task: str, *, last_run: float, ok: bool, detail: str) -> None:
    conn.execute(
        "INSERT INTO scheduler_runs (task, last_run, last_ok, detail) VALUES (?, ?, ?, ?)",
        (task, last_run, int(ok), detail),
    )


def _outcome(conn: sqlite3.Connection, *, task: str, ok: bool, detail: str) -> None:
    conn.execute(
        "UPDATE scheduler_runs SET last_ok = ?, detail = ? WHERE task = ?",
        (int(ok), detail, task),
    )


def probe(scheduler: Scheduler) -> ProbeFn:
    """`scheduler:tasks`: each task's last due time and how its last run went (a warning,
    with what it said, while the last one failed)."""

    async def run(now: str) -> list[Item]:
        rows = {
            row["task"]: row
            for row in await scheduler.db.fetchall(
                "SELECT task, last_run, last_ok, detail FROM scheduler_runs"
            )
        }
        at = datetime.fromisoformat(now)
        items = []
        for name, task in scheduler.tasks.items():
            row = rows.get(name)
            item: Item = {
                "componentId": name,
                "componentType": "component",
                "status": "warn" if row is not None and not row["last_ok"] else "pass",
                "schedule": task.cron or f"every {task.every:g}s",
                "nextRun": scheduler.next_run(task, at).isoformat(),
                "time": now,
            }
            if row is not None:
                item["lastRun"] = datetime.fromtimestamp(row["last_run"], UTC).isoformat()
                item["output"] = row["detail"]
            items.append(item)
        return items

    return run
