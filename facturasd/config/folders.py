"""What check-config and doctor find out about the folders and files a configuration names:
each folder exists or can be created and is writable, so is the database file if there is
one, the moves out of the inbox stay on one filesystem, and each secret file is there. It
looks; it creates nothing.
"""

from __future__ import annotations

import getpass
import os
import stat
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from facturasd.config.sections import Config, Paths, flatten
from facturasd.constants import DATABASE_FILE


@dataclass(frozen=True)
class FolderReport:
    errors: list[str]
    warnings: list[str]


def check_folders(config: Config) -> FolderReport:
    """Each folder exists or can be created, and is writable; moves stay on one filesystem;
    each secret file is there."""
    secrets = secret_files(config)
    return FolderReport(
        folder_problems(config) + secrets.errors, filesystem_warnings(config) + secrets.warnings
    )


def folder_problems(config: Config) -> list[str]:
    """Each folder of `[paths]` exists or can be created and is writable by this user, and so
    is the database file, where there is one."""
    errors: list[str] = []
    for name in Paths.model_fields:
        path: Path = getattr(config.paths, name)
        try:
            anchor = _existing_ancestor(path)
            if anchor == path and not path.is_dir():
                errors.append(f"paths.{name}: {str(path)!r} exists and is not a folder")
            elif not os.access(anchor, os.W_OK | os.X_OK):
                verb = "is not writable" if anchor == path else f"cannot be created in {anchor}"
                errors.append(f"paths.{name}: {str(path)!r} {verb}")
        except OSError as exc:
            errors.append(f"paths.{name}: {str(path)!r} cannot be checked: {exc.strerror}")
    return errors + _database_problems(config.paths.state_dir / DATABASE_FILE)


def filesystem_warnings(config: Config) -> list[str]:
    """The folders files are moved to out of the inbox that are on another filesystem."""
    devices: dict[str, int] = {}
    for name in ("inbox", "archive", "rejected", "duplicates"):
        try:
            devices[name] = _existing_ancestor(getattr(config.paths, name)).stat().st_dev
        except OSError:
            continue  # (folder_problems says so)
    return [
        f"paths.{name} is on another filesystem than paths.inbox: files are copied "
        "and fsync'd instead of renamed, which is slower (one data root avoids it)"
        for name in ("archive", "rejected", "duplicates")
        if name in devices and "inbox" in devices and devices[name] != devices["inbox"]
    ]


def secret_files(config: Config, handed: Collection[str] = ()) -> FolderReport:
    """Each `*_file` key's file is there: an error when what reads it is configured, else a
    warning; a warning when others than its owner may read it, or when this user cannot look
    (see `unverifiable`; `handed`: the names the systemd unit hands over as credentials)."""
    errors: list[str] = []
    warnings: list[str] = []
    for key, value in flatten(config.model_dump()).items():
        if key.endswith("_file") and value is not None:
            path = Path(value)
            if why := unverifiable(path, handed):
                warnings.append(f"{key}: {str(path)!r} not checked: {why}")
                continue
            try:
                mode = path.stat().st_mode
            except OSError:
                mode = None
            if mode is None or not stat.S_ISREG(mode):
                # Alegra's tokens are needed at start once Alegra is configured, a channel's
                # secret once it is enabled, the API's tokens whenever set; other secret files
                # only by the stage that reads them.
                needed = (
                    (key.startswith("alegra.") and config.alegra.enabled)
                    or (key.startswith("notify.") and _channel_enabled(config, key))
                    or key == "http.token_file"
                )
                (errors if needed else warnings).append(
                    f"{key}: {str(value)!r} does not exist or cannot be read"
                )
            elif mode & (stat.S_IRGRP | stat.S_IROTH) and not _handed_over(path):
                warnings.append(
                    f"{key}: {str(path)!r} can be read by its group or by others: chmod 0600 {path}"
                )
    return FolderReport(errors, warnings)


def unverifiable(path: Path, handed: Collection[str] = ()) -> str | None:
    """Why this user cannot tell whether the secret file `path` is right, though the daemon
    may well read it: a folder on its way this user may not enter (root's 0700
    /etc/facturasd/credentials, as the service user), or a file missing here whose name
    systemd hands over (one of `handed`) while $CREDENTIALS_DIRECTORY is not set. None
    when it can be looked at."""
    try:
        path.stat()
    except PermissionError:
        return f"{getpass.getuser()} may not look at it (permission denied): run doctor as root"
    except FileNotFoundError:
        if path.name in handed and not os.environ.get("CREDENTIALS_DIRECTORY"):
            return (
                f"the unit hands it over as the credential {path.name!r}: run doctor as root "
                "with CREDENTIALS_DIRECTORY=/etc/facturasd/credentials"
            )
    except OSError:
        pass  # (not there as a file: the caller says so)
    return None


def _handed_over(path: Path) -> bool:
    """Whether `path` is in $CREDENTIALS_DIRECTORY: systemd's copies are the service's alone,
    whatever their mode says (it grants the service's user with an ACL, whose mask shows as
    the group's bits)."""
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    return credentials is not None and path.is_relative_to(credentials)


def _channel_enabled(config: Config, key: str) -> bool:
    """Whether the `[notify.<channel>]` a key belongs to is enabled."""
    channel = getattr(config.notify, key.split(".")[1])
    return bool(channel.enabled)


def _database_problems(database: Path) -> list[str]:
    """The database and its WAL files, where they exist, readable and writable: SQLite opens
    a file it cannot write read-only and fails only at the first write."""
    problems = []
    for path in (database, *(database.with_name(database.name + s) for s in ("-wal", "-shm"))):
        try:
            if path.exists() and not os.access(path, os.R_OK | os.W_OK):
                problems.append(
                    f"paths.state_dir: {str(path)!r} is not readable and writable by this user: "
                    "give it to the user the daemon runs as (chown), mode 0600"
                )
        except OSError as exc:
            problems.append(f"paths.state_dir: {str(path)!r} cannot be checked: {exc.strerror}")
    return problems


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
