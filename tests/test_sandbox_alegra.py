"""The sandbox's Alegra server, over real HTTP: what a client of Alegra's API v1 sees (auth,
lists, bills and their arithmetic, import by CUFE, attachments, the limiter, webhooks, account
blocks, faults) and, as a subprocess, its snapshot across a restart."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from hashlib import sha256
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from facturasd.formats.reader import read
from facturasd.sandbox.server import create_app, load_documents
from facturasd.sandbox.state import ALEGRA_TOKEN, ALEGRA_USER, Alegra, Sandbox
from tests.support import REPO, SandboxProcess

DIAN_SAMPLES = REPO.parent / "shared" / "samples" / "dian"
FV3 = DIAN_SAMPLES / "siigo-blindacces-FV3.xml"
FV7 = DIAN_SAMPLES / "siigo-blindacces-FV7.xml"


@dataclass
class Local:
    sandbox: Sandbox
    api: httpx.AsyncClient  # Alegra's API as the account's user
    admin: httpx.AsyncClient  # the sandbox's root, no credentials

    async def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = await self.api.request(method, path, **kwargs)
        assert response.status_code == status, response.text
        return response.json()

    async def refused(self, method: str, path: str, status: int, **kwargs: Any) -> Any:
        """The JSON error body of a refused request, after checking its status."""
        response = await self.api.request(method, path, **kwargs)
        assert response.status_code == status, response.text
        body = response.json()
        assert set(body) == {"code", "message"}, body
        return body

    async def provider(self, name: str = "Proveedor SAS", identification: str = "900123456") -> str:
        body = {"name": name, "identification": identification, "type": "provider"}
        contact = await self.ok("POST", "/contacts", 201, json=body)
        return str(contact["id"])


@asynccontextmanager
async def serving(rate: int = 150, documents: Path | None = None) -> AsyncIterator[Local]:
    """The sandbox on a real port, its Alegra account as seeded, allowing `rate` a minute."""
    sandbox = Sandbox(alegra=Alegra(rate=rate))
    if documents is not None:
        load_documents(sandbox, documents)
    server = TestServer(create_app(sandbox), host="127.0.0.1")
    await server.start_server()
    root = str(server.make_url("")).rstrip("/")
    try:
        async with (
            httpx.AsyncClient(
                base_url=f"{root}/alegra/api/v1", auth=(ALEGRA_USER, ALEGRA_TOKEN), timeout=10
            ) as api,
            httpx.AsyncClient(base_url=root, timeout=10) as admin,
        ):
            yield Local(sandbox, api, admin)
    finally:
        await server.close()


@pytest.fixture
async def local() -> AsyncIterator[Local]:
    async with serving(documents=DIAN_SAMPLES) as found:
        yield found


def cufe(path: Path) -> str:
    (inspection,) = read(path.read_bytes(), path.name)
    assert inspection.document is not None and inspection.document.uuid is not None
    return inspection.document.uuid


@pytest.mark.anyio
async def test_only_the_accounts_user_and_token_are_served(local: Local) -> None:
    for auth in (None, (ALEGRA_USER, "otro"), ("otro@ejemplo.com", ALEGRA_TOKEN)):
        response = await local.admin.get("/alegra/api/v1/contacts", auth=auth)
        assert response.status_code == 401
        assert response.json()["code"] == 401
    assert await local.ok("GET", "/contacts") == []


@pytest.mark.anyio
async def test_lists_come_in_pages_of_at_most_thirty(local: Local) -> None:
    for n in range(1, 36):
        await local.provider(f"Proveedor {n:02d}", f"9000{n:02d}")
    first = await local.ok("GET", "/contacts")
    assert [c["id"] for c in first] == [str(n) for n in range(1, 31)]
    rest = await local.ok("GET", "/contacts", params={"start": 30, "metadata": "true"})
    assert rest["metadata"] == {"total": 35}
    assert [c["id"] for c in rest["data"]] == ["31", "32", "33", "34", "35"]
    # Ids are compared as numbers: "35" before "9" going down.
    newest = await local.ok("GET", "/contacts", params={"order_direction": "DESC", "limit": 3})
    assert [c["id"] for c in newest] == ["35", "34", "33"]
    by_name = await local.ok("GET", "/contacts", params={"order_field": "name", "limit": 1})
    assert by_name[0]["name"] == "Proveedor 01"
    for params in ({"limit": 31}, {"limit": 0}, {"start": -1}, {"start": "x"}):
        assert (await local.refused("GET", "/contacts", 400, params=params))["code"] == 903


def expense_leaves(tree: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The expense accounts without subaccounts of a GET /categories tree, in its order."""
    for category in tree:
        if category["type"] == "expense" and not category["children"]:
            yield category
        yield from expense_leaves(category["children"])


