"""PDF: the XML files a PDF carries, and what its text layer shows when it carries none.

Pure: bytes in. A PDF with an embedded XML is read through that XML (the reader does it). A PDF
without one gives a partial document built only from what the text says, each value found by a
pattern below (documented in docs/formats.md); anything not found stays None — never a guess.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

from pypdf import PdfReader, apply_configuration

from facturasd.errors import BadPdf, UnknownDocument
from facturasd.findings import phrase
from facturasd.formats.model import Country, Document, Party, Totals

PDF_MAGIC = b"%PDF-"
# Invoices are short; hostile PDFs are not. Text is taken from at most this many pages and
# this many bytes of page content; at most this many embedded XML files are read.
MAX_PAGES = 20
MAX_CONTENT_BYTES = 2 * 1024 * 1024
MAX_ATTACHMENTS = 10

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


def open_pdf(data: bytes, max_bytes: int) -> PdfContent:
    """The PDF's text (first pages, bounded) and the XML files it embeds (bounded)."""
    # pypdf's own resource limits, lowered to ours for this call (a context variable).
    with apply_configuration(
        zlib_maximum_output_length=max_bytes,
        lzw_maximum_output_length=max_bytes,
        run_length_maximum_output_length=max_bytes,
        brotli_maximum_output_length=max_bytes,
        jbig2_maximum_output_length=max_bytes,
        maximum_declared_stream_length=max_bytes,
        array_based_stream_maximum_output_length=max_bytes,
        image_maximum_buffer_size=max_bytes,
        stream_parsing_work_maximum_count=200_000,
    ):
        return _open(data, max_bytes)


def _open(data: bytes, max_bytes: int) -> PdfContent:
    try:
        reader = PdfReader(io.BytesIO(data))
        texts: list[str] = []
        budget = MAX_CONTENT_BYTES
        for page in reader.pages[:MAX_PAGES]:
            contents = page.get_contents()
            budget -= len(contents.get_data()) if contents is not None else 0
            if budget < 0:
                break  # the text so far is what we read: content this large is no invoice
            texts.append(page.extract_text() or "")
        names = [n for n in reader.attachments if n.lower().endswith(".xml")][:MAX_ATTACHMENTS]
        attachments = []
        for name in names:
            for content in reader.attachments[name]:
                if len(content) > max_bytes:
                    raise BadPdf(phrase("pdf_attachment_too_large", name=name, limit=max_bytes))
                attachments.append((name, content))
    except BadPdf:
        raise
    except Exception as exc:  # pypdf raises many kinds on hostile input; none may escape
        raise BadPdf(phrase("technical", text=f"{type(exc).__name__}: {exc}")) from None
    return PdfContent("\n".join(texts), attachments)


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
        raise UnknownDocument(phrase("pdf_no_identifiers"))
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
