"""The supervisor: builds the components from the configuration and runs them.

Start-up: take the state directory's lock, take the HTTP port, refuse to start an empty ledger
beside an archive of files (pipeline/rebuild.py), build the services (services.py: the
database, opened and migrated, the queue, the stages, a worker pool per group), hand orphaned
jobs back, finish interrupted ingests, serve HTTP, then READY=1. A start refused for the port or
the ledger has not touched the database.

Each component runs under
`Supervisor.supervise`: one that raises is logged, shown as degraded and restarted with capped
exponential backoff while the others go on. SIGTERM or SIGINT: stop claiming, give jobs in
flight up to `daemon.shutdown_timeout` to finish, hand back the rest, exit 0.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO

import anyio

from facturasd import maintenance
from facturasd.alegra.client import AlegraError
from facturasd.alegra.service import Alegra
from facturasd.clock import Clock, utcnow
from facturasd.config import Config
from facturasd.constants import BACKUP_DIR, GROUP_QUEUES, LOCK_FILE, WorkerGroup
from facturasd.errors import AlreadyRunning, Unavailable
from facturasd.inbox.watcher import Watcher
from facturasd.monitoring import alerts
from facturasd.monitoring.health import (
    WEIGHTS,
    ComponentView,
    failures_probe,
    inbox_probe,
    supervisor_probe,
)
from facturasd.monitoring.tally import Tally, tallied
from facturasd.pipeline.lifecycle import STAGES, Stage
from facturasd.pipeline.rebuild import refuse_new_ledger
from facturasd.sandbox.alongside import alongside, claim
from facturasd.services import Services, build
from facturasd.systemd import Notifier
from facturasd.web import app as web_app
from facturasd.web import tokens
from facturasd.web.api import Api
from facturasd.web.tokens import Tokens
from facturasd.workers import Handler, WorkerPool

log = logging.getLogger(__name__)

# How long a component counts as degraded after it crashed, and the restart backoff.
DEGRADED_FOR = 300.0
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
STATUS_INTERVAL = 10.0
UNSUBSCRIBE_WAIT = 10.0  # at stop, for Alegra to delete this run's webhook subscriptions


@dataclass(frozen=True)
class Component:
    name: str
    run: Callable[[], Awaitable[None]]
    enabled: bool = True


@dataclass
class _Record:
    enabled: bool
    state: str = "starting"
    restarts: int = 0
    last_error: str | None = None
    last_crash: float | None = None


@dataclass
class Supervisor:
    clock: Clock = utcnow
    backoff_base: float = BACKOFF_BASE
    backoff_cap: float = BACKOFF_CAP
    degraded_for: float = DEGRADED_FOR
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    # Set at shutdown: from then on a component that returns has simply finished.
    stopping: bool = False
    _records: dict[str, _Record] = field(default_factory=dict)

    def _now(self) -> float:
        return self.clock().timestamp()

    def views(self) -> list[ComponentView]:
        now = self._now()
        views = []
        for name, rec in self._records.items():
            state = rec.state
            if (
                rec.state == "running"
                and rec.last_crash
                and now - rec.last_crash < self.degraded_for
            ):
                state = "degraded"
            views.append(ComponentView(name, state, rec.restarts, rec.last_error))
        return views

    async def supervise(self, component: Component) -> None:
        rec = self._records[component.name] = _Record(component.enabled)
        if not component.enabled:
            rec.state = "disabled"
            return
        failures = 0
        while True:
            rec.state = "running"
            started = self._now()
            try:
                await component.run()
                if self.stopping:
                    rec.state = "stopped"
                    return
                raise RuntimeError(f"component {component.name} returned while the daemon runs")
            except Exception as exc:
                rec.restarts += 1
                rec.last_error = type(_root_cause(exc)).__name__
                rec.last_crash = self._now()
                rec.state = "degraded"
                # A component that ran a good while before crashing starts its backoff afresh.
                failures = 1 if rec.last_crash - started > self.degraded_for else failures + 1
                delay = min(self.backoff_cap, self.backoff_base * 2 ** (failures - 1))
                log.exception(
                    "component %s crashed (restart %d in %.0fs)",
                    component.name,
                    rec.restarts,
                    delay,
                )
                await self.sleep(delay)


# The kv row that tells a clean stop from a crash: `running` from start to a clean stop.
RUN_MARK = "daemon.run"
RUNNING, STOPPED = "running", "stopped"


def _mark_run(conn: sqlite3.Connection, *, state: str, at: float) -> str | None:
    """Sets the run mark to `state`; returns what it was."""
    row = conn.execute("SELECT value FROM kv WHERE key = ?", (RUN_MARK,)).fetchone()
    conn.execute(
        "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (RUN_MARK, state, at),
    )
    return str(row[0]) if row else None


def conditions(services: Services, tallies: Mapping[str, Tally], *, clock: Clock) -> alerts.Gather:
    """What the alerts look at (SPEC §2.6, docs/alerts.md) against `[alerts]`'s thresholds:
    the queues, the pools (their tallies, and `tallies` of other work), the authorities, the
    DIAN certificates, the disk, the nightly backup and, with Alegra, its cache."""
    config = services.config
    settings = config.alerts
    pools = list(services.pools.values())
    every_tally = {**tallies, **{pool.name: pool.tally for pool in pools}}
    backups = config.paths.state_dir / BACKUP_DIR

    async def error_rates() -> list[alerts.Observation]:
        return alerts.error_rates(every_tally, settings.error_rate_max)

    async def certificates() -> list[alerts.Observation]:
        ends = [
            (company, signing.credentials.not_after)
            for company, signing in services.signing.items()
            if signing.credentials is not None
        ]
        return alerts.certificates(ends, settings.certificate_days, clock())

    async def backup() -> list[alerts.Observation]:
        newest = await anyio.to_thread.run_sync(maintenance.newest_backup, backups)
        first = await services.db.fetchone("SELECT MIN(received_at) AS at FROM invoices")
        now = clock().astimezone(services.zone)
        since = first["at"] if first is not None else None
        return alerts.backup(newest, config.backup.max_age, now, since=since)

    sources: list[alerts.Gather] = [
        partial(
            alerts.queue_backlog,
            services.queue,
            [queue for queues in GROUP_QUEUES.values() for queue in queues],
            settings.queue_backlog,
        ),
        partial(alerts.no_worker, services.queue, pools),
        error_rates,
        partial(
            alerts.authority_failures,
            services.db,
            settings.authority_failure_rate_max,
            window=settings.window,
            clock=clock,
        ),
        certificates,
        partial(alerts.disk, config.paths.state_dir, settings.disk_free_min_mb),
        backup,
    ]
    if services.alegra is not None:
        cache = services.alegra.cache
        hit_rate = alerts.CacheHitRate(
            settings.cache_hit_rate_min, window=settings.window, clock=clock
        )

        async def cache_rate() -> list[alerts.Observation]:
            return hit_rate(await cache.metrics())

        sources.append(cache_rate)
    return alerts.gathering(*sources)


def _create_folders(config: Config) -> None:
    """The data folders, and each company's inbox/<slug>/ (where its people drop files)."""
    paths = config.paths
    for folder in (paths.inbox, paths.archive, paths.rejected, paths.duplicates, paths.reports):
        folder.mkdir(parents=True, exist_ok=True)
    for company in config.companies:
        (paths.inbox / company.slug).mkdir(exist_ok=True)


