"""A UDP listener's per-datagram work: the size check, the per-sender rate limit and the
decoder, with drops counted by reason. The in-process listener (udp.py) and each receiver
process (receiver.py) run the same one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import structlog

from collector.config.model import ListenerConfig
from collector.decode.result import Decoder, Dropped, Lines
from collector.listen.ratelimit import SenderLimiter
from collector.listen.stats import BoundedState

log = structlog.get_logger("collector.listen")


@runtime_checkable
class BatchDecoder(Protocol):
    """A decoder that takes a whole batch, size check included (the crypto decoder)."""

    @property
    def batched(self) -> bool:
        """Whether decode_many is cheaper than a loop of decode."""
        ...

    def decode_many(self, batch: Sequence[tuple[bytes, str]], now: float, max_datagram: int
                    ) -> tuple[list[tuple[str, Lines]],
                               list[tuple[str, str, BaseException | None]]]:
        """(host, lines) of the datagrams that pass, (reason, host, error) of the others."""
        ...


class Intake:
    """Checks and decodes datagrams for one listener's settings."""

    def __init__(self, config: ListenerConfig, decoder: Decoder) -> None:
        self.config = config
        self.decoder = decoder
        self.max_datagram = config.max_datagram
        self._limiter = SenderLimiter(config.sender_rate) if config.sender_rate > 0 else None
        self._logged: set[str] = set()
        # The whole batch in one call, where the decoder can and no rate limit comes
        # between the size check and the decoder.
        self._many = (decoder.decode_many if isinstance(decoder, BatchDecoder)
                      and decoder.batched and self._limiter is None else None)

    def take(self, batch: Sequence[tuple[bytes, str]], now: float,
             dropped: Counter[str]) -> list[tuple[str, Lines]]:
        """The (host, lines) of each datagram (payload, host) that passes; the others are
        counted in `dropped` by reason.

        The one catch point per datagram: a decoder's bug costs that datagram only.
        """
        if self._many is not None:
            accepted, drops = self._many(batch, now, self.max_datagram)
            for reason, host, error in drops:
                if error is not None:
                    log.error("datagram_failed", listener=self.config.name, peer=host,
                              exc_info=error)
                self._count(reason, host, dropped)
            return accepted
        decoded: list[tuple[str, Lines]] = []
        decode = self.decoder.decode
        limiter = self._limiter
        for data, host in batch:
            try:
                if len(data) > self.max_datagram:
                    reason = "oversize"
                elif limiter is not None and not limiter.allow(host, now):
                    reason = "rate_limited"
                else:
                    result = decode(data, host, now)
                    if type(result) is not Dropped:
                        assert not isinstance(result, Dropped)
                        decoded.append((host, result))
                        continue
                    assert isinstance(result, Dropped)
                    reason = result.reason
            except Exception:
                reason = "internal_error"
                log.exception("datagram_failed", listener=self.config.name, peer=host)
            self._count(reason, host, dropped)
        return decoded

    def _count(self, reason: str, host: str, dropped: Counter[str]) -> None:
        """Count one dropped datagram; log the first of each reason."""
        dropped[reason] += 1
        # One log line per reason: a flood must not become a log flood.
        if reason not in self._logged:
            self._logged.add(reason)
            log.warning("datagram_dropped", listener=self.config.name, reason=reason,
                        peer=host, note="further drops for this reason are only counted")

    def evictions(self) -> Counter[str]:
        """State the decoder and the rate limiter gave up to stay within a bound."""
        counts: Counter[str] = Counter()
        if isinstance(self.decoder, BoundedState):
            counts.update(self.decoder.evicted)
        if self._limiter is not None and self._limiter.resets:
            counts["sender_buckets"] += self._limiter.resets
        return counts

    def held(self) -> dict[str, int]:
        """What the decoder holds for its senders now, by kind (empty if nothing)."""
        return self.decoder.held() if isinstance(self.decoder, BoundedState) else {}
