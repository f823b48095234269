"""Booking in Alegra as the accountant notices it: each confirmed invoice one supplier bill in
the sandbox's Alegra (over real HTTP), with the document's provider, lines, taxes,
withholdings and file; never two; through outages, 429 storms, an account that cannot book,
and a cache whose Redis goes away."""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from facturasd.alegra.cache import open_cache
from facturasd.config.sections import Cache
from facturasd.constants import ComplianceStatus, InvoiceState
from facturasd.formats.model import WithholdingDue
from facturasd.formats.reader import read
from facturasd.pipeline.review import Review
from facturasd.sandbox.server import load_documents
from facturasd.sandbox.state import Fault, Sandbox
from facturasd.store import compliance, ledger
from facturasd.web.app import create_app
from tests.documents import CUSTOMER_NIT, ISSUER_RFC, Item, cfdi40
from tests.office import Office, cfdi, known_to_sat, office
from tests.support import SAMPLES

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

S = InvoiceState
BOOKED = {
    "cfdi33.xml": SAMPLES / "cfdi" / "cfdi-expresiones__cfdi33-real.xml",
    "cfdi40.xml": SAMPLES / "cfdi" / "cfdi-expresiones__cfdi40-real.xml",
    "FV3.xml": SAMPLES / "dian" / "siigo-blindacces-FV3.xml",
    "FV7.xml": SAMPLES / "dian" / "siigo-blindacces-FV7.xml",
}
NC3 = SAMPLES / "dian" / "siigo-blindacces-NC3.xml"
# The samples' receivers as this office's companies: the Colombian one withholds.
COMPANIES = (
    "[[companies]]\nslug = 'rg-glass'\nname = 'RG GLASS S.A.S.'\ncountry = 'CO'\n"
    f"tax_id = '{CUSTOMER_NIT}'\ncity = '11001'\nwithholding_agent = true\n"
    "[[companies]]\nslug = 'dim'\nname = 'DAY INTERNATIONAL DE MEXICO SA DE CV'\n"
    "country = 'MX'\ntax_id = 'DIM8701081LA'\n"
    "[[companies]]\nslug = 'mci'\nname = 'MUNICIPIO DE CUAUTITLAN IZCALLI'\ncountry = 'MX'\n"
    "tax_id = 'MCI7306249Y1'\nregime = '603'\npostal_code = '54700'\n"
)
CENT = Decimal("0.01")
# The real documents carry SAT's test certificate (accepted so, to be booked here).
TEST_DOCUMENTS = "[checks]\naccept_test_documents = true\n"
UUID8 = "0B7C4A1E-2F3D-4C5B-8A9E-000000000808"


def knowing_samples() -> Sandbox:
    """A sandbox whose SAT and DIAN know every shared sample in force."""
    sandbox = Sandbox()
    load_documents(sandbox, SAMPLES)
    return sandbox


