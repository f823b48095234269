"""PDF: the XML files a PDF carries, and what its text layer shows when it carries none.

Pure: bytes in. A PDF with an embedded XML is read through that XML (the reader does it). A PDF
without one gives a partial document built only from what the text says, each value read after
its own label, the labels tried in a fixed precedence (documented in docs/formats.md); anything
not found with certainty stays None — never a guess.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from pypdf import PdfReader, apply_configuration

from facturasd.errors import BadPdf, UnknownDocument
from facturasd.findings import phrase
from facturasd.formats.model import Country, Document, Party, Totals, number

PDF_MAGIC = b"%PDF-"
# Invoices are short; hostile PDFs are not. Text is taken from at most this many pages and
# this many bytes of page content; at most this many embedded XML files are read.
MAX_PAGES = 20
MAX_CONTENT_BYTES = 2 * 1024 * 1024
MAX_ATTACHMENTS = 10


def _labels(*patterns: str) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(pattern, re.IGNORECASE) for pattern in patterns)


# Every dash a PDF may print where "-" is meant (U+2010–U+2015, minus sign, small and full-width
# hyphen-minus): read as "-" before anything is looked for, so UUIDs and NITs print any of them.
DASHES = str.maketrans(
    dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d", "-")
)
CUFE = re.compile(r"\b([0-9a-fA-F]{96})\b")
UUID = re.compile(
    r"\b([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})\b"
)
# "NIT 901.944.237-8", "NIT: 901944237 - 8"
NIT = re.compile(r"\bNIT\b\.?:?\s*((?:\d[\d.\s]{4,14}\d))\s*-\s*(\d)\b", re.IGNORECASE)
RFC = re.compile(r"\b([A-ZÑ&]{3,4}\d{6}[A-Z\d]{3})\b")

# Lines about the software that made the PDF (its provider's NIT or RFC, the PAC's RFC): no
# party of the document is read from them.
PROVIDER = re.compile(
    r"facturatech|proveedor\s+tecnol|software|(?:elaborad|generad|impres|desarrollad)[oa]\s+por"
    r"|proveedor\s+de\s+certificaci|certificador|\bPAC\b|RfcProvCertif",
    re.IGNORECASE,
)
# Where a party's block starts: the next tax id after one of these is that party's.
ISSUER = re.compile(
    r"\b(?:emisor|vendedor|facturador|prestador|raz[oó]n\s+social\s+del?\s+emisor)\b",
    re.IGNORECASE,
)
RECEIVER = re.compile(
    r"\b(?:receptor|cliente|adquir[ie]{1,2}nte|comprador|pagador|facturad[oa]\s+a"
    r"|se[ñn]or(?:\(?es\)?)?)\b",
    re.IGNORECASE,
)
# A party label names the next tax id only within this many lines.
BLOCK_LINES = 4
# Where the text stops being about the document itself: DIAN's numbering authorization (its
# number and validity dates) and addresses ("Calle 21"). Numbers and dates are read only before.
ASIDE = re.compile(
    r"autoriza|resoluci[oó]n|numeraci[oó]n|habilitaci[oó]n|vigen|rango|direcci[oó]n|domicilio"
    r"|\b(?:calle|carrera|cra|cll?|kr|avenida|av|transversal|diagonal|colonia|col)\b\.?\s*\d",
    re.IGNORECASE,
)

_NO = r"(?:no\.?|n[°º]|nro\.?|n[uú]mero)"
# Each field's labels, most trusted first. Two different values under one label leave the
# field empty; a label is tried only when no label before it was printed with a value.
NUMBER_LABELS = _labels(
    rf"factura\s+electr[oó]nica\s+de\s+venta\s*{_NO}?",
    rf"factura\s+(?:de\s+venta\s+|electr[oó]nica\s+)?{_NO}",
    rf"{_NO}\s+(?:de\s+)?factura",
    rf"(?:nota\s+(?:cr[eé]dito|d[eé]bito)|documento\s+soporte)(?:\s+electr[oó]nic[ao])?\s*{_NO}",
    r"\bfolio\b(?!\s+fiscal)",
)
NUMBER_VALUE = re.compile(rf"\s*[:#.]?\s*(?:{_NO}\s*[:#.]?\s*)?([A-Z]{{0,10}}-?\d{{1,15}})\b", re.I)
DATE_LABELS = _labels(
    r"fecha\s+(?:y\s+hora\s+)?de\s+emisi[oó]n",
    r"fecha\s+(?:y\s+hora\s+)?de\s+expedici[oó]n",
    r"fecha\s+(?:y\s+hora\s+)?de\s+generaci[oó]n",
    r"fecha\s+(?:de\s+)?factura(?:ci[oó]n)?",
    r"\bfecha(?=\s*:)",
)
DATE_VALUE = re.compile(r"\s*:?\s*(\d{4}[-/]\d{1,2}[-/]\d{1,2}|\d{1,2}[-/]\d{1,2}[-/]\d{4})(?!\d)")
# The amount payable comes before the gross: "Total" above a copayment is not what is paid.
PAYABLE_LABELS = _labels(r"\b(?:(?:valor\s+)?total|neto|valor)\s+a\s+pagar")
GROSS_LABELS = _labels(r"\btotal(?!\s+a\s+pagar)")
# What makes a bare "Total" something other than the amount payable.
DEDUCTION = re.compile(
    r"copago|cuota\s+moderadora|cuota\s+de\s+recuperaci[oó]n|anticipo", re.IGNORECASE
)
# An amount ends where its digits do: "1 000,00" (grouped by spaces) is not read as "1".
AMOUNT_VALUE = re.compile(r"\s*:?\s*(?:\$|COP|MXN|USD)?\s*(\d(?:[\d.,]*\d)?)(?!\s?\d)", re.I)
CUFE_LABELS = _labels(r"\b(?:CUFE|CUDE)\b", r"c[oó]digo\s+[uú]nico(?:\s+de\s+factura)?")
CUFE_VALUE = re.compile(r"\s*[:#]?\s*([0-9a-fA-F]{96})\b")
UUID_LABELS = _labels(r"folio\s+fiscal", r"\bUUID\b")
UUID_VALUE = re.compile(r"\s*[:#]?\s*" + UUID.pattern)
# The decimal separator each country prints ("6.355.700,00" in Colombia, "1,000.00" in Mexico).
DECIMAL_SEPARATOR = {"CO": ",", "MX": "."}
Found = tuple[str, str] | None
"""A value and the text it was read from, or None when it was not found with certainty."""
# What a source line may keep: enough to recognize it.
SOURCE_CHARS = 160


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
    """What the text layer states, and nothing else: each value only from its own label, with
    the line it was read from (`read_from`). Country comes from the kind of id found."""
    text = text.translate(DASHES)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    lines = [line for line in lines if line]
    country: Country
    if CUFE.search(text) or NIT.search(text):
        country, key, tax_id = "CO", _labelled(lines, CUFE_LABELS, CUFE_VALUE), NIT
        key = key or _only(CUFE, lines)
    elif UUID.search(text) or RFC.search(text):
        country, key, tax_id = "MX", _labelled(lines, UUID_LABELS, UUID_VALUE), RFC
        key = key or _only(UUID, lines)
    else:
        raise UnknownDocument(phrase("pdf_no_identifiers"))
    issuer, receiver = _parties(lines, tax_id)
    own = [_before_aside(line) for line in lines]
    found = {
        "uuid": key and (key[0].lower(), key[1]),
        "number": _labelled(own, NUMBER_LABELS, NUMBER_VALUE),
        "issued_at": _labelled(own, DATE_LABELS, DATE_VALUE, _iso_date),
        "issuer.tax_id": issuer,
        "receiver.tax_id": receiver,
        "totals.total": _total(lines, country),
    }
    values = {name: hit[0] for name, hit in found.items() if hit}
    return Document(
        country=country,
        kind=None,
        number=values.get("number"),
        uuid=values.get("uuid"),
        issued_at=values.get("issued_at"),
        issuer=_party(values.get("issuer.tax_id"), country),
        receiver=_party(values.get("receiver.tax_id"), country),
        totals=Totals(total=values.get("totals.total")),
        read_from={name: hit[1][:SOURCE_CHARS] for name, hit in found.items() if hit},
    )


def _labelled(
    lines: list[str],
    labels: tuple[re.Pattern[str], ...],
    value: re.Pattern[str],
    clean: Callable[[str], str | None] = lambda printed: printed,
) -> Found:
    """The value printed right after the first of `labels` that has one (on its line, or on the
    next when the label ends its line); None when that label shows two different values."""
    for label in labels:
        hits: dict[str, str] = {}
        for at, line in enumerate(lines):
            for match in label.finditer(line):
                rest, source = line[match.end() :], line
                if not rest.strip(" :#.") and at + 1 < len(lines):
                    rest, source = lines[at + 1], f"{line} / {lines[at + 1]}"
                printed = value.match(rest)
                cleaned = clean(printed.group(1)) if printed else None
                if cleaned is not None:
                    hits.setdefault(cleaned, source)
        if hits:
            return next(iter(hits.items())) if len(hits) == 1 else None
    return None


def _only(pattern: re.Pattern[str], lines: list[str]) -> Found:
    """An unlabelled key, when the text prints exactly one (a CUFE or a UUID is unmistakable)."""
    keys = {match.group(1).lower(): line for line in lines for match in pattern.finditer(line)}
    return _one(keys)


def _before_aside(line: str) -> str:
    """The line up to where an address or the numbering authorization starts."""
    aside = ASIDE.search(line)
    return line[: aside.start()] if aside else line


def _iso_date(printed: str) -> str | None:
    """ "2026-04-27", "2026/04/27" or "27/04/2026" (day first, as both countries print it) as an
    ISO date; None if it is no date."""
    parts = [int(part) for part in re.split(r"[-/]", printed)]
    year, month, day = parts if parts[0] > 31 else parts[::-1]
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return None


def _total(lines: list[str], country: Country) -> Found:
    def amount(printed: str) -> str | None:
        return _amount(printed, country)

    payable = _labelled(lines, PAYABLE_LABELS, AMOUNT_VALUE, amount)
    if payable is not None or any(DEDUCTION.search(line) for line in lines):
        return payable
    return _labelled(lines, GROSS_LABELS, AMOUNT_VALUE, amount)


def _amount(printed: str, country: Country) -> str | None:
    """A printed amount as a plain number ("6.355.700,00" → "6355700.00"), its decimals kept.
    Both separators, or one repeated, say which is which; a lone separator is the decimal one
    unless three digits follow it, and then the country's convention decides."""
    separators = [ch for ch in printed if ch in ".,"]
    decimal: str | None
    if len(set(separators)) == 2:
        decimal = separators[-1]
    elif len(separators) != 1:
        decimal = None
    elif len(printed) - printed.index(separators[0]) != 4:
        decimal = separators[0]
    else:
        decimal = DECIMAL_SEPARATOR[country]
    whole, fraction = printed, ""
    if decimal is not None and decimal in printed:
        whole, _, fraction = printed.rpartition(decimal)
        if decimal in whole or not fraction.isdigit():
            return None
    groups = re.split(r"[.,]", whole)
    grouped = len(groups) == 1 or (len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:]))
    if len(set(re.findall(r"[.,]", whole))) > 1 or not grouped:
        return None
    plain = "".join(groups) + (f".{fraction}" if fraction else "")
    return plain if number(plain) is not None else None


