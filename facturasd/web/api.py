"""The REST API under /api/v1/: the ledger read as `facturasd invoices`, `alerts` and `report`
read it, and a person's actions on an invoice done exactly as the CLI does them (pipeline/
review.py's Review, the token's name as the actor, recorded in the audit trail).

Actions need `Authorization: Bearer <token>`, a token of `http.token_file`. Reads are open
when the daemon listens on a loopback address only (whoever can reach it can read the ledger
file too); on any other address they need a token as well. Errors are JSON:
{"error": {"code", "message"}}. docs/api.md describes each route; `openapi.json` is the
machine-readable form (a test keeps it and the router in step).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import anyio
from aiohttp import web

from facturasd import wording
from facturasd.constants import ComplianceStatus, InvoiceState, QueueName
from facturasd.errors import ReviewRefused
from facturasd.findings import LANGUAGES, Language
from facturasd.monitoring.alerts import listed
from facturasd.monitoring.snapshot import HOURS, per_hour, snapshot
from facturasd.pipeline.review import ACTIONS, Review
from facturasd.rows import alert_row, invoice_detail, invoice_row
from facturasd.services import Services
from facturasd.store import compliance, ledger
from facturasd.web.tokens import Tokens

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
# Methods that only read: open on loopback.
READS = ("GET", "HEAD")
LOOPBACK_NAMES = ("localhost",)
# An invoice's ID or a limit: digits, few enough for SQLite's integers.
NUMBER = re.compile(r"[0-9]{1,18}")
# A report's name after "reporte-" or "resumen-": a day, a range of days, a month.
REPORT_NAME = re.compile(r"(?:reporte|resumen)-(\d{4}-\d{2}(?:-\d{2}(?:_\d{4}-\d{2}-\d{2})?)?)")
# A report's files, by the format asked for.
REPORT_TYPES = {"json": "application/json", "md": "text/markdown", "csv": "text/csv"}
# The longest window of GET stats/hourly: a week.
MAX_HOURS = 168
# What the CLI records when no reason is given, said for the API.
DEFAULT_REASONS = {
    "retry": "asked through the API",
    "reprocess": "asked through the API",
    "assign": "assigned through the API",
}


@dataclass(frozen=True)
class Api:
    services: Services
    tokens: Tokens

    @property
    def open_reads(self) -> bool:
        """Reads need no token: the daemon listens on a loopback address."""
        host = self.services.config.http.host
        return host in LOOPBACK_NAMES or _is_loopback(host)


API = web.AppKey("api", Api)
ACTOR = web.RequestKey("actor", str)  # the token's name
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Refused(Exception):
    """An API request refused: its status, a code for programs, a message for people."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error(status: int, code: str, message: str) -> web.Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Under /api/v1: no such route or method first, then the token where one is needed, and
    every error as JSON."""
    if not request.path.startswith(PREFIX + "/") and request.path != PREFIX:
        return await handler(request)
    api = request.app[API]
    try:
        if (unrouted := request.match_info.http_exception) is not None:
            raise unrouted
        if request.method not in READS or not (api.open_reads and _local(request)):
            request[ACTOR] = _actor(request, api.tokens)
        return await handler(request)
    except Refused as exc:
        return error(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:  # no such route, or method
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
        return error(exc.status, code, exc.reason)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error(500, "internal", "the request failed; the daemon's log says why")


def _local(request: web.Request) -> bool:
    """The request came to a loopback name, not through a proxy: a page of another site that
    a browser on this machine loads (DNS rebinding) names its own host, and a proxy says
    whom it forwards."""
    if any(h in request.headers for h in ("Forwarded", "X-Forwarded-For", "X-Real-IP")):
        return False
    host = request.url.host or ""
    return host in LOOPBACK_NAMES or _is_loopback(host)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: it may resolve to anything
        return False


def _actor(request: web.Request, tokens: Tokens) -> str:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise Refused(401, "unauthorized", "Authorization: Bearer <token> is required")
    name = tokens.name_of(presented.strip())
    if name is None:
        raise Refused(401, "invalid_token", "the token is not one of http.token_file")
    return name


def add_routes(app: web.Application, api: Api) -> None:
    app[API] = api
    app.middlewares.append(guard)
    app.router.add_get(f"{PREFIX}/openapi.json", openapi)
    app.router.add_get(f"{PREFIX}/invoices", invoices)
    app.router.add_get(f"{PREFIX}/invoices/{{id}}", invoice)
    for action in ACTIONS:
        app.router.add_post(f"{PREFIX}/invoices/{{id}}/{action}", act)
    app.router.add_get(f"{PREFIX}/status", status)
    app.router.add_get(f"{PREFIX}/stats", stats)
    app.router.add_get(f"{PREFIX}/stats/hourly", hourly)
    app.router.add_get(f"{PREFIX}/alerts", alerts)
    app.router.add_get(f"{PREFIX}/reports", reports)
    app.router.add_get(f"{PREFIX}/reports/{{name}}", report)


# ── reading ───────────────────────────────────────────────────────────────────────────────


def _lang(request: web.Request) -> Language:
    given = request.query.get("lang")
    if given is None:
        lang: Language = request.app[API].services.config.reports.language
        return lang
    if given not in LANGUAGES:
        raise Refused(400, "bad_parameter", f"lang: one of {', '.join(LANGUAGES)}")
    return given


def _many(request: web.Request, name: str) -> list[str]:
    """A parameter given more than once or as a comma list."""
    return [w.strip() for v in request.query.getall(name, []) for w in v.split(",") if w.strip()]


def _day(request: web.Request, name: str) -> date | None:
    given = request.query.get(name)
    if given is None:
        return None
    try:
        return date.fromisoformat(given)
    except ValueError:
        raise Refused(400, "bad_parameter", f"{name}: a day written YYYY-MM-DD") from None


def _limit(request: web.Request) -> int | None:
    given = request.query.get("limit")
    if given is None:
        return None
    if not NUMBER.fullmatch(given) or int(given) == 0:
        raise Refused(400, "bad_parameter", "limit: a whole number above 0")
    return int(given)


def _id(request: web.Request) -> int:
    given = request.match_info["id"]
    if not NUMBER.fullmatch(given):
        raise Refused(404, "not_found", f"no invoice {given!r}")
    return int(given)


async def invoices(request: web.Request) -> web.Response:
    """The invoices, newest first, with the filters of `facturasd invoices list`."""
    services = request.app[API].services
    states, statuses = _many(request, "state"), _many(request, "compliance")
    if wrong := [s for s in states if s not in set(InvoiceState)]:
        known = ", ".join(InvoiceState)
        raise Refused(400, "bad_parameter", f"state: {wrong[0]!r} is not one of {known}")
    if wrong := [s for s in statuses if s.upper() not in set(ComplianceStatus)]:
        known = ", ".join(ComplianceStatus)
        raise Refused(400, "bad_parameter", f"compliance: {wrong[0]!r} is not one of {known}")
    company = request.query.get("company")
    known_companies = [c.slug for c in services.config.companies]
    if company is not None and company not in known_companies:
        raise Refused(
            400,
            "bad_parameter",
            f"company: {company!r} is not a company of [[companies]] "
            f"({', '.join(known_companies) or 'none configured'})",
        )
    since, issued_since = _day(request, "since"), _day(request, "issued-since")
    limit = _limit(request)
    zone = services.zone
    matching = ledger.Filter(
        states=tuple(InvoiceState(s) for s in states),
        compliance=tuple(ComplianceStatus(s.upper()) for s in statuses),
        since=datetime.combine(since, datetime.min.time(), zone).timestamp() if since else None,
        issued_since=issued_since.isoformat() if issued_since else None,
        company=company,
    )
    found = await ledger.search(services.db, matching, limit=limit)
    matched = len(found) if len(found) != limit else await ledger.count(services.db, matching)
    return _json({"invoices": [invoice_row(i, zone) for i in found], "matched": matched})


async def invoice(request: web.Request) -> web.Response:
    """One invoice as `facturasd invoices show --json` gives it."""
    services = request.app[API].services
    lang, invoice_id = _lang(request), _id(request)
    found = await invoice_detail(services.db, invoice_id, services.zone, lang)
    if found is None:
        raise Refused(404, "not_found", wording.review("no_invoice", lang, id=invoice_id))
    return _json(found)


async def status(request: web.Request) -> web.Response:
    """What `facturasd status --json` shows, from the daemon's own health."""
    services = request.app[API].services
    return _json(
        await snapshot(
            services.db,
            services.config,
            zone=services.zone,
            clock=services.clock,
            health=await services.health.report(),
            lang=_lang(request),
        )
    )


