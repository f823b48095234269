"""The daemon and the tax authorities, as an office runs them: `facturasd sandbox` and `facturasd
run` as real subprocesses, real files dropped in the inbox, the ledger read back.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import uuid as uuids
from pathlib import Path

import pytest

from facturasd.constants import DATABASE_FILE
from facturasd.formats.reader import read
from tests.support import (
    SAMPLES,
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

CFDI40 = SAMPLES / "cfdi" / "cfdi-expresiones__cfdi40-real.xml"
# Short enough for a test: FALLBACK invoices are asked again this often.
FAST = '[inbox]\nstable_seconds = "300ms"\nrescan_interval = "1s"\n[retry]\ninterval = "2s"\n'


def new_copy(source: Path) -> tuple[bytes, str, dict[str, str]]:
    """`source` (a stamped CFDI) with a UUID of its own: the bytes, the UUID and the
    expression's parts SAT would know it by."""
    fresh = str(uuids.uuid4()).upper()
    data = source.read_bytes()
    (inspection,) = read(data, source.name)
    assert inspection.document is not None and inspection.document.uuid
    data = re.sub(re.escape(inspection.document.uuid).encode(), fresh.encode(), data, flags=re.I)
    doc = inspection.document
    assert doc.issuer.tax_id and doc.receiver.tax_id and doc.totals.total
    return data, fresh, {"re": doc.issuer.tax_id, "rr": doc.receiver.tax_id, "tt": doc.totals.total}


def ledger(db: Path) -> dict[str, tuple[str, str]]:
    """original name → (state, compliance)."""
    return {
        str(name): (str(state), str(compliance))
        for name, state, compliance in query(
            db, "SELECT original_name, state, compliance FROM invoices"
        )
    }


@pytest.mark.slow
def test_the_samples_end_as_the_authorities_and_inspect_say(tmp_path: Path) -> None:
    config = write_config(tmp_path, FAST)
    db = tmp_path / "state" / DATABASE_FILE
    inbox = tmp_path / "data" / "inbox"
    samples = sorted(SAMPLES.glob("*/*.xml"))
    # What `facturasd inspect` says of each sample (its checks, with this configuration).
    inspected = run_facturasd("inspect", "--json", "--config", str(config), *map(str, samples))
    verdicts = {
        Path(found["file"]).name: found["verdict"] for found in json.loads(inspected.stdout)
    }
    assert len(verdicts) == len(samples)
    with SandboxProcess("--documents", str(SAMPLES)) as sandbox:
        cancelled, cancelled_uuid, parts = new_copy(CFDI40)
        sandbox.post(f"/_admin/sat/{cancelled_uuid.lower()}", {"estado": "Cancelado", **parts})
        daemon = DaemonProcess(config, daemon_env(**sandbox.env()), log_dir=tmp_path)
        try:
            wait_healthy(port_of(config), daemon)
            for path in samples:
                shutil.copy(path, inbox / path.name)
            drop(inbox, "cancelada.xml", cancelled)

            def settled() -> bool:
                found = ledger(db)
                return len(found) == len(samples) + 1 and all(
                    state != "received"
                    and (state != "checked" or compliance in ("VALIDATED", "FAILED"))
                    for state, compliance in found.values()
                )

            wait_until(settled, 60, "every invoice read and confirmed")
            found = ledger(db)
            for name, verdict in verdicts.items():
                if verdict == "rejected":
                    assert found[name] == ("rejected", "PENDING"), name  # never asked
                else:
                    assert found[name] == ("checked", "VALIDATED"), name
            for name in (
                "cfdi-expresiones__cfdi33-real.xml",
                "cfdi-expresiones__cfdi40-real.xml",
                "siigo-blindacces-FV3.xml",
                "siigo-blindacces-FV7.xml",
                "siigo-blindacces-NC3.xml",
            ):
                assert found[name] == ("checked", "VALIDATED"), name
            assert found["cancelada.xml"] == ("checked", "FAILED")
            # DIAN's word came from the files: not one request to DIAN.
            stats = sandbox.stats()
            assert stats["dian"]["requests"] == 0
            assert stats["sat"]["by_outcome"] == {"vigente": 2, "cancelado": 1}
            [(alert,)] = query(
                db,
                "SELECT code FROM alerts JOIN invoices ON invoices.id = alerts.invoice_id "
                "WHERE original_name = 'cancelada.xml'",
            )
            assert alert == "SAT-INVALID"
            # The evidence is recorded as an attempt: source embedded, no endpoint asked.
            rows = query(
                db,
                "SELECT source, outcome, status FROM authority_attempts "
                "JOIN invoices ON invoices.id = invoice_id "
                "WHERE original_name = 'siigo-blindacces-FV7.xml'",
            )
            assert rows == [("embedded", "valid", "02")]

            # SAT down: new CFDIs wait in FALLBACK, no retry counted, a backup each.
            sandbox.post("/_admin/faults", {"service": "sat", "status": 503, "rate": 1})
            fresh = [new_copy(CFDI40) for _ in range(3)]
            for n, (data, fresh_uuid, parts) in enumerate(fresh):
                sandbox.post(f"/_admin/sat/{fresh_uuid}", {"estado": "Vigente", **parts})
                drop(inbox, f"nueva-{n}.xml", data)

            def compliance_of(prefix: str) -> set[str]:
                return {c for name, (_, c) in ledger(db).items() if name.startswith(prefix)}

            wait_until(lambda: compliance_of("nueva-") == {"FALLBACK"}, 60, "FALLBACK")
            ids = [i for (i,) in query(db, "SELECT id FROM invoices WHERE compliance = 'FALLBACK'")]
            assert len(ids) == 3
            for invoice_id in ids:
                backup = json.loads(
                    (tmp_path / "state" / "fallback" / f"{invoice_id}.json").read_text()
                )
                assert backup["compliance"]["status"] == "FALLBACK"
                assert backup["document"]["uuid"].upper() in {u for _, u, _ in fresh}
            # No retry burned: the jobs are queued with no attempt counted, and no RETRY.
            jobs = query(
                db,
                "SELECT state, attempts FROM jobs WHERE kind = 'confirm' AND dedupe_key IN "
                f"({', '.join(repr(f'confirm:{i}') for i in ids)}) AND state != 'done'",
            )
            assert jobs and all(row == ("queued", 0) for row in jobs), jobs
            sandbox.admin.delete("/_admin/faults").raise_for_status()
            # Asked again within one retry.interval (2 s here), with room for a loaded machine.
            wait_until(lambda: compliance_of("nueva-") == {"VALIDATED"}, 30, "VALIDATED")
            assert daemon.stop() == 0
        finally:
            daemon.kill()
        assert "Traceback" not in daemon.stderr()


