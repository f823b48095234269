"""CFDI into the normalized document: the real samples, read by hand, and generated variants."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from facturasd.errors import FormatError
from facturasd.formats import cfdi
from facturasd.formats.model import Document
from facturasd.formats.safexml import parse
from tests.documents import Item, cfdi40
from tests.support import REPO

SAMPLES = REPO.parent / "shared" / "samples" / "cfdi"


def read(name: str) -> tuple[str, Document]:
    return cfdi.parse(parse((SAMPLES / name).read_bytes()))


@dataclass
class Expected:
    """Values read from each file with a text editor, not from the parser."""

    format: str
    kind: str
    number: str | None
    uuid: str | None
    issuer: str
    receiver: str
    currency: str
    subtotal: str
    total: str
    taxes: dict[str, list[str | None]] = field(default_factory=dict)  # code -> amounts
    withholdings: dict[str, list[str | None]] = field(default_factory=dict)
    lines: int = 1
    references: list[str] = field(default_factory=list)

    @property
    def series_folio(self) -> tuple[str | None, str | None]:
        """Serie and Folio as printed: the number split at its dash."""
        if self.number is None:
            return None, None
        series, folio = self.number.split("-")
        return series, folio


EXPECTED = {
    "cfdi-expresiones__cfdi40-real.xml": Expected(
        "cfdi-4.0",
        "invoice",
        None,
        "04bf2854-fe7d-4377-9196-71248f060abb",
        "CSM190311AH6",
        "MCI7306249Y1",
        "MXN",
        "396.00",
        "459.36",
        {"002": ["63.36"]},
    ),
    "cfdi-expresiones__cfdi33-real.xml": Expected(
        "cfdi-3.3",
        "invoice",
        "H-11541",
        "cee4be01-adfa-4deb-8421-add60f0bedac",
        "POT9207213D6",
        "DIM8701081LA",
        "MXN",
        "1709.12",
        "2010.01",
        {"002": ["273.46"], "implocal": ["27.43"]},
        lines=2,
    ),
    "satcfdi__h-and-e951128469_ingreso_iva16_stamped.xml": Expected(
        "cfdi-4.0",
        "invoice",
        "A-123456",
        "6d7434a6-e3f2-47ad-9e4c-08849946afa0",
        "H&E951128469",
        "KIJ0906199R1",
        "MXN",
        "15390.30",
        "17852.75",
        {"002": ["2462.45"]},
    ),
    "satcfdi__pago_h-and-e951128469_ingreso_iva16.xml": Expected(
        "cfdi-4.0",
        "payment",
        "A-123456",
        "5b64ada3-aa4c-40b4-a2f5-572ced52be31",
        "H&E951128469",
        "KIJ0906199R1",
        "XXX",
        "0",
        "0",
        references=["6d7434a6-e3f2-47ad-9e4c-08849946afa0"],
    ),
    "satcfdi__cfdv40-ejemplo-signed-tfd.xml": Expected(
        "cfdi-4.0",
        "payment",
        "A-123ABC",
        "499e9a70-36ac-448a-bbd9-f3f52102e4be",
        "AAA010101AAA",
        "BASJ600902KL9",
        "MXN",
        "1000",
        "1500",
        {"002": ["360000"]},
        {"001": ["247000"], "003": ["500"]},
        lines=3,
        references=["ed1752fe-e865-4ff2-bfe1-0f552e770dc9"],
    ),
    "satcfdi__cfdv33-signed-tfd.xml": Expected(
        "cfdi-3.3",
        "invoice",
        "A-123ABC",
        "ea8152af-b116-4812-817a-3b4f9617c99c",
        "AAA010101AAA",
        "BASJ600902KL9",
        "MXN",
        "1000",
        "1500",
        {"002": ["360000"]},
        {"001": ["247000"], "003": ["500"]},
        lines=3,
        references=["ed1752fe-e865-4ff2-bfe1-0f552e770dc9"],
    ),
    "satcfdi__cfdv40-implocal.xml": Expected(
        "cfdi-4.0",
        "payment",
        None,
        None,
        "AAA010101AAA",
        "BASJ600902KL9",
        "XXX",
        "0",
        "0",
        {"implocal": ["789.12", "789.12"]},
        {"implocal": ["678.90", "678.90"]},
        references=["f4f09aef-57f2-4be0-a828-87d1a80ed61c"],
    ),
    "satcfdi__cfdv40-min.xml": Expected(
        "cfdi-4.0",
        "invoice",
        None,
        None,
        "AAA010101AAA",
        "BASJ600902KL9",
        "MXN",
        "1000",
        "1500",
    ),
}


def test_every_cfdi_sample_is_covered() -> None:
    assert {p.name for p in SAMPLES.glob("*.xml")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_key_values(name: str) -> None:
    want = EXPECTED[name]
    fmt, doc = read(name)
    assert fmt == want.format
    assert (doc.country, doc.kind, doc.number, doc.uuid) == (
        "MX",
        want.kind,
        want.number,
        want.uuid,
    )
    assert (doc.series, doc.folio) == want.series_folio
    assert (doc.issuer.tax_id, doc.receiver.tax_id) == (want.issuer, want.receiver)
    assert (doc.issuer.id_type, doc.issuer.check_digit) == ("rfc", None)
    assert doc.currency == want.currency
    assert (doc.totals.subtotal, doc.totals.total) == (want.subtotal, want.total)
    taxes: dict[str, list[str | None]] = {}
    for tax in doc.taxes:
        taxes.setdefault(tax.code, []).append(tax.amount)
    withholdings: dict[str, list[str | None]] = {}
    for tax in doc.withholdings:
        withholdings.setdefault(tax.code, []).append(tax.amount)
    assert taxes == want.taxes
    assert withholdings == want.withholdings
    assert len(doc.lines) == want.lines
    assert [r.uuid for r in doc.references] == want.references


def test_real_40_details() -> None:
    _, doc = read("cfdi-expresiones__cfdi40-real.xml")
    assert doc.issued_at == "2022-01-12T12:39:08"
    assert (doc.payment.method, doc.payment.form, doc.payment.use) == ("PUE", "01", "G03")
    assert (doc.issuer.regime, doc.receiver.regime, doc.receiver.postal_code) == (
        "626",
        "603",
        "54700",
    )
    assert doc.issuer.name == "CREATIVITY AND SOMETHING MORE SAS DE CV"
    [line] = doc.lines
    assert line.amount == "396.00"
    [tax] = line.taxes
    assert (tax.code, tax.name, tax.factor, tax.rate, tax.base, tax.amount) == (
        "002",
        "IVA",
        "Tasa",
        "16.0000",
        "396.00",
        "63.36",
    )
    assert doc.totals.taxes == "63.36"
    assert doc.stamp is not None
    assert (doc.stamp.provider, doc.stamp.at) == ("SAT970701NN3", "2022-01-12T12:39:34")
    _, unstamped = read("satcfdi__cfdv40-min.xml")
    assert unstamped.stamp is None


def test_payment_references_name_the_invoice_it_pays() -> None:
    _, payment = read("satcfdi__pago_h-and-e951128469_ingreso_iva16.xml")
    _, invoice = read("satcfdi__h-and-e951128469_ingreso_iva16_stamped.xml")
    [reference] = payment.references
    assert (reference.number, reference.uuid) == (invoice.number, invoice.uuid)


def test_a_payment_names_each_invoice_it_settles_by_series_and_folio_apart() -> None:
    """The payment complement's DoctoRelacionado: Serie 2026 Folio 8 is not Serie 202 Folio 68."""
    data = (SAMPLES / "satcfdi__pago_h-and-e951128469_ingreso_iva16.xml").read_bytes()
    for series, folio, number in (("2026", "8", "2026-8"), ("202", "68", "202-68")):
        related = data.replace(
            b'IdDocumento="6d7434a6-e3f2-47ad-9e4c-08849946afa0" Serie="A" Folio="123456"',
            f'IdDocumento="6d7434a6-e3f2-47ad-9e4c-08849946afa0" Serie="{series}" '
            f'Folio="{folio}"'.encode(),
        )
        [reference] = normalized(related).references
        assert reference.number == number


