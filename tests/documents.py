"""Generated e-invoices that add up, built the way issuers build them (each line rounded, then
the rounded lines added), with a seam to print any value differently: `override` replaces a
named value after everything has been computed, so a test can inject one defect.

    co_invoice([Item("Cemento", "2", "50000.00", "19")], override={"total": "119000.01"})
    cfdi40([Item("Tornillos", "2", "500.00", "16")], override={"line0.amount": "999.00"})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from stdnum.co import nit
from stdnum.mx import rfc

CENT = Decimal("0.01")
CUFE = "5f" * 48
UUID = "0b7c4a1e-2f3d-4c5b-8a9e-1d2c3b4a5f6e"


def money(value: Decimal) -> str:
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class Item:
    description: str
    quantity: str
    unit_price: str
    rate: str  # IVA, percent
    discount: str | None = None  # MX: Descuento of the concept
    withholdings: tuple[tuple[str, str], ...] = field(default=())  # MX: (Impuesto, percent)


def _lines(items: Sequence[Item]) -> list[dict[str, Decimal]]:
    computed = []
    for item in items:
        amount = (Decimal(item.quantity) * Decimal(item.unit_price)).quantize(CENT, ROUND_HALF_UP)
        discount = Decimal(item.discount or "0")
        base = amount - discount
        tax = (base * Decimal(item.rate) / 100).quantize(CENT, ROUND_HALF_UP)
        computed.append({"amount": amount, "discount": discount, "base": base, "tax": tax})
    return computed


# ── Colombia: a DIAN UBL 2.1 Invoice ──────────────────────────────────────────────────────

CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
SUPPLIER_NIT, CUSTOMER_NIT = "900123456", "901956924"


def co_invoice(
    items: Sequence[Item],
    *,
    withholdings: Sequence[tuple[str, str, str]] = (),
    supplier_codes: str = "R-99-PN",
    discount: str = "0.00",
    charges: str = "0.00",
    prepaid: str | None = None,
    root: str = "Invoice",
    references: Sequence[tuple[str, str]] = (),
    currency: str = "COP",
    exchange_rate: str | None = None,
    override: Mapping[str, str] | None = None,
) -> bytes:
    """An Invoice (or `root` CreditNote/DebitNote) from `items` (IVA per line);
    `withholdings` are (code, name, percent) the supplier prints on the subtotal;
    `references` (number, CUFE) the invoices a note corrects."""
    line_tag = {"Invoice": "InvoiceLine", "CreditNote": "CreditNoteLine"}.get(root, "DebitNoteLine")
    quantity_tag = {"Invoice": "InvoicedQuantity", "CreditNote": "CreditedQuantity"}.get(
        root, "DebitedQuantity"
    )
    monetary = "RequestedMonetaryTotal" if root == "DebitNote" else "LegalMonetaryTotal"
    lines = _lines(items)
    rates = sorted({Decimal(item.rate) for item in items})
    pairs = list(zip(items, lines, strict=True))
    by_rate = {
        rate: (
            sum((c["amount"] for i, c in pairs if Decimal(i.rate) == rate), Decimal(0)),
            sum((c["tax"] for i, c in pairs if Decimal(i.rate) == rate), Decimal(0)),
        )
        for rate in rates
    }
    subtotal = sum((c["amount"] for c in lines), Decimal(0))
    taxes = sum((c["tax"] for c in lines), Decimal(0))
    total = (
        subtotal
        - Decimal(discount)
        + Decimal(charges)
        + taxes
        - (Decimal(prepaid) if prepaid else Decimal(0))
    )
    values: dict[str, str] = {
        "profile": "1",
        "uuid": CUFE,
        "issue_date": "2026-11-02",
        "supplier.nit": SUPPLIER_NIT,
        "supplier.dv": nit.calc_check_digit(SUPPLIER_NIT),
        "supplier.codes": supplier_codes,
        "customer.nit": CUSTOMER_NIT,
        "customer.dv": nit.calc_check_digit(CUSTOMER_NIT),
        "subtotal": money(subtotal),
        "discount": discount,
        "charges": charges,
        "tax_total.01": money(taxes),
        "tax_exclusive": money(subtotal),
        "tax_inclusive": money(subtotal + taxes),
        "total": money(total),
    }
    for rate, (base, tax) in by_rate.items():
        values[f"tax.{rate}.base"] = money(base)
        values[f"tax.{rate}.amount"] = money(tax)
        values[f"tax.{rate}.rate"] = f"{rate:.2f}"
    for i, computed in enumerate(lines):
        values[f"line{i}.amount"] = money(computed["amount"])
        values[f"line{i}.tax"] = money(computed["tax"])
        values[f"line{i}.rate"] = f"{Decimal(items[i].rate):.2f}"
    for code, _, percent in withholdings:
        values[f"withholding.{code}.amount"] = money(subtotal * Decimal(percent) / 100)
        values[f"withholding.{code}.rate"] = percent
    if prepaid:
        values["prepaid"] = prepaid
    values.update(override or {})
    v = values

    def party(role: str, name: str) -> str:
        return (
            f"<cac:{role}><cac:Party><cac:PartyTaxScheme>"
            f"<cbc:RegistrationName>{name}</cbc:RegistrationName>"
            f'<cbc:CompanyID schemeID="{v[f"{role_key[role]}.dv"]}" schemeName="31">'
            f"{v[f'{role_key[role]}.nit']}</cbc:CompanyID>"
            f"<cbc:TaxLevelCode>{v.get(f'{role_key[role]}.codes', 'R-99-PN')}</cbc:TaxLevelCode>"
            "<cac:RegistrationAddress><cbc:ID>11001</cbc:ID></cac:RegistrationAddress>"
            f"</cac:PartyTaxScheme></cac:Party></cac:{role}>"
        )

    role_key = {"AccountingSupplierParty": "supplier", "AccountingCustomerParty": "customer"}

    def subtotal_xml(base: str, amount: str, rate: str, code: str, name: str) -> str:
        return (
            f"<cac:TaxSubtotal><cbc:TaxableAmount>{base}</cbc:TaxableAmount>"
            f"<cbc:TaxAmount>{amount}</cbc:TaxAmount><cac:TaxCategory>"
            f"<cbc:Percent>{rate}</cbc:Percent><cac:TaxScheme><cbc:ID>{code}</cbc:ID>"
            f"<cbc:Name>{name}</cbc:Name></cac:TaxScheme></cac:TaxCategory></cac:TaxSubtotal>"
        )

    tax_total = (
        f"<cac:TaxTotal><cbc:TaxAmount>{v['tax_total.01']}</cbc:TaxAmount>"
        + "".join(
            subtotal_xml(v[f"tax.{r}.base"], v[f"tax.{r}.amount"], v[f"tax.{r}.rate"], "01", "IVA")
            for r in rates
        )
        + "</cac:TaxTotal>"
    )
    withholding_totals = "".join(
        f"<cac:WithholdingTaxTotal><cbc:TaxAmount>{v[f'withholding.{code}.amount']}"
        "</cbc:TaxAmount>"
        + subtotal_xml(
            v["subtotal"],
            v[f"withholding.{code}.amount"],
            v[f"withholding.{code}.rate"],
            code,
            name,
        )
        + "</cac:WithholdingTaxTotal>"
        for code, name, _ in withholdings
    )
    invoice_lines = "".join(
        f"<cac:{line_tag}><cbc:ID>{i + 1}</cbc:ID>"
        f"<cbc:{quantity_tag}>{item.quantity}</cbc:{quantity_tag}>"
        f"<cbc:LineExtensionAmount>{v[f'line{i}.amount']}</cbc:LineExtensionAmount>"
        f"<cac:TaxTotal><cbc:TaxAmount>{v[f'line{i}.tax']}</cbc:TaxAmount>"
        + subtotal_xml(v[f"line{i}.amount"], v[f"line{i}.tax"], v[f"line{i}.rate"], "01", "IVA")
        + "</cac:TaxTotal>"
        f"<cac:Item><cbc:Description>{item.description}</cbc:Description></cac:Item>"
        f"<cac:Price><cbc:PriceAmount>{item.unit_price}</cbc:PriceAmount></cac:Price>"
        f"</cac:{line_tag}>"
        for i, item in enumerate(items)
    )
    prepaid_xml = f"<cbc:PrepaidAmount>{v['prepaid']}</cbc:PrepaidAmount>" if "prepaid" in v else ""
    type_code = "<cbc:InvoiceTypeCode>01</cbc:InvoiceTypeCode>" if root == "Invoice" else ""
    billing = "".join(
        "<cac:BillingReference><cac:InvoiceDocumentReference>"
        f'<cbc:ID>{number}</cbc:ID><cbc:UUID schemeName="CUFE-SHA384">{cufe}</cbc:UUID>'
        "</cac:InvoiceDocumentReference></cac:BillingReference>"
        for number, cufe in references
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<{root} xmlns="urn:oasis:names:specification:ubl:schema:xsd:{root}-2" '
        f'xmlns:cac="{CAC}" xmlns:cbc="{CBC}">'
        "<cbc:CustomizationID>10</cbc:CustomizationID>"
        f"<cbc:ProfileExecutionID>{v['profile']}</cbc:ProfileExecutionID>"
        "<cbc:ID>FE1001</cbc:ID>"
        f'<cbc:UUID schemeName="CUFE-SHA384">{v["uuid"]}</cbc:UUID>'
        f"<cbc:IssueDate>{v['issue_date']}</cbc:IssueDate>"
        "<cbc:IssueTime>10:00:00-05:00</cbc:IssueTime>"
        f"{type_code}<cbc:DocumentCurrencyCode>{currency}</cbc:DocumentCurrencyCode>{billing}"
        + party("AccountingSupplierParty", "Proveedora de Prueba SAS")
        + party("AccountingCustomerParty", "Compradora de Prueba SAS")
        + (
            "<cac:PaymentExchangeRate><cbc:SourceCurrencyCode>"
            f"{currency}</cbc:SourceCurrencyCode><cbc:TargetCurrencyCode>COP"
            f"</cbc:TargetCurrencyCode><cbc:CalculationRate>{exchange_rate}</cbc:CalculationRate>"
            "</cac:PaymentExchangeRate>"
            if exchange_rate
            else ""
        )
        + tax_total
        + withholding_totals
        + f"<cac:{monetary}>"
        f"<cbc:LineExtensionAmount>{v['subtotal']}</cbc:LineExtensionAmount>"
        f"<cbc:TaxExclusiveAmount>{v['tax_exclusive']}</cbc:TaxExclusiveAmount>"
        f"<cbc:TaxInclusiveAmount>{v['tax_inclusive']}</cbc:TaxInclusiveAmount>"
        f"<cbc:AllowanceTotalAmount>{v['discount']}</cbc:AllowanceTotalAmount>"
        f"<cbc:ChargeTotalAmount>{v['charges']}</cbc:ChargeTotalAmount>"
        f"{prepaid_xml}<cbc:PayableAmount>{v['total']}</cbc:PayableAmount>"
        f"</cac:{monetary}>" + invoice_lines + f"</{root}>"
    ).encode()


# ── Mexico: a stamped CFDI 4.0 ────────────────────────────────────────────────────────────

CFDI4 = "http://www.sat.gob.mx/cfd/4"
TFD = "http://www.sat.gob.mx/TimbreFiscalDigital"
ISSUER_RFC = "ABC010203A1" + rfc.calc_check_digit("ABC010203A1")
RECEIVER_RFC = "XYZ990101B2" + rfc.calc_check_digit("XYZ990101B2")
TAX_NAMES = {"001": "ISR", "002": "IVA", "003": "IEPS"}


def _tasa(percent: str) -> str:
    return f"{Decimal(percent) / 100:.6f}"


def cfdi40(
    items: Sequence[Item],
    *,
    kind: str = "I",
    receiver: tuple[str, str, str, str] = (RECEIVER_RFC, "RECEPTORA DE PRUEBA", "601", "06600"),
    local: Sequence[tuple[str, str, str]] = (),
    override: Mapping[str, str] | None = None,
) -> bytes:
    """A CFDI 4.0 from `items`: IVA per concept, optional Descuento and withholdings
    (Impuesto, percent) per concept; document-level taxes grouped as SAT asks; `local` taxes
    ("T" transferred or "R" withheld, name, percent of the subtotal) in the implocal
    complement."""
    lines = _lines(items)
    subtotal = sum((c["amount"] for c in lines), Decimal(0))
    discounts = sum((c["discount"] for c in lines), Decimal(0))
    transferred: dict[str, tuple[Decimal, Decimal]] = {}
    withheld: dict[str, Decimal] = {}
    withheld_lines: list[list[tuple[str, str, Decimal]]] = []
    for item, computed in zip(items, lines, strict=True):
        base, amount = transferred.get(item.rate, (Decimal(0), Decimal(0)))
        transferred[item.rate] = (base + computed["base"], amount + computed["tax"])
        mine = []
        for code, percent in item.withholdings:
            # Computed at the TasaOCuota printed (two thirds of 16 % is 0.106667).
            value = (computed["base"] * Decimal(_tasa(percent))).quantize(CENT, ROUND_HALF_UP)
            withheld[code] = withheld.get(code, Decimal(0)) + value
            mine.append((code, percent, value))
        withheld_lines.append(mine)
    total_transferred = sum((a for _, a in transferred.values()), Decimal(0))
    total_withheld = sum(withheld.values(), Decimal(0))
    local_amounts = [
        (kind, name, percent, (subtotal * Decimal(percent) / 100).quantize(CENT, ROUND_HALF_UP))
        for kind, name, percent in local
    ]
    local_net = sum((a if k == "T" else -a for k, _, _, a in local_amounts), Decimal(0))
    values: dict[str, str] = {
        "issuer": ISSUER_RFC,
        "certificate": "00001000000500000001",
        "uuid": UUID.upper(),
        "date": "2026-11-02T10:00:00",
        "subtotal": money(subtotal),
        "total": money(subtotal - discounts + total_transferred - total_withheld + local_net),
        "transferred": money(total_transferred),
        "withheld": money(total_withheld),
        "receiver.rfc": receiver[0],
        "receiver.name": receiver[1],
        "receiver.regime": receiver[2],
        "receiver.postal_code": receiver[3],
    }
    if discounts:
        values["discount"] = money(discounts)
    for rate, (base, amount) in transferred.items():
        values[f"tax.{rate}.base"] = money(base)
        values[f"tax.{rate}.amount"] = money(amount)
        values[f"tax.{rate}.rate"] = _tasa(rate)
    for code, amount in withheld.items():
        values[f"withheld.{code}"] = money(amount)
    for i, (item, computed) in enumerate(zip(items, lines, strict=True)):
        values[f"line{i}.amount"] = money(computed["amount"])
        values[f"line{i}.tax"] = money(computed["tax"])
        values[f"line{i}.rate"] = _tasa(item.rate)
    values.update(override or {})
    v = values

    def concept(i: int, item: Item) -> str:
        discount = f' Descuento="{item.discount}"' if item.discount else ""
        retentions = "".join(
            f'<cfdi:Retencion Base="{money(lines[i]["base"])}" Impuesto="{code}" '
            f'TipoFactor="Tasa" TasaOCuota="{_tasa(percent)}" Importe="{money(value)}"/>'
            for code, percent, value in withheld_lines[i]
        )
        return (
            f'<cfdi:Concepto ClaveProdServ="01010101" Cantidad="{item.quantity}" '
            f'ClaveUnidad="H87" Descripcion="{item.description}" '
            f'ValorUnitario="{item.unit_price}" Importe="{v[f"line{i}.amount"]}"{discount} '
            'ObjetoImp="02"><cfdi:Impuestos><cfdi:Traslados>'
            f'<cfdi:Traslado Base="{money(lines[i]["base"])}" Impuesto="002" TipoFactor="Tasa" '
            f'TasaOCuota="{v[f"line{i}.rate"]}" Importe="{v[f"line{i}.tax"]}"/></cfdi:Traslados>'
            + (f"<cfdi:Retenciones>{retentions}</cfdi:Retenciones>" if retentions else "")
            + "</cfdi:Impuestos></cfdi:Concepto>"
        )

    withheld_attr = f' TotalImpuestosRetenidos="{v["withheld"]}"' if withheld else ""
    retenciones = (
        "<cfdi:Retenciones>"
        + "".join(
            f'<cfdi:Retencion Impuesto="{code}" Importe="{v[f"withheld.{code}"]}"/>'
            for code in withheld
        )
        + "</cfdi:Retenciones>"
        if withheld
        else ""
    )
    discount_attr = f' Descuento="{v["discount"]}"' if "discount" in v else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<cfdi:Comprobante xmlns:cfdi="{CFDI4}" Version="4.0" Serie="F" Folio="77" '
        f'Fecha="{v["date"]}" SubTotal="{v["subtotal"]}"{discount_attr} Moneda="MXN" '
        f'Total="{v["total"]}" TipoDeComprobante="{kind}" Exportacion="01" MetodoPago="PUE" '
        f'FormaPago="03" LugarExpedicion="06600" NoCertificado="{v["certificate"]}">'
        f'<cfdi:Emisor Rfc="{v["issuer"]}" Nombre="EMISORA DE PRUEBA" RegimenFiscal="601"/>'
        f'<cfdi:Receptor Rfc="{v["receiver.rfc"]}" Nombre="{v["receiver.name"]}" UsoCFDI="G03" '
        f'DomicilioFiscalReceptor="{v["receiver.postal_code"]}" '
        f'RegimenFiscalReceptor="{v["receiver.regime"]}"/>'
        "<cfdi:Conceptos>"
        + "".join(concept(i, item) for i, item in enumerate(items))
        + "</cfdi:Conceptos>"
        f'<cfdi:Impuestos TotalImpuestosTrasladados="{v["transferred"]}"{withheld_attr}>'
        + retenciones
        + "<cfdi:Traslados>"
        + "".join(
            f'<cfdi:Traslado Base="{v[f"tax.{rate}.base"]}" Impuesto="002" TipoFactor="Tasa" '
            f'TasaOCuota="{v[f"tax.{rate}.rate"]}" Importe="{v[f"tax.{rate}.amount"]}"/>'
            for rate in transferred
        )
        + "</cfdi:Traslados></cfdi:Impuestos>"
        "<cfdi:Complemento>"
        + _implocal(local_amounts)
        + f'<tfd:TimbreFiscalDigital xmlns:tfd="{TFD}" Version="1.1" '
        f'UUID="{v["uuid"]}" FechaTimbrado="{v["date"]}" RfcProvCertif="SAT970701NN3" '
        'NoCertificadoSAT="00001000000504465028"/></cfdi:Complemento></cfdi:Comprobante>'
    ).encode()


IMPLOCAL = "http://www.sat.gob.mx/implocal"


def _implocal(amounts: Sequence[tuple[str, str, str, Decimal]]) -> str:
    if not amounts:
        return ""
    transferred = sum((a for k, _, _, a in amounts if k == "T"), Decimal(0))
    withheld = sum((a for k, _, _, a in amounts if k == "R"), Decimal(0))
    children = "".join(
        f'<implocal:TrasladosLocales ImpLocTrasladado="{name}" TasadeTraslado="{percent}" '
        f'Importe="{money(amount)}"/>'
        if kind == "T"
        else f'<implocal:RetencionesLocales ImpLocRetenido="{name}" '
        f'TasadeRetencion="{percent}" Importe="{money(amount)}"/>'
        for kind, name, percent, amount in amounts
    )
    return (
        f'<implocal:ImpuestosLocales xmlns:implocal="{IMPLOCAL}" version="1.0" '
        f'TotaldeRetenciones="{money(withheld)}" TotaldeTraslados="{money(transferred)}">'
        f"{children}</implocal:ImpuestosLocales>"
    )