@pytest.mark.anyio
async def test_the_seeded_chart_taxes_retentions_and_items(local: Local) -> None:
    tree = await local.ok("GET", "/categories")
    assert {c["type"] for c in tree} >= {"asset", "liability", "equity", "income", "expense"}
    leaves = list(expense_leaves(tree))
    assert (leaves[0]["id"], leaves[0]["name"]) == ("5105", "Compras y gastos generales")
    assert {c["name"] for c in leaves} >= {"Servicios", "Gastos legales", "Diversos"}
    group = await local.ok("GET", "/categories/51")
    assert [c["id"] for c in group["children"]][:2] == ["5105", "5135"]
    taxes = {(t["type"], t["percentage"]) for t in await local.ok("GET", "/taxes")}
    assert taxes == {
        ("IVA", "19.00"),
        ("IVA", "5.00"),
        ("IVA", "0.00"),
        ("ICO", "8.00"),
        ("IVA", "16.00"),
        ("IVA", "8.00"),
    }
    retentions = await local.ok("GET", "/retentions")
    assert len(retentions) == 19
    assert ("ICA", "1.104") in {(r["type"], r["percentage"]) for r in retentions}
    assert [i["name"] for i in await local.ok("GET", "/items")] == ["Servicio", "Producto"]
    assert (await local.refused("GET", "/taxes/99", 404))["code"] == 404


@pytest.mark.anyio
async def test_contacts_found_by_identification_may_be_several(local: Local) -> None:
    await local.provider("Uno SAS", "900.123.456")
    await local.provider("Uno SAS con dígito", "900123456-7")
    await local.provider("Otro", "9001234")
    await local.ok(
        "POST", "/contacts", 201, json={"name": "Cliente", "identification": "9001234567"}
    )
    found = await local.ok("GET", "/contacts", params={"identification": "900-123-456"})
    assert [c["name"] for c in found] == ["Uno SAS", "Uno SAS con dígito", "Cliente"]
    providers = await local.ok(
        "GET", "/contacts", params={"identification": "900123456", "type": "provider"}
    )
    assert [c["name"] for c in providers] == ["Uno SAS", "Uno SAS con dígito"]
    assert len(await local.ok("GET", "/contacts", params={"query": "dígito"})) == 1


def bill_body(contact: str, **changes: Any) -> dict[str, Any]:
    """A POST /bills body for the provider `contact`, with `changes` set over it."""
    body: dict[str, Any] = {
        "date": "2026-03-17",
        "dueDate": "2026-04-30",
        "provider": {"id": contact},
        "purchases": {
            "categories": [
                {"id": "5105", "price": "100.50", "quantity": 3, "tax": [{"id": "1"}]},
                {"id": "5135", "price": 0.333, "quantity": "1", "tax": [], "observations": "x"},
            ],
            "items": [{"id": "1", "price": 1000, "quantity": 1, "tax": [{"id": "2"}]}],
        },
        "retentions": [{"id": "4"}, {"id": "14", "amount": "1.10"}],
        "observations": "FV3",
    }
    return body | changes