def with_series_folio(data: bytes, series: str | None, folio: str | None) -> bytes:
    """`data` (a CFDI of tests.documents, Serie F Folio 77) with this Serie and Folio, each
    left out when None."""
    printed = "".join(
        f' {name}="{value}"' for name, value in (("Serie", series), ("Folio", folio)) if value
    )
    assert b' Serie="F" Folio="77"' in data
    return data.replace(b' Serie="F" Folio="77"', printed.encode(), 1)


@pytest.mark.parametrize(
    ("series", "folio", "number"),
    [
        ("2026", "8", "2026-8"),
        ("202", "68", "202-68"),
        ("A", None, "A"),
        (None, "13", "13"),
        (None, None, None),
    ],
)
def test_series_and_folio_are_kept_apart(
    series: str | None, folio: str | None, number: str | None
) -> None:
    data = cfdi40([Item("Servicio", "1", "100.00", "16")])
    doc = normalized(with_series_folio(data, series, folio))
    assert (doc.series, doc.folio, doc.number) == (series, folio, number)


# ── generated documents: the same content in different clothes ───────────────────────────

CFDI4 = "http://www.sat.gob.mx/cfd/4"
TFD = "http://www.sat.gob.mx/TimbreFiscalDigital"
UUID = "A1B2C3D4-0000-4000-8000-123456789ABC"


