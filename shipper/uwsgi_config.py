"""`shipper uwsgi-config`: the uwsgi.ini lines for each shipping mode. Pure text.

Secrets never appear in the output: uWSGI expands `$(LOG_SECRET)` from the environment
when it reads the file (logcrypto), and the sidecar reads `$LOG_KEY` itself (native), so
the key is neither in the file nor on a command line that `ps` or uWSGI's own
`spawning "..."` log line would show.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from shipper.errors import UsageError

MODES = ("crypto", "socket", "native")
CRYPTO_ALGOS = ("aes-128-cbc", "aes-192-cbc", "aes-256-cbc")
DEFAULT_SIDECAR_PORT = 1719

_APP = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_VAR = r"\$\([A-Za-z_][A-Za-z0-9_]*\)"
_SOURCE = re.compile(rf"(?:[A-Za-z0-9_.@\-]|{_VAR})+")
_ADDRESS = re.compile(rf"(?:{_VAR}|\[[0-9A-Fa-f:.]+\]:\d+|[A-Za-z0-9_.\-]+:(?:\d+|{_VAR}))")


@dataclass(frozen=True)
class ShipOptions:
    """What the lines are made from."""

    collector: str
    app: str
    mode: str
    source: str = "$(DYNO)"
    algo: str = "aes-256-cbc"
    secret_var: str = "LOG_SECRET"  # noqa: S105 - the variable's name, not its value
    listen: str = f"127.0.0.1:{DEFAULT_SIDECAR_PORT}"
    shipper: str = "shipper"


def check(options: ShipOptions) -> None:
    """Refuse names and addresses that would break uWSGI's option syntax."""
    if options.mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}")
    if not _ADDRESS.fullmatch(options.collector):
        raise UsageError(f"--collector must be HOST:PORT or $(VAR); got {options.collector!r}")
    if not _APP.fullmatch(options.app):
        raise UsageError(f"--app must be letters, digits, '.', '_' or '-'; got {options.app!r}")
    if not _SOURCE.fullmatch(options.source):
        raise UsageError("--source must be letters, digits, '.', '_', '-', '@' or $(VAR); "
                          f"got {options.source!r}")
    if options.algo not in CRYPTO_ALGOS:
        raise UsageError(f"--algo must be one of {', '.join(CRYPTO_ALGOS)} (uWSGI on "
                          "OpenSSL 3 refuses bf-cbc)")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", options.secret_var):
        raise UsageError(f"--secret-var must be an environment variable name; "
                          f"got {options.secret_var!r}")
    if not re.fullmatch(r"127\.\d+\.\d+\.\d+:\d+|\[::1\]:\d+", options.listen):
        raise UsageError(f"--listen must be a loopback HOST:PORT; got {options.listen!r}")


def uwsgi_lines(options: ShipOptions) -> list[str]:
    """The lines to paste into the `[uwsgi]` section of a uwsgi.ini."""
    check(options)
    prefix = f"{options.app}/{options.source}"
    # Without log-master uWSGI's own start-up lines (among them the worker spawn lines the
    # collector learns worker numbers from) never reach a logger.
    head = ["log-master = true"]
    if options.mode == "crypto":
        return [
            f"; uwsgi-logship: logs to {options.collector} with uWSGI's logcrypto; uWSGI "
            f"reads the secret from ${options.secret_var}",
            *head,
            f"logger = crypto:addr={options.collector},algo={options.algo},"
            f"secret=$({options.secret_var}),prefix={prefix}",
        ]
    if options.mode == "socket":
        return [
            f"; uwsgi-logship: plain-text logs to {options.collector} (loopback or a private "
            "network only)",
            *head,
            f"logger = socket:{options.collector},{prefix}:",
        ]
    command = " ".join(shlex.quote(part) for part in (
        options.shipper, "run", "--listen", options.listen, "--collector", options.collector))
    wait = " ".join(shlex.quote(part) for part in (
        options.shipper, "ready", "--listen", options.listen))
    return [
        f"; uwsgi-logship: uWSGI hands its lines to the shipper sidecar on {options.listen}; "
        f"it batches, encrypts (key from $LOG_KEY) and sends them to {options.collector}",
        "; uWSGI starts the sidecar, restarts it if it dies and stops it when uWSGI stops",
        *head,
        f"logger = socket:{options.listen},{prefix}:",
        f"attach-daemon = {command}",
        "; uWSGI runs this after starting its daemons and before reading its own start-up "
        "lines: they wait for the sidecar",
        f"hook-master-start = exec:{wait}",
    ]
