"""SQLite's own failures leave the store as its typed errors; an operation's own errors reach
the caller as they were raised."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from facturasd.constants import QueueName
from facturasd.errors import (
    LeaseLost,
    RetryLater,
    StoreBusy,
    StoreDamaged,
    StoreDiskError,
    StoreFull,
)
from facturasd.store import db as db_module
from facturasd.store.db import Database
from facturasd.store.queue import Queue

pytestmark = pytest.mark.anyio

Q = QueueName.INVOICE_PROCESSING.value


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "facturasd.db")
    yield database
    await database.close()


def insert(key: str, value: str = "v") -> db_module.Op[None]:
    def op(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO kv (key, value, updated_at) VALUES (?, ?, 0)", (key, value))

    return op


async def test_a_database_another_connection_holds_is_busy_until_it_lets_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "BUSY_TIMEOUT_MS", 100)
    db = await Database.open(tmp_path / "facturasd.db")
    queue = Queue(db)
    other = sqlite3.connect(db.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreBusy, match=r"database is locked \(SQLITE_BUSY\)"):
            await queue.enqueue(Q, "ping", {"n": 1})
        other.execute("ROLLBACK")
        job = await queue.enqueue(Q, "ping", {"n": 2})
        assert [j.id for j in await queue.find()] == [job.id]
    finally:
        other.close()
        await db.close()


async def test_a_file_that_is_not_a_database_is_damaged(tmp_path: Path) -> None:
    path = tmp_path / "facturasd.db"
    path.write_text("Factura 1: 100 USD\n" * 100)
    with pytest.raises(StoreDamaged, match=r"file is not a database \(SQLITE_NOTADB\)"):
        await Database.open(path)


async def test_a_corrupt_database_is_damaged_on_reading_and_writing(tmp_path: Path) -> None:
    path = tmp_path / "facturasd.db"
    db = await Database.open(path)
    schema_pages = (await db.fetchone("PRAGMA page_count"))[0]  # type: ignore[index]
    await db.write(
        lambda conn: conn.executemany(
            "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, 0)",
            [(f"key {n}", "v" * 200) for n in range(2000)],
        )
    )
    page_size = (await db.fetchone("PRAGMA page_size"))[0]  # type: ignore[index]
    await db.close()  # the last connection checkpoints: every page is in the file
    with path.open("r+b") as handle:  # the pages the rows went to, overwritten
        handle.seek(schema_pages * page_size)
        handle.write(b"\xff" * (path.stat().st_size - schema_pages * page_size))
    db = await Database.open(path)
    try:
        with pytest.raises(StoreDamaged, match=r"malformed \(SQLITE_CORRUPT\)"):
            await db.fetchall("SELECT * FROM kv")
        with pytest.raises(StoreDamaged, match=r"malformed \(SQLITE_CORRUPT\)"):
            await db.write(insert("one more"))
    finally:
        await db.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A file system of 1 MiB of its own (a tmpfs: mounting one takes root)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command here to make a small disk")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def fill(path: Path) -> None:
    """Writes `path` until the disk has no room left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError, match="No space left on device"):  # noqa: PT012 (a loop)
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)


async def test_a_full_disk_is_store_full_and_writing_resumes_once_there_is_room(
    small_disk: Path,
) -> None:
    db = await Database.open(small_disk / "facturasd.db")
    queue = Queue(db)
    try:
        first = await queue.enqueue(Q, "ping", {"n": 1})
        fill(small_disk / "filler")
        with pytest.raises(StoreFull, match=r"full \(SQLITE_FULL\)"):
            await queue.enqueue(Q, "ping", {"n": 2})
        (small_disk / "filler").unlink()
        third = await queue.enqueue(Q, "ping", {"n": 3})
        assert [j.id for j in await queue.find()] == [third.id, first.id]
    finally:
        await db.close()


async def test_a_database_at_its_size_limit_is_store_full(db: Database) -> None:
    # SQLite's own limit on the file's pages gives the same error as a full disk, everywhere.
    await db.write(lambda conn: conn.execute("PRAGMA max_page_count = 40"))
    with pytest.raises(StoreFull, match=r"full \(SQLITE_FULL\)"):
        await db.write(insert("big", "x" * 200_000))
    await db.write(insert("small"))
    assert [row["key"] for row in await db.fetchall("SELECT key FROM kv")] == ["small"]


async def test_an_io_error_is_a_disk_error_but_not_a_full_disk(db: Database) -> None:
    # A failing disk cannot be made on demand: the error SQLite raises for one, constructed.
    def op(conn: sqlite3.Connection) -> None:
        exc = sqlite3.OperationalError("disk I/O error")
        exc.sqlite_errorcode = sqlite3.SQLITE_IOERR_WRITE  # type: ignore[attr-defined]
        exc.sqlite_errorname = "SQLITE_IOERR_WRITE"  # type: ignore[attr-defined]
        raise exc

    with pytest.raises(StoreDiskError, match=r"disk I/O error \(SQLITE_IOERR_WRITE\)") as raised:
        await db.write(op)
    assert not isinstance(raised.value, StoreFull)
    assert isinstance(raised.value.__cause__, sqlite3.OperationalError)


async def test_an_operations_own_errors_reach_the_caller_unchanged(db: Database) -> None:
    await db.write(insert("a"))
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        await db.write(insert("a"))
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await db.write(lambda conn: conn.execute("DELETE FROM no_such_table"))
    with pytest.raises(sqlite3.OperationalError, match="no such column"):
        await db.fetchall("SELECT no_such_column FROM kv")

    later = RetryLater("the authority says not yet", 30)

    def asks_later(conn: sqlite3.Connection) -> None:
        raise later

    with pytest.raises(RetryLater) as raised:
        await db.write(asks_later)
    assert raised.value is later

    queue = Queue(db)
    await queue.enqueue(Q, "ping", {})
    job = await queue.claim([Q], 60)
    assert job is not None
    await queue.complete(job)
    with pytest.raises(LeaseLost):
        await queue.complete(job)
