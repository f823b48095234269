"""`facturasd sandbox`: the local servers on one address until SIGINT or SIGTERM; and how
they listen, for `run --sandbox` too (sandbox/alongside.py)."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from aiohttp import web
from cryptography import x509

from facturasd.config import RateLimit
from facturasd.config.sections import split_bind
from facturasd.sandbox import alegra
from facturasd.sandbox.server import base_urls, create_app, load_documents
from facturasd.sandbox.state import ALEGRA_RATE, ALEGRA_TOKEN, ALEGRA_USER, WINDOW, Alegra, Sandbox


class Refused(Exception):
    """The sandbox cannot start as asked; the message, one line, says why."""


async def serve(
    bind: str,
    documents: Path | None,
    dian_trust: Path | None,
    *,
    alegra_user: str = ALEGRA_USER,
    alegra_token: str = ALEGRA_TOKEN,
    alegra_rate: RateLimit | None = None,
    alegra_state: Path | None = None,
) -> None:
    """Serves until SIGINT or SIGTERM; prints each service's URL once it listens. The Alegra
    account starts from `alegra_state` when that file exists, and is written back there when
    the sandbox stops."""
    host, port = split_bind(bind)
    if not host or not port.isdigit() or int(port) > 65535:
        raise Refused(f'--bind {bind}: not an address like "127.0.0.1:8099" or "[::1]:8099"')
    # Signals are caught from the start, as the daemon does: one that comes while the
    # documents load, or right after the URLs are printed, stops the sandbox cleanly.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        rate = alegra_rate or RateLimit(ALEGRA_RATE, WINDOW)
        sandbox = Sandbox(
            alegra=Alegra(user=alegra_user, token=alegra_token, rate=rate.count, window=rate.period)
        )
        if alegra_state is not None:
            try:
                await anyio.to_thread.run_sync(restore, sandbox.alegra, alegra_state)
            except Refused as exc:
                raise Refused(f"--alegra-state {exc}") from None
        if documents is not None:
            await anyio.to_thread.run_sync(_load, sandbox, documents)
        if dian_trust is not None:
            sandbox.dian_trust = await anyio.to_thread.run_sync(_certificates, dian_trust)
        try:
            async with listening(sandbox, host, int(port)) as urls:
                known = {
                    "sat": len(sandbox.sat),
                    "dian": len(sandbox.dian),
                    "alegra": len(sandbox.alegra.documents),
                }
                for name, url in urls.items():
                    print(f"{name}: {url} ({known[name]} documents known)", flush=True)
                async for _ in signals:
                    break
        except Refused as exc:
            raise Refused(f"--bind {bind}: {exc}") from None
        if alegra_state is not None:
            await anyio.to_thread.run_sync(_save, sandbox.alegra, alegra_state)


@asynccontextmanager
async def listening(sandbox: Sandbox, host: str, port: int) -> AsyncIterator[dict[str, str]]:
    """The servers of `sandbox` listening on `host`:`port` while inside; the URL of each
    service (with port 0 the system chooses one: the URLs say which)."""
    runner = web.AppRunner(create_app(sandbox), handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise Refused(exc.strerror or str(exc)) from None
        yield base_urls(host, runner.addresses[0][1])
    finally:
        await runner.cleanup()


def _load(sandbox: Sandbox, documents: Path) -> None:
    if not documents.is_dir():
        raise Refused(f"--documents {documents}: no such folder")
    try:
        load_documents(sandbox, documents)
    except OSError as exc:
        raise Refused(f"--documents {documents}: {exc}") from None


def restore(account: Alegra, path: Path) -> None:
    """The Alegra account saved in `path`, when there is one (the first run writes it at
    stop); Refused, naming the file, when it cannot be read."""
    if not path.exists():
        return
    try:
        alegra.restore(account, path)
    except OSError as exc:
        raise Refused(f"{path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise Refused(f"{path}: {exc}") from None


def _save(account: Alegra, path: Path) -> None:
    try:
        alegra.save(account, path)
    except OSError as exc:
        raise Refused(f"--alegra-state {path}: not written: {exc.strerror or exc}") from None


def _certificates(path: Path) -> list[x509.Certificate]:
    """The PEM certificates in `path` (one or more)."""
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        raise Refused(f"--dian-trust {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise Refused(f"--dian-trust {path}: no PEM certificate in it") from None
