"""`alertmanager:http://am:9093[;opt=...]`: an alarm as one alert posted to a Prometheus
Alertmanager's `/api/v2/alerts`.

The alert (`alert()`, pure):
- labels `alertname` (the alarm's name), `app`, `source`, `condition` and `severity`
  (option `severity`, default `critical`); a label whose value is empty is left out, as
  Alertmanager treats an empty label as absent;
- annotations `summary` (`<condition> in <app>/<source>: <first line>`, at most
  `SUMMARY_SIZE` characters) and `message` (the log line or the whole backtrace, with a
  note of lines alarm-freq held back, cut to `message_size` characters, default
  `MESSAGE_SIZE`, with a note saying how long it was);
- `startsAt`: when the condition first matched; `endsAt`: `resolve_timeout` (default 5m,
  Alertmanager's own default) after the later of the last match and this attempt, so an
  alert delivered late by retries (Alertmanager down) still arrives firing. A `resolved`
  notification posts the same alert (the same labels: Alertmanager's identity of an
  alert is its label set) with `endsAt` = when it resolved, so Alertmanager shows it
  resolved at once. An alert without a state (a log line, a segfault) is resolved by
  Alertmanager when its `endsAt` passes;
- re-posts: a stateful alert still firing (alarms.lifecycle) is posted again every
  `repost` (option, a duration of at least `MIN_REPOST` seconds; default half of
  `resolve_timeout`), before its `endsAt` passes, until it resolves. Each re-post is a
  notification like any other (through the outbox), with `facts.repeat` true;
- an alarm-rate's alert is the rule's, across sources: its `source` label is left out
  (the summary names the source of the line that crossed the threshold), so that its
  firing, re-posted and resolved alerts carry the same labels;
- `generatorURL`: the collector's `/v1/logs` for this app and source around the event,
  under option `url` (the address people reach the collector's API at), else the API's
  own listen address.

Delivered as the webhook is, through the outbox: 408, 425, 429 and 5xx and connection
errors are retried, any other 4xx is permanent (a dead letter).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp

from alarms.notification import RESOLVED, Notification
from alarms.notifiers import http
from alarms.options import Target, parse_target, seconds_error
from collector.timespec import duration_seconds

OPTIONS = frozenset({"severity", "resolve_timeout", "repost", "url", "message_size",
                     "timeout", "conn_timeout", "ssl_insecure"})
DEFAULT_SEVERITY = "critical"
DEFAULT_RESOLVE = 300.0
# Re-posts no more often than this, whatever resolve_timeout says.
MIN_REPOST = 1.0
MESSAGE_SIZE = 4096
MAX_MESSAGE_SIZE = 1 << 20
SUMMARY_SIZE = 200
API_PATH = "/api/v2/alerts"
# generatorURL's window: this much before the first match and after the last.
WINDOW_BEFORE = 60.0
WINDOW_AFTER = 5.0


def _iso(seconds: float) -> str:
    """RFC 3339 in UTC with milliseconds, as Alertmanager's API takes it."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def cut(text: str, size: int) -> str:
    """`text` if at most `size` characters, else its start and a note of its length,
    `size` characters in all (the note alone when `size` is too small for both)."""
    if len(text) <= size:
        return text
    note = f"\n[cut: {len(text)} characters in all]"
    return text[:max(0, size - len(note))] + note[-size:]


def alerts_url(url: str) -> str:
    """Where to POST: `url` + `/api/v2/alerts`, unless `url` ends with that already."""
    base = url.rstrip("/")
    return base if base.endswith(API_PATH) else base + API_PATH


def generator_url(base: str, notification: Notification) -> str:
    """The collector's `/v1/logs` for the notification's app and source around its lines."""
    first = notification.first_seen or notification.created_at
    last = max(notification.last_seen, first)
    query = {"app": notification.app}
    if notification.source:
        query["source"] = notification.source
    query["since"] = f"{first - WINDOW_BEFORE:.3f}"
    query["until"] = f"{last + WINDOW_AFTER:.3f}"
    return f"{base.rstrip('/')}/v1/logs?{urlencode(query)}"


