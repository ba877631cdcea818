"""GET /v1/logs: a query, or (follow=1) the backlog and then live records as NDJSON."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace

from aiohttp import web

from collector.api.params import LogsRequest, parse_logs_params
from collector.context import CONTEXT, Context
from collector.fanout import Subscription
from collector.query import LogQuery, matcher
from collector.record import Record

HEARTBEAT_SECONDS = 10.0
_PAGE = 5000


def _ndjson(records: Iterable[Record]) -> bytes:
    return b"".join(json.dumps(r.to_json(), ensure_ascii=False).encode() + b"\n"
                    for r in records)


async def get_logs(request: web.Request) -> web.StreamResponse:
    """Answer a query, or stream when follow=1."""
    parsed = parse_logs_params(request.query)
    if isinstance(parsed, str):
        return web.json_response({"error": parsed}, status=400)
    context = request.app[CONTEXT]
    if parsed.follow:
        return await _follow(request, context, parsed)
    query = parsed.query
    records = await context.store.query(query)
    if query.after is None:
        # The newest lines may not be committed yet; a query answers with them too.
        match = matcher(query)
        records = _merge(records, context.hub.uncommitted(match, 0))[-query.limit:] \
            if query.limit else []
    else:
        records = _merge(records, context.hub.uncommitted(matcher(query), query.after)
                         )[: query.limit]
    return web.json_response({"records": [r.to_json() for r in records]},
                             dumps=lambda doc: json.dumps(doc, ensure_ascii=False))


def _merge(stored: list[Record], pending: list[Record]) -> list[Record]:
    """Committed and uncommitted records in id order, each once."""
    if not pending:
        return stored
    seen = {r.id for r in stored}
    merged = stored + [r for r in pending if r.id not in seen]
    merged.sort(key=lambda r: r.id)
    return merged


async def _catch_up(context: Context, query: LogQuery, after: int) -> list[Record]:
    """Everything after `after` that is committed or pending, in id order."""
    match = matcher(query)
    found: list[Record] = []
    while True:
        page = await context.store.query(replace(query, after=after, limit=_PAGE))
        found.extend(page)
        if page:
            after = page[-1].id
        if len(page) < _PAGE:
            break
    return _merge(found, context.hub.uncommitted(match, after))


async def _follow(request: web.Request, context: Context, parsed: LogsRequest
                  ) -> web.StreamResponse:
    query = parsed.query
    hub = context.hub
    subscription = hub.subscribe(matcher(query))
    # Taken in the same loop tick as the subscription: every later record has a greater id.
    newest_id = context.ingest.last_id
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson",
                                           "Cache-Control": "no-cache"})
    try:
        # Subscribing before reading the backlog is what makes the hand-over gapless: a
        # record is in the store, in the hub's pending set, or in the subscription.
        if query.after is None:
            newest = await context.store.query(replace(query, after=None))
            backlog = _merge(newest, hub.uncommitted(matcher(query), 0))
            backlog = backlog[-query.limit:] if query.limit else []
            last = backlog[0].id - 1 if backlog else newest_id
        else:
            backlog = await _catch_up(context, query, query.after)
            last = query.after
        await response.prepare(request)
        # The cursor line tells the client where the stream stands even before any record
        # arrives, so that it can resume after a reconnect with nothing skipped.
        await response.write(json.dumps({"cursor": last}).encode() + b"\n")
        last = await _send(response, backlog, last)
        await _stream(response, context, query, subscription, last)
    except (ConnectionResetError, ConnectionError):
        pass  # the follower went away
    finally:
        hub.unsubscribe(subscription)
    return response


async def _stream(response: web.StreamResponse, context: Context, query: LogQuery,
                  subscription: Subscription, last: int) -> None:
    while not subscription.closed:
        if subscription.lagged:
            subscription.resume()
            last = await _send(response, await _catch_up(context, query, last), last)
            continue
        batch = await subscription.take(HEARTBEAT_SECONDS)
        if batch:
            last = await _send(response, batch, last)
        elif not subscription.closed:
            # A blank line lets both ends notice a dead connection.
            await response.write(b"\n")


async def _send(response: web.StreamResponse, records: list[Record], last: int) -> int:
    fresh = [r for r in records if r.id > last]
    if fresh:
        await response.write(_ndjson(fresh))
        return fresh[-1].id
    return last
