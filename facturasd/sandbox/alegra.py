"""Alegra's API v1 as the sandbox serves it (under server.PATHS["alegra"]): Basic auth, the
per-user limiter and its `X-Rate-Limit-*` headers, lists with `start`/`limit`/`metadata`,
contacts, items, the chart of accounts, taxes, retentions, supplier bills (posted, or imported
by the CUFE of a document loaded with `--documents`), their attachments, and webhook
subscriptions, which the admin edits (server.py) fire. The account starts as state.Alegra
seeds it, or from a snapshot (`restore`, `save`).

Every refusal is JSON `{"code": N, "message": "<Spanish>"}`:

    401  401    no or wrong credentials
    429  429    over the limit (the request is not served and does not count)
    402  900    plan limit (`POST /_admin/alegra/account {"block": 900}`): POST /bills and
                POST /bills/import-by-cufe
    403  907    read-only plan (block 907): every POST, PUT and DELETE
    400  903    a bad `start`, `limit`, `order_field` or `order_direction`
    400  904    an attachment that is not multipart/form-data with a `file` field
    400  11004  a bill's provider missing or unknown
    400  11040  a bill without a line in purchases.categories nor purchases.items
    400  11108  a CUFE already on a bill
    404  11110  an unknown bill
    404  404    an unknown id of any other collection, or an unknown path
    the sandbox's own (real Alegra's are not published):
    400  12001  a body that is not a JSON object, or a required field missing
    400  12010  a category unknown, or not an expense account without subaccounts
    400  12011  an item unknown
    400  12012  a tax unknown
    400  12013  a retention unknown
    400  12014  a date missing or not YYYY-MM-DD
    400  12015  a price, quantity, amount or exchange rate that is no number, a negative price
                or amount, a quantity not above zero
    400  12016  a currency the account has not enabled (COP, MXN, USD)
    404  12017  import-by-cufe: a CUFE the sandbox has no document for
    400  12018  import-by-cufe: a tax or withholding of the document the account has no rate for

A bill's amounts are computed with Decimal: a line's tax = round(price × quantity × rate / 100,
2), a retention's amount the one sent, else round(subtotal × rate / 100, 2); "tax" and
"retention" are their sums, "total" = subtotal + tax - retention, and a line's "total" its
price × quantity plus its taxes. Prices and quantities are shown as sent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import os
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import httpx
from aiohttp import BodyPartReader, web

from facturasd.clock import utcnow
from facturasd.formats.model import Document, Party, number
from facturasd.sandbox.state import SANDBOX, Alegra, Window

PREFIX = "/alegra/api/v1"
LIST_LIMIT = 30
CURRENCIES = ("COP", "MXN", "USD")
TIMEZONE = ZoneInfo("America/Bogota")
WEBHOOK_TIMEOUT = 5.0
# The collections the admin endpoints edit, and the name their webhook events give them.
ADMIN_TYPES = ("contacts", "items", "bills", "categories", "taxes", "retentions")
EVENT_NAMES = {"contacts": "client", "items": "item", "bills": "bill"}
# The documents import-by-cufe books: a supplier's invoice, not its notes or our own payroll.
IMPORTABLE_KINDS = ("invoice",)
# DIAN's tax scheme codes -> the type of Alegra's tax or retention with that meaning.
TAX_TYPES = {"01": "IVA", "04": "ICO"}
RETENTION_TYPES = {"05": "IVA", "06": "FUENTE", "07": "ICA"}

# The sandbox's own codes (see the table above).
BAD_BODY = 12001
UNKNOWN_CATEGORY = 12010
UNKNOWN_ITEM = 12011
UNKNOWN_TAX = 12012
UNKNOWN_RETENTION = 12013
BAD_DATE = 12014
BAD_AMOUNT = 12015
CURRENCY_DISABLED = 12016
UNKNOWN_CUFE = 12017
NO_RATE = 12018
CENT = Decimal("0.01")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")

WEBHOOKS = web.AppKey("alegra_webhooks", httpx.AsyncClient)


class AlegraError(Exception):
    """A refusal: the status and the JSON body Alegra answers with."""

    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> web.Response:
        return web.json_response({"code": self.code, "message": self.message}, status=self.status)


def create_app() -> web.Application:
    """The API, to be mounted at PREFIX on the sandbox's application (it reads SANDBOX from
    there)."""
    app = web.Application(middlewares=[_guard])
    add = app.router
    add.add_get("/contacts", _contacts)
    add.add_post("/contacts", _new_contact)
    add.add_get("/contacts/{id}", _one("contacts"))
    add.add_put("/contacts/{id}", _edit_contact)
    add.add_delete("/contacts/{id}", _delete_contact)
    add.add_get("/items", _items)
    add.add_post("/items", _new_item)
    add.add_get("/items/{id}", _one("items"))
    add.add_get("/categories", _categories)
    add.add_get("/categories/{id}", _category)
    add.add_get("/taxes", _listed("taxes"))
    add.add_get("/taxes/{id}", _one("taxes"))
    add.add_get("/retentions", _listed("retentions"))
    add.add_get("/retentions/{id}", _one("retentions"))
    add.add_get("/bills", _bills)
    add.add_post("/bills", _new_bill)
    add.add_post("/bills/import-by-cufe", _import_by_cufe)
    add.add_get("/bills/{id}", _one("bills"))
    add.add_post("/bills/{id}/attachment", _attach)
    add.add_get("/webhooks/subscriptions", _listed("subscriptions"))
    add.add_post("/webhooks/subscriptions", _subscribe)
    add.add_delete("/webhooks/subscriptions/{id}", _unsubscribe)
    return app


async def webhooks_client(app: web.Application) -> AsyncIterator[None]:
    """The client that delivers webhooks, for the application's lifetime (cleanup_ctx)."""
    async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT) as http:
        app[WEBHOOKS] = http
        yield


