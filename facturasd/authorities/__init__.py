"""The tax authorities' word on an invoice (SPEC §2.4).

    sat          SAT's ConsultaCFDIService: the printed expression, the answer typed
    dian         DIAN: the evidence a container carries, and GetStatus on its web service
    wssecurity   the WS-Security header DIAN requires: signed here, checked by the sandbox
    circuit      one circuit breaker per authority
    confirm      the stage that asks, records each attempt and moves the compliance status
    printed      the stage that asks for the document behind a PDF alone (DIAN's XML, SAT's status)

A client answers with an `Answer` (the authority spoke) or raises `errors.Unavailable` (no
answer: timeout, 5xx, 429, refused connection) or `errors.AuthorityRefused` (it refused the
request itself: a SOAP fault, a certificate, the clock). What an answer means for the invoice
(VALIDATED, FAILED, RETRY) is decided by the stage, from the `Verdict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Authority(StrEnum):
    SAT = "sat"
    DIAN = "dian"

    @property
    def country(self) -> str:
        """The country whose invoices it confirms (the ledger's `country`)."""
        return "MX" if self is Authority.SAT else "CO"


class Verdict(StrEnum):
    """What an answer says of the invoice."""

    VALID = "valid"  # SAT Vigente, DIAN 00, or DIAN's evidence in the container
    INVALID = "invalid"  # SAT Cancelado or an expression SAT calls malformed, DIAN 99
    NOT_FOUND = "not_found"  # not known yet: SAT No Encontrado, DIAN 66 / 98


@dataclass(frozen=True)
class Answer:
    authority: Authority
    verdict: Verdict
    status: str  # the authority's own word: "Vigente", "No Encontrado", "00", "66" …
    detail: str  # its description, and DIAN's reasons, in its words
    source: str  # "online" (asked now) or "embedded" (the container's ApplicationResponse)
    endpoint: str = ""  # the URL asked ("" for embedded evidence)
    # A fact about the supplier that needs a person even on a valid invoice (SAT's EFOS list).
    alarm: str | None = None
    # The answer's fields as received (CodigoEstatus, EsCancelable, StatusCode …), kept with
    # the attempt.
    fields: dict[str, str] = field(default_factory=dict)
