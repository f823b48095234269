"""GET /metrics: the daemon's figures in Prometheus' text format, from a registry of its own.

Two kinds of figures. What happens is counted as it happens: each job a worker pool settles
(by pool, kind and outcome, with its duration), each request to an upstream (SAT, DIAN,
Alegra: by outcome, with its latency). What is, is read when Prometheus scrapes: the ledger's
invoices by state and by compliance, the queues, the worker pools, the circuits, Alegra's
cache, the ledger's size and the alert conditions holding. docs/metrics.md lists every family.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from facturasd.authorities import Authority
from facturasd.authorities.circuit import Circuit, CircuitState
from facturasd.constants import ComplianceStatus, InvoiceState
from facturasd.monitoring.health import Pool
from facturasd.pipeline.lifecycle import ASKED
from facturasd.store.db import Database
from facturasd.store.queue import Queue, QueueStats

if TYPE_CHECKING:
    from facturasd.alegra.booking import User
    from facturasd.alegra.cache import AlegraCache

# A parse takes milliseconds, a call to an authority up to its 30 s time-out.
JOB_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# A request's outcome: the answer's status class, or none (given up waiting, or no connection).
OUTCOMES = ("2xx", "4xx", "5xx", "timeout", "error")
# Calls go (0) or are stopped (1); half-open, one probe call is out to see which.
CIRCUIT_VALUES = {CircuitState.CLOSED: 0.0, CircuitState.HALF_OPEN: 0.5, CircuitState.OPEN: 1.0}


class Metrics:
    """The daemon's registry: the pools and the upstreams' clients count into it as work
    happens; `watch` says what each scrape reads besides."""

    def __init__(self) -> None:
        # The daemon's own registry: the process's default one would also carry whatever
        # else in the process registers there, and tests build several daemons in one.
        self.registry = CollectorRegistry()
        self._jobs = Counter(
            "facturasd_jobs",
            "Jobs settled by the worker pools, by outcome: done, failed (to be retried), dead, "
            "handed_back (no answer from an upstream, asked to run later, or interrupted)",
            ["pool", "kind", "outcome"],
            registry=self.registry,
        )
        self._job_seconds = Histogram(
            "facturasd_job_duration_seconds",
            "How long a job took, from its claim to its outcome recorded",
            ["kind"],
            buckets=JOB_BUCKETS,
            registry=self.registry,
        )
        self._requests = Counter(
            "facturasd_upstream_requests",
            "HTTP requests to an upstream (sat, dian, alegra), by outcome",
            ["upstream", "outcome"],
            registry=self.registry,
        )
        self._request_seconds = Histogram(
            "facturasd_upstream_request_duration_seconds",
            "How long an upstream took to answer (or to fail)",
            ["upstream"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self._scraped = _Scraped()
        self.registry.register(self._scraped)
        self._state: State | None = None

    def job(self, pool: str, kind: str, outcome: str, seconds: float) -> None:
        """A worker pool settled a job."""
        self._jobs.labels(pool=pool, kind=kind, outcome=outcome).inc()
        self._job_seconds.labels(kind=kind).observe(seconds)

    def client(self, upstream: str, *, timeout: float) -> httpx.AsyncClient:
        """An HTTP client for `upstream` whose requests are counted and timed."""
        # Every outcome from the start: a rate over a series that does not exist yet is none.
        for outcome in OUTCOMES:
            self._requests.labels(upstream=upstream, outcome=outcome)
        self._request_seconds.labels(upstream=upstream)
        return _Observed(partial(self._request, upstream), timeout=timeout)

    def _request(self, upstream: str, outcome: str, seconds: float) -> None:
        self._requests.labels(upstream=upstream, outcome=outcome).inc()
        self._request_seconds.labels(upstream=upstream).observe(seconds)

    def watch(self, state: State) -> None:
        """What the scrapes read from now on."""
        self._state = state

    async def scrape(self) -> bytes:
        """The registry in Prometheus' text format, with the state read now."""
        families = await self._state.read() if self._state is not None else []
        # No await between the two: a concurrent scrape cannot slip its figures in.
        self._scraped.families = families
        return generate_latest(self.registry)


