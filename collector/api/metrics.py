"""GET /metrics: Prometheus text for listeners, the kernel's drops, the store and more."""

from __future__ import annotations

from aiohttp import web

from collector.listen.kernel import udp_drops
from collector.metrics import Family, render
from collector.server.context import CONTEXT, Context

# What a listener's decoder holds for its senders (`held()` kinds), as gauges.
_HELD = {
    "streams": ("collector_native_streams", "Native streams tracked (bound: max-streams)."),
    "pending_datagrams": ("collector_native_pending_datagrams",
                          "Native datagrams held above a gap, over all streams "
                          "(bounds: max-pending, max-stream-pending)."),
    "partial_bytes": ("collector_native_partial_bytes",
                      "Bytes of long lines being joined, bookkeeping included "
                      "(bound: 16 MiB per listener)."),
}


def collect(context: Context) -> list[Family]:
    """Every metric family of the running server."""
    received = Family("collector_datagrams_received_total", "counter",
                      "Datagrams read from each listener's socket.")
    accepted = Family("collector_datagrams_accepted_total", "counter",
                      "Datagrams decoded and stored.")
    dropped = Family("collector_datagrams_dropped_total", "counter",
                     "Datagrams dropped, by listener and reason.")
    lines_received = Family("collector_lines_received_total", "counter",
                            "Log lines decoded from accepted datagrams.")
    lines = Family("collector_lines_accepted_total", "counter", "Log lines accepted.")
    lines_dropped = Family("collector_lines_dropped_total", "counter",
                           "Decoded lines dropped after decoding, by reason.")
    escaped = Family("collector_lines_escaped_total", "counter",
                     "Accepted lines that held bytes other than UTF-8 (kept, escaped).")
    kernel = Family("collector_udp_kernel_drops_total", "counter",
                    "Datagrams the kernel dropped before the collector read them "
                    "(receive buffer full), from /proc/net/udp.")
    lost = Family("collector_lines_lost_total", "counter",
                  "Lines lost before reaching the collector, as the wire format reports "
                  "them (sequence gaps, sender-side drops), by app and source.")
    rcvbuf = Family("collector_udp_receive_buffer_bytes", "gauge",
                    "The socket receive buffer the kernel granted (getsockopt SO_RCVBUF: "
                    "twice what was asked).")
    rcvbuf_configured = Family("collector_udp_receive_buffer_configured_bytes", "gauge",
                               "The receive buffer configured (rcvbuf).")
    evictions = Family("collector_listener_evictions_total", "counter",
                       "State senders made a listener hold, given up to stay within a "
                       "bound, by reason.")
    held = {kind: Family(name, "gauge", text) for kind, (name, text) in _HELD.items()}
    inodes = {listener: listener.inode() for listener in context.listeners}
    kernel_drops = udp_drops(i for i in inodes.values() if i is not None)
    for listener in context.listeners:
        name = listener.config.name
        stats = listener.stats
        received.add(stats.datagrams, listener=name, format=listener.config.format)
        accepted.add(stats.datagrams_accepted, listener=name)
        for reason, count in sorted(stats.dropped.items()):
            dropped.add(count, listener=name, reason=reason)
        for reason, count in sorted(stats.lines_dropped.items()):
            lines_dropped.add(count, listener=name, reason=reason)
        lines.add(stats.lines, listener=name)
        lines_received.add(stats.lines + sum(stats.lines_dropped.values()), listener=name)
        escaped.add(stats.escaped, listener=name)
        rcvbuf.add(listener.rcvbuf, listener=name)
        rcvbuf_configured.add(listener.config.rcvbuf, listener=name)
        for reason, count in sorted(listener.evictions().items()):
            evictions.add(count, listener=name, reason=reason)
        for kind, value in listener.held().items():
            if kind in held:
                held[kind].add(value, listener=name)
        for (app, source), count in sorted(stats.lost.items()):
            lost.add(count, listener=name, app=app, source=source)
        inode = inodes[listener]
        if inode is not None and inode in kernel_drops:
            kernel.add(kernel_drops[inode], listener=name)
    store = context.store.stats()
    families = [
        received, accepted, dropped, lines_received, lines, lines_dropped, escaped, lost, kernel,
        rcvbuf, rcvbuf_configured, evictions, *held.values(),
        Family("collector_store_queue_depth", "gauge",
               "Lines waiting for the store's writer.").add(store.queued),
        Family("collector_store_lines_committed_total", "counter",
               "Lines committed to the store.").add(store.committed),
        Family("collector_store_batches_total", "counter",
               "Batches (transactions) committed.").add(store.batches),
        Family("collector_store_lines_dropped_total", "counter",
               "Lines refused because the store's queue was full.").add(store.dropped),
        Family("collector_store_write_failures_total", "counter",
               "Failed attempts to commit a batch (each is retried; nothing is "
               "dropped for it).").add(store.write_failures),
        Family("collector_store_writes_failing", "gauge",
               "1 while the store's commits fail (from a failure to the next commit)."
               ).add(int(store.writes_failing)),
        Family("collector_store_last_write_failure_timestamp_seconds", "gauge",
               "Unix time of the latest failed commit (0: none yet).").add(
            store.last_write_failure),
        Family("collector_store_writer_restarts_total", "counter",
               "New store writer processes started after one died.").add(
            store.writer_restarts),
        Family("collector_store_partitions", "gauge", "Partition files.").add(
            store.partitions),
        Family("collector_store_bytes", "gauge", "Bytes on disk in partitions.").add(
            store.bytes_on_disk),
        context.store.batch_seconds.family("collector_store_batch_seconds",
                                           "Time to write and commit one batch."),
        Family("collector_followers", "gauge", "Clients following the live stream.").add(
            context.hub.followers),
        Family("collector_followers_lagged_total", "counter",
               "Times a follower fell too far behind the live stream and went back to "
               "reading the store.").add(context.hub.lagged_total),
        Family("collector_consumer_errors_total", "counter",
               "Records a consumer (alarms, fan-out) failed on.").add(
            context.ingest.consumer_errors),
        _reloads(context),
    ]
    for component in context.components:
        families.extend(component.metric_families())
    return families


def _reloads(context: Context) -> Family:
    family = Family("collector_config_reloads_total", "counter",
                    "Config reloads (SIGHUP) by result: ok, or failed (the running config "
                    "was kept).")
    for result in ("ok", "failed"):
        family.add(context.reloads[result], result=result)
    return family


async def get_metrics(request: web.Request) -> web.Response:
    """Prometheus text format."""
    text = render(collect(request.app[CONTEXT]))
    return web.Response(text=text, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})
