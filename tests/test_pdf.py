"""PDF invoices: embedded XML is read as the document; a PDF alone gives only what it states."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from facturasd.formats.model import Document
from facturasd.formats.reader import read
from tests.pdfs import text_pdf, with_attachments
from tests.support import REPO, take, write_config
from tests.test_inspect import FV7, PDF, zipped
from tests.test_listings import cli

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


def test_inspect_shows_no_sum_a_pdf_did_not_print(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The total is printed; the taxes and withholdings are not read from the text: unknown,
    # not zero.
    pdf = tmp_path / "cfdi.pdf"
    pdf.write_bytes(text_pdf(["Emisor: CSM190311AH6", "Total: 459.36"]))
    _, shown, _ = cli(capsys, "inspect", str(pdf))
    assert "  total 459.36 ; impuestos —; retenciones —" in shown.splitlines(), shown


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


# What real supplier PDFs print around their values: each trap below once gave a wrong value.
# The FV7 sample's own values, printed as its PDF would print them.
FV7_HEAD = [
    "Representacion grafica - Elaborado por Facturatech NIT 901143311-1 proveedor tecnologico",
    "BLINDACCES SAS",
    "NIT 901.944.237-8",
    "Direccion: Calle 21 No. 5-30, Bogota",
    "Autorizacion de numeracion No. 18760000001 vigente desde 2024-01-15 hasta 2026-01-15",
    "FACTURA ELECTRONICA DE VENTA",
    "No. FV7",
    "Fecha y hora de expedicion: 27/04/2026 10:31:05",
    "Cliente: RG GLASS S.A.S.",
    "NIT 901956924-1",
]


def partial(lines: list[str]) -> Document:
    [item] = read(text_pdf(lines), "factura.pdf")
    assert item.format == "pdf" and item.document is not None
    return item.document


def test_a_pdf_printed_with_every_trap_reads_what_its_xml_says() -> None:
    doc = partial(
        [
            *FV7_HEAD,
            "Total 20.384.700,00",
            "Copago 0,00",
            "Total a pagar: $ 20.384.700,00",
            f"CUFE: {CUFE}",
            "Software: Facturatech",
            "NIT 901143311-1",
        ]
    )
    xml = read(FV7.read_bytes(), "fv7.xml")[0].document
    assert xml is not None and xml.issued_at is not None
    assert (doc.number, doc.uuid, doc.issued_at) == (xml.number, xml.uuid, xml.issued_at[:10])
    assert (doc.issuer.tax_id, doc.issuer.check_digit) == (xml.issuer.tax_id, "8")
    assert (doc.receiver.tax_id, doc.receiver.check_digit) == ("901956924", "1")
    assert doc.totals.total == "20384700.00"
    assert doc.read_from == {
        "uuid": f"CUFE: {CUFE}",
        "number": "FACTURA ELECTRONICA DE VENTA / No. FV7",
        "issued_at": "Fecha y hora de expedicion: 27/04/2026 10:31:05",
        "issuer.tax_id": "NIT 901.944.237-8",
        "receiver.tax_id": "NIT 901956924-1",
        "totals.total": "Total a pagar: $ 20.384.700,00",
    }


def test_the_software_providers_nit_is_nobodys() -> None:
    footer = "Factura generada por Facturatech NIT 901143311-1"
    # The footer first, as the text layer gave it, and no label on the other NIT: the
    # issuer's only; the receiver unknown rather than the issuer's NIT again.
    doc = partial([footer, "CLINICA DEL SOL SAS NIT 900.123.456-7", f"CUFE {CUFE}"])
    assert (doc.issuer.tax_id, doc.receiver.tax_id) == ("900123456", None)
    # Only the provider's NIT: neither party.
    doc = partial([f"CUFE {CUFE}", footer])
    assert (doc.country, doc.issuer.tax_id, doc.receiver.tax_id) == ("CO", None, None)


def test_the_issuer_and_receiver_side_by_side() -> None:
    doc = partial(["ACME SAS NIT 900123456-7   Cliente: RG GLASS NIT 901956924-1"])
    assert (doc.issuer.tax_id, doc.receiver.tax_id) == ("900123456", "901956924")
    # Both blocks' labels before either's NIT: whose is which is not known.
    doc = partial(["Emisor        Adquiriente", "NIT 900123456-7   NIT 901956924-1"])
    assert (doc.issuer.tax_id, doc.receiver.tax_id) == (None, None)


@pytest.mark.parametrize("label", ["Total a pagar", "Neto a pagar", "Valor a pagar"])
def test_the_amount_payable_before_the_total_above_a_copayment(label: str) -> None:
    doc = partial(
        [
            "IPS SALUD SAS NIT 900123456-7",
            "Total 1.200.000,00",
            "Copago 50.000,00",
            f"{label}: 1.150.000,00",
        ]
    )
    assert doc.totals.total == "1150000.00"


def test_a_total_above_a_copayment_with_no_amount_payable_is_not_read() -> None:
    doc = partial(["IPS SALUD SAS NIT 900123456-7", "Total 1.200.000,00", "Cuota moderadora 4.500"])
    assert doc.totals.total is None and "totals.total" not in doc.read_from


def test_no_number_from_an_address_or_the_numbering_authorization() -> None:
    doc = partial(
        [
            "ACME SAS NIT 900123456-7",
            "Direccion: Calle 21 No. 5-30",
            "Calle 21 # 4-50",
            "Autorizacion de numeracion No. 18760000001",
            "Resolucion de facturacion electronica de venta No. 18764000001234",
            "Factura electronica de venta",
        ]
    )
    assert doc.number is None


def test_no_issue_date_from_the_authorizations_validity() -> None:
    authorization = (
        "Autorizacion No. 18760000001 del 2024-01-15, vigencia 24 meses hasta 2026-01-15"
    )
    assert partial(["ACME SAS NIT 900123456-7", authorization]).issued_at is None
    doc = partial(["ACME SAS NIT 900123456-7", authorization, "Fecha de generacion: 2026-04-27"])
    assert doc.issued_at == "2026-04-27"
    # Emission comes before generation when both are printed.
    doc = partial(
        ["NIT 900123456-7", "Fecha de generacion: 2026-04-28", "Fecha de emision: 2026-04-27"]
    )
    assert doc.issued_at == "2026-04-27"


@pytest.mark.parametrize(
    "dash", ["\u2010", "\u2011", "\u2012", "\u2013", "\u2014", "\u2015", "\u2212", "\ufe58"]
)
def test_a_uuid_printed_with_unicode_dashes(dash: str) -> None:
    printed = "04BF2854-FE7D-4377-9196-71248F060ABB".replace("-", dash)
    doc = partial(["Emisor: CSM190311AH6", f"Folio fiscal: {printed}", "Total: $1,000.00"])
    assert (doc.country, doc.uuid) == ("MX", "04bf2854-fe7d-4377-9196-71248f060abb")
    assert doc.totals.total == "1000.00"


@pytest.mark.parametrize(
    ("country_id", "printed", "amount"),
    [
        ("NIT 900123456-7", "6.355.700,00", "6355700.00"),
        ("NIT 900123456-7", "6,355,700.00", "6355700.00"),
        ("NIT 900123456-7", "1.000", "1000"),
        ("NIT 900123456-7", "1,000", "1.000"),  # Colombia's decimal comma
        ("NIT 900123456-7", "459,5", "459.5"),
        ("RFC CSM190311AH6", "1,000.00", "1000.00"),
        ("RFC CSM190311AH6", "1,000", "1000"),
        ("RFC CSM190311AH6", "1.000", "1.000"),  # Mexico's decimal point
        ("RFC CSM190311AH6", "459.36", "459.36"),
        ("RFC CSM190311AH6", "12,34,567.00", None),  # no country groups so
        ("RFC CSM190311AH6", "1.000,000.00", None),
        ("NIT 900123456-7", "1 000,00", None),  # not "1"
    ],
)
def test_amounts_are_read_by_the_countrys_convention(
    country_id: str, printed: str, amount: str | None
) -> None:
    assert partial([country_id, f"Total a pagar {printed}"]).totals.total == amount


def test_two_values_under_one_label_leave_it_empty() -> None:
    doc = partial(["NIT 900123456-7", "Total a pagar 100,00", "Total a pagar 200,00"])
    assert doc.totals.total is None


@pytest.mark.slow
def test_invoices_show_prints_the_text_each_value_was_read_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = write_config(tmp_path)
    lines = [*FV7_HEAD, "Total a pagar: $ 20.384.700,00", f"CUFE: {CUFE}"]
    take(config_file, {"fv7.pdf": text_pdf(lines)})
    shown = cli(capsys, "invoices", "show", "1", "--config", str(config_file))[1]
    read_from = shown.split("  leído del texto del PDF:\n")[1].splitlines()
    assert read_from[:6] == [
        f"    uuid: «CUFE: {CUFE}»",
        "    number: «FACTURA ELECTRONICA DE VENTA / No. FV7»",
        "    issued_at: «Fecha y hora de expedicion: 27/04/2026 10:31:05»",
        "    issuer.tax_id: «NIT 901.944.237-8»",
        "    receiver.tax_id: «NIT 901956924-1»",
        "    totals.total: «Total a pagar: $ 20.384.700,00»",
    ]
    as_json = json.loads(
        cli(capsys, "invoices", "show", "1", "--json", "--config", str(config_file))[1]
    )
    document = as_json["inspection"]["document"]
    assert document["read_from"]["number"] == "FACTURA ELECTRONICA DE VENTA / No. FV7"
    assert (as_json["number"], as_json["total"]) == ("FV7", "20384700.00")
