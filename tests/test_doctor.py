"""`facturasd doctor`: each check on its line, exit 1 only on an error; the upstreams asked
over real HTTP (the sandbox's servers on a real port), a read-only folder found as the
service's own user would meet it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import anyio
import pytest
from aiohttp.test_utils import TestServer

from facturasd.cli import main
from facturasd.config import Config, load_config
from facturasd.constants import DATABASE_FILE
from facturasd.doctor import Check, examine
from facturasd.sandbox.server import base_urls, create_app
from facturasd.sandbox.state import ALEGRA_TOKEN, ALEGRA_USER, Sandbox
from tests.support import PYTHON, SHIPPED_CONFIG, daemon_env, free_port, run_facturasd

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


@pytest.mark.usefixtures("offline")
def test_a_wrong_token_line_is_an_error_for_doctor_as_for_check_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The daemon refuses to start on it: doctor must not pass what check-config refuses."""
    tokens = tmp_path / "http-token"
    tokens.write_text("contabilidad:abc123\nerp secreto-del-erp\n", encoding="utf-8")
    tokens.chmod(0o600)
    monkeypatch.setenv("FACTURASD_HTTP__TOKEN_FILE", str(tokens))
    config = str(shipped(tmp_path))
    said = f"http.token_file ({tokens}): line 2 is not name:token"

    assert main(["doctor", "--config", config]) == 1
    out = capsys.readouterr().out
    assert any(line.startswith(f"error    http: {said}") for line in out.splitlines())
    assert "secreto" not in out and "abc123" not in out
    assert main(["check-config", "--config", config]) == 2
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith(f"error: {said}") for line in err)


@pytest.mark.usefixtures("offline")
def test_a_secret_file_others_can_read_is_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = tmp_path / "http-token"
    tokens.write_text("contabilidad:abc123\n", encoding="utf-8")
    tokens.chmod(0o644)
    monkeypatch.setenv("FACTURASD_HTTP__TOKEN_FILE", str(tokens))
    config = str(shipped(tmp_path))
    said = f"http.token_file: {str(tokens)!r} can be read by its group or by others: chmod 0600"

    assert main(["doctor", "--config", config]) == 0
    assert f"warning  secrets: {said} {tokens}" in capsys.readouterr().out.splitlines()
    assert main(["check-config", "--config", config]) == 0
    assert f"warning: {said} {tokens}" in capsys.readouterr().err.splitlines()

    tokens.chmod(0o600)
    assert main(["doctor", "--config", config]) == 0
    assert "chmod" not in capsys.readouterr().out

    # systemd's copy for the service: its mode shows the ACL granting the service's user.
    tokens.chmod(0o640)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert main(["doctor", "--config", config]) == 0
    assert "chmod" not in capsys.readouterr().out


@pytest.mark.usefixtures("offline")
def test_without_a_dian_certificate_online_is_an_error(tmp_path: Path) -> None:
    config = load_config(shipped(tmp_path), os.environ)
    for online, level in ((False, "warning"), (True, "error")):
        checks = anyio.run(partial(examine, config, online=online))
        [check] = by_subject(checks)["dian-certificate"]
        assert check.level == level and "none configured" in check.message


# The install guide's credentials: root's files that the unit hands over by name.
CREDENTIALS = {
    "alegra-token": "FACTURASD_ALEGRA__TOKEN_FILE",
    "http-token": "FACTURASD_HTTP__TOKEN_FILE",
    "dian-certificate.p12": "FACTURASD_AUTHORITIES__DIAN__CERTIFICATE_FILE",
    "dian-certificate-password": "FACTURASD_AUTHORITIES__DIAN__CERTIFICATE_PASSWORD_FILE",
}


