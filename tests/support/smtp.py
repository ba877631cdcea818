"""A real SMTP server (aiosmtpd) on 127.0.0.1, in its own thread and event loop, plain or
with TLS from the first byte."""

from __future__ import annotations

import email
import email.policy
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.net import free_port


@dataclass(frozen=True)
class Mail:
    """One message as the server took it: the envelope and the parsed message."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage

    @property
    def body(self) -> str:
        """The plain-text body, with SMTP's CRLF line ends back to newlines."""
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None, "no text/plain part"
        content: str = part.get_content()
        return content.replace("\r\n", "\n")


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Keep the message; 250."""
        message = email.message_from_bytes(envelope.original_content or envelope.content,
                                           policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self._server.record(Mail(envelope.mail_from, tuple(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd's Controller on a free loopback port; `mails` holds what arrived."""

    def __init__(self, port: int | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.port = port or free_port()
        self._tls = tls
        self._lock = threading.Lock()
        self._mails: list[Mail] = []
        self._controller: Controller | None = None

    def start(self) -> SmtpServer:
        """Serve in aiosmtpd's thread; returns once it answers."""
        # With `tls`, TLS from the first byte (smtps://), as on port 465.
        controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                ready_timeout=10, ssl_context=self._tls)
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        """Stop serving."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def record(self, mail: Mail) -> None:
        """Keep one message (called from the server's thread)."""
        with self._lock:
            self._mails.append(mail)

    @property
    def mails(self) -> list[Mail]:
        """Every message so far, in arrival order."""
        with self._lock:
            return list(self._mails)