@dataclass(frozen=True)
class State:
    """What a scrape reads: the ledger and its queues, the worker pools, the circuits (the
    authorities', and each Alegra user's) and, when Alegra is configured, its cache."""

    db: Database
    queue: Queue
    queues: Sequence[str]
    pools: Sequence[Pool]
    circuits: Mapping[Authority, Circuit]
    alegra_users: Sequence[User] = ()
    cache: AlegraCache | None = None

    async def read(self) -> list[Metric]:
        invoices, compliance, conditions = await self.db.read(_ledger)
        sizes = await anyio.to_thread.run_sync(_sizes, self.db.path)
        return [
            _labelled(
                "facturasd_invoices",
                "Invoices in the ledger, by state",
                "state",
                {state.value: invoices.get(state.value, 0) for state in InvoiceState},
            ),
            _labelled(
                "facturasd_invoices_by_compliance",
                "Invoices a tax authority is asked about (checked, booking, booked), by the "
                "authority's word",
                "compliance",
                {status.value: compliance.get(status.value, 0) for status in ComplianceStatus},
            ),
            *_queues(await self.queue.stats(self.queues)),
            *_pools(self.pools),
            *self._circuits(),
            *(_cache(await self.cache.metrics(), self.cache.unreachable) if self.cache else ()),
            _labelled(
                "facturasd_ledger_size_bytes",
                "The ledger's files on disk: the database and its write-ahead log",
                "file",
                sizes,
            ),
            _conditions(conditions),
        ]

    def _circuits(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "facturasd_circuit_state",
            "An upstream's circuit: 0 closed (calls go), 0.5 half-open (a probe is out), "
            "1 open (calls stopped after calls without an answer)",
            labels=["upstream", "account"],
        )
        for authority, circuit in self.circuits.items():
            state.add_metric([authority, ""], CIRCUIT_VALUES[circuit.state])
        paused = GaugeMetricFamily(
            "facturasd_alegra_booking_paused",
            "1 while an Alegra user's booking is paused (the account cannot book: a person "
            "acts in Alegra)",
            labels=["account"],
        )
        for user in self.alegra_users:
            state.add_metric(["alegra", user.email], CIRCUIT_VALUES[user.circuit.state])
            paused.add_metric([user.email], float(user.pause_reason is not None))
        yield state
        if self.alegra_users:
            yield paused


def _ledger(
    conn: sqlite3.Connection,
) -> tuple[dict[str, int], dict[str, int], list[tuple[str, str, int]]]:
    """Invoices by state, the asked ones by compliance, and the conditions holding by code
    and severity: in one read, so the figures agree with each other."""
    invoices = dict(conn.execute("SELECT state, COUNT(*) FROM invoices GROUP BY state"))
    asked = ", ".join("?" for _ in ASKED)
    compliance = dict(
        conn.execute(
            f"SELECT compliance, COUNT(*) FROM invoices WHERE state IN ({asked}) "
            "GROUP BY compliance",
            ASKED,
        )
    )
    conditions = conn.execute(
        "SELECT code, severity, COUNT(*) FROM conditions GROUP BY code, severity"
    ).fetchall()
    return invoices, compliance, [tuple(row) for row in conditions]


def _sizes(database: Path) -> dict[str, int]:
    """Bytes of the database file and of its write-ahead log (0 while there is none)."""
    found = {}
    for name, path in (("database", database), ("wal", database.with_name(database.name + "-wal"))):
        try:
            found[name] = os.stat(path).st_size
        except FileNotFoundError:
            found[name] = 0
    return found


def _labelled(name: str, documentation: str, label: str, values: Mapping[str, float]) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for value, figure in values.items():
        family.add_metric([value], figure)
    return family


