"""Alerts about conditions: each threshold crossed and cleared is one alert, one repeat after
the cooldown and one "resolved", from the real sources (a real ledger, queue, worker pool,
cache, disk and folder); their words; `facturasd alerts`."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

from facturasd import maintenance
from facturasd.alegra.cache import open_cache
from facturasd.config import QueueSettings
from facturasd.config.sections import Cache
from facturasd.constants import DATABASE_FILE, InvoiceState, JobState, QueueName
from facturasd.monitoring import alerts
from facturasd.monitoring.alert_words import Said, describe
from facturasd.monitoring.alerts import AlertEngine, Observation
from facturasd.store import compliance, ledger
from facturasd.store.compliance import Alert, Outcome
from facturasd.store.db import Database
from facturasd.store.queue import Queue
from facturasd.wording import Language
from facturasd.workers import BUILTIN_HANDLERS, WorkerPool
from tests.support import run_facturasd, write_config

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("blockbuster")]

COOLDOWN = 1800.0
Q = QueueName.ALEGRA_SYNC


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 29, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "ledger.db")
    yield database
    await database.close()


@pytest.fixture
def engine(db: Database, clock: Clock) -> AlertEngine:
    return AlertEngine(db, cooldown=COOLDOWN, clock=clock)


async def said(db: Database) -> list[tuple[str | None, str, str, dict[str, Any]]]:
    """Every alert written: (condition, status, severity, params), oldest first."""
    return [(a.condition, a.status, a.severity, a.params) for a in await compliance.alerts(db)]


async def holding(db: Database) -> list[str]:
    return [row["key"] for row in await db.fetchall("SELECT key FROM conditions ORDER BY key")]


async def test_a_queue_backlog_fires_once_repeats_after_the_cooldown_and_resolves(
    db: Database, engine: AlertEngine, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="facturasd.monitoring.alerts")
    queue = Queue(db, clock=clock)
    look = partial(alerts.queue_backlog, queue, [Q, QueueName.NOTIFICATIONS], 3)
    for n in range(4):
        await queue.enqueue(Q, "ping", {"n": n})

    assert len(await engine.evaluate(await look())) == 1
    clock.advance(COOLDOWN - 1)
    assert await engine.evaluate(await look()) == []
    clock.advance(1)
    assert len(await engine.evaluate(await look())) == 1
    job = await queue.claim([Q], lease=60)
    assert job is not None
    await queue.complete(job)  # three ready: not over the threshold
    assert len(await engine.evaluate(await look())) == 1
    assert await engine.evaluate(await look()) == []

    key, params = "QUEUE-BACKLOG:alegra_sync", {"queue": "alegra_sync", "ready": 4, "threshold": 3}
    # The resolved alert repeats the condition's last figures; the empty queue said nothing.
    assert await said(db) == [
        (key, "firing", "warning", params),
        (key, "repeat", "warning", params),
        (key, "resolved", "warning", params),
    ]
    assert await holding(db) == []
    logged = [(r.levelname, r.getMessage().split(" (")[0]) for r in caplog.records]
    assert logged == [
        ("WARNING", f"alert firing {key}"),
        ("WARNING", f"alert repeat {key}"),
        ("INFO", f"alert resolved {key}"),
    ]


async def test_a_pool_without_live_workers_while_work_waits_is_critical_until_it_runs(
    db: Database, engine: AlertEngine, clock: Clock
) -> None:
    queue = Queue(db, clock=clock)
    pool = WorkerPool(
        queue, BUILTIN_HANDLERS, name="alegra", queues=[Q], concurrency=2, lease=60, clock=clock
    )
    look = partial(alerts.no_worker, queue, [pool])
    assert await engine.evaluate(await look()) == []  # nothing waits: no alarm
    job = await queue.enqueue(Q, "ping", {})

    assert len(await engine.evaluate(await look())) == 1
    clock.advance(COOLDOWN)
    assert len(await engine.evaluate(await look())) == 1
    async with anyio.create_task_group() as tg:
        tg.start_soon(pool.run)
        with anyio.fail_after(10):
            while (done := await queue.get(job.id)) is None or done.state != JobState.DONE:
                await anyio.sleep(0.01)
        assert len(await engine.evaluate(await look())) == 1
        pool.stop()

    key, params = "NO-WORKER:alegra", {"pool": "alegra", "waiting": 1}
    assert await said(db) == [
        (key, "firing", "critical", params),
        (key, "repeat", "critical", params),
        (key, "resolved", "critical", params),
    ]


async def test_a_pools_error_rate_over_its_jobs_fires_and_resolves_once_they_succeed(
    db: Database, clock: Clock
) -> None:
    # A cooldown shorter than the tally's window (120 s): the failures are still counted.
    engine = AlertEngine(db, cooldown=60, clock=clock)
    queue = Queue(db, {Q: QueueSettings(max_attempts=1)}, clock=clock)
    pool = WorkerPool(
        queue, BUILTIN_HANDLERS, name="alegra", queues=[Q], concurrency=4, lease=60, clock=clock
    )

    async def run(jobs: int, payload: dict[str, Any]) -> None:
        """`jobs` ping jobs run by the pool, to their end."""
        before = pool.tally.recent().attempts
        for _ in range(jobs):
            await queue.enqueue(Q, "ping", payload)
        with anyio.fail_after(10):
            while pool.tally.recent().attempts < before + jobs:
                await anyio.sleep(0.01)

    def look() -> list[Observation]:
        return alerts.error_rates({"alegra": pool.tally}, 0.05)

    async with anyio.create_task_group() as tg:
        tg.start_soon(pool.run)
        await run(9, {"fail": "HTTP 500"})
        assert look() == []  # nine attempts say nothing yet
        await run(1, {})
        assert len(await engine.evaluate(look())) == 1  # nine of ten failed
        clock.advance(60)
        assert len(await engine.evaluate(look())) == 1
        clock.advance(120)  # the window is empty: not observed, left as it is
        assert look() == []
        assert await engine.evaluate(look()) == []
        assert await holding(db) == ["ERROR-RATE:alegra"]
        await run(10, {})
        assert len(await engine.evaluate(look())) == 1
        pool.stop()

    key, params = "ERROR-RATE:alegra", {"pool": "alegra", "rate": 0.9, "threshold": 0.05}
    assert await said(db) == [
        (key, "firing", "warning", params),
        (key, "repeat", "warning", params),
        (key, "resolved", "warning", params),
    ]


async def test_a_low_cache_hit_rate_over_the_window_fires_and_resolves(
    engine: AlertEngine, db: Database, clock: Clock
) -> None:
    async with open_cache(Cache()) as cache:
        rate = alerts.CacheHitRate(0.7, window=900, clock=clock)

        async def look() -> list[Observation]:
            return rate(await cache.metrics())

        async def miss(n: int) -> None:
            for key in range(n):
                assert await cache.get("", "contacts", f"absent-{key}") is None

        await miss(19)
        assert await look() == []  # too few look-ups to judge
        await miss(1)
        assert len(await engine.evaluate(await look())) == 1
        clock.advance(COOLDOWN)
        assert await engine.evaluate(await look()) == []  # no look-ups in the window
        await miss(20)
        assert len(await engine.evaluate(await look())) == 1
        await cache.set("", "contacts", "900123456", {"id": "7"})
        for _ in range(100):
            assert await cache.get("", "contacts", "900123456") == {"id": "7"}
        # The first twenty misses have left the window: 100 hits of 120 look-ups.
        assert len(await engine.evaluate(await look())) == 1

    key, params = "CACHE-HIT-RATE", {"rate": 0.0, "threshold": 0.7}
    assert await said(db) == [
        (key, "firing", "warning", params),
        (key, "repeat", "warning", params),
        (key, "resolved", "warning", params),
    ]


def _asked(conn: sqlite3.Connection, *, at: float, authority: str, outcomes: list[str]) -> None:
    invoice = ledger.insert(
        conn,
        sha256=os.urandom(32).hex(),
        original_name="f.xml",
        inbox_path="f.xml",
        path="/archive/f.xml",
        state=InvoiceState.CHECKED,
        now=at,
        reason="test",
    )
    for outcome in outcomes:
        compliance.record_attempt(
            conn,
            invoice.id,
            at=at,
            authority=authority,
            endpoint="https://example.invalid",
            source="online",
            outcome=outcome,
        )


async def test_authority_failures_over_the_window_fire_per_authority_and_resolve(
    db: Database, engine: AlertEngine, clock: Clock
) -> None:
    async def ask(authority: str, failed: int, of: int) -> None:
        outcomes = [Outcome.UNAVAILABLE] * (failed - failed // 2) + [Outcome.REFUSED] * (
            failed // 2
        )
        outcomes += [Outcome.VALID] * (of - failed)
        await db.write(
            partial(_asked, at=clock().timestamp(), authority=authority, outcomes=outcomes)
        )

    look = partial(alerts.authority_failures, db, 0.10, window=900, clock=clock)
    await ask("dian", 2, 10)
    await ask("sat", 1, 10)  # 10 %: not over
    await db.write(  # the evidence in a file is no question to the authority
        lambda conn: conn.execute(
            "INSERT INTO authority_attempts (invoice_id, at, authority, endpoint, source, "
            "outcome) SELECT id, ?, 'sat', 'file', 'embedded', 'unavailable' FROM invoices",
            (clock().timestamp(),),
        )
    )
    assert len(await engine.evaluate(await look())) == 1
    clock.advance(COOLDOWN)
    assert await look() == []  # the window is empty
    await ask("dian", 5, 10)
    assert len(await engine.evaluate(await look())) == 1
    clock.advance(1000)
    await ask("dian", 0, 10)
    assert len(await engine.evaluate(await look())) == 1

    key = "AUTHORITY-FAILURES:dian"
    first = {"authority": "dian", "rate": 0.2, "threshold": 0.1}
    last = {**first, "rate": 0.5}
    assert await said(db) == [
        (key, "firing", "warning", first),
        (key, "repeat", "warning", last),
        (key, "resolved", "warning", last),
    ]


async def test_a_certificate_expiring_warns_turns_critical_at_once_when_expired_and_resolves(
    db: Database, engine: AlertEngine, clock: Clock
) -> None:
    ends = clock() + timedelta(minutes=10)
    far = clock() + timedelta(days=400)

    def look(company_ends: datetime) -> list[Observation]:
        return alerts.certificates([(None, far), ("acme", company_ends)], 30, clock())

    assert len(await engine.evaluate(look(ends))) == 1
    clock.advance(60)
    assert await engine.evaluate(look(ends)) == []
    clock.advance(600)  # expired, well within the cooldown: said now
    assert len(await engine.evaluate(look(ends))) == 1
    assert len(await engine.evaluate(look(far))) == 1  # renewed

    key, expires = "CERTIFICATE-EXPIRING:acme", ends.date().isoformat()
    params = {"company": "acme", "expires": expires}
    assert await said(db) == [
        (key, "firing", "warning", params),
        (key, "repeat", "critical", params),
        (key, "resolved", "critical", params),
    ]


async def test_a_nearly_full_disk_fires_and_resolves(
    tmp_path: Path, db: Database, engine: AlertEngine, clock: Clock
) -> None:
    everything = 1 << 40  # MB: more than any disk here has free
    assert len(await engine.evaluate(await alerts.disk(tmp_path, everything))) == 1
    clock.advance(COOLDOWN)
    assert len(await engine.evaluate(await alerts.disk(tmp_path, everything))) == 1
    assert len(await engine.evaluate(await alerts.disk(tmp_path, 1))) == 1

    found = await said(db)
    assert [(c, s, sev) for c, s, sev, _ in found] == [
        ("DISK-FULL", "firing", "critical"),
        ("DISK-FULL", "repeat", "critical"),
        ("DISK-FULL", "resolved", "critical"),
    ]
    assert found[0][3]["threshold_mb"] == everything and found[0][3]["free_mb"] > 0


async def test_a_stale_backup_fires_and_resolves_with_a_new_copy(
    tmp_path: Path, db: Database, engine: AlertEngine, clock: Clock
) -> None:
    folder = tmp_path / "backups"
    two_days = 2 * 86400.0
    first_invoice = clock().timestamp()

    async def look() -> list[Observation]:
        newest = await anyio.to_thread.run_sync(maintenance.newest_backup, folder)
        return alerts.backup(newest, two_days, clock(), since=first_invoice)

    def copy(name: str, age: float) -> None:
        path = folder / name
        path.write_bytes(b"SQLite format 3\0")
        stamp = clock().timestamp() - age
        os.utime(path, (stamp, stamp))

    # A new installation: no copy yet, and no alarm before its ledger is two days old.
    assert await engine.evaluate(await look()) == []
    assert alerts.backup(None, two_days, clock(), since=None)[0].holds is False
    clock.advance(two_days + 60)
    assert len(await engine.evaluate(await look())) == 1  # two days of invoices, no copy
    folder.mkdir()
    copy("facturasd-nightly-20261101T090000Z.db", 3 * 86400)
    copy("facturasd-v4-before-v5-20261101T090000Z.db", 0)  # a pre-migration copy: not one
    clock.advance(COOLDOWN)
    assert len(await engine.evaluate(await look())) == 1
    copy("facturasd-nightly-20261102T090000Z.db", 0)
    assert len(await engine.evaluate(await look())) == 1

    old = datetime.fromtimestamp(clock().timestamp() - COOLDOWN - 3 * 86400, UTC)
    key, stale = "BACKUP-STALE", {"newest": old.isoformat(), "max_age_days": 2.0}
    assert await said(db) == [
        (key, "firing", "warning", {"newest": None, "max_age_days": 2.0}),
        (key, "repeat", "warning", stale),
        (key, "resolved", "warning", stale),
    ]


async def test_a_source_that_cannot_look_leaves_its_conditions_as_they_are(
    tmp_path: Path, db: Database, engine: AlertEngine, clock: Clock
) -> None:
    full = partial(alerts.disk, tmp_path, 1 << 40)
    await engine.evaluate(await alerts.gathering(full)())
    assert await holding(db) == ["DISK-FULL"]

    async def broken() -> list[Observation]:
        raise OSError("[Errno 5] Input/output error")

    fine = partial(alerts.disk, tmp_path, 1)
    clock.advance(COOLDOWN)

    async def none() -> list[Observation]:  # no backup, invoices for longer than a minute
        return alerts.backup(None, 60.0, clock(), since=clock().timestamp() - 120)

    gather = alerts.gathering(broken, none)
    assert len(await engine.evaluate(await gather())) == 1  # the backup: stale
    assert await holding(db) == ["BACKUP-STALE", "DISK-FULL"]  # the disk: left as it was
    await engine.evaluate(await alerts.gathering(broken, fine)())
    assert await holding(db) == ["BACKUP-STALE"]

    with pytest.raises(ValueError, match="twice"):
        await engine.evaluate([*await full(), *await fine()])


async def test_watch_looks_every_interval(
    tmp_path: Path, db: Database, engine: AlertEngine
) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(alerts.watch, engine, partial(alerts.disk, tmp_path, 1 << 40), 0.01)
        with anyio.fail_after(10):
            while not await holding(db):
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert await holding(db) == ["DISK-FULL"]


# ── words ─────────────────────────────────────────────────────────────────────────────────

INVOICE = "#12 FV7 (FV7.xml)"
EVENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "SUPPLIER-EFOS": (
        "critical",
        {"invoice": INVOICE, "said": "SAT says Vigente", "alarm": "supplier on the EFOS list"},
    ),
    "SAT-INVALID": ("critical", {"invoice": INVOICE, "said": "SAT says Cancelado"}),
    "DIAN-INVALID": ("critical", {"invoice": INVOICE, "said": "DIAN says 99"}),
    "NOT-FOUND": ("warning", {"invoice": INVOICE, "said": "SAT says No Encontrado", "times": 6}),
    "REFUSED": ("critical", {"invoice": INVOICE, "said": "DIAN refused", "times": 4}),
    "ALEGRA-ATTACHMENT": (
        "warning",
        {"invoice": INVOICE, "file": "FV7.pdf", "said": "HTTP 413"},
    ),
    "SAT-CANCELLED-AFTER-BOOKING": (
        "critical",
        {"invoice": INVOICE, "bill": "531", "said": "SAT says Cancelado"},
    ),
}
OTHER_EVENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "ALEGRA-ACCOUNT": ("critical", {"user": "cuentas@acme.co", "said": "plan de solo lectura"}),
    "ARCHIVE-DAMAGED": (
        "critical",
        {"missing": 4, "changed": 1, "files": [f"2026/11/{n}.xml" for n in range(5)]},
    ),
    "SCHEDULE-FAILED": ("warning", {"task": "daily_report", "said": "disk full"}),
}
CONDITIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "QUEUE-BACKLOG": ("warning", {"queue": "alegra_sync", "ready": 1250, "threshold": 100}),
    "NO-WORKER": ("critical", {"pool": "alegra", "waiting": 3}),
    "CACHE-HIT-RATE": ("warning", {"rate": 0.625, "threshold": 0.7}),
    "ERROR-RATE": ("warning", {"pool": "alegra", "rate": 0.125, "threshold": 0.05}),
    "AUTHORITY-FAILURES": ("warning", {"authority": "dian", "rate": 0.5, "threshold": 0.1}),
    "CERTIFICATE-EXPIRING": ("warning", {"company": "acme", "expires": "2026-12-15"}),
    "DISK-FULL": ("critical", {"free_mb": 512, "threshold_mb": 1024}),
    "BACKUP-STALE": ("warning", {"newest": "2026-11-25T04:00:00-05:00", "max_age_days": 2.0}),
}


def alert(code: str, severity: str, params: dict[str, Any], status: str = "firing") -> Alert:
    invoice_id = 12 if "invoice" in params else None
    condition = code if code in CONDITIONS else None
    return Alert(1, 0.0, invoice_id, severity, code, params, status, condition)


@pytest.mark.parametrize("lang", ["es", "en"])
def test_every_event_names_its_invoice_and_what_to_do(lang: Language) -> None:
    todo = {"es": "Qué hacer:", "en": "What to do:"}[lang]
    for code, (severity, params) in {**EVENTS, **OTHER_EVENTS}.items():
        words = describe(alert(code, severity, params), lang)
        assert code not in words.subject and todo in words.text, (code, words)
        if code in EVENTS:
            assert INVOICE in words.subject and INVOICE in words.text, (code, words)
    worded = describe(alert("NOT-FOUND", *EVENTS["NOT-FOUND"]), "es")
    assert worded.subject == f"[advertencia] La autoridad no encuentra {INVOICE}"
    assert "Tras 6 consultas" in worded.text and "facturasd retry 12" in worded.text
    archive = describe(alert("ARCHIVE-DAMAGED", *OTHER_EVENTS["ARCHIVE-DAMAGED"]), "en")
    assert "2026/11/0.xml, 2026/11/1.xml, 2026/11/2.xml and 2 more" in archive.text


@pytest.mark.parametrize("lang", ["es", "en"])
def test_every_condition_is_worded_firing_repeat_and_resolved(lang: Language) -> None:
    todo = {"es": "Qué hacer:", "en": "What to do:"}[lang]
    for code, (severity, params) in CONDITIONS.items():
        firing, repeat, resolved = (
            describe(alert(code, severity, params, status), lang)
            for status in ("firing", "repeat", "resolved")
        )
        assert todo in firing.text and firing.text == repeat.text, code
        assert firing.subject != repeat.subject != resolved.subject, code
        assert todo not in resolved.text and code not in resolved.text, code


def test_numbers_are_written_as_each_language_writes_them() -> None:
    rate = alert("ERROR-RATE", *CONDITIONS["ERROR-RATE"])
    assert (
        describe(rate, "es").subject
        == "[advertencia] Falla el 12,5\u00a0% de los trabajos del grupo alegra"
    )
    assert describe(rate, "en").text.startswith(
        "12.5% of pool alegra's recent jobs fail (at most 5%"
    )
    backlog = alert("QUEUE-BACKLOG", *CONDITIONS["QUEUE-BACKLOG"], "repeat")
    assert describe(backlog, "es").subject == (
        "[advertencia, sigue] Cola alegra_sync: 1250 trabajos esperando"
    )
    assert "(umbral 100)" in describe(backlog, "es").text
    expired = alert("CERTIFICATE-EXPIRING", "critical", {"company": None, "expires": "2026-11-01"})
    assert describe(expired, "en").subject == (
        "[critical] The DIAN certificate of all companies expired on 2026-11-01"
    )
    resolved = alert("DISK-FULL", *CONDITIONS["DISK-FULL"], "resolved")
    assert describe(resolved, "es") == Said(
        "[resuelto] Vuelve a haber al menos 1024 MB libres",
        "Vuelve a haber al menos 1024 MB libres. Última alerta: Disco casi lleno: 512 MB libres.",
    )


def test_an_alert_without_words_is_still_said() -> None:
    unknown = describe(alert("FUTURE-CODE", "warning", {"b": 2, "a": "x"}), "es")
    assert unknown.subject == "[advertencia] FUTURE-CODE"
    assert unknown.text == "FUTURE-CODE: a: x; b: 2"
    # A known code whose parameters changed since: the same plain line, never an error.
    odd = describe(alert("QUEUE-BACKLOG", "warning", {"depth": 3}), "en")
    assert odd == Said("[warning] QUEUE-BACKLOG", "QUEUE-BACKLOG: depth: 3")


# ── the command ───────────────────────────────────────────────────────────────────────────


async def _fill(path: Path) -> None:
    """A ledger with an event of two days ago, one of now, a condition resolved and one that
    holds, at the real time (`--open` looks at the last day)."""
    db = await Database.open(path)
    try:
        now = datetime.now(UTC).timestamp()

        def events(conn: sqlite3.Connection) -> None:
            invoice = ledger.insert(
                conn,
                sha256="0" * 64,
                original_name="FV7.xml",
                inbox_path="FV7.xml",
                path="/archive/FV7.xml",
                state=InvoiceState.CHECKED,
                now=now,
                reason="test",
            )
            old = {"at": now - 2 * 86400, "severity": "warning", "code": "SCHEDULE-FAILED"}
            compliance.raise_alert(conn, **old, task="backup", said="disk full")
            compliance.raise_alert(
                conn,
                at=now - 60,
                severity="critical",
                code="SAT-INVALID",
                invoice_id=invoice.id,
                invoice=INVOICE,
                said="SAT says Cancelado",
            )

        await db.write(events)
        engine = AlertEngine(db, cooldown=COOLDOWN)
        backlog = ("QUEUE-BACKLOG:alegra_sync", "QUEUE-BACKLOG", "warning")
        params = {"queue": "alegra_sync", "ready": 150, "threshold": 100}
        await engine.evaluate([Observation(*backlog, params, True)])
        await engine.evaluate([Observation(*backlog, params, False)])
        disk = Observation(
            "DISK-FULL", "DISK-FULL", "critical", {"free_mb": 512, "threshold_mb": 1024}, True
        )
        repeating = AlertEngine(db, cooldown=0)  # said again at each look
        await repeating.evaluate([disk])
        await repeating.evaluate([disk])
    finally:
        await db.close()


@pytest.mark.slow
def test_the_alerts_command_lists_them_newest_first_and_the_open_ones(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "state").mkdir()
    anyio.run(_fill, tmp_path / "state" / DATABASE_FILE)

    listed = run_facturasd("alerts", "--config", str(config), "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["code"], r["status"]) for r in rows] == [
        ("DISK-FULL", "repeat"),
        ("DISK-FULL", "firing"),
        ("QUEUE-BACKLOG", "resolved"),
        ("QUEUE-BACKLOG", "firing"),
        ("SAT-INVALID", "firing"),
        ("SCHEDULE-FAILED", "firing"),
    ]
    sat = rows[4]
    assert sat["invoice_id"] == 1 and sat["condition"] is None and sat["sent_at"] is None
    assert sat["params"] == {"invoice": INVOICE, "said": "SAT says Cancelado"}
    assert INVOICE in sat["message"] and "Qué hacer:" in sat["message"]
    assert datetime.fromisoformat(sat["at"]).utcoffset() == timedelta(hours=-5)  # Bogotá
    assert rows[0]["condition"] == "DISK-FULL" and rows[0]["severity"] == "critical"

    opened = run_facturasd("alerts", "--config", str(config), "--open", "--json")
    # The last alert of the condition that holds, and the event of the last day.
    assert [(r["code"], r["status"]) for r in json.loads(opened.stdout)] == [
        ("DISK-FULL", "repeat"),
        ("SAT-INVALID", "firing"),
    ]

    header, *lines = run_facturasd("alerts", "--config", str(config), "--open").stdout.splitlines()
    assert header.split() == ["ID", "FECHA", "CÓDIGO", "ALERTA"]
    # (id, day, time, code, subject)
    assert (
        " ".join(lines[0].split()[3:])
        == "DISK-FULL [crítico, sigue] Disco casi lleno: 512 MB libres"
    )
    assert len(lines) == 2
    english = run_facturasd("alerts", "--config", str(config), "--lang", "en", "--limit", "1")
    assert english.stdout.splitlines()[1].endswith(
        "[critical, still] Disk nearly full: 512 MB free"
    )
    assert english.stdout.splitlines()[-1] == "… and 5 older: --limit 6 shows them all."