async def stats(request: web.Request) -> web.Response:
    """The compliance figures of the checked invoices, and each queue's."""
    services = request.app[API].services
    queues = await services.queue.stats([q.value for q in QueueName])
    return _json(
        {
            "compliance": await compliance.stats(services.db),
            "queues": {
                q.name: {
                    "counts": q.counts,
                    "ready": q.ready,
                    "oldest_ready_age_seconds": round(q.oldest_ready_age, 1),
                }
                for q in queues
            },
        }
    )


async def hourly(request: web.Request) -> web.Response:
    """The invoices received in each of the last hours (?hours=N, 24 unless told), by state."""
    services = request.app[API].services
    given = request.query.get("hours", str(HOURS))
    if not NUMBER.fullmatch(given) or not 1 <= int(given) <= MAX_HOURS:
        raise Refused(400, "bad_parameter", f"hours: a whole number from 1 to {MAX_HOURS}")
    found = await per_hour(services.db, zone=services.zone, clock=services.clock, hours=int(given))
    return _json({"timezone": str(services.zone), "hours": found})


async def alerts(request: web.Request) -> web.Response:
    """The alerts, newest first, as `facturasd alerts --json` (?open=true: `--open`)."""
    services = request.app[API].services
    open_only = request.query.get("open", "false").lower() in ("true", "1", "yes")
    found = await listed(services.db, open_only=open_only, now=services.clock().timestamp())
    lang = _lang(request)
    return _json({"alerts": [alert_row(a, services.zone, lang) for a in found[: _limit(request)]]})


