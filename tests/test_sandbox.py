"""`facturasd sandbox`: the local servers as a person starts them, and the one-line refusals."""

from __future__ import annotations

import re
import signal
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from facturasd.authorities import Answer, Verdict
from facturasd.authorities.sat import SatClient
from facturasd.cli import main
from facturasd.formats.model import Document
from facturasd.formats.reader import read
from tests.support import REPO, SandboxProcess

SAMPLES = REPO.parent / "shared" / "samples"
CFDI40 = SAMPLES / "cfdi" / "cfdi-expresiones__cfdi40-real.xml"


def certificate_pem() -> bytes:
    """A self-signed certificate, made now: what --dian-trust takes."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Empresa de prueba")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.mark.slow
def test_the_command_serves_the_samples_until_sigint(tmp_path: Path) -> None:
    trust = tmp_path / "dian.pem"
    trust.write_bytes(certificate_pem())
    with SandboxProcess("--documents", str(SAMPLES), "--dian-trust", str(trust)) as sandbox:
        # Every stamped sample is known: six CFDIs, four DIAN documents, of which three
        # invoices Alegra can import (not the credit note).
        assert sandbox.known == {"sat": 6, "dian": 4, "alegra": 3}
        url = sandbox.urls["sat"]
        # The port the system chose, not the 0 asked for.
        assert re.match(r"http://127\.0\.0\.1:[1-9][0-9]*/sat/ConsultaCFDIService\.svc$", url)
        (inspection,) = read(CFDI40.read_bytes(), CFDI40.name)
        assert inspection.document is not None
        answer = anyio.run(ask, url, inspection.document)
        assert (answer.verdict, answer.status) == (Verdict.VALID, "Vigente")
        sandbox.proc.send_signal(signal.SIGINT)
        assert sandbox.proc.wait(timeout=20) == 0
        assert sandbox.stderr() == ""  # no traceback


async def ask(url: str, document: Document) -> Answer:
    async with httpx.AsyncClient(timeout=10) as http:
        return await SatClient(http, url).status(document)


def refusal(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["sandbox", *args]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_missing_folder_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refusal(capsys, "--bind", "127.0.0.1:0", "--documents", str(tmp_path / "nowhere"))
    assert line == f"facturasd sandbox: --documents {tmp_path / 'nowhere'}: no such folder"


def test_a_file_with_no_certificate_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_pem = tmp_path / "dian.pem"
    not_pem.write_bytes(b"-----BEGIN NONSENSE-----\nxx\n")
    line = refusal(capsys, "--bind", "127.0.0.1:0", "--dian-trust", str(not_pem))
    assert line == f"facturasd sandbox: --dian-trust {not_pem}: no PEM certificate in it"
    missing = refusal(capsys, "--bind", "127.0.0.1:0", "--dian-trust", str(tmp_path / "none"))
    assert "No such file or directory" in missing


def test_a_taken_port_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = refusal(capsys, "--bind", f"127.0.0.1:{port}")
    assert line.startswith(f"facturasd sandbox: --bind 127.0.0.1:{port}: ")
    assert "in use" in line


def test_a_bind_that_is_no_address_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    line = refusal(capsys, "--bind", "8099")
    assert "not an address" in line
