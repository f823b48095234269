"""Mexico: SAT CFDI 4.0 and 3.3 (3.2 read-only) into the normalized document.

Pure: an element tree in, a Document out. Elements are found by namespace URI. Values are kept
as printed, stripped of the stray spaces real files carry; a missing value is None, never a
made-up default.
"""

from __future__ import annotations

from decimal import Decimal

from lxml import etree

from facturasd.errors import UnknownDocument
from facturasd.findings import phrase
from facturasd.formats.model import (
    Document,
    FormatName,
    Kind,
    Line,
    Party,
    Payment,
    Reference,
    Stamp,
    Tax,
    Totals,
)

CFDI4 = "http://www.sat.gob.mx/cfd/4"
CFDI3 = "http://www.sat.gob.mx/cfd/3"
TFD = "http://www.sat.gob.mx/TimbreFiscalDigital"
PAGOS20 = "http://www.sat.gob.mx/Pagos20"
IMPLOCAL = "http://www.sat.gob.mx/implocal"

KINDS: dict[str, Kind] = {
    "I": "invoice",
    "E": "credit_note",
    "P": "payment",
    "N": "payroll",
    "T": "transfer",
    # CFDI 3.2 spelt the type out
    "ingreso": "invoice",
    "egreso": "credit_note",
    "traslado": "transfer",
}
TAX_NAMES = {"001": "ISR", "002": "IVA", "003": "IEPS"}
# CFDI 3.2 named the tax instead of coding it.
TAX_CODES_32 = {"ISR": "001", "IVA": "002", "IEPS": "003"}


def is_cfdi(root: etree._Element) -> bool:
    return etree.QName(root).namespace in (CFDI4, CFDI3) and etree.QName(root).localname == (
        "Comprobante"
    )


def parse(root: etree._Element) -> tuple[FormatName, Document]:
    """The document a CFDI `Comprobante` element describes."""
    ns = etree.QName(root).namespace
    version = _attr(root, "Version")
    if ns == CFDI4:
        fmt: FormatName = "cfdi-4.0"
    elif ns == CFDI3 and version == "3.3":
        fmt = "cfdi-3.3"
    elif ns == CFDI3 and root.get("version") == "3.2":
        fmt = "cfdi-3.2"
        _capitalize_attributes(root)
    else:
        raise UnknownDocument(phrase("cfdi_version", version=version))
    kind_code = _attr(root, "TipoDeComprobante")
    kind = KINDS.get(kind_code or "")
    if kind is None:
        raise UnknownDocument(phrase("cfdi_kind", kind=kind_code))

    emisor = root.find(f"{{{ns}}}Emisor")
    receptor = root.find(f"{{{ns}}}Receptor")
    stamp = root.find(f"{{{ns}}}Complemento/{{{TFD}}}TimbreFiscalDigital")
    taxes_el = root.find(f"{{{ns}}}Impuestos")
    taxes = _taxes(taxes_el, ns, "Traslados", "Traslado")
    withholdings = _taxes(taxes_el, ns, "Retenciones", "Retencion")
    local_taxes, local_withholdings = _local_taxes(root, ns)
    series, folio = _attr(root, "Serie"), _attr(root, "Folio")
    uuid = _attr(stamp, "UUID") if stamp is not None else None

    document = Document(
        country="MX",
        kind=kind,
        number=number_of(series, folio),
        series=series,
        folio=folio,
        uuid=uuid.lower() if uuid else None,
        issued_at=_attr(root, "Fecha"),
        currency=_attr(root, "Moneda"),
        exchange_rate=_attr(root, "TipoCambio"),
        payment=Payment(
            method=_attr(root, "MetodoPago") or _attr(root, "MetodoDePago"),
            form=_attr(root, "FormaPago") or _attr(root, "FormaDePago"),
            use=_attr(receptor, "UsoCFDI"),
        ),
        issuer=_party(emisor, ns, "RegimenFiscal", None),
        receiver=_party(receptor, ns, "RegimenFiscalReceptor", "DomicilioFiscalReceptor"),
        lines=[
            _line(concepto, ns) for concepto in root.iterfind(f"{{{ns}}}Conceptos/{{{ns}}}Concepto")
        ],
        taxes=taxes + local_taxes,
        withholdings=withholdings + local_withholdings,
        totals=Totals(
            subtotal=_attr(root, "SubTotal"),
            discount=_attr(root, "Descuento"),
            taxes=_attr(taxes_el, "TotalImpuestosTrasladados"),
            withholdings=_attr(taxes_el, "TotalImpuestosRetenidos"),
            total=_attr(root, "Total"),
        ),
        references=_references(root, ns),
        stamp=Stamp(
            at=_attr(stamp, "FechaTimbrado"),
            provider=_attr(stamp, "RfcProvCertif"),
            certificate=_attr(stamp, "NoCertificadoSAT"),
        )
        if stamp is not None
        else None,
        certificate=_attr(root, "NoCertificado"),
    )
    return fmt, document


def number_of(series: str | None, folio: str | None) -> str | None:
    """The CFDI's number as people write it: Serie and Folio joined by a dash (`A-13`), or
    whichever of them is printed. Joined bare, series 2026 folio 8 and series 202 folio 68
    would both read 20268."""
    return "-".join(part for part in (series, folio) if part) or None


