"""The server-side TLS context of a stream listener (`tls-cert`, `tls-key`,
`tls-client-ca`), with ssl's errors mapped to a ConfigError naming the listener."""

from __future__ import annotations

import ssl

from collector.config.model import ListenerConfig
from collector.errors import ConfigError


def server_context(config: ListenerConfig) -> ssl.SSLContext:
    """TLS 1.2 or later with the listener's certificate; with `tls-client-ca`, a client
    must present a certificate that CA signed (RFC 5425 section 5.2, by CA)."""
    if config.tls_cert is None or config.tls_key is None:
        raise ConfigError(f"[listener:{config.name}] needs tls-cert and tls-key",
                          config.location)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
        if config.tls_client_ca is not None:
            context.load_verify_locations(cafile=config.tls_client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"[listener:{config.name}] cannot load its TLS files: {exc}",
                          config.location) from None
    return context
