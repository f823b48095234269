"""Logging set-up: plain text for a terminal, JSON lines for journald.

The worker pool and the pipeline set `job_id_var` / `invoice_id_var`; every record logged
while they are set carries them, without each call site passing them along.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

job_id_var: ContextVar[int | None] = ContextVar("job_id", default=None)
invoice_id_var: ContextVar[int | None] = ContextVar("invoice_id", default=None)


@contextmanager
def about_invoice(invoice_id: int) -> Iterator[None]:
    """What is logged inside is tagged with the invoice."""
    token = invoice_id_var.set(invoice_id)
    try:
        yield
    finally:
        invoice_id_var.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # A record that names its invoice or job itself (`extra=`) keeps it.
        if getattr(record, "job_id", None) is None:
            record.job_id = job_id_var.get()
        if getattr(record, "invoice_id", None) is None:
            record.invoice_id = invoice_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("invoice_id", "job_id"):
            if (value := getattr(record, key, None)) is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """The local time with its zone offset (2026-11-29T12:00:00.000-05:00)."""
        return datetime.fromtimestamp(record.created).astimezone().isoformat("T", "milliseconds")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        tags = [
            f"{key}={value}"
            for key in ("invoice_id", "job_id")
            if (value := getattr(record, key, None)) is not None
        ]
        return f"{text} [{' '.join(tags)}]" if tags else text


def configure(log_format: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp and httpx log every request at INFO, watchfiles every batch of changes ("12
    # changes detected"): noise beside the line the daemon writes for each file it takes and
    # each change of its state (a call that fails is in that line's reason).
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
