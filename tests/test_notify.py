"""Alerts reach people: by e-mail to a real SMTP server (aiosmtpd), by a webhook the receiver
verifies with the `standardwebhooks` package, by a Nanobot agent server's HTTP API, and in the
log; each delivery a durable job run by a real worker pool, delivered once per channel, retried
without an answer and never showing a secret."""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from blockbuster import BlockBuster
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks import Webhook, WebhookVerificationError

from facturasd.config import Config, load_config
from facturasd.constants import DATABASE_FILE
from facturasd.errors import ConfigError
from facturasd.notify import NOTIFY, NOTIFY_REPORT, Outbox, open_channels, probe
from facturasd.notify.outbox import QUEUE
from facturasd.store import compliance
from facturasd.store.compliance import Alert
from facturasd.store.db import Database
from facturasd.store.queue import Job, Queue
from facturasd.wording import Language
from facturasd.workers import WorkerPool
from tests.smtp_server import PASSWORD, smtp_server
from tests.support import free_port, write_config

pytestmark = pytest.mark.anyio

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TOKEN = "nanobot-t0ken-do-not-show"
INVOICE = "#12 FV7 (proveedor.xml)"


class FakeClock:
    """Starts at the real time: a webhook's timestamp must be within the receiver's
    tolerance."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass(frozen=True)
class Said:
    subject: str
    text: str


def words(alert: Alert, lang: Language) -> Said:
    """The test's own wording: the code and the params, so a message is easy to check."""
    return Said(
        f"[{alert.severity}] {alert.code}",
        f"{lang}: {alert.code} {json.dumps(alert.params, sort_keys=True)}",
    )


async def until(predicate: Callable[[], Awaitable[bool]], what: str) -> None:
    with anyio.fail_after(20, reason=f"waiting for {what}"):
        while not await predicate():
            await anyio.sleep(0.02)


@dataclass
class Office:
    db: Database
    queue: Queue
    outbox: Outbox
    clock: FakeClock

    async def alert(self, severity: str = "critical", code: str = "SAT-INVALID") -> int:
        def add(conn: Any) -> int:
            compliance.raise_alert(
                conn,
                at=self.clock().timestamp(),
                severity=severity,
                code=code,
                invoice=INVOICE,
                said="Cancelado",
            )
            return int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])

        return await self.db.write(add)

    async def jobs(self) -> list[Job]:
        return await self.queue.find(queue=QUEUE, limit=None)

    async def health(self, channel: str) -> dict[str, Any]:
        [item] = await probe(self.outbox, channel)(self.clock().isoformat())
        return item


@asynccontextmanager
async def office(config: Config, clock: FakeClock) -> AsyncIterator[Office]:
    """The ledger, the queue, the outbox over the configured channels and the `reports` pool
    that runs the deliveries, as the daemon builds them."""
    config.paths.state_dir.mkdir(parents=True, exist_ok=True)
    db = await Database.open(config.paths.state_dir / DATABASE_FILE)
    try:
        queue = Queue(db, config.queues, clock=clock)
        async with open_channels(config, clock=clock) as channels:
            outbox = Outbox(db, queue, channels, describe=words, lang="es", clock=clock)
            pool = WorkerPool(
                queue,
                {NOTIFY: outbox, NOTIFY_REPORT: outbox},
                name="reports",
                queues=[QUEUE],
                concurrency=2,
                lease=30,
                clock=clock,
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.run)
                yield Office(db, queue, outbox, clock)
                pool.stop()
                await pool.drained()
    finally:
        await db.close()


async def configured(tmp_path: Path, toml: str) -> Config:
    return await anyio.to_thread.run_sync(load_config, write_config(tmp_path, toml), {})


