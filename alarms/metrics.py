"""The alarms' figures as Prometheus families (built only when /metrics is scraped)."""

from __future__ import annotations

from alarms.delivery import Dispatcher
from alarms.engine import AlarmEngine
from collector.metrics import Family


def families(engine: AlarmEngine, dispatcher: Dispatcher) -> list[Family]:
    """Fired, suppressed, delivered, retried, dead and pending alarms per notifier."""
    plugins = dispatcher.plugins
    fired = Family("collector_alarms_fired_total", "counter",
                   "Notifications raised, by app, alarm, plugin and condition.")
    for (app, alarm, condition), count in sorted(engine.fired.items()):
        fired.add(count, app=app, alarm=alarm, plugin=plugins.get((app, alarm), ""),
                  condition=condition)
    suppressed = Family("collector_alarms_suppressed_total", "counter",
                        "Messages alarm-freq held back (counted in the next notification).")
    for (app, alarm), count in sorted(engine.suppressed.items()):
        suppressed.add(count, app=app, alarm=alarm, plugin=plugins.get((app, alarm), ""))
    delivered = Family("collector_alarms_delivered_total", "counter",
                       "Notifications delivered.")
    retried = Family("collector_alarms_retried_total", "counter",
                     "Failed attempts that were scheduled to be tried again.")
    dead = Family("collector_alarms_dead_total", "counter",
                  "Notifications given up on (kept as dead letters).")
    for (app, alarm), figures in sorted(dispatcher.figures.items()):
        labels = {"app": app, "alarm": alarm, "plugin": plugins.get((app, alarm), "")}
        delivered.add(figures.delivered, **labels)
        retried.add(figures.retried, **labels)
        dead.add(figures.dead, **labels)
    pending = Family("collector_alarms_pending", "gauge",
                     "Notifications in the outbox waiting to be delivered.")
    for (app, alarm), count in sorted(dispatcher.pending_counts().items()):
        pending.add(count, app=app, alarm=alarm, plugin=plugins.get((app, alarm), ""))
    latency = Family("collector_alarm_delivery_seconds", "histogram",
                     "From an alarm firing to its delivery, retries included, by plugin.")
    for plugin, histogram in sorted(dispatcher.latency.items()):
        histogram.add_to(latency, plugin=plugin)
    errors = Family("collector_alarms_outbox_errors_total", "counter",
                    "Outbox writes that failed, by step (outbox_unwritable: a "
                    "notification dropped because it could not be written even alone).")
    for step, count in sorted(dispatcher.errors.items()):
        errors.add(count, step=step)
    task_errors = Family("collector_alarms_task_errors_total", "counter",
                         "Unexpected exceptions caught at a delivery task's catch point "
                         "(persister, scheduler, attempt); the task went on.")
    for task, count in sorted(dispatcher.task_errors.items()):
        task_errors.add(count, task=task)
    evicted = Family("collector_alarms_state_evicted_total", "counter",
                     "Entries evicted from a bounded structure of the alarm state, by "
                     "structure (see alarms.bounds for what each means).")
    for structure, count in sorted((engine.evictions.counts
                                    + dispatcher.evictions.counts).items()):
        evicted.add(count, structure=structure)
    size = Family("collector_alarms_state_size", "gauge",
                  "Entries in each bounded structure of the alarm state (dead letters: in "
                  "the outbox, as of the last trim).")
    for structure, count in sorted({**engine.sizes(), **dispatcher.sizes()}.items()):
        size.add(count, structure=structure)
    return [fired, suppressed, delivered, retried, dead, pending, latency, errors, task_errors,
            evicted, size]
