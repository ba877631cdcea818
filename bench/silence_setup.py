"""Creating the benchmark's silences through a running collector's API.

`POST /v1/silences` one body at a time over one kept-alive connection, as a script
would; each answer must be 201 (the collector writes its silences file before it answers,
so the time taken is the API's real cost).
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit


class SilenceSetupError(RuntimeError):
    """The collector refused a silence."""


def post_silences(base_url: str, bodies: Sequence[dict[str, Any]],
                  token: str | None = None, timeout: float = 30.0) -> float:
    """POST each body to `base_url`/v1/silences; the seconds it took. Raises
    SilenceSetupError on an answer other than 201."""
    address = urlsplit(base_url)
    connection = http.client.HTTPConnection(address.hostname or "127.0.0.1",
                                            address.port, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    started = time.monotonic()
    try:
        for body in bodies:
            connection.request("POST", "/v1/silences", json.dumps(body), headers)
            answer = connection.getresponse()
            text = answer.read()
            if answer.status != 201:
                raise SilenceSetupError(f"POST /v1/silences answered {answer.status}: "
                                        f"{text[:200]!r} for {body}")
    finally:
        connection.close()
    return time.monotonic() - started
