"""Names and defaults shared across facturasd, in one place."""

from __future__ import annotations

from enum import StrEnum


class QueueName(StrEnum):
    """The durable queues; each pipeline arrow is a job on one of them (SPEC §2)."""

    INVOICE_PROCESSING = "invoice_processing"
    TAX_VALIDATION = "tax_validation"
    DIAN_VALIDATION = "dian_validation"
    COMPLIANCE_RETRY = "compliance_retry"
    ALEGRA_SYNC = "alegra_sync"
    REPORT_GENERATION = "report_generation"
    NOTIFICATIONS = "notifications"


class WorkerGroup(StrEnum):
    """The worker pools: each claims from its own queues with its own concurrency, so a hung
    upstream never stalls local work (SPEC §2)."""

    LOCAL = "local"
    AUTHORITIES = "authorities"
    ALEGRA = "alegra"
    REPORTS = "reports"

    @property
    def upstream(self) -> bool:
        """Its work waits on someone else's service (SAT, DIAN, Alegra): it failing is that
        service's trouble, not a local one."""
        return self in (WorkerGroup.AUTHORITIES, WorkerGroup.ALEGRA)


GROUP_QUEUES: dict[WorkerGroup, tuple[QueueName, ...]] = {
    WorkerGroup.LOCAL: (QueueName.INVOICE_PROCESSING, QueueName.TAX_VALIDATION),
    WorkerGroup.AUTHORITIES: (QueueName.DIAN_VALIDATION, QueueName.COMPLIANCE_RETRY),
    WorkerGroup.ALEGRA: (QueueName.ALEGRA_SYNC,),
    WorkerGroup.REPORTS: (QueueName.REPORT_GENERATION, QueueName.NOTIFICATIONS),
}


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"


class InvoiceState(StrEnum):
    """Where an invoice is in the pipeline (SPEC §2.1); later stages add theirs."""

    RECEIVED = "received"  # in the ledger, its file archived, waiting for parse and check
    UNREADABLE = "unreadable"  # not an invoice, damaged or hostile: in rejected/
    REJECTED = "rejected"  # read, with error findings: in rejected/
    DUPLICATE = "duplicate"  # the same bytes or UUID as an earlier invoice: in duplicates/
    NEEDS_REVIEW = "needs_review"  # a person decides: unknown company, PDF alone, own sale
    CHECKED = "checked"  # passed the checks (warnings allowed): handed to the next stage
    BOOKING = "booking"  # a bill is being posted to Alegra (its intent recorded first)
    BOOKED = "booked"  # a supplier bill in Alegra (`alegra_bill_id`)
    LINKED = "linked"  # a PDF alone, now the printed copy of the invoice it names
    DISCARDED = "discarded"  # set aside by a person, with a reason


class ComplianceStatus(StrEnum):
    """The seed's status of an invoice with the tax authority."""

    PENDING = "PENDING"
    VALIDATED = "VALIDATED"
    RETRY = "RETRY"
    FAILED = "FAILED"
    FALLBACK = "FALLBACK"


DATABASE_FILE = "facturasd.db"
LOCK_FILE = "facturasd.lock"
BACKUP_DIR = "backups"

CONFIG_ENV = "FACTURASD_CONFIG"
CONFIG_SEARCH_PATH = ("facturasd.toml", "/etc/facturasd/facturasd.toml")
ENV_PREFIX = "FACTURASD_"
