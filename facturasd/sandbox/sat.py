"""SAT's ConsultaCFDIService as SAT answers it (POST /sat/ConsultaCFDIService.svc).

The request is read as WCF reads it: SOAP 1.1, `text/xml`, the operation named by SOAPAction,
the body parsed with every door shut (safexml). The printed expression must match a known
CFDI in all four parts (both RFCs exactly, the total as a number, the UUID in any case), so a
client that mangles an `&` or an `Ñ`, or sends the wrong total, is told `N - 602`; one SAT
cannot read is told `N - 601`. What is not a Consulta at all gets the SOAP fault WCF sends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from aiohttp import web
from lxml import etree

from facturasd.authorities.sat import DATACONTRACT, FIELDS, SOAP11, SOAP_ACTION, TEMPURI
from facturasd.errors import FormatError
from facturasd.formats import safexml
from facturasd.formats.model import number
from facturasd.sandbox.state import SANDBOX

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
# The fault codes WCF gives when the message never reaches the operation.
ADDRESSING_NONE = "http://schemas.microsoft.com/ws/2005/05/addressing/none"
DISPATCHER = "http://schemas.microsoft.com/net/2005/12/windowscommunicationfoundation/dispatcher"

FOUND = "S - Comprobante obtenido satisfactoriamente."
MALFORMED = "N - 601: La expresión impresa proporcionada no es válida."
NOT_FOUND = "N - 602: Comprobante no encontrado."

# The page the QR code of a CFDI 3.3/4.0 points to; its query is accepted like `?re=…`.
QR_PAGE = "https://verificacfdi.facturaelectronica.sat.gob.mx/default.aspx"
# A part starts at the beginning or at `&` followed by its lower-case key and `=`: an `&`
# inside an RFC (`H&E951128469`) is followed by upper-case letters or digits, never by one.
_PART = re.compile(r"(?:^|&)(re|rr|tt|id|fe)=")
_RFC = re.compile(r"^[A-ZÑ&]{3,4}[0-9]{6}[A-Z0-9]{3}$", re.IGNORECASE)
_UUID = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$", re.I)


@dataclass(frozen=True)
class Expression:
    """The parts of a printed expression SAT looks a CFDI up by."""

    re: str
    rr: str
    tt: Decimal
    id: str


def parse_expression(text: str) -> Expression | None:
    """The expression's parts, or None where SAT says `N - 601`."""
    text = text.strip()
    if text.startswith("?"):
        query = text[1:]
    elif text.lower().startswith(QR_PAGE.lower() + "?"):
        query = text[len(QR_PAGE) + 1 :]
    else:
        return None
    marks = list(_PART.finditer(query))
    if not marks or marks[0].start() != 0:
        return None
    parts: dict[str, str] = {}
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        end = following.start() if following is not None else len(query)
        if mark.group(1) in parts:
            return None
        parts[mark.group(1)] = query[mark.end() : end].strip()
    # The printed QR form writes an RFC's `&` as the XML entity (phpcfdi does so).
    re_, rr = (parts.get(key, "").replace("&amp;", "&") for key in ("re", "rr"))
    total = number(parts.get("tt"))
    uuid = parts.get("id", "")
    if not (_RFC.match(re_) and _RFC.match(rr) and _UUID.match(uuid)) or total is None:
        return None
    return Expression(re=re_, rr=rr, tt=total, id=uuid.upper())


