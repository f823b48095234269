"""A lost ledger: noticed while the daemon runs, refused at the next start, rebuilt from the
archive folders with `facturasd rebuild-ledger`.

The way it was found: the database file unlinked under a running daemon (it went on writing to
the deleted file, /health `pass`), then an empty ledger created at the next start beside an
archive of files.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import subprocess
from datetime import datetime
from pathlib import Path, PurePosixPath
from zoneinfo import ZoneInfo

import pytest

from facturasd.constants import DATABASE_FILE, LOCK_FILE
from facturasd.hashing import sha256_file
from facturasd.inbox.archive import dated_name, original_name
from tests.support import (
    DaemonProcess,
    daemon_env,
    drop,
    enqueue,
    free_port,
    get_health,
    invoice,
    query,
    run_facturasd,
    wait_healthy,
    wait_until,
    write_config,
)

FAST = '[inbox]\nstable_seconds = "300ms"\nrescan_interval = "1s"\n'
ZONE = ZoneInfo("America/Bogota")  # the default daemon.timezone


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_facturasd(*args, "--config", str(config))


def settled(db: Path, count: int) -> list[tuple[object, ...]]:
    """(original name, state) of each invoice once `count` of them are past `received`."""

    def done() -> bool:
        states = query(db, "SELECT state FROM invoices") if db.exists() else []
        return len(states) >= count and all(state != "received" for (state,) in states)

    wait_until(done, 60, f"{count} invoices settled")
    return query(db, "SELECT original_name, state FROM invoices ORDER BY id")


def files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".motivo.txt")
    )


def archive(root: Path, folder: str, day: datetime, name: str, data: bytes) -> Path:
    """A file put where the daemon would have put it on `day`."""
    path = root / folder / dated_name(day, hashlib.sha256(data).hexdigest(), name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ── names read back ──────────────────────────────────────────────────────────────────────


def test_the_name_a_file_came_with_is_read_back_from_its_dated_name() -> None:
    sha = "ab" * 32
    day = datetime(2026, 11, 28, tzinfo=ZONE)
    first = dated_name(day, sha, "original.xml")
    tagged = dated_name(day, sha, "original.xml", tag="2")
    numbered = dated_name(day, sha, "2-de noviembre.xml")
    present = {first, numbered}
    assert original_name(first, sha, present.__contains__) == "original.xml"
    assert original_name(tagged, sha, present.__contains__) == "original.xml"
    # Looks tagged, but no file of that day has the rest as its name: the digits are its own.
    assert original_name(numbered, sha, present.__contains__) == "2-de noviembre.xml"
    # Not a name facturasd gave these bytes.
    assert original_name(PurePosixPath("2026/11/28/factura.xml"), sha, present.__contains__) is None


# ── rebuild-ledger on an archive ─────────────────────────────────────────────────────────


@pytest.mark.slow
def test_rebuild_ledger_records_every_archived_file_and_queues_it(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    data = tmp_path / "data"
    day = datetime(2026, 11, 28, 15, 30, tzinfo=ZONE)
    good = archive(data, "archive", day, "factura 1.xml", invoice(1))
    bad = archive(data, "rejected", day, "mal total.xml", invoice(2, override={"total": "1.00"}))
    (bad.parent / (bad.name + ".motivo.txt")).write_text("Rechazada\n", encoding="utf-8")
    copy = archive(data, "duplicates", day, "reenviada.xml", invoice(1))
    same_uuid = archive(data, "duplicates", day, "otra.zip", b"PK other bytes, same UUID")
    db = tmp_path / "state" / DATABASE_FILE

    result = cli(config, "rebuild-ledger")
    assert result.returncode == 0, result.stderr
    assert "3 file(s) recorded" in result.stdout and "1 duplicate(s)" in result.stdout
    rows = query(
        db,
        "SELECT id, original_name, path, state, archived, related_to, received_at, sha256 "
        "FROM invoices ORDER BY id",
    )
    by_name = {row[1]: row for row in rows}
    assert set(by_name) == {"factura 1.xml", "mal total.xml", "reenviada.xml", "otra.zip"}
    midnight = datetime(2026, 11, 28, tzinfo=ZONE).timestamp()
    for name, path, state in (
        ("factura 1.xml", good, "received"),
        ("mal total.xml", bad, "received"),  # checked again with today's rules
        ("reenviada.xml", copy, "duplicate"),
        ("otra.zip", same_uuid, "received"),  # a duplicate by UUID: read again
    ):
        _, _, stored, found, archived, _, received_at, sha256 = by_name[name]
        assert (stored, found, archived) == (str(path), state, 1), name
        assert received_at == midnight and sha256 == sha256_file(path)
    assert by_name["reenviada.xml"][5] == by_name["factura 1.xml"][0]
    # The daemon reads each again when it starts.
    queued = query(db, "SELECT payload FROM jobs WHERE kind = 'process' AND state = 'queued'")
    expected = {by_name[n][0] for n in ("factura 1.xml", "mal total.xml", "otra.zip")}
    assert {int(p.split(":")[1].strip(" }")) for (p,) in queued} == expected
    history = query(
        db, "SELECT reason FROM invoice_events WHERE invoice_id = ?", (by_name["mal total.xml"][0],)
    )
    assert any("rebuilt from rejected/2026/11/28/" in reason for (reason,) in history)

    # A ledger with invoices is not rebuilt over...
    again = cli(config, "rebuild-ledger")
    assert again.returncode == 1 and "holds 4 invoice(s)" in again.stderr
    assert "--add-missing" in again.stderr and "Traceback" not in again.stderr
    # ...but the files it does not know can be added (after restoring an older backup).
    archive(data, "archive", day, "después.xml", invoice(3))
    added = cli(config, "rebuild-ledger", "--add-missing")
    assert added.returncode == 0, added.stderr
    assert "1 file(s) recorded" in added.stdout and "4 already in the ledger" in added.stdout
    assert len(query(db, "SELECT id FROM invoices")) == 5


@pytest.mark.slow
def test_the_wal_of_a_deleted_database_does_not_damage_the_rebuilt_one(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    archive(tmp_path / "data", "archive", datetime.now(ZONE), "f.xml", invoice(1))
    db = tmp_path / "state" / DATABASE_FILE
    enqueue(db, [])
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("INSERT INTO kv VALUES ('k', 'v', 0)")
    conn.commit()
    wal = db.with_name(db.name + "-wal")
    frames = wal.read_bytes()  # committed, never checkpointed into the file
    conn.close()
    db.unlink()
    wal.write_bytes(frames)  # left behind by `rm facturasd.db` under a running daemon

    result = cli(config, "rebuild-ledger")
    assert result.returncode == 0, result.stderr
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    assert query(db, "SELECT original_name FROM invoices") == [("f.xml",)]
    kept = list((tmp_path / "state" / "backups").glob("facturasd.db-wal-without-its-database-*"))
    assert [p.read_bytes() for p in kept] == [frames]


@pytest.mark.slow
def test_rebuild_ledger_refuses_beside_a_running_daemon(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    archive(tmp_path / "data", "archive", datetime.now(ZONE), "f.xml", invoice(1))
    state = tmp_path / "state"
    state.mkdir()
    with (state / LOCK_FILE).open("a+") as lock:  # as the daemon holds it
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = cli(config, "rebuild-ledger")
    assert result.returncode == 1
    assert f"pid {os.getpid()}" in result.stderr and "stop it first" in result.stderr
    assert not (state / DATABASE_FILE).exists()


# ── the daemon ───────────────────────────────────────────────────────────────────────────


@pytest.mark.slow
def test_a_database_unlinked_under_the_daemon_is_noticed_refused_and_rebuilt(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = write_config(tmp_path, FAST, port=port)
    db = tmp_path / "state" / DATABASE_FILE
    data = tmp_path / "data"
    daemon = DaemonProcess(config, daemon_env(), log_dir=tmp_path)
    try:
        wait_healthy(port, daemon)
        drop(data / "inbox", "original.xml", invoice(1))
        settled(db, 1)
        drop(data / "inbox", "original.xml", invoice(1))  # the same bytes and name: tagged
        drop(data / "inbox", "2-reenviada.xml", invoice(1))  # a name that looks tagged
        drop(data / "inbox", "mal total.xml", invoice(2, override={"total": "1.00"}))
        before = sorted(settled(db, 4), key=str)

        db.unlink()

        def failing() -> bool:
            response = get_health(port)
            check = response.json()["checks"]["database:file"][0]
            return response.status_code == 503 and "was deleted" in check.get("output", "")

        wait_until(failing, 30, "/health fails naming the deleted database")
        # Taken meanwhile: archived, its row written to the deleted file.
        drop(data / "inbox", "durante.xml", invoice(3))
        wait_until(lambda: not list((data / "inbox").iterdir()), 30, "the inbox emptied")
        assert failing()
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    critical = [line for line in daemon.stderr().splitlines() if "CRITICAL" in line]
    assert len(critical) == 1, critical
    assert str(db) in critical[0] and "rebuild-ledger" in critical[0]

    # The next start refuses to begin an empty ledger beside the archive, and creates nothing.
    refused = DaemonProcess(config, daemon_env(), log_dir=tmp_path)
    assert refused.proc.wait(30) == 2
    [line] = refused.stderr().splitlines()
    assert "no ledger here" in line and "rebuild-ledger" in line and "--new-ledger" in line
    assert not db.exists()
    checked = cli(config, "check-config")
    assert checked.returncode == 2 and "no ledger here" in checked.stderr

    rebuilt = cli(config, "rebuild-ledger")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "3 file(s) recorded" in rebuilt.stdout and "2 duplicate(s)" in rebuilt.stdout
    daemon = DaemonProcess(config, daemon_env(), log_dir=tmp_path)
    try:
        assert wait_healthy(port, daemon).json()["status"] == "pass"
        after = settled(db, 5)
        assert sorted(after, key=str) == sorted([*before, ("durante.xml", "checked")], key=str)
        assert [p.name.split("-", 1)[1] for p in files(data / "rejected")] == ["mal total.xml"]
        assert len(files(data / "duplicates")) == 2 and len(files(data / "archive")) == 2
        history = query(db, "SELECT reason FROM invoice_events WHERE invoice_id = 1")
        assert any("rebuilt from archive/" in reason for (reason,) in history)
        assert daemon.stop() == 0
    finally:
        daemon.kill()


@pytest.mark.slow
def test_a_database_replaced_under_the_daemon_fails_health(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, FAST, port=port)
    db = tmp_path / "state" / DATABASE_FILE
    daemon = DaemonProcess(config, daemon_env(), log_dir=tmp_path)
    try:
        wait_healthy(port, daemon)
        assert cli(config, "backup", str(tmp_path / "copia.db")).returncode == 0
        (tmp_path / "copia.db").rename(db)  # restored the wrong way: under the daemon

        def failing() -> bool:
            check = get_health(port).json()["checks"]["database:file"][0]
            return check["status"] == "fail" and "replaced" in check.get("output", "")

        wait_until(failing, 30, "/health fails naming the replaced database")
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    assert sum("CRITICAL" in line for line in daemon.stderr().splitlines()) == 1


@pytest.mark.slow
def test_new_ledger_starts_empty_beside_an_archive_when_asked(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port=port)
    archive(tmp_path / "data", "archive", datetime.now(ZONE), "f.xml", invoice(1))
    refused = DaemonProcess(config, daemon_env(), log_dir=tmp_path)
    assert refused.proc.wait(30) == 2
    daemon = DaemonProcess(config, daemon_env(), "--new-ledger", log_dir=tmp_path)
    try:
        assert wait_healthy(port, daemon).json()["status"] == "pass"
        assert query(tmp_path / "state" / DATABASE_FILE, "SELECT id FROM invoices") == []
        assert daemon.stop() == 0
    finally:
        daemon.kill()
