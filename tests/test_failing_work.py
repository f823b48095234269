"""/health fails when work fails: local work failing most of its attempts, or ready jobs that
no worker claims, is `fail` with the cause's first line; an upstream's trouble is `warn`. Dead
jobs run again with `facturasd jobs --retry-dead`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from facturasd.cli import main
from facturasd.constants import DATABASE_FILE, JobState, QueueName
from facturasd.monitoring.health import failures_probe, workers_probe
from facturasd.monitoring.tally import Tally
from facturasd.store.db import Database
from facturasd.store.queue import Queue
from tests.support import (
    DaemonProcess,
    daemon_env,
    drop,
    free_port,
    get_health,
    invoice,
    wait_healthy,
    wait_until,
    write_config,
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 29, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.mark.anyio
async def test_local_work_failing_is_fail_and_an_upstream_failing_is_warn() -> None:
    clock = Clock()
    local, upstream = Tally(clock=clock), Tally(clock=clock)
    probe = failures_probe({"local": (local, True), "alegra": (upstream, False)})
    for _ in range(2):
        local.failed(OSError("[Errno 13] Permission denied: '/opt/facturasd/bin/python'\nmore"))
        upstream.failed("alegra: HTTP 500")
    local.succeeded()
    items = {i["componentId"]: i for i in await probe(clock.now.isoformat())}
    assert items["local"]["status"] == "pass"  # two failures: not yet a pattern
    local.failed(OSError("[Errno 13] Permission denied: '/opt/facturasd/bin/python'"))
    upstream.failed("alegra: HTTP 500")
    items = {i["componentId"]: i for i in await probe(clock.now.isoformat())}
    assert items["local"]["status"] == "fail"
    assert (
        items["local"]["output"]
        == "OSError: [Errno 13] Permission denied: '/opt/facturasd/bin/python'"
    )
    assert (items["local"]["observedValue"], items["local"]["observedUnit"]) == (
        3,
        "failed of 4 in 120s",
    )
    assert items["alegra"]["status"] == "warn"
    # Minutes later, with nothing failing since, it is over.
    clock.now += timedelta(seconds=121)
    items = {i["componentId"]: i for i in await probe(clock.now.isoformat())}
    assert items["local"]["status"] == items["alegra"]["status"] == "pass"


@pytest.mark.anyio
async def test_retry_dead_runs_every_dead_job_again_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = write_config(tmp_path)
    db = await Database.open(tmp_path / "state" / DATABASE_FILE)
    try:
        queue = Queue(db)

        async def dead(name: str, key: str | None) -> int:
            job = await queue.enqueue(name, "ping", {}, dedupe_key=key)
            claimed = await queue.claim([name], 60)
            assert claimed is not None and claimed.id == job.id
            await queue.fail(claimed, "RuntimeError: broken", permanent=True)
            return job.id

        local = QueueName.INVOICE_PROCESSING.value
        first = await dead(local, "process:1")
        again = await dead(local, "process:1")  # the same work died twice: run it once
        held = await dead(local, "process:2")
        live = await queue.enqueue(local, "ping", {}, dedupe_key="process:2")
        other = await dead(QueueName.REPORT_GENERATION.value, None)
    finally:
        await db.close()

    def retry(*args: str) -> list[int]:
        assert main(["jobs", "--retry-dead", "--json", "--config", str(config_file), *args]) == 0
        return sorted(row["id"] for row in json.loads(capsys.readouterr().out))

    assert await anyio.to_thread.run_sync(retry, "--queue", local) == [again]
    assert await anyio.to_thread.run_sync(retry) == [other]
    db = await Database.open(tmp_path / "state" / DATABASE_FILE)
    try:
        states = {j.id: (j.state, j.attempts) for j in await Queue(db).find(limit=10)}
    finally:
        await db.close()
    assert states[again] == states[other] == (JobState.QUEUED, 0)
    assert states[first][0] is states[held][0] is JobState.DEAD  # ran again as `again`; held
    assert states[live.id][0] is JobState.QUEUED


# A Python that starts for the daemon but not for its parse processes, as when the service
# user cannot execute the venv's interpreter for them.
BROKEN_WORKERS = """\
import os, sys
if "facturasd.processpool" in sys.orig_argv:
    sys.stderr.write("cannot execute the interpreter: Permission denied\\n")
    os._exit(126)
"""


@pytest.mark.slow
def test_health_fails_within_a_minute_when_no_file_can_be_parsed(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BROKEN_WORKERS, encoding="utf-8")
    port = free_port()
    config = write_config(tmp_path, '[inbox]\nstable_seconds = "300ms"\n', port=port)
    daemon = DaemonProcess(config, daemon_env(PYTHONPATH=str(site)), log_dir=tmp_path)
    try:
        assert wait_healthy(port, daemon).json()["status"] == "pass"
        for n in range(5):
            drop(tmp_path / "data" / "inbox", f"factura-{n}.xml", invoice(n + 1))
        seen: list[dict[str, object]] = []

        def failing() -> bool:
            seen.append(get_health(port).json())
            return seen[-1]["status"] == "fail"

        wait_until(failing, 60, "/health to fail")
        response = get_health(port)
        assert response.status_code == 503
        [local] = [
            item
            for item in response.json()["checks"]["workers:failures"]
            if item["componentId"] == "local"
        ]
        assert local["status"] == "fail"
        assert local["output"] == (
            "BrokenWorkerProcess: a worker process ended before it answered (exit status 126)"
        ), local["output"]
        assert daemon.stop() == 0
    finally:
        daemon.kill()


@dataclass
class IdlePool:
    """A pool as /health sees it: all its workers alive, none busy."""

    name: str
    queues: list[str]
    last_claim: float
    concurrency: int = 4
    alive: int = 4
    busy: int = 0


@pytest.mark.anyio
async def test_ready_jobs_no_idle_worker_claims_for_a_minute_is_fail(tmp_path: Path) -> None:
    clock = Clock()
    db = await Database.open(tmp_path / DATABASE_FILE)
    try:
        queue = Queue(db, clock=clock)
        local = QueueName.INVOICE_PROCESSING.value
        pool = IdlePool("local", [local], last_claim=clock.now.timestamp())
        probe = workers_probe(queue, [pool])
        await queue.enqueue(local, "ping", {})
        clock.now += timedelta(seconds=59)
        [item] = await probe(clock.now.isoformat())
        assert item["status"] == "pass"  # a minute is not up
        clock.now += timedelta(seconds=2)
        [item] = await probe(clock.now.isoformat())
        assert item["status"] == "fail"
        assert item["output"] == "1 job(s) of invoice_processing ready for 61s, none claimed"
        pool.last_claim = clock.now.timestamp() - 5  # it claims (a backlog): not stuck
        [item] = await probe(clock.now.isoformat())
        assert item["status"] == "pass"
    finally:
        await db.close()
