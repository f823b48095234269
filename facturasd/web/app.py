"""The aiohttp application and its listener."""

from __future__ import annotations

import errno
import json
import socket

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from facturasd.alegra.service import HOOK_PATH, Hooks
from facturasd.config import Http
from facturasd.errors import CannotListen
from facturasd.monitoring.health import Health
from facturasd.monitoring.metrics import Metrics
from facturasd.web import dashboard
from facturasd.web.api import Api, add_routes

HEALTH = web.AppKey("health", Health)
METRICS = web.AppKey("metrics", Metrics)


async def health(request: web.Request) -> web.Response:
    report = await request.app[HEALTH].report()
    return web.Response(
        status=503 if report["status"] == "fail" else 200,
        text=json.dumps(report, ensure_ascii=False),
        content_type="application/health+json",
        headers={"Cache-Control": "no-store"},
    )


async def scrape(request: web.Request) -> web.Response:
    return web.Response(
        body=await request.app[METRICS].scrape(),
        headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
    )


def create_app(
    checker: Health,
    hooks: Hooks | None = None,
    metrics: Metrics | None = None,
    api: Api | None = None,
) -> web.Application:
    """`hooks`: Alegra's webhooks, answered when Alegra is configured; `metrics`: the
    daemon's, at GET /metrics; `api`: the REST API under /api/v1/ (web/api.py)."""
    app = web.Application()
    app[HEALTH] = checker
    app.router.add_get("/health", health)
    if metrics is not None:
        app[METRICS] = metrics
        app.router.add_get("/metrics", scrape)
    if hooks is not None:
        app.router.add_post(HOOK_PATH, hooks.handle)
    if api is not None:
        add_routes(app, api)
        dashboard.add_routes(app)
    return app


def listen(settings: Http) -> socket.socket:
    """A socket listening on `http.bind`, taken before anything else starts (the daemon opens
    no database while its port is taken; check-config tries it and lets go). CannotListen,
    naming the setting, if it cannot be had. Blocking (it may resolve a name): run it in a
    thread."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise _cannot_listen(settings, exc) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen()
    except OSError as exc:
        sock.close()
        raise _cannot_listen(settings, exc) from None
    return sock


def _cannot_listen(settings: Http, exc: OSError) -> CannotListen:
    why = exc.strerror or str(exc)
    if exc.errno == errno.EADDRINUSE:
        fix = "another program has this port: stop it, or choose another port"
    else:
        fix = "choose an address of this machine"
    return CannotListen(
        f"http.bind = {settings.bind!r}: cannot listen there ({why}); {fix} with http.bind "
        "in the configuration file or FACTURASD_HTTP__BIND"
    )


async def start(app: web.Application, sock: socket.socket) -> web.AppRunner:
    """Serves `app` on `sock` (from `listen`)."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