async def consulta(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    if request.content_type != "text/xml":
        # WCF's basicHttpBinding refuses any other media type before reading the body.
        sandbox.count("sat", "fault_request")
        return web.Response(
            status=415,
            text=f"Cannot process the message because the content type "
            f"'{request.headers.get('Content-Type', '')}' was not the expected type "
            "'text/xml; charset=utf-8'.",
        )
    action = request.headers.get("SOAPAction", "").strip().strip('"')
    if action != SOAP_ACTION:
        sandbox.count("sat", "fault_request")
        return _fault(
            "a:ActionNotSupported",
            ADDRESSING_NONE,
            f"The message with Action '{action}' cannot be processed at the receiver, due to "
            "a ContractFilter mismatch at the EndpointDispatcher.",
        )
    try:
        printed = _printed(await request.read())
    except _Refused as refused:
        sandbox.count("sat", "fault_request")
        return refused.response
    parts = parse_expression(printed) if printed is not None else None
    if parts is None:
        sandbox.count("sat", "601")
        return _result(MALFORMED, "No Encontrado")
    if parts.id not in sandbox.sat:
        await sandbox.recall(parts.id)
    record = sandbox.sat.get(parts.id)
    if (
        record is None
        or record.estado == "No Encontrado"
        or (record.re, record.rr, record.tt) != (parts.re, parts.rr, parts.tt)
    ):
        sandbox.count("sat", "no_encontrado")
        return _result(NOT_FOUND, "No Encontrado")
    sandbox.count("sat", record.estado.lower().replace(" ", "_"))
    return _result(FOUND, record.estado, record.cancelable, record.cancelacion, record.efos)


class _Refused(Exception):
    """The request is not a Consulta: `response` is the fault WCF answers with."""

    def __init__(self, response: web.Response):
        self.response = response


def _printed(body: bytes) -> str | None:
    """The expresionImpresa of a Consulta envelope (None when the element is absent or empty,
    which WCF hands to the operation as a null string)."""
    try:
        root = safexml.parse(body)
    except FormatError as exc:
        raise _Refused(_fault("s:Client", None, f"The message is not XML: {exc}")) from None
    if root.tag == f"{{{SOAP12}}}Envelope":
        raise _Refused(
            _fault("s:VersionMismatch", None, "The envelope is SOAP 1.2; this is SOAP 1.1.")
        )
    body_element = root.find(f"{{{SOAP11}}}Body") if root.tag == f"{{{SOAP11}}}Envelope" else None
    operation = next(iter(body_element), None) if body_element is not None else None
    if operation is None or operation.tag != f"{{{TEMPURI}}}Consulta":
        found = etree.QName(operation if operation is not None else root).text
        raise _Refused(
            _fault(
                "a:DeserializationFailed",
                DISPATCHER,
                "The formatter threw an exception while trying to deserialize the message: "
                f"expected the element 'Consulta' of namespace '{TEMPURI}', found '{found}'.",
            )
        )
    printed = operation.find(f"{{{TEMPURI}}}expresionImpresa")
    if printed is not None and len(printed):
        raise _Refused(
            _fault(
                "a:DeserializationFailed",
                DISPATCHER,
                "The formatter threw an exception while trying to deserialize the message: "
                "expresionImpresa holds elements, not text.",
            )
        )
    return printed.text if printed is not None else None


def _result(
    code: str, estado: str, cancelable: str = "", cancelacion: str = "", efos: str = ""
) -> web.Response:
    """ConsultaResult as SAT writes it; the fields a CFDI not found has none of are empty
    elements."""
    values = dict(zip(FIELDS, (code, cancelable, estado, cancelacion, efos), strict=True))
    envelope = etree.Element(f"{{{SOAP11}}}Envelope", nsmap={"s": SOAP11})
    body = etree.SubElement(envelope, f"{{{SOAP11}}}Body")
    response = etree.SubElement(body, f"{{{TEMPURI}}}ConsultaResponse", nsmap={None: TEMPURI})
    result = etree.SubElement(
        response, f"{{{TEMPURI}}}ConsultaResult", nsmap={"a": DATACONTRACT, "i": XSI}
    )
    for name, value in values.items():
        etree.SubElement(result, f"{{{DATACONTRACT}}}{name}").text = value or None
    return _xml(200, envelope)


def _fault(code: str, code_namespace: str | None, text: str) -> web.Response:
    """A SOAP 1.1 fault as WCF writes it: HTTP 500, the code a qualified name."""
    envelope = etree.Element(f"{{{SOAP11}}}Envelope", nsmap={"s": SOAP11})
    fault = etree.SubElement(etree.SubElement(envelope, f"{{{SOAP11}}}Body"), f"{{{SOAP11}}}Fault")
    nsmap = {"a": code_namespace} if code_namespace else None
    etree.SubElement(fault, "faultcode", nsmap=nsmap).text = code
    faultstring = etree.SubElement(fault, "faultstring")
    faultstring.set(XML_LANG, "en-US")
    faultstring.text = text
    return _xml(500, envelope)


def _xml(status: int, envelope: etree._Element) -> web.Response:
    return web.Response(
        status=status,
        body=etree.tostring(envelope, encoding="utf-8", xml_declaration=False),
        content_type="text/xml",
        charset="utf-8",
    )
