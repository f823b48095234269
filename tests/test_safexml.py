"""Untrusted XML: real samples parse, hostile input is refused with its code."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facturasd.errors import FormatError
from facturasd.formats.safexml import Limits, parse
from tests.support import REPO

SAMPLES = sorted((REPO.parent / "shared" / "samples").glob("*/*.xml"))
CFDI4 = "http://www.sat.gob.mx/cfd/4"
UBL_INVOICE = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"


def code_of(data: bytes, limits: Limits | None = None) -> str:
    with pytest.raises(FormatError) as caught:
        parse(data, limits or Limits())
    return caught.value.code


def test_there_are_samples() -> None:
    assert len(SAMPLES) >= 12


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_every_sample_parses(sample: Path) -> None:
    root = parse(sample.read_bytes())
    namespace = root.tag.split("}")[0].lstrip("{")
    assert namespace.startswith(("http://www.sat.gob.mx/cfd/", "urn:oasis:names:specification:ubl"))


def test_prefix_bom_and_encoding_do_not_matter() -> None:
    plain = (
        f'<cfdi:Comprobante xmlns:cfdi="{CFDI4}" Total="1.00">'
        '<cfdi:Emisor Nombre="Ñandú"/></cfdi:Comprobante>'
    )
    other_prefix = plain.replace("cfdi:", "x:").replace("xmlns:cfdi", "xmlns:x")
    default_ns = plain.replace("cfdi:", "").replace("xmlns:cfdi", "xmlns")
    latin1 = ('<?xml version="1.0" encoding="ISO-8859-1"?>' + plain).encode("iso-8859-1")
    for data in (
        plain.encode(),
        b"\xef\xbb\xbf" + plain.encode(),
        other_prefix.encode(),
        default_ns.encode(),
        latin1,
    ):
        root = parse(data)
        assert root.tag == f"{{{CFDI4}}}Comprobante"
        assert root.find(f"{{{CFDI4}}}Emisor").get("Nombre") == "Ñandú"  # type: ignore[union-attr]


def test_xxe_to_a_local_file_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    data = (
        f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}">]>'
        f'<Invoice xmlns="{UBL_INVOICE}">&x;</Invoice>'
    ).encode()
    assert code_of(data) == "FMT-UNSAFE-XML"


def test_xxe_to_a_url_is_refused_without_a_request() -> None:
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"pwned")

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/evil.dtd"
        assert code_of(f'<!DOCTYPE r [<!ENTITY x SYSTEM "{url}">]><r>&x;</r>'.encode()) == (
            "FMT-UNSAFE-XML"
        )
        assert code_of(f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{url}"> %p;]><r/>'.encode()) == (
            "FMT-UNSAFE-XML"
        )
        # an external DTD without entities is harmless: parsed, never fetched
        assert parse(f'<!DOCTYPE r SYSTEM "{url}"><r/>'.encode()).tag == "r"
    finally:
        server.shutdown()
        server.server_close()
    assert requests == []


def test_entity_bombs_are_refused() -> None:
    laughs = (
        '<!DOCTYPE lolz [<!ENTITY lol "lol">'
        + "".join(
            f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i else "&lol;" * 10}">'
            for i in range(10)
        )
        + "]><lolz>&lol9;</lolz>"
    )
    quadratic = '<!DOCTYPE r [<!ENTITY a "' + "x" * 50_000 + '">]><r>' + "&a;" * 50_000 + "</r>"
    assert code_of(laughs.encode()) == "FMT-UNSAFE-XML"
    assert code_of(quadratic.encode()) == "FMT-UNSAFE-XML"


def test_limits_on_size_depth_and_elements() -> None:
    assert code_of(b"<r>" + b" " * 2048 + b"</r>", Limits(max_file_bytes=1024)) == "FMT-TOO-LARGE"
    deep = b"<a>" * 300 + b"</a>" * 300
    assert code_of(deep) == "FMT-UNSAFE-XML"
    wide = b"<r>" + b"<e/>" * 2000 + b"</r>"
    assert code_of(wide, Limits(max_xml_elements=1000)) == "FMT-UNSAFE-XML"
    assert parse(wide).tag == "r"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "FMT-NOT-XML"),
        (b"   \n", "FMT-NOT-XML"),
        (bytes(range(256)) * 8, "FMT-NOT-XML"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "FMT-NOT-XML"),
        (b"%PDF-1.7\n1 0 obj", "FMT-NOT-XML"),
        (f'<Invoice xmlns="{UBL_INVOICE}" xmlns:cbc="urn:x"><cbc:ID>FV'.encode(), "FMT-TRUNCATED"),
        (b"<?xml version='1.0'?><r><a></b></r>", "FMT-NOT-XML"),
    ],
)
def test_garbage_is_refused_with_its_code(data: bytes, code: str) -> None:
    assert code_of(data) == code


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_a_cut_sample_is_truncated(sample: Path) -> None:
    data = sample.read_bytes()
    for cut in (len(data) // 3, len(data) // 2, len(data) - 20):
        assert code_of(data[:cut]) == "FMT-TRUNCATED", cut


@settings(max_examples=300)
@given(
    sample=st.sampled_from(SAMPLES),
    edits=st.lists(st.tuples(st.floats(0, 1), st.binary(min_size=0, max_size=8)), max_size=6),
)
def test_mutated_samples_give_an_element_or_a_format_error(
    sample: Path, edits: list[tuple[float, bytes]]
) -> None:
    data = bytearray(sample.read_bytes())
    for where, junk in edits:
        at = int(where * len(data))
        data[at : at + len(junk)] = junk
    code = None  # parsed: fine, the damage missed the structure
    try:
        parse(bytes(data))
    except FormatError as exc:
        code = exc.code
    assert code in {None, "FMT-NOT-XML", "FMT-TRUNCATED", "FMT-UNSAFE-XML"}
