"""The sandbox's aiohttp application: each service under its own prefix, the admin endpoints
that set what the services answer, and the faults that make them fail.

    POST   /sat/ConsultaCFDIService.svc        SAT (sat.consulta)
    POST   /dian/WcfDianCustomerServices.svc   DIAN (dian.service)
    *      /alegra/api/v1/...                  Alegra's API v1 (alegra.create_app)
    POST   /_admin/sat/{uuid}     {"estado", "efos", "cancelable", "re", "rr", "tt"}
    POST   /_admin/dian/{cufe}    {"status_code", "is_valid", "errors"}
    POST   /_admin/alegra/account             {"block": 900 | 907 | null}
    POST   /_admin/alegra/{type}/{id}[?shape=data]   the fields to set (webhooks fired)
    DELETE /_admin/alegra/{type}/{id}[?shape=data]   removes it (webhooks fired)
    POST   /_admin/faults         {"service", "status", "rate", "latency_ms", "timeout",
                                   "retry_after", "hold_ms", "endpoint": "POST /bills",
                                   "code", "act"}
    DELETE /_admin/faults
    GET    /_admin/stats
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import anyio
from aiohttp import web

from facturasd.formats.model import Document
from facturasd.formats.reader import read
from facturasd.sandbox import alegra, dian, sat
from facturasd.sandbox.state import SANDBOX, DianRecord, Fault, Sandbox, SatRecord

log = logging.getLogger(__name__)

# Where each service answers; the first part of the path names it.
PATHS = {
    "sat": "/sat/ConsultaCFDIService.svc",
    "dian": "/dian/WcfDianCustomerServices.svc",
    "alegra": alegra.PREFIX,
}
# A request a `timeout` fault holds: longer than any client waits.
HELD = 3600.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(sandbox: Sandbox) -> web.Application:
    app = web.Application(middlewares=[_faults])
    app[SANDBOX] = sandbox
    app.router.add_post(PATHS["sat"], sat.consulta)
    app.router.add_post(PATHS["dian"], dian.service)
    app.add_subapp(PATHS["alegra"], alegra.create_app())
    app.cleanup_ctx.append(alegra.webhooks_client)
    app.router.add_post("/_admin/sat/{uuid}", _set_sat)
    app.router.add_post("/_admin/dian/{cufe}", _set_dian)
    app.router.add_post("/_admin/alegra/account", _set_alegra_account)
    app.router.add_post("/_admin/alegra/{type}/{id}", _edit_alegra)
    app.router.add_delete("/_admin/alegra/{type}/{id}", _remove_alegra)
    app.router.add_post("/_admin/faults", _set_fault)
    app.router.add_delete("/_admin/faults", _clear_faults)
    app.router.add_get("/_admin/stats", _stats)
    return app


@web.middleware
async def _faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The fault set for the service a request is for, if any, before the service sees it."""
    service = request.path.strip("/").split("/", 1)[0]
    sandbox = request.app[SANDBOX]
    fault = sandbox.faults.get(service)
    if fault is None or not fault.applies(request.method, request.path):
        return await handler(request)
    if fault.latency_ms:
        await anyio.sleep(fault.latency_ms / 1000)
    if random.random() >= fault.rate:  # noqa: S311 (a share of requests, not a secret)
        return await handler(request)
    sandbox.count(service, "fault")
    if fault.hold_ms or fault.act:
        response = await handler(request)
        await anyio.sleep(fault.hold_ms / 1000)
        if not fault.act:
            return response
    if fault.timeout:
        await anyio.sleep(HELD)
    headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
    status = fault.status or 503
    if fault.code is not None:
        body = {"code": fault.code, "message": f"Falla simulada {fault.code} (sandbox)"}
        return web.json_response(body, status=status, headers=headers)
    return web.Response(status=status, text=f"{status} (sandbox fault)", headers=headers)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


