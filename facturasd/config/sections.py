"""The configuration's sections as pydantic models, and `Config` over them.

Defaults are written here once; the shipped facturasd.toml repeats them (a test keeps the two
equal). The company profile is the checks' own model (facturasd.checks.company); the
configuration only lists companies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from facturasd.checks import Context
from facturasd.checks.company import Company
from facturasd.config.types import (
    ConfigPath,
    Cron,
    Duration,
    OptionalRateLimit,
    RateLimit,
    RequiredRateLimit,
    SecretFile,
    TimeZoneName,
    Url,
    WebhookUrl,
)
from facturasd.constants import QueueName, WorkerGroup
from facturasd.formats.safexml import Limits


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paths(_Section):
    model_config = ConfigDict(validate_default=True)

    state_dir: ConfigPath = Path("var/state")
    inbox: ConfigPath = Path("var/inbox")
    archive: ConfigPath = Path("var/archive")
    rejected: ConfigPath = Path("var/rejected")
    duplicates: ConfigPath = Path("var/duplicates")
    reports: ConfigPath = Path("var/reports")


def _address(value: str) -> str:
    host, port = split_bind(value)
    if not host or not port.isdigit() or int(port) > 65535:
        raise PydanticCustomError("bind", 'is not an address like "127.0.0.1:8080" or "[::1]:8080"')
    return value


# An address to listen on: host and port.
Bind = Annotated[str, AfterValidator(_address)]


class Http(_Section):
    bind: Bind = "127.0.0.1:8080"
    token_file: SecretFile = None

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


class Pool(_Section):
    concurrency: int = Field(ge=1, le=64)


class Workers(_Section):
    """A pool of workers per queue group (constants.GROUP_QUEUES), so a hung upstream never
    stalls local work; parsing runs in `processes` worker processes (0: one per CPU)."""

    lease: Duration = Field(60.0, gt=0)
    processes: int = Field(0, ge=0, le=64)
    local: Pool = Pool(concurrency=8)
    authorities: Pool = Pool(concurrency=4)
    alegra: Pool = Pool(concurrency=2)
    reports: Pool = Pool(concurrency=2)

    def concurrency(self, group: WorkerGroup) -> int:
        pool: Pool = getattr(self, group.value)
        return pool.concurrency


class QueueSettings(_Section):
    rate_limit: OptionalRateLimit = None
    max_attempts: int = Field(5, ge=1)


# Only stages that call an upstream are throttled (SPEC §2): the authorities' public services
# get 60 a minute. Booking is not throttled by its queue: Alegra's client keeps each Alegra
# user's requests under `alegra.rate_limit` (150 a minute), whatever they are for, so a
# booking that needs no look-up (two requests: bill, attachment) is not held to the pace of
# one that does. Local stages run as fast as the disk allows: a 1,000-invoice backlog clears
# in about 14 minutes, bound by Alegra.
_DEFAULT_QUEUES: dict[QueueName, QueueSettings] = {
    QueueName.INVOICE_PROCESSING: QueueSettings(),
    QueueName.TAX_VALIDATION: QueueSettings(),
    QueueName.DIAN_VALIDATION: QueueSettings(rate_limit=RateLimit(60, 60.0)),
    QueueName.COMPLIANCE_RETRY: QueueSettings(rate_limit=RateLimit(30, 60.0)),
    QueueName.ALEGRA_SYNC: QueueSettings(),
    QueueName.REPORT_GENERATION: QueueSettings(),
    QueueName.NOTIFICATIONS: QueueSettings(),
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

    def context(self, companies: Sequence[Company], now: datetime) -> Context:
        """The checks' context this section and the configured companies describe."""
        return Context(
            now=now,
            companies=companies,
            accept_test_documents=self.accept_test_documents,
            max_age=timedelta(seconds=self.max_age),
        )


class Retry(_Section):
    """Asking a tax authority again (SPEC §2.4)."""

    # After a refused request (a SOAP fault): the delay before each retry, and how many.
    schedule: list[Duration] = Field(default_factory=lambda: [60.0, 300.0, 900.0], min_length=1)
    max_retries: int = Field(3, ge=0)
    # After "not found yet" (SAT No Encontrado, DIAN 66/98): new stamps take hours to appear.
    not_found_schedule: list[Duration] = Field(
        default_factory=lambda: [3600.0, 21600.0, 86400.0, 259200.0], min_length=1
    )
    # The sweep of FALLBACK invoices, and how long a circuit stays open before a probe.
    interval: Duration = Field(300.0, gt=0)


