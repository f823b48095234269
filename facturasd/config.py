"""The configuration: pydantic models, the TOML loader, environment overrides and checks.

Precedence, lowest first: the defaults written here, the TOML file, the seed's environment
names (`REDIS_URL`, `DIAN_MAX_RETRIES`, …), then `FACTURASD_<SECTION>__<KEY>` variables.
Every problem is reported as one line naming the key path, the value and why; nothing here
prints a traceback or a secret.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from facturasd.constants import CONFIG_ENV, CONFIG_SEARCH_PATH, ENV_PREFIX, QueueName
from facturasd.errors import ConfigError
from facturasd.formats.safexml import Limits

# ── value types ───────────────────────────────────────────────────────────────────────────

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


def _parse_rate_limit(value: object) -> RateLimit | None:
    if value is None or value == "":
        return None
    if isinstance(value, RateLimit):
        return value
    if isinstance(value, str) and (match := re.fullmatch(r"\s*(\d+)\s*/\s*([smhd])\s*", value)):
        count = int(match.group(1))
        if count > 0:
            return RateLimit(count, _PERIODS[match.group(2)])
    raise PydanticCustomError("rate_limit", 'is not a rate like "10/m" (per s, m, h or d)')


OptionalRateLimit = Annotated[
    RateLimit | None,
    BeforeValidator(_parse_rate_limit),
    PlainSerializer(lambda r: "" if r is None else str(r), return_type=str),
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
    if credentials and len(value.parts) == 1 and Path(credentials, value).exists():
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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ── sections ──────────────────────────────────────────────────────────────────────────────


class Paths(_Section):
    model_config = ConfigDict(validate_default=True)

    state_dir: ConfigPath = Path("var/state")
    inbox: ConfigPath = Path("var/inbox")
    archive: ConfigPath = Path("var/archive")
    rejected: ConfigPath = Path("var/rejected")
    duplicates: ConfigPath = Path("var/duplicates")
    reports: ConfigPath = Path("var/reports")


class Http(_Section):
    bind: str = "127.0.0.1:8080"
    token_file: SecretFile = None

    @field_validator("bind")
    @classmethod
    def _bind(cls, value: str) -> str:
        host, port = split_bind(value)
        if not host or not port.isdigit() or int(port) > 65535:
            raise PydanticCustomError(
                "bind", 'is not an address like "127.0.0.1:8080" or "[::1]:8080"'
            )
        return value

    @property
    def host(self) -> str:
        return split_bind(self.bind)[0]

    @property
    def port(self) -> int:
        return int(split_bind(self.bind)[1])


def split_bind(value: str) -> tuple[str, str]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), port


class Daemon(_Section):
    shutdown_timeout: Duration = 20.0
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    timezone: TimeZoneName = "America/Bogota"


class Workers(_Section):
    concurrency: int = Field(8, ge=1, le=64)
    lease: Duration = Field(60.0, gt=0)


class QueueSettings(_Section):
    rate_limit: OptionalRateLimit = None
    max_attempts: int = Field(5, ge=1)


# Only stages that call an upstream are throttled (SPEC §2): Alegra allows 150 requests a
# minute per user and a booking costs up to three (contact, bill, attachment), so 45 bills a
# minute stay under it; the authorities' public services get 60 a minute. Local stages run as
# fast as the disk allows: a 1,000-invoice backlog clears in about 25 minutes, bound by Alegra.
_DEFAULT_QUEUES: dict[QueueName, QueueSettings] = {
    QueueName.INVOICE_PROCESSING: QueueSettings(),
    QueueName.TAX_VALIDATION: QueueSettings(),
    QueueName.DIAN_VALIDATION: QueueSettings(rate_limit=RateLimit(60, 60.0)),
    QueueName.COMPLIANCE_RETRY: QueueSettings(rate_limit=RateLimit(30, 60.0)),
    QueueName.ALEGRA_SYNC: QueueSettings(rate_limit=RateLimit(45, 60.0)),
    QueueName.REPORT_GENERATION: QueueSettings(),
}


class Inbox(_Section):
    stable_seconds: Duration = 2.0
    rescan_interval: Duration = Field(60.0, gt=0)
    force_polling: bool = False
    # false: no watcher, the periodic scans alone find files (where change events cannot
    # work at all; tests use it to drop files no event reports).
    watch: bool = True


class Formats(_Section):
    # Defaults live with the parsers that enforce them.
    max_file_bytes: int = Field(Limits.max_file_bytes, ge=1024)
    max_xml_depth: int = Field(Limits.max_xml_depth, ge=8, le=Limits.max_xml_depth)
    max_xml_elements: int = Field(Limits.max_xml_elements, ge=100)
    zip_max_members: int = Field(Limits.zip_max_members, ge=1)
    zip_max_total_bytes: int = Field(Limits.zip_max_total_bytes, ge=1024)
    zip_max_ratio: int = Field(Limits.zip_max_ratio, ge=1)
    zip_max_depth: int = Field(Limits.zip_max_depth, ge=1)

    def limits(self) -> Limits:
        return Limits(**self.model_dump())


class Checks(_Section):
    accept_test_documents: bool = False
    max_age: Duration = 365 * 86400.0


class Retry(_Section):
    schedule: list[Duration] = Field(default_factory=lambda: [60.0, 300.0, 900.0], min_length=1)
    max_retries: int = Field(3, ge=0)
    interval: Duration = Field(300.0, gt=0)


class CacheTtl(_Section):
    contacts: Duration = 3600.0
    items: Duration = 1800.0
    accounts: Duration = 7200.0


class Cache(_Section):
    backend: Literal["memory", "redis"] = "memory"
    url: Url = "redis://localhost:6379/0"
    ttl: CacheTtl = CacheTtl()


class Alegra(_Section):
    base_url: Url = "https://api.alegra.com/api/v1"
    email: str = ""
    token_file: SecretFile = None
    mode: Literal["bills", "import"] = "bills"
    timeout: Duration = 30.0

    @property
    def enabled(self) -> bool:
        """Alegra is off until both the user's e-mail and a token file are configured."""
        return bool(self.email) and self.token_file is not None


