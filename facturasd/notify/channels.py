"""The ways a message reaches a person: e-mail over SMTP, a signed webhook, a Nanobot agent,
the log.

Each channel's `send` either delivers or raises: `Unavailable` when the other end gave no
answer (a refused connection, a time-out, an HTTP 5xx or 429, an SMTP 4xx), so the job goes
back to its queue uncounted; `Refused` when it answered no (an HTTP 4xx, an SMTP 5xx, bad
credentials), so the attempt counts and the job dies after its attempts. Error messages are
built here from status codes and the server's words, with every secret the channel holds
replaced by *** and the URL masked: they end up in logs, in the ledger's jobs and in /health.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any, Literal, Protocol

import aiosmtplib
import anyio
import httpx

from facturasd.clock import Clock, utcnow
from facturasd.config import Config
from facturasd.config.sections import EmailNotify, NanobotNotify, WebhookNotify
from facturasd.config.types import mask_url
from facturasd.errors import ConfigError, FacturasdError, Unavailable
from facturasd.upstream import retry_after

log = logging.getLogger(__name__)

Severity = Literal["info", "warning", "critical"]
_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}

# Without an answer, a delivery is tried again after this long (uncounted), or after the
# server's Retry-After when it gives one, up to RETRY_AFTER_CAP.
RETRY_DELAY = 60.0
RETRY_AFTER_CAP = 3600.0
SMTP_TIMEOUT = 30.0
HTTP_TIMEOUT = 15.0
# How much of a refusing server's answer goes into the error: enough to say why.
ANSWER_CHARS = 200
WHSEC_PREFIX = "whsec_"


@dataclass(frozen=True)
class Attachment:
    name: str
    content: bytes
    mime: str  # "text/csv"


@dataclass(frozen=True)
class Message:
    """What a channel delivers. `id` is the same for every attempt at one delivery (the
    webhook's `webhook-id`: the receiver drops a message it already has)."""

    id: str
    subject: str
    text: str
    severity: Severity
    html: str | None = None
    attachments: Sequence[Attachment] = ()
    # Machine-readable content: the webhook's JSON body beside subject, text and severity.
    data: Mapping[str, Any] = field(default_factory=dict)


class Refused(FacturasdError):
    """A channel's server answered and refused the message (an HTTP 4xx, an SMTP 5xx, bad
    credentials): the attempt counts; a person must fix the setup. The message holds no
    secret."""

    def __init__(self, channel: str, reason: str):
        super().__init__(f"{channel} refused the message: {reason}")
        self.channel = channel
        self.reason = reason


class Channel(Protocol):
    name: str
    min_severity: Severity

    async def send(self, message: Message) -> None: ...


def accepts(channel: Channel, severity: str) -> bool:
    """Whether `channel` wants messages of `severity` (its `min_severity` or worse)."""
    return _RANK[severity] >= _RANK[channel.min_severity]


def _scrubbed(text: str, secrets: Sequence[str]) -> str:
    """`text` with every secret replaced: a server may echo what it was sent."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


# ── e-mail ───────────────────────────────────────────────────────────────────────────────


class Email:
    name = "email"

    def __init__(self, settings: EmailNotify, password: str | None, *, clock: Clock = utcnow):
        self.settings = settings
        self.min_severity: Severity = settings.min_severity
        self._password = password
        self._clock = clock

    def _compose(self, message: Message) -> EmailMessage:
        settings = self.settings
        mail = EmailMessage()
        # (a header's line break would end it: one line, whatever the wording gave)
        mail["Subject"] = " ".join(message.subject.split())
        mail["From"] = settings.sender
        mail["To"] = ", ".join(settings.recipients)
        mail["Date"] = format_datetime(self._clock())
        mail["Message-ID"] = make_msgid(domain=settings.sender.rpartition("@")[2] or "localhost")
        mail.set_content(message.text)
        if message.html is not None:
            mail.add_alternative(message.html, subtype="html")
        for attachment in message.attachments:
            maintype, _, subtype = attachment.mime.partition("/")
            mail.add_attachment(
                attachment.content, maintype=maintype, subtype=subtype, filename=attachment.name
            )
        return mail

    async def send(self, message: Message) -> None:
        settings = self.settings
        try:
            refused, _ = await aiosmtplib.send(
                self._compose(message),
                hostname=settings.host,
                port=settings.port,
                username=settings.username or None,
                password=self._password,
                use_tls=settings.tls,
                start_tls=settings.starttls and not settings.tls,
                timeout=SMTP_TIMEOUT,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            # Every recipient refused: a temporary refusal of all of them is no answer yet.
            temporary = all(400 <= r.code < 500 for r in exc.recipients)
            reason = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            raise self._failure(temporary, reason) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise self._failure(400 <= exc.code < 500, f"{exc.code} {exc.message}") from None
        except (aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected) as exc:
            raise self._failure(True, str(exc) or type(exc).__name__) from None
        except aiosmtplib.SMTPConnectError as exc:
            raise self._failure(True, f"cannot connect to {self._server}: {exc}") from None
        except ssl.SSLError as exc:
            # A certificate the system does not trust, or no TLS where it was configured.
            why = getattr(exc, "verify_message", None) or exc.reason or type(exc).__name__
            raise self._failure(False, f"TLS with {self._server} failed: {why}") from None
        except aiosmtplib.SMTPException as exc:
            # What the server lacks (STARTTLS, AUTH) is its setup or ours: no retry helps.
            raise self._failure(False, str(exc)) from None
        except OSError as exc:
            raise self._failure(True, f"cannot connect to {self._server}: {exc}") from None
        if refused:
            # The others got it: sending again would repeat it to them.
            log.warning(
                "notify: e-mail %s not delivered to %s",
                message.id,
                _scrubbed(", ".join(f"{to} ({r})" for to, r in refused.items()), self._secrets),
            )

    @property
    def _server(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    @property
    def _secrets(self) -> tuple[str, ...]:
        return (self._password or "",)

    def _failure(self, temporary: bool, reason: str) -> Unavailable | Refused:
        reason = _scrubbed(reason, self._secrets)
        if temporary:
            return Unavailable(self.name, reason, RETRY_DELAY)
        return Refused(self.name, reason)


# ── HTTP: webhook and Nanobot ────────────────────────────────────────────────────────────


class _Http:
    """A channel that POSTs JSON: how an answer (or none) becomes the outcome."""

    name: str
    min_severity: Severity

    def __init__(self, http: httpx.AsyncClient, url: str, secrets: Sequence[str]):
        self._http = http
        self.url = url
        self._secrets = tuple(secrets)

    def _scrubbed(self, text: str) -> str:
        # The URL too: a webhook service's token is in its path.
        return _scrubbed(text, (*self._secrets, self.url))

    async def _post(self, body: bytes, headers: Mapping[str, str]) -> None:
        where = mask_url(self.url, secret_path=True)
        try:
            response = await self._http.post(
                self.url,
                content=body,
                headers={"content-type": "application/json", **headers},
            )
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            # The configured URL itself: no retry helps.
            raise Refused(self.name, self._scrubbed(f"{where} cannot be called: {exc}")) from None
        except httpx.TimeoutException:
            raise Unavailable(self.name, f"{where} did not answer in time", RETRY_DELAY) from None
        except httpx.TransportError as exc:
            reason = self._scrubbed(f"cannot reach {where}: {exc or type(exc).__name__}")
            raise Unavailable(self.name, reason, RETRY_DELAY) from None
        if response.is_success:
            return
        answer = " ".join(response.text[:ANSWER_CHARS].split())
        reason = self._scrubbed(
            f"{where} answered {response.status_code} {response.reason_phrase}"
            + (f": {answer}" if answer else "")
        )
        if response.status_code == 429 or response.is_server_error:
            raise Unavailable(self.name, reason, _retry_after(response))
        raise Refused(self.name, reason)


def _retry_after(response: httpx.Response) -> float:
    """The server's `Retry-After` (capped), else our own pace."""
    return min(retry_after(response) or RETRY_DELAY, RETRY_AFTER_CAP)


class Webhook(_Http):
    """JSON POSTed and signed as Standard Webhooks: `webhook-id` (the message's, the same on
    every attempt), `webhook-timestamp` (this attempt's, in seconds) and `webhook-signature`
    (`v1,` + base64 of the HMAC-SHA256 of "id.timestamp.body" keyed with the secret's bytes)."""

    name = "webhook"

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: WebhookNotify,
        secret: str,
        *,
        clock: Clock = utcnow,
    ):
        super().__init__(http, settings.url, [secret])
        self.min_severity: Severity = settings.min_severity
        self._key = webhook_key(secret)
        self._clock = clock

    def sign(self, message_id: str, timestamp: int, body: bytes) -> str:
        signed = f"{message_id}.{timestamp}.".encode() + body
        digest = hmac.new(self._key, signed, hashlib.sha256).digest()
        return f"v1,{base64.b64encode(digest).decode('ascii')}"

    async def send(self, message: Message) -> None:
        body = json.dumps(
            {
                **message.data,
                "subject": message.subject,
                "text": message.text,
                "severity": message.severity,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        timestamp = int(self._clock().timestamp())
        await self._post(
            body,
            {
                "webhook-id": message.id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": self.sign(message.id, timestamp, body),
            },
        )


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret ("whsec_" + base64); ValueError if it is
    not one (the message never quotes it)."""
    try:
        key = base64.b64decode(secret.removeprefix(WHSEC_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("not base64 after the whsec_ prefix") from None
    if not key:
        raise ValueError("empty")
    return key


class Nanobot(_Http):
    """A Nanobot agent server: POST url + path with the configured body, whose strings have
    "{agent}" and "{text}" replaced (by default the server's `/api/call` with
    {"mode": "agent", "name": agent, "input": text, "chat": false}); the token, if any, as a
    Bearer token."""

    name = "nanobot"

    def __init__(self, http: httpx.AsyncClient, settings: NanobotNotify, token: str | None):
        super().__init__(http, settings.url.rstrip("/") + settings.path, [token or ""])
        self.settings = settings
        self.min_severity: Severity = settings.min_severity
        self._headers = {"authorization": f"Bearer {token}"} if token else {}

    async def send(self, message: Message) -> None:
        words = {"{agent}": self.settings.agent, "{text}": f"{message.subject}\n\n{message.text}"}
        body = json.dumps(_filled(self.settings.body, words), ensure_ascii=False).encode()
        await self._post(body, self._headers)


def _filled(template: object, words: Mapping[str, str]) -> object:
    """`template` with each of `words` replaced in its strings, at any depth (plain replace:
    braces in an invoice's text are left alone)."""
    if isinstance(template, str):
        for placeholder, value in words.items():
            template = template.replace(placeholder, value)
        return template
    if isinstance(template, Mapping):
        return {key: _filled(value, words) for key, value in template.items()}
    if isinstance(template, list):
        return [_filled(value, words) for value in template]
    return template


# ── the log ──────────────────────────────────────────────────────────────────────────────

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}


class Log:
    """The daemon's own log (journald): at WARNING or CRITICAL as the message is."""

    name = "log"

    def __init__(self, min_severity: Severity):
        self.min_severity = min_severity

    async def send(self, message: Message) -> None:
        log.log(_LEVELS[message.severity], "%s: %s", message.subject, message.text)


# ── from the configuration ───────────────────────────────────────────────────────────────


def channels(config: Config, http: httpx.AsyncClient, *, clock: Clock = utcnow) -> list[Channel]:
    """The enabled channels of `[notify.*]`, with their secrets read (blocking: run it in a
    thread). A secret file not set, unreadable, empty or not a secret raises ConfigError
    naming the key (never the file's content)."""
    notify = config.notify
    found: list[Channel] = []
    problems: list[str] = []
    if (email := notify.email).enabled:
        if not email.recipients:
            problems.append("notify.email.recipients: empty (who receives the messages)")
        password = None
        if email.username:
            password = _secret(email.password_file, "notify.email.password_file", problems)
        found.append(Email(email, password, clock=clock))
    if (webhook := notify.webhook).enabled:
        if not webhook.url:
            problems.append("notify.webhook.url: not set")
        secret = _secret(webhook.secret_file, "notify.webhook.secret_file", problems)
        if secret is not None:
            try:
                found.append(Webhook(http, webhook, secret, clock=clock))
            except ValueError as exc:
                problems.append(
                    f"notify.webhook.secret_file: {webhook.secret_file} does not hold a "
                    f"Standard Webhooks secret (whsec_ and base64): {exc}"
                )
    if (nanobot := notify.nanobot).enabled:
        if not nanobot.url:
            problems.append("notify.nanobot.url: not set")
        token = None
        if nanobot.token_file is not None:
            token = _secret(nanobot.token_file, "notify.nanobot.token_file", problems)
        found.append(Nanobot(http, nanobot, token))
    if notify.log.enabled:
        found.append(Log(notify.log.min_severity))
    if problems:
        raise ConfigError(problems)
    return found


def _secret(path: Path | None, key: str, problems: list[str]) -> str | None:
    if path is None:
        problems.append(f"{key}: not set")
        return None
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        problems.append(f"{key}: cannot read {path}: {why}")
        return None
    if not secret:
        problems.append(f"{key}: {path} is empty")
        return None
    return secret


@asynccontextmanager
async def open_channels(config: Config, *, clock: Clock = utcnow) -> AsyncIterator[list[Channel]]:
    """The enabled channels, with the HTTP client the webhook and Nanobot share (closed on
    exit)."""
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
        yield await anyio.to_thread.run_sync(lambda: channels(config, http, clock=clock))
