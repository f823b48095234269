"""The confirm stage as an office notices it: each checked invoice taken through the real code
into a real SQLite ledger, the `authorities` worker pool asking the sandbox's SAT and DIAN
servers over real HTTP, and the schedules run on an injected clock (time moves when a test
says so; conditions are polled, never slept for)."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from facturasd.constants import ComplianceStatus, InvoiceState, QueueName
from facturasd.pipeline.lifecycle import STAGES, Stage
from facturasd.pipeline.review import Review
from facturasd.sandbox.server import PATHS, load_documents
from facturasd.sandbox.state import DianRecord, Fault, Sandbox
from facturasd.store import compliance, ledger
from facturasd.store.queue import Job
from tests import wsse
from tests.documents import CUSTOMER_NIT, ISSUER_RFC, RECEIVER_RFC, TFD, Item, cfdi40
from tests.office import Office, cfdi, known_to_sat, office
from tests.support import REPO, cufe, invoice

# Each test parses its files in a worker process and runs the authorities' pool: slow tier.
pytestmark = [pytest.mark.anyio, pytest.mark.slow]

C = ComplianceStatus
HOUR = 3600.0
JITTER = 0.1  # a retry may be due up to this share of its step later
DIAN_SAMPLES = REPO.parent / "shared" / "samples" / "dian"
SIIGO = ["siigo-blindacces-FV3.xml", "siigo-blindacces-FV7.xml", "siigo-blindacces-NC3.xml"]
COMPANY = (
    "[[companies]]\nslug = 'rg-glass'\nname = 'RG GLASS S.A.S.'\ncountry = 'CO'\n"
    f"tax_id = '{CUSTOMER_NIT}'\ncity = '11001'\n"
)


def due_after(job: sqlite3.Row | None, now: datetime, step: float) -> None:
    """`job` waits for its retry, due `step` seconds after `now` (plus the jitter)."""
    assert job is not None and job["state"] == "queued"
    assert job["queue"] == QueueName.COMPLIANCE_RETRY
    assert now.timestamp() + step <= job["run_at"] <= now.timestamp() + step * (1 + JITTER)


# ── SAT's answers ─────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("found_at", [None, 3])
async def test_no_encontrado_is_asked_again_on_its_own_schedule_then_fails_with_a_warning(
    tmp_path: Path, found_at: int | None
) -> None:
    """SAT takes hours to know a new stamp: asked again after 1 h, 6 h, 24 h and 72 h, then
    FAILED with a warning for a person; an answer meanwhile settles it."""
    data = cfdi(1)
    sandbox = Sandbox()
    record = known_to_sat(sandbox, data, estado="No Encontrado")
    asks = found_at or 5
    async with office(tmp_path, {"nueva.xml": data}, sandbox) as o:
        steps = [1 * HOUR, 6 * HOUR, 24 * HOUR, 72 * HOUR]
        for asked, step in enumerate(steps[: asks - 1], start=1):
            assert await o.status("nueva.xml") is C.RETRY
            job = await o.job("nueva.xml")
            due_after(job, o.clock(), step)
            assert job is not None and job["attempts"] == 0
            assert o.requests("sat") == asked
            if asked + 1 == found_at:
                record.estado = "Vigente"
            await o.until(job["run_at"])
        assert o.requests("sat") == asks
        assert await o.job("nueva.xml") is None
        outcomes = [a.outcome for a in await o.attempts("nueva.xml")]
        if found_at:
            assert await o.status("nueva.xml") is C.VALIDATED
            assert outcomes == ["not_found"] * (asks - 1) + ["valid"]
            assert await o.alerts("nueva.xml") == []
        else:
            assert await o.status("nueva.xml") is C.FAILED
            assert outcomes == ["not_found"] * asks
            # A warning for a person, not a critical alert: the stamp may yet appear, or the
            # CFDI never have existed.
            assert await o.alerts("nueva.xml") == [("warning", "NOT-FOUND")]
            assert "5 times: given up" in (await o.history("nueva.xml"))[-1]


async def rfc_notes(o: Office, name: str) -> list[tuple[str, str, str]]:
    """(code, severity, path) of the stored inspection's RFC check-digit findings."""
    found = await o.services.db.read(partial(ledger.inspection, invoice_id=o.ids[name]))
    assert found is not None
    return [
        (f["code"], f["severity"], f["path"])
        for f in found["findings"]
        if f["code"] == "MX-RFC-CHECK-DIGIT"
    ]