async def reports(request: web.Request) -> web.Response:
    """The reports written in paths.reports, newest first: each name and its files."""
    folder = request.app[API].services.config.paths.reports

    def look() -> dict[str, list[str]]:
        named: dict[str, list[str]] = {}
        if folder.is_dir():
            for path in folder.iterdir():
                if REPORT_NAME.fullmatch(path.stem):
                    named.setdefault(path.stem, []).append(path.suffix.lstrip("."))
        return named

    named = await anyio.to_thread.run_sync(look)
    listed_reports = [
        {"name": stem, "date": stem.partition("-")[2], "formats": sorted(formats)}
        for stem, formats in sorted(named.items(), key=lambda kv: kv[0].partition("-")[2])
    ]
    return _json({"reports": listed_reports[::-1]})


async def report(request: web.Request) -> web.Response:
    """A report by its date ("2026-11-29", a range "2026-11-01_2026-11-29") or its name
    ("resumen-2026-11", the monthly summary): its JSON, or ?format=md|csv its other file."""
    folder = request.app[API].services.config.paths.reports
    name = request.match_info["name"]
    kind = request.query.get("format", "json")
    if kind not in REPORT_TYPES:
        raise Refused(400, "bad_parameter", f"format: one of {', '.join(REPORT_TYPES)}")
    stem = name if REPORT_NAME.fullmatch(name) else f"reporte-{name}"
    if not REPORT_NAME.fullmatch(stem):  # (nothing else reaches the file system)
        raise Refused(404, "not_found", f"no report {name!r}")
    try:
        body = await anyio.Path(folder / f"{stem}.{kind}").read_bytes()
    except FileNotFoundError:
        raise Refused(404, "not_found", f"no report {name!r} as {kind}") from None
    return web.Response(
        body=body,
        content_type=REPORT_TYPES[kind],
        charset="utf-8",
        # The Markdown and CSV files are for people: they open as a download named as written.
        headers={"Content-Disposition": f'inline; filename="{stem}.{kind}"'},
    )


# ── acting ────────────────────────────────────────────────────────────────────────────────


async def act(request: web.Request) -> web.Response:
    """POST /api/v1/invoices/{id}/<action>: done as the CLI does it, by the token's name;
    202 with what was done (the daemon takes the job it queued)."""
    services = request.app[API].services
    action = request.path.rsplit("/", 1)[1]
    invoice_id, lang = _id(request), _lang(request)
    body = await _body(request)
    reason = body.get("reason") or DEFAULT_REASONS.get(action)
    if not isinstance(reason, str) or not reason.strip():
        raise Refused(400, "bad_request", f"{action}: the body must give a reason")
    review = Review(
        services.db,
        services.lifecycle,
        services.config.companies,
        request[ACTOR],
        via="api",
        clock=services.clock,
    )
    company = body.get("company", "")
    if action == "assign" and (not isinstance(company, str) or not company):
        raise Refused(400, "bad_request", "assign: the body must give a company")
    try:
        done = await review.act(action, invoice_id, reason, company=company)
    except ReviewRefused as exc:
        status = {"no_invoice": 404, "no_company": 400}.get(exc.reason, 409)
        raise Refused(status, exc.reason, exc.words(lang)) from None
    return _json(
        {
            "result": done.result,
            **({} if done.state is None else {"state": done.state}),
            **({"company": company} if action == "assign" else {}),
            "message": done.words(lang),
            "action": action,
            "invoice": invoice_id,
            "actor": request[ACTOR],
            "reason": reason,
        },
        status=202,
    )


