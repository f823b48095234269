"""Booking in Alegra as the accountant notices it: each confirmed invoice one supplier bill in
the sandbox's Alegra (over real HTTP), with the document's provider, lines, taxes,
withholdings and file; never two; through outages, 429 storms, an account that cannot book,
and a cache whose Redis goes away."""

from __future__ import annotations

import hashlib
from collections import Counter
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp.test_utils import TestServer

from facturasd.alegra.cache import open_cache
from facturasd.config.sections import Cache
from facturasd.constants import ComplianceStatus, InvoiceState
from facturasd.formats.model import WithholdingDue
from facturasd.formats.reader import read
from facturasd.pipeline.review import Review
from facturasd.sandbox.server import load_documents
from facturasd.sandbox.state import Sandbox
from facturasd.store import bookings, ledger
from facturasd.web.app import create_app
from tests.documents import CUSTOMER_NIT, SUPPLIER_NIT, Item, co_invoice, cfdi40
from tests.office import Office, office
from tests.support import REPO

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

S = InvoiceState
SAMPLES = REPO.parent / "shared" / "samples"
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
    "[[companies]]\nslug = 'dim'\nname = 'DIM'\ncountry = 'MX'\ntax_id = 'DIM8701081LA'\n"
    "[[companies]]\nslug = 'mci'\nname = 'MCI'\ncountry = 'MX'\ntax_id = 'MCI7306249Y1'\n"
)
CENT = Decimal("0.01")


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
    files = {name: path.read_bytes() for name, path in BOOKED.items()} | {"NC3.xml": NC3.read_bytes()}
    sandbox = Sandbox()
    load_documents(sandbox, SAMPLES)
    async with office(tmp_path, files, sandbox, COMPANIES, alegra=True) as o:
        for name in BOOKED:
            (inspection,) = read(files[name], name)
            doc = inspection.document
            assert doc is not None
            bill = await bill_of(o, name)
            assert bill["provider"]["identification"] == doc.issuer.tax_id
            lines = lines_of(bill)
            subtotal = amount(doc.totals.subtotal) - amount(doc.totals.discount or 0)
            assert sum(amount(line["price"]) * Decimal(str(line["quantity"])) for line in lines) == subtotal
            assert amount(bill["subtotal"]) == subtotal
            assert amount(bill["tax"]) == amount(doc.totals.taxes)
            assert doc.uuid is not None and doc.uuid.lower() in bill["observations"].lower()
            # The buyer's withholdings the checks computed, as retentions at their rates.
            assert sorted(
                (Decimal(str(r["percentage"])), amount(r["amount"])) for r in bill["retentions"]
            ) == sorted((Decimal(w.rate), amount(w.amount)) for w in await due_of(o, name))
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
