"""The alarms engine: every record through every condition of its app, then anti-storm.

`consume` is called on the event loop for each batch of stored records and must stay cheap:
each line costs one RE2 pass over all its app's regexes plus a few substring checks. What
fires becomes Notifications handed to `sink` (the outbox); nothing here does I/O.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from itertools import groupby
from operator import attrgetter

from alarms.bounds import DEFAULT, Bounds, Evictions
from alarms.conditions.event import Event
from alarms.conditions.heroku import HerokuWatch, may_be_heroku_error
from alarms.conditions.logrules import NEVER_ALARMS, apply_order
from alarms.conditions.segfault import SegfaultAssembler
from alarms.conditions.uwsgi_lines import parse_backlog, parse_harakiri
from alarms.conditions.watches import BacklogWatch, RateWatch, SilenceWatch
from alarms.lifecycle import (
    SOURCELESS,
    Episode,
    Lifecycle,
    alert_id,
    repeat_intervals,
    tracks,
)
from alarms.notification import FIRING, RESOLVED, Notification, alert_key, group_key
from alarms.restore import still_firing
from alarms.spec import AppRules
from alarms.stable_ids import IdKey, random_id
from alarms.storm import Storm
from collector.record import Record
from collector.regex import RegexSet

CONTEXT_LINES = 10


class AppEngine:
    """One app's conditions and their state (bounded: alarms.bounds)."""

    def __init__(self, rules: AppRules, bounds: Bounds = DEFAULT,
                 evictions: Evictions | None = None) -> None:
        self.rules = rules
        self._bounds = bounds
        self._evictions = evictions = evictions if evictions is not None else Evictions()
        self._log_rules = rules.log_rules
        # Stateful conditions find their end only when someone needs it (alarm-resolve,
        # alarm-repeat, an Alertmanager's re-posts): otherwise they cost nothing more.
        self.tracking = track = tracks(rules)
        self.repeat_every = repeat_intervals(rules) if track else {}
        self._rates = [RateWatch(rule, track=track) for rule in rules.rate]
        self._backlog = (BacklogWatch(rules.backlog, rules.resolve_after, bounds.sources,
                                      evictions) if track and rules.backlog else None)
        patterns = [r.regex for r in rules.log_rules] + [r.regex for r in rules.rate]
        self._search = RegexSet(patterns).match if patterns else None
        # The rules that can fire from a regex hit: a `not-log-alarm` hit alone raises
        # nothing. One search of this set over a run's lines joined tells whether any line
        # can hit one at all; `(?m)` keeps `^` and `$` matching at each line's ends, and a
        # match across lines only sends the run down the per-line path (never misses one).
        positive = [r.regex for r in rules.log_rules if not r.negate] + [
            r.regex for r in rules.rate]
        self._prefilter = (RegexSet([f"(?m:{p})" for p in positive]).match
                           if positive and all(_joinable(p) for p in positive) else None)
        self._special = bool(rules.backlog or rules.harakiri or rules.segfault
                             or rules.heroku)
        self._heroku = HerokuWatch(rules.heroku) if rules.heroku else None
        self._segfault = SegfaultAssembler(rules.segfault, max_sources=bounds.sources,
                                           evictions=evictions) if rules.segfault else None
        self._silences = [SilenceWatch(rule, bounds.sources, evictions, track=track)
                          for rule in rules.silence]
        # OrderedDicts: evicting the oldest of a dict is O(holes left at its front).
        self._context: OrderedDict[str, deque[str]] = OrderedDict()

    def evaluate(self, record: Record) -> list[Event] | None:
        """Events this record raises; None for the usual line, which raises none.

        This runs for every line of the app, so the usual line costs one RE2 pass and a few
        substring tests, and allocates nothing but its place in the source's context.
        """
        line, source = record.line, record.source
        if record.kind == "alarm":
            # The collector's own alarm records (a `log:` notifier's) are not the source
            # speaking: they must neither end its silence (which would re-arm alarm-silence
            # and page again every period) nor stand in its context.
            return None
        if self._silences:
            for watch in self._silences:
                watch.seen(source, record.received_at)
        events = None
        if not line.startswith(NEVER_ALARMS):
            hits = self._search(line) if self._search is not None else None
            rules = self.rules
            segfault = self._segfault
            if hits or (rules.backlog and "listen queue" in line) or (
                    rules.harakiri and "HARAKIRI ON WORKER" in line) or (
                    segfault is not None and ("!!!" in line or "*** backtrace of" in line
                                              or segfault.active(source))) or (
                    self._heroku is not None and may_be_heroku_error(line)):
                events = self._match(line, source, record.received_at, hits or [])
        recent = self._context.get(source)
        if recent is None:
            recent = self._new_context(source)
        recent.append(line)
        return events

    def _new_context(self, source: str) -> deque[str]:
        """A source's context lines, kept from now on within the bound on sources."""
        if len(self._context) >= self._bounds.sources:
            # Oldest first: moving a source to the back on every line would cost every
            # line, and a source that logs steadily is soon back anyway.
            self._context.popitem(last=False)
            self._evictions.evicted("context", self._bounds.sources)
        recent = self._context[source] = deque(maxlen=CONTEXT_LINES)
        return recent

    def evaluate_run(self, records: Iterable[Record],
                     emit: Callable[[AppEngine, list[Event]], None]) -> None:
        """`evaluate` over consecutive records of this app, handing each record's events
        to `emit` as they are raised (the same events, in the same order).

        A run whose lines joined match no rule that can fire skips the per-line RE2
        search: most lines match nothing.
        """
        batch = records if isinstance(records, list) else list(records)
        if len(batch) < 2 or self._prefilter is None:
            for record in batch:
                events = self.evaluate(record)
                if events:
                    emit(self, events)
            return
        if self._prefilter("\n".join([r.line for r in batch])):
            for record in batch:
                events = self.evaluate(record)
                if events:
                    emit(self, events)
            return
        # No line hits a rule that can fire: only uWSGI's own conditions remain.
        silences = self._silences
        special = self._special
        context = self._context
        if not silences and not special:
            # Nothing left but each source's context: one extend per source's stretch.
            for source, stretch in groupby(batch, _SOURCE):
                kept = [r.line for r in stretch if r.kind != "alarm"]
                if not kept:
                    continue
                kept_for = context.get(source)
                if kept_for is None:
                    kept_for = self._new_context(source)
                kept_for.extend(kept)
            return
        last_source: str | None = None
        recent: deque[str] | None = None
        for record in batch:
            if record.kind == "alarm":
                continue
            line, source = record.line, record.source
            if silences:
                for watch in silences:
                    watch.seen(source, record.received_at)
            if special and not line.startswith(NEVER_ALARMS):
                rules = self.rules
                segfault = self._segfault
                if (rules.backlog and "listen queue" in line) or (
                        rules.harakiri and "HARAKIRI ON WORKER" in line) or (
                        segfault is not None and ("!!!" in line or "*** backtrace of" in line
                                                  or segfault.active(source))) or (
                        self._heroku is not None and may_be_heroku_error(line)):
                    events = self._match(line, source, record.received_at, [])
                    if events:
                        emit(self, events)
            if source != last_source or recent is None:
                recent = context.get(source)
                if recent is None:
                    recent = self._new_context(source)
                last_source = source
            recent.append(line)

    def _match(self, line: str, source: str, at: float, hits: list[int]) -> list[Event] | None:
        rules = self.rules
        events: list[Event] = []
        if hits:
            hits.sort()
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
                instance = f"{backlog.socket} {backlog.fd}"
                if self._backlog is not None:
                    self._backlog.full(source, instance, backlog.socket, backlog.fd, at)
                events.append(Event(
                    rules.backlog, "backlog", source, backlog.message, at,
                    facts={"socket": backlog.socket, "fd": backlog.fd,
                           "queue": backlog.queue, "max": backlog.max},
                    # Without the date and the counts, which change every second while the
                    # queue stays full: one full queue is one message to alarm-freq.
                    storm_key=f"backlog {backlog.socket} {backlog.fd}", sliding=True,
                    alert=instance))
        segfault = self._segfault
        if segfault is not None and ("!!!" in line or "*** backtrace of" in line
                                     or segfault.active(source)):
            events.extend(segfault.feed(source, line, at, lambda: self.context(source)))
        if rules.harakiri and "HARAKIRI ON WORKER" in line:
            harakiri = parse_harakiri(line)
            if harakiri is not None:
                events.append(Event(rules.harakiri, "harakiri", source, harakiri.message, at,
                                    facts={"worker": harakiri.worker, "pid": harakiri.pid,
                                           "try": harakiri.attempt}))
        if self._heroku is not None and may_be_heroku_error(line):
            heroku = self._heroku.feed(line, source, at)
            if heroku is not None:
                events.append(heroku)
        for event in events:
            if not event.context:
                event.context = self.context(source)
        return events or None

    def restore(self, notification: Notification) -> tuple[str, str, str] | None:
        """Re-open the condition state of a stateful alert that was firing before a
        restart (its newest notification, `notification`): (source as the alert counts
        it, instance, alarm-freq key) when a condition still configured for its alarm
        names that alert, else None (nothing restored)."""
        if not self.tracking:
            return None
        n = notification
        app, alarm, facts = self.rules.app, n.alarm, n.facts
        if n.condition == "backlog" and self._backlog is not None and (
                alarm in self.rules.backlog):
            socket, fd = facts.get("socket"), facts.get("fd")
            if not isinstance(socket, str) or not isinstance(fd, int):
                return None
            instance = f"{socket} {fd}"
            if alert_key(app, alarm, "backlog", n.source, instance) != n.alert:
                return None
            self._backlog.restore(n.source, instance, socket, fd, n.last_seen)
            return n.source, instance, f"backlog {socket} {fd}"
        if n.condition == "silence":
            for watch in self._silences:
                instance = watch.alert_instance()
                if watch.rule.alarm == alarm and alert_key(
                        app, alarm, "silence", n.source, instance) == n.alert:
                    last = facts.get("last_seen", n.last_seen)
                    watch.restore(n.source, float(last) if isinstance(
                        last, int | float) else n.last_seen)
                    return n.source, instance, n.message
        if n.condition == "rate":
            for rate in self._rates:
                regex = rate.rule.regex
                if rate.rule.alarm == alarm and alert_key(
                        app, alarm, "rate", "", regex) == n.alert:
                    rate.restore(n.last_seen)
                    return "", regex, f"rate {regex}"
        return None

    def tick(self, now: float) -> list[Event]:
        """Time-driven events: silences, backtraces that never ended, and stateful
        conditions that cleared (resolved events)."""
        events: list[Event] = []
        for watch in self._silences:
            events.extend(watch.expire(now))
        if self._segfault is not None:
            events.extend(self._segfault.expire(now))
        if self.tracking:
            for rate in self._rates:
                events.extend(rate.expire(now))
            if self._backlog is not None:
                events.extend(self._backlog.expire(now))
        return events

    def finish(self) -> list[Event]:
        """Events still being assembled (backtraces), sent with what they have."""
        return self._segfault.expire(float("inf")) if self._segfault is not None else []

    def context(self, source: str) -> list[str]:
        """The source's latest lines, oldest first."""
        return list(self._context.get(source, ()))

    def sizes(self) -> Counter[str]:
        """Entries per bounded structure (for /metrics)."""
        sizes: Counter[str] = Counter(context=len(self._context))
        if self._segfault is not None:
            sizes["segfault"] = len(self._segfault)
        for watch in self._silences:
            sizes.update(watch.sizes())
        if self._backlog is not None:
            sizes["backlog"] = len(self._backlog)
        return sizes


