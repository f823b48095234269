"""`facturasd status` and `monitor` as people and scripts use them: the JSON's figures agree
with `invoices list --json` on a ledger the real pipeline filled; the screen says them in
Spanish; a running daemon's health is shown; `monitor --dashboard` and `--watch` run in a real
terminal (tmux), show the counts and leave on Ctrl-C with exit 0."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from facturasd.cli import main
from facturasd.constants import ComplianceStatus, QueueName
from tests.support import (
    PYTHON,
    DaemonProcess,
    daemon_env,
    invoice,
    port_of,
    take,
    wait_healthy,
    wait_until,
    write_config,
)

KEYS = {
    "generated_at", "timezone", "health", "queues", "today", "needs_person", "cache",
    "last_report", "alerts_open",
}  # fmt: skip
# Two correct invoices, one whose total does not add up (rejected), a file that is no invoice.
FILES = {
    "f1.xml": invoice(1),
    "f2.xml": invoice(2),
    "mal total.xml": invoice(3, override={"total": "9999.00"}),
    "basura.xml": b"esto no es una factura",
}
OPEN = {"needs_review", "rejected", "unreadable"}


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(list(args)) == 0
    return capsys.readouterr().out


def listed(capsys: pytest.CaptureFixture[str], config: Path) -> list[dict[str, object]]:
    found: list[dict[str, object]] = json.loads(
        cli(capsys, "invoices", "list", "--json", "--config", str(config))
    )
    return found


def needs_person(invoices: list[dict[str, object]]) -> list[dict[str, object]]:
    """The invoices `status` must count as needing a person, by the ledger's listing."""
    asked = {"checked", "booking", "booked"}
    return [
        i
        for i in invoices
        if i["state"] in OPEN or (i["state"] in asked and i["compliance"] in ("FAILED", "FALLBACK"))
    ]


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    config = write_config(tmp_path)
    take(config, FILES)
    return config