@pytest.mark.slow
def test_a_kill_during_fallback_is_resumed_from_the_ledger_and_the_backups(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, FAST.replace('interval = "2s"', 'interval = "1h"'))
    db = tmp_path / "state" / DATABASE_FILE
    inbox = tmp_path / "data" / "inbox"
    with SandboxProcess() as sandbox:
        sandbox.post("/_admin/faults", {"service": "sat", "status": 503, "rate": 1})
        copies = [new_copy(CFDI40) for _ in range(5)]
        for _, fresh_uuid, parts in copies:
            sandbox.post(f"/_admin/sat/{fresh_uuid}", {"estado": "Vigente", **parts})
        env = daemon_env(**sandbox.env())
        daemon = DaemonProcess(config, env, log_dir=tmp_path)
        try:
            wait_healthy(port_of(config), daemon)
            for n, (data, _, _) in enumerate(copies):
                drop(inbox, f"factura-{n}.xml", data)
            wait_until(
                lambda: (
                    query(db, "SELECT count(*) FROM invoices WHERE compliance = 'FALLBACK'")
                    == [(5,)]
                ),
                60,
                "every invoice in FALLBACK",
            )
            daemon.proc.send_signal(signal.SIGKILL)
            daemon.proc.wait(10)
        finally:
            daemon.kill()
        backups = sorted((tmp_path / "state" / "fallback").glob("*.json"))
        assert len(backups) == 5
        sandbox.admin.delete("/_admin/faults").raise_for_status()
        # Restarted: its interval is an hour, yet the FALLBACK invoices are asked at once.
        daemon = DaemonProcess(config, env, log_dir=tmp_path)
        try:
            wait_until(
                lambda: (
                    query(db, "SELECT count(*) FROM invoices WHERE compliance = 'VALIDATED'")
                    == [(5,)]
                ),
                60,
                "every invoice VALIDATED after the restart",
            )
            assert daemon.stop() == 0
        finally:
            daemon.kill()
        assert "asked again" in daemon.stderr()
        # Each was asked until SAT answered; no retry was counted against any.
        assert query(
            db,
            "SELECT count(*) FROM authority_attempts WHERE outcome NOT IN ('unavailable', 'valid')",
        ) == [(0,)]
