"""DIAN's WcfDianCustomerServices as DIAN answers it (POST /dian/WcfDianCustomerServices.svc):
GetStatus and GetXmlByDocumentKey over SOAP 1.2 with WS-Addressing, the WS-Security header
checked first, as WCF does, whatever the body asks.

    content type not application/soap+xml     415, as WCF answers a SOAP 1.1 client
    not XML, not a SOAP 1.2 envelope          400
    WS-Security refused                       500, fault Sender / a:InvalidSecurity
    wsa:To not this endpoint                  500, fault Sender / a:DestinationUnreachable
    wsa:Action neither of the two             500, fault Sender / a:ActionNotSupported
    no trackId                                500, fault Sender
    GetStatus                                 GetStatusResult: the record's code, else 66
    GetXmlByDocumentKey                       an EventResponse: the record's XML (Code 100),
                                              or Code 404 and no XML (not known, or known
                                              without its XML)

Each request counts one outcome: "00", "66", "98", "99", "xml", "xml_not_found",
"invalid_security" or "fault_request".
"""

from __future__ import annotations

import base64
import logging

from aiohttp import web
from cryptography import x509
from lxml import etree

from facturasd.authorities.dian import (
    ARRAYS,
    DIAN_RESPONSE,
    EVENT_RESPONSE,
    GET_STATUS,
    GET_XML,
    WCF,
)
from facturasd.authorities.wssecurity import SOAP12, WSA, WSSE, SecurityRejected, verify
from facturasd.clock import utcnow
from facturasd.errors import FormatError
from facturasd.formats.container import APPLICATION_RESPONSE
from facturasd.formats.safexml import parse
from facturasd.formats.ubl import CAC, CBC
from facturasd.sandbox.state import SANDBOX, DianRecord

log = logging.getLogger(__name__)

XSI = "http://www.w3.org/2001/XMLSchema-instance"
FAULT_ACTION = "http://www.w3.org/2005/08/addressing/soap/fault"
SOAP_CONTENT_TYPE = "application/soap+xml"
# WCF says the same for every security failure; which check failed goes to the server's log.
SECURITY_REASON = "An error occurred when verifying security for the message."
DIAN_NIT = ("800197268", "4")

# StatusDescription and StatusMessage by StatusCode ({number}: the document's).
_WORDS = {
    "00": ("Procesado Correctamente.", "La Factura electrónica {number}, ha sido autorizada."),
    "66": ("TrackId no existe en los registros de la DIAN.", ""),
    "98": ("En Proceso", ""),
    "99": (
        "Validación contiene errores en campos mandatorios.",
        "Documento con errores en campos mandatorios.",
    ),
}


class _Refused(Exception):
    """A request answered with an HTTP error or a SOAP fault rather than a GetStatusResult;
    `outcome` is what the stats count."""

    def __init__(self, outcome: str, response: web.Response):
        super().__init__(outcome)
        self.outcome = outcome
        self.response = response