# --- The guard: auth, limiter, blocks, errors, counts ---------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    sandbox = request.config_dict[SANDBOX]
    account = sandbox.alegra
    if request.match_info.http_exception is not None:
        sandbox.count("alegra", "error")
        status = request.match_info.http_exception.status
        message = "Recurso no encontrado" if status == 404 else "Método no permitido"
        return AlegraError(status, status, message).response()
    endpoint = f"{request.method} {_template(request)}"
    account.by_endpoint[endpoint] += 1
    user = _user(request, account)
    if user is None:
        sandbox.count("alegra", "unauthorized")
        return AlegraError(401, 401, "Usuario o token incorrectos").response()
    headers = _admit(account, user)
    if headers is None:
        account.limited += 1
        sandbox.count("alegra", "limited")
        limited = AlegraError(
            429, 429, "Has superado el límite de peticiones por minuto; intenta más tarde"
        ).response()
        limited.headers.update(_limit_headers(account, user))
        return limited
    response: web.StreamResponse
    try:
        _check_block(account, endpoint)
        response = await handler(request)
    except AlegraError as refused:
        response = refused.response()
    sandbox.count("alegra", "ok" if response.status < 400 else "error")
    response.headers.update(headers)
    return response


def _template(request: web.Request) -> str:
    """The route's path template below PREFIX ("/bills/{id}/attachment")."""
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else request.path
    return canonical.removeprefix(PREFIX)


def _user(request: web.Request, account: Alegra) -> str | None:
    """The user the Basic credentials name, if they are the account's."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, token = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    same_user = secrets.compare_digest(user.encode(), account.user.encode())
    same_token = secrets.compare_digest(token.encode(), account.token.encode())
    return user if same_user and same_token else None


def _admit(account: Alegra, user: str) -> dict[str, str] | None:
    """Counts one request in the user's window and returns the headers it is answered with;
    None when the window is full (the request is not counted)."""
    now = account.clock()
    window = account.windows.get(user)
    if window is None or now >= window.start + account.window:
        window = account.windows[user] = Window(start=now)
    if window.served >= account.rate:
        return None
    window.served += 1
    account.peak_per_window = max(account.peak_per_window, window.served)
    return _limit_headers(account, user)


def _limit_headers(account: Alegra, user: str) -> dict[str, str]:
    window = account.windows[user]
    reset = max(1, math.ceil(window.start + account.window - account.clock()))
    return {
        "X-Rate-Limit-Limit": str(account.rate),
        "X-Rate-Limit-Remaining": str(max(0, account.rate - window.served)),
        "X-Rate-Limit-Reset": str(reset),
    }


def _check_block(account: Alegra, endpoint: str) -> None:
    if account.block == 900 and endpoint in ("POST /bills", "POST /bills/import-by-cufe"):
        raise AlegraError(402, 900, "Has alcanzado el límite de documentos de tu plan")
    if account.block == 907 and endpoint.split(" ", 1)[0] in ("POST", "PUT", "DELETE"):
        raise AlegraError(403, 907, "Tu plan es de solo lectura")


# --- Shared pieces ------------------------------------------------------------------------


def _account(request: web.Request) -> Alegra:
    return request.config_dict[SANDBOX].alegra


def _new_id(account: Alegra, collection: str) -> str:
    account.last_ids[collection] = account.last_ids.get(collection, 0) + 1
    return str(account.last_ids[collection])


def _store(account: Alegra, collection: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Keeps `obj` under its id; an id given from outside moves the counter past it."""
    account.records.setdefault(collection, {})[obj["id"]] = obj
    account.last_ids[collection] = max(account.last_ids.get(collection, 0), int(obj["id"]))
    return obj


