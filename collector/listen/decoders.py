"""Which decoder a listener gets for its `format`."""

from __future__ import annotations

from collections.abc import Callable

from collector.config.model import ListenerConfig
from collector.decode.crypto import CryptoDecoder, CryptoKey
from collector.decode.native import NativeDecoder
from collector.decode.result import Decoder
from collector.decode.socket import SocketDecoder
from collector.decode.syslog_lines import SyslogDecoder
from logwire.native import parse_key_token


def _crypto(config: ListenerConfig) -> Decoder:
    keys = [CryptoKey(s.secret, s.algo, s.iv, s.app, label=f"{s.location}")
            for s in config.secrets]
    return CryptoDecoder(keys, max_skew=config.max_skew, replay_window=config.replay_window)


def _socket(config: ListenerConfig) -> Decoder:
    return SocketDecoder(config.allow)


def _native(config: ListenerConfig) -> Decoder:
    return NativeDecoder([parse_key_token(token) for token in config.keys],
                         max_skew=config.max_skew, replay_window=config.replay_window,
                         max_streams=config.max_streams, max_pending=config.max_pending,
                         max_stream_pending=config.max_stream_pending, source=config.source)


def _syslog(config: ListenerConfig) -> Decoder:
    return SyslogDecoder(config.allow, config.source_from)


FACTORIES: dict[str, Callable[[ListenerConfig], Decoder]] = {
    "crypto": _crypto,
    "socket": _socket,
    "native": _native,
    "syslog": _syslog,
}


def make_decoder(config: ListenerConfig) -> Decoder:
    """The decoder for the listener's format."""
    return FACTORIES[config.format](config)
