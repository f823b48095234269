"""The daily report: the invoices received in a day (or a range of days, or today so far) in
the daemon's time zone, as three files in `paths.reports` (docs/reports.md):
`reporte-YYYY-MM-DD.md` for people, `.json` for machines, `.csv` for a spreadsheet.

It reads the ledger only. What the daemon alone knows (the cache's figures, the health's
recommendations) and the words of an alert are handed in by the caller, each optional: the
report then says it is not available.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from facturasd import wording
from facturasd.clock import Clock, utcnow
from facturasd.config import Config
from facturasd.constants import ComplianceStatus, InvoiceState
from facturasd.findings import CATALOGUE, Finding, message
from facturasd.formats.model import number
from facturasd.monitoring import performance
from facturasd.pipeline.review import STILL_IN_REVIEW
from facturasd.reports.files import Written, csv_text, dialect, text, write_report
from facturasd.reports.text import cell, table
from facturasd.reports.words import WORDS
from facturasd.rows import local
from facturasd.store import compliance, ledger
from facturasd.store.bookings import Outcome as Booking
from facturasd.store.db import Database
from facturasd.wording import Language

if TYPE_CHECKING:
    from facturasd.progress import Step

S = InvoiceState
C = ComplianceStatus


class Said(Protocol):
    """An alert as a person reads it (the alerts' `describe` gives one)."""

    @property
    def subject(self) -> str: ...

    @property
    def text(self) -> str: ...


Describe = Callable[[compliance.Alert, Language], Said]
Recommend = Callable[[Language], Sequence[str]]

# Open whatever their day: the authority's word is missing or against the invoice, or a
# person must decide. (An invoice set aside, or superseded by its correction, is discarded.)
OPEN_STATES = (S.NEEDS_REVIEW, S.REJECTED, S.UNREADABLE)
OPEN_COMPLIANCE = (C.FAILED, C.FALLBACK)
# The states of an invoice that went on to the tax authority (its compliance figures).
ASKED = (S.CHECKED, S.BOOKING, S.BOOKED)
# Findings that say why an invoice waits in review, before any other it has.
REVIEW_CODES = (*STILL_IN_REVIEW, "DOC-RECEIVER-NOT-COMPANY")
# A booking that may have left a bill in Alegra: a person looks there.
UNDECIDED = (Booking.UNDECIDED, Booking.MAYBE)

# How the report's files are named (`stem`).
PREFIX = "reporte-"


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" for _ in values)


# What makes an invoice open (the states and statuses above), as SQL on `invoices i`.
_OPEN = (
    f"(i.state IN ({_marks(OPEN_STATES)}) OR (i.compliance IN ({_marks(OPEN_COMPLIANCE)}) "
    f"AND i.state IN ({_marks(ASKED)})))"
)
_OPEN_VALUES = (*OPEN_STATES, *OPEN_COMPLIANCE, *ASKED)
# Each invoice with what explains its state: the reason recorded when it entered it, the
# last answer of the tax authority, and how its booking ended.
_SELECT = """
    SELECT i.*,
           (SELECT reason FROM invoice_events e WHERE e.invoice_id = i.id AND e.state = i.state
            ORDER BY e.id DESC LIMIT 1) AS why,
           a.authority AS asked, a.source AS asked_how, a.outcome AS answer,
           a.status AS answer_status, a.detail AS answer_detail,
           b.outcome AS booking
    FROM invoices i
    LEFT JOIN authority_attempts a
           ON a.id = (SELECT MAX(id) FROM authority_attempts WHERE invoice_id = i.id)
    LEFT JOIN bookings b ON b.invoice_id = i.id
"""


def period(
    day: date, last: date | None, zone: tzinfo, now: datetime
) -> tuple[datetime, datetime, bool]:
    """(start, end, so far) of the days `day` to `last` (inclusive) in `zone`; `so far`: the
    period has not ended at `now`."""
    start = datetime.combine(day, time(), zone)
    end = datetime.combine((last or day) + timedelta(days=1), time(), zone)
    return start, end, now < end


def stem(day: date, last: date | None) -> str:
    """The files' name: `reporte-2026-11-29`, or for a range `reporte-2026-11-01_2026-11-29`."""
    return f"{PREFIX}{day}" if last is None or last == day else f"{PREFIX}{day}_{last}"


async def write_daily(
    db: Database,
    config: Config,
    *,
    zone: tzinfo,
    day: date,
    last: date | None = None,
    lang: Language | None = None,
    describe: Describe | None = None,
    recommend: Recommend | None = None,
    cache_metrics: dict[str, Any] | None = None,
    clock: Clock = utcnow,
    step: Step | None = None,
) -> Written:
    """The report of the invoices received on `day` (to `last`, inclusive) in `zone`, written
    in `paths.reports`; `lang` by default `reports.language`. `step` is told how far it is:
    each invoice read, then the files as the last unit."""
    lang = lang or config.reports.language
    data = await gather(
        db,
        zone=zone,
        day=day,
        last=last,
        lang=lang,
        describe=describe,
        recommend=recommend,
        cache_metrics=cache_metrics,
        clock=clock,
        step=step,
    )
    # Off the event loop: at 10,000 invoices the files take a second to compose.
    written = await anyio.to_thread.run_sync(_write, data, config, lang, day, last)
    if step is not None:
        done = len(data["needs_person"]) + len(data["invoices"]) + 1
        step(done, done)
    return written


def _write(
    data: dict[str, Any], config: Config, lang: Language, day: date, last: date | None
) -> Written:
    """The report's three files, composed from its data and written. Blocking."""
    form = dialect(config)
    words = WORDS[lang]
    columns = (
        "received", "supplier", "tax_id", "number", "uuid", "issued", "currency", "subtotal",
        "taxes", "withholdings", "total", "state", "compliance", "bill", "reason",
    )  # fmt: skip
    rows = [
        [
            row["received_at"][:16].replace("T", " "),
            text(row["supplier"]),
            text(row["tax_id"]),
            text(row["number"]),
            text(row["uuid"]),
            row["issued"] or "",
            text(row["currency"]),
            form.number(row["subtotal"]),
            form.number(row["taxes"]),
            form.number(row["withholdings"]),
            form.number(row["total"]),
            wording.state(row["state"], lang),
            wording.state(row["compliance"], lang),
            text(row["alegra_bill_id"]),
            text(row["reason"]),
        ]
        for row in data["invoices"]
    ]
    body = csv_text([words[f"csv.{c}"] for c in columns], rows, form)
    # (compact: the indenting encoder is pure Python, and slower by half at 10,000 rows)
    machines = json.dumps(data, ensure_ascii=False) + "\n"
    return write_report(config.paths.reports, stem(day, last), render(data, lang), machines, body)


async def gather(
    db: Database,
    *,
    zone: tzinfo,
    day: date,
    last: date | None,
    lang: Language,
    describe: Describe | None,
    recommend: Recommend | None,
    cache_metrics: dict[str, Any] | None,
    clock: Clock,
    step: Step | None = None,
) -> dict[str, Any]:
    """The report as data: what its JSON file holds. `step`: each invoice read (the open
    ones, then the period's) of them all and one more, the files the caller writes."""
    now = clock()
    start, end, so_far = period(day, last, zone, now)
    since, until = start.timestamp(), end.timestamp()

    def rows(conn: sqlite3.Connection) -> tuple[list[sqlite3.Row], list[sqlite3.Row]]:
        """The period's invoices, and the open ones whatever their day."""
        received = conn.execute(
            f"{_SELECT} WHERE i.received_at >= ? AND i.received_at < ? ORDER BY i.id",
            (since, until),
        ).fetchall()
        return received, still_open(conn)

    received, open_rows = await db.read(rows)
    total = len(open_rows) + len(received) + 1

    def read() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        if step is not None:
            step(0, total)
        people = needing(open_rows, zone, lang)
        reasons = {person["id"]: person["reason"] for person in people}
        invoices = []
        for row in received:
            invoices.append(_invoice(row, zone, reasons.get(row["id"])))
            if step is not None:
                step(len(people) + len(invoices), total)
        return people, invoices

    people, invoices = await anyio.to_thread.run_sync(read)  # (stored documents parsed)
    alerts = [a for a in await compliance.alerts(db) if since <= a.at < until]
    figures = await performance.figures(db, since=since, until=min(until, now.timestamp()))
    return {
        "period": {
            "from": start.isoformat(),
            "to": end.isoformat(),
            "so_far": so_far,
            "timezone": str(zone),
        },
        "generated_at": now.astimezone(zone).isoformat(timespec="seconds"),
        "language": lang,
        "counts": {
            "total": len(invoices),
            "by_state": counted([i["state"] for i in invoices], S),
            "by_compliance": counted([i["compliance"] for i in invoices], C),
        },
        "amounts": _amounts(received),
        "needs_person": people,
        "compliance": _percentages([i["compliance"] for i in invoices if i["state"] in ASKED]),
        "recommendations": list(recommend(lang)) if recommend is not None else [],
        "cache": cache_metrics,
        "performance": figures,
        "alerts": [_alert(a, lang, zone, describe) for a in alerts],
        "invoices": invoices,
    }


def still_open(conn: sqlite3.Connection, limit: int = -1) -> list[sqlite3.Row]:
    """The invoices that need a person whatever their day, oldest first (the first `limit`;
    all by default: -1 is SQLite's "no limit"), with what explains their state (for
    `needing`)."""
    rows: list[sqlite3.Row] = conn.execute(
        f"{_SELECT} WHERE {_OPEN} ORDER BY i.id LIMIT ?", (*_OPEN_VALUES, limit)
    ).fetchall()
    return rows


def open_count(conn: sqlite3.Connection) -> int:
    """How many invoices `still_open` gives."""
    found: int = conn.execute(
        f"SELECT COUNT(*) FROM invoices i WHERE {_OPEN}", _OPEN_VALUES
    ).fetchone()[0]
    return found


def needing(rows: Sequence[sqlite3.Row], zone: tzinfo, lang: Language) -> list[dict[str, Any]]:
    """The rows of `still_open` as the report lists them: each invoice with why it waits and
    what to do, in `lang`. Blocking: it parses the stored inspections."""
    people = []
    for row in rows:
        reason, todo = _why(row, lang)
        people.append(
            {
                "id": row["id"],
                "invoice": ledger.Invoice.from_row(row).describe(),
                "received_at": local(row["received_at"], zone),
                "state": row["state"],
                "compliance": row["compliance"],
                "reason": reason,
                "todo": todo,
            }
        )
    return people


def counted(values: list[str], known: type[S] | type[C]) -> dict[str, int]:
    """How many of each, every known value named (zero too), then any this version does not
    know."""
    found = Counter(values)
    return {**{str(v): found.pop(str(v), 0) for v in known}, **found}


def _percentages(statuses: list[str]) -> dict[str, Any]:
    """The seed's compliance figures (store.compliance.stats), for these invoices."""
    found = Counter(statuses)
    total = len(statuses)
    return {
        "total": total,
        "by_status": {
            status.value: {
                "count": found[status],
                "percent": round(100.0 * found[status] / total, 1) if total else 0.0,
            }
            for status in C
        },
    }


def _document(row: sqlite3.Row) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the inspection, its document) as stored; empty for a file that could not be read.
    Read as the stored JSON, not into today's model: a row an earlier version wrote need not
    fit it."""
    stored: dict[str, Any] = json.loads(row["inspection"]) if row["inspection"] else {}
    return stored, stored.get("document") or {}


def withholdings(stored: dict[str, Any], doc: dict[str, Any]) -> str | None:
    """What the buyer withholds from the invoice: the withholdings due the checks computed
    (Colombia, a withholding agent: what is booked), else those the document prints."""
    due = stored.get("withholdings_due") or []
    if due:
        return str(sum((Decimal(w["amount"]) for w in due), Decimal(0)))
    printed: str | None = (doc.get("totals") or {}).get("withholdings")
    return printed


def _invoice(row: sqlite3.Row, zone: tzinfo, reason: str | None) -> dict[str, Any]:
    stored, doc = _document(row)
    totals = doc.get("totals") or {}
    return {
        "id": row["id"],
        "received_at": local(row["received_at"], zone),
        "file": row["original_name"],
        "company": row["company"],
        "supplier": row["issuer_name"],
        "tax_id": row["issuer_tax_id"],
        "kind": row["kind"],
        "number": row["number"],
        "uuid": row["uuid"],
        "issued": row["issued_at"] and row["issued_at"][:10],
        "currency": row["currency"],
        "subtotal": totals.get("subtotal"),
        "taxes": totals.get("taxes"),
        "withholdings": withholdings(stored, doc),
        "total": row["total"],
        "state": row["state"],
        "compliance": row["compliance"],
        "alegra_bill_id": row["alegra_bill_id"],
        "reason": reason,
    }


def signed(kind: str | None, value: Decimal) -> Decimal:
    """A credit note takes back what its invoice charged."""
    return -value if kind == "credit_note" else value


def _amounts(rows: Sequence[sqlite3.Row]) -> list[dict[str, Any]]:
    """Totals by supplier and currency of the invoices that stand (and that the authority did
    not void), largest first."""
    sums: dict[tuple[str, str, str], tuple[int, Decimal, str | None]] = {}
    for row in rows:
        total = number(row["total"])
        if row["state"] not in ledger.COUNTED or row["compliance"] == C.FAILED or total is None:
            continue
        key = (row["issuer_tax_id"] or "", row["issuer_name"] or "", row["currency"] or "")
        n, value, _ = sums.get(key, (0, Decimal(0), row["country"]))
        sums[key] = (n + 1, value + signed(row["kind"], total), row["country"])
    return [
        {
            "tax_id": tax_id,
            "supplier": name,
            "currency": currency,
            "country": country,
            "invoices": n,
            "total": str(value),
        }
        for (tax_id, name, currency), (n, value, country) in sorted(
            sums.items(), key=lambda item: (item[0][2], -item[1][1], item[0][0])
        )
    ]


def _why(row: sqlite3.Row, lang: Language) -> tuple[str, str]:
    """(reason, what to do) for an open invoice, in `lang`."""
    words = WORDS[lang]
    state, status, invoice_id = row["state"], row["compliance"], row["id"]
    said = words["system_said"].format(reason=row["why"] or "—")
    if state in ASKED:  # open for the authority's word
        if row["answer"] is not None:
            said = _answer(row, lang)
        return said, words[f"todo.{status}"].format(id=invoice_id)
    if state == S.NEEDS_REVIEW and row["booking"] is not None:  # sent to a person by booking
        todo = (
            "todo.undecided"
            if row["booking"] in UNDECIDED
            else "todo.not_booked"
            if row["booking"] == Booking.NOT_BOOKED
            else "todo.booking"
        )
        return said, words[todo].format(id=invoice_id)
    stored, _ = _document(row)
    found = _worst(stored.get("findings") or [], review=state == S.NEEDS_REVIEW)
    if found is None:
        return said, words["todo.review"].format(id=invoice_id)
    return message(found, lang, row["country"]), CATALOGUE[found.code].action[lang]


def _worst(stored: list[dict[str, Any]], *, review: bool) -> Finding | None:
    """The finding that says why: for an invoice in review, the one that put it there; else
    the first error, else the first warning. Codes this version does not know are passed
    over (their action is not in its catalogue)."""
    findings = [f for f in (Finding.model_validate(item) for item in stored) if f.code in CATALOGUE]
    ranked = [
        *(f for f in findings if review and f.code in REVIEW_CODES),
        *(f for f in findings if f.severity == "error"),
        *(f for f in findings if f.severity == "warning"),
    ]
    return ranked[0] if ranked else None


def _answer(row: sqlite3.Row, lang: Language) -> str:
    """The tax authority's last answer about the invoice, as `invoices show` words it."""
    said = WORDS[lang]["authority_said"].format(
        authority=row["asked"].upper(),
        source=wording.SOURCES[lang].get(row["asked_how"], row["asked_how"]),
        outcome=wording.OUTCOMES[lang].get(row["answer"], row["answer"]),
    )
    if row["answer_status"]:
        said += f" {row['answer_status']}"
    if row["answer_detail"]:
        said += f" ({row['answer_detail']})"
    return said


