"""The one way an invoice changes state: the transition table, and the next stage's job queued
in the same commit, whoever makes the change (the daemon or a person)."""

from __future__ import annotations

import getpass
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from facturasd.config import load_config
from facturasd.constants import ComplianceStatus, InvoiceState, QueueName
from facturasd.daemon import Daemon
from facturasd.errors import IllegalTransition
from facturasd.pipeline.lifecycle import (
    COMPLIANCE,
    STAGES,
    TRANSITIONS,
    Lifecycle,
    Stage,
    booking,
)
from facturasd.pipeline.review import Review
from facturasd.services import build
from facturasd.store import ledger
from facturasd.store.db import Database
from facturasd.store.queue import Effect, Job, Queue
from tests.support import daemon_log, query, write_config
from tests.test_inbox import COMPANY, STRANGER, drop, invoice

NEXT = Stage("next-test", QueueName.DIAN_VALIDATION, InvoiceState.CHECKED)


def _row(conn: sqlite3.Connection, state: InvoiceState) -> ledger.Invoice:
    invoice = ledger.insert(
        conn,
        sha256="0" * 64,
        original_name="f.xml",
        inbox_path="f.xml",
        path="/archive/f.xml",
        state=InvoiceState.RECEIVED,
        now=0.0,
        reason="test",
    )
    conn.execute("UPDATE invoices SET state = ? WHERE id = ?", (state, invoice.id))
    found = ledger.get(conn, invoice.id)
    assert found is not None
    return found


@pytest.mark.anyio
async def test_every_change_of_state_is_checked_against_the_table(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "ledger.db")
    try:
        lifecycle = Lifecycle(Queue(db), [*STAGES, NEXT])
        for start in InvoiceState:
            for to in InvoiceState:
                invoice = await db.write(lambda conn, s=start: _row(conn, s))

                def change(
                    conn: sqlite3.Connection,
                    invoice: ledger.Invoice = invoice,
                    to: InvoiceState = to,
                ) -> bool:
                    return lifecycle.advance(conn, invoice, to=to, reason="test", actor="ana")

                allowed = to is start or to in TRANSITIONS[start]
                if allowed:
                    assert await db.write(change)
                else:
                    with pytest.raises(IllegalTransition, match=f"{start} → {to}"):
                        await db.write(change)
                found = await db.read(lambda conn, i=invoice.id: ledger.get(conn, i))
                assert found is not None
                assert found.state is (to if allowed else start)
                history = await ledger.events(db, invoice.id)
                assert (history[-1].actor, history[-1].state) == (
                    ("ana", to) if allowed else ("facturasd", InvoiceState.RECEIVED)
                )
                # Entering a state queues the stages it starts, in the same commit.
                jobs = await db.fetchall(
                    "SELECT kind, queue, payload FROM jobs WHERE payload = ?",
                    (f'{{"invoice": {invoice.id}}}',),
                )
                expected = {
                    (s.kind, s.queue.value)
                    for s in (*STAGES, NEXT)
                    if allowed and to is not start and s.starts_at is to
                }
                assert {(row["kind"], row["queue"]) for row in jobs} == expected
    finally:
        await db.close()


@pytest.mark.anyio
async def test_every_change_of_compliance_is_checked_and_starts_its_stages(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "ledger.db")
    # A stage that waits for the authority's word, as booking does with book_when "validated".
    after = Stage("after-test", QueueName.ALEGRA_SYNC, ComplianceStatus.VALIDATED)
    try:
        lifecycle = Lifecycle(Queue(db), [*STAGES, after])
        for start in ComplianceStatus:
            for to in ComplianceStatus:

                def make(conn: sqlite3.Connection, s: ComplianceStatus = start) -> ledger.Invoice:
                    row = _row(conn, InvoiceState.CHECKED)
                    conn.execute("UPDATE invoices SET compliance = ? WHERE id = ?", (s, row.id))
                    found = ledger.get(conn, row.id)
                    assert found is not None
                    return found

                invoice = await db.write(make)

                def change(
                    conn: sqlite3.Connection,
                    invoice: ledger.Invoice = invoice,
                    to: ComplianceStatus = to,
                ) -> bool:
                    return lifecycle.comply(conn, invoice, to=to, reason="SAT says Vigente")

                allowed = to is start or to in COMPLIANCE[start]
                if allowed:
                    assert await db.write(change)
                else:
                    with pytest.raises(IllegalTransition, match=f"{start} → {to}"):
                        await db.write(change)
                found = await db.read(lambda conn, i=invoice.id: ledger.get(conn, i))
                assert found is not None
                assert found.compliance is (to if allowed else start)
                assert found.state is InvoiceState.CHECKED
                history = await ledger.events(db, invoice.id)
                if allowed:  # the status and its reason, in the history
                    assert (history[-1].compliance, history[-1].reason) == (to, "SAT says Vigente")
                jobs = await db.fetchall(
                    "SELECT kind FROM jobs WHERE payload = ?", (f'{{"invoice": {invoice.id}}}',)
                )
                started = allowed and to is not start and to is ComplianceStatus.VALIDATED
                assert [row["kind"] for row in jobs] == (["after-test"] if started else [])
    finally:
        await db.close()


