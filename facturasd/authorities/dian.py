"""DIAN's word on a Colombian document: the verdict its container already carries, or
GetStatus asked of DIAN's WcfDianCustomerServices; and the document itself, by its CUFE
(GetXmlByDocumentKey), for a PDF that came alone.

A buyer usually receives an AttachedDocument whose embedded ApplicationResponse is DIAN's own
signed verdict: code 02 for the same CUFE settles it without asking (`evidence`). Otherwise
`DianClient.status` asks GetStatus: SOAP 1.2 with WS-Addressing, signed with the company's
certificate (wssecurity.py).

    GetStatus StatusCode   Verdict     why
    00                     VALID       "Procesado Correctamente."
    99                     INVALID     DIAN's validation errors, in `detail`
    66, 98                 NOT_FOUND   not in DIAN's records (yet), or still being processed
    SOAP fault (Sender)    AuthorityRefused: the certificate, the signature, the clock
    no answer              Unavailable: timeout, refused connection, 429, a 5xx that is no
                           SOAP fault, a Receiver fault (DIAN failed, not the request)

GetXmlByDocumentKey answers an EventResponse (its fields in the namespace of that data
contract, not DianResponse's): `Code`, `Message` and, when DIAN has the document,
`XmlBytesBase64` (the XML as its issuer sent it to DIAN; integrations that use it read Code
"100" then). The XML's presence decides, not the code (DIAN does not publish this operation's
codes): none is "not found".
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
from lxml import etree

from facturasd.authorities import Answer, Authority, Verdict
from facturasd.authorities.wssecurity import (
    MAX_SKEW,
    SOAP12,
    WSA,
    WSSE,
    WSU,
    Credentials,
    sign,
)
from facturasd.clock import Clock
from facturasd.errors import AuthorityRefused, FormatError, Unavailable
from facturasd.formats.model import Document
from facturasd.formats.safexml import parse
from facturasd.upstream import retry_after

WCF = "http://wcf.dian.colombia"
GET_STATUS = f"{WCF}/IWcfDianCustomerServices/GetStatus"
GET_XML = f"{WCF}/IWcfDianCustomerServices/GetXmlByDocumentKey"
DIAN_RESPONSE = "http://schemas.datacontract.org/2004/07/DianResponse"
# GetXmlByDocumentKey's EventResponse is a data contract of its own, in its own namespace.
EVENT_RESPONSE = "http://schemas.datacontract.org/2004/07/EventResponse"
ARRAYS = "http://schemas.microsoft.com/2003/10/Serialization/Arrays"


def content_type(action: str) -> str:
    """A SOAP 1.2 request's content type names its action."""
    return f'application/soap+xml; charset=utf-8; action="{action}"'


CONTENT_TYPE = content_type(GET_STATUS)
# What GetXmlByDocumentKey's EventResponse says besides the XML, kept with the attempt.
_XML_FIELDS = ("Code", "Message")

_VERDICTS = {
    "00": Verdict.VALID,
    "99": Verdict.INVALID,
    "66": Verdict.NOT_FOUND,
    "98": Verdict.NOT_FOUND,
}
# What GetStatusResult says, kept with the attempt (XmlBase64Bytes, DIAN's signed
# ApplicationResponse, is left out: tens of kilobytes per attempt).
_FIELDS = (
    "StatusCode",
    "StatusDescription",
    "StatusMessage",
    "IsValid",
    "XmlDocumentKey",
    "XmlFileName",
)


def evidence(document: Document) -> Answer | None:
    """DIAN's verdict carried by the document's container, when it settles the document: an
    ApplicationResponse with code 02 (also written 002) about the document's own CUFE. Any
    other code, another CUFE, or only the container's summary is no evidence: ask DIAN."""
    found = document.authority_evidence
    if document.country != "CO" or found is None or not document.uuid or not found.uuid:
        return None
    if found.uuid.lower() != document.uuid.lower() or not _accepted(found.code):
        return None
    detail = found.description or ""
    return Answer(
        authority=Authority.DIAN,
        verdict=Verdict.VALID,
        status="02",
        detail=f"{detail} ({found.at})" if found.at else detail,
        source="embedded",
        fields={
            "ResponseCode": found.code or "",
            "Description": found.description or "",
            "UUID": found.uuid,
        },
    )


def _accepted(code: str | None) -> bool:
    return code is not None and code.isascii() and code.isdigit() and int(code) == 2


