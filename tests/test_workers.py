"""A pool of workers per queue group: a hung upstream never stalls the reading of invoices, and a
job whose upstream gave no answer goes back to its queue without using up an attempt."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from facturasd.config import Config, load_config
from facturasd.constants import DATABASE_FILE, GROUP_QUEUES, QueueName, WorkerGroup
from facturasd.daemon import Daemon
from facturasd.errors import Unavailable
from facturasd.store.queue import Effect, Job
from tests.support import enqueue, query, write_config
from tests.test_inbox import drop, invoice

FILES = 12


def _config(tmp_path: Path, extra: str = "") -> Config:
    settings = '[inbox]\nstable_seconds = "200ms"\n[daemon]\nshutdown_timeout = "1s"\n'
    return load_config(write_config(tmp_path, settings + extra), {})


@pytest.mark.slow
@pytest.mark.anyio
async def test_invoices_are_checked_while_every_authority_worker_hangs(tmp_path: Path) -> None:
    config = await anyio.to_thread.run_sync(_config, tmp_path)
    hanging = config.workers.concurrency(WorkerGroup.AUTHORITIES)
    # More hung calls than there are workers in all: one pool for every queue would be stuck.
    waiting = hanging + config.workers.concurrency(WorkerGroup.LOCAL) + 1
    started: list[int] = []

    async def hang(job: Job) -> Effect | None:
        started.append(job.id)
        await anyio.sleep_forever()
        return None

    daemon = Daemon(config, handlers={"hang": hang})
    db_path = config.paths.state_dir / DATABASE_FILE

    def states() -> list[tuple[object, ...]]:
        return query(db_path, "SELECT state FROM invoices")

    async with anyio.create_task_group() as tg:
        tg.start_soon(daemon.run)
        with anyio.fail_after(120):
            while not db_path.exists() or not config.paths.inbox.is_dir():
                await anyio.sleep(0.05)
            await anyio.to_thread.run_sync(
                enqueue,
                db_path,
                [(QueueName.DIAN_VALIDATION.value, "hang", {})] * waiting,
                config.queues,
            )
            while len(started) < hanging:
                await anyio.sleep(0.05)
            for n in range(FILES):
                drop(config.paths.inbox, f"factura-{n}.xml", invoice(n + 1))
            while (await anyio.to_thread.run_sync(states)).count(("checked",)) < FILES:
                await anyio.sleep(0.05)
        assert len(started) == hanging  # still blocked, all of them, and no more
        daemon.stop()
    jobs = query(db_path, "SELECT state, COUNT(*) FROM jobs WHERE kind = 'hang' GROUP BY state")
    assert dict(jobs) == {"queued": waiting}  # handed back at shutdown, uncounted


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_job_without_an_answer_goes_back_uncounted(tmp_path: Path) -> None:
    config = await anyio.to_thread.run_sync(
        _config, tmp_path, "[queues.alegra_sync]\nmax_attempts = 2\n"
    )
    calls = 0

    async def flaky_upstream(job: Job) -> Effect | None:
        nonlocal calls
        calls += 1
        if calls <= 5:  # more times than the job has attempts
            raise Unavailable("alegra", "connection refused", 0)
        return None

    daemon = Daemon(config, handlers={"book": flaky_upstream})
    db_path = config.paths.state_dir / DATABASE_FILE
    assert QueueName.ALEGRA_SYNC in GROUP_QUEUES[WorkerGroup.ALEGRA]
    async with anyio.create_task_group() as tg:
        tg.start_soon(daemon.run)
        with anyio.fail_after(60):
            while not db_path.exists():
                await anyio.sleep(0.05)
            [job_id] = await anyio.to_thread.run_sync(
                enqueue, db_path, [(QueueName.ALEGRA_SYNC.value, "book", {})], config.queues
            )

            def row() -> list[tuple[object, ...]]:
                return query(db_path, "SELECT state, attempts FROM jobs WHERE id = ?", (job_id,))

            while (await anyio.to_thread.run_sync(row))[0][0] != "done":
                await anyio.sleep(0.05)
        daemon.stop()
    assert calls == 6
    assert query(db_path, "SELECT state, attempts, last_error FROM jobs") == [
        ("done", 1, "alegra gave no answer: connection refused")
    ]
