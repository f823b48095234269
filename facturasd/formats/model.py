"""The normalized document: what every parser returns and every later stage reads.

The JSON keys are a contract (SPEC §2.2): reports, the API and checks outside the test suite
read them. Amounts are strings exactly as the document prints them (its own decimals); tax ids
carry no dots, dashes or spaces, and are otherwise kept as printed: judging them is the
checks' business, not the parser's.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from facturasd.findings import Finding, Language, shown

Country = Literal["CO", "MX"]
Kind = Literal[
    "invoice", "credit_note", "debit_note", "support_document", "payment", "payroll", "transfer"
]
FormatName = Literal[
    "dian-attached-document",
    "dian-invoice",
    "dian-credit-note",
    "dian-debit-note",
    "cfdi-4.0",
    "cfdi-3.3",
    "cfdi-3.2",
    "pdf",
]
Verdict = Literal["ok", "warnings", "rejected"]


# A printed amount, rate or quantity: ASCII digits, an optional sign and decimal point; no
# exponent, no separators, and small enough that sums and products stay exact at Decimal's
# working precision (the checks raise it; see checks/__init__.py).
_NUMBER = re.compile(r"^[+-]?[0-9]{1,18}(\.[0-9]{1,10})?$", re.ASCII)


def number(text: str | None) -> Decimal | None:
    """`text` as a Decimal if it is a plain printed number ("-12.50"), else None."""
    return Decimal(text) if text is not None and _NUMBER.match(text) else None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Party(_Model):
    tax_id: str | None = None
    check_digit: str | None = None
    id_type: str | None = None
    name: str | None = None
    regime: str | None = None
    tax_level_codes: list[str] = Field(default_factory=list)
    city: str | None = None
    postal_code: str | None = None


class Tax(_Model):
    code: str
    name: str | None = None
    # MX, as printed: Tasa (rate in percent), Cuota (an amount per unit) or Exento (no rate,
    # no amount); anything else is for the checks to judge.
    factor: str | None = None
    rate: str | None = None
    base: str | None = None
    amount: str | None = None


class Line(_Model):
    description: str | None = None
    quantity: str | None = None
    unit_price: str | None = None
    amount: str | None = None
    discount: str | None = None
    taxes: list[Tax] = Field(default_factory=list)
    withholdings: list[Tax] = Field(default_factory=list)


class Totals(_Model):
    subtotal: str | None = None
    discount: str | None = None
    charges: str | None = None
    prepaid: str | None = None
    taxes: str | None = None
    withholdings: str | None = None
    total: str | None = None
    # CO: LegalMonetaryTotal's TaxExclusiveAmount (taxable base), TaxInclusiveAmount and
    # PayableRoundingAmount (added to the amount payable).
    tax_exclusive: str | None = None
    tax_inclusive: str | None = None
    rounding: str | None = None
    # CO: each TaxTotal's (WithholdingTaxTotal's) own TaxAmount by tax scheme, as printed:
    # what that scheme's subtotals must add up to.
    tax_totals: dict[str, str] = Field(default_factory=dict)
    withholding_totals: dict[str, str] = Field(default_factory=dict)


class Payment(_Model):
    method: str | None = None
    form: str | None = None
    use: str | None = None


class Reference(_Model):
    number: str | None = None
    uuid: str | None = None


class Evidence(_Model):
    source: str
    code: str | None = None
    # The CUFE the ApplicationResponse is about (lower case): evidence only for that document.
    uuid: str | None = None
    description: str | None = None
    at: str | None = None
    # DIAN's LineResponse notifications (e.g. "FAJ43b …"): notes, not rejections.
    notes: list[str] = Field(default_factory=list)


class Stamp(_Model):
    """MX: the TimbreFiscalDigital: when it was stamped and by which certifier (PAC)."""

    at: str | None = None
    provider: str | None = None
    certificate: str | None = None  # NoCertificadoSAT


class Document(_Model):
    country: Country
    # None only in the partial document read from a PDF's text, which does not say it.
    kind: Kind | None
    number: str | None = None
    # MX: the CFDI's Serie and Folio as printed (`number` joins them: "A-13").
    series: str | None = None
    folio: str | None = None
    uuid: str | None = None
    issued_at: str | None = None
    due_date: str | None = None
    currency: str | None = None
    exchange_rate: str | None = None
    environment: Literal["production", "test"] | None = None
    payment: Payment = Field(default_factory=Payment)
    issuer: Party = Field(default_factory=Party)
    receiver: Party = Field(default_factory=Party)
    lines: list[Line] = Field(default_factory=list)
    taxes: list[Tax] = Field(default_factory=list)
    withholdings: list[Tax] = Field(default_factory=list)
    totals: Totals = Field(default_factory=Totals)
    references: list[Reference] = Field(default_factory=list)
    authority_evidence: Evidence | None = None
    stamp: Stamp | None = None
    # MX: the serial number of the issuer's signing certificate (NoCertificado).
    certificate: str | None = None
    # Only the partial document read from a PDF's text: for each value read ("number",
    # "totals.total", "issuer.tax_id"…), the printed text it was read from, for a person to check.
    read_from: dict[str, str] = Field(default_factory=dict)


class WithholdingDue(_Model):
    """A withholding the buyer must apply (the checks compute these; booking uses them)."""

    code: str
    concept: str
    rule: str
    base: str
    rate: str
    amount: str


class Inspection(_Model):
    """One document read from one file. Its JSON is what the ledger keeps (findings as data);
    `shown` is what `facturasd inspect --json` prints."""

    file: str
    member: str | None = None
    sha256: str
    format: FormatName | None = None
    document: Document | None = None
    # PDFs that came in the same package (ZIP member names): the printed copy of this document.
    attachments: list[str] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    withholdings_due: list[WithholdingDue] = Field(default_factory=list)
    # The version of the tax rules the checks applied (None: the checks have not run).
    rules: str | None = None
    score: float = 1.0
    verdict: Verdict = "ok"

    @classmethod
    def judge(cls, **fields: Any) -> Inspection:
        """An Inspection with score and verdict from its findings."""
        return cls(**fields, **_grade(fields.get("findings", [])))

    def rejudged(self, **update: Any) -> Inspection:
        """A copy with `update` applied and score and verdict graded again."""
        findings = update.get("findings", self.findings)
        return self.model_copy(update={**update, **_grade(findings)})

    @property
    def country(self) -> Country | None:
        """The country of the document, which says how its amounts are written."""
        return self.document.country if self.document is not None else None

    def shown(self, lang: Language) -> dict[str, Any]:
        """As `facturasd inspect --json` prints it: its findings' messages in `lang`."""
        return {
            **self.model_dump(mode="json"),
            "findings": [shown(finding, lang, self.country) for finding in self.findings],
        }


def _grade(findings: list[Finding]) -> dict[str, Any]:
    """The original system's rule: 1 − 0.3 per error − 0.1 per warning, floored at 0; the
    verdict is `rejected` with any error, `warnings` with any warning, else `ok`."""
    errors = sum(f.severity == "error" for f in findings)
    warnings = sum(f.severity == "warning" for f in findings)
    verdict: Verdict = "rejected" if errors else "warnings" if warnings else "ok"
    return {"score": max(0.0, round(1 - 0.3 * errors - 0.1 * warnings, 2)), "verdict": verdict}
