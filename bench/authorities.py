"""The confirm stage against the local SAT server: 2,000 CFDIs at 150 ms a call, three ways.

    python bench/authorities.py [--invoices 2000] [--dir /tmp] [--rate 6000/m] [--scale 10]

The CFDIs vary: 1 to 80 concepts, IVA at 16, 8 and 0 %, discounts, IVA and ISR withholdings,
local taxes, a few credit notes (egreso); copies of the real payment complement (Pagos 2.0) and
of the real invoice whose issuer RFC has an `&`, each with a UUID of its own; and the real CFDI
samples (those that end `checked`). They are ingested, parsed and checked once, in this
process (tests/support.take), into a ledger whose confirm jobs wait in `dian_validation`; each
scenario starts from a copy of that ledger, with the sandbox's application (every archived
document known and in force, `latency_ms = 150` on every SAT call) on a real port in this
process, the `authorities` worker pool and the sweep (every `retry.interval`), and times from
the pool's start until every checked invoice is VALIDATED. `--seed` draws the invoices and
the sandbox's share of faults.

1. Clean: the wall time against the floor the pool's concurrency and the queue's rate limit
   allow, max(N × latency / concurrency, N / rate). The shipped 60/m would take 33 minutes and
   set the floor by itself, so the rate limit is raised (`--rate`, printed) to leave the floor
   to concurrency × latency. Goal: at most 1.15 × the floor.
2. One SAT answer in five is a 503 (`Fault(status=503, rate=0.2)`): the wall time, its ratio to
   the same floor, and that no retry was burned (no RETRY or FAILED, every job done on its one
   counted attempt).
3. SAT down for 10 minutes (every answer a 503) from a third of the way: on a SCALED CLOCK. The
   daemon's clock (queue, rate windows, circuits, schedules) runs `--scale` times faster than
   real time; the shipped `retry.interval` (5 min) and the outage (10 min) are simulated time,
   and so is the rate limit (`--rate` × scale, the same calls per real second). The latency and
   the HTTP timeouts stay real. Printed: wall and simulated time, the calls SAT left without an
   answer during the outage (the circuit opens after 5, then one probe per interval), how long
   after SAT came back the first invoice was VALIDATED (at most one interval), and the same
   checks as 2.
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
import random
import shutil
import sqlite3
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio
from aiohttp import web

from facturasd.authorities import Authority
from facturasd.config import QueueSettings, RateLimit, load_config
from facturasd.constants import DATABASE_FILE, ComplianceStatus, WorkerGroup
from facturasd.sandbox.server import base_urls, create_app, load_documents
from facturasd.sandbox.state import Fault, Sandbox, SatRecord
from facturasd.services import Services, build
from facturasd.upstream import AGAIN_SOON
from tests.documents import Item, cfdi40
from tests.support import take, write_config

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO.parent / "shared" / "samples" / "cfdi"
# Real files copied with a UUID of their own: a payment complement, an RFC with `&`.
TEMPLATES = (
    "satcfdi__pago_h-and-e951128469_ingreso_iva16.xml",
    "satcfdi__h-and-e951128469_ingreso_iva16_stamped.xml",
)
LATENCY = 0.150
OUTAGE = 600.0  # simulated seconds
INTERVAL = 300.0  # retry.interval, as shipped
# The samples are years old, and two of them are SAT's test documents.
CHECKS = '[checks]\nmax_age = "100000d"\naccept_test_documents = true\n'
POLL = 0.05  # how often the bench looks at the ledger, real seconds
C = ComplianceStatus


# ── the invoices ──────────────────────────────────────────────────────────────────────────


def generated(rng: random.Random, n: int) -> bytes:
    """One CFDI 4.0 of a shape drawn from `rng`."""
    size = rng.choices(
        [1, rng.randint(2, 5), rng.randint(6, 30), rng.randint(31, 80)], [3, 4, 2, 1]
    )
    items = []
    for i in range(size[0]):
        quantity = rng.randint(1, 20)
        price = f"{rng.randint(1, 99999)}.{rng.randint(0, 99):02}"
        rate = rng.choice(["16", "16", "8", "0"])
        discount = None
        if rng.random() < 0.2:
            amount = int(quantity * float(price) * 100)
            discount = f"{rng.randint(0, amount // 10) / 100:.2f}"
        withholdings: tuple[tuple[str, str], ...] = ()
        if rate == "16" and rng.random() < 0.15:
            withholdings = (("002", "10.666667"), ("001", "10"))
        items.append(Item(f"Concepto {n}-{i}", str(quantity), price, rate, discount, withholdings))
    local = [("R", "Cinco al millar", "0.5")] if rng.random() < 0.05 else []
    kind = "E" if rng.random() < 0.03 else "I"
    return cfdi40(items, kind=kind, local=local, override={"uuid": _uuid(rng)})


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper()


def invoices(count: int, seed: int) -> dict[str, bytes]:
    """`count` files: copies of TEMPLATES (one in twenty each), the rest generated."""
    rng = random.Random(seed)
    templates = [(SAMPLES / name).read_bytes() for name in TEMPLATES]
    files = {}
    for n in range(count):
        if n % 20 < len(templates):
            template = templates[n % 20]
            old = template.split(b'UUID="', 1)[1].split(b'"', 1)[0]
            files[f"copy-{n:05}.xml"] = template.replace(old, _uuid(rng).encode())
        else:
            files[f"cfdi-{n:05}.xml"] = generated(rng, n)
    return files


def prepare(root: Path, count: int, seed: int) -> dict[str, SatRecord]:
    """The ledger under `root` with `count` checked CFDIs (the real samples that pass the
    checks, the rest from `invoices`), their confirm jobs queued; SAT's records of every
    archived document."""
    config_file = write_config(root, CHECKS)
    config = take(config_file, {p.name: p.read_bytes() for p in sorted(SAMPLES.glob("*.xml"))})
    database = config.paths.state_dir / DATABASE_FILE
    samples = _checked(database)
    take(config_file, invoices(count - samples, seed))
    sandbox = Sandbox()
    load_documents(sandbox, config.paths.archive)
    with sqlite3.connect(database) as conn:
        kinds = conn.execute(
            "SELECT kind, format, COUNT(*) FROM invoices WHERE state = 'checked' "
            "GROUP BY kind, format ORDER BY 3 DESC"
        ).fetchall()
    shown = ", ".join(f"{n} {kind} ({format})" for kind, format, n in kinds)
    print(f"ledger: {_checked(database)} checked CFDIs ({samples} real samples): {shown}")
    return sandbox.sat


def _checked(database: Path) -> int:
    with sqlite3.connect(database) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM invoices WHERE state = 'checked'").fetchone()
    return int(count)


# ── a scenario ────────────────────────────────────────────────────────────────────────────


class ScaledClock:
    """The daemon's clock: from now, `scale` simulated seconds for each real one."""

    def __init__(self, scale: float):
        self.scale = scale
        self._start = datetime.now(UTC)
        self._t0 = time.monotonic()

    def __call__(self) -> datetime:
        return self._start + timedelta(seconds=(time.monotonic() - self._t0) * self.scale)


