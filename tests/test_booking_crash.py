"""No bill twice across kill -9: the daemon and the local servers as real processes, the
daemon killed with SIGKILL while it books, then started again on the same ledger."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest

from tests.documents import Item, cfdi40
from tests.support import (
    DaemonProcess,
    SandboxProcess,
    daemon_env,
    drop,
    port_of,
    query,
    run_facturasd,
    wait_healthy,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.slow


def copies(count: int) -> dict[str, bytes]:
    """`count` CFDIs of one supplier, each with a UUID of its own."""
    return {
        f"copia-{n:03}.xml": cfdi40(
            [Item(f"Servicio {n}", "1", f"{100 + n}.00", "16")],
            override={"uuid": f"5E2D1C0B-3A4F-4B6C-9D8E-{n:012X}"},
        )
        for n in range(count)
    }


def bills(sandbox: SandboxProcess) -> list[dict[str, object]]:
    """Every bill of the local Alegra, through its API."""
    base, found, start = sandbox.urls["alegra"], [], 0
    with httpx.Client(auth=("sandbox@facturasd.local", "sandbox"), timeout=30) as http:
        while True:
            page = http.get(f"{base}/bills", params={"start": start, "limit": 30}).json()
            found += page
            if len(page) < 30:
                return found
            start += 30


def subscriptions(sandbox: SandboxProcess) -> list[object]:
    with httpx.Client(auth=("sandbox@facturasd.local", "sandbox"), timeout=30) as http:
        found: list[object] = http.get(f"{sandbox.urls['alegra']}/webhooks/subscriptions").json()
    return found


def endpoints(sandbox: SandboxProcess) -> dict[str, object]:
    """Requests the local Alegra served, by endpoint."""
    found: dict[str, object] = sandbox.stats()["alegra"]["by_endpoint"]  # type: ignore[assignment]
    return found


def know(sandbox: SandboxProcess, files: dict[str, bytes]) -> None:
    """SAT knows each CFDI in force (its admin endpoint, as an office's test would)."""
    from facturasd.formats.reader import read

    for name, data in files.items():
        (inspection,) = read(data, name)
        doc = inspection.document
        assert doc is not None and doc.uuid and doc.totals.total
        sandbox.post(
            f"/_admin/sat/{doc.uuid}",
            {"re": doc.issuer.tax_id, "rr": doc.receiver.tax_id, "tt": doc.totals.total},
        )


def booked(config: Path) -> int:
    db = config.parent / "state" / "facturasd.db"
    ((count,),) = query(db, "SELECT COUNT(*) FROM invoices WHERE state = 'booked'")
    return int(count)  # type: ignore[call-overload]


@pytest.mark.parametrize("held", [False, True])
def test_sigkill_while_booking_leaves_one_bill_per_invoice(tmp_path: Path, held: bool) -> None:
    """Dropped at once, killed in the middle (`held`: exactly between a POST that created its
    bill and the commit that records it), started again: every invoice booked, once."""
    files = copies(12 if held else 60)
    # (Alegra's limit raised: its pace is the 429 storm's test, not this one's)
    with SandboxProcess("--alegra-rate", "600/m", services=3) as sandbox:
        know(sandbox, files)
        config = write_config(tmp_path)
        # Alegra's webhooks to this daemon's own address (no proxy needed on one machine).
        hooks = f"http://127.0.0.1:{port_of(config)}"
        env = daemon_env(
            **sandbox.env(),
            **sandbox.alegra_env(tmp_path),
            FACTURASD_ALEGRA__WEBHOOKS_URL=hooks,
        )
        if held:  # Alegra creates the bill, then holds its answer
            sandbox.post(
                "/_admin/faults",
                {"service": "alegra", "hold_ms": 60000, "endpoint": "POST /bills"},
            )
        daemon = DaemonProcess(config, env, log_dir=tmp_path)
        try:
            wait_healthy(port_of(config), daemon)
            # At start: subscribed to Alegra's changes, the empty cache warmed up.
            wait_until(lambda: len(subscriptions(sandbox)) == 6, what="webhooks subscribed")
            wait_until(lambda: "GET /taxes" in endpoints(sandbox), what="the cache warmed up")
            inbox = tmp_path / "data" / "inbox"
            for name, data in files.items():
                drop(inbox, name, data)
            if held:
                wait_until(lambda: len(bills(sandbox)) >= 1, what="a bill posted")
            else:
                wait_until(lambda: len(bills(sandbox)) >= len(files) // 3, what="bills posted")
            daemon.proc.send_signal(signal.SIGKILL)
            daemon.proc.wait(30)
        finally:
            daemon.kill()
        if held:
            sandbox.admin.delete("/_admin/faults").raise_for_status()
        daemon = DaemonProcess(config, env, log_dir=tmp_path)
        try:
            wait_healthy(port_of(config), daemon)
            wait_until(
                lambda: booked(config) == len(files), timeout=180, what="every invoice booked"
            )
            # The subscriptions the killed run left were deleted: six, not twelve. An edit in
            # Alegra reaches this daemon's /hooks/alegra.
            assert len(subscriptions(sandbox)) == 6
            (bill, *_) = bills(sandbox)
            provider = bill["provider"]["id"]  # type: ignore[index]
            edited = sandbox.post(f"/_admin/alegra/contacts/{provider}", {"name": "Otro"})
            assert edited["delivered"] == 1 and edited["failed"] == 0
        finally:
            assert daemon.stop() == 0, daemon.stderr()
        assert subscriptions(sandbox) == []  # a clean stop deletes what it owns
        found = bills(sandbox)
        markers = [str(b["observations"]) for b in found]
        assert len(found) == len(files), daemon.stderr()
        assert len(set(markers)) == len(files)
        ids = query(config.parent / "state" / "facturasd.db", "SELECT alegra_bill_id FROM invoices")
        assert sorted(str(i) for (i,) in ids) == sorted(str(b["id"]) for b in found)
        if held:
            assert "found in Alegra after an interrupted booking" in daemon.stderr()
        # What a person reads of one of them: its bill.
        (first,) = query(
            config.parent / "state" / "facturasd.db",
            "SELECT id, alegra_bill_id FROM invoices ORDER BY id LIMIT 1",
        )
        shown = run_facturasd(
            "invoices", "show", str(first[0]), "--json", "--config", str(config), env=env
        )
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["alegra_bill_id"] == first[1]
        shown = run_facturasd("invoices", "show", str(first[0]), "--config", str(config), env=env)
        assert f"factura de proveedor en Alegra: {first[1]}" in shown.stdout


def test_check_config_online_says_whether_alegra_takes_the_credentials(tmp_path: Path) -> None:
    with SandboxProcess(services=3) as sandbox:
        env = daemon_env(**sandbox.alegra_env(tmp_path))
        config = write_config(tmp_path)
        accepted = run_facturasd("check-config", "--online", "--config", str(config), env=env)
        assert accepted.returncode == 0, accepted.stderr
        (tmp_path / "alegra-token").write_text("not-the-token", encoding="utf-8")
        refused = run_facturasd("check-config", "--online", "--config", str(config), env=env)
        assert refused.returncode == 2
        assert "Alegra does not accept sandbox@facturasd.local" in refused.stderr
        assert "not-the-token" not in refused.stderr + refused.stdout
        # Without --online, nothing is asked; a token file that is not there stops the start.
        offline = run_facturasd("check-config", "--config", str(config), env=env)
        assert offline.returncode == 0, offline.stderr
        (tmp_path / "alegra-token").unlink()
        missing = run_facturasd("check-config", "--config", str(config), env=env)
        assert missing.returncode == 2
        assert "error: alegra.token_file:" in missing.stderr
