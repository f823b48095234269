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


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"


# Jobs that still have work ahead of them; a dedupe key is unique among these.
LIVE_JOB_STATES = (JobState.QUEUED, JobState.RUNNING)

DATABASE_FILE = "facturasd.db"
LOCK_FILE = "facturasd.lock"
BACKUP_DIR = "backups"

CONFIG_ENV = "FACTURASD_CONFIG"
CONFIG_SEARCH_PATH = ("facturasd.toml", "/etc/facturasd/facturasd.toml")
ENV_PREFIX = "FACTURASD_"
