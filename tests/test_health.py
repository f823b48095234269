"""/health's probes, registered by what owns them, and one report reused for a burst."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from facturasd.monitoring.health import Health, Item, database_probe
from facturasd.store.db import Database


@pytest.mark.anyio
async def test_a_burst_of_requests_writes_one_probe_row(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "ledger.db")
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    health = Health(clock=lambda: now)
    health.register("database:write", 1.0, database_probe(db))
    try:
        before = db.stats.commits
        reports = []
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(lambda: _append(reports, health))
        assert db.stats.commits == before + 1
        assert all(r == reports[0] for r in reports)
        now += timedelta(seconds=1)  # a second later: a new report
        await health.report()
        assert db.stats.commits == before + 2
    finally:
        await db.close()


async def _append(reports: list[dict[str, object]], health: Health) -> None:
    reports.append(await health.report())


@pytest.mark.anyio
async def test_a_component_adds_its_check_and_its_weight_counts() -> None:
    health = Health(reuse_for=0)

    async def ok(now: str) -> list[Item]:
        return [{"status": "pass", "time": now}]

    status = "warn"

    async def upstream(now: str) -> list[Item]:
        return [{"componentId": "sat", "status": status, "time": now}]

    health.register("database:write", 0.3, ok)
    health.register("authorities:reachable", 0.1, upstream)
    report = await health.report()
    assert report["status"] == "warn"
    assert report["score"] == pytest.approx((0.3 + 0.1 * 0.5) / 0.4, abs=1e-3)
    assert report["checks"]["authorities:reachable"][0]["componentId"] == "sat"
    status = "fail"
    assert (await health.report())["status"] == "fail"
    with pytest.raises(ValueError, match="twice"):
        health.register("authorities:reachable", 0.1, upstream)
