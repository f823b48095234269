"""A real SMTP server (aiosmtpd) for the e-mail channel's tests: it keeps what it is given and
asks for a login."""

from __future__ import annotations

import email
import email.policy
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

PASSWORD = "smtp-Pa55word-do-not-show"


@dataclass
class Mailbox:
    """aiosmtpd's handler: keeps what it is given."""

    envelopes: list[Envelope] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"

    def messages(self) -> list[EmailMessage]:
        parsed = []
        for envelope in self.envelopes:
            message = email.message_from_bytes(
                envelope.original_content or b"", policy=email.policy.default
            )
            assert isinstance(message, EmailMessage)  # (what the default policy makes)
            parsed.append(message)
        return parsed


def _login(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == b"facturas"
        and data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)  # (the server answers 535)


@contextmanager
def smtp_server(port: int, tls: ssl.SSLContext | None = None) -> Iterator[Mailbox]:
    """Asks for the user `facturas` with PASSWORD; with `tls`, only after STARTTLS."""
    mailbox = Mailbox()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=_login,
        tls_context=tls,
        require_starttls=tls is not None,
        auth_require_tls=tls is not None,
    )
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()