async def service(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    try:
        action, track_id = _requested(request, await request.read(), sandbox.dian_trust)
    except _Refused as refused:
        sandbox.count("dian", refused.outcome)
        return refused.response
    if track_id.lower() not in sandbox.dian:
        await sandbox.recall(track_id)
    record = sandbox.dian.get(track_id.lower())
    if action == GET_XML:
        xml = record.xml if record is not None else None
        sandbox.count("dian", "xml" if xml else "xml_not_found")
        return _envelope(f"{GET_XML}Response", _get_xml_response(xml))
    if record is None:
        record = DianRecord(track_id.lower(), status_code="66", is_valid=False)
    sandbox.count("dian", record.status_code)
    return _envelope(f"{GET_STATUS}Response", _get_status_response(track_id, record))


def _requested(
    request: web.Request, data: bytes, trust: list[x509.Certificate] | None
) -> tuple[str, str]:
    """The action asked and its trackId."""
    if request.content_type != SOAP_CONTENT_TYPE:
        raise _Refused(
            "fault_request",
            web.Response(
                status=415,
                text=f"Cannot process the message because the content type "
                f"'{request.content_type}' was not the expected type '{SOAP_CONTENT_TYPE}'.",
            ),
        )
    try:
        envelope = parse(data)
    except FormatError as exc:
        raise _Refused("fault_request", web.Response(status=400, text=str(exc))) from None
    if envelope.tag != f"{{{SOAP12}}}Envelope":
        raise _Refused("fault_request", web.Response(status=400, text="not a SOAP 1.2 envelope"))
    try:
        verify(envelope, trust=trust, now=utcnow())
    except SecurityRejected as exc:
        log.info("DIAN sandbox: InvalidSecurity: %s", exc.reason)
        raise _Refused(
            "invalid_security", _fault(SECURITY_REASON, subcode=(WSSE, "InvalidSecurity"))
        ) from None
    to = envelope.findtext(f"{{{SOAP12}}}Header/{{{WSA}}}To", "").strip()
    if _path(to) != request.path:
        raise _Refused(
            "fault_request",
            _fault(
                f"The message with To '{to}' cannot be processed at the receiver, due to an "
                "AddressFilter mismatch at the EndpointDispatcher.",
                subcode=(WSA, "DestinationUnreachable"),
            ),
        )
    action = envelope.findtext(f"{{{SOAP12}}}Header/{{{WSA}}}Action", "").strip()
    if action not in (GET_STATUS, GET_XML):
        raise _Refused(
            "fault_request",
            _fault(
                f"The message with Action '{action}' cannot be processed at the receiver, due "
                "to a ContractFilter mismatch at the EndpointDispatcher.",
                subcode=(WSA, "ActionNotSupported"),
            ),
        )
    operation = action.rpartition("/")[2]
    track_id = envelope.findtext(f"{{{SOAP12}}}Body/{{{WCF}}}{operation}/{{{WCF}}}trackId", "")
    if not track_id.strip():
        raise _Refused("fault_request", _fault(f"{operation} needs a trackId."))
    return action, track_id.strip()


def _path(url: str) -> str:
    """The path of `url`: WCF's address filter ignores the host by default, so a client that
    reaches the service as 127.0.0.1 or as localhost is the same."""
    rest = url.split("://", 1)[-1]
    return "/" + rest.partition("/")[2].split("?", 1)[0]


def _get_status_response(track_id: str, record: DianRecord) -> etree._Element:
    response = etree.Element(f"{{{WCF}}}GetStatusResponse", nsmap={None: WCF})
    result = etree.SubElement(
        response, f"{{{WCF}}}GetStatusResult", nsmap={"b": DIAN_RESPONSE, "i": XSI}
    )

    def field(name: str, text: str | None) -> etree._Element:
        element = etree.SubElement(result, f"{{{DIAN_RESPONSE}}}{name}")
        if text is None:
            element.set(f"{{{XSI}}}nil", "true")
        else:
            element.text = text
        return element

    errors = field("ErrorMessage", "")
    for error in record.errors if record.status_code == "99" else []:
        etree.SubElement(errors, f"{{{ARRAYS}}}string", nsmap={"c": ARRAYS}).text = error
    description, message = _WORDS[record.status_code]
    field("IsValid", "true" if record.is_valid else "false")
    field("StatusCode", record.status_code)
    field("StatusDescription", description)
    field("StatusMessage", message.format(number=record.number or record.cufe))
    accepted = record.status_code == "00"
    field("XmlBase64Bytes", _application_response(record) if accepted else None)
    field("XmlBytes", None)
    field("XmlDocumentKey", track_id)
    field("XmlFileName", f"ar{record.number or record.cufe[:16]}" if accepted else None)
    return response


def _get_xml_response(xml: bytes | None) -> etree._Element:
    response = etree.Element(f"{{{WCF}}}GetXmlByDocumentKeyResponse", nsmap={None: WCF})
    result = etree.SubElement(
        response, f"{{{WCF}}}GetXmlByDocumentKeyResult", nsmap={"b": EVENT_RESPONSE, "i": XSI}
    )
    code, message = ("100", "Accion completada OK") if xml else ("404", "Documento no encontrado")
    etree.SubElement(result, f"{{{EVENT_RESPONSE}}}Code").text = code
    etree.SubElement(result, f"{{{EVENT_RESPONSE}}}Message").text = message
    found = etree.SubElement(result, f"{{{EVENT_RESPONSE}}}XmlBytesBase64")
    if xml:
        found.text = base64.b64encode(xml).decode()
    else:
        found.set(f"{{{XSI}}}nil", "true")
    return response


def _application_response(record: DianRecord) -> str:
    """A small ApplicationResponse from DIAN saying 02 for the record's CUFE, base64."""
    root = etree.Element(
        f"{{{APPLICATION_RESPONSE}}}ApplicationResponse",
        nsmap={None: APPLICATION_RESPONSE, "cac": CAC, "cbc": CBC},
    )
    now = utcnow()

    def cbc(parent: etree._Element, name: str, text: str, **attributes: str) -> None:
        etree.SubElement(parent, f"{{{CBC}}}{name}", attributes).text = text

    cbc(root, "UBLVersionID", "UBL 2.1")
    cbc(root, "CustomizationID", "1")
    cbc(root, "ProfileID", "DIAN 2.1")
    cbc(root, "ID", f"sandbox-{record.cufe[:12]}")
    cbc(root, "IssueDate", f"{now:%Y-%m-%d}")
    cbc(root, "IssueTime", f"{now:%H:%M:%S}Z")
    sender = etree.SubElement(root, f"{{{CAC}}}SenderParty")
    party = etree.SubElement(sender, f"{{{CAC}}}PartyTaxScheme")
    cbc(party, "RegistrationName", "Unidad Especial Dirección de Impuestos y Aduanas Nacionales")
    cbc(party, "CompanyID", DIAN_NIT[0], schemeID=DIAN_NIT[1], schemeName="31")
    document_response = etree.SubElement(root, f"{{{CAC}}}DocumentResponse")
    response = etree.SubElement(document_response, f"{{{CAC}}}Response")
    cbc(response, "ResponseCode", "02")
    cbc(response, "Description", "Documento validado por la DIAN")
    reference = etree.SubElement(document_response, f"{{{CAC}}}DocumentReference")
    cbc(reference, "ID", record.number or "")
    cbc(reference, "UUID", record.cufe, schemeName="CUFE-SHA384")
    data = etree.tostring(root, encoding="utf-8", xml_declaration=True)
    return base64.b64encode(data).decode()


def _fault(reason: str, *, subcode: tuple[str, str] | None = None) -> web.Response:
    """A SOAP 1.2 Sender fault as WCF words it (HTTP 500)."""
    fault = etree.Element(f"{{{SOAP12}}}Fault")
    code = etree.SubElement(fault, f"{{{SOAP12}}}Code")
    etree.SubElement(code, f"{{{SOAP12}}}Value").text = "s:Sender"
    if subcode is not None:
        namespace, name = subcode
        etree.SubElement(
            etree.SubElement(code, f"{{{SOAP12}}}Subcode"),
            f"{{{SOAP12}}}Value",
            nsmap={"a": namespace},
        ).text = f"a:{name}"
    text = etree.SubElement(etree.SubElement(fault, f"{{{SOAP12}}}Reason"), f"{{{SOAP12}}}Text")
    text.set("{http://www.w3.org/XML/1998/namespace}lang", "en-US")
    text.text = reason
    return _envelope(FAULT_ACTION, fault, status=500)


def _envelope(action: str, payload: etree._Element, *, status: int = 200) -> web.Response:
    envelope = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"s": SOAP12, "a": WSA})
    header = etree.SubElement(envelope, f"{{{SOAP12}}}Header")
    etree.SubElement(header, f"{{{WSA}}}Action", {f"{{{SOAP12}}}mustUnderstand": "1"}).text = action
    etree.SubElement(envelope, f"{{{SOAP12}}}Body").append(payload)
    return web.Response(
        status=status,
        body=etree.tostring(envelope, encoding="utf-8"),
        content_type=SOAP_CONTENT_TYPE,
        charset="utf-8",
    )
