"""The supplier bill a received document becomes in Alegra: the body of `POST /bills`.

Pure: a normalized document, the withholdings the checks found due, Alegra's chart (taxes,
retentions, categories as its API lists them) and the company's account rules in; a dict out,
or `Unbookable` with what a person must fix. Nothing is guessed: a tax, a retention or an
account Alegra does not have is named, never replaced by a near one, and a bill whose lines or
taxes would not add up to the invoice's is refused rather than posted.

Amounts go out as numeric strings (which the API accepts) so the document's decimals reach
Alegra exactly, without a trip through binary floats.

One bill line per document line, at the line's amount net of its own discount (CFDI keeps the
Descuento apart; a UBL LineExtensionAmount is already net). A Mexican local tax (implocal)
transferred on the whole document has no Alegra tax to carry it: it becomes a line of its own
without tax, so the bill's total is still the invoice's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import Any, Literal

from facturasd.checks.base import LOCAL, fold, plain
from facturasd.checks.identity import tax_id
from facturasd.checks.withholdings import NAMES as CO_WITHHOLDINGS
from facturasd.errors import FacturasdError
from facturasd.formats.model import Document, Line, Tax, WithholdingDue, number

CENT = Decimal("0.01")
# Two rates are the same tax when they differ by no more than this, in percentage points.
RATE_TOLERANCE = Decimal("0.001")
COMPANY_CURRENCY = {"CO": "COP", "MX": "MXN"}
BOOKED_KINDS = {
    "invoice": "Factura",
    "support_document": "Documento soporte",
    "debit_note": "Nota débito",
}
# The document's tax code -> Alegra's tax type, per country.
TAX_TYPES = {"CO": {"01": "IVA", "04": "ICO"}, "MX": {"002": "IVA", "003": "IEPS"}}
RETENTION_TYPES = {
    "CO": {"05": "IVA", "06": "FUENTE", "07": "ICA"},
    "MX": {"001": "ISR", "002": "IVA"},
}
# A bill line's observations are a note (the document itself is attached to the bill): a
# description longer than this is cut.
OBSERVATIONS_LENGTH = 500
ITEM_NAME_LENGTH = 150
RETRY = "then `facturasd retry`"
BY_HAND = "enter this bill by hand in Alegra"


@dataclass(frozen=True)
class Chart:
    """Alegra's lists as `GET /taxes`, `GET /retentions` and `GET /categories` return them."""

    taxes: list[dict[str, Any]]
    retentions: list[dict[str, Any]]
    categories: list[dict[str, Any]]


@dataclass(frozen=True)
class AccountRule:
    """Lines go to `account` (a category id or name) when the supplier's tax id is `supplier`,
    or when a line's description contains `keyword` (case and accents ignored)."""

    account: str
    supplier: str = ""
    keyword: str = ""


@dataclass(frozen=True)
class Accounts:
    """A company's expense accounts: its rules, first match wins, else `default` (an id or a
    name), else the chart's first expense account."""

    default: str | None
    rules: tuple[AccountRule, ...] = ()


class Unbookable(FacturasdError):
    """The document cannot become a bill as it stands; the message names what is missing or
    wrong and what a person can do about it."""


@dataclass(frozen=True)
class _Source:
    """One bill line to be: where it came from, in words for messages ("line 2")."""

    where: str
    description: str
    price: Decimal
    quantity: Decimal
    taxes: tuple[Tax, ...]


