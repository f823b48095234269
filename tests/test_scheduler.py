"""The scheduler on an injected clock and a real SQLite ledger: every due time runs once,
downtime is caught up once, a zone's repeated hour does not run twice, and neither does a
scheduler restarted while its job runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from facturasd.config.sections import Schedule
from facturasd.scheduler import KIND, QUEUE, Scheduler, Task, probe
from facturasd.store import compliance
from facturasd.store.db import Database
from facturasd.store.queue import Queue

pytestmark = pytest.mark.anyio

BOGOTA = ZoneInfo("America/Bogota")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def ran(text: str = "done") -> str:
    return text


async def open_scheduler(
    tmp_path: Path, clock: Clock, zone: ZoneInfo = BOGOTA, cron: str = "0 8 * * *"
) -> tuple[Database, Scheduler]:
    db = await Database.open(tmp_path / "ledger.db")
    scheduler = Scheduler(
        db, Queue(db, clock=clock), [Task("report", ran, cron=cron)], zone, clock=clock
    )
    return db, scheduler


async def run_all(db: Database, scheduler: Scheduler, queue: Queue) -> list[str]:
    """Claims and runs every scheduled job due; the due times they ran for."""
    done = []
    while (job := await queue.claim([QUEUE], 60)) is not None:
        assert job.kind == KIND
        await queue.complete(job, await scheduler(job))
        done.append(str(job.payload["due"]))
    return done


async def test_a_daily_task_runs_once_at_its_time_each_day(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 11, 2, 12, 0, tzinfo=UTC))  # 07:00 in Bogotá
    db, scheduler = await open_scheduler(tmp_path, clock)
    try:
        assert await scheduler.tick() == []  # a new task starts from now
        clock.now += timedelta(minutes=59)
        assert await scheduler.tick() == []
        clock.now += timedelta(minutes=1)  # 08:00 in Bogotá
        (job,) = await scheduler.tick()
        assert job.payload["due"] == "2026-11-02T08:00:00-05:00"
        assert await scheduler.tick() == []  # the same minute again: not twice
        assert await run_all(db, scheduler, scheduler.queue) == ["2026-11-02T08:00:00-05:00"]
        clock.now += timedelta(days=1)
        assert len(await scheduler.tick()) == 1
        row = await db.fetchone("SELECT last_ok, detail FROM scheduler_runs WHERE task = 'report'")
        assert row is not None and (row["last_ok"], row["detail"]) == (1, "done")
    finally:
        await db.close()


async def test_a_run_missed_while_down_is_caught_up_once(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 11, 2, 12, 0, tzinfo=UTC))
    db, scheduler = await open_scheduler(tmp_path, clock)
    await scheduler.tick()
    await db.close()
    clock.now += timedelta(days=3, hours=2)  # down three days; back at 09:00
    db, scheduler = await open_scheduler(tmp_path, clock)
    try:
        (job,) = await scheduler.tick()
        assert job.payload["due"] == "2026-11-05T08:00:00-05:00"  # the latest, once
        assert await scheduler.tick() == []
    finally:
        await db.close()


async def test_the_hour_a_zone_repeats_runs_once(tmp_path: Path) -> None:
    """New York's clocks go back at 02:00 on 2026-11-01: 01:30 happens twice."""
    zone = ZoneInfo("America/New_York")
    clock = Clock(datetime(2026, 11, 1, 4, 0, tzinfo=UTC))  # 00:00 EDT
    db, scheduler = await open_scheduler(tmp_path, clock, zone, cron="30 1 * * *")
    try:
        await scheduler.tick()
        runs = []
        for _ in range(4 * 60):  # minute by minute through the night
            clock.now += timedelta(minutes=1)
            runs += await scheduler.tick()
        assert [job.payload["due"] for job in runs] == ["2026-11-01T01:30:00-04:00"]
    finally:
        await db.close()


async def test_a_scheduler_restarted_while_its_job_runs_does_not_queue_it_again(
    tmp_path: Path,
) -> None:
    clock = Clock(datetime(2026, 11, 2, 12, 0, tzinfo=UTC))
    db, scheduler = await open_scheduler(tmp_path, clock)
    await scheduler.tick()
    clock.now += timedelta(hours=1)
    (job,) = await scheduler.tick()
    claimed = await scheduler.queue.claim([QUEUE], 60)
    assert claimed is not None and claimed.id == job.id
    # The daemon dies with the job running; its record of last_run is lost with it.
    await db.write(
        lambda conn: conn.execute("UPDATE scheduler_runs SET last_run = last_run - 3600")
    )
    await db.close()
    db, scheduler = await open_scheduler(tmp_path, clock)
    try:
        assert await scheduler.tick() == []
    finally:
        await db.close()


