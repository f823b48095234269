"""The cache of Alegra look-ups (contacts, items, accounts, taxes, retentions) and its metrics.

Memory by default (aiocache's SimpleMemoryCache); Redis when `cache.backend = "redis"` (aiocache's
RedisCache over redis.asyncio), under keys `facturasd:<scope>:<kind>:<key>`. Values are stored as
JSON on both backends, so a value read back is a copy and behaves the same wherever it was kept.

The cache is an optimisation, never a dependency: every backend operation is bounded by a short
timeout, and an error or a timeout counts in `errors`, answers as a miss and bypasses the backend
for a while, so an unreachable Redis delays a booking by one timeout at most. After the bypass the
next operation tries again, and the cache recovers by itself.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import anyio
import redis
from aiocache import RedisCache, SimpleMemoryCache  # type: ignore[import-untyped]
from aiocache.serializers import JsonSerializer  # type: ignore[import-untyped]
from redis import DriverInfo
from redis.asyncio.connection import parse_url
from redis.exceptions import RedisError

from facturasd import __version__
from facturasd.config.sections import Cache
from facturasd.config.types import mask_url
from facturasd.errors import ConfigError

log = logging.getLogger(__name__)

KINDS = ("contacts", "items", "accounts", "taxes", "retentions")
NAMESPACE = "facturasd"
# Bounds one backend operation (a get, a set, a whole SCAN): a booking waits this long at most
# for a cache that does not answer.
TIMEOUT = 1.0
# How long the backend is left alone after it failed: one timeout per booking, not one per call.
BYPASS = 30.0
# Keys asked per SCAN round trip.
_SCAN_COUNT = 500
_MB = 1024 * 1024
# The memory backend's expiry table is swept of expired keys when it reaches this size at least.
_PRUNE_AT_LEAST = 1024
_T = TypeVar("_T")


@dataclass
class _Counters:
    hits: int = 0
    misses: int = 0
    invalidations: int = 0

    def as_dict(self, keys: int) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": _rate(self.hits, self.misses),
            "invalidations": self.invalidations,
            "keys": keys,
        }


@dataclass(frozen=True)
class _Usage:
    """What the live keys weigh: bytes held and each key's remaining TTL in seconds."""

    bytes: int = 0
    ttls: list[float] = field(default_factory=list)


class _Store(Protocol):
    """One backend, spoken to in our keys `<scope>:<kind>:<key>`."""

    name: str

    async def get(self, key: str) -> Any | None: ...
    async def set(self, key: str, value: Any, ttl: float) -> None: ...
    async def delete(self, keys: list[str]) -> list[str]: ...
    async def keys(self, scope: str | None = None) -> list[str]: ...
    async def usage(self, keys: list[str]) -> _Usage: ...
    async def close(self) -> None: ...


class _MemoryStore:
    """aiocache's dict, plus what it does not tell: each key's expiry and size."""

    name = "memory"

    def __init__(self) -> None:
        # AlegraCache bounds every operation itself.
        self._cache = SimpleMemoryCache(serializer=JsonSerializer(), timeout=None)
        # key -> (monotonic expiry, bytes of the serialized value); aiocache expires the value
        # on the event loop's clock, which is monotonic too.
        self._entries: dict[str, tuple[float, int]] = {}
        self._prune_at = _PRUNE_AT_LEAST

    def _alive(self, key: str) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry[0] > time.monotonic()

    def _prune(self) -> None:
        now = time.monotonic()
        self._entries = {key: entry for key, entry in self._entries.items() if entry[0] > now}
        # Next time the table has doubled: keys that expire unread cost O(1) per set.
        self._prune_at = max(_PRUNE_AT_LEAST, 2 * len(self._entries))

    async def get(self, key: str) -> Any | None:
        return await self._cache.get(key) if self._alive(key) else None

    async def set(self, key: str, value: Any, ttl: float) -> None:
        data = self._cache.serializer.dumps(value)
        # Serialized here once, to know its size; `str` hands the text to aiocache unchanged.
        await self._cache.set(key, data, ttl=ttl, dumps_fn=str)
        self._entries[key] = (time.monotonic() + ttl, len(data.encode()))
        if len(self._entries) >= self._prune_at:
            self._prune()

    async def delete(self, keys: list[str]) -> list[str]:
        deleted = [key for key in keys if self._alive(key)]
        for key in keys:
            await self._cache.delete(key)
            self._entries.pop(key, None)
        return deleted

    async def keys(self, scope: str | None = None) -> list[str]:
        self._prune()
        prefix = "" if scope is None else f"{scope}:"
        return [key for key in self._entries if key.startswith(prefix)]

    async def usage(self, keys: list[str]) -> _Usage:
        now = time.monotonic()
        entries = [self._entries[key] for key in keys if key in self._entries]
        return _Usage(sum(size for _, size in entries), [expiry - now for expiry, _ in entries])

    async def close(self) -> None:
        await self._cache.clear()
        self._entries.clear()


