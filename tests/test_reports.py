"""The reports as the office reads them: a ledger filled by the real pipeline (the sandbox's
SAT, DIAN and Alegra over real HTTP) with the shared samples and generated documents; the
daily report's counts and sums, its CSV read back as Excel in Colombia and in Mexico reads
it, its Markdown rendered by a real Markdown library; the monthly tax summary's figures."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import markdown
import pytest

from facturasd.cli import main
from facturasd.reports import write_daily, write_monthly
from facturasd.sandbox.server import load_documents
from facturasd.sandbox.state import DianRecord, Sandbox
from tests.documents import CUSTOMER_NIT, RECEIVER_RFC, Item, cfdi40, co_invoice
from tests.office import Office, known_to_sat, office
from tests.support import REPO, cufe, run_facturasd, take, write_config

SAMPLES = REPO.parent / "shared" / "samples"
ZONE = ZoneInfo("America/Bogota")
# The samples' receivers and the generated documents' as this office's companies: the
# Colombian one withholds, and withholds IVA too (a gran contribuyente, O-13).
COMPANIES = (
    "[[companies]]\nslug = 'rg-glass'\nname = 'RG GLASS S.A.S.'\ncountry = 'CO'\n"
    f"tax_id = '{CUSTOMER_NIT}'\ncity = '11001'\nwithholding_agent = true\n"
    "tax_level_codes = ['O-13']\n"
    "[[companies]]\nslug = 'dim'\nname = 'DAY INTERNATIONAL DE MEXICO SA DE CV'\n"
    "country = 'MX'\ntax_id = 'DIM8701081LA'\n"
    "[[companies]]\nslug = 'mci'\nname = 'MUNICIPIO DE CUAUTITLAN IZCALLI'\ncountry = 'MX'\n"
    "tax_id = 'MCI7306249Y1'\nregime = '603'\npostal_code = '54700'\n"
    "[[companies]]\nslug = 'xyz'\nname = 'RECEPTORA DE PRUEBA'\ncountry = 'MX'\n"
    f"tax_id = '{RECEIVER_RFC}'\nregime = '601'\npostal_code = '06600'\n"
    "[checks]\naccept_test_documents = true\n"
)
CO_UUID = cufe(41)
MX_UUID = "0B7C4A1E-2F3D-4C5B-8A9E-000000000041"
CANCELLED_UUID = "0B7C4A1E-2F3D-4C5B-8A9E-000000000042"
FILES = {
    "FV3.xml": (SAMPLES / "dian" / "siigo-blindacces-FV3.xml").read_bytes(),
    "FV7.xml": (SAMPLES / "dian" / "siigo-blindacces-FV7.xml").read_bytes(),
    "NC3.xml": (SAMPLES / "dian" / "siigo-blindacces-NC3.xml").read_bytes(),
    "cfdi40.xml": (SAMPLES / "cfdi" / "cfdi-expresiones__cfdi40-real.xml").read_bytes(),
    # Issued in November 2026: 100 sacks of cement in Bogotá, and a Mexican service with ISR
    # and IVA withheld.
    "cemento.xml": co_invoice(
        [Item("Cemento", "100", "50000.00", "19")], override={"uuid": CO_UUID}
    ),
    "servicio.xml": cfdi40(
        [Item("Servicio", "1", "10000.00", "16", withholdings=(("001", "10"), ("002", "10.6667")))],
        override={"uuid": MX_UUID},
    ),
    "cancelada.xml": cfdi40(
        [Item("Tornillos", "2", "500.00", "16")], override={"uuid": CANCELLED_UUID}
    ),
    "rechazada.xml": co_invoice(
        [Item("Arena", "1", "1000.00", "19")], override={"uuid": cufe(43), "total": "9999.00"}
    ),
    "basura.xml": b"this is not an invoice",
}


def sandbox() -> Sandbox:
    """SAT and DIAN know every document in force, but the CFDI its supplier cancelled."""
    found = Sandbox()
    load_documents(found, SAMPLES)
    found.dian[CO_UUID] = DianRecord(CO_UUID)
    known_to_sat(found, FILES["servicio.xml"])
    known_to_sat(found, FILES["cancelada.xml"], estado="Cancelado")
    return found


def excel_number(text: str, decimal: str) -> Decimal:
    """A CSV's number as Excel reads it with this decimal mark (the other mark, if any,
    groups thousands)."""
    thousands = "." if decimal == "," else ","
    return Decimal(text.replace(thousands, "").replace(decimal, "."))


def read_csv(path: Path, separator: str) -> list[dict[str, str]]:
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 with BOM: Excel reads the accents
    return list(csv.DictReader(io.StringIO(raw[3:].decode()), delimiter=separator))


def today(o: Office) -> Any:
    return o.clock().astimezone(ZONE).date()


@pytest.mark.anyio
@pytest.mark.slow
async def test_the_daily_report_counts_sums_and_says_what_needs_a_person(tmp_path: Path) -> None:
    async with office(tmp_path, FILES, sandbox(), COMPANIES, alegra=True) as o:
        assert o.services.alegra is not None
        cache = await o.services.alegra.cache.metrics()
        o.clock.now += timedelta(minutes=1)  # the report is written a minute after the work
        written = await write_daily(
            o.services.db,
            o.services.config,
            zone=ZONE,
            day=today(o),
            recommend=lambda lang: ["Suba el TTL de la caché"],
            cache_metrics=cache,
            clock=o.clock,
        )
        ids = dict(o.ids)
    assert written.md.name == f"reporte-{today(o)}.md"
    assert sorted(p.name for p in written.md.parent.iterdir()) == sorted(
        p.name for p in (written.md, written.json, written.csv)
    )  # nothing half-written left beside them
    data = json.loads(written.json.read_text())

    # The counts agree with `invoices list --json` for the same invoices.
    config = tmp_path / "facturasd.toml"
    listing = ("invoices", "list", "--json", "--since", str(today(o)), "--config", str(config))
    listed = json.loads((await anyio.to_thread.run_sync(partial(run_facturasd, *listing))).stdout)
    assert data["counts"]["total"] == len(listed) == len(FILES)
    assert {k: n for k, n in data["counts"]["by_state"].items() if n} == Counter(
        i["state"] for i in listed
    )
    assert {k: n for k, n in data["counts"]["by_compliance"].items() if n} == Counter(
        i["compliance"] for i in listed
    )
    states = {i["original_name"]: i["state"] for i in listed}
    assert states["rechazada.xml"] == "rejected" and states["basura.xml"] == "unreadable"
    assert states["NC3.xml"] == "needs_review"  # Alegra's API books no credit notes

    # Amounts by supplier: FV3 and FV7, less the credit note NC3 (as much as FV7).
    blindacces = [a for a in data["amounts"] if a["currency"] == "COP" and a["invoices"] == 3]
    assert [Decimal(a["total"]) for a in blindacces] == [Decimal("21063000.00")]
    # The CFDI its supplier cancelled is not owed: the service alone, less what is withheld.
    (emisora,) = [a for a in data["amounts"] if a["supplier"] == "EMISORA DE PRUEBA"]
    assert (emisora["invoices"], Decimal(emisora["total"])) == (1, Decimal("9533.33"))

    # What needs a person: the cancelled CFDI, the rejected and unreadable files, the credit
    # note; each with its reason and what to do.
    person = {i["id"]: i for i in data["needs_person"]}
    expected = {ids[n] for n in ("cancelada.xml", "rechazada.xml", "basura.xml", "NC3.xml")}
    assert set(person) == expected
    assert "Cancelado" in person[ids["cancelada.xml"]]["reason"]
    assert f"facturasd retry {ids['cancelada.xml']}" in person[ids["cancelada.xml"]]["todo"]
    assert "9.999,00" in person[ids["rechazada.xml"]]["reason"]  # as a Colombian writes it
    assert all(i["reason"] and i["todo"] for i in person.values())
    assert data["recommendations"] == ["Suba el TTL de la caché"]
    assert data["cache"]["hits"] == cache["hits"]
    assert data["performance"]["received"] == len(FILES)
    assert data["performance"]["latency_seconds"]["checked"]["invoices"] >= 6
    assert "authority:sat" in data["performance"]["error_rate"]
    assert [(a["code"], a["invoice_id"]) for a in data["alerts"]] == [
        ("SAT-INVALID", ids["cancelada.xml"])
    ]

    # The CSV: one row per invoice, as Excel in Colombia (the first company's) reads it.
    rows = read_csv(written.csv, ";")
    assert len(rows) == len(FILES)
    by_uuid = {r["CUFE/UUID"]: r for r in rows}
    fv7 = next(i for i in data["invoices"] if i["file"] == "FV7.xml")
    assert excel_number(by_uuid[fv7["uuid"]]["Total"], ",") == Decimal("20384700.00")
    cemento = by_uuid[CO_UUID]
    assert excel_number(cemento["Subtotal"], ",") == Decimal("5000000.00")
    assert excel_number(cemento["Impuestos"], ",") == Decimal("950000.00")
    # ReteFuente 2.5 %, ReteIVA 15 % of the IVA, ReteICA 11.04 per thousand in Bogotá.
    assert excel_number(cemento["Retenciones"], ",") == Decimal("322700.00")
    assert sum(excel_number(r["Total"], ",") for r in rows if r["Total"]) == sum(
        Decimal(i["total"]) for i in listed if i["total"]
    )
    assert by_uuid[CO_UUID]["Estado"] in ("contabilizada", "revisada")

    # The Markdown renders, its tables included.
    html = markdown.markdown(written.md.read_text(), extensions=["tables"])
    assert html.count("<table>") >= 5
    assert "Lo que necesita una persona" in html and "basura.xml" in html

    # From the command line, in English, with no daemon running: the cache not available.
    command = ("report", "--lang", "en", "--json", "--config", str(config))
    done = await anyio.to_thread.run_sync(partial(run_facturasd, *command))
    md = anyio.Path(json.loads(done.stdout)["md"])
    assert md.name == f"reporte-{today(o)}.md"
    text = await md.read_text()
    assert "What needs a person" in text and "Not available." in text


@pytest.mark.anyio
@pytest.mark.slow
async def test_the_csv_is_written_as_excel_reads_it_in_mexico(tmp_path: Path) -> None:
    mexican = {"servicio.xml": FILES["servicio.xml"]}
    config = (
        "[[companies]]\nslug = 'xyz'\nname = 'RECEPTORA DE PRUEBA'\ncountry = 'MX'\n"
        f"tax_id = '{RECEIVER_RFC}'\nregime = '601'\npostal_code = '06600'\n"
    )
    async with office(tmp_path, mexican, sandbox(), config) as o:
        written = await write_daily(
            o.services.db, o.services.config, zone=ZONE, day=today(o), lang="en", clock=o.clock
        )
    (row,) = read_csv(written.csv, ",")
    assert excel_number(row["Total"], ".") == Decimal("9533.33")  # 10,000 + 1,600 − 2,066.67
    assert excel_number(row["Withholdings"], ".") == Decimal("2066.67")
    assert "Not available." in written.md.read_text()  # no cache figures were given


@pytest.mark.anyio
@pytest.mark.slow
async def test_the_monthly_summary_gives_taxes_and_withholdings_by_rate(tmp_path: Path) -> None:
    async with office(tmp_path, FILES, sandbox(), COMPANIES) as o:
        config = o.services.config
        written = await write_monthly(o.services.db, config, month="2026-11")
        april = await write_monthly(o.services.db, config, month="2026-04", lang="en")
        ids = dict(o.ids)
    assert written.md.name == "resumen-2026-11.md"
    data = json.loads(written.json.read_text())
    companies = {c["company"]: c for c in data["companies"]}
    # The cancelled CFDI is left out; the cement and the service are in.
    assert set(companies) == {"rg-glass", "xyz"}
    co, mx = companies["rg-glass"], companies["xyz"]
    assert [(f["tax"], f["rate"], f["base"], f["amount"]) for f in co["taxes"]] == [
        ("IVA", "19", "5000000.00", "950000.00")
    ]
    assert [
        (f["tax"], f["concept"], f["city"], f["rate"], f["amount"]) for f in co["withholdings"]
    ] == [
        ("ReteFuente", "compras", None, "2.5", "125000.00"),
        ("ReteICA", None, "11001", "1.104", "55200.00"),
        ("ReteIVA", None, None, "15", "142500.00"),
    ]
    assert [(f["tax"], f["rate"], f["amount"]) for f in mx["taxes"]] == [("IVA", "16", "1600.00")]
    assert [(f["tax"], f["rate"], f["amount"]) for f in mx["withholdings"]] == [
        ("ISR", "10", "1000.00"),
        ("IVA", "10.6667", "1066.67"),
    ]
    assert [i["id"] for i in co["withholdings"][0]["invoices"]] == [ids["cemento.xml"]]

    # The invoices behind each figure, in the CSV as Excel in Colombia reads it.
    rows = read_csv(written.csv, ";")
    assert len(rows) == 1 + 3 + 1 + 2  # a row per figure and invoice
    retefuente = [r for r in rows if r["Impuesto"] == "ReteFuente"]
    assert [excel_number(r["Valor"], ",") for r in retefuente] == [Decimal("125000.00")]
    assert [excel_number(r["Tarifa"], ",") for r in retefuente] == [Decimal("2.5")]
    html = markdown.markdown(written.md.read_text(), extensions=["tables"])
    assert "RG GLASS S.A.S." in html and "1.104" not in html  # a Colombian reads 1,104

    # April 2026: the credit note NC3 takes back as much IVA as FV7 charged.
    (april_co,) = json.loads(april.json.read_text())["companies"]
    (iva,) = april_co["taxes"]
    assert Decimal(iva["amount"]) == 0 and len(iva["invoices"]) == 2
    assert {w["tax"] for w in april_co["withholdings"]} == {"ReteFuente", "ReteICA", "ReteIVA"}
    assert "Tax summary of 2026-04" in april.md.read_text()


def test_the_configured_dialect_and_a_name_that_looks_like_a_formula(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`[reports]` csv_separator and csv_decimal win over the company's country; a supplier
    whose name Excel would run as a formula is shown as text."""
    crafted = co_invoice([Item("Cemento", "3", "1000.50", "19")]).replace(
        b"Proveedora de Prueba SAS", b"=HYPERLINK(&quot;http://x.example&quot;)"
    )
    config = write_config(
        tmp_path,
        '[reports]\ncsv_separator = "\\t"\ncsv_decimal = "."\n'
        "[[companies]]\nslug = 'rg-glass'\nname = 'RG GLASS S.A.S.'\ncountry = 'CO'\n"
        f"tax_id = '{CUSTOMER_NIT}'\ncity = '11001'\n",
    )
    take(config, {"crafted.xml": crafted})
    day = datetime.now(ZONE).date()
    assert main(["report", "--date", day.strftime("%d/%m/%Y"), "--config", str(config)]) == 0
    md, _, written = (Path(line) for line in capsys.readouterr().out.splitlines())
    assert written.name == f"reporte-{day}.csv"
    (row,) = read_csv(written, "\t")
    assert row["Proveedor"] == '\'=HYPERLINK("http://x.example")'
    assert excel_number(row["Total"], ".") == Decimal("3571.79")  # 3,001.50 and 19 % IVA
    assert "No disponible." in md.read_text()  # no daemon runs: no cache figures

    assert main(["report", "--to", str(day), "--config", str(config)]) == 2
    assert "--to goes with --from" in capsys.readouterr().err
