"""GET /metrics as Prometheus scrapes it, over real HTTP, parsed by prometheus-client's own
parser: the invoices by state are the ledger's, the queues, pools, circuits and cache are
there, and the counters move as the office's invoices go through SAT and Alegra."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from aiohttp.test_utils import TestServer
from blockbuster import blockbuster_ctx
from prometheus_client.parser import text_string_to_metric_families

from facturasd.constants import DATABASE_FILE, GROUP_QUEUES, JobState, QueueName, WorkerGroup
from facturasd.errors import JobFailed, RetryLater, Unavailable
from facturasd.monitoring.metrics import Metrics
from facturasd.sandbox.state import Fault, Sandbox
from facturasd.store.db import Database
from facturasd.store.queue import Effect, Job, Queue
from facturasd.web.app import create_app
from facturasd.workers import WorkerPool
from tests.office import ALEGRA_USER, Clock, Office, cfdi, known_to_sat, office
from tests.support import (
    REPO,
    DaemonProcess,
    SandboxProcess,
    daemon_env,
    port_of,
    query,
    wait_healthy,
    wait_until,
    write_config,
)
from tests.test_booking import COMPANIES, TEST_DOCUMENTS

pytestmark = pytest.mark.anyio

# A scrape: each sample's value by its name and labels.
Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Scrape:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scrape: Scrape, name: str, **labels: str) -> float:
    """The sum of the samples called `name` that carry `labels` (and any others)."""
    wanted = set(labels.items())
    found = [v for (n, have), v in scrape.items() if n == name and wanted <= have]
    assert found, f"no sample {name}{labels}"
    return sum(found)


def by(scrape: Scrape, name: str, label: str) -> dict[str, float]:
    """The samples called `name`, by the value of one label."""
    return {dict(have)[label]: v for (n, have), v in scrape.items() if n == name}


@asynccontextmanager
async def serving(o: Office) -> AsyncIterator[str]:
    """The daemon's web application for the office's services, on a real port."""
    server = TestServer(create_app(o.services.health, metrics=o.services.metrics), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/metrics"))
    finally:
        await server.close()


async def scrape(url: str) -> Scrape:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.text)


async def ledger(o: Office, sql: str) -> dict[str, int]:
    return {row[0]: row[1] for row in await o.services.db.fetchall(sql)}


@pytest.mark.slow
async def test_a_scrape_agrees_with_the_ledger_and_moves_as_invoices_go_through(
    tmp_path: Path,
) -> None:
    sandbox = Sandbox()
    files = {f"cfdi-{n}.xml": cfdi(n) for n in range(3)}
    for data in files.values():
        known_to_sat(sandbox, data)
    files["desconocida.xml"] = cfdi(9)  # SAT does not know it yet: asked again later
    files["nota.xml"] = b"no es una factura"
    async with office(tmp_path, files, sandbox, alegra=True) as o, serving(o) as url:
        with blockbuster_ctx("facturasd"):  # a scrape never blocks the daemon's event loop
            first = await scrape(url)

        # What the ledger holds, every state named (none: 0).
        states = await ledger(o, "SELECT state, COUNT(*) FROM invoices GROUP BY state")
        assert states == {"booked": 3, "checked": 1, "unreadable": 1}
        invoices = by(first, "facturasd_invoices", "state")
        assert {s: n for s, n in invoices.items() if n} == states
        assert invoices["needs_review"] == 0
        assert by(first, "facturasd_invoices_by_compliance", "compliance") == {
            "PENDING": 0,
            "VALIDATED": 3,
            "RETRY": 1,
            "FAILED": 0,
            "FALLBACK": 0,
        }

        # Every request to SAT and to Alegra counted, by outcome, and timed.
        assert value(first, "facturasd_upstream_requests_total", upstream="sat") == o.requests(
            "sat"
        )
        assert value(first, "facturasd_upstream_requests_total", upstream="sat", outcome="2xx") > 0
        assert value(first, "facturasd_upstream_requests_total", upstream="alegra") == o.requests(
            "alegra"
        )
        assert value(first, "facturasd_upstream_requests_total", upstream="dian") == 0
        assert value(
            first, "facturasd_upstream_request_duration_seconds_count", upstream="sat"
        ) == o.requests("sat")

        # Each stage's jobs as the pools settled them.
        assert value(first, "facturasd_jobs_total", kind="confirm", outcome="done") == 4
        assert value(first, "facturasd_jobs_total", kind="book", outcome="done") == 3
        assert value(first, "facturasd_jobs_total", kind="attach", outcome="done") == 3
        assert value(first, "facturasd_job_duration_seconds_count", kind="book") == 3

        # The queues, the pools, the circuits, the cache, the ledger's file.
        jobs = await ledger(
            o, "SELECT queue || ':' || state, COUNT(*) FROM jobs GROUP BY queue, state"
        )
        for queue in GROUP_QUEUES[WorkerGroup.ALEGRA]:
            for state in JobState:
                assert value(first, "facturasd_queue_jobs", queue=queue, state=state) == jobs.get(
                    f"{queue}:{state}", 0
                )
        every = {q.value for queues in GROUP_QUEUES.values() for q in queues}
        assert set(by(first, "facturasd_queue_ready", "queue")) == every
        assert set(by(first, "facturasd_queue_oldest_ready_age_seconds", "queue")) == every
        workers = o.services.config.workers
        for group in WorkerGroup:
            configured = workers.concurrency(group)
            assert value(first, "facturasd_workers_configured", pool=group) == configured
            # (the office runs the upstream pools only)
            alive = configured if group in (WorkerGroup.AUTHORITIES, WorkerGroup.ALEGRA) else 0
            assert value(first, "facturasd_workers_alive", pool=group) == alive
        assert by(first, "facturasd_circuit_state", "upstream") == {
            "sat": 0.0,
            "dian": 0.0,
            "alegra": 0.0,
        }
        assert value(first, "facturasd_circuit_state", account=ALEGRA_USER) == 0.0
        assert value(first, "facturasd_alegra_booking_paused", account=ALEGRA_USER) == 0.0
        assert set(by(first, "facturasd_cache_misses_total", "type")) >= {"contacts", "taxes"}
        assert value(first, "facturasd_cache_misses_total") > 0
        assert value(first, "facturasd_cache_errors_total") == 0
        assert value(first, "facturasd_cache_up", backend="memory") == 1
        size = (o.state_dir / DATABASE_FILE).stat().st_size
        assert value(first, "facturasd_ledger_size_bytes", file="database") == size

        # The alert conditions holding (as the alerts engine records them).
        assert by(first, "facturasd_alerts_open", "code") == {}
        await o.services.db.write(
            lambda conn: conn.execute(
                "INSERT INTO conditions (key, code, severity, since, said_at) "
                "VALUES ('QUEUE-BACKLOG:alegra_sync', 'QUEUE-BACKLOG', 'warning', 0, 0)"
            )
        )

        # One more invoice: through SAT and into Alegra, and the figures follow.
        more = cfdi(4)
        known_to_sat(sandbox, more)
        await o.take({"cfdi-4.xml": more})
        second = await scrape(url)
        assert value(second, "facturasd_invoices", state="booked") == 4
        assert value(second, "facturasd_jobs_total", kind="book", outcome="done") == 4
        assert (
            value(second, "facturasd_upstream_requests_total", upstream="sat", outcome="2xx")
            == value(first, "facturasd_upstream_requests_total", upstream="sat", outcome="2xx") + 1
        )
        assert value(second, "facturasd_alerts_open", code="QUEUE-BACKLOG", severity="warning") == 1
        # Booking the same supplier again: its contact comes from the cache.
        assert value(second, "facturasd_cache_hits_total") > value(
            first, "facturasd_cache_hits_total"
        )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "outcome"),
    [(Fault(status=503), "5xx"), (Fault(timeout=True), "timeout")],
    ids=["503", "timeout"],
)
async def test_sat_without_answers_shows_in_the_requests_jobs_and_circuit(
    tmp_path: Path, fault: Fault, outcome: str
) -> None:
    sandbox = Sandbox()
    files = {f"cfdi-{n}.xml": cfdi(n) for n in range(8)}
    for data in files.values():
        known_to_sat(sandbox, data)
    sandbox.faults["sat"] = fault
    config = '[authorities.sat]\ntimeout = "300ms"\n'
    async with office(tmp_path, files, sandbox, config) as o, serving(o) as url:
        found = await scrape(url)
        calls = o.requests("sat")
        # Five calls without an answer open the circuit; the others wait without calling.
        assert calls >= 5
        assert value(found, "facturasd_upstream_requests_total", upstream="sat") == calls
        assert (
            value(found, "facturasd_upstream_requests_total", upstream="sat", outcome=outcome)
            == calls
        )
        assert value(found, "facturasd_circuit_state", upstream="sat") == 1.0
        assert value(found, "facturasd_circuit_state", upstream="dian") == 0.0
        # Every confirm job went back to its queue uncounted, none failed.
        assert value(found, "facturasd_jobs_total", kind="confirm", outcome="handed_back") == 8
        assert not [
            k for k in found if k[0] == "facturasd_jobs_total" and ("outcome", "failed") in k[1]
        ]
        assert value(found, "facturasd_invoices_by_compliance", compliance="FALLBACK") == 8
        if outcome == "timeout":
            waited = value(found, "facturasd_upstream_request_duration_seconds_sum", upstream="sat")
            assert waited >= 0.3 * calls


async def test_each_outcome_of_a_job_is_counted_by_pool_and_kind(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / DATABASE_FILE)
    try:
        clock = Clock()  # (standing still: a job handed back or failed never comes due again)
        queue = Queue(db, clock=clock)
        metrics = Metrics()
        settled = anyio.Event()
        seen: list[str] = []

        async def run(job: Job) -> Effect | None:
            seen.append(job.kind)
            if len(seen) == 5:
                settled.set()
            match job.payload["do"]:
                case "fail":
                    raise ValueError("the supplier's file is damaged")
                case "refuse":
                    raise JobFailed("retrying cannot help")
                case "later":
                    raise RetryLater("not yet", 3600)
                case "no-answer":
                    raise Unavailable("sat", "timed out", 3600)
            return None

        kinds = ("fail", "refuse", "later", "no-answer", "ok")
        pool = WorkerPool(
            queue,
            dict.fromkeys(kinds, run),
            name="authorities",
            queues=[QueueName.DIAN_VALIDATION],
            concurrency=2,
            lease=30,
            clock=clock,
            metrics=metrics,
        )
        for kind in kinds:
            await queue.enqueue(QueueName.DIAN_VALIDATION, kind, {"do": kind})
        await queue.enqueue(QueueName.DIAN_VALIDATION, "unknown", {})
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            with anyio.fail_after(30):
                await settled.wait()
                while await queue.count(state=JobState.RUNNING) or (
                    await queue.next_ready_in([QueueName.DIAN_VALIDATION]) == 0
                ):
                    await anyio.sleep(0.01)
            pool.stop()
        found = parse((await metrics.scrape()).decode())
        outcomes = {
            dict(labels)["kind"]: dict(labels)["outcome"]
            for (name, labels), n in found.items()
            if name == "facturasd_jobs_total" and n == 1 and dict(labels)["pool"] == "authorities"
        }
        assert outcomes == {
            "ok": "done",
            "fail": "failed",
            "refuse": "dead",
            "unknown": "dead",
            "later": "handed_back",
            "no-answer": "handed_back",
        }
        assert value(found, "facturasd_job_duration_seconds_count") == 6
    finally:
        await db.close()


def by_state(db: Path) -> dict[object, object]:
    return {
        state: n for state, n in query(db, "SELECT state, COUNT(*) FROM invoices GROUP BY state")
    }


@pytest.mark.slow
def test_the_daemons_metrics_count_the_ledgers_invoices_by_state(tmp_path: Path) -> None:
    """As the issue checks it: the daemon, and the sandbox's SAT, DIAN and Alegra, on the
    shared samples."""
    samples = REPO.parent / "shared" / "samples"
    fast = '[inbox]\nstable_seconds = "300ms"\nrescan_interval = "1s"\n'
    config = write_config(tmp_path, fast + COMPANIES + TEST_DOCUMENTS)
    db = tmp_path / "state" / DATABASE_FILE
    inbox = tmp_path / "data" / "inbox"
    port = port_of(config)
    files = sorted(samples.glob("*/*.xml"))
    with SandboxProcess("--documents", str(samples)) as sandbox:
        env = daemon_env(**sandbox.env(), **sandbox.alegra_env(tmp_path))
        daemon = DaemonProcess(config, env, log_dir=tmp_path)
        try:
            wait_healthy(port, daemon)
            for path in files:
                shutil.copy(path, inbox / path.name)
            found: Scrape = {}

            def agreed() -> bool:
                """The scrape's invoices by state are the ledger's once every sample is in and
                no work is due (the ledger read before and after: nothing moved in between)."""
                nonlocal found
                before = by_state(db)
                response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
                assert response.status_code == 200
                found = parse(response.text)
                after = by_state(db)
                counted = {s: n for s, n in by(found, "facturasd_invoices", "state").items() if n}
                everyone = query(db, "SELECT COUNT(*) FROM invoices") == [(len(files),)]
                quiet = (
                    value(found, "facturasd_queue_ready")
                    == 0
                    == value(found, "facturasd_queue_jobs", state="running")
                )
                return everyone and quiet and before == after == counted

            wait_until(agreed, what="the scrape to count the ledger's invoices")
        finally:
            assert daemon.stop() == 0
    names = {name for name, _ in found}
    for family in (
        "facturasd_queue_jobs",
        "facturasd_upstream_requests_total",
        "facturasd_circuit_state",
        "facturasd_cache_hits_total",
        "facturasd_cache_misses_total",
    ):
        assert family in names, family
    assert value(found, "facturasd_upstream_requests_total", upstream="sat") > 0
    assert value(found, "facturasd_upstream_requests_total", upstream="alegra") > 0
