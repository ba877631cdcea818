"""Serves the console's files from the package, with a strict Content-Security-Policy.

The files hold no data and no secret, so they are served without the API token: the page
must load to ask for it. Everything it shows comes from the API, which the token guards.
"""

from __future__ import annotations

from importlib.resources import files

from aiohttp import web
from aiohttp.typedefs import Handler

# No inline script or style, no other origin; the page only talks to its own API.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
          ".svg": "image/svg+xml"}
# URL path -> file under collector/console/static.
ASSETS = {"/": "index.html", "/console": "index.html", "/console/app.js": "app.js",
          "/console/app.css": "app.css", "/console/favicon.svg": "favicon.svg"}
OPEN_PATHS = frozenset(ASSETS)


def _asset(name: str) -> bytes:
    return files("collector.console").joinpath("static", name).read_bytes()


def _handler(name: str) -> Handler:
    suffix = name[name.rfind("."):]
    body = _asset(name)

    async def serve(request: web.Request) -> web.Response:
        """One static file."""
        return web.Response(body=body, content_type=_TYPES[suffix], charset="utf-8",
                            headers=SECURITY_HEADERS)

    return serve


def routes() -> list[web.RouteDef]:
    """The console's routes (read once: the files are part of the installed package)."""
    return [web.get(path, _handler(name)) for path, name in ASSETS.items()]
