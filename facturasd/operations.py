"""The scheduler's tasks (SPEC §2.6, issue 14), built from the daemon's services and
`[schedule]`: each is a coroutine that does its work and says what it did in a line.

| task | when | what |
|---|---|---|
| retry | every `retry.interval` | FALLBACK invoices asked again, circuits probed, lost jobs |
| contacts_sync | 01:00 | Alegra's providers into the cache |
| items_sync | 01:30 | Alegra's items, taxes, retentions and accounts into the cache |
| file_cleanup | 02:00 | finished jobs, fallback copies of settled invoices, temporary files |
| sat_recheck | 02:30 | CFDIs validated lately asked again: a cancelled one is a critical alert |
| compliance_cleanup | 03:00 | failed intermediate attempts of settled invoices |
| backup | 04:00 | the ledger copied into `<state_dir>/backups/`, rotated |
| archive_check | Sunday 05:00 | every archived file hashed against the ledger |
| daily_report | 08:00 | the previous day's report |
| monthly_summary | the 1st, 08:00 | the previous month's taxes and withholdings |
| weekly_statistics | Monday 09:00 | the last seven days' report: cache and performance figures |
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from functools import partial
from zoneinfo import ZoneInfo

from facturasd import maintenance
from facturasd.alegra.client import AlegraError
from facturasd.alegra.service import Alegra
from facturasd.authorities.confirm import FALLBACK_DIR, Confirm
from facturasd.clock import Clock
from facturasd.config import Config
from facturasd.constants import BACKUP_DIR
from facturasd.errors import Unavailable
from facturasd.monitoring.alert_words import describe
from facturasd.monitoring.health import Health
from facturasd.monitoring.recommend import worded
from facturasd.notify import Outbox
from facturasd.reports import Written, write_daily, write_monthly
from facturasd.scheduler import Task
from facturasd.store import compliance
from facturasd.store.db import Database
from facturasd.wording import Language

log = logging.getLogger(__name__)

REPORT_SUBJECT: dict[Language, str] = {
    "es": "facturasd: reporte de facturas recibidas el {day:%Y-%m-%d}",
    "en": "facturasd: report of the invoices received on {day:%Y-%m-%d}",
}

Run = Callable[[], Awaitable[str]]


def housekeeping(
    config: Config,
    db: Database,
    confirm: Confirm,
    alegra: Alegra | None,
    *,
    clock: Clock,
) -> list[Task]:
    """The tasks that keep the ledger, the folders and the upstreams' work in order."""
    schedule = config.schedule
    state_dir = config.paths.state_dir

    async def retry() -> str:
        asked = await confirm.sweep()
        booked = await alegra.booking.sweep() if alegra is not None else 0
        return f"{asked} authority job(s) and {booked} booking job(s) queued or brought forward"

    async def clean_files() -> str:
        return await maintenance.clean_files(
            db,
            fallback_dir=state_dir / FALLBACK_DIR,
            reports=config.paths.reports,
            state_dir=state_dir,
            now=clock().timestamp(),
        )

    async def clean_attempts() -> str:
        return await maintenance.clean_attempts(
            db, older_than=schedule.compliance_cleanup_after, now=clock().timestamp()
        )

    async def recheck() -> str:
        queued = await confirm.queue_rechecks(within=schedule.sat_recheck_within)
        return f"{queued} CFDI(s) to ask SAT about again"

    async def back_up() -> str:
        return await maintenance.back_up(
            db, folder=state_dir / BACKUP_DIR, keep=config.backup.keep, now=clock()
        )

    async def check_archive() -> str:
        found = await maintenance.check_archive(db, config.paths.archive)
        damaged = found.missing + found.changed
        if damaged:
            for path in found.missing:
                log.critical("archive check: %s is missing", path)
            for path in found.changed:
                log.critical("archive check: %s no longer has the hash the ledger holds", path)
            await db.write(
                partial(
                    compliance.raise_alert,
                    at=clock().timestamp(),
                    severity="critical",
                    code="ARCHIVE-DAMAGED",
                    missing=len(found.missing),
                    changed=len(found.changed),
                    files=damaged[: maintenance.ARCHIVE_SHOWN],
                )
            )
        return (
            f"{found.checked} archived file(s) checked: {len(found.missing)} missing, "
            f"{len(found.changed)} changed"
        )

    tasks = [
        Task("retry", retry, every=config.retry.interval),
        Task("file_cleanup", clean_files, cron=schedule.file_cleanup),
        Task("compliance_cleanup", clean_attempts, cron=schedule.compliance_cleanup),
        Task("sat_recheck", recheck, cron=schedule.sat_recheck),
        Task("backup", back_up, cron=schedule.backup),
        Task("archive_check", check_archive, cron=schedule.archive_check),
    ]
    if alegra is not None:
        tasks += [
            Task("contacts_sync", partial(_warm, alegra, "contacts"), cron=schedule.contacts_sync),
            Task("items_sync", partial(_warm, alegra, "items"), cron=schedule.items_sync),
        ]
    return tasks


async def _warm(alegra: Alegra, what: str) -> str:
    """Each company's providers or items into the cache; one company's failure is said and
    the others go on (the task fails at the end, so its run is recorded as failed)."""
    done, failed = [], []
    for scope, books in alegra.books.items():
        warm = books.directory.warm_contacts if what == "contacts" else books.directory.warm_items
        try:
            loaded = await warm()
        except (Unavailable, AlegraError) as exc:
            failed.append(f"{scope or 'default'}: {exc}")
        else:
            done.append(f"{scope or 'default'} {loaded}")
    if failed:
        raise RuntimeError(f"{what} warm-up not done for " + "; ".join(failed))
    return f"{what} warmed up: " + ", ".join(done)


def reporting(
    config: Config,
    db: Database,
    zone: ZoneInfo,
    alegra: Alegra | None,
    checker: Health,
    outbox: Outbox,
    *,
    clock: Clock,
) -> list[Task]:
    """The reports: the previous day's at 08:00 (mailed with `reports.email`), the previous
    month's tax summary on the 1st, and on Mondays the last seven days' report, whose cache
    and performance figures are the week's statistics."""
    schedule = config.schedule

    async def write(day: date, last: date | None = None) -> Written:
        checks = (await checker.report())["checks"]
        return await write_daily(
            db,
            config,
            zone=zone,
            day=day,
            last=last,
            describe=describe,
            recommend=worded(checks, config.alerts.cache_hit_rate_min),
            cache_metrics=await alegra.cache.metrics() if alegra is not None else None,
            clock=clock,
        )

    def today() -> date:
        return clock().astimezone(zone).date()

    async def daily() -> str:
        day = today() - timedelta(days=1)
        written = await write(day)
        if not config.reports.email:
            return f"{written.md.name} written"
        subject = REPORT_SUBJECT[config.reports.language].format(day=day)
        queued = await db.write(
            partial(outbox.queue_report, md=written.md, csv=written.csv, subject=subject)
        )
        if queued is None:
            return f"{written.md.name} written; not mailed: notify.email is not enabled"
        return f"{written.md.name} written and queued for e-mail"

    async def weekly() -> str:
        written = await write(today() - timedelta(days=7), today() - timedelta(days=1))
        return f"{written.md.name} written"

    async def monthly() -> str:
        month = (today().replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
        written = await write_monthly(db, config, month=month)
        return f"{written.md.name} written"

    return [
        Task("daily_report", daily, cron=schedule.daily_report),
        Task("weekly_statistics", weekly, cron=schedule.weekly_statistics),
        Task("monthly_summary", monthly, cron=schedule.monthly_summary),
    ]