class CacheTtl(_Section):
    contacts: Duration = 3600.0
    items: Duration = 1800.0
    accounts: Duration = 7200.0


class Cache(_Section):
    backend: Literal["memory", "redis"] = "memory"
    url: Url = "redis://localhost:6379/0"
    ttl: CacheTtl = CacheTtl()


class AccountRule(_Section):
    """An expense account chosen by supplier (its tax id) or by a keyword of a line's
    description (case and accents ignored). `account`: an Alegra category id or name."""

    account: str = Field(min_length=1)
    supplier: str = ""
    keyword: str = ""

    @model_validator(mode="after")
    def _one_selector(self) -> AccountRule:
        if bool(self.supplier) == bool(self.keyword):
            raise PydanticCustomError(
                "account_rule", "give either supplier or keyword (one of them)", {}
            )
        return self


class AlegraUser(_Section):
    """Who books a company's bills in Alegra, and on which accounts (`[alegra]` when the
    company has no section of its own)."""

    email: str = ""
    token_file: SecretFile = None
    # The expense account of a line no rule picks: a category id or name ("" = the first
    # expense account of Alegra's chart).
    default_account: str = ""
    account_rules: list[AccountRule] = Field(default_factory=list)


class Alegra(AlegraUser):
    base_url: Url = "https://api.alegra.com/api/v1"
    mode: Literal["bills", "import"] = "bills"
    lines: Literal["categories", "items"] = "categories"
    timeout: Duration = 30.0
    # Alegra's limit per user; the client keeps every call under it.
    rate_limit: RequiredRateLimit = RateLimit(150, 60.0)
    # The address at which Alegra's cloud reaches this daemon's /hooks/alegra (a reverse
    # proxy in front of http.bind): "" = no webhooks, the cache relies on its TTLs.
    webhooks_url: WebhookUrl = ""
    # Per company (`[alegra.companies.<slug>]`): its own Alegra user and accounts.
    companies: dict[str, AlegraUser] = Field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        """Alegra is off until both the user's e-mail and a token file are configured."""
        return bool(self.email) and self.token_file is not None

    def user(self, company: str | None) -> AlegraUser:
        """The Alegra user and accounts of `company`'s bills."""
        return self.companies.get(company or "", self)


class Sat(_Section):
    url: Url = "https://consultaqr.facturaelectronica.sat.gob.mx/ConsultaCFDIService.svc"
    timeout: Duration = 30.0


class DianCertificate(_Section):
    """A company's own certificate for DIAN's web service (PKCS#12) and its password file."""

    certificate_file: SecretFile = None
    certificate_password_file: SecretFile = None


class Dian(DianCertificate):
    # Ask DIAN even when the container carries its ApplicationResponse.
    verify_online: bool = False
    url: Url = "https://vpfe.dian.gov.co/WcfDianCustomerServices.svc"
    timeout: Duration = 30.0
    # Per company (`[authorities.dian.companies.<slug>]`); the certificate above otherwise.
    companies: dict[str, DianCertificate] = Field(default_factory=dict)

    def certificate(self, company: str | None) -> DianCertificate:
        """The certificate GetStatus is signed with for `company`'s invoices."""
        return self.companies.get(company or "", self)


class Authorities(_Section):
    book_when: Literal["validated", "checked"] = "validated"
    sat: Sat = Sat()
    dian: Dian = Dian()


class Schedule(_Section):
    """The scheduler's tasks (SPEC §2.6), cron expressions in `daemon.timezone`. The retry loop
    runs every `retry.interval`."""

    contacts_sync: Cron = "0 1 * * *"
    items_sync: Cron = "30 1 * * *"
    file_cleanup: Cron = "0 2 * * *"
    compliance_cleanup: Cron = "0 3 * * *"
    # Failed intermediate attempts of settled invoices older than this are deleted
    # (COMPLIANCE_CLEANUP_DAYS); the deciding attempt stays as long as the archive.
    compliance_cleanup_after: Duration = 30 * 86400.0
    daily_report: Cron = "0 8 * * *"
    monthly_summary: Cron = "0 8 1 * *"
    weekly_statistics: Cron = "0 9 * * 1"
    # CFDIs validated within `sat_recheck_within` asked again: a supplier may cancel later.
    sat_recheck: Cron = "30 2 * * *"
    sat_recheck_within: Duration = 30 * 86400.0
    backup: Cron = "0 4 * * *"
    archive_check: Cron = "0 5 * * 0"


