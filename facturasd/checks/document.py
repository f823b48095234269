"""Document sanity: the authority's key (CUFE/CUDE/UUID), test documents, dates, references.
The clock comes in from outside (`now`): this stays pure."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

from facturasd.checks.base import Findings
from facturasd.checks.rules import Rules
from facturasd.formats.model import Document

_CUFE = re.compile(r"^[0-9a-f]{96}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# The easternmost offset either country uses (Bogotá, Cancún): the latest "today" any issuer
# can be in, so a document dated today where it was issued is never "in the future".
EASTERNMOST = timezone(timedelta(hours=-5))


def check(
    doc: Document,
    rules: Rules,
    out: Findings,
    *,
    now: datetime,
    max_age: timedelta,
    accept_test_documents: bool,
) -> None:
    _key(doc, out)
    _test_document(doc, rules, out, accept_test_documents)
    _issue_date(doc, out, now, max_age)
    if doc.kind == "credit_note" and not doc.references:
        out.add("DOC-NOTE-WITHOUT-REFERENCE", "references")


def _key(doc: Document, out: Findings) -> None:
    if doc.country == "CO":
        name = {"invoice": "CUFE", "support_document": "CUDS"}.get(doc.kind or "", "CUDE")
        pattern, shape = _CUFE, "[0-9a-f]{96}"
    else:
        name, pattern, shape = "UUID", _UUID, "8-4-4-4-12 hex"
    if doc.uuid is None:
        out.add("DOC-MISSING-UUID", "uuid", name=name)
    elif not pattern.match(doc.uuid):
        out.add("DOC-BAD-UUID", "uuid", name=name, value=doc.uuid, shape=shape)


def _test_document(doc: Document, rules: Rules, out: Findings, accepted: bool) -> None:
    """DIAN: ProfileExecutionID 2. SAT: a certificate or an RFC of SAT's test kits
    (SAT970701NN3 as the certifier is SAT's own production service, not a marker)."""
    marker: tuple[str, str] | None = None
    if doc.environment == "test":
        marker = ("environment", "ProfileExecutionID 2")
    elif doc.country == "MX":
        test = rules.mx.test
        candidates = [
            ("certificate", "NoCertificado", doc.certificate),
            ("stamp.certificate", "NoCertificadoSAT", doc.stamp.certificate if doc.stamp else None),
        ]
        for path, label, serial in candidates:
            if serial and serial.startswith(test.certificate_prefixes):
                marker = (path, f"{label} {serial}")
                break
        else:
            for role in ("issuer", "receiver"):
                if (value := getattr(doc, role).tax_id) in test.rfcs:
                    marker = (f"{role}.tax_id", f"RFC {value}")
                    break
    if marker is not None:
        path, why = marker
        out.add("DOC-TEST-ACCEPTED" if accepted else "DOC-TEST-DOCUMENT", path, why=why)


def _issue_date(doc: Document, out: Findings, now: datetime, max_age: timedelta) -> None:
    if doc.issued_at is None:
        out.add("DOC-MISSING-DATE", "issued_at")
        return
    try:
        issued = _date(doc.issued_at)
    except ValueError:
        out.add("DOC-BAD-DATE", "issued_at", value=doc.issued_at)
        return
    today = now.astimezone(EASTERNMOST).date()
    if issued > today:
        out.add("DOC-FUTURE-DATE", "issued_at", value=issued.isoformat(), today=today.isoformat())
    elif issued < today - max_age:
        out.add("DOC-OLD-DATE", "issued_at", value=issued.isoformat(), days=max_age.days)


def _date(text: str) -> date:
    """The calendar date the issuer printed (its own local date; no zone conversion)."""
    return datetime.fromisoformat(text).date()
