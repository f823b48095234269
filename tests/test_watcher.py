"""The watcher in the test's event loop, with a clock the test moves: files that go away while
they wait to hold still, or while they are being taken.

The real ingest takes what the watcher hands on into a real ledger; no worker runs, so the
ledger shows exactly what was taken. Nothing here waits for a file to hold still in real time:
the test moves the watcher's clock once the file is seen.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from blockbuster import BlockBuster

from facturasd.config import Config, load_config
from facturasd.inbox.watcher import Watcher
from facturasd.services import build
from facturasd.store.db import Database
from tests.support import drop, invoice, query, write_config

pytestmark = pytest.mark.anyio

# Longer than any test: a file holds still only when the test moves the clock.
STABLE = 3600.0
GONE = "moved or removed from the inbox by someone before it could be archived"


class Clock:
    """The watcher's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Inbox:
    folder: Path
    watcher: Watcher
    clock: Clock
    db: Database

    async def settle(self, since: int) -> None:
        """Moves the clock on until, two full scans after `since` (the watcher's count of
        rescans read after the test last changed the inbox), nothing waits or is being taken:
        each file in the inbox by then has been taken, or never will be."""
        watcher = self.watcher

        def idle() -> bool:
            # Two: the scan under way when `since` was read may have looked already.
            return watcher.rescans >= since + 2 and watcher.waiting == watcher.taking == 0

        await until(idle, "the watcher idle after two rescans", clock=self.clock)

    def ledger(self) -> list[tuple[Any, ...]]:
        """Each invoice: where it was in the inbox, its state, whether it left the inbox."""
        return query(self.db.path, "SELECT inbox_path, state, archived FROM invoices ORDER BY id")

    def reasons(self) -> list[str]:
        return [
            str(reason)
            for (reason,) in query(self.db.path, "SELECT reason FROM invoice_events ORDER BY id")
        ]


async def until(condition: Callable[[], bool], what: str, *, clock: Clock) -> None:
    """Polls `condition`, moving the clock past any file's wait meanwhile."""
    with anyio.move_on_after(30) as scope:
        while not condition():
            clock.now += STABLE
            await anyio.sleep(0.01)
    if scope.cancelled_caught:
        raise AssertionError(f"timed out waiting for {what}")


def config_for(tmp_path: Path, watch: bool) -> Config:
    settings = (
        f'[inbox]\nstable_seconds = "1h"\nrescan_interval = "50ms"\nwatch = {str(watch).lower()}\n'
    )
    return load_config(write_config(tmp_path, settings), {})


@asynccontextmanager
async def watching(tmp_path: Path, *, watch: bool = True) -> AsyncIterator[Inbox]:
    config = await anyio.to_thread.run_sync(config_for, tmp_path, watch)
    async with build(config) as services:
        clock = Clock()
        watcher = Watcher(
            config.paths.inbox, config.inbox, services.ingest, takers=2, monotonic=clock
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(watcher.run)
            await until(lambda: watcher.rescans > 0, "the first scan", clock=clock)
            yield Inbox(config.paths.inbox, watcher, clock, services.db)
            tg.cancel_scope.cancel()


async def goes_on_taking(inbox: Inbox) -> None:
    """A file dropped now is taken: the watcher is alive."""
    drop(inbox.folder, "después.xml", invoice(99))
    await inbox.settle(inbox.watcher.rescans)
    assert inbox.ledger()[-1] == ("después.xml", "received", 1)


def quiet(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What was logged at WARNING or above."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("watch", [True, False], ids=["events", "rescans only"])
@pytest.mark.parametrize("gone", ["deleted", "moved out"])
async def test_a_file_that_goes_while_it_waits_is_never_taken(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    blockbuster: BlockBuster,
    gone: str,
    watch: bool,
) -> None:
    caplog.set_level(logging.INFO, logger="facturasd")
    async with watching(tmp_path, watch=watch) as inbox:
        path = drop(inbox.folder, "se va.xml", invoice(1))
        with anyio.fail_after(30):
            while inbox.watcher.waiting == 0:  # seen, and waiting to hold still
                await anyio.sleep(0.01)
        if gone == "deleted":
            path.unlink()
        else:
            path.rename(tmp_path / "se fue.xml")
        await inbox.settle(inbox.watcher.rescans)
        assert inbox.ledger() == []
        await goes_on_taking(inbox)
    assert quiet(caplog) == []


async def test_a_file_moved_while_it_is_being_taken_is_taken_where_it_went(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    blockbuster: BlockBuster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="facturasd")
    async with watching(tmp_path) as inbox:
        source = drop(inbox.folder, "movida.xml", invoice(1))
        dest = inbox.folder / "otra carpeta" / "movida.xml"
        moved_at: list[int] = []
        write = inbox.db.write

        async def move_then_write(op: Any) -> Any:
            # Ingest's first write is the file's ledger row: someone moves the file meanwhile.
            monkeypatch.setattr(inbox.db, "write", write)
            await anyio.to_thread.run_sync(os.renames, source, dest)
            moved_at.append(inbox.watcher.rescans)
            return await write(op)

        monkeypatch.setattr(inbox.db, "write", move_then_write)
        await until(lambda: bool(moved_at), "the file moved while being taken", clock=inbox.clock)
        await inbox.settle(moved_at[0])
        # The row of the file that went is closed with the reason; it is taken where it went.
        assert inbox.ledger() == [
            ("movida.xml", "discarded", 1),
            ("otra carpeta/movida.xml", "received", 1),
        ]
        assert GONE in inbox.reasons()
        assert not dest.exists() and not source.exists()
        await goes_on_taking(inbox)
    assert quiet(caplog) == []
    assert "went away while it was being taken" in caplog.text


async def test_a_file_deleted_while_it_is_being_taken_leaves_a_closed_row(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    blockbuster: BlockBuster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="facturasd")
    async with watching(tmp_path) as inbox:
        source = drop(inbox.folder, "borrada.xml", invoice(1))
        deleted_at: list[int] = []
        write = inbox.db.write

        async def delete_then_write(op: Any) -> Any:
            monkeypatch.setattr(inbox.db, "write", write)
            await anyio.Path(source).unlink()
            deleted_at.append(inbox.watcher.rescans)
            return await write(op)

        monkeypatch.setattr(inbox.db, "write", delete_then_write)
        await until(lambda: bool(deleted_at), "the file deleted while taken", clock=inbox.clock)
        await inbox.settle(deleted_at[0])
        assert inbox.ledger() == [("borrada.xml", "discarded", 1)]
        assert GONE in inbox.reasons()
        await goes_on_taking(inbox)
    assert quiet(caplog) == []


@pytest.mark.parametrize("watch", [True, False], ids=["events", "rescans only"])
async def test_a_folder_named_like_a_document_is_walked_into(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, blockbuster: BlockBuster, watch: bool
) -> None:
    """A sub-folder called `x.xml` is a folder: what is inside it is taken, and the folder
    itself is neither taken nor reported as a file that cannot be read. Nor is a named pipe
    called like a document (opening it to check it would wait forever)."""
    caplog.set_level(logging.INFO, logger="facturasd")
    async with watching(tmp_path, watch=watch) as inbox:
        os.mkfifo(inbox.folder / "tubo.xml")
        drop(inbox.folder, "x.xml/factura.xml", invoice(1))
        await inbox.settle(inbox.watcher.rescans)
        assert inbox.ledger() == [("x.xml/factura.xml", "received", 1)]
        assert inbox.watcher.blocked == {}
        await goes_on_taking(inbox)
    assert quiet(caplog) == []
