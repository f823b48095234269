"""Bytes of a received file in, one Inspection per document out: the formats layer's front door.

`read` is pure: no file system, no clock, no configuration. A file that cannot be read becomes
an Inspection with one error finding (its code, the parser's detail, path `file`),
never an exception; in a ZIP, each member succeeds or fails on its own. Opening the file is
the caller's (`pipeline.process.read_file`); one over the size limit is refused unread with
`too_large`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from lxml import etree

from facturasd.errors import FormatError, TooLarge, UnknownDocument
from facturasd.findings import WHOLE_FILE, Finding, finding, phrase
from facturasd.formats import cfdi, container, pdf, safexml, ubl
from facturasd.formats.model import Inspection
from facturasd.formats.safexml import Limits, parse


@dataclass(frozen=True)
class _Origin:
    """Where a document came from: the file, its hash, the member inside a container."""

    file: str
    sha256: str
    member: str | None = None

    def inspection(self, **fields: Any) -> Inspection:
        return Inspection.judge(file=self.file, sha256=self.sha256, member=self.member, **fields)

    def failed(self, exc: FormatError) -> Inspection:
        return self.inspection(findings=[finding(exc.code, WHOLE_FILE, detail=exc.detail)])

    def inside(self, member: str | None) -> _Origin:
        return _Origin(self.file, self.sha256, member)


def read(data: bytes, file: str, limits: Limits | None = None) -> list[Inspection]:
    """Every document in `data` (a CFDI, a DIAN XML, a PDF, or a ZIP of them)."""
    limits = limits or Limits()
    origin = _Origin(file, hashlib.sha256(data).hexdigest())
    if len(data) > limits.max_file_bytes:
        return [too_large(file, len(data), origin.sha256, limits)]
    try:
        if pdf.is_pdf(data):
            return _pdf(origin, data, limits)
        if not container.is_zip(data):
            return [_xml(origin, data, limits)]
        members = container.zip_members(data, limits)
    except FormatError as exc:
        return [origin.failed(exc)]
    documents = [
        _xml(origin.inside(name), content, limits)
        for name, content in members
        if _looks_like_xml(content) or name.lower().endswith(".xml")
    ]
    pdfs = [name for name, content in members if pdf.is_pdf(content)]
    if not documents:
        # A package with only the printed copy: read what the PDFs say.
        documents = [
            inspection
            for name, content in members
            if pdf.is_pdf(content)
            for inspection in _pdf(origin.inside(name), content, limits)
        ]
        pdfs = []
    if not documents:
        return [origin.failed(UnknownDocument(phrase("zip_no_document")))]
    if not pdfs:
        return documents
    return [
        doc.model_copy(update={"attachments": _pdfs_for(doc.member, pdfs, len(documents))})
        for doc in documents
    ]


def too_large(file: str, size: int, sha256: str, limits: Limits) -> Inspection:
    """The Inspection of a file refused for its size alone, without reading it."""
    return _Origin(file, sha256).failed(TooLarge(safexml.too_large(size, limits)))


def _looks_like_xml(data: bytes) -> bool:
    return data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")


def _pdf(origin: _Origin, data: bytes, limits: Limits) -> list[Inspection]:
    """The XML files a PDF embeds, read as documents; else the partial document of its text."""
    try:
        content = pdf.open_pdf(data, limits.max_file_bytes)
        embedded = [(name, xml) for name, xml in content.attachments if _looks_like_xml(xml)]
        if embedded:
            return [_xml(origin.inside(name), xml, limits) for name, xml in embedded]
        document = pdf.partial_document(content.text)
    except FormatError as exc:
        return [origin.failed(exc)]
    review = finding("FMT-PDF-WITHOUT-XML", WHOLE_FILE)
    return [origin.inspection(format="pdf", document=document, findings=[review])]


def _pdfs_for(member: str | None, pdfs: list[str], documents: int) -> list[str]:
    """A PDF named like the XML goes with it; with one XML in the package, every PDF does."""
    if documents == 1:
        return pdfs
    stem = PurePosixPath(member or "").stem
    return [pdf for pdf in pdfs if PurePosixPath(pdf).stem == stem]


def _xml(origin: _Origin, data: bytes, limits: Limits) -> Inspection:
    try:
        root = parse(data, limits)
        if cfdi.is_cfdi(root):
            fmt, document = cfdi.parse(root)
            return origin.inspection(format=fmt, document=document)
        if ubl.is_ubl_document(root):
            fmt, document = ubl.parse(root)
            findings = _cufe_agreement(document.uuid, {"qr": ubl.qr_cufes(root)})
            return origin.inspection(format=fmt, document=document, findings=findings)
        if container.is_attached_document(root):
            return _attached(origin, root, limits)
        # Clark notation ({namespace}name) names the element the same in any language.
        raise UnknownDocument(phrase("not_invoice", element=f"<{etree.QName(root).text}>"))
    except FormatError as exc:
        return origin.failed(exc)


def _attached(origin: _Origin, root: etree._Element, limits: Limits) -> Inspection:
    attached = container.open_attached(root, limits)
    if not ubl.is_ubl_document(attached.inner):
        raise UnknownDocument(phrase("attached_not_invoice"))
    _, document = ubl.parse(attached.inner, evidence=attached.evidence)
    places = {
        "qr": ubl.qr_cufes(attached.inner),
        "container": {attached.container_uuid} if attached.container_uuid else set(),
        "application_response": {attached.response_uuid} if attached.response_uuid else set(),
    }
    return origin.inspection(
        format="dian-attached-document",
        document=document,
        findings=_cufe_agreement(document.uuid, places),
    )


def _cufe_agreement(uuid: str | None, places: dict[str, set[str]]) -> list[Finding]:
    """The document's CUFE/CUDE must be the one every other place names."""
    if all(not values or values == {uuid} for values in places.values()):
        return []
    stated = {place: ", ".join(sorted(values)) or "—" for place, values in places.items()}
    detail = phrase(
        "cufe_places",
        uuid=uuid,
        qr=stated["qr"],
        container=stated.get("container", "—"),
        response=stated.get("application_response", "—"),
    )
    return [finding("FMT-CUFE-MISMATCH", "uuid", detail=detail)]
