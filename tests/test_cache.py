"""The Alegra look-up cache on memory and on a real redis-server: hits and misses, TTLs per kind,
invalidation by key and by pattern, the seed's metrics, and a Redis that goes away."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis

from facturasd.alegra.cache import KINDS, AlegraCache, open_cache
from facturasd.config.sections import Cache, CacheTtl
from tests.redis_server import RedisServer
from tests.support import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("blockbuster")]

PROVIDER = {"id": "7", "name": "Blindacces S.A.S.", "identification": "900123456"}


def settings(
    backend: str = "memory",
    url: str = "redis://127.0.0.1:6379/0",
    *,
    contacts: float = 3600,
    items: float = 1800,
    accounts: float = 7200,
) -> Cache:
    return Cache.model_validate(
        {
            "backend": backend,
            "url": url,
            "ttl": CacheTtl(contacts=contacts, items=items, accounts=accounts),
        }
    )


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def cache_on(
    backend: str, request: pytest.FixtureRequest, **ttls: float
) -> AsyncIterator[AlegraCache]:
    """The cache on `backend`; for Redis, the test's own redis-server."""
    url = request.getfixturevalue("redis_server").url if backend == "redis" else ""
    async with open_cache(settings(backend, url or "redis://127.0.0.1:6379/0", **ttls)) as cache:
        yield cache


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    with anyio.fail_after(10):
        while not await check():
            await anyio.sleep(0.02)


async def test_hits_and_misses_are_counted_per_kind(
    backend: str, request: pytest.FixtureRequest
) -> None:
    async with cache_on(backend, request) as cache:
        assert cache.backend == backend
        assert await cache.get("acme", "contacts", "900123456") is None
        await cache.set("acme", "contacts", "900123456", PROVIDER)
        assert await cache.get("acme", "contacts", "900123456") == PROVIDER
        assert await cache.get("acme", "contacts", "900123456") == PROVIDER
        assert await cache.get("acme", "items", "Servicio") is None
        # Another company does not see acme's provider.
        assert await cache.get("globex", "contacts", "900123456") is None

        metrics = await cache.metrics()
    assert (metrics["hits"], metrics["misses"], metrics["hit_rate"]) == (2, 3, 40.0)
    assert metrics["by_type"]["contacts"] == {
        "hits": 2,
        "misses": 2,
        "hit_rate": 50.0,
        "invalidations": 0,
        "keys": 1,
    }
    assert metrics["by_type"]["items"]["hit_rate"] == 0.0
    assert metrics["by_type"]["taxes"]["hits"] == metrics["by_type"]["taxes"]["misses"] == 0


async def test_a_value_read_back_is_a_copy(backend: str, request: pytest.FixtureRequest) -> None:
    async with cache_on(backend, request) as cache:
        await cache.set("acme", "taxes", "all", [{"id": "1", "percentage": "19.00"}])
        first = await cache.get("acme", "taxes", "all")
        first[0]["percentage"] = "0.00"
        assert await cache.get("acme", "taxes", "all") == [{"id": "1", "percentage": "19.00"}]


async def test_each_kind_expires_after_its_own_ttl(
    backend: str, request: pytest.FixtureRequest
) -> None:
    async with cache_on(backend, request, contacts=0.3, items=0.8, accounts=60) as cache:
        for kind in KINDS:
            await cache.set("acme", kind, "1", {"id": "1"})

        async def gone(kind: str) -> bool:
            return await cache.get("acme", kind, "1") is None

        await eventually(lambda: gone("contacts"))
        assert await cache.get("acme", "items", "1") == {"id": "1"}
        await eventually(lambda: gone("items"))
        # Accounts, taxes and retentions share the accounts TTL.
        for kind in ("accounts", "taxes", "retentions"):
            assert await cache.get("acme", kind, "1") == {"id": "1"}
        assert await cache.count("acme") == 3


async def test_a_ttl_of_zero_keeps_nothing(backend: str, request: pytest.FixtureRequest) -> None:
    async with cache_on(backend, request, items=0) as cache:
        await cache.set("acme", "items", "Servicio", {"id": "1"})
        assert await cache.get("acme", "items", "Servicio") is None
        assert await cache.count() == 0


