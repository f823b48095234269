"""The daemon's services as an office runs them, in the test's process: files taken and
checked into a real SQLite ledger, the upstream worker pools running against the sandbox's
servers over real HTTP (SAT, DIAN, Alegra), on an injected clock (time moves when a test says
so; conditions are polled, never slept for)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx
from aiohttp.test_utils import TestServer

from facturasd.alegra.cache import AlegraCache
from facturasd.config import load_config
from facturasd.constants import ComplianceStatus, QueueName, WorkerGroup
from facturasd.formats.reader import read
from facturasd.pipeline.lifecycle import STAGES, Stage
from facturasd.sandbox.server import PATHS, create_app
from facturasd.sandbox.state import Sandbox, SatRecord
from facturasd.services import Services, build
from facturasd.store import compliance, ledger
from facturasd.workers import Handler
from tests.documents import Item, cfdi40
from tests.support import take, write_config

# The queues' rate limits are the benchmark's business: here they would only slow the test.
UNLIMITED = (
    '[queues.dian_validation]\nrate_limit = ""\n[queues.compliance_retry]\nrate_limit = ""\n'
)
# The sandbox's Alegra user (its defaults).
ALEGRA_USER, ALEGRA_TOKEN = "sandbox@facturasd.local", "sandbox"
# The upstream stages' jobs, and their pools.
UPSTREAM_KINDS = ("confirm", "printed", "book", "attach")
POOLS = (WorkerGroup.AUTHORITIES, WorkerGroup.ALEGRA)


class Clock:
    """The services' clock: it moves when the test moves it."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Office:
    """The daemon's services on a ledger of checked invoices, the authorities' pool running,
    the sandbox answering on a real port; invoices named by their file."""

    services: Services
    sandbox: Sandbox
    clock: Clock
    state_dir: Path
    ids: dict[str, int]
    base: str  # the sandbox's address

    async def alegra(self, method: str, path: str, **kwargs: Any) -> Any:
        """The sandbox's Alegra API (or its admin endpoints: a path from the root), over
        HTTP as its default user; the answer's JSON."""
        url = self.base + (path if path.startswith("/_admin") else PATHS["alegra"] + path)
        async with httpx.AsyncClient(auth=(ALEGRA_USER, ALEGRA_TOKEN), timeout=30) as http:
            response = await http.request(method, url, **kwargs)
        response.raise_for_status()
        return response.json()

    async def settle(self, rounds: int = 1000) -> None:
        """Until no upstream job is due or running on the injected clock."""
        pools = [self.services.pools[group] for group in POOLS]
        kinds = ", ".join(f"'{kind}'" for kind in UPSTREAM_KINDS)
        for _ in range(rounds):
            (row,) = await self.services.db.fetchall(
                f"SELECT COUNT(*) AS n FROM jobs WHERE kind IN ({kinds}) AND "
                "(state = 'running' OR (state = 'queued' AND run_at <= ?))",
                (self.clock().timestamp(),),
            )
            if row["n"] == 0 and not any(pool.busy for pool in pools):
                return
            self.services.queue.wake()
            await anyio.sleep(0.01)
        raise AssertionError("the upstream pools never went idle")

    async def until(self, when: float) -> None:
        """The clock moves to `when` (a timestamp); what comes due then is done."""
        self.clock.now = datetime.fromtimestamp(when, UTC)
        await self.settle()

    async def take(self, files: Mapping[str, bytes]) -> None:
        """More files taken and checked, as the daemon's watcher and local pool would; then
        what they start upstream is done."""
        services = self.services
        inbox = services.config.paths.inbox
        for name, data in files.items():
            await anyio.Path(inbox / name).write_bytes(data)
            await services.ingest(inbox / name)
        queues = [QueueName.INVOICE_PROCESSING.value]
        lease = services.config.workers.lease
        while (job := await services.queue.claim(queues, lease)) is not None:
            await services.queue.complete(job, await services.process(job))
        rows = await services.db.fetchall("SELECT id, original_name FROM invoices")
        self.ids.update({row["original_name"]: row["id"] for row in rows})
        await self.settle()

    async def invoice(self, name: str) -> ledger.Invoice:
        found = await self.services.db.read(lambda conn: ledger.get(conn, self.ids[name]))
        assert found is not None
        return found

    async def status(self, name: str) -> ComplianceStatus:
        return (await self.invoice(name)).compliance

    async def job(self, name: str, kind: str = "confirm") -> sqlite3.Row | None:
        """The invoice's job of `kind` still to run, if any."""
        rows = await self.services.db.fetchall(
            "SELECT queue, state, attempts, run_at FROM jobs WHERE dedupe_key = ? "
            "AND state IN ('queued', 'running')",
            (f"{kind}:{self.ids[name]}",),
        )
        assert len(rows) <= 1, rows
        return rows[0] if rows else None

    async def attempts(self, name: str) -> list[compliance.Attempt]:
        return await compliance.attempts(self.services.db, self.ids[name])

    async def alerts(self, name: str) -> list[tuple[str, str]]:
        """(severity, code) of the invoice's alerts."""
        found = await compliance.alerts(self.services.db, invoice_id=self.ids[name])
        return [(alert.severity, alert.code) for alert in found]

    async def history(self, name: str) -> list[str]:
        """The reasons in the invoice's history, oldest first."""
        return [event.reason for event in await ledger.events(self.services.db, self.ids[name])]

    async def health(self) -> dict[str, Any]:
        return await self.services.health.report()

    def requests(self, service: str) -> int:
        return int(self.sandbox.stats()[service]["requests"])


