"""SAT's ConsultaCFDIService: the public status of a stamped CFDI (no authentication).

The question is the CFDI's printed expression, `?re=…&rr=…&tt=…&id=…`, in a SOAP 1.1
envelope; the answer says Vigente, Cancelado or No Encontrado, whether the CFDI can still be
cancelled, and whether its issuer is on the EFOS list (simulated operations). The wire facts
are in the reference (mexico-sat.md); the sandbox's sat.py answers the same way.
"""

from __future__ import annotations

import httpx
from lxml import etree

from facturasd.authorities import Answer, Authority, Verdict
from facturasd.clock import Clock, utcnow
from facturasd.errors import AuthorityRefused, FormatError, Unavailable
from facturasd.formats import safexml
from facturasd.formats.model import Document
from facturasd.upstream import retry_after

PRODUCTION_URL = "https://consultaqr.facturaelectronica.sat.gob.mx/ConsultaCFDIService.svc"
SOAP_ACTION = "http://tempuri.org/IConsultaCFDIService/Consulta"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
TEMPURI = "http://tempuri.org/"
DATACONTRACT = "http://schemas.datacontract.org/2004/07/Sat.Cfdi.Negocio.ConsultaCfdi.Servicio"
# The children of ConsultaResult, in the order WCF writes them.
FIELDS = ("CodigoEstatus", "EsCancelable", "Estado", "EstatusCancelacion", "ValidacionEFOS")
HEADERS = {"Content-Type": 'text/xml;charset="utf-8"', "SOAPAction": SOAP_ACTION}
# ValidacionEFOS when the issuer is not on the EFOS list; anything else says it is.
EFOS_CLEAR = ("200", "201")


def expression(document: Document) -> str:
    """The printed expression SAT is asked with: the RFCs as in the XML (without the stray
    spaces real files carry: the parser strips them), `tt` the Total as written, as satcfdi
    sends it, and the UUID as SAT stamps it (upper case; SAT compares it either way). Only for
    a document `not_asked` lets through."""
    issuer, receiver = document.issuer.tax_id, document.receiver.tax_id
    total, uuid = document.totals.total, document.uuid
    if issuer is None or receiver is None or total is None or uuid is None:
        raise ValueError("a document not_asked refuses has no expression")
    return f"?re={issuer}&rr={receiver}&tt={total}&id={uuid.upper()}"


def not_asked(document: Document, format: str | None) -> str | None:
    """Why SAT is not asked about this document, or None when it is; `format` is the format it
    was read as (`Inspection.format`, as the ledger keeps it). Payment complements and payroll
    receipts are asked like invoices."""
    if document.country != "MX":
        return "not a CFDI: SAT is asked about Mexican CFDIs only"
    if format == "cfdi-3.2":
        return "a CFDI 3.2, a version SAT retired: its status service is not asked about it"
    if document.uuid is None:
        return "no UUID: the CFDI carries no TimbreFiscalDigital (it was never stamped)"
    missing = [
        name
        for name, value in (
            ("the issuer's RFC", document.issuer.tax_id),
            ("the receiver's RFC", document.receiver.tax_id),
            ("the Total", document.totals.total),
        )
        if value is None
    ]
    if missing:
        return f"the CFDI lacks {' and '.join(missing)}: SAT cannot be asked without them"
    return None


def envelope(printed: str) -> bytes:
    """The SOAP request for one printed expression. The expression goes in a CDATA section, so
    an RFC's `&` travels as it is; a `]]>` (no RFC holds one) would end the section, so it is
    split across two."""
    cdata = "<![CDATA[" + printed.replace("]]>", "]]]]><![CDATA[>") + "]]>"
    return (
        f'<s:Envelope xmlns:s="{SOAP11}" xmlns:tem="{TEMPURI}"><s:Body><tem:Consulta>'
        f"<tem:expresionImpresa>{cdata}</tem:expresionImpresa>"
        "</tem:Consulta></s:Body></s:Envelope>"
    ).encode()


