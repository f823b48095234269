"""The bill a document becomes in Alegra: real samples and generated documents read by the real
parsers and checked by the real checks, mapped onto a chart like the local Alegra server's
seed; each bill's figures computed as Alegra computes them and compared with the document's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facturasd.alegra.bill import (
    AccountRule,
    Accounts,
    Chart,
    Unbookable,
    bill,
    item_names,
    marker,
)
from facturasd.checks import Context, check
from facturasd.config import Company
from facturasd.formats.model import Document, Inspection, WithholdingDue
from facturasd.formats.reader import read
from tests.documents import CUSTOMER_NIT, SUPPLIER_NIT, UUID, Item, cfdi40, co_invoice
from tests.support import SAMPLES

CENT = Decimal("0.01")
RETRY = "then `facturasd retry`"
BY_HAND = "enter this bill by hand in Alegra"


# The local Alegra server's seed (contract A), with ids of our own choosing.
TAXES = [
    {"id": "1", "name": "IVA", "percentage": "19.00", "type": "IVA", "status": "active"},
    {"id": "2", "name": "IVA", "percentage": "5.00", "type": "IVA", "status": "active"},
    {"id": "3", "name": "IVA", "percentage": "0.00", "type": "IVA", "status": "active"},
    {"id": "4", "name": "INC", "percentage": "8.00", "type": "ICO", "status": "active"},
    {"id": "5", "name": "IVA", "percentage": "16.00", "type": "IVA", "status": "active"},
    {"id": "6", "name": "IVA", "percentage": "8.00", "type": "IVA", "status": "active"},
]
RETENTION_RATES = [
    *(("ReteFuente", r, "FUENTE") for r in ("0.1", "1", "2", "2.5", "3.5", "4", "6", "10", "11")),
    ("ReteIVA", "15", "IVA"),
    *(("ReteICA", rate, "ICA") for rate in ("0.414", "0.69", "0.966", "1.104", "1.38")),
    ("ISR", "1.25", "ISR"),
    ("ISR", "10", "ISR"),
    ("IVA retenido", "4", "IVA"),
    ("IVA retenido", "10.6667", "IVA"),
]
RETENTIONS = [
    {"id": str(i), "name": name, "percentage": rate, "type": type_, "status": "active"}
    for i, (name, rate, type_) in enumerate(RETENTION_RATES, start=101)
]


def _leaf(id_: str, name: str, type_: str = "expense") -> dict[str, Any]:
    return {"id": id_, "name": name, "type": type_, "readOnly": False, "children": []}


def _group(id_: str, name: str, type_: str, *children: dict[str, Any]) -> dict[str, Any]:
    return {"id": id_, "name": name, "type": type_, "readOnly": True, "children": list(children)}


CATEGORIES = [
    _group("1", "Activos", "asset", _leaf("1105", "Caja", "asset")),
    _group("2", "Pasivos", "liability", _leaf("2205", "Proveedores", "liability")),
    _group("4", "Ingresos", "income", _leaf("4135", "Comercio", "income")),
    _group(
        "5",
        "Gastos",
        "expense",
        _group(
            "51",
            "Operacionales de administración",
            "expense",
            _leaf("5105", "Compras y gastos generales"),
            _leaf("5135", "Servicios"),
            _leaf("5140", "Gastos legales"),
            _leaf("5145", "Mantenimiento y reparaciones"),
            _leaf("5195", "Diversos"),
        ),
    ),
    _group("6", "Costos de ventas", "expense", _leaf("6135", "Compras de mercancías")),
]
CHART = Chart(taxes=TAXES, retentions=RETENTIONS, categories=CATEGORIES)
TAX = {tax["id"]: tax for tax in TAXES}
RETENTION = {retention["id"]: retention for retention in RETENTIONS}
NO_RULES = Accounts(default=None)


def retention_id(type_: str, rate: str) -> str:
    [found] = [r["id"] for r in RETENTIONS if r["type"] == type_ and r["percentage"] == rate]
    return str(found)


# ── reading and checking, as the daemon does before booking ───────────────────────────────

# A Colombian buyer in Bogotá that withholds, as in tests/test_checks.py: the receiver of the
# Colombian samples and the customer of the generated invoices.
BUYER = {
    "slug": "rg-glass",
    "name": "RG GLASS S.A.S.",
    "country": "CO",
    "tax_id": CUSTOMER_NIT,
    "city": "11001",
    "withholding_agent": True,
}
CONTEXT = Context(
    now=datetime(2026, 11, 3, 15, 0, tzinfo=UTC), companies=[Company.model_validate(BUYER)]
)
# The samples are years old: judged as if received now, without the age warning.
SAMPLE_CONTEXT = replace(
    CONTEXT, now=datetime(2026, 11, 28, tzinfo=UTC), max_age=timedelta(days=20 * 365)
)


def checked(data: bytes, context: Context = CONTEXT) -> tuple[Document, Inspection]:
    [inspection] = read(data, "x.xml")
    inspection = check(inspection, context)
    assert inspection.document is not None
    return inspection.document, inspection


def booked(
    data: bytes, accounts: Accounts = NO_RULES, chart: Chart = CHART, **options: Any
) -> tuple[Document, dict[str, Any]]:
    document, inspection = checked(data)
    return document, bill(
        document, inspection.withholdings_due, chart, accounts, provider="7", **options
    )


def reason(
    document: Document,
    due: Sequence[WithholdingDue] = (),
    chart: Chart = CHART,
    accounts: Accounts = NO_RULES,
    **options: Any,
) -> str:
    """Why `document` cannot be booked."""
    with pytest.raises(Unbookable) as raised:
        bill(document, due, chart, accounts, provider="7", **options)
    return str(raised.value)


def refused(data: bytes, chart: Chart = CHART, **options: Any) -> str:
    document, inspection = checked(data)
    return reason(document, inspection.withholdings_due, chart, **options)


# ── the bill's figures as Alegra computes them (contract A) ───────────────────────────────


def lines_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    [(_, lines)] = body["purchases"].items()
    return list(lines)


def figures(body: dict[str, Any]) -> dict[str, Decimal]:
    """subtotal, tax, retention and total of the bill Alegra would make of `body`."""
    subtotal = tax = Decimal(0)
    for line in lines_of(body):
        amount = Decimal(line["price"]) * Decimal(line["quantity"])
        subtotal += amount
        for entry in line["tax"]:
            percentage = Decimal(TAX[entry["id"]]["percentage"])
            tax += (amount * percentage / 100).quantize(CENT, ROUND_HALF_UP)
    retention = sum((Decimal(r["amount"]) for r in body["retentions"]), Decimal(0))
    return {
        "subtotal": subtotal,
        "tax": tax,
        "retention": retention,
        "total": subtotal + tax - retention,
    }


def amount(value: str | None) -> Decimal:
    return Decimal(value or "0")


def assert_adds_up(document: Document, body: dict[str, Any], local: Decimal = Decimal(0)) -> None:
    """The bill's lines are the document's subtotal after discounts (plus its local taxes,
    booked as lines), its taxes the document's, and what is left to pay the document's."""
    totals = document.totals
    found = figures(body)
    discount = amount(totals.discount) if document.country == "MX" else Decimal(0)
    assert found["subtotal"] == amount(totals.subtotal) - discount + local
    assert found["tax"] == amount(totals.taxes)
    if document.country == "MX":
        assert found["total"] == amount(totals.total)
    else:
        # A Colombian PayableAmount does not subtract the withholdings.
        assert found["total"] + found["retention"] == amount(totals.total)


# ── the real samples ──────────────────────────────────────────────────────────────────────


def sample(name: str) -> bytes:
    return next(SAMPLES.glob(f"*/{name}")).read_bytes()


# Each bookable invoice: (its lines' tax ids, its retentions (type, rate, amount)).
BOOKABLE: dict[str, tuple[list[list[str]], set[tuple[str, str, str]]]] = {
    "siigo-blindacces-FV3.xml": (
        [["1"]],
        {("FUENTE", "2.5", "442500.00"), ("ICA", "1.104", "195408.00")},
    ),
    # The retentions the buyer owes, which are the ones the supplier printed.
    "siigo-blindacces-FV7.xml": (
        [["1"]],
        {("FUENTE", "2.5", "428250.00"), ("ICA", "1.104", "189115.20")},
    ),
    # Sold to someone else (no company of ours withholds): IVA 0 %.
    "volt-attached-document.xml": ([["3"]], set()),
    # Two lines and, in the implocal complement, the local lodging tax IH 2.50 %: 27.43.
    "cfdi-expresiones__cfdi33-real.xml": ([["5"], ["5"], []], set()),
    "cfdi-expresiones__cfdi40-real.xml": ([["5"]], set()),
    "satcfdi__h-and-e951128469_ingreso_iva16_stamped.xml": ([["5"]], set()),
}
REFUSED = {
    "siigo-blindacces-NC3.xml": "Alegra's API does not book supplier credit notes: enter it by "
    "hand against the bill of FV6",
    "satcfdi__pago_h-and-e951128469_ingreso_iva16.xml": "a payment is not a purchase bill",
    "satcfdi__cfdv40-ejemplo-signed-tfd.xml": "a payment is not a purchase bill",
    "satcfdi__cfdv40-implocal.xml": "a payment is not a purchase bill",
    # SAT's example values: IVA at 160 %.
    "satcfdi__cfdv33-signed-tfd.xml": "Alegra has no IVA tax at 160 %: add it in Alegra "
    f"(Configuración → Impuestos), {RETRY}",
    "satcfdi__cfdv40-min.xml": "the document has no UUID, so its bill could not be told apart "
    f"from another: {BY_HAND}",
}


def test_every_sample_is_booked_or_refused_here() -> None:
    assert {path.name for path in SAMPLES.glob("*/*.xml")} == set(BOOKABLE) | set(REFUSED)


@pytest.mark.parametrize("name", sorted(BOOKABLE))
def test_each_sample_invoice_becomes_a_bill_that_adds_up(name: str) -> None:
    document, inspection = checked(sample(name), SAMPLE_CONTEXT)
    body = bill(document, inspection.withholdings_due, CHART, NO_RULES, provider="7")
    taxes, retentions = BOOKABLE[name]
    local = sum((amount(t.amount) for t in document.taxes if t.code == "implocal"), Decimal(0))
    assert_adds_up(document, body, local)
    assert [[tax["id"] for tax in line["tax"]] for line in lines_of(body)] == taxes
    assert {
        (RETENTION[r["id"]]["type"], RETENTION[r["id"]]["percentage"], r["amount"])
        for r in body["retentions"]
    } == retentions
    assert body["provider"] == {"id": "7"}
    assert "currency" not in body
    assert document.uuid is not None and marker(document) == document.uuid
    assert body["observations"].endswith(f" {marker(document)}")


def test_a_sample_bill_carries_the_document_s_dates_number_and_cufe() -> None:
    document, inspection = checked(sample("siigo-blindacces-FV7.xml"), SAMPLE_CONTEXT)
    body = bill(document, inspection.withholdings_due, CHART, NO_RULES, provider="7")
    assert (body["date"], body["dueDate"]) == ("2026-04-27", "2026-05-31")
    assert body["observations"] == (
        "Factura FV7 · CUFE 5f7378ecb3f8e03ca76ed07ea789a9bed99cb08ac604b7903be827a55099fd268"
        "ed47fc1667a564f808cff967cfbdb0b"
    )
    assert lines_of(body) == [
        {
            "id": "5105",
            "price": "17130000",
            "quantity": "1",
            "tax": [{"id": "1"}],
            "observations": "SET DE VIDRIOS PARA LAND ROVER RANGE ROVERL460 - 21MM",
        }
    ]
    # Mexico: no due date printed, so the issue date; no number printed, so none shown.
    mx, _ = checked(sample("cfdi-expresiones__cfdi40-real.xml"), SAMPLE_CONTEXT)
    body = bill(mx, [], CHART, NO_RULES, provider="7")
    assert (body["date"], body["dueDate"]) == ("2022-01-12", "2022-01-12")
    assert body["observations"] == "Factura · UUID 04bf2854-fe7d-4377-9196-71248f060abb"


def test_a_local_tax_becomes_a_line_of_its_own_so_the_total_is_the_invoice_s() -> None:
    document, _ = checked(sample("cfdi-expresiones__cfdi33-real.xml"), SAMPLE_CONTEXT)
    body = bill(document, [], CHART, NO_RULES, provider="7")
    assert lines_of(body)[-1] == {
        "id": "5105",
        "price": "27.43",
        "quantity": "1",
        "tax": [],
        "observations": "Impuesto local IH 2.5 %",
    }
    assert figures(body)["total"] == Decimal("2010.01")


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_samples_that_are_not_bookable_say_why(name: str) -> None:
    document, inspection = checked(sample(name), SAMPLE_CONTEXT)
    assert reason(document, inspection.withholdings_due) == REFUSED[name]


# ── generated documents ───────────────────────────────────────────────────────────────────


def inc(data: bytes, percent: str = "8.00", code: str = "04", name: str = "INC") -> bytes:
    """A generated UBL invoice whose tax at `percent` is another scheme (INC by default)."""
    iva = f"<cbc:Percent>{percent}</cbc:Percent><cac:TaxScheme><cbc:ID>01</cbc:ID>"
    other = f"<cbc:Percent>{percent}</cbc:Percent><cac:TaxScheme><cbc:ID>{code}</cbc:ID>"
    return data.replace(iva.encode(), other.encode()).replace(
        f"{other}<cbc:Name>IVA</cbc:Name>".encode(), f"{other}<cbc:Name>{name}</cbc:Name>".encode()
    )


def test_colombian_lines_with_iva_19_5_0_and_inc_8() -> None:
    items = [
        Item("Cemento gris", "3", "25000.00", "19"),
        Item("Leche entera", "10", "3150.50", "5"),
        Item("Arroz", "2", "4200.00", "0"),
        Item("Almuerzo ejecutivo", "4", "18500.00", "8"),
    ]
    document, body = booked(inc(co_invoice(items)))
    assert [t.code for line in document.lines for t in line.taxes] == ["01", "01", "01", "04"]
    assert_adds_up(document, body)
    assert [(line["price"], line["quantity"], line["tax"]) for line in lines_of(body)] == [
        ("75000.00", "1", [{"id": "1"}]),
        ("31505.00", "1", [{"id": "2"}]),
        ("8400.00", "1", [{"id": "3"}]),
        ("74000.00", "1", [{"id": "4"}]),
    ]
    # Below the buyer's minimum bases: nothing withheld.
    assert body["retentions"] == []


def test_colombian_withholdings_due_become_retentions_with_their_amounts() -> None:
    items = [
        Item("Varilla corrugada", "10", "150000.00", "19"),
        Item("Alambre", "5", "20000", "19"),
    ]
    # A gran contribuyente (O-13) also withholds ReteIVA.
    gran = replace(
        CONTEXT, companies=[Company.model_validate({**BUYER, "tax_level_codes": ["O-13"]})]
    )
    document, inspection = checked(co_invoice(items), gran)
    due = inspection.withholdings_due
    assert {w.code for w in due} == {"05", "06", "07"}
    body = bill(document, due, CHART, NO_RULES, provider="7")
    assert_adds_up(document, body)
    assert body["retentions"] == [
        {"id": retention_id(type_, w.rate), "amount": w.amount}
        for w in due
        for type_ in [{"05": "IVA", "06": "FUENTE", "07": "ICA"}[w.code]]
    ]
    assert {(RETENTION[r["id"]]["name"], r["amount"]) for r in body["retentions"]} == {
        ("ReteFuente", "40000.00"),  # 2.5 % of 1,600,000
        ("ReteIVA", "45600.00"),  # 15 % of the IVA 304,000
        ("ReteICA", "17664.00"),  # 1.104 % of 1,600,000
    }


def test_mexican_lines_with_iva_16_8_0_exento_discounts_and_withholdings() -> None:
    items = [
        Item(
            "Honorarios", "1", "10000.00", "16", withholdings=(("001", "10"), ("002", "10.666667"))
        ),
        Item("Asesoría", "2", "2500.00", "16", discount="500.00", withholdings=(("001", "10"),)),
        Item("Frontera", "3", "120.00", "8"),
        Item("Libros", "2", "350.00", "0"),
        Item("Medicinas", "1", "80.00", "0"),
    ]
    data = cfdi40(items)
    # The last concept exempt (Exento: no rate, no amount).
    head, tail = data.split(b'Descripcion="Medicinas"')
    zero = b'TipoFactor="Tasa" TasaOCuota="0.000000" Importe="0.00"'
    data = head + b'Descripcion="Medicinas"' + tail.replace(zero, b'TipoFactor="Exento"', 1)
    document, body = booked(data)
    assert document.lines[4].taxes[0].factor == "Exento"
    assert_adds_up(document, body)
    assert [(line["price"], line["tax"]) for line in lines_of(body)] == [
        ("10000.00", [{"id": "5"}]),
        ("4500.00", [{"id": "5"}]),  # 5,000.00 less its 500.00 discount
        ("360.00", [{"id": "6"}]),
        ("700.00", [{"id": "3"}]),
        ("80.00", []),
    ]
    # ISR of both lines in one retention; IVA withheld at two thirds of 16 %.
    assert body["retentions"] == [
        {"id": retention_id("ISR", "10"), "amount": "1450.00"},
        {"id": retention_id("IVA", "10.6667"), "amount": "1066.67"},
    ]
    assert body["observations"] == f"Factura F-77 · UUID {UUID}"
    assert marker(document) == UUID


def test_a_support_document_is_booked_and_long_descriptions_are_cut() -> None:
    long = "Servicio de transporte de carga " * 40
    data = co_invoice([Item(long.strip(), "1", "80000.00", "0")]).replace(
        b"<cbc:InvoiceTypeCode>01</cbc:InvoiceTypeCode>",
        b"<cbc:InvoiceTypeCode>05</cbc:InvoiceTypeCode>",
    )
    document, body = booked(data)
    assert document.kind == "support_document"
    assert body["observations"].startswith("Documento soporte FE1001 · CUFE ")
    [line] = lines_of(body)
    assert len(line["observations"]) == 500 and line["observations"].endswith(
        "Servicio de transpo…"
    )
    [name] = item_names(document)
    assert len(name) == 150 and name.startswith("Servicio de transporte") and name[-1] == "…"


def test_foreign_currency_is_kept_with_the_document_s_rate() -> None:
    usd = co_invoice(
        [Item("Licencia", "1", "5000.00", "19")], currency="USD", exchange_rate="4000.00"
    )
    document, inspection = checked(usd)
    body = bill(document, inspection.withholdings_due, CHART, NO_RULES, provider="7")
    assert body["currency"] == {"code": "USD", "exchangeRate": "4000.00"}
    assert_adds_up(document, body)
    # Due in pesos (500,000 and 220,800 on 20,000,000), booked in dollars at the same rate.
    assert {(RETENTION[r["id"]]["type"], r["amount"]) for r in body["retentions"]} == {
        ("FUENTE", "125.00"),
        ("ICA", "55.20"),
    }
    mx = cfdi40([Item("Servidor", "1", "900.00", "16")]).replace(
        b'Moneda="MXN"', b'Moneda="USD" TipoCambio="17.25"'
    )
    _, body = booked(mx)
    assert body["currency"] == {"code": "USD", "exchangeRate": "17.25"}
    no_rate = cfdi40([Item("Servidor", "1", "900.00", "16")]).replace(
        b'Moneda="MXN"', b'Moneda="EUR"'
    )
    _, body = booked(no_rate)
    assert body["currency"] == {"code": "EUR"}


CO_RATES = st.sampled_from(["19", "5", "0"])
MX_RATES = st.sampled_from(["16", "8", "0"])
QUANTITIES = st.integers(min_value=1, max_value=40).map(str)
PRICES = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999.99"), places=2).map(str)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(QUANTITIES, PRICES, CO_RATES), min_size=1, max_size=6))
def test_generated_colombian_invoices_add_up(lines: list[tuple[str, str, str]]) -> None:
    items = [Item(f"Producto {i}", q, p, r) for i, (q, p, r) in enumerate(lines)]
    document, body = booked(co_invoice(items))
    assert_adds_up(document, body)
    assert len(lines_of(body)) == len(items)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(QUANTITIES, PRICES, MX_RATES, st.booleans(), st.booleans()),
        min_size=1,
        max_size=6,
    )
)
def test_generated_mexican_invoices_add_up(lines: list[tuple[str, str, str, bool, bool]]) -> None:
    items = [
        Item(
            f"Concepto {i}",
            q,
            p,
            r,
            discount=str((Decimal(p) / 10).quantize(CENT)) if discounted else None,
            withholdings=(("001", "10"), ("002", "10.666667")) if withheld else (),
        )
        for i, (q, p, r, discounted, withheld) in enumerate(lines)
    ]
    document, body = booked(cfdi40(items))
    assert_adds_up(document, body)
    withheld = sum(
        (amount(w.amount) for line in document.lines for w in line.withholdings), Decimal(0)
    )
    assert figures(body)["retention"] == withheld


# ── what cannot be booked, and the reason a person reads ──────────────────────────────────

TWO = [Item("Cemento", "2", "50000.00", "19"), Item("Arena", "1", "30000.00", "5")]


def test_a_tax_rate_alegra_does_not_have_is_named() -> None:
    no_iva_8 = replace(CHART, taxes=[t for t in TAXES if t["id"] != "6"])
    assert refused(cfdi40([Item("Frontera", "1", "100.00", "8")]), no_iva_8) == (
        f"Alegra has no IVA tax at 8 %: add it in Alegra (Configuración → Impuestos), {RETRY}"
    )
    no_inc = replace(CHART, taxes=[t for t in TAXES if t["type"] != "ICO"])
    assert refused(inc(co_invoice([Item("Almuerzo", "1", "20000.00", "8")])), no_inc) == (
        "Alegra has no INC tax (type ICO) at 8 %: add it in Alegra (Configuración → Impuestos), "
        f"{RETRY}"
    )
    # A rate close to one Alegra has is not it (beyond 0.001 points).
    near = co_invoice([Item("Cemento", "1", "100000.00", "19")], override={"line0.rate": "19.01"})
    assert refused(near).startswith("Alegra has no IVA tax at 19.01 %")
    # An inactive tax is not one to book on.
    inactive = replace(
        CHART, taxes=[{**t, "status": "inactive"} if t["id"] == "1" else t for t in TAXES]
    )
    assert refused(co_invoice(TWO), inactive).startswith("Alegra has no IVA tax at 19 %")


def test_taxes_facturasd_does_not_book_are_named() -> None:
    ica = inc(co_invoice([Item("Servicio", "1", "100000.00", "1")]), "1.00", "03", "ICA")
    assert (
        refused(ica)
        == f"line 1 carries ICA (code 03), a tax facturasd does not book in Alegra: {BY_HAND}"
    )
    bolsas = inc(co_invoice(TWO), "5.00", "22", "INC Bolsas")
    assert refused(bolsas) == (
        f"line 2 carries INC Bolsas (code 22), a tax facturasd does not book in Alegra: {BY_HAND}"
    )
    ieps = cfdi40([Item("Refresco", "1", "100.00", "8")]).replace(
        b'Impuesto="002"', b'Impuesto="003"'
    )
    assert refused(ieps) == (
        f"Alegra has no IEPS tax at 8 %: add it in Alegra (Configuración → Impuestos), {RETRY}"
    )
    with_ieps = replace(
        CHART, taxes=[*TAXES, {"id": "9", "percentage": "8", "type": "IEPS", "status": "active"}]
    )
    _, body = booked(ieps, chart=with_ieps)
    assert lines_of(body)[0]["tax"] == [{"id": "9"}]
    cuota = ieps.replace(
        b'TipoFactor="Tasa" TasaOCuota="0.080000"', b'TipoFactor="Cuota" TasaOCuota="1.500000"'
    )
    assert refused(cuota, with_ieps) == (
        "line 1 carries IEPS as 1.500000 (Cuota factor), and Alegra's taxes are percentages: "
        f"{BY_HAND}"
    )


def test_a_retention_alegra_does_not_have_is_named() -> None:
    no_fuente = replace(CHART, retentions=[r for r in RETENTIONS if r["type"] != "FUENTE"])
    big = co_invoice([Item("Varilla", "1", "10000000.00", "19")])
    assert refused(big, no_fuente) == (
        "Alegra has no ReteFuente retention (type FUENTE) at 2.5 %: add it in Alegra "
        f"(Configuración → Retenciones), {RETRY}"
    )
    no_isr = replace(CHART, retentions=[r for r in RETENTIONS if r["type"] != "ISR"])
    fees = cfdi40([Item("Honorarios", "1", "1000.00", "16", withholdings=(("001", "10"),))])
    assert refused(fees, no_isr) == (
        "Alegra has no ISR retention at 10 %: add it in Alegra (Configuración → Retenciones), "
        f"{RETRY}"
    )
    local = cfdi40([Item("Obra", "1", "1000.00", "16")], local=[("R", "Cinco al millar", "0.5")])
    assert refused(local) == (
        "the document withholds the local tax Cinco al millar at 0.5 %, which Alegra's "
        f"retentions do not carry: {BY_HAND}"
    )


def test_credit_notes_and_what_is_not_a_purchase_are_refused() -> None:
    note = co_invoice(TWO, root="CreditNote", references=[("FE1000", "ab" * 48)])
    assert refused(note) == (
        "Alegra's API does not book supplier credit notes: enter it by hand against the bill "
        "of FE1000"
    )
    assert refused(cfdi40(TWO, kind="E")) == (
        "Alegra's API does not book supplier credit notes: enter it by hand against the bill "
        "of the invoice it corrects"
    )
    document, _ = checked(cfdi40(TWO))
    for kind in ("payroll", "payment", "transfer"):
        other = document.model_copy(update={"kind": kind})
        assert reason(other) == f"a {kind} is not a purchase bill"
    # A debit note is booked like an invoice.
    debit, body = booked(co_invoice(TWO, root="DebitNote", references=[("FE1000", "ab" * 48)]))
    assert debit.kind == "debit_note" and body["observations"].startswith(
        "Nota débito FE1001 · CUFE"
    )
    assert_adds_up(debit, body)


def test_a_bill_that_would_not_add_up_to_the_invoice_is_refused() -> None:
    lines = co_invoice(TWO, override={"subtotal": "130000.01", "tax_exclusive": "130000.01"})
    # The subtotal printed is a cent a line away: rounding, booked.
    booked(lines)
    wrong = co_invoice(TWO, override={"subtotal": "130500.00"})
    assert refused(wrong) == (
        "the bill's lines would add up to 130000.00 but the document's subtotal after discounts "
        f"is 130500.00: {BY_HAND}"
    )
    taxes = co_invoice(TWO, override={"tax_total.01": "20600.00"})
    assert refused(taxes) == (
        "the taxes Alegra would compute add up to 20500.00 but the document's taxes are "
        f"20600.00: {BY_HAND}"
    )
    discounted = co_invoice(TWO, discount="1000.00")
    assert refused(discounted) == (
        "the document has a discount of 1000.00 on its total, outside its lines, and an Alegra "
        f"bill has none: {BY_HAND}"
    )
    negative = cfdi40([Item("Ajuste", "1", "100.00", "16", discount="150.00")])
    assert refused(negative) == (
        f"line 1 comes to -50.00, and Alegra takes no negative lines: {BY_HAND}"
    )


# ── accounts and items ────────────────────────────────────────────────────────────────────


def accounts_of(body: dict[str, Any]) -> list[str]:
    return [line["id"] for line in lines_of(body)]


def test_the_expense_account_by_supplier_keyword_default_or_the_first_expense_account() -> None:
    data = co_invoice(
        [Item("ASESORÍA contable", "1", "100000.00", "19"), Item("Papelería", "1", "5000.00", "19")]
    )
    rules = (
        AccountRule(account="mantenimiento y reparaciones", keyword="papeleria"),
        AccountRule(account="5140", keyword="Asesoria"),
        AccountRule(
            account="6135", supplier=f"{SUPPLIER_NIT[:3]}.{SUPPLIER_NIT[3:6]}.{SUPPLIER_NIT[6:]}-7"
        ),
    )
    # The supplier's rule wins for every line (its NIT written with dots and check digit).
    assert accounts_of(booked(data, Accounts("5195", rules))[1]) == ["6135", "6135"]
    # Else the first keyword found in each line, accents and case ignored; ids or names.
    assert accounts_of(booked(data, Accounts("5195", rules[:2]))[1]) == ["5140", "5145"]
    # Else the company's default, by id or by name.
    assert accounts_of(booked(data, Accounts("5195", rules[:1]))[1]) == ["5195", "5145"]
    assert accounts_of(booked(data, Accounts("SERVICIOS"))[1]) == ["5135", "5135"]
    # Else the chart's first expense account without sub-accounts.
    assert accounts_of(booked(data, NO_RULES)[1]) == ["5105", "5105"]


def test_an_account_alegra_does_not_have_is_named() -> None:
    data = co_invoice(TWO)
    for missing in ("Publicidad", "51", "4135"):  # unknown; a group; not an expense
        assert reason(checked(data)[0], accounts=Accounts(missing)) == (
            f"Alegra has no expense account '{missing}' (by id or name, one without "
            f"sub-accounts): add it in Alegra or fix the company's account rules, {RETRY}"
        )
    no_expenses = replace(CHART, categories=CATEGORIES[:3])
    assert refused(data, no_expenses) == (
        "Alegra's chart of accounts has no expense account: add one in Alegra, or name one in "
        f"the company's account rules, {RETRY}"
    )


def test_items_mode_names_each_line_and_keeps_printed_quantities_when_exact() -> None:
    document, _ = checked(sample("cfdi-expresiones__cfdi33-real.xml"), SAMPLE_CONTEXT)
    names = item_names(document)
    assert names == ["Paquete", "Restaurante", "Impuesto local IH 2.5 %"]
    items = {name: str(i) for i, name in enumerate(names, start=40)}
    body = bill(document, [], CHART, NO_RULES, provider="7", lines="items", items=items)
    assert "categories" not in body["purchases"]
    # 2.00 × 677.83 is not the printed 1,355.67: one unit at the amount.
    assert [
        (line["id"], line["price"], line["quantity"]) for line in body["purchases"]["items"]
    ] == [
        ("40", "1355.67", "1"),
        ("41", "353.45", "1.00"),
        ("42", "27.43", "1"),
    ]
    assert_adds_up(document, body, Decimal("27.43"))
    # A description spread over lines and spaces is one item name.
    spaced = cfdi40([Item("Tornillo   de\tacero", "12", "2.50", "16")])
    document, _ = checked(spaced)
    assert item_names(document) == ["Tornillo de acero"]
    body = bill(
        document, [], CHART, NO_RULES, provider="7", lines="items", items={"Tornillo de acero": "3"}
    )
    assert [(line["price"], line["quantity"]) for line in lines_of(body)] == [("2.50", "12")]
    assert reason(document, lines="items", items={}) == (
        f"Alegra has no item 'Tornillo de acero': add it in Alegra, {RETRY}"
    )
