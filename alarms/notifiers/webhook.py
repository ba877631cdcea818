"""`webhook:URL;secret=whsec_...;timeout=10`: a signed JSON document.

Signed per the Standard Webhooks scheme when a secret is set: `webhook-id` (the
notification's id, the same on every retry so a receiver can drop duplicates),
`webhook-timestamp` (Unix seconds of this attempt) and `webhook-signature`:
`v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), the key being the base64
after `whsec_`.

A grouped notification (alarm-group-wait) adds `members`: each notification it carries
(id, source, message, count, first_seen, last_seen, status, alert); its id, derived from
the members' ids, is the webhook-id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time

import aiohttp

from alarms.notification import Notification
from alarms.notifiers import http
from alarms.options import Target, parse_target, seconds_error

OPTIONS = frozenset({"secret", "timeout", "conn_timeout", "ssl_insecure"})


def secret_key(secret: str) -> bytes | str:
    """The HMAC key of a `whsec_<base64>` secret, or what is wrong with it."""
    if not secret.startswith("whsec_"):
        return "secret must be whsec_<base64> (Standard Webhooks)"
    try:
        key = base64.b64decode(secret[6:], validate=True)
    except (binascii.Error, ValueError):
        return "secret: the part after whsec_ is not base64"
    return key if key else "secret is empty"


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def check(arg: str) -> str | None:
    """What is wrong with `webhook:ARG`, or None."""
    target = parse_target(arg, OPTIONS)
    if isinstance(target, str):
        return target
    if not target.url.startswith(("http://", "https://")):
        return f"webhook: expected an http(s):// URL, got {target.url!r}"
    if "secret" in target.options:
        key = secret_key(target.options["secret"])
        if isinstance(key, str):
            return key
    return seconds_error(target.options)


class WebhookNotifier:
    """POSTs `Notification.payload()` as JSON."""

    plugin = "webhook"

    def __init__(self, arg: str, session: aiohttp.ClientSession, default_timeout: float
                 ) -> None:
        target = parse_target(arg, OPTIONS)
        assert isinstance(target, Target)
        options = target.options
        self._url = target.url
        self._session = session
        key = secret_key(options["secret"]) if "secret" in options else None
        self._key = key if isinstance(key, bytes) else None
        self._timeout = float(options.get("timeout") or default_timeout)
        self._connect = float(options["conn_timeout"]) if options.get("conn_timeout") else None
        self._verify = "ssl_insecure" not in options

    async def send(self, notification: Notification) -> str:
        """One signed POST."""
        body = json.dumps(notification.payload(), ensure_ascii=False).encode()
        timestamp = int(time.time())
        headers = {"Content-Type": "application/json", "webhook-id": notification.id,
                   "webhook-timestamp": str(timestamp)}
        if self._key is not None:
            headers["webhook-signature"] = sign(self._key, notification.id, timestamp, body)
        return await http.post(self._session, self._url, body, headers=headers,
                               seconds=self._timeout, connect_timeout=self._connect,
                               verify=self._verify)
