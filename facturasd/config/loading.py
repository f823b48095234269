"""Reading the configuration: where the file is, the TOML, the environment on top, validation.

Precedence, lowest first: the defaults in the sections, the TOML file, the seed's environment
names (`REDIS_URL`, `DIAN_MAX_RETRIES`, …), then `FACTURASD_<SECTION>__<KEY>` variables.
Every problem is reported as one line naming the key path, the value and why (see wording);
nothing here prints a traceback or a secret.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from facturasd.config import wording
from facturasd.config.sections import Config
from facturasd.constants import CONFIG_ENV, CONFIG_SEARCH_PATH, ENV_PREFIX
from facturasd.errors import ConfigError

# A value the environment gives a key: (variable name, key path, value).
_Override = tuple[str, tuple[str, ...], object]


def find_config_file(explicit: str | None, environ: Mapping[str, str]) -> Path:
    """--config, then $FACTURASD_CONFIG, then ./facturasd.toml, then /etc/facturasd/."""
    if explicit:
        return Path(explicit)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    for candidate in CONFIG_SEARCH_PATH:
        if Path(candidate).is_file():
            return Path(candidate)
    raise ConfigError(
        [
            f"no configuration file: give --config or set {CONFIG_ENV}; "
            f"looked for {' and '.join(CONFIG_SEARCH_PATH)}"
        ]
    )


def load_config(path: Path, environ: Mapping[str, str]) -> Config:
    """The validated configuration, or ConfigError with one line per problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the configuration file: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: the configuration file is not UTF-8 text"]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([wording.toml_problem(path, exc)]) from None
    overrides, problems = _overrides(environ)
    sources = _apply(raw, overrides, problems)
    context = {
        "base_dir": path.resolve().parent,
        "credentials_dir": environ.get("CREDENTIALS_DIRECTORY"),
    }
    try:
        config = Config.model_validate(raw, context=context)
    except ValidationError as exc:
        raise ConfigError(problems + _validation_problems(exc, sources)) from None
    if problems:
        raise ConfigError(problems)
    return config


def _env_value(text: str) -> object:
    """An environment value read as a TOML value when it is one, else as a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _overrides(environ: Mapping[str, str]) -> tuple[list[_Override], list[str]]:
    """What the environment sets, lowest precedence first, and the variables that are wrong."""
    overrides, problems = _seed_overrides(environ)
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and "__" in name:
            keys = tuple(k.lower() for k in name[len(ENV_PREFIX) :].split("__"))
            overrides.append((name, keys, _env_value(environ[name])))
    return overrides, problems


def _seed_overrides(environ: Mapping[str, str]) -> tuple[list[_Override], list[str]]:
    """The seed system's variable names, translated to configuration keys."""
    found: list[_Override] = []
    problems: list[str] = []
    if url := environ.get("REDIS_URL"):
        found.append(("REDIS_URL", ("cache", "url"), url))
        found.append(("REDIS_URL", ("cache", "backend"), "redis"))
    if "DIAN_MAX_RETRIES" in environ:
        found.append(
            ("DIAN_MAX_RETRIES", ("retry", "max_retries"), _env_value(environ["DIAN_MAX_RETRIES"]))
        )
    if "DIAN_RETRY_DELAY" in environ:
        base = _number(environ["DIAN_RETRY_DELAY"])
        if base is None:
            problems.append(
                f'DIAN_RETRY_DELAY: "{environ["DIAN_RETRY_DELAY"]}" is not a number of seconds'
            )
        else:
            found.append(("DIAN_RETRY_DELAY", ("retry", "schedule"), [base, base * 5, base * 15]))
    if "COMPLIANCE_CLEANUP_DAYS" in environ:
        days = _number(environ["COMPLIANCE_CLEANUP_DAYS"])
        if days is None:
            problems.append(
                f'COMPLIANCE_CLEANUP_DAYS: "{environ["COMPLIANCE_CLEANUP_DAYS"]}" '
                "is not a number of days"
            )
        else:
            found.append(
                ("COMPLIANCE_CLEANUP_DAYS", ("schedule", "compliance_cleanup_after"), days * 86400)
            )
    for kind in ("contacts", "items", "accounts"):
        name = f"CACHE_TTL_{kind.upper()}"
        if name in environ:
            found.append((name, ("cache", "ttl", kind), _env_value(environ[name])))
    return found, problems


def _apply(
    raw: dict[str, Any], overrides: list[_Override], problems: list[str]
) -> dict[tuple[str, ...], str]:
    """Writes the overrides into `raw` (a key under a value that is no section goes to
    `problems`); returns which variable set which key."""
    sources: dict[tuple[str, ...], str] = {}
    for name, keys, value in overrides:
        node: Any = raw
        for depth, key in enumerate(keys[:-1]):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                problems.append(f"{name}: {'.'.join(keys[: depth + 1])} is not a section")
                break
        else:
            node[keys[-1]] = value
            sources[keys] = name
    return sources


def _origin(keys: tuple[str, ...], sources: Mapping[tuple[str, ...], str]) -> str | None:
    """The variable that set `keys`, or the section holding it; None when the file did."""
    return next((sources[keys[:n]] for n in range(len(keys), 0, -1) if keys[:n] in sources), None)


def _validation_problems(exc: ValidationError, sources: Mapping[tuple[str, ...], str]) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        loc, kind = error["loc"], error["type"]
        if loc and loc[-1] == "[key]":
            # A [queues.<name>] section whose name is no queue: pydantic flags the key.
            loc, kind = loc[:-1], wording.UNKNOWN_QUEUE
        origin = _origin(tuple(str(part) for part in loc), sources)
        problems.append(wording.problem(error, loc, kind, origin))
    return problems