@pytest.mark.parametrize("rfc", ["BSM970519DU8", "ASE931116231"])  # Santander México, AXA
async def test_a_real_rfc_that_fails_its_check_digit_is_a_note_until_sat_answers_vigente(
    tmp_path: Path, rfc: str
) -> None:
    """Real RFCs can fail the check-digit formula: the invoice is checked (no warning, not in
    review) with an info note, which goes once SAT answers Vigente to the query naming that
    RFC, and stays gone when the invoice is read and checked again."""
    data = cfdi40([Item("Prima de seguro", "1", "1000.00", "16")], override={"issuer": rfc})
    sandbox = Sandbox()
    record = known_to_sat(sandbox, data, estado="No Encontrado")
    async with office(tmp_path, {"aseguradora.xml": data}, sandbox) as o:
        invoice = await o.invoice("aseguradora.xml")
        assert (invoice.state, invoice.verdict, invoice.score) == (
            InvoiceState.CHECKED,
            "ok",
            1.0,
        )
        assert (invoice.issuer_tax_id, invoice.number) == (rfc, "F-77")
        assert await rfc_notes(o, "aseguradora.xml") == [
            ("MX-RFC-CHECK-DIGIT", "info", "issuer.tax_id")
        ]
        assert await o.status("aseguradora.xml") is C.RETRY  # not known to SAT yet: kept
        record.estado = "Vigente"
        job = await o.job("aseguradora.xml")
        assert job is not None
        await o.until(job["run_at"])
        assert await o.status("aseguradora.xml") is C.VALIDATED
        assert await rfc_notes(o, "aseguradora.xml") == []
        assert (await o.invoice("aseguradora.xml")).verdict == "ok"
        assert "SAT says Vigente: its RFCs are real, check digit or not" in await o.history(
            "aseguradora.xml"
        )
        review = Review(o.services.db, o.services.lifecycle, (), "tester")
        await review.reprocess(o.ids["aseguradora.xml"], "rules changed")
        await o.take({})
        assert (await o.invoice("aseguradora.xml")).state is InvoiceState.CHECKED
        assert await o.status("aseguradora.xml") is C.VALIDATED
        assert await rfc_notes(o, "aseguradora.xml") == []
        assert o.requests("sat") == 2  # decided: SAT is not asked again


async def never(job: Job) -> None:
    raise AssertionError(f"booking started for {job.payload}")


async def test_what_sat_says_decides_and_a_cancelled_cfdi_is_never_booked(tmp_path: Path) -> None:
    """Vigente → VALIDATED (booked next); Vigente from a supplier on the EFOS list →
    VALIDATED with a critical alert; Cancelado → FAILED with a critical alert, never booked."""
    files = {"vigente.xml": cfdi(2), "efos.xml": cfdi(3), "cancelada.xml": cfdi(4)}
    sandbox = Sandbox()
    known_to_sat(sandbox, files["vigente.xml"])
    known_to_sat(sandbox, files["efos.xml"], efos="100")
    known_to_sat(sandbox, files["cancelada.xml"], estado="Cancelado")
    # Booking as book_when = "validated" makes it: it starts when the authority validates.
    booking = Stage("book-test", QueueName.ALEGRA_SYNC, C.VALIDATED)
    async with office(
        tmp_path, files, sandbox, stages=[*STAGES, booking], handlers={booking.kind: never}
    ) as o:
        assert await o.status("vigente.xml") is C.VALIDATED
        assert await o.alerts("vigente.xml") == []
        assert await o.status("efos.xml") is C.VALIDATED
        assert await o.alerts("efos.xml") == [("critical", "SUPPLIER-EFOS")]
        assert await o.status("cancelada.xml") is C.FAILED
        assert await o.alerts("cancelada.xml") == [("critical", "SAT-INVALID")]
        assert "SAT says Cancelado" in (await o.history("cancelada.xml"))[-1]
        assert {await o.job(name) for name in files} == {None}
        rows = await o.services.db.fetchall(
            "SELECT dedupe_key FROM jobs WHERE kind = ?", (booking.kind,)
        )
        booked = {row["dedupe_key"] for row in rows}
        assert f"book-test:{o.ids['vigente.xml']}" in booked
        assert f"book-test:{o.ids['cancelada.xml']}" not in booked


