"""Small real PDFs for tests: a text layer written by hand, attachments added with pypdf."""

from __future__ import annotations

import io

from pypdf import PdfReader, PdfWriter

# Codes WinAnsiEncoding leaves undefined: characters it cannot encode (the Unicode dashes real
# invoices print) are written with these and named to text extractors by a ToUnicode map, as
# PDF writers with subset fonts do.
_SPARE_CODES = (0x81, 0x8D, 0x8F, 0x90, 0x9D)


def text_pdf(lines: list[str]) -> bytes:
    """A one-page PDF whose text layer holds `lines`, one under the other (Helvetica); any
    character outside WinAnsi takes a spare code (at most five distinct ones)."""
    spare: dict[str, int] = {}
    shown = []
    for line in lines:
        encoded = bytearray()
        for ch in line:
            try:
                encoded += ch.encode("cp1252")
            except UnicodeEncodeError:
                encoded.append(spare.setdefault(ch, _SPARE_CODES[len(spare)]))
        escaped = bytes(encoded).replace(b"\\", b"\\\\").replace(b"(", b"\\(")
        shown.append(b"(" + escaped.replace(b")", b"\\)") + b") Tj 0 -14 Td")
    stream = b"BT /F1 10 Tf 50 750 Td " + b" ".join(shown) + b" ET"
    font = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        font + (b" /ToUnicode 6 0 R >>" if spare else b" >>"),
        _stream(stream),
    ]
    if spare:
        objects.append(_stream(_to_unicode(spare)))
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return out.getvalue()


def _stream(data: bytes) -> bytes:
    return b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def _to_unicode(spare: dict[str, int]) -> bytes:
    """A ToUnicode CMap naming the character each spare code stands for."""
    pairs = b"\n".join(b"<%02X> <%04X>" % (code, ord(ch)) for ch, code in spare.items())
    return (
        b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n"
        b"/CMapName /Spare def /CMapType 2 def\n"
        b"1 begincodespacerange <00> <FF> endcodespacerange\n"
        b"%d beginbfchar\n" % len(spare) + pairs + b"\nendbfchar\n"
        b"endcmap CMapName currentdict /CMap defineresource pop end end"
    )


def with_attachments(pdf: bytes, files: dict[str, bytes]) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    for name, data in files.items():
        writer.add_attachment(name, data)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
