"""The baseline: a uvloop UDP receiver that only counts datagrams (`python -m bench.bare_receiver`).

Same socket set-up as the collector's listeners; whatever it cannot receive is the limit of
this machine and this kernel, not of the collector.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import uvloop

from collector.config.model import ListenerConfig
from collector.listen.udp import bind_udp


class Counter(asyncio.DatagramProtocol):
    """Counts datagrams, nothing else."""

    count = 0

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        """One more."""
        self.count += 1


async def run(port: int) -> int:
    """Count until SIGTERM; return the count."""
    loop = asyncio.get_running_loop()
    sock = bind_udp(ListenerConfig(name="bare", host="127.0.0.1", port=port, format="socket",
                                   app="bare", source="bare"))
    counter = Counter()
    transport, _ = await loop.create_datagram_endpoint(lambda: counter, sock=sock)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    transport.close()
    return counter.count


def main() -> int:
    """Print the count at SIGTERM."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        print(runner.run(run(args.port)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