class AlarmEngine:
    """All apps' engines, anti-storm, and the figures for /metrics.

    Anti-storm state is kept per app, alarm and source: in uWSGI every dyno has its own
    alarm instances, each remembering its own last message, so moving the alarm lines to
    the collector keeps each dyno's alarms as they were: one dyno's storm never hides
    another dyno's first alarm.
    """

    def __init__(self, rules: Iterable[AppRules], sink: Callable[[Notification], None],
                 clock: Callable[[], float] = time.time, bounds: Bounds = DEFAULT,
                 ids: Callable[[IdKey], str] = random_id) -> None:
        self.evictions = Evictions()
        self._bounds = self.bounds = bounds
        self._apps = {r.app: AppEngine(r, bounds, self.evictions)
                      for r in rules if r.has_conditions}
        self._sink = sink
        self._clock = clock
        self._ids = ids
        # Where the record being evaluated sits in the shared log (cluster mode), and how
        # many notifications each (alarm, condition) raised from it so far.
        self._origin: tuple[int, int] | None = None
        self._origin_at = 0.0
        self._raised: Counter[tuple[str, str, str]] = Counter()
        self._storms: OrderedDict[tuple[str, str, str], Storm] = OrderedDict()
        self._lifecycle = Lifecycle(bounds.alerts, self.evictions)
        self.fired: Counter[tuple[str, str, str]] = Counter()
        self.suppressed: Counter[tuple[str, str]] = Counter()
        self.resolved: Counter[tuple[str, str]] = Counter()
        self.repeated: Counter[tuple[str, str]] = Counter()

    def replace_rules(self, rules: Iterable[AppRules],
                      same: Callable[[AppRules, AppRules], bool]) -> None:
        """Evaluate the next record with `rules` (a config reload).

        An app whose rules are `same` keeps its engine and so its state (rate windows,
        silences, a backtrace being assembled); anti-storm state and figures carry on.
        Another app's stateful alerts are forgotten, neither repeated nor resolved.
        """
        apps: dict[str, AppEngine] = {}
        for rule in rules:
            if not rule.has_conditions:
                continue
            running = self._apps.get(rule.app)
            apps[rule.app] = (running if running is not None and same(running.rules, rule)
                              else AppEngine(rule, self._bounds, self.evictions))
        for app, running in self._apps.items():
            if apps.get(app) is not running:
                # A new engine's conditions do not know what fired before: the alerts of
                # the old one could neither resolve nor stop repeating.
                self._lifecycle.drop_app(app)
        self._apps = apps

    def restore(self, notifications: Iterable[Notification]) -> int:
        """Re-open the stateful alerts that were firing before a restart, from the
        notifications the outbox holds (any order and state; grouped ones taken apart):
        each alert whose newest notification is `firing`, of an app and alarm still
        configured with its condition, gets its episode back (so it is resolved and
        repeated) and its condition's state (so it finds its end). At most
        `bounds.alerts` alerts, the most recently notified; how many were re-opened.
        Call before the first record."""
        restored = 0
        for notification in still_firing(notifications, self._bounds.alerts):
            engine = self._apps.get(notification.app)
            if engine is None or notification.alarm not in engine.rules.alarms:
                continue
            found = engine.restore(notification)
            if found is None:
                continue
            source, instance, storm_key = found
            key = (notification.app, notification.alarm, notification.condition, source,
                   instance)
            # When it was last told, to time the next alarm-repeat: a repeat keeps its
            # firing's last_seen, its own moment is when it was made.
            told = max(notification.last_seen, notification.created_at)
            self._lifecycle.fired(key, replace(notification, context=[], members=[]), told,
                                  engine.repeat_every.get(notification.alarm, 0.0),
                                  storm_key)
            restored += 1
        return restored

    def sizes(self) -> Counter[str]:
        """Entries per bounded structure, all apps together (for /metrics)."""
        sizes: Counter[str] = Counter(storm=len(self._storms))
        if self._lifecycle:
            sizes["alerts"] = len(self._lifecycle)
        for engine in self._apps.values():
            sizes.update(engine.sizes())
        return sizes

    def consume(self, records: Sequence[Record]) -> None:
        """Evaluate records (the ingest Consumer interface), a run of one app's
        consecutive records at a time."""
        apps = self._apps
        emit = self._emit_fresh
        for app, run in groupby(records, _APP):
            engine = apps.get(app)
            if engine is not None:
                engine.evaluate_run(run, emit)

    def _emit_fresh(self, engine: AppEngine, events: list[Event]) -> None:
        self._raised.clear()
        self._emit(engine, events)

    def consume_message(self, seq: int, at: float, records: Sequence[Record]) -> None:
        """Evaluate one message of the shared log (cluster mode): as `consume`, with each
        record's position (`seq`, index) and the message's stream time `at` handed to the
        id function."""
        apps = self._apps
        self._origin_at = at
        try:
            for index, record in enumerate(records):
                engine = apps.get(record.app)
                if engine is not None:
                    events = engine.evaluate(record)
                    if events:
                        self._origin = (seq, index)
                        self._raised.clear()
                        self._emit(engine, events)
        finally:
            self._origin = None

    def tick(self, now: float | None = None) -> None:
        """Run time-driven conditions (call about once a second), and repeat the alerts
        still firing that are due (alarm-repeat, Alertmanager re-posts)."""
        moment = self._clock() if now is None else now
        for engine in self._apps.values():
            events = engine.tick(moment)
            if events:
                self._raised.clear()
                self._emit(engine, events)
        for key, episode, when in self._lifecycle.due(moment):
            self._repeat(key, episode, when)

    def _repeat(self, key: tuple[str, str, str, str, str], episode: Episode,
                when: float) -> None:
        """Send an alert still firing again, as its last notification was, bypassing
        alarm-freq; named (cluster mode) by the log time it is due at."""
        app, alarm = key[0], key[1]
        engine = self._apps.get(app)
        if engine is None or alarm not in engine.rules.alarms:
            self._lifecycle.drop(key)
            return
        last = episode.last
        self.repeated[(app, alarm)] += 1
        self._sink(replace(
            last, id=self._ids(IdKey(app, alarm, last.source, last.condition, when, None,
                                     episode.repeats, FIRING, alert=key[4])),
            facts={**last.facts, "repeat": True, "repeats": episode.repeats},
            suppressed=0, created_at=self._clock()))

    def finish(self) -> None:
        """End of input (offline evaluation): emit what is still being assembled."""
        for engine in self._apps.values():
            events = engine.finish()
            if events:
                self._emit(engine, events)

    def _emit(self, engine: AppEngine, events: list[Event]) -> None:
        rules = engine.rules
        for event in events:
            if event.status == RESOLVED:
                self._resolved(engine, event)
                continue
            message = truncate(event.message, rules.msg_size)
            for alarm in event.alarms:
                key = (rules.app, alarm, event.source)
                storm = self._storms.get(key)
                if storm is None:
                    if len(self._storms) >= self._bounds.storms:
                        self._storms.popitem(last=False)
                        self.evictions.evicted("storm", self._bounds.storms)
                    storm = self._storms[key] = Storm()
                held = storm.admit(event.storm_key, event.at, rules.freq, sliding=event.sliding)
                if held is None:
                    self.suppressed[(rules.app, alarm)] += 1
                    continue
                self.fired[(rules.app, alarm, event.condition)] += 1
                spec = rules.alarms[alarm]
                origin = self._origin
                # A time-driven event is named by the log time it is about (a silence's
                # last line, an assembly's start), which a replay finds again; not by now.
                about = self._origin_at if origin is not None else float(
                    event.facts.get("last_seen", event.at))
                slot = (alarm, event.condition, event.source)
                ordinal = self._raised[slot]
                self._raised[slot] += 1
                notification = Notification(
                    id=self._ids(IdKey(rules.app, alarm, event.source, event.condition,
                                       about, origin, ordinal, event.status)),
                    alarm=alarm, plugin=spec.plugin, app=rules.app,
                    source=event.source, condition=event.condition, message=message,
                    facts=event.facts, first_seen=event.first_seen, last_seen=event.at,
                    count=event.count, suppressed=held, context=event.context,
                    created_at=self._clock(), status=event.status,
                    group=group_key(rules.app, alarm, event.condition),
                    alert=alert_key(rules.app, alarm, event.condition,
                                    "" if event.condition in SOURCELESS else event.source,
                                    event.alert))
                self._sink(notification)
                if event.alert and engine.tracking:
                    # Kept to repeat it; its context lines are the moment's, not a repeat's.
                    self._lifecycle.fired(alert_id(rules.app, alarm, event),
                                          replace(notification, context=[]), event.at,
                                          engine.repeat_every.get(alarm, 0.0),
                                          event.storm_key)

    def _resolved(self, engine: AppEngine, event: Event) -> None:
        """A stateful condition cleared: a resolved notification per alarm whose firing
        one was emitted (once: that ends the episode), unless alarm-resolve is off.
        alarm-freq does not apply: it holds back repeats, and this is the end of them."""
        rules = engine.rules
        for alarm in event.alarms:
            episode = self._lifecycle.resolve(alert_id(rules.app, alarm, event))
            if episode is None or not rules.resolve:
                continue
            last = episode.last
            storm = self._storms.get((rules.app, alarm, last.source))
            if storm is not None:
                # Told it ended, the receiver must hear of it starting again.
                storm.forget(episode.storm_key)
            self.resolved[(rules.app, alarm)] += 1
            # Named by the log time it is about (the line that ended a silence, the last
            # full report plus alarm-resolve-after), which a replay finds again.
            self._sink(Notification(
                id=self._ids(IdKey(rules.app, alarm, last.source, event.condition, event.at,
                                   None, 0, RESOLVED, alert=event.alert)),
                alarm=alarm, plugin=last.plugin, app=rules.app, source=last.source,
                condition=event.condition, message=truncate(event.message, rules.msg_size),
                facts=event.facts, first_seen=episode.first_seen, last_seen=event.at,
                count=1, suppressed=0, created_at=self._clock(), status=RESOLVED,
                group=last.group, alert=last.alert))


_APP = attrgetter("app")
_SOURCE = attrgetter("source")


def _joinable(pattern: str) -> bool:
    """Whether `(?m:pattern)` over lines joined by newlines finds every line `pattern`
    finds: not when the pattern switches multi-line off or anchors at the text's ends."""
    return not any(token in pattern for token in ("\\A", "\\z", "-m", "(?m", "(?s"))


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
