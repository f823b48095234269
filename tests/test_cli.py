"""`facturasd jobs`: the dead jobs a person can see and run again."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from facturasd.constants import DATABASE_FILE
from tests.support import enqueue, query, run_facturasd, write_config


def jobs(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_facturasd("jobs", "--config", str(config), *args)


@pytest.mark.slow
def test_jobs_lists_and_reruns_dead_jobs(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    db_path = tmp_path / "state" / DATABASE_FILE
    live, dead = enqueue(db_path, [("alegra_sync", "ping", {}), ("alegra_sync", "ping", {})])
    with_error = (
        "UPDATE jobs SET state = 'dead', attempts = 5, last_error = 'HTTP 500' WHERE id = ?"
    )
    query(db_path, with_error, (dead,))

    listed = jobs(config, "--state", "dead", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(j["id"], j["state"], j["last_error"]) for j in json.loads(listed.stdout)] == [
        (dead, "dead", "HTTP 500")
    ]
    header, *rows = jobs(config).stdout.splitlines()
    assert header.split()[:2] == ["ID", "ESTADO"]
    # Newest first, each with its last error; in Spanish by default (reports.language), the
    # error, the exception's own English text, labelled so.
    assert [row.split()[:2] for row in rows] == [[str(dead), "muerta"], [str(live), "en"]]
    assert "en cola" in rows[1] and "queued" not in rows[1]
    assert "ÚLTIMO ERROR (EN INGLÉS)" in header and rows[0].endswith("HTTP 500")
    english = jobs(config, "--lang", "en").stdout.splitlines()
    assert [row.split()[:2] for row in english[1:]] == [[str(dead), "dead"], [str(live), "queued"]]

    rerun = jobs(config, "--retry", str(dead), "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)[0]["state"] == "queued"
    assert query(db_path, "SELECT state, attempts FROM jobs WHERE id = ?", (dead,)) == [
        ("queued", 0)
    ]

    again = jobs(config, "--retry", str(dead))
    assert again.returncode == 1
    assert f"job {dead}: no dead job with this id" in again.stderr


@pytest.mark.slow
def test_jobs_without_a_database_says_so(tmp_path: Path) -> None:
    result = jobs(write_config(tmp_path))
    assert result.returncode == 1
    assert "no database here" in result.stderr and "Traceback" not in result.stderr
