"""The booking stage against the local Alegra: 10,000 CFDIs from 200 suppliers, cold and warm.

    python bench/booking.py [--invoices 10000] [--suppliers 200] [--seed 7] [--rate 3000/m]
                            [--workers 16] [--dir /tmp]

The invoices are CFDI 4.0 of `--suppliers` issuers (each its own RFC and name), drawn with a
Zipf law (s = 1.1, the few suppliers an office gets most of its invoices from), of varied
shapes: 1 to 20 concepts, IVA at 16, 8 and 0 %, some with ISR and IVA withheld. Two ledgers
are ingested, parsed and checked in child processes (tests/support.take), so this process's
peak RSS is that of booking: one for the cold run, one of new invoices of the same suppliers
for the warm run.

Each run starts the sandbox as its own process (`facturasd sandbox`, so its CPU does not share
the daemon's event loop), with the run's archive as its `--documents` (SAT knows each CFDI in
force) and Alegra at 100 ms a request. In this process, the daemon's services confirm every
invoice (the `authorities` pool; not timed), which queues its `book` job; then the `alegra`
pool alone runs until every invoice is `booked` and its XML attached: that drain is what is
timed, from the moment the pool starts (every book job is due by then).

1. Cold: an empty Alegra account and an empty cache.
2. Warm: the account as the cold run left it (`--alegra-state`), the cache filled by
   `directory.warm_up()` (as the daemon does at start) before the clock starts.

Alegra's real limit (150 a minute) would make 10,000 bookings take hours, so the limit is
raised on both sides to `--rate` (the sandbox's `--alegra-rate`, the daemon's
`alegra.rate_limit`), printed. The floor is N × requests per invoice ÷ rate; the goal is a
drain within 1.15 × the floor, no request over the limit (the sandbox's `limited` = 0),
provider look-ups (GET /contacts) per invoice ≤ 0.03 cold and ≈ 0 warm, and every invoice
`booked` with exactly one bill.

The default, 3000 a minute (50 a second), keeps Alegra's minute-long window. A rate with a
shorter period (`50/s`) shrinks the window, and two costs the client pays once a window grow
with it: a request holds its place in the limiter from when it is sent until a window after
its answer (100 ms of a 1 s window, 0.2 % of a minute's), and when the server says the window
is spent (`X-Rate-Limit-Remaining: 0`) the client waits the whole seconds of
`X-Rate-Limit-Reset` (at least 1) from that answer: at a 1 s window the wait outlasts the
window by as long as its requests took to send.
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
import multiprocessing
import os
import random
import resource
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import anyio
from stdnum.mx import rfc

from facturasd.config import RateLimit, load_config
from facturasd.constants import DATABASE_FILE, ComplianceStatus, InvoiceState, WorkerGroup
from facturasd.services import Services, build
from tests.documents import Item, cfdi40
from tests.support import SandboxProcess, take, write_config

LATENCY_MS = 100
ZIPF_S = 1.1
# The confirm step is not what is measured: its queues run unthrottled.
UNLIMITED = (
    '[queues.dian_validation]\nrate_limit = ""\n[queues.compliance_retry]\nrate_limit = ""\n'
)
POLL = 0.1  # how often the bench looks at the ledger, seconds
STUCK = 120.0  # no book or attach job done for this long: the run is reported as it stands
REFERENCE = ("GET /taxes", "GET /retentions", "GET /categories")
S = InvoiceState


# ── the invoices ──────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Supplier:
    rfc: str
    name: str


def suppliers(count: int) -> list[Supplier]:
    """`count` companies (personas morales), each with a valid RFC of its own."""
    found = []
    for n in range(count):
        letters = "".join(chr(ord("A") + (n // 26**k) % 26) for k in (2, 1, 0))
        stem = f"{letters}{1 + n % 28:02}0{1 + n % 9}{10 + n % 18:02}"[:9] + "A1"
        found.append(Supplier(stem + rfc.calc_check_digit(stem), f"PROVEEDORA {n:03} SA DE CV"))
    return found


def cfdi(rng: random.Random, supplier: Supplier, n: int, date: str) -> bytes:
    """One CFDI 4.0 of `supplier`, of a shape drawn from `rng`."""
    items = []
    for i in range(rng.choices([1, rng.randint(2, 5), rng.randint(6, 20)], [4, 4, 2])[0]):
        rate = rng.choice(["16", "16", "8", "0"])
        withholdings: tuple[tuple[str, str], ...] = ()
        if rate == "16" and rng.random() < 0.15:  # services from a company: ISR and IVA withheld
            withholdings = (("002", "10.666667"), ("001", "10"))
        price = f"{rng.randint(1, 99999)}.{rng.randint(0, 99):02}"
        items.append(
            Item(f"Concepto {n}-{i}", str(rng.randint(1, 20)), price, rate, None, withholdings)
        )
    uuid_ = str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper()
    data = cfdi40(items, override={"uuid": uuid_, "issuer": supplier.rfc, "date": date})
    # tests/documents names every issuer alike; each supplier signs with its own name.
    return data.replace(b'Nombre="EMISORA DE PRUEBA"', f'Nombre="{supplier.name}"'.encode())


def invoices(count: int, how_many_suppliers: int, seed: int) -> tuple[dict[str, bytes], set[str]]:
    """`count` CFDIs, their issuers drawn with a Zipf law from `suppliers`; the RFCs drawn."""
    rng = random.Random(seed)
    issuers = suppliers(how_many_suppliers)
    weights = [1 / rank**ZIPF_S for rank in range(1, len(issuers) + 1)]
    date = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT10:00:00")
    drawn = rng.choices(issuers, weights, k=count)
    files = {f"cfdi-{seed}-{n:05}.xml": cfdi(rng, s, n, date) for n, s in enumerate(drawn)}
    return files, {s.rfc for s in drawn}


def prepare(root: Path, count: int, how_many_suppliers: int, seed: int) -> tuple[int, set[str]]:
    """A ledger under `root` with `count` checked CFDIs, their confirm jobs queued. Run in a
    child process. Returns (checked invoices, their suppliers' RFCs)."""
    files, issuers = invoices(count, how_many_suppliers, seed)
    config = take(write_config(root, UNLIMITED), files)
    with sqlite3.connect(config.paths.state_dir / DATABASE_FILE) as conn:
        (checked,) = conn.execute(
            "SELECT COUNT(*) FROM invoices WHERE state = ?", (S.CHECKED,)
        ).fetchone()
    return int(checked), issuers


# ── a run ─────────────────────────────────────────────────────────────────────────────────


@dataclass
class Result:
    name: str
    invoices: int
    suppliers: int
    new_suppliers: int  # not in Alegra before the run
    drain: float = 0.0
    requests: Counter[str] = field(default_factory=Counter)  # by endpoint, during the drain
    warm_up: Counter[str] = field(default_factory=Counter)  # by endpoint, before it
    by_outcome: Counter[str] = field(default_factory=Counter)
    limited: int = 0
    peak_per_window: int = 0
    states: dict[str, int] = field(default_factory=dict)
    bill_ids: int = 0  # distinct bill ids in the ledger
    bills: int = 0  # bills in Alegra after the run
    bills_added: int = 0  # less those before it
    attach_jobs: dict[str, int] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)
    rss_mb: float = 0.0
    cpu: float = 0.0  # CPU seconds this process (the daemon's services) spent in the drain
    sandbox_cpu: float = 0.0  # and the sandbox's process
    load: float = 0.0  # the machine's load average (1 min) at the drain's end
    stuck: bool = False

    @property
    def total(self) -> int:
        return sum(self.requests.values())