def _parties(lines: list[str], tax_id: re.Pattern[str]) -> tuple[Found, Found]:
    """The issuer's and the receiver's tax ids. The document opens with its issuer's block, so
    the first id before any label is the issuer's; after that, an id belongs to a party only as
    the first one within BLOCK_LINES lines of that party's label. Lines about the software that
    made the PDF (and the line after one that names no id itself) are skipped."""
    found: dict[str, dict[str, str]] = {"issuer": {}, "receiver": {}}
    side: str | None = "issuer"
    labelled = False  # the opening block is the issuer's without a label
    left = len(lines)  # and lasts until a label says otherwise
    skip_next = False
    for line in lines:
        if skip_next or PROVIDER.search(line):
            skip_next = not skip_next and not tax_id.search(line)
            continue
        events = sorted(
            [(m.start(), "issuer", "") for m in ISSUER.finditer(line)]
            + [(m.start(), "receiver", "") for m in RECEIVER.finditer(line)]
            + [(m.start(), "", _tax_id(m)) for m in tax_id.finditer(line)]
        )
        for _, label, value in events:
            if label and labelled and side not in (None, label):
                side = None  # two blocks' labels before either's id ("Emisor  Cliente"): whose?
            elif label:
                side, labelled, left = label, True, BLOCK_LINES
            elif side is not None:
                found[side].setdefault(value, line)
                side = None
        left -= 1
        if left <= 0:
            side = None
    issuer, receiver = (_one(found["issuer"]), _one(found["receiver"]))
    if issuer and receiver and issuer[0] == receiver[0]:
        return None, None  # one id read as both parties: neither is certain
    return issuer, receiver


def _tax_id(match: re.Match[str]) -> str:
    """A NIT as digits and check digit ("901944237-8"), an RFC as printed."""
    if match.re is NIT:
        return f"{_digits(match.group(1))}-{match.group(2)}"
    return match.group(1)


def _one(values: dict[str, str]) -> Found:
    return next(iter(values.items())) if len(values) == 1 else None


def _party(tax_id: str | None, country: Country) -> Party:
    if tax_id is None:
        return Party()
    if country == "CO":
        nit, check_digit = tax_id.split("-")
        return Party(tax_id=nit, check_digit=check_digit, id_type="31")
    return Party(tax_id=tax_id, id_type="rfc")


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())
