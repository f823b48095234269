"""The monthly tax summary: per company, the taxes paid by rate and the withholdings applied
by concept and rate, from the documents the ledger keeps, with the invoices behind each figure:
what the accountant needs for the monthly returns. Files `resumen-YYYY-MM.md/.json/.csv` in
`paths.reports` (docs/reports.md).

An invoice counts in the month it was issued (the tax period is the document's, not the day
it arrived), when it was accepted (checked, or booked) and the authority has not voided it
(compliance not FAILED). Colombia: the withholdings are those the company applies as agent,
computed by the checks (`withholdings_due`: ReteFuente by concept, ReteIVA, ReteICA by the
company's municipality), in pesos. Mexico: those the CFDI states (ISR, IVA withheld; local
ones), by rate where its concepts give one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio

from facturasd import wording
from facturasd.checks.withholdings import NAMES
from facturasd.config import Config
from facturasd.constants import ComplianceStatus, InvoiceState
from facturasd.formats.model import number
from facturasd.reports.daily import signed
from facturasd.reports.files import Written, csv_text, dialect, text, write_report
from facturasd.reports.text import table
from facturasd.reports.words import WORDS
from facturasd.store.db import Database
from facturasd.wording import Language

if TYPE_CHECKING:
    from facturasd.progress import Step

ACCEPTED = (InvoiceState.CHECKED, InvoiceState.BOOKING, InvoiceState.BOOKED)
# The documents that carry a purchase's taxes (a payment, payroll or transfer carries none).
TAXED_KINDS = ("invoice", "support_document", "debit_note", "credit_note")
ICA = "07"  # Colombia's ReteICA: by the municipality of the company that withholds it
RETEFUENTE = "06"  # by concept


@dataclass
class Figure:
    """One line of the summary: a tax (or a withholding) at one rate, summed over invoices."""

    tax: str
    rate: str | None
    currency: str
    concept: str | None = None
    city: str | None = None
    base: Decimal = Decimal(0)
    amount: Decimal = Decimal(0)
    invoices: list[dict[str, Any]] = field(default_factory=list)

    def add(self, invoice: dict[str, Any], base: Decimal | None, amount: Decimal) -> None:
        kind = invoice["kind"]
        self.base += signed(kind, base or Decimal(0))
        self.amount += signed(kind, amount)
        self.invoices.append(
            {
                **invoice,
                "base": None if base is None else str(signed(kind, base)),
                "amount": str(signed(kind, amount)),
            }
        )

    def data(self) -> dict[str, Any]:
        return {
            "tax": self.tax,
            "concept": self.concept,
            "city": self.city,
            "rate": self.rate,
            "currency": self.currency,
            "base": str(self.base),
            "amount": str(self.amount),
            "invoices": self.invoices,
        }


def _rate(text: str | None) -> str | None:
    """A rate without trailing zeros ("16.0000" and "16.00" are the same 16 %)."""
    value = number(text)
    return None if value is None else format(value.normalize(), "f")


def _taxes(doc: dict[str, Any]) -> list[tuple[str, str | None, Decimal | None, Decimal]]:
    """(tax, rate, base, amount) of each tax the document charges."""
    found = []
    for tax in doc.get("taxes") or []:
        amount = number(tax.get("amount"))
        if amount is not None:
            name = tax.get("name") or tax["code"]
            found.append((name, _rate(tax.get("rate")), number(tax.get("base")), amount))
    return found


def _withheld_mx(doc: dict[str, Any]) -> list[tuple[str, str | None, Decimal | None, Decimal]]:
    """(tax, rate, base, amount) of what a CFDI withholds: its concepts' withholdings, which
    carry the rate (the document's own list sums them without it), else the document's; and
    the local ones (implocal), which are only at the document's level."""
    lines = [w for line in doc.get("lines") or [] for w in line.get("withholdings") or []]
    document = doc.get("withholdings") or []
    local = [w for w in document if w.get("code") == "implocal"]
    chosen = [*lines, *local] if lines else document
    found = []
    for tax in chosen:
        amount = number(tax.get("amount"))
        if amount is not None:
            name = tax.get("name") or tax["code"]
            found.append((name, _rate(tax.get("rate")), number(tax.get("base")), amount))
    return found


async def gather(
    db: Database, config: Config, month: str, step: Step | None = None
) -> dict[str, Any]:
    """The summary of `month` ("2026-11") as data: what its JSON file holds. `step`: each
    invoice summed of them all and one more, the files the caller writes."""
    rows = await db.fetchall(
        "SELECT id, company, country, kind, number, uuid, issuer_tax_id, issuer_name, "
        "issued_at, currency, inspection FROM invoices WHERE substr(issued_at, 1, 7) = ? "
        f"AND state IN ({', '.join('?' for _ in ACCEPTED)}) AND compliance != ? "
        f"AND kind IN ({', '.join('?' for _ in TAXED_KINDS)}) ORDER BY company, issued_at, id",
        (month, *ACCEPTED, ComplianceStatus.FAILED, *TAXED_KINDS),
    )
    # Off the event loop: each invoice's stored document is parsed.
    return await anyio.to_thread.run_sync(_summary, rows, config, month, step)


def _summary(
    rows: list[sqlite3.Row], config: Config, month: str, step: Step | None
) -> dict[str, Any]:
    companies = {c.slug: c for c in config.companies}
    summaries: dict[str | None, dict[str, Any]] = {}
    for done, row in enumerate(rows):
        if step is not None:
            step(done, len(rows) + 1)
        stored: dict[str, Any] = json.loads(row["inspection"]) if row["inspection"] else {}
        doc = stored.get("document") or {}
        company = companies.get(row["company"])
        summary = summaries.setdefault(
            row["company"],
            {
                "company": row["company"],
                "name": company.name if company else None,
                "country": company.country if company else row["country"],
                "invoices": 0,
                "taxes": {},
                "withholdings": {},
            },
        )
        summary["invoices"] += 1
        currency = row["currency"] or ""
        invoice = {
            "id": row["id"],
            "kind": row["kind"],
            "supplier": row["issuer_name"],
            "tax_id": row["issuer_tax_id"],
            "number": row["number"],
            "uuid": row["uuid"],
            "issued": row["issued_at"][:10],
            "currency": currency,
        }
        taxes: dict[tuple[Any, ...], Figure] = summary["taxes"]
        for name, rate, base, amount in _taxes(doc):
            key = (name, rate, currency)
            taxes.setdefault(key, Figure(name, rate, currency)).add(invoice, base, amount)
        withheld: dict[tuple[Any, ...], Figure] = summary["withholdings"]
        if row["country"] == "CO":
            city = company.city if company else None
            for due in stored.get("withholdings_due") or []:
                code = due["code"]
                figure = Figure(
                    NAMES.get(code, code),
                    _rate(due["rate"]),
                    "COP",  # computed in pesos, whatever the invoice's currency
                    concept=due["concept"] if code == RETEFUENTE else None,
                    city=city if code == ICA else None,
                )
                slot = (figure.tax, figure.concept, figure.city, figure.rate)
                withheld.setdefault(slot, figure).add(
                    invoice, number(due["base"]), Decimal(due["amount"])
                )
        else:
            for name, rate, base, amount in _withheld_mx(doc):
                key = (name, rate, currency)
                withheld.setdefault(key, Figure(name, rate, currency)).add(invoice, base, amount)
    return {
        "month": month,
        "companies": [
            {
                **s,
                "taxes": [f.data() for f in _ordered(s["taxes"].values())],
                "withholdings": [f.data() for f in _ordered(s["withholdings"].values())],
            }
            for s in summaries.values()
        ],
    }


def _ordered(figures: Iterable[Figure]) -> list[Figure]:
    return sorted(
        figures,
        key=lambda f: (f.tax, f.concept or "", f.city or "", f.currency, number(f.rate) or 0),
    )


async def write_monthly(
    db: Database,
    config: Config,
    *,
    month: str,
    lang: Language | None = None,
    step: Step | None = None,
) -> Written:
    """The tax summary of `month` ("2026-11"), written in `paths.reports`; `lang` by default
    `reports.language`. `step` is told how far it is: each invoice summed, then the files as
    the last unit."""
    lang = lang or config.reports.language
    data = await gather(db, config, month, step)
    written = await anyio.to_thread.run_sync(_write, data, config, lang, month)
    if step is not None:
        done = sum(company["invoices"] for company in data["companies"]) + 1
        step(done, done)
    return written


def _write(data: dict[str, Any], config: Config, lang: Language, month: str) -> Written:
    """The summary's three files, composed from its data and written. Blocking."""
    words = WORDS[lang]
    form = dialect(config)
    columns = (
        "company", "figure", "concept", "city", "rate", "invoice", "supplier", "tax_id",
        "number", "uuid", "issued", "currency", "base", "amount",
    )  # fmt: skip
    rows = [
        [
            text(company["company"]),
            text(figure["tax"]),
            text(figure["concept"]),
            text(figure["city"]),
            form.number(figure["rate"]),
            str(invoice["id"]),
            text(invoice["supplier"]),
            text(invoice["tax_id"]),
            text(invoice["number"]),
            text(invoice["uuid"]),
            invoice["issued"],
            text(figure["currency"]),
            form.number(invoice["base"]),
            form.number(invoice["amount"]),
        ]
        for company in data["companies"]
        for group in ("taxes", "withholdings")
        for figure in company[group]
        for invoice in figure["invoices"]
    ]
    body = csv_text([words[f"csv.{c}"] for c in columns], rows, form)
    machines = json.dumps(data, ensure_ascii=False) + "\n"
    return write_report(
        config.paths.reports, f"resumen-{month}", render(data, lang), machines, body
    )


def render(data: dict[str, Any], lang: Language) -> str:
    """The summary for people, in Markdown."""
    words = WORDS[lang]
    out = [f"# {words['monthly'].format(month=data['month'])}", words["monthly_note"]]
    if not data["companies"]:
        out.append(words["none"])
    for company in data["companies"]:
        country = company["country"]
        title = company["name"] or company["company"] or words["no_company"]
        out += [
            f"## {words['company']}: {title}",
            words["invoices_n"].format(n=wording.count(company["invoices"], lang)),
            f"### {words['taxes_paid']}",
            _figures(company["taxes"], country, lang, concept=False),
            f"### {words['withheld']}",
        ]
        if country == "CO":
            out.append(words["withheld_note_co"])
        out.append(_figures(company["withholdings"], country, lang, concept=country == "CO"))
    return "\n\n".join(out) + "\n"


def _figures(figures: list[dict[str, Any]], country: str, lang: Language, *, concept: bool) -> str:
    words = WORDS[lang]
    if not figures:
        return words["none"]
    header = [words["tax"], words["rate"], words["currency"], words["base"], words["amount"]]
    if concept:
        header[1:1] = [words["concept"], words["city"]]
    rows = []
    for f in figures:
        row = [
            f["tax"],
            f["rate"] and wording.amount(f["rate"], country),
            f["currency"],
            wording.amount(f["base"], country),
            wording.amount(f["amount"], country),
        ]
        if concept:
            row[1:1] = [f["concept"], f["city"]]
        rows.append(row)
    width = len(header)
    return table(header, rows, right=[width - 4, width - 2, width - 1])