def make_cfdi(
    *,
    prefix: str = "cfdi",
    total: str = "1160.00",
    reorder: bool = False,
    name: str = "FERRETERÍA AÑIL SA DE CV",
) -> str:
    """A stamped CFDI 4.0 invoice; `prefix=""` uses a default namespace."""
    p = f"{prefix}:" if prefix else ""
    xmlns = f'xmlns:{prefix}="{CFDI4}"' if prefix else f'xmlns="{CFDI4}"'
    root_attrs = [
        'Version="4.0"',
        'Serie="F"',
        'Folio="77"',
        'Fecha="2026-11-02T10:00:00"',
        'SubTotal="1000.00"',
        'Moneda="MXN"',
        f'Total="{total}"',
        'TipoDeComprobante="I"',
        'MetodoPago="PUE"',
        'FormaPago="03"',
    ]
    if reorder:
        root_attrs.reverse()
    return (
        f"<{p}Comprobante {xmlns} {' '.join(root_attrs)}>"
        f'<{p}Emisor Rfc="EKU9003173C9" Nombre="{name}" RegimenFiscal="601"/>'
        f'<{p}Receptor Rfc="XIA190128J61" Nombre="XENON" UsoCFDI="G03" '
        f'DomicilioFiscalReceptor="36257" RegimenFiscalReceptor="601"/>'
        f'<{p}Conceptos><{p}Concepto ClaveProdServ="01010101" Cantidad="2" ClaveUnidad="H87" '
        f'Descripcion="Tornillos" ValorUnitario="500.00" Importe="1000.00" ObjetoImp="02">'
        f'<{p}Impuestos><{p}Traslados><{p}Traslado Base="1000.00" Impuesto="002" '
        f'TipoFactor="Tasa" TasaOCuota="0.160000" Importe="160.00"/></{p}Traslados>'
        f"</{p}Impuestos></{p}Concepto></{p}Conceptos>"
        f'<{p}Impuestos TotalImpuestosTrasladados="160.00"><{p}Traslados>'
        f'<{p}Traslado Base="1000.00" Impuesto="002" TipoFactor="Tasa" TasaOCuota="0.160000" '
        f'Importe="160.00"/></{p}Traslados></{p}Impuestos>'
        f'<{p}Complemento><tfd:TimbreFiscalDigital xmlns:tfd="{TFD}" Version="1.1" '
        f'UUID="{UUID}" FechaTimbrado="2026-11-02T10:01:00" RfcProvCertif="SAT970701NN3"/>'
        f"</{p}Complemento></{p}Comprobante>"
    )


def normalized(data: bytes) -> Document:
    return cfdi.parse(parse(data))[1]


