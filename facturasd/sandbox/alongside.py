"""`facturasd run --sandbox`: the sandbox's servers in the daemon's process on `sandbox.bind`,
the daemon's configuration pointed at them, and the local SAT and DIAN knowing every document
the daemon has read.

The documents are looked up in the daemon's ledger when SAT or DIAN is asked about one they do
not know (Sandbox.lookup), not pushed from the pipeline: whatever the daemon read is in the
ledger before it asks, and what the admin endpoints set first stands.
"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio

from facturasd.config import Config
from facturasd.config.sections import split_bind
from facturasd.constants import DATABASE_FILE
from facturasd.formats.model import Inspection
from facturasd.sandbox import alegra
from facturasd.sandbox.run import Refused, listening, restore
from facturasd.sandbox.server import know
from facturasd.sandbox.state import Sandbox
from facturasd.store import kv
from facturasd.store.db import Database

# In paths.state_dir: the local Alegra's account (bills, contacts) from one run to the next,
# as the ledger remembers what it booked there.
ALEGRA_STATE = "sandbox-alegra.json"
# In the ledger's kv table: the ledger is a sandbox's (its answers the local servers', its
# bills the local Alegra's).
MARK = "sandbox"


@dataclass(frozen=True)
class Alongside:
    """The sandbox running beside the daemon, and the daemon's configuration pointed at it."""

    config: Config
    sandbox: Sandbox
    urls: dict[str, str]

    def read_from(self, db: Database) -> None:
        """SAT and DIAN know, from now on, the documents of `db`'s ledger."""

        async def lookup(uuid: str) -> None:
            # SAT's UUIDs are written in upper case, DIAN's CUFEs in lower: either, as read.
            # A PDF alone names the document but is not it: the XML's row first.
            row = await db.fetchone(
                "SELECT inspection, format, path FROM invoices WHERE uuid IN (?, ?, ?) "
                "AND inspection IS NOT NULL ORDER BY format = 'pdf', id LIMIT 1",
                (uuid, uuid.upper(), uuid.lower()),
            )
            if row is None:
                return
            document = Inspection.model_validate_json(row["inspection"]).document
            if document is None or not document.uuid:
                return
            xml = None  # DIAN gives the XML of a document archived as an XML file
            if row["format"] != "pdf" and row["path"].lower().endswith(".xml"):
                with contextlib.suppress(OSError):
                    xml = await anyio.Path(row["path"]).read_bytes()
            know(self.sandbox, document, document.uuid, xml=xml)

        self.sandbox.lookup = lookup


@asynccontextmanager
async def alongside(config: Config) -> AsyncIterator[Alongside]:
    """The servers listening on `sandbox.bind` while inside, with `config` as the daemon runs
    against them: SAT's, DIAN's and Alegra's URLs theirs, every Alegra user the sandbox's (a
    token file of its own in a private temporary folder), no webhooks, nothing sent out
    (`_pointed`). Refused when the address cannot be had."""
    sandbox = Sandbox()
    state = config.paths.state_dir / ALEGRA_STATE
    try:
        await anyio.to_thread.run_sync(restore, sandbox.alegra, state)
    except Refused as exc:
        raise Refused(f"the local Alegra's account: {exc}") from None
    host, port = split_bind(config.sandbox.bind)
    with tempfile.TemporaryDirectory(prefix="facturasd-sandbox-") as private:
        token = Path(private) / "alegra-token"
        token.write_text(sandbox.alegra.token, encoding="utf-8")
        try:
            async with listening(sandbox, host, int(port)) as urls:
                yield Alongside(_pointed(config, urls, sandbox, token), sandbox, urls)
        except Refused as exc:
            raise Refused(f"sandbox.bind = {config.sandbox.bind!r}: {exc}") from None
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(alegra.save, sandbox.alegra, state)


def claim(conn: sqlite3.Connection, config: Config, *, sandbox: bool, now: float) -> None:
    """A sandbox run never writes in a ledger of real work, nor a real run in a sandbox's:
    the first `run --sandbox` on an empty ledger marks it; Refused otherwise."""
    ledger = config.paths.state_dir / DATABASE_FILE
    marked = kv.get(conn, MARK) is not None
    if sandbox and not marked:
        if conn.execute("SELECT 1 FROM invoices LIMIT 1").fetchone() is not None:
            raise Refused(
                f"{ledger} holds invoices of real work: run --sandbox would record the local "
                "servers' answers and bills in it. Give the sandbox a configuration of its own "
                "(its own paths.state_dir and folders), e.g. the shipped facturasd.toml in an "
                "empty directory"
            )
        kv.put(conn, MARK, True, now=now)
    elif marked and not sandbox:
        raise Refused(
            f"{ledger} was filled by run --sandbox: its tax authority answers and bills are "
            "the local servers'. For real work start from an empty paths.state_dir and empty "
            "folders (move these away), or keep running this one with --sandbox"
        )


def _pointed(config: Config, urls: dict[str, str], sandbox: Sandbox, token: Path) -> Config:
    """`config` against the local servers, and nothing that leaves this machine: no e-mail,
    webhook or Nanobot channel (the log stays), no report by e-mail, the cache in memory (a
    shared Redis would mix the local Alegra's ids with the real one's)."""
    authorities = config.authorities
    settings = config.alegra
    notify = config.notify
    return config.model_copy(
        update={
            "notify": notify.model_copy(
                update={
                    name: getattr(notify, name).model_copy(update={"enabled": False})
                    for name in ("email", "webhook", "nanobot")
                }
            ),
            "reports": config.reports.model_copy(update={"email": False}),
            "cache": config.cache.model_copy(update={"backend": "memory"}),
            "authorities": authorities.model_copy(
                update={
                    "sat": authorities.sat.model_copy(update={"url": urls["sat"]}),
                    "dian": authorities.dian.model_copy(update={"url": urls["dian"]}),
                }
            ),
            "alegra": settings.model_copy(
                update={
                    "base_url": urls["alegra"],
                    "email": sandbox.alegra.user,
                    "token_file": token,
                    "webhooks_url": "",
                    # Each company books as the sandbox's user, on its own accounts.
                    "companies": {
                        slug: section.model_copy(update={"email": "", "token_file": None})
                        for slug, section in settings.companies.items()
                    },
                }
            ),
        }
    )
