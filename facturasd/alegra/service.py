"""Alegra as the daemon runs it: one HTTP client, one limiter and call state per Alegra user,
the cache, each company's books, the booking stage, Alegra's webhooks, and the /health checks.

Webhooks: when `alegra.webhooks_url` is set, the daemon subscribes each Alegra user at start
to the changes of contacts and items, at `<webhooks_url>/hooks/alegra?key=<secret>` (a new
random secret per run and user, which names whose cache a call concerns), and deletes those
subscriptions when it stops. Their ids are kept in the ledger's `kv`, so the ones a killed
run left behind are deleted at the next start.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
from aiohttp import web

from facturasd.alegra import bill
from facturasd.alegra.booking import Booking, Books, User
from facturasd.alegra.cache import AlegraCache, open_cache
from facturasd.alegra.client import Account, AlegraClient, AlegraError, Limiter
from facturasd.alegra.directory import Directory
from facturasd.authorities.circuit import Circuit, CircuitState
from facturasd.clock import Clock
from facturasd.config import Config
from facturasd.config.sections import AlegraUser
from facturasd.errors import ConfigError, Unavailable
from facturasd.monitoring.health import Item, ProbeFn, Status
from facturasd.monitoring.metrics import Metrics
from facturasd.pipeline.lifecycle import Lifecycle, Stage
from facturasd.store import kv
from facturasd.store.db import Database

log = logging.getLogger(__name__)

HOOK_PATH = "/hooks/alegra"
# What the cache keeps of Alegra's objects; a change to any of them forgets it.
EVENTS = tuple(
    f"{change}-{subject}" for subject in ("client", "item") for change in ("new", "edit", "delete")
)
SUBSCRIPTIONS = "alegra.webhooks"  # kv: {user e-mail: [subscription ids]}
DEFAULT_SCOPE = "default"


@dataclass(frozen=True)
class Alegra:
    booking: Booking
    books: dict[str | None, Books]  # by company slug; None: the [alegra] user's
    users: dict[str, User]
    clients: dict[str, AlegraClient]  # by user e-mail
    cache: AlegraCache
    hooks: Hooks

    def stopping(self) -> None:
        """The daemon stops: bookings waiting for Alegra's rate limit give way at once."""
        for client in self.clients.values():
            client.limiter.stop()


@asynccontextmanager
async def open_alegra(
    config: Config,
    db: Database,
    lifecycle: Lifecycle,
    stages: tuple[Stage, Stage],
    *,
    clock: Clock,
    metrics: Metrics,
    cache: AlegraCache | None = None,
) -> AsyncIterator[Alegra]:
    """Alegra's services for `config` (Alegra enabled). `cache`: one already open (a test's),
    else the one `[cache]` configures."""
    settings = config.alegra
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(metrics.client("alegra", timeout=settings.timeout))
        if cache is None:
            cache = await stack.enter_async_context(open_cache(config.cache))
        people: dict[str, User] = {}
        clients: dict[str, AlegraClient] = {}
        for email, (where, token_file) in users(config).items():
            token = await anyio.to_thread.run_sync(_token, token_file, where)
            people[email] = User(
                email,
                circuit=Circuit(cooldown=config.retry.interval, clock=clock),
                paused=Circuit(cooldown=config.retry.interval, threshold=1, clock=clock),
            )
            clients[email] = AlegraClient(
                http,
                settings.base_url,
                Account(email, token),
                Limiter(settings.rate_limit.count, settings.rate_limit.period),
            )
        books: dict[str | None, Books] = {}
        sections: list[tuple[str | None, AlegraUser]] = [
            (None, settings),
            *settings.companies.items(),
        ]
        for company, section in sections:
            email = section.email or settings.email
            books[company] = Books(
                client=clients[email],
                directory=Directory(clients[email], cache, company or DEFAULT_SCOPE),
                accounts=bill.Accounts(
                    default=section.default_account or None,
                    rules=tuple(
                        bill.AccountRule(rule.account, rule.supplier, rule.keyword)
                        for rule in section.account_rules
                    ),
                ),
                lines=settings.lines,
                mode=settings.mode,
                user=people[email],
            )

        def books_of(company: str | None) -> Books:
            return books.get(company) or books[None]

        booking = Booking(db, lifecycle, books_of, stages, clock=clock)
        hooks = Hooks(db, settings.webhooks_url, clients, books, clock=clock)
        yield Alegra(booking, books, people, clients, cache, hooks)