class Sat(_Section):
    url: Url = "https://consultaqr.facturaelectronica.sat.gob.mx/ConsultaCFDIService.svc"
    timeout: Duration = 30.0


class Dian(_Section):
    verify_online: bool = False
    url: Url = "https://vpfe.dian.gov.co/WcfDianCustomerServices.svc"
    certificate_file: SecretFile = None
    certificate_password_file: SecretFile = None
    timeout: Duration = 30.0


class Authorities(_Section):
    book_when: Literal["validated", "checked"] = "validated"
    sat: Sat = Sat()
    dian: Dian = Dian()


class Schedule(_Section):
    contacts_sync: Cron = "0 1 * * *"
    items_sync: Cron = "30 1 * * *"
    file_cleanup: Cron = "0 2 * * *"
    compliance_cleanup: Cron = "0 3 * * *"
    compliance_cleanup_after: Duration = 30 * 86400.0
    daily_report: Cron = "0 8 * * *"
    weekly_statistics: Cron = "0 9 * * 1"


class Alerts(_Section):
    queue_backlog: int = Field(100, ge=1)
    cache_hit_rate_min: float = Field(0.70, ge=0, le=1)
    error_rate_max: float = Field(0.05, ge=0, le=1)
    authority_failure_rate_max: float = Field(0.10, ge=0, le=1)
    cooldown: Duration = 1800.0


class EmailNotify(_Section):
    enabled: bool = False
    host: str = "localhost"
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    username: str = ""
    password_file: SecretFile = None
    sender: str = "facturasd@localhost"
    recipients: list[str] = Field(default_factory=list)


class WebhookNotify(_Section):
    enabled: bool = False
    url: WebhookUrl = ""
    secret_file: SecretFile = None


class NanobotNotify(_Section):
    enabled: bool = False
    url: WebhookUrl = ""
    token_file: SecretFile = None


class LogNotify(_Section):
    enabled: bool = True


class Notify(_Section):
    email: EmailNotify = EmailNotify()
    webhook: WebhookNotify = WebhookNotify()
    nanobot: NanobotNotify = NanobotNotify()
    log: LogNotify = LogNotify()


class Reports(_Section):
    language: Literal["es", "en"] = "es"


class ConceptRule(_Section):
    """Which withholding concept an invoice is (CO): chosen by supplier or by a keyword."""

    concept: str
    supplier: str = ""  # the supplier's tax id
    keyword: str = ""  # found in a line's description (case and accents ignored)

    @model_validator(mode="after")
    def _one_selector(self) -> ConceptRule:
        if bool(self.supplier) == bool(self.keyword):
            raise PydanticCustomError(
                "concept_rule", "give either supplier or keyword (one of them)", {}
            )
        return self


