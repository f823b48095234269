"""The real daemon with one extra job kind, `record`, for the crash test.

`record`'s effect is a row in the side table `effects`, written by `complete()` in the same
transaction that marks the job done. The table has no unique constraint on purpose: a job whose
effect were applied twice would show as two rows.
"""

from __future__ import annotations

import random
import sqlite3
import sys
from pathlib import Path

import anyio

from facturasd import logs
from facturasd.config import load_config
from facturasd.daemon import Daemon
from facturasd.store.queue import Effect, Job


async def record(job: Job) -> Effect | None:
    await anyio.sleep(random.uniform(0.02, 0.05))  # work that takes a little time

    def effect(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO effects (job_id, n) VALUES (?, ?)", (job.id, job.payload["n"]))

    return effect


def main() -> None:
    config = load_config(Path(sys.argv[1]), {})
    logs.configure("text", "warning")
    anyio.run(Daemon(config, handlers={"record": record}).run)


if __name__ == "__main__":
    main()
