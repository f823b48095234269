"""The words around what a person reads about invoices, in Spanish and English, and numbers
written the way each country writes them.

What the CLI prints about invoices (`inspect`, `invoices list/show`, `jobs`, `retry`) and what a
`.motivo.txt` says is wholly in one language: the labels, states and severities come from
here; the findings' messages from `facturasd.findings`. Amounts are written the way the
invoice's country writes them, whatever the language (a Colombian reads `20.384.700,00`, a
Mexican `20,384,700.00`); JSON keeps the document's own strings. Logs stay English and do not
use this module.
"""

from __future__ import annotations

import re
from typing import Literal

Language = Literal["es", "en"]
LANGUAGES: tuple[Language, ...] = ("es", "en")

# (thousands separator, decimal mark) by country.
_SEPARATORS = {"CO": (".", ","), "MX": (",", ".")}
_PLAIN = re.compile(r"^([+-]?)([0-9]+)(?:\.([0-9]+))?$", re.ASCII)
# Spanish separates the thousands of a number with a space, never of one of four digits (RAE);
# English with a comma. A no-break space keeps the number on one line.
_GROUPING = {"es": "\u00a0", "en": ","}


def amount(text: str, country: str | None) -> str:
    """`text`, a printed decimal ("20384700.00"), as `country` writes it, its decimals kept.
    Text that is not a plain decimal, or a country not known, leaves it as printed."""
    match = _PLAIN.match(text)
    if match is None or country not in _SEPARATORS:
        return text
    thousands, mark = _SEPARATORS[country]
    sign, whole, decimals = match.groups()
    written = sign + _grouped(whole, thousands)
    return f"{written}{mark}{decimals}" if decimals is not None else written


def count(value: int, lang: Language) -> str:
    """A whole number (bytes, elements) as `lang` writes it when no country says otherwise."""
    digits = str(abs(value))
    grouped = digits if len(digits) <= 4 else _grouped(digits, _GROUPING[lang])
    return f"-{grouped}" if value < 0 else grouped


def _grouped(digits: str, separator: str) -> str:
    head = len(digits) % 3 or 3
    groups = [digits[:head], *(digits[i : i + 3] for i in range(head, len(digits), 3))]
    return separator.join(groups)


# Of the findings, and of the alerts (critical, warning).
SEVERITIES: dict[Language, dict[str, str]] = {
    "es": {
        "critical": "crítico",
        "error": "error",
        "warning": "advertencia",
        "info": "información",
    },
    "en": {"critical": "critical", "error": "error", "warning": "warning", "info": "info"},
}

# Invoice states (constants.InvoiceState), compliance statuses (ComplianceStatus) and job
# states (JobState) as a person reads them; the CLI's options keep the values.
STATES: dict[Language, dict[str, str]] = {
    "es": {
        "received": "recibida",
        "unreadable": "ilegible",
        "rejected": "rechazada",
        "duplicate": "repetida",
        "needs_review": "en revisión",
        "checked": "revisada",
        "booking": "contabilizándose",
        "booked": "contabilizada",
        "linked": "enlazada",
        "discarded": "descartada",
        "PENDING": "pendiente",
        "VALIDATED": "validada",
        "RETRY": "por reintentar",
        "FAILED": "fallida",
        "FALLBACK": "sin confirmar",
        "queued": "en cola",
        "running": "en curso",
        "done": "hecha",
        "dead": "muerta",
    },
    "en": {
        "received": "received",
        "unreadable": "unreadable",
        "rejected": "rejected",
        "duplicate": "duplicate",
        "needs_review": "needs review",
        "checked": "checked",
        "booking": "booking",
        "booked": "booked",
        "linked": "linked",
        "discarded": "discarded",
        "PENDING": "pending",
        "VALIDATED": "validated",
        "RETRY": "to retry",
        "FAILED": "failed",
        "FALLBACK": "not confirmed",
        "queued": "queued",
        "running": "running",
        "done": "done",
        "dead": "dead",
    },
}

KINDS: dict[Language, dict[str, str]] = {
    "es": {
        "invoice": "factura",
        "credit_note": "nota crédito",
        "debit_note": "nota débito",
        "support_document": "documento soporte",
        "payment": "complemento de pago",
        "payroll": "nómina",
        "transfer": "traslado",
    },
    "en": {
        "invoice": "invoice",
        "credit_note": "credit note",
        "debit_note": "debit note",
        "support_document": "support document",
        "payment": "payment",
        "payroll": "payroll",
        "transfer": "transfer",
    },
}

VERDICTS: dict[Language, dict[str, str]] = {
    "es": {"ok": "correcta", "warnings": "con advertencias", "rejected": "rechazada"},
    "en": {"ok": "correct", "warnings": "with warnings", "rejected": "rejected"},
}

# What an attempt to get the tax authority's word came to (store.compliance.Outcome), and
# where the word came from.
OUTCOMES: dict[Language, dict[str, str]] = {
    "es": {
        "valid": "válida",
        "invalid": "no válida",
        "not_found": "no encontrada",
        "unavailable": "sin respuesta",
        "refused": "solicitud rechazada",
    },
    "en": {
        "valid": "valid",
        "invalid": "not valid",
        "not_found": "not found",
        "unavailable": "no answer",
        "refused": "request refused",
    },
}
SOURCES: dict[Language, dict[str, str]] = {
    "es": {"online": "en línea", "embedded": "evidencia en el archivo"},
    "en": {"online": "online", "embedded": "evidence in the file"},
}