async def test_invalidate_one_key(backend: str, request: pytest.FixtureRequest) -> None:
    async with cache_on(backend, request) as cache:
        await cache.set("acme", "contacts", "7", PROVIDER)
        await cache.set("acme", "contacts", "8", PROVIDER)
        await cache.set("globex", "contacts", "7", PROVIDER)

        assert await cache.invalidate("acme", "contacts", "7") is True
        assert await cache.invalidate("acme", "contacts", "7") is False

        assert await cache.get("acme", "contacts", "7") is None
        assert await cache.get("acme", "contacts", "8") == PROVIDER
        assert await cache.get("globex", "contacts", "7") == PROVIDER
        metrics = await cache.metrics()
    assert metrics["invalidations"] == metrics["by_type"]["contacts"]["invalidations"] == 1


async def test_invalidate_by_pattern(backend: str, request: pytest.FixtureRequest) -> None:
    async with cache_on(backend, request) as cache:
        for scope in ("acme", "globex"):
            for kind in ("contacts", "items"):
                for key in ("1", "2", "12"):
                    await cache.set(scope, kind, key, {"id": key})

        # A regex searched anywhere in "scope:kind:key".
        assert await cache.invalidate_pattern(r"^acme:contacts:") == 3
        assert await cache.invalidate_pattern(r":items:1$") == 2
        assert await cache.invalidate_pattern(r"^nobody:") == 0

        assert await cache.get("acme", "contacts", "2") is None
        assert await cache.get("acme", "items", "1") is None
        assert await cache.get("globex", "items", "1") is None
        assert await cache.get("acme", "items", "12") == {"id": "12"}
        assert await cache.get("globex", "contacts", "1") == {"id": "1"}
        assert (await cache.count("acme"), await cache.count("globex")) == (2, 5)
        metrics = await cache.metrics()
    assert metrics["invalidations"] == 5
    assert metrics["by_type"]["contacts"]["invalidations"] == 3
    assert metrics["by_type"]["items"]["invalidations"] == 2


async def test_metrics_describe_the_live_keys(backend: str, request: pytest.FixtureRequest) -> None:
    async with cache_on(backend, request, contacts=100, items=50, accounts=200) as cache:
        assert await cache.count() == 0
        empty = await cache.metrics()
        assert (empty["keys"], empty["memory_usage_mb"], empty["avg_ttl_seconds"]) == (0, 0, 0)

        for n in range(4):
            await cache.set("acme", "contacts", str(n), PROVIDER | {"id": str(n)})
        await cache.set("acme", "items", "Servicio", {"id": "1", "name": "Servicio"})
        await cache.set("globex", "retentions", "all", [{"id": "3", "percentage": "2.50"}])
        metrics = await cache.metrics()

    assert set(metrics) == {
        "backend",
        "hits",
        "misses",
        "hit_rate",
        "invalidations",
        "errors",
        "memory_usage_mb",
        "avg_ttl_seconds",
        "keys",
        "by_type",
    }
    assert metrics["backend"] == backend
    assert metrics["errors"] == 0
    assert metrics["keys"] == 6
    assert {kind: figures["keys"] for kind, figures in metrics["by_type"].items()} == {
        "contacts": 4,
        "items": 1,
        "accounts": 0,
        "taxes": 0,
        "retentions": 1,
    }
    assert 0 < metrics["memory_usage_mb"] < 0.01
    # (4 × 100 + 50 + 200) / 6, less the little time the test took.
    assert 100 < metrics["avg_ttl_seconds"] <= 108.4


async def test_an_unknown_kind_is_a_mistake() -> None:
    async with open_cache(settings()) as cache:
        with pytest.raises(ValueError, match="unknown cache kind 'bills'"):
            await cache.get("acme", "bills", "1")


async def test_redis_keys_live_under_our_namespace(redis_server: RedisServer) -> None:
    async with (
        open_cache(settings("redis", redis_server.url, contacts=90)) as cache,
        Redis.from_url(redis_server.url, decode_responses=True) as redis,
    ):
        await cache.set("acme", "contacts", "900123456", PROVIDER)
        assert await redis.keys() == ["facturasd:acme:contacts:900123456"]
        assert 85 < await redis.ttl("facturasd:acme:contacts:900123456") <= 90


