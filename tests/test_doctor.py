"""`facturasd doctor`: each check on its line, exit 1 only on an error; the upstreams asked
over real HTTP (the sandbox's servers on a real port), a read-only folder found as the
service's own user would meet it."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from facturasd.cli import main
from facturasd.config import Config, load_config
from facturasd.constants import DATABASE_FILE
from facturasd.doctor import Check, examine
from facturasd.sandbox.server import base_urls, create_app
from facturasd.sandbox.state import ALEGRA_TOKEN, ALEGRA_USER, Sandbox
from tests.support import SHIPPED_CONFIG, daemon_env, free_port, run_facturasd

# Root writes any folder: the command runs without the capabilities that let it, as the
# service's own user would.
UNPRIVILEGED: Sequence[str] = (
    ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
)


def shipped(tmp_path: Path) -> Path:
    """The shipped facturasd.toml, its relative folders under tmp_path."""
    return Path(shutil.copy(SHIPPED_CONFIG, tmp_path / "facturasd.toml"))


def offline_env(**extra: str) -> dict[str, str]:
    """Upstreams on a local port nothing listens on (an office offline), the port free."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    return {
        "FACTURASD_HTTP__BIND": f"127.0.0.1:{free_port()}",
        "FACTURASD_AUTHORITIES__SAT__URL": f"{nowhere}/sat",
        "FACTURASD_AUTHORITIES__DIAN__URL": f"{nowhere}/dian",
        **extra,
    }


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("FACTURASD_")]:
        monkeypatch.delenv(key)
    for key, value in offline_env().items():
        monkeypatch.setenv(key, value)


def by_subject(checks: Sequence[Check]) -> dict[str, list[Check]]:
    found: dict[str, list[Check]] = {}
    for check in checks:
        found.setdefault(check.subject, []).append(check)
    return found


@pytest.mark.usefixtures("offline")
def test_the_shipped_config_offline_passes_with_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["doctor", "--config", str(shipped(tmp_path))]) == 0
    lines = capsys.readouterr().out.splitlines()
    levels = {line.split()[1].rstrip(":"): line.split()[0] for line in lines}
    assert levels["folders"] == "ok" and levels["database"] == "ok" and levels["disk"] == "ok"
    # Unreachable or not configured: warnings, the office may be offline a while.
    assert levels["sat"] == levels["dian"] == levels["alegra"] == "warning"
    assert levels["clock"] == "warning"
    assert all(line.split()[0] in ("ok", "warning") for line in lines)


@pytest.mark.usefixtures("offline")
def test_online_makes_an_unreachable_upstream_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["doctor", "--online", "--json", "--config", str(shipped(tmp_path))]) == 1
    found = json.loads(capsys.readouterr().out)
    errors = {check["subject"] for check in found["checks"] if check["level"] == "error"}
    # No DIAN certificate is DIAN not configured: an error too, as install.md says.
    assert errors == {"sat", "dian", "dian-certificate", "alegra", "clock"}
    assert found["errors"] == 5


@pytest.mark.usefixtures("offline")
def test_a_damaged_database_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = shipped(tmp_path)
    state = tmp_path / "var" / "state"
    state.mkdir(parents=True)
    (state / DATABASE_FILE).write_bytes(b"not a database at all" * 100)
    assert main(["doctor", "--config", str(config)]) == 1
    [line] = [x for x in capsys.readouterr().out.splitlines() if " database:" in x]
    assert line.startswith("error") and str(state / DATABASE_FILE) in line


@pytest.mark.anyio
async def test_against_servers_that_answer(tmp_path: Path) -> None:
    """SAT, DIAN and Alegra answering (the sandbox's on a real port): reachable, the clock
    compared with their Date, and Alegra's word on the credentials."""
    server = TestServer(create_app(Sandbox()), host="127.0.0.1")
    await server.start_server()
    try:
        urls = base_urls("127.0.0.1", server.port or 0)
        token = tmp_path / "alegra-token"

        def config(given_token: str) -> Config:
            token.write_text(given_token, encoding="utf-8")
            return load_config(
                shipped(tmp_path),
                offline_env(
                    FACTURASD_AUTHORITIES__SAT__URL=urls["sat"],
                    FACTURASD_AUTHORITIES__DIAN__URL=urls["dian"],
                    FACTURASD_ALEGRA__BASE_URL=urls["alegra"],
                    FACTURASD_ALEGRA__EMAIL=ALEGRA_USER,
                    FACTURASD_ALEGRA__TOKEN_FILE=str(token),
                ),
            )

        checks = by_subject(await examine(config(ALEGRA_TOKEN), online=True))
        assert [c.level for c in checks["sat"]] == ["ok"]
        assert [c.level for c in checks["dian"]] == ["ok"]
        assert [c.level for c in checks["alegra"]] == ["ok", "ok"]
        assert "accepts" in checks["alegra"][1].message
        assert [c.level for c in checks["clock"]] == ["ok"]

        checks = by_subject(await examine(config("not-the-token"), online=True))
        [refused] = [c for c in checks["alegra"] if c.level == "error"]
        assert ALEGRA_USER in refused.message and "not-the-token" not in refused.message
    finally:
        await server.close()


@pytest.mark.anyio
@pytest.mark.usefixtures("offline")
async def test_a_missing_credential_of_the_installed_unit_is_an_error(tmp_path: Path) -> None:
    present = tmp_path / "alegra-token"
    present.write_text("x", encoding="utf-8")
    missing = tmp_path / "dian-certificate-password"
    unit = tmp_path / "facturasd.service"
    unit.write_text(
        "[Service]\n"
        f"LoadCredential=alegra-token:{present}\n"
        f"#LoadCredential=smtp-password:{tmp_path / 'commented-out'}\n"
        f"LoadCredential=dian-certificate-password:{missing}\n",
        encoding="utf-8",
    )
    config = load_config(shipped(tmp_path), os.environ)
    [check] = by_subject(await examine(config, unit=unit))["systemd"]
    assert check.level == "error"
    assert "dian-certificate-password" in check.message and str(missing) in check.message


@pytest.mark.slow
def test_a_read_only_folder_is_named_and_exits_1(tmp_path: Path) -> None:
    config = shipped(tmp_path)
    archive = tmp_path / "var" / "archive"
    archive.mkdir(parents=True)
    archive.chmod(0o555)
    try:
        done = run_facturasd(
            "doctor",
            "--config",
            str(config),
            wrapper=UNPRIVILEGED,
            env=daemon_env(**offline_env()),
        )
    finally:
        archive.chmod(0o755)
    assert done.returncode == 1, done.stderr
    [line] = [x for x in done.stdout.splitlines() if x.startswith("error")]
    assert "paths.archive" in line and str(archive) in line and "not writable" in line
