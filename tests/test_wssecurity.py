"""DIAN's WS-Security header: what we sign verifies, here and with signxml; what signxml signs
verifies here; and every way a header can be wrong is refused with its reason."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from lxml import etree
from signxml import SignatureConfiguration
from signxml.verifier import XMLVerifier

from facturasd.authorities.dian import get_status_envelope
from facturasd.authorities.wssecurity import (
    DS,
    EXC_C14N,
    SOAP12,
    WSA,
    WSSE,
    WSU,
    WSU_ID,
    Credentials,
    CredentialsError,
    SecurityRejected,
    sign,
    verify,
)
from tests.wsse import NOW, Issued, authority, issue, pkcs12_files, signxml_sign

URL = "https://vpfe-hab.dian.gov.co/WcfDianCustomerServices.svc"
CUFE = "a86a2637" * 12
CA = authority()
COMPANY = issue(CA)


def signed(issued: Issued = COMPANY, **options: timedelta) -> etree._Element:
    """A GetStatus request signed by us, as the server receives it (serialized and parsed)."""
    envelope = get_status_envelope(CUFE, URL)
    sign(envelope, key=issued.key, certificate=issued.certificate, now=NOW, **options)
    return etree.fromstring(etree.tostring(envelope))


def find(envelope: etree._Element, path: str) -> etree._Element:
    namespaces = {"soap": SOAP12, "wsse": WSSE, "wsu": WSU, "ds": DS, "wsa": WSA}
    found = envelope.find(path, namespaces)
    assert found is not None, path
    return found


def test_what_we_sign_verifies_and_names_the_signer() -> None:
    envelope = signed()
    assert verify(envelope, trust=[CA.certificate], now=NOW) == COMPANY.certificate
    security = find(envelope, "soap:Header/wsse:Security")
    assert security.get(f"{{{SOAP12}}}mustUnderstand") == "true"
    assert find(security, "wsu:Timestamp/wsu:Created").text == f"{NOW:%Y-%m-%dT%H:%M:%SZ}"
    token = find(security, "wsse:BinarySecurityToken")
    der = COMPANY.certificate.public_bytes(serialization.Encoding.DER)
    assert base64.b64decode(token.text or "") == der
    to = find(envelope, "soap:Header/wsa:To")
    references = [r.get("URI") for r in security.iterfind(".//ds:Reference", {"ds": DS})]
    assert f"#{to.get(WSU_ID)}" in references


def test_what_we_sign_verifies_with_signxml() -> None:
    data = etree.tostring(signed())
    results = XMLVerifier().verify(
        data,
        x509_cert=COMPANY.certificate,
        expect_config=SignatureConfiguration(expect_references=2),
    )
    assert isinstance(results, list)
    covered = {etree.QName(result.signed_xml).localname: result.signed_xml for result in results}
    assert set(covered) == {"To", "Timestamp"}
    assert covered["To"].text == URL


def test_what_signxml_signs_over_wsa_to_verifies_here() -> None:
    envelope = get_status_envelope(CUFE, URL)
    signxml_sign(envelope, COMPANY, now=NOW)
    parsed = etree.fromstring(etree.tostring(envelope))
    assert verify(parsed, trust=[CA.certificate], now=NOW) == COMPANY.certificate


def test_an_inclusive_prefix_list_as_dian_php_clients_send_it_is_honoured() -> None:
    envelope = get_status_envelope(CUFE, URL)
    signxml_sign(envelope, COMPANY, now=NOW, cover=("To", "Timestamp"), prefixes=["soap", "wcf"])
    parsed = etree.fromstring(etree.tostring(envelope))
    inclusive = parsed.find(f".//{{{EXC_C14N}}}InclusiveNamespaces")
    assert inclusive is not None and inclusive.get("PrefixList") == "soap wcf"
    assert verify(parsed, trust=[CA.certificate], now=NOW) == COMPANY.certificate


def test_the_certificate_itself_may_be_the_trusted_one() -> None:
    assert verify(signed(), trust=[COMPANY.certificate], now=NOW) == COMPANY.certificate
    assert verify(signed(), trust=None, now=NOW) == COMPANY.certificate


def _remove(path: str) -> Callable[[etree._Element], None]:
    def change(envelope: etree._Element) -> None:
        element = find(envelope, path)
        parent = element.getparent()
        assert parent is not None
        parent.remove(element)

    return change


def _set_text(path: str, text: str) -> Callable[[etree._Element], None]:
    def change(envelope: etree._Element) -> None:
        find(envelope, path).text = text

    return change


def _twin_to(envelope: etree._Element) -> None:
    # Signature wrapping: the signed wsa:To moved aside, an altered one with the same Id read.
    to = find(envelope, "soap:Header/wsa:To")
    twin = etree.fromstring(etree.tostring(to))
    twin.text = "https://elsewhere.example/"
    find(envelope, "soap:Body").append(twin)


SECURITY = "soap:Header/wsse:Security"
REFUSED = {
    "no header": (_remove(SECURITY), "no wsse:Security"),
    "no timestamp": (_remove(f"{SECURITY}/wsu:Timestamp"), "no wsu:Timestamp"),
    "no signature": (_remove(f"{SECURITY}/ds:Signature"), "no ds:Signature"),
    "token not a certificate": (
        _set_text(f"{SECURITY}/wsse:BinarySecurityToken", base64.b64encode(b"hola").decode()),
        "not an X.509 certificate",
    ),
    "signature value changed": (
        _set_text(
            f"{SECURITY}/ds:Signature/ds:SignatureValue", base64.b64encode(b"x" * 256).decode()
        ),
        "does not verify",
    ),
    "wsa:To changed after signing": (
        _set_text("soap:Header/wsa:To", "https://elsewhere.example/"),
        "digest of #TO-",
    ),
    "timestamp changed after signing": (
        _set_text(f"{SECURITY}/wsu:Timestamp/wsu:Expires", "2099-01-01T00:00:00Z"),
        "digest of #TS-",
    ),
    "two elements with wsa:To's Id": (_twin_to, "2 elements of the message"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_damaged_header_is_refused_with_its_reason(case: str) -> None:
    change, reason = REFUSED[case]
    envelope = signed()
    change(envelope)
    with pytest.raises(SecurityRejected, match=reason):
        verify(envelope, trust=None, now=NOW)


@pytest.mark.parametrize(
    ("offset", "reason"),
    [
        (timedelta(minutes=-10, seconds=-1), "stale"),  # our clock 10 minutes behind theirs
        (timedelta(minutes=6), "in the future"),
    ],
)
def test_the_timestamp_must_fall_in_the_window(offset: timedelta, reason: str) -> None:
    envelope = get_status_envelope(CUFE, URL)
    sign(envelope, key=COMPANY.key, certificate=COMPANY.certificate, now=NOW + offset)
    with pytest.raises(SecurityRejected, match=reason):
        verify(envelope, trust=None, now=NOW)


def test_clocks_five_minutes_apart_still_agree() -> None:
    envelope = get_status_envelope(CUFE, URL)
    sign(envelope, key=COMPANY.key, certificate=COMPANY.certificate, now=NOW)
    assert verify(envelope, trust=None, now=NOW + timedelta(minutes=9, seconds=59))
    assert verify(envelope, trust=None, now=NOW - timedelta(minutes=4, seconds=59))


def test_a_certificate_from_another_authority_is_not_trusted() -> None:
    other = authority("Otra CA")
    with pytest.raises(SecurityRejected, match="not trusted"):
        verify(signed(), trust=[other.certificate], now=NOW)
    # A certificate that only claims the trusted CA as its issuer is not issued by it.
    impostor = issue(Issued(other.key, CA.certificate))
    with pytest.raises(SecurityRejected, match="not trusted"):
        verify(signed(impostor), trust=[CA.certificate], now=NOW)


def test_an_expired_certificate_is_refused() -> None:
    expired = issue(CA, not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=1))
    with pytest.raises(SecurityRejected, match="expired"):
        verify(signed(expired), trust=[CA.certificate], now=NOW)


def test_a_signature_that_leaves_wsa_to_out_is_refused() -> None:
    envelope = get_status_envelope(CUFE, URL)
    signxml_sign(envelope, COMPANY, now=NOW, cover=("Timestamp",))
    with pytest.raises(SecurityRejected, match="does not cover the wsa:To"):
        verify(etree.fromstring(etree.tostring(envelope)), trust=None, now=NOW)


def test_credentials_load_from_a_pkcs12_file_and_its_password_file(tmp_path: Path) -> None:
    credentials = Credentials.load(*pkcs12_files(tmp_path, COMPANY))
    assert credentials.certificate == COMPANY.certificate
    assert credentials.not_after == COMPANY.certificate.not_valid_after_utc
    envelope = get_status_envelope(CUFE, URL)
    sign(envelope, key=credentials.key, certificate=credentials.certificate, now=NOW)
    assert verify(envelope, trust=[CA.certificate], now=NOW) == COMPANY.certificate


def test_credentials_say_what_is_wrong_with_the_files(tmp_path: Path) -> None:
    p12, password = pkcs12_files(tmp_path, COMPANY)
    wrong = tmp_path / "wrong.password"
    wrong.write_text("otra clave\n")
    with pytest.raises(CredentialsError, match="does not open"):
        Credentials.load(p12, wrong)
    pem = tmp_path / "empresa.pem"
    pem.write_bytes(COMPANY.certificate.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(CredentialsError, match="PEM file"):
        Credentials.load(pem, password)
    text = tmp_path / "notas.txt"
    text.write_text("no es un certificado")
    with pytest.raises(CredentialsError, match="not a PKCS#12"):
        Credentials.load(text, password)
    with pytest.raises(CredentialsError, match="cannot read"):
        Credentials.load(tmp_path / "missing.p12", password)
    only_certificates = tmp_path / "only"
    only_certificates.mkdir()
    with pytest.raises(CredentialsError, match="no private key"):
        Credentials.load(*pkcs12_files(only_certificates, COMPANY, with_key=False))
