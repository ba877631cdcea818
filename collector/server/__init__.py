"""The running collector: its parts built from one Config, started, reloaded and stopped.

Empty on purpose: `alarms.component` imports `collector.server.context`, and this package's
own modules import the alarms, so re-exporting them here would make an import cycle.
"""
