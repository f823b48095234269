"""The dashboard at GET / as a person sees it: Debian's chromium, headless, driven by
Playwright, against the daemon's HTTP app on a ledger the real pipeline filled (the shared
samples and generated invoices). The page loads without a console error, shows the counts the
ledger has, speaks Spanish then English, refreshes itself, asks for a token beyond loopback,
and a screenshot of it is written to test-output/ beside the test run."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from facturasd.cli import main
from facturasd.constants import ComplianceStatus, InvoiceState
from tests.browser import browser, counts, opened, screenshot
from tests.support import SAMPLES, free_port, invoice, serving, take, write_config

TOKEN = "tablero-0001-secreto"
# A file named like markup: the page must show its name as text, never run it.
HOSTILE = "<img src=x onerror=document.title='x'>.xml"
FILES = {
    **{p.name: p.read_bytes() for p in sorted(SAMPLES.glob("*/*.xml"))},
    "f1.xml": invoice(1),
    "f2.xml": invoice(2),
    "mal total.xml": invoice(3, override={"total": "9999.00"}),
    HOSTILE: b"esto no es una factura",
}

pytestmark = pytest.mark.slow


def root(services: object) -> str:
    """The page's address: the API's base URL without /api/v1."""
    url: str = services.url  # type: ignore[attr-defined]
    return url.removesuffix("/api/v1") + "/"


@pytest.fixture
def office(tmp_path: Path) -> Path:
    (tmp_path / "http-token").write_text(f"tablero:{TOKEN}\n")
    config = write_config(tmp_path, 'token_file = "http-token"\n')
    take(config, FILES)
    assert main(["report", "--config", str(config)]) == 0
    return config


@pytest.fixture
def listed(office: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert main(["invoices", "list", "--json", "--config", str(office)]) == 0
    found: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return found


@pytest.mark.anyio
async def test_the_dashboard_shows_what_the_ledger_has_in_spanish_and_english(
    office: Path, listed: list[dict[str, Any]]
) -> None:
    states = Counter(i["state"] for i in listed)
    statuses = Counter(i["compliance"] for i in listed)
    assert {"checked", "rejected", "unreadable"} <= set(states)  # a ledger worth showing
    errors: list[str] = []
    async with serving(office) as services, browser() as chromium:
        page = await opened(chromium, root(services), errors)
        await page.locator("#main").wait_for(state="visible")

        assert await page.locator("html").get_attribute("lang") == "es"
        assert (
            await page.locator("#today-title").inner_text()
            == f"Hoy: {len(listed)} facturas recibidas"
        )
        assert await counts(page, "#by-state") == {s: states[s] for s in InvoiceState}
        assert await counts(page, "#by-compliance") == {s: statuses[s] for s in ComplianceStatus}
        assert await page.locator("#by-state tr[data-key=booked] td").first.inner_text() == (
            "contabilizada"
        )
        # Every invoice is in the chart's last hour, a bar per state it has.
        labels = await page.locator("#chart text").evaluate_all("ts => ts.map(t => t.textContent)")
        assert sum(int(t) for t in labels if t.isdigit()) == len(listed)
        assert await page.locator("#chart rect").count() == len(states)

        waiting = [i for i in listed if i["state"] in ("rejected", "unreadable", "needs_review")]
        person = await page.locator("#person-title").inner_text()
        assert person == f"Necesitan una persona: {len(waiting)}"
        shown = await page.locator("#person-list tbody tr").evaluate_all(
            "rows => rows.map(r => Number(r.dataset.id))"
        )
        assert set(shown) == {i["id"] for i in waiting}
        assert HOSTILE.removesuffix(".xml") in await page.locator("#person-list").inner_text()
        assert await page.title() == "facturasd: tablero"  # the file's name did not run

        day = next(iter(sorted(services.config.paths.reports.glob("reporte-*.csv")))).stem
        link = page.locator(f"#reports a[href$='{day}?format=csv']")
        answer = await page.request.get(await link.evaluate("a => a.href"))
        assert await answer.body() == (services.config.paths.reports / f"{day}.csv").read_bytes()
        assert await page.locator("#health").inner_text() != ""
        assert await page.locator("#sandbox").is_hidden()
        print("screenshot:", await screenshot(page, "dashboard.png"))

        await page.locator("#languages button[data-lang=en]").click()
        await page.locator("#today-title", has_text="Today").wait_for()
        assert await page.locator("html").get_attribute("lang") == "en"
        assert await page.locator("#by-state tr[data-key=needs_review] td").first.inner_text() == (
            "needs review"
        )
        assert await page.locator("#person-title").inner_text() == f"Need a person: {len(waiting)}"
        await page.reload()  # the choice is kept
        await page.locator("#today-title", has_text="Today").wait_for()
        print("screenshot:", await screenshot(page, "dashboard-en.png"))
    assert errors == []


@pytest.mark.anyio
async def test_the_dashboard_refreshes_itself_and_marks_the_sandbox(
    office: Path, listed: list[dict[str, Any]]
) -> None:
    errors: list[str] = []
    async with serving(office) as services, browser() as chromium:
        page = await chromium.new_page()
        await page.clock.install()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(root(services))
        title = page.locator("#today-title")
        await title.wait_for(state="visible")
        assert await title.inner_text() == f"Hoy: {len(listed)} facturas recibidas"

        # Another invoice arrives and the daemon is now in sandbox mode: the page shows both
        # at its next refresh, with nobody touching it.
        await anyio.to_thread.run_sync(take, office, {"f9.xml": invoice(9)})
        services.health.sandbox = True
        await page.clock.run_for(20_000)
        await page.locator("#today-title", has_text=f"Hoy: {len(listed) + 1} ").wait_for()
        await page.locator("#sandbox").wait_for(state="visible")
        assert await page.locator("#sandbox").inner_text() == "modo sandbox"
    assert errors == []


@pytest.mark.anyio
async def test_beyond_loopback_the_page_asks_for_a_token(office: Path) -> None:
    errors: list[str] = []
    async with (
        serving(office, bind=f"0.0.0.0:{free_port()}") as services,
        browser() as chromium,
    ):
        page = await opened(chromium, root(services), errors)
        form = page.locator("#token")
        await form.wait_for(state="visible")
        assert await page.locator("#main").is_hidden()
        await form.locator("input").fill(TOKEN + "x")
        async with page.expect_response(re.compile(r"/api/v1/status")) as refused:
            await form.locator("button").click()
        assert (await refused.value).status == 401
        await form.wait_for(state="visible")
        assert await page.locator("#main").is_hidden()
        await form.locator("input").fill(TOKEN)
        await form.locator("button").click()
        await page.locator("#main").wait_for(state="visible")
        assert re.fullmatch(
            r"Hoy: \d+ facturas recibidas", await page.locator("#today-title").inner_text()
        )
        assert await form.is_hidden()
    # The refused token is the browser's 401, reported on its console; nothing else.
    assert all("401" in e for e in errors), errors
