"""The aiohttp application and its listener."""

from __future__ import annotations

import json

from aiohttp import web

from facturasd.config import Http
from facturasd.monitoring.health import Health

HEALTH = web.AppKey("health", Health)


async def health(request: web.Request) -> web.Response:
    report = await request.app[HEALTH].report()
    return web.Response(
        status=503 if report["status"] == "fail" else 200,
        text=json.dumps(report, ensure_ascii=False),
        content_type="application/health+json",
        headers={"Cache-Control": "no-store"},
    )


def create_app(checker: Health) -> web.Application:
    app = web.Application()
    app[HEALTH] = checker
    app.router.add_get("/health", health)
    return app


async def start(app: web.Application, settings: Http) -> web.AppRunner:
    """Listens on `http.bind`; raises OSError (port taken, address missing) at once."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
