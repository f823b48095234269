"""The document behind a PDF that came alone, as an office notices it: the PDF read into a
real ledger, the authorities' pool asking the sandbox's DIAN (GetXmlByDocumentKey, signed as
GetStatus is) or SAT over real HTTP, the XML DIAN gives taken and checked as if dropped in the
inbox, and the PDF linked to it."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from facturasd.constants import DATABASE_FILE, ComplianceStatus, InvoiceState, QueueName
from facturasd.sandbox.alongside import Alongside
from facturasd.sandbox.server import load_documents
from facturasd.sandbox.state import DianRecord, Sandbox, SatRecord
from facturasd.store.db import Database
from tests import wsse
from tests.documents import CUSTOMER_NIT, SUPPLIER_NIT
from tests.office import Office, office
from tests.pdfs import text_pdf
from tests.support import REPO, cufe, invoice, take, write_config
from tests.test_confirm import certificate
from tests.test_listings import cli

# Each test parses its files in a worker process and runs the authorities' pool: slow tier.
pytestmark = [pytest.mark.anyio, pytest.mark.slow]

S, C = InvoiceState, ComplianceStatus
FV7 = REPO.parent / "shared" / "samples" / "dian" / "siigo-blindacces-FV7.xml"


def colombian_pdf(cufe: str, *, issuer: str = SUPPLIER_NIT) -> bytes:
    """A supplier's printed invoice naming its CUFE, without its XML."""
    return text_pdf(
        [
            f"PROVEEDOR S.A.S.  NIT {issuer}-1",
            "Factura electronica de venta No. SETP990000007",
            "Fecha de emision: 2026-04-27",
            f"Cliente: RG GLASS S.A.S.  NIT {CUSTOMER_NIT}-1",
            f"CUFE: {cufe}",
            "Total a pagar: $ 2.394.600,00",
        ]
    )


async def take_what_came(o: Office) -> None:
    """The files the authorities' pool put in the inbox, taken and checked (the local pool's
    work, done here), then what they start upstream."""
    await o.take({})


@pytest.mark.parametrize("sample", [False, True], ids=["generated", "shared-sample"])
async def test_a_pdf_alone_gets_its_xml_from_dian_and_becomes_its_printed_copy(
    tmp_path: Path, sample: bool
) -> None:
    """DIAN knows the CUFE the PDF carries: the XML it gives is taken from the inbox like any
    file, read, checked and confirmed, and the PDF ends LINKED to it."""
    trusted = wsse.authority("CA de la empresa")
    sandbox = Sandbox(dian_trust=[trusted.certificate])
    if sample:
        await anyio.to_thread.run_sync(load_documents, sandbox, FV7.parent)
        [(key, record)] = [(k, r) for k, r in sandbox.dian.items() if r.number == "FV7"]
        the_cufe, xml = key, FV7.read_bytes()
        assert record.xml == xml
    else:
        the_cufe, xml = cufe(7), invoice(7)
        sandbox.dian[the_cufe] = DianRecord(the_cufe, "SETP990000007", xml=xml)
    pdf = colombian_pdf(the_cufe.upper())
    async with office(tmp_path, {"factura.pdf": pdf}, sandbox, certificate(tmp_path, trusted)) as o:
        assert sandbox.stats()["dian"]["by_outcome"]["xml"] == 1
        await take_what_came(o)
        fetched = f"dian-{the_cufe}.xml"
        xml_invoice = await o.invoice(fetched)
        assert xml_invoice.format != "pdf" and xml_invoice.uuid == the_cufe
        assert xml_invoice.state is S.CHECKED
        assert xml_invoice.inbox_path == f".dian/{fetched}"
        # Taken as DIAN gave it, and out of the inbox.
        assert await anyio.Path(xml_invoice.path).read_bytes() == xml
        fetched_dir = anyio.Path(o.services.config.paths.inbox / ".dian")
        assert [path async for path in fetched_dir.iterdir()] == []
        if not sample:  # (the sample's own evidence settles it without asking)
            assert await o.status(fetched) is C.VALIDATED
        pdf_invoice = await o.invoice("factura.pdf")
        assert (pdf_invoice.state, pdf_invoice.related_to) == (S.LINKED, xml_invoice.id)
        [attempt] = await o.attempts("factura.pdf")
        assert (attempt.authority, attempt.outcome, attempt.status) == ("dian", "valid", "found")
        history = await o.history("factura.pdf")
        assert f"its XML fetched from DIAN by its CUFE, taken as .dian/{fetched}" in history
        assert history[-1] == f"the printed copy of invoice #{xml_invoice.id}"


