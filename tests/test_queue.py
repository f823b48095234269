from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import aiosqlite
import anyio
import anyio.streams.buffered
import pytest

from facturasd.config import QueueSettings, RateLimit
from facturasd.constants import JobState, QueueName
from facturasd.errors import LeaseLost, SchemaTooNew, StoreError
from facturasd.store.db import Database, backup_file, migrate
from facturasd.store.migrations import MIGRATIONS
from facturasd.store.queue import Job, Queue
from tests.support import PYTHON

pytestmark = pytest.mark.anyio

Q = QueueName.INVOICE_PROCESSING.value


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "facturasd.db")
    yield database
    await database.close()


@pytest.fixture
def queue(db: Database, clock: FakeClock) -> Queue:
    settings = {
        QueueName.INVOICE_PROCESSING: QueueSettings(max_attempts=2),
        QueueName.ALEGRA_SYNC: QueueSettings(rate_limit=RateLimit(3, 60.0)),
    }
    return Queue(db, settings, clock=clock)


def raw(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


# ── enqueue and dedupe ────────────────────────────────────────────────────────────────────


async def test_live_job_with_same_dedupe_key_is_returned_not_duplicated(queue: Queue) -> None:
    first = await queue.enqueue(Q, "ping", {"n": 1}, dedupe_key="ingest:abc")
    again = await queue.enqueue(Q, "ping", {"n": 2}, dedupe_key="ingest:abc")
    other = await queue.enqueue(Q, "ping", {"n": 3}, dedupe_key="ingest:def")
    assert again.id == first.id and again.payload == {"n": 1}
    assert other.id != first.id

    job = await queue.claim([Q], lease=60)
    assert job is not None and job.id == first.id
    running = await queue.enqueue(Q, "ping", {}, dedupe_key="ingest:abc")
    assert running.id == first.id  # running jobs are live too
    await queue.complete(job)
    after = await queue.enqueue(Q, "ping", {"n": 4}, dedupe_key="ingest:abc")
    assert after.id not in (first.id, other.id)  # once done, the key is free again


async def test_claim_order_is_priority_then_age_and_respects_run_at(
    queue: Queue, clock: FakeClock
) -> None:
    low = await queue.enqueue(Q, "ping", {"n": "low"})
    high = await queue.enqueue(Q, "ping", {"n": "high"}, priority=5)
    later = await queue.enqueue(
        Q, "ping", {"n": "later"}, priority=9, run_at=clock.now + timedelta(minutes=5)
    )
    claimed = [await queue.claim([Q], 60) for _ in range(3)]
    assert [j.id if j else None for j in claimed] == [high.id, low.id, None]
    assert await queue.next_ready_in([Q]) == pytest.approx(300)
    clock.advance(300)
    job = await queue.claim([Q], 60)
    assert job is not None and job.id == later.id


async def test_claims_only_from_the_queues_asked(queue: Queue) -> None:
    await queue.enqueue(QueueName.REPORT_GENERATION, "ping", {})
    assert await queue.claim([Q], 60) is None
    assert await queue.claim([QueueName.REPORT_GENERATION], 60) is not None


# ── exclusivity ───────────────────────────────────────────────────────────────────────────


async def test_concurrent_claimers_in_one_process_never_share_a_job(queue: Queue) -> None:
    jobs = [await queue.enqueue(Q, "ping", {"n": n}) for n in range(300)]
    claimed: list[int] = []

    async def claimer() -> None:
        while (job := await queue.claim([Q], 60)) is not None:
            claimed.append(job.id)
            await queue.complete(job)

    async with anyio.create_task_group() as tg:
        for _ in range(16):
            tg.start_soon(claimer)
    assert sorted(claimed) == sorted(j.id for j in jobs)


CLAIMER = """
import anyio, json, sys
from pathlib import Path
from facturasd.store.db import Database
from facturasd.store.queue import Queue

async def main():
    db = await Database.open(Path(sys.argv[1]))
    queue = Queue(db)
    ids = []
    print("ready", flush=True)
    while not Path(sys.argv[2]).exists():  # both processes start claiming together
        await anyio.sleep(0.01)
    async def worker():
        while (job := await queue.claim(["invoice_processing"], 60)) is not None:
            ids.append(job.id)
            # A handler takes time: without it one process can hold the write lock back to
            # back while the other's busy handler sleeps, and drain the queue alone.
            await anyio.sleep(0.005)
            await queue.complete(job)
    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(worker)
    await db.close()
    print(json.dumps(ids))

anyio.run(main)
"""


async def test_two_processes_on_one_file_never_share_a_job(queue: Queue, db: Database) -> None:
    jobs = [await queue.enqueue(Q, "ping", {"n": n}) for n in range(400)]
    go = db.path.with_name("go")
    procs = [
        await anyio.open_process([PYTHON, "-c", CLAIMER, str(db.path), str(go)]) for _ in range(2)
    ]
    streams = []
    for proc in procs:
        assert proc.stdout is not None
        stream = anyio.streams.buffered.BufferedByteReceiveStream(proc.stdout)
        with anyio.fail_after(90):
            assert await stream.receive_until(b"\n", 100) == b"ready"
        streams.append(stream)
    await anyio.Path(go).touch()  # both start claiming together
    outputs = []
    for proc, stream in zip(procs, streams, strict=True):
        data = b""
        with anyio.fail_after(90):
            while True:
                try:
                    data += await stream.receive()
                except anyio.EndOfStream:
                    break
            assert await proc.wait() == 0
        outputs.append(json.loads(data))
    first, second = map(set, outputs)
    assert first and second, "both processes should have claimed work"
    assert not first & second
    assert first | second == {j.id for j in jobs}


# ── leases ────────────────────────────────────────────────────────────────────────────────


async def test_expired_lease_is_reclaimed_and_the_late_worker_cannot_complete(
    queue: Queue, db: Database, clock: FakeClock
) -> None:
    await queue.enqueue(Q, "ping", {})
    first = await queue.claim([Q], lease=60)
    assert first is not None
    clock.advance(59)
    assert await queue.claim([Q], 60) is None  # still leased
    clock.advance(2)
    second = await queue.claim([Q], lease=60)
    assert second is not None and second.id == first.id and second.attempts == 2

    effect_ran = []

    def effect(conn: sqlite3.Connection) -> None:
        effect_ran.append(True)

    with pytest.raises(LeaseLost):
        await queue.complete(first, effect)
    assert effect_ran == []
    await queue.complete(second)
    done = await queue.get(first.id)
    assert done is not None and done.state is JobState.DONE


async def test_extending_a_lease_keeps_the_job(queue: Queue, clock: FakeClock) -> None:
    await queue.enqueue(Q, "ping", {})
    job = await queue.claim([Q], lease=60)
    assert job is not None
    for _ in range(5):
        clock.advance(50)
        await queue.extend(job, 60)
    assert await queue.claim([Q], 60) is None
    clock.advance(61)
    assert await queue.claim([Q], 60) is not None
    with pytest.raises(LeaseLost):
        await queue.extend(job, 60)


async def test_out_of_attempts_after_lease_expiry_is_dead(queue: Queue, clock: FakeClock) -> None:
    await queue.enqueue(Q, "ping", {})  # max_attempts = 2 on this queue
    for _ in range(2):
        assert await queue.claim([Q], 10) is not None
        clock.advance(11)
    assert await queue.claim([Q], 10) is None
    [job] = await queue.find(state=JobState.DEAD)
    assert job.last_error == "lease expired: the worker stopped or was killed"


async def test_orphans_are_handed_back_at_start_up(queue: Queue) -> None:
    await queue.enqueue(Q, "ping", {})
    assert await queue.claim([Q], lease=3600) is not None
    assert await queue.recover_orphans() == 1
    job = await queue.claim([Q], 60)
    assert job is not None and job.attempts == 2


async def test_release_does_not_count_the_attempt(queue: Queue, clock: FakeClock) -> None:
    await queue.enqueue(Q, "ping", {})
    job = await queue.claim([Q], 60)
    assert job is not None
    await queue.release(job, clock.now + timedelta(seconds=30), "SAT says later")
    assert await queue.claim([Q], 60) is None
    clock.advance(30)
    again = await queue.claim([Q], 60)
    assert again is not None and again.attempts == 1 and again.last_error == "SAT says later"


# ── failure and dead jobs ─────────────────────────────────────────────────────────────────


async def test_failed_jobs_retry_then_die_and_can_be_run_again(
    queue: Queue, clock: FakeClock
) -> None:
    await queue.enqueue(Q, "ping", {})
    job = await queue.claim([Q], 60)
    assert job is not None
    assert await queue.fail(job, "boom 1", clock.now + timedelta(seconds=20)) is JobState.QUEUED
    assert await queue.claim([Q], 60) is None  # waits for retry_at
    clock.advance(20)
    job = await queue.claim([Q], 60)
    assert job is not None
    assert await queue.fail(job, "boom 2", clock.now) is JobState.DEAD

    [dead] = await queue.find(state=JobState.DEAD)
    assert (dead.last_error, dead.attempts) == ("boom 2", 2)
    [stats] = [s for s in await queue.stats([Q]) if s.name == Q]
    assert stats.counts["dead"] == 1 and stats.depth == 0

    revived = await queue.requeue(dead.id)
    assert (revived.state, revived.attempts) == (JobState.QUEUED, 0)
    assert await queue.claim([Q], 60) is not None
    with pytest.raises(StoreError, match="no dead job"):
        await queue.requeue(dead.id)


async def test_permanent_failure_is_dead_at_once(queue: Queue) -> None:
    await queue.enqueue(QueueName.TAX_VALIDATION, "ping", {})
    job = await queue.claim([QueueName.TAX_VALIDATION], 60)
    assert job is not None and job.max_attempts == 5
    assert await queue.fail(job, "no handler", permanent=True) is JobState.DEAD


async def test_effect_and_completion_commit_together_or_not_at_all(
    queue: Queue, db: Database
) -> None:
    await queue.enqueue(Q, "ping", {})
    job = await queue.claim([Q], 60)
    assert job is not None

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO kv VALUES ('effect', 'half', 0)")
        raise RuntimeError("effect failed half-way")

    with pytest.raises(RuntimeError):
        await queue.complete(job, broken)
    assert raw(db.path, "SELECT * FROM kv WHERE key = 'effect'") == []
    still = await queue.get(job.id)
    assert still is not None and still.state is JobState.RUNNING

    def good(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO kv VALUES ('effect', 'whole', 0)")

    await queue.complete(job, good)
    assert raw(db.path, "SELECT value FROM kv WHERE key = 'effect'") == [("whole",)]


# ── rate limits ───────────────────────────────────────────────────────────────────────────


async def test_rate_limit_caps_claims_per_window(queue: Queue, clock: FakeClock) -> None:
    sync = QueueName.ALEGRA_SYNC.value  # 3/m in this fixture
    for n in range(5):
        await queue.enqueue(sync, "ping", {"n": n})
    await queue.enqueue(Q, "ping", {})
    got = [await queue.claim([sync], 3600) for _ in range(4)]
    assert [j is not None for j in got] == [True, True, True, False]
    assert await queue.claim([sync, Q], 3600) is not None  # other queues are not held up
    assert await queue.next_ready_in([sync]) == pytest.approx(60)
    clock.advance(30)
    assert await queue.claim([sync], 3600) is None
    clock.advance(30)
    assert await queue.claim([sync], 3600) is not None
    assert await queue.claim([sync], 3600) is not None
    assert await queue.claim([sync], 3600) is None  # all five claimed


# ── group commit ──────────────────────────────────────────────────────────────────────────


async def test_concurrent_writes_share_commits(queue: Queue, db: Database) -> None:
    before = db.stats.commits

    async def add(n: int) -> None:
        await queue.enqueue(Q, "ping", {"n": n})

    async with anyio.create_task_group() as tg:
        for n in range(200):
            tg.start_soon(add, n)
    commits = db.stats.commits - before
    assert raw(db.path, "SELECT COUNT(*) FROM jobs") == [(200,)]
    assert commits < 50, f"200 concurrent enqueues took {commits} commits"


async def test_a_job_added_claimed_is_handed_over_without_a_write(db: Database) -> None:
    queue = Queue(db, handoff=2)
    claims = [queue.reserve(Q, 60) for _ in range(3)]
    assert claims[2] is None  # room for two: the third is queued as usual

    def add_three(conn: sqlite3.Connection) -> list[Job]:
        return [
            queue.add(conn, queue=Q, kind="ping", payload={"n": n}, claim=claim)
            for n, claim in enumerate(claims)
        ]

    first, second, third = await db.write(add_three)
    assert [j.state for j in (first, second, third)] == [JobState.RUNNING] * 2 + [JobState.QUEUED]
    for claim, job in zip(claims, (first, second, third), strict=True):
        queue.hand_over(claim, job)
    commits = db.stats.commits
    taken = [await queue.claim([Q], 60), await queue.claim([Q], 60)]
    assert [j.id for j in taken if j] == [first.id, second.id]
    assert db.stats.commits == commits  # no write to take them
    fetched = await queue.claim([Q], 60)
    assert fetched is not None and fetched.id == third.id and fetched.attempts == 1
    for job in [*taken, fetched]:
        assert job is not None
        await queue.complete(job)
    assert raw(db.path, "SELECT state, attempts FROM jobs") == [("done", 1)] * 3


async def test_handed_over_jobs_do_not_starve_the_stored_ones_and_go_back_at_shutdown(
    db: Database,
) -> None:
    stored = await Queue(db).enqueue(QueueName.TAX_VALIDATION, "ping", {})
    queue = Queue(db, handoff=8)
    claims = [queue.reserve(Q, 60) for _ in range(5)]

    def add_five(conn: sqlite3.Connection) -> list[Job]:
        return [
            queue.add(conn, queue=Q, kind="ping", payload={"n": n}, claim=claim)
            for n, claim in enumerate(claims)
        ]

    handed = await db.write(add_five)
    for claim, job in zip(claims, handed, strict=True):
        queue.hand_over(claim, job)
    queues = [Q, QueueName.TAX_VALIDATION]
    taken = [await queue.claim(queues, 60) for _ in range(4)]
    # the fourth claim looks at the database first: the older stored job is not left waiting
    assert [j.id for j in taken if j] == [*(j.id for j in handed[:3]), stored.id]
    await queue.release_handed()
    rows = raw(db.path, "SELECT id, state, attempts FROM jobs WHERE state = 'queued' ORDER BY id")
    assert rows == [(j.id, "queued", 0) for j in handed[3:]]


async def test_a_job_added_claimed_by_a_process_that_died_runs_again(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "q.db")
    gone = Queue(db, handoff=4)
    claim = gone.reserve(Q, 60)
    job = await db.write(partial(gone.add, queue=Q, kind="ping", payload={}, claim=claim))
    assert job.state is JobState.RUNNING
    await db.close()  # never handed over: the process died
    db = await Database.open(tmp_path / "q.db")
    queue = Queue(db)
    assert await queue.recover_orphans() == 1
    again = await queue.claim([Q], 60)
    assert again is not None and again.id == job.id
    await db.close()


async def test_one_failing_operation_does_not_undo_its_batch(db: Database) -> None:
    async def put(key: str) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO kv VALUES (?, 'v', 0)", (key,))

        await db.write(op)

    outcomes: list[str] = []

    async def attempt(key: str) -> None:
        try:
            await put(key)
            outcomes.append("ok")
        except sqlite3.IntegrityError:
            outcomes.append("duplicate")

    async with anyio.create_task_group() as tg:
        for key in ["a", "b", "a", "c"]:
            tg.start_soon(attempt, key)
    assert sorted(outcomes) == ["duplicate", "ok", "ok", "ok"]
    assert raw(db.path, "SELECT key FROM kv ORDER BY key") == [("a",), ("b",), ("c",)]


async def in_one_batch(db: Database, *writers: Callable[[], Awaitable[object]]) -> None:
    """Runs `writers` concurrently, in this order, their writes committed as one batch: the
    writer is kept busy until every one of them waits for it."""
    gate = threading.Event()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(db.write, lambda conn: gate.wait(10))
            await anyio.wait_all_tasks_blocked()
            for writer in writers:
                tg.start_soon(writer)
            await anyio.wait_all_tasks_blocked()
            gate.set()
    finally:
        gate.set()


class EffectFailed(Exception):
    pass


async def test_a_batch_run_again_one_by_one_hands_over_what_committed_once(db: Database) -> None:
    queue = Queue(db, handoff=3)
    failed: list[int] = []

    async def ingest(n: int) -> None:
        """As the ingest does: a place reserved, the job added claimed, handed over."""
        claim = queue.reserve(Q, 60)

        def op(conn: sqlite3.Connection) -> Job:
            job = queue.add(conn, queue=Q, kind="ping", payload={"n": n}, claim=claim)
            if n == 1:
                raise EffectFailed("rolled back with its job")
            return job

        job = None
        try:
            job = await db.write(op)
        except EffectFailed:
            failed.append(n)
        finally:
            queue.hand_over(claim, job)

    before = db.stats.commits
    await in_one_batch(db, *(partial(ingest, n) for n in range(4)))
    # the held write, then the batch failed and its four ran again one by one: three commit
    assert db.stats.commits - before == 1 + 3
    assert failed == [1]
    # places for 0, 1 and 2 (the handoff is 3): 0 and 2 committed claimed, 3 found no place
    rows = raw(db.path, "SELECT payload, state, attempts FROM jobs ORDER BY id")
    assert rows == [
        ('{"n": 0}', "running", 1),
        ('{"n": 2}', "running", 1),
        ('{"n": 3}', "queued", 0),
    ]
    # two jobs wait in memory and no place is held by a write that failed: room for one more
    spare = [queue.reserve(Q, 60) for _ in range(2)]
    assert spare[0] is not None and spare[1] is None
    queue.hand_over(spare[0], None)
    commits = db.stats.commits
    handed = [await queue.claim([Q], 60), await queue.claim([Q], 60)]
    assert [j.payload for j in handed if j] == [{"n": 0}, {"n": 2}]
    assert db.stats.commits == commits  # taken from memory, each once
    stored = await queue.claim([Q], 60)
    assert stored is not None and stored.payload == {"n": 3}
    assert await queue.claim([Q], 60) is None


async def test_a_claim_run_again_after_its_batch_failed_still_reclaims_expired_leases(
    db: Database, clock: FakeClock
) -> None:
    queue = Queue(db, clock=clock)
    job = await queue.enqueue(Q, "ping", {})
    assert await queue.claim([Q], 60) is not None  # its worker is killed
    clock.advance(120)
    claimed: list[Job | None] = []

    async def claim() -> None:
        claimed.append(await queue.claim([Q], 60))

    async def fail() -> None:
        def op(conn: sqlite3.Connection) -> None:
            raise EffectFailed("rolls its batch back")

        with pytest.raises(EffectFailed):
            await db.write(op)

    await in_one_batch(db, claim, fail)
    assert [(j.id, j.attempts) for j in claimed if j] == [(job.id, 2)]


# ── migrations and backups ────────────────────────────────────────────────────────────────


def tables(path: Path) -> set[str]:
    return {row[0] for row in raw(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}


async def test_migrates_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    db = await Database.open(path)
    await db.close()
    assert {"invoices", "invoice_events", "jobs", "scheduler_runs", "kv"} <= tables(path)
    assert raw(path, "SELECT MAX(version) FROM schema_version") == [(len(MIGRATIONS),)]
    assert raw(path, "PRAGMA journal_mode") == [("wal",)]
    assert not (tmp_path / "backups").exists()  # nothing to back up in a new file


@pytest.mark.parametrize("version", range(len(MIGRATIONS)))
async def test_migrates_from_every_earlier_version(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.db"
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        await migrate(conn, path, tmp_path / "backups", MIGRATIONS[:version])
    db = await Database.open(path, backup_dir=tmp_path / "backups")
    await db.close()
    assert raw(path, "SELECT MAX(version) FROM schema_version") == [(len(MIGRATIONS),)]


async def test_backs_up_before_migrating(tmp_path: Path) -> None:
    path = tmp_path / "facturasd.db"
    db = await Database.open(path)
    await Queue(db).enqueue(Q, "ping", {"kept": True})
    await db.close()
    newer = (*MIGRATIONS, "CREATE TABLE later_feature (x INTEGER);")
    db = await Database.open(path, backup_dir=tmp_path / "backups", migrations=newer)
    await db.close()
    [copy] = (tmp_path / "backups").iterdir()
    assert copy.name.startswith(f"facturasd-v{len(MIGRATIONS)}-before-v{len(newer)}-")
    assert raw(copy, "SELECT payload FROM jobs") == [('{"kept": true}',)]
    assert "later_feature" not in tables(copy)
    assert "later_feature" in tables(path)


async def test_refuses_a_database_from_a_newer_version(tmp_path: Path) -> None:
    path = tmp_path / "facturasd.db"
    newer = (*MIGRATIONS, "CREATE TABLE later_feature (x INTEGER);")
    db = await Database.open(path, migrations=newer)
    await db.close()
    with pytest.raises(SchemaTooNew, match=rf"schema version {len(newer)} was written by a newer"):
        await Database.open(path)


async def test_online_backup_while_jobs_are_written(tmp_path: Path, queue: Queue) -> None:
    written = 0
    stop = anyio.Event()

    async def writer() -> None:
        nonlocal written
        while not stop.is_set():
            await queue.enqueue(Q, "ping", {"n": written})
            written += 1

    copies = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer)
        for n in range(3):
            await anyio.sleep(0.2)
            low = written
            result = await backup_file(queue.db.path, tmp_path / f"copy-{n}.db")
            copies.append((low, result.jobs, written))
        stop.set()
    for low, in_copy, high in copies:
        assert low <= in_copy <= high
        assert in_copy > 0
    assert raw(tmp_path / "copy-2.db", "PRAGMA integrity_check") == [("ok",)]
    with pytest.raises(StoreError, match="already exists"):
        await backup_file(queue.db.path, tmp_path / "copy-0.db")
    folder = tmp_path / "backups"
    folder.mkdir()
    result = await backup_file(queue.db.path, folder)
    assert result.path.parent == folder and result.path.name.startswith("facturasd-")


@pytest.mark.slow
def test_backup_command_refuses_without_a_database(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[paths]\nstate_dir = "nothing-here"\n')
    result = subprocess.run(
        [PYTHON, "-m", "facturasd", "backup", str(tmp_path / "x.db"), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "no database here" in result.stderr and "Traceback" not in result.stderr


async def test_an_effect_queues_the_next_stage_in_the_same_commit(
    queue: Queue, db: Database
) -> None:
    await queue.enqueue(Q, "ping", {"stage": 1})
    first = await queue.claim([Q], 60)
    assert first is not None

    def next_then_break(conn: sqlite3.Connection) -> None:
        queue.add(conn, queue=QueueName.TAX_VALIDATION, kind="ping", payload={"stage": 2})
        raise RuntimeError("crash after queuing")

    with pytest.raises(RuntimeError):
        await queue.complete(first, next_then_break)
    assert raw(db.path, "SELECT COUNT(*) FROM jobs WHERE queue = 'tax_validation'") == [(0,)]

    def next_stage(conn: sqlite3.Connection) -> None:
        queue.add(conn, queue=QueueName.TAX_VALIDATION, kind="ping", payload={"stage": 2})

    await queue.complete(first, next_stage)
    second = await queue.claim([QueueName.TAX_VALIDATION], 60)
    assert second is not None and second.payload == {"stage": 2}


async def test_a_damaged_database_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "facturasd.db"
    path.write_bytes(b"this is not a database, just forty bytes")
    with pytest.raises(StoreError, match="cannot use the database: file is not a database"):
        await Database.open(path)
