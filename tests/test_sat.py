"""SAT's ConsultaCFDIService: our client (authorities/sat.py) against the sandbox's SAT
(sandbox/sat.py) over real HTTP, with the real samples and generated CFDIs; and satcfdi's own
status client, which is not ours, pointed at the same server, getting the same answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from aiohttp.test_utils import TestServer
from lxml import etree
from satcfdi.cfdi import CFDI
from satcfdi.pacs.sat import SAT

from facturasd.authorities import Authority, Verdict
from facturasd.authorities.sat import SOAP_ACTION, SatClient, expression, not_asked, retry_after
from facturasd.errors import AuthorityRefused, Unavailable
from facturasd.formats.model import Document, FormatName
from facturasd.formats.reader import read
from facturasd.sandbox.server import create_app, load_documents
from facturasd.sandbox.state import Sandbox
from tests.documents import RECEIVER_RFC, Item, cfdi40
from tests.support import REPO, free_port

SAMPLES = REPO.parent / "shared" / "samples" / "cfdi"
STAMPED = [
    "cfdi-expresiones__cfdi33-real.xml",
    "cfdi-expresiones__cfdi40-real.xml",
    "satcfdi__cfdv33-signed-tfd.xml",
    "satcfdi__cfdv40-ejemplo-signed-tfd.xml",
    "satcfdi__h-and-e951128469_ingreso_iva16_stamped.xml",
    "satcfdi__pago_h-and-e951128469_ingreso_iva16.xml",
]
# An RFC with `&` (SAT's own test RFC) and one with `Ñ`, as real RFCs have them.
AMPERSAND_RFC, ENE_RFC = "H&E951128469", "ÑAÑ8507181A1"
GENERATED_UUID = "9A1B2C3D-4E5F-4A6B-8C7D-0E1F2A3B4C5D"

pytestmark = pytest.mark.anyio


@dataclass
class Local:
    sandbox: Sandbox
    base: str
    url: str
    http: httpx.AsyncClient

    @property
    def client(self) -> SatClient:
        return SatClient(self.http, self.url)

    async def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self.http.request(method, f"{self.base}{path}", json=body)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
async def local() -> AsyncIterator[Local]:
    """The sandbox with the CFDI samples known, on a real port."""
    sandbox = Sandbox()
    load_documents(sandbox, SAMPLES)
    server = TestServer(create_app(sandbox), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    async with httpx.AsyncClient(timeout=5) as http:
        yield Local(sandbox, base, f"{base}/sat/ConsultaCFDIService.svc", http)
    await server.close()


def document(data: bytes, name: str = "cfdi.xml") -> tuple[Document, FormatName | None]:
    (inspection,) = read(data, name)
    assert inspection.document is not None
    return inspection.document, inspection.format


def sample(name: str) -> Document:
    return document((SAMPLES / name).read_bytes(), name)[0]


def generated(
    tmp_path: Path, sandbox: Sandbox | None = None, *, kind: str = "I", **override: str
) -> Document:
    """A stamped CFDI 4.0 from `tests.documents`; known to `sandbox` (read from its file, as
    `--documents` reads it) when given."""
    values = {"uuid": GENERATED_UUID, **override}
    data = cfdi40([Item("Tornillos", "2", "500.00", "16")], kind=kind, override=values)
    # satcfdi reads the seals, which the generator leaves out (nothing here verifies them).
    data = data.replace(
        b"NoCertificado=", b'Sello="c2VsbG8=" Certificado="Y2VydA==" NoCertificado=', 1
    )
    data = data.replace(
        b"NoCertificadoSAT=", b'SelloCFD="c2VsbG8=" SelloSAT="c2VsbG8=" NoCertificadoSAT='
    )
    path = tmp_path / f"{values['uuid']}.xml"
    path.write_bytes(data)
    if sandbox is not None:
        load_documents(sandbox, tmp_path)
    return document(data, path.name)[0]


def with_changes(
    doc: Document, *, total: str | None = None, receiver: str | None = None, uuid: str | None = None
) -> Document:
    """`doc` as a client that got one part of the expression wrong would send it."""
    update: dict[str, Any] = {}
    if total is not None:
        update["totals"] = doc.totals.model_copy(update={"total": total})
    if receiver is not None:
        update["receiver"] = doc.receiver.model_copy(update={"tax_id": receiver})
    if uuid is not None:
        update["uuid"] = uuid
    return doc.model_copy(update=update)


# ── our client ────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("name", STAMPED)
async def test_every_stamped_sample_is_vigente(local: Local, name: str) -> None:
    answer = await local.client.status(sample(name))
    assert answer.authority is Authority.SAT
    assert (answer.verdict, answer.status) == (Verdict.VALID, "Vigente")
    assert answer.fields["CodigoEstatus"] == "S - Comprobante obtenido satisfactoriamente."
    assert answer.fields["ValidacionEFOS"] == "200"
    assert answer.alarm is None
    assert answer.endpoint == local.url
    assert answer.source == "online"


async def test_the_expression_is_as_the_xml_prints_it() -> None:
    # The issuer's RFC is printed " AAA010101AAA" in the file; the total "1500".
    assert expression(sample("satcfdi__cfdv33-signed-tfd.xml")) == (
        "?re=AAA010101AAA&rr=BASJ600902KL9&tt=1500&id=EA8152AF-B116-4812-817A-3B4F9617C99C"
    )
    assert expression(sample("satcfdi__h-and-e951128469_ingreso_iva16_stamped.xml")) == (
        "?re=H&E951128469&rr=KIJ0906199R1&tt=17852.75&id=6D7434A6-E3F2-47AD-9E4C-08849946AFA0"
    )


async def test_cancelled_through_the_admin_endpoint(local: Local) -> None:
    doc = sample("cfdi-expresiones__cfdi40-real.xml")
    await local.admin(
        "POST",
        f"/_admin/sat/{doc.uuid}",
        {"estado": "Cancelado", "cancelacion": "Cancelado sin aceptación"},
    )
    answer = await local.client.status(doc)
    assert (answer.verdict, answer.status) == (Verdict.INVALID, "Cancelado")
    assert answer.fields["EstatusCancelacion"] == "Cancelado sin aceptación"
    assert "Cancelado sin aceptación" in answer.detail


@pytest.mark.parametrize(
    "wrong",
    [
        {"uuid": "00000000-0000-4000-8000-000000000000"},  # a UUID SAT never stamped
        {"total": "459.37"},  # a cent off
        {"receiver": "XAXX010101000"},  # another receiver
    ],
)
async def test_a_part_that_does_not_match_is_not_found(local: Local, wrong: dict[str, str]) -> None:
    doc = with_changes(sample("cfdi-expresiones__cfdi40-real.xml"), **wrong)
    answer = await local.client.status(doc)
    assert (answer.verdict, answer.status) == (Verdict.NOT_FOUND, "No Encontrado")
    assert answer.fields["CodigoEstatus"] == "N - 602: Comprobante no encontrado."
    assert answer.fields["Estado"] == "No Encontrado"


async def test_the_total_is_compared_as_a_number(local: Local) -> None:
    doc = with_changes(sample("cfdi-expresiones__cfdi40-real.xml"), total="459.360000")
    assert (await local.client.status(doc)).verdict is Verdict.VALID


async def test_a_record_set_no_encontrado_answers_like_an_unknown_one(local: Local) -> None:
    doc = sample("cfdi-expresiones__cfdi33-real.xml")
    await local.admin("POST", f"/_admin/sat/{doc.uuid}", {"estado": "No Encontrado"})
    answer = await local.client.status(doc)
    assert answer.verdict is Verdict.NOT_FOUND
    assert answer.fields["CodigoEstatus"] == "N - 602: Comprobante no encontrado."


async def test_an_issuer_on_the_efos_list_raises_the_alarm_even_when_vigente(
    local: Local,
) -> None:
    doc = sample("cfdi-expresiones__cfdi33-real.xml")
    await local.admin("POST", f"/_admin/sat/{doc.uuid}", {"efos": "100"})
    answer = await local.client.status(doc)
    assert answer.verdict is Verdict.VALID
    assert answer.alarm == "supplier on the EFOS list (ValidacionEFOS 100)"


async def test_an_expression_sat_cannot_read_is_601(local: Local) -> None:
    # A receiver's RFC that is no RFC at all (one letter short): SAT cannot read the question.
    doc = with_changes(sample("cfdi-expresiones__cfdi40-real.xml"), receiver="MC7306249Y1")
    answer = await local.client.status(doc)
    assert (answer.verdict, answer.status) == (Verdict.INVALID, "N - 601")
    assert "malformed" in answer.detail
    assert "rr=MC7306249Y1" in answer.detail
    assert answer.fields["CodigoEstatus"].startswith("N - 601:")


async def test_rfcs_with_ampersand_and_ene_survive_the_round_trip(
    local: Local, tmp_path: Path
) -> None:
    # The XML attribute carries the `&` escaped, as every real file does.
    doc = generated(
        tmp_path,
        local.sandbox,
        issuer=AMPERSAND_RFC.replace("&", "&amp;"),
        **{"receiver.rfc": ENE_RFC},
    )
    assert (doc.issuer.tax_id, doc.receiver.tax_id) == (AMPERSAND_RFC, ENE_RFC)
    answer = await local.client.status(doc)
    assert (answer.verdict, answer.status) == (Verdict.VALID, "Vigente")
    # The server compares the RFCs exactly: the same CFDI with the `&` lost is not found.
    cut = doc.model_copy(update={"issuer": doc.issuer.model_copy(update={"tax_id": "H"})})
    assert (await local.client.status(cut)).verdict is Verdict.INVALID  # "H" is no RFC: 601
    lookalike = with_changes(doc, receiver="NAN8507181A1")
    assert (await local.client.status(lookalike)).verdict is Verdict.NOT_FOUND


async def test_payments_are_asked_and_unstamped_or_32_documents_are_not(tmp_path: Path) -> None:
    assert not_asked(*document((SAMPLES / STAMPED[-1]).read_bytes())) is None  # a payment
    payroll = generated(tmp_path, kind="N")
    assert payroll.kind == "payroll"
    assert not_asked(payroll, "cfdi-4.0") is None
    unstamped = document((SAMPLES / "satcfdi__cfdv40-min.xml").read_bytes())
    assert "no UUID" in (not_asked(*unstamped) or "")
    assert "3.2" in (not_asked(unstamped[0], "cfdi-3.2") or "")


# ── no answer ─────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("fault", "delay"),
    [
        ({"status": 503, "retry_after": 7}, 7.0),
        ({"status": 429, "retry_after": 30}, 30.0),
        ({"status": 502}, 0.0),
    ],
)
async def test_a_fault_is_no_answer_and_says_when_to_ask_again(
    local: Local, fault: dict[str, Any], delay: float
) -> None:
    await local.admin("POST", "/_admin/faults", {"service": "sat", **fault})
    with pytest.raises(Unavailable) as caught:
        await local.client.status(sample(STAMPED[0]))
    assert caught.value.upstream == "sat"
    assert caught.value.delay == delay
    assert f"HTTP {fault['status']}" in str(caught.value)
    await local.admin("DELETE", "/_admin/faults")
    assert (await local.client.status(sample(STAMPED[0]))).verdict is Verdict.VALID


async def test_a_timeout_is_no_answer(local: Local) -> None:
    await local.admin("POST", "/_admin/faults", {"service": "sat", "timeout": True})
    async with httpx.AsyncClient(timeout=0.3) as impatient:
        with pytest.raises(Unavailable, match="timed out"):
            await SatClient(impatient, local.url).status(sample(STAMPED[0]))


async def test_a_refused_connection_is_no_answer() -> None:
    async with httpx.AsyncClient(timeout=2) as http:
        client = SatClient(http, f"http://127.0.0.1:{free_port()}/sat/ConsultaCFDIService.svc")
        with pytest.raises(Unavailable, match="ConnectError"):
            await client.status(sample(STAMPED[0]))


async def test_a_wrong_url_is_refused_not_retried_forever(local: Local) -> None:
    with pytest.raises(AuthorityRefused, match="HTTP 404"):
        await SatClient(local.http, f"{local.base}/sat/NoSuch.svc").status(sample(STAMPED[0]))


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 11, 29, 18, 0, tzinfo=UTC)
    response = httpx.Response(503, headers={"Retry-After": "Sun, 29 Nov 2026 18:01:30 GMT"})
    assert retry_after(response, lambda: now) == 90.0
    assert retry_after(httpx.Response(503, headers={"Retry-After": "soon"})) == 0.0
    assert retry_after(httpx.Response(503)) == 0.0


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>Service Unavailable</body></html>",
        b"",
        b'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">&b;</s:Envelope>',
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault>'
        b"<faultcode>s:Server</faultcode><faultstring>busy</faultstring></s:Fault></s:Body>"
        b"</s:Envelope>",
    ],
    ids=["html", "empty", "entities", "fault"],
)
async def test_a_200_that_is_not_sats_answer_is_no_answer(body: bytes) -> None:
    # SAT's public service answers garbage under load; a transport gives exactly those bytes.
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    async with httpx.AsyncClient(transport=transport) as http:
        with pytest.raises(Unavailable):
            await SatClient(http, "http://sat.invalid/").status(sample(STAMPED[0]))


# ── the server, as WCF reads a request ───────────────────────────────────────────────────


def consulta_envelope(inner: str) -> bytes:
    return (
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:tem="http://tempuri.org/"><s:Body><tem:Consulta>'
        f"<tem:expresionImpresa>{inner}</tem:expresionImpresa></tem:Consulta></s:Body>"
        "</s:Envelope>"
    ).encode()


H_AND_E = "?re=H&E951128469&rr=KIJ0906199R1&tt=17852.75&id=6d7434a6-e3f2-47ad-9e4c-08849946afa0"


async def post(local: Local, body: bytes, **headers: str) -> httpx.Response:
    sent = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{SOAP_ACTION}"'}
    return await local.http.post(local.url, content=body, headers={**sent, **headers})


def estado(response: httpx.Response) -> tuple[str, str]:
    root = etree.fromstring(response.content)
    ns = "http://schemas.datacontract.org/2004/07/Sat.Cfdi.Negocio.ConsultaCfdi.Servicio"
    return root.findtext(f".//{{{ns}}}CodigoEstatus"), root.findtext(f".//{{{ns}}}Estado")


async def test_the_expression_may_be_xml_escaped_or_the_printed_qr_form(local: Local) -> None:
    escaped = await post(local, consulta_envelope(H_AND_E.replace("&", "&amp;")))
    assert estado(escaped) == ("S - Comprobante obtenido satisfactoriamente.", "Vigente")
    # The QR code's URL writes the RFC's `&` as an entity, and orders the parts its own way.
    qr = (
        "https://verificacfdi.facturaelectronica.sat.gob.mx/default.aspx?"
        "id=6D7434A6-E3F2-47AD-9E4C-08849946AFA0&re=H&amp;E951128469&rr=KIJ0906199R1"
        "&tt=17852.750000&fe=Xp9Ww3Q="
    )
    printed = await post(local, consulta_envelope(f"<![CDATA[{qr}]]>"))
    assert estado(printed)[1] == "Vigente"


@pytest.mark.parametrize(
    "inner",
    [
        "",
        "re=H&amp;E951128469",  # no leading "?"
        "?re=KIJ0906199R1&amp;rr=KIJ0906199R1&amp;tt=1&amp;tt=2&amp;id=x",  # twice, bad id
        "?re=KIJ0906199R1&amp;rr=KIJ0906199R1&amp;tt=1e3&amp;"
        "id=6d7434a6-e3f2-47ad-9e4c-08849946afa0",  # not a plain number
    ],
)
async def test_malformed_expressions_are_601(local: Local, inner: str) -> None:
    response = await post(local, consulta_envelope(inner))
    assert response.status_code == 200
    assert estado(response)[0] == "N - 601: La expresión impresa proporcionada no es válida."


def fault_code(response: httpx.Response) -> str:
    root = etree.fromstring(response.content)
    return root.findtext(".//faultcode") or ""


async def test_what_is_not_a_consulta_gets_wcfs_faults(local: Local) -> None:
    body = consulta_envelope(f"<![CDATA[{H_AND_E}]]>")
    no_action = await local.http.post(
        local.url, content=body, headers={"Content-Type": "text/xml; charset=utf-8"}
    )
    assert (no_action.status_code, fault_code(no_action)) == (500, "a:ActionNotSupported")
    wrong_type = await post(local, body, **{"Content-Type": "application/soap+xml"})
    assert wrong_type.status_code == 415
    not_xml = await post(local, b"re=H&E951128469")
    assert (not_xml.status_code, fault_code(not_xml)) == (500, "s:Client")
    soap12 = await post(
        local,
        b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body/></s:Envelope>',
    )
    assert fault_code(soap12) == "s:VersionMismatch"
    other = await post(local, body.replace(b"tem:Consulta", b"tem:Otra"))
    assert (other.status_code, fault_code(other)) == (500, "a:DeserializationFailed")
    # Entities are refused unexpanded: the expression they would spell is never looked up.
    bomb = (
        b'<!DOCTYPE s [<!ENTITY e "' + H_AND_E.replace("&", "&#38;").encode() + b'">]>'
    ) + consulta_envelope("&e;")
    assert fault_code(await post(local, bomb)) == "s:Client"
    stats = await local.admin("GET", "/_admin/stats")
    assert stats["sat"] == {"requests": 6, "by_outcome": {"fault_request": 6}}


async def test_each_request_counts_one_outcome(local: Local, tmp_path: Path) -> None:
    client = local.client
    vigente = sample(STAMPED[0])
    await client.status(vigente)
    await client.status(vigente)
    cancelled = sample(STAMPED[1])
    await local.admin("POST", f"/_admin/sat/{cancelled.uuid}", {"estado": "Cancelado"})
    await client.status(cancelled)
    await client.status(with_changes(vigente, total="1"))
    await client.status(with_changes(vigente, receiver="X"))
    await local.admin("POST", "/_admin/faults", {"service": "sat", "status": 503})
    with pytest.raises(Unavailable):
        await client.status(vigente)
    stats = await local.admin("GET", "/_admin/stats")
    assert stats["sat"] == {
        "requests": 6,
        "by_outcome": {"vigente": 2, "cancelado": 1, "no_encontrado": 1, "601": 1, "fault": 1},
    }


# ── satcfdi's own client, pointed at the sandbox ─────────────────────────────────────────


class LocalSat(SAT):  # type: ignore[misc]
    """satcfdi's SAT client with its production host swapped for the sandbox: the envelope,
    the headers, the HTTP call and the parse of the answer are all satcfdi's own."""

    def __init__(self, url: str):
        super().__init__()
        self.local_url = url

    def _request(self, soap_url: str, *args: Any, **kwargs: Any) -> Any:
        assert soap_url.endswith("/ConsultaCFDIService.svc"), soap_url
        return super()._request(self.local_url, *args, **kwargs)


