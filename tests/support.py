"""Helpers shared by the tests: configuration files, ports, subprocess environments, files
dropped into an inbox, a ledger filled in this process."""

from __future__ import annotations

import io
import itertools
import logging
import os
import pwd
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import httpx

from facturasd import logs
from facturasd.config import Config, QueueSettings, load_config
from facturasd.constants import QueueName
from facturasd.sandbox.state import ALEGRA_TOKEN, ALEGRA_USER
from tests.documents import Item, co_invoice

if TYPE_CHECKING:
    from facturasd.services import Services

REPO = Path(__file__).resolve().parent.parent
SHIPPED_CONFIG = REPO / "facturasd.toml"
SAMPLES = REPO.parent / "shared" / "samples"
# The account the tests run as: who the CLI says acted.
ACCOUNT = pwd.getpwuid(os.getuid()).pw_name
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp_path: Path, extra: str = "", *, port: int | None = None) -> Path:
    """A configuration under tmp_path: the shipped defaults with a free port."""
    path = tmp_path / "facturasd.toml"
    path.write_text(
        f'[paths]\nstate_dir = "state"\ninbox = "data/inbox"\narchive = "data/archive"\n'
        f'rejected = "data/rejected"\nduplicates = "data/duplicates"\nreports = "data/reports"\n'
        f'[http]\nbind = "127.0.0.1:{port or free_port()}"\n{extra}',
        encoding="utf-8",
    )
    return path


def port_of(config: Path) -> int:
    """The HTTP port a configuration from `write_config` binds."""
    return int(config.read_text().split("127.0.0.1:")[1].split('"')[0])


def daemon_env(**extra: str) -> dict[str, str]:
    """The environment for a daemon subprocess, without the caller's overrides."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FACTURASD_") and k not in {"NOTIFY_SOCKET", "WATCHDOG_USEC"}
    }
    return {**env, **extra}


class NotifySocket:
    """A real datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, address: str):
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.messages: list[str] = []

    def wait_for(self, line: str, timeout: float = 30.0) -> list[str]:
        """Reads datagrams until one has `line`; returns everything read so far."""
        deadline = time.monotonic() + timeout
        while not any(line in m.splitlines() for m in self.messages):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {line!r} within {timeout}s; got {self.messages}")
            self.sock.settimeout(remaining)
            self.messages.append(self.sock.recv(4096).decode())
        return self.messages

    def close(self) -> None:
        self.sock.close()


class DaemonProcess:
    """`facturasd run` as a real subprocess, its stderr kept in a file."""

    def __init__(
        self,
        config: Path,
        env: dict[str, str],
        *args: str,
        log_dir: Path,
        wrapper: Sequence[str] = (),
        process_group: int | None = None,
    ):
        """`wrapper`: a command that runs the daemon (e.g. setpriv, to drop capabilities);
        `process_group`: 0 puts it in a group of its own, as a shell does a foreground job."""
        self.log = log_dir / f"daemon-{time.monotonic_ns()}.log"
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                [*wrapper, PYTHON, "-m", "facturasd", "run", "--config", str(config), *args],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
                process_group=process_group,
            )

    def stderr(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


class SandboxProcess:
    """`facturasd sandbox` as a real subprocess on a port the system chooses: its services'
    URLs as it printed them, and its admin endpoints."""

    LISTENING = re.compile(r"^(\w+): (http://\S+) \((\d+) documents known\)$")

    def __init__(self, *args: str, services: int = 3):
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "facturasd", "sandbox", "--bind", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=daemon_env(),
        )
        assert self.proc.stdout is not None
        self.urls: dict[str, str] = {}
        self.known: dict[str, int] = {}
        while len(self.urls) < services:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"sandbox exited {self.proc.wait(10)}: {self.stderr()}")
            found = self.LISTENING.match(line.strip())
            assert found, line
            self.urls[found[1]] = found[2]
            self.known[found[1]] = int(found[3])
        # Alegra's credentials, as the arguments set them or the sandbox's defaults.
        given = dict(itertools.pairwise(args))
        self.alegra_user = given.get("--alegra-user", ALEGRA_USER)
        self.alegra_token = given.get("--alegra-token", ALEGRA_TOKEN)
        base = httpx.URL(self.urls["sat"])
        self.admin = httpx.Client(base_url=f"{base.scheme}://{base.host}:{base.port}", timeout=10)

    def env(self) -> dict[str, str]:
        """The variables that point a daemon at these servers."""
        return {
            "FACTURASD_AUTHORITIES__SAT__URL": self.urls["sat"],
            "FACTURASD_AUTHORITIES__DIAN__URL": self.urls["dian"],
        }

    def alegra_env(self, folder: Path) -> dict[str, str]:
        """The variables that point a daemon at the Alegra server as this sandbox's user, its
        token written to an `alegra-token` file in `folder`."""
        token = folder / "alegra-token"
        token.write_text(self.alegra_token, encoding="utf-8")
        return {
            "FACTURASD_ALEGRA__BASE_URL": self.urls["alegra"],
            "FACTURASD_ALEGRA__EMAIL": self.alegra_user,
            "FACTURASD_ALEGRA__TOKEN_FILE": str(token),
        }

    def post(self, path: str, body: dict[str, object]) -> dict[str, object]:
        response = self.admin.post(path, json=body)
        response.raise_for_status()
        found: dict[str, object] = response.json()
        return found

    def stats(self) -> dict[str, dict[str, object]]:
        found: dict[str, dict[str, object]] = self.admin.get("/_admin/stats").json()
        return found

    def stderr(self) -> str:
        return self.proc.stderr.read() if self.proc.stderr else ""

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.admin.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


