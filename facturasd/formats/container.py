"""DIAN's AttachedDocument: the signed invoice it carries, and DIAN's verdict on it.

The invoice sits as text (CDATA, or entity-escaped) in
`cac:Attachment/cac:ExternalReference/cbc:Description`; DIAN's ApplicationResponse sits the same
way under `cac:ParentDocumentLineReference/cac:DocumentReference`. Both are parsed again with
the same safe parser and limits as the outer file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from facturasd.errors import UnknownDocument
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
        raise UnknownDocument("the AttachedDocument carries no document in its Description")
    # The text is already decoded: a declaration naming another encoding would lie now.
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
            raise UnknownDocument("the DIAN verdict in the container is not an ApplicationResponse")
        evidence, response_uuid = _verdict(response)
    container_uuid = text_at(reference, cbc_path("UUID"))
    return Attached(
        inner=inner,
        evidence=evidence,
        container_uuid=container_uuid.lower() if container_uuid else None,
        response_uuid=response_uuid,
    )


def _verdict(response: etree._Element) -> tuple[Evidence, str | None]:
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
    evidence = Evidence(
        source="embedded",
        code=text_at(document_response, cbc_path("ResponseCode", "Response")),
        description=text_at(document_response, cbc_path("Description", "Response")),
        at=f"{date}T{time}" if date and time else date,
        notes=notes,
    )
    return evidence, uuid.lower() if uuid else None
