"""`facturasd retry`, `invoices list --compliance` and what `invoices show` says of the tax
authority's word, as a person reads them.

The ledger is filled in this process through the real code: invoices taken and checked as the
daemon does, then their confirm jobs settled as the confirm stage settles them (the attempt
recorded, an alert raised, the status moved through the lifecycle, the job done, parked until
its retry's step, or handed back uncounted when the authority gave no answer). One test goes
the whole way instead: the authorities' pool asking the sandbox's SAT server over HTTP."""

from __future__ import annotations

import json
import re
import sqlite3
import time
import uuid as uuids
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path

import anyio
import pytest
from aiohttp import web

from facturasd.cli import main
from facturasd.config import Config, load_config
from facturasd.constants import DATABASE_FILE, ComplianceStatus, QueueName, WorkerGroup
from facturasd.formats.reader import read
from facturasd.pipeline.lifecycle import CONFIRM, Lifecycle
from facturasd.sandbox.server import create_app
from facturasd.sandbox.state import Sandbox, SatRecord
from facturasd.services import build
from facturasd.store import compliance, ledger
from facturasd.store.compliance import Outcome
from tests.documents import Item, cfdi40
from tests.support import ACCOUNT, invoice, take, write_config
from tests.test_listings import COMPANY, cli

C = ComplianceStatus
DIAN_URL = "http://127.0.0.1:8099/dian/WcfDianCustomerServices.svc"
# When the attempts were made: 10:00 in Bogotá (daemon.timezone), as `invoices show` says it.
ASKED_AT = datetime(2026, 11, 29, 15, 0, tzinfo=UTC).timestamp()
BOGOTA = "2026-11-29T10:00:00-05:00"
ASKED_AGAIN = "asked again: asked from the command line"
COUNT_ES = "facturas en cola para consultar: {n} (las consulta el daemon en marcha, o al arrancar)"

# Each test takes and checks files (a parse worker process) and runs the commands as a person
# does: slow tier.
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Said:
    """What came of asking DIAN about one invoice."""

    status: ComplianceStatus
    outcome: str | None = None  # None: not asked (nothing to ask with)
    code: str | None = None
    detail: str | None = None
    alert: str | None = None
    parked: timedelta = timedelta(0)  # RETRY, FALLBACK: its job waits this long


def _said(
    conn: sqlite3.Connection,
    lifecycle: Lifecycle,
    invoice: ledger.Invoice,
    what: Said,
    due: datetime,
) -> None:
    """What the confirm stage writes of an answer, or of no answer."""
    if what.outcome is not None:
        compliance.record_attempt(
            conn,
            invoice.id,
            at=ASKED_AT,
            authority="dian",
            endpoint=DIAN_URL,
            source="online",
            outcome=what.outcome,
            status=what.code,
            detail=what.detail,
            latency=0.152,
        )
    if what.alert is not None:
        compliance.raise_alert(
            conn,
            at=ASKED_AT,
            severity="critical",
            code=what.alert,
            invoice_id=invoice.id,
            said=f"DIAN says {what.code}",
        )
    lifecycle.comply(conn, invoice, to=what.status, reason=f"DIAN: {what.detail}")
    if what.status is C.RETRY:
        lifecycle.later(conn, CONFIRM, invoice.id, at=due, queue=QueueName.COMPLIANCE_RETRY)


async def _settle(config: Config, said: Mapping[int, Said]) -> None:
    async with build(config) as services:
        db, queue = services.db, services.queue
        queues = [QueueName.DIAN_VALIDATION.value]
        while (job := await queue.claim(queues, config.workers.lease)) is not None:
            invoice = await db.read(partial(ledger.get, invoice_id=job.payload["invoice"]))
            assert invoice is not None
            what = said[invoice.id]
            due = services.clock() + what.parked
            effect = partial(
                _said, lifecycle=services.lifecycle, invoice=invoice, what=what, due=due
            )
            if what.status is C.FALLBACK:
                # No answer: the job goes back uncounted, due when the authority may answer.
                await db.write(effect)
                await queue.release(job, due, "dian gave no answer")
            else:
                await queue.complete(job, effect)


