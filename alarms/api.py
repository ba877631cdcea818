"""`GET /v1/alarms` (recent alarms and their delivery state) and `POST /v1/alarms/retry`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from aiohttp import web

from alarms.outbox.base import STATES, Entry, Outbox, State
from collector.api.params import given_values, names_problem, shown, whole_number

MAX_LIMIT = 10_000
LIST_PARAMS = frozenset({"state", "app", "limit", "n"})
# Ids in one retry request: each is a bound SQL variable.
MAX_RETRY_IDS = 1000
MAX_ID_LENGTH = 200
_RETRY_SHAPE = '{"ids": ["msg_...", ...]} or {"dead": true}'


def parse_list_params(params: Mapping[str, str]) -> tuple[State | None, str | None, int] | str:
    """(state, app, limit) from a query string, or the text of a 400 answer. An empty
    value counts as not given."""
    given = given_values(params, LIST_PARAMS)
    if isinstance(given, str):
        return given
    state = given.get("state")
    if state is not None and state not in STATES:
        return f"state: expected one of {', '.join(STATES)}, got {shown(state)}"
    name = "n" if "n" in given else "limit"
    limit = whole_number(name, given.get(name, "100"), 1, MAX_LIMIT)
    if isinstance(limit, str):
        return limit
    return state, given.get("app"), limit


def parse_retry_body(body: Any) -> list[str] | str | None:
    """The ids to retry, None for every dead letter, or the text of a 400 answer."""
    if not isinstance(body, dict):
        return f"body: expected a JSON object, {_RETRY_SHAPE}"
    unknown = sorted(set(body) - {"ids", "dead"})
    if unknown:
        return (f"unknown field{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(shown(str(k)) for k in unknown[:5])}; expected {_RETRY_SHAPE}")
    if "ids" in body and "dead" in body:
        return "ids: give ids or dead, not both"
    if "dead" in body:
        return None if body["dead"] is True else "dead: expected true"
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids:
        return f"ids: expected a non-empty list of alarm ids, {_RETRY_SHAPE}"
    if len(ids) > MAX_RETRY_IDS:
        return f"ids: at most {MAX_RETRY_IDS} per request, got {len(ids)}"
    if not all(isinstance(i, str) and 0 < len(i) <= MAX_ID_LENGTH for i in ids):
        return f"ids: expected alarm ids (strings of 1 to {MAX_ID_LENGTH} characters)"
    return ids


class Retrier(Protocol):
    """What `POST /v1/alarms/retry` needs: the Dispatcher, or in cluster mode the part
    that hands a retry to the leader's dispatcher."""

    async def retry(self, ids: list[str] | None) -> list[Entry]:
        """Dead letters (those named, or all) back to pending; the entries requeued."""
        ...


class AlarmsApi:
    """Handlers bound to the running outbox and dispatcher."""

    def __init__(self, outbox: Outbox, dispatcher: Retrier) -> None:
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
        problem = names_problem(request.query, ())
        if problem:
            return web.json_response({"error": problem}, status=400)
        try:
            body = await request.json()
        except (ValueError, RecursionError):
            # Not JSON, not UTF-8, or nested deeper than the parser goes.
            return web.json_response(
                {"error": f"body: expected a JSON object, {_RETRY_SHAPE}"}, status=400)
        ids = parse_retry_body(body)
        if isinstance(ids, str):
            return web.json_response({"error": ids}, status=400)
        entries = await self._dispatcher.retry(ids)
        return web.json_response({"retried": [e.id for e in entries]})


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
