"""GET /: the dashboard, a page that reads the REST API (status, stats/hourly, reports) and
refreshes itself. Three files of facturasd/web/static, served as they are: no build step, and
nothing fetched from elsewhere, so it works on an office network without internet. Its words,
Spanish and English, are put in the page here, from the same tables the CLI words with.
"""

from __future__ import annotations

import json
from functools import partial
from importlib import resources

from aiohttp import web

from facturasd.monitoring.snapshot import WORDS as STATUS_WORDS
from facturasd.wording import SEVERITIES, STATES, Language

# The page's own words, beside those of `facturasd status`.
WORDS: dict[Language, dict[str, str]] = {
    "es": {
        "title": "facturasd: tablero",
        "updated": "actualizado a las {at}",
        "offline": "Sin respuesta del daemon: se muestran las últimas cifras leídas.",
        "token": "Esta dirección pide un token (una línea de http.token_file):",
        "token_use": "Usar",
        "per_hour": "Facturas recibidas por hora, últimas 24 horas, por estado",
        "invoice": "Factura",
        "state": "Estado",
        "reason": "Motivo",
        "todo": "Qué hacer",
        "nobody": "Nada espera a una persona.",
        "reports": "Reportes",
        "no_reports": "Aún no hay reportes escritos.",
        "cache": "Caché de Alegra: {rate} de aciertos ({hits} aciertos, {misses} fallos, "
        "{keys} claves)",
    },
    "en": {
        "title": "facturasd: dashboard",
        "updated": "updated at {at}",
        "offline": "The daemon does not answer: the last figures read are shown.",
        "token": "This address asks for a token (a line of http.token_file):",
        "token_use": "Use",
        "per_hour": "Invoices received per hour, last 24 hours, by state",
        "invoice": "Invoice",
        "state": "State",
        "reason": "Reason",
        "todo": "What to do",
        "nobody": "Nothing waits for a person.",
        "reports": "Reports",
        "no_reports": "No report written yet.",
        "cache": "Alegra cache: {rate} hit rate ({hits} hits, {misses} misses, {keys} keys)",
    },
}

# The page may load its own files and call its own API, nothing else.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data: blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
FILES = {
    "/": ("dashboard.html", "text/html"),
    "/dashboard.js": ("dashboard.js", "text/javascript"),
    "/dashboard.css": ("dashboard.css", "text/css"),
}


def add_routes(app: web.Application) -> None:
    for path, (body, content_type) in PAGES.items():
        app.router.add_get(path, partial(_send, body, content_type))


async def _send(body: bytes, content_type: str, request: web.Request) -> web.Response:
    return web.Response(body=body, content_type=content_type, charset="utf-8", headers=HEADERS)


def _words() -> str:
    """Every word of the page in both languages, as JSON safe inside a <script> element."""
    words = {
        lang: {
            **STATUS_WORDS[lang],
            **SEVERITIES[lang],
            **WORDS[lang],
            "states": STATES[lang],
        }
        for lang in WORDS
    }
    return json.dumps(words, ensure_ascii=False).replace("<", "\\u003c")


def _read() -> dict[str, tuple[bytes, str]]:
    static = resources.files("facturasd.web") / "static"
    pages = {}
    for path, (name, content_type) in FILES.items():
        text = (static / name).read_text(encoding="utf-8")
        if name == "dashboard.html":
            text = text.replace("{{words}}", _words())
        pages[path] = (text.encode(), content_type)
    return pages


# Read once, when the module is imported (before the event loop runs): each route's body.
PAGES = _read()
