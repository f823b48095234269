"""Findings: what the formats layer and the checks report, and the catalogue that words them.

A finding is data: a code, its severity, the path of the value it is about and the values its
message names (`params`). It is stored so, and its message is rendered where it is read
(`message`), in the language asked for: a `.motivo.txt` in Spanish then English, `facturasd
inspect`, `facturasd invoices show`, reports. The catalogue has one entry per code: its
severity, the message a person reads (Spanish and English, with named placeholders) and what
the accountant should do about it. `docs/findings.md` is generated from it
(`python -m facturasd.findings docs/findings.md`) and a test keeps the two equal.

This module imports nothing of the formats layer or the checks: they import it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from facturasd import wording

# Re-exported: the language a finding is worded in is the one everything else is printed in.
from facturasd.wording import LANGUAGES as LANGUAGES
from facturasd.wording import Language as Language

Severity = Literal["error", "warning", "info"]

# A value a message names, as stored: text (amounts as printed, or as computed with their
# decimals), a whole number, or None for a value the document does not have.
Value = str | int | None
# A phrase of PHRASES with its own values, stored as {"phrase": key, **values}: a placeholder
# it fills is worded in the language the message is rendered in.
Phrase = dict[str, Value]
# What fills a placeholder.
Param = Value | Phrase
_P = TypeVar("_P", bound=Param)


class Finding(BaseModel):
    """One thing found in a document, as the ledger stores it; `message` words it."""

    model_config = ConfigDict(extra="forbid")

    code: str
    severity: Severity
    path: str
    params: dict[str, Param] = Field(default_factory=dict)
    # Versions before findings were data stored the message already rendered, in the
    # language configured then, and no params: such a finding is shown as it was stored.
    stored_message: str | None = Field(default=None, validation_alias="message", exclude=True)

    @model_validator(mode="after")
    def _library_detail(self) -> Self:
        # Versions before the formats layer worded its details stored the parser's English
        # text as `detail`: it is shown labelled as such, never as if it were in Spanish.
        detail = self.params.get("detail")
        if self.code.startswith("FMT-") and isinstance(detail, str):
            self.params["detail"] = phrase("technical", text=detail)
        return self


@dataclass(frozen=True)
class Entry:
    severity: Severity
    message: dict[Language, str]
    action: dict[Language, str]
    # The params that are printed numbers (amounts, rates): written as the document's country
    # writes them.
    numbers: tuple[str, ...] = ()


def _entry(
    severity: Severity,
    es: str,
    en: str,
    do_es: str,
    do_en: str,
    numbers: tuple[str, ...] = (),
) -> Entry:
    return Entry(severity, {"es": es, "en": en}, {"es": do_es, "en": do_en}, numbers)


CATALOGUE: dict[str, Entry] = {
    # ── formats: the file could not be read as a document ({detail}: a phrase saying why) ──
    "FMT-NOT-XML": _entry(
        "error",
        "El archivo no es un XML legible ({detail})",
        "The file is not readable XML ({detail})",
        "Pida al proveedor el XML de la factura; revise que el correo no lo haya dañado.",
        "Ask the supplier for the invoice's XML; check a mail client did not damage it.",
    ),
    "FMT-TRUNCATED": _entry(
        "error",
        "El XML está incompleto: se cortó al copiarlo o descargarlo ({detail})",
        "The XML is incomplete: cut short while copied or downloaded ({detail})",
        "Copie el archivo de nuevo desde su origen.",
        "Copy the file again from its source.",
    ),
    "FMT-UNSAFE-XML": _entry(
        "error",
        "El XML tiene una forma peligrosa y no se procesa ({detail})",
        "The XML has a dangerous shape and is not processed ({detail})",
        "No lo abra con otros programas; avise a quien lo envió.",
        "Do not open it elsewhere; tell whoever sent it.",
    ),
    "FMT-TOO-LARGE": _entry(
        "error",
        "El archivo es demasiado grande ({detail})",
        "The file is too large ({detail})",
        "Revise que sea una factura; suba `formats.max_file_bytes` solo si una factura real "
        "es así de grande.",
        "Check it is an invoice; raise `formats.max_file_bytes` only if a real invoice is that "
        "large.",
    ),
    "FMT-ZIP-BOMB": _entry(
        "error",
        "El ZIP se expande más allá de los límites permitidos ({detail})",
        "The ZIP expands beyond the allowed limits ({detail})",
        "Pida al proveedor el XML o un ZIP normal; no lo descomprima a mano.",
        "Ask the supplier for the plain XML or a normal ZIP; do not unpack it by hand.",
    ),
    "FMT-BAD-ZIP": _entry(
        "error",
        "El ZIP está dañado o no se puede abrir ({detail})",
        "The ZIP is damaged or cannot be opened ({detail})",
        "Descárguelo o cópielo de nuevo; pida un paquete sin contraseña.",
        "Download or copy it again; ask for a package without a password.",
    ),
    "FMT-BAD-PDF": _entry(
        "error",
        "El PDF está dañado o no se puede leer ({detail})",
        "The PDF is damaged or cannot be read ({detail})",
        "Pida el XML, que es la factura legal; el PDF es solo su representación impresa.",
        "Ask for the XML, which is the legal invoice; the PDF is only its printed copy.",
    ),
    "FMT-UNKNOWN-DOCUMENT": _entry(
        "error",
        "El archivo no es una factura electrónica reconocida ({detail})",
        "The file is not a recognised e-invoice ({detail})",
        "Revise que el archivo sea el XML de la factura y no otro documento.",
        "Check the file is the invoice's XML, not another document.",
    ),
    "FMT-CUFE-MISMATCH": _entry(
        "error",
        "El CUFE no coincide en todos los lugares donde aparece ({detail})",
        "The CUFE differs between the places it appears ({detail})",
        "Pida al proveedor el paquete original; pudo haber sido alterado.",
        "Ask the supplier for the original package; it may have been altered.",
    ),
    "FMT-PDF-WITHOUT-XML": _entry(
        "warning",
        "PDF sin su XML: solo se leyó el texto impreso",
        "PDF without its XML: only its printed text was read",
        "La factura queda en revisión; se enlaza sola cuando llegue su XML.",
        "The invoice waits in review; it is linked automatically when its XML arrives.",
    ),
    # ── the document as a whole ──
    "DOC-BAD-AMOUNT": _entry(
        "error",
        "El valor {value!r} no es un importe",
        "The value {value!r} is not an amount",
        "Pida al proveedor una factura corregida.",
        "Ask the supplier for a corrected invoice.",
    ),
    "DOC-MISSING-AMOUNT": _entry(
        "error",
        "Falta un importe obligatorio",
        "A required amount is missing",
        "Pida al proveedor una factura corregida.",
        "Ask the supplier for a corrected invoice.",
    ),
    "DOC-NO-LINES": _entry(
        "error",
        "El documento no tiene líneas (conceptos)",
        "The document has no lines (concepts)",
        "Pida al proveedor una factura corregida.",
        "Ask the supplier for a corrected invoice.",
    ),
    "DOC-NEGATIVE-AMOUNT": _entry(
        "error",
        "El importe {value} es negativo; DIAN y SAT solo admiten importes positivos",
        "The amount {value} is negative; DIAN and SAT only allow positive amounts",
        "Pida al proveedor una factura corregida (una devolución va en una nota crédito).",
        "Ask the supplier for a corrected invoice (a refund goes in a credit note).",
        numbers=("value",),
    ),
    "DOC-MISSING-UUID": _entry(
        "error",
        "El documento no tiene {name}: no es una factura validada por la autoridad",
        "The document has no {name}: it is not an invoice the authority validated",
        "Pida al proveedor el XML definitivo (timbrado o validado por la DIAN).",
        "Ask the supplier for the final XML (stamped, or validated by DIAN).",
    ),
    "DOC-BAD-UUID": _entry(
        "error",
        "{name} {value!r} no tiene la forma correcta ({shape})",
        "{name} {value!r} does not have the right shape ({shape})",
        "Pida al proveedor el XML original; este pudo haber sido alterado.",
        "Ask the supplier for the original XML; this one may have been altered.",
    ),
    "DOC-TEST-DOCUMENT": _entry(
        "error",
        "Es un documento de pruebas ({why}); no tiene validez fiscal",
        "This is a test document ({why}); it has no fiscal validity",
        "Pida al proveedor la factura emitida en producción.",
        "Ask the supplier for the invoice issued in production.",
    ),
    "DOC-TEST-ACCEPTED": _entry(
        "info",
        "Documento de pruebas ({why}) aceptado porque checks.accept_test_documents = true",
        "Test document ({why}) accepted because checks.accept_test_documents = true",
        "Nada en un entorno de pruebas; en producción deje accept_test_documents en false.",
        "Nothing in a test setup; in production keep accept_test_documents false.",
    ),
    "DOC-MISSING-DATE": _entry(
        "error",
        "Falta la fecha de emisión",
        "The issue date is missing",
        "Pida al proveedor una factura corregida.",
        "Ask the supplier for a corrected invoice.",
    ),
    "DOC-BAD-DATE": _entry(
        "error",
        "La fecha de emisión {value!r} no es una fecha",
        "The issue date {value!r} is not a date",
        "Pida al proveedor una factura corregida.",
        "Ask the supplier for a corrected invoice.",
    ),
    "DOC-FUTURE-DATE": _entry(
        "warning",
        "La fecha de emisión {value} es posterior a hoy ({today})",
        "The issue date {value} is after today ({today})",
        "Confirme la fecha con el proveedor; revise también el reloj de este servidor.",
        "Confirm the date with the supplier; check this server's clock too.",
    ),
    "DOC-OLD-DATE": _entry(
        "warning",
        "La fecha de emisión {value} tiene más de {days} días",
        "The issue date {value} is more than {days} days old",
        "Confirme que la factura corresponde a este periodo antes de contabilizarla.",
        "Confirm the invoice belongs to this period before booking it.",
    ),
    "DOC-NOTE-WITHOUT-REFERENCE": _entry(
        "warning",
        "La nota crédito no indica la factura que corrige",
        "The credit note does not name the invoice it corrects",
        "Pida al proveedor la referencia de la factura original y aplíquela a mano.",
        "Ask the supplier which invoice it corrects and apply it by hand.",
    ),
    "DOC-DUPLICATE": _entry(
        "error",
        "Documento repetido: {uuid} ya se recibió ({earlier})",
        "Duplicate document: {uuid} was already received ({earlier})",
        "Nada: la factura original ya está registrada; esta copia no se contabiliza.",
        "Nothing: the original is already recorded; this copy is not booked.",
    ),
    "DOC-MISSING-TAX-ID": _entry(
        "error",
        "Falta el número de identificación tributaria (NIT o RFC)",
        "The tax id (NIT or RFC) is missing",
        "Pida al proveedor una factura corregida.",
        "Ask the supplier for a corrected invoice.",
    ),
    "DOC-DUPLICATE-FILE": _entry(
        "error",
        "Archivo repetido: los mismos bytes ya se recibieron ({earlier})",
        "Duplicate file: the same bytes were already received ({earlier})",
        "Nada: el original ya está registrado; esta copia no se contabiliza.",
        "Nothing: the original is already recorded; this copy is not booked.",
    ),
    "DOC-RECEIVER-NOT-COMPANY": _entry(
        "warning",
        "El receptor {tax_id} no es ninguna de las empresas configuradas",
        "The receiver {tax_id} is none of the configured companies",
        "Asigne la factura a una empresa o descártela si no es suya.",
        "Assign the invoice to a company, or discard it if it is not yours.",
    ),
    "DOC-OWN-SALE": _entry(
        "info",
        "El emisor {tax_id} es la empresa {company}: es un documento de venta propio",
        "The issuer {tax_id} is the company {company}: this is one of its own sales",
        "Nada: se registra, pero no se contabiliza como factura de proveedor.",
        "Nothing: it is recorded, never booked as a supplier bill.",
    ),
    # ── Colombia ──
    "CO-SUBTOTAL-MISMATCH": _entry(
        "error",
        "Las líneas suman {computed}, pero el subtotal impreso es {printed}",
        "The lines add up to {computed}, but the printed subtotal is {printed}",
        "Pida al proveedor una nota o una factura corregida.",
        "Ask the supplier for a note or a corrected invoice.",
        numbers=("computed", "printed"),
    ),
    "CO-TAX-TOTAL-MISMATCH": _entry(
        "error",
        "Los subtotales del impuesto {code} suman {computed}, pero su total impreso es {printed}",
        "The subtotals of tax {code} add up to {computed}, but its printed total is {printed}",
        "Pida al proveedor una factura corregida.",
        "Ask the supplier for a corrected invoice.",
        numbers=("computed", "printed"),
    ),
    "CO-TAX-AMOUNT": _entry(
        "error",
        "{name} {rate} % de {base} es {computed}, pero el documento dice {printed}",
        "{name} {rate} % of {base} is {computed}, but the document says {printed}",
        "Pida al proveedor una factura corregida.",
        "Ask the supplier for a corrected invoice.",
        numbers=("rate", "base", "computed", "printed"),
    ),
    "CO-LINE-TAXES-MISMATCH": _entry(
        "error",
        "{name} {rate} % suma {computed} en las líneas, pero {printed} en el documento",
        "{name} {rate} % adds up to {computed} in the lines, but {printed} in the document",
        "Pida al proveedor una factura corregida.",
        "Ask the supplier for a corrected invoice.",
        numbers=("rate", "computed", "printed"),
    ),
    "CO-TOTAL-MISMATCH": _entry(
        "error",
        "El total a pagar impreso es {printed}, pero subtotal − descuentos + cargos + "
        "impuestos − anticipos da {computed}",
        "The printed amount payable is {printed}, but subtotal − discounts + charges + taxes "
        "− prepaid gives {computed}",
        "No pague ni contabilice esta factura; pida una corregida.",
        "Do not pay or book this invoice; ask for a corrected one.",
        numbers=("printed", "computed"),
    ),
    "CO-UNKNOWN-TAX-CODE": _entry(
        "warning",
        "El código de tributo {code!r} no es uno de los de la DIAN",
        "The tax scheme code {code!r} is not one of DIAN's",
        "Revise el impuesto con el proveedor antes de contabilizar.",
        "Check the tax with the supplier before booking.",
    ),
    "CO-UNKNOWN-TAX-RATE": _entry(
        "error",
        "{name} a la tarifa {rate} % no existe en la ley ({known})",
        "{name} at {rate} % is not a rate the law knows ({known})",
        "Pida al proveedor una factura con la tarifa correcta.",
        "Ask the supplier for an invoice with the right rate.",
        numbers=("rate",),
    ),
    "CO-UNKNOWN-WITHHOLDING-RATE": _entry(
        "warning",
        "La retención {name} a {rate} % no es una tarifa conocida ({known})",
        "The withholding {name} at {rate} % is not a known rate ({known})",
        "Revise qué retención corresponde; la que se practica es la que usted calcula.",
        "Check which withholding applies; the one applied is the one you compute.",
        numbers=("rate",),
    ),
    "CO-BAD-NIT": _entry(
        "error",
        "El número de identificación {value!r} no es un NIT válido",
        "The identification number {value!r} is not a valid NIT",
        "Pida al proveedor una factura con el NIT correcto.",
        "Ask the supplier for an invoice with the right NIT.",
    ),
    "CO-NIT-CHECK-DIGIT": _entry(
        "error",
        "El dígito de verificación del NIT {tax_id} es {expected}, no {printed}",
        "The check digit of NIT {tax_id} is {expected}, not {printed}",
        "Pida al proveedor una factura con el NIT y dígito correctos.",
        "Ask the supplier for an invoice with the right NIT and check digit.",
    ),
    "CO-WITHHOLDING-DUE": _entry(
        "info",
        "Debe practicar {name} ({concept}, {rule}): {rate} % de {base} = {amount}",
        "You must withhold {name} ({concept}, {rule}): {rate} % of {base} = {amount}",
        "Regístrela al contabilizar la factura (se envía con ella a contabilidad).",
        "Record it when booking the invoice (it is passed to booking with it).",
        numbers=("rate", "base", "amount"),
    ),
    "CO-WITHHOLDING-NOT-DUE": _entry(
        "info",
        "No se practica {name}: {why}",
        "No {name} is withheld: {why}",
        "Nada.",
        "Nothing.",
    ),
    "CO-WITHHOLDING-NO-RATE": _entry(
        "warning",
        "La factura está en {currency} sin tasa de cambio: no se pueden calcular las retenciones "
        "en pesos",
        "The invoice is in {currency} with no exchange rate: its withholdings cannot be computed "
        "in pesos",
        "Calcule las retenciones a mano con la tasa de cambio del día de la factura.",
        "Compute the withholdings by hand at the exchange rate of the invoice's date.",
    ),
    "CO-WITHHOLDING-DIFFERS": _entry(
        "info",
        "El proveedor imprimió {name} de {printed}, pero la que corresponde es {computed}",
        "The supplier printed {name} of {printed}, but the one due is {computed}",
        "Aplique la retención calculada; avise al proveedor si la diferencia le importa.",
        "Apply the computed withholding; tell the supplier if the difference matters to them.",
        numbers=("printed", "computed"),
    ),
    # ── Mexico ──
    "MX-SUBTOTAL-MISMATCH": _entry(
        "error",
        "Los conceptos suman {computed}, pero el subtotal impreso es {printed}",
        "The concepts add up to {computed}, but the printed subtotal is {printed}",
        "Pida al proveedor que cancele y vuelva a emitir el CFDI.",
        "Ask the supplier to cancel and reissue the CFDI.",
        numbers=("computed", "printed"),
    ),
    "MX-DISCOUNT-MISMATCH": _entry(
        "error",
        "Los descuentos de los conceptos suman {computed}, pero el descuento impreso es {printed}",
        "The concepts' discounts add up to {computed}, but the printed discount is {printed}",
        "Pida al proveedor que cancele y vuelva a emitir el CFDI.",
        "Ask the supplier to cancel and reissue the CFDI.",
        numbers=("computed", "printed"),
    ),
    "MX-LINE-AMOUNT": _entry(
        "error",
        "Cantidad {quantity} × valor unitario {unit_price} = {computed}, pero el Importe es "
        "{printed}",
        "Quantity {quantity} × unit value {unit_price} = {computed}, but the amount is {printed}",
        "Pida al proveedor que cancele y vuelva a emitir el CFDI.",
        "Ask the supplier to cancel and reissue the CFDI.",
        numbers=("quantity", "unit_price", "computed", "printed"),
    ),
    "MX-TAX-AMOUNT": _entry(
        "error",
        "{name} {rate} sobre {base} es {computed}, pero el Importe es {printed}",
        "{name} {rate} on {base} is {computed}, but the amount is {printed}",
        "Pida al proveedor que cancele y vuelva a emitir el CFDI.",
        "Ask the supplier to cancel and reissue the CFDI.",
        numbers=("base", "computed", "printed"),
    ),
    "MX-LINE-TAXES-MISMATCH": _entry(
        "error",
        "{name} {rate} suma {computed} en los conceptos, pero {printed} en el comprobante",
        "{name} {rate} adds up to {computed} in the concepts, but {printed} in the document",
        "Pida al proveedor que cancele y vuelva a emitir el CFDI.",
        "Ask the supplier to cancel and reissue the CFDI.",
        numbers=("computed", "printed"),
    ),
    "MX-TAX-TOTAL-MISMATCH": _entry(
        "error",
        "Los impuestos del comprobante suman {computed}, pero {what} es {printed}",
        "The document's taxes add up to {computed}, but {what} is {printed}",
        "Pida al proveedor que cancele y vuelva a emitir el CFDI.",
        "Ask the supplier to cancel and reissue the CFDI.",
        numbers=("computed", "printed"),
    ),
    "MX-TOTAL-MISMATCH": _entry(
        "error",
        "El total impreso es {printed}, pero subtotal − descuento + impuestos trasladados − "
        "impuestos retenidos (+ impuestos locales) da {computed}",
        "The printed total is {printed}, but subtotal − discount + transferred taxes − withheld "
        "taxes (+ local taxes) gives {computed}",
        "No pague ni contabilice este CFDI; pida al proveedor que lo cancele y lo reemita.",
        "Do not pay or book this CFDI; ask the supplier to cancel and reissue it.",
        numbers=("printed", "computed"),
    ),
    "MX-NONZERO-AMOUNTS": _entry(
        "error",
        "Un CFDI de tipo {kind} debe llevar {what} en cero, y lleva {printed}",
        "A CFDI of type {kind} must carry {what} as zero, and carries {printed}",
        "Pida al proveedor que cancele y vuelva a emitir el CFDI.",
        "Ask the supplier to cancel and reissue the CFDI.",
        numbers=("printed",),
    ),
    "MX-TAXES-NOT-ALLOWED": _entry(
        "error",
        "Un CFDI de tipo {kind} no lleva impuestos, y este lleva {printed}",
        "A CFDI of type {kind} carries no taxes, and this one carries {printed}",
        "Pida al proveedor que cancele y vuelva a emitir el CFDI.",
        "Ask the supplier to cancel and reissue the CFDI.",
    ),
    "MX-UNKNOWN-TAX-CODE": _entry(
        "warning",
        "El impuesto {code!r} no es ISR (001), IVA (002) ni IEPS (003)",
        "The tax {code!r} is not ISR (001), IVA (002) or IEPS (003)",
        "Revise el impuesto con el proveedor antes de contabilizar.",
        "Check the tax with the supplier before booking.",
    ),
    "MX-UNKNOWN-FACTOR": _entry(
        "error",
        "El TipoFactor {factor!r} no es Tasa, Cuota ni Exento",
        "The tax factor (TipoFactor) {factor!r} is not Tasa, Cuota or Exento",
        "Pida al proveedor que cancele y vuelva a emitir el CFDI.",
        "Ask the supplier to cancel and reissue the CFDI.",
    ),
    "MX-EXEMPT-WITH-AMOUNT": _entry(
        "error",
        "{name} Exento no lleva tasa ni importe, y este lleva {printed}",
        "{name} exempt (Exento) carries no rate or amount, and this one carries {printed}",
        "Pida al proveedor que cancele y vuelva a emitir el CFDI.",
        "Ask the supplier to cancel and reissue the CFDI.",
    ),
    "MX-UNKNOWN-TAX-RATE": _entry(
        "error",
        "{name} {factor} {rate} no está en el catálogo c_TasaOCuota del SAT ({known})",
        "{name} {factor} {rate} is not in SAT's c_TasaOCuota catalogue ({known})",
        "Pida al proveedor que cancele y vuelva a emitir el CFDI con la tasa correcta.",
        "Ask the supplier to cancel and reissue the CFDI with the right rate.",
    ),
    "MX-UNUSUAL-WITHHOLDING-RATE": _entry(
        "warning",
        "La retención de {name} a {rate} % no es una de las tasas que fija la ley ({known})",
        "The {name} withholding at {rate} % is not one of the rates the law sets ({known})",
        "Confirme con el proveedor por qué retiene esa tasa.",
        "Confirm with the supplier why it withholds at that rate.",
    ),
    "MX-BAD-RFC": _entry(
        "error",
        "{value!r} no es un RFC válido",
        "{value!r} is not a valid RFC",
        "Pida al proveedor que cancele y vuelva a emitir el CFDI con el RFC correcto.",
        "Ask the supplier to cancel and reissue the CFDI with the right RFC.",
    ),
    "MX-RFC-CHECK-DIGIT": _entry(
        "info",
        "El dígito verificador del RFC {value} no cuadra (pasa con cerca del 1.5 % de los RFC "
        "reales)",
        "The check digit of RFC {value} does not verify (true of about 1.5 % of real RFCs)",
        "Nada: si el SAT da el CFDI por vigente, el RFC es real y esta nota se retira; si no, "
        "compare el RFC con la constancia de situación fiscal del proveedor.",
        "Nothing: if SAT answers the CFDI is valid (Vigente), the RFC is real and this note "
        "goes; if not, compare the RFC with the supplier's tax status certificate.",
    ),
    "MX-GENERIC-RECEIVER": _entry(
        "warning",
        "El CFDI está dirigido al RFC genérico {value}: no es deducible para la empresa",
        "The CFDI is addressed to the generic RFC {value}: the company cannot deduct it",
        "Pida al proveedor un CFDI a nombre de la empresa.",
        "Ask the supplier for a CFDI made out to the company.",
    ),
    "MX-RECEIVER-MISMATCH": _entry(
        "error",
        "El {field} del receptor es {printed!r}, pero el de la empresa es {expected!r}: el "
        "CFDI 4.0 no es deducible",
        "The receiver's {field} is {printed!r}, but the company's is {expected!r}: the CFDI 4.0 "
        "is not deductible",
        "Pida al proveedor que cancele y reemita el CFDI con los datos de la constancia "
        "fiscal de la empresa.",
        "Ask the supplier to cancel and reissue the CFDI with the company's tax certificate data.",
    ),
}


# Phrases that fill a message's placeholders, in both languages.
PHRASES: dict[str, dict[Language, str]] = {
    "autorretenedor": {
        "es": "el proveedor es autorretenedor (O-15)",
        "en": "the supplier withholds on itself (autorretenedor, O-15)",
    },
    "simple": {
        "es": "el proveedor está en el régimen simple de tributación (O-47)",
        "en": "the supplier is in the régimen simple de tributación (O-47)",
    },
    "below": {
        "es": "la base {base} es menor que {uvt} UVT ({threshold} con la UVT de {year})",
        "en": "the base {base} is below {uvt} UVT ({threshold} at the UVT of {year})",
    },
    "no_iva": {"es": "la factura no tiene IVA", "en": "the invoice carries no IVA"},
    "not_iva_agent": {
        "es": "la empresa no es gran contribuyente (O-13) ni agente de retención de IVA (O-23)",
        "en": "the company is neither a gran contribuyente (O-13) nor an IVA withholding agent "
        "(O-23)",
    },
    "iva_agents": {
        "es": "el proveedor también es agente de retención de IVA (O-13/O-23)",
        "en": "the supplier is an IVA withholding agent too (O-13/O-23)",
    },
    "no_ica_city": {
        "es": "no hay tabla de ReteICA para la ciudad {city} de la empresa",
        "en": "there is no ReteICA table for the company's city {city}",
    },
    # What the formats layer found wrong with a file (the `detail` of FMT-* findings). A
    # parser's own message, when it says more than the phrase, is kept labelled as such.
    "technical": {
        "es": "detalle técnico (en inglés): {text}",
        "en": "technical detail: {text}",
    },
    "too_large": {
        "es": "tiene {size} bytes y el límite es {limit} bytes",
        "en": "it has {size} bytes and the limit is {limit} bytes",
    },
    "empty": {"es": "el archivo está vacío", "en": "the file is empty"},
    "no_element": {
        "es": "no hay ningún elemento XML en el archivo",
        "en": "there is no XML element in the file",
    },
    "wide_encoding": {
        "es": "está en UTF-16 o UTF-32; las facturas vienen en UTF-8 o ISO-8859-1",
        "en": "it is in UTF-16 or UTF-32; invoices come in UTF-8 or ISO-8859-1",
    },
    "encoding": {
        "es": "la codificación {name!r} no se acepta; las facturas vienen en UTF-8 o ISO-8859-1",
        "en": "the encoding {name!r} is not accepted; invoices come in UTF-8 or ISO-8859-1",
    },
    "not_well_formed": {
        "es": "no es XML bien formado; detalle técnico (en inglés): {text}",
        "en": "not well-formed XML; technical detail: {text}",
    },
    "cut_short": {
        "es": "termina antes de estar completo; detalle técnico (en inglés): {text}",
        "en": "it ends before it is complete; technical detail: {text}",
    },
    "entities": {
        "es": "declara entidades XML, que una factura nunca necesita",
        "en": "it declares XML entities, which invoices never need",
    },
    "too_many_nodes": {
        "es": "tiene más de {limit} elementos y atributos",
        "en": "it has more than {limit} elements and attributes",
    },
    "too_deep": {
        "es": "sus elementos se anidan a más de {limit} niveles",
        "en": "its elements nest deeper than {limit} levels",
    },
    "huge_text": {
        "es": "un texto del XML es más largo de lo que el lector seguro admite",
        "en": "a text in the XML is longer than the safe reader allows",
    },
    "zip_too_deep": {
        "es": "hay ZIP dentro de ZIP a más de {limit} niveles",
        "en": "ZIP files are nested more than {limit} deep",
    },
    "zip_too_many": {
        "es": "tiene {count} archivos y el límite es {limit}",
        "en": "it holds {count} files and the limit is {limit}",
    },
    "zip_too_big": {
        "es": "{name!r} se expande más allá del límite ({limit} bytes por archivo, "
        "{total} en total)",
        "en": "{name!r} inflates past the limit ({limit} bytes a file, {total} in all)",
    },
    "zip_ratio": {
        "es": "{name!r} se expande {ratio} veces y el límite es {limit}",
        "en": "{name!r} inflates {ratio} times and the limit is {limit}",
    },
    "zip_unreadable": {
        "es": "no es un ZIP legible; detalle técnico (en inglés): {text}",
        "en": "not a readable ZIP file; technical detail: {text}",
    },
    "zip_encrypted": {
        "es": "{name!r} está protegido con contraseña",
        "en": "{name!r} is encrypted",
    },
    "zip_method": {
        "es": "{name!r} usa un método de compresión que las facturas nunca usan",
        "en": "{name!r} uses a compression method invoices never use",
    },
    "zip_member_unreadable": {
        "es": "{name!r} no se puede extraer; detalle técnico (en inglés): {text}",
        "en": "{name!r} cannot be extracted; technical detail: {text}",
    },
    "zip_no_document": {
        "es": "el ZIP no trae ningún XML ni PDF",
        "en": "the ZIP holds no XML or PDF document",
    },
    "pdf_attachment_too_large": {
        "es": "el archivo {name!r} que trae adentro pasa de {limit} bytes",
        "en": "the embedded {name!r} is larger than {limit} bytes",
    },
    "pdf_no_identifiers": {
        "es": "el PDF no muestra CUFE, UUID, NIT ni RFC",
        "en": "the PDF shows no CUFE, UUID, NIT or RFC",
    },
    "not_invoice": {
        "es": "el elemento raíz {element} no es de una factura",
        "en": "the root element {element} is not an invoice's",
    },
    "not_dian_ubl": {
        "es": "{element} no es un documento UBL de la DIAN",
        "en": "{element} is not a DIAN UBL document",
    },
    "cfdi_version": {
        "es": "la versión {version!r} del CFDI no se admite",
        "en": "CFDI version {version!r} is not supported",
    },
    "cfdi_kind": {
        "es": "el TipoDeComprobante {kind!r} no es un tipo de CFDI",
        "en": "TipoDeComprobante {kind!r} is not a CFDI document type",
    },
    "attached_empty": {
        "es": "el AttachedDocument no trae ningún documento en su Description",
        "en": "the AttachedDocument carries no document in its Description",
    },
    "attached_not_invoice": {
        "es": "el AttachedDocument no trae una factura ni una nota crédito o débito",
        "en": "the AttachedDocument carries no invoice, credit note or debit note",
    },
    "attached_verdict": {
        "es": "la respuesta de la DIAN en el contenedor no es un ApplicationResponse",
        "en": "the DIAN verdict in the container is not an ApplicationResponse",
    },
    "cufe_places": {
        "es": "documento: {uuid}; código QR: {qr}; contenedor: {container}; respuesta de la "
        "DIAN: {response}",
        "en": "document: {uuid}; QR code: {qr}; container: {container}; DIAN's response: "
        "{response}",
    },
}
# The values of a phrase that are printed numbers, as in Entry.numbers.
PHRASE_NUMBERS: dict[str, tuple[str, ...]] = {"below": ("base", "threshold")}


def phrase(key: str, /, **values: Value | Decimal) -> Phrase:
    """The phrase `key` of PHRASES with `values`, as a finding stores it."""
    if key not in PHRASES:
        raise KeyError(key)
    return {"phrase": key, **{name: _stored(value) for name, value in values.items()}}


def finding(code: str, path: str, /, **values: Param | Decimal) -> Finding:
    """A finding of `code` at `path`; `values` fill its message's placeholders."""
    return Finding(
        code=code,
        severity=CATALOGUE[code].severity,
        path=path,
        params={name: _stored(value) for name, value in values.items()},
    )


