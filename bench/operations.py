"""The operations of issues 14 and 15 on a ledger of 10,000 invoices: reports, /metrics,
/health, the dashboard's reads and the scheduler's housekeeping, each timed as the daemon runs
it.

    python bench/operations.py [--invoices 10000] [--seed 7] [--dir /tmp]

The ledger holds `--invoices` documents, all received now, of varied shapes: CFDI 4.0 of 200
suppliers drawn with a Zipf law (bench/booking.py's generator: 1 to 20 concepts, IVA at 16, 8
and 0 %, some with ISR and IVA withheld), one in ten a Colombian DIAN invoice (1 to 10 lines,
IVA at 19, 5 and 0 %), and one in thirty of either country printed with a total one unit off
(the checks reject it). It is filled the real way, in a child process: tests/support.take
(ingest, parse and check as the daemon does), then the confirm stage, untimed, by the
`authorities` pool against the sandbox's SAT and DIAN served in that process, every archived
document known to them. SAT answers "Vigente" (VALIDATED) except for one CFDI in fifty, which
its issuer "cancelled" (FAILED, with its critical alert); 3 % of its calls get a 503 (the
invoice waits in FALLBACK, a copy in the fallback folder, and is asked again AGAIN_SOON later:
an intermediate attempt for the compliance cleanup). No DIAN certificate is configured, so the
DIAN invoices stay PENDING ("not asked"), as they would in such a daemon. The ledger's states
are printed.

In this process, `facturasd.services.build` on that ledger, with a clock that is the real time
plus an offset only the bench moves, and each operation timed with `time.perf_counter`, run
three times, the median printed with N and the size of what it gave:

1. `write_daily` (the day the invoices were received) and `write_monthly` (their month).
2. A `/metrics` scrape (`services.metrics.scrape()`): the text's size.
3. A `/health` report (`services.health.report()`), the clock moved past `REUSE_FOR` before
   each, so each is a fresh report. The checks that do not pass are named: the worker pools
   are not running here, and DIAN has no certificate.
4. What the dashboard reads at each refresh: `snapshot` (GET /api/v1/status, also `facturasd
   status --json`) with the last /health report, and `per_hour` (GET /api/v1/stats/hourly).
5. The scheduler's tasks `backup`, `archive_check`, `file_cleanup`, `compliance_cleanup`
   (`services.scheduler.tasks[name].run()`), with the line each returns; the archive check's
   MiB hashed per second. A fresh ledger has little for the cleanups (the fallback copies of
   settled invoices), so each runs once more with the clock 31 days ahead, when every
   finished job and every intermediate attempt is old enough: that run does the deleting.
6. One round of the alerts engine (gather and evaluate) over the daemon's sources
   (facturasd/daemon.py `conditions`).

Each line also says how long the operation held the event loop at most (a ticker on the
loop, every 5 ms, woken late): in the daemon, everything else on that loop waits as long. The
peak RSS of this process is printed after each step.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and bench/queue.py would stand in
# for the standard library's `queue` module (which aiosqlite imports).
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import importlib.util
import logging
import multiprocessing
import os
import platform
import random
import resource
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import anyio
from aiohttp import web

from facturasd.authorities.confirm import FALLBACK_DIR
from facturasd.config import load_config
from facturasd.constants import (
    DATABASE_FILE,
    ComplianceStatus,
    WorkerGroup,
)
from facturasd.daemon import conditions
from facturasd.monitoring import alerts
from facturasd.monitoring.snapshot import per_hour, snapshot
from facturasd.reports import Written, write_daily, write_monthly
from facturasd.sandbox.server import base_urls, create_app, load_documents
from facturasd.sandbox.state import Fault, Sandbox
from facturasd.services import Services, build
from tests.documents import Item, co_invoice
from tests.support import cufe, take, write_config


def _booking() -> Any:
    """bench/booking.py, whose CFDI generator this bench shares (imported by its path: this
    folder on sys.path would shadow the standard library's `queue`)."""
    spec = importlib.util.spec_from_file_location(
        "bench_booking", Path(__file__).with_name("booking.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


_generator = _booking()
cfdi, suppliers = _generator.cfdi, _generator.suppliers

ZIPF_S = 1.1
SUPPLIERS = 200
DIAN_SHARE = 10  # one invoice in ten is Colombian
WRONG_TOTAL = 30  # one in thirty has a wrong total
CANCELLED = 50  # one CFDI in fifty was cancelled by its issuer
UNANSWERED = 0.03  # SAT's share of calls answered with a 503
REPEAT = 3
TICK = 0.005  # the event-loop ticker's period, seconds
LATER = timedelta(days=31)  # past every cleanup's age
UNLIMITED = (
    '[queues.dian_validation]\nrate_limit = ""\n[queues.compliance_retry]\nrate_limit = ""\n'
)
POLL = 0.2
C = ComplianceStatus


# ── the ledger (in a child process) ───────────────────────────────────────────────────────


def colombian(rng: random.Random, n: int, day: str) -> bytes:
    items = [
        Item(
            f"Producto {n}-{i}",
            str(rng.randint(1, 20)),
            f"{rng.randint(100, 999999)}.00",
            rng.choice(["19", "19", "5", "0"]),
        )
        for i in range(rng.randint(1, 10))
    ]
    return co_invoice(items, override={"uuid": cufe(n + 1), "issue_date": day})


def documents(count: int, seed: int) -> dict[str, bytes]:
    """`count` files: CFDIs of Zipf-drawn suppliers and DIAN invoices, a few with a total
    one peso off."""
    rng = random.Random(seed)
    issuers = suppliers(SUPPLIERS)
    weights = [1 / rank**ZIPF_S for rank in range(1, len(issuers) + 1)]
    yesterday = datetime.now(UTC) - timedelta(days=1)
    files = {}
    for n in range(count):
        if n % DIAN_SHARE == DIAN_SHARE - 1:
            name, data = f"dian-{n:05}.xml", colombian(rng, n, f"{yesterday:%Y-%m-%d}")
        else:
            (supplier,) = rng.choices(issuers, weights)
            name = f"cfdi-{n:05}.xml"
            data = cfdi(rng, supplier, n, f"{yesterday:%Y-%m-%dT10:00:00}")
        if rng.randrange(WRONG_TOTAL) == 0:
            # Both formats print the total as an attribute or element value once at the top.
            marker = b'Total="' if name.startswith("cfdi") else b"<cbc:PayableAmount"
            head, _, tail = data.partition(marker)
            if name.startswith("cfdi"):
                value, _, rest = tail.partition(b'"')
                data = head + marker + b"%.2f" % (float(value) + 1) + b'"' + rest
            else:
                attrs, _, rest = tail.partition(b">")
                value, _, rest = rest.partition(b"<")
                data = head + marker + attrs + b">" + b"%.2f" % (float(value) + 1) + b"<" + rest
        files[name] = data
    return files


def prepare(root: Path, count: int, seed: int) -> tuple[float, float, dict[str, Any]]:
    """The ledger under `root`: taken, then confirmed. Returns the seconds each took and
    the ledger's states."""
    # The cancelled CFDIs' critical alerts are logged: thousands of lines that say nothing new.
    logging.disable(logging.CRITICAL)
    files = documents(count, seed)
    started = time.perf_counter()
    config = take(write_config(root, UNLIMITED), files)
    taken = time.perf_counter() - started
    started = time.perf_counter()
    anyio.run(confirm, root, config.paths.archive)
    confirmed = time.perf_counter() - started
    with sqlite3.connect(config.paths.state_dir / DATABASE_FILE) as conn:
        states = conn.execute(
            "SELECT format, state, compliance, COUNT(*) FROM invoices "
            "GROUP BY format, state, compliance ORDER BY format, 4 DESC"
        ).fetchall()
        attempts = conn.execute(
            "SELECT authority, outcome, COUNT(*) FROM authority_attempts GROUP BY 1, 2"
        ).fetchall()
    copies = len(list((config.paths.state_dir / FALLBACK_DIR).glob("*.json")))
    return taken, confirmed, {"states": states, "attempts": attempts, "copies": copies}


async def confirm(root: Path, archive: Path) -> None:
    """The confirm jobs run by the `authorities` pool against the sandbox, until none waits."""
    sandbox = Sandbox()
    load_documents(sandbox, archive)
    for n, record in enumerate(sorted(sandbox.sat.values(), key=lambda r: r.uuid)):
        if n % CANCELLED == 0:
            record.estado = "Cancelado"
    # A few calls unanswered: their invoices wait in FALLBACK (a copy in the fallback folder)
    # and are asked again AGAIN_SOON after, leaving attempts for the compliance cleanup.
    sandbox.faults["sat"] = Fault(status=503, rate=UNANSWERED)
    runner = web.AppRunner(create_app(sandbox), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    urls = base_urls("127.0.0.1", runner.addresses[0][1])
    write_config(
        root,
        UNLIMITED + f'[authorities.sat]\nurl = "{urls["sat"]}"\n'
        f'[authorities.dian]\nurl = "{urls["dian"]}"\n',
    )
    config = load_config(root / "facturasd.toml", {})
    try:
        async with build(config) as services:
            pool = services.pools[WorkerGroup.AUTHORITIES]
            async with anyio.create_task_group() as tg:
                await services.confirm.sweep()
                tg.start_soon(pool.run)
                while True:
                    if not await _waiting(services):
                        break
                    await anyio.sleep(POLL)
                pool.stop()
                await pool.drained()
    finally:
        await runner.cleanup()


async def _waiting(services: Services) -> int:
    row = await services.db.fetchone(
        "SELECT COUNT(*) AS n FROM jobs WHERE kind = 'confirm' AND state IN ('queued', 'running')"
    )
    assert row is not None
    return int(row["n"])


# ── the measurements (in this process) ────────────────────────────────────────────────────


class Clock:
    """The real time plus an offset only the bench moves."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Loop:
    """A ticker on the event loop: how late it wakes is how long an operation kept the loop
    from everything else the daemon runs on it (the worker pools, /health, the watcher)."""

    def __init__(self) -> None:
        self.stall = 0.0

    async def tick(self) -> None:
        while True:
            started = time.perf_counter()
            await anyio.sleep(TICK)
            self.stall = max(self.stall, time.perf_counter() - started - TICK)


@dataclass
class Timing:
    seconds: list[float]
    results: list[Any]
    stall: float  # the event loop's longest stall over the runs, seconds


async def timed(
    loop: Loop,
    fn: Callable[[], Awaitable[Any]],
    before: Callable[[], None] | None = None,
    repeat: int = REPEAT,
) -> Timing:
    """`fn` run `repeat` times (`before` each, untimed): the seconds and result of each."""
    timing = Timing([], [], 0.0)
    for _ in range(repeat):
        if before is not None:
            before()
        await anyio.sleep(2 * TICK)
        loop.stall = 0.0
        started = time.perf_counter()
        timing.results.append(await fn())
        timing.seconds.append(time.perf_counter() - started)
        await anyio.sleep(2 * TICK)  # the ticker wakes, and counts the last stall
        timing.stall = max(timing.stall, loop.stall)
    return timing


def line(what: str, n: int, timing: Timing, size: str) -> None:
    runs = ", ".join(f"{s:.3f}" for s in timing.seconds)
    print(
        f"{what:<30} N={n:<6} median {statistics.median(timing.seconds):7.3f} s  (runs {runs}); "
        f"event loop held up to {timing.stall * 1000:.0f} ms; {size}; "
        f"peak RSS {rss_mb():.0f} MB",
        flush=True,
    )


def kib(path: Path) -> str:
    return f"{path.stat().st_size / 1024:.0f} KiB"


def files(written: Written) -> str:
    rows = written.csv.read_text(encoding="utf-8-sig").count("\n") - 1
    return (
        f"{rows} CSV rows; md {kib(written.md)}, json {kib(written.json)}, csv {kib(written.csv)}"
    )


async def measure(root: Path, n: int) -> None:
    config = load_config(root / "facturasd.toml", {})
    clock = Clock()
    loop = Loop()
    async with build(config, clock=clock) as services, anyio.create_task_group() as tg:
        tg.start_soon(loop.tick)
        db = services.db
        row = await db.fetchone(
            "SELECT MIN(received_at) AS at, COUNT(*) AS n, MAX(substr(issued_at, 1, 7)) AS month "
            "FROM invoices"
        )
        assert row is not None
        day = datetime.fromtimestamp(row["at"], UTC).astimezone(services.zone).date()
        print(f"ledger: {row['n']} invoices, received on {day} ({services.zone})")

        # 1. reports
        timing = await timed(
            loop, lambda: write_daily(db, config, zone=services.zone, day=day, clock=clock)
        )
        line(f"write_daily {day}", n, timing, files(timing.results[0]))
        month = row["month"]
        timing = await timed(loop, lambda: write_monthly(db, config, month=month))
        line(f"write_monthly {month}", n, timing, files(timing.results[0]))

        # 2. /metrics
        timing = await timed(loop, services.metrics.scrape)
        text = timing.results[0]
        samples = sum(1 for t in text.splitlines() if t and not t.startswith(b"#"))
        line("metrics.scrape()", n, timing, f"{len(text)} bytes, {samples} samples")

        # 3. /health, a fresh report each time
        def later() -> None:
            clock.offset += timedelta(seconds=2)

        timing = await timed(loop, services.health.report, later)
        report = timing.results[-1]
        items = sum(len(v) for v in report["checks"].values())
        warned = sorted(
            f"{key}:{item.get('componentId', '')}".rstrip(":")
            for key, found in report["checks"].items()
            for item in found
            if item["status"] != "pass"
        )
        line(
            "health.report() (fresh)",
            n,
            timing,
            f"{len(report['checks'])} checks, {items} items, status {report['status']} "
            f"score {report['score']} (not pass: {', '.join(warned) or 'none'})",
        )

        # 4. what the dashboard reads at each refresh (GET /api/v1/status and stats/hourly)
        timing = await timed(
            loop,
            partial(
                snapshot, db, config, zone=services.zone, clock=clock, health=report, lang="es"
            ),
        )
        snap = timing.results[0]
        line(
            "dashboard: status",
            n,
            timing,
            f"today {snap['today']['total']}, needs a person {snap['needs_person']['count']}",
        )
        timing = await timed(loop, partial(per_hour, db, zone=services.zone, clock=clock))
        hours = timing.results[0]
        line("dashboard: stats/hourly", n, timing, f"{sum(h['total'] for h in hours)} in 24 h")

        # 5. the scheduler's tasks
        tasks = services.scheduler.tasks
        for name in ("backup", "archive_check", "file_cleanup", "compliance_cleanup"):
            # (a backup is named by its second: each run two seconds later, as for /health)
            timing = await timed(loop, tasks[name].run, later)
            said = timing.results
            # The first run does what there is to do; the others say so if it differs (each
            # backup has a name of its own).
            size = f"said: {said[0]}" + "".join(
                f" / run {i + 1}: {s}"
                for i, s in enumerate(said)
                if i and s != said[0] and name != "backup"
            )
            if name == "archive_check":
                mib = await _archived_bytes(services) / 2**20
                size += f"; {mib:.1f} MiB, {mib / statistics.median(timing.seconds):.0f} MiB/s"
            line(f"task {name}", n, timing, size)

        # 6. one round of the alerts engine
        timing = await timed(loop, partial(alert_round, services, clock))
        line("alerts: gather + evaluate", n, timing, timing.results[0])

        clock.offset += LATER
        for name in ("file_cleanup", "compliance_cleanup"):
            timing = await timed(loop, tasks[name].run, repeat=1)
            line(f"task {name} +31 d", n, timing, f"said: {timing.results[0]}")
        clock.offset -= LATER
        tg.cancel_scope.cancel()


async def alert_round(services: Services, clock: Clock) -> str:
    """The daemon's alert sources (facturasd/daemon.py `conditions`) gathered once and
    evaluated; the pools' tallies are empty here (no worker runs)."""
    engine = alerts.AlertEngine(services.db, cooldown=services.config.alerts.cooldown, clock=clock)
    gather = conditions(services, {}, clock=clock)
    observed = await gather()
    raised = await engine.evaluate(observed)
    holding = sorted(o.key for o in observed if o.holds)
    return (
        f"{len(observed)} conditions looked at, holding: {', '.join(holding) or 'none'}; "
        f"{len(raised)} alert(s) stored"
    )


async def _archived_bytes(services: Services) -> int:
    rows = await services.db.fetchall("SELECT DISTINCT path FROM invoices WHERE archived = 1")

    def sizes() -> int:
        return sum(Path(r["path"]).stat().st_size for r in rows if Path(r["path"]).exists())

    return await anyio.to_thread.run_sync(sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--invoices", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    print(
        f"{platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}"
    )
    print(f"command: python {' '.join(sys.argv)}")
    root = Path(tempfile.mkdtemp(prefix="facturasd-bench-ops-", dir=args.dir))
    try:
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            taken, confirmed, found = pool.submit(prepare, root, args.invoices, args.seed).result()
        print(
            f"ledger filled in a child process: taken (ingest, parse, check) in {taken:.0f} s, "
            f"confirmed against the sandbox in {confirmed:.0f} s"
        )
        for format_, state, compliance, count in found["states"]:
            print(f"  {format_:<12} {state:<9} {compliance or '-':<9} {count:>6}")
        attempts = ", ".join(f"{a} {o} {n}" for a, o, n in found["attempts"])
        print(f"  authority attempts: {attempts}; fallback copies: {found['copies']}")
        anyio.run(measure, root, args.invoices)
        print(f"peak RSS of this process: {rss_mb():.0f} MB")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
