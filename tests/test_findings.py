"""Findings are stored as data and worded where they are read: the ledger keeps each finding's
code, severity, path and values; `.motivo.txt` and `facturasd invoices show` render them in the
language asked for. The files are taken and checked here as the daemon takes them, in this
process (no watcher, no worker pool), into a real ledger."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from facturasd.cli import main
from facturasd.constants import DATABASE_FILE
from facturasd.processpool import ProcessPool
from tests.documents import CUSTOMER_NIT, Item, co_invoice
from tests.support import take, write_config

COMPANY = (
    "[[companies]]\nslug = 'rg-glass'\nname = 'RG GLASS S.A.S.'\ncountry = 'CO'\n"
    f"tax_id = '{CUSTOMER_NIT}'\ncity = '11001'\nwithholding_agent = true\n"
)
# Two lines that add up to 2,603,720.00 with their IVA; the total printed as 1.00.
WRONG_TOTAL = co_invoice(
    [Item("Vidrio templado", "2", "1000000.00", "19"), Item("Instalación", "1", "188000.00", "19")],
    override={"total": "1.00"},
)


def show(config_file: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["invoices", "show", "1", "--config", str(config_file), *args]) == 0
    return capsys.readouterr().out


def test_invoices_show_speaks_the_language_configured_now(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = write_config(tmp_path, COMPANY)
    config = take(config_file, {"factura.xml": WRONG_TOTAL})
    # The ledger keeps the findings as data: no message in any language.
    with sqlite3.connect(config.paths.state_dir / DATABASE_FILE) as conn:
        [(state, stored)] = conn.execute("SELECT state, inspection FROM invoices").fetchall()
    assert state == "rejected"
    findings = json.loads(stored)["findings"]
    assert all("message" not in f for f in findings)
    assert {
        "code": "CO-TOTAL-MISMATCH",
        "severity": "error",
        "path": "totals.total",
        "params": {"printed": "1.00", "computed": "2603720.00"},
    } in findings

    spanish = show(config_file, capsys=capsys)
    # Amounts as Colombia writes them, whatever the language.
    assert "CO-TOTAL-MISMATCH: El total a pagar impreso es 1,00, pero" in spanish
    assert "da 2.603.720,00" in spanish
    assert "No se practica ReteIVA: la empresa no es gran contribuyente" in spanish

    # reports.language changes after the invoice was checked: it is shown in the new one.
    config_file.write_text(config_file.read_text() + "[reports]\nlanguage = 'en'\n")
    english = show(config_file, capsys=capsys)
    assert "CO-TOTAL-MISMATCH: The printed amount payable is 1,00, but" in english
    assert "No ReteIVA is withheld: the company is neither a gran contribuyente" in english
    assert "El total" not in english and "No se practica" not in english
    as_json = json.loads(show(config_file, "--json", capsys=capsys))
    [total] = [f for f in as_json["inspection"]["findings"] if f["code"] == "CO-TOTAL-MISMATCH"]
    assert total == {
        "code": "CO-TOTAL-MISMATCH",
        "severity": "error",
        "message": "The printed amount payable is 1,00, but subtotal − discounts + charges + "
        "taxes − prepaid gives 2.603.720,00",
        "path": "totals.total",
        "params": {"printed": "1.00", "computed": "2603720.00"},
    }
    # --lang says otherwise for one command.
    assert "El total a pagar impreso es 1,00" in show(config_file, "--lang", "es", capsys=capsys)


def test_findings_stored_by_the_previous_version_show_their_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = write_config(tmp_path)
    config = take(config_file, {"factura.xml": WRONG_TOTAL})
    # What the version before findings were data wrote: the message in one language only.
    old = {
        "code": "CO-TOTAL-MISMATCH",
        "severity": "error",
        "message": "El total a pagar impreso es 1.00, pero subtotal − descuentos + cargos + "
        "impuestos − anticipos da 2603720.00",
        "path": "totals.total",
    }
    with sqlite3.connect(config.paths.state_dir / DATABASE_FILE) as conn:
        [(stored,)] = conn.execute("SELECT inspection FROM invoices").fetchall()
        conn.execute(
            "UPDATE invoices SET inspection = ?",
            (json.dumps({**json.loads(stored), "findings": [old]}),),
        )
    english = show(config_file, "--lang", "en", capsys=capsys)
    assert f"[error] CO-TOTAL-MISMATCH: {old['message']} (totals.total)" in english
    [shown] = json.loads(show(config_file, "--json", capsys=capsys))["inspection"]["findings"]
    assert shown == {**old, "params": {}}


def test_the_motivo_says_it_in_spanish_then_english_from_one_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every parse-and-check runs in a worker process: count them.
    runs: list[str] = []
    run = ProcessPool.run

    async def counted(pool: ProcessPool, func: Callable[..., object], *args: object) -> object:
        runs.append(func.__name__)
        return await run(pool, func, *args)

    monkeypatch.setattr(ProcessPool, "run", counted)
    config = take(write_config(tmp_path), {"mal total.xml": WRONG_TOTAL})
    assert runs == ["inspect_file"]  # read once, though the reason is in two languages
    [reason] = config.paths.rejected.rglob("*mal total.xml.motivo.txt")
    spanish, english = reason.read_text(encoding="utf-8").split("\n\n----\n\n")
    assert spanish.splitlines()[0] == "facturasd: factura rechazada por sus errores"
    assert spanish.splitlines()[1] == "Archivo: mal total.xml"
    assert spanish.splitlines()[4:] == [
        "- [error] CO-TOTAL-MISMATCH (totals.total): El total a pagar impreso es 1,00, pero "
        "subtotal − descuentos + cargos + impuestos − anticipos da 2.603.720,00",
        "  Qué hacer: No pague ni contabilice esta factura; pida una corregida.",
    ]
    assert english.splitlines()[0] == "facturasd: invoice rejected for its errors"
    assert english.splitlines()[1] == "File: mal total.xml"
    assert english.splitlines()[4:] == [
        "- [error] CO-TOTAL-MISMATCH (totals.total): The printed amount payable is 1,00, but "
        "subtotal − discounts + charges + taxes − prepaid gives 2.603.720,00",
        "  What to do: Do not pay or book this invoice; ask for a corrected one.",
    ]