def _root_cause(exc: BaseException) -> BaseException:
    """The one exception inside task-group wrappers, for a name a person can act on."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _acquire_lock(state_dir: Path) -> IO[str]:
    """One daemon per state directory: a second one is refused instead of corrupting it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    handle = (state_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "unknown"
        handle.close()
        raise AlreadyRunning(
            f"another facturasd (pid {pid}) is already running with state directory "
            f"{state_dir}; stop it first, or give this one another paths.state_dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def running_pid(state_dir: Path) -> str | None:
    """The pid of the daemon holding `state_dir`'s lock, or None if none holds it (the port
    and the database check-config would look at are then that daemon's). Blocking."""
    try:
        handle = (state_dir / LOCK_FILE).open()
    except OSError:
        return None
    with handle:
        try:
            # Shared: two looks at once do not stop each other; the daemon's lock is exclusive.
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "unknown"
    return None


@asynccontextmanager
async def state_lock(state_dir: Path) -> AsyncIterator[None]:
    handle = await anyio.to_thread.run_sync(_acquire_lock, state_dir)
    try:
        yield
    finally:
        handle.close()


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        clock: Clock = utcnow,
        stages: Sequence[Stage] = STAGES,
        handlers: Mapping[str, Handler] | None = None,
        components: Sequence[Component] = (),
        environ: Mapping[str, str] = os.environ,
        new_ledger: bool = False,
        sandbox: bool = False,
    ):
        """`new_ledger`: start an empty ledger even though the archive holds files;
        `sandbox`: against local SAT, DIAN and Alegra servers on `sandbox.bind`, started in this
        process (sandbox/alongside.py)."""
        self.config = config
        self.new_ledger = new_ledger
        self.sandbox = sandbox
        self.clock = clock
        self.stages = stages
        self.handlers = handlers
        self.extra_components = list(components)
        self.notifier = Notifier(environ)
        self.supervisor = Supervisor(clock=clock)
        self._stop: anyio.Event | None = None

    def stop(self) -> None:
        """Asks a running daemon to shut down, as SIGTERM does."""
        if self._stop is not None:
            self._stop.set()

    async def run(self) -> None:
        stop = self._stop = anyio.Event()
        # Signals are caught from the first moment: one that arrives during start-up (a
        # migration, say) is acted on once the daemon is up, instead of killing it midway.
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with state_lock(self.config.paths.state_dir):
                sock = await anyio.to_thread.run_sync(web_app.listen, self.config.http)
                try:
                    # (a token file that cannot be read stops the start before the ledger)
                    api_tokens = await anyio.to_thread.run_sync(
                        tokens.read, self.config.http.token_file
                    )
                    if not self.new_ledger:
                        await anyio.to_thread.run_sync(refuse_new_ledger, self.config)
                    async with AsyncExitStack() as stack:
                        config = self.config
                        if self.sandbox:
                            local = await stack.enter_async_context(alongside(config))
                            config = local.config
                            log.info("sandbox: %s", ", ".join(local.urls.values()))
                        services = await stack.enter_async_context(
                            build(
                                config, clock=self.clock, stages=self.stages, handlers=self.handlers
                            )
                        )
                        await services.db.write(
                            partial(
                                claim,
                                config=config,
                                sandbox=self.sandbox,
                                now=self.clock().timestamp(),
                            )
                        )
                        if self.sandbox:
                            local.read_from(services.db)
                            services.health.sandbox = True
                        await self._serve(services, stop, signals, sock, api_tokens)
                finally:
                    sock.close()
        log.info("stopped")

    async def _serve(
        self,
        services: Services,
        stop: anyio.Event,
        signals: AsyncIterator[signal.Signals],
        sock: socket.socket,
        api_tokens: Tokens,
    ) -> None:
        config = services.config
        crashed = (
            await services.db.write(partial(_mark_run, state=RUNNING, at=self.clock().timestamp()))
            == RUNNING
        )
        orphans = await services.queue.recover_orphans()
        await anyio.to_thread.run_sync(_create_folders, config)
        resumed = await services.ingest.reconcile()
        if crashed:
            log.warning(
                "the previous run ended without a clean stop (a crash, a kill or a power cut): "
                "%d job(s) it left running handed back, %d interrupted ingest(s) finished",
                orphans,
                resumed,
            )
        elif resumed:
            log.info("%d file(s) whose ingest the last stop interrupted: finished", resumed)
        # Invoices left in FALLBACK are asked again now: the circuits start closed.
        if asked := await services.confirm.sweep():
            log.info("%d invoice(s) waiting for a tax authority's answer: asked again", asked)
        if services.alegra is not None and (queued := await services.alegra.booking.sweep()):
            log.info("%d invoice(s) to book in Alegra without a job: queued", queued)
        ingested = Tally(clock=self.clock)
        watcher = Watcher(
            config.paths.inbox,
            config.inbox,
            tallied(services.ingest, ingested),
            takers=config.workers.concurrency(WorkerGroup.LOCAL),
        )
        pools = list(services.pools.values())
        services.health.register(
            "workers:failures",
            WEIGHTS["workers"] / 2,
            failures_probe(
                {
                    "ingest": (ingested, True),
                    **{g.value: (p.tally, not g.upstream) for g, p in services.pools.items()},
                }
            ),
        )
        services.health.register(
            "supervisor:components", WEIGHTS["supervisor"], supervisor_probe(self.supervisor)
        )
        services.health.register("inbox:unreadable", WEIGHTS["inbox"], inbox_probe(watcher))
        hooks = services.alegra.hooks if services.alegra is not None else None
        runner = await web_app.start(
            web_app.create_app(services.health, hooks, services.metrics, Api(services, api_tokens)),
            sock,
        )
        try:
            components = [
                *(Component(f"workers:{pool.name}", pool.run) for pool in pools),
                Component("inbox", watcher.run),
                Component("watchdog", lambda: self._watchdog(pools)),
                Component("scheduler", services.scheduler.run),
                Component(
                    "alerts",
                    partial(
                        alerts.watch,
                        alerts.AlertEngine(
                            services.db, cooldown=config.alerts.cooldown, clock=self.clock
                        ),
                        conditions(services, {"ingest": ingested}, clock=self.clock),
                        config.alerts.interval,
                    ),
                ),
                Component("notify", services.outbox.run),
                *(
                    [Component("alegra", partial(self._alegra, services.alegra))]
                    if services.alegra is not None
                    else []
                ),
                *self.extra_components,
            ]
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._stop_on_signal, signals)
                for component in components:
                    tg.start_soon(self.supervisor.supervise, component)
                sizes = ", ".join(f"{pool.name} {pool.concurrency}" for pool in pools)
                log.info(
                    "ready: workers %s, http on %s, database %s",
                    sizes,
                    config.http.bind,
                    services.db.path,
                )
                self.notifier.ready(f"ready: workers {sizes}")
                await stop.wait()
                busy = sum(pool.busy for pool in pools)
                self.notifier.stopping(f"stopping: {busy} job(s) in flight")
                log.info("stopping: %d job(s) in flight", busy)
                self.supervisor.stopping = True
                for pool in pools:
                    pool.stop()
                if services.alegra is not None:
                    services.alegra.stopping()
                with anyio.move_on_after(config.daemon.shutdown_timeout):
                    for pool in pools:
                        await pool.drained()
                if busy := sum(pool.busy for pool in pools):
                    log.warning("%d job(s) did not finish in time; handed back", busy)
                tg.cancel_scope.cancel()
            await services.db.write(partial(_mark_run, state=STOPPED, at=self.clock().timestamp()))
        finally:
            with anyio.CancelScope(shield=True):
                await runner.cleanup()

    async def _alegra(self, alegra: Alegra) -> None:
        """Alegra's webhooks subscribed (deleted again at stop) and the cache warmed up when
        it is empty (the scheduler's nightly tasks warm it up again, and its retry loop
        books the invoices left without a job)."""
        try:
            try:
                if alegra.hooks.enabled:
                    made = await alegra.hooks.subscribe()
                    log.info("alegra: %d webhook subscription(s) made", made)
            except (Unavailable, AlegraError) as exc:
                log.warning("alegra: no webhooks this run (the cache relies on its TTLs): %s", exc)
            for scope, books in alegra.books.items():
                if await alegra.cache.count(books.directory.scope) > 0:
                    continue
                try:
                    loaded = await books.directory.warm_up()
                except (Unavailable, AlegraError) as exc:
                    log.warning("alegra: cache warm-up of %s not done: %s", scope or "default", exc)
                else:
                    log.info("alegra: cache of %s warmed up: %s", scope or "default", loaded)
            await anyio.sleep_forever()
        finally:
            if alegra.hooks.enabled:
                with anyio.CancelScope(shield=True), anyio.move_on_after(UNSUBSCRIBE_WAIT):
                    try:
                        await alegra.hooks.unsubscribe()
                    except (Unavailable, AlegraError) as exc:
                        log.warning(
                            "alegra: webhook subscriptions left for the next start to delete: %s",
                            exc,
                        )

    async def _watchdog(self, pools: Sequence[WorkerPool]) -> None:
        """WATCHDOG=1 from a task on the event loop: a stuck loop stops the pings."""
        interval = self.notifier.watchdog_interval or STATUS_INTERVAL
        while True:
            self.notifier.watchdog()
            busy = sum(pool.busy for pool in pools)
            alive = sum(pool.alive for pool in pools)
            self.notifier.status(f"running: {busy}/{alive} workers busy")
            await anyio.sleep(min(interval, STATUS_INTERVAL))

    async def _stop_on_signal(self, signals: AsyncIterator[signal.Signals]) -> None:
        async for signum in signals:
            log.info("received %s", signum.name)
            self.stop()
