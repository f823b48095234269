"""Alegra's client as the daemon relies on it: its limiter, and how Alegra's answers become
typed errors, against the local Alegra over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest
from aiohttp.test_utils import TestServer

from facturasd.alegra.client import Account, AccountBlocked, AlegraClient, AlegraError, Limiter
from facturasd.errors import Unavailable
from facturasd.sandbox.server import PATHS, create_app
from facturasd.sandbox.state import ALEGRA_TOKEN, ALEGRA_USER, Fault, Sandbox

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def client(
    sandbox: Sandbox, token: str = ALEGRA_TOKEN, limiter: Limiter | None = None
) -> AsyncIterator[AlegraClient]:
    server = TestServer(create_app(sandbox), host="127.0.0.1")
    await server.start_server()
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            yield AlegraClient(
                http,
                str(server.make_url(PATHS["alegra"])),
                Account(ALEGRA_USER, token),
                limiter or Limiter(),
            )
    finally:
        await server.close()


async def test_answers_become_typed_errors_and_no_answer_is_unavailable() -> None:
    sandbox = Sandbox()
    async with client(sandbox) as alegra:
        with pytest.raises(AlegraError) as refused:
            await alegra.post("/bills", {"date": "2026-11-02", "provider": {"id": "999"}})
        assert refused.value.code == 11004 and refused.value.status == 400
        sandbox.alegra.block = 900
        with pytest.raises(AccountBlocked) as blocked:
            await alegra.post("/bills", {"date": "2026-11-02"})
        assert blocked.value.code == 900
        sandbox.alegra.block = None
        # A POST that got a 503 may have done nothing or something: not sent again.
        sandbox.faults["alegra"] = Fault(status=503)
        with pytest.raises(Unavailable):
            await alegra.post("/contacts", {"name": "X"})
        assert sandbox.stats()["alegra"]["by_outcome"]["fault"] == 1
        sandbox.faults.clear()
        taxes = await alegra.get("/taxes")
        assert all(isinstance(tax["id"], str) for tax in taxes)  # ids stay strings
    async with client(sandbox, token="wrong") as alegra:
        with pytest.raises(AccountBlocked) as credentials:
            await alegra.get("/taxes")
        assert "wrong" not in str(credentials.value)


async def test_the_limiter_follows_alegras_headers_and_lets_waiters_go_at_stop() -> None:
    """The server says its window is spent (X-Rate-Limit-Remaining 0): the next request waits
    for the reset; at stop, that waiter is let go without sending anything."""
    sandbox = Sandbox()
    sandbox.alegra.rate = 2
    limiter = Limiter(count=150, period=60.0)
    async with client(sandbox, limiter=limiter) as alegra:
        await alegra.get("/taxes")
        await alegra.get("/taxes")  # Remaining: 0, for about a minute
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:

                async def waiting() -> None:
                    with pytest.raises(Unavailable, match="stopping"):
                        await alegra.get("/taxes")

                tg.start_soon(waiting)
                await anyio.sleep(0.2)
                limiter.stop()
        figures = sandbox.stats()["alegra"]
        assert figures["requests"] == 2 and figures["limited"] == 0