@pytest.mark.anyio
async def test_a_bill_is_computed_and_kept(local: Local) -> None:
    bill = await local.ok("POST", "/bills", 201, json=bill_body(await local.provider()))
    # 301.50 + 0.333 + 1000 = 1301.833 -> 1301.83; IVA 19% of 301.50 = 57.285 -> 57.29 (half
    # up), IVA 5% of 1000 = 50; ReteFuente 2.5% of 1301.83 = 32.54575 -> 32.55, ReteICA sent.
    assert (bill["subtotal"], bill["tax"], bill["retention"]) == (1301.83, 107.29, 33.65)
    assert Decimal(str(bill["total"])) == Decimal("1301.83") + Decimal("107.29") - Decimal("33.65")
    first = bill["purchases"]["categories"][0]
    assert first["tax"] == [{"id": "1", "name": "IVA 19%", "percentage": "19.00", "amount": 57.29}]
    assert (first["name"], first["total"]) == ("Compras y gastos generales", 358.79)
    assert bill["provider"] == {"id": "1", "name": "Proveedor SAS", "identification": "900123456"}
    assert (bill["status"], bill["cufe"], bill["attachments"]) == ("open", None, [])
    assert bill["currency"] == {"code": "COP", "exchangeRate": 1}
    assert await local.ok("GET", f"/bills/{bill['id']}") == bill
    assert (await local.refused("GET", "/bills/99", 404))["code"] == 11110
    listed = await local.ok("GET", "/bills", params={"status": "open,paid", "metadata": "true"})
    assert listed["metadata"]["total"] == 1
    assert await local.ok("GET", "/bills", params={"status": "void"}) == []


@pytest.mark.anyio
async def test_a_bill_is_refused_naming_what_is_wrong(local: Local) -> None:
    provider = await local.provider()
    line = {"id": "5105", "price": 10, "quantity": 1}

    async def refused(body: dict[str, Any]) -> tuple[int, str]:
        found = await local.refused("POST", "/bills", 400, json=body)
        return found["code"], found["message"]

    assert (await refused(bill_body(provider, provider=None)))[0] == 11004
    assert (await refused(bill_body(provider, provider={"id": "77"})))[0] == 11004
    assert (await refused(bill_body(provider, purchases={"categories": []})))[0] == 11040
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"purchases": {"categories": [line | {"tax": [{"id": "66"}]}]}}, 12012, "66"),
        ({"purchases": {"categories": [line | {"id": "51"}]}}, 12010, "51"),
        ({"purchases": {"categories": [line | {"id": "1105"}]}}, 12010, "1105"),
        ({"purchases": {"items": [line | {"id": "9"}]}}, 12011, "9"),
        ({"retentions": [{"id": "88"}]}, 12013, "88"),
        ({"date": "17/03/2026"}, 12014, "17/03/2026"),
        ({"purchases": {"categories": [line | {"price": -5}]}}, 12015, "-5"),
        ({"purchases": {"categories": [line | {"quantity": "dos"}]}}, 12015, "dos"),
        ({"currency": {"code": "EUR", "exchangeRate": 4300}}, 12016, "EUR"),
    ]
    for change, code, named in cases:
        found_code, message = await refused(bill_body(provider, **change))
        assert (found_code, named in message) == (code, True), message
    # What was refused was not kept, and the next bill takes the next id.
    assert await local.ok("GET", "/bills") == []
    usd = {"currency": {"code": "USD", "exchangeRate": "3950.5"}}
    bill = await local.ok("POST", "/bills", 201, json=bill_body(provider, **usd))
    assert (bill["id"], bill["currency"]) == ("1", {"code": "USD", "exchangeRate": 3950.5})