async def _ask_now(config: Config, invoice_id: int) -> None:
    """The daemon's worker takes the invoice's confirm job and is asking DIAN right now."""
    async with build(config) as services:
        job = await services.queue.claim([QueueName.DIAN_VALIDATION.value], 300.0)
        assert job is not None and job.payload["invoice"] == invoice_id


def office(tmp_path: Path) -> Path:
    """Five checked invoices, each left by DIAN in one status, and a file that could not be
    read (never asked)."""
    config_file = write_config(tmp_path, COMPANY)
    files = {f"{n}.xml": invoice(n) for n in range(1, 6)}
    config = take(config_file, {**files, "roto.xml": b"\x89PNG not an invoice"})
    said = {
        1: Said(C.VALIDATED, Outcome.VALID, "00", "Procesado Correctamente"),
        2: Said(C.FAILED, Outcome.INVALID, "99", "Documento con errores", alert="DIAN-INVALID"),
        3: Said(
            C.FALLBACK,
            Outcome.UNAVAILABLE,
            detail="connection refused",
            parked=timedelta(minutes=5),
        ),
        4: Said(C.RETRY, Outcome.NOT_FOUND, "66", "TrackId no existe", parked=timedelta(hours=1)),
        5: Said(C.PENDING, detail="no certificate configured"),
    }
    anyio.run(_settle, config, said)
    return config_file


def ledger_rows(config_file: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(config_file.parent / "state" / DATABASE_FILE) as conn:
        return conn.execute(sql, params).fetchall()


def statuses(config_file: Path) -> dict[int, str]:
    return dict(ledger_rows(config_file, "SELECT id, compliance FROM invoices"))  # type: ignore[arg-type]


def live_confirm_jobs(config_file: Path) -> dict[int, tuple[int, str, bool]]:
    """Per invoice: its live confirm job's id, queue, and whether it is due now."""
    rows = ledger_rows(
        config_file,
        "SELECT json_extract(payload, '$.invoice'), id, queue, run_at <= ? FROM jobs "
        "WHERE kind = 'confirm' AND state = 'queued'",
        time.time(),
    )
    return {row[0]: (row[1], row[2], bool(row[3])) for row in rows}  # type: ignore[misc]


def counted(config_file: Path, invoice_id: int, outcome: str) -> int:
    """The attempts the confirm stage counts against the invoice's retries."""
    with sqlite3.connect(config_file.parent / "state" / DATABASE_FILE) as conn:
        return compliance.count_attempts(conn, invoice_id, outcome)


def test_retry_failed_asks_again_for_the_failed_ones_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = office(tmp_path)
    before = statuses(config_file)
    assert before == {
        1: "VALIDATED",
        2: "FAILED",
        3: "FALLBACK",
        4: "RETRY",
        5: "PENDING",
        6: "PENDING",
    }
    jobs_before = live_confirm_jobs(config_file)
    assert counted(config_file, 2, Outcome.INVALID) == 1

    code, out, err = cli(capsys, "retry", "--failed", "--config", str(config_file))
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "#2 FE1001 (2.xml): en cola para consultar de nuevo (estaba fallida)",
        COUNT_ES.format(n=1),
    ]
    assert statuses(config_file) == {**before, 2: "PENDING"}
    # A confirm job for it, due now on the authorities' queue; the others' jobs as they were.
    jobs = live_confirm_jobs(config_file)
    assert jobs[2][1:] == ("dian_validation", True)
    assert {k: v for k, v in jobs.items() if k != 2} == jobs_before
    # Its retries count anew.
    assert counted(config_file, 2, Outcome.INVALID) == 0

    # Who asked and why, in its history, beside the state changes.
    shown = cli(capsys, "invoices", "show", "2", "--config", str(config_file))[1]
    history = shown.split("  historia (los motivos del sistema se registran en inglés):\n")[1]
    lines = history.splitlines()
    assert " revisada " in lines[2]
    assert lines[3].endswith(" DIAN/SAT: fallida facturasd: DIAN: Documento con errores")
    assert lines[4].endswith(f" DIAN/SAT: pendiente {ACCOUNT}: {ASKED_AGAIN}")

    # Asked again for nothing: said so.
    code, out, _ = cli(capsys, "retry", "--failed", "--config", str(config_file))
    assert (code, out) == (0, COUNT_ES.format(n=0) + "\n")


