"""The alarms engine: every record through every condition of its app, then anti-storm.

`consume` is called on the event loop for each batch of stored records and must stay cheap:
each line costs one RE2 pass over all its app's regexes plus a few substring checks. What
fires becomes Notifications handed to `sink` (the outbox); nothing here does I/O.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence

from alarms.conditions.event import Event
from alarms.conditions.logrules import PatternSet, apply_order, never_alarms
from alarms.conditions.segfault import SegfaultAssembler
from alarms.conditions.uwsgi_lines import parse_backlog, parse_harakiri
from alarms.conditions.watches import RateWatch, SilenceWatch
from alarms.notification import Notification, new_id
from alarms.spec import AppRules
from alarms.storm import Storm
from collector.record import Record

CONTEXT_LINES = 10
_MAX_CONTEXT_SOURCES = 10_000


class AppEngine:
    """One app's conditions and their state."""

    def __init__(self, rules: AppRules) -> None:
        self.rules = rules
        self._log_rules = rules.log_rules
        self._rates = [RateWatch(rule) for rule in rules.rate]
        self._patterns = PatternSet([r.regex for r in rules.log_rules]
                                    + [r.regex for r in rules.rate])
        self._segfault = SegfaultAssembler(rules.segfault) if rules.segfault else None
        self._silences = [SilenceWatch(rule) for rule in rules.silence]
        self._context: dict[str, deque[str]] = {}

    def evaluate(self, record: Record) -> list[Event]:
        """Events this record raises."""
        line, source, at = record.line, record.source, record.received_at
        for watch in self._silences:
            watch.seen(source, at)
        events: list[Event] = []
        if record.kind != "alarm" and not never_alarms(line):
            self._match(line, source, at, events)
            for event in events:
                if not event.context:
                    event.context = self.context(source)
        self._remember(source, line)
        return events

    def _match(self, line: str, source: str, at: float, events: list[Event]) -> None:
        rules = self.rules
        hits = self._patterns.match(line)
        if hits:
            split = len(self._log_rules)
            fired = apply_order(self._log_rules, [h for h in hits if h < split])
            if fired:
                alarms = tuple(dict.fromkeys(a for rule in fired for a in rule.alarms))
                events.append(Event(alarms, "log", source, line, at,
                                    facts={"regex": [r.regex for r in fired]}))
            for hit in hits:
                if hit >= split:
                    event = self._rates[hit - split].hit(source, line, at)
                    if event is not None:
                        events.append(event)
        if rules.backlog and "listen queue" in line:
            backlog = parse_backlog(line)
            if backlog is not None:
                events.append(Event(
                    rules.backlog, "backlog", source, backlog.message, at,
                    facts={"socket": backlog.socket, "fd": backlog.fd,
                           "queue": backlog.queue, "max": backlog.max},
                    # Without the date and the counts, which change every second while the
                    # queue stays full: one full queue is one message to alarm-freq.
                    storm_key=f"backlog {backlog.socket} {backlog.fd}", sliding=True))
        segfault = self._segfault
        if segfault is not None and ("!!!" in line or "*** backtrace of" in line
                                     or segfault.active(source)):
            event = segfault.feed(source, line, at, lambda: self.context(source))
            if event is not None:
                events.append(event)
        if rules.harakiri and "HARAKIRI ON WORKER" in line:
            harakiri = parse_harakiri(line)
            if harakiri is not None:
                events.append(Event(rules.harakiri, "harakiri", source, harakiri.message, at,
                                    facts={"worker": harakiri.worker, "pid": harakiri.pid,
                                           "try": harakiri.attempt}))

    def tick(self, now: float) -> list[Event]:
        """Time-driven events: silences, and backtraces that never ended."""
        events: list[Event] = []
        for watch in self._silences:
            events.extend(watch.expire(now))
        if self._segfault is not None:
            events.extend(self._segfault.expire(now))
        return events

    def finish(self) -> list[Event]:
        """Events still being assembled (backtraces), sent with what they have."""
        return self._segfault.expire(float("inf")) if self._segfault is not None else []

    def _remember(self, source: str, line: str) -> None:
        recent = self._context.get(source)
        if recent is None:
            if len(self._context) >= _MAX_CONTEXT_SOURCES:
                self._context.pop(next(iter(self._context)))
            recent = self._context[source] = deque(maxlen=CONTEXT_LINES)
        recent.append(line)

    def context(self, source: str) -> list[str]:
        """The source's latest lines, oldest first."""
        return list(self._context.get(source, ()))


class AlarmEngine:
    """All apps' engines, anti-storm per alarm instance, and the figures for /metrics."""

    def __init__(self, rules: Iterable[AppRules], sink: Callable[[Notification], None],
                 clock: Callable[[], float] = time.time) -> None:
        self._apps = {r.app: AppEngine(r) for r in rules if r.has_conditions}
        self._sink = sink
        self._clock = clock
        self._storms: dict[tuple[str, str], Storm] = {}
        self.fired: Counter[tuple[str, str, str]] = Counter()
        self.suppressed: Counter[tuple[str, str]] = Counter()

    def consume(self, records: Sequence[Record]) -> None:
        """Evaluate records (the ingest Consumer interface)."""
        apps = self._apps
        for record in records:
            engine = apps.get(record.app)
            if engine is not None:
                events = engine.evaluate(record)
                if events:
                    self._emit(engine, events)

    def tick(self, now: float | None = None) -> None:
        """Run time-driven conditions (call about once a second)."""
        moment = self._clock() if now is None else now
        for engine in self._apps.values():
            events = engine.tick(moment)
            if events:
                self._emit(engine, events)

    def finish(self) -> None:
        """End of input (offline evaluation): emit what is still being assembled."""
        for engine in self._apps.values():
            events = engine.finish()
            if events:
                self._emit(engine, events)

    def _emit(self, engine: AppEngine, events: list[Event]) -> None:
        rules = engine.rules
        for event in events:
            message = truncate(event.message, rules.msg_size)
            for alarm in event.alarms:
                storm = self._storms.setdefault((rules.app, alarm), Storm())
                held = storm.admit(event.storm_key, event.at, rules.freq, sliding=event.sliding)
                if held is None:
                    self.suppressed[(rules.app, alarm)] += 1
                    continue
                self.fired[(rules.app, alarm, event.condition)] += 1
                spec = rules.alarms[alarm]
                self._sink(Notification(
                    id=new_id(), alarm=alarm, plugin=spec.plugin, app=rules.app,
                    source=event.source, condition=event.condition, message=message,
                    facts=event.facts, first_seen=event.first_seen, last_seen=event.at,
                    count=event.count, suppressed=held, context=event.context,
                    created_at=self._clock()))


def truncate(message: str, limit: int) -> str:
    """alarm-msg-size: keep at most `limit` bytes of UTF-8, saying what was cut.

    uWSGI drops a triggered alarm message over the limit; a segfault with a long backtrace
    would then page nobody, so the collector cuts instead.
    """
    raw = message.encode()
    if len(raw) <= limit:
        return message
    note = f"\n[... {len(raw) - limit} bytes cut by alarm-msg-size]"
    return raw[: max(0, limit - len(note))].decode(errors="ignore") + note
