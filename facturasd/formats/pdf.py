"""PDF: the XML files a PDF carries, and what its text layer shows when it carries none.

Pure: bytes in. A PDF with an embedded XML is read through that XML (the reader does it). A PDF
without one gives a partial document built only from what the text says, each value found by a
pattern below (documented in docs/formats.md); anything not found stays None — never a guess.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

from pypdf import PdfReader
from pypdf.errors import PdfReadError

from facturasd.errors import BadPdf, UnknownDocument
from facturasd.formats.model import Country, Document, Party, Totals

PDF_MAGIC = b"%PDF-"
# Text beyond this many pages is not looked at: invoices are short, hostile PDFs are not.
MAX_PAGES = 20

CUFE = re.compile(r"\b([0-9a-fA-F]{96})\b")
UUID = re.compile(
    r"\b([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})\b"
)
# "NIT 901.944.237-8", "NIT: 901944237 - 8"
NIT = re.compile(r"\bNIT\b\.?:?\s*((?:\d[\d.\s]{4,14}\d))\s*-\s*(\d)\b", re.IGNORECASE)
RFC = re.compile(r"\b([A-ZÑ&]{3,4}\d{6}[A-Z\d]{3})\b")
NUMBER = re.compile(
    r"(?:factura(?:\s+electr[oó]nica)?(?:\s+de\s+venta)?|folio|n[uú]mero|no\.)\s*[:#.]?\s*"
    r"(?:no\.?\s*)?([A-Z]{0,8}-?\d{1,12})\b",
    re.IGNORECASE,
)
DATE = re.compile(r"\b(20\d{2}-\d{2}-\d{2})\b")
TOTAL = re.compile(r"\btotal(?:\s+a\s+pagar)?\s*:?\s*\$?\s*([\d][\d.,]*\d)", re.IGNORECASE)


@dataclass
class PdfContent:
    text: str
    attachments: list[tuple[str, bytes]] = field(default_factory=list)


def is_pdf(data: bytes) -> bool:
    return data.lstrip()[:5] == PDF_MAGIC


def open_pdf(data: bytes) -> PdfContent:
    """The PDF's text (first pages) and its embedded files."""
    try:
        reader = PdfReader(io.BytesIO(data))
        text = "\n".join(page.extract_text() or "" for page in reader.pages[:MAX_PAGES])
        attachments = [
            (name, content) for name, contents in reader.attachments.items() for content in contents
        ]
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise BadPdf(f"a PDF that cannot be read: {exc}") from None
    return PdfContent(text, attachments)


def partial_document(text: str) -> Document:
    """What the text layer states, and nothing else. Country comes from the kind of id found."""
    cufe = CUFE.search(text)
    uuid = UUID.search(text)
    nits = list(dict.fromkeys((_digits(n), dv) for n, dv in NIT.findall(text)))
    rfcs = list(dict.fromkeys(RFC.findall(text)))
    country: Country
    if cufe or nits:
        country = "CO"
        parties = [Party(tax_id=nit, check_digit=dv, id_type="31") for nit, dv in nits[:2]]
    elif uuid or rfcs:
        country = "MX"
        parties = [Party(tax_id=rfc, id_type="rfc") for rfc in rfcs[:2]]
    else:
        raise UnknownDocument("the PDF shows no CUFE, UUID, NIT or RFC: not an e-invoice")
    parties += [Party()] * (2 - len(parties))
    key = cufe or uuid
    return Document(
        country=country,
        kind=None,
        number=_first(NUMBER, text),
        uuid=key.group(1).lower() if key else None,
        issued_at=_first(DATE, text),
        issuer=parties[0],
        receiver=parties[1],
        totals=Totals(total=_first(TOTAL, text)),
    )


def _first(pattern: re.Pattern[str], text: str) -> str | None:
    match = pattern.search(text)
    return match.group(1) if match else None


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())
