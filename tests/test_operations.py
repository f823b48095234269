"""The scheduler's tasks on a ledger the real pipeline filled (sandbox servers over HTTP, the
test's clock): the nightly SAT re-check finds a CFDI cancelled after it was booked, the
cleanups remove what is no longer needed and never touch the archive, the nightly backup
rotates, the weekly archive check names a missing or changed file."""

from __future__ import annotations

import os
import sqlite3
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from facturasd import maintenance
from facturasd.constants import BACKUP_DIR, ComplianceStatus
from facturasd.hashing import sha256_file
from facturasd.sandbox.state import Sandbox
from facturasd.store import compliance
from tests.office import Office, cfdi, known_to_sat, office

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

DAY = 86400.0


async def run_task(found: Office, name: str) -> str:
    """The scheduler's task, as its job runs it."""
    return await found.services.scheduler.tasks[name].run()


async def until_compliance(found: Office, name: str, status: ComplianceStatus) -> None:
    with anyio.fail_after(30):
        while await found.status(name) is not status:
            found.services.queue.wake()
            await anyio.sleep(0.02)


def archived_hashes(found: Office) -> dict[Path, str]:
    archive = found.services.config.paths.archive
    return {path: sha256_file(path) for path in archive.rglob("*") if path.is_file()}


async def test_a_cfdi_cancelled_after_booking_is_failed_with_a_critical_alert_naming_its_bill(
    tmp_path: Path,
) -> None:
    sandbox = Sandbox()
    kept, cancelled = cfdi(1), cfdi(2)
    records = [known_to_sat(sandbox, data) for data in (kept, cancelled)]
    files = {"kept.xml": kept, "cancelled.xml": cancelled}
    async with office(tmp_path, files, sandbox, alegra=True) as found:
        for name in files:
            assert await found.status(name) is ComplianceStatus.VALIDATED
        bill = (await found.invoice("cancelled.xml")).alegra_bill_id
        assert bill is not None
        records[1].estado = "Cancelado"  # the issuer cancels it the next day
        found.clock.now += timedelta(days=1)
        assert await run_task(found, "sat_recheck") == "2 CFDI(s) to ask SAT about again"
        await until_compliance(found, "cancelled.xml", ComplianceStatus.FAILED)
        await found.settle()
        alerts = await compliance.alerts(found.services.db, invoice_id=found.ids["cancelled.xml"])
        (alert,) = [a for a in alerts if a.code == "SAT-CANCELLED-AFTER-BOOKING"]
        assert (alert.severity, alert.params["bill"]) == ("critical", bill)
        # The one in force stays validated, its re-check recorded.
        assert await found.status("kept.xml") is ComplianceStatus.VALIDATED
        (last,) = [a for a in await found.attempts("kept.xml") if a.source == "recheck"]
        assert last.status == "Vigente"
        # A CFDI validated longer ago than schedule.sat_recheck_within is not asked again.
        found.clock.now += timedelta(days=31)
        assert await run_task(found, "sat_recheck") == "0 CFDI(s) to ask SAT about again"


async def test_cleanups_remove_what_is_done_and_never_touch_the_archive(tmp_path: Path) -> None:
    sandbox = Sandbox()
    settled, waiting = cfdi(1), cfdi(2)
    known_to_sat(sandbox, settled)  # the other is not found yet: RETRY, its job queued
    files = {"settled.xml": settled, "waiting.xml": waiting}
    async with office(tmp_path, files, sandbox) as found:
        assert await found.status("settled.xml") is ComplianceStatus.VALIDATED
        assert await found.status("waiting.xml") is ComplianceStatus.RETRY
        config = found.services.config
        state_dir, reports = config.paths.state_dir, config.paths.reports
        before = archived_hashes(found)
        assert len(before) == 2
        # Fallback copies of both (from an outage earlier), and temporary files a crash left.
        fallback = state_dir / "fallback"
        fallback.mkdir(exist_ok=True)
        copies = {name: fallback / f"{found.ids[name]}.json" for name in files}
        for copy in copies.values():
            copy.write_text("{}")
        reports.mkdir(parents=True, exist_ok=True)
        stale = [state_dir / ".facturasd.db.1.tmp", reports / ".reporte.md.tmp"]
        fresh = reports / ".reporte.json.tmp"
        in_archive = next(iter(before)).parent / ".left.tmp"
        for path in (*stale, fresh, in_archive):
            path.write_text("partial")
        done = await found.services.db.fetchone("SELECT COUNT(*) AS n FROM jobs WHERE state='done'")
        assert done is not None and done["n"] > 0

        found.clock.now += timedelta(days=8)
        now = found.clock.now.timestamp()
        for path in (*stale, in_archive):
            os.utime(path, (now - 2 * DAY, now - 2 * DAY))
        os.utime(fresh, (now - 3600, now - 3600))
        said = await run_task(found, "file_cleanup")

        assert said.startswith(f"{done['n']} finished job(s), 1 fallback copy(ies), 2 temporary")
        assert not copies["settled.xml"].exists() and copies["waiting.xml"].exists()
        assert [p.exists() for p in stale] == [False, False]
        assert fresh.exists() and in_archive.exists()  # too young; and the archive is never cleaned
        assert await found.job("waiting.xml") is not None  # a job still to run stays
        assert archived_hashes(found) == {**before, in_archive: sha256_file(in_archive)}