def amount(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(CENT)


async def stats(o: Office) -> dict[str, Any]:
    found: dict[str, Any] = (await o.alegra("GET", "/_admin/stats"))["alegra"]
    return found


async def bill_of(o: Office, name: str) -> dict[str, Any]:
    invoice = await o.invoice(name)
    assert invoice.state is S.BOOKED, (name, invoice.state, await o.history(name))
    assert invoice.alegra_bill_id is not None
    found: dict[str, Any] = await o.alegra("GET", f"/bills/{invoice.alegra_bill_id}")
    return found


async def all_bills(o: Office) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    start = 0
    while True:
        page = await o.alegra("GET", "/bills", params={"start": start, "limit": 30})
        found += page
        if len(page) < 30:
            return found
        start += 30


async def due_of(o: Office, name: str) -> list[Any]:
    """The withholdings the checks computed for the invoice, as the ledger keeps them."""
    found = await o.services.db.read(partial(ledger.inspection, invoice_id=o.ids[name]))
    assert found is not None
    return [WithholdingDue.model_validate(w) for w in found.get("withholdings_due", [])]


def lines_of(bill: dict[str, Any]) -> list[dict[str, Any]]:
    purchases = bill["purchases"]
    return [*purchases.get("categories", []), *purchases.get("items", [])]


async def test_each_sample_becomes_one_bill_with_the_documents_amounts(tmp_path: Path) -> None:
    files = {name: path.read_bytes() for name, path in BOOKED.items()} | {
        "NC3.xml": NC3.read_bytes()
    }
    sandbox = knowing_samples()
    async with office(tmp_path, files, sandbox, COMPANIES, alegra=True) as o:
        for name in BOOKED:
            (inspection,) = read(files[name], name)
            doc = inspection.document
            assert doc is not None
            bill = await bill_of(o, name)
            assert bill["provider"]["identification"] == doc.issuer.tax_id
            # Its lines and taxes add up to the document's: the taxes to its taxes, the bill's
            # total to what the document asks to pay less the withholdings the buyer applies
            # (the lines carry the subtotal, and any local tax Alegra has no tax for).
            due = await due_of(o, name)
            assert amount(bill["tax"]) == amount(doc.totals.taxes)
            assert sum(
                amount(line["price"]) * Decimal(str(line["quantity"])) for line in lines_of(bill)
            ) == amount(bill["subtotal"])
            assert amount(bill["total"]) == amount(doc.totals.total) - sum(
                (amount(w.amount) for w in due), Decimal(0)
            )
            assert doc.uuid is not None and doc.uuid.lower() in bill["observations"].lower()
            # The buyer's withholdings the checks computed, as retentions at their rates.
            assert sorted(
                (Decimal(str(r["percentage"])), amount(r["amount"])) for r in bill["retentions"]
            ) == sorted((Decimal(w.rate), amount(w.amount)) for w in due)
            (attachment,) = bill["attachments"]
            assert attachment["sha256"] == hashlib.sha256(files[name]).hexdigest()
        # FV7's buyer withholds ReteFuente 2.5 % and ReteICA 11.04 per mil: on its bill.
        fv7 = await bill_of(o, "FV7.xml")
        assert sorted(Decimal(str(r["percentage"])) for r in fv7["retentions"]) == [
            Decimal("1.104"),
            Decimal("2.5"),
        ]
        # The credit note is not a bill Alegra's API books: a person enters it.
        nc3 = await o.invoice("NC3.xml")
        assert nc3.state is S.NEEDS_REVIEW
        assert "credit note" in (await o.history("NC3.xml"))[-1]
        # One bill per invoice; the provider looked up and created once per supplier (FV3 and
        # FV7 share theirs: the second makes no look-up).
        bills = await all_bills(o)
        assert len(bills) == len(BOOKED)
        assert Counter(b["provider"]["id"] for b in bills) == Counter(
            {(await bill_of(o, "FV3.xml"))["provider"]["id"]: 2}
        ) + Counter(
            {(await bill_of(o, n))["provider"]["id"]: 1 for n in ("cfdi33.xml", "cfdi40.xml")}
        )
        endpoints = (await stats(o))["by_endpoint"]
        assert endpoints.get("GET /contacts") == 3
        assert endpoints.get("POST /contacts") == 3
        assert endpoints.get("POST /bills") == len(BOOKED)
        # `invoices show --json` carries the bill's id.
        assert (await o.invoice("FV3.xml")).alegra_bill_id == (await bill_of(o, "FV3.xml"))["id"]


async def booked_ids(o: Office) -> set[str]:
    rows = await o.services.db.fetchall(
        "SELECT alegra_bill_id FROM invoices WHERE alegra_bill_id IS NOT NULL"
    )
    return {row["alegra_bill_id"] for row in rows}


def cfdis(count: int, first: int = 100) -> tuple[dict[str, bytes], Sandbox]:
    """`count` CFDIs of one supplier, and a sandbox whose SAT knows them in force."""
    files = {f"cfdi-{n}.xml": cfdi(n) for n in range(first, first + count)}
    sandbox = Sandbox()
    for data in files.values():
        known_to_sat(sandbox, data)
    return files, sandbox


async def test_a_post_with_no_answer_is_looked_up_and_never_posted_twice(tmp_path: Path) -> None:
    """Alegra creates the bill but its answer never comes (the case of a crash between the
    POST and the commit): the invoice stays `booking`, its job back uncounted; the next try
    looks the bill up first, finds it and links it, with no second POST."""
    files, sandbox = cfdis(1)
    (name,) = files
    async with office(tmp_path, {}, sandbox, '[alegra]\ntimeout = "1s"\n', alegra=True) as o:
        await o.alegra(
            "POST",
            "/_admin/faults",
            json={"service": "alegra", "hold_ms": 3000, "endpoint": "POST /bills"},
        )
        await o.take(files)
        invoice = await o.invoice(name)
        assert invoice.state is S.BOOKING
        job = await o.job(name, "book")
        assert job is not None and job["attempts"] == 0
        assert len(await all_bills(o)) == 1  # posted: its answer was held past the timeout
        await o.alegra("DELETE", "/_admin/faults")
        await o.until(job["run_at"])
        bill = await bill_of(o, name)
        assert len(await all_bills(o)) == 1
        assert (await stats(o))["by_endpoint"]["POST /bills"] == 1
        assert any("found in Alegra" in reason for reason in await o.history(name))
        assert bill["attachments"]


async def test_alegra_down_half_an_hour_delays_the_bookings_and_loses_none(
    tmp_path: Path,
) -> None:
    files, sandbox = cfdis(8)
    first = dict(list(files.items())[:1])
    rest = dict(list(files.items())[1:])
    async with office(tmp_path, first, sandbox, alegra=True) as o:
        assert (await o.invoice(next(iter(first)))).state is S.BOOKED  # the cache is warm
        sandbox.faults["alegra"] = Fault(status=503)
        await o.take(rest)
        start = o.clock()
        for minute in range(1, 31):
            await o.until((start + timedelta(minutes=minute)).timestamp())
        for name in rest:
            assert (await o.invoice(name)).state in (S.CHECKED, S.BOOKING)
            job = await o.job(name, "book")
            assert job is not None and job["attempts"] == 0  # an outage counts no attempt
        # The circuit paced the calls: a handful per cool-down, not one per invoice a minute.
        assert (await stats(o))["by_outcome"].get("fault", 0) < 30
        health = await o.health()
        assert health["checks"]["alegra:booking"][0]["status"] == "warn"
        sandbox.faults.clear()
        await o.until((start + timedelta(minutes=45)).timestamp())
        for name in files:
            assert (await o.invoice(name)).state is S.BOOKED, await o.history(name)
        assert len(await all_bills(o)) == len(files) == len(await booked_ids(o))


async def test_a_429_storm_completes_without_a_request_over_the_limit(tmp_path: Path) -> None:
    """A third of Alegra's answers are 429 and the account allows 5 requests a second (a
    minute's 150, scaled down to keep the test short): every invoice is booked, and the
    server never saw its limit passed."""
    files, sandbox = cfdis(12)
    sandbox.alegra.rate, sandbox.alegra.window = 5, 1.0
    sandbox.faults["alegra"] = Fault(status=429, rate=0.3, retry_after=0.2)
    async with office(tmp_path, {}, sandbox, '[alegra]\nrate_limit = "5/s"\n', alegra=True) as o:
        await o.take(files)
        for _ in range(60):
            if {(await o.invoice(n)).state for n in files} == {S.BOOKED}:
                break
            await o.until((o.clock() + timedelta(seconds=30)).timestamp())
        assert {(await o.invoice(n)).state for n in files} == {S.BOOKED}
        figures = await stats(o)
        assert figures["by_outcome"]["fault"] > 0
        assert figures["limited"] == 0
        assert figures["peak_per_window"] <= 5
        # The test's own listing is not part of the storm: no faults, and no window that the
        # daemon's last requests may have filled.
        sandbox.faults.clear()
        sandbox.alegra.rate = 1000
        assert len(await all_bills(o)) == len(files)


async def test_an_account_that_cannot_book_pauses_with_one_alert_and_resumes_by_itself(
    tmp_path: Path,
) -> None:
    files, sandbox = cfdis(4)
    async with office(tmp_path, {}, sandbox, alegra=True) as o:
        await o.alegra("POST", "/_admin/alegra/account", json={"block": 900})
        await o.take(files)
        alerts = await compliance.alerts(o.services.db)
        assert [(a.severity, a.code) for a in alerts] == [("critical", "ALEGRA-ACCOUNT")]
        assert "límite" in alerts[0].params["said"]
        health = await o.health()
        (check,) = health["checks"]["alegra:booking"]
        assert check["status"] == "warn" and check["paused"] is True
        for name in files:
            job = await o.job(name, "book")
            assert job is not None and job["attempts"] == 0
        # Still blocked at the probe: still paused, still one alert.
        await o.until((o.clock() + timedelta(minutes=6)).timestamp())
        assert len(await compliance.alerts(o.services.db)) == 1
        await o.alegra("POST", "/_admin/alegra/account", json={"block": None})
        await o.until((o.clock() + timedelta(minutes=6)).timestamp())
        assert {(await o.invoice(n)).state for n in files} == {S.BOOKED}
        (check,) = (await o.health())["checks"]["alegra:booking"]
        assert check["status"] == "pass"


async def test_a_rate_alegra_lacks_waits_for_a_person_and_retry_books_it(tmp_path: Path) -> None:
    data = cfdi40([Item("Producto al 8 %", "1", "100.00", "8")], override={"uuid": UUID8})
    sandbox = Sandbox()
    known_to_sat(sandbox, data)
    async with office(tmp_path, {}, sandbox, alegra=True) as o:
        taxes = await o.alegra("GET", "/taxes")
        eight = next(t for t in taxes if Decimal(t["percentage"]) == 8 and t["type"] == "IVA")
        await o.alegra("DELETE", f"/_admin/alegra/taxes/{eight['id']}")
        await o.take({"ocho.xml": data})
        invoice = await o.invoice("ocho.xml")
        assert invoice.state is S.NEEDS_REVIEW
        assert "IVA" in (await o.history("ocho.xml"))[-1]
        assert "8" in (await o.history("ocho.xml"))[-1]
        assert await all_bills(o) == []
        # A person adds the tax in Alegra, then asks to book again: Alegra's taxes are read
        # afresh (the refusal made the cache forget them).
        await o.alegra("POST", "/_admin/alegra/taxes/80", json={**eight, "id": "80"})
        review = Review(o.services.db, o.services.lifecycle, (), "ana", clock=o.clock)
        was, what = await review.ask_again(o.ids["ocho.xml"], "IVA 8 % added in Alegra")
        assert what == "booking_again" and was.state is S.NEEDS_REVIEW
        await o.settle()
        bill = await bill_of(o, "ocho.xml")
        assert [t["id"] for line in lines_of(bill) for t in line["tax"]] == ["80"]
        # Already VALIDATED: SAT is not asked again.
        assert o.requests("sat") == 1


async def test_an_edit_in_alegra_reaches_the_next_booking_through_its_webhook(
    tmp_path: Path,
) -> None:
    files, sandbox = cfdis(2, first=300)
    one, two = files
    hooks_server: TestServer | None = None
    async with office(tmp_path, {}, sandbox, alegra=True) as o:
        alegra = o.services.alegra
        assert alegra is not None
        hooks_server = TestServer(create_app(o.services.health, alegra.hooks), host="127.0.0.1")
        await hooks_server.start_server()
        try:
            alegra.hooks.public_url = str(hooks_server.make_url("")).rstrip("/")
            assert await alegra.hooks.subscribe() == 6
            await o.take({one: files[one]})
            first = await bill_of(o, one)
            provider = first["provider"]["id"]
            # Someone in Alegra changes the contact's identification: it is no longer this
            # supplier. The webhook makes the cache forget it.
            answer = await o.alegra(
                "POST",
                f"/_admin/alegra/contacts/{provider}",
                json={"identification": "XAXX010101000"},
            )
            assert answer["delivered"] == 1
            await o.take({two: files[two]})
            second = await bill_of(o, two)
            assert second["provider"]["id"] != provider
            assert (await stats(o))["by_endpoint"]["GET /contacts"] == 2
            # The other payload shape is understood too.
            answer = await o.alegra(
                "POST",
                f"/_admin/alegra/contacts/{second['provider']['id']}?shape=data",
                json={"name": "Otro nombre"},
            )
            assert answer["delivered"] == 1
            assert alegra.hooks.received == 2
            await alegra.hooks.unsubscribe()
            assert await o.alegra("GET", "/webhooks/subscriptions") == []
        finally:
            await hooks_server.close()


async def test_bookings_go_on_when_redis_stops(tmp_path: Path, redis_server: Any) -> None:
    files, sandbox = cfdis(4, first=400)
    names = list(files)
    settings = Cache(backend="redis", url=redis_server.url)
    async with (
        open_cache(settings) as cache,
        office(tmp_path, {}, sandbox, alegra=True, cache=cache) as o,
    ):
        await o.take({names[0]: files[names[0]]})
        assert (await o.invoice(names[0])).state is S.BOOKED
        redis_server.stop()
        await o.take({name: files[name] for name in names[1:]})
        assert {(await o.invoice(n)).state for n in names} == {S.BOOKED}
        assert (await cache.metrics())["errors"] > 0
        assert len(await all_bills(o)) == len(names)


async def test_a_payment_complement_is_not_booked(tmp_path: Path) -> None:
    name = "satcfdi__pago_h-and-e951128469_ingreso_iva16.xml"
    data = (SAMPLES / "cfdi" / name).read_bytes()
    sandbox = knowing_samples()
    async with office(tmp_path, {name: data}, sandbox, TEST_DOCUMENTS, alegra=True) as o:
        invoice = await o.invoice(name)
        assert invoice.state is S.CHECKED, await o.history(name)
        assert invoice.compliance is ComplianceStatus.VALIDATED
        assert "not booked: a payment complement" in (await o.history(name))[-1]
        assert await all_bills(o) == []
        # The sweep leaves it be.
        assert await o.services.alegra.booking.sweep() == 0  # type: ignore[union-attr]


@pytest.mark.parametrize("in_alegra", [True, False])
async def test_a_booking_that_cannot_tell_waits_for_a_person_who_settles_it(
    tmp_path: Path, in_alegra: bool
) -> None:
    """Its POST got no answer, and a hundred bills (none of them ours) came after it: the
    look-up cannot tell whether Alegra has its bill, so a person is asked rather than risk a
    second one. The person looks in Alegra and links the bill found, or says there is none."""
    files, sandbox = cfdis(1, first=500)
    (name,) = files
    async with office(tmp_path, {}, sandbox, alegra=True) as o:
        sandbox.faults["alegra"] = Fault(status=503, endpoint="POST /bills")
        await o.take(files)
        assert (await o.invoice(name)).state is S.BOOKING
        sandbox.faults.clear()
        for n in range(100):
            await o.alegra("POST", f"/_admin/alegra/bills/{9000 + n}", json={"observations": "x"})
        job = await o.job(name, "book")
        assert job is not None
        await o.until(job["run_at"])
        assert (await o.invoice(name)).state is S.NEEDS_REVIEW
        assert "may already be booked" in (await o.history(name))[-1]
        review = Review(o.services.db, o.services.lifecycle, (), "ana", clock=o.clock)
        if in_alegra:
            await review.settle_bill(o.ids[name], "9042", "found it by its UUID")
            await o.settle()
            invoice = await o.invoice(name)
            assert invoice.state is S.BOOKED and invoice.alegra_bill_id == "9042"
            assert (await o.alegra("GET", "/bills/9042"))["attachments"]
            assert (await stats(o))["by_endpoint"].get("POST /bills", 0) == 0
        else:
            await review.settle_bill(o.ids[name], None, "no bill carries its UUID")
            await o.settle()
            bill = await bill_of(o, name)
            assert (await stats(o))["by_endpoint"]["POST /bills"] == 1
            assert bill["id"] not in {str(9000 + n) for n in range(100)}
        assert "ana" in [event.actor for event in await ledger.events(o.services.db, o.ids[name])]


async def test_import_mode_books_by_cufe_and_links_a_bill_imported_by_hand(
    tmp_path: Path,
) -> None:
    """Colombia's `alegra.mode = "import"`: Alegra fetches each invoice by its CUFE. One
    someone had imported by hand already (11108: the UUID is on a bill) is linked to that
    bill, not imported twice."""
    names = {"FV3.xml": BOOKED["FV3.xml"], "FV7.xml": BOOKED["FV7.xml"], "NC3.xml": NC3}
    files = {name: path.read_bytes() for name, path in names.items()}
    sandbox = knowing_samples()
    (fv3,) = read(files["FV3.xml"], "FV3.xml")
    assert fv3.document is not None and fv3.document.uuid
    config = COMPANIES + '[alegra]\nmode = "import"\n'
    async with office(tmp_path, {}, sandbox, config, alegra=True) as o:
        by_hand = await o.alegra("POST", "/bills/import-by-cufe", json={"cufe": fv3.document.uuid})
        await o.take(files)
        assert (await bill_of(o, "FV3.xml"))["id"] == by_hand["id"]
        assert any("found in Alegra" in reason for reason in await o.history("FV3.xml"))
        fv7 = await bill_of(o, "FV7.xml")
        assert fv7["cufe"]
        assert (await o.invoice("NC3.xml")).state is S.NEEDS_REVIEW
        assert len(await all_bills(o)) == 2
        assert (await stats(o))["by_endpoint"].get("POST /bills", 0) == 0


@pytest.mark.parametrize(("currency", "booked"), [("USD", True), ("EUR", False)])
async def test_a_foreign_currency_is_booked_as_it_is_or_goes_to_a_person(
    tmp_path: Path, currency: str, booked: bool
) -> None:
    """Never converted silently: booked in the invoice's currency where Alegra has it
    enabled (the local one: COP, MXN, USD), else Alegra's refusal, naming it, for a person."""
    data = cfdi40(
        [Item("Servicio", "1", "100.00", "16")],
        override={"uuid": f"0B7C4A1E-2F3D-4C5B-8A9E-{len(currency) + ord(currency[0]):012X}"},
    ).replace(b'Moneda="MXN"', f'Moneda="{currency}" TipoCambio="18.25"'.encode())
    sandbox = Sandbox()
    known_to_sat(sandbox, data)
    async with office(tmp_path, {"extranjera.xml": data}, sandbox, alegra=True) as o:
        if booked:
            bill = await bill_of(o, "extranjera.xml")
            assert bill["currency"]["code"] == currency
            assert amount(bill["total"]) == Decimal("116.00")
        else:
            assert (await o.invoice("extranjera.xml")).state is S.NEEDS_REVIEW
            reason = (await o.history("extranjera.xml"))[-1]
            assert "Alegra refused the bill" in reason and currency in reason
            assert await all_bills(o) == []


@pytest.mark.parametrize("made", [True, False])
async def test_3051_is_looked_up_and_never_posted_again(tmp_path: Path, made: bool) -> None:
    """Alegra's 3051 says a bill may exist: looked up, linked if it does; if it does not, a
    person is asked (it is never posted a second time)."""
    files, sandbox = cfdis(1, first=600)
    (name,) = files
    sandbox.faults["alegra"] = Fault(status=400, code=3051, act=made, endpoint="POST /bills")
    async with office(tmp_path, files, sandbox, alegra=True) as o:
        posted = (await stats(o))["by_endpoint"].get("POST /bills", 0)
        if made:
            assert posted == 1
            bill = await bill_of(o, name)
            assert any("3051" in reason for reason in await o.history(name))
            assert [b["id"] for b in await all_bills(o)] == [bill["id"]]
        else:
            assert posted == 0
            assert (await o.invoice(name)).state is S.NEEDS_REVIEW
            assert "check it in Alegra" in (await o.history(name))[-1]
            sandbox.faults.clear()
            review = Review(o.services.db, o.services.lifecycle, (), "ana", clock=o.clock)
            await review.ask_again(o.ids[name], "looked again")  # still not posted blind
            await o.settle()
            assert (await o.invoice(name)).state is S.NEEDS_REVIEW
            assert (await stats(o))["by_endpoint"].get("POST /bills", 0) == 0


async def test_items_mode_books_lines_on_items_made_once(tmp_path: Path) -> None:
    data = [
        cfdi40(
            [Item("Servicio de limpieza", "2", "50.00", "16"), Item("Producto", "1", "10.00", "0")],
            override={"uuid": f"0B7C4A1E-2F3D-4C5B-8A9E-{700 + n:012X}"},
        )
        for n in range(2)
    ]
    files = {f"item-{n}.xml": d for n, d in enumerate(data)}
    sandbox = Sandbox()
    for d in data:
        known_to_sat(sandbox, d)
    async with office(tmp_path, files, sandbox, '[alegra]\nlines = "items"\n', alegra=True) as o:
        items = {i["name"]: i["id"] for i in await o.alegra("GET", "/items")}
        for name in files:
            bill = await bill_of(o, name)
            lines = bill["purchases"]["items"]
            assert {line["id"] for line in lines} == {
                items["Servicio de limpieza"],
                items["Producto"],  # the seeded item, found by its name
            }
            assert amount(bill["tax"]) == Decimal("16.00")
        assert (await stats(o))["by_endpoint"].get("POST /items") == 1  # made once


async def test_warm_up_loads_what_alegra_has_so_bookings_make_no_look_up(tmp_path: Path) -> None:
    files, sandbox = cfdis(3, first=800)
    async with office(tmp_path, {}, sandbox, alegra=True) as o:
        await o.alegra(
            "POST",
            "/contacts",
            json={"name": "EMISORA", "identification": ISSUER_RFC, "type": ["provider"]},
        )
        alegra = o.services.alegra
        assert alegra is not None
        loaded = await alegra.books[None].directory.warm_up()
        assert loaded["contacts"] == 1 and loaded["taxes"] > 0 and loaded["accounts"] > 0
        before = dict((await stats(o))["by_endpoint"])
        await o.take(files)
        after = (await stats(o))["by_endpoint"]
        for endpoint in ("GET /contacts", "POST /contacts", "GET /taxes", "GET /categories"):
            assert after.get(endpoint, 0) == before.get(endpoint, 0), endpoint
        assert after["POST /bills"] == len(files)


async def test_a_rebuilt_ledgers_invoice_is_looked_up_before_it_is_posted(tmp_path: Path) -> None:
    """The ledger was lost and rebuilt: its invoices' bills may exist from before. One is
    found and linked; one Alegra does not have is posted."""
    files, sandbox = cfdis(2, first=900)
    old, new = files
    async with office(tmp_path, {}, sandbox, alegra=True) as o:
        (inspection,) = read(files[old], old)
        assert inspection.document is not None and inspection.document.uuid
        before = await o.alegra(
            "POST",
            "/_admin/alegra/bills/77",
            json={"observations": f"Factura · UUID {inspection.document.uuid.lower()}"},
        )
        sandbox.faults["sat"] = Fault(status=503)  # held at the authority meanwhile
        await o.take(files)

        def rebuilt(conn: Any) -> None:
            for name in files:
                ledger.event(conn, o.ids[name], 0.0, None, "facturasd", f"{ledger.REBUILT}x")

        await o.services.db.write(rebuilt)
        sandbox.faults.clear()
        await o.until((o.clock() + timedelta(minutes=6)).timestamp())
        assert (await bill_of(o, old))["id"] == before["object"]["id"] == "77"
        assert (await bill_of(o, new))["id"] != "77"
        assert (await stats(o))["by_endpoint"]["POST /bills"] == 1


async def test_a_company_books_on_its_own_accounts(tmp_path: Path) -> None:
    """`[alegra.companies.<slug>]`: one company's lines on its default account, a rule by
    keyword for the other's (accents and case ignored); the rest on Alegra's first expense
    account."""
    names = {"cfdi33.xml": BOOKED["cfdi33.xml"], "cfdi40.xml": BOOKED["cfdi40.xml"]}
    files = {name: path.read_bytes() for name, path in names.items()}
    sandbox = knowing_samples()
    config = COMPANIES + (
        "[alegra.companies.dim]\ndefault_account = '5135'\n"
        "[[alegra.account_rules]]\nkeyword = 'vías y áreas públicas'\naccount = 'Gastos legales'\n"
    )
    async with office(tmp_path, files, sandbox, config, alegra=True) as o:
        # (the global rule matches none of DIM's lines: its own default takes them all)
        assert {line["id"] for line in lines_of(await bill_of(o, "cfdi33.xml"))} == {"5135"}
        # "BOLETOS USO DE VIAS Y AREAS PUBLICAS …" matches the rule, accents or not.
        assert [line["id"] for line in lines_of(await bill_of(o, "cfdi40.xml"))] == ["5140"]


async def test_an_rfc_with_an_ampersand_is_one_provider(tmp_path: Path) -> None:
    """The real stamped CFDI whose issuer RFC has an `&` (signed with SAT's test certificate,
    so accepted as a test document here): its provider is found again by that RFC."""
    name = "satcfdi__h-and-e951128469_ingreso_iva16_stamped.xml"
    data = (SAMPLES / "cfdi" / name).read_bytes()
    sandbox = knowing_samples()
    async with office(tmp_path, {name: data}, sandbox, TEST_DOCUMENTS, alegra=True) as o:
        bill = await bill_of(o, name)
        assert bill["provider"]["identification"] == "H&E951128469"
        contacts = await o.alegra("GET", "/contacts", params={"identification": "H&E951128469"})
        assert [c["id"] for c in contacts] == [bill["provider"]["id"]]
