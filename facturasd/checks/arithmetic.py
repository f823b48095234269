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
    product_agrees,
    taxes_of,
    within_sat_limits,
)
from facturasd.findings import Value
from facturasd.formats.model import Document, Tax, number

PERCENT = Decimal("0.01")
ONE = Decimal(1)

Key = Callable[[Tax], tuple[object, ...] | None]
# A printed amount to add: (value, path, sign, required).
Item = tuple[str | None, str, int, bool]


def check(doc: Document, out: Findings) -> None:
    if not doc.lines:
        out.add("DOC-NO-LINES", "lines")
    _not_negative(doc, out)
    if doc.country == "CO":
        _colombia(doc, out)
    elif doc.kind in ("payment", "transfer"):
        _mexico_zero(doc, out)
    else:
        _mexico(doc, out)


def _not_negative(doc: Document, out: Findings) -> None:
    """DIAN and SAT print every amount positive (a credit note too); only a rounding amount
    may be negative."""
    totals = doc.totals
    printed = [
        (f"totals.{name}", getattr(totals, name))
        for name in ("subtotal", "discount", "charges", "prepaid", "taxes", "withholdings", "total")
    ]
    printed += [(f"lines[{i}].amount", line.amount) for i, line in enumerate(doc.lines)]
    for group in ("taxes", "withholdings"):
        for path, tax, _ in taxes_of(doc, group):
            printed += [(f"{path}.base", tax.base), (f"{path}.amount", tax.amount)]
    for path, value in printed:
        amount = number(value)
        if amount is not None and amount < 0:
            out.add("DOC-NEGATIVE-AMOUNT", path, value=value)


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
                _co_product(out, path, tax)
        _lines_agree(out, "CO-LINE-TAXES-MISMATCH", doc, group, _co_key, doc_only=False)
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
    rate = number(tax.rate)
    return (tax.code, rate) if rate is not None else None


def _co_product(out: Findings, path: str, tax: Tax) -> None:
    """A tax's amount is its base × Percent (rounded once)."""
    amount = out.amount(tax.amount, f"{path}.amount")
    base = out.amount(tax.base, f"{path}.base")
    rate = out.amount(tax.rate, f"{path}.rate")
    if amount is None or base is None or rate is None:
        return
    if not product_agrees(amount, base, rate, PERCENT):
        _product_finding(out, "CO-TAX-AMOUNT", path, tax, _percent(tax), base * rate * PERCENT)


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
        # No Descuento on the document is a zero one, right when the concepts' are zero.
        discount = totals.discount if totals.discount is not None else "0"
        _agree(out, "MX-DISCOUNT-MISMATCH", "totals.discount", discount, discounts)
    for group in ("taxes", "withholdings"):
        line_keys = {_mx_key(group, tax) for _, tax, on_line in taxes_of(doc, group) if on_line}
        for path, tax, on_line in taxes_of(doc, group):
            # Line taxes against their base; a document Traslado no concept carries against
            # its own (document Retenciones print no base nor rate).
            if tax.factor in ("Tasa", "Cuota") and (
                on_line or _mx_key(group, tax) not in line_keys
            ):
                _mx_product(out, path, tax)
        has_line_taxes = bool(line_keys - {None})
        _lines_agree(
            out, "MX-LINE-TAXES-MISMATCH", doc, group, _mx_keys[group], doc_only=has_line_taxes
        )
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
    """A concept's Importe is Cantidad × ValorUnitario, within SAT's limits."""
    amount = out.amount(printed, f"{path}.amount", True)
    count = out.amount(quantity, f"{path}.quantity")
    unit = out.amount(price, f"{path}.unit_price")
    if amount is None or count is None or unit is None:
        return
    if not within_sat_limits(amount, count, unit, ONE, b_exact=False):
        out.add(
            "MX-LINE-AMOUNT",
            f"{path}.amount",
            quantity=quantity,
            unit_price=price,
            computed=like(count * unit, amount),
            printed=printed,
        )


def _mx_product(out: Findings, path: str, tax: Tax) -> None:
    """A tax's Importe is its Base × TasaOCuota (a Tasa printed here in percent), within
    SAT's limits."""
    amount = out.amount(tax.amount, f"{path}.amount", True)
    base = out.amount(tax.base, f"{path}.base")
    rate = out.amount(tax.rate, f"{path}.rate")
    if amount is None or base is None or rate is None:
        return
    scale = PERCENT if tax.factor == "Tasa" else ONE
    if not within_sat_limits(amount, base, rate, scale, b_exact=True):
        _product_finding(out, "MX-TAX-AMOUNT", path, tax, _mx_rate(tax), base * rate * scale)