class _RedisStore:
    """aiocache's RedisCache under our namespace; SCAN and per-key figures on its client."""

    name = "redis"

    def __init__(self, url: str, timeout: float) -> None:
        if urlsplit(url).scheme not in ("redis", "rediss"):
            # aiocache 0.12 always connects to a host and port: no unix:// sockets.
            raise ConfigError([f"cache.url: use redis:// or rediss://, not {mask_url(url)}"])
        options: dict[str, Any] = dict(parse_url(url))
        self._cache = RedisCache(
            serializer=JsonSerializer(),
            namespace=NAMESPACE,
            timeout=None,  # AlegraCache bounds every operation itself
            endpoint=options.pop("host", "localhost"),
            port=options.pop("port", 6379),
            db=options.pop("db", 0),
            password=options.pop("password", None),
            create_connection_timeout=timeout,
            connection_pool_kwargs={
                **options,  # the rest of the URL: user name, rediss://, query options
                # A server that stops answering fails the call instead of hanging on it.
                "socket_timeout": timeout,
                # Named here, redis-py does not read its version from the installed package's
                # metadata (files) on the event loop for every new connection.
                "driver_info": DriverInfo(lib_version=redis.__version__).add_upstream_driver(
                    "facturasd", __version__
                ),
            },
        )
        self._client = self._cache.client

    def _full(self, key: str) -> str:
        full: str = self._cache.build_key(key)
        return full

    async def get(self, key: str) -> Any | None:
        return await self._cache.get(key)

    async def set(self, key: str, value: Any, ttl: float) -> None:
        # A float TTL makes aiocache use PSETEX: millisecond precision.
        await self._cache.set(key, value, ttl=float(ttl))

    async def delete(self, keys: list[str]) -> list[str]:
        if not keys:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.delete(self._full(key))
            answers = await pipe.execute()
        # One DEL per key tells which existed (another process may have removed some).
        return [key for key, deleted in zip(keys, answers, strict=True) if deleted]

    async def keys(self, scope: str | None = None) -> list[str]:
        # SCAN, never KEYS: the Redis may be shared and large. MATCH keeps to our namespace.
        match = self._full("*" if scope is None else f"{_glob_escape(scope)}:*")
        skip = len(self._full(""))
        return [
            key.decode()[skip:]
            async for key in self._client.scan_iter(match=match, count=_SCAN_COUNT)
        ]

    async def usage(self, keys: list[str]) -> _Usage:
        if not keys:
            return _Usage()
        async with self._client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.memory_usage(self._full(key))
                pipe.pttl(self._full(key))
            answers = await pipe.execute()
        sizes, ttls = answers[0::2], answers[1::2]
        # A key that expired between the SCAN and now answers None / a negative TTL.
        return _Usage(sum(size or 0 for size in sizes), [ms / 1000 for ms in ttls if ms > 0])

    async def close(self) -> None:
        # aiocache 0.12 closes with redis' deprecated close(); aclose() is the current name.
        await self._client.aclose()


class _Bypassed(Exception):
    """The backend failed or is being left alone: the operation answers as a miss."""


