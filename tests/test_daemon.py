"""The daemon as a whole: supervisor, worker pool, sd_notify, /health, shutdown, the lock."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from blockbuster import BlockBuster

from facturasd import __version__
from facturasd.config import Config, load_config
from facturasd.constants import DATABASE_FILE, JobState
from facturasd.daemon import Component, Daemon, Supervisor
from facturasd.errors import JobFailed, RetryLater
from facturasd.store.db import Database
from facturasd.store.queue import Effect, Job, Queue
from facturasd.systemd import Notifier
from facturasd.workers import WorkerPool
from tests.support import (
    SHIPPED_CONFIG,
    DaemonProcess,
    NotifySocket,
    daemon_env,
    enqueue,
    free_port,
    get_health,
    query,
    wait_healthy,
    wait_until,
    write_config,
)

Q = "invoice_processing"


# ── in the test's own event loop, guarded by blockbuster ──────────────────────────────────


@asynccontextmanager
async def running(daemon: Daemon) -> AsyncIterator[httpx.AsyncClient]:
    port = daemon.config.http.port
    async with (
        anyio.create_task_group() as tg,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
    ):
        tg.start_soon(daemon.run)
        with anyio.fail_after(30):
            while True:
                try:
                    await client.get("/health")
                    break
                except httpx.TransportError:
                    await anyio.sleep(0.05)
        try:
            yield client
        finally:
            daemon.stop()


def config_for(tmp_path: Path, extra: str = "") -> Config:
    return load_config(write_config(tmp_path, extra), {})


def checks_of(report: dict[str, object], key: str) -> dict[str, dict[str, object]]:
    items = report["checks"][key]  # type: ignore[index]
    return {item.get("componentId", key): item for item in items}  # type: ignore[union-attr]


@pytest.mark.slow
@pytest.mark.anyio
async def test_crashing_component_is_restarted_and_shown_degraded(
    tmp_path: Path, blockbuster: BlockBuster
) -> None:
    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("first run fails")
        await anyio.sleep_forever()

    async def never() -> None:
        raise AssertionError("a disabled component must not run")

    daemon = Daemon(
        await anyio.to_thread.run_sync(config_for, tmp_path),
        components=[Component("flaky", flaky), Component("alegra", never, enabled=False)],
    )
    async with running(daemon) as client:
        with anyio.fail_after(30):
            while runs < 2:
                await anyio.sleep(0.05)
        response = await client.get("/health")
        report = response.json()
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/health+json")
        components = checks_of(report, "supervisor:components")
        assert components["flaky"]["state"] == "degraded"
        assert components["flaky"]["restarts"] == 1
        assert components["flaky"]["lastError"] == "RuntimeError"
        assert components["workers:local"]["state"] == "running"
        assert components["alegra"]["state"] == "disabled"
        assert components["alegra"]["status"] == "pass"
        assert report["status"] == "warn"
        assert 0.0 < report["score"] < 1.0
        assert checks_of(report, "workers:alive")["local"]["observedValue"] == 8


@pytest.mark.slow
@pytest.mark.anyio
async def test_worker_pool_completes_retries_and_kills_jobs(
    tmp_path: Path, blockbuster: BlockBuster
) -> None:
    seen: list[int] = []

    async def later(job: Job) -> Effect | None:
        seen.append(job.attempts)
        if len(seen) == 1:
            raise RetryLater("authority not ready", delay=0.2)
        return None

    async def hopeless(job: Job) -> Effect | None:
        raise JobFailed("the file is gone")

    async def broken_effect(job: Job) -> Effect | None:
        def effect(conn: sqlite3.Connection) -> None:
            raise RuntimeError("effect broke")

        return effect

    config = await anyio.to_thread.run_sync(
        config_for, tmp_path, "[queues.invoice_processing]\nmax_attempts = 1\n"
    )
    daemon = Daemon(
        config, handlers={"later": later, "hopeless": hopeless, "broken": broken_effect}
    )
    db_path = config.paths.state_dir / DATABASE_FILE
    async with running(daemon) as client:
        ids = await anyio.to_thread.run_sync(
            enqueue,
            db_path,
            [
                (Q, "ping", {}),
                (Q, "ping", {"fail": "kaput"}),
                (Q, "no-such-kind", {}),
                (Q, "later", {}),
                ("alegra_sync", "hopeless", {}),  # five attempts there, yet dead at once
                (Q, "broken", {}),
            ],
            config.queues,
        )

        def states() -> list[tuple[object, ...]]:
            return query(db_path, "SELECT id, state, attempts, last_error FROM jobs ORDER BY id")

        with anyio.fail_after(30):
            while any(
                row[1] in ("queued", "running") for row in await anyio.to_thread.run_sync(states)
            ):
                await anyio.sleep(0.05)
        report = (await client.get("/health")).json()
    # a failing effect is a failed attempt of its job, not a crash of the pool
    assert checks_of(report, "workers:alive")["local"]["observedValue"] == 8
    assert checks_of(report, "supervisor:components")["workers:local"]["restarts"] == 0
    rows = {row[0]: row[1:] for row in states()}
    assert rows[ids[0]] == ("done", 1, None)
    assert rows[ids[1]] == ("dead", 1, "RuntimeError: kaput")
    assert rows[ids[2]] == ("dead", 1, "no handler for job kind 'no-such-kind'")
    assert rows[ids[3]][:2] == ("done", 1)  # deferring did not use up its one attempt
    assert rows[ids[4]] == ("dead", 1, "the file is gone")
    assert rows[ids[5]] == ("dead", 1, "RuntimeError: effect broke")
    assert seen == [1, 1]


@pytest.mark.anyio
async def test_a_long_job_keeps_its_lease_and_one_that_lost_it_is_stopped(
    tmp_path: Path, blockbuster: BlockBuster
) -> None:
    db = await Database.open(tmp_path / DATABASE_FILE)
    queue = Queue(db)
    runs: list[str] = []
    stopped: list[int] = []

    async def slow(job: Job) -> Effect | None:
        runs.append(job.payload["name"])
        try:
            await anyio.sleep(job.payload["seconds"])
        except anyio.get_cancelled_exc_class():
            stopped.append(job.id)
            raise

        def effect(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO kv VALUES (?, 'applied', 0)", (job.payload["name"],))

        return effect

    pool = WorkerPool(queue, {"slow": slow}, name="local", queues=[Q], concurrency=2, lease=0.3)
    long = await queue.enqueue(Q, "slow", {"name": "long", "seconds": 1.5})
    taken = await queue.enqueue(Q, "slow", {"name": "taken", "seconds": 5})
    async with anyio.create_task_group() as tg:
        tg.start_soon(pool.run)
        with anyio.fail_after(10):
            while len(runs) < 2:
                await anyio.sleep(0.02)

            # Another worker took this one over (as after a lease expired elsewhere).
            def steal(conn: sqlite3.Connection) -> None:
                conn.execute(
                    "UPDATE jobs SET lease_token = 'theirs', lease_until = ? WHERE id = ?",
                    (time.time() + 3600, taken.id),
                )

            await db.write(steal)
            while (done := await queue.get(long.id)) is None or done.state != JobState.DONE:
                await anyio.sleep(0.05)
        pool.stop()
        await pool.drained()
    await db.close()
    # five lease periods long, kept all along: run once, its effect applied
    assert runs == ["long", "taken"] and done.attempts == 1
    # the one whose lease was lost was stopped at the next renewal, its effect never applied
    assert stopped == [taken.id]
    assert query(db.path, "SELECT key FROM kv") == [("long",)]


@pytest.mark.anyio
async def test_supervisor_backs_off_exponentially_up_to_its_cap() -> None:
    delays: list[float] = []
    runs = 0

    async def record(delay: float) -> None:
        delays.append(delay)

    async def crashy() -> None:
        nonlocal runs
        runs += 1
        if runs <= 5:
            raise ExceptionGroup("task group", [OSError("disk gone")])
        if runs == 6:
            return  # returning while the daemon runs is a crash too
        supervisor.stopping = True

    supervisor = Supervisor(backoff_base=1, backoff_cap=8, sleep=record)
    await supervisor.supervise(Component("crashy", crashy))
    assert delays == [1, 2, 4, 8, 8, 8]
    [view] = supervisor.views()
    assert (view.state, view.restarts, view.last_error) == ("stopped", 6, "RuntimeError")


def test_notifier_speaks_to_abstract_and_path_sockets(tmp_path: Path) -> None:
    for address in (f"@facturasd-test-{time.monotonic_ns()}", str(tmp_path / "notify.sock")):
        listener = NotifySocket(address)
        try:
            notifier = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "3000000"})
            assert notifier.watchdog_interval == 1.5
            notifier.ready("ready: 4 workers")
            notifier.watchdog()
            assert listener.wait_for("WATCHDOG=1", 5) == [
                "READY=1\nSTATUS=ready: 4 workers",
                "WATCHDOG=1",
            ]
        finally:
            listener.close()
    silent = Notifier({})
    silent.ready("nobody listens")  # a no-op without NOTIFY_SOCKET
    assert silent.watchdog_interval is None
    assert Notifier({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_interval is None


# ── the real daemon in a subprocess ───────────────────────────────────────────────────────


@pytest.mark.slow
def test_shipped_config_is_ready_healthy_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    listener = NotifySocket(str(tmp_path / "notify.sock"))
    env = daemon_env(
        NOTIFY_SOCKET=listener.address,
        WATCHDOG_USEC="1000000",
        FACTURASD_HTTP__BIND=f"127.0.0.1:{port}",
        **{
            f"FACTURASD_PATHS__{k.upper()}": str(tmp_path / k)
            for k in ("state_dir", "inbox", "archive", "rejected", "duplicates", "reports")
        },
    )
    daemon = DaemonProcess(SHIPPED_CONFIG, env, log_dir=tmp_path)
    try:
        listener.wait_for("READY=1")
        response = get_health(port)
        assert response.status_code == 200
        report = response.json()
        assert (report["status"], report["score"]) == ("pass", 1.0)
        assert report["version"] == __version__
        assert set(report["checks"]) == {
            "database:write",
            "database:file",
            "workers:alive",
            "workers:failures",
            "queues:depth",
            "supervisor:components",
            "disk:free",
            "inbox:unreadable",
            "folders:writable",
            "authorities:sat",
            "authorities:dian",
            "scheduler:tasks",
            "notify:log",
        }
        # A fresh start has nothing to recommend.
        assert report["recommendations"] == []
        listener.wait_for("WATCHDOG=1")
        started = time.monotonic()
        assert daemon.stop() == 0
        # About a second idle, two on a busy 2-core machine; the timeout it must not wait
        # out is 20 s.
        assert time.monotonic() - started < 10
        listener.wait_for("STOPPING=1", 5)
    finally:
        daemon.kill()
        listener.close()


@pytest.mark.slow
def test_sigterm_lets_the_job_in_flight_finish(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    db_path = tmp_path / "state" / DATABASE_FILE
    [job_id] = enqueue(db_path, [(Q, "ping", {"sleep": 2})])
    daemon = DaemonProcess(config, daemon_env(), log_dir=tmp_path)
    try:
        wait_until(
            lambda: query(db_path, "SELECT state FROM jobs")[0][0] == "running",
            what="the job to start",
        )
        assert daemon.stop() == 0
        assert query(db_path, "SELECT state, attempts FROM jobs WHERE id = ?", (job_id,)) == [
            ("done", 1)
        ]
    finally:
        daemon.kill()


@pytest.mark.slow
def test_unfinished_job_is_handed_back_after_the_shutdown_timeout(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[daemon]\nshutdown_timeout = "1s"\n')
    db_path = tmp_path / "state" / DATABASE_FILE
    [job_id] = enqueue(db_path, [(Q, "ping", {"sleep": 600})])
    daemon = DaemonProcess(config, daemon_env(), "--log-format", "json", log_dir=tmp_path)
    try:
        wait_until(
            lambda: query(db_path, "SELECT state FROM jobs")[0][0] == "running",
            what="the job to start",
        )
        started = time.monotonic()
        assert daemon.stop() == 0
        # The one-second timeout, then the hand-back: about two seconds on a busy machine.
        assert time.monotonic() - started < 10
        assert query(db_path, "SELECT state, attempts, last_error FROM jobs") == [
            ("queued", 0, "interrupted by shutdown")
        ]
        lines = [json.loads(line) for line in daemon.stderr().splitlines()]
        assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
        [handed] = [line for line in lines if "handed back unfinished" in line["message"]]
        assert handed["job_id"] == job_id
    finally:
        daemon.kill()


@pytest.mark.slow
def test_a_second_daemon_on_the_same_state_dir_refuses_to_start(tmp_path: Path) -> None:
    port = free_port()
    first = DaemonProcess(write_config(tmp_path, port=port), daemon_env(), log_dir=tmp_path)
    try:
        wait_healthy(port, first)
        (tmp_path / "second").mkdir()
        second = DaemonProcess(
            write_config(tmp_path / "second"),
            daemon_env(FACTURASD_PATHS__STATE_DIR=str(tmp_path / "state")),
            log_dir=tmp_path,
        )
        assert second.proc.wait(30) == 1
        assert "already running with state directory" in second.stderr()
        assert f"pid {first.proc.pid}" in second.stderr()
        assert get_health(port).json()["status"] == "pass"
    finally:
        first.kill()


@pytest.mark.slow
def test_a_damaged_database_stops_the_daemon_with_a_clear_message(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / DATABASE_FILE).write_bytes(bytes(range(256)) * 64)
    daemon = DaemonProcess(config, daemon_env(), log_dir=tmp_path)
    try:
        assert daemon.proc.wait(30) == 1
        assert "cannot use the database: file is not a database" in daemon.stderr()
        assert "Traceback" not in daemon.stderr()
    finally:
        daemon.kill()


@pytest.mark.slow
def test_health_fails_with_503_while_the_database_cannot_be_written(tmp_path: Path) -> None:
    port = free_port()
    daemon = DaemonProcess(write_config(tmp_path, port=port), daemon_env(), log_dir=tmp_path)
    try:
        assert wait_healthy(port, daemon).status_code == 200
        blocker = sqlite3.connect(tmp_path / "state" / DATABASE_FILE, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            # (a report is reused for a second: the next one sees the lock)
            seen: list[httpx.Response] = []
            wait_until(
                lambda: seen.append(get_health(port, timeout=30)) or seen[-1].status_code == 503,
                30,
                "/health to fail",
            )
            report = seen[-1].json()
            assert report["status"] == "fail"
            database = report["checks"]["database:write"][0]
            assert database["status"] == "fail"
            assert "did not commit" in database["output"] or "locked" in database["output"]
            # The workers' claims wait out SQLite's busy timeout, then fail.
            wait_until(
                lambda: "database unavailable: database is locked" in daemon.stderr(),
                30,
                "a worker to find the database locked",
            )
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        wait_until(
            lambda: get_health(port, timeout=30).status_code == 200,
            30,
            "the database to be writable again",
        )
        report = get_health(port).json()
        assert report["status"] == "pass", report  # workers waited; nothing crashed
        assert report["checks"]["supervisor:components"][0]["restarts"] == 0
        assert daemon.stop() == 0
    finally:
        daemon.kill()