def _token(path: Path | None, where: str) -> str:
    if path is None:
        raise ConfigError([f"{where}.token_file: not set (the Alegra user's API token)"])
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError([f"{where}.token_file: cannot read {path}: {exc.strerror}"]) from None
    if not token:
        raise ConfigError([f"{where}.token_file: {path} is empty"])
    return token


class Hooks:
    """Alegra's webhooks: subscribed at start, answered at `POST /hooks/alegra`, deleted at
    stop. A call whose `key` is not one of this run's secrets is refused (401)."""

    def __init__(
        self,
        db: Database,
        public_url: str,
        clients: dict[str, AlegraClient],
        books: dict[str | None, Books],
        *,
        clock: Clock,
    ):
        self.db = db
        self.public_url = public_url.rstrip("/")
        self.clients = clients
        self._clock = clock
        # One secret per Alegra user: the directories of the companies it books for.
        self._secrets = {email: secrets.token_urlsafe(24) for email in clients}
        self._directories: dict[str, list[Directory]] = {
            email: [b.directory for b in books.values() if b.client is client]
            for email, client in clients.items()
        }
        self.received = 0

    @property
    def enabled(self) -> bool:
        return bool(self.public_url)

    async def handle(self, request: web.Request) -> web.Response:
        key = request.query.get("key", "")
        email = next(
            (e for e, secret in self._secrets.items() if hmac.compare_digest(secret, key)), None
        )
        if email is None:
            return web.json_response({"code": 401, "message": "unknown key"}, status=401)
        try:
            payload = await request.json()
        except ValueError:
            return web.json_response({"code": 400, "message": "the body is not JSON"}, status=400)
        subject, obj = _event(payload)
        if subject is None:
            return web.json_response(
                {"code": 400, "message": "no subject and object in the body"}, status=400
            )
        forgotten = 0
        for directory in self._directories[email]:
            forgotten += await directory.forget(subject, obj)
        self.received += 1
        log.info(
            "alegra webhook %s (id %s): %d cache entries forgotten",
            subject,
            obj.get("id"),
            forgotten,
        )
        return web.json_response({"forgotten": forgotten})

    async def subscribe(self) -> int:
        """This run's subscriptions, after deleting those a previous run left. Returns how
        many were made."""
        await self.unsubscribe()
        made: dict[str, list[str]] = {}
        for email, client in self.clients.items():
            url = f"{self.public_url}{HOOK_PATH}?key={self._secrets[email]}"
            for event in EVENTS:
                answer = await client.post("/webhooks/subscriptions", {"event": event, "url": url})
                made.setdefault(email, []).append(str(answer["subscription"]["id"]))
                await self.db.write(
                    partial(kv.put, key=SUBSCRIPTIONS, value=made, now=self._clock().timestamp())
                )
        return sum(len(ids) for ids in made.values())

    async def unsubscribe(self) -> None:
        """Deletes this run's subscriptions (and any a killed run left)."""
        found = await self.db.read(partial(kv.get, key=SUBSCRIPTIONS))
        subscriptions: dict[str, list[str]] = found or {}
        for email, ids in subscriptions.items():
            client = self.clients.get(email)
            if client is None:
                continue  # a user no longer configured: its subscriptions are not ours to undo
            for subscription in ids:
                try:
                    await client.delete(f"/webhooks/subscriptions/{subscription}")
                except AlegraError as exc:
                    if exc.status != 404:  # gone already is what we want
                        log.warning(
                            "alegra: webhook subscription %s not deleted: %s", subscription, exc
                        )
        if subscriptions:
            await self.db.write(partial(kv.delete, key=SUBSCRIPTIONS))