def alert(notification: Notification, *, severity: str = DEFAULT_SEVERITY,
          resolve: float = DEFAULT_RESOLVE, base_url: str, message_size: int = MESSAGE_SIZE,
          now: float) -> dict[str, Any]:
    """The one alert (see the module docstring) for `notification`, posted at `now`."""
    starts = notification.first_seen or notification.created_at or now
    if notification.status == RESOLVED:
        ends = max(notification.last_seen, starts)
    else:
        ends = max(notification.last_seen, starts, now) + resolve
    source = "" if notification.condition == "rate" else notification.source
    labels = {"alertname": notification.alarm, "app": notification.app,
              "source": source, "condition": notification.condition,
              "severity": severity}
    text = notification.text()
    first_line = text.split("\n", 1)[0]
    where = f"{notification.app}/{notification.source}" if notification.source \
        else notification.app
    state = "resolved: " if notification.status == RESOLVED else ""
    summary = cut(f"{state}{notification.condition} in {where}: {first_line}", SUMMARY_SIZE)
    return {
        "labels": {name: value for name, value in labels.items() if value},
        "annotations": {"summary": summary, "message": cut(text, message_size)},
        "startsAt": _iso(starts),
        "endsAt": _iso(ends),
        "generatorURL": generator_url(base_url, notification),
    }


def _problem(target: Target) -> str | None:
    options = target.options
    if not target.url.startswith(("http://", "https://")):
        return f"alertmanager: expected an http(s):// URL, got {target.url!r}"
    if "severity" in options and not options["severity"].strip():
        return "severity: must not be empty"
    resolve = options.get("resolve_timeout")
    if resolve is not None:
        seconds = duration_seconds(resolve)
        if seconds is None or seconds <= 0:
            return f"resolve_timeout: expected a duration such as 5m or 300, got {resolve!r}"
    size = options.get("message_size")
    if size is not None and not (size.isdigit() and 1 <= int(size) <= MAX_MESSAGE_SIZE):
        return (f"message_size: expected a number of characters from 1 to "
                f"{MAX_MESSAGE_SIZE}, got {size!r}")
    repost = options.get("repost")
    if repost is not None:
        seconds = duration_seconds(repost)
        if seconds is None or seconds < MIN_REPOST:
            return (f"repost: expected a duration of at least {MIN_REPOST:g} s such as 2m, "
                    f"got {repost!r}")
    url = options.get("url")
    if url is not None and not url.startswith(("http://", "https://")):
        return f"url: expected the collector's http(s):// address, got {url!r}"
    return seconds_error(options)


def repost_every(arg: str) -> float:
    """Seconds between posts of a stateful alert still firing, for `alertmanager:ARG`
    (checked already): option `repost`, else half of `resolve_timeout`, at least
    MIN_REPOST."""
    target = parse_target(arg, OPTIONS)
    if isinstance(target, str):
        return DEFAULT_RESOLVE / 2
    repost = duration_seconds(target.options.get("repost", ""))
    if repost:
        return max(MIN_REPOST, repost)
    resolve = duration_seconds(target.options.get("resolve_timeout", "")) or DEFAULT_RESOLVE
    return max(MIN_REPOST, resolve / 2)


def check(arg: str) -> str | None:
    """What is wrong with `alertmanager:ARG`, or None."""
    target = parse_target(arg, OPTIONS)
    if isinstance(target, str):
        return target
    return _problem(target)


class AlertmanagerNotifier:
    """POSTs `[alert(...)]` to Alertmanager's `/api/v2/alerts`."""

    plugin = "alertmanager"

    def __init__(self, arg: str, session: aiohttp.ClientSession, default_timeout: float,
                 api_url: str) -> None:
        target = parse_target(arg, OPTIONS)
        assert isinstance(target, Target)
        options = target.options
        self._url = alerts_url(target.url)
        self._session = session
        self._severity = options.get("severity", DEFAULT_SEVERITY).strip()
        resolve = duration_seconds(options.get("resolve_timeout", ""))
        self._resolve = resolve if resolve else DEFAULT_RESOLVE
        self._message_size = int(options.get("message_size") or MESSAGE_SIZE)
        self._base = options.get("url") or api_url
        self._timeout = float(options.get("timeout") or default_timeout)
        self._connect = float(options["conn_timeout"]) if options.get("conn_timeout") else None
        self._verify = "ssl_insecure" not in options

    async def send(self, notification: Notification) -> str:
        """One POST: one alert, or one per member of a grouped notification."""
        now = time.time()
        body = json.dumps([alert(part, severity=self._severity, resolve=self._resolve,
                                 base_url=self._base, message_size=self._message_size,
                                 now=now) for part in notification.parts()],
                          ensure_ascii=False).encode()
        return await http.post(self._session, self._url, body,
                               headers={"Content-Type": "application/json"},
                               seconds=self._timeout, connect_timeout=self._connect,
                               verify=self._verify)
