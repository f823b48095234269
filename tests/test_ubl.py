"""DIAN UBL 2.1 and its AttachedDocument: the real samples, read by hand, and generated files."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

import pytest

from facturasd.errors import FormatError
from facturasd.formats import container, ubl
from facturasd.formats.model import Document
from facturasd.formats.safexml import parse
from tests.support import REPO

SAMPLES = REPO.parent / "shared" / "samples" / "dian"


@dataclass
class Expected:
    """Values read from each file with a text editor, not from the parser."""

    format: str
    kind: str
    number: str
    uuid_start: str
    issuer: tuple[str, str]  # NIT, check digit as printed
    receiver: str
    subtotal: str
    total: str
    taxes: list[tuple[str, str, str]]  # code, rate, amount
    withholdings: list[tuple[str, str, str]] = field(default_factory=list)
    references: list[str] = field(default_factory=list)


EXPECTED = {
    "siigo-blindacces-FV3.xml": Expected(
        "dian-invoice",
        "invoice",
        "FV3",
        "a86a26376af6b9ba",
        ("901944237", "8"),
        "901956924",
        "17700000.00",
        "21063000.00",
        [("01", "19.00", "3363000")],
    ),
    "siigo-blindacces-FV7.xml": Expected(
        "dian-invoice",
        "invoice",
        "FV7",
        "5f7378ecb3f8e03c",
        ("901944237", "8"),
        "901956924",
        "17130000.00",
        "20384700.00",
        [("01", "19.00", "3254700")],
        [("06", "2.50", "428250.00"), ("07", "1.104", "189115.20")],
    ),
    "siigo-blindacces-NC3.xml": Expected(
        "dian-credit-note",
        "credit_note",
        "NC23",
        "894c6f74bf152edf",
        ("901944237", "8"),
        "901956924",
        "17130000.00",
        "20384700.00",
        [("01", "19.00", "3254700")],
        references=[
            "bfe612c227d0995bf2c924718b3059880baf8b16d4042ad69c4d5f4f6420a6931d8a7ed00a66e196fdd24dd08cffb877"
        ],
    ),
    "volt-attached-document.xml": Expected(
        "dian-invoice",
        "invoice",
        "NC424",
        "e79f0bd45e5c0494",
        ("3141592654", "1"),
        "161803398875",
        "1065000.00",
        "1065000.00",
        [("01", "0.00", "0.00")],
    ),
}


def open_sample(name: str) -> tuple[container.Attached, str, Document]:
    attached = container.open_attached(parse((SAMPLES / name).read_bytes()))
    fmt, doc = ubl.parse(attached.inner)
    return attached, fmt, doc


def test_every_dian_sample_is_covered() -> None:
    assert {p.name for p in SAMPLES.glob("*.xml")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_key_values(name: str) -> None:
    want = EXPECTED[name]
    attached, fmt, doc = open_sample(name)
    assert (fmt, doc.country, doc.kind, doc.number) == (want.format, "CO", want.kind, want.number)
    assert doc.uuid is not None and len(doc.uuid) == 96 and doc.uuid.startswith(want.uuid_start)
    assert (doc.issuer.tax_id, doc.issuer.check_digit, doc.issuer.id_type) == (*want.issuer, "31")
    assert doc.receiver.tax_id == want.receiver
    assert (doc.currency, doc.environment) == ("COP", "production")
    assert (doc.totals.subtotal, doc.totals.total) == (want.subtotal, want.total)
    assert [(t.code, t.rate, t.amount) for t in doc.taxes] == want.taxes
    assert [(t.code, t.rate, t.amount) for t in doc.withholdings] == want.withholdings
    assert [r.uuid for r in doc.references] == want.references
    assert len(doc.lines) == 1
    # DIAN's verdict travels with the document, about the same CUFE
    assert attached.evidence is not None
    assert (attached.evidence.source, attached.evidence.code) == ("embedded", "02")
    assert attached.evidence.description == "Documento validado por la DIAN"
    assert attached.response_uuid == doc.uuid == attached.container_uuid


def test_fv7_withholdings_are_not_subtracted_from_the_payable_amount() -> None:
    _, _, doc = open_sample("siigo-blindacces-FV7.xml")
    assert doc.totals.withholdings == "617365.20"  # 428,250.00 + 189,115.20
    assert (doc.totals.tax_exclusive, doc.totals.tax_inclusive) == ("17130000.00", "20384700.00")
    assert doc.totals.total == "20384700.00"
    assert doc.issued_at == "2026-04-27T10:39:00-05:00"
    assert doc.issuer.tax_level_codes == ["R-99-PN"]
    assert (doc.issuer.city, doc.issuer.name) == ("11001", "BLINDACCES SAS")


def test_dian_notes_are_kept_as_notes() -> None:
    attached, _, _ = open_sample("siigo-blindacces-FV3.xml")
    assert attached.evidence is not None
    assert any(note.startswith("FAJ43b") for note in attached.evidence.notes)
    assert attached.evidence.at == "2026-03-17T18:06:49-05:00"


# ── generated documents ───────────────────────────────────────────────────────────────────

NS = (
    'xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2" '
    'xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"'
)
CUFE = "ab" * 48


def make_ubl(root: str = "Invoice", *, type_code: str = "01", total: str = "119000.00") -> str:
    monetary = "RequestedMonetaryTotal" if root == "DebitNote" else "LegalMonetaryTotal"
    line = {"Invoice": "InvoiceLine", "CreditNote": "CreditNoteLine", "DebitNote": "DebitNoteLine"}
    quantity = {
        "Invoice": "InvoicedQuantity",
        "CreditNote": "CreditedQuantity",
        "DebitNote": "DebitedQuantity",
    }
    type_element = (
        f"<cbc:InvoiceTypeCode>{type_code}</cbc:InvoiceTypeCode>" if root == "Invoice" else ""
    )
    party = (
        "<cac:Party><cac:PartyTaxScheme><cbc:RegistrationName>{name}</cbc:RegistrationName>"
        '<cbc:CompanyID schemeID="{dv}" schemeName="31">{nit}</cbc:CompanyID>'
        "<cbc:TaxLevelCode>O-13;O-15</cbc:TaxLevelCode></cac:PartyTaxScheme></cac:Party>"
    )
    return (
        f'<{root} xmlns="urn:oasis:names:specification:ubl:schema:xsd:{root}-2" {NS}>'
        "<cbc:ProfileExecutionID>2</cbc:ProfileExecutionID><cbc:ID>SETP990000001</cbc:ID>"
        f'<cbc:UUID schemeName="CUFE-SHA384">{CUFE.upper()}</cbc:UUID>'
        "<cbc:IssueDate>2026-11-02</cbc:IssueDate><cbc:IssueTime>09:00:00-05:00</cbc:IssueTime>"
        f"{type_element}<cbc:DocumentCurrencyCode>COP</cbc:DocumentCurrencyCode>"
        "<cac:AccountingSupplierParty>"
        + party.format(name="Ñoño Ltda", dv="4", nit="800.197.268")
        + "</cac:AccountingSupplierParty><cac:AccountingCustomerParty>"
        + party.format(name="Compradora SAS", dv="8", nit="901944237")
        + "</cac:AccountingCustomerParty>"
        '<cac:TaxTotal><cbc:TaxAmount currencyID="COP">19000.00</cbc:TaxAmount><cac:TaxSubtotal>'
        '<cbc:TaxableAmount currencyID="COP">100000.00</cbc:TaxableAmount>'
        '<cbc:TaxAmount currencyID="COP">19000.00</cbc:TaxAmount><cac:TaxCategory>'
        "<cbc:Percent>19.00</cbc:Percent><cac:TaxScheme><cbc:ID>01</cbc:ID><cbc:Name>IVA</cbc:Name>"
        "</cac:TaxScheme></cac:TaxCategory></cac:TaxSubtotal></cac:TaxTotal>"
        f"<cac:{monetary}><cbc:LineExtensionAmount>100000.00</cbc:LineExtensionAmount>"
        f"<cbc:PayableAmount>{total}</cbc:PayableAmount></cac:{monetary}>"
        f"<cac:{line[root]}><cbc:ID>1</cbc:ID><cbc:{quantity[root]}>2</cbc:{quantity[root]}>"
        "<cbc:LineExtensionAmount>100000.00</cbc:LineExtensionAmount>"
        "<cac:Item><cbc:Description>Cemento</cbc:Description></cac:Item>"
        f"<cac:Price><cbc:PriceAmount>50000.00</cbc:PriceAmount></cac:Price></cac:{line[root]}>"
        f"</{root}>"
    )


def attach(inner: str, *, escaped: bool = False, declaration: bool = True) -> bytes:
    body = ('<?xml version="1.0" encoding="UTF-8"?>' if declaration else "") + inner
    description = escape(body, quote=False) if escaped else f"\n   <![CDATA[{body}]]>\n"
    return (
        '<AttachedDocument xmlns="urn:oasis:names:specification:ubl:schema:xsd:AttachedDocument-2" '
        f"{NS}><cbc:ID>1</cbc:ID><cac:Attachment><cac:ExternalReference>"
        f"<cbc:MimeCode>text/xml</cbc:MimeCode><cbc:Description>{description}</cbc:Description>"
        "</cac:ExternalReference></cac:Attachment></AttachedDocument>"
    ).encode()


def test_bare_and_attached_give_the_same_document() -> None:
    inner = make_ubl()
    bare = ubl.parse(parse(inner.encode()))
    for data in (
        attach(inner),
        attach(inner, escaped=True),
        attach(inner, declaration=False),
        attach(inner, escaped=True, declaration=False),
    ):
        assert ubl.parse(container.open_attached(parse(data)).inner) == bare
    fmt, doc = bare
    assert (fmt, doc.kind, doc.environment, doc.uuid) == ("dian-invoice", "invoice", "test", CUFE)
    assert (doc.issuer.tax_id, doc.issuer.check_digit, doc.issuer.name) == (
        "800197268",
        "4",
        "Ñoño Ltda",
    )
    assert doc.receiver.tax_level_codes == ["O-13", "O-15"]
    [line] = doc.lines
    assert (line.quantity, line.unit_price, line.amount) == ("2", "50000.00", "100000.00")


@pytest.mark.parametrize(
    ("root", "type_code", "fmt", "kind"),
    [
        ("Invoice", "05", "dian-invoice", "support_document"),
        ("CreditNote", "01", "dian-credit-note", "credit_note"),
        ("DebitNote", "01", "dian-debit-note", "debit_note"),
    ],
)
def test_each_document_type(root: str, type_code: str, fmt: str, kind: str) -> None:
    got_fmt, doc = ubl.parse(parse(make_ubl(root, type_code=type_code, total="119000").encode()))
    assert (got_fmt, doc.kind) == (fmt, kind)
    assert doc.totals.total == "119000"  # RequestedMonetaryTotal on debit notes, as printed
    assert doc.lines[0].quantity == "2"


def test_an_empty_container_is_refused_with_a_code() -> None:
    with pytest.raises(FormatError) as caught:
        container.open_attached(parse(attach("   ", declaration=False)))
    assert caught.value.code == "FMT-UNKNOWN-DOCUMENT"