@pytest.mark.parametrize(
    ("fault", "wait"),
    [
        (Fault(status=429, retry_after=120), 120.0),
        (Fault(status=503), 1.0),
        (Fault(timeout=True), 1.0),
    ],
    ids=["429-retry-after", "503", "timeout"],
)
async def test_no_answer_is_fallback_with_a_backup_and_burns_no_retry(
    tmp_path: Path, fault: Fault, wait: float
) -> None:
    data = cfdi(5)
    sandbox = Sandbox()
    known_to_sat(sandbox, data)
    sandbox.faults["sat"] = fault
    config = '[authorities.sat]\ntimeout = "300ms"\n'
    async with office(tmp_path, {"caida.xml": data}, sandbox, config) as o:
        assert await o.status("caida.xml") is C.FALLBACK
        # Back in its queue with no attempt counted, not due before the authority asked.
        job = await o.job("caida.xml")
        assert job is not None and (job["state"], job["attempts"]) == ("queued", 0)
        assert job["run_at"] >= o.clock().timestamp() + wait
        [attempt] = await o.attempts("caida.xml")
        assert attempt.outcome == "unavailable"
        assert attempt.endpoint.endswith(PATHS["sat"])
        assert await o.alerts("caida.xml") == []
        # The backup holds the document, should the ledger be lost.
        backup = json.loads((o.state_dir / "fallback" / f"{o.ids['caida.xml']}.json").read_text())
        assert backup["compliance"]["status"] == "FALLBACK"
        assert backup["document"]["uuid"].upper() == next(iter(sandbox.sat))
        assert backup["invoice"]["file"] == "caida.xml"
        # SAT answers again: asked when due, validated, with no retry spent on the outage.
        sandbox.faults.clear()
        await o.until(job["run_at"])
        assert await o.status("caida.xml") is C.VALIDATED
        assert [a.outcome for a in await o.attempts("caida.xml")] == ["unavailable", "valid"]


@pytest.mark.parametrize("authority", ["sat", "dian"])
async def test_a_refused_request_is_asked_again_on_the_retry_schedule_then_fails(
    tmp_path: Path, authority: str
) -> None:
    """The authority refuses the request itself (SAT's service not at the configured URL;
    DIAN not trusting the certificate): asked again after each step of `retry.schedule`, at
    most `retry.max_retries` times, then FAILED with a critical alert."""
    sandbox = Sandbox()
    if authority == "sat":
        name, data = "cfdi.xml", cfdi(6)
        known_to_sat(sandbox, data)
        config, paths = "", {**PATHS, "sat": "/sat/NoSuchService.svc"}
        steps, said = [60.0, 300.0, 900.0], "HTTP 404"  # the shipped 1, 5 and 15 minutes
        counted: dict[str, int] = {}  # (a path no service of the sandbox serves)
    else:
        name, data = "factura.xml", invoice(6)
        sandbox.dian[cufe(6)] = DianRecord(cufe(6))
        sandbox.dian_trust = [wsse.authority("Otra CA").certificate]
        paths = PATHS
        # DIAN and our client each refuse a clock more than five minutes off their own: a
        # shorter schedule keeps the simulated time that close to the real one.
        config = (
            certificate(tmp_path, wsse.authority()) + '[retry]\nschedule = ["30s", "1m", "2m"]\n'
        )
        steps, said = [30.0, 60.0, 120.0], "DIAN rejected the certificate"
        counted = {"invalid_security": 4}
    async with office(tmp_path, {name: data}, sandbox, config, paths=paths) as o:
        for step in steps:
            assert await o.status(name) is C.RETRY
            job = await o.job(name)
            due_after(job, o.clock(), step)
            assert job is not None
            await o.until(job["run_at"])
        assert await o.status(name) is C.FAILED
        assert await o.job(name) is None
        assert await o.alerts(name) == [("critical", "REFUSED")]
        attempts = await o.attempts(name)
        assert [a.outcome for a in attempts] == ["refused"] * 4
        assert all(said in (a.detail or "") for a in attempts), attempts[0].detail
        assert sandbox.stats()[authority]["by_outcome"] == counted
        assert "4 times: given up" in (await o.history(name))[-1]


# ── DIAN: its evidence, or GetStatus signed with the company's certificate ────────────────


def certificate(
    folder: Path, ca: wsse.Issued, *, days: float = 300, section: str = "authorities.dian"
) -> str:
    """A company's certificate issued by `ca` that expires in `days` (from `wsse.NOW`), in a
    PKCS#12 file and its password file under `folder`: the configuration `section` that
    names them."""
    folder = folder / section
    folder.mkdir(parents=True)
    issued = wsse.issue(ca, not_after=wsse.NOW + timedelta(days=days))
    p12, password = wsse.pkcs12_files(folder, issued)
    return f'[{section}]\ncertificate_file = "{p12}"\ncertificate_password_file = "{password}"\n'


