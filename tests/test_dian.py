"""DIAN: the evidence a container carries, and GetStatus signed by our client, over real HTTP
to the sandbox's WcfDianCustomerServices (which checks WS-Security as DIAN does)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import anyio
import httpx
import pytest
from aiohttp import web
from blockbuster import BlockBuster
from lxml import etree

from facturasd.authorities import Authority, Verdict
from facturasd.authorities.dian import (
    CONTENT_TYPE,
    DIAN_RESPONSE,
    WCF,
    DianClient,
    evidence,
    get_status_envelope,
)
from facturasd.authorities.wssecurity import SOAP12, WSA, WSSE, Credentials, sign
from facturasd.clock import Clock, utcnow
from facturasd.errors import AuthorityRefused, Unavailable
from facturasd.formats.model import Document
from facturasd.formats.reader import read
from facturasd.sandbox.server import PATHS, create_app, load_documents
from facturasd.sandbox.state import Sandbox
from tests.support import REPO
from tests.wsse import authority, issue, pkcs12_files, signxml_sign

SAMPLES = REPO.parent / "shared" / "samples"
DIAN_SAMPLES = sorted((SAMPLES / "dian").glob("*.xml"))
CA = authority()
COMPANY = issue(CA)
UNKNOWN = "f" * 96


@dataclass
class Local:
    sandbox: Sandbox
    url: str  # DIAN's service
    base: str  # the admin endpoints

    async def stats(self) -> dict[str, int]:
        async with httpx.AsyncClient() as http:
            body = (await http.get(f"{self.base}/_admin/stats")).json()["dian"]
        return {"requests": body["requests"], **body["by_outcome"]}

    async def admin(self, path: str, body: dict[str, object]) -> None:
        async with httpx.AsyncClient() as http:
            (await http.post(f"{self.base}{path}", json=body)).raise_for_status()


@pytest.fixture
async def local(blockbuster: BlockBuster) -> AsyncIterator[Local]:
    """The sandbox on a real port, knowing the DIAN samples; the client and the server run in
    the test's event loop, where blockbuster fails any blocking call of theirs."""
    sandbox = Sandbox(dian_trust=[CA.certificate])
    await anyio.to_thread.run_sync(load_documents, sandbox, SAMPLES / "dian")
    # A held request (the timeout fault) is cut at cleanup instead of waited for.
    runner = web.AppRunner(create_app(sandbox), shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    base = f"http://{host}:{port}"
    yield Local(sandbox, f"{base}{PATHS['dian']}", base)
    await runner.cleanup()


@pytest.fixture
def credentials(tmp_path: Path) -> Credentials:
    return Credentials.load(*pkcs12_files(tmp_path, COMPANY))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def sample(name: str) -> Document:
    [inspection] = read((SAMPLES / "dian" / name).read_bytes(), name)
    assert inspection.document is not None
    return inspection.document


def client(
    http: httpx.AsyncClient, local: Local, credentials: Credentials, clock: Clock = utcnow
) -> DianClient:
    return DianClient(http, local.url, credentials, clock)


# --- evidence in the container ------------------------------------------------------------


def test_every_dian_sample_is_covered() -> None:
    assert [p.name for p in DIAN_SAMPLES] == [
        "siigo-blindacces-FV3.xml",
        "siigo-blindacces-FV7.xml",
        "siigo-blindacces-NC3.xml",
        "volt-attached-document.xml",
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("path", DIAN_SAMPLES, ids=lambda p: p.name)
async def test_the_samples_are_settled_by_their_own_evidence_without_asking(
    path: Path, local: Local, http: httpx.AsyncClient, credentials: Credentials
) -> None:
    # All four carry DIAN's ApplicationResponse saying 02 for their own CUFE (volt's too:
    # its authors changed NIT digits and broke its signatures, not DIAN's verdict).
    document = sample(path.name)
    assert document.uuid is not None
    answer = evidence(document) or await client(http, local, credentials).status(document.uuid)
    assert (answer.authority, answer.verdict, answer.status, answer.source) == (
        Authority.DIAN,
        Verdict.VALID,
        "02",
        "embedded",
    )
    assert answer.detail.startswith("Documento validado por la DIAN")
    assert answer.fields["UUID"] == document.uuid
    assert await local.stats() == {"requests": 0}


def test_evidence_about_another_cufe_or_with_another_code_is_none() -> None:
    document = sample("siigo-blindacces-FV7.xml")
    found = document.authority_evidence
    assert found is not None and found.uuid == document.uuid
    for changed in (
        {"uuid": UNKNOWN},
        {"code": "04"},
        {"uuid": None},  # only the container's summary: not DIAN's signed word
    ):
        other = document.model_copy(update={"authority_evidence": found.model_copy(update=changed)})
        assert evidence(other) is None
    assert evidence(document.model_copy(update={"authority_evidence": None})) is None
    written_002 = found.model_copy(update={"code": "002", "uuid": document.uuid.upper()})
    answer = evidence(document.model_copy(update={"authority_evidence": written_002}))
    assert answer is not None and answer.verdict is Verdict.VALID


# --- GetStatus online -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_known_cufe_is_valid(
    local: Local, http: httpx.AsyncClient, credentials: Credentials
) -> None:
    document = sample("siigo-blindacces-FV7.xml")
    assert document.uuid is not None
    answer = await client(http, local, credentials).status(document.uuid.upper())
    assert (answer.verdict, answer.status, answer.source, answer.endpoint) == (
        Verdict.VALID,
        "00",
        "online",
        local.url,
    )
    assert answer.detail.startswith("Procesado Correctamente.")
    assert answer.fields["IsValid"] == "true"
    assert answer.fields["XmlDocumentKey"] == document.uuid.upper()
    assert await local.stats() == {"requests": 1, "00": 1}


@pytest.mark.anyio
async def test_an_unknown_track_id_is_not_found(
    local: Local, http: httpx.AsyncClient, credentials: Credentials
) -> None:
    answer = await client(http, local, credentials).status(UNKNOWN)
    assert (answer.verdict, answer.status) == (Verdict.NOT_FOUND, "66")
    assert answer.detail == "TrackId no existe en los registros de la DIAN."
    assert answer.fields["IsValid"] == "false"
    assert await local.stats() == {"requests": 1, "66": 1}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "verdict", "detail"),
    [
        ({"status_code": "98"}, Verdict.NOT_FOUND, "En Proceso"),
        ({"status_code": "66"}, Verdict.NOT_FOUND, "TrackId no existe"),
        (
            {"status_code": "99", "errors": ["Regla: FAD06, Rechazo: total", "Regla: ZB01"]},
            Verdict.INVALID,
            "Validación contiene errores en campos mandatorios. Documento con errores en "
            "campos mandatorios. — Regla: FAD06, Rechazo: total; Regla: ZB01",
        ),
        ({"status_code": "00"}, Verdict.VALID, "Procesado Correctamente."),
    ],
)
async def test_the_status_set_for_a_cufe_is_the_answer(
    body: dict[str, object],
    verdict: Verdict,
    detail: str,
    local: Local,
    http: httpx.AsyncClient,
    credentials: Credentials,
) -> None:
    cufe = "ab" * 48
    await local.admin(f"/_admin/dian/{cufe.upper()}", body)
    answer = await client(http, local, credentials).status(cufe)
    assert (answer.verdict, answer.status) == (verdict, body["status_code"])
    assert answer.detail.startswith(detail)
    if verdict is Verdict.INVALID:
        assert answer.fields["ErrorMessage"] == "Regla: FAD06, Rechazo: total\nRegla: ZB01"
    assert await local.stats() == {"requests": 1, str(body["status_code"]): 1}


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_certificate_dian_does_not_trust_is_refused(
    local: Local, http: httpx.AsyncClient, credentials: Credentials
) -> None:
    local.sandbox.dian_trust = [authority("Otra CA").certificate]
    with pytest.raises(AuthorityRefused, match="DIAN rejected the certificate") as refused:
        await client(http, local, credentials).status(UNKNOWN)
    assert refused.value.authority == "dian"
    assert "EMPRESA DE PRUEBAS SAS" in str(refused.value)
    assert await local.stats() == {"requests": 1, "invalid_security": 1}


