"""The local checks (SPEC §2.3): a read document in, the same document with findings out.

Pure: the clock (`now`), the companies and the ledger ("seen before?") come in through the
Context; nothing here reads a file, a database or the configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import localcontext

from facturasd.checks import arithmetic, document, identity, taxes, withholdings
from facturasd.checks.base import Findings
from facturasd.checks.company import Company
from facturasd.checks.rules import Rules, load
from facturasd.findings import finding
from facturasd.formats.model import Document, Inspection

__all__ = ["Context", "Seen", "check", "duplicate"]

# "Seen before?": the description of an earlier document with this UUID, or None.
Seen = Callable[[str], str | None]

PRECISION = 100


@dataclass(frozen=True)
class Context:
    now: datetime
    companies: Sequence[Company] = ()
    accept_test_documents: bool = False
    max_age: timedelta = timedelta(days=365)
    seen: Seen | None = None
    rules: Rules = field(default_factory=load)


def check(inspection: Inspection, context: Context) -> Inspection:
    """`inspection` with the checks' findings added, the withholdings due, and its score and
    verdict graded again. A file that could not be read, or a PDF read from its printed text
    (a partial document waiting for its XML), is returned as it is."""
    doc = inspection.document
    if doc is None or inspection.format == "pdf":
        return inspection
    # Printed numbers are at most 28 digits (formats.model.number): at this precision every
    # sum and product of them is exact.
    with localcontext(prec=PRECISION):
        checked = _check(inspection, doc, context)
    if context.seen is not None and doc.uuid and (earlier := context.seen(doc.uuid)):
        return duplicate(checked, earlier)
    return checked


def duplicate(inspection: Inspection, earlier: str) -> Inspection:
    """`inspection`, whose UUID an earlier document already has (`earlier` names it), with
    the DOC-DUPLICATE finding and graded again. For a caller that asks its ledger after the
    checks ran (the daemon, which runs them in worker processes)."""
    assert inspection.document is not None and inspection.document.uuid is not None
    found = finding("DOC-DUPLICATE", "uuid", uuid=inspection.document.uuid, earlier=earlier)
    return inspection.rejudged(findings=[*inspection.findings, found])


def _check(inspection: Inspection, doc: Document, context: Context) -> Inspection:
    out = Findings()
    rules = context.rules
    company = identity.check(doc, inspection.format, context.companies, rules, out)
    document.check(
        doc,
        rules,
        out,
        now=context.now,
        max_age=context.max_age,
        accept_test_documents=context.accept_test_documents,
    )
    arithmetic.check(doc, out)
    taxes.check(doc, inspection.format, rules, out)
    due = withholdings.due(doc, company, rules.co, out) if company is not None else []
    return inspection.rejudged(
        findings=[*inspection.findings, *out.items], withholdings_due=due, rules=rules.version
    )
