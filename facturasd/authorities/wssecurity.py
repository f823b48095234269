"""The WS-Security header DIAN's web services require (OASIS WSS 1.0, X.509 token profile):
signed here for the client, checked here for the sandbox.

The header, as DIAN's clients send it and its WCF service checks it:

    soap:Header
      wsse:Security  soap:mustUnderstand="true"
        wsu:Timestamp  wsu:Id           Created, Expires (UTC, "Z")
        wsse:BinarySecurityToken        the company's X.509 certificate, base64 DER, wsu:Id
        ds:Signature                    RSA-SHA256 over exclusive-c14n SignedInfo
          ds:Reference  #wsa:To         exc-c14n, SHA-256 (what DIAN requires)
          ds:Reference  #Timestamp      (ours too: an unsigned timestamp could be rewritten)
          ds:KeyInfo/wsse:SecurityTokenReference → the token
      wsa:Action
      wsa:To  wsu:Id

Exclusive canonicalization is what makes a signature survive the trip: an element's canonical
form carries only the namespaces it uses, not those of the envelope around it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from lxml import etree

from facturasd.errors import FacturasdError

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
X509V3 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
BASE64_BINARY = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
)
WSU_ID = f"{{{WSU}}}Id"

# WCF's defaults, which DIAN's service keeps: a timestamp lives five minutes, and the two
# clocks may disagree by five minutes.
DEFAULT_TTL = timedelta(minutes=5)
MAX_SKEW = timedelta(minutes=5)


class SecurityRejected(FacturasdError):
    """A message's WS-Security header does not pass (`reason` says which check failed)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class CredentialsError(FacturasdError):
    """The company's certificate cannot be loaded; the message names the file and what to do."""


@dataclass(frozen=True)
class Credentials:
    """The company's signing key and its certificate, from its PKCS#12 file."""

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc

    @classmethod
    def load(cls, pkcs12_file: Path, password_file: Path) -> Credentials:
        """Reads both files (blocking: call it from a thread in async code). The password is
        the password file's content without its line ending; an empty file means none."""
        try:
            data = pkcs12_file.read_bytes()
            password = password_file.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise CredentialsError(f"cannot read the certificate's files: {exc}") from None
        if data.lstrip().startswith(b"-----BEGIN"):
            raise CredentialsError(
                f"{pkcs12_file} is a PEM file: DIAN's certificate is expected as PKCS#12 "
                "(.p12/.pfx)"
            )
        # A PKCS#12 file is one DER SEQUENCE: anything else is not one, whatever the password.
        if not data.startswith(b"\x30"):
            raise CredentialsError(f"{pkcs12_file} is not a PKCS#12 file (.p12/.pfx)")
        try:
            key, certificate, _ = pkcs12.load_key_and_certificates(data, password or None)
        except ValueError:
            # OpenSSL cannot tell a wrong password from damaged contents; the first is usual.
            raise CredentialsError(
                f"the password in {password_file} does not open {pkcs12_file} "
                "(or the file is damaged)"
            ) from None
        if key is None:
            raise CredentialsError(f"{pkcs12_file} holds no private key, only certificates")
        if certificate is None:
            raise CredentialsError(f"{pkcs12_file} holds a private key but no certificate")
        if not isinstance(key, rsa.RSAPrivateKey):
            raise CredentialsError(f"{pkcs12_file} holds a key DIAN does not take: RSA is required")
        if _public_der(key.public_key()) != _public_der(certificate.public_key()):
            raise CredentialsError(f"in {pkcs12_file} the private key is not the certificate's")
        return cls(key, certificate)


