"""The aiohttp application: auth, routes, error mapping."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from collector.api.logs import get_logs
from collector.api.metrics import get_metrics
from collector.errors import StoreError
from collector.server.context import CONTEXT, Context

_OPEN_PATHS = frozenset({"/healthz"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _auth_middleware(token: str | None) -> Middleware:
    expected = f"Bearer {token}".encode() if token else None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is not None and request.path not in _OPEN_PATHS:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return web.json_response({"error": "missing or wrong bearer token"},
                                         status=401,
                                         headers={"WWW-Authenticate": "Bearer"})
        try:
            return await handler(request)
        except StoreError as exc:
            return web.json_response({"error": str(exc)}, status=503)

    return middleware


async def get_health(request: web.Request) -> web.Response:
    """Liveness: 200 while the server runs, with the store's queue depth."""
    context = request.app[CONTEXT]
    stats = context.store.stats()
    return web.json_response({"status": "ok", "queued": stats.queued,
                              "listeners": [lst.config.name for lst in context.listeners]})


def create_app(context: Context) -> web.Application:
    """The API application for a running server."""
    app = web.Application(middlewares=[_auth_middleware(context.config.http.token)])
    app[CONTEXT] = context
    app.router.add_get("/healthz", get_health)
    app.router.add_get("/v1/logs", get_logs)
    app.router.add_get("/metrics", get_metrics)
    for component in context.components:
        app.router.add_routes(component.routes())
    return app
