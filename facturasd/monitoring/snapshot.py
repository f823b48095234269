"""What `facturasd status` and `monitor` show: the daemon's health, its queues, the invoices
received today, what needs a person, the Alegra cache, the last report written and the alerts
open (docs/status.md). `snapshot` gathers it as data (the JSON of `status --json`); `screen`
words it as plain text, `dashboard` lays it out as a full-terminal view.

It reads the ledger only. The health and the cache's figures are the running daemon's own
(its /health report, handed in); without one the health is "unknown".
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

import anyio
from rich.console import Group, RenderableType
from rich.layout import Layout
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from facturasd import wording
from facturasd.clock import Clock
from facturasd.config import Config
from facturasd.constants import ComplianceStatus, InvoiceState, QueueName
from facturasd.monitoring.alert_words import describe
from facturasd.monitoring.alerts import listed
from facturasd.reports import daily
from facturasd.store.db import Database
from facturasd.store.queue import Queue
from facturasd.wording import Language

# The invoices that need a person shown by name; the rest are counted.
FIRST = 10
# The hours the dashboard's chart covers, the current one last.
HOURS = 24
# The health's status when no daemon answered: nothing is known of its workers and upstreams.
UNKNOWN = "unknown"

# The health's status in the dashboard.
STYLES = {"pass": "green", "warn": "yellow", "fail": "bold red", UNKNOWN: "dim"}

WORDS: dict[Language, dict[str, str]] = {
    "es": {
        "title": "facturasd: estado a las {at} ({zone})",
        "health": "Salud",
        "pass": "bien",
        "warn": "atención",
        "fail": "falla",
        "unknown": "desconocida (el daemon no está corriendo o no respondió)",
        "score": "puntaje {score}",
        "sandbox": "modo sandbox",
        "failing": "Lo que no pasa (como lo dice /health, en inglés):",
        "queues": "Colas",
        "queue": "COLA",
        "depth": "EN COLA",
        "ready": "LISTOS",
        "oldest": "MÁS ANTIGUO (s)",
        "dead": "MUERTOS",
        "today": "Hoy: {n} facturas recibidas",
        "by_state": "Por estado",
        "by_compliance": "Por estado ante DIAN/SAT",
        "person": "Necesitan una persona: {n}",
        "more": "… y {more} más (el reporte diario las lista todas: facturasd report)",
        "cache": "Caché de Alegra",
        "cache_figures": "aciertos {hit_rate} ({hits} aciertos, {misses} fallos, {keys} claves)",
        "last_report": "Último reporte",
        "alerts": "Alertas abiertas: {n}",
        "none": "ninguno",
        "not_available": "no disponible",
    },
    "en": {
        "title": "facturasd: status at {at} ({zone})",
        "health": "Health",
        "pass": "pass",
        "warn": "warn",
        "fail": "fail",
        "unknown": "unknown (the daemon is not running or did not answer)",
        "score": "score {score}",
        "sandbox": "sandbox mode",
        "failing": "What does not pass:",
        "queues": "Queues",
        "queue": "QUEUE",
        "depth": "QUEUED",
        "ready": "READY",
        "oldest": "OLDEST (s)",
        "dead": "DEAD",
        "today": "Today: {n} invoices received",
        "by_state": "By state",
        "by_compliance": "By status with DIAN/SAT",
        "person": "Need a person: {n}",
        "more": "… and {more} more (the daily report lists them all: facturasd report)",
        "cache": "Alegra cache",
        "cache_figures": "hit rate {hit_rate} ({hits} hits, {misses} misses, {keys} keys)",
        "last_report": "Last report",
        "alerts": "Open alerts: {n}",
        "none": "none",
        "not_available": "not available",
    },
}


async def snapshot(
    db: Database,
    config: Config,
    *,
    zone: tzinfo,
    clock: Clock,
    health: dict[str, Any] | None,
    lang: Language | None = None,
) -> dict[str, Any]:
    """The figures of `status --json`; `health`: the running daemon's /health report, if one
    answered. Reasons and alerts are worded in `lang` (by default `reports.language`)."""
    lang = lang or config.reports.language
    now = clock()
    start, end, _ = daily.period(now.astimezone(zone).date(), None, zone, now)

    def rows(conn: sqlite3.Connection) -> tuple[list[sqlite3.Row], int, list[sqlite3.Row]]:
        """Today's invoices; how many need a person whatever their day, and the first few
        (read whole: their reasons parse the stored inspections)."""
        received = conn.execute(
            "SELECT state, compliance FROM invoices WHERE received_at >= ? AND received_at < ?",
            (start.timestamp(), end.timestamp()),
        ).fetchall()
        return received, daily.open_count(conn), daily.still_open(conn, FIRST)

    received, waiting, open_rows = await db.read(rows)
    first = await anyio.to_thread.run_sync(daily.needing, open_rows, zone, lang)
    stats = await Queue(db, config.queues, clock=clock).stats([q.value for q in QueueName])
    alerts = await listed(db, open_only=True, now=now.timestamp())
    return {
        "generated_at": now.astimezone(zone).isoformat(timespec="seconds"),
        "timezone": str(zone),
        "health": _health(health),
        "queues": {
            s.name: {
                "depth": s.depth,
                "ready": s.ready,
                "oldest_age_seconds": round(s.oldest_ready_age, 1),
                "dead": s.counts.get("dead", 0),
            }
            for s in stats
        },
        "today": {
            "total": len(received),
            "by_state": daily.counted([r["state"] for r in received], InvoiceState),
            "by_compliance": daily.counted([r["compliance"] for r in received], ComplianceStatus),
        },
        "needs_person": {
            "count": waiting,
            "first": [
                {k: p[k] for k in ("id", "invoice", "state", "compliance", "reason", "todo")}
                for p in first
            ],
        },
        "cache": cache_metrics(health),
        "last_report": await anyio.to_thread.run_sync(_last_report, config.paths.reports, zone),
        "alerts_open": [
            {
                "id": a.id,
                "code": a.code,
                "severity": a.severity,
                "subject": describe(a, lang).subject,
            }
            for a in alerts
        ],
    }


async def per_hour(
    db: Database, *, zone: tzinfo, clock: Clock, hours: int = HOURS
) -> list[dict[str, Any]]:
    """The invoices received in each of the last `hours` hours of the clock in `zone` (the
    current one last, begun), counted by their state now (the states with none left out):
    the dashboard's chart."""
    now = clock().astimezone(zone)
    first = now.replace(minute=0, second=0, microsecond=0).timestamp() - (hours - 1) * 3600

    def count(conn: sqlite3.Connection) -> list[sqlite3.Row]:
        return conn.execute(
            "SELECT CAST((received_at - ?) / 3600 AS INTEGER) AS slot, state, COUNT(*) AS n"
            " FROM invoices WHERE received_at >= ? GROUP BY slot, state",
            (first, first),
        ).fetchall()

    slots: list[dict[str, int]] = [{} for _ in range(hours)]
    for row in await db.read(count):
        if row["slot"] < hours:  # not one received "in the future" by a clock set back
            slots[row["slot"]][row["state"]] = row["n"]
    return [
        {
            "hour": datetime.fromtimestamp(first + i * 3600, zone).isoformat(timespec="minutes"),
            "total": sum(slot.values()),
            "by_state": slot,
        }
        for i, slot in enumerate(slots)
    ]


