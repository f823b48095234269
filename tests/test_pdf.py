"""PDF invoices: embedded XML is read as the document; a PDF alone gives only what it states."""

from __future__ import annotations

import zipfile

from facturasd.formats.reader import read
from tests.pdfs import text_pdf, with_attachments
from tests.support import REPO
from tests.test_inspect import FV7, PDF, zipped

CFDI40 = REPO.parent / "shared" / "samples" / "cfdi" / "cfdi-expresiones__cfdi40-real.xml"
CUFE = (
    "5f7378ecb3f8e03ca76ed07ea789a9bed99cb08ac604b7903be827a5"
    "5099fd268ed47fc1667a564f808cff967cfbdb0b"
)


def test_a_pdf_with_its_xml_embedded_is_read_through_the_xml() -> None:
    data = with_attachments(text_pdf(["Factura FV7"]), {"fv7.xml": FV7.read_bytes()})
    [item] = read(data, "fv7.pdf")
    assert (item.member, item.format, item.verdict) == ("fv7.xml", "dian-attached-document", "ok")
    assert item.document is not None and item.document.uuid == CUFE


def test_a_colombian_pdf_alone_gives_a_partial_document_for_review() -> None:
    data = text_pdf(
        [
            "BLINDACCES SAS  NIT 901.944.237-8",
            "Factura electronica de venta No. FV7",
            "Fecha de emision: 2026-04-27",
            "Cliente: RG GLASS S.A.S.  NIT 901956924-1",
            f"CUFE: {CUFE.upper()}",
            "Total a pagar: $ 20.384.700,00",
        ]
    )
    [item] = read(data, "fv7.pdf")
    assert (item.format, item.verdict) == ("pdf", "warnings")
    assert [(f.code, f.severity) for f in item.findings] == [("FMT-PDF-WITHOUT-XML", "warning")]
    doc = item.document
    assert doc is not None
    assert (doc.country, doc.kind, doc.number, doc.uuid) == ("CO", None, "FV7", CUFE)
    assert (doc.issuer.tax_id, doc.issuer.check_digit) == ("901944237", "8")
    assert (doc.receiver.tax_id, doc.receiver.check_digit) == ("901956924", "1")
    # the amount as a number, read in Colombia's convention (it was kept as printed before)
    assert (doc.issued_at, doc.totals.total) == ("2026-04-27", "20384700.00")
    assert doc.read_from["totals.total"] == "Total a pagar: $ 20.384.700,00"
    assert doc.read_from["issuer.tax_id"] == "BLINDACCES SAS NIT 901.944.237-8"
    # nothing the text does not say
    assert (doc.currency, doc.totals.subtotal, doc.taxes, doc.lines) == (None, None, [], [])


def test_a_mexican_pdf_alone() -> None:
    data = text_pdf(
        [
            "Emisor: CSM190311AH6   Receptor: MCI7306249Y1",
            "Folio fiscal: 04BF2854-FE7D-4377-9196-71248F060ABB",
            "Total: 459.36",
        ]
    )
    [item] = read(data, "cfdi.pdf")
    doc = item.document
    assert doc is not None
    assert (doc.country, doc.uuid) == ("MX", "04bf2854-fe7d-4377-9196-71248f060abb")
    assert (doc.issuer.tax_id, doc.receiver.tax_id, doc.issuer.id_type) == (
        "CSM190311AH6",
        "MCI7306249Y1",
        "rfc",
    )
    assert (doc.number, doc.totals.total) == (None, "459.36")


def test_pdfs_that_are_no_invoice_or_no_pdf_at_all() -> None:
    [letter] = read(text_pdf(["Querido cliente, gracias por su compra."]), "carta.pdf")
    assert [f.code for f in letter.findings] == ["FMT-UNKNOWN-DOCUMENT"]
    [broken] = read(PDF, "roto.pdf")
    assert [f.code for f in broken.findings] == ["FMT-BAD-PDF"]


def test_a_zip_with_only_the_pdf_reads_the_pdf() -> None:
    data = zipped(
        {"factura.pdf": text_pdf([f"CUFE {CUFE}", "NIT 901944237-8"])}, zipfile.ZIP_DEFLATED
    )
    [item] = read(data, "solo-pdf.zip")
    assert (item.member, item.format) == ("factura.pdf", "pdf")
    assert item.document is not None and item.document.uuid == CUFE


def test_a_cfdi_embedded_in_a_pdf() -> None:
    data = with_attachments(text_pdf(["CFDI"]), {"cfdi.xml": CFDI40.read_bytes()})
    [item] = read(data, "cfdi.pdf")
    assert (item.format, item.member) == ("cfdi-4.0", "cfdi.xml")