async def run(
    name: str,
    root: Path,
    state: Path,
    rate: RateLimit,
    workers: int,
    *,
    invoices: int,
    issuers: set[str],
    new: int,
    warm: bool,
    bills_before: int,
) -> Result:
    """The ledger under `root` confirmed, then booked by the alegra pool against a sandbox
    process whose Alegra account is kept in `state`."""
    config_file = root / "facturasd.toml"
    archive = load_config(config_file, {}).paths.archive
    with SandboxProcess(
        "--alegra-rate", str(rate), "--alegra-state", str(state), "--documents", str(archive)
    ) as sandbox:
        sandbox.post("/_admin/faults", {"service": "alegra", "latency_ms": LATENCY_MS, "rate": 0.0})
        env = sandbox.env() | sandbox.alegra_env(root)
        write_config(
            root,
            UNLIMITED
            + f'[alegra]\nrate_limit = "{rate}"\n[workers.alegra]\nconcurrency = {workers}\n',
        )
        config = load_config(config_file, env)
        result = Result(name, invoices, len(issuers), new)
        async with build(config) as services:
            await confirm(services, result.invoices)
            before = _stats(sandbox)
            assert services.alegra is not None
            if warm:
                await services.alegra.books[None].directory.warm_up()
                after = _stats(sandbox)
                result.warm_up = Counter(after["by_endpoint"]) - Counter(before["by_endpoint"])
                before = after
            cpu, sandbox_cpu = _cpu(), _cpu(sandbox.proc.pid)
            await book(services, result)
            result.cpu, result.sandbox_cpu = _cpu() - cpu, _cpu(sandbox.proc.pid) - sandbox_cpu
            result.load = os.getloadavg()[0]
            after = _stats(sandbox)
            result.requests = Counter(after["by_endpoint"]) - Counter(before["by_endpoint"])
            result.by_outcome = Counter(after["by_outcome"]) - Counter(before["by_outcome"])
            result.limited = after["limited"]
            result.peak_per_window = after["peak_per_window"]
            result.cache = await services.alegra.cache.metrics()
            result.rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            await _ledger(services, result)
        # (counted after the drain: a request of the bench's own in the drain's window would
        # leave the daemon one fewer than it counts on)
        result.bills = await _bills(sandbox)
        result.bills_added = result.bills - bills_before
    return result