async def test_a_cufe_dian_does_not_have_leaves_the_pdf_in_review_saying_so(
    tmp_path: Path,
) -> None:
    """Not found: the attempt and the reason on the PDF, asked again later on the not-found
    schedule; nothing dropped in the inbox."""
    trusted = wsse.authority()
    sandbox = Sandbox(dian_trust=[trusted.certificate])
    pdf = colombian_pdf(cufe(9))
    async with office(tmp_path, {"factura.pdf": pdf}, sandbox, certificate(tmp_path, trusted)) as o:
        assert sandbox.stats()["dian"]["by_outcome"] == {"xml_not_found": 1}
        found = await o.invoice("factura.pdf")
        assert found.state is S.NEEDS_REVIEW
        [attempt] = await o.attempts("factura.pdf")
        assert (attempt.outcome, attempt.status) == ("not_found", "not found")
        assert "DIAN does not have the XML of its CUFE" in (await o.history("factura.pdf"))[-1]
        job = await o.job("factura.pdf", "printed")
        assert job is not None and job["queue"] == QueueName.COMPLIANCE_RETRY
        assert job["run_at"] > o.clock().timestamp()
        assert not await anyio.Path(o.services.config.paths.inbox / ".dian").exists()


async def test_without_a_dian_certificate_nothing_is_asked(tmp_path: Path) -> None:
    sandbox = Sandbox(dian={cufe(7): DianRecord(cufe(7), xml=invoice(7))})
    async with office(tmp_path, {"factura.pdf": colombian_pdf(cufe(7))}, sandbox) as o:
        assert (await o.invoice("factura.pdf")).state is S.NEEDS_REVIEW
        assert o.requests("dian") == 0
        assert await o.attempts("factura.pdf") == []


async def test_a_mexican_pdf_gets_sats_status_beside_it_and_stays_in_review(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SAT does not give the XML: its word on the CFDI the PDF names is recorded and shown,
    and a person must still get the XML."""
    uuid = "04BF2854-FE7D-4377-9196-71248F060ABB"
    sandbox = Sandbox(
        sat={uuid: SatRecord(uuid, "CSM190311AH6", "MCI7306249Y1", Decimal("459.36"))}
    )
    pdf = text_pdf(
        [
            "Emisor: CSM190311AH6   Receptor: MCI7306249Y1",
            f"Folio fiscal: {uuid}",
            "Total: 459.36",
        ]
    )
    async with office(tmp_path, {"cfdi.pdf": pdf}, sandbox) as o:
        found = await o.invoice("cfdi.pdf")
        assert (found.state, found.compliance) == (S.NEEDS_REVIEW, C.PENDING)
        [attempt] = await o.attempts("cfdi.pdf")
        assert (attempt.authority, attempt.outcome, attempt.status) == ("sat", "valid", "Vigente")
        assert "SAT says Vigente" in (await o.history("cfdi.pdf"))[-1]
        invoice_id = found.id
    config = str(tmp_path / "facturasd.toml")
    code, shown, _ = await anyio.to_thread.run_sync(
        lambda: cli(capsys, "invoices", "show", str(invoice_id), "--config", config)
    )
    assert code == 0
    assert "SAT en línea: válida Vigente (S - Comprobante obtenido satisfactoriamente.)" in shown
    assert "en revisión (pendiente)" in shown


async def test_the_sandbox_beside_the_daemon_gives_the_xml_the_ledger_archived(
    tmp_path: Path,
) -> None:
    """`run --sandbox`: DIAN learns a CUFE from the daemon's ledger, and gives the XML file
    archived for it, never the PDF that only names it."""
    config_file = write_config(tmp_path)
    files = {"factura.pdf": colombian_pdf(cufe(5)), "factura.xml": invoice(5)}
    config = await anyio.to_thread.run_sync(take, config_file, files)
    db = await Database.open(config.paths.state_dir / DATABASE_FILE, upgrade=False)
    try:
        local = Alongside(config, Sandbox(), {})
        local.read_from(db)
        await local.sandbox.recall(cufe(5).upper())
        assert local.sandbox.dian[cufe(5)].xml == invoice(5)
        await local.sandbox.recall(cufe(6))
        assert cufe(6) not in local.sandbox.dian
    finally:
        await db.close()