def _mexico_zero(doc: Document, out: Findings) -> None:
    """Payment (P) and transfer (T) CFDIs: SubTotal and Total are zero and there is no
    Impuestos node (Anexo 20 rules CFDI40109 and CFDI40201; the same in 3.3)."""
    kind = "P" if doc.kind == "payment" else "T"
    for path, what, printed in (
        ("totals.subtotal", "SubTotal", doc.totals.subtotal),
        ("totals.total", "Total", doc.totals.total),
    ):
        amount = out.amount(printed, path, True)
        if amount is not None and amount != 0:
            out.add("MX-NONZERO-AMOUNTS", path, kind=kind, what=what, printed=printed)
    if doc.taxes or doc.withholdings:
        names = sorted({tax.name or tax.code for tax in doc.taxes + doc.withholdings})
        out.add("MX-TAXES-NOT-ALLOWED", "taxes", kind=kind, printed=", ".join(names))


def _mx_key(group: str, tax: Tax) -> tuple[object, ...] | None:
    return _mx_keys[group](tax)


def _mx_transferred_key(tax: Tax) -> tuple[object, ...] | None:
    if tax.code == LOCAL or tax.factor == "Exento":
        return None
    return (tax.code, tax.factor, number(tax.rate))


def _mx_withheld_key(tax: Tax) -> tuple[object, ...] | None:
    # Document-level Retencion nodes carry only Impuesto and Importe.
    return None if tax.code == LOCAL else (tax.code,)


_mx_keys: dict[str, Key] = {"taxes": _mx_transferred_key, "withholdings": _mx_withheld_key}


def _mx_rate(tax: Tax) -> str:
    if tax.factor == "Tasa":
        return f"{_percent(tax)} %"
    return f"Cuota {_percent(tax)}" if tax.factor == "Cuota" else ""


# ── shared ────────────────────────────────────────────────────────────────────────────────


def _percent(tax: Tax) -> str:
    rate = number(tax.rate)
    return plain(rate) if rate is not None else tax.rate or "—"


def _agree(
    out: Findings,
    code: str,
    path: str,
    printed: str | None,
    items: Sequence[Item],
    /,
    **values: Value,
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


def _product_finding(
    out: Findings, code: str, path: str, tax: Tax, rate: str, exact: Decimal
) -> None:
    printed = number(tax.amount)
    assert printed is not None  # the caller read it
    out.add(
        code,
        f"{path}.amount",
        name=tax.name or tax.code,
        rate=rate,
        base=tax.base,
        computed=like(exact, printed),
        printed=tax.amount,
    )


def _lines_agree(
    out: Findings, code: str, doc: Document, group: str, key: Key, *, doc_only: bool
) -> None:
    """For each group of taxes (`key`) printed on lines, the document's taxes of that group
    add up to the lines' (a group whose lines all add up to zero may be left out of the
    document). With `doc_only`, a document group that no line carries is an error too (SAT
    groups the concepts' taxes); without it, it stands on its own (DIAN allows taxes printed
    only at document level)."""
    on_lines: dict[tuple[object, ...], list[Item]] = defaultdict(list)
    on_document: dict[tuple[object, ...], list[Item]] = defaultdict(list)
    # A line's tax names its group fully (a document Retencion has no factor nor rate).
    named: dict[bool, dict[tuple[object, ...], Tax]] = {True: {}, False: {}}
    for path, tax, on_line in taxes_of(doc, group):
        if (k := key(tax)) is None:
            continue
        (on_lines if on_line else on_document)[k].append((tax.amount, f"{path}.amount", 1, True))
        named[on_line].setdefault(k, tax)
    groups = list(on_lines) + [k for k in on_document if doc_only and k not in on_lines]
    for k in groups:
        line_terms = out.terms(*on_lines.get(k, []))
        doc_terms = out.terms(*on_document.get(k, []))
        if line_terms is None or doc_terms is None:
            continue
        if balances([*line_terms, *(-t for t in doc_terms)]):
            continue
        tax = named[True].get(k) or named[False][k]
        where = on_document[k][0][1] if k in on_document else on_lines[k][0][1]
        reference = (doc_terms or line_terms)[0]
        out.add(
            code,
            where,
            name=tax.name or tax.code,
            rate=_mx_rate(tax) if doc.country == "MX" else _percent(tax),
            computed=like(sum(line_terms, Decimal(0)), reference),
            printed=like(sum(doc_terms, Decimal(0)), reference) if doc_terms else "—",
        )
