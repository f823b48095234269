"""Alegra's API over httpx: Basic auth, one limiter per Alegra user, typed errors, and which
failures are worth another try.

Alegra allows 150 requests a minute per user (`X-Rate-Limit-*` headers, 429 over it). The
`Limiter` keeps every call of one user under that, counting a request from the moment it is
sent until a minute after its answer came back (so a late arrival never lands in the
server's next window with a full count), and stops altogether when the server says the
window is spent, which also covers another program using the same user.

Errors: an answer `{"code", "message"}` becomes `AlegraError` (with the code), or
`AccountBlocked` for what concerns the account rather than the request (credentials refused,
900 plan limit, 907 read-only plan). No answer (timeout, refused connection, 5xx, 429 after
the tries, a body that is not JSON) is `Unavailable`: the job waits without counting an
attempt. A request that may have changed something (a POST) is tried again only when it is
sure it never reached Alegra (429, a refused connection): a timed-out `POST /bills` may have
created the bill, so the booking looks it up instead.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from facturasd.errors import FacturasdError, Unavailable
from facturasd.upstream import retry_after

log = logging.getLogger(__name__)

UPSTREAM = "alegra"
PAGE = 30  # Alegra's largest safe page
TRIES = 3  # per call, for what is worth another try
BACKOFF = (0.5, 2.0)  # seconds before the 2nd and 3rd try (with jitter)
PERIOD = 60.0  # Alegra's rate-limit window, when a 429 does not say how long to wait
LONGEST_WAIT = 90.0  # a Retry-After beyond this is handed to the queue rather than waited
# Codes about the account, not the request: booking pauses for the user until a probe passes.
ACCOUNT_CODES = frozenset({900, 907})


class AlegraError(FacturasdError):
    """Alegra answered and refused: `code` and `message` are Alegra's (`message` in Spanish, as
    Alegra writes it), `status` the HTTP status."""

    def __init__(self, status: int, code: int | None, message: str):
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"Alegra: {message}" + (f" (code {code})" if code is not None else ""))


class AccountBlocked(AlegraError):
    """The Alegra user cannot book at all: credentials refused, plan limit (900), read-only
    plan (907). A person fixes it in Alegra or in the configuration; no invoice is at fault."""


@dataclass(frozen=True)
class Account:
    """One Alegra user: its e-mail and API token (never shown)."""

    email: str
    token: str = field(repr=False)

    @property
    def auth(self) -> httpx.BasicAuth:
        return httpx.BasicAuth(self.email, self.token)


class Limiter:
    """At most `count` requests of one Alegra user in any `period` seconds, and none while the
    server says its window is spent. Shared by every call made with that user."""

    def __init__(
        self, count: int = 150, period: float = 60.0, *, clock: Callable[[], float] = time.monotonic
    ):
        self.count = count
        self.period = period
        self._clock = clock
        # When each request of the last period was answered; inf while it is out.
        self._slots: list[float] = []
        self._closed_until = 0.0
        self._lock = anyio.Lock()
        self._stopping = False
        self._stopped = anyio.Event()

    async def acquire(self) -> None:
        """Waits until a request may be sent, and counts it. Once the daemon is stopping, a
        request that would have to wait is not sent: Unavailable, its job handed back."""
        async with self._lock:
            while True:
                now = self._clock()
                self._slots = [t for t in self._slots if t > now - self.period]
                if self._closed_until > now:
                    wait = self._closed_until - now
                elif len(self._slots) >= self.count:
                    wait = max(0.05, min(self._slots) + self.period - now)
                else:
                    self._slots.append(float("inf"))
                    return
                if self._stopping:
                    raise Unavailable(UPSTREAM, "the daemon is stopping: not sent", wait)
                with anyio.move_on_after(wait):
                    await self._stopped.wait()

    def stop(self) -> None:
        """The daemon stops: who waits for a turn is let go (nothing sent), so its job is
        handed back at once instead of holding the stop."""
        self._stopping = True
        self._stopped.set()

    def release(self, headers: Mapping[str, str] | None) -> None:
        """The request is answered (headers None: it got no answer). Its slot counts from now;
        the server's own count closes the limiter until its window ends."""
        now = self._clock()
        for index, value in enumerate(self._slots):
            if value == float("inf"):
                self._slots[index] = now
                break
        if headers is None:
            return
        remaining = _number(headers.get("X-Rate-Limit-Remaining"))
        reset = _number(headers.get("X-Rate-Limit-Reset"))
        if remaining is not None and remaining <= 0 and reset is not None:
            self._closed_until = max(self._closed_until, now + reset)

    def close_for(self, seconds: float) -> None:
        """A 429: no request of this user for `seconds`."""
        self._closed_until = max(self._closed_until, self._clock() + seconds)


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


