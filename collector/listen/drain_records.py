"""A drain's frames as ingest's datagrams, and the frame ids taken lately: pure."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from collector.decode.logplex import Frame
from collector.decode.result import Lines

FORMAT = "logplex"


def frames_to_lines(frames: Sequence[Frame], app: str, host: str, default_source: str
                    ) -> list[tuple[str, Lines]]:
    """One ingest datagram per frame: app from the drain's credentials, source from the
    frame's PROCID (else `default_source`), emitted_at from its timestamp. Ingest makes
    the records, filling the request columns of router lines and of uWSGI request lines
    as it does for every listener."""
    return [(host, Lines([frame.message], app, frame.procid or default_source,
                         frame.timestamp)) for frame in frames]


class FrameIds:
    """The `Logplex-Frame-Id`s of POSTs taken lately, per app, oldest forgotten first.

    Logplex re-sends a POST it got no 2xx for (a timeout, a dropped connection) with the
    same frame id; a frame id seen here is answered 2xx and not stored again. Held in
    memory: it survives a reload of the listener's drains, not a restart of the collector
    (a POST re-sent across a restart is stored twice).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.forgotten = 0

    def __len__(self) -> int:
        """Frame ids remembered now."""
        return len(self._seen)

    def __contains__(self, key: tuple[str, str]) -> bool:
        """Whether (app, frame id) was taken lately."""
        return key in self._seen

    def add(self, key: tuple[str, str]) -> None:
        """Remember (app, frame id) as taken; forget the oldest past `capacity`."""
        self._seen[key] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
            self.forgotten += 1
