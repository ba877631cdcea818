"""A real HTTP receiver on 127.0.0.1 for webhook and curl alarms.

It records every request (headers, body, arrival time, the status it answered) and can be
stopped and started again on the same port, answer an error status, be slow, redirect
some paths (301/302/303/307/308 with a Location), or speak TLS. The
Standard Webhooks signature is checked here independently of the collector's code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.net import free_port


@dataclass(frozen=True)
class Received:
    """One request as it arrived."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    arrived: float
    status: int  # what the receiver answered

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        """The `webhook-id` header ("" without one)."""
        return self.headers.get("webhook-id", "")


def verify_signature(secret: str, request: Received) -> bool:
    """Standard Webhooks: `webhook-signature` holds `v1,<base64 HMAC-SHA256>` of
    `{webhook-id}.{webhook-timestamp}.{body}` under the base64 key after `whsec_`."""
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = (f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}."
              .encode() + request.body)
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [part.split(",", 1)[1] for part in
               request.headers.get("webhook-signature", "").split() if part.startswith("v1,")]
    return any(hmac.compare_digest(expected, sig) for sig in offered)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        """Record, maybe wait, answer."""
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        arrived = time.time()
        status, delay = receiver.status, receiver.delay
        location = None
        if self.path in receiver.redirects:
            status, location = receiver.redirects[self.path]
        if delay:
            time.sleep(delay)
        payload = b"ok\n" if status < 400 else b"failing on purpose\n"
        try:
            self.send_response(status)
            if location is not None:
                self.send_header("Location", location)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            pass  # the client stopped waiting (a slow answer after its timeout)
        finally:
            receiver.record(Received(self.command, self.path,
                                     {k.lower(): v for k, v in self.headers.items()}, body,
                                     arrived, status))

    do_PUT = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: WebhookServer


class WebhookServer:
    """An HTTP receiver on 127.0.0.1:`port` (a free one by default), started on demand.

    `status` (default 200) and `delay` (seconds before answering) apply to the requests
    that arrive after they are set. A request is recorded once its answer is written (or
    could not be: a slow answer to a client that stopped waiting is recorded too).
    """

    def __init__(self, port: int | None = None, status: int = 200, delay: float = 0.0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.port = port or free_port()
        self.status = status
        self.delay = delay
        self.tls = tls
        # Path -> (status, Location): those paths answer a redirect instead.
        self.redirects: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()
        self._requests: list[Received] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether it accepts connections now."""
        return self._server is not None

    def start(self) -> WebhookServer:
        """Listen on the port (again) and serve in a thread."""
        assert self._server is None, "already running"
        server = _Server(("127.0.0.1", self.port), _Handler)
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        server.receiver = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={
            "poll_interval": 0.05}, name=f"webhook-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (the port is closed: connections are refused)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def record(self, request: Received) -> None:
        """Keep one request (called from the handler threads)."""
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[Received]:
        """Every request so far, in arrival order of their answers."""
        with self._lock:
            return list(self._requests)

    def accepted(self) -> list[Received]:
        """The requests answered with 2xx."""
        return [r for r in self.requests if 200 <= r.status < 300]

    def accepted_ids(self) -> Counter[str]:
        """How many times each webhook-id was answered with 2xx."""
        return Counter(r.webhook_id for r in self.accepted())
