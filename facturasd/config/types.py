"""The value types of the configuration: durations, rate limits, paths, secret files, URLs
(masked when shown), time zones and cron expressions.

Each parses what a person writes in the TOML file and serializes back to the same spelling,
so what `check-config` prints reads back as the same value.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, ValidationInfo
from pydantic_core import PydanticCustomError

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: object) -> float:
    """Seconds from "500ms", "2s", "5m", "1h", "30d" or a bare number of seconds."""
    if isinstance(value, bool):
        raise PydanticCustomError("duration", 'is not a duration like "5m"')
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise PydanticCustomError("duration", 'is not a duration like "5m"')
        if value < 0:
            raise PydanticCustomError("duration", "is negative; durations are zero or more")
        return float(value)
    if isinstance(value, str) and (match := _DURATION_RE.match(value)):
        number, unit = match.groups()
        return float(number) * _DURATION_UNITS[unit or "s"]
    raise PydanticCustomError("duration", 'is not a duration like "5m"')


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of a duration: 300.0 -> "5m", 0.5 -> "500ms"."""
    for unit in ("d", "h", "m", "s"):
        size = _DURATION_UNITS[unit]
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    millis = seconds * 1000
    return f"{int(millis)}ms" if float(millis).is_integer() else f"{seconds}s"


Duration = Annotated[
    float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]

_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class RateLimit:
    """At most `count` events every `period` seconds (the seed's "10/m")."""

    count: int
    period: float

    def __str__(self) -> str:
        unit = next(u for u, size in _PERIODS.items() if size == self.period)
        return f"{self.count}/{unit}"

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """ "10/m" → RateLimit(10, 60.0); ValueError for anything else."""
        if match := re.fullmatch(r"\s*(\d+)\s*/\s*([smhd])\s*", text):
            count = int(match.group(1))
            if count > 0:
                return cls(count, _PERIODS[match.group(2)])
        raise ValueError(f'"{text}" is not a rate like "10/m" (per s, m, h or d)')


def _parse_rate_limit(value: object) -> RateLimit | None:
    if value is None or value == "":
        return None
    if isinstance(value, RateLimit):
        return value
    try:
        return RateLimit.parse(value) if isinstance(value, str) else RateLimit.parse("")
    except ValueError:
        raise PydanticCustomError(
            "rate_limit", 'is not a rate like "10/m" (per s, m, h or d)'
        ) from None


OptionalRateLimit = Annotated[
    RateLimit | None,
    BeforeValidator(_parse_rate_limit),
    PlainSerializer(lambda r: "" if r is None else str(r), return_type=str),
]


def _parse_required_rate_limit(value: object) -> RateLimit:
    found = _parse_rate_limit(value)
    if found is None:
        raise PydanticCustomError("rate_limit", 'is not a rate like "150/m" (per s, m, h or d)')
    return found


RequiredRateLimit = Annotated[
    RateLimit, BeforeValidator(_parse_required_rate_limit), PlainSerializer(str, return_type=str)
]


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Relative paths are taken from the configuration file's folder."""
    base = (info.context or {}).get("base_dir")
    try:
        value = value.expanduser()
    except RuntimeError:
        raise PydanticCustomError(
            "path", "names a home folder of a user that does not exist"
        ) from None
    return value if value.is_absolute() or base is None else Path(base, value)


def _resolve_secret_file(value: Path | None, info: ValidationInfo) -> Path | None:
    """A bare file name is looked up in systemd's $CREDENTIALS_DIRECTORY first."""
    if value is None:
        return None
    credentials = (info.context or {}).get("credentials_dir")
    if credentials and len(value.parts) == 1:
        try:
            if Path(credentials, value).exists():
                return Path(credentials, value)
        except PermissionError:
            # A user that may not look there (root's 0700 folder): it is where the name
            # is meant to be found; whoever reads the file says it cannot.
            return Path(credentials, value)
    return _resolve_path(value, info)


ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]
SecretFile = Annotated[Path | None, AfterValidator(_resolve_secret_file)]

_SECRET_QUERY_KEYS = re.compile(r"token|key|secret|password|passwd|signature|sig|auth", re.I)


def mask_url(url: str, *, secret_path: bool = False) -> str:
    """The URL with its credentials and secret-looking query values replaced by ***.

    With `secret_path`, the path goes too: webhook services put their token there.
    """
    if not url:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "***"  # unparseable: show nothing rather than risk a secret
    if ":" in host:
        host = f"[{host}]"
    netloc = f"***@{host}{port}" if parts.username or parts.password else f"{host}{port}"
    path = "/***" if secret_path and parts.path not in ("", "/") else parts.path
    query = urlencode(
        [(k, "***" if _SECRET_QUERY_KEYS.search(k) else v) for k, v in parse_qsl(parts.query)],
        safe="*",
    )
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


Url = Annotated[str, PlainSerializer(mask_url, return_type=str)]
WebhookUrl = Annotated[
    str, PlainSerializer(lambda url: mask_url(url, secret_path=True), return_type=str)
]


def _check_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise PydanticCustomError(
            "timezone", 'is not an IANA time zone like "America/Bogota"'
        ) from None
    return name


TimeZoneName = Annotated[str, AfterValidator(_check_zone)]


def _check_cron(expression: str) -> str:
    if len(expression.split()) != 5:
        raise PydanticCustomError(
            "cron", 'is not a cron expression of five fields like "0 8 * * *"'
        )
    return expression


Cron = Annotated[str, AfterValidator(_check_cron)]
