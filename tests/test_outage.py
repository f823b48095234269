"""An authority down for hours, on an injected clock: invoices wait in FALLBACK without using up
a retry, calls stop once the circuit opens (one probe per interval), and asking again starts
within one interval of the authority's return. Real HTTP to the sandbox's SAT server."""

from __future__ import annotations

import uuid as uuids
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import anyio
import pytest
from aiohttp import web

from facturasd.config import load_config
from facturasd.constants import ComplianceStatus, WorkerGroup
from facturasd.formats.reader import read
from facturasd.sandbox.server import create_app
from facturasd.sandbox.state import Fault, Sandbox, SatRecord
from facturasd.services import build
from tests.documents import Item, cfdi40
from tests.support import take, write_config

COUNT = 12
INTERVAL = 300.0  # retry.interval: the shipped five minutes, on the injected clock


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def cfdis() -> dict[str, bytes]:
    return {
        f"cfdi-{n}.xml": cfdi40(
            [Item(f"Producto {n}", "1", f"{100 + n}.00", "16")],
            override={"uuid": str(uuids.uuid4()).upper()},
        )
        for n in range(COUNT)
    }


@pytest.mark.slow
def test_two_hours_down_burn_no_retry_and_recovery_starts_within_an_interval(
    tmp_path: Path,
) -> None:
    files = cfdis()
    sandbox = Sandbox()
    for name, data in files.items():
        (inspection,) = read(data, name)
        doc = inspection.document
        assert doc and doc.uuid and doc.issuer.tax_id and doc.receiver.tax_id and doc.totals.total
        sandbox.sat[doc.uuid.upper()] = SatRecord(
            doc.uuid.upper(), doc.issuer.tax_id, doc.receiver.tax_id, Decimal(doc.totals.total)
        )
    sandbox.faults["sat"] = Fault(status=503)
    anyio.run(_outage, tmp_path, files, sandbox)


async def _outage(tmp_path: Path, files: dict[str, bytes], sandbox: Sandbox) -> None:
    runner = web.AppRunner(create_app(sandbox))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}/sat/ConsultaCFDIService.svc"
    # No rate limit: the test counts requests, not time.
    config_file = write_config(
        tmp_path,
        f'[authorities.sat]\nurl = "{url}"\n'
        '[queues.dian_validation]\nrate_limit = ""\n[queues.compliance_retry]\nrate_limit = ""\n',
    )
    await anyio.to_thread.run_sync(take, config_file, files)
    config = load_config(config_file, {})
    clock = Clock()
    try:
        async with build(config, clock=clock) as services, anyio.create_task_group() as tg:
            pool = services.pools[WorkerGroup.AUTHORITIES]
            tg.start_soon(pool.run)
            db = services.db

            async def statuses() -> dict[str, int]:
                rows = await db.fetchall(
                    "SELECT compliance, COUNT(*) AS n FROM invoices GROUP BY compliance"
                )
                return {row["compliance"]: row["n"] for row in rows}

            async def idle() -> None:
                """Until no confirm job is due or running on the injected clock."""
                for _ in range(500):
                    rows = await db.fetchall(
                        "SELECT COUNT(*) AS n FROM jobs WHERE kind = 'confirm' AND "
                        "(state = 'running' OR (state = 'queued' AND run_at <= ?))",
                        (clock().timestamp(),),
                    )
                    if rows[0]["n"] == 0 and pool.busy == 0:
                        return
                    services.queue.wake()
                    await anyio.sleep(0.02)
                raise AssertionError("the authorities' pool never went idle")

            async def minutes(count: int, step: float = 60.0) -> None:
                """Time passes, the sweep runs every interval, the workers keep up."""
                for _ in range(count):
                    clock.now += timedelta(seconds=step)
                    if clock.now.timestamp() % INTERVAL < step:
                        await services.confirm.sweep()
                    await idle()

            await idle()
            await minutes(120)  # two hours down
            assert await statuses() == {ComplianceStatus.FALLBACK: COUNT}
            requests = sandbox.stats()["sat"]["requests"]
            # The circuit opened after five calls without an answer; then one probe an
            # interval: not a call per invoice per retry.
            assert requests <= 5 + 120 * 60 / INTERVAL + 2, requests
            # No retry burned: every job waits with no attempt counted, none RETRY or FAILED.
            jobs = await db.fetchall(
                "SELECT state, attempts FROM jobs WHERE kind = 'confirm' AND state != 'done'"
            )
            assert [tuple(row) for row in jobs] == [("queued", 0)] * COUNT
            refused = await db.fetchall(
                "SELECT COUNT(*) AS n FROM authority_attempts WHERE outcome != 'unavailable'"
            )
            assert refused[0]["n"] == 0
            # SAT answers again.
            sandbox.faults.clear()
            back = clock().timestamp()
            await minutes(int(INTERVAL / 10) + 1, step=10.0)
            assert await statuses() == {ComplianceStatus.VALIDATED: COUNT}
            first = await db.fetchall(
                "SELECT MIN(at) AS at FROM authority_attempts WHERE outcome = 'valid'"
            )
            assert first[0]["at"] - back <= INTERVAL
            pool.stop()
    finally:
        await runner.cleanup()