@pytest.mark.anyio
async def test_a_clock_ten_minutes_behind_is_named(
    local: Local, http: httpx.AsyncClient, credentials: Credentials
) -> None:
    def behind() -> datetime:
        return utcnow() - timedelta(minutes=10)

    with pytest.raises(AuthorityRefused, match="clock is off by more than five minutes"):
        await client(http, local, credentials, behind).status(UNKNOWN)
    assert await local.stats() == {"requests": 1, "invalid_security": 1}


@pytest.mark.anyio
async def test_an_expired_certificate_stops_before_any_request(
    local: Local, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    now = utcnow()
    expired = issue(CA, not_before=now - timedelta(days=400), not_after=now - timedelta(days=2))
    files = pkcs12_files(tmp_path, expired)
    credentials = await anyio.to_thread.run_sync(Credentials.load, *files)
    with pytest.raises(AuthorityRefused, match="expired on"):
        await client(http, local, credentials).status(UNKNOWN)
    assert await local.stats() == {"requests": 0}


def _security_fault(response: httpx.Response) -> None:
    """The response is WCF's InvalidSecurity fault."""
    assert response.status_code == 500
    assert response.headers["Content-Type"].startswith("application/soap+xml")
    fault = etree.fromstring(response.content).find(f"{{{SOAP12}}}Body/{{{SOAP12}}}Fault")
    assert fault is not None
    code = fault.find(f"{{{SOAP12}}}Code/{{{SOAP12}}}Value")
    subcode = fault.find(f"{{{SOAP12}}}Code/{{{SOAP12}}}Subcode/{{{SOAP12}}}Value")
    assert code is not None and subcode is not None
    assert code.text == "s:Sender"
    prefix, _, name = (subcode.text or "").partition(":")
    assert (subcode.nsmap[prefix], name) == (WSSE, "InvalidSecurity")
    reason = fault.findtext(f"{{{SOAP12}}}Reason/{{{SOAP12}}}Text")
    assert reason == "An error occurred when verifying security for the message."


async def _post(http: httpx.AsyncClient, url: str, envelope: etree._Element) -> httpx.Response:
    return await http.post(
        url, content=etree.tostring(envelope), headers={"Content-Type": CONTENT_TYPE}
    )


@pytest.mark.anyio
async def test_wsa_to_changed_after_signing_is_invalid_security(
    local: Local, http: httpx.AsyncClient
) -> None:
    envelope = get_status_envelope(UNKNOWN, local.url)
    sign(envelope, key=COMPANY.key, certificate=COMPANY.certificate, now=utcnow())
    to = envelope.find(f"{{{SOAP12}}}Header/{{{WSA}}}To")
    assert to is not None
    to.text = f"{local.base}{PATHS['dian']}?otro"
    _security_fault(await _post(http, local.url, envelope))
    assert await local.stats() == {"requests": 1, "invalid_security": 1}


@pytest.mark.anyio
async def test_a_signature_over_the_timestamp_only_is_invalid_security(
    local: Local, http: httpx.AsyncClient
) -> None:
    envelope = get_status_envelope(UNKNOWN, local.url)
    signxml_sign(envelope, COMPANY, now=utcnow(), cover=("Timestamp",))
    _security_fault(await _post(http, local.url, envelope))
    assert await local.stats() == {"requests": 1, "invalid_security": 1}


@pytest.mark.anyio
async def test_a_request_signed_by_signxml_over_wsa_to_is_answered(
    local: Local, http: httpx.AsyncClient
) -> None:
    cufe = sample("siigo-blindacces-NC3.xml").uuid
    assert cufe is not None
    envelope = get_status_envelope(cufe, local.url)
    signxml_sign(envelope, COMPANY, now=utcnow())
    response = await _post(http, local.url, envelope)
    assert response.status_code == 200
    result = etree.fromstring(response.content).find(
        f"{{{SOAP12}}}Body/{{{WCF}}}GetStatusResponse/{{{WCF}}}GetStatusResult"
    )
    assert result is not None
    assert result.findtext(f"{{{DIAN_RESPONSE}}}StatusCode") == "00"
    assert result.findtext(f"{{{DIAN_RESPONSE}}}XmlDocumentKey") == cufe
    assert await local.stats() == {"requests": 1, "00": 1}


@pytest.mark.anyio
async def test_what_is_not_a_signed_get_status_is_a_request_fault(
    local: Local, http: httpx.AsyncClient
) -> None:
    laughs = b'<!DOCTYPE l [<!ENTITY a "ha"><!ENTITY b "&a;&a;">]><l>&b;</l>'
    soap11 = await http.post(local.url, content=b"<x/>", headers={"Content-Type": "text/xml"})
    hostile = await http.post(
        local.url, content=laughs, headers={"Content-Type": "application/soap+xml"}
    )
    envelope = get_status_envelope(UNKNOWN, local.url)
    action = envelope.find(f"{{{SOAP12}}}Header/{{{WSA}}}Action")
    assert action is not None
    action.text = "http://wcf.dian.colombia/IWcfDianCustomerServices/SendBillSync"
    sign(envelope, key=COMPANY.key, certificate=COMPANY.certificate, now=utcnow())
    wrong_action = await _post(http, local.url, envelope)
    assert (soap11.status_code, hostile.status_code, wrong_action.status_code) == (415, 400, 500)
    assert b"ActionNotSupported" in wrong_action.content
    assert await local.stats() == {"requests": 3, "fault_request": 3}


# --- no answer ----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("fault", "delay"),
    [
        ({"status": 503}, 0.0),
        ({"status": 503, "retry_after": 120}, 120.0),
        ({"status": 429, "retry_after": 30}, 30.0),
        ({"status": 502, "retry_after": 1.5}, 1.5),
    ],
)
async def test_no_answer_is_unavailable_with_the_delay_asked(
    fault: dict[str, object],
    delay: float,
    local: Local,
    http: httpx.AsyncClient,
    credentials: Credentials,
) -> None:
    await local.admin("/_admin/faults", {"service": "dian", **fault})
    with pytest.raises(Unavailable) as unavailable:
        await client(http, local, credentials).status(UNKNOWN)
    assert (unavailable.value.upstream, unavailable.value.delay) == ("dian", delay)
    assert str(fault["status"]) in str(unavailable.value)


@pytest.mark.anyio
async def test_a_timeout_is_unavailable(local: Local, credentials: Credentials) -> None:
    await local.admin("/_admin/faults", {"service": "dian", "timeout": True})
    async with httpx.AsyncClient(timeout=0.3) as http:
        with pytest.raises(Unavailable, match="in time") as unavailable:
            await client(http, local, credentials).status(UNKNOWN)
    assert unavailable.value.delay == 0


@pytest.mark.anyio
async def test_a_refused_connection_is_unavailable(
    http: httpx.AsyncClient, credentials: Credentials
) -> None:
    listener = web.AppRunner(web.Application())
    await listener.setup()
    site = web.TCPSite(listener, "127.0.0.1", 0)
    await site.start()
    host, port = listener.addresses[0][:2]
    await listener.cleanup()  # nothing listens there any more
    dian = DianClient(http, f"http://{host}:{port}{PATHS['dian']}", credentials, utcnow)
    with pytest.raises(Unavailable, match="cannot reach"):
        await dian.status(UNKNOWN)
