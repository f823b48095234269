"""The local checks on real samples, on generated documents, and on both with one defect each.

Edge tests state the tolerance of checks/base.py by hand: every printed amount may be off by
half a unit of its last decimal, so a comparison allows the sum of those half-units (each
scaled by what multiplies it), and nothing more.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facturasd.checks import Context, check
from facturasd.checks.identity import known_to_sat
from facturasd.config import Company
from facturasd.findings import Finding, message
from facturasd.formats.model import Inspection
from facturasd.formats.reader import read
from tests.documents import (
    CUFE,
    CUSTOMER_NIT,
    ISSUER_RFC,
    RECEIVER_RFC,
    SUPPLIER_NIT,
    UUID,
    Item,
    cfdi40,
    co_invoice,
)
from tests.support import REPO

SAMPLES = REPO.parent / "shared" / "samples"
NOW = datetime(2026, 11, 3, 15, 0, tzinfo=UTC)
# The samples are years old: judged as if received now, but without the age warning (tested
# on its own below).
SAMPLE_CONTEXT = Context(now=datetime(2026, 11, 28, tzinfo=UTC), max_age=timedelta(days=20 * 365))


def checked(data: bytes, context: Context | None = None, **fields: object) -> Inspection:
    context = context or Context(now=NOW)
    if fields:
        context = Context(**{**context.__dict__, **fields})
    [inspection] = read(data, "x.xml")
    return check(inspection, context)


def found(inspection: Inspection, severity: str | None = None) -> set[tuple[str, str]]:
    return {
        (f.code, f.path) for f in inspection.findings if severity is None or f.severity == severity
    }


def problems(inspection: Inspection) -> set[tuple[str, str]]:
    """Errors and warnings (info findings tell, they do not judge)."""
    return found(inspection, "error") | found(inspection, "warning")


def sample(name: str) -> bytes:
    return next(SAMPLES.glob(f"*/{name}")).read_bytes()


def company(**fields: object) -> Company:
    base: dict[str, object] = {
        "slug": "rg-glass",
        "name": "RG GLASS S.A.S.",
        "country": "CO",
        "tax_id": "901956924",
        "city": "11001",
        "withholding_agent": True,
    }
    return Company.model_validate({**base, **fields})


# ── the real samples ──────────────────────────────────────────────────────────────────────

# What each real sample must get (errors and warnings; `ok` = none), and why.
SAMPLE_PROBLEMS: dict[str, set[tuple[str, str]]] = {
    # Production invoices and a credit note, validated by DIAN: correct, nothing to say.
    "siigo-blindacces-FV3.xml": set(),
    "siigo-blindacces-FV7.xml": set(),
    "siigo-blindacces-NC3.xml": set(),
    # Anonymized by its authors: the issuer's NIT no longer matches its check digit.
    "volt-attached-document.xml": {("CO-NIT-CHECK-DIGIT", "issuer.check_digit")},
    # Real CFDI 3.3: correct.
    "cfdi-expresiones__cfdi33-real.xml": set(),
    # Real CFDI 4.0 stamped by SAT's own service (SAT970701NN3: production, not a test
    # marker). The receiver, a municipality, has one of the ~1.5 % of real RFCs whose check
    # digit does not verify: a note (info, test_real_rfcs_that_fail_the_check_digit), no problem.
    "cfdi-expresiones__cfdi40-real.xml": set(),
    # Made with SAT's test certificates (30001…), otherwise consistent: 15390.30 + 2462.45.
    "satcfdi__h-and-e951128469_ingreso_iva16_stamped.xml": {("DOC-TEST-DOCUMENT", "certificate")},
    "satcfdi__pago_h-and-e951128469_ingreso_iva16.xml": {("DOC-TEST-DOCUMENT", "certificate")},
}


@pytest.mark.parametrize("name", sorted(SAMPLE_PROBLEMS))
def test_real_samples_get_exactly_their_findings(name: str) -> None:
    result = checked(sample(name), SAMPLE_CONTEXT)
    assert problems(result) == SAMPLE_PROBLEMS[name]
    errors = {code for code, _ in SAMPLE_PROBLEMS[name] if not code.endswith("CHECK-DIGIT")}
    assert result.verdict == (
        "rejected" if errors or "volt" in name else "warnings" if SAMPLE_PROBLEMS[name] else "ok"
    )


def test_every_sample_is_judged_here() -> None:
    names = {path.name for path in SAMPLES.glob("*/*.xml")}
    nonsense = {
        "satcfdi__cfdv33-signed-tfd.xml",
        "satcfdi__cfdv40-ejemplo-signed-tfd.xml",
        "satcfdi__cfdv40-implocal.xml",
        "satcfdi__cfdv40-min.xml",
    }
    assert names == set(SAMPLE_PROBLEMS) | nonsense


def test_example_cfdis_with_nonsense_values_are_rejected_for_each_of_them() -> None:
    # python-satcfdi's examples print "0.160000"-like rates as 1.600000 and totals that do not
    # add up; the checks must name each defect where it is.
    example33 = problems(checked(sample("satcfdi__cfdv33-signed-tfd.xml"), SAMPLE_CONTEXT))
    assert {
        ("DOC-TEST-DOCUMENT", "certificate"),  # a 40001… test certificate
        ("MX-SUBTOTAL-MISMATCH", "totals.subtotal"),  # concepts 2269400, SubTotal 1000
        ("MX-TAX-AMOUNT", "lines[0].taxes[0].amount"),  # 160 % of 2250000 is not 360000
        ("MX-UNKNOWN-TAX-RATE", "lines[0].taxes[0].rate"),  # IVA 160 % does not exist
        ("MX-TOTAL-MISMATCH", "totals.total"),  # 1000 + 360000 − 247500 is not 1500
        ("MX-UNUSUAL-WITHHOLDING-RATE", "lines[0].withholdings[0].rate"),  # ISR 30 %
    } <= example33
    # TipoDeComprobante P with a SubTotal, a Total and taxes: a payment carries none.
    example40 = problems(checked(sample("satcfdi__cfdv40-ejemplo-signed-tfd.xml"), SAMPLE_CONTEXT))
    assert {
        ("MX-NONZERO-AMOUNTS", "totals.subtotal"),
        ("MX-NONZERO-AMOUNTS", "totals.total"),
        ("MX-TAXES-NOT-ALLOWED", "taxes"),
        ("DOC-TEST-DOCUMENT", "certificate"),
    } <= example40
    # Unstamped: there is no UUID, so SAT never validated them.
    for name in ("satcfdi__cfdv40-min.xml", "satcfdi__cfdv40-implocal.xml"):
        assert ("DOC-MISSING-UUID", "uuid") in problems(checked(sample(name), SAMPLE_CONTEXT))


def test_fv7_withholdings_for_a_bogota_buyer_match_what_the_supplier_printed() -> None:
    result = checked(sample("siigo-blindacces-FV7.xml"), SAMPLE_CONTEXT, companies=[company()])
    due = {(w.code, w.rate, w.base, w.amount, w.concept, w.rule) for w in result.withholdings_due}
    assert due == {
        ("06", "2.5", "17130000.00", "428250.00", "compras", "default:rg-glass"),
        ("07", "1.104", "17130000.00", "189115.20", "compras", "default:rg-glass"),
    }
    codes = [f.code for f in result.findings]
    assert codes.count("CO-WITHHOLDING-DUE") == 2
    assert "CO-WITHHOLDING-DIFFERS" not in codes  # the supplier printed the same two
    # Not a gran contribuyente nor an IVA agent: no ReteIVA, and the finding says why.
    [not_due] = [f for f in result.findings if f.code == "CO-WITHHOLDING-NOT-DUE"]
    assert "ReteIVA" in message(not_due, "es") and "O-13" in message(not_due, "es")
    assert result.verdict == "ok"


def test_reteiva_for_a_gran_contribuyente_and_the_supplier_exemptions() -> None:
    fv7 = sample("siigo-blindacces-FV7.xml")
    gran = checked(fv7, SAMPLE_CONTEXT, companies=[company(tax_level_codes=["O-13"])])
    reteiva = [w for w in gran.withholdings_due if w.code == "05"]
    # 15 % of the invoice's IVA 3,254,700.
    assert [(w.base, w.rate, w.amount) for w in reteiva] == [("3254700", "15", "488205.00")]
    # A supplier that is autorretenedor is withheld no ReteFuente; one in the régimen simple
    # neither ReteFuente nor ReteICA.
    for codes, absent in (("O-15", {"06"}), ("O-47", {"06", "07"})):
        supplier = fv7.index(b"<cac:AccountingSupplierParty>")
        head, tail = fv7[:supplier], fv7[supplier:]
        data = head + tail.replace(b"R-99-PN", codes.encode(), 1)
        result = checked(data, SAMPLE_CONTEXT, companies=[company()])
        assert {w.code for w in result.withholdings_due}.isdisjoint(absent)
        assert any(
            f.code == "CO-WITHHOLDING-NOT-DUE" and codes in message(f, "es")
            for f in result.findings
        )


def test_withholding_thresholds_at_the_edge_of_the_uvt_base() -> None:
    # Purchases: 10 UVT of 2026 (52,374) = 523,740.00. At the base it is due; a cent below not.
    buyer = company(tax_id=CUSTOMER_NIT)
    at = checked(co_invoice([Item("Varilla", "1", "523740.00", "19")]), companies=[buyer])
    below = checked(co_invoice([Item("Varilla", "1", "523739.99", "19")]), companies=[buyer])
    assert [(w.code, w.amount) for w in at.withholdings_due if w.code == "06"] == [
        ("06", "13093.50")
    ]
    assert not [w for w in below.withholdings_due if w.code == "06"]
    [not_due] = [
        f
        for f in below.findings
        if f.code == "CO-WITHHOLDING-NOT-DUE" and f.params["name"] == "ReteFuente"
    ]
    # Why not is kept as data (the phrase and its values), worded in the language asked for.
    assert not_due.params["why"] == {
        "phrase": "below",
        "base": "523739.99",
        "uvt": "10",
        "threshold": "523740",
        "year": 2026,
    }
    assert message(not_due, "es") == (
        "No se practica ReteFuente: la base 523739.99 es menor que 10 UVT (523740 con la UVT "
        "de 2026)"
    )
    assert message(not_due, "en") == (
        "No ReteFuente is withheld: the base 523739.99 is below 10 UVT (523740 at the UVT of 2026)"
    )
    # Services reach their 2 UVT base (104,748) with the same invoice.
    services = company(tax_id=CUSTOMER_NIT, concept="servicios")
    result = checked(co_invoice([Item("Asesoría", "1", "523739.99", "19")]), companies=[services])
    assert [(w.code, w.rate, w.amount) for w in result.withholdings_due if w.code == "06"] == [
        ("06", "4", "20949.60")
    ]


def test_the_concept_comes_from_the_first_matching_rule_and_names_it() -> None:
    rules = [
        {"keyword": "asesoria", "concept": "honorarios"},
        {"supplier": f"{SUPPLIER_NIT}-7", "concept": "servicios"},
    ]
    data = co_invoice([Item("ASESORÍA contable", "1", "1000000.00", "19")])
    by_supplier = checked(data, companies=[company(tax_id=CUSTOMER_NIT, concept_rules=rules)])
    assert {(w.concept, w.rule) for w in by_supplier.withholdings_due} == {
        ("servicios", f"supplier:{SUPPLIER_NIT}")
    }
    by_keyword = checked(data, companies=[company(tax_id=CUSTOMER_NIT, concept_rules=rules[:1])])
    assert {(w.concept, w.rule) for w in by_keyword.withholdings_due} == {
        ("honorarios", "keyword:asesoria")
    }
    assert {w.rate for w in by_keyword.withholdings_due} == {"11", "1.38"}


def test_an_unknown_concept_in_the_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown withholding concept 'compra'"):
        company(concept="compra")
    with pytest.raises(ValueError, match="either supplier or keyword"):
        company(concept_rules=[{"concept": "servicios", "supplier": "1", "keyword": "x"}])


def test_the_age_of_a_real_invoice() -> None:
    fv7 = sample("siigo-blindacces-FV7.xml")  # issued 2026-04-27
    on_time = checked(fv7, now=datetime(2027, 4, 27, 12, tzinfo=UTC), max_age=timedelta(days=365))
    late = checked(fv7, now=datetime(2027, 4, 28, 12, tzinfo=UTC), max_age=timedelta(days=365))
    assert problems(on_time) == set()
    assert problems(late) == {("DOC-OLD-DATE", "issued_at")}
    early = checked(fv7, now=datetime(2026, 4, 26, 23, tzinfo=UTC))
    assert problems(early) == {("DOC-FUTURE-DATE", "issued_at")}


# ── generated documents: each rule passes at its tolerance and fails one unit past it ────

TWO = [Item("Cemento", "2", "50000.00", "19"), Item("Arena", "3", "12345.67", "19")]
MX = [Item("Tornillos", "2", "500.00", "16")]


def test_generated_documents_are_clean() -> None:
    assert checked(co_invoice(TWO)).findings == []
    assert checked(cfdi40([Item("Tornillos", "2", "500.00", "16")])).findings == []


def moved(value: str, delta: str) -> str:
    return str(Decimal(value) + Decimal(delta))


MX_TWO = [
    Item("Tornillos", "2", "500.00", "16", discount="10.00"),
    Item("Clavos", "3", "7.50", "0"),
]
# (document, printed value moved, its clean value, allowed = the sum of the half-units of the
# amounts compared, what one cent more gives). All amounts here are printed in cents.
SUM_EDGES = [
    # two lines and the subtotal: 3 × 0.005
    ("co", "subtotal", "137037.01", "0.01", ("CO-SUBTOTAL-MISMATCH", "totals.subtotal")),
    # the IVA subtotal and its TaxTotal: 2 × 0.005
    ("co", "tax_total.01", "26037.03", "0.01", ("CO-TAX-TOTAL-MISMATCH", "totals.tax_totals.01")),
    # two line taxes and the document's IVA subtotal: 3 × 0.005
    ("co", "tax.19.amount", "26037.03", "0.01", ("CO-LINE-TAXES-MISMATCH", "taxes[0].amount")),
    # subtotal, discount, charges, IVA total and the payable amount: 5 × 0.005
    ("co", "total", "163074.04", "0.02", ("CO-TOTAL-MISMATCH", "totals.total")),
    # two concepts and SubTotal: 3 × 0.005
    ("mx", "subtotal", "1022.50", "0.01", ("MX-SUBTOTAL-MISMATCH", "totals.subtotal")),
    # one concept's Descuento and the document's: 2 × 0.005
    ("mx", "discount", "10.00", "0.01", ("MX-DISCOUNT-MISMATCH", "totals.discount")),
    # the two document Traslados and TotalImpuestosTrasladados: 3 × 0.005
    ("mx", "transferred", "158.40", "0.01", ("MX-TAX-TOTAL-MISMATCH", "totals.taxes")),
    # the concept's IVA and the document's Traslado: 2 × 0.005
    ("mx", "tax.16.amount", "158.40", "0.01", ("MX-LINE-TAXES-MISMATCH", "taxes[0].amount")),
    # SubTotal, Descuento, TotalImpuestosTrasladados and Total: 4 × 0.005
    ("mx", "total", "1170.90", "0.02", ("MX-TOTAL-MISMATCH", "totals.total")),
]


@pytest.mark.parametrize(("country", "key", "clean", "allowed", "expected"), SUM_EDGES)
def test_each_sum_at_its_tolerance_and_one_cent_past(
    country: str, key: str, clean: str, allowed: str, expected: tuple[str, str]
) -> None:
    def build(value: str) -> bytes:
        if country == "co":
            return co_invoice(TWO, override={key: value})
        return cfdi40(MX_TWO, override={key: value})

    assert problems(checked(build(clean))) == set()
    for sign in ("", "-"):
        assert problems(checked(build(moved(clean, sign + allowed)))) == set()
        past = moved(clean, sign + str(Decimal(allowed) + Decimal("0.01")))
        assert expected in problems(checked(build(past)))


def test_co_withholdings_are_not_subtracted_from_the_payable_amount() -> None:
    total = "163074.04"  # 137037.01 + 26037.03
    rete = [("06", "ReteRenta", "2.5")]
    assert problems(checked(co_invoice(TWO, withholdings=rete))) == set()
    subtracted = moved(total, "-3425.93")  # 2.5 % of the subtotal taken off the payable
    result = checked(co_invoice(TWO, withholdings=rete, override={"total": subtracted}))
    assert problems(result) == {("CO-TOTAL-MISMATCH", "totals.total")}


def test_co_discounts_charges_and_prepaid_enter_the_payable_amount() -> None:
    data = co_invoice(TWO, discount="1000.00", charges="250.50", prepaid="50000.00")
    assert problems(checked(data)) == set()
    forgot_prepaid = co_invoice(TWO, prepaid="50000.00", override={"total": "163074.04"})
    assert problems(checked(forgot_prepaid)) == {("CO-TOTAL-MISMATCH", "totals.total")}


def test_co_tax_amount_at_the_tolerance() -> None:
    # 100.03 × 19.00 % = 19.0057; the rate is exact, so allowed: 0.005 (tax) + 0.005 × 0.19
    # (base) = 0.00595: 19.00 and 19.01 pass, 18.99 and 19.02 do not.
    one = [Item("Clavos", "1", "100.03", "19")]
    for printed, clean in (("19.00", True), ("19.01", True), ("18.99", False), ("19.02", False)):
        override = {
            "line0.tax": printed,
            "tax.19.amount": printed,
            "tax_total.01": printed,
            "total": moved("100.03", printed),
        }
        expected = set() if clean else {("CO-TAX-AMOUNT", "lines[0].taxes[0].amount")}
        assert problems(checked(co_invoice(one, override=override))) == expected, printed


def test_co_debit_and_credit_notes() -> None:
    debit = co_invoice(TWO, root="DebitNote", references=[("FE1000", CUFE)])
    assert problems(checked(debit)) == set()  # amounts read from RequestedMonetaryTotal
    wrong = co_invoice(
        TWO, root="DebitNote", references=[("FE1000", CUFE)], override={"total": "1.00"}
    )
    assert problems(checked(wrong)) == {("CO-TOTAL-MISMATCH", "totals.total")}
    credit = co_invoice(TWO, root="CreditNote", references=[("FE1000", CUFE)])
    assert problems(checked(credit)) == set()
    orphan = co_invoice(TWO, root="CreditNote")
    assert problems(checked(orphan)) == {("DOC-NOTE-WITHOUT-REFERENCE", "references")}


def test_mx_line_amount_uses_sats_limits() -> None:
    # Cantidad 2.000 (±0.0005) × ValorUnitario 500.00 (±0.005): SAT's lower limit is
    # trunc(1.9995 × 499.995) = 999.74, its upper roundup(2.0005 × 500.005) = 1000.27.
    item = [Item("Tornillos", "2.000", "500.00", "16")]
    for printed, clean in (
        ("999.74", True),
        ("1000.27", True),
        ("999.73", False),
        ("1000.28", False),
    ):
        result = found(checked(cfdi40(item, override={"line0.amount": printed})))
        assert (("MX-LINE-AMOUNT", "lines[0].amount") not in result) is clean, printed


def test_mx_tax_amount_uses_sats_limits() -> None:
    # Base 100.03 × 0.160000: SAT's limits are trunc(100.025 × 0.16) = 16.00 and
    # roundup(100.035 × 0.16) = 16.01; 16.02 is out.
    item = [Item("Clavos", "1", "100.03", "16")]
    for printed, ok in (("16.00", True), ("16.01", True), ("15.99", False), ("16.02", False)):
        overrides = {
            "line0.tax": printed,
            "tax.16.amount": printed,
            "transferred": printed,
            "total": moved("100.03", printed),
        }
        result = found(checked(cfdi40(item, override=overrides)))
        assert (("MX-TAX-AMOUNT", "lines[0].taxes[0].amount") not in result) is ok


def test_mx_withholdings_and_local_taxes_enter_the_total() -> None:
    fees = [
        Item(
            "Honorarios", "1", "10000.00", "16", withholdings=(("001", "10"), ("002", "10.666667"))
        )
    ]
    assert problems(checked(cfdi40(fees))) == set()  # 10000 + 1600 − 1000 − 1066.67
    result = checked(cfdi40(fees, override={"withheld": "2000.00"}))
    assert ("MX-TAX-TOTAL-MISMATCH", "totals.withholdings") in problems(result)
    hotel = [Item("Hospedaje", "2", "1500.00", "16")]
    local = [("T", "ISH", "3.00"), ("R", "Cedular", "1.00")]
    assert problems(checked(cfdi40(hotel, local=local))) == set()  # 3000 + 480 + 90 − 30
    assert problems(checked(cfdi40(hotel, local=local, override={"total": "3480.00"}))) == {
        ("MX-TOTAL-MISMATCH", "totals.total")
    }


def test_mx_payment_and_transfer_carry_zero_amounts() -> None:
    pago = sample("satcfdi__pago_h-and-e951128469_ingreso_iva16.xml")
    result = checked(pago, SAMPLE_CONTEXT, accept_test_documents=True)
    assert problems(result) == set()
    paid = pago.replace(b' Total="0"', b' Total="100.00"', 1)
    assert ("MX-NONZERO-AMOUNTS", "totals.total") in problems(checked(paid, SAMPLE_CONTEXT))
    transfer = cfdi40([Item("Mercancía", "1", "100.00", "16")], kind="T")
    assert {
        ("MX-NONZERO-AMOUNTS", "totals.subtotal"),
        ("MX-TAXES-NOT-ALLOWED", "taxes"),
    } <= problems(checked(transfer))


# ── rates and codes ───────────────────────────────────────────────────────────────────────


def test_co_rates() -> None:
    sixteen = checked(co_invoice([Item("Cemento", "1", "100.00", "16")]))
    assert {
        ("CO-UNKNOWN-TAX-RATE", "taxes[0].rate"),
        ("CO-UNKNOWN-TAX-RATE", "lines[0].taxes[0].rate"),
    } == found(sixteen, "error")
    assert sixteen.verdict == "rejected"
    for rate in ("0", "5", "19"):
        assert problems(checked(co_invoice([Item("Cemento", "1", "100.00", rate)]))) == set()
    # ReteICA is municipal: FV7's 1.104 % is fine; 2 % is beyond any municipality's rate.
    ica = [("07", "ReteICA", "1.104")]
    assert problems(checked(co_invoice(TWO, withholdings=ica))) == set()
    high = checked(co_invoice(TWO, withholdings=[("07", "ReteICA", "2")]))
    assert problems(high) == {("CO-UNKNOWN-WITHHOLDING-RATE", "withholdings[0].rate")}
    fv7 = sample("siigo-blindacces-FV7.xml").replace(b"<cbc:ID>01</cbc:ID>", b"<cbc:ID>99</cbc:ID>")
    assert ("CO-UNKNOWN-TAX-CODE", "taxes[0].code") in problems(checked(fv7, SAMPLE_CONTEXT))


def test_mx_rates_from_sats_catalogue() -> None:
    fifteen = checked(cfdi40([Item("Tornillos", "1", "100.00", "15")]))
    assert ("MX-UNKNOWN-TAX-RATE", "lines[0].taxes[0].rate") in found(fifteen, "error")
    for rate in ("0", "8", "16"):
        assert problems(checked(cfdi40([Item("Tornillos", "1", "100.00", rate)]))) == set()
    unusual = [Item("Servicio", "1", "100.00", "16", withholdings=(("001", "30"),))]
    assert problems(checked(cfdi40(unusual))) == {
        ("MX-UNUSUAL-WITHHOLDING-RATE", "lines[0].withholdings[0].rate")
    }
    beyond = [Item("Servicio", "1", "100.00", "16", withholdings=(("001", "40"),))]
    assert ("MX-UNKNOWN-TAX-RATE", "lines[0].withholdings[0].rate") in problems(
        checked(cfdi40(beyond))
    )
    exempt = sample("cfdi-expresiones__cfdi40-real.xml").replace(
        b'TipoFactor="Tasa"', b'TipoFactor="Exento"', 1
    )
    assert ("MX-EXEMPT-WITH-AMOUNT", "lines[0].taxes[0]") in problems(
        checked(exempt, SAMPLE_CONTEXT)
    )
    odd = sample("cfdi-expresiones__cfdi40-real.xml").replace(
        b'TipoFactor="Tasa"', b'TipoFactor="Tazza"', 1
    )
    assert ("MX-UNKNOWN-FACTOR", "lines[0].taxes[0].factor") in problems(
        checked(odd, SAMPLE_CONTEXT)
    )


# ── identity ──────────────────────────────────────────────────────────────────────────────


def test_nits() -> None:
    bad = checked(co_invoice(TWO, override={"supplier.nit": "90012A456"}))
    assert problems(bad) == {("CO-BAD-NIT", "issuer.tax_id")}
    wrong_dv = checked(co_invoice(TWO, override={"customer.dv": "2"}))
    assert problems(wrong_dv) == {("CO-NIT-CHECK-DIGIT", "receiver.check_digit")}
    [finding] = wrong_dv.findings
    assert "901956924" in message(finding, "es") and "1" in message(finding, "es")  # digit 1


def test_rfcs() -> None:
    bad = checked(cfdi40(MX, override={"issuer": "ABC0102"}))
    assert problems(bad) == {("MX-BAD-RFC", "issuer.tax_id")}
    public = checked(cfdi40(MX, receiver=("XAXX010101000", "PUBLICO EN GENERAL", "616", "06600")))
    assert problems(public) == {("MX-GENERIC-RECEIVER", "receiver.tax_id")}


# Real RFCs whose check digit does not verify: Banco Santander México, AXA Seguros.
REAL_ODD_RFCS = ("BSM970519DU8", "ASE931116231")


@pytest.mark.parametrize("rfc", REAL_ODD_RFCS)
def test_real_rfcs_that_fail_the_check_digit_are_a_note_not_a_warning(rfc: str) -> None:
    result = checked(cfdi40(MX, override={"issuer": rfc}))
    assert problems(result) == set()
    assert (result.verdict, result.score) == ("ok", 1.0)
    [note] = [f for f in result.findings if f.code == "MX-RFC-CHECK-DIGIT"]
    assert (note.severity, note.path, note.params) == ("info", "issuer.tax_id", {"value": rfc})
    assert message(note, "es") == (
        f"El dígito verificador del RFC {rfc} no cuadra (pasa con cerca del 1.5 % de los RFC "
        "reales)"
    )
    # SAT's Vigente names the RFC: the note goes, nothing else does.
    known = known_to_sat(result)
    assert [f.code for f in known.findings] == [
        f.code for f in result.findings if f.code != "MX-RFC-CHECK-DIGIT"
    ]
    assert known.verdict == "ok"


def test_sats_answer_drops_only_the_notes_about_the_rfcs_it_was_asked_with() -> None:
    sample_result = checked(sample("cfdi-expresiones__cfdi40-real.xml"), SAMPLE_CONTEXT)
    assert found(sample_result, "info") >= {("MX-RFC-CHECK-DIGIT", "receiver.tax_id")}
    assert ("MX-RFC-CHECK-DIGIT", "receiver.tax_id") not in found(known_to_sat(sample_result))
    # A note whose RFC is not the document's (the document read again differently) stays.
    result = checked(cfdi40(MX, override={"issuer": REAL_ODD_RFCS[0]}))
    assert result.document is not None
    other = result.document.model_copy(
        update={"issuer": result.document.issuer.model_copy(update={"tax_id": ISSUER_RFC})}
    )
    kept = known_to_sat(result.model_copy(update={"document": other}))
    assert ("MX-RFC-CHECK-DIGIT", "issuer.tax_id") in found(kept)


MX_COMPANY = {
    "slug": "receptora",
    "name": "Receptora de Prueba",
    "country": "MX",
    "tax_id": RECEIVER_RFC,
    "regime": "601",
    "postal_code": "06600",
}


def test_receivers_with_companies_configured() -> None:
    data = cfdi40(MX)
    assert problems(checked(data, companies=[company()])) == {
        ("DOC-RECEIVER-NOT-COMPANY", "receiver.tax_id")
    }
    # Case and accents aside, the CFDI 4.0 receiver is the company's tax certificate.
    ours = Company.model_validate({**MX_COMPANY, "name": "RECEPTORÁ  de prueba"})
    assert problems(checked(data, companies=[ours])) == set()
    moved_company = Company.model_validate({**MX_COMPANY, "postal_code": "06700", "regime": "626"})
    assert problems(checked(data, companies=[moved_company])) == {
        ("MX-RECEIVER-MISMATCH", "receiver.postal_code"),
        ("MX-RECEIVER-MISMATCH", "receiver.regime"),
    }
    seller = Company.model_validate({**MX_COMPANY, "tax_id": ISSUER_RFC, "slug": "emisora"})
    own = checked(data, companies=[seller])
    assert found(own) == {("DOC-OWN-SALE", "issuer.tax_id")}
    assert own.verdict == "ok"


# ── document sanity ───────────────────────────────────────────────────────────────────────


def test_keys_test_documents_and_duplicates() -> None:
    short = checked(co_invoice(TWO, override={"uuid": CUFE[:-1]}))
    assert problems(short) == {("DOC-BAD-UUID", "uuid")}
    test = checked(co_invoice(TWO, override={"profile": "2"}))
    assert problems(test) == {("DOC-TEST-DOCUMENT", "environment")}
    accepted = checked(co_invoice(TWO, override={"profile": "2"}), accept_test_documents=True)
    assert found(accepted) == {("DOC-TEST-ACCEPTED", "environment")}
    assert accepted.verdict == "ok"
    kit = checked(cfdi40(MX, override={"certificate": "30001000000400002434"}))
    assert problems(kit) == {("DOC-TEST-DOCUMENT", "certificate")}
    kit_rfc = checked(cfdi40(MX, override={"issuer": "EKU9003173C9"}))
    assert problems(kit_rfc) == {("DOC-TEST-DOCUMENT", "issuer.tax_id")}
    bad_uuid = checked(cfdi40(MX, override={"uuid": "not-a-uuid"}))
    assert problems(bad_uuid) == {("DOC-BAD-UUID", "uuid")}

    ledger = {UUID: "factura #12, recibida 2026-11-02"}
    again = checked(cfdi40(MX), seen=ledger.get)
    assert problems(again) == {("DOC-DUPLICATE", "uuid")}
    assert "factura #12" in message(again.findings[0], "es")
    assert problems(checked(co_invoice(TWO), seen=ledger.get)) == set()


def test_a_finding_is_data_that_reads_in_spanish_and_in_english() -> None:
    [wrong] = checked(co_invoice(TWO, override={"total": "1.00"})).findings
    assert json.loads(wrong.model_dump_json()) == {
        "code": "CO-TOTAL-MISMATCH",
        "severity": "error",
        "path": "totals.total",
        "params": {"printed": "1.00", "computed": "163074.04"},
    }
    assert message(wrong, "es").startswith("El total a pagar impreso es 1.00")
    assert message(wrong, "en").startswith("The printed amount payable is 1.00")


def test_a_finding_stored_with_its_message_is_shown_as_stored() -> None:
    # What versions before findings were data wrote in the ledger: one language, no params.
    old = Finding.model_validate(
        {
            "code": "CO-TOTAL-MISMATCH",
            "severity": "error",
            "message": "El total a pagar impreso es 1.00, pero …",
            "path": "totals.total",
        }
    )
    assert message(old, "es") == message(old, "en") == "El total a pagar impreso es 1.00, pero …"


# ── properties ────────────────────────────────────────────────────────────────────────────

amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("999999.99"), places=2)
quantities = st.decimals(min_value=Decimal("0.001"), max_value=Decimal("500"), places=3)


@st.composite
def co_items(draw: st.DrawFn) -> list[Item]:
    count = draw(st.integers(1, 30))
    return [
        Item(
            f"Producto {i}",
            str(draw(quantities)),
            str(draw(amounts)),
            draw(st.sampled_from(["0", "5", "19"])),
        )
        for i in range(count)
    ]


@st.composite
def mx_items(draw: st.DrawFn) -> list[Item]:
    count = draw(st.integers(1, 30))
    items = []
    for i in range(count):
        price = draw(amounts)
        quantity = draw(quantities)
        discount = draw(st.sampled_from([None, "0.50"]))
        if discount and quantity * price < 1:
            discount = None
        withholdings = draw(
            st.sampled_from([(), (("001", "10"),), (("001", "1.25"), ("002", "10.666667"))])
        )
        items.append(
            Item(
                f"Concepto {i}",
                str(quantity),
                str(price),
                draw(st.sampled_from(["0", "8", "16"])),
                discount,
                withholdings,
            )
        )
    return items


@settings(max_examples=60, deadline=None)
@given(items=co_items(), withheld=st.booleans())
def test_consistent_co_invoices_pass_clean(items: list[Item], withheld: bool) -> None:
    rete = [("06", "ReteRenta", "2.5"), ("07", "ReteICA", "0.966")] if withheld else []
    assert problems(checked(co_invoice(items, withholdings=rete))) == set()


@settings(max_examples=60, deadline=None)
@given(items=mx_items())
def test_consistent_cfdis_pass_clean(items: list[Item]) -> None:
    assert problems(checked(cfdi40(items))) == set()


# Past the tolerance of any document here: at most 30 lines of 2-decimal amounts allow
# 31 × 0.005 = 0.155 on a sum.
PAST = st.sampled_from(["0.16", "-0.16", "1.00", "-250.00", "1000000.00"])


@settings(max_examples=60, deadline=None)
@given(items=co_items(), delta=PAST, target=st.sampled_from(["subtotal", "total", "tax_total.01"]))
def test_one_co_amount_off_is_caught_where_it_is(
    items: list[Item], delta: str, target: str
) -> None:
    clean = read(co_invoice(items), "x.xml")[0].document
    assert clean is not None
    printed = {
        "subtotal": clean.totals.subtotal,
        "total": clean.totals.total,
        "tax_total.01": clean.totals.tax_totals["01"],
    }[target]
    expected = {
        "subtotal": ("CO-SUBTOTAL-MISMATCH", "totals.subtotal"),
        "total": ("CO-TOTAL-MISMATCH", "totals.total"),
        "tax_total.01": ("CO-TAX-TOTAL-MISMATCH", "totals.tax_totals.01"),
    }[target]
    assert printed is not None
    result = checked(co_invoice(items, override={target: moved(printed, delta)}))
    assert expected in found(result, "error")


@settings(max_examples=60, deadline=None)
@given(items=mx_items(), delta=PAST, target=st.sampled_from(["subtotal", "total", "transferred"]))
def test_one_cfdi_amount_off_is_caught_where_it_is(
    items: list[Item], delta: str, target: str
) -> None:
    clean = read(cfdi40(items), "x.xml")[0].document
    assert clean is not None
    printed = {
        "subtotal": clean.totals.subtotal,
        "total": clean.totals.total,
        "transferred": clean.totals.taxes,
    }[target]
    expected = {
        "subtotal": ("MX-SUBTOTAL-MISMATCH", "totals.subtotal"),
        "total": ("MX-TOTAL-MISMATCH", "totals.total"),
        "transferred": ("MX-TAX-TOTAL-MISMATCH", "totals.taxes"),
    }[target]
    assert printed is not None
    result = checked(cfdi40(items, override={target: moved(printed, delta)}))
    assert expected in found(result, "error")


# ── the catalogue ─────────────────────────────────────────────────────────────────────────


def test_the_findings_catalogue_is_complete_and_documented() -> None:
    import re
    import string

    from facturasd.findings import CATALOGUE, markdown

    source = "\n".join(
        p.read_text(encoding="utf-8")
        for p in (REPO / "facturasd").rglob("*.py")
        if p.name != "findings.py"
    )
    emitted = set(re.findall(r'"((?:FMT|DOC|CO|MX)-[A-Z0-9-]+)"', source))
    from facturasd.errors import FormatError

    emitted |= {cls.code for cls in FormatError.__subclasses__()}
    assert emitted == set(CATALOGUE)  # every code reported is catalogued, and every one is used
    for code, entry in CATALOGUE.items():
        fields = {
            lang: {f for _, f, _, _ in string.Formatter().parse(entry.message[lang]) if f}
            for lang in ("es", "en")
        }
        assert fields["es"] == fields["en"], code
        assert all(entry.action[lang] for lang in ("es", "en")), code
    documented = (REPO / "docs" / "findings.md").read_text(encoding="utf-8")
    assert markdown() in documented, "run: python -m facturasd.findings docs/findings.md"


def test_inspect_prints_findings_and_exits_1_on_an_error(tmp_path: Path) -> None:
    from tests.test_inspect import inspect

    wrong = tmp_path / "wrong total.xml"
    wrong.write_bytes(co_invoice(TWO, override={"total": "1.00"}))
    result = inspect(str(wrong), "--lang", "en")
    assert result.returncode == 1
    assert "CO-TOTAL-MISMATCH" in result.stdout and "totals.total" in result.stdout
    config = tmp_path / "facturasd.toml"
    config.write_text(
        "[[companies]]\nslug = 'rg-glass'\nname = 'RG GLASS S.A.S.'\ncountry = 'CO'\n"
        "tax_id = '901956924'\ncity = '11001'\nwithholding_agent = true\n",
        encoding="utf-8",
    )
    fv7 = str(SAMPLES / "dian" / "siigo-blindacces-FV7.xml")
    result = inspect("--config", str(config), fv7, "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert [w["code"] for w in payload["withholdings_due"]] == ["06", "07"]
    assert payload["rules"].startswith("co ")


# ── what a review found: odd values, currencies, companies on both sides ──────────────────

ODD = ["1e5", "NaN", "", "١٠٠٠٠٠.٠٠", "1" * 30, "0." + "0" * 27 + "1", "12,50", "-"]


@pytest.mark.parametrize("value", ODD)
def test_an_odd_amount_is_a_finding_never_an_exception(value: str) -> None:
    for key, path in (("total", "totals.total"), ("line0.amount", "lines[0].amount")):
        result = checked(co_invoice(TWO, override={key: value}))
        assert ("DOC-BAD-AMOUNT", path) in problems(result) or (
            "DOC-MISSING-AMOUNT",
            path,
        ) in problems(result)
    mx = checked(cfdi40(MX, override={"total": value}))
    assert {("DOC-BAD-AMOUNT", "totals.total"), ("DOC-MISSING-AMOUNT", "totals.total")} & problems(
        mx
    )


def test_a_real_invoice_with_its_iva_raised_is_caught() -> None:
    # FV7 with IVA 3,255,500 instead of 3,254,700 everywhere, the totals made to agree: only
    # base × 19 % can tell, and the rate is exact.
    fv7 = sample("siigo-blindacces-FV7.xml")
    raised = fv7.replace(b">3254700<", b">3255500<").replace(b"20384700.00", b"20385500.00")
    assert raised.count(b"3255500") >= 3
    result = problems(checked(raised, SAMPLE_CONTEXT))
    assert ("CO-TAX-AMOUNT", "lines[0].taxes[0].amount") in result


def test_sats_limits_accept_what_sat_accepts() -> None:
    # Cantidad 14.16 × ValorUnitario 13.66 = 193.4256: SAT accepts from trunc(14.155 × 13.655)
    # = 193.28; base 99.99 × 0.160000 = 15.9984: SAT accepts trunc(99.985 × 0.16) = 15.99.
    item = [Item("Tela", "14.16", "13.66", "16")]
    assert ("MX-LINE-AMOUNT", "lines[0].amount") not in found(
        checked(cfdi40(item, override={"line0.amount": "193.28"}))
    )
    base = [Item("Hilo", "1", "99.99", "16")]
    low = {
        "line0.tax": "15.99",
        "tax.16.amount": "15.99",
        "transferred": "15.99",
        "total": "115.98",
    }
    assert problems(checked(cfdi40(base, override=low))) == set()


def test_a_document_tax_no_concept_carries_is_checked() -> None:
    extra = (
        b'<cfdi:Traslado Base="100.00" Impuesto="003" TipoFactor="Tasa" TasaOCuota="0.080000" '
        b'Importe="50.00"/>'
    )
    data = cfdi40(MX, override={"transferred": "210.00", "total": "1210.00"})
    data = data.replace(
        b"</cfdi:Traslados></cfdi:Impuestos><cfdi:Complemento>",
        extra + b"</cfdi:Traslados></cfdi:Impuestos><cfdi:Complemento>",
    )
    assert {
        ("MX-TAX-AMOUNT", "taxes[1].amount"),  # 8 % of 100.00 is 8.00
        ("MX-LINE-TAXES-MISMATCH", "taxes[1].amount"),  # no concept carries IEPS
    } <= problems(checked(data))


def test_line_tax_messages_name_the_rate_once() -> None:
    result = checked(co_invoice(TWO, override={"tax.19.amount": "26038.03"}))
    [text] = [message(f, "en") for f in result.findings if f.code == "CO-LINE-TAXES-MISMATCH"]
    assert text == "IVA 19 % adds up to 26037.03 in the lines, but 26038.03 in the document"


def test_zero_groups_and_zero_discounts_may_be_left_out() -> None:
    # A 0 % line with no 0 % subtotal in the document: nothing is missing.
    zero = co_invoice([Item("Libro", "1", "100.00", "0")])
    start, end = zero.index(b"<cac:TaxTotal>"), zero.index(b"</cac:TaxTotal>") + 15
    without_group = zero[:start] + zero[end:]  # the document's TaxTotal; the line keeps its own
    assert b"<cac:TaxTotal>" in without_group
    assert problems(checked(without_group)) == set()
    concept_zero = cfdi40([Item("Tornillos", "2", "500.00", "16", discount="0.00")])
    no_doc_discount = concept_zero.replace(b' Descuento="0.00" Moneda', b" Moneda")
    assert b'Descuento="0.00"' in no_doc_discount
    assert problems(checked(no_doc_discount)) == set()


def test_negative_amounts_missing_lines_and_missing_dates() -> None:
    negative = checked(co_invoice(TWO, override={"line0.amount": "-100000.00"}))
    assert ("DOC-NEGATIVE-AMOUNT", "lines[0].amount") in problems(negative)
    no_lines = checked(co_invoice([]))
    assert ("DOC-NO-LINES", "lines") in problems(no_lines)
    undated = checked(cfdi40(MX).replace(b'Fecha="2026-11-02T10:00:00" ', b""))
    assert ("DOC-MISSING-DATE", "issued_at") in problems(undated)


def test_foreign_currency_withholdings_are_in_pesos() -> None:
    buyer = company(tax_id=CUSTOMER_NIT)
    usd = [Item("Software", "1", "5000.00", "19")]
    converted = checked(co_invoice(usd, currency="USD", exchange_rate="4000.00"), companies=[buyer])
    # 5,000 USD × 4,000 = 20,000,000 pesos: far above 10 UVT.
    assert [(w.code, w.base, w.amount) for w in converted.withholdings_due if w.code == "06"] == [
        ("06", "20000000.0000", "500000.00")
    ]
    unknown = checked(co_invoice(usd, currency="USD"), companies=[buyer])
    assert problems(unknown) == {("CO-WITHHOLDING-NO-RATE", "exchange_rate")}
    assert unknown.withholdings_due == []


def test_intercompany_purchases_and_own_sales_to_the_public() -> None:
    seller = company(slug="proveedora", tax_id=SUPPLIER_NIT, name="Proveedora de Prueba SAS")
    buyer = company(tax_id=CUSTOMER_NIT)
    large = [Item("Varilla", "1", "10000000.00", "19")]
    result = checked(co_invoice(large), companies=[seller, buyer])
    assert not [f for f in result.findings if f.code == "DOC-OWN-SALE"]
    assert {w.code for w in result.withholdings_due} == {"06", "07"}
    own = Company.model_validate({**MX_COMPANY, "tax_id": ISSUER_RFC, "slug": "emisora"})
    public = cfdi40(MX, receiver=("XAXX010101000", "PUBLICO EN GENERAL", "616", "06600"))
    sale = checked(public, companies=[own])
    assert found(sale) == {("DOC-OWN-SALE", "issuer.tax_id")}


def test_platform_withholding_rates_are_usual() -> None:
    uber = [Item("Viaje", "1", "100.00", "16", withholdings=(("001", "2.1"),))]
    assert problems(checked(cfdi40(uber))) == set()


def test_support_documents_name_their_key_cuds() -> None:
    data = co_invoice(TWO, override={"uuid": "x"}).replace(
        b"<cbc:InvoiceTypeCode>01<", b"<cbc:InvoiceTypeCode>05<"
    )
    [bad] = [f for f in checked(data).findings if f.code == "DOC-BAD-UUID"]
    assert message(bad, "en").startswith("CUDS 'x'")
