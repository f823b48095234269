"""The daemon's shared services, built once and closed in order.

`build(config, clock)` opens the database and builds on it the queue, the lifecycle with its
registered stages, the stages' handlers, one worker pool per group and the health probes of
what it built, with the upstreams' HTTP clients (one per authority, one for Alegra: tests point
their URLs at the sandbox servers) and, when Alegra is configured, its cache. Everything is
closed in the reverse order it was opened. The daemon runs what this builds; the commands run
beside it use the same pieces (`facturasd invoices accept` advances an invoice through the
same lifecycle as the daemon).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import anyio

from facturasd import notify, operations
from facturasd.alegra import service as alegra_service
from facturasd.alegra.cache import AlegraCache
from facturasd.authorities import Authority
from facturasd.authorities.confirm import RECHECK, Confirm
from facturasd.authorities.service import Signing, open_authorities
from facturasd.authorities.service import probe as authority_probe
from facturasd.clock import Clock, utcnow
from facturasd.config import Config
from facturasd.constants import BACKUP_DIR, DATABASE_FILE, GROUP_QUEUES, WorkerGroup
from facturasd.inbox.archive import Folders
from facturasd.monitoring import health
from facturasd.monitoring.alert_words import describe
from facturasd.monitoring.metrics import Metrics, State
from facturasd.monitoring.recommend import advisor
from facturasd.pipeline.ingest import Ingest
from facturasd.pipeline.lifecycle import (
    CONFIRM,
    PRINTED,
    PROCESS,
    STAGES,
    Lifecycle,
    Stage,
    booking,
)
from facturasd.pipeline.process import Process, Settings
from facturasd.processpool import ProcessPool
from facturasd.scheduler import KIND as SCHEDULED
from facturasd.scheduler import Scheduler
from facturasd.scheduler import probe as scheduler_probe
from facturasd.store.db import Database
from facturasd.store.queue import Queue
from facturasd.workers import BUILTIN_HANDLERS, Handler, WorkerPool


@dataclass(frozen=True)
class Services:
    config: Config
    clock: Clock
    zone: ZoneInfo
    db: Database
    queue: Queue
    lifecycle: Lifecycle
    folders: Folders
    ingest: Ingest
    process: Process
    confirm: Confirm
    signing: dict[str | None, Signing]  # the DIAN certificates, by company (None: [dian]'s)
    alegra: alegra_service.Alegra | None  # None: Alegra not configured, nothing is booked
    scheduler: Scheduler
    outbox: notify.Outbox
    pools: dict[WorkerGroup, WorkerPool]
    health: health.Health
    metrics: Metrics


@asynccontextmanager
async def build(
    config: Config,
    *,
    clock: Clock = utcnow,
    stages: Iterable[Stage] = STAGES,
    handlers: Mapping[str, Handler] | None = None,
    upgrade: bool = True,
    cache: AlegraCache | None = None,
) -> AsyncIterator[Services]:
    """The services of `config`: `stages` are the registered stages (the built-in ones unless
    told; booking's are added when Alegra is configured), `handlers` add to the built-in
    handlers (a test's stage, say); every stage must have a handler. Only the daemon
    (upgrade=True) creates or migrates the database. `cache`: Alegra's cache, when the caller
    opened it (a test's), else the one `[cache]` configures."""
    state_dir = config.paths.state_dir
    zone = await anyio.to_thread.run_sync(ZoneInfo, config.daemon.timezone)
    db = await Database.open(
        state_dir / DATABASE_FILE, backup_dir=state_dir / BACKUP_DIR, upgrade=upgrade
    )
    workers = config.workers
    # Parsing's worker processes, started as they are first needed.
    processes = ProcessPool(workers.processes or os.cpu_count() or 1)
    stack = AsyncExitStack()  # the upstreams' clients
    metrics = Metrics()
    try:
        queue = Queue(
            db, config.queues, clock=clock, handoff=workers.concurrency(WorkerGroup.LOCAL)
        )
        booking_stages = booking(config.authorities.book_when) if config.alegra.enabled else None
        lifecycle = Lifecycle(queue, [*stages, *(booking_stages or ())], clock=clock)
        folders = Folders.from_paths(config.paths)
        ingest = Ingest(
            db,
            lifecycle,
            folders,
            companies=config.companies,
            zone=zone,
            lease=workers.lease,
            clock=clock,
        )
        settings = Settings(config.formats.limits(), config.checks, tuple(config.companies))
        process = Process(
            db,
            lifecycle,
            folders,
            settings,
            zone=zone,
            processes=processes,
            # A file that cannot be moved waits as long as one that cannot leave the inbox.
            retry_after=config.inbox.rescan_interval,
            clock=clock,
        )
        authorities = await stack.enter_async_context(
            open_authorities(config, db, lifecycle, ingest=ingest, clock=clock, metrics=metrics)
        )
        channels = await stack.enter_async_context(notify.open_channels(config, clock=clock))
        outbox = notify.Outbox(
            db, queue, channels, describe=describe, lang=config.reports.language, clock=clock
        )
        every: dict[str, Handler] = {
            **BUILTIN_HANDLERS,
            PROCESS.kind: process,
            CONFIRM.kind: authorities.confirm,
            PRINTED.kind: authorities.printed,
            notify.NOTIFY: outbox,
            notify.NOTIFY_REPORT: outbox,
        }
        alegra = None
        if booking_stages is not None:
            alegra = await stack.enter_async_context(
                alegra_service.open_alegra(
                    config, db, lifecycle, booking_stages, clock=clock, metrics=metrics, cache=cache
                )
            )
            book, attach = booking_stages
            every |= {book.kind: alegra.booking, attach.kind: alegra.booking.attach}
        checker = health.Health(
            clock=clock,
            advise=advisor(config.alerts.cache_hit_rate_min, config.reports.language),
        )
        scheduler = Scheduler(
            db,
            queue,
            [
                *operations.housekeeping(config, db, authorities.confirm, alegra, clock=clock),
                *operations.reporting(config, db, zone, alegra, checker, outbox, clock=clock),
            ],
            zone,
            clock=clock,
        )
        every |= {SCHEDULED: scheduler, RECHECK: authorities.confirm.recheck}
        every |= handlers or {}
        if missing := [s.kind for s in lifecycle.stages if s.kind not in every]:
            raise ValueError(f"stages without a handler: {', '.join(missing)}")
        pools = {
            group: WorkerPool(
                queue,
                every,
                name=group.value,
                queues=list(queues),
                concurrency=workers.concurrency(group),
                lease=workers.lease,
                clock=clock,
                metrics=metrics,
            )
            for group, queues in GROUP_QUEUES.items()
        }
        metrics.watch(
            State(
                db,
                queue,
                queues=[q for g in GROUP_QUEUES.values() for q in g],
                pools=list(pools.values()),
                circuits=authorities.circuits,
                alegra_users=list(alegra.users.values()) if alegra is not None else [],
                cache=alegra.cache if alegra is not None else None,
            )
        )
        weights = health.WEIGHTS
        checker.register("database:write", weights["database"], health.database_probe(db))
        # Weighed within the database group: its weight is the write probe's.
        checker.register("database:file", 0.0, health.ledger_file_probe(db))
        checker.register(
            "workers:alive",
            weights["workers"] / 2,
            health.workers_probe(queue, list(pools.values())),
        )
        checker.register(
            "queues:depth",
            weights["queues"],
            health.queues_probe(
                queue, [q for g in GROUP_QUEUES.values() for q in g], config.alerts.queue_backlog
            ),
        )
        checker.register("disk:free", weights["disk"], health.disk_probe(state_dir))
        checker.register("folders:writable", weights["folders"], health.folders_probe(folders))
        for authority in Authority:
            checker.register(
                f"authorities:{authority.value}",
                weights["authorities"] / len(Authority),
                authority_probe(authority, authorities, db, clock=clock),
            )
        if alegra is not None:
            checker.register("alegra:booking", weights["alegra"], alegra_service.probe(alegra))
            checker.register(
                "cache:alegra", weights["cache"], alegra_service.cache_probe(alegra.cache)
            )
        checker.register("scheduler:tasks", weights["scheduler"], scheduler_probe(scheduler))
        for name in outbox.channels:
            checker.register(
                f"notify:{name}",
                weights["notify"] / len(outbox.channels),
                notify.probe(outbox, name),
            )
        yield Services(
            config,
            clock,
            zone,
            db,
            queue,
            lifecycle,
            folders,
            ingest,
            process,
            authorities.confirm,
            authorities.signing,
            alegra,
            scheduler,
            outbox,
            pools,
            checker,
            metrics,
        )
    finally:
        with anyio.CancelScope(shield=True):
            await stack.aclose()
            await processes.aclose()
            await db.close()
