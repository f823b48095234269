"""Ctrl-C in a terminal: SIGINT to the daemon's whole process group, its parse processes too.

The daemon runs as a real subprocess in a process group of its own, as a shell runs a
foreground job; the signal goes to the group (os.killpg), as the terminal sends it. The worker
processes that parse are out of that group (facturasd/processpool.py).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import anyio
import pytest

from facturasd.constants import DATABASE_FILE
from facturasd.processpool import ProcessPool
from tests.support import (
    DaemonProcess,
    daemon_env,
    drop,
    invoice,
    port_of,
    query,
    wait_healthy,
    wait_until,
    write_config,
)

FAST = '[inbox]\nstable_seconds = "300ms"\nrescan_interval = "1s"\n'
COUNT = 300


@pytest.mark.anyio
async def test_worker_processes_are_out_of_the_terminals_reach() -> None:
    async with ProcessPool(2) as pool:
        # A session (and process group) of their own: a terminal's signals reach only the
        # daemon.
        assert await pool.run(os.getsid, 0) == await pool.run(os.getpid) != os.getsid(0)
        assert await pool.run(os.getpgid, 0) != os.getpgid(0)


@pytest.mark.anyio
async def test_a_worker_process_that_dies_costs_only_its_call() -> None:
    async with ProcessPool(1) as pool:
        with pytest.raises(ValueError, match="invalid literal"):
            await pool.run(int, "x")  # an exception raised there is raised here
        first = await pool.run(os.getpid)
        with pytest.raises(
            anyio.BrokenWorkerProcess, match=r"ended before it answered \(exit status 3\)"
        ):
            await pool.run(os._exit, 3)
        assert await pool.run(os.getpid) != first  # a new one
        # Cancelled (a shutdown past its timeout): its worker is killed, not waited for.
        started = time.monotonic()
        with anyio.move_on_after(0.5):
            await pool.run(time.sleep, 30)
        assert time.monotonic() - started < 5
        assert await pool.run(int, "7") == 7


@pytest.mark.slow
def test_ctrl_c_while_files_are_parsed_stops_it_as_sigterm_does(tmp_path: Path) -> None:
    config = write_config(tmp_path, FAST)
    port = port_of(config)
    data, db = tmp_path / "data", tmp_path / "state" / DATABASE_FILE
    names = [f"factura-{n:03d}.xml" for n in range(COUNT)]

    def run() -> DaemonProcess:
        daemon = DaemonProcess(config, daemon_env(), log_dir=tmp_path, process_group=0)
        wait_healthy(port, daemon)
        return daemon

    def checked() -> int:
        [(count,)] = query(db, "SELECT count(*) FROM invoices WHERE state = 'checked'")
        return int(count)

    daemon = run()
    try:
        for n, name in enumerate(names):
            drop(data / "inbox", name, invoice(n))
        wait_until(lambda: checked() >= 10, 60, "parsing under way")
        os.killpg(daemon.proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        assert daemon.proc.wait(60) == 0, daemon.stderr()
    finally:
        daemon.kill()
    stderr = daemon.stderr()
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert "received SIGINT" in stderr
    assert checked() < COUNT  # interrupted with work left, or the test shows nothing
    # Jobs in flight were handed back; every file taken is where its row says, once.
    assert query(db, "SELECT count(*) FROM jobs WHERE state NOT IN ('queued', 'done')") == [(0,)]
    for (path,) in query(db, "SELECT path FROM invoices"):
        assert Path(str(path)).is_file()
    assert_each_once(data, names)

    daemon = run()  # started again, it finishes what was left
    try:
        wait_until(lambda: checked() == COUNT, 120, "every invoice checked")
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    assert query(db, "SELECT count(*), count(DISTINCT original_name) FROM invoices") == [
        (COUNT, COUNT)
    ]
    assert_each_once(data, names)
    assert not [p for p in (data / "inbox").rglob("*") if p.is_file()]


def assert_each_once(data: Path, names: list[str]) -> None:
    """Each dropped file in exactly one place: the inbox (not taken yet) or one folder."""
    placed = Counter(
        next(name for name in names if path.name.endswith(name))
        for folder in ("inbox", "archive", "rejected", "duplicates")
        for path in (data / folder).rglob("*.xml")
    )
    assert placed == Counter(names)