def _alert(
    alert: compliance.Alert, lang: Language, zone: tzinfo, describe: Describe | None
) -> dict[str, Any]:
    if describe is not None:
        said = describe(alert, lang)
        subject, worded = said.subject, said.text
    else:  # no words given: its code and data, as stored
        subject = alert.code
        worded = "; ".join(f"{k}: {v}" for k, v in sorted(alert.params.items()))
    return {
        "id": alert.id,
        "at": local(alert.at, zone),
        "severity": alert.severity,
        "code": alert.code,
        "status": alert.status,
        "invoice_id": alert.invoice_id,
        "subject": subject,
        "text": worded,
    }


def render(data: dict[str, Any], lang: Language) -> str:
    """The report for people, in Markdown."""
    words = WORDS[lang]
    start = datetime.fromisoformat(data["period"]["from"])
    end = datetime.fromisoformat(data["period"]["to"])
    first, last = start.date(), (end - timedelta(days=1)).date()
    when = str(first) if first == last else words["range"].format(first=first, last=last)
    if data["period"]["so_far"]:
        generated = datetime.fromisoformat(data["generated_at"])
        when += " " + words["so_far"].format(time=generated.strftime("%H:%M"))
    counts = data["counts"]
    out = [
        f"# {words['daily']}: {when}",
        words["generated"].format(
            at=data["generated_at"][:16].replace("T", " "), zone=data["period"]["timezone"]
        ),
        f"## {words['summary']}",
        words["received_n"].format(n=wording.count(counts["total"], lang)),
        f"### {words['by_state']}",
        table(
            [words["state"], words["count"]],
            [[wording.state(k, lang), n] for k, n in counts["by_state"].items() if n],
            right=[1],
        ),
        f"### {words['by_compliance']}",
        table(
            [words["status"], words["count"]],
            [[wording.state(k, lang), n] for k, n in counts["by_compliance"].items() if n],
            right=[1],
        ),
        f"## {words['amounts']}",
        words["amounts_note"],
        _amounts_table(data["amounts"], lang) if data["amounts"] else words["none"],
        f"## {words['person']}",
        words["person_note"],
        _people(data["needs_person"], lang) if data["needs_person"] else words["none"],
        f"## {words['compliance']}",
        words["compliance_note"].format(n=wording.count(data["compliance"]["total"], lang)),
        table(
            [words["status"], words["count"], words["percent"]],
            [
                [wording.state(k, lang), v["count"], v["percent"]]
                for k, v in data["compliance"]["by_status"].items()
            ],
            right=[1, 2],
        ),
        f"## {words['recommendations']}",
        "\n".join(f"- {cell(r)}" for r in data["recommendations"]) or words["none"],
        f"## {words['cache']}",
        _cache(data["cache"], lang),
        f"## {words['performance']}",
        _performance(data["performance"], lang),
        f"## {words['alerts']}",
        _alerts(data["alerts"], lang) if data["alerts"] else words["none"],
    ]
    return "\n\n".join(out) + "\n"