def email_toml(
    tmp_path: Path, port: int, password: str = PASSWORD, *, starttls: bool = False
) -> str:
    (tmp_path / "smtp-password").write_text(password + "\n")
    return (
        f'[notify.email]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\n'
        f"starttls = {str(starttls).lower()}\n"
        'username = "facturas"\npassword_file = "smtp-password"\n'
        'sender = "facturasd@empresa.example.co"\n'
        'recipients = ["contabilidad@empresa.example.co", "gerencia@empresa.example.co"]\n'
    )


async def test_an_alert_and_the_daily_report_are_mailed(
    blockbuster: BlockBuster, tmp_path: Path
) -> None:
    port = free_port()
    config = await configured(tmp_path, email_toml(tmp_path, port))
    clock = FakeClock()
    with smtp_server(port) as mailbox:
        async with office(config, clock) as o:
            alert = await o.alert()
            assert await o.outbox.dispatch() == 1

            async def mailed(n: int) -> bool:
                return len(mailbox.envelopes) >= n

            await until(partial(mailed, 1), "the alert mailed")
            [envelope] = mailbox.envelopes
            assert sorted(envelope.rcpt_tos) == [
                "contabilidad@empresa.example.co",
                "gerencia@empresa.example.co",
            ]
            [mail] = mailbox.messages()
            assert mail["Subject"] == "[critical] SAT-INVALID"
            assert mail["From"] == "facturasd@empresa.example.co"
            body = mail.get_body(preferencelist=("plain",))
            assert body is not None
            assert body.get_content().strip() == (
                f'es: SAT-INVALID {{"invoice": "{INVOICE}", "said": "Cancelado"}}'
            )

            reports = tmp_path / "reports"
            reports.mkdir()
            md = reports / "reporte-2026-11-28.md"
            md.write_text(
                "# Reporte del 28 de noviembre\n\n| Estado | Facturas |\n|---|---|\n"
                "| checked | 3 |\n"
            )
            csv = reports / "reporte-2026-11-28.csv"
            table = "\ufeffrecibida;proveedor;total\n2026-11-28;ACME SAS;1.234,56\n".encode()
            csv.write_bytes(table)
            job = await o.db.write(
                partial(o.outbox.queue_report, md=md, csv=csv, subject="Reporte 2026-11-28")
            )
            assert job is not None and job.kind == NOTIFY_REPORT
            await until(partial(mailed, 2), "the report mailed")
            report = mailbox.messages()[1]
            assert report["Subject"] == "Reporte 2026-11-28"
            html = report.get_body(preferencelist=("html",))
            assert html is not None
            assert "<h1>Reporte del 28 de noviembre</h1>" in html.get_content()
            assert "<td>checked</td>" in html.get_content()
            [attached] = list(report.iter_attachments())
            assert attached.get_filename() == "reporte-2026-11-28.csv"
            assert attached.get_content_type() == "text/csv"
            assert attached.get_payload(decode=True) == table

            async def finished() -> bool:  # (the mail is out before its job's commit)
                return [j.state for j in await o.jobs()] == ["done", "done", "done"]

            await until(finished, "the three deliveries done (and the log's)")
            assert (await o.health("email"))["status"] == "pass"
    assert alert == 1


