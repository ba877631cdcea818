"""The replicated alarm outbox (alarms.outbox.kv) on real nats-server processes: R1 (one
server) and R3 (three clustered), two KvOutbox instances ("nodes") on one bucket.

Printed per setup: notifications added per second (batches of `--batch`, every create
acknowledged), compare-and-set saves per second (the delivery steps), how long until an
add on node A shows in node B's mirror (p50/p99/max over `--probes` probes), how long a
fresh instance takes to open a bucket of that many entries, and the mirror's memory per
entry (tracemalloc). Servers are tests/support/nats.py's, on 127.0.0.1 only.

    .venv/bin/python bench/kv_outbox.py
    .venv/bin/python bench/kv_outbox.py --count 2000 --probes 50
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alarms.notification import Notification, new_id
from alarms.outbox.kv import BUCKET, KvOutbox
from bench.harness import env_note, percentile
from collector.cluster.connection import Connection
from collector.config.model import ClusterConfig
from tests.support.nats import NatsCluster


def fired(n: int) -> Notification:
    """A notification as the engine makes them (a 500 line and some context)."""
    return Notification(id=new_id(), alarm="hook", plugin="webhook", app="shop",
                        source="web.1", condition="log",
                        message=f"GET /items/{n} (HTTP/1.1 500)",
                        facts={"regex": ["5\\d\\d"]}, first_seen=1.0 + n,
                        last_seen=1.0 + n, created_at=1.0 + n,
                        context=[f"context line {i} " + "x" * 80 for i in range(5)])


async def run_setup(name: str, size: int, args: argparse.Namespace) -> None:
    """One setup: `size` servers, the bucket at `size` replicas."""
    with tempfile.TemporaryDirectory(prefix="kvoutbox-bench-") as tmp:
        cluster = await asyncio.to_thread(NatsCluster(Path(tmp), size).start)
        connections = []
        try:
            for node in ("a", "b"):
                connection = Connection(ClusterConfig(nats=tuple(cluster.urls), node=node,
                                                      replicas=size))
                await connection.open()
                connections.append(connection)
            a = KvOutbox(lambda: connections[0].bucket(BUCKET))
            b = KvOutbox(lambda: connections[1].bucket(BUCKET))
            await a.open()
            await b.open()

            started = time.perf_counter()
            for first in range(0, args.count, args.batch):
                await a.add([fired(n) for n in range(first, min(args.count,
                                                                first + args.batch))],
                            time.time())
            adds = args.count / (time.perf_counter() - started)

            entries = await a.recent(limit=args.count)
            for entry in entries:
                entry.state, entry.attempts, entry.outcome = "delivered", 1, "HTTP 204"
            started = time.perf_counter()
            for first in range(0, len(entries), args.batch):
                await a.save_many(entries[first:first + args.batch])
            saves = len(entries) / (time.perf_counter() - started)

            seen: list[float] = []
            for n in range(args.probes):
                probe = fired(args.count + n)
                started = time.perf_counter()
                await a.add([probe], time.time())
                while not any(e.id == probe.id for e in await b.recent(limit=1)):
                    if time.perf_counter() - started > 10:
                        raise SystemExit(f"{name}: an add did not reach B within 10 s")
                    await asyncio.sleep(0.001)
                seen.append((time.perf_counter() - started) * 1000)

            tracemalloc.start()
            c = KvOutbox(lambda: connections[1].bucket(BUCKET))
            started = time.perf_counter()
            await c.open()
            opened = time.perf_counter() - started
            held, _ = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            per_entry = held / max(1, len(c))
            for outbox in (a, b, c):
                await outbox.close()
            print(f"{name:>3} {adds:>9.0f} {saves:>9.0f} {percentile(seen, 0.5):>8.1f} "
                  f"{percentile(seen, 0.99):>8.1f} {max(seen):>8.1f} {len(c):>8} "
                  f"{opened:>7.2f} {per_entry / 1024:>8.1f}", flush=True)
        finally:
            for connection in connections:
                await connection.close()
            await asyncio.to_thread(cluster.stop)


async def main_async(args: argparse.Namespace) -> int:
    """Both setups, one table."""
    print(env_note())
    print(f"{'':>3} {'adds/s':>9} {'saves/s':>9} {'B p50 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8} {'entries':>8} {'open s':>7} {'KiB/entry':>8}")
    await run_setup("R1", 1, args)
    await run_setup("R3", 3, args)
    return 0


def main() -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000,
                        help="notifications added, then saved (default 5000)")
    parser.add_argument("--batch", type=int, default=100,
                        help="notifications per add / save_many call (default 100)")
    parser.add_argument("--probes", type=int, default=200,
                        help="adds timed until B's mirror shows them (default 200)")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