async def test_compliance_cleanup_keeps_the_deciding_attempt(tmp_path: Path) -> None:
    sandbox = Sandbox()
    later, never = cfdi(1), cfdi(2)  # neither known to SAT at first: not found, RETRY
    files = {"later.xml": later, "never.xml": never}
    async with office(tmp_path, files, sandbox) as found:
        known_to_sat(sandbox, later)
        job = await found.job("later.xml")
        assert job is not None
        await found.until(job["run_at"] + 60)
        assert await found.status("later.xml") is ComplianceStatus.VALIDATED
        assert [a.outcome for a in await found.attempts("later.xml")] == ["not_found", "valid"]
        waiting = [a.outcome for a in await found.attempts("never.xml")]
        assert waiting and set(waiting) == {"not_found"}

        found.clock.now += timedelta(days=29)
        assert await run_task(found, "compliance_cleanup") == (
            "0 intermediate attempt(s) of settled invoices removed"
        )
        found.clock.now += timedelta(days=2)
        assert await run_task(found, "compliance_cleanup") == (
            "1 intermediate attempt(s) of settled invoices removed"
        )
        (kept,) = await found.attempts("later.xml")
        # the deciding answer: when, where, what SAT said
        assert (kept.outcome, kept.status, kept.authority) == ("valid", "Vigente", "sat")
        assert kept.endpoint == found.base + "/sat/ConsultaCFDIService.svc"
        # An invoice still waiting keeps every attempt: they count against its retries.
        assert [a.outcome for a in await found.attempts("never.xml")] == waiting


async def test_the_nightly_backup_rotates_and_the_archive_check_names_damage(
    tmp_path: Path,
) -> None:
    sandbox = Sandbox()
    files = {f"{n}.xml": cfdi(n) for n in (1, 2, 3)}
    for data in files.values():
        known_to_sat(sandbox, data)
    async with office(tmp_path, files, sandbox, "[backup]\nkeep = 2\n") as found:
        folder = found.state_dir / BACKUP_DIR
        made = []
        for _ in range(3):
            await run_task(found, "backup")
            made.append(maintenance.nightly_backups(folder)[-1])
            found.clock.now += timedelta(days=1)
            await anyio.sleep(1.01)  # the copies are named to the second
        kept = maintenance.nightly_backups(folder)
        assert kept == made[1:]
        with sqlite3.connect(kept[-1]) as copy:
            assert copy.execute("SELECT COUNT(*) FROM invoices").fetchone() == (3,)
        newest = maintenance.newest_backup(folder)
        assert newest is not None

        assert await run_task(found, "archive_check") == (
            "3 archived file(s) checked: 0 missing, 0 changed"
        )
        paths = sorted(archived_hashes(found))
        paths[0].unlink()
        paths[1].write_bytes(paths[1].read_bytes() + b"\n")
        assert await run_task(found, "archive_check") == (
            "3 archived file(s) checked: 1 missing, 1 changed"
        )
        (alert,) = [
            a for a in await compliance.alerts(found.services.db) if a.code == "ARCHIVE-DAMAGED"
        ]
        assert alert.severity == "critical"
        assert (alert.params["missing"], alert.params["changed"]) == (1, 1)
        assert sorted(alert.params["files"]) == sorted(str(p) for p in paths[:2])
