"""What parse-and-check makes of a document: its state, and where its file goes.

Pure: what a worker process read of the document, and the invoice already standing with its
UUID, in; the state, the reason and the folder out. Table-tested without a daemon
(tests/test_decide.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from facturasd.checks import duplicate
from facturasd.checks.identity import company_for
from facturasd.config import Company
from facturasd.constants import InvoiceState
from facturasd.findings import Finding
from facturasd.formats.model import Inspection
from facturasd.inbox.archive import Folder
from facturasd.store import ledger

# The states whose file leaves the archive, and the folder it goes to.
FOLDER_OF = {
    InvoiceState.UNREADABLE: Folder.REJECTED,
    InvoiceState.REJECTED: Folder.REJECTED,
    InvoiceState.DUPLICATE: Folder.DUPLICATES,
}


@dataclass(frozen=True)
class Checked:
    """What a worker process made of one document of a file, as the daemon needs it: the
    ledger's columns (the whole inspection among them, as JSON), the findings and the company
    its receiver is. Not the document's objects: reading those back would cost the event loop
    more than the parsing saved it."""

    columns: dict[str, Any]
    findings: list[Finding]
    readable: bool  # the formats layer found a document
    company: str | None

    @classmethod
    def of(cls, inspection: Inspection, companies: Sequence[Company]) -> Checked:
        doc = inspection.document
        company = company_for(doc.country, doc.receiver, companies) if doc else None
        return cls(
            ledger.inspected_columns(inspection),
            inspection.findings,
            doc is not None,
            company.slug if company else None,
        )

    @property
    def uuid(self) -> str | None:
        uuid: str | None = self.columns.get("uuid")
        return uuid

    @property
    def format(self) -> str:
        return str(self.columns["format"])

    @property
    def verdict(self) -> str:
        return str(self.columns["verdict"])

    @property
    def member(self) -> str | None:
        member: str | None = self.columns.get("member")
        return member

    def as_duplicate(self, earlier: str, companies: Sequence[Company]) -> Checked:
        """With the finding that it repeats `earlier` (the rare case: read back whole)."""
        inspection = Inspection.model_validate_json(self.columns["inspection"])
        return Checked.of(duplicate(inspection, earlier), companies)


@dataclass(frozen=True)
class Outcome:
    """What parse-and-check made of one document of a file."""

    checked: Checked
    state: InvoiceState
    reason: str
    company: str | None
    related_to: int | None = None


def decide(
    checked: Checked,
    first: ledger.Invoice | None,
    *,
    company: str | None,
    companies_configured: bool,
) -> Outcome:
    """The state of one document. `first`: the invoice standing with its UUID, if any;
    `company`: the one its inbox folder names, if any."""
    codes = {f.code for f in checked.findings}
    company = company or checked.company
    if not checked.readable:
        return Outcome(checked, InvoiceState.UNREADABLE, _first_problem(checked), None)
    if "DOC-DUPLICATE" in codes and first is not None:
        reason = f"the same UUID as invoice #{first.id}"
        return Outcome(checked, InvoiceState.DUPLICATE, reason, company, first.id)
    if checked.verdict == "rejected":
        return Outcome(checked, InvoiceState.REJECTED, _first_problem(checked), company)
    if checked.format == "pdf":
        if first is not None:
            reason = f"the printed copy of invoice #{first.id}"
            return Outcome(checked, InvoiceState.LINKED, reason, company, first.id)
        return Outcome(checked, InvoiceState.NEEDS_REVIEW, "a PDF without its XML", company)
    if "DOC-OWN-SALE" in codes:
        return Outcome(checked, InvoiceState.NEEDS_REVIEW, "a sale of the company's own", company)
    if companies_configured and company is None:
        reason = "no company: not in a company's inbox folder, receiver not a company"
        return Outcome(checked, InvoiceState.NEEDS_REVIEW, reason, None)
    return Outcome(checked, InvoiceState.CHECKED, _verdict_reason(checked), company)


def placement(outcomes: Sequence[Outcome]) -> tuple[Folder, list[int], InvoiceState | None]:
    """Where a file of these documents goes, which of them its `.motivo.txt` names, and the
    state its title speaks for (None: no `.motivo.txt`). The file stays in the archive if
    any of its documents is taken (a ZIP of several), else goes to the folder of their state;
    the title is the worst of theirs."""
    shown = [n for n, outcome in enumerate(outcomes) if outcome.state in FOLDER_OF]
    states = {outcomes[n].state for n in shown}
    if len(shown) < len(outcomes):
        folder = Folder.ARCHIVE
    elif states == {InvoiceState.DUPLICATE}:
        folder = Folder.DUPLICATES
    else:
        folder = Folder.REJECTED
    worst = next(
        (s for s in (InvoiceState.REJECTED, InvoiceState.UNREADABLE) if s in states),
        InvoiceState.DUPLICATE,
    )
    return folder, shown, worst if shown else None


def _first_problem(checked: Checked) -> str:
    problems: list[Finding] = [f for f in checked.findings if f.severity == "error"]
    first = (problems or checked.findings)[0]
    return f"{first.code} at {first.path}"


def _verdict_reason(checked: Checked) -> str:
    warnings = [f.code for f in checked.findings if f.severity == "warning"]
    return f"checked with warnings: {', '.join(warnings)}" if warnings else "checked: no findings"