async def test_without_an_smtp_server_the_alert_waits_and_goes_once_it_is_up(
    blockbuster: BlockBuster, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there yet
    config = await configured(
        tmp_path, email_toml(tmp_path, port) + "[notify.log]\nenabled = false\n"
    )
    clock = FakeClock()
    async with office(config, clock) as o:
        await o.alert()
        await o.outbox.dispatch()

        async def handed_back() -> bool:
            [job] = await o.jobs()
            return job.state == "queued" and job.last_error is not None

        await until(handed_back, "the delivery handed back")
        [job] = await o.jobs()
        assert job.attempts == 0  # no answer is not a failure
        assert "email gave no answer" in (job.last_error or "")
        health = await o.health("email")
        assert health["status"] == "warn" and "cannot connect" in health["output"]

        with smtp_server(port) as mailbox:
            clock.advance(60)

            async def delivered() -> bool:
                return (await o.jobs())[0].state == "done"

            await until(delivered, "the delivery done")
            assert len(mailbox.envelopes) == 1
            assert (await o.health("email"))["status"] == "pass"
            await o.outbox.dispatch()  # nothing new: nothing mailed again
            assert len(await o.jobs()) == 1


def server_tls(folder: Path) -> tuple[ssl.SSLContext, Path]:
    """A TLS context for a server at 127.0.0.1 with a certificate of its own, and the file
    of that certificate (for a client to trust it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smtp.empresa.example.co")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "smtp.crt", folder / "smtp.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file


async def test_starttls_to_a_trusted_server_and_a_refusal_from_an_untrusted_one(
    blockbuster: BlockBuster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    toml = email_toml(tmp_path, port, starttls=True) + "[notify.log]\nenabled = false\n"
    config = await configured(tmp_path, toml)
    context, certificate = server_tls(tmp_path)
    clock = FakeClock()
    with smtp_server(port, tls=context) as mailbox:
        async with office(config, clock) as o:
            await o.alert()
            await o.outbox.dispatch()

            async def refused() -> bool:
                [job] = await o.jobs()
                return job.attempts == 1 and job.state == "queued"

            # Not trusted by this machine: refused (counted), not retried as if down.
            await until(refused, "the certificate refused")
            [job] = await o.jobs()
            assert f"TLS with 127.0.0.1:{port} failed: self" in (job.last_error or "")
            assert mailbox.envelopes == []

            # The machine's trust store now holds the certificate (as an office's own CA).
            monkeypatch.setenv("SSL_CERT_FILE", str(certificate))
            clock.advance(5)

            async def delivered() -> bool:
                return (await o.jobs())[0].state == "done"

            await until(delivered, "the alert mailed over TLS")
            [envelope] = mailbox.envelopes
            assert envelope.rcpt_tos == [
                "contabilidad@empresa.example.co",
                "gerencia@empresa.example.co",
            ]


# ── a webhook receiver that verifies Standard Webhooks signatures ─────────────────────────


@dataclass
class Receiver:
    secret: str
    failures: int = 0  # answer 500 to this many first calls
    ids: list[str] = field(default_factory=list)
    verified: list[dict[str, Any]] = field(default_factory=list)

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.ids.append(request.headers["webhook-id"])
        if self.failures:
            self.failures -= 1
            return web.Response(status=500, text="busy")
        try:
            payload = Webhook(self.secret).verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            return web.Response(status=401, text=str(exc))
        self.verified.append(payload)
        return web.json_response({"received": True})


@asynccontextmanager
async def http_server(routes: list[web.RouteDef]) -> AsyncIterator[TestServer]:
    app = web.Application()
    app.add_routes(routes)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


def webhook_toml(tmp_path: Path, url: str, secret: str = SECRET, severity: str = "warning") -> str:
    (tmp_path / "webhook-secret").write_text(secret + "\n")
    return (
        f'[notify.webhook]\nenabled = true\nurl = "{url}"\nsecret_file = "webhook-secret"\n'
        f'min_severity = "{severity}"\n'
    )


async def test_a_signed_webhook_keeps_its_id_across_a_retry(
    blockbuster: BlockBuster, tmp_path: Path
) -> None:
    receiver = Receiver(SECRET, failures=1)
    async with http_server([web.post("/hooks/facturasd", receiver.hook)]) as server:
        url = str(server.make_url("/hooks/facturasd"))
        config = await configured(tmp_path, webhook_toml(tmp_path, url))
        clock = FakeClock()
        async with office(config, clock) as o:
            alert = await o.alert()
            await o.outbox.dispatch()

            async def called(n: int) -> bool:
                return len(receiver.ids) >= n

            await until(partial(called, 1), "the first call")

            async def handed_back() -> bool:
                return any(
                    j.payload["channel"] == "webhook" and j.state == "queued" and j.last_error
                    for j in await o.jobs()
                )

            await until(handed_back, "the delivery handed back")
            clock.advance(60)  # the 500 handed it back for a minute
            await until(partial(called, 2), "the second call")
            assert receiver.ids == [f"alert-{alert}", f"alert-{alert}"]
            [payload] = receiver.verified
            assert payload == {
                "type": "alert.firing",
                "timestamp": payload["timestamp"],
                "alert": {
                    "id": alert,
                    "code": "SAT-INVALID",
                    "severity": "critical",
                    "status": "firing",
                    "condition": None,
                    "invoice_id": None,
                    "params": {"invoice": INVOICE, "said": "Cancelado"},
                },
                "subject": "[critical] SAT-INVALID",
                "text": f'es: SAT-INVALID {{"invoice": "{INVOICE}", "said": "Cancelado"}}',
                "severity": "critical",
            }

            async def done() -> bool:
                return {j.state for j in await o.jobs()} == {"done"}

            await until(done, "every delivery done")
            webhook = [j for j in await o.jobs() if j.payload["channel"] == "webhook"]
            assert [j.attempts for j in webhook] == [1]  # the 500 did not count


async def test_each_alert_is_delivered_once_per_channel_that_wants_its_severity(
    blockbuster: BlockBuster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    receiver = Receiver(SECRET)
    async with http_server([web.post("/hook", receiver.hook)]) as server:
        url = str(server.make_url("/hook"))
        config = await configured(tmp_path, webhook_toml(tmp_path, url, severity="critical"))
        clock = FakeClock()
        async with office(config, clock) as o:
            warning = await o.alert("warning", "QUEUE-BACKLOG")
            critical = await o.alert("critical", "SAT-INVALID")
            async with anyio.create_task_group() as tg:  # two dispatches at once
                tg.start_soon(o.outbox.dispatch)
                tg.start_soon(o.outbox.dispatch)
            assert await o.outbox.dispatch() == 0

            async def done() -> bool:
                jobs = await o.jobs()
                return len(jobs) == 3 and {j.state for j in jobs} == {"done"}

            await until(done, "the deliveries done")
            assert sorted((j.payload["channel"], j.payload["alert"]) for j in await o.jobs()) == [
                ("log", warning),
                ("log", critical),
                ("webhook", critical),
            ]
            assert receiver.ids == [f"alert-{critical}"]
    said = sorted(
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.name == "facturasd.notify.channels"
    )
    params = json.dumps({"invoice": INVOICE, "said": "Cancelado"}, sort_keys=True)
    assert said == [
        ("CRITICAL", f"[critical] SAT-INVALID: es: SAT-INVALID {params}"),
        ("WARNING", f"[warning] QUEUE-BACKLOG: es: QUEUE-BACKLOG {params}"),
    ]


# ── a Nanobot agent server ───────────────────────────────────────────────────────────────


@dataclass
class Agents:
    """`POST /api/call` as a Nanobot server takes it: a Bearer token, then the call."""

    token: str
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def call(self, request: web.Request) -> web.Response:
        given = request.headers.get("authorization", "")
        if given != f"Bearer {self.token}":
            # (a careless server repeats what it was sent)
            return web.Response(status=403, text=f"token rejected: {given}")
        self.calls.append(await request.json())
        return web.json_response({"output": "avisado"})


def nanobot_toml(tmp_path: Path, url: str, token: str = TOKEN) -> str:
    (tmp_path / "nanobot-token").write_text(token + "\n")
    return (
        f'[notify.nanobot]\nenabled = true\nurl = "{url}"\nagent = "contador"\n'
        'token_file = "nanobot-token"\n'
    )


async def test_the_nanobot_agent_is_called_with_the_alert(
    blockbuster: BlockBuster, tmp_path: Path
) -> None:
    agents = Agents(TOKEN)
    async with http_server([web.post("/api/call", agents.call)]) as server:
        config = await configured(tmp_path, nanobot_toml(tmp_path, str(server.make_url("/"))))
        clock = FakeClock()
        async with office(config, clock) as o, anyio.create_task_group() as tg:
            tg.start_soon(o.outbox.run)  # the daemon's loop hands alerts out
            await o.alert()
            o.outbox.wake()

            async def called() -> bool:
                return bool(agents.calls)

            await until(called, "the agent called")
            tg.cancel_scope.cancel()
            params = json.dumps({"invoice": INVOICE, "said": "Cancelado"}, sort_keys=True)
            assert agents.calls == [
                {
                    "mode": "agent",
                    "name": "contador",
                    "input": f"[critical] SAT-INVALID\n\nes: SAT-INVALID {params}",
                    "chat": False,
                }
            ]


# ── secrets ──────────────────────────────────────────────────────────────────────────────


async def test_refused_deliveries_count_and_show_no_secret(
    blockbuster: BlockBuster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    wrong = Agents("another-token")  # refuses ours, repeating it in its answer
    receiver = Receiver("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY")  # another secret: 401
    routes = [web.post("/api/call", wrong.call), web.post("/hook", receiver.hook)]
    async with http_server(routes) as server:
        toml = (
            email_toml(tmp_path, port, password="not-" + PASSWORD)
            + webhook_toml(tmp_path, str(server.make_url("/hook")))
            + nanobot_toml(tmp_path, str(server.make_url("/")))
            + "[notify.log]\nenabled = false\n[queues.notifications]\nmax_attempts = 2\n"
        )
        config = await configured(tmp_path, toml)
        clock = FakeClock()
        with smtp_server(port) as mailbox:
            async with office(config, clock) as o:
                await o.alert()
                await o.outbox.dispatch()

                async def failed(state: str, attempts: int) -> bool:
                    jobs = await o.jobs()
                    return len(jobs) == 3 and all(
                        j.state == state and j.attempts == attempts and j.last_error for j in jobs
                    )

                await until(partial(failed, "queued", 1), "each refused once")
                clock.advance(5)  # the first backoff
                await until(partial(failed, "dead", 2), "each dead after its attempts")
                errors = {j.payload["channel"]: j.last_error or "" for j in await o.jobs()}
                health = {name: await o.health(name) for name in ("email", "webhook", "nanobot")}
        assert mailbox.envelopes == []
    assert errors["email"].startswith("Refused: email refused the message: 535")
    assert "webhook refused the message:" in errors["webhook"] and " 401 " in errors["webhook"]
    assert "token rejected: Bearer ***" in errors["nanobot"]
    for name, item in health.items():
        assert item["status"] == "warn" and item["observedValue"] == 1, name
        assert item["output"] in errors[name]
    shown = [
        *errors.values(),
        json.dumps(health),
        # (what the test's own servers log is theirs)
        *(r.getMessage() for r in caplog.records if not r.name.startswith(("mail.log", "aiohttp"))),
    ]
    for secret in (PASSWORD, SECRET, SECRET.removeprefix("whsec_"), TOKEN):
        assert not [line for line in shown if secret in line]


def test_a_missing_or_bad_secret_file_names_its_key_not_its_content(tmp_path: Path) -> None:
    async def build(config: Config) -> None:
        async with open_channels(config):
            pass

    toml = webhook_toml(tmp_path, "https://hooks.example.co/x", secret="whsec_" + PASSWORD + "!")
    toml += '[notify.nanobot]\nenabled = true\nurl = "http://127.0.0.1:1"\ntoken_file = "nada"\n'
    with pytest.raises(ConfigError) as raised:
        anyio.run(build, load_config(write_config(tmp_path, toml), {}))
    problems = raised.value.problems
    assert len(problems) == 2
    assert problems[0].startswith("notify.webhook.secret_file: ")
    assert "Standard Webhooks secret" in problems[0]
    assert problems[1].startswith("notify.nanobot.token_file: cannot read ")
    assert PASSWORD not in str(raised.value)