class Backup(_Section):
    """The nightly copy of the ledger in `<state_dir>/backups/`."""

    keep: int = Field(14, ge=1)
    # An alert when the newest copy is older than this.
    max_age: Duration = Field(2 * 86400.0, gt=0)


Severity = Literal["warning", "critical"]


class Alerts(_Section):
    queue_backlog: int = Field(100, ge=1)
    cache_hit_rate_min: float = Field(0.70, ge=0, le=1)
    error_rate_max: float = Field(0.05, ge=0, le=1)
    authority_failure_rate_max: float = Field(0.10, ge=0, le=1)
    # The rates above are taken over this much recent time.
    window: Duration = Field(900.0, gt=0)
    certificate_days: int = Field(30, ge=1)
    disk_free_min_mb: int = Field(1024, ge=1)
    # How often conditions are looked at, and how long before one still true is said again.
    interval: Duration = Field(60.0, gt=0)
    cooldown: Duration = 1800.0


class EmailNotify(_Section):
    enabled: bool = False
    host: str = "localhost"
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    # TLS from the first byte (port 465) instead of STARTTLS.
    tls: bool = False
    username: str = ""
    password_file: SecretFile = None
    sender: str = "facturasd@localhost"
    recipients: list[str] = Field(default_factory=list)
    min_severity: Severity = "warning"


class WebhookNotify(_Section):
    enabled: bool = False
    url: WebhookUrl = ""
    # A Standard Webhooks secret ("whsec_" + base64) the receiver verifies signatures with.
    secret_file: SecretFile = None
    min_severity: Severity = "warning"


def _nanobot_body() -> dict[str, Any]:
    return {"mode": "agent", "name": "{agent}", "input": "{text}", "chat": False}


class NanobotNotify(_Section):
    enabled: bool = False
    url: WebhookUrl = ""
    agent: str = "facturasd"
    token_file: SecretFile = None
    # POSTed to url + path; in the body's strings "{agent}" and "{text}" are replaced.
    path: str = "/api/call"
    body: dict[str, Any] = Field(default_factory=_nanobot_body)
    min_severity: Severity = "warning"


class LogNotify(_Section):
    enabled: bool = True
    min_severity: Severity = "warning"


class Notify(_Section):
    email: EmailNotify = EmailNotify()
    webhook: WebhookNotify = WebhookNotify()
    nanobot: NanobotNotify = NanobotNotify()
    log: LogNotify = LogNotify()


class Reports(_Section):
    language: Literal["es", "en"] = "es"
    # The daily report mailed to notify.email.recipients (Markdown as HTML, the CSV attached).
    email: bool = False
    # The CSV as Excel reads it where the company is: "" = by its country (Colombia ";" and
    # ",", Mexico "," and ".").
    csv_separator: Literal["", ";", ",", "\t"] = ""
    csv_decimal: Literal["", ",", "."] = ""


class Sandbox(_Section):
    """`facturasd run --sandbox`: where the local SAT, DIAN and Alegra servers listen."""

    bind: Bind = "127.0.0.1:8099"


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
    backup: Backup = Backup()
    notify: Notify = Notify()
    reports: Reports = Reports()
    sandbox: Sandbox = Sandbox()
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
                if section_model(field.annotation) is field.annotation
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
    def _report_mail(self) -> Config:
        if self.reports.email and not self.notify.email.enabled:
            raise PydanticCustomError(
                "report_mail",
                "reports.email = true mails the daily report by [notify.email]: enable it "
                "(notify.email.enabled = true, with its host and recipients)",
                {},
            )
        return self

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
        slugs = {c.slug for c in self.companies}
        for where, named in (
            ("authorities.dian.companies", self.authorities.dian.companies),
            ("alegra.companies", self.alegra.companies),
        ):
            if unknown := sorted(set(named) - slugs):
                raise PydanticCustomError(
                    "unknown_company",
                    "{where}: {unknown} is not a company of [[companies]]",
                    {"where": where, "unknown": ", ".join(unknown)},
                )
        return self


def section_model(annotation: object) -> type[BaseModel] | None:
    """The section model inside an annotation: Paths, list[Company], dict[QueueName, …]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if found := section_model(arg):
            return found
    return None


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