def _public_der(key: object) -> bytes:
    assert isinstance(key, rsa.RSAPublicKey)
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def sign(
    envelope: etree._Element,
    *,
    key: rsa.RSAPrivateKey,
    certificate: x509.Certificate,
    now: datetime,
    ttl: timedelta = DEFAULT_TTL,
) -> None:
    """Adds the `wsse:Security` header to `envelope` in place, signing its `wsa:To` header and
    the timestamp. The envelope must be SOAP 1.2 with a Header that holds `wsa:To`; serialize it
    after signing, in any way: the signature covers canonical forms."""
    header = envelope.find(f"{{{SOAP12}}}Header")
    to = header.find(f"{{{WSA}}}To") if header is not None else None
    if header is None or to is None:
        raise ValueError("the envelope needs a SOAP 1.2 Header with wsa:To")
    to_id = to.get(WSU_ID) or _new_id("TO")
    to.set(WSU_ID, to_id)

    security = etree.Element(f"{{{WSSE}}}Security", nsmap={"wsse": WSSE, "wsu": WSU})
    header.insert(0, security)
    # Set once inserted, so the attribute takes the envelope's own prefix for SOAP 1.2.
    security.set(f"{{{SOAP12}}}mustUnderstand", "true")

    timestamp = etree.SubElement(security, f"{{{WSU}}}Timestamp", {WSU_ID: _new_id("TS")})
    created = now.astimezone(UTC).replace(microsecond=0)
    etree.SubElement(timestamp, f"{{{WSU}}}Created").text = _utc(created)
    etree.SubElement(timestamp, f"{{{WSU}}}Expires").text = _utc(created + ttl)

    token_id = _new_id("X509")
    token = etree.SubElement(
        security,
        f"{{{WSSE}}}BinarySecurityToken",
        {"EncodingType": BASE64_BINARY, "ValueType": X509V3, WSU_ID: token_id},
    )
    token.text = base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()

    signature = etree.SubElement(security, f"{{{DS}}}Signature", nsmap={"ds": DS})
    signed_info = etree.SubElement(signature, f"{{{DS}}}SignedInfo")
    etree.SubElement(signed_info, f"{{{DS}}}CanonicalizationMethod", Algorithm=EXC_C14N)
    etree.SubElement(signed_info, f"{{{DS}}}SignatureMethod", Algorithm=RSA_SHA256)
    for target in (to, timestamp):
        reference = etree.SubElement(
            signed_info, f"{{{DS}}}Reference", URI=f"#{target.get(WSU_ID)}"
        )
        transforms = etree.SubElement(reference, f"{{{DS}}}Transforms")
        etree.SubElement(transforms, f"{{{DS}}}Transform", Algorithm=EXC_C14N)
        etree.SubElement(reference, f"{{{DS}}}DigestMethod", Algorithm=SHA256)
        etree.SubElement(reference, f"{{{DS}}}DigestValue").text = _digest(target, ())
    value = key.sign(_c14n(signed_info, ()), padding.PKCS1v15(), hashes.SHA256())
    etree.SubElement(signature, f"{{{DS}}}SignatureValue").text = base64.b64encode(value).decode()
    key_info = etree.SubElement(signature, f"{{{DS}}}KeyInfo")
    token_reference = etree.SubElement(key_info, f"{{{WSSE}}}SecurityTokenReference")
    etree.SubElement(token_reference, f"{{{WSSE}}}Reference", URI=f"#{token_id}", ValueType=X509V3)


