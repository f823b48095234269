"""`facturasd invoices list` and `facturasd jobs` as a person reads them: a header, the
columns one looks an invoice up by, names that cannot break a row or drive the terminal, the
newest first in both, a screenful with the count of the rest, one line when there is nothing,
days written either way, and the configuration and companies named when they are missing.
The ledger is filled in this process, as the daemon fills it."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from facturasd.cli import main
from tests.documents import CUSTOMER_NIT
from tests.support import invoice, take, write_config

UUIDS = ("a1b2c3d4" * 12, "e5f6a7b8" * 12, "0b7c4a1e-2f3d-4c5b-8a9e-1d2c3b4a5f6e")
# A file name with an escape character and a newline; an issuer whose name has a newline and
# a right-to-left override (which would show the rest of a line backwards).
ODD_FILE = "fac\x1btura\n2.xml"
ODD_ISSUER = "Proveedora&#10;de\u202eSAS"
COMPANY = (
    "[[companies]]\nslug = 'rg-glass'\nname = 'RG GLASS S.A.S.'\ncountry = 'CO'\n"
    f"tax_id = '{CUSTOMER_NIT}'\ncity = '11001'\n"
)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def three_invoices(config_file: Path) -> None:
    take(
        config_file,
        {
            "factura 1.xml": invoice(1, override={"uuid": UUIDS[0]}),
            ODD_FILE: invoice(2, override={"uuid": UUIDS[1]}),
            "emisor raro.xml": invoice(3, override={"uuid": UUIDS[2]}).replace(
                b"Proveedora de Prueba SAS", ODD_ISSUER.encode()
            ),
        },
    )


def test_invoices_list_shows_what_an_invoice_is_looked_up_by(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    three_invoices(config)
    code, out, _ = cli(capsys, "invoices", "list", "--config", str(config))
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == [
        "ID", "ESTADO", "DIAN/SAT", "RECIBIDA", "EMITIDA", "NÚMERO", "EMISOR", "TOTAL", "MONEDA",
        "CUFE/UUID", "ARCHIVO",
    ]  # fmt: skip
    # One line per invoice, newest first: no name breaks its row.
    assert [row.split()[0] for row in rows] == ["3", "2", "1"]
    first = rows[2]
    # The total as Colombia writes it; JSON keeps it as printed.
    for shown in (
        "pendiente",
        "2026-11-02",
        "FE1001",
        "Proveedora de Prueba SAS",
        "2.382,38",
        "COP",
    ):
        assert f"  {shown}  " in first
    # Enough of the CUFE to tell it from the others; `invoices show` has it whole.
    assert "  a1b2c3d4…  " in first and UUIDS[0] not in out
    assert "  0b7c4a1e…  " in rows[0]
    # What the sender wrote is shown, not acted on by the terminal.
    assert rows[1].endswith("  fac\\x1btura\\n2.xml")
    assert "  Proveedora\\nde\\u202eSAS  " in rows[0]
    assert "\x1b" not in out and "\u202e" not in out

    english = cli(capsys, "invoices", "list", "--config", str(config), "--lang", "en")[1]
    assert english.splitlines()[0].split() == [
        "ID", "STATE", "DIAN/SAT", "RECEIVED", "ISSUED", "NUMBER", "ISSUER", "TOTAL", "CURRENCY",
        "CUFE/UUID", "FILE",
    ]  # fmt: skip
    # JSON is for tools: the names and the CUFE whole, the status as the options name it.
    listed = json.loads(cli(capsys, "invoices", "list", "--config", str(config), "--json")[1])
    assert [(i["id"], i["uuid"], i["original_name"], i["compliance"]) for i in listed] == [
        (3, UUIDS[2], "emisor raro.xml", "PENDING"),
        (2, UUIDS[1], ODD_FILE, "PENDING"),
        (1, UUIDS[0], "factura 1.xml", "PENDING"),
    ]
    assert listed[2]["total"] == "2382.38"


def test_jobs_lists_in_the_same_order_with_attempts_and_invoice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    three_invoices(config)
    invoices = cli(capsys, "invoices", "list", "--config", str(config))[1].splitlines()
    processing = ("--queue", "invoice_processing")
    code, out, _ = cli(capsys, "jobs", "--config", str(config), *processing)
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == [
        "ID", "ESTADO", "COLA", "TIPO", "FACTURA", "INTENTOS", "CREADO", "ÚLTIMO", "ERROR", "(EN",
        "INGLÉS)",
    ]  # fmt: skip
    # Each parse-and-check job names its invoice; the jobs come in the invoices' order.
    assert [row.split()[4] for row in rows] == [row.split()[0] for row in invoices[1:]]
    assert [row.split()[1:4] + row.split()[5:6] for row in rows] == [
        ["hecha", "invoice_processing", "process", "1/5"]
    ] * 3
    english = cli(capsys, "jobs", "--config", str(config), "--lang", "en")[1].splitlines()[0]
    assert english.split() == [
        "ID", "STATE", "QUEUE", "KIND", "INVOICE", "ATTEMPTS", "CREATED", "LAST", "ERROR"
    ]  # fmt: skip
    [newest, *_] = json.loads(
        cli(capsys, "jobs", "--config", str(config), "--json", *processing)[1]
    )
    assert (newest["invoice"], newest["attempts"], newest["max_attempts"]) == (3, 1, 5)


def test_a_table_shows_the_newest_and_says_how_to_see_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    take(config, {f"f{n}.xml": invoice(n) for n in range(1, 54)}, process=False)
    for command, more in (
        (["invoices", "list"], "… y 3 más antiguas: --limit 53 las muestra todas."),
        (["jobs"], "… y 3 más antiguos: --limit 53 los muestra todos."),
        (
            ["jobs", "--queue", "invoice_processing"],
            "… y 3 más antiguos: --limit 53 los muestra todos.",
        ),
    ):
        lines = cli(capsys, *command, "--config", str(config))[1].splitlines()
        assert len(lines) == 1 + 50 + 1
        assert [line.split()[0] for line in lines[1:3]] == ["53", "52"]
        assert lines[-1] == more
        # As many as asked for, and no more line when none is left.
        lines = cli(capsys, *command, "--config", str(config), "--limit", "53")[1].splitlines()
        assert len(lines) == 1 + 53 and lines[-1].split()[0] == "1"
        # JSON: every row unless told.
        listed = json.loads(cli(capsys, *command, "--config", str(config), "--json")[1])
        assert [row["id"] for row in listed] == list(range(53, 0, -1))
        some = cli(capsys, *command, "--config", str(config), "--json", "--limit", "2")[1]
        assert [row["id"] for row in json.loads(some)] == [53, 52]


def test_an_empty_result_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    take(config, {})  # a ledger, empty
    assert cli(capsys, "invoices", "list", "--config", str(config)) == (
        0,
        "No hay facturas que mostrar.\n",
        "",
    )
    assert cli(capsys, "jobs", "--config", str(config), "--state", "dead", "--lang", "en") == (
        0,
        "No jobs to show.\n",
        "",
    )
    assert cli(capsys, "invoices", "list", "--config", str(config), "--json")[1] == "[]\n"


def test_since_takes_a_day_written_either_way(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    take(config, {"f.xml": invoice(1)})
    # Received today, in the daemon's zone (daemon.timezone).
    today = datetime.now(ZoneInfo("America/Bogota")).date()
    tomorrow = today + timedelta(days=1)
    for day in (today.isoformat(), today.strftime("%d/%m/%Y")):
        out = cli(capsys, "invoices", "list", "--config", str(config), "--since", day)[1]
        assert [line.split()[0] for line in out.splitlines()[1:]] == ["1"]
    for day in (tomorrow.isoformat(), tomorrow.strftime("%d/%m/%Y")):
        out = cli(capsys, "invoices", "list", "--config", str(config), "--since", day)[1]
        assert out == "No hay facturas que mostrar.\n"
    # Issued on 2 November 2026.
    for day, listed in (("02/11/2026", ["1"]), ("2026-11-03", [])):
        args = ("invoices", "list", "--config", str(config), "--issued-since", day)
        out = cli(capsys, *args)[1]
        assert [line.split()[0] for line in out.splitlines()[1:]] == listed

    with pytest.raises(SystemExit) as exited:
        main(["invoices", "list", "--config", str(config), "--since", "11/29/2026"])
    assert exited.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error == (
        "facturasd invoices list: error: argument --since: '11/29/2026' is not a day: "
        "write it 2026-11-29 or 29/11/2026"
    )
    with pytest.raises(SystemExit):
        main(["invoices", "list", "--help"])
    assert "received on or after DAY: 2026-11-29 or 29/11/2026" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command",
    [
        ["run"],
        ["check-config"],
        ["backup"],
        ["inspect"],
        ["jobs"],
        ["reprocess"],
        ["invoices"],
        ["invoices", "list"],
        ["invoices", "show"],
        ["invoices", "assign"],
        ["invoices", "accept"],
        ["invoices", "discard"],
        ["retry"],
    ],
)
def test_every_command_says_it_takes_config(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    assert re.search(r"\n  --config CONFIG\s+configuration file", capsys.readouterr().out)


def test_company_must_be_one_configured(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    take(config, {"f.xml": invoice(1)}, process=False)
    code, out, err = cli(capsys, "invoices", "list", "--config", str(config), "--company", "rg")
    assert (code, out) == (2, "")
    assert err == (
        "facturasd: --company rg: no hay ninguna empresa configurada (se declaran con "
        "[[companies]] en el archivo de configuración)\n"
    )

    with_one = write_config(tmp_path, COMPANY)
    code, out, err = cli(capsys, "invoices", "list", "--config", str(with_one), "--company", "rg")
    assert (code, out) == (2, "")
    assert err == "facturasd: --company rg: no hay tal empresa (empresas: rg-glass)\n"
    code, out, _ = cli(
        capsys, "invoices", "list", "--config", str(with_one), "--company", "rg-glass"
    )
    assert (code, out) == (0, "No hay facturas que mostrar.\n")
