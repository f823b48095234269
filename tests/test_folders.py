"""A folder the daemon cannot write in is named, in /health and in the log, and nothing waits
for it longer than it takes a person to fix it.

The daemon runs as a real subprocess without the capabilities that let root write anywhere
(as the service's own user would); the folders are chmod'ed under it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import drop, get_health, invoice, wait_until
from tests.test_inbox import Office

# Root writes anywhere: the daemon runs without the capabilities that let it.
AS_SERVICE_USER = (
    ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
)
FIX = "cannot be written: make it writable by the service user"


@pytest.fixture
def office(tmp_path: Path) -> Iterator[Office]:
    found = Office(tmp_path, wrapper=AS_SERVICE_USER)
    found.start()
    yield found
    found.kill()


def check(office: Office, key: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_health(office.port).json()["checks"][key]
    return items


def folder_check(office: Office, folder: str) -> dict[str, Any]:
    return next(item for item in check(office, "folders:writable") if item["componentId"] == folder)


def named(office: Office, folder: str, path: Path) -> bool:
    item = folder_check(office, folder)
    return item["status"] == "fail" and f"{path} {FIX}" in item.get("output", "")


def log(office: Office) -> str:
    assert office.daemon is not None
    return office.daemon.stderr()


@pytest.mark.slow
def test_an_archive_that_cannot_be_written_is_named_and_its_files_wait_in_the_inbox(
    office: Office,
) -> None:
    archive = office.data / "archive"
    archive.chmod(0o555)
    waiting = drop(office.inbox, "primera.xml", invoice(1))
    wait_until(lambda: named(office, "archive", archive), 30, "/health naming archive/")
    assert get_health(office.port).status_code == 503
    wait_until(lambda: log(office).count("primera.xml stays in the inbox") >= 2, 30, "a retry")
    # The file is not to blame: the inbox check stays clear, and the log names the folder.
    [inbox] = check(office, "inbox:unreadable")
    assert inbox["status"] == "pass", inbox
    assert f"primera.xml stays in the inbox: {archive} {FIX}" in log(office)
    assert "could not be taken" not in log(office) and "Traceback" not in log(office)
    assert waiting.exists()
    assert office.rows() == [("received", "primera.xml")]  # in the ledger, once

    archive.chmod(0o755)  # fixed: the next rescan takes it
    [(_, state, _)] = office.settled(1, timeout=30)
    assert state == "checked" and not waiting.exists()
    [archived] = office.files("archive")
    wait_until(lambda: folder_check(office, "archive")["status"] == "pass", 30, "/health clear")

    # A folder inside it (a day restored by hand, say) is named itself.
    day = archived.parent
    day.chmod(0o555)
    drop(office.inbox, "segunda.xml", invoice(2))
    wait_until(lambda: named(office, "archive", day), 30, "/health naming the day's folder")
    assert f"segunda.xml stays in the inbox: {day} {FIX}" in log(office)
    day.chmod(0o755)
    rows = office.settled(2, timeout=30)
    assert [(state, name) for _, state, name in rows] == [
        ("checked", "primera.xml"),
        ("checked", "segunda.xml"),
    ]
    wait_until(lambda: folder_check(office, "archive")["status"] == "pass", 30, "/health clear")
    assert "Traceback" not in log(office)


@pytest.mark.slow
def test_an_invoice_that_cannot_go_to_rejected_waits_without_using_up_its_attempts(
    office: Office,
) -> None:
    rejected = office.data / "rejected"
    rejected.chmod(0o555)
    drop(office.inbox, "mal total.xml", invoice(1, prepaid="5.00", override={"total": "1.00"}))
    wait_until(lambda: named(office, "rejected", rejected), 30, "/health naming rejected/")
    assert [i["status"] for i in check(office, "folders:writable") if i["status"] != "pass"] == [
        "fail"
    ]
    # Tried again and again (more often than a job's attempts allow), one line each time.
    wait_until(lambda: log(office).count("mal total.xml stays in") > 6, 60, "several tries")
    assert f"not moved to rejected/: {rejected} {FIX}" in log(office)
    assert "Traceback" not in log(office)
    assert office.rows() == [("received", "mal total.xml")]
    [(state, attempts)] = office.rows("SELECT state, attempts FROM jobs WHERE kind = 'process'")
    assert state in ("queued", "running") and attempts <= 1
    [archived] = office.files("archive")  # where it waits, whole

    rejected.chmod(0o755)
    [(_, state, _)] = office.settled(1, timeout=30)
    assert state == "rejected" and not archived.exists()
    assert {p.name.split("-", 1)[1] for p in office.files("rejected")} == {
        "mal total.xml",
        "mal total.xml.motivo.txt",
    }
    assert office.rows("SELECT state, attempts FROM jobs WHERE kind = 'process'") == [("done", 1)]
    wait_until(lambda: folder_check(office, "rejected")["status"] == "pass", 30, "/health clear")


@pytest.mark.slow
def test_an_inbox_folder_files_cannot_be_removed_from_is_named_not_the_file(
    office: Office,
) -> None:
    # A folder an office user made in the share without the group's write permission: its
    # files open, but cannot leave it.
    folder = office.inbox / "proveedor"
    waiting = drop(folder, "factura.xml", invoice(1))
    folder.chmod(0o555)
    wait_until(lambda: named(office, "inbox", folder), 30, "/health naming the folder")
    wait_until(lambda: f"factura.xml stays in the inbox: {folder} {FIX}" in log(office), 30)
    [inbox] = check(office, "inbox:unreadable")
    assert inbox["status"] == "pass", inbox
    assert waiting.exists() and "Traceback" not in log(office)

    folder.chmod(0o755)
    [(_, state, _)] = office.settled(1, timeout=30)
    assert state == "checked" and not waiting.exists()
    assert len(office.files("archive")) == 1
    wait_until(lambda: folder_check(office, "inbox")["status"] == "pass", 30, "/health clear")
