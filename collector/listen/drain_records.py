"""A drain's frames as records: pure, so that what a POST stores is testable from bytes."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from collector.decode.logplex import Frame
from collector.record import Record
from collector.requestlog import parse_request_line
from collector.routerlog import parse_router_line

FORMAT = "logplex"


def frames_to_records(frames: Sequence[Frame], app: str, host: str, first_id: int,
                      default_source: str) -> list[Record]:
    """One record per frame, ids from `first_id`: app from the drain's credentials, source
    from the frame's PROCID, emitted_at from its timestamp.

    Router lines fill method, path, status, msecs (service) and size (bytes), as a uWSGI
    request line does; a uWSGI request line a dyno printed is parsed as one too.
    """
    records: list[Record] = []
    next_id = first_id
    for frame in frames:
        source = frame.procid or default_source
        text = frame.message
        record = Record(next_id, frame.timestamp, app, source, host, FORMAT, text)
        if source == "router":
            fields = parse_router_line(text)
            if fields is not None:
                record.method, record.path, record.status = (fields.method, fields.path,
                                                             fields.status)
                record.msecs, record.size = fields.service, fields.size
        elif "[pid: " in text:
            request = parse_request_line(text)
            if request is not None:
                (record.method, record.path, record.status, record.msecs, record.size,
                 record.pid) = request
        records.append(record)
        next_id += 1
    return records


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
