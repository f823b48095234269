"""The exception tree of facturasd.

    FacturasdError
    ├── ConfigError            the configuration file or environment is wrong (exit 2)
    ├── StoreError             the SQLite store cannot be used as asked
    │   ├── SchemaTooNew       the database was written by a newer facturasd
    │   ├── LeaseLost          a job's lease expired and another worker took it
    │   └── StoreUnavailable   SQLite itself failed the operation (no fault of the operation)
    │       ├── StoreBusy      another connection held the database past the busy timeout
    │       ├── StoreDamaged   the file is not a database, or it is corrupt
    │       └── StoreDiskError the disk failed a read or a write
    │           └── StoreFull  the disk is full (or the database at its size limit)
    ├── AlreadyRunning         another daemon holds the state directory's lock
    ├── CannotListen           http.bind cannot be listened on (a port in use)
    ├── LedgerMissing          no ledger, but the archive holds files (exit 2)
    ├── RetryLater             a job handler asks to run again later (not a failure)
    │   └── Unavailable        an upstream gave no answer: the job goes back uncounted
    ├── JobFailed              a job handler says retrying cannot help
    ├── IllegalTransition      a change of an invoice's state the lifecycle does not allow
    ├── RulesError             a tax rules file in checks/rules/ does not fit its shape
    ├── ReviewRefused          a review action (assign, accept…) that does not apply
    └── FormatError            a received file cannot be read as a document (has a `code`)
        ├── NotXml             FMT-NOT-XML
        ├── UnsafeXml          FMT-UNSAFE-XML
        ├── Truncated          FMT-TRUNCATED
        ├── TooLarge           FMT-TOO-LARGE
        ├── ZipBomb            FMT-ZIP-BOMB
        ├── BadZip             FMT-BAD-ZIP
        ├── BadPdf             FMT-BAD-PDF
        └── UnknownDocument    FMT-UNKNOWN-DOCUMENT

Later capabilities hang their own branches here (FormatError, UpstreamError, …), each error
carrying a stable code a person can look up.
"""

from __future__ import annotations

from typing import ClassVar

from facturasd import wording
from facturasd.findings import Phrase, worded


class FacturasdError(Exception):
    """Base of every error facturasd raises on purpose."""


class ConfigError(FacturasdError):
    """The configuration cannot be used; `problems` has one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class RulesError(FacturasdError):
    """A tax rules file shipped in facturasd/checks/rules/ is damaged (a packaging or editing
    mistake, never the user's data)."""


class ReviewRefused(FacturasdError):
    """A person's action on an invoice that cannot apply (no such invoice, wrong state):
    `reason` names it in `wording.REVIEW`, `values` fill it; `str()` is the English wording."""

    def __init__(self, reason: str, **values: object):
        super().__init__(wording.review(reason, "en", **values))
        self.reason = reason
        self.values = values

    def words(self, lang: wording.Language) -> str:
        return wording.review(self.reason, lang, **self.values)


class StoreError(FacturasdError):
    """The SQLite store refused an operation."""


class SchemaTooNew(StoreError):
    """The database schema is newer than this version of facturasd understands."""


class LeaseLost(StoreError):
    """The job's lease expired and the job was handed to someone else; drop the result."""


class StoreUnavailable(StoreError):
    """SQLite could not carry an operation out, whatever the operation: the store's state or
    the machine's (the database's own code, e.g. `SQLITE_BUSY`, ends the message). An error of
    the operation itself (a constraint it broke, a mistake in its SQL) is not one: it reaches
    the caller as SQLite raised it."""


class StoreBusy(StoreUnavailable):
    """Another connection (a second process on the file) held the database locked for longer
    than the busy timeout; trying again later may succeed."""


class StoreDamaged(StoreUnavailable):
    """The file is not a SQLite database, or it is corrupt: restore a backup."""


class StoreDiskError(StoreUnavailable):
    """The operating system failed a read or a write of the database's files."""


class StoreFull(StoreDiskError):
    """No room to write: the disk (or the database's size limit) is full."""


class AlreadyRunning(FacturasdError):
    """Another facturasd process is using the same state directory."""


class CannotListen(FacturasdError):
    """The daemon cannot listen on `http.bind` (the port taken, the address not this
    machine's); the message names the setting."""


class LedgerMissing(FacturasdError):
    """There is no ledger where the configuration says, but the archive folders hold files: a
    database lost or a wrong `paths.state_dir`. Starting an empty ledger beside them would
    lose their duplicate detection silently, so the daemon refuses (exit 2: restarting cannot
    fix it) until a person restores a backup, rebuilds the ledger or asks for a new one."""


class RetryLater(FacturasdError):
    """Raised by a job handler: try this job again after `delay` seconds (not a failure)."""

    def __init__(self, reason: str, delay: float):
        super().__init__(reason)
        self.delay = delay


class Unavailable(RetryLater):
    """An upstream (SAT, DIAN, Alegra, SMTP) gave no answer: a timeout, a 5xx, a 429, a refused
    connection, an open circuit. The job goes back to its queue without counting an attempt:
    only an answer counts, so an outage of any length never uses up a job's attempts."""

    def __init__(self, upstream: str, reason: str, delay: float):
        super().__init__(f"{upstream} gave no answer: {reason}", delay)
        self.upstream = upstream
        self.reason = reason


class AuthorityRefused(FacturasdError):
    """A tax authority refused the request itself rather than answering for the invoice: a
    SOAP fault (DIAN rejected the certificate, the signature or this server's clock), an
    expired certificate. Asking again cannot help until a person fixes the setup; the message
    says what to fix. `authority` is "sat" or "dian"."""

    def __init__(self, authority: str, reason: str):
        super().__init__(reason)
        self.authority = authority


class JobFailed(FacturasdError):
    """Raised by a job handler: retrying cannot help; the job goes straight to `dead`."""


class IllegalTransition(FacturasdError):
    """A change of an invoice's state that `pipeline.lifecycle.TRANSITIONS` does not allow: a
    bug in the caller, never the user's data."""


class FormatError(FacturasdError):
    """A received file cannot be read; each subclass's `code` is stable and listed in
    docs/findings.md. `detail` says why as a phrase of findings.PHRASES, worded in the
    language it is read in; the exception's text is its English wording, for logs."""

    code: ClassVar[str]

    def __init__(self, detail: Phrase) -> None:
        super().__init__(worded(detail, "en"))
        self.detail = detail


class NotXml(FormatError):
    code = "FMT-NOT-XML"


class UnsafeXml(FormatError):
    code = "FMT-UNSAFE-XML"


class Truncated(FormatError):
    code = "FMT-TRUNCATED"


class TooLarge(FormatError):
    code = "FMT-TOO-LARGE"


class UnknownDocument(FormatError):
    code = "FMT-UNKNOWN-DOCUMENT"


class ZipBomb(FormatError):
    code = "FMT-ZIP-BOMB"


class BadZip(FormatError):
    code = "FMT-BAD-ZIP"


class BadPdf(FormatError):
    code = "FMT-BAD-PDF"
