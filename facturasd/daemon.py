"""The supervisor: builds the components from the configuration and runs them.

Start-up: take the state directory's lock, open (and migrate) the database, hand orphaned
jobs back, listen on HTTP, then READY=1. Each component runs under `Supervisor.supervise`:
one that raises is logged, shown as degraded and restarted with capped exponential backoff
while the others go on. SIGTERM or SIGINT: stop claiming, give jobs in flight up to
`daemon.shutdown_timeout` to finish, hand back the rest, exit 0.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo

import anyio

from facturasd.config import Config
from facturasd.constants import BACKUP_DIR, DATABASE_FILE, LOCK_FILE, QueueName
from facturasd.errors import AlreadyRunning
from facturasd.inbox.watcher import Watcher
from facturasd.monitoring.health import ComponentView, HealthChecker
from facturasd.pipeline import Pipeline
from facturasd.store.db import Database
from facturasd.store.queue import Queue
from facturasd.systemd import Notifier
from facturasd.web import app as web_app
from facturasd.workers import BUILTIN_HANDLERS, Handler, WorkerPool

log = logging.getLogger(__name__)

# How long a component counts as degraded after it crashed, and the restart backoff.
DEGRADED_FOR = 300.0
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
STATUS_INTERVAL = 10.0


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
    backoff_base: float = BACKOFF_BASE
    backoff_cap: float = BACKOFF_CAP
    degraded_for: float = DEGRADED_FOR
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    # Set at shutdown: from then on a component that returns has simply finished.
    stopping: bool = False
    _records: dict[str, _Record] = field(default_factory=dict)

    def views(self) -> list[ComponentView]:
        now = time.monotonic()
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
            started = time.monotonic()
            try:
                await component.run()
                if self.stopping:
                    rec.state = "stopped"
                    return
                raise RuntimeError(f"component {component.name} returned while the daemon runs")
            except Exception as exc:
                rec.restarts += 1
                rec.last_error = type(_root_cause(exc)).__name__
                rec.last_crash = time.monotonic()
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
        handlers: Mapping[str, Handler] | None = None,
        components: Sequence[Component] = (),
        environ: Mapping[str, str] = os.environ,
    ):
        self.config = config
        self.handlers = {**BUILTIN_HANDLERS, **(handlers or {})}
        self.extra_components = list(components)
        self.notifier = Notifier(environ)
        self.supervisor = Supervisor()
        self._stop: anyio.Event | None = None

    def stop(self) -> None:
        """Asks a running daemon to shut down, as SIGTERM does."""
        if self._stop is not None:
            self._stop.set()

    async def run(self) -> None:
        stop = self._stop = anyio.Event()
        state_dir = self.config.paths.state_dir
        # Signals are caught from the first moment: one that arrives during start-up (a
        # migration, say) is acted on once the daemon is up, instead of killing it midway.
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with state_lock(state_dir):
                db = await Database.open(
                    state_dir / DATABASE_FILE, backup_dir=state_dir / BACKUP_DIR
                )
                try:
                    await self._serve(db, stop, signals)
                finally:
                    await db.close()
        log.info("stopped")

    async def _serve(
        self, db: Database, stop: anyio.Event, signals: AsyncIterator[signal.Signals]
    ) -> None:
        config = self.config
        queue = Queue(db, config.queues, handoff=config.workers.concurrency)
        if orphans := await queue.recover_orphans():
            log.warning("%d job(s) left running by the previous process handed back", orphans)
        queues = [q.value for q in QueueName]
        await anyio.to_thread.run_sync(_create_folders, config)
        zone = await anyio.to_thread.run_sync(ZoneInfo, config.daemon.timezone)
        pipeline = Pipeline(config, db, queue, zone=zone)
        if resumed := await pipeline.reconcile():
            log.warning("%d file(s) whose ingest a crash interrupted: finished", resumed)
        watcher = Watcher(
            config.paths.inbox, config.inbox, pipeline.ingest, takers=config.workers.concurrency
        )
        pool = WorkerPool(
            queue,
            {**pipeline.handlers, **self.handlers},
            queues=queues,
            concurrency=config.workers.concurrency,
            lease=config.workers.lease,
        )
        checker = HealthChecker(
            db,
            queue,
            pool,
            self.supervisor,
            queues=queues,
            state_dir=config.paths.state_dir,
            backlog_warn=config.alerts.queue_backlog,
            inbox=watcher,
        )
        runner = await web_app.start(web_app.create_app(checker), config.http)
        try:
            components = [
                Component("workers", pool.run),
                Component("inbox", watcher.run),
                Component("watchdog", lambda: self._watchdog(pool)),
                *self.extra_components,
            ]
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._stop_on_signal, signals)
                for component in components:
                    tg.start_soon(self.supervisor.supervise, component)
                log.info(
                    "ready: %d workers, http on %s, database %s",
                    pool.concurrency,
                    config.http.bind,
                    db.path,
                )
                self.notifier.ready(f"ready: {pool.concurrency} workers")
                await stop.wait()
                self.notifier.stopping(f"stopping: {pool.busy} job(s) in flight")
                log.info("stopping: %d job(s) in flight", pool.busy)
                self.supervisor.stopping = True
                pool.stop()
                with anyio.move_on_after(config.daemon.shutdown_timeout):
                    await pool.drained()
                if pool.busy:
                    log.warning("%d job(s) did not finish in time; handed back", pool.busy)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await runner.cleanup()

    async def _watchdog(self, pool: WorkerPool) -> None:
        """WATCHDOG=1 from a task on the event loop: a stuck loop stops the pings."""
        interval = self.notifier.watchdog_interval or STATUS_INTERVAL
        while True:
            self.notifier.watchdog()
            self.notifier.status(f"running: {pool.busy}/{pool.alive} workers busy")
            await anyio.sleep(min(interval, STATUS_INTERVAL))

    async def _stop_on_signal(self, signals: AsyncIterator[signal.Signals]) -> None:
        async for signum in signals:
            log.info("received %s", signum.name)
            self.stop()
