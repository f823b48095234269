"""Helpers shared by the tests: configuration files, ports, subprocess environments."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHIPPED_CONFIG = REPO / "facturasd.toml"
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


def daemon_env(**extra: str) -> dict[str, str]:
    """The environment for a daemon subprocess, without the caller's overrides."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FACTURASD_") and k not in {"NOTIFY_SOCKET", "WATCHDOG_USEC"}
    }
    return {**env, **extra}
