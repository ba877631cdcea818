"""The aiohttp application: auth, routes, error mapping."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from collector.api.logs import get_logs
from collector.api.metrics import get_metrics
from collector.api.params import names_problem
from collector.api.sources import get_sources
from collector.api.volume import get_volume
from collector.console import routes as console
from collector.errors import StoreError
from collector.server.context import CONTEXT, Context

# The console's static files are open: the page must load to ask for the token.
_OPEN_PATHS = frozenset({"/healthz"}) | console.OPEN_PATHS
# Endpoints that take no query parameters (the others check their own).
_NO_PARAMS = frozenset({"/healthz", "/metrics"})
# A request line may be this long (aiohttp's default is 8190 bytes), so that a long query
# parameter reaches the handler and is refused with its name rather than by the parser.
MAX_REQUEST_LINE = 128 * 1024

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
        if request.path in _NO_PARAMS:
            problem = names_problem(request.query, ())
            if problem:
                return web.json_response({"error": problem}, status=400)
        try:
            return await handler(request)
        except StoreError as exc:
            return web.json_response({"error": str(exc)}, status=503)

    return middleware


async def get_health(request: web.Request) -> web.Response:
    """Liveness: 200 while the server runs, with the store's queue depth."""
    context = request.app[CONTEXT]
    stats = context.store.stats()
    body = {"status": "ok", "queued": stats.queued,
            "listeners": [lst.config.name for lst in context.listeners]}
    body.update({name: report() for name, report in context.health.items()})
    return web.json_response(body)


async def get_not_clustered(request: web.Request) -> web.Response:
    """/v1/cluster on a single-node collector: a 404 that says why."""
    return web.json_response({"error": "not in cluster mode: this collector has no "
                              "[cluster] section"}, status=404)


def create_app(context: Context) -> web.Application:
    """The API application for a running server."""
    app = web.Application(middlewares=[_auth_middleware(context.config.http.token)],
                          handler_args={"max_line_size": MAX_REQUEST_LINE})
    app[CONTEXT] = context
    app.router.add_get("/healthz", get_health)
    app.router.add_get("/v1/logs", get_logs)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/v1/stats/volume", get_volume)
    app.router.add_get("/v1/sources", get_sources)
    app.router.add_routes(console.routes())
    served: set[str] = set()
    for component in context.components:
        routes = component.routes()
        app.router.add_routes(routes)
        served |= {route.path for route in routes}
    if "/v1/cluster" not in served:
        app.router.add_get("/v1/cluster", get_not_clustered)
    return app