def cache_metrics(health: dict[str, Any] | None) -> dict[str, Any] | None:
    """The Alegra cache's figures in a /health report (its `cache:alegra` check), or None."""
    checks = (health or {}).get("checks") or {}
    metrics: dict[str, Any] | None = ((checks.get("cache:alegra") or [{}])[0]).get("metrics")
    return metrics


def _health(report: dict[str, Any] | None) -> dict[str, Any]:
    """The health's status and score, and the checks that do not pass."""
    if report is None:
        return {
            "status": UNKNOWN,
            "score": None,
            "daemon": "offline",
            "sandbox": None,
            "failing": [],
        }
    failing = [
        {
            "check": key,
            "component": item.get("componentId"),
            "status": item["status"],
            "output": item.get("output"),
        }
        for key, items in report.get("checks", {}).items()
        for item in items
        if item.get("status") != "pass"
    ]
    return {
        "status": report.get("status", UNKNOWN),
        "score": report.get("score"),
        "daemon": "running",
        "sandbox": bool(report.get("sandbox")),
        "failing": failing,
    }


def _last_report(folder: Path, zone: tzinfo) -> dict[str, Any] | None:
    """The daily report written last (its Markdown file). Blocking: it lists the folder."""
    written = []
    for path in folder.glob(f"{daily.PREFIX}*.md"):
        try:
            written.append((path.stat().st_mtime, path))
        except FileNotFoundError:  # replaced or removed while listed
            continue
    if not written:
        return None
    at, path = max(written)
    return {
        "path": str(path),
        "written_at": datetime.fromtimestamp(at, zone).isoformat(timespec="seconds"),
    }


