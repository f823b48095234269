"""Colombia: the withholdings the company must apply as buyer of each received invoice.

ReteFuente by concept and minimum base in UVT; ReteIVA (15 % of the IVA) when the company is an
IVA withholding agent; ReteICA by the company's city. The supplier's tax level codes exempt it
where the law says (autorretenedor O-15, régimen simple O-47, IVA agents O-13/O-23). The
concept comes from the company's rules, and the result names the rule that chose it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from facturasd.checks.base import Findings, fold, plain
from facturasd.checks.company import Company
from facturasd.checks.identity import tax_id
from facturasd.checks.rules import Colombia
from facturasd.findings import Phrase, phrase
from facturasd.formats.model import Document, WithholdingDue, number

CENT = Decimal("0.01")
PERCENT = Decimal("0.01")
AUTORRETENEDOR, SIMPLE = "O-15", "O-47"
IVA_AGENTS = ("O-13", "O-23")  # gran contribuyente, designated IVA withholding agent
NAMES = {"05": "ReteIVA", "06": "ReteFuente", "07": "ReteICA"}
# Documents a buyer withholds on (notes reverse or add to an invoice's withholdings by hand).
WITHHELD_KINDS = ("invoice", "support_document")


@dataclass(frozen=True)
class _Invoice:
    """What the withholdings are computed from, in pesos."""

    base: Decimal  # before taxes: subtotal − discounts + charges
    iva: Decimal
    year: int
    supplier_codes: frozenset[str]
    rate: Decimal | None  # pesos per unit of the invoice's currency (None: unknown)


def due(doc: Document, company: Company, rules: Colombia, out: Findings) -> list[WithholdingDue]:
    """The withholdings due on `doc`, each also reported as an info finding; nothing unless
    the company is a Colombian withholding agent and the document an invoice."""
    if not (company.withholding_agent and doc.country == "CO" and doc.kind in WITHHELD_KINDS):
        return []
    invoice = _invoice(doc)
    if invoice is None:
        return []  # its amounts are unreadable: the arithmetic checks report them
    if invoice.rate is None:
        out.add("CO-WITHHOLDING-NO-RATE", "exchange_rate", currency=doc.currency)
        return []
    concept_name, rule = choose_concept(doc, company)
    concept = rules.concepts[concept_name]
    uvt_year, uvt = rules.uvt_for(invoice.year)
    result: list[WithholdingDue] = []

    def threshold(base_uvt: Decimal, base: Decimal) -> Phrase | None:
        """Why nothing is due below the minimum base, or None when `base` reaches it."""
        minimum = base_uvt * uvt.value
        if base >= minimum:
            return None
        return phrase("below", base=base, uvt=plain(base_uvt), threshold=minimum, year=uvt_year)

    def apply(code: str, base: Decimal, rate: Decimal, why_not: Phrase | None) -> None:
        if why_not is not None:
            out.add("CO-WITHHOLDING-NOT-DUE", "withholdings_due", name=NAMES[code], why=why_not)
            return
        amount = (base * rate * PERCENT).quantize(CENT, rounding=ROUND_HALF_UP)
        item = WithholdingDue(
            code=code,
            concept=concept_name,
            rule=rule,
            base=str(base),
            rate=plain(rate),
            amount=str(amount),
        )
        path = f"withholdings_due[{len(result)}]"
        result.append(item)
        out.add(
            "CO-WITHHOLDING-DUE",
            path,
            name=NAMES[code],
            concept=concept.name,
            rule=rule,
            rate=item.rate,
            base=item.base,
            amount=item.amount,
        )

    codes = invoice.supplier_codes
    apply(
        "06",
        invoice.base,
        concept.rate,
        phrase("autorretenedor")
        if AUTORRETENEDOR in codes
        else phrase("simple")
        if SIMPLE in codes
        else threshold(concept.base_uvt, invoice.base),
    )
    if set(IVA_AGENTS) & set(company.tax_level_codes):
        apply(
            "05",
            invoice.iva,
            rules.reteiva.rate,
            phrase("no_iva")
            if invoice.iva == 0
            else phrase("iva_agents")
            if set(IVA_AGENTS) & codes
            else threshold(concept.base_uvt, invoice.base),
        )
    else:
        out.add(
            "CO-WITHHOLDING-NOT-DUE",
            "withholdings_due",
            name=NAMES["05"],
            why=phrase("not_iva_agent"),
        )
    city = rules.ica.get(company.city)
    if city is None:
        why = phrase("no_ica_city", city=company.city or "—")
        out.add("CO-WITHHOLDING-NOT-DUE", "withholdings_due", name=NAMES["07"], why=why)
    else:
        base_uvt = city.base_uvt_goods if concept.goods else city.base_uvt_services
        apply(
            "07",
            invoice.base,
            city.rates[concept_name],
            phrase("simple") if SIMPLE in codes else threshold(base_uvt, invoice.base),
        )
    _compare_with_printed(doc, result, out)
    return result


def choose_concept(doc: Document, company: Company) -> tuple[str, str]:
    """(concept, rule): the company's rule for this supplier, else the first keyword found in
    a line's description, else the company's default."""
    supplier = tax_id(doc.issuer.tax_id or "")
    for rule in company.concept_rules:
        if rule.supplier and tax_id(rule.supplier) == supplier:
            return rule.concept, f"supplier:{supplier}"
    descriptions = [fold(line.description or "") for line in doc.lines]
    for rule in company.concept_rules:
        if rule.keyword and any(fold(rule.keyword) in text for text in descriptions):
            return rule.concept, f"keyword:{rule.keyword}"
    return company.concept, f"default:{company.slug}"


def _invoice(doc: Document) -> _Invoice | None:
    totals = doc.totals
    subtotal = number(totals.subtotal)
    discount = number(totals.discount or "0")
    charges = number(totals.charges or "0")
    ivas = [number(tax.amount) for tax in doc.taxes if tax.code == "01"]
    year = (doc.issued_at or "")[:4]
    if subtotal is None or discount is None or charges is None or None in ivas:
        return None
    if not year.isdigit():
        return None
    # A foreign-currency invoice (exports, imports of services) prints CalculationRate.
    rate = Decimal(1) if doc.currency in (None, "COP") else number(doc.exchange_rate)
    pesos = rate if rate is not None else Decimal(1)
    return _Invoice(
        base=(subtotal - discount + charges) * pesos,
        iva=sum((i for i in ivas if i is not None), Decimal(0)) * pesos,
        year=int(year),
        supplier_codes=frozenset(doc.issuer.tax_level_codes),
        rate=rate,
    )


def _compare_with_printed(doc: Document, computed: list[WithholdingDue], out: Findings) -> None:
    """Suppliers print the withholdings they expect (cac:WithholdingTaxTotal); where theirs
    differs from what is due, say so (the computed one is what gets booked)."""
    due_by_code = {item.code: Decimal(item.amount) for item in computed}
    printed: dict[str, Decimal] = {}
    for tax in doc.withholdings:
        if (amount := number(tax.amount)) is not None:
            printed[tax.code] = printed.get(tax.code, Decimal(0)) + amount
    for code in sorted(set(printed) | set(due_by_code)):
        mine, theirs = due_by_code.get(code, Decimal(0)), printed.get(code, Decimal(0))
        if code in NAMES and abs(mine - theirs) >= 1:  # a peso or more: not rounding
            out.add(
                "CO-WITHHOLDING-DIFFERS",
                "withholdings",
                name=NAMES[code],
                printed=theirs,
                computed=mine,
            )
