"""What facturasd relies on in watchfiles beyond its public API.

The inbox watcher (facturasd/inbox/watcher.py) catches watchfiles' private
`_rust_notify.WatchfilesRustInternalError`: the watch raises it, and stops, on a file name
that is not UTF-8 (a Latin-1 mail client's), and the watcher starts the watch again. If an
upgrade of watchfiles moves it, or stops raising it there, these tests say so and what to do.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import anyio
import pytest
from watchfiles import awatch

pytestmark = pytest.mark.anyio


def internal_error() -> type[Exception]:
    try:
        error: type[Exception] = importlib.import_module(
            "watchfiles._rust_notify"
        ).WatchfilesRustInternalError
    except (ImportError, AttributeError):
        pytest.fail(
            "watchfiles no longer provides _rust_notify.WatchfilesRustInternalError, which "
            "facturasd/inbox/watcher.py catches to watch the inbox again after a file name "
            "that is not UTF-8: find what the watch raises now and catch that instead",
            pytrace=False,
        )
    return error


def test_watchfiles_still_provides_its_internal_error() -> None:
    assert issubclass(internal_error(), Exception)


async def test_the_watch_raises_it_on_a_name_that_is_not_utf8(tmp_path: Path) -> None:
    error = internal_error()
    latin1 = tmp_path / os.fsdecode(b"Compa\xf1ia.xml")
    raised = False
    with anyio.fail_after(30):
        try:
            # Empty change sets come every 100 ms once the watch runs: then the name is made.
            async for changes in awatch(tmp_path, rust_timeout=100, yield_on_timeout=True):
                if changes:
                    break  # reported like any other name
                await anyio.to_thread.run_sync(latin1.write_bytes, b"<Invoice/>")
        except* error:
            raised = True
    if not raised:
        pytest.fail(
            "the watch no longer stops on a file name that is not UTF-8: the restart in "
            "facturasd/inbox/watcher.py (Watcher._events) and its private import can go",
            pytrace=False,
        )