def installed(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """The shipped config, a credentials folder as install.md makes it (with a good file for
    each name), a unit whose drop-in loads each, and the environment naming them bare, as
    install.md's configuration does."""
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    for name in CREDENTIALS:
        (credentials / name).write_text("contabilidad:abc123\n", encoding="utf-8")
        (credentials / name).chmod(0o600)
    unit = tmp_path / "facturasd.service"
    unit.write_text("[Service]\nUser=facturasd\n", encoding="utf-8")
    # `systemctl edit facturasd`'s drop-in, as install.md has it.
    drop_in = tmp_path / "facturasd.service.d" / "override.conf"
    drop_in.parent.mkdir()
    drop_in.write_text(
        "[Service]\n"
        + "".join(f"LoadCredential={name}:{credentials / name}\n" for name in CREDENTIALS),
        encoding="utf-8",
    )
    env = offline_env(
        FACTURASD_ALEGRA__EMAIL="cuentas@example.com",
        **{variable: name for name, variable in CREDENTIALS.items()},
    )
    return shipped(tmp_path), unit, env


@pytest.mark.slow
def test_as_the_service_user_root_s_credentials_are_not_verified_rather_than_broken(
    tmp_path: Path,
) -> None:
    """`sudo -u facturasd CREDENTIALS_DIRECTORY=/etc/facturasd/credentials facturasd doctor`
    with root's 0700 folder: no traceback; each file it may not look at is a warning saying
    so and to run doctor as root; nothing of a correct install is an error."""
    config, unit, env = installed(tmp_path)
    credentials = tmp_path / "credentials"
    # The service's user may not enter it (0000: not even its owner may, without root's
    # capabilities, which UNPRIVILEGED drops).
    credentials.chmod(0o000)
    script = (
        "import json, os, sys; from functools import partial; from pathlib import Path; "
        "import anyio; from facturasd.config import load_config; "
        "from facturasd.doctor import examine, summary; "
        "config = load_config(Path(sys.argv[1]), os.environ); "
        "print(json.dumps(summary(anyio.run(partial(examine, config, unit=Path(sys.argv[2]))))))"
    )
    try:
        done = subprocess.run(
            [*UNPRIVILEGED, PYTHON, "-c", script, str(config), str(unit)],
            capture_output=True,
            text=True,
            env=daemon_env(**env, CREDENTIALS_DIRECTORY=str(credentials)),
            timeout=60,
        )
        cli = run_facturasd(
            "doctor",
            "--config",
            str(config),
            wrapper=UNPRIVILEGED,
            env=daemon_env(**env, CREDENTIALS_DIRECTORY=str(credentials)),
        )
    finally:
        credentials.chmod(0o700)
    assert done.returncode == 0, done.stderr
    assert cli.returncode == 0 and "Traceback" not in cli.stderr, cli.stderr
    found = [Check(**c) for c in json.loads(done.stdout)["checks"]]
    assert not [c for c in found if c.level == "error"], found
    checks = by_subject(found)
    secrets = [c.message for c in checks["secrets"]]
    for name, variable in CREDENTIALS.items():
        key = variable.removeprefix("FACTURASD_").lower().replace("__", ".")
        [line] = [m for m in secrets if m.startswith(f"{key}:")]
        assert str(credentials / name) in line and "permission denied" in line
        assert "run doctor as root" in line
    assert [c.level for c in checks["dian-certificate"]] == ["warning"]
    assert len(checks["systemd"]) == len(CREDENTIALS)
    for check in checks["systemd"]:
        assert check.level == "warning" and "permission denied" in check.message
        assert "run doctor as root" in check.message


@pytest.mark.anyio
async def test_without_credentials_directory_the_unit_s_credentials_are_not_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the service user without CREDENTIALS_DIRECTORY the bare names are not found: that
    is not a broken install when the unit hands them over; doctor says what to run."""
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    config_path, unit, env = installed(tmp_path)
    found = await examine(load_config(config_path, env), unit=unit)
    assert not [c for c in found if c.level == "error"], found
    checks = by_subject(found)
    for name in CREDENTIALS:
        [check] = [c for c in checks["secrets"] if f"credential {name!r}" in c.message]
        assert check.level == "warning"
        assert "CREDENTIALS_DIRECTORY=/etc/facturasd/credentials" in check.message
    assert [c.level for c in checks["dian-certificate"]] == ["warning"]

    # A source the drop-in names, missing, keeps the unit from starting: an error naming it.
    (tmp_path / "credentials" / "http-token").unlink()
    checks = by_subject(await examine(load_config(config_path, env), unit=unit))
    [check] = [c for c in checks["systemd"] if c.level == "error"]
    assert str(tmp_path / "credentials" / "http-token") in check.message

    # The same file missing with no unit to hand it over: the error it was.
    checks = by_subject(await examine(load_config(config_path, env), unit=tmp_path / "none"))
    assert "error" in {c.level for c in checks["secrets"]}


@pytest.mark.slow
def test_a_state_folder_it_may_not_enter_is_named_without_a_traceback(tmp_path: Path) -> None:
    config = shipped(tmp_path)
    state = tmp_path / "var" / "state"
    state.mkdir(parents=True)
    (state / DATABASE_FILE).write_bytes(b"")
    state.chmod(0o000)
    try:
        done = run_facturasd(
            "doctor",
            "--config",
            str(config),
            wrapper=UNPRIVILEGED,
            env=daemon_env(**offline_env()),
        )
    finally:
        state.chmod(0o755)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = done.stdout.splitlines()
    assert any(x.startswith("error    folders: paths.state_dir") for x in lines), lines
    [database] = [x for x in lines if " database:" in x]
    assert database.startswith("warning") and "permission denied" in database