def bill(
    document: Document,
    due: Sequence[WithholdingDue],
    chart: Chart,
    accounts: Accounts,
    *,
    provider: str,
    lines: Literal["categories", "items"] = "categories",
    items: Mapping[str, str] = MappingProxyType({}),
) -> dict[str, Any]:
    """The body of `POST /bills` for `document` from `provider` (Alegra's contact id); in
    items mode `items` maps each of `item_names(document)` to Alegra's item id."""
    number_part = f" {document.number}" if document.number else ""
    observations = (
        f"{_bookable_kind(document)}{number_part} · {_uuid_label(document)} {marker(document)}"
    )
    if not document.issued_at:
        raise Unbookable(f"the document has no issue date: {BY_HAND}")
    _refuse_totals_outside_lines(document)
    taxed = [
        (source, [_tax(chart, document, source, tax) for tax in _charged(source)])
        for source in _sources(document, printed=lines == "items")
    ]
    _check_sums(document, taxed)
    taxed += [(source, []) for source in _local_taxes(document)]
    retentions = _retentions(document, due, chart)
    issuer = tax_id(document.issuer.tax_id or "")
    purchases = []
    for source, taxes in taxed:
        if lines == "items":
            name = _item_name(source.description)
            if name not in items:
                raise Unbookable(f"Alegra has no item '{name}': add it in Alegra, {RETRY}")
            line_id = items[name]
        else:
            line_id = _account(chart, accounts, issuer, source.description)
        purchases.append(
            {
                "id": line_id,
                "price": _plain(source.price),
                "quantity": _plain(source.quantity),
                "tax": [{"id": str(tax["id"])} for tax in taxes],
                "observations": _cut(source.description, OBSERVATIONS_LENGTH),
            }
        )
    body: dict[str, Any] = {
        "date": document.issued_at[:10],
        "dueDate": (document.due_date or document.issued_at)[:10],
        "provider": {"id": provider},
        "purchases": {lines: purchases},
        "retentions": retentions,
        "observations": observations,
    }
    if _foreign(document):
        body["currency"] = {"code": document.currency}
        if document.exchange_rate:
            body["currency"]["exchangeRate"] = document.exchange_rate
    return body


def check(document: Document) -> None:
    """Unbookable for what no look-up in Alegra can make bookable (a credit note, a document
    without a UUID): checked before Alegra is asked anything."""
    _bookable_kind(document)
    marker(document)


def item_names(document: Document) -> list[str]:
    """Items mode: the Alegra item name of each bill line `bill` makes, in order."""
    return [
        _item_name(source.description)
        for source in _sources(document, printed=False) + _local_taxes(document)
    ]


def marker(document: Document) -> str:
    """What the bill's observations carry to find it again: the CUFE or UUID, lower case."""
    if not document.uuid:
        raise Unbookable(
            f"the document has no {_uuid_label(document)}, so its bill could not be told "
            f"apart from another: {BY_HAND}"
        )
    return document.uuid.lower()


def _bookable_kind(document: Document) -> str:
    """The kind in Spanish, for the observations; Unbookable for what is not a purchase."""
    if document.kind == "credit_note":
        corrected = ", ".join(ref.number or ref.uuid or "" for ref in document.references)
        raise Unbookable(
            "Alegra's API does not book supplier credit notes: enter it by hand against the "
            f"bill of {corrected or 'the invoice it corrects'}"
        )
    if document.kind not in BOOKED_KINDS:
        raise Unbookable(f"a {document.kind or 'document of unknown kind'} is not a purchase bill")
    return BOOKED_KINDS[document.kind]


def _foreign(document: Document) -> bool:
    """Whether the document is in a currency other than its country's (the company's)."""
    return document.currency not in (None, COMPANY_CURRENCY[document.country])


def _uuid_label(document: Document) -> str:
    return "CUFE" if document.country == "CO" else "UUID"


def _sources(document: Document, *, printed: bool) -> list[_Source]:
    return [_source(i, line, printed) for i, line in enumerate(document.lines, start=1)]


def _source(position: int, line: Line, printed: bool) -> _Source:
    """A document line as one unit at its net amount; with `printed` (an item's line), at its
    printed quantity and unit price where they make that amount, so that Alegra's price ×
    quantity is the document's amount to the cent."""
    where = f"line {position}"
    amount, discount = number(line.amount), number(line.discount or "0")
    if amount is None or discount is None:
        raise Unbookable(f"{where} has no readable amount ({line.amount}): {BY_HAND}")
    net = amount - discount
    if net < 0:
        raise Unbookable(f"{where} comes to {net}, and Alegra takes no negative lines: {BY_HAND}")
    description, taxes = line.description or "", tuple(line.taxes)
    quantity, unit_price = number(line.quantity), number(line.unit_price)
    if (
        printed
        and quantity is not None
        and unit_price is not None
        and quantity > 0
        and quantity * unit_price == net
    ):
        return _Source(where, description, unit_price, quantity, taxes)
    return _Source(where, description, net, Decimal(1), taxes)


def _local_taxes(document: Document) -> list[_Source]:
    """MX implocal taxes transferred on the whole document, one line each, without tax."""
    sources = []
    for tax in document.taxes:
        if tax.code != LOCAL:
            continue
        rate, amount = number(tax.rate), number(tax.amount)
        if amount is None or amount < 0:
            raise Unbookable(f"the local tax {tax.name} has no readable amount: {BY_HAND}")
        described = " ".join(
            part
            for part in ("Impuesto local", tax.name, f"{plain(rate)} %" if rate else None)
            if part
        )
        sources.append(_Source(f"local tax {tax.name}", described, amount, Decimal(1), ()))
    return sources