async def alegra(sandbox: SandboxProcess, method: str, path: str, **kwargs: Any) -> Any:
    """The sandbox's Alegra API as its user (outside the daemon's limiter: the bench's own
    few calls are made before and after the timed drain)."""
    import httpx

    auth = (sandbox.alegra_user, sandbox.alegra_token)
    async with httpx.AsyncClient(auth=auth, timeout=30) as http:
        response = await http.request(method, sandbox.urls["alegra"] + path, **kwargs)
    response.raise_for_status()
    return response.json()


async def _bills(sandbox: SandboxProcess) -> int:
    found = await alegra(sandbox, "GET", "/bills", params={"metadata": "true", "limit": 1})
    return int(found["metadata"]["total"])


def _cpu(pid: int | None = None) -> float:
    """CPU seconds (user and system) this process, or process `pid`, has used."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stats(sandbox: SandboxProcess) -> dict[str, Any]:
    found: dict[str, Any] = sandbox.stats()["alegra"]
    return found


async def _count(services: Services, sql: str, *params: object) -> int:
    row = await services.db.fetchone(f"SELECT COUNT(*) AS n FROM {sql}", params)
    assert row is not None
    return int(row["n"])


async def confirm(services: Services, count: int) -> None:
    """Every invoice VALIDATED by SAT (which queues its book job), the alegra pool idle."""
    pool = services.pools[WorkerGroup.AUTHORITIES]
    async with anyio.create_task_group() as tg:
        await services.confirm.sweep()
        tg.start_soon(pool.run)
        validated = ComplianceStatus.VALIDATED
        while True:
            if await _count(services, "invoices WHERE compliance = ?", validated) >= count:
                break
            await anyio.sleep(POLL)
        pool.stop()
        await pool.drained()


async def book(services: Services, result: Result) -> None:
    """The alegra pool, timed until no book or attach job is left (or none finished for
    STUCK seconds)."""
    pool = services.pools[WorkerGroup.ALEGRA]
    jobs = "jobs WHERE kind IN ('book', 'attach') AND state "
    async with anyio.create_task_group() as tg:
        started = time.monotonic()
        tg.start_soon(pool.run)
        progress, done = started, 0
        while await _count(services, jobs + "IN ('queued', 'running')"):
            if (now := await _count(services, jobs + "= 'done'")) > done:
                progress, done = time.monotonic(), now
            elif time.monotonic() - progress > STUCK:
                result.stuck = True
                break
            await anyio.sleep(POLL)
        result.drain = time.monotonic() - started
        pool.stop()
        await pool.drained()


async def _ledger(services: Services, result: Result) -> None:
    db = services.db
    rows = await db.fetchall("SELECT state, COUNT(*) AS n FROM invoices GROUP BY state")
    result.states = {row["state"]: row["n"] for row in rows}
    result.bill_ids = await _count(
        services, "(SELECT DISTINCT alegra_bill_id FROM invoices WHERE alegra_bill_id IS NOT NULL)"
    )
    rows = await db.fetchall(
        "SELECT state, COUNT(*) AS n FROM jobs WHERE kind = 'attach' GROUP BY state"
    )
    result.attach_jobs = {row["state"]: row["n"] for row in rows}


# ── the report ────────────────────────────────────────────────────────────────────────────


def report(results: list[Result], rate: RateLimit) -> bool:
    """The runs side by side, then whether the goals were met; FAIL lines for what must
    hold and did not. Whether all that must hold held."""
    per_second = rate.count / rate.period
    # The client counts a request from when it is sent until a period after its answer, so
    # at most `count` requests go out in any period + latency.
    held = (rate.period + LATENCY_MS / 1000) / rate.count

    def row(label: str, values: list[str]) -> None:
        print(f"  {label:<44}" + "".join(f"{v:>16}" for v in values))

    def each(fn: Any) -> list[str]:
        return [fn(r) for r in results]

    print()
    row("", [r.name for r in results])
    row("invoices", each(lambda r: f"{r.invoices}"))
    row("suppliers (new to Alegra)", each(lambda r: f"{r.suppliers} ({r.new_suppliers})"))
    row("warm-up requests (before the clock)", each(lambda r: f"{sum(r.warm_up.values())}"))
    row("requests during the drain", each(lambda r: f"{r.total}"))
    row("  per invoice", each(lambda r: f"{r.total / r.invoices:.4f}"))
    for endpoint in ("POST /bills", "POST /bills/{id}/attachment", "POST /contacts"):
        row(f"  {endpoint}", each(lambda r, e=endpoint: f"{r.requests[e]}"))
    row(
        "  provider look-ups (GET /contacts) per invoice",
        each(lambda r: f"{r.requests['GET /contacts'] / r.invoices:.4f}"),
    )
    row(
        "  reference reads (taxes/retentions/categ.)",
        each(lambda r: "/".join(str(r.requests[e]) for e in REFERENCE)),
    )
    others = {e for r in results for e in r.requests} - {
        "POST /bills",
        "POST /bills/{id}/attachment",
        "POST /contacts",
        "GET /contacts",
        *REFERENCE,
    }
    for endpoint in sorted(others):
        row(f"  {endpoint}", each(lambda r, e=endpoint: f"{r.requests[e]}"))
    row("  by outcome", each(lambda r: ",".join(f"{k}={v}" for k, v in r.by_outcome.items())))
    row("drain time (s)", each(lambda r: f"{r.drain:.1f}"))
    row(
        f"floor N × req/invoice ÷ {per_second:g}/s (s)",
        each(lambda r: f"{r.total / per_second:.1f}"),
    )
    row("ratio (goal ≤ 1.15)", each(lambda r: f"{r.drain / (r.total / per_second):.3f}"))
    row(
        f"client limiter's own bound N×req×{held * rate.count:g}s÷{rate.count}",
        each(lambda r: f"{r.total * held:.1f}"),
    )
    row("  ratio to it", each(lambda r: f"{r.drain / (r.total * held):.3f}"))
    row("requests per second of the drain", each(lambda r: f"{r.total / r.drain:.1f}"))
    row(
        "CPU s in the drain: this process / sandbox",
        each(lambda r: f"{r.cpu:.0f}/{r.sandbox_cpu:.0f}"),
    )
    row(f"  load average at the end ({os.cpu_count()} CPUs)", each(lambda r: f"{r.load:.2f}"))
    row("sandbox limited (must be 0)", each(lambda r: f"{r.limited}"))
    row(f"sandbox peak_per_window (≤ {rate.count})", each(lambda r: f"{r.peak_per_window}"))
    row("peak RSS of this process (MB)", each(lambda r: f"{r.rss_mb:.0f}"))
    row("cache hit rate %", each(lambda r: f"{r.cache.get('hit_rate', 0):.2f}"))
    row("cache hits / misses", each(lambda r: f"{r.cache.get('hits')}/{r.cache.get('misses')}"))
    row(
        "cache keys / memory MB",
        each(lambda r: f"{r.cache.get('keys')}/{r.cache.get('memory_usage_mb')}"),
    )
    row("ledger states", each(lambda r: ",".join(f"{k}={v}" for k, v in r.states.items())))
    row(
        "bills: in Alegra (new) / distinct in ledger",
        each(lambda r: f"{r.bills_added}/{r.bill_ids}"),
    )
    for r in results:
        print(f"  {r.name} cache metrics: {r.cache}")

    ok = True

    def fail(result: Result, what: str) -> None:
        nonlocal ok
        ok = False
        print(f"FAIL {result.name}: {what}")

    print()
    for r in results:
        if r.stuck:
            fail(r, f"no job done for {STUCK:.0f} s: the drain was cut short")
        if r.states.get(S.BOOKED, 0) != r.invoices:
            fail(r, f"{r.invoices} invoices, {r.states.get(S.BOOKED, 0)} booked: {r.states}")
        if not r.bills_added == r.bill_ids == r.requests["POST /bills"] == r.invoices:
            fail(
                r,
                f"{r.invoices} invoices but {r.bills_added} new bills in Alegra, "
                f"{r.bill_ids} distinct bill ids in the ledger, "
                f"{r.requests['POST /bills']} POST /bills",
            )
        if r.requests["POST /bills/{id}/attachment"] != r.invoices:
            fail(r, f"{r.requests['POST /bills/{id}/attachment']} attachments posted")
        if r.limited:
            fail(r, f"{r.limited} requests over the sandbox's limit")
        if r.requests["GET /contacts"] > r.new_suppliers:
            fail(
                r,
                f"{r.requests['GET /contacts']} provider look-ups for {r.new_suppliers} "
                "suppliers new to Alegra: a supplier looked up twice, or one the cache held",
            )
    for r in results:
        ratio = r.drain / (r.total / per_second)
        lookups = r.requests["GET /contacts"]
        # Warm, the only look-ups left are of suppliers Alegra has never seen.
        met = lookups / r.invoices <= 0.03 if r.name == "cold" else lookups <= r.new_suppliers
        print(
            f"goals {r.name}: drain ≤ 1.15 × floor {'met' if ratio <= 1.15 else 'NOT met'} "
            f"({ratio:.3f}); look-ups per invoice {'≤ 0.03' if r.name == 'cold' else '≈ 0'} "
            f"{'met' if met else 'NOT met'} ({lookups / r.invoices:.4f}: {lookups} for "
            f"{r.new_suppliers} suppliers new to Alegra)"
        )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--invoices", type=int, default=10000)
    parser.add_argument("--suppliers", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--rate",
        type=RateLimit.parse,
        default=RateLimit.parse("3000/m"),
        help="Alegra's limit, in the sandbox and the daemon alike (Alegra's own: 150/m)",
    )
    parser.add_argument("--workers", type=int, default=16, help="workers.alegra concurrency")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="facturasd-bench-", dir=args.dir))
    print(
        f"{args.invoices} CFDIs per run from {args.suppliers} suppliers (Zipf s = {ZIPF_S}, "
        f"seed {args.seed}); the local Alegra as its own process at {LATENCY_MS} ms a request, "
        f"no failures; Alegra's limit RAISED to {args.rate} on both sides (sandbox "
        f"--alegra-rate, daemon alegra.rate_limit; Alegra's own is 150/m); "
        f"workers.alegra concurrency {args.workers}; cache: memory"
    )
    try:
        started = time.monotonic()
        spawn = multiprocessing.get_context("spawn")
        for name in ("cold", "warm"):
            (root / name).mkdir()
        with ProcessPoolExecutor(2, mp_context=spawn) as pool:
            prepared = [
                pool.submit(prepare, root / name, args.invoices, args.suppliers, seed)
                for name, seed in (("cold", args.seed), ("warm", args.seed + 1))
            ]
            (cold, cold_issuers), (warm, warm_issuers) = [f.result() for f in prepared]
        print(
            f"ledgers prepared in {time.monotonic() - started:.0f} s (in child processes): "
            f"cold {cold} checked CFDIs of {len(cold_issuers)} suppliers, warm {warm} of "
            f"{len(warm_issuers)} ({len(warm_issuers - cold_issuers)} not among the cold's)"
        )
        state = root / "alegra-state.json"
        results: list[Result] = []
        for name, count, issuers, known in (
            ("cold", cold, cold_issuers, set()),
            ("warm", warm, warm_issuers, cold_issuers),
        ):
            results.append(
                anyio.run(
                    partial(
                        run,
                        name,
                        root / name,
                        state,
                        args.rate,
                        args.workers,
                        invoices=count,
                        issuers=issuers,
                        new=len(issuers - known),
                        warm=name == "warm",
                        # the warm run's account is the one the cold run left
                        bills_before=results[-1].bills if results else 0,
                    )
                )
            )
        ok = report(results, args.rate)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    held = "every invoice booked once, no request over the limit"
    print(f"\n{held if ok else 'SOME CHECKS FAILED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