class Company(_Section):
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str = Field(min_length=1)
    country: Literal["CO", "MX"]
    tax_id: str = Field(min_length=1)
    regime: str = ""
    # CO: DIAN's responsibility codes: O-13 gran contribuyente, O-15 autorretenedor,
    # O-23 IVA withholding agent, O-47 régimen simple.
    tax_level_codes: list[str] = Field(default_factory=list)
    city: str = ""
    postal_code: str = ""
    # CO: the company withholds ReteFuente/ReteIVA/ReteICA from its suppliers.
    withholding_agent: bool = False
    # CO: the withholding concept of an invoice: the first concept rule that matches (by
    # supplier, then by keyword), else this default.
    concept: str = "compras"
    concept_rules: list[ConceptRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_concepts(self) -> Company:
        from facturasd.checks.rules import load

        known = load().co.concepts
        for name in [self.concept, *(rule.concept for rule in self.concept_rules)]:
            if name not in known:
                raise PydanticCustomError(
                    "concept",
                    "unknown withholding concept '{name}'; the rules know {known}",
                    {"name": name, "known": ", ".join(sorted(known))},
                )
        return self


class Config(_Section):
    paths: Paths = Paths()
    http: Http = Http()
    daemon: Daemon = Daemon()
    workers: Workers = Workers()
    queues: dict[QueueName, QueueSettings] = Field(default_factory=lambda: dict(_DEFAULT_QUEUES))
    inbox: Inbox = Inbox()
    formats: Formats = Formats()
    checks: Checks = Checks()
    retry: Retry = Retry()
    cache: Cache = Cache()
    alegra: Alegra = Alegra()
    authorities: Authorities = Authorities()
    schedule: Schedule = Schedule()
    alerts: Alerts = Alerts()
    notify: Notify = Notify()
    reports: Reports = Reports()
    companies: list[Company] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _every_section(cls, data: object) -> object:
        # Absent sections are validated from {} so their defaults see the context (the
        # config file's folder for relative paths), as written ones do.
        if isinstance(data, Mapping):
            sections: dict[str, object] = {
                name: {}
                for name, field in cls.model_fields.items()
                if _section_model(field.annotation) is field.annotation
            }
            return {**sections, **data}
        return data

    @field_validator("queues", mode="before")
    @classmethod
    def _fill_queues(cls, value: object) -> object:
        # A section for one queue must not drop the defaults of the others.
        if isinstance(value, Mapping):
            return {**_DEFAULT_QUEUES, **value}
        return value

    @model_validator(mode="after")
    def _unique_companies(self) -> Config:
        for key in ("slug", "tax_id"):
            seen = [getattr(c, key) for c in self.companies]
            if dupes := sorted({v for v in seen if seen.count(v) > 1}):
                raise PydanticCustomError(
                    "unique",
                    "companies: {key} {dupes} appears more than once",
                    {"key": key, "dupes": ", ".join(dupes)},
                )
        return self


# ── loading ───────────────────────────────────────────────────────────────────────────────


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
        raise ConfigError([_toml_problem(path, exc)]) from None
    sources, problems = _apply_environment(raw, environ)
    context = {
        "base_dir": path.resolve().parent,
        "credentials_dir": environ.get("CREDENTIALS_DIRECTORY"),
    }
    try:
        config = Config.model_validate(raw, context=context)
    except ValidationError as exc:
        raise ConfigError(problems + _validation_problems(exc, raw, sources)) from None
    if problems:
        raise ConfigError(problems)
    return config


def _toml_problem(path: Path, exc: tomllib.TOMLDecodeError) -> str:
    message = str(exc)
    # Python 3.11's TOMLDecodeError carries the position only in its message.
    if match := re.search(r"\(at line (\d+), column (\d+)\)$", message):
        line, column = match.groups()
        reason = message[: match.start()].strip()
        return (
            f"{path}:{line}:{column}: TOML syntax error at line {line}, column {column}: {reason}"
        )
    return f"{path}: TOML syntax error: {message}"


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


def _seed_overrides(
    environ: Mapping[str, str],
) -> tuple[list[tuple[str, tuple[str, ...], object]], list[str]]:
    """The seed system's variable names, translated to configuration keys."""
    found: list[tuple[str, tuple[str, ...], object]] = []
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


def _apply_environment(
    raw: dict[str, Any], environ: Mapping[str, str]
) -> tuple[dict[tuple[str, ...], str], list[str]]:
    """Writes the overrides into `raw`; returns which variable set which key, and problems."""
    overrides, problems = _seed_overrides(environ)
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and "__" in name:
            keys = tuple(k.lower() for k in name[len(ENV_PREFIX) :].split("__"))
            overrides.append((name, keys, _env_value(environ[name])))
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
    return sources, problems


_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "is required",
    "int_type": "is not a whole number",
    "int_parsing": "is not a whole number",
    "int_from_float": "is not a whole number",
    "float_type": "is not a number",
    "float_parsing": "is not a number",
    "bool_type": "is not true or false",
    "bool_parsing": "is not true or false",
    "string_type": "is not text",
    "list_type": "is not a list",
    "model_type": "is not a section",
    "dict_type": "is not a section",
    "model_attributes_type": "is not a section",
}


