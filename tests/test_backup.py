"""`facturasd backup`, the way it was found wanting: to `/proc/x.db` it ended in a traceback, to
a missing folder it created the folder (a mistyped USB path backed up to the local disk), and
two backups in one second clashed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from facturasd.constants import DATABASE_FILE
from tests.support import PYTHON, daemon_env, enqueue, query, write_config


def ledger(tmp_path: Path) -> Path:
    config = write_config(tmp_path)
    enqueue(tmp_path / "state" / DATABASE_FILE, [("alegra_sync", "ping", {})])
    return config


def backup(config: Path, dest: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PYTHON, "-m", "facturasd", "backup", dest, "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=daemon_env(),
    )


def finished(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


@pytest.mark.slow
def test_a_backup_where_no_file_can_be_written_is_one_line(tmp_path: Path) -> None:
    code, _, err = finished(backup(ledger(tmp_path), "/proc/x.db"))
    assert code == 1
    assert err.splitlines() == [
        "facturasd: /proc/x.db: cannot write a backup there: No such file or directory"
    ]


@pytest.mark.slow
def test_a_backup_to_a_missing_folder_is_refused_not_created(tmp_path: Path) -> None:
    config = ledger(tmp_path)
    usb = tmp_path / "media" / "usb"  # mistyped, or the disk not mounted
    for dest in (f"{usb}/", f"{usb}/facturasd.db"):
        code, _, err = finished(backup(config, dest))
        assert code == 1
        assert f"facturasd: {usb}: no such folder" in err and "Traceback" not in err
    assert not (tmp_path / "media").exists()


@pytest.mark.slow
def test_backups_made_at_once_each_get_their_own_file(tmp_path: Path) -> None:
    config = ledger(tmp_path)
    folder = tmp_path / "copias"
    folder.mkdir()
    runs = [backup(config, f"{folder}/") for _ in range(3)]
    results = [finished(run) for run in runs]
    assert [code for code, _, _ in results] == [0, 0, 0], [err for _, _, err in results]
    copies = sorted(folder.iterdir())
    assert len(copies) == 3, copies
    assert {out.split(":")[0] for _, out, _ in results} == {str(p) for p in copies}
    for copy in copies:
        assert query(copy, "SELECT COUNT(*) FROM jobs") == [(1,)]
    # A named file is never replaced.
    code, _, err = finished(backup(config, str(copies[0])))
    assert code == 1 and "already exists" in err