def _found(account: Alegra, collection: str, id_: str) -> dict[str, Any]:
    found = account.records.get(collection, {}).get(id_)
    if found is None:
        if collection == "bills":
            raise AlegraError(404, 11110, f"La factura de proveedor {id_} no existe")
        raise AlegraError(404, 404, f"No existe un elemento con id {id_} en {collection}")
    return found


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise AlegraError(400, BAD_BODY, "El cuerpo de la petición no es JSON") from None
    if not isinstance(body, dict):
        raise AlegraError(400, BAD_BODY, "El cuerpo de la petición debe ser un objeto JSON")
    return body


def _required(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise AlegraError(400, BAD_BODY, f"El campo {key} es obligatorio")
    return value.strip()


def _money(amount: Decimal) -> float:
    return float(amount.quantize(CENT, ROUND_HALF_UP))


def _number(value: Any, what: str) -> Decimal:
    """A JSON number or numeric string as a Decimal; 12015 naming `what` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise AlegraError(400, BAD_AMOUNT, f"{what} no es un número: {value!r}")
    try:
        found = Decimal(str(value).strip())
    except InvalidOperation:
        raise AlegraError(400, BAD_AMOUNT, f"{what} no es un número: {value!r}") from None
    if not found.is_finite():
        raise AlegraError(400, BAD_AMOUNT, f"{what} no es un número: {value!r}")
    return found


def _shown(amount: Decimal) -> int | float:
    """A price or quantity as sent, as a JSON number."""
    return int(amount) if amount == amount.to_integral_value() else float(amount)


# --- Lists --------------------------------------------------------------------------------


def _page(request: web.Request, objects: Iterable[dict[str, Any]]) -> web.Response:
    """`objects` ordered and cut as the list parameters say."""
    query = request.query
    start = _bound(query.get("start", "0"), "start", 0, None)
    limit = _bound(query.get("limit", str(LIST_LIMIT)), "limit", 1, LIST_LIMIT)
    field = query.get("order_field", "id")
    if field not in ("id", "date", "name"):
        raise AlegraError(400, 903, f"order_field debe ser id, date o name, no {field!r}")
    direction = query.get("order_direction", "ASC").upper()
    if direction not in ("ASC", "DESC"):
        raise AlegraError(400, 903, f"order_direction debe ser ASC o DESC, no {direction!r}")

    def key(obj: dict[str, Any]) -> tuple[Any, int]:
        value = int(obj["id"]) if field == "id" else str(obj.get(field) or "").casefold()
        return value, int(obj["id"])

    ordered = sorted(objects, key=key, reverse=direction == "DESC")
    data = ordered[start : start + limit]
    if query.get("metadata", "").lower() == "true":
        return web.json_response({"metadata": {"total": len(ordered)}, "data": data})
    return web.json_response(data)


def _bound(text: str, name: str, low: int, high: int | None) -> int:
    if not text.isdigit() or int(text) < low or (high is not None and int(text) > high):
        limits = f"entre {low} y {high}" if high is not None else f"mayor o igual a {low}"
        raise AlegraError(400, 903, f"{name} debe ser un número {limits}, no {text!r}")
    return int(text)


def _listed(collection: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return _page(request, _account(request).records.get(collection, {}).values())

    return handler


def _one(collection: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(_found(_account(request), collection, request.match_info["id"]))

    return handler


# --- Contacts and items -------------------------------------------------------------------


def normalized(identification: str) -> str:
    """An identification as the contacts filter compares it: letters and digits, upper case."""
    return "".join(c for c in identification if c.isalnum()).upper()


async def _contacts(request: web.Request) -> web.Response:
    contacts: Iterable[dict[str, Any]] = _account(request).records.get("contacts", {}).values()
    query = request.query
    if "identification" in query:
        wanted = normalized(query["identification"])
        contacts = [
            c for c in contacts if normalized(c.get("identification") or "").startswith(wanted)
        ]
    if "type" in query:
        contacts = [c for c in contacts if query["type"] in (c.get("type") or [])]
    if "query" in query:
        text = query["query"].casefold()
        contacts = [c for c in contacts if text in str(c.get("name") or "").casefold()]
    return _page(request, contacts)


def _contact_types(value: Any) -> list[str]:
    types = [value] if isinstance(value, str) else value
    if not isinstance(types, list) or not all(t in ("provider", "client") for t in types):
        raise AlegraError(400, BAD_BODY, f"type debe ser provider o client, no {value!r}")
    return list(dict.fromkeys(types))


def _contact_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The fields of a contact `body` sets."""
    fields: dict[str, Any] = {}
    if "name" in body:
        fields["name"] = _required(body, "name")
    for key in ("identification", "email"):
        if key in body:
            fields[key] = str(body[key]) if body[key] not in (None, "") else None
    if "type" in body:
        fields["type"] = _contact_types(body["type"])
    return fields


async def _new_contact(request: web.Request) -> web.Response:
    account, body = _account(request), await _json(request)
    _required(body, "name")
    contact = {
        "id": _new_id(account, "contacts"),
        "name": "",
        "identification": None,
        "type": ["client"],
        "status": "active",
        "email": None,
    }
    contact.update(_contact_fields(body))
    return web.json_response(_store(account, "contacts", contact), status=201)


async def _edit_contact(request: web.Request) -> web.Response:
    account, body = _account(request), await _json(request)
    contact = _found(account, "contacts", request.match_info["id"])
    contact.update(_contact_fields(body))
    return web.json_response(contact)


async def _delete_contact(request: web.Request) -> web.Response:
    account = _account(request)
    contact = _found(account, "contacts", request.match_info["id"])
    del account.records["contacts"][contact["id"]]
    return web.json_response({"code": 200, "message": "El contacto fue eliminado correctamente"})


async def _items(request: web.Request) -> web.Response:
    items: Iterable[dict[str, Any]] = _account(request).records.get("items", {}).values()
    if "query" in request.query:
        text = request.query["query"].casefold()
        items = [i for i in items if text in str(i.get("name") or "").casefold()]
    return _page(request, items)


async def _new_item(request: web.Request) -> web.Response:
    account, body = _account(request), await _json(request)
    name = _required(body, "name")
    prices = body.get("price", 0)
    if not isinstance(prices, list):
        prices = [{"idPriceList": "1", "price": prices}]
    price_list = []
    for entry in prices:
        price = _number(entry.get("price") if isinstance(entry, dict) else None, "price")
        if price < 0:
            raise AlegraError(400, BAD_AMOUNT, f"El precio {price} es negativo")
        price_list.append(
            {"idPriceList": str(entry.get("idPriceList", "1")), "price": _shown(price)}
        )
    taxes = [_tax(account, tax)["id"] for tax in body.get("tax") or []]
    item = {
        "id": _new_id(account, "items"),
        "name": name,
        "description": str(body.get("description") or ""),
        "reference": body.get("reference"),
        "price": price_list,
        "tax": [{"id": id_} for id_ in taxes],
        "status": "active",
        "type": str(body.get("type") or "service"),
    }
    return web.json_response(_store(account, "items", item), status=201)


# --- The chart of accounts ----------------------------------------------------------------


def _children(account: Alegra, parent: str | None) -> list[dict[str, Any]]:
    categories = account.records.get("categories", {}).values()
    found = sorted(
        (c for c in categories if c.get("idParent") == parent), key=lambda c: int(c["id"])
    )
    return [{**c, "children": _children(account, c["id"])} for c in found]


async def _categories(request: web.Request) -> web.Response:
    return web.json_response(_children(_account(request), None))


async def _category(request: web.Request) -> web.Response:
    account = _account(request)
    category = _found(account, "categories", request.match_info["id"])
    return web.json_response({**category, "children": _children(account, category["id"])})


def _expense_leaves(account: Alegra, parent: str | None = None) -> Iterable[dict[str, Any]]:
    """The expense accounts without subaccounts, in the tree's order."""
    for category in _children(account, parent):
        if not category["children"] and category.get("type") == "expense":
            yield category
        yield from _expense_leaves(account, category["id"])


# --- Bills --------------------------------------------------------------------------------


async def _bills(request: web.Request) -> web.Response:
    bills: Iterable[dict[str, Any]] = _account(request).records.get("bills", {}).values()
    if "status" in request.query:
        wanted = {s.strip() for s in request.query["status"].split(",")}
        bills = [b for b in bills if b.get("status") in wanted]
    return _page(request, bills)


async def _new_bill(request: web.Request) -> web.Response:
    account, body = _account(request), await _json(request)
    return web.json_response(_store(account, "bills", _bill(account, body)), status=201)


def _bill(account: Alegra, body: dict[str, Any], cufe: str | None = None) -> dict[str, Any]:
    """The bill `body` (POST /bills) makes, validated and computed; not yet stored."""
    provider = body.get("provider")
    provider_id = str(provider.get("id")) if isinstance(provider, dict) else None
    contact = account.records.get("contacts", {}).get(provider_id or "")
    if contact is None:
        raise AlegraError(
            400,
            11004,
            f"El proveedor {provider_id} no existe" if provider_id else "Falta el proveedor",
        )
    day, due = _day(body, "date"), _day(body, "dueDate")
    purchases = body.get("purchases")
    if purchases is None:
        purchases = {}
    if not isinstance(purchases, dict):
        raise AlegraError(400, BAD_BODY, "purchases debe ser un objeto con categories e items")
    lines = {kind: purchases.get(kind) or [] for kind in ("categories", "items")}
    if not any(lines.values()):
        raise AlegraError(
            400, 11040, "La factura debe tener al menos un ítem o una cuenta contable"
        )
    shown: dict[str, list[dict[str, Any]]] = {}
    subtotal = tax = Decimal(0)
    for kind, sent in lines.items():
        if not isinstance(sent, list):
            raise AlegraError(400, BAD_BODY, f"purchases.{kind} debe ser una lista")
        shown[kind] = []
        for line in sent:
            entry, base, taxes = _line(account, kind, line)
            shown[kind].append(entry)
            subtotal += base
            tax += taxes
    subtotal = subtotal.quantize(CENT, ROUND_HALF_UP)
    retentions = [_retention(account, r, subtotal) for r in body.get("retentions") or []]
    retention = sum((amount for _, amount in retentions), Decimal(0))
    currency = _currency(body.get("currency"))
    now = utcnow().astimezone(TIMEZONE)
    return {
        "id": _new_id(account, "bills"),
        "date": day,
        "dueDate": due,
        "datetime": f"{now:%Y-%m-%d %H:%M:%S}",
        "provider": {k: contact.get(k) for k in ("id", "name", "identification")},
        "purchases": shown,
        "retentions": [{**shown, "amount": _money(amount)} for shown, amount in retentions],
        "observations": str(body.get("observations") or ""),
        "currency": currency,
        "status": "open",
        "subtotal": _money(subtotal),
        "tax": _money(tax),
        "retention": _money(retention),
        "total": _money(subtotal + tax - retention),
        "attachments": [],
        "cufe": cufe,
    }


def _day(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    try:
        if isinstance(value, str) and _DATE.match(value):
            return date.fromisoformat(value).isoformat()
    except ValueError:
        pass
    raise AlegraError(400, BAD_DATE, f"{key} debe ser una fecha AAAA-MM-DD, no {value!r}")


def _line(account: Alegra, kind: str, line: Any) -> tuple[dict[str, Any], Decimal, Decimal]:
    """A purchase line as the bill shows it, its price × quantity and its taxes."""
    if not isinstance(line, dict):
        raise AlegraError(400, BAD_BODY, f"Cada línea de purchases.{kind} debe ser un objeto")
    id_ = str(line.get("id"))
    if kind == "categories":
        leaves = {c["id"]: c for c in _expense_leaves(account)}
        if id_ not in leaves:
            raise AlegraError(
                400,
                UNKNOWN_CATEGORY,
                f"La cuenta contable {id_} no existe o no es una cuenta de gastos sin subcuentas",
            )
        name = leaves[id_].get("name")
    else:
        item = account.records.get("items", {}).get(id_)
        if item is None:
            raise AlegraError(400, UNKNOWN_ITEM, f"El ítem {id_} no existe")
        name = item.get("name")
    price = _number(line.get("price"), f"El precio de la línea {id_}")
    if price < 0:
        raise AlegraError(400, BAD_AMOUNT, f"El precio {price} de la línea {id_} es negativo")
    quantity = _number(line.get("quantity", 1), f"La cantidad de la línea {id_}")
    if quantity <= 0:
        raise AlegraError(
            400, BAD_AMOUNT, f"La cantidad {quantity} de la línea {id_} no es positiva"
        )
    base = price * quantity
    taxes = []
    for sent in line.get("tax") or []:
        found = _tax(account, sent)
        amount = (base * _percentage(found) / 100).quantize(CENT, ROUND_HALF_UP)
        taxes.append({**{k: found[k] for k in ("id", "name", "percentage")}, "amount": amount})
    tax = sum((t["amount"] for t in taxes), Decimal(0))
    entry = {
        "id": id_,
        "name": name,
        "price": _shown(price),
        "quantity": _shown(quantity),
        "observations": str(line.get("observations") or ""),
        "tax": [{**t, "amount": _money(t["amount"])} for t in taxes],
        "total": _money(base.quantize(CENT, ROUND_HALF_UP) + tax),
    }
    return entry, base, tax


def _tax(account: Alegra, sent: Any) -> dict[str, Any]:
    id_ = str(sent.get("id")) if isinstance(sent, dict) else repr(sent)
    found = account.records.get("taxes", {}).get(id_)
    if found is None:
        raise AlegraError(400, UNKNOWN_TAX, f"El impuesto {id_} no existe")
    return found


def _retention(account: Alegra, sent: Any, subtotal: Decimal) -> tuple[dict[str, Any], Decimal]:
    """A retention as the bill shows it (without its amount) and its amount."""
    id_ = str(sent.get("id")) if isinstance(sent, dict) else repr(sent)
    found = account.records.get("retentions", {}).get(id_)
    if found is None or not isinstance(sent, dict):
        raise AlegraError(400, UNKNOWN_RETENTION, f"La retención {id_} no existe")
    if sent.get("amount") is not None:
        amount = _number(sent["amount"], f"El valor de la retención {id_}")
        if amount < 0:
            raise AlegraError(
                400, BAD_AMOUNT, f"El valor {amount} de la retención {id_} es negativo"
            )
    else:
        amount = subtotal * _percentage(found) / 100
    shown = {k: found[k] for k in ("id", "name", "percentage")}
    return shown, amount.quantize(CENT, ROUND_HALF_UP)


def _percentage(rate: dict[str, Any]) -> Decimal:
    """A tax's or retention's rate (`edit` keeps it a number)."""
    return Decimal(str(rate["percentage"]))


def _currency(sent: Any) -> dict[str, Any]:
    if sent is None:
        return {"code": "COP", "exchangeRate": 1}
    if not isinstance(sent, dict):
        raise AlegraError(400, BAD_BODY, "currency debe ser un objeto con code y exchangeRate")
    code = str(sent.get("code")).upper()
    if code not in CURRENCIES:
        raise AlegraError(
            400, CURRENCY_DISABLED, f"La moneda {code} no está habilitada en la cuenta"
        )
    rate = _number(sent.get("exchangeRate", 1), "exchangeRate")
    if rate <= 0:
        raise AlegraError(400, BAD_AMOUNT, f"exchangeRate debe ser positivo, no {rate}")
    return {"code": code, "exchangeRate": _shown(rate)}


async def _import_by_cufe(request: web.Request) -> web.Response:
    account = _account(request)
    cufe = str((await _json(request)).get("cufe") or "").strip().lower()
    document = account.documents.get(cufe)
    if document is None:
        raise AlegraError(
            404, UNKNOWN_CUFE, f"No se encontró en la DIAN una factura con CUFE {cufe!r}"
        )
    if any(bill.get("cufe") == cufe for bill in account.records.get("bills", {}).values()):
        raise AlegraError(400, 11108, "El UUID ya se encuentra asociado a otra factura")
    body = _imported(account, document)
    # Looked up (or created) once every tax and withholding of the document has a rate here.
    body["provider"] = {"id": _provider(account, document.issuer)}
    return web.json_response(_store(account, "bills", _bill(account, body, cufe)), status=201)


def _imported(account: Alegra, document: Document) -> dict[str, Any]:
    """The POST /bills body for a Colombian document, as Alegra reads it from the DIAN."""
    category = next(iter(_expense_leaves(account)))["id"]
    lines = []
    for n, line in enumerate(document.lines, 1):
        amount = number(line.amount)
        if amount is None:
            raise AlegraError(400, BAD_AMOUNT, f"La línea {n} del documento no tiene valor")
        quantity = number(line.quantity) or Decimal(1)
        price = number(line.unit_price) or amount
        if price * quantity != amount:  # a discount or a charge on the line
            price, quantity = amount, Decimal(1)
        taxes = [
            {"id": _rate(account, "taxes", TAX_TYPES, tax.code, tax.rate, tax.name)}
            for tax in line.taxes
        ]
        lines.append(
            {
                "id": category,
                "price": str(price),
                "quantity": str(quantity),
                "tax": taxes,
                "observations": line.description or f"Línea {n}",
            }
        )
    retentions = [
        {
            "id": _rate(account, "retentions", RETENTION_TYPES, w.code, w.rate, w.name),
            "amount": w.amount,
        }
        for w in document.withholdings
    ]
    day = (document.issued_at or "")[:10]
    currency = document.currency or "COP"
    return {
        "date": day,
        "dueDate": document.due_date or day,
        "purchases": {"categories": lines},
        "retentions": retentions,
        "observations": f"Factura {document.number} importada por CUFE",
        "currency": {"code": currency, "exchangeRate": document.exchange_rate or 1},
    }


def _rate(
    account: Alegra,
    collection: str,
    types: dict[str, str],
    code: str,
    rate: str | None,
    name: str | None,
) -> str:
    """The id of the account's tax or retention of `code`'s type at `rate`."""
    wanted, percentage = types.get(code), number(rate)
    if percentage is None:
        raise AlegraError(400, NO_RATE, f"{name or code} del documento no tiene tarifa")
    for found in account.records.get(collection, {}).values():
        if found.get("type") == wanted and _percentage(found) == percentage:
            return str(found["id"])
    raise AlegraError(
        400, NO_RATE, f"La cuenta no tiene {name or code} al {rate}% (código DIAN {code})"
    )


def _provider(account: Alegra, issuer: Party) -> str:
    """The id of the contact with the issuer's identification, created when there is none."""
    wanted = normalized(issuer.tax_id or "")
    for contact in account.records.get("contacts", {}).values():
        if wanted and normalized(contact.get("identification") or "") == wanted:
            types = contact.get("type") or []
            if "provider" not in types:
                contact["type"] = [*types, "provider"]
            return str(contact["id"])
    contact = {
        "id": _new_id(account, "contacts"),
        "name": issuer.name or issuer.tax_id or "",
        "identification": issuer.tax_id,
        "type": ["provider"],
        "status": "active",
        "email": None,
    }
    return str(_store(account, "contacts", contact)["id"])


async def _attach(request: web.Request) -> web.Response:
    account = _account(request)
    bill = _found(account, "bills", request.match_info["id"])
    if not request.content_type.startswith("multipart/"):
        raise AlegraError(400, 904, "El adjunto debe enviarse como multipart/form-data")
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if isinstance(part, BodyPartReader) and part.name == "file":
                data = await part.read()
                name = part.filename or "file"
                break
        else:
            raise AlegraError(400, 904, "Falta el campo file con el archivo adjunto")
    except (ValueError, AssertionError):
        raise AlegraError(400, 904, "El cuerpo multipart/form-data no se pudo leer") from None
    attachment = {
        "id": _new_id(account, "attachments"),
        "name": name,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    bill.setdefault("attachments", []).append(attachment)
    return web.json_response(attachment, status=201)


# --- Webhooks -----------------------------------------------------------------------------


async def _subscribe(request: web.Request) -> web.Response:
    account, body = _account(request), await _json(request)
    event, url = _required(body, "event"), _required(body, "url")
    if not url.startswith(("http://", "https://")):
        raise AlegraError(400, BAD_BODY, f"url debe ser una dirección http(s), no {url!r}")
    subscription = {"id": _new_id(account, "subscriptions"), "event": event, "url": url}
    return web.json_response(
        {"subscription": _store(account, "subscriptions", subscription)}, status=201
    )


async def _unsubscribe(request: web.Request) -> web.Response:
    account = _account(request)
    subscription = _found(account, "subscriptions", request.match_info["id"])
    del account.records["subscriptions"][subscription["id"]]
    return web.json_response({})


async def edit(
    sandbox_app: web.Application, kind: str, id_: str, fields: dict[str, Any], shape: str
) -> dict[str, Any]:
    """`POST /_admin/alegra/{kind}/{id}`: `fields` merged into the object (created with that
    id when unknown); the subscribed webhooks are told before this returns. ValueError names
    what is wrong."""
    _admin_target(kind, id_)
    account = sandbox_app[SANDBOX].alegra
    existing = account.records.get(kind, {}).get(id_)
    merged = {**(existing or {}), **fields, "id": id_}
    if kind in ("taxes", "retentions") and number(str(merged.get("percentage"))) is None:
        raise ValueError(f"a percentage is a number, not {merged.get('percentage')!r}")
    obj = _store(account, kind, merged)
    delivered, failed = await _notify(sandbox_app, "edit" if existing else "new", kind, obj, shape)
    return {"object": obj, "delivered": delivered, "failed": failed}


async def remove(sandbox_app: web.Application, kind: str, id_: str, shape: str) -> dict[str, Any]:
    """`DELETE /_admin/alegra/{kind}/{id}`; KeyError when there is no such object."""
    _admin_target(kind, id_)
    obj = sandbox_app[SANDBOX].alegra.records.get(kind, {}).pop(id_)
    delivered, failed = await _notify(sandbox_app, "delete", kind, obj, shape)
    return {"object": obj, "delivered": delivered, "failed": failed}


def set_block(account: Alegra, block: Any) -> None:
    if block not in (900, 907, None):
        raise ValueError(f"block must be 900, 907 or null, not {block!r}")
    account.block = block


def _admin_target(kind: str, id_: str) -> None:
    if kind not in ADMIN_TYPES:
        raise ValueError(f"type must be one of {', '.join(ADMIN_TYPES)}, not {kind!r}")
    if not id_.isdigit():
        raise ValueError(f"an id is a string of digits, not {id_!r}")


async def _notify(
    sandbox_app: web.Application, action: str, kind: str, obj: dict[str, Any], shape: str
) -> tuple[int, int]:
    """Posts the event to every subscription of it, at once; (delivered, failed)."""
    if kind not in EVENT_NAMES:
        return 0, 0
    account, http = sandbox_app[SANDBOX].alegra, sandbox_app[WEBHOOKS]
    subject = f"{action}-{EVENT_NAMES[kind]}"
    payload = {"subject": subject, shape: {EVENT_NAMES[kind]: obj}}
    urls = [
        s["url"] for s in account.records.get("subscriptions", {}).values() if s["event"] == subject
    ]
    answered: list[bool] = []

    async def deliver(url: str) -> None:
        try:
            response = await http.post(url, json=payload)
        except httpx.HTTPError:
            answered.append(False)
        else:
            answered.append(response.is_success)

    async with anyio.create_task_group() as group:
        for url in urls:
            group.start_soon(deliver, url)
    delivered = sum(answered)
    account.webhooks["delivered"] += delivered
    account.webhooks["failed"] += len(answered) - delivered
    return delivered, len(answered) - delivered


# --- Snapshot --------------------------------------------------------------------


def save(account: Alegra, path: Path) -> None:
    """The account's objects, ids and block written to `path` at once (a reader never sees
    half a file)."""
    data = {"records": account.records, "last_ids": account.last_ids, "block": account.block}
    partial = path.with_name(f".{path.name}.tmp")
    with partial.open("w", encoding="utf-8") as out:
        json.dump(data, out, ensure_ascii=False)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)


def restore(account: Alegra, path: Path) -> None:
    """The account as `save` left it in `path`; ValueError when the file is not a snapshot."""
    data = json.loads(path.read_text(encoding="utf-8"))
    try:
        records, last_ids, block = data["records"], data["last_ids"], data["block"]
        valid = all(
            isinstance(objects, dict) and all(isinstance(o, dict) for o in objects.values())
            for objects in records.values()
        ) and all(isinstance(n, int) for n in last_ids.values())
    except (KeyError, TypeError, AttributeError):
        valid = False
    if not valid or block not in (900, 907, None):
        raise ValueError("not a snapshot of the sandbox's Alegra account")
    account.records, account.last_ids, account.block = records, last_ids, block
