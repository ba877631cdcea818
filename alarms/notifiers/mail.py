"""`mail:URL;mail_to=a,b;mail_from=...;subject=...`: an email through an SMTP server.

Option names are alarm_curl's: `mail_to` (comma list), `mail_from`, `subject`, `ssl`
(require STARTTLS), `ssl_insecure`, `auth_user`, `auth_pass`, `timeout`, `conn_timeout`.
`smtp://HOST[:25]` speaks plain SMTP (STARTTLS when `ssl` is set), `smtps://HOST[:465]`
TLS from the first byte. The body is the alarm message, then the lines the same source
logged just before it, for context. A grouped notification (alarm-group-wait) lists each
member's source, count and message in the body, and how many in the subject. A
`resolved` notification (the condition cleared) has its subject prefixed `[RESOLVED] `
and its body says that it resolved.
"""

from __future__ import annotations

import asyncio
import email.utils
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import urlsplit

import aiosmtplib

from alarms.errors import NotifierError
from alarms.notification import RESOLVED, Notification
from alarms.options import Target, parse_target, seconds_error

OPTIONS = frozenset({"mail_to", "mail_from", "subject", "ssl", "ssl_insecure", "auth_user",
                     "auth_pass", "timeout", "conn_timeout"})


@dataclass(frozen=True)
class MailConfig:
    """Where and how to send."""

    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    verify: bool
    sender: str
    recipients: tuple[str, ...]
    subject: str
    user: str | None
    password: str | None
    timeout: float | None
    connect_timeout: float | None


def _seconds(value: str | None) -> float | None:
    return float(value) if value else None


def parse_mail(target: Target) -> MailConfig | str:
    """Check an smtp(s) target's options; the config or what is wrong."""
    url = urlsplit(target.url)
    if url.scheme not in ("smtp", "smtps") or not url.hostname:
        return f"expected smtp://HOST[:PORT] or smtps://HOST[:PORT], got {target.url!r}"
    options = target.options
    recipients = tuple(a.strip() for a in options.get("mail_to", "").split(",") if a.strip())
    if not recipients:
        return "mail_to is required (a comma-separated list)"
    problem = seconds_error(options)
    if problem:
        return problem
    try:
        port = url.port or (465 if url.scheme == "smtps" else 25)
    except ValueError as exc:
        return f"bad port in {target.url!r}: {exc}"
    timeout = _seconds(options.get("timeout"))
    connect_timeout = _seconds(options.get("conn_timeout"))
    return MailConfig(
        host=url.hostname, port=port, implicit_tls=url.scheme == "smtps",
        starttls="ssl" in options, verify="ssl_insecure" not in options,
        sender=options.get("mail_from") or f"uwsgi-alarm@{url.hostname}",
        recipients=recipients, subject=options.get("subject", "uWSGI alarm"),
        user=options.get("auth_user"), password=options.get("auth_pass"),
        timeout=timeout, connect_timeout=connect_timeout)


def check(arg: str) -> str | None:
    """What is wrong with `mail:ARG`, or None."""
    target = parse_target(arg, OPTIONS)
    if isinstance(target, str):
        return target
    parsed = parse_mail(target)
    return parsed if isinstance(parsed, str) else None


def compose(config: MailConfig, notification: Notification) -> EmailMessage:
    """The email: headers, the message, then the context lines."""
    message = EmailMessage()
    message["From"] = config.sender
    message["To"] = ", ".join(config.recipients)
    resolved = notification.status == RESOLVED
    subject = f"[RESOLVED] {config.subject}" if resolved else config.subject
    if len(notification.members) > 1:
        subject += f" ({len(notification.members)} alarms)"
    message["Subject"] = subject
    message["Date"] = email.utils.formatdate(localtime=False)
    message["Message-ID"] = f"<{notification.id}@uwsgi-alarm>"
    message["X-Alarm-Id"] = notification.id
    message["X-Alarm-Name"] = notification.alarm
    body = [notification.text(), "",
            f"alarm: {notification.alarm}  app: {notification.app}  "
            f"source: {notification.source}  condition: {notification.condition}"]
    if resolved:
        body[:0] = [f"RESOLVED: the {notification.condition} condition of alarm "
                    f"{notification.alarm} has cleared.", ""]
    if notification.context:
        body += ["", f"The last {len(notification.context)} lines of {notification.source} "
                 "before it:", *notification.context]
    message.set_content("\n".join(body) + "\n")
    return message


class MailNotifier:
    """Sends each notification as one email."""

    plugin = "mail"

    def __init__(self, config: MailConfig, default_timeout: float) -> None:
        self._config = config
        self._timeout = config.timeout or default_timeout

    async def send(self, notification: Notification) -> str:
        """One SMTP transaction."""
        config = self._config
        context = ssl.create_default_context()
        if not config.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            # As with curl: `timeout` bounds the whole transaction, `conn_timeout` each
            # step of it (aiosmtplib's own timeout is per step, the connection included).
            async with asyncio.timeout(self._timeout):
                await aiosmtplib.send(
                    compose(config, notification), sender=config.sender,
                    recipients=list(config.recipients), hostname=config.host,
                    port=config.port, use_tls=config.implicit_tls,
                    start_tls=config.starttls or None,
                    tls_context=context if config.implicit_tls or config.starttls else None,
                    username=config.user, password=config.password,
                    timeout=config.connect_timeout or self._timeout)
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise NotifierError(f"SMTP authentication failed: {exc.code}",
                                permanent=True) from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise NotifierError(f"recipients refused: {exc}", permanent=True) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise NotifierError(f"{type(exc).__name__}: {exc}") from None
        return f"mail to {len(config.recipients)}"
