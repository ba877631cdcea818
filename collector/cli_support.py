"""What every `collector` command shares: the event loop runner and the client options.

Kept apart from `collector.cli` so that the alarms commands can use them without
importing the command line that includes them.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Coroutine
from typing import Any


def run_async(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run on uvloop where it is installed, else on asyncio's own loop."""
    try:
        import uvloop  # noqa: PLC0415 - optional at run time
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """--url and --token, shared by every command that talks to a running collector."""
    parser.add_argument("--url", help="collector API (default $COLLECTOR_URL or "
                        "http://127.0.0.1:8080)")
    parser.add_argument("--token", help="bearer token (default $COLLECTOR_TOKEN)")