def _queues(stats: Iterable[QueueStats]) -> list[Metric]:
    jobs = GaugeMetricFamily(
        "facturasd_queue_jobs", "Jobs in a queue, by state", labels=["queue", "state"]
    )
    ready = GaugeMetricFamily(
        "facturasd_queue_ready", "Jobs queued and due now, waiting for a worker", labels=["queue"]
    )
    oldest = GaugeMetricFamily(
        "facturasd_queue_oldest_ready_age_seconds",
        "How long the oldest job due has waited for a worker (0: none due)",
        labels=["queue"],
    )
    for queue in stats:
        for state, count in queue.counts.items():
            jobs.add_metric([queue.name, state], count)
        ready.add_metric([queue.name], queue.ready)
        oldest.add_metric([queue.name], queue.oldest_ready_age)
    return [jobs, ready, oldest]


def _pools(pools: Sequence[Pool]) -> Iterator[Metric]:
    figures: tuple[tuple[str, str, Callable[[Pool], int]], ...] = (
        ("alive", "Workers of a pool running", lambda pool: pool.alive),
        ("busy", "Workers of a pool running a job", lambda pool: pool.busy),
        ("configured", "Workers a pool is configured to run", lambda pool: pool.concurrency),
    )
    for figure, documentation, of in figures:
        family = GaugeMetricFamily(f"facturasd_workers_{figure}", documentation, labels=["pool"])
        for pool in pools:
            family.add_metric([pool.name], of(pool))
        yield family


def _cache(metrics: Mapping[str, Any], unreachable: bool) -> Iterator[Metric]:
    """Alegra's cache, from its metrics (AlegraCache.metrics()): counters since the start, per
    type of object."""
    by_type: Mapping[str, Mapping[str, Any]] = metrics["by_type"]
    for figure, documentation in (
        ("hits", "Look-ups Alegra's cache answered"),
        ("misses", "Look-ups Alegra's cache did not answer: asked of Alegra"),
        ("invalidations", "Entries Alegra's cache forgot: changed in Alegra, or found stale"),
    ):
        counter = CounterMetricFamily(f"facturasd_cache_{figure}", documentation, labels=["type"])
        for kind, counters in by_type.items():
            counter.add_metric([kind], counters[figure])
        yield counter
    keys = GaugeMetricFamily("facturasd_cache_keys", "Entries in Alegra's cache", labels=["type"])
    for kind, counters in by_type.items():
        keys.add_metric([kind], counters["keys"])
    yield keys
    yield CounterMetricFamily(
        "facturasd_cache_errors",
        "Calls to the cache's backend that failed (look-ups then go to Alegra)",
        value=metrics["errors"],
    )
    up = GaugeMetricFamily(
        "facturasd_cache_up",
        "1 while the cache's backend answers",
        labels=["backend"],
    )
    up.add_metric([metrics["backend"]], float(not unreachable))
    yield up


def _conditions(rows: Iterable[tuple[str, str, int]]) -> Metric:
    family = GaugeMetricFamily(
        "facturasd_alerts_open",
        "Alert conditions holding now (a queue backlog, no live worker, the disk…), by code",
        labels=["code", "severity"],
    )
    for code, severity, count in rows:
        family.add_metric([code, severity], count)
    return family


class _Scraped:
    """The registry's collector of the state a scrape read (`Metrics.scrape`)."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        return self.families


class _Observed(httpx.AsyncClient):
    """An httpx client whose every request is counted by outcome and timed. (Not a transport
    of our own: httpx applies the environment's proxy settings only to its own transport.)"""

    def __init__(self, observe: Callable[[str, float], None], **settings: Any):
        super().__init__(**settings)
        self._observe = observe  # (outcome, seconds)

    async def send(self, request: httpx.Request, **options: Any) -> httpx.Response:
        started = time.perf_counter()
        try:
            response = await super().send(request, **options)
        except httpx.TimeoutException:
            self._observe("timeout", time.perf_counter() - started)
            raise
        except httpx.RequestError:
            self._observe("error", time.perf_counter() - started)
            raise
        self._observe(f"{response.status_code // 100}xx", time.perf_counter() - started)
        return response