def test_the_same_content_gives_the_same_document() -> None:
    base = make_cfdi()
    expected = normalized(base.encode())
    declaration = '<?xml version="1.0" encoding="ISO-8859-1"?>\n'
    variants = {
        "prefix renamed": make_cfdi(prefix="c").encode(),
        "default namespace": make_cfdi(prefix="").encode(),
        "attributes reordered": make_cfdi(reorder=True).encode(),
        "BOM": b"\xef\xbb\xbf" + base.encode(),
        "ISO-8859-1": (declaration + base).encode("iso-8859-1"),
    }
    for label, data in variants.items():
        assert normalized(data) == expected, label
    assert expected.issuer.name == "FERRETERÍA AÑIL SA DE CV"
    assert (expected.number, expected.uuid) == ("F-77", UUID.lower())


def test_amounts_keep_their_printed_decimals() -> None:
    assert normalized(make_cfdi(total="1160").encode()).totals.total == "1160"
    assert normalized(make_cfdi(total="1160.000000").encode()).totals.total == "1160.000000"


def test_exento_has_no_rate_and_no_amount() -> None:
    data = make_cfdi().replace(
        'TipoFactor="Tasa" TasaOCuota="0.160000" Importe="160.00"', 'TipoFactor="Exento"', 1
    )
    [tax] = normalized(data.encode()).lines[0].taxes
    assert (tax.factor, tax.rate, tax.amount, tax.base) == ("Exento", None, None, "1000.00")


def test_other_documents_are_refused_with_a_code() -> None:
    unknown_type = make_cfdi().replace('TipoDeComprobante="I"', 'TipoDeComprobante="Z"')
    with pytest.raises(FormatError) as caught:
        normalized(unknown_type.encode())
    assert caught.value.code == "FMT-UNKNOWN-DOCUMENT"
    assert "TipoDeComprobante 'Z'" in str(caught.value)


def test_cfdi_32_is_read() -> None:
    cfd3 = "http://www.sat.gob.mx/cfd/3"
    data = (
        f'<cfdi:Comprobante xmlns:cfdi="{cfd3}" version="3.2" serie="B" folio="9" '
        'fecha="2016-05-01T09:00:00" subTotal="100.00" total="116.00" Moneda="MXN" '
        'tipoDeComprobante="ingreso" metodoDePago="01" formaDePago="PAGO EN UNA SOLA EXHIBICION">'
        '<cfdi:Emisor rfc="AAA010101AAA" nombre="Viejo"><cfdi:RegimenFiscal Regimen="601"/>'
        '</cfdi:Emisor><cfdi:Receptor rfc="BASJ600902KL9" nombre="Cliente"/>'
        '<cfdi:Conceptos><cfdi:Concepto cantidad="1" descripcion="Servicio" '
        'valorUnitario="100.00" importe="100.00"/></cfdi:Conceptos>'
        '<cfdi:Impuestos totalImpuestosTrasladados="16.00"><cfdi:Traslados>'
        '<cfdi:Traslado impuesto="IVA" tasa="16.00" importe="16.00"/></cfdi:Traslados>'
        "</cfdi:Impuestos></cfdi:Comprobante>"
    )
    fmt, doc = cfdi.parse(parse(data.encode()))
    assert (fmt, doc.kind, doc.number) == ("cfdi-3.2", "invoice", "B-9")
    assert (doc.issuer.tax_id, doc.issuer.regime, doc.receiver.tax_id) == (
        "AAA010101AAA",
        "601",
        "BASJ600902KL9",
    )
    assert (doc.totals.subtotal, doc.totals.taxes, doc.totals.total) == (
        "100.00",
        "16.00",
        "116.00",
    )
    [tax] = doc.taxes
    assert (tax.code, tax.name, tax.rate, tax.amount) == ("002", "IVA", "16.00", "16.00")
    assert doc.lines[0].description == "Servicio"


def test_odd_values_are_kept_for_the_checks_to_judge() -> None:
    data = make_cfdi().replace(
        'TipoFactor="Tasa" TasaOCuota="0.160000"', 'TipoFactor="Tasx" TasaOCuota="abc"', 1
    )
    [tax] = normalized(data.encode()).lines[0].taxes
    assert (tax.factor, tax.rate) == ("Tasx", "abc")