def get_status_envelope(track_id: str, url: str) -> etree._Element:
    """The unsigned GetStatus request for `track_id` (the CUFE), addressed to `url`."""
    return request_envelope(GET_STATUS, track_id, url)


def request_envelope(action: str, track_id: str, url: str) -> etree._Element:
    """The unsigned request of `action` (GetStatus, GetXmlByDocumentKey: both take a trackId,
    the CUFE), addressed to `url`."""
    envelope = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"soap": SOAP12, "wcf": WCF})
    header = etree.SubElement(envelope, f"{{{SOAP12}}}Header", nsmap={"wsa": WSA})
    etree.SubElement(header, f"{{{WSA}}}Action").text = action
    etree.SubElement(header, f"{{{WSA}}}To", nsmap={"wsu": WSU}).text = url
    body = etree.SubElement(envelope, f"{{{SOAP12}}}Body")
    request = etree.SubElement(body, f"{{{WCF}}}{_operation(action)}")
    etree.SubElement(request, f"{{{WCF}}}trackId").text = track_id
    return envelope


def _operation(action: str) -> str:
    """The operation an action names ("GetStatus")."""
    return action.rpartition("/")[2]


@dataclass(frozen=True)
class Fetched:
    """GetXmlByDocumentKey's answer: the document's XML (None: DIAN does not have it) and
    DIAN's words about it, in `answer` (verdict VALID when found, NOT_FOUND otherwise)."""

    xml: bytes | None
    answer: Answer


