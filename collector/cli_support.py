"""What every `collector` command that talks to a running collector shares: its options.

Kept apart from `collector.cli` so that the alarms commands can use them without
importing the command line that includes them.
"""

from __future__ import annotations

import argparse


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """--url and --token, shared by every command that talks to a running collector."""
    parser.add_argument("--url", help="collector API (default $COLLECTOR_URL or "
                        "http://127.0.0.1:8080)")
    parser.add_argument("--token", help="bearer token (default $COLLECTOR_TOKEN)")
