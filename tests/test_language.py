"""One language at a time: a `.motivo.txt` is Spanish then English, each half wholly in its
own language; what `inspect`, `invoices list/show` and `jobs` print is wholly in the language
asked for; amounts are written the way the invoice's country writes them. Each case is the one
seen: a too-large file's motivo carried the parser's English, a CFDI's total mismatch had a
Spanish formula in its English half, `inspect` printed `[warning]` among Spanish, `invoices
show` had English labels around Spanish findings."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from facturasd.cli import main
from facturasd.constants import ComplianceStatus, InvoiceState, JobState
from facturasd.findings import CATALOGUE, PHRASES, Finding, message
from facturasd.formats.reader import read
from facturasd.wording import STATES, amount, count
from tests.documents import Item, cfdi40, co_invoice
from tests.support import REPO, invoice, run_facturasd, take, write_config
from tests.test_findings import COMPANY

FV7 = REPO.parent / "shared" / "samples" / "dian" / "siigo-blindacces-FV7.xml"
CFDI40 = REPO.parent / "shared" / "samples" / "cfdi" / "cfdi-expresiones__cfdi40-real.xml"
# English words that have no business in a Spanish sentence (what the motivo carried).
ENGLISH = re.compile(
    r"\b(the|is|more|than|limit|of|and|not|use|option|bytes is|file|elements|nest|deeper|"
    r"levels|well-formed|transferred|withheld|gives|printed)\b|XML_PARSE_HUGE",
    re.IGNORECASE,
)
# The CFDI's Spanish words, as a formula or a label, that the English half carried.
SPANISH = re.compile(r"SubTotal|Descuento|Importe|trasladados|retenidos|\bda\b|impreso")
# A Colombian invoice of 20,384,700.00 (17,130,000.00 + 19 % IVA), and a Mexican one of
# 19,870,800.00 (17,130,000.00 + 16 % IVA), each with its total printed as 1.00.
CO_WRONG = co_invoice([Item("Vidrio", "1", "17130000.00", "19")], override={"total": "1.00"})
MX_WRONG = cfdi40([Item("Servicio", "1", "17130000.00", "16")], override={"total": "1.00"})


def halves(rejected: Path, name: str) -> tuple[str, str]:
    [reason] = rejected.rglob(f"*{name}.motivo.txt")
    spanish, english = reason.read_text(encoding="utf-8").split("\n\n----\n\n")
    return spanish, english


def test_a_too_large_files_motivo_says_it_in_each_language(tmp_path: Path) -> None:
    config_file = write_config(tmp_path, "[formats]\nmax_file_bytes = 52428\n")
    config = take(config_file, {"grande.xml": b"<a>" + b" " * 60_000 + b"</a>"})
    spanish, english = halves(config.paths.rejected, "grande.xml")
    assert (
        "El archivo es demasiado grande (tiene 60\u00a0007 bytes y el límite es 52\u00a0428 bytes)"
        in spanish
    )
    assert "- [error] FMT-TOO-LARGE" in spanish
    assert "The file is too large (it has 60,007 bytes and the limit is 52,428 bytes)" in english
    # What the Spanish half says is Spanish: only the file name and code are not words.
    said = "\n".join(spanish.splitlines()[4:])
    assert ENGLISH.search(said) is None, said


def test_a_too_deep_xmls_motivo_has_no_library_text(tmp_path: Path) -> None:
    config = take(write_config(tmp_path), {"hondo.xml": b"<a>" * 300 + b"</a>" * 300})
    spanish, english = halves(config.paths.rejected, "hondo.xml")
    assert "sus elementos se anidan a más de 256 niveles" in spanish
    assert "its elements nest deeper than 256 levels" in english
    assert "XML_PARSE_HUGE" not in spanish + english
    assert ENGLISH.search("\n".join(spanish.splitlines()[4:])) is None


def test_a_cfdi_total_mismatch_is_wholly_spanish_then_wholly_english(tmp_path: Path) -> None:
    config = take(write_config(tmp_path), {"cfdi.xml": MX_WRONG})
    spanish, english = halves(config.paths.rejected, "cfdi.xml")
    assert (
        "El total impreso es 1.00, pero subtotal − descuento + impuestos trasladados − "
        "impuestos retenidos (+ impuestos locales) da 19,870,800.00" in spanish
    )
    assert (
        "The printed total is 1.00, but subtotal − discount + transferred taxes − withheld "
        "taxes (+ local taxes) gives 19,870,800.00" in english
    )
    assert SPANISH.search("\n".join(english.splitlines()[4:])) is None, english


def test_no_english_message_carries_the_cfdis_spanish_formula_words() -> None:
    for code, entry in CATALOGUE.items():
        assert SPANISH.search(entry.message["en"]) is None, code


def test_a_parsers_own_words_are_labelled_as_such() -> None:
    [broken] = read(b"<a><b></a>", "roto.xml")
    [found] = broken.findings
    assert message(found, "es").startswith(
        "El archivo no es un XML legible (no es XML bien formado; detalle técnico (en inglés): "
        "Opening and ending tag mismatch"
    )
    assert "not well-formed XML; technical detail: Opening" in message(found, "en")
    # A detail stored by an earlier version, the parser's English text: labelled too.
    stored = Finding.model_validate(
        {
            "code": "FMT-TOO-LARGE",
            "severity": "error",
            "path": "file",
            "params": {"detail": "52428800 bytes is more than the limit of 20971520"},
        }
    )
    assert message(stored, "es") == (
        "El archivo es demasiado grande (detalle técnico (en inglés): 52428800 bytes is more "
        "than the limit of 20971520)"
    )


def test_every_phrase_is_worded_in_both_languages() -> None:
    for key, words in PHRASES.items():
        assert set(words) == {"es", "en"} and words["es"] != words["en"], key
        fields = {lang: sorted(re.findall(r"{(\w+)", words[lang])) for lang in ("es", "en")}
        assert fields["es"] == fields["en"], key


def test_amounts_are_written_as_the_country_writes_them() -> None:
    assert amount("20384700.00", "CO") == "20.384.700,00"
    assert amount("20384700.00", "MX") == "20,384,700.00"
    assert amount("-1234.5", "CO") == "-1.234,5"
    assert amount("999", "CO") == "999"
    assert amount("3254700", "MX") == "3,254,700"
    assert amount("20384700.00", None) == "20384700.00"  # a country not known: as printed
    assert amount("12,5", "CO") == "12,5"  # not a plain number: as printed
    assert count(52428800, "es") == "52\u00a0428\u00a0800"
    assert count(52428800, "en") == "52,428,800"
    assert count(2026, "es") == count(2026, "en") == "2026"


def inspect(*args: str) -> subprocess.CompletedProcess[str]:
    return run_facturasd("inspect", *args, cwd=REPO)


@pytest.mark.slow
def test_inspect_labels_severities_in_the_language_asked_for() -> None:
    spanish = inspect("--lang", "es", str(CFDI40)).stdout
    assert "  [advertencia] DOC-OLD-DATE: La fecha de emisión" in spanish
    assert "[warning]" not in spanish
    english = inspect("--lang", "en", str(CFDI40)).stdout
    assert "  [warning] DOC-OLD-DATE: The issue date" in english
    assert "[advertencia]" not in english


@pytest.mark.slow
def test_inspect_writes_amounts_as_the_country_does_and_json_keeps_them(tmp_path: Path) -> None:
    mx = tmp_path / "mx.xml"
    mx.write_bytes(MX_WRONG)
    text = inspect("--lang", "es", str(FV7), str(mx)).stdout
    assert "total 20.384.700,00 COP; impuestos 3.254.700; retenciones 617.365,20" in text
    assert "total 1.00 MXN; impuestos 2,740,800.00" in text
    assert "[error] MX-TOTAL-MISMATCH: El total impreso es 1.00" in text
    assert "da 19,870,800.00 (totals.total)" in text
    [colombian, mexican] = json.loads(inspect("--json", str(FV7), str(mx)).stdout)
    assert colombian["document"]["totals"]["total"] == "20384700.00"
    [total] = [f for f in mexican["findings"] if f["code"] == "MX-TOTAL-MISMATCH"]
    assert total["params"] == {"printed": "1.00", "computed": "19870800.00"}


def test_invoices_show_and_list_are_wholly_in_the_language_asked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = write_config(tmp_path, COMPANY)
    take(config_file, {"factura.xml": CO_WRONG})

    def run(*args: str) -> str:
        assert main(["invoices", *args, "--config", str(config_file)]) == 0
        return capsys.readouterr().out

    spanish = run("show", "1", "--lang", "es")
    assert "#1 rechazada (pendiente)  factura.xml" in spanish
    assert "  archivo: " in spanish and "  recibida 20" in spanish and " como " in spanish
    assert " factura " in spanish
    assert " total 1,00 COP" in spanish
    assert "  emisor " in spanish and "; receptor " in spanish and "; empresa rg-glass" in spanish
    assert "  [error] CO-TOTAL-MISMATCH: El total a pagar impreso es 1,00" in spanish
    assert "da 20.384.700,00 (totals.total)" in spanish
    assert "[información] CO-WITHHOLDING-NOT-DUE: No se practica ReteIVA" in spanish
    [head, history] = spanish.split("  historia (los motivos del sistema se registran en inglés):")
    for label in ("file:", "received ", " issuer ", "receiver ", "company ", "[info]", "(file)"):
        assert label not in head, label
    assert "    20" in history and " rechazada " in history

    english = run("show", "1", "--lang", "en")
    assert "#1 rejected (pending)  factura.xml" in english
    assert "  file: " in english and "  issuer " in english and "; company rg-glass" in english
    assert "  [error] CO-TOTAL-MISMATCH: The printed amount payable is 1,00" in english
    for label in ("archivo:", "recibida", "emisor", "receptor", "empresa", "[información]"):
        assert label not in english, label

    assert " rechazada " in run("list", "--lang", "es")
    assert " rejected " in run("list", "--lang", "en")
    as_json = json.loads(run("show", "1", "--json"))
    assert (as_json["state"], as_json["total"]) == ("rejected", "1.00")


def _commands(guide: str) -> list[list[str]]:
    """The fenced blocks of an install guide, their comments left out: what a person types or
    writes into a file, the same in every language."""
    blocks = re.findall(r"^```\w*\n(.*?)^```$", guide, re.MULTILINE | re.DOTALL)
    return [
        [
            re.sub(r"\s+#\s.*$", "", line)
            for line in block.splitlines()
            if not line.lstrip().startswith("#")
        ]
        for block in blocks
    ]


def test_the_spanish_install_guide_follows_the_english_one() -> None:
    english = (REPO / "docs" / "install.md").read_text(encoding="utf-8")
    spanish = (REPO / "docs" / "instalacion.md").read_text(encoding="utf-8")
    # Translated, the same commands and files in the same order, section by section: a change
    # to install.md that is not carried into instalacion.md fails here.
    assert _commands(spanish) == _commands(english)
    headings = re.compile(r"^#{2,3} ", re.MULTILINE)
    assert len(headings.findall(spanish)) == len(headings.findall(english))
    assert "Traducción de [install.md](install.md)" in spanish.splitlines()[2]


def test_every_state_has_its_words() -> None:
    values = {s.value for enum in (InvoiceState, JobState, ComplianceStatus) for s in enum}
    for lang in ("es", "en"):
        assert values <= set(STATES[lang]), values - set(STATES[lang])


def test_review_actions_answer_and_refuse_in_the_language_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = write_config(tmp_path)
    take(config_file, {"factura.xml": invoice(1)})
    config = ["--config", str(config_file)]
    assert main(["invoices", "discard", "1", "--reason", "prueba", *config]) == 0
    assert capsys.readouterr().out == "#1 descartada\n"
    assert main(["invoices", "accept", "1", "--reason", "x", *config]) == 1
    assert capsys.readouterr().err == (
        "facturasd: la factura #1 está descartada; solo se acepta una que esté en revisión\n"
    )
    assert main(["invoices", "accept", "1", "--reason", "x", "--lang", "en", *config]) == 1
    assert capsys.readouterr().err == (
        "facturasd: invoice #1 is discarded; only one in needs review is accepted\n"
    )
    assert main(["invoices", "assign", "1", "--company", "acme", "--reason", "x", *config]) == 1
    assert "no hay empresas configuradas" in capsys.readouterr().err
    assert main(["reprocess", "1", "--reason", "reglas nuevas", *config]) == 0
    assert capsys.readouterr().out == "en cola de nuevo: #1\n"