_BOUNDS = {
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "too_short": "must have at least {min_length} item(s)",
}


def _validation_problems(
    exc: ValidationError, raw: Mapping[str, Any], sources: Mapping[tuple[str, ...], str]
) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        kind = error["type"]
        if loc and loc[-1] == "[key]":
            # A [queues.<name>] section whose name is no queue: pydantic flags the key.
            loc, kind = loc[:-1], "unknown_queue"
        path = _format_loc(loc)
        keys = tuple(str(part) for part in loc)
        origin = next(
            (sources[keys[:n]] for n in range(len(keys), 0, -1) if keys[:n] in sources), None
        )
        where = f"{path} (from {origin})" if origin else path
        if kind == "extra_forbidden":
            problems.append(f"{where}: unknown key{_suggestion(loc)}")
        elif kind == "unknown_queue":
            known = ", ".join(q.value for q in QueueName)
            problems.append(f"{where}: unknown queue; the queues are {known}")
        elif kind == "missing":
            problems.append(f"{where}: is required")
        elif kind == "unique":
            problems.append(error["msg"])
        else:
            why = _MESSAGES.get(kind) or _lower_first(error["msg"])
            ctx = error.get("ctx", {})
            if kind == "literal_error":
                why = f"is not one of {ctx.get('expected', '')}"
            elif kind in _BOUNDS:
                why = _BOUNDS[kind].format(**ctx)
            value = json.dumps(_masked(error["input"]), default=str, ensure_ascii=False)
            problems.append(f"{where}: {value} {why}")
    return problems


def _masked(value: object) -> object:
    """A value fit for an error line: anything holding a URL loses its credentials."""
    if isinstance(value, str) and "://" in value:
        return mask_url(value, secret_path=True)
    if isinstance(value, Mapping):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def _format_loc(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _suggestion(loc: tuple[int | str, ...]) -> str:
    """A "did you mean" for a misspelt key, from the keys its section accepts."""
    model: type[BaseModel] | None = Config
    for part in loc[:-1]:
        if model is None:
            return ""
        if isinstance(part, str) and part in model.model_fields:
            model = _section_model(model.model_fields[part].annotation)
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _section_model(annotation: object) -> type[BaseModel] | None:
    """The section model inside an annotation: Paths, list[Company], dict[QueueName, …]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if found := _section_model(arg):
            return found
    return None


# ── presentation and folder checks ────────────────────────────────────────────────────────


def effective(config: Config) -> dict[str, Any]:
    """The configuration as JSON-ready data, with every secret masked."""
    data: dict[str, Any] = config.model_dump(mode="json")
    return data


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists of sections keep their index."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{path}."))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for index, item in enumerate(value):
                flat.update(flatten(item, f"{path}[{index}]."))
        else:
            flat[path] = value
    return flat


@dataclass(frozen=True)
class FolderReport:
    errors: list[str]
    warnings: list[str]


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_folders(config: Config) -> FolderReport:
    """Each folder exists or can be created, and is writable; moves stay on one filesystem."""
    errors: list[str] = []
    warnings: list[str] = []
    devices: dict[str, int] = {}
    for name in Paths.model_fields:
        path: Path = getattr(config.paths, name)
        try:
            anchor = _existing_ancestor(path)
            devices[name] = anchor.stat().st_dev
            if anchor == path and not path.is_dir():
                errors.append(f"paths.{name}: {str(path)!r} exists and is not a folder")
            elif not os.access(anchor, os.W_OK | os.X_OK):
                verb = "is not writable" if anchor == path else f"cannot be created in {anchor}"
                errors.append(f"paths.{name}: {str(path)!r} {verb}")
        except OSError as exc:
            errors.append(f"paths.{name}: {str(path)!r} cannot be checked: {exc.strerror}")
    for name in ("archive", "rejected", "duplicates"):
        if name in devices and "inbox" in devices and devices[name] != devices["inbox"]:
            warnings.append(
                f"paths.{name} is on another filesystem than paths.inbox: files are copied "
                "and fsync'd instead of renamed, which is slower (one data root avoids it)"
            )
    for key, value in flatten(config.model_dump()).items():
        if key.endswith("_file") and value is not None:
            try:
                present = Path(value).is_file()
            except OSError:
                present = False
            if not present:
                warnings.append(f"{key}: {str(value)!r} does not exist or cannot be read")
    return FolderReport(errors, warnings)