async def test_a_task_that_fails_is_recorded_so(tmp_path: Path) -> None:
    async def broken() -> str:
        raise RuntimeError("the disk is full")

    clock = Clock(datetime(2026, 11, 2, 12, 0, tzinfo=UTC))
    db = await Database.open(tmp_path / "ledger.db")
    queue = Queue(db, clock=clock)
    tasks = [Task("report", broken, cron="0 8 * * *")]
    scheduler = Scheduler(db, queue, tasks, BOGOTA, clock=clock)
    try:
        await scheduler.tick()
        clock.now += timedelta(hours=1)
        assert len(await scheduler.tick()) == 1
        claimed = await queue.claim([QUEUE], 60)
        assert claimed is not None
        with pytest.raises(RuntimeError):
            await scheduler(claimed)
        row = await db.fetchone("SELECT last_ok, detail FROM scheduler_runs")
        assert row is not None and (row["last_ok"], row["detail"]) == (0, "the disk is full")
        (item,) = await probe(scheduler)(clock.now.isoformat())
        assert (item["status"], item["output"]) == ("warn", "the disk is full")
        assert item["nextRun"] == "2026-11-03T08:00:00-05:00"
        # One alert for a person per due time, not one per retry of its job.
        await queue.fail(claimed, "the disk is full")
        clock.now += timedelta(hours=1)
        again = await queue.claim([QUEUE], 60)
        assert again is not None and again.id == claimed.id
        with pytest.raises(RuntimeError):
            await scheduler(again)
        (alert,) = await compliance.alerts(db)
        assert (alert.code, alert.params) == (
            "SCHEDULE-FAILED",
            {"task": "report", "said": "the disk is full"},
        )
    finally:
        await db.close()


async def test_the_retry_loop_runs_every_interval_and_in_the_repeated_hour_too(
    tmp_path: Path,
) -> None:
    zone = ZoneInfo("America/New_York")
    clock = Clock(datetime(2026, 11, 1, 4, 0, tzinfo=UTC))  # 00:00 EDT
    db = await Database.open(tmp_path / "ledger.db")
    queue = Queue(db, clock=clock)
    scheduler = Scheduler(db, queue, [Task("retry", ran, every=300)], zone, clock=clock)
    try:
        await scheduler.tick()
        runs = []
        for _ in range(4 * 60):  # four hours of real time, one of them repeated on the wall
            clock.now += timedelta(minutes=1)
            runs += await scheduler.tick()
        assert len(runs) == 48
        assert len({job.dedupe_key for job in runs}) == 48
        # Down for twelve minutes: the latest due time is caught up, once.
        clock.now += timedelta(minutes=12)
        (late,) = await scheduler.tick()
        assert late.payload["due"] == "2026-11-01T08:10:00+00:00"
        assert await scheduler.tick() == []
        assert scheduler.next_due(clock.now).isoformat() == "2026-11-01T08:15:00+00:00"
    finally:
        await db.close()


def test_a_bad_expression_is_refused_naming_the_task(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="report"):
        Scheduler(None, None, [Task("report", ran, cron="every day")], BOGOTA)  # type: ignore[arg-type]


async def test_every_seed_time_fires_once_at_its_hour(tmp_path: Path) -> None:
    """The shipped [schedule] over eight days in Bogotá: each task at its wall-clock time, once
    per due time (the retry loop aside: it runs every retry.interval)."""
    schedule = Schedule()
    crons = {
        name: getattr(schedule, name)
        for name in Schedule.model_fields
        if not name.endswith(("_after", "_within"))  # (how long, not when)
    }
    assert len(crons) == 10
    clock = Clock(datetime(2026, 11, 29, 5, 0, tzinfo=UTC))  # Sunday 00:00 in Bogotá
    db = await Database.open(tmp_path / "ledger.db")
    queue = Queue(db, clock=clock)
    tasks = [Task(name, ran, cron=cron) for name, cron in crons.items()]
    scheduler = Scheduler(db, queue, tasks, BOGOTA, clock=clock)
    try:
        await scheduler.tick()
        fired: dict[str, list[str]] = {name: [] for name in crons}
        for _ in range(8 * 24 * 2):  # every half hour (the tasks' minutes) for eight days
            clock.now += timedelta(minutes=30)
            for job in await scheduler.tick():
                fired[job.payload["task"]].append(job.payload["due"][5:16])
        days = [f"{11 if d < 31 else 12}-{d if d < 31 else d - 30:02d}" for d in range(29, 37)]
        for name, hour in (
            ("contacts_sync", "01:00"),
            ("items_sync", "01:30"),
            ("file_cleanup", "02:00"),
            ("sat_recheck", "02:30"),
            ("compliance_cleanup", "03:00"),
            ("backup", "04:00"),
            ("daily_report", "08:00"),
        ):
            assert fired[name] == [f"{day}T{hour}" for day in days], name
        assert fired["weekly_statistics"] == ["11-30T09:00"]  # Monday
        assert fired["archive_check"] == ["11-29T05:00", "12-06T05:00"]  # Sundays
        assert fired["monthly_summary"] == ["12-01T08:00"]
    finally:
        await db.close()