def test_status_json_agrees_with_the_invoice_listing(
    ledger: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    invoices = listed(capsys, ledger)
    snap = json.loads(cli(capsys, "status", "--json", "--config", str(ledger)))

    assert set(snap) == KEYS
    today = snap["today"]
    assert today["total"] == len(invoices) == 4
    states = Counter(str(i["state"]) for i in invoices)
    assert {k: n for k, n in today["by_state"].items() if n} == states
    assert {k: n for k, n in today["by_compliance"].items() if n} == Counter(
        str(i["compliance"]) for i in invoices
    )
    assert set(today["by_compliance"]) >= set(ComplianceStatus)  # every status named

    waiting = needs_person(invoices)
    assert {"rejected", "unreadable"} <= {str(i["state"]) for i in waiting}
    assert snap["needs_person"]["count"] == len(waiting)
    first = snap["needs_person"]["first"]
    assert [p["id"] for p in first] == sorted(int(str(i["id"])) for i in waiting)
    assert all(p["reason"] and p["todo"] for p in first)
    rejected = next(p for p in first if p["state"] == "rejected")
    assert "total" in rejected["reason"].lower()

    # No daemon runs on this state directory: nothing is known of its health or its cache.
    assert snap["health"] == {
        "status": "unknown",
        "score": None,
        "daemon": "offline",
        "sandbox": None,
        "failing": [],
    }
    assert snap["cache"] is None
    assert set(snap["queues"]) == {q.value for q in QueueName}
    processing = snap["queues"][QueueName.INVOICE_PROCESSING]
    assert processing == {"depth": 0, "ready": 0, "oldest_age_seconds": 0.0, "dead": 0}
    assert snap["last_report"] is None
    assert isinstance(snap["alerts_open"], list)


def test_past_the_first_ten_that_need_a_person_the_rest_are_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    take(config, {f"basura {n:02}.xml": f"nada {n}".encode() for n in range(12)})
    snap = json.loads(cli(capsys, "status", "--json", "--config", str(config)))
    assert snap["needs_person"]["count"] == 12
    assert [p["invoice"].split()[-1] for p in snap["needs_person"]["first"]] == [
        f"{n:02}.xml)" for n in range(10)
    ]
    out = cli(capsys, "status", "--config", str(config))
    assert "Necesitan una persona: 12" in out
    assert "… y 2 más (el reporte diario las lista todas: facturasd report)" in out


def test_the_last_report_written_is_named(ledger: Path, capsys: pytest.CaptureFixture[str]) -> None:
    written = json.loads(cli(capsys, "report", "--json", "--config", str(ledger)))
    snap = json.loads(cli(capsys, "status", "--json", "--config", str(ledger)))
    assert snap["last_report"]["path"] == written["md"]
    assert snap["last_report"]["written_at"][:10] == snap["generated_at"][:10]


def test_monitor_json_is_one_object_with_the_figures_of_status(
    ledger: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = json.loads(cli(capsys, "status", "--json", "--config", str(ledger)))
    monitor = json.loads(cli(capsys, "monitor", "--json", "--config", str(ledger)))
    assert isinstance(monitor, dict)
    # The same figures a moment later: the jobs waiting have waited longer.
    for snap in (status, monitor):
        del snap["generated_at"]
        for queue in snap["queues"].values():
            del queue["oldest_age_seconds"]
    assert monitor == status


def test_the_status_screen_says_the_counts_in_spanish(
    ledger: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    invoices = listed(capsys, ledger)
    out = cli(capsys, "status", "--config", str(ledger))
    assert "Salud: desconocida (el daemon no está corriendo" in out
    assert "Hoy: 4 facturas recibidas" in out
    assert "rechazada 1" in out and "ilegible 1" in out
    assert f"Necesitan una persona: {len(needs_person(invoices))}" in out
    assert "Último reporte: ninguno" in out
    assert re.search(r"invoice_processing\s+0\s+0\s+0\s+0", out)

    english = cli(capsys, "status", "--lang", "en", "--config", str(ledger))
    assert "Today: 4 invoices received" in english and "rejected 1" in english


@pytest.mark.slow
def test_status_shows_the_running_daemons_health(
    ledger: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = DaemonProcess(ledger, daemon_env(), log_dir=tmp_path)
    try:
        health = wait_healthy(port_of(ledger), daemon).json()
        snap = json.loads(cli(capsys, "status", "--json", "--config", str(ledger)))
    finally:
        daemon.stop()
    assert snap["health"]["daemon"] == "running"
    assert (snap["health"]["status"], snap["health"]["score"]) == (
        health["status"],
        health["score"],
    )
    not_passing = {
        key for key, items in health["checks"].items() if any(i["status"] != "pass" for i in items)
    }
    assert {f["check"] for f in snap["health"]["failing"]} == not_passing


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)"
)
@pytest.mark.parametrize(
    ("view", "shown"),
    [
        ("--dashboard", [r"Hoy: 4 facturas recibidas", r"rechazada\s+1", r"ilegible\s+1"]),
        ("--watch", [r"Hoy: 4 facturas recibidas", r"rechazada 1 ", r"ilegible 1"]),
    ],
)
def test_monitor_in_a_terminal_shows_the_counts_and_leaves_on_ctrl_c(
    ledger: Path, tmp_path: Path, view: str, shown: list[str]
) -> None:
    socket = tmp_path / "tmux.sock"
    exit_file = tmp_path / "exit"
    # A tmux server of the test's own (its socket, no user configuration), so the command
    # runs with this environment; the shell writes the command's exit status when it ends.
    command = (
        f"{PYTHON} -m facturasd monitor {view} --interval 1 --config {ledger}; "
        f"echo $? > {exit_file}"
    )
    tmux = ["tmux", "-S", str(socket), "-f", "/dev/null"]
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", "monitor", "-x", "160", "-y", "50", command],
        check=True,
        env=daemon_env(),
    )

    def screen() -> str:
        captured = subprocess.run(
            [*tmux, "capture-pane", "-p", "-t", "monitor"], capture_output=True, text=True
        )
        return captured.stdout

    try:
        wait_until(
            lambda: all(re.search(p, screen()) for p in [*shown, r"Necesitan una persona: 2"]),
            timeout=30,
            what=f"monitor {view} to show the counts",
        )
        assert "Traceback" not in screen()
        subprocess.run([*tmux, "send-keys", "-t", "monitor", "C-c"], check=True)
        wait_until(exit_file.exists, timeout=30, what="monitor to end on Ctrl-C")
        wait_until(lambda: exit_file.read_text().strip() != "", timeout=5)
        assert exit_file.read_text().strip() == "0"
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
