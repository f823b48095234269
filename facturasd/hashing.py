"""SHA-256 of a file, read in chunks so a huge file never sits in memory."""

from __future__ import annotations

import hashlib
from pathlib import Path

import anyio

CHUNK = 1024 * 1024
STEP_CHUNKS = 8


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


async def hash_file(path: Path) -> str:
    """`sha256_file` off the event loop, a few MiB per trip to a thread, so a daemon asked to
    stop is not held up by a huge file."""
    digest = hashlib.sha256()
    handle = await anyio.to_thread.run_sync(path.open, "rb")
    try:

        def step() -> bool:
            for _ in range(STEP_CHUNKS):
                chunk = handle.read(CHUNK)
                if not chunk:
                    return False
                digest.update(chunk)
            return True

        while await anyio.to_thread.run_sync(step):
            pass
    finally:
        await anyio.to_thread.run_sync(handle.close)
    return digest.hexdigest()