# ── as a person reads it ──────────────────────────────────────────────────────────────────


def screen(snap: dict[str, Any], lang: Language) -> str:
    """The snapshot as one screen of plain text."""
    words = WORDS[lang]
    at = snap["generated_at"][:16].replace("T", " ")
    lines = [words["title"].format(at=at, zone=snap["timezone"]), ""]
    lines.append(f"{words['health']}: {_health_line(snap['health'], lang)}")
    lines += [f"  {line}" for line in _failing(snap["health"], lang)]
    lines += ["", f"{words['queues']}:"]
    lines += [f"  {line}" for line in _columns(_queue_rows(snap["queues"], lang))]
    lines += ["", words["today"].format(n=wording.count(snap["today"]["total"], lang))]
    for key in ("by_state", "by_compliance"):
        counts = _counts(snap["today"][key], lang)
        lines.append(f"  {words[key]}: {counts or words['none']}")
    lines += ["", _people_head(snap["needs_person"], lang)]
    for head, reason, todo in _people(snap["needs_person"], lang):
        lines += [f"  {head}", f"      {reason}", f"      {todo}"]
    lines += [f"  {line}" for line in _more(snap["needs_person"], lang)]
    lines += [
        "",
        f"{words['cache']}: {_cache(snap['cache'], lang)}",
        f"{words['last_report']}: {_report(snap['last_report'], lang)}",
        "",
        words["alerts"].format(n=len(snap["alerts_open"])),
    ]
    lines += [f"  {line}" for line in _alerts(snap["alerts_open"], lang)]
    return "\n".join(line.rstrip() for line in lines)


def dashboard(snap: dict[str, Any], lang: Language) -> Layout:
    """The snapshot as a full-terminal view: panels for the health, the queues, today's
    invoices, what needs a person and the alerts open."""
    words = WORDS[lang]
    at = snap["generated_at"][:16].replace("T", " ")
    status = snap["health"]["status"]
    health: list[RenderableType] = [
        Text(_health_line(snap["health"], lang), style=STYLES.get(status, ""))
    ]
    health += [Text(line, style="yellow") for line in _failing(snap["health"], lang)]
    health += [
        Text(f"{words['cache']}: {_cache(snap['cache'], lang)}"),
        Text(f"{words['last_report']}: {_report(snap['last_report'], lang)}"),
    ]
    header, *rows = _queue_rows(snap["queues"], lang)
    queues = Table(box=None, expand=True)
    for n, title in enumerate(header):
        queues.add_column(title, justify="right" if n else "left")
    for row in rows:
        queues.add_row(*row)
    today = Table(box=None, expand=True, show_header=False)
    for key in ("by_state", "by_compliance"):
        today.add_row(Text(words[key], style="bold"), "")
        for value, n in snap["today"][key].items():
            if n:
                today.add_row(f"  {wording.state(value, lang)}", str(n))
    people: list[RenderableType] = []
    for head, reason, todo in _people(snap["needs_person"], lang):
        people += [Text(head, style="bold"), Padding(reason, (0, 0, 0, 4))]
        people.append(Padding(todo, (0, 0, 0, 4)))
    people += [Text(line) for line in _more(snap["needs_person"], lang)]
    alerts = [Text(line) for line in _alerts(snap["alerts_open"], lang)]
    layout = Layout()
    layout.split_column(
        Layout(Text(words["title"].format(at=at, zone=snap["timezone"]), style="bold"), size=1),
        Layout(name="top", size=max(8, len(rows) + 4, len(health) + 2)),
        Layout(name="middle"),
        Layout(Panel(Group(*alerts), title=words["alerts"].format(n=len(alerts))), size=8),
    )
    layout["top"].split_row(
        Layout(Panel(Group(*health), title=words["health"])),
        Layout(Panel(queues, title=words["queues"])),
    )
    total = wording.count(snap["today"]["total"], lang)
    layout["middle"].split_row(
        Layout(Panel(today, title=words["today"].format(n=total)), ratio=1),
        Layout(Panel(Group(*people), title=_people_head(snap["needs_person"], lang)), ratio=2),
    )
    return layout