# Labels of what is printed about one invoice (the listings' headers are cli.LISTING_WORDS).
WORDS: dict[Language, dict[str, str]] = {
    "es": {
        "file": "archivo",
        "received": "recibida",
        "as": "como",
        "issuer": "emisor",
        "receiver": "receptor",
        "company": "empresa",
        "total": "total",
        "taxes": "impuestos",
        "withholdings": "retenciones",
        "score": "puntaje",
        "pdf": "PDF adjunto",
        "unread": "no se pudo leer",
        "history": "historia (los motivos del sistema se registran en inglés)",
        # The compliance status: the tax authority's word (the listing's column is named so).
        "authority": "DIAN/SAT",
        "attempts": "consultas a la autoridad (el detalle en sus palabras; si no respondió, en "
        "inglés)",
        "alerts": "alertas (sus datos se registran en inglés)",
        "bill": "factura de proveedor en Alegra",
        "read_from": "leído del texto del PDF",
    },
    "en": {
        "file": "file",
        "received": "received",
        "as": "as",
        "issuer": "issuer",
        "receiver": "receiver",
        "company": "company",
        "total": "total",
        "taxes": "taxes",
        "withholdings": "withholdings",
        "score": "score",
        "pdf": "attached PDF",
        "unread": "could not be read",
        "history": "history",
        "authority": "DIAN/SAT",
        "attempts": "asked of the tax authority (the detail in its words)",
        "alerts": "alerts",
        "bill": "supplier bill in Alegra",
        "read_from": "read from the PDF's text",
    },
}


def state(value: str, lang: Language) -> str:
    """A state or status as `lang` says it; one this version does not know, as stored."""
    return STATES[lang].get(value, value)


# What a review action says it did, and why it refused (errors.ReviewRefused's reasons).
# `{state}` is worded in the language, the rest filled in as given.
REVIEW: dict[Language, dict[str, str]] = {
    "es": {
        "queued_again": "en cola de nuevo: {ids}",
        "queued_again_count": "facturas en cola de nuevo: {count}",
        "assigned": "#{id} asignada a {company}: {state}",
        "accepted": "#{id} aceptada: {state}",
        "discarded": "#{id} descartada",
        "no_invoice": "no hay factura #{id}",
        "being_read": "la factura #{id} se está leyendo ahora; intente de nuevo",
        "no_company": "no hay empresa {company!r} (empresas: {known})",
        "no_companies": "no hay empresa {company!r}: no hay empresas configuradas",
        "not_in_review": "la factura #{id} está {state}; solo se acepta una que esté en revisión",
        "pdf_alone": "la factura #{id} es un PDF solo: la factura es el XML; déjelo en la "
        "bandeja de entrada y el PDF se enlaza con él",
        "discarded_already": "la factura #{id} ya está descartada",
        "changed": "la factura #{id} cambió mientras tanto; vuelva a mirarla",
        "asked_again": "{invoice}: en cola para consultar de nuevo (estaba {state})",
        "asked_count": "facturas en cola para consultar: {count} (las consulta el daemon en "
        "marcha, o al arrancar)",
        "not_checked": "la factura #{id} está {state}; solo se consulta a la autoridad una "
        "factura revisada",
        "being_asked": "la factura #{id} se está consultando ahora mismo; intente de nuevo en un "
        "momento",
        "booking_again": "{invoice}: en cola para contabilizar en Alegra (estaba {state})",
        "bill_linked": "#{id} contabilizada: factura de proveedor {bill} en Alegra",
        "not_undecided": "la factura #{id} no espera a que una persona mire en Alegra (está "
        "{state})",
        "being_booked": "la factura #{id} se está contabilizando ahora mismo; intente de nuevo "
        "en un momento",
    },
    "en": {
        "queued_again": "queued again: {ids}",
        "queued_again_count": "invoices queued again: {count}",
        "assigned": "#{id} assigned to {company}: {state}",
        "accepted": "#{id} accepted: {state}",
        "discarded": "#{id} discarded",
        "no_invoice": "there is no invoice #{id}",
        "being_read": "invoice #{id} is being read right now; try again",
        "no_company": "no company {company!r} (companies: {known})",
        "no_companies": "no company {company!r}: no companies are configured",
        "not_in_review": "invoice #{id} is {state}; only one in needs review is accepted",
        "pdf_alone": "invoice #{id} is a PDF alone: the XML is the invoice; drop it in the "
        "inbox and the PDF is linked to it",
        "discarded_already": "invoice #{id} is discarded already",
        "changed": "invoice #{id} changed meanwhile; look again",
        "asked_again": "{invoice}: queued to be asked again (was {state})",
        "asked_count": "invoices queued to be asked: {count} (the running daemon asks, or it "
        "does at its next start)",
        "not_checked": "invoice #{id} is {state}; only a checked invoice is asked of the tax "
        "authority",
        "being_asked": "invoice #{id} is being asked right now; try again in a moment",
        "booking_again": "{invoice}: queued to be booked in Alegra (was {state})",
        "bill_linked": "#{id} booked: supplier bill {bill} in Alegra",
        "not_undecided": "invoice #{id} does not wait for a person to look in Alegra (it is "
        "{state})",
        "being_booked": "invoice #{id} is being booked right now; try again in a moment",
    },
}


# What long work says while it goes on (`facturasd.progress`), before "40 %".
PROGRESS: dict[Language, dict[str, str]] = {
    "es": {"reprocess": "reprocesando facturas", "report": "escribiendo el informe"},
    "en": {"reprocess": "reprocessing invoices", "report": "writing the report"},
}


def review(key: str, lang: Language, **values: object) -> str:
    """A review action's result or refusal, in `lang`."""
    if "state" in values:
        values["state"] = state(str(values["state"]), lang)
    return REVIEW[lang][key].format(**values)