async def satcfdi_status(local: Local, data: bytes) -> dict[str, str | None]:
    cfdi = CFDI.from_string(data)
    result: dict[str, str | None] = await anyio.to_thread.run_sync(LocalSat(local.url).status, cfdi)
    return result


def same(ours: dict[str, str], theirs: dict[str, str | None]) -> None:
    assert {key: value or "" for key, value in theirs.items()} == ours


@pytest.mark.parametrize("name", STAMPED)
async def test_satcfdi_gets_the_answers_we_get_for_the_samples(local: Local, name: str) -> None:
    data = (SAMPLES / name).read_bytes()
    doc = document(data, name)[0]
    theirs = await satcfdi_status(local, data)
    ours = await local.client.status(doc)
    same(ours.fields, theirs)
    assert theirs["Estado"] == "Vigente"

    await local.admin("POST", f"/_admin/sat/{doc.uuid}", {"estado": "Cancelado", "efos": "100"})
    theirs = await satcfdi_status(local, data)
    ours = await local.client.status(doc)
    same(ours.fields, theirs)
    assert (theirs["Estado"], theirs["ValidacionEFOS"]) == ("Cancelado", "100")
    assert ours.alarm is not None

    await local.admin("POST", f"/_admin/sat/{doc.uuid}", {"estado": "No Encontrado"})
    theirs = await satcfdi_status(local, data)
    same((await local.client.status(doc)).fields, theirs)
    assert theirs["Estado"] == "No Encontrado"


