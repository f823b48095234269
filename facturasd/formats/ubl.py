"""Colombia: DIAN UBL 2.1 Invoice, CreditNote and DebitNote into the normalized document.

Pure: an element tree in, a Document out. Elements are found by namespace URI. Amounts are kept
as printed; the only arithmetic here is the sum of the document's TaxTotal amounts, done in
Decimal so it keeps the document's decimals.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from lxml import etree

from facturasd.errors import UnknownDocument
from facturasd.findings import phrase
from facturasd.formats.model import (
    Document,
    Evidence,
    FormatName,
    Kind,
    Line,
    Party,
    Payment,
    Reference,
    Tax,
    Totals,
    number,
)

UBL = "urn:oasis:names:specification:ubl:schema:xsd:"
CAC = f"{UBL}CommonAggregateComponents-2"
CBC = f"{UBL}CommonBasicComponents-2"


@dataclass(frozen=True)
class _Shape:
    """What differs between the three documents."""

    format: FormatName
    kind: Kind
    line: str
    quantity: str
    monetary_total: str


SHAPES = {
    f"{UBL}Invoice-2": _Shape(
        "dian-invoice", "invoice", "InvoiceLine", "InvoicedQuantity", "LegalMonetaryTotal"
    ),
    f"{UBL}CreditNote-2": _Shape(
        "dian-credit-note",
        "credit_note",
        "CreditNoteLine",
        "CreditedQuantity",
        "LegalMonetaryTotal",
    ),
    f"{UBL}DebitNote-2": _Shape(
        "dian-debit-note",
        "debit_note",
        "DebitNoteLine",
        "DebitedQuantity",
        "RequestedMonetaryTotal",
    ),
}
ENVIRONMENTS: dict[str, Literal["production", "test"]] = {"1": "production", "2": "test"}
SUPPORT_DOCUMENT = "05"


def cac_path(*names: str) -> str:
    return "/".join(f"{{{CAC}}}{name}" for name in names)


def text_at(element: etree._Element | None, path: str) -> str | None:
    """The stripped text at `path` ("cac:Party/cbc:ID" spelt with URIs), or None."""
    found = element.find(path) if element is not None else None
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def cbc_path(name: str, *parents: str) -> str:
    return "/".join([*(f"{{{CAC}}}{p}" for p in parents), f"{{{CBC}}}{name}"])


def is_ubl_document(root: etree._Element) -> bool:
    qname = etree.QName(root)
    namespace = qname.namespace or ""
    return namespace in SHAPES and qname.localname == namespace.removeprefix(UBL)[:-2]


def parse(root: etree._Element, evidence: Evidence | None = None) -> tuple[FormatName, Document]:
    """The document a DIAN Invoice, CreditNote or DebitNote element describes; `evidence` is
    DIAN's verdict when the document came in a container that carries one."""
    shape = SHAPES.get(etree.QName(root).namespace or "")
    if shape is None:
        raise UnknownDocument(phrase("not_dian_ubl", element=etree.QName(root).localname))
    kind = shape.kind
    if kind == "invoice" and text_at(root, cbc_path("InvoiceTypeCode")) == SUPPORT_DOCUMENT:
        kind = "support_document"
    date, time = text_at(root, cbc_path("IssueDate")), text_at(root, cbc_path("IssueTime"))
    uuid = text_at(root, cbc_path("UUID"))
    monetary = root.find(cac_path(shape.monetary_total))
    taxes = _tax_totals(root, "TaxTotal")
    withholdings = _tax_totals(root, "WithholdingTaxTotal")
    tax_totals = _amounts_by_code(root, "TaxTotal")
    withholding_totals = _amounts_by_code(root, "WithholdingTaxTotal")
    document = Document(
        country="CO",
        kind=kind,
        number=text_at(root, cbc_path("ID")),
        uuid=uuid.lower() if uuid else None,
        issued_at=f"{date}T{time}" if date and time else date,
        due_date=text_at(root, cbc_path("DueDate"))
        or text_at(root, cbc_path("PaymentDueDate", "PaymentMeans")),
        currency=text_at(root, cbc_path("DocumentCurrencyCode")),
        exchange_rate=text_at(root, cbc_path("CalculationRate", "PaymentExchangeRate")),
        environment=ENVIRONMENTS.get(text_at(root, cbc_path("ProfileExecutionID")) or ""),
        payment=Payment(
            method=text_at(root, cbc_path("ID", "PaymentMeans")),
            form=text_at(root, cbc_path("PaymentMeansCode", "PaymentMeans")),
        ),
        issuer=_party(root.find(cac_path("AccountingSupplierParty", "Party"))),
        receiver=_party(root.find(cac_path("AccountingCustomerParty", "Party"))),
        lines=[_line(line, shape) for line in root.iterfind(cac_path(shape.line))],
        taxes=taxes,
        withholdings=withholdings,
        totals=Totals(
            subtotal=text_at(monetary, cbc_path("LineExtensionAmount")),
            discount=text_at(monetary, cbc_path("AllowanceTotalAmount")),
            charges=text_at(monetary, cbc_path("ChargeTotalAmount")),
            prepaid=text_at(monetary, cbc_path("PrepaidAmount")),
            taxes=_sum(tax_totals.values()),
            withholdings=_sum(withholding_totals.values()),
            total=text_at(monetary, cbc_path("PayableAmount")),
            tax_exclusive=text_at(monetary, cbc_path("TaxExclusiveAmount")),
            tax_inclusive=text_at(monetary, cbc_path("TaxInclusiveAmount")),
            rounding=text_at(monetary, cbc_path("PayableRoundingAmount")),
            tax_totals=tax_totals,
            withholding_totals=withholding_totals,
        ),
        authority_evidence=evidence,
        references=[
            Reference(
                number=text_at(ref, cbc_path("ID")),
                uuid=(text_at(ref, cbc_path("UUID")) or "").lower() or None,
            )
            for ref in root.iterfind(cac_path("BillingReference", "InvoiceDocumentReference"))
        ],
    )
    return shape.format, document