@asynccontextmanager
async def office(
    tmp_path: Path,
    files: Mapping[str, bytes],
    sandbox: Sandbox,
    config: str = "",
    *,
    paths: Mapping[str, str] = PATHS,
    stages: Iterable[Stage] = STAGES,
    handlers: Mapping[str, Handler] | None = None,
    alegra: bool = False,
    cache: AlegraCache | None = None,
) -> AsyncIterator[Office]:
    """`files` taken and checked into a new ledger under `tmp_path` (configured with
    `config`), then the services built on the test's clock and the upstream pools started,
    SAT and DIAN asked at `paths` of the sandbox, and (`alegra`) bills booked in the
    sandbox's Alegra as its default user (with `cache`, if given): every upstream job due now
    has run when this yields."""
    server = TestServer(create_app(sandbox), host="127.0.0.1")
    await server.start_server()
    try:
        base = str(server.make_url("")).rstrip("/")
        config_file = write_config(tmp_path, UNLIMITED + config)
        await anyio.to_thread.run_sync(take, config_file, files)
        environ = {
            "FACTURASD_AUTHORITIES__SAT__URL": base + paths["sat"],
            "FACTURASD_AUTHORITIES__DIAN__URL": base + paths["dian"],
        }
        if alegra:
            token = tmp_path / "alegra-token"
            token.write_text(ALEGRA_TOKEN, encoding="utf-8")
            environ |= {
                "FACTURASD_ALEGRA__BASE_URL": base + paths["alegra"],
                "FACTURASD_ALEGRA__EMAIL": ALEGRA_USER,
                "FACTURASD_ALEGRA__TOKEN_FILE": str(token),
            }
        settings = load_config(config_file, environ)
        clock = Clock()
        async with (
            build(settings, clock=clock, stages=stages, handlers=handlers, cache=cache) as services,
            anyio.create_task_group() as tg,
        ):
            rows = await services.db.fetchall("SELECT id, original_name FROM invoices")
            ids = {row["original_name"]: row["id"] for row in rows}
            assert set(ids) == set(files)
            pools = [services.pools[group] for group in POOLS]
            for pool in pools:
                tg.start_soon(pool.run)
            found = Office(services, sandbox, clock, settings.paths.state_dir, ids, base)
            await found.settle()
            try:
                yield found
            finally:
                for pool in pools:
                    pool.stop()
    finally:
        await server.close()


def cfdi(n: int) -> bytes:
    """A stamped CFDI 4.0 of its own (UUID, total)."""
    return cfdi40(
        [Item(f"Producto {n}", "1", f"{100 + n}.00", "16")],
        override={"uuid": f"0B7C4A1E-2F3D-4C5B-8A9E-{n:012X}"},
    )


def known_to_sat(sandbox: Sandbox, data: bytes, **record: str) -> SatRecord:
    """SAT knows the CFDI `data` (by the parts of its expression), with `record`'s status."""
    (inspection,) = read(data, "cfdi.xml")
    doc = inspection.document
    assert doc and doc.uuid and doc.issuer.tax_id and doc.receiver.tax_id and doc.totals.total
    uuid = doc.uuid.upper()
    found = SatRecord(
        uuid, doc.issuer.tax_id, doc.receiver.tax_id, Decimal(doc.totals.total), **record
    )
    sandbox.sat[uuid] = found
    return found
