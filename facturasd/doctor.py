"""`facturasd doctor`: an installation looked over, one line a check, each saying what to fix;
and the start-up checks `check-config` shares with it.

Offline checks are errors when they fail: the folders (config/folders.py, as check-config),
the database's integrity, the disk, the DIAN certificates, the notification channels, the
systemd unit's credentials. What needs an upstream (SAT, DIAN, Alegra reachable, the clock
against their Date headers) is a warning when it cannot be had, since an office may be offline
for a while; `online=True` makes it an error. Alegra refusing the configured credentials is an
error either way.
"""

from __future__ import annotations

import getpass
import os
import shutil
import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx

from facturasd.clock import Clock, utcnow
from facturasd.config import Config
from facturasd.config.folders import (
    filesystem_warnings,
    folder_problems,
    secret_files,
    unverifiable,
)
from facturasd.constants import DATABASE_FILE
from facturasd.errors import CannotListen, ConfigError, LedgerMissing

Level = Literal["ok", "warning", "error"]

# Where `systemctl enable` finds the unit docs/install.md installs.
UNIT = Path("/etc/systemd/system/facturasd.service")
# An upstream that does not answer within this is unreachable, for the doctor.
REACH_TIMEOUT = 10.0
# The clock against the upstreams': WS-Security timestamps (DIAN) live five minutes.
SKEW_WARNING = 60.0
SKEW_ERROR = 300.0
# Free space where the ledger is below alerts.disk_free_min_mb is a warning (the daemon alerts
# on it); below this many bytes an error (health.DISK_FAIL_BYTES: writes are about to fail).
DISK_ERROR_BYTES = 100 << 20


@dataclass(frozen=True)
class Check:
    """One line of the doctor's: how it went, what was looked at, what was found or to fix."""

    level: Level
    subject: str
    message: str

    def shown(self) -> dict[str, str]:
        return asdict(self)


def start_up(config: Config) -> tuple[str | None, list[str]]:
    """What would stop `run` once the configuration is valid: the pid of a daemon already
    running (whose port and database these are; then not tried), and the problems: the port
    taken, no ledger beside an archive of files."""
    from facturasd.daemon import running_pid
    from facturasd.pipeline.rebuild import refuse_new_ledger
    from facturasd.web.app import listen

    problems = []
    running = running_pid(config.paths.state_dir)
    if running is None:
        try:
            listen(config.http).close()
        except CannotListen as exc:
            problems.append(str(exc))
    try:
        refuse_new_ledger(config)
    except LedgerMissing as exc:
        problems.append(str(exc))
    except OSError as exc:  # (a folder this user may not enter: the daemon could not either)
        problems.append(f"{exc.filename}: cannot tell whether the ledger is there: {exc.strerror}")
    return running, problems


async def channel_problems(config: Config, said: Sequence[str] = ()) -> list[str]:
    """The notification channels' problems as the daemon would meet them opening them, but
    those about a key one of `said` already names (a missing secret file, say)."""
    from facturasd.notify import open_channels

    try:
        async with open_channels(config):
            return []
    except ConfigError as exc:
        keys = {line.partition(":")[0] for line in said}
        return [line for line in exc.problems if line.partition(":")[0] not in keys]


def token_problems(config: Config) -> list[str]:
    """What the daemon would refuse in http.token_file's lines; a file that is not there, or
    that this user may not look at, is the secrets check's to say. Blocking."""
    from facturasd.web import tokens

    path = config.http.token_file
    if path is None or not os.path.isfile(path):  # (False as well when it may not look)
        return []
    try:
        tokens.read(path)
    except ConfigError as exc:
        return exc.problems
    return []


async def examine(
    config: Config, *, online: bool = False, unit: Path = UNIT, clock: Clock = utcnow
) -> list[Check]:
    """Every check of `config`'s installation, in the order a person fixes them."""
    checks = await anyio.to_thread.run_sync(_local, config, unit, clock, online)
    said = [check.message for check in checks if check.subject == "secrets"]
    checks += [Check("error", "notify", line) for line in await channel_problems(config, said)]
    checks += [Check("error", "http", line) for line in token_problems(config)]
    checks += await _upstreams(config, online=online, clock=clock)
    return checks


