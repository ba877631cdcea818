"""`curl:URL;opt=value...`: uWSGI's alarm_curl, on the collector.

An smtp:// or smtps:// URL sends mail (the `mail:` notifier, same options); an http:// or
https:// URL POSTs the message as alarm_curl does (`method` to change the verb,
`auth_user`/`auth_pass` for basic auth, `timeout`, `conn_timeout`, `ssl_insecure`).
"""

from __future__ import annotations

import base64

import aiohttp

from alarms.notification import Notification
from alarms.notifiers import http, mail
from alarms.options import Target, parse_target, seconds_error

OPTIONS = mail.OPTIONS | {"method", "url"}


def check(arg: str) -> str | None:
    """What is wrong with `curl:ARG`, or None."""
    target = parse_target(arg, OPTIONS)
    if isinstance(target, str):
        return target
    if target.url.startswith(("smtp://", "smtps://")):
        parsed = mail.parse_mail(target)
        return parsed if isinstance(parsed, str) else None
    if not target.url.startswith(("http://", "https://")):
        return f"curl: expected an http(s):// or smtp(s):// URL, got {target.url!r}"
    return seconds_error(target.options)


def parse(arg: str) -> Target:
    """The checked target (call `check` first)."""
    target = parse_target(arg, OPTIONS)
    assert not isinstance(target, str)
    return target


class CurlHttpNotifier:
    """POSTs the plain message, as alarm_curl does for HTTP URLs."""

    plugin = "curl"

    def __init__(self, target: Target, session: aiohttp.ClientSession,
                 default_timeout: float) -> None:
        options = target.options
        self._url = target.url
        self._session = session
        self._method = options.get("method", "POST").upper()
        self._timeout = float(options.get("timeout") or default_timeout)
        self._connect = float(options["conn_timeout"]) if options.get("conn_timeout") else None
        self._verify = "ssl_insecure" not in options
        user = options.get("auth_user")
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if user:
            # Built here rather than with aiohttp's BasicAuth, which aiohttp deprecates.
            token = base64.b64encode(f"{user}:{options.get('auth_pass', '')}".encode())
            self._headers["Authorization"] = "Basic " + token.decode()

    async def send(self, notification: Notification) -> str:
        """One request."""
        return await http.post(
            self._session, self._url, notification.text().encode(),
            headers={**self._headers, "X-Alarm-Id": notification.id},
            seconds=self._timeout, connect_timeout=self._connect, method=self._method,
            verify=self._verify)