def _health_line(health: dict[str, Any], lang: Language) -> str:
    words = WORDS[lang]
    if health["status"] == UNKNOWN:
        return words["unknown"]
    line = f"{words.get(health['status'], health['status'])}, "
    line += words["score"].format(score=health["score"])
    return line + (f" ({words['sandbox']})" if health.get("sandbox") else "")


def _failing(health: dict[str, Any], lang: Language) -> list[str]:
    """Under a heading, a line per check that does not pass: its name, status and what it
    says (in English, as /health gives it)."""
    if not health["failing"]:
        return []
    return [
        WORDS[lang]["failing"],
        *(
            f"  {f['check']}{'/' + f['component'] if f['component'] else ''} [{f['status']}]"
            + (f": {f['output']}" if f["output"] else "")
            for f in health["failing"]
        ),
    ]


def _queue_rows(queues: dict[str, dict[str, Any]], lang: Language) -> list[list[str]]:
    words = WORDS[lang]
    header = [words[k] for k in ("queue", "depth", "ready", "oldest", "dead")]
    return [
        header,
        *(
            [name, str(q["depth"]), str(q["ready"]), f"{q['oldest_age_seconds']:g}", str(q["dead"])]
            for name, q in queues.items()
        ),
    ]


def _columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as aligned columns: the first to the left, the numbers to the right."""
    widths = [max(len(row[n]) for row in rows) for n in range(len(rows[0]))]
    return [
        "  ".join(
            text.ljust(width) if n == 0 else text.rjust(width)
            for n, (text, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]


def _counts(counts: dict[str, int], lang: Language) -> str:
    """The values counted, zeros left out: "contabilizada 3 · en revisión 1"."""
    return " · ".join(f"{wording.state(value, lang)} {n}" for value, n in counts.items() if n)


def _people_head(people: dict[str, Any], lang: Language) -> str:
    return WORDS[lang]["person"].format(n=wording.count(people["count"], lang))


def _people(people: dict[str, Any], lang: Language) -> list[tuple[str, str, str]]:
    """Each invoice shown: what it is and its state; why it waits; what to do."""
    shown = []
    for p in people["first"]:
        state = p["state"] if p["state"] not in daily.ASKED else p["compliance"]
        shown.append(
            (f"{p['invoice']} [{wording.state(state, lang)}]", p["reason"], f"→ {p['todo']}")
        )
    return shown


def _more(people: dict[str, Any], lang: Language) -> list[str]:
    """How many more need a person than are shown, if any."""
    more = people["count"] - len(people["first"])
    return [WORDS[lang]["more"].format(more=more)] if more > 0 else []


def _cache(metrics: dict[str, Any] | None, lang: Language) -> str:
    words = WORDS[lang]
    if metrics is None:
        return words["not_available"]
    figures = {k: metrics.get(k, "—") for k in ("hit_rate", "hits", "misses", "keys")}
    return words["cache_figures"].format(**figures)


def _report(last: dict[str, Any] | None, lang: Language) -> str:
    if last is None:
        return WORDS[lang]["none"]
    return f"{last['path']} ({last['written_at'][:16].replace('T', ' ')})"


def _alerts(alerts: list[dict[str, Any]], lang: Language) -> list[str]:
    return [
        f"#{a['id']} [{wording.SEVERITIES[lang].get(a['severity'], a['severity'])}] "
        f"{a['code']}: {a['subject']}"
        for a in alerts
    ]