class SatClient:
    """Asks ConsultaCFDIService at `url` through `http` (its timeouts are the caller's)."""

    def __init__(self, http: httpx.AsyncClient, url: str, *, clock: Clock = utcnow):
        self._http = http
        self.url = url
        self._clock = clock

    async def status(self, document: Document) -> Answer:
        """SAT's answer for `document`; `Unavailable` when there is none to be had, and
        `AuthorityRefused` when the service refuses the request as such (a 4xx: the URL is
        not SAT's service)."""
        printed = expression(document)
        try:
            response = await self._http.post(self.url, content=envelope(printed), headers=HEADERS)
        except httpx.TimeoutException as exc:
            raise Unavailable("sat", f"timed out ({type(exc).__name__})", 0) from None
        except httpx.RequestError as exc:  # refused, reset, a broken body: no answer
            raise Unavailable("sat", f"{type(exc).__name__}: {exc}", 0) from None
        code = response.status_code
        if 400 <= code < 500 and code != 429:
            raise AuthorityRefused(
                "sat", f"SAT's service at {self.url} refused the request: HTTP {code}"
            )
        if code != 200:
            raise Unavailable("sat", f"HTTP {code}", retry_after(response, self._clock))
        fields = _fields(response.content)
        return _answer(fields, printed, self.url)


def _fields(content: bytes) -> dict[str, str]:
    """ConsultaResult's fields. SAT's public service is known to answer 200 with an HTML
    error page, an empty body or a SOAP fault when it is overloaded: none of those is SAT's
    word on the invoice, so they are no answer (`Unavailable`), like a 503."""
    try:
        root = safexml.parse(content)
    except FormatError as exc:
        raise Unavailable("sat", f"the answer is not XML ({exc})", 0) from None
    body = root.find(f"{{{SOAP11}}}Body") if root.tag == f"{{{SOAP11}}}Envelope" else None
    if body is None:
        raise Unavailable("sat", f"the answer is not a SOAP envelope ({etree.QName(root).text})", 0)
    fault = body.find(f"{{{SOAP11}}}Fault")
    if fault is not None:
        reason = fault.findtext("faultstring") or fault.findtext("faultcode") or ""
        raise Unavailable("sat", f"SOAP fault: {reason.strip()}", 0)
    result = body.find(f"{{{TEMPURI}}}ConsultaResponse/{{{TEMPURI}}}ConsultaResult")
    if result is None:
        raise Unavailable("sat", "the answer has no ConsultaResult", 0)
    return {
        etree.QName(child).localname: (child.text or "").strip()
        for child in result
        if isinstance(child.tag, str) and etree.QName(child).namespace == DATACONTRACT
    }


def _answer(fields: dict[str, str], printed: str, url: str) -> Answer:
    code, estado = fields.get("CodigoEstatus", ""), fields.get("Estado", "")
    efos = fields.get("ValidacionEFOS", "")
    alarm = (
        f"supplier on the EFOS list (ValidacionEFOS {efos})"
        if efos and efos not in EFOS_CLEAR
        else None
    )

    def answer(verdict: Verdict, status: str, detail: str = code) -> Answer:
        return Answer(
            authority=Authority.SAT,
            verdict=verdict,
            status=status,
            detail=detail,
            source="online",
            endpoint=url,
            alarm=alarm,
            fields=fields,
        )

    if code.startswith("N - 601"):
        # SAT could not read the question: asking again with the same document cannot help.
        return answer(
            Verdict.INVALID, "N - 601", f"SAT calls the expression {printed} malformed: {code}"
        )
    if code.startswith("N - 602") or estado == "No Encontrado":
        return answer(Verdict.NOT_FOUND, "No Encontrado")
    if code.startswith("S") and estado == "Vigente":
        return answer(Verdict.VALID, estado)
    if code.startswith("S") and estado == "Cancelado":
        cancelled = fields.get("EstatusCancelacion", "")
        return answer(Verdict.INVALID, estado, f"{code} {cancelled}".strip())
    # Words SAT has never used: not an answer to act on; asking again later will tell.
    raise Unavailable("sat", f"an answer SAT does not give: {code!r}, Estado {estado!r}", 0)