def _charged(source: _Source) -> Iterator[Tax]:
    """The taxes that go on the line: not Exento ones, nor those of no rate and no amount."""
    for tax in source.taxes:
        if tax.factor == "Exento":
            continue
        if tax.rate is None and number(tax.amount or "0") == 0:
            continue
        yield tax


def _tax(chart: Chart, document: Document, source: _Source, tax: Tax) -> dict[str, Any]:
    """The chart's tax for one of a line's taxes, by type and rate."""
    label = tax.name or f"tax {tax.code}"
    kind = TAX_TYPES[document.country].get(tax.code)
    if kind is None:
        raise Unbookable(
            f"{source.where} carries {label} (code {tax.code}), a tax facturasd does not book "
            f"in Alegra: {BY_HAND}"
        )
    rate = number(tax.rate)
    if tax.factor == "Cuota" or rate is None:
        raise Unbookable(
            f"{source.where} carries {label} as {tax.rate or 'no rate'} ({tax.factor or 'no'} "
            f"factor), and Alegra's taxes are percentages: {BY_HAND}"
        )
    found = _by_rate(chart.taxes, kind, rate)
    if found is None:
        type_note = f" (type {kind})" if kind != label else ""
        raise Unbookable(
            f"Alegra has no {label} tax{type_note} at {plain(rate)} %: add it in Alegra "
            f"(Configuración → Impuestos), {RETRY}"
        )
    return found


def _by_rate(entries: list[dict[str, Any]], kind: str, rate: Decimal) -> dict[str, Any] | None:
    """The first active tax or retention of type `kind` at `rate`."""
    for entry in entries:
        if entry.get("type") != kind or entry.get("status", "active") != "active":
            continue
        percentage = number(str(entry.get("percentage")))
        if percentage is not None and abs(percentage - rate) <= RATE_TOLERANCE:
            return entry
    return None


def _retention_id(chart: Chart, country: str, code: str, label: str, rate: Decimal) -> str:
    kind = RETENTION_TYPES[country].get(code)
    found = _by_rate(chart.retentions, kind, rate) if kind is not None else None
    if found is None:
        type_note = f" (type {kind})" if kind is not None and kind != label else ""
        raise Unbookable(
            f"Alegra has no {label} retention{type_note} at {plain(rate)} %: add it in Alegra "
            f"(Configuración → Retenciones), {RETRY}"
        )
    return str(found["id"])


def _retentions(
    document: Document, due: Sequence[WithholdingDue], chart: Chart
) -> list[dict[str, str]]:
    if document.country == "CO":
        return [_due_retention(document, item, chart) for item in due]
    local = [tax for tax in document.withholdings if tax.code == LOCAL]
    if local:
        raise Unbookable(
            f"the document withholds the local tax {local[0].name} at {local[0].rate} %, which "
            f"Alegra's retentions do not carry: {BY_HAND}"
        )
    amounts: dict[str, Decimal] = {}
    for position, line in enumerate(document.lines, start=1):
        for tax in line.withholdings:
            rate, amount = number(tax.rate), number(tax.amount)
            label = tax.name or f"tax {tax.code}"
            if rate is None or amount is None:
                raise Unbookable(
                    f"line {position} withholds {label} without a readable rate and amount "
                    f"({tax.rate}, {tax.amount}): {BY_HAND}"
                )
            found = _retention_id(chart, document.country, tax.code, label, rate)
            amounts[found] = amounts.get(found, Decimal(0)) + amount
    withheld = sum(amounts.values(), Decimal(0))
    printed = number(document.totals.withholdings or "0")
    if printed is None or abs(withheld - printed) > CENT * max(len(document.lines), 1):
        raise Unbookable(
            f"the lines withhold {withheld} but the document's withholdings are "
            f"{document.totals.withholdings}: {BY_HAND}"
        )
    return [{"id": found, "amount": _plain(amount)} for found, amount in amounts.items()]


