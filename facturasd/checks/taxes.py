"""Tax schemes and rates: every tax and withholding a document prints must be one the law
knows, at a rate the law knows (the tables are in rules/co.toml and rules/mx.toml)."""

from __future__ import annotations

from decimal import Decimal

from facturasd.checks.base import LOCAL, Findings, plain, taxes_of
from facturasd.checks.rules import Rules
from facturasd.formats.model import Document, FormatName

FACTORS = ("Tasa", "Cuota", "Exento")
# Two rates this close are the same rate printed with different decimals (10.6667 and
# 10.666667 are both two thirds of 16 %).
SAME_RATE = Decimal("0.001")


def check(doc: Document, fmt: FormatName | None, rules: Rules, out: Findings) -> None:
    if doc.country == "CO":
        _colombia(doc, rules, out)
    elif fmt != "cfdi-3.2":  # 3.2 predates SAT's catalogue of rates (c_TasaOCuota came with 3.3)
        _mexico(doc, rules, out)


def _colombia(doc: Document, rules: Rules, out: Findings) -> None:
    for group in ("taxes", "withholdings"):
        table = rules.co.taxes if group == "taxes" else rules.co.withholdings
        for path, tax, _ in taxes_of(doc, group):
            rule = table.get(tax.code)
            if rule is None:
                out.add("CO-UNKNOWN-TAX-CODE", f"{path}.code", code=tax.code)
                continue
            rate = out.amount(tax.rate, f"{path}.rate")
            if rate is None or rule.knows(rate):
                continue
            code = "CO-UNKNOWN-TAX-RATE" if group == "taxes" else "CO-UNKNOWN-WITHHOLDING-RATE"
            out.add(code, f"{path}.rate", name=rule.name, rate=plain(rate), known=rule.describe())


def _mexico(doc: Document, rules: Rules, out: Findings) -> None:
    for group in ("taxes", "withholdings"):
        table = rules.mx.transferred if group == "taxes" else rules.mx.withheld
        for path, tax, _ in taxes_of(doc, group):
            if tax.code == LOCAL:
                continue  # local taxes are set by each state, outside SAT's catalogue
            if tax.code not in ("001", "002", "003"):
                out.add("MX-UNKNOWN-TAX-CODE", f"{path}.code", code=tax.code)
                continue
            if tax.factor is None:
                continue  # a document-level Retencion carries only Impuesto and Importe
            if tax.factor not in FACTORS:
                out.add("MX-UNKNOWN-FACTOR", f"{path}.factor", factor=tax.factor)
                continue
            name = tax.name or tax.code
            if tax.factor == "Exento":
                if tax.rate is not None or tax.amount is not None:
                    printed = " / ".join(v for v in (tax.rate, tax.amount) if v is not None)
                    out.add("MX-EXEMPT-WITH-AMOUNT", path, name=name, printed=printed)
                continue
            rate = out.amount(tax.rate, f"{path}.rate", True)
            if rate is None:
                continue
            rule = table.get(tax.code)
            if rule is None or not rule.knows(tax.factor, rate):
                known = rule.describe(tax.factor) if rule is not None else "—"
                shown = plain(rate) + (" %" if tax.factor == "Tasa" else "")
                out.add(
                    "MX-UNKNOWN-TAX-RATE",
                    f"{path}.rate",
                    name=name,
                    factor=tax.factor,
                    rate=shown,
                    known=known,
                )
                continue
            usual = rules.mx.usual_withholding.get(tax.code)
            if (
                group == "withholdings"
                and tax.factor == "Tasa"
                and usual is not None
                and all(abs(rate - known_rate) > SAME_RATE for known_rate in usual.rates)
            ):
                out.add(
                    "MX-UNUSUAL-WITHHOLDING-RATE",
                    f"{path}.rate",
                    name=name,
                    rate=plain(rate),
                    known=", ".join(f"{r} %" for r in usual.rates),
                )