def test_retry_brings_a_parked_job_forward_and_names_each_it_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = office(tmp_path)
    jobs_before = live_confirm_jobs(config_file)
    # Parked: the FALLBACK one until the authority may answer, the RETRY one until its step.
    assert jobs_before[3][1:] == ("dian_validation", False)
    assert jobs_before[4][1:] == ("compliance_retry", False)
    assert counted(config_file, 4, Outcome.NOT_FOUND) == 1

    code, out, err = cli(capsys, "retry", "3", "6", "4", "99", "--config", str(config_file))
    assert code == 1
    assert out.splitlines() == [
        "#3 FE1001 (3.xml): en cola para consultar de nuevo (estaba sin confirmar)",
        "#4 FE1001 (4.xml): en cola para consultar de nuevo (estaba por reintentar)",
        COUNT_ES.format(n=2),
    ]
    assert err.splitlines() == [
        "facturasd: la factura #6 está ilegible; solo se consulta a la autoridad una factura "
        "revisada",
        "facturasd: no hay factura #99",
    ]
    # The same jobs, due now on their own queues: no second job for one invoice.
    jobs = live_confirm_jobs(config_file)
    assert jobs[3] == (jobs_before[3][0], "dian_validation", True)
    assert jobs[4] == (jobs_before[4][0], "compliance_retry", True)
    assert statuses(config_file)[3] == statuses(config_file)[4] == "PENDING"
    assert counted(config_file, 4, Outcome.NOT_FOUND) == 0
    assert 6 not in jobs and statuses(config_file)[6] == "PENDING"


