"""`facturasd run --sandbox` as a person first tries it: the shipped configuration, the shared
samples dropped in the inbox; the real CFDI and DIAN samples end booked in the local Alegra,
/health, `status --json` and the dashboard say "sandbox" and agree with `invoices list --json`,
and the configured SAT, DIAN and Alegra are never asked."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import httpx
import pytest

from facturasd.config import load_config
from facturasd.constants import DATABASE_FILE, InvoiceState
from facturasd.sandbox.alongside import alongside
from facturasd.sandbox.state import ALEGRA_TOKEN, ALEGRA_USER
from tests.browser import browser, counts, opened, screenshot
from tests.support import (
    SAMPLES,
    SHIPPED_CONFIG,
    DaemonProcess,
    daemon_env,
    free_port,
    invoice,
    query,
    run_facturasd,
    take,
    wait_healthy,
    write_config,
)

# The real documents among the samples, each valid where it was issued: booked.
REAL = {
    "cfdi-expresiones__cfdi40-real.xml",
    "cfdi-expresiones__cfdi33-real.xml",
    "siigo-blindacces-FV3.xml",
    "siigo-blindacces-FV7.xml",
}
# Where an invoice's work is over for now.
SETTLED = {"booked", "rejected", "needs_review", "duplicate", "discarded", "linked"}


class Trap:
    """A real server standing in for the real SAT, DIAN and Alegra: counts what reaches it."""

    def __init__(self) -> None:
        hits: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_error(500)

            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self.hits = hits
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def trap() -> Iterator[Trap]:
    found = Trap()
    yield found
    found.close()


def invoices(config: Path) -> list[dict[str, object]]:
    done = run_facturasd("invoices", "list", "--json", "--config", str(config))
    assert done.returncode == 0, done.stderr
    found: list[dict[str, object]] = json.loads(done.stdout)
    return found


async def shows(url: str, states: Counter[str]) -> None:
    """The dashboard at `url` counts `states` and is marked sandbox, without a console error."""
    errors: list[str] = []
    async with browser() as chromium:
        page = await opened(chromium, url, errors)
        await page.locator("#main").wait_for(state="visible")
        assert await counts(page, "#by-state") == {s: states[s] for s in InvoiceState}
        assert await page.locator("#sandbox").is_visible()
        print("screenshot:", await screenshot(page, "dashboard-sandbox.png"))
    assert errors == []


@pytest.mark.slow
@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"the shared samples are not at {SAMPLES}")
def test_the_samples_end_booked_in_the_local_alegra(tmp_path: Path, trap: Trap) -> None:
    config = Path(shutil.copy(SHIPPED_CONFIG, tmp_path / "facturasd.toml"))
    # A production Alegra user configured: the sandbox books as its own user instead.
    token = tmp_path / "alegra-token"
    token.write_text("a-real-token", encoding="utf-8")
    port, sandbox_port = free_port(), free_port()
    env = daemon_env(
        FACTURASD_HTTP__BIND=f"127.0.0.1:{port}",
        FACTURASD_SANDBOX__BIND=f"127.0.0.1:{sandbox_port}",
        FACTURASD_AUTHORITIES__SAT__URL=f"{trap.url}/sat",
        FACTURASD_AUTHORITIES__DIAN__URL=f"{trap.url}/dian",
        FACTURASD_ALEGRA__BASE_URL=f"{trap.url}/alegra",
        FACTURASD_ALEGRA__EMAIL="accounts@example.com",
        FACTURASD_ALEGRA__TOKEN_FILE=str(token),
    )
    daemon = DaemonProcess(config, env, "--sandbox", log_dir=tmp_path)
    try:
        health = wait_healthy(port, daemon).json()
        assert health["sandbox"] is True
        inbox = tmp_path / "var" / "inbox"
        samples = sorted(SAMPLES.glob("*/*.xml"))
        for sample in samples:
            shutil.copy(sample, inbox / sample.name)
        deadline = time.monotonic() + 120
        while True:
            found = invoices(config)
            if len(found) == len(samples) and all(i["state"] in SETTLED for i in found):
                break
            assert time.monotonic() < deadline, (found, daemon.stderr())
            time.sleep(0.5)
        booked = {str(i["original_name"]): i for i in found if i["state"] == "booked"}
        assert set(booked) >= REAL
        bills = httpx.get(
            f"http://127.0.0.1:{sandbox_port}/alegra/api/v1/bills",
            auth=(ALEGRA_USER, ALEGRA_TOKEN),
            timeout=10,
        ).json()
        assert {str(bill["id"]) for bill in bills} == {
            str(i["alegra_bill_id"]) for i in booked.values()
        }
        # status and the dashboard say what the ledger says, and that this is the sandbox.
        states = Counter(str(i["state"]) for i in found)
        said = run_facturasd("status", "--json", "--config", str(config), env=env)
        status = json.loads(said.stdout)
        assert status["today"]["by_state"] == {s: states[s] for s in InvoiceState}
        assert status["health"]["sandbox"] is True
        anyio.run(shows, f"http://127.0.0.1:{port}/", states)
    finally:
        daemon.proc.terminate()
        assert daemon.proc.wait(30) == 0, daemon.stderr()
    assert trap.hits == []
    # The local Alegra's account is kept for the next run, as the ledger remembers it.
    assert (tmp_path / "var" / "state" / "sandbox-alegra.json").is_file()
    # That ledger holds the local servers' answers and bills: a real run refuses it.
    real = run_facturasd("run", "--config", str(config), env=env)
    assert real.returncode == 2, real.stderr
    assert "was filled by run --sandbox" in real.stderr


@pytest.mark.slow
def test_the_sandbox_refuses_a_ledger_of_real_work(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    take(config, {"f1.xml": invoice(1)})
    env = daemon_env(FACTURASD_SANDBOX__BIND=f"127.0.0.1:{free_port()}")
    refused = run_facturasd("run", "--sandbox", "--config", str(config), env=env)
    assert refused.returncode == 2, refused.stderr
    assert "holds invoices of real work" in refused.stderr
    # Nothing was written in it: a real run still starts on it.
    assert (
        query(tmp_path / "state" / DATABASE_FILE, "SELECT key FROM kv WHERE key = ?", ("sandbox",))
        == []
    )


@pytest.mark.anyio
async def test_nothing_leaves_the_machine_from_the_sandbox(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    (tmp_path / "state").mkdir()  # (where the local Alegra's account is kept)
    config = load_config(
        write_config(
            tmp_path,
            "[notify.email]\nenabled = true\nhost = 'smtp.example.com'\n"
            "recipients = ['contabilidad@example.com']\n"
            "[notify.webhook]\nenabled = true\nurl = 'https://hooks.example.com/f'\n"
            "secret_file = 'secret'\n"
            "[reports]\nemail = true\n"
            "[cache]\nbackend = 'redis'\nurl = 'redis://cache.example.com:6379/0'\n"
            f"[sandbox]\nbind = '127.0.0.1:{free_port()}'\n",
        ),
        {},
    )
    async with alongside(config) as local:
        pointed = local.config
    assert not (pointed.notify.email.enabled or pointed.notify.webhook.enabled)
    assert not pointed.notify.nanobot.enabled
    assert pointed.notify.log.enabled  # what would have been sent is still logged
    assert not pointed.reports.email
    assert pointed.cache.backend == "memory"