async def test_redis_pattern_invalidation_spares_other_namespaces(
    redis_server: RedisServer,
) -> None:
    others = ["other:app:1", "facturasdx:acme:contacts:1", "other:facturasd:acme:contacts:1"]
    async with (
        open_cache(settings("redis", redis_server.url)) as cache,
        Redis.from_url(redis_server.url, decode_responses=True) as redis,
    ):
        for key in others:
            await redis.set(key, "theirs")
        # More keys than one SCAN round trip returns.
        for n in range(1200):
            await cache.set("acme", "contacts", str(n), {"id": str(n)})
        await cache.set("acme", "items", "1", {"id": "1"})

        assert await cache.invalidate_pattern(r"contacts") == 1200
        assert await cache.invalidate_pattern(r".") == 1

        assert await cache.count() == 0
        assert sorted(await redis.keys()) == sorted(others)
        assert (await cache.metrics())["keys"] == 0


async def test_an_unreachable_redis_is_a_miss_not_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()  # nothing listens there
    url = f"redis://:s3cret@127.0.0.1:{port}/0"
    caplog.set_level(logging.INFO, logger="facturasd.alegra.cache")
    async with open_cache(settings("redis", url)) as cache:
        started = time.monotonic()
        assert await cache.get("acme", "contacts", "1") is None
        await cache.set("acme", "contacts", "1", PROVIDER)
        assert await cache.get("acme", "contacts", "1") is None
        assert await cache.invalidate("acme", "contacts", "1") is False
        assert await cache.invalidate_pattern(".") == 0
        assert await cache.count() == 0
        metrics = await cache.metrics()
        assert time.monotonic() - started < 1.5
    # One failed attempt; the calls after it did not try during the bypass.
    assert metrics["errors"] == 1
    assert (metrics["misses"], metrics["keys"]) == (2, 0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"redis://***@127.0.0.1:{port}/0" in warnings[0].getMessage()
    assert "s3cret" not in caplog.text


async def timed(operation: Awaitable[Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = await operation
    return result, time.monotonic() - started


@pytest.mark.slow
async def test_redis_stopped_mid_run_then_back(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="facturasd.alegra.cache")
    async with open_cache(settings("redis", redis_server.url), bypass=2.0) as cache:
        await cache.set("acme", "contacts", "1", PROVIDER)
        assert await cache.get("acme", "contacts", "1") == PROVIDER

        await anyio.to_thread.run_sync(redis_server.stop)
        value, took = await timed(cache.get("acme", "contacts", "1"))
        assert value is None
        assert took < 1.5
        # During the bypass nothing waits on Redis.
        for _ in range(5):
            _, took = await timed(cache.set("acme", "items", "1", {"id": "1"}))
            assert took < 0.05
            value, took = await timed(cache.get("acme", "items", "1"))
            assert (value, took < 0.05) == (None, True)
        assert (await cache.metrics())["errors"] == 1

        await anyio.to_thread.run_sync(redis_server.start)  # same port, empty (no persistence)

        async def recovered() -> bool:
            await cache.set("acme", "contacts", "1", PROVIDER)
            return await cache.get("acme", "contacts", "1") == PROVIDER

        await eventually(recovered)
        metrics = await cache.metrics()
    assert metrics["errors"] == 1
    assert metrics["keys"] == 1
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in levels] == ["WARNING", "INFO"]
    assert "unreachable" in levels[0][1]
    assert "answers again" in levels[1][1]


@pytest.mark.slow
async def test_a_redis_that_hangs_costs_one_timeout(redis_server: RedisServer) -> None:
    async with open_cache(settings("redis", redis_server.url), bypass=60) as cache:
        await cache.set("acme", "contacts", "1", PROVIDER)
        redis_server.pause()
        try:
            value, took = await timed(cache.get("acme", "contacts", "1"))
            assert value is None
            assert 0.9 < took < 1.5
            _, took = await timed(cache.set("acme", "contacts", "2", PROVIDER))
            assert took < 0.05
            assert (await cache.metrics())["errors"] == 1
        finally:
            redis_server.resume()