async def check(o: Office, key: str) -> dict[str, Any]:
    """The /health check `key` (its one item)."""
    [item] = (await o.health())["checks"][key]
    assert isinstance(item, dict)
    return item


@pytest.mark.parametrize("per_company", [False, True], ids=["global", "per-company"])
async def test_a_bare_invoice_is_asked_with_the_companys_certificate(
    tmp_path: Path, per_company: bool
) -> None:
    """No DIAN evidence in the file: GetStatus, signed with the certificate configured for
    the invoice's company (the sandbox trusts only that one) or for all; a certificate that
    expires within 30 days is a warning in /health, naming the date."""
    trusted = wsse.authority("CA de la empresa")
    sandbox = Sandbox(dian={cufe(7): DianRecord(cufe(7))}, dian_trust=[trusted.certificate])
    if per_company:
        config = (
            COMPANY
            + certificate(tmp_path, wsse.authority("Otra CA"))
            + certificate(tmp_path, trusted, days=10, section="authorities.dian.companies.rg-glass")
        )
    else:
        config = certificate(tmp_path, trusted, days=10)
    async with office(tmp_path, {"factura.xml": invoice(7)}, sandbox, config) as o:
        assert (await o.invoice("factura.xml")).company == ("rg-glass" if per_company else None)
        assert await o.status("factura.xml") is C.VALIDATED
        [attempt] = await o.attempts("factura.xml")
        assert (attempt.source, attempt.outcome, attempt.status) == ("online", "valid", "00")
        assert attempt.endpoint.endswith(PATHS["dian"])
        assert sandbox.stats()["dian"]["by_outcome"] == {"00": 1}
        dian = await check(o, "authorities:dian")
        expiry = wsse.NOW + timedelta(days=10)
        assert dian["status"] == "warn"
        who = " (rg-glass)" if per_company else ""
        assert f"the DIAN certificate{who} expires on {expiry:%Y-%m-%d}" in dian["output"]


@pytest.mark.parametrize("expired", [False, True], ids=["no-certificate", "expired"])
async def test_without_a_usable_certificate_a_bare_invoice_waits_for_a_person(
    tmp_path: Path, expired: bool
) -> None:
    sandbox = Sandbox(dian={cufe(8): DianRecord(cufe(8))})
    config = certificate(tmp_path, wsse.authority(), days=-1) if expired else ""
    async with office(tmp_path, {"factura.xml": invoice(8)}, sandbox, config) as o:
        assert await o.status("factura.xml") is C.PENDING
        assert await o.job("factura.xml") is None
        assert o.requests("dian") == 0
        assert await o.attempts("factura.xml") == []
        reason = (await o.history("factura.xml"))[-1]
        assert ("expired" if expired else "no certificate configured") in reason
        dian = await check(o, "authorities:dian")
        assert dian["status"] == "warn"
        assert "1 invoice(s) not asked: they wait for a person" in dian["output"]
        assert ("the DIAN certificate expired on" in dian["output"]) is expired
        assert dian["waitingForAPerson"] == 1


async def test_verify_online_asks_dian_even_with_its_evidence_in_the_file(tmp_path: Path) -> None:
    """(Without it, the evidence is enough and DIAN gets no request: the samples' test in
    test_authorities_daemon.py shows that.)"""
    sandbox = Sandbox()
    load_documents(sandbox, DIAN_SAMPLES)
    config = certificate(tmp_path, wsse.authority()) + "verify_online = true\n"
    files = {name: (DIAN_SAMPLES / name).read_bytes() for name in SIIGO}
    async with office(tmp_path, files, sandbox, config) as o:
        for name in SIIGO:
            assert await o.status(name) is C.VALIDATED, name
            [attempt] = await o.attempts(name)
            assert (attempt.source, attempt.status) == ("online", "00"), name
        assert sandbox.stats()["dian"]["by_outcome"] == {"00": len(SIIGO)}


# ── not asked ─────────────────────────────────────────────────────────────────────────────