def verify(
    envelope: etree._Element,
    *,
    trust: list[x509.Certificate] | None,
    now: datetime,
    skew: timedelta = MAX_SKEW,
) -> x509.Certificate:
    """The certificate that signed `envelope`, once its WS-Security header passes every check
    DIAN makes; `SecurityRejected` naming the first that fails.

    `trust`: the certificates a signer's certificate must be, or be issued by (directly);
    None accepts any certificate. The signature may cover more than `wsa:To` (a Reference per
    element), but it must cover the one `wsa:To` header of the message."""
    header = envelope.find(f"{{{SOAP12}}}Header")
    securities = header.findall(f"{{{WSSE}}}Security") if header is not None else []
    if not securities:
        raise SecurityRejected("the message has no wsse:Security header")
    if len(securities) > 1:
        raise SecurityRejected("the message has more than one wsse:Security header")
    security = securities[0]
    _check_timestamp(security.find(f"{{{WSU}}}Timestamp"), now, skew)
    signature = security.find(f"{{{DS}}}Signature")
    if signature is None:
        raise SecurityRejected("the Security header holds no ds:Signature")
    certificate = _token_certificate(envelope, security, signature)
    _check_certificate(certificate, trust, now)
    covered = _check_signature(envelope, signature, certificate)
    assert header is not None
    destinations = header.findall(f"{{{WSA}}}To")
    if len(destinations) != 1:
        raise SecurityRejected("the message must have exactly one wsa:To header")
    if not any(element is destinations[0] for element in covered):
        raise SecurityRejected("the signature does not cover the wsa:To header")
    return certificate


def _check_timestamp(timestamp: etree._Element | None, now: datetime, skew: timedelta) -> None:
    if timestamp is None:
        raise SecurityRejected("the Security header holds no wsu:Timestamp")
    created = _instant(timestamp, "Created")
    expires = _instant(timestamp, "Expires")
    if expires <= created:
        raise SecurityRejected("the timestamp expires before it is created")
    if created > now + skew:
        raise SecurityRejected(f"the timestamp is in the future (Created {_utc(created)})")
    if expires + skew < now:
        raise SecurityRejected(f"the timestamp is stale (Expires {_utc(expires)})")


def _instant(timestamp: etree._Element, name: str) -> datetime:
    text = timestamp.findtext(f"{{{WSU}}}{name}")
    if not text:
        raise SecurityRejected(f"the timestamp has no {name}")
    try:
        instant = datetime.fromisoformat(text.strip())
    except ValueError:
        raise SecurityRejected(f"the timestamp's {name} is not a date and time: {text!r}") from None
    if instant.tzinfo is None:
        raise SecurityRejected(f"the timestamp's {name} is not in UTC: {text!r}")
    return instant


def _token_certificate(
    envelope: etree._Element, security: etree._Element, signature: etree._Element
) -> x509.Certificate:
    reference = signature.find(
        f"{{{DS}}}KeyInfo/{{{WSSE}}}SecurityTokenReference/{{{WSSE}}}Reference"
    )
    uri = reference.get("URI", "") if reference is not None else ""
    if not uri.startswith("#"):
        raise SecurityRejected("the signature's KeyInfo does not point at a security token")
    token = _by_id(envelope, uri[1:])
    if token.tag != f"{{{WSSE}}}BinarySecurityToken" or token.getparent() is not security:
        raise SecurityRejected("the signature's KeyInfo does not point at a BinarySecurityToken")
    if token.get("ValueType") != X509V3:
        raise SecurityRejected("the security token is not an X.509 certificate")
    if token.get("EncodingType", BASE64_BINARY) != BASE64_BINARY:
        raise SecurityRejected("the security token is not base64")
    try:
        der = base64.b64decode("".join((token.text or "").split()), validate=True)
        return x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError):
        raise SecurityRejected("the security token is not an X.509 certificate") from None


def _check_certificate(
    certificate: x509.Certificate, trust: list[x509.Certificate] | None, now: datetime
) -> None:
    if now > certificate.not_valid_after_utc:
        raise SecurityRejected(
            f"the certificate expired on {_utc(certificate.not_valid_after_utc)}"
        )
    if now < certificate.not_valid_before_utc:
        raise SecurityRejected(
            f"the certificate is valid only from {_utc(certificate.not_valid_before_utc)}"
        )
    if trust is not None and not any(_issued(certificate, by) for by in trust):
        raise SecurityRejected(
            f"the certificate ({certificate.subject.rfc4514_string()}) is not trusted"
        )


