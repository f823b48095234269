"""The operations as an office sees them (issue 14's "done when"): `facturasd sandbox` and
`facturasd run` as real subprocesses on the shared samples, a real SMTP server, the report
written by `facturasd report` and read back, /metrics parsed by Prometheus' own parser."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from facturasd.constants import DATABASE_FILE
from tests.smtp_server import smtp_server
from tests.support import (
    DaemonProcess,
    SandboxProcess,
    daemon_env,
    drop,
    free_port,
    port_of,
    query,
    run_facturasd,
    wait_healthy,
    wait_until,
    write_config,
)
from tests.test_authorities_daemon import CFDI40, FAST, SAMPLES, new_copy

pytestmark = pytest.mark.slow


def mail_toml(port: int) -> str:
    return (
        f'[notify.email]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\nstarttls = false\n'
        'sender = "facturasd@empresa.example.co"\n'
        'recipients = ["contabilidad@empresa.example.co"]\n'
    )


def test_report_metrics_and_one_mail_for_a_cancelled_cfdi(tmp_path: Path) -> None:
    smtp_port = free_port()
    config = write_config(tmp_path, FAST + mail_toml(smtp_port))
    db = tmp_path / "state" / DATABASE_FILE
    inbox = tmp_path / "data" / "inbox"
    samples = sorted(SAMPLES.glob("*/*.xml"))
    with smtp_server(smtp_port) as mailbox, SandboxProcess("--documents", str(SAMPLES)) as sandbox:
        cancelled, cancelled_uuid, parts = new_copy(CFDI40)
        sandbox.post(f"/_admin/sat/{cancelled_uuid.lower()}", {"estado": "Cancelado", **parts})
        env = daemon_env(**sandbox.env(), **sandbox.alegra_env(tmp_path))
        daemon = DaemonProcess(config, env, log_dir=tmp_path)
        try:
            port = port_of(config)
            wait_healthy(port, daemon)
            for path in samples:
                shutil.copy(path, inbox / path.name)
            drop(inbox, "cancelada.xml", cancelled)

            def settled() -> bool:
                rows = query(db, "SELECT state, compliance FROM invoices")
                busy = query(
                    db,
                    "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running') "
                    "AND kind != 'scheduled' AND run_at <= unixepoch('subsecond')",
                )
                return (
                    len(rows) == len(samples) + 1
                    and busy == [(0,)]
                    and all(state not in ("received", "booking") for state, _ in rows)
                )

            wait_until(settled, 120, "every invoice read, confirmed and booked")

            def mailed() -> list[str]:
                return [
                    str(m["Subject"])
                    for m in mailbox.messages()
                    if "cancelada.xml" in m.get_content()
                ]

            wait_until(lambda: len(mailed()) == 1, 30, "the cancelled CFDI's alert mailed")
            (message,) = [m for m in mailbox.messages() if "cancelada.xml" in m.get_content()]
            assert message["To"] == "contabilidad@empresa.example.co"
            assert "SAT" in str(message["Subject"])

            # The report of today so far, beside `invoices list`.
            written = json.loads(run_facturasd("report", "--json", "--config", str(config)).stdout)
            listed = json.loads(
                run_facturasd("invoices", "list", "--json", "--config", str(config)).stdout
            )
            report = json.loads(Path(written["json"]).read_text(encoding="utf-8"))
            by_state = Counter(invoice["state"] for invoice in listed)
            by_compliance = Counter(invoice["compliance"] for invoice in listed)
            counts = report["counts"]
            assert {k: v for k, v in counts["by_state"].items() if v} == dict(by_state)
            assert {k: v for k, v in counts["by_compliance"].items() if v} == dict(by_compliance)
            text = Path(written["csv"]).read_text(encoding="utf-8-sig")
            rows = list(csv.reader(io.StringIO(text), delimiter=";"))
            assert len(rows) - 1 == len(listed) == len(samples) + 1
            assert Path(written["md"]).read_text(encoding="utf-8").startswith("#")

            # /metrics: valid Prometheus text whose invoices agree with the ledger.
            scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
            assert scraped.status_code == 200
            families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
            invoices = {s.labels["state"]: s.value for s in families["facturasd_invoices"].samples}
            assert {k: v for k, v in invoices.items() if v} == dict(by_state)
            for family in ("facturasd_queue_jobs", "facturasd_upstream_requests"):
                assert family in families, family
            assert any(name.startswith("facturasd_cache") for name in families)

            # Still one mail for it after the outbox looked again and again.
            dispatched = len(mailbox.messages())
            wait_until(
                lambda: query(db, "SELECT COUNT(*) FROM alerts WHERE sent_at IS NULL") == [(0,)],
                30,
                "every alert handed to the channels",
            )
            assert len(mailed()) == 1 and len(mailbox.messages()) >= dispatched
        finally:
            daemon.kill()
