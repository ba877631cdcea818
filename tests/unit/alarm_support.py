"""Building alarm rules and records from ini text, for the alarm unit tests."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

from aiohttp import web

from alarms.config import parse_app
from alarms.spec import AppRules
from collector.config.ini import parse_ini
from collector.config.model import AppSection
from collector.record import Record


def rules_from(body: str, app: str = "shop", env: dict[str, str] | None = None) -> AppRules:
    """The AppRules of `[app:APP]` followed by `body`."""
    (section,) = parse_ini(f"[app:{app}]\n{body}", "test.ini", env or {})
    return parse_app(AppSection(section.name.partition(":")[2], tuple(section.entries),
                                section.location))


def record(line: str, at: float, source: str = "web.1", app: str = "shop",
           kind: str = "log") -> Record:
    """A record of `line` received at `at` (seconds)."""
    return Record(int(at * 1e6), None, app, source, "10.0.0.1", "crypto", line, kind)


@dataclass(frozen=True)
class Received:
    """One request as the receiver got it."""

    method: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """An HTTP server on 127.0.0.1 that answers requests to `path` with the statuses it is
    given, in turn, and keeps each request's headers and body."""

    def __init__(self, path: str = "/hook") -> None:
        self.path = path
        self.statuses: list[int] = []
        self.delay = 0.0
        self.requests: list[Received] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def ids(self) -> list[str]:
        """The webhook-id of each request, in arrival order."""
        return [r.headers.get("webhook-id", "") for r in self.requests]

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append(Received(request.method, dict(request.headers),
                                      await request.read()))
        await asyncio.sleep(self.delay)
        return web.Response(status=self.statuses.pop(0) if self.statuses else 204)

    async def start(self) -> None:
        """Listen on a free loopback port."""
        app = web.Application()
        app.router.add_route("*", self.path, self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.create_server(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        """The URL of `path`."""
        return f"http://127.0.0.1:{self.port}{self.path}"