def _local(config: Config, unit: Path, clock: Clock, online: bool) -> list[Check]:
    user = getpass.getuser()
    systemd, handed = _systemd(unit)
    folders = folder_problems(config)
    checks = [Check("error", "folders", line) for line in folders] or [
        Check("ok", "folders", f"every folder of [paths] exists or can be created by {user}")
    ]
    checks += [Check("warning", "filesystem", line) for line in filesystem_warnings(config)] or [
        Check("ok", "filesystem", "the inbox, archive, rejected and duplicates on one filesystem")
    ]
    secrets = secret_files(config, handed)
    checks += [Check("error", "secrets", line) for line in secrets.errors]
    checks += [Check("warning", "secrets", line) for line in secrets.warnings]
    running, problems = start_up(config)
    checks += [Check("error", "start", line) for line in problems]
    if running is not None:
        checks.append(Check("ok", "daemon", f"running (pid {running})"))
    checks.append(_database(config.paths.state_dir / DATABASE_FILE))
    checks.append(_disk(config))
    checks += _certificates(config, clock, "error" if online else "warning", handed)
    return checks + systemd


def _database(path: Path) -> Check:
    """SQLite's quick_check, read-only: it finds a damaged page without writing anything."""
    try:
        there = path.exists()
    except PermissionError:
        return Check(
            "warning",
            "database",
            f"{path} not checked: {getpass.getuser()} may not look into {path.parent} "
            "(permission denied)",
        )
    if not there:
        return Check("ok", "database", f"{path} not created yet (the daemon's first start does)")
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            found = [row[0] for row in conn.execute("PRAGMA quick_check")]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return Check("error", "database", f"{path} cannot be read: {exc}")
    if found != ["ok"]:
        return Check(
            "error",
            "database",
            f"{path} is damaged ({'; '.join(found[:3])}): restore the newest backup "
            "(docs/operations.md) or run rebuild-ledger",
        )
    return Check("ok", "database", f"{path}: quick_check ok")


def _disk(config: Config) -> Check:
    folder = config.paths.state_dir
    # os.path.exists: a folder this user may not look into counts as absent, so the space
    # is taken where it can be (its parent's filesystem, most often the same).
    while not os.path.exists(folder) and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    free_mb = free >> 20
    wanted = config.alerts.disk_free_min_mb
    said = f"{free_mb} MB free where the ledger is ({folder})"
    if free < DISK_ERROR_BYTES:
        return Check("error", "disk", f"{said}: writes are about to fail, free some space")
    if free_mb < wanted:
        return Check("warning", "disk", f"{said}, below alerts.disk_free_min_mb ({wanted})")
    return Check("ok", "disk", said)


def _certificates(
    config: Config, clock: Clock, missing: Level, handed: Collection[str]
) -> list[Check]:
    """Each DIAN certificate loads and is not expiring; none configured is `missing`'s level
    (DIAN is an upstream); one this user cannot look at is not judged (the secrets line
    says why)."""
    from facturasd.authorities.service import load_certificates

    dian = config.authorities.dian
    signing = load_certificates(config)
    if not signing:
        return [
            Check(
                missing,
                "dian-certificate",
                "none configured (authorities.dian.certificate_file): DIAN is not asked; "
                "invoices whose container carries DIAN's answer are still validated",
            )
        ]
    days = config.alerts.certificate_days
    now = clock()
    checks = []
    for company, found in signing.items():
        where = f"authorities.dian{f'.companies.{company}' if company else ''}"
        if found.credentials is None:
            settings = dian if company is None else dian.companies[company]
            files = (settings.certificate_file, settings.certificate_password_file)
            if any(unverifiable(file, handed) for file in files if file is not None):
                checks.append(
                    Check("warning", "dian-certificate", f"{where}: not checked (see secrets)")
                )
            else:
                checks.append(Check("error", "dian-certificate", found.problem or where))
            continue
        ends = found.credentials.not_after
        left = (ends - now).days
        if ends <= now:
            checks.append(
                Check("error", "dian-certificate", f"{where}: expired on {ends:%Y-%m-%d}: renew it")
            )
        elif left < days:
            checks.append(
                Check(
                    "warning",
                    "dian-certificate",
                    f"{where}: expires on {ends:%Y-%m-%d}, in {left} days: renew it",
                )
            )
        else:
            checks.append(Check("ok", "dian-certificate", f"{where}: valid to {ends:%Y-%m-%d}"))
    return checks