@pytest.mark.anyio
@pytest.mark.parametrize("book_when", ["validated", "checked"])
async def test_book_when_decides_whether_booking_waits_for_the_authority(
    tmp_path: Path, book_when: str
) -> None:
    db = await Database.open(tmp_path / "ledger.db")
    book, _ = booking(book_when)
    try:
        lifecycle = Lifecycle(Queue(db), [*STAGES, book])
        invoice = await db.write(lambda conn: _row(conn, InvoiceState.RECEIVED))

        def kinds() -> Any:
            return db.fetchall("SELECT kind FROM jobs ORDER BY id")

        await db.write(
            lambda c: lifecycle.advance(c, invoice, to=InvoiceState.CHECKED, reason="ok")
        )
        queued = [row["kind"] for row in await kinds()]
        # Checked: the authority is asked; booking starts now only if it need not wait.
        assert queued == (["confirm", "book"] if book_when == "checked" else ["confirm"])
        checked = await db.read(lambda conn: ledger.get(conn, invoice.id))
        assert checked is not None
        await db.write(
            lambda c: lifecycle.comply(c, checked, to=ComplianceStatus.VALIDATED, reason="00")
        )
        assert [row["kind"] for row in await kinds()] == ["confirm", "book"]
    finally:
        await db.close()


@pytest.fixture
def json_logs() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The daemon's own log set-up (JSON lines), read back as records."""
    with daemon_log("json") as written:
        yield lambda: [json.loads(line) for line in written.getvalue().splitlines()]


@pytest.mark.slow
@pytest.mark.anyio
async def test_an_invoice_a_person_accepts_gets_the_same_next_job_as_one_checked_alone(
    tmp_path: Path, json_logs: Callable[[], list[dict[str, Any]]]
) -> None:
    config = load_config(write_config(tmp_path, COMPANY), {})
    handled: list[int] = []

    async def next_stage(job: Job) -> Effect | None:
        handled.append(int(job.payload["invoice"]))
        return None

    daemon = Daemon(config, stages=[*STAGES, NEXT], handlers={NEXT.kind: next_stage})
    db_path = config.paths.state_dir / "facturasd.db"

    def states() -> dict[str, tuple[int, str]]:
        rows = query(db_path, "SELECT original_name, id, state FROM invoices")
        return {str(name): (int(i), str(state)) for name, i, state in rows}  # type: ignore[call-overload]

    async with anyio.create_task_group() as tg:
        tg.start_soon(daemon.run)
        with anyio.fail_after(60):
            while not (config.paths.inbox / "acme").is_dir():
                await anyio.sleep(0.05)
            drop(config.paths.inbox, "propia.xml", invoice(1))
            drop(config.paths.inbox, "ajena.xml", invoice(2, override=STRANGER))
            while {s for _, s in (await anyio.to_thread.run_sync(states)).values()} != {
                "checked",
                "needs_review",
            }:
                await anyio.sleep(0.05)
            rows = await anyio.to_thread.run_sync(states)
            checked, in_review = rows["propia.xml"][0], rows["ajena.xml"][0]
            while handled != [checked]:
                await anyio.sleep(0.05)
            # As `facturasd invoices accept` does, beside the daemon (the same stages).
            async with build(
                config, stages=[*STAGES, NEXT], handlers={NEXT.kind: next_stage}, upgrade=False
            ) as services:
                review = Review(
                    services.db, services.lifecycle, config.companies, getpass.getuser()
                )
                with pytest.raises(IllegalTransition):
                    await services.db.write(
                        lambda conn: services.lifecycle.advance(
                            conn,
                            ledger.get(conn, checked),  # type: ignore[arg-type]
                            to=InvoiceState.BOOKED,  # (a bill is booked through `booking`)
                            reason="not allowed",
                        )
                    )
                await review.accept(in_review, "es de la empresa")
            while sorted(handled) != sorted([checked, in_review]):
                await anyio.sleep(0.05)
        daemon.stop()
    jobs = query(
        db_path,
        "SELECT kind, queue, payload, state FROM jobs WHERE kind = ? ORDER BY id",
        (NEXT.kind,),
    )
    assert jobs == [
        (NEXT.kind, "dian_validation", f'{{"invoice": {checked}}}', "done"),
        (NEXT.kind, "dian_validation", f'{{"invoice": {in_review}}}', "done"),
    ]
    # One INFO line per change of state, each naming its invoice.
    records = json_logs()
    changes = [
        (r["invoice_id"], r["message"].split(": ")[1].split(", ")[0])
        for r in records
        if r["level"] == "info" and r["logger"].startswith("facturasd.pipeline")
    ]
    user = getpass.getuser()
    assert sorted(changes) == sorted(
        [
            (checked, "taken from the inbox"),
            (checked, "received → checked by facturasd"),
            (in_review, "taken from the inbox"),
            (in_review, "received → needs_review by facturasd"),
            (in_review, f"needs_review → checked by {user}"),
        ]
    )
    assert all(
        r["message"].startswith(f"invoice #{r['invoice_id']} ")
        for r in records
        if r["logger"].startswith("facturasd.pipeline")
    )
