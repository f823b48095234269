"""Containers: ZIP packages, and DIAN's AttachedDocument with the invoice and DIAN's verdict.

The invoice sits as text (CDATA, or entity-escaped) in
`cac:Attachment/cac:ExternalReference/cbc:Description`; DIAN's ApplicationResponse sits the same
way under `cac:ParentDocumentLineReference/cac:DocumentReference`. Both are parsed again with
the same safe parser and limits as the outer file.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from dataclasses import dataclass

from lxml import etree

from facturasd.errors import BadZip, UnknownDocument, ZipBomb
from facturasd.findings import phrase
from facturasd.formats.model import Evidence
from facturasd.formats.safexml import Limits, parse
from facturasd.formats.ubl import CAC, UBL, cac_path, cbc_path, text_at

ATTACHED = f"{UBL}AttachedDocument-2"
APPLICATION_RESPONSE = f"{UBL}ApplicationResponse-2"
_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)


@dataclass(frozen=True)
class Attached:
    inner: etree._Element
    evidence: Evidence | None
    # The CUFE as each place states it: the inner document's is checked against the others.
    container_uuid: str | None
    response_uuid: str | None


def is_attached_document(root: etree._Element) -> bool:
    return root.tag == f"{{{ATTACHED}}}AttachedDocument"


def _embedded(text: str | None, limits: Limits) -> etree._Element:
    """Text holding a whole XML document, declaration or not, as an element."""
    if not text or not text.strip():
        raise UnknownDocument(phrase("attached_empty"))
    # The text is already decoded: a declaration naming another encoding would lie now.
    text = text.lstrip("\ufeff \t\r\n")
    return parse(_DECLARATION.sub("", text, count=1).strip().encode("utf-8"), limits)


def open_attached(root: etree._Element, limits: Limits | None = None) -> Attached:
    limits = limits or Limits()
    inner = _embedded(
        text_at(root, cbc_path("Description", "Attachment", "ExternalReference")), limits
    )
    reference = root.find(cac_path("ParentDocumentLineReference", "DocumentReference"))
    evidence = None
    response_uuid = None
    response_text = text_at(reference, cbc_path("Description", "Attachment", "ExternalReference"))
    if response_text:
        response = _embedded(response_text, limits)
        if response.tag != f"{{{APPLICATION_RESPONSE}}}ApplicationResponse":
            raise UnknownDocument(phrase("attached_verdict"))
        evidence = _verdict(response)
        response_uuid = evidence.uuid
    if evidence is None and (
        code := text_at(reference, cbc_path("ValidationResultCode", "ResultOfVerification"))
    ):
        # No ApplicationResponse, only the container's summary: "02" is also written "002".
        verification = cbc_path("ValidationDate", "ResultOfVerification")
        evidence = Evidence(
            source="embedded",
            code=f"{int(code):02d}"
            if code.isascii() and code.isdigit() and len(code) <= 3
            else code,
            at=text_at(reference, verification),
        )
    container_uuid = text_at(reference, cbc_path("UUID"))
    return Attached(
        inner=inner,
        evidence=evidence,
        container_uuid=container_uuid.lower() if container_uuid else None,
        response_uuid=response_uuid,
    )


ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
# What zipfile and zlib raise on damaged or unsupported archives.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    NotImplementedError,
    RuntimeError,
    OSError,
    ValueError,
)


_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_END_OF_DIRECTORY = b"PK\x05\x06"


def _declared_entries(data: bytes) -> int | None:
    """The entry count of the end-of-directory record (or its ZIP64 twin), read before
    zipfile parses the whole central directory; None when the record is not found."""
    at = data.rfind(_END_OF_DIRECTORY, max(0, len(data) - 65_557))
    if at < 0 or len(data) < at + 12:
        return None
    count = int.from_bytes(data[at + 10 : at + 12], "little")
    locator = at - 20
    if count == 0xFFFF and locator >= 0 and data[locator : locator + 4] == b"PK\x06\x07":
        record = int.from_bytes(data[locator + 8 : locator + 16], "little")
        if data[record : record + 4] == b"PK\x06\x06":
            count = int.from_bytes(data[record + 32 : record + 40], "little")
    return count


def is_zip(data: bytes) -> bool:
    return data.startswith(ZIP_MAGIC)


def zip_members(data: bytes, limits: Limits | None = None) -> list[tuple[str, bytes]]:
    """Every file in a ZIP, nested ZIPs opened, as (name, bytes).

    Names are labels only (`outer.zip/inner.xml` for nested members), never paths. Sizes in
    the archive's headers are not trusted: each member is inflated at most up to what is left
    of the budget, so a bomb is refused after reading the budget, not after filling memory.
    """
    limits = limits or Limits()
    found: list[tuple[str, bytes]] = []
    _unpack(data, limits, depth=1, prefix="", found=found, total=[0])
    return found


def _unpack(
    data: bytes,
    limits: Limits,
    *,
    depth: int,
    prefix: str,
    found: list[tuple[str, bytes]],
    total: list[int],
) -> None:
    if depth > limits.zip_max_depth:
        raise ZipBomb(phrase("zip_too_deep", limit=limits.zip_max_depth))
    declared = _declared_entries(data)
    if declared is not None and declared > limits.zip_max_members:
        raise ZipBomb(phrase("zip_too_many", count=declared, limit=limits.zip_max_members))
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except _ZIP_ERRORS as exc:
        raise BadZip(phrase("zip_unreadable", text=str(exc))) from None
    with archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        if len(members) > limits.zip_max_members:
            raise ZipBomb(phrase("zip_too_many", count=len(members), limit=limits.zip_max_members))
        for info in members:
            name = prefix + info.filename
            if info.flag_bits & 0x1:
                raise BadZip(phrase("zip_encrypted", name=name))
            if info.compress_type not in _METHODS:
                # bzip2 and LZMA inflate whole blocks at once, past any read budget.
                raise BadZip(phrase("zip_method", name=name))
            budget = min(limits.zip_max_total_bytes - total[0], limits.max_file_bytes)
            try:
                with archive.open(info) as member:
                    content = member.read(budget + 1)
            except _ZIP_ERRORS as exc:
                raise BadZip(phrase("zip_member_unreadable", name=name, text=str(exc))) from None
            if len(content) > budget:
                raise ZipBomb(
                    phrase(
                        "zip_too_big",
                        name=name,
                        limit=limits.max_file_bytes,
                        total=limits.zip_max_total_bytes,
                    )
                )
            if info.compress_size and len(content) > limits.zip_max_ratio * info.compress_size:
                raise ZipBomb(
                    phrase(
                        "zip_ratio",
                        name=name,
                        ratio=len(content) // info.compress_size,
                        limit=limits.zip_max_ratio,
                    )
                )
            total[0] += len(content)
            if is_zip(content):
                _unpack(
                    content, limits, depth=depth + 1, prefix=f"{name}/", found=found, total=total
                )
            else:
                found.append((name, content))


def _verdict(response: etree._Element) -> Evidence:
    document_response = response.find(cac_path("DocumentResponse"))
    date = text_at(response, cbc_path("IssueDate"))
    time = text_at(response, cbc_path("IssueTime"))
    notes = [
        " ".join(
            filter(
                None,
                [
                    text_at(line, cbc_path("ResponseCode", "Response")),
                    text_at(line, cbc_path("Description", "Response")),
                ],
            )
        )
        for line in response.iterfind(f"{{{CAC}}}DocumentResponse/{{{CAC}}}LineResponse")
    ]
    uuid = text_at(document_response, cbc_path("UUID", "DocumentReference"))
    return Evidence(
        source="embedded",
        code=text_at(document_response, cbc_path("ResponseCode", "Response")),
        uuid=uuid.lower() if uuid else None,
        description=text_at(document_response, cbc_path("Description", "Response")),
        at=f"{date}T{time}" if date and time else date,
        notes=notes,
    )