STS = "dian:gov:co:facturaelectronica:Structures-2-1"
_CUFE = re.compile(r"\b[0-9a-fA-F]{96}\b")


def qr_cufes(root: etree._Element) -> set[str]:
    """The CUFEs the document's QR text names (as "CUFE: …" and in the search URL)."""
    return {
        match.lower()
        for qr in root.iter(f"{{{STS}}}QRCode")
        for match in _CUFE.findall(qr.text or "")
    }


_PRINTED_DV = re.compile(r"^([\d. ]+)-\s*(\d)$")


def _tax_id(value: str | None) -> str | None:
    """No dots, dashes or spaces; anything else is kept for the checks to judge."""
    if value is None:
        return None
    return "".join(ch for ch in value if ch not in ".- \t\n") or None


def _party(party: etree._Element | None) -> Party:
    if party is None:
        return Party()
    scheme = party.find(cac_path("PartyTaxScheme"))
    company = scheme.find(f"{{{CBC}}}CompanyID") if scheme is not None else None
    if company is None:
        company = party.find(cbc_path("CompanyID", "PartyLegalEntity"))
    level = scheme.find(f"{{{CBC}}}TaxLevelCode") if scheme is not None else None
    codes = (
        [c.strip() for c in (level.text or "").split(";") if c.strip()] if level is not None else []
    )
    address = party.find(cac_path("PartyTaxScheme", "RegistrationAddress"))
    if address is None:
        address = party.find(cac_path("PhysicalLocation", "Address"))
    regime = level.get("listName") if level is not None else None
    printed = (company.text or "").strip() if company is not None else ""
    tax_id = _tax_id(printed)
    check_digit = (company.get("schemeID") or "").strip() or None if company is not None else None
    if with_dv := _PRINTED_DV.match(printed):
        # "800.197.268-4": the number carries its check digit; schemeID, if any, still wins.
        tax_id, check_digit = _tax_id(with_dv.group(1)), check_digit or with_dv.group(2)
    return Party(
        tax_id=tax_id,
        check_digit=check_digit,
        id_type=(company.get("schemeName") or "").strip() or None if company is not None else None,
        name=text_at(scheme, cbc_path("RegistrationName"))
        or text_at(party, cbc_path("Name", "PartyName")),
        # listName carries the regime (48 IVA responsible, 49 not) in Anexo 1.8 files.
        regime=regime if regime and regime.isdigit() else None,
        tax_level_codes=codes,
        city=text_at(address, cbc_path("ID")) or text_at(address, cbc_path("CityName")),
        postal_code=text_at(address, cbc_path("PostalZone")),
    )


def _subtotals(parent: etree._Element) -> list[Tax]:
    taxes = []
    for subtotal in parent.iterfind(cac_path("TaxSubtotal")):
        category = subtotal.find(cac_path("TaxCategory"))
        taxes.append(
            Tax(
                code=text_at(category, cbc_path("ID", "TaxScheme")) or "",
                name=text_at(category, cbc_path("Name", "TaxScheme")),
                rate=text_at(category, cbc_path("Percent")),
                base=text_at(subtotal, cbc_path("TaxableAmount")),
                amount=text_at(subtotal, cbc_path("TaxAmount")),
            )
        )
    return taxes


def _tax_totals(parent: etree._Element, element: str) -> list[Tax]:
    return [tax for total in parent.iterfind(cac_path(element)) for tax in _subtotals(total)]


def _amounts_by_code(parent: etree._Element, element: str) -> dict[str, str]:
    """Each TaxTotal's TaxAmount under its scheme's code (that of its first subtotal); a
    scheme printed in two TaxTotals gets their sum."""
    found: dict[str, list[str]] = {}
    for total in parent.iterfind(cac_path(element)):
        code = text_at(total, cbc_path("ID", "TaxSubtotal", "TaxCategory", "TaxScheme")) or ""
        if (amount := text_at(total, cbc_path("TaxAmount"))) is not None:
            found.setdefault(code, []).append(amount)
    summed = {code: _sum(amounts) for code, amounts in found.items()}
    return {code: amount for code, amount in summed.items() if amount is not None}


def _sum(amounts: Iterable[str]) -> str | None:
    """Amounts added up in Decimal, keeping their decimals; one amount as printed; None if
    there are none, or if one is not a plain number (the checks report the printed ones)."""
    printed = list(amounts)
    if len(printed) <= 1:
        return printed[0] if printed else None
    numbers = [number(a) for a in printed]
    if any(n is None for n in numbers):
        return None
    return str(sum((n for n in numbers if n is not None), Decimal(0)))


def _line(line: etree._Element, shape: _Shape) -> Line:
    return Line(
        description=text_at(line, cbc_path("Description", "Item")),
        quantity=text_at(line, cbc_path(shape.quantity)),
        unit_price=text_at(line, cbc_path("PriceAmount", "Price")),
        amount=text_at(line, cbc_path("LineExtensionAmount")),
        taxes=_tax_totals(line, "TaxTotal"),
        withholdings=_tax_totals(line, "WithholdingTaxTotal"),
    )
