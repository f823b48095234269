"""Identity: the tax ids of issuer and receiver, and whose document this is.

A NIT's check digit and an RFC's shape and check digit are computed by python-stdnum. With
companies configured, the receiver must be one of them; an issuer that is one of them makes the
document a sale of its own.

Some real RFCs fail the check-digit formula (Banco Santander México's BSM970519DU8, AXA
Seguros' ASE931116231): the finding is only a note, dropped once SAT confirms the CFDI
(`known_to_sat`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from stdnum.co import nit
from stdnum.exceptions import ValidationError
from stdnum.mx import rfc

from facturasd.checks.base import Findings, fold
from facturasd.checks.company import Company
from facturasd.checks.rules import Rules
from facturasd.formats.model import Document, FormatName, Inspection, Party

NIT_TYPE = "31"
RFC_CHECK_DIGIT = "MX-RFC-CHECK-DIGIT"
_NIT = re.compile(r"^\d{3,15}$")
_PRINTED_NIT = re.compile(r"^(\d+)-\d$")


def tax_id(value: str) -> str:
    """A tax id as the normalized document prints it: upper case, no dots, spaces or dashes,
    without a NIT's printed check digit ("901.944.237-8" -> "901944237")."""
    compact = "".join(ch for ch in value.upper() if ch not in ". \t")
    if printed := _PRINTED_NIT.match(compact):
        return printed.group(1)
    return compact.replace("-", "")


def check(
    doc: Document,
    fmt: FormatName | None,
    companies: Sequence[Company],
    rules: Rules,
    out: Findings,
) -> Company | None:
    """Judge both tax ids; return the configured company that bought what the document
    sells (None: no companies, or none of them is the receiver)."""
    for role in ("issuer", "receiver"):
        party: Party = getattr(doc, role)
        if doc.country == "CO":
            _nit(party, role, out)
        else:
            _rfc(party, role, rules, out)
    seller = company_for(doc.country, doc.issuer, companies)
    buyer = company_for(doc.country, doc.receiver, companies)
    receiver_rfc = doc.receiver.tax_id or ""
    if doc.country == "MX" and receiver_rfc in rules.mx.generic.rfcs and seller is None:
        # Addressed to the public in general: not the company's to deduct. (A company's own
        # sale to the public, a factura global, is fine.)
        out.add("MX-GENERIC-RECEIVER", "receiver.tax_id", value=receiver_rfc)
    if not companies:
        return None  # the shipped default: one implicit company, the receiver is not judged
    if buyer is None and seller is not None:
        out.add("DOC-OWN-SALE", "issuer.tax_id", tax_id=doc.issuer.tax_id, company=seller.slug)
    elif buyer is None:
        out.add("DOC-RECEIVER-NOT-COMPANY", "receiver.tax_id", tax_id=doc.receiver.tax_id or "—")
    elif fmt == "cfdi-4.0":
        # Bought by a company (from outside, or from another configured company).
        _cfdi40_receiver(doc.receiver, buyer, out)
    return buyer


def _nit(party: Party, role: str, out: Findings) -> None:
    if party.tax_id is None:
        out.add("DOC-MISSING-TAX-ID", f"{role}.tax_id")
        return
    if party.id_type not in (NIT_TYPE, None):
        return  # a cédula, passport or foreign id: no check digit to verify
    if not _NIT.match(party.tax_id):
        out.add("CO-BAD-NIT", f"{role}.tax_id", value=party.tax_id)
        return
    expected = nit.calc_check_digit(party.tax_id)
    if party.check_digit != expected and (party.id_type or party.check_digit):
        out.add(
            "CO-NIT-CHECK-DIGIT",
            f"{role}.check_digit",
            tax_id=party.tax_id,
            expected=expected,
            printed=party.check_digit or "—",
        )


def _rfc(party: Party, role: str, rules: Rules, out: Findings) -> None:
    value = party.tax_id
    if value is None:
        out.add("DOC-MISSING-TAX-ID", f"{role}.tax_id")
        return
    try:
        rfc.validate(value, validate_check_digits=True)
        return
    except ValidationError:
        pass
    try:
        rfc.validate(value, validate_check_digits=False)
    except ValidationError:
        out.add("MX-BAD-RFC", f"{role}.tax_id", value=value)
        return
    if value not in rules.mx.generic.rfcs:  # generic RFCs carry no real check digit
        out.add(RFC_CHECK_DIGIT, f"{role}.tax_id", value=value)


def known_to_sat(inspection: Inspection) -> Inspection:
    """`inspection` once SAT has answered Vigente for its CFDI: SAT's query names the issuer's
    and the receiver's RFC, so both are real whatever their check digit says, and the
    check-digit notes about them are dropped (graded again). The same object when it has
    none."""
    doc = inspection.document
    if doc is None:
        return inspection
    asked = {doc.issuer.tax_id, doc.receiver.tax_id}
    kept = [
        item
        for item in inspection.findings
        if not (item.code == RFC_CHECK_DIGIT and item.params.get("value") in asked)
    ]
    if len(kept) == len(inspection.findings):
        return inspection
    return inspection.rejudged(findings=kept)


def company_for(country: str, party: Party, companies: Sequence[Company]) -> Company | None:
    """The configured company this party is (by country and tax id), if any."""
    if party.tax_id is None:
        return None
    wanted = tax_id(party.tax_id)
    return next((c for c in companies if c.country == country and tax_id(c.tax_id) == wanted), None)


def _cfdi40_receiver(receiver: Party, company: Company, out: Findings) -> None:
    """CFDI 4.0: the receiver's name, regime and postal code are those of the company's tax
    certificate, or the CFDI is not deductible. Names compare without case, accents or extra
    spaces (the certificate's spelling is what SAT checks when stamping)."""
    for field, printed, expected in (
        ("name", receiver.name, company.name),
        ("regime", receiver.regime, company.regime),
        ("postal_code", receiver.postal_code, company.postal_code),
    ):
        if not expected:
            continue  # not configured: nothing to compare with
        if fold(printed or "") != fold(expected):
            out.add(
                "MX-RECEIVER-MISMATCH",
                f"receiver.{field}",
                field={"name": "Nombre", "regime": "RegimenFiscalReceptor"}.get(
                    field, "DomicilioFiscalReceptor"
                ),
                printed=printed or "",
                expected=expected,
            )