@dataclass
class Outage:
    """SAT answers nothing but 503s from `after` VALIDATED invoices on, for `length`
    simulated seconds; what the run saw of it."""

    after: int
    length: float
    started: float | None = None  # simulated timestamps
    ended: float | None = None
    requests: int = 0  # SAT's requests it did not answer (a 503) while it lasted
    first_valid: float | None = None  # the first VALIDATED answer after it


@dataclass
class Result:
    wall: float
    simulated: float
    statuses: dict[str, int]
    ever: list[str]  # every compliance status an invoice took
    parked: int  # invoices that were in FALLBACK at some point
    jobs: list[tuple[str, str, int, int]]  # (queue, state, attempts, count) of confirm jobs
    outcomes: dict[str, int]  # the attempts recorded, by outcome
    requests: dict[str, int]  # SAT's, by outcome
    circuit_opened: int
    latency_ms: float  # median of the answered calls, as the client measured them
    scale: float
    validated_at: list[float]  # each VALIDATED answer, simulated seconds from the start
    unanswered: dict[int, int]  # invoices by how many of their calls got no answer
    outage: Outage | None = None

    def burned(self) -> list[str]:
        """What says a retry was used up, or an invoice left unconfirmed; empty if none."""
        found = [s for s in self.ever if s in (C.RETRY, C.FAILED)]
        found += [
            f"job {q} {s} attempts={a} ×{n}" for q, s, a, n in self.jobs if (s, a) != ("done", 1)
        ]
        found += [
            f"{o} ×{n}" for o, n in self.outcomes.items() if o not in ("valid", "unavailable")
        ]
        found += [f"{s} ×{n}" for s, n in self.statuses.items() if s != C.VALIDATED]
        return found