def _capitalize_attributes(root: etree._Element) -> None:
    """CFDI 3.2 spelt attributes in lower camel case (`subTotal`, `rfc`); respelt like 3.3's,
    one lookup serves both. The tree is the parser's own, fresh from the bytes."""
    for element in root.iter():
        for name in [n for n in element.attrib if isinstance(n, str) and n[:1].islower()]:
            element.set(name[:1].upper() + name[1:], element.attrib.pop(name))


def _attr(element: etree._Element | None, name: str) -> str | None:
    """An attribute as printed, without the stray spaces real files carry; None if absent."""
    if element is None:
        return None
    value = element.get(name)
    return (value.strip() or None) if value is not None else None


def _tax_id(value: str | None) -> str | None:
    """The RFC as printed, without spaces, dots or dashes."""
    return "".join(ch for ch in value if ch not in ".- \t\r\n") or None if value else None


def _party(
    element: etree._Element | None, ns: str, regime_attr: str, postal_attr: str | None
) -> Party:
    if element is None:
        return Party()
    regime = _attr(element, regime_attr)
    if regime is None and (legacy := element.find(f"{{{ns}}}RegimenFiscal")) is not None:
        regime = _attr(legacy, "Regimen")  # 3.2: a child element
    return Party(
        tax_id=_tax_id(_attr(element, "Rfc")),
        id_type="rfc",
        name=_attr(element, "Nombre"),
        regime=regime,
        postal_code=_attr(element, postal_attr) if postal_attr else None,
    )


def _rate(tax: etree._Element) -> str | None:
    """Tasa as a percentage (0.160000 -> 16.0000); Cuota as printed; Exento has none."""
    factor = _attr(tax, "TipoFactor")
    rate = _attr(tax, "TasaOCuota")
    if rate is None:
        return _attr(tax, "Tasa")  # 3.2 printed the percentage itself
    if factor == "Tasa":
        try:
            return str(Decimal(rate).scaleb(2))
        except ArithmeticError:  # not a number, or an absurd one: kept for the checks
            return rate
    return rate


def _tax(element: etree._Element) -> Tax:
    code = _attr(element, "Impuesto")
    code = TAX_CODES_32.get(code or "", code)
    return Tax(
        code=code or "",
        name=TAX_NAMES.get(code or ""),
        factor=_attr(element, "TipoFactor"),
        rate=_rate(element),
        base=_attr(element, "Base"),
        amount=_attr(element, "Importe"),
    )


def _taxes(parent: etree._Element | None, ns: str, group: str, item: str) -> list[Tax]:
    if parent is None:
        return []
    return [_tax(el) for el in parent.iterfind(f"{{{ns}}}{group}/{{{ns}}}{item}")]


def _line(concepto: etree._Element, ns: str) -> Line:
    impuestos = concepto.find(f"{{{ns}}}Impuestos")
    return Line(
        description=_attr(concepto, "Descripcion"),
        quantity=_attr(concepto, "Cantidad"),
        unit_price=_attr(concepto, "ValorUnitario"),
        amount=_attr(concepto, "Importe"),
        discount=_attr(concepto, "Descuento"),
        taxes=_taxes(impuestos, ns, "Traslados", "Traslado"),
        withholdings=_taxes(impuestos, ns, "Retenciones", "Retencion"),
    )


def _local_taxes(root: etree._Element, ns: str) -> tuple[list[Tax], list[Tax]]:
    """implocal: local taxes transferred and withheld, named as printed (no SAT code)."""
    local = root.find(f"{{{ns}}}Complemento/{{{IMPLOCAL}}}ImpuestosLocales")
    if local is None:
        return [], []

    def read(element: str, name: str, rate: str) -> list[Tax]:
        return [
            Tax(
                code="implocal",
                name=_attr(el, name),
                factor="Tasa",
                rate=_attr(el, rate),
                amount=_attr(el, "Importe"),
            )
            for el in local.iterfind(f"{{{IMPLOCAL}}}{element}")
        ]

    return (
        read("TrasladosLocales", "ImpLocTrasladado", "TasadeTraslado"),
        read("RetencionesLocales", "ImpLocRetenido", "TasadeRetencion"),
    )


def _references(root: etree._Element, ns: str) -> list[Reference]:
    """Related CFDIs, and for payments (Pagos 2.0) the invoices each payment settles."""
    found = [
        Reference(uuid=uuid.lower())
        for related in root.iterfind(f"{{{ns}}}CfdiRelacionados/{{{ns}}}CfdiRelacionado")
        if (uuid := _attr(related, "UUID"))
    ]
    for doc in root.iterfind(
        f"{{{ns}}}Complemento/{{{PAGOS20}}}Pagos/{{{PAGOS20}}}Pago/{{{PAGOS20}}}DoctoRelacionado"
    ):
        uuid = _attr(doc, "IdDocumento")
        found.append(
            Reference(
                number=number_of(_attr(doc, "Serie"), _attr(doc, "Folio")),
                uuid=uuid.lower() if uuid else None,
            )
        )
    return found