class AlegraCache:
    """Look-ups kept per company (`scope`) and kind, with the seed's metrics."""

    def __init__(
        self,
        store: _Store,
        settings: Cache,
        *,
        operation_timeout: float = TIMEOUT,
        bypass: float = BYPASS,
    ) -> None:
        self._store = store
        self.backend: str = store.name
        self._ttls = {
            "contacts": settings.ttl.contacts,
            "items": settings.ttl.items,
            "accounts": settings.ttl.accounts,
            "taxes": settings.ttl.accounts,
            "retentions": settings.ttl.accounts,
        }
        self._where = f"{store.name} cache" + (
            f" at {mask_url(settings.url)}" if store.name == "redis" else ""
        )
        self._timeout = operation_timeout
        self._bypass = bypass
        self._bypass_until = 0.0
        self._unreachable = False
        self._errors = 0
        self._counters = {kind: _Counters() for kind in KINDS}

    async def get(self, scope: str, kind: str, key: str) -> Any | None:
        """The cached value, or None on a miss (or when the backend cannot be reached)."""
        counters = self._counters[_checked(kind)]
        try:
            value = await self._call(lambda: self._store.get(f"{scope}:{kind}:{key}"))
        except _Bypassed:
            value = None
        if value is None:
            counters.misses += 1
        else:
            counters.hits += 1
        return value

    async def set(self, scope: str, kind: str, key: str, value: Any) -> None:
        """Keeps a JSON-able value (not None: it would read as a miss) for the kind's TTL; a
        backend failure only counts."""
        ttl = self._ttls[_checked(kind)]
        if ttl <= 0:
            return  # a TTL of 0 in the settings turns caching of that kind off
        with suppress(_Bypassed):
            await self._call(lambda: self._store.set(f"{scope}:{kind}:{key}", value, ttl))

    async def invalidate(self, scope: str, kind: str, key: str) -> bool:
        """Forgets one value; True when it was there."""
        return await self._forget([f"{scope}:{_checked(kind)}:{key}"]) == 1

    async def invalidate_pattern(self, pattern: str) -> int:
        """Forgets every value whose `scope:kind:key` the regex matches anywhere; how many."""
        regex = re.compile(pattern)
        try:
            keys = await self._call(self._store.keys)
        except _Bypassed:
            return 0
        return await self._forget([key for key in keys if regex.search(key)])

    async def count(self, scope: str | None = None) -> int:
        """How many live values (of one company, or all); 0 when the backend cannot say."""
        try:
            return len(await self._call(lambda: self._store.keys(scope)))
        except _Bypassed:
            return 0

    async def metrics(self) -> dict[str, Any]:
        """The seed's get_cache_metrics(), with the same figures per kind under `by_type`."""
        try:
            keys = await self._call(self._store.keys)
            usage = await self._call(lambda: self._store.usage(keys))
        except _Bypassed:
            keys, usage = [], _Usage()
        per_kind = dict.fromkeys(KINDS, 0)
        for key in keys:
            if (kind := _kind_of(key)) is not None:
                per_kind[kind] += 1
        hits = sum(c.hits for c in self._counters.values())
        misses = sum(c.misses for c in self._counters.values())
        return {
            "backend": self.backend,
            "hits": hits,
            "misses": misses,
            "hit_rate": _rate(hits, misses),
            "invalidations": sum(c.invalidations for c in self._counters.values()),
            "errors": self._errors,
            "memory_usage_mb": round(usage.bytes / _MB, 6),
            "avg_ttl_seconds": round(sum(usage.ttls) / len(usage.ttls), 1) if usage.ttls else 0.0,
            "keys": len(keys),
            "by_type": {
                kind: counters.as_dict(per_kind[kind]) for kind, counters in self._counters.items()
            },
        }

    async def _forget(self, keys: list[str]) -> int:
        try:
            deleted = await self._call(lambda: self._store.delete(keys))
        except _Bypassed:
            return 0
        for key in deleted:
            if (kind := _kind_of(key)) is not None:
                self._counters[kind].invalidations += 1
        return len(deleted)

    @property
    def unreachable(self) -> bool:
        """Its backend failed the last call: look-ups go to Alegra meanwhile."""
        return self._unreachable

    async def _call(self, operation: Callable[[], Awaitable[_T]]) -> _T:
        """Runs one backend operation within the timeout; raises _Bypassed instead of failing."""
        now = time.monotonic()
        if now < self._bypass_until:
            raise _Bypassed
        try:
            with anyio.fail_after(self._timeout):
                result = await operation()
        except (RedisError, OSError, TimeoutError) as error:
            self._errors += 1
            self._bypass_until = time.monotonic() + self._bypass
            if not self._unreachable:
                self._unreachable = True
                log.warning(
                    "The %s is unreachable (%s); it is bypassed for %.0f s and retried after",
                    self._where,
                    _describe(error),
                    self._bypass,
                )
            raise _Bypassed from error
        if self._unreachable:
            self._unreachable = False
            log.info("The %s answers again", self._where)
        return result


@asynccontextmanager
async def open_cache(
    settings: Cache, *, operation_timeout: float = TIMEOUT, bypass: float = BYPASS
) -> AsyncIterator[AlegraCache]:
    """The cache the settings ask for. `operation_timeout` bounds each backend operation,
    `bypass` is how long a failed backend is left alone. Opening never connects: an unreachable
    Redis shows on use, as errors."""
    store: _Store = (
        _RedisStore(settings.url, operation_timeout)
        if settings.backend == "redis"
        else _MemoryStore()
    )
    try:
        yield AlegraCache(store, settings, operation_timeout=operation_timeout, bypass=bypass)
    finally:
        await store.close()


def _checked(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown cache kind {kind!r}; one of {', '.join(KINDS)}")
    return kind


def _kind_of(key: str) -> str | None:
    """The kind in `scope:kind:key`; None for a key of our namespace not written by us."""
    parts = key.split(":", 2)
    return parts[1] if len(parts) == 3 and parts[1] in KINDS else None


def _rate(hits: int, misses: int) -> float:
    return round(100 * hits / (hits + misses), 2) if hits + misses else 0.0


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__