@pytest.mark.anyio
async def test_import_by_cufe_books_a_loaded_document_once(local: Local) -> None:
    bill = await local.ok("POST", "/bills/import-by-cufe", 201, json={"cufe": cufe(FV3)})
    assert bill["cufe"] == cufe(FV3)
    assert bill["provider"]["identification"] == "901944237"
    (line,) = bill["purchases"]["categories"]
    assert (line["id"], line["price"], line["quantity"]) == ("5105", 17700000, 1)
    assert [t["percentage"] for t in line["tax"]] == ["19.00"]
    # The document's own totals: 17,700,000 + IVA 3,363,000 = 21,063,000.
    assert (bill["subtotal"], bill["tax"], bill["total"]) == (17700000, 3363000, 21063000)
    assert (bill["date"], bill["dueDate"]) == ("2026-03-17", "2026-04-30")
    again = await local.refused("POST", "/bills/import-by-cufe", 400, json={"cufe": cufe(FV3)})
    assert again == {"code": 11108, "message": "El UUID ya se encuentra asociado a otra factura"}
    # The same supplier's next invoice finds its contact; its withholdings are retentions.
    fv7 = await local.ok("POST", "/bills/import-by-cufe", 201, json={"cufe": cufe(FV7).upper()})
    assert fv7["provider"]["id"] == bill["provider"]["id"]
    assert len(await local.ok("GET", "/contacts")) == 1
    assert [(r["percentage"], r["amount"]) for r in fv7["retentions"]] == [
        ("2.50", 428250),
        ("1.104", 189115.2),
    ]
    unknown = await local.refused("POST", "/bills/import-by-cufe", 404, json={"cufe": "ab" * 48})
    assert unknown["code"] == 12017


@pytest.mark.anyio
async def test_an_attachment_is_kept_on_its_bill(local: Local) -> None:
    bill = await local.ok("POST", "/bills", 201, json=bill_body(await local.provider()))
    data = FV3.read_bytes()
    files = {"file": ("FV3.xml", data, "application/xml")}
    attachment = await local.ok("POST", f"/bills/{bill['id']}/attachment", 201, files=files)
    expected = {"name": "FV3.xml", "size": len(data), "sha256": sha256(data).hexdigest()}
    assert attachment == {"id": attachment["id"], **expected}
    assert (await local.ok("GET", f"/bills/{bill['id']}"))["attachments"] == [attachment]
    missing = await local.refused("POST", "/bills/42/attachment", 404, files=files)
    assert missing["code"] == 11110
    path = f"/bills/{bill['id']}/attachment"
    assert (await local.refused("POST", path, 400, json={"file": "x"}))["code"] == 904
    other = {"documento": ("FV3.xml", data, "application/xml")}
    assert (await local.refused("POST", path, 400, files=other))["code"] == 904


@pytest.mark.anyio
async def test_the_limiter_says_what_is_left_and_refuses_past_the_rate() -> None:
    async with serving(rate=5) as local:
        remaining = []
        for _ in range(5):
            response = await local.api.get("/taxes")
            assert response.status_code == 200
            assert response.headers["X-Rate-Limit-Limit"] == "5"
            assert 1 <= int(response.headers["X-Rate-Limit-Reset"]) <= 60
            remaining.append(response.headers["X-Rate-Limit-Remaining"])
        assert remaining == ["4", "3", "2", "1", "0"]
        response = await local.api.post("/contacts", json={"name": "No llega"})
        assert response.status_code == 429
        assert response.json()["code"] == 429
        assert response.headers["X-Rate-Limit-Remaining"] == "0"
        assert int(response.headers["X-Rate-Limit-Reset"]) >= 1
        # A refused request is not served.
        assert local.sandbox.alegra.records.get("contacts", {}) == {}
        stats = (await local.admin.get("/_admin/stats")).json()["alegra"]
        assert (stats["limited"], stats["peak_per_window"]) == (1, 5)
        assert stats["by_outcome"] == {"ok": 5, "limited": 1}
        assert stats["by_endpoint"] == {"GET /taxes": 5, "POST /contacts": 1}


@pytest.mark.anyio
async def test_a_window_starts_with_the_first_request_after_the_last_one_ended() -> None:
    now = [1000.0]
    async with serving(rate=2) as local:
        local.sandbox.alegra.clock = lambda: now[0]
        await local.ok("GET", "/items")
        now[0] += 40
        response = await local.api.get("/items")
        assert response.headers["X-Rate-Limit-Reset"] == "20"
        now[0] += 19.5
        assert (await local.api.get("/items")).status_code == 429
        # 60 s after the window opened, and again long after: a whole new window each time.
        for later in (0.5, 3600):
            now[0] += later
            response = await local.api.get("/items")
            assert response.status_code == 200
            assert (
                response.headers["X-Rate-Limit-Remaining"],
                response.headers["X-Rate-Limit-Reset"],
            ) == ("1", "60")
        stats = (await local.admin.get("/_admin/stats")).json()["alegra"]
        assert (stats["peak_per_window"], stats["limited"]) == (2, 1)