async def test_satcfdi_gets_the_answers_we_get_for_an_ampersand_rfc(
    local: Local, tmp_path: Path
) -> None:
    doc = generated(tmp_path, local.sandbox, issuer=AMPERSAND_RFC.replace("&", "&amp;"))
    data = (tmp_path / f"{GENERATED_UUID}.xml").read_bytes()
    theirs = await satcfdi_status(local, data)
    same((await local.client.status(doc)).fields, theirs)
    assert theirs["Estado"] == "Vigente"
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    other = generated(
        unknown,
        issuer=AMPERSAND_RFC.replace("&", "&amp;"),
        uuid="11111111-2222-4333-8444-555555555555",
        **{"receiver.rfc": RECEIVER_RFC},
    )
    theirs = await satcfdi_status(
        local, (unknown / "11111111-2222-4333-8444-555555555555.xml").read_bytes()
    )
    same((await local.client.status(other)).fields, theirs)
    assert theirs["Estado"] == "No Encontrado"


async def test_satcfdi_gets_the_answers_we_get_for_an_ene_rfc(local: Local, tmp_path: Path) -> None:
    doc = generated(tmp_path, local.sandbox, **{"receiver.rfc": ENE_RFC})
    theirs = await satcfdi_status(local, (tmp_path / f"{GENERATED_UUID}.xml").read_bytes())
    same((await local.client.status(doc)).fields, theirs)
    assert theirs["Estado"] == "Vigente"