class AlegraClient:
    """Calls to one Alegra user's API. `http` is the services' client (its timeout is
    `alegra.timeout`); `limiter` is that user's."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        account: Account,
        limiter: Limiter,
        *,
        sleep: Callable[[float], Any] = anyio.sleep,
    ):
        self.base_url = base_url.rstrip("/")
        self.account = account
        self._http = http
        self.limiter = limiter
        self._sleep = sleep

    async def get(self, path: str, **params: str | int) -> Any:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, body: Mapping[str, Any]) -> Any:
        """A POST that changes Alegra: tried again only when it surely did not arrive."""
        return await self.request("POST", path, json=body, idempotent=False)

    async def delete(self, path: str) -> Any:
        return await self.request("DELETE", path)

    async def upload(self, path: str, name: str, content: bytes, media_type: str) -> Any:
        return await self.request(
            "POST", path, files={"file": (name, content, media_type)}, idempotent=False
        )

    async def pages(self, path: str, **params: str | int) -> AsyncIterator[list[dict[str, Any]]]:
        """A list, page by page (30 a page), until a short page."""
        start = 0
        while True:
            page = await self.get(path, **params, start=start, limit=PAGE)
            if not isinstance(page, list):
                raise Unavailable(UPSTREAM, f"GET {path} did not answer a list", 0)
            yield page
            if len(page) < PAGE:
                return
            start += PAGE

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Mapping[str, Any] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
        idempotent: bool = True,
    ) -> Any:
        """Alegra's answer as JSON. AlegraError when it refuses; Unavailable when it gives no
        answer after the tries this request is worth."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        reason, delay, pause = "", 0.0, 0.0
        for attempt in range(TRIES):
            if pause:
                await self._sleep(pause)
            await self.limiter.acquire()
            # Before the next try: a short backoff (with jitter), or what Alegra asked for.
            backoff = BACKOFF[min(attempt, len(BACKOFF) - 1)] * (1 + 0.25 * random.random())  # noqa: S311
            try:
                response = await self._http.request(
                    method, url, params=params, json=json, files=files, auth=self.account.auth
                )
            except httpx.HTTPError as exc:
                self.limiter.release(None)
                if isinstance(exc, httpx.TimeoutException):
                    reason = "timed out"
                elif isinstance(exc, httpx.ConnectError):
                    reason = f"cannot connect ({exc.__class__.__name__})"
                else:
                    reason = f"the connection failed ({exc.__class__.__name__})"
                # A refused connection never reached Alegra: safe to send again, whatever it is.
                if not (idempotent or isinstance(exc, httpx.ConnectError)):
                    break
                pause = backoff
                continue
            self.limiter.release(response.headers)
            status = response.status_code
            if status == 429:  # not served: the limiter holds the next try as Alegra asks
                wait = (
                    retry_after(response)
                    or _number(response.headers.get("X-Rate-Limit-Reset"))
                    or PERIOD
                )
                self.limiter.close_for(wait)
                reason, pause = "too many requests (HTTP 429)", 0.0
                if wait > LONGEST_WAIT:
                    delay = wait
                    break
                continue
            if status >= 500:
                reason, delay = f"HTTP {status}", retry_after(response)
                if not idempotent or delay > LONGEST_WAIT:
                    break
                pause = max(delay, backoff)
                continue
            return _answer(method, path, response)
        raise Unavailable(UPSTREAM, f"{method} {path}: {reason}", delay)


def _answer(method: str, path: str, response: httpx.Response) -> Any:
    """The JSON of an answer below 500; AlegraError for a refusal."""
    try:
        body = response.json()
    except ValueError:
        body = None
    status = response.status_code
    if status < 400:
        if body is None and response.content:
            raise Unavailable(UPSTREAM, f"{method} {path}: the answer is not JSON", 0)
        return body
    code = body.get("code") if isinstance(body, dict) else None
    message = body.get("message") if isinstance(body, dict) else None
    code = int(code) if isinstance(code, int | str) and str(code).isdigit() else None
    text = str(message) if message else (response.text[:200] or f"HTTP {status}")
    if status == 401:
        raise AccountBlocked(status, code, f"Alegra refused the credentials ({text})")
    if code in ACCOUNT_CODES:
        raise AccountBlocked(status, code, text)
    raise AlegraError(status, code, text)
