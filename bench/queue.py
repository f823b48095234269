"""Queue throughput: facturasd's SQLite queue beside persist-queue's SQLiteAckQueue.

    python bench/queue.py [--jobs 2000] [--dir /path/on/the/real/disk]

Both queues run the same workload on a temporary file on the same disk, in the same run:
enqueue N jobs (one producer, then eight concurrent producers), then claim and complete them
with 1 and with 8 workers. Both use WAL with SQLite's default synchronous=FULL, so every
commit waits for an fsync; facturasd groups the writes that arrive during one fsync into one
commit (the "ops/commit" column). Ratios are facturasd / persist-queue.
"""

from __future__ import annotations

import sys

# Run as a script, this file's folder comes first on sys.path and the file itself would shadow
# the standard library's `queue` module (which aiosqlite imports).
if sys.path and sys.path[0] == __file__.rsplit("/", 1)[0]:
    del sys.path[0]

import argparse
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
from persistqueue import SQLiteAckQueue
from persistqueue.exceptions import Empty

from facturasd.store.db import Database
from facturasd.store.queue import Queue

QUEUE = "invoice_processing"
T = TypeVar("T")


class Result:
    def __init__(
        self, rate: float, latency_ms: float | None = None, per_commit: float | None = None
    ):
        self.rate, self.latency_ms, self.per_commit = rate, latency_ms, per_commit


async def _ours_enqueue(path: Path, jobs: int, producers: int) -> Result:
    db = await Database.open(path)
    queue = Queue(db)
    before = db.stats.commits

    async def produce(share: int) -> None:
        for n in range(share):
            await queue.enqueue(QUEUE, "ping", {"n": n})

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for share in _shares(jobs, producers):
            tg.start_soon(produce, share)
    elapsed = time.perf_counter() - started
    commits = db.stats.commits - before
    await db.close()
    return Result(jobs / elapsed, per_commit=jobs / max(commits, 1))


async def _drain(
    take: Callable[[], Awaitable[T | None]],
    finish: Callable[[T], Awaitable[object]],
    workers: int,
) -> tuple[float, float, int]:
    """Rate, median take latency (ms) and count of `workers` tasks taking until empty."""
    latencies: list[float] = []
    done = 0

    async def work() -> None:
        nonlocal done
        while True:
            started = time.perf_counter()
            item = await take()
            latencies.append(time.perf_counter() - started)
            if item is None:
                return
            await finish(item)
            done += 1

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(work)
    return done / (time.perf_counter() - started), statistics.median(latencies) * 1000, done


async def _ours_drain(path: Path, jobs: int, workers: int) -> Result:
    db = await Database.open(path)
    queue = Queue(db)
    before = db.stats.commits
    rate, latency, done = await _drain(partial(queue.claim, [QUEUE], 60), queue.complete, workers)
    commits = db.stats.commits - before
    await db.close()
    assert done == jobs, (done, jobs)
    return Result(rate, latency, 2 * done / max(commits, 1))


def _theirs_enqueue(path: Path, jobs: int, producers: int) -> Result:
    queue = SQLiteAckQueue(str(path), multithreading=True, auto_commit=True)

    def produce(share: int) -> None:
        for n in range(share):
            queue.put({"kind": "ping", "n": n})

    elapsed = _threads([partial(produce, share) for share in _shares(jobs, producers)])
    return Result(jobs / elapsed)


def _theirs_drain(path: Path, jobs: int, workers: int) -> Result:
    queue = SQLiteAckQueue(str(path), multithreading=True, auto_commit=True)
    latencies: list[float] = []
    lock = threading.Lock()
    done = 0

    def work() -> None:
        nonlocal done
        while True:
            started = time.perf_counter()
            try:
                item = queue.get(block=False, raw=True)
            except Empty:
                item = None
            with lock:
                latencies.append(time.perf_counter() - started)
            if item is None:
                return
            queue.ack(id=item["pqid"])
            with lock:
                done += 1

    elapsed = _threads([work] * workers)
    assert done == jobs, (done, jobs)
    return Result(done / elapsed, statistics.median(latencies) * 1000)


async def _theirs_from_asyncio(path: Path, jobs: int, workers: int) -> Result:
    """persist-queue as this daemon would have to use it: each call in a worker thread,
    so the event loop never blocks on SQLite."""
    queue = SQLiteAckQueue(str(path), multithreading=True, auto_commit=True)
    for n in range(jobs):
        queue.put({"kind": "ping", "n": n})

    def take() -> dict[str, Any] | None:
        try:
            item: dict[str, Any] = queue.get(block=False, raw=True)
        except Empty:
            return None
        return item

    async def ack(item: dict[str, Any]) -> None:
        await anyio.to_thread.run_sync(partial(queue.ack, id=item["pqid"]))

    rate, latency, done = await _drain(partial(anyio.to_thread.run_sync, take), ack, workers)
    assert done == jobs, (done, jobs)
    return Result(rate, latency)


def _shares(jobs: int, parts: int) -> list[int]:
    """`jobs` split into `parts` shares that add up exactly."""
    return [jobs // parts + (1 if n < jobs % parts else 0) for n in range(parts)]


def _threads(targets: list[Callable[[], None]]) -> float:
    threads = [threading.Thread(target=target) for target in targets]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary files go")
    args = parser.parse_args()
    jobs = args.jobs

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        rows: list[tuple[str, Result, Result]] = []
        for label, producers in (("enqueue/s, 1 producer", 1), ("enqueue/s, 8 producers", 8)):
            ours = anyio.run(_ours_enqueue, root / f"ours-{producers}.db", jobs, producers)
            theirs = _theirs_enqueue(root / f"theirs-{producers}", jobs, producers)
            rows.append((label, ours, theirs))
        for workers in (1, 8):
            # each drain gets a fresh queue of `jobs` jobs
            ours_path, theirs_path = root / f"ours-d{workers}.db", root / f"theirs-d{workers}"
            anyio.run(_ours_enqueue, ours_path, jobs, 8)
            _theirs_enqueue(theirs_path, jobs, 8)
            ours = anyio.run(_ours_drain, ours_path, jobs, workers)
            theirs = _theirs_drain(theirs_path, jobs, workers)
            rows.append((f"claim+complete/s, {workers} worker(s)", ours, theirs))

            if workers == 8:
                asyncio_path = root / "theirs-asyncio"
                via_threads = anyio.run(_theirs_from_asyncio, asyncio_path, jobs, workers)
                rows.append(("  persist-queue via to_thread", ours, via_threads))

        sync = sqlite3.connect(root / "probe.db").execute("PRAGMA synchronous").fetchone()[0]
        print(f"jobs per run: {jobs}; files in {root.parent}; default synchronous={sync}")
        print(
            f"{'workload':<36}{'facturasd':>10}{'persist-queue':>15}{'ratio':>8}"
            f"{'ops/commit':>12}{'claim p50 ms (ours/theirs)':>30}"
        )
        for label, ours, theirs in rows:
            latency = (
                f"{ours.latency_ms:.3f} / {theirs.latency_ms:.3f}"
                if ours.latency_ms is not None and theirs.latency_ms is not None
                else ""
            )
            per_commit = f"{ours.per_commit:.1f}" if ours.per_commit else ""
            print(
                f"{label:<36}{ours.rate:>10.0f}{theirs.rate:>15.0f}"
                f"{ours.rate / theirs.rate:>7.2f}x{per_commit:>12}{latency:>30}"
            )


if __name__ == "__main__":
    main()
