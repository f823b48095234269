"""The pure decision of parse-and-check, table by table: a document's state and reason, and
where its file goes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from facturasd.constants import InvoiceState as S
from facturasd.findings import Finding
from facturasd.inbox.archive import Folder
from facturasd.pipeline.decide import Checked, Outcome, decide, placement
from facturasd.store.ledger import Invoice

UUID = "a" * 96


def checked(
    fmt: str = "dian-invoice",
    verdict: str = "ok",
    codes: tuple[tuple[str, str], ...] = (),
    *,
    readable: bool = True,
    company: str | None = None,
) -> Checked:
    findings = [Finding(code=c, severity=s, path="file") for c, s in codes]  # type: ignore[arg-type]
    columns = {"format": fmt, "verdict": verdict, "uuid": UUID, "member": None}
    return Checked(columns, findings, readable, company)


STANDING = Invoice(
    *(7, "0" * 64, "first.xml", "first.xml", None, "/archive/first.xml", True, "acme"),
    *(S.CHECKED, "PENDING", "dian-invoice", UUID, "CO", "invoice", "FV1", None, None, None),
    *(None, "COP", "100.00", "ok", 1.0, None, None, 0.0, 0.0),
)


@pytest.mark.parametrize(
    ("document", "first", "folder_company", "companies", "state", "reason", "company"),
    [
        (
            checked(readable=False, verdict="rejected", codes=(("FMT-NOT-XML", "error"),)),
            None,
            None,
            False,
            S.UNREADABLE,
            "FMT-NOT-XML at file",
            None,
        ),
        (
            checked(verdict="rejected", codes=(("DOC-DUPLICATE", "error"),)),
            STANDING,
            None,
            False,
            S.DUPLICATE,
            "the same UUID as invoice #7",
            None,
        ),
        (
            checked(verdict="rejected", codes=(("CO-TOTAL-MISMATCH", "error"), ("X", "warning"))),
            None,
            None,
            False,
            S.REJECTED,
            "CO-TOTAL-MISMATCH at file",
            None,
        ),
        (
            checked("pdf", "warnings"),
            STANDING,
            None,
            False,
            S.LINKED,
            "the printed copy of invoice #7",
            None,
        ),
        (
            checked("pdf", "warnings"),
            None,
            None,
            False,
            S.NEEDS_REVIEW,
            "a PDF without its XML",
            None,
        ),
        (
            checked(codes=(("DOC-OWN-SALE", "info"),)),
            None,
            "acme",
            True,
            S.NEEDS_REVIEW,
            "a sale of the company's own",
            "acme",
        ),
        (
            checked(),
            None,
            None,
            True,
            S.NEEDS_REVIEW,
            "no company: not in a company's inbox folder, receiver not a company",
            None,
        ),
        (checked(company="acme"), None, None, True, S.CHECKED, "checked: no findings", "acme"),
        (checked(), None, "beta", True, S.CHECKED, "checked: no findings", "beta"),
        (
            checked(verdict="warnings", codes=(("MX-RFC-CHECK-DIGIT", "warning"),)),
            None,
            None,
            False,
            S.CHECKED,
            "checked with warnings: MX-RFC-CHECK-DIGIT",
            None,
        ),
    ],
)
def test_the_state_of_a_document(
    document: Checked,
    first: Invoice | None,
    folder_company: str | None,
    companies: bool,
    state: S,
    reason: str,
    company: str | None,
) -> None:
    outcome = decide(document, first, company=folder_company, companies_configured=companies)
    assert (outcome.state, outcome.reason, outcome.company) == (state, reason, company)
    assert outcome.related_to == (first.id if first and state in (S.DUPLICATE, S.LINKED) else None)


def _outcomes(*states: S) -> list[Outcome]:
    base = Outcome(checked(), S.CHECKED, "", None)
    return [replace(base, state=state) for state in states]


@pytest.mark.parametrize(
    ("states", "folder", "shown", "title"),
    [
        ((S.CHECKED,), Folder.ARCHIVE, [], None),
        ((S.NEEDS_REVIEW,), Folder.ARCHIVE, [], None),
        ((S.REJECTED,), Folder.REJECTED, [0], S.REJECTED),
        ((S.UNREADABLE,), Folder.REJECTED, [0], S.UNREADABLE),
        ((S.DUPLICATE,), Folder.DUPLICATES, [0], S.DUPLICATE),
        ((S.DUPLICATE, S.DUPLICATE), Folder.DUPLICATES, [0, 1], S.DUPLICATE),
        # a ZIP of several: one taken keeps the file in the archive, the rest are named
        ((S.CHECKED, S.REJECTED), Folder.ARCHIVE, [1], S.REJECTED),
        # none taken: the worst one speaks for the file
        ((S.DUPLICATE, S.UNREADABLE), Folder.REJECTED, [0, 1], S.UNREADABLE),
        ((S.UNREADABLE, S.REJECTED, S.DUPLICATE), Folder.REJECTED, [0, 1, 2], S.REJECTED),
    ],
)
def test_where_the_file_goes(
    states: tuple[S, ...], folder: Folder, shown: list[int], title: S | None
) -> None:
    assert placement(_outcomes(*states)) == (folder, shown, title)