@contextmanager
def daemon_log(log_format: str) -> Iterator[io.StringIO]:
    """What the daemon's own log set-up (`facturasd.logs.configure`) writes, kept in memory;
    the test's logging is put back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in ("aiohttp.access", "watchfiles")}
    logs.configure(log_format, "info")
    written = io.StringIO()
    assert isinstance(root.handlers[0], logging.StreamHandler)
    root.handlers[0].setStream(written)
    try:
        yield written
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, was in quiet.items():
            logging.getLogger(name).setLevel(was)


def run_facturasd(
    *args: str,
    wrapper: Sequence[str] = (),
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """The `facturasd` command as a person runs it, in a subprocess, its output kept.
    `wrapper`: a command that runs it (e.g. setpriv, to drop capabilities)."""
    return subprocess.run(
        [*wrapper, PYTHON, "-m", "facturasd", *args],
        capture_output=True,
        text=True,
        env=env or daemon_env(),
        cwd=cwd,
        timeout=timeout,
    )


def get_health(port: int, timeout: float = 10.0) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}/health", timeout=timeout)


def wait_healthy(port: int, proc: DaemonProcess, timeout: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        if proc.proc.poll() is not None:
            raise AssertionError(f"daemon exited {proc.proc.returncode}:\n{proc.stderr()}")
        try:
            return get_health(port)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def enqueue(
    db_path: Path,
    jobs: list[tuple[str, str, dict[str, object]]],
    settings: Mapping[QueueName, QueueSettings] | None = None,
) -> list[int]:
    """Puts jobs in the database file with the real queue API, from outside the daemon."""
    from facturasd.store.db import Database
    from facturasd.store.queue import Queue

    async def put() -> list[int]:
        db = await Database.open(db_path)
        try:
            queue = Queue(db, settings)
            return [(await queue.enqueue(q, kind, payload)).id for q, kind, payload in jobs]
        finally:
            await db.close()

    return anyio.run(put)


def query(db_path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with sqlite3.connect(db_path, timeout=30) as conn:
        return conn.execute(sql, params).fetchall()


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)


def drop(folder: Path, name: str, data: bytes) -> Path:
    """As a mail fetcher does: written under a temporary name, then renamed."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    partial.rename(path)
    return path


async def _take(config: Config, files: Mapping[str, bytes], process: bool) -> None:
    paths = config.paths
    for folder in (paths.inbox, paths.archive, paths.rejected, paths.duplicates):
        folder.mkdir(parents=True, exist_ok=True)
    # (imported here: bench/ingest.py uses this module from beside its own queue.py, which
    # would stand in for the standard library's under aiosqlite)
    from facturasd.services import build

    async with build(config) as services:
        queue = services.queue
        for name, data in files.items():
            (paths.inbox / name).write_bytes(data)
            await services.ingest(paths.inbox / name)
        queues = [QueueName.INVOICE_PROCESSING.value]
        while process and (job := await queue.claim(queues, config.workers.lease)) is not None:
            await queue.complete(job, await services.process(job))


def take(config_file: Path, files: Mapping[str, bytes], *, process: bool = True) -> Config:
    """Ingest `files` and, with `process`, run their parse-and-check jobs, as the daemon does,
    in this process (no watcher, no worker pool) into the ledger `config_file` names."""
    config = load_config(config_file, {})
    anyio.run(_take, config, files, process)
    return config


@asynccontextmanager
async def serving(config_file: Path, bind: str | None = None) -> AsyncIterator[Services]:
    """The daemon's HTTP app (API and dashboard) on a real port, on services built from
    `config_file` (listening, as far as the API knows, on `bind`); the services carry the
    API's base URL in `.url`."""
    # (imported here, as in _take)
    from aiohttp.test_utils import TestServer

    from facturasd.services import build
    from facturasd.web import tokens
    from facturasd.web.api import PREFIX, Api
    from facturasd.web.app import create_app

    environ = {"FACTURASD_HTTP__BIND": bind} if bind else {}
    config = load_config(config_file, environ)
    async with build(config) as services:
        found = await anyio.to_thread.run_sync(tokens.read, config.http.token_file)
        app = create_app(services.health, None, services.metrics, Api(services, found))
        server = TestServer(app, host="127.0.0.1", port=free_port())
        await server.start_server()
        try:
            object.__setattr__(services, "url", str(server.make_url(PREFIX)))
            yield services
        finally:
            await server.close()


def cufe(n: int) -> str:
    return f"{n:096x}"


def invoice(n: int, *, prepaid: str | None = None, override: dict[str, str] | None = None) -> bytes:
    """A correct generated invoice whose CUFE is `n`; `override` injects a defect."""
    items = [Item(f"Producto {n}", "2", f"{1000 + n}.00", "19")]
    return co_invoice(items, prepaid=prepaid, override={"uuid": cufe(n), **(override or {})})
