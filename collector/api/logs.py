"""GET /v1/logs: a query, or (follow=1) the backlog and then live records as NDJSON.

No line may fall between the backlog and the live stream. A follower subscribes first and,
in the same loop tick, takes the store's uncommitted records; only then does it read the
committed ones. A record is thus in the subscription (appended later), in that snapshot, or
committed before the read; one found twice is sent once, by id.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace

from aiohttp import web

from collector.api.params import LogsRequest, parse_logs_params
from collector.fanout import Subscription
from collector.query import LogQuery, matcher
from collector.record import Record
from collector.server.context import CONTEXT, Context

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
    if query.after is None:
        records = await _newest(context, query)
    else:
        records = await _after(context, query, query.after, query.limit)
    return web.json_response({"records": [r.to_json() for r in records]},
                             dumps=lambda doc: json.dumps(doc, ensure_ascii=False))


def _uncommitted(context: Context, query: LogQuery, after: int) -> list[Record]:
    """Matching records on their way to disk, after `after`; take it before reading."""
    match = matcher(query)
    return [r for r in context.store.uncommitted() if r.id > after and match(r)]


def _merge(stored: list[Record], pending: list[Record]) -> list[Record]:
    """Committed and uncommitted records in id order, each once."""
    if not pending:
        return stored
    seen = {r.id for r in stored}
    merged = stored + [r for r in pending if r.id not in seen]
    merged.sort(key=lambda r: r.id)
    return merged


async def _newest(context: Context, query: LogQuery) -> list[Record]:
    """The newest `limit` matching records, committed or not, oldest first."""
    if not query.limit:
        return []
    pending = _uncommitted(context, query, 0)
    stored = await context.store.query(replace(query, after=None))
    return _merge(stored, pending)[-query.limit:]


async def _after(context: Context, query: LogQuery, after: int, limit: int | None
                 ) -> list[Record]:
    """Matching records after `after`, committed or not, up to `limit` (None: all)."""
    pending = _uncommitted(context, query, after)
    found: list[Record] = []
    cursor = after
    while limit is None or len(found) < limit:
        want = _PAGE if limit is None else min(_PAGE, limit - len(found))
        page = await context.store.query(replace(query, after=cursor, limit=want))
        found.extend(page)
        if len(page) < want:
            break
        cursor = page[-1].id
    merged = _merge(found, pending)
    return merged if limit is None else merged[:limit]


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
        if query.after is None:
            backlog = await _newest(context, query)
            last = backlog[0].id - 1 if backlog else newest_id
        else:
            last = query.after
            backlog = await _after(context, query, last, None)
        await response.prepare(request)
        # The cursor line tells the client where the stream stands even before any record
        # arrives, so that it can resume after a reconnect with nothing skipped.
        await response.write(json.dumps({"cursor": last}).encode() + b"\n")
        last = await _send(response, backlog, last)
        await _stream(response, context, query, subscription, last)
    except ConnectionError:
        pass  # the follower went away
    finally:
        hub.unsubscribe(subscription)
    return response


async def _stream(response: web.StreamResponse, context: Context, query: LogQuery,
                  subscription: Subscription, last: int) -> None:
    while not subscription.closed:
        if subscription.lagged:
            # Resume first, then read: the same hand-over as at the start of the stream.
            subscription.resume()
            last = await _send(response, await _after(context, query, last, None), last)
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
