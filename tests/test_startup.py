"""Start-up problems: `check-config` (the unit's ExecStartPre) finds them first, and `run`
says each in one line, never a traceback, before it touches the database.

The way they were found: a read-only database file passed check-config, then `run` died with
`sqlite3.OperationalError: attempt to write a readonly database`; a port in use said
`[Errno 98]` without naming the setting, after creating and migrating a new database.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from facturasd.constants import DATABASE_FILE
from tests.support import (
    DaemonProcess,
    daemon_env,
    enqueue,
    free_port,
    run_facturasd,
    wait_healthy,
    write_config,
)

# Root writes any file: the command runs without the capabilities that let it, as the
# service's own user would.
UNPRIVILEGED: Sequence[str] = (
    ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
)


def facturasd(
    config: Path, *args: str, wrapper: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    return run_facturasd(*args, "--config", str(config), wrapper=wrapper)


@pytest.mark.slow
def test_a_read_only_database_is_refused_by_check_config_and_by_run(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    db = tmp_path / "state" / DATABASE_FILE
    enqueue(db, [])  # a ledger the daemon made before
    db.chmod(0o444)

    checked = facturasd(config, "check-config", wrapper=UNPRIVILEGED)
    assert checked.returncode == 2
    assert f"error: paths.state_dir: '{db}' is not readable and writable" in checked.stderr

    ran = facturasd(config, "run", wrapper=UNPRIVILEGED)
    assert ran.returncode == 1
    [line] = ran.stderr.splitlines()
    assert str(db) in line and "cannot write the database" in line and "SQLITE_READONLY" in line


@pytest.mark.slow
def test_a_port_in_use_is_named_and_no_database_is_created(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, port=port)

        ran = facturasd(config, "run")
        assert ran.returncode == 1
        [line] = ran.stderr.splitlines()
        assert f"http.bind = '127.0.0.1:{port}'" in line and "FACTURASD_HTTP__BIND" in line
        assert "Address already in use" in line and "Traceback" not in line
        assert not (tmp_path / "state" / DATABASE_FILE).exists()

        checked = facturasd(config, "check-config")
        assert checked.returncode == 2
        assert f"error: http.bind = '127.0.0.1:{port}'" in checked.stderr


@pytest.mark.slow
def test_check_config_beside_the_running_daemon_says_so(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port=port)
    daemon = DaemonProcess(config, daemon_env(), log_dir=tmp_path)
    try:
        wait_healthy(port, daemon)
        checked = facturasd(config, "check-config")
        assert checked.returncode == 0, checked.stderr
        assert f"daemon running (pid {daemon.proc.pid})" in checked.stderr
        assert "http.bind =" not in checked.stderr
        assert daemon.stop() == 0
    finally:
        daemon.kill()
