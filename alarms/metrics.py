"""The alarms' figures as Prometheus families (built only when /metrics is scraped)."""

from __future__ import annotations

from collections.abc import Iterator

from alarms.delivery import Dispatcher
from alarms.engine import AlarmEngine
from collector.metrics import Metric, counter, gauge, histogram_families

_LANE = ["app", "alarm", "plugin"]


def families(engine: AlarmEngine, dispatcher: Dispatcher) -> Iterator[Metric]:
    """Fired, suppressed, resolved, repeated, delivered, retried, dead, silenced and
    pending alarms per notifier."""
    plugins = dispatcher.plugins
    fired = counter("collector_alarms_fired_total",
                    "Notifications raised, by app, alarm, plugin and condition.",
                    [*_LANE, "condition"])
    for (app, alarm, condition), count in sorted(engine.fired.items()):
        fired.add_metric([app, alarm, plugins.get((app, alarm), ""), condition], count)
    suppressed = counter("collector_alarms_suppressed_total",
                         "Messages alarm-freq held back (counted in the next notification).",
                         _LANE)
    for (app, alarm), count in sorted(engine.suppressed.items()):
        suppressed.add_metric([app, alarm, plugins.get((app, alarm), "")], count)
    resolved = counter("collector_alarms_resolved_total",
                       "Resolved notifications raised (a stateful condition cleared).",
                       _LANE)
    for (app, alarm), count in sorted(engine.resolved.items()):
        resolved.add_metric([app, alarm, plugins.get((app, alarm), "")], count)
    repeated = counter("collector_alarms_repeated_total",
                       "Notifications raised again for an alert still firing "
                       "(alarm-repeat, Alertmanager re-posts).", _LANE)
    for (app, alarm), count in sorted(engine.repeated.items()):
        repeated.add_metric([app, alarm, plugins.get((app, alarm), "")], count)
    delivered = counter("collector_alarms_delivered_total", "Notifications delivered.", _LANE)
    retried = counter("collector_alarms_retried_total",
                      "Failed attempts that were scheduled to be tried again.", _LANE)
    dead = counter("collector_alarms_dead_total",
                   "Notifications given up on (kept as dead letters).", _LANE)
    for (app, alarm), figures in sorted(dispatcher.figures.items()):
        lane = [app, alarm, plugins.get((app, alarm), "")]
        delivered.add_metric(lane, figures.delivered)
        retried.add_metric(lane, figures.retried)
        dead.add_metric(lane, figures.dead)
    silenced = counter("collector_alarms_silenced_total",
                       "Notifications a silence held back (recorded, not sent).", _LANE)
    for (app, alarm), count in sorted(dispatcher.silenced.items()):
        silenced.add_metric([app, alarm, plugins.get((app, alarm), "")], count)
    pending = gauge("collector_alarms_pending",
                    "Notifications in the outbox waiting to be delivered.", _LANE)
    for (app, alarm), count in sorted(dispatcher.pending_counts().items()):
        pending.add_metric([app, alarm, plugins.get((app, alarm), "")], count)
    errors = counter("collector_alarms_outbox_errors_total",
                     "Outbox writes that failed, by step (outbox_unwritable: a notification "
                     "dropped because it could not be written even alone).", ["step"])
    for step, count in sorted(dispatcher.errors.items()):
        errors.add_metric([step], count)
    task_errors = counter("collector_alarms_task_errors_total",
                          "Unexpected exceptions caught at a delivery task's catch point "
                          "(persister, scheduler, attempt); the task went on.", ["task"])
    for task, count in sorted(dispatcher.task_errors.items()):
        task_errors.add_metric([task], count)
    evicted = counter("collector_alarms_state_evicted_total",
                      "Entries evicted from a bounded structure of the alarm state, by "
                      "structure (see alarms.bounds for what each means).", ["structure"])
    for structure, count in sorted((engine.evictions.counts
                                    + dispatcher.evictions.counts).items()):
        evicted.add_metric([structure], count)
    size = gauge("collector_alarms_state_size",
                 "Entries in each bounded structure of the alarm state (dead letters: in the "
                 "outbox, as of the last trim).", ["structure"])
    for structure, count in sorted({**engine.sizes(), **dispatcher.sizes()}.items()):
        size.add_metric([structure], count)
    yield from (fired, suppressed, resolved, repeated, delivered, retried, dead, silenced,
                pending)
    yield from histogram_families(dispatcher.latency)
    yield from (errors, task_errors, evicted, size)