async def scenario(
    template: Path,
    root: Path,
    records: dict[str, SatRecord],
    count: int,
    *,
    rate: RateLimit,
    fault: Fault,
    scale: float = 1.0,
    outage: Outage | None = None,
) -> Result:
    """A copy of the ledger at `template`, its confirm jobs run against the sandbox with
    `fault` set, until `count` invoices are VALIDATED."""
    shutil.copytree(template, root)
    sandbox = Sandbox(sat=dict(records))
    sandbox.faults["sat"] = fault
    runner = web.AppRunner(create_app(sandbox), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    write_config(
        root,
        CHECKS + f'[authorities.sat]\nurl = "{base_urls("127.0.0.1", port)["sat"]}"\n'
        f'[queues.dian_validation]\nrate_limit = "{rate}"\n'
        f'[queues.compliance_retry]\nrate_limit = "{rate}"\n',
    )
    config = load_config(root / "facturasd.toml", {})
    clock = ScaledClock(scale)
    try:
        async with build(config, clock=clock) as services:
            return await _drive(services, sandbox, clock, count, outage)
    finally:
        await runner.cleanup()


async def _drive(
    services: Services, sandbox: Sandbox, clock: ScaledClock, count: int, outage: Outage | None
) -> Result:
    db = services.db
    pool = services.pools[WorkerGroup.AUTHORITIES]
    circuit = services.confirm.circuits[Authority.SAT]
    interval = services.config.retry.interval
    openings: set[float] = set()

    async def validated() -> int:
        row = await db.fetchone(
            "SELECT COUNT(*) AS n FROM invoices WHERE compliance = ?", (C.VALIDATED,)
        )
        assert row is not None
        return int(row["n"])

    def faults() -> int:
        return int(sandbox.stats()["sat"]["by_outcome"].get("fault", 0))

    async def sweep() -> None:
        """As the daemon does: every retry.interval (on the daemon's clock)."""
        while True:
            await anyio.sleep(interval / clock.scale)
            await services.confirm.sweep()

    async with anyio.create_task_group() as tg:
        await services.confirm.sweep()  # at start, as the daemon does
        started, since = time.monotonic(), clock().timestamp()
        tg.start_soon(pool.run)
        tg.start_soon(sweep)
        normal = sandbox.faults["sat"]
        while (done := await validated()) < count:
            if (opened := circuit.opened_at) is not None:
                openings.add(opened)
            if outage is not None:
                now = clock().timestamp()
                if outage.started is None and done >= outage.after:
                    sandbox.faults["sat"] = Fault(
                        status=503, rate=1.0, latency_ms=normal.latency_ms
                    )
                    outage.started, outage.requests = now, faults()
                elif outage.ended is None and now - (outage.started or now) >= outage.length:
                    sandbox.faults["sat"] = normal
                    outage.ended, outage.requests = now, faults() - outage.requests
            await anyio.sleep(POLL)
        wall, simulated = time.monotonic() - started, clock().timestamp() - since
        pool.stop()
        await pool.drained()
        tg.cancel_scope.cancel()

    if outage is not None and outage.ended is not None:
        row = await db.fetchone(
            "SELECT MIN(at) AS at FROM authority_attempts WHERE outcome = 'valid' AND at >= ?",
            (outage.ended,),
        )
        outage.first_valid = row["at"] if row else None
    statuses = await db.fetchall(
        "SELECT compliance, COUNT(*) AS n FROM invoices WHERE state = 'checked' GROUP BY compliance"
    )
    ever = await db.fetchall(
        "SELECT DISTINCT compliance FROM invoice_events WHERE compliance IS NOT NULL"
    )
    parked = await db.fetchone(
        "SELECT COUNT(DISTINCT invoice_id) AS n FROM invoice_events WHERE compliance = ?",
        (C.FALLBACK,),
    )
    jobs = await db.fetchall(
        "SELECT queue, state, attempts, COUNT(*) AS n FROM jobs WHERE kind = 'confirm' "
        "GROUP BY queue, state, attempts"
    )
    outcomes = await db.fetchall(
        "SELECT outcome, COUNT(*) AS n FROM authority_attempts GROUP BY outcome"
    )
    valid = await db.fetchall(
        "SELECT at, latency FROM authority_attempts WHERE outcome = 'valid' ORDER BY at"
    )
    latencies = sorted(row["latency"] for row in valid)
    unanswered = await db.fetchall(
        "SELECT n, COUNT(*) AS invoices FROM (SELECT COUNT(*) AS n FROM authority_attempts "
        "WHERE outcome = 'unavailable' GROUP BY invoice_id) GROUP BY n ORDER BY n"
    )
    return Result(
        wall=wall,
        simulated=simulated,
        statuses={row["compliance"]: row["n"] for row in statuses},
        ever=[row["compliance"] for row in ever],
        parked=parked["n"] if parked else 0,
        jobs=[(row["queue"], row["state"], row["attempts"], row["n"]) for row in jobs],
        outcomes={row["outcome"]: row["n"] for row in outcomes},
        requests=dict(sandbox.stats()["sat"]["by_outcome"]),
        circuit_opened=len(openings),
        latency_ms=latencies[len(latencies) // 2] * 1000 if latencies else 0.0,
        scale=clock.scale,
        validated_at=[row["at"] - since for row in valid],
        unanswered={row["n"]: row["invoices"] for row in unanswered},
        outage=outage,
    )


# ── the report ────────────────────────────────────────────────────────────────────────────


def _report(name: str, result: Result, floor: float, concurrency: int) -> bool:
    """Prints one scenario's numbers; whether its checks held."""
    print(f"\n{name}")
    label = "floor"
    if result.outage is not None:  # the outage's length in real time is no one's to save
        floor, label = floor + result.outage.length / result.scale, "floor + outage"
    print(
        f"  wall time: {result.wall:8.1f} s   {label} {floor:.1f} s   "
        f"ratio {result.wall / floor:.3f}"
    )
    if result.scale != 1:
        print(f"  simulated time: {result.simulated:8.0f} s ({result.simulated / 60:.1f} min)")
    print(f"  SAT requests: {sum(result.requests.values())} {result.requests}")
    print(
        f"  attempts recorded: {result.outcomes}; median answered call {result.latency_ms:.0f} ms"
    )
    print(f"  circuit opened: {result.circuit_opened} time(s)")
    if result.unanswered:
        shown = ", ".join(f"{n}×: {invoices}" for n, invoices in result.unanswered.items())
        print(f"  invoices by calls without an answer: {shown}")
    if result.unanswered and result.outage is None:
        within = sum(1 for at in result.validated_at if at <= floor * 1.15)
        print(
            f"  VALIDATED within 1.15 × the floor: {within} of {len(result.validated_at)}, "
            f"the last after {result.validated_at[-1]:.1f} s: a 503 while the circuit is closed "
            f"parks the invoice for {AGAIN_SOON:.0f} s, each time"
        )
    if (outage := result.outage) is not None:
        assert outage.started is not None and outage.ended is not None
        print(
            f"  outage: {outage.length / 60:.0f} simulated min from invoice {outage.after}; "
            f"{outage.requests} SAT calls without an answer during it "
            f"(expected: 5 open the circuit, plus up to {concurrency - 1} already in flight, "
            f"then one probe per {INTERVAL / 60:.0f}-min interval: at most "
            f"{5 + concurrency - 1 + outage.length / INTERVAL:.0f})"
        )
        if outage.first_valid is not None:
            after = outage.first_valid - outage.ended
            print(
                f"  first VALIDATED {after:.0f} simulated s after SAT came back "
                f"(retry.interval {INTERVAL:.0f} s)"
            )
    problems = result.burned()
    print(
        f"  statuses taken: {', '.join(sorted(result.ever))}; "
        f"{result.parked} invoices were in FALLBACK for a while"
    )
    print(f"  retries burned / not VALIDATED: {', '.join(problems) if problems else 'none'}")
    return not problems


async def scenarios(
    args: argparse.Namespace, root: Path, template: Path, records: dict[str, SatRecord]
) -> bool:
    count = args.invoices
    concurrency = load_config(template / "facturasd.toml", {}).workers.concurrency(
        WorkerGroup.AUTHORITIES
    )
    per_second = args.rate.count / args.rate.period
    floor = max(count * LATENCY / concurrency, count / per_second)
    print(
        f"{count} CFDIs, SAT at {LATENCY * 1000:.0f} ms a call; authorities pool concurrency "
        f"{concurrency}; dian_validation and compliance_retry rate limit raised to {args.rate} "
        f"(shipped: 60/m and 30/m)"
    )
    print(
        "floor = max(N × latency / concurrency, N / rate) = "
        f"max({count * LATENCY / concurrency:.1f}, {count / per_second:.1f}) = {floor:.1f} s"
    )
    latency = int(LATENCY * 1000)
    ok = True

    random.seed(args.seed)  # the sandbox's share of faults
    clean = await scenario(
        template,
        root / "clean",
        records,
        count,
        rate=args.rate,
        fault=Fault(rate=0.0, latency_ms=latency),
    )
    ok &= _report("1. clean", clean, floor, concurrency)
    goal = clean.wall / floor <= 1.15
    print(f"  goal ≤ 1.15 × floor: {'met' if goal else 'NOT met'}")

    flaky = await scenario(
        template,
        root / "flaky",
        records,
        count,
        rate=args.rate,
        fault=Fault(status=503, rate=0.2, latency_ms=latency),
    )
    ok &= _report("2. one answer in five a 503", flaky, floor, concurrency)
    print(
        f"  (the 503s cost calls too: N / 0.8 calls would take {floor / 0.8:.1f} s; "
        f"ratio to that {flaky.wall / (floor / 0.8):.3f})"
    )

    scaled = RateLimit(args.rate.count * args.scale, args.rate.period)
    outage = Outage(after=count // 3, length=OUTAGE)
    down = await scenario(
        template,
        root / "outage",
        records,
        count,
        rate=scaled,
        fault=Fault(rate=0.0, latency_ms=latency),
        scale=args.scale,
        outage=outage,
    )
    print(
        f"\n(scaled clock ×{args.scale}: the daemon's clock runs {args.scale} times faster than "
        f"real time; retry.interval {INTERVAL:.0f} s and the outage {OUTAGE:.0f} s are simulated; "
        f"rate limit {scaled} simulated = {args.rate} real; latency real)"
    )
    title = f"3. SAT down {OUTAGE / 60:.0f} minutes from a third of the way"
    ok &= _report(title, down, floor, concurrency)
    return ok and goal


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--invoices", type=int, default=2000)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument(
        "--rate",
        type=_rate,
        default=_rate("6000/m"),
        help="rate limit of dian_validation and compliance_retry (shipped: 60/m, 30/m)",
    )
    parser.add_argument("--scale", type=int, default=10, help="the outage's clock: × real time")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="facturasd-bench-", dir=args.dir))
    try:
        template = root / "ledger"
        template.mkdir()
        prepared = time.monotonic()
        records = prepare(template, args.invoices, args.seed)
        print(f"prepared in {time.monotonic() - prepared:.0f} s")
        ok = anyio.run(scenarios, args, root, template, records)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n{'all checks held' if ok else 'SOME CHECKS FAILED'}")
    sys.exit(0 if ok else 1)


def _rate(text: str) -> RateLimit:
    """A rate limit as the configuration reads one ("6000/m")."""
    found = QueueSettings(rate_limit=text).rate_limit
    if found is None:
        raise ValueError("the benchmark needs a rate limit")
    return found


if __name__ == "__main__":
    main()
