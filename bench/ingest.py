"""Inbox to ledger: generated invoices dropped at once, until every one is `checked`.

    python bench/ingest.py [--files 10000] [--dir /tmp]

Generates correct invoices (half DIAN UBL, half CFDI 4.0, 1–50 lines each, the generators of
tests/documents.py), starts the daemon on fresh folders under --dir, renames them all into the
inbox at once and times until the ledger has them all `checked`; reads the daemon's peak RSS
(VmHWM) before stopping it. In the same run, a plain loop of parse + check over the same files
in one process, and the ratio pipeline / plain: what the watcher, the ledger, the queue, the
fsyncs and the moves cost on top of the work itself.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from facturasd.checks import Context, check  # noqa: E402
from facturasd.formats.reader import read  # noqa: E402
from tests.documents import Item, cfdi40, co_invoice  # noqa: E402
from tests.support import free_port  # noqa: E402


def generate(folder: Path, count: int, seed: int = 7) -> list[Path]:
    rng = random.Random(seed)
    paths = []
    for n in range(count):
        items = [
            Item(
                f"Producto {n}-{i}",
                str(rng.randint(1, 20)),
                f"{rng.randint(100, 999999)}.{rng.randint(0, 99):02}",
                rng.choice(["19", "5", "0"] if n % 2 == 0 else ["16", "8", "0"]),
            )
            for i in range(rng.randint(1, 50))
        ]
        if n % 2 == 0:
            data = co_invoice(items, override={"uuid": f"{n:096x}"})
            path = folder / f"fe-{n:05}.xml"
        else:
            data = cfdi40(items, override={"uuid": str(uuid.UUID(int=n)).upper()})
            path = folder / f"cfdi-{n:05}.xml"
        path.write_bytes(data)
        paths.append(path)
    return paths


def plain_loop(paths: list[Path]) -> float:
    """Seconds to read and check every file in this process, nothing else."""
    context = Context(now=datetime(2026, 11, 3, tzinfo=UTC))
    started = time.perf_counter()
    for path in paths:
        for inspection in read(path.read_bytes(), path.name):
            result = check(inspection, context)
            assert result.verdict != "rejected", result.findings
    return time.perf_counter() - started


def pipeline(paths: list[Path], root: Path) -> tuple[float, int]:
    """Seconds from the drop until all are checked, and the daemon's peak RSS in KiB."""
    port = free_port()
    config = root / "facturasd.toml"
    config.write_text(
        f'[paths]\nstate_dir = "state"\ninbox = "inbox"\narchive = "archive"\n'
        f'rejected = "rejected"\nduplicates = "duplicates"\nreports = "reports"\n'
        f'[http]\nbind = "127.0.0.1:{port}"\n[inbox]\nstable_seconds = "500ms"\n'
        f'[checks]\nmax_age = "10000d"\n',
        encoding="utf-8",
    )
    log = (root / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "facturasd", "run", "--config", str(config)], stderr=log
    )
    database = root / "state" / "facturasd.db"
    try:
        _wait(lambda: _ready(port), 60)
        inbox = root / "inbox"
        started = time.perf_counter()
        for path in paths:
            path.rename(inbox / path.name)
        _wait(lambda: _checked(database) >= len(paths), 3600)
        elapsed = time.perf_counter() - started
        peak = _peak_rss(daemon.pid)
        states = sqlite3.connect(database).execute(
            "SELECT state, count(*) FROM invoices GROUP BY state"
        )
        assert dict(states.fetchall()) == {"checked": len(paths)}
        return elapsed, peak
    finally:
        daemon.terminate()
        daemon.wait(60)
        log.close()


def _ready(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _checked(database: Path) -> int:
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(database, timeout=5) as conn:
            return int(
                conn.execute("SELECT count(*) FROM invoices WHERE state = 'checked'").fetchone()[0]
            )
    except sqlite3.OperationalError:
        return 0


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def _wait(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("the daemon did not finish in time")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="facturasd-bench-", dir=args.dir))
    try:
        staging = root / "staging"
        staging.mkdir()
        (root / "inbox").mkdir()
        paths = generate(staging, args.files)
        size = sum(p.stat().st_size for p in paths)
        plain = plain_loop(paths)
        elapsed, peak = pipeline(paths, root)
        print(f"{len(paths)} invoices ({size / 1e6:.1f} MB), half DIAN UBL, half CFDI 4.0")
        print(f"plain parse + check loop: {plain:8.1f} s {len(paths) / plain:8.0f} invoices/s")
        print(f"daemon, drop to checked:  {elapsed:8.1f} s {len(paths) / elapsed:8.0f} invoices/s")
        print(f"pipeline / plain throughput: {plain / elapsed:.2f}")
        print(f"daemon peak RSS: {peak / 1024:.0f} MB")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
