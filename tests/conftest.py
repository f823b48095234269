from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from blockbuster import BlockBuster, blockbuster_ctx
from hypothesis import settings

# CI machines are noisy: no per-example deadline there.
settings.register_profile("ci", deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def anyio_backend() -> str:
    # aiosqlite and aiohttp are asyncio libraries.
    return "asyncio"


@pytest.fixture
def blockbuster() -> Iterator[BlockBuster]:
    """Fails the test if a component makes a blocking call on the event loop."""
    with blockbuster_ctx("facturasd") as bb:
        yield bb
