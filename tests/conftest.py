from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from blockbuster import BlockBuster, blockbuster_ctx
from hypothesis import settings

from tests.redis_server import RedisServer, installed

# CI machines are noisy: no per-example deadline there.
settings.register_profile("ci", deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def not_under_sudo(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI names who acts by the account it runs as, and under sudo by the person who ran
    it (SUDO_USER): the tests expect the account, however they were launched."""
    monkeypatch.delenv("SUDO_USER", raising=False)


@pytest.fixture
def anyio_backend() -> str:
    # aiosqlite and aiohttp are asyncio libraries.
    return "asyncio"


@pytest.fixture
def blockbuster() -> Iterator[BlockBuster]:
    """Fails the test if a component makes a blocking call on the event loop."""
    with blockbuster_ctx("facturasd") as bb:
        yield bb


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server of the test's own; CI installs it, so there its absence fails."""
    if not installed():
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()
