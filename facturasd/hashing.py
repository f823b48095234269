"""SHA-256 of a file, read in chunks so a huge file never sits in memory."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import IO

import anyio

CHUNK = 1024 * 1024
STEP_CHUNKS = 8


def _feed(handle: IO[bytes], digest: hashlib._Hash) -> bool:
    """A few MiB of `handle` into `digest`; False at the end of the file."""
    for _ in range(STEP_CHUNKS):
        chunk = handle.read(CHUNK)
        if not chunk:
            return False
        digest.update(chunk)
    return True


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while _feed(handle, digest):
            pass
    return digest.hexdigest()


async def hash_file(path: Path) -> str:
    """`sha256_file` off the event loop, a few MiB per trip to a thread, so a daemon asked to
    stop is not held up by a huge file (and a file of a few MiB costs one trip)."""
    digest = hashlib.sha256()
    handle = await anyio.to_thread.run_sync(_open_and_feed, path, digest)
    if handle is not None:
        try:
            while await anyio.to_thread.run_sync(_feed, handle, digest):
                pass
        finally:
            handle.close()
    return digest.hexdigest()


def _open_and_feed(path: Path, digest: hashlib._Hash) -> IO[bytes] | None:
    """Opens `path` and feeds its first MiBs; the open file if there is more to read."""
    handle = path.open("rb")
    try:
        if _feed(handle, digest):
            return handle
    except BaseException:
        handle.close()
        raise
    handle.close()
    return None
