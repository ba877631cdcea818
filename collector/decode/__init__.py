"""Wire decoders: pure functions (and small stateful objects without I/O) from datagram
bytes to decoded lines or a drop reason."""

from collector.decode.result import Decoded, Decoder, Dropped, Lines

__all__ = ["Decoded", "Decoder", "Dropped", "Lines"]
