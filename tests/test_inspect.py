"""`facturasd inspect` and the reader behind it: samples, ZIP packages, hostile packages."""

from __future__ import annotations

import io
import json
import os
import subprocess
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facturasd.checks import Context, check
from facturasd.findings import message
from facturasd.formats.reader import read
from facturasd.formats.safexml import Limits
from tests.support import PYTHON, REPO, daemon_env, run_facturasd
from tests.test_ubl import CUFE, attach, make_ubl

SAMPLES = sorted((REPO.parent / "shared" / "samples").glob("*/*.xml"))
FV7 = REPO.parent / "shared" / "samples" / "dian" / "siigo-blindacces-FV7.xml"
CFDI40 = REPO.parent / "shared" / "samples" / "cfdi" / "cfdi-expresiones__cfdi40-real.xml"
PDF = b"%PDF-1.4\n% a printed invoice\n%%EOF\n"

# Peak memory of `facturasd inspect` on a hostile file, in a subprocess of its own.
MEASURE = """
import resource, sys
from facturasd.cli import main
code = main(["inspect", "--json", *sys.argv[1:]])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


def inspect(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_facturasd("inspect", *args, cwd=cwd, timeout=120)


def measured(path: Path) -> tuple[dict[str, object], int, int]:
    """The JSON, the exit status and the peak RSS in MB of inspecting `path`."""
    result = subprocess.run(
        [PYTHON, "-c", MEASURE, str(path)],
        capture_output=True,
        text=True,
        env=daemon_env(),
        timeout=300,
        cwd=path.parent,
    )
    peak_kb = int(result.stderr.strip().splitlines()[-1])
    return json.loads(result.stdout), result.returncode, peak_kb // 1024


def zipped(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# ── the samples through the command ───────────────────────────────────────────────────────


@pytest.mark.slow
def test_inspect_json_for_every_sample() -> None:
    result = inspect("--json", *map(str, SAMPLES))
    # Some public samples are made with SAT's test certificates, or carry nonsense totals: the
    # checks reject them (test_checks.py names each finding), so inspect exits 1.
    assert result.returncode == 1, result.stderr
    documents = json.loads(result.stdout)
    assert len(documents) == len(SAMPLES)
    for item in documents:
        assert set(item) >= {
            "file",
            "member",
            "sha256",
            "format",
            "document",
            "findings",
            "withholdings_due",
            "score",
            "verdict",
        }
        # Every sample is read; what the checks say of each is in test_checks.py.
        assert item["document"] is not None
        assert not [f for f in item["findings"] if f["code"].startswith("FMT-")]
        assert set(item["document"]) >= {
            "country",
            "kind",
            "number",
            "uuid",
            "issued_at",
            "due_date",
            "currency",
            "exchange_rate",
            "environment",
            "payment",
            "issuer",
            "receiver",
            "lines",
            "taxes",
            "withholdings",
            "totals",
            "references",
            "authority_evidence",
        }


@pytest.mark.slow
def test_inspect_one_file_prints_one_object_and_a_summary() -> None:
    result = inspect("--json", str(FV7))
    document = json.loads(result.stdout)
    assert document["format"] == "dian-attached-document"
    assert document["document"]["authority_evidence"]["code"] == "02"
    text = inspect(str(FV7))
    assert "factura FV7" in text.stdout and "correcta" in text.stdout
    english = inspect("--lang", "en", str(FV7))
    assert "invoice FV7" in english.stdout and "correct" in english.stdout


@pytest.mark.slow
def test_inspect_a_bad_file_is_a_finding_not_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "factura.xml"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    result = inspect("--json", str(bad))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    item = json.loads(result.stdout)
    assert item["verdict"] == "rejected" and item["document"] is None
    [found] = item["findings"]
    assert (found["code"], found["severity"], found["path"]) == ("FMT-NOT-XML", "error", "file")
    assert found["message"].startswith("El archivo no es un XML legible")
    missing = inspect(str(tmp_path / "nope.xml"))
    assert missing.returncode == 2 and "No such file" in missing.stderr


@pytest.mark.slow
def test_inspect_speaks_the_configured_language_unless_told(tmp_path: Path) -> None:
    bad = tmp_path / "factura.xml"
    bad.write_bytes(b"not xml at all")
    config = tmp_path / "facturasd.toml"
    config.write_text("[reports]\nlanguage = 'en'\n", encoding="utf-8")
    english = json.loads(inspect("--config", str(config), "--json", str(bad)).stdout)
    [found] = english["findings"]
    assert found["message"].startswith("The file is not readable XML (")
    # The parser's own words, kept as data and labelled as such.
    detail = found["params"]["detail"]
    assert detail["phrase"] == "not_well_formed"
    assert f"not well-formed XML; technical detail: {detail['text']}" in found["message"]
    spanish = inspect("--config", str(config), "--lang", "es", str(bad))
    assert "[error] FMT-NOT-XML: El archivo no es un XML legible (" in spanish.stdout


@pytest.mark.slow
@pytest.mark.slow
def test_inspect_into_a_reader_that_leaves_early_ends_without_a_traceback() -> None:
    # More than a pipe holds (`facturasd inspect … | head -1`): the write fails once the
    # reader has gone, and the command says nothing more.
    with subprocess.Popen(
        [PYTHON, "-m", "facturasd", "inspect", *map(str, SAMPLES * 40)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=daemon_env(),
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().startswith(str(SAMPLES[0]).encode())
        proc.stdout.close()
        said = proc.stderr.read()
        assert proc.wait(timeout=120) != 0
    assert said == b""


def test_inspect_writes_nothing(tmp_path: Path) -> None:
    before = sorted(tmp_path.rglob("*"))
    assert inspect(str(FV7), cwd=tmp_path).returncode == 0
    assert sorted(tmp_path.rglob("*")) == before


# ── ZIP packages ──────────────────────────────────────────────────────────────────────────


def test_a_zip_package_keeps_its_pdf_with_the_document() -> None:
    data = zipped({"ad_fv7.xml": FV7.read_bytes(), "ad_fv7.pdf": PDF})
    [item] = read(data, "fv7.zip")
    assert (item.member, item.format, item.verdict) == (
        "ad_fv7.xml",
        "dian-attached-document",
        "ok",
    )
    assert item.attachments == ["ad_fv7.pdf"]
    assert item.document is not None and item.document.number == "FV7"


def test_every_xml_in_a_zip_is_a_document_and_a_bad_one_does_not_spoil_the_rest() -> None:
    data = zipped(
        {
            "a.xml": FV7.read_bytes(),
            "b.xml": CFDI40.read_bytes(),
            "c.xml": b"<broken",
            "a.pdf": PDF,
            "notes.txt": b"hello",
        }
    )
    items = {item.member: item for item in read(data, "mix.zip")}
    assert set(items) == {"a.xml", "b.xml", "c.xml"}
    assert items["a.xml"].attachments == ["a.pdf"] and items["b.xml"].attachments == []
    assert items["b.xml"].format == "cfdi-4.0"
    assert [f.code for f in items["c.xml"].findings] == ["FMT-TRUNCATED"]
    assert {item.sha256 for item in items.values()} == {items["a.xml"].sha256}


@pytest.mark.slow
def test_member_names_are_labels_never_paths(tmp_path: Path) -> None:
    names = ["../../escaped.xml", "/tmp/absolute-facturasd.xml", "dir/../../up.xml"]
    package = tmp_path / "evil.zip"
    package.write_bytes(zipped(dict.fromkeys(names, FV7.read_bytes())))
    work = tmp_path / "work" / "deeper"
    work.mkdir(parents=True)
    result = inspect("--json", str(package), cwd=work)
    assert [item["member"] for item in json.loads(result.stdout)] == names
    assert not (tmp_path / "escaped.xml").exists() and not (tmp_path / "work" / "up.xml").exists()
    assert not Path("/tmp/absolute-facturasd.xml").exists()


@pytest.fixture(scope="session")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ZIP of about 1 MB that inflates to 1 GB, built once per session."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("factura.xml", "w", force_zip64=True) as member,
    ):
        member.write(b"<Invoice>")
        zeros = b"\0" * (1 << 20)
        for _ in range(1024):
            member.write(zeros)
    return path


@pytest.mark.slow  # builds a 1 GB inflation and runs it in a subprocess
def test_a_zip_bomb_is_refused_promptly_and_in_little_memory(bomb: Path) -> None:
    item, status, peak_mb = measured(bomb)
    assert status == 1
    assert [f["code"] for f in item["findings"]] == ["FMT-ZIP-BOMB"]  # type: ignore[index]
    assert peak_mb < 300, f"peak RSS {peak_mb} MB"


def test_zips_nested_five_deep_are_refused() -> None:
    data = FV7.read_bytes()
    for level in range(5):
        data = zipped({f"level{level}.zip" if level else "fv7.xml": data})
    [item] = read(data, "deep.zip")
    assert [f.code for f in item.findings] == ["FMT-ZIP-BOMB"]
    assert "nested" in message(item.findings[0], "en")
    assert (
        read(zipped({"inner.zip": zipped({"fv7.xml": FV7.read_bytes()})}), "ok.zip")[0].verdict
        == "ok"
    )


def test_too_many_members_and_damaged_zips() -> None:
    many = zipped({f"{n}.txt": b"x" for n in range(60)})
    assert [f.code for f in read(many, "many.zip")[0].findings] == ["FMT-ZIP-BOMB"]
    damaged = zipped({"fv7.xml": FV7.read_bytes()})[:-40]
    assert [f.code for f in read(damaged, "cut.zip")[0].findings] == ["FMT-BAD-ZIP"]
    assert [f.code for f in read(zipped({"a.txt": b"hello"}), "txt.zip")[0].findings] == [
        "FMT-UNKNOWN-DOCUMENT"
    ]


@pytest.mark.slow
def test_a_huge_file_is_refused_unread(tmp_path: Path) -> None:
    huge = tmp_path / "huge.xml"
    with huge.open("wb") as handle:  # sparse: 200 MB that take no disk
        handle.truncate(200 * 1024 * 1024)
    item, status, peak_mb = measured(huge)
    assert status == 1
    assert [f["code"] for f in item["findings"]] == ["FMT-TOO-LARGE"]  # type: ignore[index]
    assert peak_mb < 300, f"peak RSS {peak_mb} MB"


def test_an_xml_that_is_no_invoice_is_unknown(tmp_path: Path) -> None:
    [item] = read(b'<?xml version="1.0"?><note><to>Ana</to></note>', "note.xml")
    assert [f.code for f in item.findings] == ["FMT-UNKNOWN-DOCUMENT"]
    assert "el elemento raíz <note> no es de una factura" in message(item.findings[0], "es")


# ── the CUFE in every place ───────────────────────────────────────────────────────────────


def test_a_cufe_that_differs_between_places_is_reported() -> None:
    inner = make_ubl().replace(
        "</cbc:ProfileExecutionID>",
        '</cbc:ProfileExecutionID><ext:UBLExtensions xmlns:ext="urn:oasis:names:specification:'
        'ubl:schema:xsd:CommonExtensionComponents-2"><ext:UBLExtension><ext:ExtensionContent>'
        '<sts:DianExtensions xmlns:sts="dian:gov:co:facturaelectronica:Structures-2-1">'
        f"<sts:QRCode>NumFac:SETP990000001\nCUFE:{'cd' * 48}</sts:QRCode></sts:DianExtensions>"
        "</ext:ExtensionContent></ext:UBLExtension></ext:UBLExtensions>",
    )
    [item] = read(attach(inner), "ad.xml", Limits())
    [found] = item.findings
    assert (found.code, found.path, item.verdict) == ("FMT-CUFE-MISMATCH", "uuid", "rejected")
    assert f"código QR: {'cd' * 48}" in message(found, "es") and CUFE in message(found, "es")
    assert f"QR code: {'cd' * 48}" in message(found, "en")
    [agreeing] = read(attach(make_ubl()), "ad.xml")
    assert agreeing.findings == []


def test_every_format_error_has_a_spanish_and_an_english_message() -> None:
    from facturasd.errors import FormatError
    from facturasd.findings import CATALOGUE

    for code in {cls.code for cls in FormatError.__subclasses__()}:
        assert CATALOGUE[code].message["es"] != CATALOGUE[code].message["en"]


@settings(max_examples=200)
@given(
    sample=st.sampled_from(SAMPLES),
    packaging=st.sampled_from(["xml", "zip"]),
    edits=st.lists(st.tuples(st.floats(0, 1), st.binary(max_size=8)), min_size=1, max_size=6),
)
def test_damaged_files_give_a_document_or_a_coded_finding(
    sample: Path, packaging: str, edits: list[tuple[float, bytes]]
) -> None:
    data = sample.read_bytes()
    if packaging == "zip":
        data = zipped({"f.xml": data, "f.pdf": PDF})
    damaged = bytearray(data)
    for where, junk in edits:
        at = int(where * len(damaged))
        damaged[at : at + len(junk)] = junk
    context = Context(now=datetime(2026, 11, 28, tzinfo=UTC))
    for item in read(bytes(damaged), "damaged"):  # never raises
        assert item.document is not None or item.verdict == "rejected"
        assert all(f.code.startswith("FMT-") for f in item.findings)
        checked = check(item, context)  # nor do the checks, whatever the reader returned
        assert checked.findings[: len(item.findings)] == item.findings


def test_a_damaged_xml_member_is_reported_not_skipped() -> None:
    [item] = read(zipped({"factura.xml": b"\x00\x01 not xml", "factura.pdf": PDF}), "x.zip")
    assert (item.member, [f.code for f in item.findings]) == ("factura.xml", ["FMT-NOT-XML"])


def test_generated_ubl_bare_attached_and_zipped_agree() -> None:
    inner = make_ubl()
    [bare] = read(inner.encode(), "bare.xml")
    [attached] = read(attach(inner), "ad.xml")
    [packaged] = read(zipped({"ad.xml": attach(inner, escaped=True), "ad.pdf": PDF}), "p.zip")
    assert bare.document == attached.document == packaged.document
    assert (bare.format, attached.format, packaged.format) == (
        "dian-invoice",
        "dian-attached-document",
        "dian-attached-document",
    )
    assert packaged.attachments == ["ad.pdf"]


def test_the_container_verdict_alone_counts_as_evidence() -> None:
    verification = (
        "<cac:ParentDocumentLineReference><cac:DocumentReference>"
        f"<cbc:UUID>{CUFE}</cbc:UUID><cac:ResultOfVerification>"
        "<cbc:ValidationResultCode>002</cbc:ValidationResultCode>"
        "<cbc:ValidationDate>2026-11-02</cbc:ValidationDate></cac:ResultOfVerification>"
        "</cac:DocumentReference></cac:ParentDocumentLineReference>"
    ).encode()
    data = attach(make_ubl()).replace(b"</AttachedDocument>", verification + b"</AttachedDocument>")
    [item] = read(data, "ad.xml")
    assert item.findings == []
    assert item.document is not None and item.document.authority_evidence is not None
    evidence = item.document.authority_evidence
    assert (evidence.source, evidence.code, evidence.at) == ("embedded", "02", "2026-11-02")


LAUGHS = (
    '<!DOCTYPE l [<!ENTITY a "ha">'
    + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
    + "]><l>&j;</l>"
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("content", "code"),
    [
        (LAUGHS.encode(), "FMT-UNSAFE-XML"),
        (
            b'<!DOCTYPE r [<!ENTITY a "' + b"x" * 100_000 + b'">]><r>' + b"&a;" * 100_000 + b"</r>",
            "FMT-UNSAFE-XML",
        ),
        (b"<a>" * 100_000 + b"</a>" * 100_000, "FMT-UNSAFE-XML"),
        (b"<r>" + b"<e/>" * 1_500_000 + b"</r>", "FMT-UNSAFE-XML"),
    ],
    ids=["billion-laughs", "quadratic", "deep", "many-elements"],
)
def test_hostile_xml_is_refused_in_little_memory(tmp_path: Path, content: bytes, code: str) -> None:
    path = tmp_path / "hostile.xml"
    path.write_bytes(content)
    item, status, peak_mb = measured(path)
    assert status == 1
    assert [f["code"] for f in item["findings"]] == [code]  # type: ignore[index]
    assert peak_mb < 300, f"peak RSS {peak_mb} MB"


def test_review_findings_hostile_and_odd_inputs(tmp_path: Path) -> None:
    """Inputs a review found slipping past earlier limits, each refused or read right."""
    utf16 = (
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY x "INJECTED">]>'
        '<cfdi:Comprobante xmlns:cfdi="http://www.sat.gob.mx/cfd/4" Folio="&x;"/>'
    ).encode("utf-16")
    assert [f.code for f in read(utf16, "u16.xml")[0].findings] == ["FMT-NOT-XML"]

    bz = io.BytesIO()
    with zipfile.ZipFile(bz, "w", zipfile.ZIP_BZIP2) as archive:
        archive.writestr("f.xml", b"\0" * (1 << 20))
    assert [f.code for f in read(bz.getvalue(), "bz.zip")[0].findings] == ["FMT-BAD-ZIP"]

    attributes = b"<r " + b" ".join(b'a%d="1"' % n for n in range(2000)) + b"/>"
    assert [
        f.code for f in read(attributes, "a.xml", Limits(max_xml_elements=1000))[0].findings
    ] == ["FMT-UNSAFE-XML"]

    huge_amounts = make_ubl().replace(
        "19000.00</cbc:TaxAmount><cac:TaxSubtotal>", "9E+999999</cbc:TaxAmount><cac:TaxSubtotal>"
    )
    [odd] = read(huge_amounts.encode(), "odd.xml")  # kept as printed, no exception
    assert odd.document is not None and odd.document.totals.taxes == "9E+999999"
    twice = huge_amounts.replace(
        "<cac:TaxTotal>",
        "<cac:TaxTotal><cbc:TaxAmount>9E+999999</cbc:TaxAmount></cac:TaxTotal><cac:TaxTotal>",
        1,
    )
    [overflow] = read(twice.encode(), "twice.xml")  # too large to add up: left to the checks
    assert overflow.document is not None and overflow.document.totals.taxes is None


def test_a_nit_printed_with_its_check_digit() -> None:
    data = make_ubl().replace(
        'schemeID="4" schemeName="31">800.197.268', 'schemeName="31">800.197.268-4'
    )
    [item] = read(data.encode(), "dv.xml")
    assert item.document is not None
    assert (item.document.issuer.tax_id, item.document.issuer.check_digit) == ("800197268", "4")


def test_a_latin1_inner_document_with_a_bom_keeps_its_letters() -> None:
    inner = '\ufeff<?xml version="1.0" encoding="ISO-8859-1"?>' + make_ubl()
    [item] = read(attach(inner, declaration=False), "ad.xml")
    assert item.document is not None and item.document.issuer.name == "Ñoño Ltda"