def _stored(value: _P | Decimal) -> _P | str:
    # A Decimal is stored as its text, which is how a message prints it.
    return str(value) if isinstance(value, Decimal) else value


def message(item: Finding, lang: Language, country: str | None = None) -> str:
    """What `item` says, in `lang`, its amounts written as `country` writes them (as printed
    when it is not known)."""
    if item.stored_message is not None:
        return item.stored_message
    values = _worded(item.params, CATALOGUE[item.code].numbers, lang, country)
    return CATALOGUE[item.code].message[lang].format(**values)


def worded(detail: Phrase, lang: Language, country: str | None = None) -> str:
    """A phrase stored by `phrase`, in `lang`."""
    key = str(detail["phrase"])
    values = _worded(detail, PHRASE_NUMBERS.get(key, ()), lang, country)
    return PHRASES[key][lang].format(**values)


def _worded(
    params: Mapping[str, Param], numbers: tuple[str, ...], lang: Language, country: str | None
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in params.items():
        if isinstance(value, dict):
            values[name] = worded(value, lang, country)
        elif isinstance(value, str) and name in numbers:
            values[name] = wording.amount(value, country)
        elif isinstance(value, int):
            values[name] = wording.count(value, lang)
        else:
            values[name] = value
    return values


def shown(item: Finding, lang: Language, country: str | None = None) -> dict[str, Any]:
    """`item` as the JSON a person's tools read (SPEC §2.2): its message rendered in `lang`,
    beside the values it names, as stored."""
    return {
        "code": item.code,
        "severity": item.severity,
        "message": message(item, lang, country),
        "path": item.path,
        "params": item.params,
    }


# The path of a finding about the whole file rather than one value of the document.
WHOLE_FILE = "file"


def located(path: str) -> str:
    """Where a finding points, as printed after it: a path into the document, which reads the
    same in every language (like the code); nothing when it is about the whole file."""
    return "" if path == WHOLE_FILE else f" ({path})"


MOTIVO_WORDS: dict[Language, dict[str, str]] = {
    "es": {"file": "Archivo", "received": "Recibido", "todo": "Qué hacer"},
    "en": {"file": "File", "received": "Received", "todo": "What to do"},
}


def motivo(
    titles: dict[Language, str],
    file: str,
    received: str,
    findings: Sequence[Finding],
    country: str | None = None,
) -> str:
    """A `.motivo.txt`: what was wrong and what to do, in Spanish, then in English, amounts
    as `country` writes them. Info findings are left out (they judge nothing)."""
    order = {"error": 0, "warning": 1}
    judged = sorted(
        (item for item in findings if item.severity != "info"),
        key=lambda item: order[item.severity],
    )
    parts = []
    for lang in LANGUAGES:
        words = MOTIVO_WORDS[lang]
        lines = [titles[lang], f"{words['file']}: {file}", f"{words['received']}: {received}", ""]
        for item in judged:
            severity = wording.SEVERITIES[lang][item.severity]
            said = message(item, lang, country)
            lines.append(f"- [{severity}] {item.code}{located(item.path)}: {said}")
            lines.append(f"  {words['todo']}: {CATALOGUE[item.code].action[lang]}")
        parts.append("\n".join(lines))
    return "\n\n----\n\n".join(parts) + "\n"


BEGIN, END = "<!-- catalogue: generated -->", "<!-- /catalogue -->"


def markdown() -> str:
    """The catalogue as the table docs/findings.md carries between its markers."""
    rows = [
        "| code | severity | message | what to do |",
        "|---|---|---|---|",
        *(
            f"| `{code}` | {entry.severity} | {entry.message['en']} | {entry.action['en']} |"
            for code, entry in CATALOGUE.items()
        ),
    ]
    return "\n".join([BEGIN, *rows, END])


def _rewrite(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(head + markdown() + tail, encoding="utf-8")


if __name__ == "__main__":
    _rewrite(Path(sys.argv[1]))
