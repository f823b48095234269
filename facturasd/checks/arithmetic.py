"""Arithmetic: the printed amounts of a document must agree with one another.

Lines add up to the subtotal; each tax's amount is its base × rate; the lines' taxes add up to
the document's; each tax scheme's subtotals add up to its total; and the amount payable follows
the country's equation. Every comparison allows the rounding tolerance explained in base.py.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from decimal import Decimal

from facturasd.checks.base import (
    LOCAL,
    Findings,
    balances,
    like,
    plain,
    plain_number,
    product_agrees,
    taxes_of,
)
from facturasd.formats.model import Document, Tax

PERCENT = Decimal("0.01")

Key = Callable[[Tax], tuple[object, ...] | None]


def check(doc: Document, out: Findings) -> None:
    if doc.country == "CO":
        _colombia(doc, out)
    elif doc.kind in ("payment", "transfer"):
        _mexico_zero(doc, out)
    else:
        _mexico(doc, out)


# ── Colombia ──────────────────────────────────────────────────────────────────────────────


def _colombia(doc: Document, out: Findings) -> None:
    totals = doc.totals
    if doc.lines:
        lines = [(line.amount, f"lines[{i}].amount", 1, True) for i, line in enumerate(doc.lines)]
        _agree(out, "CO-SUBTOTAL-MISMATCH", "totals.subtotal", totals.subtotal, lines)
    for group, by_code, total_key in (
        ("taxes", totals.tax_totals, "tax_totals"),
        ("withholdings", totals.withholding_totals, "withholding_totals"),
    ):
        for code, printed in by_code.items():
            subtotals = [
                (tax.amount, f"{group}[{k}].amount", 1, True)
                for k, tax in enumerate(getattr(doc, group))
                if tax.code == code
            ]
            path = f"totals.{total_key}.{code}"
            _agree(out, "CO-TAX-TOTAL-MISMATCH", path, printed, subtotals, code=code)
    for group in ("taxes", "withholdings"):
        on_lines = {_co_key(tax) for _, tax, on_line in taxes_of(doc, group) if on_line}
        for path, tax, on_line in taxes_of(doc, group):
            # A document-level subtotal that adds up line taxes carries their per-line
            # rounding: it is judged against the lines, not against its own base × rate.
            if on_line or _co_key(tax) not in on_lines:
                _product(out, "CO-TAX-AMOUNT", path, tax, PERCENT, _percent(tax))
        _lines_agree(out, "CO-LINE-TAXES-MISMATCH", doc, group, _co_key)
    terms = out.terms(
        (totals.subtotal, "totals.subtotal", 1, True),
        (totals.discount, "totals.discount", -1, False),
        (totals.charges, "totals.charges", 1, False),
        *(
            (amount, f"totals.tax_totals.{code}", 1, True)
            for code, amount in totals.tax_totals.items()
        ),
        (totals.prepaid, "totals.prepaid", -1, False),
        (totals.rounding, "totals.rounding", 1, False),
    )
    _equation(out, "CO-TOTAL-MISMATCH", totals.total, terms)


def _co_key(tax: Tax) -> tuple[object, ...] | None:
    rate = plain_number(tax.rate)
    return (tax.code, rate) if rate is not None else None


# ── Mexico ────────────────────────────────────────────────────────────────────────────────


def _mexico(doc: Document, out: Findings) -> None:
    totals = doc.totals
    for i, line in enumerate(doc.lines):
        _line_amount(out, f"lines[{i}]", line.amount, line.quantity, line.unit_price)
    if doc.lines:
        lines = [(line.amount, f"lines[{i}].amount", 1, True) for i, line in enumerate(doc.lines)]
        _agree(out, "MX-SUBTOTAL-MISMATCH", "totals.subtotal", totals.subtotal, lines)
    discounts = [
        (line.discount, f"lines[{i}].discount", 1, True)
        for i, line in enumerate(doc.lines)
        if line.discount is not None
    ]
    if discounts:
        _agree(out, "MX-DISCOUNT-MISMATCH", "totals.discount", totals.discount, discounts)
    for group in ("taxes", "withholdings"):
        for path, tax, on_line in taxes_of(doc, group):
            if on_line and tax.factor in ("Tasa", "Cuota"):
                scale = PERCENT if tax.factor == "Tasa" else Decimal(1)
                _product(out, "MX-TAX-AMOUNT", path, tax, scale, _mx_rate(tax))
    _lines_agree(out, "MX-LINE-TAXES-MISMATCH", doc, "taxes", _mx_transferred_key)
    _lines_agree(out, "MX-LINE-TAXES-MISMATCH", doc, "withholdings", _mx_withheld_key)
    for group, printed, what in (
        ("taxes", totals.taxes, "TotalImpuestosTrasladados"),
        ("withholdings", totals.withholdings, "TotalImpuestosRetenidos"),
    ):
        federal = [
            (tax.amount, f"{group}[{k}].amount", 1, True)
            for k, tax in enumerate(getattr(doc, group))
            if tax.code != LOCAL and tax.factor != "Exento"
        ]
        if federal or printed is not None:
            _agree(out, "MX-TAX-TOTAL-MISMATCH", f"totals.{group}", printed, federal, what=what)
    local = [
        (tax.amount, f"{group}[{k}].amount", sign, True)
        for group, sign in (("taxes", 1), ("withholdings", -1))
        for k, tax in enumerate(getattr(doc, group))
        if tax.code == LOCAL
    ]
    terms = out.terms(
        (totals.subtotal, "totals.subtotal", 1, True),
        (totals.discount, "totals.discount", -1, False),
        (totals.taxes, "totals.taxes", 1, False),
        (totals.withholdings, "totals.withholdings", -1, False),
        *local,
    )
    _equation(out, "MX-TOTAL-MISMATCH", totals.total, terms)


def _line_amount(
    out: Findings, path: str, printed: str | None, quantity: str | None, price: str | None
) -> None:
    """A concept's Importe is Cantidad × ValorUnitario (Anexo 20: within the rounding of
    both factors, the same limits SAT computes)."""
    amount = out.amount(printed, f"{path}.amount", True)
    count = out.amount(quantity, f"{path}.quantity")
    unit = out.amount(price, f"{path}.unit_price")
    if amount is None or count is None or unit is None:
        return
    if not product_agrees(amount, count, unit):
        out.add(
            "MX-LINE-AMOUNT",
            f"{path}.amount",
            quantity=quantity,
            unit_price=price,
            computed=like(count * unit, amount),
            printed=printed,
        )


def _mexico_zero(doc: Document, out: Findings) -> None:
    """Payment (P) and transfer (T) CFDIs: SubTotal and Total are zero and there are no taxes
    (Anexo 20 rules CFDI40109 and CFDI40201; the same in 3.3)."""
    kind = "P" if doc.kind == "payment" else "T"
    for path, what, printed in (
        ("totals.subtotal", "SubTotal", doc.totals.subtotal),
        ("totals.total", "Total", doc.totals.total),
    ):
        amount = out.amount(printed, path, True)
        if amount is not None and amount != 0:
            out.add("MX-NONZERO-AMOUNTS", path, kind=kind, what=what, printed=printed)
    printed_taxes = [t.amount or "0" for t in doc.taxes + doc.withholdings]
    if printed_taxes:
        out.add(
            "MX-NONZERO-AMOUNTS",
            "taxes",
            kind=kind,
            what="Impuestos",
            printed=", ".join(printed_taxes),
        )


def _mx_transferred_key(tax: Tax) -> tuple[object, ...] | None:
    if tax.code == LOCAL or tax.factor == "Exento":
        return None
    return (tax.code, tax.factor, plain_number(tax.rate))


def _mx_withheld_key(tax: Tax) -> tuple[object, ...] | None:
    # Document-level Retencion nodes carry only Impuesto and Importe.
    return None if tax.code == LOCAL else (tax.code,)


def _mx_rate(tax: Tax) -> str:
    if tax.factor == "Tasa":
        return f"{_percent(tax)} %"
    return f"Cuota {_percent(tax)}" if tax.factor == "Cuota" else ""


# ── shared ────────────────────────────────────────────────────────────────────────────────

Item = tuple[str | None, str, int, bool]


def _percent(tax: Tax) -> str:
    rate = plain_number(tax.rate)
    return plain(rate) if rate is not None else tax.rate or "—"


def _agree(
    out: Findings,
    code: str,
    path: str,
    printed: str | None,
    items: Sequence[Item],
    /,
    **values: object,
) -> None:
    """Report `code` at `path` unless the printed `items` add up to the `printed` amount."""
    amount = out.amount(printed, path, True)
    terms = out.terms(*items)
    if amount is None or terms is None:
        return
    if not balances([*terms, -amount]):
        out.add(
            code, path, computed=like(sum(terms, Decimal(0)), amount), printed=printed, **values
        )


def _equation(out: Findings, code: str, printed: str | None, terms: list[Decimal] | None) -> None:
    """The amount payable (totals.total) is the sum of the signed `terms`."""
    payable = out.amount(printed, "totals.total", True)
    if payable is None or terms is None:
        return
    if not balances([*terms, -payable]):
        computed = like(sum(terms, Decimal(0)), payable)
        out.add(code, "totals.total", printed=printed, computed=computed)


def _product(out: Findings, code: str, path: str, tax: Tax, scale: Decimal, rate: str) -> None:
    """Report `code` at `path`.amount unless amount = base × rate × scale."""
    amount = out.amount(tax.amount, f"{path}.amount")
    base = out.amount(tax.base, f"{path}.base")
    factor = out.amount(tax.rate, f"{path}.rate")
    if amount is None or base is None or factor is None:
        return
    if not product_agrees(amount, base, factor, scale):
        out.add(
            code,
            f"{path}.amount",
            name=tax.name or tax.code,
            rate=rate,
            base=tax.base,
            computed=like(base * factor * scale, amount),
            printed=tax.amount,
        )


def _lines_agree(out: Findings, code: str, doc: Document, group: str, key: Key) -> None:
    """For each group of taxes (`key`) printed on lines, the document's taxes of that group add
    up to the lines'. Groups on no line are left alone (printed only at document level)."""
    on_lines: dict[tuple[object, ...], list[Item]] = defaultdict(list)
    on_document: dict[tuple[object, ...], list[Item]] = defaultdict(list)
    first: dict[tuple[object, ...], Tax] = {}
    for path, tax, on_line in taxes_of(doc, group):
        if (k := key(tax)) is None:
            continue
        (on_lines if on_line else on_document)[k].append((tax.amount, f"{path}.amount", 1, True))
        if on_line:  # a line's tax names the group fully (a document Retencion has no rate)
            first.setdefault(k, tax)
    for k, items in on_lines.items():
        line_terms = out.terms(*items)
        doc_terms = out.terms(*on_document.get(k, []))
        if line_terms is None or doc_terms is None:
            continue
        if doc_terms and balances([*line_terms, *(-t for t in doc_terms)]):
            continue
        tax = first[k]
        out.add(
            code,
            on_document[k][0][1] if doc_terms else items[0][1],
            name=tax.name or tax.code,
            rate=_mx_rate(tax) if doc.country == "MX" else f"{_percent(tax)} %",
            computed=str(sum(line_terms, Decimal(0))),
            printed=str(sum(doc_terms, Decimal(0))) if doc_terms else "—",
        )