async def _set_sat(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    uuid = request.match_info["uuid"].upper()
    body = await _body(request)
    record = sandbox.sat.get(uuid)
    if record is None:
        missing = [key for key in ("re", "rr", "tt") if key not in body]
        if missing:
            raise web.HTTPBadRequest(
                text=f"{uuid} is not a known document: give its {', '.join(missing)}"
            )
        record = sandbox.sat[uuid] = SatRecord(uuid, "", "", Decimal(0))
    try:
        for key in ("re", "rr"):
            if key in body:
                setattr(record, key, str(body[key]))
        if "tt" in body:
            record.tt = Decimal(str(body["tt"]))
    except InvalidOperation:
        raise web.HTTPBadRequest(text=f"tt is not a number: {body['tt']!r}") from None
    for key, attribute in (
        ("estado", "estado"),
        ("efos", "efos"),
        ("cancelable", "cancelable"),
        ("cancelacion", "cancelacion"),
    ):
        if key in body:
            setattr(record, attribute, str(body[key]))
    return web.json_response(vars(record) | {"tt": str(record.tt)})


async def _set_dian(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    cufe = request.match_info["cufe"].lower()
    body = await _body(request)
    record = sandbox.dian.setdefault(cufe, DianRecord(cufe))
    if "status_code" in body:
        code = str(body["status_code"])
        if code not in ("00", "66", "98", "99"):
            raise web.HTTPBadRequest(text=f"status_code must be 00, 66, 98 or 99, not {code!r}")
        record.status_code = code
        record.is_valid = code == "00"
    if "is_valid" in body:
        record.is_valid = bool(body["is_valid"])
    if "errors" in body:
        record.errors = [str(e) for e in body["errors"]]
    return web.json_response(vars(record))


async def _set_alegra_account(request: web.Request) -> web.Response:
    account = request.app[SANDBOX].alegra
    try:
        alegra.set_block(account, (await _body(request)).get("block"))
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    return web.json_response({"block": account.block})


async def _edit_alegra(request: web.Request) -> web.Response:
    kind, id_ = request.match_info["type"], request.match_info["id"]
    fields = await _body(request)
    try:
        answer = await alegra.edit(request.app, kind, id_, fields, _shape(request))
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    return web.json_response(answer)


async def _remove_alegra(request: web.Request) -> web.Response:
    kind, id_ = request.match_info["type"], request.match_info["id"]
    try:
        answer = await alegra.remove(request.app, kind, id_, _shape(request))
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    except KeyError:
        raise web.HTTPNotFound(text=f"no {kind} with id {id_}") from None
    return web.json_response(answer)


def _shape(request: web.Request) -> str:
    """The key an admin edit's webhook payload carries the object under: `message` (the
    default) or `data` (`?shape=data`), the two shapes seen of Alegra's."""
    shape = request.query.get("shape", "message")
    if shape not in ("message", "data"):
        raise web.HTTPBadRequest(text=f"shape must be message or data, not {shape!r}")
    return shape


async def _set_fault(request: web.Request) -> web.Response:
    try:
        service, fault = Fault.of(await _body(request))
    except (TypeError, ValueError) as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    request.app[SANDBOX].faults[service] = fault
    return web.json_response({"service": service, **vars(fault)})


async def _clear_faults(request: web.Request) -> web.Response:
    request.app[SANDBOX].faults.clear()
    return web.json_response({})


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[SANDBOX].stats())


def load_documents(sandbox: Sandbox, folder: Path) -> None:
    """Every document under `folder` (XML, ZIP, AttachedDocument; recursively) known and in
    force, and each Colombian invoice importable by its CUFE in Alegra; files that hold none
    are skipped. DIAN gives the XML of a document read from an XML file of its own."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found = read(data, path.name)
        for inspection in found:
            if inspection.document is not None and inspection.document.uuid:
                xml = data if len(found) == 1 and path.suffix.lower() == ".xml" else None
                know(sandbox, inspection.document, inspection.document.uuid, xml=xml)


def know(sandbox: Sandbox, document: Document, uuid: str, *, xml: bytes | None = None) -> None:
    """`document` known and in force: by SAT (a CFDI) or DIAN (with its `xml`, for
    GetXmlByDocumentKey, if given), and by Alegra's import by CUFE (a Colombian invoice)."""
    if document.country != "MX":
        sandbox.dian[uuid.lower()] = DianRecord(uuid.lower(), document.number, xml=xml)
        if document.kind in alegra.IMPORTABLE_KINDS:
            sandbox.alegra.documents[uuid.lower()] = document
        return
    total = document.totals.total
    issuer, receiver = document.issuer.tax_id, document.receiver.tax_id
    if total is None or issuer is None or receiver is None:
        return  # no expression can name it
    try:
        sandbox.sat[uuid.upper()] = SatRecord(uuid.upper(), issuer, receiver, Decimal(total))
    except InvalidOperation:
        return  # a total that is no number: SAT would not have stamped it


def base_urls(host: str, port: int) -> dict[str, str]:
    """The URL of each service, as a client is configured with it."""
    shown = f"[{host}]" if ":" in host else host
    return {name: f"http://{shown}:{port}{path}" for name, path in PATHS.items()}