def _due_retention(document: Document, item: WithholdingDue, chart: Chart) -> dict[str, str]:
    """A withholding the checks found due. They compute it in pesos: on an invoice in another
    currency it is taken back to that currency at the document's own rate, as the bill is."""
    rate = Decimal(item.rate)
    label = CO_WITHHOLDINGS.get(item.code, f"withholding {item.code}")
    found = _retention_id(chart, document.country, item.code, label, rate)
    amount = Decimal(item.amount)
    if _foreign(document):
        exchange = number(document.exchange_rate)
        if not exchange:
            raise Unbookable(
                f"{label} is due in pesos but the document, in {document.currency}, prints no "
                f"exchange rate: {BY_HAND}"
            )
        amount = (Decimal(item.base) / exchange * rate / 100).quantize(CENT, ROUND_HALF_UP)
    return {"id": found, "amount": _plain(amount)}


def _refuse_totals_outside_lines(document: Document) -> None:
    """A UBL discount or charge on the whole document is outside its lines (a CFDI's Descuento
    is the sum of its lines' own), and an Alegra bill has nowhere to put it."""
    if document.country != "CO":
        return
    for what, value in (
        ("a discount", document.totals.discount),
        ("charges", document.totals.charges),
    ):
        if number(value or "0"):
            raise Unbookable(
                f"the document has {what} of {value} on its total, outside its lines, and an "
                f"Alegra bill has none: {BY_HAND}"
            )


def _check_sums(document: Document, taxed: list[tuple[_Source, list[dict[str, Any]]]]) -> None:
    """Refuse a bill whose lines, or the taxes Alegra will compute on them, are not the
    invoice's beyond a cent a line of rounding."""
    totals = document.totals
    slack = CENT * max(len(taxed), 1)
    subtotal, discount = number(totals.subtotal), number(totals.discount or "0")
    if subtotal is None or discount is None:
        raise Unbookable(f"the document's subtotal is unreadable ({totals.subtotal}): {BY_HAND}")
    expected = subtotal - discount if document.country == "MX" else subtotal
    lines = sum((source.price * source.quantity for source, _ in taxed), Decimal(0))
    if abs(lines - expected) > slack:
        raise Unbookable(
            f"the bill's lines would add up to {lines} but the document's subtotal after "
            f"discounts is {expected}: {BY_HAND}"
        )
    computed = sum(
        (
            (source.price * source.quantity * _percentage(tax) / 100).quantize(CENT, ROUND_HALF_UP)
            for source, taxes in taxed
            for tax in taxes
        ),
        Decimal(0),
    )
    printed = number(totals.taxes or "0")
    if printed is None or abs(computed - printed) > slack:
        raise Unbookable(
            f"the taxes Alegra would compute add up to {computed} but the document's taxes are "
            f"{totals.taxes}: {BY_HAND}"
        )


def _percentage(entry: dict[str, Any]) -> Decimal:
    """A chart entry's percentage (`_by_rate` only returns entries that have a readable one)."""
    percentage = number(str(entry.get("percentage")))
    assert percentage is not None
    return percentage


def _account(chart: Chart, accounts: Accounts, issuer: str, description: str) -> str:
    """The expense account of a line: the supplier's rule, else the first keyword found in the
    description, else the company's default, else the chart's first expense account."""
    chosen = next(
        (r.account for r in accounts.rules if r.supplier and tax_id(r.supplier) == issuer),
        None,
    ) or next(
        (r.account for r in accounts.rules if r.keyword and fold(r.keyword) in fold(description)),
        accounts.default,
    )
    leaves = list(_expense_leaves(chart.categories))
    if chosen is None:
        if not leaves:
            raise Unbookable(
                "Alegra's chart of accounts has no expense account: add one in Alegra, "
                f"or name one in the company's account rules, {RETRY}"
            )
        return str(leaves[0]["id"])
    for leaf in leaves:
        if str(leaf["id"]) == chosen:
            return chosen
    for leaf in leaves:
        if fold(str(leaf.get("name", ""))) == fold(chosen):
            return str(leaf["id"])
    raise Unbookable(
        f"Alegra has no expense account '{chosen}' (by id or name, one without sub-accounts): "
        f"add it in Alegra or fix the company's account rules, {RETRY}"
    )


def _expense_leaves(categories: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The chart's accounts of type expense that have no sub-accounts, in the tree's order."""
    for category in categories:
        children = category.get("children") or []
        if children:
            yield from _expense_leaves(children)
        elif category.get("type") == "expense":
            yield category


def _item_name(description: str) -> str:
    return _cut(" ".join(description.split()), ITEM_NAME_LENGTH) or "Sin descripción"


def _cut(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def _plain(value: Decimal) -> str:
    return format(value, "f")