def cfdi32() -> bytes:
    """A stamped CFDI 3.2 (of 2016: a warning for its date, no more)."""
    return (
        '<cfdi:Comprobante xmlns:cfdi="http://www.sat.gob.mx/cfd/3" version="3.2" serie="B" '
        'folio="9" fecha="2016-05-01T09:00:00" subTotal="100.00" total="116.00" Moneda="MXN" '
        'tipoDeComprobante="ingreso" metodoDePago="01" formaDePago="PAGO EN UNA SOLA EXHIBICION">'
        f'<cfdi:Emisor rfc="{ISSUER_RFC}" nombre="Emisora"><cfdi:RegimenFiscal Regimen="601"/>'
        f'</cfdi:Emisor><cfdi:Receptor rfc="{RECEIVER_RFC}" nombre="Receptora"/>'
        '<cfdi:Conceptos><cfdi:Concepto cantidad="1" descripcion="Servicio" '
        'valorUnitario="100.00" importe="100.00"/></cfdi:Conceptos>'
        '<cfdi:Impuestos totalImpuestosTrasladados="16.00"><cfdi:Traslados>'
        '<cfdi:Traslado impuesto="IVA" tasa="16.00" importe="16.00"/></cfdi:Traslados>'
        "</cfdi:Impuestos><cfdi:Complemento>"
        f'<tfd:TimbreFiscalDigital xmlns:tfd="{TFD}" version="1.0" '
        'UUID="3A1B2C3D-4E5F-4A6B-8C7D-0E1F2A3B4C5D" FechaTimbrado="2016-05-01T09:05:00" '
        'noCertificadoSAT="00001000000202864530"/></cfdi:Complemento></cfdi:Comprobante>'
    ).encode()


async def test_a_cfdi_32_is_not_asked_and_the_reason_is_recorded(tmp_path: Path) -> None:
    """(A CFDI without a UUID never gets this far: the checks reject it, DOC-MISSING-UUID.)"""
    sandbox = Sandbox()
    async with office(tmp_path, {"antigua.xml": cfdi32()}, sandbox) as o:
        found = await o.invoice("antigua.xml")
        assert (found.state, found.format, found.compliance) == (
            InvoiceState.CHECKED,
            "cfdi-3.2",
            C.PENDING,
        )
        assert "not asked: a CFDI 3.2" in (await o.history("antigua.xml"))[-1]
        assert await o.job("antigua.xml") is None
        assert o.requests("sat") == 0
        sat = await check(o, "authorities:sat")
        assert (sat["status"], sat["waitingForAPerson"]) == ("warn", 1)


# ── /health and the figures ───────────────────────────────────────────────────────────────


async def test_an_open_circuit_is_a_warning_in_health_never_a_failure(tmp_path: Path) -> None:
    sandbox = Sandbox()
    files = {f"cfdi-{n}.xml": cfdi(20 + n) for n in range(12)}
    for data in files.values():
        known_to_sat(sandbox, data)
    sandbox.faults["sat"] = Fault(status=503)
    async with office(tmp_path, files, sandbox) as o:
        assert {await o.status(name) for name in files} == {C.FALLBACK}
        # After five calls without an answer the circuit opened: calls stopped.
        assert o.requests("sat") < len(files)
        sat = await check(o, "authorities:sat")
        assert (sat["status"], sat["circuit"]) == ("warn", "open")
        assert "circuit open" in sat["output"]
        assert (await check(o, "authorities:dian"))["status"] == "pass"
        assert (await o.health())["status"] != "fail"


async def test_the_compliance_figures_count_each_status_of_the_checked_invoices(
    tmp_path: Path,
) -> None:
    sandbox = Sandbox()
    files = {
        "vigente.xml": cfdi(30),
        "efos.xml": cfdi(31),
        "cancelada.xml": cfdi(32),
        "nueva.xml": cfdi(33),
        "colombiana.xml": invoice(34),  # no DIAN certificate: PENDING
        "roto.xml": b"no es una factura",  # never checked: not counted
    }
    known_to_sat(sandbox, files["vigente.xml"])
    known_to_sat(sandbox, files["efos.xml"], efos="100")
    known_to_sat(sandbox, files["cancelada.xml"], estado="Cancelado")
    known_to_sat(sandbox, files["nueva.xml"], estado="No Encontrado")
    async with office(tmp_path, files, sandbox) as o:
        figures = await compliance.stats(o.services.db)
    assert figures == {
        "total": 5,
        "by_status": {
            "PENDING": {"count": 1, "percent": 20.0},
            "VALIDATED": {"count": 2, "percent": 40.0},
            "RETRY": {"count": 1, "percent": 20.0},
            "FAILED": {"count": 1, "percent": 20.0},
            "FALLBACK": {"count": 0, "percent": 0.0},
        },
    }
