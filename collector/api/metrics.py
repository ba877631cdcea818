"""GET /metrics: Prometheus text for listeners, the kernel's drops, the store and more."""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from collector.listen.kernel import udp_drops
from collector.listen.receivers import ReceiverGroup, listener_inodes
from collector.metrics import Metric, counter, exposition, gauge, histogram_families
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
    "connections": ("collector_listener_connections",
                    "Connections open on a stream listener (bound: max-connections)."),
}


def collect(context: Context) -> Iterator[Metric]:
    """Every metric family of the running server."""
    received = counter("collector_datagrams_received_total",
                       "Datagrams read from each listener's socket.", ["listener", "format"])
    accepted = counter("collector_datagrams_accepted_total", "Datagrams decoded and stored.",
                       ["listener"])
    dropped = counter("collector_datagrams_dropped_total",
                      "Datagrams dropped, by listener and reason.", ["listener", "reason"])
    lines_received = counter("collector_lines_received_total",
                             "Log lines decoded from accepted datagrams.", ["listener"])
    lines = counter("collector_lines_accepted_total", "Log lines accepted.", ["listener"])
    lines_dropped = counter("collector_lines_dropped_total",
                            "Decoded lines dropped after decoding, by reason.",
                            ["listener", "reason"])
    escaped = counter("collector_lines_escaped_total",
                      "Accepted lines that held bytes other than UTF-8 (kept, escaped).",
                      ["listener"])
    kernel = counter("collector_udp_kernel_drops_total",
                     "Datagrams the kernel dropped before the collector read them "
                     "(receive buffer full), from /proc/net/udp.", ["listener"])
    lost = counter("collector_lines_lost_total",
                   "Lines lost before reaching the collector, as the wire format reports "
                   "them (sequence gaps, sender-side drops), by app and source.",
                   ["listener", "app", "source"])
    rcvbuf = gauge("collector_udp_receive_buffer_bytes",
                   "The socket receive buffer the kernel granted (getsockopt SO_RCVBUF: "
                   "twice what was asked).", ["listener"])
    rcvbuf_configured = gauge("collector_udp_receive_buffer_configured_bytes",
                              "The receive buffer configured (rcvbuf).", ["listener"])
    evictions = counter("collector_listener_evictions_total",
                        "State senders made a listener hold, given up to stay within a "
                        "bound, by reason.", ["listener", "reason"])
    held = {kind: gauge(name, text, ["listener"]) for kind, (name, text) in _HELD.items()}
    # A listener with K receivers has K sockets: its kernel drops are their sum.
    inodes = {listener: listener_inodes(listener) for listener in context.listeners}
    kernel_drops = udp_drops(i for found in inodes.values() for i in found)
    restarts = counter("collector_listener_receiver_restarts_total",
                       "Receiver processes that died and were restarted (receivers > 1).",
                       ["listener"])
    spread = counter("collector_listener_receiver_datagrams_total",
                     "Datagrams each receiver process received (receivers > 1): how the "
                     "kernel spread the sender sockets.", ["listener", "receiver"])
    for listener in context.listeners:
        name = listener.config.name
        stats = listener.stats
        received.add_metric([name, listener.config.format], stats.datagrams)
        accepted.add_metric([name], stats.datagrams_accepted)
        for reason, count in sorted(stats.dropped.items()):
            dropped.add_metric([name, reason], count)
        for reason, count in sorted(stats.lines_dropped.items()):
            lines_dropped.add_metric([name, reason], count)
        lines.add_metric([name], stats.lines)
        lines_received.add_metric([name], stats.lines + sum(stats.lines_dropped.values()))
        escaped.add_metric([name], stats.escaped)
        if listener.config.transport == "udp":  # TCP/TLS listeners have no UDP buffer
            rcvbuf.add_metric([name], listener.rcvbuf)
            rcvbuf_configured.add_metric([name], listener.config.rcvbuf)
        for reason, count in sorted(listener.evictions().items()):
            evictions.add_metric([name, reason], count)
        for kind, value in listener.held().items():
            if kind in held:
                held[kind].add_metric([name], value)
        for (app, source), count in sorted(stats.lost.items()):
            lost.add_metric([name, app, source], count)
        found = [kernel_drops[i] for i in inodes[listener] if i in kernel_drops]
        if found:
            kernel.add_metric([name], sum(found))
        if isinstance(listener, ReceiverGroup):
            restarts.add_metric([name], listener.restarts)
            for index, count in enumerate(listener.spread()):
                spread.add_metric([name, str(index)], count)
    yield from (received, accepted, dropped, lines_received, lines, lines_dropped, escaped,
                lost, kernel, rcvbuf, rcvbuf_configured, evictions, *held.values(), restarts,
                spread)
    store = context.store.stats()
    singles: tuple[tuple[CounterMetricFamily | GaugeMetricFamily, float], ...] = (
        (gauge("collector_store_queue_depth", "Lines waiting for the store's writer."),
         store.queued),
        (counter("collector_store_lines_committed_total", "Lines committed to the store."),
         store.committed),
        (counter("collector_store_batches_total", "Batches (transactions) committed."),
         store.batches),
        (counter("collector_store_lines_dropped_total",
                 "Lines refused because the store's queue was full."), store.dropped),
        (counter("collector_store_write_failures_total",
                 "Failed attempts to commit a batch (each is retried; nothing is dropped "
                 "for it)."), store.write_failures),
        (gauge("collector_store_writes_failing",
               "1 while the store's commits fail (from a failure to the next commit)."),
         int(store.writes_failing)),
        (gauge("collector_store_last_write_failure_timestamp_seconds",
               "Unix time of the latest failed commit (0: none yet)."),
         store.last_write_failure),
        (counter("collector_store_writer_restarts_total",
                 "New store writer processes started after one died."),
         store.writer_restarts),
        (gauge("collector_store_partitions", "Partition files."), store.partitions),
        (gauge("collector_store_bytes", "Bytes on disk in partitions."), store.bytes_on_disk),
        (gauge("collector_followers", "Clients following the live stream."),
         context.hub.followers),
        (counter("collector_followers_lagged_total",
                 "Times a follower fell too far behind the live stream and went back to "
                 "reading the store."), context.hub.lagged_total),
        (counter("collector_consumer_errors_total",
                 "Records a consumer (alarms, fan-out) failed on."),
         context.ingest.consumer_errors),
    )
    for family, figure in singles:
        family.add_metric([], figure)
        yield family
    yield from histogram_families(context.store.batch_seconds)
    reloads = counter("collector_config_reloads_total",
                      "Config reloads (SIGHUP) by result: ok, or failed (the running config "
                      "was kept).", ["result"])
    for result in ("ok", "failed"):
        reloads.add_metric([result], context.reloads[result])
    yield reloads
    for component in context.components:
        yield from component.metric_families()


async def get_metrics(request: web.Request) -> web.Response:
    """Prometheus text format."""
    context = request.app[CONTEXT]
    return web.Response(body=exposition(lambda: collect(context)),
                        content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})
