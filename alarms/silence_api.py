"""`GET /v1/silences[?all=1]`, `POST /v1/silences`, `DELETE /v1/silences/ID`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from alarms.silence_store import Silences
from alarms.silences import parse_body
from collector.api.params import names_problem, shown

LIST_PARAMS = ("all",)
DELETE_PARAMS = ("by",)


class SilencesApi:
    """Handlers bound to the running registry."""

    def __init__(self, registry: Silences,
                 clock: Callable[[], float] = time.time) -> None:
        self._registry = registry
        self._clock = clock

    def routes(self) -> list[web.RouteDef]:
        """The routes to add to the API."""
        return [web.get("/v1/silences", self.list_silences),
                web.post("/v1/silences", self.create),
                web.delete("/v1/silences/{id}", self.expire)]

    async def list_silences(self, request: web.Request) -> web.Response:
        """Active silences, newest first; `all=1` adds those ended or expired."""
        problem = names_problem(request.query, LIST_PARAMS)
        if problem:
            return _error(problem, 400)
        flag = request.query.get("all", "")
        if flag not in ("", "0", "1", "true", "false"):
            return _error(f"all: expected 1 or 0, got {shown(flag)}", 400)
        now = self._clock()
        found = self._registry.listed(now, everything=flag in ("1", "true"))
        return web.json_response({"silences": [s.to_json(now) for s in found]},
                                 dumps=_dumps)

    async def create(self, request: web.Request) -> web.Response:
        """A new silence from a JSON body; 201 with the silence, 400 naming the field."""
        problem = names_problem(request.query, ())
        if problem:
            return _error(problem, 400)
        try:
            body = await request.json()
        except (ValueError, RecursionError):
            return _error("body: expected a JSON object", 400)
        now = self._clock()
        silence = parse_body(body, now)
        if isinstance(silence, str):
            return _error(silence, 400)
        await self._registry.add(silence, now)
        return web.json_response(silence.to_json(now), status=201, dumps=_dumps)

    async def expire(self, request: web.Request) -> web.Response:
        """End a silence now; 404 for an unknown id. `by` names who (default api)."""
        problem = names_problem(request.query, DELETE_PARAMS)
        if problem:
            return _error(problem, 400)
        now = self._clock()
        by = request.query.get("by", "")[:200] or "unknown"
        silence = await self._registry.expire(request.match_info["id"], now, by)
        if silence is None:
            return _error(f"no silence {shown(request.match_info['id'])}", 404)
        return web.json_response(silence.to_json(now), dumps=_dumps)


def _error(text: str, status: int) -> web.Response:
    return web.json_response({"error": text}, status=status)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