def _event(payload: Any) -> tuple[str | None, dict[str, Any]]:
    """(subject, object) of a webhook's body, in either shape seen: {"subject": "edit-item",
    "message": {"item": {...}}} or with `data` for `message` (or `data` the object itself)."""
    if not isinstance(payload, dict):
        return None, {}
    subject = payload.get("subject") or payload.get("event")
    if not isinstance(subject, str):
        return None, {}
    kind = subject.rsplit("-", 1)[-1]
    for holder in (payload.get("message"), payload.get("data")):
        if isinstance(holder, dict):
            obj = holder.get(kind, holder)
            if isinstance(obj, dict) and "id" in obj:
                return subject, obj
    return None, {}


def probe(alegra: Alegra) -> ProbeFn:
    """`alegra:booking`: a warning while an Alegra user's booking is paused (the account
    cannot book: a person acts in Alegra) or its calls get no answer. Alegra being down
    never fails the daemon: its own work goes on."""

    async def check(now_iso: str) -> list[Item]:
        items: list[Item] = []
        for user in alegra.users.values():
            status: Status = "pass"
            notes: list[str] = []
            if user.pause_reason is not None:
                status = "warn"
                notes.append(f"booking paused: {user.pause_reason}")
            if user.circuit.state is not CircuitState.CLOSED:
                status = "warn"
                notes.append(f"circuit {user.circuit.state.value}: no answer to the last calls")
            item: Item = {
                "componentId": user.email,
                "status": status,
                "time": now_iso,
                "circuit": user.circuit.state.value,
                "paused": user.pause_reason is not None,
            }
            if notes:
                item["output"] = "; ".join(notes)
            items.append(item)
        return items

    return check


def cache_probe(cache: AlegraCache) -> ProbeFn:
    """`cache:alegra`: its metrics; a warning while its backend fails (look-ups then go to
    Alegra, which costs requests but loses nothing)."""

    async def check(now_iso: str) -> list[Item]:
        metrics = await cache.metrics()
        item: Item = {
            "componentType": "datastore",
            "componentId": metrics["backend"],
            "status": "warn" if cache.unreachable else "pass",
            "time": now_iso,
            "observedValue": metrics["hit_rate"],
            "observedUnit": "hit rate %",
            # The seed's get_cache_metrics(), per data type too.
            "metrics": metrics,
        }
        if cache.unreachable:
            item["output"] = "the cache's backend fails: look-ups go to Alegra meanwhile"
        return [item]

    return check


def users(config: Config) -> dict[str, tuple[str, Path | None]]:
    """Each Alegra user configured: its e-mail → (where it is configured, its token file). A
    company's section without an e-mail of its own books as `[alegra]`'s user."""
    settings = config.alegra
    found: dict[str, tuple[str, Path | None]] = {settings.email: ("alegra", settings.token_file)}
    for company, section in settings.companies.items():
        if section.email and section.email != settings.email:
            found.setdefault(section.email, (f"alegra.companies.{company}", section.token_file))
    return found


async def refusals(config: Config) -> list[str]:
    """`check-config --online`: one line for each Alegra user whose credentials Alegra does
    not accept (or that Alegra does not answer for), none when all are fine."""
    settings = config.alegra
    found: list[str] = []
    async with httpx.AsyncClient(timeout=settings.timeout) as http:
        for email, (where, token_file) in users(config).items():
            try:
                token = await anyio.to_thread.run_sync(_token, token_file, where)
            except ConfigError:
                continue  # (check-config's offline checks say so)
            client = AlegraClient(
                http, settings.base_url, Account(email, token), Limiter(), sleep=_no_wait
            )
            try:
                await client.get("/taxes")
            except (AlegraError, Unavailable) as exc:
                found.append(f"{where}: Alegra does not accept {email}: {exc}")
    return found


async def _no_wait(seconds: float) -> None:
    """A check does not wait out Alegra's backoff: it says what it got."""