def _issued(certificate: x509.Certificate, by: x509.Certificate) -> bool:
    if certificate == by:
        return True
    try:
        certificate.verify_directly_issued_by(by)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_signature(
    envelope: etree._Element, signature: etree._Element, certificate: x509.Certificate
) -> list[etree._Element]:
    """The elements the signature covers, once it and every Reference's digest verify."""
    signed_info = signature.find(f"{{{DS}}}SignedInfo")
    if signed_info is None:
        raise SecurityRejected("the signature has no SignedInfo")
    method = signed_info.find(f"{{{DS}}}CanonicalizationMethod")
    if method is None or method.get("Algorithm") != EXC_C14N:
        raise SecurityRejected("SignedInfo is not canonicalized with exclusive c14n")
    algorithm = signed_info.find(f"{{{DS}}}SignatureMethod")
    if algorithm is None or algorithm.get("Algorithm") != RSA_SHA256:
        raise SecurityRejected("the signature is not RSA-SHA256")
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise SecurityRejected("the certificate's key is not RSA")
    try:
        value = base64.b64decode(
            "".join(signature.findtext(f"{{{DS}}}SignatureValue", "").split()), validate=True
        )
        public_key.verify(
            value, _c14n(signed_info, _prefixes(method)), padding.PKCS1v15(), hashes.SHA256()
        )
    except (binascii.Error, InvalidSignature):
        raise SecurityRejected(
            "the signature does not verify with the token's certificate"
        ) from None
    references = signed_info.findall(f"{{{DS}}}Reference")
    if not references:
        raise SecurityRejected("the signature has no Reference")
    return [_check_reference(envelope, reference) for reference in references]


def _check_reference(envelope: etree._Element, reference: etree._Element) -> etree._Element:
    uri = reference.get("URI", "")
    if not uri.startswith("#"):
        raise SecurityRejected(f"a Reference is not to an element of the message: {uri!r}")
    target = _by_id(envelope, uri[1:])
    transforms = reference.findall(f"{{{DS}}}Transforms/{{{DS}}}Transform")
    if len(transforms) != 1 or transforms[0].get("Algorithm") != EXC_C14N:
        raise SecurityRejected(f"the Reference to {uri} is not transformed by exclusive c14n only")
    method = reference.find(f"{{{DS}}}DigestMethod")
    if method is None or method.get("Algorithm") != SHA256:
        raise SecurityRejected(f"the Reference to {uri} is not digested with SHA-256")
    stated = "".join(reference.findtext(f"{{{DS}}}DigestValue", "").split())
    if not hmac.compare_digest(stated, _digest(target, _prefixes(transforms[0]))):
        raise SecurityRejected(f"the digest of {uri} does not match: the element was changed")
    return target


def _by_id(envelope: etree._Element, value: str) -> etree._Element:
    # Two elements with one Id would let a signed copy vouch for an altered one (signature
    # wrapping): an Id must name exactly one element.
    found = [element for element in envelope.iter() if element.get(WSU_ID) == value]
    if len(found) != 1:
        what = "no element" if not found else f"{len(found)} elements"
        raise SecurityRejected(f"{what} of the message has the wsu:Id {value!r}")
    return found[0]


def _prefixes(method: etree._Element) -> tuple[str, ...]:
    """The InclusiveNamespaces PrefixList of an exc-c14n method (DIAN's PHP clients send one)."""
    inclusive = method.find(f"{{{EXC_C14N}}}InclusiveNamespaces")
    return tuple(inclusive.get("PrefixList", "").split()) if inclusive is not None else ()


def _c14n(element: etree._Element, prefixes: tuple[str, ...]) -> bytes:
    return etree.tostring(
        element,
        method="c14n",
        exclusive=True,
        with_comments=False,
        inclusive_ns_prefixes=list(prefixes) or None,
    )


def _digest(element: etree._Element, prefixes: tuple[str, ...]) -> str:
    return base64.b64encode(sha256(_c14n(element, prefixes)).digest()).decode()


def _new_id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


def _utc(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