def _systemd(unit: Path) -> tuple[list[Check], list[str]]:
    """The LoadCredential= sources of the unit and its drop-ins (where install.md puts them)
    exist: a missing one keeps the unit from starting (status 243/CREDENTIALS). With the
    names of the credentials it hands over."""
    try:
        text = unit.read_text(encoding="utf-8")
        # systemd reads the drop-ins after the unit, in their names' order.
        for drop_in in sorted(unit.with_name(f"{unit.name}.d").glob("*.conf")):
            text += "\n" + drop_in.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [Check("ok", "systemd", f"not installed as a service ({unit} does not exist)")], []
    except OSError as exc:
        return [Check("error", "systemd", f"{exc.filename} cannot be read: {exc.strerror}")], []
    credentials: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key == "LoadCredential" and not value:
            credentials.clear()  # an empty assignment resets the list, as in systemd
        elif key == "LoadCredential":
            name, _, source = value.partition(":")
            credentials[name] = source
    checks = []
    for name, source in credentials.items():
        try:
            there = not source or Path(source).exists()
        except PermissionError:
            # systemd reads the sources as root: the service's user is not meant to.
            checks.append(
                Check(
                    "warning",
                    "systemd",
                    f"{unit}: LoadCredential {name}: {source} not checked: "
                    f"{getpass.getuser()} may not look at it (permission denied): run doctor "
                    "as root",
                )
            )
            continue
        if not there:
            checks.append(
                Check(
                    "error",
                    "systemd",
                    f"{unit}: LoadCredential {name}: {source} does not exist: create it or "
                    "comment the line out",
                )
            )
    ok = Check("ok", "systemd", f"{unit}: its credentials are in place")
    return checks or [ok], list(credentials)


async def _upstreams(config: Config, *, online: bool, clock: Clock) -> list[Check]:
    """SAT, DIAN and Alegra reachable, the clock against their answers' Date, and Alegra's
    word on its credentials."""
    missing: Level = "error" if online else "warning"
    urls = {"sat": config.authorities.sat.url, "dian": config.authorities.dian.url}
    if config.alegra.enabled:
        urls["alegra"] = config.alegra.base_url
    checks = []
    answered: set[str] = set()
    skews: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=REACH_TIMEOUT) as http:
        for name, url in urls.items():
            try:
                response = await http.get(url)
            except httpx.HTTPError as exc:
                checks.append(
                    Check(missing, name, f"{url} cannot be reached: {exc or type(exc).__name__}")
                )
                continue
            answered.add(name)
            checks.append(Check("ok", name, f"{url} answers (HTTP {response.status_code})"))
            if (skew := _skew(response, clock)) is not None:
                skews[name] = skew
    if not config.alegra.enabled:
        checks.append(
            Check(
                missing,
                "alegra",
                "not configured (alegra.email, alegra.token_file): nothing is booked",
            )
        )
    elif "alegra" in answered:  # it answered: its word on the credentials
        from facturasd.alegra.service import refusals

        refused = await refusals(config)
        checks += [Check("error", "alegra", line) for line in refused] or [
            Check("ok", "alegra", "Alegra accepts the configured credentials")
        ]
    checks.append(_clock(skews, missing))
    return checks


def _skew(response: httpx.Response, clock: Clock) -> float | None:
    """Seconds the local clock is ahead of the upstream's (behind: negative), from its Date."""
    try:
        theirs = parsedate_to_datetime(response.headers.get("Date", ""))
    except (TypeError, ValueError):
        return None
    if theirs.tzinfo is None:
        theirs = theirs.replace(tzinfo=UTC)
    return (clock() - theirs).total_seconds()


def _clock(skews: dict[str, float], missing: Level) -> Check:
    if not skews:
        return Check(missing, "clock", "no upstream answered with a Date: not compared")
    name, skew = max(skews.items(), key=lambda item: abs(item[1]))
    said = f"{abs(skew):.0f}s {'ahead of' if skew > 0 else 'behind'} {name}"
    if abs(skew) >= SKEW_ERROR:
        return Check("error", "clock", f"{said}: DIAN refuses signed requests; fix NTP")
    if abs(skew) >= SKEW_WARNING:
        return Check("warning", "clock", f"{said}: check NTP (timedatectl)")
    return Check("ok", "clock", f"within {SKEW_WARNING:.0f}s of {', '.join(sorted(skews))}")


def summary(checks: Sequence[Check]) -> dict[str, Any]:
    """`doctor --json`: the checks and how many errors and warnings."""
    return {
        "checks": [check.shown() for check in checks],
        "errors": sum(check.level == "error" for check in checks),
        "warnings": sum(check.level == "warning" for check in checks),
    }