def _amounts_table(amounts: list[dict[str, Any]], lang: Language) -> str:
    words = WORDS[lang]
    header = ("supplier", "tax_id", "currency", "invoices", "total")
    return table(
        [words[h] for h in header],
        [
            [
                a["supplier"],
                a["tax_id"],
                a["currency"],
                a["invoices"],
                wording.amount(a["total"], a["country"]),
            ]
            for a in amounts
        ],
        right=[3, 4],
    )


def _people(items: list[dict[str, Any]], lang: Language) -> str:
    words = WORDS[lang]
    return table(
        [words["invoice"], words["received"], words["state"], words["reason"], words["todo"]],
        [
            [
                i["invoice"],
                i["received_at"][:16].replace("T", " "),
                wording.state(i["state"] if i["state"] not in ASKED else i["compliance"], lang),
                i["reason"],
                i["todo"],
            ]
            for i in items
        ],
    )


def _cache(metrics: dict[str, Any] | None, lang: Language) -> str:
    words = WORDS[lang]
    if metrics is None:
        return words["not_available"]
    keys = ("hit_rate", "hits", "misses", "invalidations", "errors", "keys")
    return table(
        [words[k] for k in keys], [[metrics.get(k, "—") for k in keys]], right=range(len(keys))
    )


def _performance(figures: dict[str, Any], lang: Language) -> str:
    words = WORDS[lang]
    latency = table(
        [words["stage"], words["average"], words["invoices"]],
        [
            [words[f"latency.{stage}"], v["average"], v["invoices"]]
            for stage, v in figures["latency_seconds"].items()
        ],
        right=[1, 2],
    )
    parts = [words["throughput"].format(value=figures["throughput_per_minute"]), latency]
    if figures["error_rate"]:
        parts.append(
            table(
                [words["component"], words["attempts"], words["failures"], words["error_rate"]],
                [
                    [name, v["attempts"], v["failures"], f"{100 * v['rate']:.1f} %"]
                    for name, v in figures["error_rate"].items()
                ],
                right=[1, 2, 3],
            )
        )
    return "\n\n".join(parts)


def _alerts(alerts: list[dict[str, Any]], lang: Language) -> str:
    words = WORDS[lang]
    return table(
        [words["at"], words["severity"], words["alert"]],
        [
            [
                a["at"][:16].replace("T", " "),
                wording.SEVERITIES[lang].get(a["severity"], a["severity"]),
                f"{a['subject']}: {a['text']}",
            ]
            for a in alerts
        ],
    )
