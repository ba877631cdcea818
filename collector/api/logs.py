"""GET /v1/logs: a query, or (follow=1) the backlog and then live records as NDJSON.

No line may fall between the backlog and the live stream. A follower subscribes first and,
in the same loop tick, takes the store's uncommitted records; only then does it read the
committed ones. A record is thus in the subscription (appended later), in that snapshot, or
committed before the read; one found twice is sent once, by id.

A follower's backlog can be the whole store (`after=0`), so it is never gathered: it is
read from the store one page at a time, each page written and drained before the next is
read, with the subscription paused meanwhile; the hand-over above happens where the
committed records end. A follower that falls behind live (fanout.Subscription's limit)
goes through the same catch-up. What one follower makes the collector hold is thus
bounded, whatever `after` and however slowly it reads: a page, a write buffer, and at
most the subscription's limit of live records.
"""

from __future__ import annotations

import json
from dataclasses import replace

from aiohttp import web

from collector.api.params import LogsRequest, parse_logs_params
from collector.fanout import Subscription
from collector.query import LogQuery, matcher
from collector.record import Record
from collector.server.context import CONTEXT, Context

HEARTBEAT_SECONDS = 10.0
# A follower's backlog is read this many records at a time (and a query's results too).
PAGE_SIZE = 1000
WRITE_CHUNK = 64 * 1024


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


async def _after(context: Context, query: LogQuery, after: int, limit: int) -> list[Record]:
    """Matching records after `after`, committed or not, up to `limit`."""
    pending = _uncommitted(context, query, after)
    found: list[Record] = []
    cursor = after
    while len(found) < limit:
        want = min(PAGE_SIZE, limit - len(found))
        page = await context.store.query(replace(query, after=cursor, limit=want))
        found.extend(page)
        if len(page) < want:
            break
        cursor = page[-1].id
    return _merge(found, pending)[:limit]


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
            # At most MAX_LIMIT records: read at once.
            backlog = await _newest(context, query)
            last = backlog[0].id - 1 if backlog else newest_id
        else:
            # The backlog may be the whole store: it is read page by page while the
            # subscription is paused (so live records do not pile up meanwhile), and
            # the subscription is resumed where the store's records end (_catch_up).
            subscription.pause()
            backlog = []
            last = query.after
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
            last = await _catch_up(response, context, query, subscription, last)
            continue
        batch = await subscription.take(HEARTBEAT_SECONDS)
        if batch:
            last = await _send(response, batch, last)
        elif not subscription.closed:
            # A blank line lets both ends notice a dead connection.
            await response.write(b"\n")


async def _catch_up(response: web.StreamResponse, context: Context, query: LogQuery,
                    subscription: Subscription, last: int) -> int:
    """Send every matching record after `last` from the store, one page at a time, then
    resume the paused subscription; return the new `last`.

    Backpressure: a page is read only once the previous one is written and drained, so a
    slow follower holds at most one page and one write buffer, however far behind it is.
    """
    while not subscription.closed:
        page = await _page(context, query, last)
        if len(page) < PAGE_SIZE:
            break  # near the end of what is committed: hand over (below)
        last = await _send(response, page, last)
    if subscription.closed:
        return last
    # The hand-over, as at the start of a stream: resume and take the uncommitted records
    # in one loop tick. A record appended before it is in `pending` or committed (and so
    # found by the pages below); one appended after it reaches the subscription.
    subscription.resume()
    pending = _uncommitted(context, query, last)
    position = 0
    while True:
        page = await _page(context, query, last)
        full = len(page) == PAGE_SIZE
        end = position
        while end < len(pending) and (not full or pending[end].id <= page[-1].id):
            end += 1
        last = await _send(response, _merge(page, pending[position:end]), last)
        position = end
        if not full or subscription.closed:
            return last


async def _page(context: Context, query: LogQuery, after: int) -> list[Record]:
    """The next PAGE_SIZE committed records matching `query` after `after`."""
    return await context.store.query(replace(query, after=after, limit=PAGE_SIZE))


async def _send(response: web.StreamResponse, records: list[Record], last: int) -> int:
    """Write the records after `last` in chunks of about WRITE_CHUNK bytes (each write
    waits for the socket to drain); return the last id written."""
    chunk: list[bytes] = []
    size = 0
    for record in records:
        if record.id <= last:
            continue
        line = json.dumps(record.to_json(), ensure_ascii=False).encode() + b"\n"
        chunk.append(line)
        size += len(line)
        last = record.id
        if size >= WRITE_CHUNK:
            await response.write(b"".join(chunk))
            chunk, size = [], 0
    if chunk:
        await response.write(b"".join(chunk))
    return last