async def _body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; none at all reads as {}."""
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise Refused(400, "bad_request", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise Refused(400, "bad_request", "the body must be a JSON object")
    return body


def _json(data: object, *, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, ensure_ascii=False),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


# ── the OpenAPI document ──────────────────────────────────────────────────────────────────


async def openapi(request: web.Request) -> web.Response:
    return _json(OPENAPI)


def _param(name: str, where: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema or {"type": "string"},
    }


_ERROR = {"$ref": "#/components/responses/Error"}
_OK_BODY = {"content": {"application/json": {"schema": {"type": "object"}}}}
_OK = {"description": "OK", **_OK_BODY}
_ID = _param("id", "path", "the invoice's ID", type="integer")
_LANG = _param("lang", "query", "language of messages and findings", enum=list(LANGUAGES))
_LIMIT = _param("limit", "query", "at most N, the newest", type="integer", minimum=1)


def _get(summary: str, *parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": list(parameters),
            "responses": {"200": _OK, "400": _ERROR, "401": _ERROR, "404": _ERROR},
        }
    }


def _post(action: str, summary: str) -> dict[str, Any]:
    properties: dict[str, Any] = {"reason": {"type": "string", "description": "why"}}
    if action == "assign":
        properties["company"] = {"type": "string", "description": "a slug of [[companies]]"}
    required = ["reason"] if action not in DEFAULT_REASONS else []
    if action == "assign":
        required.append("company")
    return {
        "post": {
            "summary": summary,
            "security": [{"bearer": []}],
            "parameters": [_ID, _LANG],
            "requestBody": {
                "required": bool(required),
                "content": {
                    "application/json": {
                        "schema": {"type": "object", "properties": properties, "required": required}
                    }
                },
            },
            "responses": {
                "202": {"description": "done: the job is queued for the daemon", **_OK_BODY},
                "400": _ERROR,
                "401": _ERROR,
                "404": _ERROR,
                "409": _ERROR,
            },
        }
    }


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "facturasd", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "responses": {
            "Error": {
                "description": "refused",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "error": {
                                    "type": "object",
                                    "properties": {
                                        "code": {"type": "string"},
                                        "message": {"type": "string"},
                                    },
                                    "required": ["code", "message"],
                                }
                            },
                        }
                    }
                },
            }
        },
    },
    "paths": {
        f"{PREFIX}/openapi.json": _get("this document"),
        f"{PREFIX}/invoices": _get(
            "the invoices, newest first",
            _param("state", "query", "only these states (repeated or a comma list)"),
            _param("compliance", "query", "only these statuses with the tax authority"),
            _param("since", "query", "received on or after this day", format="date"),
            _param("issued-since", "query", "issued on or after this day", format="date"),
            _param("company", "query", "only this company's (its slug)"),
            _LIMIT,
        ),
        f"{PREFIX}/invoices/{{id}}": _get(
            "one invoice: document, findings, attempts, booking, history", _ID, _LANG
        ),
        f"{PREFIX}/invoices/{{id}}/retry": _post(
            "retry", "ask the tax authority again, or book in Alegra again"
        ),
        f"{PREFIX}/invoices/{{id}}/reprocess": _post("reprocess", "parse and check again"),
        f"{PREFIX}/invoices/{{id}}/accept": _post("accept", "accept an invoice in review"),
        f"{PREFIX}/invoices/{{id}}/assign": _post("assign", "give the invoice to a company"),
        f"{PREFIX}/invoices/{{id}}/discard": _post("discard", "set the invoice aside"),
        f"{PREFIX}/status": _get(
            "what `facturasd status --json` shows: health, queues, today, what needs a person",
            _LANG,
        ),
        f"{PREFIX}/stats": _get("compliance figures and the queues'"),
        f"{PREFIX}/stats/hourly": _get(
            "the invoices received in each of the last hours, by state",
            _param(
                "hours", "query", "how many hours", type="integer", minimum=1, maximum=MAX_HOURS
            ),
        ),
        f"{PREFIX}/alerts": _get(
            "the alerts, newest first",
            _param("open", "query", "only those still open", type="boolean"),
            _LIMIT,
            _LANG,
        ),
        f"{PREFIX}/reports": _get("the reports written, newest first"),
        f"{PREFIX}/reports/{{name}}": _get(
            "a report by its date (or range, or resumen-YYYY-MM): its JSON, Markdown or CSV",
            _param("name", "path", "2026-11-29, 2026-11-01_2026-11-29 or resumen-2026-11"),
            _param("format", "query", "the file", enum=list(REPORT_TYPES)),
        ),
    },
}
