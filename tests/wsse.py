"""Test certificates made at test time (a CA, the company's certificate in a PKCS#12 file with
its password file), and WS-Security headers signed by signxml: an XML-DSig implementation that
is not ours."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import methods
from signxml.signer import SignatureReference, XMLSigner

from facturasd.authorities.wssecurity import (
    BASE64_BINARY,
    DS,
    EXC_C14N,
    SOAP12,
    WSA,
    WSSE,
    WSU,
    WSU_ID,
    X509V3,
)

NOW = datetime.now(UTC)
PASSWORD = "clave secreta"


@dataclass(frozen=True)
class Issued:
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CO"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "facturasd tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def authority(name: str = "Test CA") -> Issued:
    """A self-signed certificate authority, valid for a year around now."""
    key = _key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=180))
        .not_valid_after(NOW + timedelta(days=180))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Issued(key, certificate)


def issue(
    ca: Issued,
    name: str = "EMPRESA DE PRUEBAS SAS",
    *,
    not_before: datetime = NOW - timedelta(days=30),
    not_after: datetime = NOW + timedelta(days=300),
) -> Issued:
    """A company's certificate issued by `ca`."""
    key = _key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(key, certificate)


def pkcs12_files(
    folder: Path,
    issued: Issued,
    password: str = PASSWORD,
    *,
    with_key: bool = True,
) -> tuple[Path, Path]:
    """`issued` as a PKCS#12 file and its password file (with a line ending, as editors
    write it)."""
    data = pkcs12.serialize_key_and_certificates(
        b"empresa",
        issued.key if with_key else None,
        issued.certificate if with_key else None,
        None if with_key else [issued.certificate],
        serialization.BestAvailableEncryption(password.encode()),
    )
    p12 = folder / "empresa.p12"
    p12.write_bytes(data)
    password_file = folder / "empresa.password"
    password_file.write_text(password + "\n")
    return p12, password_file


def signxml_sign(
    envelope: etree._Element,
    issued: Issued,
    *,
    now: datetime,
    cover: tuple[str, ...] = ("To",),
    prefixes: list[str] | None = None,
) -> None:
    """Adds a WS-Security header to `envelope` whose signature signxml makes: RSA-SHA256,
    exclusive c14n, a Reference to each element of `cover` ("To", "Timestamp") by wsu:Id
    (with `prefixes` as its transform's InclusiveNamespaces PrefixList), KeyInfo pointing at a
    BinarySecurityToken."""
    header = envelope.find(f"{{{SOAP12}}}Header")
    assert header is not None
    to = header.find(f"{{{WSA}}}To")
    assert to is not None
    to.set(WSU_ID, "to-1")
    security = etree.Element(f"{{{WSSE}}}Security", nsmap={"wsse": WSSE, "wsu": WSU})
    header.insert(0, security)
    timestamp = etree.SubElement(security, f"{{{WSU}}}Timestamp", {WSU_ID: "ts-1"})
    etree.SubElement(timestamp, f"{{{WSU}}}Created").text = f"{now:%Y-%m-%dT%H:%M:%SZ}"
    expires = now + timedelta(minutes=5)
    etree.SubElement(timestamp, f"{{{WSU}}}Expires").text = f"{expires:%Y-%m-%dT%H:%M:%SZ}"
    token = etree.SubElement(
        security,
        f"{{{WSSE}}}BinarySecurityToken",
        {"EncodingType": BASE64_BINARY, "ValueType": X509V3, WSU_ID: "token-1"},
    )
    der = issued.certificate.public_bytes(serialization.Encoding.DER)
    token.text = base64.b64encode(der).decode()
    key_info = etree.Element(f"{{{DS}}}KeyInfo", nsmap={"ds": DS})
    etree.SubElement(
        etree.SubElement(key_info, f"{{{WSSE}}}SecurityTokenReference", nsmap={"wsse": WSSE}),
        f"{{{WSSE}}}Reference",
        URI="#token-1",
        ValueType=X509V3,
    )
    ids = {"To": "#to-1", "Timestamp": "#ts-1"}
    signer = XMLSigner(
        method=methods.detached,
        signature_algorithm="rsa-sha256",
        digest_algorithm="sha256",
        c14n_algorithm=EXC_C14N,
    )
    signature = signer.sign(
        envelope,
        key=issued.key,
        reference_uri=[
            SignatureReference(URI=ids[name], inclusive_ns_prefixes=prefixes) for name in cover
        ],
        key_info=key_info,
    )
    security.append(signature)
