"""Worker pools: each claims jobs from its group's queues and runs the handler registered for
each job kind. One pool per group (constants.GROUP_QUEUES), each with its own concurrency, so
eight hung calls to an upstream never stop the parsing of the office's invoices."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

import anyio

from facturasd.clock import Clock, utcnow
from facturasd.constants import JobState
from facturasd.errors import JobFailed, LeaseLost, RetryLater, StoreUnavailable
from facturasd.logs import job_id_var
from facturasd.monitoring.tally import Tally
from facturasd.store.queue import Effect, Job, Queue, backoff

if TYPE_CHECKING:
    from facturasd.monitoring.metrics import Metrics

log = logging.getLogger(__name__)

Handler = Callable[[Job], Awaitable[Effect | None]]

POLL_INTERVAL = 1.0
DB_RETRY = 5.0


async def ping(job: Job) -> Effect | None:
    """A job kind for tests and `doctor`: waits `sleep` seconds, fails if asked to."""
    await anyio.sleep(float(job.payload.get("sleep", 0)))
    if reason := job.payload.get("fail"):
        raise RuntimeError(str(reason))
    return None


BUILTIN_HANDLERS: Mapping[str, Handler] = {"ping": ping}


class Outcome(StrEnum):
    """How a pool settled a job, as the metrics count it."""

    DONE = "done"
    FAILED = "failed"  # an attempt counted; the job runs again after its backoff
    DEAD = "dead"
    HANDED_BACK = "handed_back"  # uncounted: no upstream answer, later asked, or shutdown


class WorkerPool:
    def __init__(
        self,
        queue: Queue,
        handlers: Mapping[str, Handler],
        *,
        name: str,
        queues: Sequence[str],
        concurrency: int,
        lease: float,
        clock: Clock = utcnow,
        metrics: Metrics | None = None,
    ):
        self.queue = queue
        self.name = name  # the group's, in logs and /health
        self.handlers = dict(handlers)
        self.queues = list(queues)
        self.concurrency = concurrency
        self.lease = lease
        self._clock = clock
        self._metrics = metrics
        # Answers only: a job handed back for want of an upstream's answer is neither.
        self.tally = Tally(clock=clock)
        self.last_claim = clock().timestamp()  # (since it started: no alarm before a minute)
        self._stopping = False
        self._idle = anyio.Event()
        self.alive = 0
        self.busy = 0
        self._running: dict[str | None, _Running] = {}  # by lease token

    def stop(self) -> None:
        """Stop claiming; jobs in flight run to their end."""
        self._stopping = True
        for queue in self.queues:
            self.queue.wake(queue)

    async def drained(self) -> None:
        """Returns once every worker has stopped (after `stop()`)."""
        await self._idle.wait()

    async def run(self) -> None:
        self._idle = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._keep_leases)
            async with anyio.create_task_group() as workers:
                for _ in range(self.concurrency):
                    workers.start_soon(self._work)
            tg.cancel_scope.cancel()  # every worker has stopped: no lease left to keep
        with anyio.CancelScope(shield=True):
            await self.queue.release_handed()

    async def _work(self) -> None:
        self.alive += 1
        try:
            while not self._stopping:
                # A worker never dies of one bad step: it would take the other workers, and
                # their jobs in flight, down with it.
                try:
                    await self._step()
                except StoreUnavailable as exc:
                    log.warning("database unavailable: %s; trying again in %.0fs", exc, DB_RETRY)
                    await anyio.sleep(DB_RETRY)
                except Exception:
                    log.exception("worker step failed; trying again in %.0fs", DB_RETRY)
                    await anyio.sleep(DB_RETRY)
        finally:
            self.alive -= 1
            if not self.alive:
                self._idle.set()

    async def _step(self) -> None:
        job = await self.queue.claim(self.queues, self.lease)
        if job is None:
            due = await self.queue.next_ready_in(self.queues)
            await self.queue.wait_for_work(self.queues, min(POLL_INTERVAL, due or POLL_INTERVAL))
            return
        self.last_claim = self._clock().timestamp()
        self.busy += 1
        try:
            await self._run(job)
        finally:
            self.busy -= 1

    async def _run(self, job: Job) -> None:
        token = job_id_var.set(job.id)
        started = time.perf_counter()
        outcome: Outcome | None = None  # (none when the outcome could not be recorded)
        try:
            outcome = await self._attempt(job)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self.queue.release(job, reason="interrupted by shutdown")
            log.info("job %d (%s) handed back unfinished", job.id, job.kind)
            outcome = Outcome.HANDED_BACK
            raise
        finally:
            job_id_var.reset(token)
            if self._metrics is not None and outcome is not None:
                self._metrics.job(self.name, job.kind, outcome, time.perf_counter() - started)

    async def _attempt(self, job: Job) -> Outcome | None:
        """The job run and its outcome recorded; None when its lease was lost meanwhile (the
        job is in other hands, which settle it)."""
        handler = self.handlers.get(job.kind)
        if handler is None:
            error = f"no handler for job kind {job.kind!r}"
            await self.queue.fail(job, error, permanent=True)
            self.tally.failed(error)
            log.error("job %d has unknown kind %r: marked dead", job.id, job.kind)
            return Outcome.DEAD
        key = job.lease_token  # (a job id can be in two hands: one whose lease expired)
        with anyio.CancelScope() as scope:
            running = self._running[key] = _Running(job, scope)
            try:
                running.effect = await handler(job)
            except Exception as exc:
                running.error = exc
            finally:
                self._running.pop(key, None)
        try:
            return await self._settle(running)
        except LeaseLost as exc:
            log.warning("%s; its result is dropped", exc)
            return None
        except RetryLater as exc:
            # The effect found the world changed since the handler looked: run again.
            await self.queue.release(job, self._clock() + timedelta(seconds=exc.delay), str(exc))
            log.info("job %d (%s) runs again: %s", job.id, job.kind, exc)
            return Outcome.HANDED_BACK
        except Exception as exc:
            # The handler's effect raised, or the outcome could not be written: a failed
            # attempt. If even that cannot be written, the lease runs out and the job reruns.
            return await self._record_failure(job, exc)

    async def _settle(self, running: _Running) -> Outcome:
        job, error = running.job, running.error
        if running.lost is not None:
            raise running.lost
        if error is None:
            await self.queue.complete(job, running.effect)
            self.tally.succeeded()
            log.debug("job %d (%s) done", job.id, job.kind)
            return Outcome.DONE
        if isinstance(error, RetryLater):
            await self.queue.release(
                job, self._clock() + timedelta(seconds=error.delay), str(error)
            )
            # (debug: the handler says why, once, where it knows what a person can do)
            log.debug("job %d (%s) deferred %.0fs: %s", job.id, job.kind, error.delay, error)
            return Outcome.HANDED_BACK
        if isinstance(error, JobFailed):
            await self.queue.fail(job, str(error), permanent=True)
            self.tally.failed(error)
            log.error("job %d (%s) failed for good: %s", job.id, job.kind, error)
            return Outcome.DEAD
        return await self._record_failure(job, error)

    async def _record_failure(self, job: Job, error: BaseException) -> Outcome:
        text = f"{type(error).__name__}: {error}"
        self.tally.failed(error)
        state = await self.queue.fail(job, text, self._clock() + backoff(job.attempts))
        log.error(
            "job %d (%s) attempt %d/%d raised %s; now %s",
            job.id,
            job.kind,
            job.attempts,
            job.max_attempts,
            text,
            state.value,
            exc_info=error,
        )
        return Outcome.DEAD if state is JobState.DEAD else Outcome.FAILED

    async def _keep_leases(self) -> None:
        """Renews the leases of the jobs running long (every third of a lease); a job whose
        lease was lost anyway (it ran again elsewhere) is stopped."""
        while True:
            await anyio.sleep(self.lease / 3)
            for running in list(self._running.values()):
                try:
                    await self.queue.extend(running.job, self.lease)
                except LeaseLost as exc:
                    running.lost = exc
                    running.scope.cancel()
                except Exception as exc:  # the database, say: the next round tries again
                    log.warning("job %d: lease not renewed (%s); trying again", running.job.id, exc)


@dataclass
class _Running:
    """A job in a worker's hands: what stops it, and its outcome."""

    job: Job
    scope: anyio.CancelScope
    effect: Effect | None = None
    error: Exception | None = None
    lost: LeaseLost | None = None
