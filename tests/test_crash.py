"""kill -9 in the middle of work, then restart: every job completes, no effect twice."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from facturasd.constants import DATABASE_FILE
from tests.support import (
    PYTHON,
    REPO,
    daemon_env,
    enqueue,
    query,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.slow

JOBS = 500


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen(
            [PYTHON, str(REPO / "tests" / "crashworker.py"), str(config)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=daemon_env(),
            cwd=REPO,
        )


def test_sigkill_mid_run_then_restart_completes_every_job_exactly_once(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    db_path = tmp_path / "state" / DATABASE_FILE
    enqueue(db_path, [("invoice_processing", "record", {"n": n}) for n in range(JOBS)])
    with sqlite3.connect(db_path) as conn:
        conn.execute("CREATE TABLE effects (job_id INTEGER NOT NULL, n INTEGER NOT NULL)")
    log = tmp_path / "worker.log"

    def effects() -> int:
        return int(query(db_path, "SELECT COUNT(*) FROM effects")[0][0])  # type: ignore[arg-type]

    def busy_after_a_fifth() -> bool:
        done, running = query(
            db_path,
            "SELECT (SELECT COUNT(*) FROM effects), "
            "(SELECT COUNT(*) FROM jobs WHERE state = 'running')",
        )[0]
        return done >= JOBS // 5 and running > 0  # type: ignore[operator]

    first = start(config, log)
    try:
        # Workers complete in step (their commits are grouped): kill when some are mid-job.
        wait_until(busy_after_a_fifth, 120, "a fifth of the jobs done and others in flight")
        first.send_signal(signal.SIGKILL)
        assert first.wait(30) == -signal.SIGKILL
    finally:
        first.kill()
    done_at_kill = effects()
    running_at_kill = query(db_path, "SELECT COUNT(*) FROM jobs WHERE state = 'running'")[0][0]
    assert 0 < done_at_kill < JOBS, "the kill must land in the middle of the work"
    assert running_at_kill, "the kill must leave jobs in flight"

    second = start(config, log)
    try:
        wait_until(lambda: effects() >= JOBS, 180, "every job's effect")
        wait_until(
            lambda: query(db_path, "SELECT COUNT(*) FROM jobs WHERE state != 'done'")[0][0] == 0,
            60,
            "every job to be done",
        )
        # `facturasd backup` works beside the running daemon
        backup = subprocess.run(
            [
                PYTHON,
                "-m",
                "facturasd",
                "backup",
                str(tmp_path / "copy.db"),
                "--config",
                str(config),
            ],
            capture_output=True,
            text=True,
            env=daemon_env(),
            timeout=60,
        )
        assert backup.returncode == 0, backup.stderr
        assert "integrity check ok" in backup.stdout
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, log.read_text()
    finally:
        second.kill()

    assert query(
        db_path, "SELECT COUNT(*), COUNT(DISTINCT job_id), COUNT(DISTINCT n) FROM effects"
    ) == [(JOBS, JOBS, JOBS)]
    assert query(db_path, "SELECT state, COUNT(*) FROM jobs GROUP BY state") == [("done", JOBS)]
    assert query(tmp_path / "copy.db", "SELECT COUNT(*) FROM jobs") == [(JOBS,)]