def test_retry_pending_asks_for_the_checked_ones_left_waiting_in_english(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = office(tmp_path)
    assert 5 not in live_confirm_jobs(config_file)  # its job done: nothing to ask with then
    code, out, err = cli(capsys, "retry", "--pending", "--lang", "en", "--config", str(config_file))
    assert (code, err) == (0, "")
    # Not the file that could not be read, PENDING as every row starts.
    assert out.splitlines() == [
        "#5 FE1001 (5.xml): queued to be asked again (was pending)",
        "invoices queued to be asked: 1 (the running daemon asks, or it does at its next start)",
    ]
    assert live_confirm_jobs(config_file)[5][1:] == ("dian_validation", True)
    history = json.loads(
        cli(capsys, "invoices", "show", "5", "--json", "--config", str(config_file))[1]
    )["history"]
    assert [(e["state"], e["compliance"], e["reason"]) for e in history[-2:]] == [
        (None, "PENDING", "DIAN: no certificate configured"),
        (None, "PENDING", ASKED_AGAIN),
    ]


def test_an_invoice_being_asked_right_now_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = write_config(tmp_path, COMPANY)
    config = take(config_file, {"1.xml": invoice(1)})
    anyio.run(_ask_now, config, 1)
    code, out, err = cli(capsys, "retry", "1", "--config", str(config_file))
    assert (code, out) == (1, COUNT_ES.format(n=0) + "\n")
    assert err == (
        "facturasd: la factura #1 se está consultando ahora mismo; intente de nuevo en un momento\n"
    )
    # Nothing changed under the worker: its answer will be recorded.
    history = json.loads(
        cli(capsys, "invoices", "show", "1", "--json", "--config", str(config_file))[1]
    )["history"]
    assert all(e["compliance"] is None for e in history)


def test_retry_takes_ids_or_one_choice(capsys: pytest.CaptureFixture[str]) -> None:
    for args in ([], ["1", "--failed"], ["--failed", "--fallback"]):
        with pytest.raises(SystemExit) as exited:
            main(["retry", *args])
        assert exited.value.code == 2
    assert "--failed, --fallback, --pending" in capsys.readouterr().err


def test_invoices_list_filters_by_compliance_and_shows_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = office(tmp_path)

    def listed(*args: str) -> list[list[str]]:
        code, out, _ = cli(capsys, "invoices", "list", "--config", str(config_file), *args)
        assert code == 0
        return [line.split()[:3] for line in out.splitlines()[1:]]

    # Any case, a comma list or the option again: any of them.
    assert listed("--compliance", "failed,FALLBACK") == [
        ["3", "revisada", "sin"],  # "sin confirmar"
        ["2", "revisada", "fallida"],
    ]
    assert listed("--compliance", "Retry", "--compliance", "validated", "--lang", "en") == [
        ["4", "checked", "to"],  # "to retry"
        ["1", "checked", "validated"],
    ]
    assert listed("--compliance", "pending", "--state", "checked") == [
        ["5", "revisada", "pendiente"]
    ]
    rows = json.loads(cli(capsys, "invoices", "list", "--json", "--config", str(config_file))[1])
    assert [(r["id"], r["compliance"]) for r in rows] == [
        (6, "PENDING"), (5, "PENDING"), (4, "RETRY"), (3, "FALLBACK"), (2, "FAILED"),
        (1, "VALIDATED"),
    ]  # fmt: skip

    with pytest.raises(SystemExit) as exited:
        main(["invoices", "list", "--config", str(config_file), "--compliance", "ok"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "facturasd invoices list: error: argument --compliance: 'ok' is not a compliance "
        "status: PENDING, VALIDATED, RETRY, FAILED, FALLBACK"
    )


def test_invoices_show_lists_the_attempts_and_alerts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = office(tmp_path)
    spanish = cli(capsys, "invoices", "show", "2", "--config", str(config_file))[1]
    assert spanish.startswith("#2 revisada (fallida)  2.xml\n")
    [_, asked] = spanish.split(
        "  consultas a la autoridad (el detalle en sus palabras; si no respondió, en inglés):\n"
    )
    assert asked.splitlines() == [
        f"    {BOGOTA} DIAN en línea: no válida 99 (Documento con errores), 152 ms {DIAN_URL}",
        "  alertas (sus datos se registran en inglés):",
        f"    {BOGOTA} [crítico] DIAN-INVALID: said: DIAN says 99",
    ]
    english = cli(capsys, "invoices", "show", "3", "--lang", "en", "--config", str(config_file))[1]
    assert english.startswith("#3 checked (not confirmed)  3.xml\n")
    assert english.splitlines()[-1] == (
        f"    {BOGOTA} DIAN online: no answer (connection refused), 152 ms {DIAN_URL}"
    )
    assert "alerts" not in english  # none for it
    assert " DIAN/SAT: not confirmed facturasd: DIAN: connection refused" in english

    shown = json.loads(
        cli(capsys, "invoices", "show", "2", "--json", "--config", str(config_file))[1]
    )
    assert shown["compliance"] == "FAILED"
    assert shown["attempts"] == [
        {
            "at": BOGOTA,
            "authority": "dian",
            "endpoint": DIAN_URL,
            "source": "online",
            "outcome": "invalid",
            "status": "99",
            "detail": "Documento con errores",
            "latency_ms": 152,
            "fields": {},
        }
    ]
    [alert] = shown["alerts"]
    assert (alert["at"], alert["severity"], alert["code"], alert["params"]) == (
        BOGOTA,
        "critical",
        "DIAN-INVALID",
        {"said": "DIAN says 99"},
    )
    assert [e["compliance"] for e in shown["history"] if e["compliance"]] == ["FAILED"]


def test_a_cfdi_sat_cancelled_then_restored_is_validated_once_asked_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole way, over real HTTP to the sandbox's SAT server: SAT says Cancelado (FAILED);
    SAT's record is put right; `retry --failed` queues it, the authorities' pool asks at once,
    and `invoices show` lists both answers."""
    data = cfdi40(
        [Item("Producto", "1", "100.00", "16")], override={"uuid": str(uuids.uuid4()).upper()}
    )
    (inspection,) = read(data, "cfdi.xml")
    doc = inspection.document
    assert doc and doc.uuid and doc.issuer.tax_id and doc.receiver.tax_id and doc.totals.total
    record = SatRecord(
        doc.uuid.upper(),
        doc.issuer.tax_id,
        doc.receiver.tax_id,
        Decimal(doc.totals.total),
        estado="Cancelado",
    )
    sandbox = Sandbox()
    sandbox.sat[record.uuid] = record
    anyio.run(_cancelled_then_restored, tmp_path, data, sandbox, record)
    shown = capsys.readouterr().out
    [asked] = shown.split(
        "  consultas a la autoridad (el detalle en sus palabras; si no respondió, en inglés):\n"
    )[1:]
    cancelled, vigente = asked.splitlines()[:2]
    assert re.fullmatch(
        r"    \S+ SAT en línea: no válida Cancelado \(.+\), \d+ ms "
        r"http://127\.0\.0\.1:\d+/sat/ConsultaCFDIService\.svc",
        cancelled,
    ), cancelled
    assert re.fullmatch(r"    \S+ SAT en línea: válida Vigente .*, \d+ ms http://\S+", vigente), (
        vigente
    )
    assert asked.splitlines()[2:] == [
        "  alertas (sus datos se registran en inglés):",
        f"    {cancelled.split()[0]} [crítico] SAT-INVALID: said: SAT says Cancelado "
        "(S - Comprobante obtenido satisfactoriamente.)",
    ]
    history = shown.split(" (los motivos del sistema se registran en inglés):\n")[1]
    assert [line.strip().split(" ", 1)[1] for line in history.splitlines()[3:6]] == [
        "DIAN/SAT: fallida facturasd: SAT says Cancelado (S - Comprobante obtenido "
        "satisfactoriamente.)",
        f"DIAN/SAT: pendiente {ACCOUNT}: {ASKED_AGAIN}",
        "DIAN/SAT: validada facturasd: SAT says Vigente (S - Comprobante obtenido "
        "satisfactoriamente.)",
    ]


async def _cancelled_then_restored(
    tmp_path: Path, data: bytes, sandbox: Sandbox, record: SatRecord
) -> None:
    runner = web.AppRunner(create_app(sandbox))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    config_file = write_config(
        tmp_path,
        f'[authorities.sat]\nurl = "http://127.0.0.1:{port}/sat/ConsultaCFDIService.svc"\n',
    )
    await anyio.to_thread.run_sync(take, config_file, {"cfdi.xml": data})
    config = load_config(config_file, {})

    async def cli_(*args: str) -> int:
        return await anyio.to_thread.run_sync(main, [*args, "--config", str(config_file)])

    try:
        async with build(config) as services, anyio.create_task_group() as tg:
            pool = services.pools[WorkerGroup.AUTHORITIES]
            tg.start_soon(pool.run)

            async def settled(status: ComplianceStatus) -> None:
                with anyio.fail_after(30):
                    while (
                        await services.db.fetchone(
                            "SELECT 1 FROM invoices WHERE compliance = ?", (status,)
                        )
                        is None
                    ):
                        # (the command's job, written by another connection, is seen at
                        # the pool's next look: within its poll interval, a second)
                        await anyio.sleep(0.02)

            await settled(C.FAILED)
            record.estado = "Vigente"
            assert await cli_("retry", "--failed") == 0
            await settled(C.VALIDATED)
            pool.stop()
        assert await cli_("invoices", "show", "1") == 0
    finally:
        await runner.cleanup()
