"""`GET /v1/alarms` (recent alarms and their delivery state) and `POST /v1/alarms/retry`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from alarms.delivery import Dispatcher
from alarms.outbox.base import STATES, Outbox, State

MAX_LIMIT = 10_000


def parse_list_params(params: Mapping[str, str]) -> tuple[State | None, str | None, int] | str:
    """(state, app, limit) from a query string, or the text of a 400 answer."""
    state = params.get("state") or None
    if state is not None and state not in STATES:
        return f"state: expected one of {', '.join(STATES)}, got {state!r}"
    raw = params.get("limit") or params.get("n") or "100"
    try:
        limit = int(raw)
    except ValueError:
        return f"limit: expected a whole number, got {raw!r}"
    if not 1 <= limit <= MAX_LIMIT:
        return f"limit: must be between 1 and {MAX_LIMIT}"
    return state, params.get("app") or None, limit


def parse_retry_body(body: Any) -> list[str] | str | None:
    """The ids to retry, None for every dead letter, or the text of a 400 answer."""
    if not isinstance(body, dict):
        return 'expected a JSON object: {"ids": [...]} or {"dead": true}'
    if body.get("dead") is True:
        return None
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        return 'expected {"ids": ["msg_...", ...]} or {"dead": true}'
    return ids


class AlarmsApi:
    """Handlers bound to the running outbox and dispatcher."""

    def __init__(self, outbox: Outbox, dispatcher: Dispatcher) -> None:
        self._outbox = outbox
        self._dispatcher = dispatcher

    def routes(self) -> list[web.RouteDef]:
        """The routes to add to the API."""
        return [web.get("/v1/alarms", self.list_alarms),
                web.post("/v1/alarms/retry", self.retry)]

    async def list_alarms(self, request: web.Request) -> web.Response:
        """Newest first; `state`, `app` and `limit` filter."""
        parsed = parse_list_params(request.query)
        if isinstance(parsed, str):
            return web.json_response({"error": parsed}, status=400)
        state, app, limit = parsed
        entries = await self._outbox.recent(state, app, limit)
        return web.json_response({"alarms": [e.to_json() for e in entries]},
                                 dumps=_dumps)

    async def retry(self, request: web.Request) -> web.Response:
        """Dead letters back into delivery."""
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        ids = parse_retry_body(body)
        if isinstance(ids, str):
            return web.json_response({"error": ids}, status=400)
        entries = await self._dispatcher.retry(ids)
        return web.json_response({"retried": [e.id for e in entries]})


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