class DianClient:
    """GetStatus on DIAN's web service at `url`, signed with `credentials`; `clock` dates the
    signature's timestamp and judges the certificate."""

    def __init__(
        self, http: httpx.AsyncClient, url: str, credentials: Credentials, clock: Clock
    ) -> None:
        self._http = http
        self.url = url
        self.credentials = credentials
        self._clock = clock

    async def status(self, cufe: str) -> Answer:
        """GetStatus for `cufe`."""
        return self._result(await self._call(GET_STATUS, cufe))

    async def document(self, cufe: str) -> Fetched:
        """GetXmlByDocumentKey for `cufe`: the document's XML, if DIAN has it."""
        result = await self._call(GET_XML, cufe)

        def text(name: str) -> str:
            return " ".join(result.findtext(f"{{{EVENT_RESPONSE}}}{name}", "").split())

        fields = {
            name: text(name)
            for name in _XML_FIELDS
            if result.find(f"{{{EVENT_RESPONSE}}}{name}") is not None
        }
        encoded = "".join(result.findtext(f"{{{EVENT_RESPONSE}}}XmlBytesBase64", "").split())
        try:
            xml = base64.b64decode(encoded, validate=True) if encoded else None
        except binascii.Error:
            raise AuthorityRefused(
                "dian", f"{self.url} answered GetXmlByDocumentKey with an XML that is not base64"
            ) from None
        said = " ".join(filter(None, (fields.get("Code"), fields.get("Message"))))
        return Fetched(
            xml,
            Answer(
                authority=Authority.DIAN,
                verdict=Verdict.VALID if xml else Verdict.NOT_FOUND,
                status="found" if xml else "not found",
                detail=said,
                source="online",
                endpoint=self.url,
                fields=fields,
            ),
        )

    async def _call(self, action: str, cufe: str) -> etree._Element:
        """The `<operation>Result` of `action` asked for `cufe`, signed."""
        now = self._clock()
        certificate = self.credentials.certificate
        if now > certificate.not_valid_after_utc:
            raise AuthorityRefused(
                "dian",
                f"the company's certificate for DIAN expired on "
                f"{certificate.not_valid_after_utc:%Y-%m-%d}: install the renewed one",
            )
        if now < certificate.not_valid_before_utc:
            raise AuthorityRefused(
                "dian",
                f"the company's certificate for DIAN is valid only from "
                f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
            )
        envelope = request_envelope(action, cufe, self.url)
        sign(envelope, key=self.credentials.key, certificate=certificate, now=now)
        try:
            response = await self._http.post(
                self.url,
                content=etree.tostring(envelope, encoding="utf-8", xml_declaration=True),
                headers={"Content-Type": content_type(action)},
            )
        except httpx.TimeoutException:
            raise Unavailable("dian", f"no answer from {self.url} in time", 0) from None
        except httpx.TransportError as exc:
            why = str(exc) or type(exc).__name__
            raise Unavailable("dian", f"cannot reach {self.url}: {why}", 0) from None
        return self._answer(response, now, action)

    def _answer(self, response: httpx.Response, now: datetime, action: str) -> etree._Element:
        status = response.status_code
        if status == 429:
            raise Unavailable(
                "dian", "too many requests (HTTP 429)", retry_after(response, self._clock)
            )
        body = _soap_body(response.content)
        fault = body.find(f"{{{SOAP12}}}Fault") if body is not None else None
        if fault is not None:
            raise self._fault(fault, response, now)
        if status >= 500 or status == 408:
            raise Unavailable("dian", f"HTTP {status}", retry_after(response, self._clock))
        operation = _operation(action)
        result = (
            body.find(f"{{{WCF}}}{operation}Response/{{{WCF}}}{operation}Result")
            if body is not None and status == 200
            else None
        )
        if result is None:
            raise AuthorityRefused(
                "dian",
                f"{self.url} did not answer as DIAN's {operation} (HTTP {status}): "
                "check authorities.dian.url",
            )
        return result

    def _fault(
        self, fault: etree._Element, response: httpx.Response, now: datetime
    ) -> AuthorityRefused | Unavailable:
        reason = " ".join(fault.findtext(f"{{{SOAP12}}}Reason/{{{SOAP12}}}Text", "").split())
        code = fault.find(f"{{{SOAP12}}}Code/{{{SOAP12}}}Value")
        if code is not None and _qname(code) == (SOAP12, "Receiver"):
            # The service failed, not the request: like a 5xx, it is no answer.
            return Unavailable("dian", f"DIAN failed: {reason}", retry_after(response, self._clock))
        subcode = fault.find(f"{{{SOAP12}}}Code/{{{SOAP12}}}Subcode/{{{SOAP12}}}Value")
        if subcode is None or _qname(subcode)[0] not in (WSSE, WSU):
            return AuthorityRefused("dian", f"DIAN refused the request: {reason}")
        # WCF gives every security failure the same reason, so the clock is judged by the
        # answer's own Date: DIAN refuses a timestamp more than five minutes off.
        theirs = _http_date(response.headers.get("Date"))
        if theirs is not None and abs(theirs - now) > MAX_SKEW:
            return AuthorityRefused(
                "dian",
                f"this server's clock is off by more than five minutes (DIAN's says "
                f"{theirs:%Y-%m-%d %H:%M:%S} UTC, this one {now.astimezone(UTC):%H:%M:%S} UTC): "
                "set the time right (NTP) so DIAN accepts the signature",
            )
        subject = self.credentials.certificate.subject.rfc4514_string()
        return AuthorityRefused(
            "dian",
            f"DIAN rejected the certificate ({subject}) or the request's signature: "
            f"check it is the company's certificate and registered with DIAN ({reason})",
        )

    def _result(self, result: etree._Element) -> Answer:
        def text(name: str) -> str:
            return " ".join(result.findtext(f"{{{DIAN_RESPONSE}}}{name}", "").split())

        code = text("StatusCode")
        errors = [
            " ".join(item.text.split())
            for item in result.iterfind(f"{{{DIAN_RESPONSE}}}ErrorMessage/{{{ARRAYS}}}string")
            if item.text and item.text.strip()
        ]
        fields = {
            name: text(name)
            for name in _FIELDS
            if result.find(f"{{{DIAN_RESPONSE}}}{name}") is not None
        }
        if errors:
            fields["ErrorMessage"] = "\n".join(errors)
        said = " ".join(filter(None, (text("StatusDescription"), text("StatusMessage"))))
        return Answer(
            authority=Authority.DIAN,
            # A code DIAN has not documented decides nothing: ask again on the
            # not-found schedule, which ends with a person looking.
            verdict=_VERDICTS.get(code, Verdict.NOT_FOUND),
            status=code,
            detail=f"{said} — {'; '.join(errors)}" if errors else said,
            source="online",
            endpoint=self.url,
            fields=fields,
        )


def _soap_body(content: bytes) -> etree._Element | None:
    """The Body of a SOAP 1.2 envelope, or None when `content` is not one."""
    try:
        envelope = parse(content)
    except FormatError:
        return None
    if envelope.tag != f"{{{SOAP12}}}Envelope":
        return None
    return envelope.find(f"{{{SOAP12}}}Body")


def _qname(value: etree._Element) -> tuple[str | None, str]:
    """A QName written as text ("s:Sender") as (namespace, local name)."""
    prefix, _, local = (value.text or "").strip().rpartition(":")
    return value.nsmap.get(prefix or None), local


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
