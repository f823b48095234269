"""The `.motivo.txt` beside a file that left the archive: what was wrong and what to do."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo
from pathlib import Path

import anyio

from facturasd.constants import InvoiceState
from facturasd.findings import Finding, Language, motivo
from facturasd.inbox.archive import motivo_path, write_atomically
from facturasd.store.ledger import Invoice

# The first line of a `.motivo.txt`, by the state that wrote it.
TITLES: dict[InvoiceState, dict[Language, str]] = {
    InvoiceState.UNREADABLE: {
        "es": "facturasd: el archivo no se pudo leer como factura",
        "en": "facturasd: the file could not be read as an invoice",
    },
    InvoiceState.REJECTED: {
        "es": "facturasd: factura rechazada por sus errores",
        "en": "facturasd: invoice rejected for its errors",
    },
    InvoiceState.DUPLICATE: {
        "es": "facturasd: documento repetido, no se contabiliza",
        "en": "facturasd: duplicate document, not booked",
    },
}


def local_time(timestamp: float, zone: tzinfo) -> str:
    return datetime.fromtimestamp(timestamp, zone).strftime("%Y-%m-%d %H:%M")


def named(invoice: Invoice, zone: tzinfo) -> str:
    """How a message names an earlier invoice: number, id, file and date of receipt."""
    return f"{invoice.describe()}, {local_time(invoice.received_at, zone)}"


async def write(
    dest: Path,
    state: InvoiceState,
    label: str,
    received: str,
    findings: Sequence[Finding],
    country: str | None = None,
) -> None:
    """The `.motivo.txt` of the file at `dest`, written atomically: Spanish, then English,
    amounts as `country` writes them."""
    text = motivo(TITLES[state], label, received, findings, country)
    await anyio.to_thread.run_sync(write_atomically, motivo_path(dest), text)