@pytest.mark.anyio
async def test_a_burst_is_served_no_further_than_the_rate() -> None:
    async with serving(rate=5) as local:
        statuses: list[int] = []

        async def ask() -> None:
            statuses.append((await local.api.get("/contacts")).status_code)

        async with anyio.create_task_group() as group:
            for _ in range(20):
                group.start_soon(ask)
        assert sorted(statuses) == [200] * 5 + [429] * 15
        stats = (await local.admin.get("/_admin/stats")).json()["alegra"]
        assert (stats["peak_per_window"], stats["limited"]) == (5, 15)


@asynccontextmanager
async def receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver on a real port: its URL and what it was sent."""
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hooks/alegra", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/hooks/alegra")), received
    finally:
        await server.close()


@pytest.mark.anyio
async def test_admin_edits_fire_the_subscribed_webhooks(local: Local) -> None:
    async with receiver() as (url, received):
        for event in ("edit-client", "new-item", "delete-client"):
            body = {"event": event, "url": url}
            created = await local.ok("POST", "/webhooks/subscriptions", 201, json=body)
            assert created["subscription"]["event"] == event
        # Nobody listens there: counted as failed, the others still delivered.
        dead = {"event": "edit-client", "url": "http://127.0.0.1:9/hooks"}
        await local.ok("POST", "/webhooks/subscriptions", 201, json=dead)
        provider = await local.provider()
        response = await local.admin.post(
            f"/_admin/alegra/contacts/{provider}", json={"name": "Nuevo nombre SAS"}
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        assert (answer["delivered"], answer["failed"]) == (1, 1)
        assert answer["object"]["name"] == "Nuevo nombre SAS"
        assert received[0]["subject"] == "edit-client"
        assert received[0]["message"]["client"]["name"] == "Nuevo nombre SAS"
        contact = await local.ok("GET", f"/contacts/{provider}")
        assert contact == received[0]["message"]["client"]
        # An unknown id creates the object: "new-", and the payload with a "data" key.
        response = await local.admin.post("/_admin/alegra/items/40?shape=data", json={"name": "X"})
        assert response.json()["delivered"] == 1
        assert received[1] == {"subject": "new-item", "data": {"item": {"id": "40", "name": "X"}}}
        assert (await local.ok("POST", "/items", 201, json={"name": "Y"}))["id"] == "41"
        response = await local.admin.delete(f"/_admin/alegra/contacts/{provider}")
        assert response.json()["delivered"] == 1
        assert received[2]["subject"] == "delete-client"
        assert (await local.refused("GET", f"/contacts/{provider}", 404))["code"] == 404
    # Categories, taxes and retentions have no events: edited without a delivery.
    response = await local.admin.post("/_admin/alegra/taxes/1", json={"percentage": "19.00"})
    assert (response.json()["delivered"], response.json()["failed"]) == (0, 0)
    assert (await local.admin.post("/_admin/alegra/facturas/1", json={})).status_code == 400
    stats = (await local.admin.get("/_admin/stats")).json()["alegra"]
    assert stats["webhooks"] == {"delivered": 3, "failed": 1}
    subscriptions = await local.ok("GET", "/webhooks/subscriptions")
    assert len(subscriptions) == 4
    assert await local.ok("DELETE", f"/webhooks/subscriptions/{subscriptions[0]['id']}") == {}
    await local.refused("DELETE", f"/webhooks/subscriptions/{subscriptions[0]['id']}", 404)


@pytest.mark.anyio
async def test_an_account_block_refuses_what_the_plan_does_not_allow(local: Local) -> None:
    provider = await local.provider()

    async def block(code: int | None) -> None:
        response = await local.admin.post("/_admin/alegra/account", json={"block": code})
        assert response.json() == {"block": code}

    await block(900)
    refused = await local.refused("POST", "/bills", 402, json=bill_body(provider))
    assert refused == {"code": 900, "message": "Has alcanzado el límite de documentos de tu plan"}
    assert (await local.refused("POST", "/bills/import-by-cufe", 402, json={}))["code"] == 900
    await local.ok("POST", "/contacts", 201, json={"name": "Sí se puede"})
    await block(907)
    refused = await local.refused("POST", "/contacts", 403, json={"name": "No"})
    assert refused == {"code": 907, "message": "Tu plan es de solo lectura"}
    assert (await local.refused("DELETE", f"/contacts/{provider}", 403))["code"] == 907
    assert len(await local.ok("GET", "/contacts")) == 2
    await block(None)
    await local.ok("POST", "/bills", 201, json=bill_body(provider))
    bad = await local.admin.post("/_admin/alegra/account", json={"block": 901})
    assert bad.status_code == 400


@pytest.mark.anyio
async def test_a_fault_for_alegra_takes_it_down(local: Local) -> None:
    fault = {"service": "alegra", "status": 503, "retry_after": 7}
    assert (await local.admin.post("/_admin/faults", json=fault)).status_code == 200
    response = await local.api.get("/contacts")
    assert (response.status_code, response.headers["Retry-After"]) == (503, "7")
    await local.admin.delete("/_admin/faults")
    assert await local.ok("GET", "/contacts") == []
    stats = (await local.admin.get("/_admin/stats")).json()["alegra"]
    assert stats["by_outcome"] == {"fault": 1, "ok": 1}
    assert stats["requests"] == 2


@pytest.mark.slow
def test_the_account_is_kept_across_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "alegra.json"
    args = ("--alegra-state", str(state), "--alegra-user", "yo@empresa.co", "--alegra-token", "t")
    with SandboxProcess("--documents", str(DIAN_SAMPLES), *args) as sandbox:
        assert sandbox.known["alegra"] == 3
        env = sandbox.alegra_env(tmp_path)
        assert (tmp_path / "alegra-token").read_text() == "t"
        auth = (env["FACTURASD_ALEGRA__EMAIL"], "t")
        with httpx.Client(base_url=env["FACTURASD_ALEGRA__BASE_URL"], auth=auth) as api:
            imported = api.post("/bills/import-by-cufe", json={"cufe": cufe(FV3)})
            assert imported.status_code == 201, imported.text
        sandbox.post("/_admin/alegra/account", {"block": 907})
        sandbox.proc.send_signal(signal.SIGINT)
        assert sandbox.proc.wait(timeout=20) == 0
    assert json.loads(state.read_text())["block"] == 907
    with (
        SandboxProcess("--documents", str(DIAN_SAMPLES), *args) as sandbox,
        httpx.Client(base_url=sandbox.urls["alegra"], auth=("yo@empresa.co", "t")) as api,
    ):
        (bill,) = api.get("/bills").json()
        assert bill["cufe"] == cufe(FV3)
        again = api.post("/bills/import-by-cufe", json={"cufe": cufe(FV3)})
        assert again.json()["code"] == 907  # still read-only
        sandbox.post("/_admin/alegra/account", {"block": None})
        again = api.post("/bills/import-by-cufe", json={"cufe": cufe(FV3)})
        assert again.json()["code"] == 11108
        fv7 = api.post("/bills/import-by-cufe", json={"cufe": cufe(FV7)}).json()
        assert fv7["id"] == "2"


def test_a_file_that_is_no_snapshot_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from facturasd.cli import main

    state = tmp_path / "alegra.json"
    state.write_text('{"records": []}')
    assert main(["sandbox", "--bind", "127.0.0.1:0", "--alegra-state", str(state)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"facturasd sandbox: --alegra-state {state}: not a snapshot of the sandbox's Alegra account"
    )
